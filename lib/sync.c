/*
 * The sync protocol state machine (SPEC 6, doc/PROTOCOL.md): joins (both roles), sessions,
 * the subtree each link speaks for, Dsc ownership, damped delta queues fed by the store
 * listener, snapshots, hellos with digests, dead peers and rejoin.
 *
 * Sockets and framing are in sync_net.c, keys and MACs in sync_crypto.c. Everything runs on the
 * caller's event loop; store writes happen only from loop callbacks, never from the listener.
 */
#include <event2/event.h>
#include <pb_encode.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sync_impl.h"

#define DGRAM_NODES_BUDGET 1100         /* NodeState bytes per datagram (envelope ~100 more) */
#define TCP_BULK_BYTES (16u << 10)      /* a flush larger than this goes over TCP at once */
#define MAX_PENDING_URLS 64             /* beyond: send the node's whole Dsc */

/* ---- small helpers -------------------------------------------------------------------- */

void blobs_clear(blobs *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].data);
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

int blobs_push(blobs *b, uint8_t *data, size_t len, uint32_t depth)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        blob *v = realloc(b->v, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (blob){data, len, depth, false};
    return KRAKEN_OK;
}

static int blob_depth_cmp(const void *a, const void *b)
{
    const blob *x = a, *y = b;
    return x->depth < y->depth ? -1 : x->depth > y->depth;
}

/* ---- the engine accessor -------------------------------------------------------------- */

int owned_urls_of_engine(kraken_engine *engine, urlset *out)
{
    memset(out, 0, sizeof *out);
    return kraken__engine_discoverable_urls(engine, &out->v, &out->n);
}

static const char *const drop_names[DROP_KINDS] = {
    "undecodable messages", "messages from senders without a session", "messages with a bad MAC",
    "replayed or overtaken messages", "unauthorized states", "states older than applied ones",
    "states the store refused"};

/* ---- events and run states ------------------------------------------------------------ */

void publish(kraken_sync *s, kraken_sync_event kind, const kraken_uuid *id,
             const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kraken_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = KRAKEN_EVENT_SYNC;
    ev.kind = (int)kind;
    ev.node_id = *id;
    ev.message = msg;
    kraken_bus *bus = kraken_engine_bus(s->engine);
    if (bus != NULL)
        (void)kraken_bus_publish(bus, &ev);
}

#define DROP_LOG_INTERVAL_MS 1000

/*
 * Dropped input is counted in the stats and logged with its cause. What peers send can come in
 * floods (a forger, a replaying middlebox), so each kind is logged at most once per second; the
 * count of the lines held back goes out with the next line of that kind, or from the hello
 * timer (log_quiet_drops) when none follows.
 */
void log_drop(kraken_sync *s, drop_kind kind, int level, const char *fmt, ...)
{
    if (!kraken__engine_log_enabled(s->engine, level))
        return;
    uint64_t now = now_ms();
    if (s->drop_logged_at[kind] != 0 && now - s->drop_logged_at[kind] < DROP_LOG_INTERVAL_MS) {
        s->drop_quiet[kind]++;
        return;
    }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->drop_quiet[kind] > 0)
        slog(s, level, "%s (and %llu more %s not logged since the last report)", msg,
             (unsigned long long)s->drop_quiet[kind], drop_names[kind]);
    else
        slog(s, level, "%s", msg);
    s->drop_logged_at[kind] = now;
    s->drop_quiet[kind] = 0;
}

void log_quiet_drops(kraken_sync *s)
{
    uint64_t now = now_ms();
    for (int k = 0; k < DROP_KINDS; k++) {
        if (s->drop_quiet[k] == 0 || now - s->drop_logged_at[k] < DROP_LOG_INTERVAL_MS)
            continue;
        slog(s, KRAKEN_LOG_NOTICE, "%llu more %s were dropped and not logged",
             (unsigned long long)s->drop_quiet[k], drop_names[k]);
        s->drop_quiet[k] = 0;
        s->drop_logged_at[k] = now;
    }
}

/* RunState discoveries go through the engine's built-in sync service, which owns the URL
 * (PROTOCOL.md 3); without one, straight into Dsc. */
void discover_run_state(kraken_sync *s, const kraken_uuid *id, const char *state)
{
    if (!kraken_store_contains(s->store, id))
        return;
    kraken_service *svc = kraken_engine_find_service(s->engine, "sync");
    if (svc != NULL && kraken_service_discover_text(svc, id, "/RunState", state) == 0)
        return;
    (void)kraken_store_set_text(s->store, KRAKEN_DSC, id, "/RunState", state);
}

char *fmt_id(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    return kraken_uuid_format(id, buf);
}

const char *peer_name(const peer *p, char buf[64])
{
    char id[KRAKEN_UUID_STRLEN + 1];
    snprintf(buf, 64, "%s %s", p->role == ROLE_PARENT ? "parent" : "child", fmt_id(&p->id, id));
    return buf;
}

/* ---- queueing changes ----------------------------------------------------------------- */

void arm_flush(kraken_sync *s)
{
    if (!event_pending(s->flush_ev, EV_TIMEOUT, NULL))
        arm_timer(s->flush_ev, s->opts.damping_ms);
}

void queue_node(kraken_sync *s, snode *n)
{
    if (!n->queued) {
        if (s->n_dirty == s->cap_dirty) {
            size_t cap = s->cap_dirty ? s->cap_dirty * 2 : 64;
            kraken_uuid *v = realloc(s->dirty, cap * sizeof *v);
            if (v == NULL) {
                /* Out of memory: the hello digests will notice and a snapshot repairs it. */
                return;
            }
            s->dirty = v;
            s->cap_dirty = cap;
        }
        s->dirty[s->n_dirty++] = n->id;
        n->queued = true;
    }
    arm_flush(s);
}

static void queue_up_url(snode *n, const char *url)
{
    if (n->up_all)
        return;
    for (size_t i = 0; i < n->n_up_urls; i++)
        if (strcmp(n->up_urls[i], url) == 0)
            return;
    if (n->n_up_urls >= MAX_PENDING_URLS) {
        snode_clear_urls(n);
        n->up_all = true;
        return;
    }
    if (n->n_up_urls == n->cap_up_urls) {
        size_t cap = n->cap_up_urls ? n->cap_up_urls * 2 : 4;
        char **v = realloc(n->up_urls, cap * sizeof *v);
        if (v == NULL) {
            n->up_all = true;
            return;
        }
        n->up_urls = v;
        n->cap_up_urls = cap;
    }
    char *copy = strdup(url);
    if (copy == NULL) {
        n->up_all = true;
        return;
    }
    n->up_urls[n->n_up_urls++] = copy;
}

int push_tomb(peer *p, const kraken_uuid *id)
{
    if (p->n_tombs == p->cap_tombs) {
        size_t cap = p->cap_tombs ? p->cap_tombs * 2 : 8;
        kraken_uuid *v = realloc(p->tombs, cap * sizeof *v);
        if (v == NULL)
            return KRAKEN_ENOMEM;
        p->tombs = v;
        p->cap_tombs = cap;
    }
    p->tombs[p->n_tombs++] = *id;
    return KRAKEN_OK;
}

/* Store listener: records what changed and arms the damping timer; never writes. */
static void on_store_change(const kraken_state_change *ch, void *ud)
{
    kraken_sync *s = ud;
    s->change_gen++;
    snode *n = nt_find(&s->nodes, &ch->node_id);
    switch (ch->kind) {
    case KRAKEN_CHANGE_CREATE:
        n = nt_add(&s->nodes, &ch->node_id);
        if (n == NULL)
            return;
        n->parent = *cfg_parent_of(kraken__store_peek(s->store, KRAKEN_CFG, &ch->node_id));
        n->cfg_ok = n->dsc_ok = false;
        n->cfg_dirty = true;
        s->topo_dirty = true;
        queue_node(s, n);
        return;
    case KRAKEN_CHANGE_DELETE:
        if (n == NULL)
            return;
        if (!uuid_eq(&n->route, &zero_uuid)) {
            peer *p = find_child(s, &n->route);
            if (p != NULL && p != s->applying_from && push_tomb(p, &n->id) == 0)
                arm_flush(s);
        }
        member_detach(n);
        nt_remove(&s->nodes, &ch->node_id);
        s->topo_dirty = true;
        return;
    case KRAKEN_CHANGE_CFG_UPDATE:
        if (n == NULL)
            return;
        n->cfg_ok = false;
        if (ch->url != NULL && strcmp(ch->url, "/ParentId") == 0) {
            n->parent = ch->new_value != NULL && ch->new_value->type == KRAKEN_T_UUID
                            ? ch->new_value->v.uuid
                            : zero_uuid;
            n->dsc_ok = false; /* who owns which of its facts may have changed */
            s->topo_dirty = true;
        }
        if (s->applying_from == NULL || !uuid_eq(&n->route, &s->applying_from->id)) {
            n->cfg_dirty = true;
            queue_node(s, n);
        }
        return;
    case KRAKEN_CHANGE_UPDATE:
        if (n == NULL || ch->url == NULL)
            return;
        n->dsc_ok = false;
        /* This instance itself reports a fact about one of its direct children that is not
         * one of the URLs it owns for them: it speaks for that node (no instance below does),
         * so its facts are as current as they get. Deeper nodes are learned from links only. */
        if (s->applying_from == NULL && !n->fresh && is_direct_child(s, n) &&
            !urlset_match(&s->my_owned, ch->url))
            (void)set_fresh(s, n, true);
        bool queued = false;
        if (s->has_parent && (s->parent == NULL || s->applying_from != s->parent)) {
            queue_up_url(n, ch->url);
            queued = true;
        }
        if (is_direct_child(s, n) && urlset_match(&s->my_owned, ch->url) &&
            (s->applying_from == NULL || !uuid_eq(&n->id, &s->applying_from->id))) {
            n->owned_dirty = true;
            queued = true;
        }
        if (queued)
            queue_node(s, n);
        return;
    default:
        return;
    }
}

/* ---- encoding ------------------------------------------------------------------------- */

/* Envelope{sender, epoch, seq, body, mac} for @p p on channel @p ch. */
static int seal(kraken_sync *s, peer *p, int ch, const uint8_t *body, size_t body_len,
                uint8_t **out, size_t *out_len)
{
    uint64_t seq = ++p->seq_out;
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_mac(p->key, s->self.bytes, s->epoch, seq, channel_byte[ch], body, body_len,
                     mac);
    size_t cap = body_len + 128;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, cap);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_sender_tag) &&
              pb_encode_string(&os, s->self.bytes, 16) &&
              pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_Envelope_epoch_tag) &&
              pb_encode_varint(&os, s->epoch) &&
              pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_Envelope_seq_tag) &&
              pb_encode_varint(&os, seq) &&
              pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_body_tag) &&
              pb_encode_string(&os, body, body_len) &&
              pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_mac_tag) &&
              pb_encode_string(&os, mac, sizeof mac);
    if (!ok) {
        free(buf);
        return kraken__err(KRAKEN_EPROTO, "sync: envelope encode failed");
    }
    *out = buf;
    *out_len = os.bytes_written;
    return KRAKEN_OK;
}

static int send_body(kraken_sync *s, peer *p, int ch, const uint8_t *body, size_t len)
{
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = seal(s, p, ch, body, len, &env, &env_len);
    if (rc == 0 && ch == CH_UDP && env_len > KRAKEN_SYNC_MAX_DATAGRAM && p->conn != NULL) {
        /* Too big for one datagram after all: the channel is in the mac, so seal again. */
        free(env);
        env = NULL;
        ch = CH_TCP;
        rc = seal(s, p, ch, body, len, &env, &env_len);
    }
    if (rc < 0)
        return rc;
    if (ch == CH_UDP) {
        rc = kraken__sync_net_send(s->net, &p->udp, env, env_len);
        if (rc == 0) {
            s->stats.datagrams_sent++;
            s->stats.bytes_sent += env_len;
        }
    } else if (p->conn != NULL) {
        rc = kraken__sync_conn_send(p->conn, env, env_len);
        if (rc == 0) {
            s->stats.tcp_messages_sent++;
            s->stats.bytes_sent += env_len;
        }
    } else {
        rc = kraken__err(KRAKEN_ESTATE, "sync: no connection to the peer");
    }
    free(env);
    return rc;
}

int send_message(kraken_sync *s, peer *p, int ch, const kraken_sync_Body *body)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_message(kraken_sync_Body_fields, body, &buf, &len);
    if (rc == 0)
        rc = send_body(s, p, ch, buf, len);
    free(buf);
    return rc;
}

/* Body{update: StateUpdate{full, nodes = blobs[from..to), more}} written by hand around the
 * already encoded NodeStates, so they are not decoded and re-encoded. */
static int send_update(kraken_sync *s, peer *p, int ch, bool full, bool more, const blob *v,
                       size_t n)
{
    size_t su = (full ? 2 : 0) + (more ? 2 : 0);
    for (size_t i = 0; i < n; i++)
        su += 1 + kraken__varint_size(v[i].len) + v[i].len;
    size_t total = 1 + kraken__varint_size(su) + su;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, total);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Body_update_tag) &&
              pb_encode_varint(&os, su);
    if (ok && full)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_StateUpdate_full_tag) &&
             pb_encode_varint(&os, 1);
    for (size_t i = 0; ok && i < n; i++)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_StateUpdate_nodes_tag) &&
             pb_encode_string(&os, v[i].data, v[i].len);
    if (ok && more)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_StateUpdate_more_tag) &&
             pb_encode_varint(&os, 1);
    int rc = ok ? send_body(s, p, ch, buf, os.bytes_written)
                : kraken__err(KRAKEN_EPROTO, "sync: update encode failed");
    free(buf);
    return rc;
}

/* Frames of at most FRAME_NODES_BUDGET bytes of nodes over TCP. A snapshot says full in every
 * part and more in all but the last. */
static int send_tcp_parts(kraken_sync *s, peer *p, bool full, const blob *v, size_t n)
{
    size_t i = 0;
    do {
        size_t j = i, bytes = 0;
        while (j < n && (j == i || bytes + v[j].len <= FRAME_NODES_BUDGET))
            bytes += v[j++].len;
        int rc = send_update(s, p, CH_TCP, full, full && j < n, v + i, j - i);
        if (rc < 0)
            return rc;
        i = j;
    } while (i < n);
    return KRAKEN_OK;
}

/* Deltas: datagrams of up to DGRAM_NODES_BUDGET bytes; nodes that do not fit one datagram,
 * and bursts too large to spray as datagrams, go over TCP. Takes the blobs' data. */
static int send_deltas(kraken_sync *s, peer *p, blobs *b)
{
    if (b->n == 0)
        return KRAKEN_OK;
    qsort(b->v, b->n, sizeof *b->v, blob_depth_cmp);
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        total += b->v[i].len + 4;
    p->last_delta_at = now_ms();
    if (total > TCP_BULK_BYTES && p->conn != NULL)
        return send_tcp_parts(s, p, false, b->v, b->n);
    blobs small = {0}, big = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        blob *x = &b->v[i];
        bool fits =
            !x->reliable && x->len + 1 + kraken__varint_size(x->len) <= DGRAM_NODES_BUDGET;
        rc = blobs_push(fits ? &small : &big, x->data, x->len, x->depth);
        if (rc == 0)
            x->data = NULL; /* moved */
    }
    size_t start = 0, bytes = 0;
    for (size_t i = 0; rc == 0 && i <= small.n; i++) {
        size_t cost = i < small.n ? small.v[i].len + 1 + kraken__varint_size(small.v[i].len) : 0;
        if (i > start && (i == small.n || bytes + cost > DGRAM_NODES_BUDGET)) {
            rc = send_update(s, p, CH_UDP, false, false, small.v + start, i - start);
            start = i;
            bytes = 0;
        }
        bytes += cost;
    }
    if (rc == 0 && big.n > 0)
        rc = send_tcp_parts(s, p, false, big.v, big.n);
    blobs_clear(&small);
    blobs_clear(&big);
    return rc;
}

/* ---- node states ---------------------------------------------------------------------- */

/* Down to a child: the node's Cfg and/or, for the child's own node, the facts we own. */
static int down_state(kraken_sync *s, const snode *n, bool with_cfg, bool with_owned, blobs *out)
{
    uint8_t *cfg = NULL;
    size_t cfg_len = 0;
    factlist facts = {0};
    int rc = 0;
    if (with_cfg) {
        const kraken_node *node = kraken__store_peek(s->store, KRAKEN_CFG, &n->id);
        if (node == NULL)
            return KRAKEN_OK;
        rc = kraken_node_encode(node, &cfg, &cfg_len);
    }
    if (rc == 0 && with_owned)
        rc = collect_facts(kraken__store_peek(s->store, KRAKEN_DSC, &n->id), &s->my_owned,
                           FACTS_OWNED, &facts);
    static const uint8_t empty_cfg[1];
    if (rc == 0)
        rc = encode_node_state(&n->id, false, cfg != NULL ? cfg : with_cfg ? empty_cfg : NULL,
                               cfg_len, with_owned ? &facts : NULL, with_owned, false, out,
                               n->depth);
    free(cfg);
    factlist_clear(&facts);
    return rc;
}

/*
 * Up to the parent: the node's Dsc facts (all, or those of @p urls), minus what the parent
 * owns for this instance's own node. A stale node (PROTOCOL.md 4, "Stale facts") goes with the
 * facts this instance has, flagged stale and never as the whole Dsc: claiming that was all
 * would make the parent forget what it knows. The digests do not cover a stale node's facts,
 * so they go over TCP, where nothing is lost.
 */
static int up_state(kraken_sync *s, const snode *n, bool all, char **urls, size_t n_urls,
                    blobs *out)
{
    bool self = uuid_eq(&n->id, &s->self);
    bool stale = !self && !n->fresh;
    const kraken_node *dsc = kraken__store_peek(s->store, KRAKEN_DSC, &n->id);
    const urlset *skip = self ? &s->parent->owned : NULL;
    factlist facts = {0};
    int rc = 0;
    if (dsc != NULL && all) {
        rc = collect_facts(dsc, skip, skip != NULL ? FACTS_NOT_OWNED : FACTS_ALL, &facts);
    } else if (dsc != NULL) {
        for (size_t i = 0; rc == 0 && i < n_urls; i++) {
            if (urlset_match(skip, urls[i]))
                continue;
            kraken_value v = KRAKEN_VALUE_INIT;
            int g = kraken_node_get(dsc, urls[i], &v);
            if (g < 0)
                kraken_error_clear(); /* absent: sent as unset */
            rc = factlist_add(&facts, urls[i], g < 0 ? NULL : &v);
            kraken_value_clear(&v);
        }
    }
    if (rc == 0 && (all || facts.n > 0 || n->fresh_dirty)) {
        rc = encode_node_state(&n->id, false, NULL, 0, &facts, all && !stale, stale, out,
                               n->depth);
        if (rc == 0 && stale)
            out->v[out->n - 1].reliable = true;
    }
    factlist_clear(&facts);
    return rc;
}

static int tomb_state(const kraken_uuid *id, blobs *out)
{
    return encode_node_state(id, true, NULL, 0, NULL, false, false, out, 0);
}

/* ---- snapshots ------------------------------------------------------------------------ */

/* Everything a link carries, in parts over TCP (PROTOCOL.md 4, "Snapshots"). */
static int send_snapshot(kraken_sync *s, peer *p)
{
    ensure_routes(s);
    blobs b = {0};
    int rc = 0;
    if (p->role == ROLE_CHILD) { /* the child's subtree only: a join costs its own size */
        snode *top = nt_find(&s->nodes, &p->id);
        for (snode *n = top != NULL ? top->members : NULL; rc == 0 && n != NULL; n = n->m_next)
            rc = down_state(s, n, true, n == top, &b);
    } else {
        for (size_t i = 0; rc == 0 && i < s->nodes.cap; i++) {
            snode *n = s->nodes.slots[i];
            if (n != NULL && n->in_subtree)
                rc = up_state(s, n, true, NULL, 0, &b);
        }
    }
    if (rc == 0) {
        qsort(b.v, b.n, sizeof *b.v, blob_depth_cmp);
        rc = send_tcp_parts(s, p, true, b.v, b.n);
    }
    blobs_clear(&b);
    if (rc == 0) {
        s->stats.full_resends++;
        p->last_snapshot_at = now_ms();
        p->n_tombs = 0; /* the snapshot says it all */
    }
    return rc;
}

/* ---- flushing deltas ------------------------------------------------------------------ */

/* Sending failed (out of memory, a closing connection): the hello digests will notice what
 * the peer missed and a snapshot repairs it, but the operator hears of it now. */
void log_send_error(kraken_sync *s, const peer *p, const char *what)
{
    char who[64];
    s->stats.send_failed++;
    slog(s, KRAKEN_LOG_ERROR, "cannot send %s to %s: %s", what, peer_name(p, who),
         kraken_error_last());
    kraken_error_clear();
}

void snapshot_or_log(kraken_sync *s, peer *p)
{
    if (send_snapshot(s, p) < 0)
        log_send_error(s, p, "a snapshot");
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    ensure_routes(s);
    if (s->check_children)
        check_children(s);
    peer *up = s->parent != NULL && s->parent->ready ? s->parent : NULL;
    for (size_t i = 0; i < s->n_dirty; i++) {
        snode *n = nt_find(&s->nodes, &s->dirty[i]);
        if (n == NULL)
            continue;
        peer *down = uuid_eq(&n->route, &zero_uuid) ? NULL : find_child(s, &n->route);
        bool top = down != NULL && uuid_eq(&n->id, &down->id);
        if (down != NULL && (n->cfg_dirty || (top && n->owned_dirty)) &&
            down_state(s, n, n->cfg_dirty, top && n->owned_dirty, &down->out) < 0)
            log_send_error(s, down, "a delta");
        if (up != NULL && n->in_subtree && (n->up_all || n->n_up_urls > 0 || n->fresh_dirty) &&
            up_state(s, n, n->up_all, n->up_urls, n->n_up_urls, &up->out) < 0)
            log_send_error(s, up, "a delta");
        n->queued = n->cfg_dirty = n->owned_dirty = n->up_all = n->fresh_dirty = false;
        snode_clear_urls(n);
    }
    s->n_dirty = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        peer *p = s->children[i];
        for (size_t k = 0; k < p->n_tombs; k++)
            if (tomb_state(&p->tombs[k], &p->out) < 0)
                log_send_error(s, p, "a deletion");
        p->n_tombs = 0;
        if (send_deltas(s, p, &p->out) < 0)
            log_send_error(s, p, "deltas");
        blobs_clear(&p->out);
    }
    if (up != NULL) {
        if (send_deltas(s, up, &up->out) < 0)
            log_send_error(s, up, "deltas");
        blobs_clear(&up->out);
    }
}

/* ---- life cycle ----------------------------------------------------------------------- */

static int check_options(const kraken_sync_options *o)
{
    if (o->version < 1 || o->version > KRAKEN_SYNC_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "sync options: version %u, expected 1..%u", o->version,
                           KRAKEN_SYNC_OPTIONS_VERSION);
    bool has_file = o->secret_file != NULL && o->secret_file[0] != '\0';
    if (!o->insecure && !has_file && o->key == NULL)
        return kraken__err(KRAKEN_EINVAL, "sync options: no secret_file and no key (set insecure "
                                          "for a demo without one)");
    if (has_file && o->key != NULL)
        return kraken__err(KRAKEN_EINVAL, "sync options: both secret_file and key are set");
    if (o->key != NULL && (o->key_len < KRAKEN_SYNC_SECRET_MIN || o->key_len > KRAKEN_SYNC_SECRET_MAX))
        return kraken__err(KRAKEN_EINVAL, "sync options: key of %zu bytes, need %d to %d",
                           o->key_len, KRAKEN_SYNC_SECRET_MIN, KRAKEN_SYNC_SECRET_MAX);
    if (o->hello_ms == 0)
        return kraken__err(KRAKEN_EINVAL, "sync options: hello_ms must be > 0");
    if (o->dead_ms <= o->hello_ms)
        return kraken__err(KRAKEN_EINVAL, "sync options: dead_ms (%u) must exceed hello_ms (%u)",
                           o->dead_ms, o->hello_ms);
    if (o->rejoin_max_ms < o->rejoin_min_ms)
        return kraken__err(KRAKEN_EINVAL,
                           "sync options: rejoin_max_ms (%u) is below rejoin_min_ms (%u)",
                           o->rejoin_max_ms, o->rejoin_min_ms);
    return KRAKEN_OK;
}

static int load_nodes(kraken_sync *s)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    int rc = kraken_store_read_all(s->store, KRAKEN_CFG, &nodes, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        snode *x = nt_add(&s->nodes, kraken_node_id(nodes[i]));
        if (x == NULL)
            rc = kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        else
            x->parent = *cfg_parent_of(nodes[i]);
    }
    kraken_nodes_free(nodes, n);
    s->topo_dirty = true;
    return rc;
}

/* Datagrams to the parent leave from our UDP socket, so its address must be of our family; an
 * IPv6 socket reaches an IPv4 parent through the v4-mapped address. */
static int match_family(kraken_sync_addr *parent, const kraken_sync_addr *bind_addr,
                        const kraken_sync_options *opts)
{
    sa_family_t pf = parent->u.sa.sa_family, bf = bind_addr->u.sa.sa_family;
    if (pf == bf)
        return KRAKEN_OK;
    if (bf == AF_INET6 && pf == AF_INET) {
        struct sockaddr_in v4 = parent->u.in4;
        memset(&parent->u, 0, sizeof parent->u);
        parent->u.in6.sin6_family = AF_INET6;
        parent->u.in6.sin6_port = v4.sin_port;
        parent->u.in6.sin6_addr.s6_addr[10] = 0xff;
        parent->u.in6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&parent->u.in6.sin6_addr.s6_addr[12], &v4.sin_addr, 4);
        parent->len = sizeof parent->u.in6;
        return KRAKEN_OK;
    }
    return kraken__err(KRAKEN_EINVAL,
                       "sync parent_addr '%s' is IPv6 but listen_addr '%s' is IPv4: listen on "
                       "an IPv6 address (or \"::\") to reach an IPv6 parent",
                       opts->parent_addr, opts->listen_addr ? opts->listen_addr : "0.0.0.0");
}

static char *dup_opt(const char *s) { return s != NULL ? strdup(s) : NULL; }

static void sync_detach(void *arg);

int kraken_sync_options_init(kraken_sync_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "sync_options_init: opts must not be NULL");
    if (version < 1 || version > KRAKEN_SYNC_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "sync_options_init: version %u, this library knows "
                                          "1..%u", version, KRAKEN_SYNC_OPTIONS_VERSION);
    static const kraken_sync_options defaults = KRAKEN_SYNC_OPTIONS_INIT;
    *opts = defaults;
    opts->version = version;
    return 0;
}

int kraken_sync_new(kraken_sync **out, kraken_engine *engine, struct event_base *base,
                    const kraken_sync_options *opts)
{
    if (out == NULL || engine == NULL || base == NULL || opts == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_new: out, engine, base and opts are "
                                          "required");
    int rc = kraken__engine_usable(engine, "kraken_sync_new");
    if (rc < 0 || (rc = check_options(opts)) < 0 || (rc = kraken__sync_crypto_init()) < 0)
        return rc;
    kraken_sync *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
    s->engine = engine;
    kraken__owner_init(&s->owner);
    s->store = kraken_engine_store(engine);
    s->base = base;
    s->opts = *opts;
    s->listen_text = dup_opt(opts->listen_addr);
    s->parent_text = dup_opt(opts->parent_addr);
    s->opts.listen_addr = s->listen_text;
    s->opts.parent_addr = s->parent_text;
    s->opts.secret_file = NULL;
    s->opts.key = NULL;
    s->self = *kraken_engine_self_id(engine);
    s->backoff_ms = opts->rejoin_min_ms;
    struct rlimit nofile;
    s->max_pending = kraken__sync_pending_limit(
        getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
            ? (uint64_t)nofile.rlim_cur
            : UINT64_MAX);
    s->change_gen = 1; /* new sessions start at digest_gen 0: stale */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;

    kraken_sync_addr bind_addr;
    if ((opts->listen_addr != NULL && s->listen_text == NULL) ||
        (opts->parent_addr != NULL && s->parent_text == NULL)) {
        rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
        goto fail;
    }
    if ((rc = kraken__sync_parse_addr(opts->listen_addr, opts->port, &bind_addr)) < 0) {
        rc = kraken__err_prefix(rc, "sync listen_addr");
        goto fail;
    }
    if (opts->parent_addr != NULL) {
        if ((rc = kraken__sync_parse_addr(opts->parent_addr, KRAKEN_SYNC_DEFAULT_PORT,
                                          &s->parent_addr)) < 0) {
            rc = kraken__err_prefix(rc, "sync parent_addr");
            goto fail;
        }
        if (kraken__sync_addr_port(&s->parent_addr) == 0) {
            rc = kraken__err(KRAKEN_EINVAL, "sync parent_addr '%s': port 0", opts->parent_addr);
            goto fail;
        }
        if ((rc = match_family(&s->parent_addr, &bind_addr, opts)) < 0)
            goto fail;
        s->has_parent = true;
    }
    if (opts->insecure) {
        const uint8_t *fixed;
        kraken__sync_insecure_secret(&fixed, &s->secret_len);
        s->secret = (uint8_t *)fixed;
    } else if (opts->key != NULL) {
        if ((s->secret = malloc(opts->key_len)) == NULL) {
            rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
            goto fail;
        }
        memcpy(s->secret, opts->key, opts->key_len);
        s->secret_len = opts->key_len;
        s->secret_owned = true;
    } else {
        if ((rc = kraken__sync_secret_load(opts->secret_file, &s->secret, &s->secret_len)) < 0)
            goto fail;
        s->secret_owned = true;
    }
    /* A child proves its own node key (PROTOCOL.md 2): 32 bytes, from its parent's key. */
    if (s->has_parent && !opts->insecure && s->secret_len != KRAKEN_SYNC_KEY_LEN) {
        rc = kraken__err(KRAKEN_EINVAL,
                         "sync %s: %zu bytes, but a child's key is its %d-byte node key "
                         "(kraken_sync_write_node_key on the root), not the cluster secret",
                         opts->key != NULL ? "key" : "secret_file", s->secret_len,
                         KRAKEN_SYNC_KEY_LEN);
        goto fail;
    }
    if ((rc = owned_urls_of_engine(engine, &s->my_owned)) < 0 || (rc = load_nodes(s)) < 0)
        goto fail;
    s->flush_ev = evtimer_new(base, flush_cb, s);
    s->hello_ev = evtimer_new(base, hello_cb, s);
    s->join_ev = evtimer_new(base, join_timer_cb, s);
    if (s->flush_ev == NULL || s->hello_ev == NULL || s->join_ev == NULL) {
        rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
        goto fail;
    }
    static const kraken_sync_net_ops net_ops = {on_datagram, on_accepted, on_accept_failed};
    if ((rc = kraken__sync_net_new(&s->net, base, &bind_addr, &net_ops, s)) < 0)
        goto fail;
    if ((rc = kraken_store_listen(s->store, on_store_change, s, NULL, &s->listener)) < 0)
        goto fail;
    s->owned_refreshed_at = now_ms();
    s->hello_last_run = now_ms();
    schedule_hellos(s, s->hello_last_run + s->opts.hello_ms);
    if (s->has_parent) {
        /* Frozen until the first full state (the engine may already start frozen). */
        s->engine_was_frozen = kraken_engine_frozen(engine);
        if (!s->engine_was_frozen)
            kraken_engine_freeze(engine);
        s->froze_engine = true;
        arm_timer(s->join_ev, 0); /* join from the loop, not from inside this call */
    }
    if ((rc = kraken__engine_attach(engine, sync_detach, s)) < 0)
        goto fail;
    s->attached = true;
    *out = s;
    return KRAKEN_OK;
fail:
    kraken_sync_free(s);
    return rc;
}

/* Release sockets, timers, peers and the store listener; the handle stays. */
static void sync_teardown(kraken_sync *s, bool engine_going)
{
    if (s->engine == NULL)
        return;
    if (s->attached)
        kraken__engine_unattach(s->engine, s);
    s->attached = false;
    if (!engine_going && s->froze_engine && !s->engine_was_frozen) /* never joined: as found */
        kraken_engine_thaw(s->engine);
    for (size_t i = 0; i < s->n_children; i++)
        peer_free(s->children[i]);
    free(s->children);
    s->children = NULL;
    s->n_children = 0;
    peer_free(s->parent);
    s->parent = NULL;
    abort_join(s);
    while (s->pending != NULL)
        pending_free(s, s->pending, true);
    kraken__sync_net_free(s->net);
    s->net = NULL;
    if (s->listener != NULL)
        kraken_store_listener_remove(s->listener);
    s->listener = NULL;
    if (s->flush_ev != NULL)
        event_free(s->flush_ev);
    if (s->hello_ev != NULL)
        event_free(s->hello_ev);
    if (s->join_ev != NULL)
        event_free(s->join_ev);
    s->flush_ev = s->hello_ev = s->join_ev = NULL;
    s->engine = NULL;
    s->store = NULL;
}

/* The engine is being freed: stop now; kraken_sync_free() later releases the handle. */
static void sync_detach(void *arg)
{
    kraken_sync *s = arg;
    s->attached = false; /* the engine took us off its list */
    sync_teardown(s, true);
}

void kraken_sync_free(kraken_sync *sync)
{
    if (sync == NULL || kraken__owner_check(&sync->owner, "sync_free", "sync") < 0)
        return;
    kraken_sync *s = sync;
    sync_teardown(s, false);
    nt_free(&s->nodes);
    free(s->dirty);
    urlset_clear(&s->my_owned);
    if (s->secret_owned)
        kraken__sync_secret_free(s->secret, s->secret_len);
    free(s->listen_text);
    free(s->parent_text);
    free(s);
}

/* Calls on a sync from another thread, or after its engine was freed, read nothing. */
static bool sync_usable(const kraken_sync *sync, const char *op)
{
    return sync != NULL && kraken__owner_check(&sync->owner, op, "sync") == 0 &&
           sync->engine != NULL;
}

uint16_t kraken_sync_port(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_port") ? kraken__sync_net_port(sync->net) : 0;
}

bool kraken_sync_joined(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_joined") && sync->parent != NULL && sync->parent->ready;
}

size_t kraken_sync_children(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_children") ? sync->n_children : 0;
}

kraken_sync_view kraken_sync_node_view(const kraken_sync *sync, const kraken_uuid *id)
{
    if (sync == NULL || id == NULL)
        return KRAKEN_SYNC_VIEW_NONE;
    const kraken_sync *s = sync; /* routes as of the last flush (a Cfg change: damping_ms) */
    const snode *n = nt_find(&s->nodes, id);
    if (n == NULL || !n->in_subtree)
        return KRAKEN_SYNC_VIEW_NONE;
    if (uuid_eq(id, &s->self))
        return KRAKEN_SYNC_VIEW_SELF;
    return n->fresh ? KRAKEN_SYNC_VIEW_LIVE : KRAKEN_SYNC_VIEW_STALE;
}

void kraken_sync_get_stats(const kraken_sync *sync, kraken_sync_stats *out)
{
    if (out == NULL)
        return;
    if (sync == NULL || kraken__owner_check(&sync->owner, "sync_get_stats", "sync") < 0) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = sync->stats;
}

void kraken__sync_set_faults(kraken_sync *sync, const kraken_sync_faults *faults)
{
    if (sync == NULL)
        return;
    if (faults != NULL)
        sync->faults = *faults;
    kraken__sync_net_set_faults(sync->net, faults != NULL ? &sync->faults : NULL);
}

bool kraken__sync_last_datagram(const kraken_sync *sync, const uint8_t **data, size_t *len,
                                kraken_sync_addr *to)
{
    return sync != NULL && kraken__sync_net_last_sent(sync->net, data, len, to);
}

static void age_snapshot(peer *p, uint64_t ms)
{
    if (p != NULL)
        p->last_snapshot_at = p->last_snapshot_at > ms ? p->last_snapshot_at - ms : 0;
}

void kraken__sync_age_snapshots(kraken_sync *sync, uint64_t ms)
{
    if (sync == NULL)
        return;
    for (size_t i = 0; i < sync->n_children; i++)
        age_snapshot(sync->children[i], ms);
    age_snapshot(sync->parent, ms);
}

bool kraken__sync_flush_pending(const kraken_sync *sync)
{
    return sync != NULL &&
           (sync->n_dirty > 0 || event_pending(sync->flush_ev, EV_TIMEOUT, NULL));
}

size_t kraken__sync_buffered(const kraken_sync *sync)
{
    return sync != NULL ? kraken__sync_net_buffered(sync->net) : 0;
}

size_t kraken__sync_pending_joins(const kraken_sync *sync, size_t *limit)
{
    if (limit != NULL)
        *limit = sync != NULL ? sync->max_pending : 0;
    return sync != NULL ? sync->n_pending : 0;
}
