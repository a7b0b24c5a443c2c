/* SPDX-License-Identifier: BSD-3-Clause */
/* Mutation declarations and the mutation set (SPEC 4.1). */
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define PXE_STATE "type.googleapis.com/PXE.Client/State"

static kraken_mutation_set *new_set(void)
{
    kraken_mutation_set *set = NULL;
    ck_assert_int_eq(kraken_mutation_set_new(&set), 0);
    ck_assert_ptr_nonnull(set);
    return set;
}

/* A valid declaration to start from: power OFFtoON on platform sim. */
typedef struct decl_buf {
    kraken_mutate mutates[2];
    kraken_fact requires[2];
    kraken_fact excludes[2];
    kraken_mutation_decl decl;
} decl_buf;

static void decl_init(decl_buf *b)
{
    memset(b, 0, sizeof *b);
    b->mutates[0] = (kraken_mutate){"/PhysState", "POWER_OFF", "POWER_ON"};
    b->requires[0] = (kraken_fact){"/Platform", "sim"};
    b->decl = (kraken_mutation_decl){
        .version = KRAKEN_MUTATION_DECL_VERSION,
        .id = "OFFtoON",
        .mutates = b->mutates,
        .n_mutates = 1,
        .requires = b->requires,
        .n_requires = 1,
        .excludes = b->excludes,
        .n_excludes = 0,
        .context = KRAKEN_CONTEXT_CHILD,
        .timeout_ms = 10000,
        .fail_to = {"/PhysState", "PHYS_HANG"},
    };
}

/* ---- lifecycle ---------------------------------------------------------- */

START_TEST(new_free_count)
{
    ck_assert_int_eq(kraken_mutation_set_new(NULL), KRAKEN_EINVAL);
    kraken_mutation_set *set = new_set();
    ck_assert_uint_eq(kraken_mutation_set_count(set), 0);
    ck_assert_uint_eq(kraken_mutation_set_count(NULL), 0);
    kraken_mutation_set_free(set);
    kraken_mutation_set_free(NULL);
}
END_TEST

START_TEST(add_compiles_declaration)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    uint64_t gen = kraken__mutation_set_generation(set);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    ck_assert_uint_eq(kraken_mutation_set_count(set), 1);
    ck_assert_uint_ne(kraken__mutation_set_generation(set), gen);

    const kraken_mutation *m = kraken__mutation_find(set, "power", "OFFtoON");
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->service, "power");
    ck_assert_str_eq(m->id, "OFFtoON");
    ck_assert_int_eq(m->context, KRAKEN_CONTEXT_CHILD);
    ck_assert_uint_eq(m->timeout_ms, 10000);
    ck_assert_uint_eq(m->cost, 1); /* 0 = default */
    ck_assert_uint_eq(m->n_mutates, 1);
    ck_assert_str_eq(m->mutates[0].u->text, "/PhysState");
    ck_assert_int_eq(m->mutates[0].from.type, KRAKEN_T_ENUM);
    ck_assert_int_eq(m->mutates[0].from.v.i, KRAKEN_PHYS_POWER_OFF);
    ck_assert_int_eq(m->mutates[0].to.v.i, KRAKEN_PHYS_POWER_ON);
    ck_assert_uint_eq(m->n_requires, 1);
    ck_assert_int_eq(m->requires[0].value.type, KRAKEN_T_STRING);
    ck_assert_str_eq(m->requires[0].value.v.str.data, "sim");
    ck_assert(m->has_fail_to);
    ck_assert_str_eq(m->fail_to.u->text, "/PhysState");
    ck_assert_int_eq(m->fail_to.value.v.i, KRAKEN_PHYS_HANG);

    /* Roles: /PhysState is a mutator URL, /Platform a static one. */
    const kraken_murl *phys = kraken__mutation_set_find_url(set, "/PhysState");
    const kraken_murl *plat = kraken__mutation_set_find_url(set, "/Platform");
    ck_assert_ptr_nonnull(phys);
    ck_assert_ptr_nonnull(plat);
    ck_assert_uint_eq(phys->n_mutating, 1);
    ck_assert_uint_eq(plat->n_mutating, 0);
    ck_assert_uint_eq(plat->n_facts, 1);
    ck_assert_ptr_null(kraken__mutation_set_find_url(set, "/RunState"));
    ck_assert_ptr_null(kraken__mutation_find(set, "power", "nope"));
    ck_assert_ptr_null(kraken__mutation_find(set, "other", "OFFtoON"));
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(declaration_is_copied)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    char id[16] = "OFFtoON", url[32] = "/PhysState", to[16] = "POWER_ON";
    b.decl.id = id;
    b.mutates[0].url = url;
    b.mutates[0].to = to;
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    strcpy(id, "XXXXXXX");
    strcpy(url, "/RunState");
    strcpy(to, "SYNC");
    memset(&b, 0, sizeof b);
    const kraken_mutation *m = kraken__mutation_find(set, "power", "OFFtoON");
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->mutates[0].u->text, "/PhysState");
    ck_assert_int_eq(m->mutates[0].to.v.i, KRAKEN_PHYS_POWER_ON);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(url_spellings_are_one_url)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    decl_init(&b);
    b.decl.id = "ONtoOFF";
    b.mutates[0] = (kraken_mutate){"phys_state", "POWER_ON", "POWER_OFF"};
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    const kraken_mutation *a = kraken__mutation_find(set, "power", "OFFtoON");
    const kraken_mutation *c = kraken__mutation_find(set, "power", "ONtoOFF");
    ck_assert_ptr_eq(a->mutates[0].u, c->mutates[0].u);
    ck_assert_uint_eq(a->mutates[0].u->n_mutating, 2);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(remove_service)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    b.decl.id = "other";
    b.mutates[0] = (kraken_mutate){PXE_STATE, "NONE", "WAIT"};
    b.requires[0] = (kraken_fact){"/PhysState", "POWER_ON"};
    ck_assert_int_eq(kraken_mutation_set_add(set, "pxe", &b.decl), 0);
    ck_assert_uint_eq(kraken_mutation_set_count(set), 2);
    const kraken_murl *phys = kraken__mutation_set_find_url(set, "/PhysState");
    ck_assert_uint_eq(phys->n_mutating, 1);
    ck_assert_uint_eq(phys->n_facts, 1);

    uint64_t gen = kraken__mutation_set_generation(set);
    ck_assert_int_eq(kraken_mutation_set_remove_service(set, "power"), 0);
    ck_assert_uint_eq(kraken_mutation_set_count(set), 1);
    ck_assert_uint_ne(kraken__mutation_set_generation(set), gen);
    ck_assert_ptr_null(kraken__mutation_find(set, "power", "OFFtoON"));
    ck_assert_ptr_nonnull(kraken__mutation_find(set, "pxe", "other"));
    ck_assert_uint_eq(phys->n_mutating, 0); /* now a static URL */
    ck_assert_uint_eq(phys->n_facts, 1);

    /* Removing an absent service changes nothing. */
    gen = kraken__mutation_set_generation(set);
    ck_assert_int_eq(kraken_mutation_set_remove_service(set, "power"), 0);
    ck_assert_uint_eq(kraken__mutation_set_generation(set), gen);
    ck_assert_int_eq(kraken_mutation_set_remove_service(NULL, "x"), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_mutation_set_remove_service(set, NULL), KRAKEN_EINVAL);

    /* The id can be declared again once removed. */
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    ck_assert_uint_eq(kraken_mutation_set_count(set), 2);
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- refused declarations ----------------------------------------------- */

/* Try @p decl; it must fail with @p code, name @p needle, and change nothing. */
static void expect_refused(kraken_mutation_set *set, const char *service,
                           const kraken_mutation_decl *decl, int code, const char *needle)
{
    size_t count = kraken_mutation_set_count(set);
    size_t n_urls = set ? set->n_urls : 0;
    uint64_t gen = kraken__mutation_set_generation(set);
    int rc = kraken_mutation_set_add(set, service, decl);
    ck_assert_msg(rc == code, "expected %s, got %s (%s)", kraken_err_name(code),
                  kraken_err_name(rc), kraken_error_last());
    if (needle)
        ck_assert_msg(strstr(kraken_error_last(), needle), "message '%s' lacks '%s'",
                      kraken_error_last(), needle);
    ck_assert_uint_eq(kraken_mutation_set_count(set), count);
    ck_assert_uint_eq(kraken__mutation_set_generation(set), gen);
    if (set)
        ck_assert_uint_eq(set->n_urls, n_urls);
}

static kraken_mutation_set *set_with_one(void)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    return set;
}

START_TEST(refuse_null_arguments)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    expect_refused(NULL, "power", &b.decl, KRAKEN_EINVAL, NULL);
    expect_refused(set, NULL, &b.decl, KRAKEN_EINVAL, NULL);
    expect_refused(set, "", &b.decl, KRAKEN_EINVAL, NULL);
    expect_refused(set, "power", NULL, KRAKEN_EINVAL, NULL);
    b.decl.id = NULL;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power");
    b.decl.id = "";
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_no_mutates)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "empty";
    b.decl.n_mutates = 0;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power/empty");
    b.decl.n_mutates = 1;
    b.decl.mutates = NULL;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power/empty");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_duplicate_id)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    expect_refused(set, "power", &b.decl, KRAKEN_EEXISTS, "power/OFFtoON");
    /* The same id in another service is fine. */
    ck_assert_int_eq(kraken_mutation_set_add(set, "power2", &b.decl), 0);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_unknown_url)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[0].url = "/NoSuchField";
    expect_refused(set, "power", &b.decl, KRAKEN_EPARSE, "/NoSuchField");
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "power/bad"));
    decl_init(&b);
    b.decl.id = "bad";
    b.requires[0].url = "type.googleapis.com/No.Such/Field";
    expect_refused(set, "power", &b.decl, KRAKEN_EPARSE, "No.Such");
    decl_init(&b);
    b.decl.id = "bad";
    b.decl.fail_to.url = "/Nope";
    expect_refused(set, "power", &b.decl, KRAKEN_EPARSE, "fail_to");
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[0].url = NULL;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power/bad");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_bad_value)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[0].to = "POWER_MAYBE";
    expect_refused(set, "power", &b.decl, KRAKEN_ETYPE, "POWER_MAYBE");
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/PhysState"));
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "power/bad"));
    decl_init(&b);
    b.decl.id = "bad";
    b.requires[0] = (kraken_fact){"/RunState", "SINK"};
    expect_refused(set, "power", &b.decl, KRAKEN_ETYPE, "/RunState");
    decl_init(&b);
    b.decl.id = "bad";
    b.excludes[0] = (kraken_fact){"type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip",
                                  "10.0.0.300"};
    b.decl.n_excludes = 1;
    int rc = kraken_mutation_set_add(set, "power", &b.decl);
    ck_assert(rc == KRAKEN_EPARSE || rc == KRAKEN_ETYPE);
    expect_refused(set, "power", &b.decl, rc, "10.0.0.300");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_mutated_url_in_requires_or_excludes)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "bad";
    b.requires[0] = (kraken_fact){"/physState", "POWER_OFF"}; /* another spelling */
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "/PhysState");
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "requires"));
    decl_init(&b);
    b.decl.id = "bad";
    b.excludes[0] = (kraken_fact){"/PhysState", "PHYS_HANG"};
    b.decl.n_excludes = 1;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "excludes");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_from_equals_to)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[0] = (kraken_mutate){"/PhysState", "POWER_ON", "2"}; /* same member by number */
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power/bad");
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/PhysState"));
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[1] = (kraken_mutate){"/PhysState", "POWER_ON", "POWER_OFF"};
    b.decl.n_mutates = 2;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "mutated twice");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(refuse_unplannable_url_and_context)
{
    kraken_mutation_set *set = set_with_one();
    decl_buf b;
    decl_init(&b);
    b.decl.id = "bad";
    b.mutates[0] = (kraken_mutate){"/Services", NULL, "x"};
    expect_refused(set, "power", &b.decl, KRAKEN_ETYPE, "/Services");
    decl_init(&b);
    b.decl.id = "bad";
    b.decl.context = (kraken_context)7;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "context");
    decl_init(&b);
    b.decl.id = "bad";
    b.decl.n_requires = 1;
    b.decl.requires = NULL;
    expect_refused(set, "power", &b.decl, KRAKEN_EINVAL, "power/bad");
    kraken_mutation_set_free(set);
}
END_TEST

/* A refused declaration that named new URLs leaves no trace of them. */
START_TEST(refused_leaves_no_urls)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    b.requires[0] = (kraken_fact){"/Arch", "amd64"};
    b.mutates[0].to = "POWER_MAYBE";
    expect_refused(set, "power", &b.decl, KRAKEN_ETYPE, NULL);
    ck_assert_uint_eq(set->n_urls, 0);
    ck_assert_ptr_null(kraken__mutation_set_find_url(set, "/Arch"));
    kraken_mutation_set_free(set);
}
END_TEST

/* ---- engine helpers ----------------------------------------------------- */

START_TEST(mutation_done)
{
    kraken_mutation_set *set = set_with_one();
    const kraken_mutation *m = kraken__mutation_find(set, "power", "OFFtoON");
    kraken_node *dsc;
    ck_assert_int_eq(kraken_node_new(&dsc, NULL), 0);
    ck_assert(!kraken__mutation_done(m, dsc));
    ck_assert_int_eq(kraken_node_set_text(dsc, "/PhysState", "POWER_OFF"), 0);
    ck_assert(!kraken__mutation_done(m, dsc));
    ck_assert_int_eq(kraken_node_set_text(dsc, "/PhysState", "POWER_ON"), 0);
    ck_assert(kraken__mutation_done(m, dsc));
    ck_assert(!kraken__mutation_done(NULL, dsc));
    ck_assert(!kraken__mutation_done(m, NULL));
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(slot_matching)
{
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, NULL), 0);
    kraken_url *u;
    ck_assert_int_eq(kraken__url_compile("/Platform", &u), 0);
    kraken_value sim = kraken_value_string("sim"), empty = kraken_value_string("");
    ck_assert(kraken__mslot_matches(KRAKEN_T_STRING, kraken__url_peek(u, n), &empty));
    ck_assert(!kraken__mslot_matches(KRAKEN_T_STRING, kraken__url_peek(u, n), &sim));
    ck_assert_int_eq(kraken_node_set_text(n, "/Platform", "sim"), 0);
    ck_assert(kraken__mslot_matches(KRAKEN_T_STRING, kraken__url_peek(u, n), &sim));
    ck_assert(!kraken__mslot_matches(KRAKEN_T_STRING, kraken__url_peek(u, n), &empty));
    kraken__url_free(u);

    ck_assert_int_eq(kraken__url_compile(
                         "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip", &u),
                     0);
    kraken_value ip = KRAKEN_VALUE_INIT;
    ck_assert_int_eq(kraken_url_parse_value(kraken__url_text(u), "10.0.0.7", &ip), 0);
    ck_assert(!kraken__mslot_matches(KRAKEN_T_IPV4, kraken__url_peek(u, n), &ip));
    ck_assert_int_eq(kraken_node_set_text(n, kraken__url_text(u), "10.0.0.7"), 0);
    ck_assert(kraken__mslot_matches(KRAKEN_T_IPV4, kraken__url_peek(u, n), &ip));
    kraken__url_free(u);
    kraken_value_clear(&ip);
    kraken_value_clear(&sim);
    kraken_value_clear(&empty);
    kraken_node_free(n);
}
END_TEST

/* ---- listing, overrides, the planner's diff --------------------------------- */

START_TEST(list_and_lookup)
{
    kraken_mutation_set *set = new_set();
    kraken_mutation_info *all = (kraken_mutation_info *)1;
    size_t n = 7;
    ck_assert_int_eq(kraken_mutation_set_list(set, &all, &n), 0);
    ck_assert_ptr_null(all);
    ck_assert_uint_eq(n, 0);
    /* A designated-initialiser declaration, with a lower-case URL (listed canonical). */
    static const kraken_mutate hang[] = {{"/physState", "PHYS_HANG", "POWER_OFF"}};
    static const kraken_fact sim[] = {{"/Platform", "sim"}};
    static const kraken_fact known[] = {{"/RunState", NULL}};
    kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "HANGtoOFF", KRAKEN_DECL_MUTATES(hang),
                                                       KRAKEN_DECL_REQUIRES(sim),
                                                       KRAKEN_DECL_EXCLUDES(known), .cost = 3);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &d), 0);
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    ck_assert_int_eq(kraken_mutation_set_list(set, &all, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(all[0].mutation_id, "HANGtoOFF"); /* sorted by (service, id) */
    ck_assert_str_eq(all[0].mutates[0].url, "/PhysState");
    ck_assert_str_eq(all[0].mutates[0].from, "PHYS_HANG");
    ck_assert_uint_eq(all[0].n_excludes, 1);
    ck_assert_str_eq(all[0].excludes[0].url, "/RunState");
    ck_assert_str_eq(all[0].excludes[0].value, "UNKNOWN");
    ck_assert_int_eq(all[0].context, KRAKEN_CONTEXT_SELF);
    ck_assert_uint_eq(all[0].cost, 3);
    ck_assert_uint_eq(all[0].timeout_ms, 0);
    ck_assert_ptr_null(all[0].fail_to.url);
    ck_assert_str_eq(all[1].mutation_id, "OFFtoON");
    ck_assert_uint_eq(all[1].cost, 1);
    kraken_mutation_infos_free(all, n);
    kraken_mutation_info info = {.cost = 9};
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "pxe", "OFFtoON", &info), KRAKEN_ENOTFOUND);
    ck_assert_str_eq(kraken_error_last(), "mutation_set_lookup: no mutation pxe/OFFtoON");
    ck_assert_uint_eq(info.cost, 0); /* cleared on failure too */
    ck_assert_int_eq(kraken_mutation_set_lookup(set, NULL, "OFFtoON", &info), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "OFFtoON", NULL), KRAKEN_EINVAL);
    kraken_mutation_set_free(set);
}
END_TEST

/* Overrides given before the declaration apply when it comes; the declared value is kept. */
START_TEST(overrides_before_and_after_declaration)
{
    kraken_mutation_set *set = new_set();
    ck_assert_int_eq(kraken_mutation_set_timeout(set, "power", "OFFtoON", 2500), 0);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "power", "OFFtoON", true), 0);
    uint64_t gen = kraken__mutation_set_generation(set);
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    kraken_mutation_info info;
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "OFFtoON", &info), 0);
    ck_assert_uint_eq(info.timeout_ms, 2500);
    ck_assert_uint_eq(info.declared_timeout_ms, 10000);
    ck_assert(info.disabled);
    kraken_mutation_info_clear(&info);
    /* Enabling changes plans (a new generation); a timeout does not. */
    gen = kraken__mutation_set_generation(set);
    ck_assert_int_eq(kraken_mutation_set_timeout(set, "power", "OFFtoON", 0), 0);
    ck_assert_uint_eq(kraken__mutation_set_generation(set), gen);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "power", "OFFtoON", false), 0);
    ck_assert_uint_gt(kraken__mutation_set_generation(set), gen);
    gen = kraken__mutation_set_generation(set);
    ck_assert_int_eq(kraken_mutation_set_disable(set, "power", "OFFtoON", false), 0);
    ck_assert_uint_eq(kraken__mutation_set_generation(set), gen); /* no change, no replan */
    ck_assert_int_eq(kraken_mutation_set_lookup(set, "power", "OFFtoON", &info), 0);
    ck_assert_uint_eq(info.timeout_ms, 0);
    ck_assert(!info.disabled);
    kraken_mutation_info_clear(&info);
    ck_assert_int_eq(kraken_mutation_set_timeout(set, "power", "", 5), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "mutation_set_timeout: set, service id and mutation id "
                                          "are required");
    kraken_mutation_set_free(set);
}
END_TEST

START_TEST(planner_diff_of_nodes)
{
    kraken_mutation_set *set = new_set();
    decl_buf b;
    decl_init(&b);
    ck_assert_int_eq(kraken_mutation_set_add(set, "power", &b.decl), 0);
    kraken_node *cfg, *dsc;
    ck_assert_int_eq(kraken_node_new(&cfg, NULL), 0);
    ck_assert_int_eq(kraken_node_new(&dsc, NULL), 0);
    ck_assert_int_eq(kraken_node_set_text(cfg, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_node_set_text(cfg, "/Platform", "sim"), 0); /* static: not compared */
    kraken_change *ch;
    size_t n;
    ck_assert_int_eq(kraken_mutation_set_diff(set, cfg, dsc, &ch, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ch[0].url, "/PhysState");
    ck_assert_int_eq(ch[0].old_value.type, KRAKEN_T_NONE);
    ck_assert_int_eq(ch[0].new_value.v.i, KRAKEN_PHYS_POWER_ON);
    kraken_changes_free(ch, n);
    ck_assert_int_eq(kraken_node_set_text(dsc, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_mutation_set_diff(set, cfg, dsc, &ch, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kraken_mutation_set_diff(set, cfg, NULL, &ch, &n), KRAKEN_EINVAL);
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    kraken_mutation_set_free(set);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("mutation");
    TCase *tc = tcase_create("set");
    tcase_add_test(tc, new_free_count);
    tcase_add_test(tc, add_compiles_declaration);
    tcase_add_test(tc, declaration_is_copied);
    tcase_add_test(tc, url_spellings_are_one_url);
    tcase_add_test(tc, remove_service);
    tcase_add_test(tc, list_and_lookup);
    tcase_add_test(tc, overrides_before_and_after_declaration);
    tcase_add_test(tc, planner_diff_of_nodes);
    suite_add_tcase(s, tc);
    tc = tcase_create("refused");
    tcase_add_test(tc, refuse_null_arguments);
    tcase_add_test(tc, refuse_no_mutates);
    tcase_add_test(tc, refuse_duplicate_id);
    tcase_add_test(tc, refuse_unknown_url);
    tcase_add_test(tc, refuse_bad_value);
    tcase_add_test(tc, refuse_mutated_url_in_requires_or_excludes);
    tcase_add_test(tc, refuse_from_equals_to);
    tcase_add_test(tc, refuse_unplannable_url_and_context);
    tcase_add_test(tc, refused_leaves_no_urls);
    suite_add_tcase(s, tc);
    tc = tcase_create("engine helpers");
    tcase_add_test(tc, mutation_done);
    tcase_add_test(tc, slot_matching);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
