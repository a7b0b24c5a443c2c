/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Module API in-process (kraken/module.h): the testpower module as a service
 * of an engine, driving nodes from cold to SYNC; the calls a module makes and
 * their refusals; config changes; lifetimes; modules loaded with dlopen from
 * a module directory, and the ones the loader refuses.
 */
#include <kraken/module.h>

#include "internal.h" /* kraken__mutation_decl_abi: the size table of kraken_mutation_decl */
#include "modharness.h"
#include "modules/testpower.h"

#ifndef KRAKEN_TEST_MODULE_DIR
#define KRAKEN_TEST_MODULE_DIR "tests/modules"
#endif

static void setup(void)
{
    mh_setup();
}

static void teardown(void)
{
    mh_teardown();
}

static int destroyed;
static void count_destroy(void *p)
{
    (void)p;
    destroyed++;
}

static int events;

static void count_events(kraken_module *m, const kraken_event *ev, void *userdata)
{
    (void)m;
    (void)userdata;
    if (ev->type == KRAKEN_EVENT_STATE_CHANGE && strcmp(ev->url, "/PhysState") == 0)
        events++;
}

static bool events_at_least(void *n)
{
    return events >= (int)(intptr_t)n;
}

/* Three cold nodes reach SYNC through four steps each, every one answered by the module. */
static void drive_cold_to_sync(const kraken_module_desc *desc)
{
    testpower_stats stats = {0};
    kraken_module *m;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, desc, "power", &stats, NULL), 0);
    ck_assert_str_eq(kraken_module_service_id(m), "power");
    ck_assert_ptr_eq(kraken_module_descriptor(m), desc);
    ck_assert_ptr_eq(kraken_module_userdata(m), &stats);
    ck_assert(kraken_module_connected(m));
    for (unsigned i = 0; i < 3; i++)
        mh_add_node(i);
    mh_nodes all = {0, 3};
    ck_assert(mh_run_until(mh_all_synced, &all, MH_DEADLINE_MS));
    ck_assert_int_eq(stats.starts, 1);
    ck_assert_int_eq(stats.mutates, 12);
    ck_assert_int_eq(stats.interrupts, 0);
    ck_assert_str_eq(mh_self("/Services/power/State"), "RUN");
    kraken_uuid id = mh_node_id(1);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/PhysState"), "POWER_ON");
    ck_assert(mh_line_seen("power: start mode= label="));
    kraken_module_free(m);
    ck_assert_str_eq(mh_self("/Services/power/State"), "");
}

START_TEST(inproc_cold_to_sync)
{
    drive_cold_to_sync(testpower_desc());
}
END_TEST

START_TEST(inproc_calls)
{
    kraken_module *m;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, testpower_desc(), "power", NULL,
                                       count_destroy),
                     0);
    kraken_uuid id = mh_node_id(7);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_store_create(mh.store, n), 0);
    kraken_node_free(n);

    /* named discovery, text discovery */
    ck_assert_int_eq(kraken_module_discover_named(m, &id, "/PhysState", "NODE_OFF"), 0);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/PhysState"), "POWER_OFF");
    ck_assert_int_eq(kraken_module_discover(m, &id, "/RunState", "INIT"), 0);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/RunState"), "INIT");
    /* refused: not declared, bad value, late report */
    ck_assert_int_eq(kraken_module_discover(m, &id, "/Arch", "x86_64"), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "discovery by service 'power': '/Arch' was not declared discoverable");
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/Arch"), "");
    ck_assert_int_lt(kraken_module_discover(m, &id, "/RunState", "WARP"), 0);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/RunState"), "INIT");
    ck_assert_int_eq(kraken_module_report(m, &id, 999, "/RunState", "SYNC"), KRAKEN_ESTATE);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id, "/RunState"), "INIT");
    ck_assert_int_eq(kraken_module_fail(m, &id, 999, "x"), KRAKEN_ESTATE);
    ck_assert_int_eq(kraken_module_report(m, &id, 0, "/RunState", "SYNC"), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "module_report 'power': URL, value and request id are required");
    ck_assert_int_eq(kraken_module_discover(m, NULL, "/RunState", "SYNC"), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_discover 'power': a node id is required");

    /* query: copies of Cfg and Dsc */
    kraken_node *got;
    ck_assert_int_eq(kraken_module_query(m, KRAKEN_DSC, &id, &got), 0);
    char *text;
    ck_assert_int_eq(kraken_node_get_text(got, "/RunState", &text), 0);
    ck_assert_str_eq(text, "INIT");
    free(text);
    kraken_node_free(got);
    kraken_uuid absent = mh_node_id(99);
    ck_assert_int_eq(kraken_module_query(m, KRAKEN_CFG, &absent, &got), KRAKEN_ENOTFOUND);
    ck_assert_ptr_null(got);

    /* update Cfg */
    ck_assert_int_eq(kraken_module_update_cfg(m, &id, "/Nodename", "n7"), 0);
    ck_assert_str_eq(mh_get(KRAKEN_CFG, &id, "/Nodename"), "n7");
    ck_assert_int_lt(kraken_module_update_cfg(m, &id, "/NoSuchField", "1"), 0);

    /* state and log */
    ck_assert_int_eq(kraken_module_set_state(m, KRAKEN_SERVICE_ERROR, "disk on fire"), 0);
    ck_assert_str_eq(mh_self("/Services/power/State"), "ERROR");
    ck_assert_str_eq(mh_self("/Services/power/ErrorMsg"), "disk on fire");
    ck_assert_int_eq(kraken_module_set_state(m, (kraken_service_state)17, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_set_state 'power': bad state 17");
    kraken_module_log(m, KRAKEN_LOG_WARNING, "hello %d", 42);
    ck_assert(mh_line_seen("power: hello 42"));

    /* userdata replaced: the old one's destroy runs */
    destroyed = 0;
    kraken_module_set_userdata(m, &destroyed, count_destroy);
    ck_assert_int_eq(destroyed, 1);
    kraken_module_free(m);
    ck_assert_int_eq(destroyed, 2);
}
END_TEST

START_TEST(inproc_config_changed)
{
    testpower_stats stats = {0};
    kraken_module *m;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, testpower_desc(), "power", &stats, NULL),
                     0);
    const kraken_uuid *self = kraken_engine_self_id(mh.engine);
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power/Config",
                                           "{\"@type\": \"type.googleapis.com/TestPower.Config\","
                                           " \"label\": \"first\"}"),
                     0);
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power/State",
                                           "RUN"),
                     0);
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    ck_assert_str_eq(stats.last_config, "first");
    int configs = stats.configs;
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self,
                                           "/Services/power/Config/label", "second"),
                     0);
    ck_assert(mh_run_until(mh_line_seen, "power: config mode= label=second", MH_DEADLINE_MS));
    ck_assert_int_eq(stats.configs, configs + 1);
    ck_assert_str_eq(stats.last_config, "second");
    /* Cfg STOP stops it */
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power/State",
                                           "STOP"),
                     0);
    mh_svc_state stop = {"power", "STOP"};
    ck_assert(mh_run_until(mh_service_is, &stop, MH_DEADLINE_MS));
    ck_assert_int_eq(stats.stops, 1);
    kraken_module_free(m);
}
END_TEST

START_TEST(inproc_several_instances)
{
    testpower_stats a = {0}, b = {0};
    kraken_module *ma, *mb, *dup;
    ck_assert_int_eq(kraken_module_new(&ma, mh.engine, testpower_desc(), "power-a", &a, NULL), 0);
    ck_assert_int_eq(kraken_module_new(&mb, mh.engine, testpower_desc(), "power-b", &b, NULL), 0);
    ck_assert_int_eq(kraken_module_new(&dup, mh.engine, testpower_desc(), "power-a", NULL, NULL),
                     KRAKEN_EEXISTS);
    ck_assert_ptr_null(dup);
    const kraken_uuid *self = kraken_engine_self_id(mh.engine);
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power-a/State",
                                           "RUN"),
                     0);
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power-b/State",
                                           "RUN"),
                     0);
    mh_svc_state ra = {"power-a", "RUN"}, rb = {"power-b", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &ra, MH_DEADLINE_MS));
    ck_assert(mh_run_until(mh_service_is, &rb, MH_DEADLINE_MS));
    ck_assert_int_eq(a.starts, 1);
    ck_assert_int_eq(b.starts, 1);
    kraken_module_free(ma);
    kraken_module_free(mb);
}
END_TEST

/* Any free order: the module after its engine. */
START_TEST(inproc_free_after_engine)
{
    kraken_module *m;
    destroyed = 0;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, testpower_desc(), "power", NULL,
                                       count_destroy),
                     0);
    kraken_engine_free(mh.engine);
    mh.engine = NULL;
    ck_assert_int_eq(destroyed, 0);
    kraken_uuid id = mh_node_id(1);
    ck_assert_int_eq(kraken_module_query(m, KRAKEN_CFG, &id, &(kraken_node *){NULL}),
                     KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(), "module_query 'power': the engine was freed");
    kraken_module_free(m);
    ck_assert_int_eq(destroyed, 1);
}
END_TEST

static int detaches;
static void count_detach(kraken_module *m, void *userdata)
{
    /* The instance's calls are refused from here on: its engine is going. */
    ck_assert_ptr_null(kraken_service_engine(kraken_module_service(m)));
    ck_assert_ptr_eq(userdata, &detaches);
    detaches++;
}

/* The detach hook: once when the engine goes first, never when the instance goes first. */
START_TEST(inproc_detach_hook)
{
    kraken_module *m, *early;
    detaches = 0;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, testpower_desc(), "power", &detaches, NULL),
                     0);
    ck_assert_int_eq(kraken_module_new(&early, mh.engine, testpower_desc(), "early", &detaches,
                                       NULL),
                     0);
    ck_assert_int_eq(kraken_module_set_detach_hook(m, count_detach), 0);
    ck_assert_int_eq(kraken_module_set_detach_hook(early, count_detach), 0);
    kraken_module_free(early);
    ck_assert_int_eq(detaches, 0);
    ck_assert_int_eq(kraken_module_set_detach_hook(NULL, count_detach), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_set_detach_hook: a module is required");
    kraken_engine_free(mh.engine);
    mh.engine = NULL;
    ck_assert_int_eq(detaches, 1);
    ck_assert_int_eq(kraken_module_set_state(m, KRAKEN_SERVICE_RUN, NULL), KRAKEN_ESTATE);
    kraken_error_clear();
    kraken_module_free(m);
    ck_assert_int_eq(detaches, 1);
}
END_TEST

START_TEST(desc_refused)
{
    kraken_module_desc d = *testpower_desc();
    kraken_module *m = (kraken_module *)1;
    d.abi_version = 1; /* a module built before kraken_mutation_decl had a version */
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(kraken_error_last(),
                     "module_new: module descriptor for module ABI 1, this libkraken has 2");
    d = *testpower_desc();
    d.name = NULL;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_new: the module descriptor has no name");
    d = *testpower_desc();
    d.config_schema = "No.Such";
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(),
                     "module 'testpower': config schema 'No.Such' is not registered");
    /* A bad mutation: nothing of the instance is left. */
    static const kraken_mutate bad[] = {{"/NoSuchField", "A", "B"}};
    kraken_mutation_decl decl = KRAKEN_MUTATION_DECL_INIT(.id = "bad", KRAKEN_DECL_MUTATES(bad));
    d = *testpower_desc();
    d.mutations = &decl;
    d.n_mutations = 1;
    ck_assert_int_lt(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), 0);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "module 'testpower' mutation 'bad': "));
    ck_assert_ptr_null(kraken_engine_find_service(mh.engine, "power"));
    ck_assert_str_eq(mh_self("/Services/power/State"), "");
}
END_TEST

/*
 * kraken_module_desc.mutations: element 0's version gives the stride and every element must
 * carry it; a refused array adds nothing. A v1 caller's array, at the v1 stride of the size
 * table in a block of exactly that size, runs as usual.
 */
START_TEST(desc_mutation_versions)
{
    const kraken_module_desc *tp = testpower_desc();
    kraken_mutation_decl copy[8];
    ck_assert_uint_le(tp->n_mutations, 8);
    ck_assert_uint_ge(tp->n_mutations, 2);
    memcpy(copy, tp->mutations, tp->n_mutations * sizeof copy[0]);
    kraken_module_desc d = *tp;
    d.mutations = copy;
    kraken_mutation_set *set = kraken_engine_mutations(mh.engine);
    size_t n_before = kraken_mutation_set_count(set);
    kraken_module *m = (kraken_module *)1;

    copy[1].version = 0;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(kraken_error_last(),
                     "module_new: module 'testpower': mutation 1 'poweron': kraken_mutation_decl "
                     "version 0, but element 0 has version 1 (every element of an array carries "
                     "the same version)");
    copy[1].version = KRAKEN_MUTATION_DECL_VERSION;
    copy[0].version = 0;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "module_new: module 'testpower': mutation 0 'discover': kraken_mutation_decl "
                     "version 0 (set .version = KRAKEN_MUTATION_DECL_VERSION; this libkraken "
                     "knows 1..1)");
    for (size_t i = 0; i < tp->n_mutations; i++)
        copy[i].version = KRAKEN_MUTATION_DECL_VERSION + 1;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "module_new: module 'testpower': mutation 0 'discover': kraken_mutation_decl "
                     "version 2 (set .version = KRAKEN_MUTATION_DECL_VERSION; this libkraken "
                     "knows 1..1)");
    /* the connect path checks the descriptor the same way before it opens a socket */
    kraken_module_connect_options o;
    ck_assert_int_eq(kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION),
                     0);
    o.socket_path = "/nonexistent/kraken-test.sock";
    ck_assert_int_eq(kraken_module_connect(&m, mh.base, &d, &o, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "module_connect: module 'testpower': "
                                                      "mutation 0 'discover': kraken_mutation_decl "
                                                      "version 2 "));
    ck_assert_ptr_null(kraken_engine_find_service(mh.engine, "power"));
    ck_assert_str_eq(mh_self("/Services/power/State"), "");
    ck_assert_uint_eq(kraken_mutation_set_count(set), n_before);

    size_t v1 = kraken__struct_size(&kraken__mutation_decl_abi, 1);
    char *block = malloc(tp->n_mutations * v1);
    ck_assert_ptr_nonnull(block);
    for (size_t i = 0; i < tp->n_mutations; i++)
        memcpy(block + i * v1, &tp->mutations[i], v1);
    d.mutations = (const kraken_mutation_decl *)(void *)block;
    drive_cold_to_sync(&d);
    free(block);
}
END_TEST

START_TEST(dlopen_module)
{
    kraken_module_library *lib;
    ck_assert_int_eq(kraken_module_library_open(&lib, KRAKEN_TEST_MODULE_DIR, "testpower"), 0);
    const kraken_module_desc *d = kraken_module_library_descriptor(lib);
    ck_assert_str_eq(d->name, "testpower");
    drive_cold_to_sync(d);
    kraken_module_library_close(lib);
}
END_TEST

START_TEST(dlopen_refused)
{
    kraken_module_library *lib = (kraken_module_library *)1;
    ck_assert_int_eq(kraken_module_library_open(&lib, KRAKEN_TEST_MODULE_DIR, "wrongabi"),
                     KRAKEN_EINVAL);
    ck_assert_ptr_null(lib);
    ck_assert_str_eq(kraken_error_last(),
                     "module " KRAKEN_TEST_MODULE_DIR "/wrongabi.so: built for module ABI 3, this "
                     "libkraken has 2; rebuild it against this libkraken");
    ck_assert_int_eq(kraken_module_library_open(&lib, KRAKEN_TEST_MODULE_DIR, "noentry"),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module " KRAKEN_TEST_MODULE_DIR
                                          "/noentry.so: no symbol 'kraken_module_entry' (not a "
                                          "kraken module)");
    ck_assert_int_eq(kraken_module_library_open(&lib, KRAKEN_TEST_MODULE_DIR, "absent"),
                     KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(),
                                 "module " KRAKEN_TEST_MODULE_DIR "/absent.so: cannot load: "));
    ck_assert_int_eq(kraken_module_library_open(&lib, NULL, "testpower"), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_library_open: 'testpower' is a bare module "
                                          "name but no module directory was given");
    kraken_module_library_close(NULL);
}
END_TEST

/* A step failed by the module: FAILED with its reason, then back-off (no fail_to recorded). */
START_TEST(inproc_fail_and_events)
{
    events = 0;
    kraken_module_desc d = *testpower_desc();
    d.event_types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE);
    d.event_url_pattern = "/PhysState";
    d.handlers.event = NULL;
    kraken_module *m = (kraken_module *)1;
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "module_new: module 'testpower': event_types without an event handler");
    d.handlers.event = count_events;
    testpower_stats stats = {0};
    const kraken_uuid *self = kraken_engine_self_id(mh.engine);
    ck_assert_int_eq(kraken_module_new(&m, mh.engine, &d, "power", &stats, NULL), 0);
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self, "/Services/power/Config",
                                           "{\"@type\": \"type.googleapis.com/TestPower.Config\","
                                           " \"mode\": \"fail\"}"),
                     0);
    mh_add_node(0);
    ck_assert(mh_run_until(mh_mutation_seen, "FAILED power/discover: testpower is in fail mode",
                           MH_DEADLINE_MS));
    kraken_uuid id = mh_node_id(0);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(mh.engine, &id, &st), 0);
    ck_assert_uint_ge(st.failures, 1);
    ck_assert_ptr_nonnull(strstr(st.reason, "power/discover failed: testpower is in fail mode"));
    kraken_plan_status_clear(&st);
    ck_assert_int_eq(events, 0); /* nothing changed /PhysState yet */
    /* the module recovers; the events of its own discoveries reach its event handler */
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, self,
                                           "/Services/power/Config/mode", "fast"),
                     0);
    mh_nodes n0 = {0, 1};
    ck_assert(mh_run_until(mh_all_synced, &n0, MH_DEADLINE_MS));
    ck_assert(mh_run_until(events_at_least, (void *)2, MH_DEADLINE_MS)); /* OFF, then ON */
    kraken_module_free(m);
}
END_TEST

static Suite *module_suite(void)
{
    Suite *s = suite_create("module");
    TCase *tc = tcase_create("inproc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, inproc_cold_to_sync);
    tcase_add_test(tc, inproc_calls);
    tcase_add_test(tc, inproc_config_changed);
    tcase_add_test(tc, inproc_several_instances);
    tcase_add_test(tc, inproc_free_after_engine);
    tcase_add_test(tc, inproc_detach_hook);
    tcase_add_test(tc, desc_refused);
    tcase_add_test(tc, desc_mutation_versions);
    tcase_add_test(tc, inproc_fail_and_events);
    tcase_add_test(tc, dlopen_module);
    tcase_add_test(tc, dlopen_refused);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(module_suite)
