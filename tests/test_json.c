/* SPDX-License-Identifier: BSD-3-Clause */
/* JSON form of nodes (SPEC 1.4): fixtures, legacy spellings, output format, bad inputs,
 * atomic save; issue 8: the original's exact format (tests/fixtures/original-all-types.json,
 * every SPEC Appendix A type), one test per defect with the exact one-line message. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define IPV4_URL "type.googleapis.com/IPv4.IPv4OverEthernet"

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__read_file(path, &text, &len), 0);
    return text;
}

static char *get_text(const kraken_node *node, const char *url)
{
    char *out = NULL;
    int rc = kraken_node_get_text(node, url, &out);
    ck_assert_msg(rc == 0, "get %s: %s", url, kraken_error_last());
    return out;
}

static void assert_text(const kraken_node *node, const char *url, const char *want)
{
    char *got = get_text(node, url);
    ck_assert_str_eq(got, want);
    free(got);
}

/* Parse must fail with @p code, return nothing, and the message must contain each needle. */
static void assert_nodes_fail(const char *json, int code, const char *const *needles)
{
    kraken_node **nodes = (kraken_node **)0x1;
    size_t n = 99;
    int rc = kraken_nodes_from_json(json, strlen(json), "bad.json", &nodes, &n);
    ck_assert_msg(rc == code, "rc %d (%s) for %s", rc, kraken_error_last(), json);
    ck_assert_ptr_null(nodes);
    ck_assert_uint_eq(n, 0);
    for (size_t i = 0; needles != NULL && needles[i] != NULL; i++)
        ck_assert_msg(strstr(kraken_error_last(), needles[i]) != NULL, "'%s' not in '%s'",
                      needles[i], kraken_error_last());
}

static void assert_node_fail(const char *json, const char *const *needles)
{
    kraken_node *node = (kraken_node *)0x1;
    int rc = kraken_node_from_json(json, strlen(json), "req", &node);
    ck_assert_msg(rc == KRAKEN_EPARSE, "rc %d (%s) for %s", rc, kraken_error_last(), json);
    ck_assert_ptr_null(node);
    for (size_t i = 0; needles != NULL && needles[i] != NULL; i++)
        ck_assert_msg(strstr(kraken_error_last(), needles[i]) != NULL, "'%s' not in '%s'",
                      needles[i], kraken_error_last());
}

static kraken_node *node_from(const char *json)
{
    kraken_node *node = NULL;
    int rc = kraken_node_from_json(json, strlen(json), "test", &node);
    ck_assert_msg(rc == 0, "%s: %s", json, kraken_error_last());
    return node;
}

/* JSON -> nodes -> JSON -> nodes: equal nodes, identical text (deterministic). */
static void check_round_trip(kraken_node **nodes, size_t n)
{
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(kraken_nodes_to_json(nodes, n, 0, &a), 0);
    kraken_node **again = NULL;
    size_t n2 = 0;
    ck_assert_msg(kraken_nodes_from_json(a, strlen(a), "out", &again, &n2) == 0, "%s",
                  kraken_error_last());
    ck_assert_uint_eq(n2, n);
    for (size_t i = 0; i < n; i++)
        ck_assert(kraken_node_equal(nodes[i], again[i]));
    ck_assert_int_eq(kraken_nodes_to_json(again, n2, 0, &b), 0);
    ck_assert_str_eq(a, b);
    free(b);
    ck_assert_int_eq(kraken_nodes_to_json(nodes, n, KRAKEN_JSON_PRETTY, &b), 0);
    kraken_nodes_free(again, n2);
    ck_assert_int_eq(kraken_nodes_from_json(b, strlen(b), "pretty", &again, &n2), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert(kraken_node_equal(nodes[i], again[i]));
    kraken_nodes_free(again, n2);
    free(a);
    free(b);
}

START_TEST(every_fixture_loads_and_round_trips)
{
    DIR *dir = opendir(KRAKEN_FIXTURES);
    ck_assert_ptr_nonnull(dir);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", KRAKEN_FIXTURES, de->d_name);
        kraken_node **nodes = NULL;
        size_t n = 0;
        int rc = kraken_nodes_load_file(path, &nodes, &n);
        ck_assert_msg(rc == 0, "%s: %s", path, kraken_error_last());
        ck_assert_uint_gt(n, 0);
        check_round_trip(nodes, n);
        kraken_nodes_free(nodes, n);
        files++;
    }
    closedir(dir);
    ck_assert_int_ge(files, 2);
}
END_TEST

START_TEST(cluster4_values)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    ck_assert_int_eq(kraken_nodes_load_file(KRAKEN_FIXTURES "/cluster4.json", &nodes, &n), 0);
    ck_assert_uint_eq(n, 5);
    assert_text(nodes[0], "/Nodename", "head");
    assert_text(nodes[0], "/PhysState", "POWER_ON");
    assert_text(nodes[0], "/RunState", "SYNC");
    assert_text(nodes[0], IPV4_URL "/Ifaces/kraken/Ip/Ip", "127.0.0.1");
    assert_text(nodes[0], IPV4_URL "/Ifaces/kraken/Eth/Mac", "02:00:00:00:00:01");
    assert_text(nodes[0], IPV4_URL "/Ifaces/kraken/Eth/Mtu", "1500");
    assert_text(nodes[3], "/ParentId", "c0ffee00-0000-4000-8000-000000000001");
    assert_text(nodes[3], "/Id", "810d5928-335a-51de-97f9-02394a22a9fe");
    ck_assert_uint_eq(kraken_node_extension_count(nodes[1]), 1);
    kraken_nodes_free(nodes, n);
}
END_TEST

START_TEST(legacy_spellings)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    ck_assert_int_eq(kraken_nodes_load_file(KRAKEN_FIXTURES "/legacy-spellings.json", &nodes, &n),
                     0);
    ck_assert_uint_eq(n, 1);
    assert_text(nodes[0], "/RunState", "INIT"); /* "run_state": 1 */
    assert_text(nodes[0], "/PhysState", "POWER_ON");
    assert_text(nodes[0], "/ParentId", "c0ffee00-0000-4000-8000-000000000001");
    /* Output uses the canonical spellings. */
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(nodes[0], 0, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"runState\":\"INIT\""));
    ck_assert_ptr_nonnull(strstr(json, "\"parentId\":"));
    ck_assert_ptr_null(strstr(json, "run_state"));
    free(json);
    kraken_nodes_free(nodes, n);
}
END_TEST

START_TEST(output_format_exact)
{
    kraken_node *node = node_from(
        "{\"physState\": \"POWER_OFF\", \"id\": \"C0FFEE00-0000-4000-8000-0000000000AA\","
        " \"nodename\": \"\", \"runState\": \"UNKNOWN\","
        " \"extensions\": [{\"@type\": \"type.googleapis.com/PXE.Client\", \"state\": \"WAIT\"},"
        "  {\"@type\": \"type.googleapis.com/IPv4.IPv4OverEthernet\","
        "   \"ifaces\": {\"b\": {\"ip\": {\"ip\": \"10.0.0.2\"}}, \"a\": {\"eth\": {\"control\": "
        "true}}}}],"
        " \"services\": [{\"id\": \"zz\", \"state\": \"RUN\"}, {\"id\": \"pxe\", \"module\": "
        "\"pxe\","
        "   \"config\": {\"@type\": \"type.googleapis.com/TestModule.Config\", \"srvIp\": "
        "\"10.0.0.1\"}}]}");
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &json), 0);
    /* Declaration order, zero fields omitted, keyed lists and maps sorted, lower-case UUID. */
    ck_assert_str_eq(
        json, "{\"id\":\"c0ffee00-0000-4000-8000-0000000000aa\",\"physState\":\"POWER_OFF\","
              "\"services\":[{\"id\":\"pxe\",\"module\":\"pxe\",\"config\":{\"@type\":"
              "\"type.googleapis.com/"
              "TestModule.Config\",\"srvIp\":\"10.0.0.1\"}},{\"id\":\"zz\",\"state\":\"RUN\"}],"
              "\"extensions\":[{\"@type\":\"type.googleapis.com/IPv4.IPv4OverEthernet\",\"ifaces\":"
              "{\"a\":{\"eth\":{\"control\":true}},\"b\":{\"ip\":{\"ip\":\"10.0.0.2\"}}}},"
              "{\"@type\":\"type.googleapis.com/PXE.Client\",\"state\":\"WAIT\"}]}");
    char *again = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &again), 0);
    ck_assert_str_eq(json, again);
    free(again);
    ck_assert_int_eq(kraken_node_to_json(node, KRAKEN_JSON_PRETTY, &again), 0);
    ck_assert_ptr_nonnull(strchr(again, '\n'));
    kraken_node *back = node_from(again);
    ck_assert(kraken_node_equal(node, back));
    assert_text(back, "/Services/pxe/Config/SrvIp", "10.0.0.1");
    assert_text(back, "/Services/zz/State", "RUN");
    kraken_node_free(back);
    free(again);
    free(json);
    kraken_node_free(node);
}
END_TEST

START_TEST(empty_node_and_list)
{
    kraken_node *node = NULL;
    ck_assert_int_eq(kraken_node_new(&node, NULL), 0);
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &json), 0);
    ck_assert_str_eq(json, "{}");
    free(json);
    ck_assert_int_eq(kraken_nodes_to_json(NULL, 0, 0, &json), 0);
    ck_assert_str_eq(json, "{\"nodes\":[]}");
    kraken_node **nodes = NULL;
    size_t n = 7;
    ck_assert_int_eq(kraken_nodes_from_json(json, strlen(json), "x", &nodes, &n), 0);
    ck_assert_uint_eq(n, 0);
    kraken_nodes_free(nodes, n);
    free(json);
    ck_assert_int_eq(kraken_nodes_from_json("{}", 2, "x", &nodes, &n), 0);
    ck_assert_uint_eq(n, 0);
    kraken_nodes_free(nodes, n);
    kraken_node_free(node);
}
END_TEST

/* A schema with every field type, registered once for these tests. */
static const kraken_schema *all_types_schema(void)
{
    static const kraken_enum_member colors[] = {{"NONE", 0}, {"RED", 1}, {"NEG", -5}};
    const kraken_schema *s = kraken_schema_find("JsonTest.All");
    if (s != NULL)
        return s;
    ck_assert_int_eq(kraken_enum_register("JsonTest.Color", colors, 3, NULL), 0);
    const kraken_field_def defs[] = {
        KRAKEN_FIELD("b", 1, KRAKEN_T_BOOL),
        KRAKEN_FIELD("i32", 2, KRAKEN_T_INT32),
        KRAKEN_FIELD("i64", 3, KRAKEN_T_INT64),
        KRAKEN_FIELD("u32", 4, KRAKEN_T_UINT32),
        KRAKEN_FIELD("u64", 5, KRAKEN_T_UINT64),
        KRAKEN_FIELD("s", 6, KRAKEN_T_STRING),
        KRAKEN_FIELD("raw", 7, KRAKEN_T_BYTES),
        KRAKEN_FIELD("color", 8, KRAKEN_T_ENUM, .type_name = "JsonTest.Color"),
        KRAKEN_FIELD("addr", 9, KRAKEN_T_IPV4),
        KRAKEN_FIELD("hw", 10, KRAKEN_T_MAC),
        KRAKEN_FIELD("uid", 11, KRAKEN_T_UUID),
        KRAKEN_FIELD("sub", 12, KRAKEN_T_RECORD, .type_name = "IPv4.IPv4"),
        KRAKEN_FIELD("counts", 13, KRAKEN_T_MAP, .elem_type = KRAKEN_T_INT64),
        KRAKEN_FIELD("nums", 14, KRAKEN_T_LIST, .elem_type = KRAKEN_T_UINT32),
        KRAKEN_FIELD("tags", 15, KRAKEN_T_LIST, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("colors", 16, KRAKEN_T_LIST, .elem_type = KRAKEN_T_ENUM,
                     .type_name = "JsonTest.Color"),
    };
    ck_assert_int_eq(kraken_schema_register("JsonTest.All", defs, sizeof defs / sizeof defs[0], &s),
                     0);
    return s;
}

#define ALL_PREFIX "{\"extensions\": [{\"@type\": \"type.googleapis.com/JsonTest.All\", "

START_TEST(all_types_round_trip)
{
    all_types_schema();
    kraken_node *node = node_from(
        ALL_PREFIX
        "\"b\": true, \"i32\": -7, \"i64\": \"-9007199254740993\", \"u32\": 4294967295,"
        " \"u64\": \"18446744073709551615\", \"s\": \"h\\u00e9llo \\\"q\\\"\", \"raw\": "
        "\"AAEC/w==\","
        " \"color\": -5, \"addr\": \"192.168.1.254\", \"hw\": \"AA:bb:cc:00:11:22\","
        " \"uid\": \"00000000-0000-0000-0000-000000000001\", \"sub\": {\"ip\": \"1.2.3.4\"},"
        " \"counts\": {\"x\": 12, \"y\": \"-3\"}, \"nums\": [3, 1, 2], \"tags\": [\"\", \"a\"],"
        " \"colors\": [0, \"RED\"]}]}");
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &json), 0);
    ck_assert_str_eq(
        json,
        "{\"extensions\":[{\"@type\":\"type.googleapis.com/JsonTest.All\",\"b\":true,\"i32\":-7,"
        "\"i64\":\"-9007199254740993\",\"u32\":4294967295,\"u64\":\"18446744073709551615\","
        "\"s\":\"h\xc3\xa9llo "
        "\\\"q\\\"\",\"raw\":\"AAEC/w==\",\"color\":\"NEG\",\"addr\":\"192.168.1.254\","
        "\"hw\":\"aa:bb:cc:00:11:22\",\"uid\":\"00000000-0000-0000-0000-000000000001\","
        "\"sub\":{\"ip\":\"1.2.3.4\"},\"counts\":{\"x\":\"12\",\"y\":\"-3\"},\"nums\":[3,1,2],"
        "\"tags\":[\"\",\"a\"],\"colors\":[\"NONE\",\"RED\"]}]}");
    kraken_node *back = node_from(json);
    ck_assert(kraken_node_equal(node, back));
    kraken_node_free(back);
    free(json);
    kraken_node_free(node);
}
END_TEST

START_TEST(numbers_edge_cases)
{
    all_types_schema();
    static const char *const bad[] = {
        ALL_PREFIX "\"i32\": 2147483648}]}", /* out of range */
        ALL_PREFIX "\"u32\": -1}]}",         /* negative unsigned */
        ALL_PREFIX "\"u64\": \"-1\"}]}",
        ALL_PREFIX "\"i32\": 1.5}]}",              /* not an integer */
        ALL_PREFIX "\"i64\": \"12x\"}]}",
        ALL_PREFIX "\"i64\": \" 12\"}]}",
        ALL_PREFIX "\"i64\": \"99999999999999999999\"}]}",
        ALL_PREFIX "\"i32\": true}]}",
        ALL_PREFIX "\"b\": 1}]}",
        ALL_PREFIX "\"color\": 2}]}", /* not a member */
        ALL_PREFIX "\"raw\": \"***\"}]}",
        ALL_PREFIX "\"nums\": [1, null]}]}",
        ALL_PREFIX "\"nums\": 1}]}",
        ALL_PREFIX "\"counts\": [1]}]}",
        ALL_PREFIX "\"counts\": {\"a\": 1, \"a\": 2}}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *needles[] = {"req", "JsonTest.All", NULL};
        assert_node_fail(bad[i], needles);
    }
    kraken_node *node = node_from(ALL_PREFIX "\"i64\": -9007199254740991, \"u64\": 5,"
                                             " \"i32\": \"-2147483648\"}]}");
    assert_text(node, "type.googleapis.com/JsonTest.All/I64", "-9007199254740991");
    assert_text(node, "type.googleapis.com/JsonTest.All/I32", "-2147483648");
    kraken_node_free(node);
}
END_TEST

START_TEST(bad_inputs_name_source_node_field)
{
    const char *id = "\"id\": \"4afdefa4-573b-5cfe-a419-c59075cf18a5\"";
    char buf[1024];

    /* malformed JSON: position (line 3) */
    const char *malformed[] = {"bad.json", "line 3", "byte", NULL};
    assert_nodes_fail("{\"nodes\": [\n  {\"nodename\": \"x\",\n  }\n]}", KRAKEN_EPARSE, malformed);
    const char *trailing[] = {"bad.json", "trailing", NULL};
    assert_nodes_fail("{\"nodes\": []} x", KRAKEN_EPARSE, trailing);
    const char *empty[] = {"bad.json", NULL};
    assert_nodes_fail("", KRAKEN_EPARSE, empty);

    /* unknown @type names source, node index, id and the type */
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{}, {%s, \"extensions\": [{\"@type\": "
             "\"type.googleapis.com/Nope.Thing\"}]}]}",
             id);
    const char *unknown_type[] = {"bad.json", "node 1", "4afdefa4-573b", "Nope.Thing", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, unknown_type);

    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"extensions\": [{\"ifaces\": {}}]}]}", id);
    const char *missing_type[] = {"node 0", "extensions[0]", "@type", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, missing_type);

    /* wrong JSON types */
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"nodename\": 5}]}", id);
    const char *wrong[] = {"node 0", "nodename", "string", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, wrong);
    const char *not_obj[] = {"bad.json", "nodes", NULL};
    assert_nodes_fail("{\"nodes\": {}}", KRAKEN_EPARSE, not_obj);
    assert_nodes_fail("[]", KRAKEN_EPARSE, not_obj);
    const char *node_not_obj[] = {"node 0", "object", NULL};
    assert_nodes_fail("{\"nodes\": [3]}", KRAKEN_EPARSE, node_not_obj);

    /* bad UUID */
    const char *bad_uuid[] = {"node 0", "not-a-uuid", "id", NULL};
    assert_nodes_fail("{\"nodes\": [{\"id\": \"not-a-uuid\"}]}", KRAKEN_EPARSE, bad_uuid);

    /* bad enum name */
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"physState\": \"ON\"}]}", id);
    const char *bad_enum[] = {"bad.json", "node 0", "4afdefa4", "physState", "'ON'", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, bad_enum);
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"run_state\": 17}]}", id);
    const char *bad_enum_num[] = {"runState", "17", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, bad_enum_num);

    /* bad IPv4 / MAC inside the extension: the path goes down to the leaf */
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{%s, \"extensions\": [{\"@type\": \"type.googleapis.com/"
             "IPv4.IPv4OverEthernet\", \"ifaces\": {\"kraken\": {\"ip\": {\"ip\": "
             "\"10.0.0.300\"}}}}]}]}",
             id);
    const char *bad_ip[] = {"node 0", "ifaces.kraken.ip.ip", "10.0.0.300", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, bad_ip);
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{%s, \"extensions\": [{\"@type\": \"type.googleapis.com/"
             "IPv4.IPv4OverEthernet\", \"ifaces\": {\"kraken\": {\"eth\": {\"mac\": "
             "\"02:00:00:00:01\"}}}}]}]}",
             id);
    const char *bad_mac[] = {"node 0", "ifaces.kraken.eth.mac", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, bad_mac);

    /* unknown field names are errors, at any depth */
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"colour\": 1}]}", id);
    const char *unknown_field[] = {"node 0", "'colour'", "kraken.Node", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, unknown_field);
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{%s, \"extensions\": [{\"@type\": \"type.googleapis.com/"
             "IPv4.IPv4OverEthernet\", \"ifaces\": {\"kraken\": {\"eth\": {\"speed\": 1}}}}]}]}",
             id);
    const char *unknown_deep[] = {"ifaces.kraken.eth", "'speed'", "IPv4.Ethernet", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, unknown_deep);
    const char *unknown_top[] = {"'node'", NULL};
    assert_nodes_fail("{\"node\": []}", KRAKEN_EPARSE, unknown_top);

    /* the same field under two spellings, duplicate keyed elements, service without id */
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"runState\": \"SYNC\", \"run_state\": 1}]}", id);
    const char *twice[] = {"run_state", "twice", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, twice);
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{%s, \"extensions\": [{\"@type\": \"type.googleapis.com/"
             "PXE.Client\"}, {\"@type\": \"type.googleapis.com/PXE.Client\"}]}]}",
             id);
    const char *dup_ext[] = {"extensions", "duplicate", "PXE.Client", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, dup_ext);
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"services\": [{\"module\": \"pxe\"}]}]}", id);
    const char *no_id[] = {"services", "id", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, no_id);
    /* @type that contradicts the field's schema */
    snprintf(buf, sizeof buf,
             "{\"nodes\": [{%s, \"extensions\": [{\"@type\": \"type.googleapis.com/"
             "IPv4.IPv4OverEthernet\", \"hostname\": {\"@type\": "
             "\"type.googleapis.com/PXE.Client\"}}]}]}",
             id);
    const char *wrong_type[] = {"hostname", "PXE.Client", NULL};
    assert_nodes_fail(buf, KRAKEN_EPARSE, wrong_type);

    /* a very long source name is truncated in the message, never overflows */
    char long_source[1500];
    memset(long_source, 's', sizeof long_source - 1);
    long_source[sizeof long_source - 1] = '\0';
    kraken_node **nodes = NULL;
    size_t n = 0;
    snprintf(buf, sizeof buf, "{\"nodes\": [{%s, \"physState\": \"ON\"}]}", id);
    ck_assert_int_eq(kraken_nodes_from_json(buf, strlen(buf), long_source, &nodes, &n),
                     KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "sss"));

    /* single node: source but no index */
    const char *single[] = {"req", "nodename", NULL};
    assert_node_fail("{\"nodename\": []}", single);
}
END_TEST

START_TEST(invalid_arguments)
{
    kraken_node *node = NULL;
    kraken_node **nodes = NULL;
    size_t n = 0;
    char *out = NULL;
    ck_assert_int_eq(kraken_node_from_json(NULL, 0, "x", &node), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_from_json("{}", 2, "x", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_to_json(NULL, 0, &out), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_nodes_from_json("{}", 2, "x", NULL, &n), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_nodes_from_json("{}", 2, "x", &nodes, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_nodes_to_json(NULL, 2, 0, &out), KRAKEN_EINVAL);
    kraken_node *one[2] = {NULL, NULL};
    ck_assert_int_eq(kraken_nodes_to_json(one, 2, 0, &out), KRAKEN_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(kraken_nodes_load_file(NULL, &nodes, &n), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_nodes_load_file("/nonexistent/x.json", &nodes, &n), KRAKEN_EIO);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/nonexistent/x.json"));
    ck_assert_int_eq(kraken_nodes_save_file(NULL, one, 0), KRAKEN_EINVAL);
    kraken_nodes_free(NULL, 3);
    /* a buffer that is not NUL-terminated: only len bytes are read */
    ck_assert_int_eq(kraken_node_from_json("{}garbage", 2, "x", &node), 0);
    kraken_node_free(node);
}
END_TEST

static bool file_equals(const char *path, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    if (kraken__read_file(path, &text, &len) != 0)
        return false;
    bool same = strcmp(text, want) == 0;
    free(text);
    return same;
}

static int count_entries(const char *dir_path)
{
    DIR *dir = opendir(dir_path);
    ck_assert_ptr_nonnull(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(dir);
    return n;
}

START_TEST(save_file_atomic)
{
    char dir[] = "/tmp/kraken-json-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/state.json", dir);

    kraken_node **nodes = NULL;
    size_t n = 0;
    ck_assert_int_eq(kraken_nodes_load_file(KRAKEN_FIXTURES "/cluster4.json", &nodes, &n), 0);
    ck_assert_int_eq(kraken_nodes_save_file(path, nodes, n), 0);
    kraken_node **back = NULL;
    size_t n2 = 0;
    ck_assert_int_eq(kraken_nodes_load_file(path, &back, &n2), 0);
    ck_assert_uint_eq(n2, n);
    for (size_t i = 0; i < n; i++)
        ck_assert(kraken_node_equal(nodes[i], back[i]));
    kraken_nodes_free(back, n2);
    char *saved = slurp(path);
    ck_assert_uint_gt(strlen(saved), 2);
    ck_assert_int_eq(saved[strlen(saved) - 1], '\n');
    ck_assert_int_eq(count_entries(dir), 1); /* no temporary left behind */

    /* Nodes that cannot be serialised: the old file stays as it was. */
    kraken_node *with_null[2] = {nodes[0], NULL};
    ck_assert_int_eq(kraken_nodes_save_file(path, with_null, 2), KRAKEN_EINVAL);
    ck_assert(file_equals(path, saved));
    ck_assert_int_eq(count_entries(dir), 1);

    /* A directory that cannot be written: error naming the path, old file untouched. */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(dir, 0500), 0);
        int rc = kraken_nodes_save_file(path, nodes, 1);
        ck_assert_int_eq(chmod(dir, 0700), 0);
        ck_assert_int_eq(rc, KRAKEN_EIO);
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), dir));
        ck_assert(file_equals(path, saved));
        ck_assert_int_eq(count_entries(dir), 1);
    }
    /* (As root, permissions do not stop writes:) a directory path that does not exist. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-dir/state.json", dir);
    ck_assert_int_eq(kraken_nodes_save_file(missing, nodes, n), KRAKEN_EIO);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "no-such-dir"));
    ck_assert(file_equals(path, saved));

    /* A successful save replaces the content completely. */
    ck_assert_int_eq(kraken_nodes_save_file(path, nodes, 1), 0);
    ck_assert_int_eq(kraken_nodes_load_file(path, &back, &n2), 0);
    ck_assert_uint_eq(n2, 1);
    kraken_nodes_free(back, n2);

    free(saved);
    kraken_nodes_free(nodes, n);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(slot_json_bridge)
{
    kraken__schemas_init();
    const kraken_schema *ipv4 = kraken_schema_find("IPv4.IPv4OverEthernet");
    ck_assert_ptr_nonnull(ipv4);
    const kraken_field *ifaces = &ipv4->fields[0];
    ck_assert_str_eq(ifaces->name, "ifaces");
    const char *text =
        "{\"kraken\": {\"ip\": {\"ip\": \"10.1.2.3\", \"subnet\": \"255.255.0.0\"}}}";
    kraken_slot slot;
    ck_assert_int_eq(
        kraken__slot_from_json_text(ifaces, KRAKEN_T_MAP, text, strlen(text), "value", &slot), 0);
    ck_assert_uint_eq(slot.map->n, 1);
    char *out = NULL;
    ck_assert_int_eq(kraken__slot_to_json_text(ifaces, KRAKEN_T_MAP, &slot, &out), 0);
    ck_assert_str_eq(out, "{\"kraken\":{\"ip\":{\"ip\":\"10.1.2.3\",\"subnet\":\"255.255.0.0\"}}}");
    free(out);
    /* one element of the map: a ConfiguredInterface record */
    ck_assert_int_eq(
        kraken__slot_to_json_text(ifaces, KRAKEN_T_RECORD, &slot.map->entries[0].value, &out), 0);
    ck_assert_str_eq(out, "{\"ip\":{\"ip\":\"10.1.2.3\",\"subnet\":\"255.255.0.0\"}}");
    free(out);
    kraken__slot_free(ifaces, KRAKEN_T_MAP, &slot);

    /* the extensions list: polymorphic elements carry @type */
    const kraken_schema *node = kraken_schema_find("kraken.Node");
    const kraken_field *ext = &node->fields[KRAKEN_NODE_F_EXTENSIONS];
    text = "[{\"@type\": \"type.googleapis.com/PXE.Client\", \"method\": \"iPXE\"}]";
    ck_assert_int_eq(
        kraken__slot_from_json_text(ext, KRAKEN_T_LIST, text, strlen(text), "value", &slot), 0);
    ck_assert_int_eq(kraken__slot_to_json_text(ext, KRAKEN_T_LIST, &slot, &out), 0);
    ck_assert_str_eq(out, "[{\"@type\":\"type.googleapis.com/PXE.Client\",\"method\":\"iPXE\"}]");
    free(out);
    kraken__slot_free(ext, KRAKEN_T_LIST, &slot);

    /* errors name the source */
    memset(&slot, 0x5a, sizeof slot);
    ck_assert_int_eq(kraken__slot_from_json_text(ifaces, KRAKEN_T_MAP, "[1]", 3, "PUT /x", &slot),
                     KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "PUT /x"));
    ck_assert_int_eq(kraken__slot_from_json_text(ifaces, KRAKEN_T_MAP, "{", 1, "PUT /x", &slot),
                     KRAKEN_EPARSE);
}
END_TEST

START_TEST(utf8_validation)
{
    ck_assert(kraken__utf8_valid("abc", 3));
    ck_assert(kraken__utf8_valid("h\xc3\xa9", 3));
    ck_assert(kraken__utf8_valid("\xf0\x9f\x98\x80", 4));
    ck_assert(!kraken__utf8_valid("\xc3", 1));             /* truncated */
    ck_assert(!kraken__utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    ck_assert(!kraken__utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!kraken__utf8_valid("a\0b", 3));             /* embedded NUL */
    ck_assert(!kraken__utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    /* invalid UTF-8 in the input is rejected */
    const char *needles[] = {"nodename", "UTF-8", NULL};
    assert_node_fail("{\"nodename\": \"\xff\"}", needles);
    const char *surrogate[] = {"req", NULL};
    assert_node_fail("{\"nodename\": \"\\ud800\"}", surrogate); /* lone surrogate escape */
}
END_TEST

/* JSON of a node whose records nest @p records deep (node and service included), through
 * service configs that hold kraken.ServiceInstance records. */
static char *nested_json(int records)
{
    size_t cap = 64 + (size_t)records * 96;
    char *buf = malloc(cap);
    size_t n = (size_t)snprintf(buf, cap, "{\"services\": [{\"id\": \"s\"");
    for (int i = 2; i < records; i++)
        n += (size_t)snprintf(buf + n, cap - n,
                              ", \"config\": {\"@type\": "
                              "\"type.googleapis.com/kraken.ServiceInstance\", \"id\": \"x\"");
    for (int i = 2; i < records; i++)
        n += (size_t)snprintf(buf + n, cap - n, "}");
    snprintf(buf + n, cap - n, "}]}");
    return buf;
}

START_TEST(nesting_limit_matches_binary)
{
    char *ok = nested_json(KRAKEN_CODEC_MAX_DEPTH);
    kraken_node *node = node_from(ok);
    uint8_t *bin = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken_node_encode(node, &bin, &len), 0);
    kraken_node *back = NULL;
    ck_assert_msg(kraken_node_decode(bin, len, &back) == 0, "%s", kraken_error_last());
    ck_assert(kraken_node_equal(node, back));
    kraken_node_free(back);
    free(bin);
    kraken_node_free(node);
    free(ok);
    char *deep = nested_json(KRAKEN_CODEC_MAX_DEPTH + 1);
    const char *needles[] = {"req", "nested", NULL};
    assert_node_fail(deep, needles);
    free(deep);
}
END_TEST

/* ---- issue 8: state files exactly as the original writes them ----------------------- */

#define ORIGINAL KRAKEN_FIXTURES "/original-all-types.json"
#define KR1 "4afdefa4-573b-5cfe-a419-c59075cf18a5"
#define ID_KR1 "\"id\": \"" KR1 "\""

/* Parse must fail with @p code and exactly @p want as the (one-line) message. */
static void assert_nodes_msg(const char *json, size_t len, int code, const char *want)
{
    kraken_node **nodes = (kraken_node **)0x1;
    size_t n = 99;
    int rc = kraken_nodes_from_json(json, len, "state.json", &nodes, &n);
    ck_assert_msg(rc == code, "rc %d (%s) for %s", rc, kraken_error_last(), json);
    ck_assert_ptr_null(nodes);
    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(kraken_error_last(), want);
}
#define NODES_MSG(json, code, want) assert_nodes_msg(json, sizeof(json) - 1, code, want)

static kraken_node **load_original(size_t *n)
{
    kraken_node **nodes = NULL;
    int rc = kraken_nodes_load_file(ORIGINAL, &nodes, n);
    ck_assert_msg(rc == 0, "%s", kraken_error_last());
    ck_assert_uint_eq(*n, 2);
    return nodes;
}

START_TEST(original_fixture_saves_byte_stable)
{
    size_t n = 0;
    kraken_node **nodes = load_original(&n);
    char dir[] = "/tmp/kraken-orig-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/state.json", dir);
    ck_assert_int_eq(kraken_nodes_save_file(path, nodes, n), 0);
    char *want = slurp(ORIGINAL), *got = slurp(path);
    ck_assert_str_eq(got, want); /* the original's bytes: indentation, order, escapes */
    /* the in-memory form is the same text without the file's final newline */
    char *text = NULL;
    ck_assert_int_eq(kraken_nodes_to_json(nodes, n, KRAKEN_JSON_PRETTY, &text), 0);
    ck_assert_uint_eq(strlen(text) + 1, strlen(want));
    ck_assert_int_eq(strncmp(text, want, strlen(text)), 0);
    free(text);
    free(got);
    free(want);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    kraken_nodes_free(nodes, n);
}
END_TEST

START_TEST(original_fixture_values)
{
    size_t n = 0;
    kraken_node **nodes = load_original(&n);
    const kraken_node *kr1 = nodes[0], *head = nodes[1];
    assert_text(kr1, "/Busy", "BUSY");
    assert_text(kr1, IPV4_URL "/Hostname/Hostname", "kr1");
    assert_text(kr1, IPV4_URL "/Hostname/Ip/Ip", "10.0.0.5");
    assert_text(kr1, IPV4_URL "/Ifaces/kraken/Eth/Control", "true");
    assert_text(kr1, IPV4_URL "/DnsNameservers/1/Ip", "10.0.0.3");
    assert_text(kr1, "type.googleapis.com/IPv4.DNSCNAME/Cname", "login1");
    /* the zero-field extension is there: its fields read as zero, not "not found" */
    assert_text(kr1, "type.googleapis.com/PXE.Client/State", "NONE");
    assert_text(kr1, "type.googleapis.com/PXE.Client/Method", "PXE");
    ck_assert_uint_eq(kraken_node_extension_count(kr1), 6);
    assert_text(kr1, "type.googleapis.com/VBox.VirtualMachine/VmName", "kr1");
    assert_text(kr1, "type.googleapis.com/PowerAPI.Node/NodeUri", "/redfish/v1/Systems/kr1");
    assert_text(head, "/Services/pxe/Config/TftpDir", "/tftp");
    assert_text(head, "/Services/pxe/ErrorMsg", "tftp directory \"/tftp\" missing");
    assert_text(head, "/Services/papi/Config/Servers/papi1/Https", "true");
    assert_text(head, "/Services/pmc/Config/Servers/pm1/Port", "10101");
    assert_text(head, "/Services/websocket/Config/MaxMessageSize", "4096");
    assert_text(head, "/Services/restapi/Config/Port", "3141");
    kraken_nodes_free(nodes, n);
}
END_TEST

/* A protobuf field found in a message: varint value or length-delimited bytes. */
typedef struct pbf {
    int wire;
    uint64_t v;
    const uint8_t *p;
    size_t len;
} pbf;

static uint64_t pb_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    ck_abort_msg("bad varint");
    return 0;
}

/* The @p nth (0-based) occurrence of field @p number in the message [msg, msg + len). */
static pbf pb_get(const uint8_t *msg, size_t len, uint32_t number, size_t nth)
{
    const uint8_t *p = msg, *end = msg + len;
    while (p < end) {
        uint64_t key = pb_varint(&p, end);
        pbf f = {(int)(key & 7), 0, NULL, 0};
        if (f.wire == 0) {
            f.v = pb_varint(&p, end);
        } else if (f.wire == 2) {
            f.len = (size_t)pb_varint(&p, end);
            ck_assert_uint_le(f.len, (size_t)(end - p));
            f.p = p;
            p += f.len;
        } else {
            ck_abort_msg("unexpected wire type %d", f.wire);
        }
        if ((key >> 3) == number && nth-- == 0)
            return f;
    }
    ck_abort_msg("field %u not found", (unsigned)number);
    return (pbf){0, 0, NULL, 0};
}

static bool pb_has(const uint8_t *msg, size_t len, uint32_t number)
{
    const uint8_t *p = msg, *end = msg + len;
    while (p < end) {
        uint64_t key = pb_varint(&p, end);
        if ((key & 7) == 0)
            pb_varint(&p, end);
        else
            p += pb_varint(&p, end);
        if ((key >> 3) == number)
            return true;
    }
    return false;
}

static pbf pb_sub(pbf m, uint32_t number, size_t nth)
{
    ck_assert_int_eq(m.wire, 2);
    return pb_get(m.p, m.len, number, nth);
}

static void pb_is_string(pbf f, const char *want)
{
    ck_assert_int_eq(f.wire, 2);
    ck_assert_uint_eq(f.len, strlen(want));
    ck_assert_int_eq(memcmp(f.p, want, f.len), 0);
}

static void pb_is_bytes(pbf f, const uint8_t *want, size_t len)
{
    ck_assert_int_eq(f.wire, 2);
    ck_assert_uint_eq(f.len, len);
    ck_assert_int_eq(memcmp(f.p, want, len), 0);
}

/* The Any of extension/config @p f: checks its type URL, returns its value. */
static pbf pb_any(pbf f, const char *type)
{
    pb_is_string(pb_sub(f, 1, 0), type);
    return pb_sub(f, 2, 0);
}

START_TEST(original_fixture_binary_field_numbers)
{
    size_t n = 0;
    kraken_node **nodes = load_original(&n);
    uint8_t *bin = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken_node_encode(nodes[0], &bin, &len), 0);
    pbf node = {2, 0, bin, len};
    /* proto.Node: nodename 2, run_state 3, phys_state 4, arch 5, platform 6, busy 8 */
    pb_is_string(pb_sub(node, 2, 0), "kr1");
    ck_assert_uint_eq(pb_sub(node, 3, 0).v, 2);
    ck_assert_uint_eq(pb_sub(node, 4, 0).v, 2);
    pb_is_string(pb_sub(node, 6, 0), "powerman");
    ck_assert_uint_eq(pb_sub(node, 8, 0).v, 1);
    ck_assert_uint_eq(pb_sub(node, 1, 0).len, 16);
    ck_assert_uint_eq(pb_sub(node, 7, 0).len, 16);
    /* extensions (15), sorted by type: DNSCNAME {cname 1, hostname 2} */
    pbf cname = pb_any(pb_sub(node, 15, 0), "type.googleapis.com/IPv4.DNSCNAME");
    pb_is_string(pb_sub(cname, 1, 0), "login1");
    pb_is_string(pb_sub(cname, 2, 0), "kr1");
    /* IPv4OverEthernet: ifaces 1 (map entry: key 1, value 2), routes 2, dns_nameservers 3,
     * dns_domains 4, hostname 5 */
    pbf ipoe = pb_any(pb_sub(node, 15, 1), "type.googleapis.com/IPv4.IPv4OverEthernet");
    pbf entry = pb_sub(ipoe, 1, 1); /* map entries sorted by key: "ib", "kraken" */
    pb_is_string(pb_sub(entry, 1, 0), "kraken");
    pbf iface = pb_sub(entry, 2, 0);
    pbf eth = pb_sub(iface, 1, 0); /* ConfiguredInterface.eth = 1: Ethernet */
    pb_is_string(pb_sub(eth, 1, 0), "eth0");
    static const uint8_t mac[] = {2, 0, 0, 0, 1, 1};
    pb_is_bytes(pb_sub(eth, 2, 0), mac, 6);
    ck_assert_uint_eq(pb_sub(eth, 3, 0).v, 9000);
    ck_assert_uint_eq(pb_sub(eth, 4, 0).v, 1);
    pbf ip = pb_sub(iface, 2, 0); /* ConfiguredInterface.ip = 2: IPv4.IPv4 {ip 2, subnet 3} */
    static const uint8_t addr[] = {10, 0, 0, 5}, mask[] = {255, 255, 255, 0};
    ck_assert(!pb_has(ip.p, ip.len, 1));
    pb_is_bytes(pb_sub(ip, 2, 0), addr, 4);
    pb_is_bytes(pb_sub(ip, 3, 0), mask, 4);
    static const uint8_t route[] = {10, 0, 0, 1}, ns2[] = {10, 0, 0, 3}, dom[] = {10, 0, 0, 4};
    pb_is_bytes(pb_sub(pb_sub(ipoe, 2, 0), 2, 0), route, 4);
    pb_is_bytes(pb_sub(pb_sub(ipoe, 3, 1), 2, 0), ns2, 4);
    pb_is_bytes(pb_sub(pb_sub(ipoe, 4, 0), 3, 0), mask, 4);
    pb_is_bytes(pb_sub(pb_sub(ipoe, 4, 0), 2, 0), dom, 4);
    /* hostname 5: DNSA {hostname 1, domainname 2, ip 3: an IPv4.IPv4 record} */
    pbf dnsa = pb_sub(ipoe, 5, 0);
    pb_is_string(pb_sub(dnsa, 1, 0), "kr1");
    pb_is_string(pb_sub(dnsa, 2, 0), "cluster.example.org");
    pb_is_bytes(pb_sub(pb_sub(dnsa, 3, 0), 2, 0), addr, 4);
    /* PXE.Client with every field zero: an Any with its type and no value */
    pbf pxe = pb_sub(node, 15, 2);
    pb_is_string(pb_sub(pxe, 1, 0), "type.googleapis.com/PXE.Client");
    ck_assert(!pb_has(pxe.p, pxe.len, 2));
    /* PowerAPI.Node {api_server 1, node_name 2, node_uri 3} */
    pbf papi = pb_any(pb_sub(node, 15, 3), "type.googleapis.com/PowerAPI.Node");
    pb_is_string(pb_sub(papi, 3, 0), "/redfish/v1/Systems/kr1");
    /* Powerman.Control {api_server 1, node_name 2} */
    pbf pm = pb_any(pb_sub(node, 15, 4), "type.googleapis.com/Powerman.Control");
    pb_is_string(pb_sub(pm, 1, 0), "pm1:10101");
    pb_is_string(pb_sub(pm, 2, 0), "kr1");
    /* VBox.VirtualMachine {api_server 1, vm_name 2, uuid 3} */
    pbf vm = pb_any(pb_sub(node, 15, 5), "type.googleapis.com/VBox.VirtualMachine");
    pb_is_string(pb_sub(vm, 2, 0), "kr1");
    pb_is_string(pb_sub(vm, 3, 0), "9c6d3d2e-0000-4000-8000-00000000000a");
    /* decoding the bytes gives the node back, empty extension included */
    kraken_node *back = NULL;
    ck_assert_int_eq(kraken_node_decode(bin, len, &back), 0);
    ck_assert_uint_eq(kraken_node_extension_count(back), 6);
    assert_text(back, "type.googleapis.com/PXE.Client/State", "NONE");
    assert_text(back, "/Busy", "BUSY");
    kraken_node_free(back);
    free(bin);

    /* services (14) of the head node: ServiceInstance {id 1, module 2, state 3, config 4,
     * error_msg 5}, sorted by id; configs as registered by the test schema file */
    ck_assert_int_eq(kraken_node_encode(nodes[1], &bin, &len), 0);
    node = (pbf){2, 0, bin, len};
    pbf svc = pb_sub(node, 14, 0);
    pb_is_string(pb_sub(svc, 1, 0), "papi");
    ck_assert_uint_eq(pb_sub(svc, 3, 0).v, 3);
    pbf pcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/PowerAPI.Config");
    pbf server = pb_sub(pb_sub(pcfg, 1, 0), 2, 0); /* servers map value: PowerAPI.Server */
    pb_is_string(pb_sub(server, 1, 0), "10.0.0.20");
    ck_assert_uint_eq(pb_sub(server, 2, 0).v, 443);
    ck_assert_uint_eq(pb_sub(server, 3, 0).v, 1);
    pb_is_string(pb_sub(server, 4, 0), "/redfish/v1");
    pb_is_string(pb_sub(pcfg, 5, 0), "type.googleapis.com/PowerAPI.Node/NodeUri");
    svc = pb_sub(node, 14, 1);
    pbf mcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/PowermanControl.Config");
    ck_assert_uint_eq(pb_sub(pb_sub(pb_sub(mcfg, 1, 0), 2, 0), 3, 0).v, 10101);
    pb_is_string(pb_sub(mcfg, 3, 0), "1s");
    svc = pb_sub(node, 14, 2);
    pb_is_string(pb_sub(svc, 5, 0), "tftp directory \"/tftp\" missing");
    pbf xcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/PXEModule.Config");
    pb_is_string(pb_sub(xcfg, 7, 0), "/tftp");
    pb_is_string(pb_sub(xcfg, 5, 0),
                 "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mac");
    svc = pb_sub(node, 14, 3);
    pbf rcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/restapi.Config");
    pb_is_string(pb_sub(rcfg, 1, 0), "0.0.0.0");
    ck_assert_uint_eq(pb_sub(rcfg, 2, 0).v, 3141);
    svc = pb_sub(node, 14, 4);
    pbf vcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/VBoxManage.Config");
    pb_is_string(pb_sub(vcfg, 5, 0), "type.googleapis.com/VBox.VirtualMachine/Uuid");
    ck_assert_uint_eq(pb_sub(pb_sub(pb_sub(vcfg, 1, 0), 2, 0), 3, 0).v, 8269);
    svc = pb_sub(node, 14, 5);
    pbf wcfg = pb_any(pb_sub(svc, 4, 0), "type.googleapis.com/WebSocket.Config");
    ck_assert(!pb_has(wcfg.p, wcfg.len, 1));
    ck_assert_uint_eq(pb_sub(wcfg, 2, 0).v, 3142);
    pb_is_string(pb_sub(wcfg, 3, 0), "10s");
    pb_is_string(pb_sub(wcfg, 5, 0), "54s");
    ck_assert_uint_eq(pb_sub(wcfg, 6, 0).v, 4096);
    free(bin);
    kraken_nodes_free(nodes, n);
}
END_TEST

START_TEST(dnsa_ip_is_a_record)
{
    /* the original's form loads ... */
    kraken_node *node = node_from("{\"extensions\": [{\"@type\": \"" IPV4_URL "\", \"hostname\": "
                                  "{\"hostname\": \"kr1\", \"ip\": {\"ip\": \"10.0.0.5\"}}}]}");
    assert_text(node, IPV4_URL "/Hostname/Ip/Ip", "10.0.0.5");
    kraken_node_free(node);
    /* ... and our old bare address is refused, naming the field */
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": \"" IPV4_URL "\", "
              "\"hostname\": {\"hostname\": \"kr1\", \"ip\": \"10.0.0.5\"}}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field "
              "'extensions[0](IPv4.IPv4OverEthernet).hostname.ip': expected an object, got a "
              "string");
}
END_TEST

START_TEST(busy_loads_saves_encodes_and_diffs)
{
    kraken_node *node = node_from("{" ID_KR1 ", \"busy\": \"BUSY\"}");
    assert_text(node, "/Busy", "BUSY");
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &json), 0);
    ck_assert_str_eq(json, "{\"id\":\"" KR1 "\",\"busy\":\"BUSY\"}");
    free(json);
    uint8_t *bin = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken_node_encode(node, &bin, &len), 0);
    ck_assert_uint_eq(pb_get(bin, len, 8, 0).v, 1);
    kraken_node *back = NULL;
    ck_assert_int_eq(kraken_node_decode(bin, len, &back), 0);
    ck_assert(kraken_node_equal(node, back));
    free(bin);
    /* Dsc travels between instances as per-URL changes: /Busy is one of them */
    kraken_change *changes = NULL;
    size_t n = 0;
    kraken_node *free_node = node_from("{" ID_KR1 ", \"busy\": 0}");
    ck_assert_int_eq(kraken_node_diff(free_node, back, &changes, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(changes[0].url, "/Busy");
    kraken_changes_free(changes, n);
    kraken_node_free(free_node);
    kraken_node_free(back);
    kraken_node_free(node);
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"busy\": \"BUSYY\"}]}", KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'busy': unknown FreeBusy name 'BUSYY'");
}
END_TEST

START_TEST(module_configs_are_not_builtin)
{
    ck_assert_ptr_null(kraken_schema_find("PXE.Config"));
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"services\": [{\"id\": \"pxe\", \"config\": "
              "{\"@type\": \"type.googleapis.com/PXE.Config\"}}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'services[0].config': unknown @type "
              "'type.googleapis.com/PXE.Config'");
    /* the original's module config, registered by a schema file (as the daemon's modules do) */
    kraken_node *node = node_from("{\"services\": [{\"id\": \"pxe\", \"config\": {\"@type\": "
                                  "\"type.googleapis.com/PXEModule.Config\", \"tftpDir\": \"/t\"}}]}");
    assert_text(node, "/Services/pxe/Config/TftpDir", "/t");
    kraken_node_free(node);
}
END_TEST

START_TEST(zero_field_extension_kept)
{
    kraken_node *node = node_from("{" ID_KR1 ", \"extensions\": [{\"@type\": "
                                  "\"type.googleapis.com/PXE.Client\", \"state\": \"NONE\"}]}");
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, KRAKEN_JSON_PRETTY, &json), 0);
    ck_assert_str_eq(json, "{\n  \"id\": \"" KR1 "\",\n  \"extensions\": [\n    {\n"
                           "      \"@type\": \"type.googleapis.com/PXE.Client\"\n    }\n  ]\n}");
    kraken_node *back = node_from(json);
    assert_text(back, "type.googleapis.com/PXE.Client/State", "NONE");
    kraken_node_free(back);
    free(json);
    kraken_node_free(node);
    /* a node without the extension still answers "not found" */
    node = node_from("{" ID_KR1 "}");
    char *out = NULL;
    ck_assert_int_eq(kraken_node_get_text(node, "type.googleapis.com/PXE.Client/State", &out),
                     KRAKEN_ENOTFOUND);
    kraken_node_free(node);
}
END_TEST

START_TEST(nul_refused_everywhere)
{
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"runState\": \"SYNC\\u0000junk\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: member 'runState': malformed JSON at byte 75 (line 1, column "
              "76): \\u0000 (NUL) is not allowed in a string");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"nodename\": \"a\0b\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: member 'nodename': malformed JSON at byte 72 (line 1, column "
              "73): NUL byte in a string");
    NODES_MSG("{\"nodes\": [{\"id\": \"" KR1 "\\u0000\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: member 'id': malformed JSON at byte 55 (line 1, column 56): "
              "\\u0000 (NUL) is not allowed in a string");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": "
              "\"type.googleapis.com/PXE.Client\\u0000x\"}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0: member 'extensions[0].@type': malformed JSON at byte 114 "
              "(line 1, column 115): \\u0000 (NUL) is not allowed in a string");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"run\\u0000State\": \"SYNC\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: malformed JSON at byte 62 (line 1, column 63): \\u0000 (NUL) "
              "is not allowed in a member name");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": \"" IPV4_URL "\", "
              "\"ifaces\": {\"kra\\u0000ken\": {}}}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0: member 'extensions[0].ifaces': malformed JSON at byte 143 "
              "(line 1, column 144): \\u0000 (NUL) is not allowed in a member name");
    /* single nodes and the schema loader use the same scanner */
    const char *needles[] = {"req", "NUL", NULL};
    assert_node_fail("{\"nodename\": \"a\\u0000\"}", needles);
    const char *schema = "{\"schemas\": [{\"name\": \"X.\\u0000Y\"}]}";
    ck_assert_int_eq(kraken_schema_load_json(schema, strlen(schema), "s.json"), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(),
                     "s.json: member 'schemas[0].name': malformed JSON at byte 25 (line 1, "
                     "column 26): \\u0000 (NUL) is not allowed in a string");
    ck_assert_ptr_null(kraken_schema_find("X."));
}
END_TEST

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(one_id_rule_for_every_loader)
{
    char dir[] = "/tmp/kraken-ids-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/nodes.json", dir);
    kraken_node **nodes = NULL;
    size_t n = 0;
    write_text(path, "{\"nodes\": [{" ID_KR1 "}, {\"nodename\": \"x\"}]}");
    ck_assert_int_eq(kraken_nodes_load_file(path, &nodes, &n), KRAKEN_EINVAL);
    char want[512];
    snprintf(want, sizeof want, "%s: node 1: no \"id\" (every node needs one)", path);
    ck_assert_str_eq(kraken_error_last(), want);
    write_text(path, "{\"nodes\": [{" ID_KR1 "}, {\"id\": \"00000000-0000-0000-0000-000000000000\"}]}");
    ck_assert_int_eq(kraken_nodes_load_file(path, &nodes, &n), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), want);
    write_text(path, "{\"nodes\": [{" ID_KR1 "}, {\"id\": \"3ac72083-5f34-57a6-bc6b-6d3164394575\"},"
                     " {" ID_KR1 ", \"nodename\": \"again\"}]}");
    ck_assert_int_eq(kraken_nodes_load_file(path, &nodes, &n), KRAKEN_EEXISTS);
    snprintf(want, sizeof want, "%s: node 2 (" KR1 "): duplicate id (node 0 has it too)", path);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_ptr_null(nodes);
    ck_assert_uint_eq(n, 0);
    /* the store's loader gives the same answer */
    kraken_store *store = NULL;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    ck_assert_int_eq(kraken_store_load(store, path), KRAKEN_EEXISTS);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_uint_eq(kraken_store_count(store), 0);
    kraken_store_free(store);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(repeated_type_refused)
{
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": "
              "\"type.googleapis.com/PXE.Client\", \"state\": \"WAIT\", \"@type\": "
              "\"type.googleapis.com/Powerman.Control\"}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'extensions[0]': \"@type\" given twice");
}
END_TEST

/* No byte below 0x20 (nor DEL) in a message: it stays on one line and writes no escape
 * sequence to a terminal. */
static void assert_one_line(void)
{
    for (const char *p = kraken_error_last(); *p != '\0'; p++)
        ck_assert_msg((unsigned char)*p >= 0x20 && *p != 0x7f, "control byte in '%s'",
                      kraken_error_last());
}

START_TEST(messages_escape_input)
{
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"physState\": \"ON\\n\\u001b[31mX\"}]}", KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'physState': unknown PhysState name "
              "'ON\\n\\x1b[31mX'");
    assert_one_line();
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"nodename\\n\\u001b[2J\": \"x\"}]}", KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): unknown field 'nodename\\n\\x1b[2J' in kraken.Node");
    assert_one_line();
    /* an id that is not a UUID is quoted too, and does not name the node */
    NODES_MSG("{\"nodes\": [{\"id\": \"x\\ny\\u009b\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: field 'id': invalid UUID 'x\\ny\\u009b'");
    assert_one_line();
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": \"" IPV4_URL "\", "
              "\"ifaces\": {\"a\\tb\": {\"ip\": {\"ip\": \"1.2.3\"}}}}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field "
              "'extensions[0](IPv4.IPv4OverEthernet).ifaces.a\\tb.ip.ip': invalid IPv4 address "
              "'1.2.3'");
    assert_one_line();
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": \"X\\rY\"}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'extensions[0]': unknown @type 'X\\rY'");
    assert_one_line();
    /* a raw control character in the file is refused by the scanner, and shown escaped */
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"nodename\": \"bad\x1b\"}]}", KRAKEN_EPARSE,
              "state.json: node 0: member 'nodename': malformed JSON at byte 74 (line 1, column "
              "75): control character U+001B in a string (write it as \\u001b)");
    NODES_MSG("{\"nodes\": [{" ID_KR1 "}\x1b]}", KRAKEN_EPARSE,
              "state.json: member 'nodes[0]': malformed JSON at byte 57 (line 1, column 58): "
              "expected ',' or ']' after a node, found '\\x1b'");
    assert_one_line();
    const char *schema = "{\"enums\": [{\"name\": \"A\\nB\", \"members\": {\"UNKNOWN\": 0}}]}";
    ck_assert_int_eq(kraken_schema_load_json(schema, strlen(schema), "s.json"), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "s.json: enum 'A\\nB': invalid type name");
}
END_TEST

START_TEST(malformed_json_names_node_and_member)
{
    /* trailing comma */
    NODES_MSG("{\"nodes\": [\n  {" ID_KR1 "},\n  {" ID_KR1 ",\n   \"extensions\": [{\"@type\": "
              "\"type.googleapis.com/PXE.Client\", \"state\": \"WAIT\",}]}\n]}",
              KRAKEN_EPARSE,
              "state.json: node 1: member 'extensions[0].state': malformed JSON at byte 189 "
              "(line 4, column 79): trailing comma before '}'");
    /* a truncated file */
    NODES_MSG("{\"nodes\": [\n  {" ID_KR1 "},\n  {\"id\": \"3ac72083-5f34-57a6-bc6b-6d3164394575\","
              "\n   \"extensions\": [{\"@type\": \"" IPV4_URL "\", \"ifaces\": {\"kraken\": "
              "{\"ip\": {\"ip\": \"10.0",
              KRAKEN_EPARSE,
              "state.json: node 1: member 'extensions[0].ifaces.kraken.ip.ip': malformed JSON at "
              "byte 219 (line 4, column 109): unterminated string");
    NODES_MSG("{\"nodes\": [\n  {" ID_KR1 "}\n", KRAKEN_EPARSE,
              "state.json: member 'nodes[0]': malformed JSON at byte 61 (line 3, column 1): "
              "expected ',' or ']' after a node, found the end of the input");
    /* the top level */
    NODES_MSG("{\"nodes\": []} x", KRAKEN_EPARSE,
              "state.json: malformed JSON at byte 14 (line 1, column 15): trailing data after the "
              "JSON value: 'x'");
    NODES_MSG("{\"nodes\": [3]}", KRAKEN_EPARSE,
              "state.json: node 0: expected an object, got a number");
}
END_TEST

START_TEST(numbers_printed_as_written)
{
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"extensions\": [{\"@type\": \"" IPV4_URL "\", "
              "\"ifaces\": {\"kraken\": {\"eth\": {\"mtu\": 1e20}}}}]}]}",
              KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field "
              "'extensions[0](IPv4.IPv4OverEthernet).ifaces.kraken.eth.mtu': 1e20 is out of "
              "range for uint32");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"physState\": -2147483649}]}", KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'physState': -2147483649 is not a PhysState "
              "number");
    NODES_MSG("{\"nodes\": [{" ID_KR1 ", \"physState\": 1.5}]}", KRAKEN_EPARSE,
              "state.json: node 0 (" KR1 "): field 'physState': 1.5 is not a PhysState number");
    all_types_schema();
    NODES_MSG("{\"nodes\": [" ALL_PREFIX "\"i32\": 1.5}]}]}", KRAKEN_EPARSE,
              "state.json: node 0: field 'extensions[0](JsonTest.All).i32': int32 expects an "
              "integer, got 1.5");
    NODES_MSG("{\"nodes\": [" ALL_PREFIX "\"u64\": 18446744073709551616}]}]}", KRAKEN_EPARSE,
              "state.json: node 0: field 'extensions[0](JsonTest.All).u64': 18446744073709551616 "
              "is out of range for uint64");
    /* read from the text, not through a double: exact beyond 2^53, exponents allowed */
    kraken_node *node = node_from(ALL_PREFIX "\"i64\": -9007199254740993, \"u64\": "
                                  "18446744073709551615, \"u32\": 1.5e3, \"color\": -5e0}]}");
    assert_text(node, "type.googleapis.com/JsonTest.All/I64", "-9007199254740993");
    assert_text(node, "type.googleapis.com/JsonTest.All/U64", "18446744073709551615");
    assert_text(node, "type.googleapis.com/JsonTest.All/U32", "1500");
    assert_text(node, "type.googleapis.com/JsonTest.All/Color", "NEG");
    kraken_node_free(node);
}
END_TEST

static bool exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void touch(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, "{\"nodes\": [");
}

START_TEST(stale_temp_files_removed)
{
    char dir[] = "/tmp/kraken-tmp-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/state.json", dir);
    size_t n = 0;
    kraken_node **nodes = load_original(&n);
    /* what interrupted saves of state.json leave, and files that are not ours */
    touch(dir, "state.json.tmp.AbC123");
    touch(dir, "state.json.tmp.zz9ZZ9");
    touch(dir, "state.json.tmp.short");     /* not mkstemp's 6 characters */
    touch(dir, "state.json.tmp.AbC123.bak"); /* longer */
    touch(dir, "other.json.tmp.AbC123");    /* another file's */
    touch(dir, "state.json.tmp.Ab-123");    /* not mkstemp's alphabet */
    /* a save in progress (this or another process) holds a lock on its temporary file */
    touch(dir, "state.json.tmp.LOCKED");
    char locked[512];
    snprintf(locked, sizeof locked, "%s/state.json.tmp.LOCKED", dir);
    int fd = open(locked, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    ck_assert_int_eq(kraken_nodes_save_file(path, nodes, n), 0);
    ck_assert(!exists(dir, "state.json.tmp.AbC123"));
    ck_assert(!exists(dir, "state.json.tmp.zz9ZZ9"));
    ck_assert(exists(dir, "state.json.tmp.LOCKED"));
    ck_assert(exists(dir, "state.json.tmp.short"));
    ck_assert(exists(dir, "state.json.tmp.AbC123.bak"));
    ck_assert(exists(dir, "other.json.tmp.AbC123"));
    ck_assert(exists(dir, "state.json.tmp.Ab-123"));
    ck_assert(exists(dir, "state.json"));
    ck_assert_int_eq(count_entries(dir), 6);
    /* the lock is gone (the saver died): the next load of state.json removes the file */
    ck_assert_int_eq(close(fd), 0);
    touch(dir, "state.json.tmp.q1W2e3");
    kraken_node **back = NULL;
    size_t n2 = 0;
    ck_assert_int_eq(kraken_nodes_load_file(path, &back, &n2), 0);
    kraken_nodes_free(back, n2);
    ck_assert(!exists(dir, "state.json.tmp.LOCKED"));
    ck_assert(!exists(dir, "state.json.tmp.q1W2e3"));
    ck_assert_int_eq(count_entries(dir), 5);
    /* a directory of that name is never removed */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/state.json.tmp.DIRxx1", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_int_eq(kraken_nodes_save_file(path, nodes, n), 0);
    ck_assert(exists(dir, "state.json.tmp.DIRxx1"));
    ck_assert_int_eq(rmdir(sub), 0);
    const char *left[] = {"state.json", "state.json.tmp.short", "state.json.tmp.AbC123.bak",
                          "other.json.tmp.AbC123", "state.json.tmp.Ab-123"};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        char f[512];
        snprintf(f, sizeof f, "%s/%s", dir, left[i]);
        ck_assert_int_eq(unlink(f), 0);
    }
    ck_assert_int_eq(rmdir(dir), 0);
    kraken_nodes_free(nodes, n);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, every_fixture_loads_and_round_trips);
    tcase_add_test(tc, cluster4_values);
    tcase_add_test(tc, legacy_spellings);
    tcase_add_test(tc, output_format_exact);
    tcase_add_test(tc, empty_node_and_list);
    tcase_add_test(tc, all_types_round_trip);
    tcase_add_test(tc, numbers_edge_cases);
    tcase_add_test(tc, bad_inputs_name_source_node_field);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, save_file_atomic);
    tcase_add_test(tc, slot_json_bridge);
    tcase_add_test(tc, utf8_validation);
    tcase_add_test(tc, nesting_limit_matches_binary);
    tcase_add_test(tc, original_fixture_saves_byte_stable);
    tcase_add_test(tc, original_fixture_values);
    tcase_add_test(tc, original_fixture_binary_field_numbers);
    tcase_add_test(tc, dnsa_ip_is_a_record);
    tcase_add_test(tc, busy_loads_saves_encodes_and_diffs);
    tcase_add_test(tc, module_configs_are_not_builtin);
    tcase_add_test(tc, zero_field_extension_kept);
    tcase_add_test(tc, nul_refused_everywhere);
    tcase_add_test(tc, one_id_rule_for_every_loader);
    tcase_add_test(tc, repeated_type_refused);
    tcase_add_test(tc, messages_escape_input);
    tcase_add_test(tc, malformed_json_names_node_and_member);
    tcase_add_test(tc, numbers_printed_as_written);
    tcase_add_test(tc, stale_temp_files_removed);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
