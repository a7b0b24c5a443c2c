/* SPDX-License-Identifier: BSD-3-Clause */
/* Cfg/Dsc store: CRUD, bulk forms, copies, change events, re-entrancy, save/load. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define IPV4 "type.googleapis.com/IPv4.IPv4OverEthernet"
#define KIP IPV4 "/Ifaces/kraken/Ip/Ip"
#define KMTU IPV4 "/Ifaces/kraken/Eth/Mtu"
#define PXECFG "type.googleapis.com/TestModule.Config"

/* ---- helpers -------------------------------------------------------------- */

static kraken_uuid id_n(unsigned n)
{
    kraken_uuid id;
    memset(&id, 0, sizeof id);
    id.bytes[0] = 0x4a;
    id.bytes[14] = (uint8_t)(n >> 8);
    id.bytes[15] = (uint8_t)n;
    return id;
}

static kraken_node *make_node(unsigned n)
{
    kraken_uuid id = id_n(n);
    kraken_node *node;
    ck_assert_int_eq(kraken_node_new(&node, &id), 0);
    char name[16];
    snprintf(name, sizeof name, "kr%u", n);
    ck_assert_int_eq(kraken_node_set_text(node, "/Nodename", name), 0);
    ck_assert_int_eq(kraken_node_set_text(node, "/Platform", "sim"), 0);
    return node;
}

static kraken_node *make_ipv4_node(unsigned n)
{
    kraken_node *node = make_node(n);
    ck_assert_int_eq(kraken_node_set_text(node, KIP, "10.0.0.1"), 0);
    ck_assert_int_eq(kraken_node_set_text(node, KMTU, "1500"), 0);
    return node;
}

#define MAX_CHANGES 64

typedef struct seen_change {
    kraken_change_kind kind;
    kraken_uuid id;
    char *url; /* NULL for CREATE/DELETE */
    kraken_value old_value, new_value;
} seen_change;

typedef struct recorder {
    seen_change c[MAX_CHANGES];
    size_t n;
    int destroyed;
    kraken_store *store;     /* for listeners that try to write */
    int write_rc;            /* what such a write returned */
    bool try_write;
    kraken_store_listener *self;
    bool unlisten_self;
} recorder;

static void recorder_fn(const kraken_state_change *ch, void *userdata)
{
    recorder *r = userdata;
    ck_assert_uint_lt(r->n, MAX_CHANGES);
    seen_change *s = &r->c[r->n++];
    s->kind = ch->kind;
    s->id = ch->node_id;
    s->url = ch->url ? strdup(ch->url) : NULL;
    ck_assert_ptr_nonnull(ch->old_value);
    ck_assert_ptr_nonnull(ch->new_value);
    ck_assert_int_eq(kraken_value_copy(&s->old_value, ch->old_value), 0);
    ck_assert_int_eq(kraken_value_copy(&s->new_value, ch->new_value), 0);
    if (r->try_write) {
        kraken_uuid id = ch->node_id;
        r->write_rc = kraken_store_set_text(r->store, KRAKEN_CFG, &id, "/Arch", "amd64");
    }
    if (r->unlisten_self) {
        kraken_store_listener_remove(r->self);
        r->self = NULL;
    }
}

static void recorder_destroy(void *userdata)
{
    ((recorder *)userdata)->destroyed++;
}

static void recorder_reset(recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->c[i].url);
        kraken_value_clear(&r->c[i].old_value);
        kraken_value_clear(&r->c[i].new_value);
    }
    r->n = 0;
}

/* Text of a recorded value ("" for NONE/zero). */
static char *text_of(const kraken_value *v)
{
    if (v->type == KRAKEN_T_NONE || kraken_value_is_zero(v))
        return strdup("");
    char *s = NULL;
    ck_assert_int_eq(kraken_value_format(v, &s), 0);
    return s;
}

static void assert_change(const seen_change *c, kraken_change_kind kind, const kraken_uuid *id,
                          const char *url, const char *old_text, const char *new_text)
{
    ck_assert_int_eq(c->kind, kind);
    ck_assert_int_eq(kraken_uuid_compare(&c->id, id), 0);
    if (!url) {
        ck_assert_ptr_null(c->url);
        ck_assert_int_eq(c->old_value.type, KRAKEN_T_NONE);
        ck_assert_int_eq(c->new_value.type, KRAKEN_T_NONE);
        return;
    }
    ck_assert_ptr_nonnull(c->url);
    ck_assert_str_eq(c->url, url);
    char *o = text_of(&c->old_value), *n = text_of(&c->new_value);
    ck_assert_str_eq(o, old_text);
    ck_assert_str_eq(n, new_text);
    free(o);
    free(n);
}

static char *canonical(const char *url)
{
    char *c = NULL;
    ck_assert_int_eq(kraken_url_canonical(url, &c), 0);
    return c;
}

static kraken_store *store;
static recorder rec;

static void setup(void)
{
    memset(&rec, 0, sizeof rec);
    ck_assert_int_eq(kraken_store_new(&store), 0);
    rec.store = store;
    ck_assert_int_eq(kraken_store_listen(store, recorder_fn, &rec, recorder_destroy, &rec.self), 0);
}

static void teardown(void)
{
    kraken_store_free(store);
    store = NULL;
    ck_assert_int_eq(rec.destroyed, 1); /* the listener's hook ran exactly once */
    kraken_store_listener_remove(rec.self); /* detached by the free: only the handle goes */
    ck_assert_int_eq(rec.destroyed, 1);
    recorder_reset(&rec);
}

static bool stored_equals(kraken_state_kind kind, const kraken_node *expect)
{
    kraken_node *got = NULL;
    ck_assert_int_eq(kraken_store_read(store, kind, kraken_node_id(expect), &got), 0);
    bool eq = kraken_node_equal(got, expect);
    kraken_node_free(got);
    return eq;
}

/* ---- create / read ------------------------------------------------------- */

START_TEST(create_read_and_copies)
{
    kraken_node *n1 = make_ipv4_node(1);
    kraken_uuid id1 = id_n(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    ck_assert_uint_eq(kraken_store_count(store), 1);
    ck_assert(kraken_store_contains(store, &id1));
    ck_assert_uint_eq(rec.n, 1);
    assert_change(&rec.c[0], KRAKEN_CHANGE_CREATE, &id1, NULL, NULL, NULL);

    /* The store copied the node: changing the caller's node changes nothing stored. */
    ck_assert_int_eq(kraken_node_set_text(n1, "/Nodename", "changed"), 0);
    kraken_node *cfg = NULL, *dsc = NULL;
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_CFG, &id1, &cfg), 0);
    char *name = NULL;
    ck_assert_int_eq(kraken_node_get_text(cfg, "/Nodename", &name), 0);
    ck_assert_str_eq(name, "kr1");
    free(name);

    /* Reads are copies too. */
    ck_assert_int_eq(kraken_node_set_text(cfg, "/PhysState", "POWER_ON"), 0);
    kraken_node *again = NULL;
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_CFG, &id1, &again), 0);
    ck_assert(!kraken_node_equal(cfg, again));
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, "/PhysState", &v), 0);
    ck_assert(kraken_value_is_zero(&v));
    kraken_value_clear(&v);
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, KIP, &v), 0);
    ck_assert_int_eq(v.type, KRAKEN_T_IPV4);
    ck_assert_int_eq(v.v.ipv4[0], 10);
    ck_assert_int_eq(v.v.ipv4[3], 1);
    kraken_value_clear(&v);

    /* Dsc holds an empty node with the same id. */
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_DSC, &id1, &dsc), 0);
    kraken_node *empty;
    ck_assert_int_eq(kraken_node_new(&empty, &id1), 0);
    ck_assert(kraken_node_equal(dsc, empty));
    ck_assert_int_eq(kraken_uuid_compare(kraken_node_id(dsc), &id1), 0);
    ck_assert_ptr_nonnull(kraken__store_peek(store, KRAKEN_CFG, &id1));
    ck_assert(kraken_node_equal(kraken__store_peek(store, KRAKEN_DSC, &id1), empty));
    kraken_uuid id9 = id_n(9);
    ck_assert_ptr_null(kraken__store_peek(store, KRAKEN_CFG, &id9));

    kraken_node_free(empty);
    kraken_node_free(again);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_node_free(n1);
}
END_TEST

START_TEST(create_refuses_bad_nodes)
{
    kraken_node *n1 = make_node(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    ck_assert_int_eq(kraken_store_create(store, n1), KRAKEN_EEXISTS);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "4a000000-0000-0000-0000-000000000001"));
    ck_assert_int_eq(kraken_store_create(store, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_create(NULL, n1), KRAKEN_EINVAL);
    kraken_node *zero;
    ck_assert_int_eq(kraken_node_new(&zero, NULL), 0);
    ck_assert_int_eq(kraken_store_create(store, zero), KRAKEN_EINVAL);

    ck_assert_uint_eq(kraken_store_count(store), 1);
    ck_assert_uint_eq(rec.n, 0);
    ck_assert(stored_equals(KRAKEN_CFG, n1));
    kraken_node_free(zero);
    kraken_node_free(n1);
}
END_TEST

START_TEST(read_errors_and_read_all_sorted)
{
    kraken_uuid id5 = id_n(5);
    kraken_node *out = (kraken_node *)1;
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_CFG, &id5, &out), KRAKEN_ENOTFOUND);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "4a000000-0000-0000-0000-000000000005"));
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_CFG, NULL, &out), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_read(store, (kraken_state_kind)7, &id5, &out), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_read(NULL, KRAKEN_CFG, &id5, &out), KRAKEN_EINVAL);

    kraken_node **all = (kraken_node **)1;
    size_t n = 7;
    ck_assert_int_eq(kraken_store_read_all(store, KRAKEN_CFG, &all, &n), 0);
    ck_assert_uint_eq(n, 0);
    kraken_nodes_free(all, n);

    unsigned order[] = {7, 3, 300, 1, 42};
    for (size_t i = 0; i < 5; i++) {
        kraken_node *node = make_node(order[i]);
        ck_assert_int_eq(kraken_store_create(store, node), 0);
        kraken_node_free(node);
    }
    unsigned sorted[] = {1, 3, 7, 42, 300};
    for (int kind = KRAKEN_CFG; kind <= KRAKEN_DSC; kind++) {
        ck_assert_int_eq(kraken_store_read_all(store, (kraken_state_kind)kind, &all, &n), 0);
        ck_assert_uint_eq(n, 5);
        for (size_t i = 0; i < 5; i++) {
            kraken_uuid id = id_n(sorted[i]);
            ck_assert_int_eq(kraken_uuid_compare(kraken_node_id(all[i]), &id), 0);
        }
        kraken_nodes_free(all, n);
    }
}
END_TEST

/* ---- update / set -------------------------------------------------------- */

START_TEST(set_value_emits_one_change_per_url)
{
    kraken_node *n1 = make_node(1);
    kraken_uuid id1 = id_n(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/PhysState", "POWER_ON"), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_change(&rec.c[0], KRAKEN_CHANGE_CFG_UPDATE, &id1, "/PhysState", "", "POWER_ON");
    ck_assert_int_eq(rec.c[0].old_value.type, KRAKEN_T_NONE); /* unknown before */
    ck_assert_int_eq(rec.c[0].new_value.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(rec.c[0].new_value.v.i, KRAKEN_PHYS_POWER_ON);

    kraken_value off = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_OFF);
    ck_assert_int_eq(kraken_store_set_value(store, KRAKEN_CFG, &id1, "physState", &off), 0);
    ck_assert_uint_eq(rec.n, 2);
    assert_change(&rec.c[1], KRAKEN_CHANGE_CFG_UPDATE, &id1, "/PhysState", "POWER_ON",
                  "POWER_OFF");

    /* Writing the same value again changes nothing and reports nothing. */
    ck_assert_int_eq(kraken_store_set_value(store, KRAKEN_CFG, &id1, "/PhysState", &off), 0);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/Nodename", "kr1"), 0);
    ck_assert_uint_eq(rec.n, 2);

    /* Dsc writes are UPDATE; a value inside an absent extension creates it. */
    char *kip = canonical(KIP);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, KIP, "10.1.2.3"), 0);
    ck_assert_uint_eq(rec.n, 3);
    assert_change(&rec.c[2], KRAKEN_CHANGE_UPDATE, &id1, kip, "", "10.1.2.3");
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_DSC, &id1, KIP, &v), 0);
    ck_assert_int_eq(v.v.ipv4[3], 3);
    kraken_value_clear(&v);
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, KIP, &v), KRAKEN_ENOTFOUND);
    kraken_value_clear(&v);

    /* Back to zero (unknown): the new value is reported as NONE. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, KIP, "0.0.0.0"), 0);
    ck_assert_uint_eq(rec.n, 4);
    assert_change(&rec.c[3], KRAKEN_CHANGE_UPDATE, &id1, kip, "10.1.2.3", "");
    ck_assert_int_eq(rec.c[3].new_value.type, KRAKEN_T_NONE);

    /* A compound value (a whole interface) reports each leaf it changes. */
    char *eth1_mtu = canonical(IPV4 "/Ifaces/eth1/Eth/Mtu");
    char *eth1_ip = canonical(IPV4 "/Ifaces/eth1/Ip/Ip");
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, IPV4 "/Ifaces/eth1",
                                           "{\"eth\": {\"mtu\": 9000}, \"ip\": {\"ip\": \"10.2.0.1\"}}"),
                     0);
    ck_assert_uint_eq(rec.n, 6);
    assert_change(&rec.c[4], KRAKEN_CHANGE_UPDATE, &id1, eth1_mtu, "", "9000");
    assert_change(&rec.c[5], KRAKEN_CHANGE_UPDATE, &id1, eth1_ip, "", "10.2.0.1");
    /* The same compound value again changes nothing. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, IPV4 "/Ifaces/eth1",
                                           "{\"eth\": {\"mtu\": 9000}, \"ip\": {\"ip\": \"10.2.0.1\"}}"),
                     0);
    ck_assert_uint_eq(rec.n, 6);
    free(eth1_mtu);
    free(eth1_ip);

    /* Cfg was not touched by the Dsc writes. */
    ck_assert_int_eq(kraken_node_set_text(n1, "/PhysState", "POWER_OFF"), 0);
    ck_assert(stored_equals(KRAKEN_CFG, n1));
    free(kip);
    kraken_node_free(n1);
}
END_TEST

START_TEST(set_service_values)
{
    kraken_node *n1 = make_node(1);
    kraken_uuid id1 = id_n(1);
    ck_assert_int_eq(kraken_node_set_text(n1, "/Services/pxe/Config/" PXECFG "/TftpDir", "/tftp"),
                     0);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/Services/pxe/State", "RUN"),
                     0);
    ck_assert_uint_eq(rec.n, 1);
    assert_change(&rec.c[0], KRAKEN_CHANGE_CFG_UPDATE, &id1, "/Services/pxe/State", "", "RUN");

    /* A config field named without its type resolves against the stored node's config. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/Services/pxe/Config/TftpDir",
                                           "/srv/tftp"),
                     0);
    ck_assert_uint_eq(rec.n, 2);
    assert_change(&rec.c[1], KRAKEN_CHANGE_CFG_UPDATE, &id1,
                  "/Services/pxe/Config/" PXECFG "/TftpDir", "/tftp", "/srv/tftp");
    kraken_value v = kraken_value_string("/srv/tftp");
    ck_assert_int_eq(kraken_store_set_value(store, KRAKEN_CFG, &id1,
                                            "/Services/pxe/Config/TftpDir", &v),
                     0);
    kraken_value_clear(&v);
    ck_assert_uint_eq(rec.n, 2); /* same value: nothing */
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, "/Services/pxe/Config/TftpDir",
                                            &v),
                     0);
    ck_assert_str_eq(v.v.str.data, "/srv/tftp");
    kraken_value_clear(&v);
    /* The service has no config in Dsc: the URL cannot resolve there. */
    ck_assert_int_lt(kraken_store_set_text(store, KRAKEN_DSC, &id1,
                                           "/Services/pxe/Config/TftpDir", "/x"),
                     0);
    ck_assert_uint_eq(rec.n, 2);
    kraken_node_free(n1);
}
END_TEST

START_TEST(set_value_refuses_bad_input)
{
    kraken_node *n1 = make_ipv4_node(1);
    kraken_uuid id1 = id_n(1), id2 = id_n(2);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id2, "/PhysState", "POWER_ON"),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/PhysState", "ON"),
                     KRAKEN_ETYPE);
    ck_assert_str_eq(kraken_error_last(), "URL '/PhysState': 'ON' is not a member of enum "
                                          "PhysState");
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/NoSuchField", "1"),
                     KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "URL '/NoSuchField': kraken.Node has no field "
                                          "'NoSuchField'");
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, KMTU, "big"), KRAKEN_EPARSE);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), KMTU));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "'big'"));
    kraken_value s = kraken_value_string("text");
    ck_assert_int_eq(kraken_store_set_value(store, KRAKEN_CFG, &id1, KIP, &s), KRAKEN_ETYPE);
    kraken_value_clear(&s);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, NULL, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_set_value(store, KRAKEN_CFG, &id1, "/Arch", NULL),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_set_text(store, (kraken_state_kind)5, &id1, "/Arch", "x"),
                     KRAKEN_EINVAL);
    /* The id is the key: it cannot be changed by URL. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/Id",
                                           "4a000000-0000-0000-0000-000000000002"),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, "/Id",
                                           "4a000000-0000-0000-0000-000000000002"),
                     KRAKEN_EINVAL);
    ck_assert(kraken_store_contains(store, &id1));
    ck_assert(!kraken_store_contains(store, &id2));

    ck_assert_uint_eq(rec.n, 0);
    ck_assert(stored_equals(KRAKEN_CFG, n1));
    kraken_node *empty;
    ck_assert_int_eq(kraken_node_new(&empty, &id1), 0);
    ck_assert(stored_equals(KRAKEN_DSC, empty));
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, "/Nope", &v), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "URL '/Nope': kraken.Node has no field 'Nope'");
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id2, "/Arch", &v),
                     KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_store_get_value(store, KRAKEN_CFG, &id1, NULL, &v), KRAKEN_EINVAL);
    kraken_node_free(empty);
    kraken_node_free(n1);
}
END_TEST

START_TEST(update_reports_each_changed_leaf)
{
    kraken_node *n1 = make_ipv4_node(1);
    kraken_uuid id1 = id_n(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    /* Same content: no change, no report. */
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_CFG, n1), 0);
    ck_assert_uint_eq(rec.n, 0);

    /* Three leaves inside the extension and one core field change. */
    ck_assert_int_eq(kraken_node_set_text(n1, KIP, "10.0.0.2"), 0);
    ck_assert_int_eq(kraken_node_set_text(n1, KMTU, "9000"), 0);
    ck_assert_int_eq(kraken_node_set_text(n1, IPV4 "/Ifaces/ib0/Ip/Ip", "10.9.0.1"), 0);
    ck_assert_int_eq(kraken_node_set_text(n1, "/Arch", "amd64"), 0);
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_CFG, n1), 0);
    ck_assert(stored_equals(KRAKEN_CFG, n1));

    char *kip = canonical(KIP), *kmtu = canonical(KMTU);
    char *ibip = canonical(IPV4 "/Ifaces/ib0/Ip/Ip");
    ck_assert_uint_eq(rec.n, 4);
    /* Diff order: core fields first, then the extension's map keys sorted (ib0 < kraken). */
    assert_change(&rec.c[0], KRAKEN_CHANGE_CFG_UPDATE, &id1, "/Arch", "", "amd64");
    assert_change(&rec.c[1], KRAKEN_CHANGE_CFG_UPDATE, &id1, ibip, "", "10.9.0.1");
    /* Inside an interface record, Eth comes before Ip (schema field order). */
    assert_change(&rec.c[2], KRAKEN_CHANGE_CFG_UPDATE, &id1, kmtu, "1500", "9000");
    assert_change(&rec.c[3], KRAKEN_CHANGE_CFG_UPDATE, &id1, kip, "10.0.0.1", "10.0.0.2");

    /* Dsc updates report UPDATE. */
    recorder_reset(&rec);
    kraken_node *d;
    ck_assert_int_eq(kraken_node_new(&d, &id1), 0);
    ck_assert_int_eq(kraken_node_set_text(d, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_DSC, d), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_change(&rec.c[0], KRAKEN_CHANGE_UPDATE, &id1, "/RunState", "", "SYNC");
    /* The caller's node is still its own. */
    ck_assert_int_eq(kraken_node_set_text(d, "/RunState", "ERROR"), 0);
    ck_assert(!stored_equals(KRAKEN_DSC, d));

    free(kip);
    free(kmtu);
    free(ibip);
    kraken_node_free(d);
    kraken_node_free(n1);
}
END_TEST

START_TEST(update_refuses_bad_nodes)
{
    kraken_node *n1 = make_node(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);

    kraken_node *other = make_node(2);
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_CFG, other), KRAKEN_ENOTFOUND);
    kraken_node *zero;
    ck_assert_int_eq(kraken_node_new(&zero, NULL), 0);
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_CFG, zero), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_update(store, KRAKEN_CFG, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_update(store, (kraken_state_kind)2, n1), KRAKEN_EINVAL);
    ck_assert_uint_eq(rec.n, 0);
    ck_assert_uint_eq(kraken_store_count(store), 1);
    ck_assert(stored_equals(KRAKEN_CFG, n1));
    kraken_node_free(zero);
    kraken_node_free(other);
    kraken_node_free(n1);
}
END_TEST

/* ---- delete ---------------------------------------------------------------- */

START_TEST(delete_and_delete_all)
{
    for (unsigned i = 1; i <= 4; i++) {
        kraken_node *node = make_node(i);
        ck_assert_int_eq(kraken_store_create(store, node), 0);
        kraken_node_free(node);
    }
    recorder_reset(&rec);
    kraken_uuid id2 = id_n(2), id9 = id_n(9);
    ck_assert_int_eq(kraken_store_delete(store, &id2), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_change(&rec.c[0], KRAKEN_CHANGE_DELETE, &id2, NULL, NULL, NULL);
    ck_assert(!kraken_store_contains(store, &id2));
    kraken_node *out;
    ck_assert_int_eq(kraken_store_read(store, KRAKEN_DSC, &id2, &out), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_store_delete(store, &id2), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_store_delete(store, &id9), KRAKEN_ENOTFOUND);
    ck_assert_int_eq(kraken_store_delete(store, NULL), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_store_count(store), 3);
    ck_assert_uint_eq(rec.n, 1);

    ck_assert_int_eq(kraken_store_delete_all(store), 0);
    ck_assert_uint_eq(kraken_store_count(store), 0);
    ck_assert_uint_eq(rec.n, 4);
    unsigned expect[] = {1, 3, 4};
    for (int i = 0; i < 3; i++) {
        kraken_uuid id = id_n(expect[i]);
        assert_change(&rec.c[1 + i], KRAKEN_CHANGE_DELETE, &id, NULL, NULL, NULL);
        ck_assert(!kraken_store_contains(store, &id));
    }
    /* Deleting nothing reports nothing; the store is usable again. */
    ck_assert_int_eq(kraken_store_delete_all(store), 0);
    ck_assert_uint_eq(rec.n, 4);
    kraken_node *node = make_node(3);
    ck_assert_int_eq(kraken_store_create(store, node), 0);
    ck_assert_uint_eq(kraken_store_count(store), 1);
    kraken_node_free(node);
    ck_assert_int_eq(kraken_store_delete_all(NULL), KRAKEN_EINVAL);
}
END_TEST

/* Many inserts and deletes with sequential ids keep every lookup right (probe chains). */
START_TEST(table_survives_churn)
{
    kraken_store *s;
    ck_assert_int_eq(kraken_store_new(&s), 0);
    const unsigned n = 5000;
    kraken_node *node;
    for (unsigned i = 1; i <= n; i++) {
        kraken_uuid id = id_n(i);
        ck_assert_int_eq(kraken_node_new(&node, &id), 0);
        ck_assert_int_eq(kraken_store_create(s, node), 0);
        kraken_node_free(node);
    }
    for (unsigned i = 1; i <= n; i += 3) {
        kraken_uuid id = id_n(i);
        ck_assert_int_eq(kraken_store_delete(s, &id), 0);
    }
    size_t left = 0;
    for (unsigned i = 1; i <= n; i++) {
        kraken_uuid id = id_n(i);
        bool want = (i - 1) % 3 != 0;
        ck_assert_int_eq(kraken_store_contains(s, &id), want);
        left += want;
        ck_assert_int_eq(kraken__store_peek(s, KRAKEN_DSC, &id) != NULL, want);
    }
    ck_assert_uint_eq(kraken_store_count(s), left);
    kraken_store_free(s);
    kraken_store_free(NULL);
}
END_TEST

/* ---- bulk ---------------------------------------------------------------- */

static void assert_result(const kraken_result *r, int code)
{
    ck_assert_int_eq(r->code, code);
    if (code == 0)
        ck_assert_ptr_null(r->message);
    else
        ck_assert(r->message && *r->message);
}

START_TEST(bulk_forms_report_each_item)
{
    kraken_node *zero;
    ck_assert_int_eq(kraken_node_new(&zero, NULL), 0);
    kraken_node *n1 = make_node(1), *n2 = make_node(2), *n1b = make_node(1);
    kraken_node *items[] = {n1, zero, n1b, NULL, n2};
    kraken_result res[5];
    size_t failed = 99;
    ck_assert_int_eq(kraken_store_create_many(store, items, 5, res, &failed), 0);
    ck_assert_uint_eq(failed, 3);
    assert_result(&res[0], 0);
    assert_result(&res[1], KRAKEN_EINVAL);
    assert_result(&res[2], KRAKEN_EEXISTS);
    ck_assert_ptr_nonnull(strstr(res[2].message, "4a000000-0000-0000-0000-000000000001"));
    assert_result(&res[3], KRAKEN_EINVAL);
    assert_result(&res[4], 0);
    kraken_results_clear(res, 5);
    ck_assert_ptr_null(res[2].message);
    ck_assert_uint_eq(kraken_store_count(store), 2);
    ck_assert_uint_eq(rec.n, 2);

    /* read_many */
    kraken_uuid ids[] = {id_n(2), id_n(7), id_n(1)};
    kraken_node *out[3];
    ck_assert_int_eq(kraken_store_read_many(store, KRAKEN_CFG, ids, 3, out, res, &failed), 0);
    ck_assert_uint_eq(failed, 1);
    assert_result(&res[0], 0);
    assert_result(&res[1], KRAKEN_ENOTFOUND);
    assert_result(&res[2], 0);
    ck_assert(kraken_node_equal(out[0], n2));
    ck_assert_ptr_null(out[1]);
    ck_assert(kraken_node_equal(out[2], n1));
    kraken_results_clear(res, 3);
    for (int i = 0; i < 3; i++)
        kraken_node_free(out[i]);

    /* update_many: one good, one unknown, one good Dsc-irrelevant change */
    recorder_reset(&rec);
    ck_assert_int_eq(kraken_node_set_text(n1, "/Arch", "arm64"), 0);
    kraken_node *n3 = make_node(3);
    kraken_node *ups[] = {n1, n3, n2};
    ck_assert_int_eq(kraken_store_update_many(store, KRAKEN_CFG, ups, 3, res, &failed), 0);
    ck_assert_uint_eq(failed, 1);
    assert_result(&res[0], 0);
    assert_result(&res[1], KRAKEN_ENOTFOUND);
    assert_result(&res[2], 0);
    kraken_results_clear(res, 3);
    ck_assert_uint_eq(rec.n, 1); /* only n1 changed */
    ck_assert(stored_equals(KRAKEN_CFG, n1));

    /* delete_many */
    recorder_reset(&rec);
    kraken_uuid dels[] = {id_n(3), id_n(1), id_n(1)};
    ck_assert_int_eq(kraken_store_delete_many(store, dels, 3, res, NULL), 0);
    assert_result(&res[0], KRAKEN_ENOTFOUND);
    assert_result(&res[1], 0);
    assert_result(&res[2], KRAKEN_ENOTFOUND);
    kraken_results_clear(res, 3);
    ck_assert_uint_eq(rec.n, 1);
    ck_assert_uint_eq(kraken_store_count(store), 1);

    /* Misuse */
    ck_assert_int_eq(kraken_store_create_many(store, NULL, 2, res, &failed), KRAKEN_EINVAL);
    ck_assert_uint_eq(failed, 0);
    ck_assert_int_eq(kraken_store_create_many(store, items, 2, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_read_many(store, KRAKEN_CFG, ids, 1, NULL, res, NULL),
                     KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_delete_many(NULL, dels, 1, res, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_create_many(store, NULL, 0, NULL, NULL), 0);
    ck_assert_uint_eq(kraken_store_count(store), 1);
    kraken_results_clear(NULL, 3);

    kraken_node_free(n3);
    kraken_node_free(zero);
    kraken_node_free(n1);
    kraken_node_free(n2);
    kraken_node_free(n1b);
}
END_TEST

/* ---- listeners ------------------------------------------------------------- */

START_TEST(listener_writes_are_refused)
{
    kraken_node *n1 = make_node(1);
    kraken_uuid id1 = id_n(1);
    rec.try_write = true;
    rec.write_rc = 1;
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    ck_assert_int_eq(rec.write_rc, KRAKEN_ESTATE);
    ck_assert_uint_eq(rec.n, 1); /* the refused write reported nothing */
    ck_assert(stored_equals(KRAKEN_CFG, n1));
    rec.write_rc = 1;
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id1, "/RunState", "INIT"), 0);
    ck_assert_int_eq(rec.write_rc, KRAKEN_ESTATE);
    ck_assert_uint_eq(rec.n, 2);
    rec.try_write = false;
    /* Outside listeners, writes work again. */
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_CFG, &id1, "/Arch", "amd64"), 0);
    ck_assert_uint_eq(rec.n, 3);
    kraken_node_free(n1);
}
END_TEST

START_TEST(listeners_in_order_and_unlisten)
{
    static recorder second;
    memset(&second, 0, sizeof second);
    second.store = store;
    ck_assert_int_eq(kraken_store_listen(store, recorder_fn, &second, recorder_destroy,
                                         &second.self), 0);
    second.unlisten_self = true; /* removes itself from inside its first call */
    kraken_node *n1 = make_node(1), *n2 = make_node(2);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    ck_assert_uint_eq(second.n, 1);
    ck_assert_int_eq(second.destroyed, 1);
    ck_assert_int_eq(kraken_store_create(store, n2), 0);
    ck_assert_uint_eq(second.n, 1);
    ck_assert_uint_eq(rec.n, 2);
    recorder_reset(&second);

    ck_assert_int_eq(kraken_store_listen(store, NULL, NULL, NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_listen(NULL, recorder_fn, NULL, NULL, NULL), KRAKEN_EINVAL);
    kraken_store_listener_remove(NULL);
    kraken_node_free(n1);
    kraken_node_free(n2);
}
END_TEST

/* ---- files ---------------------------------------------------------------- */

static char tmpdir[64];

static void tmp_setup(void)
{
    setup();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kraken-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    teardown();
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* GET of every node in a REST server: the same text as copying and printing, without copies. */
START_TEST(to_json_prints_the_stored_set)
{
    char *text = NULL;
    ck_assert_int_eq(kraken_store_to_json(store, KRAKEN_CFG, 0, &text), 0);
    ck_assert_str_eq(text, "{\"nodes\":[]}");
    free(text);
    for (unsigned i = 3; i > 0; i--) {
        kraken_node *node = make_node(i);
        ck_assert_int_eq(kraken_store_create(store, node), 0);
        kraken_node_free(node);
    }
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, (kraken_uuid[]){id_n(2)},
                                           "/PhysState", "POWER_ON"), 0);
    for (int kind = KRAKEN_CFG; kind <= KRAKEN_DSC; kind++) {
        kraken_node **all;
        size_t n;
        char *expect = NULL;
        ck_assert_int_eq(kraken_store_read_all(store, kind, &all, &n), 0);
        ck_assert_int_eq(kraken_nodes_to_json(all, n, 0, &expect), 0);
        kraken_nodes_free(all, n);
        ck_assert_int_eq(kraken_store_to_json(store, kind, 0, &text), 0);
        ck_assert_str_eq(text, expect);
        free(text);
        free(expect);
    }
    text = (char *)"untouched";
    ck_assert_int_eq(kraken_store_to_json(store, (kraken_state_kind)7, 0, &text), KRAKEN_EINVAL);
    ck_assert_ptr_null(text);
    ck_assert_int_eq(kraken_store_to_json(NULL, KRAKEN_CFG, 0, &text), KRAKEN_EINVAL);
}
END_TEST

START_TEST(save_load_round_trip)
{
    for (unsigned i = 1; i <= 3; i++) {
        kraken_node *node = make_ipv4_node(i);
        ck_assert_int_eq(kraken_store_create(store, node), 0);
        kraken_node_free(node);
    }
    kraken_uuid id2 = id_n(2);
    ck_assert_int_eq(kraken_store_set_text(store, KRAKEN_DSC, &id2, "/PhysState", "POWER_ON"), 0);
    char cfg_path[128], dsc_path[128];
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.json", tmpdir);
    snprintf(dsc_path, sizeof dsc_path, "%s/dsc.json", tmpdir);
    ck_assert_int_eq(kraken_store_save(store, KRAKEN_CFG, cfg_path), 0);
    ck_assert_int_eq(kraken_store_save(store, KRAKEN_DSC, dsc_path), 0);
    ck_assert_int_eq(access(cfg_path, R_OK), 0);

    kraken_store *s2;
    ck_assert_int_eq(kraken_store_new(&s2), 0);
    static recorder r2;
    memset(&r2, 0, sizeof r2);
    ck_assert_int_eq(kraken_store_listen(s2, recorder_fn, &r2, NULL, NULL), 0);
    ck_assert_int_eq(kraken_store_load(s2, cfg_path), 0);
    ck_assert_uint_eq(kraken_store_count(s2), 3);
    ck_assert_uint_eq(r2.n, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(r2.c[i].kind, KRAKEN_CHANGE_CREATE);

    kraken_node **a, **b;
    size_t na, nb;
    ck_assert_int_eq(kraken_store_read_all(store, KRAKEN_CFG, &a, &na), 0);
    ck_assert_int_eq(kraken_store_read_all(s2, KRAKEN_CFG, &b, &nb), 0);
    ck_assert_uint_eq(na, nb);
    for (size_t i = 0; i < na; i++)
        ck_assert(kraken_node_equal(a[i], b[i]));
    kraken_nodes_free(a, na);
    kraken_nodes_free(b, nb);

    /* The saved Dsc set has the discovered value. */
    kraken_node **d;
    size_t nd;
    ck_assert_int_eq(kraken_nodes_load_file(dsc_path, &d, &nd), 0);
    ck_assert_uint_eq(nd, 3);
    kraken_value v = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_node_get(d[1], "/PhysState", &v), 0);
    ck_assert_int_eq(v.v.i, KRAKEN_PHYS_POWER_ON);
    kraken_value_clear(&v);
    kraken_nodes_free(d, nd);

    /* Loading the same file again: every id exists, nothing changes. */
    recorder_reset(&r2);
    ck_assert_int_eq(kraken_store_load(s2, cfg_path), KRAKEN_EEXISTS);
    ck_assert_uint_eq(kraken_store_count(s2), 3);
    ck_assert_uint_eq(r2.n, 0);
    kraken_store_free(s2);

    /* Saving where no file can be written fails and names the path. */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing-dir/cfg.json", tmpdir);
    ck_assert_int_eq(kraken_store_save(store, KRAKEN_CFG, bad), KRAKEN_EIO);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), bad));
    ck_assert_int_eq(kraken_store_save(store, KRAKEN_CFG, NULL), KRAKEN_EINVAL);
}
END_TEST

START_TEST(load_bad_file_changes_nothing)
{
    kraken_node *n1 = make_node(1);
    ck_assert_int_eq(kraken_store_create(store, n1), 0);
    recorder_reset(&rec);
    char path[128];
    snprintf(path, sizeof path, "%s/bad.json", tmpdir);

    const char *bad_files[] = {
        "{\"nodes\": [ {\"id\": \"4a000000-0000-0000-0000-000000000002\"}, ", /* truncated */
        /* duplicate id inside the file */
        ("{\"nodes\": [{\"id\": \"4a000000-0000-0000-0000-000000000002\"},"
         " {\"id\": \"4a000000-0000-0000-0000-000000000003\"},"
         " {\"id\": \"4a000000-0000-0000-0000-000000000002\"}]}"),
        /* an id already in the store, after a new one */
        ("{\"nodes\": [{\"id\": \"4a000000-0000-0000-0000-000000000002\"},"
         " {\"id\": \"4a000000-0000-0000-0000-000000000001\"}]}"),
        /* a node without id */
        "{\"nodes\": [{\"id\": \"4a000000-0000-0000-0000-000000000002\"}, {\"nodename\": \"x\"}]}",
        /* a bad enum name */
        "{\"nodes\": [{\"id\": \"4a000000-0000-0000-0000-000000000002\", \"physState\": \"ON\"}]}",
    };
    int expect[] = {KRAKEN_EPARSE, KRAKEN_EEXISTS, KRAKEN_EEXISTS, KRAKEN_EINVAL, KRAKEN_EPARSE};
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        write_text(path, bad_files[i]);
        int rc = kraken_store_load(store, path);
        ck_assert_msg(rc == expect[i], "bad file %zu: %s, not %s (%s)", i, kraken_err_name(rc),
                      kraken_err_name(expect[i]), kraken_error_last());
        ck_assert_msg(strstr(kraken_error_last(), "bad.json") != NULL,
                      "message does not name the file: %s", kraken_error_last());
        ck_assert_uint_eq(kraken_store_count(store), 1);
        ck_assert_uint_eq(rec.n, 0);
    }
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.json", tmpdir);
    ck_assert_int_eq(kraken_store_load(store, missing), KRAKEN_EIO);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), missing));
    ck_assert_int_eq(kraken_store_load(store, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_store_load(NULL, path), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_store_count(store), 1);
    ck_assert(stored_equals(KRAKEN_CFG, n1));

    /* The fixture in the original format loads. */
    ck_assert_int_eq(kraken_store_load(store, KRAKEN_FIXTURES "/cluster4.json"), 0);
    ck_assert_uint_gt(kraken_store_count(store), 1);
    ck_assert_uint_eq(rec.n, kraken_store_count(store) - 1);
    kraken_node_free(n1);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, create_read_and_copies);
    tcase_add_test(tc, create_refuses_bad_nodes);
    tcase_add_test(tc, read_errors_and_read_all_sorted);
    tcase_add_test(tc, set_value_emits_one_change_per_url);
    tcase_add_test(tc, set_service_values);
    tcase_add_test(tc, set_value_refuses_bad_input);
    tcase_add_test(tc, update_reports_each_changed_leaf);
    tcase_add_test(tc, update_refuses_bad_nodes);
    tcase_add_test(tc, delete_and_delete_all);
    tcase_add_test(tc, table_survives_churn);
    tcase_add_test(tc, bulk_forms_report_each_item);
    tcase_add_test(tc, listener_writes_are_refused);
    tcase_add_test(tc, listeners_in_order_and_unlisten);
    suite_add_tcase(s, tc);

    TCase *files = tcase_create("files");
    tcase_add_checked_fixture(files, tmp_setup, tmp_teardown);
    tcase_add_test(files, save_load_round_trip);
    tcase_add_test(files, to_json_prints_the_stored_set);
    tcase_add_test(files, load_bad_file_changes_nothing);
    suite_add_tcase(s, files);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
