/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/kraken.h
 * @brief Umbrella header for libkraken.
 *
 * The rules every header follows (details in error.h and doc/ARCHITECTURE.md):
 * - Returns: an @c int is a status (0 or a negative ::kraken_err, with a
 *   per-thread message from kraken_error_last()); orderings are @c *_compare,
 *   predicates return @c bool, counts @c size_t.
 * - Arguments: the object acted on first, outputs last (@c out); constructors
 *   (@c _new, @c _copy, @c _options_init, @c _parse) take their output first.
 * - Handles: a parent's free detaches the children the caller still holds
 *   (listeners, subscriptions, services, syncs, an engine on a borrowed store):
 *   their destroy hooks run, calls on them fail with KRAKEN_ESTATE, and their
 *   own release (@c _remove / @c _free) then only frees the handle.
 * - Versions: a struct the caller fills has @c unsigned @c version first (set
 *   by its @c *_INIT macro or @c *_options_init()); 0 or a newer version than
 *   the library's is refused. In an array, element 0's version sizes every
 *   element and all must carry it.
 * - Threads: a store, bus, engine or sync (and what hangs off it) is used only
 *   from the thread that created it; other threads get KRAKEN_ETHREAD. Nodes
 *   and values are plain data; the schema registry is thread-safe.
 */
#ifndef KRAKEN_KRAKEN_H
#define KRAKEN_KRAKEN_H

#include "codec.h"
#include "engine.h"
#include "error.h"
#include "event.h"
#include "log.h"
#include "module.h"
#include "mutation.h"
#include "node.h"
#include "schema.h"
#include "sim.h"
#include "store.h"
#include "sync.h"
#include "types.h"
#include "version.h"

#endif
