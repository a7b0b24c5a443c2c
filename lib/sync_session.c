/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync sessions: joins on the parent side (request, proof, admission, duplicate ids) and on
 * the child side (connect, challenge, result, rejoin with back-off), authenticated receive
 * and dispatch, and the end of sessions: dead peers, lost links (doc/PROTOCOL.md 3; 4,
 * "Dead peers and rejoin").
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync_impl.h"

#define PROTOCOL_VERSION 1
#define HANDSHAKE_MAX_FRAME (64u << 10) /* a joining child's limit for its chosen parent */

/* ---- sessions ------------------------------------------------------------------------- */

void peer_free(peer *p)
{
    if (p == NULL)
        return;
    if (p->dead_ev != NULL)
        event_free(p->dead_ev);
    kraken__sync_conn_close(p->conn, false);
    urlset_clear(&p->owned);
    free(p->seen);
    free(p->tombs);
    blobs_clear(&p->out);
    kraken__sync_wipe(p->key, sizeof p->key);
    free(p);
}

peer *find_child(const kraken_sync *s, const kraken_uuid *id)
{
    size_t lo = 0, hi = s->n_children;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(s->children[mid]->id.bytes, id->bytes, 16);
        if (c == 0)
            return s->children[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static peer *find_session(const kraken_sync *s, const kraken_uuid *id)
{
    if (s->parent != NULL && uuid_eq(&s->parent->id, id))
        return s->parent;
    return find_child(s, id);
}

static int children_insert(kraken_sync *s, peer *p)
{
    if (s->n_children == s->cap_children) {
        size_t cap = s->cap_children ? s->cap_children * 2 : 8;
        peer **v = realloc(s->children, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        s->children = v;
        s->cap_children = cap;
    }
    size_t lo = 0, hi = s->n_children; /* binary search: first child not below p */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(s->children[mid]->id.bytes, p->id.bytes, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t i = lo;
    memmove(s->children + i + 1, s->children + i, (s->n_children - i) * sizeof *s->children);
    s->children[i] = p;
    s->n_children++;
    return KRAKEN_OK;
}

static void children_remove(kraken_sync *s, peer *p)
{
    for (size_t i = 0; i < s->n_children; i++) {
        if (s->children[i] == p) {
            memmove(s->children + i, s->children + i + 1,
                    (s->n_children - i - 1) * sizeof *s->children);
            s->n_children--;
            return;
        }
    }
}

/* ---- sessions: dead peers ------------------------------------------------------------- */

static void schedule_rejoin(kraken_sync *s);

static void dead_cb(evutil_socket_t fd, short what, void *arg);

static int peer_start(kraken_sync *s, peer *p)
{
    p->dead_ev = evtimer_new(s->base, dead_cb, p);
    if (p->dead_ev == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    p->last_heard = now_ms();
    arm_timer(p->dead_ev, s->opts.dead_ms);
    p->hello_due = p->last_heard + uniform_ms(0, s->opts.hello_ms - hello_tick_ms(s));
    if (p->hello_due < s->hello_next)
        schedule_hellos(s, p->hello_due);
    return KRAKEN_OK;
}

void end_child_session(kraken_sync *s, peer *p, const char *why, bool link_lost)
{
    kraken_uuid id = p->id;
    children_remove(s, p);
    peer_free(p);
    char buf[KRAKEN_UUID_STRLEN + 1];
    ensure_routes(s);
    size_t stale = mark_link_stale(s, &id);
    if (stale > 0)
        publish(s, KRAKEN_SYNC_NODES_STALE, &id,
                "%zu nodes under child %s are stale (last known facts kept): %s", stale,
                fmt_id(&id, buf), why);
    if (link_lost) {
        s->stats.peers_lost++;
        discover_run_state(s, &id, "ERROR");
    }
    publish(s, KRAKEN_SYNC_NEIGHBOR_DOWN, &id, "child %s: %s", fmt_id(&id, buf), why);
    slog(s, link_lost ? KRAKEN_LOG_WARNING : KRAKEN_LOG_NOTICE, "session with child %s ended: %s",
         buf, why);
}

static void end_parent_session(kraken_sync *s, const char *why)
{
    peer *p = s->parent;
    if (p == NULL)
        return;
    kraken_uuid id = p->id;
    bool was_ready = p->ready;
    s->parent = NULL;
    s->jstate = JOIN_IDLE;
    peer_free(p);
    invalidate_dsc_hashes(s); /* our own node's owned/excluded split is gone */
    s->stats.peers_lost++;
    char buf[KRAKEN_UUID_STRLEN + 1];
    discover_run_state(s, &s->self, "ERROR");
    publish(s, KRAKEN_SYNC_NEIGHBOR_DOWN, &id, "parent %s: %s%s", fmt_id(&id, buf), why,
            was_ready ? "" : " (before the first full state)");
    slog(s, KRAKEN_LOG_WARNING, "session with parent %s ended: %s%s", buf, why,
         was_ready ? "" : " (before the first full state)");
    schedule_rejoin(s);
}

static void dead_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    peer *p = arg;
    kraken_sync *s = p->sync;
    uint64_t silent = now_ms() - p->last_heard;
    if (silent < s->opts.dead_ms) {
        arm_timer(p->dead_ev, s->opts.dead_ms - silent);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "silent for %llu ms", (unsigned long long)silent);
    if (p->role == ROLE_CHILD)
        end_child_session(s, p, why, true);
    else
        end_parent_session(s, why);
}

/* ---- receiving authenticated messages ------------------------------------------------- */

/*
 * Decode and check an envelope (PROTOCOL.md 4, steps 1-4). @p expect: the session it must
 * belong to (a TCP frame on that session's connection), or NULL to look the sender up. On
 * success *body is decoded; the caller clears it with rx_body_clear().
 */
static peer *open_envelope(kraken_sync *s, const uint8_t *data, size_t len, int ch,
                           peer *expect, const kraken_sync_addr *from, rx_body *body)
{
    const char *what = ch == CH_UDP ? "datagram" : "TCP frame";
    char where[80], who[64], id[KRAKEN_UUID_STRLEN + 1];
    if (from != NULL)
        kraken__sync_addr_format(from, where, sizeof where);
    else
        snprintf(where, sizeof where, "%s", expect != NULL ? peer_name(expect, who) : "?");
    rx_envelope env;
    if (!parse_envelope(&env, data, len)) {
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_NOTICE,
                 "dropped a %s of %zu bytes from %s: not a sync envelope", what, len, where);
        return NULL;
    }
    kraken_uuid sender;
    memcpy(sender.bytes, env.sender, 16);
    peer *p = expect != NULL ? (uuid_eq(&expect->id, &sender) ? expect : NULL)
                             : find_session(s, &sender);
    if (p == NULL) {
        s->stats.dropped_unknown_sender++;
        log_drop(s, DROP_UNKNOWN_SENDER, KRAKEN_LOG_INFO,
                 "dropped a %s from %s: sender %s has no session here (it or we restarted, "
                 "or the link was declared dead)",
                 what, where, fmt_id(&sender, id));
        return NULL;
    }
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_mac(p->key, env.sender, env.epoch, env.seq, channel_byte[ch], env.body,
                     env.body_len, mac);
    if (!kraken__sync_equal(mac, env.mac, sizeof mac)) {
        s->stats.dropped_bad_mac++;
        log_drop(s, DROP_BAD_MAC, KRAKEN_LOG_WARNING,
                 "dropped a %s from %s claiming to be %s: its MAC does not verify under the "
                 "session key (forged, corrupted, or from an earlier session)",
                 what, where, peer_name(p, who));
        return NULL;
    }
    if (env.epoch < p->in_epoch[ch] || (env.epoch == p->in_epoch[ch] && env.seq <= p->in_seq[ch])) {
        s->stats.dropped_replay++;
        log_drop(s, DROP_REPLAY, KRAKEN_LOG_INFO,
                 "dropped a %s from %s: sequence %llu is not above %llu, the last accepted "
                 "(a duplicate, a replay, or overtaken by a newer one)",
                 what, peer_name(p, who), (unsigned long long)env.seq,
                 (unsigned long long)p->in_seq[ch]);
        return NULL;
    }
    if (!parse_body(body, env.body, env.body_len)) {
        rx_body_clear(body);
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                 "dropped a %s from %s: authenticated, but its body does not decode", what,
                 peer_name(p, who));
        return NULL;
    }
    p->in_epoch[ch] = env.epoch;
    p->in_seq[ch] = env.seq;
    p->rx_seq = env.seq;
    p->last_heard = now_ms();
    return p;
}

static void dispatch_body(kraken_sync *s, peer *p, const rx_body *b)
{
    switch (b->kind) {
    case kraken_sync_Body_hello_tag:
        on_hello(s, p, &b->hello);
        break;
    case kraken_sync_Body_update_tag:
        apply_update(s, p, &b->update);
        break;
    case kraken_sync_Body_resend_tag:
        if (p->ready && snapshot_welcome(s, p))
            snapshot_or_log(s, p);
        break;
    default:
        break; /* a join result outside a join: ignore */
    }
}

void on_datagram(const uint8_t *data, size_t len, const kraken_sync_addr *from, void *ud)
{
    kraken_sync *s = ud;
    s->stats.datagrams_received++;
    s->stats.bytes_received += len;
    rx_body body;
    peer *p = open_envelope(s, data, len, CH_UDP, NULL, from, &body);
    if (p == NULL)
        return;
    dispatch_body(s, p, &body);
    rx_body_clear(&body);
}

static void peer_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    peer *p = ud;
    kraken_sync *s = p->sync;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    rx_body body;
    if (open_envelope(s, data, len, CH_TCP, p, NULL, &body) == NULL)
        return;
    dispatch_body(s, p, &body);
    rx_body_clear(&body);
}

static void peer_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    (void)conn;
    peer *p = ud;
    kraken_sync *s = p->sync;
    p->conn = NULL; /* freed by sync_net after this returns */
    if (p->role == ROLE_CHILD)
        end_child_session(s, p, why, true);
    else
        end_parent_session(s, why);
}

static const kraken_sync_conn_ops peer_conn_ops = {NULL, peer_frame, peer_closed};

/* ---- joining: parent side ------------------------------------------------------------- */

void pending_free(kraken_sync *s, pending_join *pj, bool close_conn)
{
    if (pj->prev != NULL)
        pj->prev->next = pj->next;
    else
        s->pending = pj->next;
    if (pj->next != NULL)
        pj->next->prev = pj->prev;
    else
        s->pending_tail = pj->prev;
    s->n_pending--;
    if (close_conn)
        kraken__sync_conn_close(pj->conn, false);
    if (pj->timeout != NULL)
        event_free(pj->timeout);
    kraken__sync_wipe(pj->node_key, sizeof pj->node_key);
    free(pj);
}

static void refuse_join(kraken_sync *s, const kraken_uuid *child, const kraken_sync_addr *from,
                        const char *reason)
{
    char buf[KRAKEN_UUID_STRLEN + 1], addr[80];
    kraken__sync_addr_format(from, addr, sizeof addr);
    s->stats.joins_refused++;
    publish(s, KRAKEN_SYNC_JOIN_REFUSED, child, "join of %s refused: %s", fmt_id(child, buf),
            reason);
    slog(s, KRAKEN_LOG_WARNING, "join of %s from %s refused: %s", buf, addr, reason);
}

static int send_frame_msg(kraken_sync *s, kraken_sync_conn *conn, const pb_msgdesc_t *fields,
                          const void *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_message(fields, msg, &buf, &len);
    if (rc == 0 && (rc = kraken__sync_conn_send(conn, buf, len)) == 0) {
        s->stats.tcp_messages_sent++;
        s->stats.bytes_sent += len;
    }
    free(buf);
    return rc;
}

static void pj_on_request(kraken_sync *s, pending_join *pj, const uint8_t *data, size_t len)
{
    kraken_sync_JoinRequest req = kraken_sync_JoinRequest_init_zero;
    if (!decode_small(kraken_sync_JoinRequest_fields, data, len, &req)) {
        char addr[80];
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_NOTICE,
                 "closed a connection from %s: its first frame (%zu bytes) is not a JoinRequest",
                 kraken__sync_addr_format(kraken__sync_conn_peer(pj->conn), addr, sizeof addr),
                 len);
        pending_free(s, pj, true);
        return;
    }
    memcpy(pj->tr.child_id.bytes, req.child_id, 16);
    if (req.version != PROTOCOL_VERSION || req.udp_port == 0 || req.udp_port > 65535) {
        char reason[96];
        snprintf(reason, sizeof reason, "unsupported protocol version %u or bad UDP port %u",
                 (unsigned)req.version, (unsigned)req.udp_port);
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(pj->conn), reason);
        pending_free(s, pj, true);
        return;
    }
    /* Answer every id the same way, known or not: refusing before the proof would let anyone
     * probe which node ids exist. */
    memcpy(pj->tr.nonce_child, req.nonce, KRAKEN_SYNC_NONCE_LEN);
    pj->tr.epoch_child = req.epoch;
    pj->tr.parent_id = s->self;
    kraken__sync_random(pj->tr.nonce_parent, KRAKEN_SYNC_NONCE_LEN);
    pj->tr.epoch_parent = s->epoch;
    pj->tr.udp_port = (uint16_t)req.udp_port; /* bound by both proofs: the request has no mac */
    pj->udp_port = req.udp_port;
    kraken__sync_node_key(s->secret, s->secret_len, &pj->tr.child_id, pj->node_key);
    kraken_sync_JoinChallenge ch = kraken_sync_JoinChallenge_init_zero;
    memcpy(ch.parent_id, s->self.bytes, 16);
    memcpy(ch.nonce, pj->tr.nonce_parent, KRAKEN_SYNC_NONCE_LEN);
    ch.epoch = s->epoch;
    kraken__sync_proof(pj->node_key, true, &pj->tr, ch.proof);
    if (send_frame_msg(s, pj->conn, kraken_sync_JoinChallenge_fields, &ch) < 0) {
        char id[KRAKEN_UUID_STRLEN + 1];
        s->stats.send_failed++;
        slog(s, KRAKEN_LOG_ERROR, "join of %s: cannot send the challenge: %s",
             fmt_id(&pj->tr.child_id, id), kraken_error_last());
        kraken_error_clear();
        pending_free(s, pj, true);
        return;
    }
    pj->state = PJ_WAIT_PROOF;
}

/* Admission (PROTOCOL.md 3): the child must be in our Cfg with us as its parent. */
static bool admissible(kraken_sync *s, const kraken_uuid *child, char *reason, size_t size)
{
    char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1], c[KRAKEN_UUID_STRLEN + 1];
    snode *n = nt_find(&s->nodes, child);
    if (uuid_eq(child, &s->self)) {
        snprintf(reason, size, "a node cannot be its own child");
        return false;
    }
    if (n == NULL) {
        snprintf(reason, size, "node %s is not in this instance's Cfg", fmt_id(child, a));
        return false;
    }
    if (!uuid_eq(&n->parent, &s->self)) {
        const char *has = uuid_eq(&n->parent, &zero_uuid) ? "unset" : fmt_id(&n->parent, b);
        snprintf(reason, size, "node %s has Cfg parentId %s, not this instance (%s)",
                 fmt_id(child, a), has, fmt_id(&s->self, c));
        return false;
    }
    return true;
}

static int send_join_result(kraken_sync *s, peer *p, bool accepted, const char *reason)
{
    kraken_sync_Body b = kraken_sync_Body_init_zero;
    b.which_kind = kraken_sync_Body_join_result_tag;
    b.kind.join_result.accepted = accepted;
    snprintf(b.kind.join_result.reason, sizeof b.kind.join_result.reason, "%s",
             reason != NULL ? reason : "");
    if (accepted) {
        b.kind.join_result.owned_urls = s->my_owned.v;
        b.kind.join_result.owned_urls_count = (pb_size_t)s->my_owned.n;
    }
    return send_message(s, p, CH_TCP, &b);
}

static peer *peer_new(kraken_sync *s, peer_role role, const kraken_uuid *id,
                      const kraken_sync_transcript *tr, const uint8_t node_key[KRAKEN_SYNC_KEY_LEN])
{
    peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->sync = s;
    p->role = role;
    p->id = *id;
    p->serial = ++s->sessions;
    p->digest_gen = UINT64_MAX; /* no digests yet, whatever change_gen is */
    kraken__sync_session_key(node_key, tr, p->key);
    return p;
}

/*
 * Duplicate node ids (PROTOCOL.md 3, issue 9 defect 6). A child that restarts joins again from
 * the same address, or after its old session went quiet (a crashed host sends no FIN): the new
 * session replaces the old one. A join from another address while the established session is
 * alive (heard within two hello intervals) is a second instance with the same id: letting each
 * replace the other made both flap forever. The established session is kept, and for a
 * hold-down of dead_ms after each conflict the other is refused even through a missed hello.
 */
static bool id_conflict(kraken_sync *s, peer *old, const peer *fresh)
{
    if (kraken__sync_addr_equal(&old->udp, &fresh->udp))
        return false;
    uint64_t now = now_ms();
    bool alive = now - old->last_heard < 2 * (uint64_t)s->opts.hello_ms; /* no hello lost */
    if (!alive && now >= old->hold_until)
        return false;
    old->hold_until = now + s->opts.dead_ms;
    return true;
}

/* Counted every time; the event and the log line once per hold-down, not at every retry. */
static void report_conflict(kraken_sync *s, peer *old, const kraken_sync_addr *other)
{
    s->stats.id_conflicts++;
    uint64_t now = now_ms();
    if (old->conflict_reported_at != 0 && now - old->conflict_reported_at < s->opts.dead_ms)
        return;
    old->conflict_reported_at = now;
    char id[KRAKEN_UUID_STRLEN + 1], a[80], b[80];
    fmt_id(&old->id, id);
    kraken__sync_addr_format(&old->udp, a, sizeof a);
    kraken__sync_addr_format(other, b, sizeof b);
    publish(s, KRAKEN_SYNC_ID_CONFLICT, &old->id,
            "node id %s: a second instance at %s proved the node key while the session from "
            "%s is alive; keeping %s",
            id, b, a, a);
    slog(s, KRAKEN_LOG_ERROR,
         "duplicate node id %s: an instance at %s joined while the session from %s is alive; "
         "keeping the established session and refusing the other for %u ms after each attempt",
         id, b, a, (unsigned)s->opts.dead_ms);
}

static void pj_on_proof(kraken_sync *s, pending_join *pj, const uint8_t *data, size_t len)
{
    kraken_sync_JoinProof proof = kraken_sync_JoinProof_init_zero;
    uint8_t expected[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_proof(pj->node_key, false, &pj->tr, expected);
    if (!decode_small(kraken_sync_JoinProof_fields, data, len, &proof) ||
        !kraken__sync_equal(expected, proof.proof, sizeof expected)) {
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(pj->conn),
                    "the child's proof does not match: its node key is not the one this "
                    "instance derives for it (a key from another cluster secret, or from "
                    "before the node moved here?)");
        pending_free(s, pj, true);
        return;
    }
    kraken_uuid child = pj->tr.child_id;
    peer *p = peer_new(s, ROLE_CHILD, &child, &pj->tr, pj->node_key);
    if (p == NULL) {
        pending_free(s, pj, true);
        return;
    }
    p->in_epoch[CH_UDP] = p->in_epoch[CH_TCP] = 0;
    p->conn = pj->conn;
    kraken__sync_conn_set_ops(p->conn, &peer_conn_ops, p);
    kraken__sync_conn_set_max_frame(p->conn, KRAKEN_SYNC_MAX_FRAME);
    p->udp = *kraken__sync_conn_peer(p->conn);
    kraken__sync_addr_set_port(&p->udp, (uint16_t)pj->udp_port);
    pending_free(s, pj, false);

    ensure_routes(s);
    char reason[256];
    if (!admissible(s, &child, reason, sizeof reason)) {
        (void)send_join_result(s, p, false, reason);
        kraken__sync_conn_close(p->conn, true);
        p->conn = NULL;
        kraken_sync_addr from = p->udp;
        peer_free(p);
        refuse_join(s, &child, &from, reason);
        return;
    }
    peer *old = find_child(s, &child);
    if (old != NULL && id_conflict(s, old, p)) {
        (void)send_join_result(s, p, false, "another instance with this node id has a live "
                                            "session with the parent (duplicate node id?)");
        kraken__sync_conn_close(p->conn, true);
        p->conn = NULL;
        report_conflict(s, old, &p->udp);
        peer_free(p);
        return;
    }
    if (old != NULL) { /* the child restarted: the new session replaces the old one */
        children_remove(s, old);
        peer_free(old);
    }
    refresh_my_owned(s);
    p->ready = true;
    if (children_insert(s, p) < 0 || peer_start(s, p) < 0) {
        char id[KRAKEN_UUID_STRLEN + 1];
        slog(s, KRAKEN_LOG_ERROR, "join of %s accepted but its session cannot start: %s",
             fmt_id(&child, id), kraken_error_last());
        children_remove(s, p);
        peer_free(p);
        kraken_error_clear();
        return;
    }
    s->change_gen++;
    (void)send_join_result(s, p, true, NULL);
    s->stats.joins_accepted++;
    char buf[KRAKEN_UUID_STRLEN + 1], abuf[80];
    /* Completes INITtoSYNC for the child; goes down with the snapshot. */
    discover_run_state(s, &child, "SYNC");
    p = find_child(s, &child); /* the discovery ran store listeners only; still there */
    if (p == NULL)
        return;
    snapshot_or_log(s, p);
    publish(s, KRAKEN_SYNC_JOIN_ACCEPTED, &child, "child %s joined from %s", fmt_id(&child, buf),
            kraken__sync_addr_format(&p->udp, abuf, sizeof abuf));
    publish(s, KRAKEN_SYNC_NEIGHBOR_UP, &child, "child %s is up", buf);
}

static void pj_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    pending_join *pj = ud;
    kraken_sync *s = pj->sync;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    if (pj->state == PJ_WAIT_REQUEST)
        pj_on_request(s, pj, data, len);
    else
        pj_on_proof(s, pj, data, len);
}

/*
 * A half-open join ended before the proof. Say what was observed: a child that closes after
 * our challenge may have found our proof wrong (it says so in its own log), or have given up
 * waiting (a slow, resumed or overloaded parent), or have crashed; we cannot tell which, so no
 * guess about the secret here (issue 9, defect 7).
 */
static void pj_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    pending_join *pj = ud;
    kraken_sync *s = pj->sync;
    char addr[80], id[KRAKEN_UUID_STRLEN + 1];
    kraken__sync_addr_format(kraken__sync_conn_peer(conn), addr, sizeof addr);
    if (pj->state == PJ_WAIT_PROOF) {
        char reason[300];
        snprintf(reason, sizeof reason,
                 "the child ended the handshake after our challenge, without a proof (%s)", why);
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(conn), reason);
    } else {
        slog(s, KRAKEN_LOG_DEBUG, "connection from %s closed before a JoinRequest (%s)", addr,
             why);
    }
    (void)id;
    pending_free(s, pj, false);
}

static void pj_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pending_join *pj = arg;
    kraken_sync *s = pj->sync;
    char addr[80], id[KRAKEN_UUID_STRLEN + 1];
    kraken__sync_addr_format(kraken__sync_conn_peer(pj->conn), addr, sizeof addr);
    if (pj->state == PJ_WAIT_PROOF)
        slog(s, KRAKEN_LOG_NOTICE,
             "join of %s from %s dropped: no proof within %u ms of our challenge",
             fmt_id(&pj->tr.child_id, id), addr, (unsigned)s->opts.dead_ms);
    else
        slog(s, KRAKEN_LOG_INFO, "connection from %s dropped: no JoinRequest within %u ms", addr,
             (unsigned)s->opts.dead_ms);
    pending_free(s, pj, true);
}

static const kraken_sync_conn_ops pending_conn_ops = {NULL, pj_frame, pj_closed};

void on_accept_failed(int err, uint32_t pause_ms, bool first, void *ud)
{
    kraken_sync *s = ud;
    s->stats.accept_errors++;
    if (first)
        kraken__engine_log(s->engine, KRAKEN_LOG_ERROR, "sync",
                           "cannot accept connections: %s (%zu half-open joins, %zu children); "
                           "pausing accepts for %u ms, doubling up to 2 s while it lasts",
                           strerror(err), s->n_pending, s->n_children, (unsigned)pause_ms);
}

void on_accepted(kraken_sync_conn *conn, void *ud)
{
    kraken_sync *s = ud;
    /* Full: the oldest half-open join gives way. Refusing the new one instead would let a few
     * idle connections lock every child out for dead_ms; a real handshake takes one round
     * trip, so a flood must now outpace that to keep a child out. */
    if (s->n_pending >= s->max_pending && s->pending_tail != NULL)
        pending_free(s, s->pending_tail, true);
    pending_join *pj = calloc(1, sizeof *pj);
    if (pj == NULL) {
        kraken__sync_conn_close(conn, false);
        return;
    }
    pj->sync = s;
    pj->conn = conn;
    pj->timeout = evtimer_new(s->base, pj_timeout, pj);
    if (pj->timeout == NULL) {
        free(pj);
        kraken__sync_conn_close(conn, false);
        return;
    }
    pj->next = s->pending;
    if (s->pending != NULL)
        s->pending->prev = pj;
    else
        s->pending_tail = pj;
    s->pending = pj;
    s->n_pending++;
    kraken__sync_conn_set_ops(conn, &pending_conn_ops, pj);
    kraken__sync_conn_set_max_frame(conn, KRAKEN_SYNC_PREAUTH_MAX_FRAME);
    arm_timer(pj->timeout, s->opts.dead_ms);
}

/* ---- joining: child side -------------------------------------------------------------- */

static void start_join(kraken_sync *s);

void abort_join(kraken_sync *s)
{
    kraken__sync_conn_close(s->jconn, false);
    s->jconn = NULL;
    peer_free(s->jpeer);
    s->jpeer = NULL;
    s->jstate = JOIN_IDLE;
}

void join_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    if (s->jstate == JOIN_IDLE) {
        start_join(s);
        return;
    }
    if (s->jstate == JOIN_WAIT_FULL) { /* accepted, but the full state never came */
        end_parent_session(s, "no full state after the join");
        return;
    }
    if (s->jstate != JOIN_UP) {
        char addr[80];
        slog(s, KRAKEN_LOG_NOTICE, "join to the parent at %s timed out after %u ms (%s)",
             kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr),
             (unsigned)s->opts.dead_ms,
             s->jstate == JOIN_CONNECTING        ? "connecting"
             : s->jstate == JOIN_WAIT_CHALLENGE ? "no challenge"
                                                 : "no join result");
        abort_join(s);
        schedule_rejoin(s);
    }
}

static void schedule_rejoin(kraken_sync *s)
{
    uint32_t b = s->backoff_ms;
    uint64_t delay = b / 2 + kraken__sync_random_below(b / 2 + 1);
    uint64_t next = (uint64_t)b * 2;
    s->backoff_ms = (uint32_t)(next > s->opts.rejoin_max_ms ? s->opts.rejoin_max_ms : next);
    if (s->backoff_ms == 0)
        s->backoff_ms = 1;
    s->jstate = JOIN_IDLE;
    arm_timer(s->join_ev, delay);
}

static void child_refused(kraken_sync *s, const char *reason)
{
    char buf[KRAKEN_UUID_STRLEN + 1], addr[80];
    s->stats.joins_refused++;
    publish(s, KRAKEN_SYNC_JOIN_REFUSED, &s->self, "join of %s to its parent refused: %s",
            fmt_id(&s->self, buf), reason);
    slog(s, KRAKEN_LOG_WARNING, "join to the parent at %s refused: %s",
         kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr), reason);
    abort_join(s);
    schedule_rejoin(s);
}

/* The key this instance proves as a child: its node key file as given; in insecure mode,
 * derived from the well-known secret like every other key. */
static void own_node_key(const kraken_sync *s, uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    if (s->opts.insecure)
        kraken__sync_node_key(s->secret, s->secret_len, &s->self, out);
    else
        memcpy(out, s->secret, KRAKEN_SYNC_KEY_LEN);
}

static void on_challenge(kraken_sync *s, const uint8_t *data, size_t len)
{
    kraken_sync_JoinChallenge ch = kraken_sync_JoinChallenge_init_zero;
    if (!decode_small(kraken_sync_JoinChallenge_fields, data, len, &ch)) {
        s->stats.dropped_malformed++;
        child_refused(s, "malformed challenge from the parent");
        return;
    }
    memcpy(s->jtr.parent_id.bytes, ch.parent_id, 16);
    memcpy(s->jtr.nonce_parent, ch.nonce, KRAKEN_SYNC_NONCE_LEN);
    s->jtr.epoch_parent = ch.epoch;
    uint8_t key[KRAKEN_SYNC_KEY_LEN], expected[KRAKEN_SYNC_KEY_LEN];
    own_node_key(s, key);
    kraken__sync_proof(key, true, &s->jtr, expected);
    if (!kraken__sync_equal(expected, ch.proof, sizeof expected)) {
        kraken__sync_wipe(key, sizeof key);
        child_refused(s, "the parent's proof does not match: this instance's node key is not "
                         "the one its parent derives (a key from another cluster secret, or "
                         "from before the node moved to this parent?)");
        return;
    }
    kraken_sync_JoinProof proof = kraken_sync_JoinProof_init_zero;
    kraken__sync_proof(key, false, &s->jtr, proof.proof);
    s->jpeer = peer_new(s, ROLE_PARENT, &s->jtr.parent_id, &s->jtr, key);
    kraken__sync_wipe(key, sizeof key);
    if (s->jpeer == NULL || send_frame_msg(s, s->jconn, kraken_sync_JoinProof_fields, &proof) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join: cannot send the proof: %s",
             s->jpeer == NULL ? "out of memory" : kraken_error_last());
        kraken_error_clear();
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    s->jstate = JOIN_WAIT_RESULT;
}

static void on_join_result(kraken_sync *s, const uint8_t *data, size_t len)
{
    rx_body body;
    peer *p = open_envelope(s, data, len, CH_TCP, s->jpeer, NULL, &body);
    if (p == NULL || body.kind != kraken_sync_Body_join_result_tag) {
        if (p != NULL)
            rx_body_clear(&body);
        child_refused(s, "no valid join result from the parent");
        return;
    }
    const kraken_sync_JoinResult *r = &body.result;
    if (!r->accepted) {
        char reason[300];
        snprintf(reason, sizeof reason, "%s", r->reason);
        rx_body_clear(&body);
        child_refused(s, reason);
        return;
    }
    urlset owned = {0};
    owned.v = calloc(r->owned_urls_count + 1, sizeof *owned.v);
    for (size_t i = 0; owned.v != NULL && i < r->owned_urls_count; i++)
        if (r->owned_urls[i] != NULL && (owned.v[owned.n] = strdup(r->owned_urls[i])) != NULL)
            owned.n++;
    rx_body_clear(&body);
    if (owned.v == NULL) {
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    p->owned = owned;
    p->conn = s->jconn;
    p->udp = s->parent_addr;
    s->jconn = NULL;
    s->jpeer = NULL;
    kraken__sync_conn_set_ops(p->conn, &peer_conn_ops, p);
    kraken__sync_conn_set_max_frame(p->conn, KRAKEN_SYNC_MAX_FRAME);
    if (peer_start(s, p) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join accepted but the session cannot start: %s",
             kraken_error_last());
        kraken_error_clear();
        peer_free(p);
        s->jstate = JOIN_IDLE;
        schedule_rejoin(s);
        return;
    }
    s->parent = p;
    s->jstate = JOIN_WAIT_FULL;
    invalidate_dsc_hashes(s);
    arm_timer(s->join_ev, s->opts.dead_ms); /* the full state must follow */
}

void first_full_from_parent(kraken_sync *s, peer *p)
{
    p->ready = true;
    s->jstate = JOIN_UP;
    event_del(s->join_ev);
    s->backoff_ms = s->opts.rejoin_min_ms;
    if (s->froze_engine) {
        s->froze_engine = false;
        kraken_engine_thaw(s->engine);
    }
    /* Whatever was queued for the parent before we knew our subtree is in the snapshot. */
    snapshot_or_log(s, p);
    char buf[KRAKEN_UUID_STRLEN + 1], abuf[80];
    publish(s, KRAKEN_SYNC_JOIN_ACCEPTED, &p->id, "joined parent %s at %s", fmt_id(&p->id, buf),
            kraken__sync_addr_format(&s->parent_addr, abuf, sizeof abuf));
    publish(s, KRAKEN_SYNC_NEIGHBOR_UP, &p->id, "parent %s is up", buf);
}

static void join_connected(kraken_sync_conn *conn, void *ud)
{
    kraken_sync *s = ud;
    kraken_sync_JoinRequest req = kraken_sync_JoinRequest_init_zero;
    req.version = PROTOCOL_VERSION;
    memcpy(req.child_id, s->self.bytes, 16);
    kraken__sync_random(s->jtr.nonce_child, KRAKEN_SYNC_NONCE_LEN);
    memcpy(req.nonce, s->jtr.nonce_child, KRAKEN_SYNC_NONCE_LEN);
    req.epoch = s->epoch;
    req.udp_port = kraken__sync_net_port(s->net);
    s->jtr.child_id = s->self;
    s->jtr.epoch_child = s->epoch;
    s->jtr.udp_port = (uint16_t)req.udp_port;
    if (send_frame_msg(s, conn, kraken_sync_JoinRequest_fields, &req) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join: cannot send the request: %s", kraken_error_last());
        kraken_error_clear();
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    s->jstate = JOIN_WAIT_CHALLENGE;
}

static void join_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    kraken_sync *s = ud;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    if (s->jstate == JOIN_WAIT_CHALLENGE)
        on_challenge(s, data, len);
    else if (s->jstate == JOIN_WAIT_RESULT)
        on_join_result(s, data, len);
}

static void join_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    (void)conn;
    kraken_sync *s = ud;
    char addr[80];
    slog(s, KRAKEN_LOG_NOTICE, "join to the parent at %s failed: %s",
         kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr), why);
    s->jconn = NULL; /* freed by sync_net after this returns */
    abort_join(s);
    schedule_rejoin(s);
}

static const kraken_sync_conn_ops join_conn_ops = {join_connected, join_frame, join_closed};

static void start_join(kraken_sync *s)
{
    s->jstate = JOIN_CONNECTING;
    memset(&s->jtr, 0, sizeof s->jtr);
    if (kraken__sync_conn_connect(&s->jconn, s->net, &s->parent_addr, &join_conn_ops, s) < 0) {
        slog(s, KRAKEN_LOG_WARNING, "join: %s", kraken_error_last());
        kraken_error_clear();
        s->jconn = NULL;
        schedule_rejoin(s);
        return;
    }
    kraken__sync_conn_set_max_frame(s->jconn, HANDSHAKE_MAX_FRAME);
    arm_timer(s->join_ev, s->opts.dead_ms); /* the whole handshake must finish by then */
}
