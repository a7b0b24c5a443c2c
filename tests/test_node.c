/* SPDX-License-Identifier: BSD-3-Clause */
/* Records, maps, keyed lists and nodes as values (record.c), built with internal helpers only. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const kraken_field *node_field(size_t idx)
{
    return &kraken__node_schema()->fields[idx];
}

static const kraken_field *field_of(const kraken_schema *s, const char *name)
{
    const kraken_field *f = kraken__schema_field(s, name, strlen(name));
    ck_assert_ptr_nonnull(f);
    return f;
}

static kraken_slot *slot_of(kraken_record *rec, const char *name)
{
    return &rec->slots[field_of(rec->schema, name) - rec->schema->fields];
}

static void set_parsed(kraken_record *rec, const char *name, const char *text)
{
    const kraken_field *f = field_of(rec->schema, name);
    kraken_value v;
    ck_assert_int_eq(kraken__value_parse(f, f->type, text, &v), 0);
    kraken_slot *slot = slot_of(rec, name);
    kraken__slot_free(f, f->type, slot);
    ck_assert_int_eq(kraken__value_to_slot(f, f->type, &v, slot, name), 0);
    kraken_value_clear(&v);
}

/* Insert (or find) the keyed-list element @p key, creating a record of @p schema. */
static kraken_record *keyed_insert(kraken_node *node, size_t list_field, const char *key,
                                   const kraken_schema *schema)
{
    const kraken_field *f = node_field(list_field);
    kraken_list **l = &node->rec.slots[list_field].list;
    bool found;
    size_t pos = kraken__list_keyed_pos(f, *l, key, strlen(key), &found);
    if (found)
        return (*l)->items[pos].rec;
    kraken_record *rec = kraken__record_new(schema);
    ck_assert_ptr_nonnull(rec);
    if (list_field == KRAKEN_NODE_F_SERVICES)
        rec->slots[KRAKEN_SVC_F_ID].s = strdup(key);
    kraken_slot *slot = kraken__list_insert(l, pos);
    ck_assert_ptr_nonnull(slot);
    slot->rec = rec;
    return rec;
}

/* A node with core fields, one service and an IPv4 extension with one interface. */
static kraken_node *make_node(const char *uuid_text, const char *ip)
{
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, uuid_text), 0);
    kraken_node *node;
    ck_assert_int_eq(kraken_node_new(&node, &id), 0);
    set_parsed(&node->rec, "nodename", "n1");
    set_parsed(&node->rec, "phys_state", "POWER_ON");
    set_parsed(&node->rec, "arch", "amd64");

    const kraken_schema *ipv4 = kraken_schema_find("IPv4.IPv4OverEthernet");
    kraken_record *ext = keyed_insert(node, KRAKEN_NODE_F_EXTENSIONS, "IPv4.IPv4OverEthernet", ipv4);
    const kraken_field *ifaces = field_of(ipv4, "ifaces");
    kraken_map_entry *e = kraken__map_insert(&slot_of(ext, "ifaces")->map, "kraken", 6);
    ck_assert_ptr_nonnull(e);
    kraken_record *ci = e->value.rec = kraken__record_new(ifaces->record);
    kraken_record *eth = slot_of(ci, "eth")->rec = kraken__record_new(kraken_schema_find("IPv4.Ethernet"));
    kraken_record *ipr = slot_of(ci, "ip")->rec = kraken__record_new(kraken_schema_find("IPv4.IPv4"));
    set_parsed(eth, "iface", "eth0");
    set_parsed(eth, "mac", "02:00:00:00:00:01");
    set_parsed(eth, "mtu", "1500");
    set_parsed(ipr, "ip", ip);
    set_parsed(ipr, "subnet", "255.255.255.0");
    return node;
}

START_TEST(layout_sizes)
{
    ck_assert_uint_eq(sizeof(kraken_slot), 8);
    ck_assert_uint_eq(sizeof(kraken_record), sizeof(void *));
    ck_assert_uint_eq(sizeof(struct kraken_node), sizeof(kraken_record));
    ck_assert_uint_eq(sizeof(kraken_map_entry), 16);
    ck_assert_uint_eq(sizeof(kraken_value), 32);
    ck_assert_uint_eq(KRAKEN_NODE_N_FIELDS, 10);
    /* An empty node is one allocation: schema pointer + 10 slots. */
    ck_assert_uint_eq(sizeof(kraken_record) + KRAKEN_NODE_N_FIELDS * sizeof(kraken_slot), 88);
}
END_TEST

START_TEST(node_new_id_free)
{
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, NULL), 0);
    ck_assert(kraken_uuid_is_zero(kraken_node_id(n)));
    ck_assert(kraken__record_is_empty(&n->rec));
    ck_assert_ptr_eq(n->rec.schema, kraken__node_schema());
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_generate(&id), 0);
    ck_assert_int_eq(kraken_node_set_id(n, &id), 0);
    ck_assert_int_eq(kraken_uuid_compare(kraken_node_id(n), &id), 0);
    ck_assert(!kraken__record_is_empty(&n->rec));
    ck_assert_int_eq(kraken_node_set_id(n, NULL), 0);
    ck_assert(kraken_uuid_is_zero(kraken_node_id(n)));
    ck_assert_ptr_null(n->rec.slots[KRAKEN_NODE_F_ID].uuid); /* zero is stored as NULL */
    kraken_node_free(n);

    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_uuid_compare(kraken_node_id(n), &id), 0);
    kraken_node_free(n);

    kraken_node_free(NULL);
    ck_assert_int_eq(kraken_node_new(NULL, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_set_id(NULL, &id), KRAKEN_EINVAL);
    ck_assert(kraken_uuid_is_zero(kraken_node_id(NULL)));
    ck_assert_int_eq(kraken_node_copy(NULL, n), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_copy(&n, NULL), KRAKEN_EINVAL);
    ck_assert_uint_eq(kraken_node_extension_count(NULL), 0);
    ck_assert_uint_eq(kraken_node_service_count(NULL), 0);
    ck_assert_ptr_null(kraken_node_extension_schema(NULL, 0));
    ck_assert_ptr_null(kraken_node_service_id(NULL, 0));
    ck_assert(kraken_node_equal(NULL, NULL));
}
END_TEST

START_TEST(node_copy_is_deep_and_equal)
{
    kraken_node *a = make_node("4afd9a3e-1111-4222-8333-444455556666", "10.0.0.1");
    kraken_node *b;
    ck_assert_int_eq(kraken_node_copy(&b, a), 0);
    ck_assert(kraken_node_equal(a, b));
    ck_assert_ptr_ne(kraken_node_id(a), kraken_node_id(b));
    ck_assert_int_eq(kraken_uuid_compare(kraken_node_id(a), kraken_node_id(b)), 0);

    /* Changing the copy deep inside leaves the original alone. */
    kraken_record *ext_b = b->rec.slots[KRAKEN_NODE_F_EXTENSIONS].list->items[0].rec;
    kraken_map_entry *e = kraken__map_find(slot_of(ext_b, "ifaces")->map, "kraken", 6);
    ck_assert_ptr_nonnull(e);
    kraken_record *ip_b = slot_of(e->value.rec, "ip")->rec;
    set_parsed(ip_b, "ip", "10.0.0.2");
    ck_assert(!kraken_node_equal(a, b));
    kraken_record *ext_a = a->rec.slots[KRAKEN_NODE_F_EXTENSIONS].list->items[0].rec;
    kraken_record *ip_a =
        slot_of(kraken__map_find(slot_of(ext_a, "ifaces")->map, "kraken", 6)->value.rec, "ip")->rec;
    ck_assert_mem_eq(&slot_of(ip_a, "ip")->ipv4, "\x0a\x00\x00\x01", 4);
    set_parsed(ip_b, "ip", "10.0.0.1");
    ck_assert(kraken_node_equal(a, b));

    set_parsed(&b->rec, "nodename", "other");
    ck_assert(!kraken_node_equal(a, b));
    ck_assert_str_eq(slot_of(&a->rec, "nodename")->s, "n1");
    kraken_node_free(b);

    kraken_node *c = make_node("4afd9a3e-1111-4222-8333-444455556667", "10.0.0.1");
    ck_assert(!kraken_node_equal(a, c)); /* only the id differs */
    ck_assert(!kraken_node_equal(a, NULL));
    kraken_node_free(c);
    kraken_node_free(a);
}
END_TEST

START_TEST(extensions_and_services)
{
    kraken_node *n = make_node("4afd9a3e-1111-4222-8333-444455556666", "10.0.0.1");
    keyed_insert(n, KRAKEN_NODE_F_EXTENSIONS, "type.googleapis.com/PXE.Client",
                 kraken_schema_find("PXE.Client"));
    keyed_insert(n, KRAKEN_NODE_F_EXTENSIONS, "Powerman.Control",
                 kraken_schema_find("Powerman.Control"));
    ck_assert_uint_eq(kraken_node_extension_count(n), 3);
    /* Sorted by type URL. */
    ck_assert_str_eq(kraken_schema_name(kraken_node_extension_schema(n, 0)),
                     "IPv4.IPv4OverEthernet");
    ck_assert_str_eq(kraken_schema_name(kraken_node_extension_schema(n, 1)), "PXE.Client");
    ck_assert_str_eq(kraken_schema_name(kraken_node_extension_schema(n, 2)), "Powerman.Control");
    ck_assert_ptr_null(kraken_node_extension_schema(n, 3));

    const kraken_field *ef = node_field(KRAKEN_NODE_F_EXTENSIONS);
    const kraken_list *el = n->rec.slots[KRAKEN_NODE_F_EXTENSIONS].list;
    const char *url = "type.googleapis.com/PXE.Client";
    ck_assert_ptr_eq(kraken__list_find_keyed(ef, el, url, strlen(url)), &el->items[1]);
    ck_assert_ptr_eq(kraken__list_find_keyed(ef, el, "PXE.Client", 10), &el->items[1]);
    ck_assert_ptr_eq(kraken__list_find_keyed(ef, el, "PXE.Client/State", 10), &el->items[1]);
    ck_assert_ptr_null(kraken__list_find_keyed(ef, el, "TestModule.Config", 10));
    ck_assert_ptr_null(kraken__list_find_keyed(ef, el, "PXE", 3));
    ck_assert_ptr_null(kraken__list_find_keyed(ef, NULL, "PXE.Client", 10));

    const kraken_schema *svc = kraken__service_schema();
    kraken_record *pxe = keyed_insert(n, KRAKEN_NODE_F_SERVICES, "pxe", svc);
    keyed_insert(n, KRAKEN_NODE_F_SERVICES, "alpha", svc);
    keyed_insert(n, KRAKEN_NODE_F_SERVICES, "zeta", svc);
    ck_assert_ptr_eq(keyed_insert(n, KRAKEN_NODE_F_SERVICES, "pxe", svc), pxe);
    ck_assert_uint_eq(kraken_node_service_count(n), 3);
    ck_assert_str_eq(kraken_node_service_id(n, 0), "alpha");
    ck_assert_str_eq(kraken_node_service_id(n, 1), "pxe");
    ck_assert_str_eq(kraken_node_service_id(n, 2), "zeta");
    ck_assert_ptr_null(kraken_node_service_id(n, 3));
    const kraken_field *sf = node_field(KRAKEN_NODE_F_SERVICES);
    const kraken_list *sl = n->rec.slots[KRAKEN_NODE_F_SERVICES].list;
    ck_assert_ptr_eq(kraken__list_find_keyed(sf, sl, "pxe/State", 3)->rec, pxe);
    ck_assert_ptr_null(kraken__list_find_keyed(sf, sl, "px", 2));
    ck_assert_str_eq(kraken__list_item_key(sf, &sl->items[2]), "zeta");

    /* Polymorphic service config holds any registered record. */
    kraken_record *cfg = kraken__record_new(kraken_schema_find("TestModule.Config"));
    set_parsed(cfg, "srv_ip", "192.168.0.1");
    pxe->slots[KRAKEN_SVC_F_CONFIG].rec = cfg;
    set_parsed(pxe, "state", "RUN");
    kraken_node *copy;
    ck_assert_int_eq(kraken_node_copy(&copy, n), 0);
    ck_assert(kraken_node_equal(n, copy));
    ck_assert_uint_eq(kraken_node_service_count(copy), 3);

    /* Removing from keyed lists keeps the order and frees the element. */
    kraken__list_remove(sf, n->rec.slots[KRAKEN_NODE_F_SERVICES].list, 1);
    ck_assert_uint_eq(kraken_node_service_count(n), 2);
    ck_assert_str_eq(kraken_node_service_id(n, 1), "zeta");
    ck_assert(!kraken_node_equal(n, copy));
    kraken__list_remove(sf, n->rec.slots[KRAKEN_NODE_F_SERVICES].list, 7); /* out of range: no-op */
    ck_assert_uint_eq(kraken_node_service_count(n), 2);
    kraken_node_free(copy);
    kraken_node_free(n);
}
END_TEST

START_TEST(maps_sorted_and_keyed_by_length)
{
    const kraken_field *tags = NULL;
    static const kraken_field_def defs[] = {
        KRAKEN_FIELD("tags", 1, KRAKEN_T_MAP, .elem_type = KRAKEN_T_STRING),
        KRAKEN_FIELD("nums", 2, KRAKEN_T_LIST, .elem_type = KRAKEN_T_INT32)};
    const kraken_schema *s;
    ck_assert_int_eq(kraken_schema_register("TestNode.Tags", defs, 2, &s), 0);
    tags = &s->fields[0];
    kraken_map *m = NULL;
    static const char *keys[] = {"m", "b", "z", "a", "mm", ""};
    for (size_t i = 0; i < N(keys); i++) {
        kraken_map_entry *e = kraken__map_insert(&m, keys[i], strlen(keys[i]));
        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_null(e->value.s);
        e->value.s = strdup(keys[i]);
    }
    ck_assert_uint_eq(m->n, N(keys));
    static const char *sorted[] = {"", "a", "b", "m", "mm", "z"};
    for (size_t i = 0; i < N(sorted); i++)
        ck_assert_str_eq(m->entries[i].key, sorted[i]);
    /* Existing keys are found, not duplicated; lookups use only len bytes. */
    ck_assert_ptr_eq(kraken__map_insert(&m, "mmm", 2), &m->entries[4]);
    ck_assert_uint_eq(m->n, N(keys));
    ck_assert_ptr_eq(kraken__map_find(m, "m/x", 1), &m->entries[3]);
    ck_assert_ptr_null(kraken__map_find(m, "c", 1));
    ck_assert_ptr_null(kraken__map_find(NULL, "a", 1));
    kraken__map_remove(tags, m, "b", 1);
    kraken__map_remove(tags, m, "nope", 4);
    ck_assert_uint_eq(m->n, N(keys) - 1);
    ck_assert_str_eq(m->entries[2].key, "m");

    kraken_slot a = {.map = m}, b;
    ck_assert_int_eq(kraken__slot_copy(tags, KRAKEN_T_MAP, &b, &a), 0);
    ck_assert(kraken__slot_equal(tags, KRAKEN_T_MAP, &a, &b));
    free(b.map->entries[0].value.s); /* "" -> "x" */
    b.map->entries[0].value.s = strdup("x");
    ck_assert(!kraken__slot_equal(tags, KRAKEN_T_MAP, &a, &b));
    kraken__slot_free(tags, KRAKEN_T_MAP, &b);
    ck_assert_ptr_null(b.map);

    /* Zero-valued entries count as absent. */
    kraken_map *z = NULL;
    kraken__map_insert(&z, "only", 4);
    kraken_slot zs = {.map = z}, none = {.map = NULL};
    ck_assert(kraken__slot_equal(tags, KRAKEN_T_MAP, &zs, &none));
    ck_assert(!kraken__slot_is_zero(KRAKEN_T_MAP, &zs));
    ck_assert(kraken__slot_is_zero_deep(tags, KRAKEN_T_MAP, &zs));
    kraken__slot_free(tags, KRAKEN_T_MAP, &zs);
    kraken__slot_free(tags, KRAKEN_T_MAP, &a);

    /* Index lists: trailing zero elements count as absent. */
    const kraken_field *nums = &s->fields[1];
    kraken_list *l = NULL;
    kraken__list_insert(&l, 0)->i = 5;
    kraken__list_insert(&l, 5); /* past the end: appended */
    kraken_list *l2 = NULL;
    kraken__list_insert(&l2, 0)->i = 5;
    kraken_slot la = {.list = l}, lb = {.list = l2};
    ck_assert_uint_eq(l->n, 2);
    ck_assert(kraken__slot_equal(nums, KRAKEN_T_LIST, &la, &lb));
    kraken__list_insert(&la.list, 0)->i = 0; /* leading zero is significant; the list may move */
    ck_assert(!kraken__slot_equal(nums, KRAKEN_T_LIST, &la, &lb));
    kraken__slot_free(nums, KRAKEN_T_LIST, &la);
    kraken__slot_free(nums, KRAKEN_T_LIST, &lb);
}
END_TEST

START_TEST(zero_values_equal_absent)
{
    kraken_node *a, *b;
    ck_assert_int_eq(kraken_node_new(&a, NULL), 0);
    ck_assert_int_eq(kraken_node_new(&b, NULL), 0);
    /* An empty extension equals no extension. */
    keyed_insert(b, KRAKEN_NODE_F_EXTENSIONS, "PXE.Client", kraken_schema_find("PXE.Client"));
    ck_assert_uint_eq(kraken_node_extension_count(b), 1);
    ck_assert(kraken_node_equal(a, b));
    ck_assert(kraken_node_equal(b, a));
    /* ... but one with a value does not. */
    kraken_record *pxe = b->rec.slots[KRAKEN_NODE_F_EXTENSIONS].list->items[0].rec;
    set_parsed(pxe, "state", "WAIT");
    ck_assert(!kraken_node_equal(a, b));
    set_parsed(pxe, "state", "NONE");
    ck_assert(kraken_node_equal(a, b));
    /* An empty string equals an unset one. */
    b->rec.slots[KRAKEN_NODE_F_ARCH].s = strdup("");
    ck_assert(kraken_node_equal(a, b));
    /* Absent and present-but-empty records are equal; different schemas are not. */
    kraken_record *e1 = kraken__record_new(kraken_schema_find("IPv4.IPv4"));
    kraken_record *e2 = kraken__record_new(kraken_schema_find("IPv4.DNSA"));
    ck_assert(kraken__record_equal(e1, NULL));
    ck_assert(kraken__record_equal(NULL, e1));
    ck_assert(!kraken__record_equal(e1, e2));
    ck_assert(kraken__record_is_empty(NULL));
    kraken__record_free(e1);
    kraken__record_free(e2);
    kraken__record_free(NULL);
    ck_assert_ptr_null(kraken__record_new(NULL));
    ck_assert_ptr_null(kraken__record_copy(NULL));
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

/*
 * Bytes in use by the program's allocations: glibc's statistics, or ASan's own count (which
 * leaves out malloc's overhead) in a sanitizer build. Under valgrind neither exists: the test
 * is skipped, visibly.
 */
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
static bool heap_in_use(size_t *out)
{
    *out = __sanitizer_get_current_allocated_bytes();
    return true;
}
#else
static bool heap_in_use(size_t *out)
{
    /* A replaced allocator (valgrind) keeps no glibc statistics: they do not move. The
     * volatile pointer keeps the compiler from removing the malloc/free pair (it did). */
    struct mallinfo2 before = mallinfo2();
    void *volatile probe = malloc(4000);
    struct mallinfo2 after = mallinfo2();
    free(probe);
    if (after.uordblks == before.uordblks)
        return false;
    struct mallinfo2 now = mallinfo2();
    *out = now.uordblks + now.hblkhd;
    return true;
}
#endif

/* Memory cost of a node with one IPv4 interface, built and copied (under 1 KiB each). */
START_TEST(memory_per_node)
{
    enum { COUNT = 10000 };
    size_t before, after;
    if (!heap_in_use(&before))
        KRAKEN_SKIP("no heap statistics under this allocator (valgrind)");
    kraken_node **nodes = calloc(COUNT, sizeof(*nodes));
    ck_assert_ptr_nonnull(nodes);
    kraken_node_free(make_node("4afd9a3e-1111-4222-8333-444455556666", "10.0.0.1")); /* warm up */
    ck_assert(heap_in_use(&before));
    for (int i = 0; i < COUNT; i++)
        nodes[i] = make_node("4afd9a3e-1111-4222-8333-444455556666", "10.0.0.1");
    ck_assert(heap_in_use(&after));
    size_t used = after - before;
    /* Copies (what a store keeps) have exact-size arrays. */
    kraken_node **copies = calloc(COUNT, sizeof(*copies));
    ck_assert_ptr_nonnull(copies);
    ck_assert(heap_in_use(&before));
    for (int i = 0; i < COUNT; i++)
        ck_assert_int_eq(kraken_node_copy(&copies[i], nodes[i]), 0);
    ck_assert(heap_in_use(&after));
    size_t used_copies = after - before;
    for (int i = 0; i < COUNT; i++) {
        kraken_node_free(nodes[i]);
        kraken_node_free(copies[i]);
    }
    free(nodes);
    free(copies);
    fprintf(stderr, "# node with one-iface IPv4 extension: %zu bytes built, %zu copied\n",
            used / COUNT, used_copies / COUNT);
    /* a node is more than its fixed part; the 1 KiB bound is the memory goal */
    ck_assert_uint_gt(used / COUNT, sizeof(kraken_node));
    ck_assert_uint_gt(used_copies / COUNT, sizeof(kraken_node));
    ck_assert_uint_lt(used / COUNT, 1024);
    ck_assert_uint_lt(used_copies / COUNT, 1024);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("node");
    TCase *tc = tcase_create("node");
    tcase_add_test(tc, layout_sizes);
    tcase_add_test(tc, node_new_id_free);
    tcase_add_test(tc, node_copy_is_deep_and_equal);
    tcase_add_test(tc, extensions_and_services);
    tcase_add_test(tc, maps_sorted_and_keyed_by_length);
    tcase_add_test(tc, zero_values_equal_absent);
    tcase_add_test(tc, memory_per_node);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
