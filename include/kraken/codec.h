/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/codec.h
 * @brief JSON (SPEC 1.4) and protobuf (SPEC 1.5) forms of nodes and node lists.
 *
 * Decoders never crash or over-read on malformed input: they fail with
 * KRAKEN_EPARSE (JSON) or KRAKEN_EPROTO (binary) and a one-line message naming the
 * source, node index/id, field or member and position (byte, line, column). Input
 * text in messages is quoted with control characters escaped. Nothing is returned on
 * failure.
 * They use only their arguments: safe from any thread.
 *
 * JSON input is strict JSON (RFC 8259) in UTF-8. A NUL character, raw or as \u0000, is
 * refused in every string (values, ids, "@type", member names, map keys); so is a
 * "@type" given twice in one object, or one field given under two spellings. Numbers
 * are read exactly as written (1e2 is the integer 100; 64-bit integers need not be
 * strings) and printed as written in messages.
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
    /** The original's layout (Go jsonpb with a two-space indent): one member per line,
     *  "name": value. Without it: compact, no spaces. */
    KRAKEN_JSON_PRETTY = 1 << 0
};

/**
 * Node -> JSON text: lowerCamel names in schema declaration order, enum names, zero
 * fields omitted, except that an extension whose fields are all zero is kept as
 * {"@type": ...} (the original writes it so). *out is malloc'ed.
 */
int kraken_node_to_json(const kraken_node *node, unsigned flags, char **out);
/**
 * JSON text -> node. Accepts lowerCamel and snake_case names and numeric
 * enums. @p source names the input in error messages (file name, "request"...).
 */
int kraken_node_from_json(const char *json, size_t len, const char *source, kraken_node **out);

/** A list of nodes {"nodes": [...]} -> JSON text. */
int kraken_nodes_to_json(kraken_node *const *nodes, size_t n, unsigned flags, char **out);
/**
 * JSON {"nodes": [...]} -> array of nodes (free with kraken_nodes_free()). A node list
 * is a set keyed by id: a node without an id (or with the zero UUID) is refused with
 * KRAKEN_EINVAL, an id given twice with KRAKEN_EEXISTS; kraken_nodes_load_file() and
 * kraken_store_load() apply the same rule. Each node's text is parsed and converted on
 * its own, so memory peaks at the text plus the nodes built.
 */
int kraken_nodes_from_json(const char *json, size_t len, const char *source, kraken_node ***out,
                           size_t *n_out);
/** Free an array of nodes and the nodes in it. NULL-safe. */
void kraken_nodes_free(kraken_node **nodes, size_t n);

/**
 * Load a JSON node-list file (as kraken_nodes_from_json()). Like a save, it first
 * removes the temporary files an interrupted save of @p path left behind (see
 * kraken_nodes_save_file()).
 */
int kraken_nodes_load_file(const char *path, kraken_node ***out, size_t *n_out);
/**
 * Save a JSON node-list file atomically, in the KRAKEN_JSON_PRETTY layout with a final
 * newline: write a temporary file "<path>.tmp.XXXXXX" in the same directory (streamed,
 * not built in memory), fsync it, rename it over @p path, fsync the directory. On any
 * error the old file is untouched.
 *
 * A save that is killed leaves its temporary file. Every save and load of @p path
 * removes such leftovers of @p path: regular files owned by the caller's user whose
 * name is exactly @p path + ".tmp." + six characters of [A-Za-z0-9] (mkstemp's
 * pattern), and only those no save in progress holds: a save keeps an flock(2) on its
 * temporary file until it is renamed. Nothing else in the directory is touched, and a
 * file that cannot be removed does not fail the operation.
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
