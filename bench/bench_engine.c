/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_engine: the state engine end to end (issue "engine").
 *
 *   bench_engine [N ...]         (node counts, default: 10000 100000)
 *
 * N simulated nodes (Cfg: RunState SYNC, Platform sim, ParentId = this
 * instance) go from cold (Dsc all unknown) to Dsc RunState SYNC through the
 * SPEC 4.3 plan UKtoOFF, OFFtoON, NONEtoWAIT, WAITtoINIT, INITtoSYNC, driven
 * by a kraken_engine on a libevent event_base. One in-process module provides
 * the services "power" and "pxe"; each MUTATE is answered at once with
 * kraken_service_discover() of the step's "to" values, either from inside the
 * mutate callback ("immediate") or from a zero-delay event on the next loop
 * turn ("next-turn"). INITtoSYNC belongs to the engine's built-in "sync"
 * service and is completed, as the sync protocol would when the child phones
 * home, by a discovery of RunState SYNC: the bench's bus subscriber sees the
 * MUTATE event for INITtoSYNC and reports it through that service (so this
 * step always completes on a later loop turn). The module does no work of its
 * own, so the wall time is the engine's time (the discover calls the module
 * makes are engine work).
 *
 * Each (N, mode) runs in a child process, so ru_maxrss is that run's peak.
 * Bus subscribers: one for STATE_MUTATION events with a queue large enough
 * never to drop (it completes INITtoSYNC, see above); one for SYNC events that
 * sees two marker events published before and after the run, whose sequence
 * numbers give the number of events published; and, in the "+watcher" rows,
 * one for every event with a queue large enough never to drop, as a REST event
 * stream or websocket client that keeps up would be. Public API only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <kraken/kraken.h>

#include "benchutil.h"

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* ---- the instant module ------------------------------------------------ */

#define PXE_STATE "type.googleapis.com/PXE.Client/State"

/* What each mutation is answered with: up to two (url, enum number) discoveries. */
static const struct answer {
    const char *mutation;
    struct {
        const char *url;
        int64_t value;
    } finds[2];
} answers[] = {
    {"UKtoOFF", {{"/PhysState", KRAKEN_PHYS_POWER_OFF}}},
    {"OFFtoON", {{"/PhysState", KRAKEN_PHYS_POWER_ON}}},
    {"ONtoOFF", {{"/PhysState", KRAKEN_PHYS_POWER_OFF}}},
    {"HANGtoOFF", {{"/PhysState", KRAKEN_PHYS_POWER_OFF}}},
    {"NONEtoWAIT", {{PXE_STATE, 1}}},                         /* WAIT */
    {"WAITtoINIT", {{PXE_STATE, 2}, {"/RunState", KRAKEN_RUN_INIT}}}, /* INIT */
};

struct pending {
    kraken_service *service;
    kraken_uuid node;
    const struct answer *answer;
};

struct bench_run {
    struct event_base *base;
    kraken_engine *engine;
    kraken_service *sync;    /* the engine's built-in "sync" service */
    size_t n;
    bool next_turn;          /* answer on the next loop turn instead of in the callback */
    bool watch_all;          /* subscribe to every event as well */
    struct event *answer_ev; /* zero-delay event draining @c queue */
    struct pending *queue, *spare;
    size_t n_queue, cap_queue, cap_spare;
    size_t synced;           /* Dsc /RunState became SYNC */
    uint64_t mutates, interrupts, starts, discover_errors;
    uint64_t events;         /* delivered to the all-events subscriber */
    uint64_t marker_seq[2];  /* bus seq of the start and end markers */
    uint64_t by_type[8];
};

static const struct answer *find_answer(const char *mutation_id)
{
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++)
        if (strcmp(answers[i].mutation, mutation_id) == 0)
            return &answers[i];
    return NULL;
}

static void answer(struct bench_run *run, kraken_service *service, const kraken_uuid *node,
                   const struct answer *a)
{
    for (int i = 0; i < 2 && a->finds[i].url; i++) {
        kraken_value v = kraken_value_int(KRAKEN_T_ENUM, a->finds[i].value);
        int rc = kraken_service_discover(service, node, a->finds[i].url, &v);
        if (rc < 0 && run->discover_errors++ == 0)
            fprintf(stderr, "discover %s failed: %s (%s)\n", a->finds[i].url,
                    kraken_err_name(rc), kraken_error_last());
    }
}

static void drain_queue(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bench_run *run = arg;
    /* Swap buffers: answers may (in principle) lead to new MUTATE calls. */
    struct pending *q = run->queue;
    size_t n = run->n_queue;
    run->queue = run->spare;
    run->spare = q;
    size_t cap = run->cap_queue;
    run->cap_queue = run->cap_spare;
    run->cap_spare = cap;
    run->n_queue = 0;
    for (size_t i = 0; i < n; i++)
        answer(run, q[i].service, &q[i].node, q[i].answer);
}

static void enqueue(struct bench_run *run, kraken_service *service, const kraken_uuid *node,
                    const struct answer *a)
{
    if (run->n_queue == run->cap_queue) {
        size_t cap = run->cap_queue ? run->cap_queue * 2 : 1024;
        struct pending *q = realloc(run->queue, cap * sizeof *q);
        if (!q) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        run->queue = q;
        run->cap_queue = cap;
    }
    run->queue[run->n_queue++] = (struct pending){service, *node, a};
    if (run->n_queue == 1) {
        static const struct timeval zero = {0, 0};
        event_add(run->answer_ev, &zero);
    }
}

static void svc_start(kraken_service *service, void *userdata)
{
    struct bench_run *run = userdata;
    run->starts++;
    bench_die_on(kraken_service_set_state(service, KRAKEN_SERVICE_RUN, NULL), "set_state RUN");
}

static void svc_stop(kraken_service *service, void *userdata)
{
    (void)userdata;
    kraken_service_set_state(service, KRAKEN_SERVICE_STOP, NULL);
}

static void svc_mutate(kraken_service *service, const kraken_mutation_request *req,
                       void *userdata)
{
    struct bench_run *run = userdata;
    run->mutates++;
    const struct answer *a = find_answer(req->mutation_id);
    if (!a) {
        kraken_service_fail(service, &req->node_id, req->id, "bench: unknown mutation");
        return;
    }
    if (run->next_turn)
        enqueue(run, service, &req->node_id, a);
    else
        answer(run, service, &req->node_id, a);
}

static void svc_interrupt(kraken_service *service, const kraken_mutation_request *req,
                          void *userdata)
{
    (void)service;
    (void)req;
    struct bench_run *run = userdata;
    run->interrupts++;
}

static const kraken_service_ops bench_ops = KRAKEN_SERVICE_OPS_INIT(
    .start = svc_start, .stop = svc_stop, .mutate = svc_mutate, .interrupt = svc_interrupt);

static kraken_service *add_service(struct bench_run *run, const char *id)
{
    kraken_service *svc;
    bench_die_on(kraken_engine_add_service(run->engine, id, "bench", &bench_ops, run, NULL, &svc),
                 id);
    return svc;
}

static void declare(kraken_service *svc, const char *id, const kraken_mutate *mutates,
                    size_t n_mutates, const kraken_fact *req, uint32_t timeout_ms,
                    bool fail_to_hang)
{
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = id);
    d.mutates = mutates;
    d.n_mutates = n_mutates;
    d.requires = req;
    d.n_requires = 1;
    d.context = KRAKEN_CONTEXT_CHILD; /* this instance is every node's parent */
    d.timeout_ms = timeout_ms;
    if (fail_to_hang)
        d.fail_to = (kraken_fact){"/PhysState", "PHYS_HANG"};
    bench_die_on(kraken_service_declare_mutation(svc, &d), id);
}

/* The SPEC 4.3 set S; INITtoSYNC is the engine's own (built-in "sync" service). */
static void setup_services(struct bench_run *run)
{
    static const kraken_fact sim[] = {{"/Platform", "sim"}};
    static const kraken_fact on[] = {{"/PhysState", "POWER_ON"}};
    static const kraken_mutate uk_off[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
    static const kraken_mutate off_on[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
    static const kraken_mutate on_off[] = {{"/PhysState", "POWER_ON", "POWER_OFF"}};
    static const kraken_mutate hang_off[] = {{"/PhysState", "PHYS_HANG", "POWER_OFF"}};
    static const kraken_mutate none_wait[] = {{PXE_STATE, "NONE", "WAIT"}};
    static const kraken_mutate wait_init[] = {{PXE_STATE, "WAIT", "INIT"},
                                              {"/RunState", "UNKNOWN", "INIT"}};

    kraken_service *power = add_service(run, "power");
    bench_die_on(kraken_service_declare_discoverable(power, "/PhysState", NULL, NULL),
                 "discoverable");
    declare(power, "UKtoOFF", uk_off, 1, sim, 10000, true);
    declare(power, "OFFtoON", off_on, 1, sim, 10000, true);
    declare(power, "ONtoOFF", on_off, 1, sim, 10000, true);
    declare(power, "HANGtoOFF", hang_off, 1, sim, 10000, true);

    kraken_service *pxe = add_service(run, "pxe");
    bench_die_on(kraken_service_declare_discoverable(pxe, PXE_STATE, NULL, NULL), "discoverable");
    bench_die_on(kraken_service_declare_discoverable(pxe, "/RunState", NULL, NULL), "discoverable");
    declare(pxe, "NONEtoWAIT", none_wait, 1, on, 10000, false);
    declare(pxe, "WAITtoINIT", wait_init, 2, on, 90000, false);

    run->sync = kraken_engine_find_service(run->engine, "sync");
    if (!run->sync) {
        fprintf(stderr, "FAILED: the engine has no built-in \"sync\" service\n");
        exit(1);
    }
}

/* ---- completion tracking ----------------------------------------------- */

static void on_store_change(const kraken_state_change *c, void *userdata)
{
    struct bench_run *run = userdata;
    if (c->kind == KRAKEN_CHANGE_UPDATE && c->url && strcmp(c->url, "/RunState") == 0 &&
        c->new_value && c->new_value->type == KRAKEN_T_ENUM &&
        c->new_value->v.i == KRAKEN_RUN_SYNC)
        run->synced++;
}

#define MARKER "bench marker"

/* The SYNC subscriber notes the markers' sequence numbers. */
static void on_sync_event(const kraken_event *ev, void *userdata)
{
    struct bench_run *run = userdata;
    if (ev->message && strcmp(ev->message, MARKER) == 0 && ev->kind >= 0 && ev->kind < 2)
        run->marker_seq[ev->kind] = ev->seq;
}

/* The all-events subscriber ("+watcher" rows) counts by type. */
static void on_event(const kraken_event *ev, void *userdata)
{
    struct bench_run *run = userdata;
    if (ev->type == KRAKEN_EVENT_SYNC && ev->message && strcmp(ev->message, MARKER) == 0)
        return;
    run->events++;
    if ((unsigned)ev->type < 8)
        run->by_type[ev->type]++;
}

/* The STATE_MUTATION subscriber: the child "phones home" when INITtoSYNC is
 * dispatched, so its RunState SYNC reaches us as a discovery. */
static void on_mutation_event(const kraken_event *ev, void *userdata)
{
    struct bench_run *run = userdata;
    if (ev->kind == KRAKEN_MUTATION_MUTATE && ev->mutation_id &&
        strcmp(ev->mutation_id, "INITtoSYNC") == 0) {
        kraken_value v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC);
        int rc = kraken_service_discover(run->sync, &ev->node_id, "/RunState", &v);
        if (rc < 0 && run->discover_errors++ == 0)
            fprintf(stderr, "discover /RunState SYNC failed: %s (%s)\n", kraken_err_name(rc),
                    kraken_error_last());
    }
}

static void publish_marker(struct bench_run *run, int which)
{
    kraken_event ev = {0};
    ev.type = KRAKEN_EVENT_SYNC;
    ev.kind = which;
    ev.message = MARKER;
    bench_die_on(kraken_bus_publish(kraken_engine_bus(run->engine), &ev), "publish marker");
    kraken_bus_flush(kraken_engine_bus(run->engine));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg; /* only wakes the loop so the deadline is checked */
}

static void create_nodes(struct bench_run *run, const kraken_uuid *parent)
{
    kraken_store *store = kraken_engine_store(run->engine);
    for (size_t i = 0; i < run->n; i++) {
        kraken_uuid id = bench_node_uuid(i, 0);
        kraken_node *node;
        bench_die_on(kraken_node_new(&node, &id), "kraken_node_new");
        char name[32];
        snprintf(name, sizeof name, "n%06zu", i);
        kraken_value v = kraken_value_string(name);
        bench_die_on(kraken_node_set(node, "/Nodename", &v), "/Nodename");
        kraken_value_clear(&v);
        v = kraken_value_string("sim");
        bench_die_on(kraken_node_set(node, "/Platform", &v), "/Platform");
        kraken_value_clear(&v);
        v = kraken_value_uuid(parent);
        bench_die_on(kraken_node_set(node, "/ParentId", &v), "/ParentId");
        v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC);
        bench_die_on(kraken_node_set(node, "/RunState", &v), "/RunState");
        bench_die_on(kraken_store_create(store, node), "kraken_store_create");
        kraken_node_free(node);
    }
}

/* When nodes did not converge: how many are in which plan state, and one reason. */
static void report_stragglers(struct bench_run *run)
{
    size_t by_state[8] = {0};
    char *reason = NULL;
    for (size_t i = 0; i < run->n; i++) {
        kraken_uuid id = bench_node_uuid(i, 0);
        kraken_plan_status st = {0};
        if (kraken_engine_node_status(run->engine, &id, &st) < 0)
            continue;
        by_state[st.state < 8 ? st.state : 7]++;
        if (!reason && st.reason)
            reason = strdup(st.reason);
        if (i == 0 || (!reason && st.state != KRAKEN_PLAN_CONVERGED && by_state[st.state] == 1)) {
            printf("#   node %zu: %s, step %zu of %zu", i, kraken_plan_state_name(st.state),
                   st.current, st.n_steps);
            for (size_t s = 0; s < st.n_steps; s++)
                printf(" %s", st.steps[s]);
            printf("\n");
        }
        kraken_plan_status_clear(&st);
    }
    for (int s = 0; s < 7; s++)
        if (by_state[s])
            printf("#   %zu nodes %s\n", by_state[s], kraken_plan_state_name(s));
    if (reason)
        printf("#   a reason: %s\n", reason);
    free(reason);
}

#define DEADLINE_S 120.0
#define REPEATS 3

/* What one run reports to the parent (through a pipe). */
struct result {
    double wall, cpu;
    long rss0, peak;
    uint64_t published, mutates;
    bool converged;
};

static void run_once(size_t n, bool next_turn, bool watch_all, bool verbose, struct result *res)
{
    struct bench_run run = {.n = n, .next_turn = next_turn, .watch_all = watch_all};
    run.base = event_base_new();
    if (!run.base) {
        fprintf(stderr, "event_base_new failed\n");
        exit(1);
    }
    run.answer_ev = evtimer_new(run.base, drain_queue, &run);
    struct event *tick = event_new(run.base, -1, EV_PERSIST, on_tick, NULL);
    const struct timeval tick_tv = {0, 100000};
    event_add(tick, &tick_tv);

    kraken_engine_options opts = KRAKEN_ENGINE_OPTIONS_INIT;
    opts.self_id = bench_node_uuid(0xfffffffu, 0);
    opts.start_frozen = true; /* nothing moves until the clock starts */
    bench_die_on(kraken_engine_new(&run.engine, run.base, NULL, &opts), "kraken_engine_new");
    setup_services(&run);

    double t_setup = bench_now_s();
    create_nodes(&run, kraken_engine_self_id(run.engine));
    t_setup = bench_now_s() - t_setup;

    kraken_store_listener *listener;
    bench_die_on(kraken_store_listen(kraken_engine_store(run.engine), on_store_change, &run, NULL,
                               &listener),
           "kraken_store_listen");
    kraken_bus *bus = kraken_engine_bus(run.engine);
    kraken_subscribe_options mut_opts = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION,
                                         KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION), NULL,
                                         (size_t)1 << 24};
    kraken_subscribe_options sync_opts = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION,
                                          KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC), NULL, 0};
    kraken_subscribe_options all_opts = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION, 0, NULL,
                                         (size_t)1 << 24};
    kraken_subscription *mut_sub, *sync_sub, *sub = NULL;
    bench_die_on(kraken_bus_subscribe(bus, &mut_opts, on_mutation_event, &run, NULL, &mut_sub),
           "subscribe");
    bench_die_on(kraken_bus_subscribe(bus, &sync_opts, on_sync_event, &run, NULL, &sync_sub),
           "subscribe");
    if (watch_all)
        bench_die_on(kraken_bus_subscribe(bus, &all_opts, on_event, &run, NULL, &sub), "subscribe");
    /* Let setup's own events be delivered before the clock starts. */
    event_base_loop(run.base, EVLOOP_NONBLOCK);
    kraken_bus_flush(bus);
    publish_marker(&run, 0);
    run.events = 0;
    memset(run.by_type, 0, sizeof run.by_type);
    long rss_before = bench_rss_kib();

    double t0 = bench_now_s(), c0 = bench_cpu_s();
    kraken_engine_thaw(run.engine);
    while (run.synced < n && bench_now_s() - t0 < DEADLINE_S)
        event_base_loop(run.base, EVLOOP_ONCE);
    double wall = bench_now_s() - t0, cpu = bench_cpu_s() - c0;
    /* Untimed: let the last steps' DONE events and the like come out. */
    for (int i = 0; i < 10; i++)
        event_base_loop(run.base, EVLOOP_NONBLOCK);
    publish_marker(&run, 1);
    uint64_t published = run.marker_seq[1] - run.marker_seq[0] - 1;

    *res = (struct result){wall, cpu, rss_before, peak_rss_kib(), published, run.mutates,
                           run.synced == n};
    char mode[32];
    snprintf(mode, sizeof mode, "%s%s", next_turn ? "next-turn" : "immediate",
             watch_all ? "+watcher" : "");
    /* Details once per configuration (the first of its runs). */
    if (verbose && watch_all)
        printf("#   %s N=%zu: watcher got %llu events (state-change %llu, mutation %llu, "
               "discovery %llu, service %llu), dropped %llu\n",
               mode, n, (unsigned long long)run.events,
               (unsigned long long)run.by_type[KRAKEN_EVENT_STATE_CHANGE],
               (unsigned long long)run.by_type[KRAKEN_EVENT_STATE_MUTATION],
               (unsigned long long)run.by_type[KRAKEN_EVENT_DISCOVERY],
               (unsigned long long)run.by_type[KRAKEN_EVENT_SERVICE],
               (unsigned long long)kraken_subscription_dropped(sub));
    if (verbose && (run.interrupts || run.discover_errors || run.starts != 2))
        printf("#   %s N=%zu: interrupts %llu, service starts %llu, discover errors %llu\n", mode,
               n, (unsigned long long)run.interrupts, (unsigned long long)run.starts,
               (unsigned long long)run.discover_errors);
    if (verbose && run.synced < n) {
        printf("#   only %zu of %zu nodes reached RunState SYNC within %.0f s\n", run.synced, n,
               DEADLINE_S);
        report_stragglers(&run);
    }

    kraken_subscription_remove(mut_sub);
    kraken_subscription_remove(sync_sub);
    kraken_subscription_remove(sub);
    kraken_store_listener_remove(listener);
    kraken_engine_free(run.engine);
    event_free(run.answer_ev);
    event_free(tick);
    event_base_free(run.base);
    free(run.queue);
    free(run.spare);
}

static const struct config {
    const char *name;
    bool next_turn, watch_all;
} configs[] = {
    {"immediate", false, false},
    {"next-turn", true, false},
    {"immediate+watcher", false, true},
    {"next-turn+watcher", true, true},
};

/* Run one configuration in a child process (fresh heap, own ru_maxrss). */
static int run_child(const struct config *c, size_t n, bool verbose, struct result *out)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        struct result r;
        run_once(n, c->next_turn, c->watch_all, verbose, &r);
        fflush(stdout);
        exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, sizeof *out);
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        got != (ssize_t)sizeof *out)
        return -1;
    return 0;
}

/* REPEATS runs of one configuration; prints the median wall and CPU times. */
static int bench_config(const struct config *c, size_t n)
{
    struct result r[REPEATS];
    double walls[REPEATS], cpus[REPEATS];
    long peak = 0;
    bool converged = true;
    for (int i = 0; i < REPEATS; i++) {
        if (run_child(c, n, i == 0, &r[i]) < 0) {
            printf("%-18s %7zu  run failed\n", c->name, n);
            return -1;
        }
        walls[i] = r[i].wall;
        cpus[i] = r[i].cpu;
        peak = r[i].peak > peak ? r[i].peak : peak;
        converged &= r[i].converged;
    }
    qsort(walls, REPEATS, sizeof walls[0], bench_cmp_double);
    qsort(cpus, REPEATS, sizeof cpus[0], bench_cmp_double);
    double wall = walls[REPEATS / 2], cpu = cpus[REPEATS / 2];
    double target = 0.2 * (double)n / 10000.0;
    char range[48];
    snprintf(range, sizeof range, "%.0f-%.0f", walls[0] * 1e3, walls[REPEATS - 1] * 1e3);
    printf("%-18s %7zu %9.1f %11s %9.1f %8.2f %9ld %9ld %9llu %8llu %s\n", c->name, n, wall * 1e3,
           range, cpu * 1e3, wall * 1e6 / (double)n, r[0].rss0, peak,
           (unsigned long long)r[0].published, (unsigned long long)r[0].mutates,
           !converged       ? "DID NOT CONVERGE"
           : wall <= target ? "ok"
           : cpu <= target  ? "ok by CPU"
                            : "MISSED");
    return converged ? 0 : -1;
}

int main(int argc, char **argv)
{
    size_t sizes[16];
    static const size_t defaults[] = {10000, 100000};
    size_t n_sizes = bench_parse_sizes(argc, argv, sizes, 16, defaults, 2,
                                       "[N ...]  (node counts, default 10000 100000)");
    bench_print_machine("bench_engine", event_get_version());
    printf("# cold (Dsc unknown) -> RunState SYNC, 5 steps per node; wall = engine time (the "
           "module is instant); target <= 200 ms per 10,000 nodes (scaled)\n");
    printf("# setup (creating the nodes, engine frozen) is not timed; rss0 = RSS when the clock "
           "starts, peak = ru_maxrss of the run's process; events = published on the bus\n");
    printf("# wall/cpu: median of %d runs (each in a fresh process); range = fastest-slowest "
           "wall; peak = highest ru_maxrss of the runs\n",
           REPEATS);
    printf("%-18s %7s %9s %11s %9s %8s %9s %9s %9s %8s %s\n", "mode", "N", "wall ms", "range ms",
           "cpu ms", "us/node", "rss0 KiB", "peak KiB", "events", "mutates", "");
    int failed = 0;
    for (size_t i = 0; i < n_sizes; i++) {
        for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
            failed |= bench_config(&configs[c], sizes[i]) != 0;
    }
    return failed ? 1 : 0;
}
