/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-plan.c: `krakenctl plan ID`: a node's plan (/graph/node/{id}/path): its
 * steps, the current one, and why it is stuck or has no path.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "krakenctl.h"

static void print_plan(kc_ctx *ctx, const char *id, const cJSON *plan)
{
    const char *state = kc_node_field(plan, "state");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    const cJSON *current = cJSON_GetObjectItemCaseSensitive(plan, "current");
    const cJSON *failures = cJSON_GetObjectItemCaseSensitive(plan, "failures");
    int cur = cJSON_IsNumber(current) ? current->valueint : -1;
    bool bad = strcmp(state, "STUCK") == 0 || strcmp(state, "NO_PATH") == 0;
    const char *sgr = bad ? "1;31" : strcmp(state, "CONVERGED") == 0 ? "32" : "33";
    if (ctx->color)
        printf("node %s: \033[%sm%s\033[0m", id, sgr, state);
    else
        printf("node %s: %s", id, state);
    if (cJSON_IsNumber(failures) && failures->valueint > 0)
        printf(" (%d failure%s in a row)", failures->valueint, failures->valueint == 1 ? "" : "s");
    putchar('\n');
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, steps)
    {
        const char *mark = i < cur ? "done" : i == cur ? "now " : "    ";
        printf("  %s %2d. %s\n", mark, i + 1, cJSON_IsString(s) ? s->valuestring : "?");
        i++;
    }
    if (i == 0)
        printf("  (no steps)\n");
    const char *reason = kc_node_field(plan, "reason");
    if (*reason)
        printf("why: %s\n", reason);
}

static int cmd_plan(kc_ctx *ctx, int argc, char **argv)
{
    int rc = kc_parse_json_flag(ctx, &kc_cmd_plan_entry, argc, argv, 1, 1);
    if (rc != KC_EXIT_OK)
        return rc;
    kraken_uuid id;
    if (kc_parse_id(ctx, argv[optind], &id) != 0)
        return KC_EXIT_USAGE;
    char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
    snprintf(path, sizeof path, "/graph/node/%s/path", kraken_uuid_format(&id, idtext));
    cJSON *plan = NULL;
    rc = kc_request_json(ctx, "GET", path, NULL, &plan);
    if (rc != 0)
        return rc;
    if (ctx->json)
        kc_print_json(plan);
    else
        print_plan(ctx, idtext, plan);
    cJSON_Delete(plan);
    return KC_EXIT_OK;
}

const kc_cmd_entry kc_cmd_plan_entry = {
    .name = "plan",
    .alias = "node plan",
    .usage = "[-j] ID",
    .summary = "a node's plan: steps, current step, why it is stuck",
    .exec = cmd_plan,
};
