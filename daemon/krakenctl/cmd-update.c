/* cmd-update.c: `krakenctl update FILE` (the original's `node update`): replace nodes. */
#include <getopt.h>
#include <string.h>

#include "krakenctl.h"
#include "nodes_io.h"

static int cmd_update(kc_ctx *ctx, int argc, char **argv)
{
    const char *path = "/cfg/nodes";
    static const struct option opts[] = {{"type", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "t:jh", opts, NULL)) != -1) {
        if (opt == 't') {
            if (strcmp(optarg, "cfg") == 0)
                path = "/cfg/nodes";
            else if (strcmp(optarg, "dsc") == 0)
                path = "/dsc/nodes";
            else
                return kc_error(ctx, KC_EXIT_USAGE, "-t %s: expected cfg or dsc", optarg);
        } else if (opt == 'j') {
            ctx->json = true;
        } else {
            return kc_bad_option(ctx, &kc_cmd_update_entry, opt, argv);
        }
    }
    if (optind + 1 != argc)
        return kc_usage(ctx, &kc_cmd_update_entry);
    return kc_send_nodes(ctx, "PUT", path, argv[optind], "updated");
}

const kc_cmd_entry kc_cmd_update_entry = {
    .name = "update",
    .alias = "node update",
    .usage = "[-t cfg|dsc] [-j] FILE|-",
    .summary = "replace nodes' Cfg (or Dsc) from a JSON node list",
    .exec = cmd_update,
};
