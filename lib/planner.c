/*
 * The planner (SPEC 4.2): cheapest mutation sequence from a node's Dsc state to its Cfg goal.
 *
 * Model. Each mutator URL becomes one byte of a state vector. Its value is coded as a small
 * integer: 0 = zero/unknown, 1..k = the distinct non-zero values that declarations mention
 * for it (plus every member of its enum, so states read well), and two codes for values no
 * declaration mentions: OTHER_GOAL (the value equals the
 * node's Cfg goal value) and OTHER (anything else). No mutation can start from or produce an
 * OTHER code, so one code per URL would do for the search; OTHER_GOAL keeps an unmentioned
 * goal value representable (already reached, or not) without making two different unmentioned
 * values look equal. Static URLs (named in requires/excludes, never mutated) are coded the
 * same way from Cfg into a separate vector.
 *
 * Search. Uniform-cost (Dijkstra) over interned state vectors. Costs are >= 1, so when a
 * state is popped at cost c every predecessor of cost < c has been expanded and every cost-c
 * offer for it has been seen. Among equally cheap offers we keep the path whose sequence of
 * mutation indexes is lexicographically smallest, where the index is the position in the set's
 * (service id, mutation id) order. That order depends on content only, so the same set gives
 * the same plans whatever the registration order.
 *
 * Cache. Plans are a function of (start vector, static vector, goal vector): we key a hash map
 * on the three, concatenated. A hit costs a few URL peeks, a hash and a refcount increment.
 * The model and its cache belong to one generation of the set and are dropped when it changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner_private.h"

#define MAX_VALUES_PER_URL 250     /* codes must fit a byte with two OTHER codes */
#define CACHE_MAX_ENTRIES (1u << 16)
#define KEY_STACK_BYTES 512

/* ---- hashing and interned state vectors --------------------------------- */

/* Word-at-a-time multiply-xorshift hash of a short byte string (state vectors and cache
 * keys: a few dozen bytes, hashed on every plan call). */
static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    if (n)
        memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

struct kraken_stateset {
    size_t width;
    uint8_t *vecs;     /* n * width bytes */
    size_t n, cap;
    uint32_t *table;   /* open addressing: state index + 1, 0 = empty */
    size_t tcap;       /* power of two */
};

kraken_stateset *kraken__stateset_new(size_t width)
{
    kraken_stateset *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->width = width;
    ss->tcap = 64;
    ss->table = calloc(ss->tcap, sizeof *ss->table);
    if (!ss->table) {
        free(ss);
        return NULL;
    }
    return ss;
}

void kraken__stateset_free(kraken_stateset *ss)
{
    if (!ss)
        return;
    free(ss->vecs);
    free(ss->table);
    free(ss);
}

size_t kraken__stateset_count(const kraken_stateset *ss)
{
    return ss->n;
}

const uint8_t *kraken__stateset_vec(const kraken_stateset *ss, size_t index)
{
    return ss->vecs + index * ss->width;
}

/* Table position holding @p vec, or the empty position where it would go. */
static size_t stateset_probe(const kraken_stateset *ss, const uint8_t *vec)
{
    size_t mask = ss->tcap - 1;
    size_t i = (size_t)hash_bytes(vec, ss->width) & mask;
    while (ss->table[i]) {
        const uint8_t *v = kraken__stateset_vec(ss, ss->table[i] - 1);
        if (ss->width == 0 || memcmp(v, vec, ss->width) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

size_t kraken__stateset_find(const kraken_stateset *ss, const uint8_t *vec)
{
    size_t i = stateset_probe(ss, vec);
    return ss->table[i] ? ss->table[i] - 1 : SIZE_MAX;
}

static int stateset_grow_table(kraken_stateset *ss)
{
    size_t tcap = ss->tcap * 2;
    uint32_t *t = calloc(tcap, sizeof *t);
    if (!t)
        return KRAKEN_ENOMEM;
    free(ss->table);
    ss->table = t;
    ss->tcap = tcap;
    for (size_t s = 0; s < ss->n; s++)
        ss->table[stateset_probe(ss, kraken__stateset_vec(ss, s))] = (uint32_t)(s + 1);
    return 0;
}

int kraken__stateset_intern(kraken_stateset *ss, const uint8_t *vec, size_t *index, bool *added)
{
    size_t i = stateset_probe(ss, vec);
    if (ss->table[i]) {
        *index = ss->table[i] - 1;
        *added = false;
        return 0;
    }
    if (ss->n == ss->cap) {
        size_t cap = ss->cap ? ss->cap * 2 : 64;
        uint8_t *v = realloc(ss->vecs, cap * (ss->width ? ss->width : 1));
        if (!v)
            return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
        ss->vecs = v;
        ss->cap = cap;
    }
    if (ss->width)
        memcpy(ss->vecs + ss->n * ss->width, vec, ss->width);
    ss->table[i] = (uint32_t)(ss->n + 1);
    *index = ss->n++;
    *added = true;
    if (ss->n * 2 > ss->tcap && stateset_grow_table(ss) < 0)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    return 0;
}

/* ---- the model ---------------------------------------------------------- */

typedef struct pm_fact {
    uint32_t idx;      /* mutator URL index, or static URL index when is_static */
    uint8_t code;
    bool is_static;
} pm_fact;

typedef struct pm_change {
    uint32_t u;
    uint8_t from, to;
} pm_change;

typedef struct pm_mut {
    const kraken_mutation *m;
    pm_change *ch;
    pm_fact *req, *exc;
    size_t n_ch, n_req, n_exc;
} pm_mut;

typedef struct pm_url {
    const kraken_murl *u;
    const char *name;               /* display name, points into u->text */
    size_t n_values;
    kraken_value *values;           /* distinct non-zero values (copies) */
    char **labels;                  /* per code (mutator URLs only) */
    pm_fact *cond;                  /* discovery conditions (mutator URLs only) */
    size_t n_cond;
    bool has_cond;                  /* some mutation mutates it from zero */
    /* Fast reads: the URL is field `leaf` of the record its parent URL names (group), so
     * one peek per group and node serves every URL of the group. */
    size_t group;                   /* SIZE_MAX: read with a full peek */
    const char *leaf;               /* last component, points into u->text */
    size_t leaf_len;
    const struct kraken_schema *leaf_schema; /* cache: schema last seen, and the field's index */
    size_t leaf_index;
    /* ENUM URLs: code by enum number - enum_lo (0 = not a mentioned value). */
    int64_t enum_lo;
    size_t enum_n;
    uint8_t *enum_codes;
} pm_url;

#define MAX_GROUPS 32

typedef struct cache_slot {
    uint64_t hash;
    kraken_plan *plan;  /* NULL with used = 2: "no path" */
    char *why;          /* used = 2: the states part of the "no path" message (or NULL) */
    uint8_t used;       /* 0 empty, 1 plan, 2 no path */
} cache_slot;

typedef struct plan_cache {
    size_t klen;
    size_t n, cap;      /* cap: power of two or 0 */
    cache_slot *slots;
    uint8_t *keys;      /* cap * klen */
} plan_cache;

struct kraken_planner {
    uint64_t generation;
    size_t n_m, n_s;
    pm_url *urls;       /* n_m mutator URLs, then n_s static URLs; each group sorted by text */
    kraken_url *groups[MAX_GROUPS]; /* parent record URLs; NULL entry = the node itself */
    size_t n_groups;
    size_t n_muts;
    pm_mut *muts;       /* in the set's (service, id) order */
    plan_cache cache;
};

struct kraken_plan {
    int refs;
    size_t n;
    uint64_t cost;
    uint64_t generation;
    size_t width;
    const char **service;
    const char **mutation;
    uint8_t *states;    /* (n + 1) * width */
};

static uint8_t code_other_goal(const pm_url *pu)
{
    return (uint8_t)(pu->n_values + 1);
}

static uint8_t code_other(const pm_url *pu)
{
    return (uint8_t)(pu->n_values + 2);
}

static void cache_clear(plan_cache *c)
{
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i].used == 1)
            kraken_plan_free(c->slots[i].plan);
        free(c->slots[i].why);
        c->slots[i].used = 0;
        c->slots[i].plan = NULL;
        c->slots[i].why = NULL;
    }
    c->n = 0;
}

void kraken__planner_free(kraken_planner *p)
{
    if (!p)
        return;
    cache_clear(&p->cache);
    free(p->cache.slots);
    free(p->cache.keys);
    for (size_t i = 0; p->urls && i < p->n_m + p->n_s; i++) {
        pm_url *pu = &p->urls[i];
        if (pu->labels)
            for (size_t c = 0; c < pu->n_values + 3; c++)
                free(pu->labels[c]);
        free(pu->labels);
        free(pu->enum_codes);
        for (size_t v = 0; v < pu->n_values; v++)
            kraken_value_clear(&pu->values[v]);
        free(pu->values);
        free(pu->cond);
    }
    for (size_t i = 0; p->muts && i < p->n_muts; i++) {
        free(p->muts[i].ch);
        free(p->muts[i].req);
        free(p->muts[i].exc);
    }
    for (size_t g = 0; g < p->n_groups; g++)
        kraken__url_free(p->groups[g]);
    free(p->urls);
    free(p->muts);
    free(p);
}

static const char *display_name(const char *text)
{
    static const char prefix[] = "type.googleapis.com/";
    if (strncmp(text, prefix, sizeof prefix - 1) == 0)
        return text + sizeof prefix - 1;
    return text[0] == '/' ? text + 1 : text;
}

/* Give every interned URL its place: mutators first, then statics, each in text order. */
static int assign_urls(kraken_planner *p, kraken_mutation_set *set)
{
    for (size_t i = 0; i < set->n_urls; i++) {
        const kraken_murl *u = set->urls[i];
        if (u->n_mutating)
            p->n_m++;
        else if (u->n_facts)
            p->n_s++;
    }
    if (p->n_m + p->n_s > UINT32_MAX / 2)
        return kraken__err(KRAKEN_ELIMIT, "planner: too many URLs");
    p->urls = calloc(p->n_m + p->n_s + 1, sizeof *p->urls);
    if (!p->urls)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    size_t next_m = 0, next_s = p->n_m;
    for (size_t i = 0; i < set->n_urls; i++) {
        kraken_murl *u = set->urls[i];
        u->model_index = SIZE_MAX;
        if (u->n_mutating)
            u->model_index = next_m++;
        else if (u->n_facts)
            u->model_index = next_s++;
        if (u->model_index != SIZE_MAX) {
            p->urls[u->model_index].u = u;
            p->urls[u->model_index].name = display_name(u->text);
        }
    }
    return 0;
}

static int add_value(pm_url *pu, const kraken_value *v)
{
    if (kraken_value_is_zero(v))
        return 0;
    for (size_t i = 0; i < pu->n_values; i++)
        if (kraken_value_equal(&pu->values[i], v))
            return 0;
    if (pu->n_values == MAX_VALUES_PER_URL)
        return kraken__err(KRAKEN_ELIMIT, "planner: url '%s': more than %d distinct values in "
                           "mutation declarations", pu->u->text, MAX_VALUES_PER_URL);
    kraken_value *vals = realloc(pu->values, (pu->n_values + 1) * sizeof *vals);
    if (!vals)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    pu->values = vals;
    if (kraken_value_copy(&pu->values[pu->n_values], v) < 0)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    pu->n_values++;
    return 0;
}

/* Every member of a mutator URL's enum gets a code of its own (when they fit), so states
 * show real names ("RunState=ERROR") even for members no declaration mentions. */
static int add_enum_members(pm_url *pu)
{
    const struct kraken_enum_type *e = pu->u->enm;
    if (pu->u->type != KRAKEN_T_ENUM || !e || kraken_enum_type_count(e) > MAX_VALUES_PER_URL)
        return 0;
    size_t n = kraken_enum_type_count(e);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        int32_t number;
        if (kraken_enum_type_member(e, i, &name, &number) < 0)
            continue;
        kraken_value v = {KRAKEN_T_ENUM, e, {.i = number}};
        if (pu->n_values < MAX_VALUES_PER_URL) {
            int rc = add_value(pu, &v);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int collect_values(kraken_planner *p, const kraken_mutation *m)
{
    int rc = 0;
    for (size_t i = 0; i < m->n_mutates && rc == 0; i++) {
        pm_url *pu = &p->urls[m->mutates[i].u->model_index];
        rc = add_value(pu, &m->mutates[i].from);
        if (rc == 0)
            rc = add_value(pu, &m->mutates[i].to);
    }
    for (size_t i = 0; i < m->n_requires && rc == 0; i++)
        rc = add_value(&p->urls[m->requires[i].u->model_index], &m->requires[i].value);
    for (size_t i = 0; i < m->n_excludes && rc == 0; i++)
        rc = add_value(&p->urls[m->excludes[i].u->model_index], &m->excludes[i].value);
    return rc;
}

static uint8_t value_code(const pm_url *pu, const kraken_value *v)
{
    if (kraken_value_is_zero(v))
        return 0;
    for (size_t i = 0; i < pu->n_values; i++)
        if (kraken_value_equal(&pu->values[i], v))
            return (uint8_t)(i + 1);
    return code_other(pu); /* not reached: every declared value was collected */
}

static pm_fact make_fact(const kraken_planner *p, const kraken_mfact *f)
{
    size_t idx = f->u->model_index;
    bool is_static = idx >= p->n_m;
    pm_fact out = {(uint32_t)(is_static ? idx - p->n_m : idx), value_code(&p->urls[idx], &f->value),
                   is_static};
    return out;
}

static pm_fact *compile_facts(const kraken_planner *p, const kraken_mfact *in, size_t n)
{
    pm_fact *out = calloc(n ? n : 1, sizeof *out);
    if (out)
        for (size_t i = 0; i < n; i++)
            out[i] = make_fact(p, &in[i]);
    return out;
}

static int compile_mutation(const kraken_planner *p, const kraken_mutation *m, pm_mut *pm)
{
    pm->m = m;
    pm->n_ch = m->n_mutates;
    pm->n_req = m->n_requires;
    pm->n_exc = m->n_excludes;
    pm->ch = calloc(m->n_mutates, sizeof *pm->ch);
    pm->req = compile_facts(p, m->requires, m->n_requires);
    pm->exc = compile_facts(p, m->excludes, m->n_excludes);
    if (!pm->ch || !pm->req || !pm->exc)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    for (size_t i = 0; i < m->n_mutates; i++) {
        const kraken_mchange *c = &m->mutates[i];
        const pm_url *pu = &p->urls[c->u->model_index];
        pm->ch[i].u = (uint32_t)c->u->model_index;
        pm->ch[i].from = value_code(pu, &c->from);
        pm->ch[i].to = value_code(pu, &c->to);
    }
    return 0;
}

static bool fact_equal(const pm_fact *a, const pm_fact *b)
{
    return a->idx == b->idx && a->code == b->code && a->is_static == b->is_static;
}

static bool facts_contain(const pm_fact *facts, size_t n, const pm_fact *f)
{
    for (size_t i = 0; i < n; i++)
        if (fact_equal(&facts[i], f))
            return true;
    return false;
}

/* Discovery conditions of mutator URL @p u: the non-zero requires common to every mutation
 * that mutates u from zero (SPEC 4.2). A require "X is unknown" is no condition for knowing
 * u: with it, whether u is forgotten would depend on the order in which URLs are checked. */
static int compute_conditions(kraken_planner *p, uint32_t u)
{
    pm_url *pu = &p->urls[u];
    for (size_t i = 0; i < p->n_muts; i++) {
        const pm_mut *pm = &p->muts[i];
        bool from_zero = false;
        for (size_t c = 0; c < pm->n_ch; c++)
            if (pm->ch[c].u == u && pm->ch[c].from == 0)
                from_zero = true;
        if (!from_zero)
            continue;
        if (!pu->has_cond) {
            pu->has_cond = true;
            pu->cond = calloc(pm->n_req ? pm->n_req : 1, sizeof *pu->cond);
            if (!pu->cond)
                return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
            for (size_t k = 0; k < pm->n_req; k++)
                if (pm->req[k].code != 0)
                    pu->cond[pu->n_cond++] = pm->req[k];
            continue;
        }
        size_t kept = 0;
        for (size_t k = 0; k < pu->n_cond; k++)
            if (facts_contain(pm->req, pm->n_req, &pu->cond[k]))
                pu->cond[kept++] = pu->cond[k];
        pu->n_cond = kept;
    }
    return 0;
}

static char *zero_label(const pm_url *pu)
{
    if (pu->u->type == KRAKEN_T_ENUM && pu->u->enm) {
        const char *name = kraken_enum_type_lookup(pu->u->enm, 0);
        if (name)
            return strdup(name);
    }
    return strdup("(unknown)");
}

static int make_labels(pm_url *pu)
{
    size_t n = pu->n_values + 3;
    pu->labels = calloc(n, sizeof *pu->labels);
    if (!pu->labels)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    pu->labels[0] = zero_label(pu);
    for (size_t i = 0; i < pu->n_values; i++)
        if (kraken_value_format(&pu->values[i], &pu->labels[i + 1]) < 0)
            pu->labels[i + 1] = NULL;
    pu->labels[n - 2] = strdup("(cfg value)");
    pu->labels[n - 1] = strdup("(other)");
    for (size_t i = 0; i < n; i++)
        if (!pu->labels[i])
            return kraken__err(KRAKEN_ENOMEM, "planner: url '%s': cannot format values",
                               pu->u->text);
    return 0;
}

/* Table from enum number to code, when the numbers span a small range. */
static int make_enum_table(pm_url *pu)
{
    if (pu->u->type != KRAKEN_T_ENUM || pu->n_values == 0)
        return 0;
    int64_t lo = pu->values[0].v.i, hi = lo;
    for (size_t i = 1; i < pu->n_values; i++) {
        lo = pu->values[i].v.i < lo ? pu->values[i].v.i : lo;
        hi = pu->values[i].v.i > hi ? pu->values[i].v.i : hi;
    }
    if (hi - lo >= 1024)
        return 0; /* sparse enum: scan the values instead */
    pu->enum_lo = lo;
    pu->enum_n = (size_t)(hi - lo) + 1;
    pu->enum_codes = calloc(pu->enum_n, 1);
    if (!pu->enum_codes)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    for (size_t i = 0; i < pu->n_values; i++)
        pu->enum_codes[pu->values[i].v.i - lo] = (uint8_t)(i + 1);
    return 0;
}

/* Group URL @p pu under the record its parent URL names, when the parent is a record. */
static void assign_group(kraken_planner *p, pm_url *pu)
{
    const char *text = pu->u->text, *slash = strrchr(text, '/');
    pu->group = SIZE_MAX;
    if (!slash || !slash[1])
        return;
    pu->leaf = slash + 1;
    pu->leaf_len = strlen(pu->leaf);
    size_t plen = (size_t)(slash - text);
    for (size_t g = 0; g < p->n_groups; g++) {
        const char *gt = p->groups[g] ? kraken__url_text(p->groups[g]) : "";
        if (strlen(gt) == plen && strncmp(gt, text, plen) == 0) {
            pu->group = g;
            return;
        }
    }
    if (p->n_groups == MAX_GROUPS)
        return;
    kraken_url *parent = NULL;
    if (plen > 0) {
        char *ptext = kraken__strndup(text, plen);
        int rc = ptext ? kraken__url_compile(ptext, &parent) : KRAKEN_ENOMEM;
        free(ptext);
        if (rc < 0 || kraken__url_type(parent) != KRAKEN_T_RECORD ||
            strlen(kraken__url_text(parent)) != plen) {
            kraken__url_free(parent);
            kraken_error_clear();
            return;
        }
    }
    pu->group = p->n_groups;
    p->groups[p->n_groups++] = parent;
}

static int planner_build(kraken_mutation_set *set, kraken_planner **out)
{
    kraken_planner *p = calloc(1, sizeof *p);
    if (!p)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    p->generation = set->generation;
    int rc = assign_urls(p, set);
    for (size_t i = 0; i < set->n_muts && rc == 0; i++)
        rc = collect_values(p, set->muts[i]);
    for (size_t u = 0; u < p->n_m && rc == 0; u++)
        rc = add_enum_members(&p->urls[u]);
    if (rc == 0) {
        p->muts = calloc(set->n_muts ? set->n_muts : 1, sizeof *p->muts);
        if (!p->muts)
            rc = kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    }
    for (size_t i = 0; i < set->n_muts && rc == 0; i++) {
        p->n_muts = i + 1;
        rc = compile_mutation(p, set->muts[i], &p->muts[i]);
    }
    for (uint32_t u = 0; u < p->n_m && rc == 0; u++) {
        rc = compute_conditions(p, u);
        if (rc == 0)
            rc = make_labels(&p->urls[u]);
    }
    for (size_t u = 0; u < p->n_m + p->n_s && rc == 0; u++) {
        rc = make_enum_table(&p->urls[u]);
        assign_group(p, &p->urls[u]);
    }
    p->cache.klen = 2 * p->n_m + p->n_s;
    if (rc < 0) {
        kraken__planner_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int kraken__planner_get(kraken_mutation_set *set, kraken_planner **out)
{
    if (!set->planner || set->planner->generation != set->generation) {
        kraken__planner_free(set->planner);
        set->planner = NULL;
        int rc = planner_build(set, &set->planner);
        if (rc < 0)
            return rc;
    }
    *out = set->planner;
    return 0;
}

size_t kraken__planner_width(const kraken_planner *p)
{
    return p->n_m;
}

size_t kraken__planner_static_width(const kraken_planner *p)
{
    return p->n_s;
}

uint64_t kraken__planner_generation(const kraken_planner *p)
{
    return p->generation;
}

const char *kraken__planner_url_name(const kraken_planner *p, size_t u)
{
    return p->urls[u].name;
}

const char *kraken__planner_value_name(const kraken_planner *p, size_t u, uint8_t code)
{
    const pm_url *pu = &p->urls[u];
    return code < pu->n_values + 3 ? pu->labels[code] : "(invalid)";
}

/* ---- encoding nodes ----------------------------------------------------- */

/* Code of a stored slot; @p other for a non-zero value no declaration mentions. */
static inline uint8_t slot_code(const pm_url *pu, const kraken_slot *s, uint8_t other)
{
    if (pu->enum_codes) {
        if (!s || s->i == 0)
            return 0;
        uint64_t k = (uint64_t)(s->i - pu->enum_lo);
        uint8_t code = k < pu->enum_n ? pu->enum_codes[k] : 0;
        return code ? code : other;
    }
    if (!s || kraken__slot_is_zero(pu->u->type, s))
        return 0;
    for (size_t i = 0; i < pu->n_values; i++)
        if (kraken__mslot_matches(pu->u->type, s, &pu->values[i]))
            return (uint8_t)(i + 1);
    return other;
}

/* The records of every group on @p node (NULL when absent). */
static void group_records(const kraken_planner *p, const kraken_node *node,
                          const kraken_record **recs)
{
    for (size_t g = 0; g < p->n_groups; g++) {
        if (!p->groups[g]) {
            recs[g] = &node->rec;
            continue;
        }
        const kraken_slot *s = kraken__url_peek(p->groups[g], node);
        recs[g] = s ? s->rec : NULL;
    }
}

/* The slot of URL @p pu on @p node, through its group's record when it has one. The model's
 * field-index cache is updated, hence the non-const planner. */
static inline const kraken_slot *read_slot(pm_url *pu, const kraken_record *const *recs,
                                           const kraken_node *node)
{
    if (pu->group == SIZE_MAX)
        return kraken__url_peek(pu->u->url, node);
    const kraken_record *rec = recs[pu->group];
    if (!rec)
        return NULL;
    if (rec->schema != pu->leaf_schema) {
        const kraken_field *f = kraken__schema_field(rec->schema, pu->leaf, pu->leaf_len);
        if (!f || f->type != pu->u->type)
            return kraken__url_peek(pu->u->url, node);
        pu->leaf_schema = rec->schema;
        pu->leaf_index = (size_t)(f - rec->schema->fields);
    }
    return &rec->slots[pu->leaf_index];
}

static void encode_statics_with(kraken_planner *p, const kraken_record *const *recs,
                                const kraken_node *cfg, uint8_t *statics)
{
    for (size_t j = 0; j < p->n_s; j++) {
        pm_url *pu = &p->urls[p->n_m + j];
        statics[j] = slot_code(pu, read_slot(pu, recs, cfg), code_other_goal(pu));
    }
}

void kraken__planner_encode_statics(kraken_planner *p, const kraken_node *cfg, uint8_t *statics)
{
    const kraken_record *recs[MAX_GROUPS];
    group_records(p, cfg, recs);
    encode_statics_with(p, recs, cfg, statics);
}

/* key = start vector | static vector | goal vector */
static void encode_key(kraken_planner *p, const kraken_node *cfg, const kraken_node *dsc,
                       uint8_t *key)
{
    uint8_t *start = key, *statics = key + p->n_m, *goal = key + p->n_m + p->n_s;
    const kraken_record *crecs[MAX_GROUPS], *drecs[MAX_GROUPS];
    group_records(p, cfg, crecs);
    group_records(p, dsc, drecs);
    for (size_t u = 0; u < p->n_m; u++) {
        pm_url *pu = &p->urls[u];
        const kraken_slot *ds = read_slot(pu, drecs, dsc);
        const kraken_slot *cs = read_slot(pu, crecs, cfg);
        goal[u] = slot_code(pu, cs, code_other_goal(pu));
        start[u] = slot_code(pu, ds, code_other(pu));
        if (start[u] == code_other(pu) && goal[u] == code_other_goal(pu) &&
            kraken__slot_equal(NULL, pu->u->type, ds, cs)) /* both non-zero scalars here */
            start[u] = code_other_goal(pu);
    }
    encode_statics_with(p, crecs, cfg, statics);
}

/* ---- applying mutations ------------------------------------------------- */

/* With @p statics NULL a static fact evaluates to @p unknown_static. */
static bool fact_holds(const pm_fact *f, const uint8_t *state, const uint8_t *statics,
                       bool unknown_static)
{
    if (f->is_static)
        return statics ? statics[f->idx] == f->code : unknown_static;
    return state[f->idx] == f->code;
}

static bool conditions_hold(const pm_url *pu, const uint8_t *state, const uint8_t *statics)
{
    for (size_t i = 0; i < pu->n_cond; i++)
        if (!fact_holds(&pu->cond[i], state, statics, true))
            return false;
    return true;
}

/* The knowledge rule: forget values whose discovery conditions fail, to a fixpoint.
 * Only zeroing happens, so it ends after at most width rounds. */
static void apply_knowledge(const kraken_planner *p, uint8_t *state, const uint8_t *statics)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (size_t u = 0; u < p->n_m; u++) {
            const pm_url *pu = &p->urls[u];
            if (state[u] && pu->has_cond && !conditions_hold(pu, state, statics)) {
                state[u] = 0;
                changed = true;
            }
        }
    }
}

static bool mutation_applies(const pm_mut *pm, const uint8_t *state, const uint8_t *statics)
{
    if (pm->m->disabled)
        return false;
    for (size_t i = 0; i < pm->n_ch; i++)
        if (state[pm->ch[i].u] != pm->ch[i].from)
            return false;
    for (size_t i = 0; i < pm->n_req; i++)
        if (!fact_holds(&pm->req[i], state, statics, true))
            return false;
    for (size_t i = 0; i < pm->n_exc; i++)
        if (fact_holds(&pm->exc[i], state, statics, false))
            return false;
    return true;
}

bool kraken__planner_apply(const kraken_planner *p, size_t i, const uint8_t *state,
                           const uint8_t *statics, uint8_t *next)
{
    const pm_mut *pm = &p->muts[i];
    if (!mutation_applies(pm, state, statics))
        return false;
    memcpy(next, state, p->n_m);
    for (size_t c = 0; c < pm->n_ch; c++)
        next[pm->ch[c].u] = pm->ch[c].to;
    apply_knowledge(p, next, statics);
    return true;
}

static bool is_goal(const kraken_planner *p, const uint8_t *state, const uint8_t *goal)
{
    for (size_t u = 0; u < p->n_m; u++)
        if (goal[u] && state[u] != goal[u])
            return false;
    return true;
}

/* ---- search ------------------------------------------------------------- */

typedef struct snode {
    uint64_t dist;
    int64_t parent;     /* -1 for the start */
    uint32_t via;       /* mutation index from parent */
    uint32_t depth;
    bool done;
} snode;

typedef struct heap_item {
    uint64_t dist;
    size_t state;
} heap_item;

typedef struct search {
    const kraken_planner *p;
    size_t max_states;
    const uint8_t *statics, *goal;
    kraken_stateset *ss;
    snode *nodes;
    size_t cap_nodes;
    heap_item *heap;
    size_t n_heap, cap_heap;
    uint32_t *path_a, *path_b;  /* scratch for path comparisons */
    size_t cap_path;
} search;

static bool heap_less(const heap_item *a, const heap_item *b)
{
    return a->dist < b->dist || (a->dist == b->dist && a->state < b->state);
}

static int heap_push(search *s, uint64_t dist, size_t state)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 64;
        heap_item *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    heap_item item = {dist, state};
    while (i > 0 && heap_less(&item, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = item;
    return 0;
}

static heap_item heap_pop(search *s)
{
    heap_item top = s->heap[0];
    heap_item last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap)
            break;
        if (c + 1 < s->n_heap && heap_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!heap_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap)
        s->heap[i] = last;
    return top;
}

/* Mutation indexes along the path to @p state, then @p last if not UINT32_MAX. */
static size_t path_of(const search *s, int64_t state, uint32_t last, uint32_t *buf)
{
    size_t len = state >= 0 ? s->nodes[state].depth : 0;
    size_t n = len;
    while (state >= 0 && n > 0) {
        buf[--n] = s->nodes[state].via;
        state = s->nodes[state].parent;
    }
    if (last != UINT32_MAX)
        buf[len++] = last;
    return len;
}

/* Lexicographic comparison of path(a)+ea with path(b)+eb (ea/eb UINT32_MAX: none). */
static int path_cmp(search *s, int64_t a, uint32_t ea, int64_t b, uint32_t eb)
{
    size_t na = path_of(s, a, ea, s->path_a);
    size_t nb = path_of(s, b, eb, s->path_b);
    for (size_t i = 0; i < na && i < nb; i++)
        if (s->path_a[i] != s->path_b[i])
            return s->path_a[i] < s->path_b[i] ? -1 : 1;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static int search_reserve(search *s, size_t n_states)
{
    if (n_states > s->cap_nodes) {
        size_t cap = s->cap_nodes ? s->cap_nodes * 2 : 64;
        snode *nodes = realloc(s->nodes, cap * sizeof *nodes);
        if (!nodes)
            return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
        s->nodes = nodes;
        s->cap_nodes = cap;
        uint32_t *a = realloc(s->path_a, (cap + 1) * sizeof *a);
        if (a)
            s->path_a = a;
        uint32_t *b = a ? realloc(s->path_b, (cap + 1) * sizeof *b) : NULL;
        if (b)
            s->path_b = b;
        if (!a || !b)
            return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    }
    return 0;
}

/* Offer state @p next, reached from @p from by mutation @p mi at cost @p dist. */
static int relax(search *s, size_t from, uint32_t mi, const uint8_t *next, uint64_t dist)
{
    size_t t;
    bool added;
    int rc = kraken__stateset_intern(s->ss, next, &t, &added);
    if (rc < 0)
        return rc;
    if (added) {
        if (kraken__stateset_count(s->ss) > s->max_states)
            return kraken__err(KRAKEN_ELIMIT, "planner: more than %zu planning states",
                               s->max_states);
        if ((rc = search_reserve(s, t + 1)) < 0)
            return rc;
        s->nodes[t] = (snode){UINT64_MAX, -1, 0, 0, false};
    }
    snode *n = &s->nodes[t];
    if (n->done)
        return 0;
    bool better = dist < n->dist ||
                  (dist == n->dist && path_cmp(s, (int64_t)from, mi, n->parent, n->via) < 0);
    if (!better)
        return 0;
    bool push = dist < n->dist;
    n->dist = dist;
    n->parent = (int64_t)from;
    n->via = mi;
    n->depth = s->nodes[from].depth + 1;
    return push ? heap_push(s, dist, t) : 0;
}

static int expand(search *s, size_t state, uint8_t *cur, uint8_t *next)
{
    const kraken_planner *p = s->p;
    memcpy(cur, kraken__stateset_vec(s->ss, state), p->n_m);
    for (size_t mi = 0; mi < p->n_muts; mi++) {
        if (!kraken__planner_apply(p, mi, cur, s->statics, next))
            continue;
        int rc = relax(s, state, (uint32_t)mi, next, s->nodes[state].dist + p->muts[mi].m->cost);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Uniform-cost search; *goal_state = best goal or SIZE_MAX when none is reachable. */
static int run_search(search *s, const uint8_t *start, size_t *goal_state)
{
    const kraken_planner *p = s->p;
    size_t w = p->n_m ? p->n_m : 1;
    uint8_t *cur = malloc(w), *next = malloc(w);
    size_t st;
    bool added;
    int rc = cur && next ? 0 : kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    if (rc == 0)
        rc = kraken__stateset_intern(s->ss, start, &st, &added);
    if (rc == 0)
        rc = search_reserve(s, 1);
    if (rc == 0) {
        s->nodes[st] = (snode){0, -1, 0, 0, false};
        rc = heap_push(s, 0, st);
    }
    size_t best = SIZE_MAX;
    while (rc == 0 && s->n_heap) {
        heap_item it = heap_pop(s);
        snode *n = &s->nodes[it.state];
        if (n->done || it.dist > n->dist)
            continue;
        if (best != SIZE_MAX && it.dist > s->nodes[best].dist)
            break;
        n->done = true;
        if (is_goal(p, kraken__stateset_vec(s->ss, it.state), s->goal)) {
            if (best == SIZE_MAX ||
                path_cmp(s, (int64_t)it.state, UINT32_MAX, (int64_t)best, UINT32_MAX) < 0)
                best = it.state;
            continue;
        }
        rc = expand(s, it.state, cur, next);
    }
    free(cur);
    free(next);
    *goal_state = best;
    return rc;
}

/* ---- plans -------------------------------------------------------------- */

static int plan_build(search *s, size_t goal_state, kraken_plan **out)
{
    const kraken_planner *p = s->p;
    size_t n = s->nodes[goal_state].depth, w = p->n_m;
    size_t *states = malloc((n + 1) * sizeof *states);
    if (!states)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    size_t text = 0;
    int64_t st = (int64_t)goal_state;
    for (size_t k = n + 1; k-- > 0;) {
        states[k] = (size_t)st;
        if (k > 0) {
            const kraken_mutation *m = p->muts[s->nodes[st].via].m;
            text += strlen(m->service) + strlen(m->id) + 2;
            st = s->nodes[st].parent;
        }
    }
    size_t ptrs = 2 * n * sizeof(char *);
    kraken_plan *plan = malloc(sizeof *plan + ptrs + (n + 1) * w + text);
    if (!plan) {
        free(states);
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    }
    plan->refs = 1;
    plan->n = n;
    plan->cost = s->nodes[goal_state].dist;
    plan->generation = p->generation;
    plan->width = w;
    plan->service = (const char **)(plan + 1);
    plan->mutation = plan->service + n;
    plan->states = (uint8_t *)(plan->mutation + n);
    char *chars = (char *)plan->states + (n + 1) * w;
    for (size_t k = 0; k <= n; k++) {
        if (w)
            memcpy(plan->states + k * w, kraken__stateset_vec(s->ss, states[k]), w);
        if (k == n)
            break;
        const kraken_mutation *m = p->muts[s->nodes[states[k + 1]].via].m;
        size_t ls = strlen(m->service) + 1, li = strlen(m->id) + 1;
        plan->service[k] = memcpy(chars, m->service, ls);
        plan->mutation[k] = memcpy(chars + ls, m->id, li);
        chars += ls + li;
    }
    free(states);
    *out = plan;
    return 0;
}

/* Plan from key (start|statics|goal): *out NULL when there is no path. */
static int plan_search(const kraken_planner *p, size_t max_states, const uint8_t *key,
                       kraken_plan **out)
{
    *out = NULL;
    size_t w = p->n_m ? p->n_m : 1;
    search s = {.p = p, .max_states = max_states, .statics = key + p->n_m, .goal = key + p->n_m + p->n_s};
    uint8_t *start = malloc(w);
    s.ss = kraken__stateset_new(p->n_m);
    int rc = start && s.ss ? 0 : kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    size_t goal = SIZE_MAX;
    if (rc == 0) {
        memcpy(start, key, p->n_m);
        apply_knowledge(p, start, s.statics);
        rc = run_search(&s, start, &goal);
    }
    if (rc == 0 && goal != SIZE_MAX)
        rc = plan_build(&s, goal, out);
    free(start);
    kraken__stateset_free(s.ss);
    free(s.nodes);
    free(s.heap);
    free(s.path_a);
    free(s.path_b);
    return rc;
}

size_t kraken_plan_length(const kraken_plan *plan)
{
    return plan ? plan->n : 0;
}

const char *kraken_plan_step_service(const kraken_plan *plan, size_t i)
{
    return plan && i < plan->n ? plan->service[i] : NULL;
}

const char *kraken_plan_step_mutation(const kraken_plan *plan, size_t i)
{
    return plan && i < plan->n ? plan->mutation[i] : NULL;
}

uint64_t kraken_plan_cost(const kraken_plan *plan)
{
    return plan ? plan->cost : 0;
}

void kraken_plan_free(kraken_plan *plan)
{
    if (plan && __atomic_sub_fetch(&plan->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(plan);
}

const uint8_t *kraken__plan_state(const kraken_plan *plan, size_t i)
{
    return plan->states + i * plan->width;
}

uint64_t kraken__plan_generation(const kraken_plan *plan)
{
    return plan->generation;
}

static kraken_plan *plan_ref(kraken_plan *plan)
{
    __atomic_add_fetch(&plan->refs, 1, __ATOMIC_RELAXED);
    return plan;
}

/* ---- cache -------------------------------------------------------------- */

static cache_slot *cache_find(const plan_cache *c, const uint8_t *key, uint64_t hash)
{
    if (!c->cap)
        return NULL;
    size_t mask = c->cap - 1;
    for (size_t i = (size_t)hash & mask; c->slots[i].used; i = (i + 1) & mask)
        if (c->slots[i].hash == hash && memcmp(c->keys + i * c->klen, key, c->klen) == 0)
            return &c->slots[i];
    return NULL;
}

static void cache_place(plan_cache *c, uint64_t hash, const uint8_t *key, kraken_plan *plan,
                        char *why, uint8_t used)
{
    size_t mask = c->cap - 1, i = (size_t)hash & mask;
    while (c->slots[i].used)
        i = (i + 1) & mask;
    c->slots[i] = (cache_slot){hash, plan, why, used};
    memcpy(c->keys + i * c->klen, key, c->klen);
    c->n++;
}

static int cache_grow(plan_cache *c)
{
    size_t cap = c->cap ? c->cap * 2 : 256;
    cache_slot *slots = calloc(cap, sizeof *slots);
    uint8_t *keys = malloc(cap * (c->klen ? c->klen : 1));
    if (!slots || !keys) {
        free(slots);
        free(keys);
        return KRAKEN_ENOMEM;
    }
    plan_cache old = *c;
    c->slots = slots;
    c->keys = keys;
    c->cap = cap;
    c->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].used)
            cache_place(c, old.slots[i].hash, old.keys + i * old.klen, old.slots[i].plan,
                        old.slots[i].why, old.slots[i].used);
    free(old.slots);
    free(old.keys);
    return 0;
}

/* Remember a result (a plan, or "no path" with the text of its states); the cache takes
 * its own reference / the text. Failing to cache is harmless. */
static const cache_slot *cache_put(plan_cache *c, const uint8_t *key, uint64_t hash, kraken_plan *plan,
                             char *why)
{
    if (c->n >= CACHE_MAX_ENTRIES)
        cache_clear(c); /* crude, but bounded: thousands of nodes share few states */
    if ((c->n + 1) * 2 > c->cap && cache_grow(c) < 0)
        return NULL; /* the caller keeps @p why */
    cache_place(c, hash, key, plan ? plan_ref(plan) : NULL, why, plan ? 1 : 2);
    return cache_find(c, key, hash);
}

/* ---- public planning entry point --------------------------------------- */

static void append_state_text(const kraken_planner *p, const uint8_t *state, bool skip_zero,
                              char *buf, size_t size)
{
    size_t len = strlen(buf);
    bool first = true;
    for (size_t u = 0; u < p->n_m && len + 1 < size; u++) {
        if (skip_zero && !state[u])
            continue;
        int k = snprintf(buf + len, size - len, "%s%s=%s", first ? "" : ", ", p->urls[u].name,
                         kraken__planner_value_name(p, u, state[u]));
        if (k < 0)
            break;
        len += (size_t)k < size - len ? (size_t)k : size - len - 1;
        first = false;
    }
}

/* "{start} to goal {goal}" of a key with no path: built once per key, then cached. */
static char *no_path_text(const kraken_planner *p, const uint8_t *key)
{
    char text[512] = "";
    uint8_t *start = malloc(p->n_m ? p->n_m : 1);
    if (start) {
        memcpy(start, key, p->n_m);
        apply_knowledge(p, start, key + p->n_m);
        append_state_text(p, start, false, text, sizeof text);
        free(start);
    }
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, "} to goal {");
    append_state_text(p, key + p->n_m + p->n_s, true, text, sizeof text);
    return strdup(text);
}

static int deliver(const kraken_node *cfg, kraken_plan *plan, const char *why, kraken_plan **out)
{
    if (!plan) {
        char id[KRAKEN_UUID_STRLEN + 1];
        return kraken__err(KRAKEN_ENOPATH, "node %s: no mutation path from {%s}",
                           kraken_uuid_format(kraken_node_id(cfg), id),
                           why ? why : "(out of memory)");
    }
    *out = plan_ref(plan);
    return 0;
}

int kraken_mutation_set_plan(kraken_mutation_set *set, const kraken_node *cfg,
                             const kraken_node *dsc, kraken_plan **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_plan: out is NULL");
    *out = NULL;
    if (!set || !cfg || !dsc)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_plan: set, cfg and dsc are "
                           "required");
    kraken_planner *p;
    int rc = kraken__planner_get(set, &p);
    if (rc < 0)
        return rc;
    uint8_t stack_key[KEY_STACK_BYTES];
    size_t klen = p->cache.klen;
    uint8_t *key = klen <= sizeof stack_key ? stack_key : malloc(klen);
    if (!key)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    encode_key(p, cfg, dsc, key);
    uint64_t hash = hash_bytes(key, klen);
    cache_slot *hit = cache_find(&p->cache, key, hash);
    if (hit) {
        rc = deliver(cfg, hit->plan, hit->why, out);
    } else {
        kraken_plan *plan = NULL;
        set->searches++;
        rc = plan_search(p, set->max_states, key, &plan);
        if (rc == 0) {
            char *why = plan ? NULL : no_path_text(p, key);
            bool cached = cache_put(&p->cache, key, hash, plan, why) != NULL;
            rc = deliver(cfg, plan, why, out);
            if (!cached)
                free(why);
            kraken_plan_free(plan);
        }
    }
    if (key != stack_key)
        free(key);
    return rc;
}

/* ---- knowledge rule for the engine -------------------------------------- */

int kraken__mutation_set_stale(kraken_mutation_set *set, const kraken_node *cfg,
                               const kraken_node *dsc,
                               int (*fn)(const kraken_murl *u, void *userdata), void *userdata)
{
    if (!set || !cfg || !dsc || !fn)
        return kraken__err(KRAKEN_EINVAL, "kraken__mutation_set_stale: missing argument");
    kraken_planner *p;
    int rc = kraken__planner_get(set, &p);
    if (rc < 0)
        return rc;
    size_t klen = p->cache.klen;
    uint8_t *key = malloc(klen + p->n_m + 1);
    if (!key)
        return kraken__err(KRAKEN_ENOMEM, "planner: out of memory");
    uint8_t *after = key + klen;
    encode_key(p, cfg, dsc, key);
    memcpy(after, key, p->n_m);
    apply_knowledge(p, after, key + p->n_m);
    for (size_t u = 0; u < p->n_m && rc == 0; u++)
        if (key[u] && !after[u])
            rc = fn(p->urls[u].u, userdata);
    free(key);
    return rc < 0 ? rc : 0;
}
