/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_websocket: the websocket event stream under load (issue 10 target:
 * 100 subscribers receive 10,000 events/s, none lost for a reader that keeps up).
 *
 *   bench_websocket [CLIENTS [RATE [SECONDS]]]      (defaults 100 10000 5)
 *
 * The parent process runs an engine with the websocket module
 * (daemon/websocket.c) on a loopback port and, once every client is
 * subscribed, changes one node's Dsc /Nodename RATE times a second for
 * SECONDS (batches every millisecond); each change is one STATE_CHANGE event
 * whose value carries a sequence number and the send time. A forked child
 * holds CLIENTS websocket connections (wslay clients on one libevent loop)
 * and checks, per client, that every sequence number arrives once and in
 * order, and measures the delivery latency. Both print their figures.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "benchutil.h"
#include "websocket.h"

#define NODE_ID "11111111-2222-4333-8444-555555555555"
#define LAT_BUCKETS 100000 /* 10 us buckets up to 1 s */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_websocket: %s: %s\n", what, kraken_error_last());
    exit(1);
}

/* ---- the clients (child process) ------------------------------------------------------------ */

typedef struct client {
    struct clients *all;
    struct bufferevent *bev;
    wslay_event_context_ptr ws;
    bool open, synced, done;
    uint64_t next_seq, received, lost, reordered;
} client;

typedef struct clients {
    struct event_base *base;
    client *c;
    size_t n, n_synced, n_done;
    int ready_fd;
    uint64_t end_seq;
    uint64_t *lat_hist;
    uint64_t lat_max_ns;
} clients;

static ssize_t c_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *u)
{
    (void)flags;
    client *c = u;
    int n = evbuffer_remove(bufferevent_get_input(c->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t c_send(wslay_event_context_ptr ctx, const uint8_t *d, size_t len, int flags, void *u)
{
    (void)ctx;
    (void)flags;
    client *c = u;
    bufferevent_write(c->bev, d, len);
    return (ssize_t)len;
}

static int c_mask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *u)
{
    (void)ctx;
    (void)u;
    memset(buf, 0x5a, len); /* a benchmark; masks need not be secret here */
    return 0;
}

static void c_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                  void *u)
{
    (void)ctx;
    client *c = u;
    clients *all = c->all;
    if (arg->opcode == WSLAY_PONG && !c->synced) {
        c->synced = true;
        if (++all->n_synced == all->n && write(all->ready_fd, "R", 1) != 1)
            exit(1);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    /* value "e<seq>:<ns>" or "end<seq>" */
    const char *v = memmem(arg->msg, arg->msg_length, "\"value\":\"", 9);
    if (!v)
        return;
    v += 9;
    if (strncmp(v, "end", 3) == 0) {
        c->done = true;
        all->n_done++;
        all->end_seq = strtoull(v + 3, NULL, 10);
        if (all->n_done == all->n)
            event_base_loopbreak(all->base);
        return;
    }
    if (*v != 'e')
        return;
    char *colon;
    uint64_t seq = strtoull(v + 1, &colon, 10);
    uint64_t sent = strtoull(colon + 1, NULL, 10);
    if (seq == c->next_seq) {
        c->next_seq++;
    } else if (seq > c->next_seq) {
        c->lost += seq - c->next_seq;
        c->next_seq = seq + 1;
    } else {
        c->reordered++;
    }
    c->received++;
    uint64_t lat = mono_ns() - sent;
    if (lat > all->lat_max_ns)
        all->lat_max_ns = lat;
    size_t b = lat / 10000;
    all->lat_hist[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
}

static const struct wslay_event_callbacks client_callbacks = {
    .recv_callback = c_recv,
    .send_callback = c_send,
    .genmask_callback = c_mask,
    .on_msg_recv_callback = c_msg,
};

static void c_read(struct bufferevent *bev, void *u)
{
    client *c = u;
    if (!c->open) {
        struct evbuffer *in = bufferevent_get_input(bev);
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        evbuffer_drain(in, (size_t)end.pos + 4);
        c->open = true;
        wslay_event_context_client_init(&c->ws, &client_callbacks, c);
        static const char sub[] = "{\"command\": \"SUBSCRIBE\", \"type\": \"STATE_CHANGE\"}";
        struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)sub, sizeof sub - 1};
        wslay_event_queue_msg(c->ws, &m);
        struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"s", 1};
        wslay_event_queue_msg(c->ws, &ping);
    }
    if (wslay_event_recv(c->ws) != 0 || wslay_event_send(c->ws) != 0) {
        fprintf(stderr, "bench_websocket: a client's stream broke\n");
        exit(1);
    }
}

static void c_event(struct bufferevent *bev, short what, void *u)
{
    client *c = u;
    if (what & BEV_EVENT_CONNECTED) {
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n");
        return;
    }
    if (!c->done) {
        fprintf(stderr, "bench_websocket: a client was disconnected (dropped as slow?)\n");
        exit(1);
    }
}

static double percentile(const clients *all, double p)
{
    uint64_t total = 0;
    for (size_t i = 0; i < LAT_BUCKETS; i++)
        total += all->lat_hist[i];
    uint64_t want = (uint64_t)(p * (double)total), seen = 0;
    for (size_t i = 0; i < LAT_BUCKETS; i++) {
        seen += all->lat_hist[i];
        if (seen > want)
            return (double)(i + 1) * 0.01; /* ms, bucket's upper edge */
    }
    return 1000.0;
}

static int run_clients(uint16_t port, size_t n, int ready_fd)
{
    clients all = {.base = event_base_new(), .n = n, .ready_fd = ready_fd};
    all.c = calloc(n, sizeof *all.c);
    all.lat_hist = calloc(LAT_BUCKETS, sizeof *all.lat_hist);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (size_t i = 0; i < n; i++) {
        client *c = &all.c[i];
        c->all = &all;
        c->bev = bufferevent_socket_new(all.base, -1, BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(c->bev, c_read, NULL, c_event, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof sin) != 0) {
            fprintf(stderr, "bench_websocket: connect failed\n");
            return 1;
        }
    }
    double t0 = bench_now_s(), c0 = bench_cpu_s();
    event_base_dispatch(all.base);
    double t1 = bench_now_s(), c1 = bench_cpu_s();
    uint64_t received = 0, lost = 0, reordered = 0, min_rx = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        client *c = &all.c[i];
        /* events after the last one a client saw, up to the end marker, are lost too */
        if (c->next_seq < all.end_seq)
            c->lost += all.end_seq - c->next_seq;
        received += c->received;
        lost += c->lost;
        reordered += c->reordered;
        if (c->received < min_rx)
            min_rx = c->received;
        wslay_event_context_free(c->ws);
        bufferevent_free(c->bev);
    }
    printf("clients: %zu connections, %llu events received in total, fewest by one client %llu "
           "of %llu sent\n",
           n, (unsigned long long)received, (unsigned long long)min_rx,
           (unsigned long long)all.end_seq);
    printf("clients: lost %llu, out of order %llu\n", (unsigned long long)lost,
           (unsigned long long)reordered);
    printf("clients: latency send->receive p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
           percentile(&all, 0.50), percentile(&all, 0.99), percentile(&all, 0.999),
           (double)all.lat_max_ns / 1e6);
    printf("clients: process CPU %.2f s over %.2f s (%.0f%% of one core)\n", c1 - c0, t1 - t0,
           100.0 * (c1 - c0) / (t1 - t0));
    free(all.c);
    free(all.lat_hist);
    event_base_free(all.base);
    return lost == 0 && reordered == 0 ? 0 : 3;
}

/* ---- the server (parent process) ------------------------------------------------------------ */

typedef struct server {
    struct event_base *base;
    kraken_engine *engine;
    kd_websocket *ws;
    kraken_uuid node;
    struct event *tick;
    uint64_t rate, seconds, sent, total;
    double start;
} server;

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    /* keep the schedule: send what the elapsed time allows */
    double elapsed = bench_now_s() - s->start;
    uint64_t due = (uint64_t)(elapsed * (double)s->rate);
    if (due > s->total)
        due = s->total;
    kraken_store *store = kraken_engine_store(s->engine);
    char value[64];
    for (; s->sent < due; s->sent++) {
        snprintf(value, sizeof value, "e%llu:%llu", (unsigned long long)s->sent,
                 (unsigned long long)mono_ns());
        if (kraken_store_set_text(store, KRAKEN_DSC, &s->node, "/Nodename", value) != 0)
            die("set");
    }
    if (s->sent == s->total) {
        snprintf(value, sizeof value, "end%llu", (unsigned long long)s->total);
        if (kraken_store_set_text(store, KRAKEN_DSC, &s->node, "/Nodename", value) != 0)
            die("set");
        event_del(s->tick);
    }
}

static void child_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    server *s = arg;
    char b;
    if (read(fd, &b, 1) != 1)
        exit(1);
    s->start = bench_now_s();
    struct timeval ms = {0, 1000};
    event_add(s->tick, &ms);
}

int main(int argc, char **argv)
{
    size_t defaults[] = {100, 10000, 5}, args[3];
    size_t n = bench_parse_sizes(argc, argv, args, 3, defaults, 3, "[CLIENTS [RATE [SECONDS]]]");
    for (size_t i = n; i < 3; i++)
        args[i] = defaults[i];
    size_t n_clients = args[0];
    signal(SIGPIPE, SIG_IGN);
    bench_print_machine("bench_websocket", event_get_version());
    printf("# %zu subscribers, %zu events/s for %zu s (one STATE_CHANGE each)\n", n_clients,
           args[1], args[2]);
    fflush(stdout);

    server s = {.rate = args[1], .seconds = args[2]};
    s.total = s.rate * s.seconds;
    s.base = event_base_new();
    if (kraken_engine_new(&s.engine, s.base, NULL, NULL) != 0 ||
        kd_websocket_register_schema() != 0)
        die("engine");
    const kraken_uuid *self = kraken_engine_self_id(s.engine);
    kraken_store *store = kraken_engine_store(s.engine);
    if (kraken_store_set_text(store, KRAKEN_CFG, self, "/Services/websocket/Module", "websocket") ||
        kraken_store_set_text(store, KRAKEN_CFG, self,
                              "/Services/websocket/Config/type.googleapis.com/WebSocket.Config/"
                              "PingPeriod",
                              "54s") != 0)
        die("config");
    if (kd_websocket_new(&s.ws, s.engine, s.base, "127.0.0.1") != 0)
        die("websocket");
    kraken_node *node = NULL;
    kraken_uuid_parse(&s.node, NODE_ID);
    if (kraken_node_new(&node, &s.node) != 0 || kraken_store_create(store, node) != 0)
        die("node");
    kraken_node_free(node);

    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(ready[0]);
        event_reinit(s.base);
        int rc = run_clients(kd_websocket_port(s.ws), n_clients, ready[1]);
        fflush(stdout);
        _exit(rc);
    }
    close(ready[1]);
    s.tick = event_new(s.base, -1, EV_PERSIST, tick_cb, &s);
    struct event *rd = event_new(s.base, ready[0], EV_READ, ready_cb, &s);
    struct event *chld = evsignal_new(s.base, SIGCHLD, child_cb, s.base);
    event_add(rd, NULL);
    event_add(chld, NULL);
    double c0 = bench_cpu_s();
    event_base_dispatch(s.base);
    double c1 = bench_cpu_s(), t = bench_now_s() - s.start;
    int status = 0;
    waitpid(child, &status, 0);
    kd_websocket_stats st;
    kd_websocket_get_stats(s.ws, &st);
    printf("server: %llu events in %.2f s (%.0f/s), %llu messages queued to clients, "
           "%llu clients dropped as slow, bus dropped %llu\n",
           (unsigned long long)s.sent, t, (double)s.sent / t, (unsigned long long)st.events_sent,
           (unsigned long long)st.dropped_slow, (unsigned long long)st.bus_dropped);
    printf("server: process CPU %.2f s (%.0f%% of one core)\n", c1 - c0, 100.0 * (c1 - c0) / t);
    event_free(s.tick);
    event_free(rd);
    event_free(chld);
    kd_websocket_free(s.ws);
    kraken_engine_free(s.engine);
    event_base_free(s.base);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    printf("%s\n", rc == 0 ? "result: no event lost, all in order" : "result: FAILED");
    return rc;
}
