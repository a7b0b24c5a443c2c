/*
 * kraken_value: self-describing copies of values, their text forms, and conversion to and
 * from stored slots (with width conversion and range checks).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "core_private.h"

/* ---- type names and enum accessors ---------------------------------------------- */

const char *kraken_type_name(kraken_type type)
{
    static const char *const names[] = {
        [KRAKEN_T_NONE] = "none",         [KRAKEN_T_BOOL] = "bool",
        [KRAKEN_T_INT32] = "int32",       [KRAKEN_T_INT64] = "int64",
        [KRAKEN_T_UINT32] = "uint32",     [KRAKEN_T_UINT64] = "uint64",
        [KRAKEN_T_STRING] = "string",     [KRAKEN_T_BYTES] = "bytes",
        [KRAKEN_T_ENUM] = "enum",         [KRAKEN_T_IPV4] = "IPv4 address",
        [KRAKEN_T_MAC] = "MAC address",   [KRAKEN_T_UUID] = "UUID",
        [KRAKEN_T_RECORD] = "record",     [KRAKEN_T_MAP] = "map",
        [KRAKEN_T_LIST] = "list",
    };
    if ((unsigned)type >= sizeof(names) / sizeof(names[0]))
        return "invalid type";
    return names[type];
}

const char *kraken_enum_type_name(const struct kraken_enum_type *type)
{
    return type ? type->name : NULL;
}

size_t kraken_enum_type_count(const struct kraken_enum_type *type)
{
    return type ? type->n : 0;
}

int kraken_enum_type_member(const struct kraken_enum_type *type, size_t i, const char **name,
                            int32_t *number)
{
    if (!type)
        return kraken__err(KRAKEN_EINVAL, "kraken_enum_type_member: NULL enum type");
    if (i >= type->n)
        return kraken__err(KRAKEN_ENOTFOUND, "enum '%s': no member %zu (it has %zu)", type->name,
                           i, type->n);
    if (name)
        *name = type->members[i].name;
    if (number)
        *number = type->members[i].number;
    return 0;
}

const char *kraken_enum_type_lookup(const struct kraken_enum_type *type, int32_t number)
{
    for (size_t i = 0; type && i < type->n; i++)
        if (type->members[i].number == number)
            return type->members[i].name;
    return NULL;
}

/* ---- values ------------------------------------------------------------------------ */

static bool is_compound(kraken_type t)
{
    return t == KRAKEN_T_RECORD || t == KRAKEN_T_MAP || t == KRAKEN_T_LIST;
}

static void tree_free(struct kraken_tree *t)
{
    if (!t)
        return;
    kraken__slot_free(t->field, t->type, &t->slot);
    free(t);
}

/* A value owning a deep copy of @p slot (described by f, type). */
int kraken__value_tree_new(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                           bool take, kraken_value *out)
{
    struct kraken_tree *t = calloc(1, sizeof(*t));
    if (!t)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    t->field = f;
    t->type = type;
    if (take) {
        t->slot = *slot;
    } else if (kraken__slot_copy(f, type, &t->slot, slot) < 0) {
        free(t);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    out->type = type;
    out->v.tree = t;
    return 0;
}

void kraken_value_clear(kraken_value *value)
{
    if (!value)
        return;
    if (value->type == KRAKEN_T_STRING || value->type == KRAKEN_T_BYTES)
        free(value->v.str.data);
    else if (is_compound(value->type))
        tree_free(value->v.tree);
    *value = (kraken_value)KRAKEN_VALUE_INIT;
}

/* A STRING or BYTES value holding a copy of data[0..len) plus a NUL. */
static int str_value(kraken_type type, const void *data, size_t len, kraken_value *out)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    out->type = type;
    out->v.str.data = copy;
    out->v.str.len = len;
    return 0;
}

int kraken_value_copy(kraken_value *out, const kraken_value *src)
{
    if (!out || !src)
        return kraken__err(KRAKEN_EINVAL, "kraken_value_copy: NULL argument");
    if (src->type == KRAKEN_T_STRING || src->type == KRAKEN_T_BYTES)
        return str_value(src->type, src->v.str.data, src->v.str.len, out);
    if (is_compound(src->type)) {
        const struct kraken_tree *t = src->v.tree;
        if (!t)
            return kraken__err(KRAKEN_EINVAL, "kraken_value_copy: compound value without data");
        return kraken__value_tree_new(t->field, t->type, &t->slot, false, out);
    }
    *out = *src;
    return 0;
}

static bool tree_equal(const struct kraken_tree *a, const struct kraken_tree *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type)
        return false;
    if (a->type != KRAKEN_T_RECORD &&
        (a->field->elem_type != b->field->elem_type || a->field->enm != b->field->enm))
        return false;
    return kraken__slot_equal(a->field, a->type, &a->slot, &b->slot);
}

bool kraken_value_equal(const kraken_value *a, const kraken_value *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case KRAKEN_T_NONE:
        return true;
    case KRAKEN_T_BOOL:
        return a->v.b == b->v.b;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return a->v.i == b->v.i;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return a->v.u == b->v.u;
    case KRAKEN_T_STRING:
    case KRAKEN_T_BYTES:
        return a->v.str.len == b->v.str.len &&
               (a->v.str.len == 0 || memcmp(a->v.str.data, b->v.str.data, a->v.str.len) == 0);
    case KRAKEN_T_IPV4:
        return memcmp(a->v.ipv4, b->v.ipv4, 4) == 0;
    case KRAKEN_T_MAC:
        return memcmp(a->v.mac, b->v.mac, 6) == 0;
    case KRAKEN_T_UUID:
        return kraken_uuid_compare(&a->v.uuid, &b->v.uuid) == 0;
    default:
        return tree_equal(a->v.tree, b->v.tree);
    }
}

bool kraken_value_is_zero(const kraken_value *value)
{
    static const uint8_t zeros[6];
    if (!value)
        return true;
    switch (value->type) {
    case KRAKEN_T_BOOL:
        return !value->v.b;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return value->v.i == 0;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return value->v.u == 0;
    case KRAKEN_T_STRING:
    case KRAKEN_T_BYTES:
        return value->v.str.len == 0;
    case KRAKEN_T_IPV4:
        return memcmp(value->v.ipv4, zeros, 4) == 0;
    case KRAKEN_T_MAC:
        return memcmp(value->v.mac, zeros, 6) == 0;
    case KRAKEN_T_UUID:
        return kraken_uuid_is_zero(&value->v.uuid);
    case KRAKEN_T_RECORD:
    case KRAKEN_T_MAP:
    case KRAKEN_T_LIST:
        return !value->v.tree ||
               kraken__slot_is_zero_deep(value->v.tree->field, value->type, &value->v.tree->slot);
    default:
        return true;
    }
}

kraken_value kraken_value_bool(bool b)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = KRAKEN_T_BOOL;
    v.v.b = b;
    return v;
}

kraken_value kraken_value_int(kraken_type type, int64_t i)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = type;
    v.v.i = i;
    return v;
}

kraken_value kraken_value_uint(kraken_type type, uint64_t u)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = type;
    v.v.u = u;
    return v;
}

kraken_value kraken_value_string(const char *s)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    if (s && str_value(KRAKEN_T_STRING, s, strlen(s), &v) < 0)
        v = (kraken_value)KRAKEN_VALUE_INIT;
    return v;
}

kraken_value kraken_value_uuid(const kraken_uuid *id)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = KRAKEN_T_UUID;
    if (id)
        v.v.uuid = *id;
    return v;
}

/* ---- formatting ------------------------------------------------------------------ */

static int format_base64(const char *data, size_t len, char **out)
{
    size_t size = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *buf = malloc(size);
    if (!buf)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    sodium_bin2base64(buf, size, (const unsigned char *)data, len,
                      sodium_base64_VARIANT_ORIGINAL);
    *out = buf;
    return 0;
}

/* Text form of a scalar value; compound values have a JSON text form (json.c). */
int kraken__value_format_scalar(const kraken_value *value, char **out)
{
    if (!value || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken_value_format: NULL argument");
    char buf[64];
    const char *name;
    const uint8_t *b;
    switch (value->type) {
    case KRAKEN_T_NONE:
        buf[0] = '\0';
        break;
    case KRAKEN_T_BOOL:
        strcpy(buf, value->v.b ? "true" : "false");
        break;
    case KRAKEN_T_ENUM:
        name = kraken_enum_type_lookup(value->enum_type, (int32_t)value->v.i);
        if (name && value->v.i >= INT32_MIN && value->v.i <= INT32_MAX) {
            *out = strdup(name);
            return *out ? 0 : kraken__err(KRAKEN_ENOMEM, "out of memory");
        }
        /* unknown member: show the number */
        __attribute__((fallthrough));
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
        snprintf(buf, sizeof(buf), "%" PRId64, value->v.i);
        break;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        snprintf(buf, sizeof(buf), "%" PRIu64, value->v.u);
        break;
    case KRAKEN_T_IPV4:
        b = value->v.ipv4;
        snprintf(buf, sizeof(buf), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        break;
    case KRAKEN_T_MAC:
        b = value->v.mac;
        snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                 b[5]);
        break;
    case KRAKEN_T_UUID:
        kraken_uuid_format(&value->v.uuid, buf);
        break;
    case KRAKEN_T_STRING: {
        kraken_value tmp = KRAKEN_VALUE_INIT;
        int rc = str_value(KRAKEN_T_STRING, value->v.str.data, value->v.str.len, &tmp);
        if (rc == 0)
            *out = tmp.v.str.data;
        return rc;
    }
    case KRAKEN_T_BYTES:
        return format_base64(value->v.str.data, value->v.str.len, out);
    default:
        return kraken__err(KRAKEN_EINVAL, "kraken_value_format: invalid type %d",
                           (int)value->type);
    }
    *out = strdup(buf);
    return *out ? 0 : kraken__err(KRAKEN_ENOMEM, "out of memory");
}

/* ---- slot <-> value ----------------------------------------------------------------- */

int kraken__slot_to_value(const kraken_field *f, kraken_type type, const kraken_slot *slot,
                          kraken_value *out)
{
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    switch (type) {
    case KRAKEN_T_BOOL:
        *out = kraken_value_bool(slot->b);
        return 0;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
        *out = kraken_value_int(type, slot->i);
        return 0;
    case KRAKEN_T_ENUM:
        *out = kraken_value_int(type, slot->i);
        out->enum_type = f ? f->enm : NULL;
        return 0;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        *out = kraken_value_uint(type, slot->u);
        return 0;
    case KRAKEN_T_IPV4:
        out->type = type;
        memcpy(out->v.ipv4, &slot->ipv4, 4);
        return 0;
    case KRAKEN_T_MAC:
        out->type = type;
        memcpy(out->v.mac, &slot->mac, 6);
        return 0;
    case KRAKEN_T_UUID:
        *out = kraken_value_uuid(slot->uuid);
        return 0;
    case KRAKEN_T_STRING:
        return str_value(type, slot->s ? slot->s : "", slot->s ? strlen(slot->s) : 0, out);
    case KRAKEN_T_BYTES:
        return str_value(type, slot->bytes ? (const char *)slot->bytes->data : "",
                         slot->bytes ? slot->bytes->len : 0, out);
    case KRAKEN_T_RECORD:
    case KRAKEN_T_MAP:
    case KRAKEN_T_LIST:
        if (!f)
            return kraken__err(KRAKEN_EINVAL, "compound value without a field");
        return kraken__value_tree_new(f, type, slot, false, out);
    default:
        return kraken__err(KRAKEN_EINVAL, "cannot read a value of type %d", (int)type);
    }
}

/* The URL (or field) a message is about, as its prefix. URLs carry caller text (map keys):
 * one that kraken__quote() would change (a control character, a byte that is not UTF-8, a
 * quote or backslash, or too long) is shown quoted and escaped, so the message stays on one
 * line. One message uses it once: the buffer is per thread. */
static const char *where(const kraken_field *f, const char *url)
{
    static __thread char quoted[512];
    if (!url)
        return f ? f->name : "value";
    size_t len = strlen(url);
    kraken__quote(quoted, sizeof quoted, url, len);
    /* nothing escaped or cut: the URL as it is */
    bool plain = strlen(quoted) == len + 2 && memcmp(quoted + 1, url, len) == 0;
    return plain ? url : quoted;
}

/* Name of the type expected by (f, type), e.g. "enum PhysState" or "record IPv4.IPv4". */
static const char *expected_name(const kraken_field *f, kraken_type type, char *buf, size_t size)
{
    if (type == KRAKEN_T_ENUM && f && f->enm)
        snprintf(buf, size, "enum %s", f->enm->name);
    else if (type == KRAKEN_T_RECORD && f && f->record)
        snprintf(buf, size, "record %s", f->record->name);
    else if (f && (type == KRAKEN_T_MAP || type == KRAKEN_T_LIST))
        snprintf(buf, size, "%s of %s", kraken_type_name(type), kraken_type_name(f->elem_type));
    else
        snprintf(buf, size, "%s", kraken_type_name(type));
    return buf;
}

static int type_error(const kraken_field *f, kraken_type type, const kraken_value *v,
                      const char *url)
{
    char buf[160];
    return kraken__err(KRAKEN_ETYPE, "%s: expected %s, got %s", where(f, url),
                       expected_name(f, type, buf, sizeof(buf)), kraken_type_name(v->type));
}

static bool is_int_type(kraken_type t)
{
    return t >= KRAKEN_T_INT32 && t <= KRAKEN_T_UINT64;
}

static bool is_signed(kraken_type t)
{
    return t == KRAKEN_T_INT32 || t == KRAKEN_T_INT64 || t == KRAKEN_T_ENUM;
}

/* Convert an integer value to the target width, checking its range. */
static int int_to_slot(const kraken_field *f, kraken_type type, const kraken_value *v,
                       kraken_slot *out, const char *url)
{
    bool neg = is_signed(v->type) && v->v.i < 0;
    uint64_t mag = neg ? 0 : is_signed(v->type) ? (uint64_t)v->v.i : v->v.u;
    bool ok;
    switch (type) {
    case KRAKEN_T_INT32:
        ok = neg ? v->v.i >= INT32_MIN : mag <= INT32_MAX;
        break;
    case KRAKEN_T_INT64:
        ok = neg || mag <= INT64_MAX;
        break;
    case KRAKEN_T_UINT32:
        ok = !neg && mag <= UINT32_MAX;
        break;
    default:
        ok = !neg;
        break;
    }
    if (!ok) {
        char num[32];
        if (neg)
            snprintf(num, sizeof(num), "%" PRId64, v->v.i);
        else
            snprintf(num, sizeof(num), "%" PRIu64, mag);
        return kraken__err(KRAKEN_ETYPE, "%s: %s is out of range for %s", where(f, url), num,
                           kraken_type_name(type));
    }
    if (type == KRAKEN_T_UINT32 || type == KRAKEN_T_UINT64)
        out->u = mag;
    else
        out->i = neg ? v->v.i : (int64_t)mag;
    return 0;
}

static int enum_to_slot(const kraken_field *f, const kraken_value *v, kraken_slot *out,
                        const char *url)
{
    const struct kraken_enum_type *e = f ? f->enm : NULL;
    if (v->type == KRAKEN_T_ENUM && v->enum_type && e && v->enum_type != e)
        return kraken__err(KRAKEN_ETYPE, "%s: expected enum %s, got a member of enum %s",
                           where(f, url), e->name, v->enum_type->name);
    if (v->type != KRAKEN_T_ENUM && !is_int_type(v->type))
        return type_error(f, KRAKEN_T_ENUM, v, url);
    kraken_slot tmp;
    int rc = int_to_slot(f, KRAKEN_T_INT32, v, &tmp, url);
    if (rc < 0)
        return rc;
    if (e && !kraken_enum_type_lookup(e, (int32_t)tmp.i))
        return kraken__err(KRAKEN_ETYPE, "%s: %" PRId64 " is not a member of enum %s",
                           where(f, url), tmp.i, e->name);
    out->i = tmp.i;
    return 0;
}

/* The tree's slot must be of the same shape as (f, type) for a deep copy to be stored. */
static int tree_to_slot(const kraken_field *f, kraken_type type, const kraken_value *v,
                        kraken_slot *out, const char *url)
{
    const struct kraken_tree *t = v->v.tree;
    if (v->type != type || !t)
        return type_error(f, type, v, url);
    if (type == KRAKEN_T_RECORD) {
        const kraken_record *rec = t->slot.rec;
        if (rec && f && f->record && rec->schema != f->record)
            return kraken__err(KRAKEN_ETYPE, "%s: expected record %s, got record %s",
                               where(f, url), f->record->name, rec->schema->name);
    } else if (!f || t->field->elem_type != f->elem_type || t->field->enm != f->enm ||
               (f->record && t->field->record != f->record)) {
        char a[160], b[160];
        return kraken__err(KRAKEN_ETYPE, "%s: expected %s, got %s", where(f, url),
                           expected_name(f, type, a, sizeof(a)),
                           expected_name(t->field, type, b, sizeof(b)));
    }
    if (kraken__slot_copy(t->field, type, out, &t->slot) < 0)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", where(f, url));
    return 0;
}

int kraken__value_to_slot(const kraken_field *f, kraken_type type, const kraken_value *v,
                          kraken_slot *out, const char *url_for_errors)
{
    const char *url = url_for_errors;
    memset(out, 0, sizeof(*out));
    if (!v || v->type == KRAKEN_T_NONE)
        return 0;
    switch (type) {
    case KRAKEN_T_BOOL:
        if (v->type != KRAKEN_T_BOOL)
            return type_error(f, type, v, url);
        out->b = v->v.b;
        return 0;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        if (!is_int_type(v->type))
            return type_error(f, type, v, url);
        return int_to_slot(f, type, v, out, url);
    case KRAKEN_T_ENUM:
        return enum_to_slot(f, v, out, url);
    case KRAKEN_T_STRING:
        if (v->type != KRAKEN_T_STRING)
            return type_error(f, type, v, url);
        /* Both wire forms require UTF-8 without NUL: refuse here, not at the next decode. */
        if (!kraken__utf8_valid(v->v.str.data, v->v.str.len))
            return kraken__err(KRAKEN_ETYPE, "%s: string is not valid UTF-8", where(f, url));
        if (v->v.str.len && !(out->s = kraken__strndup(v->v.str.data, v->v.str.len)))
            return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", where(f, url));
        return 0;
    case KRAKEN_T_BYTES:
        if (v->type != KRAKEN_T_BYTES && v->type != KRAKEN_T_STRING)
            return type_error(f, type, v, url);
        if (v->v.str.len) {
            out->bytes = malloc(sizeof(struct kraken_blob) + v->v.str.len);
            if (!out->bytes)
                return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", where(f, url));
            out->bytes->len = v->v.str.len;
            memcpy(out->bytes->data, v->v.str.data, v->v.str.len);
        }
        return 0;
    case KRAKEN_T_IPV4:
        if (v->type != type)
            return type_error(f, type, v, url);
        memcpy(&out->ipv4, v->v.ipv4, 4);
        return 0;
    case KRAKEN_T_MAC:
        if (v->type != type)
            return type_error(f, type, v, url);
        memcpy(&out->mac, v->v.mac, 6);
        return 0;
    case KRAKEN_T_UUID:
        if (v->type != type)
            return type_error(f, type, v, url);
        if (!kraken_uuid_is_zero(&v->v.uuid)) {
            if (!(out->uuid = malloc(sizeof(kraken_uuid))))
                return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", where(f, url));
            *out->uuid = v->v.uuid;
        }
        return 0;
    case KRAKEN_T_RECORD:
    case KRAKEN_T_MAP:
    case KRAKEN_T_LIST:
        return tree_to_slot(f, type, v, out, url);
    default:
        return kraken__err(KRAKEN_EINVAL, "%s: invalid field type %d", where(f, url), (int)type);
    }
}

/* ---- text -> value ----------------------------------------------------------------- */

/* Messages quote input text escaped (kraken__quote): always one line, no raw control bytes. */
static int parse_error(const char *what, const char *text)
{
    char q[KRAKEN_QUOTE_SIZE];
    return kraken__err(KRAKEN_EPARSE, "invalid %s %s", what,
                       kraken__quote(q, sizeof q, text, strlen(text)));
}

/* Strict decimal: optional '-', digits only, no spaces or '+'. */
static int parse_int(kraken_type type, const char *text, kraken_value *out)
{
    const char *p = text;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!isdigit((unsigned char)*p))
        return parse_error(kraken_type_name(type), text);
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return parse_error(kraken_type_name(type), text);
    errno = 0;
    kraken_value v = KRAKEN_VALUE_INIT;
    if (neg) {
        v.type = KRAKEN_T_INT64;
        v.v.i = strtoll(text, NULL, 10);
    } else {
        v.type = KRAKEN_T_UINT64;
        v.v.u = strtoull(p, NULL, 10);
    }
    if (errno == ERANGE) {
        char q[KRAKEN_QUOTE_SIZE];
        return kraken__err(KRAKEN_ETYPE, "%s is out of range for %s",
                           kraken__quote(q, sizeof q, text, strlen(text)), kraken_type_name(type));
    }
    kraken_slot slot;
    int rc = int_to_slot(NULL, type, &v, &slot, NULL);
    if (rc < 0)
        return rc;
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    out->type = type;
    if (type == KRAKEN_T_UINT32 || type == KRAKEN_T_UINT64)
        out->v.u = slot.u;
    else
        out->v.i = slot.i;
    return 0;
}

static int parse_enum(const kraken_field *f, const char *text, kraken_value *out)
{
    const struct kraken_enum_type *e = f ? f->enm : NULL;
    if (!e)
        return kraken__err(KRAKEN_EINVAL, "enum field without an enum type");
    const kraken_enum_member *m = kraken__enum_by_name(e, text, strlen(text));
    int64_t number;
    if (m) {
        number = m->number;
    } else if (*text == '-' || isdigit((unsigned char)*text)) {
        kraken_value n;
        int rc = parse_int(KRAKEN_T_INT32, text, &n);
        if (rc < 0)
            return rc;
        if (!kraken_enum_type_lookup(e, (int32_t)n.v.i))
            return kraken__err(KRAKEN_ETYPE, "%s is not a member of enum %s", text, e->name);
        number = n.v.i;
    } else {
        char q[KRAKEN_QUOTE_SIZE];
        return kraken__err(KRAKEN_ETYPE, "%s is not a member of enum %s",
                           kraken__quote(q, sizeof q, text, strlen(text)), e->name);
    }
    *out = kraken_value_int(KRAKEN_T_ENUM, number);
    out->enum_type = e;
    return 0;
}

static int parse_ipv4(const char *text, kraken_value *out)
{
    uint8_t b[4];
    const char *p = text;
    for (int i = 0; i < 4; i++) {
        unsigned n = 0, digits = 0;
        while (isdigit((unsigned char)*p) && digits < 4) {
            n = n * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 3 || n > 255 || *p != (i < 3 ? '.' : '\0'))
            return parse_error("IPv4 address", text);
        b[i] = (uint8_t)n;
        if (i < 3)
            p++;
    }
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    out->type = KRAKEN_T_IPV4;
    memcpy(out->v.ipv4, b, 4);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "aa:bb:cc:dd:ee:ff" or with '-'; one separator throughout. */
static int parse_mac(const char *text, kraken_value *out)
{
    if (strlen(text) != 17)
        return parse_error("MAC address", text);
    char sep = text[2];
    if (sep != ':' && sep != '-')
        return parse_error("MAC address", text);
    uint8_t b[6];
    for (int i = 0; i < 6; i++) {
        const char *p = text + 3 * i;
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0 || (i < 5 && p[2] != sep))
            return parse_error("MAC address", text);
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    out->type = KRAKEN_T_MAC;
    memcpy(out->v.mac, b, 6);
    return 0;
}

static int parse_bool(const char *text, kraken_value *out)
{
    if (strcasecmp(text, "true") == 0)
        *out = kraken_value_bool(true);
    else if (strcasecmp(text, "false") == 0)
        *out = kraken_value_bool(false);
    else
        return parse_error("bool (true/false)", text);
    return 0;
}

/* Standard base64 as protobuf's JSON mapping writes it; also accept URL-safe and unpadded. */
static int parse_base64(const char *text, kraken_value *out)
{
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
                                   sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                   sodium_base64_VARIANT_URLSAFE,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    size_t tlen = strlen(text);
    unsigned char *buf = malloc(tlen / 4 * 3 + 3);
    if (!buf)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        size_t len;
        const char *end;
        if (sodium_base642bin(buf, tlen / 4 * 3 + 3, text, tlen, NULL, &len, &end,
                              variants[i]) == 0 &&
            end == text + tlen) {
            int rc = str_value(KRAKEN_T_BYTES, buf, len, out);
            free(buf);
            return rc;
        }
    }
    free(buf);
    return parse_error("base64 bytes", text);
}

int kraken__value_parse_scalar(const kraken_field *f, kraken_type type, const char *text,
                               kraken_value *out)
{
    if (!text || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken__value_parse: NULL argument");
    switch (type) {
    case KRAKEN_T_BOOL:
        return parse_bool(text, out);
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return parse_int(type, text, out);
    case KRAKEN_T_ENUM:
        return parse_enum(f, text, out);
    case KRAKEN_T_STRING:
        return str_value(type, text, strlen(text), out);
    case KRAKEN_T_BYTES:
        return parse_base64(text, out);
    case KRAKEN_T_IPV4:
        return parse_ipv4(text, out);
    case KRAKEN_T_MAC:
        return parse_mac(text, out);
    case KRAKEN_T_UUID: {
        kraken_uuid id;
        if (kraken_uuid_parse(&id, text) < 0)
            return parse_error("UUID", text);
        *out = kraken_value_uuid(&id);
        return 0;
    }
    default:
        return kraken__err(KRAKEN_EINVAL, "cannot parse a value of type %s",
                           kraken_type_name(type));
    }
}
