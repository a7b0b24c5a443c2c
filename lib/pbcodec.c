/*
 * pbcodec.c: nodes <-> protobuf bytes (SPEC 1.5), driven by the run-time schemas.
 *
 * The wire format is what protoc would produce for proto/kraken.proto plus a
 * .proto per schema: fields in number order, zero scalars omitted, numeric
 * lists packed, map<string,T> as repeated {1: key, 2: value} entries, UUID /
 * IPv4 / MAC as 16 / 4 / 6 byte strings, and polymorphic records (extensions,
 * service configs) as Any {1: type_url, 2: record bytes}.
 *
 * Encoding makes two passes over the node: the first computes the length of
 * every nested message (pre-order, into a size list), the second writes into
 * one exactly sized buffer with nanopb's stream primitives. The traversal
 * order of both passes must match; each length-delimited message takes one
 * entry of the size list.
 *
 * Decoding uses nanopb's input stream over the caller's buffer, builds the
 * node aside and frees it on the first error. Byte offsets in messages are
 * relative to the start of the input (buffer streams keep the read position
 * in stream->state).
 */
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_private.h"

#define PB_ORDER_INLINE 64

/* ---- shared helpers ---------------------------------------------------------- */

static bool is_varint_type(kraken_type t)
{
    switch (t) {
    case KRAKEN_T_BOOL:
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
    case KRAKEN_T_ENUM:
        return true;
    default:
        return false;
    }
}

static pb_wire_type_t wire_type_of(kraken_type t)
{
    return is_varint_type(t) ? PB_WT_VARINT : PB_WT_STRING;
}

/* Fields in number order. Schemas are normally declared in number order, so the
 * common case needs no array; otherwise @p buf (or a heap array) receives the order. */
typedef struct field_order {
    size_t n;
    const size_t *index; /* NULL: identity */
    size_t *heap;
    size_t buf[PB_ORDER_INLINE];
} field_order;

/* Schemas are immutable and never freed, so "is sorted" can be remembered by address. */
static _Thread_local const struct kraken_schema *sorted_schemas[16];

static int field_order_init(field_order *o, const struct kraken_schema *s)
{
    o->n = s->n_fields;
    o->index = NULL;
    o->heap = NULL;
    size_t slot = ((uintptr_t)s >> 4) % 16;
    if (sorted_schemas[slot] == s)
        return 0;
    bool sorted = true;
    for (size_t i = 1; i < s->n_fields && sorted; i++)
        sorted = s->fields[i - 1].number < s->fields[i].number;
    if (sorted) {
        sorted_schemas[slot] = s;
        return 0;
    }
    size_t *idx = o->buf;
    if (s->n_fields > PB_ORDER_INLINE) {
        idx = o->heap = malloc(s->n_fields * sizeof *idx);
        if (idx == NULL)
            return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < s->n_fields; i++) {
        size_t j = i;
        while (j > 0 && s->fields[idx[j - 1]].number > s->fields[i].number) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    o->index = idx;
    return 0;
}

static size_t field_order_at(const field_order *o, size_t k)
{
    return o->index != NULL ? o->index[k] : k;
}

static void field_order_done(field_order *o) { free(o->heap); }

/* ---- encoder, pass 1: sizes ---------------------------------------------------- */

typedef struct penc {
    size_t *sizes; /* one per length-delimited nested message, pre-order */
    size_t n, cap;
    size_t cursor; /* pass 2 read position */
    bool failed;   /* pass 1 hit an error; rc holds it */
    int rc;
    size_t inline_sizes[32];
} penc;

/* Bytes a protobuf varint of @p v takes (shared with the sync wire code). */
size_t kraken__varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t tag_size(uint32_t number) { return kraken__varint_size((uint64_t)number << 3); }

static size_t ld_size(size_t body) { return kraken__varint_size(body) + body; }

static void penc_fail(penc *e, int rc)
{
    if (!e->failed) {
        e->failed = true;
        e->rc = rc;
    }
}

/* Reserve the next size entry; filled in once the body is measured. */
static size_t size_reserve(penc *e)
{
    if (e->n == e->cap) {
        size_t cap = e->cap * 2;
        size_t *grown;
        if (e->sizes == e->inline_sizes) {
            grown = malloc(cap * sizeof *grown);
            if (grown != NULL)
                memcpy(grown, e->sizes, e->n * sizeof *grown);
        } else {
            grown = realloc(e->sizes, cap * sizeof *grown);
        }
        if (grown == NULL) {
            penc_fail(e, kraken__err(KRAKEN_ENOMEM, "out of memory encoding node"));
            return SIZE_MAX;
        }
        e->sizes = grown;
        e->cap = cap;
    }
    e->sizes[e->n] = 0;
    return e->n++;
}

static void size_set(penc *e, size_t idx, size_t size)
{
    if (idx != SIZE_MAX)
        e->sizes[idx] = size;
}

/* Marks a size entry whose record (or map entry, keyed element) is left out because it
 * carries nothing: zero values count as absent, so they are not written. */
#define OMITTED SIZE_MAX

static size_t size_record_body(penc *e, const kraken_record *rec, int depth);

/* Drop what was reserved after @p idx and mark idx omitted. */
static void size_omit(penc *e, size_t idx)
{
    if (idx == SIZE_MAX)
        return;
    e->n = idx + 1;
    e->sizes[idx] = OMITTED;
}

/* A non-NULL record as a length-delimited value (an Any for polymorphic fields).
 * Reserves one entry (two for an Any); *idx gets the first, *empty tells whether the
 * record itself has no content. Returns the size including the length prefix. */
static size_t size_embedded_record(penc *e, const kraken_field *f, const kraken_record *rec,
                                   int depth, size_t *idx, bool *empty)
{
    *idx = size_reserve(e);
    size_t body;
    if (f->record == NULL) {
        /* Any { 1: type_url, 2: record } */
        size_t tlen = strlen(rec->schema->type_url);
        size_t vidx = size_reserve(e);
        size_t vbody = size_record_body(e, rec, depth + 1);
        if (vbody == 0)
            e->n = vidx + 1; /* no value field is written, so nothing inside it is walked */
        size_set(e, vidx, vbody);
        body = 1 + ld_size(tlen) + (vbody > 0 ? 1 + ld_size(vbody) : 0);
        *empty = (vbody == 0);
    } else {
        body = size_record_body(e, rec, depth + 1);
        *empty = (body == 0);
    }
    size_set(e, *idx, body);
    return ld_size(body);
}

/* Size of one value (without its tag), length prefix included for strings.
 * Records here are index-list elements: always written, even when empty. */
static size_t size_value(penc *e, const kraken_field *f, kraken_type type, const kraken_slot *slot,
                         int depth)
{
    size_t idx;
    bool empty;
    switch (type) {
    case KRAKEN_T_BOOL:
        return 1;
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
        return kraken__varint_size((uint64_t)slot->i);
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return kraken__varint_size(slot->u);
    case KRAKEN_T_STRING:
        return ld_size(slot->s != NULL ? strlen(slot->s) : 0);
    case KRAKEN_T_BYTES:
        return ld_size(slot->bytes != NULL ? slot->bytes->len : 0);
    case KRAKEN_T_UUID:
        return 1 + 16;
    case KRAKEN_T_IPV4:
        return 1 + 4;
    case KRAKEN_T_MAC:
        return 1 + 6;
    case KRAKEN_T_RECORD:
        if (slot->rec == NULL) {
            /* an absent element of a known type is an empty message; a typed one has no type */
            if (f->record == NULL) {
                penc_fail(e, kraken__err(KRAKEN_EINVAL,
                                         "field '%s': typed record element without a schema",
                                         f->name));
                return 0;
            }
            size_set(e, size_reserve(e), 0);
            return 1;
        }
        return size_embedded_record(e, f, slot->rec, depth, &idx, &empty);
    default:
        penc_fail(e, kraken__err(KRAKEN_EINVAL, "field '%s': type %d cannot be encoded", f->name,
                                 (int)type));
        return 0;
    }
}

static size_t size_map(penc *e, const kraken_field *f, const kraken_map *m, int depth)
{
    size_t total = 0, tsize = tag_size(f->number);
    for (size_t i = 0; m != NULL && i < m->n; i++) {
        const kraken_map_entry *ent = &m->entries[i];
        size_t klen = strlen(ent->key);
        size_t body = (klen > 0 ? 1 + ld_size(klen) : 0) + 1;
        size_t idx;
        if (f->elem_type == KRAKEN_T_RECORD) {
            if (ent->value.rec == NULL)
                continue;
            idx = size_reserve(e);
            size_t vidx;
            bool empty;
            body += size_embedded_record(e, f, ent->value.rec, depth, &vidx, &empty);
            if (empty) {
                size_omit(e, idx); /* zero entries equal absent ones */
                continue;
            }
        } else {
            if (kraken__slot_is_zero(f->elem_type, &ent->value))
                continue;
            idx = size_reserve(e);
            body += size_value(e, f, f->elem_type, &ent->value, depth);
        }
        size_set(e, idx, body);
        total += tsize + ld_size(body);
    }
    return total;
}

static size_t size_list(penc *e, const kraken_field *f, const kraken_list *l, int depth)
{
    size_t tsize = tag_size(f->number);
    if (f->list_key != KRAKEN_KEY_INDEX) {
        /* Keyed records: empty ones equal absent ones, except extensions (KEY_TYPE): their
         * type is information, and the original sends an Any with an empty value for a
         * PXE.Client whose fields are all zero. */
        size_t total = 0;
        for (size_t i = 0; l != NULL && i < l->n; i++) {
            if (l->items[i].rec == NULL)
                continue;
            size_t idx;
            bool empty;
            size_t size = size_embedded_record(e, f, l->items[i].rec, depth, &idx, &empty);
            if (empty && f->list_key != KRAKEN_KEY_TYPE)
                size_omit(e, idx);
            else
                total += tsize + size;
        }
        return total;
    }
    size_t n = kraken__list_encoded_count(f, l);
    if (n == 0)
        return 0;
    if (is_varint_type(f->elem_type)) {
        size_t idx = size_reserve(e);
        size_t body = 0;
        for (size_t i = 0; i < n; i++)
            body += size_value(e, f, f->elem_type, &l->items[i], depth);
        size_set(e, idx, body);
        return tsize + ld_size(body);
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += tsize + size_value(e, f, f->elem_type, &l->items[i], depth);
    return total;
}

static size_t size_record_body(penc *e, const kraken_record *rec, int depth)
{
    const struct kraken_schema *s = rec->schema;
    if (depth >= KRAKEN_CODEC_MAX_DEPTH) {
        penc_fail(e, kraken__err(KRAKEN_ELIMIT, "%s: records nested more than %d levels", s->name,
                                 KRAKEN_CODEC_MAX_DEPTH));
        return 0;
    }
    field_order o;
    int rc = field_order_init(&o, s);
    if (rc != 0) {
        penc_fail(e, rc);
        return 0;
    }
    size_t total = 0;
    for (size_t k = 0; k < o.n && !e->failed; k++) {
        size_t i = field_order_at(&o, k);
        const kraken_field *f = &s->fields[i];
        const kraken_slot *slot = &rec->slots[i];
        if (f->type == KRAKEN_T_MAP) {
            total += size_map(e, f, slot->map, depth);
        } else if (f->type == KRAKEN_T_LIST) {
            total += size_list(e, f, slot->list, depth);
        } else if (f->type == KRAKEN_T_RECORD) {
            if (slot->rec == NULL)
                continue;
            size_t idx;
            bool empty;
            size_t size = size_embedded_record(e, f, slot->rec, depth, &idx, &empty);
            if (empty)
                size_omit(e, idx); /* an empty record equals an absent one */
            else
                total += tag_size(f->number) + size;
        } else if (!kraken__slot_is_zero(f->type, slot)) {
            total += tag_size(f->number) + size_value(e, f, f->type, slot, depth);
        }
    }
    field_order_done(&o);
    return total;
}

/* ---- encoder, pass 2: bytes ------------------------------------------------------ */

static size_t size_next(penc *e) { return e->sizes[e->cursor++]; }

/* Pass 1 decided to leave this record out: consume its mark. */
static bool size_skip_omitted(penc *e)
{
    if (e->sizes[e->cursor] != OMITTED)
        return false;
    e->cursor++;
    return true;
}

/* Writes go through nanopb's buffer stream. A field's key and its varint value (or
 * length prefix) are formatted together and written with one pb_write(): per-call
 * overhead dominates the cost of encoding small fields. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static bool emit_key_varint(pb_ostream_t *s, uint32_t number, pb_wire_type_t wt, uint64_t v)
{
    uint8_t buf[20];
    size_t n = put_varint(buf, ((uint64_t)number << 3) | (uint64_t)wt);
    n += put_varint(buf + n, v);
    return pb_write(s, buf, n);
}

static bool emit_bytes(pb_ostream_t *s, uint32_t number, const void *data, size_t len)
{
    return emit_key_varint(s, number, PB_WT_STRING, len) &&
           (len == 0 || pb_write(s, (const pb_byte_t *)data, len));
}

static bool write_record_body(penc *e, pb_ostream_t *s, const kraken_record *rec);

/* Key, length and body of a record (an Any for polymorphic fields). */
static bool write_embedded_record(penc *e, pb_ostream_t *s, uint32_t number, const kraken_field *f,
                                  const kraken_record *rec)
{
    if (!emit_key_varint(s, number, PB_WT_STRING, size_next(e)))
        return false;
    if (f->record != NULL)
        return write_record_body(e, s, rec);
    const char *url = rec->schema->type_url;
    size_t vbody = size_next(e);
    if (!emit_bytes(s, 1, url, strlen(url)))
        return false;
    if (vbody == 0)
        return true;
    return emit_key_varint(s, 2, PB_WT_STRING, vbody) && write_record_body(e, s, rec);
}

static uint64_t varint_of(kraken_type type, const kraken_slot *slot)
{
    switch (type) {
    case KRAKEN_T_BOOL:
        return slot->b ? 1 : 0;
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return slot->u;
    default: /* INT32, INT64, ENUM: negative numbers take 10 bytes, as in protobuf */
        return (uint64_t)slot->i;
    }
}

/* One value with its key. */
static bool write_field_value(penc *e, pb_ostream_t *s, uint32_t number, const kraken_field *f,
                              kraken_type type, const kraken_slot *slot)
{
    static const uint8_t zero16[16];
    switch (type) {
    case KRAKEN_T_BOOL:
    case KRAKEN_T_INT32:
    case KRAKEN_T_INT64:
    case KRAKEN_T_ENUM:
    case KRAKEN_T_UINT32:
    case KRAKEN_T_UINT64:
        return emit_key_varint(s, number, PB_WT_VARINT, varint_of(type, slot));
    case KRAKEN_T_STRING:
        return emit_bytes(s, number, slot->s != NULL ? slot->s : "",
                          slot->s != NULL ? strlen(slot->s) : 0);
    case KRAKEN_T_BYTES:
        return slot->bytes != NULL ? emit_bytes(s, number, slot->bytes->data, slot->bytes->len)
                                   : emit_bytes(s, number, zero16, 0);
    case KRAKEN_T_UUID:
        return emit_bytes(s, number, slot->uuid != NULL ? slot->uuid->bytes : zero16, 16);
    case KRAKEN_T_IPV4:
        return emit_bytes(s, number, &slot->ipv4, 4);
    case KRAKEN_T_MAC:
        return emit_bytes(s, number, &slot->mac, 6);
    case KRAKEN_T_RECORD:
        if (slot->rec == NULL)
            return emit_key_varint(s, number, PB_WT_STRING, size_next(e));
        return write_embedded_record(e, s, number, f, slot->rec);
    default:
        return false;
    }
}

static bool write_map(penc *e, pb_ostream_t *s, const kraken_field *f, const kraken_map *m)
{
    for (size_t i = 0; m != NULL && i < m->n; i++) {
        const kraken_map_entry *ent = &m->entries[i];
        if (f->elem_type == KRAKEN_T_RECORD) {
            if (ent->value.rec == NULL || size_skip_omitted(e))
                continue;
        } else if (kraken__slot_is_zero(f->elem_type, &ent->value)) {
            continue;
        }
        size_t klen = strlen(ent->key);
        if (!emit_key_varint(s, f->number, PB_WT_STRING, size_next(e)))
            return false;
        if (klen > 0 && !emit_bytes(s, 1, ent->key, klen))
            return false;
        if (!write_field_value(e, s, 2, f, f->elem_type, &ent->value))
            return false;
    }
    return true;
}

static bool write_list(penc *e, pb_ostream_t *s, const kraken_field *f, const kraken_list *l)
{
    if (f->list_key != KRAKEN_KEY_INDEX) {
        for (size_t i = 0; l != NULL && i < l->n; i++) {
            if (l->items[i].rec == NULL || size_skip_omitted(e))
                continue;
            if (!write_embedded_record(e, s, f->number, f, l->items[i].rec))
                return false;
        }
        return true;
    }
    size_t n = kraken__list_encoded_count(f, l);
    if (n == 0)
        return true;
    if (is_varint_type(f->elem_type)) {
        if (!emit_key_varint(s, f->number, PB_WT_STRING, size_next(e)))
            return false;
        for (size_t i = 0; i < n; i++) {
            uint8_t buf[10];
            if (!pb_write(s, buf, put_varint(buf, varint_of(f->elem_type, &l->items[i]))))
                return false;
        }
        return true;
    }
    for (size_t i = 0; i < n; i++)
        if (!write_field_value(e, s, f->number, f, f->elem_type, &l->items[i]))
            return false;
    return true;
}

static bool write_record_body(penc *e, pb_ostream_t *s, const kraken_record *rec)
{
    const struct kraken_schema *sc = rec->schema;
    field_order o;
    if (field_order_init(&o, sc) != 0)
        return false;
    bool ok = true;
    for (size_t k = 0; k < o.n && ok; k++) {
        size_t i = field_order_at(&o, k);
        const kraken_field *f = &sc->fields[i];
        const kraken_slot *slot = &rec->slots[i];
        if (f->type == KRAKEN_T_MAP) {
            ok = write_map(e, s, f, slot->map);
        } else if (f->type == KRAKEN_T_LIST) {
            ok = write_list(e, s, f, slot->list);
        } else if (f->type == KRAKEN_T_RECORD) {
            if (slot->rec != NULL && !size_skip_omitted(e))
                ok = write_embedded_record(e, s, f->number, f, slot->rec);
        } else if (!kraken__slot_is_zero(f->type, slot)) {
            ok = write_field_value(e, s, f->number, f, f->type, slot);
        }
    }
    field_order_done(&o);
    return ok;
}

int kraken_node_encode(const kraken_node *node, uint8_t **out, size_t *len)
{
    if (node == NULL || out == NULL || len == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_encode: NULL argument");
    *out = NULL;
    *len = 0;
    penc e = {.sizes = NULL, .cap = 32};
    e.sizes = e.inline_sizes;
    size_t total = size_record_body(&e, &node->rec, 0);
    int rc = 0;
    uint8_t *buf = NULL;
    if (e.failed) {
        rc = e.rc;
        goto done;
    }
    buf = malloc(total > 0 ? total : 1);
    if (buf == NULL) {
        rc = kraken__err(KRAKEN_ENOMEM, "out of memory encoding node (%zu bytes)", total);
        goto done;
    }
    pb_ostream_t s = pb_ostream_from_buffer(buf, total);
    if (!write_record_body(&e, &s, &node->rec) || s.bytes_written != total || e.cursor != e.n) {
        /* Only reachable if the two passes disagree: a bug, not bad input. */
        rc = kraken__err(KRAKEN_EINVAL, "node encoding failed: %s", PB_GET_ERROR(&s));
        free(buf);
        buf = NULL;
        goto done;
    }
    *out = buf;
    *len = total;
done:
    if (e.sizes != e.inline_sizes)
        free(e.sizes);
    return rc;
}

/* ---- decoder -------------------------------------------------------------------------- */

typedef struct pdec {
    const uint8_t *base; /* start of the input, for byte offsets */
    int depth;
} pdec;

static size_t pdec_offset(const pdec *d, const pb_istream_t *s)
{
    return (size_t)((const uint8_t *)s->state - d->base);
}

static int perr(const pdec *d, const pb_istream_t *s, const struct kraken_schema *schema,
                const kraken_field *f, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int perr(const pdec *d, const pb_istream_t *s, const struct kraken_schema *schema,
                const kraken_field *f, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (f != NULL)
        return kraken__err(KRAKEN_EPROTO, "protobuf node: byte %zu: %s.%s (field %u): %s",
                           pdec_offset(d, s), schema->name, f->name, (unsigned)f->number, msg);
    return kraken__err(KRAKEN_EPROTO, "protobuf node: byte %zu: %s: %s", pdec_offset(d, s),
                       schema->name, msg);
}

static int dec_record_body(pdec *d, pb_istream_t *s, const struct kraken_schema *schema,
                           kraken_record **out);

/* Read a length-delimited string field into a NUL-terminated heap copy (NULL if empty). */
static int dec_string(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                      const kraken_field *f, char **out, size_t *len_out)
{
    uint32_t len;
    *out = NULL;
    if (!pb_decode_varint32(s, &len))
        return perr(d, s, sc, f, "bad string length: %s", PB_GET_ERROR(s));
    if (len > s->bytes_left)
        return perr(d, s, sc, f, "string of %u bytes overruns its message (%zu left)", len,
                    s->bytes_left);
    if (len_out != NULL)
        *len_out = len;
    if (len == 0)
        return 0;
    char *str = malloc((size_t)len + 1);
    if (str == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
    if (!pb_read(s, (pb_byte_t *)str, len)) {
        free(str);
        return perr(d, s, sc, f, "truncated string: %s", PB_GET_ERROR(s));
    }
    str[len] = '\0';
    if (!kraken__utf8_valid(str, len)) {
        free(str);
        return perr(d, s, sc, f, "string is not valid UTF-8");
    }
    *out = str;
    return 0;
}

/* Fixed-size byte strings (UUID 16, IPv4 4, MAC 6); 0 bytes is the zero value. */
static int dec_fixed_bytes(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                           const kraken_field *f, uint8_t *buf, size_t want, size_t *got)
{
    const char *what = want == 16 ? "UUID" : want == 4 ? "IPv4 address" : "MAC address";
    uint32_t len;
    if (!pb_decode_varint32(s, &len))
        return perr(d, s, sc, f, "bad length: %s", PB_GET_ERROR(s));
    if (len != 0 && len != want)
        return perr(d, s, sc, f, "%s must be %zu bytes, got %u", what, want, len);
    if (!pb_read(s, buf, len))
        return perr(d, s, sc, f, "truncated: %s", PB_GET_ERROR(s));
    *got = len;
    return 0;
}

static int dec_any(pdec *d, pb_istream_t *s, const struct kraken_schema *sc, const kraken_field *f,
                   kraken_record **out)
{
    pb_istream_t sub;
    if (!pb_make_string_substream(s, &sub))
        return perr(d, s, sc, f, "bad Any: %s", PB_GET_ERROR(s));
    char *type_url = NULL;
    const uint8_t *value = NULL;
    size_t value_len = 0;
    int rc = 0;
    while (rc == 0 && sub.bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t num;
        bool eof;
        if (!pb_decode_tag(&sub, &wt, &num, &eof)) {
            rc = perr(d, &sub, sc, f, "bad tag in Any: %s", PB_GET_ERROR(&sub));
        } else if ((num != 1 && num != 2) || wt != PB_WT_STRING) {
            rc = perr(d, &sub, sc, f, "Any has no field %u of wire type %d", num, (int)wt);
        } else if (num == 1) {
            free(type_url);
            rc = dec_string(d, &sub, sc, f, &type_url, NULL);
        } else {
            pb_istream_t vs;
            if (!pb_make_string_substream(&sub, &vs)) {
                rc = perr(d, &sub, sc, f, "bad Any value: %s", PB_GET_ERROR(&sub));
            } else {
                value = vs.state;
                value_len = vs.bytes_left;
                vs.bytes_left = 0; /* skip it now, decode once the type is known */
                vs.state = (uint8_t *)vs.state + value_len;
                if (!pb_close_string_substream(&sub, &vs))
                    rc = perr(d, &sub, sc, f, "bad Any value: %s", PB_GET_ERROR(&sub));
            }
        }
    }
    const struct kraken_schema *schema = NULL;
    if (rc == 0 && type_url == NULL)
        rc = perr(d, &sub, sc, f, "typed record without a type_url");
    char q[KRAKEN_QUOTE_SIZE]; /* input text in messages is quoted: one line, no raw controls */
    if (rc == 0 && (schema = kraken_schema_find(type_url)) == NULL)
        rc = perr(d, &sub, sc, f, "unknown type_url %s",
                  kraken__quote(q, sizeof q, type_url, strlen(type_url)));
    if (rc == 0 && !pb_close_string_substream(s, &sub))
        rc = perr(d, s, sc, f, "bad Any: %s", PB_GET_ERROR(s));
    free(type_url);
    if (rc != 0)
        return rc;
    pb_istream_t vs = pb_istream_from_buffer(value != NULL ? value : d->base, value_len);
    return dec_record_body(d, &vs, schema, out);
}

static int dec_embedded_record(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                               const kraken_field *f, kraken_record **out)
{
    if (f->record == NULL)
        return dec_any(d, s, sc, f, out);
    pb_istream_t sub;
    if (!pb_make_string_substream(s, &sub))
        return perr(d, s, sc, f, "bad message length: %s", PB_GET_ERROR(s));
    int rc = dec_record_body(d, &sub, f->record, out);
    if (rc == 0 && !pb_close_string_substream(s, &sub)) {
        kraken__record_free(*out);
        *out = NULL;
        rc = perr(d, s, sc, f, "bad message: %s", PB_GET_ERROR(s));
    }
    return rc;
}

/* Decode one value of (f, type) into a zeroed slot. The wire type is checked by the caller. */
static int dec_value(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                     const kraken_field *f, kraken_type type, kraken_slot *out)
{
    uint64_t v;
    uint8_t buf[16];
    size_t got;
    int rc;
    if (is_varint_type(type) && !pb_decode_varint(s, &v))
        return perr(d, s, sc, f, "bad varint: %s", PB_GET_ERROR(s));
    switch (type) {
    case KRAKEN_T_BOOL:
        out->b = v != 0;
        return 0;
    case KRAKEN_T_INT32:
        out->i = (int32_t)(uint32_t)v; /* protobuf truncates int32 to 32 bits */
        return 0;
    case KRAKEN_T_INT64:
        out->i = (int64_t)v;
        return 0;
    case KRAKEN_T_UINT32:
        out->u = (uint32_t)v;
        return 0;
    case KRAKEN_T_UINT64:
        out->u = v;
        return 0;
    case KRAKEN_T_ENUM: {
        int32_t num = (int32_t)(uint32_t)v;
        if (f->enm == NULL || kraken_enum_type_lookup(f->enm, num) == NULL)
            return perr(d, s, sc, f, "%d is not a member of %s", (int)num,
                        f->enm != NULL ? kraken_enum_type_name(f->enm) : "the enum");
        out->i = num;
        return 0;
    }
    case KRAKEN_T_STRING:
        return dec_string(d, s, sc, f, &out->s, NULL);
    case KRAKEN_T_BYTES: {
        uint32_t len;
        if (!pb_decode_varint32(s, &len))
            return perr(d, s, sc, f, "bad length: %s", PB_GET_ERROR(s));
        if (len > s->bytes_left)
            return perr(d, s, sc, f, "%u bytes overrun the message (%zu left)", len, s->bytes_left);
        if (len == 0)
            return 0;
        struct kraken_blob *b = malloc(sizeof *b + len);
        if (b == NULL)
            return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
        b->len = len;
        if (!pb_read(s, b->data, len)) {
            free(b);
            return perr(d, s, sc, f, "truncated bytes: %s", PB_GET_ERROR(s));
        }
        out->bytes = b;
        return 0;
    }
    case KRAKEN_T_UUID:
        rc = dec_fixed_bytes(d, s, sc, f, buf, 16, &got);
        if (rc != 0 || got == 0 || memcmp(buf, (uint8_t[16]){0}, 16) == 0)
            return rc; /* zero UUIDs are stored as NULL */
        out->uuid = malloc(sizeof *out->uuid);
        if (out->uuid == NULL)
            return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
        memcpy(out->uuid->bytes, buf, 16);
        return 0;
    case KRAKEN_T_IPV4:
        rc = dec_fixed_bytes(d, s, sc, f, buf, 4, &got);
        if (rc == 0 && got == 4)
            memcpy(&out->ipv4, buf, 4);
        return rc;
    case KRAKEN_T_MAC:
        rc = dec_fixed_bytes(d, s, sc, f, buf, 6, &got);
        if (rc == 0 && got == 6)
            memcpy(&out->mac, buf, 6);
        return rc;
    case KRAKEN_T_RECORD:
        return dec_embedded_record(d, s, sc, f, &out->rec);
    default:
        return perr(d, s, sc, f, "type %d cannot be decoded", (int)type);
    }
}

/* Append a zero item; the list may move (kraken__list_insert updates *lp). */
static kraken_slot *list_append(kraken_list **lp)
{
    return kraken__list_insert(lp, *lp != NULL ? (*lp)->n : 0);
}

static int dec_list_field(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                          const kraken_field *f, pb_wire_type_t wt, kraken_slot *slot)
{
    if (is_varint_type(f->elem_type) && wt == PB_WT_STRING) {
        /* packed */
        pb_istream_t sub;
        if (!pb_make_string_substream(s, &sub))
            return perr(d, s, sc, f, "bad packed list: %s", PB_GET_ERROR(s));
        while (sub.bytes_left > 0) {
            kraken_slot *item = list_append(&slot->list);
            if (item == NULL)
                return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
            int rc = dec_value(d, &sub, sc, f, f->elem_type, item);
            if (rc != 0) {
                slot->list->n--;
                return rc;
            }
        }
        if (!pb_close_string_substream(s, &sub))
            return perr(d, s, sc, f, "bad packed list: %s", PB_GET_ERROR(s));
        return 0;
    }
    if (wt != wire_type_of(f->elem_type))
        return perr(d, s, sc, f, "wire type %d where %d is expected", (int)wt,
                    (int)wire_type_of(f->elem_type));
    kraken_slot *item = list_append(&slot->list);
    if (item == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
    int rc = dec_value(d, s, sc, f, f->elem_type, item);
    if (rc != 0)
        slot->list->n--; /* the failed item holds nothing */
    return rc;
}

static int dec_map_entry(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                         const kraken_field *f, kraken_slot *slot)
{
    pb_istream_t sub;
    if (!pb_make_string_substream(s, &sub))
        return perr(d, s, sc, f, "bad map entry: %s", PB_GET_ERROR(s));
    char *key = NULL;
    size_t klen = 0;
    kraken_slot value;
    memset(&value, 0, sizeof value);
    int rc = 0;
    while (rc == 0 && sub.bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t num;
        bool eof;
        if (!pb_decode_tag(&sub, &wt, &num, &eof)) {
            rc = perr(d, &sub, sc, f, "bad tag in map entry: %s", PB_GET_ERROR(&sub));
        } else if (num == 1 && wt == PB_WT_STRING) {
            free(key);
            klen = 0;
            rc = dec_string(d, &sub, sc, f, &key, &klen);
        } else if (num == 2 && wt == wire_type_of(f->elem_type)) {
            kraken__slot_free(f, f->elem_type, &value);
            memset(&value, 0, sizeof value);
            rc = dec_value(d, &sub, sc, f, f->elem_type, &value);
        } else {
            rc = perr(d, &sub, sc, f, "map entry has no field %u of wire type %d", num, (int)wt);
        }
    }
    const char *k = key != NULL ? key : "";
    char q[KRAKEN_QUOTE_SIZE];
    if (rc == 0 && slot->map != NULL && kraken__map_find(slot->map, k, klen) != NULL)
        rc = perr(d, &sub, sc, f, "duplicate map key %s", kraken__quote(q, sizeof q, k, klen));
    if (rc == 0 && !pb_close_string_substream(s, &sub))
        rc = perr(d, s, sc, f, "bad map entry: %s", PB_GET_ERROR(s));
    if (rc == 0) {
        kraken_map_entry *ent = kraken__map_insert(&slot->map, k, klen);
        if (ent == NULL) {
            rc = kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
        } else {
            ent->value = value;
            memset(&value, 0, sizeof value);
        }
    }
    kraken__slot_free(f, f->elem_type, &value);
    free(key);
    return rc;
}

static int dec_field(pdec *d, pb_istream_t *s, const struct kraken_schema *sc,
                     const kraken_field *f, pb_wire_type_t wt, kraken_slot *slot)
{
    if (f->type == KRAKEN_T_LIST)
        return dec_list_field(d, s, sc, f, wt, slot);
    if (wt != wire_type_of(f->type))
        return perr(d, s, sc, f, "wire type %d where %d is expected", (int)wt,
                    (int)wire_type_of(f->type));
    if (f->type == KRAKEN_T_MAP)
        return dec_map_entry(d, s, sc, f, slot);
    /* A repeated singular field: the last one wins, as in protobuf. */
    kraken__slot_free(f, f->type, slot);
    memset(slot, 0, sizeof *slot);
    return dec_value(d, s, sc, f, f->type, slot);
}

/* Keyed lists are stored sorted and unique; check that at the end of the record. */
static int dec_finish_lists(pdec *d, pb_istream_t *s, kraken_record *rec)
{
    const struct kraken_schema *sc = rec->schema;
    for (size_t i = 0; i < sc->n_fields; i++) {
        const kraken_field *f = &sc->fields[i];
        const char *bad;
        if (f->type != KRAKEN_T_LIST || f->list_key == KRAKEN_KEY_INDEX)
            continue;
        char q[KRAKEN_QUOTE_SIZE];
        if (kraken__list_sort_keyed(f, rec->slots[i].list, &bad) != 0)
            return bad[0] == '\0' ? perr(d, s, sc, f, "element without a key")
                                  : perr(d, s, sc, f, "duplicate element %s",
                                         kraken__quote(q, sizeof q, bad, strlen(bad)));
    }
    return 0;
}

static int dec_record_body(pdec *d, pb_istream_t *s, const struct kraken_schema *schema,
                           kraken_record **out)
{
    *out = NULL;
    if (d->depth >= KRAKEN_CODEC_MAX_DEPTH)
        return perr(d, s, schema, NULL, "records nested more than %d levels",
                    KRAKEN_CODEC_MAX_DEPTH);
    kraken_record *rec = kraken__record_new(schema);
    if (rec == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory decoding node");
    d->depth++;
    int rc = 0;
    while (rc == 0 && s->bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t num;
        bool eof;
        if (!pb_decode_tag(s, &wt, &num, &eof)) {
            rc = perr(d, s, schema, NULL, "bad field tag: %s", PB_GET_ERROR(s));
            break;
        }
        const kraken_field *f = kraken__schema_field_by_number(schema, num);
        if (f == NULL) {
            rc = perr(d, s, schema, NULL, "unknown field number %u", num);
            break;
        }
        rc = dec_field(d, s, schema, f, wt, &rec->slots[f - schema->fields]);
    }
    if (rc == 0)
        rc = dec_finish_lists(d, s, rec);
    d->depth--;
    if (rc != 0) {
        kraken__record_free(rec);
        return rc;
    }
    *out = rec;
    return 0;
}

int kraken_node_decode(const uint8_t *data, size_t len, kraken_node **out)
{
    if ((data == NULL && len > 0) || out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_decode: NULL argument");
    *out = NULL;
    kraken__schemas_init();
    static const uint8_t empty[1];
    pdec d = {.base = data != NULL ? data : empty, .depth = 0};
    pb_istream_t s = pb_istream_from_buffer(d.base, len);
    kraken_record *rec = NULL;
    int rc = dec_record_body(&d, &s, kraken__node_schema(), &rec);
    if (rc != 0)
        return rc;
    *out = (kraken_node *)rec;
    return 0;
}
