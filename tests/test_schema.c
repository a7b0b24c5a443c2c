/* SPDX-License-Identifier: BSD-3-Clause */
/* Schema registry: built-ins, registration rules, field lookup, description files. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const kraken_field *field_named(const char *schema, const char *field)
{
    const kraken_schema *s = kraken_schema_find(schema);
    ck_assert_ptr_nonnull(s);
    const kraken_field *f = kraken__schema_field(s, field, strlen(field));
    ck_assert_msg(f != NULL, "%s has no field %s", schema, field);
    return f;
}

static void assert_field(const char *schema, const char *field, uint32_t number, kraken_type type,
                         kraken_type elem, const char *type_name)
{
    const kraken_field *f = field_named(schema, field);
    ck_assert_str_eq(f->name, field);
    ck_assert_uint_eq(f->number, number);
    ck_assert_int_eq(f->type, type);
    ck_assert_int_eq(f->elem_type, elem);
    const char *tn = f->record ? f->record->name : f->enm ? f->enm->name : NULL;
    if (type_name)
        ck_assert_str_eq(tn, type_name);
    else
        ck_assert_ptr_null(tn);
}

static void assert_enum(const char *name, const kraken_enum_member *want, size_t n)
{
    const kraken_enum_type *e = kraken_enum_find(name);
    ck_assert_msg(e != NULL, "enum %s missing", name);
    ck_assert_str_eq(kraken_enum_type_name(e), name);
    ck_assert_uint_eq(kraken_enum_type_count(e), n);
    for (size_t i = 0; i < n; i++) {
        const char *mname;
        int32_t num;
        ck_assert_int_eq(kraken_enum_type_member(e, i, &mname, &num), 0);
        ck_assert_str_eq(mname, want[i].name);
        ck_assert_int_eq(num, want[i].number);
        ck_assert_str_eq(kraken_enum_type_lookup(e, want[i].number), want[i].name);
    }
    ck_assert_int_eq(kraken_enum_type_member(e, n, NULL, NULL), KRAKEN_ENOTFOUND);
}

START_TEST(builtin_enums)
{
    static const kraken_enum_member run[] = {{"UNKNOWN", 0}, {"INIT", 1}, {"SYNC", 2}, {"ERROR", 3}};
    static const kraken_enum_member phys[] = {{"PHYS_UNKNOWN", 0}, {"POWER_OFF", 1},
                                              {"POWER_ON", 2},     {"POWER_CYCLE", 3},
                                              {"PHYS_HANG", 4},    {"PHYS_ERROR", 5}};
    static const kraken_enum_member svc[] = {
        {"UNKNOWN", 0}, {"INIT", 1}, {"STOP", 2}, {"RUN", 3}, {"ERROR", 4}};
    static const kraken_enum_member method[] = {{"PXE", 0}, {"iPXE", 1}};
    static const kraken_enum_member pstate[] = {{"NONE", 0}, {"WAIT", 1}, {"INIT", 2}};
    assert_enum("RunState", run, N(run));
    assert_enum("PhysState", phys, N(phys));
    assert_enum("ServiceState", svc, N(svc));
    assert_enum("PXE.Method", method, N(method));
    assert_enum("PXE.State", pstate, N(pstate));
    ck_assert_ptr_null(kraken_enum_find("NoSuchEnum"));
    ck_assert_ptr_null(kraken_enum_find(NULL));
    ck_assert_ptr_null(kraken_enum_type_lookup(kraken_enum_find("RunState"), 99));
    ck_assert_ptr_null(kraken_enum_type_lookup(NULL, 0));
    ck_assert_int_eq(kraken_enum_type_member(NULL, 0, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_uint_ge(kraken_enum_count(), 5);
    ck_assert_ptr_nonnull(kraken_enum_at(0));
    ck_assert_ptr_null(kraken_enum_at(100000));
}
END_TEST

START_TEST(builtin_node_and_service)
{
    const struct kraken_schema *node = kraken__node_schema();
    const struct kraken_schema *svc = kraken__service_schema();
    ck_assert_ptr_nonnull(node);
    ck_assert_ptr_nonnull(svc);
    ck_assert_ptr_eq(kraken_schema_find("kraken.Node"), node);
    ck_assert_ptr_eq(kraken_schema_find("type.googleapis.com/kraken.ServiceInstance"), svc);
    ck_assert_uint_eq(node->n_fields, KRAKEN_NODE_N_FIELDS);
    ck_assert_uint_eq(svc->n_fields, KRAKEN_SVC_N_FIELDS);

    static const struct {
        size_t idx;
        const char *name;
        uint32_t number;
    } node_order[] = {
        {KRAKEN_NODE_F_ID, "id", 1},           {KRAKEN_NODE_F_NODENAME, "nodename", 2},
        {KRAKEN_NODE_F_RUN_STATE, "run_state", 3}, {KRAKEN_NODE_F_PHYS_STATE, "phys_state", 4},
        {KRAKEN_NODE_F_ARCH, "arch", 5},       {KRAKEN_NODE_F_PLATFORM, "platform", 6},
        {KRAKEN_NODE_F_PARENT_ID, "parent_id", 7}, {KRAKEN_NODE_F_SERVICES, "services", 14},
        {KRAKEN_NODE_F_EXTENSIONS, "extensions", 15},
    };
    for (size_t i = 0; i < N(node_order); i++) {
        ck_assert_str_eq(node->fields[node_order[i].idx].name, node_order[i].name);
        ck_assert_uint_eq(node->fields[node_order[i].idx].number, node_order[i].number);
    }
    assert_field("kraken.Node", "id", 1, KRAKEN_T_UUID, KRAKEN_T_NONE, NULL);
    assert_field("kraken.Node", "run_state", 3, KRAKEN_T_ENUM, KRAKEN_T_NONE, "RunState");
    assert_field("kraken.Node", "phys_state", 4, KRAKEN_T_ENUM, KRAKEN_T_NONE, "PhysState");
    assert_field("kraken.Node", "parent_id", 7, KRAKEN_T_UUID, KRAKEN_T_NONE, NULL);
    assert_field("kraken.Node", "services", 14, KRAKEN_T_LIST, KRAKEN_T_RECORD,
                 "kraken.ServiceInstance");
    assert_field("kraken.Node", "extensions", 15, KRAKEN_T_LIST, KRAKEN_T_RECORD, NULL);
    ck_assert_int_eq(node->fields[KRAKEN_NODE_F_SERVICES].list_key, KRAKEN_KEY_FIELD);
    ck_assert_uint_eq(node->fields[KRAKEN_NODE_F_SERVICES].key_field, KRAKEN_SVC_F_ID);
    ck_assert_int_eq(node->fields[KRAKEN_NODE_F_EXTENSIONS].list_key, KRAKEN_KEY_TYPE);

    static const char *svc_order[] = {"id", "module", "state", "config", "error_msg"};
    for (size_t i = 0; i < N(svc_order); i++) {
        ck_assert_str_eq(svc->fields[i].name, svc_order[i]);
        ck_assert_uint_eq(svc->fields[i].number, i + 1);
    }
    assert_field("kraken.ServiceInstance", "state", 3, KRAKEN_T_ENUM, KRAKEN_T_NONE,
                 "ServiceState");
    assert_field("kraken.ServiceInstance", "config", 4, KRAKEN_T_RECORD, KRAKEN_T_NONE, NULL);
}
END_TEST

START_TEST(builtin_extensions)
{
    const char *ci = "IPv4.IPv4OverEthernet.ConfiguredInterface";
    assert_field("IPv4.Ethernet", "iface", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.Ethernet", "mac", 2, KRAKEN_T_MAC, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.Ethernet", "mtu", 3, KRAKEN_T_UINT32, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.Ethernet", "control", 4, KRAKEN_T_BOOL, KRAKEN_T_NONE, NULL);
    /* SPEC Appendix A: IPv4.IPv4 numbers its fields 2 and 3 */
    assert_field("IPv4.IPv4", "ip", 2, KRAKEN_T_IPV4, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.IPv4", "subnet", 3, KRAKEN_T_IPV4, KRAKEN_T_NONE, NULL);
    assert_field(ci, "eth", 1, KRAKEN_T_RECORD, KRAKEN_T_NONE, "IPv4.Ethernet");
    assert_field(ci, "ip", 2, KRAKEN_T_RECORD, KRAKEN_T_NONE, "IPv4.IPv4");
    assert_field("IPv4.DNSA", "hostname", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.DNSA", "domainname", 2, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.DNSA", "ip", 3, KRAKEN_T_RECORD, KRAKEN_T_NONE, "IPv4.IPv4");
    assert_field("IPv4.DNSCNAME", "cname", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.DNSCNAME", "hostname", 2, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("IPv4.IPv4OverEthernet", "ifaces", 1, KRAKEN_T_MAP, KRAKEN_T_RECORD, ci);
    assert_field("IPv4.IPv4OverEthernet", "routes", 2, KRAKEN_T_LIST, KRAKEN_T_RECORD,
                 "IPv4.IPv4");
    assert_field("IPv4.IPv4OverEthernet", "dns_nameservers", 3, KRAKEN_T_LIST, KRAKEN_T_RECORD,
                 "IPv4.IPv4");
    assert_field("IPv4.IPv4OverEthernet", "dns_domains", 4, KRAKEN_T_LIST, KRAKEN_T_RECORD,
                 "IPv4.IPv4");
    assert_field("IPv4.IPv4OverEthernet", "hostname", 5, KRAKEN_T_RECORD, KRAKEN_T_NONE,
                 "IPv4.DNSA");
    assert_field("PXE.Client", "method", 1, KRAKEN_T_ENUM, KRAKEN_T_NONE, "PXE.Method");
    assert_field("PXE.Client", "state", 2, KRAKEN_T_ENUM, KRAKEN_T_NONE, "PXE.State");
    assert_field("Powerman.Control", "api_server", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("Powerman.Control", "node_name", 2, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("PowerAPI.Node", "api_server", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("PowerAPI.Node", "node_name", 2, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("PowerAPI.Node", "node_uri", 3, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("VBox.VirtualMachine", "api_server", 1, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("VBox.VirtualMachine", "vm_name", 2, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    assert_field("VBox.VirtualMachine", "uuid", 3, KRAKEN_T_STRING, KRAKEN_T_NONE, NULL);
    /* module config types belong to their modules, and our old names are gone */
    ck_assert_ptr_null(kraken_schema_find("PXE.Config"));
    ck_assert_ptr_null(kraken_schema_find("IPv4.Hostname"));

    const kraken_schema *s = kraken_schema_find("IPv4.IPv4OverEthernet");
    ck_assert_str_eq(kraken_schema_name(s), "IPv4.IPv4OverEthernet");
    ck_assert_str_eq(kraken_schema_type_url(s), "type.googleapis.com/IPv4.IPv4OverEthernet");
    ck_assert_uint_eq(kraken_schema_field_count(s), 5);
    kraken_field_def d = {.version = KRAKEN_FIELD_DEF_VERSION};
    ck_assert_int_eq(kraken_schema_field(s, 0, &d), 0);
    ck_assert_str_eq(d.name, "ifaces");
    ck_assert_int_eq(d.type, KRAKEN_T_MAP);
    ck_assert_int_eq(d.elem_type, KRAKEN_T_RECORD);
    ck_assert_str_eq(d.type_name, ci);
    ck_assert_int_eq(kraken_schema_field(s, 5, &d), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_schema_field(NULL, 0, &d), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_schema_field(s, 0, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(kraken_schema_name(NULL));
    ck_assert_uint_eq(kraken_schema_field_count(NULL), 0);

    ck_assert_ptr_null(kraken_schema_find("IPv4.Nope"));
    ck_assert_ptr_null(kraken_schema_find("type.googleapis.com/"));
    ck_assert_ptr_null(kraken_schema_find(NULL));
    ck_assert_ptr_eq(kraken_schema_find("example.org/types/PXE.Client"),
                     kraken_schema_find("PXE.Client"));
    ck_assert_uint_ge(kraken_schema_count(), 10);
    ck_assert_ptr_eq(kraken_schema_at(0), kraken_schema_find("kraken.ServiceInstance"));
    ck_assert_ptr_null(kraken_schema_at(kraken_schema_count()));
}
END_TEST

START_TEST(field_lookup_forms)
{
    const kraken_schema *s = kraken_schema_find("IPv4.IPv4OverEthernet");
    const kraken_field *f = kraken__schema_field(s, "dns_nameservers", 15);
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(f->json_name, "dnsNameservers");
    ck_assert_str_eq(f->url_name, "DnsNameservers");
    const char *forms[] = {"DnsNameservers", "dnsNameservers", "dns_nameservers",
                           "DNSNAMESERVERS", "dnsnameservers", "DNS_NAMESERVERS"};
    for (size_t i = 0; i < N(forms); i++)
        ck_assert_ptr_eq(kraken__schema_field(s, forms[i], strlen(forms[i])), f);
    /* Length-delimited: only the first len bytes count. */
    ck_assert_ptr_eq(kraken__schema_field(s, "DnsNameservers/0/Ip", 14), f);
    ck_assert_ptr_null(kraken__schema_field(s, "DnsNameservers", 13));
    ck_assert_ptr_null(kraken__schema_field(s, "dns_name_servers", 16));
    ck_assert_ptr_null(kraken__schema_field(s, "", 0));
    ck_assert_ptr_null(kraken__schema_field(NULL, "x", 1));

    const kraken_field *ps = kraken__schema_field(kraken__node_schema(), "PhysState", 9);
    ck_assert_ptr_eq(ps, &kraken__node_schema()->fields[KRAKEN_NODE_F_PHYS_STATE]);
    ck_assert_ptr_eq(kraken__schema_field_by_number(kraken__node_schema(), 4), ps);
    ck_assert_ptr_null(kraken__schema_field_by_number(kraken__node_schema(), 9)); /* reserved */
    ck_assert_ptr_null(kraken__schema_field_by_number(NULL, 1));

    const kraken_enum_type *e = kraken_enum_find("PXE.Method");
    const kraken_enum_member *m = kraken__enum_by_name(e, "iPXE", 4);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->number, 1);
    ck_assert_ptr_null(kraken__enum_by_name(e, "IPXE", 4)); /* case-sensitive */
    ck_assert_ptr_eq(kraken__enum_by_name(e, "PXEx", 3), kraken__enum_by_name(e, "PXE", 3));
    ck_assert_ptr_null(kraken__enum_by_name(e, "PX", 2));
}
END_TEST

/* ---- registration --------------------------------------------------------------- */

START_TEST(register_valid_and_identical)
{
    static const kraken_enum_member mode[] = {{"MODE_UNKNOWN", 0}, {"FAST", 1}, {"SLOW", -2}};
    const kraken_enum_type *e = NULL, *e2 = NULL;
    ck_assert_int_eq(kraken_enum_register("TestReg.Mode", mode, N(mode), &e), 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_eq(kraken_enum_find("TestReg.Mode"), e);
    size_t ne = kraken_enum_count();
    ck_assert_int_eq(kraken_enum_register("TestReg.Mode", mode, N(mode), &e2), 0);
    ck_assert_ptr_eq(e2, e);
    ck_assert_uint_eq(kraken_enum_count(), ne);

    const kraken_field_def fields[] = {
        KRAKEN_FIELD("mode", 1, KRAKEN_T_ENUM, .type_name = "TestReg.Mode"),
        KRAKEN_FIELD("tags", 2, KRAKEN_T_MAP, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("addrs", 3, KRAKEN_T_LIST, .elem_type = KRAKEN_T_IPV4),
        KRAKEN_FIELD("eth", 4, KRAKEN_T_RECORD, .type_name = "IPv4.Ethernet"),
        KRAKEN_FIELD("modes", 5, KRAKEN_T_LIST, .elem_type = KRAKEN_T_ENUM,
                     .type_name = "TestReg.Mode"),
        KRAKEN_FIELD("big_number_of_things", 100, KRAKEN_T_UINT64),
    };
    const kraken_schema *s = NULL, *s2 = NULL;
    size_t ns = kraken_schema_count();
    ck_assert_int_eq(kraken_schema_register("TestReg.Cfg", fields, N(fields), &s), 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(kraken_schema_count(), ns + 1);
    ck_assert_ptr_eq(kraken_schema_at(ns), s);
    ck_assert_ptr_eq(kraken_schema_find("type.googleapis.com/TestReg.Cfg"), s);
    ck_assert_str_eq(s->fields[5].url_name, "BigNumberOfThings");
    ck_assert_str_eq(s->fields[5].json_name, "bigNumberOfThings");
    ck_assert_ptr_eq(s->fields[0].enm, e);
    ck_assert_ptr_eq(s->fields[4].enm, e);
    ck_assert_ptr_eq(s->fields[3].record, kraken_schema_find("IPv4.Ethernet"));
    ck_assert_int_eq(s->fields[2].list_key, KRAKEN_KEY_INDEX);

    ck_assert_int_eq(kraken_schema_register("TestReg.Cfg", fields, N(fields), &s2), 0);
    ck_assert_ptr_eq(s2, s);
    ck_assert_uint_eq(kraken_schema_count(), ns + 1);
    ck_assert_int_eq(kraken_schema_register("TestReg.Cfg", fields, N(fields), NULL), 0);

    /* A schema with no fields is legal (like an empty protobuf message). */
    ck_assert_int_eq(kraken_schema_register("TestReg.Empty", NULL, 0, &s), 0);
    ck_assert_uint_eq(kraken_schema_field_count(s), 0);
}
END_TEST

START_TEST(register_conflicting)
{
    static const kraken_enum_member m1[] = {{"Z", 0}, {"A", 1}};
    static const kraken_enum_member m2[] = {{"Z", 0}, {"B", 1}};
    ck_assert_int_eq(kraken_enum_register("TestConf.E", m1, N(m1), NULL), 0);
    size_t ne = kraken_enum_count();
    ck_assert_int_eq(kraken_enum_register("TestConf.E", m2, N(m2), NULL), KRAKEN_EEXISTS);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "TestConf.E"));
    ck_assert_uint_eq(kraken_enum_count(), ne);
    ck_assert_str_eq(kraken_enum_type_lookup(kraken_enum_find("TestConf.E"), 1), "A");

    const kraken_field_def f1[] = {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING)};
    const kraken_field_def f2[] = {KRAKEN_FIELD("a", 1, KRAKEN_T_INT32)};
    const kraken_field_def f3[] = {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING),
                                   KRAKEN_FIELD("b", 2, KRAKEN_T_STRING)};
    const kraken_schema *s;
    ck_assert_int_eq(kraken_schema_register("TestConf.S", f1, 1, &s), 0);
    size_t ns = kraken_schema_count();
    ck_assert_int_eq(kraken_schema_register("TestConf.S", f2, 1, NULL), KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_schema_register("TestConf.S", f3, 2, NULL), KRAKEN_EEXISTS);
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_ptr_eq(kraken_schema_find("TestConf.S"), s);
    ck_assert_int_eq(s->fields[0].type, KRAKEN_T_STRING);
    /* Enum and schema names share one namespace; built-ins cannot be redefined. */
    ck_assert_int_eq(kraken_schema_register("TestConf.E", f1, 1, NULL), KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_enum_register("TestConf.S", m1, N(m1), NULL), KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_schema_register("PXE.Client", f1, 1, NULL), KRAKEN_EEXISTS);
    ck_assert_int_eq(kraken_enum_register("RunState", m1, N(m1), NULL), KRAKEN_EEXISTS);
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_uint_eq(kraken_enum_count(), ne);
}
END_TEST

typedef struct bad_schema {
    const char *why;
    const char *name;
    kraken_field_def fields[3];
    size_t n;
    int code;
    const char *in_message;
} bad_schema;

START_TEST(register_invalid_schemas)
{
    static const bad_schema bad[] = {
        {"duplicate number", "TestBad.A",
         {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING), KRAKEN_FIELD("b", 1, KRAKEN_T_STRING)}, 2,
         KRAKEN_EINVAL, "'b'"},
        {"duplicate name", "TestBad.B",
         {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING), KRAKEN_FIELD("a", 2, KRAKEN_T_STRING)}, 2,
         KRAKEN_EINVAL, "'a'"},
        {"names clash in camel case", "TestBad.C",
         {KRAKEN_FIELD("ab_c", 1, KRAKEN_T_STRING), KRAKEN_FIELD("abC", 2, KRAKEN_T_STRING)}, 2,
         KRAKEN_EINVAL, "clashes"},
        {"number zero", "TestBad.D", {KRAKEN_FIELD("a", 0, KRAKEN_T_STRING)}, 1, KRAKEN_EINVAL,
         "number"},
        {"number too big", "TestBad.E", {KRAKEN_FIELD("a", 536870912, KRAKEN_T_STRING)}, 1,
         KRAKEN_EINVAL, "number"},
        {"reserved number", "TestBad.F", {KRAKEN_FIELD("a", 19500, KRAKEN_T_STRING)}, 1,
         KRAKEN_EINVAL, "number"},
        {"unknown record", "TestBad.G",
         {KRAKEN_FIELD("r", 1, KRAKEN_T_RECORD, .type_name = "TestBad.Nope")}, 1,
         KRAKEN_ENOTFOUND, "TestBad.Nope"},
        {"unknown enum", "TestBad.H",
         {KRAKEN_FIELD("e", 1, KRAKEN_T_ENUM, .type_name = "NopeEnum")}, 1,
         KRAKEN_ENOTFOUND, "NopeEnum"},
        {"record without type", "TestBad.I", {KRAKEN_FIELD("r", 1, KRAKEN_T_RECORD)}, 1,
         KRAKEN_EINVAL, "'r'"},
        {"list of any record", "TestBad.J",
         {KRAKEN_FIELD("r", 1, KRAKEN_T_LIST, .elem_type = KRAKEN_T_RECORD)}, 1,
         KRAKEN_EINVAL, "'r'"},
        {"type_name on scalar", "TestBad.K",
         {KRAKEN_FIELD("s", 1, KRAKEN_T_STRING, .type_name = "IPv4.IPv4")}, 1,
         KRAKEN_EINVAL, "'s'"},
        {"list of lists", "TestBad.L",
         {KRAKEN_FIELD("l", 1, KRAKEN_T_LIST, .elem_type = KRAKEN_T_LIST)}, 1,
         KRAKEN_EINVAL, "'l'"},
        {"map without elem", "TestBad.M", {KRAKEN_FIELD("m", 1, KRAKEN_T_MAP)}, 1,
         KRAKEN_EINVAL, "'m'"},
        {"elem on scalar", "TestBad.N",
         {KRAKEN_FIELD("s", 1, KRAKEN_T_STRING, .elem_type = KRAKEN_T_INT32)}, 1,
         KRAKEN_EINVAL, "'s'"},
        {"type NONE", "TestBad.O", {KRAKEN_FIELD("s", 1, KRAKEN_T_NONE)}, 1, KRAKEN_EINVAL, "'s'"},
        {"type out of range", "TestBad.P", {KRAKEN_FIELD("s", 1, (kraken_type)99)}, 1,
         KRAKEN_EINVAL, "'s'"},
        {"bad field name", "TestBad.Q", {KRAKEN_FIELD("a-b", 1, KRAKEN_T_STRING)}, 1,
         KRAKEN_EINVAL, "a-b"},
        {"null field name", "TestBad.R", {KRAKEN_FIELD(NULL, 1, KRAKEN_T_STRING)}, 1, KRAKEN_EINVAL,
         "TestBad.R"},
        {"bad schema name", "Test..Bad", {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING)}, 1, KRAKEN_EINVAL,
         "Test..Bad"},
        {"schema name trailing dot", "TestBad.", {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING)}, 1,
         KRAKEN_EINVAL, "TestBad."},
        {"empty schema name", "", {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING)}, 1, KRAKEN_EINVAL,
         "invalid"},
    };
    size_t ns = kraken_schema_count();
    for (size_t i = 0; i < N(bad); i++) {
        const kraken_schema *out = (const kraken_schema *)&bad[i]; /* must stay untouched */
        int rc = kraken_schema_register(bad[i].name, bad[i].fields, bad[i].n, &out);
        ck_assert_msg(rc == bad[i].code, "%s: rc %d", bad[i].why, rc);
        ck_assert_msg(strstr(kraken_error_last(), bad[i].in_message) != NULL, "%s: message '%s'",
                      bad[i].why, kraken_error_last());
        ck_assert_ptr_eq(out, &bad[i]);
        ck_assert_ptr_null(kraken_schema_find(bad[i].name));
        ck_assert_uint_eq(kraken_schema_count(), ns);
    }
    ck_assert_int_eq(kraken_schema_register(NULL, NULL, 0, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_schema_register("TestBad.Z", NULL, 2, NULL), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_schema_count(), ns);
}
END_TEST

START_TEST(register_invalid_enums)
{
    static const kraken_enum_member no_zero[] = {{"A", 1}, {"B", 2}};
    static const kraken_enum_member dup_name[] = {{"A", 0}, {"A", 1}};
    static const kraken_enum_member dup_num[] = {{"A", 0}, {"B", 0}};
    static const kraken_enum_member bad_name[] = {{"A", 0}, {"B C", 1}};
    static const kraken_enum_member null_name[] = {{"A", 0}, {NULL, 1}};
    size_t ne = kraken_enum_count();
    ck_assert_int_eq(kraken_enum_register("TestBadE.A", no_zero, 2, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "number 0"));
    ck_assert_int_eq(kraken_enum_register("TestBadE.B", dup_name, 2, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_enum_register("TestBadE.C", dup_num, 2, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'B'"));
    ck_assert_int_eq(kraken_enum_register("TestBadE.D", bad_name, 2, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_enum_register("TestBadE.E", null_name, 2, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_enum_register("TestBadE.F", NULL, 0, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_enum_register("1Bad", dup_num, 1, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_enum_register(NULL, dup_num, 1, NULL), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_enum_count(), ne);
    ck_assert_ptr_null(kraken_enum_find("TestBadE.A"));
}
END_TEST

/* Many threads registering the same definitions: all succeed, one copy is kept. */
static void *register_same(void *arg)
{
    (void)arg;
    static const kraken_enum_member m[] = {{"U", 0}, {"V", 1}};
    const kraken_field_def f[] = {KRAKEN_FIELD("v", 1, KRAKEN_T_ENUM, .type_name = "TestThr.E")};
    const kraken_schema *s = NULL;
    for (int i = 0; i < 50; i++) {
        if (kraken_enum_register("TestThr.E", m, 2, NULL) != 0 ||
            kraken_schema_register("TestThr.S", f, 1, &s) != 0)
            return NULL;
    }
    return (void *)s;
}

START_TEST(register_concurrently)
{
    pthread_t t[4];
    void *res[4];
    size_t ns = kraken_schema_count();
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, register_same, NULL), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_join(t[i], &res[i]), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_eq(res[i], kraken_schema_find("TestThr.S"));
    ck_assert_ptr_nonnull(res[0]);
    ck_assert_uint_eq(kraken_schema_count(), ns + 1);
}
END_TEST

/* ---- struct versions of kraken_field_def -------------------------------------------- */

#define FIELD_VERSION_HINT "(set .version = KRAKEN_FIELD_DEF_VERSION; this libkraken knows 1..1)"

/* Version 0, an unknown version, or elements of different versions: refused, nothing registered. */
START_TEST(register_field_versions_refused)
{
    size_t ns = kraken_schema_count();
    kraken_field_def f[] = {KRAKEN_FIELD("a", 1, KRAKEN_T_STRING),
                            KRAKEN_FIELD("b", 2, KRAKEN_T_INT32)};
    const kraken_schema *out = (const kraken_schema *)f; /* must stay untouched */
    f[0].version = 0;
    ck_assert_int_eq(kraken_schema_register("TestVer.A", f, 2, &out), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "kraken_schema_register: schema 'TestVer.A': field 0 "
                                          "'a': kraken_field_def version 0 " FIELD_VERSION_HINT);
    f[0].version = f[1].version = KRAKEN_FIELD_DEF_VERSION + 1;
    ck_assert_int_eq(kraken_schema_register("TestVer.A", f, 2, &out), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "kraken_schema_register: schema 'TestVer.A': field 0 "
                                          "'a': kraken_field_def version 2 " FIELD_VERSION_HINT);
    /* element 0 says version 1: element 1 must too */
    f[0].version = KRAKEN_FIELD_DEF_VERSION;
    ck_assert_int_eq(kraken_schema_register("TestVer.A", f, 2, &out), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "kraken_schema_register: schema 'TestVer.A': field 1 'b': kraken_field_def "
                     "version 2, but element 0 has version 1 (every element of an array carries "
                     "the same version)");
    f[1].version = 0;
    ck_assert_int_eq(kraken_schema_register("TestVer.A", f, 2, &out), KRAKEN_EINVAL);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "field 1 'b': kraken_field_def version 0, "
                                                      "but element 0 has version 1"));
    ck_assert_ptr_eq(out, (const kraken_schema *)f);
    ck_assert_ptr_null(kraken_schema_find("TestVer.A"));
    ck_assert_uint_eq(kraken_schema_count(), ns);
}
END_TEST

/* A v1 caller: an array at the v1 stride, in a heap block of exactly that size; and
 * kraken_schema_field() into a v1 struct writes the v1 members only. */
START_TEST(field_versions_v1_caller)
{
    static const kraken_field_def f[] = {
        KRAKEN_FIELD("mode", 1, KRAKEN_T_ENUM, .type_name = "PhysState"),
        KRAKEN_FIELD("tags", 2, KRAKEN_T_MAP, .elem_type = KRAKEN_T_STRING)};
    size_t v1 = KRAKEN__VERSION_SIZE(kraken_field_def, type_name);
    char *block = malloc(2 * v1);
    ck_assert_ptr_nonnull(block);
    memcpy(block, &f[0], v1);
    memcpy(block + v1, &f[1], v1);
    const kraken_schema *s = NULL;
    ck_assert_int_eq(kraken_schema_register("TestVer.V1", (const kraken_field_def *)(void *)block,
                                            2, &s),
                     0);
    free(block); /* copied at the call */
    ck_assert_uint_eq(kraken_schema_field_count(s), 2);

    kraken_field_def *d = malloc(v1);
    ck_assert_ptr_nonnull(d);
    d->version = 1;
    ck_assert_int_eq(kraken_schema_field(s, 1, d), 0);
    ck_assert_uint_eq(d->version, 1);
    ck_assert_str_eq(d->name, "tags");
    ck_assert_int_eq(d->type, KRAKEN_T_MAP);
    ck_assert_int_eq(d->elem_type, KRAKEN_T_STRING);
    ck_assert_ptr_null(d->type_name);
    ck_assert_int_eq(kraken_schema_field(s, 0, d), 0);
    ck_assert_str_eq(d->type_name, "PhysState");
    /* out->version 0: refused, the struct untouched */
    d->version = 0;
    ck_assert_int_eq(kraken_schema_field(s, 1, d), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "kraken_schema_field: schema 'TestVer.V1': out: "
                                          "kraken_field_def version 0 " FIELD_VERSION_HINT);
    ck_assert_str_eq(d->name, "mode");
    free(d);
}
END_TEST

/*
 * What a future library does with today's callers: a v2 struct appends a member, the size
 * table gets a second entry, and a v1 caller's array (v1 stride) is read into v2 structs whose
 * new member is zero. A v2 caller's array is read at the v2 stride.
 */
typedef struct field_def_v2 {
    kraken_field_def v1; /* a later version only appends */
    uint64_t added;
} field_def_v2;

START_TEST(future_version_reads_v1_callers)
{
    static const size_t sizes[] = {KRAKEN__VERSION_SIZE(kraken_field_def, type_name),
                                   KRAKEN__VERSION_SIZE(field_def_v2, added)};
    static const kraken__struct_abi v2_library = {"kraken_field_def", "KRAKEN_FIELD_DEF_VERSION",
                                                  sizes, 2};
    ck_assert_uint_lt(sizes[0], sizes[1]);
    size_t v1 = sizes[0];
    char *old = malloc(3 * v1); /* exactly a v1 caller's array of three */
    ck_assert_ptr_nonnull(old);
    for (unsigned i = 0; i < 3; i++) {
        kraken_field_def f = KRAKEN_FIELD("x", i + 1, KRAKEN_T_UINT32);
        memcpy(old + i * v1, &f, v1);
    }
    size_t stride = 0, bad = 99;
    ck_assert_int_eq(kraken__struct_array_check(&v2_library, old, 3, &stride, &bad), 0);
    ck_assert_uint_eq(stride, v1);
    for (unsigned i = 0; i < 3; i++) {
        field_def_v2 cur;
        memset(&cur, 0xff, sizeof cur);
        kraken__struct_array_get(&v2_library, old, stride, i, &cur);
        ck_assert_uint_eq(cur.v1.version, 1);
        ck_assert_uint_eq(cur.v1.number, i + 1);
        ck_assert_int_eq(cur.v1.type, KRAKEN_T_UINT32);
        ck_assert_uint_eq(cur.added, 0);
    }
    field_def_v2 one;
    ck_assert_int_eq(kraken__struct_read(&v2_library, old + v1, &one), 0);
    ck_assert_uint_eq(one.v1.number, 2);
    ck_assert_uint_eq(one.added, 0);
    free(old);

    field_def_v2 newer[2] = {{KRAKEN_FIELD("a", 1, KRAKEN_T_BOOL), 7},
                             {KRAKEN_FIELD("b", 2, KRAKEN_T_BOOL), 8}};
    newer[0].v1.version = newer[1].v1.version = 2;
    ck_assert_int_eq(kraken__struct_array_check(&v2_library, newer, 2, &stride, &bad), 0);
    ck_assert_uint_eq(stride, sizeof(field_def_v2));
    field_def_v2 cur;
    kraken__struct_array_get(&v2_library, newer, stride, 1, &cur);
    ck_assert_str_eq(cur.v1.name, "b");
    ck_assert_uint_eq(cur.added, 8);
    newer[1].v1.version = 1;
    ck_assert_int_eq(kraken__struct_array_check(&v2_library, newer, 2, &stride, &bad),
                     KRAKEN_EINVAL);
    ck_assert_uint_eq(bad, 1);
    newer[0].v1.version = 3;
    ck_assert_int_eq(kraken__struct_array_check(&v2_library, newer, 2, &stride, &bad),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "kraken_field_def version 3 (set .version = "
                                          "KRAKEN_FIELD_DEF_VERSION; this libkraken knows 1..2)");
}
END_TEST

/* ---- description files -------------------------------------------------------------- */

static const char good_file[] =
    "{\"schemas\": [\n"
    "  {\"name\": \"TestFile.Cfg\", \"fields\": [\n"
    "    {\"name\": \"mode\", \"number\": 1, \"type\": \"enum\", \"type_name\": \"TestFile.Mode\"},\n"
    "    {\"name\": \"tags\", \"number\": 2, \"type\": \"map\", \"elem_type\": \"string\"},\n"
    "    {\"name\": \"inner\", \"number\": 3, \"type\": \"record\", \"type_name\": \"TestFile.Inner\"},\n"
    "    {\"name\": \"inners\", \"number\": 4, \"type\": \"list\", \"elem_type\": \"record\",\n"
    "     \"type_name\": \"TestFile.Inner\"},\n"
    "    {\"name\": \"addr\", \"number\": 5, \"type\": \"ipv4\"}]},\n"
    "  {\"name\": \"TestFile.Inner\", \"fields\": [\n"
    "    {\"name\": \"mac\", \"number\": 1, \"type\": \"mac\"},\n"
    "    {\"name\": \"eth\", \"number\": 2, \"type\": \"record\", \"type_name\": \"IPv4.Ethernet\"}]}],\n"
    " \"enums\": [{\"name\": \"TestFile.Mode\", \"members\": {\"UNKNOWN\": 0, \"FAST\": 1}}]}\n";

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/kraken-schema-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(load_file_good)
{
    char *path = write_temp(good_file);
    size_t ns = kraken_schema_count(), ne = kraken_enum_count();
    ck_assert_int_eq(kraken_schema_load_file(path), 0);
    ck_assert_uint_eq(kraken_schema_count(), ns + 2);
    ck_assert_uint_eq(kraken_enum_count(), ne + 1);
    const kraken_schema *cfg = kraken_schema_find("TestFile.Cfg");
    const kraken_schema *inner = kraken_schema_find("TestFile.Inner");
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_nonnull(inner);
    ck_assert_ptr_eq(cfg->fields[0].enm, kraken_enum_find("TestFile.Mode"));
    ck_assert_int_eq(cfg->fields[1].type, KRAKEN_T_MAP);
    ck_assert_int_eq(cfg->fields[1].elem_type, KRAKEN_T_STRING);
    ck_assert_ptr_eq(cfg->fields[2].record, inner);
    ck_assert_ptr_eq(cfg->fields[3].record, inner);
    ck_assert_int_eq(cfg->fields[4].type, KRAKEN_T_IPV4);
    ck_assert_ptr_eq(inner->fields[1].record, kraken_schema_find("IPv4.Ethernet"));

    /* Loading the same file again is a no-op. */
    ck_assert_int_eq(kraken_schema_load_file(path), 0);
    ck_assert_uint_eq(kraken_schema_count(), ns + 2);
    ck_assert_ptr_eq(kraken_schema_find("TestFile.Cfg"), cfg);
    unlink(path);
    free(path);

    ck_assert_int_eq(kraken_schema_load_file("/nonexistent/schemas.json"), KRAKEN_EIO);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/nonexistent/schemas.json"));
    ck_assert_int_eq(kraken_schema_load_file(NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_schema_load_json(NULL, 0, "x"), KRAKEN_EINVAL);
    /* Buffers need not be NUL-terminated: only len bytes count. */
    ck_assert_int_eq(kraken_schema_load_json("{}garbage", 2, "buf"), 0);
    ck_assert_int_eq(kraken_schema_load_json("{} x", 4, "buf"), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "buf"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "byte 3"));
}
END_TEST

/* What a process registered beyond the built-ins is described in the loader's own format
 * (the daemon's GET /schemas; krakenctl loads it: daemon/tests and tests/test_krakenctl.py). */
START_TEST(describe_round_trip)
{
    static const char desc[] =
        "{\"enums\":[{\"name\":\"Describe.Mode\",\"members\":{\"UNKNOWN\":0,\"FAST\":1}}],"
        "\"schemas\":[{\"name\":\"Describe.Inner\",\"fields\":["
        "{\"name\":\"mac\",\"number\":1,\"type\":\"mac\"},"
        "{\"name\":\"eth\",\"number\":2,\"type\":\"record\",\"type_name\":\"IPv4.Ethernet\"}]},"
        "{\"name\":\"Describe.Cfg\",\"fields\":["
        "{\"name\":\"mode\",\"number\":1,\"type\":\"enum\",\"type_name\":\"Describe.Mode\"},"
        "{\"name\":\"tags\",\"number\":2,\"type\":\"map\",\"elem_type\":\"string\"},"
        "{\"name\":\"inners\",\"number\":3,\"type\":\"list\",\"elem_type\":\"record\","
        "\"type_name\":\"Describe.Inner\"},"
        "{\"name\":\"addr\",\"number\":4,\"type\":\"ipv4\"}]}]}";
    char *before = NULL, *after = NULL;
    ck_assert_int_eq(kraken_schema_describe_json(&before), 0);
    ck_assert_ptr_null(strstr(before, "\"kraken.Node\"")); /* built-ins are not described */
    ck_assert_int_eq(kraken_schema_load_json(desc, strlen(desc), "desc"), 0);
    ck_assert_int_eq(kraken_schema_describe_json(&after), 0);
    /* the new types come last, exactly as they were loaded */
    ck_assert_ptr_nonnull(strstr(after, "{\"name\":\"Describe.Mode\",\"members\":{\"UNKNOWN\":0,"
                                        "\"FAST\":1}}]"));
    const char *schemas = strstr(desc, "{\"name\":\"Describe.Inner\"");
    size_t n = strlen(schemas), m = strlen(after);
    ck_assert_uint_ge(m, n);
    ck_assert_str_eq(after + m - n, schemas);
    /* loading a description of what is registered is the harmless identical re-registration */
    size_t ns = kraken_schema_count(), ne = kraken_enum_count();
    ck_assert_int_eq(kraken_schema_load_json(after, strlen(after), "described"), 0);
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_uint_eq(kraken_enum_count(), ne);
    free(before);
    free(after);
    ck_assert_int_eq(kraken_schema_describe_json(NULL), KRAKEN_EINVAL);
}
END_TEST

typedef struct bad_file {
    const char *why;
    const char *json;
    int code;
    const char *in_message[3];
} bad_file;

START_TEST(load_file_bad)
{
    static const bad_file bad[] = {
        {"unknown type name",
         "{\"schemas\": [{\"name\": \"TestBF.A\", \"fields\": [{\"name\": \"x\", \"number\": 1,"
         " \"type\": \"strin\"}]}]}",
         KRAKEN_EPARSE, {"TestBF.A", "'x'", "strin"}},
        {"duplicate number",
         "{\"schemas\": [{\"name\": \"TestBF.B\", \"fields\": [{\"name\": \"x\", \"number\": 1,"
         " \"type\": \"string\"}, {\"name\": \"y\", \"number\": 1, \"type\": \"bool\"}]}]}",
         KRAKEN_EINVAL, {"TestBF.B", "'y'", "number 1"}},
        {"missing member 0",
         "{\"enums\": [{\"name\": \"TestBF.E\", \"members\": {\"A\": 1}}]}", KRAKEN_EINVAL,
         {"TestBF.E", "number 0", NULL}},
        {"malformed JSON", "{\"schemas\": [{\"name\": \"TestBF.C\",", KRAKEN_EPARSE,
         {"malformed JSON", NULL, NULL}},
        {"unknown key",
         "{\"schemas\": [{\"name\": \"TestBF.D\", \"fields\": [{\"name\": \"x\", \"number\": 1,"
         " \"type\": \"record\", \"typename\": \"IPv4.IPv4\"}]}]}",
         KRAKEN_EPARSE, {"TestBF.D", "'x'", "typename"}},
        {"unknown referenced type",
         "{\"schemas\": [{\"name\": \"TestBF.F\", \"fields\": [{\"name\": \"x\", \"number\": 1,"
         " \"type\": \"record\", \"type_name\": \"TestBF.Missing\"}]}]}",
         KRAKEN_ENOTFOUND, {"TestBF.F", "'x'", "TestBF.Missing"}},
        {"cycle",
         "{\"schemas\": [{\"name\": \"TestBF.G\", \"fields\": [{\"name\": \"h\", \"number\": 1,"
         " \"type\": \"record\", \"type_name\": \"TestBF.H\"}]}, {\"name\": \"TestBF.H\","
         " \"fields\": [{\"name\": \"g\", \"number\": 1, \"type\": \"record\","
         " \"type_name\": \"TestBF.G\"}]}]}",
         KRAKEN_EINVAL, {"TestBF.G", "cycle", NULL}},
        {"number not an integer",
         "{\"schemas\": [{\"name\": \"TestBF.I\", \"fields\": [{\"name\": \"x\", \"number\": 1.5,"
         " \"type\": \"string\"}]}]}",
         KRAKEN_EPARSE, {"TestBF.I", "'x'", "number"}},
        {"missing type",
         "{\"schemas\": [{\"name\": \"TestBF.J\", \"fields\": [{\"name\": \"x\", \"number\": 1}]}]}",
         KRAKEN_EPARSE, {"TestBF.J", "'x'", "type"}},
        {"defined twice",
         "{\"schemas\": [{\"name\": \"TestBF.K\"}, {\"name\": \"TestBF.K\"}]}", KRAKEN_EEXISTS,
         {"TestBF.K", "twice", NULL}},
        {"conflicts with built-in",
         "{\"schemas\": [{\"name\": \"PXE.Client\", \"fields\": []}]}", KRAKEN_EEXISTS,
         {"PXE.Client", NULL, NULL}},
        {"not an object", "[1, 2]", KRAKEN_EPARSE, {"top level", NULL, NULL}},
        {"members not an object",
         "{\"enums\": [{\"name\": \"TestBF.E2\", \"members\": [\"A\"]}]}", KRAKEN_EPARSE,
         {"TestBF.E2", "members", NULL}},
    };
    size_t ns = kraken_schema_count(), ne = kraken_enum_count();
    for (size_t i = 0; i < N(bad); i++) {
        char *path = write_temp(bad[i].json);
        int rc = kraken_schema_load_file(path);
        ck_assert_msg(rc == bad[i].code, "%s: rc %d (%s)", bad[i].why, rc, kraken_error_last());
        ck_assert_msg(strstr(kraken_error_last(), path) != NULL, "%s: no file name in '%s'",
                      bad[i].why, kraken_error_last());
        for (int k = 0; k < 3 && bad[i].in_message[k]; k++)
            ck_assert_msg(strstr(kraken_error_last(), bad[i].in_message[k]) != NULL,
                          "%s: '%s' not in '%s'", bad[i].why, bad[i].in_message[k],
                          kraken_error_last());
        ck_assert_uint_eq(kraken_schema_count(), ns);
        ck_assert_uint_eq(kraken_enum_count(), ne);
        unlink(path);
        free(path);
    }
}
END_TEST

/* Schema files are site input like state files: the same strict JSON, and exact one-line
 * messages that quote what the file said. */
static void assert_load_msg(const char *json, int code, const char *want)
{
    size_t ns = kraken_schema_count(), ne = kraken_enum_count();
    ck_assert_int_eq(kraken_schema_load_json(json, strlen(json), "site.json"), code);
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_uint_eq(kraken_enum_count(), ne);
}

START_TEST(load_messages_exact)
{
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.A\",\n  \"fields\": [}]}", KRAKEN_EPARSE,
                    "site.json: member 'schemas[0].fields[0]': malformed JSON at byte 43 (line 2, "
                    "column 14): expected a value, found '}'");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.\\u0000B\"}]}", KRAKEN_EPARSE,
                    "site.json: member 'schemas[0].name': malformed JSON at byte 26 (line 1, "
                    "column 27): \\u0000 (NUL) is not allowed in a string");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.C\", \"name\": \"T8.D\"}]}", KRAKEN_EPARSE,
                    "site.json: schema 'T8.C': key 'name' given twice");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.E\\n\\u001b[2J\"}]}", KRAKEN_EINVAL,
                    "site.json: schema 'T8.E\\n\\x1b[2J': invalid type name");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.F\", \"fields\": [{\"name\": \"x\\ty\", "
                    "\"number\": 1, \"type\": \"string\"}]}]}",
                    KRAKEN_EINVAL, "site.json: schema 'T8.F': field 0: invalid name 'x\\ty'");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.G\", \"fields\": [{\"name\": \"x\", "
                    "\"number\": 1e300, \"type\": \"string\"}]}]}",
                    KRAKEN_EPARSE,
                    "site.json: schema 'T8.G': field 'x': 'number' must be an integer in [1, "
                    "536870911]");
    assert_load_msg("{\"schemas\": [{\"name\": \"T8.H\", \"fields\": [{\"name\": \"x\", "
                    "\"number\": 1, \"type\": \"record\", \"type_name\": \"No\\rSuch\"}]}]}",
                    KRAKEN_ENOTFOUND,
                    "site.json: schema 'T8.H': field 'x': unknown record type 'No\\rSuch'");
}
END_TEST

/* Good enum and schema before a bad one in the same file: nothing is registered. */
START_TEST(load_is_all_or_nothing)
{
    static const char text[] =
        "{\"enums\": [{\"name\": \"TestAll.E\", \"members\": {\"Z\": 0}}],"
        " \"schemas\": [{\"name\": \"TestAll.Good\", \"fields\": [{\"name\": \"e\", \"number\": 1,"
        " \"type\": \"enum\", \"type_name\": \"TestAll.E\"}]},"
        " {\"name\": \"TestAll.Bad\", \"fields\": [{\"name\": \"x\", \"number\": 0,"
        " \"type\": \"string\"}]}]}";
    size_t ns = kraken_schema_count(), ne = kraken_enum_count();
    ck_assert_int_eq(kraken_schema_load_json(text, strlen(text), "inline"), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "inline"));
    ck_assert_ptr_null(kraken_schema_find("TestAll.Good"));
    ck_assert_ptr_null(kraken_enum_find("TestAll.E"));
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_uint_eq(kraken_enum_count(), ne);

    /* A conflict discovered after other types were built also registers nothing. */
    static const char text2[] =
        "{\"enums\": [{\"name\": \"TestAll.E2\", \"members\": {\"Z\": 0}}],"
        " \"schemas\": [{\"name\": \"TestAll.Good2\"}, {\"name\": \"IPv4.IPv4\"}]}";
    ck_assert_int_eq(kraken_schema_load_json(text2, strlen(text2), "inline2"), KRAKEN_EEXISTS);
    ck_assert_ptr_null(kraken_schema_find("TestAll.Good2"));
    ck_assert_ptr_null(kraken_enum_find("TestAll.E2"));
    ck_assert_uint_eq(kraken_schema_count(), ns);
    ck_assert_uint_eq(kraken_enum_count(), ne);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("builtin");
    tcase_add_test(tc, builtin_enums);
    tcase_add_test(tc, builtin_node_and_service);
    tcase_add_test(tc, builtin_extensions);
    tcase_add_test(tc, field_lookup_forms);
    suite_add_tcase(s, tc);
    tc = tcase_create("register");
    tcase_add_test(tc, register_valid_and_identical);
    tcase_add_test(tc, register_conflicting);
    tcase_add_test(tc, register_invalid_schemas);
    tcase_add_test(tc, register_invalid_enums);
    tcase_add_test(tc, register_concurrently);
    tcase_add_test(tc, register_field_versions_refused);
    tcase_add_test(tc, field_versions_v1_caller);
    tcase_add_test(tc, future_version_reads_v1_callers);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, load_file_good);
    tcase_add_test(tc, describe_round_trip);
    tcase_add_test(tc, load_file_bad);
    tcase_add_test(tc, load_messages_exact);
    tcase_add_test(tc, load_is_all_or_nothing);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
