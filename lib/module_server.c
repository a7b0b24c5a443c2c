/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * module_server.c: the instance side of the module socket (SPEC 7.2).
 *
 * Each registered connection drives one service instance of the engine: the
 * service's ops turn into frames to the module (Start, Stop, Config,
 * MutationRequest), and the module's frames into kraken_service_*() calls.
 * A service outlives its connection (so a module can reconnect and resume);
 * when the connection goes, the steps in flight are interrupted and replanned
 * and the service is marked (ERROR "module disconnected", or INIT when a
 * service manager is restarting its process).
 *
 * Trust: the socket is mode 0600 and every peer's uid (SO_PEERCRED) must be
 * the server's own or an allowed one. A peer may still send anything: a frame
 * longer than max_frame, a malformed one, or a message out of order closes
 * that connection only and is logged with the peer's pid.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "module_int.h"

typedef struct msvc msvc;
typedef struct mconn mconn;

struct mconn {
    kraken_module_server *srv;
    int fd;
    struct event *rd, *wr;
    struct evbuffer *in, *out;
    uid_t uid;
    pid_t pid;
    msvc *svc;         /* after Register */
    bool started;      /* Start sent since it registered */
    bool closing;      /* flushing a refusal (then freed), or doomed: closed from the loop */
    bool doomed;
    char why[160];     /* why a doomed connection closes */
    struct event *kill; /* closes a connection that broke a bound, from the loop */
    mconn *next;
};

struct msvc {
    kraken_module_server *srv;
    char *id;
    char *module;
    kraken_service *service;
    kraken_subscription *events;
    mconn *conn;
    bool expected;
    kraken_module_expect_hooks hooks;
    void *userdata;
    void (*destroy)(void *userdata);
    msvc *next;
};

struct kraken_module_server {
    kraken_engine *engine; /* NULL once the engine is gone */
    struct event_base *base;
    struct evconnlistener *listener;
    char *path;
    uid_t *allowed;
    size_t n_allowed;
    uint32_t max_frame;
    size_t max_output;
    mconn *conns;
    msvc *services;
};

#define SLOG(srv, level, ...)                                                                     \
    do {                                                                                          \
        if ((srv)->engine)                                                                        \
            kraken__engine_log((srv)->engine, (level), "modules", __VA_ARGS__);                  \
    } while (0)

int kraken_module_server_options_init(kraken_module_server_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "module_server_options_init: opts is required");
    if (version == 0 || version > KRAKEN_MODULE_SERVER_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "module_server_options_init: unknown version %u "
                                          "(this libkraken knows 1..%u)",
                           version, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->max_frame = KRAKEN_MODULE_MAX_FRAME;
    opts->max_output = 64u << 20;
    return 0;
}

/* ---- sending ------------------------------------------------------------------------------- */

static void conn_close(mconn *c, const char *why);

/* A connection that must go is closed from the loop: its caller may still use it. */
static void conn_doom(mconn *c, const char *why)
{
    if (c->doomed)
        return;
    c->doomed = c->closing = true;
    snprintf(c->why, sizeof c->why, "%s", why);
    event_del(c->rd);
    event_del(c->wr);
    event_active(c->kill, 0, 0);
}

/* Write what the socket takes now; a write error dooms the connection. */
static void conn_flush(mconn *c)
{
    int err = kraken__module_send_some(c->fd, c->out);
    if (err < 0) {
        char why[128];
        snprintf(why, sizeof why, "socket error: send: %s", strerror(-err));
        conn_doom(c, why);
    } else if (evbuffer_get_length(c->out) > 0) {
        event_add(c->wr, NULL);
    }
}

static int conn_send(mconn *c, const kraken_module_Frame *frame)
{
    if (c->closing)
        return 0;
    uint8_t *buf;
    size_t len;
    int rc = kraken__module_frame_encode(frame, &buf, &len);
    if (rc < 0)
        return rc;
    bool was_empty = evbuffer_get_length(c->out) == 0;
    rc = evbuffer_add(c->out, buf, len) == 0 ? 0 : kraken__err(KRAKEN_ENOMEM, "out of memory");
    free(buf);
    if (rc == 0 && evbuffer_get_length(c->out) > c->srv->max_output) {
        conn_doom(c, "the module reads too slowly (output bound reached)");
        return kraken__err(KRAKEN_ELIMIT, "module connection closed: output bound reached");
    }
    if (rc == 0 && was_empty)
        conn_flush(c); /* latency first: a burst of frames coalesces behind this write */
    return rc;
}

static void send_reply(mconn *c, uint64_t seq, int code, const char *error)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_reply_tag};
    f.msg.reply.seq = seq;
    f.msg.reply.code = code;
    f.msg.reply.error = (char *)(uintptr_t)error;
    if (conn_send(c, &f) < 0)
        kraken_error_clear();
}

/* Reply with the current error (kraken_error_last) when @p rc failed. */
static void reply_on_error(mconn *c, uint64_t seq, int rc)
{
    if (rc < 0) {
        send_reply(c, seq, rc, kraken_error_last());
        kraken_error_clear();
    }
}

/* The service's Cfg config as text ("" when none); malloc'ed. */
static char *config_text(msvc *s)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    char url[300], *text = NULL;
    snprintf(url, sizeof url, "/Services/%s/Config", s->id);
    kraken_engine *e = s->srv->engine;
    if (e && kraken_store_get_value(kraken_engine_store(e), KRAKEN_CFG, kraken_engine_self_id(e),
                                    url, &v) == 0 &&
        v.type != KRAKEN_T_NONE && kraken_value_format(&v, &text) < 0)
        text = NULL;
    kraken_value_clear(&v);
    kraken_error_clear();
    return text ? text : strdup("");
}

static void send_config(mconn *c, pb_size_t tag)
{
    kraken_module_Frame f = {.which_msg = tag};
    char *text = config_text(c->svc);
    if (tag == kraken_module_Frame_start_tag)
        f.msg.start.config = text;
    else
        f.msg.config.config = text;
    if (conn_send(c, &f) < 0)
        kraken_error_clear();
    free(text);
}

static void send_start(mconn *c)
{
    if (c->started)
        return;
    c->started = true;
    send_config(c, kraken_module_Frame_start_tag);
}

/* ---- the service's ops: engine -> module ----------------------------------------------------- */

static void svc_set_dsc(msvc *s, kraken_service_state state, const char *msg)
{
    if (kraken_service_set_state(s->service, state, msg) < 0)
        kraken_error_clear();
}

static int state_of(msvc *s, kraken_state_kind kind)
{
    kraken_engine *e = s->srv->engine;
    kraken_value v = KRAKEN_VALUE_INIT;
    char url[300];
    snprintf(url, sizeof url, "/Services/%s/State", s->id);
    int state = 0;
    if (e && kraken_store_get_value(kraken_engine_store(e), kind, kraken_engine_self_id(e),
                                    url, &v) == 0 &&
        v.type == KRAKEN_T_ENUM)
        state = (int)v.v.i;
    kraken_value_clear(&v);
    kraken_error_clear();
    return state;
}

static int cfg_state(msvc *s)
{
    return state_of(s, KRAKEN_CFG);
}

static int dsc_state(msvc *s)
{
    return state_of(s, KRAKEN_DSC);
}

static void op_start(kraken_service *service, void *userdata)
{
    (void)service;
    msvc *s = userdata;
    if (s->conn)
        send_start(s->conn);
    else if (s->expected && s->hooks.start)
        s->hooks.start(s->id, s->userdata);
    /* A module that connects by itself is started when it registers. */
}

static void op_stop(kraken_service *service, void *userdata)
{
    (void)service;
    msvc *s = userdata;
    if (s->conn) {
        kraken_module_Frame f = {.which_msg = kraken_module_Frame_stop_tag};
        if (conn_send(s->conn, &f) < 0)
            kraken_error_clear();
        s->conn->started = false;
    }
    if (s->expected && s->hooks.stop)
        s->hooks.stop(s->id, s->userdata);
    else if (!s->conn)
        svc_set_dsc(s, KRAKEN_SERVICE_STOP, NULL);
}

static int node_pb(const kraken_node *node, pb_bytes_array_t **out)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    if (!node)
        return 0;
    int rc = kraken_node_encode(node, &buf, &len);
    if (rc < 0)
        return rc;
    pb_bytes_array_t *b = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(len));
    if (!b) {
        free(buf);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    b->size = (pb_size_t)len;
    if (len > 0xffff) {
        /* pb_size_t is 16 bits in Debian's nanopb: bytes fields cannot carry more. */
        free(buf);
        free(b);
        return kraken__err(KRAKEN_ELIMIT, "node of %zu bytes is too large for a module frame",
                           len);
    }
    memcpy(b->bytes, buf, len);
    free(buf);
    *out = b;
    return 0;
}

static void send_request(msvc *s, const kraken_mutation_request *req, bool interrupt)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_mutation_tag};
    kraken_module_MutationRequest *m = &f.msg.mutation;
    m->request_id = req->id;
    memcpy(m->node_id, req->node_id.bytes, 16);
    m->mutation_id = (char *)(uintptr_t)req->mutation_id;
    m->interrupt = interrupt;
    kraken_module_Mutate mutates[16];
    m->mutates_count = (pb_size_t)(req->n_mutates < 16 ? req->n_mutates : 16);
    m->mutates = mutates;
    for (size_t i = 0; i < m->mutates_count; i++) {
        mutates[i].url = (char *)(uintptr_t)req->mutates[i].url;
        mutates[i].from = (char *)(uintptr_t)req->mutates[i].from;
        mutates[i].to = (char *)(uintptr_t)req->mutates[i].to;
    }
    int rc = 0;
    if (!interrupt && ((rc = node_pb(req->cfg, &m->cfg)) < 0 || (rc = node_pb(req->dsc, &m->dsc)) < 0))
        SLOG(s->srv, KRAKEN_LOG_ERROR, "service '%s' request %llu: %s", s->id,
             (unsigned long long)req->id, kraken_error_last());
    if (rc == 0)
        rc = conn_send(s->conn, &f);
    free(m->cfg);
    free(m->dsc);
    if (rc < 0 && !interrupt && kraken_service_fail(s->service, &req->node_id, req->id,
                                                    kraken_error_last()) < 0)
        kraken_error_clear();
    kraken_error_clear();
}

static void op_mutate(kraken_service *service, const kraken_mutation_request *req, void *userdata)
{
    msvc *s = userdata;
    if (s->conn) {
        send_request(s, req, false);
    } else if (kraken_service_fail(service, &req->node_id, req->id,
                                   "the module is not connected") < 0) {
        kraken_error_clear();
    }
}

static void op_interrupt(kraken_service *service, const kraken_mutation_request *req,
                         void *userdata)
{
    (void)service;
    msvc *s = userdata;
    if (s->conn)
        send_request(s, req, true);
}

static void op_config(kraken_service *service, const kraken_value *config, void *userdata)
{
    (void)service;
    (void)config;
    msvc *s = userdata;
    if (s->conn && s->conn->started)
        send_config(s->conn, kraken_module_Frame_config_tag);
}

static const kraken_service_ops external_ops = {
    .version = KRAKEN_SERVICE_OPS_VERSION,
    .start = op_start,
    .stop = op_stop,
    .mutate = op_mutate,
    .interrupt = op_interrupt,
    .config_changed = op_config,
};

static void on_event(const kraken_event *ev, void *userdata)
{
    msvc *s = userdata;
    if (!s->conn || s->conn->closing)
        return;
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_event_tag};
    kraken_module_Event *e = &f.msg.event;
    e->type = (uint32_t)ev->type;
    e->kind = ev->kind;
    e->seq = ev->seq;
    memcpy(e->node_id, ev->node_id.bytes, 16);
    e->url = (char *)(uintptr_t)ev->url;
    e->service_id = (char *)(uintptr_t)ev->service_id;
    e->mutation_id = (char *)(uintptr_t)ev->mutation_id;
    e->message = (char *)(uintptr_t)ev->message;
    if (ev->old_value && kraken_value_format(ev->old_value, &e->old_value) == 0)
        e->has_old = true;
    if (ev->new_value && kraken_value_format(ev->new_value, &e->new_value) == 0)
        e->has_new = true;
    if (conn_send(s->conn, &f) < 0)
        kraken_error_clear();
    free(e->old_value);
    free(e->new_value);
    kraken_error_clear();
}

/* ---- services ---------------------------------------------------------------------------- */

static msvc *find_svc(kraken_module_server *srv, const char *id)
{
    for (msvc *s = srv->services; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static msvc *svc_new(kraken_module_server *srv, const char *id, const char *module)
{
    msvc *s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id)) || !(s->module = strdup(module))) {
        if (s)
            free(s->id);
        free(s);
        kraken__err(KRAKEN_ENOMEM, "out of memory");
        return NULL;
    }
    s->srv = srv;
    if (kraken_engine_add_service(srv->engine, id, module, &external_ops, s, NULL, &s->service) <
        0) {
        free(s->module);
        free(s->id);
        free(s);
        return NULL;
    }
    s->next = srv->services;
    srv->services = s;
    return s;
}

static void svc_free(msvc *s)
{
    if (s->conn) {
        s->conn->svc = NULL;
        conn_close(s->conn, "service removed");
    }
    kraken_subscription_remove(s->events);
    kraken_service_remove(s->service);
    if (s->destroy)
        s->destroy(s->userdata);
    free(s->id);
    free(s->module);
    free(s);
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_free(mconn *c)
{
    kraken_module_server *srv = c->srv;
    for (mconn **p = &srv->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    if (c->rd)
        event_free(c->rd);
    if (c->wr)
        event_free(c->wr);
    if (c->kill)
        event_free(c->kill);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void on_kill(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mconn *c = arg;
    if (c->svc || !c->why[0])
        conn_close(c, c->why);
    else
        conn_free(c); /* a refused peer: logged already */
}

/* The module went away: its steps are interrupted and replanned, its service marked. */
static void conn_detach(mconn *c, const char *why)
{
    msvc *s = c->svc;
    if (!s)
        return;
    c->svc = NULL;
    s->conn = NULL;
    kraken_subscription_remove(s->events);
    s->events = NULL;
    if (!s->srv->engine)
        return;
    /*
     * Marked first, so the replanned steps wait for the service instead of failing on it: by
     * whoever runs the process (it knows whether it exited), else INIT (it is coming back) for
     * an expected service and ERROR with the reason for one that connected by itself.
     */
    if (s->expected && s->hooks.connection)
        s->hooks.connection(s->id, false, s->userdata);
    else if (dsc_state(s) == KRAKEN_SERVICE_STOP)
        ; /* it stopped as asked, then left: nothing went wrong */
    else if (s->expected)
        svc_set_dsc(s, KRAKEN_SERVICE_INIT, NULL);
    else
        svc_set_dsc(s, KRAKEN_SERVICE_ERROR, why);
    if (kraken_service_interrupt_steps(s->service, "the module disconnected") < 0)
        kraken_error_clear();
}

static void conn_close(mconn *c, const char *why)
{
    SLOG(c->srv, KRAKEN_LOG_NOTICE, "module connection (pid %ld%s%s) closed: %s", (long)c->pid,
         c->svc ? ", service " : "", c->svc ? c->svc->id : "", why);
    conn_detach(c, why);
    conn_free(c);
}

/* Refuse a peer: one Registered{ok=false} frame, flushed, then the connection closes. */
static void conn_refuse(mconn *c, int code, const char *reason)
{
    (void)code;
    SLOG(c->srv, KRAKEN_LOG_WARNING, "module connection (pid %ld uid %ld) refused: %s",
         (long)c->pid, (long)c->uid, reason);
    conn_detach(c, reason);
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_registered_tag};
    f.msg.registered.ok = false;
    f.msg.registered.error = (char *)(uintptr_t)reason;
    if (conn_send(c, &f) < 0)
        kraken_error_clear();
    /* Kept open until the peer hangs up (it reads the refusal first), for 2 s at most. */
    c->closing = true;
    c->why[0] = '\0';
    struct timeval linger = {2, 0};
    event_add(c->kill, &linger);
}

static int declare_all(msvc *s, const kraken_module_Register *r)
{
    for (pb_size_t i = 0; i < r->discoverables_count; i++) {
        const kraken_module_Discoverable *d = &r->discoverables[i];
        if (!d->url)
            return kraken__err(KRAKEN_EINVAL, "discoverable %u has no URL", (unsigned)i);
        if (kraken_service_declare_discoverable(s->service, d->url, d->value_name, d->value_text) <
            0)
            return kraken__err_prefix(KRAKEN_EINVAL, "discoverable '%s'", d->url);
    }
    for (pb_size_t i = 0; i < r->mutations_count; i++) {
        const kraken_module_Mutation *m = &r->mutations[i];
        kraken_mutate mut[64];
        kraken_fact req[64], exc[64];
        if (m->mutates_count > 64 || m->requires_count > 64 || m->excludes_count > 64)
            return kraken__err(KRAKEN_ELIMIT, "mutation '%s': more than 64 entries",
                               m->id ? m->id : "");
        for (pb_size_t j = 0; j < m->mutates_count; j++)
            mut[j] = (kraken_mutate){m->mutates[j].url, m->mutates[j].from, m->mutates[j].to};
        for (pb_size_t j = 0; j < m->requires_count; j++)
            req[j] = (kraken_fact){m->requires[j].url, m->requires[j].value};
        for (pb_size_t j = 0; j < m->excludes_count; j++)
            exc[j] = (kraken_fact){m->excludes[j].url, m->excludes[j].value};
        kraken_mutation_decl decl = {
            .version = KRAKEN_MUTATION_DECL_VERSION,
            .id = m->id,
            .mutates = mut,
            .n_mutates = m->mutates_count,
            .requires = req,
            .n_requires = m->requires_count,
            .excludes = exc,
            .n_excludes = m->excludes_count,
            .context = (kraken_context)m->context,
            .timeout_ms = m->timeout_ms,
            .fail_to = {m->has_fail_to ? m->fail_to.url : NULL,
                        m->has_fail_to ? m->fail_to.value : NULL},
            .cost = m->cost,
        };
        int rc = kraken_service_declare_mutation(s->service, &decl);
        /* A module that reconnects declares again what its service already has. */
        if (rc == KRAKEN_EEXISTS) {
            kraken_error_clear();
            continue;
        }
        if (rc < 0)
            return kraken__err_prefix(rc, "mutation '%s'", m->id ? m->id : "(no id)");
    }
    return 0;
}

static void handle_register(mconn *c, const kraken_module_Register *r)
{
    kraken_module_server *srv = c->srv;
    char reason[512];
    if (r->version != KRAKEN_MODULE_PROTOCOL_VERSION) {
        snprintf(reason, sizeof reason, "module protocol version %u, this instance speaks %u",
                 (unsigned)r->version, KRAKEN_MODULE_PROTOCOL_VERSION);
        conn_refuse(c, KRAKEN_EPROTO, reason);
        return;
    }
    if (!r->service_id || !*r->service_id || !r->module || !*r->module) {
        conn_refuse(c, KRAKEN_EINVAL, "Register needs a service id and a module name");
        return;
    }
    msvc *s = find_svc(srv, r->service_id);
    if (s && s->conn) {
        snprintf(reason, sizeof reason, "service '%s' is already connected (pid %ld)",
                 r->service_id, (long)s->conn->pid);
        conn_refuse(c, KRAKEN_EEXISTS, reason);
        return;
    }
    if (s && strcmp(s->module, r->module) != 0) {
        snprintf(reason, sizeof reason, "service '%s' runs module '%s', not '%s'", r->service_id,
                 s->module, r->module);
        conn_refuse(c, KRAKEN_EINVAL, reason);
        return;
    }
    int rc = 0;
    if (r->schemas_json && *r->schemas_json)
        rc = kraken_schema_load_json(r->schemas_json, strlen(r->schemas_json), r->module);
    if (rc == 0 && !s && kraken_engine_find_service(srv->engine, r->service_id))
        rc = kraken__err(KRAKEN_EEXISTS, "service '%s' exists and is not an external module",
                         r->service_id);
    if (rc == 0 && !s && !(s = svc_new(srv, r->service_id, r->module)))
        rc = KRAKEN_EINVAL;
    if (rc == 0)
        rc = declare_all(s, r);
    if (rc == 0 && r->event_types) {
        kraken_subscribe_options so = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = r->event_types,
                                       .url_pattern = r->event_url_pattern};
        rc = kraken_bus_subscribe(kraken_engine_bus(srv->engine), &so, on_event, s, NULL,
                                  &s->events);
    }
    if (rc < 0) {
        snprintf(reason, sizeof reason, "service '%s': %s", r->service_id, kraken_error_last());
        kraken_error_clear();
        conn_refuse(c, rc, reason);
        return;
    }
    c->svc = s;
    s->conn = c;
    c->started = false;
    SLOG(srv, KRAKEN_LOG_NOTICE, "module '%s' (pid %ld) registered as service '%s'", r->module,
         (long)c->pid, s->id);
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_registered_tag};
    f.msg.registered.ok = true;
    if (conn_send(c, &f) < 0)
        kraken_error_clear();
    if (s->expected && s->hooks.connection)
        s->hooks.connection(s->id, true, s->userdata);
    int want = cfg_state(s);
    if (want == KRAKEN_SERVICE_RUN) {
        svc_set_dsc(s, KRAKEN_SERVICE_INIT, NULL);
        send_start(c);
    } else if (want == KRAKEN_SERVICE_UNKNOWN && !s->expected) {
        /* A module started by hand runs: Cfg RUN makes the engine start it (op_start). */
        char url[300];
        snprintf(url, sizeof url, "/Services/%s/State", s->id);
        if (kraken_store_set_text(kraken_engine_store(srv->engine), KRAKEN_CFG,
                                  kraken_engine_self_id(srv->engine), url, "RUN") < 0)
            kraken_error_clear();
    } else {
        svc_set_dsc(s, KRAKEN_SERVICE_STOP, NULL);
    }
}

static int node_id_of(const pb_byte_t bytes[16], kraken_uuid *id)
{
    memcpy(id->bytes, bytes, 16);
    return 0;
}

/* One frame from a registered module. Returns false when the connection was closed. */
static bool handle_frame(mconn *c, kraken_module_Frame *f)
{
    kraken_module_server *srv = c->srv;
    if (f->which_msg == kraken_module_Frame_hello_tag) {
        if (c->svc) {
            conn_close(c, "a second Register on one connection");
            return false;
        }
        handle_register(c, &f->msg.hello);
        return !c->closing;
    }
    msvc *s = c->svc;
    if (!s) {
        char why[128];
        snprintf(why, sizeof why, "%s before Register", kraken__module_frame_name(f->which_msg));
        conn_close(c, why);
        return false;
    }
    if (!srv->engine)
        return true;
    kraken_uuid id;
    int rc = 0;
    switch (f->which_msg) {
    case kraken_module_Frame_discover_tag: {
        const kraken_module_Discover *d = &f->msg.discover;
        node_id_of(d->node_id, &id);
        if (!d->url)
            rc = kraken__err(KRAKEN_EINVAL, "Discover without a URL");
        else if (d->request_id)
            rc = kraken_service_report_text(s->service, &id, d->request_id, d->url,
                                            d->value ? d->value : "");
        else if (d->value_name)
            rc = kraken_service_discover_named(s->service, &id, d->url, d->value_name);
        else
            rc = kraken_service_discover_text(s->service, &id, d->url, d->value ? d->value : "");
        reply_on_error(c, d->seq, rc);
        break;
    }
    case kraken_module_Frame_fail_tag:
        node_id_of(f->msg.fail.node_id, &id);
        rc = kraken_service_fail(s->service, &id, f->msg.fail.request_id, f->msg.fail.reason);
        reply_on_error(c, f->msg.fail.seq, rc);
        break;
    case kraken_module_Frame_set_state_tag:
        rc = kraken_service_set_state(s->service, (kraken_service_state)f->msg.set_state.state,
                                      f->msg.set_state.error);
        reply_on_error(c, f->msg.set_state.seq, rc);
        break;
    case kraken_module_Frame_log_tag:
        kraken_service_log(s->service, (int)(f->msg.log.level > 9 ? 9 : f->msg.log.level), "%s",
                           f->msg.log.message ? f->msg.log.message : "");
        break;
    case kraken_module_Frame_query_tag: {
        node_id_of(f->msg.query.node_id, &id);
        kraken_node *node = NULL;
        kraken_module_Frame r = {.which_msg = kraken_module_Frame_reply_tag};
        r.msg.reply.seq = f->msg.query.seq;
        rc = f->msg.query.kind > KRAKEN_DSC
                 ? kraken__err(KRAKEN_EINVAL, "Query kind %u (0 Cfg, 1 Dsc)",
                               (unsigned)f->msg.query.kind)
                 : kraken_store_read(kraken_engine_store(srv->engine),
                                     (kraken_state_kind)f->msg.query.kind, &id, &node);
        if (rc == 0)
            rc = node_pb(node, &r.msg.reply.node);
        kraken_node_free(node);
        if (rc < 0) {
            reply_on_error(c, f->msg.query.seq, rc);
            break;
        }
        if (conn_send(c, &r) < 0)
            kraken_error_clear();
        free(r.msg.reply.node);
        break;
    }
    case kraken_module_Frame_update_cfg_tag: {
        const kraken_module_UpdateCfg *u = &f->msg.update_cfg;
        node_id_of(u->node_id, &id);
        rc = !u->url ? kraken__err(KRAKEN_EINVAL, "UpdateCfg without a URL")
                     : kraken_store_set_text(kraken_engine_store(srv->engine), KRAKEN_CFG, &id,
                                             u->url, u->value ? u->value : "");
        send_reply(c, u->seq, rc, rc < 0 ? kraken_error_last() : NULL);
        kraken_error_clear();
        break;
    }
    default: {
        char why[128];
        snprintf(why, sizeof why, "unexpected %s from a module",
                 kraken__module_frame_name(f->which_msg));
        conn_close(c, why);
        return false;
    }
    }
    return true;
}

/* Decode and handle every complete frame in the input buffer. */
static void handle_input(mconn *c)
{
    struct evbuffer *in = c->in;
    while (!c->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t *head = evbuffer_pullup(in, avail < 4 ? (ssize_t)avail : 4);
        uint32_t len = 0;
        int rc = kraken__module_frame_peek(head, avail, c->srv->max_frame, &len);
        if (rc == 1)
            return;
        kraken_module_Frame f;
        if (rc == 0) {
            rc = kraken__module_frame_decode(evbuffer_pullup(in, (ssize_t)len + 4) + 4, len, &f);
            evbuffer_drain(in, (size_t)len + 4);
        }
        if (rc < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", kraken_error_last());
            kraken_error_clear();
            conn_close(c, why);
            return;
        }
        bool alive = handle_frame(c, &f);
        kraken__module_frame_release(&f);
        if (!alive)
            return;
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    mconn *c = arg;
    if (c->closing) { /* a refused peer: discard until it hangs up */
        int n = evbuffer_read(c->in, fd, 65536);
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_free(c);
        return;
    }
    int n = evbuffer_read(c->in, fd, 65536);
    if (n == 0 && !c->svc && !evbuffer_get_length(c->in)) {
        /* Connected and left without a byte: a probe (another server checking whether this
         * socket is in use, a health check), not a module. Not worth a NOTICE. */
        SLOG(c->srv, KRAKEN_LOG_INFO, "module connection (pid %ld) closed before registering",
             (long)c->pid);
        conn_free(c);
        return;
    }
    if (n == 0) {
        conn_close(c, evbuffer_get_length(c->in) ? "the module hung up in the middle of a frame"
                                                 : "the module hung up");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        char why[128];
        if (errno == ECONNRESET)
            snprintf(why, sizeof why, "the module hung up (connection reset)");
        else
            snprintf(why, sizeof why, "socket error: %s", strerror(errno));
        conn_close(c, why);
        return;
    }
    handle_input(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mconn *c = arg;
    conn_flush(c);
}

static bool uid_allowed(const kraken_module_server *srv, uid_t uid)
{
    if (uid == geteuid())
        return true;
    for (size_t i = 0; i < srv->n_allowed; i++)
        if (srv->allowed[i] == uid)
            return true;
    return false;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    kraken_module_server *srv = arg;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    mconn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        SLOG(srv, KRAKEN_LOG_ERROR, "module connection dropped: out of memory");
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->next = srv->conns;
    srv->conns = c;
    evutil_make_socket_nonblocking(fd);
    c->rd = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->wr = event_new(srv->base, fd, EV_WRITE, on_writable, c);
    c->kill = event_new(srv->base, -1, 0, on_kill, c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (!c->rd || !c->wr || !c->kill || !c->in || !c->out) {
        conn_free(c);
        SLOG(srv, KRAKEN_LOG_ERROR, "module connection dropped: out of memory");
        return;
    }
    bool known = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0;
    c->uid = known ? cred.uid : (uid_t)-1;
    c->pid = known ? cred.pid : -1;
    if (!known || !uid_allowed(srv, c->uid)) {
        char why[128];
        snprintf(why, sizeof why, "peer uid %ld is not allowed on this module socket",
                 (long)c->uid);
        conn_refuse(c, KRAKEN_EAUTH, why);
        return;
    }
    event_add(c->rd, NULL);
}

/* ---- the listening socket ------------------------------------------------------------------ */

/*
 * Whether a live server listens on the socket file @p path. Renaming our socket over it would
 * cut that server off from its modules without a word (and its stop would then unlink ours),
 * so only a stale file, whose connect is refused, may be replaced. A full backlog (EAGAIN)
 * also means someone listens.
 */
static bool socket_in_use(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return false;
    bool live = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EAGAIN ||
                errno == EINPROGRESS;
    close(probe);
    return live;
}

/* Bind under a temporary name, chmod 0600, then rename: the socket is never reachable wider. */
static int listen_socket(const char *path, evutil_socket_t *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof sa.sun_path];
    if (strlen(path) + 16 >= sizeof sa.sun_path)
        return kraken__err(KRAKEN_EINVAL, "module socket path '%s' is too long (max %zu bytes)",
                           path, sizeof sa.sun_path - 17);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    strcpy(sa.sun_path, tmp);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return kraken__err(KRAKEN_EIO, "module socket: %s", strerror(errno));
    unlink(tmp);
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        close(fd);
        return kraken__err(KRAKEN_EEXISTS, "module socket '%s': a non-socket file is in the way",
                           path);
    }
    if (socket_in_use(path)) {
        close(fd);
        return kraken__err(KRAKEN_EEXISTS, "module socket '%s' is in use: another process "
                           "listens on it (give this instance a socket path of its own)", path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(tmp, 0600) < 0 ||
        listen(fd, 64) < 0 || rename(tmp, path) < 0) {
        int rc = kraken__err(KRAKEN_EIO, "module socket '%s': %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        return rc;
    }
    *out = fd;
    return 0;
}

static void engine_gone(void *arg)
{
    kraken_module_server *srv = arg;
    srv->engine = NULL;
    while (srv->conns)
        conn_free(srv->conns);
    for (msvc *s = srv->services; s; s = s->next)
        s->conn = NULL;
}

int kraken_module_server_new(kraken_module_server **out, kraken_engine *engine,
                             struct event_base *base, const kraken_module_server_options *opts)
{
    if (out)
        *out = NULL;
    if (!out || !engine || !base || !opts || !opts->socket_path || !*opts->socket_path)
        return kraken__err(KRAKEN_EINVAL,
                           "module_server_new: out, engine, base and a socket path are required");
    if (opts->version == 0 || opts->version > KRAKEN_MODULE_SERVER_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "module_server_new: unknown options version %u",
                           opts->version);
    kraken_module_server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->path = strdup(opts->socket_path))) {
        free(srv);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    srv->engine = engine;
    srv->base = base;
    srv->max_frame = opts->max_frame ? opts->max_frame : KRAKEN_MODULE_MAX_FRAME;
    srv->max_output = opts->max_output ? opts->max_output : (64u << 20);
    if (opts->n_allowed_uids) {
        srv->allowed = malloc(opts->n_allowed_uids * sizeof *srv->allowed);
        if (!srv->allowed) {
            free(srv->path);
            free(srv);
            return kraken__err(KRAKEN_ENOMEM, "out of memory");
        }
        memcpy(srv->allowed, opts->allowed_uids, opts->n_allowed_uids * sizeof *srv->allowed);
        srv->n_allowed = opts->n_allowed_uids;
    }
    evutil_socket_t fd;
    int rc = listen_socket(srv->path, &fd);
    if (rc == 0) {
        srv->listener = evconnlistener_new(base, on_accept, srv,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!srv->listener) {
            close(fd);
            unlink(srv->path);
            rc = kraken__err(KRAKEN_ENOMEM, "module socket: cannot listen on the loop");
        }
    }
    if (rc == 0 && (rc = kraken__engine_attach(engine, engine_gone, srv)) < 0) {
        evconnlistener_free(srv->listener);
        unlink(srv->path);
    }
    if (rc < 0) {
        free(srv->allowed);
        free(srv->path);
        free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

void kraken_module_server_free(kraken_module_server *server)
{
    if (!server)
        return;
    if (server->engine)
        kraken__engine_unattach(server->engine, server);
    while (server->services) {
        msvc *s = server->services;
        server->services = s->next;
        svc_free(s);
    }
    while (server->conns)
        conn_free(server->conns);
    if (server->listener)
        evconnlistener_free(server->listener);
    unlink(server->path);
    free(server->allowed);
    free(server->path);
    free(server);
}

const char *kraken_module_server_path(const kraken_module_server *server)
{
    return server ? server->path : NULL;
}

size_t kraken_module_server_connections(const kraken_module_server *server)
{
    size_t n = 0;
    for (const mconn *c = server ? server->conns : NULL; c; c = c->next)
        n++;
    return n;
}

static const size_t expect_hooks_sizes[] = {
    KRAKEN__VERSION_SIZE(kraken_module_expect_hooks, connection), /* 1 */
};
_Static_assert(sizeof expect_hooks_sizes / sizeof expect_hooks_sizes[0] ==
                   KRAKEN_MODULE_EXPECT_HOOKS_VERSION,
               "one size per version of kraken_module_expect_hooks");
_Static_assert(KRAKEN__VERSION_SIZE(kraken_module_expect_hooks, connection) ==
                   sizeof(kraken_module_expect_hooks),
               "kraken_module_expect_hooks grew: add its new version to expect_hooks_sizes");

static const kraken__struct_abi expect_hooks_abi = {
    "kraken_module_expect_hooks", "KRAKEN_MODULE_EXPECT_HOOKS_VERSION", expect_hooks_sizes,
    KRAKEN_MODULE_EXPECT_HOOKS_VERSION};

int kraken_module_server_expect(kraken_module_server *server, const char *service_id,
                                const char *module_name, const kraken_module_expect_hooks *hooks,
                                void *userdata, void (*destroy)(void *userdata))
{
    if (!server || !service_id || !module_name)
        return kraken__err(KRAKEN_EINVAL,
                           "module_server_expect: server, service id and module are required");
    if (!server->engine)
        return kraken__err(KRAKEN_ESTATE, "module_server_expect: the engine was freed");
    if (find_svc(server, service_id))
        return kraken__err(KRAKEN_EEXISTS, "module_server_expect: service '%s' already exists",
                           service_id);
    kraken_module_expect_hooks current = {0}; /* the caller's version, read into ours */
    int rc;
    if (hooks && (rc = kraken__struct_read(&expect_hooks_abi, hooks, &current)) < 0)
        return kraken__err_prefix(rc, "module_server_expect: service '%s'", service_id);
    msvc *s = svc_new(server, service_id, module_name);
    if (!s)
        return kraken__err_prefix(KRAKEN_EINVAL, "module_server_expect");
    s->expected = true;
    s->hooks = current;
    s->userdata = userdata;
    s->destroy = destroy;
    return 0;
}

int kraken_module_server_forget(kraken_module_server *server, const char *service_id)
{
    if (!server || !service_id)
        return kraken__err(KRAKEN_EINVAL, "module_server_forget: server and service id required");
    for (msvc **p = &server->services; *p; p = &(*p)->next) {
        if (strcmp((*p)->id, service_id) == 0) {
            msvc *s = *p;
            *p = s->next;
            svc_free(s);
            return 0;
        }
    }
    return kraken__err(KRAKEN_ENOTFOUND, "module_server_forget: no service '%s'", service_id);
}

kraken_service *kraken_module_server_service(kraken_module_server *server, const char *service_id)
{
    msvc *s = server && service_id ? find_svc(server, service_id) : NULL;
    return s ? s->service : NULL;
}
