/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-show.c: `krakenctl show ID` (the original's `node info`): every value of
 * one node, Cfg next to Dsc, and where its plan stands.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"
#include "node.h"

typedef struct row {
    char *url;
    char *cfg, *dsc;
} row;

static int by_url(const void *a, const void *b)
{
    return strcmp(((const row *)a)->url, ((const row *)b)->url);
}

/* Every leaf of @p node as text: the diff from an empty node lists them all. */
static int add_leaves(const kraken_node *node, bool is_cfg, row **rows, size_t *n)
{
    kraken_change *ch = NULL;
    size_t nch = 0;
    if (kraken_node_diff(NULL, node, &ch, &nch) != 0)
        return -1;
    for (size_t i = 0; i < nch; i++) {
        char *text = NULL;
        if (kraken_value_format(&ch[i].new_value, &text) != 0)
            continue;
        row *r = NULL;
        for (size_t k = 0; k < *n; k++)
            if (strcmp((*rows)[k].url, ch[i].url) == 0)
                r = &(*rows)[k];
        if (!r) {
            row *grown = realloc(*rows, (*n + 1) * sizeof **rows);
            if (!grown) {
                free(text);
                break;
            }
            *rows = grown;
            r = &(*rows)[(*n)++];
            r->url = strdup(ch[i].url);
            r->cfg = r->dsc = NULL;
        }
        if (is_cfg)
            r->cfg = text;
        else
            r->dsc = text;
    }
    kraken_changes_free(ch, nch);
    return 0;
}

static void print_plan(kc_ctx *ctx, const cJSON *plan)
{
    if (!plan)
        return;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(plan, "current");
    const char *state = kc_node_field(plan, "state");
    printf("\nplan: %s", state);
    int n = cJSON_GetArraySize(steps);
    if (n > 0 && cJSON_IsNumber(cur) && cur->valueint < n)
        printf(", step %d of %d: %s", cur->valueint + 1, n,
               cJSON_GetArrayItem(steps, cur->valueint)->valuestring);
    const char *reason = kc_node_field(plan, "reason");
    if (*reason)
        printf("\nwhy: %s", reason);
    putchar('\n');
    (void)ctx;
}

/* -j: mixed, {"id", "cfg", "dsc", "plan"} (under `node info`, the original's "CFG:" and
 * "DSC:" documents); cfg or dsc, the original's one node object of that view. With -f, the
 * nodes hold the filtered fields. */
static int print_show_json(kc_ctx *ctx, const char *idtext, const char *kind, const kc_filter *f)
{
    cJSON *cfg = NULL, *dsc = NULL, *plan = NULL;
    char path[128];
    int rc;
    snprintf(path, sizeof path, "/cfg/node/%s", idtext);
    if ((rc = kc_request_json(ctx, "GET", path, NULL, &cfg)) != 0)
        return rc;
    snprintf(path, sizeof path, "/dsc/node/%s", idtext);
    if (strcmp(kind, "cfg") != 0 && (rc = kc_request_json(ctx, "GET", path, NULL, &dsc)) != 0) {
        cJSON_Delete(cfg);
        return rc;
    }
    cJSON *o;
    if (strcmp(kind, "mixed") == 0 && ctx->original_form) { /* `node info ID -j` */
        cJSON *fc = f ? kc_filter_node(f, cfg) : NULL, *fd = f ? kc_filter_node(f, dsc) : NULL;
        kc_print_original_mixed(fc ? fc : cfg, fd ? fd : dsc);
        cJSON_Delete(fc);
        cJSON_Delete(fd);
        o = NULL;
    } else if (strcmp(kind, "mixed") == 0) {
        snprintf(path, sizeof path, "/graph/node/%s/path", idtext);
        if (kc_request_json(ctx, "GET", path, NULL, &plan) != 0)
            plan = cJSON_CreateNull();
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", idtext);
        cJSON_AddItemToObject(o, "cfg", f ? kc_filter_node(f, cfg) : cJSON_Duplicate(cfg, true));
        cJSON_AddItemToObject(o, "dsc", f ? kc_filter_node(f, dsc) : cJSON_Duplicate(dsc, true));
        cJSON_AddItemToObject(o, "plan", plan);
    } else {
        cJSON *view = kc_node_view(cfg, dsc, kind);
        o = f ? kc_filter_node(f, view) : view;
        if (f)
            cJSON_Delete(view);
    }
    if (o)
        kc_print_json(o);
    cJSON_Delete(o);
    cJSON_Delete(cfg);
    cJSON_Delete(dsc);
    return KC_EXIT_OK;
}

/* The value of a row in the one state -t shows ("" when only the other state has it). The
 * Dsc view takes the name from Cfg, as the original. */
static const char *one_state_value(const row *r, bool cfg)
{
    if (cfg)
        return r->cfg ? r->cfg : "";
    if ((!r->dsc || !*r->dsc) && strcmp(r->url, "/Nodename") == 0)
        return r->cfg ? r->cfg : "";
    return r->dsc ? r->dsc : "";
}

/* The URL table: URL, CFG and DSC (mixed, Dsc coloured against Cfg) or URL and the one state
 * of -t; only the rows of the -f fields. */
static kc_table *value_table(const row *rows, size_t n, const char *kind, const kc_filter *f)
{
    bool mixed = strcmp(kind, "mixed") == 0, cfg = strcmp(kind, "cfg") == 0;
    static const char *const mixed_headers[] = {"URL", "CFG", "DSC"};
    const char *one_headers[] = {"URL", cfg ? "CFG" : "DSC"};
    kc_table *t = mixed ? kc_table_new(3, mixed_headers) : kc_table_new(2, one_headers);
    for (size_t i = 0; t && i < n; i++) {
        if (!kc_filter_url(f, rows[i].url))
            continue;
        if (mixed) {
            const char *c = rows[i].cfg ? rows[i].cfg : "", *d = rows[i].dsc ? rows[i].dsc : "";
            const char *cells[] = {rows[i].url, c, d};
            const char *colors[] = {NULL, NULL, kc_state_color(c, d)};
            kc_table_add(t, cells, colors);
        } else {
            const char *cells[] = {rows[i].url, one_state_value(&rows[i], cfg)};
            if (*cells[1])
                kc_table_add(t, cells, NULL);
        }
    }
    return t;
}

static int cmd_show(kc_ctx *ctx, int argc, char **argv)
{
    const char *kind;
    kc_filter filter;
    const kc_filter *f;
    int rc = kc_parse_view_options(ctx, &kc_cmd_show_entry, argc, argv, &kind, &filter, &f);
    if (rc != 0)
        return rc;
    if (argc - optind != 1)
        return kc_usage(ctx, &kc_cmd_show_entry);
    kraken_uuid id;
    if (kc_parse_id(ctx, argv[optind], &id) != 0)
        return KC_EXIT_USAGE;
    char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
    kraken_uuid_format(&id, idtext);
    if (ctx->json)
        return print_show_json(ctx, idtext, kind, f);
    kraken_node *cfg = NULL, *dsc = NULL;
    rc = kc_fetch_node(ctx, "cfg", &id, &cfg);
    if (rc == 0 && strcmp(kind, "cfg") != 0)
        rc = kc_fetch_node(ctx, "dsc", &id, &dsc);
    row *rows = NULL;
    size_t n = 0;
    if (rc == 0 && (add_leaves(cfg, true, &rows, &n) != 0 ||
                    (dsc && add_leaves(dsc, false, &rows, &n) != 0)))
        rc = kc_error(ctx, KC_EXIT_FAILED, "%s", kraken_error_last());
    kraken_node_free(cfg);
    kraken_node_free(dsc);
    if (rc == 0) {
        qsort(rows, n, sizeof *rows, by_url);
        kc_table *t = value_table(rows, n, kind, f);
        printf("node %s\n", idtext);
        kc_table_print(t, ctx->color, stdout);
        kc_table_free(t);
        cJSON *plan = NULL;
        snprintf(path, sizeof path, "/graph/node/%s/path", idtext);
        if (kc_request_json(ctx, "GET", path, NULL, &plan) == 0)
            print_plan(ctx, plan);
        cJSON_Delete(plan);
    }
    for (size_t i = 0; i < n; i++) {
        free(rows[i].url);
        free(rows[i].cfg);
        free(rows[i].dsc);
    }
    free(rows);
    return rc;
}

const kc_cmd_entry kc_cmd_show_entry = {
    .name = "show",
    .alias = "node info",
    .usage = "[-t mixed|cfg|dsc] [-f [COLUMNS]] [-j] ID",
    .summary = "one node: every value, Cfg next to Dsc, and its plan",
    .exec = cmd_show,
};
