/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * table.c: aligned text tables, coloured with ANSI SGR codes when stdout is a
 * terminal, and the Cfg-vs-Dsc node table shared by `list` and `watch`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"

#define SGR_GREEN "32"
#define SGR_YELLOW "33"
#define SGR_RED "1;31"
#define SGR_DIM "2"
#define SGR_BOLD "1"

struct kc_table {
    size_t n_cols, n_rows, cap;
    char **cells;        /* n_rows * n_cols, row 0 is the header */
    const char **colors; /* same shape */
    size_t *width;
};

static bool table_grow(kc_table *t)
{
    if (t->n_rows < t->cap)
        return true;
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **cells = realloc(t->cells, cap * t->n_cols * sizeof *cells);
    if (!cells)
        return false;
    t->cells = cells;
    const char **colors = realloc(t->colors, cap * t->n_cols * sizeof *colors);
    if (!colors)
        return false;
    t->colors = colors;
    t->cap = cap;
    return true;
}

kc_table *kc_table_new(size_t n_cols, const char *const *headers)
{
    kc_table *t = calloc(1, sizeof *t);
    if (!t || !(t->width = calloc(n_cols, sizeof *t->width))) {
        free(t);
        return NULL;
    }
    t->n_cols = n_cols;
    const char *bold[16];
    for (size_t i = 0; i < n_cols && i < 16; i++)
        bold[i] = SGR_BOLD;
    kc_table_add(t, headers, bold);
    return t;
}

void kc_table_add(kc_table *t, const char *const *cells, const char *const *colors)
{
    if (!t || !table_grow(t))
        return;
    for (size_t c = 0; c < t->n_cols; c++) {
        const char *text = cells[c] ? cells[c] : "";
        t->cells[t->n_rows * t->n_cols + c] = strdup(text);
        t->colors[t->n_rows * t->n_cols + c] = colors ? colors[c] : NULL;
        size_t w = strlen(text);
        if (w > t->width[c])
            t->width[c] = w;
    }
    t->n_rows++;
}

void kc_table_print(kc_table *t, bool color, FILE *out)
{
    if (!t)
        return;
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            const char *text = t->cells[r * t->n_cols + c];
            const char *sgr = t->colors[r * t->n_cols + c];
            /* no padding after the last non-empty cell: no trailing blanks */
            bool last = true;
            for (size_t k = c + 1; k < t->n_cols && last; k++)
                last = !t->cells[r * t->n_cols + k] || !t->cells[r * t->n_cols + k][0];
            if (color && sgr && text && *text)
                fprintf(out, "\033[%sm%s\033[0m", sgr, text ? text : "");
            else
                fputs(text ? text : "", out);
            if (!last)
                fprintf(out, "%*s", (int)(t->width[c] - strlen(text ? text : "") + 2), "");
        }
        fputc('\n', out);
    }
}

void kc_table_free(kc_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->colors);
    free(t->width);
    free(t);
}

static bool is_error_state(const char *v)
{
    return strcmp(v, "PHYS_ERROR") == 0 || strcmp(v, "PHYS_HANG") == 0 ||
           strcmp(v, "ERROR") == 0;
}

const char *kc_state_color(const char *cfg, const char *dsc)
{
    if (is_error_state(dsc))
        return SGR_RED;
    if (!*cfg || strcmp(cfg, dsc) == 0)
        return *dsc ? SGR_GREEN : SGR_DIM;
    return SGR_YELLOW;
}

const char *kc_node_field(const cJSON *node, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

const cJSON *kc_find_node(const cJSON *list, const char *id)
{
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(list, "nodes");
    const cJSON *n;
    cJSON_ArrayForEach(n, nodes)
    {
        if (strcmp(kc_node_field(n, "id"), id) == 0)
            return n;
    }
    return NULL;
}

const cJSON *kc_find_node_next(const cJSON *list, const char *id, const cJSON **cursor)
{
    const cJSON *next = *cursor ? (*cursor)->next
                                : cJSON_GetObjectItemCaseSensitive(list, "nodes")
                                      ? cJSON_GetObjectItemCaseSensitive(list, "nodes")->child
                                      : NULL;
    if (next && strcmp(kc_node_field(next, "id"), id) == 0) {
        *cursor = next;
        return next;
    }
    const cJSON *found = kc_find_node(list, id);
    if (found)
        *cursor = found;
    return found;
}

/* Nodes of a list sorted by id, for lookups in O(log n) (10,000-node clusters). */
typedef struct node_index {
    size_t n;
    const cJSON **nodes;
} node_index;

static int by_id(const void *a, const void *b)
{
    return strcmp(kc_node_field(*(const cJSON *const *)a, "id"),
                  kc_node_field(*(const cJSON *const *)b, "id"));
}

static node_index index_nodes(const cJSON *list)
{
    node_index ix = {0, NULL};
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(list, "nodes");
    size_t n = (size_t)cJSON_GetArraySize(nodes);
    if (n == 0 || !(ix.nodes = malloc(n * sizeof *ix.nodes)))
        return ix;
    const cJSON *node;
    cJSON_ArrayForEach(node, nodes) ix.nodes[ix.n++] = node;
    qsort(ix.nodes, ix.n, sizeof *ix.nodes, by_id);
    return ix;
}

static const cJSON *index_find(const node_index *ix, const char *id)
{
    cJSON key_node = {0};
    cJSON key_id = {0};
    key_id.type = cJSON_String;
    key_id.valuestring = (char *)id;
    key_id.string = (char *)"id";
    key_node.type = cJSON_Object;
    key_node.child = &key_id;
    const cJSON *key = &key_node;
    const cJSON **hit = ix->n ? bsearch(&key, ix->nodes, ix->n, sizeof *ix->nodes, by_id) : NULL;
    return hit ? *hit : NULL;
}

/*
 * One row per node, Cfg and Dsc side by side: ID, NAME, PHYS CFG/DSC, RUN
 * CFG/DSC, PLATFORM, BUSY. The Dsc cells are coloured against their Cfg.
 * @p kind is "mixed" (both), "cfg" or "dsc" (one set; no colours).
 */
int kc_print_node_table(kc_ctx *ctx, const cJSON *cfg_list, const cJSON *dsc_list,
                        const char *kind, FILE *out)
{
    bool mixed = strcmp(kind, "mixed") == 0;
    static const char *const mixed_headers[] = {"ID",      "NAME",    "PHYS CFG", "PHYS DSC",
                                                "RUN CFG", "RUN DSC", "PLATFORM", "BUSY"};
    static const char *const one_headers[] = {"ID",       "NAME", "PHYS", "RUN",
                                              "PLATFORM", "ARCH", "BUSY"};
    kc_table *t = mixed ? kc_table_new(8, mixed_headers) : kc_table_new(7, one_headers);
    if (!t)
        return kc_error(ctx, KC_EXIT_FAILED, "out of memory");
    const cJSON *main_list = strcmp(kind, "dsc") == 0 ? dsc_list : cfg_list;
    node_index other = index_nodes(strcmp(kind, "dsc") == 0 ? cfg_list : dsc_list);
    const cJSON *n;
    size_t count = 0;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(main_list, "nodes"))
    {
        const char *id = kc_node_field(n, "id");
        /* The name is configuration: show Cfg's even in the Dsc view, as the original. */
        const cJSON *c = strcmp(kind, "dsc") == 0 ? index_find(&other, id) : n;
        const char *name = kc_node_field(c ? c : n, "nodename");
        if (mixed) {
            const cJSON *d = index_find(&other, id);
            const char *pc = kc_node_field(n, "physState"), *pd = kc_node_field(d, "physState");
            const char *rc = kc_node_field(n, "runState"), *rd = kc_node_field(d, "runState");
            const char *busy = kc_node_field(d, "busy");
            const char *cells[] = {id, name, pc, pd, rc, rd, kc_node_field(n, "platform"),
                                   *busy ? busy : kc_node_field(n, "busy")};
            const char *colors[] = {NULL, NULL, NULL, kc_state_color(pc, pd), NULL,
                                    kc_state_color(rc, rd), NULL, NULL};
            kc_table_add(t, cells, colors);
        } else {
            const char *cells[] = {id,
                                   name,
                                   kc_node_field(n, "physState"),
                                   kc_node_field(n, "runState"),
                                   kc_node_field(n, "platform"),
                                   kc_node_field(n, "arch"),
                                   kc_node_field(n, "busy")};
            kc_table_add(t, cells, NULL);
        }
        count++;
    }
    free(other.nodes);
    kc_table_print(t, ctx->color, out);
    kc_table_free(t);
    if (ctx->verbose)
        fprintf(out, "%zu node(s)\n", count);
    return KC_EXIT_OK;
}
