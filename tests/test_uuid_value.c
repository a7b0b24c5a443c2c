/* SPDX-License-Identifier: BSD-3-Clause */
/* UUIDs, kraken_value, text forms, slot <-> value conversion, and the util.c helpers below
 * them (UTF-8, quoting input text for messages). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- UUID ------------------------------------------------------------------------- */

START_TEST(uuid_parse_format)
{
    kraken_uuid id;
    char buf[KRAKEN_UUID_STRLEN + 1];
    ck_assert_int_eq(kraken_uuid_parse(&id, "123e4567-E89B-12d3-a456-426614174000"), 0);
    ck_assert_uint_eq(id.bytes[0], 0x12);
    ck_assert_uint_eq(id.bytes[4], 0xe8);
    ck_assert_uint_eq(id.bytes[15], 0x00);
    ck_assert_ptr_eq(kraken_uuid_format(&id, buf), buf);
    ck_assert_str_eq(buf, "123e4567-e89b-12d3-a456-426614174000");
    ck_assert(!kraken_uuid_is_zero(&id));

    kraken_uuid zero;
    ck_assert_int_eq(kraken_uuid_parse(&zero, "00000000-0000-0000-0000-000000000000"), 0);
    ck_assert(kraken_uuid_is_zero(&zero));
    ck_assert_int_lt(kraken_uuid_compare(&zero, &id), 0);
    ck_assert_int_gt(kraken_uuid_compare(&id, &zero), 0);
    ck_assert_int_eq(kraken_uuid_compare(&id, &id), 0);

    static const char *bad[] = {
        "",
        "123e4567-e89b-12d3-a456-42661417400",   /* short */
        "123e4567-e89b-12d3-a456-4266141740000", /* long */
        "123e4567e89b-12d3-a456-4266141740000",  /* dash missing */
        "123e4567-e89b-12d3-a4564-26614174000",  /* dash misplaced */
        "123e4567-e89b-12d3-a456-42661417400g",  /* not hex */
        "{23e4567-e89b-12d3-a456-42661417400}",
        "123e4567 e89b 12d3 a456 426614174000",
    };
    for (size_t i = 0; i < N(bad); i++) {
        kraken_uuid out = id;
        ck_assert_msg(kraken_uuid_parse(&out, bad[i]) == KRAKEN_EPARSE, "accepted '%s'", bad[i]);
        ck_assert_int_eq(kraken_uuid_compare(&out, &id), 0); /* untouched */
    }
    ck_assert_int_eq(kraken_uuid_parse(NULL, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_uuid_parse(&id, NULL), KRAKEN_EINVAL);
}
END_TEST

START_TEST(uuid_generate)
{
    kraken_uuid a, b;
    ck_assert_int_eq(kraken_uuid_generate(&a), 0);
    ck_assert_int_eq(kraken_uuid_generate(&b), 0);
    ck_assert_int_ne(kraken_uuid_compare(&a, &b), 0);
    ck_assert_uint_eq(a.bytes[6] >> 4, 4);      /* version 4 */
    ck_assert_uint_eq(a.bytes[8] & 0xc0, 0x80); /* RFC 4122 variant */
    char buf[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid c;
    ck_assert_int_eq(kraken_uuid_parse(&c, kraken_uuid_format(&a, buf)), 0);
    ck_assert_int_eq(kraken_uuid_compare(&a, &c), 0);
}
END_TEST

/* ---- values ------------------------------------------------------------------------ */

static char *fmt(const kraken_value *v)
{
    char *s = NULL;
    ck_assert_int_eq(kraken_value_format(v, &s), 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void assert_format(const kraken_value *v, const char *want)
{
    char *s = fmt(v);
    ck_assert_str_eq(s, want);
    free(s);
}

START_TEST(type_names)
{
    ck_assert_str_eq(kraken_type_name(KRAKEN_T_UINT32), "uint32");
    ck_assert_str_eq(kraken_type_name(KRAKEN_T_IPV4), "IPv4 address");
    ck_assert_str_eq(kraken_type_name(KRAKEN_T_MAC), "MAC address");
    ck_assert_str_eq(kraken_type_name(KRAKEN_T_NONE), "none");
    ck_assert_str_eq(kraken_type_name(KRAKEN_T_LIST), "list");
    for (int t = KRAKEN_T_NONE; t <= KRAKEN_T_LIST; t++)
        ck_assert_str_ne(kraken_type_name((kraken_type)t), "invalid type");
    ck_assert_str_eq(kraken_type_name((kraken_type)99), "invalid type");
    ck_assert_str_eq(kraken_type_name((kraken_type)-1), "invalid type");
}
END_TEST

START_TEST(constructors_copy_equal)
{
    kraken_value none = KRAKEN_VALUE_INIT;
    ck_assert(kraken_value_is_zero(&none));
    kraken_value b = kraken_value_bool(true);
    ck_assert_int_eq(b.type, KRAKEN_T_BOOL);
    ck_assert(!kraken_value_is_zero(&b));
    ck_assert(kraken_value_is_zero(&(kraken_value){KRAKEN_T_BOOL, NULL, {.b = false}}));
    kraken_value i = kraken_value_int(KRAKEN_T_INT32, -5);
    kraken_value u = kraken_value_uint(KRAKEN_T_UINT64, 5);
    ck_assert(!kraken_value_equal(&i, &u));
    kraken_value i2 = kraken_value_int(KRAKEN_T_INT32, -5);
    ck_assert(kraken_value_equal(&i, &i2));
    ck_assert(!kraken_value_equal(&i, &none));
    ck_assert(kraken_value_equal(&none, &none));
    ck_assert(kraken_value_is_zero(&(kraken_value){KRAKEN_T_UINT64, NULL, {.u = 0}}));

    kraken_value s = kraken_value_string("hello");
    ck_assert_int_eq(s.type, KRAKEN_T_STRING);
    ck_assert_uint_eq(s.v.str.len, 5);
    kraken_value s2;
    ck_assert_int_eq(kraken_value_copy(&s2, &s), 0);
    ck_assert_ptr_ne(s2.v.str.data, s.v.str.data);
    ck_assert(kraken_value_equal(&s, &s2));
    s2.v.str.data[0] = 'j';
    ck_assert(!kraken_value_equal(&s, &s2));
    ck_assert_str_eq(s.v.str.data, "hello");
    kraken_value_clear(&s2);
    ck_assert_int_eq(s2.type, KRAKEN_T_NONE);
    ck_assert_ptr_null(s2.v.str.data);
    kraken_value empty = kraken_value_string("");
    ck_assert(kraken_value_is_zero(&empty));
    ck_assert_str_eq(empty.v.str.data, "");
    kraken_value_clear(&empty);
    kraken_value nul = kraken_value_string(NULL);
    ck_assert_int_eq(nul.type, KRAKEN_T_NONE);

    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, "4afd9a3e-1111-4222-8333-444455556666"), 0);
    kraken_value uv = kraken_value_uuid(&id);
    ck_assert_int_eq(uv.type, KRAKEN_T_UUID);
    ck_assert(!kraken_value_is_zero(&uv));
    kraken_value zu = kraken_value_uuid(NULL);
    ck_assert(kraken_value_is_zero(&zu));
    ck_assert(!kraken_value_equal(&uv, &zu));

    /* Enums compare by number whatever their enum_type says. */
    kraken_value e1 = kraken_value_int(KRAKEN_T_ENUM, 2), e2 = e1;
    e1.enum_type = kraken_enum_find("PhysState");
    ck_assert(kraken_value_equal(&e1, &e2));

    ck_assert_int_eq(kraken_value_copy(NULL, &s), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_value_copy(&s2, NULL), KRAKEN_EINVAL);
    kraken_value_clear(&s);
    kraken_value_clear(NULL);
    ck_assert(kraken_value_equal(NULL, NULL));
    ck_assert(!kraken_value_equal(&i, NULL));
}
END_TEST

START_TEST(format_scalars)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    assert_format(&v, "");
    assert_format(&(kraken_value){KRAKEN_T_BOOL, NULL, {.b = true}}, "true");
    assert_format(&(kraken_value){KRAKEN_T_BOOL, NULL, {.b = false}}, "false");
    assert_format(&(kraken_value){KRAKEN_T_INT64, NULL, {.i = INT64_MIN}},
                  "-9223372036854775808");
    assert_format(&(kraken_value){KRAKEN_T_UINT64, NULL, {.u = UINT64_MAX}},
                  "18446744073709551615");
    v = kraken_value_int(KRAKEN_T_ENUM, 2);
    v.enum_type = kraken_enum_find("PhysState");
    assert_format(&v, "POWER_ON");
    v.v.i = 42; /* not a member */
    assert_format(&v, "42");
    v.enum_type = NULL;
    v.v.i = 2;
    assert_format(&v, "2");
    v = (kraken_value){KRAKEN_T_IPV4, NULL, {.ipv4 = {10, 0, 255, 1}}};
    assert_format(&v, "10.0.255.1");
    v = (kraken_value){KRAKEN_T_MAC, NULL, {.mac = {0xAA, 0x0b, 0, 1, 0xff, 0x10}}};
    assert_format(&v, "aa:0b:00:01:ff:10");
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, "4AFD9A3E-1111-4222-8333-444455556666"), 0);
    v = kraken_value_uuid(&id);
    assert_format(&v, "4afd9a3e-1111-4222-8333-444455556666");
    v = kraken_value_string("raw \"text\"");
    assert_format(&v, "raw \"text\"");
    kraken_value_clear(&v);
    ck_assert_int_eq(kraken_value_format(NULL, &(char *){NULL}), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_value_format(&v, NULL), KRAKEN_EINVAL);
}
END_TEST

/* ---- a schema with one field of every type ----------------------------------------- */

static const kraken_schema *all_schema(void)
{
    static const kraken_field_def fields[] = {
        KRAKEN_FIELD("b", 1, KRAKEN_T_BOOL),
        KRAKEN_FIELD("i32", 2, KRAKEN_T_INT32),
        KRAKEN_FIELD("i64", 3, KRAKEN_T_INT64),
        KRAKEN_FIELD("u32", 4, KRAKEN_T_UINT32),
        KRAKEN_FIELD("u64", 5, KRAKEN_T_UINT64),
        KRAKEN_FIELD("s", 6, KRAKEN_T_STRING),
        KRAKEN_FIELD("by", 7, KRAKEN_T_BYTES),
        KRAKEN_FIELD("e", 8, KRAKEN_T_ENUM, .type_name = "PhysState"),
        KRAKEN_FIELD("ip", 9, KRAKEN_T_IPV4),
        KRAKEN_FIELD("mac", 10, KRAKEN_T_MAC),
        KRAKEN_FIELD("id", 11, KRAKEN_T_UUID),
        KRAKEN_FIELD("rec", 12, KRAKEN_T_RECORD, .type_name = "IPv4.IPv4"),
        KRAKEN_FIELD("m", 13, KRAKEN_T_MAP, .elem_type = KRAKEN_T_INT32),
        KRAKEN_FIELD("l", 14, KRAKEN_T_LIST, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("recs", 15, KRAKEN_T_LIST, .elem_type = KRAKEN_T_RECORD,
                     .type_name = "IPv4.IPv4"),
    };
    const kraken_schema *s = NULL;
    ck_assert_int_eq(kraken_schema_register("TestVal.All", fields, N(fields), &s), 0);
    return s;
}

static const kraken_field *all_field(const char *name)
{
    const kraken_field *f = kraken__schema_field(all_schema(), name, strlen(name));
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Parse @p text for field @p name; expect @p code; on success compare the formatted text. */
static void check_parse(const char *name, const char *text, int code, const char *formatted)
{
    const kraken_field *f = all_field(name);
    kraken_value v = kraken_value_bool(true); /* must be overwritten only on success */
    kraken_error_clear();
    int rc = kraken__value_parse(f, f->type, text, &v);
    ck_assert_msg(rc == code, "%s <- '%s': rc %d, want %d (%s)", name, text, rc, code,
                  kraken_error_last());
    if (rc < 0) {
        ck_assert_int_eq(v.type, KRAKEN_T_BOOL);
        /* the message names the refused text */
        ck_assert_msg(strstr(kraken_error_last(), text) != NULL, "%s <- '%s': message '%s'",
                      name, text, kraken_error_last());
        return;
    }
    ck_assert_int_eq(v.type, f->type);
    if (formatted) {
        char *s = fmt(&v);
        ck_assert_msg(strcmp(s, formatted) == 0, "%s <- '%s' formats as '%s'", name, text, s);
        free(s);
    }
    kraken_value_clear(&v);
}

START_TEST(parse_numbers)
{
    check_parse("i32", "0", 0, "0");
    check_parse("i32", "2147483647", 0, "2147483647");
    check_parse("i32", "-2147483648", 0, "-2147483648");
    check_parse("i32", "2147483648", KRAKEN_ETYPE, NULL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "int32"));
    check_parse("i32", "-2147483649", KRAKEN_ETYPE, NULL);
    check_parse("i64", "9223372036854775807", 0, "9223372036854775807");
    check_parse("i64", "-9223372036854775808", 0, "-9223372036854775808");
    check_parse("i64", "9223372036854775808", KRAKEN_ETYPE, NULL);
    check_parse("i64", "-9223372036854775809", KRAKEN_ETYPE, NULL);
    check_parse("i64", "99999999999999999999999", KRAKEN_ETYPE, NULL);
    check_parse("u32", "4294967295", 0, "4294967295");
    check_parse("u32", "4294967296", KRAKEN_ETYPE, NULL);
    check_parse("u32", "-1", KRAKEN_ETYPE, NULL);
    check_parse("u64", "18446744073709551615", 0, "18446744073709551615");
    check_parse("u64", "18446744073709551616", KRAKEN_ETYPE, NULL);
    check_parse("u64", "-0", 0, "0");
    static const char *malformed[] = {"", "abc", " 1", "1 ", "+1", "1x", "0x10", "1.5", "-", "--1"};
    for (size_t i = 0; i < N(malformed); i++) {
        check_parse("i32", malformed[i], KRAKEN_EPARSE, NULL);
        check_parse("u64", malformed[i], KRAKEN_EPARSE, NULL);
    }
}
END_TEST

START_TEST(parse_enum_bool_string_bytes)
{
    check_parse("e", "POWER_ON", 0, "POWER_ON");
    check_parse("e", "2", 0, "POWER_ON");
    check_parse("e", "0", 0, "PHYS_UNKNOWN");
    check_parse("e", "ON", KRAKEN_ETYPE, NULL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "PhysState"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'ON'"));
    check_parse("e", "power_on", KRAKEN_ETYPE, NULL); /* member names are case-sensitive */
    check_parse("e", "7", KRAKEN_ETYPE, NULL);
    check_parse("e", "-1", KRAKEN_ETYPE, NULL);
    check_parse("e", "", KRAKEN_ETYPE, NULL);
    check_parse("e", "99999999999", KRAKEN_ETYPE, NULL);
    const kraken_field *e = all_field("e");
    kraken_value v;
    ck_assert_int_eq(kraken__value_parse(e, KRAKEN_T_ENUM, "POWER_CYCLE", &v), 0);
    ck_assert_int_eq(v.v.i, 3);
    ck_assert_ptr_eq(v.enum_type, kraken_enum_find("PhysState"));

    check_parse("b", "true", 0, "true");
    check_parse("b", "FALSE", 0, "false");
    check_parse("b", "yes", KRAKEN_EPARSE, NULL);
    check_parse("b", "1", KRAKEN_EPARSE, NULL);
    check_parse("b", "", KRAKEN_EPARSE, NULL);

    check_parse("s", "any text, even \"quotes\" and 1.2.3", 0,
                "any text, even \"quotes\" and 1.2.3");
    check_parse("s", "", 0, "");

    check_parse("by", "aGVsbG8=", 0, "aGVsbG8=");
    check_parse("by", "aGVsbG8", 0, "aGVsbG8="); /* unpadded accepted */
    check_parse("by", "", 0, "");
    check_parse("by", "!!!!", KRAKEN_EPARSE, NULL);
    check_parse("by", "aGVsbG8=x", KRAKEN_EPARSE, NULL);
    const kraken_field *by = all_field("by");
    ck_assert_int_eq(kraken__value_parse(by, KRAKEN_T_BYTES, "AP8A", &v), 0);
    ck_assert_uint_eq(v.v.str.len, 3);
    ck_assert_mem_eq(v.v.str.data, "\x00\xff\x00", 3);
    kraken_value_clear(&v);
    ck_assert_int_eq(kraken__value_parse(by, KRAKEN_T_BYTES, NULL, &v), KRAKEN_EINVAL);
}
END_TEST

START_TEST(parse_addresses)
{
    check_parse("ip", "10.0.0.1", 0, "10.0.0.1");
    check_parse("ip", "255.255.255.255", 0, "255.255.255.255");
    check_parse("ip", "0.0.0.0", 0, "0.0.0.0");
    static const char *bad_ip[] = {"1.2.3", "256.1.1.1", "1.2.3.4.5", "1..2.3", "a.b.c.d",
                                   "1.2.3.4 ", " 1.2.3.4", "", "1234.1.1.1", "1.2.3.-4",
                                   "1.2.3.", "0001.2.3.4"};
    for (size_t i = 0; i < N(bad_ip); i++)
        check_parse("ip", bad_ip[i], KRAKEN_EPARSE, NULL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "IPv4"));

    const kraken_field *ip = all_field("ip");
    kraken_value v;
    ck_assert_int_eq(kraken__value_parse(ip, KRAKEN_T_IPV4, "192.168.1.20", &v), 0);
    ck_assert_mem_eq(v.v.ipv4, "\xc0\xa8\x01\x14", 4);

    check_parse("mac", "AA:bb:cc:dd:ee:0F", 0, "aa:bb:cc:dd:ee:0f");
    check_parse("mac", "aa-bb-cc-dd-ee-ff", 0, "aa:bb:cc:dd:ee:ff");
    static const char *bad_mac[] = {"aa:bb:cc:dd:ee",       "aa:bb:cc:dd:ee:fg",
                                    "aa:bb-cc:dd:ee:ff",    "aabbccddeeff",
                                    "aa:bb:cc:dd:ee:ff:00", "a:bb:cc:dd:ee:ff0",
                                    "",                     "aa.bb.cc.dd.ee.ff"};
    for (size_t i = 0; i < N(bad_mac); i++)
        check_parse("mac", bad_mac[i], KRAKEN_EPARSE, NULL);

    check_parse("id", "4AFD9A3E-1111-4222-8333-444455556666", 0,
                "4afd9a3e-1111-4222-8333-444455556666");
    static const char *bad_id[] = {"4afd9a3e-1111-4222-8333-44445555666",
                                   "4afd9a3e11114222833344445555666600",
                                   "4afd9a3e-1111-4222-8333-44445555666x", ""};
    for (size_t i = 0; i < N(bad_id); i++)
        check_parse("id", bad_id[i], KRAKEN_EPARSE, NULL);
}
END_TEST

START_TEST(parse_compound)
{
    const kraken_field *rec = all_field("rec");
    kraken_value v, c;
    ck_assert_int_eq(kraken__value_parse(rec, KRAKEN_T_RECORD, "{\"ip\": \"1.2.3.4\"}", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_RECORD);
    ck_assert_ptr_nonnull(v.v.tree);
    ck_assert(!kraken_value_is_zero(&v));
    char *s = fmt(&v);
    ck_assert_ptr_nonnull(strstr(s, "1.2.3.4"));
    free(s);
    ck_assert_int_eq(kraken_value_copy(&c, &v), 0);
    ck_assert_ptr_ne(c.v.tree, v.v.tree);
    ck_assert(kraken_value_equal(&c, &v));
    kraken_value_clear(&c);

    /* Compound values convert back into slots (deep copies). */
    kraken_slot slot;
    ck_assert_int_eq(kraken__value_to_slot(rec, KRAKEN_T_RECORD, &v, &slot, "/Rec"), 0);
    ck_assert_ptr_nonnull(slot.rec);
    ck_assert_ptr_ne(slot.rec, v.v.tree->slot.rec);
    ck_assert(kraken__record_equal(slot.rec, v.v.tree->slot.rec));
    kraken__slot_free(rec, KRAKEN_T_RECORD, &slot);
    /* ... but not into a field of another record type. */
    const kraken_field *eth = kraken__schema_field(
        kraken_schema_find("IPv4.IPv4OverEthernet.ConfiguredInterface"), "eth", 3);
    slot.u = 77;
    ck_assert_int_eq(kraken__value_to_slot(eth, KRAKEN_T_RECORD, &v, &slot, "/Eth"), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "IPv4.Ethernet"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/Eth"));
    kraken_value_clear(&v);

    const kraken_field *m = all_field("m");
    ck_assert_int_eq(kraken__value_parse(m, KRAKEN_T_MAP, "{\"b\": 2, \"a\": 1}", &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_MAP);
    ck_assert_uint_eq(v.v.tree->slot.map->n, 2);
    ck_assert_str_eq(v.v.tree->slot.map->entries[0].key, "a"); /* sorted */
    const kraken_field *l = all_field("l");
    ck_assert_int_eq(kraken__value_to_slot(l, KRAKEN_T_LIST, &v, &slot, "/L"), KRAKEN_ETYPE);
    kraken_value_clear(&v);

    ck_assert_int_eq(kraken__value_parse(l, KRAKEN_T_LIST, "[\"x\", \"y\"]", &v), 0);
    ck_assert_uint_eq(v.v.tree->slot.list->n, 2);
    kraken_value_clear(&v);

    v = kraken_value_bool(true);
    /* Refused with a message naming the place (byte, key, index) and what was wrong. */
    ck_assert_int_eq(kraken__value_parse(rec, KRAKEN_T_RECORD, "{\"ip\": ", &v), KRAKEN_EPARSE);
    ck_assert_int_eq(v.type, KRAKEN_T_BOOL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "malformed JSON"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "byte 7 (line 1, column 8)"));
    ck_assert_int_eq(kraken__value_parse(m, KRAKEN_T_MAP, "{\"a\": \"x\"}", &v), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'a'"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'x' is not a valid int32"));
    ck_assert_int_eq(kraken__value_parse(l, KRAKEN_T_LIST, "[1]", &v), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "[0]"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "expected a string"));
    ck_assert_int_eq(v.type, KRAKEN_T_BOOL);
}
END_TEST

/* ---- slot <-> value ---------------------------------------------------------------------- */

static int to_slot(const char *name, const kraken_value *v, kraken_slot *out)
{
    const kraken_field *f = all_field(name);
    return kraken__value_to_slot(f, f->type, v, out, "/TestUrl");
}

START_TEST(value_to_slot_conversions)
{
    kraken_slot slot;
    kraken_value v = kraken_value_int(KRAKEN_T_INT64, 5);
    ck_assert_int_eq(to_slot("i32", &v, &slot), 0);
    ck_assert_int_eq(slot.i, 5);
    ck_assert_int_eq(to_slot("u64", &v, &slot), 0);
    ck_assert_uint_eq(slot.u, 5);
    v = kraken_value_int(KRAKEN_T_INT64, INT64_C(1) << 40);
    ck_assert_int_eq(to_slot("i32", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/TestUrl"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "int32"));
    ck_assert_int_eq(to_slot("u32", &v, &slot), KRAKEN_ETYPE);
    ck_assert_int_eq(to_slot("i64", &v, &slot), 0);
    /* a URL with a control character in it (a map key) is quoted: one-line messages */
    const kraken_field *i32 = all_field("i32");
    ck_assert_int_eq(kraken__value_to_slot(i32, i32->type, &v, &slot, "/Map/a\nb/I32"),
                     KRAKEN_ETYPE);
    ck_assert_str_eq(kraken_error_last(),
                     "'/Map/a\\nb/I32': 1099511627776 is out of range for int32");
    v = kraken_value_int(KRAKEN_T_INT32, -1);
    ck_assert_int_eq(to_slot("u32", &v, &slot), KRAKEN_ETYPE);
    ck_assert_int_eq(to_slot("u64", &v, &slot), KRAKEN_ETYPE);
    ck_assert_int_eq(to_slot("i64", &v, &slot), 0);
    ck_assert_int_eq(slot.i, -1);
    v = kraken_value_uint(KRAKEN_T_UINT64, UINT64_MAX);
    ck_assert_int_eq(to_slot("i64", &v, &slot), KRAKEN_ETYPE);
    ck_assert_int_eq(to_slot("u64", &v, &slot), 0);
    ck_assert_uint_eq(slot.u, UINT64_MAX);
    v = kraken_value_uint(KRAKEN_T_UINT32, UINT32_MAX);
    ck_assert_int_eq(to_slot("i32", &v, &slot), KRAKEN_ETYPE);
    ck_assert_int_eq(to_slot("i64", &v, &slot), 0);

    /* Wrong types name the URL and the expected type. */
    v = kraken_value_string("5");
    ck_assert_int_eq(to_slot("i32", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/TestUrl: expected int32"));
    ck_assert_int_eq(to_slot("e", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "enum PhysState"));
    ck_assert_int_eq(to_slot("s", &v, &slot), 0);
    ck_assert_str_eq(slot.s, "5");
    free(slot.s);
    ck_assert_int_eq(to_slot("by", &v, &slot), 0); /* a string is acceptable as bytes */
    ck_assert_uint_eq(slot.bytes->len, 1);
    free(slot.bytes);
    kraken_value_clear(&v);
    v = kraken_value_bool(true);
    ck_assert_int_eq(to_slot("ip", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "IPv4 address"));
    ck_assert_int_eq(to_slot("rec", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "record IPv4.IPv4"));

    /* Enums: any member number, from ENUM or integer values; others refused. */
    v = kraken_value_int(KRAKEN_T_INT32, 4);
    ck_assert_int_eq(to_slot("e", &v, &slot), 0);
    ck_assert_int_eq(slot.i, 4);
    v = kraken_value_int(KRAKEN_T_ENUM, 9);
    ck_assert_int_eq(to_slot("e", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "PhysState"));
    v.v.i = 2;
    v.enum_type = kraken_enum_find("RunState");
    ck_assert_int_eq(to_slot("e", &v, &slot), KRAKEN_ETYPE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "RunState"));
    v.enum_type = kraken_enum_find("PhysState");
    ck_assert_int_eq(to_slot("e", &v, &slot), 0);
    ck_assert_int_eq(slot.i, 2);
    ck_assert_int_eq(to_slot("i32", &v, &slot), KRAKEN_ETYPE);

    /* Zero strings and UUIDs are stored as NULL; NONE stores the zero value. */
    v = kraken_value_string("");
    slot.u = 1;
    ck_assert_int_eq(to_slot("s", &v, &slot), 0);
    ck_assert_ptr_null(slot.s);
    kraken_value_clear(&v);
    v = kraken_value_uuid(NULL);
    ck_assert_int_eq(to_slot("id", &v, &slot), 0);
    ck_assert_ptr_null(slot.uuid);
    v = (kraken_value)KRAKEN_VALUE_INIT;
    slot.u = 1;
    ck_assert_int_eq(to_slot("i32", &v, &slot), 0);
    ck_assert_uint_eq(slot.u, 0);
}
END_TEST

/* Every field of TestVal.All: text -> value -> slot -> value -> text round trip. */
START_TEST(slot_value_round_trip)
{
    static const struct {
        const char *field, *text;
    } cases[] = {
        {"b", "true"},
        {"i32", "-7"},
        {"i64", "-9000000000"},
        {"u32", "4000000000"},
        {"u64", "18000000000000000000"},
        {"s", "text"},
        {"by", "AQID"},
        {"e", "PHYS_HANG"},
        {"ip", "172.16.0.9"},
        {"mac", "02:00:00:00:00:01"},
        {"id", "4afd9a3e-1111-4222-8333-444455556666"},
    };
    kraken_record *rec = kraken__record_new(all_schema());
    ck_assert_ptr_nonnull(rec);
    ck_assert(kraken__record_is_empty(rec));
    for (size_t i = 0; i < N(cases); i++) {
        const kraken_field *f = all_field(cases[i].field);
        size_t idx = (size_t)(f - all_schema()->fields);
        kraken_value v, back;
        ck_assert_int_eq(kraken__value_parse(f, f->type, cases[i].text, &v), 0);
        ck_assert_int_eq(kraken__value_to_slot(f, f->type, &v, &rec->slots[idx], NULL), 0);
        ck_assert(!kraken__slot_is_zero(f->type, &rec->slots[idx]));
        ck_assert_int_eq(kraken__slot_to_value(f, f->type, &rec->slots[idx], &back), 0);
        ck_assert_msg(kraken_value_equal(&v, &back), "%s differs", cases[i].field);
        char *s = fmt(&back);
        ck_assert_str_eq(s, cases[i].text);
        free(s);
        kraken_value_clear(&v);
        kraken_value_clear(&back);
    }
    ck_assert(!kraken__record_is_empty(rec));
    kraken_record *copy = kraken__record_copy(rec);
    ck_assert(kraken__record_equal(rec, copy));
    kraken__record_free(copy);

    /* Unset fields read as zero values of their type. */
    kraken_record *empty = kraken__record_new(all_schema());
    for (size_t i = 0; i < all_schema()->n_fields; i++) {
        const kraken_field *f = &all_schema()->fields[i];
        kraken_value v;
        ck_assert_int_eq(kraken__slot_to_value(f, f->type, &empty->slots[i], &v), 0);
        ck_assert_int_eq(v.type, f->type);
        ck_assert_msg(kraken_value_is_zero(&v), "%s not zero", f->name);
        if (f->type == KRAKEN_T_STRING || f->type == KRAKEN_T_BYTES)
            ck_assert_ptr_nonnull(v.v.str.data);
        kraken_value_clear(&v);
    }
    kraken__record_free(empty);
    kraken__record_free(rec);
}
END_TEST

/* ---- quoting input text for messages (util.c) ---------------------------------------- */

static const char *quote(const char *text, size_t len, size_t size)
{
    static char buf[256];
    ck_assert_uint_le(size, sizeof buf);
    return kraken__quote(buf, size, text, len);
}

START_TEST(quote_for_messages)
{
    ck_assert_str_eq(quote("SYNC", 4, 96), "'SYNC'");
    ck_assert_str_eq(quote("", 0, 96), "''");
    /* control characters, quote and backslash escaped: one line, nothing for a terminal */
    ck_assert_str_eq(quote("a\nb\tc\rd", 7, 96), "'a\\nb\\tc\\rd'");
    ck_assert_str_eq(quote("\x1b[2J\x7f", 5, 96), "'\\x1b[2J\\x7f'");
    ck_assert_str_eq(quote("it's a\\b", 8, 96), "'it\\'s a\\\\b'");
    /* a NUL inside the given length is shown, not a terminator */
    ck_assert_str_eq(quote("a\0b", 3, 96), "'a\\x00b'");
    /* UTF-8 passes; C1 controls, line separators and bidi overrides do not; bad bytes shown */
    ck_assert_str_eq(quote("h\xc3\xa9", 3, 96), "'h\xc3\xa9'");
    ck_assert_str_eq(quote("\xc2\x9b" "1m", 4, 96), "'\\u009b1m'");
    ck_assert_str_eq(quote("\xe2\x80\xa8\xe2\x80\xae", 6, 96), "'\\u2028\\u202e'");
    ck_assert_str_eq(quote("\xff\xc3", 2, 96), "'\\xff\\xc3'");
    /* cut to the buffer, never in the middle of an escape, and marked */
    ck_assert_str_eq(quote("abcdefghij", 10, 10), "'abcd...'");
    ck_assert_str_eq(quote("abc\n", 4, 10), "'abc\\n'");
    ck_assert_str_eq(quote("ab\ncdefgh", 9, 10), "'ab\\n...'");
    ck_assert_str_eq(quote("abc", 3, 4), "");
}
END_TEST

START_TEST(utf8_sequences)
{
    uint32_t cp = 0;
    ck_assert_uint_eq(kraken__utf8_seq("A", 1, &cp), 1);
    ck_assert_uint_eq(cp, 'A');
    ck_assert_uint_eq(kraken__utf8_seq("\xe2\x82\xac", 3, &cp), 3);
    ck_assert_uint_eq(cp, 0x20AC);
    ck_assert_uint_eq(kraken__utf8_seq("\xe2\x82", 2, &cp), 0);     /* truncated */
    ck_assert_uint_eq(kraken__utf8_seq("\xe0\x80\x80", 3, &cp), 0); /* overlong */
    ck_assert_uint_eq(kraken__utf8_seq("\xed\xb0\x80", 3, &cp), 0); /* surrogate */
    ck_assert(kraken__utf8_valid("", 0));
    ck_assert(!kraken__utf8_valid("a\0", 2));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("uuid_value");
    TCase *tc = tcase_create("uuid");
    tcase_add_test(tc, uuid_parse_format);
    tcase_add_test(tc, uuid_generate);
    suite_add_tcase(s, tc);
    tc = tcase_create("value");
    tcase_add_test(tc, type_names);
    tcase_add_test(tc, constructors_copy_equal);
    tcase_add_test(tc, format_scalars);
    suite_add_tcase(s, tc);
    tc = tcase_create("parse");
    tcase_add_test(tc, parse_numbers);
    tcase_add_test(tc, parse_enum_bool_string_bytes);
    tcase_add_test(tc, parse_addresses);
    tcase_add_test(tc, parse_compound);
    suite_add_tcase(s, tc);
    tc = tcase_create("slots");
    tcase_add_test(tc, value_to_slot_conversions);
    tcase_add_test(tc, slot_value_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("util");
    tcase_add_test(tc, quote_for_messages);
    tcase_add_test(tc, utf8_sequences);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
