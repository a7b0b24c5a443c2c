/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_module: the module socket (issue 11 targets), an instance (engine +
 * kraken_module_server) in this process and an external module process
 * (a forked child using kraken_module_connect, as any module program would):
 *
 *   rtt    discovery round trip: the module discovers /RunState of a node and
 *          waits for the Event frame of the resulting Dsc change (target
 *          <= 100 us on loopback); N round trips, median / p99 / mean.
 *   disc   discoveries through one connection: N discoveries sent back to
 *          back, then a Query as a barrier (frames are handled in order), at
 *          the module's clock (target >= 100,000/s).
 *   mut    mutation requests: N nodes whose Cfg needs one step of the
 *          module's; the engine is thawed and the clock runs until every node
 *          converged (dispatch + request frame + report frame + Dsc change;
 *          target >= 10,000/s).
 *
 * Usage: bench_module [N_RTT [N_DISC [N_MUT]]]   (defaults 20000 200000 20000)
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kraken/kraken.h>

#include "benchutil.h"

static char sock_path[108];

/* ---- the module side (child) ---------------------------------------------------------------- */

static const kraken_module_discoverable discoverables[] = {{"/RunState", NULL, NULL}};
static const kraken_mutate m_off[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutation_decl mutations[] = {
    KRAKEN_MUTATION_DECL_INIT(.id = "discover", KRAKEN_DECL_MUTATES(m_off),
                              .context = KRAKEN_CONTEXT_ALL, .timeout_ms = 600000)};

typedef struct child_state {
    struct event_base *base;
    uint64_t seen_seq_value; /* which value the last event carried: 1 INIT, 2 SYNC */
    bool waiting;
    int want;
} child_state;

static void child_event(kraken_module *m, const kraken_event *ev, void *userdata)
{
    (void)m;
    child_state *cs = userdata;
    if (ev->type != KRAKEN_EVENT_STATE_CHANGE || !ev->new_value)
        return;
    if (cs->waiting && ev->new_value->v.i == cs->want) {
        cs->waiting = false;
        event_base_loopbreak(cs->base);
    }
}

static void child_start(kraken_module *m, const kraken_value *config, void *userdata)
{
    (void)config;
    (void)userdata;
    kraken_module_set_state(m, KRAKEN_SERVICE_RUN, NULL);
}

static void child_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    (void)userdata;
    kraken_module_report(m, &req->node_id, req->id, req->mutates[0].url, req->mutates[0].to);
}

static const kraken_module_desc bench_desc = {
    .abi_version = KRAKEN_MODULE_ABI_VERSION,
    .name = "benchmod",
    .discoverables = discoverables,
    .n_discoverables = 1,
    .mutations = mutations,
    .n_mutations = 1,
    .handlers = {.start = child_start, .mutate = child_mutate, .event = child_event},
    .event_types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE),
    .event_url_pattern = "/RunState",
};

static kraken_uuid node_id(unsigned i)
{
    kraken_uuid id;
    memset(&id, 0, sizeof id);
    id.bytes[0] = 0xbe;
    id.bytes[6] = 0x40;
    id.bytes[8] = 0x80;
    id.bytes[12] = (uint8_t)(i >> 24);
    id.bytes[13] = (uint8_t)(i >> 16);
    id.bytes[14] = (uint8_t)(i >> 8);
    id.bytes[15] = (uint8_t)i;
    return id;
}

static void child_gone(kraken_module *m, const char *reason, void *userdata)
{
    (void)m;
    child_state *cs = userdata;
    fprintf(stderr, "bench_module: module disconnected: %s\n", reason);
    event_base_loopbreak(cs->base);
}

static void child_main(size_t n_rtt, size_t n_disc)
{
    child_state cs = {.base = event_base_new()};
    kraken_module_connect_options o;
    kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    o.socket_path = sock_path;
    o.service_id = "bench";
    o.request_timeout_ms = 60000;
    o.on_disconnect = child_gone;
    o.hook_userdata = &cs;
    kraken_module *m;
    bench_die_on(kraken_module_connect(&m, cs.base, &bench_desc, &o, &cs, NULL), "connect");
    /* round trips on node 0 */
    double *lat = bench_xcalloc(n_rtt, sizeof *lat);
    kraken_uuid n0 = node_id(0);
    for (size_t i = 0; i < n_rtt; i++) {
        cs.want = i % 2 ? 2 : 1;
        cs.waiting = true;
        double t0 = bench_now_s();
        bench_die_on(kraken_module_discover(m, &n0, "/RunState", cs.want == 1 ? "INIT" : "SYNC"),
                     "discover");
        while (cs.waiting)
            event_base_loop(cs.base, EVLOOP_ONCE);
        lat[i] = (bench_now_s() - t0) * 1e6;
    }
    qsort(lat, n_rtt, sizeof *lat, bench_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n_rtt; i++)
        sum += lat[i];
    printf("rtt   %8zu round trips: median %.1f us, p99 %.1f us, mean %.1f us, max %.1f us\n",
           n_rtt, lat[n_rtt / 2], lat[n_rtt * 99 / 100], sum / (double)n_rtt, lat[n_rtt - 1]);
    free(lat);
    /* throughput on 1000 nodes, alternating values so every discovery changes Dsc */
    double t0 = bench_now_s(), c0 = bench_cpu_s();
    for (size_t i = 0; i < n_disc; i++) {
        kraken_uuid id = node_id((unsigned)(1 + i % 1000));
        bench_die_on(kraken_module_discover(m, &id, "/RunState", (i / 1000) % 2 ? "SYNC" : "INIT"),
                     "discover");
        if (i % 256 == 255)
            event_base_loop(cs.base, EVLOOP_NONBLOCK); /* keep reading events: no pile-up */
    }
    kraken_node *barrier;
    bench_die_on(kraken_module_query(m, KRAKEN_DSC, &n0, &barrier), "query barrier");
    kraken_node_free(barrier);
    double dt = bench_now_s() - t0;
    printf("disc  %8zu discoveries: %.0f /s through one connection (%.2f s; module CPU %.2f s)\n",
           n_disc, (double)n_disc / dt, dt, bench_cpu_s() - c0);
    fflush(stdout);
    kraken_module_log(m, KRAKEN_LOG_NOTICE, "measured"); /* the instance's cue for "mut" */
    /* then serve mutations until the instance closes the connection */
    event_base_dispatch(cs.base);
    kraken_module_free(m);
    event_base_free(cs.base);
    _exit(0);
}

/* ---- the instance side (parent) ------------------------------------------------------------- */

static struct event_base *base;
static kraken_engine *engine;
static size_t converged, want_converged;

static void on_mutation(const kraken_event *ev, void *userdata)
{
    (void)userdata;
    if (ev->kind == KRAKEN_MUTATION_DONE && ++converged == want_converged)
        event_base_loopbreak(base);
}

static void on_service(const kraken_event *ev, void *userdata)
{
    (void)userdata;
    if (ev->kind == KRAKEN_SERVICE_RUN)
        event_base_loopbreak(base);
}

static void on_log(int level, const char *subsystem, const char *message, void *userdata)
{
    (void)userdata;
    if (level <= KRAKEN_LOG_WARNING)
        fprintf(stderr, "bench_module: %s: %s\n", subsystem, message);
    if (strcmp(subsystem, "bench") == 0 && strcmp(message, "measured") == 0)
        event_base_loopbreak(base);
}

static void create_nodes(size_t first, size_t n, bool power_off_goal)
{
    kraken_store *store = kraken_engine_store(engine);
    for (size_t i = first; i < first + n; i++) {
        kraken_uuid id = node_id((unsigned)i);
        kraken_node *node;
        bench_die_on(kraken_node_new(&node, &id), "node");
        if (power_off_goal)
            bench_die_on(kraken_node_set_text(node, "/PhysState", "POWER_OFF"), "node");
        bench_die_on(kraken_store_create(store, node), "create");
        kraken_node_free(node);
    }
}

int main(int argc, char **argv)
{
    size_t sizes[3];
    static const size_t defaults[] = {20000, 200000, 20000};
    size_t n = bench_parse_sizes(argc, argv, sizes, 3, defaults, 3, "[N_RTT [N_DISC [N_MUT]]]");
    for (size_t i = n; i < 3; i++)
        sizes[i] = defaults[i];
    bench_print_machine("bench_module", event_get_version());
    snprintf(sock_path, sizeof sock_path, "/tmp/bench_module.%ld.sock", (long)getpid());
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    kraken_engine_options eo;
    kraken_engine_options_init(&eo, KRAKEN_ENGINE_OPTIONS_VERSION);
    eo.no_sync_service = true;
    eo.start_frozen = true;
    bench_die_on(kraken_engine_new(&engine, base, NULL, &eo), "engine");
    kraken_module_server_options so;
    kraken_module_server_options_init(&so, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    so.socket_path = sock_path;
    kraken_module_server *srv;
    bench_die_on(kraken_module_server_new(&srv, engine, base, &so), "server");
    bench_die_on(kraken_engine_set_log(engine, KRAKEN_LOG_NOTICE, on_log, NULL, NULL), "log");
    create_nodes(0, 1001, false);
    create_nodes(100000, sizes[2], true);
    kraken_subscription *mut_sub, *svc_sub;
    kraken_subscribe_options mo = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION),
                                   .queue_limit = 1u << 24};
    kraken_subscribe_options sv = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_SERVICE)};
    bench_die_on(kraken_bus_subscribe(kraken_engine_bus(engine), &mo, on_mutation, NULL, NULL,
                                      &mut_sub),
                 "subscribe");
    bench_die_on(kraken_bus_subscribe(kraken_engine_bus(engine), &sv, on_service, NULL, NULL,
                                      &svc_sub),
                 "subscribe");

    fflush(stdout); /* or the child prints the header again */
    pid_t pid = fork();
    if (pid == 0)
        child_main(sizes[0], sizes[1]);
    /* serve until the module is RUN, then while it measures, until it says "measured" */
    event_base_dispatch(base);
    kraken_subscription_remove(svc_sub);
    event_base_dispatch(base);
    fflush(stdout);
    /* mutation throughput, with the module idle */
    want_converged = sizes[2];
    double t0 = bench_now_s(), c0 = bench_cpu_s();
    kraken_engine_thaw(engine);
    event_base_dispatch(base);
    double dt = bench_now_s() - t0;
    printf("mut   %8zu mutation requests dispatched and answered: %.0f /s (%.2f s; instance "
           "CPU %.2f s)\n",
           sizes[2], (double)sizes[2] / dt, dt, bench_cpu_s() - c0);
    kraken_module_server_free(srv);
    int status;
    waitpid(pid, &status, 0);
    kraken_subscription_remove(mut_sub);
    kraken_engine_free(engine);
    event_base_free(base);
    return 0;
}
