/*
 * Records, maps, lists and nodes as values.
 *
 * A slot's meaning comes from the (field, type) pair describing it: @p type is the field's
 * own type for a field slot and its elem_type for a map value or list element. Zero values
 * count as absent everywhere: equality ignores zero map entries, zero trailing list elements,
 * zero keyed-list elements and empty records.
 */
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

static const kraken_uuid zero_uuid;

/* ---- records ------------------------------------------------------------- */

kraken_record *kraken__record_new(const struct kraken_schema *schema)
{
    if (!schema)
        return NULL;
    kraken_record *rec = calloc(1, sizeof(*rec) + schema->n_fields * sizeof(kraken_slot));
    if (rec)
        rec->schema = schema;
    return rec;
}

void kraken__record_free(kraken_record *rec)
{
    if (!rec)
        return;
    const struct kraken_schema *s = rec->schema;
    for (size_t i = 0; i < s->n_fields; i++)
        kraken__slot_free(&s->fields[i], s->fields[i].type, &rec->slots[i]);
    free(rec);
}

kraken_record *kraken__record_copy(const kraken_record *rec)
{
    if (!rec)
        return NULL;
    const struct kraken_schema *s = rec->schema;
    kraken_record *c = kraken__record_new(s);
    if (!c)
        return NULL;
    for (size_t i = 0; i < s->n_fields; i++) {
        if (kraken__slot_copy(&s->fields[i], s->fields[i].type, &c->slots[i], &rec->slots[i]) <
            0) {
            kraken__record_free(c);
            return NULL;
        }
    }
    return c;
}

bool kraken__record_is_empty(const kraken_record *rec)
{
    if (!rec)
        return true;
    const struct kraken_schema *s = rec->schema;
    for (size_t i = 0; i < s->n_fields; i++)
        if (!kraken__slot_is_zero_deep(&s->fields[i], s->fields[i].type, &rec->slots[i]))
            return false;
    return true;
}

bool kraken__record_equal(const kraken_record *a, const kraken_record *b)
{
    if (a == b)
        return true;
    if (!a || !b)
        return kraken__record_is_empty(a ? a : b);
    if (a->schema != b->schema)
        return false;
    const struct kraken_schema *s = a->schema;
    for (size_t i = 0; i < s->n_fields; i++)
        if (!kraken__slot_equal(&s->fields[i], s->fields[i].type, &a->slots[i], &b->slots[i]))
            return false;
    return true;
}

/* ---- container allocation ---------------------------------------------------- */

/* Maps and lists are one allocation: an 8-byte header and the elements. Most are tiny (one
 * iface, one extension), so the first capacity keeps them in malloc's smallest chunk (24
 * usable bytes): one 16-byte map entry, two 8-byte list items. Then capacities double. */
#define MAP_FIRST_CAP 1
#define LIST_FIRST_CAP 2

/* The capacity after @p cap, or 0 when the container cannot grow. */
static size_t next_cap(size_t cap, size_t first)
{
    if (cap == 0)
        return first;
    if (cap >= KRAKEN_CONTAINER_MAX)
        return 0;
    return cap > KRAKEN_CONTAINER_MAX / 2 ? KRAKEN_CONTAINER_MAX : cap * 2;
}

/* Reallocate @p m (NULL: a new empty map) for @p cap entries; NULL (m untouched) on failure. */
static kraken_map *map_resize(kraken_map *m, size_t cap)
{
    if (cap == 0 || cap > KRAKEN_CONTAINER_MAX ||
        cap > (SIZE_MAX - sizeof(kraken_map)) / sizeof(kraken_map_entry))
        return NULL;
    uint32_t n = m ? m->n : 0;
    kraken_map *g = realloc(m, sizeof(*g) + cap * sizeof(g->entries[0]));
    if (!g)
        return NULL;
    g->n = n;
    g->cap = (uint32_t)cap;
    return g;
}

static kraken_list *list_resize(kraken_list *l, size_t cap)
{
    if (cap == 0 || cap > KRAKEN_CONTAINER_MAX ||
        cap > (SIZE_MAX - sizeof(kraken_list)) / sizeof(kraken_slot))
        return NULL;
    uint32_t n = l ? l->n : 0;
    kraken_list *g = realloc(l, sizeof(*g) + cap * sizeof(g->items[0]));
    if (!g)
        return NULL;
    g->n = n;
    g->cap = (uint32_t)cap;
    return g;
}

kraken_map *kraken__map_new(size_t cap)
{
    kraken_map *m = map_resize(NULL, cap ? cap : MAP_FIRST_CAP);
    if (m)
        memset(m->entries, 0, m->cap * sizeof(m->entries[0]));
    return m;
}

kraken_list *kraken__list_new(size_t cap)
{
    kraken_list *l = list_resize(NULL, cap ? cap : LIST_FIRST_CAP);
    if (l)
        memset(l->items, 0, l->cap * sizeof(l->items[0]));
    return l;
}

/* ---- maps ------------------------------------------------------------------ */

/* strcmp order for a length-delimited key. */
static int key_cmp(const char *key, size_t len, const char *other)
{
    size_t olen = strlen(other);
    int c = memcmp(key, other, len < olen ? len : olen);
    if (c != 0)
        return c;
    return len < olen ? -1 : len > olen ? 1 : 0;
}

static size_t map_lower_bound(const kraken_map *m, const char *key, size_t len, bool *found)
{
    size_t lo = 0, hi = m ? m->n : 0;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(key, len, m->entries[mid].key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

kraken_map_entry *kraken__map_find(const kraken_map *m, const char *key, size_t len)
{
    bool found;
    size_t pos = map_lower_bound(m, key, len, &found);
    /* The entries are inline now; callers may write through the result as they always did. */
    return found ? (kraken_map_entry *)&m->entries[pos] : NULL;
}

kraken_map_entry *kraken__map_insert(kraken_map **mp, const char *key, size_t len)
{
    bool found;
    size_t pos = map_lower_bound(*mp, key, len, &found);
    if (found)
        return &(*mp)->entries[pos];
    kraken_map *m = *mp;
    char *k = kraken__strndup(key, len);
    if (!k)
        return NULL;
    if (!m || m->n == m->cap) {
        kraken_map *g = map_resize(m, next_cap(m ? m->cap : 0, MAP_FIRST_CAP));
        if (!g) {
            free(k);
            return NULL;
        }
        *mp = m = g; /* the map moved: the owner's slot follows it */
    }
    memmove(&m->entries[pos + 1], &m->entries[pos], (m->n - pos) * sizeof(*m->entries));
    m->entries[pos].key = k;
    memset(&m->entries[pos].value, 0, sizeof(kraken_slot));
    m->n++;
    return &m->entries[pos];
}

void kraken__map_remove(const kraken_field *f, kraken_map *m, const char *key, size_t len)
{
    bool found;
    size_t pos = map_lower_bound(m, key, len, &found);
    if (!found)
        return;
    free(m->entries[pos].key);
    kraken__slot_free(f, f->elem_type, &m->entries[pos].value);
    memmove(&m->entries[pos], &m->entries[pos + 1], (m->n - pos - 1) * sizeof(*m->entries));
    m->n--;
}

static void map_free(const kraken_field *f, kraken_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->entries[i].key);
        kraken__slot_free(f, f->elem_type, &m->entries[i].value);
    }
    free(m);
}

static int map_copy(const kraken_field *f, kraken_map **out, const kraken_map *src)
{
    *out = NULL;
    if (!src || src->n == 0)
        return 0;
    kraken_map *m = kraken__map_new(src->n);
    if (!m)
        return KRAKEN_ENOMEM;
    for (size_t i = 0; i < src->n; i++) {
        m->entries[i].key = strdup(src->entries[i].key);
        m->n = i + 1;
        if (!m->entries[i].key ||
            kraken__slot_copy(f, f->elem_type, &m->entries[i].value, &src->entries[i].value) < 0) {
            map_free(f, m);
            return KRAKEN_ENOMEM;
        }
    }
    *out = m;
    return 0;
}

/* Merge walk over both sorted maps: an entry missing on one side must be zero. */
static bool map_equal(const kraken_field *f, const kraken_map *a, const kraken_map *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, i = 0, j = 0;
    kraken_type t = f->elem_type;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : strcmp(a->entries[i].key, b->entries[j].key);
        if (c == 0) {
            if (!kraken__slot_equal(f, t, &a->entries[i].value, &b->entries[j].value))
                return false;
            i++, j++;
        } else if (c < 0) {
            if (!kraken__slot_is_zero_deep(f, t, &a->entries[i++].value))
                return false;
        } else if (!kraken__slot_is_zero_deep(f, t, &b->entries[j++].value)) {
            return false;
        }
    }
    return true;
}

/* ---- lists ------------------------------------------------------------------ */

const char *kraken__list_item_key(const kraken_field *f, const kraken_slot *item)
{
    const kraken_record *rec = item->rec;
    if (!rec)
        return "";
    if (f->list_key == KRAKEN_KEY_TYPE)
        return rec->schema->name;
    const char *k = rec->slots[f->key_field].s;
    return k ? k : "";
}

size_t kraken__list_keyed_pos(const kraken_field *f, const kraken_list *l, const char *key,
                              size_t len, bool *found)
{
    if (f->list_key == KRAKEN_KEY_TYPE)
        key = kraken__type_url_name(key, len, &len);
    size_t lo = 0, hi = l ? l->n : 0;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(key, len, kraken__list_item_key(f, &l->items[mid]));
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

kraken_slot *kraken__list_find_keyed(const kraken_field *f, const kraken_list *l, const char *key,
                                     size_t len)
{
    bool found;
    size_t pos = kraken__list_keyed_pos(f, l, key, len, &found);
    return found ? (kraken_slot *)&l->items[pos] : NULL;
}

kraken_slot *kraken__list_insert(kraken_list **lp, size_t pos)
{
    kraken_list *l = *lp;
    if (!l || l->n == l->cap) {
        kraken_list *g = list_resize(l, next_cap(l ? l->cap : 0, LIST_FIRST_CAP));
        if (!g)
            return NULL;
        *lp = l = g; /* the list moved: the owner's slot follows it */
    }
    if (pos > l->n)
        pos = l->n;
    memmove(&l->items[pos + 1], &l->items[pos], (l->n - pos) * sizeof(*l->items));
    memset(&l->items[pos], 0, sizeof(kraken_slot));
    l->n++;
    return &l->items[pos];
}

void kraken__list_remove(const kraken_field *f, kraken_list *l, size_t pos)
{
    if (!l || pos >= l->n)
        return;
    kraken__slot_free(f, f->elem_type, &l->items[pos]);
    memmove(&l->items[pos], &l->items[pos + 1], (l->n - pos - 1) * sizeof(*l->items));
    l->n--;
}

static void list_free(const kraken_field *f, kraken_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        kraken__slot_free(f, f->elem_type, &l->items[i]);
    free(l);
}

static int list_copy(const kraken_field *f, kraken_list **out, const kraken_list *src)
{
    *out = NULL;
    if (!src || src->n == 0)
        return 0;
    kraken_list *l = kraken__list_new(src->n);
    if (!l)
        return KRAKEN_ENOMEM;
    for (size_t i = 0; i < src->n; i++) {
        l->n = i + 1;
        if (kraken__slot_copy(f, f->elem_type, &l->items[i], &src->items[i]) < 0) {
            list_free(f, l);
            return KRAKEN_ENOMEM;
        }
    }
    *out = l;
    return 0;
}

/* Keyed lists: merge walk by key, an element on one side only must be empty. */
static bool keyed_list_equal(const kraken_field *f, const kraken_list *a, const kraken_list *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i == na   ? 1
                : j == nb ? -1
                          : strcmp(kraken__list_item_key(f, &a->items[i]),
                                   kraken__list_item_key(f, &b->items[j]));
        if (c == 0) {
            if (!kraken__record_equal(a->items[i].rec, b->items[j].rec))
                return false;
            i++, j++;
        } else if (c < 0) {
            if (!kraken__record_is_empty(a->items[i++].rec))
                return false;
        } else if (!kraken__record_is_empty(b->items[j++].rec)) {
            return false;
        }
    }
    return true;
}

/* Index lists: element-wise; extra trailing elements must be zero. */
static bool list_equal(const kraken_field *f, const kraken_list *a, const kraken_list *b)
{
    if (f->list_key != KRAKEN_KEY_INDEX)
        return keyed_list_equal(f, a, b);
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;
    kraken_type t = f->elem_type;
    for (size_t i = 0; i < na || i < nb; i++) {
        if (i < na && i < nb) {
            if (!kraken__slot_equal(f, t, &a->items[i], &b->items[i]))
                return false;
        } else if (!kraken__slot_is_zero_deep(f, t, i < na ? &a->items[i] : &b->items[i])) {
            return false;
        }
    }
    return true;
}

/* ---- slots -------------------------------------------------------------------- */

void kraken__slot_free(const kraken_field *f, kraken_type type, kraken_slot *slot)
{
    switch (type) {
    case KRAKEN_T_STRING:
        free(slot->s);
        break;
    case KRAKEN_T_BYTES:
        free(slot->bytes);
        break;
    case KRAKEN_T_UUID:
        free(slot->uuid);
        break;
    case KRAKEN_T_RECORD:
        kraken__record_free(slot->rec);
        break;
    case KRAKEN_T_MAP:
        map_free(f, slot->map);
        break;
    case KRAKEN_T_LIST:
        list_free(f, slot->list);
        break;
    default:
        break;
    }
    memset(slot, 0, sizeof(*slot));
}

int kraken__slot_copy(const kraken_field *f, kraken_type type, kraken_slot *dst,
                      const kraken_slot *src)
{
    memset(dst, 0, sizeof(*dst));
    switch (type) {
    case KRAKEN_T_STRING:
        if (src->s && !(dst->s = strdup(src->s)))
            return KRAKEN_ENOMEM;
        return 0;
    case KRAKEN_T_BYTES:
        if (src->bytes) {
            size_t size = sizeof(struct kraken_blob) + src->bytes->len;
            if (!(dst->bytes = malloc(size)))
                return KRAKEN_ENOMEM;
            memcpy(dst->bytes, src->bytes, size);
        }
        return 0;
    case KRAKEN_T_UUID:
        if (src->uuid) {
            if (!(dst->uuid = malloc(sizeof(kraken_uuid))))
                return KRAKEN_ENOMEM;
            *dst->uuid = *src->uuid;
        }
        return 0;
    case KRAKEN_T_RECORD:
        if (src->rec && !(dst->rec = kraken__record_copy(src->rec)))
            return KRAKEN_ENOMEM;
        return 0;
    case KRAKEN_T_MAP:
        return map_copy(f, &dst->map, src->map);
    case KRAKEN_T_LIST:
        return list_copy(f, &dst->list, src->list);
    default:
        *dst = *src;
        return 0;
    }
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

bool kraken__slot_equal(const kraken_field *f, kraken_type type, const kraken_slot *a,
                        const kraken_slot *b)
{
    switch (type) {
    case KRAKEN_T_BOOL:
        return a->b == b->b;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return a->i == b->i;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return a->u == b->u;
    case KRAKEN_T_IPV4:
        return a->ipv4 == b->ipv4;
    case KRAKEN_T_MAC:
        return a->mac == b->mac;
    case KRAKEN_T_STRING:
        return strcmp(str_or_empty(a->s), str_or_empty(b->s)) == 0;
    case KRAKEN_T_BYTES: {
        size_t la = a->bytes ? a->bytes->len : 0, lb = b->bytes ? b->bytes->len : 0;
        return la == lb && (la == 0 || memcmp(a->bytes->data, b->bytes->data, la) == 0);
    }
    case KRAKEN_T_UUID:
        return memcmp(a->uuid ? a->uuid : &zero_uuid, b->uuid ? b->uuid : &zero_uuid,
                      sizeof(kraken_uuid)) == 0;
    case KRAKEN_T_RECORD:
        return kraken__record_equal(a->rec, b->rec);
    case KRAKEN_T_MAP:
        return map_equal(f, a->map, b->map);
    case KRAKEN_T_LIST:
        return list_equal(f, a->list, b->list);
    default:
        return true;
    }
}

bool kraken__slot_is_zero(kraken_type type, const kraken_slot *slot)
{
    switch (type) {
    case KRAKEN_T_BOOL:
        return !slot->b;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return slot->i == 0;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return slot->u == 0;
    case KRAKEN_T_IPV4:
        return slot->ipv4 == 0;
    case KRAKEN_T_MAC:
        return slot->mac == 0;
    case KRAKEN_T_STRING:
        return !slot->s || !*slot->s;
    case KRAKEN_T_BYTES:
        return !slot->bytes || slot->bytes->len == 0;
    case KRAKEN_T_UUID:
        return !slot->uuid || kraken_uuid_is_zero(slot->uuid);
    case KRAKEN_T_RECORD:
        return kraken__record_is_empty(slot->rec);
    case KRAKEN_T_MAP:
        return !slot->map || slot->map->n == 0;
    case KRAKEN_T_LIST:
        return !slot->list || slot->list->n == 0;
    default:
        return true;
    }
}

bool kraken__slot_is_zero_deep(const kraken_field *f, kraken_type type, const kraken_slot *slot)
{
    if (type == KRAKEN_T_MAP) {
        for (size_t i = 0; slot->map && i < slot->map->n; i++)
            if (!kraken__slot_is_zero_deep(f, f->elem_type, &slot->map->entries[i].value))
                return false;
        return true;
    }
    if (type == KRAKEN_T_LIST) {
        for (size_t i = 0; slot->list && i < slot->list->n; i++)
            if (!kraken__slot_is_zero_deep(f, f->elem_type, &slot->list->items[i]))
                return false;
        return true;
    }
    return kraken__slot_is_zero(type, slot);
}

/* ---- nodes ------------------------------------------------------------------------- */

int kraken_node_new(kraken_node **out, const kraken_uuid *id)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_new: NULL out");
    const struct kraken_schema *s = kraken__node_schema();
    if (!s)
        return kraken__err(KRAKEN_ENOMEM, "kraken_node_new: built-in schemas unavailable");
    kraken_record *rec = kraken__record_new(s);
    if (!rec)
        return kraken__err(KRAKEN_ENOMEM, "kraken_node_new: out of memory");
    kraken_node *node = (kraken_node *)rec;
    if (id && kraken_node_set_id(node, id) < 0) {
        kraken__record_free(rec);
        return KRAKEN_ENOMEM;
    }
    *out = node;
    return 0;
}

void kraken_node_free(kraken_node *node)
{
    kraken__record_free(node ? &node->rec : NULL);
}

int kraken_node_copy(kraken_node **out, const kraken_node *node)
{
    if (!out || !node)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_copy: NULL argument");
    kraken_record *c = kraken__record_copy(&node->rec);
    if (!c)
        return kraken__err(KRAKEN_ENOMEM, "kraken_node_copy: out of memory");
    *out = (kraken_node *)c;
    return 0;
}

bool kraken_node_equal(const kraken_node *a, const kraken_node *b)
{
    return kraken__record_equal(a ? &a->rec : NULL, b ? &b->rec : NULL);
}

const kraken_uuid *kraken_node_id(const kraken_node *node)
{
    if (!node || !node->rec.slots[KRAKEN_NODE_F_ID].uuid)
        return &zero_uuid;
    return node->rec.slots[KRAKEN_NODE_F_ID].uuid;
}

int kraken_node_set_id(kraken_node *node, const kraken_uuid *id)
{
    if (!node)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_set_id: NULL node");
    kraken_slot *slot = &node->rec.slots[KRAKEN_NODE_F_ID];
    if (!id || kraken_uuid_is_zero(id)) {
        free(slot->uuid);
        slot->uuid = NULL;
        return 0;
    }
    if (!slot->uuid && !(slot->uuid = malloc(sizeof(kraken_uuid))))
        return kraken__err(KRAKEN_ENOMEM, "kraken_node_set_id: out of memory");
    *slot->uuid = *id;
    return 0;
}

static const kraken_list *node_list(const kraken_node *node, size_t field)
{
    return node ? node->rec.slots[field].list : NULL;
}

size_t kraken_node_extension_count(const kraken_node *node)
{
    const kraken_list *l = node_list(node, KRAKEN_NODE_F_EXTENSIONS);
    return l ? l->n : 0;
}

const kraken_schema *kraken_node_extension_schema(const kraken_node *node, size_t i)
{
    const kraken_list *l = node_list(node, KRAKEN_NODE_F_EXTENSIONS);
    if (!l || i >= l->n || !l->items[i].rec)
        return NULL;
    return l->items[i].rec->schema;
}

size_t kraken_node_service_count(const kraken_node *node)
{
    const kraken_list *l = node_list(node, KRAKEN_NODE_F_SERVICES);
    return l ? l->n : 0;
}

const char *kraken_node_service_id(const kraken_node *node, size_t i)
{
    const kraken_list *l = node_list(node, KRAKEN_NODE_F_SERVICES);
    if (!l || i >= l->n)
        return NULL;
    return kraken__list_item_key(&node->rec.schema->fields[KRAKEN_NODE_F_SERVICES], &l->items[i]);
}
