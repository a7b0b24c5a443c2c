/*
 * store_private.h: store internals for the engine (store.c). Not installed.
 */
#ifndef KRAKEN_STORE_PRIVATE_H
#define KRAKEN_STORE_PRIVATE_H

#include "core_private.h"

/* Store internals for the engine: borrowed pointer to the stored node (no copy). */
KRAKEN_PRIVATE const kraken_node *kraken__store_peek(const kraken_store *store,
                                                     kraken_state_kind kind,
                                                     const kraken_uuid *id);

#endif
