/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * status: what the engine of one instance would do to each node of a cluster.
 *
 *   status CFG.json DSC.json SELF [NODENAME...]
 *
 * It loads the desired state (Cfg) of every node into a store, then the
 * discovered state (Dsc) in one call, and runs a frozen engine whose self
 * node is the one named SELF (the instance that runs the CHILD-context steps
 * of its children). It prints each node's plan status:
 *
 *   n1: FROZEN: power/UKtoOFF -> power/OFFtoON -> ... (step 1 of 5)
 *
 * Unlike examples/plan.c, this one drives the engine on a libevent loop, so
 * it links libevent too: `pkg-config --cflags --libs kraken` gives both.
 * It also shows the handle rules (doc/ARCHITECTURE.md "Ownership"): the
 * service handles it holds outlive the engine as detached handles and are
 * released after it, in whatever order a garbage collector would pick.
 */
#include <event2/event.h>
#include <kraken/kraken.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The power and pxe services of SPEC 4.3 (the engine adds "sync" itself). */
#define PHYS "/PhysState"
#define PXE "type.googleapis.com/PXE.Client/State"

static const kraken_fact on_sim[] = {{"/Platform", "sim"}};
static const kraken_fact powered[] = {{PHYS, "POWER_ON"}};
static const kraken_mutate uk_off[] = {{PHYS, "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate off_on[] = {{PHYS, "POWER_OFF", "POWER_ON"}};
static const kraken_mutate on_off[] = {{PHYS, "POWER_ON", "POWER_OFF"}};
static const kraken_mutate hang_off[] = {{PHYS, "PHYS_HANG", "POWER_OFF"}};
static const kraken_mutate none_wait[] = {{PXE, "NONE", "WAIT"}};
static const kraken_mutate wait_init[] = {{PXE, "WAIT", "INIT"}, {"/RunState", "UNKNOWN", "INIT"}};

/* KRAKEN_MUTATION_DECL_INIT sets .version, which the library checks. */
#define DECL(name, mut, req, ms, fail)                                                       \
    KRAKEN_MUTATION_DECL_INIT(.id = name, KRAKEN_DECL_MUTATES(mut), KRAKEN_DECL_REQUIRES(req), \
                              .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = ms, .fail_to = fail)
#define HANG {PHYS, "PHYS_HANG"}
#define NO_FAIL {NULL, NULL}

static const kraken_mutation_decl power_decls[] = {
    DECL("UKtoOFF", uk_off, on_sim, 10000, HANG),
    DECL("OFFtoON", off_on, on_sim, 10000, HANG),
    DECL("ONtoOFF", on_off, on_sim, 10000, HANG),
    DECL("HANGtoOFF", hang_off, on_sim, 10000, HANG),
};
static const kraken_mutation_decl pxe_decls[] = {
    DECL("NONEtoWAIT", none_wait, powered, 10000, NO_FAIL),
    DECL("WAITtoINIT", wait_init, powered, 90000, NO_FAIL),
};

static int fail(const char *what, int rc)
{
    const char *msg = kraken_error_last();
    fprintf(stderr, "status: %s (%s)\n", *msg ? msg : what, kraken_err_name(rc));
    return EXIT_FAILURE;
}

/* A service that only declares its mutations: the engine is frozen, nothing is dispatched. */
static int add_service(kraken_engine *engine, const char *id, const kraken_mutation_decl *decls,
                       size_t n, kraken_service **out)
{
    int rc = kraken_engine_add_service(engine, id, id, NULL, NULL, NULL, out);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = kraken_service_declare_mutation(*out, &decls[i]);
    return rc;
}

static void print_status(kraken_engine *engine, kraken_store *store, const char *nodename)
{
    kraken_uuid id;
    kraken_plan_status st;
    if (kraken_store_find_by_nodename(store, nodename, &id) < 0 ||
        kraken_engine_node_status(engine, &id, &st) < 0) {
        printf("%s: %s\n", nodename, kraken_error_last());
        return;
    }
    printf("%s: %s", nodename, kraken_plan_state_name(st.state));
    for (size_t i = 0; i < st.n_steps; i++)
        printf("%s %s", i ? " ->" : ":", st.steps[i]);
    if (st.n_steps)
        printf(" (step %zu of %zu)", st.current + 1, st.n_steps);
    if (st.reason)
        printf(" [%s]", st.reason);
    printf("\n");
    kraken_plan_status_clear(&st);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CFG.json DSC.json SELF [NODENAME...]\n", argv[0]);
        return EXIT_FAILURE;
    }
    struct event_base *base = event_base_new();
    kraken_store *store;
    int rc = kraken_store_new(&store);
    if (rc < 0 || (rc = kraken_store_load(store, argv[1])) < 0 ||
        (rc = kraken_store_load_dsc(store, argv[2])) < 0)
        return fail("load", rc);

    /* Options through the init function, as bindings do (no initialiser macro needed). */
    kraken_engine_options opts;
    if ((rc = kraken_engine_options_init(&opts, KRAKEN_ENGINE_OPTIONS_VERSION)) < 0 ||
        (rc = kraken_store_find_by_nodename(store, argv[3], &opts.self_id)) < 0)
        return fail("self", rc);
    opts.start_frozen = true;
    kraken_engine *engine;
    kraken_service *power, *pxe;
    if ((rc = kraken_engine_new(&engine, base, store, &opts)) < 0 ||
        (rc = add_service(engine, "power", power_decls, 4, &power)) < 0 ||
        (rc = add_service(engine, "pxe", pxe_decls, 2, &pxe)) < 0)
        return fail("engine", rc);
    /* Planning happens in the engine's deferred pass: let the loop run it. */
    event_base_loop(base, EVLOOP_NONBLOCK);

    if (argc > 4) {
        for (int i = 4; i < argc; i++)
            print_status(engine, store, argv[i]);
    } else {
        kraken_node **nodes;
        size_t n;
        if ((rc = kraken_store_read_all(store, KRAKEN_CFG, &nodes, &n)) < 0)
            return fail("read", rc);
        for (size_t i = 0; i < n; i++) {
            char *name = NULL;
            if (kraken_node_get_text(nodes[i], "/Nodename", &name) == 0 && *name)
                print_status(engine, store, name);
            free(name);
        }
        kraken_nodes_free(nodes, n);
    }

    /* Free order does not matter: the engine detaches the services we still hold. */
    kraken_engine_free(engine);
    if (kraken_service_set_state(power, KRAKEN_SERVICE_RUN, NULL) != KRAKEN_ESTATE)
        return fail("detached service accepted a call", KRAKEN_ESTATE);
    kraken_service_remove(power);
    kraken_service_remove(pxe);
    kraken_store_free(store);
    event_base_free(base);
    return EXIT_SUCCESS;
}
