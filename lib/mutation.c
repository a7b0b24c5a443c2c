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

#include "internal.h"

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
    if (rc < 0) {
        mutation_free(m);
        return rc;
    }
    m->context = decl->context;
    m->timeout_ms = decl->timeout_ms;
    m->cost = decl->cost ? decl->cost : 1;
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
    set->n_urls++;
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
                            const kraken_mutation_decl *decl)
{
    if (!set || !service_id || !*service_id || !decl)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_add: set, service id (non-empty) "
                           "and declaration are required");
    int rc = check_decl_shape(service_id, decl);
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

const kraken_mutation *kraken__mutation_find(const kraken_mutation_set *set, const char *service,
                                             const char *id)
{
    if (!set || !service || !id)
        return NULL;
    bool found;
    size_t pos = mutation_pos(set, service, id, &found);
    return found ? set->muts[pos] : NULL;
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
