/**
 * @file kraken/codec.h
 * @brief JSON (SPEC 1.4) and protobuf (SPEC 1.5) forms of nodes and node lists.
 *
 * Decoders never crash or over-read on malformed input: they fail with
 * KRAKEN_EPARSE (JSON) or KRAKEN_EPROTO (binary) and a message naming the
 * source, node index/id, field and position. Nothing is returned on failure.
 * They use only their arguments: safe from any thread.
 */
#ifndef KRAKEN_CODEC_H
#define KRAKEN_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#ifdef __cplusplus
extern "C" {
#endif

/** JSON output options (bit flags). */
enum {
    KRAKEN_JSON_PRETTY = 1 << 0 /**< indented, one field per line */
};

/** Node -> JSON text (lowerCamel names, enum names, zero fields omitted). *out is malloc'ed. */
int kraken_node_to_json(const kraken_node *node, unsigned flags, char **out);
/**
 * JSON text -> node. Accepts lowerCamel and snake_case names and numeric
 * enums. @p source names the input in error messages (file name, "request"...).
 */
int kraken_node_from_json(const char *json, size_t len, const char *source, kraken_node **out);

/** A list of nodes {"nodes": [...]} -> JSON text. */
int kraken_nodes_to_json(kraken_node *const *nodes, size_t n, unsigned flags, char **out);
/** JSON {"nodes": [...]} -> array of nodes (free with kraken_nodes_free()). */
int kraken_nodes_from_json(const char *json, size_t len, const char *source, kraken_node ***out,
                           size_t *n_out);
/** Free an array of nodes and the nodes in it. NULL-safe. */
void kraken_nodes_free(kraken_node **nodes, size_t n);

/** Load a JSON node-list file. */
int kraken_nodes_load_file(const char *path, kraken_node ***out, size_t *n_out);
/**
 * Save a JSON node-list file atomically: write a temporary file in the same
 * directory, fsync it, rename it over @p path, fsync the directory. On any
 * error the old file is untouched.
 */
int kraken_nodes_save_file(const char *path, kraken_node *const *nodes, size_t n);

/** Node -> protobuf bytes (deterministic). *out is malloc'ed, *len its size. */
int kraken_node_encode(const kraken_node *node, uint8_t **out, size_t *len);
/** Protobuf bytes -> node. */
int kraken_node_decode(const uint8_t *data, size_t len, kraken_node **out);

#ifdef __cplusplus
}
#endif
#endif
