/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The mutation engine (SPEC 3, 4.4, 5): drives every node's plan on the
 * caller's libevent loop.
 *
 * Shape:
 * - A store listener sees every change. It never touches the store (the store
 *   forbids it) and never calls a service: it publishes the STATE_CHANGE event,
 *   notes what changed on the node's run state (a bit per mutator URL, a Cfg
 *   flag) and queues the node on the dirty list.
 * - One deferred event (the "pass") drains the dirty list from the loop. Many
 *   changes to many nodes between two loop iterations cost one pass and one
 *   evaluation per node; all service callbacks (start, mutate, interrupt ...)
 *   run from the pass or from a node's timer, never from an API call.
 * - Each node has one lazily created timer whose meaning depends on its phase:
 *   step timeout, wait for a service to start, back-off, no-path retry.
 *
 * Plans come from the planner's cache (kraken_mutation_set_plan() hands out
 * shared, ref-counted plans), so a node costs a hash lookup per event and a
 * cache lookup per step. After a step completes, the new plan is compared with
 * the rest of the old one: when they agree the node keeps its plan, so the
 * status shows the whole plan with the current step.
 *
 * The engine is split by responsibility; engine_private.h lists its files.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_private.h"

/* The default clock (kraken_engine_options.now_ms NULL). */
static uint64_t monotonic_ms(void *unused)
{
    (void)unused;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- lifetimes ---------------------------------------------------------------- */

static void engine_teardown(kraken_engine *e);

/* Leaving one of our loop callbacks: a free (or detach) made inside it takes effect. */
void kraken__engine_unbusy(kraken_engine *e)
{
    if (--e->busy == 0 && e->dying) {
        engine_teardown(e);
        if (e->free_requested)
            free(e);
    }
}

/* ---- logging ------------------------------------------------------------- */

int kraken_engine_set_log(kraken_engine *engine, int max_level, kraken_log_fn fn, void *userdata,
                          void (*destroy)(void *userdata))
{
    int rc = engine_entry(engine, "engine_set_log");
    if (rc < 0)
        return rc;
    if (max_level < KRAKEN_LOG_PANIC || max_level > KRAKEN_LOG_DDDEBUG)
        return kraken__err(KRAKEN_EINVAL, "kraken_engine_set_log: level %d is outside 0..9",
                           max_level);
    if (engine->log_destroy)
        engine->log_destroy(engine->log_userdata);
    engine->log_fn = fn;
    engine->log_userdata = userdata;
    engine->log_destroy = fn ? destroy : NULL;
    engine->log_max_level = max_level;
    return 0;
}

bool kraken__engine_log_enabled(const kraken_engine *engine, int level)
{
    return engine && engine->log_fn && level <= engine->log_max_level;
}

void kraken__engine_log(kraken_engine *engine, int level, const char *subsystem, const char *fmt,
                        ...)
{
    if (!kraken__engine_log_enabled(engine, level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one line, always: a control character from input text must not break it */
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    engine->log_fn(level, subsystem, line, engine->log_userdata);
}

bool kraken_engine_frozen(const kraken_engine *engine)
{
    return engine_entry(engine, "engine_frozen") == 0 && engine->frozen;
}

/* ---- accessors ---------------------------------------------------------------------------------- */

kraken_store *kraken_engine_store(kraken_engine *engine)
{
    return engine_entry(engine, "engine_store") == 0 ? engine->store : NULL;
}

kraken_bus *kraken_engine_bus(kraken_engine *engine)
{
    return engine_entry(engine, "engine_bus") == 0 ? engine->bus : NULL;
}

kraken_mutation_set *kraken_engine_mutations(kraken_engine *engine)
{
    return engine_entry(engine, "engine_mutations") == 0 ? engine->set : NULL;
}

const kraken_uuid *kraken_engine_self_id(const kraken_engine *engine)
{
    return engine ? &engine->self : NULL;
}

/* ---- the built-in sync service -------------------------------------------------------------------- */

/*
 * "sync" owns INITtoSYNC. Its step is completed by the sync protocol: the
 * parent-side discovery of RunState SYNC when the child phones home (SPEC 6.3).
 */
static void sync_start(kraken_service *service, void *userdata)
{
    (void)userdata;
    kraken_service_set_state(service, KRAKEN_SERVICE_RUN, NULL);
}

static void sync_stop(kraken_service *service, void *userdata)
{
    (void)userdata;
    kraken_service_set_state(service, KRAKEN_SERVICE_STOP, NULL);
}

static int add_sync_service(kraken_engine *e)
{
    static const kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = sync_start,
                                                                  .stop = sync_stop);
    static const kraken_mutate mutates[] = {{"/RunState", "INIT", "SYNC"}};
    static const kraken_fact requires[] = {{"/PhysState", "POWER_ON"}};
    static const kraken_mutation_decl decl = {
        .version = KRAKEN_MUTATION_DECL_VERSION,
        .id = "INITtoSYNC",
        .mutates = mutates,
        .n_mutates = 1,
        .requires = requires,
        .n_requires = 1,
        .context = KRAKEN_CONTEXT_CHILD,
        .timeout_ms = 90000,
        .fail_to = {"/PhysState", "PHYS_HANG"},
        .cost = 1,
    };
    kraken_service *svc;
    int rc = kraken_engine_add_service(e, "sync", "sync", &ops, NULL, NULL, &svc);
    if (rc == 0)
        svc->caller_owned = false; /* the engine's own: it goes with the engine */
    if (rc == 0)
        rc = kraken_service_declare_discoverable(svc, "/RunState", NULL, NULL);
    if (rc == 0)
        rc = kraken_service_declare_mutation(svc, &decl);
    return rc;
}

/* ---- engine life cycle ------------------------------------------------------------------------------ */

/* Known facts about the instance itself: it runs, so it is powered on; a root is in sync. */
static int self_facts(kraken_engine *e)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_store_get_value(e->store, KRAKEN_DSC, &e->self, "/PhysState", &v);
    if (rc == 0 && kraken_value_is_zero(&v)) {
        kraken_value on = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, "/PhysState", &on);
    }
    kraken_value_clear(&v);
    if (rc == 0 && !e->opts.start_frozen)
        rc = kraken_store_get_value(e->store, KRAKEN_DSC, &e->self, "/RunState", &v);
    if (rc == 0 && !e->opts.start_frozen && kraken_value_is_zero(&v)) {
        kraken_value sync = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC);
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, "/RunState", &sync);
    }
    kraken_value_clear(&v);
    return rc;
}

/* Run states for the nodes a borrowed store already holds. */
static int adopt_existing_nodes(kraken_engine *e)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    int rc = kraken_store_read_all(e->store, KRAKEN_CFG, &nodes, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        enode *en = kraken__engine_node_add(e, kraken_node_id(nodes[i]));
        if (!en) {
            rc = kraken__err(KRAKEN_ENOMEM, "engine_new: out of memory");
            break;
        }
        en->cfg_changed = true;
        kraken__engine_mark_dirty(e, en);
    }
    kraken_nodes_free(nodes, n);
    return rc;
}

/*
 * Bytes of kraken_engine_options that a caller built against struct version
 * @p version has (0: unknown version). A version that adds fields adds a case.
 */
static size_t options_size(unsigned version)
{
    switch (version) {
    case 1:
        return offsetof(kraken_engine_options, no_sync_service) + sizeof(bool);
    case 2:
        return offsetof(kraken_engine_options, clock_userdata) + sizeof(void *);
    default:
        return 0;
    }
}

/*
 * The caller's options over the defaults: only the bytes its version has are
 * read (never past an older caller's smaller struct); later fields keep their
 * defaults. A version this library does not know is refused.
 */
static int options_read(const kraken_engine_options *caller, kraken_engine_options *out)
{
    static const kraken_engine_options defaults = KRAKEN_ENGINE_OPTIONS_INIT;
    *out = defaults;
    if (!caller)
        return 0;
    size_t size = options_size(caller->version);
    if (size == 0)
        return kraken__err(KRAKEN_EINVAL, "engine_new: options version %u, expected 1..%u",
                           caller->version, KRAKEN_ENGINE_OPTIONS_VERSION);
    memcpy(out, caller, size);
    return 0;
}

static int check_options(const kraken_engine_options *o)
{
    if (!(o->timeout_scale > 0.0))
        return kraken__err(KRAKEN_EINVAL, "engine_new: timeout_scale must be > 0");
    if (o->backoff_max_ms < o->backoff_initial_ms)
        return kraken__err(KRAKEN_EINVAL, "engine_new: backoff_max_ms (%u) < backoff_initial_ms "
                                          "(%u)", o->backoff_max_ms, o->backoff_initial_ms);
    return 0;
}

static void on_store_gone(void *arg);

int kraken_engine_options_init(kraken_engine_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "engine_options_init: opts must not be NULL");
    if (options_size(version) == 0)
        return kraken__err(KRAKEN_EINVAL, "engine_options_init: version %u, this library knows "
                                          "1..%u", version, KRAKEN_ENGINE_OPTIONS_VERSION);
    static const kraken_engine_options defaults = KRAKEN_ENGINE_OPTIONS_INIT;
    *opts = defaults;
    opts->version = version;
    return 0;
}

int kraken_engine_new(kraken_engine **out, struct event_base *base, kraken_store *store,
                      const kraken_engine_options *opts)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "engine_new: out must not be NULL");
    *out = NULL;
    if (!base)
        return kraken__err(KRAKEN_EINVAL, "engine_new: base must not be NULL");
    kraken_engine_options merged;
    int rc = options_read(opts, &merged);
    if (rc < 0 || (rc = check_options(&merged)) < 0)
        return rc;
    opts = &merged;
    kraken_engine *e = calloc(1, sizeof *e);
    if (!e)
        return kraken__err(KRAKEN_ENOMEM, "engine_new: out of memory");
    e->base = base;
    kraken__owner_init(&e->owner);
    e->opts = *opts;
    e->virtual_clock = opts->now_ms != NULL;
    if (!e->virtual_clock)
        e->opts.now_ms = monotonic_ms;
    e->self = opts->self_id;
    e->frozen = opts->start_frozen;
    if (kraken_uuid_is_zero(&e->self))
        rc = kraken_uuid_generate(&e->self);
    if (rc == 0 && !store) {
        rc = kraken_store_new(&e->store);
        e->own_store = rc == 0;
    } else {
        e->store = store;
    }
    if (rc == 0)
        rc = kraken_bus_new(&e->bus, base);
    if (rc == 0)
        rc = kraken_mutation_set_new(&e->set);
    if (rc == 0 && !(e->pass_ev = event_new(base, -1, 0, kraken__engine_pass_cb, e)))
        rc = kraken__err(KRAKEN_ENOMEM, "engine_new: cannot create the pass event");
    if (rc == 0 && e->virtual_clock &&
        !(e->clock_ev = event_new(base, -1, 0, kraken__engine_clock_cb, e)))
        rc = kraken__err(KRAKEN_ENOMEM, "engine_new: cannot create the clock event");
    if (rc == 0)
        rc = kraken_store_listen(e->store, kraken__engine_on_store_change, e, on_store_gone,
                                 &e->listener);
    if (rc == 0)
        rc = adopt_existing_nodes(e);
    if (rc == 0)
        rc = kraken__engine_ensure_self(e);
    if (rc == 0)
        rc = self_facts(e);
    if (rc == 0 && !opts->no_sync_service)
        rc = add_sync_service(e);
    if (rc < 0) {
        kraken_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* Detach the attached syncs: they stop using the engine, its store and its bus. */
static void detach_children(kraken_engine *e)
{
    while (e->n_children > 0) {
        struct engine_child c = e->children[--e->n_children];
        c.detach(c.arg); /* may call kraken__engine_unattach(): already off the list */
    }
    free(e->children);
    e->children = NULL;
}

/*
 * Release everything but the handle: children, services (destroy hooks), node
 * states, bus (subscriptions detached), mutation set, an owned store. Runs once,
 * when the engine is freed or detached from its freed store, never while one
 * of its loop callbacks is on the stack (see kraken__engine_unbusy()).
 */
static void engine_teardown(kraken_engine *engine)
{
    if (engine->torn_down)
        return;
    engine->dying = true; /* a destroy hook calling the engine gets KRAKEN_ESTATE */
    detach_children(engine);
    if (engine->listener)
        kraken_store_listener_remove(engine->listener);
    engine->listener = NULL;
    /*
     * Services first: their destroy hooks may still use the bus. The list is
     * detached, so a hook that removes a service (its own) finds nothing to do.
     */
    kraken_service **services = engine->services;
    size_t n_services = engine->n_services;
    engine->services = NULL;
    engine->n_services = engine->cap_services = 0;
    engine->svc_queue = NULL;
    for (size_t i = 0; i < n_services; i++)
        kraken__engine_service_detach(services[i]);
    free(services);
    for (size_t i = 0; i < engine->cap; i++)
        if (engine->slots[i])
            kraken__engine_node_free(engine->slots[i]);
    free(engine->slots);
    engine->slots = NULL;
    engine->cap = engine->count = 0;
    kraken__engine_detach_module_timers(engine);
    free(engine->heap);
    engine->heap = NULL;
    bits_free(&engine->cond_bits);
    if (engine->clock_ev)
        event_free(engine->clock_ev);
    engine->clock_ev = NULL;
    if (engine->pass_ev)
        event_free(engine->pass_ev);
    engine->pass_ev = NULL;
    kraken_bus_free(engine->bus);
    engine->bus = NULL;
    kraken_mutation_set_free(engine->set);
    engine->set = NULL;
    if (engine->own_store)
        kraken_store_free(engine->store);
    engine->store = NULL;
    if (engine->log_destroy)
        engine->log_destroy(engine->log_userdata);
    engine->log_fn = NULL;
    engine->log_destroy = NULL;
    engine->torn_down = true;
}

/*
 * The borrowed store is being freed (its free detaches our listener): the
 * engine lets go of everything now and stays a detached handle whose calls
 * fail with KRAKEN_ESTATE until kraken_engine_free().
 */
static void on_store_gone(void *arg)
{
    kraken_engine *e = arg;
    if (e->dying)
        return; /* our own free removed the listener */
    kraken_store_listener_remove(e->listener); /* the store frees the handle after this hook */
    e->listener = NULL;
    e->store = NULL;
    e->own_store = false;
    e->dying = true;
    if (!e->busy)
        engine_teardown(e);
}

void kraken_engine_free(kraken_engine *engine)
{
    if (!engine || engine->free_requested ||
        kraken__owner_check(&engine->owner, "engine_free", "engine") < 0)
        return;
    engine->free_requested = true;
    if (engine->torn_down) {
        free(engine); /* detached earlier: only the handle was left */
        return;
    }
    if (engine->dying)
        return; /* a teardown runs (this is one of its hooks) or waits for a callback to return */
    if (engine->busy) {
        /*
         * Called from a service callback: the engine's stack still runs. It goes
         * quiet now (no more callbacks, the store is let go, so a borrowed one may
         * be freed at once) and is freed when that callback returns.
         */
        engine->dying = true;
        if (engine->listener)
            kraken_store_listener_remove(engine->listener);
        engine->listener = NULL;
        return;
    }
    engine_teardown(engine);
    free(engine);
}

int kraken__engine_usable(const kraken_engine *engine, const char *op)
{
    return engine_entry(engine, op);
}

int kraken__engine_attach(kraken_engine *engine, void (*detach)(void *arg), void *arg)
{
    int rc = engine_entry(engine, "engine_attach");
    if (rc < 0)
        return rc;
    struct engine_child *v = realloc(engine->children, (engine->n_children + 1) * sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "engine_attach: out of memory");
    engine->children = v;
    engine->children[engine->n_children++] = (struct engine_child){detach, arg};
    return 0;
}

void kraken__engine_unattach(kraken_engine *engine, void *arg)
{
    for (size_t i = 0; engine && i < engine->n_children; i++) {
        if (engine->children[i].arg == arg) {
            engine->children[i] = engine->children[--engine->n_children];
            return;
        }
    }
}
