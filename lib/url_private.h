/*
 * url_private.h: compiled URLs and the per-leaf diff walk (url.c, diff.c). Not installed.
 */
#ifndef KRAKEN_URL_PRIVATE_H
#define KRAKEN_URL_PRIVATE_H

#include "core_private.h"

/* Fast access for the planner/engine: compiled URLs. */
typedef struct kraken_url kraken_url;
KRAKEN_PRIVATE int kraken__url_compile(const char *url, kraken_url **out);
KRAKEN_PRIVATE void kraken__url_free(kraken_url *url);
KRAKEN_PRIVATE const char *kraken__url_text(const kraken_url *url); /* canonical */
KRAKEN_PRIVATE kraken_type kraken__url_type(const kraken_url *url);
KRAKEN_PRIVATE const struct kraken_enum_type *kraken__url_enum(const kraken_url *url);
/* Borrowed read: the slot at the URL, or NULL when absent (= zero value). No allocation. */
KRAKEN_PRIVATE const kraken_slot *kraken__url_peek(const kraken_url *url, const kraken_node *node);
/* Read/write with a compiled URL (same semantics as kraken_node_get/set). */
KRAKEN_PRIVATE int kraken__url_get(const kraken_url *url, const kraken_node *node, kraken_value *out);
KRAKEN_PRIVATE int kraken__url_set(const kraken_url *url, kraken_node *node, const kraken_value *v);

/* ==== url/diff additions (owner: url; url.c, diff.c) ==== */
/* Called once per changed leaf by kraken__node_diff_each, in kraken_node_diff() order. @p url is
 * canonical (readable with kraken_node_get on the node that has the value); @p old_value /
 * @p new_value are NONE when the leaf is absent or zero. All three are valid for the call only.
 * A non-zero return stops the walk and is returned. */
typedef int (*kraken__diff_fn)(const char *url, const kraken_value *old_value,
                               const kraken_value *new_value, void *userdata);
/* Walk @p before and @p after (NULL = empty node) in parallel. Allocates only for what differs. */
KRAKEN_PRIVATE int kraken__node_diff_each(const kraken_node *before, const kraken_node *after,
                                          kraken__diff_fn fn, void *userdata);
/* ==== end url/diff additions ==== */

#endif
