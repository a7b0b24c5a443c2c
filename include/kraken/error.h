/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/error.h
 * @brief Error codes, the per-thread last-error message, and the API's calling conventions.
 *
 * Return values (one rule for the whole API):
 * - A function that returns @c int returns a status: 0 on success, a negative
 *   ::kraken_err on failure. No @c int return means anything else. On failure
 *   the call changes nothing and leaves a one-line message for the calling
 *   thread (kraken_error_last()) naming the offending file, node, field or URL.
 * - The one exception is ordering: @c *_compare returns <0, 0 or >0 like memcmp
 *   (kraken_uuid_compare()); predicates return @c bool and are named as
 *   questions (@c *_equal, @c *_is_zero, @c *_contains, @c *_match, @c *_joined);
 *   counts and sizes return @c size_t (@c *_count, kraken_sync_children());
 *   names and borrowed objects return pointers (NULL when absent); version
 *   numbers return @c unsigned. Bulk calls (@c kraken_store_*_many) follow the
 *   status rule: 0 once every item was tried, per-item outcomes in @c results
 *   and the number of failures in @c n_failed.
 * - A call that can fail only by misuse and has nothing to return (frees,
 *   kraken_engine_freeze(), kraken_sync_get_stats()) returns @c void and does
 *   nothing on misuse (leaving the message).
 *
 * Arguments (one rule): the handle or value a call acts on comes first;
 * outputs come last, after every input, the main one named @c out (with
 * @c n_out for the length of an output array). Constructors are the one
 * family whose output comes first, because making it is all they do:
 * @c kraken_*_new(&out, ...), @c kraken_*_copy(&out, src),
 * @c kraken_*_options_init(&opts, version), @c kraken_*_parse(&out, text) and
 * kraken_uuid_generate(&out). Callbacks take @c void *userdata last;
 * registrations take an optional @c destroy(userdata) hook after it and
 * return their handle through a trailing @c out.
 *
 * Versioned structs (one rule): every struct a caller fills carries
 * @c unsigned @c version as its first member; later versions only append
 * members. Options structs (@c *_OPTIONS_VERSION) and ::kraken_mutation_decl,
 * ::kraken_service_ops, ::kraken_field_def, ::kraken_module_expect_hooks
 * (@c KRAKEN_MUTATION_DECL_VERSION, @c KRAKEN_SERVICE_OPS_VERSION,
 * @c KRAKEN_FIELD_DEF_VERSION, @c KRAKEN_MODULE_EXPECT_HOOKS_VERSION) follow it; their
 * @c *_INIT macros, KRAKEN_FIELD() and @c *_options_init() set it. The library
 * reads only the members of the caller's version (later ones take their
 * default) and refuses version 0 or a version newer than itself with
 * KRAKEN_EINVAL, changing nothing. In an array of such structs element 0's
 * version gives the stride, and every element must carry that same version.
 * Two kinds of caller-filled structs carry no version of their own: fixed
 * tuples, complete by definition (::kraken_fact, ::kraken_mutate,
 * ::kraken_enum_member, ::kraken_module_discoverable: a new member would be a
 * new struct), and the parts of ::kraken_module_desc, whose @c abi_version
 * (KRAKEN_MODULE_ABI_VERSION) covers its handlers and arrays.
 *
 * Handles: see doc/ARCHITECTURE.md "Ownership" (a parent's free detaches its
 * children; calls on a detached handle fail with KRAKEN_ESTATE; a call from a
 * thread that does not own the handle fails with KRAKEN_ETHREAD).
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
