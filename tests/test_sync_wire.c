/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Guard tests for the sync envelope checks (PROTOCOL.md 4): the receiver drops every datagram
 * that is not newer than the last one it accepted on that channel (an OLDER one too, not only
 * the latest again), and the MAC covers the body (a changed body with the original MAC is
 * dropped as forged) and is compared in full.
 *
 * A root (127.0.0.1) and one child (127.0.0.2) join; then the child's datagrams are all dropped
 * by its fault shim, which still records the last one it was given, and those already on their
 * way are drained. The test captures the child's datagrams and is the only one to deliver
 * them, in the order it chooses, so every verdict is deterministic: nothing races with the
 * child's own traffic. Waits are on the receiver's
 * counters with a deadline; nothing sleeps.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define DEADLINE_MS 5000

static struct event_base *base;
static struct event *tick;
static char dir[64], secret[96];

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run the loop until @p cond holds or @p ms pass; the value of cond at the end. */
#define WAIT_FOR(cond, ms)                                                                      \
    ({                                                                                          \
        uint64_t dl_ = mono_ms() + (ms);                                                        \
        bool ok_;                                                                               \
        while (!(ok_ = (cond)) && mono_ms() < dl_)                                              \
            event_base_loop(base, EVLOOP_ONCE);                                                 \
        ok_;                                                                                    \
    })

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000}; /* the loop never blocks longer than this */
    event_add(tick, &tv);
    snprintf(dir, sizeof dir, "/tmp/kraken-sync-wire-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(secret, sizeof secret, "%s/secret", dir);
    ck_assert_int_eq(kraken_sync_write_secret(secret), 0);
}

static void teardown(void)
{
    event_free(tick);
    event_base_free(base);
    unlink(secret);
    rmdir(dir);
}

typedef struct inst {
    kraken_engine *engine;
    kraken_sync *sync;
    kraken_uuid id;
    char parent[64];
} inst;

static kraken_uuid make_id(unsigned n)
{
    kraken_uuid id;
    memset(&id, 0, sizeof id);
    id.bytes[0] = 0x6b;
    id.bytes[6] = 0x40; /* version 4 */
    id.bytes[8] = 0x80;
    id.bytes[15] = (uint8_t)n;
    return id;
}

static void inst_start(inst *x, unsigned n, const char *ip, const inst *parent)
{
    memset(x, 0, sizeof *x);
    x->id = make_id(n);
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    eo.self_id = x->id;
    ck_assert_int_eq(kraken_engine_new(&x->engine, base, NULL, &eo), 0);
    kraken_sync_options o = KRAKEN_SYNC_OPTIONS_INIT;
    o.listen_addr = ip;
    o.port = 0;
    uint8_t node_key[KRAKEN_SYNC_NODE_KEY_LEN];
    if (parent != NULL) {
        /* A child holds only its node key, derived from the secret (its parent is the root). */
        uint8_t cluster[64];
        FILE *f = fopen(secret, "rb");
        ck_assert_ptr_nonnull(f);
        size_t len = fread(cluster, 1, sizeof cluster, f);
        fclose(f);
        ck_assert_int_eq(kraken_sync_derive_node_key(cluster, len, &x->id, node_key), 0);
        o.key = node_key;
        o.key_len = sizeof node_key;
    } else {
        o.secret_file = secret;
    }
    o.hello_ms = 20;      /* a fresh datagram to capture every 20 ms */
    o.dead_ms = 600000;   /* never declared dead while its datagrams are held back */
    if (parent != NULL) {
        snprintf(x->parent, sizeof x->parent, "127.0.0.1:%u",
                 (unsigned)kraken_sync_port(parent->sync));
        o.parent_addr = x->parent;
    }
    int rc = kraken_sync_new(&x->sync, x->engine, base, &o);
    ck_assert_msg(rc == 0, "kraken_sync_new: %s", kraken_error_last());
}

static void inst_free(inst *x)
{
    kraken_sync_free(x->sync);
    kraken_engine_free(x->engine);
}

static kraken_sync_stats stats_of(const inst *x)
{
    kraken_sync_stats st;
    kraken_sync_get_stats(x->sync, &st);
    return st;
}

static uint64_t drops(const kraken_sync_stats *s)
{
    return s->dropped_bad_mac + s->dropped_replay + s->dropped_malformed +
           s->dropped_unknown_sender + s->dropped_not_authorized;
}

/* Root r with child c joined; from then on every datagram c sends is dropped (and recorded). */
static void joined_then_muted(inst *r, inst *c)
{
    inst_start(r, 1, "127.0.0.1", NULL);
    kraken_node *n;
    kraken_uuid cid = make_id(2);
    ck_assert_int_eq(kraken_node_new(&n, &cid), 0);
    kraken_value p = kraken_value_uuid(&r->id);
    ck_assert_int_eq(kraken_node_set(n, "/ParentId", &p), 0);
    ck_assert_int_eq(kraken_store_create(kraken_engine_store(r->engine), n), 0);
    kraken_node_free(n);
    inst_start(c, 2, "127.0.0.2", r);
    ck_assert_msg(WAIT_FOR(kraken_sync_joined(c->sync), DEADLINE_MS), "child did not join");
    /* some datagrams accepted first, so the receiver has a latest (epoch, seq) */
    uint64_t got = stats_of(r).datagrams_received;
    ck_assert(WAIT_FOR(stats_of(r).datagrams_received >= got + 2, DEADLINE_MS));
    kraken_sync_faults mute;
    memset(&mute, 0, sizeof mute);
    mute.loss = 1.0;
    kraken__sync_set_faults(c->sync, &mute);
    /* Datagrams the child sent before are already queued at r (loopback delivers within
     * sendto). A garbage datagram queued behind them: once r counts it, they are all taken
     * in, and from now on r receives only what the test sends. */
    kraken_sync_stats before = stats_of(r);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    kraken_sync_addr to;
    ck_assert_int_eq(kraken__sync_parse_addr("127.0.0.1", kraken_sync_port(r->sync), &to), 0);
    ck_assert_int_eq(sendto(fd, "\xff\xff\xff", 3, 0, &to.u.sa, to.len), 3);
    close(fd);
    ck_assert(WAIT_FOR(stats_of(r).dropped_malformed == before.dropped_malformed + 1,
                       DEADLINE_MS));
}

typedef struct captured {
    uint8_t data[2048];
    size_t len;
    kraken_sync_addr to;
    uint64_t seq;
} captured;

/* The child's last datagram if its seq is above @p after (a copy in @p out). */
static bool capture_after(const inst *c, uint64_t after, captured *out)
{
    const uint8_t *data;
    size_t len;
    if (!kraken__sync_last_datagram(c->sync, &data, &len, &out->to) || len > sizeof out->data)
        return false;
    kraken_sync_decoded d;
    if (kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, data, len, &d) != 0 || d.seq <= after)
        return false;
    memcpy(out->data, data, len);
    out->len = len;
    out->seq = d.seq;
    return true;
}

static void deliver(int fd, const captured *m)
{
    ck_assert_int_eq(sendto(fd, m->data, m->len, 0, &m->to.u.sa, m->to.len), (ssize_t)m->len);
}

/* Deliver @p m and wait until the receiver has taken it in: accepted (no drop counted). */
static void expect_accepted(int fd, const inst *r, const captured *m)
{
    kraken_sync_stats before = stats_of(r);
    deliver(fd, m);
    ck_assert(WAIT_FOR(stats_of(r).datagrams_received > before.datagrams_received, DEADLINE_MS));
    kraken_sync_stats after = stats_of(r);
    ck_assert_msg(drops(&after) == drops(&before), "seq %llu: dropped (replay %llu -> %llu)",
                  (unsigned long long)m->seq, (unsigned long long)before.dropped_replay,
                  (unsigned long long)after.dropped_replay);
}

/* Deliver @p m: dropped as a replay, nothing else counted. */
static void expect_replay(int fd, const inst *r, const captured *m)
{
    kraken_sync_stats before = stats_of(r);
    deliver(fd, m);
    ck_assert(WAIT_FOR(stats_of(r).datagrams_received > before.datagrams_received, DEADLINE_MS));
    kraken_sync_stats after = stats_of(r);
    ck_assert_msg(after.dropped_replay == before.dropped_replay + 1,
                  "seq %llu accepted again (not dropped as a replay)",
                  (unsigned long long)m->seq);
    ck_assert_uint_eq(drops(&after), drops(&before) + 1);
}

START_TEST(older_datagram_is_a_replay)
{
    inst r, c;
    joined_then_muted(&r, &c);
    /* two datagrams the receiver has never seen: older (seq a) and newer (seq b > a) */
    static captured older, newer;
    ck_assert(WAIT_FOR(capture_after(&c, 0, &older), DEADLINE_MS));
    ck_assert(WAIT_FOR(capture_after(&c, older.seq, &newer), DEADLINE_MS));
    ck_assert_uint_gt(newer.seq, older.seq);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    expect_accepted(fd, &r, &newer); /* the latest accepted is now seq b */
    expect_replay(fd, &r, &older);   /* older than the latest: a replay, never accepted */
    expect_replay(fd, &r, &newer);   /* the latest itself again */
    close(fd);
    ck_assert(kraken_sync_joined(c.sync));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(mac_covers_the_body)
{
    inst r, c;
    joined_then_muted(&r, &c);
    static captured m;
    ck_assert(WAIT_FOR(capture_after(&c, 0, &m), DEADLINE_MS));
    kraken_sync_decoded d;
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, m.data, m.len, &d), 0);
    ck_assert_uint_gt(d.body_len, 0);
    size_t at = (size_t)(d.body - m.data) + d.body_len / 2; /* a byte inside the body */
    ck_assert_uint_lt(at, m.len - KRAKEN_SYNC_KEY_LEN);      /* ... not in the MAC */

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    /* every byte of the MAC counts: the last one changed */
    kraken_sync_stats before = stats_of(&r);
    m.data[m.len - 1] ^= 0x80;
    deliver(fd, &m);
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received > before.datagrams_received, DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).dropped_bad_mac, before.dropped_bad_mac + 1);
    m.data[m.len - 1] ^= 0x80;

    before = stats_of(&r);
    m.data[at] ^= 0x01; /* the body changed, the MAC kept */
    deliver(fd, &m);
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received > before.datagrams_received, DEADLINE_MS));
    kraken_sync_stats after = stats_of(&r);
    ck_assert_msg(after.dropped_bad_mac == before.dropped_bad_mac + 1,
                  "a datagram with a changed body passed the MAC check (replay %llu->%llu, "
                  "malformed %llu->%llu)",
                  (unsigned long long)before.dropped_replay,
                  (unsigned long long)after.dropped_replay,
                  (unsigned long long)before.dropped_malformed,
                  (unsigned long long)after.dropped_malformed);
    ck_assert_uint_eq(drops(&after), drops(&before) + 1);
    /* the same datagram unchanged is accepted: the body byte was the only fault */
    m.data[at] ^= 0x01;
    expect_accepted(fd, &r, &m);
    close(fd);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("sync_wire");
    TCase *tc = tcase_create("envelope");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, older_datagram_is_a_replay);
    tcase_add_test(tc, mac_covers_the_body);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
