/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_sync: the sync protocol at scale (issue 4).
 *
 *   bench_sync [options] [N ...]     (child instances per run; default: 1000 10000)
 *     --topo flat|two|both   topologies to run (both)
 *     --window S             idle measurement window in seconds (30: 3 hello periods; a
 *                            whole number of periods, since hellos of instances started
 *                            together come in bursts)
 *     --rounds R             round-trip rounds per run (3)
 *     --port P               UDP+TCP port of every instance (31415)
 *     --join-timeout S       bound on the cold join (120)
 *     --procs W              0: every instance in one process (the default when the fd limit
 *                            allows); W > 0: the root in one process, the children spread over
 *                            W worker processes (default when RLIMIT_NOFILE cannot be raised)
 *     --intermediates K      two-level: K intermediates (default round(sqrt(N)))
 *     --log LEVEL            the root and intermediates log to stderr up to LEVEL (log.h)
 *     --sequential-ids       ids that differ only in their last bytes (default: random v4)
 *     --tune-parents BYTES   experiment, not the library's behaviour: after a parent's (root's,
 *                            intermediate's) kraken_sync_new, set its UDP receive buffer to
 *                            BYTES (SO_RCVBUFFORCE) and its TCP listen backlog to 4096
 *
 * Every instance is a kraken_engine (own store) + kraken_sync (own UDP socket and TCP
 * listener) on its own loopback address (root 127.1.0.1, instance i at 127.1.0.1 + i), on one
 * event_base per process, with the protocol's default timers (hello 10 s, dead 40 s, damping
 * 5 ms, rejoin 250 ms .. 30 s) and a real cluster secret (not insecure mode).
 *
 * Topologies, N = number of child instances (every instance but the root):
 *   flat  the root's Cfg has N nodes with parentId = root;
 *   two   root -> k = round(sqrt(N)) intermediates -> N - k leaves (leaf j under intermediate
 *         1 + (j - k - 1) mod k); the root's Cfg holds the whole tree, each intermediate gets
 *         its subtree from the root and is a child of the root and the parent of its leaves.
 *
 * Figures per (topology, N), each run in a forked process (fds and memory start clean):
 *   1. cold join: from the moment the child kraken_sync_new() calls start until every child
 *      is joined (kraken_sync_joined) and the root and every intermediate see all their direct
 *      children (kraken_sync_children); all children start at once, as after a power cut.
 *   2. round trip: the root sets Cfg /Nodename of every child node in one batch (no loop turn
 *      in between). Each child sees its own Cfg change through a store listener and, on the
 *      next loop turn, its "echo" service (declared discoverable: /Arch on leaves, /Platform on
 *      intermediates, so that an intermediate does not own its leaves' echo URL) discovers the
 *      same text in its Dsc. Reported: time to the last Cfg arrival at a child and time to the
 *      last echo arrival in the root's Dsc (root store listener), from the start of the batch.
 *   3. idle bytes: after convergence and a settle time, kraken_sync_stats bytes_sent of every
 *      instance over the window. "down" = root bytes / root's direct children, "up" = leaf
 *      bytes / leaves (flat: all children are leaves), "link" = all bytes / (2 N).
 *   4. memory per child instance: RSS (/proc/self/statm) and heap (mallinfo2) growth, summed
 *      over the processes, from before the first child engine until 2 s after the join, divided
 *      by N (engine + store + sync + sockets, and the parent-side session of its link).
 * Where datagrams and connections were dropped comes from the kernel's counters (network
 * namespace wide): UDP RcvbufErrors, softnet backlog drops, TcpExt ListenOverflows. Also shown:
 * sum(datagrams_sent) - sum(datagrams_received) over all instances, which counts drops and
 * datagrams still queued when the counters were read.
 *
 * Public API only (plus socket options in the --tune-parents experiment). One process needs
 * about 4 file descriptors per child; RLIMIT_NOFILE is raised with setrlimit when allowed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <kraken/kraken.h>

#include "benchutil.h"

#define MAX_SIZES 8
#define MAX_ROUNDS 10
#define MAX_WORKERS 64
#define ROOT_BASE_ADDR 0x7f010001u /* 127.1.0.1 */
#define SCAN_EVERY_S 0.002          /* rate limit of O(N) condition scans */
#define RT_TIMEOUT_S 60.0
#define REPLY_TIMEOUT_S 30.0        /* a worker answers a request within this */
#define SETTLE_AFTER_JOIN_S 2.0
#define SETTLE_BETWEEN_ROUNDS_S 1.0
#define SETTLE_BEFORE_IDLE_S 3.0
#define FDS_PER_CHILD 4             /* UDP, TCP listener, TCP to the parent, parent's accept */
#define FDS_SPARE 512
#define TIMES_PER_MSG 4096
#define HELLO_PERIOD_S 10.0         /* KRAKEN_SYNC_OPTIONS_INIT's hello_ms */

/* Kernel counters (network namespace wide): listen queue overflows, UDP receive buffer errors
 * and input backlog drops, to tell where connections and datagrams were dropped. */
typedef struct kstats {
    uint64_t listen_overflows, udp_rcvbuf_errors, backlog_drops;
} kstats;

/* Value of column @p name in the "prefix" header/value line pair of a /proc/net file. */
static uint64_t proc_net_value(const char *path, const char *prefix, const char *name)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    static char head[8192], vals[8192];
    uint64_t result = 0;
    size_t plen = strlen(prefix);
    while (fgets(head, sizeof head, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(head, prefix, plen) != 0 || strncmp(vals, prefix, plen) != 0)
            continue;
        char *hs, *vs;
        char *h = strtok_r(head + plen, " \n", &hs), *v = strtok_r(vals + plen, " \n", &vs);
        while (h != NULL && v != NULL) {
            if (strcmp(h, name) == 0)
                result = strtoull(v, NULL, 10);
            h = strtok_r(NULL, " \n", &hs);
            v = strtok_r(NULL, " \n", &vs);
        }
        break;
    }
    fclose(f);
    return result;
}

static kstats read_kstats(void)
{
    kstats k;
    k.listen_overflows = proc_net_value("/proc/net/netstat", "TcpExt:", "ListenOverflows");
    k.udp_rcvbuf_errors = proc_net_value("/proc/net/snmp", "Udp:", "RcvbufErrors");
    /* second column of each CPU's line: packets dropped because the input backlog was full */
    k.backlog_drops = 0;
    FILE *f = fopen("/proc/net/softnet_stat", "r");
    if (f != NULL) {
        unsigned long long processed, dropped;
        char line[512];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "%llx %llx", &processed, &dropped) == 2)
                k.backlog_drops += dropped;
        fclose(f);
    }
    return k;
}

static void die_on(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "bench_sync[%d]: %s: %s (%s)\n", (int)getpid(), what, kraken_err_name(rc),
                kraken_error_last());
        exit(1);
    }
}

static void die_errno(const char *what)
{
    fprintf(stderr, "bench_sync[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

/* ---- options and results -------------------------------------------------- */

typedef enum topo { TOPO_FLAT = 0, TOPO_TWO = 1 } topo;
static const char *const topo_names[] = {"flat", "two-level"};

typedef struct options {
    size_t sizes[MAX_SIZES];
    size_t n_sizes;
    bool run_topo[2];
    double window_s;
    int rounds;
    unsigned port;
    double join_timeout_s;
    int procs;              /* -1: automatic */
    size_t intermediates;   /* two-level: 0 = round(sqrt(N)) */
    int log_level;          /* --log: root and intermediates log to stderr up to this; -1 off */
    long tune_rcvbuf;       /* 0: off */
    rlim_t fd_limit;        /* RLIMIT_NOFILE soft limit in effect */
} options;

/* What a run reports to the main process (written whole through a pipe). */
typedef struct result {
    bool ok;                 /* every phase finished within its deadline */
    char failure[256];       /* first failure */
    topo topology;
    size_t n, n_mid, n_leaves;
    int procs;               /* worker processes (0: all in one process) */
    double create_s;         /* the N child kraken_sync_new() calls */
    double join_s, join_p50_s, join_p99_s, join_cpu_s;
    double join_root_cpu_s;  /* the coordinator process's share (the root alone with workers) */
    size_t joined;           /* children joined at the end of the join phase */
    int rounds;
    double rt_batch_ms[MAX_ROUNDS], rt_cfg_ms[MAX_ROUNDS], rt_echo_ms[MAX_ROUNDS];
    double rt_cfg_p50_ms[MAX_ROUNDS], rt_echo_p50_ms[MAX_ROUNDS];
    size_t rt_cfg_count[MAX_ROUNDS], rt_echo_count[MAX_ROUNDS];
    uint64_t rt_lost[MAX_ROUNDS], rt_full[MAX_ROUNDS];
    double idle_s;
    double idle_down, idle_up, idle_link;      /* B/s per child per direction */
    double idle_dgrams_down, idle_dgrams_up;   /* datagrams/s per child */
    uint64_t idle_full, idle_lost, idle_tcp;
    double rss_create_kib, heap_create_b;      /* per child, created, before any traffic */
    double rss_engine_kib, heap_engine_b;      /* per child, the engines alone */
    double create_proc_s;                      /* slowest process's kraken_sync_new calls */
    double rss_join_kib, heap_join_b;          /* per child, after the join */
    double rss_total_mib;                      /* all processes */
    double root_rss_kib, root_heap_kib;        /* the root process alone (with workers), after
                                                  the join, from before the root engine */
    int tuned_sockets;                         /* --tune-parents: sockets changed */
    char load_before[64], load_after[64];      /* /proc/loadavg around the run */
    /* totals over all instances at the end */
    uint64_t joins_accepted, joins_refused, peers_lost, full_resends;
    uint64_t dropped_mac, dropped_unknown, dropped_replay, dropped_auth, dropped_malformed;
    uint64_t dropped_old, apply_failed, accept_errors;
    uint64_t join_lost;
    /* kernel counters over the join and the round trips */
    uint64_t join_listen_overflows, join_rcvbuf_errors, join_backlog_drops;
    uint64_t rt_rcvbuf_errors[MAX_ROUNDS], rt_backlog_drops[MAX_ROUNDS];
    uint64_t idle_rcvbuf_errors, idle_backlog_drops;
} result;

/* Sync counters summed over instances, and what a process measures about itself. */
typedef struct totals {
    kraken_sync_stats all, root, leaves;
    double rss_kib, heap_b, cpu_s; /* growth since the process's baseline */
    double rss_abs_kib;            /* resident size now */
    double eng_rss_kib, eng_heap_b; /* growth from the child engines alone (before syncs) */
    double create_s;               /* wall time of this process's kraken_sync_new calls */
    int tuned;
} totals;

/* ---- instances -------------------------------------------------------------- */

typedef struct bench bench;

typedef struct inst {
    bench *b;
    uint32_t index;           /* 0: root; 1..N: children */
    uint32_t parent;          /* index of the parent instance */
    uint32_t n_kids;          /* direct children in Cfg */
    uint16_t owner;           /* 0: the main run process; w + 1: worker w */
    bool intermediate;
    bool echo_pending;
    kraken_uuid id;
    kraken_engine *engine;
    kraken_sync *sync;
    kraken_service *echo;
    char addr[20];
    bool key_ok;
    uint8_t key[KRAKEN_SYNC_NODE_KEY_LEN]; /* node key (children), derived as the root would */
} inst;

/* The state of one process of a run: the coordinator (owner 0) or a worker (owner w + 1). */
struct bench {
    const options *opt;
    result *res;
    uint16_t me;              /* owner id of this process */
    struct event_base *base;
    struct event *tick, *echo_ev;
    const char *secret;
    size_t n;                 /* child instances */
    inst *v;                  /* v[0] root, v[1..n] children (only own ones are live) */
    long rss0;
    size_t heap0;
    double cpu0;
    double eng_rss_kib, eng_heap_b, create_s;
    int tuned;
    /* join */
    uint32_t *not_joined;     /* own children not yet seen joined */
    size_t n_not_joined;
    double *joined_at;        /* absolute time; < 0: not yet */
    /* round trip */
    unsigned round;           /* 0: no round active */
    double *cfg_at, *echo_at; /* absolute times; < 0: not yet */
    size_t echo_count;
    uint32_t *echo_queue;
    size_t n_echo_queue;
    uint64_t echo_errors;
};

static bool sequential_ids; /* --sequential-ids */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Instance @p n's id: random-looking version-4 bytes (fixed per n), with a marker in bytes
 * 0-1 and n in bytes 12-15; with --sequential-ids only n varies (ids such as a site might
 * number its nodes with). */
static kraken_uuid make_id(uint32_t n)
{
    kraken_uuid id;
    uint64_t r1 = sequential_ids ? 0 : splitmix64(n), r2 = sequential_ids ? 0 : splitmix64(r1);
    memcpy(id.bytes, &r1, 8);
    memcpy(id.bytes + 8, &r2, 8);
    id.bytes[0] = 0x5b;
    id.bytes[1] = 0xe7;
    id.bytes[6] = (uint8_t)(0x40 | (id.bytes[6] & 0x0f)); /* version 4 */
    id.bytes[8] = (uint8_t)(0x80 | (id.bytes[8] & 0x3f)); /* variant */
    id.bytes[12] = (uint8_t)(n >> 24);
    id.bytes[13] = (uint8_t)(n >> 16);
    id.bytes[14] = (uint8_t)(n >> 8);
    id.bytes[15] = (uint8_t)n;
    return id;
}

/* The instance index encoded by make_id(), or UINT32_MAX for an id it did not make. */
static uint32_t index_of(const kraken_uuid *id)
{
    if (id->bytes[0] != 0x5b || id->bytes[1] != 0xe7)
        return UINT32_MAX;
    return (uint32_t)id->bytes[12] << 24 | (uint32_t)id->bytes[13] << 16 |
           (uint32_t)id->bytes[14] << 8 | id->bytes[15];
}

static void fail(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(bench *b, const char *fmt, ...)
{
    va_list ap;
    if (b->res->ok) {
        va_start(ap, fmt);
        vsnprintf(b->res->failure, sizeof b->res->failure, fmt, ap);
        va_end(ap);
    }
    b->res->ok = false;
    va_start(ap, fmt);
    fprintf(stderr, "  FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* The text the root sets as Cfg /Nodename of child @p i in round @p r, and the echo. */
static void round_text(char *buf, size_t size, unsigned r, uint32_t i)
{
    snprintf(buf, size, "rt%u-n%u", r, i);
}

static bool value_is_text(const kraken_value *v, const char *text)
{
    return v != NULL && v->type == KRAKEN_T_STRING && v->v.str.data != NULL &&
           strcmp(v->v.str.data, text) == 0;
}

static const char *echo_url(const inst *x) { return x->intermediate ? "/Platform" : "/Arch"; }

static bool mine(const bench *b, uint32_t i) { return b->v[i].owner == b->me; }

/* ---- the loop ----------------------------------------------------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop for @p seconds. */
static void run_for(bench *b, double seconds)
{
    double end = bench_now_s() + seconds;
    while (bench_now_s() < end)
        event_base_loop(b->base, EVLOOP_ONCE);
}

/* Run the loop until @p done(b) holds (checked at most every SCAN_EVERY_S) or @p deadline. */
static bool run_until(bench *b, bool (*done)(bench *), double deadline)
{
    double next_scan = 0;
    for (;;) {
        double t = bench_now_s();
        if (t >= next_scan) {
            if (done(b))
                return true;
            next_scan = t + SCAN_EVERY_S;
        }
        if (t >= deadline)
            return done(b);
        event_base_loop(b->base, EVLOOP_ONCE);
    }
}

/* ---- echo: a child discovers what its Cfg says ----------------------------------- */

static void child_store_change(const kraken_state_change *ch, void *ud)
{
    inst *x = ud;
    bench *b = x->b;
    if (b->round == 0 || ch->kind != KRAKEN_CHANGE_CFG_UPDATE || ch->url == NULL ||
        strcmp(ch->url, "/Nodename") != 0 || memcmp(&ch->node_id, &x->id, sizeof x->id) != 0)
        return;
    char want[48];
    round_text(want, sizeof want, b->round, x->index);
    if (!value_is_text(ch->new_value, want) || b->cfg_at[x->index] >= 0)
        return;
    b->cfg_at[x->index] = bench_now_s();
    /* Listeners must not write to the store: discover from the loop. */
    if (!x->echo_pending) {
        x->echo_pending = true;
        b->echo_queue[b->n_echo_queue++] = x->index;
        event_active(b->echo_ev, EV_TIMEOUT, 0);
    }
}

static void echo_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench *b = arg;
    char text[48];
    for (size_t k = 0; k < b->n_echo_queue; k++) {
        inst *x = &b->v[b->echo_queue[k]];
        x->echo_pending = false;
        round_text(text, sizeof text, b->round, x->index);
        if (kraken_service_discover_text(x->echo, &x->id, echo_url(x), text) < 0 &&
            b->echo_errors++ == 0)
            fprintf(stderr, "  echo discovery failed: %s\n", kraken_error_last());
    }
    b->n_echo_queue = 0;
}

static void root_store_change(const kraken_state_change *ch, void *ud)
{
    bench *b = ud;
    if (b->round == 0 || ch->kind != KRAKEN_CHANGE_UPDATE || ch->url == NULL)
        return;
    uint32_t i = index_of(&ch->node_id);
    if (i == 0 || i > b->n || b->echo_at[i] >= 0 || strcmp(ch->url, echo_url(&b->v[i])) != 0)
        return;
    char want[48];
    round_text(want, sizeof want, b->round, i);
    if (!value_is_text(ch->new_value, want))
        return;
    b->echo_at[i] = bench_now_s();
    b->echo_count++;
}

static void echo_start(kraken_service *svc, void *ud)
{
    (void)ud;
    (void)kraken_service_set_state(svc, KRAKEN_SERVICE_RUN, NULL);
}

/* ---- building the tree ---------------------------------------------------------- */

static void format_addr(char *buf, size_t size, uint32_t index)
{
    struct in_addr a = {htonl(ROOT_BASE_ADDR + index)};
    inet_ntop(AF_INET, &a, buf, (socklen_t)size);
}

/* Parents, roles, addresses and owning process of every instance. A leaf lives in the same
 * worker as its intermediate, so the accepted connections spread evenly too. */
static void plan_tree(bench *b, topo t, int workers)
{
    result *r = b->res;
    size_t k = t != TOPO_TWO             ? 0
               : b->opt->intermediates > 0 ? b->opt->intermediates
                                           : (size_t)lround(sqrt((double)b->n));
    if (k >= b->n)
        k = b->n > 1 ? b->n - 1 : 1;
    if (t == TOPO_TWO && k < 1)
        k = 1;
    r->n_mid = k;
    r->n_leaves = b->n - k;
    for (uint32_t i = 0; i <= b->n; i++) {
        inst *x = &b->v[i];
        memset(x, 0, sizeof *x);
        x->b = b;
        x->index = i;
        x->id = make_id(i);
        format_addr(x->addr, sizeof x->addr, i);
        if (i == 0)
            continue;
        if (t == TOPO_FLAT || i <= k) {
            x->parent = 0;
            x->intermediate = t == TOPO_TWO;
        } else {
            x->parent = (uint32_t)(1 + (i - k - 1) % k);
        }
        b->v[x->parent].n_kids++;
        uint32_t anchor = x->parent != 0 ? x->parent : i;
        x->owner = workers > 0 ? (uint16_t)(1 + anchor % (uint32_t)workers) : 0;
    }
}

static void log_to_stderr(int level, const char *subsystem, const char *message, void *ud)
{
    const inst *x = ud;
    fprintf(stderr, "[%.1f s, instance %u] %s %s: %s\n", bench_now_s(), x->index,
            kraken_log_level_name(level), subsystem, message);
}

static void new_engine(bench *b, inst *x)
{
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    eo.self_id = x->id;
    eo.start_frozen = x->index != 0;
    die_on(kraken_engine_new(&x->engine, b->base, NULL, &eo), "kraken_engine_new");
    if (b->opt->log_level >= 0 && (x->index == 0 || x->intermediate))
        die_on(kraken_engine_set_log(x->engine, b->opt->log_level, log_to_stderr, x, NULL),
               "kraken_engine_set_log");
}

/* The root's Cfg: every child node with its parent (parents first). */
static void fill_root_cfg(bench *b)
{
    kraken_store *st = kraken_engine_store(b->v[0].engine);
    char name[32];
    for (uint32_t i = 1; i <= b->n; i++) {
        inst *x = &b->v[i];
        kraken_node *node = NULL;
        kraken_value pv = kraken_value_uuid(&b->v[x->parent].id);
        snprintf(name, sizeof name, "node%u", i);
        die_on(kraken_node_new(&node, &x->id), "kraken_node_new");
        die_on(kraken_node_set(node, "/ParentId", &pv), "set /ParentId");
        die_on(kraken_node_set_text(node, "/Nodename", name), "set /Nodename");
        die_on(kraken_store_create(st, node), "kraken_store_create");
        kraken_node_free(node);
    }
    kraken_store_listener *l;
    die_on(kraken_store_listen(st, root_store_change, b, NULL, &l), "root listener");
}

static void new_child_engine(bench *b, inst *x)
{
    new_engine(b, x);
    static const kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = echo_start);
    die_on(kraken_engine_add_service(x->engine, "echo", "bench", &ops, NULL, NULL, &x->echo),
           "add echo service");
    die_on(kraken_service_declare_discoverable(x->echo, echo_url(x), NULL, NULL),
           "declare echo URL");
    kraken_store_listener *l;
    die_on(kraken_store_listen(kraken_engine_store(x->engine), child_store_change, x, NULL, &l),
           "child listener");
}

/* --tune-parents: the sockets kraken_sync_new just opened for @p x (fds >= @p fd_lo). */
static int tune_parent_sockets(bench *b, const inst *x, int fd_lo)
{
    struct sockaddr_in want;
    memset(&want, 0, sizeof want);
    inet_pton(AF_INET, x->addr, &want.sin_addr);
    int tuned = 0;
    for (int fd = fd_lo; fd < fd_lo + 64; fd++) {
        struct sockaddr_in got;
        socklen_t len = sizeof got;
        int type = 0, listening = 0;
        socklen_t tl = sizeof type, ll = sizeof listening;
        if (getsockname(fd, (struct sockaddr *)&got, &len) != 0 || got.sin_family != AF_INET ||
            got.sin_addr.s_addr != want.sin_addr.s_addr ||
            ntohs(got.sin_port) != b->opt->port ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
            continue;
        if (type == SOCK_DGRAM) {
            int size = (int)b->opt->tune_rcvbuf;
            if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) == 0)
                tuned++;
        } else if (type == SOCK_STREAM &&
                   getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 && listening) {
            if (listen(fd, 4096) == 0) /* Linux: listen() again changes the backlog */
                tuned++;
        }
    }
    return tuned;
}

static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* A child's node key: derived from its parent's key along the tree, from the cluster secret
 * at the root (doc/PROTOCOL.md 2). Every instance but the root holds only its own. */
static const uint8_t *node_key(bench *b, inst *x)
{
    if (!x->key_ok) {
        static uint8_t secret[64];
        static size_t secret_len;
        if (secret_len == 0) {
            FILE *f = fopen(b->secret, "rb");
            secret_len = f != NULL ? fread(secret, 1, sizeof secret, f) : 0;
            if (f != NULL)
                fclose(f);
        }
        inst *up = &b->v[x->parent];
        const uint8_t *pk = x->parent == 0 ? secret : node_key(b, up);
        size_t pk_len = x->parent == 0 ? secret_len : KRAKEN_SYNC_NODE_KEY_LEN;
        if (kraken_sync_derive_node_key(pk, pk_len, &x->id, x->key) != 0) {
            fprintf(stderr, "bench_sync: node key: %s\n", kraken_error_last());
            exit(1);
        }
        x->key_ok = true;
    }
    return x->key;
}

static void new_sync(bench *b, inst *x)
{
    char parent[40];
    kraken_sync_options o = KRAKEN_SYNC_OPTIONS_INIT;
    o.listen_addr = x->addr;
    o.port = (uint16_t)b->opt->port;
    o.secret_file = b->secret;
    if (x->index != 0) {
        o.secret_file = NULL;
        o.key = node_key(b, x);
        o.key_len = KRAKEN_SYNC_NODE_KEY_LEN;
        snprintf(parent, sizeof parent, "%s:%u", b->v[x->parent].addr, b->opt->port);
        o.parent_addr = parent;
    }
    bool parent_role = x->n_kids > 0;
    int fd_lo = parent_role && b->opt->tune_rcvbuf > 0 ? lowest_free_fd() : -1;
    int rc = kraken_sync_new(&x->sync, x->engine, b->base, &o);
    if (rc < 0) {
        fprintf(stderr, "bench_sync[%d]: kraken_sync_new for instance %u at %s: %s (%s)\n",
                (int)getpid(), x->index, x->addr, kraken_err_name(rc), kraken_error_last());
        exit(1);
    }
    if (fd_lo >= 0)
        b->tuned += tune_parent_sockets(b, x, fd_lo);
}

static void free_instances(bench *b)
{
    for (size_t i = b->n + 1; i-- > 0;)
        kraken_sync_free(b->v[i].sync);
    for (size_t i = b->n + 1; i-- > 0;)
        kraken_engine_free(b->v[i].engine);
}

/* ---- this process's children ("part") ----------------------------------------- */

static void part_engines(bench *b)
{
    b->rss0 = bench_rss_kib();
    b->heap0 = bench_heap_bytes();
    b->cpu0 = bench_cpu_s();
    for (uint32_t i = 1; i <= b->n; i++)
        if (mine(b, i))
            new_child_engine(b, &b->v[i]);
    b->eng_rss_kib = (double)(bench_rss_kib() - b->rss0);
    b->eng_heap_b = (double)bench_heap_bytes() - (double)b->heap0;
}

/* Parents (intermediates) first, so that their sockets are up before their leaves call. */
static void part_syncs(bench *b)
{
    double t0 = bench_now_s();
    b->n_not_joined = 0;
    for (uint32_t i = 1; i <= b->n; i++) {
        b->joined_at[i] = -1;
        if (mine(b, i) && b->v[i].n_kids > 0)
            new_sync(b, &b->v[i]);
    }
    for (uint32_t i = 1; i <= b->n; i++) {
        if (!mine(b, i))
            continue;
        if (b->v[i].n_kids == 0)
            new_sync(b, &b->v[i]);
        b->not_joined[b->n_not_joined++] = i;
    }
    b->create_s = bench_now_s() - t0;
}

static bool inst_complete(const inst *x)
{
    return (x->index == 0 || kraken_sync_joined(x->sync)) &&
           kraken_sync_children(x->sync) == x->n_kids;
}

/* Every own child joined, every own intermediate sees all its leaves. */
static bool part_joined(bench *b)
{
    double t = bench_now_s();
    for (size_t k = 0; k < b->n_not_joined;) {
        uint32_t i = b->not_joined[k];
        if (kraken_sync_joined(b->v[i].sync)) {
            b->joined_at[i] = t;
            b->not_joined[k] = b->not_joined[--b->n_not_joined];
        } else {
            k++;
        }
    }
    if (b->n_not_joined > 0)
        return false;
    for (uint32_t i = 1; i <= b->res->n_mid; i++)
        if (mine(b, i) && !inst_complete(&b->v[i]))
            return false;
    return true;
}

static void part_round_begin(bench *b, unsigned round)
{
    for (size_t i = 0; i <= b->n; i++)
        b->cfg_at[i] = -1;
    b->round = round;
}

static void add_stats(kraken_sync_stats *acc, const kraken_sync_stats *s)
{
    const uint64_t *src = (const uint64_t *)s;
    uint64_t *dst = (uint64_t *)acc;
    for (size_t i = 0; i < sizeof *s / sizeof(uint64_t); i++)
        dst[i] += src[i];
}

static void add_totals(totals *acc, const totals *t)
{
    add_stats(&acc->all, &t->all);
    add_stats(&acc->root, &t->root);
    add_stats(&acc->leaves, &t->leaves);
    acc->rss_kib += t->rss_kib;
    acc->heap_b += t->heap_b;
    acc->cpu_s += t->cpu_s;
    acc->rss_abs_kib += t->rss_abs_kib;
    acc->eng_rss_kib += t->eng_rss_kib;
    acc->eng_heap_b += t->eng_heap_b;
    if (t->create_s > acc->create_s)
        acc->create_s = t->create_s;
    acc->tuned += t->tuned;
}

/* This process's instances (the root too, in the coordinator). */
static totals part_totals(bench *b)
{
    totals t;
    memset(&t, 0, sizeof t);
    for (uint32_t i = 0; i <= b->n; i++) {
        if (!mine(b, i) || b->v[i].sync == NULL)
            continue;
        kraken_sync_stats s;
        kraken_sync_get_stats(b->v[i].sync, &s);
        add_stats(&t.all, &s);
        if (i == 0)
            t.root = s;
        else if (b->v[i].n_kids == 0)
            add_stats(&t.leaves, &s);
    }
    t.rss_abs_kib = (double)bench_rss_kib();
    t.rss_kib = t.rss_abs_kib - (double)b->rss0;
    t.heap_b = (double)bench_heap_bytes() - (double)b->heap0;
    t.cpu_s = bench_cpu_s() - b->cpu0;
    t.tuned = b->tuned;
    t.eng_rss_kib = b->eng_rss_kib;
    t.eng_heap_b = b->eng_heap_b;
    t.create_s = b->create_s;
    return t;
}

/* ---- coordinator <-> worker messages (SOCK_SEQPACKET: one message per send) ------------ */

enum msg_type {
    M_START = 1,    /* c->w: create the syncs */
    M_CREATED,      /* w->c: syncs created; totals */
    M_JOINED,       /* w->c: all own children joined (times follow as M_TIMES) */
    M_ROUND,        /* c->w: round arg begins */
    M_ACK,          /* w->c */
    M_ROUND_END,    /* c->w: send the Cfg arrival times (M_TIMES), end the round */
    M_STATS_REQ,    /* c->w */
    M_STATS,        /* w->c: totals */
    M_TIMES,        /* w->c: (index, time) pairs for TIMES_JOIN or TIMES_CFG */
    M_TIMES_END,    /* w->c: end of a times list */
    M_QUIT          /* c->w */
};
enum { TIMES_JOIN = 0, TIMES_CFG = 1 };

typedef struct msg_hdr {
    int type;
    int arg;
    uint32_t count;
} msg_hdr;

typedef struct time_entry {
    uint32_t index;
    double t;
} time_entry;

typedef struct msg {
    msg_hdr h;
    union {
        totals tot;
        time_entry times[TIMES_PER_MSG];
    } u;
} msg;

static void send_msg(int fd, int type, int arg, const void *payload, size_t len, uint32_t count)
{
    static msg m;
    m.h.type = type;
    m.h.arg = arg;
    m.h.count = count;
    if (len > 0)
        memcpy(&m.u, payload, len);
    ssize_t w;
    do
        w = send(fd, &m, sizeof m.h + len, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        die_errno("send to peer process");
}

/* Times of own instances that have one, in messages of TIMES_PER_MSG, then M_TIMES_END. */
static void send_times(bench *b, int fd, int kind, const double *at)
{
    static time_entry buf[TIMES_PER_MSG];
    uint32_t n = 0;
    for (uint32_t i = 1; i <= b->n; i++) {
        if (!mine(b, i) || at[i] < 0)
            continue;
        buf[n++] = (time_entry){i, at[i]};
        if (n == TIMES_PER_MSG) {
            send_msg(fd, M_TIMES, kind, buf, n * sizeof *buf, n);
            n = 0;
        }
    }
    if (n > 0)
        send_msg(fd, M_TIMES, kind, buf, n * sizeof *buf, n);
    send_msg(fd, M_TIMES_END, kind, NULL, 0, 0);
}

static void send_totals(bench *b, int fd, int type)
{
    totals t = part_totals(b);
    send_msg(fd, type, 0, &t, sizeof t, 0);
}

/* ---- worker process ------------------------------------------------------------------ */

typedef struct worker_state {
    bench *b;
    int fd;
    bool join_pending, quit;
} worker_state;

static void worker_cmd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker_state *w = arg;
    bench *b = w->b;
    static msg m;
    for (;;) {
        ssize_t got = recv(fd, &m, sizeof m, MSG_DONTWAIT);
        if (got == 0) { /* the coordinator went away */
            w->quit = true;
            return;
        }
        if (got < 0)
            return;
        switch (m.h.type) {
        case M_START:
            part_syncs(b);
            send_totals(b, fd, M_CREATED);
            w->join_pending = true;
            break;
        case M_ROUND:
            part_round_begin(b, (unsigned)m.h.arg);
            send_msg(fd, M_ACK, m.h.arg, NULL, 0, 0);
            break;
        case M_ROUND_END:
            send_times(b, fd, TIMES_CFG, b->cfg_at);
            b->round = 0;
            break;
        case M_STATS_REQ:
            send_totals(b, fd, M_STATS);
            break;
        case M_QUIT:
        default:
            w->quit = true;
            return;
        }
    }
}

static void worker_main(bench *b, int fd)
{
    b->base = event_base_new();
    if (b->base == NULL)
        die_on(KRAKEN_ENOMEM, "event_base_new");
    b->tick = event_new(b->base, -1, EV_PERSIST, tick_cb, NULL);
    b->echo_ev = event_new(b->base, -1, 0, echo_cb, b);
    struct timeval tv = {0, 1000};
    event_add(b->tick, &tv);
    worker_state w = {b, fd, false, false};
    struct event *cmd = event_new(b->base, fd, EV_READ | EV_PERSIST, worker_cmd_cb, &w);
    event_add(cmd, NULL);
    part_engines(b);
    double next_scan = 0;
    while (!w.quit) {
        event_base_loop(b->base, EVLOOP_ONCE);
        double t = bench_now_s();
        if (w.join_pending && t >= next_scan) {
            next_scan = t + SCAN_EVERY_S;
            if (part_joined(b)) {
                w.join_pending = false;
                send_msg(fd, M_JOINED, 0, NULL, 0, 0);
                send_times(b, fd, TIMES_JOIN, b->joined_at);
            }
        }
    }
    event_free(cmd);
    free_instances(b);
    event_free(b->tick);
    event_free(b->echo_ev);
    event_base_free(b->base);
}

/* ---- coordinator side of the workers ------------------------------------------------ */

typedef struct worker {
    pid_t pid;
    int fd;
    struct event *ev;
    bool created, joined, acked, times_done, stats_ready;
    totals stats;
} worker;

typedef struct coord {
    bench *b;
    int n_workers;
    worker w[MAX_WORKERS];
    double *times_into[2]; /* where M_TIMES of each kind go */
    bool local_joined;
} coord;

static coord co; /* one run per process */

static void coord_msg_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    static msg m;
    for (;;) {
        ssize_t got = recv(fd, &m, sizeof m, MSG_DONTWAIT);
        if (got == 0) {
            fprintf(stderr, "bench_sync: worker %d exited early\n", (int)w->pid);
            exit(1);
        }
        if (got < 0)
            return;
        switch (m.h.type) {
        case M_CREATED:
            w->stats = m.u.tot;
            w->created = true;
            break;
        case M_JOINED:
            break; /* complete once its times are in */
        case M_ACK:
            w->acked = true;
            break;
        case M_STATS:
            w->stats = m.u.tot;
            w->stats_ready = true;
            break;
        case M_TIMES:
            for (uint32_t k = 0; k < m.h.count; k++)
                if (m.u.times[k].index <= co.b->n)
                    co.times_into[m.h.arg][m.u.times[k].index] = m.u.times[k].t;
            break;
        case M_TIMES_END:
            if (m.h.arg == TIMES_JOIN)
                w->joined = true;
            else
                w->times_done = true;
            break;
        default:
            break;
        }
    }
}

static void spawn_workers(bench *b, int n_workers)
{
    co.b = b;
    co.n_workers = n_workers;
    for (int k = 0; k < n_workers; k++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
            die_errno("socketpair");
        int big = 4 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0)
            die_errno("fork");
        if (pid == 0) {
            close(sv[0]);
            for (int j = 0; j < k; j++)
                close(co.w[j].fd);
            b->me = (uint16_t)(k + 1);
            worker_main(b, sv[1]);
            _exit(0);
        }
        close(sv[1]);
        co.w[k].pid = pid;
        co.w[k].fd = sv[0];
    }
}

/* After the coordinator's base exists. */
static void watch_workers(bench *b)
{
    for (int k = 0; k < co.n_workers; k++) {
        co.w[k].ev = event_new(b->base, co.w[k].fd, EV_READ | EV_PERSIST, coord_msg_cb, &co.w[k]);
        event_add(co.w[k].ev, NULL);
    }
}

static void broadcast(int type, int arg)
{
    for (int k = 0; k < co.n_workers; k++)
        send_msg(co.w[k].fd, type, arg, NULL, 0, 0);
}

static bool workers_acked(bench *b)
{
    (void)b;
    for (int k = 0; k < co.n_workers; k++)
        if (!co.w[k].acked)
            return false;
    return true;
}

static bool workers_times_done(bench *b)
{
    (void)b;
    for (int k = 0; k < co.n_workers; k++)
        if (!co.w[k].times_done)
            return false;
    return true;
}

static bool workers_stats_ready(bench *b)
{
    (void)b;
    for (int k = 0; k < co.n_workers; k++)
        if (!co.w[k].stats_ready)
            return false;
    return true;
}

static bool workers_created(bench *b)
{
    (void)b;
    for (int k = 0; k < co.n_workers; k++)
        if (!co.w[k].created)
            return false;
    return true;
}

/* Totals over every process of the run. */
static totals all_totals(bench *b)
{
    for (int k = 0; k < co.n_workers; k++)
        co.w[k].stats_ready = false;
    broadcast(M_STATS_REQ, 0);
    if (!run_until(b, workers_stats_ready, bench_now_s() + REPLY_TIMEOUT_S)) {
        fprintf(stderr, "bench_sync: workers did not answer a stats request\n");
        exit(1);
    }
    totals t = part_totals(b);
    for (int k = 0; k < co.n_workers; k++)
        add_totals(&t, &co.w[k].stats);
    return t;
}

static void stop_workers(void)
{
    broadcast(M_QUIT, 0);
    for (int k = 0; k < co.n_workers; k++) {
        int status;
        double deadline = bench_now_s() + REPLY_TIMEOUT_S;
        while (waitpid(co.w[k].pid, &status, WNOHANG) == 0) {
            if (bench_now_s() > deadline) {
                kill(co.w[k].pid, SIGKILL);
                waitpid(co.w[k].pid, &status, 0);
                break;
            }
            usleep(10000);
        }
        if (co.w[k].ev != NULL)
            event_free(co.w[k].ev);
        close(co.w[k].fd);
    }
}

/* ---- phases (coordinator) ---------------------------------------------------------- */

/* Quantile of the entries of @p v[1..n] that are >= 0, relative to @p t0. */
static double quantile_since(const double *v, size_t n, double t0, double q)
{
    double *tmp = malloc((n + 1) * sizeof *tmp);
    size_t m = 0;
    if (tmp == NULL)
        return -1;
    for (size_t i = 1; i <= n; i++)
        if (v[i] >= 0)
            tmp[m++] = v[i] - t0;
    double r = -1;
    if (m > 0) {
        qsort(tmp, m, sizeof *tmp, bench_cmp_double);
        r = tmp[(size_t)(q * (double)(m - 1) + 0.5)];
    }
    free(tmp);
    return r;
}

static double max_since(const double *v, size_t n, double t0, size_t *count)
{
    double m = -1;
    *count = 0;
    for (size_t i = 1; i <= n; i++) {
        if (v[i] < 0)
            continue;
        (*count)++;
        if (v[i] - t0 > m)
            m = v[i] - t0;
    }
    return m;
}

static uint64_t lost_between(const totals *a, const totals *z)
{
    uint64_t sent = z->all.datagrams_sent - a->all.datagrams_sent;
    uint64_t got = z->all.datagrams_received - a->all.datagrams_received;
    return sent > got ? sent - got : 0;
}

static bool everyone_joined(bench *b)
{
    if (!co.local_joined)
        co.local_joined = part_joined(b);
    if (!co.local_joined || !inst_complete(&b->v[0]))
        return false;
    for (int k = 0; k < co.n_workers; k++)
        if (!co.w[k].joined)
            return false;
    return true;
}

static void phase_join(bench *b)
{
    result *r = b->res;
    co.times_into[TIMES_JOIN] = b->joined_at;
    totals before = all_totals(b);
    double root_cpu0 = part_totals(b).cpu_s;
    kstats k0 = read_kstats();
    double t0 = bench_now_s();
    broadcast(M_START, 0);
    part_syncs(b);
    if (!run_until(b, workers_created, t0 + REPLY_TIMEOUT_S)) {
        fail(b, "workers did not create their syncs");
        return;
    }
    r->create_s = bench_now_s() - t0; /* workers create theirs in parallel */
    totals created = part_totals(b);
    for (int k = 0; k < co.n_workers; k++)
        add_totals(&created, &co.w[k].stats);
    r->rss_create_kib = created.rss_kib / (double)b->n;
    r->heap_create_b = created.heap_b / (double)b->n;
    r->rss_engine_kib = created.eng_rss_kib / (double)b->n;
    r->heap_engine_b = created.eng_heap_b / (double)b->n;
    r->create_proc_s = created.create_s;
    fprintf(stderr, "  %zu child syncs created in %.2f s\n", b->n, r->create_s);

    double deadline = t0 + b->opt->join_timeout_s, next_report = bench_now_s() + 2;
    bool done = false;
    co.local_joined = false;
    while (!done && bench_now_s() < deadline) {
        done = run_until(b, everyone_joined, next_report < deadline ? next_report : deadline);
        if (!done) {
            size_t so_far = 0;
            (void)max_since(b->joined_at, b->n, t0, &so_far);
            fprintf(stderr, "  %.1f s: root sees %zu/%u children, %zu/%zu joined\n",
                    bench_now_s() - t0, kraken_sync_children(b->v[0].sync), b->v[0].n_kids,
                    so_far, b->n);
            next_report = bench_now_s() + 2;
        }
    }
    r->join_s = bench_now_s() - t0;
    r->join_p50_s = quantile_since(b->joined_at, b->n, t0, 0.5);
    r->join_p99_s = quantile_since(b->joined_at, b->n, t0, 0.99);
    size_t joined = 0;
    (void)max_since(b->joined_at, b->n, t0, &joined);
    r->joined = joined;
    if (!done) {
        fail(b, "cold join: not complete after %.0f s (%zu children reported joined, root sees "
                "%zu/%u)",
             b->opt->join_timeout_s, joined, kraken_sync_children(b->v[0].sync),
             b->v[0].n_kids);
        r->joined = joined < b->n ? joined : b->n - 1;
    } else {
        r->joined = b->n;
        fprintf(stderr, "  all joined in %.2f s\n", r->join_s);
    }
    r->join_root_cpu_s = part_totals(b).cpu_s - root_cpu0;
    kstats k1 = read_kstats();
    r->join_listen_overflows = k1.listen_overflows - k0.listen_overflows;
    r->join_rcvbuf_errors = k1.udp_rcvbuf_errors - k0.udp_rcvbuf_errors;
    r->join_backlog_drops = k1.backlog_drops - k0.backlog_drops;
    totals after_join = all_totals(b);
    r->join_cpu_s = after_join.cpu_s - before.cpu_s;
    run_for(b, SETTLE_AFTER_JOIN_S);
    totals after = all_totals(b);
    r->join_lost = lost_between(&before, &after);
    r->rss_join_kib = after.rss_kib / (double)b->n;
    r->rss_total_mib = after.rss_abs_kib / 1024.0;
    r->heap_join_b = after.heap_b / (double)b->n;
    r->tuned_sockets = after.tuned;
}

static bool round_done(bench *b) { return b->echo_count == b->n; }

static void phase_round(bench *b, int k)
{
    result *r = b->res;
    kraken_store *st = kraken_engine_store(b->v[0].engine);
    unsigned round = (unsigned)k + 1;
    for (size_t i = 0; i <= b->n; i++)
        b->echo_at[i] = -1;
    b->echo_count = 0;
    totals before = all_totals(b);
    kstats k0 = read_kstats();
    for (int w = 0; w < co.n_workers; w++)
        co.w[w].acked = co.w[w].times_done = false;
    broadcast(M_ROUND, (int)round);
    part_round_begin(b, round);
    if (!run_until(b, workers_acked, bench_now_s() + REPLY_TIMEOUT_S)) {
        fail(b, "workers did not acknowledge round %u", round);
        return;
    }
    char text[48];
    double t0 = bench_now_s();
    for (uint32_t i = 1; i <= b->n; i++) {
        round_text(text, sizeof text, round, i);
        die_on(kraken_store_set_text(st, KRAKEN_CFG, &b->v[i].id, "/Nodename", text),
               "round: set Cfg /Nodename");
    }
    r->rt_batch_ms[k] = (bench_now_s() - t0) * 1e3;
    bool done = run_until(b, round_done, t0 + RT_TIMEOUT_S);
    /* every echo needs its Cfg first: now collect the Cfg arrival times */
    co.times_into[TIMES_CFG] = b->cfg_at;
    broadcast(M_ROUND_END, (int)round);
    if (!run_until(b, workers_times_done, bench_now_s() + REPLY_TIMEOUT_S))
        fail(b, "workers did not send their Cfg arrival times");
    size_t n_cfg = 0, n_echo = 0;
    r->rt_cfg_ms[k] = max_since(b->cfg_at, b->n, t0, &n_cfg) * 1e3;
    r->rt_echo_ms[k] = max_since(b->echo_at, b->n, t0, &n_echo) * 1e3;
    r->rt_cfg_count[k] = n_cfg;
    r->rt_echo_count[k] = n_echo;
    r->rt_cfg_p50_ms[k] = quantile_since(b->cfg_at, b->n, t0, 0.5) * 1e3;
    r->rt_echo_p50_ms[k] = quantile_since(b->echo_at, b->n, t0, 0.5) * 1e3;
    run_for(b, SETTLE_BETWEEN_ROUNDS_S);
    b->round = 0;
    totals after = all_totals(b);
    r->rt_lost[k] = lost_between(&before, &after);
    r->rt_full[k] = after.all.full_resends - before.all.full_resends;
    kstats k1 = read_kstats();
    r->rt_rcvbuf_errors[k] = k1.udp_rcvbuf_errors - k0.udp_rcvbuf_errors;
    r->rt_backlog_drops[k] = k1.backlog_drops - k0.backlog_drops;
    r->rounds = k + 1;
    if (!done)
        fail(b, "round trip %d: %zu/%zu Cfg, %zu/%zu echoes after %.0f s", k + 1, n_cfg, b->n,
             n_echo, b->n, RT_TIMEOUT_S);
    else
        fprintf(stderr, "  round %d: batch %.1f ms, last Cfg %.1f ms, last echo %.1f ms, "
                        "%llu datagrams dropped by receive buffers\n",
                k + 1, r->rt_batch_ms[k], r->rt_cfg_ms[k], r->rt_echo_ms[k],
                (unsigned long long)r->rt_rcvbuf_errors[k]);
}

static void phase_idle(bench *b)
{
    result *r = b->res;
    run_for(b, SETTLE_BEFORE_IDLE_S);
    totals a = all_totals(b);
    kstats k0 = read_kstats();
    double t0 = bench_now_s();
    run_for(b, b->opt->window_s);
    totals z = all_totals(b);
    kstats k1 = read_kstats();
    r->idle_rcvbuf_errors = k1.udp_rcvbuf_errors - k0.udp_rcvbuf_errors;
    r->idle_backlog_drops = k1.backlog_drops - k0.backlog_drops;
    double w = bench_now_s() - t0;
    r->idle_s = w;
    size_t root_kids = b->v[0].n_kids;
    size_t leaves = r->n_leaves ? r->n_leaves : b->n;
    r->idle_down = (double)(z.root.bytes_sent - a.root.bytes_sent) / w / (double)root_kids;
    r->idle_up = (double)(z.leaves.bytes_sent - a.leaves.bytes_sent) / w / (double)leaves;
    r->idle_link = (double)(z.all.bytes_sent - a.all.bytes_sent) / w / (2.0 * (double)b->n);
    r->idle_dgrams_down =
        (double)(z.root.datagrams_sent - a.root.datagrams_sent) / w / (double)root_kids;
    r->idle_dgrams_up =
        (double)(z.leaves.datagrams_sent - a.leaves.datagrams_sent) / w / (double)leaves;
    r->idle_full = z.all.full_resends - a.all.full_resends;
    r->idle_tcp = z.all.tcp_messages_sent - a.all.tcp_messages_sent;
    r->idle_lost = lost_between(&a, &z);
    fprintf(stderr, "  idle %.1f s: down %.2f B/s, up %.2f B/s per child\n", w, r->idle_down,
            r->idle_up);
}

/* ---- one run ------------------------------------------------------------------------ */

static int workers_needed(const options *opt, size_t n)
{
    if (opt->procs >= 0)
        return opt->procs;
    rlim_t single = (rlim_t)(FDS_PER_CHILD * n + FDS_SPARE);
    if (single <= opt->fd_limit)
        return 0;
    size_t per = (size_t)((opt->fd_limit - FDS_SPARE) / FDS_PER_CHILD);
    int w = (int)((n + per - 1) / per);
    return w < MAX_WORKERS ? w : MAX_WORKERS;
}

static void run_case(const options *opt, topo t, size_t n, const char *secret, result *r)
{
    memset(r, 0, sizeof *r);
    r->ok = true;
    r->topology = t;
    r->n = n;
    r->procs = workers_needed(opt, n);
    bench_read_loadavg(r->load_before, sizeof r->load_before);
    bench bb, *b = &bb;
    memset(b, 0, sizeof *b);
    memset(&co, 0, sizeof co);
    b->opt = opt;
    b->res = r;
    b->secret = secret;
    b->n = n;
    b->v = calloc(n + 1, sizeof *b->v);
    b->cfg_at = malloc((n + 1) * sizeof *b->cfg_at);
    b->echo_at = malloc((n + 1) * sizeof *b->echo_at);
    b->joined_at = malloc((n + 1) * sizeof *b->joined_at);
    b->echo_queue = malloc((n + 1) * sizeof *b->echo_queue);
    b->not_joined = malloc((n + 1) * sizeof *b->not_joined);
    if (!b->v || !b->cfg_at || !b->echo_at || !b->joined_at || !b->echo_queue || !b->not_joined)
        die_on(KRAKEN_ENOMEM, "bench arrays");
    for (size_t i = 0; i <= n; i++)
        b->cfg_at[i] = b->echo_at[i] = b->joined_at[i] = -1;
    plan_tree(b, t, r->procs);
    if (r->procs > 0)
        fprintf(stderr, "  children spread over %d worker processes (fd limit %llu)\n", r->procs,
                (unsigned long long)opt->fd_limit);
    /* Workers first: they must not inherit the coordinator's event base or sockets. */
    spawn_workers(b, r->procs);

    b->me = 0;
    b->base = event_base_new();
    if (b->base == NULL)
        die_on(KRAKEN_ENOMEM, "event_base_new");
    b->tick = event_new(b->base, -1, EV_PERSIST, tick_cb, NULL);
    b->echo_ev = event_new(b->base, -1, 0, echo_cb, b);
    struct timeval tv = {0, 1000}; /* the loop never blocks longer than 1 ms */
    event_add(b->tick, &tv);
    watch_workers(b);

    inst *root = &b->v[0];
    long root_rss0 = bench_rss_kib();
    size_t root_heap0 = bench_heap_bytes();
    new_engine(b, root);
    fill_root_cfg(b);
    new_sync(b, root);
    double t0 = bench_now_s();
    part_engines(b); /* baseline: after the root, before the children */
    if (r->procs == 0)
        fprintf(stderr, "  %zu child engines created in %.2f s\n", n, bench_now_s() - t0);

    phase_join(b);
    r->root_rss_kib = (double)(bench_rss_kib() - root_rss0);
    r->root_heap_kib = ((double)bench_heap_bytes() - (double)root_heap0) / 1024.0;
    if (r->ok) {
        for (int k = 0; k < opt->rounds && r->ok; k++)
            phase_round(b, k);
        if (r->ok)
            phase_idle(b);
    }
    totals z = all_totals(b);
    r->joins_accepted = z.all.joins_accepted;
    r->joins_refused = z.all.joins_refused;
    r->peers_lost = z.all.peers_lost;
    r->full_resends = z.all.full_resends;
    r->dropped_mac = z.all.dropped_bad_mac;
    r->dropped_unknown = z.all.dropped_unknown_sender;
    r->dropped_replay = z.all.dropped_replay;
    r->dropped_auth = z.all.dropped_not_authorized;
    r->dropped_malformed = z.all.dropped_malformed;
    r->dropped_old = z.all.dropped_old;
    r->apply_failed = z.all.apply_failed;
    r->accept_errors = z.all.accept_errors;
    if (b->echo_errors)
        fail(b, "%llu echo discoveries failed", (unsigned long long)b->echo_errors);

    bench_read_loadavg(r->load_after, sizeof r->load_after);
    stop_workers();
    free_instances(b);
    event_free(b->tick);
    event_free(b->echo_ev);
    event_base_free(b->base);
    free(b->v);
    free(b->cfg_at);
    free(b->echo_at);
    free(b->joined_at);
    free(b->echo_queue);
    free(b->not_joined);
}

/* Fork, run, read the result back: every run starts with fresh fds and a fresh heap. */
static bool run_forked(const options *opt, topo t, size_t n, const char *secret, result *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        die_errno("pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        close(fds[0]);
        static result r;
        run_case(opt, t, n, secret, &r);
        ssize_t w = write(fds[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = 0;
    while (got < (ssize_t)sizeof *out) {
        ssize_t k = read(fds[0], (char *)out + got, sizeof *out - (size_t)got);
        if (k <= 0)
            break;
        got += k;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof *out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        memset(out, 0, sizeof *out);
        out->topology = t;
        out->n = n;
        snprintf(out->failure, sizeof out->failure, "run process failed (status 0x%x)", status);
        return false;
    }
    return true;
}

/* ---- setup ---------------------------------------------------------------------------- */

/* Raise RLIMIT_NOFILE for one process holding @p max_n children; returns the limit in effect. */
static rlim_t raise_nofile(size_t max_n, bool must)
{
    rlim_t need = (rlim_t)(FDS_PER_CHILD * max_n + FDS_SPARE);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die_errno("getrlimit(RLIMIT_NOFILE)");
    if (rl.rlim_cur >= need)
        return rl.rlim_cur;
    struct rlimit want = {need, rl.rlim_max >= need ? rl.rlim_max : need};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
        fprintf(stderr, "# RLIMIT_NOFILE raised from %llu/%llu to %llu/%llu\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                (unsigned long long)want.rlim_cur, (unsigned long long)want.rlim_max);
        return want.rlim_cur;
    }
    int err = errno;
    fprintf(stderr,
            "bench_sync: cannot raise RLIMIT_NOFILE to %llu (soft %llu, hard %llu): %s.\n"
            "  One process with %zu children needs about %d file descriptors per child.\n"
            "  Raising the hard limit needs CAP_SYS_RESOURCE (root alone is not enough in a "
            "container that drops it);\n  or run `ulimit -Hn %llu` before, and check "
            "/proc/sys/fs/nr_open.\n",
            (unsigned long long)need, (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max, strerror(err), max_n, FDS_PER_CHILD,
            (unsigned long long)need);
    if (must)
        exit(1);
    /* Take what the hard limit allows; larger runs spread their children over workers. */
    struct rlimit most = {rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &most) == 0)
        rl.rlim_cur = rl.rlim_max;
    fprintf(stderr, "  continuing with %llu descriptors: larger runs put the root in one "
                    "process and the children in worker processes (see --procs)\n",
            (unsigned long long)rl.rlim_cur);
    return rl.rlim_cur;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--topo flat|two|both] [--window S] [--rounds R] [--port P] "
            "[--join-timeout S] [--procs W] [--intermediates K] [--log LEVEL] [--sequential-ids] "
            "[--tune-parents BYTES] [N ...]\n"
            "  (N child instances per run, default 1000 10000)\n",
            prog);
    exit(2);
}

static double parse_num(const char *prog, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = s != NULL ? strtod(s, &end) : NAN;
    if (s == NULL || errno || *end || !(v >= lo && v <= hi))
        usage(prog);
    return v;
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->run_topo[TOPO_FLAT] = o->run_topo[TOPO_TWO] = true;
    o->window_s = 30;
    o->rounds = 3;
    o->port = KRAKEN_SYNC_DEFAULT_PORT;
    o->join_timeout_s = 120;
    o->procs = -1;
    o->log_level = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--topo") == 0 && val != NULL) {
            o->run_topo[TOPO_FLAT] = strcmp(val, "flat") == 0 || strcmp(val, "both") == 0;
            o->run_topo[TOPO_TWO] = strcmp(val, "two") == 0 || strcmp(val, "both") == 0;
            if (!o->run_topo[0] && !o->run_topo[1])
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--window") == 0) {
            o->window_s = parse_num(argv[0], val, 1, 3600);
            i++;
        } else if (strcmp(a, "--rounds") == 0) {
            o->rounds = (int)parse_num(argv[0], val, 1, MAX_ROUNDS);
            i++;
        } else if (strcmp(a, "--port") == 0) {
            o->port = (unsigned)parse_num(argv[0], val, 1, 65535);
            i++;
        } else if (strcmp(a, "--join-timeout") == 0) {
            o->join_timeout_s = parse_num(argv[0], val, 1, 3600);
            i++;
        } else if (strcmp(a, "--procs") == 0) {
            o->procs = (int)parse_num(argv[0], val, 0, MAX_WORKERS);
            i++;
        } else if (strcmp(a, "--log") == 0) {
            o->log_level = (int)parse_num(argv[0], val, 0, 9);
            i++;
        } else if (strcmp(a, "--intermediates") == 0) {
            o->intermediates = (size_t)parse_num(argv[0], val, 1, 10000);
            i++;
        } else if (strcmp(a, "--sequential-ids") == 0) {
            sequential_ids = true;
        } else if (strcmp(a, "--tune-parents") == 0) {
            o->tune_rcvbuf = (long)parse_num(argv[0], val, 1, 1 << 30);
            i++;
        } else if (a[0] != '-' && o->n_sizes < MAX_SIZES) {
            o->sizes[o->n_sizes++] = (size_t)parse_num(argv[0], a, 1, 250000);
        } else {
            usage(argv[0]);
        }
    }
    if (o->n_sizes == 0) {
        o->sizes[o->n_sizes++] = 1000;
        o->sizes[o->n_sizes++] = 10000;
    }
}

/* ---- report ------------------------------------------------------------------------------- */

static double median_of(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    if (n <= 0)
        return -1;
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, bench_cmp_double);
    return tmp[n / 2];
}

static double max_of(const double *v, int n)
{
    double m = -1;
    for (int i = 0; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}

static const char *verdict(bool applies, bool ok) { return !applies ? "-" : ok ? "ok" : "MISSED"; }

static void print_summary(const result *rs, size_t n_rs)
{
    printf("\n%-9s %6s %4s %5s | %7s %7s %6s | %8s %8s %8s | %7s %7s %7s | %7s %7s\n",
           "topology", "N", "proc", "mid", "create", "join", "join", "rt Cfg", "rt echo",
           "rt echo", "idle dn", "idle up", "link", "RSS", "heap");
    printf("%-9s %6s %4s %5s | %7s %7s %6s | %8s %8s %8s | %7s %7s %7s | %7s %7s\n", "", "", "",
           "", "s", "s", "p50 s", "max ms", "med ms", "max ms", "B/s", "B/s", "B/s", "KiB/ch",
           "KiB/ch");
    for (size_t i = 0; i < n_rs; i++) {
        const result *r = &rs[i];
        int k = r->rounds;
        printf("%-9s %6zu %4d %5zu | %7.2f %7.2f %6.2f | %8.1f %8.1f %8.1f | %7.2f %7.2f %7.2f "
               "| %7.1f %7.1f%s%s\n",
               topo_names[r->topology], r->n, r->procs + 1, r->n_mid, r->create_s, r->join_s,
               r->join_p50_s, max_of(r->rt_cfg_ms, k), median_of(r->rt_echo_ms, k),
               max_of(r->rt_echo_ms, k), r->idle_down, r->idle_up, r->idle_link, r->rss_join_kib,
               r->heap_join_b / 1024.0, r->ok ? "" : "  FAILED: ", r->ok ? "" : r->failure);
    }

    printf("\n# targets (10,000 children): cold join <= 10 s, round trip <= 1 s, idle <= 10 B/s "
           "per child per direction\n");
    printf("%-9s %6s | %-12s %-6s | %-14s %-6s | %-16s %-6s\n", "topology", "N", "cold join",
           "", "round trip max", "", "idle dn/up B/s", "");
    for (size_t i = 0; i < n_rs; i++) {
        const result *r = &rs[i];
        bool big = r->n >= 10000;
        char a[32], c[32], d[32];
        double rt = max_of(r->rt_echo_ms, r->rounds);
        snprintf(a, sizeof a, "%.2f s", r->join_s);
        snprintf(c, sizeof c, "%.0f ms", rt);
        snprintf(d, sizeof d, "%.2f / %.2f", r->idle_down, r->idle_up);
        bool idle_ok = r->idle_down <= 10 && r->idle_up <= 10;
        /* a window shorter than one hello period says nothing */
        bool idle_valid = r->idle_s >= HELLO_PERIOD_S;
        printf("%-9s %6zu | %-12s %-6s | %-14s %-6s | %-16s %-6s\n", topo_names[r->topology],
               r->n, a, verdict(big, r->joined == r->n && r->join_s <= 10), c,
               verdict(big, r->rounds > 0 && rt >= 0 && rt <= 1000), d,
               verdict(idle_valid, idle_ok));
    }
}

static void print_details(const options *o, const result *rs, size_t n_rs)
{
    printf("\n# details per run\n");
    for (size_t i = 0; i < n_rs; i++) {
        const result *r = &rs[i];
        printf("%s N=%zu (%zu intermediates, %zu leaves; %s):\n", topo_names[r->topology], r->n,
               r->n_mid, r->n_leaves ? r->n_leaves : r->n,
               r->procs == 0 ? "one process" : "root process + workers");
        if (r->procs > 0)
            printf("  processes: root + %d workers holding the children\n", r->procs);
        printf("  loadavg before: %s; after: %s\n", r->load_before, r->load_after);
        printf("  join: %zu/%zu joined in %.2f s (p50 %.2f s, p99 %.2f s; cpu %.2f s over all "
               "processes, %.2f s in the %s); creating the child syncs took %.2f s (slowest "
               "process %.2f s); %llu datagrams sent but not (yet) received\n",
               r->joined, r->n, r->join_s, r->join_p50_s, r->join_p99_s, r->join_cpu_s,
               r->join_root_cpu_s, r->procs > 0 ? "root process" : "one process",
               r->create_s, r->create_proc_s, (unsigned long long)r->join_lost);
        printf("  kernel during the join: %llu listen queue overflows (SYNs dropped), %llu UDP "
               "receive buffer drops, %llu input backlog drops\n",
               (unsigned long long)r->join_listen_overflows,
               (unsigned long long)r->join_rcvbuf_errors,
               (unsigned long long)r->join_backlog_drops);
        for (int k = 0; k < r->rounds; k++)
            printf("  round %d: batch %.1f ms; Cfg at %zu/%zu children: p50 %.1f ms, last "
                   "%.1f ms; echo at root %zu/%zu: p50 %.1f ms, last %.1f ms; %llu snapshots; "
                   "datagrams: %llu dropped by receive buffers, %llu by the input backlog, "
                   "%llu sent but not (yet) received\n",
                   k + 1, r->rt_batch_ms[k], r->rt_cfg_count[k], r->n, r->rt_cfg_p50_ms[k],
                   r->rt_cfg_ms[k], r->rt_echo_count[k], r->n, r->rt_echo_p50_ms[k],
                   r->rt_echo_ms[k], (unsigned long long)r->rt_full[k],
                   (unsigned long long)r->rt_rcvbuf_errors[k],
                   (unsigned long long)r->rt_backlog_drops[k], (unsigned long long)r->rt_lost[k]);
        if (r->idle_s > 0)
            printf("  idle %.1f s: down %.2f B/s (%.3f datagrams/s), up %.2f B/s (%.3f "
                   "datagrams/s), all links %.2f B/s per child per direction; %llu snapshots, "
                   "%llu TCP messages; datagrams: %llu dropped by receive buffers, %llu by the "
                   "input backlog, %llu sent but not (yet) received\n",
                   r->idle_s, r->idle_down, r->idle_dgrams_down, r->idle_up, r->idle_dgrams_up,
                   r->idle_link, (unsigned long long)r->idle_full,
                   (unsigned long long)r->idle_tcp, (unsigned long long)r->idle_rcvbuf_errors,
                   (unsigned long long)r->idle_backlog_drops, (unsigned long long)r->idle_lost);
        printf("  memory per child: %.1f KiB RSS, %.1f KiB heap after the join; created, no "
               "traffic yet: %.1f KiB RSS, %.1f KiB heap, of which the engine (+ store, echo "
               "service) alone %.1f KiB RSS, %.1f KiB heap; RSS of all processes %.0f MiB\n",
               r->rss_join_kib, r->heap_join_b / 1024.0, r->rss_create_kib,
               r->heap_create_b / 1024.0, r->rss_engine_kib, r->heap_engine_b / 1024.0,
               r->rss_total_mib);
        if (r->procs > 0)
            printf("  root process after the join: %.1f MiB RSS, %.1f MiB heap for %zu nodes "
                   "(%.0f B RSS, %.0f B heap per node: the root's store, engine and sync "
                   "tables)\n",
                   r->root_rss_kib / 1024.0, r->root_heap_kib / 1024.0, r->n,
                   r->root_rss_kib * 1024.0 / (double)r->n,
                   r->root_heap_kib * 1024.0 / (double)r->n);
        printf("  totals: joins accepted %llu, refused %llu, peers lost %llu, snapshots %llu; "
               "dropped: bad mac %llu, unknown sender %llu, replay %llu, not authorized %llu, "
               "malformed %llu, older than applied %llu; store refused %llu; accept errors %llu\n",
               (unsigned long long)r->joins_accepted, (unsigned long long)r->joins_refused,
               (unsigned long long)r->peers_lost, (unsigned long long)r->full_resends,
               (unsigned long long)r->dropped_mac, (unsigned long long)r->dropped_unknown,
               (unsigned long long)r->dropped_replay, (unsigned long long)r->dropped_auth,
               (unsigned long long)r->dropped_malformed, (unsigned long long)r->dropped_old,
               (unsigned long long)r->apply_failed, (unsigned long long)r->accept_errors);
        if (o->tune_rcvbuf > 0)
            printf("  --tune-parents: %d parent sockets changed\n", r->tuned_sockets);
        if (!r->ok)
            printf("  FAILED: %s\n", r->failure);
    }
    printf("\n# settings: hello 10 s, dead 40 s, damping 5 ms, rejoin 250 ms..30 s (defaults); "
           "port %u; secret mode; idle window %.0f s after %.0f s settle; %d round(s)%s\n",
           o->port, o->window_s, SETTLE_BEFORE_IDLE_S, o->rounds,
           o->tune_rcvbuf > 0 ? "; EXPERIMENT --tune-parents (not the library's defaults)" : "");
    printf("# node ids: %s\n", sequential_ids ? "sequential (differ only in the last bytes)"
                                              : "random-looking version-4 UUIDs");
    if (o->tune_rcvbuf > 0)
        printf("# --tune-parents %ld: parents' UDP SO_RCVBUF forced to %ld bytes and TCP "
               "listen backlog set to 4096\n",
               o->tune_rcvbuf, o->tune_rcvbuf);
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    size_t max_n = 0;
    for (size_t i = 0; i < o.n_sizes; i++)
        if (o.sizes[i] > max_n)
            max_n = o.sizes[i];
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    bench_print_machine("bench_sync", event_get_version());
    o.fd_limit = raise_nofile(max_n, o.procs == 0);

    char dir[] = "/tmp/kraken-syncbench-XXXXXX";
    if (mkdtemp(dir) == NULL)
        die_errno("mkdtemp");
    char secret[64];
    snprintf(secret, sizeof secret, "%s/secret", dir);
    die_on(kraken_sync_write_secret(secret), "kraken_sync_write_secret");

    static result rs[2 * MAX_SIZES];
    size_t n_rs = 0;
    bool all_ok = true;
    for (size_t s = 0; s < o.n_sizes; s++) {
        for (int t = 0; t < 2; t++) {
            if (!o.run_topo[t])
                continue;
            size_t n = o.sizes[s];
            fprintf(stderr, "# %s, %zu children\n", topo_names[t], n);
            result *r = &rs[n_rs++];
            bool ok = run_forked(&o, (topo)t, n, secret, r);
            all_ok = all_ok && ok && r->ok;
            if (!ok)
                r->ok = false;
        }
    }
    print_summary(rs, n_rs);
    print_details(&o, rs, n_rs);
    unlink(secret);
    rmdir(dir);
    return all_ok ? 0 : 1;
}
