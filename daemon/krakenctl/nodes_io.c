/* SPDX-License-Identifier: BSD-3-Clause */
/* nodes_io.c: send a node list file to the daemon (create, update) and report per node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"
#include "nodes_io.h"

/*
 * The file is a node list {"nodes": [...]} (a state file) or one node object.
 * It is checked to be JSON here; the daemon checks the nodes and answers the
 * ones that succeeded plus "errors" for the others.
 */
int kc_send_nodes(kc_ctx *ctx, const char *method, const char *path, const char *file,
                  const char *verb)
{
    size_t len;
    char *text = kc_read_input(ctx, file, &len);
    if (!text)
        return KC_EXIT_USAGE;
    cJSON *json = cJSON_ParseWithLength(text, len);
    if (!json) {
        const char *at = cJSON_GetErrorPtr();
        size_t line = 1, col = 1;
        for (const char *p = text; at && p < at && p < text + len; p++, col++)
            if (*p == '\n') {
                line++;
                col = 0;
            }
        free(text);
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu:%zu: invalid JSON", file, line, col);
    }
    free(text);
    if (cJSON_IsObject(json) && !cJSON_GetObjectItemCaseSensitive(json, "nodes")) {
        cJSON *list = cJSON_CreateObject();
        cJSON *nodes = cJSON_AddArrayToObject(list, "nodes");
        cJSON_AddItemToArray(nodes, json);
        json = list;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "nodes"))) {
        cJSON_Delete(json);
        return kc_error(ctx, KC_EXIT_USAGE, "%s: expected {\"nodes\": [...]} or one node object",
                        file);
    }
    char *body = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    cJSON *answer = NULL;
    int rc = kc_request_json(ctx, method, path, body, &answer);
    cJSON_free(body);
    if (rc != 0)
        return rc;
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(answer, "nodes");
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(answer, "errors");
    int n_errors = cJSON_GetArraySize(errors);
    if (ctx->json) {
        kc_print_json(answer);
    } else {
        const cJSON *n;
        if (ctx->verbose)
            cJSON_ArrayForEach(n, done) printf("%s %s\n", verb, kc_node_field(n, "id"));
        if (ctx->original_form && n_errors == 0)
            puts("Success"); /* the original's word for it, which scripts may look for */
        else
            printf("%d node(s) %s, %d failed\n", cJSON_GetArraySize(done), verb, n_errors);
        cJSON_ArrayForEach(n, errors)
        {
            if (cJSON_IsString(n))
                fprintf(stderr, "%s: %s\n", ctx->prog, n->valuestring);
            else if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(n, "error")))
                fprintf(stderr, "%s: %s%s%s\n", ctx->prog, kc_node_field(n, "id"),
                        *kc_node_field(n, "id") ? ": " : "", kc_node_field(n, "error"));
            else {
                char *t = cJSON_PrintUnformatted(n);
                fprintf(stderr, "%s: %s\n", ctx->prog, t ? t : "?");
                cJSON_free(t);
            }
        }
    }
    cJSON_Delete(answer);
    return n_errors > 0 ? KC_EXIT_FAILED : KC_EXIT_OK;
}
