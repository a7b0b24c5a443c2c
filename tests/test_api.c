/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * API conveniences and conventions (issue 7): versioned option structs with
 * *_options_init() for bindings, loading a Dsc state file into a store in one
 * call, and finding a node by nodename.
 */
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kraken/kraken.h"
#include "testutil.h"

static void on_any_event(const kraken_event *ev, void *userdata)
{
    (void)ev;
    (void)userdata;
}

START_TEST(options_init_fills_defaults_and_checks_the_version)
{
    static const kraken_engine_options macro = KRAKEN_ENGINE_OPTIONS_INIT;
    kraken_engine_options eo;
    memset(&eo, 0xab, sizeof eo);
    ck_assert_int_eq(kraken_engine_options_init(&eo, KRAKEN_ENGINE_OPTIONS_VERSION), 0);
    ck_assert_uint_eq(eo.version, KRAKEN_ENGINE_OPTIONS_VERSION);
    ck_assert_uint_eq(eo.backoff_initial_ms, macro.backoff_initial_ms);
    ck_assert_uint_eq(eo.max_failures, macro.max_failures);
    ck_assert(eo.timeout_scale == 1.0);
    ck_assert(kraken_uuid_is_zero(&eo.self_id));

    ck_assert_int_eq(kraken_engine_options_init(&eo, KRAKEN_ENGINE_OPTIONS_VERSION + 1),
                     KRAKEN_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "engine_options_init: version %u, this library knows 1..%u",
             KRAKEN_ENGINE_OPTIONS_VERSION + 1, KRAKEN_ENGINE_OPTIONS_VERSION);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(kraken_engine_options_init(&eo, 0), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_engine_options_init(NULL, 1), KRAKEN_EINVAL);

    kraken_sync_options so;
    ck_assert_int_eq(kraken_sync_options_init(&so, KRAKEN_SYNC_OPTIONS_VERSION), 0);
    ck_assert_uint_eq(so.port, KRAKEN_SYNC_DEFAULT_PORT);
    ck_assert_uint_eq(so.hello_ms, 10000);
    ck_assert_int_eq(kraken_sync_options_init(&so, 99), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "sync_options_init: version 99, this library knows 1..1");
}
END_TEST

/*
 * A version-1 caller's struct is exactly as long as version 1 made it: the
 * library must read no further (ASan and valgrind flag an over-read of this
 * heap block once later versions add fields), and fields it lacks keep their
 * defaults. A version from the future is refused.
 */
START_TEST(engine_accepts_older_options_and_refuses_unknown)
{
    struct event_base *base = event_base_new();
    const size_t v1_size = offsetof(kraken_engine_options, no_sync_service) + sizeof(bool);
    kraken_engine_options *v1 = malloc(v1_size);
    ck_assert_ptr_nonnull(v1);
    kraken_engine_options eo;
    ck_assert_int_eq(kraken_engine_options_init(&eo, 1), 0);
    eo.no_sync_service = true;
    eo.start_frozen = true;
    memcpy(v1, &eo, v1_size);
    kraken_engine *e = NULL;
    ck_assert_int_eq(kraken_engine_new(&e, base, NULL, v1), 0);
    ck_assert(kraken_engine_frozen(e));
    ck_assert_ptr_null(kraken_engine_find_service(e, "sync")); /* no_sync_service was read */
    kraken_engine_free(e);
    free(v1);

    /* Fields a version-1 caller does not have are never read, whatever the memory after holds. */
    kraken_engine_options garbage;
    ck_assert_int_eq(kraken_engine_options_init(&garbage, 1), 0);
    garbage.no_sync_service = true;
    garbage.now_ms = (kraken_clock_fn)(uintptr_t)1; /* would crash if called */
    ck_assert_int_eq(kraken_engine_new(&e, base, NULL, &garbage), 0);
    kraken_uuid id = {{0x4a, 7}};
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_store_create(kraken_engine_store(e), n), 0);
    kraken_node_free(n);
    event_base_loop(base, EVLOOP_NONBLOCK); /* a pass: the engine reads its clock */
    kraken_engine_free(e);

    const size_t sub_v1 = offsetof(kraken_subscribe_options, queue_limit) + sizeof(size_t);
    kraken_subscribe_options *so = malloc(sub_v1);
    ck_assert_ptr_nonnull(so);
    kraken_subscribe_options init = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    memcpy(so, &init, sub_v1);
    kraken_bus *bus;
    ck_assert_int_eq(kraken_bus_new(&bus, base), 0);
    kraken_subscription *sub;
    ck_assert_int_eq(kraken_bus_subscribe(bus, so, on_any_event, NULL, NULL, &sub), 0);
    kraken_subscription_remove(sub);
    kraken_bus_free(bus);
    free(so);
    eo.version = KRAKEN_ENGINE_OPTIONS_VERSION + 1;
    ck_assert_int_eq(kraken_engine_new(&e, base, NULL, &eo), KRAKEN_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "engine_new: options version %u, expected 1..%u",
             KRAKEN_ENGINE_OPTIONS_VERSION + 1, KRAKEN_ENGINE_OPTIONS_VERSION);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_ptr_null(e);
    event_base_free(base);
}
END_TEST

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void count_change(const kraken_state_change *change, void *userdata)
{
    (void)change;
    (*(int *)userdata)++;
}

START_TEST(load_dsc_file_into_store)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kraken-api-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    ck_assert_int_eq(kraken_store_load(store, KRAKEN_FIXTURES "/cluster4.json"), 0);
    int changes = 0;
    ck_assert_int_eq(kraken_store_listen(store, count_change, &changes, NULL, NULL), 0);

    /* An id not in the store refuses the whole file. */
    const char *unknown = write_tmp("unknown.json",
        "{\"nodes\": [{\"id\": \"4afdefa4-573b-5cfe-a419-c59075cf18a5\", \"physState\": "
        "\"POWER_ON\"}, {\"id\": \"00000000-0000-4000-8000-0000000000ff\"}]}");
    ck_assert_int_eq(kraken_store_load_dsc(store, unknown), KRAKEN_ENOTFOUND);
    char want[256];
    snprintf(want, sizeof want, "%s: node 1 (00000000-0000-4000-8000-0000000000ff) is not in "
             "the store (load its Cfg first)", unknown);
    ck_assert_str_eq(kraken_error_last(), want);
    /* A repeated id too. */
    const char *dup = write_tmp("dup.json",
        "{\"nodes\": [{\"id\": \"4afdefa4-573b-5cfe-a419-c59075cf18a5\"}, "
        "{\"id\": \"4afdefa4-573b-5cfe-a419-c59075cf18a5\"}]}");
    ck_assert_int_eq(kraken_store_load_dsc(store, dup), KRAKEN_EEXISTS);
    snprintf(want, sizeof want, "%s: node 1 (4afdefa4-573b-5cfe-a419-c59075cf18a5): duplicate id "
             "(node 0 has it too)", dup);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(changes, 0);
    kraken_uuid n1;
    ck_assert_int_eq(kraken_uuid_parse(&n1, "4afdefa4-573b-5cfe-a419-c59075cf18a5"), 0);
    char *text = NULL;
    kraken_node *d;
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_DSC, &n1, &d), 0);
    ck_assert_int_eq(kraken_node_get_text(d, "/PhysState", &text), 0);
    ck_assert_str_eq(text, "PHYS_UNKNOWN"); /* nothing applied */
    free(text);
    kraken_node_free(d);

    ck_assert_int_eq(kraken_store_load_dsc(store, KRAKEN_FIXTURES "/cluster4-dsc.json"), 0);
    ck_assert_int_gt(changes, 0);
    kraken_node **file;
    size_t n;
    ck_assert_int_eq(kraken_nodes_load_file(KRAKEN_FIXTURES "/cluster4-dsc.json", &file, &n), 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(kraken_store_read(store, KRAKEN_DSC, kraken_node_id(file[i]), &d), 0);
        ck_assert(kraken_node_equal(d, file[i]));
        kraken_node_free(d);
    }
    kraken_nodes_free(file, n);
    ck_assert_int_eq(kraken_store_load_dsc(store, "/nonexistent/dsc.json"), KRAKEN_EIO);
    kraken_store_free(store);
    unlink(unknown);
    unlink(dup);
    rmdir(tmpdir);
}
END_TEST

START_TEST(find_node_by_nodename)
{
    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    ck_assert_int_eq(kraken_store_load(store, KRAKEN_FIXTURES "/cluster4.json"), 0);
    kraken_uuid id, want;
    ck_assert_int_eq(kraken_store_find_by_nodename(store, "n1", &id), 0);
    ck_assert_int_eq(kraken_uuid_parse(&want, "4afdefa4-573b-5cfe-a419-c59075cf18a5"), 0);
    ck_assert_int_eq(kraken_uuid_compare(&id, &want), 0);
    ck_assert_int_eq(kraken_store_find_by_nodename(store, "N1", &id), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(), "store_find_by_nodename: no node has nodename 'N1'");
    ck_assert(kraken_uuid_is_zero(&id));
    /* Two nodes with one name: refused, naming both (lower id first). */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &want, "/Nodename", "n2"), 0);
    ck_assert_int_eq(kraken_store_find_by_nodename(store, "n2", &id), KRAKEN_EEXISTS);
    ck_assert_str_eq(kraken_error_last(), "store_find_by_nodename: nodename 'n2' is shared by "
                     "nodes 3ac72083-5f34-57a6-bc6b-6d3164394575 and "
                     "4afdefa4-573b-5cfe-a419-c59075cf18a5");
    ck_assert_int_eq(kraken_store_find_by_nodename(store, NULL, &id), KRAKEN_EINVAL);
    kraken_store_free(store);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, options_init_fills_defaults_and_checks_the_version);
    tcase_add_test(tc, engine_accepts_older_options_and_refuses_unknown);
    tcase_add_test(tc, load_dsc_file_into_store);
    tcase_add_test(tc, find_node_by_nodename);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
