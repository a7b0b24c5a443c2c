/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the engine refuses from a module: discoveries and declarations that do not fit (the exact
 * code and a message naming the URL and the value; test_engine.c checks that they are refused
 * at all), and answers to a step from a service it was not dispatched to.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define SELF "c0ffee00-0000-4000-8000-000000000001"
#define NODE_ID "00000000-0000-4000-8000-000000000001"

static struct event_base *base;
static kraken_engine *engine;
static kraken_sim *simulator;
static kraken_uuid node;

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    ck_assert_int_eq(kraken_uuid_parse(&o.self_id, SELF), 0);
    ck_assert_int_eq(kraken_engine_new(&engine, base, NULL, &o), 0);
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 600000; /* a dispatched step is never answered by the simulator itself */
    ck_assert_int_eq(kraken_sim_new(&simulator, engine, &so), 0);
    /* a node on another platform: nothing in the set applies, nothing runs */
    ck_assert_int_eq(kraken_uuid_parse(&node, NODE_ID), 0);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &node), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "vbox"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_store_create(kraken_engine_store(engine), n), 0);
    kraken_node_free(n);
}

static void teardown(void)
{
    kraken_sim_free(simulator);
    kraken_engine_free(engine);
    event_base_free(base);
}

/* @p rc is @p code and the last error is exactly @p message. */
static void expect_error(int rc, int code, const char *message)
{
    ck_assert_msg(rc == code, "%s, want %s (%s)", kraken_err_name(rc), kraken_err_name(code),
                  kraken_error_last());
    ck_assert_str_eq(kraken_error_last(), message);
}

static bool dsc_phys_unset(void)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_store_get_value(kraken_engine_store(engine), KRAKEN_DSC, &node, "/PhysState",
                                    &v);
    bool unset = rc == 0 && kraken_value_is_zero(&v);
    kraken_value_clear(&v);
    return unset;
}

START_TEST(refused_discoveries_name_url_and_value)
{
    kraken_service *power = kraken_engine_find_service(engine, "power");
    kraken_service *pxe = kraken_engine_find_service(engine, "pxe");
    ck_assert_ptr_nonnull(power);
    ck_assert_ptr_nonnull(pxe);

    expect_error(kraken_service_discover_text(power, &node, "/PhysState", "BOGUS"), KRAKEN_ETYPE,
                 "discovery by service 'power': URL '/PhysState': 'BOGUS' is not a member of "
                 "enum PhysState");
    kraken_value s = kraken_value_string("POWER_ON");
    expect_error(kraken_service_discover(power, &node, "/PhysState", &s), KRAKEN_ETYPE,
                 "discovery by service 'power': /PhysState: expected enum PhysState, got string");
    kraken_value_clear(&s);
    expect_error(kraken_service_discover_text(power, &node, "/NoSuchField", "1"), KRAKEN_EPARSE,
                 "discovery by service 'power': URL '/NoSuchField': kraken.Node has no field "
                 "'NoSuchField'");
    ck_assert(dsc_phys_unset()); /* nothing landed */

    expect_error(kraken_service_declare_discoverable(pxe, "/RunState", "BAD", "NOPE"),
                 KRAKEN_ETYPE,
                 "service 'pxe': value 'BAD': URL '/RunState': 'NOPE' is not a member of enum "
                 "RunState");
    ck_assert_int_eq(kraken_service_discover_named(pxe, &node, "/RunState", "BAD"),
                     KRAKEN_ENOTFOUND); /* the refused name was not kept */
    expect_error(kraken_service_declare_discoverable(pxe, "/No/Such", NULL, NULL), KRAKEN_EPARSE,
                 "service 'pxe': discoverable: URL '/No/Such': kraken.Node has no field 'No'");
}
END_TEST

/*
 * Only the service a step was dispatched to may answer it, and only for the request in flight.
 * Request ids count from 1 per engine; the node's first step (power/UKtoOFF) is request 1.
 */
START_TEST(only_the_dispatched_service_answers)
{
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, "00000000-0000-4000-8000-000000000002"), 0);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/ParentId", SELF), 0);
    ck_assert_int_eq(kraken_store_create(kraken_engine_store(engine), n), 0);
    kraken_node_free(n);
    for (int i = 0; i < 1000 && kraken_sim_dispatched(simulator, "UKtoOFF") == 0; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_uint_eq(kraken_sim_dispatched(simulator, NULL), 1);

    kraken_service *power = kraken_engine_find_service(engine, "power");
    kraken_service *pxe = kraken_engine_find_service(engine, "pxe");
    char want[256];
    for (uint64_t req = 1; req <= 4; req++) {
        /* pxe answering power's step, under any request id: refused */
        ck_assert_int_eq(kraken_service_report_text(pxe, &id, req, "/PhysState", "POWER_OFF"),
                         KRAKEN_ESTATE);
        snprintf(want, sizeof want, "service_report_text: request %llu of service 'pxe' on node "
                 "00000000-0000-4000-8000-000000000002 is not in flight (a late answer?)",
                 (unsigned long long)req);
        ck_assert_str_eq(kraken_error_last(), want);
        ck_assert_int_eq(kraken_service_fail(pxe, &id, req, "not mine"), KRAKEN_ESTATE);
    }
    /* power under another id: refused, naming the request in flight */
    ck_assert_int_eq(kraken_service_fail(power, &id, 2, "stale"), KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(),
                     "service_fail: request 2 of service 'power' on node "
                     "00000000-0000-4000-8000-000000000002 is not in flight (a late answer? "
                     "request 1 power/UKtoOFF is)");
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(engine, &id, &st), 0);
    ck_assert_uint_eq(st.failures, 0); /* none of it counted */
    kraken_plan_status_clear(&st);
    /* power under request 1: the answer lands */
    ck_assert_int_eq(kraken_service_report_text(power, &id, 1, "/PhysState", "POWER_OFF"), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("engine_errors");
    TCase *tc = tcase_create("module");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, refused_discoveries_name_url_and_value);
    tcase_add_test(tc, only_the_dispatched_service_answers);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
