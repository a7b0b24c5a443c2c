/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Small shared helpers at the bottom of the library: string copies, UTF-8 checks, quoting input
 * text for error messages, file I/O with atomic replace, and reading the versioned structs
 * callers fill.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util_private.h"

char *kraken__strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

void kraken__appendf(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < size ? *len + (size_t)n : size - 1;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

size_t kraken__utf8_seq(const char *text, size_t len, uint32_t *cp_out)
{
    const unsigned char *s = (const unsigned char *)text;
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp_out = c;
        return 1;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    /* Reject overlong forms, surrogates and code points past U+10FFFF. */
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_out = cp;
    return n + 1;
}

bool kraken__utf8_valid(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t n = kraken__utf8_seq(text + i, len - i, &cp);
            if (n == 0)
                return false;
            i += n;
            continue;
        }
        if (c == 0)
            return false; /* strings are stored NUL-terminated */
        i++;
    }
    return true;
}

/* ---- quoting input text for messages --------------------------------------------- */

/* Code points that move the cursor or change a terminal's state when printed raw. */
static bool is_control_cp(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 ||
           cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

const char *kraken__quote(char *buf, size_t size, const char *text, size_t len)
{
    static const char ellipsis[] = "...'";
    size_t o = 0, i = 0;
    if (size < sizeof ellipsis + 1) {
        if (size > 0)
            buf[0] = '\0';
        return buf;
    }
    if (text == NULL)
        text = "", len = 0;
    buf[o++] = '\'';
    while (i < len) {
        char esc[16];
        size_t elen, consumed;
        unsigned char c = (unsigned char)text[i];
        uint32_t cp = c;
        if (c >= 0x80) {
            consumed = kraken__utf8_seq(text + i, len - i, &cp);
            if (consumed == 0) { /* not UTF-8: show the byte */
                elen = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
                consumed = 1;
            } else if (is_control_cp(cp)) {
                elen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            } else {
                memcpy(esc, text + i, consumed);
                elen = consumed;
            }
        } else {
            consumed = 1;
            switch (c) {
            case '\n': memcpy(esc, "\\n", elen = 2); break;
            case '\r': memcpy(esc, "\\r", elen = 2); break;
            case '\t': memcpy(esc, "\\t", elen = 2); break;
            case '\\': memcpy(esc, "\\\\", elen = 2); break;
            case '\'': memcpy(esc, "\\'", elen = 2); break;
            default:
                if (is_control_cp(c))
                    elen = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
                else
                    esc[0] = (char)c, elen = 1;
            }
        }
        /* Keep room for the closing quote, or for "...'" when more input follows. */
        size_t reserve = i + consumed < len ? sizeof ellipsis : 2;
        if (o + elen + reserve > size) {
            memcpy(buf + o, ellipsis, sizeof ellipsis);
            return buf;
        }
        memcpy(buf + o, esc, elen);
        o += elen;
        i += consumed;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

/* ---- reading ------------------------------------------------------------------- */

int kraken__read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kraken__err(KRAKEN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kraken__err(KRAKEN_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            free(buf);
            close(fd);
            return kraken__err(KRAKEN_EIO, "%s: read failed: %s", path,
                               n == 0 ? "file shrank while reading" : strerror(saved));
        }
        done += (size_t)n;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return KRAKEN_OK;
}

/* ---- atomic replace ------------------------------------------------------------- */

#define TMP_SUFFIX ".tmp."
#define TMP_TEMPLATE TMP_SUFFIX "XXXXXX"
#define TMP_RANDOM_LEN 6

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync the directory holding @p path so the rename itself is durable. */
static int sync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkostemp() fills the X's from [A-Za-z0-9]: anything else is not one of our names. */
static bool is_our_temp_name(const char *name, const char *base, size_t base_len)
{
    size_t suffix = sizeof TMP_SUFFIX - 1;
    if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, TMP_SUFFIX, suffix) != 0)
        return false;
    const char *r = name + base_len + suffix;
    for (size_t i = 0; i < TMP_RANDOM_LEN; i++) {
        char c = r[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return false;
    }
    return r[TMP_RANDOM_LEN] == '\0';
}

/*
 * Remove "<path>.tmp.XXXXXX" files that an interrupted save left behind. Only regular files of
 * exactly that pattern, owned by this user, in the directory of @p path; and only those nobody
 * holds a lock on: a save in progress (this or another process) keeps an flock on its
 * temporary file, and the kernel drops it when that process dies. Best effort: a file that
 * cannot be removed stays, and the caller's operation goes on.
 */
size_t kraken__remove_stale_temps(const char *path)
{
    char *dir_copy = strdup(path), *base_copy = strdup(path);
    size_t removed = 0;
    if (dir_copy == NULL || base_copy == NULL)
        goto out;
    const char *dir = dirname(dir_copy), *base = basename(base_copy);
    size_t base_len = strlen(base);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        goto out;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_our_temp_name(de->d_name, base, base_len))
            continue;
        int fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dfd, de->d_name, 0) == 0)
            removed++;
        close(fd); /* drops the lock */
    }
    closedir(d);
out:
    free(dir_copy);
    free(base_copy);
    return removed;
}

int kraken__afile_open(kraken__afile *af, const char *path)
{
    memset(af, 0, sizeof *af);
    af->fd = -1;
    kraken__remove_stale_temps(path);
    size_t path_len = strlen(path);
    af->path = path;
    af->tmp = malloc(path_len + sizeof TMP_TEMPLATE);
    if (af->tmp == NULL)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", path);
    /* Another process's cleanup may remove the file between mkostemp and flock: then the
     * file has no name any more (st_nlink 0), and we make another. */
    for (int attempt = 0; attempt < 3; attempt++) {
        memcpy(af->tmp, path, path_len);
        memcpy(af->tmp + path_len, TMP_TEMPLATE, sizeof TMP_TEMPLATE);
        af->fd = mkostemp(af->tmp, O_CLOEXEC);
        if (af->fd < 0)
            break;
        /* The lock marks the file as in use for kraken__remove_stale_temps() elsewhere. A
         * file system without locks only loses that protection; EWOULDBLOCK means a cleaner
         * holds the new file and is removing it. */
        struct stat st;
        bool taken = flock(af->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (!taken && fstat(af->fd, &st) == 0 && st.st_nlink > 0)
            return KRAKEN_OK;
        close(af->fd);
        af->fd = -1;
    }
    int rc = kraken__err(KRAKEN_EIO, "%s: cannot create temporary file: %s", path,
                         af->fd < 0 && errno != 0 ? strerror(errno) : "removed while created");
    free(af->tmp);
    af->tmp = NULL;
    return rc;
}

static int afile_fail(kraken__afile *af, const char *step)
{
    int rc = kraken__err(KRAKEN_EIO, "%s: %s failed: %s (old file left unchanged)", af->path, step,
                         strerror(errno));
    kraken__afile_abort(af);
    return rc;
}

int kraken__afile_write(kraken__afile *af, const void *data, size_t len)
{
    if (af->fd < 0)
        return kraken__err(KRAKEN_EINVAL, "%s: write to a closed temporary file", af->path);
    if (write_all(af->fd, data, len) != 0)
        return afile_fail(af, "write");
    return KRAKEN_OK;
}

int kraken__afile_commit(kraken__afile *af)
{
    if (af->fd < 0)
        return kraken__err(KRAKEN_EINVAL, "%s: commit of a closed temporary file", af->path);
    if (fchmod(af->fd, 0644) != 0 || fsync(af->fd) != 0)
        return afile_fail(af, "fsync");
    int fd = af->fd;
    af->fd = -1;
    if (close(fd) != 0)
        return afile_fail(af, "close");
    if (rename(af->tmp, af->path) != 0)
        return afile_fail(af, "rename");
    free(af->tmp);
    af->tmp = NULL;
    if (sync_parent_dir(af->path) != 0)
        return kraken__err(KRAKEN_EIO, "%s: fsync of directory failed: %s", af->path,
                           strerror(errno));
    return KRAKEN_OK;
}

void kraken__afile_abort(kraken__afile *af)
{
    if (af->fd >= 0)
        close(af->fd);
    af->fd = -1;
    if (af->tmp != NULL) {
        int saved = errno;
        unlink(af->tmp);
        errno = saved;
        free(af->tmp);
        af->tmp = NULL;
    }
}

int kraken__write_file_atomic(const char *path, const void *data, size_t len)
{
    kraken__afile af;
    int rc = kraken__afile_open(&af, path);
    if (rc == 0 && (rc = kraken__afile_write(&af, data, len)) == 0)
        rc = kraken__afile_commit(&af);
    return rc;
}

/* ---- versioned structs that callers fill ------------------------------------------- */

size_t kraken__struct_size(const kraken__struct_abi *abi, unsigned version)
{
    return version >= 1 && version <= abi->n_versions ? abi->sizes[version - 1] : 0;
}

/* The version member of a caller's struct (first in every version). */
static unsigned struct_version(const void *caller)
{
    unsigned version;
    memcpy(&version, caller, sizeof version);
    return version;
}

int kraken__struct_version_check(const kraken__struct_abi *abi, unsigned version)
{
    if (kraken__struct_size(abi, version) != 0)
        return 0;
    return kraken__err(KRAKEN_EINVAL,
                       "%s version %u (set .version = %s; this libkraken knows 1..%u)",
                       abi->name, version, abi->constant, abi->n_versions);
}

int kraken__struct_read(const kraken__struct_abi *abi, const void *caller, void *out)
{
    unsigned version = struct_version(caller);
    size_t size = kraken__struct_size(abi, version);
    if (size == 0)
        return kraken__struct_version_check(abi, version);
    /* members of later versions than the caller's keep their zero value */
    memset(out, 0, abi->sizes[abi->n_versions - 1]);
    memcpy(out, caller, size);
    return 0;
}

int kraken__struct_array_check(const kraken__struct_abi *abi, const void *array, size_t n,
                               size_t *stride, size_t *bad)
{
    *stride = 0;
    *bad = 0;
    if (n == 0)
        return 0;
    unsigned first = struct_version(array);
    size_t size = kraken__struct_size(abi, first);
    if (size == 0)
        return kraken__struct_version_check(abi, first);
    *stride = size; /* also on refusal: the caller finds element *bad with it to name it */
    for (size_t i = 1; i < n; i++) {
        unsigned version = struct_version((const char *)array + i * size);
        if (version != first) {
            *bad = i;
            return kraken__err(KRAKEN_EINVAL,
                               "%s version %u, but element 0 has version %u (every element of "
                               "an array carries the same version)",
                               abi->name, version, first);
        }
    }
    return 0;
}

void kraken__struct_array_get(const kraken__struct_abi *abi, const void *array, size_t stride,
                              size_t i, void *out)
{
    memset(out, 0, abi->sizes[abi->n_versions - 1]);
    memcpy(out, (const char *)array + i * stride, stride);
}

/* ---- owner threads ------------------------------------------------------------- */

void kraken__owner_init(kraken__owner *owner)
{
    owner->thread = pthread_self();
    owner->tid = (long)gettid();
}

int kraken__owner_refuse(const kraken__owner *owner, const char *op, const char *what)
{
    return kraken__err(KRAKEN_ETHREAD,
                       "%s: called from thread %ld, but the %s belongs to thread %ld (the one that "
                       "created it); libkraken handles are single-threaded",
                       op, (long)gettid(), what, owner->tid);
}
