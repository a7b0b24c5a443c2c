/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_callbacks MODE N: the C baseline of the bindings' overhead figures
 * (bench/bench_bindings.py runs this, then the same work from Python and Lua).
 *
 *   mutate N    N nodes, each driven PHYS_UNKNOWN -> POWER_OFF -> POWER_ON by an in-process
 *               module whose mutate handler reports the goal at once: 2N mutation callbacks
 *   discover N  N discoveries of /PhysState by an in-process module, over 1000 nodes
 *
 * Prints one line: "<mode> <n> <seconds> <microseconds per operation>".
 */
#include <event2/event.h>
#include <kraken/kraken.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long mutations;

static void on_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    (void)userdata;
    mutations++;
    for (size_t i = 0; i < req->n_mutates; i++)
        kraken_module_report(m, &req->node_id, req->id, req->mutates[i].url, req->mutates[i].to);
}

static const kraken_mutate m_discover[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate m_poweron[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
static const kraken_mutation_decl decls[] = {
    KRAKEN_MUTATION_DECL_INIT(.id = "discover", KRAKEN_DECL_MUTATES(m_discover),
                              .context = KRAKEN_CONTEXT_ALL),
    KRAKEN_MUTATION_DECL_INIT(.id = "poweron", KRAKEN_DECL_MUTATES(m_poweron),
                              .context = KRAKEN_CONTEXT_ALL),
};
static const kraken_module_discoverable discoverables[] = {{"/PhysState", NULL, NULL}};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_callbacks: %s: %s\n", what, kraken_error_last());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "mutate") && strcmp(argv[1], "discover"))) {
        fprintf(stderr, "usage: bench_callbacks mutate|discover N\n");
        return 2;
    }
    int mutate = strcmp(argv[1], "mutate") == 0;
    long n = atol(argv[2]), nodes = mutate ? n : 1000;
    kraken_module_desc desc = {
        .abi_version = KRAKEN_MODULE_ABI_VERSION, .name = "cpower",
        .discoverables = discoverables, .n_discoverables = 1,
        .mutations = mutate ? decls : NULL, .n_mutations = mutate ? 2 : 0,
        .handlers = {.mutate = on_mutate}};
    struct event_base *base = event_base_new();
    kraken_engine_options o;
    kraken_engine_options_init(&o, KRAKEN_ENGINE_OPTIONS_VERSION);
    o.no_sync_service = true;
    kraken_engine *e;
    kraken_module *m;
    if (kraken_engine_new(&e, base, NULL, &o) < 0)
        die("engine");
    if (kraken_module_new(&m, e, &desc, "power", NULL, NULL) < 0)
        die("module");
    event_base_loop(base, EVLOOP_NONBLOCK);
    kraken_uuid *ids = calloc(nodes, sizeof *ids);
    for (long i = 0; i < nodes; i++) {
        kraken_node *node;
        kraken_uuid_generate(&ids[i]);
        kraken_node_new(&node, &ids[i]);
        if (mutate)
            kraken_node_set_text(node, "/PhysState", "POWER_ON");
        if (kraken_store_create(kraken_engine_store(e), node) < 0)
            die("create");
        kraken_node_free(node);
    }
    double t0 = now();
    if (mutate) {
        while (mutations < 2 * n)
            event_base_loop(base, EVLOOP_ONCE);
    } else {
        for (long i = 0; i < n; i++)
            if (kraken_module_discover(m, &ids[i % nodes], "/PhysState",
                                       i & 1 ? "POWER_ON" : "POWER_OFF") < 0)
                die("discover");
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    double dt = now() - t0;
    long ops = mutate ? 2 * n : n;
    printf("%s %ld %.3f %.2f\n", argv[1], ops, dt, dt / ops * 1e6);
    kraken_module_free(m);
    kraken_engine_free(e);
    event_base_free(base);
    free(ids);
    return 0;
}
