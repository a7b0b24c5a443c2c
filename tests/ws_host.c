/*
 * ws_host: an engine + the websocket event stream (daemon/websocket.c) in one
 * process, driven over stdin by tests/test_websocket.py and bench/bench_websocket.py.
 *
 *   ws_host [--addr ADDR] [--port N] [--ping-period D] [--pong-wait D] [--write-wait D]
 *           [--max-message-size N] [--queue-limit BYTES] [--token T] [--sim]
 *           [--free-engine-first]
 *
 * Durations D are Go strings ("10s", "200ms"). --port 0 (the default) lets the
 * system pick. --sim adds the simulated power/PXE services (kraken/sim.h)
 * so that nodes with platform "sim" produce STATE_MUTATION events. --free-engine-first frees
 * the engine before the websocket module at exit (the other order of shutdown).
 * Prints "READY <port>", then reads one command per line and answers one line:
 *   create UUID [NAME]          -> OK | ERR msg     (Cfg node, parent = this instance)
 *   cfg|dsc UUID URL VALUE      -> OK | ERR msg     (set a value as text)
 *   delete UUID                 -> OK | ERR msg
 *   burst UUID N [FIRST]        -> OK               (N Dsc changes of /Nodename: burstFIRST..)
 *   wscfg FIELD VALUE           -> OK | ERR msg     (set a WebSocket.Config field in Cfg)
 *   wsstate RUN|STOP            -> OK | ERR msg     (Cfg state of the websocket service)
 *   port                        -> PORT n
 *   service                     -> SERVICE state [error message]   (Dsc of the service)
 *   wait clients N MS           -> OK | TIMEOUT     (run until N clients are connected)
 *   wait port P|any MS          -> OK | TIMEOUT     (run until listening on P / any port)
 *   stats                       -> STATS name=value ...
 *   quit                        -> exits 0
 * Log lines of the engine's log callback go to stderr as "LOG <level> <subsystem>: <text>".
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kraken/kraken.h"
#include <kraken/sim.h>
#include "websocket.h"

#define CONFIG_FIELD "/Services/websocket/Config/type.googleapis.com/WebSocket.Config/"

typedef struct host {
    struct event_base *base;
    kraken_engine *engine;
    kd_websocket *ws;
    kraken_sim *sim;
    struct bufferevent *in;
    struct event *tick;
    /* the pending "wait" */
    int wait_kind; /* 0 none, 1 clients, 2 port */
    uint64_t wait_clients;
    int wait_port; /* -1: any port */
    uint64_t deadline;
} host;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static kraken_store *store_of(host *h) { return kraken_engine_store(h->engine); }

static void log_cb(int level, const char *subsystem, const char *message, void *userdata)
{
    (void)userdata;
    fprintf(stderr, "LOG %d %s: %s\n", level, subsystem, message);
}

static void reply_rc(int rc)
{
    if (rc == 0)
        printf("OK\n");
    else
        printf("ERR %s\n", kraken_error_last());
}

static void cmd_create(host *h, char **w, int n)
{
    kraken_uuid id;
    kraken_node *node = NULL;
    if (n < 2 || kraken_uuid_parse(&id, w[1]) != 0) {
        printf("ERR usage: create UUID [NAME]\n");
        return;
    }
    kraken_value pv = kraken_value_uuid(kraken_engine_self_id(h->engine));
    int rc = kraken_node_new(&node, &id);
    if (rc == 0)
        rc = kraken_node_set(node, "/ParentId", &pv);
    if (rc == 0 && n > 2)
        rc = kraken_node_set_text(node, "/Nodename", w[2]);
    if (rc == 0)
        rc = kraken_store_create(store_of(h), node);
    kraken_node_free(node);
    reply_rc(rc);
}

static void cmd_set(host *h, kraken_state_kind kind, char **w, int n)
{
    kraken_uuid id;
    if (n < 4 || kraken_uuid_parse(&id, w[1]) != 0) {
        printf("ERR usage: cfg|dsc UUID URL VALUE\n");
        return;
    }
    reply_rc(kraken_store_set_text(store_of(h), kind, &id, w[2], w[3]));
}

static void cmd_burst(host *h, char **w, int n)
{
    kraken_uuid id;
    if (n < 3 || kraken_uuid_parse(&id, w[1]) != 0) {
        printf("ERR usage: burst UUID N\n");
        return;
    }
    unsigned long count = strtoul(w[2], NULL, 10);
    unsigned long first = n > 3 ? strtoul(w[3], NULL, 10) : 0;
    for (unsigned long i = first; i < first + count; i++) {
        char name[32];
        snprintf(name, sizeof name, "burst%lu", i);
        int rc = kraken_store_set_text(store_of(h), KRAKEN_DSC, &id, "/Nodename", name);
        if (rc != 0) {
            reply_rc(rc);
            return;
        }
    }
    printf("OK\n");
}

static char *dsc_text(host *h, const char *url)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    char *text = NULL;
    if (kraken_store_get_value(store_of(h), KRAKEN_DSC, kraken_engine_self_id(h->engine), url,
                               &v) != 0 ||
        kraken_value_format(&v, &text) != 0)
        text = NULL;
    kraken_value_clear(&v);
    return text;
}

static void cmd_service(host *h)
{
    char *state = dsc_text(h, "/Services/websocket/State");
    char *msg = dsc_text(h, "/Services/websocket/ErrorMsg");
    printf("SERVICE %s%s%s\n", state ? state : "NONE", msg && *msg ? " " : "",
           msg && *msg ? msg : "");
    free(state);
    free(msg);
}

static void cmd_stats(host *h)
{
    kd_websocket_stats s;
    kd_websocket_get_stats(h->ws, &s);
    printf("STATS clients=%llu accepted=%llu rejected=%llu events_sent=%llu dropped_slow=%llu "
           "closed_bad_input=%llu bus_dropped=%llu\n",
           (unsigned long long)s.clients, (unsigned long long)s.accepted,
           (unsigned long long)s.rejected, (unsigned long long)s.events_sent,
           (unsigned long long)s.dropped_slow, (unsigned long long)s.closed_bad_input,
           (unsigned long long)s.bus_dropped);
}

static bool wait_done(host *h)
{
    if (h->wait_kind == 1) {
        kd_websocket_stats s;
        kd_websocket_get_stats(h->ws, &s);
        return s.clients == h->wait_clients;
    }
    uint16_t port = kd_websocket_port(h->ws);
    return h->wait_port < 0 ? port != 0 : port == h->wait_port;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    host *h = arg;
    if (!h->wait_kind)
        return;
    if (wait_done(h)) {
        h->wait_kind = 0;
        printf("OK\n");
    } else if (mono_ms() >= h->deadline) {
        h->wait_kind = 0;
        printf("TIMEOUT\n");
    }
}

static void cmd_wait(host *h, char **w, int n)
{
    if (n == 4 && strcmp(w[1], "clients") == 0) {
        h->wait_kind = 1;
        h->wait_clients = strtoull(w[2], NULL, 10);
        h->deadline = mono_ms() + strtoull(w[3], NULL, 10);
    } else if (n == 4 && strcmp(w[1], "port") == 0) {
        h->wait_kind = 2;
        h->wait_port = strcmp(w[2], "any") == 0 ? -1 : atoi(w[2]);
        h->deadline = mono_ms() + strtoull(w[3], NULL, 10);
    } else {
        printf("ERR usage: wait clients N MS | wait port P|any MS\n");
        return;
    }
    tick_cb(-1, 0, h);
}

static void run_command(host *h, char *line)
{
    char *w[8];
    int n = 0;
    for (char *tok = strtok(line, " \t\r"); tok != NULL && n < 8; tok = strtok(NULL, " \t\r"))
        w[n++] = tok;
    if (n == 0)
        return;
    kraken_error_clear();
    const kraken_uuid *self = kraken_engine_self_id(h->engine);
    if (h->wait_kind) {
        printf("ERR busy: a wait is pending\n");
    } else if (strcmp(w[0], "create") == 0) {
        cmd_create(h, w, n);
    } else if (strcmp(w[0], "cfg") == 0) {
        cmd_set(h, KRAKEN_CFG, w, n);
    } else if (strcmp(w[0], "dsc") == 0) {
        cmd_set(h, KRAKEN_DSC, w, n);
    } else if (strcmp(w[0], "delete") == 0 && n == 2) {
        kraken_uuid id;
        if (kraken_uuid_parse(&id, w[1]) != 0)
            printf("ERR bad uuid\n");
        else
            reply_rc(kraken_store_delete(store_of(h), &id));
    } else if (strcmp(w[0], "burst") == 0) {
        cmd_burst(h, w, n);
    } else if (strcmp(w[0], "wscfg") == 0 && n == 3) {
        char url[256];
        snprintf(url, sizeof url, CONFIG_FIELD "%s", w[1]);
        reply_rc(kraken_store_set_text(store_of(h), KRAKEN_CFG, self, url, w[2]));
    } else if (strcmp(w[0], "wsstate") == 0 && n == 2) {
        reply_rc(kraken_store_set_text(store_of(h), KRAKEN_CFG, self, "/Services/websocket/State",
                                       w[1]));
    } else if (strcmp(w[0], "port") == 0) {
        printf("PORT %u\n", kd_websocket_port(h->ws));
    } else if (strcmp(w[0], "service") == 0) {
        cmd_service(h);
    } else if (strcmp(w[0], "wait") == 0) {
        cmd_wait(h, w, n);
    } else if (strcmp(w[0], "stats") == 0) {
        cmd_stats(h);
    } else if (strcmp(w[0], "quit") == 0) {
        event_base_loopbreak(h->base);
    } else {
        printf("ERR unknown command '%s'\n", w[0]);
    }
}

static void stdin_read_cb(struct bufferevent *bev, void *arg)
{
    host *h = arg;
    char *line;
    size_t len;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), &len, EVBUFFER_EOL_LF)) != NULL) {
        run_command(h, line);
        free(line);
    }
}

static void stdin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    host *h = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        event_base_loopbreak(h->base); /* the driver went away */
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static int usage(void)
{
    fprintf(stderr, "usage: ws_host [--addr ADDR] [--port N] [--ping-period D] [--pong-wait D] "
                    "[--write-wait D] [--max-message-size N] [--queue-limit BYTES] [--token T] [--sim] "
                    "[--free-engine-first]\n");
    return 2;
}

/* Write the websocket service's Cfg config before the module reads it. */
static int preset_config(host *h, const char *field, const char *value)
{
    char url[256];
    snprintf(url, sizeof url, CONFIG_FIELD "%s", field);
    return kraken_store_set_text(store_of(h), KRAKEN_CFG, kraken_engine_self_id(h->engine), url,
                                 value);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *port = "0", *ping = "54s", *pong = "1m0s", *wr = "10s",
               *maxmsg = "512";
    size_t queue_limit = 0;
    bool with_sim = false, engine_first = false;
    const char *token = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--sim") == 0) {
            with_sim = true;
            continue;
        }
        if (strcmp(arg, "--free-engine-first") == 0) {
            engine_first = true;
            continue;
        }
        const char *val = i + 1 < argc ? argv[++i] : NULL;
        if (!val)
            return usage();
        if (strcmp(arg, "--addr") == 0)
            addr = val;
        else if (strcmp(arg, "--port") == 0)
            port = val;
        else if (strcmp(arg, "--ping-period") == 0)
            ping = val;
        else if (strcmp(arg, "--pong-wait") == 0)
            pong = val;
        else if (strcmp(arg, "--write-wait") == 0)
            wr = val;
        else if (strcmp(arg, "--max-message-size") == 0)
            maxmsg = val;
        else if (strcmp(arg, "--queue-limit") == 0)
            queue_limit = strtoull(val, NULL, 10);
        else if (strcmp(arg, "--token") == 0)
            token = val;
        else
            return usage();
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    host h = {0};
    h.base = event_base_new();
    kraken_engine_options opts = KRAKEN_ENGINE_OPTIONS_INIT;
    opts.timeout_scale = 0.01;
    int rc = kraken_engine_new(&h.engine, h.base, NULL, &opts);
    if (rc == 0)
        rc = kraken_engine_set_log(h.engine, KRAKEN_LOG_DDDEBUG, log_cb, NULL, NULL);
    /* The service does not exist yet: a config written now is what it starts with. A
     * "wscfg-free" start (the defaults) is what kraken-daemon gets. */
    if (rc == 0)
        rc = kd_websocket_register_schema();
    if (rc == 0 && strcmp(port, "default") != 0) {
        if ((rc = kraken_store_set_text(store_of(&h), KRAKEN_CFG, kraken_engine_self_id(h.engine),
                                        "/Services/websocket/Module", "websocket")) == 0 &&
            (rc = preset_config(&h, "Port", port)) == 0 &&
            (rc = preset_config(&h, "PingPeriod", ping)) == 0 &&
            (rc = preset_config(&h, "PongWait", pong)) == 0 &&
            (rc = preset_config(&h, "WriteWait", wr)) == 0)
            rc = preset_config(&h, "MaxMessageSize", maxmsg);
    }
    if (rc == 0)
        rc = kd_websocket_new(&h.ws, h.engine, h.base, addr);
    if (rc == 0 && with_sim) {
        kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
        so.delay_ms = 5;
        rc = kraken_sim_new(&h.sim, h.engine, &so);
    }
    if (rc != 0) {
        fprintf(stderr, "ws_host: %s\n", kraken_error_last());
        kd_websocket_free(h.ws);
        kraken_engine_free(h.engine);
        event_base_free(h.base);
        return 1;
    }
    if (queue_limit)
        kd_websocket_set_queue_limit(h.ws, queue_limit);
    if (token)
        kd_websocket_set_token(h.ws, token);
    h.in = bufferevent_socket_new(h.base, STDIN_FILENO, 0);
    bufferevent_setcb(h.in, stdin_read_cb, NULL, stdin_event_cb, &h);
    bufferevent_enable(h.in, EV_READ);
    h.tick = event_new(h.base, -1, EV_PERSIST, tick_cb, &h);
    struct timeval tv = {0, 5000};
    event_add(h.tick, &tv);
    struct event *sigterm = evsignal_new(h.base, SIGTERM, signal_cb, h.base);
    struct event *sigint = evsignal_new(h.base, SIGINT, signal_cb, h.base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    printf("READY %u\n", kd_websocket_port(h.ws));
    event_base_dispatch(h.base);
    event_free(sigterm);
    event_free(sigint);
    event_free(h.tick);
    bufferevent_free(h.in);
    kraken_sim_free(h.sim);
    if (engine_first) {
        /* the module must survive its engine going first (clients are let go) */
        kraken_engine_free(h.engine);
        event_base_loop(h.base, EVLOOP_NONBLOCK);
        kd_websocket_free(h.ws);
    } else {
        kd_websocket_free(h.ws);
        kraken_engine_free(h.engine);
    }
    event_base_free(h.base);
    libevent_global_shutdown();
    return 0;
}
