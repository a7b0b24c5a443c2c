/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Applying received sync state: Cfg and owned facts from the parent, Dsc from children,
 * ordering by per-node and per-URL versions, deletions, snapshot leftovers
 * (doc/PROTOCOL.md 4, "Ordering" and "State updates").
 */
#include <stdlib.h>
#include <string.h>

#include "sync_impl.h"

/* ---- applying received state ---------------------------------------------------------- */

typedef struct idparent {
    kraken_uuid id, parent;
} idparent;

static int idparent_cmp(const void *a, const void *b)
{
    return memcmp(((const idparent *)a)->id.bytes, ((const idparent *)b)->id.bytes, 16);
}

/* Does @p id's Cfg parent chain reach this instance? Parents from the message being applied
 * (@p msg, sorted) take precedence over the stored ones. */
static bool chain_reaches_self(kraken_sync *s, const kraken_uuid *id, const idparent *msg,
                               size_t n_msg)
{
    kraken_uuid cur = *id;
    for (int depth = 0; depth < MAX_PATH_DEPTH; depth++) {
        if (uuid_eq(&cur, &s->self))
            return true;
        idparent key = {cur, zero_uuid};
        const idparent *m = n_msg ? bsearch(&key, msg, n_msg, sizeof *msg, idparent_cmp) : NULL;
        if (m != NULL) {
            cur = m->parent;
        } else {
            const snode *n = nt_find(&s->nodes, &cur);
            if (n == NULL)
                return false;
            cur = n->parent;
        }
        if (uuid_eq(&cur, &zero_uuid))
            return false;
    }
    return false;
}

/* ---- per-URL versions of facts from a child link (PROTOCOL.md 4, "Ordering") -------- */

/* Unset every current fact of the sender's domain, so that the listed ones replace them. */
static uint64_t url_hash(const char *url)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then mixed */
    for (const unsigned char *c = (const unsigned char *)url; *c != '\0'; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return mix64(h);
}

static bool hash_in(uint64_t h, const uint64_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == h)
            return true;
    return false;
}

/* The URLs messages newer than @p seq set; false when that is not fully known. */
static bool newer_urls(const snode *n, uint64_t seq, uint64_t out[URLVER_N], size_t *n_out)
{
    *n_out = 0;
    if (n->uv_evicted > seq)
        return false;
    for (unsigned i = 0; i < n->n_uv; i++)
        if (n->uv[i].seq > seq)
            out[(*n_out)++] = n->uv[i].hash;
    return true;
}

static void note_url(snode *n, uint64_t hash, uint64_t seq)
{
    unsigned oldest = 0;
    for (unsigned i = 0; i < n->n_uv; i++) {
        if (n->uv[i].hash == hash) {
            if (seq > n->uv[i].seq)
                n->uv[i].seq = seq;
            return;
        }
        if (n->uv[i].seq < n->uv[oldest].seq)
            oldest = i;
    }
    if (n->n_uv < URLVER_N) {
        n->uv[n->n_uv++] = (struct urlver){hash, seq};
        return;
    }
    /* full: forget the oldest of the entries and the new one */
    uint64_t dropped = seq < n->uv[oldest].seq ? seq : n->uv[oldest].seq;
    if (seq > n->uv[oldest].seq)
        n->uv[oldest] = (struct urlver){hash, seq};
    if (dropped > n->uv_evicted)
        n->uv_evicted = dropped;
}

typedef struct unset_ctx {
    kraken_node *node;
    const urlset *owned;
    enum fact_filter filter;
    factlist urls;
    const uint64_t *skip; /* URL hashes a newer message set: left alone */
    size_t n_skip;
} unset_ctx;

static int unset_collect_cb(const char *url, const kraken_value *old_value,
                            const kraken_value *new_value, void *ud)
{
    (void)old_value;
    unset_ctx *u = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url) ||
        !filter_pass(u->filter, u->owned, url) ||
        (u->n_skip > 0 && hash_in(url_hash(url), u->skip, u->n_skip)))
        return 0;
    return factlist_add(&u->urls, url, NULL);
}

/*
 * Apply Dsc facts to node @p id. @p filter/@p owned say which facts the sender may speak for:
 * others are dropped and counted. With @p full the sender's whole domain is replaced.
 */
static void apply_facts(kraken_sync *s, const peer *from, const kraken_uuid *id,
                        const kraken_sync_Fact *facts, size_t n_facts, bool full,
                        const urlset *owned, enum fact_filter filter, const uint64_t *skip,
                        size_t n_skip)
{
    char who[64], nid[KRAKEN_UUID_STRLEN + 1];
    kraken_node *node = NULL;
    if (kraken_store_read(s->store, KRAKEN_DSC, id, &node) < 0) {
        s->stats.apply_failed++;
        log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR, "facts for node %s from %s not applied: %s",
                 fmt_id(id, nid), peer_name(from, who), kraken_error_last());
        kraken_error_clear();
        return;
    }
    if (full) {
        unset_ctx u = {node, owned, filter, {0}, skip, n_skip};
        (void)kraken__node_diff_each(NULL, node, unset_collect_cb, &u);
        for (size_t i = 0; i < u.urls.n; i++)
            (void)kraken_node_unset(node, u.urls.v[i].url);
        factlist_clear(&u.urls);
    }
    for (size_t i = 0; i < n_facts; i++) {
        const kraken_sync_Fact *f = &facts[i];
        if (n_skip > 0 && f->url != NULL && hash_in(url_hash(f->url), skip, n_skip))
            continue; /* a newer message set it */
        if (f->url == NULL || is_id_url(f->url)) {
            s->stats.dropped_malformed++;
            log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                     "dropped a fact for node %s from %s: %s", fmt_id(id, nid),
                     peer_name(from, who), f->url == NULL ? "no URL" : "/Id is not a fact");
            continue;
        }
        if (!filter_pass(filter, owned, f->url)) {
            s->stats.dropped_not_authorized++;
            log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                     "dropped fact %s of node %s from %s: %s", f->url, fmt_id(id, nid),
                     peer_name(from, who),
                     filter == FACTS_OWNED ? "a parent speaks only for the URLs it owns"
                                           : "this instance owns that URL for its child");
            continue;
        }
        int rc = f->unset || f->value == NULL ? kraken_node_unset(node, f->url)
                                              : kraken_node_set_text(node, f->url, f->value);
        if (rc < 0) {
            s->stats.apply_failed++;
            log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR,
                     "fact %s of node %s from %s not applied: %s", f->url, fmt_id(id, nid),
                     peer_name(from, who), kraken_error_last());
            kraken_error_clear();
        }
    }
    if (kraken_store_update(s->store, KRAKEN_DSC, node) < 0) {
        s->stats.apply_failed++;
        log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR, "facts for node %s from %s not applied: %s",
                 fmt_id(id, nid), peer_name(from, who), kraken_error_last());
        kraken_error_clear();
    }
    kraken_node_free(node);
}

static int uuid_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Sort, drop duplicates and ids no longer held. */
static void seen_compact(kraken_sync *s, peer *p)
{
    qsort(p->seen, p->n_seen, sizeof *p->seen, uuid_cmp);
    size_t n = 0;
    for (size_t i = 0; i < p->n_seen; i++) {
        bool repeated = n > 0 && uuid_eq(&p->seen[n - 1], &p->seen[i]);
        if (repeated || nt_find(&s->nodes, &p->seen[i]) == NULL)
            continue;
        p->seen[n++] = p->seen[i];
    }
    p->n_seen = n;
}

/*
 * Note a node listed in a snapshot part. Only nodes we hold can be missing from a snapshot, and
 * a peer that repeats ids over endless parts (more = true) must not grow the list without
 * bound: it stays within about twice the node table.
 */
static int seen_add(kraken_sync *s, peer *p, const kraken_uuid *id)
{
    if (nt_find(&s->nodes, id) == NULL)
        return KRAKEN_OK;
    if (p->n_seen == p->cap_seen && p->n_seen > 2 * s->nodes.count + 64)
        seen_compact(s, p);
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? p->cap_seen * 2 : 64;
        kraken_uuid *v = realloc(p->seen, cap * sizeof *v);
        if (v == NULL)
            return KRAKEN_ENOMEM;
        p->seen = v;
        p->cap_seen = cap;
    }
    p->seen[p->n_seen++] = *id;
    return KRAKEN_OK;
}

static bool seen_has(const peer *p, const kraken_uuid *id)
{
    return p->n_seen > 0 && bsearch(id, p->seen, p->n_seen, sizeof *p->seen, uuid_cmp) != NULL;
}

/* ---- ordering: per-node versions (PROTOCOL.md 4, "Ordering") -------------------------- */

/* Did a message of @p p's session later than @p than set this state? */
static bool stamp_newer(uint32_t session, uint64_t seq, const peer *p, uint64_t than)
{
    return session == p->serial && seq > than;
}

/* The state in the message being applied is older than what this node already has from @p p
 * (down: from our parent; up: from the child link it is under). */
static bool older_than_applied(const peer *p, const snode *n)
{
    if (n == NULL)
        return false;
    return p->role == ROLE_PARENT ? stamp_newer(n->down_session, n->down_seq, p, p->rx_seq)
                                  : stamp_newer(n->up_session, n->up_seq, p, p->rx_seq);
}

void stamp(const peer *p, snode *n)
{
    if (n == NULL)
        return;
    if (p->role == ROLE_PARENT) {
        n->down_session = p->serial;
        n->down_seq = p->rx_seq;
    } else {
        n->up_session = p->serial;
        n->up_seq = p->rx_seq;
    }
}

static void remember_gone(peer *p, const kraken_uuid *id)
{
    unsigned i = p->n_gone++ % GONE_RING;
    p->gone[i].id = *id;
    p->gone[i].seq = p->rx_seq;
}

/* A node we do not hold: was it deleted by a message later than the one being applied? */
static bool deleted_later(const peer *p, const kraken_uuid *id)
{
    unsigned n = p->n_gone < GONE_RING ? p->n_gone : GONE_RING;
    for (unsigned i = 0; i < n; i++)
        if (uuid_eq(&p->gone[i].id, id) && p->gone[i].seq > p->rx_seq)
            return true;
    return false;
}

/* Collect ids matching a predicate first: applying changes the node table. A node updated by a
 * message sent after the snapshot started is not missing from it: it is newer. */
static size_t snapshot_leftovers(kraken_sync *s, peer *p, kraken_uuid **out)
{
    qsort(p->seen, p->n_seen, sizeof *p->seen, uuid_cmp);
    snode *top = p->role == ROLE_CHILD ? nt_find(&s->nodes, &p->id) : NULL;
    size_t cap = 0;
    if (p->role == ROLE_CHILD) /* a child link's own nodes: the cost of its subtree */
        for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
            cap++;
    else
        cap = s->nodes.count;
    kraken_uuid *v = malloc((cap + 1) * sizeof *v);
    size_t n = 0;
    if (v == NULL)
        return 0;
    if (p->role == ROLE_CHILD) {
        for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
            if (!stamp_newer(x->up_session, x->up_seq, p, p->snap_seq) && !seen_has(p, &x->id))
                v[n++] = x->id;
    } else {
        for (size_t i = 0; i < s->nodes.cap; i++) {
            snode *x = s->nodes.slots[i];
            if (x == NULL || !x->in_subtree || uuid_eq(&x->id, &s->self) ||
                stamp_newer(x->down_session, x->down_seq, p, p->snap_seq))
                continue;
            if (!seen_has(p, &x->id))
                v[n++] = x->id;
        }
    }
    *out = v;
    return n;
}

/* State from our parent: Cfg of our subtree and the facts it owns for our own node. Returns
 * true when this completed the first full state of the session. */
static bool apply_from_parent(kraken_sync *s, peer *p, const rx_update *u)
{
    char who[64], nid[KRAKEN_UUID_STRLEN + 1];
    ensure_routes(s);
    idparent *msg = calloc(u->n + 1, sizeof *msg);
    kraken_node **decoded = calloc(u->n + 1, sizeof *decoded);
    size_t n_msg = 0;
    if (msg == NULL || decoded == NULL) {
        free(msg);
        free(decoded);
        return false;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        if (!ns->has_cfg)
            continue;
        if (kraken_node_decode(ns->cfg, ns->cfg_len, &decoded[i]) < 0 ||
            !uuid_eq(kraken_node_id(decoded[i]), &ns->id)) {
            log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                     "dropped the Cfg of node %s from %s: %s", fmt_id(&ns->id, nid),
                     peer_name(p, who),
                     decoded[i] == NULL ? kraken_error_last() : "its /Id is another node's");
            kraken_error_clear();
            kraken_node_free(decoded[i]);
            decoded[i] = NULL;
            s->stats.dropped_malformed++;
            continue;
        }
        msg[n_msg].id = ns->id;
        msg[n_msg].parent = *cfg_parent_of(decoded[i]);
        n_msg++;
    }
    qsort(msg, n_msg, sizeof *msg, idparent_cmp);
    if (u->full && !p->rx_snapshot) {
        p->rx_snapshot = true;
        p->snap_seq = p->rx_seq;
        p->n_seen = 0;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        bool self = uuid_eq(&ns->id, &s->self);
        snode *n = nt_find(&s->nodes, &ns->id);
        if (older_than_applied(p, n) || (n == NULL && deleted_later(p, &ns->id))) {
            s->stats.dropped_old++; /* a later message already set (or deleted) it */
            log_drop(s, DROP_OLD, KRAKEN_LOG_DEBUG,
                     "ignored the state of node %s in message %llu from %s: a later message "
                     "already %s it",
                     fmt_id(&ns->id, nid), (unsigned long long)p->rx_seq, peer_name(p, who),
                     n == NULL ? "deleted" : "set");
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        if (ns->deleted) {
            if (n != NULL && n->in_subtree && !self) {
                remember_gone(p, &ns->id);
                (void)kraken_store_delete(s->store, &ns->id);
            } else if (n != NULL) {
                s->stats.dropped_not_authorized++;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped the deletion of node %s from %s: %s", fmt_id(&ns->id, nid),
                         peer_name(p, who),
                         self ? "an instance does not delete its own node"
                              : "the node is outside this instance's subtree");
            }
            continue;
        }
        if (ns->has_cfg && decoded[i] == NULL)
            continue; /* undecodable, counted above */
        if (decoded[i] != NULL) {
            if (!chain_reaches_self(s, &ns->id, msg, n_msg)) {
                s->stats.dropped_not_authorized++;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped the Cfg of node %s from %s: its parent chain does not reach "
                         "this instance",
                         fmt_id(&ns->id, nid), peer_name(p, who));
                continue;
            }
            bool exists = kraken_store_contains(s->store, &ns->id);
            int rc = exists ? kraken_store_update(s->store, KRAKEN_CFG, decoded[i])
                            : kraken_store_create(s->store, decoded[i]);
            if (rc < 0) {
                s->stats.apply_failed++;
                log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR,
                         "Cfg of node %s from %s not applied (%s): %s", fmt_id(&ns->id, nid),
                         peer_name(p, who), exists ? "update" : "create", kraken_error_last());
                kraken_error_clear();
                continue;
            }
        }
        if (ns->n_facts > 0 || ns->dsc_full) {
            if (self) {
                apply_facts(s, p, &ns->id, ns->facts, ns->n_facts, ns->dsc_full, &p->owned,
                            FACTS_OWNED, NULL, 0);
            } else {
                s->stats.dropped_not_authorized += ns->n_facts ? ns->n_facts : 1;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped %zu facts of node %s from %s: a parent sends facts only for "
                         "this instance's own node",
                         ns->n_facts, fmt_id(&ns->id, nid), peer_name(p, who));
            }
        }
        stamp(p, nt_find(&s->nodes, &ns->id));
        if (u->full)
            (void)seen_add(s, p, &ns->id);
    }
    for (size_t i = 0; i < u->n; i++)
        kraken_node_free(decoded[i]);
    free(decoded);
    free(msg);
    if (!u->full || u->more)
        return false;
    p->rx_snapshot = false;
    ensure_routes(s);
    kraken_uuid *gone = NULL;
    size_t n_gone = snapshot_leftovers(s, p, &gone);
    for (size_t i = 0; i < n_gone; i++)
        (void)kraken_store_delete(s->store, &gone[i]);
    free(gone);
    p->n_seen = 0;
    return !p->ready;
}

/* State from a child: Dsc facts of its subtree, minus the facts we own for its own node. */
static void apply_from_child(kraken_sync *s, peer *p, const rx_update *u)
{
    size_t went_stale = 0, went_fresh = 0;
    ensure_routes(s);
    if (u->full && !p->rx_snapshot) {
        p->rx_snapshot = true;
        p->snap_seq = p->rx_seq;
        p->n_seen = 0;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        snode *n = nt_find(&s->nodes, &ns->id);
        if (n == NULL || !uuid_eq(&n->route, &p->id) || ns->deleted || ns->has_cfg) {
            /* Outside its subtree, or Cfg/deletions, which only flow down. */
            s->stats.dropped_not_authorized++;
            char who[64], nid[KRAKEN_UUID_STRLEN + 1];
            log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                     "dropped %s node %s from %s: %s",
                     ns->deleted ? "the deletion of" : ns->has_cfg ? "the Cfg of" : "facts of",
                     fmt_id(&ns->id, nid), peer_name(p, who),
                     ns->deleted || ns->has_cfg ? "Cfg and deletions flow only down"
                                                : "the node is outside the child's subtree");
            continue;
        }
        /* An older message (a snapshot overtaken by deltas) still fills in the URLs no newer
         * message set; when those are not all known, it is skipped. */
        bool older = older_than_applied(p, n);
        uint64_t skip[URLVER_N];
        size_t n_skip = 0;
        if (older && !newer_urls(n, p->rx_seq, skip, &n_skip)) {
            s->stats.dropped_old++;
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        bool top = uuid_eq(&ns->id, &p->id);
        /* a stale node keeps what we have: only the facts listed (the child's own discoveries
         * about it) apply, never a replacement */
        bool replace = ns->dsc_full && !ns->stale;
        if (ns->n_facts > 0 || replace)
            apply_facts(s, p, &ns->id, ns->facts, ns->n_facts, replace, &s->my_owned,
                        top ? FACTS_NOT_OWNED : FACTS_ALL, skip, n_skip);
        n = nt_find(&s->nodes, &ns->id);
        if (n == NULL)
            continue;
        if (!older && n->up_session != p->serial) { /* another session: other numbers */
            n->n_uv = 0;
            n->uv_evicted = 0;
        }
        if (replace && !older) { /* every fact is as of this message: nothing older merges */
            n->n_uv = 0;
            n->uv_evicted = p->rx_seq;
        } else {
            for (size_t k = 0; k < ns->n_facts; k++)
                if (ns->facts[k].url != NULL)
                    note_url(n, url_hash(ns->facts[k].url), p->rx_seq);
        }
        if (older) { /* its node-level flags are out of date: only its facts counted */
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        stamp(p, n);
        if (ns->stale)
            went_stale += set_fresh(s, n, false);
        else if (replace)
            went_fresh += set_fresh(s, n, true);
        if (u->full)
            (void)seen_add(s, p, &ns->id);
    }
    if (u->full && !u->more) {
        /* A node of the child's subtree it did not list: it does not know it (yet). Keep the
         * facts, marked stale; never conclude it has none. */
        p->rx_snapshot = false;
        kraken_uuid *rest = NULL;
        size_t n_rest = snapshot_leftovers(s, p, &rest);
        for (size_t i = 0; i < n_rest; i++) {
            snode *n = nt_find(&s->nodes, &rest[i]);
            if (n != NULL)
                went_stale += set_fresh(s, n, false);
        }
        free(rest);
        p->n_seen = 0;
    }
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (went_stale > 0)
        publish(s, KRAKEN_SYNC_NODES_STALE, &p->id,
                "%zu nodes under child %s are stale: the child has not (re)learned their facts",
                went_stale, fmt_id(&p->id, buf));
    if (went_fresh > 0)
        publish(s, KRAKEN_SYNC_NODES_FRESH, &p->id, "%zu nodes under child %s are fresh again",
                went_fresh, fmt_id(&p->id, buf));
}

void apply_update(kraken_sync *s, peer *p, const rx_update *u)
{
    peer *saved = s->applying_from;
    s->applying_from = p;
    bool first_full = false;
    if (p->role == ROLE_PARENT)
        first_full = apply_from_parent(s, p, u);
    else
        apply_from_child(s, p, u);
    s->applying_from = saved;
    /* Outside the applying scope: thawing the engine may write Dsc that must go up. */
    if (first_full)
        first_full_from_parent(s, p);
}
