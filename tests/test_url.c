/* SPDX-License-Identifier: BSD-3-Clause */
/* URLs (SPEC 1.3): every URL form, auto-creation on set, errors that leave the node unchanged. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "internal.h"

#define IP4 "type.googleapis.com/IPv4.IPv4OverEthernet"
#define PXE "type.googleapis.com/PXE.Client"
#define ALL "type.googleapis.com/Test.All"
#define CFG_TYPED "/Services/pxe/Config/type.googleapis.com/TestModule.Config"

#define ID "4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10"

/* A schema with one field of every type, to exercise text forms and conversions. */
static void register_test_schema(void)
{
    static const kraken_field_def fields[] = {
        KRAKEN_FIELD("flag", 1, KRAKEN_T_BOOL),
        KRAKEN_FIELD("small", 2, KRAKEN_T_INT32),
        KRAKEN_FIELD("big", 3, KRAKEN_T_INT64),
        KRAKEN_FIELD("count", 4, KRAKEN_T_UINT32),
        KRAKEN_FIELD("total", 5, KRAKEN_T_UINT64),
        KRAKEN_FIELD("label", 6, KRAKEN_T_STRING),
        KRAKEN_FIELD("blob", 7, KRAKEN_T_BYTES),
        KRAKEN_FIELD("phase", 8, KRAKEN_T_ENUM, .type_name = "PhysState"),
        KRAKEN_FIELD("addr", 9, KRAKEN_T_IPV4),
        KRAKEN_FIELD("hw", 10, KRAKEN_T_MAC),
        KRAKEN_FIELD("owner", 11, KRAKEN_T_UUID),
        KRAKEN_FIELD("tags", 12, KRAKEN_T_MAP, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("ports", 13, KRAKEN_T_LIST, .elem_type = KRAKEN_T_UINT32),
        KRAKEN_FIELD("host", 14, KRAKEN_T_RECORD, .type_name = "IPv4.DNSA"),
    };
    ck_assert_int_eq(kraken_schema_register("Test.All", fields, sizeof fields / sizeof fields[0],
                                            NULL),
                     0);
}

static kraken_node *new_node(void)
{
    kraken_uuid id;
    kraken_node *n = NULL;
    ck_assert_int_eq(kraken_uuid_parse(&id, ID), 0);
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    return n;
}

static void set_text(kraken_node *n, const char *url, const char *text)
{
    int rc = kraken_node_set_text(n, url, text);
    ck_assert_msg(rc == 0, "set_text %s = %s: %s", url, text, kraken_error_last());
}

/* get_text must succeed and give @p want. */
static void expect_text(const kraken_node *n, const char *url, const char *want)
{
    char *s = NULL;
    int rc = kraken_node_get_text(n, url, &s);
    ck_assert_msg(rc == 0, "get_text %s: %s", url, kraken_error_last());
    ck_assert_str_eq(s, want);
    free(s);
}

/* Reading @p url fails with @p code, and the message names the URL. */
static void expect_get_err(const kraken_node *n, const char *url, int code)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_node_get(n, url, &v);
    ck_assert_msg(rc == code, "get '%s': expected %s, got %s (%s)", url, kraken_err_name(code),
                  kraken_err_name(rc), kraken_error_last());
    ck_assert_int_eq(v.type, KRAKEN_T_NONE);
    if (*url)
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), url));
}

/* A failed write returns @p code and leaves the node exactly as it was. */
static void expect_set_text_err(kraken_node *n, const char *url, const char *text, int code)
{
    kraken_node *before;
    ck_assert_int_eq(kraken_node_copy(&before, n), 0);
    int rc = kraken_node_set_text(n, url, text);
    ck_assert_msg(rc == code, "set_text '%s' = '%s': expected %s, got %s (%s)", url, text,
                  kraken_err_name(code), kraken_err_name(rc), kraken_error_last());
    ck_assert(kraken_node_equal(before, n));
    if (*url)
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), url));
    kraken_node_free(before);
}

static void expect_set_err(kraken_node *n, const char *url, const kraken_value *v, int code)
{
    kraken_node *before;
    ck_assert_int_eq(kraken_node_copy(&before, n), 0);
    int rc = kraken_node_set(n, url, v);
    ck_assert_msg(rc == code, "set '%s': expected %s, got %s (%s)", url, kraken_err_name(code),
                  kraken_err_name(rc), kraken_error_last());
    ck_assert(kraken_node_equal(before, n));
    kraken_node_free(before);
}

static void expect_canonical(const char *url, const char *want)
{
    char *s = NULL;
    int rc = kraken_url_canonical(url, &s);
    ck_assert_msg(rc == 0, "canonical %s: %s", url, kraken_error_last());
    ck_assert_str_eq(s, want);
    free(s);
}

/* ---- core fields and name forms ---------------------------------------------- */

START_TEST(core_fields_roundtrip)
{
    kraken_node *n = new_node();
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
    ck_assert_int_eq(kraken_node_set(n, "/PhysState", &v), 0);
    expect_text(n, "/PhysState", "POWER_ON");
    set_text(n, "/RunState", "SYNC");
    expect_text(n, "/RunState", "SYNC");
    set_text(n, "/Arch", "amd64");
    set_text(n, "/Platform", "sim");
    set_text(n, "/Nodename", "kr1");
    set_text(n, "/ParentId", "00000000-0000-0000-0000-0000000000aa");
    expect_text(n, "/Arch", "amd64");
    expect_text(n, "/Platform", "sim");
    expect_text(n, "/Nodename", "kr1");
    expect_text(n, "/Id", ID);
    expect_text(n, "/ParentId", "00000000-0000-0000-0000-0000000000aa");

    kraken_value out = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, "/PhysState", &out), 0);
    ck_assert_int_eq(out.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(out.v.i, KRAKEN_PHYS_POWER_ON);
    ck_assert_ptr_eq(out.enum_type, kraken_enum_find("PhysState"));
    kraken_node_free(n);
}
END_TEST

START_TEST(name_forms)
{
    kraken_node *n = new_node();
    set_text(n, "/PhysState", "POWER_OFF");
    static const char *forms[] = {"/PhysState", "PhysState", "/physState", "/physstate",
                                  "/PHYSSTATE", "/phys_state", "phys_state", "/Phys_State"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        expect_text(n, forms[i], "POWER_OFF");
    set_text(n, "parent_id", "00000000-0000-0000-0000-000000000001");
    expect_text(n, "/ParentId", "00000000-0000-0000-0000-000000000001");
    kraken_node_free(n);
}
END_TEST

START_TEST(unset_fields_read_zero)
{
    kraken_node *n = new_node();
    expect_text(n, "/Arch", "");
    expect_text(n, "/PhysState", "PHYS_UNKNOWN");
    expect_text(n, "/ParentId", "00000000-0000-0000-0000-000000000000");
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, "/RunState", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(v.v.i, 0);
    kraken_node_free(n);
}
END_TEST

/* ---- extensions -------------------------------------------------------------- */

START_TEST(extension_autocreate_and_forms)
{
    kraken_node *n = new_node();
    expect_get_err(n, IP4 "/Ifaces/kraken/Ip/Ip", KRAKEN_ENOTFOUND);
    set_text(n, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.5");
    ck_assert_int_eq(kraken_node_extension_count(n), 1);
    ck_assert_ptr_eq(kraken_node_extension_schema(n, 0), kraken_schema_find("IPv4.IPv4OverEthernet"));
    expect_text(n, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.5");
    expect_text(n, "/" IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.5");
    expect_text(n, "/Extensions/" IP4 "/ifaces/kraken/ip/ip", "10.0.0.5");
    expect_text(n, IP4 "/ifaces/kraken/IP/IP", "10.0.0.5");
    /* A present record's unset fields read as zero; an absent nested record too. */
    expect_text(n, IP4 "/Ifaces/kraken/Ip/Subnet", "0.0.0.0");
    expect_text(n, IP4 "/Ifaces/kraken/Eth/Mtu", "0");
    expect_text(n, IP4 "/Hostname/Hostname", "");
    /* Map keys are exact. */
    expect_get_err(n, IP4 "/Ifaces/Kraken/Ip/Ip", KRAKEN_ENOTFOUND);
    expect_get_err(n, IP4 "/Ifaces/eth0/Ip/Ip", KRAKEN_ENOTFOUND);
    /* Another extension next to it, kept sorted by type. */
    set_text(n, PXE "/State", "WAIT");
    ck_assert_int_eq(kraken_node_extension_count(n), 2);
    ck_assert_str_eq(kraken_schema_name(kraken_node_extension_schema(n, 0)),
                     "IPv4.IPv4OverEthernet");
    ck_assert_str_eq(kraken_schema_name(kraken_node_extension_schema(n, 1)), "PXE.Client");
    expect_text(n, PXE "/State", "WAIT");
    expect_text(n, PXE "/Method", "PXE");
    kraken_node_free(n);
}
END_TEST

START_TEST(set_zero_value_creates)
{
    kraken_node *n = new_node();
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, 0);
    ck_assert_int_eq(kraken_node_set(n, PXE "/State", &v), 0);
    ck_assert_int_eq(kraken_node_extension_count(n), 1);
    expect_text(n, PXE "/State", "NONE");
    set_text(n, IP4 "/Ifaces/eth0/Eth/Mtu", "0");
    expect_text(n, IP4 "/Ifaces/eth0/Eth/Mtu", "0"); /* the map entry exists now */
    kraken_node_free(n);
}
END_TEST

START_TEST(whole_extension_value)
{
    kraken_node *a = new_node(), *b = new_node();
    set_text(a, IP4 "/Ifaces/kraken/Eth/Mac", "02:00:00:00:00:01");
    set_text(a, IP4 "/Hostname/Hostname", "kr1");
    kraken_value ext = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(a, IP4, &ext), 0);
    ck_assert_int_eq(ext.type, KRAKEN_T_RECORD);
    ck_assert_int_eq(kraken_node_set(b, IP4, &ext), 0);
    ck_assert(kraken_node_equal(a, b));
    /* The wrong record type for an extension URL. */
    expect_set_err(b, PXE, &ext, KRAKEN_ETYPE);
    kraken_value_clear(&ext);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

/* ---- services and their configs ----------------------------------------------- */

START_TEST(services)
{
    kraken_node *n = new_node();
    expect_get_err(n, "/Services/pxe/State", KRAKEN_ENOTFOUND);
    set_text(n, "/Services/pxe/State", "RUN");
    expect_text(n, "/Services/pxe/State", "RUN");
    expect_text(n, "/Services/pxe/Id", "pxe");
    expect_text(n, "services/pxe/id", "pxe");
    set_text(n, "/Services/pxe/Module", "pxe");
    set_text(n, "/Services/power/State", "INIT");
    set_text(n, "/Services/alpha/error_msg", "boom");
    ck_assert_int_eq(kraken_node_service_count(n), 3);
    ck_assert_str_eq(kraken_node_service_id(n, 0), "alpha");
    ck_assert_str_eq(kraken_node_service_id(n, 1), "power");
    ck_assert_str_eq(kraken_node_service_id(n, 2), "pxe");
    expect_text(n, "/Services/alpha/ErrorMsg", "boom");
    /* Service ids are exact. */
    expect_get_err(n, "/Services/PXE/State", KRAKEN_ENOTFOUND);
    /* The key cannot change through the URL; setting it to itself is fine. */
    set_text(n, "/Services/pxe/Id", "pxe");
    expect_set_text_err(n, "/Services/pxe/Id", "other", KRAKEN_EINVAL);
    kraken_node *before;
    ck_assert_int_eq(kraken_node_copy(&before, n), 0);
    ck_assert_int_eq(kraken_node_unset(n, "/Services/pxe/Id"), KRAKEN_EINVAL);
    ck_assert(kraken_node_equal(before, n));
    kraken_node_free(before);
    kraken_node_free(n);
}
END_TEST

START_TEST(whole_service_value)
{
    kraken_node *a = new_node(), *b = new_node();
    set_text(a, "/Services/pxe/State", "RUN");
    set_text(a, CFG_TYPED "/TftpDir", "/tftp");
    kraken_value svc = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(a, "/Services/pxe", &svc), 0);
    ck_assert_int_eq(svc.type, KRAKEN_T_RECORD);
    ck_assert_int_eq(kraken_node_set(b, "/Services/pxe", &svc), 0);
    ck_assert(kraken_node_equal(a, b));
    /* Stored under another id: the record's id does not match the URL. */
    expect_set_err(b, "/Services/other", &svc, KRAKEN_EINVAL);
    kraken_value_clear(&svc);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(service_config_paths)
{
    kraken_node *n = new_node();
    set_text(n, "/Services/pxe/State", "RUN");
    /* Without a config, its fields cannot be resolved unless the URL names the type. */
    expect_get_err(n, "/Services/pxe/Config/TftpDir", KRAKEN_ENOTFOUND);
    expect_set_text_err(n, "/Services/pxe/Config/TftpDir", "/tftp", KRAKEN_ENOTFOUND);
    expect_text(n, CFG_TYPED "/TftpDir", ""); /* absent config of a named type reads zero */

    /* Naming the type creates the config (and the service, if needed). */
    set_text(n, CFG_TYPED "/TftpDir", "/tftp");
    set_text(n, "/Services/other/Config/type.googleapis.com/Powerman.Control/ApiServer", "pm:1");
    expect_text(n, "/Services/other/Config/ApiServer", "pm:1");
    expect_text(n, "/Services/other/Id", "other");
    /* Now the untyped form resolves against the config present on the node. */
    expect_text(n, "/Services/pxe/Config/TftpDir", "/tftp");
    expect_text(n, "/Services/pxe/Config/tftp_dir", "/tftp");
    expect_text(n, "services/pxe/config/tftpdir", "/tftp");
    set_text(n, "/Services/pxe/Config/SrvIp", "10.1.0.1");
    expect_text(n, CFG_TYPED "/SrvIp", "10.1.0.1");
    expect_get_err(n, "/Services/pxe/Config/NoSuchField", KRAKEN_EPARSE);
    expect_set_text_err(n, "/Services/pxe/Config/NoSuchField", "x", KRAKEN_EPARSE);
    expect_set_text_err(n, "/Services/pxe/Config/SrvIp", "10.1.0", KRAKEN_EPARSE);

    /* A type that is not the config's: not found to read, a type error to write. */
    expect_get_err(n, "/Services/pxe/Config/type.googleapis.com/Powerman.Control/ApiServer",
                   KRAKEN_ENOTFOUND);
    expect_set_text_err(n, "/Services/pxe/Config/type.googleapis.com/Powerman.Control/ApiServer",
                        "x", KRAKEN_ETYPE);

    /* Whole config as a record value. */
    kraken_value cfg = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, "/Services/pxe/Config", &cfg), 0);
    ck_assert_int_eq(cfg.type, KRAKEN_T_RECORD);
    ck_assert_int_eq(kraken_node_set(n, "/Services/third/Config", &cfg), 0);
    expect_text(n, "/Services/third/Config/TftpDir", "/tftp");
    kraken_value_clear(&cfg);

    /* Types: known when the URL names the config type, not otherwise. */
    kraken_type t;
    ck_assert_int_eq(kraken_url_type(CFG_TYPED "/SrvIp", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_IPV4);
    ck_assert_int_eq(kraken_url_type("/Services/pxe/Config/SrvIp", &t, NULL), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_url_type("/Services/pxe/Config", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_RECORD);

    /* Unset through the typed and untyped forms. */
    ck_assert_int_eq(kraken_node_unset(n, "/Services/pxe/Config/SrvIp"), 0);
    expect_text(n, CFG_TYPED "/SrvIp", "0.0.0.0");
    ck_assert_int_eq(kraken_node_unset(n, CFG_TYPED), 0);
    expect_get_err(n, "/Services/pxe/Config/TftpDir", KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_node_unset(n, "/Services/pxe/Config/TftpDir"), 0); /* absent: ok */
    kraken_node_free(n);
}
END_TEST

/* ---- lists ----------------------------------------------------------------------- */

START_TEST(list_indices)
{
    kraken_node *n = new_node();
    set_text(n, IP4 "/Routes/0/Ip", "10.0.0.1");
    set_text(n, IP4 "/Routes/1/Ip", "10.0.0.2");
    set_text(n, IP4 "/Routes/0/Subnet", "255.0.0.0");
    expect_text(n, IP4 "/Routes/0/Ip", "10.0.0.1");
    expect_text(n, IP4 "/Routes/1/Ip", "10.0.0.2");
    expect_text(n, IP4 "/Routes/0/Subnet", "255.0.0.0");
    expect_text(n, IP4 "/Routes/01/Ip", "10.0.0.2");
    expect_get_err(n, IP4 "/Routes/2/Ip", KRAKEN_ENOTFOUND);
    expect_get_err(n, IP4 "/Routes/5", KRAKEN_ENOTFOUND);
    expect_get_err(n, IP4 "/DnsNameservers/0/Ip", KRAKEN_ENOTFOUND);
    /* Appending is index == length; beyond is an error. */
    expect_set_text_err(n, IP4 "/Routes/3/Ip", "10.0.0.4", KRAKEN_ENOTFOUND);
    expect_set_text_err(n, IP4 "/DnsNameservers/1/Ip", "10.0.0.4", KRAKEN_ENOTFOUND);
    /* Malformed and huge indices. */
    expect_get_err(n, IP4 "/Routes/x/Ip", KRAKEN_EPARSE);
    expect_get_err(n, IP4 "/Routes/-1/Ip", KRAKEN_EPARSE);
    expect_get_err(n, IP4 "/Routes/99999999999999999999999999/Ip", KRAKEN_EPARSE);
    expect_set_text_err(n, IP4 "/Routes/99999999999999999999999999/Ip", "1.2.3.4", KRAKEN_EPARSE);
    expect_get_err(n, IP4 "/Routes/4000000000/Ip", KRAKEN_ENOTFOUND);
    expect_set_text_err(n, IP4 "/Routes/4000000000/Ip", "1.2.3.4", KRAKEN_ENOTFOUND);
    /* Unset removes the element; later ones move up. */
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Routes/0"), 0);
    expect_text(n, IP4 "/Routes/0/Ip", "10.0.0.2");
    expect_get_err(n, IP4 "/Routes/1", KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Routes/7"), 0);
    kraken_node_free(n);
}
END_TEST

START_TEST(scalar_list_and_map)
{
    register_test_schema();
    kraken_node *n = new_node();
    set_text(n, ALL "/Ports/0", "22");
    set_text(n, ALL "/Ports/1", "80");
    expect_text(n, ALL "/Ports/1", "80");
    set_text(n, ALL "/Ports/0", "2222");
    expect_text(n, ALL "/Ports/0", "2222");
    set_text(n, ALL "/Tags/Rack", "r1");
    set_text(n, ALL "/Tags/rack", "r2");
    expect_text(n, ALL "/Tags/Rack", "r1");
    expect_text(n, ALL "/Tags/rack", "r2");
    expect_get_err(n, ALL "/Tags/RACK", KRAKEN_ENOTFOUND);
    expect_get_err(n, ALL "/Tags/Rack/x", KRAKEN_EPARSE);
    ck_assert_int_eq(kraken_node_unset(n, ALL "/Tags/Rack"), 0);
    expect_get_err(n, ALL "/Tags/Rack", KRAKEN_ENOTFOUND);
    expect_text(n, ALL "/Tags/rack", "r2");
    ck_assert_int_eq(kraken_node_unset(n, ALL "/Tags/absent"), 0);
    /* Whole containers read as JSON-able compound values. */
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, ALL "/Ports", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_LIST);
    kraken_value_clear(&v);
    ck_assert_int_eq(kraken_node_get(n, ALL "/Tags", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_MAP);
    kraken_value_clear(&v);
    kraken_node_free(n);
}
END_TEST

/* ---- every type as text ---------------------------------------------------------- */

START_TEST(text_every_type)
{
    register_test_schema();
    kraken_node *n = new_node();
    static const struct {
        const char *field, *in, *out;
    } cases[] = {
        {"Flag", "true", "true"},
        {"Small", "-42", "-42"},
        {"Big", "-9000000000", "-9000000000"},
        {"Count", "4000000000", "4000000000"},
        {"Total", "18446744073709551615", "18446744073709551615"},
        {"Label", "hello world", "hello world"},
        {"Blob", "AQID", "AQID"},
        {"Phase", "POWER_CYCLE", "POWER_CYCLE"},
        {"Phase", "4", "PHYS_HANG"},
        {"Addr", "192.168.1.20", "192.168.1.20"},
        {"Hw", "02:aa:bb:cc:dd:ee", "02:aa:bb:cc:dd:ee"},
        {"Owner", ID, ID},
        {"Host/Domainname", "example.org", "example.org"},
    };
    char url[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(url, sizeof url, ALL "/%s", cases[i].field);
        set_text(n, url, cases[i].in);
        expect_text(n, url, cases[i].out);
    }
    static const struct {
        const char *field, *in;
        int code;
    } bad[] = {
        {"Flag", "yes", KRAKEN_EPARSE},
        {"Small", "3000000000", KRAKEN_ETYPE},
        {"Small", "12abc", KRAKEN_EPARSE},
        {"Count", "-1", KRAKEN_ETYPE},
        {"Phase", "ON", KRAKEN_ETYPE},
        {"Phase", "17", KRAKEN_ETYPE},
        {"Addr", "300.1.1.1", KRAKEN_EPARSE},
        {"Hw", "02:aa:bb", KRAKEN_EPARSE},
        {"Owner", "not-a-uuid", KRAKEN_EPARSE},
        {"Blob", "!!!", KRAKEN_EPARSE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(url, sizeof url, ALL "/%s", bad[i].field);
        expect_set_text_err(n, url, bad[i].in, bad[i].code);
    }
    kraken_node_free(n);
}
END_TEST

START_TEST(typed_values_and_errors)
{
    register_test_schema();
    kraken_node *n = new_node();
    /* Integers convert between widths when they fit. */
    kraken_value v = kraken_value_int(KRAKEN_T_INT64, 1500);
    ck_assert_int_eq(kraken_node_set(n, IP4 "/Ifaces/kraken/Eth/Mtu", &v), 0);
    expect_text(n, IP4 "/Ifaces/kraken/Eth/Mtu", "1500");
    v = kraken_value_int(KRAKEN_T_INT64, -1);
    expect_set_err(n, IP4 "/Ifaces/kraken/Eth/Mtu", &v, KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "Mtu"));
    /* Wrong types. */
    kraken_value s = kraken_value_string("POWER_ON");
    expect_set_err(n, "/PhysState", &s, KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/PhysState"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "PhysState"));
    expect_set_err(n, IP4 "/Ifaces/kraken/Ip/Ip", &s, KRAKEN_ETYPE);
    /* Nothing is created by a failed write into an absent extension. */
    expect_set_err(n, PXE "/State", &s, KRAKEN_ETYPE);
    ck_assert_int_eq(kraken_node_extension_count(n), 1);
    kraken_value_clear(&s);
    /* Enum numbers that are not members, members of another enum. */
    v = kraken_value_int(KRAKEN_T_ENUM, 9);
    expect_set_err(n, "/PhysState", &v, KRAKEN_ETYPE);
    kraken_value other = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_url_parse_value("/RunState", "SYNC", &other), 0);
    expect_set_err(n, "/PhysState", &other, KRAKEN_ETYPE);
    v = kraken_value_int(KRAKEN_T_INT32, 2); /* a bare number is a member number */
    ck_assert_int_eq(kraken_node_set(n, "/PhysState", &v), 0);
    expect_text(n, "/PhysState", "POWER_ON");
    /* A record where a scalar goes, and a scalar where a record goes. */
    kraken_value rec = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, IP4 "/Ifaces/kraken", &rec), 0);
    expect_set_err(n, "/Arch", &rec, KRAKEN_ETYPE);
    expect_set_err(n, ALL "/Host", &rec, KRAKEN_ETYPE);
    kraken_value_clear(&rec);
    v = kraken_value_bool(true);
    expect_set_err(n, IP4 "/Ifaces/kraken", &v, KRAKEN_ETYPE);
    kraken_node_free(n);
}
END_TEST

/* ---- malformed URLs ---------------------------------------------------------------- */

START_TEST(malformed_urls)
{
    kraken_node *n = new_node();
    set_text(n, "/Arch", "amd64");
    static const char *bad[] = {
        "//",
        "/Ifaces",
        "/PhysState/x",
        "type.googleapis.com/",
        "type.googleapis.com",
        "/type.googleapis.com",
        "type.googleapis.com/No.Such/X",
        "type.googleapis.com/No.Such",
        "/PhysState/",
        "/Arch//",
        "//PhysState",
        "/NoSuchField",
        "/Services/pxe/State/x",
        "/Extensions/PXE.Client/State",
        "/Extensions/0",
        IP4 "/Ifaces//Ip",
        IP4 "/NoSuch",
        IP4 "/Ifaces/kraken/Ip/Ip/More",
        "/Services/pxe/Config/type.googleapis.com",
        "/Services/pxe/Config/type.googleapis.com/No.Such/X",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_get_err(n, bad[i], KRAKEN_EPARSE);
        expect_set_text_err(n, bad[i], "1", KRAKEN_EPARSE);
        kraken_type t;
        ck_assert_int_eq(kraken_url_type(bad[i], &t, NULL), KRAKEN_EPARSE);
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), bad[i]));
        char *c = NULL;
        ck_assert_int_eq(kraken_url_canonical(bad[i], &c), KRAKEN_EPARSE);
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), bad[i]));
        ck_assert_ptr_null(c);
        kraken_node *before;
        ck_assert_int_eq(kraken_node_copy(&before, n), 0);
        ck_assert_int_eq(kraken_node_unset(n, bad[i]), KRAKEN_EPARSE);
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), bad[i]));
        ck_assert(kraken_node_equal(before, n));
        kraken_node_free(before);
    }
    /* Messages name the URL and the failing component. */
    expect_get_err(n, "/PhysState/x", KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'x'"));
    expect_get_err(n, "type.googleapis.com/No.Such/X", KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "No.Such"));
    /* A very deep URL is refused, not overflowed. */
    char deep[1024] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "/a");
    expect_get_err(n, deep, KRAKEN_EPARSE);
    kraken_node_free(n);
}
END_TEST

/*
 * The component bound exactly: 64 components are split and fail on the first unknown field;
 * 65 are refused by the bound itself. An off-by-one (65 accepted) fails here without ASan,
 * since the 65-component URL then reports the field instead of the bound.
 */
static void deep_url(char *buf, size_t cap, int components)
{
    buf[0] = '\0';
    for (int i = 0; i < components; i++)
        strncat(buf, "/a", cap - strlen(buf) - 1);
}

START_TEST(component_limit_boundary)
{
    kraken_node *n = new_node();
    char url[256], want[512];
    char *canon = NULL;

    deep_url(url, sizeof url, 64);
    expect_get_err(n, url, KRAKEN_EPARSE);
    snprintf(want, sizeof want, "URL '%s': kraken.Node has no field 'a'", url);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(kraken_url_canonical(url, &canon), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), want);

    deep_url(url, sizeof url, 65);
    snprintf(want, sizeof want, "URL '%s': more than 64 components", url);
    expect_get_err(n, url, KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), want);
    expect_set_text_err(n, url, "1", KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(kraken_url_canonical(url, &canon), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_ptr_null(canon);
    kraken_node_free(n);
}
END_TEST

START_TEST(null_arguments)
{
    kraken_node *n = new_node();
    kraken_value v = KRAKEN_VALUE_INIT;
    char *s = NULL;
    kraken_type t;
    kraken_uuid id;
    const char *path;
    ck_assert_int_eq(kraken_node_get(NULL, "/Arch", &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_get(n, NULL, &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_get(n, "/Arch", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_set(n, "/Arch", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_set(NULL, "/Arch", &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_get_text(n, "/Arch", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_get_text(NULL, "/Arch", &s), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_set_text(n, "/Arch", NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_unset(n, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_type(NULL, &t, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_type("/Arch", NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_parse_value("/Arch", NULL, &v), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_split(NULL, &id, &path), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_canonical(NULL, &s), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_url_canonical("/Arch", NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(s);
    kraken_node_free(n);
}
END_TEST

/* ---- the whole node ------------------------------------------------------------------ */

START_TEST(whole_node)
{
    kraken_node *a = new_node(), *b = NULL;
    set_text(a, "/PhysState", "POWER_ON");
    set_text(a, PXE "/State", "INIT");
    set_text(a, "/Services/pxe/State", "RUN");
    static const char *roots[] = {"", "/"};
    for (size_t i = 0; i < 2; i++) {
        kraken_value v = KRAKEN_VALUE_INIT;
        ck_assert_int_eq(kraken_node_get(a, roots[i], &v), 0);
        ck_assert_int_eq(v.type, KRAKEN_T_RECORD);
        ck_assert_int_eq(kraken_node_new(&b, NULL), 0);
        ck_assert_int_eq(kraken_node_set(b, roots[i], &v), 0);
        ck_assert(kraken_node_equal(a, b));
        kraken_node_free(b);
        kraken_value_clear(&v);
    }
    char *json = NULL;
    ck_assert_int_eq(kraken_node_get_text(a, "", &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "POWER_ON"));
    free(json);
    /* A scalar or another record type cannot replace the node. */
    kraken_value v = kraken_value_int(KRAKEN_T_INT32, 1);
    expect_set_err(a, "", &v, KRAKEN_ETYPE);
    kraken_value ext = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(a, PXE, &ext), 0);
    expect_set_err(a, "/", &ext, KRAKEN_ETYPE);
    kraken_value_clear(&ext);
    kraken_type t;
    ck_assert_int_eq(kraken_url_type("", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_RECORD);
    ck_assert_int_eq(kraken_node_unset(a, "/"), 0);
    ck_assert_int_eq(kraken_node_new(&b, NULL), 0);
    ck_assert(kraken_node_equal(a, b));
    kraken_node_free(b);
    kraken_node_free(a);
}
END_TEST

/* ---- unset ---------------------------------------------------------------------------- */

START_TEST(unset_things)
{
    kraken_node *n = new_node();
    set_text(n, "/Arch", "amd64");
    set_text(n, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.5");
    set_text(n, IP4 "/Ifaces/eth1/Ip/Ip", "10.0.1.5");
    set_text(n, PXE "/State", "WAIT");
    set_text(n, "/Services/pxe/State", "RUN");
    set_text(n, "/Services/sync/State", "RUN");

    ck_assert_int_eq(kraken_node_unset(n, "/Arch"), 0);
    expect_text(n, "/Arch", "");
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Ifaces/eth1"), 0);
    expect_get_err(n, IP4 "/Ifaces/eth1/Ip/Ip", KRAKEN_ENOTFOUND);
    expect_text(n, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.5");
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Ifaces/kraken/Ip"), 0);
    expect_text(n, IP4 "/Ifaces/kraken/Ip/Ip", "0.0.0.0");
    ck_assert_int_eq(kraken_node_unset(n, "/Services/pxe"), 0);
    ck_assert_int_eq(kraken_node_service_count(n), 1);
    expect_get_err(n, "/Services/pxe/State", KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_node_unset(n, PXE), 0);
    ck_assert_int_eq(kraken_node_extension_count(n), 1);
    expect_get_err(n, PXE "/State", KRAKEN_ENOTFOUND);
    /* Removing what is absent changes nothing and is not an error. */
    kraken_node *before;
    ck_assert_int_eq(kraken_node_copy(&before, n), 0);
    ck_assert_int_eq(kraken_node_unset(n, PXE "/State"), 0);
    ck_assert_int_eq(kraken_node_unset(n, "/Services/nope/State"), 0);
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Ifaces/none/Eth/Mtu"), 0);
    ck_assert_int_eq(kraken_node_unset(n, IP4 "/Routes/3"), 0);
    ck_assert(kraken_node_equal(before, n));
    kraken_node_free(before);
    /* Emptied containers equal never-set ones. */
    ck_assert_int_eq(kraken_node_unset(n, IP4), 0);
    ck_assert_int_eq(kraken_node_unset(n, "/Services/sync"), 0);
    kraken_node *fresh = new_node();
    ck_assert(kraken_node_equal(fresh, n));
    ck_assert_int_eq(kraken_node_extension_count(n), 0);
    ck_assert_int_eq(kraken_node_service_count(n), 0);
    kraken_node_free(fresh);
    kraken_node_free(n);
}
END_TEST

/* ---- split, canonical, types ------------------------------------------------------------ */

START_TEST(split_qualified)
{
    kraken_uuid id, want;
    const char *path = NULL;
    ck_assert_int_eq(kraken_uuid_parse(&want, ID), 0);
    ck_assert_int_eq(kraken_url_split("4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10:/PhysState", &id, &path), 0);
    ck_assert_int_eq(kraken_uuid_compare(&id, &want), 0);
    ck_assert_str_eq(path, "/PhysState");
    ck_assert_int_eq(kraken_url_split("4AFD5B83-2A2B-4B2A-9C3E-1C6D2E0E7A10:" IP4 "/Ifaces/kraken/Ip/Ip",
                                      &id, &path),
                     0);
    ck_assert_int_eq(kraken_uuid_compare(&id, &want), 0);
    ck_assert_str_eq(path, IP4 "/Ifaces/kraken/Ip/Ip");
    ck_assert_int_eq(kraken_url_split("4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10:", &id, &path), 0);
    ck_assert_str_eq(path, "");
    /* The empty path names the whole node. */
    kraken_node *n = new_node();
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(n, path, &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_RECORD);
    kraken_value_clear(&v);
    kraken_node_free(n);

    static const char *bad[] = {"/PhysState", "", ":/PhysState", "abc:/PhysState",
                                "4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a1:/x",
                                "4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10a:/x",
                                "4afd5b83x2a2b-4b2a-9c3e-1c6d2e0e7a10:/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = "unchanged";
        ck_assert_int_eq(kraken_url_split(bad[i], &id, &path), KRAKEN_EPARSE);
        ck_assert_msg(strstr(kraken_error_last(), bad[i]) != NULL, "'%s' not named in '%s'",
                      bad[i], kraken_error_last());
        ck_assert_str_eq(path, "unchanged");
    }
}
END_TEST

START_TEST(canonical_forms)
{
    expect_canonical("physstate", "/PhysState");
    expect_canonical("/run_state", "/RunState");
    expect_canonical("", "/");
    expect_canonical("/", "/");
    expect_canonical("/" IP4 "/ifaces/kraken/ip/ip", IP4 "/Ifaces/kraken/Ip/Ip");
    expect_canonical("/Extensions/" PXE "/state", PXE "/State");
    expect_canonical("extensions", "/Extensions");
    expect_canonical(IP4 "/routes/007/ip", IP4 "/Routes/7/Ip");
    expect_canonical("services/pxe/state", "/Services/pxe/State");
    expect_canonical("services/pxe/config/type.googleapis.com/TestModule.Config/tftp_dir",
                     CFG_TYPED "/TftpDir");
    /* Untyped config paths keep their unresolved part as written. */
    expect_canonical("services/pxe/config/tftp_dir", "/Services/pxe/Config/tftp_dir");
}
END_TEST

START_TEST(url_types)
{
    kraken_type t;
    const struct kraken_enum_type *e = NULL;
    ck_assert_int_eq(kraken_url_type("/PhysState", &t, &e), 0);
    ck_assert_int_eq(t, KRAKEN_T_ENUM);
    ck_assert_str_eq(kraken_enum_type_name(e), "PhysState");
    ck_assert_int_eq(kraken_url_type("/Arch", &t, &e), 0);
    ck_assert_int_eq(t, KRAKEN_T_STRING);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(kraken_url_type(PXE "/State", &t, &e), 0);
    ck_assert_int_eq(t, KRAKEN_T_ENUM);
    ck_assert_str_eq(kraken_enum_type_name(e), "PXE.State");
    ck_assert_int_eq(kraken_url_type(IP4 "/Ifaces/any/Ip/Ip", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_IPV4);
    ck_assert_int_eq(kraken_url_type(IP4 "/Ifaces/any", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_RECORD);
    ck_assert_int_eq(kraken_url_type(IP4 "/Ifaces", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_MAP);
    ck_assert_int_eq(kraken_url_type("/Services", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_LIST);
    ck_assert_int_eq(kraken_url_type("/Services/x/State", &t, &e), 0);
    ck_assert_str_eq(kraken_enum_type_name(e), "ServiceState");
    ck_assert_int_eq(kraken_url_type("/Id", &t, NULL), 0);
    ck_assert_int_eq(t, KRAKEN_T_UUID);

    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_url_parse_value("/PhysState", "POWER_ON", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(v.v.i, 2);
    ck_assert_int_eq(kraken_url_parse_value(PXE "/State", "2", &v), 0);
    ck_assert_int_eq(v.v.i, 2);
    ck_assert_int_eq(kraken_url_parse_value("/PhysState", "ON", &v), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/PhysState"));
    ck_assert_int_eq(kraken_url_parse_value("/PhysState", "99", &v), KRAKEN_ETYPE);
    ck_assert_int_eq(kraken_url_parse_value("/Nope", "1", &v), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "URL '/Nope': kraken.Node has no field 'Nope'");
    ck_assert_int_eq(kraken_url_parse_value("/Services/pxe/Config/TftpDir", "x", &v),
                     KRAKEN_ENOTFOUND);
}
END_TEST

/* ---- compiled URLs (internal) ------------------------------------------------------------ */

START_TEST(compiled_urls)
{
    kraken_node *n = new_node();
    kraken_url *phys = NULL, *ip = NULL, *cfg = NULL, *root = NULL;
    ck_assert_int_eq(kraken__url_compile("physstate", &phys), 0);
    ck_assert_int_eq(kraken__url_compile("/" IP4 "/ifaces/kraken/ip/ip", &ip), 0);
    ck_assert_int_eq(kraken__url_compile("/Services/pxe/Config/TftpDir", &cfg), 0);
    ck_assert_int_eq(kraken__url_compile("", &root), 0);
    ck_assert_str_eq(kraken__url_text(phys), "/PhysState");
    ck_assert_str_eq(kraken__url_text(ip), IP4 "/Ifaces/kraken/Ip/Ip");
    ck_assert_int_eq(kraken__url_type(phys), KRAKEN_T_ENUM);
    ck_assert_ptr_eq(kraken__url_enum(phys), kraken_enum_find("PhysState"));
    ck_assert_int_eq(kraken__url_type(ip), KRAKEN_T_IPV4);
    ck_assert_ptr_null(kraken__url_enum(ip));
    ck_assert_int_eq(kraken__url_type(cfg), KRAKEN_T_NONE); /* depends on the node */
    ck_assert_int_eq(kraken__url_type(root), KRAKEN_T_RECORD);

    /* Absent things peek as NULL (zero). */
    ck_assert_ptr_null(kraken__url_peek(ip, n));
    ck_assert_ptr_null(kraken__url_peek(cfg, n));
    ck_assert_ptr_null(kraken__url_peek(root, n));
    const kraken_slot *s = kraken__url_peek(phys, n);
    ck_assert_ptr_nonnull(s); /* a core field always has a slot */
    ck_assert_int_eq(s->i, 0);

    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
    ck_assert_int_eq(kraken__url_set(phys, n, &v), 0);
    ck_assert_int_eq(kraken__url_peek(phys, n)->i, KRAKEN_PHYS_POWER_ON);
    ck_assert_int_eq(kraken_url_parse_value("/Ifaces", "1", &v), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "URL '/Ifaces': kraken.Node has no field 'Ifaces'");
    ck_assert_int_eq(kraken_url_parse_value(IP4 "/Ifaces/kraken/Ip/Ip", "10.9.8.7", &v), 0);
    ck_assert_int_eq(kraken__url_set(ip, n, &v), 0);
    s = kraken__url_peek(ip, n);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(memcmp(&s->ipv4, (uint8_t[]){10, 9, 8, 7}, 4), 0);
    kraken_value out = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken__url_get(ip, n, &out), 0);
    ck_assert(kraken_value_equal(&out, &v));

    /* A tail resolved per node. */
    set_text(n, CFG_TYPED "/TftpDir", "/srv/tftp");
    s = kraken__url_peek(cfg, n);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->s, "/srv/tftp");

    kraken__url_free(phys);
    kraken__url_free(ip);
    kraken__url_free(cfg);
    kraken__url_free(root);
    kraken__url_free(NULL);
    ck_assert_int_eq(kraken__url_compile("/Nope", &phys), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "URL '/Nope': kraken.Node has no field 'Nope'");
    kraken_node_free(n);
}
END_TEST

/* ---- the per-thread cache -------------------------------------------------------------- */

static void *reader_thread(void *arg)
{
    kraken_node *n = arg;
    char url[64];
    intptr_t bad = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++) { /* more URLs than the cache holds */
            snprintf(url, sizeof url, IP4 "/Ifaces/if%d/Eth/Mtu", i);
            char *s = NULL;
            if (kraken_node_get_text(n, url, &s) != 0 || strcmp(s, i % 2 ? "0" : "9000") != 0)
                bad++;
            free(s);
        }
    }
    return (void *)bad;
}

START_TEST(cache_many_urls_and_threads)
{
    kraken_node *n = new_node();
    char url[64];
    for (int i = 0; i < 40; i++) {
        snprintf(url, sizeof url, IP4 "/Ifaces/if%d/Eth/Mtu", i);
        set_text(n, url, i % 2 ? "0" : "9000");
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_thread, n), 0);
    void *bad0 = reader_thread(n), *bad1, *bad2;
    pthread_join(th[0], &bad1);
    pthread_join(th[1], &bad2);
    ck_assert_ptr_null(bad0);
    ck_assert_ptr_null(bad1);
    ck_assert_ptr_null(bad2);
    kraken_node_free(n);
}
END_TEST


/* Strings and URL keys must be UTF-8 (both wire forms require it): refused, node unchanged. */
START_TEST(non_utf8_refused)
{
    kraken_node *node = new_node();
    kraken_node *before = NULL;
    ck_assert_int_eq(kraken_node_copy(&before, node), KRAKEN_OK);
    ck_assert_int_eq(kraken_node_set_text(node, "/Nodename", "bad\xff"), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "UTF-8"));
    ck_assert_int_eq(kraken_node_set_text(node, "/Services/x\xc3/State", "RUN"), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "not valid UTF-8"));
    ck_assert_int_eq(kraken_node_set_text(
                         node, "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/\xe2\x82/Eth/Mtu",
                         "1500"),
                     KRAKEN_EPARSE);
    ck_assert(kraken_node_equal(node, before));
    ck_assert_int_eq(kraken_node_set_text(node, "/Nodename", "n\xc3\xa9ud"), KRAKEN_OK);
    kraken_node_free(before);
    kraken_node_free(node);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc = tcase_create("url");
    tcase_add_test(tc, core_fields_roundtrip);
    tcase_add_test(tc, name_forms);
    tcase_add_test(tc, unset_fields_read_zero);
    tcase_add_test(tc, extension_autocreate_and_forms);
    tcase_add_test(tc, set_zero_value_creates);
    tcase_add_test(tc, whole_extension_value);
    tcase_add_test(tc, services);
    tcase_add_test(tc, whole_service_value);
    tcase_add_test(tc, service_config_paths);
    tcase_add_test(tc, list_indices);
    tcase_add_test(tc, scalar_list_and_map);
    tcase_add_test(tc, text_every_type);
    tcase_add_test(tc, typed_values_and_errors);
    tcase_add_test(tc, malformed_urls);
    tcase_add_test(tc, component_limit_boundary);
    tcase_add_test(tc, null_arguments);
    tcase_add_test(tc, whole_node);
    tcase_add_test(tc, unset_things);
    tcase_add_test(tc, split_qualified);
    tcase_add_test(tc, canonical_forms);
    tcase_add_test(tc, url_types);
    tcase_add_test(tc, compiled_urls);
    tcase_add_test(tc, cache_many_urls_and_threads);
    tcase_add_test(tc, non_utf8_refused);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
