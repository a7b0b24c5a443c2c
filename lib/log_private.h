/*
 * log_private.h: the library's log lines go through the engine's callback (engine.c). Not
 * installed.
 */
#ifndef KRAKEN_LOG_PRIVATE_H
#define KRAKEN_LOG_PRIVATE_H

#include "util_private.h"

/* Log through the engine's callback (kraken_engine_set_log); a no-op without one. Input text in
 * the message is made one line (control characters become spaces). */
KRAKEN_PRIVATE bool kraken__engine_log_enabled(const kraken_engine *engine, int level);
KRAKEN_PRIVATE void kraken__engine_log(kraken_engine *engine, int level, const char *subsystem,
                                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
