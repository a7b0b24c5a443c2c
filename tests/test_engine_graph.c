/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The engine's graph JSON (kraken_engine_graph_json, REST 9.2), asserted exactly: the vis.js
 * shape (an object with exactly "nodes" and "edges"; each vertex exactly {id, label, color},
 * each edge exactly {from, to, id, label, color}; ids 16 hex digits, unique; every edge between
 * listed vertices), the vertices and edges of SPEC 4.3's set S as the simulated power + PXE
 * module declares it, and the highlighting of one node's plan.
 */
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "testutil.h"

#define SELF "c0ffee00-0000-4000-8000-000000000001"
#define NODE_ID "00000000-0000-4000-8000-000000000001"
#define DEADLINE_MS 4000

#define GREY "#848484"       /* an edge off the plan */
#define BLUE "#97c2fc"       /* a vertex off the plan */
#define GREEN_V "#7be141"    /* a plan vertex */
#define RED_V "#fb7e81"      /* the node's current vertex */

static struct event_base *base;
static kraken_engine *engine;
static kraken_sim *simulator;

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    ck_assert_int_eq(kraken_uuid_parse(&o.self_id, SELF), 0);
    o.timeout_scale = 0.002;
    ck_assert_int_eq(kraken_engine_new(&engine, base, NULL, &o), 0);
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 600000; /* steps are dispatched but never answered: the plan stays put */
    ck_assert_int_eq(kraken_sim_new(&simulator, engine, &so), 0);
}

static void teardown(void)
{
    kraken_sim_free(simulator);
    kraken_engine_free(engine);
    event_base_free(base);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static cJSON *graph(const kraken_uuid *node)
{
    char *json = NULL;
    int rc = kraken_engine_graph_json(engine, node, &json);
    ck_assert_msg(rc == 0, "graph: %s", kraken_error_last());
    cJSON *root = cJSON_Parse(json);
    ck_assert_msg(root != NULL, "not JSON: %s", json);
    free(json);
    return root;
}

/* @p o is an object with exactly the string members @p names (n of them). */
static void expect_members(const cJSON *o, const char *const *names, int n)
{
    ck_assert(cJSON_IsObject(o));
    ck_assert_int_eq(cJSON_GetArraySize(o), n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, names[i]);
        ck_assert_msg(cJSON_IsString(v), "member %s missing or not a string", names[i]);
    }
}

static const char *str(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name)->valuestring;
}

static bool is_id(const char *s)
{
    if (strlen(s) != 16)
        return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s) || isupper((unsigned char)*s))
            return false;
    return true;
}

static const cJSON *find(const cJSON *arr, const char *field, const char *value)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (strcmp(str(it, field), value) == 0)
            return it;
    }
    return NULL;
}

static int count(const cJSON *arr, const char *field, const char *value)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) n += strcmp(str(it, field), value) == 0;
    return n;
}

/* The vis.js shape; returns the arrays. */
static void expect_shape(const cJSON *root, const cJSON **nodes, const cJSON **edges)
{
    ck_assert(cJSON_IsObject(root));
    ck_assert_int_eq(cJSON_GetArraySize(root), 2);
    *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    *edges = cJSON_GetObjectItemCaseSensitive(root, "edges");
    ck_assert(cJSON_IsArray(*nodes) && cJSON_IsArray(*edges));
    static const char *const vkeys[] = {"id", "label", "color"};
    static const char *const ekeys[] = {"from", "to", "id", "label", "color"};
    const cJSON *v, *e;
    cJSON_ArrayForEach(v, *nodes)
    {
        expect_members(v, vkeys, 3);
        ck_assert_msg(is_id(str(v, "id")), "vertex id '%s'", str(v, "id"));
        ck_assert_int_eq(count(*nodes, "id", str(v, "id")), 1);
    }
    cJSON_ArrayForEach(e, *edges)
    {
        expect_members(e, ekeys, 5);
        ck_assert_msg(is_id(str(e, "id")), "edge id '%s'", str(e, "id"));
        ck_assert_int_eq(count(*edges, "id", str(e, "id")), 1);
        ck_assert_ptr_nonnull(find(*nodes, "id", str(e, "from")));
        ck_assert_ptr_nonnull(find(*nodes, "id", str(e, "to")));
    }
}

/* The edge labelled @p label leaving the vertex labelled @p from, ending at @p to. */
static const cJSON *expect_edge(const cJSON *nodes, const cJSON *edges, const char *from,
                                const char *label, const char *to)
{
    const cJSON *vf = find(nodes, "label", from), *vt = find(nodes, "label", to);
    ck_assert_msg(vf != NULL, "no vertex %s", from);
    ck_assert_msg(vt != NULL, "no vertex %s", to);
    const cJSON *e;
    cJSON_ArrayForEach(e, edges)
    {
        if (strcmp(str(e, "label"), label) == 0 && strcmp(str(e, "from"), str(vf, "id")) == 0) {
            ck_assert_str_eq(str(e, "to"), str(vt, "id"));
            return e;
        }
    }
    ck_abort_msg("no edge %s from %s", label, from);
    return NULL;
}

/* The vertices of S: (PhysState, RunState, PXE state). */
#define V_UNKNOWN "PhysState=PHYS_UNKNOWN, RunState=UNKNOWN, PXE.Client/State=NONE"
#define V_OFF "PhysState=POWER_OFF, RunState=UNKNOWN, PXE.Client/State=NONE"
#define V_ON "PhysState=POWER_ON, RunState=UNKNOWN, PXE.Client/State=NONE"
#define V_WAIT "PhysState=POWER_ON, RunState=UNKNOWN, PXE.Client/State=WAIT"
#define V_INIT "PhysState=POWER_ON, RunState=INIT, PXE.Client/State=INIT"
#define V_SYNC "PhysState=POWER_ON, RunState=SYNC, PXE.Client/State=INIT"

/*
 * The whole set: the chain of 6 vertices and 9 edges — the 5 chain steps plus ONtoOFF from
 * each of the 4 POWER_ON vertices back to V_OFF (powering off forgets RunState and PXE state),
 * nothing highlighted.
 */
static void expect_set_s(const cJSON *nodes, const cJSON *edges)
{
    ck_assert_int_eq(cJSON_GetArraySize(nodes), 6);
    ck_assert_int_eq(cJSON_GetArraySize(edges), 9);
    expect_edge(nodes, edges, V_UNKNOWN, "power/UKtoOFF", V_OFF);
    expect_edge(nodes, edges, V_OFF, "power/OFFtoON", V_ON);
    expect_edge(nodes, edges, V_ON, "pxe/NONEtoWAIT", V_WAIT);
    expect_edge(nodes, edges, V_WAIT, "pxe/WAITtoINIT", V_INIT);
    expect_edge(nodes, edges, V_INIT, "sync/INITtoSYNC", V_SYNC);
    static const char *const on[] = {V_ON, V_WAIT, V_INIT, V_SYNC};
    for (size_t i = 0; i < 4; i++)
        expect_edge(nodes, edges, on[i], "power/ONtoOFF", V_OFF);
}

START_TEST(whole_set_exact)
{
    cJSON *root = graph(NULL);
    const cJSON *nodes, *edges;
    expect_shape(root, &nodes, &edges);
    expect_set_s(nodes, edges);
    ck_assert_int_eq(count(nodes, "color", BLUE), 6);
    ck_assert_int_eq(count(edges, "color", GREY), 9);
    /* ids are content hashes: the same JSON again */
    cJSON *again = graph(NULL);
    ck_assert(cJSON_Compare(root, again, true));
    cJSON_Delete(again);
    cJSON_Delete(root);
}
END_TEST

static bool dispatched(void) { return kraken_sim_dispatched(simulator, NULL) > 0; }

START_TEST(node_plan_highlighted)
{
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, NODE_ID), 0);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_store_create(kraken_engine_store(engine), n), 0);
    kraken_node_free(n);
    /* the first step (UKtoOFF) is dispatched and never answered */
    uint64_t deadline = mono_ms() + DEADLINE_MS;
    while (!dispatched() && mono_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_uint_eq(kraken_sim_dispatched(simulator, "UKtoOFF"), 1);

    cJSON *root = graph(&id);
    const cJSON *nodes, *edges;
    expect_shape(root, &nodes, &edges);
    expect_set_s(nodes, edges);
    /* At step 0 of the 5-step chain: UKtoOFF is current (red) from the node's vertex (red);
     * the 4 later steps are green, the 4 ONtoOFF edges grey; the 5 vertices after the current
     * one are plan vertices (green). */
    const cJSON *cur = expect_edge(nodes, edges, V_UNKNOWN, "power/UKtoOFF", V_OFF);
    ck_assert_str_eq(str(cur, "color"), "red");
    ck_assert_int_eq(count(edges, "color", "red"), 1);
    ck_assert_int_eq(count(edges, "color", "green"), 4);
    ck_assert_int_eq(count(edges, "color", GREY), 4);
    ck_assert_str_eq(str(find(nodes, "label", V_UNKNOWN), "color"), RED_V);
    ck_assert_int_eq(count(nodes, "color", GREEN_V), 5);
    ck_assert_str_eq(str(expect_edge(nodes, edges, V_INIT, "sync/INITtoSYNC", V_SYNC), "color"),
                     "green");
    ck_assert_str_eq(str(expect_edge(nodes, edges, V_ON, "power/ONtoOFF", V_OFF), "color"), GREY);
    cJSON_Delete(root);

    /* a node the engine does not know: an error naming it, no JSON */
    kraken_uuid nobody;
    ck_assert_int_eq(kraken_uuid_parse(&nobody, "00000000-0000-4000-8000-0000000000ff"), 0);
    char *json = (char *)1;
    ck_assert_int_eq(kraken_engine_graph_json(engine, &nobody, &json), KRAKEN_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "00000000-0000-4000-8000-0000000000ff"));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("engine_graph");
    TCase *tc = tcase_create("graph");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, whole_set_exact);
    tcase_add_test(tc, node_plan_highlighted);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
