/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/log.h
 * @brief Log/trace callback: how errors that happen inside the event loop reach the program.
 *
 * The library never prints. Errors that no API call can return (a Cfg push from
 * the parent that fails to apply, a listener out of file descriptors, a peer
 * that fails authentication) are counted and, when the program installed a log
 * callback on the engine (kraken_engine_set_log()), reported through it with
 * their cause. Levels are the original kraken's (0 = PANIC ... 9 = DDDEBUG).
 */
#ifndef KRAKEN_LOG_H
#define KRAKEN_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/** Log levels, as the original's `-log 0..9`. Lower is more severe. */
typedef enum kraken_log_level {
    KRAKEN_LOG_PANIC = 0,
    KRAKEN_LOG_FATAL = 1,
    KRAKEN_LOG_CRITICAL = 2,
    KRAKEN_LOG_ERROR = 3,
    KRAKEN_LOG_WARNING = 4,
    KRAKEN_LOG_NOTICE = 5,
    KRAKEN_LOG_INFO = 6,
    KRAKEN_LOG_DEBUG = 7,
    KRAKEN_LOG_DDEBUG = 8,
    KRAKEN_LOG_DDDEBUG = 9
} kraken_log_level;

/**
 * A log callback. @p subsystem is a short static name ("engine", "sync",
 * "store"); @p message is one line without a trailing newline, valid during
 * the call. Called on the engine's thread only, from the loop or from inside
 * an API call; it must not free the engine.
 */
typedef void (*kraken_log_fn)(int level, const char *subsystem, const char *message,
                              void *userdata);

/** "PANIC" ... "DDDEBUG"; "UNKNOWN" outside 0..9. Never NULL. */
const char *kraken_log_level_name(int level);

#ifdef __cplusplus
}
#endif
#endif
