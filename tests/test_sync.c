/*
 * Sync protocol tests: several engines + syncs in one process on one event_base, each instance
 * on its own 127.0.0.x address. Timers are shortened (hello 40 ms, dead 2 s: fifty hellos, so a
 * loaded machine or valgrind does not kill links by accident); the loop runs until a condition
 * holds or a deadline passes, nothing sleeps. Deadlines are generous upper bounds, never
 * the thing tested.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pb_decode.h>

#include "internal.h"
#include "sync.pb.h"
#include "testutil.h"

#define DEADLINE_MS 15000
#define IFACE_URL "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/"

/* ---- fixture ------------------------------------------------------------------------- */

static struct event_base *base;
static struct event *tick;
static char dir[64], secret[96], wrong_secret[96];

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

static void run_for(uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

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
    snprintf(dir, sizeof dir, "/tmp/kraken-sync-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(secret, sizeof secret, "%s/secret", dir);
    snprintf(wrong_secret, sizeof wrong_secret, "%s/wrong", dir);
    ck_assert_int_eq(kraken_sync_write_secret(secret), 0);
    ck_assert_int_eq(kraken_sync_write_secret(wrong_secret), 0);
}

static void teardown(void)
{
    event_free(tick);
    event_base_free(base);
    unlink(secret);
    unlink(wrong_secret);
    rmdir(dir);
}

typedef struct logbook {
    unsigned n;            /* messages from "sync" */
    unsigned by_level[10];
    char last[512];
} logbook;

static void log_cb(int level, const char *subsystem, const char *message, void *ud)
{
    logbook *b = ud;
    if (strcmp(subsystem, "sync") != 0)
        return;
    b->n++;
    if (level >= 0 && level < 10)
        b->by_level[level]++;
    snprintf(b->last, sizeof b->last, "%s", message);
}

typedef struct inst {
    kraken_engine *engine;
    kraken_sync *sync;
    kraken_uuid id;
    char ip[32];
    char parent[64];
    unsigned events[8]; /* SYNC events by kind */
    char last_refusal[256];
    logbook log;
    uint8_t key[KRAKEN_SYNC_SECRET_MAX]; /* its key: the secret on a root, else its node key */
    size_t key_len;
} inst;

static kraken_uuid make_id(unsigned n)
{
    kraken_uuid id;
    memset(&id, 0, sizeof id);
    id.bytes[0] = 0x5a;
    id.bytes[6] = 0x40; /* version 4 */
    id.bytes[8] = 0x80;
    id.bytes[14] = (uint8_t)(n >> 8);
    id.bytes[15] = (uint8_t)n;
    return id;
}

static void on_sync_event(const kraken_event *ev, void *ud)
{
    inst *x = ud;
    if (ev->type == KRAKEN_EVENT_SYNC && ev->kind >= 0 && ev->kind < 8) {
        x->events[ev->kind]++;
        if (ev->kind == KRAKEN_SYNC_JOIN_REFUSED && ev->message != NULL)
            snprintf(x->last_refusal, sizeof x->last_refusal, "%s", ev->message);
    }
}

static void inst_engine(inst *x, unsigned n, const char *ip)
{
    memset(x, 0, sizeof *x);
    x->id = make_id(n);
    snprintf(x->ip, sizeof x->ip, "%s", ip);
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    eo.self_id = x->id;
    ck_assert_int_eq(kraken_engine_new(&x->engine, base, NULL, &eo), 0);
    kraken_subscribe_options so = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION, KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC),
                                   NULL, 0};
    ck_assert_int_eq(kraken_bus_subscribe(kraken_engine_bus(x->engine), &so, on_sync_event, x,
                                          NULL, NULL),
                     0);
    ck_assert_int_eq(kraken_engine_set_log(x->engine, KRAKEN_LOG_DEBUG, log_cb, &x->log, NULL), 0);
}

static kraken_sync_options fast_options(void)
{
    kraken_sync_options o = KRAKEN_SYNC_OPTIONS_INIT;
    o.port = 0;
    o.secret_file = secret;
    o.hello_ms = 40;
    o.dead_ms = 2000;
    o.damping_ms = 2;
    o.rejoin_min_ms = 20;
    o.rejoin_max_ms = 200;
    return o;
}

static void load_key(const char *path, uint8_t *out, size_t *len)
{
    uint8_t *k = NULL;
    ck_assert_int_eq(kraken__sync_secret_load(path, &k, len), 0);
    memcpy(out, k, *len);
    kraken__sync_secret_free(k, *len);
}

/*
 * Start x's sync; @p parent NULL for a root. A root's key is o.secret_file; a child gets its
 * node key (PROTOCOL.md 2) derived from its parent's key, or, when o.secret_file is another
 * file (another cluster's secret), from that file as if its parent were that cluster's root.
 */
static void inst_sync_opts(inst *x, const inst *parent, uint16_t port, kraken_sync_options o)
{
    o.listen_addr = x->ip;
    o.port = port;
    if (parent == NULL && o.secret_file != NULL) {
        load_key(o.secret_file, x->key, &x->key_len);
    } else if (parent != NULL && !o.insecure && o.key == NULL && o.secret_file != NULL) {
        uint8_t base_key[KRAKEN_SYNC_SECRET_MAX];
        size_t base_len = parent->key_len;
        if (strcmp(o.secret_file, secret) == 0)
            memcpy(base_key, parent->key, base_len);
        else
            load_key(o.secret_file, base_key, &base_len);
        ck_assert_int_eq(kraken_sync_derive_node_key(base_key, base_len, &x->id, x->key), 0);
        x->key_len = KRAKEN_SYNC_NODE_KEY_LEN;
        o.secret_file = NULL;
        o.key = x->key;
        o.key_len = x->key_len;
    }
    if (parent != NULL) {
        bool v6 = strchr(parent->ip, ':') != NULL;
        snprintf(x->parent, sizeof x->parent, "%s%s%s:%u", v6 ? "[" : "", parent->ip,
                 v6 ? "]" : "", (unsigned)kraken_sync_port(parent->sync));
        o.parent_addr = x->parent;
    }
    int rc = kraken_sync_new(&x->sync, x->engine, base, &o);
    ck_assert_msg(rc == 0, "kraken_sync_new: %s", kraken_error_last());
}

static void inst_sync(inst *x, const inst *parent)
{
    inst_sync_opts(x, parent, 0, fast_options());
}

static void inst_free(inst *x)
{
    kraken_sync_free(x->sync);
    x->sync = NULL;
    kraken_engine_free(x->engine);
    x->engine = NULL;
}

static kraken_store *store_of(inst *x) { return kraken_engine_store(x->engine); }

/* Cfg node @p id with parent @p parent in x's store (created or updated). */
static void put_cfg(inst *x, const kraken_uuid *id, const kraken_uuid *parent, const char *name)
{
    kraken_store *st = store_of(x);
    kraken_node *n;
    if (kraken_store_read(st, KRAKEN_CFG, id, &n) != 0) {
        kraken_error_clear();
        ck_assert_int_eq(kraken_node_new(&n, id), 0);
    }
    kraken_value p = kraken_value_uuid(parent);
    ck_assert_int_eq(kraken_node_set(n, "/ParentId", &p), 0);
    if (name != NULL)
        ck_assert_int_eq(kraken_node_set_text(n, "/Nodename", name), 0);
    int rc = kraken_store_contains(st, id) ? kraken_store_update(st, KRAKEN_CFG, n)
                                           : kraken_store_create(st, n);
    ck_assert_msg(rc == 0, "put_cfg: %s", kraken_error_last());
    kraken_node_free(n);
}

static bool has_text(inst *x, kraken_state_kind kind, const kraken_uuid *id, const char *url,
                     const char *want)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    if (kraken_store_get_value(store_of(x), kind, id, url, &v) != 0) {
        kraken_error_clear();
        return false;
    }
    char *text = NULL;
    bool ok = kraken_value_format(&v, &text) == 0 && strcmp(text, want) == 0;
    free(text);
    kraken_value_clear(&v);
    return ok;
}

static void set_dsc(inst *x, const kraken_uuid *id, const char *url, const char *text)
{
    int rc = kraken_store_set_text(store_of(x), KRAKEN_DSC, id, url, text);
    ck_assert_msg(rc == 0, "set_dsc %s: %s", url, kraken_error_last());
}

static kraken_sync_stats stats_of(const inst *x)
{
    kraken_sync_stats st;
    kraken_sync_get_stats(x->sync, &st);
    return st;
}

/* Root on 127.0.0.1 with child c (127.0.0.2) in its Cfg, both synced and joined. */
static void root_and_child(inst *r, inst *c)
{
    inst_engine(r, 1, "127.0.0.1");
    inst_engine(c, 2, "127.0.0.2");
    put_cfg(r, &c->id, &r->id, "child");
    inst_sync(r, NULL);
    inst_sync(c, r);
    ck_assert_msg(WAIT_FOR(kraken_sync_joined(c->sync), DEADLINE_MS), "child did not join");
}

/* ---- units: addresses, crypto, transport --------------------------------------------- */

START_TEST(parse_addresses)
{
    kraken_sync_addr a;
    char buf[80];
    ck_assert_int_eq(kraken__sync_parse_addr("10.1.2.3", 31415, &a), 0);
    ck_assert_str_eq(kraken__sync_addr_format(&a, buf, sizeof buf), "10.1.2.3:31415");
    ck_assert_int_eq(kraken__sync_parse_addr("10.1.2.3:80", 31415, &a), 0);
    ck_assert_str_eq(kraken__sync_addr_format(&a, buf, sizeof buf), "10.1.2.3:80");
    ck_assert_int_eq(kraken__sync_parse_addr("[::1]:99", 31415, &a), 0);
    ck_assert_str_eq(kraken__sync_addr_format(&a, buf, sizeof buf), "[::1]:99");
    ck_assert_int_eq(kraken__sync_parse_addr("fe80::1:2", 7, &a), 0);
    ck_assert_str_eq(kraken__sync_addr_format(&a, buf, sizeof buf), "[fe80::1:2]:7");
    ck_assert_int_eq(kraken__sync_parse_addr(NULL, 5, &a), 0);
    ck_assert_str_eq(kraken__sync_addr_format(&a, buf, sizeof buf), "0.0.0.0:5");

    static const char *bad[] = {"1.2.3.4:", "1.2.3.4:http", "1.2.3.4:65536", "[::1",
                                "[::1]x", "[1.2.3.4]:5", ":80", "[]:5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kraken_sync_addr before;
        memset(&before, 0x5c, sizeof before);
        a = before;
        ck_assert_msg(kraken__sync_parse_addr(bad[i], 1, &a) == KRAKEN_EINVAL, "%s accepted",
                      bad[i]);
        ck_assert_msg(strstr(kraken_error_last(), "address") != NULL, "%s: message '%s'", bad[i],
                      kraken_error_last());
        ck_assert_int_eq(memcmp(&a, &before, sizeof a), 0); /* unchanged */
    }
}
END_TEST

START_TEST(secret_files)
{
    struct stat st;
    ck_assert_int_eq(stat(secret, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 32);
    /* never replaces an existing secret */
    ck_assert_int_eq(kraken_sync_write_secret(secret), KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_sync_write_secret(NULL), KRAKEN_EINVAL);
    uint8_t *s = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__sync_secret_load(secret, &s, &len), 0);
    ck_assert_uint_eq(len, 32);
    kraken__sync_secret_free(s, len);

    char path[128];
    snprintf(path, sizeof path, "%s/short", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "0123456789", 10), 10);
    close(fd);
    s = NULL;
    ck_assert_int_eq(kraken__sync_secret_load(path, &s, &len), KRAKEN_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "short"));
    fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_eq(write(fd, "0123456789abcdefXYZ", 19), 19);
    close(fd);
    chmod(path, 0644);
    ck_assert_int_eq(kraken__sync_secret_load(path, &s, &len), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "chmod 600"));
    chmod(path, 0640);
    ck_assert_int_eq(kraken__sync_secret_load(path, &s, &len), 0);
    kraken__sync_secret_free(s, len);
    unlink(path);
    ck_assert_int_eq(kraken__sync_secret_load(path, &s, &len), KRAKEN_EIO);
}
END_TEST

START_TEST(keys_and_macs)
{
    const uint8_t a[] = "0123456789abcdef0123456789abcdef";
    const uint8_t b[] = "0123456789abcdef0123456789abcdeF";
    kraken_uuid c1 = make_id(1), c2 = make_id(2);
    uint8_t k1[32], k1b[32], k2[32], kb[32];
    kraken__sync_node_key(a, 32, &c1, k1);
    kraken__sync_node_key(a, 32, &c1, k1b);
    kraken__sync_node_key(a, 32, &c2, k2);
    kraken__sync_node_key(b, 32, &c1, kb);
    ck_assert_int_eq(memcmp(k1, k1b, 32), 0);
    ck_assert_int_ne(memcmp(k1, k2, 32), 0);
    ck_assert_int_ne(memcmp(k1, kb, 32), 0);

    kraken_sync_transcript t;
    memset(&t, 0, sizeof t);
    t.child_id = c1;
    t.parent_id = c2;
    t.epoch_child = 1;
    t.epoch_parent = 2;
    uint8_t pp[32], pc[32], s1[32], s2[32];
    kraken__sync_proof(k1, true, &t, pp);
    kraken__sync_proof(k1, false, &t, pc);
    ck_assert_int_ne(memcmp(pp, pc, 32), 0); /* a parent proof is no child proof */
    kraken__sync_session_key(k1, &t, s1);
    t.nonce_parent[0] ^= 1; /* a fresh nonce gives a fresh key */
    kraken__sync_session_key(k1, &t, s2);
    ck_assert_int_ne(memcmp(s1, s2, 32), 0);

    /* the child's UDP port is bound too: a port changed on the way gives other proofs and keys
     * (the JoinRequest itself carries no mac) */
    uint8_t pp2[32], s3[32];
    t.udp_port = 31415;
    kraken__sync_proof(k1, true, &t, pp2);
    kraken__sync_session_key(k1, &t, s3);
    ck_assert_int_ne(memcmp(pp, pp2, 32), 0);
    ck_assert_int_ne(memcmp(s2, s3, 32), 0);

    uint8_t m1[32], m2[32], m3[32];
    kraken__sync_mac(s1, c1.bytes, 5, 6, 'U', (const uint8_t *)"body", 4, m1);
    kraken__sync_mac(s1, c1.bytes, 5, 6, 'T', (const uint8_t *)"body", 4, m2);
    kraken__sync_mac(s1, c1.bytes, 5, 7, 'U', (const uint8_t *)"body", 4, m3);
    ck_assert(!kraken__sync_equal(m1, m2, 32));
    ck_assert(!kraken__sync_equal(m1, m3, 32));
    ck_assert(kraken__sync_equal(m1, m1, 32));
}
END_TEST

typedef struct sink {
    size_t n;
    uint8_t first[8][64];
    size_t lens[8];
    kraken_sync_conn *conn;
    size_t frames, frame_bytes, closed;
    size_t frame_lens[8];
    uint8_t frame_sum;
    char why[160]; /* the last close reason */
} sink;

static void sink_datagram(const uint8_t *data, size_t len, const kraken_sync_addr *from, void *ud)
{
    (void)from;
    sink *k = ud;
    if (k->n < 8) {
        memcpy(k->first[k->n], data, len < 64 ? len : 64);
        k->lens[k->n] = len;
    }
    k->n++;
}

static void sink_frame(kraken_sync_conn *c, const uint8_t *data, size_t len, void *ud)
{
    (void)c;
    sink *k = ud;
    if (k->frames < 8)
        k->frame_lens[k->frames] = len;
    k->frames++;
    k->frame_bytes = len;
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum ^= data[i];
    k->frame_sum = sum;
}

static void sink_closed(kraken_sync_conn *c, const char *why, void *ud)
{
    (void)c;
    sink *k = ud;
    k->closed++;
    k->conn = NULL;
    snprintf(k->why, sizeof k->why, "%s", why);
}

static const kraken_sync_conn_ops sink_conn_ops = {NULL, sink_frame, sink_closed};

static void sink_accepted(kraken_sync_conn *c, void *ud)
{
    sink *k = ud;
    k->conn = c;
    kraken__sync_conn_set_ops(c, &sink_conn_ops, k);
}

START_TEST(transport_frames_and_faults)
{
    kraken_sync_addr a1, a2;
    ck_assert_int_eq(kraken__sync_parse_addr("127.0.0.1:0", 0, &a1), 0);
    ck_assert_int_eq(kraken__sync_parse_addr("127.0.0.2:0", 0, &a2), 0);
    sink k1 = {0}, k2 = {0};
    const kraken_sync_net_ops ops = {sink_datagram, sink_accepted, NULL};
    kraken_sync_net *n1, *n2;
    ck_assert_int_eq(kraken__sync_net_new(&n1, base, &a1, &ops, &k1), 0);
    ck_assert_int_eq(kraken__sync_net_new(&n2, base, &a2, &ops, &k2), 0);
    kraken__sync_addr_set_port(&a2, kraken__sync_net_port(n2));
    ck_assert_uint_ne(kraken__sync_net_port(n2), 0);

    /* the same port again: refused with EIO */
    kraken_sync_net *n3 = NULL;
    ck_assert_int_eq(kraken__sync_net_new(&n3, base, &a2, &ops, &k2), KRAKEN_EIO);
    ck_assert_ptr_null(n3);

    /* one big frame (5 MiB) arrives whole; a frame above 16 MiB is refused */
    kraken_sync_conn *out;
    ck_assert_int_eq(kraken__sync_conn_connect(&out, n1, &a2, &sink_conn_ops, &k1), 0);
    size_t big = 5u << 20;
    uint8_t *data = malloc(big);
    uint8_t sum = 0;
    for (size_t i = 0; i < big; i++)
        sum ^= (data[i] = (uint8_t)(i * 7));
    ck_assert_int_eq(kraken__sync_conn_send(out, data, big), 0);
    ck_assert_int_eq(kraken__sync_conn_send(out, data, KRAKEN_SYNC_MAX_FRAME + 1), KRAKEN_ELIMIT);
    free(data);
    ck_assert(WAIT_FOR(k2.frames == 1, DEADLINE_MS));
    ck_assert_uint_eq(k2.frame_bytes, big);
    ck_assert_uint_eq(k2.frame_sum, sum);
    /* the accepting side's connection came from the connector's own address */
    char buf[80];
    kraken__sync_addr_format(kraken__sync_conn_peer(k2.conn), buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "127.0.0.1:", 10) == 0, "peer %s", buf);
    /* closing one end is seen by the other */
    kraken__sync_conn_close(out, true);
    ck_assert(WAIT_FOR(k2.closed == 1, DEADLINE_MS));

    /* a header announcing more than 16 MiB closes the connection */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, &a2.u.sa, a2.len), 0);
    ck_assert(WAIT_FOR(k2.conn != NULL, DEADLINE_MS));
    uint8_t head[4] = {0x01, 0x00, 0x00, 0x01};
    ck_assert_int_eq(write(fd, head, 4), 4);
    ck_assert(WAIT_FOR(k2.closed == 2, DEADLINE_MS));
    close(fd);

    /* faults: duplicate everything */
    kraken_sync_faults f = {0, 1.0, 0, 0, 7};
    kraken__sync_net_set_faults(n1, &f);
    ck_assert_int_eq(kraken__sync_net_send(n1, &a2, (const uint8_t *)"a", 1), 0);
    ck_assert(WAIT_FOR(k2.n == 2, DEADLINE_MS));
    /* reorder everything: b is held back and goes after c */
    f = (kraken_sync_faults){0, 0, 1.0, 0, 7};
    kraken__sync_net_set_faults(n1, &f);
    kraken__sync_net_send(n1, &a2, (const uint8_t *)"b", 1);
    kraken__sync_net_send(n1, &a2, (const uint8_t *)"c", 1);
    ck_assert(WAIT_FOR(k2.n == 4, DEADLINE_MS));
    ck_assert_int_eq(k2.first[2][0], 'c');
    ck_assert_int_eq(k2.first[3][0], 'b');
    /* lose everything: nothing arrives, but the shim remembers what was sent */
    f = (kraken_sync_faults){1.0, 0, 0, 0, 7};
    kraken__sync_net_set_faults(n1, &f);
    kraken__sync_net_send(n1, &a2, (const uint8_t *)"d", 1);
    /* delay: arrives, but later */
    f = (kraken_sync_faults){0, 0, 0, 30, 7};
    kraken__sync_net_set_faults(n1, &f);
    uint64_t t0 = mono_ms();
    kraken__sync_net_send(n1, &a2, (const uint8_t *)"e", 1);
    ck_assert(WAIT_FOR(k2.n == 5, DEADLINE_MS));
    ck_assert_uint_ge(mono_ms() - t0, 25);
    ck_assert_int_eq(k2.first[4][0], 'e');
    const uint8_t *last;
    size_t last_len;
    ck_assert(kraken__sync_net_last_sent(n1, &last, &last_len, NULL));
    ck_assert_uint_eq(last_len, 1);
    ck_assert_int_eq(last[0], 'e');

    kraken__sync_net_free(n1);
    kraken__sync_net_free(n2);
}
END_TEST

/* Two nets on 127.0.0.1 and 127.0.0.2 with an accepted connection n1 -> n2 (*out, k2->conn). */
static void net_pair(kraken_sync_net **n1, kraken_sync_net **n2, sink *k1, sink *k2,
                     kraken_sync_addr *a2, kraken_sync_conn **out)
{
    static const kraken_sync_net_ops ops = {sink_datagram, sink_accepted, NULL};
    kraken_sync_addr a1;
    ck_assert_int_eq(kraken__sync_parse_addr("127.0.0.1:0", 0, &a1), 0);
    ck_assert_int_eq(kraken__sync_parse_addr("127.0.0.2:0", 0, a2), 0);
    ck_assert_int_eq(kraken__sync_net_new(n1, base, &a1, &ops, k1), 0);
    ck_assert_int_eq(kraken__sync_net_new(n2, base, a2, &ops, k2), 0);
    kraken__sync_addr_set_port(a2, kraken__sync_net_port(*n2));
    ck_assert_int_eq(kraken__sync_conn_connect(out, *n1, a2, &sink_conn_ops, k1), 0);
    ck_assert(WAIT_FOR(k2->conn != NULL, DEADLINE_MS));
}

/* The TCP side of the fault shim: a delayed stream (datagrams overtake it, its own frames keep
 * their order) and a reset; plus datagram jitter, which reorders datagrams. */
START_TEST(transport_tcp_faults)
{
    kraken_sync_net *n1, *n2;
    sink k1 = {0}, k2 = {0};
    kraken_sync_addr a2;
    kraken_sync_conn *out;
    net_pair(&n1, &n2, &k1, &k2, &a2, &out);

    kraken_sync_faults f = {0};
    f.tcp_delay_ms = 50;
    f.seed = 9;
    kraken__sync_net_set_faults(n1, &f);
    ck_assert_int_eq(kraken__sync_conn_send(out, (const uint8_t *)"a", 1), 0);
    ck_assert_int_eq(kraken__sync_conn_send(out, (const uint8_t *)"bb", 2), 0);
    ck_assert_uint_eq(kraken__sync_conn_queued(out), 4 + 1 + 4 + 2);
    ck_assert_int_eq(kraken__sync_net_send(n1, &a2, (const uint8_t *)"u", 1), 0);
    /* the datagram sent after the frames arrives first */
    ck_assert(WAIT_FOR(k2.n == 1, DEADLINE_MS));
    ck_assert_uint_eq(k2.frames, 0);
    /* frames queued after the shim is lifted still wait behind the delayed ones */
    kraken__sync_net_set_faults(n1, NULL);
    ck_assert_int_eq(kraken__sync_conn_send(out, (const uint8_t *)"ccc", 3), 0);
    ck_assert(WAIT_FOR(k2.frames == 3, DEADLINE_MS));
    ck_assert_uint_eq(k2.frame_lens[0], 1);
    ck_assert_uint_eq(k2.frame_lens[1], 2);
    ck_assert_uint_eq(k2.frame_lens[2], 3);

    /* reset: the sender's conn fails with the shim's reason, the receiver sees an RST */
    f = (kraken_sync_faults){0};
    f.tcp_reset = 1.0;
    f.seed = 9;
    kraken__sync_net_set_faults(n1, &f);
    ck_assert_int_eq(kraken__sync_conn_send(out, (const uint8_t *)"d", 1), 0);
    ck_assert(WAIT_FOR(k1.closed == 1 && k2.closed == 1, DEADLINE_MS));
    ck_assert_str_eq(k1.why, "connection reset (fault injection)");
    ck_assert_str_eq(k2.why, "connection error: Connection reset by peer");
    ck_assert_uint_eq(k2.frames, 3);

    /* jitter: 8 datagrams sent in order arrive, not all in order */
    f = (kraken_sync_faults){0};
    f.jitter_ms = 40;
    f.seed = 11;
    kraken__sync_net_set_faults(n1, &f);
    k2.n = 0;
    for (char ch = '0'; ch < '8'; ch++)
        ck_assert_int_eq(kraken__sync_net_send(n1, &a2, (const uint8_t *)&ch, 1), 0);
    ck_assert(WAIT_FOR(k2.n == 8, DEADLINE_MS));
    bool in_order = true;
    for (int i = 0; i < 8; i++)
        in_order = in_order && k2.first[i][0] == '0' + i;
    ck_assert_msg(!in_order, "jitter of 40 ms reordered nothing");

    kraken__sync_net_free(n1);
    kraken__sync_net_free(n2);
}
END_TEST

/* A send on a connection the peer has shut must not kill the process with SIGPIPE, and the
 * library must not have changed the signal's disposition to get there. */
START_TEST(no_sigpipe_on_dead_connection)
{
    struct sigaction before;
    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &before), 0);
    ck_assert_ptr_eq(before.sa_handler, SIG_DFL);
    kraken_sync_net *n1, *n2;
    sink k1 = {0}, k2 = {0};
    kraken_sync_addr a2;
    kraken_sync_conn *out;
    net_pair(&n1, &n2, &k1, &k2, &a2, &out);
    /* A write after our own shutdown(SHUT_WR) fails with EPIPE exactly as one after the peer's
     * reset does, and deterministically: write() or writev() here raise SIGPIPE. */
    ck_assert_int_eq(shutdown(kraken__sync_conn_fd(out), SHUT_WR), 0);
    ck_assert_int_eq(kraken__sync_conn_send(out, (const uint8_t *)"x", 1), 0);
    ck_assert(WAIT_FOR(k1.closed == 1, DEADLINE_MS));
    ck_assert_str_eq(k1.why, "connection error: send: Broken pipe");
    struct sigaction after;
    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &after), 0);
    ck_assert_ptr_eq(after.sa_handler, SIG_DFL);
    kraken__sync_net_free(n1);
    kraken__sync_net_free(n2);
}
END_TEST

/* Node key files (PROTOCOL.md 2): derived along the Cfg chain from the root down, written
 * 0600, replaced atomically; clear errors for a broken chain or the root itself. */
START_TEST(node_key_files)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid m = make_id(2), l = make_id(3), orphan = make_id(4), nowhere = make_id(5);
    put_cfg(&r, &m, &r.id, "middle");
    put_cfg(&r, &l, &m, "leaf");
    put_cfg(&r, &orphan, &nowhere, "orphan");
    uint8_t sec[KRAKEN_SYNC_SECRET_MAX], km[32], kl[32], got[64];
    size_t sec_len;
    load_key(secret, sec, &sec_len);
    ck_assert_int_eq(kraken_sync_derive_node_key(sec, sec_len, &m, km), 0);
    ck_assert_int_eq(kraken_sync_derive_node_key(km, sizeof km, &l, kl), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/leaf.key", dir);
    ck_assert_int_eq(kraken_sync_write_node_key(secret, store_of(&r), &l, path), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    int fd = open(path, O_RDONLY);
    ck_assert_int_eq(read(fd, got, sizeof got), 32);
    close(fd);
    ck_assert_int_eq(memcmp(got, kl, 32), 0);
    /* a leaf's key is not its parent's, nor what the secret gives for it directly */
    uint8_t flat[32];
    kraken_sync_derive_node_key(sec, sec_len, &l, flat);
    ck_assert_int_ne(memcmp(kl, flat, 32), 0);
    ck_assert_int_ne(memcmp(kl, km, 32), 0);
    /* the leaf moves under the root: a new key replaces the file */
    put_cfg(&r, &l, &r.id, "leaf");
    ck_assert_int_eq(kraken_sync_write_node_key(secret, store_of(&r), &l, path), 0);
    fd = open(path, O_RDONLY);
    ck_assert_int_eq(read(fd, got, sizeof got), 32);
    close(fd);
    ck_assert_int_eq(memcmp(got, flat, 32), 0);
    unlink(path);

    char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1], want[256];
    ck_assert_int_eq(kraken_sync_write_node_key(secret, store_of(&r), &r.id, path), KRAKEN_EINVAL);
    snprintf(want, sizeof want,
             "node %s has no parentId: it is the root, whose key is the cluster secret itself",
             kraken_uuid_format(&r.id, a));
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(kraken_sync_write_node_key(secret, store_of(&r), &orphan, path),
                     KRAKEN_ENOTFOUND);
    snprintf(want, sizeof want,
             "node %s: its ancestor %s is not in the store (the chain must reach the root)",
             kraken_uuid_format(&orphan, a), kraken_uuid_format(&nowhere, b));
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(kraken_sync_write_node_key(secret, store_of(&r), &nowhere, path),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_eq(access(path, F_OK), -1); /* nothing written on failure */
    ck_assert_int_eq(kraken_sync_derive_node_key(sec, 8, &l, flat), KRAKEN_EINVAL);

    /* a child given the cluster secret of another size, or nothing to prove: refused early */
    kraken_sync_options o = fast_options();
    o.parent_addr = "127.0.0.1:9";
    o.secret_file = NULL;
    o.key = sec;
    o.key_len = 16;
    kraken_sync *s = NULL;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "sync key: 16 bytes, but a child's key is its 32-byte node key "
                     "(kraken_sync_write_node_key on the root), not the cluster secret");
    o.secret_file = NULL;
    o.key = NULL;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    o = fast_options();
    o.key = sec;
    o.key_len = 32;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "sync options: both secret_file and key are set");
    ck_assert_ptr_null(s);
    inst_free(&r);
}
END_TEST

START_TEST(bad_options)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_sync *s = NULL;
    kraken_sync_options o = fast_options();
    ck_assert_int_eq(kraken_sync_new(NULL, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_sync_new(&s, NULL, base, &o), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, NULL, &o), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, NULL), KRAKEN_EINVAL);

    o.secret_file = NULL;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "secret"));
    o = fast_options();
    o.dead_ms = o.hello_ms;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    o = fast_options();
    o.parent_addr = "[::1";
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "parent_addr"));
    o.parent_addr = "127.0.0.1:0";
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    o.parent_addr = "[::1]:4000"; /* an IPv4 socket cannot reach an IPv6 parent */
    o.listen_addr = "127.0.0.1";
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "IPv6"));
    o = fast_options();
    o.listen_addr = "127.0.0.1:x";
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    o = fast_options();
    o.version = 99;
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EINVAL);
    ck_assert_ptr_null(s);
    /* the engine was not touched by the failed calls */
    ck_assert(!kraken_engine_frozen(r.engine));

    /* a taken port: EIO */
    inst_sync(&r, NULL);
    o = fast_options();
    o.listen_addr = "127.0.0.1";
    o.port = kraken_sync_port(r.sync);
    ck_assert_int_eq(kraken_sync_new(&s, r.engine, base, &o), KRAKEN_EIO);
    ck_assert_ptr_null(s);

    /* insecure mode needs no secret; accessors are NULL-safe */
    kraken_sync_free(r.sync);
    o = fast_options();
    o.secret_file = NULL;
    o.insecure = true;
    o.listen_addr = "::1";
    ck_assert_int_eq(kraken_sync_new(&r.sync, r.engine, base, &o), 0);
    ck_assert_uint_ne(kraken_sync_port(r.sync), 0);
    ck_assert(!kraken_sync_joined(r.sync));
    ck_assert_uint_eq(kraken_sync_children(NULL), 0);
    ck_assert_uint_eq(kraken_sync_port(NULL), 0);
    kraken_sync_free(NULL);
    inst_free(&r);
}
END_TEST

/* ---- protocol ------------------------------------------------------------------------ */

START_TEST(join_and_flow)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    inst_sync(&r, NULL);
    inst_sync(&c, &r);
    ck_assert(kraken_engine_frozen(c.engine)); /* until the first full state */
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert(!kraken_engine_frozen(c.engine));
    ck_assert_uint_eq(kraken_sync_children(r.sync), 1);
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 1);
    /* the parent discovered SYNC for the child (INITtoSYNC) and the child got it */
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    /* the child's Cfg is the parent's */
    ck_assert(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "child"));
    ck_assert(WAIT_FOR(r.events[KRAKEN_SYNC_JOIN_ACCEPTED] == 1 &&
                           r.events[KRAKEN_SYNC_NEIGHBOR_UP] == 1 &&
                           c.events[KRAKEN_SYNC_JOIN_ACCEPTED] == 1,
                       DEADLINE_MS));

    /* Cfg change at the root reaches the child */
    put_cfg(&r, &c.id, &r.id, "renamed");
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "renamed"), DEADLINE_MS));

    /* the child's Dsc discovery reaches the root */
    set_dsc(&c, &c.id, "/Arch", "amd64");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "amd64"), DEADLINE_MS));
    /* facts the parent owns are not overwritten by the child's view */
    set_dsc(&c, &c.id, "/RunState", "INIT");
    set_dsc(&c, &c.id, "/Platform", "sim");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Platform", "sim"), DEADLINE_MS));
    ck_assert(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC"));
    /* ... and the hello digests notice the child's diverging copy and repair it */
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    kraken_sync_stats rs = stats_of(&r), cs = stats_of(&c);
    ck_assert_uint_gt(rs.datagrams_received, 0);
    ck_assert_uint_gt(cs.datagrams_received, 0);
    ck_assert_uint_eq(rs.dropped_bad_mac + rs.dropped_replay + rs.dropped_unknown_sender, 0);
    ck_assert_uint_eq(rs.dropped_not_authorized + cs.dropped_not_authorized, 0);
    ck_assert_uint_eq(rs.dropped_malformed + cs.dropped_malformed, 0);
    /* once converged, the digests agree: an idle link sends hellos only, no snapshots */
    run_for(300);
    uint64_t full = stats_of(&r).full_resends + stats_of(&c).full_resends;
    uint64_t tcp = stats_of(&r).tcp_messages_sent + stats_of(&c).tcp_messages_sent;
    run_for(500);
    ck_assert_uint_eq(stats_of(&r).full_resends + stats_of(&c).full_resends, full);
    ck_assert_uint_eq(stats_of(&r).tcp_messages_sent + stats_of(&c).tcp_messages_sent, tcp);

    /* A new node under the child reaches it, a deleted one goes away. Last, because a Dsc
     * delta the child sent for it just before the deletion reached the root is then (rightly)
     * dropped as state for a node outside the child's subtree, which the counts above exclude. */
    kraken_uuid n3 = make_id(3);
    put_cfg(&r, &n3, &c.id, "grandchild");
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &n3, "/Nodename", "grandchild"), DEADLINE_MS));
    ck_assert_int_eq(kraken_store_delete(store_of(&r), &n3), 0);
    ck_assert(WAIT_FOR(!kraken_store_contains(store_of(&c), &n3), DEADLINE_MS));

    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(three_levels)
{
    inst r, m, l;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&m, 2, "127.0.0.2");
    inst_engine(&l, 3, "127.0.0.3");
    put_cfg(&r, &m.id, &r.id, "middle");
    put_cfg(&r, &l.id, &m.id, "leaf");
    inst_sync(&r, NULL);
    inst_sync(&m, &r);
    ck_assert(WAIT_FOR(kraken_sync_joined(m.sync), DEADLINE_MS));
    /* the intermediate got its whole subtree */
    ck_assert(WAIT_FOR(has_text(&m, KRAKEN_CFG, &l.id, "/Nodename", "leaf"), DEADLINE_MS));
    inst_sync(&l, &m);
    ck_assert(WAIT_FOR(kraken_sync_joined(l.sync), DEADLINE_MS));
    ck_assert_uint_eq(kraken_sync_children(m.sync), 1);
    ck_assert_uint_eq(kraken_sync_children(r.sync), 1);
    /* the intermediate discovered SYNC for the leaf; it reaches the root two levels up */
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "SYNC"), DEADLINE_MS));

    /* Cfg down two levels */
    put_cfg(&r, &l.id, &m.id, "leaf-renamed");
    ck_assert(WAIT_FOR(has_text(&l, KRAKEN_CFG, &l.id, "/Nodename", "leaf-renamed"), DEADLINE_MS));
    /* Dsc up two levels */
    set_dsc(&l, &l.id, "/Arch", "arm64");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &l.id, "/Arch", "arm64"), DEADLINE_MS));
    ck_assert(has_text(&m, KRAKEN_DSC, &l.id, "/Arch", "arm64"));
    /* the root holds the leaf's state but never talked to it */
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 1);
    /* all three agree on their digests: no snapshots while idle */
    run_for(300);
    uint64_t full = stats_of(&r).full_resends + stats_of(&m).full_resends +
                    stats_of(&l).full_resends;
    run_for(500);
    ck_assert_uint_eq(stats_of(&r).full_resends + stats_of(&m).full_resends +
                          stats_of(&l).full_resends,
                      full);

    inst_free(&l);
    inst_free(&m);
    inst_free(&r);
}
END_TEST

START_TEST(ipv6_link)
{
    inst r, c;
    inst_engine(&r, 1, "::1");
    inst_engine(&c, 2, "::1");
    put_cfg(&r, &c.id, &r.id, "v6-child");
    inst_sync(&r, NULL);
    inst_sync(&c, &r);
    ck_assert_ptr_nonnull(strstr(c.parent, "[::1]:"));
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    set_dsc(&c, &c.id, "/Arch", "riscv64");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "riscv64"), DEADLINE_MS));
    /* datagrams flow both ways over IPv6 too */
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received > 0 && stats_of(&c).datagrams_received > 0,
                       DEADLINE_MS));
    inst_free(&c);
    inst_free(&r);

    /* a dual-stack child ("::") reaches an IPv4 parent through v4-mapped addresses */
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "::");
    put_cfg(&r, &c.id, &r.id, "mapped");
    inst_sync(&r, NULL);
    inst_sync(&c, &r);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received > 0 && stats_of(&c).datagrams_received > 0,
                       DEADLINE_MS));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(wrong_secret_refused)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    inst_sync(&r, NULL);
    kraken_sync_options o = fast_options();
    o.secret_file = wrong_secret;
    inst_sync_opts(&c, &r, 0, o);
    ck_assert(WAIT_FOR(stats_of(&r).joins_refused >= 1 && stats_of(&c).joins_refused >= 1 &&
                           r.events[KRAKEN_SYNC_JOIN_REFUSED] >= 1 &&
                           c.events[KRAKEN_SYNC_JOIN_REFUSED] >= 1,
                       DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(c.last_refusal, "secret"));
    ck_assert(!kraken_sync_joined(c.sync));
    ck_assert_uint_eq(kraken_sync_children(r.sync), 0);
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 0);
    ck_assert(kraken_engine_frozen(c.engine));
    ck_assert(!has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC"));
    inst_free(&c);

    /* right secret, but not a child of this parent in Cfg: refused after the proof */
    inst_engine(&c, 9, "127.0.0.2");
    inst_sync(&c, &r);
    ck_assert(WAIT_FOR(c.events[KRAKEN_SYNC_JOIN_REFUSED] >= 1, DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(c.last_refusal, "not in this instance's Cfg"));
    ck_assert(!kraken_sync_joined(c.sync));
    /* in Cfg, but under another parent: still refused */
    kraken_uuid nobody = make_id(77);
    c.last_refusal[0] = '\0';
    put_cfg(&r, &c.id, &nobody, "adopted");
    ck_assert(WAIT_FOR(strstr(c.last_refusal, "parentId") != NULL, DEADLINE_MS));
    ck_assert(!kraken_sync_joined(c.sync));
    /* the child keeps trying: once the parent adopts it, it is in */
    put_cfg(&r, &c.id, &r.id, "adopted");
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "adopted"));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(replay_forgery_unknown_sender)
{
    inst r, c;
    root_and_child(&r, &c);
    /* wait for an exchange of hellos, then take the child's last datagram (recorded once a
     * fault shim is set; this one changes nothing) */
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received >= 2, DEADLINE_MS));
    kraken_sync_faults none = {0, 0, 0, 0, 1};
    kraken__sync_set_faults(c.sync, &none);
    const uint8_t *last;
    size_t len;
    kraken_sync_addr to;
    ck_assert(WAIT_FOR(kraken__sync_last_datagram(c.sync, &last, &len, &to), DEADLINE_MS));
    uint8_t copy[2048];
    ck_assert_uint_le(len, sizeof copy);
    memcpy(copy, last, len);
    run_for(20); /* the original is delivered first */

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    kraken_sync_stats before = stats_of(&r);
    /* replayed as it was */
    ck_assert_int_eq(sendto(fd, copy, len, 0, &to.u.sa, to.len), (ssize_t)len);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_replay == before.dropped_replay + 1, DEADLINE_MS));
    /* forged: one bit of the mac flipped (the mac is the last field) */
    copy[len - 1] ^= 1;
    sendto(fd, copy, len, 0, &to.u.sa, to.len);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_bad_mac == before.dropped_bad_mac + 1, DEADLINE_MS));
    copy[len - 1] ^= 1;
    /* another sender id (bytes 2..17 are the sender) */
    copy[5] ^= 0x40;
    sendto(fd, copy, len, 0, &to.u.sa, to.len);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_unknown_sender == before.dropped_unknown_sender + 1,
                       DEADLINE_MS));
    /* garbage */
    sendto(fd, "\xff\xff\xff", 3, 0, &to.u.sa, to.len);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_malformed == before.dropped_malformed + 1,
                       DEADLINE_MS));
    close(fd);
    /* none of it hurt the session */
    run_for(100);
    ck_assert(kraken_sync_joined(c.sync));
    ck_assert_uint_eq(kraken_sync_children(r.sync), 1);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(outside_subtree_dropped)
{
    inst r, c;
    root_and_child(&r, &c);
    kraken_uuid other = make_id(7), rogue = make_id(8);
    put_cfg(&r, &other, &r.id, "not-the-childs");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    run_for(50);
    /* the child claims nodes: one the root gave to someone else, one the root never heard of */
    put_cfg(&c, &other, &c.id, NULL);
    put_cfg(&c, &rogue, &c.id, NULL);
    set_dsc(&c, &other, "/Arch", "evil");
    set_dsc(&c, &rogue, "/Arch", "evil");
    ck_assert(WAIT_FOR(stats_of(&r).dropped_not_authorized >= 2, DEADLINE_MS));
    ck_assert(!has_text(&r, KRAKEN_DSC, &other, "/Arch", "evil"));
    ck_assert(!kraken_store_contains(store_of(&r), &rogue));
    /* the root's next snapshot takes back what the child made up */
    ck_assert(WAIT_FOR(!kraken_store_contains(store_of(&c), &rogue) &&
                           !kraken_store_contains(store_of(&c), &other),
                       DEADLINE_MS));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* An IPv4 extension with @p n interfaces: far more than one datagram. */
static void put_ifaces(inst *x, kraken_state_kind kind, const kraken_uuid *id, int n)
{
    kraken_node *node;
    ck_assert_int_eq(kraken_store_read(store_of(x), kind, id, &node), 0);
    char url[160], mac[32];
    for (int i = 0; i < n; i++) {
        snprintf(url, sizeof url, IFACE_URL "eth%d/Eth/Mtu", i);
        ck_assert_int_eq(kraken_node_set_text(node, url, "9000"), 0);
        snprintf(url, sizeof url, IFACE_URL "eth%d/Eth/Mac", i);
        snprintf(mac, sizeof mac, "02:00:00:00:%02x:%02x", (i >> 8) & 0xff, i & 0xff);
        ck_assert_int_eq(kraken_node_set_text(node, url, mac), 0);
    }
    ck_assert_int_eq(kraken_store_update(store_of(x), kind, node), 0);
    kraken_node_free(node);
}

START_TEST(oversized_node_over_tcp)
{
    inst r, c;
    root_and_child(&r, &c);
    run_for(50);
    uint64_t r_tcp = stats_of(&r).tcp_messages_received;
    /* up: 500 interfaces of Dsc */
    put_ifaces(&c, KRAKEN_DSC, &c.id, 500);
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, IFACE_URL "eth499/Eth/Mac",
                                "02:00:00:00:01:f3"),
                       DEADLINE_MS));
    ck_assert(has_text(&r, KRAKEN_DSC, &c.id, IFACE_URL "eth0/Eth/Mtu", "9000"));
    ck_assert_uint_gt(stats_of(&r).tcp_messages_received, r_tcp);
    /* down: 500 interfaces of Cfg */
    uint64_t c_tcp = stats_of(&c).tcp_messages_received;
    put_ifaces(&r, KRAKEN_CFG, &c.id, 500);
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &c.id, IFACE_URL "eth499/Eth/Mtu", "9000"),
                       DEADLINE_MS));
    ck_assert_uint_gt(stats_of(&c).tcp_messages_received, c_tcp);
    ck_assert_uint_eq(stats_of(&r).dropped_malformed + stats_of(&c).dropped_malformed, 0);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(parent_restart)
{
    inst r, c;
    root_and_child(&r, &c);
    uint16_t port = kraken_sync_port(r.sync);
    kraken_sync_free(r.sync);
    r.sync = NULL;
    /* the child sees its connection close: ERROR, NEIGHBOR_DOWN, then it keeps trying */
    ck_assert(WAIT_FOR(!kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "ERROR") &&
                           c.events[KRAKEN_SYNC_NEIGHBOR_DOWN] >= 1,
                       DEADLINE_MS));
    run_for(100);
    inst_sync_opts(&r, NULL, port, fast_options());
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    ck_assert_uint_eq(kraken_sync_children(r.sync), 1);
    /* state flows again */
    set_dsc(&c, &c.id, "/Arch", "ppc64le");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "ppc64le"), DEADLINE_MS));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(child_restart)
{
    inst r, c;
    root_and_child(&r, &c);
    set_dsc(&c, &c.id, "/Arch", "amd64");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "amd64"), DEADLINE_MS));
    inst_free(&c);
    /* the parent notices the closed connection: ERROR for the child */
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "ERROR") &&
                           kraken_sync_children(r.sync) == 0,
                       DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).peers_lost, 1);
    ck_assert_uint_ge(r.events[KRAKEN_SYNC_NEIGHBOR_DOWN], 1);
    /* a fresh child (empty store) joins again, and its new, empty Dsc replaces the old one */
    inst_engine(&c, 2, "127.0.0.2");
    inst_sync(&c, &r);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 2);
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC"), DEADLINE_MS));
    ck_assert(WAIT_FOR(!has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "amd64"), DEADLINE_MS));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

START_TEST(link_loss_and_heal)
{
    inst r, c;
    root_and_child(&r, &c);
    kraken_sync_faults cut = {1.0, 0, 0, 0, 3};
    kraken__sync_set_faults(r.sync, &cut);
    kraken__sync_set_faults(c.sync, &cut);
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "ERROR") &&
                           has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "ERROR"),
                       DEADLINE_MS));
    ck_assert_uint_ge(stats_of(&r).peers_lost + stats_of(&c).peers_lost, 1);
    ck_assert(WAIT_FOR(r.events[KRAKEN_SYNC_NEIGHBOR_DOWN] >= 1 &&
                           c.events[KRAKEN_SYNC_NEIGHBOR_DOWN] >= 1,
                       DEADLINE_MS));
    kraken__sync_set_faults(r.sync, NULL);
    kraken__sync_set_faults(c.sync, NULL);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync) &&
                           has_text(&r, KRAKEN_DSC, &c.id, "/RunState", "SYNC") &&
                           has_text(&c, KRAKEN_DSC, &c.id, "/RunState", "SYNC"),
                       DEADLINE_MS));
    /* and stays up through more than dead_ms of hellos */
    uint64_t lost = stats_of(&r).peers_lost;
    uint64_t heard = stats_of(&r).datagrams_received;
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received >= heard + 2 * 2000 / 40, 60000));
    ck_assert_uint_eq(stats_of(&r).peers_lost, lost);
    ck_assert(kraken_sync_joined(c.sync));
    inst_free(&c);
    inst_free(&r);
}
END_TEST

#define N_NODES 50

static bool all_converged(inst *r, inst *c, const kraken_uuid *ids)
{
    char want[32];
    for (int i = 0; i < N_NODES; i++) {
        snprintf(want, sizeof want, "node-%d", i);
        if (!has_text(c, KRAKEN_CFG, &ids[i], "/Nodename", want))
            return false;
        snprintf(want, sizeof want, "arch-%d", i);
        if (!has_text(r, KRAKEN_DSC, &ids[i], "/Arch", want))
            return false;
    }
    return true;
}

START_TEST(converges_under_faults)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "node-0");
    kraken_sync_faults f = {0.05, 0.05, 0.05, 0, 42};
    kraken_sync_options o = fast_options();
    o.dead_ms = 2000; /* 5% loss must not look like a dead link */
    inst_sync_opts(&r, NULL, 0, o);
    kraken__sync_set_faults(r.sync, &f);
    inst_sync_opts(&c, &r, 0, o);
    kraken__sync_set_faults(c.sync, &f); /* before the loop runs: the join is from the loop */
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    kraken_uuid ids[N_NODES];
    ids[0] = c.id;
    char name[32];
    for (int i = 1; i < N_NODES; i++) {
        ids[i] = make_id(100 + (unsigned)i);
        snprintf(name, sizeof name, "node-%d", i);
        put_cfg(&r, &ids[i], &c.id, name);
        run_for(1); /* one delta at a time: many datagrams through the faults */
    }
    ck_assert(WAIT_FOR(kraken_store_count(store_of(&c)) == N_NODES + 0u, DEADLINE_MS));
    for (int i = 0; i < N_NODES; i++) {
        snprintf(name, sizeof name, "arch-%d", i);
        set_dsc(&c, &ids[i], "/Arch", name);
        run_for(1);
    }
    ck_assert_msg(WAIT_FOR(all_converged(&r, &c, ids), 15000), "no convergence");
    kraken_sync_stats rs = stats_of(&r), cs = stats_of(&c);
    ck_assert_uint_gt(rs.datagrams_received + cs.datagrams_received, 50);
    ck_assert_uint_eq(rs.dropped_bad_mac + cs.dropped_bad_mac, 0);
    ck_assert_uint_eq(rs.dropped_malformed + cs.dropped_malformed, 0);
    ck_assert_uint_eq(rs.dropped_not_authorized + cs.dropped_not_authorized, 0);
    ck_assert_uint_eq(rs.peers_lost + cs.peers_lost, 0);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* ---- review regressions: a child driven by hand over raw sockets ----------------------- */

/* Protobuf bytes built by hand (tag, varint, length-delimited), for messages the library
 * would never send. */
typedef struct bytes {
    uint8_t v[8192];
    size_t n;
} bytes;

static void put_varint(bytes *b, uint64_t v)
{
    while (v >= 0x80) {
        b->v[b->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->v[b->n++] = (uint8_t)v;
}

static void put_uint(bytes *b, unsigned tag, uint64_t v)
{
    put_varint(b, tag << 3);
    put_varint(b, v);
}

static void put_data(bytes *b, unsigned tag, const void *data, size_t len)
{
    ck_assert_uint_lt(b->n + len + 16, sizeof b->v);
    put_varint(b, tag << 3 | 2);
    put_varint(b, len);
    memcpy(b->v + b->n, data, len);
    b->n += len;
}


static bool peer_gone(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

typedef struct fake {
    kraken_uuid id;
    int tcp, udp;
    kraken_sync_addr parent; /* TCP and UDP */
    uint8_t key[KRAKEN_SYNC_KEY_LEN];
    uint64_t seq[2];
    uint8_t *rx;
    size_t rx_len;
    kraken_sync_transcript tr; /* of its join */
} fake;

#define FAKE_EPOCH 77u
#define FAKE_RX (1u << 20)

static void fake_send_frame(fake *f, const uint8_t *data, size_t len)
{
    uint8_t head[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                       (uint8_t)len};
    ck_assert_int_eq(write(f->tcp, head, 4), 4);
    ck_assert_int_eq(write(f->tcp, data, len), (ssize_t)len);
}

static bool fake_has_frame(fake *f)
{
    ssize_t n;
    while (f->rx_len < FAKE_RX && (n = read(f->tcp, f->rx + f->rx_len, FAKE_RX - f->rx_len)) > 0)
        f->rx_len += (size_t)n;
    uint32_t len;
    return kraken__sync_frame_parse(f->rx, f->rx_len, FAKE_RX - 4, &len) == 1;
}

/* The next frame from the parent (copied into @p out, at most @p cap bytes). */
static size_t fake_frame(fake *f, uint8_t *out, size_t cap)
{
    ck_assert_msg(WAIT_FOR(fake_has_frame(f), DEADLINE_MS), "no frame from the parent");
    uint32_t len = 0;
    ck_assert_int_eq(kraken__sync_frame_parse(f->rx, f->rx_len, FAKE_RX - 4, &len), 1);
    ck_assert_uint_le(len, cap);
    memcpy(out, f->rx + 4, len);
    memmove(f->rx, f->rx + 4 + len, f->rx_len - 4 - len);
    f->rx_len -= 4 + len;
    return len;
}

/* Envelope{sender, epoch, seq, body, mac} under the session key, for channel 'U' or 'T'. */
static void fake_seal(fake *f, char ch, const bytes *body, bytes *out)
{
    uint64_t seq = ++f->seq[ch == 'T'];
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_mac(f->key, f->id.bytes, FAKE_EPOCH, seq, ch, body->v, body->n, mac);
    out->n = 0;
    put_data(out, 1, f->id.bytes, 16);
    put_uint(out, 2, FAKE_EPOCH);
    put_uint(out, 3, seq);
    put_data(out, 4, body->v, body->n);
    put_data(out, 5, mac, sizeof mac);
}

static void fake_datagram(fake *f, const bytes *body)
{
    bytes env;
    fake_seal(f, 'U', body, &env);
    ck_assert_int_eq(sendto(f->udp, env.v, env.n, 0, &f->parent.u.sa, f->parent.len),
                     (ssize_t)env.n);
}

/* Join @p parent as node @p n from @p ip, doing the handshake of PROTOCOL.md 3 by hand; with
 * @p stop_at_challenge, stop once the challenge has arrived (no proof sent). */
static void fake_join_ex(fake *f, inst *parent, unsigned n, const char *ip, bool stop_at_challenge)
{
    memset(f, 0, sizeof *f);
    f->id = make_id(n);
    f->rx = malloc(FAKE_RX);
    ck_assert_ptr_nonnull(f->rx);
    char addr[64];
    snprintf(addr, sizeof addr, "%s:%u", parent->ip, (unsigned)kraken_sync_port(parent->sync));
    ck_assert_int_eq(kraken__sync_parse_addr(addr, 0, &f->parent), 0);
    kraken_sync_addr mine;
    ck_assert_int_eq(kraken__sync_parse_addr(ip, 0, &mine), 0);
    f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    f->tcp = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(f->udp, &mine.u.sa, mine.len), 0);
    ck_assert_int_eq(bind(f->tcp, &mine.u.sa, mine.len), 0);
    ck_assert_int_eq(connect(f->tcp, &f->parent.u.sa, f->parent.len), 0);
    ck_assert_int_eq(fcntl(f->tcp, F_SETFL, O_NONBLOCK), 0);
    kraken_sync_addr got;
    got.len = sizeof got.u;
    ck_assert_int_eq(getsockname(f->udp, &got.u.sa, &got.len), 0);

    kraken_sync_transcript tr;
    memset(&tr, 0, sizeof tr);
    tr.child_id = f->id;
    tr.epoch_child = FAKE_EPOCH;
    tr.udp_port = kraken__sync_addr_port(&got);
    kraken__sync_random(tr.nonce_child, sizeof tr.nonce_child);
    bytes m = {.n = 0};
    put_uint(&m, 1, 1);
    put_data(&m, 2, f->id.bytes, 16);
    put_data(&m, 3, tr.nonce_child, sizeof tr.nonce_child);
    put_uint(&m, 4, FAKE_EPOCH);
    put_uint(&m, 5, kraken__sync_addr_port(&got));
    fake_send_frame(f, m.v, m.n);

    /* JoinChallenge{parent_id = 1, nonce = 2, epoch = 3, proof = 4} */
    uint8_t ch[512];
    size_t len = fake_frame(f, ch, sizeof ch);
    pb_istream_t is = pb_istream_from_buffer(ch, len);
    kraken_sync_JoinChallenge c = kraken_sync_JoinChallenge_init_zero;
    ck_assert(pb_decode(&is, kraken_sync_JoinChallenge_fields, &c));
    memcpy(tr.parent_id.bytes, c.parent_id, 16);
    memcpy(tr.nonce_parent, c.nonce, sizeof tr.nonce_parent);
    tr.epoch_parent = c.epoch;
    f->tr = tr;
    if (stop_at_challenge)
        return;
    uint8_t *sec = NULL, node_key[KRAKEN_SYNC_KEY_LEN], proof[KRAKEN_SYNC_KEY_LEN];
    size_t sec_len = 0;
    ck_assert_int_eq(kraken__sync_secret_load(secret, &sec, &sec_len), 0);
    kraken__sync_node_key(sec, sec_len, &f->id, node_key);
    kraken__sync_secret_free(sec, sec_len);
    kraken__sync_proof(node_key, true, &tr, proof);
    ck_assert(kraken__sync_equal(proof, c.proof, sizeof proof));
    kraken__sync_proof(node_key, false, &tr, proof);
    m.n = 0;
    put_data(&m, 1, proof, sizeof proof);
    fake_send_frame(f, m.v, m.n);
    kraken__sync_session_key(node_key, &tr, f->key);

    /* Envelope{JoinResult{accepted}} */
    static uint8_t env[1 << 16];
    len = fake_frame(f, env, sizeof env);
    kraken_sync_decoded d;
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, env, len, &d), 0);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_BODY, d.body, d.body_len, &d), 0);
    ck_assert_uint_eq(d.kind, kraken_sync_Body_join_result_tag);
    ck_assert_uint_eq(kraken_sync_children(parent->sync), 1);
}

static void fake_join(fake *f, inst *parent, unsigned n, const char *ip)
{
    fake_join_ex(f, parent, n, ip, false);
}

static void fake_close(fake *f)
{
    close(f->tcp);
    close(f->udp);
    free(f->rx);
}

START_TEST(wire_decoders)
{
    /* frame headers: incomplete, whole, over the limit */
    const uint8_t frame[] = {0, 0, 0, 2, 0x08, 0x01};
    uint32_t len = 0;
    ck_assert_int_eq(kraken__sync_frame_parse(frame, 3, 100, &len), 0);
    ck_assert_int_eq(kraken__sync_frame_parse(frame, 5, 100, &len), 0);
    ck_assert_uint_eq(len, 2);
    ck_assert_int_eq(kraken__sync_frame_parse(frame, 6, 100, &len), 1);
    ck_assert_int_eq(kraken__sync_frame_parse(frame, 6, 1, &len), -1);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(kraken__sync_frame_parse(huge, 4, KRAKEN_SYNC_MAX_FRAME, &len), -1);

    /* an envelope without a mac, a NodeState without an id, a truncated body: EPROTO */
    bytes b = {.n = 0};
    kraken_uuid id = make_id(5);
    put_data(&b, 1, id.bytes, 16);
    put_data(&b, 4, "x", 1);
    kraken_sync_decoded d;
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, b.v, b.n, &d), KRAKEN_EPROTO);
    uint8_t mac[KRAKEN_SYNC_KEY_LEN] = {0};
    put_data(&b, 5, mac, sizeof mac);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, b.v, b.n, &d), 0);
    ck_assert_uint_eq(d.body_len, 1);
    ck_assert_int_eq(d.body[0], 'x');
    b.n = 0;
    put_uint(&b, 2, 1);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_NODE_STATE, b.v, b.n, &d), KRAKEN_EPROTO);
    put_data(&b, 1, id.bytes, 16);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_NODE_STATE, b.v, b.n, &d), 0);
    ck_assert_uint_eq(d.nodes, 1);
    const uint8_t cut[] = {0x12, 0x05, 0x12, 0x03};
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_BODY, cut, sizeof cut, &d),
                     KRAKEN_EPROTO);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_COUNT, cut, sizeof cut, &d),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken__sync_decode(KRAKEN_SYNC_WIRE_BODY, NULL, 3, &d), KRAKEN_EINVAL);
}
END_TEST

/* Cfg flows only down: a child's Cfg, creations and deletions are dropped, even for its own
 * node, and so are facts the parent owns for it (PROTOCOL.md 1). */
START_TEST(child_cannot_push_cfg)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid cid = make_id(2), rogue = make_id(8);
    put_cfg(&r, &cid, &r.id, "child");
    inst_sync(&r, NULL);
    fake f;
    fake_join(&f, &r, 2, "127.0.0.2");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &cid, "/RunState", "SYNC"), DEADLINE_MS));
    run_for(30);

    kraken_node *evil;
    ck_assert_int_eq(kraken_node_new(&evil, &cid), 0);
    ck_assert_int_eq(kraken_node_set_text(evil, "/Nodename", "evil"), 0);
    uint8_t *cfg = NULL;
    size_t cfg_len = 0;
    ck_assert_int_eq(kraken_node_encode(evil, &cfg, &cfg_len), 0);
    kraken_node_free(evil);
    bytes ns_cfg = {.n = 0}, ns_del = {.n = 0}, ns_new = {.n = 0}, ns_owned = {.n = 0};
    put_data(&ns_cfg, 1, cid.bytes, 16);
    put_data(&ns_cfg, 3, cfg, cfg_len);
    put_data(&ns_del, 1, cid.bytes, 16);
    put_uint(&ns_del, 2, 1);
    put_data(&ns_new, 1, rogue.bytes, 16);
    put_data(&ns_new, 3, cfg, cfg_len);
    bytes fact = {.n = 0};
    put_data(&fact, 1, "/RunState", 9);
    put_data(&fact, 2, "ERROR", 5);
    put_data(&ns_owned, 1, cid.bytes, 16);
    put_data(&ns_owned, 4, fact.v, fact.n);
    free(cfg);
    bytes upd = {.n = 0}, body = {.n = 0};
    put_data(&upd, 2, ns_cfg.v, ns_cfg.n);
    put_data(&upd, 2, ns_del.v, ns_del.n);
    put_data(&upd, 2, ns_new.v, ns_new.n);
    put_data(&upd, 2, ns_owned.v, ns_owned.n);
    put_data(&body, 2, upd.v, upd.n);

    kraken_sync_stats before = stats_of(&r);
    fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_not_authorized >= before.dropped_not_authorized + 4,
                       DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).dropped_bad_mac, before.dropped_bad_mac);
    ck_assert(has_text(&r, KRAKEN_CFG, &cid, "/Nodename", "child"));
    ck_assert(kraken_store_contains(store_of(&r), &cid));
    ck_assert(!kraken_store_contains(store_of(&r), &rogue));
    ck_assert(has_text(&r, KRAKEN_DSC, &cid, "/RunState", "SYNC"));
    fake_close(&f);
    inst_free(&r);
}
END_TEST

/* A child asking for snapshots over and over gets at most one per half hello interval, so an
 * authenticated peer cannot make the parent queue unbounded output (nor burn its CPU). Time
 * is not measured: the interval is a minute, and the test ages the sessions' last snapshot
 * by hand. */
START_TEST(snapshot_requests_limited)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid cid = make_id(2);
    put_cfg(&r, &cid, &r.id, "child");
    for (unsigned i = 0; i < 20; i++) {
        kraken_uuid g = make_id(100 + i);
        put_cfg(&r, &g, &cid, "grandchild");
    }
    kraken_sync_options o = fast_options();
    o.hello_ms = 60000; /* requested snapshots: at most one per 30 s */
    o.dead_ms = 120000;
    inst_sync_opts(&r, NULL, 0, o);
    fake f;
    fake_join(&f, &r, 2, "127.0.0.2");
    bytes body = {.n = 0};
    put_uint(&body, 4, 1); /* Body{resend: true} */
    /* right after the join's own snapshot: none */
    kraken_sync_stats before = stats_of(&r);
    for (int i = 0; i < 50; i++)
        fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received >= before.datagrams_received + 50,
                       DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).full_resends, before.full_resends);
    /* half an interval later: exactly one for fifty requests */
    kraken__sync_age_snapshots(r.sync, o.hello_ms / 2);
    before = stats_of(&r);
    for (int i = 0; i < 50; i++)
        fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received >= before.datagrams_received + 50,
                       DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).full_resends, before.full_resends + 1);
    fake_close(&f);
    inst_free(&r);
}
END_TEST

/* Idle connections that never finish a handshake fill the pending-join table; a real child
 * must still get in (the oldest half-open join gives way) instead of waiting dead_ms. */
START_TEST(pending_join_flood)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    kraken_sync_options o = fast_options();
    o.dead_ms = 8000; /* half-open joins would stay this long */
    inst_sync_opts(&r, NULL, 0, o);
    kraken_sync_addr to;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)kraken_sync_port(r.sync));
    ck_assert_int_eq(kraken__sync_parse_addr(addr, 0, &to), 0);
    enum { IDLE = KRAKEN_SYNC_MAX_PENDING_JOINS + 44 }; /* more than the parent holds */
    static int idle[IDLE];
    for (int i = 0; i < IDLE; i++) {
        idle[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_eq(connect(idle[i], &to.u.sa, to.len), 0);
        if (i % 32 == 31)
            run_for(5);
    }
    run_for(100);
    inst_sync(&c, &r);
    ck_assert_msg(WAIT_FOR(kraken_sync_joined(c.sync), 2000), "child locked out by idle joins");
    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* The values one Cfg URL of one node took at a receiver, in order. */
typedef struct history {
    kraken_uuid id;
    const char *url;
    char values[64][16];
    unsigned n;
} history;

static void history_cb(const kraken_state_change *ch, void *ud)
{
    history *h = ud;
    if (ch->kind != KRAKEN_CHANGE_CFG_UPDATE || ch->url == NULL || strcmp(ch->url, h->url) != 0 ||
        memcmp(ch->node_id.bytes, h->id.bytes, 16) != 0 || h->n >= 64)
        return;
    char *text = NULL;
    if (ch->new_value != NULL && kraken_value_format(ch->new_value, &text) == 0)
        snprintf(h->values[h->n++], sizeof h->values[0], "%s", text);
    free(text);
}

/*
 * Defect 1 of issue 9: a small Cfg change goes by datagram, the next (too big for one) by TCP;
 * datagrams are slower than the stream. The late datagram carries the older value and must not
 * replace the newer one, whichever transport brought what.
 */
START_TEST(no_rollback_across_transports)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    kraken_sync_options o = fast_options();
    o.dead_ms = 30000; /* the root's datagrams (hellos too) are held below */
    inst_sync_opts(&r, NULL, 0, o);
    inst_sync_opts(&c, &r, 0, o);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    history h = {.id = c.id, .url = "/Nodename"};
    kraken_store_listener *l;
    ck_assert_int_eq(kraken_store_listen(store_of(&c), history_cb, &h, NULL, &l), 0);
    /* the root's datagrams wait in the shim until the test lets them go: "A" is overtaken by
     * the stream for sure, however slow the machine */
    kraken_sync_faults slow = {0};
    slow.delay_ms = 600000;
    slow.seed = 5;
    kraken__sync_set_faults(r.sync, &slow);
    uint64_t sent = stats_of(&r).datagrams_sent;
    put_cfg(&r, &c.id, &r.id, "A"); /* small: one datagram, flushed before "B" exists */
    ck_assert(WAIT_FOR(!kraken__sync_flush_pending(r.sync) &&
                           stats_of(&r).datagrams_sent > sent,
                       DEADLINE_MS));
    uint64_t tcp = stats_of(&r).tcp_messages_sent;
    put_cfg(&r, &c.id, &r.id, "B");
    put_ifaces(&r, KRAKEN_CFG, &c.id, 60); /* too big for a datagram: over TCP */
    ck_assert(WAIT_FOR(stats_of(&r).tcp_messages_sent > tcp, DEADLINE_MS));
    uint64_t datagrams = stats_of(&r).datagrams_sent;
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "B"), DEADLINE_MS));
    uint64_t before = stats_of(&c).datagrams_received;
    kraken__sync_set_faults(r.sync, NULL); /* the held datagrams go now, "A" among them */
    ck_assert(WAIT_FOR(stats_of(&c).datagrams_received >= before + datagrams - sent,
                       DEADLINE_MS));
    run_for(20);
    ck_assert_msg(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "B"), "rolled back to %s",
                  h.n > 0 ? h.values[h.n - 1] : "?");
    ck_assert(has_text(&c, KRAKEN_CFG, &c.id, IFACE_URL "eth59/Eth/Mtu", "9000"));
    for (unsigned i = 1; i < h.n; i++)
        ck_assert_msg(!(strcmp(h.values[i - 1], "B") == 0 && strcmp(h.values[i], "A") == 0),
                      "Nodename went from B back to A");
    ck_assert_uint_ge(stats_of(&c).dropped_old, 1);
    kraken_store_listener_remove(l);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* Errors inside the loop reach the engine's log with their cause, and are still counted; a
 * flood of one kind is rate-limited, the lines held back summed up later. */
START_TEST(loop_errors_logged)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid cid = make_id(2);
    put_cfg(&r, &cid, &r.id, "child");
    inst_sync(&r, NULL);
    fake f;
    fake_join(&f, &r, 2, "127.0.0.2");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &cid, "/RunState", "SYNC"), DEADLINE_MS));
    char cid_text[KRAKEN_UUID_STRLEN + 1], want[512];
    kraken_uuid_format(&cid, cid_text);

    /* a fact the store refuses (no schema has the URL) */
    bytes fact = {.n = 0}, ns = {.n = 0}, upd = {.n = 0}, body = {.n = 0};
    put_data(&fact, 1, "/NoSuchField", 12);
    put_data(&fact, 2, "1", 1);
    put_data(&ns, 1, cid.bytes, 16);
    put_data(&ns, 4, fact.v, fact.n);
    put_data(&upd, 2, ns.v, ns.n);
    put_data(&body, 2, upd.v, upd.n);
    fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(stats_of(&r).apply_failed == 1, DEADLINE_MS));
    ck_assert_uint_eq(r.log.by_level[KRAKEN_LOG_ERROR], 1);
    snprintf(want, sizeof want, "fact /NoSuchField of node %s from child %s not applied: ",
             cid_text, cid_text);
    ck_assert_msg(strncmp(r.log.last, want, strlen(want)) == 0, "log: %s", r.log.last);
    ck_assert_uint_gt(strlen(r.log.last), strlen(want)); /* the store's reason follows */

    /* five forged datagrams: counted five times, logged once, the rest summed up later */
    bytes env;
    fake_seal(&f, 'U', &body, &env);
    env.v[env.n - 1] ^= 1; /* the last byte of the mac */
    unsigned warnings = r.log.by_level[KRAKEN_LOG_WARNING];
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(sendto(f.udp, env.v, env.n, 0, &f.parent.u.sa, f.parent.len),
                         (ssize_t)env.n);
    ck_assert(WAIT_FOR(stats_of(&r).dropped_bad_mac == 5, DEADLINE_MS));
    ck_assert_uint_eq(r.log.by_level[KRAKEN_LOG_WARNING], warnings + 1);
    kraken_sync_addr from;
    from.len = sizeof from.u;
    ck_assert_int_eq(getsockname(f.udp, &from.u.sa, &from.len), 0);
    snprintf(want, sizeof want,
             "dropped a datagram from 127.0.0.2:%u claiming to be child %s: its MAC does not "
             "verify under the session key (forged, corrupted, or from an earlier session)",
             (unsigned)kraken__sync_addr_port(&from), cid_text);
    ck_assert_str_eq(r.log.last, want);
    ck_assert(WAIT_FOR(strcmp(r.log.last, "4 more messages with a bad MAC were dropped and not "
                                          "logged") == 0,
                       DEADLINE_MS));
    fake_close(&f);
    inst_free(&r);
}
END_TEST

/* Defect 7 of issue 9: a child that goes away after the challenge (it timed out, crashed, or
 * found our proof wrong) is reported as what was seen, without blaming the secret; a proof
 * that fails does name the secret. */
START_TEST(honest_join_diagnosis)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid cid = make_id(2);
    put_cfg(&r, &cid, &r.id, "child");
    inst_sync(&r, NULL);
    fake f;
    fake_join_ex(&f, &r, 2, "127.0.0.2", true);
    fake_close(&f);
    ck_assert(WAIT_FOR(r.events[KRAKEN_SYNC_JOIN_REFUSED] == 1, DEADLINE_MS));
    char cid_text[KRAKEN_UUID_STRLEN + 1], want[512];
    kraken_uuid_format(&cid, cid_text);
    snprintf(want, sizeof want,
             "join of %s refused: the child ended the handshake after our challenge, without a "
             "proof (connection closed by peer)",
             cid_text);
    ck_assert_str_eq(r.last_refusal, want);
    ck_assert_ptr_null(strstr(r.log.last, "secret"));
    ck_assert_ptr_nonnull(strstr(r.log.last, "from 127.0.0.2:"));
    inst_free(&r);
}
END_TEST

/* Defect 6 of issue 9: two instances with the same node id (and the right key). The parent
 * keeps the established session, refuses the other, reports it once (event, log, counter), and
 * lets the other in when the first goes away. */
START_TEST(duplicate_node_id)
{
    inst r, c1, c2;
    kraken_sync_options o = fast_options();
    o.hello_ms = 200; /* "alive" is heard within 2 hellos: robust on a loaded machine */
    o.dead_ms = 4000;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c1, 2, "127.0.0.2");
    put_cfg(&r, &c1.id, &r.id, "child");
    inst_sync_opts(&r, NULL, 0, o);
    inst_sync_opts(&c1, &r, 0, o);
    ck_assert(WAIT_FOR(kraken_sync_joined(c1.sync), DEADLINE_MS));
    inst_engine(&c2, 2, "127.0.0.3"); /* same id as c1 */
    inst_sync_opts(&c2, &r, 0, o);
    ck_assert(WAIT_FOR(stats_of(&r).id_conflicts >= 3, DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 1); /* no flapping */
    ck_assert(kraken_sync_joined(c1.sync));
    ck_assert(!kraken_sync_joined(c2.sync));
    ck_assert_uint_eq(r.events[KRAKEN_SYNC_ID_CONFLICT], 1);
    ck_assert_uint_eq(r.log.by_level[KRAKEN_LOG_ERROR], 1);
    char id[KRAKEN_UUID_STRLEN + 1], want[512];
    kraken_uuid_format(&c1.id, id);
    snprintf(want, sizeof want,
             "duplicate node id %s: an instance at 127.0.0.3:%u joined while the session from "
             "127.0.0.2:%u is alive; keeping the established session and refusing the other "
             "for %u ms after each attempt",
             id, (unsigned)kraken_sync_port(c2.sync), (unsigned)kraken_sync_port(c1.sync),
             o.dead_ms);
    ck_assert_str_eq(r.log.last, want);
    ck_assert_ptr_nonnull(strstr(c2.last_refusal, "duplicate node id?"));
    /* the established instance goes away: the other one gets in */
    inst_free(&c1);
    ck_assert(WAIT_FOR(kraken_sync_joined(c2.sync), DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).joins_accepted, 2);
    inst_free(&c2);
    inst_free(&r);
}
END_TEST

/* Root r <- intermediate m (127.0.0.2) <- leaf l (127.0.0.3), all joined, the leaf's /Arch
 * known at the root and the leaf seen live there. */
static void tree_of_three(inst *r, inst *m, inst *l)
{
    inst_engine(r, 1, "127.0.0.1");
    inst_engine(m, 2, "127.0.0.2");
    inst_engine(l, 3, "127.0.0.3");
    put_cfg(r, &m->id, &r->id, "middle");
    put_cfg(r, &l->id, &m->id, "leaf");
    inst_sync(r, NULL);
    inst_sync(m, r);
    ck_assert(WAIT_FOR(has_text(m, KRAKEN_CFG, &l->id, "/Nodename", "leaf"), DEADLINE_MS));
    inst_sync(l, m);
    ck_assert(WAIT_FOR(kraken_sync_joined(l->sync), DEADLINE_MS));
    set_dsc(l, &l->id, "/Arch", "ppc64le");
    ck_assert(WAIT_FOR(has_text(r, KRAKEN_DSC, &l->id, "/Arch", "ppc64le") &&
                           kraken_sync_node_view(r->sync, &l->id) == KRAKEN_SYNC_VIEW_LIVE,
                       DEADLINE_MS));
    ck_assert_int_eq(kraken_sync_node_view(r->sync, &m->id), KRAKEN_SYNC_VIEW_LIVE);
    ck_assert_int_eq(kraken_sync_node_view(r->sync, &r->id), KRAKEN_SYNC_VIEW_SELF);
    ck_assert_int_eq(kraken_sync_node_view(l->sync, &r->id), KRAKEN_SYNC_VIEW_NONE);
}

/* Restart @p m (empty memory) on @p port. */
static void restart_empty(inst *m, unsigned n, const char *ip, const inst *parent, uint16_t port)
{
    inst_free(m);
    inst_engine(m, n, ip);
    inst_sync_opts(m, parent, port, fast_options());
}

/*
 * Defect 3 of issue 9: while the intermediate is dead, the root cannot see its leaves: it says
 * so (stale), keeps their last facts and takes no action on them (the leaf's RunState is the
 * intermediate's to set); when the intermediate is back, the leaves are live again.
 */
START_TEST(dead_intermediate_hides_leaves)
{
    inst r, m, l;
    tree_of_three(&r, &m, &l);
    ck_assert(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "SYNC"));
    uint16_t port = kraken_sync_port(m.sync);
    kraken_sync_free(m.sync); /* the intermediate dies */
    m.sync = NULL;
    ck_assert(WAIT_FOR(kraken_sync_node_view(r.sync, &m.id) == KRAKEN_SYNC_VIEW_STALE &&
                           kraken_sync_node_view(r.sync, &l.id) == KRAKEN_SYNC_VIEW_STALE,
                       DEADLINE_MS));
    ck_assert_uint_ge(r.events[KRAKEN_SYNC_NODES_STALE], 1);
    ck_assert(has_text(&r, KRAKEN_DSC, &m.id, "/RunState", "ERROR")); /* the root's own call */
    ck_assert(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "SYNC"));  /* m's, kept as it was */
    ck_assert(has_text(&r, KRAKEN_DSC, &l.id, "/Arch", "ppc64le"));
    restart_empty(&m, 2, "127.0.0.2", &r, port);
    /* the leaf rejoins the new intermediate, which reports it: live again at the root */
    ck_assert(WAIT_FOR(kraken_sync_joined(l.sync) &&
                           kraken_sync_node_view(r.sync, &l.id) == KRAKEN_SYNC_VIEW_LIVE &&
                           kraken_sync_node_view(r.sync, &m.id) == KRAKEN_SYNC_VIEW_LIVE,
                       DEADLINE_MS));
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "SYNC") &&
                           has_text(&r, KRAKEN_DSC, &l.id, "/Arch", "ppc64le"),
                       DEADLINE_MS));
    ck_assert_uint_ge(r.events[KRAKEN_SYNC_NODES_FRESH], 1);
    inst_free(&l);
    inst_free(&m);
    inst_free(&r);
}
END_TEST

/*
 * Defect 2 of issue 9: an intermediate that restarts with empty memory must not tell the root
 * that its leaves have no facts. The root keeps them (stale) until the leaf reports again; the
 * leaf's new report then replaces them.
 */
START_TEST(restarted_intermediate_keeps_leaf_facts)
{
    inst r, m, l;
    tree_of_three(&r, &m, &l);
    kraken_sync_free(l.sync); /* the leaf is down for the whole restart */
    l.sync = NULL;
    ck_assert(WAIT_FOR(kraken_sync_node_view(r.sync, &l.id) == KRAKEN_SYNC_VIEW_STALE,
                       DEADLINE_MS));
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "ERROR"), DEADLINE_MS));
    restart_empty(&m, 2, "127.0.0.2", &r, kraken_sync_port(m.sync));
    ck_assert(WAIT_FOR(kraken_sync_joined(m.sync), DEADLINE_MS));
    /* the root has applied the new intermediate's first snapshot once m is live again */
    ck_assert(WAIT_FOR(kraken_sync_node_view(r.sync, &m.id) == KRAKEN_SYNC_VIEW_LIVE,
                       DEADLINE_MS));
    run_for(100);
    ck_assert(has_text(&r, KRAKEN_DSC, &l.id, "/Arch", "ppc64le"));
    ck_assert(has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "ERROR"));
    ck_assert_int_eq(kraken_sync_node_view(r.sync, &l.id), KRAKEN_SYNC_VIEW_STALE);
    ck_assert_int_eq(kraken_sync_node_view(m.sync, &l.id), KRAKEN_SYNC_VIEW_STALE);
    /* and the digests agree on the stale node: no snapshot per hello while idle */
    uint64_t full = stats_of(&r).full_resends + stats_of(&m).full_resends;
    run_for(400);
    ck_assert_uint_eq(stats_of(&r).full_resends + stats_of(&m).full_resends, full);
    /* the leaf comes back (also with empty memory): its report replaces the kept facts */
    inst_free(&l);
    inst_engine(&l, 3, "127.0.0.3");
    inst_sync(&l, &m);
    ck_assert(WAIT_FOR(kraken_sync_node_view(r.sync, &l.id) == KRAKEN_SYNC_VIEW_LIVE &&
                           has_text(&r, KRAKEN_DSC, &l.id, "/RunState", "SYNC"),
                       DEADLINE_MS));
    ck_assert(WAIT_FOR(!has_text(&r, KRAKEN_DSC, &l.id, "/Arch", "ppc64le"), DEADLINE_MS));
    inst_free(&l);
    inst_free(&m);
    inst_free(&r);
}
END_TEST

/* Item 9 of issue 9: a leaf's key speaks for that leaf only. With it, nobody can join as a
 * sibling, as the intermediate, or at another place in the tree. */
START_TEST(leaf_key_cannot_impersonate)
{
    inst r, m, l1, l2;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&m, 2, "127.0.0.2");
    inst_engine(&l1, 3, "127.0.0.3");
    put_cfg(&r, &m.id, &r.id, "middle");
    put_cfg(&r, &l1.id, &m.id, "leaf1");
    kraken_uuid l2_id = make_id(4);
    put_cfg(&r, &l2_id, &m.id, "leaf2");
    inst_sync(&r, NULL);
    inst_sync(&m, &r);
    ck_assert(WAIT_FOR(has_text(&m, KRAKEN_CFG, &l2_id, "/Nodename", "leaf2"), DEADLINE_MS));
    inst_sync(&l1, &m);
    ck_assert(WAIT_FOR(kraken_sync_joined(l1.sync), DEADLINE_MS));

    /* l1's key, used by an instance claiming to be l2 (its sibling) */
    kraken_sync_options o = fast_options();
    o.secret_file = NULL;
    o.key = l1.key;
    o.key_len = l1.key_len;
    inst_engine(&l2, 4, "127.0.0.4");
    inst_sync_opts(&l2, &m, 0, o);
    ck_assert(WAIT_FOR(l2.events[KRAKEN_SYNC_JOIN_REFUSED] >= 1, DEADLINE_MS));
    /* it already sees that m's proof is not for its key, and gives up */
    ck_assert_ptr_nonnull(strstr(l2.last_refusal, "the parent's proof does not match"));
    ck_assert(!kraken_sync_joined(l2.sync));
    inst_free(&l2);
    /* a forger that sends a proof anyway, made with l1's key: refused by m */
    fake f;
    fake_join_ex(&f, &m, 4, "127.0.0.4", true);
    uint8_t proof[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_proof(l1.key, false, &f.tr, proof);
    bytes msg = {.n = 0};
    put_data(&msg, 1, proof, sizeof proof);
    unsigned m_refused = m.events[KRAKEN_SYNC_JOIN_REFUSED];
    fake_send_frame(&f, msg.v, msg.n);
    ck_assert(WAIT_FOR(m.events[KRAKEN_SYNC_JOIN_REFUSED] > m_refused, DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(m.last_refusal, "the child's proof does not match"));
    ck_assert(WAIT_FOR(peer_gone(f.tcp), DEADLINE_MS));
    fake_close(&f);
    /* ... and by an instance claiming to be the intermediate, at the root */
    unsigned refused = r.events[KRAKEN_SYNC_JOIN_REFUSED];
    inst fake_m;
    inst_engine(&fake_m, 2, "127.0.0.5");
    inst_sync_opts(&fake_m, &r, 0, o);
    ck_assert(WAIT_FOR(r.events[KRAKEN_SYNC_JOIN_REFUSED] > refused, DEADLINE_MS));
    ck_assert(!kraken_sync_joined(fake_m.sync));
    ck_assert_uint_eq(stats_of(&r).id_conflicts, 0); /* refused before any session */
    inst_free(&fake_m);
    /* the real l2, with the key the root derived for it, gets in */
    inst_engine(&l2, 4, "127.0.0.4");
    inst_sync(&l2, &m);
    ck_assert(WAIT_FOR(kraken_sync_joined(l2.sync), DEADLINE_MS));
    ck_assert(kraken_sync_joined(l1.sync));
    inst_free(&l2);
    inst_free(&l1);
    inst_free(&m);
    inst_free(&r);
}
END_TEST

/* Before it has proven the key, a peer can make the parent buffer one small frame at most;
 * a larger announced frame closes the connection, and the memory is back once they go. */
START_TEST(preauth_memory_bounded)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_sync_options o = fast_options();
    o.dead_ms = 60000; /* half-open joins stay; the test ends them */
    inst_sync_opts(&r, NULL, 0, o);
    kraken_sync_addr to;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)kraken_sync_port(r.sync));
    ck_assert_int_eq(kraken__sync_parse_addr(addr, 0, &to), 0);
    enum { N = 40 };
    int fds[N];
    static uint8_t junk[4 + 16384];
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_eq(connect(fds[i], &to.u.sa, to.len), 0);
        bool small = i % 2 == 0;
        uint32_t announced = small ? 200 : 65536;
        junk[0] = (uint8_t)(announced >> 24);
        junk[1] = (uint8_t)(announced >> 16);
        junk[2] = (uint8_t)(announced >> 8);
        junk[3] = (uint8_t)announced;
        size_t len = small ? 4 + 100 : sizeof junk;
        ck_assert_int_eq(write(fds[i], junk, len), (ssize_t)len);
    }
    ck_assert(WAIT_FOR(kraken__sync_pending_joins(r.sync, NULL) == N / 2 &&
                           kraken__sync_buffered(r.sync) == (N / 2) * 104u,
                       DEADLINE_MS));
    for (int i = 1; i < N; i += 2)
        ck_assert_msg(WAIT_FOR(peer_gone(fds[i]), DEADLINE_MS), "oversized frame kept open");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ck_assert(WAIT_FOR(kraken__sync_pending_joins(r.sync, NULL) == 0 &&
                           kraken__sync_buffered(r.sync) == 0,
                       DEADLINE_MS));
    inst_free(&r);
}
END_TEST

/* At the fd limit the listener pauses with back-off instead of spinning on accept(), reports
 * once through the log, and children get in again once descriptors are free. */
START_TEST(accept_paused_at_fd_limit)
{
    ck_assert_uint_eq(kraken__sync_pending_limit(1024), 480);
    ck_assert_uint_eq(kraken__sync_pending_limit(20000), KRAKEN_SYNC_MAX_PENDING_JOINS);
    ck_assert_uint_eq(kraken__sync_pending_limit(10), 8);
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    kraken_sync_options o = fast_options();
    o.dead_ms = 60000;
    inst_sync_opts(&r, NULL, 0, o);
    size_t limit = 0;
    kraken__sync_pending_joins(r.sync, &limit);
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_uint_eq(limit, kraken__sync_pending_limit(old.rlim_cur));
    kraken_sync_addr to;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)kraken_sync_port(r.sync));
    ck_assert_int_eq(kraken__sync_parse_addr(addr, 0, &to), 0);
    enum { N = 8 };
    int fds[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_ge(fds[i] = socket(AF_INET, SOCK_STREAM, 0), 0);
    int probe = dup(0); /* the lowest free descriptor: room for exactly two more */
    close(probe);
    struct rlimit low = {(rlim_t)probe + 2, old.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(connect(fds[i], &to.u.sa, to.len), 0);
    /* one failure per pause (50, 100, 200 ms): the loop turns many times in between */
    ck_assert(WAIT_FOR(stats_of(&r).accept_errors >= 3, DEADLINE_MS));
    ck_assert_uint_eq(stats_of(&r).accept_errors, 3);
    ck_assert_uint_eq(r.log.n, 1);
    ck_assert_uint_eq(r.log.by_level[KRAKEN_LOG_ERROR], 1);
    ck_assert_str_eq(r.log.last, "cannot accept connections: Too many open files (2 half-open "
                                 "joins, 0 children); pausing accepts for 50 ms, doubling up "
                                 "to 2 s while it lasts");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    inst_sync(&c, &r);
    ck_assert_msg(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS), "no join after the flood");
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* Issue 8: the node field busy (8) and an extension whose fields are all zero travel both
 * ways like any state, and once they are there the digests agree (no resend loop). */
START_TEST(busy_and_empty_extension_sync)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "child");
    inst_sync(&r, NULL);
    inst_sync(&c, &r);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    /* Cfg down: a busy node with a PXE.Client whose fields are all zero */
    kraken_uuid n3 = make_id(3);
    char id3[KRAKEN_UUID_STRLEN + 1], idc[KRAKEN_UUID_STRLEN + 1], json[256];
    snprintf(json, sizeof json,
             "{\"id\": \"%s\", \"parentId\": \"%s\", \"busy\": \"BUSY\", \"extensions\": "
             "[{\"@type\": \"type.googleapis.com/PXE.Client\"}]}",
             kraken_uuid_format(&n3, id3), kraken_uuid_format(&c.id, idc));
    kraken_node *node = NULL;
    ck_assert_int_eq(kraken_node_from_json(json, strlen(json), "test", &node), 0);
    ck_assert_int_eq(kraken_store_create(store_of(&r), node), 0);
    kraken_node_free(node);
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &n3, "/Busy", "BUSY"), DEADLINE_MS));
    ck_assert(has_text(&c, KRAKEN_CFG, &n3, "type.googleapis.com/PXE.Client/State", "NONE"));
    /* Dsc up */
    set_dsc(&c, &n3, "/Busy", "BUSY");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &n3, "/Busy", "BUSY"), DEADLINE_MS));
    /* converged: an idle link sends hellos only */
    run_for(300);
    uint64_t full = stats_of(&r).full_resends + stats_of(&c).full_resends;
    run_for(500);
    ck_assert_uint_eq(stats_of(&r).full_resends + stats_of(&c).full_resends, full);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* Every fault at once, TCP included: lost, duplicated, jittered datagrams, a delayed stream and
 * resets of it. A value set in order v1, v2, ... at the root only ever moves forward at the
 * child, some changes too big for a datagram, and both sides converge once the writes stop. */
START_TEST(converges_under_tcp_faults)
{
    inst r, c;
    inst_engine(&r, 1, "127.0.0.1");
    inst_engine(&c, 2, "127.0.0.2");
    put_cfg(&r, &c.id, &r.id, "v0");
    kraken_sync_options o = fast_options();
    o.dead_ms = 3000;
    kraken_sync_faults f = {0};
    f.loss = 0.02;
    f.duplicate = 0.05;
    f.jitter_ms = 30;
    f.tcp_delay_ms = 20;
    f.tcp_reset = 0.03;
    f.seed = 77;
    inst_sync_opts(&r, NULL, 0, o);
    kraken__sync_set_faults(r.sync, &f);
    inst_sync_opts(&c, &r, 0, o);
    f.seed = 78;
    kraken__sync_set_faults(c.sync, &f);
    history h = {.id = c.id, .url = "/Nodename"};
    kraken_store_listener *l;
    ck_assert_int_eq(kraken_store_listen(store_of(&c), history_cb, &h, NULL, &l), 0);
    ck_assert(WAIT_FOR(kraken_sync_joined(c.sync), DEADLINE_MS));
    char name[16];
    for (int i = 1; i <= 40; i++) {
        snprintf(name, sizeof name, "v%d", i);
        put_cfg(&r, &c.id, &r.id, name);
        if (i % 8 == 0)
            put_ifaces(&r, KRAKEN_CFG, &c.id, 20 + i); /* too big for a datagram */
        snprintf(name, sizeof name, "arch-%d", i);
        if (kraken_sync_joined(c.sync))
            set_dsc(&c, &c.id, "/Arch", name);
        run_for(3);
    }
    ck_assert(WAIT_FOR(has_text(&c, KRAKEN_CFG, &c.id, "/Nodename", "v40") &&
                           has_text(&c, KRAKEN_CFG, &c.id, IFACE_URL "eth59/Eth/Mtu", "9000"),
                       60000));
    set_dsc(&c, &c.id, "/Arch", "final");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &c.id, "/Arch", "final"), 60000));
    for (unsigned i = 1; i < h.n; i++)
        ck_assert_msg(atoi(h.values[i] + 1) >= atoi(h.values[i - 1] + 1),
                      "Nodename went back from %s to %s", h.values[i - 1], h.values[i]);
    kraken_sync_stats rs = stats_of(&r), cs = stats_of(&c);
    ck_assert_uint_eq(rs.dropped_bad_mac + cs.dropped_bad_mac, 0);
    ck_assert_uint_eq(rs.dropped_malformed + cs.dropped_malformed, 0);
    kraken_store_listener_remove(l);
    inst_free(&c);
    inst_free(&r);
}
END_TEST

/* Body{update{nodes: NodeState{id, facts..., dsc_full}}} with facts given as url, value pairs. */
static void fact_update(bytes *body, const kraken_uuid *id, bool full, const char *const *kv,
                        size_t n)
{
    bytes ns = {.n = 0}, upd = {.n = 0};
    put_data(&ns, 1, id->bytes, 16);
    for (size_t i = 0; i + 1 < n; i += 2) {
        bytes fact = {.n = 0};
        put_data(&fact, 1, kv[i], strlen(kv[i]));
        put_data(&fact, 2, kv[i + 1], strlen(kv[i + 1]));
        put_data(&ns, 4, fact.v, fact.n);
    }
    if (full)
        put_uint(&ns, 5, 1);
    put_data(&upd, 2, ns.v, ns.n);
    body->n = 0;
    put_data(body, 2, upd.v, upd.n);
}

/* Per-URL versions (PROTOCOL.md 4, "Ordering"): a child's older whole-Dsc message (a snapshot
 * overtaken by a delta on the other channel) still fills in what no newer message set, and
 * never rolls back what one did. */
START_TEST(older_snapshot_fills_in)
{
    inst r;
    inst_engine(&r, 1, "127.0.0.1");
    kraken_uuid cid = make_id(2);
    put_cfg(&r, &cid, &r.id, "child");
    inst_sync(&r, NULL);
    fake f;
    fake_join(&f, &r, 2, "127.0.0.2");
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &cid, "/RunState", "SYNC"), DEADLINE_MS));
    /* the newer message (sequence 101) comes by TCP: /Arch = new */
    bytes body, env;
    static const char *const newer[] = {"/Arch", "new"};
    fact_update(&body, &cid, false, newer, 2);
    f.seq[1] = 100;
    fake_seal(&f, 'T', &body, &env);
    fake_send_frame(&f, env.v, env.n);
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &cid, "/Arch", "new"), DEADLINE_MS));
    /* then an older whole Dsc (sequence 11) by datagram: /Arch = old, /Platform = p1 */
    kraken_sync_stats before = stats_of(&r);
    static const char *const older[] = {"/Arch", "old", "/Platform", "p1"};
    fact_update(&body, &cid, true, older, 4);
    f.seq[0] = 10;
    fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(has_text(&r, KRAKEN_DSC, &cid, "/Platform", "p1"), DEADLINE_MS));
    ck_assert(has_text(&r, KRAKEN_DSC, &cid, "/Arch", "new"));
    ck_assert_uint_eq(stats_of(&r).dropped_old, before.dropped_old);
    /* an older delta of /Arch alone changes nothing */
    static const char *const oldest[] = {"/Arch", "older"};
    fact_update(&body, &cid, false, oldest, 2);
    fake_datagram(&f, &body);
    ck_assert(WAIT_FOR(stats_of(&r).datagrams_received >= before.datagrams_received + 2,
                       DEADLINE_MS));
    run_for(20);
    ck_assert(has_text(&r, KRAKEN_DSC, &cid, "/Arch", "new"));
    ck_assert_uint_eq(stats_of(&r).dropped_bad_mac + stats_of(&r).dropped_replay, 0);
    fake_close(&f);
    inst_free(&r);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *units = tcase_create("units");
    tcase_add_checked_fixture(units, setup, teardown);
    tcase_add_test(units, parse_addresses);
    tcase_add_test(units, secret_files);
    tcase_add_test(units, keys_and_macs);
    tcase_add_test(units, transport_frames_and_faults);
    tcase_add_test(units, transport_tcp_faults);
    tcase_add_test(units, no_sigpipe_on_dead_connection);
    tcase_add_test(units, bad_options);
    tcase_add_test(units, node_key_files);
    tcase_add_test(units, wire_decoders);
    suite_add_tcase(s, units);

    TCase *proto = tcase_create("protocol");
    tcase_add_checked_fixture(proto, setup, teardown);
    tcase_set_timeout(proto, 60);
    tcase_add_test(proto, join_and_flow);
    tcase_add_test(proto, three_levels);
    tcase_add_test(proto, ipv6_link);
    tcase_add_test(proto, wrong_secret_refused);
    tcase_add_test(proto, replay_forgery_unknown_sender);
    tcase_add_test(proto, outside_subtree_dropped);
    tcase_add_test(proto, oversized_node_over_tcp);
    tcase_add_test(proto, parent_restart);
    tcase_add_test(proto, child_restart);
    tcase_add_test(proto, link_loss_and_heal);
    tcase_add_test(proto, converges_under_faults);
    tcase_add_test(proto, child_cannot_push_cfg);
    tcase_add_test(proto, snapshot_requests_limited);
    tcase_add_test(proto, pending_join_flood);
    tcase_add_test(proto, preauth_memory_bounded);
    tcase_add_test(proto, leaf_key_cannot_impersonate);
    tcase_add_test(proto, dead_intermediate_hides_leaves);
    tcase_add_test(proto, restarted_intermediate_keeps_leaf_facts);
    tcase_add_test(proto, duplicate_node_id);
    tcase_add_test(proto, loop_errors_logged);
    tcase_add_test(proto, honest_join_diagnosis);
    tcase_add_test(proto, no_rollback_across_transports);
    tcase_add_test(proto, older_snapshot_fills_in);
    tcase_add_test(proto, converges_under_tcp_faults);
    tcase_add_test(proto, accept_paused_at_fd_limit);
    tcase_add_test(proto, busy_and_empty_extension_sync);
    suite_add_tcase(s, proto);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
