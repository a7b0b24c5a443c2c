/*
 * The Cfg/Dsc store (SPEC 2).
 *
 * Nodes live in one open-addressing hash table (linear probing, backward-shift
 * deletion, no tombstones) keyed by node id. An entry holds the id and the two
 * stored nodes, so a node costs 32 bytes of table plus its Cfg and Dsc records.
 *
 * Every write is validated and prepared aside first, then applied by swapping
 * pointers, and only then reported to the listeners: a failed write changes
 * nothing and reports nothing. While listeners run, the store refuses writes
 * (KRAKEN_ESTATE): a listener that wrote would see its change reported in the
 * middle of another change's report, out of order.
 */
#include <stdlib.h>
#include <string.h>

#include "store_private.h"
#include "url_private.h"

typedef struct store_entry {
    kraken_uuid id;
    kraken_node *cfg; /* NULL marks an empty slot */
    kraken_node *dsc;
} store_entry;

/*
 * Lifetime (see store.h): a listener whose handle the caller asked for is the
 * caller's until kraken_store_listener_remove(). The store's free only detaches
 * it (store = NULL, destroy hook run) and the later remove frees the shell. A
 * listener registered without an out handle belongs to the store.
 */
struct kraken_store_listener {
    kraken_store *store; /* NULL once detached by the store's free */
    kraken_store_listener_fn fn;
    void *userdata;
    void (*destroy)(void *userdata);
    bool removed;      /* removed while listeners were running; freed by the sweep */
    bool caller_owned; /* the caller holds the handle and has not removed it yet */
    bool detaching;    /* its destroy hook runs as the store goes: a remove only disowns it */
};

struct kraken_store {
    store_entry *slots;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t count;

    kraken_store_listener **listeners;
    size_t n_listeners, cap_listeners;
    unsigned emitting;  /* depth of listener dispatch; writes are refused while > 0 */
    bool need_sweep;    /* some listener was removed during dispatch */
    kraken__owner owner;
};

#define STORE_MIN_CAP 16

static const kraken_value none_value = KRAKEN_VALUE_INIT;

/* ---- hash table ------------------------------------------------------------ */

/* Ids are usually random, but tests and sites also use sequential ones: mix all 16 bytes. */
static size_t uuid_hash(const kraken_uuid *id)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    uint64_t h = a ^ (b * 0x9e3779b97f4a7c15ull);
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return (size_t)h;
}

static bool uuid_eq(const kraken_uuid *a, const kraken_uuid *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

static store_entry *table_find(const kraken_store *s, const kraken_uuid *id)
{
    if (s->cap == 0)
        return NULL;
    size_t mask = s->cap - 1;
    for (size_t i = uuid_hash(id) & mask;; i = (i + 1) & mask) {
        store_entry *e = &s->slots[i];
        if (!e->cfg)
            return NULL;
        if (uuid_eq(&e->id, id))
            return e;
    }
}

/* Place an entry known to be absent; the table must have room. */
static void table_place(store_entry *slots, size_t cap, const store_entry *entry)
{
    size_t mask = cap - 1;
    size_t i = uuid_hash(&entry->id) & mask;
    while (slots[i].cfg)
        i = (i + 1) & mask;
    slots[i] = *entry;
}

static int table_resize(kraken_store *s, size_t new_cap)
{
    store_entry *slots = calloc(new_cap, sizeof *slots);
    if (!slots)
        return kraken__err(KRAKEN_ENOMEM, "store: out of memory growing the table to %zu slots",
                           new_cap);
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].cfg)
            table_place(slots, new_cap, &s->slots[i]);
    free(s->slots);
    s->slots = slots;
    s->cap = new_cap;
    return 0;
}

/*
 * Make sure @p n more entries fit under the maximum load (7/8), so inserts cannot fail.
 * 7/8 rather than the usual 3/4 halves the table for counts between the two (100,000 nodes:
 * 2^17 slots, 42 B/node, instead of 2^18, 84 B/node). Linear probing copes: the hash mixes
 * all 16 bytes; at a = 7/8 a hit costs ~(1 + 1/(1-a))/2 = 4.5 probes and a miss (a create)
 * ~(1 + 1/(1-a)^2)/2 = 32 probes over contiguous 32-byte entries, and the table is only that
 * full just before it doubles.
 */
static int table_reserve(kraken_store *s, size_t n)
{
    size_t need = s->count + n;
    if (need < s->count)
        return kraken__err(KRAKEN_ENOMEM, "store: too many nodes");
    size_t cap = s->cap ? s->cap : STORE_MIN_CAP;
    while (need > cap / 8 * 7) {
        if (cap > SIZE_MAX / 2 / sizeof(store_entry))
            return kraken__err(KRAKEN_ENOMEM, "store: too many nodes");
        cap *= 2;
    }
    return cap == s->cap ? 0 : table_resize(s, cap);
}

/* Insert a new entry; table_reserve() must have been called. Takes ownership of the nodes. */
static void table_insert(kraken_store *s, const kraken_uuid *id, kraken_node *cfg,
                         kraken_node *dsc)
{
    store_entry e = {*id, cfg, dsc};
    table_place(s->slots, s->cap, &e);
    s->count++;
}

/* Remove @p e (a slot of the table) without freeing its nodes. */
static void table_remove(kraken_store *s, store_entry *e)
{
    size_t mask = s->cap - 1;
    size_t hole = (size_t)(e - s->slots);
    /* Backward shift: pull later members of the probe run into the hole so lookups never stop early. */
    for (size_t j = (hole + 1) & mask; s->slots[j].cfg; j = (j + 1) & mask) {
        size_t home = uuid_hash(&s->slots[j].id) & mask;
        /* The entry at j may move to the hole only if its home is not cyclically in (hole, j]. */
        bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!home_between) {
            s->slots[hole] = s->slots[j];
            hole = j;
        }
    }
    memset(&s->slots[hole], 0, sizeof s->slots[hole]);
    s->count--;
}

static int entry_cmp(const void *a, const void *b)
{
    const store_entry *const *x = a, *const *y = b;
    return kraken_uuid_compare(&(*x)->id, &(*y)->id);
}

/* The occupied entries sorted by id (malloc'ed array of borrowed pointers). */
static int table_sorted(const kraken_store *s, store_entry ***out)
{
    *out = NULL;
    if (s->count == 0)
        return 0;
    store_entry **v = malloc(s->count * sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "store: out of memory listing %zu nodes", s->count);
    size_t n = 0;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].cfg)
            v[n++] = &s->slots[i];
    qsort(v, n, sizeof *v, entry_cmp);
    *out = v;
    return 0;
}

static kraken_node *entry_node(const store_entry *e, kraken_state_kind kind)
{
    return kind == KRAKEN_DSC ? e->dsc : e->cfg;
}

static kraken_node **entry_slot(store_entry *e, kraken_state_kind kind)
{
    return kind == KRAKEN_DSC ? &e->dsc : &e->cfg;
}

/* ---- listeners --------------------------------------------------------------- */

static bool has_listeners(const kraken_store *s)
{
    return s->n_listeners > 0;
}

static void listener_free(kraken_store_listener *l)
{
    if (l->destroy)
        l->destroy(l->userdata);
    free(l);
}

/* Drop listeners removed during dispatch, keeping the others in registration order. */
static void listeners_sweep(kraken_store *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->n_listeners; i++) {
        kraken_store_listener *l = s->listeners[i];
        if (l->removed)
            listener_free(l);
        else
            s->listeners[kept++] = l;
    }
    s->n_listeners = kept;
    s->need_sweep = false;
}

static void emit(kraken_store *s, kraken_change_kind kind, const kraken_uuid *id, const char *url,
                 const kraken_value *old_value, const kraken_value *new_value)
{
    kraken_state_change change = {
        .kind = kind,
        .node_id = *id,
        .url = url,
        .old_value = old_value ? old_value : &none_value,
        .new_value = new_value ? new_value : &none_value,
    };
    /* Listeners added by a listener start with the next change. */
    size_t n = s->n_listeners;
    s->emitting++;
    for (size_t i = 0; i < n; i++) {
        kraken_store_listener *l = s->listeners[i];
        if (!l->removed)
            l->fn(&change, l->userdata);
    }
    s->emitting--;
    if (s->emitting == 0 && s->need_sweep)
        listeners_sweep(s);
}

static kraken_change_kind update_kind(kraken_state_kind kind)
{
    return kind == KRAKEN_DSC ? KRAKEN_CHANGE_UPDATE : KRAKEN_CHANGE_CFG_UPDATE;
}

typedef struct diff_emit {
    kraken_store *store;
    kraken_change_kind kind;
    const kraken_uuid *id;
} diff_emit;

static int emit_one_diff(const char *url, const kraken_value *old_value,
                         const kraken_value *new_value, void *userdata)
{
    diff_emit *d = userdata;
    emit(d->store, d->kind, d->id, url, old_value, new_value);
    return 0;
}

/*
 * Report every leaf that differs between two versions of a stored node. The
 * write is already applied: a failed diff (no memory) only loses reports.
 */
static void emit_diff(kraken_store *s, kraken_state_kind kind, const kraken_uuid *id,
                      const kraken_node *before, const kraken_node *after)
{
    diff_emit d = {s, update_kind(kind), id};
    kraken__node_diff_each(before, after, emit_one_diff, &d);
}

int kraken_store_listen(kraken_store *store, kraken_store_listener_fn fn, void *userdata,
                        void (*destroy)(void *userdata), kraken_store_listener **out)
{
    if (out)
        *out = NULL;
    if (!store || !fn)
        return kraken__err(KRAKEN_EINVAL, "store_listen: store and fn must not be NULL");
    int rc = kraken__owner_check(&store->owner, "store_listen", "store");
    if (rc < 0)
        return rc;
    if (store->n_listeners == store->cap_listeners) {
        size_t cap = store->cap_listeners ? store->cap_listeners * 2 : 4;
        kraken_store_listener **v = realloc(store->listeners, cap * sizeof *v);
        if (!v)
            return kraken__err(KRAKEN_ENOMEM, "store_listen: out of memory");
        store->listeners = v;
        store->cap_listeners = cap;
    }
    kraken_store_listener *l = calloc(1, sizeof *l);
    if (!l)
        return kraken__err(KRAKEN_ENOMEM, "store_listen: out of memory");
    l->store = store;
    l->fn = fn;
    l->userdata = userdata;
    l->destroy = destroy;
    l->caller_owned = out != NULL;
    store->listeners[store->n_listeners++] = l;
    if (out)
        *out = l;
    return 0;
}

void kraken_store_listener_remove(kraken_store_listener *listener)
{
    if (!listener)
        return;
    kraken_store *store = listener->store;
    if (!store) {
        /* Detached by the store's free: its destroy hook ran (or is running). */
        if (listener->detaching)
            listener->caller_owned = false; /* freed when the hook returns */
        else
            free(listener);
        return;
    }
    if (kraken__owner_check(&store->owner, "store_listener_remove", "store") < 0)
        return;
    listener->caller_owned = false;
    if (listener->removed)
        return;
    listener->removed = true;
    if (store->emitting) {
        /* The dispatch loop still indexes the array: free after it ends. */
        store->need_sweep = true;
        return;
    }
    listeners_sweep(store);
}

/* ---- life cycle ------------------------------------------------------------- */

int kraken_store_new(kraken_store **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "store_new: out must not be NULL");
    *out = NULL;
    kraken__schemas_init();
    kraken_store *s = calloc(1, sizeof *s);
    if (!s)
        return kraken__err(KRAKEN_ENOMEM, "store_new: out of memory");
    kraken__owner_init(&s->owner);
    *out = s;
    return 0;
}

static void free_all_nodes(kraken_store *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].cfg) {
            kraken_node_free(s->slots[i].cfg);
            kraken_node_free(s->slots[i].dsc);
        }
    }
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}

/*
 * Detach the first listener: it leaves the array before its destroy hook runs,
 * so a hook that removes listeners (its own or others, e.g. an engine tearing
 * down a sync) finds a consistent array. A handle the caller holds survives as
 * a detached shell; the others are freed.
 */
static void listener_detach_first(kraken_store *s)
{
    kraken_store_listener *l = s->listeners[0];
    memmove(&s->listeners[0], &s->listeners[1], (s->n_listeners - 1) * sizeof *s->listeners);
    s->n_listeners--;
    l->store = NULL;
    l->detaching = true;
    if (l->destroy)
        l->destroy(l->userdata); /* may call kraken_store_listener_remove(l): it only disowns it */
    l->detaching = false;
    if (!l->caller_owned || l->removed)
        free(l);
}

void kraken_store_free(kraken_store *store)
{
    if (!store || kraken__owner_check(&store->owner, "store_free", "store") < 0)
        return;
    if (store->emitting) {
        /* The dispatch loop and the write that started it still use the store. */
        kraken__err(KRAKEN_ESTATE, "store_free: called from a store listener; the store is not "
                                   "freed (free it after the listener returns)");
        return;
    }
    /* Listeners first: their hooks (an engine's, a sync's) may still read the nodes. */
    while (store->n_listeners > 0)
        listener_detach_first(store);
    free_all_nodes(store);
    free(store->listeners);
    free(store);
}

size_t kraken_store_count(const kraken_store *store)
{
    if (!store || kraken__owner_check(&store->owner, "store_count", "store") < 0)
        return 0;
    return store->count;
}

bool kraken_store_contains(const kraken_store *store, const kraken_uuid *id)
{
    if (!store || !id || kraken__owner_check(&store->owner, "store_contains", "store") < 0)
        return false;
    return table_find(store, id) != NULL;
}

const kraken_node *kraken__store_peek(const kraken_store *store, kraken_state_kind kind,
                                      const kraken_uuid *id)
{
    if (!store || !id)
        return NULL;
    const store_entry *e = table_find(store, id);
    return e ? entry_node(e, kind) : NULL;
}

/* ---- argument checks ----------------------------------------------------------- */

static int check_writable(const kraken_store *s, const char *op)
{
    if (!s)
        return kraken__err(KRAKEN_EINVAL, "%s: store must not be NULL", op);
    int rc = kraken__owner_check(&s->owner, op, "store");
    if (rc < 0)
        return rc;
    if (s->emitting)
        return kraken__err(KRAKEN_ESTATE, "%s: a store listener must not write to the store", op);
    return 0;
}

static int check_kind(kraken_state_kind kind, const char *op)
{
    if (kind != KRAKEN_CFG && kind != KRAKEN_DSC)
        return kraken__err(KRAKEN_EINVAL, "%s: bad state kind %d", op, (int)kind);
    return 0;
}

static int check_node_id(const kraken_node *node, const char *op)
{
    if (!node)
        return kraken__err(KRAKEN_EINVAL, "%s: node must not be NULL", op);
    if (kraken_uuid_is_zero(kraken_node_id(node)))
        return kraken__err(KRAKEN_EINVAL, "%s: node has no id (zero uuid)", op);
    return 0;
}

static int not_found(const char *op, const kraken_uuid *id)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    return kraken__err(KRAKEN_ENOTFOUND, "%s: node %s not found", op, kraken_uuid_format(id, buf));
}

/* Find a stored entry or fail with ENOTFOUND naming the id. */
static int lookup(const kraken_store *s, const kraken_uuid *id, const char *op, store_entry **out)
{
    if (!s || !id)
        return kraken__err(KRAKEN_EINVAL, "%s: store and id must not be NULL", op);
    int rc = kraken__owner_check(&s->owner, op, "store");
    if (rc < 0)
        return rc;
    *out = table_find(s, id);
    return *out ? 0 : not_found(op, id);
}

/* ---- create / read ---------------------------------------------------------- */

int kraken_store_create(kraken_store *store, const kraken_node *cfg)
{
    int rc = check_writable(store, "store_create");
    if (rc < 0 || (rc = check_node_id(cfg, "store_create")) < 0)
        return rc;
    const kraken_uuid *id = kraken_node_id(cfg);
    if (table_find(store, id)) {
        char buf[KRAKEN_UUID_STRLEN + 1];
        return kraken__err(KRAKEN_EEXISTS, "store_create: node %s already exists",
                           kraken_uuid_format(id, buf));
    }
    kraken_node *c = NULL, *d = NULL;
    if ((rc = table_reserve(store, 1)) < 0 || (rc = kraken_node_copy(&c, cfg)) < 0 ||
        (rc = kraken_node_new(&d, id)) < 0) {
        kraken_node_free(c);
        return rc;
    }
    kraken_uuid key = *id;
    table_insert(store, &key, c, d);
    if (has_listeners(store))
        emit(store, KRAKEN_CHANGE_CREATE, &key, NULL, NULL, NULL);
    return 0;
}

int kraken_store_read(const kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                      kraken_node **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "store_read: out must not be NULL");
    *out = NULL;
    store_entry *e;
    int rc = check_kind(kind, "store_read");
    if (rc < 0 || (rc = lookup(store, id, "store_read", &e)) < 0)
        return rc;
    return kraken_node_copy(out, entry_node(e, kind));
}

int kraken_store_read_all(const kraken_store *store, kraken_state_kind kind, kraken_node ***out,
                          size_t *n_out)
{
    if (!out || !n_out)
        return kraken__err(KRAKEN_EINVAL, "store_read_all: out and n_out must not be NULL");
    *out = NULL;
    *n_out = 0;
    int rc = check_kind(kind, "store_read_all");
    if (rc < 0)
        return rc;
    if (!store)
        return kraken__err(KRAKEN_EINVAL, "store_read_all: store must not be NULL");
    if ((rc = kraken__owner_check(&store->owner, "store_read_all", "store")) < 0)
        return rc;
    store_entry **sorted;
    if ((rc = table_sorted(store, &sorted)) < 0)
        return rc;
    size_t n = store->count;
    kraken_node **nodes = calloc(n ? n : 1, sizeof *nodes);
    if (!nodes) {
        free(sorted);
        return kraken__err(KRAKEN_ENOMEM, "store_read_all: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = kraken_node_copy(&nodes[i], entry_node(sorted[i], kind))) < 0) {
            kraken_nodes_free(nodes, i);
            free(sorted);
            return rc;
        }
    }
    free(sorted);
    *out = nodes;
    *n_out = n;
    return 0;
}

/* ---- update / set ------------------------------------------------------------- */

int kraken_store_update(kraken_store *store, kraken_state_kind kind, const kraken_node *node)
{
    int rc = check_writable(store, "store_update");
    if (rc < 0 || (rc = check_kind(kind, "store_update")) < 0 ||
        (rc = check_node_id(node, "store_update")) < 0)
        return rc;
    store_entry *e;
    if ((rc = lookup(store, kraken_node_id(node), "store_update", &e)) < 0)
        return rc;
    kraken_node *copy;
    if ((rc = kraken_node_copy(&copy, node)) < 0)
        return rc;
    kraken_node **slot = entry_slot(e, kind);
    kraken_node *old = *slot;
    *slot = copy;
    kraken_uuid id = e->id;
    if (has_listeners(store))
        emit_diff(store, kind, &id, old, copy);
    kraken_node_free(old);
    return 0;
}

static bool is_compound(kraken_type t)
{
    return t == KRAKEN_T_RECORD || t == KRAKEN_T_MAP || t == KRAKEN_T_LIST;
}

/* Read @p url for a change report: absent or zero reads as NONE, as the node diff reports it. */
static int read_for_report(const kraken_node *node, const char *url, kraken_value *out)
{
    int rc = kraken_node_get(node, url, out);
    if (rc == KRAKEN_ENOTFOUND) {
        kraken_error_clear();
        rc = 0;
    }
    if (rc == 0 && kraken_value_is_zero(out))
        kraken_value_clear(out);
    return rc;
}

static int id_changed_error(const char *url, const kraken_uuid *id)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    return kraken__err(KRAKEN_EINVAL, "store_set_value: node %s: '%s' would change the node id",
                       kraken_uuid_format(id, buf), url);
}

/*
 * Set a scalar leaf in place (kraken_node_set leaves the node unchanged on
 * error) and report it by comparing the leaf before and after.
 */
static int set_scalar(kraken_store *s, kraken_state_kind kind, store_entry *e, const char *url,
                      const kraken_value *value)
{
    kraken_node *node = entry_node(e, kind);
    kraken_uuid id = e->id;
    char *canonical = NULL;
    kraken_value before = KRAKEN_VALUE_INIT, after = KRAKEN_VALUE_INIT;
    int rc = 0;
    bool report = has_listeners(s);
    if (report && ((rc = kraken_url_canonical(url, &canonical)) < 0 ||
                   (rc = read_for_report(node, url, &before)) < 0))
        goto out;
    if ((rc = kraken_node_set(node, url, value)) < 0)
        goto out;
    if (!uuid_eq(kraken_node_id(node), &id)) {
        /* Only the id slot changed: put it back so the table stays consistent. */
        kraken_node_set_id(node, &id);
        rc = id_changed_error(url, &id);
        goto out;
    }
    if (report && (rc = read_for_report(node, url, &after)) < 0)
        goto out;
    if (report && !kraken_value_equal(&before, &after))
        emit(s, update_kind(kind), &id, canonical, &before, &after);
out:
    kraken_value_clear(&before);
    kraken_value_clear(&after);
    free(canonical);
    return rc;
}

/* Set a compound value (or one whose type the schemas alone cannot tell) on a copy, then swap. */
static int set_on_copy(kraken_store *s, kraken_state_kind kind, store_entry *e, const char *url,
                       const kraken_value *value, const char *text)
{
    kraken_node **slot = entry_slot(e, kind);
    kraken_uuid id = e->id;
    kraken_node *copy;
    int rc = kraken_node_copy(&copy, *slot);
    if (rc < 0)
        return rc;
    rc = text ? kraken_node_set_text(copy, url, text) : kraken_node_set(copy, url, value);
    if (rc == 0 && !uuid_eq(kraken_node_id(copy), &id))
        rc = id_changed_error(url, &id);
    if (rc < 0) {
        kraken_node_free(copy);
        return rc;
    }
    kraken_node *old = *slot;
    *slot = copy;
    if (has_listeners(s))
        emit_diff(s, kind, &id, old, copy);
    kraken_node_free(old);
    return 0;
}

static int set_common(kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                      const char *url, const kraken_value *value, const char *text,
                      const char *op)
{
    int rc = check_writable(store, op);
    if (rc < 0 || (rc = check_kind(kind, op)) < 0)
        return rc;
    if (!url || (!value && !text))
        return kraken__err(KRAKEN_EINVAL, "%s: url and value must not be NULL", op);
    store_entry *e;
    if ((rc = lookup(store, id, op, &e)) < 0)
        return rc;
    kraken_type type;
    rc = kraken_url_type(url, &type, NULL);
    if (rc == KRAKEN_ENOTFOUND) {
        /* Inside a service config: its schema is the node's, so only the node resolves the URL. */
        kraken_error_clear();
        return set_on_copy(store, kind, e, url, value, text);
    }
    if (rc < 0)
        return rc;
    if (is_compound(type))
        return set_on_copy(store, kind, e, url, value, text);
    if (!text)
        return set_scalar(store, kind, e, url, value);
    kraken_value parsed = KRAKEN_VALUE_INIT;
    if ((rc = kraken_url_parse_value(url, text, &parsed)) < 0)
        return rc;
    rc = set_scalar(store, kind, e, url, &parsed);
    kraken_value_clear(&parsed);
    return rc;
}

int kraken_store_set_value(kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                           const char *url, const kraken_value *value)
{
    return set_common(store, kind, id, url, value, NULL, "store_set_value");
}

int kraken_store_set_text(kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                          const char *url, const char *text)
{
    return set_common(store, kind, id, url, NULL, text, "store_set_text");
}

int kraken_store_get_value(const kraken_store *store, kraken_state_kind kind,
                           const kraken_uuid *id, const char *url, kraken_value *out)
{
    if (!out || !url)
        return kraken__err(KRAKEN_EINVAL, "store_get_value: url and out must not be NULL");
    store_entry *e;
    int rc = check_kind(kind, "store_get_value");
    if (rc < 0 || (rc = lookup(store, id, "store_get_value", &e)) < 0)
        return rc;
    return kraken_node_get(entry_node(e, kind), url, out);
}

/* ---- delete -------------------------------------------------------------------- */

int kraken_store_delete(kraken_store *store, const kraken_uuid *id)
{
    int rc = check_writable(store, "store_delete");
    store_entry *e;
    if (rc < 0 || (rc = lookup(store, id, "store_delete", &e)) < 0)
        return rc;
    kraken_uuid key = e->id;
    kraken_node_free(e->cfg);
    kraken_node_free(e->dsc);
    table_remove(store, e);
    if (has_listeners(store))
        emit(store, KRAKEN_CHANGE_DELETE, &key, NULL, NULL, NULL);
    return 0;
}

int kraken_store_delete_all(kraken_store *store)
{
    int rc = check_writable(store, "store_delete_all");
    if (rc < 0)
        return rc;
    if (!has_listeners(store)) {
        free_all_nodes(store);
        return 0;
    }
    /* Report in id order, as read_all lists them. */
    store_entry **sorted;
    if ((rc = table_sorted(store, &sorted)) < 0)
        return rc;
    size_t n = store->count;
    kraken_uuid *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        free(sorted);
        return kraken__err(KRAKEN_ENOMEM, "store_delete_all: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = sorted[i]->id;
    free(sorted);
    free_all_nodes(store);
    for (size_t i = 0; i < n; i++)
        emit(store, KRAKEN_CHANGE_DELETE, &ids[i], NULL, NULL, NULL);
    free(ids);
    return 0;
}

/* ---- bulk forms ---------------------------------------------------------------- */

void kraken_results_clear(kraken_result *results, size_t n)
{
    if (!results)
        return;
    for (size_t i = 0; i < n; i++) {
        free(results[i].message);
        results[i].message = NULL;
    }
}

/* Record one item's outcome; returns 1 for a failure, 0 for success. */
static int result_set(kraken_result *r, int rc)
{
    r->code = rc < 0 ? rc : 0;
    r->message = NULL;
    if (rc >= 0)
        return 0;
    const char *msg = kraken_error_last();
    r->message = strdup(msg && *msg ? msg : kraken_strerror(rc));
    return 1;
}

static int check_bulk(const kraken_store *store, const void *items, size_t n,
                      const kraken_result *results, size_t *n_failed, const char *op)
{
    if (n_failed)
        *n_failed = 0;
    if (!store)
        return kraken__err(KRAKEN_EINVAL, "%s: store must not be NULL", op);
    if (n > 0 && (!items || !results))
        return kraken__err(KRAKEN_EINVAL, "%s: items and results must not be NULL", op);
    return kraken__owner_check(&store->owner, op, "store");
}

/* A bulk call succeeds once every item was tried; how many failed goes to *n_failed. */
static int bulk_done(size_t failed, size_t *n_failed)
{
    if (n_failed)
        *n_failed = failed;
    if (failed)
        kraken_error_clear(); /* the messages are in the results, not the call's */
    return 0;
}

int kraken_store_create_many(kraken_store *store, kraken_node *const *nodes, size_t n,
                             kraken_result *results, size_t *n_failed)
{
    int rc = check_bulk(store, nodes, n, results, n_failed, "store_create_many");
    if (rc < 0)
        return rc;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += (size_t)result_set(&results[i], kraken_store_create(store, nodes[i]));
    return bulk_done(failed, n_failed);
}

int kraken_store_update_many(kraken_store *store, kraken_state_kind kind,
                             kraken_node *const *nodes, size_t n, kraken_result *results,
                             size_t *n_failed)
{
    int rc = check_bulk(store, nodes, n, results, n_failed, "store_update_many");
    if (rc < 0)
        return rc;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += (size_t)result_set(&results[i], kraken_store_update(store, kind, nodes[i]));
    return bulk_done(failed, n_failed);
}

int kraken_store_read_many(const kraken_store *store, kraken_state_kind kind,
                           const kraken_uuid *ids, size_t n, kraken_node **out,
                           kraken_result *results, size_t *n_failed)
{
    int rc = check_bulk(store, ids, n, results, n_failed, "store_read_many");
    if (rc < 0)
        return rc;
    if (n > 0 && !out)
        return kraken__err(KRAKEN_EINVAL, "store_read_many: out must not be NULL");
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += (size_t)result_set(&results[i], kraken_store_read(store, kind, &ids[i], &out[i]));
    return bulk_done(failed, n_failed);
}

int kraken_store_delete_many(kraken_store *store, const kraken_uuid *ids, size_t n,
                             kraken_result *results, size_t *n_failed)
{
    int rc = check_bulk(store, ids, n, results, n_failed, "store_delete_many");
    if (rc < 0)
        return rc;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += (size_t)result_set(&results[i], kraken_store_delete(store, &ids[i]));
    return bulk_done(failed, n_failed);
}

/* ---- files ------------------------------------------------------------------- */

/* The stored nodes of one kind, sorted by id (borrowed pointers; free the array only). */
static int sorted_nodes(const kraken_store *store, kraken_state_kind kind, const char *what,
                        kraken_node ***out)
{
    store_entry **sorted;
    int rc = table_sorted(store, &sorted);
    if (rc < 0)
        return rc;
    size_t n = store->count;
    kraken_node **nodes = malloc((n ? n : 1) * sizeof *nodes);
    if (!nodes) {
        free(sorted);
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", what);
    }
    for (size_t i = 0; i < n; i++)
        nodes[i] = entry_node(sorted[i], kind);
    free(sorted);
    *out = nodes;
    return 0;
}

int kraken_store_to_json(const kraken_store *store, kraken_state_kind kind, unsigned flags,
                         char **out)
{
    if (out)
        *out = NULL;
    int rc = check_kind(kind, "store_to_json");
    if (rc < 0)
        return rc;
    if (!store || !out)
        return kraken__err(KRAKEN_EINVAL, "store_to_json: store and out must not be NULL");
    if ((rc = kraken__owner_check(&store->owner, "store_to_json", "store")) < 0)
        return rc;
    /* The stored nodes are only read by the printer: no copies needed. */
    kraken_node **nodes = NULL;
    if ((rc = sorted_nodes(store, kind, "store_to_json", &nodes)) < 0)
        return rc;
    rc = kraken_nodes_to_json(nodes, store->count, flags, out);
    free(nodes);
    return rc;
}

int kraken_store_save(const kraken_store *store, kraken_state_kind kind, const char *path)
{
    int rc = check_kind(kind, "store_save");
    if (rc < 0)
        return rc;
    if (!store || !path)
        return kraken__err(KRAKEN_EINVAL, "store_save: store and path must not be NULL");
    if ((rc = kraken__owner_check(&store->owner, "store_save", "store")) < 0)
        return rc;
    store_entry **sorted;
    if ((rc = table_sorted(store, &sorted)) < 0)
        return rc;
    /* The stored nodes are only read by the encoder: no copies needed. */
    size_t n = store->count;
    kraken_node **nodes = malloc((n ? n : 1) * sizeof *nodes);
    if (!nodes) {
        free(sorted);
        return kraken__err(KRAKEN_ENOMEM, "store_save: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        nodes[i] = entry_node(sorted[i], kind);
    free(sorted);
    rc = kraken_nodes_save_file(path, nodes, n);
    free(nodes);
    return rc;
}

/* The node list loader already refused nodes without an id and ids given twice in the file
 * (kraken_nodes_from_json); here every id must also be new to the store. */
static int check_loaded_ids(const kraken_store *s, kraken_node **nodes, size_t n, const char *path)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    for (size_t i = 0; i < n; i++) {
        const kraken_uuid *id = kraken_node_id(nodes[i]);
        if (table_find(s, id))
            return kraken__err(KRAKEN_EEXISTS, "%s: node %zu (%s) already exists", path, i,
                               kraken_uuid_format(id, buf));
    }
    return 0;
}

int kraken_store_load(kraken_store *store, const char *path)
{
    int rc = check_writable(store, "store_load");
    if (rc < 0)
        return rc;
    if (!path)
        return kraken__err(KRAKEN_EINVAL, "store_load: path must not be NULL");
    kraken_node **nodes = NULL, **dsc = NULL;
    size_t n = 0, made = 0;
    if ((rc = kraken_nodes_load_file(path, &nodes, &n)) < 0)
        return rc;
    if ((rc = check_loaded_ids(store, nodes, n, path)) < 0)
        goto fail;
    /* Allocate everything first, so that inserting cannot fail half way. */
    if (!(dsc = calloc(n ? n : 1, sizeof *dsc))) {
        rc = kraken__err(KRAKEN_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (; made < n; made++)
        if ((rc = kraken_node_new(&dsc[made], kraken_node_id(nodes[made]))) < 0)
            goto fail;
    if ((rc = table_reserve(store, n)) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        table_insert(store, kraken_node_id(nodes[i]), nodes[i], dsc[i]);
    if (has_listeners(store))
        for (size_t i = 0; i < n; i++)
            emit(store, KRAKEN_CHANGE_CREATE, kraken_node_id(nodes[i]), NULL, NULL, NULL);
    /* The store owns the nodes now; only the arrays go. */
    free(nodes);
    free(dsc);
    return 0;
fail:
    kraken_nodes_free(dsc, made);
    kraken_nodes_free(nodes, n);
    return rc;
}

/* Every id in a Dsc file must be in the store already (the node-list loader has refused
 * missing and duplicate ids). */
static int check_dsc_ids(const kraken_store *s, kraken_node **nodes, size_t n, const char *path)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    for (size_t i = 0; i < n; i++) {
        const kraken_uuid *id = kraken_node_id(nodes[i]);
        if (!table_find(s, id))
            return kraken__err(KRAKEN_ENOTFOUND,
                               "%s: node %zu (%s) is not in the store (load its Cfg first)", path,
                               i, kraken_uuid_format(id, buf));
    }
    return 0;
}

int kraken_store_load_dsc(kraken_store *store, const char *path)
{
    int rc = check_writable(store, "store_load_dsc");
    if (rc < 0)
        return rc;
    if (!path)
        return kraken__err(KRAKEN_EINVAL, "store_load_dsc: path must not be NULL");
    kraken_node **nodes = NULL;
    size_t n = 0;
    if ((rc = kraken_nodes_load_file(path, &nodes, &n)) < 0)
        return rc;
    rc = check_dsc_ids(store, nodes, n, path);
    if (rc < 0) {
        kraken_nodes_free(nodes, n);
        return rc;
    }
    /* Nothing can fail from here: the loaded nodes replace the stored Dsc nodes as they are. */
    for (size_t i = 0; i < n; i++) {
        store_entry *e = table_find(store, kraken_node_id(nodes[i]));
        kraken_node *old = e->dsc;
        e->dsc = nodes[i];
        kraken_uuid id = e->id;
        if (has_listeners(store))
            emit_diff(store, KRAKEN_DSC, &id, old, e->dsc);
        kraken_node_free(old);
    }
    free(nodes);
    return 0;
}

int kraken_store_find_by_nodename(const kraken_store *store, const char *nodename,
                                  kraken_uuid *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!store || !nodename || !out)
        return kraken__err(KRAKEN_EINVAL,
                           "store_find_by_nodename: store, nodename and out must not be NULL");
    int rc = kraken__owner_check(&store->owner, "store_find_by_nodename", "store");
    if (rc < 0)
        return rc;
    const store_entry *found = NULL;
    for (size_t i = 0; i < store->cap; i++) {
        const store_entry *e = &store->slots[i];
        if (!e->cfg)
            continue;
        const char *name = e->cfg->rec.slots[KRAKEN_NODE_F_NODENAME].s;
        if (!name || strcmp(name, nodename) != 0)
            continue;
        if (found) {
            char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1];
            const kraken_uuid *x = &found->id, *y = &e->id;
            if (kraken_uuid_compare(x, y) > 0) {
                const kraken_uuid *t = x;
                x = y;
                y = t;
            }
            return kraken__err(KRAKEN_EEXISTS, "store_find_by_nodename: nodename '%s' is "
                               "shared by nodes %s and %s", nodename, kraken_uuid_format(x, a),
                               kraken_uuid_format(y, b));
        }
        found = e;
    }
    if (!found)
        return kraken__err(KRAKEN_ENOTFOUND, "store_find_by_nodename: no node has nodename '%s'",
                           nodename);
    *out = found->id;
    return 0;
}
