/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * http.c: requests to the daemon's REST API on libevent's evhttp client. One
 * connection (kept alive) per run; each request runs the loop until its
 * answer arrives or the timeout passes.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"

typedef struct pending {
    bool done;
    enum evhttp_request_error error;
    bool errored;
    kc_response *out;
} pending;

static void on_error(enum evhttp_request_error error, void *arg)
{
    pending *p = arg;
    p->errored = true;
    p->error = error;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    pending *p = arg;
    p->done = true;
    if (req && evhttp_request_get_response_code(req) > 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        p->out->body = malloc(len + 1);
        if (p->out->body) {
            evbuffer_remove(in, p->out->body, len);
            p->out->body[len] = '\0';
            p->out->len = len;
        }
        p->out->status = evhttp_request_get_response_code(req);
    }
}

static enum evhttp_cmd_type method_type(const char *method)
{
    if (strcmp(method, "PUT") == 0)
        return EVHTTP_REQ_PUT;
    if (strcmp(method, "POST") == 0)
        return EVHTTP_REQ_POST;
    if (strcmp(method, "DELETE") == 0)
        return EVHTTP_REQ_DELETE;
    if (strcmp(method, "PATCH") == 0)
        return EVHTTP_REQ_PATCH;
    return EVHTTP_REQ_GET;
}

static const char *describe(const pending *p, double timeout_s, char *buf, size_t len)
{
    if (!p->errored) /* evhttp reports a failed connect without a cause */
        return "cannot connect (is kraken-daemon listening there?)";
    switch (p->error) {
    case EVREQ_HTTP_TIMEOUT:
        snprintf(buf, len, "no answer within %g s", timeout_s);
        return buf;
    case EVREQ_HTTP_EOF:
        return "connection refused or closed (is kraken-daemon running there?)";
    case EVREQ_HTTP_INVALID_HEADER:
        return "the answer is not HTTP";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "the answer is too large";
    default:
        return "the request failed";
    }
}

/* "HOST:PORT" as the Host header writes it (an IPv6 address in brackets). */
static void host_header(const kc_ctx *ctx, char *out, size_t size)
{
    snprintf(out, size, strchr(ctx->host, ':') ? "[%s]:%u" : "%s:%u", ctx->host, ctx->port);
}

/* One request on ctx->conn (made when there is none); *p says how it ended. */
static int send_once(kc_ctx *ctx, const char *method, const char *path, const char *body,
                     size_t body_len, kc_response *out, pending *p)
{
    memset(out, 0, sizeof *out);
    if (!ctx->conn) {
        ctx->conn = evhttp_connection_base_new(ctx->base, NULL, ctx->host, (uint16_t)ctx->port);
        if (!ctx->conn)
            return kc_error(ctx, KC_EXIT_CONNECT, "cannot connect to %s:%u", ctx->host,
                            ctx->port);
        struct timeval tv = {(time_t)ctx->timeout_s,
                             (suseconds_t)((ctx->timeout_s - (time_t)ctx->timeout_s) * 1e6)};
        evhttp_connection_set_timeout_tv(ctx->conn, &tv);
        /* node lists of 100,000 nodes are tens of MiB; anything far beyond is not an answer */
        evhttp_connection_set_max_body_size(ctx->conn, (ev_ssize_t)1 << 30);
    }
    *p = (pending){.out = out};
    struct evhttp_request *req = evhttp_request_new(on_done, p);
    if (!req)
        return kc_error(ctx, KC_EXIT_CONNECT, "out of memory");
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300];
    host_header(ctx, host, sizeof host);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Accept", "application/json");
    evhttp_add_header(h, "User-Agent", "krakenctl");
    if (ctx->token) {
        char auth[4200];
        snprintf(auth, sizeof auth, "Bearer %s", ctx->token);
        evhttp_add_header(h, "Authorization", auth);
    }
    if (body) {
        /* evhttp adds Content-Length for POST and PUT only; PATCH needs it too */
        char length[32];
        snprintf(length, sizeof length, "%zu", body_len);
        evhttp_add_header(h, "Content-Length", length);
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    }
    if (ctx->debug)
        fprintf(stderr, "> %s http://%s%s%s\n", method, host, path,
                body ? " (with a JSON body)" : "");
    if (evhttp_make_request(ctx->conn, req, method_type(method), path) != 0)
        return kc_error(ctx, KC_EXIT_CONNECT, "cannot send %s %s to %s", method, path, host);
    while (!p->done)
        if (event_base_loop(ctx->base, EVLOOP_ONCE) < 0)
            break;
    return 0;
}

int kc_http(kc_ctx *ctx, const char *method, const char *path, const char *body, size_t body_len,
            kc_response *out)
{
    pending p;
    bool reused = ctx->conn != NULL;
    int rc = send_once(ctx, method, path, body, body_len, out, &p);
    /* A server that closed the connection after its previous answer (an HTTP/1.0 server, an
     * idle timeout) ends a request on the reused connection at once: a GET is sent again on
     * a new connection, as HTTP clients do with stale keep-alive connections. */
    if (rc == 0 && out->status == 0 && reused && p.errored && p.error == EVREQ_HTTP_EOF &&
        strcmp(method, "GET") == 0) {
        evhttp_connection_free(ctx->conn);
        ctx->conn = NULL;
        rc = send_once(ctx, method, path, body, body_len, out, &p);
    }
    if (rc != 0)
        return rc;
    char host[300];
    host_header(ctx, host, sizeof host);
    if (out->status == 0) {
        char buf[128];
        kc_response_clear(out);
        return kc_error(ctx, KC_EXIT_CONNECT, "%s %s at %s: %s", method, path, host,
                        describe(&p, ctx->timeout_s, buf, sizeof buf));
    }
    if (ctx->debug)
        fprintf(stderr, "< %d (%zu bytes)\n", out->status, out->len);
    return 0;
}

void kc_response_clear(kc_response *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

int kc_request_json(kc_ctx *ctx, const char *method, const char *path, const char *body,
                    cJSON **out)
{
    *out = NULL;
    kc_response r;
    int rc = kc_http(ctx, method, path, body, body ? strlen(body) : 0, &r);
    if (rc != 0)
        return rc;
    cJSON *json = r.body ? cJSON_ParseWithLength(r.body, r.len) : NULL;
    /* A bulk answer whose every item failed comes as 400 {"nodes": [], "errors": [...]}: it is
     * the caller's to report item by item, like a partly failed one. */
    bool bulk = r.status == 400 && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "errors"));
    if ((r.status < 200 || r.status > 299) && !bulk) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(json, "error");
        const char *hint = (r.status == 401 || r.status == 403) && !ctx->token
                               ? " (pass --token-file FILE or set KRAKEN_TOKEN)"
                               : "";
        if (cJSON_IsString(err))
            kc_error(ctx, KC_EXIT_FAILED, "%s %s: %d: %s%s", method, path, r.status,
                     err->valuestring, hint);
        else
            kc_error(ctx, KC_EXIT_FAILED, "%s %s: HTTP %d%s", method, path, r.status, hint);
        cJSON_Delete(json);
        kc_response_clear(&r);
        return KC_EXIT_FAILED;
    }
    if (!json) {
        kc_error(ctx, KC_EXIT_CONNECT, "%s %s: the answer is not JSON (%zu bytes)", method, path,
                 r.len);
        kc_response_clear(&r);
        return KC_EXIT_CONNECT;
    }
    kc_response_clear(&r);
    *out = json;
    return 0;
}
