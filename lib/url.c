/*
 * url.c: value URLs (SPEC 1.3): parsing, compiled URLs, get/set/unset by URL.
 *
 * A URL is compiled once into an array of steps (field position, map key,
 * list index, keyed-list key, extension schema), so reading through a
 * compiled URL is a short loop over pointers with no allocation and no name
 * lookups. The public string-based calls keep a small per-thread cache of
 * compiled URLs, so repeated reads of the same URL cost a hash and a strcmp.
 *
 * Service configs are polymorphic records: their schema is whatever record
 * the node holds. A URL may name it ("Config/type.googleapis.com/X/Field");
 * otherwise the components after "Config" stay unresolved in the compiled
 * URL (its "tail") and are resolved against the node's config at access time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url_private.h"

/* Deep enough for any schema nesting; bounds the stack arrays used below. */
#define URL_MAX_COMPONENTS 64
#define TYPE_HOST "type.googleapis.com"
#define URL_CACHE_SIZE 16

typedef enum step_kind {
    STEP_FIELD, /* a field of the current record */
    STEP_TYPED, /* the current polymorphic record, which must have the named schema */
    STEP_MAP,   /* map entry by key */
    STEP_INDEX, /* list element by 0-based index */
    STEP_KEYED, /* list element by its key field (services by id) */
    STEP_EXT    /* list element by schema (extensions) */
} step_kind;

typedef struct url_step {
    step_kind kind;
    kraken_type type;                   /* type of the slot this step reaches */
    const kraken_field *field;          /* describes that slot, together with type */
    const struct kraken_schema *schema; /* FIELD: record holding the field; TYPED/EXT: element */
    size_t index;                       /* FIELD: position; INDEX: list index; KEYED: key field */
    const char *key;                    /* MAP/KEYED key (NUL-terminated, in the URL's buffer) */
    size_t key_len;
    const char *comp;                   /* the component as written, for messages */
} url_step;

struct kraken_url {
    char *orig;     /* as given: cache key and name in messages */
    char *buf;      /* components, NUL-separated; keys and comps point here */
    char *text;     /* canonical form */
    char **tail;    /* components left to resolve against a node's service config */
    size_t n_tail;
    size_t n_steps;
    url_step steps[];
};

static const kraken_slot zero_slot;

/* ---- the whole node as a RECORD value ----------------------------------- */

static kraken_field node_root_field;
static pthread_once_t node_root_once = PTHREAD_ONCE_INIT;

static void node_root_init(void)
{
    node_root_field.name = (char *)"node";
    node_root_field.json_name = (char *)"node";
    node_root_field.url_name = (char *)"Node";
    node_root_field.type = KRAKEN_T_RECORD;
    node_root_field.record = kraken__node_schema();
}

/* Descriptor for the empty URL: the node itself. */
static const kraken_field *node_root(void)
{
    pthread_once(&node_root_once, node_root_init);
    return &node_root_field;
}

/* The (field, type) pair that describes the slot the steps reach. */
static void final_desc(const url_step *st, size_t n, const kraken_field **f, kraken_type *t)
{
    if (n == 0) {
        *f = node_root();
        *t = KRAKEN_T_RECORD;
    } else {
        *f = st[n - 1].field;
        *t = st[n - 1].type;
    }
}

/* ---- parsing ------------------------------------------------------------- */

static bool is_type_host(const char *c)
{
    return strcmp(c, TYPE_HOST) == 0;
}

/* Split @p buf in place at '/' (one optional leading '/'). Empty components are errors. */
static int split_components(const char *url, char *buf, char **comps, size_t *n)
{
    char *p = buf[0] == '/' ? buf + 1 : buf;
    size_t count = 0;
    if (*p == '\0') {
        *n = 0;
        return 0;
    }
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (*p == '\0')
            return kraken__err(KRAKEN_EPARSE, "URL '%s': empty path component (component %zu)",
                               url, count + 1);
        if (count == URL_MAX_COMPONENTS)
            return kraken__err(KRAKEN_EPARSE, "URL '%s': more than %d components", url,
                               URL_MAX_COMPONENTS);
        comps[count++] = p;
        if (!slash)
            break;
        p = slash + 1;
    }
    *n = count;
    return 0;
}

static int parse_index(const char *url, const char *c, size_t *out)
{
    size_t v = 0;
    if (*c == '\0')
        return kraken__err(KRAKEN_EPARSE, "URL '%s': empty list index", url);
    for (const char *p = c; *p; p++) {
        if (*p < '0' || *p > '9')
            return kraken__err(KRAKEN_EPARSE, "URL '%s': list index '%s' is not a number", url, c);
        if (v > (SIZE_MAX - 9) / 10)
            return kraken__err(KRAKEN_EPARSE, "URL '%s': list index '%s' is too large", url, c);
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return 0;
}

/* The schema's list of polymorphic records keyed by type (kraken.Node's extensions). */
static const kraken_field *type_keyed_field(const struct kraken_schema *s, size_t *pos)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        if (s->fields[i].type == KRAKEN_T_LIST && s->fields[i].list_key == KRAKEN_KEY_TYPE) {
            *pos = i;
            return &s->fields[i];
        }
    }
    return NULL;
}

/* "type.googleapis.com" "<Name>": the schema named by the component pair at comps[i]. */
static int named_schema(const char *url, char *const *comps, size_t n, size_t i,
                        const struct kraken_schema **out)
{
    if (i + 1 >= n)
        return kraken__err(KRAKEN_EPARSE, "URL '%s': '%s' must be followed by a schema name", url,
                           TYPE_HOST);
    *out = kraken_schema_find(comps[i + 1]);
    if (!*out)
        return kraken__err(KRAKEN_EPARSE, "URL '%s': unknown schema '%s'", url, comps[i + 1]);
    return 0;
}

static size_t field_pos(const struct kraken_schema *s, const kraken_field *f)
{
    return (size_t)(f - s->fields);
}

/*
 * Turn components into steps, starting at a record of @p schema. Each
 * component yields at most one step, so @p steps needs room for @p n.
 * Stops early at a polymorphic record with no type component: *tail_at is
 * the first unresolved component (n when all resolved).
 */
static int resolve(const struct kraken_schema *schema, char *const *comps, size_t n,
                   url_step *steps, size_t *n_steps, size_t *tail_at, const char *url)
{
    const kraken_field *f = NULL;
    kraken_type t = KRAKEN_T_RECORD;
    const struct kraken_schema *s = schema;
    size_t ns = 0, i = 0;
    int rc;

    while (i < n) {
        const char *c = comps[i];
        url_step *st = &steps[ns];
        memset(st, 0, sizeof *st);
        st->comp = c;
        if (t == KRAKEN_T_RECORD && is_type_host(c)) {
            const struct kraken_schema *x;
            if ((rc = named_schema(url, comps, n, i, &x)) != 0)
                return rc;
            if (s == NULL) { /* polymorphic record of a named type */
                *st = (url_step){.kind = STEP_TYPED, .type = KRAKEN_T_RECORD, .field = f,
                                 .schema = x, .comp = comps[i + 1]};
            } else { /* extension shorthand: the record's type-keyed list, then the element */
                size_t pos;
                const kraken_field *lf = type_keyed_field(s, &pos);
                if (!lf)
                    return kraken__err(KRAKEN_EPARSE, "URL '%s': %s has no extensions", url,
                                       s->name);
                *st = (url_step){.kind = STEP_FIELD, .type = KRAKEN_T_LIST, .field = lf,
                                 .schema = s, .index = pos, .comp = NULL};
                st = &steps[++ns];
                *st = (url_step){.kind = STEP_EXT, .type = KRAKEN_T_RECORD, .field = lf,
                                 .schema = x, .comp = comps[i + 1]};
                f = lf;
            }
            ns++;
            s = x;
            i += 2;
            continue;
        }
        switch (t) {
        case KRAKEN_T_RECORD: {
            if (s == NULL) {
                *n_steps = ns;
                *tail_at = i;
                return 0;
            }
            const kraken_field *fld = kraken__schema_field(s, c, strlen(c));
            if (!fld)
                return kraken__err(KRAKEN_EPARSE, "URL '%s': %s has no field '%s'", url, s->name,
                                   c);
            *st = (url_step){.kind = STEP_FIELD, .type = fld->type, .field = fld, .schema = s,
                             .index = field_pos(s, fld), .comp = c};
            f = fld;
            t = fld->type;
            s = t == KRAKEN_T_RECORD ? fld->record : NULL;
            break;
        }
        case KRAKEN_T_MAP:
            *st = (url_step){.kind = STEP_MAP, .type = f->elem_type, .field = f, .key = c,
                             .key_len = strlen(c), .comp = c};
            t = f->elem_type;
            s = t == KRAKEN_T_RECORD ? f->record : NULL;
            break;
        case KRAKEN_T_LIST:
            if (f->list_key == KRAKEN_KEY_TYPE) {
                const struct kraken_schema *x;
                if (!is_type_host(c))
                    return kraken__err(KRAKEN_EPARSE,
                                       "URL '%s': elements of '%s' are named by '%s/<Schema>', "
                                       "not '%s'", url, f->url_name, TYPE_HOST, c);
                if ((rc = named_schema(url, comps, n, i, &x)) != 0)
                    return rc;
                *st = (url_step){.kind = STEP_EXT, .type = KRAKEN_T_RECORD, .field = f,
                                 .schema = x, .comp = comps[i + 1]};
                ns++;
                i += 2;
                t = KRAKEN_T_RECORD;
                s = x;
                continue;
            }
            if (f->list_key == KRAKEN_KEY_FIELD) {
                *st = (url_step){.kind = STEP_KEYED, .type = f->elem_type, .field = f, .key = c,
                                 .key_len = strlen(c), .index = f->key_field, .comp = c};
            } else {
                size_t idx = 0;
                if ((rc = parse_index(url, c, &idx)) != 0)
                    return rc;
                *st = (url_step){.kind = STEP_INDEX, .type = f->elem_type, .field = f,
                                 .index = idx, .comp = c};
            }
            t = f->elem_type;
            s = t == KRAKEN_T_RECORD ? f->record : NULL;
            break;
        default:
            return kraken__err(KRAKEN_EPARSE, "URL '%s': '%s' is a %s value and has no component '%s'",
                               url, i > 0 ? comps[i - 1] : "", kraken_type_name(t), c);
        }
        ns++;
        i++;
    }
    *n_steps = ns;
    *tail_at = n;
    return 0;
}

/* ---- canonical text ------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* "/" + UpperCamel field names, keys as given, extensions as "type.googleapis.com/<Name>". */
static char *canonical_text(const url_step *st, size_t n, char *const *tail, size_t n_tail)
{
    strbuf b = {0};
    char num[32];
    for (size_t i = 0; i < n; i++) {
        switch (st[i].kind) {
        case STEP_FIELD:
            /* The node's extension list is implied by the extension component. */
            if (i == 0 && i + 1 < n && st[i + 1].kind == STEP_EXT)
                break;
            sb_add(&b, "/");
            sb_add(&b, st[i].field->url_name);
            break;
        case STEP_TYPED:
        case STEP_EXT:
            if (b.len > 0)
                sb_add(&b, "/");
            sb_add(&b, TYPE_HOST "/");
            sb_add(&b, st[i].schema->name);
            break;
        case STEP_MAP:
        case STEP_KEYED:
            sb_add(&b, "/");
            sb_add(&b, st[i].key);
            break;
        case STEP_INDEX:
            snprintf(num, sizeof num, "/%zu", st[i].index);
            sb_add(&b, num);
            break;
        }
    }
    for (size_t i = 0; i < n_tail; i++) {
        sb_add(&b, "/");
        sb_add(&b, tail[i]);
    }
    if (b.len == 0)
        sb_add(&b, "/");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- compiled URLs --------------------------------------------------------- */

void kraken__url_free(kraken_url *url)
{
    if (!url)
        return;
    free(url->orig);
    free(url->buf);
    free(url->text);
    free(url->tail);
    free(url);
}

int kraken__url_compile(const char *text, kraken_url **out)
{
    char *comps[URL_MAX_COMPONENTS];
    url_step steps[URL_MAX_COMPONENTS];
    size_t nc = 0, ns = 0, tail_at = 0;
    int rc;

    if (!text || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken__url_compile: NULL argument");
    kraken__schemas_init();
    /* Keys taken from a URL (map keys, service ids) end up in nodes: UTF-8 only. */
    if (!kraken__utf8_valid(text, strlen(text)))
        return kraken__err(KRAKEN_EPARSE, "URL is not valid UTF-8");
    char *buf = strdup(text);
    if (!buf)
        return kraken__err(KRAKEN_ENOMEM, "URL '%s': out of memory", text);
    if ((rc = split_components(text, buf, comps, &nc)) != 0 ||
        (rc = resolve(kraken__node_schema(), comps, nc, steps, &ns, &tail_at, text)) != 0) {
        free(buf);
        return rc;
    }
    kraken_url *u = calloc(1, sizeof *u + ns * sizeof(url_step));
    if (!u) {
        free(buf);
        return kraken__err(KRAKEN_ENOMEM, "URL '%s': out of memory", text);
    }
    u->buf = buf;
    u->n_steps = ns;
    memcpy(u->steps, steps, ns * sizeof(url_step));
    u->n_tail = nc - tail_at;
    if (u->n_tail) {
        u->tail = malloc(u->n_tail * sizeof(char *));
        if (u->tail)
            memcpy(u->tail, comps + tail_at, u->n_tail * sizeof(char *));
    }
    u->orig = strdup(text);
    u->text = canonical_text(u->steps, ns, u->tail, u->tail ? u->n_tail : 0);
    if (!u->orig || !u->text || (u->n_tail && !u->tail)) {
        kraken__url_free(u);
        return kraken__err(KRAKEN_ENOMEM, "URL '%s': out of memory", text);
    }
    *out = u;
    return 0;
}

const char *kraken__url_text(const kraken_url *url)
{
    return url ? url->text : NULL;
}

kraken_type kraken__url_type(const kraken_url *url)
{
    const kraken_field *f;
    kraken_type t;
    if (!url || url->n_tail)
        return KRAKEN_T_NONE;
    final_desc(url->steps, url->n_steps, &f, &t);
    return t;
}

const struct kraken_enum_type *kraken__url_enum(const kraken_url *url)
{
    if (!url || url->n_tail || url->n_steps == 0)
        return NULL;
    const url_step *last = &url->steps[url->n_steps - 1];
    return last->type == KRAKEN_T_ENUM ? last->field->enm : NULL;
}

/* ---- per-thread cache of compiled URLs ---------------------------------- */

typedef struct url_cache {
    uint64_t hash[URL_CACHE_SIZE];
    kraken_url *url[URL_CACHE_SIZE];
    unsigned next;
} url_cache;

static __thread url_cache *tls_cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static bool cache_key_ok;

static void cache_destroy(void *p)
{
    url_cache *c = p;
    tls_cache = NULL; /* a later destructor in this thread may still call us */
    for (size_t i = 0; i < URL_CACHE_SIZE; i++)
        kraken__url_free(c->url[i]);
    free(c);
}

static void cache_key_init(void)
{
    cache_key_ok = pthread_key_create(&cache_key, cache_destroy) == 0;
}

/* This thread's cache (freed at thread exit), or NULL if it cannot be made. */
static url_cache *cache_get(void)
{
    if (tls_cache)
        return tls_cache;
    pthread_once(&cache_once, cache_key_init);
    if (!cache_key_ok)
        return NULL;
    url_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pthread_setspecific(cache_key, c) != 0) {
        free(c);
        return NULL;
    }
    tls_cache = c;
    return c;
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/*
 * A compiled URL for @p text, borrowed from the cache (valid until this
 * thread's next miss) or owned by the caller when *owned is set.
 */
static int url_acquire(const char *text, kraken_url **out, bool *owned)
{
    url_cache *c = cache_get();
    uint64_t h = hash_text(text);
    *owned = false;
    if (c) {
        for (size_t i = 0; i < URL_CACHE_SIZE; i++) {
            if (c->url[i] && c->hash[i] == h && strcmp(c->url[i]->orig, text) == 0) {
                *out = c->url[i];
                return 0;
            }
        }
    }
    kraken_url *u;
    int rc = kraken__url_compile(text, &u);
    if (rc)
        return rc;
    if (c) {
        unsigned slot = c->next++ % URL_CACHE_SIZE;
        kraken__url_free(c->url[slot]);
        c->url[slot] = u;
        c->hash[slot] = h;
    } else {
        *owned = true;
    }
    *out = u;
    return 0;
}

static void url_release(kraken_url *u, bool owned)
{
    if (owned)
        kraken__url_free(u);
}

/* ---- walking ------------------------------------------------------------- */

/* Service instances by id (binary search in the sorted list); *pos = index or insertion point. */
static bool keyed_search(const url_step *st, const kraken_list *l, size_t *pos)
{
    bool found;
    *pos = kraken__list_keyed_pos(st->field, l, st->key, st->key_len, &found);
    return found;
}

/* Extensions are few: find by schema pointer; the insertion point keeps them sorted by name. */
static bool ext_search(const kraken_list *l, const struct kraken_schema *s, size_t *pos)
{
    size_t n = l ? l->n : 0, ins = n;
    for (size_t i = 0; i < n; i++) {
        const kraken_record *r = l->items[i].rec;
        if (r && r->schema == s) {
            *pos = i;
            return true;
        }
        if (ins == n && r && strcmp(r->schema->name, s->name) > 0)
            ins = i;
    }
    *pos = ins;
    return false;
}

/* One step down from @p cur, or NULL when what it names is absent. No allocation. */
static inline const kraken_slot *step_read(const url_step *st, const kraken_slot *cur)
{
    size_t pos;
    switch (st->kind) {
    case STEP_FIELD:
        return cur->rec ? &cur->rec->slots[st->index] : NULL;
    case STEP_TYPED:
        return cur->rec && cur->rec->schema == st->schema ? cur : NULL;
    case STEP_MAP: {
        const kraken_map_entry *e = cur->map ? kraken__map_find(cur->map, st->key, st->key_len)
                                             : NULL;
        return e ? &e->value : NULL;
    }
    case STEP_INDEX:
        return cur->list && st->index < cur->list->n ? &cur->list->items[st->index] : NULL;
    case STEP_KEYED:
        return keyed_search(st, cur->list, &pos) ? &cur->list->items[pos] : NULL;
    case STEP_EXT:
        return ext_search(cur->list, st->schema, &pos) ? &cur->list->items[pos] : NULL;
    }
    return NULL;
}

typedef enum walk_result {
    WALK_FOUND,  /* *slot is the value */
    WALK_ZERO,   /* a record on the way is absent: the value is the zero value */
    WALK_MISSING /* a map entry, list element, service, extension or config type is absent */
} walk_result;

static walk_result walk_read(const url_step *st, size_t n, const kraken_slot *root,
                             const kraken_slot **out, size_t *failed)
{
    const kraken_slot *cur = root;
    for (size_t j = 0; j < n; j++) {
        const kraken_slot *next = step_read(&st[j], cur);
        if (next) {
            cur = next;
            continue;
        }
        *failed = j;
        if ((st[j].kind != STEP_FIELD && st[j].kind != STEP_TYPED) || cur->rec)
            return WALK_MISSING;
        /* Absent record: its fields read as zero, but keys below it name nothing. */
        for (size_t k = j + 1; k < n; k++) {
            if (st[k].kind != STEP_FIELD && st[k].kind != STEP_TYPED) {
                *failed = k;
                return WALK_MISSING;
            }
        }
        return WALK_ZERO;
    }
    *out = cur;
    return WALK_FOUND;
}

static int not_found(const kraken_url *u, const url_step *st)
{
    const char *what;
    switch (st->kind) {
    case STEP_MAP: what = "no map entry"; break;
    case STEP_INDEX: what = "no list element"; break;
    case STEP_KEYED: what = "no service"; break;
    case STEP_EXT: what = "no extension"; break;
    case STEP_TYPED: what = "the service config is not a"; break;
    default: what = "nothing at"; break;
    }
    return kraken__err(KRAKEN_ENOTFOUND, "URL '%s': %s '%s'", u->orig, what,
                       st->comp ? st->comp : "");
}

/*
 * The URL's full step list for @p node. Without a tail that is the compiled
 * steps; with one, the tail is resolved against the node's service config
 * into @p buf (URL_MAX_COMPONENTS entries). The config must exist.
 */
static int node_steps(const kraken_url *u, const kraken_node *node, url_step *buf,
                      const url_step **steps, size_t *n)
{
    if (!u->n_tail) {
        *steps = u->steps;
        *n = u->n_steps;
        return 0;
    }
    kraken_slot root = {.rec = (kraken_record *)&node->rec};
    const kraken_slot *cfg = NULL;
    size_t failed = 0, nt, tail_at;
    int rc;
    if (walk_read(u->steps, u->n_steps, &root, &cfg, &failed) != WALK_FOUND || !cfg->rec)
        return kraken__err(KRAKEN_ENOTFOUND,
                           "URL '%s': the service config is absent, so '%s' cannot be resolved "
                           "(name its type: Config/%s/<Schema>/...)",
                           u->orig, u->tail[0], TYPE_HOST);
    memcpy(buf, u->steps, u->n_steps * sizeof(url_step));
    rc = resolve(cfg->rec->schema, u->tail, u->n_tail, buf + u->n_steps, &nt, &tail_at, u->orig);
    if (rc)
        return rc;
    if (tail_at != u->n_tail)
        return kraken__err(KRAKEN_EPARSE, "URL '%s': '%s' is a record of any type; name its type "
                           "with %s/<Schema>", u->orig, u->tail[tail_at], TYPE_HOST);
    *steps = buf;
    *n = u->n_steps + nt;
    return 0;
}

/* ---- reads ----------------------------------------------------------------- */

const kraken_slot *kraken__url_peek(const kraken_url *url, const kraken_node *node)
{
    if (!url || !node)
        return NULL;
    const url_step *st = url->steps;
    size_t n = url->n_steps;
    url_step buf[URL_MAX_COMPONENTS];
    if (url->n_tail && node_steps(url, node, buf, &st, &n) != 0)
        return NULL;
    /* The first step is always a field of the node (the whole node is not a slot). */
    if (n == 0 || st[0].kind != STEP_FIELD)
        return NULL;
    const kraken_slot *cur = &node->rec.slots[st[0].index];
    for (size_t j = 1; j < n && cur; j++)
        cur = step_read(&st[j], cur);
    return cur;
}

static int get_steps(const kraken_url *u, const url_step *st, size_t n, const kraken_node *node,
                     kraken_value *out)
{
    kraken_slot root = {.rec = (kraken_record *)&node->rec};
    const kraken_slot *slot = NULL;
    const kraken_field *f;
    kraken_type t;
    size_t failed = 0;
    final_desc(st, n, &f, &t);
    switch (walk_read(st, n, &root, &slot, &failed)) {
    case WALK_FOUND:
        return kraken__slot_to_value(f, t, slot, out);
    case WALK_ZERO:
        return kraken__slot_to_value(f, t, &zero_slot, out);
    case WALK_MISSING:
        break;
    }
    return not_found(u, &st[failed]);
}

int kraken__url_get(const kraken_url *url, const kraken_node *node, kraken_value *out)
{
    url_step buf[URL_MAX_COMPONENTS];
    const url_step *st;
    size_t n;
    int rc;
    if (!url || !node || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken__url_get: NULL argument");
    if ((rc = node_steps(url, node, buf, &st, &n)) != 0)
        return rc;
    return get_steps(url, st, n, node, out);
}

/* ---- writes ---------------------------------------------------------------- */

static int oom(const char *url)
{
    return kraken__err(KRAKEN_ENOMEM, "URL '%s': out of memory", url);
}

/* Insert @p e at @p pos, creating the list if needed. The list is unchanged on failure. */
static int list_insert(kraken_list **lp, size_t pos, kraken_slot e)
{
    kraken_slot *item = kraken__list_insert(lp, pos);
    if (!item)
        return KRAKEN_ENOMEM;
    *item = e;
    return 0;
}

/* Remove element @p pos; an emptied list is freed so the node stays as if never set. */
static void list_remove(const kraken_field *f, kraken_slot *list_slot, size_t pos)
{
    kraken__list_remove(f, list_slot->list, pos);
    if (list_slot->list->n == 0)
        kraken__slot_free(f, KRAKEN_T_LIST, list_slot);
}

static void map_remove(const kraken_field *f, kraken_slot *map_slot, const char *key, size_t len)
{
    if (!map_slot->map)
        return;
    kraken__map_remove(f, map_slot->map, key, len);
    if (map_slot->map->n == 0)
        kraken__slot_free(f, KRAKEN_T_MAP, map_slot);
}

/* A keyed element carries its key: fill it in when empty, refuse a different one. */
static int ensure_key(const url_step *st, kraken_slot *e, const char *url)
{
    char **k = &e->rec->slots[st->index].s;
    if (*k && **k) {
        if (strcmp(*k, st->key) != 0)
            return kraken__err(KRAKEN_EINVAL, "URL '%s': element has key '%s', URL names '%s'",
                               url, *k, st->key);
        return 0;
    }
    char *dup = strdup(st->key);
    if (!dup)
        return oom(url);
    free(*k);
    *k = dup;
    return 0;
}

/*
 * Wrap @p e (the value of step @p st) into a new container holding just it:
 * afterwards @p e is the content of the slot before @p st. On failure @p e is freed.
 */
static int wrap(const url_step *st, kraken_slot *e, const char *url)
{
    kraken_slot c = {0};
    int rc = KRAKEN_ENOMEM;
    switch (st->kind) {
    case STEP_FIELD:
        if (!(c.rec = kraken__record_new(st->schema)))
            goto fail;
        c.rec->slots[st->index] = *e;
        break;
    case STEP_TYPED:
        return 0; /* the record is its own container */
    case STEP_MAP: {
        kraken_map_entry *en = kraken__map_insert(&c.map, st->key, st->key_len);
        if (!en) {
            kraken__slot_free(st->field, KRAKEN_T_MAP, &c);
            goto fail;
        }
        en->value = *e;
        break;
    }
    case STEP_KEYED:
        if ((rc = ensure_key(st, e, url)) != 0)
            goto fail;
        rc = KRAKEN_ENOMEM;
        /* fall through */
    case STEP_INDEX:
    case STEP_EXT:
        if (list_insert(&c.list, 0, *e) != 0)
            goto fail;
        break;
    }
    *e = c;
    return 0;
fail:
    kraken__slot_free(st->field, st->type, e);
    return rc == KRAKEN_ENOMEM ? oom(url) : rc;
}

/* Put @p e (the value of step @p st) into the existing container @p cur. On failure @p e is freed. */
static int attach(const url_step *st, kraken_slot *cur, kraken_slot *e, const char *url)
{
    size_t pos;
    int rc;
    switch (st->kind) {
    case STEP_FIELD: {
        kraken_record *r = kraken__record_new(st->schema);
        if (!r)
            goto fail;
        r->slots[st->index] = *e;
        cur->rec = r;
        return 0;
    }
    case STEP_TYPED:
        cur->rec = e->rec;
        return 0;
    case STEP_MAP: {
        kraken_map_entry *en = kraken__map_insert(&cur->map, st->key, st->key_len);
        if (!en)
            goto fail;
        en->value = *e;
        return 0;
    }
    case STEP_INDEX:
        pos = cur->list ? cur->list->n : 0;
        break;
    case STEP_KEYED:
        if ((rc = ensure_key(st, e, url)) != 0) {
            kraken__slot_free(st->field, st->type, e);
            return rc;
        }
        keyed_search(st, cur->list, &pos);
        break;
    case STEP_EXT:
        ext_search(cur->list, st->schema, &pos);
        break;
    default:
        goto fail;
    }
    if (list_insert(&cur->list, pos, *e) == 0)
        return 0;
fail:
    kraken__slot_free(st->field, st->type, e);
    return oom(url);
}

/*
 * Check that the missing part of the path, from step @p j on, can be created
 * (@p cur is the existing slot before step j).
 */
static int check_creatable(const url_step *st, size_t n, size_t j, const kraken_slot *cur,
                           const char *url)
{
    for (size_t k = j; k < n; k++) {
        if (st[k].kind == STEP_TYPED && k == j && cur->rec)
            return kraken__err(KRAKEN_ETYPE, "URL '%s': the service config is a %s, not a %s",
                               url, cur->rec->schema->name, st[k].schema->name);
        if (st[k].kind == STEP_INDEX) {
            size_t len = k == j && cur->list ? cur->list->n : 0;
            if (st[k].index != len)
                return kraken__err(KRAKEN_ENOTFOUND,
                                   "URL '%s': list index %zu is beyond the end (length %zu)", url,
                                   st[k].index, len);
        }
    }
    return 0;
}

/* Make the converted value fit where the URL puts it (element records, keys, schemas). */
static int fit_value(const url_step *st, size_t n, kraken_slot *v, const char *url)
{
    if (n == 0)
        return 0;
    const url_step *last = &st[n - 1];
    if (last->kind == STEP_FIELD && n >= 2 && st[n - 2].kind == STEP_KEYED &&
        last->index == st[n - 2].index) {
        if (strcmp(v->s ? v->s : "", st[n - 2].key) != 0)
            return kraken__err(KRAKEN_EINVAL, "URL '%s': cannot change the key '%s'", url,
                               st[n - 2].key);
        return 0;
    }
    if (last->type != KRAKEN_T_RECORD)
        return 0;
    const struct kraken_schema *want = NULL;
    if (last->kind == STEP_EXT || last->kind == STEP_TYPED)
        want = last->schema;
    else if (last->kind == STEP_INDEX || last->kind == STEP_KEYED)
        want = last->field->record;
    if (want && v->rec && v->rec->schema != want)
        return kraken__err(KRAKEN_ETYPE, "URL '%s': expected a %s record, got a %s", url,
                           want->name, v->rec->schema->name);
    /* List elements are never absent records. */
    if (want && !v->rec && last->kind != STEP_TYPED && !(v->rec = kraken__record_new(want)))
        return oom(url);
    if (last->kind == STEP_KEYED)
        return ensure_key(last, v, url);
    return 0;
}

/* Replace the whole node's content with @p rec's (NULL: clear it); consumes @p rec. */
static void replace_node(kraken_node *node, kraken_record *rec)
{
    const struct kraken_schema *s = node->rec.schema;
    for (size_t i = 0; i < s->n_fields; i++) {
        kraken__slot_free(&s->fields[i], s->fields[i].type, &node->rec.slots[i]);
        node->rec.slots[i] = zero_slot;
    }
    if (rec) {
        memcpy(node->rec.slots, rec->slots, s->n_fields * sizeof(kraken_slot));
        memset(rec->slots, 0, s->n_fields * sizeof(kraken_slot));
        kraken__record_free(rec);
    }
}

static int set_steps(kraken_node *node, const url_step *st, size_t n, const char *url,
                     const kraken_value *v)
{
    kraken_slot root = {.rec = &node->rec};
    kraken_slot *cur = &root;
    const kraken_field *f;
    kraken_type t;
    size_t j;
    int rc;

    /* Find where the existing path ends and check the rest can be created. */
    for (j = 0; j < n; j++) {
        kraken_slot *next = (kraken_slot *)step_read(&st[j], cur);
        if (!next)
            break;
        cur = next;
    }
    if ((rc = check_creatable(st, n, j, cur, url)) != 0)
        return rc;

    final_desc(st, n, &f, &t);
    kraken_slot nv = {0};
    if ((rc = kraken__value_to_slot(f, t, v, &nv, url)) != 0)
        return rc;
    if ((rc = fit_value(st, n, &nv, url)) != 0) {
        kraken__slot_free(f, t, &nv);
        return rc;
    }
    if (n == 0) {
        if (nv.rec && nv.rec->schema != node->rec.schema) {
            kraken__slot_free(f, t, &nv);
            return kraken__err(KRAKEN_ETYPE, "URL '%s': expected a %s record", url,
                               node->rec.schema->name);
        }
        replace_node(node, nv.rec);
        return 0;
    }
    if (j == n) { /* everything exists: replace the value */
        kraken__slot_free(f, t, cur);
        *cur = nv;
        return 0;
    }
    /* Build the missing part aside, then hang it in with one operation. */
    for (size_t k = n - 1; k > j; k--)
        if ((rc = wrap(&st[k], &nv, url)) != 0)
            return rc;
    return attach(&st[j], cur, &nv, url);
}

int kraken__url_set(const kraken_url *url, kraken_node *node, const kraken_value *v)
{
    url_step buf[URL_MAX_COMPONENTS];
    const url_step *st;
    size_t n;
    int rc;
    if (!url || !node || !v)
        return kraken__err(KRAKEN_EINVAL, "kraken__url_set: NULL argument");
    if ((rc = node_steps(url, node, buf, &st, &n)) != 0)
        return rc;
    return set_steps(node, st, n, url->orig, v);
}

static int unset_steps(kraken_node *node, const url_step *st, size_t n, const char *url)
{
    kraken_slot root = {.rec = &node->rec};
    kraken_slot *cur = &root;
    size_t pos;
    if (n == 0) {
        replace_node(node, NULL);
        return 0;
    }
    for (size_t j = 0; j + 1 < n; j++) {
        cur = (kraken_slot *)step_read(&st[j], cur);
        if (!cur)
            return 0;
    }
    const url_step *last = &st[n - 1];
    switch (last->kind) {
    case STEP_FIELD:
        if (!cur->rec)
            return 0;
        if (n >= 2 && st[n - 2].kind == STEP_KEYED && last->index == st[n - 2].index)
            return kraken__err(KRAKEN_EINVAL, "URL '%s': cannot unset the key '%s'", url,
                               st[n - 2].key);
        kraken__slot_free(last->field, last->type, &cur->rec->slots[last->index]);
        cur->rec->slots[last->index] = zero_slot;
        return 0;
    case STEP_TYPED:
        if (cur->rec && cur->rec->schema == last->schema) {
            kraken__slot_free(last->field, KRAKEN_T_RECORD, cur);
            cur->rec = NULL;
        }
        return 0;
    case STEP_MAP:
        map_remove(last->field, cur, last->key, last->key_len);
        return 0;
    case STEP_INDEX:
        if (cur->list && last->index < cur->list->n)
            list_remove(last->field, cur, last->index);
        return 0;
    case STEP_KEYED:
        if (keyed_search(last, cur->list, &pos))
            list_remove(last->field, cur, pos);
        return 0;
    case STEP_EXT:
        if (ext_search(cur->list, last->schema, &pos))
            list_remove(last->field, cur, pos);
        return 0;
    }
    return 0;
}

/* ---- public API -------------------------------------------------------------- */

int kraken_node_get(const kraken_node *node, const char *url, kraken_value *out)
{
    kraken_url *u;
    bool owned;
    int rc;
    if (!node || !url || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_get: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    rc = kraken__url_get(u, node, out);
    url_release(u, owned);
    return rc;
}

int kraken_node_set(kraken_node *node, const char *url, const kraken_value *value)
{
    kraken_url *u;
    bool owned;
    int rc;
    if (!node || !url || !value)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_set: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    rc = kraken__url_set(u, node, value);
    url_release(u, owned);
    return rc;
}

int kraken_node_get_text(const kraken_node *node, const char *url, char **out)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_get_text: NULL argument");
    int rc = kraken_node_get(node, url, &v);
    if (rc)
        return rc;
    rc = kraken_value_format(&v, out);
    kraken_value_clear(&v);
    return rc;
}

int kraken_node_set_text(kraken_node *node, const char *url, const char *text)
{
    url_step buf[URL_MAX_COMPONENTS];
    const url_step *st;
    const kraken_field *f;
    kraken_type t;
    kraken_url *u;
    bool owned;
    size_t n;
    int rc;
    if (!node || !url || !text)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_set_text: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    if ((rc = node_steps(u, node, buf, &st, &n)) == 0) {
        kraken_value v = KRAKEN_VALUE_INIT;
        final_desc(st, n, &f, &t);
        rc = kraken__value_parse(f, t, text, &v);
        if (rc)
            rc = kraken__err_prefix(rc, "URL '%s'", url);
        else
            rc = set_steps(node, st, n, url, &v);
        kraken_value_clear(&v);
    }
    url_release(u, owned);
    return rc;
}

int kraken_node_unset(kraken_node *node, const char *url)
{
    url_step buf[URL_MAX_COMPONENTS];
    const url_step *st;
    kraken_url *u;
    bool owned;
    size_t n;
    int rc;
    if (!node || !url)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_unset: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    rc = node_steps(u, node, buf, &st, &n);
    if (rc == KRAKEN_ENOTFOUND) /* no config to resolve against: nothing to remove */
        rc = 0;
    else if (rc == 0)
        rc = unset_steps(node, st, n, url);
    url_release(u, owned);
    return rc;
}

/* The compiled URL's final descriptor, which needs no node (no unresolved tail). */
static int static_desc(const kraken_url *u, const kraken_field **f, kraken_type *t)
{
    if (u->n_tail)
        return kraken__err(KRAKEN_ENOTFOUND,
                           "URL '%s': the type of the service config is not known without a node; "
                           "name it: Config/%s/<Schema>/...",
                           u->orig, TYPE_HOST);
    final_desc(u->steps, u->n_steps, f, t);
    return 0;
}

int kraken_url_type(const char *url, kraken_type *type, const struct kraken_enum_type **enum_type)
{
    const kraken_field *f = NULL;
    kraken_type t = KRAKEN_T_NONE;
    kraken_url *u;
    bool owned;
    int rc;
    if (!url || !type)
        return kraken__err(KRAKEN_EINVAL, "kraken_url_type: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    if ((rc = static_desc(u, &f, &t)) == 0) {
        *type = t;
        if (enum_type)
            *enum_type = t == KRAKEN_T_ENUM ? f->enm : NULL;
    }
    url_release(u, owned);
    return rc;
}

int kraken_url_parse_value(const char *url, const char *text, kraken_value *out)
{
    const kraken_field *f = NULL;
    kraken_type t = KRAKEN_T_NONE;
    kraken_url *u;
    bool owned;
    int rc;
    if (!url || !text || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken_url_parse_value: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    if ((rc = static_desc(u, &f, &t)) == 0) {
        rc = kraken__value_parse(f, t, text, out);
        if (rc)
            rc = kraken__err_prefix(rc, "URL '%s'", url);
    }
    url_release(u, owned);
    return rc;
}

int kraken_url_split(const char *qualified, kraken_uuid *id, const char **path)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!qualified || !id || !path)
        return kraken__err(KRAKEN_EINVAL, "kraken_url_split: NULL argument");
    const char *colon = strchr(qualified, ':');
    if (!colon)
        return kraken__err(KRAKEN_EPARSE, "URL '%s': expected '<uuid>:<path>'", qualified);
    if (colon - qualified != KRAKEN_UUID_STRLEN)
        return kraken__err(KRAKEN_EPARSE, "URL '%s': '%.*s' is not a UUID", qualified,
                           (int)(colon - qualified), qualified);
    memcpy(buf, qualified, KRAKEN_UUID_STRLEN);
    buf[KRAKEN_UUID_STRLEN] = '\0';
    kraken_uuid tmp;
    int rc = kraken_uuid_parse(&tmp, buf);
    if (rc)
        return kraken__err(rc, "URL '%s': '%s' is not a UUID", qualified, buf);
    *id = tmp;
    *path = colon + 1;
    return 0;
}

int kraken_url_canonical(const char *url, char **out)
{
    kraken_url *u;
    bool owned;
    int rc;
    if (!url || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken_url_canonical: NULL argument");
    if ((rc = url_acquire(url, &u, &owned)) != 0)
        return rc;
    char *s = strdup(u->text);
    url_release(u, owned);
    if (!s)
        return oom(url);
    *out = s;
    return 0;
}
