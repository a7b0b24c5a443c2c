/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_planner: the planner and the mutation graph (issue "engine").
 *
 *   bench_planner [N ...]        (node counts, default: 10000 100000)
 *
 * Two mutation sets:
 *   S      the SPEC 4.3 reference set (power UKtoOFF/OFFtoON/ONtoOFF/HANGtoOFF
 *          requiring /Platform=sim, pxe NONEtoWAIT/WAITtoINIT, sync INITtoSYNC);
 *   synth  200 mutations over the 20 enum fields of a registered schema
 *          "Bench.Synth" (enum Bench.Mode, 6 members), varied costs, with
 *          requires that chain the fields into a pipeline (see synth_add).
 * Figures: graph JSON build time; first plan on a fresh set (cold cache);
 * N plans with every node in one state and spread over many states, first
 * pass (cache cold) and second pass (cache warm). Plans are freed inside the
 * timed loop. Public API only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kraken/kraken.h>

#include "benchutil.h"

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp_double);
    return v[n / 2];
}

/* One table row; a negative cpu (figures not measured by CPU time) prints as "-". */
static void row(const char *figure, size_t n, double value, double cpu, const char *unit,
                const char *target, const char *verdict)
{
    char c[32] = "-";
    if (cpu >= 0)
        snprintf(c, sizeof c, "%.3f", cpu);
    printf("%-46s %7zu %12.3f %12s %-8s %-19s %s\n", figure, n, value, c, unit, target, verdict);
}

static void row_header(void)
{
    printf("%-46s %7s %12s %12s %-8s %-19s %s\n", "figure", "N", "wall", "by CPU time", "unit",
           "target", "");
}

/* "ok" by the wall clock; "ok by CPU" when only the CPU-time figure meets the bound. */
static const char *verdict_le(double wall, double cpu, double bound)
{
    return wall <= bound ? "ok" : cpu <= bound ? "ok by CPU" : "MISSED";
}

/* ---- the SPEC 4.3 set S ------------------------------------------------ */

#define PXE_STATE "type.googleapis.com/PXE.Client/State"

static const kraken_fact f_sim[] = {{"/Platform", "sim"}};
static const kraken_fact f_on[] = {{"/PhysState", "POWER_ON"}};
static const kraken_fact f_hang = {"/PhysState", "PHYS_HANG"};

static void add_one(kraken_mutation_set *set, const char *service, const char *id,
                    const kraken_mutate *mutates, size_t n_mutates, const kraken_fact *req,
                    kraken_context context, uint32_t timeout_ms, const kraken_fact *fail_to)
{
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = id);
    d.mutates = mutates;
    d.n_mutates = n_mutates;
    d.requires = req;
    d.n_requires = req ? 1 : 0;
    d.context = context;
    d.timeout_ms = timeout_ms;
    if (fail_to)
        d.fail_to = *fail_to;
    char what[96];
    snprintf(what, sizeof what, "declare %s/%s", service, id);
    bench_die_on(kraken_mutation_set_add(set, service, &d), what);
}

static void spec_s_add(kraken_mutation_set *set)
{
    static const kraken_mutate uk_off[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
    static const kraken_mutate off_on[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
    static const kraken_mutate on_off[] = {{"/PhysState", "POWER_ON", "POWER_OFF"}};
    static const kraken_mutate hang_off[] = {{"/PhysState", "PHYS_HANG", "POWER_OFF"}};
    static const kraken_mutate none_wait[] = {{PXE_STATE, "NONE", "WAIT"}};
    static const kraken_mutate wait_init[] = {{PXE_STATE, "WAIT", "INIT"},
                                              {"/RunState", "UNKNOWN", "INIT"}};
    static const kraken_mutate init_sync[] = {{"/RunState", "INIT", "SYNC"}};
    add_one(set, "power", "UKtoOFF", uk_off, 1, f_sim, KRAKEN_CONTEXT_CHILD, 10000, &f_hang);
    add_one(set, "power", "OFFtoON", off_on, 1, f_sim, KRAKEN_CONTEXT_CHILD, 10000, &f_hang);
    add_one(set, "power", "ONtoOFF", on_off, 1, f_sim, KRAKEN_CONTEXT_CHILD, 10000, &f_hang);
    add_one(set, "power", "HANGtoOFF", hang_off, 1, f_sim, KRAKEN_CONTEXT_CHILD, 10000, &f_hang);
    add_one(set, "pxe", "NONEtoWAIT", none_wait, 1, f_on, KRAKEN_CONTEXT_CHILD, 10000, NULL);
    add_one(set, "pxe", "WAITtoINIT", wait_init, 2, f_on, KRAKEN_CONTEXT_CHILD, 90000, NULL);
    add_one(set, "sync", "INITtoSYNC", init_sync, 1, f_on, KRAKEN_CONTEXT_SELF, 90000, &f_hang);
}

/* ---- the synthetic set ------------------------------------------------- */

#define SYNTH_FIELDS 20
#define SYNTH_SCHEMA "Bench.Synth"
static const char *const mode_names[] = {"UNKNOWN", "M1", "M2", "M3", "M4", "M5"};
#define MODE_FINAL 5 /* M5 */

static void synth_register(void)
{
    static int done;
    if (done)
        return;
    kraken_enum_member members[6];
    for (int i = 0; i < 6; i++) {
        members[i].name = mode_names[i];
        members[i].number = i;
    }
    bench_die_on(kraken_enum_register("Bench.Mode", members, 6, NULL), "register Bench.Mode");
    kraken_field_def fields[SYNTH_FIELDS];
    static char names[SYNTH_FIELDS][8];
    for (int k = 0; k < SYNTH_FIELDS; k++) {
        snprintf(names[k], sizeof names[k], "f%02d", k);
        fields[k] = (kraken_field_def)KRAKEN_FIELD(names[k], (uint32_t)k + 1, KRAKEN_T_ENUM,
                                                   .type_name = "Bench.Mode");
    }
    bench_die_on(kraken_schema_register(SYNTH_SCHEMA, fields, SYNTH_FIELDS, NULL),
           "register Bench.Synth");
    done = 1;
}

static void synth_url(char *buf, size_t size, int k)
{
    snprintf(buf, size, "type.googleapis.com/" SYNTH_SCHEMA "/F%02d", k);
}

/*
 * 10 mutations per field k (service "svcNN", NN = k % 4): the discovery step
 * UNKNOWN->M1, a forward chain M1->M2->M3->M4->M5 and five other moves with
 * varied costs (some tie with the chain, which exercises the tie-break).
 * Every mutation of field k > 0 requires field k-1 = M5, so field k is known
 * only while field k-1 is complete (knowledge rule): the fields form a
 * pipeline. Fields 0, 5, 10, 15 also require the static fact /Platform=sim.
 * Without such requires 20 independent 6-valued fields would span 6^20 states;
 * with them the states reachable from all-unknown are "a prefix of M5, then
 * one field in UNKNOWN..M4, then unknown": 20 * 5 + 1 = 101 states.
 */
static void synth_add(kraken_mutation_set *set)
{
    static const struct {
        int from, to;
        uint32_t cost;
    } moves[10] = {{0, 1, 1}, {1, 2, 1}, {2, 3, 1}, {3, 4, 2}, {4, 5, 1},
                   {5, 1, 4}, {2, 1, 1}, {1, 3, 2}, {3, 5, 4}, {4, 2, 2}};
    for (int k = 0; k < SYNTH_FIELDS; k++) {
        char url[96], prev_url[96], service[16];
        synth_url(url, sizeof url, k);
        synth_url(prev_url, sizeof prev_url, k > 0 ? k - 1 : 0);
        snprintf(service, sizeof service, "svc%02d", k % 4);
        kraken_fact req[2];
        size_t n_req = 0;
        if (k > 0)
            req[n_req++] = (kraken_fact){prev_url, mode_names[MODE_FINAL]};
        if (k % 5 == 0)
            req[n_req++] = (kraken_fact){"/Platform", "sim"};
        for (int m = 0; m < 10; m++) {
            kraken_mutate mut = {url, mode_names[moves[m].from], mode_names[moves[m].to]};
            char id[32];
            snprintf(id, sizeof id, "F%02d_%sto%s", k, mode_names[moves[m].from],
                     mode_names[moves[m].to]);
            kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = id);
            d.mutates = &mut;
            d.n_mutates = 1;
            d.requires = n_req ? req : NULL;
            d.n_requires = n_req;
            d.context = KRAKEN_CONTEXT_CHILD;
            d.cost = moves[m].cost;
            bench_die_on(kraken_mutation_set_add(set, service, &d), id);
        }
    }
}

/* ---- nodes ------------------------------------------------------------- */

static void set_enum(kraken_node *node, const char *url, int64_t number)
{
    if (number == 0)
        return;
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, number);
    bench_die_on(kraken_node_set(node, url, &v), url);
}

static kraken_node *new_node(size_t i)
{
    kraken_uuid id = bench_node_uuid(i, 0);
    kraken_node *node;
    bench_die_on(kraken_node_new(&node, &id), "kraken_node_new");
    return node;
}

/* Cfg of set S: RunState SYNC on platform sim. */
static kraken_node *s_cfg(size_t i)
{
    kraken_node *node = new_node(i);
    kraken_value v = kraken_value_string("sim");
    bench_die_on(kraken_node_set(node, "/Platform", &v), "/Platform");
    kraken_value_clear(&v);
    set_enum(node, "/RunState", KRAKEN_RUN_SYNC);
    return node;
}

/* Cfg of set S on a platform no mutation serves: every plan is "no path" (SPEC 4.3 #5). */
static kraken_node *s_cfg_vbox(size_t i)
{
    kraken_node *node = new_node(i);
    kraken_value v = kraken_value_string("vbox");
    bench_die_on(kraken_node_set(node, "/Platform", &v), "/Platform");
    kraken_value_clear(&v);
    set_enum(node, "/RunState", KRAKEN_RUN_SYNC);
    return node;
}

/*
 * Dsc of set S in combination @p state of PhysState x RunState(4) x PXE(3),
 * PhysState among the four that some mutation leaves (UNKNOWN, POWER_OFF,
 * POWER_ON, PHYS_HANG; POWER_CYCLE and PHYS_ERROR have no path): 48 Dsc value
 * vectors, which the knowledge rule folds into 15 planning states.
 */
#define S_STATES 48
static kraken_node *s_dsc(size_t i, size_t state)
{
    static const int64_t phys[4] = {KRAKEN_PHYS_UNKNOWN, KRAKEN_PHYS_POWER_OFF,
                                    KRAKEN_PHYS_POWER_ON, KRAKEN_PHYS_HANG};
    kraken_node *node = new_node(i);
    set_enum(node, "/PhysState", phys[state % 4]);
    set_enum(node, "/RunState", (int64_t)(state / 4 % 4));
    set_enum(node, PXE_STATE, (int64_t)(state / 16 % 3));
    return node;
}

/* Cfg of the synthetic set: every field complete (M5), platform sim. */
static kraken_node *synth_cfg(size_t i)
{
    kraken_node *node = new_node(i);
    kraken_value v = kraken_value_string("sim");
    bench_die_on(kraken_node_set(node, "/Platform", &v), "/Platform");
    kraken_value_clear(&v);
    for (int k = 0; k < SYNTH_FIELDS; k++) {
        char url[96];
        synth_url(url, sizeof url, k);
        set_enum(node, url, MODE_FINAL);
    }
    return node;
}

/* Dsc of the synthetic set in reachable state @p state (0..99): fields before
 * p = state / 5 complete, field p at value state % 5 (UNKNOWN..M4), rest unknown. */
#define SYNTH_STATES 100
static kraken_node *synth_dsc(size_t i, size_t state)
{
    kraken_node *node = new_node(i);
    int p = (int)(state / 5 % SYNTH_FIELDS);
    for (int k = 0; k <= p; k++) {
        char url[96];
        synth_url(url, sizeof url, k);
        set_enum(node, url, k < p ? MODE_FINAL : (int64_t)(state % 5));
    }
    return node;
}

/* ---- one set under test ------------------------------------------------ */

struct bench_set {
    const char *name;
    void (*add)(kraken_mutation_set *set);
    kraken_node *(*cfg)(size_t i);
    kraken_node *(*dsc)(size_t i, size_t state);
    size_t n_states;
    size_t cold_state; /* the Dsc state used for the single cold plan (all unknown) */
};

static kraken_mutation_set *fresh_set(const struct bench_set *bs)
{
    kraken_mutation_set *set;
    bench_die_on(kraken_mutation_set_new(&set), "kraken_mutation_set_new");
    bs->add(set);
    return set;
}

static size_t count_substr(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void bench_graph(const struct bench_set *bs)
{
    kraken_mutation_set *set = fresh_set(bs);
    double times[5];
    char *json = NULL;
    for (int r = 0; r < 5; r++) {
        free(json);
        json = NULL;
        double t0 = bench_now_s();
        bench_die_on(kraken_mutation_set_graph_json(set, NULL, NULL, 0, &json), "graph_json");
        times[r] = bench_now_s() - t0;
    }
    size_t edges = count_substr(json, "\"from\"");
    size_t ids = count_substr(json, "\"id\"");
    char fig[96];
    snprintf(fig, sizeof fig, "%s: graph JSON (%zu vertices, %zu edges)", bs->name,
             ids - edges, edges);
    row(fig, kraken_mutation_set_count(set), median(times, 5) * 1e3, -1, "ms", "", "");
    printf("#   %s graph JSON: %zu bytes; first build %.3f ms\n", bs->name, strlen(json),
           times[0] * 1e3);
    free(json);
    kraken_mutation_set_free(set);
}

static void print_plan(const struct bench_set *bs, kraken_plan *plan)
{
    printf("#   %s plan from all-unknown (%zu steps, cost %llu):", bs->name,
           kraken_plan_length(plan), (unsigned long long)kraken_plan_cost(plan));
    size_t len = kraken_plan_length(plan);
    for (size_t i = 0; i < len && i < 8; i++)
        printf(" %s/%s", kraken_plan_step_service(plan, i), kraken_plan_step_mutation(plan, i));
    printf("%s\n", len > 8 ? " ..." : "");
}

/* Latency of the very first plan on a fresh set (nothing cached). */
static void bench_first_plan(const struct bench_set *bs)
{
    kraken_node *cfg = bs->cfg(1), *dsc = bs->dsc(1, bs->cold_state);
    double times[9];
    for (int r = 0; r < 9; r++) {
        kraken_mutation_set *set = fresh_set(bs);
        kraken_plan *plan = NULL;
        double t0 = bench_now_s();
        int rc = kraken_mutation_set_plan(set, cfg, dsc, &plan);
        times[r] = bench_now_s() - t0;
        bench_die_on(rc, "first plan");
        if (r == 0)
            print_plan(bs, plan);
        kraken_plan_free(plan);
        kraken_mutation_set_free(set);
    }
    char fig[96];
    snprintf(fig, sizeof fig, "%s: first plan, fresh set (cold cache)", bs->name);
    row(fig, 1, median(times, 9) * 1e6, -1, "us", "", "");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
}

/* One pass of plans over all nodes: wall and CPU seconds; counts plans without a path. */
static void plan_pass(kraken_mutation_set *set, kraken_node **cfg, kraken_node **dsc, size_t n,
                      size_t *no_path, double *wall, double *cpu)
{
    double t0 = bench_now_s(), c0 = bench_cpu_s();
    for (size_t i = 0; i < n; i++) {
        kraken_plan *plan = NULL;
        int rc = kraken_mutation_set_plan(set, cfg[i], dsc[i], &plan);
        if (rc == KRAKEN_ENOPATH)
            (*no_path)++;
        else
            bench_die_on(rc, "kraken_mutation_set_plan");
        kraken_plan_free(plan);
    }
    *wall = bench_now_s() - t0;
    *cpu = bench_cpu_s() - c0;
}

static void bench_plans(const struct bench_set *bs, size_t n, size_t n_states)
{
    kraken_node **cfg = bench_xcalloc(n, sizeof *cfg), **dsc = bench_xcalloc(n, sizeof *dsc);
    for (size_t i = 0; i < n; i++) {
        cfg[i] = bs->cfg(i);
        dsc[i] = bs->dsc(i, n_states == 1 ? bs->cold_state : i % n_states);
    }
    double cold[3], warm[3], cold_cpu[3], warm_cpu[3];
    size_t no_path = 0;
    for (int r = 0; r < 3; r++) {
        kraken_mutation_set *set = fresh_set(bs);
        plan_pass(set, cfg, dsc, n, &no_path, &cold[r], &cold_cpu[r]);
        plan_pass(set, cfg, dsc, n, &no_path, &warm[r], &warm_cpu[r]);
        kraken_mutation_set_free(set);
    }
    double c = median(cold, 3), w = median(warm, 3);
    double cc = median(cold_cpu, 3), wc = median(warm_cpu, 3);
    double target_ms = 50.0 * (double)n / 100000.0;
    char target[32], fig[96];
    snprintf(target, sizeof target, "<= %.3g ms%s", target_ms, n == 100000 ? "" : " (scaled)");
    const char *states = n_states == 1 ? "1 state" : "spread";
    snprintf(fig, sizeof fig, "%s: %s (%zu), pass 1 (cache cold)", bs->name, states, n_states);
    row(fig, n, c * 1e3, cc * 1e3, "ms", n_states == 1 ? target : "",
        n_states == 1 ? verdict_le(c * 1e3, cc * 1e3, target_ms) : "");
    snprintf(fig, sizeof fig, "%s: %s (%zu), pass 2 (cached)", bs->name, states, n_states);
    row(fig, n, w * 1e3, wc * 1e3, "ms", target, verdict_le(w * 1e3, wc * 1e3, target_ms));
    snprintf(fig, sizeof fig, "%s: %s, plans/s (cached)", bs->name, states);
    row(fig, n, (double)n / w, (double)n / wc, "plans/s", "", "");
    if (no_path)
        printf("#   %s: %zu plans had no path (KRAKEN_ENOPATH)\n", bs->name, no_path);
    kraken_nodes_free(cfg, n);
    kraken_nodes_free(dsc, n);
}

static const struct bench_set sets[] = {
    {"S", spec_s_add, s_cfg, s_dsc, S_STATES, 0},
    {"synth", synth_add, synth_cfg, synth_dsc, SYNTH_STATES, 0},
    {"S on vbox (no path)", spec_s_add, s_cfg_vbox, s_dsc, S_STATES, 0},
};

static void bench_size(size_t n)
{
    synth_register();
    printf("\n## N = %zu nodes\n", n);
    row_header();
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        bench_plans(&sets[s], n, 1);
        bench_plans(&sets[s], n, sets[s].n_states);
    }
}

int main(int argc, char **argv)
{
    size_t sizes[16];
    static const size_t defaults[] = {10000, 100000};
    size_t n_sizes = bench_parse_sizes(argc, argv, sizes, 16, defaults, 2,
                                       "[N ...]  (node counts, default 10000 100000)");
    bench_print_machine("bench_planner", NULL);
    printf("# times: median of 3 fresh mutation sets (plans) / 5 builds (graph) / 9 first plans; "
           "plan + kraken_plan_free per node; wall and process CPU time\n");
    synth_register();
    printf("\n## graph and first plan\n");
    row_header();
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        if (sets[s].cfg == s_cfg_vbox)
            continue; /* the same graph as S; no first plan */
        bench_graph(&sets[s]);
        bench_first_plan(&sets[s]);
    }
    int failed = 0;
    for (size_t i = 0; i < n_sizes; i++)
        failed |= bench_run_isolated(bench_size, sizes[i]) != 0;
    return failed ? 1 : 0;
}
