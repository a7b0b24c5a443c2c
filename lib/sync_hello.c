/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync hellos: per-node digests, the digest of each link, the hello timer and its schedule,
 * and the policy deciding when a digest mismatch earns a snapshot
 * (doc/PROTOCOL.md 4, "Hello and anti-entropy").
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "sync_impl.h"

/* ---- digests -------------------------------------------------------------------------- */

typedef struct hash_ctx {
    kraken_sync_hash full, excl, owned;
    const urlset *set;
} hash_ctx;

static int hash_cb(const char *url, const kraken_value *old_value, const kraken_value *new_value,
                   void *ud)
{
    (void)old_value;
    hash_ctx *h = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url))
        return 0;
    char *text = NULL;
    if (kraken_value_format(new_value, &text) < 0)
        return 0;
    size_t ul = strlen(url) + 1, tl = strlen(text) + 1;
    kraken__sync_hash_update(&h->full, url, ul);
    kraken__sync_hash_update(&h->full, text, tl);
    kraken_sync_hash *part = urlset_match(h->set, url) ? &h->owned : &h->excl;
    kraken__sync_hash_update(part, url, ul);
    kraken__sync_hash_update(part, text, tl);
    free(text);
    return 0;
}

static void node_hashes(kraken_sync *s, snode *n)
{
    if (!n->cfg_ok) {
        kraken_sync_hash h;
        kraken__sync_hash_init(&h);
        kraken__sync_hash_update(&h, n->id.bytes, 16);
        const kraken_node *cfg = kraken__store_peek(s->store, KRAKEN_CFG, &n->id);
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (cfg != NULL && kraken_node_encode(cfg, &bytes, &len) == 0)
            kraken__sync_hash_update(&h, bytes, len);
        free(bytes);
        kraken__sync_hash_final(&h, n->h_cfg);
        n->cfg_ok = true;
    }
    if (!n->dsc_ok) {
        hash_ctx h;
        h.set = link_owned(s, n);
        kraken__sync_hash_init(&h.full);
        kraken__sync_hash_init(&h.excl);
        kraken__sync_hash_init(&h.owned);
        kraken__sync_hash_update(&h.full, n->id.bytes, 16);
        kraken__sync_hash_update(&h.excl, n->id.bytes, 16);
        kraken__sync_hash_update(&h.owned, n->id.bytes, 16);
        const kraken_node *dsc = kraken__store_peek(s->store, KRAKEN_DSC, &n->id);
        if (dsc != NULL)
            (void)kraken__node_diff_each(NULL, dsc, hash_cb, &h);
        kraken__sync_hash_final(&h.full, n->h_full);
        kraken__sync_hash_final(&h.excl, n->h_excl);
        kraken__sync_hash_final(&h.owned, n->h_owned);
        n->dsc_ok = true;
    }
    if (!n->stale_hash_ok) {
        kraken_sync_hash h;
        kraken__sync_hash_init(&h);
        kraken__sync_hash_update(&h, n->id.bytes, 16);
        kraken__sync_hash_update(&h, "stale", 5);
        kraken__sync_hash_final(&h, n->h_stale);
        n->stale_hash_ok = true;
    }
}

static void xor_into(uint8_t *acc, const uint8_t *h)
{
    for (int i = 0; i < KRAKEN_SYNC_DIGEST_LEN; i++)
        acc[i] ^= h[i];
}

/* Any change to what the digests cover of every node (owned sets changed). */
void invalidate_dsc_hashes(kraken_sync *s)
{
    for (size_t i = 0; i < s->nodes.cap; i++)
        if (s->nodes.slots[i] != NULL)
            s->nodes.slots[i]->dsc_ok = false;
    s->change_gen++;
}

/* One pass over the nodes computes every link's digests (PROTOCOL.md 4, "Hello"). */
static void compute_digests(kraken_sync *s)
{
    ensure_routes(s);
    peer *up = s->parent;
    bool all_fresh = up == NULL || up->digest_gen == s->change_gen;
    for (size_t i = 0; all_fresh && i < s->n_children; i++)
        all_fresh = s->children[i]->digest_gen == s->change_gen;
    if (all_fresh)
        return;
    for (size_t i = 0; i < s->n_children; i++) {
        peer *p = s->children[i];
        memset(p->dig_send, 0, sizeof p->dig_send);
        memset(p->dig_hold, 0, sizeof p->dig_hold);
    }
    if (up != NULL) {
        memset(up->dig_send, 0, sizeof up->dig_send);
        memset(up->dig_hold, 0, sizeof up->dig_hold);
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n == NULL)
            continue;
        peer *down = uuid_eq(&n->route, &zero_uuid) ? NULL : find_child(s, &n->route);
        bool to_parent = up != NULL && n->in_subtree;
        if (down == NULL && !to_parent)
            continue;
        node_hashes(s, n);
        if (down != NULL) {
            bool top = uuid_eq(&n->id, &down->id);
            xor_into(down->dig_send, n->h_cfg);
            if (top)
                xor_into(down->dig_send, n->h_owned);
            /* a stale node counts as "stale", whatever facts we kept: the child reports it so */
            xor_into(down->dig_hold, !n->fresh ? n->h_stale : top ? n->h_excl : n->h_full);
        }
        if (to_parent) {
            bool me = uuid_eq(&n->id, &s->self);
            xor_into(up->dig_send, me ? n->h_excl : n->fresh ? n->h_full : n->h_stale);
            xor_into(up->dig_hold, n->h_cfg);
            if (me)
                xor_into(up->dig_hold, n->h_owned);
        }
    }
    for (size_t i = 0; i < s->n_children; i++)
        s->children[i]->digest_gen = s->change_gen;
    if (up != NULL)
        up->digest_gen = s->change_gen;
    s->digests_at = now_ms();
}

/* ---- hellos --------------------------------------------------------------------------- */

/* Only the digest of what we hold goes out (the peer compares it with what it sends, and the
 * peer's hello covers the other direction), truncated to KRAKEN_SYNC_HELLO_DIGEST_LEN bytes:
 * it only detects accidental divergence on an authenticated channel, and each byte is about
 * 0.1 B/s per link. */
static void send_hello(kraken_sync *s, peer *p)
{
    kraken_sync_Body b = kraken_sync_Body_init_zero;
    b.which_kind = kraken_sync_Body_hello_tag;
    memcpy(b.kind.hello.your_digest, p->dig_hold, KRAKEN_SYNC_HELLO_DIGEST_LEN);
    if (send_message(s, p, CH_UDP, &b) < 0)
        log_send_error(s, p, "a hello");
}

void refresh_my_owned(kraken_sync *s)
{
    urlset fresh;
    if (owned_urls_of_engine(s->engine, &fresh) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "cannot refresh the URLs this instance owns: %s",
             kraken_error_last());
        kraken_error_clear();
        return;
    }
    if (urlset_equal(&fresh, &s->my_owned)) {
        urlset_clear(&fresh);
        return;
    }
    urlset_clear(&s->my_owned);
    s->my_owned = fresh;
    invalidate_dsc_hashes(s);
}

/*
 * Hellos are jittered per session: each has its own due time, the first drawn uniformly in
 * [0, hello_ms - tick] (peer_start), each next one in [0.75 x hello_ms, hello_ms - tick] after
 * the previous. With one fixed-period timer per instance, instances started together stayed in
 * phase forever and a parent sent all its children's hellos in one burst, overflowing receive
 * buffers every period. The hello timer (schedule_hellos) fires for the earliest hello due, at
 * most HELLO_TICKS times per period, so a busy parent recomputes its digests (O(nodes)) at most
 * once per tick, not once per hello. A hello is at most one tick late, so none is more than
 * hello_ms after the previous one and dead_ms > hello_ms of silence still means lost hellos.
 */
#define HELLO_TICKS 32

uint64_t hello_tick_ms(const kraken_sync *s)
{
    uint64_t t = s->opts.hello_ms / HELLO_TICKS;
    return t > 0 ? t : 1;
}

/* A uniform draw in [lo, hi]; hi < lo gives lo. */
uint64_t uniform_ms(uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo;
    return lo + kraken__sync_random_below(span >= UINT32_MAX ? UINT32_MAX : (uint32_t)(span + 1));
}

static uint64_t hello_interval(const kraken_sync *s)
{
    uint64_t h = s->opts.hello_ms;
    return uniform_ms(h - h / 4, h - hello_tick_ms(s));
}

static void hello_to(kraken_sync *s, peer *p, uint64_t now, bool *computed)
{
    if (now < p->hello_due)
        return;
    p->hello_due = now + hello_interval(s);
    if (p->role == ROLE_PARENT && !p->ready)
        return; /* nothing to compare before the first full state */
    if (!*computed) {
        compute_digests(s); /* cached while nothing changed */
        *computed = true;
    }
    send_hello(s, p);
}

/*
 * The hello timer fires when the earliest hello is due, but not sooner than a tick after its
 * last run: a parent with thousands of children still computes digests at most HELLO_TICKS
 * times per interval, and a leaf wakes once per hello instead of HELLO_TICKS times (with
 * thousands of instances per process, as in bench_sync, the idle ticks alone took the CPU).
 */
void schedule_hellos(kraken_sync *s, uint64_t due)
{
    uint64_t earliest = s->hello_last_run + hello_tick_ms(s);
    if (due < earliest)
        due = earliest;
    uint64_t now = now_ms();
    s->hello_next = due;
    event_del(s->hello_ev);
    arm_timer(s->hello_ev, due > now ? due - now : 0);
}

void hello_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    uint64_t now = now_ms();
    log_quiet_drops(s);
    if (now - s->owned_refreshed_at >= s->opts.hello_ms) {
        s->owned_refreshed_at = now;
        refresh_my_owned(s); /* the owned URLs the digests depend on */
    }
    bool computed = false;
    uint64_t next = now + s->opts.hello_ms; /* owned URLs and log summaries: once a period */
    for (size_t i = 0; i < s->n_children; i++) {
        hello_to(s, s->children[i], now, &computed);
        if (s->children[i]->hello_due < next)
            next = s->children[i]->hello_due;
    }
    if (s->parent != NULL) {
        hello_to(s, s->parent, now, &computed);
        if (s->parent->hello_due < next)
            next = s->parent->hello_due;
    }
    s->hello_last_run = now;
    schedule_hellos(s, next);
}

/*
 * Snapshots the peer asks for (Body.resend, or hellos showing a mismatch): at most one per half
 * hello interval, and none while earlier output is still queued for the peer. Otherwise an
 * authenticated peer that asks fast, or stops reading, makes us queue snapshots without bound.
 * Declining is safe: the digests still differ at the next hello.
 */
bool snapshot_welcome(const kraken_sync *s, const peer *p)
{
    if (now_ms() - p->last_snapshot_at < s->opts.hello_ms / 2)
        return false;
    return p->conn == NULL || kraken__sync_conn_queued(p->conn) < FRAME_NODES_BUDGET;
}

/*
 * The peer's view of what we send differs from ours. Deltas still in flight explain a
 * mismatch right after we sent some, so the snapshot waits for a second hello in that case.
 */
void on_hello(kraken_sync *s, peer *p, const kraken_sync_Hello *h)
{
    if (!p->ready)
        return;
    /* Recomputing is O(nodes): during a join storm every hello would pay it. Digests at most
     * one tick old only delay the detection of a loss by one hello (the two-strike rule below
     * already absorbs a mismatch that is only in flight), and they never hide one for longer:
     * the next hello compares fresh ones. */
    uint64_t tick_now = now_ms();
    if (p->digest_gen != s->change_gen &&
        (p->digest_gen == UINT64_MAX || tick_now - s->digests_at >= hello_tick_ms(s)))
        compute_digests(s);
    if (memcmp(h->your_digest, p->dig_send, KRAKEN_SYNC_HELLO_DIGEST_LEN) == 0) {
        p->strikes = 0;
        return;
    }
    p->strikes++;
    uint64_t now = now_ms();
    /* Deltas may sit in a busy peer's queues for a long time: a parent applying a
     * 10,000-child round takes most of a second, and an overloaded one (30,000 children on two
     * shared cores) several; a hello crossing them looked like a loss and cost a snapshot
     * (13,000 per round). So after sending anything in the last hello interval, the snapshot
     * waits for a second mismatching hello in a row: a real loss then costs at most two
     * intervals; when this side has been quiet for an interval, the first one repairs it. */
    uint64_t guard = (uint64_t)s->opts.damping_ms * 4 + 100;
    if (guard < s->opts.hello_ms)
        guard = s->opts.hello_ms;
    /* Changes applied but not flushed yet are deltas about to go: under load a hello can
     * arrive between the two, and a snapshot then only repeats them (a 30,000-child bench
     * sent 13,835 snapshots in one round that way). */
    bool flushing = s->n_dirty > 0 || event_pending(s->flush_ev, EV_TIMEOUT, NULL);
    bool quiet = !flushing && now - p->last_delta_at > guard && now - p->last_snapshot_at > guard;
    if ((p->strikes >= 2 || quiet) && snapshot_welcome(s, p)) {
        char who[64];
        slog(s, KRAKEN_LOG_INFO,
             "digests differ for %s (%d hello(s) in a row, last sent %llu ms ago): snapshot",
             peer_name(p, who), p->strikes,
             (unsigned long long)(now - (p->last_delta_at > p->last_snapshot_at
                                             ? p->last_delta_at
                                             : p->last_snapshot_at)));
        snapshot_or_log(s, p);
        p->strikes = -1; /* the next hello may predate the snapshot */
    }
}
