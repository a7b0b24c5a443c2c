/*
 * json.c: nodes <-> JSON text in the original's protobuf-JSON form (SPEC 1.4).
 *
 * Output: lowerCamel names in schema declaration order, enum names, zero fields
 * omitted, typed records as objects carrying "@type", maps as objects, lists as
 * arrays, 64-bit integers as strings (proto3 JSON). Input additionally accepts
 * snake_case names, numeric enums and integers as numbers or strings.
 *
 * Decoding builds every record aside and frees it on the first error, so a
 * failed parse returns nothing. Unknown names are errors: data is never dropped.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define JSON_PATH_MAX 256
#define JSON_MAX_SAFE_INT 9007199254740992.0 /* 2^53: 2^53 + 1 reads as 2^53, so stop below */

/* ---- UTF-8 (shared with pbcodec.c) --------------------------------------- */

bool kraken__utf8_valid(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false; /* strings are stored NUL-terminated */
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* Reject overlong forms, surrogates and code points past U+10FFFF. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

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

/* ---- decoding context and errors ----------------------------------------- */

typedef struct jctx {
    const char *source; /* file name, "request", ... */
    long node_index;    /* index in a node list, -1 if not in one */
    char node_id[40];   /* the node's "id" as written, "" if unknown */
    char path[JSON_PATH_MAX];
    size_t path_len;
    int depth;
} jctx;

static void jctx_init(jctx *c, const char *source)
{
    memset(c, 0, sizeof *c);
    c->source = source != NULL ? source : "JSON";
    c->node_index = -1;
}

/* snprintf at *len that never runs past the buffer (truncates instead). */
static void appendf(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < size ? *len + (size_t)n : size - 1;
}

/* "source: node 2 (id): field 'a.b'" describing where the decoder is. */
static void jctx_where(const jctx *c, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    appendf(buf, size, &len, "%s", c->source);
    if (c->node_index >= 0 || c->node_id[0] != '\0') {
        appendf(buf, size, &len, ": node");
        if (c->node_index >= 0)
            appendf(buf, size, &len, " %ld", c->node_index);
        if (c->node_id[0] != '\0')
            appendf(buf, size, &len, " (%s)", c->node_id);
    }
    if (c->path_len > 0)
        appendf(buf, size, &len, ": field '%s'", c->path);
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

/* Append "<sep><name>" to the field path; returns the length to restore. */
static size_t path_push(jctx *c, const char *sep, const char *name)
{
    size_t old = c->path_len;
    if (c->path_len == 0)
        sep = "";
    int n = snprintf(c->path + c->path_len, sizeof c->path - c->path_len, "%s%s", sep, name);
    if (n > 0)
        c->path_len += (size_t)n;
    if (c->path_len >= sizeof c->path)
        c->path_len = sizeof c->path - 1;
    return old;
}

static size_t path_push_index(jctx *c, size_t i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "[%zu]", i);
    size_t old = c->path_len;
    path_push(c, "", buf);
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

/* ---- JSON -> slots --------------------------------------------------------- */

static int json_to_slot(jctx *c, const kraken_field *f, kraken_type type, const cJSON *it,
                        kraken_slot *out);

static int parse_int_text(const char *text, kraken_type type, int64_t *i, uint64_t *u)
{
    const char *p = text;
    bool neg = (*p == '-');
    if (neg)
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    for (const char *q = p; *q != '\0'; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    if (type == KRAKEN_T_UINT32 || type == KRAKEN_T_UINT64) {
        if (neg)
            return -1;
        *u = strtoull(p, &end, 10);
    } else {
        *i = strtoll(text, &end, 10);
    }
    return errno == 0 && *end == '\0' ? 0 : -1;
}

static int json_to_int(jctx *c, kraken_type type, const cJSON *it, kraken_slot *out)
{
    bool is_unsigned = (type == KRAKEN_T_UINT32 || type == KRAKEN_T_UINT64);
    int64_t i = 0;
    uint64_t u = 0;
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!isfinite(d) || d != floor(d))
            return jerr(c, KRAKEN_EPARSE, "%s expects an integer, got %g", kraken_type_name(type),
                        d);
        if (fabs(d) >= JSON_MAX_SAFE_INT)
            return jerr(c, KRAKEN_EPARSE,
                        "integer %g is too large for a JSON number; write it as a string", d);
        if (is_unsigned) {
            if (d < 0)
                return jerr(c, KRAKEN_EPARSE, "%s cannot be negative (%g)", kraken_type_name(type),
                            d);
            u = (uint64_t)d;
        } else {
            i = (int64_t)d;
        }
    } else if (cJSON_IsString(it)) {
        if (parse_int_text(it->valuestring, type, &i, &u) != 0)
            return jerr(c, KRAKEN_EPARSE, "'%s' is not a valid %s", it->valuestring,
                        kraken_type_name(type));
    } else {
        return jerr(c, KRAKEN_EPARSE, "expected %s (number or string), got %s",
                    kraken_type_name(type), json_kind(it));
    }
    if ((type == KRAKEN_T_INT32 && (i < INT32_MIN || i > INT32_MAX)) ||
        (type == KRAKEN_T_UINT32 && u > UINT32_MAX))
        return jerr(c, KRAKEN_EPARSE, "value out of range for %s", kraken_type_name(type));
    if (is_unsigned)
        out->u = u;
    else
        out->i = i;
    return 0;
}

static int json_to_enum(jctx *c, const kraken_field *f, const cJSON *it, kraken_slot *out)
{
    const struct kraken_enum_type *e = f->enm;
    const char *ename = e != NULL ? kraken_enum_type_name(e) : "enum";
    if (cJSON_IsString(it)) {
        const kraken_enum_member *m =
            e != NULL ? kraken__enum_by_name(e, it->valuestring, strlen(it->valuestring)) : NULL;
        if (m == NULL)
            return jerr(c, KRAKEN_EPARSE, "unknown %s name '%s'", ename, it->valuestring);
        out->i = m->number;
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!isfinite(d) || d != floor(d) || d < INT32_MIN || d > INT32_MAX || e == NULL ||
            kraken_enum_type_lookup(e, (int32_t)d) == NULL)
            return jerr(c, KRAKEN_EPARSE, "%g is not a %s number", d, ename);
        out->i = (int32_t)d;
        return 0;
    }
    return jerr(c, KRAKEN_EPARSE, "expected a %s name or number, got %s", ename, json_kind(it));
}

static int json_to_string(jctx *c, const cJSON *it, kraken_slot *out)
{
    if (!cJSON_IsString(it))
        return jerr(c, KRAKEN_EPARSE, "expected a string, got %s", json_kind(it));
    size_t len = strlen(it->valuestring);
    if (!kraken__utf8_valid(it->valuestring, len))
        return jerr(c, KRAKEN_EPARSE, "string is not valid UTF-8");
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
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken__value_parse(f, type, it->valuestring, &v);
    if (rc == 0) {
        rc = kraken__value_to_slot(f, type, &v, out, c->path);
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
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "@type");
    *rc = 0;
    if (type == NULL) {
        if (schema == NULL)
            *rc = jerr(c, KRAKEN_EPARSE, "typed record without \"@type\"");
        return schema;
    }
    if (!cJSON_IsString(type)) {
        *rc = jerr(c, KRAKEN_EPARSE, "\"@type\" must be a string, got %s", json_kind(type));
        return NULL;
    }
    const struct kraken_schema *named = kraken_schema_find(type->valuestring);
    if (named == NULL) {
        *rc = jerr(c, KRAKEN_EPARSE, "unknown @type '%s'", type->valuestring);
        return NULL;
    }
    if (schema != NULL && named != schema) {
        *rc = jerr(c, KRAKEN_EPARSE, "\"@type\" '%s' where %s is expected", type->valuestring,
                   schema->name);
        return NULL;
    }
    return named;
}

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
    c->depth++;
    /* Name the type in paths below a typed record: "extensions[0](PXE.Client).state". */
    size_t type_mark = c->path_len;
    if (typed) {
        char buf[200];
        snprintf(buf, sizeof buf, "(%s)", schema->name);
        path_push(c, "", buf);
    }
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "@type") == 0)
            continue;
        const kraken_field *f = json_field(schema, it->string);
        if (f == NULL) {
            rc = jerr(c, KRAKEN_EPARSE, "unknown field '%s' in %s", it->string, schema->name);
            break;
        }
        /* A name given twice (e.g. camel and snake spelling) would silently overwrite. */
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next) {
            if (json_field(schema, prev->string) == f) {
                rc = jerr(c, KRAKEN_EPARSE, "field '%s' given twice in %s", it->string,
                          schema->name);
                break;
            }
        }
        if (rc != 0)
            break;
        if (cJSON_IsNull(it))
            continue;
        size_t old = path_push(c, ".", f->json_name);
        rc = json_to_slot(c, f, f->type, it, &rec->slots[f - schema->fields]);
        if (rc != 0)
            break;
        path_pop(c, old);
    }
    c->depth--;
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
        if (!kraken__utf8_valid(it->string, klen)) {
            rc = jerr(c, KRAKEN_EPARSE, "map key is not valid UTF-8");
        } else if (map != NULL && kraken__map_find(map, it->string, klen) != NULL) {
            rc = jerr(c, KRAKEN_EPARSE, "duplicate map key '%s'", it->string);
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
        if (bad_key[0] == '\0')
            rc = jerr(c, KRAKEN_EPARSE, "element without a key (%s)",
                      f->list_key == KRAKEN_KEY_FIELD ? "id" : "@type");
        else
            rc = jerr(c, KRAKEN_EPARSE, "duplicate element '%s'", bad_key);
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
    int rc;
    switch (type) {
    case KRAKEN_T_BOOL:
        if (cJSON_IsBool(it)) {
            out->b = cJSON_IsTrue(it);
            rc = 0;
        } else {
            rc = jerr(c, KRAKEN_EPARSE, "expected true or false, got %s", json_kind(it));
        }
        break;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        rc = json_to_int(c, type, it, out);
        break;
    case KRAKEN_T_ENUM:
        rc = json_to_enum(c, f, it, out);
        break;
    case KRAKEN_T_STRING:
        rc = json_to_string(c, it, out);
        break;
    case KRAKEN_T_BYTES:
    case KRAKEN_T_IPV4:
    case KRAKEN_T_MAC:
    case KRAKEN_T_UUID:
        rc = json_to_text_scalar(c, f, type, it, out);
        break;
    case KRAKEN_T_RECORD:
        rc = json_to_record(c, f->record, it, &out->rec);
        break;
    case KRAKEN_T_MAP:
        rc = json_to_map(c, f, it, &out->map);
        break;
    case KRAKEN_T_LIST:
        rc = json_to_list(c, f, it, &out->list);
        break;
    default:
        rc = jerr(c, KRAKEN_EINVAL, "field has no JSON form (type %d)", (int)type);
        break;
    }
    return rc;
}

/* ---- JSON parsing with positions ------------------------------------------ */

static int json_parse(const jctx *c, const char *text, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t off = 0;
    if (root != NULL) {
        off = (size_t)(end - text);
        while (off < len &&
               (text[off] == ' ' || text[off] == '\t' || text[off] == '\n' || text[off] == '\r'))
            off++;
        if (off == len || (text[off] == '\0' && off + 1 == len)) {
            *out = root;
            return 0;
        }
        cJSON_Delete(root);
    } else {
        off =
            end != NULL && end >= text && (size_t)(end - text) <= len ? (size_t)(end - text) : len;
    }
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    /* Quote the text around the position (same line only): cJSON's position can be a
     * character past the real culprit. */
    char near[32];
    size_t k = 0, start = off;
    while (start > 0 && off - start < 12 && text[start - 1] != '\n')
        start--;
    for (size_t i = start; i < len && k + 1 < sizeof near && text[i] != '\n' && text[i] != '\0';
         i++)
        near[k++] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
    near[k] = '\0';
    return kraken__err(KRAKEN_EPARSE,
                       "%s: malformed JSON at byte %zu (line %zu, column %zu)%s%s%s%s", c->source,
                       off, line, col, root != NULL ? ": trailing data" : "",
                       k > 0 ? " near '" : "", near, k > 0 ? "'" : "");
}

/* ---- slots -> JSON ------------------------------------------------------- */

static int slot_to_json(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                        cJSON **out);

static int out_of_memory(void) { return kraken__err(KRAKEN_ENOMEM, "out of memory building JSON"); }

static cJSON *json_int64_string(bool is_unsigned, const kraken_slot *slot)
{
    char buf[32];
    if (is_unsigned)
        snprintf(buf, sizeof buf, "%" PRIu64, slot->u);
    else
        snprintf(buf, sizeof buf, "%" PRId64, slot->i);
    return cJSON_CreateString(buf);
}

static int text_scalar_to_json(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                               cJSON **out)
{
    char buf[64];
    const uint8_t *b;
    switch (type) {
    case KRAKEN_T_IPV4:
        b = (const uint8_t *)&slot->ipv4;
        snprintf(buf, sizeof buf, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        break;
    case KRAKEN_T_MAC:
        b = (const uint8_t *)&slot->mac;
        snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                 b[5]);
        break;
    case KRAKEN_T_UUID: {
        static const kraken_uuid zero;
        kraken_uuid_format(slot->uuid != NULL ? slot->uuid : &zero, buf);
        break;
    }
    default: { /* BYTES: base64 from the value layer */
        kraken_value v = KRAKEN_VALUE_INIT;
        char *text = NULL;
        int rc = kraken__slot_to_value(f, type, slot, &v);
        if (rc == 0)
            rc = kraken_value_format(&v, &text);
        kraken_value_clear(&v);
        if (rc != 0)
            return rc;
        *out = cJSON_CreateString(text);
        free(text);
        return *out != NULL ? 0 : out_of_memory();
    }
    }
    *out = cJSON_CreateString(buf);
    return *out != NULL ? 0 : out_of_memory();
}

static int record_to_json(const kraken_record *rec, bool with_type, cJSON **out)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL)
        return out_of_memory();
    if (with_type && cJSON_AddStringToObject(obj, "@type", rec->schema->type_url) == NULL) {
        cJSON_Delete(obj);
        return out_of_memory();
    }
    const struct kraken_schema *s = rec->schema;
    for (size_t i = 0; i < s->n_fields; i++) {
        const kraken_field *f = &s->fields[i];
        if (kraken__slot_is_zero_deep(f, f->type, &rec->slots[i]))
            continue;
        cJSON *item = NULL;
        int rc = slot_to_json(f, f->type, &rec->slots[i], &item);
        if (rc != 0) {
            cJSON_Delete(obj);
            return kraken__err_prefix(rc, "%s.%s", s->name, f->json_name);
        }
        cJSON_AddItemToObject(obj, f->json_name, item);
    }
    *out = obj;
    return 0;
}

static int map_to_json(const kraken_field *f, const kraken_map *map, cJSON **out)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL)
        return out_of_memory();
    for (size_t i = 0; map != NULL && i < map->n; i++) {
        const kraken_map_entry *e = &map->entries[i];
        if (kraken__slot_is_zero_deep(f, f->elem_type, &e->value))
            continue; /* zero entries equal absent ones: leave them out */
        if (!kraken__utf8_valid(e->key, strlen(e->key))) {
            cJSON_Delete(obj);
            return kraken__err(KRAKEN_EINVAL, "map key is not valid UTF-8");
        }
        cJSON *item = NULL;
        int rc = slot_to_json(f, f->elem_type, &e->value, &item);
        if (rc != 0) {
            cJSON_Delete(obj);
            return kraken__err_prefix(rc, "[%s]", e->key);
        }
        cJSON_AddItemToObject(obj, e->key, item);
    }
    *out = obj;
    return 0;
}

static int list_to_json(const kraken_field *f, const kraken_list *list, cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL)
        return out_of_memory();
    size_t n = kraken__list_encoded_count(f, list);
    for (size_t i = 0; i < n; i++) {
        if (f->list_key != KRAKEN_KEY_INDEX && kraken__record_is_empty(list->items[i].rec))
            continue;
        cJSON *item = NULL;
        int rc = slot_to_json(f, f->elem_type, &list->items[i], &item);
        if (rc != 0) {
            cJSON_Delete(arr);
            return kraken__err_prefix(rc, "[%zu]", i);
        }
        cJSON_AddItemToArray(arr, item);
    }
    *out = arr;
    return 0;
}

static int slot_to_json(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                        cJSON **out)
{
    *out = NULL;
    switch (type) {
    case KRAKEN_T_BOOL:
        *out = cJSON_CreateBool(slot->b);
        break;
    case KRAKEN_T_INT32:
        *out = cJSON_CreateNumber((double)slot->i);
        break;
    case KRAKEN_T_UINT32:
        *out = cJSON_CreateNumber((double)slot->u);
        break;
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT64:
        *out = json_int64_string(type == KRAKEN_T_UINT64, slot);
        break;
    case KRAKEN_T_ENUM: {
        const char *name = f->enm != NULL && slot->i >= INT32_MIN && slot->i <= INT32_MAX
                               ? kraken_enum_type_lookup(f->enm, (int32_t)slot->i)
                               : NULL;
        *out = name != NULL ? cJSON_CreateString(name) : cJSON_CreateNumber((double)slot->i);
        break;
    }
    case KRAKEN_T_STRING: {
        const char *s = slot->s != NULL ? slot->s : "";
        if (!kraken__utf8_valid(s, strlen(s)))
            return kraken__err(KRAKEN_EINVAL, "string is not valid UTF-8");
        *out = cJSON_CreateString(s);
        break;
    }
    case KRAKEN_T_BYTES:
    case KRAKEN_T_IPV4:
    case KRAKEN_T_MAC:
    case KRAKEN_T_UUID:
        return text_scalar_to_json(f, type, slot, out);
    case KRAKEN_T_RECORD:
        if (slot->rec == NULL) {
            /* Only list elements get here: an absent record of a known type is {}. */
            *out = f->record != NULL ? cJSON_CreateObject() : cJSON_CreateNull();
            break;
        }
        return record_to_json(slot->rec, f->record == NULL, out);
    case KRAKEN_T_MAP:
        return map_to_json(f, slot->map, out);
    case KRAKEN_T_LIST:
        return list_to_json(f, slot->list, out);
    default:
        return kraken__err(KRAKEN_EINVAL, "type %d has no JSON form", (int)type);
    }
    return *out != NULL ? 0 : out_of_memory();
}

static int json_print(cJSON *root, unsigned flags, char **out)
{
    char *text = (flags & KRAKEN_JSON_PRETTY) ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL)
        return out_of_memory();
    /* cJSON allocates with its hooks (malloc by default); hand out a plain malloc'ed copy. */
    *out = strdup(text);
    cJSON_free(text);
    return *out != NULL ? 0 : out_of_memory();
}

/* ---- internal bridge for value.c ------------------------------------------ */

int kraken__slot_to_json_text(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                              char **out)
{
    if (f == NULL || slot == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__slot_to_json_text: NULL argument");
    *out = NULL;
    cJSON *root = NULL;
    int rc = slot_to_json(f, type, slot, &root);
    if (rc != 0)
        return rc;
    return json_print(root, 0, out);
}

int kraken__slot_from_json_text(const kraken_field *f, kraken_type type, const char *text,
                                size_t len, const char *source, kraken_slot *out)
{
    if (f == NULL || text == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__slot_from_json_text: NULL argument");
    kraken__schemas_init();
    jctx c;
    jctx_init(&c, source);
    cJSON *root = NULL;
    int rc = json_parse(&c, text, len, &root);
    if (rc != 0)
        return rc;
    kraken_slot slot;
    rc = json_to_slot(&c, f, type, root, &slot);
    cJSON_Delete(root);
    if (rc == 0)
        *out = slot;
    return rc;
}

/* ---- nodes ----------------------------------------------------------------- */

static int json_to_node(jctx *c, const cJSON *obj, kraken_node **out)
{
    /* Learn the id first so that every message about this node can name it. */
    const cJSON *id = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, "id") : NULL;
    c->node_id[0] = '\0';
    if (cJSON_IsString(id))
        snprintf(c->node_id, sizeof c->node_id, "%.36s", id->valuestring);
    kraken_record *rec = NULL;
    int rc = json_to_record(c, kraken__node_schema(), obj, &rec);
    if (rc != 0)
        return rc;
    *out = (kraken_node *)rec;
    return 0;
}

static int node_to_json(const kraken_node *node, cJSON **out)
{
    return record_to_json(&node->rec, false, out);
}

int kraken_node_to_json(const kraken_node *node, unsigned flags, char **out)
{
    if (node == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_to_json: NULL argument");
    *out = NULL;
    cJSON *root = NULL;
    int rc = node_to_json(node, &root);
    if (rc != 0)
        return rc;
    return json_print(root, flags, out);
}

int kraken_node_from_json(const char *json, size_t len, const char *source, kraken_node **out)
{
    if (json == NULL || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_from_json: NULL argument");
    *out = NULL;
    kraken__schemas_init();
    jctx c;
    jctx_init(&c, source);
    cJSON *root = NULL;
    int rc = json_parse(&c, json, len, &root);
    if (rc != 0)
        return rc;
    rc = json_to_node(&c, root, out);
    cJSON_Delete(root);
    return rc;
}

int kraken_nodes_to_json(kraken_node *const *nodes, size_t n, unsigned flags, char **out)
{
    if ((nodes == NULL && n > 0) || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_to_json: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (nodes[i] == NULL)
            return kraken__err(KRAKEN_EINVAL, "kraken_nodes_to_json: node %zu is NULL", i);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "nodes");
    if (arr == NULL) {
        cJSON_Delete(root);
        return out_of_memory();
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *item = NULL;
        int rc = node_to_json(nodes[i], &item);
        if (rc != 0) {
            cJSON_Delete(root);
            char id[KRAKEN_UUID_STRLEN + 1];
            return kraken__err_prefix(rc, "node %zu (%s)", i,
                                      kraken_uuid_format(kraken_node_id(nodes[i]), id));
        }
        cJSON_AddItemToArray(arr, item);
    }
    return json_print(root, flags, out);
}

void kraken_nodes_free(kraken_node **nodes, size_t n)
{
    if (nodes == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kraken_node_free(nodes[i]);
    free(nodes);
}

static int json_to_node_list(jctx *c, const cJSON *root, kraken_node ***out, size_t *n_out)
{
    if (!cJSON_IsObject(root))
        return jerr(c, KRAKEN_EPARSE, "expected an object {\"nodes\": [...]}, got %s",
                    json_kind(root));
    const cJSON *arr = NULL;
    for (const cJSON *it = root->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "nodes") != 0)
            return jerr(c, KRAKEN_EPARSE, "unknown member '%s' (expected \"nodes\")", it->string);
        if (arr != NULL)
            return jerr(c, KRAKEN_EPARSE, "\"nodes\" given twice");
        arr = it;
    }
    if (arr != NULL && !cJSON_IsArray(arr) && !cJSON_IsNull(arr))
        return jerr(c, KRAKEN_EPARSE, "\"nodes\" must be an array, got %s", json_kind(arr));
    size_t count = cJSON_IsArray(arr) ? (size_t)cJSON_GetArraySize(arr) : 0;
    kraken_node **nodes = calloc(count > 0 ? count : 1, sizeof *nodes);
    if (nodes == NULL)
        return jerr(c, KRAKEN_ENOMEM, "out of memory");
    size_t n = 0;
    for (const cJSON *it = count > 0 ? arr->child : NULL; it != NULL; it = it->next) {
        c->node_index = (long)n;
        int rc = json_to_node(c, it, &nodes[n]);
        if (rc != 0) {
            kraken_nodes_free(nodes, n);
            return rc;
        }
        n++;
    }
    *out = nodes;
    *n_out = n;
    return 0;
}

int kraken_nodes_from_json(const char *json, size_t len, const char *source, kraken_node ***out,
                           size_t *n_out)
{
    if (json == NULL || out == NULL || n_out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_from_json: NULL argument");
    *out = NULL;
    *n_out = 0;
    kraken__schemas_init();
    jctx c;
    jctx_init(&c, source);
    cJSON *root = NULL;
    int rc = json_parse(&c, json, len, &root);
    if (rc != 0)
        return rc;
    rc = json_to_node_list(&c, root, out, n_out);
    cJSON_Delete(root);
    return rc;
}

int kraken_nodes_load_file(const char *path, kraken_node ***out, size_t *n_out)
{
    if (path == NULL || out == NULL || n_out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_nodes_load_file: NULL argument");
    *out = NULL;
    *n_out = 0;
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
    char *text = NULL;
    int rc = kraken_nodes_to_json(nodes, n, KRAKEN_JSON_PRETTY, &text);
    if (rc != 0)
        return kraken__err_prefix(rc, "%s", path);
    size_t len = strlen(text);
    /* End the file with a newline like any text file; the buffer has room for it
     * after we grow it by one byte. */
    char *with_nl = realloc(text, len + 2);
    if (with_nl == NULL) {
        free(text);
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", path);
    }
    with_nl[len] = '\n';
    with_nl[len + 1] = '\0';
    rc = kraken__write_file_atomic(path, with_nl, len + 1);
    free(with_nl);
    return rc;
}
