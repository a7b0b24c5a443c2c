/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-set.c: `krakenctl set ID URL VALUE`: change one value of a node's Cfg.
 * The URL and value are checked against the schema by libkraken here, with the
 * library's message, before anything is sent. A top-level field goes as a
 * PATCH of that field; any other URL as the whole node, read, changed and
 * written back with PUT.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"
#include "node.h"

/*
 * A top-level field (/PhysState, /RunState, /Busy, /Nodename ...) set to a
 * known value is sent as a PATCH of just that field (JSON merge, SPEC 9.2):
 * no read-modify-write, so a concurrent change of another field is not lost.
 * The value is checked by libkraken on an otherwise empty node, whose JSON is
 * then exactly the patch. Returns 1 with *out (malloc'ed), 0 when the URL or
 * value needs the whole node (nested URLs: a list in the path would be
 * replaced by the merge; zero values: absent from the JSON), -1 on a bad URL
 * or value.
 */
static int patch_body(const kraken_uuid *id, const char *url, const char *value, char **out)
{
    *out = NULL;
    const char *field = url[0] == '/' ? url + 1 : url;
    if (!*field || strchr(field, '/') || strchr(field, '.'))
        return 0;
    kraken_node *node = NULL;
    if (kraken_node_new(&node, id) != 0)
        return -1;
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_node_set_text(node, url, value);
    if (rc == 0 && kraken_node_get(node, url, &v) == 0 && !kraken_value_is_zero(&v) &&
        kraken_node_to_json(node, 0, out) == 0)
        rc = 1;
    else if (rc == 0)
        rc = 0;
    else
        rc = -1;
    kraken_value_clear(&v);
    kraken_node_free(node);
    return rc;
}

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
            return kc_bad_option(ctx, &kc_cmd_set_entry, opt, argv);
    }
    kraken_uuid id;
    const char *url;
    int rc = kc_node_url_operands(ctx, &kc_cmd_set_entry, argc, argv, 1, &id, &url);
    if (rc != KC_EXIT_OK)
        return rc;
    const char *value = argv[optind];
    char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
    snprintf(path, sizeof path, "/%s/node/%s", kind, kraken_uuid_format(&id, idtext));
    char *json = NULL;
    const char *method = "PATCH";
    if ((rc = kc_learn_schemas(ctx)) != 0) /* the URL may name a module's type */
        return rc;
    rc = patch_body(&id, url, value, &json);
    if (rc < 0)
        return kc_error(ctx, KC_EXIT_USAGE, "%s%s", kraken_error_last(),
                        kc_schema_hint(kraken_error_last()));
    if (rc == 0) { /* not a PATCH: read the node, change it, write it back */
        kraken_node *node = NULL;
        method = "PUT";
        if ((rc = kc_fetch_node(ctx, kind, &id, &node)) != 0)
            return rc;
        if (kraken_node_set_text(node, url, value) != 0) {
            kraken_node_free(node);
            return kc_error(ctx, KC_EXIT_USAGE, "%s%s", kraken_error_last(),
                            kc_schema_hint(kraken_error_last()));
        }
        rc = kraken_node_to_json(node, 0, &json);
        kraken_node_free(node);
        if (rc != 0)
            return kc_error(ctx, KC_EXIT_FAILED, "%s", kraken_error_last());
    }
    cJSON *answer = NULL;
    rc = kc_request_json(ctx, method, path, json, &answer);
    free(json);
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
