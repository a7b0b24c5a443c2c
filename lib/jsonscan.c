/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * jsonscan.c: strict JSON syntax, with positions (below the codecs and the schema loader).
 *
 * cJSON is lenient where a state or schema file must not be: it stops a string at a \u0000
 * (the rest of "SYNC\u0000junk" silently disappears), accepts raw control characters and any
 * bytes in strings, and reports only a byte offset. The scanner checks a text by RFC 8259 and
 * more (strings are UTF-8 without NUL, numbers at most 63 characters, containers nested at most
 * KRAKEN_JSON_MAX_NESTING deep), knows the member path at every point, and names byte, line,
 * column and member in its one-line messages. Only text it accepted is handed to cJSON, which
 * then cannot fail but for memory. It records where each number token starts, so that callers
 * can read numbers exactly as written instead of through cJSON's double.
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan_private.h"

void kraken__jscan_init(kraken_jscan *s, const char *text, size_t len, const char *source)
{
    memset(s, 0, offsetof(kraken_jscan, frames));
    s->text = text;
    s->len = len;
    s->source = source != NULL ? source : "JSON";
    s->node_index = -1;
    s->nums = NULL;
    s->n_nums = s->cap_nums = 0;
}

void kraken__jscan_free(kraken_jscan *s)
{
    free(s->nums);
    s->nums = NULL;
}

/* "source: node 3: member 'extensions[0].ifaces'" for the scanner's position. */
static void jscan_where(const kraken_jscan *s, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    kraken__appendf(buf, size, &len, "%s", s->source);
    int from = 0;
    if (s->node_index >= 0) {
        kraken__appendf(buf, size, &len, ": node %ld", s->node_index);
        from = s->node_depth;
    }
    char path[KRAKEN_JSON_PATH_MAX];
    size_t plen = 0;
    path[0] = '\0';
    for (int i = from; i < s->depth; i++) {
        const kraken_jframe *f = &s->frames[i];
        if (f->is_array && f->index >= 0)
            kraken__appendf(path, sizeof path, &plen, "[%ld]", f->index);
        else if (!f->is_array && f->key != NULL)
            kraken__appendf(path, sizeof path, &plen, "%s%.*s", plen > 0 ? "." : "", (int)f->key_len,
                    f->key);
    }
    if (plen > 0) {
        char q[KRAKEN_JSON_PATH_MAX + 32];
        kraken__appendf(buf, size, &len, ": member %s", kraken__quote(q, sizeof q, path, plen));
    }
}

/* What is at @p at, for "found ..." in messages. */
const char *kraken__jscan_found(const kraken_jscan *s, size_t at, char *buf, size_t size)
{
    if (at >= s->len)
        return "the end of the input";
    uint32_t cp;
    size_t n = kraken__utf8_seq(s->text + at, s->len - at, &cp);
    return kraken__quote(buf, size, s->text + at, n > 0 ? n : 1);
}

int kraken__jscan_error(const kraken_jscan *s, size_t at, const char *fmt, ...)
{
    char where[512], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jscan_where(s, where, sizeof where);
    if (at > s->len)
        at = s->len;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (s->text[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)s->text[i] & 0xC0) != 0x80) {
            col++; /* columns count characters, not UTF-8 continuation bytes */
        }
    }
    return kraken__err(KRAKEN_EPARSE, "%s: malformed JSON at byte %zu (line %zu, column %zu): %s",
                       where, at, line, col, msg);
}

void kraken__jscan_ws(kraken_jscan *s)
{
    while (s->pos < s->len) {
        char c = s->text[s->pos];
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r')
            break;
        s->pos++;
    }
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A string at s->pos (the opening quote). Stored strings are NUL-terminated, so a NUL in
 * any string (value, member name, @type, map key) would silently cut it: refused here. */
int kraken__jscan_string(kraken_jscan *s, bool is_key)
{
    const char *what = is_key ? "member name" : "string";
    const char *t = s->text;
    size_t start = s->pos++;
    for (;;) {
        /* Fast path: plain printable ASCII. */
        while (s->pos < s->len) {
            unsigned char c = (unsigned char)t[s->pos];
            if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
                break;
            s->pos++;
        }
        if (s->pos >= s->len)
            return kraken__jscan_error(s, start, "unterminated %s", what);
        unsigned char c = (unsigned char)t[s->pos];
        if (c == '"') {
            s->pos++;
            return 0;
        }
        if (c == 0)
            return kraken__jscan_error(s, s->pos, "NUL byte in a %s", what);
        if (c < 0x20)
            return kraken__jscan_error(s, s->pos,
                               "control character U+%04X in a %s (write it as \\u%04x)",
                               (unsigned)c, what, (unsigned)c);
        if (c >= 0x80) {
            uint32_t cp;
            size_t n = kraken__utf8_seq(t + s->pos, s->len - s->pos, &cp);
            if (n == 0)
                return kraken__jscan_error(s, s->pos, "%s is not valid UTF-8 (byte 0x%02x)", what, c);
            s->pos += n;
            continue;
        }
        /* an escape */
        if (s->pos + 1 >= s->len)
            return kraken__jscan_error(s, start, "unterminated %s", what);
        char e = t[s->pos + 1];
        if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
            s->pos += 2;
            continue;
        }
        char fb[16];
        if (e != 'u')
            return kraken__jscan_error(s, s->pos, "invalid escape \\%s in a %s",
                               kraken__jscan_found(s, s->pos + 1, fb, sizeof fb), what);
        uint32_t cp;
        if (s->len - s->pos < 6 || hex4(t + s->pos + 2, &cp) != 0)
            return kraken__jscan_error(s, s->pos, "\\u must be followed by 4 hex digits");
        if (cp == 0)
            return kraken__jscan_error(s, s->pos, "\\u0000 (NUL) is not allowed in a %s", what);
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return kraken__jscan_error(s, s->pos, "lone UTF-16 low surrogate \\u%04x", (unsigned)cp);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (s->len - s->pos < 12 || t[s->pos + 6] != '\\' || t[s->pos + 7] != 'u' ||
                hex4(t + s->pos + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                return kraken__jscan_error(s, s->pos, "lone UTF-16 high surrogate \\u%04x",
                                   (unsigned)cp);
            s->pos += 12;
        } else {
            s->pos += 6;
        }
    }
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Length of the number token at @p p (at most @p max bytes), by the JSON grammar; 0 if none. */
size_t kraken__json_number_len(const char *p, size_t max)
{
    size_t i = 0;
    if (i < max && p[i] == '-')
        i++;
    if (i >= max || !is_digit(p[i]))
        return 0;
    if (p[i] == '0')
        i++;
    else
        while (i < max && is_digit(p[i]))
            i++;
    if (i < max && p[i] == '.') {
        if (i + 1 >= max || !is_digit(p[i + 1]))
            return 0;
        i++;
        while (i < max && is_digit(p[i]))
            i++;
    }
    if (i < max && (p[i] == 'e' || p[i] == 'E')) {
        size_t j = i + 1;
        if (j < max && (p[j] == '+' || p[j] == '-'))
            j++;
        if (j >= max || !is_digit(p[j]))
            return 0;
        while (j < max && is_digit(p[j]))
            j++;
        i = j;
    }
    return i;
}

static int jscan_number(kraken_jscan *s)
{
    size_t n = kraken__json_number_len(s->text + s->pos, s->len - s->pos);
    if (n == 0)
        return kraken__jscan_error(s, s->pos, "invalid number");
    if (n > KRAKEN_JSON_MAX_NUMBER)
        return kraken__jscan_error(s, s->pos, "number longer than %d characters", KRAKEN_JSON_MAX_NUMBER);
    if (s->n_nums == s->cap_nums) {
        size_t cap = s->cap_nums ? 2 * s->cap_nums : 64;
        size_t *nums = realloc(s->nums, cap * sizeof *nums);
        if (nums == NULL)
            return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", s->source);
        s->nums = nums;
        s->cap_nums = cap;
    }
    s->nums[s->n_nums++] = s->pos;
    s->pos += n;
    /* "01", "1.2.3", "-" glued to more number characters */
    if (s->pos < s->len && (is_digit(s->text[s->pos]) || strchr(".eE+-", s->text[s->pos]) != NULL) &&
        s->text[s->pos] != '\0')
        return kraken__jscan_error(s, s->pos - n, "invalid number");
    return 0;
}

static int jscan_literal(kraken_jscan *s, const char *word)
{
    size_t n = strlen(word);
    if (s->len - s->pos < n || memcmp(s->text + s->pos, word, n) != 0)
        return kraken__jscan_error(s, s->pos, "invalid literal (expected %s)", word);
    s->pos += n;
    return 0;
}

int kraken__jscan_push(kraken_jscan *s, bool is_array)
{
    if (s->depth >= KRAKEN_JSON_MAX_NESTING)
        return kraken__jscan_error(s, s->pos, "containers nested more than %d levels", KRAKEN_JSON_MAX_NESTING);
    kraken_jframe *f = &s->frames[s->depth++];
    f->is_array = is_array;
    f->key = NULL;
    f->key_len = 0;
    f->index = -1;
    s->pos++;
    return 0;
}

bool kraken__jscan_close(kraken_jscan *s, char close)
{
    kraken__jscan_ws(s);
    if (s->pos >= s->len || s->text[s->pos] != close)
        return false;
    s->pos++;
    s->depth--;
    return true;
}

int kraken__jscan_next(kraken_jscan *s, char close, const char *what)
{
    kraken__jscan_ws(s);
    if (s->pos < s->len && s->text[s->pos] == ',') {
        s->pos++;
        kraken__jscan_ws(s);
        if (s->pos < s->len && s->text[s->pos] == close)
            return kraken__jscan_error(s, s->pos, "trailing comma before '%c'", close);
        return 1;
    }
    if (kraken__jscan_close(s, close))
        return 0;
    char fb[16];
    return kraken__jscan_error(s, s->pos, "expected ',' or '%c' after %s, found %s", close, what,
                               kraken__jscan_found(s, s->pos, fb, sizeof fb));
}

static int jscan_object(kraken_jscan *s)
{
    int rc = kraken__jscan_push(s, false);
    if (rc != 0)
        return rc;
    kraken_jframe *f = &s->frames[s->depth - 1];
    if (kraken__jscan_close(s, '}'))
        return 0;
    for (;;) {
        char fb[16];
        if (s->pos >= s->len || s->text[s->pos] != '"')
            return kraken__jscan_error(s, s->pos, "expected a member name (a string), found %s",
                               kraken__jscan_found(s, s->pos, fb, sizeof fb));
        size_t key = s->pos;
        f->key = NULL; /* an error in the name is reported at the object */
        if ((rc = kraken__jscan_string(s, true)) != 0)
            return rc;
        f->key = s->text + key + 1;
        f->key_len = s->pos - key - 2;
        kraken__jscan_ws(s);
        if (s->pos >= s->len || s->text[s->pos] != ':')
            return kraken__jscan_error(s, s->pos, "expected ':' after the member name, found %s",
                               kraken__jscan_found(s, s->pos, fb, sizeof fb));
        s->pos++;
        if ((rc = kraken__jscan_value(s)) != 0)
            return rc;
        if ((rc = kraken__jscan_next(s, '}', "a member")) <= 0)
            return rc;
    }
}

static int jscan_array(kraken_jscan *s)
{
    int rc = kraken__jscan_push(s, true);
    if (rc != 0)
        return rc;
    kraken_jframe *f = &s->frames[s->depth - 1];
    if (kraken__jscan_close(s, ']'))
        return 0;
    for (;;) {
        f->index++;
        if ((rc = kraken__jscan_value(s)) != 0)
            return rc;
        if ((rc = kraken__jscan_next(s, ']', "an element")) <= 0)
            return rc;
    }
}

/* One value at s->pos (after optional whitespace). */
int kraken__jscan_value(kraken_jscan *s)
{
    kraken__jscan_ws(s);
    if (s->pos >= s->len)
        return kraken__jscan_error(s, s->pos, "expected a value, found the end of the input");
    char c = s->text[s->pos];
    switch (c) {
    case '{':
        return jscan_object(s);
    case '[':
        return jscan_array(s);
    case '"':
        return kraken__jscan_string(s, false);
    case 't':
        return jscan_literal(s, "true");
    case 'f':
        return jscan_literal(s, "false");
    case 'n':
        return jscan_literal(s, "null");
    default:
        if (c == '-' || is_digit(c))
            return jscan_number(s);
        char fb[16];
        return kraken__jscan_error(s, s->pos, "expected a value, found %s",
                           kraken__jscan_found(s, s->pos, fb, sizeof fb));
    }
}

/* After the last value: only whitespace (and one NUL terminator counted in len) may follow. */
int kraken__jscan_end(kraken_jscan *s)
{
    kraken__jscan_ws(s);
    if (s->pos == s->len || (s->text[s->pos] == '\0' && s->pos + 1 == s->len))
        return 0;
    char fb[16];
    return kraken__jscan_error(s, s->pos, "trailing data after the JSON value: %s",
                       kraken__jscan_found(s, s->pos, fb, sizeof fb));
}

/* JSON kind of the value starting at @p at (already scanned), for "got ..." in messages. */
const char *kraken__jscan_kind_at(const kraken_jscan *s, size_t at)
{
    switch (s->text[at]) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        return "a number";
    }
}

/*
 * Parse the value text[start, end) that the scanner accepted with cJSON. The scanner recorded
 * the offsets of its number tokens in document order; cJSON keeps members and elements in
 * document order too, so a pre-order walk pairs them up: each number item's valueint is set to
 * the index of its token (the converter reads numbers from their text, never valueint).
 */
static int number_index_walk(cJSON *it, size_t *next, size_t n)
{
    for (; it != NULL; it = it->next) {
        if (cJSON_IsNumber(it)) {
            if (*next >= n)
                return -1;
            it->valueint = (int)(*next)++;
        } else if ((cJSON_IsObject(it) || cJSON_IsArray(it)) &&
                   number_index_walk(it->child, next, n) != 0) {
            return -1;
        }
    }
    return 0;
}

int kraken__jscan_parse_slice(kraken_jscan *s, size_t start, size_t end, cJSON **out)
{
    *out = NULL;
    if (s->n_nums > INT_MAX)
        return kraken__err(KRAKEN_ELIMIT, "%s: too many numbers in one node", s->source);
    cJSON *root = cJSON_ParseWithLength(s->text + start, end - start);
    if (root == NULL) /* the scanner accepted the text: only memory can run out here */
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory parsing JSON", s->source);
    size_t next = 0;
    if (number_index_walk(root, &next, s->n_nums) != 0 || next != s->n_nums) {
        cJSON_Delete(root);
        return kraken__err(KRAKEN_EINVAL, "%s: internal error: number tokens do not match",
                           s->source);
    }
    *out = root;
    return 0;
}

/* Scan @p text as one JSON value, then parse it with cJSON. */
int kraken__jscan_parse(kraken_jscan *s, cJSON **out)
{
    *out = NULL;
    kraken__jscan_ws(s);
    size_t start = s->pos;
    int rc = kraken__jscan_value(s);
    if (rc == 0)
        rc = kraken__jscan_end(s);
    if (rc == 0)
        rc = kraken__jscan_parse_slice(s, start, s->pos, out);
    return rc;
}

