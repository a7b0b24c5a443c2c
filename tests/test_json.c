/* JSON form of nodes (SPEC 1.4): fixtures, legacy spellings, output format, bad inputs,
 * atomic save. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
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
        {"b", 1, KRAKEN_T_BOOL, KRAKEN_T_NONE, NULL},
        {"i32", 2, KRAKEN_T_INT32, KRAKEN_T_NONE, NULL},
        {"i64", 3, KRAKEN_T_INT64, KRAKEN_T_NONE, NULL},
        {"u32", 4, KRAKEN_T_UINT32, KRAKEN_T_NONE, NULL},
        {"u64", 5, KRAKEN_T_UINT64, KRAKEN_T_NONE, NULL},
        {"s", 6, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL},
        {"raw", 7, KRAKEN_T_BYTES, KRAKEN_T_NONE, NULL},
        {"color", 8, KRAKEN_T_ENUM, KRAKEN_T_NONE, "JsonTest.Color"},
        {"addr", 9, KRAKEN_T_IPV4, KRAKEN_T_NONE, NULL},
        {"hw", 10, KRAKEN_T_MAC, KRAKEN_T_NONE, NULL},
        {"uid", 11, KRAKEN_T_UUID, KRAKEN_T_NONE, NULL},
        {"sub", 12, KRAKEN_T_RECORD, KRAKEN_T_NONE, "IPv4.IPv4"},
        {"counts", 13, KRAKEN_T_MAP, KRAKEN_T_INT64, NULL},
        {"nums", 14, KRAKEN_T_LIST, KRAKEN_T_UINT32, NULL},
        {"tags", 15, KRAKEN_T_LIST, KRAKEN_T_STRING, NULL},
        {"colors", 16, KRAKEN_T_LIST, KRAKEN_T_ENUM, "JsonTest.Color"},
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
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
