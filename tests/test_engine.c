/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Engine tests: whole chains on a real event_base with the simulated power +
 * PXE module (kraken/sim.h), on an injected clock: time moves only when the
 * test moves it, from one timer deadline to the next, so timeouts, back-off
 * and stuck detection are exact and nothing sleeps or depends on the load of
 * the machine. The loop runs until a condition holds or a (virtual) deadline
 * passes.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "kraken/sim.h"
#include "testutil.h"

#define SELF "c0ffee00-0000-4000-8000-000000000001"
#define PXE_STATE "type.googleapis.com/PXE.Client/State"
/* 10 s mutation timeouts become 20 ms, 90 s ones 180 ms. */
#define TIMEOUT_SCALE 0.002
#define DEADLINE_MS 4000

/* ---- fixture -------------------------------------------------------------------- */

typedef struct logged {
    int kind;
    kraken_uuid node;
    char service[32];
    char mutation[32];
    uint64_t seq;
    uint64_t at_ms;
} logged;

typedef struct fixture {
    struct event_base *base;
    kraken_engine *engine;
    kraken_store *store;
    kraken_sim *sim;
    kraken_subscription *sub;
    logged *log;
    size_t n_log, cap_log;
    size_t n_discoveries, n_engine_discoveries, n_state_changes, n_service_events;
    kraken_uuid self;
    uint64_t now;          /* the injected clock, ms */
    kraken_engine *other;  /* a second engine on the same clock, driven too (or NULL) */
} fixture;

static fixture fx;

static uint64_t clock_now(void *userdata)
{
    return ((const fixture *)userdata)->now;
}

static void on_event(const kraken_event *ev, void *userdata)
{
    fixture *f = userdata;
    if (ev->type == KRAKEN_EVENT_DISCOVERY) {
        f->n_discoveries++;
        if (ev->service_id && !strcmp(ev->service_id, "engine"))
            f->n_engine_discoveries++;
        return;
    }
    if (ev->type == KRAKEN_EVENT_STATE_CHANGE) {
        f->n_state_changes++;
        return;
    }
    if (ev->type == KRAKEN_EVENT_SERVICE) {
        f->n_service_events++;
        return;
    }
    if (ev->type != KRAKEN_EVENT_STATE_MUTATION)
        return;
    if (f->n_log == f->cap_log) {
        f->cap_log = f->cap_log ? f->cap_log * 2 : 256;
        f->log = realloc(f->log, f->cap_log * sizeof *f->log);
        ck_assert_ptr_nonnull(f->log);
    }
    logged *l = &f->log[f->n_log++];
    memset(l, 0, sizeof *l);
    l->kind = ev->kind;
    l->node = ev->node_id;
    snprintf(l->service, sizeof l->service, "%s", ev->service_id ? ev->service_id : "");
    snprintf(l->mutation, sizeof l->mutation, "%s", ev->mutation_id ? ev->mutation_id : "");
    l->seq = ev->seq;
    l->at_ms = fx.now;
}

static kraken_engine_options test_options(void)
{
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    kraken_uuid_parse(&o.self_id, SELF);
    o.timeout_scale = TIMEOUT_SCALE;
    o.backoff_initial_ms = 5;
    o.backoff_max_ms = 40;
    o.max_failures = 4;
    o.service_start_ms = 50;
    o.now_ms = clock_now;
    o.clock_userdata = &fx;
    return o;
}

static void fixture_start(const kraken_engine_options *o, const kraken_sim_options *so)
{
    memset(&fx, 0, sizeof fx);
    fx.now = 1000000; /* any epoch */
    kraken_uuid_parse(&fx.self, SELF);
    fx.base = event_base_new();
    ck_assert_ptr_nonnull(fx.base);
    ck_assert_int_eq(kraken_engine_new(&fx.engine, fx.base, NULL, o), 0);
    fx.store = kraken_engine_store(fx.engine);
    kraken_subscribe_options sopts = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION, 0, NULL, (size_t)1 << 22};
    ck_assert_int_eq(
        kraken_bus_subscribe(kraken_engine_bus(fx.engine), &sopts, on_event, &fx, NULL, &fx.sub),
        0);
    ck_assert_int_eq(kraken_sim_new(&fx.sim, fx.engine, so), 0);
}

static void setup(void)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    fixture_start(&o, &so);
}

static void teardown(void)
{
    kraken_sim_free(fx.sim);
    kraken_subscription_remove(fx.sub);
    kraken_engine_free(fx.engine);
    event_base_free(fx.base);
    free(fx.log);
    memset(&fx, 0, sizeof fx);
}

/* Restart the fixture with other options (inside a test). */
static void restart(const kraken_engine_options *o, const kraken_sim_options *so)
{
    teardown();
    fixture_start(o, so);
}

/* ---- loop driving ---------------------------------------------------------------- */

/* Run what is runnable now (passes, events, due timers) until nothing is. */
static void settle(void)
{
    while (event_base_get_num_events(fx.base, EVENT_BASE_COUNT_ACTIVE) > 0)
        if (event_base_loop(fx.base, EVLOOP_NONBLOCK) < 0)
            ck_abort_msg("event_base_loop failed");
}

/* The earliest timer deadline of the engines on the clock, or UINT64_MAX. */
static uint64_t next_deadline(void)
{
    uint64_t a = UINT64_MAX, b = UINT64_MAX;
    if (fx.engine && kraken_engine_next_deadline(fx.engine, &a) < 0)
        ck_abort_msg("%s", kraken_error_last());
    if (fx.other)
        if (kraken_engine_next_deadline(fx.other, &b) < 0)
            ck_abort_msg("%s", kraken_error_last());
    return a < b ? a : b;
}

/* Move the clock to @p to and let the engines fire what became due. */
static void clock_to(uint64_t to)
{
    fx.now = to;
    if (fx.engine)
        kraken_engine_clock_moved(fx.engine);
    if (fx.other)
        kraken_engine_clock_moved(fx.other);
}

typedef bool (*predicate)(void *arg);

/*
 * Run until pred(arg) holds (true) or @p ms of clock time pass (false). The
 * clock jumps from one timer deadline to the next: what happens in between is
 * exactly what the timers and the loop do, whatever the load of the machine.
 */
static bool run_until(predicate pred, void *arg, uint64_t ms)
{
    uint64_t end = fx.now + ms;
    for (;;) {
        settle();
        if (pred && pred(arg))
            return true;
        uint64_t next = next_deadline();
        if (next > end) {
            clock_to(end);
            settle();
            return pred && pred(arg);
        }
        clock_to(next > fx.now ? next : fx.now);
    }
}

/* Run for ms of clock time, whatever happens. */
static void run_for(uint64_t ms)
{
    run_until(NULL, NULL, ms);
}

/* ---- nodes ------------------------------------------------------------------------ */

static kraken_uuid node_id(unsigned i)
{
    char text[40];
    snprintf(text, sizeof text, "00000000-0000-4000-8000-%012x", i + 1);
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, text), 0);
    return id;
}

/* A compute node managed by this instance (Cfg parent = self). */
static kraken_uuid add_node_with(unsigned i, const char *platform, const char *run_state,
                                 const char *parent)
{
    kraken_uuid id = node_id(i);
    kraken_node *n;
    char name[32];
    snprintf(name, sizeof name, "n%u", i);
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Nodename", name), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", platform), 0);
    if (run_state)
        ck_assert_int_eq(kraken_node_set_text(n, "/RunState", run_state), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", parent), 0);
    ck_assert_int_eq(kraken_store_create(fx.store, n), 0);
    kraken_node_free(n);
    return id;
}

static kraken_uuid add_node(unsigned i)
{
    return add_node_with(i, "sim", "SYNC", SELF);
}

/* Text of a value in Cfg or Dsc ("" for zero/unset). Static buffer. */
static const char *value_text(kraken_state_kind kind, const kraken_uuid *id, const char *url)
{
    static char buf[128];
    kraken_value v = KRAKEN_VALUE_INIT;
    buf[0] = '\0';
    if (kraken_store_get_value(fx.store, kind, id, url, &v) == 0 && !kraken_value_is_zero(&v)) {
        char *s = NULL;
        if (kraken_value_format(&v, &s) == 0)
            snprintf(buf, sizeof buf, "%s", s);
        free(s);
    }
    kraken_value_clear(&v);
    kraken_error_clear();
    return buf;
}

static const char *dsc(const kraken_uuid *id, const char *url)
{
    return value_text(KRAKEN_DSC, id, url);
}

static void set_cfg(const kraken_uuid *id, const char *url, const char *text)
{
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_CFG, id, url, text), 0);
}

static kraken_plan_state node_state(const kraken_uuid *id)
{
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, id, &st), 0);
    kraken_plan_state s = st.state;
    kraken_plan_status_clear(&st);
    return s;
}

/* ---- predicates ---------------------------------------------------------------------- */

typedef struct state_wait {
    const kraken_uuid *ids;
    size_t n;
    kraken_plan_state state;
} state_wait;

static bool all_in_state(void *arg)
{
    state_wait *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (node_state(&w->ids[i]) != w->state)
            return false;
    return true;
}

static bool wait_state(const kraken_uuid *ids, size_t n, kraken_plan_state state)
{
    state_wait w = {ids, n, state};
    return run_until(all_in_state, &w, DEADLINE_MS);
}

typedef struct event_wait {
    int kind;
    const char *mutation;
    size_t count;
} event_wait;

static size_t count_events(int kind, const char *mutation, const kraken_uuid *node)
{
    size_t n = 0;
    for (size_t i = 0; i < fx.n_log; i++)
        if (fx.log[i].kind == kind && (!mutation || !strcmp(fx.log[i].mutation, mutation)) &&
            (!node || !kraken_uuid_compare(&fx.log[i].node, node)))
            n++;
    return n;
}

static bool event_seen(void *arg)
{
    event_wait *w = arg;
    return count_events(w->kind, w->mutation, NULL) >= w->count;
}

static bool wait_event(int kind, const char *mutation, size_t count)
{
    event_wait w = {kind, mutation, count};
    return run_until(event_seen, &w, DEADLINE_MS);
}

/* The node's STATE_MUTATION events as "K:mutation" joined by spaces (K in M I F D). */
static const char *trace(const kraken_uuid *node)
{
    static char buf[4096];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < fx.n_log && len < sizeof buf - 64; i++) {
        if (kraken_uuid_compare(&fx.log[i].node, node))
            continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%c:%s", len ? " " : "",
                                "MIFD"[fx.log[i].kind], fx.log[i].mutation);
    }
    return buf;
}

static const char *status_steps(const kraken_uuid *id, size_t *current)
{
    static char buf[1024];
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, id, &st), 0);
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < st.n_steps; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", st.steps[i]);
    if (current)
        *current = st.current;
    kraken_plan_status_clear(&st);
    return buf;
}

#define BOOT_TRACE                                                                          \
    "M:UKtoOFF D:UKtoOFF M:OFFtoON D:OFFtoON M:NONEtoWAIT D:NONEtoWAIT M:WAITtoINIT "       \
    "D:WAITtoINIT M:INITtoSYNC D:INITtoSYNC"

/* ---- reference chains ------------------------------------------------------------------ */

START_TEST(cold_boot_to_sync)
{
    kraken_uuid ids[4];
    for (unsigned i = 0; i < 4; i++)
        ids[i] = add_node(i);
    ck_assert(wait_state(ids, 4, KRAKEN_PLAN_CONVERGED));
    for (unsigned i = 0; i < 4; i++) {
        ck_assert_str_eq(dsc(&ids[i], "/PhysState"), "POWER_ON");
        ck_assert_str_eq(dsc(&ids[i], "/RunState"), "SYNC");
        ck_assert_str_eq(dsc(&ids[i], PXE_STATE), "INIT");
        ck_assert_str_eq(trace(&ids[i]), BOOT_TRACE);
    }
    /* The status keeps the whole plan, positioned after its last step. */
    size_t current;
    ck_assert_str_eq(status_steps(&ids[0], &current),
                     "power/UKtoOFF power/OFFtoON pxe/NONEtoWAIT pxe/WAITtoINIT sync/INITtoSYNC");
    ck_assert_uint_eq(current, 5);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &ids[0], &st), 0);
    ck_assert_uint_eq(st.failures, 0);
    ck_assert_ptr_null(st.reason);
    kraken_plan_status_clear(&st);
    /* The engine started the services it needed (Cfg RUN, module reported RUN). */
    ck_assert_uint_ge(kraken_sim_started(fx.sim), 2);
    ck_assert_str_eq(value_text(KRAKEN_CFG, &fx.self, "/Services/power/State"), "RUN");
    ck_assert_str_eq(dsc(&fx.self, "/Services/power/State"), "RUN");
    ck_assert_str_eq(dsc(&fx.self, "/Services/sync/State"), "RUN");
    ck_assert_uint_gt(fx.n_service_events, 0);
    ck_assert_uint_gt(fx.n_state_changes, 0);
    ck_assert_uint_eq(kraken_sim_pending(fx.sim), 0);
    /* The self node: running, and a root is in sync. */
    ck_assert_str_eq(dsc(&fx.self, "/PhysState"), "POWER_ON");
    ck_assert_str_eq(dsc(&fx.self, "/RunState"), "SYNC");
}
END_TEST

/* Scenario 2: powering off makes RunState and PXE state unknown (recorded in Dsc). */
START_TEST(power_off_forgets_state)
{
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    size_t engine_discoveries = fx.n_engine_discoveries;
    set_cfg(&id, "/RunState", "UNKNOWN");
    set_cfg(&id, "/PhysState", "POWER_OFF");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_OFF");
    ck_assert_str_eq(dsc(&id, "/RunState"), "");
    ck_assert_str_eq(dsc(&id, PXE_STATE), "");
    ck_assert_uint_eq(fx.n_engine_discoveries - engine_discoveries, 2);
    ck_assert_str_eq(status_steps(&id, NULL), "power/ONtoOFF");
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_MUTATE, "ONtoOFF", &id), 1);
}
END_TEST

/* Scenario 6: Dsc already equals Cfg: nothing is dispatched. */
START_TEST(converged_dispatches_nothing)
{
    kraken_uuid id = node_id(0);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/PhysState", "POWER_OFF"), 0);
    ck_assert_int_eq(kraken_store_create(fx.store, n), 0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/PhysState", "POWER_OFF"),
                     0);
    kraken_node_free(n);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    run_for(20);
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, NULL), 0);
    ck_assert_str_eq(status_steps(&id, NULL), "");
}
END_TEST

/* Scenario 7: a restarted root must never power-cycle a healthy node. */
START_TEST(restart_keeps_running_nodes)
{
    /* Dsc {POWER_ON, SYNC}: empty plan. */
    kraken_uuid a = add_node(0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &a, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &a, "/RunState", "SYNC"), 0);
    /* PhysState unknown, RunState SYNC (the child phoned home first): UKtoOFF finds POWER_ON. */
    kraken_uuid b = add_node(1);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &b, "UKtoOFF", KRAKEN_SIM_REPORT, 0, "POWER_ON"), 0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &b, "/RunState", "SYNC"), 0);
    kraken_uuid both[2] = {a, b};
    ck_assert(wait_state(both, 2, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&a), "");
    ck_assert_str_eq(trace(&b), "M:UKtoOFF D:UKtoOFF");
    ck_assert_str_eq(dsc(&b, "/PhysState"), "POWER_ON");
    ck_assert_str_eq(dsc(&b, "/RunState"), "SYNC");
    ck_assert_uint_eq(fx.n_engine_discoveries, 0);
}
END_TEST

/* Scenario 3: a hung node is recovered (timeout -> PHYS_HANG -> HANGtoOFF ...). */
START_TEST(hang_recovery)
{
    /* A back-off long enough to still be on when the test looks, even on a loaded machine. */
    kraken_engine_options o = test_options();
    o.backoff_initial_ms = 400;
    o.backoff_max_ms = 800;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_HANG, 1, NULL), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert_str_eq(dsc(&id, "/PhysState"), "PHYS_HANG"); /* fail_to, recorded by the engine */
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_int_eq(st.state, KRAKEN_PLAN_BACKOFF);
    ck_assert_uint_eq(st.failures, 1);
    ck_assert_ptr_nonnull(st.reason);
    ck_assert_ptr_nonnull(strstr(st.reason, "timed out"));
    kraken_plan_status_clear(&st);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON M:HANGtoOFF D:HANGtoOFF "
                                 "M:OFFtoON D:OFFtoON M:NONEtoWAIT D:NONEtoWAIT M:WAITtoINIT "
                                 "D:WAITtoINIT M:INITtoSYNC D:INITtoSYNC");
    ck_assert_uint_eq(kraken_sim_interrupted(fx.sim), 1);
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 0);
    kraken_plan_status_clear(&st);
}
END_TEST

/* A step that always hangs does not boot-loop: the node ends up stuck. */
START_TEST(hang_loop_gets_stuck)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_HANG, 0, NULL), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", &id), 4);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_DONE, "HANGtoOFF", &id), 3);
}
END_TEST

START_TEST(failure_backoff_and_stuck)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_FAIL, 0, NULL), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    /* max_failures = 4, back-off 5, 10, 20 ms between the tries. */
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_FAILED, "OFFtoON", &id), 4);
    uint64_t prev = 0, gaps[3];
    size_t k = 0;
    for (size_t i = 0; i < fx.n_log; i++) {
        if (fx.log[i].kind != KRAKEN_MUTATION_MUTATE || strcmp(fx.log[i].mutation, "OFFtoON"))
            continue;
        if (prev && k < 3)
            gaps[k++] = fx.log[i].at_ms - prev;
        prev = fx.log[i].at_ms;
    }
    ck_assert_uint_eq(k, 3); /* exact: the clock only moves from deadline to deadline */
    ck_assert_uint_eq(gaps[0], 5);
    ck_assert_uint_eq(gaps[1], 10);
    ck_assert_uint_eq(gaps[2], 20);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 4);
    ck_assert_ptr_nonnull(strstr(st.reason, "stuck after 4 failures"));
    ck_assert_ptr_nonnull(strstr(st.reason, "injected failure"));
    kraken_plan_status_clear(&st);
    /* No fail_to for a reported failure; stuck means nothing more is tried. */
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_OFF");
    unsigned dispatched = kraken_sim_dispatched(fx.sim, "OFFtoON");
    run_for(60);
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), dispatched);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_STUCK);
    /* The operator resets it once the fault is gone. */
    kraken_sim_clear_faults(fx.sim);
    ck_assert_int_eq(kraken_engine_reset_node(fx.engine, &id), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/RunState"), "SYNC");
}
END_TEST

START_TEST(stuck_cleared_by_cfg_change)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_FAIL, 0, NULL), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    kraken_sim_clear_faults(fx.sim);
    set_cfg(&id, "/Nodename", "renamed");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 0);
    ck_assert_ptr_null(st.reason);
    kraken_plan_status_clear(&st);
}
END_TEST

/* A module reporting an unexpected value counts as a failure (no tight loop). */
START_TEST(contradicting_report_is_a_failure)
{
    /* A back-off long enough to still be on when the test looks, even on a loaded machine. */
    kraken_engine_options o = test_options();
    o.backoff_initial_ms = 400;
    o.backoff_max_ms = 800;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_REPORT, 1, "PHYS_ERROR"), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert_uint_eq(node_state(&id), KRAKEN_PLAN_BACKOFF);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.reason, "PHYS_ERROR"));
    kraken_plan_status_clear(&st);
    /* No mutation leaves PHYS_ERROR in S: no path, visible. */
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
}
END_TEST

/* A hang discovered outside any step: stale facts are cleared, the node recovers. */
START_TEST(unsolicited_hang_recovers)
{
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    size_t engine_discoveries = fx.n_engine_discoveries;
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", "PHYS_HANG"), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_DONE, "HANGtoOFF", 1));
    ck_assert_uint_eq(fx.n_engine_discoveries - engine_discoveries, 2); /* RunState, PXE */
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/RunState"), "SYNC");
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_DONE, "INITtoSYNC", &id), 2);
}
END_TEST

/* Deleted and created again before the engine looked: the old step is interrupted. */
START_TEST(recreate_mid_chain)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 15;
    o.timeout_scale = 0.02;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 1));
    ck_assert_int_eq(kraken_store_delete(fx.store, &id), 0);
    add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON " BOOT_TRACE);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 0);
    kraken_plan_status_clear(&st);
}
END_TEST

/* no_path_retry_ms re-plans without a change of the node (here: the set changed behind). */
START_TEST(no_path_retry_timer)
{
    static const kraken_fact on_vbox[] = {{"/Platform", "vbox"}};
    static const kraken_mutate uk_to_off[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(
        .id = "UKtoOFF", .mutates = uk_to_off, .n_mutates = 1, .requires = on_vbox,
        .n_requires = 1, .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000, .cost = 1);
    for (int retry = 0; retry <= 1; retry++) {
        kraken_engine_options o = test_options();
        o.no_path_retry_ms = retry ? 5 : 0;
        kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
        restart(&o, &so);
        kraken_uuid id = add_node_with(0, "vbox", NULL, SELF);
        set_cfg(&id, "/PhysState", "POWER_OFF");
        ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
        /* Added to the set directly: no service here owns it, so the step is someone else's. */
        ck_assert_int_eq(kraken_mutation_set_add(kraken_engine_mutations(fx.engine), "vbox", &d),
                         0);
        run_for(4); /* the retry is due 5 ms after "no path" was found */
        ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_NO_PATH);
        run_for(1);
        ck_assert_int_eq(node_state(&id), retry ? KRAKEN_PLAN_PASSIVE : KRAKEN_PLAN_NO_PATH);
        run_for(30);
        ck_assert_int_eq(node_state(&id), retry ? KRAKEN_PLAN_PASSIVE : KRAKEN_PLAN_NO_PATH);
    }
}
END_TEST

/* ---- changes in the middle of a chain -------------------------------------------------- */

START_TEST(cfg_change_mid_chain)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 15;
    o.timeout_scale = 0.02; /* 200 ms: the 15 ms answers always come first */
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 1));
    /* Now the operator wants it off: OFFtoON is interrupted, the new plan is empty. */
    set_cfg(&id, "/RunState", "UNKNOWN");
    set_cfg(&id, "/PhysState", "POWER_OFF");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON");
    ck_assert_uint_eq(kraken_sim_interrupted(fx.sim), 1);
    run_for(30); /* the cancelled answer never comes */
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_OFF");
    ck_assert_uint_eq(kraken_sim_pending(fx.sim), 0);
    /* An irrelevant Cfg change while a step runs does not interrupt it. */
    set_cfg(&id, "/PhysState", "POWER_ON");
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 2));
    set_cfg(&id, "/Nodename", "other");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_uint_eq(kraken_sim_interrupted(fx.sim), 1);
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_ON");
}
END_TEST

START_TEST(delete_mid_chain)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 15;
    o.timeout_scale = 0.02; /* 200 ms: the 15 ms answers always come first */
    restart(&o, &so);
    kraken_uuid id = add_node(0), other = add_node(1);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 2));
    ck_assert_int_eq(kraken_store_delete(fx.store, &id), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON");
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), KRAKEN_ENOTFOUND);
    ck_assert(wait_state(&other, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_uint_eq(kraken_sim_interrupted(fx.sim), 1);
}
END_TEST

START_TEST(freeze_and_thaw)
{
    kraken_engine_freeze(fx.engine);
    ck_assert(kraken_engine_frozen(fx.engine));
    kraken_uuid ids[3];
    for (unsigned i = 0; i < 3; i++)
        ids[i] = add_node(i);
    run_for(30);
    ck_assert_uint_eq(fx.n_log, 0);
    ck_assert_int_eq(node_state(&ids[0]), KRAKEN_PLAN_FROZEN);
    kraken_engine_thaw(fx.engine);
    ck_assert(!kraken_engine_frozen(fx.engine));
    ck_assert(wait_state(ids, 3, KRAKEN_PLAN_CONVERGED));

    /* Frozen with a step in flight: its timer does not run until the thaw. */
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &ids[0], "ONtoOFF", KRAKEN_SIM_HANG, 1, NULL), 0);
    set_cfg(&ids[0], "/RunState", "UNKNOWN");
    set_cfg(&ids[0], "/PhysState", "POWER_OFF");
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "ONtoOFF", 1));
    kraken_engine_freeze(fx.engine);
    run_for(60); /* three timeouts' worth */
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_INTERRUPT, NULL, NULL), 0);
    ck_assert_int_eq(node_state(&ids[0]), KRAKEN_PLAN_FROZEN);
    kraken_engine_thaw(fx.engine);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "ONtoOFF", 1));
    ck_assert(wait_state(&ids[0], 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&ids[0], "/PhysState"), "POWER_OFF");
}
END_TEST

/* Scenario 5: no path is a visible status, retried when the Cfg is fixed. */
START_TEST(no_path_then_fixed)
{
    kraken_uuid id = add_node_with(0, "vbox", "SYNC", SELF);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_ptr_nonnull(st.reason);
    ck_assert_ptr_nonnull(strstr(st.reason, "no path"));
    ck_assert_uint_eq(st.n_steps, 0);
    kraken_plan_status_clear(&st);
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, NULL), 0);
    set_cfg(&id, "/Platform", "sim");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/RunState"), "SYNC");
}
END_TEST

/* Steps of nodes this instance is not the parent of are followed passively. */
START_TEST(passive_follows_discoveries)
{
    kraken_uuid id = add_node_with(0, "sim", "SYNC", "c0ffee00-0000-4000-8000-0000000000ff");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_PASSIVE));
    run_for(30); /* no timer: no timeout, no failure */
    ck_assert_uint_eq(fx.n_log, 0);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_PASSIVE);
    /* The status says why nothing moves (e.g. a harness that left its engine's self id unset). */
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    char want[256];
    snprintf(want, sizeof want, "step power/UKtoOFF runs on the node's parent (context CHILD), "
             "not on this instance (%s): it follows the node's discoveries", SELF);
    ck_assert_str_eq(st.reason, want);
    kraken_plan_status_clear(&st);
    /* Someone else's discovery of the step's outcome advances the plan. */
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_ptr_nonnull(power);
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", "POWER_OFF"), 0);
    run_for(5);
    size_t current;
    status_steps(&id, &current);
    ck_assert_uint_eq(current, 1);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_PASSIVE);
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, NULL), 0);
}
END_TEST

/* ---- services ---------------------------------------------------------------------------- */

START_TEST(service_start_timeout)
{
    kraken_engine_options o = test_options();
    o.service_start_ms = 10;
    o.max_failures = 2;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.never_start = true;
    restart(&o, &so);
    uint64_t t0 = fx.now;
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    /* Wait 10 ms, fail, back off 5 ms, wait 10 ms, fail: stuck (max_failures 2). */
    ck_assert_uint_eq(fx.now - t0, 25);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_str_eq(st.reason, "stuck after 2 failures in a row: service 'power' did not reach "
                                "RUN within 10 ms");
    kraken_plan_status_clear(&st);
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, NULL), 0);
    ck_assert_uint_eq(kraken_sim_started(fx.sim), 1);
    ck_assert_str_eq(value_text(KRAKEN_CFG, &fx.self, "/Services/power/State"), "RUN");
    ck_assert_str_eq(dsc(&fx.self, "/Services/power/State"), "INIT");
}
END_TEST

static int n_starts, n_configs;
static void count_start(kraken_service *s, void *u)
{
    (void)u;
    n_starts++;
    kraken_service_set_state(s, KRAKEN_SERVICE_RUN, NULL);
}
static char last_config[512];
static void count_config(kraken_service *s, const kraken_value *config, void *u)
{
    (void)s;
    (void)u;
    n_configs++;
    char *text = NULL;
    last_config[0] = '\0';
    if (kraken_value_format(config, &text) == 0)
        snprintf(last_config, sizeof last_config, "%s", text);
    free(text);
    kraken_error_clear();
}
static void count_stop(kraken_service *s, void *u)
{
    (void)u;
    kraken_service_set_state(s, KRAKEN_SERVICE_STOP, NULL);
}
static int destroyed;
static void count_destroy(void *u)
{
    (void)u;
    destroyed++;
}

static bool service_state_is(void *arg)
{
    return !strcmp(dsc(&fx.self, "/Services/extra/State"), (const char *)arg);
}

START_TEST(service_lifecycle)
{
    n_starts = n_configs = destroyed = 0;
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = count_start, .stop = count_stop,
                                                     .config_changed = count_config);
    kraken_service *svc;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", &ops, NULL,
                                               count_destroy, &svc),
                     0);
    ck_assert_ptr_eq(kraken_engine_find_service(fx.engine, "extra"), svc);
    ck_assert_str_eq(kraken_service_id(svc), "extra");
    ck_assert_ptr_eq(kraken_service_engine(svc), fx.engine);
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/State"), "STOP");
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/Module"), "mod");
    ck_assert_str_eq(value_text(KRAKEN_CFG, &fx.self, "/Services/extra/Module"), "mod");
    /* Cfg RUN starts it (from the loop, not from the call). */
    set_cfg(&fx.self, "/Services/extra/State", "RUN");
    ck_assert_int_eq(n_starts, 0);
    ck_assert(run_until(service_state_is, "RUN", DEADLINE_MS));
    ck_assert_int_eq(n_starts, 1);
    set_cfg(&fx.self, "/Services/extra/State", "STOP");
    ck_assert(run_until(service_state_is, "STOP", DEADLINE_MS));
    /* Errors carry their message. */
    ck_assert_int_eq(kraken_service_set_state(svc, KRAKEN_SERVICE_ERROR, "disk on fire"), 0);
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/ErrorMsg"), "disk on fire");
    ck_assert_int_eq(kraken_service_set_state(svc, (kraken_service_state)9, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/State"), "ERROR");
    /* Duplicate and bad ids. */
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", &ops, NULL, NULL, NULL),
                     KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "a/b", "mod", &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "", "mod", &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "x", NULL, &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, "a/b"));
    kraken_service_remove(svc);
    ck_assert_int_eq(destroyed, 1);
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, "extra"));
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/Module"), "");
    ck_assert_str_eq(value_text(KRAKEN_CFG, &fx.self, "/Services/extra/Module"), "");
    kraken_service_remove(NULL);
}
END_TEST

/* Removing a service interrupts its steps and removes its mutations. */
START_TEST(remove_service_mid_step)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_HANG, 0, NULL), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 1));
    size_t before = kraken_mutation_set_count(kraken_engine_mutations(fx.engine));
    kraken_sim_free(fx.sim); /* removes "power" and "pxe" */
    fx.sim = NULL;
    ck_assert_uint_eq(kraken_mutation_set_count(kraken_engine_mutations(fx.engine)), before - 6);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", &id), 1);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
}
END_TEST

/* ---- discoveries ------------------------------------------------------------------------ */

START_TEST(discovery_checks)
{
    kraken_uuid id = add_node_with(0, "vbox", NULL, SELF); /* nothing wanted: nothing runs */
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    kraken_service *pxe = kraken_engine_find_service(fx.engine, "pxe");
    size_t discoveries = fx.n_discoveries;
    /* Not declared by this service. */
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/RunState", "INIT"), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "not declared discoverable"));
    ck_assert_str_eq(dsc(&id, "/RunState"), "");
    /* A value that does not fit the schema. */
    ck_assert_int_lt(kraken_service_discover_text(power, &id, "/PhysState", "BOGUS"), 0);
    kraken_value s = kraken_value_string("POWER_ON");
    ck_assert_int_lt(kraken_service_discover(power, &id, "/PhysState", &s), 0);
    kraken_value_clear(&s);
    ck_assert_str_eq(dsc(&id, "/PhysState"), "");
    /* Unknown node, malformed URL, missing arguments. */
    kraken_uuid nobody = node_id(77);
    ck_assert_int_eq(kraken_service_discover_text(power, &nobody, "/PhysState", "POWER_ON"),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_lt(kraken_service_discover_text(power, &id, "/NoSuchField", "1"), 0);
    ck_assert_int_eq(kraken_service_discover_text(NULL, &id, "/PhysState", "POWER_ON"),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover(power, &id, "/PhysState", NULL), KRAKEN_EINVAL);
    run_for(5);
    ck_assert_uint_eq(fx.n_discoveries, discoveries);
    /* Declared ones land, with a DISCOVERY event; lower-case URLs are canonicalised. */
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "physState", "POWER_OFF"), 0);
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_OFF");
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
    ck_assert_int_eq(kraken_service_discover(power, &id, "/PhysState", &v), 0);
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_ON");
    /* Named values. */
    ck_assert_int_eq(kraken_service_declare_discoverable(pxe, "/RunState", "NODE_INIT", "INIT"),
                     0);
    ck_assert_int_eq(kraken_service_discover_named(pxe, &id, "/RunState", "NODE_INIT"), 0);
    ck_assert_str_eq(dsc(&id, "/RunState"), "INIT");
    ck_assert_int_eq(kraken_service_discover_named(pxe, &id, "/RunState", "NODE_NOPE"),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_lt(kraken_service_declare_discoverable(pxe, "/RunState", "BAD", "NOPE"), 0);
    ck_assert_int_eq(kraken_service_discover_named(pxe, &id, "/RunState", "BAD"),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_service_declare_discoverable(pxe, "/RunState", "X", NULL),
                     KRAKEN_EINVAL);
    ck_assert_int_lt(kraken_service_declare_discoverable(pxe, "/No/Such", NULL, NULL), 0);
    /* A pattern applies to any matching URL. */
    ck_assert_int_eq(kraken_service_discover_text(pxe, &id, "/Arch", "amd64"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_declare_discoverable(pxe, "/Ar*", NULL, NULL), 0);
    ck_assert_int_eq(kraken_service_discover_text(pxe, &id, "/Arch", "amd64"), 0);
    ck_assert_str_eq(dsc(&id, "/Arch"), "amd64");
    /* A service's own state is always allowed. */
    ck_assert_int_eq(kraken_service_discover_text(pxe, &fx.self, "/Services/pxe/State", "RUN"), 0);
    run_for(5);
    ck_assert_uint_eq(fx.n_discoveries, discoveries + 5);
}
END_TEST

START_TEST(service_fail_checks)
{
    kraken_uuid id = add_node_with(0, "vbox", "SYNC", SELF);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_fail(power, &id, 1, "x"), KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(), "service_fail: request 1 of service 'power' on node "
                                          "00000000-0000-4000-8000-000000000001 is not in flight "
                                          "(a late answer?)");
    kraken_uuid nobody = node_id(77);
    ck_assert_int_eq(kraken_service_fail(power, &nobody, 1, "x"), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_service_fail(power, NULL, 1, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_NO_PATH);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_FAILED, NULL, NULL), 0);
}
END_TEST

/* ---- events -------------------------------------------------------------------------------- */

START_TEST(event_order_per_step)
{
    kraken_uuid ids[50];
    for (unsigned i = 0; i < 50; i++)
        ids[i] = add_node(i);
    ck_assert(wait_state(ids, 50, KRAKEN_PLAN_CONVERGED));
    /* For every node: MUTATE x, DONE x, MUTATE y ... with increasing sequence numbers. */
    for (unsigned i = 0; i < 50; i++)
        ck_assert_str_eq(trace(&ids[i]), BOOT_TRACE);
    for (size_t i = 1; i < fx.n_log; i++)
        ck_assert_uint_gt(fx.log[i].seq, fx.log[i - 1].seq);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_MUTATE, NULL, NULL), 250);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_DONE, NULL, NULL), 250);
}
END_TEST

/* ---- scale ------------------------------------------------------------------------------------ */

START_TEST(thousand_nodes_converge)
{
    enum { N = 1000 };
    kraken_uuid *ids = malloc(N * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (unsigned i = 0; i < N; i++)
        ids[i] = add_node(i);
    ck_assert(wait_state(ids, N, KRAKEN_PLAN_CONVERGED));
    for (unsigned i = 0; i < N; i += 97)
        ck_assert_str_eq(dsc(&ids[i], "/RunState"), "SYNC");
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, NULL), 5 * N);
    free(ids);
}
END_TEST

/* ---- API misuse ----------------------------------------------------------------------------- */

START_TEST(bad_arguments)
{
    kraken_engine *e = (kraken_engine *)1;
    ck_assert_int_eq(kraken_engine_new(NULL, fx.base, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_new(&e, NULL, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(e);
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    o.version = 99;
    ck_assert_int_eq(kraken_engine_new(&e, fx.base, NULL, &o), KRAKEN_EINVAL);
    o = (kraken_engine_options)KRAKEN_ENGINE_OPTIONS_INIT;
    o.timeout_scale = 0;
    ck_assert_int_eq(kraken_engine_new(&e, fx.base, NULL, &o), KRAKEN_EINVAL);
    o = (kraken_engine_options)KRAKEN_ENGINE_OPTIONS_INIT;
    o.backoff_max_ms = 1;
    ck_assert_int_eq(kraken_engine_new(&e, fx.base, NULL, &o), KRAKEN_EINVAL);
    ck_assert_ptr_null(e);
    kraken_engine_free(NULL);
    kraken_plan_status_clear(NULL);
    ck_assert_ptr_null(kraken_engine_store(NULL));
    ck_assert_ptr_null(kraken_engine_bus(NULL));
    ck_assert_ptr_null(kraken_engine_mutations(NULL));
    ck_assert_ptr_null(kraken_engine_self_id(NULL));
    ck_assert(!kraken_engine_frozen(NULL));
    kraken_engine_freeze(NULL);
    kraken_engine_thaw(NULL);
    ck_assert_ptr_null(kraken_service_id(NULL));
    ck_assert_ptr_null(kraken_service_engine(NULL));
    ck_assert_str_eq(kraken_plan_state_name(KRAKEN_PLAN_NO_PATH), "NO_PATH");
    ck_assert_ptr_null(kraken_plan_state_name((kraken_plan_state)42));
    kraken_uuid nobody = node_id(77);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &nobody, &st), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, NULL, &st), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_reset_node(fx.engine, &nobody), KRAKEN_ENOTFOUND);
    char *json = NULL;
    ck_assert_int_eq(kraken_engine_graph_json(fx.engine, &nobody, &json), KRAKEN_ENOTFOUND);
    ck_assert_ptr_null(json);
    ck_assert_int_eq(kraken_engine_graph_json(NULL, NULL, &json), KRAKEN_EINVAL);
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_declare_mutation(power, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_declare_discoverable(NULL, "/PhysState", NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_ptr_null(kraken_engine_find_service(NULL, "power"));
    ck_assert_str_eq(kraken_uuid_compare(kraken_engine_self_id(fx.engine), &fx.self) == 0 ? "ok"
                                                                                          : "no",
                     "ok");
}
END_TEST

START_TEST(graph_json)
{
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    char *json = NULL;
    ck_assert_int_eq(kraken_engine_graph_json(fx.engine, NULL, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"edges\""));
    free(json);
    ck_assert_int_eq(kraken_engine_graph_json(fx.engine, &id, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"nodes\""));
    free(json);
}
END_TEST

/* A caller's store: existing nodes are adopted; without the sync service INITtoSYNC is absent. */
START_TEST(borrowed_store_without_sync)
{
    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    kraken_uuid id = node_id(0);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_store_create(store, n), 0);
    kraken_node_free(n);
    kraken_engine_options o = test_options();
    o.no_sync_service = true;
    o.start_frozen = true;
    kraken_engine *e;
    ck_assert_int_eq(kraken_engine_new(&e, fx.base, store, &o), 0);
    ck_assert_ptr_eq(kraken_engine_store(e), store);
    ck_assert_ptr_null(kraken_engine_find_service(e, "sync"));
    ck_assert_uint_eq(kraken_mutation_set_count(kraken_engine_mutations(e)), 0);
    ck_assert(kraken_engine_frozen(e));
    ck_assert(kraken_store_contains(store, &fx.self));
    ck_assert_int_eq(kraken_engine_node_status(e, &id, &(kraken_plan_status){0}), 0);
    kraken_engine_free(e);
    /* The store outlives the engine and is still usable. */
    ck_assert_uint_eq(kraken_store_count(store), 2);
    kraken_store_free(store);
}
END_TEST

/* ---- review: callbacks, knowledge, failures ------------------------------------------------ */

#define EXTRA_CFG "/Services/extra/Config/type.googleapis.com/Powerman.Control/ApiServer"

static bool configs_at_least(void *arg)
{
    return n_configs >= *(const int *)arg;
}

static bool started_and_configured(void *arg)
{
    const int *want = arg;
    return n_starts >= want[0] && n_configs >= want[1];
}

/* config_changed is called, from the loop, when (and only when) the service's Cfg config changes. */
START_TEST(config_changed_delivered)
{
    n_starts = n_configs = destroyed = 0;
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = count_start, .stop = count_stop,
                                                     .config_changed = count_config);
    kraken_service *svc;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", &ops, NULL, NULL, &svc),
                     0);
    set_cfg(&fx.self, EXTRA_CFG, "pm:1");
    ck_assert_int_eq(n_configs, 0); /* never from inside the API call */
    int want = 1;
    ck_assert(run_until(configs_at_least, &want, DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(last_config, "pm:1"));
    /* Several fields changed together: one call with the whole new record. */
    set_cfg(&fx.self, "/Services/extra/Config/ApiServer", "pm:2");
    set_cfg(&fx.self, "/Services/extra/Config/NodeName", "n7");
    want = 2;
    ck_assert(run_until(configs_at_least, &want, DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(last_config, "pm:2"));
    ck_assert_ptr_nonnull(strstr(last_config, "n7"));
    /* Not for Dsc, another service's config, or other Cfg values. */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &fx.self, EXTRA_CFG, "pm:9"), 0);
    set_cfg(&fx.self, "/Services/power/Config/type.googleapis.com/Powerman.Control/ApiServer",
            "pm:3");
    set_cfg(&fx.self, "/Nodename", "root");
    run_for(20);
    ck_assert_int_eq(n_configs, 2);
    /* Started and reconfigured before the loop runs: both reach the service. */
    set_cfg(&fx.self, "/Services/extra/State", "RUN");
    set_cfg(&fx.self, "/Services/extra/Config/ApiServer", "pm:4");
    int both[2] = {1, 3};
    ck_assert(run_until(started_and_configured, both, DEADLINE_MS));
    ck_assert_ptr_nonnull(strstr(last_config, "pm:4"));
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/State"), "RUN");
    kraken_service_remove(svc);
}
END_TEST

/* The knowledge rule is recorded in Dsc also for the first change after the set changed. */
START_TEST(knowledge_after_set_change)
{
    static const kraken_fact on_vbox[] = {{"/Platform", "vbox"}};
    static const kraken_mutate arch[] = {{"/Arch", "i386", "amd64"}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(
        .id = "I386toAMD64", .mutates = arch, .n_mutates = 1, .requires = on_vbox,
        .n_requires = 1, .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000, .cost = 1);
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    /* A module declares one more (unrelated) mutation: the engine looks at every node again. */
    ck_assert_int_eq(
        kraken_service_declare_mutation(kraken_engine_find_service(fx.engine, "pxe"), &d), 0);
    run_for(10);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_CONVERGED);
    size_t engine_discoveries = fx.n_engine_discoveries;
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", "PHYS_HANG"), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_DONE, "HANGtoOFF", 1));
    /* A hung node is not in sync any more: Dsc must not keep claiming it. */
    ck_assert_uint_eq(fx.n_engine_discoveries - engine_discoveries, 2);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_DONE, "INITtoSYNC", &id), 2);
}
END_TEST

/* An interrupt callback that replaces the node's stored records (copy-and-swap writes). */
static void replace_node_on_interrupt(kraken_service *service, const kraken_mutation_request *req,
                                      void *arg)
{
    (void)service;
    (void)arg;
    kraken_store *store = kraken_engine_store(fx.engine);
    for (int kind = KRAKEN_CFG; kind <= KRAKEN_DSC; kind++) {
        kraken_node *copy = NULL;
        if (kraken_store_read(store, (kraken_state_kind)kind, &req->node_id, &copy) == 0)
            ck_assert_int_eq(kraken_store_update(store, (kraken_state_kind)kind, copy), 0);
        kraken_node_free(copy);
    }
}

START_TEST(interrupt_callback_replaces_node)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 15;
    o.timeout_scale = 0.02;
    restart(&o, &so);
    kraken_sim_on_interrupt(fx.sim, replace_node_on_interrupt, NULL);
    kraken_uuid id = add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "NONEtoWAIT", 1));
    /* The new plan starts with another step: NONEtoWAIT is interrupted, ONtoOFF starts. */
    set_cfg(&id, "/RunState", "UNKNOWN");
    set_cfg(&id, "/PhysState", "POWER_OFF");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON D:OFFtoON M:NONEtoWAIT "
                                 "I:NONEtoWAIT M:ONtoOFF D:ONtoOFF");
    ck_assert_str_eq(dsc(&id, "/PhysState"), "POWER_OFF");
}
END_TEST

/* An interrupt callback (node deleted) that creates the node again: the new one is driven. */
static void recreate_on_interrupt(kraken_service *service, const kraken_mutation_request *req,
                                  void *arg)
{
    (void)service;
    int *left = arg;
    if (*left == 0 || kraken_store_contains(fx.store, &req->node_id))
        return;
    (*left)--;
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &req->node_id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_store_create(fx.store, n), 0);
    kraken_node_free(n);
}

START_TEST(interrupt_callback_recreates_node)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 15;
    o.timeout_scale = 0.02;
    restart(&o, &so);
    int left = 1;
    kraken_sim_on_interrupt(fx.sim, recreate_on_interrupt, &left);
    kraken_uuid id = add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 1));
    ck_assert_int_eq(kraken_store_delete(fx.store, &id), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", 1));
    ck_assert_int_eq(left, 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON " BOOT_TRACE);
}
END_TEST

/* Any Cfg change clears the failure count (engine.h), not only a stuck or backing-off node's. */
START_TEST(cfg_change_clears_failures)
{
    kraken_engine_options o = test_options();
    o.max_failures = 2;
    o.backoff_initial_ms = 150; /* the back-off is still on when the test looks */
    o.backoff_max_ms = 300;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_HANG, 1, NULL), 0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "HANGtoOFF", KRAKEN_SIM_HANG, 1, NULL), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "HANGtoOFF", 1)); /* after failure 1 */
    set_cfg(&id, "/Nodename", "renamed");
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "HANGtoOFF", 1));
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 1);
    ck_assert_int_eq(st.state, KRAKEN_PLAN_BACKOFF);
    kraken_plan_status_clear(&st);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
}
END_TEST

/* A service's implicit right to report its own state is for the self node only. */
START_TEST(own_state_only_on_self)
{
    kraken_uuid id = add_node_with(0, "vbox", NULL, SELF);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    size_t discoveries = fx.n_discoveries;
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/Services/power/State", "RUN"),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(dsc(&id, "/Services/power/Module"), "");
    ck_assert_str_eq(dsc(&id, "/Services/power/State"), "");
    ck_assert_int_eq(kraken_service_discover_text(power, &fx.self, "/Services/power/State", "RUN"),
                     0);
    run_for(5);
    ck_assert_uint_eq(fx.n_discoveries, discoveries + 1);
}
END_TEST

/* ---- an engine freed by its own callbacks ------------------------------------------------- */

typedef enum free_from {
    FREE_FROM_MUTATE,
    FREE_FROM_INTERRUPT, /* plan changed (from the pass) */
    FREE_FROM_TIMEOUT,   /* step timed out (from the node's timer) */
    FREE_FROM_START
} free_from;

typedef struct probe {
    kraken_engine *engine;
    kraken_service *service;
    free_from when;
    int mutates, interrupts, starts, destroys;
    bool freed;
} probe;

static void probe_free_engine(probe *p)
{
    fx.other = NULL;
    kraken_engine_free(p->engine);
    p->engine = NULL;
    p->freed = true;
}

static void probe_start(kraken_service *s, void *u)
{
    probe *p = u;
    p->starts++;
    if (p->when == FREE_FROM_START && !p->freed)
        probe_free_engine(p);
    else
        kraken_service_set_state(s, KRAKEN_SERVICE_RUN, NULL);
}

static void probe_mutate(kraken_service *s, const kraken_mutation_request *r, void *u)
{
    (void)s;
    (void)r;
    probe *p = u;
    p->mutates++;
    if (p->when == FREE_FROM_MUTATE && !p->freed)
        probe_free_engine(p);
}

static void probe_interrupt(kraken_service *s, const kraken_mutation_request *r, void *u)
{
    (void)s;
    (void)r;
    probe *p = u;
    p->interrupts++;
    if ((p->when == FREE_FROM_INTERRUPT || p->when == FREE_FROM_TIMEOUT) && !p->freed)
        probe_free_engine(p);
}

static void probe_destroy(void *u)
{
    ((probe *)u)->destroys++;
}

static bool probe_freed(void *arg)
{
    return ((probe *)arg)->freed;
}

static bool probe_mutated(void *arg)
{
    return ((probe *)arg)->mutates > 0;
}

/* Free the engine from mutate, interrupt and start callbacks: nothing runs after, nothing leaks. */
START_TEST(engine_freed_from_callback)
{
    static const kraken_mutate to_off[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
    static const kraken_mutate to_on[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_ON"}};
    probe p = {.when = (free_from)_i};
    uint32_t timeout = p.when == FREE_FROM_TIMEOUT ? 2 : 60000; /* ms */
    kraken_mutation_decl off = KRAKEN_MUTATION_DECL_INIT(
        .id = "UKtoOFF", .mutates = to_off, .n_mutates = 1, .context = KRAKEN_CONTEXT_ALL,
        .timeout_ms = timeout, .fail_to = {"/PhysState", "PHYS_HANG"}, .cost = 1);
    kraken_mutation_decl on = KRAKEN_MUTATION_DECL_INIT(
        .id = "UKtoON", .mutates = to_on, .n_mutates = 1, .context = KRAKEN_CONTEXT_ALL,
        .timeout_ms = timeout, .fail_to = {"/PhysState", "PHYS_HANG"}, .cost = 1);
    kraken_engine_options o = test_options();
    o.no_sync_service = true;
    o.timeout_scale = 1.0;
    kraken_uuid_parse(&o.self_id, "c0ffee00-0000-4000-8000-0000000000aa");
    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    ck_assert_int_eq(kraken_engine_new(&p.engine, fx.base, store, &o), 0);
    fx.other = p.engine;
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = probe_start, .mutate = probe_mutate,
                                                     .interrupt = probe_interrupt);
    ck_assert_int_eq(kraken_engine_add_service(p.engine, "probe", "probe", &ops, &p,
                                               probe_destroy, &p.service),
                     0);
    ck_assert_int_eq(kraken_service_declare_mutation(p.service, &off), 0);
    ck_assert_int_eq(kraken_service_declare_mutation(p.service, &on), 0);
    kraken_uuid ids[3];
    for (unsigned i = 0; i < 3; i++) {
        kraken_node *n;
        ids[i] = node_id(i);
        ck_assert_int_eq(kraken_node_new(&n, &ids[i]), 0);
        ck_assert_int_eq(kraken_node_set_text(n, "/PhysState", "POWER_OFF"), 0);
        ck_assert_int_eq(kraken_store_create(store, n), 0);
        kraken_node_free(n);
    }
    if (p.when == FREE_FROM_INTERRUPT) {
        ck_assert(run_until(probe_mutated, &p, DEADLINE_MS));
        /* Another goal: every in-flight UKtoOFF is interrupted (the first frees the engine). */
        for (unsigned i = 0; i < 3; i++)
            ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &ids[i], "/PhysState",
                                                   "POWER_ON"),
                             0);
    }
    ck_assert(run_until(probe_freed, &p, DEADLINE_MS));
    int mutates = p.mutates, interrupts = p.interrupts, starts = p.starts;
    run_for(120); /* step timeouts, back-off, passes: none may touch the freed engine */
    ck_assert_int_eq(p.destroys, 1);
    ck_assert_int_eq(p.mutates, mutates);
    ck_assert_int_eq(p.interrupts, interrupts);
    ck_assert_int_eq(p.starts, starts);
    ck_assert_int_eq(p.when == FREE_FROM_INTERRUPT || p.when == FREE_FROM_TIMEOUT ? interrupts : 1,
                     1);
    /* The borrowed store outlives the engine, without its listener. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &ids[0], "/PhysState", "POWER_ON"),
                     0);
    kraken_store_free(store);
    kraken_service_remove(p.service); /* detached by the engine's free: only the handle goes */
    ck_assert_int_eq(p.destroys, 1);
}
END_TEST

/* A destroy hook that removes its own service while the engine is freed. */
typedef struct self_remover {
    kraken_engine *engine;
    kraken_service *service;
    int destroys;
} self_remover;

static void remove_self_on_destroy(void *u)
{
    self_remover *r = u;
    r->destroys++;
    kraken_service_remove(r->service);
}

START_TEST(destroy_hook_removes_own_service)
{
    kraken_engine_options o = test_options();
    kraken_uuid_parse(&o.self_id, "c0ffee00-0000-4000-8000-0000000000bb");
    kraken_engine *e;
    ck_assert_int_eq(kraken_engine_new(&e, fx.base, NULL, &o), 0);
    self_remover r[2] = {{e, NULL, 0}, {e, NULL, 0}};
    ck_assert_int_eq(kraken_engine_add_service(e, "a", "m", NULL, &r[0], remove_self_on_destroy,
                                               &r[0].service),
                     0);
    ck_assert_int_eq(kraken_engine_add_service(e, "b", "m", NULL, &r[1], remove_self_on_destroy,
                                               &r[1].service),
                     0);
    kraken_engine_free(e);
    ck_assert_int_eq(r[0].destroys, 1);
    ck_assert_int_eq(r[1].destroys, 1);
}
END_TEST

/* Every public entry point refuses NULL arguments with KRAKEN_EINVAL and changes nothing. */
START_TEST(null_arguments)
{
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    kraken_uuid id = add_node_with(0, "vbox", NULL, SELF);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    size_t services_before = kraken_mutation_set_count(kraken_engine_mutations(fx.engine));
    kraken_service *out = (kraken_service *)1;
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = NULL);
    ck_assert_int_eq(kraken_engine_add_service(NULL, "x", "m", &ops, NULL, NULL, &out),
                     KRAKEN_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, NULL, "m", &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, NULL));
    static const kraken_mutate m1[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "X", .mutates = m1, .n_mutates = 1,
                                                       .context = KRAKEN_CONTEXT_ALL, .cost = 1);
    ck_assert_int_eq(kraken_service_declare_mutation(NULL, &d), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_mutation_set_count(kraken_engine_mutations(fx.engine)),
                      services_before);
    ck_assert_int_eq(kraken_service_declare_discoverable(power, NULL, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_declare_discoverable(power, "", NULL, NULL), KRAKEN_EINVAL);
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
    ck_assert_int_eq(kraken_service_discover(NULL, &id, "/PhysState", &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover(power, NULL, "/PhysState", &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover(power, &id, NULL, &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover_text(power, NULL, "/PhysState", "POWER_ON"),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover_named(NULL, &id, "/PhysState", "X"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover_named(power, &id, "/PhysState", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_discover_named(power, &id, NULL, "X"), KRAKEN_EINVAL);
    ck_assert_str_eq(dsc(&id, "/PhysState"), "");
    ck_assert_int_eq(kraken_service_set_state(NULL, KRAKEN_SERVICE_RUN, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_fail(NULL, &id, 1, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_fail(power, NULL, 1, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_service_report_text(power, &id, 1, "/PhysState", NULL), KRAKEN_EINVAL);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(NULL, &id, &st), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_reset_node(NULL, &id), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_reset_node(fx.engine, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_graph_json(fx.engine, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_graph_json(fx.engine, &id, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_eq(kraken_engine_find_service(fx.engine, "power"), power);
    run_for(5);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_CONVERGED);
    ck_assert_uint_eq(fx.n_discoveries, 0);
}
END_TEST

/*
 * kraken_service_ops and kraken_mutation_decl carry a version first: 0 and versions newer than
 * the library are refused with one line naming the struct and the item, and nothing is added;
 * a caller's struct of exactly the v1 size in the library's size table is read, nothing past it.
 */
START_TEST(caller_struct_versions)
{
    kraken_mutation_set *set = kraken_engine_mutations(fx.engine);
    size_t n_mutations = kraken_mutation_set_count(set);
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = count_start, .stop = count_stop);
    ops.version = 0;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_engine_add_service: service 'extra': kraken_service_ops version 0 "
                     "(set .version = KRAKEN_SERVICE_OPS_VERSION; this libkraken knows 1..1)");
    ops.version = KRAKEN_SERVICE_OPS_VERSION + 1;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", &ops, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_engine_add_service: service 'extra': kraken_service_ops version 2 "
                     "(set .version = KRAKEN_SERVICE_OPS_VERSION; this libkraken knows 1..1)");
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, "extra"));
    ck_assert_str_eq(dsc(&fx.self, "/Services/extra/Module"), ""); /* nothing was published */

    /* a v1 caller's ops, in a heap block of exactly the v1 size (ASan/valgrind see any over-read) */
    size_t ops_v1 = KRAKEN__VERSION_SIZE(kraken_service_ops, config_changed);
    kraken_service_ops *old_ops = malloc(ops_v1);
    ck_assert_ptr_nonnull(old_ops);
    memcpy(old_ops, &ops, ops_v1);
    old_ops->version = 1;
    kraken_service *extra;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "extra", "mod", old_ops, NULL, NULL,
                                               &extra),
                     0);
    free(old_ops); /* copied at the call */
    ck_assert_ptr_eq(kraken_engine_find_service(fx.engine, "extra"), extra);

    static const kraken_mutate on[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "OFFtoON", KRAKEN_DECL_MUTATES(on),
                                                       .context = KRAKEN_CONTEXT_CHILD,
                                                       .timeout_ms = 4000);
    d.version = 0;
    ck_assert_int_eq(kraken_service_declare_mutation(extra, &d), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_service_declare_mutation: mutation 'OFFtoON': kraken_mutation_decl "
                     "version 0 (set .version = KRAKEN_MUTATION_DECL_VERSION; this libkraken "
                     "knows 1..1)");
    d.version = KRAKEN_MUTATION_DECL_VERSION + 1;
    ck_assert_int_eq(kraken_service_declare_mutation(extra, &d), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_service_declare_mutation: mutation 'OFFtoON': kraken_mutation_decl "
                     "version 2 (set .version = KRAKEN_MUTATION_DECL_VERSION; this libkraken "
                     "knows 1..1)");
    ck_assert_int_eq(kraken_mutation_set_add(set, "extra", &d), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_mutation_set_add: mutation 'OFFtoON': kraken_mutation_decl version 2 "
                     "(set .version = KRAKEN_MUTATION_DECL_VERSION; this libkraken knows 1..1)");
    ck_assert_uint_eq(kraken_mutation_set_count(set), n_mutations);

    /* a v1 caller's declaration, exactly the size the table gives version 1 */
    size_t decl_v1 = kraken__struct_size(&kraken__mutation_decl_abi, 1);
    ck_assert_uint_eq(decl_v1, sizeof(kraken_mutation_decl)); /* v1 is the newest today */
    kraken_mutation_decl *old_decl = malloc(decl_v1);
    ck_assert_ptr_nonnull(old_decl);
    memcpy(old_decl, &d, decl_v1);
    old_decl->version = 1;
    ck_assert_int_eq(kraken_service_declare_mutation(extra, old_decl), 0);
    free(old_decl);
    ck_assert_uint_eq(kraken_mutation_set_count(set), n_mutations + 1);
    kraken_mutation_info info;
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "extra", "OFFtoON", &info), 0);
    ck_assert_int_eq(info.context, KRAKEN_CONTEXT_CHILD);
    ck_assert_uint_eq(info.timeout_ms, 4000);
    ck_assert_uint_eq(info.cost, 1);
    kraken_mutation_info_clear(&info);
    kraken_service_remove(extra);
}
END_TEST

/* ---- clock, requests, overrides, busy (issue 7) ------------------------------------------ */

/* The OFFtoON MUTATE times of a node, in clock ms. */
static size_t mutate_times(const char *mutation, uint64_t *at, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < fx.n_log && k < max; i++)
        if (fx.log[i].kind == KRAKEN_MUTATION_MUTATE && !strcmp(fx.log[i].mutation, mutation))
            at[k++] = fx.log[i].at_ms;
    return k;
}

/* Back-off doubles exactly, stops at the cap, and the node is stuck after exactly max_failures. */
START_TEST(backoff_doubles_to_cap_then_stuck)
{
    kraken_engine_options o = test_options();
    o.backoff_initial_ms = 1000;
    o.backoff_max_ms = 3000; /* not a doubling of 1000: the cap itself must cut the delay */
    o.max_failures = 6;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_FAIL, 0, NULL), 0);
    /* After failure k the node backs off; one ms before the deadline nothing has happened. */
    for (unsigned k = 1; k <= 5; k++) {
        event_wait w = {KRAKEN_MUTATION_FAILED, "OFFtoON", k};
        ck_assert(run_until(event_seen, &w, DEADLINE_MS * 10));
        kraken_plan_status st;
        ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
        ck_assert_int_eq(st.state, KRAKEN_PLAN_BACKOFF);
        ck_assert_uint_eq(st.failures, k);
        kraken_plan_status_clear(&st);
        uint64_t delay = k == 1 ? 1000 : k == 2 ? 2000 : 3000;
        run_for(delay - 1);
        ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), k);
        run_for(1);
        ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), k + 1);
    }
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_FAILED, "OFFtoON", &id), 6);
    uint64_t at[8];
    ck_assert_uint_eq(mutate_times("OFFtoON", at, 8), 6);
    const uint64_t gaps[5] = {1000, 2000, 3000, 3000, 3000};
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(at[i + 1] - at[i], gaps[i]);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 6);
    ck_assert_str_eq(st.reason, "stuck after 6 failures in a row: power/OFFtoON failed: sim: "
                                "injected failure");
    kraken_plan_status_clear(&st);
    run_for(3600 * 1000); /* an hour: stuck means nothing more is tried */
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), 6);
}
END_TEST

/* A stuck node whose Dsc comes to match its Cfg (someone fixed it by hand) leaves STUCK. */
START_TEST(stuck_leaves_when_dsc_matches)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_FAIL, 0, NULL), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_STUCK));
    /* Powered on by hand: still steps to go, still stuck. */
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", "POWER_ON"), 0);
    run_for(10);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_STUCK);
    /* Booted by hand: Dsc matches Cfg. */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, PXE_STATE, "INIT"), 0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/RunState", "SYNC"), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(fx.engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 0);
    ck_assert_ptr_null(st.reason);
    kraken_plan_status_clear(&st);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_MUTATE, "NONEtoWAIT", &id), 0);
}
END_TEST

/* Module timers run on the engine's clock: in deadline order, only when it moves. */
static char timer_trace[64];
static void timer_mark(kraken_timer *t, void *arg)
{
    (void)t;
    size_t len = strlen(timer_trace);
    timer_trace[len] = *(const char *)arg;
    timer_trace[len + 1] = '\0';
}

static void timer_self_free(kraken_timer *t, void *arg)
{
    timer_mark(t, arg);
    kraken_timer_free(t);
}

START_TEST(module_timers_on_engine_clock)
{
    timer_trace[0] = '\0';
    kraken_timer *a, *b, *c, *d;
    ck_assert_int_eq(kraken_timer_new(&a, fx.engine, timer_mark, "a"), 0);
    ck_assert_int_eq(kraken_timer_new(&b, fx.engine, timer_mark, "b"), 0);
    ck_assert_int_eq(kraken_timer_new(&c, fx.engine, timer_self_free, "c"), 0);
    ck_assert_int_eq(kraken_timer_new(&d, fx.engine, timer_mark, "d"), 0);
    ck_assert_uint_eq(kraken_engine_now_ms(fx.engine), fx.now);
    ck_assert_int_eq(kraken_timer_arm(a, 300), 0);
    ck_assert_int_eq(kraken_timer_arm(b, 100), 0);
    ck_assert_int_eq(kraken_timer_arm(c, 100), 0); /* same deadline as b: armed later, fires later */
    ck_assert_int_eq(kraken_timer_arm(d, 200), 0);
    kraken_timer_cancel(d);
    ck_assert(!kraken_timer_armed(d));
    ck_assert(kraken_timer_armed(a));
    settle();
    ck_assert_str_eq(timer_trace, ""); /* the clock did not move: nothing is due */
    fx.now += 99;
    ck_assert_int_eq(kraken_engine_clock_moved(fx.engine), 0);
    settle();
    ck_assert_str_eq(timer_trace, ""); /* 1 ms before the deadline */
    fx.now += 1;
    settle();
    ck_assert_str_eq(timer_trace, ""); /* moved, but the engine was not told */
    ck_assert_int_eq(kraken_engine_clock_moved(fx.engine), 0);
    ck_assert_str_eq(timer_trace, ""); /* fired from the loop, never from the call */
    settle();
    ck_assert_str_eq(timer_trace, "bc");
    run_for(1000);
    ck_assert_str_eq(timer_trace, "bca");
    ck_assert(!kraken_timer_armed(a));
    /* A timer outlives its engine as a harmless handle. */
    ck_assert_int_eq(kraken_timer_arm(a, 5), 0);
    kraken_sim_free(fx.sim);
    fx.sim = NULL;
    kraken_subscription_remove(fx.sub);
    fx.sub = NULL;
    kraken_engine_free(fx.engine);
    fx.engine = NULL;
    ck_assert(!kraken_timer_armed(a));
    ck_assert_int_eq(kraken_timer_arm(a, 5), KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(), "timer_arm: the timer's engine is gone");
    kraken_timer_free(a);
    kraken_timer_free(b);
    kraken_timer_free(d);
    kraken_timer_free(NULL);
    ck_assert_int_eq(kraken_engine_clock_moved(NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_timer_new(&a, NULL, timer_mark, "a"), KRAKEN_EINVAL);
    ck_assert_ptr_null(a);
    uint64_t next;
    ck_assert_int_eq(kraken_engine_next_deadline(NULL, &next), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "engine_next_deadline: engine must not be NULL");
}
END_TEST

/* Simulator options: versioned like the engine's, bad input refused with the reason. */
START_TEST(sim_options_and_misuse)
{
    kraken_sim_options so;
    ck_assert_int_eq(kraken_sim_options_init(&so, KRAKEN_SIM_OPTIONS_VERSION), 0);
    ck_assert_uint_eq(so.version, KRAKEN_SIM_OPTIONS_VERSION);
    ck_assert(so.virtual_sync);
    ck_assert_int_eq(kraken_sim_options_init(&so, 2), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "sim_options_init: version 2, this library knows 1..1");
    ck_assert_int_eq(kraken_sim_options_init(NULL, 1), KRAKEN_EINVAL);
    kraken_sim_free(fx.sim);
    fx.sim = NULL;
    so.version = 0;
    kraken_sim *sim = (kraken_sim *)1;
    ck_assert_int_eq(kraken_sim_new(&sim, fx.engine, &so), KRAKEN_EINVAL);
    ck_assert_ptr_null(sim);
    ck_assert_str_eq(kraken_error_last(), "sim_new: options version 0, this library knows 1..1 "
                                          "(start from KRAKEN_SIM_OPTIONS_INIT)");
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, "power"));
    /* Power only. */
    ck_assert_int_eq(kraken_sim_options_init(&so, 1), 0);
    so.no_pxe = true;
    ck_assert_int_eq(kraken_sim_new(&fx.sim, fx.engine, &so), 0);
    ck_assert_ptr_nonnull(kraken_engine_find_service(fx.engine, "power"));
    ck_assert_ptr_null(kraken_engine_find_service(fx.engine, "pxe"));
    ck_assert_int_eq(kraken_sim_inject(fx.sim, NULL, "OFFtoON", KRAKEN_SIM_REPORT, 1, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "sim_inject: sim, mutation id (and, to report, a value) "
                                          "are required");
    ck_assert_int_eq(kraken_sim_inject(fx.sim, NULL, "OFFtoON", (kraken_sim_fault_kind)7, 1, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "sim_inject: bad fault kind 7");
    kraken_uuid id = add_node_with(0, "sim", NULL, SELF);
    set_cfg(&id, "/PhysState", "POWER_ON");
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON D:OFFtoON");
}
END_TEST

/* The simulator's late answers are refused by the engine; per-mutation delays. */
START_TEST(sim_late_answers_and_delays)
{
    kraken_uuid id = add_node(0);
    /* OFFtoON times out after 20 ms (10 s x 0.002); its answer comes at 30 ms, too late. */
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_LATE, 1, "30"), 0);
    ck_assert_int_eq(kraken_sim_set_delay(fx.sim, "NONEtoWAIT", 15), 0); /* its timeout: 20 ms */
    ck_assert_msg(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED), "%s", trace(&id));
    ck_assert_uint_eq(kraken_sim_refused(fx.sim), 1);
    ck_assert_str_eq(trace(&id), "M:UKtoOFF D:UKtoOFF M:OFFtoON I:OFFtoON M:HANGtoOFF D:HANGtoOFF "
                                 "M:OFFtoON D:OFFtoON M:NONEtoWAIT D:NONEtoWAIT M:WAITtoINIT "
                                 "D:WAITtoINIT M:INITtoSYNC D:INITtoSYNC");
    uint64_t mutate_at = 0, done_at = 0;
    for (size_t i = 0; i < fx.n_log; i++) {
        if (strcmp(fx.log[i].mutation, "NONEtoWAIT"))
            continue;
        if (fx.log[i].kind == KRAKEN_MUTATION_MUTATE)
            mutate_at = fx.log[i].at_ms;
        else if (fx.log[i].kind == KRAKEN_MUTATION_DONE)
            done_at = fx.log[i].at_ms;
    }
    ck_assert_uint_eq(done_at - mutate_at, 15);
    ck_assert_int_eq(kraken_sim_set_delay(fx.sim, "NOPE", 1), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(), "sim_set_delay: the simulator has no mutation 'NOPE'");
    ck_assert_int_eq(kraken_sim_inject(fx.sim, NULL, "OFFtoON", KRAKEN_SIM_LATE, 1, "soon"),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "sim_inject: late delay 'soon' is not a number of ms");
}
END_TEST

/* A harness (or a garbage collector) may free the engine before the simulator. */
START_TEST(sim_outlives_engine)
{
    kraken_engine_options o = test_options();
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 100;
    restart(&o, &so);
    kraken_uuid id = add_node(0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "UKtoOFF", 1));
    ck_assert_uint_eq(kraken_sim_pending(fx.sim), 1);
    kraken_subscription_remove(fx.sub);
    fx.sub = NULL;
    kraken_engine_free(fx.engine);
    fx.engine = NULL;
    (void)id;
    run_for(1000); /* the pending answer's timer went with the engine */
    kraken_sim_free(fx.sim); /* frees its detached service handles and timers */
    fx.sim = NULL;
}
END_TEST

/* A module that keeps its requests and answers when the test says. */
typedef struct lab {
    kraken_service *service;
    kraken_mutation_request last;     /* id, names; cfg/dsc not kept */
    uint64_t ids[8];
    size_t n_mutates, n_interrupts;
    uint64_t interrupted_id;
    char mutates_text[128];
    char cfg_arch[32], dsc_arch[32], dsc_name_after_write[32];
    bool copies;                      /* cfg/dsc were not the stored nodes */
} lab;

static lab the_lab;

static void lab_mutate(kraken_service *s, const kraken_mutation_request *r, void *u)
{
    (void)s;
    lab *l = u;
    if (l->n_mutates < 8)
        l->ids[l->n_mutates] = r->id;
    l->n_mutates++;
    l->last = *r;
    l->last.cfg = l->last.dsc = NULL;
    snprintf(l->mutates_text, sizeof l->mutates_text, "%zu %s '%s'->'%s'", r->n_mutates,
             r->mutates[0].url, r->mutates[0].from, r->mutates[0].to);
    l->copies = r->cfg != kraken__store_peek(fx.store, KRAKEN_CFG, &r->node_id) &&
                r->dsc != kraken__store_peek(fx.store, KRAKEN_DSC, &r->node_id);
    char *v = NULL;
    ck_assert_int_eq(kraken_node_get_text(r->cfg, "/Arch", &v), 0);
    snprintf(l->cfg_arch, sizeof l->cfg_arch, "%s", v);
    free(v);
    ck_assert_int_eq(kraken_node_get_text(r->dsc, "/Arch", &v), 0);
    snprintf(l->dsc_arch, sizeof l->dsc_arch, "%s", v);
    free(v);
    /* Writing to the store from the callback leaves the request's copies intact. */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &r->node_id, "/Nodename", "w"), 0);
    ck_assert_int_eq(kraken_node_get_text(r->dsc, "/Nodename", &v), 0);
    snprintf(l->dsc_name_after_write, sizeof l->dsc_name_after_write, "%s", v);
    free(v);
}

static void lab_interrupt(kraken_service *s, const kraken_mutation_request *r, void *u)
{
    (void)s;
    lab *l = u;
    l->n_interrupts++;
    l->interrupted_id = r->id;
}

static void lab_start(kraken_service *s, void *u)
{
    (void)u;
    kraken_service_set_state(s, KRAKEN_SERVICE_RUN, NULL);
}

static bool lab_mutated(void *arg)
{
    return the_lab.n_mutates >= *(const size_t *)arg;
}

/* "lab" owns /Arch "" -> amd64 (no declare_discoverable: declaring the mutation is enough). */
static kraken_uuid lab_setup(uint32_t timeout_ms)
{
    static const kraken_mutate set_arch[] = {{"/arch", NULL, "amd64"}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "SETarch",
                                                       KRAKEN_DECL_MUTATES(set_arch),
                                                       .context = KRAKEN_CONTEXT_ALL,
                                                       .timeout_ms = timeout_ms);
    memset(&the_lab, 0, sizeof the_lab);
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = lab_start, .mutate = lab_mutate,
                                                     .interrupt = lab_interrupt);
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "lab", "lab", &ops, &the_lab, NULL,
                                               &the_lab.service),
                     0);
    ck_assert_int_eq(kraken_service_declare_mutation(the_lab.service, &d), 0);
    kraken_uuid id = add_node_with(0, "vbox", NULL, SELF);
    set_cfg(&id, "/Arch", "amd64");
    return id;
}

/* Requests carry an id, the URL list and copies; a late answer is refused and changes nothing. */
START_TEST(request_ids_and_late_answers)
{
    kraken_engine_options o = test_options();
    o.timeout_scale = 1.0;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_uuid id = lab_setup(1000);
    size_t want = 1;
    ck_assert(run_until(lab_mutated, &want, DEADLINE_MS));
    ck_assert_uint_gt(the_lab.ids[0], 0);
    ck_assert_str_eq(the_lab.last.service_id, "lab");
    ck_assert_str_eq(the_lab.mutates_text, "1 /Arch ''->'amd64'");
    ck_assert(the_lab.copies);
    ck_assert_str_eq(the_lab.cfg_arch, "amd64");
    ck_assert_str_eq(the_lab.dsc_arch, "");
    ck_assert_str_eq(the_lab.dsc_name_after_write, "");
    /* No answer: the step times out after exactly 1000 ms, the interrupt names the request. */
    uint64_t dispatched_at = fx.now;
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "SETarch", 1));
    ck_assert_uint_eq(fx.now - dispatched_at, 1000);
    ck_assert_uint_eq(the_lab.interrupted_id, the_lab.ids[0]);
    want = 2;
    ck_assert(run_until(lab_mutated, &want, DEADLINE_MS));
    uint64_t old = the_lab.ids[0], cur = the_lab.ids[1];
    ck_assert_uint_gt(cur, old);
    /* The answer to the first dispatch arrives now: refused, nothing changes. */
    size_t discoveries = fx.n_discoveries;
    ck_assert_int_eq(kraken_service_report_text(the_lab.service, &id, old, "/Arch", "amd64"),
                     KRAKEN_ESTATE);
    char want_msg[256];
    snprintf(want_msg, sizeof want_msg,
             "service_report_text: request %llu of service 'lab' on node "
             "00000000-0000-4000-8000-000000000001 is not in flight (a late answer? request %llu "
             "lab/SETarch is)",
             (unsigned long long)old, (unsigned long long)cur);
    ck_assert_str_eq(kraken_error_last(), want_msg);
    ck_assert_int_eq(kraken_service_fail(the_lab.service, &id, old, "late"), KRAKEN_ESTATE);
    settle();
    ck_assert_str_eq(dsc(&id, "/Arch"), "");
    ck_assert_uint_eq(fx.n_discoveries, discoveries);
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_FAILED, NULL, NULL), 0);
    /* The answer to the step in flight lands. */
    ck_assert_int_eq(kraken_service_report_text(the_lab.service, &id, cur, "/Arch", "amd64"), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/Arch"), "amd64");
    /* Answered: the same id is late now too. */
    ck_assert_int_eq(kraken_service_fail(the_lab.service, &id, cur, "late"), KRAKEN_ESTATE);
    /* Declaring the mutation made /Arch the service's to discover (and the parent's to own). */
    char **urls = NULL;
    size_t n = 0;
    ck_assert_int_eq(kraken__engine_discoverable_urls(fx.engine, &urls, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= !strcmp(urls[i], "/Arch");
        free(urls[i]);
    }
    free(urls);
    ck_assert(found);
}
END_TEST

/* Disable and timeout overrides, set before the mutation is declared; listing and lookup. */
START_TEST(mutation_overrides)
{
    kraken_engine_options o = test_options();
    o.timeout_scale = 1.0;
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    restart(&o, &so);
    kraken_sim_free(fx.sim); /* declared again below, after the overrides */
    fx.sim = NULL;
    ck_assert_int_eq(kraken_engine_mutation_disable(fx.engine, "power", "OFFtoON", true), 0);
    ck_assert_int_eq(kraken_engine_mutation_set_timeout(fx.engine, "power", "UKtoOFF", 2500), 0);
    ck_assert_int_eq(kraken_sim_new(&fx.sim, fx.engine, &so), 0);
    kraken_mutation_info info;
    kraken_mutation_set *set = kraken_engine_mutations(fx.engine);
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "OFFtoON", &info), 0);
    ck_assert(info.disabled);
    ck_assert_str_eq(info.service_id, "power");
    ck_assert_str_eq(info.mutation_id, "OFFtoON");
    ck_assert_uint_eq(info.n_mutates, 1);
    ck_assert_str_eq(info.mutates[0].url, "/PhysState");
    ck_assert_str_eq(info.mutates[0].from, "POWER_OFF");
    ck_assert_str_eq(info.mutates[0].to, "POWER_ON");
    ck_assert_uint_eq(info.n_requires, 1);
    ck_assert_str_eq(info.requires[0].url, "/Platform");
    ck_assert_str_eq(info.requires[0].value, "sim");
    ck_assert_str_eq(info.fail_to.url, "/PhysState");
    ck_assert_str_eq(info.fail_to.value, "PHYS_HANG");
    ck_assert_int_eq(info.context, KRAKEN_CONTEXT_CHILD);
    ck_assert_uint_eq(info.timeout_ms, 10000);
    kraken_mutation_info_clear(&info);
    ck_assert_ptr_null(info.service_id);
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "UKtoOFF", &info), 0);
    ck_assert(!info.disabled);
    ck_assert_uint_eq(info.timeout_ms, 2500);
    ck_assert_uint_eq(info.declared_timeout_ms, 10000);
    ck_assert_str_eq(info.mutates[0].from, "PHYS_UNKNOWN");
    kraken_mutation_info_clear(&info);
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "NOPE", &info), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(), "mutation_set_lookup: no mutation power/NOPE");
    kraken_mutation_info *all;
    size_t n;
    ck_assert_int_eq(kraken_mutation_set_list(set, &all, &n), 0);
    ck_assert_uint_eq(n, 7);
    char names[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s/%s", i ? " " : "",
                 all[i].service_id, all[i].mutation_id);
    ck_assert_str_eq(names, "power/HANGtoOFF power/OFFtoON power/ONtoOFF power/UKtoOFF "
                            "pxe/NONEtoWAIT pxe/WAITtoINIT sync/INITtoSYNC");
    kraken_mutation_infos_free(all, n);
    /* UKtoOFF hangs: it times out after 2500 ms, not 10 s. */
    ck_assert_int_eq(kraken_sim_inject(fx.sim, NULL, "UKtoOFF", KRAKEN_SIM_HANG, 1, NULL), 0);
    kraken_uuid off = add_node_with(1, "sim", NULL, SELF);
    set_cfg(&off, "/PhysState", "POWER_OFF");
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "UKtoOFF", 1));
    uint64_t t0 = fx.now;
    ck_assert(wait_event(KRAKEN_MUTATION_INTERRUPT, "UKtoOFF", 1));
    ck_assert_uint_eq(fx.now - t0, 2500);
    /* OFFtoON disabled: no way to power a node on. */
    kraken_uuid id = add_node(0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), 0);
    /* Enabled again: the node replans at once and converges. */
    ck_assert_int_eq(kraken_engine_mutation_disable(fx.engine, "power", "OFFtoON", false), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_uint_eq(kraken_sim_dispatched(fx.sim, "OFFtoON"), 1);
    /* Disabled while one of its steps is in flight: the step is interrupted, no way is left. */
    ck_assert_int_eq(kraken_sim_inject(fx.sim, NULL, "ONtoOFF", KRAKEN_SIM_HANG, 1, NULL), 0);
    set_cfg(&id, "/RunState", "UNKNOWN");
    set_cfg(&id, "/PhysState", "POWER_OFF");
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "ONtoOFF", 1));
    ck_assert_int_eq(kraken_engine_mutation_disable(fx.engine, "power", "ONtoOFF", true), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_NO_PATH));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_INTERRUPT, "ONtoOFF", &id), 1);
    ck_assert_uint_eq(kraken_sim_interrupted(fx.sim), 2); /* the first: UKtoOFF's timeout */
    /* Misuse. */
    ck_assert_int_eq(kraken_engine_mutation_disable(NULL, "power", "OFFtoON", true), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_mutation_disable(fx.engine, "", "OFFtoON", true),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "engine_mutation_disable: mutation_set_disable: set, "
                                          "service id and mutation id are required");
    ck_assert_int_eq(kraken_engine_mutation_set_timeout(fx.engine, "power", NULL, 5),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_mutation_set_list(NULL, &all, &n), KRAKEN_EINVAL);
    kraken_mutation_info_clear(NULL);
    kraken_mutation_infos_free(NULL, 0);
}
END_TEST

/* /Busy = BUSY (Cfg or Dsc): no plan, no mutation, the step in flight is interrupted. */
START_TEST(busy_nodes)
{
    kraken_uuid id = add_node(0);
    ck_assert_int_eq(kraken_sim_inject(fx.sim, &id, "OFFtoON", KRAKEN_SIM_HANG, 1, NULL), 0);
    ck_assert(wait_event(KRAKEN_MUTATION_MUTATE, "OFFtoON", 1));
    /* A scheduler takes the node (Dsc). */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/Busy", "BUSY"), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_BUSY));
    ck_assert_uint_eq(count_events(KRAKEN_MUTATION_INTERRUPT, "OFFtoON", &id), 1);
    ck_assert_str_eq(kraken_plan_state_name(KRAKEN_PLAN_BUSY), "BUSY");
    ck_assert_ptr_null(kraken_plan_state_name((kraken_plan_state)KRAKEN_PLAN_STATE_COUNT));
    ck_assert_str_eq(status_steps(&id, NULL), "");
    size_t events = fx.n_log;
    run_for(3600 * 1000); /* no timeout, no retry, nothing */
    ck_assert_uint_eq(fx.n_log, events);
    ck_assert_int_eq(node_state(&id), KRAKEN_PLAN_BUSY);
    /* Handed back: the engine takes over again. */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/Busy", "FREE"), 0);
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(dsc(&id, "/RunState"), "SYNC");
    /* Busy in Cfg from the start: nothing is ever dispatched for it. */
    kraken_uuid id2 = node_id(1);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id2), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Busy", "BUSY"), 0);
    ck_assert_int_eq(kraken_store_create(fx.store, n), 0);
    kraken_node_free(n);
    ck_assert(wait_state(&id2, 1, KRAKEN_PLAN_BUSY));
    run_for(1000);
    ck_assert_str_eq(trace(&id2), "");
    set_cfg(&id2, "/Busy", "FREE");
    ck_assert(wait_state(&id2, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_str_eq(trace(&id2), BOOT_TRACE);
}
END_TEST

/* Stale facts are recorded for every mutator URL, also past the 63rd of the set. */
START_TEST(stale_facts_past_64_urls)
{
    enum { N = 70 };
    static kraken_field_def defs[N];
    static char names[N][8];
    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "f%02u", i);
        defs[i] = (kraken_field_def)KRAKEN_FIELD(names[i], i + 1, KRAKEN_T_STRING);
    }
    int rc = kraken_schema_register("EngineTest.Wide", defs, N, NULL);
    ck_assert(rc == 0 || rc == KRAKEN_EEXISTS);
    kraken_error_clear();
    kraken_service *wide;
    ck_assert_int_eq(kraken_engine_add_service(fx.engine, "wide", "wide", NULL, NULL, NULL, &wide),
                     0);
    static const kraken_fact powered[] = {{"/PhysState", "POWER_ON"}};
    char urls[N][64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(urls[i], sizeof urls[i], "type.googleapis.com/EngineTest.Wide/F%02u", i);
        kraken_mutate m[] = {{urls[i], NULL, "x"}};
        char mid[16];
        snprintf(mid, sizeof mid, "SET%02u", i);
        kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = mid, KRAKEN_DECL_MUTATES(m),
                                                           KRAKEN_DECL_REQUIRES(powered),
                                                           .context = KRAKEN_CONTEXT_ALL);
        ck_assert_int_eq(kraken_service_declare_mutation(wide, &d), 0);
    }
    /* A node that has it all: converged. */
    kraken_uuid id = add_node_with(0, "sim", NULL, SELF);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/PhysState", "POWER_ON"), 0);
    for (unsigned i = 0; i < N; i++) {
        set_cfg(&id, urls[i], "x");
        ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, urls[i], "x"), 0);
    }
    ck_assert(wait_state(&id, 1, KRAKEN_PLAN_CONVERGED));
    ck_assert_uint_eq(fx.n_engine_discoveries, 0);
    /* It hangs: none of the 70 facts holds any more, and Dsc says so for each. */
    kraken_service *power = kraken_engine_find_service(fx.engine, "power");
    ck_assert_int_eq(kraken_service_discover_text(power, &id, "/PhysState", "PHYS_HANG"), 0);
    run_for(1);
    ck_assert_uint_eq(fx.n_engine_discoveries, N);
    for (unsigned i = 0; i < N; i++)
        ck_assert_str_eq(dsc(&id, urls[i]), "");
    kraken_service_remove(wide); /* the handle asked for is ours to release */
}
END_TEST

/* The diff of the URLs the planner compares. */
START_TEST(planner_diff)
{
    kraken_uuid id = add_node_with(0, "sim", "SYNC", SELF);
    set_cfg(&id, "/Arch", "amd64"); /* not a mutator URL: not in the diff */
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/RunState", "INIT"), 0);
    kraken_change *ch;
    size_t n;
    ck_assert_int_eq(kraken_engine_diff(fx.engine, &id, &ch, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ch[0].url, "/RunState");
    char *old = NULL, *new = NULL;
    ck_assert_int_eq(kraken_value_format(&ch[0].old_value, &old), 0);
    ck_assert_int_eq(kraken_value_format(&ch[0].new_value, &new), 0);
    ck_assert_str_eq(old, "INIT");
    ck_assert_str_eq(new, "SYNC");
    free(old);
    free(new);
    kraken_changes_free(ch, n);
    ck_assert_int_eq(kraken_store_set_text(fx.store, KRAKEN_DSC, &id, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_engine_diff(fx.engine, &id, &ch, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ch);
    kraken_uuid nobody = node_id(77);
    ck_assert_int_eq(kraken_engine_diff(fx.engine, &nobody, &ch, &n), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(),
                     "engine_diff: node 00000000-0000-4000-8000-00000000004e not found");
    ck_assert_int_eq(kraken_engine_diff(fx.engine, &id, NULL, &n), KRAKEN_EINVAL);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *chains = tcase_create("chains");
    tcase_add_checked_fixture(chains, setup, teardown);
    tcase_add_test(chains, cold_boot_to_sync);
    tcase_add_test(chains, power_off_forgets_state);
    tcase_add_test(chains, converged_dispatches_nothing);
    tcase_add_test(chains, restart_keeps_running_nodes);
    tcase_add_test(chains, hang_recovery);
    tcase_add_test(chains, hang_loop_gets_stuck);
    tcase_add_test(chains, failure_backoff_and_stuck);
    tcase_add_test(chains, stuck_cleared_by_cfg_change);
    tcase_add_test(chains, contradicting_report_is_a_failure);
    tcase_add_test(chains, cfg_change_mid_chain);
    tcase_add_test(chains, delete_mid_chain);
    tcase_add_test(chains, freeze_and_thaw);
    tcase_add_test(chains, no_path_then_fixed);
    tcase_add_test(chains, passive_follows_discoveries);
    tcase_add_test(chains, unsolicited_hang_recovers);
    tcase_add_test(chains, recreate_mid_chain);
    tcase_add_test(chains, no_path_retry_timer);
    tcase_add_test(chains, knowledge_after_set_change);
    tcase_add_test(chains, interrupt_callback_replaces_node);
    tcase_add_test(chains, interrupt_callback_recreates_node);
    tcase_add_test(chains, cfg_change_clears_failures);
    tcase_add_test(chains, backoff_doubles_to_cap_then_stuck);
    tcase_add_test(chains, stuck_leaves_when_dsc_matches);
    tcase_add_test(chains, busy_nodes);
    tcase_add_test(chains, stale_facts_past_64_urls);
    suite_add_tcase(s, chains);

    TCase *svc = tcase_create("services");
    tcase_add_checked_fixture(svc, setup, teardown);
    tcase_add_test(svc, service_start_timeout);
    tcase_add_test(svc, service_lifecycle);
    tcase_add_test(svc, remove_service_mid_step);
    tcase_add_test(svc, discovery_checks);
    tcase_add_test(svc, service_fail_checks);
    tcase_add_test(svc, config_changed_delivered);
    tcase_add_test(svc, own_state_only_on_self);
    tcase_add_loop_test(svc, engine_freed_from_callback, FREE_FROM_MUTATE, FREE_FROM_START + 1);
    tcase_add_test(svc, destroy_hook_removes_own_service);
    tcase_add_test(svc, module_timers_on_engine_clock);
    tcase_add_test(svc, sim_options_and_misuse);
    tcase_add_test(svc, sim_outlives_engine);
    tcase_add_test(svc, sim_late_answers_and_delays);
    tcase_add_test(svc, request_ids_and_late_answers);
    tcase_add_test(svc, mutation_overrides);
    tcase_add_test(svc, planner_diff);
    suite_add_tcase(s, svc);

    TCase *misc = tcase_create("events_scale_api");
    tcase_add_checked_fixture(misc, setup, teardown);
    tcase_set_timeout(misc, 60);
    tcase_add_test(misc, event_order_per_step);
    tcase_add_test(misc, thousand_nodes_converge);
    tcase_add_test(misc, bad_arguments);
    tcase_add_test(misc, null_arguments);
    tcase_add_test(misc, caller_struct_versions);
    tcase_add_test(misc, graph_json);
    tcase_add_test(misc, borrowed_store_without_sync);
    suite_add_tcase(s, misc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
