/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * json.c: nodes <-> JSON text in the original's protobuf-JSON form (SPEC 1.4).
 *
 * Output: lowerCamel names in schema declaration order, enum names, zero fields omitted (an
 * extension whose fields are all zero is kept: {"@type": ...}), typed records as objects
 * carrying "@type", maps as objects, lists as arrays, 64-bit integers as strings (proto3 JSON).
 * The pretty form is the original's (Go's jsonpb with a two-space indent): one member per
 * line, "name": value. A direct printer writes it, into memory or straight into the
 * temporary file of an atomic save, without building a tree.
 *
 * Input additionally accepts snake_case names, numeric enums and integers as numbers or
 * strings. Reading goes in two steps:
 *   1. the scanner (jsonscan.c) checks the syntax of the text strictly (RFC 8259, UTF-8, no NUL in
 *      any string) and knows where it is, so a malformed file is reported with its byte,
 *      line and column, the node index and the member being parsed. For a node list it
 *      finds where each node's object ends;
 *   2. each node's text alone is parsed by cJSON, converted to a record and freed before the
 *      next node is read. Loading a file therefore costs the file plus the nodes built, not
 *      a tree of the whole file.
 * Numbers are read from their text (the scanner records where each one is), never through
 * a double: 64-bit integers are exact and messages print a number as it was written.
 *
 * Decoding builds every record aside and frees it on the first error, so a failed parse
 * returns nothing. Unknown names are errors: data is never dropped. Input text in messages
 * is quoted with kraken__quote(): one line, no raw control characters.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_private.h"
#include "jsonscan_private.h"

#define JSON_PATH_MAX KRAKEN_JSON_PATH_MAX

/* ---- keyed lists (shared with pbcodec.c) --------------------------------- */

static int keyed_item_cmp(const void *a, const void *b, void *field)
{
    const kraken_field *f = field;
    return strcmp(kraken__list_item_key(f, a), kraken__list_item_key(f, b));
}

int kraken__list_sort_keyed(const kraken_field *f, kraken_list *l, const char **bad_key)
{
    *bad_key = NULL;
    if (l == NULL || f->list_key == KRAKEN_KEY_INDEX)
        return 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].rec == NULL || kraken__list_item_key(f, &l->items[i])[0] == '\0') {
            *bad_key = "";
            return -1;
        }
    }
    qsort_r(l->items, l->n, sizeof l->items[0], keyed_item_cmp, (void *)f);
    for (size_t i = 1; i < l->n; i++) {
        if (keyed_item_cmp(&l->items[i - 1], &l->items[i], (void *)f) == 0) {
            *bad_key = kraken__list_item_key(f, &l->items[i]);
            return -1;
        }
    }
    return 0;
}

size_t kraken__list_encoded_count(const kraken_field *f, const kraken_list *l)
{
    size_t n = l != NULL ? l->n : 0;
    if (f->list_key == KRAKEN_KEY_INDEX)
        while (n > 0 && kraken__slot_is_zero_deep(f, f->elem_type, &l->items[n - 1]))
            n--;
    return n;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* ==== 1. cJSON tree -> records ============================================= */

typedef struct jctx {
    const char *source; /* file name, "request", ... */
    const kraken_jscan *scan;  /* for number texts */
    long node_index;    /* index in a node list, -1 if not in one */
    char node_id[KRAKEN_UUID_STRLEN + 1]; /* the node's id if it is a valid UUID, else "" */
    char path[JSON_PATH_MAX];
    size_t path_len;
    int depth;
    /* "@type" names seen last and their schemas: a node list names the same few types in
     * every node, and the registry is append-only, so the pointers stay valid. */
    struct {
        char name[96];
        const struct kraken_schema *schema;
    } types[4];
    unsigned next_type;
} jctx;

static void jctx_init(jctx *c, const kraken_jscan *scan)
{
    memset(c, 0, sizeof *c);
    c->source = scan->source;
    c->scan = scan;
    c->node_index = -1;
}

/* Ready for the next node of a list (the type cache stays). */
static void jctx_next_node(jctx *c, long node_index)
{
    c->node_index = node_index;
    c->node_id[0] = '\0';
    c->path[0] = '\0';
    c->path_len = 0;
    c->depth = 0;
}

/* kraken_schema_find() through the cache of recent names. */
static const struct kraken_schema *jctx_find_schema(jctx *c, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof c->types / sizeof c->types[0]; i++)
        if (c->types[i].schema != NULL && strcmp(c->types[i].name, name) == 0)
            return c->types[i].schema;
    const struct kraken_schema *s = kraken_schema_find(name);
    if (s != NULL && len < sizeof c->types[0].name) {
        unsigned slot = c->next_type++ % (sizeof c->types / sizeof c->types[0]);
        memcpy(c->types[slot].name, name, len + 1);
        c->types[slot].schema = s;
    }
    return s;
}

/* "source: node 2 (id): field 'a.b'" describing where the decoder is. */
static void jctx_where(const jctx *c, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    kraken__appendf(buf, size, &len, "%s", c->source);
    if (c->node_index >= 0 || c->node_id[0] != '\0') {
        kraken__appendf(buf, size, &len, ": node");
        if (c->node_index >= 0)
            kraken__appendf(buf, size, &len, " %ld", c->node_index);
        if (c->node_id[0] != '\0')
            kraken__appendf(buf, size, &len, " (%s)", c->node_id);
    }
    if (c->path_len > 0) {
        char q[JSON_PATH_MAX + 32];
        kraken__appendf(buf, size, &len, ": field %s", kraken__quote(q, sizeof q, c->path, c->path_len));
    }
}

static int jerr(const jctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int jerr(const jctx *c, int code, const char *fmt, ...)
{
    char where[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jctx_where(c, where, sizeof where);
    return kraken__err(code, "%s: %s", where, msg);
}

/* Put the decoder's position in front of a message set by a helper. */
static int jerr_prefix(const jctx *c, int code)
{
    char where[512];
    jctx_where(c, where, sizeof where);
    return kraken__err_prefix(code, "%s", where);
}

/* Append @p n bytes to the field path (cut at its size). Runs for every member decoded, so no
 * printf here. */
static void path_append(jctx *c, const char *text, size_t n)
{
    size_t room = sizeof c->path - 1 - c->path_len;
    if (n > room)
        n = room;
    memcpy(c->path + c->path_len, text, n);
    c->path_len += n;
    c->path[c->path_len] = '\0';
}

/* Append "<sep><name>" to the field path (raw: the whole path is quoted when printed);
 * returns the length to restore. */
static size_t path_push(jctx *c, const char *sep, const char *name)
{
    size_t old = c->path_len;
    if (c->path_len > 0)
        path_append(c, sep, strlen(sep));
    path_append(c, name, strlen(name));
    return old;
}

static size_t path_push_index(jctx *c, size_t i)
{
    char buf[24];
    char *p = buf + sizeof buf;
    *--p = ']';
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i != 0);
    *--p = '[';
    size_t old = c->path_len;
    path_append(c, p, (size_t)(buf + sizeof buf - p));
    return old;
}

static void path_pop(jctx *c, size_t old)
{
    c->path_len = old;
    c->path[old] = '\0';
}

static const char *json_kind(const cJSON *it)
{
    if (cJSON_IsObject(it))
        return "an object";
    if (cJSON_IsArray(it))
        return "an array";
    if (cJSON_IsString(it))
        return "a string";
    if (cJSON_IsNumber(it))
        return "a number";
    if (cJSON_IsBool(it))
        return "a boolean";
    if (cJSON_IsNull(it))
        return "null";
    return "invalid";
}

/* The text of a number item as written in the input (see jscan_parse_slice). */
static void number_text(const jctx *c, const cJSON *it, const char **text, size_t *len)
{
    size_t off = c->scan->nums[it->valueint];
    *text = c->scan->text + off;
    *len = kraken__json_number_len(*text, c->scan->len - off);
}

enum { NUM_OK = 0, NUM_FRACTION = -1, NUM_TOO_BIG = -2 };

/*
 * The exact integer a JSON number token denotes, as sign and magnitude, without going
 * through a double: "1e2" is 100, "1.50e1" is 15, "1.5" has a fraction, "1e20" does not fit
 * 64 bits. Integers of any size are exact, so 64-bit values need not be written as strings.
 */
static int number_integer(const char *t, size_t len, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = (len > 0 && t[0] == '-');
    if (*neg)
        i++;
    const char *digits[2] = {t + i, NULL};
    size_t n_digits[2] = {0, 0};
    while (i < len && is_digit(t[i]))
        n_digits[0]++, i++;
    if (i < len && t[i] == '.') {
        digits[1] = t + ++i;
        while (i < len && is_digit(t[i]))
            n_digits[1]++, i++;
    }
    long exp = 0;
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        bool eneg = t[++i] == '-';
        if (t[i] == '-' || t[i] == '+')
            i++;
        for (; i < len && is_digit(t[i]); i++)
            if (exp < 100000)
                exp = exp * 10 + (t[i] - '0');
        if (eneg)
            exp = -exp;
    }
    /* value = digits * 10^(exp - fraction digits): the first `keep` digits are the integer. */
    long keep = (long)(n_digits[0] + n_digits[1]) + exp - (long)n_digits[1];
    long k = 0;
    uint64_t m = 0;
    bool overflow = false;
    for (int part = 0; part < 2; part++) {
        for (size_t j = 0; j < n_digits[part]; j++, k++) {
            unsigned d = (unsigned)(digits[part][j] - '0');
            if (k >= keep) {
                if (d != 0)
                    return NUM_FRACTION;
                continue;
            }
            if (m > (UINT64_MAX - d) / 10)
                overflow = true;
            else
                m = m * 10 + d;
        }
    }
    for (; k < keep && m != 0 && !overflow; k++) {
        if (m > UINT64_MAX / 10)
            overflow = true;
        else
            m *= 10;
    }
    if (overflow)
        return NUM_TOO_BIG;
    *mag = m;
    return NUM_OK;
}

/* Signed/unsigned 64-bit value of sign + magnitude for @p type; false when out of range. */
static bool int_in_range(kraken_type type, bool neg, uint64_t mag, kraken_slot *out)
{
    switch (type) {
    case KRAKEN_T_INT32:
    case KRAKEN_T_ENUM:
        if (neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX)
            return false;
        break;
    case KRAKEN_T_INT64:
        if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > INT64_MAX)
            return false;
        break;
    case KRAKEN_T_UINT32:
        if ((neg && mag != 0) || mag > UINT32_MAX)
            return false;
        break;
    default: /* UINT64 */
        if (neg && mag != 0)
            return false;
        break;
    }
    if (type == KRAKEN_T_UINT32 || type == KRAKEN_T_UINT64)
        out->u = mag;
    else
        out->i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

/* Strict decimal text in a JSON string ("12", "-3"): digits only, no spaces or '+'. */
static bool int_text(const char *text, bool *neg, uint64_t *mag, bool *too_big)
{
    const char *p = text;
    *neg = (*p == '-');
    if (*neg)
        p++;
    if (!is_digit(*p))
        return false;
    uint64_t m = 0;
    *too_big = false;
    for (; *p != '\0'; p++) {
        if (!is_digit(*p))
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (m > (UINT64_MAX - d) / 10)
            *too_big = true;
        else
            m = m * 10 + d;
    }
    *mag = m;
    return true;
}

static int json_to_int(jctx *c, kraken_type type, const cJSON *it, kraken_slot *out)
{
    const char *tname = kraken_type_name(type);
    bool neg = false, too_big = false;
    uint64_t mag = 0;
    char q[KRAKEN_QUOTE_SIZE];
    if (cJSON_IsNumber(it)) {
        const char *t;
        size_t len;
        number_text(c, it, &t, &len);
        int rc = number_integer(t, len, &neg, &mag);
        if (rc == NUM_FRACTION)
            return jerr(c, KRAKEN_EPARSE, "%s expects an integer, got %.*s", tname, (int)len, t);
        if (rc == NUM_TOO_BIG || !int_in_range(type, neg, mag, out))
            return jerr(c, KRAKEN_EPARSE, "%.*s is out of range for %s", (int)len, t, tname);
        return 0;
    }
    if (cJSON_IsString(it)) {
        const char *t = it->valuestring;
        if (!int_text(t, &neg, &mag, &too_big))
            return jerr(c, KRAKEN_EPARSE, "%s is not a valid %s",
                        kraken__quote(q, sizeof q, t, strlen(t)), tname);
        if (too_big || !int_in_range(type, neg, mag, out))
            return jerr(c, KRAKEN_EPARSE, "%s is out of range for %s",
                        kraken__quote(q, sizeof q, t, strlen(t)), tname);
        return 0;
    }
    return jerr(c, KRAKEN_EPARSE, "expected %s (number or string), got %s", tname, json_kind(it));
}

static int json_to_enum(jctx *c, const kraken_field *f, const cJSON *it, kraken_slot *out)
{
    const struct kraken_enum_type *e = f->enm;
    const char *ename = e != NULL ? kraken_enum_type_name(e) : "enum";
    if (cJSON_IsString(it)) {
        const char *name = it->valuestring;
        const kraken_enum_member *m = e != NULL ? kraken__enum_by_name(e, name, strlen(name)) : NULL;
        if (m == NULL) {
            char q[KRAKEN_QUOTE_SIZE];
            return jerr(c, KRAKEN_EPARSE, "unknown %s name %s", ename,
                        kraken__quote(q, sizeof q, name, strlen(name)));
        }
        out->i = m->number;
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        const char *t;
        size_t len;
        number_text(c, it, &t, &len);
        bool neg;
        uint64_t mag;
        if (number_integer(t, len, &neg, &mag) != NUM_OK ||
            !int_in_range(KRAKEN_T_ENUM, neg, mag, out) || e == NULL ||
            kraken_enum_type_lookup(e, (int32_t)out->i) == NULL) {
            out->i = 0;
            return jerr(c, KRAKEN_EPARSE, "%.*s is not a %s number", (int)len, t, ename);
        }
        return 0;
    }
    return jerr(c, KRAKEN_EPARSE, "expected a %s name or number, got %s", ename, json_kind(it));
}

/* The scanner refused NUL and invalid UTF-8 in every string, so valuestring is the whole
 * string and valid. */
static int json_to_string(jctx *c, const cJSON *it, kraken_slot *out)
{
    if (!cJSON_IsString(it))
        return jerr(c, KRAKEN_EPARSE, "expected a string, got %s", json_kind(it));
    size_t len = strlen(it->valuestring);
    if (len == 0) {
        out->s = NULL;
        return 0;
    }
    out->s = kraken__strndup(it->valuestring, len);
    return out->s != NULL ? 0 : jerr(c, KRAKEN_ENOMEM, "out of memory");
}

/* BYTES, IPV4, MAC, UUID: text forms parsed by the value layer. "" is the zero value. */
static int json_to_text_scalar(jctx *c, const kraken_field *f, kraken_type type, const cJSON *it,
                               kraken_slot *out)
{
    if (!cJSON_IsString(it))
        return jerr(c, KRAKEN_EPARSE, "expected %s as a string, got %s", kraken_type_name(type),
                    json_kind(it));
    memset(out, 0, sizeof *out);
    if (it->valuestring[0] == '\0')
        return 0;
    if (type == KRAKEN_T_UUID) { /* the common case, without a kraken_value in between */
        kraken_uuid id;
        if (kraken_uuid_parse(&id, it->valuestring) == 0) {
            if (kraken_uuid_is_zero(&id))
                return 0;
            if ((out->uuid = malloc(sizeof id)) == NULL)
                return jerr(c, KRAKEN_ENOMEM, "out of memory");
            *out->uuid = id;
            return 0;
        }
    }
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken__value_parse_scalar(f, type, it->valuestring, &v);
    if (rc == 0) {
        rc = kraken__value_to_slot(f, type, &v, out, NULL);
        kraken_value_clear(&v);
    }
    if (rc != 0)
        return jerr_prefix(c, rc == KRAKEN_ENOMEM ? rc : KRAKEN_EPARSE);
    return 0;
}

/* Resolve a JSON member name to a field: exact lowerCamel or snake_case name. */
static const kraken_field *json_field(const struct kraken_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        const kraken_field *f = &s->fields[i];
        if (strcmp(f->json_name, name) == 0 || strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static const struct kraken_schema *json_record_schema(jctx *c, const struct kraken_schema *schema,
                                                      const cJSON *obj, int *rc)
{
    const cJSON *type = NULL;
    char q[KRAKEN_QUOTE_SIZE];
    *rc = 0;
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "@type") != 0)
            continue;
        if (type != NULL) {
            *rc = jerr(c, KRAKEN_EPARSE, "\"@type\" given twice");
            return NULL;
        }
        type = it;
    }
    if (type == NULL) {
        if (schema == NULL)
            *rc = jerr(c, KRAKEN_EPARSE, "typed record without \"@type\"");
        return schema;
    }
    if (!cJSON_IsString(type)) {
        *rc = jerr(c, KRAKEN_EPARSE, "\"@type\" must be a string, got %s", json_kind(type));
        return NULL;
    }
    const char *tn = type->valuestring;
    const struct kraken_schema *named = jctx_find_schema(c, tn);
    if (named == NULL) {
        *rc = jerr(c, KRAKEN_EPARSE, "unknown @type %s", kraken__quote(q, sizeof q, tn, strlen(tn)));
        return NULL;
    }
    if (schema != NULL && named != schema) {
        *rc = jerr(c, KRAKEN_EPARSE, "\"@type\" %s where %s is expected",
                   kraken__quote(q, sizeof q, tn, strlen(tn)), schema->name);
        return NULL;
    }
    return named;
}

static int json_to_slot(jctx *c, const kraken_field *f, kraken_type type, const cJSON *it,
                        kraken_slot *out);

static int json_to_record(jctx *c, const struct kraken_schema *schema, const cJSON *obj,
                          kraken_record **out)
{
    *out = NULL;
    if (!cJSON_IsObject(obj))
        return jerr(c, KRAKEN_EPARSE, "expected an object, got %s", json_kind(obj));
    /* Only records can nest (map values and list elements are not containers), so
     * counting records bounds the recursion. Same limit as the binary decoder. */
    if (c->depth >= KRAKEN_CODEC_MAX_DEPTH)
        return jerr(c, KRAKEN_EPARSE, "records nested more than %d levels", KRAKEN_CODEC_MAX_DEPTH);
    int rc;
    bool typed = (schema == NULL);
    schema = json_record_schema(c, schema, obj, &rc);
    if (rc != 0)
        return rc;
    kraken_record *rec = kraken__record_new(schema);
    if (rec == NULL)
        return jerr(c, KRAKEN_ENOMEM, "out of memory");
    /* Which fields were given, to refuse one given twice (camel and snake spelling). */
    uint8_t seen_small[64];
    uint8_t *seen = schema->n_fields <= sizeof seen_small ? seen_small : calloc(schema->n_fields, 1);
    if (seen == NULL) {
        kraken__record_free(rec);
        return jerr(c, KRAKEN_ENOMEM, "out of memory");
    }
    memset(seen, 0, schema->n_fields <= sizeof seen_small ? schema->n_fields : 0);
    c->depth++;
    /* Name the type in paths below a typed record: "extensions[0](PXE.Client).state". */
    size_t type_mark = c->path_len;
    if (typed) {
        path_append(c, "(", 1);
        path_append(c, schema->name, strlen(schema->name));
        path_append(c, ")", 1);
    }
    char q[KRAKEN_QUOTE_SIZE];
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "@type") == 0)
            continue;
        const kraken_field *f = json_field(schema, it->string);
        if (f == NULL) {
            rc = jerr(c, KRAKEN_EPARSE, "unknown field %s in %s",
                      kraken__quote(q, sizeof q, it->string, strlen(it->string)), schema->name);
            break;
        }
        size_t idx = (size_t)(f - schema->fields);
        if (seen[idx]) {
            rc = jerr(c, KRAKEN_EPARSE, "field %s given twice in %s",
                      kraken__quote(q, sizeof q, it->string, strlen(it->string)), schema->name);
            break;
        }
        seen[idx] = 1;
        if (cJSON_IsNull(it))
            continue;
        size_t old = path_push(c, ".", f->json_name);
        rc = json_to_slot(c, f, f->type, it, &rec->slots[idx]);
        if (rc != 0)
            break;
        path_pop(c, old);
    }
    c->depth--;
    if (seen != seen_small)
        free(seen);
    if (rc != 0) {
        kraken__record_free(rec);
        return rc;
    }
    path_pop(c, type_mark);
    *out = rec;
    return 0;
}

static int json_to_map(jctx *c, const kraken_field *f, const cJSON *obj, kraken_map **out)
{
    if (!cJSON_IsObject(obj))
        return jerr(c, KRAKEN_EPARSE, "expected an object (map), got %s", json_kind(obj));
    kraken_map *map = NULL;
    int rc = 0;
    for (const cJSON *it = obj->child; it != NULL && rc == 0; it = it->next) {
        size_t klen = strlen(it->string);
        size_t old = path_push(c, ".", it->string);
        if (map != NULL && kraken__map_find(map, it->string, klen) != NULL) {
            char q[KRAKEN_QUOTE_SIZE];
            rc = jerr(c, KRAKEN_EPARSE, "duplicate map key %s",
                      kraken__quote(q, sizeof q, it->string, klen));
        } else {
            kraken_map_entry *e = kraken__map_insert(&map, it->string, klen);
            if (e == NULL)
                rc = jerr(c, KRAKEN_ENOMEM, "out of memory");
            else if (!cJSON_IsNull(it))
                rc = json_to_slot(c, f, f->elem_type, it, &e->value);
        }
        if (rc == 0)
            path_pop(c, old);
    }
    kraken_slot slot = {.map = map};
    if (rc != 0) {
        kraken__slot_free(f, KRAKEN_T_MAP, &slot);
        return rc;
    }
    *out = map;
    return 0;
}

static int json_to_list(jctx *c, const kraken_field *f, const cJSON *arr, kraken_list **out)
{
    if (!cJSON_IsArray(arr))
        return jerr(c, KRAKEN_EPARSE, "expected an array, got %s", json_kind(arr));
    int count = cJSON_GetArraySize(arr);
    *out = NULL;
    if (count <= 0)
        return 0;
    kraken_list *list = kraken__list_new((size_t)count);
    if (list == NULL)
        return jerr(c, KRAKEN_ENOMEM, "out of memory");
    int rc = 0;
    size_t i = 0;
    for (const cJSON *it = arr->child; it != NULL && rc == 0; it = it->next, i++) {
        size_t old = path_push_index(c, i);
        if (cJSON_IsNull(it))
            rc = jerr(c, KRAKEN_EPARSE, "null list element");
        else
            rc = json_to_slot(c, f, f->elem_type, it, &list->items[list->n]);
        if (rc == 0) {
            list->n++;
            path_pop(c, old);
        }
    }
    const char *bad_key;
    if (rc == 0 && kraken__list_sort_keyed(f, list, &bad_key) != 0) {
        char q[KRAKEN_QUOTE_SIZE];
        if (bad_key[0] == '\0')
            rc = jerr(c, KRAKEN_EPARSE, "element without a key (%s)",
                      f->list_key == KRAKEN_KEY_FIELD ? "id" : "@type");
        else
            rc = jerr(c, KRAKEN_EPARSE, "duplicate element %s",
                      kraken__quote(q, sizeof q, bad_key, strlen(bad_key)));
    }
    kraken_slot slot = {.list = list};
    if (rc != 0) {
        kraken__slot_free(f, KRAKEN_T_LIST, &slot);
        return rc;
    }
    *out = list;
    return 0;
}

/* Decode one value described by (f, type) into a zeroed slot. */
static int json_to_slot(jctx *c, const kraken_field *f, kraken_type type, const cJSON *it,
                        kraken_slot *out)
{
    memset(out, 0, sizeof *out);
    switch (type) {
    case KRAKEN_T_BOOL:
        if (!cJSON_IsBool(it))
            return jerr(c, KRAKEN_EPARSE, "expected true or false, got %s", json_kind(it));
        out->b = cJSON_IsTrue(it);
        return 0;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return json_to_int(c, type, it, out);
    case KRAKEN_T_ENUM:
        return json_to_enum(c, f, it, out);
    case KRAKEN_T_STRING:
        return json_to_string(c, it, out);
    case KRAKEN_T_BYTES:
    case KRAKEN_T_IPV4:
    case KRAKEN_T_MAC:
    case KRAKEN_T_UUID:
        return json_to_text_scalar(c, f, type, it, out);
    case KRAKEN_T_RECORD:
        return json_to_record(c, f->record, it, &out->rec);
    case KRAKEN_T_MAP:
        return json_to_map(c, f, it, &out->map);
    case KRAKEN_T_LIST:
        return json_to_list(c, f, it, &out->list);
    default:
        return jerr(c, KRAKEN_EINVAL, "field has no JSON form (type %d)", (int)type);
    }
}

/* The node's id, if it is a valid UUID, names the node in messages. */
static void jctx_learn_id(jctx *c, const cJSON *obj)
{
    c->node_id[0] = '\0';
    const cJSON *id = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, "id") : NULL;
    kraken_uuid uuid;
    if (cJSON_IsString(id) && kraken_uuid_parse(&uuid, id->valuestring) == 0)
        kraken_uuid_format(&uuid, c->node_id);
}

static int json_to_node(jctx *c, const cJSON *obj, kraken_node **out)
{
    jctx_learn_id(c, obj);
    kraken_record *rec = NULL;
    int rc = json_to_record(c, kraken__node_schema(), obj, &rec);
    if (rc != 0)
        return rc;
    *out = (kraken_node *)rec;
    return 0;
}

/* ==== 2. records -> JSON text (direct printer) ============================== */

#define JOUT_CHUNK (64 * 1024)

typedef struct jout {
    char *buf;
    size_t len, cap;
    kraken__afile *file; /* NULL: the whole text stays in buf */
    int rc;              /* first error; output stops there */
    bool file_failed;    /* rc came from writing the file (its message names the path) */
    bool pretty;
    int level;
} jout;

static void jout_init(jout *o, bool pretty, kraken__afile *file)
{
    memset(o, 0, sizeof *o);
    o->pretty = pretty;
    o->file = file;
}

static void jout_fail(jout *o, int rc)
{
    if (o->rc == 0)
        o->rc = rc;
}

static bool jout_flush(jout *o)
{
    if (o->file != NULL && o->len > 0 && o->rc == 0) {
        int rc = kraken__afile_write(o->file, o->buf, o->len);
        if (rc != 0) {
            jout_fail(o, rc);
            o->file_failed = true;
            return false;
        }
        o->len = 0;
    }
    return o->rc == 0;
}

static void jout_put(jout *o, const char *data, size_t n)
{
    if (o->rc != 0)
        return;
    if (o->len + n + 1 > o->cap) {
        if (o->file != NULL && o->len > 0 && !jout_flush(o))
            return;
        if (o->len + n + 1 > o->cap) {
            size_t cap = o->cap ? o->cap : (o->file != NULL ? JOUT_CHUNK : 256);
            while (cap < o->len + n + 1)
                cap *= 2;
            char *buf = realloc(o->buf, cap);
            if (buf == NULL) {
                jout_fail(o, kraken__err(KRAKEN_ENOMEM, "out of memory writing JSON"));
                return;
            }
            o->buf = buf;
            o->cap = cap;
        }
    }
    memcpy(o->buf + o->len, data, n);
    o->len += n;
}

static void jout_putc(jout *o, char c) { jout_put(o, &c, 1); }

static void jout_newline(jout *o)
{
    static const char spaces[] = "                                ";
    jout_putc(o, '\n');
    for (int n = o->level * 2; n > 0; n -= (int)(sizeof spaces - 1))
        jout_put(o, spaces, n < (int)(sizeof spaces - 1) ? (size_t)n : sizeof spaces - 1);
}

/* Containers: open, then one jout_item per member/element, then close. */
static void jout_open(jout *o, char c, bool *first)
{
    jout_putc(o, c);
    o->level++;
    *first = true;
}

static void jout_item(jout *o, bool *first)
{
    if (!*first)
        jout_putc(o, ',');
    *first = false;
    if (o->pretty)
        jout_newline(o);
}

static void jout_close(jout *o, char c, bool first)
{
    o->level--;
    if (o->pretty && !first)
        jout_newline(o);
    jout_putc(o, c);
}

/* A JSON string: escapes what JSON requires (quote, backslash, control characters). The text
 * must be UTF-8 (stored strings always are; checked on the way as a last line of defence). */
static void jout_string(jout *o, const char *s, size_t n)
{
    jout_putc(o, '"');
    size_t i = 0;
    while (i < n && o->rc == 0) {
        size_t run = i;
        while (run < n) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
                break;
            run++;
        }
        jout_put(o, s + i, run - i);
        i = run;
        if (i >= n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t len = kraken__utf8_seq(s + i, n - i, &cp);
            if (len == 0) {
                jout_fail(o, kraken__err(KRAKEN_EINVAL, "string is not valid UTF-8"));
                return;
            }
            jout_put(o, s + i, len);
            i += len;
            continue;
        }
        char esc[8];
        switch (c) {
        case '"': jout_put(o, "\\\"", 2); break;
        case '\\': jout_put(o, "\\\\", 2); break;
        case '\b': jout_put(o, "\\b", 2); break;
        case '\f': jout_put(o, "\\f", 2); break;
        case '\n': jout_put(o, "\\n", 2); break;
        case '\r': jout_put(o, "\\r", 2); break;
        case '\t': jout_put(o, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jout_put(o, esc, 6);
        }
        i++;
    }
    jout_putc(o, '"');
}

static void jout_cstring(jout *o, const char *s) { jout_string(o, s, strlen(s)); }

static void jout_member(jout *o, bool *first, const char *name)
{
    jout_item(o, first);
    jout_cstring(o, name);
    if (o->pretty)
        jout_put(o, ": ", 2);
    else
        jout_putc(o, ':');
}

/* Decimal digits of @p v into the end of @p buf[24]; returns the first digit. */
static char *u64_dec(char *end, uint64_t v)
{
    *--end = '\0';
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

static void jout_int(jout *o, int64_t v, bool quoted)
{
    char buf[24];
    char *p = u64_dec(buf + sizeof buf, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    if (quoted)
        jout_putc(o, '"');
    jout_put(o, p, strlen(p));
    if (quoted)
        jout_putc(o, '"');
}

static void jout_uint(jout *o, uint64_t v, bool quoted)
{
    char buf[24];
    char *p = u64_dec(buf + sizeof buf, v);
    if (quoted)
        jout_putc(o, '"');
    jout_put(o, p, strlen(p));
    if (quoted)
        jout_putc(o, '"');
}

static void print_text_scalar(jout *o, const kraken_field *f, kraken_type type,
                              const kraken_slot *slot)
{
    static const char hex[] = "0123456789abcdef";
    char buf[64];
    size_t n = 0;
    const uint8_t *b;
    switch (type) {
    case KRAKEN_T_IPV4:
        b = (const uint8_t *)&slot->ipv4;
        for (int i = 0; i < 4; i++) {
            char d[4];
            char *p = u64_dec(d + sizeof d, b[i]);
            size_t dl = strlen(p);
            memcpy(buf + n, p, dl);
            n += dl;
            if (i < 3)
                buf[n++] = '.';
        }
        break;
    case KRAKEN_T_MAC:
        b = (const uint8_t *)&slot->mac;
        for (int i = 0; i < 6; i++) {
            buf[n++] = hex[b[i] >> 4];
            buf[n++] = hex[b[i] & 15];
            if (i < 5)
                buf[n++] = ':';
        }
        break;
    case KRAKEN_T_UUID: {
        static const kraken_uuid zero;
        kraken_uuid_format(slot->uuid != NULL ? slot->uuid : &zero, buf);
        n = KRAKEN_UUID_STRLEN;
        break;
    }
    default: { /* BYTES: base64 from the value layer */
        kraken_value v = KRAKEN_VALUE_INIT;
        char *text = NULL;
        int rc = kraken__slot_to_value(f, type, slot, &v);
        if (rc == 0)
            rc = kraken__value_format_scalar(&v, &text);
        kraken_value_clear(&v);
        if (rc != 0) {
            jout_fail(o, rc);
            return;
        }
        jout_cstring(o, text);
        free(text);
        return;
    }
    }
    jout_putc(o, '"');
    jout_put(o, buf, n);
    jout_putc(o, '"');
}

static void print_slot(jout *o, const kraken_field *f, kraken_type type, const kraken_slot *slot);

/* Whether a record field appears in the output. Zero values are left out, except that a keyed
 * list keeps every record it holds: an extension whose fields are all zero still says which
 * extension the node has ({"@type": ...}), as the original writes it. */
static bool field_present(const kraken_field *f, const kraken_slot *slot)
{
    if (f->type == KRAKEN_T_LIST && f->list_key != KRAKEN_KEY_INDEX) {
        for (size_t i = 0; slot->list != NULL && i < slot->list->n; i++)
            if (slot->list->items[i].rec != NULL)
                return true;
        return false;
    }
    return !kraken__slot_is_zero_deep(f, f->type, slot);
}

static void print_record(jout *o, const kraken_record *rec, bool with_type)
{
    const struct kraken_schema *s = rec->schema;
    bool first;
    jout_open(o, '{', &first);
    if (with_type) {
        jout_member(o, &first, "@type");
        jout_cstring(o, s->type_url);
    }
    for (size_t i = 0; i < s->n_fields && o->rc == 0; i++) {
        const kraken_field *f = &s->fields[i];
        if (!field_present(f, &rec->slots[i]))
            continue;
        jout_member(o, &first, f->json_name);
        print_slot(o, f, f->type, &rec->slots[i]);
        if (o->rc != 0)
            kraken__err_prefix(o->rc, "%s.%s", s->name, f->json_name);
    }
    jout_close(o, '}', first);
}

static void print_map(jout *o, const kraken_field *f, const kraken_map *map)
{
    bool first;
    jout_open(o, '{', &first);
    for (size_t i = 0; map != NULL && i < map->n && o->rc == 0; i++) {
        const kraken_map_entry *e = &map->entries[i];
        if (kraken__slot_is_zero_deep(f, f->elem_type, &e->value))
            continue; /* zero entries equal absent ones: leave them out */
        jout_member(o, &first, e->key);
        print_slot(o, f, f->elem_type, &e->value);
        if (o->rc != 0) {
            char q[KRAKEN_QUOTE_SIZE];
            kraken__err_prefix(o->rc, "[%s]", kraken__quote(q, sizeof q, e->key, strlen(e->key)));
        }
    }
    jout_close(o, '}', first);
}

static void print_list(jout *o, const kraken_field *f, const kraken_list *list)
{
    bool first;
    jout_open(o, '[', &first);
    size_t n = kraken__list_encoded_count(f, list);
    for (size_t i = 0; i < n && o->rc == 0; i++) {
        if (f->list_key != KRAKEN_KEY_INDEX && list->items[i].rec == NULL)
            continue;
        jout_item(o, &first);
        print_slot(o, f, f->elem_type, &list->items[i]);
        if (o->rc != 0)
            kraken__err_prefix(o->rc, "[%zu]", i);
    }
    jout_close(o, ']', first);
}

static void print_slot(jout *o, const kraken_field *f, kraken_type type, const kraken_slot *slot)
{
    switch (type) {
    case KRAKEN_T_BOOL:
        if (slot->b)
            jout_put(o, "true", 4);
        else
            jout_put(o, "false", 5);
        return;
    case KRAKEN_T_INT32:
        jout_int(o, slot->i, false);
        return;
    case KRAKEN_T_UINT32:
        jout_uint(o, slot->u, false);
        return;
    case KRAKEN_T_INT64: /* proto3 JSON: 64-bit integers are strings */
        jout_int(o, slot->i, true);
        return;
    case KRAKEN_T_UINT64:
        jout_uint(o, slot->u, true);
        return;
    case KRAKEN_T_ENUM: {
        const char *name = f->enm != NULL && slot->i >= INT32_MIN && slot->i <= INT32_MAX
                               ? kraken_enum_type_lookup(f->enm, (int32_t)slot->i)
                               : NULL;
        if (name != NULL)
            jout_cstring(o, name);
        else
            jout_int(o, slot->i, false);
        return;
    }
    case KRAKEN_T_STRING:
        jout_cstring(o, slot->s != NULL ? slot->s : "");
        return;
    case KRAKEN_T_BYTES:
    case KRAKEN_T_IPV4:
    case KRAKEN_T_MAC:
    case KRAKEN_T_UUID:
        print_text_scalar(o, f, type, slot);
        return;
    case KRAKEN_T_RECORD:
        if (slot->rec == NULL) {
            /* Only list elements get here: an absent record of a known type is {}. */
            if (f->record != NULL)
                jout_put(o, "{}", 2);
            else
                jout_put(o, "null", 4);
            return;
        }
        print_record(o, slot->rec, f->record == NULL);
        return;
    case KRAKEN_T_MAP:
        print_map(o, f, slot->map);
        return;
    case KRAKEN_T_LIST:
        print_list(o, f, slot->list);
        return;
    default:
        jout_fail(o, kraken__err(KRAKEN_EINVAL, "type %d has no JSON form", (int)type));
    }
}

static void print_node_list(jout *o, kraken_node *const *nodes, size_t n)
{
    bool first;
    jout_open(o, '{', &first);
    jout_member(o, &first, "nodes");
    bool first_node;
    jout_open(o, '[', &first_node);
    for (size_t i = 0; i < n && o->rc == 0; i++) {
        jout_item(o, &first_node);
        print_record(o, &nodes[i]->rec, false);
        if (o->rc != 0) {
            char id[KRAKEN_UUID_STRLEN + 1];
            kraken__err_prefix(o->rc, "node %zu (%s)", i,
                               kraken_uuid_format(kraken_node_id(nodes[i]), id));
        }
        /* A file is written as it is printed: memory stays at one chunk. */
        if (o->file != NULL && o->len >= JOUT_CHUNK)
            jout_flush(o);
    }
    jout_close(o, ']', first_node);
    jout_close(o, '}', first);
}

/* The text built in memory (NUL-terminated, malloc'ed), or the error. */
static int jout_finish(jout *o, char **out)
{
    *out = NULL;
    if (o->rc == 0 && o->buf == NULL)
        jout_put(o, "", 0);
    if (o->rc != 0) {
        free(o->buf);
        return o->rc;
    }
    o->buf[o->len] = '\0';
    *out = o->buf;
    return 0;
}

/* ==== 3. entry points ======================================================== */

/* ---- JSON text of compound values (the text form of kraken_value) ---------- */

int kraken__slot_to_json_text(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                              char **out)
{
    if (f == NULL || slot == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__slot_to_json_text: NULL argument");
    jout o;
    jout_init(&o, false, NULL);
    print_slot(&o, f, type, slot);
    return jout_finish(&o, out);
}

int kraken__slot_from_json_text(const kraken_field *f, kraken_type type, const char *text,
                                size_t len, const char *source, kraken_slot *out)
{
    if (f == NULL || text == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__slot_from_json_text: NULL argument");
    kraken__schemas_init();
    kraken_jscan s;
    kraken__jscan_init(&s, text, len, source);
    cJSON *root = NULL;
    int rc = kraken__jscan_parse(&s, &root);
    if (rc == 0) {
        jctx c;
        jctx_init(&c, &s);
        kraken_slot slot;
        rc = json_to_slot(&c, f, type, root, &slot);
        if (rc == 0)
            *out = slot;
    }
    cJSON_Delete(root);
    kraken__jscan_free(&s);
    return rc;
}

int kraken_value_format(const kraken_value *value, char **out)
{
    if (value == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_value_format: NULL argument");
    if (value->type != KRAKEN_T_RECORD && value->type != KRAKEN_T_MAP &&
        value->type != KRAKEN_T_LIST)
        return kraken__value_format_scalar(value, out);
    if (value->v.tree == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_value_format: compound value without data");
    return kraken__slot_to_json_text(value->v.tree->field, value->v.tree->type,
                                     &value->v.tree->slot, out);
}

int kraken__value_parse(const kraken_field *f, kraken_type type, const char *text,
                        kraken_value *out)
{
    if (type != KRAKEN_T_RECORD && type != KRAKEN_T_MAP && type != KRAKEN_T_LIST)
        return kraken__value_parse_scalar(f, type, text, out);
    if (text == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__value_parse: NULL argument");
    if (f == NULL)
        return kraken__err(KRAKEN_EINVAL, "compound value without a field");
    kraken_slot slot;
    memset(&slot, 0, sizeof slot);
    int rc = kraken__slot_from_json_text(f, type, text, strlen(text), "value", &slot);
    if (rc < 0)
        return rc;
    rc = kraken__value_tree_new(f, type, &slot, true, out);
    if (rc < 0)
        kraken__slot_free(f, type, &slot);
    return rc;
}

/* ---- nodes ------------------------------------------------------------------ */

int kraken_node_to_json(const kraken_node *node, unsigned flags, char **out)
{
    if (node == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_to_json: NULL argument");
    jout o;
    jout_init(&o, (flags & KRAKEN_JSON_PRETTY) != 0, NULL);
    print_record(&o, &node->rec, false);
    return jout_finish(&o, out);
}

int kraken_node_from_json(const char *json, size_t len, const char *source, kraken_node **out)
{
    if (json == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_from_json: NULL argument");
    *out = NULL;
    kraken__schemas_init();
    kraken_jscan s;
    kraken__jscan_init(&s, json, len, source);
    cJSON *root = NULL;
    int rc = kraken__jscan_parse(&s, &root);
    if (rc == 0) {
        jctx c;
        jctx_init(&c, &s);
        rc = json_to_node(&c, root, out);
    }
    cJSON_Delete(root);
    kraken__jscan_free(&s);
    return rc;
}

static int check_node_args(kraken_node *const *nodes, size_t n, const char *fn)
{
    if (nodes == NULL && n > 0)
        return kraken__err(KRAKEN_EINVAL, "%s: NULL argument", fn);
    for (size_t i = 0; i < n; i++)
        if (nodes[i] == NULL)
            return kraken__err(KRAKEN_EINVAL, "%s: node %zu is NULL", fn, i);
    return 0;
}

int kraken_nodes_to_json(kraken_node *const *nodes, size_t n, unsigned flags, char **out)
{
    if (out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_to_json: NULL argument");
    *out = NULL;
    int rc = check_node_args(nodes, n, "kraken_nodes_to_json");
    if (rc != 0)
        return rc;
    jout o;
    jout_init(&o, (flags & KRAKEN_JSON_PRETTY) != 0, NULL);
    print_node_list(&o, nodes, n);
    return jout_finish(&o, out);
}

void kraken_nodes_free(kraken_node **nodes, size_t n)
{
    if (nodes == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kraken_node_free(nodes[i]);
    free(nodes);
}

/* ---- node lists ----------------------------------------------------------------- */

typedef struct node_array {
    kraken_node **items;
    size_t n, cap;
} node_array;

static int node_array_push(node_array *a, kraken_node *node)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        kraken_node **items = realloc(a->items, cap * sizeof *items);
        if (items == NULL)
            return -1;
        a->items = items;
        a->cap = cap;
    }
    a->items[a->n++] = node;
    return 0;
}

typedef struct id_index {
    const kraken_uuid *id;
    size_t index;
} id_index;

static int id_index_cmp(const void *a, const void *b)
{
    const id_index *x = a, *y = b;
    int c = memcmp(x->id->bytes, y->id->bytes, sizeof x->id->bytes);
    return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

/* A node list is a set of nodes keyed by id: every node has one, and no two share it. */
static int check_list_ids(const kraken_jscan *s, kraken_node *const *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kraken_uuid_is_zero(kraken_node_id(nodes[i])))
            return kraken__err(KRAKEN_EINVAL, "%s: node %zu: no \"id\" (every node needs one)",
                               s->source, i);
    if (n < 2)
        return 0;
    id_index *ids = malloc(n * sizeof *ids);
    if (ids == NULL)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory checking ids", s->source);
    for (size_t i = 0; i < n; i++)
        ids[i] = (id_index){kraken_node_id(nodes[i]), i};
    qsort(ids, n, sizeof *ids, id_index_cmp);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (memcmp(ids[i - 1].id->bytes, ids[i].id->bytes, sizeof ids[i].id->bytes) == 0) {
            char buf[KRAKEN_UUID_STRLEN + 1];
            rc = kraken__err(KRAKEN_EEXISTS, "%s: node %zu (%s): duplicate id (node %zu has it too)",
                             s->source, ids[i].index, kraken_uuid_format(ids[i].id, buf),
                             ids[i - 1].index);
        }
    }
    free(ids);
    return rc;
}

/* Scan the node at s->pos, parse its text alone with cJSON, build it, free the tree. */
static int read_one_node(kraken_jscan *s, jctx *c, kraken_node **out)
{
    size_t start = s->pos;
    s->n_nums = 0;
    int rc = kraken__jscan_value(s);
    if (rc != 0)
        return rc;
    if (s->text[start] != '{')
        return kraken__err(KRAKEN_EPARSE, "%s: node %ld: expected an object, got %s", s->source,
                           s->node_index, kraken__jscan_kind_at(s, start));
    cJSON *tree = NULL;
    if ((rc = kraken__jscan_parse_slice(s, start, s->pos, &tree)) != 0)
        return rc;
    jctx_next_node(c, s->node_index);
    rc = json_to_node(c, tree, out);
    cJSON_Delete(tree);
    return rc;
}

/* The elements of the "nodes" array, node by node; s->pos is at its '['. */
static int read_node_array(kraken_jscan *s, node_array *a)
{
    int rc = kraken__jscan_push(s, true);
    if (rc != 0)
        return rc;
    kraken_jframe *f = &s->frames[s->depth - 1];
    s->node_depth = s->depth;
    jctx c;
    jctx_init(&c, s);
    if (kraken__jscan_close(s, ']'))
        return 0;
    for (;;) {
        f->index++;
        kraken__jscan_ws(s);
        s->node_index = f->index;
        kraken_node *node = NULL;
        if ((rc = read_one_node(s, &c, &node)) != 0)
            return rc;
        if (node_array_push(a, node) != 0) {
            kraken_node_free(node);
            return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", s->source);
        }
        s->node_index = -1;
        if ((rc = kraken__jscan_next(s, ']', "a node")) <= 0)
            return rc;
    }
}

/* {"nodes": [...]}: the only member is "nodes" (null or absent: no nodes). */
static int read_node_list(kraken_jscan *s, node_array *a)
{
    char fb[16], q[KRAKEN_QUOTE_SIZE];
    kraken__jscan_ws(s);
    if (s->pos >= s->len)
        return kraken__jscan_error(s, s->pos, "expected an object {\"nodes\": [...]}, found the end of "
                                      "the input");
    if (s->text[s->pos] != '{') {
        size_t at = s->pos;
        int rc = kraken__jscan_value(s);
        if (rc != 0)
            return rc;
        return kraken__err(KRAKEN_EPARSE, "%s: expected an object {\"nodes\": [...]}, got %s",
                           s->source, kraken__jscan_kind_at(s, at));
    }
    int rc = kraken__jscan_push(s, false);
    if (rc != 0)
        return rc;
    kraken_jframe *f = &s->frames[s->depth - 1];
    bool seen = false;
    if (kraken__jscan_close(s, '}'))
        return 0;
    for (;;) {
        if (s->pos >= s->len || s->text[s->pos] != '"')
            return kraken__jscan_error(s, s->pos, "expected a member name (a string), found %s",
                               kraken__jscan_found(s, s->pos, fb, sizeof fb));
        size_t key = s->pos;
        if ((rc = kraken__jscan_string(s, true)) != 0)
            return rc;
        f->key = s->text + key + 1;
        f->key_len = s->pos - key - 2;
        if (f->key_len != 5 || memcmp(f->key, "nodes", 5) != 0)
            return kraken__err(KRAKEN_EPARSE, "%s: unknown member %s (expected \"nodes\")",
                               s->source, kraken__quote(q, sizeof q, f->key, f->key_len));
        if (seen)
            return kraken__err(KRAKEN_EPARSE, "%s: \"nodes\" given twice", s->source);
        seen = true;
        kraken__jscan_ws(s);
        if (s->pos >= s->len || s->text[s->pos] != ':')
            return kraken__jscan_error(s, s->pos, "expected ':' after the member name, found %s",
                               kraken__jscan_found(s, s->pos, fb, sizeof fb));
        s->pos++;
        kraken__jscan_ws(s);
        size_t at = s->pos;
        if (s->pos < s->len && s->text[s->pos] == '[') {
            rc = read_node_array(s, a);
        } else if ((rc = kraken__jscan_value(s)) == 0 && s->text[at] != 'n') {
            return kraken__err(KRAKEN_EPARSE, "%s: \"nodes\" must be an array, got %s", s->source,
                               kraken__jscan_kind_at(s, at));
        }
        if (rc != 0)
            return rc;
        kraken__jscan_ws(s);
        if (s->pos < s->len && s->text[s->pos] == ',') {
            s->pos++;
            kraken__jscan_ws(s);
            continue;
        }
        if (s->pos < s->len && s->text[s->pos] == '}') {
            s->pos++;
            s->depth--;
            return 0;
        }
        return kraken__jscan_error(s, s->pos, "expected ',' or '}' after a member, found %s",
                           kraken__jscan_found(s, s->pos, fb, sizeof fb));
    }
}

int kraken_nodes_from_json(const char *json, size_t len, const char *source, kraken_node ***out,
                           size_t *n_out)
{
    if (json == NULL || out == NULL || n_out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_from_json: NULL argument");
    *out = NULL;
    *n_out = 0;
    kraken__schemas_init();
    kraken_jscan s;
    kraken__jscan_init(&s, json, len, source);
    node_array a = {NULL, 0, 0};
    int rc = read_node_list(&s, &a);
    if (rc == 0)
        rc = kraken__jscan_end(&s);
    if (rc == 0)
        rc = check_list_ids(&s, a.items, a.n);
    kraken__jscan_free(&s);
    if (rc != 0) {
        kraken_nodes_free(a.items, a.n);
        return rc;
    }
    if (a.items == NULL && (a.items = malloc(sizeof *a.items)) == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    *out = a.items;
    *n_out = a.n;
    return 0;
}

int kraken_nodes_load_file(const char *path, kraken_node ***out, size_t *n_out)
{
    if (path == NULL || out == NULL || n_out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_load_file: NULL argument");
    *out = NULL;
    *n_out = 0;
    kraken__remove_stale_temps(path);
    char *text = NULL;
    size_t len = 0;
    int rc = kraken__read_file(path, &text, &len);
    if (rc != 0)
        return rc;
    rc = kraken_nodes_from_json(text, len, path, out, n_out);
    free(text);
    return rc;
}

int kraken_nodes_save_file(const char *path, kraken_node *const *nodes, size_t n)
{
    if (path == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_save_file: NULL path");
    int rc = check_node_args(nodes, n, "kraken_nodes_save_file");
    if (rc != 0)
        return kraken__err_prefix(rc, "%s", path);
    kraken__afile af;
    if ((rc = kraken__afile_open(&af, path)) != 0)
        return rc;
    jout o;
    jout_init(&o, true, &af);
    print_node_list(&o, nodes, n);
    jout_putc(&o, '\n'); /* a text file ends with a newline */
    jout_flush(&o);
    free(o.buf);
    if (o.rc != 0) {
        kraken__afile_abort(&af);
        return o.file_failed ? o.rc : kraken__err_prefix(o.rc, "%s", path);
    }
    return kraken__afile_commit(&af);
}
