/**
 * @file kraken/error.h
 * @brief Error codes and the per-thread last-error message.
 *
 * Every fallible libkraken call returns an int: 0 on success, a negative
 * ::kraken_err on failure. On failure the call also leaves a human-readable
 * message for the calling thread (kraken_error_last()) that names the
 * offending file, node, field or URL.
 */
#ifndef KRAKEN_ERROR_H
#define KRAKEN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes. All are negative; 0 (KRAKEN_OK) is success. */
typedef enum kraken_err {
    KRAKEN_OK = 0,
    KRAKEN_EINVAL = -1,    /**< invalid argument or API misuse */
    KRAKEN_ENOMEM = -2,    /**< out of memory */
    KRAKEN_ENOTFOUND = -3, /**< node, URL, schema or item does not exist */
    KRAKEN_EEXISTS = -4,   /**< already exists */
    KRAKEN_ETYPE = -5,     /**< value of the wrong type for a URL/field */
    KRAKEN_EPARSE = -6,    /**< malformed input text (JSON, URL, value) */
    KRAKEN_EPROTO = -7,    /**< malformed or truncated binary/wire input */
    KRAKEN_EIO = -8,       /**< file or socket I/O failed (see message) */
    KRAKEN_EAUTH = -9,     /**< authentication failed */
    KRAKEN_ESTATE = -10,   /**< operation not valid in the current state */
    KRAKEN_ELIMIT = -11,   /**< a size or count limit was exceeded */
    KRAKEN_ENOPATH = -12,  /**< no mutation path reaches the goal */
    KRAKEN_ETHREAD = -13   /**< called from a thread that does not own the handle */
} kraken_err;

/** Short static description of an error code ("not found"). Never NULL. */
const char *kraken_strerror(int err);

/** Symbolic name of an error code ("KRAKEN_ENOTFOUND"). Never NULL. */
const char *kraken_err_name(int err);

/**
 * The message left by the last failed call on this thread, e.g.
 * "cluster.json: node 2 (4afd...): field 'physState': unknown enum name 'ON'".
 * Valid until the next libkraken call on this thread. Never NULL ("" if none).
 */
const char *kraken_error_last(void);

/** Clear this thread's last-error message. */
void kraken_error_clear(void);

/**
 * Set this thread's last-error message (printf-style) and return @p code, so
 * that code built on libkraken (modules, the daemon, bindings) reports its
 * failures the same way: `return kraken_error_set(KRAKEN_EIO, "cannot ...");`.
 */
int kraken_error_set(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
