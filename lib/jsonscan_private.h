/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * jsonscan_private.h: strict JSON syntax with positions (jsonscan.c), ahead of cJSON; used by
 * json.c and schema.c. Not installed.
 */
#ifndef KRAKEN_JSONSCAN_PRIVATE_H
#define KRAKEN_JSONSCAN_PRIVATE_H

#include "util_private.h"

/* ==== strict JSON syntax (owner: state; jsonscan.c, used by json.c and schema.c) ==== */
struct cJSON;
/* Containers nested deeper than this are refused. Records nest at most KRAKEN_CODEC_MAX_DEPTH
 * deep and each record level adds at most two JSON levels (a map or list, then the object), so
 * no node the codecs accept comes near it. */
#define KRAKEN_JSON_MAX_NESTING 256
/* cJSON copies at most 63 characters of a number; longer ones are refused up front. */
#define KRAKEN_JSON_MAX_NUMBER 63
/* Member paths in messages ("extensions[0].ifaces.kraken") are cut at this length. */
#define KRAKEN_JSON_PATH_MAX 256

/* One open container, for messages: an object's current member or an array's element. */
typedef struct kraken_jframe {
    const char *key; /* object: raw text of the current member name (NULL before the first) */
    size_t key_len;
    long index; /* array: current element (-1 before the first) */
    bool is_array;
} kraken_jframe;

typedef struct kraken_jscan {
    const char *text;
    size_t len, pos;
    const char *source;
    long node_index; /* node being scanned in a node list, -1 outside one */
    int node_depth;  /* frames below this belong to the node list, not the node */
    int depth;
    kraken_jframe frames[KRAKEN_JSON_MAX_NESTING];
    size_t *nums; /* offsets of the number tokens of the value scanned last, in order */
    size_t n_nums, cap_nums;
} kraken_jscan;

/* Start scanning @p text (@p len bytes, no NUL terminator needed); @p source names it. */
KRAKEN_PRIVATE void kraken__jscan_init(kraken_jscan *s, const char *text, size_t len,
                                       const char *source);
KRAKEN_PRIVATE void kraken__jscan_free(kraken_jscan *s);
/* Skip JSON whitespace. */
KRAKEN_PRIVATE void kraken__jscan_ws(kraken_jscan *s);
/* Check one value at s->pos (after whitespace) and move past it; KRAKEN_EPARSE with byte, line,
 * column, node index and member path on a syntax error. Number offsets go to s->nums. */
KRAKEN_PRIVATE int kraken__jscan_value(kraken_jscan *s);
/* The string at s->pos (its opening quote); @p is_key: a member name (for messages). */
KRAKEN_PRIVATE int kraken__jscan_string(kraken_jscan *s, bool is_key);
/* Enter the object/array at s->pos (consumes '{' or '['); the caller pops s->depth. */
KRAKEN_PRIVATE int kraken__jscan_push(kraken_jscan *s, bool is_array);
/* After optional whitespace, the @p close ('}' or ']') of the container just pushed: consume it,
 * pop the frame and return true (an empty container); false when anything else is there. */
KRAKEN_PRIVATE bool kraken__jscan_close(kraken_jscan *s, char close);
/* After an element (@p close ']') or member (@p close '}'), which @p what names in the message:
 * 1 when ',' and another one follow, 0 when the container closes (frame popped), or the
 * KRAKEN_EPARSE of a trailing comma or of anything else. */
KRAKEN_PRIVATE int kraken__jscan_next(kraken_jscan *s, char close, const char *what);
/* Only whitespace (or one NUL terminator counted in len) may follow the last value. */
KRAKEN_PRIVATE int kraken__jscan_end(kraken_jscan *s);
/* A syntax error at byte @p at: "source[: node N][: member 'path']: malformed JSON at byte X
 * (line L, column C): <message>". Returns KRAKEN_EPARSE. */
KRAKEN_PRIVATE int kraken__jscan_error(const kraken_jscan *s, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The character at @p at quoted for "found ..." (or "the end of the input"). */
KRAKEN_PRIVATE const char *kraken__jscan_found(const kraken_jscan *s, size_t at, char *buf,
                                               size_t size);
/* "an object", "a string", ... for the checked value starting at @p at. */
KRAKEN_PRIVATE const char *kraken__jscan_kind_at(const kraken_jscan *s, size_t at);
/* cJSON tree of the checked value text[start, end); each number item's valueint is set to the
 * index in s->nums of its token (read numbers with kraken__json_number_len from there). */
KRAKEN_PRIVATE int kraken__jscan_parse_slice(kraken_jscan *s, size_t start, size_t end,
                                             struct cJSON **out);
/* Check the whole text as one JSON value, then parse it (kraken__jscan_parse_slice). */
KRAKEN_PRIVATE int kraken__jscan_parse(kraken_jscan *s, struct cJSON **out);
/* Length of the JSON number token at @p p (at most @p max bytes), 0 if there is none. */
KRAKEN_PRIVATE size_t kraken__json_number_len(const char *p, size_t max);
/* ==== end strict JSON syntax ==== */

#endif
