/*
 * The mutation graph (SPEC 4.2, REST 9.2) in vis.js form.
 *
 * Vertices are the planning states reachable from the all-unknown state (and from a given
 * plan's start, so a node's current state is always shown); edges are the mutations that
 * apply to them. Ids are FNV-1a hashes of content — a vertex hashes "url=value;" for every
 * mutator URL, an edge hashes its source vertex id and "service/mutation" — so they are the
 * same across runs, restarts and registration orders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "planner_private.h"

#define COLOR_VERTEX "#97c2fc"
#define COLOR_VERTEX_PLAN "#7be141"
#define COLOR_VERTEX_CURRENT "#fb7e81"
#define COLOR_EDGE "#848484"
#define COLOR_EDGE_PLAN "green"
#define COLOR_EDGE_CURRENT "red"

typedef struct gedge {
    size_t from, to;
    size_t mut;
    const char *color;
} gedge;

typedef struct graph {
    kraken_planner *p;
    const kraken_mutation_set *set;
    kraken_stateset *ss;
    gedge *edges;
    size_t n_edges, cap_edges;
    char (*ids)[17];          /* vertex ids, hex */
    const char **colors;      /* vertex colours */
} graph;

typedef struct hasher {
    uint64_t h;
} hasher;

static void hash_text(hasher *h, const char *s)
{
    for (; *s; s++) {
        h->h ^= (uint8_t)*s;
        h->h *= 1099511628211ull;
    }
}

static void hash_hex(const hasher *h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h->h);
}

static int add_edge(graph *g, size_t from, size_t to, size_t mut)
{
    if (g->n_edges == g->cap_edges) {
        size_t cap = g->cap_edges ? g->cap_edges * 2 : 64;
        gedge *e = realloc(g->edges, cap * sizeof *e);
        if (!e)
            return kraken__err(KRAKEN_ENOMEM, "mutation graph: out of memory");
        g->edges = e;
        g->cap_edges = cap;
    }
    g->edges[g->n_edges++] = (gedge){from, to, mut, COLOR_EDGE};
    return 0;
}

static int intern_state(graph *g, const uint8_t *vec, size_t *index)
{
    bool added;
    int rc = kraken__stateset_intern(g->ss, vec, index, &added);
    if (rc == 0 && added && kraken__stateset_count(g->ss) > g->set->max_states)
        rc = kraken__err(KRAKEN_ELIMIT, "mutation graph: more than %zu reachable states",
                         g->set->max_states);
    return rc;
}

/* Breadth-first: the stateset's index order is the visiting order. */
static int explore(graph *g, const uint8_t *statics, uint8_t *cur, uint8_t *next)
{
    size_t w = kraken__planner_width(g->p), n_muts = g->set->n_muts;
    for (size_t s = 0; s < kraken__stateset_count(g->ss); s++) {
        if (w)
            memcpy(cur, kraken__stateset_vec(g->ss, s), w);
        for (size_t mi = 0; mi < n_muts; mi++) {
            if (!kraken__planner_apply(g->p, mi, cur, statics, next))
                continue;
            size_t t;
            int rc = intern_state(g, next, &t);
            if (rc == 0)
                rc = add_edge(g, s, t, mi);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static bool plan_usable(const graph *g, const kraken_plan *plan)
{
    return plan && kraken__plan_generation(plan) == kraken__planner_generation(g->p);
}

static int build_states(graph *g, const kraken_node *cfg, const kraken_plan *plan)
{
    size_t w = kraken__planner_width(g->p), ns = kraken__planner_static_width(g->p);
    uint8_t *cur = calloc(w + 1, 1), *next = calloc(w + 1, 1), *statics = calloc(ns + 1, 1);
    int rc = cur && next && statics ? 0 : kraken__err(KRAKEN_ENOMEM, "mutation graph: out of "
                                                      "memory");
    size_t idx;
    if (rc == 0)
        rc = intern_state(g, cur, &idx); /* all unknown */
    if (rc == 0 && plan_usable(g, plan))
        rc = intern_state(g, kraken__plan_state(plan, 0), &idx);
    if (rc == 0) {
        if (cfg)
            kraken__planner_encode_statics(g->p, cfg, statics);
        rc = explore(g, cfg ? statics : NULL, cur, next);
    }
    free(cur);
    free(next);
    free(statics);
    return rc;
}

static int name_vertices(graph *g)
{
    size_t n = kraken__stateset_count(g->ss), w = kraken__planner_width(g->p);
    g->ids = calloc(n, sizeof *g->ids);
    g->colors = calloc(n, sizeof *g->colors);
    if (!g->ids || !g->colors)
        return kraken__err(KRAKEN_ENOMEM, "mutation graph: out of memory");
    for (size_t s = 0; s < n; s++) {
        const uint8_t *vec = kraken__stateset_vec(g->ss, s);
        hasher h = {1469598103934665603ull};
        for (size_t u = 0; u < w; u++) {
            hash_text(&h, kraken__planner_url_name(g->p, u));
            hash_text(&h, "=");
            hash_text(&h, kraken__planner_value_name(g->p, u, vec[u]));
            hash_text(&h, ";");
        }
        hash_hex(&h, g->ids[s]);
        g->colors[s] = COLOR_VERTEX;
    }
    return 0;
}

static void edge_id(const graph *g, const gedge *e, char out[17])
{
    const kraken_mutation *m = g->set->muts[e->mut];
    hasher h = {1469598103934665603ull};
    hash_text(&h, g->ids[e->from]);
    hash_text(&h, "|");
    hash_text(&h, m->service);
    hash_text(&h, "/");
    hash_text(&h, m->id);
    hash_hex(&h, out);
}

static void mark_step(graph *g, const kraken_plan *plan, size_t k, bool current)
{
    size_t from = kraken__stateset_find(g->ss, kraken__plan_state(plan, k));
    size_t to = kraken__stateset_find(g->ss, kraken__plan_state(plan, k + 1));
    const char *svc = kraken_plan_step_service(plan, k), *mid = kraken_plan_step_mutation(plan, k);
    for (size_t i = 0; i < g->n_edges; i++) {
        gedge *e = &g->edges[i];
        const kraken_mutation *m = g->set->muts[e->mut];
        if (e->from == from && e->to == to && strcmp(m->service, svc) == 0 &&
            strcmp(m->id, mid) == 0)
            e->color = current ? COLOR_EDGE_CURRENT : COLOR_EDGE_PLAN;
    }
    if (from != SIZE_MAX)
        g->colors[from] = current ? COLOR_VERTEX_CURRENT : COLOR_VERTEX_PLAN;
    if (to != SIZE_MAX && strcmp(g->colors[to], COLOR_VERTEX_CURRENT) != 0)
        g->colors[to] = COLOR_VERTEX_PLAN;
}

static void highlight(graph *g, const kraken_plan *plan, size_t current_step)
{
    if (!plan_usable(g, plan))
        return;
    size_t n = kraken_plan_length(plan);
    for (size_t k = 0; k < n; k++)
        mark_step(g, plan, k, false);
    if (current_step < n)
        mark_step(g, plan, current_step, true);
}

static char *vertex_label(const graph *g, size_t s)
{
    size_t w = kraken__planner_width(g->p), len = 1;
    const uint8_t *vec = kraken__stateset_vec(g->ss, s);
    for (size_t u = 0; u < w; u++)
        len += strlen(kraken__planner_url_name(g->p, u)) +
               strlen(kraken__planner_value_name(g->p, u, vec[u])) + 3;
    if (w == 0)
        return strdup("(no mutator urls)");
    char *label = malloc(len);
    if (!label)
        return NULL;
    size_t pos = 0;
    for (size_t u = 0; u < w; u++)
        pos += (size_t)snprintf(label + pos, len - pos, "%s%s=%s", u ? ", " : "",
                                kraken__planner_url_name(g->p, u),
                                kraken__planner_value_name(g->p, u, vec[u]));
    return label;
}

static bool add_strings(cJSON *obj, const char *const *kv, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        if (!cJSON_AddStringToObject(obj, kv[i], kv[i + 1]))
            return false;
    return true;
}

static bool json_vertices(const graph *g, cJSON *nodes)
{
    for (size_t s = 0; s < kraken__stateset_count(g->ss); s++) {
        char *label = vertex_label(g, s);
        cJSON *v = cJSON_CreateObject();
        const char *kv[] = {"id", g->ids[s], "label", label, "color", g->colors[s]};
        bool ok = label && v && add_strings(v, kv, 6) && cJSON_AddItemToArray(nodes, v);
        free(label);
        if (!ok) {
            cJSON_Delete(v);
            return false;
        }
    }
    return true;
}

static bool json_edges(const graph *g, cJSON *edges)
{
    for (size_t i = 0; i < g->n_edges; i++) {
        const gedge *e = &g->edges[i];
        const kraken_mutation *m = g->set->muts[e->mut];
        char id[17], label[256];
        edge_id(g, e, id);
        snprintf(label, sizeof label, "%s/%s", m->service, m->id);
        cJSON *o = cJSON_CreateObject();
        const char *kv[] = {"from", g->ids[e->from], "to", g->ids[e->to], "id", id,
                            "label", label, "color", e->color};
        if (!o || !add_strings(o, kv, 10) || !cJSON_AddItemToArray(edges, o)) {
            cJSON_Delete(o);
            return false;
        }
    }
    return true;
}

static int to_json(const graph *g, char **out)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *nodes = root ? cJSON_AddArrayToObject(root, "nodes") : NULL;
    cJSON *edges = nodes ? cJSON_AddArrayToObject(root, "edges") : NULL;
    bool ok = edges && json_vertices(g, nodes) && json_edges(g, edges);
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return kraken__err(KRAKEN_ENOMEM, "mutation graph: out of memory");
    *out = text;
    return 0;
}

int kraken_mutation_set_graph_json(kraken_mutation_set *set, const kraken_node *cfg,
                                   const kraken_plan *plan, size_t current_step, char **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_graph_json: out is NULL");
    *out = NULL;
    if (!set)
        return kraken__err(KRAKEN_EINVAL, "kraken_mutation_set_graph_json: set is NULL");
    graph g = {.set = set};
    kraken_planner *p;
    int rc = kraken__planner_get(set, &p);
    if (rc < 0)
        return rc;
    g.p = p;
    g.ss = kraken__stateset_new(kraken__planner_width(p));
    if (!g.ss)
        return kraken__err(KRAKEN_ENOMEM, "mutation graph: out of memory");
    rc = build_states(&g, cfg, plan);
    if (rc == 0)
        rc = name_vertices(&g);
    if (rc == 0) {
        highlight(&g, plan, current_step);
        rc = to_json(&g, out);
    }
    kraken__stateset_free(g.ss);
    free(g.edges);
    free(g.ids);
    free(g.colors);
    return rc;
}
