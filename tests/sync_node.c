/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * sync_node: one engine + sync in a process, for multi-process tests and the bench.
 *
 *   sync_node --id UUID --listen ADDR [--port N] [--parent ADDR[:PORT]] --secret FILE
 *             [--state FILE] [--nodes N] [--hello MS] [--dead MS] [--damping MS]
 *             [--rejoin-min MS] [--rejoin-max MS]
 *   sync_node --write-secret FILE
 *
 * --port 0 (the default) lets the system pick the port.
 * Prints "READY <port>" once listening, then reads commands from stdin, one per line, and
 * answers each with one line:
 *   create UUID PARENT [NAME]       -> OK | ERR msg    (Cfg node)
 *   cfg UUID URL VALUE              -> OK | ERR msg    (set a Cfg value as text)
 *   dsc UUID URL VALUE              -> OK | ERR msg    (set a Dsc value as text)
 *   get cfg|dsc UUID URL            -> VALUE text | NONE
 *   wait cfg|dsc UUID URL VALUE MS  -> OK | TIMEOUT    (run until the value is there)
 *   wait joined MS                  -> OK | TIMEOUT
 *   wait children N MS              -> OK | TIMEOUT
 *   count                           -> COUNT n         (nodes in the store)
 *   stats                           -> STATS name=value ...
 *   quit                            -> exits 0
 * SIGTERM and SIGINT exit 0 after freeing everything (so ASan can check for leaks).
 * --nodes N creates N Cfg nodes with this instance as parent (for the bench).
 */
#include <errno.h>
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

typedef struct node_app {
    struct event_base *base;
    kraken_engine *engine;
    kraken_sync *sync;
    struct bufferevent *in;
    struct event *tick;
    /* the pending "wait" */
    bool waiting;
    uint64_t deadline;
    char kind[16];
    kraken_uuid id;
    char url[512];
    char value[512];
    size_t children;
    int exit_code;
} node_app;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int usage(void)
{
    fprintf(stderr, "usage: sync_node --id UUID --listen ADDR [--port N] [--parent ADDR[:PORT]] "
                    "--secret FILE [--state FILE] [--nodes N] [--hello MS] [--dead MS] "
                    "[--damping MS] [--rejoin-min MS] [--rejoin-max MS]\n"
                    "       sync_node --write-secret FILE\n"
                    "       sync_node --write-node-key SECRET STATE ROOT_UUID NODE_UUID OUT\n");
    return 2;
}

/* As the root would: the node key of NODE_UUID, whose Cfg chain is in STATE under the root
 * ROOT_UUID, derived from the cluster SECRET, written to OUT. */
static int write_node_key(char **argv)
{
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    kraken_uuid node;
    if (kraken_uuid_parse(&eo.self_id, argv[2]) != 0 || kraken_uuid_parse(&node, argv[3]) != 0) {
        fprintf(stderr, "sync_node: bad uuid\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    kraken_engine *engine = NULL;
    int rc = base != NULL ? kraken_engine_new(&engine, base, NULL, &eo) : KRAKEN_ENOMEM;
    if (rc == 0)
        rc = kraken_store_load(kraken_engine_store(engine), argv[1]);
    if (rc == 0)
        rc = kraken_sync_write_node_key(argv[0], kraken_engine_store(engine), &node, argv[4]);
    if (rc != 0)
        fprintf(stderr, "sync_node: %s\n", kraken_error_last());
    kraken_engine_free(engine);
    if (base != NULL)
        event_base_free(base);
    return rc == 0 ? 0 : 1;
}

static kraken_store *store_of(node_app *a) { return kraken_engine_store(a->engine); }

static bool value_is(node_app *a, kraken_state_kind kind, const kraken_uuid *id, const char *url,
                     const char *want)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    if (kraken_store_get_value(store_of(a), kind, id, url, &v) != 0)
        return false;
    char *text = NULL;
    bool ok = kraken_value_format(&v, &text) == 0 && strcmp(text, want) == 0;
    free(text);
    kraken_value_clear(&v);
    return ok;
}

static bool wait_done(node_app *a)
{
    if (strcmp(a->kind, "joined") == 0)
        return kraken_sync_joined(a->sync);
    if (strcmp(a->kind, "children") == 0)
        return kraken_sync_children(a->sync) == a->children;
    kraken_state_kind k = strcmp(a->kind, "cfg") == 0 ? KRAKEN_CFG : KRAKEN_DSC;
    return value_is(a, k, &a->id, a->url, a->value);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_app *a = arg;
    if (!a->waiting)
        return;
    if (wait_done(a)) {
        a->waiting = false;
        printf("OK\n");
    } else if (mono_ms() >= a->deadline) {
        a->waiting = false;
        printf("TIMEOUT\n");
    }
}

static int parse_kind(const char *s, kraken_state_kind *out)
{
    if (strcmp(s, "cfg") == 0)
        *out = KRAKEN_CFG;
    else if (strcmp(s, "dsc") == 0)
        *out = KRAKEN_DSC;
    else
        return -1;
    return 0;
}

static void cmd_create(node_app *a, char **w, int n)
{
    kraken_uuid id, parent;
    kraken_node *node = NULL;
    if (n < 3 || kraken_uuid_parse(&id, w[1]) != 0 || kraken_uuid_parse(&parent, w[2]) != 0) {
        printf("ERR usage: create UUID PARENT [NAME]\n");
        return;
    }
    kraken_value pv = kraken_value_uuid(&parent);
    int rc = kraken_node_new(&node, &id);
    if (rc == 0)
        rc = kraken_node_set(node, "/ParentId", &pv);
    if (rc == 0 && n > 3)
        rc = kraken_node_set_text(node, "/Nodename", w[3]);
    if (rc == 0)
        rc = kraken_store_create(store_of(a), node);
    kraken_node_free(node);
    if (rc == 0)
        printf("OK\n");
    else
        printf("ERR %s\n", kraken_error_last());
}

static void cmd_set(node_app *a, kraken_state_kind kind, char **w, int n)
{
    kraken_uuid id;
    if (n < 4 || kraken_uuid_parse(&id, w[1]) != 0) {
        printf("ERR usage: cfg|dsc UUID URL VALUE\n");
        return;
    }
    if (kraken_store_set_text(store_of(a), kind, &id, w[2], w[3]) == 0)
        printf("OK\n");
    else
        printf("ERR %s\n", kraken_error_last());
}

static void cmd_get(node_app *a, char **w, int n)
{
    kraken_state_kind kind;
    kraken_uuid id;
    if (n < 4 || parse_kind(w[1], &kind) != 0 || kraken_uuid_parse(&id, w[2]) != 0) {
        printf("ERR usage: get cfg|dsc UUID URL\n");
        return;
    }
    kraken_value v = KRAKEN_VALUE_INIT;
    char *text = NULL;
    if (kraken_store_get_value(store_of(a), kind, &id, w[3], &v) == 0 &&
        kraken_value_format(&v, &text) == 0)
        printf("VALUE %s\n", text);
    else
        printf("NONE\n");
    free(text);
    kraken_value_clear(&v);
}

static void cmd_wait(node_app *a, char **w, int n)
{
    const char *ms = NULL;
    if (n == 3 && strcmp(w[1], "joined") == 0) {
        ms = w[2];
    } else if (n == 4 && strcmp(w[1], "children") == 0) {
        a->children = (size_t)strtoul(w[2], NULL, 10);
        ms = w[3];
    } else if (n == 6) {
        kraken_state_kind kind;
        if (parse_kind(w[1], &kind) != 0 || kraken_uuid_parse(&a->id, w[2]) != 0) {
            printf("ERR usage: wait cfg|dsc UUID URL VALUE MS\n");
            return;
        }
        snprintf(a->url, sizeof a->url, "%s", w[3]);
        snprintf(a->value, sizeof a->value, "%s", w[4]);
        ms = w[5];
    } else {
        printf("ERR usage: wait joined MS | wait children N MS | wait cfg|dsc UUID URL VALUE MS\n");
        return;
    }
    snprintf(a->kind, sizeof a->kind, "%s", w[1]);
    a->deadline = mono_ms() + strtoull(ms, NULL, 10);
    a->waiting = true;
    tick_cb(-1, 0, a);
}

static void cmd_stats(node_app *a)
{
    kraken_sync_stats s;
    kraken_sync_get_stats(a->sync, &s);
    printf("STATS joined=%d children=%zu datagrams_sent=%llu datagrams_received=%llu "
           "bytes_sent=%llu bytes_received=%llu tcp_messages_sent=%llu "
           "tcp_messages_received=%llu dropped_bad_mac=%llu dropped_unknown_sender=%llu "
           "dropped_replay=%llu dropped_not_authorized=%llu dropped_malformed=%llu "
           "joins_accepted=%llu joins_refused=%llu full_resends=%llu peers_lost=%llu\n",
           kraken_sync_joined(a->sync), kraken_sync_children(a->sync),
           (unsigned long long)s.datagrams_sent, (unsigned long long)s.datagrams_received,
           (unsigned long long)s.bytes_sent, (unsigned long long)s.bytes_received,
           (unsigned long long)s.tcp_messages_sent, (unsigned long long)s.tcp_messages_received,
           (unsigned long long)s.dropped_bad_mac, (unsigned long long)s.dropped_unknown_sender,
           (unsigned long long)s.dropped_replay, (unsigned long long)s.dropped_not_authorized,
           (unsigned long long)s.dropped_malformed, (unsigned long long)s.joins_accepted,
           (unsigned long long)s.joins_refused, (unsigned long long)s.full_resends,
           (unsigned long long)s.peers_lost);
}

static void run_command(node_app *a, char *line)
{
    char *w[8];
    int n = 0;
    for (char *tok = strtok(line, " \t\r"); tok != NULL && n < 8; tok = strtok(NULL, " \t\r"))
        w[n++] = tok;
    if (n == 0)
        return;
    kraken_error_clear();
    if (a->waiting) {
        printf("ERR busy: a wait is pending\n");
    } else if (strcmp(w[0], "create") == 0) {
        cmd_create(a, w, n);
    } else if (strcmp(w[0], "cfg") == 0) {
        cmd_set(a, KRAKEN_CFG, w, n);
    } else if (strcmp(w[0], "dsc") == 0) {
        cmd_set(a, KRAKEN_DSC, w, n);
    } else if (strcmp(w[0], "get") == 0) {
        cmd_get(a, w, n);
    } else if (strcmp(w[0], "wait") == 0) {
        cmd_wait(a, w, n);
    } else if (strcmp(w[0], "count") == 0) {
        printf("COUNT %zu\n", kraken_store_count(store_of(a)));
    } else if (strcmp(w[0], "stats") == 0) {
        cmd_stats(a);
    } else if (strcmp(w[0], "quit") == 0) {
        event_base_loopbreak(a->base);
    } else {
        printf("ERR unknown command '%s'\n", w[0]);
    }
}

static void stdin_read_cb(struct bufferevent *bev, void *arg)
{
    node_app *a = arg;
    char *line;
    size_t len;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), &len, EVBUFFER_EOL_LF)) != NULL) {
        run_command(a, line);
        free(line);
    }
}

static void stdin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    node_app *a = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        event_base_loopbreak(a->base); /* the driver went away */
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static int add_generated_nodes(node_app *a, unsigned long count)
{
    const kraken_uuid *self = kraken_engine_self_id(a->engine);
    kraken_value pv = kraken_value_uuid(self);
    for (unsigned long i = 0; i < count; i++) {
        kraken_uuid id;
        kraken_node *node = NULL;
        char name[32];
        snprintf(name, sizeof name, "gen%lu", i);
        int rc = kraken_uuid_generate(&id);
        if (rc == 0)
            rc = kraken_node_new(&node, &id);
        if (rc == 0)
            rc = kraken_node_set(node, "/ParentId", &pv);
        if (rc == 0)
            rc = kraken_node_set_text(node, "/Nodename", name);
        if (rc == 0)
            rc = kraken_store_create(store_of(a), node);
        kraken_node_free(node);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *id_text = NULL, *listen = NULL, *parent = NULL, *secret = NULL, *state = NULL;
    unsigned long nodes = 0;
    uint16_t port = 0;
    kraken_sync_options o = KRAKEN_SYNC_OPTIONS_INIT;
    o.hello_ms = 200;
    o.dead_ms = 1500;
    o.damping_ms = 2;
    o.rejoin_min_ms = 50;
    o.rejoin_max_ms = 500;
    if (argc == 7 && strcmp(argv[1], "--write-node-key") == 0)
        return write_node_key(argv + 2);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--write-secret") == 0 && val != NULL) {
            if (kraken_sync_write_secret(val) != 0) {
                fprintf(stderr, "sync_node: %s\n", kraken_error_last());
                return 1;
            }
            return 0;
        }
        if (val == NULL)
            return usage();
        i++;
        if (strcmp(arg, "--id") == 0)
            id_text = val;
        else if (strcmp(arg, "--listen") == 0)
            listen = val;
        else if (strcmp(arg, "--port") == 0)
            port = (uint16_t)strtoul(val, NULL, 10);
        else if (strcmp(arg, "--parent") == 0)
            parent = val;
        else if (strcmp(arg, "--secret") == 0)
            secret = val;
        else if (strcmp(arg, "--state") == 0)
            state = val;
        else if (strcmp(arg, "--nodes") == 0)
            nodes = strtoul(val, NULL, 10);
        else if (strcmp(arg, "--hello") == 0)
            o.hello_ms = (uint32_t)strtoul(val, NULL, 10);
        else if (strcmp(arg, "--dead") == 0)
            o.dead_ms = (uint32_t)strtoul(val, NULL, 10);
        else if (strcmp(arg, "--damping") == 0)
            o.damping_ms = (uint32_t)strtoul(val, NULL, 10);
        else if (strcmp(arg, "--rejoin-min") == 0)
            o.rejoin_min_ms = (uint32_t)strtoul(val, NULL, 10);
        else if (strcmp(arg, "--rejoin-max") == 0)
            o.rejoin_max_ms = (uint32_t)strtoul(val, NULL, 10);
        else
            return usage();
    }
    if (id_text == NULL || listen == NULL || secret == NULL)
        return usage();

    o.listen_addr = listen;
    o.port = port;
    o.parent_addr = parent;
    o.secret_file = secret;

    node_app a;
    memset(&a, 0, sizeof a);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    a.base = event_base_new();
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    eo.start_frozen = parent != NULL;
    if (a.base == NULL || kraken_uuid_parse(&eo.self_id, id_text) != 0) {
        fprintf(stderr, "sync_node: bad --id '%s'\n", id_text);
        return 2;
    }
    int rc = kraken_engine_new(&a.engine, a.base, NULL, &eo);
    if (rc == 0 && state != NULL)
        rc = kraken_store_load(store_of(&a), state);
    if (rc == 0 && nodes > 0)
        rc = add_generated_nodes(&a, nodes);
    if (rc == 0)
        rc = kraken_sync_new(&a.sync, a.engine, a.base, &o);
    if (rc != 0) {
        fprintf(stderr, "sync_node: %s\n", kraken_error_last());
        kraken_engine_free(a.engine);
        event_base_free(a.base);
        return 1;
    }
    struct event *sigterm = evsignal_new(a.base, SIGTERM, signal_cb, a.base);
    struct event *sigint = evsignal_new(a.base, SIGINT, signal_cb, a.base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    a.tick = event_new(a.base, -1, EV_PERSIST, tick_cb, &a);
    struct timeval tv = {0, 5000};
    event_add(a.tick, &tv);
    evutil_make_socket_nonblocking(STDIN_FILENO);
    a.in = bufferevent_socket_new(a.base, STDIN_FILENO, 0);
    bufferevent_setcb(a.in, stdin_read_cb, NULL, stdin_event_cb, &a);
    bufferevent_enable(a.in, EV_READ);

    printf("READY %u\n", (unsigned)kraken_sync_port(a.sync));
    event_base_dispatch(a.base);

    bufferevent_free(a.in);
    event_free(a.tick);
    event_free(sigterm);
    event_free(sigint);
    kraken_sync_free(a.sync);
    kraken_engine_free(a.engine);
    event_base_free(a.base);
    libevent_global_shutdown();
    return 0;
}
