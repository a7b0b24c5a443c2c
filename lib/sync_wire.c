/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync wire format (proto/sync.proto, doc/PROTOCOL.md 4): encoding of messages and node
 * states, and the decoders of received envelopes, bodies and updates, which walk the fields
 * with nanopb's stream API. kraken__sync_decode exposes them to fuzz/fuzz_sync.c and tests.
 */
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

#include "sync_impl.h"

int encode_message(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                   size_t *len)
{
    size_t size = 0;
    if (!pb_get_encoded_size(&size, fields, msg))
        return kraken__err(KRAKEN_EPROTO, "sync: cannot size a message");
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, size);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return kraken__err(KRAKEN_EPROTO, "sync: encode failed: %s", PB_GET_ERROR(&os));
    }
    *out = buf;
    *len = os.bytes_written;
    return KRAKEN_OK;
}

/* ---- node states ---------------------------------------------------------------------- */

/*
 * NodeStates, StateUpdates and Envelopes are written and read by hand with nanopb's stream
 * primitives (wire-identical to proto/sync.proto): the generated structs count bytes and
 * elements in 16-bit pb_size_t, and a node's Cfg or a snapshot may be far larger.
 */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static bool wbuf_write(pb_ostream_t *os, const pb_byte_t *buf, size_t count)
{
    wbuf *w = os->state;
    if (w->len + count > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + count)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (p == NULL)
            return false;
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, buf, count);
    w->len += count;
    return true;
}

static pb_ostream_t wbuf_stream(wbuf *w)
{
    pb_ostream_t os = PB_OSTREAM_SIZING;
    os.callback = wbuf_write;
    os.state = w;
    os.max_size = SIZE_MAX;
    return os;
}

int encode_node_state(const kraken_uuid *id, bool deleted, const uint8_t *cfg,
                      size_t cfg_len, const factlist *facts, bool dsc_full, bool stale,
                      blobs *out, uint32_t depth)
{
    wbuf w = {0};
    pb_ostream_t os = wbuf_stream(&w);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_id_tag) &&
              pb_encode_string(&os, id->bytes, 16);
    if (ok && deleted)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_deleted_tag) &&
             pb_encode_varint(&os, 1);
    if (ok && cfg != NULL)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_cfg_tag) &&
             pb_encode_string(&os, cfg, cfg_len);
    for (size_t i = 0; ok && facts != NULL && i < facts->n; i++)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_dsc_tag) &&
             pb_encode_submessage(&os, kraken_sync_Fact_fields, &facts->v[i]);
    if (ok && dsc_full)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_dsc_full_tag) &&
             pb_encode_varint(&os, 1);
    if (ok && stale)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_stale_tag) &&
             pb_encode_varint(&os, 1);
    if (!ok || blobs_push(out, w.p, w.len, depth) < 0) {
        free(w.p);
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory encoding a node state");
    }
    return KRAKEN_OK;
}

/* ---- reading messages ------------------------------------------------------------------ */

void rx_body_clear(rx_body *b)
{
    for (size_t i = 0; i < b->update.n; i++) {
        rx_node *n = &b->update.nodes[i];
        for (size_t k = 0; k < n->n_facts; k++)
            pb_release(kraken_sync_Fact_fields, &n->facts[k]);
        free(n->facts);
    }
    free(b->update.nodes);
    pb_release(kraken_sync_JoinResult_fields, &b->result);
    memset(b, 0, sizeof *b);
}

/* The small messages (join handshake, Hello, JoinResult, Fact) use the generated structs. */
bool decode_small(const pb_msgdesc_t *fields, const uint8_t *data, size_t len, void *msg)
{
    pb_istream_t is = pb_istream_from_buffer(data, len);
    return pb_decode(&is, fields, msg);
}

typedef struct wfield {
    uint32_t tag;
    pb_wire_type_t wt;
    uint64_t v;
    const uint8_t *data;
    size_t len;
} wfield;

/* Next field of a message: 1, 0 at the end, -1 when malformed. */
static int wire_next(pb_istream_t *is, wfield *f)
{
    bool eof = false;
    if (!pb_decode_tag(is, &f->wt, &f->tag, &eof))
        return eof ? 0 : -1;
    if (f->wt == PB_WT_VARINT)
        return pb_decode_varint(is, &f->v) ? 1 : -1;
    if (f->wt == PB_WT_STRING) {
        uint32_t len;
        if (!pb_decode_varint32(is, &len) || len > is->bytes_left)
            return -1;
        f->data = is->state; /* buffer streams keep the read position here */
        f->len = len;
        return pb_read(is, NULL, len) ? 1 : -1;
    }
    return pb_skip_field(is, f->wt) ? 1 : -1;
}

static bool parse_fact(rx_node *n, const wfield *f)
{
    if (n->n_facts == n->cap_facts) {
        size_t cap = n->cap_facts ? n->cap_facts * 2 : 8;
        kraken_sync_Fact *v = realloc(n->facts, cap * sizeof *v);
        if (v == NULL)
            return false;
        n->facts = v;
        n->cap_facts = cap;
    }
    kraken_sync_Fact *fact = &n->facts[n->n_facts];
    memset(fact, 0, sizeof *fact);
    if (!decode_small(kraken_sync_Fact_fields, f->data, f->len, fact))
        return false;
    n->n_facts++;
    return true;
}

static bool parse_node_state(rx_update *u, const uint8_t *data, size_t len)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        rx_node *v = realloc(u->nodes, cap * sizeof *v);
        if (v == NULL)
            return false;
        u->nodes = v;
        u->cap = cap;
    }
    rx_node *n = &u->nodes[u->n++];
    memset(n, 0, sizeof *n);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    bool has_id = false;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_NodeState_id_tag && f.wt == PB_WT_STRING && f.len == 16) {
            memcpy(n->id.bytes, f.data, 16);
            has_id = true;
        } else if (f.tag == kraken_sync_NodeState_deleted_tag && f.wt == PB_WT_VARINT) {
            n->deleted = f.v != 0;
        } else if (f.tag == kraken_sync_NodeState_cfg_tag && f.wt == PB_WT_STRING) {
            n->has_cfg = true;
            n->cfg = f.data;
            n->cfg_len = f.len;
        } else if (f.tag == kraken_sync_NodeState_dsc_tag && f.wt == PB_WT_STRING) {
            if (!parse_fact(n, &f))
                return false;
        } else if (f.tag == kraken_sync_NodeState_dsc_full_tag && f.wt == PB_WT_VARINT) {
            n->dsc_full = f.v != 0;
        } else if (f.tag == kraken_sync_NodeState_stale_tag && f.wt == PB_WT_VARINT) {
            n->stale = f.v != 0;
        } else if (f.tag <= kraken_sync_NodeState_stale_tag) {
            return false; /* a known field with the wrong wire type or size */
        }
    }
    return r == 0 && has_id;
}

static bool parse_update(rx_update *u, const uint8_t *data, size_t len)
{
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_StateUpdate_full_tag && f.wt == PB_WT_VARINT)
            u->full = f.v != 0;
        else if (f.tag == kraken_sync_StateUpdate_more_tag && f.wt == PB_WT_VARINT)
            u->more = f.v != 0;
        else if (f.tag == kraken_sync_StateUpdate_nodes_tag && f.wt == PB_WT_STRING) {
            if (!parse_node_state(u, f.data, f.len))
                return false;
        } else if (f.tag <= kraken_sync_StateUpdate_more_tag)
            return false;
    }
    return r == 0;
}

/* Body: a oneof; the last member present wins, as protobuf says. */
bool parse_body(rx_body *b, const uint8_t *data, size_t len)
{
    memset(b, 0, sizeof *b);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_Body_hello_tag && f.wt == PB_WT_STRING) {
            memset(&b->hello, 0, sizeof b->hello);
            if (!decode_small(kraken_sync_Hello_fields, f.data, f.len, &b->hello))
                return false;
        } else if (f.tag == kraken_sync_Body_update_tag && f.wt == PB_WT_STRING) {
            if (!parse_update(&b->update, f.data, f.len))
                return false;
        } else if (f.tag == kraken_sync_Body_join_result_tag && f.wt == PB_WT_STRING) {
            pb_release(kraken_sync_JoinResult_fields, &b->result);
            memset(&b->result, 0, sizeof b->result);
            if (!decode_small(kraken_sync_JoinResult_fields, f.data, f.len, &b->result))
                return false;
        } else if (f.tag == kraken_sync_Body_resend_tag && f.wt == PB_WT_VARINT) {
            if (f.v == 0)
                continue;
        } else {
            continue; /* unknown member: skip */
        }
        b->kind = f.tag;
    }
    return r == 0;
}

bool parse_envelope(rx_envelope *e, const uint8_t *data, size_t len)
{
    memset(e, 0, sizeof *e);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_Envelope_sender_tag && f.wt == PB_WT_STRING && f.len == 16) {
            memcpy(e->sender, f.data, 16);
            e->has_sender = true;
        } else if (f.tag == kraken_sync_Envelope_epoch_tag && f.wt == PB_WT_VARINT) {
            e->epoch = f.v;
        } else if (f.tag == kraken_sync_Envelope_seq_tag && f.wt == PB_WT_VARINT) {
            e->seq = f.v;
        } else if (f.tag == kraken_sync_Envelope_body_tag && f.wt == PB_WT_STRING) {
            e->body = f.data;
            e->body_len = f.len;
            e->has_body = true;
        } else if (f.tag == kraken_sync_Envelope_mac_tag && f.wt == PB_WT_STRING &&
                   f.len == KRAKEN_SYNC_KEY_LEN) {
            memcpy(e->mac, f.data, KRAKEN_SYNC_KEY_LEN);
            e->has_mac = true;
        } else if (f.tag <= kraken_sync_Envelope_mac_tag) {
            return false;
        }
    }
    return r == 0 && e->has_sender && e->has_body && e->has_mac;
}

/* ---- decoders for fuzz/fuzz_sync.c and tests ------------------------------------------ */

static void summarize_update(const rx_update *u, kraken_sync_decoded *out)
{
    out->full = u->full;
    out->more = u->more;
    out->nodes = u->n;
    for (size_t i = 0; i < u->n; i++) {
        out->facts += u->nodes[i].n_facts;
        out->cfg_bytes += u->nodes[i].cfg_len;
    }
}

int kraken__sync_decode(kraken_sync_wire what, const uint8_t *data, size_t len,
                        kraken_sync_decoded *out)
{
    kraken_sync_decoded dummy;
    if (out == NULL)
        out = &dummy;
    memset(out, 0, sizeof *out);
    if (data == NULL && len > 0)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_decode: NULL data");
    static const uint8_t empty[1];
    if (data == NULL)
        data = empty;
    bool ok = false;
    switch (what) {
    case KRAKEN_SYNC_WIRE_ENVELOPE: {
        rx_envelope e;
        ok = parse_envelope(&e, data, len);
        if (ok) {
            out->body = e.body;
            out->body_len = e.body_len;
            out->epoch = e.epoch;
            out->seq = e.seq;
        }
        break;
    }
    case KRAKEN_SYNC_WIRE_BODY: {
        rx_body b;
        ok = parse_body(&b, data, len);
        if (ok) {
            out->kind = b.kind;
            summarize_update(&b.update, out);
            out->owned_urls = b.result.owned_urls_count;
        }
        rx_body_clear(&b);
        break;
    }
    case KRAKEN_SYNC_WIRE_UPDATE:
    case KRAKEN_SYNC_WIRE_NODE_STATE: {
        rx_body b;
        memset(&b, 0, sizeof b);
        ok = what == KRAKEN_SYNC_WIRE_UPDATE ? parse_update(&b.update, data, len)
                                             : parse_node_state(&b.update, data, len);
        if (ok)
            summarize_update(&b.update, out);
        rx_body_clear(&b);
        break;
    }
    case KRAKEN_SYNC_WIRE_FACT: {
        rx_node n;
        memset(&n, 0, sizeof n);
        wfield f = {0, PB_WT_STRING, 0, data, len};
        ok = parse_fact(&n, &f);
        out->facts = n.n_facts;
        for (size_t k = 0; k < n.n_facts; k++)
            pb_release(kraken_sync_Fact_fields, &n.facts[k]);
        free(n.facts);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_REQUEST: {
        kraken_sync_JoinRequest m = kraken_sync_JoinRequest_init_zero;
        ok = decode_small(kraken_sync_JoinRequest_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_CHALLENGE: {
        kraken_sync_JoinChallenge m = kraken_sync_JoinChallenge_init_zero;
        ok = decode_small(kraken_sync_JoinChallenge_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_PROOF: {
        kraken_sync_JoinProof m = kraken_sync_JoinProof_init_zero;
        ok = decode_small(kraken_sync_JoinProof_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_RESULT: {
        kraken_sync_JoinResult m = kraken_sync_JoinResult_init_zero;
        ok = decode_small(kraken_sync_JoinResult_fields, data, len, &m);
        if (ok)
            out->owned_urls = m.owned_urls_count;
        pb_release(kraken_sync_JoinResult_fields, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_HELLO: {
        kraken_sync_Hello m = kraken_sync_Hello_init_zero;
        ok = decode_small(kraken_sync_Hello_fields, data, len, &m);
        break;
    }
    default:
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_decode: unknown message kind %d",
                           (int)what);
    }
    return ok ? KRAKEN_OK : kraken__err(KRAKEN_EPROTO, "sync: malformed message (kind %d)",
                                        (int)what);
}
