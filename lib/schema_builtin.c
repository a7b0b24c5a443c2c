/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Built-in enums and schemas (SPEC 1.1, 1.2, Appendix A), registered once by
 * kraken__schemas_init(). Names and field numbers follow the original's .proto files so state
 * files and wire messages stay compatible. Only the node, the service instance and the
 * extensions of Appendix A are built in: a module's config type (restapi.Config,
 * PXEModule.Config, ...) is registered by that module or loaded from a schema file. Field order of kraken.Node and kraken.ServiceInstance must match
 * the KRAKEN_NODE_F_* and KRAKEN_SVC_F_* indexes in internal.h.
 */
#include "core_private.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const kraken_enum_member run_state[] = {
    {"UNKNOWN", 0}, {"INIT", 1}, {"SYNC", 2}, {"ERROR", 3}};
static const kraken_enum_member phys_state[] = {
    {"PHYS_UNKNOWN", 0}, {"POWER_OFF", 1}, {"POWER_ON", 2},
    {"POWER_CYCLE", 3},  {"PHYS_HANG", 4}, {"PHYS_ERROR", 5}};
static const kraken_enum_member service_state[] = {
    {"UNKNOWN", 0}, {"INIT", 1}, {"STOP", 2}, {"RUN", 3}, {"ERROR", 4}};
static const kraken_enum_member free_busy[] = {{"FREE", 0}, {"BUSY", 1}};
static const kraken_enum_member pxe_method[] = {{"PXE", 0}, {"iPXE", 1}};
static const kraken_enum_member pxe_state[] = {{"NONE", 0}, {"WAIT", 1}, {"INIT", 2}};

#define F(name, num, type) KRAKEN_FIELD(name, num, KRAKEN_T_##type)
#define FT(name, num, type, tn) KRAKEN_FIELD(name, num, KRAKEN_T_##type, .type_name = tn)
#define FC(name, num, type, elem, tn)                                                            \
    KRAKEN_FIELD(name, num, KRAKEN_T_##type, .elem_type = KRAKEN_T_##elem, .type_name = tn)

static const kraken_field_def service_fields[] = {
    F("id", 1, STRING),
    F("module", 2, STRING),
    FT("state", 3, ENUM, "ServiceState"),
    FT("config", 4, RECORD, NULL), /* any registered schema */
    F("error_msg", 5, STRING),
};

static const kraken_field_def node_fields[] = {
    F("id", 1, UUID),
    F("nodename", 2, STRING),
    FT("run_state", 3, ENUM, "RunState"),
    FT("phys_state", 4, ENUM, "PhysState"),
    F("arch", 5, STRING),
    F("platform", 6, STRING),
    F("parent_id", 7, UUID),
    FT("busy", 8, ENUM, "FreeBusy"),
    FC("services", 14, LIST, RECORD, "kraken.ServiceInstance"),
    FC("extensions", 15, LIST, RECORD, NULL),
};

/* SPEC Appendix A: the original's extension types, field numbers as in its .proto files. */
static const kraken_field_def ethernet_fields[] = {
    F("iface", 1, STRING), F("mac", 2, MAC), F("mtu", 3, UINT32), F("control", 4, BOOL)};
/* Numbers 2 and 3, not 1 and 2: binary Any payloads must match the original's. */
static const kraken_field_def ipv4_fields[] = {F("ip", 2, IPV4), F("subnet", 3, IPV4)};
static const kraken_field_def configured_iface_fields[] = {
    FT("eth", 1, RECORD, "IPv4.Ethernet"), FT("ip", 2, RECORD, "IPv4.IPv4")};
/* An A record (with its PTR): the address is an IPv4.IPv4 record, {"ip": {"ip": "10.0.0.5"}}. */
static const kraken_field_def dnsa_fields[] = {
    F("hostname", 1, STRING), F("domainname", 2, STRING), FT("ip", 3, RECORD, "IPv4.IPv4")};
static const kraken_field_def dnscname_fields[] = {F("cname", 1, STRING), F("hostname", 2, STRING)};
static const kraken_field_def ipv4_over_eth_fields[] = {
    FC("ifaces", 1, MAP, RECORD, "IPv4.IPv4OverEthernet.ConfiguredInterface"),
    FC("routes", 2, LIST, RECORD, "IPv4.IPv4"),
    FC("dns_nameservers", 3, LIST, RECORD, "IPv4.IPv4"),
    FC("dns_domains", 4, LIST, RECORD, "IPv4.IPv4"),
    FT("hostname", 5, RECORD, "IPv4.DNSA"),
};
static const kraken_field_def pxe_client_fields[] = {
    FT("method", 1, ENUM, "PXE.Method"), FT("state", 2, ENUM, "PXE.State")};
static const kraken_field_def powerman_fields[] = {
    F("api_server", 1, STRING), F("node_name", 2, STRING)};
static const kraken_field_def powerapi_node_fields[] = {
    F("api_server", 1, STRING), F("node_name", 2, STRING), F("node_uri", 3, STRING)};
static const kraken_field_def vbox_vm_fields[] = {
    F("api_server", 1, STRING), F("vm_name", 2, STRING), F("uuid", 3, STRING)};

static const struct {
    const char *name;
    const kraken_enum_member *members;
    size_t n;
} builtin_enums[] = {
    {"RunState", run_state, N(run_state)},
    {"PhysState", phys_state, N(phys_state)},
    {"ServiceState", service_state, N(service_state)},
    {"FreeBusy", free_busy, N(free_busy)},
    {"PXE.Method", pxe_method, N(pxe_method)},
    {"PXE.State", pxe_state, N(pxe_state)},
};

/* In dependency order: a schema only names types registered before it. */
static const struct {
    const char *name;
    const kraken_field_def *fields;
    size_t n;
} builtin_schemas[] = {
    {"kraken.ServiceInstance", service_fields, N(service_fields)},
    {"kraken.Node", node_fields, N(node_fields)},
    {"IPv4.Ethernet", ethernet_fields, N(ethernet_fields)},
    {"IPv4.IPv4", ipv4_fields, N(ipv4_fields)},
    {"IPv4.IPv4OverEthernet.ConfiguredInterface", configured_iface_fields,
     N(configured_iface_fields)},
    {"IPv4.DNSA", dnsa_fields, N(dnsa_fields)},
    {"IPv4.DNSCNAME", dnscname_fields, N(dnscname_fields)},
    {"IPv4.IPv4OverEthernet", ipv4_over_eth_fields, N(ipv4_over_eth_fields)},
    {"PXE.Client", pxe_client_fields, N(pxe_client_fields)},
    {"Powerman.Control", powerman_fields, N(powerman_fields)},
    {"PowerAPI.Node", powerapi_node_fields, N(powerapi_node_fields)},
    {"VBox.VirtualMachine", vbox_vm_fields, N(vbox_vm_fields)},
};

/* How the two keyed lists of kraken.Node are addressed (not expressible in kraken_field_def). */
static void set_node_list_keys(struct kraken_schema *s)
{
    s->fields[KRAKEN_NODE_F_SERVICES].list_key = KRAKEN_KEY_FIELD;
    s->fields[KRAKEN_NODE_F_SERVICES].key_field = KRAKEN_SVC_F_ID;
    s->fields[KRAKEN_NODE_F_EXTENSIONS].list_key = KRAKEN_KEY_TYPE;
}

int kraken__builtins_register(void)
{
    for (size_t i = 0; i < N(builtin_enums); i++) {
        int rc = kraken__enum_build_publish(builtin_enums[i].name, builtin_enums[i].members,
                                            builtin_enums[i].n);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < N(builtin_schemas); i++) {
        struct kraken_schema *s;
        int rc = kraken__schema_build(builtin_schemas[i].name, builtin_schemas[i].fields,
                                      builtin_schemas[i].n, true, &s);
        if (rc < 0)
            return rc;
        if (builtin_schemas[i].fields == node_fields)
            set_node_list_keys(s);
        if ((rc = kraken__schema_publish(s)) < 0)
            return rc;
    }
    return 0;
}
