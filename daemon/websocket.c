/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * websocket.c: the event stream of kraken-daemon (SPEC 9.3).
 *
 * One evconnlistener accepts TCP connections; each connection is a
 * bufferevent that first carries an HTTP/1.1 upgrade request (parsed here:
 * only GET /ws with the RFC 6455 headers is accepted) and then websocket
 * frames, which libwslay encodes and decodes: wslay reads from the
 * bufferevent's input and writes into its output, so it never blocks and
 * never touches the socket. Sec-WebSocket-Accept is nettle's SHA-1 + base64.
 *
 * It runs as an in-process module (kraken/module.h, kd_websocket_module): a
 * service instance, "websocket" in kraken-daemon, whose Cfg config
 * (/Services/<id>/Config, WebSocket.Config) gives the port and keep-alive
 * durations and whose Cfg state starts and stops the listener through the
 * module's start/stop/config_changed handlers.
 *
 * Events come from one bus subscription held while at least one client is
 * connected. Each event is formatted and framed (wslay's frame encoder) once,
 * only if some client wants its type, and the frame is appended to every
 * subscribed client's output buffer. A client whose output buffer
 * would exceed the queue limit, or whose socket makes no write progress for
 * writeWait, is a slow consumer: it is sent a 1008 close frame and dropped,
 * and the other clients and the daemon carry on.
 */
#include "websocket.h"
#include "ws_proto.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#define MODULE_NAME "websocket"
#define CONFIG_SCHEMA "WebSocket.Config"
/* Where an instance's config and state live: "/Services/<id>" + these. */
#define CONFIG_PATH "/Config"
#define CONFIG_FIELD_PATH "/Config/" KRAKEN_TYPE_URL_PREFIX CONFIG_SCHEMA "/"
#define STATE_PATH "/State"
#define WS_PATH "/ws"

#define HANDSHAKE_MAX_BYTES 8192
/* The upgrade request must be complete within this long (or pongWait, if shorter). */
#define HANDSHAKE_TIMEOUT_MS 10000
/* Once a close frame is queued, how long the peer gets to read it and answer. */
#define CLOSE_GRACE_MAX_MS 5000
/* Events the bus may hold for this module between two loop iterations. */
#define BUS_QUEUE_LIMIT (1u << 18)
/* After accept() fails (out of descriptors), pause accepting this long. */
#define ACCEPT_PAUSE_MS 1000
/* RFC 6455 5.5: a control frame's payload is at most 125 bytes; 2 go to the status code. */
#define CLOSE_REASON_MAX 123

#define EVENT_TYPES KD_WS_EVENT_TYPES

/* Effective WebSocket.Config, durations in milliseconds. */
typedef struct ws_config {
    uint16_t port;
    uint32_t write_wait_ms;
    uint32_t pong_wait_ms;
    uint32_t ping_period_ms;
    int64_t max_message_size;
} ws_config;

typedef enum client_phase {
    PHASE_HANDSHAKE, /* reading the HTTP upgrade request */
    PHASE_OPEN,      /* websocket frames; events flow */
    PHASE_CLOSING    /* a close frame or an HTTP error is queued; no more events */
} client_phase;

typedef struct ws_client {
    kd_websocket *ws;
    struct ws_client *prev, *next;
    struct bufferevent *bev;
    wslay_event_context_ptr wslay;
    struct event *timer; /* ping period while open; close deadline while closing */
    client_phase phase;
    unsigned subs;       /* KRAKEN_EVENT_MASK()s the client subscribed to */
    bool http_only;      /* closing after an HTTP error answer (no websocket yet) */
    bool in_wslay;       /* inside wslay_event_recv/send: do not free now */
    bool free_pending;   /* free once out of wslay */
    bool deadline_armed; /* the timer is the close deadline */
    char peer[INET6_ADDRSTRLEN + 8];
} ws_client;

struct kd_websocket {
    kraken_engine *engine; /* NULL once the engine went first (module_detached) */
    struct event_base *base;
    char *bind_addr;
    char *service_id;      /* the service instance this is ("websocket" in kraken-daemon) */
    kraken_module *module; /* the instance on the module API */
    kraken_subscription *sub;
    struct evconnlistener *listener;
    struct event *accept_pause;
    uint16_t port;
    ws_config cfg;
    ws_client *clients; /* every connection, in any phase */
    size_t queue_limit;
    uint64_t bus_dropped_seen;
    kd_websocket_stats stats;
    char *token;  /* bearer token the upgrade must carry, or NULL */
    wslay_frame_context_ptr framer; /* frames each event once (see frame_text()) */
    struct frame_buf {
        uint8_t *bytes;
        size_t len, cap;
    } frame;
};

static const ws_config default_config = {
    .port = KD_WEBSOCKET_DEFAULT_PORT,
    .write_wait_ms = 10000,
    .pong_wait_ms = 60000,
    .ping_period_ms = 54000,
    .max_message_size = 512,
};

static void client_free(ws_client *c);
static bool client_flush(ws_client *c);
static void client_timer_cb(evutil_socket_t fd, short what, void *arg);
static void client_close(ws_client *c, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- small helpers --------------------------------------------------------------------------- */

#define ws_log(ws, level, ...)                                                                     \
    do {                                                                                           \
        if ((ws)->module)                                                                          \
            kraken_module_log((ws)->module, (level), __VA_ARGS__);                                 \
    } while (0)

static struct timeval ms_to_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static uint32_t handshake_timeout_ms(const kd_websocket *ws)
{
    return ws->cfg.pong_wait_ms < HANDSHAKE_TIMEOUT_MS ? ws->cfg.pong_wait_ms
                                                       : HANDSHAKE_TIMEOUT_MS;
}

/* ---- config ---------------------------------------------------------------------------------- */

/* WebSocket.Config as in the original's websocket.proto (SPEC Appendix A): the module's
 * schemas_json, registered by kraken_module_new() (an identical one again is harmless). */
static const char config_schema_json[] =
    "{\"schemas\": [{\"name\": \"" CONFIG_SCHEMA "\", \"fields\": ["
    "{\"name\": \"port\", \"number\": 2, \"type\": \"int32\"},"
    "{\"name\": \"writeWait\", \"number\": 3, \"type\": \"string\"},"
    "{\"name\": \"pongWait\", \"number\": 4, \"type\": \"string\"},"
    "{\"name\": \"pingPeriod\", \"number\": 5, \"type\": \"string\"},"
    "{\"name\": \"maxMessageSize\", \"number\": 6, \"type\": \"int64\"}]}]}";

int kd_websocket_register_schema(void)
{
    return kraken_schema_load_json(config_schema_json, sizeof config_schema_json - 1,
                                   MODULE_NAME);
}

/* "/Services/<id><path><field>" of service instance @p service_id. */
static void service_url(char *out, size_t len, const char *service_id, const char *path,
                        const char *field)
{
    snprintf(out, len, "/Services/%s%s%s", service_id, path, field ? field : "");
}

/* A field of the instance's Cfg config; an absent one reads as NONE. */
static int read_cfg_value(kd_websocket *ws, const char *field, kraken_value *out)
{
    char url[256];
    service_url(url, sizeof url, ws->service_id, CONFIG_FIELD_PATH, field);
    int rc = kraken_store_get_value(kraken_engine_store(ws->engine), KRAKEN_CFG,
                                    kraken_engine_self_id(ws->engine), url, out);
    if (rc == KRAKEN_ENOTFOUND) { /* an absent field is "unknown": the default applies */
        kraken_error_clear();
        *out = (kraken_value)KRAKEN_VALUE_INIT;
        return 0;
    }
    return rc;
}

static int read_duration(kd_websocket *ws, const char *field, uint32_t def, uint32_t *out,
                         char *why, size_t why_len)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = read_cfg_value(ws, field, &v);
    if (rc < 0) {
        snprintf(why, why_len, "%s", kraken_error_last());
        return rc;
    }
    *out = def;
    if (v.type == KRAKEN_T_STRING && v.v.str.len > 0) {
        uint64_t ms;
        if (kd_ws_parse_duration(v.v.str.data, &ms) != 0 || ms == 0) {
            snprintf(why, why_len,
                     CONFIG_SCHEMA " %s \"%.40s\": not a positive Go duration (e.g. \"10s\", "
                                   "\"1m30s\", \"500ms\")",
                     field, v.v.str.data);
            kraken_value_clear(&v);
            return KRAKEN_EINVAL;
        }
        *out = (uint32_t)ms;
    }
    kraken_value_clear(&v);
    return 0;
}

/* Read the service's Cfg config; zero or absent fields take the defaults. */
static int read_config(kd_websocket *ws, ws_config *out, char *why, size_t why_len)
{
    ws_config c = default_config;
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = read_cfg_value(ws, "Port", &v);
    if (rc < 0) {
        snprintf(why, why_len, "%s", kraken_error_last());
        return rc;
    }
    c.port = 0; /* a config without a port listens where the system says (see header) */
    if (v.type == KRAKEN_T_INT32) {
        if (v.v.i < 0 || v.v.i > 65535) {
            snprintf(why, why_len, CONFIG_SCHEMA " port %lld: out of range 0..65535",
                     (long long)v.v.i);
            return KRAKEN_EINVAL;
        }
        c.port = (uint16_t)v.v.i;
    }
    if ((rc = read_duration(ws, "WriteWait", default_config.write_wait_ms, &c.write_wait_ms, why,
                            why_len)) < 0 ||
        (rc = read_duration(ws, "PongWait", default_config.pong_wait_ms, &c.pong_wait_ms, why,
                            why_len)) < 0 ||
        (rc = read_duration(ws, "PingPeriod", default_config.ping_period_ms, &c.ping_period_ms,
                            why, why_len)) < 0)
        return rc;
    if ((rc = read_cfg_value(ws, "MaxMessageSize", &v)) < 0) {
        snprintf(why, why_len, "%s", kraken_error_last());
        return rc;
    }
    if (v.type == KRAKEN_T_INT64 && v.v.i != 0) {
        if (v.v.i < 0) {
            snprintf(why, why_len, CONFIG_SCHEMA " maxMessageSize %lld: must be positive",
                     (long long)v.v.i);
            return KRAKEN_EINVAL;
        }
        c.max_message_size = v.v.i;
    }
    if (c.ping_period_ms >= c.pong_wait_ms) {
        snprintf(why, why_len,
                 CONFIG_SCHEMA " pingPeriod (%u ms) must be shorter than pongWait (%u ms)",
                 c.ping_period_ms, c.pong_wait_ms);
        return KRAKEN_EINVAL;
    }
    *out = c;
    return 0;
}

/* The original's defaults, field by field; Port first. */
static const struct {
    const char *field, *text;
} config_defaults[] = {
    {"Port", "3142"},
    {"WriteWait", "10s"},
    {"PongWait", "1m0s"},
    {"PingPeriod", "54s"},
    {"MaxMessageSize", "512"},
};

/* Give every unset field of service @p service_id's config on the self node its default
 * (Port too unless @p skip_port). */
static int fill_config_defaults(kraken_store *store, const kraken_uuid *self,
                                const char *service_id, bool skip_port)
{
    for (size_t i = skip_port ? 1 : 0; i < sizeof config_defaults / sizeof config_defaults[0];
         i++) {
        char url[256];
        service_url(url, sizeof url, service_id, CONFIG_FIELD_PATH, config_defaults[i].field);
        kraken_value cur = KRAKEN_VALUE_INIT;
        int rc = kraken_store_get_value(store, KRAKEN_CFG, self, url, &cur);
        bool unset = rc == KRAKEN_ENOTFOUND || (rc == 0 && kraken_value_is_zero(&cur));
        kraken_value_clear(&cur);
        if (rc < 0 && rc != KRAKEN_ENOTFOUND)
            return rc;
        kraken_error_clear();
        if (unset && (rc = kraken_store_set_text(store, KRAKEN_CFG, self, url,
                                                 config_defaults[i].text)) < 0)
            return rc;
    }
    return 0;
}

int kd_websocket_preset_port(kraken_engine *engine, int port)
{
    if (!engine || port < 0 || port > 65535)
        return kraken_error_set(KRAKEN_EINVAL, "websocket: port %d is outside 0..65535", port);
    kraken_store *store = kraken_engine_store(engine);
    const kraken_uuid *self = kraken_engine_self_id(engine);
    /* The other fields first: a config of Port 0 alone would be all zero, i.e. unset. */
    int rc = fill_config_defaults(store, self, KD_WEBSOCKET_SERVICE_ID, true);
    char text[16], url[256];
    snprintf(text, sizeof text, "%d", port);
    service_url(url, sizeof url, KD_WEBSOCKET_SERVICE_ID, CONFIG_FIELD_PATH, "Port");
    if (rc == 0)
        rc = kraken_store_set_text(store, KRAKEN_CFG, self, url, text);
    return rc;
}

/* A self node without a websocket config gets the original's defaults, and RUN. */
static int write_default_config(kd_websocket *ws)
{
    kraken_store *store = kraken_engine_store(ws->engine);
    const kraken_uuid *self = kraken_engine_self_id(ws->engine);
    char config_url[256], state_url[256];
    service_url(config_url, sizeof config_url, ws->service_id, CONFIG_PATH, NULL);
    service_url(state_url, sizeof state_url, ws->service_id, STATE_PATH, NULL);
    kraken_value cur = KRAKEN_VALUE_INIT;
    int rc = kraken_store_get_value(store, KRAKEN_CFG, self, config_url, &cur);
    /* An unset config reads as the zero (empty) record, not as "not found". */
    bool absent = rc == KRAKEN_ENOTFOUND || (rc == 0 && kraken_value_is_zero(&cur));
    kraken_value_clear(&cur);
    if (rc < 0 && rc != KRAKEN_ENOTFOUND)
        return rc;
    kraken_error_clear();
    if (absent && (rc = fill_config_defaults(store, self, ws->service_id, false)) < 0)
        return rc;
    kraken_value state = KRAKEN_VALUE_INIT;
    rc = kraken_store_get_value(store, KRAKEN_CFG, self, state_url, &state);
    bool unknown = rc < 0 || state.type != KRAKEN_T_ENUM || state.v.i == KRAKEN_SERVICE_UNKNOWN;
    kraken_value_clear(&state);
    kraken_error_clear();
    if (unknown)
        return kraken_store_set_text(store, KRAKEN_CFG, self, state_url, "RUN");
    return 0;
}

static bool cfg_wants_run(kd_websocket *ws)
{
    char url[256];
    service_url(url, sizeof url, ws->service_id, STATE_PATH, NULL);
    kraken_value state = KRAKEN_VALUE_INIT;
    int rc = kraken_store_get_value(kraken_engine_store(ws->engine), KRAKEN_CFG,
                                    kraken_engine_self_id(ws->engine), url, &state);
    bool run = rc == 0 && state.type == KRAKEN_T_ENUM && state.v.i == KRAKEN_SERVICE_RUN;
    kraken_value_clear(&state);
    kraken_error_clear();
    return run;
}

/* ---- event formatting ------------------------------------------------------------------------ */

static const char *change_kind_name(int kind)
{
    switch (kind) {
    case KRAKEN_CHANGE_CREATE: return "CREATE";
    case KRAKEN_CHANGE_READ: return "READ";
    case KRAKEN_CHANGE_UPDATE: return "UPDATE";
    case KRAKEN_CHANGE_DELETE: return "DELETE";
    case KRAKEN_CHANGE_CFG_UPDATE: return "CFG_UPDATE";
    default: return "UNKNOWN";
    }
}

static const char *mutation_kind_name(int kind)
{
    switch (kind) {
    case KRAKEN_MUTATION_MUTATE: return "MUTATE";
    case KRAKEN_MUTATION_INTERRUPT: return "INTERRUPT";
    case KRAKEN_MUTATION_FAILED: return "FAILED";
    case KRAKEN_MUTATION_DONE: return "DONE";
    default: return "UNKNOWN";
    }
}

static char *value_text(const kraken_value *v)
{
    char *text = NULL;
    if (!v || v->type == KRAKEN_T_NONE || kraken_value_format(v, &text) < 0) {
        kraken_error_clear();
        return strdup("");
    }
    return text;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/*
 * The original's payload: {"type", "url", "data", "nodeid", "value"}. "data" is
 * the original's human-readable line; the dashboard looks for "(CREATE)" and
 * "(CFG_UPDATE" in it to know when to refetch the node lists.
 */
static char *format_event(const kraken_event *ev, size_t *len)
{
    char node[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid_format(&ev->node_id, node);
    const char *url = ev->url ? ev->url : "";
    char *value = NULL, *data = NULL;
    switch (ev->type) {
    case KRAKEN_EVENT_STATE_CHANGE:
        value = value_text(ev->new_value);
        if (ev->kind == KRAKEN_CHANGE_CREATE || ev->kind == KRAKEN_CHANGE_DELETE)
            data = str_printf("(%s) %s", change_kind_name(ev->kind), node);
        else
            data = str_printf("(%s) %s:%s = %s", change_kind_name(ev->kind), node, url,
                              value ? value : "");
        break;
    case KRAKEN_EVENT_STATE_MUTATION:
        value = strdup(ev->mutation_id ? ev->mutation_id : "");
        data = str_printf("(%s) %s : %s -> %s%s%s", mutation_kind_name(ev->kind), node,
                          ev->service_id ? ev->service_id : "",
                          ev->mutation_id ? ev->mutation_id : "", ev->message ? ": " : "",
                          ev->message ? ev->message : "");
        break;
    case KRAKEN_EVENT_DISCOVERY:
        value = value_text(ev->new_value);
        data = str_printf("(%s) %s:%s == %s", ev->service_id ? ev->service_id : "", node, url,
                          value ? value : "");
        break;
    default:
        return NULL;
    }
    char *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (o && value && data && cJSON_AddNumberToObject(o, "type", (double)ev->type) &&
        cJSON_AddStringToObject(o, "url", url) && cJSON_AddStringToObject(o, "data", data) &&
        cJSON_AddStringToObject(o, "nodeid", node) && cJSON_AddStringToObject(o, "value", value))
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(value);
    free(data);
    if (out)
        *len = strlen(out);
    return out;
}

/* ---- wslay glue ------------------------------------------------------------------------------ */

static ssize_t wslay_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user_data)
{
    (void)flags;
    ws_client *c = user_data;
    int n = evbuffer_remove(bufferevent_get_input(c->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

/* Frames go into the bufferevent's output; libevent writes them when the socket allows. */
static ssize_t wslay_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user_data)
{
    (void)flags;
    ws_client *c = user_data;
    if (evbuffer_add(bufferevent_get_output(c->bev), data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void handle_text(ws_client *c, const uint8_t *msg, size_t len)
{
    char why[CLOSE_REASON_MAX + 1];
    unsigned mask = 0;
    uint16_t code = 0;
    int command = kd_ws_parse_subscribe((const char *)msg, len, &mask, &code, why, sizeof why);
    if (command < 0) {
        c->ws->stats.closed_bad_input++;
        client_close(c, code, "%s", why);
        return;
    }
    if (command == 0)
        c->subs |= mask;
    else
        c->subs &= ~mask;
    ws_log(c->ws, KRAKEN_LOG_DDEBUG, "client %s %s 0x%x, now 0x%x", c->peer,
           command == 0 ? "subscribed to" : "unsubscribed from", mask, c->subs);
}

static void wslay_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user_data)
{
    (void)ctx;
    ws_client *c = user_data;
    if (c->phase != PHASE_OPEN)
        return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        handle_text(c, arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        c->ws->stats.closed_bad_input++;
        client_close(c, WSLAY_CODE_UNSUPPORTED_DATA,
                     "binary messages are not supported: send JSON text");
        break;
    case WSLAY_CONNECTION_CLOSE: /* wslay answers it; we stop sending events */
        c->phase = PHASE_CLOSING;
        ws_log(c->ws, KRAKEN_LOG_DEBUG, "client %s closed the stream (code %u)", c->peer,
               arg->status_code);
        break;
    default: /* PING is answered by wslay; PONG only proves the peer is alive (read timeout) */
        break;
    }
}

static const struct wslay_event_callbacks wslay_callbacks = {
    .recv_callback = wslay_recv_cb,
    .send_callback = wslay_send_cb,
    .on_msg_recv_callback = wslay_msg_cb,
};

/* ---- clients --------------------------------------------------------------------------------- */

static void on_event(const kraken_event *ev, void *userdata);

static void update_subscription(kd_websocket *ws)
{
    if (ws->stats.clients > 0 && !ws->sub && ws->engine) {
        kraken_subscribe_options opts = {
            .version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = EVENT_TYPES, .url_pattern = NULL, .queue_limit = BUS_QUEUE_LIMIT};
        if (kraken_bus_subscribe(kraken_engine_bus(ws->engine), &opts, on_event, ws, NULL,
                                 &ws->sub) < 0) {
            ws_log(ws, KRAKEN_LOG_ERROR, "cannot subscribe to the event bus: %s",
                   kraken_error_last());
            kraken_error_clear();
        }
        ws->bus_dropped_seen = 0;
    } else if (ws->stats.clients == 0 && ws->sub) {
        kraken_subscription_remove(ws->sub);
        ws->sub = NULL;
    }
}

static void client_unlink(ws_client *c)
{
    kd_websocket *ws = c->ws;
    if (c->prev)
        c->prev->next = c->next;
    else if (ws->clients == c)
        ws->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void client_free(ws_client *c)
{
    if (c->in_wslay) {
        c->free_pending = true;
        return;
    }
    kd_websocket *ws = c->ws;
    bool was_counted = c->wslay != NULL;
    client_unlink(c);
    if (c->timer)
        event_free(c->timer);
    if (c->wslay)
        wslay_event_context_free(c->wslay);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
    if (was_counted) {
        ws->stats.clients--;
        update_subscription(ws);
    }
}

/* While closing: the timer becomes the deadline for the peer to read and answer. */
static void arm_close_deadline(ws_client *c)
{
    if (c->deadline_armed)
        return;
    c->deadline_armed = true;
    uint32_t grace = c->ws->cfg.write_wait_ms < CLOSE_GRACE_MAX_MS ? c->ws->cfg.write_wait_ms
                                                                   : CLOSE_GRACE_MAX_MS;
    struct timeval tv = ms_to_tv(grace);
    event_del(c->timer);
    event_assign(c->timer, c->ws->base, -1, 0, client_timer_cb, c);
    event_add(c->timer, &tv);
}

/*
 * Run wslay (recv and/or send) on a client; free it when it is finished.
 * Returns false when the client was freed.
 */
static bool client_pump(ws_client *c, bool recv)
{
    c->in_wslay = true;
    int rc = 0;
    if (recv && wslay_event_want_read(c->wslay))
        rc = wslay_event_recv(c->wslay);
    if (rc == 0 && wslay_event_want_write(c->wslay))
        rc = wslay_event_send(c->wslay);
    c->in_wslay = false;
    if (c->free_pending || rc != 0) {
        client_free(c);
        return false;
    }
    /* Close handshake complete (both frames exchanged): nothing more to say. */
    if (!wslay_event_want_read(c->wslay) && !wslay_event_want_write(c->wslay))
        return client_flush(c);
    if (c->phase == PHASE_CLOSING)
        arm_close_deadline(c);
    return true;
}

/* Stop talking; free the client once its output is written (or the grace time ends). */
static bool client_flush(ws_client *c)
{
    c->phase = PHASE_CLOSING;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        client_free(c);
        return false;
    }
    arm_close_deadline(c);
    return true;
}

/* Queue a close frame with a reason (truncated to fit, control characters replaced). */
static void client_close(ws_client *c, uint16_t code, const char *fmt, ...)
{
    if (!c->wslay || wslay_event_get_close_sent(c->wslay)) {
        c->phase = PHASE_CLOSING;
        return;
    }
    char reason[CLOSE_REASON_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    for (char *p = reason; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    c->phase = PHASE_CLOSING;
    ws_log(c->ws, code == WSLAY_CODE_NORMAL_CLOSURE || code == WSLAY_CODE_GOING_AWAY
                      ? KRAKEN_LOG_DEBUG
                      : KRAKEN_LOG_NOTICE,
           "closing client %s: %u %s", c->peer, code, reason);
    wslay_event_queue_close(c->wslay, code, (const uint8_t *)reason, strlen(reason));
    if (!c->in_wslay)
        client_pump(c, false);
}

/* A timer per client: pings while open, the close deadline while closing. */
static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ws_client *c = arg;
    if (c->phase == PHASE_OPEN) {
        struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
        wslay_event_queue_msg(c->wslay, &ping);
        client_pump(c, false);
        return;
    }
    if (c->phase == PHASE_HANDSHAKE)
        ws_log(c->ws, KRAKEN_LOG_INFO, "client %s: no complete upgrade request within %u ms",
               c->peer, handshake_timeout_ms(c->ws));
    client_free(c); /* handshake or close grace time over */
}

/* The peer stopped reading or writing for longer than allowed. */
static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    ws_client *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->phase == PHASE_OPEN && (what & BEV_EVENT_WRITING)) {
            c->ws->stats.dropped_slow++;
            ws_log(c->ws, KRAKEN_LOG_WARNING,
                   "dropping slow client %s: no write progress for %u ms (%zu bytes queued)",
                   c->peer, c->ws->cfg.write_wait_ms,
                   evbuffer_get_length(bufferevent_get_output(c->bev)));
        } else if (c->phase == PHASE_OPEN) {
            ws_log(c->ws, KRAKEN_LOG_NOTICE, "dropping client %s: silent for %u ms (no pong)",
                   c->peer, c->ws->cfg.pong_wait_ms);
        }
        client_free(c);
        return;
    }
    /* EOF or socket error: nothing can be said to the peer any more. */
    if (c->phase == PHASE_OPEN)
        ws_log(c->ws, KRAKEN_LOG_DEBUG, "client %s went away%s", c->peer,
               (what & BEV_EVENT_ERROR) ? " (socket error)" : "");
    client_free(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    ws_client *c = arg;
    if (c->phase != PHASE_CLOSING)
        return;
    /* An HTTP error answer, or our close frame after the peer's: done. */
    if (c->http_only || !c->wslay ||
        (!wslay_event_want_read(c->wslay) && !wslay_event_want_write(c->wslay)))
        client_free(c);
}

/* ---- the HTTP upgrade ------------------------------------------------------------------------ */

static const char *ws_token(const kd_websocket *ws)
{
    return ws->token;
}

/* Answer a refused upgrade with an HTTP error and a JSON body, then close. */
static void http_refuse(ws_client *c, int status, const char *status_text, const char *extra,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void http_refuse(ws_client *c, int status, const char *status_text, const char *extra,
                        const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    char *body = o && cJSON_AddStringToObject(o, "error", msg) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Access-Control-Allow-Origin: *\r\n%sConnection: close\r\n"
                        "Content-Length: %zu\r\n\r\n%s\n",
                        status, status_text, extra ? extra : "", body ? strlen(body) + 1 : 1,
                        body ? body : "");
    cJSON_free(body);
    c->ws->stats.rejected++;
    ws_log(c->ws, KRAKEN_LOG_INFO, "refused upgrade from %s: %d %s", c->peer, status, msg);
    c->http_only = true;
    c->phase = PHASE_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    client_flush(c);
}

/* The handshake is done: switch the connection to websocket frames. */
static void client_open(ws_client *c, const char *key)
{
    kd_websocket *ws = c->ws;
    char accept[KD_WS_ACCEPT_LEN + 1];
    kd_ws_accept_key(key, accept);
    if (wslay_event_context_server_init(&c->wslay, &wslay_callbacks, c) != 0) {
        c->wslay = NULL;
        http_refuse(c, 503, "Service Unavailable", NULL, "websocket: out of memory");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->wslay, (uint64_t)ws->cfg.max_message_size);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
    c->phase = PHASE_OPEN;
    ws->stats.clients++;
    ws->stats.accepted++;
    update_subscription(ws);
    struct timeval rd = ms_to_tv(ws->cfg.pong_wait_ms), wr = ms_to_tv(ws->cfg.write_wait_ms);
    bufferevent_set_timeouts(c->bev, &rd, &wr);
    struct timeval ping = ms_to_tv(ws->cfg.ping_period_ms);
    event_del(c->timer);
    event_assign(c->timer, ws->base, -1, EV_PERSIST, client_timer_cb, c);
    event_add(c->timer, &ping);
    ws_log(ws, KRAKEN_LOG_INFO, "client %s connected (%llu now)", c->peer,
           (unsigned long long)ws->stats.clients);
}

static void handshake_read(ws_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > HANDSHAKE_MAX_BYTES)
            http_refuse(c, 431, "Request Header Fields Too Large", NULL,
                        "websocket: request header larger than %d bytes", HANDSHAKE_MAX_BYTES);
        return;
    }
    size_t head_len = (size_t)end.pos + 4;
    if (head_len > HANDSHAKE_MAX_BYTES) {
        http_refuse(c, 431, "Request Header Fields Too Large", NULL,
                    "websocket: request header larger than %d bytes", HANDSHAKE_MAX_BYTES);
        return;
    }
    char *head = malloc(head_len + 1);
    if (!head) {
        client_free(c);
        return;
    }
    evbuffer_remove(in, head, head_len);
    head[head_len] = '\0';
    kd_ws_upgrade r;
    bool ok = kd_ws_parse_upgrade(head, &r);
    free(head);
    if (!ok)
        http_refuse(c, 400, "Bad Request", NULL, "websocket: malformed HTTP request head");
    else if (strcmp(r.path, WS_PATH) != 0)
        http_refuse(c, 404, "Not Found", NULL, "websocket: no such path %.64s (the event stream is at "
                    WS_PATH ")", r.path);
    else if (strcmp(r.method, "GET") != 0)
        http_refuse(c, 405, "Method Not Allowed", "Allow: GET\r\n",
                    "websocket: method %s not allowed on " WS_PATH " (use GET)", r.method);
    else if (!r.upgrade_websocket || !r.connection_upgrade)
        http_refuse(c, 426, "Upgrade Required", "Upgrade: websocket\r\n",
                    "websocket: " WS_PATH " needs a websocket upgrade (Upgrade: websocket, "
                    "Connection: Upgrade)");
    else if (strcmp(r.version, "13") != 0)
        http_refuse(c, 426, "Upgrade Required", "Sec-WebSocket-Version: 13\r\n",
                    "websocket: unsupported Sec-WebSocket-Version \"%.8s\" (13 required)",
                    r.version);
    else if (!kd_ws_token_ok(&r, ws_token(c->ws)))
        http_refuse(c, 401, "Unauthorized", "WWW-Authenticate: Bearer realm=\"kraken\"\r\n",
                    "websocket: this event stream needs a bearer token (Authorization: Bearer "
                    "<token>, or ?token=<token> from a browser)");
    else if (!kd_ws_key_valid(r.key))
        http_refuse(c, 400, "Bad Request", NULL,
                    "websocket: missing or malformed Sec-WebSocket-Key (16 bytes in base64)");
    else {
        client_open(c, r.key);
        /* Frames sent right behind the request are already in the input buffer. */
        if (c->phase == PHASE_OPEN && evbuffer_get_length(in) > 0)
            client_pump(c, true);
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    ws_client *c = arg;
    if (c->phase == PHASE_HANDSHAKE)
        handshake_read(c);
    else if (c->wslay && !c->http_only)
        client_pump(c, true);
    else
        evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
}

static void format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)listener;
    (void)socklen;
    kd_websocket *ws = arg;
    ws_client *c = calloc(1, sizeof *c);
    struct bufferevent *bev =
        c ? bufferevent_socket_new(ws->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    struct event *timer = bev ? event_new(ws->base, -1, 0, client_timer_cb, c) : NULL;
    if (!timer) {
        if (bev)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        free(c);
        ws_log(ws, KRAKEN_LOG_ERROR, "out of memory accepting a websocket client");
        return;
    }
    /* Events are small frames that should leave at once, not wait for Nagle's timer. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ws = ws;
    c->bev = bev;
    c->timer = timer;
    c->phase = PHASE_HANDSHAKE;
    format_peer(sa, c->peer, sizeof c->peer);
    c->next = ws->clients;
    if (ws->clients)
        ws->clients->prev = c;
    ws->clients = c;
    bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, c);
    struct timeval hs = ms_to_tv(handshake_timeout_ms(ws));
    event_add(timer, &hs);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- events to clients ----------------------------------------------------------------------- */

static void drop_slow(ws_client *c, size_t queued)
{
    c->ws->stats.dropped_slow++;
    ws_log(c->ws, KRAKEN_LOG_WARNING,
           "dropping slow client %s: %zu bytes of events queued (limit %zu)", c->peer, queued,
           c->ws->queue_limit);
    client_close(c, WSLAY_CODE_POLICY_VIOLATION,
                 "slow consumer: more than %zu bytes of events queued", c->ws->queue_limit);
}

/*
 * One event, framed once: server frames are unmasked, so the bytes are the
 * same for every client and are copied into each one's output buffer. (Small
 * copies into contiguous buffers measured cheaper than sharing the frame by
 * reference, which makes a chain per event per client.)
 */
typedef struct frame_buf frame_buf;

/* wslay's frame encoder writes the header and payload here. */
static ssize_t frame_sink_cb(const uint8_t *data, size_t len, int flags, void *user_data)
{
    (void)flags;
    frame_buf *f = user_data;
    if (len > f->cap - f->len)
        return -1;
    memcpy(f->bytes + f->len, data, len);
    f->len += len;
    return (ssize_t)len;
}

static bool frame_text(kd_websocket *ws, const char *msg, size_t len)
{
    frame_buf *f = &ws->frame;
    if (f->cap < len + 14) { /* 14: the largest frame header */
        uint8_t *bigger = realloc(f->bytes, len + 14);
        if (!bigger)
            return false;
        f->bytes = bigger;
        f->cap = len + 14;
    }
    f->len = 0;
    struct wslay_frame_iocb iocb = {.fin = 1, .opcode = WSLAY_TEXT_FRAME, .payload_length = len,
                                    .mask = 0, .data = (const uint8_t *)msg, .data_length = len};
    size_t sent = 0;
    do {
        ssize_t n = wslay_frame_send(ws->framer, &iocb);
        if (n < 0)
            return false;
        sent += (size_t)n;
        iocb.data += n;
        iocb.data_length -= (size_t)n;
    } while (sent < len);
    return true;
}

static void on_event(const kraken_event *ev, void *userdata)
{
    kd_websocket *ws = userdata;
    uint64_t dropped = ws->sub ? kraken_subscription_dropped(ws->sub) : 0;
    if (dropped > ws->bus_dropped_seen) {
        ws->stats.bus_dropped += dropped - ws->bus_dropped_seen;
        ws_log(ws, KRAKEN_LOG_WARNING,
               "the event bus dropped %llu events before the websocket stream could send them",
               (unsigned long long)(dropped - ws->bus_dropped_seen));
        ws->bus_dropped_seen = dropped;
    }
    unsigned mask = KRAKEN_EVENT_MASK(ev->type);
    bool framed = false;
    for (ws_client *c = ws->clients, *next; c; c = next) {
        next = c->next;
        if (c->phase != PHASE_OPEN || !(c->subs & mask))
            continue;
        if (!framed) { /* formatted only when someone wants it */
            size_t len = 0;
            char *msg = format_event(ev, &len);
            framed = msg && frame_text(ws, msg, len);
            cJSON_free(msg);
            if (!framed) {
                ws_log(ws, KRAKEN_LOG_ERROR, "out of memory formatting an event");
                return;
            }
        }
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t queued = evbuffer_get_length(out);
        if (queued + ws->frame.len > ws->queue_limit) {
            drop_slow(c, queued);
            continue;
        }
        /* wslay's own queue is always empty here (its frames go out whole, at once), so a
         * data frame added behind it cannot split one of its control frames. */
        if (evbuffer_add(out, ws->frame.bytes, ws->frame.len) != 0) {
            client_free(c);
            continue;
        }
        ws->stats.events_sent++;
    }
}

/* ---- the listener ---------------------------------------------------------------------------- */

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kd_websocket *ws = arg;
    if (ws->listener)
        evconnlistener_enable(ws->listener);
}

/* accept() failed, typically EMFILE: pause rather than spin on a readable listener. */
static void accept_error_cb(struct evconnlistener *listener, void *arg)
{
    kd_websocket *ws = arg;
    int err = EVUTIL_SOCKET_ERROR();
    ws_log(ws, KRAKEN_LOG_ERROR, "websocket accept failed: %s; pausing %d ms",
           evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    evconnlistener_disable(listener);
    struct timeval tv = ms_to_tv(ACCEPT_PAUSE_MS);
    event_add(ws->accept_pause, &tv);
}

static int make_sockaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                         socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (evutil_inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof *in;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN];
    size_t n = strlen(addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, addr + 1, n - 2);
        buf[n - 2] = '\0';
        addr = buf;
    }
    if (evutil_inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}

static uint16_t bound_port(struct evconnlistener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void listener_close(kd_websocket *ws)
{
    if (ws->listener) {
        evconnlistener_free(ws->listener);
        ws->listener = NULL;
        ws_log(ws, KRAKEN_LOG_NOTICE, "stopped listening on %s port %u", ws->bind_addr,
               ws->port);
    }
    if (ws->accept_pause)
        event_del(ws->accept_pause);
    ws->port = 0;
}

/* Listen on bind_addr:cfg.port (replacing the current listener on success only). */
static int listener_open(kd_websocket *ws, const ws_config *cfg, char *why, size_t why_len)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_sockaddr(ws->bind_addr, cfg->port, &ss, &len) != 0) {
        snprintf(why, why_len, "websocket: bind address \"%s\" is not an IPv4 or IPv6 address",
                 ws->bind_addr);
        return KRAKEN_EINVAL;
    }
    if (ws->listener && cfg->port == ws->port && cfg->port != 0)
        return 0; /* already there */
    /* A config change to the same fixed port needs the old socket closed first. */
    if (ws->listener && cfg->port == ws->port)
        listener_close(ws);
    struct evconnlistener *l =
        evconnlistener_new_bind(ws->base, accept_cb, ws, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                512, (struct sockaddr *)&ss, (int)len);
    if (!l) {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(why, why_len, "websocket: cannot listen on %s port %u: %s", ws->bind_addr,
                 cfg->port, evutil_socket_error_to_string(err));
        return KRAKEN_EIO;
    }
    listener_close(ws);
    evconnlistener_set_error_cb(l, accept_error_cb);
    ws->listener = l;
    ws->port = bound_port(l);
    /* NOTICE, as the REST API's: an operator at the default level sees both ports */
    ws_log(ws, KRAKEN_LOG_NOTICE, "listening on %s port %u, path " WS_PATH, ws->bind_addr,
           ws->port);
    return 0;
}

static void close_all_clients(kd_websocket *ws, uint16_t code, const char *reason)
{
    for (ws_client *c = ws->clients, *next; c; c = next) {
        next = c->next;
        if (c->phase == PHASE_OPEN)
            client_close(c, code, "%s", reason);
        else if (c->phase == PHASE_HANDSHAKE)
            client_free(c);
    }
}

/* ---- module handlers ------------------------------------------------------------------------ */

static void module_start(kraken_module *module, const kraken_value *config, void *userdata)
{
    (void)config; /* read field by field from Cfg: absent and zero fields take the defaults */
    kd_websocket *ws = userdata;
    char why[256];
    ws_config cfg;
    int rc = read_config(ws, &cfg, why, sizeof why);
    if (rc == 0 && !(ws->listener && ws->cfg.port == cfg.port))
        rc = listener_open(ws, &cfg, why, sizeof why);
    if (rc < 0) {
        ws_log(ws, KRAKEN_LOG_ERROR, "%s", why);
        kraken_module_set_state(module, KRAKEN_SERVICE_ERROR, why);
        return;
    }
    ws->cfg = cfg;
    kraken_module_set_state(module, KRAKEN_SERVICE_RUN, NULL);
}

static void module_stop(kraken_module *module, void *userdata)
{
    kd_websocket *ws = userdata;
    close_all_clients(ws, WSLAY_CODE_GOING_AWAY, "websocket service stopped");
    listener_close(ws);
    kraken_module_set_state(module, KRAKEN_SERVICE_STOP, NULL);
}

static void module_config_changed(kraken_module *module, const kraken_value *config,
                                  void *userdata)
{
    (void)config;
    kd_websocket *ws = userdata;
    char why[256];
    ws_config cfg;
    int rc = read_config(ws, &cfg, why, sizeof why);
    if (rc == 0 && ws->listener && (cfg.port != ws->cfg.port))
        rc = listener_open(ws, &cfg, why, sizeof why);
    if (rc < 0) {
        /* Keep serving as before; the operator sees why in the service's error_msg. */
        ws_log(ws, KRAKEN_LOG_ERROR, "config change refused: %s", why);
        kraken_module_set_state(module, KRAKEN_SERVICE_ERROR, why);
        return;
    }
    ws->cfg = cfg;
    /* New keep-alive values apply to connected clients from their next timer. */
    for (ws_client *c = ws->clients; c; c = c->next) {
        if (c->phase != PHASE_OPEN)
            continue;
        struct timeval rd = ms_to_tv(cfg.pong_wait_ms), wr = ms_to_tv(cfg.write_wait_ms),
                       ping = ms_to_tv(cfg.ping_period_ms);
        bufferevent_set_timeouts(c->bev, &rd, &wr);
        event_add(c->timer, &ping);
        wslay_event_config_set_max_recv_msg_length(c->wslay, (uint64_t)cfg.max_message_size);
    }
    if (ws->listener)
        kraken_module_set_state(module, KRAKEN_SERVICE_RUN, NULL);
}

/*
 * The engine was freed before the module (kraken_module_set_detach_hook()): nothing may
 * touch the engine any more. Stop listening and let the clients go; kd_websocket_free()
 * releases the rest.
 */
static void module_detached(kraken_module *module, void *userdata)
{
    (void)module;
    kd_websocket *ws = userdata;
    ws->engine = NULL; /* the subscription handle stays ours to remove */
    close_all_clients(ws, WSLAY_CODE_GOING_AWAY, "websocket service removed");
    listener_close(ws);
}

/*
 * The module, on the module API (kraken/module.h). Events do not come through the
 * descriptor's event handler (event_types 0) but from a bus subscription of its own,
 * held only while a client is connected, with its own queue bound and drop counter
 * (update_subscription(); doc/PERFORMANCE.md has the measurement).
 */
const kraken_module_desc kd_websocket_module = {
    .abi_version = KRAKEN_MODULE_ABI_VERSION,
    .name = MODULE_NAME,
    .schemas_json = config_schema_json,
    .config_schema = CONFIG_SCHEMA,
    .handlers = {.start = module_start, .stop = module_stop,
                 .config_changed = module_config_changed},
};

/* ---- public API ------------------------------------------------------------------------------ */

int kd_websocket_new(kd_websocket **out, kraken_engine *engine, struct event_base *base,
                     const char *bind_addr)
{
    return kd_websocket_new_instance(out, engine, base, bind_addr, KD_WEBSOCKET_SERVICE_ID, true);
}

int kd_websocket_new_instance(kd_websocket **out, kraken_engine *engine, struct event_base *base,
                              const char *bind_addr, const char *service_id, bool listen_now)
{
    if (out)
        *out = NULL;
    if (!out || !engine || !base || !service_id)
        return kraken_error_set(KRAKEN_EINVAL,
                                "kd_websocket_new: out, engine, base and service id are required");
    kd_websocket *ws = calloc(1, sizeof *ws);
    if (!ws || !(ws->bind_addr = strdup(bind_addr ? bind_addr : "127.0.0.1")) ||
        !(ws->service_id = strdup(service_id)) ||
        !(ws->accept_pause = evtimer_new(base, accept_resume_cb, ws))) {
        if (ws) {
            free(ws->bind_addr);
            free(ws->service_id);
        }
        free(ws);
        return kraken_error_set(KRAKEN_ENOMEM, "kd_websocket_new: out of memory");
    }
    static const struct wslay_frame_callbacks framer_callbacks = {.send_callback = frame_sink_cb};
    if (wslay_frame_context_init(&ws->framer, &framer_callbacks, &ws->frame) != 0) {
        event_free(ws->accept_pause);
        free(ws->bind_addr);
        free(ws->service_id);
        free(ws);
        return kraken_error_set(KRAKEN_ENOMEM, "kd_websocket_new: out of memory");
    }
    ws->engine = engine;
    ws->base = base;
    ws->queue_limit = KD_WEBSOCKET_DEFAULT_QUEUE_BYTES;
    ws->cfg = default_config;
    char why[256];
    int rc = kraken_module_new(&ws->module, engine, &kd_websocket_module, service_id, ws, NULL);
    if (rc == 0)
        rc = kraken_module_set_detach_hook(ws->module, module_detached);
    if (rc == 0)
        rc = write_default_config(ws);
    if (rc < 0) {
        snprintf(why, sizeof why, "%s", kraken_error_last());
    } else if ((rc = read_config(ws, &ws->cfg, why, sizeof why)) == 0 && listen_now &&
               cfg_wants_run(ws)) {
        /* Listen now, so that a bad address or a busy port is the caller's error. */
        rc = listener_open(ws, &ws->cfg, why, sizeof why);
    }
    if (rc < 0) {
        kd_websocket_free(ws);
        return kraken_error_set(rc, "%s", why);
    }
    *out = ws;
    return 0;
}

void kd_websocket_free(kd_websocket *ws)
{
    if (!ws)
        return;
    /* Tell open clients why they go (best effort: whatever the socket takes now). */
    for (ws_client *c = ws->clients; c; c = c->next) {
        if (c->phase == PHASE_OPEN && c->wslay) {
            static const char reason[] = "server shutting down";
            wslay_event_queue_close(c->wslay, WSLAY_CODE_GOING_AWAY, (const uint8_t *)reason,
                                    sizeof reason - 1);
            wslay_event_send(c->wslay);
        }
        evbuffer_write(bufferevent_get_output(c->bev), bufferevent_getfd(c->bev));
    }
    while (ws->clients)
        client_free(ws->clients);
    listener_close(ws);
    if (ws->accept_pause)
        event_free(ws->accept_pause);
    ws->accept_pause = NULL;
    /* Both handles are released here even when the engine (and its bus) went first. */
    kraken_subscription_remove(ws->sub);
    kraken_module_free(ws->module);
    ws->module = NULL;
    wslay_frame_context_free(ws->framer);
    free(ws->frame.bytes);
    free(ws->token);
    free(ws->bind_addr);
    free(ws->service_id);
    free(ws);
}

uint16_t kd_websocket_port(const kd_websocket *ws)
{
    return ws && ws->listener ? ws->port : 0;
}

int kd_websocket_set_token(kd_websocket *ws, const char *token)
{
    if (!ws)
        return kraken_error_set(KRAKEN_EINVAL, "kd_websocket_set_token: no websocket");
    char *copy = NULL;
    if (token && *token && !(copy = strdup(token)))
        return kraken_error_set(KRAKEN_ENOMEM, "kd_websocket_set_token: out of memory");
    free(ws->token);
    ws->token = copy;
    return 0;
}

void kd_websocket_set_queue_limit(kd_websocket *ws, size_t bytes)
{
    if (ws)
        ws->queue_limit = bytes > 0 ? bytes : KD_WEBSOCKET_DEFAULT_QUEUE_BYTES;
}

void kd_websocket_get_stats(const kd_websocket *ws, kd_websocket_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (ws)
        *out = ws->stats;
}
