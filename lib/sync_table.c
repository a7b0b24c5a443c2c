/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync node table: the hash table of every node this instance speaks about, the route
 * (direct child) each node is under, the member lists of each child link, fresh/stale facts
 * (doc/PROTOCOL.md 4, "Stale facts"), owned-URL sets and the fact lists of a node.
 */
#include <stdlib.h>
#include <string.h>

#include "sync_impl.h"

/* ---- small helpers -------------------------------------------------------------------- */

void urlset_clear(urlset *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i]);
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

bool urlset_match(const urlset *u, const char *url)
{
    if (u == NULL)
        return false;
    for (size_t i = 0; i < u->n; i++) {
        const char *e = u->v[i];
        if (strpbrk(e, "*?") != NULL) {
            if (kraken_url_match(e, url))
                return true;
            continue;
        }
        size_t len = strlen(e);
        if (strncmp(e, url, len) == 0 && (url[len] == '\0' || url[len] == '/'))
            return true;
    }
    return false;
}

bool urlset_equal(const urlset *a, const urlset *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return false;
    return true;
}

/* ---- per-node bookkeeping ------------------------------------------------------------- */

/* splitmix64's finalizer: every input bit reaches the low bits the table masks with. */
uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* Ids are usually random, but tests and sites also number them sequentially (differing only in
 * the last bytes): all 16 bytes must reach the home slot. */
static size_t uuid_hash(const kraken_uuid *id)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    return (size_t)mix64(a ^ mix64(b + 0x9e3779b97f4a7c15ull));
}

snode *nt_find(const ntable *t, const kraken_uuid *id)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = uuid_hash(id) & mask;; i = (i + 1) & mask) {
        snode *n = t->slots[i];
        if (n == NULL)
            return NULL;
        if (uuid_eq(&n->id, id))
            return n;
    }
}

static int nt_grow(ntable *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    snode **slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    for (size_t i = 0; i < t->cap; i++) {
        snode *n = t->slots[i];
        if (n == NULL)
            continue;
        size_t j = uuid_hash(&n->id) & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = n;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return KRAKEN_OK;
}

snode *nt_add(ntable *t, const kraken_uuid *id)
{
    snode *n = nt_find(t, id);
    if (n != NULL)
        return n;
    if ((t->count + 1) * 4 > t->cap * 3 && nt_grow(t) < 0)
        return NULL;
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->id = *id;
    size_t mask = t->cap - 1;
    size_t i = uuid_hash(id) & mask;
    while (t->slots[i] != NULL)
        i = (i + 1) & mask;
    t->slots[i] = n;
    t->count++;
    return n;
}

void snode_clear_urls(snode *n)
{
    for (size_t i = 0; i < n->n_up_urls; i++)
        free(n->up_urls[i]);
    free(n->up_urls);
    n->up_urls = NULL;
    n->n_up_urls = n->cap_up_urls = 0;
}

static void member_unlink(snode *n)
{
    if (n->m_top == NULL)
        return;
    if (n->m_prev != NULL)
        n->m_prev->m_next = n->m_next;
    else
        n->m_top->members = n->m_next;
    if (n->m_next != NULL)
        n->m_next->m_prev = n->m_prev;
    n->m_next = n->m_prev = n->m_top = NULL;
}

static void member_link(snode *n, snode *top)
{
    member_unlink(n);
    if (top == NULL)
        return;
    n->m_top = top;
    n->m_prev = NULL;
    n->m_next = top->members;
    if (top->members != NULL)
        top->members->m_prev = n;
    top->members = n;
}

/* Before a node leaves the table: out of its list, and its own list (if a top) dissolved; the
 * next route computation files those nodes again. */
void member_detach(snode *n)
{
    member_unlink(n);
    for (snode *m = n->members, *next; m != NULL; m = next) {
        next = m->m_next;
        m->m_next = m->m_prev = m->m_top = NULL;
    }
    n->members = NULL;
}

static void snode_free(snode *n)
{
    if (n == NULL)
        return;
    snode_clear_urls(n);
    free(n);
}

/* Remove with backward-shift deletion (no tombstones). */
void nt_remove(ntable *t, const kraken_uuid *id)
{
    if (t->cap == 0)
        return;
    size_t mask = t->cap - 1;
    size_t i = uuid_hash(id) & mask;
    while (t->slots[i] != NULL && !uuid_eq(&t->slots[i]->id, id))
        i = (i + 1) & mask;
    if (t->slots[i] == NULL)
        return;
    snode_free(t->slots[i]);
    t->slots[i] = NULL;
    t->count--;
    for (size_t j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = uuid_hash(&t->slots[j]->id) & mask;
        /* Move back if its home is not in (i, j] cyclically. */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

void nt_free(ntable *t)
{
    for (size_t i = 0; i < t->cap; i++)
        snode_free(t->slots[i]);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

/* ---- queueing changes ----------------------------------------------------------------- */

/*
 * Mark a node's facts confirmed by its link (fresh) or not (stale). The digests cover it, and a
 * parent hears of each change: stale as a flag, fresh again with the node's whole Dsc (facts
 * may have gone while it was stale, and a delta would not say so). True when it changed.
 */
bool set_fresh(kraken_sync *s, snode *n, bool fresh)
{
    if (n->fresh == fresh || uuid_eq(&n->id, &s->self))
        return false;
    n->fresh = fresh;
    s->change_gen++;
    if (s->has_parent) {
        n->fresh_dirty = true;
        if (fresh) {
            snode_clear_urls(n);
            n->up_all = true;
        }
        queue_node(s, n);
    }
    return true;
}

const kraken_uuid *cfg_parent_of(const kraken_node *cfg)
{
    const kraken_uuid *p = cfg != NULL ? cfg->rec.slots[KRAKEN_NODE_F_PARENT_ID].uuid : NULL;
    return p != NULL ? p : &zero_uuid;
}

bool is_direct_child(const kraken_sync *s, const snode *n)
{
    return uuid_eq(&n->parent, &s->self) && !uuid_eq(&n->id, &s->self);
}

/* ---- routes: which direct child each node is under ------------------------------------ */

/*
 * Recompute every node's route from the Cfg parent chains. Nodes that moved between links get
 * a deletion on the old link and their Cfg on the new one; a child session whose node is no
 * longer this instance's child ends.
 */
static void recompute_routes(kraken_sync *s)
{
    s->topo_dirty = false;
    s->route_gen++;
    if (s->route_gen == 0)
        s->route_gen = 1;
    snode **path = malloc(MAX_PATH_DEPTH * sizeof *path);
    if (path == NULL) {
        s->topo_dirty = true;
        return;
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n != NULL && n->stamp != s->route_gen)
            n->old_route = n->route;
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *start = s->nodes.slots[i];
        if (start == NULL || start->stamp == s->route_gen)
            continue;
        size_t depth = 0;
        kraken_uuid route = zero_uuid;
        bool in_subtree = false;
        uint32_t base_depth = 0;
        snode *x = start;
        for (;;) {
            if (x->stamp == s->route_gen) { /* already known */
                route = x->route;
                in_subtree = x->in_subtree;
                base_depth = x->depth;
                break;
            }
            if (uuid_eq(&x->id, &s->self)) {
                x->route = zero_uuid;
                x->in_subtree = true;
                x->depth = 0;
                x->stamp = s->route_gen;
                in_subtree = true;
                break;
            }
            if (x->visiting || depth == MAX_PATH_DEPTH)
                break; /* a cycle: no route */
            x->visiting = true;
            path[depth++] = x;
            if (uuid_eq(&x->parent, &s->self)) {
                route = x->id;
                in_subtree = true;
                base_depth = 0;
                break;
            }
            snode *up = uuid_eq(&x->parent, &zero_uuid) ? NULL : nt_find(&s->nodes, &x->parent);
            if (up == NULL)
                break;
            x = up;
        }
        /* path[depth-1] is nearest the resolved ancestor. */
        for (size_t k = depth; k-- > 0;) {
            snode *y = path[k];
            y->visiting = false;
            y->route = in_subtree ? route : zero_uuid;
            y->in_subtree = in_subtree;
            y->depth = in_subtree ? base_depth + (uint32_t)(depth - k) : 0;
            y->stamp = s->route_gen;
        }
    }
    free(path);
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n == NULL)
            continue;
        snode *top = uuid_eq(&n->route, &zero_uuid) ? NULL : nt_find(&s->nodes, &n->route);
        if (n->m_top != top)
            member_link(n, top);
        if (uuid_eq(&n->route, &n->old_route))
            continue;
        peer *old = uuid_eq(&n->old_route, &zero_uuid) ? NULL : find_child(s, &n->old_route);
        if (old != NULL)
            (void)push_tomb(old, &n->id);
        (void)set_fresh(s, n, false); /* the new link has not reported it yet */
        if (!uuid_eq(&n->route, &zero_uuid)) {
            n->cfg_dirty = true;
            n->owned_dirty = uuid_eq(&n->route, &n->id);
            queue_node(s, n);
        }
        n->old_route = n->route;
        arm_flush(s);
    }
    s->change_gen++;
    s->check_children = true; /* sessions are ended from the flush, where no peer is in use */
    arm_flush(s);
}

/* Child sessions whose node is no longer this instance's child in Cfg end. */
void check_children(kraken_sync *s)
{
    s->check_children = false;
    for (size_t i = s->n_children; i-- > 0;) {
        peer *p = s->children[i];
        snode *n = nt_find(&s->nodes, &p->id);
        if (n == NULL || !is_direct_child(s, n))
            end_child_session(s, p, "no longer a child of this instance in Cfg", false);
    }
}

void ensure_routes(kraken_sync *s)
{
    if (s->topo_dirty)
        recompute_routes(s);
}

/* ---- facts ---------------------------------------------------------------------------- */

void factlist_clear(factlist *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].url);
        free(f->v[i].value);
    }
    free(f->v);
    memset(f, 0, sizeof *f);
}

int factlist_add(factlist *f, const char *url, const kraken_value *value)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        kraken_sync_Fact *v = realloc(f->v, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        f->v = v;
        f->cap = cap;
    }
    kraken_sync_Fact *fact = &f->v[f->n];
    memset(fact, 0, sizeof *fact);
    fact->url = strdup(url);
    if (fact->url == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    if (value == NULL || value->type == KRAKEN_T_NONE || kraken_value_is_zero(value)) {
        fact->unset = true;
    } else {
        int rc = kraken_value_format(value, &fact->value);
        if (rc < 0) {
            free(fact->url);
            return rc;
        }
    }
    f->n++;
    return KRAKEN_OK;
}

/* The node's id is its identity, not a fact about it: never sent, hashed or unset. */
bool is_id_url(const char *url) { return strcmp(url, "/Id") == 0; }

typedef struct collect_ctx {
    factlist *out;
    const urlset *owned;
    enum fact_filter filter;
} collect_ctx;

bool filter_pass(enum fact_filter filter, const urlset *owned, const char *url)
{
    if (filter == FACTS_ALL)
        return true;
    bool o = urlset_match(owned, url);
    return filter == FACTS_OWNED ? o : !o;
}

static int collect_cb(const char *url, const kraken_value *old_value,
                      const kraken_value *new_value, void *ud)
{
    (void)old_value;
    collect_ctx *c = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url) ||
        !filter_pass(c->filter, c->owned, url))
        return 0;
    return factlist_add(c->out, url, new_value);
}

/* Every non-zero fact of @p dsc that passes the filter. */
int collect_facts(const kraken_node *dsc, const urlset *owned, enum fact_filter filter,
                  factlist *out)
{
    if (dsc == NULL)
        return KRAKEN_OK;
    collect_ctx c = {out, owned, filter};
    return kraken__node_diff_each(NULL, dsc, collect_cb, &c);
}

/* The owned-URL set of the link above node @p n, as seen from this instance. */
const urlset *link_owned(const kraken_sync *s, const snode *n)
{
    if (uuid_eq(&n->id, &s->self))
        return s->parent != NULL ? &s->parent->owned : NULL;
    if (is_direct_child(s, n))
        return &s->my_owned;
    return NULL;
}

/* Every node under child link @p id: its facts are no longer confirmed. */
size_t mark_link_stale(kraken_sync *s, const kraken_uuid *id)
{
    size_t n = 0;
    snode *top = nt_find(&s->nodes, id);
    for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
        n += set_fresh(s, x, false);
    return n;
}
