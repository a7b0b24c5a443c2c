/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * plan: print what the engine would do to each node of a state file.
 *
 *   plan [-g] CFG.json [DSC.json]
 *
 * It loads the desired state (Cfg) of every node from CFG.json, and the
 * discovered state (Dsc) from DSC.json if given (otherwise every node is
 * all-unknown, as after a cold start). It declares the reference mutation set
 * of SPEC 4.3 (power, pxe and sync), asks the planner for each node's plan
 * and prints it:
 *
 *   n1: power/UKtoOFF -> power/OFFtoON -> pxe/NONEtoWAIT -> pxe/WAITtoINIT -> sync/INITtoSYNC
 *
 * With -g it also prints the mutation graph in vis.js JSON form.
 *
 * This uses nothing but the public API and needs no event loop: planning is
 * a pure function of (mutation set, Cfg node, Dsc node). Build it with meson
 * (examples/meson.build) or on its own against an installed libkraken:
 *
 *   cc plan.c $(pkg-config --cflags --libs kraken) -o plan
 */
#include <kraken/kraken.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the mutation set S (SPEC 4.3) -------------------------------------------
 * Values are given as text and parsed by the URL's type ("POWER_ON" for the
 * PhysState enum). "type.googleapis.com/PXE.Client/State" is a URL into the
 * PXE.Client extension of the node. */
#define PHYS "/PhysState"
#define PXE "type.googleapis.com/PXE.Client/State"

static const kraken_fact on_sim[] = {{"/Platform", "sim"}};
static const kraken_fact powered[] = {{PHYS, "POWER_ON"}};
static const kraken_mutate uk_off[] = {{PHYS, "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate off_on[] = {{PHYS, "POWER_OFF", "POWER_ON"}};
static const kraken_mutate on_off[] = {{PHYS, "POWER_ON", "POWER_OFF"}};
static const kraken_mutate hang_off[] = {{PHYS, "PHYS_HANG", "POWER_OFF"}};
static const kraken_mutate none_wait[] = {{PXE, "NONE", "WAIT"}};
/* Two URLs change together: the PXE state and the node's RunState. */
static const kraken_mutate wait_init[] = {{PXE, "WAIT", "INIT"}, {"/RunState", "UNKNOWN", "INIT"}};
static const kraken_mutate init_sync[] = {{"/RunState", "INIT", "SYNC"}};

/* id, mutates, requires, timeout (ms), fail_to; context CHILD; cost unset means 1.
 * KRAKEN_MUTATION_DECL_INIT sets .version, which the library checks. */
#define DECL(name, mut, req, ms, fail)                                                       \
    KRAKEN_MUTATION_DECL_INIT(.id = name, KRAKEN_DECL_MUTATES(mut), KRAKEN_DECL_REQUIRES(req), \
                              .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = ms, .fail_to = fail)
#define HANG {PHYS, "PHYS_HANG"}
#define NO_FAIL {NULL, NULL}

static const struct {
    const char *service;
    kraken_mutation_decl decl;
} set_s[] = {
    {"power", DECL("UKtoOFF", uk_off, on_sim, 10000, HANG)},
    {"power", DECL("OFFtoON", off_on, on_sim, 10000, HANG)},
    {"power", DECL("ONtoOFF", on_off, on_sim, 10000, HANG)},
    {"power", DECL("HANGtoOFF", hang_off, on_sim, 10000, HANG)},
    {"pxe", DECL("NONEtoWAIT", none_wait, powered, 10000, NO_FAIL)},
    {"pxe", DECL("WAITtoINIT", wait_init, powered, 90000, NO_FAIL)},
    {"sync", DECL("INITtoSYNC", init_sync, powered, 90000, HANG)},
};

static int fail(const char *what, int rc)
{
    /* A failing call leaves a message that names the file, node or URL at fault. */
    const char *msg = kraken_error_last();
    fprintf(stderr, "plan: %s (%s)\n", *msg ? msg : what, kraken_err_name(rc));
    return EXIT_FAILURE;
}

/* The Dsc node with the same id as @p cfg, or a fresh all-unknown one (caller frees). */
static int dsc_for(kraken_node *const *dsc, size_t n_dsc, const kraken_node *cfg,
                   kraken_node **out)
{
    for (size_t i = 0; i < n_dsc; i++)
        if (kraken_uuid_compare(kraken_node_id(dsc[i]), kraken_node_id(cfg)) == 0)
            return kraken_node_copy(out, dsc[i]);
    return kraken_node_new(out, kraken_node_id(cfg));
}

/* Print "name: step -> step ..." (or why there is none) for one node. */
static void print_plan(kraken_mutation_set *set, const kraken_node *cfg, const kraken_node *dsc)
{
    char *nodename = NULL, id[KRAKEN_UUID_STRLEN + 1];
    kraken_node_get_text(cfg, "/Nodename", &nodename); /* "" when unset */
    const char *name = nodename && *nodename ? nodename
                                             : kraken_uuid_format(kraken_node_id(cfg), id);
    kraken_plan *plan = NULL;
    int rc = kraken_mutation_set_plan(set, cfg, dsc, &plan);
    if (rc == KRAKEN_ENOPATH)
        printf("%s: no path (%s)\n", name, kraken_error_last());
    else if (rc < 0)
        printf("%s: error: %s\n", name, kraken_error_last());
    else if (kraken_plan_length(plan) == 0)
        printf("%s: nothing to do\n", name);
    else {
        printf("%s:", name);
        for (size_t i = 0; i < kraken_plan_length(plan); i++)
            printf("%s %s/%s", i ? " ->" : "", kraken_plan_step_service(plan, i),
                   kraken_plan_step_mutation(plan, i));
        printf("  (cost %llu)\n", (unsigned long long)kraken_plan_cost(plan));
    }
    kraken_plan_free(plan);
    free(nodename);
}

int main(int argc, char **argv)
{
    int graph = argc > 1 && strcmp(argv[1], "-g") == 0;
    if (argc - graph < 2 || argc - graph > 3) {
        fprintf(stderr, "usage: %s [-g] CFG.json [DSC.json]\n", argv[0]);
        return EXIT_FAILURE;
    }
    const char *cfg_path = argv[1 + graph], *dsc_path = argc - graph == 3 ? argv[2 + graph] : NULL;

    kraken_mutation_set *set;
    int rc = kraken_mutation_set_new(&set);
    if (rc < 0)
        return fail("mutation set", rc);
    for (size_t i = 0; i < sizeof set_s / sizeof set_s[0]; i++)
        if ((rc = kraken_mutation_set_add(set, set_s[i].service, &set_s[i].decl)) < 0)
            return fail(set_s[i].decl.id, rc);

    kraken_node **cfg = NULL, **dsc = NULL;
    size_t n_cfg = 0, n_dsc = 0;
    if ((rc = kraken_nodes_load_file(cfg_path, &cfg, &n_cfg)) < 0)
        return fail(cfg_path, rc);
    if (dsc_path && (rc = kraken_nodes_load_file(dsc_path, &dsc, &n_dsc)) < 0)
        return fail(dsc_path, rc);

    printf("%zu mutations, %zu nodes\n", kraken_mutation_set_count(set), n_cfg);
    for (size_t i = 0; i < n_cfg; i++) {
        kraken_node *d;
        if ((rc = dsc_for(dsc, n_dsc, cfg[i], &d)) < 0)
            return fail("dsc node", rc);
        print_plan(set, cfg[i], d);
        kraken_node_free(d);
    }

    if (graph) {
        /* Static requirements (/Platform = sim) are taken as met without a Cfg node. */
        char *json = NULL;
        if ((rc = kraken_mutation_set_graph_json(set, NULL, NULL, 0, &json)) < 0)
            return fail("graph", rc);
        printf("%s\n", json);
        free(json);
    }
    kraken_nodes_free(cfg, n_cfg);
    kraken_nodes_free(dsc, n_dsc);
    kraken_mutation_set_free(set);
    return EXIT_SUCCESS;
}
