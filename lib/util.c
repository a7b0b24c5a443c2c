/* Small shared helpers: string copies and file I/O with atomic replace. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

char *kraken__strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

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

int kraken__write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t path_len = strlen(path);
    char *tmp = malloc(path_len + sizeof ".tmp.XXXXXX");
    if (tmp == NULL)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, path_len);
    memcpy(tmp + path_len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int rc = kraken__err(KRAKEN_EIO, "%s: cannot create temporary file: %s", path,
                             strerror(errno));
        free(tmp);
        return rc;
    }
    const char *step = "write";
    if (write_all(fd, data, len) != 0)
        goto fail;
    step = "fsync";
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0)
        goto fail;
    step = "close";
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    free(tmp);
    if (sync_parent_dir(path) != 0)
        return kraken__err(KRAKEN_EIO, "%s: fsync of directory failed: %s", path,
                           strerror(errno));
    return KRAKEN_OK;
fail:;
    int rc = kraken__err(KRAKEN_EIO, "%s: %s failed: %s (old file left unchanged)", path, step,
                         strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
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
