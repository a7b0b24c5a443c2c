/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/node.h
 * @brief Nodes as values, URL access (SPEC 1.3) and node diffs.
 *
 * A node is a record of schema kraken.Node: core fields, service instances
 * and typed-record extensions. Nodes are plain values: the caller that
 * creates or copies one owns it and frees it with kraken_node_free(). Any
 * thread may use a node, one thread at a time per node (the URL functions keep
 * a per-thread cache of compiled URLs).
 *
 * URLs: "/PhysState", "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip",
 * "/Services/pxe/State", "/Services/pxe/Config/<Field>/...". Components are
 * field names (UpperCamel canonical, matched case-insensitively, snake_case
 * accepted), map keys or list indices; service instances are addressed by id
 * and extensions by type URL. The leading '/' is optional.
 */
#ifndef KRAKEN_NODE_H
#define KRAKEN_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "schema.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kraken_node kraken_node;

/** RunState enum (SPEC 1.1). */
typedef enum kraken_run_state {
    KRAKEN_RUN_UNKNOWN = 0,
    KRAKEN_RUN_INIT = 1,
    KRAKEN_RUN_SYNC = 2,
    KRAKEN_RUN_ERROR = 3
} kraken_run_state;

/** PhysState enum (SPEC 1.1). */
typedef enum kraken_phys_state {
    KRAKEN_PHYS_UNKNOWN = 0,
    KRAKEN_PHYS_POWER_OFF = 1,
    KRAKEN_PHYS_POWER_ON = 2,
    KRAKEN_PHYS_POWER_CYCLE = 3,
    KRAKEN_PHYS_HANG = 4,
    KRAKEN_PHYS_ERROR = 5
} kraken_phys_state;

/** ServiceInstance state enum (SPEC 1.1). */
typedef enum kraken_service_state {
    KRAKEN_SERVICE_UNKNOWN = 0,
    KRAKEN_SERVICE_INIT = 1,
    KRAKEN_SERVICE_STOP = 2,
    KRAKEN_SERVICE_RUN = 3,
    KRAKEN_SERVICE_ERROR = 4
} kraken_service_state;

/** New empty node with the given id (NULL: all-zero id). */
int kraken_node_new(kraken_node **out, const kraken_uuid *id);
/** Free a node. NULL-safe. */
void kraken_node_free(kraken_node *node);
/** Deep copy. */
int kraken_node_copy(kraken_node **out, const kraken_node *node);
/** Deep equality (zero-valued fields equal absent ones). */
bool kraken_node_equal(const kraken_node *a, const kraken_node *b);

/** The node's id (pointer valid while the node lives). */
const kraken_uuid *kraken_node_id(const kraken_node *node);
int kraken_node_set_id(kraken_node *node, const kraken_uuid *id);

/**
 * Read the value at @p url into @p out (caller clears it).
 * KRAKEN_ENOTFOUND if the URL names nothing on this node (e.g. a missing map
 * key or extension), KRAKEN_EPARSE if the URL is malformed or names a field
 * the schema does not have. A field that exists in the schema but is unset
 * reads as the zero value of its type.
 */
int kraken_node_get(const kraken_node *node, const char *url, kraken_value *out);

/**
 * Write @p value at @p url, creating missing extensions, service instances,
 * nested records and map entries. Integers are converted between widths when
 * they fit; KRAKEN_ETYPE names the URL and the expected type otherwise. The
 * node is unchanged on error.
 */
int kraken_node_set(kraken_node *node, const char *url, const kraken_value *value);

/** Read a value as text (kraken_value_format()); *out is malloc'ed. */
int kraken_node_get_text(const kraken_node *node, const char *url, char **out);

/**
 * Write a value given as text, parsed according to the URL's type: enum
 * member name or number, decimal number, "true"/"false", dotted IPv4, colon
 * MAC, UUID, or JSON for records/maps/lists.
 */
int kraken_node_set_text(kraken_node *node, const char *url, const char *text);

/**
 * Reset the value at @p url to zero / remove it (map entry, list element,
 * service instance, extension). Removing something absent is not an error.
 */
int kraken_node_unset(kraken_node *node, const char *url);

/**
 * The type a URL has on nodes, resolved from the schemas alone (no node
 * needed). @p enum_type (may be NULL) receives the enum type for ENUM URLs.
 * Fails like kraken_node_get() for malformed URLs or unknown fields.
 */
int kraken_url_type(const char *url, kraken_type *type, const struct kraken_enum_type **enum_type);

/**
 * Parse @p text as a value of the type @p url has (as kraken_node_set_text()
 * does), without a node. Used to declare mutations with values as text.
 */
int kraken_url_parse_value(const char *url, const char *text, kraken_value *out);

/**
 * Split a node-qualified URL "<uuid>:<path>" into id and path.
 * @p path points into @p qualified (after the ':'); "<uuid>:" gives "".
 */
int kraken_url_split(const char *qualified, kraken_uuid *id, const char **path);

/**
 * Canonical form of a URL: UpperCamel field names, keys as given, a leading
 * '/' for node fields ("/PhysState", "/Services/pxe/State") and none for
 * extensions ("type.googleapis.com/PXE.Client/State"), as the original wrote
 * them. *out is malloc'ed.
 */
int kraken_url_canonical(const char *url, char **out);

/** One changed leaf between two versions of a node. */
typedef struct kraken_change {
    char *url;              /**< canonical URL of the leaf */
    kraken_value old_value; /**< NONE if it did not exist before */
    kraken_value new_value; /**< NONE if it does not exist after */
} kraken_change;

/**
 * Every leaf URL whose value differs between @p before and @p after (either
 * may be NULL, meaning an empty node), in deterministic order (schema field
 * order, sorted map keys, list index, service id, extension type).
 * Zero values count as absent. Free with kraken_changes_free().
 */
int kraken_node_diff(const kraken_node *before, const kraken_node *after, kraken_change **out,
                     size_t *n_out);
void kraken_changes_free(kraken_change *changes, size_t n);

/** Number of extensions and the schema of the i-th (sorted by type URL). */
size_t kraken_node_extension_count(const kraken_node *node);
const kraken_schema *kraken_node_extension_schema(const kraken_node *node, size_t i);
/** Number of service instances and the id of the i-th (sorted by id). */
size_t kraken_node_service_count(const kraken_node *node);
const char *kraken_node_service_id(const kraken_node *node, size_t i);

#ifdef __cplusplus
}
#endif
#endif
