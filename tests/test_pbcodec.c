/* SPDX-License-Identifier: BSD-3-Clause */
/* Binary form of nodes (SPEC 1.5): round trips, wire compatibility with the
 * nanopb-generated kraken.Node, determinism, malformed input. */
#include <dirent.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "kraken.pb.h"
#include "testutil.h"

#define IPV4_URL "type.googleapis.com/IPv4.IPv4OverEthernet"

static kraken_node **load_fixture(const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", KRAKEN_FIXTURES, name);
    kraken_node **nodes = NULL;
    int rc = kraken_nodes_load_file(path, &nodes, n);
    ck_assert_msg(rc == 0, "%s: %s", path, kraken_error_last());
    return nodes;
}

static void encode(const kraken_node *node, uint8_t **buf, size_t *len)
{
    int rc = kraken_node_encode(node, buf, len);
    ck_assert_msg(rc == 0, "encode: %s", kraken_error_last());
}

static kraken_node *decode(const uint8_t *buf, size_t len)
{
    kraken_node *node = NULL;
    int rc = kraken_node_decode(buf, len, &node);
    ck_assert_msg(rc == 0, "decode: %s", kraken_error_last());
    return node;
}

static void assert_text(const kraken_node *node, const char *url, const char *want)
{
    char *got = NULL;
    ck_assert_msg(kraken_node_get_text(node, url, &got) == 0, "%s: %s", url, kraken_error_last());
    ck_assert_str_eq(got, want);
    free(got);
}

/* Decoding must fail with EPROTO, return nothing and mention @p needle. */
static void assert_decode_fails(const uint8_t *buf, size_t len, const char *needle)
{
    kraken_node *node = (kraken_node *)0x1;
    int rc = kraken_node_decode(buf, len, &node);
    ck_assert_msg(rc == KRAKEN_EPROTO, "rc %d (%s)", rc, kraken_error_last());
    ck_assert_ptr_null(node);
    if (needle != NULL)
        ck_assert_msg(strstr(kraken_error_last(), needle) != NULL, "'%s' not in '%s'", needle,
                      kraken_error_last());
}

/* node -> bytes -> node -> bytes: equal nodes, identical bytes; JSON unchanged. */
static void check_round_trip(const kraken_node *node)
{
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    encode(node, &a, &la);
    kraken_node *back = decode(a, la);
    ck_assert(kraken_node_equal(node, back));
    encode(back, &b, &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(a, b, la), 0);
    char *ja = NULL, *jb = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &ja), 0);
    ck_assert_int_eq(kraken_node_to_json(back, 0, &jb), 0);
    ck_assert_str_eq(ja, jb);
    free(ja);
    free(jb);
    kraken_node_free(back);
    free(a);
    free(b);
}

START_TEST(fixtures_round_trip)
{
    DIR *dir = opendir(KRAKEN_FIXTURES);
    ck_assert_ptr_nonnull(dir);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        size_t n = 0;
        kraken_node **nodes = load_fixture(de->d_name, &n);
        for (size_t i = 0; i < n; i++)
            check_round_trip(nodes[i]);
        kraken_nodes_free(nodes, n);
        files++;
    }
    closedir(dir);
    ck_assert_int_ge(files, 2);
}
END_TEST

static kraken_node *node_from_json(const char *json)
{
    kraken_node *node = NULL;
    ck_assert_msg(kraken_node_from_json(json, strlen(json), "test", &node) == 0, "%s",
                  kraken_error_last());
    return node;
}

static const char *const rich_json =
    "{\"id\": \"c0ffee00-0000-4000-8000-000000000001\", \"nodename\": \"head\","
    " \"runState\": \"SYNC\", \"physState\": \"POWER_ON\", \"arch\": \"amd64\","
    " \"platform\": \"sim\", \"parentId\": \"c0ffee00-0000-4000-8000-000000000002\","
    " \"services\": [{\"id\": \"pxe\", \"module\": \"pxe\", \"state\": \"RUN\","
    "   \"config\": {\"@type\": \"type.googleapis.com/TestModule.Config\", \"srvIp\": \"10.0.0.1\","
    "   \"tftpDir\": \"/tftp\"}}, {\"id\": \"a\", \"state\": \"ERROR\", \"errorMsg\": \"boom\"}],"
    " \"extensions\": [{\"@type\": \"type.googleapis.com/PXE.Client\", \"method\": \"iPXE\"},"
    "  {\"@type\": \"type.googleapis.com/IPv4.IPv4OverEthernet\", \"ifaces\": {\"kraken\":"
    "   {\"eth\": {\"iface\": \"eth0\", \"mac\": \"02:00:00:00:01:01\", \"mtu\": 9000,"
    "   \"control\": true}, \"ip\": {\"ip\": \"127.0.1.1\", \"subnet\": \"255.0.0.0\"}},"
    "   \"ib\": {\"ip\": {\"ip\": \"10.1.0.1\"}}}, \"routes\": [{\"ip\": \"10.0.0.0\"}, {}],"
    "   \"hostname\": {\"hostname\": \"h\", \"domainname\": \"d\"}}]}";

START_TEST(rich_node_round_trip)
{
    kraken_node *node = node_from_json(rich_json);
    check_round_trip(node);
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(node, &buf, &len);
    kraken_node *back = decode(buf, len);
    assert_text(back, "/Services/pxe/Config/SrvIp", "10.0.0.1");
    assert_text(back, "/Services/a/ErrorMsg", "boom");
    assert_text(back, IPV4_URL "/Ifaces/kraken/Eth/Mtu", "9000");
    assert_text(back, "type.googleapis.com/PXE.Client/Method", "iPXE");
    /* A copy (different allocation history) encodes to the same bytes. */
    kraken_node *copy = NULL;
    ck_assert_int_eq(kraken_node_copy(&copy, node), 0);
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    encode(copy, &buf2, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_int_eq(memcmp(buf, buf2, len), 0);
    free(buf2);
    kraken_node_free(copy);
    kraken_node_free(back);
    kraken_node_free(node);
    free(buf);
}
END_TEST

START_TEST(empty_node)
{
    kraken_node *node = NULL;
    ck_assert_int_eq(kraken_node_new(&node, NULL), 0);
    uint8_t *buf = NULL;
    size_t len = 99;
    encode(node, &buf, &len);
    ck_assert_uint_eq(len, 0);
    kraken_node *back = decode(buf, 0);
    ck_assert(kraken_node_equal(node, back));
    kraken_node_free(back);
    back = decode(NULL, 0);
    kraken_node_free(back);
    free(buf);
    kraken_node_free(node);
}
END_TEST

/* Our encoding read by the generated nanopb code for proto/kraken.proto. */
START_TEST(generated_code_reads_our_bytes)
{
    size_t n = 0;
    kraken_node **nodes = load_fixture("cluster4.json", &n);
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(nodes[1], &buf, &len);

    kraken_Node msg = kraken_Node_init_zero;
    pb_istream_t s = pb_istream_from_buffer(buf, len);
    ck_assert_msg(pb_decode(&s, kraken_Node_fields, &msg), "%s", PB_GET_ERROR(&s));
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, "4afdefa4-573b-5cfe-a419-c59075cf18a5"), 0);
    ck_assert_int_eq(memcmp(msg.id, id.bytes, 16), 0);
    ck_assert_int_eq(kraken_uuid_parse(&id, "c0ffee00-0000-4000-8000-000000000001"), 0);
    ck_assert_int_eq(memcmp(msg.parent_id, id.bytes, 16), 0);
    ck_assert_str_eq(msg.nodename, "n1");
    ck_assert_str_eq(msg.arch, "amd64");
    ck_assert_str_eq(msg.platform, "sim");
    ck_assert_int_eq(msg.run_state, kraken_RunState_SYNC);
    ck_assert_int_eq(msg.phys_state, kraken_PhysState_PHYS_UNKNOWN);
    ck_assert_uint_eq(msg.services_count, 0);
    ck_assert_uint_eq(msg.extensions_count, 1);
    ck_assert_str_eq(msg.extensions[0].type_url, IPV4_URL);
    ck_assert_ptr_nonnull(msg.extensions[0].value);
    ck_assert_uint_gt(msg.extensions[0].value->size, 10);
    pb_release(kraken_Node_fields, &msg);

    /* services with a typed config */
    kraken_node *rich = node_from_json(rich_json);
    free(buf);
    encode(rich, &buf, &len);
    kraken_Node msg2 = kraken_Node_init_zero;
    s = pb_istream_from_buffer(buf, len);
    ck_assert_msg(pb_decode(&s, kraken_Node_fields, &msg2), "%s", PB_GET_ERROR(&s));
    ck_assert_uint_eq(msg2.services_count, 2);
    ck_assert_str_eq(msg2.services[0].id, "a"); /* sorted by id */
    ck_assert_int_eq(msg2.services[0].state, kraken_ServiceInstance_ServiceState_ERROR);
    ck_assert_str_eq(msg2.services[0].error_msg, "boom");
    ck_assert_str_eq(msg2.services[1].id, "pxe");
    ck_assert(msg2.services[1].has_config);
    ck_assert_str_eq(msg2.services[1].config.type_url, "type.googleapis.com/TestModule.Config");
    ck_assert_uint_eq(msg2.extensions_count, 2);
    ck_assert_str_eq(msg2.extensions[0].type_url, IPV4_URL); /* sorted by schema name */
    ck_assert_str_eq(msg2.extensions[1].type_url, "type.googleapis.com/PXE.Client");
    /* PXE.Client {method = iPXE (1)}: field 1, varint 1 */
    ck_assert_uint_eq(msg2.extensions[1].value->size, 2);
    ck_assert_int_eq(msg2.extensions[1].value->bytes[0], 0x08);
    ck_assert_int_eq(msg2.extensions[1].value->bytes[1], 0x01);
    pb_release(kraken_Node_fields, &msg2);

    kraken_node_free(rich);
    free(buf);
    kraken_nodes_free(nodes, n);
}
END_TEST

static pb_bytes_array_t *bytes_array(const uint8_t *data, size_t len)
{
    pb_bytes_array_t *b = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(len));
    ck_assert_ptr_nonnull(b);
    b->size = (pb_size_t)len;
    memcpy(b->bytes, data, len);
    return b;
}

/* Bytes written by the generated code, read by ours. */
START_TEST(we_read_generated_bytes)
{
    kraken_Node msg = kraken_Node_init_zero;
    for (int i = 0; i < 16; i++)
        msg.id[i] = (uint8_t)(i + 1);
    strcpy(msg.nodename, "gen");
    msg.run_state = kraken_RunState_ERROR;
    msg.phys_state = kraken_PhysState_POWER_CYCLE;
    strcpy(msg.arch, "arm64");
    msg.services_count = 1;
    msg.services = calloc(1, sizeof *msg.services);
    strcpy(msg.services[0].id, "pxe");
    strcpy(msg.services[0].module, "pxe");
    msg.services[0].state = kraken_ServiceInstance_ServiceState_STOP;
    msg.services[0].has_config = true;
    strcpy(msg.services[0].config.type_url, "type.googleapis.com/TestModule.Config");
    /* TestModule.Config {srv_ip (2) = 10.0.0.9, tftp_dir (3) = "/t"} */
    static const uint8_t cfg[] = {0x12, 4, 10, 0, 0, 9, 0x1a, 2, '/', 't'};
    msg.services[0].config.value = bytes_array(cfg, sizeof cfg);
    msg.extensions_count = 1;
    msg.extensions = calloc(1, sizeof *msg.extensions);
    strcpy(msg.extensions[0].type_url, "type.googleapis.com/PXE.Client");
    /* PXE.Client {method (1) = iPXE, state (2) = INIT} */
    static const uint8_t pxe[] = {0x08, 1, 0x10, 2};
    msg.extensions[0].value = bytes_array(pxe, sizeof pxe);

    uint8_t buf[1024];
    pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof buf);
    ck_assert_msg(pb_encode(&os, kraken_Node_fields, &msg), "%s", PB_GET_ERROR(&os));
    pb_release(kraken_Node_fields, &msg);

    /* nanopb writes the fixed-length parent_id even when zero: that reads as "none". */
    kraken_node *node = decode(buf, os.bytes_written);
    assert_text(node, "/Id", "01020304-0506-0708-090a-0b0c0d0e0f10");
    assert_text(node, "/Nodename", "gen");
    assert_text(node, "/RunState", "ERROR");
    assert_text(node, "/PhysState", "POWER_CYCLE");
    assert_text(node, "/Arch", "arm64");
    assert_text(node, "/Services/pxe/State", "STOP");
    assert_text(node, "/Services/pxe/Config/SrvIp", "10.0.0.9");
    assert_text(node, "/Services/pxe/Config/TftpDir", "/t");
    assert_text(node, "type.googleapis.com/PXE.Client/Method", "iPXE");
    assert_text(node, "type.googleapis.com/PXE.Client/State", "INIT");
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(node, "/ParentId", &v), 0);
    ck_assert(kraken_value_is_zero(&v));
    kraken_value_clear(&v);
    check_round_trip(node);
    kraken_node_free(node);
}
END_TEST

/* A run-time schema with every scalar type and numeric lists. */
static const kraken_schema *test_schema(void)
{
    static const kraken_enum_member colors[] = {{"NONE", 0}, {"RED", 1}, {"NEG", -5}};
    const kraken_schema *s = kraken_schema_find("PbTest.All");
    if (s != NULL)
        return s;
    ck_assert_int_eq(kraken_enum_register("PbTest.Color", colors, 3, NULL), 0);
    /* Declared out of number order on purpose: the wire order is by number. */
    const kraken_field_def defs[] = {
        KRAKEN_FIELD("i32", 2, KRAKEN_T_INT32),
        KRAKEN_FIELD("b", 1, KRAKEN_T_BOOL),
        KRAKEN_FIELD("i64", 3, KRAKEN_T_INT64),
        KRAKEN_FIELD("u32", 4, KRAKEN_T_UINT32),
        KRAKEN_FIELD("u64", 5, KRAKEN_T_UINT64),
        KRAKEN_FIELD("s", 6, KRAKEN_T_STRING),
        KRAKEN_FIELD("raw", 7, KRAKEN_T_BYTES),
        KRAKEN_FIELD("color", 8, KRAKEN_T_ENUM, .type_name = "PbTest.Color"),
        KRAKEN_FIELD("addr", 9, KRAKEN_T_IPV4),
        KRAKEN_FIELD("hw", 10, KRAKEN_T_MAC),
        KRAKEN_FIELD("uid", 11, KRAKEN_T_UUID),
        KRAKEN_FIELD("counts", 13, KRAKEN_T_MAP, .elem_type = KRAKEN_T_INT64),
        KRAKEN_FIELD("nums", 14, KRAKEN_T_LIST, .elem_type = KRAKEN_T_UINT32),
        KRAKEN_FIELD("tags", 15, KRAKEN_T_LIST, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("colors", 16, KRAKEN_T_LIST, .elem_type = KRAKEN_T_ENUM,
                     .type_name = "PbTest.Color"),
        KRAKEN_FIELD("sub", 300, KRAKEN_T_RECORD, .type_name = "IPv4.IPv4"),
    };
    ck_assert_int_eq(kraken_schema_register("PbTest.All", defs, sizeof defs / sizeof defs[0], &s),
                     0);
    return s;
}

static size_t put_varint(uint8_t *out, size_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(size_t v)
{
    uint8_t tmp[10];
    return put_varint(tmp, v);
}

/* Wrap record bytes as a node with one extension of PbTest.All. */
static size_t wrap_extension(const uint8_t *rec, size_t rec_len, uint8_t *out)
{
    static const char url[] = "type.googleapis.com/PbTest.All";
    size_t ul = sizeof url - 1;
    size_t any_len = 2 + ul + 1 + varint_len(rec_len) + rec_len;
    size_t n = 0;
    out[n++] = (15 << 3) | 2;
    n += put_varint(out + n, any_len);
    out[n++] = 0x0a;
    out[n++] = (uint8_t)ul;
    memcpy(out + n, url, ul);
    n += ul;
    out[n++] = 0x12;
    n += put_varint(out + n, rec_len);
    memcpy(out + n, rec, rec_len);
    return n + rec_len;
}

START_TEST(scalar_wire_forms)
{
    test_schema();
    kraken_node *node = node_from_json(
        "{\"extensions\": [{\"@type\": \"type.googleapis.com/PbTest.All\", \"i32\": -1, \"b\": "
        "true,"
        " \"i64\": \"-2\", \"u32\": 300, \"u64\": \"18446744073709551615\", \"s\": \"x\","
        " \"raw\": \"AAE=\", \"color\": \"NEG\", \"addr\": \"10.0.0.1\","
        " \"hw\": \"02:00:00:00:00:0a\", \"uid\": \"00000000-0000-0000-0000-0000000000ff\","
        " \"counts\": {\"b\": 2, \"a\": 1}, \"nums\": [1, 300], \"tags\": [\"p\", \"q\"],"
        " \"colors\": [\"RED\", \"NEG\"], \"sub\": {\"ip\": \"1.2.3.4\"}}]}");
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(node, &buf, &len);
    /* clang-format off */
    static const uint8_t want_rec[] = {
        0x08, 0x01,                                                       /* b */
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* i32 -1: 10 bytes */
        0x18, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* i64 -2 */
        0x20, 0xac, 0x02,                                                 /* u32 300 */
        0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* u64 max */
        0x32, 0x01, 'x',                                                  /* s */
        0x3a, 0x02, 0x00, 0x01,                                           /* raw */
        0x40, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* color -5 */
        0x4a, 0x04, 10, 0, 0, 1,                                          /* addr */
        0x52, 0x06, 0x02, 0, 0, 0, 0, 0x0a,                               /* hw */
        0x5a, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,    /* uid */
        0x6a, 0x05, 0x0a, 0x01, 'a', 0x10, 0x01,                          /* counts[a] */
        0x6a, 0x05, 0x0a, 0x01, 'b', 0x10, 0x02,                          /* counts[b] */
        0x72, 0x03, 0x01, 0xac, 0x02,                                     /* nums packed */
        0x7a, 0x01, 'p', 0x7a, 0x01, 'q',                                 /* tags */
        0x82, 0x01, 0x0b, 0x01, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        0xe2, 0x12, 0x06, 0x12, 0x04, 1, 2, 3, 4, /* sub (field 300): IPv4.IPv4 ip is field 2 */
    };
    /* clang-format on */
    uint8_t want[256];
    size_t want_len = wrap_extension(want_rec, sizeof want_rec, want);
    ck_assert_uint_eq(len, want_len);
    ck_assert_int_eq(memcmp(buf, want, len), 0);
    check_round_trip(node);
    free(buf);
    kraken_node_free(node);
}
END_TEST

START_TEST(packed_and_unpacked_lists)
{
    test_schema();
    /* nums as three unpacked varints and one packed run, mixed */
    static const uint8_t rec[] = {0x70, 0x05, 0x72, 0x02, 0x06, 0x07, 0x70, 0x08};
    uint8_t buf[128];
    size_t len = wrap_extension(rec, sizeof rec, buf);
    kraken_node *node = decode(buf, len);
    char *json = NULL;
    ck_assert_int_eq(kraken_node_to_json(node, 0, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"nums\":[5,6,7,8]"));
    free(json);
    kraken_node_free(node);
    /* repeated singular scalar: last wins */
    static const uint8_t twice[] = {0x20, 0x01, 0x20, 0x02};
    len = wrap_extension(twice, sizeof twice, buf);
    node = decode(buf, len);
    assert_text(node, "type.googleapis.com/PbTest.All/U32", "2");
    kraken_node_free(node);
}
END_TEST

START_TEST(malformed_inputs)
{
    test_schema();
    uint8_t buf[256];
    size_t len;

    static const uint8_t unknown_field[] = {0x12, 0x01, 'x', 0x48, 0x01}; /* field 9 (reserved) */
    assert_decode_fails(unknown_field, sizeof unknown_field, "unknown field number 9");
    assert_decode_fails(unknown_field, sizeof unknown_field, "byte 4");

    static const uint8_t wrong_wire[] = {0x10, 0x01}; /* nodename (2) as varint */
    assert_decode_fails(wrong_wire, sizeof wrong_wire, "nodename");
    static const uint8_t fixed64[] = {0x19, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_decode_fails(fixed64, sizeof fixed64, "run_state");

    static const uint8_t bad_enum[] = {0x20, 0x09}; /* phys_state = 9 */
    assert_decode_fails(bad_enum, sizeof bad_enum, "phys_state");

    static const uint8_t overflow[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'};
    assert_decode_fails(overflow, sizeof overflow, "nodename");
    static const uint8_t huge_varint[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_decode_fails(huge_varint, sizeof huge_varint, "run_state");

    static const uint8_t short_uuid[] = {0x0a, 0x03, 1, 2, 3};
    assert_decode_fails(short_uuid, sizeof short_uuid, "16 bytes");

    static const uint8_t bad_utf8[] = {0x12, 0x02, 0xc3, 0x28};
    assert_decode_fails(bad_utf8, sizeof bad_utf8, "UTF-8");
    static const uint8_t nul_in_string[] = {0x12, 0x02, 'a', 0x00};
    assert_decode_fails(nul_in_string, sizeof nul_in_string, "UTF-8");

    static const uint8_t zero_tag[] = {0x00, 0x01};
    assert_decode_fails(zero_tag, sizeof zero_tag, NULL);

    /* unknown type_url, missing type_url */
    static const uint8_t unknown_any[] = {0x7a, 0x07, 0x0a, 0x05, 'N', 'o', '.', 'p', 'e'};
    assert_decode_fails(unknown_any, sizeof unknown_any, "'No.pe'");
    static const uint8_t no_type[] = {0x7a, 0x02, 0x12, 0x00};
    assert_decode_fails(no_type, sizeof no_type, "type_url");

    /* duplicate extension type, duplicate service id, service without id */
    uint8_t dup[80];
    static const uint8_t pxe_any[] = {
        0x7a, 0x20, 0x0a, 0x1e, 't', 'y', 'p', 'e', '.', 'g', 'o', 'o', 'g', 'l', 'e', 'a', 'p',
        'i',  's',  '.',  'c',  'o', 'm', '/', 'P', 'X', 'E', '.', 'C', 'l', 'i', 'e', 'n', 't'};
    memcpy(dup, pxe_any, sizeof pxe_any);
    memcpy(dup + sizeof pxe_any, pxe_any, sizeof pxe_any);
    kraken_node *one = decode(pxe_any, sizeof pxe_any);
    ck_assert_uint_eq(kraken_node_extension_count(one), 1);
    kraken_node_free(one);
    assert_decode_fails(dup, 2 * sizeof pxe_any, "duplicate");
    static const uint8_t dup_svc[] = {0x72, 0x03, 0x0a, 0x01, 'a', 0x72, 0x03, 0x0a, 0x01, 'a'};
    assert_decode_fails(dup_svc, sizeof dup_svc, "duplicate element 'a'");
    static const uint8_t no_id[] = {0x72, 0x02, 0x18, 0x01};
    assert_decode_fails(no_id, sizeof no_id, "services");

    /* service state not in ServiceState */
    static const uint8_t bad_state[] = {0x72, 0x05, 0x0a, 0x01, 'a', 0x18, 0x07};
    assert_decode_fails(bad_state, sizeof bad_state, "state");

    /* inside a run-time schema: wrong sizes, unknown numbers, bad map entries */
    static const uint8_t bad_ip[] = {0x4a, 0x03, 1, 2, 3};
    len = wrap_extension(bad_ip, sizeof bad_ip, buf);
    assert_decode_fails(buf, len, "PbTest.All.addr");
    static const uint8_t bad_num[] = {0x98, 0x01, 0x01}; /* field 19 */
    len = wrap_extension(bad_num, sizeof bad_num, buf);
    assert_decode_fails(buf, len, "unknown field number 19");
    static const uint8_t bad_entry[] = {0x6a, 0x02, 0x18, 0x01};
    len = wrap_extension(bad_entry, sizeof bad_entry, buf);
    assert_decode_fails(buf, len, "map entry");
    static const uint8_t dup_key[] = {0x6a, 0x03, 0x0a, 0x01, 'k', 0x6a, 0x03, 0x0a, 0x01, 'k'};
    len = wrap_extension(dup_key, sizeof dup_key, buf);
    assert_decode_fails(buf, len, "duplicate map key 'k'");
    static const uint8_t bad_packed[] = {0x72, 0x02, 0x80, 0x80};
    len = wrap_extension(bad_packed, sizeof bad_packed, buf);
    assert_decode_fails(buf, len, "nums");
    static const uint8_t bad_packed_enum[] = {0x82, 0x01, 0x01, 0x03};
    len = wrap_extension(bad_packed_enum, sizeof bad_packed_enum, buf);
    assert_decode_fails(buf, len, "colors");
    static const uint8_t tags_varint[] = {0x78, 0x01};
    len = wrap_extension(tags_varint, sizeof tags_varint, buf);
    assert_decode_fails(buf, len, "tags");

    ck_assert_int_eq(kraken_node_decode(NULL, 3, &one), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_decode(buf, len, NULL), KRAKEN_EINVAL);
    uint8_t *out = NULL;
    ck_assert_int_eq(kraken_node_encode(NULL, &out, &len), KRAKEN_EINVAL);
}
END_TEST

/*
 * The bytes of a node whose service "s" holds @p levels kraken.ServiceInstance records, each the
 * config (an Any) of the one above: records nest levels + 2 deep (node and service included).
 */
static uint8_t *nested_node_bytes(int levels, size_t *out_len)
{
    static const char url[] = "type.googleapis.com/kraken.ServiceInstance";
    size_t ul = sizeof url - 1;
    uint8_t *inner = NULL;
    size_t inner_len = 0;
    for (int level = 0; level < levels; level++) {
        /* Any {1: url, 2: inner} as field 4 (config) of a ServiceInstance */
        size_t any_len = 2 + ul + (inner_len > 0 ? 1 + 3 + inner_len : 0);
        uint8_t *rec = malloc(1 + 3 + any_len);
        size_t n = 0;
        rec[n++] = 0x22;
        rec[n++] = (uint8_t)(0x80 | (any_len & 0x7f));
        rec[n++] = (uint8_t)(0x80 | ((any_len >> 7) & 0x7f));
        rec[n++] = (uint8_t)(any_len >> 14);
        rec[n++] = 0x0a;
        rec[n++] = (uint8_t)ul;
        memcpy(rec + n, url, ul);
        n += ul;
        if (inner_len > 0) {
            rec[n++] = 0x12;
            rec[n++] = (uint8_t)(0x80 | (inner_len & 0x7f));
            rec[n++] = (uint8_t)(0x80 | ((inner_len >> 7) & 0x7f));
            rec[n++] = (uint8_t)(inner_len >> 14);
            memcpy(rec + n, inner, inner_len);
            n += inner_len;
        }
        free(inner);
        inner = rec;
        inner_len = n;
    }
    /* node.services[0] = {id: "s", config: ...} */
    size_t svc_len = 3 + inner_len;
    uint8_t *node_buf = malloc(4 + svc_len);
    size_t n = 0;
    node_buf[n++] = 0x72;
    node_buf[n++] = (uint8_t)(0x80 | (svc_len & 0x7f));
    node_buf[n++] = (uint8_t)(0x80 | ((svc_len >> 7) & 0x7f));
    node_buf[n++] = (uint8_t)(svc_len >> 14);
    node_buf[n++] = 0x0a;
    node_buf[n++] = 0x01;
    node_buf[n++] = 's';
    memcpy(node_buf + n, inner, inner_len);
    n += inner_len;
    free(inner);
    *out_len = n;
    return node_buf;
}

/* Typed records nested in themselves through a polymorphic field must not recurse without end. */
START_TEST(deep_nesting_is_bounded)
{
    size_t n = 0;
    uint8_t *node_buf = nested_node_bytes(200, &n);
    assert_decode_fails(node_buf, n, "nested");
    free(node_buf);
}
END_TEST

/*
 * The bound exactly: records nested KRAKEN_CODEC_MAX_DEPTH deep decode and encode; one level
 * more is refused by the decoder (EPROTO) and by the encoder (ELIMIT), naming the limit.
 */
START_TEST(nesting_limit_exact)
{
    char want[128];
    snprintf(want, sizeof want, "records nested more than %d levels", KRAKEN_CODEC_MAX_DEPTH);
    size_t len = 0;
    uint8_t *at_limit = nested_node_bytes(KRAKEN_CODEC_MAX_DEPTH - 2, &len);
    kraken_node *node = NULL;
    int rc = kraken_node_decode(at_limit, len, &node);
    ck_assert_msg(rc == 0, "%d levels refused: %s", KRAKEN_CODEC_MAX_DEPTH, kraken_error_last());
    uint8_t *again = NULL;
    size_t again_len = 0;
    ck_assert_int_eq(kraken_node_encode(node, &again, &again_len), 0);
    free(again);
    free(at_limit);

    uint8_t *over = nested_node_bytes(KRAKEN_CODEC_MAX_DEPTH - 1, &len);
    assert_decode_fails(over, len, want);
    free(over);

    /* One more level built in memory: the service's config put one record deeper. */
    kraken_value config = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(node, "/Services/s/Config", &config), 0);
    kraken_node *deeper = NULL;
    ck_assert_int_eq(kraken_node_new(&deeper, NULL), 0);
    rc = kraken_node_set(deeper, "/Services/s/Config/type.googleapis.com/kraken.ServiceInstance"
                                 "/Config", &config);
    ck_assert_msg(rc == 0, "%s", kraken_error_last());
    uint8_t *bin = (uint8_t *)1;
    ck_assert_int_eq(kraken_node_encode(deeper, &bin, &len), KRAKEN_ELIMIT);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), want));
    kraken_value_clear(&config);
    kraken_node_free(deeper);
    kraken_node_free(node);
}
END_TEST

START_TEST(truncation_at_every_length)
{
    kraken_node *node = node_from_json(rich_json);
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(node, &buf, &len);
    size_t failures = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* exact-size copy so ASan catches any over-read */
        uint8_t *part = malloc(cut > 0 ? cut : 1);
        memcpy(part, buf, cut);
        kraken_node *out = (kraken_node *)0x1;
        int rc = kraken_node_decode(part, cut, &out);
        if (rc == 0) {
            /* a cut between top-level fields is a valid, shorter node */
            ck_assert_ptr_nonnull(out);
            kraken_node_free(out);
        } else {
            ck_assert_int_eq(rc, KRAKEN_EPROTO);
            ck_assert_ptr_null(out);
            ck_assert_ptr_nonnull(strstr(kraken_error_last(), "byte "));
            failures++;
        }
        free(part);
    }
    /* every cut inside the services and extensions must fail */
    ck_assert_uint_gt(failures, len / 2);
    free(buf);
    kraken_node_free(node);
}
END_TEST

START_TEST(random_bit_flips)
{
    kraken_node *node = node_from_json(rich_json);
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(node, &buf, &len);
    uint8_t *copy = malloc(len);
    uint32_t seed = 12345;
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, buf, len);
        int flips = 1 + iter % 3;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t bit = (seed >> 8) % (len * 8);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        kraken_node *out = NULL;
        int rc = kraken_node_decode(copy, len, &out);
        if (rc == 0) {
            /* whatever decodes must encode again and decode to the same node */
            uint8_t *again = NULL;
            size_t alen = 0;
            encode(out, &again, &alen);
            kraken_node *twice = decode(again, alen);
            ck_assert(kraken_node_equal(out, twice));
            kraken_node_free(twice);
            free(again);
            kraken_node_free(out);
            ok++;
        } else {
            ck_assert_int_eq(rc, KRAKEN_EPROTO);
            ck_assert_ptr_null(out);
            bad++;
        }
    }
    ck_assert_int_gt(bad, 0);
    ck_assert_int_gt(ok, 0);
    free(copy);
    free(buf);
    kraken_node_free(node);
}
END_TEST

/* Found by fuzz_json: an extension whose only content is a map entry with an empty record
 * ("kraken": {}) encodes as an Any without a value, and the sizes of what is inside that value
 * must not be left for the writer to trip over. */
START_TEST(extension_with_only_empty_map_entry)
{
    static const char json[] =
        "{\"id\": \"810d5928-335a-51de-97f9-02394a22a9fe\", \"nodename\": \"n3\", "
        "\"extensions\": [{\"@type\": \"type.googleapis.com/IPv4.IPv4OverEthernet\", "
        "\"ifaces\": {\"kraken\": {}}}, {\"@type\": \"type.googleapis.com/PXE.Client\", "
        "\"state\": \"WAIT\"}]}";
    kraken_node *node = NULL;
    ck_assert_int_eq(kraken_node_from_json(json, strlen(json), "test", &node), 0);
    check_round_trip(node);
    kraken_node_free(node);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("pbcodec");
    TCase *tc = tcase_create("pbcodec");
    tcase_add_test(tc, fixtures_round_trip);
    tcase_add_test(tc, rich_node_round_trip);
    tcase_add_test(tc, empty_node);
    tcase_add_test(tc, extension_with_only_empty_map_entry);
    tcase_add_test(tc, generated_code_reads_our_bytes);
    tcase_add_test(tc, we_read_generated_bytes);
    tcase_add_test(tc, scalar_wire_forms);
    tcase_add_test(tc, packed_and_unpacked_lists);
    tcase_add_test(tc, malformed_inputs);
    tcase_add_test(tc, deep_nesting_is_bounded);
    tcase_add_test(tc, nesting_limit_exact);
    tcase_add_test(tc, truncation_at_every_length);
    tcase_add_test(tc, random_bit_flips);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
