/* SPDX-License-Identifier: BSD-3-Clause */
/* The C layer under the SWIG bindings: see kb.h for what it adds and why. */
#include "kb.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ----------------------------------------------------------------------------------- */

static __thread int pending;

int kb_take_pending(void)
{
    int code = pending;
    pending = 0;
    return code;
}

void kb_clear_pending(void)
{
    pending = 0;
}

/* Record a library failure (its message is already set) and pass the code on. */
static int check(int rc)
{
    if (rc < 0)
        pending = rc;
    return rc;
}

/* A failure of this layer itself: set the message and record the code. */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kraken_error_set(code, "%s", msg);
    pending = code;
    return code;
}

static int no_memory(void)
{
    return fail(KRAKEN_ENOMEM, "out of memory");
}

const char *kb_err_name(int code)
{
    return kraken_err_name(code);
}

const char *kb_strerror(int code)
{
    return kraken_strerror(code);
}

const char *kb_version(void)
{
    return kraken_version();
}

/* Parse a node id given as text; @p what names it in the message. */
static int parse_id(const char *text, kraken_uuid *out, const char *what)
{
    if (!text)
        return fail(KRAKEN_EINVAL, "%s: a node id is required", what);
    if (kraken_uuid_parse(out, text) < 0)
        return fail(KRAKEN_EPARSE, "%s: invalid node id '%.64s': expected a UUID "
                    "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", what, text);
    return 0;
}

static __thread char id_buf[KRAKEN_UUID_STRLEN + 1];

static const char *id_text(const kraken_uuid *id)
{
    return id ? kraken_uuid_format(id, id_buf) : NULL;
}

/* "a\nb\n..." from @p n strings given by @p get (malloc'ed, "" when none). */
static char *join_lines(size_t n, const char *(*get)(const void *obj, size_t i), const void *obj)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(get(obj, i)) + 1;
    char *out = malloc(len), *p = out;
    if (!out) {
        no_memory();
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i ? "\n" : "", get(obj, i));
    *p = '\0';
    return out;
}

/* ---- callbacks -------------------------------------------------------------------------------- */

void kb_callback_release(kb_callback *cb)
{
    if (cb && cb->release)
        cb->release(cb);
}

static void release_hook(void *userdata)
{
    kb_callback_release(userdata);
}

static void invoke(kb_callback *cb, const kb_call *call)
{
    if (cb && cb->invoke)
        cb->invoke(cb, call);
}

int kb_call_kind_of(const kb_call *call)
{
    return call ? (int)call->kind : 0;
}

const char *kb_call_node_id(const kb_call *call)
{
    if (!call)
        return NULL;
    if (call->event)
        return id_text(&call->event->node_id);
    if (call->change)
        return id_text(&call->change->node_id);
    if (call->request)
        return id_text(&call->request->node_id);
    return NULL;
}

const char *kb_call_url(const kb_call *call)
{
    if (!call)
        return NULL;
    if (call->event)
        return call->event->url;
    return call->change ? call->change->url : NULL;
}

const char *kb_call_service_id(const kb_call *call)
{
    if (!call)
        return NULL;
    if (call->event)
        return call->event->service_id;
    return call->request ? call->request->service_id : NULL;
}

const char *kb_call_mutation_id(const kb_call *call)
{
    if (!call)
        return NULL;
    if (call->event)
        return call->event->mutation_id;
    return call->request ? call->request->mutation_id : NULL;
}

const char *kb_call_message(const kb_call *call)
{
    if (!call)
        return NULL;
    return call->event ? call->event->message : call->message;
}

const char *kb_call_subsystem(const kb_call *call)
{
    return call ? call->subsystem : NULL;
}

int kb_call_level(const kb_call *call)
{
    return call ? call->level : 0;
}

int kb_call_code(const kb_call *call)
{
    return call ? call->code : 0;
}

int kb_call_event_type(const kb_call *call)
{
    return call && call->event ? (int)call->event->type : 0;
}

int kb_call_event_kind(const kb_call *call)
{
    if (call && call->event)
        return call->event->kind;
    return call && call->change ? (int)call->change->kind : 0;
}

uint64_t kb_call_seq(const kb_call *call)
{
    return call && call->event ? call->event->seq : 0;
}

uint64_t kb_call_request_id(const kb_call *call)
{
    return call && call->request ? call->request->id : 0;
}

int kb_call_n_mutates(const kb_call *call)
{
    return call && call->request ? (int)call->request->n_mutates : 0;
}

const char *kb_call_mutate(const kb_call *call, int i, int which)
{
    if (!call || !call->request || i < 0 || (size_t)i >= call->request->n_mutates) {
        fail(KRAKEN_EINVAL, "mutate %d: no such mutate in this request", i);
        return NULL;
    }
    const kraken_mutate *m = &call->request->mutates[i];
    return which == 0 ? m->url : which == 1 ? m->from : m->to;
}

static const kraken_value *call_value(const kb_call *call, int which)
{
    if (!call)
        return NULL;
    if (which == 2)
        return call->config;
    if (call->event)
        return which == 0 ? call->event->old_value : call->event->new_value;
    if (call->change)
        return which == 0 ? call->change->old_value : call->change->new_value;
    return NULL;
}

char *kb_call_value_text(const kb_call *call, int which)
{
    const kraken_value *v = call_value(call, which);
    if (!v || v->type == KRAKEN_T_NONE)
        return NULL;
    char *text = NULL;
    check(kraken_value_format(v, &text));
    return text;
}

int kb_call_value_type(const kb_call *call, int which)
{
    const kraken_value *v = call_value(call, which);
    return v ? (int)v->type : KRAKEN_T_NONE;
}

kraken_node *kb_call_node(const kb_call *call, int which)
{
    if (!call || !call->request) {
        fail(KRAKEN_EINVAL, "this call carries no node");
        return NULL;
    }
    kraken_node *copy = NULL;
    check(kraken_node_copy(&copy, which == 0 ? call->request->cfg : call->request->dsc));
    return copy;
}

/* ---- event loop ------------------------------------------------------------------------------- */

struct kb_loop {
    int refs;
    struct event_base *base;
    struct event *wake; /* the timeout of kb_loop_step / kb_loop_run_for */
    bool woke;
    bool stopped;
};

static void loop_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kb_loop *loop = arg;
    loop->woke = true;
    event_base_loopbreak(loop->base);
}

kb_loop *kb_loop_new(void)
{
    kb_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        no_memory();
        return NULL;
    }
    loop->base = event_base_new();
    loop->wake = loop->base ? evtimer_new(loop->base, loop_wake, loop) : NULL;
    if (!loop->wake) {
        if (loop->base)
            event_base_free(loop->base);
        free(loop);
        fail(KRAKEN_EIO, "cannot create a libevent event_base");
        return NULL;
    }
    loop->refs = 1;
    return loop;
}

static kb_loop *loop_ref(kb_loop *loop)
{
    loop->refs++;
    return loop;
}

static void loop_unref(kb_loop *loop)
{
    if (!loop || --loop->refs > 0)
        return;
    event_free(loop->wake);
    event_base_free(loop->base);
    free(loop);
}

void kb_loop_destroy(kb_loop *loop)
{
    loop_unref(loop);
}

int kb_loop_step(kb_loop *loop, int timeout_ms)
{
    if (!loop)
        return fail(KRAKEN_EINVAL, "loop_step: no loop");
    loop->woke = loop->stopped = false;
    int flags = EVLOOP_ONCE;
    if (timeout_ms == 0)
        flags |= EVLOOP_NONBLOCK;
    else if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(loop->wake, &tv);
    }
    int rc = event_base_loop(loop->base, flags);
    evtimer_del(loop->wake);
    if (rc < 0)
        return fail(KRAKEN_EIO, "loop_step: event_base_loop failed");
    return rc == 0 && !loop->woke;
}

int kb_loop_run_for(kb_loop *loop, int ms)
{
    if (!loop)
        return fail(KRAKEN_EINVAL, "loop_run_for: no loop");
    if (ms < 0)
        return fail(KRAKEN_EINVAL, "loop_run_for: negative time %d ms", ms);
    loop->woke = loop->stopped = false;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(loop->wake, &tv);
    int rc = event_base_loop(loop->base, 0);
    evtimer_del(loop->wake);
    if (rc < 0)
        return fail(KRAKEN_EIO, "loop_run_for: event_base_loop failed");
    return loop->stopped;
}

void kb_loop_stop(kb_loop *loop)
{
    if (!loop)
        return;
    loop->stopped = true;
    event_base_loopbreak(loop->base);
}

/* ---- nodes ------------------------------------------------------------------------------------ */

static int need_node(const kraken_node *node, const char *what)
{
    return node ? 0 : fail(KRAKEN_EINVAL, "%s: a node is required", what);
}

kraken_node *kb_node_new(const char *id)
{
    kraken_uuid uuid = {{0}};
    if (id && parse_id(id, &uuid, "Node") < 0)
        return NULL;
    kraken_node *node = NULL;
    check(kraken_node_new(&node, &uuid));
    return node;
}

void kb_node_destroy(kraken_node *node)
{
    kraken_node_free(node);
}

kraken_node *kb_node_copy(const kraken_node *node)
{
    kraken_node *copy = NULL;
    if (need_node(node, "node_copy") == 0)
        check(kraken_node_copy(&copy, node));
    return copy;
}

kraken_node *kb_node_from_json(const char *json, const char *source)
{
    if (!json) {
        fail(KRAKEN_EINVAL, "node_from_json: no JSON text");
        return NULL;
    }
    kraken_node *node = NULL;
    check(kraken_node_from_json(json, strlen(json), source ? source : "json", &node));
    return node;
}

char *kb_node_to_json(const kraken_node *node, bool pretty)
{
    char *out = NULL;
    if (need_node(node, "node_to_json") == 0)
        check(kraken_node_to_json(node, pretty ? KRAKEN_JSON_PRETTY : 0, &out));
    return out;
}

const char *kb_node_id(const kraken_node *node)
{
    return need_node(node, "node_id") == 0 ? id_text(kraken_node_id(node)) : NULL;
}

bool kb_node_equal(const kraken_node *a, const kraken_node *b)
{
    return a && b && kraken_node_equal(a, b);
}

static __thread int last_type;

int kb_last_type(void)
{
    return last_type;
}

/* The text of @p v (NULL on error) and its type in last_type; clears @p v. */
static char *value_text(kraken_value *v)
{
    char *out = NULL;
    last_type = v->type;
    check(kraken_value_format(v, &out));
    kraken_value_clear(v);
    return out;
}

char *kb_node_get_text(const kraken_node *node, const char *url)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    last_type = KRAKEN_T_NONE;
    if (need_node(node, "node_get") < 0 || check(kraken_node_get(node, url, &v)) < 0)
        return NULL;
    return value_text(&v);
}

int kb_node_set_text(kraken_node *node, const char *url, const char *text)
{
    if (need_node(node, "node_set") < 0)
        return KRAKEN_EINVAL;
    return check(kraken_node_set_text(node, url, text));
}

int kb_node_unset(kraken_node *node, const char *url)
{
    if (need_node(node, "node_unset") < 0)
        return KRAKEN_EINVAL;
    return check(kraken_node_unset(node, url));
}

static const char *service_id_at(const void *node, size_t i)
{
    return kraken_node_service_id(node, i);
}

static const char *extension_at(const void *node, size_t i)
{
    return kraken_schema_type_url(kraken_node_extension_schema(node, i));
}

char *kb_node_service_ids(const kraken_node *node)
{
    if (need_node(node, "node_services") < 0)
        return NULL;
    return join_lines(kraken_node_service_count(node), service_id_at, node);
}

char *kb_node_extensions(const kraken_node *node)
{
    if (need_node(node, "node_extensions") < 0)
        return NULL;
    return join_lines(kraken_node_extension_count(node), extension_at, node);
}

int kb_url_type(const char *url)
{
    kraken_type type = KRAKEN_T_NONE;
    int rc = check(kraken_url_type(url, &type, NULL));
    return rc < 0 ? rc : (int)type;
}

const char *kb_url_enum_name(const char *url)
{
    kraken_type type = KRAKEN_T_NONE;
    const struct kraken_enum_type *et = NULL;
    if (check(kraken_url_type(url, &type, &et)) < 0 || type != KRAKEN_T_ENUM || !et)
        return NULL;
    return kraken_enum_type_name(et);
}

char *kb_enum_members(const char *name)
{
    const kraken_enum_type *et = name ? kraken_enum_find(name) : NULL;
    if (!et) {
        fail(KRAKEN_ENOTFOUND, "enum type '%s' is not registered", name ? name : "(null)");
        return NULL;
    }
    size_t n = kraken_enum_type_count(et), len = 1;
    for (size_t i = 0; i < n; i++) {
        const char *member;
        int32_t number;
        kraken_enum_type_member(et, i, &member, &number);
        len += strlen(member) + 14;
    }
    char *out = malloc(len), *p = out;
    if (!out) {
        no_memory();
        return NULL;
    }
    *p = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *member;
        int32_t number;
        kraken_enum_type_member(et, i, &member, &number);
        p += sprintf(p, "%s%s=%d", i ? "\n" : "", member, (int)number);
    }
    return out;
}

char *kb_url_canonical(const char *url)
{
    char *out = NULL;
    check(kraken_url_canonical(url, &out));
    return out;
}

int kb_schema_load_json(const char *json, const char *source)
{
    if (!json)
        return fail(KRAKEN_EINVAL, "schema_load_json: no JSON text");
    return check(kraken_schema_load_json(json, strlen(json), source ? source : "schemas"));
}

int kb_schema_load_file(const char *path)
{
    return check(kraken_schema_load_file(path));
}

const char *kb_uuid_generate(void)
{
    kraken_uuid id;
    if (check(kraken_uuid_generate(&id)) < 0)
        return NULL;
    return id_text(&id);
}

/* ---- engine (defined here: the store borrows it) ---------------------------------------------- */

struct kb_engine {
    int refs; /* the proxy's, and one per borrowed kb_store */
    kraken_engine *e;
    kb_loop *loop;
};

static kraken_engine *engine_of(kb_engine *w, const char *what)
{
    if (!w) {
        fail(KRAKEN_EINVAL, "%s: no engine", what);
        return NULL;
    }
    if (!w->e)
        fail(KRAKEN_ESTATE, "%s: the engine is closed", what);
    return w->e;
}

static void engine_unref(kb_engine *w)
{
    if (w && --w->refs == 0)
        free(w);
}

/* ---- store ------------------------------------------------------------------------------------ */

struct kb_store {
    kraken_store *own;    /* a store of its own, or */
    kb_engine *engine;    /* the engine whose store this is */
    bool closed;
};

struct kb_listener {
    kraken_store_listener *l;
};

static kraken_store *store_of(kb_store *s, const char *what)
{
    if (!s) {
        fail(KRAKEN_EINVAL, "%s: no store", what);
        return NULL;
    }
    if (s->closed) {
        fail(KRAKEN_ESTATE, "%s: the store is closed", what);
        return NULL;
    }
    if (s->own)
        return s->own;
    if (!s->engine || !s->engine->e) {
        fail(KRAKEN_ESTATE, "%s: the store's engine is closed", what);
        return NULL;
    }
    kraken_store *st = kraken_engine_store(s->engine->e);
    if (!st) /* refused with a message; a pointer getter has no code: the thread check's */
        pending = strstr(kraken_error_last(), "thread") ? KRAKEN_ETHREAD : KRAKEN_ESTATE;
    return st;
}

static int store_kind(int kind, kraken_state_kind *out)
{
    if (kind != KRAKEN_CFG && kind != KRAKEN_DSC)
        return fail(KRAKEN_EINVAL, "state kind %d: expected 0 (cfg) or 1 (dsc)", kind);
    *out = (kraken_state_kind)kind;
    return 0;
}

kb_store *kb_store_new(void)
{
    kb_store *s = calloc(1, sizeof *s);
    if (!s) {
        no_memory();
        return NULL;
    }
    if (check(kraken_store_new(&s->own)) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

kb_store *kb_engine_store(kb_engine *engine)
{
    if (!engine_of(engine, "engine_store"))
        return NULL;
    kb_store *s = calloc(1, sizeof *s);
    if (!s) {
        no_memory();
        return NULL;
    }
    s->engine = engine;
    engine->refs++;
    return s;
}

void kb_store_close(kb_store *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    kraken_store_free(s->own);
    s->own = NULL;
    engine_unref(s->engine);
    s->engine = NULL;
}

void kb_store_destroy(kb_store *s)
{
    kb_store_close(s);
    free(s);
}

int kb_store_count(kb_store *s)
{
    kraken_store *st = store_of(s, "store_count");
    return st ? (int)kraken_store_count(st) : pending;
}

bool kb_store_contains(kb_store *s, const char *id)
{
    kraken_store *st = store_of(s, "store_contains");
    kraken_uuid uuid;
    return st && parse_id(id, &uuid, "store_contains") == 0 && kraken_store_contains(st, &uuid);
}

static const char *node_id_at(const void *nodes, size_t i)
{
    return id_text(kraken_node_id(((kraken_node *const *)nodes)[i]));
}

char *kb_store_ids(kb_store *s)
{
    kraken_store *st = store_of(s, "store_ids");
    kraken_node **nodes = NULL;
    size_t n = 0;
    if (!st || check(kraken_store_read_all(st, KRAKEN_CFG, &nodes, &n)) < 0)
        return NULL;
    char *out = join_lines(n, node_id_at, nodes);
    kraken_nodes_free(nodes, n);
    return out;
}

int kb_store_create(kb_store *s, const kraken_node *cfg)
{
    kraken_store *st = store_of(s, "store_create");
    if (!st || need_node(cfg, "store_create") < 0)
        return pending;
    return check(kraken_store_create(st, cfg));
}

kraken_node *kb_store_read(kb_store *s, int kind, const char *id)
{
    kraken_store *st = store_of(s, "store_read");
    kraken_state_kind k = KRAKEN_CFG;
    kraken_uuid uuid;
    kraken_node *node = NULL;
    if (st && store_kind(kind, &k) == 0 && parse_id(id, &uuid, "store_read") == 0)
        check(kraken_store_read(st, k, &uuid, &node));
    return node;
}

int kb_store_update(kb_store *s, int kind, const kraken_node *node)
{
    kraken_store *st = store_of(s, "store_update");
    kraken_state_kind k = KRAKEN_CFG;
    if (!st || store_kind(kind, &k) < 0 || need_node(node, "store_update") < 0)
        return pending;
    return check(kraken_store_update(st, k, node));
}

char *kb_store_get_text(kb_store *s, int kind, const char *id, const char *url)
{
    kraken_store *st = store_of(s, "store_get");
    kraken_state_kind k = KRAKEN_CFG;
    kraken_uuid uuid;
    kraken_value v = KRAKEN_VALUE_INIT;
    last_type = KRAKEN_T_NONE;
    if (!st || store_kind(kind, &k) < 0 || parse_id(id, &uuid, "store_get") < 0)
        return NULL;
    if (check(kraken_store_get_value(st, k, &uuid, url, &v)) < 0)
        return NULL;
    return value_text(&v);
}

int kb_store_set_text(kb_store *s, int kind, const char *id, const char *url, const char *text)
{
    kraken_store *st = store_of(s, "store_set");
    kraken_state_kind k = KRAKEN_CFG;
    kraken_uuid uuid;
    if (!st || store_kind(kind, &k) < 0 || parse_id(id, &uuid, "store_set") < 0)
        return pending;
    return check(kraken_store_set_text(st, k, &uuid, url, text));
}

int kb_store_delete(kb_store *s, const char *id)
{
    kraken_store *st = store_of(s, "store_delete");
    kraken_uuid uuid;
    if (!st || parse_id(id, &uuid, "store_delete") < 0)
        return pending;
    return check(kraken_store_delete(st, &uuid));
}

int kb_store_load(kb_store *s, const char *path)
{
    kraken_store *st = store_of(s, "store_load");
    return st ? check(kraken_store_load(st, path)) : pending;
}

int kb_store_load_dsc(kb_store *s, const char *path)
{
    kraken_store *st = store_of(s, "store_load_dsc");
    return st ? check(kraken_store_load_dsc(st, path)) : pending;
}

int kb_store_save(kb_store *s, int kind, const char *path)
{
    kraken_store *st = store_of(s, "store_save");
    kraken_state_kind k = KRAKEN_CFG;
    if (!st || store_kind(kind, &k) < 0)
        return pending;
    return check(kraken_store_save(st, k, path));
}

char *kb_store_to_json(kb_store *s, int kind, bool pretty)
{
    kraken_store *st = store_of(s, "store_to_json");
    kraken_state_kind k = KRAKEN_CFG;
    char *out = NULL;
    if (st && store_kind(kind, &k) == 0)
        check(kraken_store_to_json(st, k, pretty ? KRAKEN_JSON_PRETTY : 0, &out));
    return out;
}

const char *kb_store_find(kb_store *s, const char *nodename)
{
    kraken_store *st = store_of(s, "store_find");
    kraken_uuid id;
    if (!st || check(kraken_store_find_by_nodename(st, nodename, &id)) < 0)
        return NULL;
    return id_text(&id);
}

static void listener_fn(const kraken_state_change *change, void *userdata)
{
    kb_call call = {.kind = KB_CALL_CHANGE, .change = change};
    invoke(userdata, &call);
}

kb_listener *kb_store_listen(kb_store *s, kb_callback *cb)
{
    kraken_store *st = store_of(s, "store_listen");
    kb_listener *w = st ? calloc(1, sizeof *w) : NULL;
    if (st && !w)
        no_memory();
    if (!w || check(kraken_store_listen(st, listener_fn, cb, release_hook, &w->l)) < 0) {
        free(w);
        kb_callback_release(cb);
        return NULL;
    }
    return w;
}

void kb_listener_close(kb_listener *w)
{
    if (w) {
        kraken_store_listener_remove(w->l);
        w->l = NULL;
    }
}

void kb_listener_destroy(kb_listener *w)
{
    kb_listener_close(w);
    free(w);
}

/* ---- mutation declarations and sets ------------------------------------------------------------ */

struct kb_decl {
    char *id;
    kraken_mutate *mutates;
    size_t n_mutates;
    kraken_fact *requires, *excludes;
    size_t n_requires, n_excludes;
    kraken_context context;
    uint32_t timeout_ms, cost;
    kraken_fact fail_to;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

kb_decl *kb_decl_new(const char *id)
{
    if (!id || !*id) {
        fail(KRAKEN_EINVAL, "mutation: an id is required");
        return NULL;
    }
    kb_decl *d = calloc(1, sizeof *d);
    if (!d || !(d->id = strdup(id))) {
        free(d);
        no_memory();
        return NULL;
    }
    return d;
}

static void free_facts(kraken_fact *facts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)facts[i].url);
        free((char *)facts[i].value);
    }
    free(facts);
}

void kb_decl_destroy(kb_decl *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_mutates; i++) {
        free((char *)d->mutates[i].url);
        free((char *)d->mutates[i].from);
        free((char *)d->mutates[i].to);
    }
    free(d->mutates);
    free_facts(d->requires, d->n_requires);
    free_facts(d->excludes, d->n_excludes);
    free((char *)d->fail_to.url);
    free((char *)d->fail_to.value);
    free(d->id);
    free(d);
}

int kb_decl_mutates(kb_decl *d, const char *url, const char *from, const char *to)
{
    if (!d || !url || !from || !to)
        return fail(KRAKEN_EINVAL, "mutates: url, from and to are required");
    kraken_mutate *grown = realloc(d->mutates, (d->n_mutates + 1) * sizeof *grown);
    if (!grown)
        return no_memory();
    d->mutates = grown;
    kraken_mutate *m = &grown[d->n_mutates];
    m->url = strdup(url);
    m->from = strdup(from);
    m->to = strdup(to);
    d->n_mutates++;
    return m->url && m->from && m->to ? 0 : no_memory();
}

static int add_fact(kraken_fact **facts, size_t *n, const char *url, const char *value,
                    const char *what)
{
    if (!url || !value)
        return fail(KRAKEN_EINVAL, "%s: url and value are required", what);
    kraken_fact *grown = realloc(*facts, (*n + 1) * sizeof *grown);
    if (!grown)
        return no_memory();
    *facts = grown;
    grown[*n].url = strdup(url);
    grown[*n].value = strdup(value);
    (*n)++;
    return grown[*n - 1].url && grown[*n - 1].value ? 0 : no_memory();
}

int kb_decl_requires(kb_decl *d, const char *url, const char *value)
{
    if (!d)
        return fail(KRAKEN_EINVAL, "requires: no declaration");
    return add_fact(&d->requires, &d->n_requires, url, value, "requires");
}

int kb_decl_excludes(kb_decl *d, const char *url, const char *value)
{
    if (!d)
        return fail(KRAKEN_EINVAL, "excludes: no declaration");
    return add_fact(&d->excludes, &d->n_excludes, url, value, "excludes");
}

int kb_decl_fail_to(kb_decl *d, const char *url, const char *value)
{
    if (!d || !url || !value)
        return fail(KRAKEN_EINVAL, "fail_to: url and value are required");
    free((char *)d->fail_to.url);
    free((char *)d->fail_to.value);
    d->fail_to.url = strdup(url);
    d->fail_to.value = strdup(value);
    return d->fail_to.url && d->fail_to.value ? 0 : no_memory();
}

int kb_decl_options(kb_decl *d, int context, uint32_t timeout_ms, uint32_t cost)
{
    if (!d)
        return fail(KRAKEN_EINVAL, "mutation options: no declaration");
    if (context < KRAKEN_CONTEXT_SELF || context > KRAKEN_CONTEXT_ALL)
        return fail(KRAKEN_EINVAL, "mutation '%s': context %d: expected SELF (0), CHILD (1) "
                    "or ALL (2)", d->id, context);
    d->context = (kraken_context)context;
    d->timeout_ms = timeout_ms;
    d->cost = cost;
    return 0;
}

/* The library's view of a declaration (pointers into @p d), of this header's struct version. */
static kraken_mutation_decl decl_view(const kb_decl *d)
{
    kraken_mutation_decl v = {
        .version = KRAKEN_MUTATION_DECL_VERSION,
        .id = d->id, .mutates = d->mutates, .n_mutates = d->n_mutates,
        .requires = d->requires, .n_requires = d->n_requires,
        .excludes = d->excludes, .n_excludes = d->n_excludes,
        .context = d->context, .timeout_ms = d->timeout_ms, .fail_to = d->fail_to,
        .cost = d->cost};
    return v;
}

static kb_decl *decl_copy(const kb_decl *d)
{
    kb_decl *c = kb_decl_new(d->id);
    int rc = c ? 0 : KRAKEN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < d->n_mutates; i++)
        rc = kb_decl_mutates(c, d->mutates[i].url, d->mutates[i].from, d->mutates[i].to);
    for (size_t i = 0; rc == 0 && i < d->n_requires; i++)
        rc = kb_decl_requires(c, d->requires[i].url, d->requires[i].value);
    for (size_t i = 0; rc == 0 && i < d->n_excludes; i++)
        rc = kb_decl_excludes(c, d->excludes[i].url, d->excludes[i].value);
    if (rc == 0 && d->fail_to.url)
        rc = kb_decl_fail_to(c, d->fail_to.url, d->fail_to.value);
    if (rc == 0)
        rc = kb_decl_options(c, d->context, d->timeout_ms, d->cost);
    if (rc < 0) {
        kb_decl_destroy(c);
        return NULL;
    }
    return c;
}

struct kb_mutset {
    kraken_mutation_set *set;
};

kb_mutset *kb_mutset_new(void)
{
    kb_mutset *w = calloc(1, sizeof *w);
    if (!w) {
        no_memory();
        return NULL;
    }
    if (check(kraken_mutation_set_new(&w->set)) < 0) {
        free(w);
        return NULL;
    }
    return w;
}

void kb_mutset_destroy(kb_mutset *w)
{
    if (w) {
        kraken_mutation_set_free(w->set);
        free(w);
    }
}

int kb_mutset_add(kb_mutset *w, const char *service_id, const kb_decl *d)
{
    if (!w || !d)
        return fail(KRAKEN_EINVAL, "mutation set add: a set and a declaration are required");
    kraken_mutation_decl v = decl_view(d);
    return check(kraken_mutation_set_add(w->set, service_id, &v));
}

int kb_mutset_count(kb_mutset *w)
{
    return w ? (int)kraken_mutation_set_count(w->set) : fail(KRAKEN_EINVAL, "no mutation set");
}

static const char *plan_step_at(const void *plan, size_t i)
{
    static __thread char step[256];
    snprintf(step, sizeof step, "%s/%s", kraken_plan_step_service(plan, i),
             kraken_plan_step_mutation(plan, i));
    return step;
}

char *kb_mutset_plan(kb_mutset *w, const kraken_node *cfg, const kraken_node *dsc)
{
    if (!w || need_node(cfg, "plan") < 0 || need_node(dsc, "plan") < 0)
        return NULL;
    kraken_plan *plan = NULL;
    if (check(kraken_mutation_set_plan(w->set, cfg, dsc, &plan)) < 0)
        return NULL;
    /* join_lines calls plan_step_at once for the length and once to copy: same text */
    char *out = join_lines(kraken_plan_length(plan), plan_step_at, plan);
    kraken_plan_free(plan);
    return out;
}

uint64_t kb_mutset_plan_cost(kb_mutset *w, const kraken_node *cfg, const kraken_node *dsc)
{
    if (!w || need_node(cfg, "plan") < 0 || need_node(dsc, "plan") < 0)
        return 0;
    kraken_plan *plan = NULL;
    if (check(kraken_mutation_set_plan(w->set, cfg, dsc, &plan)) < 0)
        return 0;
    uint64_t cost = kraken_plan_cost(plan);
    kraken_plan_free(plan);
    return cost;
}

char *kb_mutset_graph_json(kb_mutset *w, const kraken_node *cfg)
{
    char *out = NULL;
    if (!w)
        fail(KRAKEN_EINVAL, "no mutation set");
    else
        check(kraken_mutation_set_graph_json(w->set, cfg, NULL, 0, &out));
    return out;
}

/* ---- engine ------------------------------------------------------------------------------------ */

struct kb_service {
    kraken_service *s;
};

struct kb_subscription {
    kraken_subscription *s;
};

kb_engine_config *kb_engine_config_new(void)
{
    kraken_engine_options o;
    kb_engine_config *c = calloc(1, sizeof *c);
    if (!c || kraken_engine_options_init(&o, KRAKEN_ENGINE_OPTIONS_VERSION) < 0) {
        free(c);
        no_memory();
        return NULL;
    }
    c->start_frozen = o.start_frozen;
    c->no_sync_service = o.no_sync_service;
    c->backoff_initial_ms = o.backoff_initial_ms;
    c->backoff_max_ms = o.backoff_max_ms;
    c->max_failures = o.max_failures;
    c->service_start_ms = o.service_start_ms;
    c->no_path_retry_ms = o.no_path_retry_ms;
    c->timeout_scale = o.timeout_scale;
    return c;
}

void kb_engine_config_destroy(kb_engine_config *c)
{
    free(c);
}

kb_engine *kb_engine_new(kb_loop *loop, kb_store *store, const char *self_id,
                         const kb_engine_config *c)
{
    if (!loop) {
        fail(KRAKEN_EINVAL, "engine: a loop is required");
        return NULL;
    }
    kraken_store *st = NULL;
    if (store && !(st = store_of(store, "engine")))
        return NULL;
    kraken_engine_options o;
    kraken_engine_options_init(&o, KRAKEN_ENGINE_OPTIONS_VERSION);
    if (self_id && parse_id(self_id, &o.self_id, "engine self_id") < 0)
        return NULL;
    if (c) {
        o.start_frozen = c->start_frozen;
        o.no_sync_service = c->no_sync_service;
        o.backoff_initial_ms = c->backoff_initial_ms;
        o.backoff_max_ms = c->backoff_max_ms;
        o.max_failures = c->max_failures;
        o.service_start_ms = c->service_start_ms;
        o.no_path_retry_ms = c->no_path_retry_ms;
        o.timeout_scale = c->timeout_scale;
    }
    kb_engine *w = calloc(1, sizeof *w);
    if (!w) {
        no_memory();
        return NULL;
    }
    if (check(kraken_engine_new(&w->e, loop->base, st, &o)) < 0) {
        free(w);
        return NULL;
    }
    w->refs = 1;
    w->loop = loop_ref(loop);
    return w;
}

void kb_engine_close(kb_engine *w)
{
    if (!w || !w->e)
        return;
    kraken_engine_free(w->e);
    w->e = NULL;
    loop_unref(w->loop);
    w->loop = NULL;
}

void kb_engine_destroy(kb_engine *w)
{
    kb_engine_close(w);
    engine_unref(w);
}

const char *kb_engine_self_id(kb_engine *w)
{
    kraken_engine *e = engine_of(w, "self_id");
    return e ? id_text(kraken_engine_self_id(e)) : NULL;
}

static void log_fn(int level, const char *subsystem, const char *message, void *userdata)
{
    kb_call call = {.kind = KB_CALL_LOG, .level = level, .subsystem = subsystem,
                    .message = message};
    invoke(userdata, &call);
}

int kb_engine_set_log(kb_engine *w, int max_level, kb_callback *cb)
{
    kraken_engine *e = engine_of(w, "set_log");
    if (!e) {
        kb_callback_release(cb);
        return pending;
    }
    int rc = check(kraken_engine_set_log(e, max_level, cb ? log_fn : NULL, cb,
                                         cb ? release_hook : NULL));
    if (rc < 0)
        kb_callback_release(cb);
    return rc;
}

int kb_engine_freeze(kb_engine *w, bool frozen)
{
    kraken_engine *e = engine_of(w, frozen ? "freeze" : "thaw");
    if (!e)
        return pending;
    if (frozen)
        kraken_engine_freeze(e);
    else
        kraken_engine_thaw(e);
    return 0;
}

bool kb_engine_frozen(kb_engine *w)
{
    kraken_engine *e = engine_of(w, "frozen");
    return e && kraken_engine_frozen(e);
}

int kb_engine_reset_node(kb_engine *w, const char *id)
{
    kraken_engine *e = engine_of(w, "reset_node");
    kraken_uuid uuid;
    if (!e || parse_id(id, &uuid, "reset_node") < 0)
        return pending;
    return check(kraken_engine_reset_node(e, &uuid));
}

/* The node's plan status (caller clears it); < 0 on error. */
static int node_status(kb_engine *w, const char *id, kraken_plan_status *st)
{
    kraken_engine *e = engine_of(w, "node_status");
    kraken_uuid uuid;
    memset(st, 0, sizeof *st);
    if (!e || parse_id(id, &uuid, "node_status") < 0)
        return pending;
    return check(kraken_engine_node_status(e, &uuid, st));
}

const char *kb_engine_node_state(kb_engine *w, const char *id)
{
    kraken_plan_status st;
    if (node_status(w, id, &st) < 0)
        return NULL;
    const char *name = kraken_plan_state_name(st.state);
    kraken_plan_status_clear(&st);
    return name;
}

static const char *status_step_at(const void *st, size_t i)
{
    return ((const kraken_plan_status *)st)->steps[i];
}

char *kb_engine_node_plan(kb_engine *w, const char *id)
{
    kraken_plan_status st;
    if (node_status(w, id, &st) < 0)
        return NULL;
    char *out = join_lines(st.n_steps, status_step_at, &st);
    kraken_plan_status_clear(&st);
    return out;
}

int kb_engine_node_step(kb_engine *w, const char *id)
{
    kraken_plan_status st;
    int rc = node_status(w, id, &st);
    if (rc < 0)
        return rc;
    rc = (int)st.current;
    kraken_plan_status_clear(&st);
    return rc;
}

int kb_engine_node_failures(kb_engine *w, const char *id)
{
    kraken_plan_status st;
    int rc = node_status(w, id, &st);
    if (rc < 0)
        return rc;
    rc = (int)st.failures;
    kraken_plan_status_clear(&st);
    return rc;
}

char *kb_engine_node_reason(kb_engine *w, const char *id)
{
    kraken_plan_status st;
    if (node_status(w, id, &st) < 0)
        return NULL;
    char *out = st.reason ? strdup(st.reason) : NULL;
    kraken_plan_status_clear(&st);
    return out;
}

char *kb_engine_graph_json(kb_engine *w, const char *id)
{
    kraken_engine *e = engine_of(w, "graph_json");
    kraken_uuid uuid;
    char *out = NULL;
    if (!e || (id && parse_id(id, &uuid, "graph_json") < 0))
        return NULL;
    check(kraken_engine_graph_json(e, id ? &uuid : NULL, &out));
    return out;
}

int kb_engine_mutation_disable(kb_engine *w, const char *service_id, const char *mutation_id,
                               bool disabled)
{
    kraken_engine *e = engine_of(w, "mutation_disable");
    return e ? check(kraken_engine_mutation_disable(e, service_id, mutation_id, disabled))
             : pending;
}

int kb_engine_mutation_set_timeout(kb_engine *w, const char *service_id,
                                   const char *mutation_id, uint32_t timeout_ms)
{
    kraken_engine *e = engine_of(w, "mutation_set_timeout");
    return e ? check(kraken_engine_mutation_set_timeout(e, service_id, mutation_id, timeout_ms))
             : pending;
}

int kb_engine_flush(kb_engine *w)
{
    kraken_engine *e = engine_of(w, "flush");
    if (!e)
        return pending;
    kraken_bus_flush(kraken_engine_bus(e));
    return 0;
}

static void event_fn(const kraken_event *event, void *userdata)
{
    kb_call call = {.kind = KB_CALL_EVENT, .event = event};
    invoke(userdata, &call);
}

kb_subscription *kb_engine_subscribe(kb_engine *w, unsigned types, const char *url_pattern,
                                     uint32_t queue_limit, kb_callback *cb)
{
    kraken_engine *e = engine_of(w, "subscribe");
    kb_subscription *sub = e ? calloc(1, sizeof *sub) : NULL;
    if (e && !sub)
        no_memory();
    kraken_subscribe_options o;
    kraken_subscribe_options_init(&o, KRAKEN_SUBSCRIBE_OPTIONS_VERSION);
    o.types = types;
    o.url_pattern = url_pattern;
    o.queue_limit = queue_limit;
    if (!sub || check(kraken_bus_subscribe(kraken_engine_bus(e), &o, event_fn, cb, release_hook,
                                           &sub->s)) < 0) {
        free(sub);
        kb_callback_release(cb);
        return NULL;
    }
    return sub;
}

void kb_subscription_close(kb_subscription *sub)
{
    if (sub) {
        kraken_subscription_remove(sub->s);
        sub->s = NULL;
    }
}

void kb_subscription_destroy(kb_subscription *sub)
{
    kb_subscription_close(sub);
    free(sub);
}

uint64_t kb_subscription_dropped(kb_subscription *sub)
{
    return sub && sub->s ? kraken_subscription_dropped(sub->s) : 0;
}

static void svc_start(kraken_service *s, void *userdata)
{
    (void)s;
    kb_call call = {.kind = KB_CALL_START};
    invoke(userdata, &call);
}

static void svc_stop(kraken_service *s, void *userdata)
{
    (void)s;
    kb_call call = {.kind = KB_CALL_STOP};
    invoke(userdata, &call);
}

static void svc_mutate(kraken_service *s, const kraken_mutation_request *req, void *userdata)
{
    (void)s;
    kb_call call = {.kind = KB_CALL_MUTATE, .request = req};
    invoke(userdata, &call);
}

static void svc_interrupt(kraken_service *s, const kraken_mutation_request *req, void *userdata)
{
    (void)s;
    kb_call call = {.kind = KB_CALL_INTERRUPT, .request = req};
    invoke(userdata, &call);
}

static void svc_config(kraken_service *s, const kraken_value *config, void *userdata)
{
    (void)s;
    kb_call call = {.kind = KB_CALL_CONFIG, .config = config};
    invoke(userdata, &call);
}

static const kraken_service_ops service_ops = {
    .version = KRAKEN_SERVICE_OPS_VERSION,
    .start = svc_start, .stop = svc_stop, .mutate = svc_mutate, .interrupt = svc_interrupt,
    .config_changed = svc_config};

kb_service *kb_engine_add_service(kb_engine *w, const char *service_id, const char *module,
                                  kb_callback *cb)
{
    kraken_engine *e = engine_of(w, "add_service");
    kb_service *svc = e ? calloc(1, sizeof *svc) : NULL;
    if (e && !svc)
        no_memory();
    if (!svc || check(kraken_engine_add_service(e, service_id, module, &service_ops, cb,
                                                release_hook, &svc->s)) < 0) {
        free(svc);
        kb_callback_release(cb);
        return NULL;
    }
    return svc;
}

void kb_service_close(kb_service *svc)
{
    if (svc) {
        kraken_service_remove(svc->s);
        svc->s = NULL;
    }
}

void kb_service_destroy(kb_service *svc)
{
    kb_service_close(svc);
    free(svc);
}

static kraken_service *service_of(kb_service *svc, const char *what)
{
    if (!svc) {
        fail(KRAKEN_EINVAL, "%s: no service", what);
        return NULL;
    }
    if (!svc->s)
        fail(KRAKEN_ESTATE, "%s: the service was removed", what);
    return svc->s;
}

const char *kb_service_id(kb_service *svc)
{
    kraken_service *s = service_of(svc, "service_id");
    return s ? kraken_service_id(s) : NULL;
}

int kb_service_declare(kb_service *svc, const kb_decl *d)
{
    kraken_service *s = service_of(svc, "declare");
    if (!s)
        return pending;
    if (!d)
        return fail(KRAKEN_EINVAL, "declare: no declaration");
    kraken_mutation_decl v = decl_view(d);
    return check(kraken_service_declare_mutation(s, &v));
}

int kb_service_declare_discoverable(kb_service *svc, const char *url, const char *value_name,
                                    const char *value_text)
{
    kraken_service *s = service_of(svc, "declare_discoverable");
    return s ? check(kraken_service_declare_discoverable(s, url, value_name, value_text))
             : pending;
}

int kb_service_discover(kb_service *svc, const char *node_id, const char *url, const char *text)
{
    kraken_service *s = service_of(svc, "discover");
    kraken_uuid id;
    if (!s || parse_id(node_id, &id, "discover") < 0)
        return pending;
    return check(kraken_service_discover_text(s, &id, url, text));
}

int kb_service_report(kb_service *svc, const char *node_id, uint64_t request_id, const char *url,
                      const char *text)
{
    kraken_service *s = service_of(svc, "report");
    kraken_uuid id;
    if (!s || parse_id(node_id, &id, "report") < 0)
        return pending;
    return check(kraken_service_report_text(s, &id, request_id, url, text));
}

int kb_service_fail(kb_service *svc, const char *node_id, uint64_t request_id,
                    const char *reason)
{
    kraken_service *s = service_of(svc, "fail");
    kraken_uuid id;
    if (!s || parse_id(node_id, &id, "fail") < 0)
        return pending;
    return check(kraken_service_fail(s, &id, request_id, reason));
}

int kb_service_set_state(kb_service *svc, int state, const char *error_msg)
{
    kraken_service *s = service_of(svc, "set_state");
    return s ? check(kraken_service_set_state(s, (kraken_service_state)state, error_msg))
             : pending;
}

/* ---- modules ---------------------------------------------------------------------------------- */

struct kb_moddesc {
    int refs; /* the proxy's and one per module instance running it */
    kraken_module_desc desc;
    char *name, *schemas_json, *config_schema, *event_url_pattern;
    kraken_module_discoverable *discoverables;
    kb_decl **decls;
    kraken_mutation_decl *mutations; /* views of decls, rebuilt when one is added */
    size_t n;                         /* number of decls */
};

struct kb_module {
    kraken_module *m;
    kb_loop *loop;      /* a connected module's */
    kb_moddesc *desc;
    kb_callback *cb;
};

static void moddesc_unref(kb_moddesc *d)
{
    if (!d || --d->refs > 0)
        return;
    for (size_t i = 0; i < d->desc.n_discoverables; i++) {
        free((char *)d->discoverables[i].url);
        free((char *)d->discoverables[i].value_name);
        free((char *)d->discoverables[i].value_text);
    }
    free(d->discoverables);
    for (size_t i = 0; i < d->n; i++)
        kb_decl_destroy(d->decls[i]);
    free(d->decls);
    free(d->mutations);
    free(d->name);
    free(d->schemas_json);
    free(d->config_schema);
    free(d->event_url_pattern);
    free(d);
}

static void mod_start(kraken_module *m, const kraken_value *config, void *userdata);
static void mod_stop(kraken_module *m, void *userdata);
static void mod_config(kraken_module *m, const kraken_value *config, void *userdata);
static void mod_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata);
static void mod_interrupt(kraken_module *m, const kraken_mutation_request *req, void *userdata);
static void mod_event(kraken_module *m, const kraken_event *event, void *userdata);

kb_moddesc *kb_moddesc_new(const char *name)
{
    if (!name || !*name) {
        fail(KRAKEN_EINVAL, "module: a name is required");
        return NULL;
    }
    kb_moddesc *d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(name))) {
        free(d);
        no_memory();
        return NULL;
    }
    d->refs = 1;
    d->desc.abi_version = KRAKEN_MODULE_ABI_VERSION;
    d->desc.name = d->name;
    d->desc.handlers = (kraken_module_handlers){
        .start = mod_start, .stop = mod_stop, .config_changed = mod_config,
        .mutate = mod_mutate, .interrupt = mod_interrupt};
    return d;
}

void kb_moddesc_destroy(kb_moddesc *d)
{
    moddesc_unref(d);
}

/* A descriptor that an instance runs must not change under it. */
static int moddesc_editable(kb_moddesc *d, const char *what)
{
    if (!d)
        return fail(KRAKEN_EINVAL, "%s: no module descriptor", what);
    if (d->refs > 1)
        return fail(KRAKEN_ESTATE, "%s: module '%s' is running; declare everything before "
                    "connecting", what, d->name);
    return 0;
}

int kb_moddesc_schemas(kb_moddesc *d, const char *schemas_json, const char *config_schema)
{
    if (moddesc_editable(d, "schemas") < 0)
        return pending;
    free(d->schemas_json);
    free(d->config_schema);
    d->desc.schemas_json = d->schemas_json = dup_or_null(schemas_json);
    d->desc.config_schema = d->config_schema = dup_or_null(config_schema);
    return 0;
}

int kb_moddesc_discoverable(kb_moddesc *d, const char *url, const char *value_name,
                            const char *value_text)
{
    if (moddesc_editable(d, "discoverable") < 0)
        return pending;
    if (!url)
        return fail(KRAKEN_EINVAL, "discoverable: a URL is required");
    size_t n = d->desc.n_discoverables;
    kraken_module_discoverable *grown = realloc(d->discoverables, (n + 1) * sizeof *grown);
    if (!grown)
        return no_memory();
    d->discoverables = grown;
    grown[n] = (kraken_module_discoverable){strdup(url), dup_or_null(value_name),
                                            dup_or_null(value_text)};
    d->desc.discoverables = grown;
    d->desc.n_discoverables = n + 1;
    return 0;
}

int kb_moddesc_mutation(kb_moddesc *d, const kb_decl *decl)
{
    if (moddesc_editable(d, "mutation") < 0)
        return pending;
    if (!decl)
        return fail(KRAKEN_EINVAL, "mutation: no declaration");
    kb_decl **decls = realloc(d->decls, (d->n + 1) * sizeof *decls);
    if (!decls)
        return no_memory();
    d->decls = decls;
    kraken_mutation_decl *views = realloc(d->mutations, (d->n + 1) * sizeof *views);
    if (!views)
        return no_memory();
    d->mutations = views;
    if (!(decls[d->n] = decl_copy(decl)))
        return pending;
    views[d->n] = decl_view(decls[d->n]);
    d->n++;
    d->desc.mutations = views;
    d->desc.n_mutations = d->n;
    return 0;
}

int kb_moddesc_events(kb_moddesc *d, unsigned types, const char *url_pattern)
{
    if (moddesc_editable(d, "events") < 0)
        return pending;
    free(d->event_url_pattern);
    d->desc.event_url_pattern = d->event_url_pattern = dup_or_null(url_pattern);
    d->desc.event_types = types;
    d->desc.handlers.event = types ? mod_event : NULL;
    return 0;
}

static void mod_call(void *userdata, const kb_call *call)
{
    kb_module *w = userdata;
    if (w)
        invoke(w->cb, call);
}

static void mod_start(kraken_module *m, const kraken_value *config, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_START, .config = config};
    mod_call(userdata, &call);
}

static void mod_stop(kraken_module *m, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_STOP};
    mod_call(userdata, &call);
}

static void mod_config(kraken_module *m, const kraken_value *config, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_CONFIG, .config = config};
    mod_call(userdata, &call);
}

static void mod_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_MUTATE, .request = req};
    mod_call(userdata, &call);
}

static void mod_interrupt(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_INTERRUPT, .request = req};
    mod_call(userdata, &call);
}

static void mod_event(kraken_module *m, const kraken_event *event, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_EVENT, .event = event};
    mod_call(userdata, &call);
}

static void mod_disconnect(kraken_module *m, const char *reason, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_DISCONNECT, .message = reason};
    mod_call(userdata, &call);
}

static void mod_error(kraken_module *m, int code, const char *message, void *userdata)
{
    (void)m;
    kb_call call = {.kind = KB_CALL_ERROR, .code = code, .message = message};
    mod_call(userdata, &call);
}

static kb_module *module_wrapper(kb_moddesc *d, kb_callback *cb)
{
    kb_module *w = calloc(1, sizeof *w);
    if (!w) {
        no_memory();
        kb_callback_release(cb);
        return NULL;
    }
    w->desc = d;
    d->refs++;
    w->cb = cb;
    return w;
}

kb_module *kb_module_new(kb_engine *engine, kb_moddesc *d, const char *service_id,
                         kb_callback *cb)
{
    kraken_engine *e = engine_of(engine, "module");
    if (!e || !d) {
        if (e)
            fail(KRAKEN_EINVAL, "module: no module descriptor");
        kb_callback_release(cb);
        return NULL;
    }
    kb_module *w = module_wrapper(d, cb);
    if (w && check(kraken_module_new(&w->m, e, &d->desc, service_id, w, NULL)) < 0) {
        kb_module_destroy(w);
        return NULL;
    }
    return w;
}

kb_module *kb_module_connect(kb_loop *loop, kb_moddesc *d, const char *socket_path,
                             const char *service_id, uint32_t timeout_ms, kb_callback *cb)
{
    if (!loop || !d) {
        fail(KRAKEN_EINVAL, "connect: a loop and a module descriptor are required");
        kb_callback_release(cb);
        return NULL;
    }
    kb_module *w = module_wrapper(d, cb);
    if (!w)
        return NULL;
    w->loop = loop_ref(loop);
    kraken_module_connect_options o;
    kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    o.socket_path = socket_path;
    o.service_id = service_id;
    if (timeout_ms)
        o.request_timeout_ms = timeout_ms;
    o.on_disconnect = mod_disconnect;
    o.on_error = mod_error;
    o.hook_userdata = w;
    if (check(kraken_module_connect(&w->m, loop->base, &d->desc, &o, w, NULL)) < 0) {
        kb_module_destroy(w);
        return NULL;
    }
    return w;
}

void kb_module_close(kb_module *w)
{
    if (!w || (!w->m && !w->cb && !w->desc))
        return;
    kraken_module_free(w->m);
    w->m = NULL;
    kb_callback_release(w->cb);
    w->cb = NULL;
    moddesc_unref(w->desc);
    w->desc = NULL;
    loop_unref(w->loop);
    w->loop = NULL;
}

void kb_module_destroy(kb_module *w)
{
    kb_module_close(w);
    free(w);
}

static kraken_module *module_of(kb_module *w, const char *what)
{
    if (!w) {
        fail(KRAKEN_EINVAL, "%s: no module", what);
        return NULL;
    }
    if (!w->m)
        fail(KRAKEN_ESTATE, "%s: the module is closed", what);
    return w->m;
}

const char *kb_module_service_id(kb_module *w)
{
    kraken_module *m = module_of(w, "service_id");
    return m ? kraken_module_service_id(m) : NULL;
}

bool kb_module_connected(kb_module *w)
{
    return w && w->m && kraken_module_connected(w->m);
}

int kb_module_reconnect(kb_module *w)
{
    kraken_module *m = module_of(w, "reconnect");
    return m ? check(kraken_module_reconnect(m)) : pending;
}

int kb_module_discover(kb_module *w, const char *node_id, const char *url, const char *text)
{
    kraken_module *m = module_of(w, "discover");
    kraken_uuid id;
    if (!m || parse_id(node_id, &id, "discover") < 0)
        return pending;
    return check(kraken_module_discover(m, &id, url, text));
}

int kb_module_discover_named(kb_module *w, const char *node_id, const char *url,
                             const char *value_name)
{
    kraken_module *m = module_of(w, "discover_named");
    kraken_uuid id;
    if (!m || parse_id(node_id, &id, "discover_named") < 0)
        return pending;
    return check(kraken_module_discover_named(m, &id, url, value_name));
}

int kb_module_report(kb_module *w, const char *node_id, uint64_t request_id, const char *url,
                     const char *text)
{
    kraken_module *m = module_of(w, "report");
    kraken_uuid id;
    if (!m || parse_id(node_id, &id, "report") < 0)
        return pending;
    return check(kraken_module_report(m, &id, request_id, url, text));
}

int kb_module_fail(kb_module *w, const char *node_id, uint64_t request_id, const char *reason)
{
    kraken_module *m = module_of(w, "fail");
    kraken_uuid id;
    if (!m || parse_id(node_id, &id, "fail") < 0)
        return pending;
    return check(kraken_module_fail(m, &id, request_id, reason));
}

int kb_module_set_state(kb_module *w, int state, const char *error_msg)
{
    kraken_module *m = module_of(w, "set_state");
    return m ? check(kraken_module_set_state(m, (kraken_service_state)state, error_msg)) : pending;
}

kraken_node *kb_module_query(kb_module *w, int kind, const char *node_id)
{
    kraken_module *m = module_of(w, "query");
    kraken_state_kind k = KRAKEN_CFG;
    kraken_uuid id;
    kraken_node *node = NULL;
    if (m && store_kind(kind, &k) == 0 && parse_id(node_id, &id, "query") == 0)
        check(kraken_module_query(m, k, &id, &node));
    return node;
}

int kb_module_update_cfg(kb_module *w, const char *node_id, const char *url, const char *text)
{
    kraken_module *m = module_of(w, "update_cfg");
    kraken_uuid id;
    if (!m || parse_id(node_id, &id, "update_cfg") < 0)
        return pending;
    return check(kraken_module_update_cfg(m, &id, url, text));
}

int kb_module_log(kb_module *w, int level, const char *message)
{
    kraken_module *m = module_of(w, "log");
    if (!m)
        return pending;
    kraken_module_log(m, level, "%s", message ? message : "");
    return 0;
}
