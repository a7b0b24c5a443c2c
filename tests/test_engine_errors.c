/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A module's discoveries and declarations that the engine refuses: the exact code and a message
 * that names the URL and the value (test_engine.c checks that they are refused at all).
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

static Suite *make_suite(void)
{
    Suite *s = suite_create("engine_errors");
    TCase *tc = tcase_create("module");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, refused_discoveries_name_url_and_value);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
