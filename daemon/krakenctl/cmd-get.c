/* SPDX-License-Identifier: BSD-3-Clause */
/* cmd-get.c: `krakenctl get ID URL`: one value of a node's Cfg (or Dsc). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "krakenctl.h"
#include "node.h"

static int cmd_get(kc_ctx *ctx, int argc, char **argv)
{
    const char *kind = "cfg";
    static const struct option opts[] = {{"dsc", no_argument, NULL, 'D'},
                                         {"cfg", no_argument, NULL, 'C'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (opt == 'D')
            kind = "dsc";
        else if (opt == 'C')
            kind = "cfg";
        else if (opt == 'j')
            ctx->json = true;
        else
            return kc_bad_option(ctx, &kc_cmd_get_entry, opt, argv);
    }
    kraken_uuid id;
    const char *url;
    int rc = kc_node_url_operands(ctx, &kc_cmd_get_entry, argc, argv, 0, &id, &url);
    if (rc != KC_EXIT_OK)
        return rc;
    kraken_node *node = NULL;
    rc = kc_fetch_node(ctx, kind, &id, &node);
    if (rc != 0)
        return rc;
    char *text = NULL;
    if (kraken_node_get_text(node, url, &text) != 0) {
        kraken_node_free(node);
        return kc_error(ctx, KC_EXIT_FAILED, "%s: %s%s", kind, kraken_error_last(),
                        kc_schema_hint(kraken_error_last()));
    }
    if (ctx->json) {
        char idtext[KRAKEN_UUID_STRLEN + 1];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", kraken_uuid_format(&id, idtext));
        cJSON_AddStringToObject(o, "state", kind);
        cJSON_AddStringToObject(o, "url", url);
        cJSON_AddStringToObject(o, "value", text);
        kc_print_json(o);
        cJSON_Delete(o);
    } else {
        printf("%s\n", text);
    }
    free(text);
    kraken_node_free(node);
    return KC_EXIT_OK;
}

const kc_cmd_entry kc_cmd_get_entry = {
    .name = "get",
    .usage = "[--dsc] ID URL | ID:URL",
    .summary = "print one value of a node by URL (Cfg, or Dsc with --dsc)",
    .exec = cmd_get,
};
