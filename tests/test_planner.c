/* SPDX-License-Identifier: BSD-3-Clause */
/* The planner and the mutation graph: SPEC 4.2-4.3 reference scenarios and more. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "testutil.h"

#define PXE_STATE "type.googleapis.com/PXE.Client/State"
#define SVC_A "/Services/a/State"
#define SVC_B "/Services/b/State"

/* ---- helpers ------------------------------------------------------------ */

typedef struct decl_spec {
    const char *service;
    const char *id;
    kraken_mutate mutates[2];
    size_t n_mutates;
    kraken_fact requires[2];
    size_t n_requires;
    kraken_fact excludes[2];
    size_t n_excludes;
    kraken_context context;
    uint32_t timeout_ms;
    kraken_fact fail_to;
    uint32_t cost;
} decl_spec;

static void add_spec(kraken_mutation_set *set, const decl_spec *d)
{
    kraken_mutation_decl decl = {
        .version = KRAKEN_MUTATION_DECL_VERSION,
        .id = d->id,
        .mutates = d->mutates,
        .n_mutates = d->n_mutates,
        .requires = d->requires,
        .n_requires = d->n_requires,
        .excludes = d->excludes,
        .n_excludes = d->n_excludes,
        .context = d->context,
        .timeout_ms = d->timeout_ms,
        .fail_to = d->fail_to,
        .cost = d->cost,
    };
    int rc = kraken_mutation_set_add(set, d->service, &decl);
    ck_assert_msg(rc == 0, "add %s/%s: %s", d->service, d->id, kraken_error_last());
}

#define SIM {{"/Platform", "sim"}}, 1
#define ON {{"/PhysState", "POWER_ON"}}, 1
#define HANG {"/PhysState", "PHYS_HANG"}

/* The SPEC 4.3 mutation set S. */
static const decl_spec spec_s[] = {
    {"power", "UKtoOFF", {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}}, 1, SIM, {{0}}, 0,
     KRAKEN_CONTEXT_CHILD, 10000, HANG, 0},
    {"power", "OFFtoON", {{"/PhysState", "POWER_OFF", "POWER_ON"}}, 1, SIM, {{0}}, 0,
     KRAKEN_CONTEXT_CHILD, 10000, HANG, 0},
    {"power", "ONtoOFF", {{"/PhysState", "POWER_ON", "POWER_OFF"}}, 1, SIM, {{0}}, 0,
     KRAKEN_CONTEXT_CHILD, 10000, HANG, 0},
    {"power", "HANGtoOFF", {{"/PhysState", "PHYS_HANG", "POWER_OFF"}}, 1, SIM, {{0}}, 0,
     KRAKEN_CONTEXT_CHILD, 10000, HANG, 0},
    {"pxe", "NONEtoWAIT", {{PXE_STATE, "NONE", "WAIT"}}, 1, ON, {{0}}, 0, KRAKEN_CONTEXT_CHILD,
     10000, {0}, 0},
    {"pxe", "WAITtoINIT", {{PXE_STATE, "WAIT", "INIT"}, {"/RunState", "UNKNOWN", "INIT"}}, 2, ON,
     {{0}}, 0, KRAKEN_CONTEXT_CHILD, 90000, {0}, 0},
    {"sync", "INITtoSYNC", {{"/RunState", "INIT", "SYNC"}}, 1, ON, {{0}}, 0, KRAKEN_CONTEXT_SELF,
     90000, HANG, 0},
};
#define N_SPEC_S (sizeof spec_s / sizeof spec_s[0])

/* Register S in the order given by @p order (NULL: declaration order). */
static kraken_mutation_set *set_s_ordered(const size_t *order)
{
    kraken_mutation_set *set = NULL;
    ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
    for (size_t i = 0; i < N_SPEC_S; i++)
        add_spec(set, &spec_s[order ? order[i] : i]);
    return set;
}

static kraken_mutation_set *set_s(void)
{
    return set_s_ordered(NULL);
}

static kraken_mutation_set *set_of(const decl_spec *specs, size_t n)
{
    kraken_mutation_set *set = NULL;
    ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
    for (size_t i = 0; i < n; i++)
        add_spec(set, &specs[i]);
    return set;
}

/* A node from "url=value" pairs, NULL-terminated. */
static kraken_node *node_of(const char *const *kv)
{
    kraken_node *n = NULL;
    ck_assert_int_eq(kraken_node_new(&n, NULL), 0);
    for (size_t i = 0; kv && kv[i]; i += 2) {
        int rc = kraken_node_set_text(n, kv[i], kv[i + 1]);
        ck_assert_msg(rc == 0, "set %s=%s: %s", kv[i], kv[i + 1], kraken_error_last());
    }
    return n;
}

#define NODE(...) node_of((const char *const[]){__VA_ARGS__, NULL})
#define EMPTY_NODE() node_of(NULL)

/* The plan as "svc/mut,svc/mut" text. */
static void plan_text(const kraken_plan *plan, char *buf, size_t size)
{
    buf[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < kraken_plan_length(plan); i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s/%s", i ? "," : "",
                                kraken_plan_step_service(plan, i),
                                kraken_plan_step_mutation(plan, i));
}

/* Plan and compare with @p expect ("" = empty plan, NULL = no path). */
static void expect_plan(kraken_mutation_set *set, kraken_node *cfg, kraken_node *dsc,
                        const char *expect)
{
    kraken_plan *plan = (kraken_plan *)1;
    int rc = kraken_mutation_set_plan(set, cfg, dsc, &plan);
    if (!expect) {
        ck_assert_msg(rc == KRAKEN_ENOPATH, "expected no path, got %d (%s)", rc,
                      kraken_error_last());
        ck_assert_ptr_null(plan);
        return;
    }
    ck_assert_msg(rc == 0, "plan failed: %s", kraken_error_last());
    char text[1024];
    plan_text(plan, text, sizeof text);
    ck_assert_str_eq(text, expect);
    kraken_plan_free(plan);
}

static const char *const FULL_BOOT = "power/UKtoOFF,power/OFFtoON,pxe/NONEtoWAIT,pxe/WAITtoINIT,"
                                     "sync/INITtoSYNC";

/* ---- SPEC 4.3 reference scenarios -------------------------------------- */

START_TEST(scenario1_boot_from_unknown)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = EMPTY_NODE();
    expect_plan(set, cfg, dsc, FULL_BOOT);
    kraken_plan *plan;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    ck_assert_uint_eq(kraken_plan_cost(plan), 5);
    kraken_plan_free(plan);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

static int collect_stale(const kraken_murl *u, void *userdata)
{
    char *buf = userdata;
    strcat(buf, u->text);
    strcat(buf, ";");
    return 0;
}

START_TEST(scenario2_power_off_forgets)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/PhysState", "POWER_OFF", "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/RunState", "SYNC", PXE_STATE, "INIT");
    expect_plan(set, cfg, dsc, "power/ONtoOFF");

    /* The planned end state has RunState and PXE state unknown. */
    kraken_plan *plan;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    kraken_planner *p;
    ck_assert_int_eq(kraken__planner_get(set, &p), 0);
    const uint8_t *end = kraken__plan_state(plan, 1);
    for (size_t u = 0; u < kraken__planner_width(p); u++) {
        const char *name = kraken__planner_url_name(p, u);
        const char *value = kraken__planner_value_name(p, u, end[u]);
        if (strcmp(name, "PhysState") == 0)
            ck_assert_str_eq(value, "POWER_OFF");
        else
            ck_assert_uint_eq(end[u], 0);
    }
    kraken_plan_free(plan);

    /* The engine's view: once Dsc shows POWER_OFF, RunState and PXE state are stale. */
    char stale[256] = "";
    ck_assert_int_eq(kraken__mutation_set_stale(set, cfg, dsc, collect_stale, stale), 0);
    ck_assert_str_eq(stale, "");
    ck_assert_int_eq(kraken_node_set_text(dsc, "/PhysState", "POWER_OFF"), 0);
    ck_assert_int_eq(kraken__mutation_set_stale(set, cfg, dsc, collect_stale, stale), 0);
    ck_assert_str_eq(stale, "/RunState;" PXE_STATE ";");
    const kraken_mutation *m = kraken__mutation_find(set, "power", "ONtoOFF");
    ck_assert_ptr_nonnull(m);
    ck_assert(kraken__mutation_done(m, dsc));
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(scenario3_recover_from_hang)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "PHYS_HANG");
    expect_plan(set, cfg, dsc,
                "power/HANGtoOFF,power/OFFtoON,pxe/NONEtoWAIT,pxe/WAITtoINIT,sync/INITtoSYNC");
    /* A stale RunState under PHYS_HANG plans as unknown (knowledge rule on the start). */
    kraken_node *dsc2 = NODE("/PhysState", "PHYS_HANG", "/RunState", "SYNC");
    expect_plan(set, cfg, dsc2,
                "power/HANGtoOFF,power/OFFtoON,pxe/NONEtoWAIT,pxe/WAITtoINIT,sync/INITtoSYNC");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_node_free(dsc2);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(scenario4_error_needs_power_cycle)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/RunState", "ERROR", PXE_STATE, "INIT");
    expect_plan(set, cfg, dsc,
                "power/ONtoOFF,power/OFFtoON,pxe/NONEtoWAIT,pxe/WAITtoINIT,sync/INITtoSYNC");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(scenario5_no_path_on_other_platform)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "vbox");
    kraken_node *dsc = EMPTY_NODE();
    expect_plan(set, cfg, dsc, NULL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "no mutation path"));
    /* Cached "no path" answers the same way. */
    expect_plan(set, cfg, dsc, NULL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "RunState=SYNC"));
    /* A Dsc that already shows the goal needs no step even on vbox... */
    kraken_node *dsc2 = NODE("/PhysState", "POWER_ON", "/RunState", "SYNC");
    /* ...but PhysState cannot be known there (discovery needs /Platform=sim), so RunState is
     * unknown as well and there is still no path. */
    expect_plan(set, cfg, dsc2, NULL);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_node_free(dsc2);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(scenario6_already_there)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/PhysState", "POWER_ON", "/RunState", "SYNC", PXE_STATE, "INIT",
                            "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/RunState", "SYNC", PXE_STATE, "INIT");
    expect_plan(set, cfg, dsc, "");
    kraken_plan *plan;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    ck_assert_uint_eq(kraken_plan_length(plan), 0);
    ck_assert_uint_eq(kraken_plan_cost(plan), 0);
    ck_assert_ptr_null(kraken_plan_step_service(plan, 0));
    kraken_plan_free(plan);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(scenario7_restart_never_power_cycles)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/RunState", "SYNC");
    expect_plan(set, cfg, dsc, "");
    /* PhysState still unknown: RunState cannot be known either; discovery step first. */
    kraken_node *dsc2 = NODE("/RunState", "SYNC");
    expect_plan(set, cfg, dsc2, FULL_BOOT);
    /* The discovery step reports POWER_ON: the replanned plan is empty. */
    ck_assert_int_eq(kraken_node_set_text(dsc2, "/PhysState", "POWER_ON"), 0);
    expect_plan(set, cfg, dsc2, "");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_node_free(dsc2);
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- more planning rules ----------------------------------------------- */

START_TEST(exclude_on_static_and_mutator)
{
    static const decl_spec specs[] = {
        {"a", "INITtoRUN", {{SVC_A, "INIT", "RUN"}}, 1, {{0}}, 0, {{"/Arch", "arm64"}}, 1,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
        {"a", "RUNtoSTOP", {{SVC_A, "RUN", "STOP"}}, 1, {{0}}, 0, {{SVC_B, "ERROR"}}, 1,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
        {"b", "INITtoERROR", {{SVC_B, "INIT", "ERROR"}}, 1, {{0}}, 0, {{0}}, 0,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
    };
    kraken_mutation_set *set = set_of(specs, 3);
    /* Static exclude (/Arch read from Cfg). */
    kraken_node *cfg = NODE(SVC_A, "RUN", "/Arch", "amd64");
    kraken_node *dsc = NODE(SVC_A, "INIT");
    expect_plan(set, cfg, dsc, "a/INITtoRUN");
    ck_assert_int_eq(kraken_node_set_text(cfg, "/Arch", "arm64"), 0);
    expect_plan(set, cfg, dsc, NULL);
    kraken_node_free(cfg);
    /* Exclude on a mutator URL (/Services/b/State read from Dsc). */
    cfg = NODE(SVC_A, "STOP");
    kraken_node *dsc2 = NODE(SVC_A, "RUN", SVC_B, "INIT");
    expect_plan(set, cfg, dsc2, "a/RUNtoSTOP");
    ck_assert_int_eq(kraken_node_set_text(dsc2, SVC_B, "ERROR"), 0);
    expect_plan(set, cfg, dsc2, NULL);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_node_free(dsc2);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(zero_exclude_means_must_be_known)
{
    static const decl_spec specs[] = {
        /* needs a known /Nodename (static) */
        {"a", "INITtoRUN", {{SVC_A, "INIT", "RUN"}}, 1, {{0}}, 0, {{"/Nodename", ""}}, 1,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
        /* needs a known b state (mutator; NULL value = zero) */
        {"a", "RUNtoSTOP", {{SVC_A, "RUN", "STOP"}}, 1, {{0}}, 0, {{SVC_B, NULL}}, 1,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
        {"b", "discover", {{SVC_B, "UNKNOWN", "INIT"}}, 1, {{0}}, 0, {{0}}, 0,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
    };
    kraken_mutation_set *set = set_of(specs, 3);
    kraken_node *cfg = NODE(SVC_A, "RUN");
    kraken_node *dsc = NODE(SVC_A, "INIT");
    expect_plan(set, cfg, dsc, NULL);
    ck_assert_int_eq(kraken_node_set_text(cfg, "/Nodename", "n1"), 0);
    expect_plan(set, cfg, dsc, "a/INITtoRUN");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    /* b unknown: discover it first, then stop a. */
    cfg = NODE(SVC_A, "STOP");
    dsc = NODE(SVC_A, "RUN");
    expect_plan(set, cfg, dsc, "b/discover,a/RUNtoSTOP");
    ck_assert_int_eq(kraken_node_set_text(dsc, SVC_B, "RUN"), 0);
    expect_plan(set, cfg, dsc, "a/RUNtoSTOP");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(multi_url_mutation)
{
    static const decl_spec specs[] = {
        {"ab", "both", {{SVC_A, "INIT", "RUN"}, {SVC_B, "STOP", "RUN"}}, 2, {{0}}, 0, {{0}}, 0,
         KRAKEN_CONTEXT_SELF, 0, {0}, 0},
        {"a", "only", {{SVC_A, "INIT", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 3},
    };
    kraken_mutation_set *set = set_of(specs, 2);
    kraken_node *cfg = NODE(SVC_A, "RUN", SVC_B, "RUN");
    kraken_node *dsc = NODE(SVC_A, "INIT", SVC_B, "STOP");
    expect_plan(set, cfg, dsc, "ab/both");
    /* Only a matters: "both" is still cheaper than "only" (cost 3). */
    kraken_node *cfg2 = NODE(SVC_A, "RUN");
    expect_plan(set, cfg2, dsc, "ab/both");
    /* b not at STOP: "both" does not apply. */
    ck_assert_int_eq(kraken_node_set_text(dsc, SVC_B, "INIT"), 0);
    expect_plan(set, cfg2, dsc, "a/only");
    expect_plan(set, cfg, dsc, NULL);
    /* Done only when Dsc shows every "to". */
    const kraken_mutation *m = kraken__mutation_find(set, "ab", "both");
    kraken_node *d = NODE(SVC_A, "RUN");
    ck_assert(!kraken__mutation_done(m, d));
    ck_assert_int_eq(kraken_node_set_text(d, SVC_B, "RUN"), 0);
    ck_assert(kraken__mutation_done(m, d));
    kraken_node_free(d);
    kraken_node_free(cfg);
    kraken_node_free(cfg2);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(costs_choose_the_path)
{
    decl_spec specs[] = {
        {"a", "direct", {{SVC_A, "INIT", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 5},
        {"a", "stop", {{SVC_A, "INIT", "STOP"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 1},
        {"a", "start", {{SVC_A, "STOP", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 1},
    };
    kraken_node *cfg = NODE(SVC_A, "RUN");
    kraken_node *dsc = NODE(SVC_A, "INIT");
    kraken_mutation_set *set = set_of(specs, 3);
    expect_plan(set, cfg, dsc, "a/stop,a/start");
    kraken_plan *plan;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    ck_assert_uint_eq(kraken_plan_cost(plan), 2);
    kraken_plan_free(plan);
    kraken_mutation_set_free(set);
    specs[0].cost = 1; /* now the direct step is cheapest */
    set = set_of(specs, 3);
    expect_plan(set, cfg, dsc, "a/direct");
    kraken_mutation_set_free(set);
    specs[0].cost = 0; /* 0 means the default, 1 */
    set = set_of(specs, 3);
    expect_plan(set, cfg, dsc, "a/direct");
    ck_assert_uint_eq(kraken__mutation_find(set, "a", "direct")->cost, 1);
    kraken_mutation_set_free(set);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
}
END_TEST

/* Equal-cost alternatives: the (service id, mutation id) sequence that sorts first wins. */
START_TEST(equal_cost_tie_break)
{
    static const decl_spec specs[] = {
        {"y", "direct", {{SVC_A, "INIT", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 2},
        {"x", "stop", {{SVC_A, "INIT", "STOP"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 1},
        {"z", "start", {{SVC_A, "STOP", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 1},
        {"w", "start", {{SVC_A, "STOP", "RUN"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 1},
    };
    kraken_node *cfg = NODE(SVC_A, "RUN");
    kraken_node *dsc = NODE(SVC_A, "INIT");
    static const size_t orders[][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}};
    for (size_t run = 0; run < 20; run++) {
        kraken_mutation_set *set = NULL;
        ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
        for (size_t i = 0; i < 4; i++)
            add_spec(set, &specs[orders[run % 4][i]]);
        /* x/stop sorts before y/direct; then w/start before z/start. */
        expect_plan(set, cfg, dsc, "x/stop,w/start");
        kraken_mutation_set_remove_service(set, "x");
        expect_plan(set, cfg, dsc, "y/direct");
        kraken_mutation_set_free(set);
    }
    kraken_node_free(cfg);
    kraken_node_free(dsc);
}
END_TEST

/* Every combination of PhysState x RunState x PXE state in Dsc, for two Cfgs. */
static void plans_for_all_states(kraken_mutation_set *set, char out[][160])
{
    static const char *const phys[] = {NULL, "POWER_OFF", "POWER_ON", "POWER_CYCLE", "PHYS_HANG",
                                       "PHYS_ERROR"};
    static const char *const run[] = {NULL, "INIT", "SYNC", "ERROR"};
    static const char *const pxe[] = {NULL, "WAIT", "INIT"};
    size_t k = 0;
    for (int c = 0; c < 2; c++) {
        kraken_node *cfg = c ? NODE("/PhysState", "POWER_OFF", "/Platform", "sim")
                             : NODE("/RunState", "SYNC", "/Platform", "sim");
        for (size_t i = 0; i < 6 * 4 * 3; i++, k++) {
            kraken_node *dsc = EMPTY_NODE();
            if (phys[i % 6])
                ck_assert_int_eq(kraken_node_set_text(dsc, "/PhysState", phys[i % 6]), 0);
            if (run[i / 6 % 4])
                ck_assert_int_eq(kraken_node_set_text(dsc, "/RunState", run[i / 6 % 4]), 0);
            if (pxe[i / 24])
                ck_assert_int_eq(kraken_node_set_text(dsc, PXE_STATE, pxe[i / 24]), 0);
            kraken_plan *plan = NULL;
            int rc = kraken_mutation_set_plan(set, cfg, dsc, &plan);
            if (rc == KRAKEN_ENOPATH)
                strcpy(out[k], "(no path)");
            else
                plan_text(plan, out[k], 160);
            kraken_plan_free(plan);
            kraken_node_free(dsc);
        }
        kraken_node_free(cfg);
    }
}

START_TEST(registration_order_does_not_matter)
{
    static const size_t reversed[] = {6, 5, 4, 3, 2, 1, 0};
    static const size_t shuffled[] = {4, 0, 6, 2, 5, 3, 1};
    /* 2 Cfgs x (6 PhysStates x 4 RunStates x 3 PXE states) = 2 x 72 = 144 Dsc cases. */
    static char a[144][160], b[144][160], c[144][160];
    kraken_mutation_set *s1 = set_s(), *s2 = set_s_ordered(reversed),
                        *s3 = set_s_ordered(shuffled);
    plans_for_all_states(s1, a);
    plans_for_all_states(s2, b);
    plans_for_all_states(s3, c);
    size_t with_path = 0;
    for (size_t i = 0; i < 144; i++) {
        ck_assert_str_eq(a[i], b[i]);
        ck_assert_str_eq(a[i], c[i]);
        with_path += strcmp(a[i], "(no path)") != 0;
    }
    /* Only POWER_CYCLE and PHYS_ERROR (2 of 6 PhysStates) have no way out in S: they are
     * 2 x 4 x 3 = 24 of the 72 cases per Cfg, so 2 x (72 - 24) = 96 have a plan. */
    ck_assert_uint_eq(with_path, 96);
    kraken_mutation_set_free(s1);
    kraken_mutation_set_free(s2);
    kraken_mutation_set_free(s3);
}
END_TEST

START_TEST(cache_hit_returns_identical_plan)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = EMPTY_NODE();
    kraken_plan *p1, *p2, *p3;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &p1), 0);
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &p2), 0);
    ck_assert_ptr_eq(p1, p2); /* shared, refcounted */
    /* Another node in the same state gets the same plan. */
    kraken_uuid id = {{1, 2, 3}};
    kraken_node *cfg2 = NODE("/RunState", "SYNC", "/Platform", "sim", "/Nodename", "other");
    ck_assert_int_eq(kraken_node_set_id(cfg2, &id), 0);
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg2, dsc, &p3), 0);
    ck_assert_ptr_eq(p1, p3);
    kraken_plan_free(p3);
    /* A changed set plans afresh; old plans stay valid and unchanged. */
    static const decl_spec extra = {"sync", "SYNCtoINIT", {{"/RunState", "SYNC", "INIT"}}, 1, ON,
                                    {{0}}, 0, KRAKEN_CONTEXT_SELF, 0, {0}, 0};
    add_spec(set, &extra);
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &p3), 0);
    char t1[256], t3[256];
    plan_text(p1, t1, sizeof t1);
    plan_text(p3, t3, sizeof t3);
    ck_assert_str_eq(t1, FULL_BOOT);
    ck_assert_str_eq(t3, FULL_BOOT);
    kraken_plan_free(p3);
    kraken_mutation_set_free(set); /* plans outlive the set */
    plan_text(p2, t1, sizeof t1);
    ck_assert_str_eq(t1, FULL_BOOT);
    kraken_plan_free(p1);
    kraken_plan_free(p2);
    kraken_node_free(cfg);
    kraken_node_free(cfg2);
    kraken_node_free(dsc);
}
END_TEST

/* A value no declaration mentions: the goal still counts exactly. */
START_TEST(unmentioned_goal_value)
{
    static const decl_spec specs[] = {
        {"n", "name", {{"/Nodename", "", "n1"}}, 1, {{0}}, 0, {{0}}, 0, KRAKEN_CONTEXT_SELF, 0,
         {0}, 0},
    };
    kraken_mutation_set *set = set_of(specs, 1);
    kraken_node *cfg = NODE("/Nodename", "n1");
    kraken_node *dsc = EMPTY_NODE();
    expect_plan(set, cfg, dsc, "n/name");
    ck_assert_int_eq(kraken_node_set_text(cfg, "/Nodename", "other"), 0);
    expect_plan(set, cfg, dsc, NULL); /* no mutation produces "other" */
    ck_assert_int_eq(kraken_node_set_text(dsc, "/Nodename", "other"), 0);
    expect_plan(set, cfg, dsc, ""); /* already there */
    ck_assert_int_eq(kraken_node_set_text(dsc, "/Nodename", "third"), 0);
    expect_plan(set, cfg, dsc, NULL); /* two unmentioned values are not equal */
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(plan_bad_arguments)
{
    kraken_mutation_set *set = set_s();
    kraken_node *n = EMPTY_NODE();
    kraken_plan *plan = (kraken_plan *)1;
    ck_assert_int_eq(kraken_mutation_set_plan(NULL, n, n, &plan), KRAKEN_EINVAL);
    ck_assert_ptr_null(plan);
    ck_assert_int_eq(kraken_mutation_set_plan(set, NULL, n, &plan), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_mutation_set_plan(set, n, NULL, &plan), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_mutation_set_plan(set, n, n, NULL), KRAKEN_EINVAL);
    char *json = (char *)1;
    ck_assert_int_eq(kraken_mutation_set_graph_json(NULL, NULL, NULL, 0, &json), KRAKEN_EINVAL);
    ck_assert_ptr_null(json);
    ck_assert_int_eq(kraken_mutation_set_graph_json(set, NULL, NULL, 0, NULL), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_plan_length(NULL), 0);
    ck_assert_uint_eq(kraken_plan_cost(NULL), 0);
    ck_assert_ptr_null(kraken_plan_step_service(NULL, 0));
    ck_assert_ptr_null(kraken_plan_step_mutation(NULL, 0));
    kraken_plan_free(NULL);
    /* An empty set: nothing to plan, any goal is met. */
    kraken_mutation_set *empty;
    ck_assert_int_eq(kraken_mutation_set_new(&empty), 0);
    expect_plan(empty, n, n, "");
    ck_assert_int_eq(kraken_mutation_set_graph_json(empty, NULL, NULL, 0, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"edges\":[]"));
    free(json);
    kraken_mutation_set_free(empty);
    kraken_node_free(n);
    kraken_mutation_set_free(set);
}
END_TEST

/* 10 independent two-valued URLs span 2^10 states. The test lowers the state bound (default
 * KRAKEN_PLANNER_MAX_STATES) below that rather than build 100k states, which is slow under
 * sanitizers. */
#define WIDE 10
static kraken_mutation_set *set_wide(void)
{
    kraken_mutation_set *set;
    ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
    ck_assert_uint_eq(set->max_states, KRAKEN_PLANNER_MAX_STATES);
    set->max_states = 500;
    for (int i = 0; i < WIDE; i++) {
        char svc[16], url[64];
        snprintf(svc, sizeof svc, "s%02d", i);
        snprintf(url, sizeof url, "/Services/%s/State", svc);
        kraken_mutate m = {url, "UNKNOWN", "INIT"};
        kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "discover", .mutates = &m,
                                                           .n_mutates = 1);
        ck_assert_int_eq(kraken_mutation_set_add(set, svc, &d), 0);
    }
    return set;
}

START_TEST(state_space_limit)
{
    kraken_mutation_set *set = set_wide();
    char *json = (char *)1;
    ck_assert_int_eq(kraken_mutation_set_graph_json(set, NULL, NULL, 0, &json), KRAKEN_ELIMIT);
    ck_assert_ptr_null(json);
    kraken_node *cfg = EMPTY_NODE(), *dsc = EMPTY_NODE();
    for (int i = 0; i < WIDE; i++) {
        char url[64];
        snprintf(url, sizeof url, "/Services/s%02d/State", i);
        ck_assert_int_eq(kraken_node_set_text(cfg, url, "INIT"), 0);
    }
    kraken_plan *plan = (kraken_plan *)1;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), KRAKEN_ELIMIT);
    ck_assert_ptr_null(plan);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "500"));
    /* Under the bound, both work: the plan discovers each URL in (service, id) order. */
    set->max_states = 1u << WIDE;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    ck_assert_uint_eq(kraken_plan_length(plan), WIDE);
    ck_assert_str_eq(kraken_plan_step_service(plan, 0), "s00");
    ck_assert_str_eq(kraken_plan_step_service(plan, WIDE - 1), "s09");
    kraken_plan_free(plan);
    ck_assert_int_eq(kraken_mutation_set_graph_json(set, NULL, NULL, 0, &json), 0);
    free(json);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- the graph ---------------------------------------------------------- */

typedef struct parsed_graph {
    cJSON *root;
    cJSON *nodes, *edges;
} parsed_graph;

static parsed_graph graph_of(kraken_mutation_set *set, const kraken_node *cfg,
                             const kraken_plan *plan, size_t step)
{
    char *json = NULL;
    int rc = kraken_mutation_set_graph_json(set, cfg, plan, step, &json);
    ck_assert_msg(rc == 0, "graph: %s", kraken_error_last());
    parsed_graph g = {cJSON_Parse(json), NULL, NULL};
    free(json);
    ck_assert_ptr_nonnull(g.root);
    g.nodes = cJSON_GetObjectItem(g.root, "nodes");
    g.edges = cJSON_GetObjectItem(g.root, "edges");
    ck_assert(cJSON_IsArray(g.nodes) && cJSON_IsArray(g.edges));
    return g;
}

static const char *str_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    ck_assert_msg(cJSON_IsString(v), "missing string field %s", name);
    return v->valuestring;
}

/* Sorted "id label" lines of every vertex and edge, for comparing graphs. */
static char *graph_signature(const parsed_graph *g)
{
    size_t n = (size_t)cJSON_GetArraySize(g->nodes) + (size_t)cJSON_GetArraySize(g->edges);
    char **lines = calloc(n, sizeof *lines);
    size_t k = 0, total = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, g->nodes)
    {
        lines[k] = malloc(256);
        snprintf(lines[k], 256, "V %s %s", str_field(it, "id"), str_field(it, "label"));
        total += strlen(lines[k++]) + 1;
    }
    cJSON_ArrayForEach(it, g->edges)
    {
        lines[k] = malloc(256);
        snprintf(lines[k], 256, "E %s %s->%s %s", str_field(it, "id"), str_field(it, "from"),
                 str_field(it, "to"), str_field(it, "label"));
        total += strlen(lines[k++]) + 1;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: tiny */
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *t = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = t;
        }
    char *sig = calloc(total, 1);
    for (size_t i = 0; i < n; i++) {
        strcat(sig, lines[i]);
        strcat(sig, "\n");
        free(lines[i]);
    }
    free(lines);
    return sig;
}

static const cJSON *find_by(const cJSON *arr, const char *field, const char *value)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (strcmp(str_field(it, field), value) == 0)
            return it;
    }
    return NULL;
}

START_TEST(graph_of_spec_set)
{
    kraken_mutation_set *set = set_s();
    parsed_graph g = graph_of(set, NULL, NULL, 0);
    /* Vertices (PhysState, RunState, PXE): the chain {?,?,NONE} -> {OFF,?,NONE} ->
     * {ON,?,NONE} -> {ON,?,WAIT} -> {ON,INIT,INIT} -> {ON,SYNC,INIT}: 6. Edges: the 5 chain
     * steps (UKtoOFF, OFFtoON, NONEtoWAIT, WAITtoINIT, INITtoSYNC) plus ONtoOFF from each of
     * the 4 POWER_ON vertices, all back to {OFF,?,NONE} since powering off forgets RunState
     * and PXE state (their discovery conditions need POWER_ON): 5 + 4 = 9. */
    ck_assert_int_eq(cJSON_GetArraySize(g.nodes), 6);
    ck_assert_int_eq(cJSON_GetArraySize(g.edges), 9);
    const cJSON *start = find_by(g.nodes, "label",
                                 "PhysState=PHYS_UNKNOWN, RunState=UNKNOWN, PXE.Client/State=NONE");
    ck_assert_ptr_nonnull(start);
    ck_assert_ptr_nonnull(find_by(g.nodes, "label",
                                  "PhysState=POWER_ON, RunState=SYNC, PXE.Client/State=INIT"));
    const cJSON *e = find_by(g.edges, "label", "power/UKtoOFF");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(str_field(e, "from"), str_field(start, "id"));
    ck_assert_str_eq(str_field(e, "color"), "#848484");
    ck_assert_str_eq(str_field(start, "color"), "#97c2fc");
    /* Ids are unique. */
    char *sig = graph_signature(&g);
    const cJSON *a, *b;
    cJSON_ArrayForEach(a, g.nodes)
    {
        int same = 0;
        cJSON_ArrayForEach(b, g.nodes) same += strcmp(str_field(a, "id"), str_field(b, "id")) == 0;
        ck_assert_int_eq(same, 1);
    }
    cJSON_ArrayForEach(a, g.edges)
    {
        int same = 0;
        cJSON_ArrayForEach(b, g.edges) same += strcmp(str_field(a, "id"), str_field(b, "id")) == 0;
        ck_assert_int_eq(same, 1);
    }
    /* Stable across builds and registration orders. */
    parsed_graph g2 = graph_of(set, NULL, NULL, 0);
    char *sig2 = graph_signature(&g2);
    ck_assert_str_eq(sig, sig2);
    static const size_t reversed[] = {6, 5, 4, 3, 2, 1, 0};
    kraken_mutation_set *rev = set_s_ordered(reversed);
    parsed_graph g3 = graph_of(rev, NULL, NULL, 0);
    char *sig3 = graph_signature(&g3);
    ck_assert_str_eq(sig, sig3);
    /* Static facts from a Cfg: on vbox nothing applies. */
    kraken_node *vbox = NODE("/Platform", "vbox");
    parsed_graph g4 = graph_of(set, vbox, NULL, 0);
    ck_assert_int_eq(cJSON_GetArraySize(g4.nodes), 1);
    ck_assert_int_eq(cJSON_GetArraySize(g4.edges), 0);
    kraken_node *sim = NODE("/Platform", "sim");
    parsed_graph g5 = graph_of(set, sim, NULL, 0);
    char *sig5 = graph_signature(&g5);
    ck_assert_str_eq(sig, sig5);
    free(sig);
    free(sig2);
    free(sig3);
    free(sig5);
    cJSON_Delete(g.root);
    cJSON_Delete(g2.root);
    cJSON_Delete(g3.root);
    cJSON_Delete(g4.root);
    cJSON_Delete(g5.root);
    kraken_node_free(vbox);
    kraken_node_free(sim);
    kraken_mutation_set_free(rev);
    kraken_mutation_set_free(set);
}
END_TEST

static int count_color(const cJSON *arr, const char *color)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) n += strcmp(str_field(it, "color"), color) == 0;
    return n;
}

START_TEST(graph_highlights_plan)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = EMPTY_NODE();
    kraken_plan *plan;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &plan), 0);
    /* The plan is the 5-step chain; at step 2 (NONEtoWAIT, red) the other 4 plan steps are
     * green and the 4 ONtoOFF edges off the plan grey: the 9 edges of graph_of_spec_set. */
    parsed_graph g = graph_of(set, cfg, plan, 2);
    ck_assert_int_eq(count_color(g.edges, "green"), 4);
    ck_assert_int_eq(count_color(g.edges, "red"), 1);
    ck_assert_int_eq(count_color(g.edges, "#848484"), 4);
    const cJSON *cur = find_by(g.edges, "color", "red");
    ck_assert_str_eq(str_field(cur, "label"), "pxe/NONEtoWAIT");
    const cJSON *from = find_by(g.nodes, "id", str_field(cur, "from"));
    ck_assert_str_eq(str_field(from, "color"), "#fb7e81");
    ck_assert_str_eq(str_field(from, "label"),
                     "PhysState=POWER_ON, RunState=UNKNOWN, PXE.Client/State=NONE");
    /* plan vertices (green): the 6 chain vertices but the current one (red) */
    ck_assert_int_eq(count_color(g.nodes, "#7be141"), 5);
    cJSON_Delete(g.root);
    /* Past the end: all 5 plan steps green, nothing red. */
    g = graph_of(set, cfg, plan, 99);
    ck_assert_int_eq(count_color(g.edges, "green"), 5);
    ck_assert_int_eq(count_color(g.edges, "red"), 0);
    cJSON_Delete(g.root);
    kraken_plan_free(plan);

    /* A start state not reachable from all-unknown is added with what it reaches. */
    kraken_node *dsc4 = NODE("/PhysState", "POWER_ON", "/RunState", "ERROR", PXE_STATE, "INIT");
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc4, &plan), 0);
    /* 6 + the start {ON,ERROR,INIT}; 9 + its one way out (ONtoOFF: NONEtoWAIT, WAITtoINIT and
     * INITtoSYNC need PXE NONE, PXE WAIT, RunState INIT). The plan: ONtoOFF (red, current),
     * then the 4 steps OFFtoON .. INITtoSYNC (green). */
    g = graph_of(set, cfg, plan, 0);
    ck_assert_int_eq(cJSON_GetArraySize(g.nodes), 7);
    ck_assert_int_eq(cJSON_GetArraySize(g.edges), 10);
    cur = find_by(g.edges, "color", "red");
    ck_assert_str_eq(str_field(cur, "label"), "power/ONtoOFF");
    ck_assert_str_eq(str_field(find_by(g.nodes, "id", str_field(cur, "from")), "label"),
                     "PhysState=POWER_ON, RunState=ERROR, PXE.Client/State=INIT");
    ck_assert_int_eq(count_color(g.edges, "green"), 4);
    cJSON_Delete(g.root);
    /* A plan from before the set changed is not highlighted (its states are coded for the
     * old set). */
    static const decl_spec extra = {"sync", "SYNCtoINIT", {{"/RunState", "SYNC", "INIT"}}, 1, ON,
                                    {{0}}, 0, KRAKEN_CONTEXT_SELF, 0, {0}, 0};
    add_spec(set, &extra);
    g = graph_of(set, cfg, plan, 0); /* the 6 vertices again; 9 edges + SYNCtoINIT = 10 */
    ck_assert_int_eq(cJSON_GetArraySize(g.nodes), 6);
    ck_assert_int_eq(cJSON_GetArraySize(g.edges), 10);
    ck_assert_int_eq(count_color(g.edges, "green") + count_color(g.edges, "red"), 0);
    cJSON_Delete(g.root);
    kraken_plan_free(plan);
    kraken_node_free(dsc4);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- the cache (speed figures are in bench/bench_planner and doc/PERFORMANCE.md) ---- */

/* 100k plans of one state: one search, one shared plan (counts, not wall-clock time). */
START_TEST(cached_plans_are_shared)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON");
    enum { N = 100000 };
    int failed = 0;
    size_t steps = 0, other = 0;
    kraken_plan *first = NULL;
    ck_assert_int_eq(kraken_mutation_set_plan(set, cfg, dsc, &first), 0);
    for (int i = 0; i < N; i++) { /* no ck_assert inside: check logs every passing assert */
        kraken_plan *plan;
        failed += kraken_mutation_set_plan(set, cfg, dsc, &plan) != 0;
        steps += kraken_plan_length(plan);
        other += plan != first;
        kraken_plan_free(plan);
    }
    ck_assert_int_eq(failed, 0);
    ck_assert_uint_eq(steps, 3 * (size_t)N);
    ck_assert_uint_eq(other, 0);
    ck_assert_uint_eq(set->searches, 1);
    kraken_plan_free(first);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

/* "No path" is cached like a plan: one search; each node is named in its own message. */
START_TEST(no_path_is_cached)
{
    kraken_mutation_set *set = set_s();
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "vbox");
    kraken_node *cfg2 = NODE("/RunState", "SYNC", "/Platform", "vbox",
                             "/Id", "00000000-0000-4000-8000-000000000002");
    kraken_node *dsc = EMPTY_NODE();
    char id[KRAKEN_UUID_STRLEN + 1], want[512];
    for (int i = 0; i < 3; i++) {
        kraken_node *c = i == 2 ? cfg2 : cfg;
        expect_plan(set, c, dsc, NULL);
        snprintf(want, sizeof want,
                 "node %s: no mutation path from {PhysState=PHYS_UNKNOWN, RunState=UNKNOWN, "
                 "PXE.Client/State=NONE} to goal {RunState=SYNC}",
                 kraken_uuid_format(kraken_node_id(c), id));
        ck_assert_str_eq(kraken_error_last(), want);
    }
    ck_assert_uint_eq(set->searches, 1);
    kraken_node_free(cfg);
    kraken_node_free(cfg2);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- knowledge rule (SPEC 4.2) -------------------------------------------- */

/*
 * Discovery conditions are the NON-ZERO common requires: a/mu (RunState 0->INIT, requires
 * PhysState = 0) gives RunState no condition, b/mv (PhysState 0->OFF, requires Platform =
 * sim) makes PhysState unknown on vbox. Dsc {POWER_ON, INIT}, Cfg {RunState INIT, vbox}:
 * the plan is empty, in either registration order.
 */
START_TEST(zero_requires_are_no_condition)
{
    static const decl_spec specs[] = {
        {"a", "mu", {{"/RunState", NULL, "INIT"}}, 1, {{"/PhysState", NULL}}, 1, {{0}}, 0,
         KRAKEN_CONTEXT_ALL, 0, {0}, 0},
        {"b", "mv", {{"/PhysState", NULL, "POWER_OFF"}}, 1, SIM, {{0}}, 0, KRAKEN_CONTEXT_ALL, 0,
         {0}, 0},
    };
    for (int order = 0; order < 2; order++) {
        kraken_mutation_set *set = NULL;
        ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
        add_spec(set, &specs[order]);
        add_spec(set, &specs[1 - order]);
        kraken_node *cfg = NODE("/RunState", "INIT", "/Platform", "vbox");
        kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/RunState", "INIT");
        expect_plan(set, cfg, dsc, "");
        kraken_node_free(cfg);
        kraken_node_free(dsc);
        kraken_mutation_set_free(set);
    }
    /*
     * The same with the dependent URL checked first (URLs are checked in text order:
     * /Arch before /PhysState): with "PhysState = 0" as a condition Arch would be forgotten
     * while PhysState still shows POWER_ON, and a/mu would be planned.
     */
    static const decl_spec arch_first[] = {
        {"a", "mu", {{"/Arch", NULL, "amd64"}}, 1, {{"/PhysState", NULL}}, 1, {{0}}, 0,
         KRAKEN_CONTEXT_ALL, 0, {0}, 0},
        {"b", "mv", {{"/PhysState", NULL, "POWER_OFF"}}, 1, SIM, {{0}}, 0, KRAKEN_CONTEXT_ALL, 0,
         {0}, 0},
    };
    kraken_mutation_set *set = set_of(arch_first, 2);
    kraken_node *cfg = NODE("/Arch", "amd64", "/Platform", "vbox");
    kraken_node *dsc = NODE("/PhysState", "POWER_ON", "/Arch", "amd64");
    expect_plan(set, cfg, dsc, "");
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

static int count_stale(const kraken_murl *u, void *userdata)
{
    (void)u;
    (*(int *)userdata)++;
    return 0;
}

/*
 * The rule is applied until nothing changes: RunState <- PhysState <- Nodename <- Arch, each
 * known only while the one before has its value, checked in URL order (Arch first), so one
 * pass would forget only RunState.
 */
START_TEST(knowledge_rule_to_fixpoint)
{
    static const decl_spec specs[] = {
        {"c", "run", {{"/RunState", NULL, "INIT"}}, 1, SIM, {{0}}, 0, KRAKEN_CONTEXT_ALL, 0, {0},
         0},
        {"c", "phys", {{"/PhysState", NULL, "POWER_ON"}}, 1, {{"/RunState", "INIT"}}, 1, {{0}},
         0, KRAKEN_CONTEXT_ALL, 0, {0}, 0},
        {"c", "name", {{"/Nodename", NULL, "n1"}}, 1, ON, {{0}}, 0, KRAKEN_CONTEXT_ALL, 0, {0},
         0},
        {"c", "arch", {{"/Arch", NULL, "amd64"}}, 1, {{"/Nodename", "n1"}}, 1, {{0}}, 0,
         KRAKEN_CONTEXT_ALL, 0, {0}, 0},
    };
    kraken_mutation_set *set = set_of(specs, 4);
    kraken_node *cfg = NODE("/Arch", "amd64", "/Platform", "vbox");
    kraken_node *dsc = NODE("/RunState", "INIT", "/PhysState", "POWER_ON", "/Nodename", "n1",
                            "/Arch", "amd64");
    /* Nothing can be known on vbox: Arch is unknown too, and there is no way to learn it. */
    expect_plan(set, cfg, dsc, NULL);
    int stale = 0;
    ck_assert_int_eq(kraken__mutation_set_stale(set, cfg, dsc, count_stale, &stale), 0);
    ck_assert_int_eq(stale, 4);
    /* On sim everything holds and the goal is reached. */
    kraken_node *cfg_sim = NODE("/Arch", "amd64", "/Platform", "sim");
    expect_plan(set, cfg_sim, dsc, "");
    stale = 0;
    ck_assert_int_eq(kraken__mutation_set_stale(set, cfg_sim, dsc, count_stale, &stale), 0);
    ck_assert_int_eq(stale, 0);
    kraken_node_free(cfg);
    kraken_node_free(cfg_sim);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

/* A disabled mutation is not planned with (before or after it is declared). */
START_TEST(disabled_mutation_not_planned)
{
    kraken_mutation_set *set = NULL;
    ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "power", "UKtoOFF", true), 0);
    for (size_t i = 0; i < N_SPEC_S; i++)
        add_spec(set, &spec_s[i]);
    kraken_node *cfg = NODE("/RunState", "SYNC", "/Platform", "sim");
    kraken_node *dsc = EMPTY_NODE();
    expect_plan(set, cfg, dsc, NULL);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "power", "UKtoOFF", false), 0);
    expect_plan(set, cfg, dsc, FULL_BOOT);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "pxe", "NONEtoWAIT", true), 0);
    expect_plan(set, cfg, dsc, NULL);
    ck_assert_int_eq(kraken_mutation_set_disable(NULL, "pxe", "NONEtoWAIT", true), KRAKEN_EINVAL);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("planner");
    TCase *tc = tcase_create("scenarios");
    tcase_add_test(tc, scenario1_boot_from_unknown);
    tcase_add_test(tc, scenario2_power_off_forgets);
    tcase_add_test(tc, scenario3_recover_from_hang);
    tcase_add_test(tc, scenario4_error_needs_power_cycle);
    tcase_add_test(tc, scenario5_no_path_on_other_platform);
    tcase_add_test(tc, scenario6_already_there);
    tcase_add_test(tc, scenario7_restart_never_power_cycles);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_test(tc, exclude_on_static_and_mutator);
    tcase_add_test(tc, zero_exclude_means_must_be_known);
    tcase_add_test(tc, multi_url_mutation);
    tcase_add_test(tc, costs_choose_the_path);
    tcase_add_test(tc, equal_cost_tie_break);
    tcase_add_test(tc, registration_order_does_not_matter);
    tcase_add_test(tc, cache_hit_returns_identical_plan);
    tcase_add_test(tc, unmentioned_goal_value);
    tcase_add_test(tc, plan_bad_arguments);
    tcase_add_test(tc, state_space_limit);
    tcase_add_test(tc, zero_requires_are_no_condition);
    tcase_add_test(tc, knowledge_rule_to_fixpoint);
    tcase_add_test(tc, disabled_mutation_not_planned);
    suite_add_tcase(s, tc);
    tc = tcase_create("graph");
    tcase_add_test(tc, graph_of_spec_set);
    tcase_add_test(tc, graph_highlights_plan);
    suite_add_tcase(s, tc);
    tc = tcase_create("cache");
    tcase_add_test(tc, cached_plans_are_shared);
    tcase_add_test(tc, no_path_is_cached);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
