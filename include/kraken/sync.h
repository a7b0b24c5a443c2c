/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/sync.h
 * @brief State sync over a tree of kraken instances (SPEC 6; protocol in doc/PROTOCOL.md).
 *
 * A ::kraken_sync attaches to an engine and the caller's event_base. It
 * listens on UDP and TCP (same port) for children, and, when a parent address
 * is given, phones home to the parent and keeps the link alive, rejoining with
 * back-off after a loss. Cfg flows down, Dsc flows up; every message is
 * authenticated with HMAC-SHA256 under a per-link session key; no key crosses
 * the network.
 *
 * Keys (doc/PROTOCOL.md 2): the root holds the cluster secret; every other
 * instance holds only its own node key, which the root derives along the Cfg
 * parent chain (kraken_sync_write_node_key()). A parent derives its children's
 * keys from its own, so an intermediate's key covers its subtree and nothing
 * else, and a leaf's key covers only itself.
 */
#ifndef KRAKEN_SYNC_H
#define KRAKEN_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct kraken_sync kraken_sync;

#define KRAKEN_SYNC_OPTIONS_VERSION 1
#define KRAKEN_SYNC_DEFAULT_PORT 31415

/**
 * Options; start from KRAKEN_SYNC_OPTIONS_INIT or kraken_sync_options_init().
 * Versioned as kraken_engine_options: older versions accepted, unknown refused.
 */
typedef struct kraken_sync_options {
    unsigned version;           /**< KRAKEN_SYNC_OPTIONS_VERSION */
    const char *listen_addr;    /**< address to bind ("127.0.0.1", "::1"); NULL: 0.0.0.0 */
    uint16_t port;              /**< UDP+TCP port; 0 picks one (see kraken_sync_port()) */
    const char *parent_addr;    /**< "host", "host:port", "[v6]:port"; NULL for a root */
    const char *secret_file;    /**< this instance's key file: the cluster secret on the root
                                     (>= 16 bytes), the node key elsewhere (32 bytes, from
                                     kraken_sync_write_node_key()) */
    bool insecure;              /**< no secret: a fixed, public key; demos only. The library
                                     never prints: the program must warn its user. */
    uint32_t hello_ms;          /**< hello interval (10000) */
    uint32_t dead_ms;           /**< peer dead after this much silence (40000) */
    uint32_t damping_ms;        /**< coalesce changes this long before sending (5) */
    uint32_t rejoin_min_ms;     /**< first rejoin delay (250), doubling ... */
    uint32_t rejoin_max_ms;     /**< ... up to this (30000) */
    const void *key;            /**< instead of secret_file: the key itself (copied), e.g.
                                     from a credential store; NULL: use secret_file */
    size_t key_len;             /**< bytes at @c key */
} kraken_sync_options;

#define KRAKEN_SYNC_OPTIONS_INIT                                               \
    {KRAKEN_SYNC_OPTIONS_VERSION, NULL, KRAKEN_SYNC_DEFAULT_PORT, NULL, NULL, false, 10000, \
     40000, 5, 250, 30000, NULL, 0}

/**
 * Fill @p opts with the defaults (as KRAKEN_SYNC_OPTIONS_INIT) for struct
 * version @p version (pass KRAKEN_SYNC_OPTIONS_VERSION). KRAKEN_EINVAL for a
 * version this library does not know.
 */
int kraken_sync_options_init(kraken_sync_options *opts, unsigned version);

/** Counters, for tests, metrics and benchmarks. */
typedef struct kraken_sync_stats {
    uint64_t datagrams_sent, datagrams_received;
    uint64_t bytes_sent, bytes_received;    /**< UDP + TCP payload bytes */
    uint64_t tcp_messages_sent, tcp_messages_received;
    uint64_t dropped_bad_mac;        /**< failed HMAC */
    uint64_t dropped_unknown_sender; /**< no session with that sender */
    uint64_t dropped_replay;         /**< (epoch, seq) not newer than last seen */
    uint64_t dropped_not_authorized; /**< state for a node the sender may not speak for */
    uint64_t dropped_malformed;      /**< undecodable */
    uint64_t joins_accepted, joins_refused;
    uint64_t full_resends;           /**< snapshots sent on join or digest mismatch */
    uint64_t peers_lost;             /**< links declared dead */
    uint64_t accept_errors;          /**< accept() failures (e.g. at the fd limit) */
    uint64_t dropped_old;            /**< node states older than one already applied */
    uint64_t apply_failed;           /**< authenticated, authorized state the store refused
                                          (e.g. a Cfg or fact the local schemas lack) */
    uint64_t id_conflicts;           /**< joins refused: another instance has the node id */
    uint64_t send_failed;            /**< messages that could not be queued (repaired later
                                          by a snapshot) */
} kraken_sync_stats;

/**
 * Start syncing @p engine (not owned). The sync is a child of the engine: the
 * engine's free detaches it (sockets closed, timers cancelled; kraken_sync_port()
 * and the other queries then return 0/false, stats stay readable) and
 * kraken_sync_free() then only releases the handle. The sync belongs to the
 * thread that created it (the engine's); calls from another thread fail or
 * return 0 with KRAKEN_ETHREAD left as the message. A child
 * (parent_addr set) freezes the engine until its first full sync. Fails with
 * KRAKEN_EINVAL for bad options (no secret and not insecure, bad address) and
 * KRAKEN_EIO when the port cannot be bound.
 */
int kraken_sync_new(kraken_sync **out, kraken_engine *engine, struct event_base *base,
                    const kraken_sync_options *opts);
/** Close sockets, cancel timers, release the handle. NULL-safe; allowed after the engine's free. */
void kraken_sync_free(kraken_sync *sync);

/** The bound port (useful with port 0). */
uint16_t kraken_sync_port(const kraken_sync *sync);
/** True while a child's link to its parent is up (joined, first full state applied). */
bool kraken_sync_joined(const kraken_sync *sync);
/** Number of children with a live link. */
size_t kraken_sync_children(const kraken_sync *sync);
void kraken_sync_get_stats(const kraken_sync *sync, kraken_sync_stats *out);

/** How this instance sees a node's discovered state (doc/PROTOCOL.md 4, "Stale facts"). */
typedef enum kraken_sync_view {
    KRAKEN_SYNC_VIEW_NONE = 0, /**< not in this instance's subtree (or not in its Cfg) */
    KRAKEN_SYNC_VIEW_SELF = 1, /**< this instance's own node */
    KRAKEN_SYNC_VIEW_LIVE = 2, /**< under a child link that currently reports it */
    KRAKEN_SYNC_VIEW_STALE = 3 /**< cannot be seen now: the link below is down, or the instance
                                    below restarted and has not heard from it yet. Its last
                                    known Dsc facts are kept, unconfirmed. */
} kraken_sync_view;

/**
 * How @p sync sees node @p id (KRAKEN_SYNC_VIEW_NONE for unknown nodes). A STALE node's Dsc
 * (RunState included) is what was last reported; the parent of the node, not this instance,
 * decides about it. Changes are published as SYNC events NODES_STALE / NODES_FRESH, one per
 * child link and message, with the count of nodes.
 */
kraken_sync_view kraken_sync_node_view(const kraken_sync *sync, const kraken_uuid *id);

/** Write a new random cluster secret file (mode 0600). */
int kraken_sync_write_secret(const char *path);

#define KRAKEN_SYNC_NODE_KEY_LEN 32

/**
 * The key of node @p node whose Cfg parent holds @p parent_key (the cluster secret when the
 * parent is the root): HMAC-SHA256(parent_key, "kraken-node-key-v1" || id). KRAKEN_EINVAL for a
 * key under 16 bytes or NULL arguments.
 */
int kraken_sync_derive_node_key(const void *parent_key, size_t parent_key_len,
                                const kraken_uuid *node, uint8_t out[KRAKEN_SYNC_NODE_KEY_LEN]);

/**
 * On the root: write the key file of node @p node (mode 0600, replacing an older one
 * atomically), derived from the cluster secret in @p secret_file along the Cfg parent chain in
 * @p store, from the root (the node without a parentId) down to @p node. Give the file to that
 * node's instance as its secret_file. A node's key depends on its place in the tree: moving it
 * (or an ancestor) to another parent needs a new key file. KRAKEN_ENOTFOUND when @p node or a
 * node of its chain is not in @p store, KRAKEN_EINVAL when @p node is the root itself or the
 * chain loops, KRAKEN_EIO when a file cannot be read or written.
 */
int kraken_sync_write_node_key(const char *secret_file, const kraken_store *store,
                               const kraken_uuid *node, const char *path);

#ifdef __cplusplus
}
#endif
#endif
