/* SPDX-License-Identifier: BSD-3-Clause */
/* node.c: fetch one node and decode it with libkraken's JSON codec (get, set, show). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"
#include "node.h"

int kc_learn_schemas(kc_ctx *ctx)
{
    if (ctx->schemas_learned)
        return 0;
    ctx->schemas_learned = true;
    kc_response r = {0};
    int rc = kc_http(ctx, "GET", "/schemas", NULL, 0, &r);
    if (rc != 0)
        return rc;
    if (r.status == 200 && kraken_schema_load_json(r.body, r.len, "GET /schemas") != 0)
        rc = kc_error(ctx, KC_EXIT_FAILED, "%s", kraken_error_last());
    kc_response_clear(&r);
    return rc;
}

int kc_fetch_node(kc_ctx *ctx, const char *kind, const kraken_uuid *id, kraken_node **out)
{
    *out = NULL;
    int rc = kc_learn_schemas(ctx);
    if (rc != 0)
        return rc;
    char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
    kraken_uuid_format(id, idtext);
    snprintf(path, sizeof path, "/%s/node/%s", kind, idtext);
    cJSON *json = NULL;
    if ((rc = kc_request_json(ctx, "GET", path, NULL, &json)) != 0)
        return rc;
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    char source[160];
    snprintf(source, sizeof source, "GET %s", path);
    if (!text || kraken_node_from_json(text, strlen(text), source, out) != 0) {
        cJSON_free(text);
        /* a type the daemon loaded from its -schemas directory: krakenctl needs it too */
        const char *hint = kc_schema_hint(kraken_error_last());
        return kc_error(ctx, *hint ? KC_EXIT_USAGE : KC_EXIT_CONNECT, "%s%s",
                        kraken_error_last(), hint);
    }
    cJSON_free(text);
    return 0;
}

int kc_split_node_url(kc_ctx *ctx, int argc, char **argv, kraken_uuid *id, const char **url)
{
    /* "ID URL" or the node-qualified "ID:URL" (SPEC 1.3) */
    if (argc >= 1 && strlen(argv[0]) > KRAKEN_UUID_STRLEN && argv[0][KRAKEN_UUID_STRLEN] == ':') {
        char idtext[KRAKEN_UUID_STRLEN + 1];
        memcpy(idtext, argv[0], KRAKEN_UUID_STRLEN);
        idtext[KRAKEN_UUID_STRLEN] = '\0';
        *url = argv[0] + KRAKEN_UUID_STRLEN + 1;
        return kc_parse_id(ctx, idtext, id) == 0 ? 1 : -1;
    }
    if (argc < 2)
        return 0;
    *url = argv[1];
    return kc_parse_id(ctx, argv[0], id) == 0 ? 2 : -1;
}

int kc_node_url_operands(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                         int trailing, kraken_uuid *id, const char **url)
{
    int used = kc_split_node_url(ctx, argc - optind, argv + optind, id, url);
    if (used < 0)
        return KC_EXIT_USAGE;
    if (used == 0 || optind + used + trailing != argc)
        return kc_usage(ctx, cmd);
    optind += used;
    return KC_EXIT_OK;
}
