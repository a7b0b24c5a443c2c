/*
 * module_client.c: the module side of the module socket (SPEC 7.2), so that
 * any program linking libkraken (and the Python/Lua bindings through it) can
 * be a module: kraken_module_connect() registers a descriptor, frames from
 * the instance call its handlers from the caller's loop, and the module's
 * calls become frames.
 *
 * Writes are queued and flushed as soon as possible (one write per burst of
 * calls). Discoveries, reports and failures do not wait for an answer (the
 * instance only answers a refusal, given to on_error); Register, Query and
 * UpdateCfg wait for their answer on the socket itself, keeping any other
 * frame that arrives meanwhile for the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "module_int.h"

#define DEFAULT_SOCKET "/run/kraken/module.sock"

typedef struct module_client {
    struct event_base *base;
    char *path;
    uint32_t timeout_ms;
    uint32_t max_frame;
    kraken_module_connect_options hooks; /* on_disconnect, on_error, hook_userdata */
    int fd;
    struct event *rd, *wr, *later;
    struct evbuffer *in, *out, *kept; /* kept: frames that arrived during a wait */
    uint64_t seq;
    int depth;        /* handler calls in progress */
    bool free_asked;  /* kraken_module_free() from a handler: freed when it returns */
    char reason[256]; /* why the connection went away */
} module_client;

int kraken_module_connect_options_init(kraken_module_connect_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "module_connect_options_init: opts is required");
    if (version == 0 || version > KRAKEN_MODULE_CONNECT_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "module_connect_options_init: unknown version %u "
                                          "(this libkraken knows 1..%u)",
                           version, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->request_timeout_ms = 5000;
    opts->max_frame = KRAKEN_MODULE_MAX_FRAME;
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- connection state ---------------------------------------------------------------------- */

static void client_close(module_client *c)
{
    if (c->rd)
        event_free(c->rd);
    if (c->wr)
        event_free(c->wr);
    c->rd = c->wr = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->in)
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
    if (c->out)
        evbuffer_drain(c->out, evbuffer_get_length(c->out));
    if (c->kept)
        evbuffer_drain(c->kept, evbuffer_get_length(c->kept));
}

/* The connection broke: close it, tell the module (once). */
static void client_lost(kraken_module *m, const char *why)
{
    module_client *c = m->client;
    if (c->fd < 0)
        return;
    snprintf(c->reason, sizeof c->reason, "%s", why);
    client_close(c);
    if (c->hooks.on_disconnect) {
        c->depth++;
        c->hooks.on_disconnect(m, c->reason, c->hooks.hook_userdata);
        c->depth--;
    }
}

static int not_connected(const kraken_module *m, const char *op)
{
    const module_client *c = m->client;
    return kraken__err(KRAKEN_ESTATE, "module_%s '%s': not connected%s%s", op, m->service_id,
                       c->reason[0] ? ": " : "", c->reason);
}

/* Write what is queued without blocking; the rest waits for the write event. */
static int flush_some(kraken_module *m)
{
    module_client *c = m->client;
    int err = kraken__module_send_some(c->fd, c->out);
    if (err < 0) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", strerror(-err));
        client_lost(m, why);
        return kraken__err(KRAKEN_EIO, "module '%s': %s", m->service_id, why);
    }
    if (evbuffer_get_length(c->out) > 0)
        event_add(c->wr, NULL);
    return 0;
}

static int send_frame(kraken_module *m, const kraken_module_Frame *f, const char *op)
{
    module_client *c = m->client;
    if (c->fd < 0)
        return not_connected(m, op);
    uint8_t *buf;
    size_t len;
    int rc = kraken__module_frame_encode(f, &buf, &len);
    if (rc < 0)
        return kraken__err_prefix(rc, "module_%s '%s'", op, m->service_id);
    bool was_empty = evbuffer_get_length(c->out) == 0;
    rc = evbuffer_add(c->out, buf, len) == 0 ? 0 : kraken__err(KRAKEN_ENOMEM, "out of memory");
    free(buf);
    if (rc == 0 && was_empty)
        rc = flush_some(m); /* latency: write now; a burst of calls coalesces behind it */
    return rc;
}

/* Wait (poll) until the fd is readable/writable or the deadline passes. */
static int wait_fd(kraken_module *m, short events, uint64_t deadline, const char *op)
{
    module_client *c = m->client;
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return kraken__err(KRAKEN_EIO, "module_%s '%s': no answer within %u ms", op,
                               m->service_id, c->timeout_ms);
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return kraken__err(KRAKEN_EIO, "module_%s: poll: %s", op, strerror(errno));
    }
}

/*
 * Block until a frame arrives for which @p match returns true; frames before
 * it are kept for the loop. The matched frame is left in @p out.
 */
static int wait_for(kraken_module *m, bool (*match)(const kraken_module_Frame *f, uint64_t seq),
                    uint64_t seq, kraken_module_Frame *out, const char *op)
{
    module_client *c = m->client;
    uint64_t deadline = mono_ms() + c->timeout_ms;
    /* Our request first. */
    while (c->fd >= 0 && evbuffer_get_length(c->out) > 0) {
        int rc = wait_fd(m, POLLOUT, deadline, op);
        if (rc < 0 || (rc = flush_some(m)) < 0)
            return rc;
    }
    for (;;) {
        if (c->fd < 0)
            return not_connected(m, op);
        size_t avail = evbuffer_get_length(c->in);
        uint8_t *head = evbuffer_pullup(c->in, avail < 4 ? (ssize_t)avail : 4);
        uint32_t len = 0;
        int rc = kraken__module_frame_peek(head, avail, c->max_frame, &len);
        if (rc < 0) {
            client_lost(m, kraken_error_last());
            return not_connected(m, op);
        }
        if (rc == 0) {
            uint8_t *body = evbuffer_pullup(c->in, (ssize_t)len + 4);
            if ((rc = kraken__module_frame_decode(body + 4, len, out)) < 0) {
                client_lost(m, kraken_error_last());
                return not_connected(m, op);
            }
            if (match(out, seq)) {
                evbuffer_drain(c->in, (size_t)len + 4);
                return 0;
            }
            kraken__module_frame_release(out);
            evbuffer_remove_buffer(c->in, c->kept, (size_t)len + 4);
            continue;
        }
        if ((rc = wait_fd(m, POLLIN, deadline, op)) < 0)
            return rc;
        int n = evbuffer_read(c->in, c->fd, 65536);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            client_lost(m, n == 0 ? "the instance closed the connection" : strerror(errno));
            return not_connected(m, op);
        }
    }
}

/* ---- frames from the instance -> handlers ------------------------------------------------ */

static void call_start(kraken_module *m, const char *config_text)
{
    const kraken_module_handlers *h = &m->desc->handlers;
    if (!h->start) {
        if (kraken_module_set_state(m, KRAKEN_SERVICE_RUN, NULL) < 0)
            kraken_error_clear();
        return;
    }
    kraken_value config;
    kraken__module_parse_config(m->service_id, config_text, &config);
    h->start(m, &config, m->userdata);
    kraken_value_clear(&config);
}

static void call_request(kraken_module *m, const kraken_module_MutationRequest *r)
{
    const kraken_module_handlers *h = &m->desc->handlers;
    void (*fn)(kraken_module *, const kraken_mutation_request *, void *) =
        r->interrupt ? h->interrupt : h->mutate;
    if (!fn)
        return;
    kraken_mutate mutates[16];
    size_t n = r->mutates_count < 16 ? r->mutates_count : 16;
    for (size_t i = 0; i < n; i++)
        mutates[i] = (kraken_mutate){r->mutates[i].url, r->mutates[i].from, r->mutates[i].to};
    kraken_mutation_request req = {
        .id = r->request_id,
        .service_id = m->service_id,
        .mutation_id = r->mutation_id ? r->mutation_id : "",
        .mutates = mutates,
        .n_mutates = n,
    };
    memcpy(req.node_id.bytes, r->node_id, 16);
    kraken_node *cfg = NULL, *dsc = NULL;
    if (r->cfg && kraken_node_decode(r->cfg->bytes, r->cfg->size, &cfg) < 0)
        kraken_error_clear();
    if (r->dsc && kraken_node_decode(r->dsc->bytes, r->dsc->size, &dsc) < 0)
        kraken_error_clear();
    if (!cfg && kraken_node_new(&cfg, &req.node_id) < 0)
        kraken_error_clear();
    if (!dsc && kraken_node_new(&dsc, &req.node_id) < 0)
        kraken_error_clear();
    req.cfg = cfg;
    req.dsc = dsc;
    fn(m, &req, m->userdata);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
}

static void call_event(kraken_module *m, const kraken_module_Event *e)
{
    if (!m->desc->handlers.event)
        return;
    kraken_value oldv = KRAKEN_VALUE_INIT, newv = KRAKEN_VALUE_INIT;
    if (e->url && e->has_old && kraken_url_parse_value(e->url, e->old_value, &oldv) < 0)
        kraken_error_clear();
    if (e->url && e->has_new && kraken_url_parse_value(e->url, e->new_value, &newv) < 0)
        kraken_error_clear();
    kraken_event ev = {
        .type = (kraken_event_type)e->type,
        .kind = e->kind,
        .seq = e->seq,
        .url = e->url,
        .old_value = e->has_old ? &oldv : NULL,
        .new_value = e->has_new ? &newv : NULL,
        .service_id = e->service_id,
        .mutation_id = e->mutation_id,
        .message = e->message,
    };
    memcpy(ev.node_id.bytes, e->node_id, 16);
    m->desc->handlers.event(m, &ev, m->userdata);
    kraken_value_clear(&oldv);
    kraken_value_clear(&newv);
}

static void dispatch(kraken_module *m, const kraken_module_Frame *f)
{
    module_client *c = m->client;
    const kraken_module_handlers *h = &m->desc->handlers;
    c->depth++;
    switch (f->which_msg) {
    case kraken_module_Frame_start_tag:
        call_start(m, f->msg.start.config);
        break;
    case kraken_module_Frame_stop_tag:
        if (h->stop)
            h->stop(m, m->userdata);
        if (c->fd >= 0 && kraken_module_set_state(m, KRAKEN_SERVICE_STOP, NULL) < 0)
            kraken_error_clear();
        break;
    case kraken_module_Frame_config_tag:
        if (h->config_changed) {
            kraken_value config;
            kraken__module_parse_config(m->service_id, f->msg.config.config, &config);
            h->config_changed(m, &config, m->userdata);
            kraken_value_clear(&config);
        }
        break;
    case kraken_module_Frame_mutation_tag:
        call_request(m, &f->msg.mutation);
        break;
    case kraken_module_Frame_event_tag:
        call_event(m, &f->msg.event);
        break;
    case kraken_module_Frame_reply_tag:
        /* An answer nobody waits for: the refusal of a discovery, report, failure, state. */
        if (f->msg.reply.code < 0 && c->hooks.on_error)
            c->hooks.on_error(m, f->msg.reply.code,
                              f->msg.reply.error ? f->msg.reply.error : "refused",
                              c->hooks.hook_userdata);
        break;
    default: {
        char why[128];
        snprintf(why, sizeof why, "unexpected %s from the instance",
                 kraken__module_frame_name(f->which_msg));
        client_lost(m, why);
        break;
    }
    }
    c->depth--;
}

/* Dispatch every complete frame of @p buf; false when the module was freed or disconnected. */
static bool drain_frames(kraken_module *m, struct evbuffer *buf)
{
    module_client *c = m->client;
    while (c->fd >= 0 && !c->free_asked) {
        size_t avail = evbuffer_get_length(buf);
        uint8_t *head = evbuffer_pullup(buf, avail < 4 ? (ssize_t)avail : 4);
        uint32_t len = 0;
        int rc = kraken__module_frame_peek(head, avail, c->max_frame, &len);
        if (rc == 1)
            return true;
        kraken_module_Frame f;
        if (rc == 0) {
            rc = kraken__module_frame_decode(evbuffer_pullup(buf, (ssize_t)len + 4) + 4, len, &f);
            evbuffer_drain(buf, (size_t)len + 4);
        }
        if (rc < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", kraken_error_last());
            kraken_error_clear();
            client_lost(m, why);
            return false;
        }
        dispatch(m, &f);
        kraken__module_frame_release(&f);
    }
    return false;
}

static void finish_dispatch(kraken_module *m)
{
    if (m->client->free_asked && m->client->depth == 0)
        kraken_module_free(m);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    /* Also called for frames kept during a wait (fd -1): then only those. */
    kraken_module *m = arg;
    module_client *c = m->client;
    if (evbuffer_get_length(c->kept) > 0) {
        c->depth++;
        drain_frames(m, c->kept);
        c->depth--;
    }
    if (c->fd < 0 || c->free_asked) {
        finish_dispatch(m);
        return;
    }
    if (!(what & EV_READ) || fd < 0) {
        finish_dispatch(m);
        return;
    }
    int n = evbuffer_read(c->in, c->fd, 65536);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        char why[128];
        snprintf(why, sizeof why, "%s",
                 n == 0 ? "the instance closed the connection" : strerror(errno));
        c->depth++;
        client_lost(m, why);
        c->depth--;
        finish_dispatch(m);
        return;
    }
    c->depth++;
    drain_frames(m, c->in);
    c->depth--;
    finish_dispatch(m);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_module *m = arg;
    if (flush_some(m) < 0)
        kraken_error_clear();
}

/* Frames kept during a wait are dispatched from the loop, not from the waiting call. */
static void on_later(evutil_socket_t fd, short what, void *arg)
{
    on_readable(fd, what, arg);
}

/*
 * Move the complete frames of the input to the kept queue (which the loop
 * dispatches before new input): a partial frame at the end stays where the
 * next read continues it.
 */
static void keep_complete_frames(module_client *c)
{
    for (;;) {
        size_t avail = evbuffer_get_length(c->in);
        uint8_t *head = evbuffer_pullup(c->in, avail < 4 ? (ssize_t)avail : 4);
        uint32_t len = 0;
        int rc = kraken__module_frame_peek(head, avail, c->max_frame, &len);
        if (rc != 0) {
            kraken_error_clear(); /* an oversized one is refused when it is dispatched */
            return;
        }
        evbuffer_remove_buffer(c->in, c->kept, (size_t)len + 4);
    }
}

/* ---- connect and register ------------------------------------------------------------------- */

static bool match_registered(const kraken_module_Frame *f, uint64_t seq)
{
    (void)seq;
    return f->which_msg == kraken_module_Frame_registered_tag;
}

static int open_socket(kraken_module *m)
{
    module_client *c = m->client;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->path) >= sizeof sa.sun_path)
        return kraken__err(KRAKEN_EINVAL, "module_connect: socket path '%s' is too long",
                           c->path);
    strcpy(sa.sun_path, c->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kraken__err(KRAKEN_EIO, "module_connect: socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int rc = kraken__err(KRAKEN_EIO, "module_connect: %s: %s", c->path, strerror(errno));
        close(fd);
        return rc;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->rd = event_new(c->base, fd, EV_READ | EV_PERSIST, on_readable, m);
    c->wr = event_new(c->base, fd, EV_WRITE, on_writable, m);
    if (!c->rd || !c->wr) {
        client_close(c);
        return kraken__err(KRAKEN_ENOMEM, "module_connect: out of memory");
    }
    c->reason[0] = '\0';
    return 0;
}

static int do_register(kraken_module *m)
{
    module_client *c = m->client;
    int rc = open_socket(m);
    if (rc < 0)
        return rc;
    kraken_module_Frame reg;
    if ((rc = kraken__module_register_from_desc(m->desc, m->service_id, &reg)) < 0) {
        client_close(c);
        return rc;
    }
    rc = send_frame(m, &reg, "connect");
    kraken__module_register_free(&reg);
    kraken_module_Frame ans;
    if (rc == 0)
        rc = wait_for(m, match_registered, 0, &ans, "connect");
    if (rc < 0) {
        client_close(c);
        return rc;
    }
    if (!ans.msg.registered.ok) {
        rc = kraken__err(KRAKEN_EAUTH, "module_connect '%s': refused by %s: %s", m->service_id,
                         c->path, ans.msg.registered.error ? ans.msg.registered.error : "");
        kraken__module_frame_release(&ans);
        client_close(c);
        return rc;
    }
    kraken__module_frame_release(&ans);
    event_add(c->rd, NULL);
    keep_complete_frames(c); /* Start may have come with Registered */
    if (evbuffer_get_length(c->kept) > 0)
        event_active(c->later, EV_READ, 0);
    return 0;
}

/* ---- backend ------------------------------------------------------------------------------ */

static int cl_discover(kraken_module *m, const kraken_uuid *node, const char *url,
                       const char *text, const char *name, uint64_t request_id)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_discover_tag};
    kraken_module_Discover *d = &f.msg.discover;
    d->seq = ++m->client->seq;
    memcpy(d->node_id, node->bytes, 16);
    d->url = (char *)(uintptr_t)url;
    d->value = (char *)(uintptr_t)text;
    d->value_name = (char *)(uintptr_t)name;
    d->request_id = request_id;
    return send_frame(m, &f, request_id ? "report" : "discover");
}

static int cl_fail(kraken_module *m, const kraken_uuid *node, uint64_t request_id,
                   const char *reason)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_fail_tag};
    f.msg.fail.seq = ++m->client->seq;
    memcpy(f.msg.fail.node_id, node->bytes, 16);
    f.msg.fail.request_id = request_id;
    f.msg.fail.reason = (char *)(uintptr_t)reason;
    return send_frame(m, &f, "fail");
}

static int cl_set_state(kraken_module *m, kraken_service_state state, const char *msg)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_set_state_tag};
    f.msg.set_state.seq = ++m->client->seq;
    f.msg.set_state.state = (uint32_t)state;
    f.msg.set_state.error = (char *)(uintptr_t)msg;
    return send_frame(m, &f, "set_state");
}

static bool match_reply(const kraken_module_Frame *f, uint64_t seq)
{
    return f->which_msg == kraken_module_Frame_reply_tag && f->msg.reply.seq == seq;
}

/* Send @p f (whose seq is @p seq) and wait for its Reply. */
static int round_trip(kraken_module *m, const kraken_module_Frame *f, uint64_t seq,
                      kraken_module_Frame *ans, const char *op)
{
    module_client *c = m->client;
    /* Unread frames stay in order: all of them are dispatched later from the loop. */
    keep_complete_frames(c);
    int rc = send_frame(m, f, op);
    if (rc == 0)
        rc = wait_for(m, match_reply, seq, ans, op);
    keep_complete_frames(c);
    if (c->fd >= 0 && evbuffer_get_length(c->kept) > 0)
        event_active(c->later, EV_READ, 0);
    if (rc == 0 && ans->msg.reply.code < 0) {
        rc = kraken__err(ans->msg.reply.code, "%s",
                         ans->msg.reply.error ? ans->msg.reply.error : "refused");
        kraken__module_frame_release(ans);
    }
    return rc;
}

static int cl_query(kraken_module *m, kraken_state_kind kind, const kraken_uuid *node,
                    kraken_node **out)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_query_tag}, ans;
    uint64_t seq = f.msg.query.seq = ++m->client->seq;
    f.msg.query.kind = (uint32_t)kind;
    memcpy(f.msg.query.node_id, node->bytes, 16);
    int rc = round_trip(m, &f, seq, &ans, "query");
    if (rc < 0)
        return rc;
    if (ans.msg.reply.node)
        rc = kraken_node_decode(ans.msg.reply.node->bytes, ans.msg.reply.node->size, out);
    else
        rc = kraken__err(KRAKEN_EPROTO, "module_query: the answer has no node");
    kraken__module_frame_release(&ans);
    return rc;
}

static int cl_update_cfg(kraken_module *m, const kraken_uuid *node, const char *url,
                         const char *text)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_update_cfg_tag}, ans;
    uint64_t seq = f.msg.update_cfg.seq = ++m->client->seq;
    memcpy(f.msg.update_cfg.node_id, node->bytes, 16);
    f.msg.update_cfg.url = (char *)(uintptr_t)url;
    f.msg.update_cfg.value = (char *)(uintptr_t)text;
    int rc = round_trip(m, &f, seq, &ans, "update_cfg");
    if (rc == 0)
        kraken__module_frame_release(&ans);
    return rc;
}

static void cl_log(kraken_module *m, int level, const char *line)
{
    kraken_module_Frame f = {.which_msg = kraken_module_Frame_log_tag};
    f.msg.log.level = (uint32_t)(level < 0 ? 0 : level);
    f.msg.log.message = (char *)(uintptr_t)line;
    if (send_frame(m, &f, "log") < 0)
        kraken_error_clear();
}

static bool cl_connected(const kraken_module *m)
{
    return m->client->fd >= 0;
}

bool kraken__module_client_defer_free(kraken_module *m)
{
    if (!m->client || m->client->depth == 0)
        return false;
    m->client->free_asked = true;
    return true;
}

static void release_client(kraken_module *m)
{
    module_client *c = m->client;
    if (!c)
        return;
    client_close(c);
    if (c->later)
        event_free(c->later);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    if (c->kept)
        evbuffer_free(c->kept);
    free(c->path);
    free(c);
    m->client = NULL;
}

static const module_backend client_backend = {
    .what = "connected",
    .discover = cl_discover,
    .fail = cl_fail,
    .set_state = cl_set_state,
    .query = cl_query,
    .update_cfg = cl_update_cfg,
    .log = cl_log,
    .connected = cl_connected,
    .release = release_client,
};

int kraken_module_connect(kraken_module **out, struct event_base *base,
                          const kraken_module_desc *desc,
                          const kraken_module_connect_options *opts, void *userdata,
                          void (*destroy)(void *userdata))
{
    if (out)
        *out = NULL;
    if (!out || !base)
        return kraken__err(KRAKEN_EINVAL, "module_connect: out and base are required");
    int rc = kraken__module_desc_check(desc, "module_connect");
    if (rc < 0)
        return rc;
    kraken_module_connect_options defaults;
    kraken_module_connect_options_init(&defaults, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    if (!opts)
        opts = &defaults;
    if (opts->version == 0 || opts->version > KRAKEN_MODULE_CONNECT_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "module_connect: unknown options version %u",
                           opts->version);
    /* Schemas first: config and events are parsed with them on this side too. */
    if (desc->schemas_json &&
        (rc = kraken_schema_load_json(desc->schemas_json, strlen(desc->schemas_json),
                                      desc->name)) < 0)
        return kraken__err_prefix(rc, "module '%s' schemas", desc->name);
    const char *sid = opts->service_id ? opts->service_id : getenv("KRAKEN_SERVICE_ID");
    const char *path = opts->socket_path ? opts->socket_path : getenv("KRAKEN_MODULE_SOCKET");
    kraken_module *m = kraken__module_alloc(desc, sid && *sid ? sid : desc->name, &client_backend,
                                            NULL, NULL);
    module_client *c = m ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        kraken_module_free(m);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    m->client = c;
    c->fd = -1;
    c->base = base;
    c->path = strdup(path && *path ? path : DEFAULT_SOCKET);
    c->timeout_ms = opts->request_timeout_ms ? opts->request_timeout_ms : 5000;
    c->max_frame = opts->max_frame ? opts->max_frame : KRAKEN_MODULE_MAX_FRAME;
    c->hooks = *opts;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->kept = evbuffer_new();
    c->later = event_new(base, -1, 0, on_later, m);
    if (!c->path || !c->in || !c->out || !c->kept || !c->later) {
        kraken_module_free(m);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    if ((rc = do_register(m)) < 0) {
        kraken_module_free(m);
        return rc;
    }
    m->userdata = userdata;
    m->destroy = destroy;
    *out = m;
    return 0;
}

int kraken_module_reconnect(kraken_module *module)
{
    if (!module || !module->client)
        return kraken__err(KRAKEN_EINVAL, "module_reconnect: a connected module is required");
    if (module->client->fd >= 0)
        return kraken__err(KRAKEN_ESTATE, "module_reconnect '%s': still connected",
                           module->service_id);
    return do_register(module);
}
