/*
 * cmd-set.c: `krakenctl set ID URL VALUE`: change one value of a node's Cfg.
 * The node is read, the value set with libkraken (so the URL and the value are
 * checked against the schema here, with the library's message), and the node
 * written back with PUT.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "krakenctl.h"
#include "node.h"

static int cmd_set(kc_ctx *ctx, int argc, char **argv)
{
    const char *kind = "cfg";
    static const struct option opts[] = {{"dsc", no_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (opt == 'D')
            kind = "dsc";
        else if (opt == 'j')
            ctx->json = true;
        else
            return kc_usage(ctx, &kc_cmd_set_entry);
    }
    kraken_uuid id;
    const char *url;
    int used = kc_split_node_url(ctx, argc - optind, argv + optind, &id, &url);
    if (used < 0)
        return KC_EXIT_USAGE;
    if (used == 0 || optind + used + 1 != argc)
        return kc_usage(ctx, &kc_cmd_set_entry);
    const char *value = argv[optind + used];
    kraken_node *node = NULL;
    int rc = kc_fetch_node(ctx, kind, &id, &node);
    if (rc != 0)
        return rc;
    char *json = NULL;
    if (kraken_node_set_text(node, url, value) != 0) {
        kraken_node_free(node);
        return kc_error(ctx, KC_EXIT_USAGE, "%s%s", kraken_error_last(),
                        kc_schema_hint(kraken_error_last()));
    }
    if (kraken_node_to_json(node, 0, &json) != 0) {
        kraken_node_free(node);
        return kc_error(ctx, KC_EXIT_FAILED, "%s", kraken_error_last());
    }
    char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
    snprintf(path, sizeof path, "/%s/node/%s", kind, kraken_uuid_format(&id, idtext));
    cJSON *answer = NULL;
    rc = kc_request_json(ctx, "PUT", path, json, &answer);
    free(json);
    kraken_node_free(node);
    if (rc != 0)
        return rc;
    if (ctx->json)
        kc_print_json(answer);
    else if (ctx->verbose)
        printf("%s:%s = %s\n", idtext, url, value);
    cJSON_Delete(answer);
    return KC_EXIT_OK;
}

const kc_cmd_entry kc_cmd_set_entry = {
    .name = "set",
    .usage = "[--dsc] ID URL VALUE | ID:URL VALUE",
    .summary = "set one value of a node's Cfg (or Dsc with --dsc) by URL",
    .exec = cmd_set,
};
