/* SPDX-License-Identifier: BSD-3-Clause */
/* Node diffs: one change per differing leaf, canonical URLs that read back, zero == absent. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "internal.h"

#define IP4 "type.googleapis.com/IPv4.IPv4OverEthernet"
#define PXE "type.googleapis.com/PXE.Client"
#define PXECFG "/Services/pxe/Config/type.googleapis.com/TestModule.Config"
#define PMCFG "/Services/pxe/Config/type.googleapis.com/Powerman.Control"

static kraken_node *new_node(void)
{
    kraken_node *n = NULL;
    kraken_uuid id;
    ck_assert_int_eq(kraken_uuid_parse(&id, "4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10"), 0);
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    return n;
}

static kraken_node *copy(const kraken_node *n)
{
    kraken_node *c = NULL;
    ck_assert_int_eq(kraken_node_copy(&c, n), 0);
    return c;
}

static void set_text(kraken_node *n, const char *url, const char *text)
{
    int rc = kraken_node_set_text(n, url, text);
    ck_assert_msg(rc == 0, "set %s = %s: %s", url, text, kraken_error_last());
}

static char *fmt(const kraken_value *v)
{
    char *s = NULL;
    ck_assert_int_eq(kraken_value_format(v, &s), 0);
    return s;
}

/*
 * Diff @p a -> @p b, check that every change reads back (old from a, new from b, NONE meaning
 * zero/absent), and return the changes as "url old->new" lines.
 */
static char *diff_text(const kraken_node *a, const kraken_node *b, size_t *n_out)
{
    kraken_change *ch = NULL;
    size_t n = 99;
    ck_assert_int_eq(kraken_node_diff(a, b, &ch, &n), 0);
    size_t cap = 64, len = 0;
    char *text = calloc(1, cap);
    for (size_t i = 0; i < n; i++) {
        const kraken_node *sides[2] = {a, b};
        const kraken_value *vals[2] = {&ch[i].old_value, &ch[i].new_value};
        ck_assert(!kraken_value_equal(vals[0], vals[1]));
        for (int s = 0; s < 2; s++) {
            if (vals[s]->type == KRAKEN_T_NONE)
                continue; /* absent on that side: may not resolve there */
            kraken_value back = KRAKEN_VALUE_INIT;
            int rc = kraken_node_get(sides[s], ch[i].url, &back);
            ck_assert_msg(rc == 0, "diff URL %s does not read back: %s", ch[i].url,
                          kraken_error_last());
            ck_assert_msg(kraken_value_equal(&back, vals[s]), "diff URL %s reads another value",
                          ch[i].url);
            ck_assert(!kraken_value_is_zero(vals[s]));
            kraken_value_clear(&back);
        }
        /* The URL is canonical. */
        char *canon = NULL;
        ck_assert_int_eq(kraken_url_canonical(ch[i].url, &canon), 0);
        ck_assert_str_eq(canon, ch[i].url);
        free(canon);
        char *o = fmt(vals[0]), *nv = fmt(vals[1]);
        size_t need = len + strlen(ch[i].url) + strlen(o) + strlen(nv) + 8;
        if (need > cap) {
            cap = need * 2;
            text = realloc(text, cap);
        }
        len += (size_t)sprintf(text + len, "%s %s->%s\n", ch[i].url, o, nv);
        free(o);
        free(nv);
    }
    kraken_changes_free(ch, n);
    if (n_out)
        *n_out = n;
    return text;
}

static void expect_diff(const kraken_node *a, const kraken_node *b, const char *want)
{
    char *got = diff_text(a, b, NULL);
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(equal_nodes_no_changes)
{
    kraken_node *a = new_node();
    set_text(a, "/PhysState", "POWER_ON");
    set_text(a, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.1");
    set_text(a, "/Services/pxe/State", "RUN");
    set_text(a, PXECFG "/TftpDir", "/tftp");
    kraken_node *b = copy(a);
    kraken_change *ch = (kraken_change *)1;
    size_t n = 5;
    ck_assert_int_eq(kraken_node_diff(a, b, &ch, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ch);
    ck_assert_int_eq(kraken_node_diff(a, a, &ch, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kraken_node_diff(NULL, NULL, &ch, &n), 0);
    ck_assert_uint_eq(n, 0);
    kraken_changes_free(NULL, 0);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(absent_equals_zero)
{
    kraken_node *a = new_node(), *b = new_node();
    /* Zero values stored explicitly, empty extension/service/map entry: nothing differs. */
    set_text(b, "/Arch", "");
    set_text(b, "/PhysState", "PHYS_UNKNOWN");
    set_text(b, PXE "/State", "NONE");
    set_text(b, IP4 "/Ifaces/eth0/Eth/Mtu", "0");
    expect_diff(a, b, "");
    expect_diff(b, a, "");
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(core_leaf_changes)
{
    kraken_node *a = new_node();
    set_text(a, "/PhysState", "POWER_OFF");
    set_text(a, "/Arch", "amd64");
    kraken_node *b = copy(a);
    set_text(b, "/PhysState", "POWER_ON");
    set_text(b, "/RunState", "INIT");
    set_text(b, "/Arch", "");
    set_text(b, "/Platform", "sim");
    /* Schema field order; zero shows as NONE (formatted ""). */
    expect_diff(a, b,
                "/RunState ->INIT\n"
                "/PhysState POWER_OFF->POWER_ON\n"
                "/Arch amd64->\n"
                "/Platform ->sim\n");
    kraken_change *ch;
    size_t n;
    ck_assert_int_eq(kraken_node_diff(a, b, &ch, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ch[0].old_value.type, KRAKEN_T_NONE);
    ck_assert_int_eq(ch[0].new_value.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(ch[2].new_value.type, KRAKEN_T_NONE);
    kraken_changes_free(ch, n);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(extension_add_remove_and_leaves)
{
    kraken_node *a = new_node();
    kraken_node *b = copy(a);
    set_text(b, IP4 "/Ifaces/kraken/Eth/Mtu", "1500");
    set_text(b, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.1");
    set_text(b, IP4 "/Hostname/Hostname", "kr1");
    set_text(b, PXE "/State", "WAIT");
    const char *added = IP4 "/Ifaces/kraken/Eth/Mtu ->1500\n" IP4 "/Ifaces/kraken/Ip/Ip ->10.0.0.1\n"
                            IP4 "/Hostname/Hostname ->kr1\n" PXE "/State ->WAIT\n";
    expect_diff(a, b, added);
    const char *removed = IP4 "/Ifaces/kraken/Eth/Mtu 1500->\n" IP4 "/Ifaces/kraken/Ip/Ip 10.0.0.1->\n"
                              IP4 "/Hostname/Hostname kr1->\n" PXE "/State WAIT->\n";
    expect_diff(b, a, removed);
    char want[1024];
    snprintf(want, sizeof want, "/Id ->4afd5b83-2a2b-4b2a-9c3e-1c6d2e0e7a10\n%s", added);
    expect_diff(NULL, b, want); /* NULL is the empty node */

    /* One leaf inside an extension. */
    kraken_node *c = copy(b);
    set_text(c, PXE "/State", "INIT");
    set_text(c, IP4 "/Ifaces/kraken/Eth/Control", "true");
    expect_diff(b, c, IP4 "/Ifaces/kraken/Eth/Control ->true\n" PXE "/State WAIT->INIT\n");
    kraken_node_free(a);
    kraken_node_free(b);
    kraken_node_free(c);
}
END_TEST

START_TEST(map_keys)
{
    kraken_node *a = new_node();
    set_text(a, IP4 "/Ifaces/kraken/Ip/Ip", "10.0.0.1");
    set_text(a, IP4 "/Ifaces/b/Ip/Ip", "10.0.0.2");
    kraken_node *b = copy(a);
    set_text(b, IP4 "/Ifaces/a/Ip/Ip", "10.0.0.3");
    ck_assert_int_eq(kraken_node_unset(b, IP4 "/Ifaces/b"), 0);
    set_text(b, IP4 "/Ifaces/c/Eth/Iface", "eth2");
    /* Sorted by key: a (added), b (removed), c (added); kraken unchanged. */
    expect_diff(a, b,
                IP4 "/Ifaces/a/Ip/Ip ->10.0.0.3\n" IP4 "/Ifaces/b/Ip/Ip 10.0.0.2->\n"
                IP4 "/Ifaces/c/Eth/Iface ->eth2\n");
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(index_lists)
{
    kraken_node *a = new_node();
    set_text(a, IP4 "/Routes/0/Ip", "10.0.0.1");
    kraken_node *b = copy(a);
    set_text(b, IP4 "/Routes/0/Subnet", "255.0.0.0");
    set_text(b, IP4 "/Routes/1/Ip", "10.0.0.2");
    expect_diff(a, b, IP4 "/Routes/0/Subnet ->255.0.0.0\n" IP4 "/Routes/1/Ip ->10.0.0.2\n");
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(services_and_configs)
{
    kraken_node *a = new_node();
    set_text(a, "/Services/pxe/State", "RUN");
    set_text(a, "/Services/pxe/Module", "pxe");
    set_text(a, PXECFG "/TftpDir", "/tftp");
    kraken_node *b = copy(a);
    set_text(b, "/Services/pxe/State", "STOP");
    set_text(b, "/Services/pxe/Config/SrvIp", "10.0.0.9");
    set_text(b, "/Services/alpha/State", "INIT");
    expect_diff(a, b,
                "/Services/alpha/Id ->alpha\n"
                "/Services/alpha/State ->INIT\n"
                "/Services/pxe/State RUN->STOP\n" PXECFG "/SrvIp ->10.0.0.9\n");

    /* The config changes type: every old leaf goes, every new one comes. */
    kraken_node *c = copy(a);
    ck_assert_int_eq(kraken_node_unset(c, PXECFG), 0);
    set_text(c, PMCFG "/ApiServer", "pm:10101");
    set_text(c, PMCFG "/NodeName", "n1");
    expect_diff(a, c,
                PXECFG "/TftpDir /tftp->\n" PMCFG "/ApiServer ->pm:10101\n" PMCFG
                       "/NodeName ->n1\n");

    /* Whole service removed. */
    kraken_node *d = copy(a);
    ck_assert_int_eq(kraken_node_unset(d, "/Services/pxe"), 0);
    expect_diff(a, d,
                "/Services/pxe/Id pxe->\n"
                "/Services/pxe/Module pxe->\n"
                "/Services/pxe/State RUN->\n" PXECFG "/TftpDir /tftp->\n");
    kraken_node_free(a);
    kraken_node_free(b);
    kraken_node_free(c);
    kraken_node_free(d);
}
END_TEST

struct counter {
    size_t n;
    int stop_at;
};

static int count_cb(const char *url, const kraken_value *o, const kraken_value *nv, void *ud)
{
    struct counter *c = ud;
    ck_assert_ptr_nonnull(url);
    ck_assert(!kraken_value_equal(o, nv));
    c->n++;
    return (int)c->n == c->stop_at ? 42 : 0;
}

START_TEST(callback_variant)
{
    kraken_node *a = new_node(), *b = new_node();
    set_text(b, "/PhysState", "POWER_ON");
    set_text(b, "/Arch", "x86");
    set_text(b, PXE "/State", "INIT");
    struct counter c = {0, 0};
    ck_assert_int_eq(kraken__node_diff_each(a, b, count_cb, &c), 0);
    ck_assert_uint_eq(c.n, 3);
    c = (struct counter){0, 2};
    ck_assert_int_eq(kraken__node_diff_each(a, b, count_cb, &c), 42);
    ck_assert_uint_eq(c.n, 2);
    c = (struct counter){0, 0};
    ck_assert_int_eq(kraken__node_diff_each(a, a, count_cb, &c), 0);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_eq(kraken__node_diff_each(a, b, NULL, NULL), KRAKEN_EINVAL);
    kraken_change *ch;
    size_t n;
    ck_assert_int_eq(kraken_node_diff(a, b, NULL, &n), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_node_diff(a, b, &ch, NULL), KRAKEN_EINVAL);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

START_TEST(long_urls)
{
    /* Map keys longer than the diff's stack buffer. */
    kraken_node *a = new_node(), *b = new_node();
    char key[600], url[800];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(url, sizeof url, IP4 "/Ifaces/%s/Ip/Ip", key);
    set_text(b, url, "10.1.2.3");
    size_t n;
    char *text = diff_text(a, b, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_ptr_nonnull(strstr(text, key));
    free(text);
    kraken_node_free(a);
    kraken_node_free(b);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("diff");
    TCase *tc = tcase_create("diff");
    tcase_add_test(tc, equal_nodes_no_changes);
    tcase_add_test(tc, absent_equals_zero);
    tcase_add_test(tc, core_leaf_changes);
    tcase_add_test(tc, extension_add_remove_and_leaves);
    tcase_add_test(tc, map_keys);
    tcase_add_test(tc, index_lists);
    tcase_add_test(tc, services_and_configs);
    tcase_add_test(tc, callback_variant);
    tcase_add_test(tc, long_urls);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
