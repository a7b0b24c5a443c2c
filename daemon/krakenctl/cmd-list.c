/* cmd-list.c: `krakenctl list` (the original's `node list`): every node, Cfg and Dsc. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "krakenctl.h"

static int parse_kind(kc_ctx *ctx, const char *text, const char **out)
{
    if (strcmp(text, "mixed") == 0 || strcmp(text, "cfg") == 0 || strcmp(text, "dsc") == 0) {
        *out = text;
        return 0;
    }
    return kc_error(ctx, KC_EXIT_USAGE, "-t %s: expected mixed, cfg or dsc", text);
}

/* {"nodes": [{"id", "cfg": {...}, "dsc": {...}}]}: one object per node for scripts. */
static void print_mixed_json(const cJSON *cfg, const cJSON *dsc)
{
    cJSON *out = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(out, "nodes");
    const cJSON *n, *cursor = NULL;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(cfg, "nodes"))
    {
        const char *id = kc_node_field(n, "id");
        const cJSON *d = kc_find_node_next(dsc, id, &cursor);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", id);
        cJSON_AddItemToObject(item, "cfg", cJSON_Duplicate(n, true));
        cJSON_AddItemToObject(item, "dsc", d ? cJSON_Duplicate(d, true) : cJSON_CreateNull());
        cJSON_AddItemToArray(nodes, item);
    }
    kc_print_json(out);
    cJSON_Delete(out);
}

static int cmd_list(kc_ctx *ctx, int argc, char **argv)
{
    const char *kind = "mixed";
    static const struct option opts[] = {{"type", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "t:jh", opts, NULL)) != -1) {
        if (opt == 't') {
            if ((rc = parse_kind(ctx, optarg, &kind)) != 0)
                return rc;
        } else if (opt == 'j') {
            ctx->json = true;
        } else {
            return kc_bad_option(ctx, &kc_cmd_list_entry, opt, argv);
        }
    }
    if (optind != argc)
        return kc_usage(ctx, &kc_cmd_list_entry);
    cJSON *cfg = NULL, *dsc = NULL;
    bool need_cfg = true, need_dsc = strcmp(kind, "cfg") != 0;
    if ((need_cfg && (rc = kc_request_json(ctx, "GET", "/cfg/nodes", NULL, &cfg)) != 0) ||
        (need_dsc && (rc = kc_request_json(ctx, "GET", "/dsc/nodes", NULL, &dsc)) != 0)) {
        cJSON_Delete(cfg);
        return rc;
    }
    if (ctx->json) {
        if (strcmp(kind, "mixed") == 0)
            print_mixed_json(cfg, dsc);
        else
            kc_print_json(strcmp(kind, "cfg") == 0 ? cfg : dsc);
    } else {
        kc_print_node_table(ctx, cfg, dsc, kind, stdout);
    }
    cJSON_Delete(cfg);
    cJSON_Delete(dsc);
    return KC_EXIT_OK;
}

const kc_cmd_entry kc_cmd_list_entry = {
    .name = "list",
    .alias = "node list",
    .alias2 = "ls",
    .usage = "[-t mixed|cfg|dsc] [-j]",
    .summary = "list the nodes, Cfg next to Dsc",
    .exec = cmd_list,
};
