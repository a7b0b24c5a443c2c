/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * util_private.h: the bottom layer (error.c, util.c): the last-error helpers, owner-thread
 * checks, versioned caller structs, strings, UTF-8, quoting for messages, files. Not installed.
 */
#ifndef KRAKEN_UTIL_PRIVATE_H
#define KRAKEN_UTIL_PRIVATE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kraken/kraken.h"

#define KRAKEN_PRIVATE __attribute__((visibility("hidden")))

/* ---- errors (error.c) ---------------------------------------------------- */

/* Set this thread's last-error message and return @p code (always negative). */
KRAKEN_PRIVATE int kraken__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "prefix: " to the current message, keep the code; returns @p code. */
KRAKEN_PRIVATE int kraken__err_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- owner threads (util.c) ------------------------------------------------ */

/*
 * A store, bus, engine and sync belong to the thread that created them (their
 * loop's thread). Public entry points call kraken__owner_check() first: a call
 * from another thread fails with KRAKEN_ETHREAD instead of racing the owner.
 */
typedef struct kraken__owner {
    pthread_t thread;
    long tid; /* for the message */
} kraken__owner;

KRAKEN_PRIVATE void kraken__owner_init(kraken__owner *owner);
KRAKEN_PRIVATE int kraken__owner_refuse(const kraken__owner *owner, const char *op,
                                        const char *what);
/* 0 on the owner thread; else KRAKEN_ETHREAD "op: called from thread T, but the <what> belongs to thread O". */
static inline int kraken__owner_check(const kraken__owner *owner, const char *op, const char *what)
{
    if (__builtin_expect(pthread_equal(owner->thread, pthread_self()) != 0, 1))
        return 0;
    return kraken__owner_refuse(owner, op, what);
}

/* ---- versioned structs that callers fill (util.c) ---------------------------- */

/*
 * A public struct a caller fills, with `unsigned version` first (kraken_mutation_decl,
 * kraken_service_ops, kraken_field_def). A later version only appends members, so each
 * version is a prefix of the current struct. sizes[v - 1] is sizeof the struct as a caller
 * built against version v has it (tail padding included: it is an array's stride); the
 * owner of each struct keeps that table, and a new version is one more entry.
 */
typedef struct kraken__struct_abi {
    const char *name;     /* "kraken_mutation_decl" */
    const char *constant; /* "KRAKEN_MUTATION_DECL_VERSION" */
    const size_t *sizes;
    unsigned n_versions;  /* the newest version this library knows */
} kraken__struct_abi;

/*
 * Size of a version whose last member is @p member: through it, rounded up to the struct's
 * alignment, as sizeof gives it to a caller of that version (valid while later versions do
 * not raise the struct's alignment: pointer-sized members are the largest today).
 */
#define KRAKEN__VERSION_SIZE(type, member)                                                      \
    ((offsetof(type, member) + sizeof(((type *)0)->member) + _Alignof(type) - 1) /              \
     _Alignof(type) * _Alignof(type))

/* Bytes of version @p version, 0 when this library does not know it (0, or newer). */
KRAKEN_PRIVATE size_t kraken__struct_size(const kraken__struct_abi *abi, unsigned version);
/*
 * 0 for a version this library knows; else KRAKEN_EINVAL with the message
 * "<name> version V (set .version = <constant>; this libkraken knows 1..N)" for the caller
 * to prefix (kraken__err_prefix) with what it names.
 */
KRAKEN_PRIVATE int kraken__struct_version_check(const kraken__struct_abi *abi, unsigned version);
/*
 * Copy the caller's struct into @p out (a current-version struct): zeroed, then the bytes of
 * the caller's version. An unknown version is refused as kraken__struct_version_check().
 */
KRAKEN_PRIVATE int kraken__struct_read(const kraken__struct_abi *abi, const void *caller,
                                       void *out);
/*
 * An array of @p n caller structs: element 0's version gives the stride (*stride), and every
 * element must carry that version. On refusal *bad is the index to name in the prefix, at
 * byte offset *bad * *stride of @p array.
 */
KRAKEN_PRIVATE int kraken__struct_array_check(const kraken__struct_abi *abi, const void *array,
                                              size_t n, size_t *stride, size_t *bad);
/* Element @p i of an array checked by kraken__struct_array_check(), read as by
 * kraken__struct_read(). */
KRAKEN_PRIVATE void kraken__struct_array_get(const kraken__struct_abi *abi, const void *array,
                                             size_t stride, size_t i, void *out);

/* ---- util (util.c: the bottom layer) --------------------------------------- */
KRAKEN_PRIVATE char *kraken__strndup(const char *s, size_t n);
/* snprintf at buf + *len that never runs past @p size (truncates instead); advances *len. */
KRAKEN_PRIVATE void kraken__appendf(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* True when @p text[0..len) is valid UTF-8 without NUL bytes (strings are NUL-terminated). */
KRAKEN_PRIVATE bool kraken__utf8_valid(const char *text, size_t len);
/* Length of the valid UTF-8 sequence at @p text (code point in *cp), 0 if invalid. */
KRAKEN_PRIVATE size_t kraken__utf8_seq(const char *text, size_t len, uint32_t *cp);
/* Input text for an error message: single-quoted, escaped so that it stays on one line and
 * prints no control character (\n, \t, \xHH for bytes that are not UTF-8, \uHHHH for C1 and
 * bidi controls), cut with "..." to fit @p size. Returns @p buf. */
#define KRAKEN_QUOTE_SIZE 96
KRAKEN_PRIVATE const char *kraken__quote(char *buf, size_t size, const char *text, size_t len);
/* Read a whole file; error names the path. */
KRAKEN_PRIVATE int kraken__read_file(const char *path, char **out, size_t *len);
/* Atomic replace: temp file "<path>.tmp.XXXXXX" in the same directory, fsync, rename, fsync
 * dir. Opening first removes the stale temporary files of @p path that interrupted saves left
 * (kraken__remove_stale_temps). The writer holds an flock on its temporary file. */
typedef struct kraken__afile {
    const char *path; /* borrowed */
    char *tmp;
    int fd;
} kraken__afile;
KRAKEN_PRIVATE int kraken__afile_open(kraken__afile *af, const char *path);
/* On failure the temporary file is already removed (no abort needed). */
KRAKEN_PRIVATE int kraken__afile_write(kraken__afile *af, const void *data, size_t len);
KRAKEN_PRIVATE int kraken__afile_commit(kraken__afile *af);
/* Close and remove the temporary file; the old file stays. Safe after a failure. */
KRAKEN_PRIVATE void kraken__afile_abort(kraken__afile *af);
KRAKEN_PRIVATE int kraken__write_file_atomic(const char *path, const void *data, size_t len);
/* Remove "<path>.tmp.XXXXXX" regular files of this user that no save holds locked; returns how
 * many. Best effort, never fails. */
KRAKEN_PRIVATE size_t kraken__remove_stale_temps(const char *path);

#endif
