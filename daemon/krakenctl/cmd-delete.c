/* cmd-delete.c: `krakenctl delete ID...`: remove nodes (Cfg and Dsc). */
#include <getopt.h>
#include <stdio.h>

#include "krakenctl.h"

static int cmd_delete(kc_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int opt = getopt_long(argc, argv, "h", opts, NULL);
    if (opt != -1)
        return kc_bad_option(ctx, &kc_cmd_delete_entry, opt, argv);
    if (optind >= argc)
        return kc_usage(ctx, &kc_cmd_delete_entry);
    /* Check every id first: a typo in the third id must not leave two nodes deleted. */
    for (int i = optind; i < argc; i++) {
        kraken_uuid id;
        if (kc_parse_id(ctx, argv[i], &id) != 0)
            return KC_EXIT_USAGE;
    }
    int result = KC_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        kraken_uuid id;
        char idtext[KRAKEN_UUID_STRLEN + 1], path[128];
        kc_parse_id(ctx, argv[i], &id);
        snprintf(path, sizeof path, "/cfg/node/%s", kraken_uuid_format(&id, idtext));
        cJSON *answer = NULL;
        int rc = kc_request_json(ctx, "DELETE", path, NULL, &answer);
        if (rc == KC_EXIT_CONNECT)
            return rc;
        if (rc != 0)
            result = rc;
        else if (ctx->verbose)
            printf("deleted %s\n", idtext);
        cJSON_Delete(answer);
    }
    return result;
}

const kc_cmd_entry kc_cmd_delete_entry = {
    .name = "delete",
    .alias = "node delete",
    .alias2 = "rm",
    .usage = "ID...",
    .summary = "delete nodes",
    .exec = cmd_delete,
};
