/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync outgoing path: the store listener queues changed nodes, the damped flush turns them
 * into deltas per link (datagrams, or TCP frames for bulk), snapshots, and the sealing
 * (sequence number, MAC) of every message sent.
 */
#include <event2/event.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

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
void on_store_change(const kraken_state_change *ch, void *ud)
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

void flush_cb(evutil_socket_t fd, short what, void *arg)
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
