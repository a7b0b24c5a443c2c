/* SPDX-License-Identifier: BSD-3-Clause */
/* nodes_io.h: node list files to the daemon (nodes_io.c). */
#ifndef KRAKENCTL_NODES_IO_H
#define KRAKENCTL_NODES_IO_H

#include "krakenctl.h"

/* Send the node list in @p file ("-" = stdin) with @p method to @p path; report each node. */
int kc_send_nodes(kc_ctx *ctx, const char *method, const char *path, const char *file,
                  const char *verb);

#endif
