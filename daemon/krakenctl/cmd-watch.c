/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-watch.c: `krakenctl watch`: a live node table that converges as events
 * arrive. The node lists come from REST once; then the daemon's websocket
 * event stream (a wslay client on a bufferevent) keeps them current: a
 * STATE_CHANGE of a top-level field updates its cell, a node created or
 * deleted refetches the lists (as the original dashboard does).
 *
 * On a terminal the table is redrawn (at most every 100 ms); otherwise each
 * event is printed as a line (its "data" text), and the table once more at
 * the end. With -j every line is JSON: the stream's events as they come, and
 * {"nodes": N, "converging": M} where a table would be. --until-converged exits 0 once every node's Dsc
 * PhysState and RunState match its Cfg, 1 when --timeout passes first; without it --timeout
 * ends the watch (exit 0).
 * Without an event stream (GET /ws has no port: the daemon runs no websocket
 * service), or with --poll SECONDS, the lists are read again at that interval.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <getopt.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "krakenctl.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define REDRAW_MS 100

typedef struct watch {
    kc_ctx *ctx;
    cJSON *cfg, *dsc;
    bool until_converged;
    bool tty;
    bool open;           /* handshake done */
    bool refetch;        /* a node was created or deleted */
    bool dirty;
    bool synced;         /* our subscriptions are active and the lists were read after them */
    int result;
    struct event_base *base; /* the websocket's loop; REST calls run ctx->base meanwhile */
    char key[32];        /* Sec-WebSocket-Key sent */
    struct bufferevent *bev;
    wslay_event_context_ptr wslay;
    struct event *redraw, *deadline, *sigint, *poll;
    double poll_s;       /* > 0: poll the REST API this often instead of the event stream */
} watch;

/* ---- the model -------------------------------------------------------------------------------- */

/* JSON names of the top-level node fields a STATE_CHANGE URL may name. */
static const char *field_of_url(const char *url)
{
    static const struct {
        const char *url, *field;
    } map[] = {
        {"/PhysState", "physState"}, {"/RunState", "runState"}, {"/Nodename", "nodename"},
        {"/Platform", "platform"},   {"/Arch", "arch"},         {"/Busy", "busy"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(url, map[i].url) == 0)
            return map[i].field;
    return NULL;
}

static int fetch_lists(watch *w)
{
    cJSON *cfg = NULL, *dsc = NULL;
    int rc = kc_request_json(w->ctx, "GET", "/cfg/nodes", NULL, &cfg);
    if (rc == 0 && (rc = kc_request_json(w->ctx, "GET", "/dsc/nodes", NULL, &dsc)) != 0)
        cJSON_Delete(cfg);
    if (rc != 0)
        return rc;
    cJSON_Delete(w->cfg);
    cJSON_Delete(w->dsc);
    w->cfg = cfg;
    w->dsc = dsc;
    return 0;
}

static void apply_change(watch *w, const cJSON *ev)
{
    const char *data = kc_node_field(ev, "data");
    if (strncmp(data, "(CREATE)", 8) == 0 || strncmp(data, "(DELETE)", 8) == 0) {
        w->refetch = true;
        return;
    }
    const char *field = field_of_url(kc_node_field(ev, "url"));
    if (!field)
        return;
    bool cfg = strncmp(data, "(CFG_UPDATE)", 12) == 0;
    cJSON *node = (cJSON *)kc_find_node(cfg ? w->cfg : w->dsc, kc_node_field(ev, "nodeid"));
    if (!node) {
        w->refetch = true;
        return;
    }
    const char *value = kc_node_field(ev, "value");
    cJSON_DeleteItemFromObjectCaseSensitive(node, field);
    if (*value)
        cJSON_AddStringToObject(node, field, value);
    w->dirty = true;
}

/* Every node's Dsc PhysState and RunState match its Cfg (where Cfg cares). */
static bool converged(const watch *w, size_t *pending)
{
    size_t n_pending = 0;
    const cJSON *c, *cursor = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(w->cfg, "nodes"))
    {
        const cJSON *d = kc_find_node_next(w->dsc, kc_node_field(c, "id"), &cursor);
        static const char *const fields[] = {"physState", "runState"};
        for (size_t i = 0; i < 2; i++) {
            const char *want = kc_node_field(c, fields[i]);
            if (*want && strcmp(want, kc_node_field(d, fields[i])) != 0) {
                n_pending++;
                break;
            }
        }
    }
    if (pending)
        *pending = n_pending;
    return n_pending == 0;
}

static void draw(watch *w)
{
    size_t pending = 0;
    converged(w, &pending);
    if (w->ctx->json) { /* scripts get the events and these state lines, no tables */
        printf("{\"nodes\": %d, \"converging\": %zu}\n",
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(w->cfg, "nodes")), pending);
        fflush(stdout);
        return;
    }
    if (w->tty)
        fputs("\033[H\033[2J", stdout);
    printf("kraken at %s:%u: %d node(s), %zu converging%s\n", w->ctx->host, w->ctx->port,
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(w->cfg, "nodes")), pending,
           w->tty ? "  (Ctrl-C to stop)" : "");
    kc_print_node_table(w->ctx, w->cfg, w->dsc, "mixed", stdout);
    fflush(stdout);
}

static void finish(watch *w, int result)
{
    w->result = result;
    event_base_loopbreak(w->base);
}

/* With --until-converged, once every node has converged: the last picture, the word, exit 0.
 * True when the watch is finished. */
static bool finish_if_converged(watch *w)
{
    if (!w->until_converged || !converged(w, NULL))
        return false;
    draw(w);
    printf(w->ctx->json ? "{\"converged\": true}\n" : "converged\n");
    finish(w, KC_EXIT_OK);
    return true;
}

static void after_events(watch *w)
{
    if (w->refetch) {
        w->refetch = false;
        w->dirty = true;
        int rc = fetch_lists(w);
        if (rc != 0) {
            finish(w, rc);
            return;
        }
    }
    if (finish_if_converged(w))
        return;
    if (w->dirty && w->tty && !evtimer_pending(w->redraw, NULL)) {
        struct timeval tv = {0, REDRAW_MS * 1000};
        evtimer_add(w->redraw, &tv);
    }
}

static void redraw_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch *w = arg;
    w->dirty = false;
    draw(w);
}

/* ---- the websocket client --------------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    watch *w = user_data;
    int n = evbuffer_remove(bufferevent_get_input(w->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    watch *w = user_data;
    if (bufferevent_write(w->bev, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    (void)ctx;
    (void)user_data;
    return getentropy(buf, len) == 0 ? 0 : -1;
}

/*
 * The daemon answered our ping, so it has handled the subscriptions sent
 * before it: read the node lists now. Every change after this point arrives as
 * an event (they wait in the socket while the lists are read, and are applied
 * in order afterwards), so the table cannot miss one.
 */
static void on_synced(watch *w)
{
    int rc = fetch_lists(w);
    if (rc != 0) {
        finish(w, rc);
        return;
    }
    w->synced = true;
    if (w->until_converged && converged(w, NULL)) {
        printf(w->ctx->json ? "{\"converged\": true}\n" : "converged\n");
        finish(w, KC_EXIT_OK);
        return;
    }
    draw(w);
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user_data)
{
    (void)ctx;
    watch *w = user_data;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream was closed by the daemon: %u %.*s",
                 arg->status_code, arg->msg_length > 2 ? (int)arg->msg_length - 2 : 0,
                 arg->msg_length > 2 ? (const char *)arg->msg + 2 : "");
        finish(w, KC_EXIT_CONNECT);
        return;
    }
    if (arg->opcode == WSLAY_PONG && arg->msg_length == 4 && memcmp(arg->msg, "sync", 4) == 0) {
        on_synced(w);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME || !w->synced)
        return;
    cJSON *ev = cJSON_ParseWithLength((const char *)arg->msg, arg->msg_length);
    if (!ev)
        return;
    if (!w->tty) {
        if (w->ctx->json)
            printf("%.*s\n", (int)arg->msg_length, (const char *)arg->msg);
        else
            printf("%s\n", kc_node_field(ev, "data"));
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    if (cJSON_IsNumber(type) && type->valueint == 1)
        apply_change(w, ev);
    cJSON_Delete(ev);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .genmask_callback = genmask_cb,
    .on_msg_recv_callback = msg_cb,
};

static void subscribe(watch *w, const char *type)
{
    char msg[96];
    snprintf(msg, sizeof msg, "{\"command\": \"SUBSCRIBE\", \"type\": \"%s\"}", type);
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, strlen(msg)};
    wslay_event_queue_msg(w->wslay, &m);
}

/* The 101 answer: check it, then switch to frames. */
static int finish_handshake(watch *w)
{
    struct evbuffer *in = bufferevent_get_input(w->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return evbuffer_get_length(in) > 8192
                   ? kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream's answer is not HTTP")
                   : 0;
    char head[8192];
    size_t n = (size_t)end.pos + 4;
    evbuffer_remove(in, head, n);
    head[n] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        return kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream refused the upgrade: %.*s",
                        (int)strcspn(head, "\r\n"), head);
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    char accept[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    sha1_init(&sha);
    sha1_update(&sha, strlen(w->key), (const uint8_t *)w->key);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    base64_encode_raw(accept, sizeof digest, digest);
    accept[sizeof accept - 1] = '\0';
    char want[128];
    snprintf(want, sizeof want, "Sec-WebSocket-Accept: %s\r\n", accept);
    if (!strcasestr(head, "\r\nSec-WebSocket-Accept:") || !strstr(head, want))
        return kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream's Sec-WebSocket-Accept is wrong");
    if (wslay_event_context_client_init(&w->wslay, &ws_callbacks, w) != 0)
        return kc_error(w->ctx, KC_EXIT_CONNECT, "out of memory");
    w->open = true;
    subscribe(w, "STATE_CHANGE");
    if (!w->tty)
        subscribe(w, "STATE_MUTATION");
    struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"sync", 4};
    wslay_event_queue_msg(w->wslay, &ping);
    return 0;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    watch *w = arg;
    if (!w->open) {
        int rc = finish_handshake(w);
        if (rc != 0) {
            finish(w, rc);
            return;
        }
        if (!w->open)
            return;
    }
    if (wslay_event_recv(w->wslay) != 0 || wslay_event_send(w->wslay) != 0) {
        if (w->result == -1)
            finish(w, kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream broke (bad frame)"));
        return;
    }
    if (w->result == -1 && w->synced)
        after_events(w);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    watch *w = arg;
    if (what & BEV_EVENT_CONNECTED) {
        uint8_t raw[16];
        if (getentropy(raw, sizeof raw) != 0) {
            finish(w, kc_error(w->ctx, KC_EXIT_CONNECT, "no randomness for the websocket key"));
            return;
        }
        base64_encode_raw(w->key, sizeof raw, raw);
        w->key[BASE64_ENCODE_RAW_LENGTH(16)] = '\0';
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\n",
                            w->ctx->host, w->key);
        if (w->ctx->token) /* a daemon may guard its event stream with the REST token */
            evbuffer_add_printf(bufferevent_get_output(bev), "Authorization: Bearer %s\r\n",
                                w->ctx->token);
        evbuffer_add(bufferevent_get_output(bev), "\r\n", 2);
        return;
    }
    if (w->result != -1)
        return;
    if (what & BEV_EVENT_ERROR)
        finish(w, kc_error(w->ctx, KC_EXIT_CONNECT, "the event stream at %s: %s", w->ctx->host,
                           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
    else
        finish(w, kc_error(w->ctx, KC_EXIT_CONNECT, "the daemon closed the event stream"));
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch *w = arg;
    if (!w->until_converged) { /* a watch for that long: done (the table is drawn at the end) */
        finish(w, KC_EXIT_OK);
        return;
    }
    if (!w->tty && w->synced)
        draw(w);
    size_t pending = 0;
    converged(w, &pending);
    finish(w, kc_error(w->ctx, KC_EXIT_FAILED, "not converged in time: %zu node(s) still differ",
                       pending));
}

static void sigint_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg, KC_EXIT_OK);
}

/*
 * Where the event stream is: GET /ws -> {"host", "port" (string or number), "url"}.
 * 0 with *port set; 1 when the daemon has no stream (it answered, but not with a port:
 * the caller polls); an exit code when the daemon cannot be reached.
 */
static int ws_port(watch *w, unsigned *port, char *why, size_t why_len)
{
    kc_response r;
    int rc = kc_http(w->ctx, "GET", "/ws", NULL, 0, &r);
    if (rc != 0)
        return rc;
    cJSON *info = r.status == 200 && r.body ? cJSON_ParseWithLength(r.body, r.len) : NULL;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(info, "port");
    long v = cJSON_IsNumber(p) ? (long)p->valuedouble : cJSON_IsString(p) ? atol(p->valuestring) : 0;
    cJSON_Delete(info);
    if (v <= 0 || v > 65535) {
        snprintf(why, why_len, "GET /ws answered %d without a websocket port", r.status);
        kc_response_clear(&r);
        return 1;
    }
    kc_response_clear(&r);
    *port = (unsigned)v;
    return 0;
}

/* Polling (no event stream): read the lists every poll_s seconds. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch *w = arg;
    int rc = fetch_lists(w);
    if (rc != 0) {
        finish(w, rc);
        return;
    }
    if (finish_if_converged(w))
        return;
    if (w->tty)
        draw(w);
}

static int cmd_watch(kc_ctx *ctx, int argc, char **argv)
{
    watch w = {.ctx = ctx, .result = -1, .tty = isatty(STDOUT_FILENO) != 0};
    double timeout = 0;
    static const struct option opts[] = {{"until-converged", no_argument, NULL, 'u'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"poll", required_argument, NULL, 'P'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "ujh", opts, NULL)) != -1) {
        if (opt == 'u') {
            w.until_converged = true;
        } else if (opt == 'T') {
            char *end;
            timeout = strtod(optarg, &end);
            if (*end || timeout <= 0)
                return kc_error(ctx, KC_EXIT_USAGE, "--timeout %s: expected seconds > 0", optarg);
        } else if (opt == 'P') {
            char *end;
            w.poll_s = strtod(optarg, &end);
            if (*end || w.poll_s <= 0)
                return kc_error(ctx, KC_EXIT_USAGE, "--poll %s: expected seconds > 0", optarg);
        } else if (opt == 'j') {
            ctx->json = true;
            w.tty = false;
        } else {
            return kc_bad_option(ctx, &kc_cmd_watch_entry, opt, argv);
        }
    }
    if (optind != argc)
        return kc_usage(ctx, &kc_cmd_watch_entry);
    unsigned port = 0;
    char why[128];
    int rc = w.poll_s > 0 ? 1 : ws_port(&w, &port, why, sizeof why);
    if (rc > 1)
        return rc;
    if (rc == 1 && w.poll_s <= 0) {
        w.poll_s = 1.0;
        fprintf(stderr, "%s: no event stream (%s); polling every %g s\n", ctx->prog, why,
                w.poll_s);
    }
    w.base = event_base_new();
    if (!w.base)
        return kc_error(ctx, KC_EXIT_CONNECT, "cannot create an event loop");
    w.bev = bufferevent_socket_new(w.base, -1, BEV_OPT_CLOSE_ON_FREE);
    w.redraw = evtimer_new(w.base, redraw_cb, &w);
    w.deadline = evtimer_new(w.base, deadline_cb, &w);
    w.sigint = evsignal_new(w.base, SIGINT, sigint_cb, &w);
    bufferevent_setcb(w.bev, read_cb, NULL, event_cb, &w);
    bufferevent_enable(w.bev, EV_READ | EV_WRITE);
    event_add(w.sigint, NULL);
    if (timeout > 0) {
        struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (time_t)timeout) * 1e6)};
        evtimer_add(w.deadline, &tv);
    }
    w.poll = event_new(w.base, -1, EV_PERSIST, poll_cb, &w);
    if (w.poll_s > 0) {
        int first = fetch_lists(&w);
        if (first != 0) {
            w.result = first;
        } else {
            w.synced = true;
            draw(&w);
            if (w.until_converged && converged(&w, NULL)) {
                printf(ctx->json ? "{\"converged\": true}\n" : "converged\n");
                w.result = KC_EXIT_OK;
            } else {
                struct timeval tv = {(time_t)w.poll_s,
                                     (suseconds_t)((w.poll_s - (time_t)w.poll_s) * 1e6)};
                event_add(w.poll, &tv);
                event_base_dispatch(w.base);
            }
        }
    } else if (bufferevent_socket_connect_hostname(w.bev, NULL, AF_UNSPEC, ctx->host,
                                                   (int)port) != 0) {
        w.result = kc_error(ctx, KC_EXIT_CONNECT, "cannot connect to the event stream at %s:%u",
                            ctx->host, port);
    } else {
        event_base_dispatch(w.base);
    }
    if (w.result == KC_EXIT_OK && !w.until_converged && !w.tty && w.synced)
        draw(&w);
    if (w.wslay)
        wslay_event_context_free(w.wslay);
    bufferevent_free(w.bev);
    event_free(w.redraw);
    event_free(w.deadline);
    event_free(w.sigint);
    event_free(w.poll);
    event_base_free(w.base);
    cJSON_Delete(w.cfg);
    cJSON_Delete(w.dsc);
    return w.result < 0 ? KC_EXIT_OK : w.result;
}

const kc_cmd_entry kc_cmd_watch_entry = {
    .name = "watch",
    .usage = "[--until-converged] [--timeout SECONDS] [--poll SECONDS] [-j]",
    .summary = "live node table, updated from the event stream",
    .exec = cmd_watch,
};
