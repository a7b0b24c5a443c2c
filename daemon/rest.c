/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * rest.c: the REST API's HTTP side on libevent's evhttp, run as an in-process
 * module "restapi" (kd_rest_module, written on kraken/module.h) whose service
 * instance, "restapi" in kraken-daemon, is configured as in the original: its
 * Cfg config (restapi.Config {addr = 1, port = 2}) says where it listens, a
 * change there rebinds it, and its Cfg state starts and stops the listener
 * through the module's handlers. The answers come from routes.c.
 *
 * Access policy: loopback addresses are open as the original was; any other
 * address needs a bearer token file (checked on every state-changing request,
 * and on reads unless reads are opened) or an explicit -api-insecure, which is
 * warned about at every start. Limits: body size, header size, and one
 * timeout for idle and slow clients (evhttp closes the connection).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "kd.h"

#define CONFIG_TYPE "restapi.Config"
#define MODULE_NAME "restapi"
#define MAX_HEADERS_SIZE (64 * 1024)

/* A write's answer waiting for the next commit (one state flush for the whole batch). */
typedef struct pending_answer {
    struct evhttp_request *req;
    kd_response resp;
    const char *method;
    double start;
} pending_answer;

struct kd_rest {
    kd_api *api;
    struct event_base *base;
    kraken_module *module;      /* the service instance, on the module API */
    char *service_id;           /* "restapi" in kraken-daemon; the log's subsystem */
    kd_rest_options opts;
    char *token;
    char *default_addr;
    struct evhttp *http;        /* current listener */
    char *addr;
    int port;                   /* as configured */
    uint16_t bound_port;
    struct evhttp *retired;     /* previous listener, freed shortly (its last answers drain) */
    struct event *retire_timer;
    bool started_once, start_failed;
    pending_answer *pending;    /* answers of writes since the last commit */
    size_t n_pending, cap_pending;
    struct event *commit_event;
};

/* ---- addresses ----------------------------------------------------------------------------- */

bool kd_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(addr, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int kd_addr_split(const char *text, char **host, int *port)
{
    *host = NULL;
    *port = -1;
    const char *colon = NULL, *end = text + strlen(text);
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        *host = strndup(text + 1, (size_t)(close - text - 1));
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':')) /* a bare IPv6 address */
            colon = NULL;
        *host = strndup(text, (size_t)((colon ? colon : end) - text));
    }
    if (!*host)
        return -1;
    if (colon) {
        char *stop;
        long p = strtol(colon + 1, &stop, 10);
        if (!colon[1] || *stop || p < 0 || p > 65535) {
            free(*host);
            *host = NULL;
            return -1;
        }
        *port = (int)p;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------ */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "OTHER";
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

/* Constant-time comparison: the token check must not leak how much of it matched. */
static bool token_equal(const char *given, size_t given_len, const char *token)
{
    size_t len = strlen(token);
    unsigned char diff = given_len != len;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(token[i] ^ (i < given_len ? given[i] : 0));
    return diff == 0;
}

static bool authorized(kd_rest *r, struct evkeyvalq *headers)
{
    const char *auth = evhttp_find_header(headers, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *given = auth + 7;
    while (*given == ' ')
        given++;
    size_t len = strlen(given);
    while (len && (given[len - 1] == ' ' || given[len - 1] == '\t'))
        len--;
    return token_equal(given, len, r->token);
}

/* Host header without the port: where the client reached us, for /ws. */
static void request_host(struct evkeyvalq *headers, char *out, size_t len)
{
    const char *host = evhttp_find_header(headers, "Host");
    *out = '\0';
    if (!host)
        return;
    char *h = NULL;
    int port;
    if (kd_addr_split(host, &h, &port) == 0)
        snprintf(out, len, "%s", h);
    free(h);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_body(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

/* Send the answer; the body (large for node lists) is handed to libevent, not copied. */
static void send_answer(struct evhttp_request *req, kd_response *resp)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
    if (resp->content_type)
        evhttp_add_header(out, "Content-Type", resp->content_type);
    if (resp->status == 405 && resp->allow)
        evhttp_add_header(out, "Allow", resp->allow);
    if (resp->status == 401)
        evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"kraken\"");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp sends no body for HEAD and so no Content-Length: give the GET's (RFC 9110). */
        char len[24];
        snprintf(len, sizeof len, "%zu", resp->body_len);
        evhttp_add_header(out, "Content-Length", len);
    }
    struct evbuffer *body = evbuffer_new();
    if (body && resp->body &&
        evbuffer_add_reference(body, resp->body, resp->body_len, free_body, NULL) == 0)
        resp->body = NULL; /* the buffer frees it once sent */
    evhttp_send_reply(req, resp->status, reason_phrase(resp->status), body);
    if (body)
        evbuffer_free(body);
}

static void preflight(struct evhttp_request *req, const kd_response *route)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
    evhttp_add_header(out, "Access-Control-Allow-Methods", "PUT, GET, POST, DELETE, PATCH");
    evhttp_add_header(out, "Access-Control-Allow-Headers",
                      "X-Requested-With, Content-Type, Authorization");
    evhttp_add_header(out, "Access-Control-Max-Age", "600");
    evhttp_add_header(out, "Allow", route->allow);
    /* No body, but not evhttp's default text/html either: every answer here is JSON. */
    evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
}

/* Send an answer, count it, free it. */
static void finish(kd_rest *r, struct evhttp_request *hreq, kd_response *resp, const char *method,
                   double start)
{
    send_answer(hreq, resp);
    kd_metrics_observe(r->api->metrics, method, resp->route, resp->status, now_seconds() - start);
    free(resp->body);
    resp->body = NULL;
}

/*
 * Group commit: the answers of the writes that arrived in one loop iteration wait for one
 * flush of the state (a journal append + fdatasync), made by the commit event that runs
 * after them. A client that went away meanwhile is handled by evhttp (the reply frees the
 * detached request).
 */
void kd_rest_commit(kd_rest *r)
{
    if (!r || !r->n_pending)
        return;
    bool saved = kd_state_flush(r->api->state) == 0;
    size_t n = r->n_pending;
    r->n_pending = 0;
    for (size_t i = 0; i < n; i++) {
        pending_answer *p = &r->pending[i];
        if (!saved)
            kd_rest_reply_unsaved(&p->resp);
        finish(r, p->req, &p->resp, p->method, p->start);
    }
}

static void on_commit(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    kd_rest_commit(userdata);
}

static int queue_answer(kd_rest *r, struct evhttp_request *hreq, kd_response *resp,
                        const char *method, double start)
{
    if (r->n_pending == r->cap_pending) {
        size_t cap = r->cap_pending ? r->cap_pending * 2 : 16;
        pending_answer *grown = realloc(r->pending, cap * sizeof *grown);
        if (!grown)
            return -1;
        r->pending = grown;
        r->cap_pending = cap;
    }
    r->pending[r->n_pending++] = (pending_answer){hreq, *resp, method, start};
    if (r->n_pending == 1)
        event_active(r->commit_event, EV_TIMEOUT, 0);
    return 0;
}

static void on_request(struct evhttp_request *hreq, void *userdata)
{
    kd_rest *r = userdata;
    double start = now_seconds();
    const char *method = method_name(evhttp_request_get_command(hreq));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(hreq);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    char *path = evhttp_uridecode(raw_path && *raw_path ? raw_path : "/", 0, NULL);
    struct evkeyvalq *headers = evhttp_request_get_input_headers(hreq);
    char host[256];
    request_host(headers, host, sizeof host);
    struct evbuffer *in = evhttp_request_get_input_buffer(hreq);
    size_t body_len = evbuffer_get_length(in);
    kd_request req = {.method = method, .path = path ? path : "/", .host = host,
                      .body = body_len ? (const char *)evbuffer_pullup(in, -1) : "",
                      .body_len = body_len};
    kd_response resp;
    memset(&resp, 0, sizeof resp);
    bool known = kd_route_lookup(&req, &resp) == 0;
    if (strcmp(method, "OPTIONS") == 0 && resp.allow) {
        preflight(hreq, &resp);
        kd_metrics_observe(r->api->metrics, method, resp.route, 200, now_seconds() - start);
        free(path);
        return;
    }
    if (known && r->token && (resp.write || !r->opts.open_reads) && !authorized(r, headers)) {
        const char *route = resp.route;
        memset(&resp, 0, sizeof resp);
        resp.status = 401;
        resp.content_type = "application/json";
        resp.body = strdup(evhttp_find_header(headers, "Authorization")
                               ? "{\"error\":\"invalid bearer token\"}"
                               : "{\"error\":\"this request needs a bearer token "
                                 "(Authorization: Bearer <token>)\"}");
        resp.body_len = resp.body ? strlen(resp.body) : 0;
        resp.route = route;
        kd_log(KRAKEN_LOG_WARNING, r->service_id, "refused %s %s: %s bearer token", method,
               req.path,
               evhttp_find_header(headers, "Authorization") ? "invalid" : "no");
    } else {
        kd_rest_dispatch(r->api, &req, &resp);
    }
    kd_log(KRAKEN_LOG_DEBUG, r->service_id, "%s %s -> %d", method, req.path, resp.status);
    if (resp.flush_pending && queue_answer(r, hreq, &resp, method, start) == 0) {
        free(path);
        return;
    }
    if (resp.flush_pending && kd_state_flush(r->api->state) < 0) /* could not queue it */
        kd_rest_reply_unsaved(&resp);
    finish(r, hreq, &resp, method, start);
    free(path);
}

/* ---- listener ------------------------------------------------------------------------------ */

static void retire_now(kd_rest *r)
{
    if (r->retired) {
        evhttp_free(r->retired);
        r->retired = NULL;
    }
}

static void on_retire(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    retire_now(userdata);
}

/* Close the current listener after a grace second, so the answer that caused it gets out. */
static void retire_current(kd_rest *r)
{
    if (!r->http)
        return;
    retire_now(r);
    r->retired = r->http;
    r->http = NULL;
    r->bound_port = 0;
    struct timeval tv = {1, 0};
    evtimer_add(r->retire_timer, &tv);
}

static int listen_on(kd_rest *r, const char *addr, int port, char *err, size_t errlen)
{
    if (!kd_addr_is_loopback(addr) && !r->token && !r->opts.insecure) {
        snprintf(err, errlen,
                 "refusing to listen on %s: not a loopback address and no -api-token FILE "
                 "(or -api-insecure to allow anyone who can reach it to change state)",
                 addr);
        return -1;
    }
    struct evhttp *http = evhttp_new(r->base);
    if (!http) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(http, (ev_ssize_t)r->opts.max_body);
    evhttp_set_max_headers_size(http, MAX_HEADERS_SIZE);
    struct timeval tv = {(time_t)(r->opts.timeout_ms / 1000),
                         (suseconds_t)(r->opts.timeout_ms % 1000 * 1000)};
    evhttp_set_timeout_tv(http, &tv);
    evhttp_set_gencb(http, on_request, r);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, addr, (ev_uint16_t)port);
    if (!sock) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", addr, port,
                 errno ? strerror(errno) : "bind failed");
        evhttp_free(http);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint16_t bound = (uint16_t)port;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0)
        bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    retire_current(r);
    r->http = http;
    r->bound_port = bound;
    kd_log(KRAKEN_LOG_NOTICE, r->service_id, "listening on %s port %u", addr, (unsigned)bound);
    if (!kd_addr_is_loopback(addr) && !r->token)
        kd_log(KRAKEN_LOG_WARNING, r->service_id,
               "-api-insecure: the REST API on %s has no token; anyone who can reach it can "
               "change the cluster's state",
               addr);
    return 0;
}

/* The configured address and port: Cfg config, else the defaults. */
static void configured(kd_rest *r, char **addr, int *port)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    const kraken_uuid *self = kraken_engine_self_id(r->api->engine);
    char url[256];
    *addr = NULL;
    *port = r->opts.default_port;
    snprintf(url, sizeof url, "/Services/%s/Config/" KRAKEN_TYPE_URL_PREFIX CONFIG_TYPE "/Addr",
             r->service_id);
    if (kraken_store_get_value(r->api->store, KRAKEN_CFG, self, url, &v) == 0 &&
        v.type == KRAKEN_T_STRING && v.v.str.len)
        *addr = strdup(v.v.str.data);
    kraken_value_clear(&v);
    snprintf(url, sizeof url, "/Services/%s/Config/" KRAKEN_TYPE_URL_PREFIX CONFIG_TYPE "/Port",
             r->service_id);
    if (kraken_store_get_value(r->api->store, KRAKEN_CFG, self, url, &v) == 0 &&
        (v.type == KRAKEN_T_INT32 || v.type == KRAKEN_T_INT64) && v.v.i > 0 && v.v.i <= 65535)
        *port = (int)v.v.i;
    kraken_value_clear(&v);
    kraken_error_clear();
    if (!*addr)
        *addr = strdup(r->default_addr);
}

/* Say in Dsc where the API really listens (the port differs from Cfg when Cfg asks for 0). */
static void discover_binding(kd_rest *r)
{
    char text[256], url[256];
    snprintf(url, sizeof url, "/Services/%s/Config", r->service_id);
    snprintf(text, sizeof text,
             "{\"@type\": \"" KRAKEN_TYPE_URL_PREFIX CONFIG_TYPE "\", \"addr\": \"%s\", "
             "\"port\": %u}",
             r->addr ? r->addr : "", (unsigned)r->bound_port);
    if (kraken_store_set_text(r->api->store, KRAKEN_DSC, kraken_engine_self_id(r->api->engine),
                              url, text) < 0)
        kraken_error_clear();
}

static void first_start_done(kd_rest *r, bool ok)
{
    if (r->started_once)
        return;
    r->started_once = true;
    if (r->opts.started)
        r->opts.started(r->opts.started_userdata, ok);
}

static void apply_config(kd_rest *r, bool starting)
{
    char *addr = NULL, err[512];
    int port;
    configured(r, &addr, &port);
    if (!addr) {
        kraken_module_set_state(r->module, KRAKEN_SERVICE_ERROR, "out of memory");
        return;
    }
    if (!starting && r->http && r->addr && strcmp(addr, r->addr) == 0 && port == r->port) {
        free(addr);
        return;
    }
    if (listen_on(r, addr, port, err, sizeof err) < 0) {
        /* Only the daemon's own API (the one with a started hook) takes the daemon down. */
        bool fatal = !r->started_once && r->opts.started;
        kd_log(fatal ? KRAKEN_LOG_CRITICAL : KRAKEN_LOG_ERROR, r->service_id, "%s", err);
        if (fatal) {
            r->start_failed = true;
            event_base_loopbreak(r->base); /* a daemon without its API at start: fail fast */
        }
        if (!r->http)
            kraken_module_set_state(r->module, KRAKEN_SERVICE_ERROR, err);
        free(addr);
        first_start_done(r, false);
        return;
    }
    free(r->addr);
    r->addr = addr;
    r->port = port;
    discover_binding(r);
    kraken_module_set_state(r->module, KRAKEN_SERVICE_RUN, NULL);
    first_start_done(r, true);
}

/* ---- module handlers ----------------------------------------------------------------------- */

static void module_start(kraken_module *module, const kraken_value *config, void *userdata)
{
    (void)module;
    (void)config; /* read field by field: an absent address or port takes the -ipapi one */
    apply_config(userdata, true);
}

static void module_stop(kraken_module *module, void *userdata)
{
    kd_rest *r = userdata;
    retire_current(r);
    kd_log(KRAKEN_LOG_NOTICE, r->service_id, "stopped");
    kraken_module_set_state(module, KRAKEN_SERVICE_STOP, NULL);
}

static void module_config_changed(kraken_module *module, const kraken_value *config,
                                  void *userdata)
{
    (void)module;
    (void)config;
    kd_rest *r = userdata;
    if (r->http) /* running: rebind if the address changed */
        apply_config(r, false);
}

/* restapi.Config {addr = 1, port = 2}, as the original's restapi.proto. */
static const char config_schema_json[] =
    "{\"schemas\": [{\"name\": \"" CONFIG_TYPE "\", \"fields\": ["
    "{\"name\": \"addr\", \"number\": 1, \"type\": \"string\"},"
    "{\"name\": \"port\", \"number\": 2, \"type\": \"int32\"}]}]}";

const kraken_module_desc kd_rest_module = {
    .abi_version = KRAKEN_MODULE_ABI_VERSION,
    .name = MODULE_NAME,
    .schemas_json = config_schema_json,
    .config_schema = CONFIG_TYPE,
    .handlers = {.start = module_start, .stop = module_stop,
                 .config_changed = module_config_changed},
};

/* ---- lifetime ------------------------------------------------------------------------------ */

int kd_rest_new(kd_rest **out, kd_api *api, struct event_base *base, const kd_rest_options *opts)
{
    *out = NULL;
    kd_rest *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->api = api;
    r->base = base;
    r->opts = *opts;
    r->default_addr = strdup(opts->default_addr ? opts->default_addr : "127.0.0.1");
    r->service_id = strdup(opts->service_id ? opts->service_id : KD_REST_SERVICE_ID);
    r->token = opts->token ? strdup(opts->token) : NULL;
    r->opts.token = NULL;
    r->opts.default_addr = NULL;
    r->opts.service_id = NULL;
    r->retire_timer = evtimer_new(base, on_retire, r);
    r->commit_event = event_new(base, -1, 0, on_commit, r);
    api->defer_flush = true;
    if (!r->default_addr || !r->service_id || (opts->token && !r->token) || !r->retire_timer ||
        !r->commit_event ||
        kraken_module_new(&r->module, api->engine, &kd_rest_module, r->service_id, r, NULL) < 0) {
        kd_rest_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void kd_rest_free(kd_rest *r)
{
    if (!r)
        return;
    /*
     * Called after the engine's free (which detached the service and left the self node,
     * and the state file, alone): this only releases the handle.
     */
    kraken_module_free(r->module);
    /* Normally empty (main.c commits before closing the state): answers are only dropped. */
    for (size_t i = 0; i < r->n_pending; i++) {
        evhttp_send_error(r->pending[i].req, 503, "shutting down");
        free(r->pending[i].resp.body);
    }
    free(r->pending);
    if (r->commit_event)
        event_free(r->commit_event);
    if (r->http)
        evhttp_free(r->http);
    retire_now(r);
    if (r->retire_timer)
        event_free(r->retire_timer);
    free(r->default_addr);
    free(r->service_id);
    free(r->addr);
    free(r->token);
    free(r);
}

int kd_rest_set_token(kd_rest *r, const char *token)
{
    if (!r || !r->token || !token) /* no token at start: the access policy was chosen without */
        return -1;
    char *copy = strdup(token);
    if (!copy)
        return -1;
    free(r->token);
    r->token = copy;
    return 0;
}

uint16_t kd_rest_port(const kd_rest *r)
{
    return r ? r->bound_port : 0;
}

bool kd_rest_start_failed(const kd_rest *r)
{
    return r && r->start_failed;
}
