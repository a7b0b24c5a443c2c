/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Mutation declarations and the mutation set (SPEC 4.1).
 *
 * A declaration is compiled on entry: every URL is compiled and interned by its canonical
 * text (so "/physState" and "/PhysState" are one URL), every value is parsed by the URL's
 * type. Validation happens entirely before the set is touched, so a refused declaration
 * leaves no trace. Mutations are kept sorted by (service id, mutation id); that content order
 * (not the order of registration) is the planner's tie-break, which makes plans independent
 * of the order in which services happened to declare.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner_private.h"

/* ---- versions of kraken_mutation_decl ---------------------------------------- */

/* sizeof kraken_mutation_decl as a caller of each version has it; index = version - 1. */
static const size_t decl_sizes[] = {
    KRAKEN__VERSION_SIZE(kraken_mutation_decl, cost), /* 1 */
};
_Static_assert(sizeof decl_sizes / sizeof decl_sizes[0] == KRAKEN_MUTATION_DECL_VERSION,
               "one size per version of kraken_mutation_decl");
_Static_assert(KRAKEN__VERSION_SIZE(kraken_mutation_decl, cost) == sizeof(kraken_mutation_decl),
               "kraken_mutation_decl grew: add its new version to decl_sizes");

const kraken__struct_abi kraken__mutation_decl_abi = {
    "kraken_mutation_decl", "KRAKEN_MUTATION_DECL_VERSION", decl_sizes,
    KRAKEN_MUTATION_DECL_VERSION};

/* The id of a caller's declaration for a message (the id sits right after the version in
 * every version of the struct). */
static const char *decl_id_quoted(char *buf, size_t size, const kraken_mutation_decl *d)
{
    return d->id ? kraken__quote(buf, size, d->id, strlen(d->id)) : "(no id)";
}

int kraken__mutation_decl_read(const kraken_mutation_decl *caller, kraken_mutation_decl *out)
{
    int rc = kraken__struct_read(&kraken__mutation_decl_abi, caller, out);
    char q[KRAKEN_QUOTE_SIZE];
    if (rc < 0)
        return kraken__err_prefix(rc, "mutation %s", decl_id_quoted(q, sizeof q, caller));
    return 0;
}

int kraken__mutation_decls_check(const kraken_mutation_decl *decls, size_t n, size_t *stride)
{
    size_t bad;
    int rc = kraken__struct_array_check(&kraken__mutation_decl_abi, decls, n, stride, &bad);
    if (rc < 0) {
        const kraken_mutation_decl *d =
            (const kraken_mutation_decl *)(const void *)((const char *)decls + bad * *stride);
        char q[KRAKEN_QUOTE_SIZE];
        return kraken__err_prefix(rc, "mutation %zu %s", bad, decl_id_quoted(q, sizeof q, d));
    }
    return 0;
}

void kraken__mutation_decls_get(const kraken_mutation_decl *decls, size_t stride, size_t i,
                                kraken_mutation_decl *out)
{
    kraken__struct_array_get(&kraken__mutation_decl_abi, decls, stride, i, out);
}

/* ---- small helpers ------------------------------------------------------ */

static int mutation_cmp_key(const kraken_mutation *m, const char *service, const char *id)
{
    int c = strcmp(m->service, service);
    return c != 0 ? c : strcmp(m->id, id);
}

/* Position of (service, id) in the sorted array; *found if it is there. */
static size_t mutation_pos(const kraken_mutation_set *set, const char *service, const char *id,
                           bool *found)
{
    size_t lo = 0, hi = set->n_muts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = mutation_cmp_key(set->muts[mid], service, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static size_t url_pos(const kraken_mutation_set *set, const char *text, bool *found)
{
    size_t lo = 0, hi = set->n_urls;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(set->urls[mid]->text, text);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void murl_free(kraken_murl *u)
{
    if (!u)
        return;
    kraken__url_free(u->url);
    free(u);
}

static void fact_clear(kraken_mfact *f)
{
    kraken_value_clear(&f->value);
}

static void mutate_text_free(kraken_mutate *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free((char *)t[i].url);
        free((char *)t[i].from);
        free((char *)t[i].to);
    }
    free(t);
}

static void mutation_free(kraken_mutation *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_mutates; i++) {
        kraken_value_clear(&m->mutates[i].from);
        kraken_value_clear(&m->mutates[i].to);
    }
    for (size_t i = 0; i < m->n_requires; i++)
        fact_clear(&m->requires[i]);
    for (size_t i = 0; i < m->n_excludes; i++)
        fact_clear(&m->excludes[i]);
    fact_clear(&m->fail_to);
    mutate_text_free(m->text, m->n_mutates);
    free(m->mutates);
    free(m->requires);
    free(m->excludes);
    free(m->service);
    free(m->id);
    free(m);
}

static void invalidate(kraken_mutation_set *set)
{
    set->generation++;
    kraken__planner_free(set->planner);
    set->planner = NULL;
}

/* ---- set lifecycle ------------------------------------------------------ */

int kraken_mutation_set_new(kraken_mutation_set **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_new: out is NULL");
    *out = NULL;
    kraken_mutation_set *set = calloc(1, sizeof *set);
    if (!set)
        return kraken__err(KRAKEN_ENOMEM, "kraken_mutation_set_new: out of memory");
    set->generation = 1;
    set->max_states = KRAKEN_PLANNER_MAX_STATES;
    *out = set;
    return 0;
}

void kraken_mutation_set_free(kraken_mutation_set *set)
{
    if (!set)
        return;
    kraken__planner_free(set->planner);
    for (size_t i = 0; i < set->n_overrides; i++) {
        free(set->overrides[i].service);
        free(set->overrides[i].id);
    }
    free(set->overrides);
    for (size_t i = 0; i < set->n_muts; i++)
        mutation_free(set->muts[i]);
    for (size_t i = 0; i < set->n_urls; i++)
        murl_free(set->urls[i]);
    free(set->muts);
    free(set->urls);
    free(set);
}

size_t kraken_mutation_set_count(const kraken_mutation_set *set)
{
    return set ? set->n_muts : 0;
}

/* ---- compiling a declaration ------------------------------------------- */

/* State of one kraken_mutation_set_add: URLs not yet interned wait in `pending` and are only
 * published when the whole declaration is valid. */
typedef struct compiler {
    kraken_mutation_set *set;
    const char *service;
    const char *id;
    kraken_murl **pending;
    size_t n_pending;
} compiler;

static kraken_murl *pending_find(const compiler *c, const char *text)
{
    for (size_t i = 0; i < c->n_pending; i++)
        if (strcmp(c->pending[i]->text, text) == 0)
            return c->pending[i];
    return NULL;
}

static bool type_is_plannable(kraken_type t)
{
    return t != KRAKEN_T_NONE && t != KRAKEN_T_RECORD && t != KRAKEN_T_MAP && t != KRAKEN_T_LIST;
}

/* Resolve @p text to an interned (or pending) URL. @p where names the declaration field. */
static int resolve_url(compiler *c, const char *where, const char *text, kraken_murl **out)
{
    if (!text)
        return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: %s: url is NULL", c->service, c->id,
                           where);
    kraken_url *url = NULL;
    int rc = kraken__url_compile(text, &url);
    if (rc < 0)
        return kraken__err_prefix(rc, "mutation %s/%s: %s: url '%s'", c->service, c->id, where,
                                  text);
    const char *canon = kraken__url_text(url);
    bool found;
    size_t pos = url_pos(c->set, canon, &found);
    kraken_murl *u = found ? c->set->urls[pos] : pending_find(c, canon);
    if (u) {
        kraken__url_free(url);
        *out = u;
        return 0;
    }
    kraken_type type = kraken__url_type(url);
    if (!type_is_plannable(type)) {
        rc = kraken__err(KRAKEN_ETYPE,
                         "mutation %s/%s: %s: url '%s' has type %s; only scalar values can be "
                         "planned on", c->service, c->id, where, text, kraken_type_name(type));
        kraken__url_free(url);
        return rc;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        kraken__url_free(url);
        return kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", c->service, c->id);
    }
    u->url = url;
    u->text = canon;
    u->type = type;
    u->enm = kraken__url_enum(url);
    c->pending[c->n_pending++] = u;
    *out = u;
    return 0;
}

/* Parse a value given as text for URL @p u; NULL text is the zero value. */
static int parse_value(const compiler *c, const char *where, const kraken_murl *u,
                       const char *text, kraken_value *out)
{
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    if (!text && u->type != KRAKEN_T_STRING && u->type != KRAKEN_T_BYTES) {
        out->type = u->type;
        out->enum_type = u->enm;
        return 0;
    }
    int rc = kraken_url_parse_value(u->text, text ? text : "", out);
    if (rc < 0)
        return kraken__err_prefix(rc, "mutation %s/%s: %s: url '%s': value '%s'", c->service,
                                  c->id, where, u->text, text ? text : "");
    return 0;
}

static int compile_fact(compiler *c, const char *where, const kraken_fact *in, kraken_mfact *out)
{
    int rc = resolve_url(c, where, in->url, &out->u);
    if (rc < 0)
        return rc;
    return parse_value(c, where, out->u, in->value, &out->value);
}

static int compile_mutates(compiler *c, const kraken_mutation_decl *decl, kraken_mutation *m)
{
    char where[48];
    for (size_t i = 0; i < decl->n_mutates; i++) {
        kraken_mchange *ch = &m->mutates[i];
        snprintf(where, sizeof where, "mutates[%zu]", i);
        int rc = resolve_url(c, where, decl->mutates[i].url, &ch->u);
        if (rc < 0)
            return rc;
        m->n_mutates = i + 1; /* from/to below are cleared by mutation_free on error */
        rc = parse_value(c, where, ch->u, decl->mutates[i].from, &ch->from);
        if (rc < 0)
            return rc;
        rc = parse_value(c, where, ch->u, decl->mutates[i].to, &ch->to);
        if (rc < 0)
            return rc;
        if (kraken_value_equal(&ch->from, &ch->to))
            return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: %s: url '%s': from and to are "
                               "the same value", c->service, c->id, where, ch->u->text);
        for (size_t j = 0; j < i; j++)
            if (m->mutates[j].u == ch->u)
                return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: url '%s' is mutated twice",
                                   c->service, c->id, ch->u->text);
    }
    return 0;
}

static bool mutates_url(const kraken_mutation *m, const kraken_murl *u)
{
    for (size_t i = 0; i < m->n_mutates; i++)
        if (m->mutates[i].u == u)
            return true;
    return false;
}

/* requires (is_exclude false) or excludes; each must name a URL the mutation does not mutate. */
static int compile_facts(compiler *c, const kraken_fact *in, size_t n, bool is_exclude,
                         kraken_mfact *out, size_t *n_out, const kraken_mutation *m)
{
    const char *kind = is_exclude ? "excludes" : "requires";
    char where[48];
    for (size_t i = 0; i < n; i++) {
        snprintf(where, sizeof where, "%s[%zu]", kind, i);
        int rc = resolve_url(c, where, in[i].url, &out[i].u);
        if (rc < 0)
            return rc;
        *n_out = i + 1;
        rc = parse_value(c, where, out[i].u, in[i].value, &out[i].value);
        if (rc < 0)
            return rc;
        if (mutates_url(m, out[i].u))
            return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: url '%s' is both mutated and in "
                               "%s", c->service, c->id, out[i].u->text, kind);
    }
    return 0;
}

/* The mutates list as canonical text (what a request hands to the module). */
static int make_text(const compiler *c, kraken_mutation *m)
{
    m->text = calloc(m->n_mutates, sizeof *m->text);
    if (!m->text)
        return kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", c->service, c->id);
    for (size_t i = 0; i < m->n_mutates; i++) {
        char *from = NULL, *to = NULL, *url = strdup(m->mutates[i].u->text);
        int rc = url ? kraken_value_format(&m->mutates[i].from, &from) : KRAKEN_ENOMEM;
        if (rc == 0)
            rc = kraken_value_format(&m->mutates[i].to, &to);
        m->text[i] = (kraken_mutate){url, from, to};
        if (rc < 0)
            return kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", c->service,
                               c->id);
    }
    return 0;
}

static const kraken_moverride *override_find(const kraken_mutation_set *set, const char *service,
                                             const char *id)
{
    for (size_t i = 0; i < set->n_overrides; i++)
        if (!strcmp(set->overrides[i].service, service) && !strcmp(set->overrides[i].id, id))
            return &set->overrides[i];
    return NULL;
}

/* Settings given before the declaration (kraken_mutation_set_disable / _timeout). */
static void apply_override(const kraken_moverride *o, kraken_mutation *m)
{
    if (!o)
        return;
    if (o->has_disabled)
        m->disabled = o->disabled;
    if (o->has_timeout)
        m->timeout_ms = o->timeout_ms;
}

static int compile_decl(compiler *c, const kraken_mutation_decl *decl, kraken_mutation **out)
{
    kraken_mutation *m = calloc(1, sizeof *m);
    if (!m)
        return kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", c->service, c->id);
    m->service = strdup(c->service);
    m->id = strdup(c->id);
    m->mutates = calloc(decl->n_mutates, sizeof *m->mutates);
    m->requires = decl->n_requires ? calloc(decl->n_requires, sizeof *m->requires) : NULL;
    m->excludes = decl->n_excludes ? calloc(decl->n_excludes, sizeof *m->excludes) : NULL;
    int rc = 0;
    if (!m->service || !m->id || !m->mutates || (decl->n_requires && !m->requires) ||
        (decl->n_excludes && !m->excludes))
        rc = kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", c->service, c->id);
    if (rc == 0)
        rc = compile_mutates(c, decl, m);
    if (rc == 0)
        rc = compile_facts(c, decl->requires, decl->n_requires, false, m->requires,
                           &m->n_requires, m);
    if (rc == 0)
        rc = compile_facts(c, decl->excludes, decl->n_excludes, true, m->excludes,
                           &m->n_excludes, m);
    if (rc == 0 && decl->fail_to.url) {
        rc = compile_fact(c, "fail_to", &decl->fail_to, &m->fail_to);
        m->has_fail_to = rc == 0;
    }
    if (rc == 0)
        rc = make_text(c, m);
    if (rc < 0) {
        mutation_free(m);
        return rc;
    }
    m->context = decl->context;
    m->timeout_ms = m->declared_timeout_ms = decl->timeout_ms;
    m->cost = decl->cost ? decl->cost : 1;
    apply_override(override_find(c->set, c->service, c->id), m);
    *out = m;
    return 0;
}

static int check_decl_shape(const char *service_id, const kraken_mutation_decl *decl)
{
    if (!decl->id || !*decl->id)
        return kraken__err(KRAKEN_EINVAL, "mutation of service '%s': id is NULL or empty",
                           service_id);
    if (decl->n_mutates == 0 || !decl->mutates)
        return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: mutates nothing", service_id,
                           decl->id);
    if ((decl->n_requires && !decl->requires) || (decl->n_excludes && !decl->excludes))
        return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: requires/excludes array is NULL",
                           service_id, decl->id);
    if (decl->context != KRAKEN_CONTEXT_SELF && decl->context != KRAKEN_CONTEXT_CHILD &&
        decl->context != KRAKEN_CONTEXT_ALL)
        return kraken__err(KRAKEN_EINVAL, "mutation %s/%s: invalid context %d", service_id,
                           decl->id, (int)decl->context);
    return 0;
}

/* Grow both arrays first so that publishing cannot fail half-way. */
static int reserve(kraken_mutation_set *set, size_t extra_urls)
{
    if (set->n_muts + 1 > set->cap_muts) {
        size_t cap = set->cap_muts ? set->cap_muts * 2 : 16;
        kraken_mutation **p = realloc(set->muts, cap * sizeof *p);
        if (!p)
            return kraken__err(KRAKEN_ENOMEM, "mutation set: out of memory");
        set->muts = p;
        set->cap_muts = cap;
    }
    if (set->n_urls + extra_urls > set->cap_urls) {
        size_t cap = set->cap_urls ? set->cap_urls * 2 : 16;
        while (cap < set->n_urls + extra_urls)
            cap *= 2;
        kraken_murl **p = realloc(set->urls, cap * sizeof *p);
        if (!p)
            return kraken__err(KRAKEN_ENOMEM, "mutation set: out of memory");
        set->urls = p;
        set->cap_urls = cap;
    }
    return 0;
}

static void insert_url(kraken_mutation_set *set, kraken_murl *u)
{
    bool found;
    size_t pos = url_pos(set, u->text, &found);
    memmove(&set->urls[pos + 1], &set->urls[pos], (set->n_urls - pos) * sizeof *set->urls);
    set->urls[pos] = u;
    u->index = set->n_urls++; /* URLs are never removed: indexes stay unique and dense */
}

static void count_uses(kraken_mutation *m, int delta)
{
    for (size_t i = 0; i < m->n_mutates; i++)
        m->mutates[i].u->n_mutating += (size_t)delta;
    for (size_t i = 0; i < m->n_requires; i++)
        m->requires[i].u->n_facts += (size_t)delta;
    for (size_t i = 0; i < m->n_excludes; i++)
        m->excludes[i].u->n_facts += (size_t)delta;
}

static void publish(kraken_mutation_set *set, compiler *c, kraken_mutation *m, size_t pos)
{
    for (size_t i = 0; i < c->n_pending; i++)
        insert_url(set, c->pending[i]);
    c->n_pending = 0;
    memmove(&set->muts[pos + 1], &set->muts[pos], (set->n_muts - pos) * sizeof *set->muts);
    set->muts[pos] = m;
    set->n_muts++;
    count_uses(m, 1);
    invalidate(set);
}

int kraken_mutation_set_add(kraken_mutation_set *set, const char *service_id,
                            const kraken_mutation_decl *caller)
{
    if (!set || !service_id || !*service_id || !caller)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_add: set, service id (non-empty) "
                           "and declaration are required");
    kraken_mutation_decl current; /* the caller's version, read into this library's struct */
    int rc = kraken__mutation_decl_read(caller, &current);
    if (rc < 0)
        return kraken__err_prefix(rc, "kraken_mutation_set_add");
    const kraken_mutation_decl *decl = &current;
    rc = check_decl_shape(service_id, decl);
    if (rc < 0)
        return rc;
    bool found;
    size_t pos = mutation_pos(set, service_id, decl->id, &found);
    if (found)
        return kraken__err(KRAKEN_EEXISTS, "mutation %s/%s: already declared by service '%s'",
                           service_id, decl->id, service_id);
    size_t max_urls = decl->n_mutates + decl->n_requires + decl->n_excludes + 1;
    compiler c = {set, service_id, decl->id, calloc(max_urls, sizeof(kraken_murl *)), 0};
    if (!c.pending)
        return kraken__err(KRAKEN_ENOMEM, "mutation %s/%s: out of memory", service_id, decl->id);
    kraken_mutation *m = NULL;
    rc = compile_decl(&c, decl, &m);
    if (rc == 0) {
        rc = reserve(set, c.n_pending);
        if (rc < 0)
            mutation_free(m);
    }
    if (rc == 0)
        publish(set, &c, m, pos);
    for (size_t i = 0; i < c.n_pending; i++)
        murl_free(c.pending[i]);
    free(c.pending);
    return rc;
}

int kraken_mutation_set_remove_service(kraken_mutation_set *set, const char *service_id)
{
    if (!set || !service_id)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_remove_service: set and service "
                           "id are required");
    size_t kept = 0;
    for (size_t i = 0; i < set->n_muts; i++) {
        kraken_mutation *m = set->muts[i];
        if (strcmp(m->service, service_id) == 0) {
            count_uses(m, -1);
            mutation_free(m);
        } else {
            set->muts[kept++] = m;
        }
    }
    if (kept != set->n_muts) {
        set->n_muts = kept;
        invalidate(set);
    }
    return 0;
}

/* ---- internal accessors ------------------------------------------------- */

/* The declared mutation @p service / @p id, NULL when there is none. */
static kraken_mutation *mutation_lookup(const kraken_mutation_set *set, const char *service,
                                        const char *id)
{
    bool found;
    size_t pos = mutation_pos(set, service, id, &found);
    return found ? set->muts[pos] : NULL;
}

const kraken_mutation *kraken__mutation_find(const kraken_mutation_set *set, const char *service,
                                             const char *id)
{
    if (!set || !service || !id)
        return NULL;
    return mutation_lookup(set, service, id);
}

const kraken_murl *kraken__mutation_set_find_url(const kraken_mutation_set *set,
                                                 const char *canonical)
{
    if (!set || !canonical)
        return NULL;
    bool found;
    size_t pos = url_pos(set, canonical, &found);
    return found ? set->urls[pos] : NULL;
}

uint64_t kraken__mutation_set_generation(const kraken_mutation_set *set)
{
    return set ? set->generation : 0;
}

size_t kraken__mutation_set_url_count(const kraken_mutation_set *set)
{
    return set ? set->n_urls : 0;
}

/* ---- overrides ------------------------------------------------------------ */

static int override_get(kraken_mutation_set *set, const char *op, const char *service,
                        const char *id, kraken_moverride **out)
{
    if (!set || !service || !*service || !id || !*id)
        return kraken__err(KRAKEN_EINVAL, "%s: set, service id and mutation id are required", op);
    kraken_moverride *o = (kraken_moverride *)override_find(set, service, id);
    if (!o) {
        kraken_moverride *v = realloc(set->overrides, (set->n_overrides + 1) * sizeof *v);
        if (!v)
            return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", op);
        set->overrides = v;
        o = &v[set->n_overrides];
        *o = (kraken_moverride){strdup(service), strdup(id), false, false, false, 0};
        if (!o->service || !o->id) {
            free(o->service);
            free(o->id);
            return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", op);
        }
        set->n_overrides++;
    }
    *out = o;
    return 0;
}

int kraken_mutation_set_disable(kraken_mutation_set *set, const char *service_id,
                                const char *mutation_id, bool disabled)
{
    kraken_moverride *o;
    int rc = override_get(set, "mutation_set_disable", service_id, mutation_id, &o);
    if (rc < 0)
        return rc;
    o->has_disabled = true;
    o->disabled = disabled;
    kraken_mutation *m = mutation_lookup(set, service_id, mutation_id);
    if (m && m->disabled != disabled) {
        m->disabled = disabled;
        invalidate(set); /* plans change: the engine replans every node */
    }
    return 0;
}

int kraken_mutation_set_timeout(kraken_mutation_set *set, const char *service_id,
                                const char *mutation_id, uint32_t timeout_ms)
{
    kraken_moverride *o;
    int rc = override_get(set, "mutation_set_timeout", service_id, mutation_id, &o);
    if (rc < 0)
        return rc;
    o->has_timeout = true;
    o->timeout_ms = timeout_ms;
    kraken_mutation *m = mutation_lookup(set, service_id, mutation_id);
    if (m)
        m->timeout_ms = timeout_ms; /* plans do not depend on it */
    return 0;
}

/* ---- listing ---------------------------------------------------------------- */

void kraken_mutation_info_clear(kraken_mutation_info *info)
{
    if (!info)
        return;
    free(info->service_id);
    free(info->mutation_id);
    mutate_text_free(info->mutates, info->n_mutates);
    for (size_t i = 0; info->requires && i < info->n_requires; i++) {
        free((char *)info->requires[i].url);
        free((char *)info->requires[i].value);
    }
    for (size_t i = 0; info->excludes && i < info->n_excludes; i++) {
        free((char *)info->excludes[i].url);
        free((char *)info->excludes[i].value);
    }
    free(info->requires);
    free(info->excludes);
    free((char *)info->fail_to.url);
    free((char *)info->fail_to.value);
    memset(info, 0, sizeof *info);
}

void kraken_mutation_infos_free(kraken_mutation_info *infos, size_t n)
{
    for (size_t i = 0; infos && i < n; i++)
        kraken_mutation_info_clear(&infos[i]);
    free(infos);
}

static int fact_text(const kraken_mfact *f, kraken_fact *out)
{
    char *url = strdup(f->u->text), *value = NULL;
    int rc = url ? kraken_value_format(&f->value, &value) : KRAKEN_ENOMEM;
    *out = (kraken_fact){url, value};
    return rc < 0 ? kraken__err(KRAKEN_ENOMEM, "mutation info: out of memory") : 0;
}

static int facts_text(const kraken_mfact *in, size_t n, kraken_fact **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof **out)))
        return kraken__err(KRAKEN_ENOMEM, "mutation info: out of memory");
    for (; *n_out < n; (*n_out)++) {
        int rc = fact_text(&in[*n_out], &(*out)[*n_out]);
        if (rc < 0) {
            (*n_out)++; /* the half-made one is freed too */
            return rc;
        }
    }
    return 0;
}

static int info_make(const kraken_mutation *m, kraken_mutation_info *out)
{
    kraken_mutation_info in = {.context = m->context, .timeout_ms = m->timeout_ms,
                               .declared_timeout_ms = m->declared_timeout_ms, .cost = m->cost,
                               .disabled = m->disabled};
    int rc = 0;
    in.service_id = strdup(m->service);
    in.mutation_id = strdup(m->id);
    in.mutates = calloc(m->n_mutates, sizeof *in.mutates);
    if (!in.service_id || !in.mutation_id || !in.mutates)
        rc = kraken__err(KRAKEN_ENOMEM, "mutation info: out of memory");
    for (size_t i = 0; rc == 0 && i < m->n_mutates; i++) {
        in.n_mutates = i + 1;
        in.mutates[i] = (kraken_mutate){strdup(m->text[i].url), strdup(m->text[i].from),
                                        strdup(m->text[i].to)};
        if (!in.mutates[i].url || !in.mutates[i].from || !in.mutates[i].to)
            rc = kraken__err(KRAKEN_ENOMEM, "mutation info: out of memory");
    }
    if (rc == 0)
        rc = facts_text(m->requires, m->n_requires, &in.requires, &in.n_requires);
    if (rc == 0)
        rc = facts_text(m->excludes, m->n_excludes, &in.excludes, &in.n_excludes);
    if (rc == 0 && m->has_fail_to)
        rc = fact_text(&m->fail_to, &in.fail_to);
    if (rc < 0) {
        kraken_mutation_info_clear(&in);
        return rc;
    }
    *out = in;
    return 0;
}

int kraken_mutation_set_list(const kraken_mutation_set *set, kraken_mutation_info **out,
                             size_t *n)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!set || !out || !n)
        return kraken__err(KRAKEN_EINVAL, "mutation_set_list: set, out and n are required");
    if (!set->n_muts)
        return 0;
    kraken_mutation_info *v = calloc(set->n_muts, sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "mutation_set_list: out of memory");
    for (size_t i = 0; i < set->n_muts; i++) {
        int rc = info_make(set->muts[i], &v[i]);
        if (rc < 0) {
            kraken_mutation_infos_free(v, i);
            return rc;
        }
    }
    *out = v;
    *n = set->n_muts;
    return 0;
}

int kraken_mutation_set_lookup(const kraken_mutation_set *set, const char *service_id,
                               const char *mutation_id, kraken_mutation_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!set || !service_id || !mutation_id || !out)
        return kraken__err(KRAKEN_EINVAL, "mutation_set_lookup: set, service id, mutation id "
                                          "and out are required");
    const kraken_mutation *m = kraken__mutation_find(set, service_id, mutation_id);
    if (!m)
        return kraken__err(KRAKEN_ENOTFOUND, "mutation_set_lookup: no mutation %s/%s",
                           service_id, mutation_id);
    return info_make(m, out);
}

static bool bytes_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

bool kraken__mslot_matches(kraken_type type, const kraken_slot *slot, const kraken_value *value)
{
    if (!slot)
        return kraken_value_is_zero(value);
    switch (type) {
    case KRAKEN_T_BOOL:
        return slot->b == value->v.b;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return slot->i == value->v.i;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return slot->u == value->v.u;
    case KRAKEN_T_IPV4:
        return memcmp(&slot->ipv4, value->v.ipv4, 4) == 0;
    case KRAKEN_T_MAC:
        return memcmp(&slot->mac, value->v.mac, 6) == 0;
    case KRAKEN_T_STRING: {
        const char *s = slot->s ? slot->s : "";
        return bytes_equal(s, strlen(s), value->v.str.data, value->v.str.len);
    }
    case KRAKEN_T_BYTES:
        if (!slot->bytes)
            return value->v.str.len == 0;
        return bytes_equal(slot->bytes->data, slot->bytes->len, value->v.str.data,
                           value->v.str.len);
    case KRAKEN_T_UUID:
        if (!slot->uuid)
            return kraken_uuid_is_zero(&value->v.uuid);
        return memcmp(slot->uuid->bytes, value->v.uuid.bytes, 16) == 0;
    default:
        return false;
    }
}

bool kraken__mutation_done(const kraken_mutation *m, const kraken_node *dsc)
{
    if (!m || !dsc)
        return false;
    for (size_t i = 0; i < m->n_mutates; i++) {
        const kraken_mchange *ch = &m->mutates[i];
        if (!kraken__mslot_matches(ch->u->type, kraken__url_peek(ch->u->url, dsc), &ch->to))
            return false;
    }
    return true;
}

/* ---- the planner's view of a node --------------------------------------------- */

/* The value at a URL, NONE when zero or absent (as kraken_node_diff: zero is "unknown"). */
static int read_value(const kraken_murl *u, const kraken_node *node, kraken_value *out)
{
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    const kraken_slot *slot = kraken__url_peek(u->url, node);
    if (!slot || kraken__slot_is_zero(u->type, slot))
        return 0;
    return kraken__url_get(u->url, node, out);
}

int kraken_mutation_set_diff(kraken_mutation_set *set, const kraken_node *cfg,
                             const kraken_node *dsc, kraken_change **out, size_t *n)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!set || !cfg || !dsc || !out || !n)
        return kraken__err(KRAKEN_EINVAL, "mutation_set_diff: set, cfg, dsc, out and n are "
                                          "required");
    kraken_change *v = NULL;
    size_t count = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < set->n_urls; i++) {
        const kraken_murl *u = set->urls[i];
        if (!u->n_mutating)
            continue;
        kraken_value goal = KRAKEN_VALUE_INIT, now = KRAKEN_VALUE_INIT;
        rc = read_value(u, cfg, &goal);
        if (rc == 0)
            rc = read_value(u, dsc, &now);
        bool differs = rc == 0 && !kraken_value_is_zero(&goal) && !kraken_value_equal(&goal, &now);
        kraken_change *grown = differs ? realloc(v, (count + 1) * sizeof *v) : v;
        char *url = differs && grown ? strdup(u->text) : NULL;
        if (differs && (!grown || !url)) {
            rc = kraken__err(KRAKEN_ENOMEM, "mutation_set_diff: out of memory");
            v = grown ? grown : v;
        } else if (differs) {
            v = grown;
            v[count++] = (kraken_change){url, now, goal};
            continue; /* the values now belong to the change */
        }
        kraken_value_clear(&goal);
        kraken_value_clear(&now);
    }
    if (rc < 0) {
        kraken_changes_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}
