/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config.c: the original krakenctl's per-user file, ~/.krakenctl.
 *
 * A YAML mapping of the global options' defaults, as the original wrote it:
 *
 *   debug: false
 *   ip: 127.0.0.1:3141
 *   verbose: false
 *
 * Unlike the original, krakenctl never creates the file, and a file it cannot
 * use is an error naming the file, line and key rather than silently ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "krakenctl.h"

/* YAML 1.1 booleans, as the original's yaml.safe_load reads them. */
static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* One "key: value" of the mapping; errors name the file, the value's line and the key. */
static int config_pair(kc_ctx *ctx, const char *path, const yaml_node_t *k, const yaml_node_t *v,
                       kc_config *out)
{
    size_t line = k->start_mark.line + 1;
    if (k->type != YAML_SCALAR_NODE)
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: expected a key (ip, verbose or debug)",
                        path, line);
    const char *key = (const char *)k->data.scalar.value;
    if (v->type != YAML_SCALAR_NODE)
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: %s: expected a value, not a list or mapping",
                        path, line, key);
    const char *value = (const char *)v->data.scalar.value;
    if (strcmp(key, "ip") == 0) {
        if (strlen(value) >= sizeof out->ip)
            return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: ip: too long", path, line);
        snprintf(out->ip, sizeof out->ip, "%s", value);
        out->ip_line = line;
        return 0;
    }
    bool *flag = strcmp(key, "verbose") == 0 ? &out->verbose
                 : strcmp(key, "debug") == 0 ? &out->debug
                                             : NULL;
    if (!flag)
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: unknown key '%s' (expected ip, verbose or "
                        "debug)", path, line, key);
    if (parse_bool(value, flag) != 0)
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: %s: '%s' is not true or false", path, line,
                        key, value);
    return 0;
}

static int config_document(kc_ctx *ctx, const char *path, yaml_document_t *doc, kc_config *out)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) /* an empty file */
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return kc_error(ctx, KC_EXIT_USAGE, "%s:%zu: expected a mapping of ip, verbose, debug",
                        path, root->start_mark.line + 1);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        int rc = config_pair(ctx, path, yaml_document_get_node(doc, p->key),
                             yaml_document_get_node(doc, p->value), out);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int kc_load_config(kc_ctx *ctx, kc_config *out)
{
    memset(out, 0, sizeof *out);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return 0;
    snprintf(out->path, sizeof out->path, "%s/.krakenctl", home);
    FILE *f = fopen(out->path, "rb");
    if (!f) /* no file: the built-in defaults, as the original */
        return errno == ENOENT ? 0 : kc_error(ctx, KC_EXIT_USAGE, "%s: %s", out->path,
                                              strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return kc_error(ctx, KC_EXIT_USAGE, "%s: out of memory", out->path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *mark = parser.problem ? &parser.problem_mark : &parser.context_mark;
        rc = kc_error(ctx, KC_EXIT_USAGE, "%s:%zu:%zu: invalid YAML: %s", out->path,
                      mark->line + 1, mark->column + 1,
                      parser.problem ? parser.problem : "syntax error");
    } else {
        rc = config_document(ctx, out->path, &doc, out);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
