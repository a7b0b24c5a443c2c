/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/store.h
 * @brief The Cfg/Dsc state store (SPEC 2).
 *
 * One store holds two node sets, Cfg (desired) and Dsc (discovered), always
 * with the same ids. Every read returns a copy: no caller can change stored
 * state except through these calls, and every effective change is reported
 * to the listeners, synchronously and in order, after it is applied. Writes
 * that change nothing report nothing. Listeners must not write to the store.
 *
 * Threads: a store belongs to the thread that created it (the event loop's).
 * Every call taking a store or a listener from another thread changes nothing
 * and fails with KRAKEN_ETHREAD (calls that cannot return an error, such as
 * kraken_store_count(), return 0/false and leave the message).
 *
 * Lifetime: a listener handle returned through @c out belongs to the caller
 * until kraken_store_listener_remove(). kraken_store_free() detaches the
 * listeners that are still registered (their destroy hooks run); a detached
 * handle stays valid: removing it then only frees the handle. A listener
 * registered with @c out NULL belongs to the store and goes with it.
 */
#ifndef KRAKEN_STORE_H
#define KRAKEN_STORE_H

#include <stddef.h>

#include "node.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kraken_store kraken_store;
typedef struct kraken_store_listener kraken_store_listener;

/** Which of the two node sets. */
typedef enum kraken_state_kind { KRAKEN_CFG = 0, KRAKEN_DSC = 1 } kraken_state_kind;

/** What a state change was (numbering as the original's StateChange types). */
typedef enum kraken_change_kind {
    KRAKEN_CHANGE_CREATE = 0,     /**< node created (url is NULL) */
    KRAKEN_CHANGE_READ = 1,       /**< never emitted; keeps the original numbering */
    KRAKEN_CHANGE_UPDATE = 2,     /**< a Dsc value changed */
    KRAKEN_CHANGE_DELETE = 3,     /**< node deleted (url is NULL) */
    KRAKEN_CHANGE_CFG_UPDATE = 4  /**< a Cfg value changed */
} kraken_change_kind;

/** One change, valid for the duration of the listener call. */
typedef struct kraken_state_change {
    kraken_change_kind kind;
    kraken_uuid node_id;
    const char *url;                /**< canonical leaf URL; NULL for CREATE/DELETE */
    const kraken_value *old_value;  /**< NONE value when absent before */
    const kraken_value *new_value;  /**< NONE value when absent after */
} kraken_state_change;

typedef void (*kraken_store_listener_fn)(const kraken_state_change *change, void *userdata);

/** Per-item outcome of a bulk call. @c message is malloc'ed (NULL on success). */
typedef struct kraken_result {
    int code;
    char *message;
} kraken_result;
/** Free the messages in an array of results. */
void kraken_results_clear(kraken_result *results, size_t n);

/** Create an empty store, owned by the calling thread. */
int kraken_store_new(kraken_store **out);
/**
 * Free the store and its nodes; detach its listeners (their destroy hooks run;
 * an engine using the store as its borrowed store is detached too, see
 * engine.h). NULL-safe. From a store listener it is refused (nothing is
 * freed; KRAKEN_ESTATE is left as the message).
 */
void kraken_store_free(kraken_store *store);

size_t kraken_store_count(const kraken_store *store);
bool kraken_store_contains(const kraken_store *store, const kraken_uuid *id);

/** Create a node: @p cfg (copied) into Cfg and an empty node with its id into Dsc. */
int kraken_store_create(kraken_store *store, const kraken_node *cfg);
/** Copy of one node. KRAKEN_ENOTFOUND if unknown. */
int kraken_store_read(const kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                      kraken_node **out);
/** Copies of all nodes of one kind, sorted by id. Free with kraken_nodes_free(). */
int kraken_store_read_all(const kraken_store *store, kraken_state_kind kind, kraken_node ***out,
                          size_t *n_out);
/** Replace a whole node (copied); the id must exist. */
int kraken_store_update(kraken_store *store, kraken_state_kind kind, const kraken_node *node);
/** Set one value by URL (creating what the URL needs). */
int kraken_store_set_value(kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                           const char *url, const kraken_value *value);
/** Set one value given as text (see kraken_node_set_text()). */
int kraken_store_set_text(kraken_store *store, kraken_state_kind kind, const kraken_uuid *id,
                          const char *url, const char *text);
/** Read one value by URL; the caller clears @p out. */
int kraken_store_get_value(const kraken_store *store, kraken_state_kind kind,
                           const kraken_uuid *id, const char *url, kraken_value *out);
/** Delete a node from both sets. */
int kraken_store_delete(kraken_store *store, const kraken_uuid *id);
/** Delete every node. */
int kraken_store_delete_all(kraken_store *store);

/*
 * Bulk forms: every item is tried; @p results (n entries, caller-allocated)
 * gets one outcome per item and @p n_failed (may be NULL) the number of items
 * that failed. They return 0 once every item was tried (whatever the items'
 * outcomes), or a negative error for misuse (NULL arrays) that tried nothing.
 */
int kraken_store_create_many(kraken_store *store, kraken_node *const *nodes, size_t n,
                             kraken_result *results, size_t *n_failed);
int kraken_store_update_many(kraken_store *store, kraken_state_kind kind,
                             kraken_node *const *nodes, size_t n, kraken_result *results,
                             size_t *n_failed);
int kraken_store_read_many(const kraken_store *store, kraken_state_kind kind,
                           const kraken_uuid *ids, size_t n, kraken_node **out,
                           kraken_result *results, size_t *n_failed);
int kraken_store_delete_many(kraken_store *store, const kraken_uuid *ids, size_t n,
                             kraken_result *results, size_t *n_failed);

/**
 * Register a listener for every effective change. @p destroy (may be NULL)
 * is called with @p userdata when the listener is removed or the store freed.
 * With @p out, the caller owns the handle and must release it with
 * kraken_store_listener_remove() (before or after the store's free); with
 * @p out NULL the listener lives as long as the store.
 */
int kraken_store_listen(kraken_store *store, kraken_store_listener_fn fn, void *userdata,
                        void (*destroy)(void *userdata), kraken_store_listener **out);
/**
 * Remove a listener and release its handle: no further calls, its destroy hook
 * runs (unless the store's free already ran it). NULL-safe. Allowed from a
 * listener and after the store was freed.
 */
void kraken_store_listener_remove(kraken_store_listener *listener);

/**
 * One node set as JSON node-list text ({"nodes": [...]}, sorted by id, as
 * kraken_nodes_to_json()), printed from the stored nodes without copying them
 * (a REST server answering GET of every node). *out is malloc'ed.
 */
int kraken_store_to_json(const kraken_store *store, kraken_state_kind kind, unsigned flags,
                         char **out);
/**
 * Save one node set atomically as a JSON node list, sorted by id (see
 * kraken_nodes_save_file(), which also removes the temporary files an interrupted save
 * left behind).
 */
int kraken_store_save(const kraken_store *store, kraken_state_kind kind, const char *path);
/**
 * Load a JSON node-list file and create each node (Cfg). All or nothing: on a parse
 * error, a node without an id (KRAKEN_EINVAL), an id given twice in the file or one that
 * already exists in the store (KRAKEN_EEXISTS) nothing is created. Removes stale
 * temporary files of @p path first (kraken_nodes_load_file()). Memory peaks at the file
 * plus the nodes created.
 */
int kraken_store_load(kraken_store *store, const char *path);
/**
 * Load a JSON node-list file of discovered state: each node replaces the Dsc
 * of the stored node with its id (listeners see the per-leaf changes). All or
 * nothing: a parse error, a node without id, an id that is not in the store
 * (KRAKEN_ENOTFOUND) or one that appears twice in the file (KRAKEN_EEXISTS)
 * changes nothing; the message names the file, node index and id.
 */
int kraken_store_load_dsc(kraken_store *store, const char *path);

/**
 * Find the node whose Cfg nodename is @p nodename (exact, case-sensitive):
 * its id goes to @p out. KRAKEN_ENOTFOUND if no node has it, KRAKEN_EEXISTS
 * (naming two of the ids) if several do. Scans the store: O(nodes).
 */
int kraken_store_find_by_nodename(const kraken_store *store, const char *nodename,
                                  kraken_uuid *out);

#ifdef __cplusplus
}
#endif
#endif
