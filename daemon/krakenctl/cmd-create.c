/* SPDX-License-Identifier: BSD-3-Clause */
/* cmd-create.c: `krakenctl create FILE` (the original's `node create`): new Cfg nodes. */
#include <getopt.h>

#include "krakenctl.h"
#include "nodes_io.h"

static int cmd_create(kc_ctx *ctx, int argc, char **argv)
{
    int rc = kc_parse_json_flag(ctx, &kc_cmd_create_entry, argc, argv, 1, 1);
    if (rc != KC_EXIT_OK)
        return rc;
    return kc_send_nodes(ctx, "POST", "/cfg/nodes", argv[optind], "created");
}

const kc_cmd_entry kc_cmd_create_entry = {
    .name = "create",
    .alias = "node create",
    .usage = "[-j] FILE|-",
    .summary = "create nodes from a JSON node list (or one node)",
    .exec = cmd_create,
};
