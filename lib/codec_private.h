/*
 * codec_private.h: what the codecs (json.c, pbcodec.c) share with the layers that use them.
 * Not installed.
 */
#ifndef KRAKEN_CODEC_PRIVATE_H
#define KRAKEN_CODEC_PRIVATE_H

#include "core_private.h"

/* ---- JSON text of compound values (json.c) -------------------------------- */
/* A RECORD/MAP/LIST slot as JSON text (the same form as inside a node's JSON). */
KRAKEN_PRIVATE int kraken__slot_to_json_text(const kraken_field *f, kraken_type type,
                                             const kraken_slot *slot, char **out);
/* Parse JSON text into a RECORD/MAP/LIST slot described by (f, type); @p source names it in errors. */
KRAKEN_PRIVATE int kraken__slot_from_json_text(const kraken_field *f, kraken_type type,
                                               const char *text, size_t len, const char *source,
                                               kraken_slot *out);

/* Bytes a protobuf varint of @p v takes (pbcodec.c). */
KRAKEN_PRIVATE size_t kraken__varint_size(uint64_t v);

/* ==== codec additions (owner: codec; json.c, pbcodec.c) ==== */
/* Records nested deeper than this (the node counts as one) are rejected by both decoders
 * and the encoder, so whatever one codec accepts the other does too. Built-in schemas
 * nest ~5 deep; polymorphic fields (service config) could otherwise nest without end. */
#define KRAKEN_CODEC_MAX_DEPTH 64
/* Sort a decoded KEY_FIELD/KEY_TYPE list into its stored order (kraken__list_item_key, strcmp).
 * Returns -1 with *bad_key set when an item has no key ("") or two items share one. */
KRAKEN_PRIVATE int kraken__list_sort_keyed(const kraken_field *f, kraken_list *l,
                                           const char **bad_key);
/* Canonical output drops what equality ignores (core's rule: zero values count as absent):
 * zero map entries, empty keyed-list records, trailing zero elements of index lists. This
 * is the number of leading items an index list keeps (l->n for keyed lists). */
KRAKEN_PRIVATE size_t kraken__list_encoded_count(const kraken_field *f, const kraken_list *l);
/* ==== end codec additions ==== */

#endif
