/* cmd-create.c: `krakenctl create FILE` (the original's `node create`): new Cfg nodes. */
#include <getopt.h>

#include "krakenctl.h"
#include "nodes_io.h"

static int cmd_create(kc_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (opt == 'j')
            ctx->json = true;
        else
            return kc_bad_option(ctx, &kc_cmd_create_entry, opt, argv);
    }
    if (optind + 1 != argc)
        return kc_usage(ctx, &kc_cmd_create_entry);
    return kc_send_nodes(ctx, "POST", "/cfg/nodes", argv[optind], "created");
}

const kc_cmd_entry kc_cmd_create_entry = {
    .name = "create",
    .alias = "node create",
    .usage = "[-j] FILE|-",
    .summary = "create nodes from a JSON node list (or one node)",
    .exec = cmd_create,
};
