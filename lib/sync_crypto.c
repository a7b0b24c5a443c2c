/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync protocol cryptography (doc/PROTOCOL.md 2): cluster secret and node key files, node and
 * session keys, join proofs, envelope MACs and state digests. HMAC-SHA256 and BLAKE2b from libsodium.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(((kraken_sync_hash *)0)->state),
               "kraken_sync_hash too small for crypto_generichash_state");
_Static_assert(crypto_auth_hmacsha256_BYTES == KRAKEN_SYNC_KEY_LEN, "HMAC-SHA256 is 32 bytes");

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = -1;

static void sodium_init_once(void) { sodium_status = sodium_init(); }

int kraken__sync_crypto_init(void)
{
    pthread_once(&sodium_once, sodium_init_once);
    if (sodium_status < 0)
        return kraken__err(KRAKEN_EIO, "libsodium initialisation failed");
    return KRAKEN_OK;
}

int kraken__sync_secret_load(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kraken__err(KRAKEN_EIO, "secret file %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kraken__err(KRAKEN_EINVAL, "secret file %s: not a regular file", path);
    }
    /* Like ssh with private keys: a secret any local user can read protects nothing. */
    if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        close(fd);
        return kraken__err(KRAKEN_EINVAL,
                           "secret file %s: readable or writable by other users (mode %04o); "
                           "chmod 600 it",
                           path, (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size < KRAKEN_SYNC_SECRET_MIN || st.st_size > KRAKEN_SYNC_SECRET_MAX) {
        close(fd);
        return kraken__err(KRAKEN_EINVAL, "secret file %s: %lld bytes, need %d to %d", path,
                           (long long)st.st_size, KRAKEN_SYNC_SECRET_MIN, KRAKEN_SYNC_SECRET_MAX);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        close(fd);
        return kraken__err(KRAKEN_ENOMEM, "secret file %s: out of memory", path);
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            kraken__sync_secret_free(buf, size);
            close(fd);
            return kraken__err(KRAKEN_EIO, "secret file %s: read failed: %s", path,
                               n == 0 ? "file shrank while reading" : strerror(saved));
        }
        done += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = size;
    return KRAKEN_OK;
}

void kraken__sync_secret_free(uint8_t *secret, size_t len)
{
    if (secret == NULL)
        return;
    sodium_memzero(secret, len);
    free(secret);
}

void kraken__sync_insecure_secret(const uint8_t **secret, size_t *len)
{
    static const uint8_t insecure[] = "kraken-insecure-well-known-secret-v1";
    *secret = insecure;
    *len = sizeof insecure - 1;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
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

int kraken_sync_write_secret(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_write_secret: no path");
    int rc = kraken__sync_crypto_init();
    if (rc < 0)
        return rc;
    /* O_EXCL: replacing a cluster's secret by accident would lock every node out. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return kraken__err(KRAKEN_EEXISTS, "secret file %s already exists (not replaced)",
                               path);
        return kraken__err(KRAKEN_EIO, "secret file %s: cannot create: %s", path,
                           strerror(errno));
    }
    uint8_t secret[32];
    randombytes_buf(secret, sizeof secret);
    const char *step = "fchmod";
    if (fchmod(fd, 0600) != 0) /* the umask may have narrowed it further; never widened */
        goto fail;
    step = "write";
    if (write_all(fd, secret, sizeof secret) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    sodium_memzero(secret, sizeof secret);
    if (close(fd) != 0) {
        fd = -1;
        step = "close";
        goto fail;
    }
    return KRAKEN_OK;
fail:;
    int saved = errno;
    sodium_memzero(secret, sizeof secret);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return kraken__err(KRAKEN_EIO, "secret file %s: %s failed: %s", path, step, strerror(saved));
}

static void hmac(const uint8_t *key, size_t key_len, const char *label, const uint8_t *data,
                 size_t len, uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, strlen(label));
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

void kraken__sync_node_key(const uint8_t *secret, size_t len, const kraken_uuid *id,
                           uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    hmac(secret, len, "kraken-node-key-v1", id->bytes, sizeof id->bytes, out);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

void kraken__sync_transcript_bytes(const kraken_sync_transcript *t,
                                   uint8_t out[KRAKEN_SYNC_TRANSCRIPT_LEN])
{
    uint8_t *p = out;
    memcpy(p, t->child_id.bytes, 16);
    p += 16;
    memcpy(p, t->parent_id.bytes, 16);
    p += 16;
    memcpy(p, t->nonce_child, KRAKEN_SYNC_NONCE_LEN);
    p += KRAKEN_SYNC_NONCE_LEN;
    memcpy(p, t->nonce_parent, KRAKEN_SYNC_NONCE_LEN);
    p += KRAKEN_SYNC_NONCE_LEN;
    put_be64(p, t->epoch_child);
    put_be64(p + 8, t->epoch_parent);
    p[16] = (uint8_t)(t->udp_port >> 8);
    p[17] = (uint8_t)t->udp_port;
}

void kraken__sync_session_key(const uint8_t node_key[KRAKEN_SYNC_KEY_LEN],
                              const kraken_sync_transcript *t, uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    uint8_t tr[KRAKEN_SYNC_TRANSCRIPT_LEN];
    kraken__sync_transcript_bytes(t, tr);
    hmac(node_key, KRAKEN_SYNC_KEY_LEN, "kraken-session-v1", tr, sizeof tr, out);
}

void kraken__sync_proof(const uint8_t node_key[KRAKEN_SYNC_KEY_LEN], bool by_parent,
                        const kraken_sync_transcript *t, uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    uint8_t tr[KRAKEN_SYNC_TRANSCRIPT_LEN];
    kraken__sync_transcript_bytes(t, tr);
    hmac(node_key, KRAKEN_SYNC_KEY_LEN,
         by_parent ? "kraken-parent-proof-v1" : "kraken-child-proof-v1", tr, sizeof tr, out);
}

void kraken__sync_mac(const uint8_t key[KRAKEN_SYNC_KEY_LEN], const uint8_t sender[16],
                      uint64_t epoch, uint64_t seq, char channel, const uint8_t *body, size_t len,
                      uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    uint8_t head[16 + 8 + 8 + 1];
    memcpy(head, sender, 16);
    put_be64(head + 16, epoch);
    put_be64(head + 24, seq);
    head[32] = (uint8_t)channel;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, KRAKEN_SYNC_KEY_LEN);
    crypto_auth_hmacsha256_update(&st, head, sizeof head);
    if (len > 0)
        crypto_auth_hmacsha256_update(&st, body, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

bool kraken__sync_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

void kraken__sync_wipe(void *buf, size_t len) { sodium_memzero(buf, len); }

void kraken__sync_random(void *buf, size_t len) { randombytes_buf(buf, len); }

uint32_t kraken__sync_random_below(uint32_t upper)
{
    return upper == 0 ? 0 : randombytes_uniform(upper);
}

void kraken__sync_hash_init(kraken_sync_hash *h)
{
    crypto_generichash_init((crypto_generichash_state *)(void *)h->state, NULL, 0,
                            KRAKEN_SYNC_DIGEST_LEN);
}

void kraken__sync_hash_update(kraken_sync_hash *h, const void *data, size_t len)
{
    crypto_generichash_update((crypto_generichash_state *)(void *)h->state, data, len);
}

void kraken__sync_hash_final(kraken_sync_hash *h, uint8_t out[KRAKEN_SYNC_DIGEST_LEN])
{
    crypto_generichash_final((crypto_generichash_state *)(void *)h->state, out,
                             KRAKEN_SYNC_DIGEST_LEN);
}

/* ---- node keys (doc/PROTOCOL.md 2) ---------------------------------------------------- */

int kraken_sync_derive_node_key(const void *parent_key, size_t parent_key_len,
                                const kraken_uuid *node, uint8_t out[KRAKEN_SYNC_NODE_KEY_LEN])
{
    if (parent_key == NULL || node == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_derive_node_key: NULL argument");
    if (parent_key_len < KRAKEN_SYNC_SECRET_MIN || parent_key_len > KRAKEN_SYNC_SECRET_MAX)
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_derive_node_key: key of %zu bytes, need "
                                          "%d to %d",
                           parent_key_len, KRAKEN_SYNC_SECRET_MIN, KRAKEN_SYNC_SECRET_MAX);
    int rc = kraken__sync_crypto_init();
    if (rc < 0)
        return rc;
    kraken__sync_node_key(parent_key, parent_key_len, node, out);
    return KRAKEN_OK;
}

#define MAX_CHAIN 4096 /* as sync.c's MAX_PATH_DEPTH: a longer parent chain is a loop */

/* The Cfg parent chain of @p node up to (not including) the root, nearest the root first. */
static int chain_to_root(const kraken_store *store, const kraken_uuid *node, kraken_uuid *chain,
                         size_t *depth)
{
    char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid cur = *node;
    size_t n = 0;
    for (;;) {
        const kraken_node *cfg = kraken__store_peek(store, KRAKEN_CFG, &cur);
        if (cfg == NULL)
            return n == 0 ? kraken__err(KRAKEN_ENOTFOUND, "node %s is not in the store",
                                        kraken_uuid_format(node, a))
                          : kraken__err(KRAKEN_ENOTFOUND,
                                        "node %s: its ancestor %s is not in the store (the "
                                        "chain must reach the root)",
                                        kraken_uuid_format(node, a), kraken_uuid_format(&cur, b));
        const kraken_uuid *parent = cfg->rec.slots[KRAKEN_NODE_F_PARENT_ID].uuid;
        static const kraken_uuid nil;
        bool top = parent == NULL || memcmp(parent->bytes, nil.bytes, 16) == 0;
        if (top && n == 0)
            return kraken__err(KRAKEN_EINVAL,
                               "node %s has no parentId: it is the root, whose key is the "
                               "cluster secret itself",
                               kraken_uuid_format(node, a));
        if (top)
            break;
        if (n == MAX_CHAIN)
            return kraken__err(KRAKEN_EINVAL, "node %s: its Cfg parent chain loops",
                               kraken_uuid_format(node, a));
        chain[n++] = cur;
        cur = *parent;
    }
    for (size_t i = 0; i < n / 2; i++) { /* root first */
        kraken_uuid t = chain[i];
        chain[i] = chain[n - 1 - i];
        chain[n - 1 - i] = t;
    }
    *depth = n;
    return KRAKEN_OK;
}

/* Write @p len bytes to @p path atomically (temporary file, fsync, rename), mode 0600. */
static int write_key_file(const char *path, const uint8_t *key, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (tmp == NULL)
        return kraken__err(KRAKEN_ENOMEM, "key file %s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int saved = errno;
        free(tmp);
        return kraken__err(KRAKEN_EIO, "key file %s: cannot create a temporary file: %s", path,
                           strerror(saved));
    }
    const char *step = "fchmod";
    if (fchmod(fd, 0600) != 0)
        goto fail;
    step = "write";
    if (write_all(fd, key, len) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "close";
    int c = close(fd);
    fd = -1;
    if (c != 0)
        goto fail;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    free(tmp);
    return KRAKEN_OK;
fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return kraken__err(KRAKEN_EIO, "key file %s: %s failed: %s", path, step, strerror(saved));
}

int kraken_sync_write_node_key(const char *secret_file, const kraken_store *store,
                               const kraken_uuid *node, const char *path)
{
    if (secret_file == NULL || store == NULL || node == NULL || path == NULL || path[0] == '\0')
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_write_node_key: NULL argument");
    int rc = kraken__sync_crypto_init();
    if (rc < 0)
        return rc;
    kraken_uuid *chain = malloc(MAX_CHAIN * sizeof *chain);
    if (chain == NULL)
        return kraken__err(KRAKEN_ENOMEM, "kraken_sync_write_node_key: out of memory");
    size_t depth = 0;
    uint8_t *secret = NULL;
    size_t secret_len = 0;
    if ((rc = chain_to_root(store, node, chain, &depth)) < 0 ||
        (rc = kraken__sync_secret_load(secret_file, &secret, &secret_len)) < 0) {
        free(chain);
        return rc;
    }
    uint8_t key[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_node_key(secret, secret_len, &chain[0], key);
    kraken__sync_secret_free(secret, secret_len);
    for (size_t i = 1; i < depth; i++) {
        uint8_t next[KRAKEN_SYNC_KEY_LEN];
        kraken__sync_node_key(key, sizeof key, &chain[i], next);
        memcpy(key, next, sizeof key);
        sodium_memzero(next, sizeof next);
    }
    free(chain);
    rc = write_key_file(path, key, sizeof key);
    sodium_memzero(key, sizeof key);
    return rc;
}
