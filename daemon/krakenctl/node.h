/* SPDX-License-Identifier: BSD-3-Clause */
/* node.h: one node through libkraken's codec (node.c). */
#ifndef KRAKENCTL_NODE_H
#define KRAKENCTL_NODE_H

#include "krakenctl.h"

/* GET /<kind>/node/<id> and decode it; prints the error and returns an exit code. */
int kc_fetch_node(kc_ctx *ctx, const char *kind, const kraken_uuid *id, kraken_node **out);
/*
 * Parse "ID URL" or "ID:URL" from argv. Returns the number of words used (1 or
 * 2), 0 when they are missing, -1 after printing a bad-id error.
 */
int kc_split_node_url(kc_ctx *ctx, int argc, char **argv, kraken_uuid *id, const char **url);
/*
 * The "ID URL" or "ID:URL" operands at argv[optind] (after option parsing), followed by
 * exactly @p trailing more operands: fills @p id and @p url and moves optind past the ID and
 * URL. KC_EXIT_OK, or KC_EXIT_USAGE after printing the bad id or @p cmd's usage.
 */
int kc_node_url_operands(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                         int trailing, kraken_uuid *id, const char **url);

#endif
