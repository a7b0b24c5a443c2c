/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-list.c: `krakenctl list` (the original's `node list`): every node, Cfg and Dsc.
 * With -f (the original's column filter), the chosen fields of the -t view instead.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "krakenctl.h"

/* {"nodes": [{"id", "cfg": {...}, "dsc": {...}}]}: one object per node for scripts
 * (with -f, cfg and dsc hold the filtered fields). */
static void print_mixed_json(const cJSON *cfg, const cJSON *dsc, const kc_filter *f)
{
    cJSON *out = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(out, "nodes");
    const cJSON *n, *cursor = NULL;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(cfg, "nodes"))
    {
        const char *id = kc_node_field(n, "id");
        const cJSON *d = kc_find_node_next(dsc, id, &cursor);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", id);
        cJSON_AddItemToObject(item, "cfg", f ? kc_filter_node(f, n) : cJSON_Duplicate(n, true));
        cJSON_AddItemToObject(item, "dsc",
                              !d  ? cJSON_CreateNull()
                              : f ? kc_filter_node(f, d)
                                  : cJSON_Duplicate(d, true));
        cJSON_AddItemToArray(nodes, item);
    }
    kc_print_json(out);
    cJSON_Delete(out);
}

/* The original's `node list -j` (mixed): its Cfg list, then its Dsc list (filtered by -f). */
static void print_original_mixed(const cJSON *cfg, const cJSON *dsc, const kc_filter *f)
{
    cJSON *fc = f ? kc_filter_list(f, cfg) : NULL, *fd = f ? kc_filter_list(f, dsc) : NULL;
    kc_print_original_mixed(fc ? fc : cfg, fd ? fd : dsc);
    cJSON_Delete(fc);
    cJSON_Delete(fd);
}

/* -j: mixed as above (as the original under `node list`); cfg or dsc the original's
 * {"nodes": [...]} of that view. */
static void print_json(const kc_ctx *ctx, const cJSON *cfg, const cJSON *dsc, const char *kind,
                       const kc_filter *f)
{
    if (strcmp(kind, "mixed") == 0) {
        if (ctx->original_form)
            print_original_mixed(cfg, dsc, f);
        else
            print_mixed_json(cfg, dsc, f);
        return;
    }
    cJSON *view = kc_list_view(cfg, dsc, kind);
    cJSON *shown = f ? kc_filter_list(f, view) : NULL;
    kc_print_json(shown ? shown : view);
    cJSON_Delete(shown);
    cJSON_Delete(view);
}

static int cmd_list(kc_ctx *ctx, int argc, char **argv)
{
    const char *kind;
    kc_filter filter;
    const kc_filter *f;
    int rc = kc_parse_view_options(ctx, &kc_cmd_list_entry, argc, argv, &kind, &filter, &f);
    if (rc != 0)
        return rc;
    if (optind != argc)
        return kc_usage(ctx, &kc_cmd_list_entry);
    /* Cfg always: the Dsc view takes its node names from it, as the original */
    cJSON *cfg = NULL, *dsc = NULL;
    bool need_dsc = strcmp(kind, "cfg") != 0;
    if ((rc = kc_request_json(ctx, "GET", "/cfg/nodes", NULL, &cfg)) != 0 ||
        (need_dsc && (rc = kc_request_json(ctx, "GET", "/dsc/nodes", NULL, &dsc)) != 0)) {
        cJSON_Delete(cfg);
        return rc;
    }
    if (ctx->json)
        print_json(ctx, cfg, dsc, kind, f);
    else if (f)
        rc = kc_print_column_table(ctx, f, cfg, dsc, kind, stdout);
    else
        rc = kc_print_node_table(ctx, cfg, dsc, kind, stdout);
    cJSON_Delete(cfg);
    cJSON_Delete(dsc);
    return rc;
}

const kc_cmd_entry kc_cmd_list_entry = {
    .name = "list",
    .alias = "node list",
    .alias2 = "ls",
    .usage = "[-t mixed|cfg|dsc] [-f [COLUMNS]] [-j]",
    .summary = "list the nodes, Cfg next to Dsc (-f: chosen fields)",
    .exec = cmd_list,
};
