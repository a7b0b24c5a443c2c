/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cmd-freeze.c: `krakenctl freeze`, `thaw` and `status` (the original's `sme
 * freeze|thaw|status`): stop and resume the state mutation engine, or ask.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "krakenctl.h"

static int sme(kc_ctx *ctx, const kc_cmd_entry *entry, const char *path, int argc, char **argv)
{
    int rc = kc_parse_json_flag(ctx, entry, argc, argv, 0, 0);
    if (rc != KC_EXIT_OK)
        return rc;
    cJSON *answer = NULL;
    rc = kc_request_json(ctx, "GET", path, NULL, &answer);
    if (rc != 0)
        return rc;
    const cJSON *frozen = cJSON_GetObjectItemCaseSensitive(answer, "frozen");
    if (!cJSON_IsBool(frozen)) {
        cJSON_Delete(answer);
        return kc_error(ctx, KC_EXIT_CONNECT, "GET %s: no \"frozen\" in the answer", path);
    }
    if (ctx->json)
        kc_print_json(answer);
    else
        printf("%s\n", cJSON_IsTrue(frozen) ? "frozen" : "thawed");
    cJSON_Delete(answer);
    return KC_EXIT_OK;
}

static int cmd_freeze(kc_ctx *ctx, int argc, char **argv)
{
    return sme(ctx, &kc_cmd_freeze_entry, "/sme/freeze", argc, argv);
}

static int cmd_thaw(kc_ctx *ctx, int argc, char **argv)
{
    return sme(ctx, &kc_cmd_thaw_entry, "/sme/thaw", argc, argv);
}

static int cmd_status(kc_ctx *ctx, int argc, char **argv)
{
    return sme(ctx, &kc_cmd_status_entry, "/sme/frozen", argc, argv);
}

const kc_cmd_entry kc_cmd_freeze_entry = {
    .name = "freeze",
    .alias = "sme freeze",
    .usage = "[-j]",
    .summary = "stop all mutations (the engine plans nothing)",
    .exec = cmd_freeze,
};

const kc_cmd_entry kc_cmd_thaw_entry = {
    .name = "thaw",
    .alias = "sme thaw",
    .usage = "[-j]",
    .summary = "resume mutations",
    .exec = cmd_thaw,
};

const kc_cmd_entry kc_cmd_status_entry = {
    .name = "status",
    .alias = "sme status",
    .alias2 = "frozen",
    .usage = "[-j]",
    .summary = "is the engine frozen?",
    .exec = cmd_status,
};
