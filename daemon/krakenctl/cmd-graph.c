/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-graph.c: `krakenctl graph [ID]`: the mutation graph (vis.js JSON from
 * /graph/json, or one node's with its plan highlighted) as Graphviz DOT.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "krakenctl.h"

/* A DOT double-quoted string: escape quotes and backslashes, newlines as \n. */
static void dot_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if (*s == '\n') {
            fputs("\\n", stdout);
            continue;
        }
        putchar(*s);
    }
    putchar('"');
}

static const char *field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void print_dot(const cJSON *graph)
{
    printf("digraph kraken {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", "
           "fillcolor=white];\n");
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(graph, "nodes"))
    {
        const char *id = field(n, "id"), *label = field(n, "label"), *color = field(n, "color");
        if (!id)
            continue;
        /* "A, B, C" labels read better one condition per line */
        char wrapped[2048];
        size_t o = 0;
        for (const char *p = label ? label : id; *p && o + 2 < sizeof wrapped; p++) {
            if (p[0] == ',' && p[1] == ' ') {
                wrapped[o++] = '\n';
                p++;
            } else {
                wrapped[o++] = *p;
            }
        }
        wrapped[o] = '\0';
        printf("  ");
        dot_string(id);
        printf(" [label=");
        dot_string(wrapped);
        if (color) {
            printf(", color=");
            dot_string(color);
        }
        printf("];\n");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(graph, "edges"))
    {
        const char *from = field(e, "from"), *to = field(e, "to");
        if (!from || !to)
            continue;
        printf("  ");
        dot_string(from);
        printf(" -> ");
        dot_string(to);
        const char *label = field(e, "label"), *color = field(e, "color");
        printf(" [");
        if (label) {
            printf("label=");
            dot_string(label);
        }
        if (color) {
            printf("%scolor=", label ? ", " : "");
            dot_string(color);
            /* the plan's edges (green) and the current step (red) stand out */
            if (strcmp(color, "#848484") != 0)
                printf(", penwidth=2");
        }
        printf("];\n");
    }
    printf("}\n");
}

static int cmd_graph(kc_ctx *ctx, int argc, char **argv)
{
    int rc = kc_parse_json_flag(ctx, &kc_cmd_graph_entry, argc, argv, 0, 1);
    if (rc != KC_EXIT_OK)
        return rc;
    char path[128] = "/graph/json";
    if (optind < argc) {
        kraken_uuid id;
        char idtext[KRAKEN_UUID_STRLEN + 1];
        if (kc_parse_id(ctx, argv[optind], &id) != 0)
            return KC_EXIT_USAGE;
        snprintf(path, sizeof path, "/graph/node/%s/json", kraken_uuid_format(&id, idtext));
    }
    cJSON *graph = NULL;
    rc = kc_request_json(ctx, "GET", path, NULL, &graph);
    if (rc != 0)
        return rc;
    if (ctx->json)
        kc_print_json(graph);
    else
        print_dot(graph);
    cJSON_Delete(graph);
    return KC_EXIT_OK;
}

const kc_cmd_entry kc_cmd_graph_entry = {
    .name = "graph",
    .alias = "node graph",
    .usage = "[-j] [ID]",
    .summary = "the mutation graph as Graphviz DOT (one node's plan highlighted)",
    .exec = cmd_graph,
};
