/*
 * Private definitions shared by lib/ sources, as one include: every layer's private header.
 * Not installed. New code includes only the layer headers it needs:
 *
 *   util_private.h      errors, owner threads, strings, UTF-8, quoting, files (error.c, util.c)
 *   jsonscan_private.h  strict JSON syntax with positions (jsonscan.c)
 *   core_private.h      storage layout: schemas, records, slots, maps, lists, values
 *   url_private.h       compiled URLs, the per-leaf diff walk (url.c, diff.c)
 *   codec_private.h     JSON text of compound values, codec limits (json.c, pbcodec.c)
 *   store_private.h     borrowed reads of stored nodes (store.c)
 *   planner_private.h   mutation set, planner model, state sets (mutation.c, planner.c, graph.c)
 *   log_private.h       log lines through the engine's callback (engine.c)
 *   sync_private.h      sync internals and what sync needs from the engine (sync*.c)
 *   engine_private.h    the engine's own types, shared by engine*.c only (not included here)
 *   module_int.h        the module files' shared types (module*.c; not included here)
 */
#ifndef KRAKEN_INTERNAL_H
#define KRAKEN_INTERNAL_H

#include "util_private.h"
#include "jsonscan_private.h"
#include "core_private.h"
#include "url_private.h"
#include "codec_private.h"
#include "store_private.h"
#include "planner_private.h"
#include "log_private.h"
#include "sync_private.h"

#endif
