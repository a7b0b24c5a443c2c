/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * module_wire.c: frames of the module protocol (proto/module.proto), shared
 * by the client (module_client.c) and the server (module_server.c), and the
 * only code the fuzz target needs. A frame is a 4-byte big-endian length and
 * one encoded kraken.module.Frame; the length is checked against a bound
 * before a byte of the body is decoded, so a peer cannot make us allocate
 * more than that bound.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "module_int.h"

/*
 * A Frame is one field: the oneof member. Its messages are coded here with
 * their own descriptors (tag and length written by hand): nanopb's generic
 * path walks the 14 members of the oneof for every frame, which was the
 * largest cost of a discovery on the socket (bench_module under perf).
 */
static const pb_msgdesc_t *member_fields(pb_size_t which)
{
    switch (which) {
    case kraken_module_Frame_hello_tag: return kraken_module_Register_fields;
    case kraken_module_Frame_registered_tag: return kraken_module_Registered_fields;
    case kraken_module_Frame_start_tag: return kraken_module_Start_fields;
    case kraken_module_Frame_stop_tag: return kraken_module_Stop_fields;
    case kraken_module_Frame_config_tag: return kraken_module_Config_fields;
    case kraken_module_Frame_discover_tag: return kraken_module_Discover_fields;
    case kraken_module_Frame_fail_tag: return kraken_module_Fail_fields;
    case kraken_module_Frame_set_state_tag: return kraken_module_SetState_fields;
    case kraken_module_Frame_log_tag: return kraken_module_Log_fields;
    case kraken_module_Frame_query_tag: return kraken_module_Query_fields;
    case kraken_module_Frame_update_cfg_tag: return kraken_module_UpdateCfg_fields;
    case kraken_module_Frame_reply_tag: return kraken_module_Reply_fields;
    case kraken_module_Frame_mutation_tag: return kraken_module_MutationRequest_fields;
    case kraken_module_Frame_event_tag: return kraken_module_Event_fields;
    default: return NULL;
    }
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

int kraken__module_frame_encode(const kraken_module_Frame *frame, uint8_t **out, size_t *len)
{
    const pb_msgdesc_t *fields = member_fields(frame->which_msg);
    if (!fields)
        return kraken__err(KRAKEN_EINVAL, "module frame: no message to encode");
    /* Most frames fit a small buffer: encode once; size first only for large ones. */
    uint8_t small[1024];
    size_t size;
    pb_ostream_t os = pb_ostream_from_buffer(small, sizeof small);
    bool fits = pb_encode(&os, fields, &frame->msg);
    if (fits)
        size = os.bytes_written;
    else if (!pb_get_encoded_size(&size, fields, &frame->msg))
        return kraken__err(KRAKEN_EPROTO, "module frame: cannot encode %s",
                           kraken__module_frame_name(frame->which_msg));
    uint8_t head[4 + 2 + 10];
    size_t h = 4;
    h += put_varint(head + h, (uint64_t)frame->which_msg << 3 | PB_WT_STRING);
    h += put_varint(head + h, size);
    size_t total = h - 4 + size;
    if (total > UINT32_MAX)
        return kraken__err(KRAKEN_ELIMIT, "module frame: %zu bytes is too large", total);
    head[0] = (uint8_t)(total >> 24);
    head[1] = (uint8_t)(total >> 16);
    head[2] = (uint8_t)(total >> 8);
    head[3] = (uint8_t)total;
    uint8_t *buf = malloc(h + size);
    if (!buf)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    memcpy(buf, head, h);
    if (fits) {
        memcpy(buf + h, small, size);
    } else {
        os = pb_ostream_from_buffer(buf + h, size);
        if (!pb_encode(&os, fields, &frame->msg)) {
            int rc = kraken__err(KRAKEN_EPROTO, "module frame: encoding %s: %s",
                                 kraken__module_frame_name(frame->which_msg), PB_GET_ERROR(&os));
            free(buf);
            return rc;
        }
    }
    *out = buf;
    *len = h + size;
    return 0;
}

/* Read a varint at data[*off] (at most 10 bytes); false when it is cut or too long. */
static bool get_varint(const uint8_t *data, size_t len, size_t *off, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *off < len; shift += 7) {
        uint8_t b = data[(*off)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

int kraken__module_frame_decode(const uint8_t *data, size_t len, kraken_module_Frame *out)
{
    memset(out, 0, sizeof *out);
    /* The usual frame: exactly one length-delimited field, the member, spanning the body. */
    size_t off = 0;
    uint64_t key, sub_len;
    const pb_msgdesc_t *fields = NULL;
    if (len > 0 && get_varint(data, len, &off, &key) && (key & 7) == PB_WT_STRING &&
        key >> 3 <= 0xffff && get_varint(data, len, &off, &sub_len) && sub_len == len - off)
        fields = member_fields((pb_size_t)(key >> 3));
    if (fields) {
        pb_istream_t is = pb_istream_from_buffer(data + off, (size_t)sub_len);
        if (!pb_decode(&is, fields, &out->msg)) {
            memset(out, 0, sizeof *out);
            return kraken__err(KRAKEN_EPROTO, "module frame: malformed at byte %zu of %zu: %s",
                               off + (size_t)sub_len - is.bytes_left, len, PB_GET_ERROR(&is));
        }
        out->which_msg = (pb_size_t)(key >> 3);
        return 0;
    }
    /* Anything else (several fields, unknown ones) the generic way, with its checks. */
    pb_istream_t is = pb_istream_from_buffer(data, len);
    if (!pb_decode(&is, kraken_module_Frame_fields, out)) {
        /* pb_decode released what it had allocated. */
        memset(out, 0, sizeof *out);
        return kraken__err(KRAKEN_EPROTO, "module frame: malformed at byte %zu of %zu: %s",
                           len - is.bytes_left, len, PB_GET_ERROR(&is));
    }
    if (out->which_msg == 0)
        return kraken__err(KRAKEN_EPROTO, "module frame: %zu bytes without a known message", len);
    return 0;
}

void kraken__module_frame_release(kraken_module_Frame *frame)
{
    const pb_msgdesc_t *fields = member_fields(frame->which_msg);
    if (fields)
        pb_release(fields, &frame->msg);
    memset(frame, 0, sizeof *frame);
}

const char *kraken__module_frame_name(pb_size_t which)
{
    switch (which) {
    case kraken_module_Frame_hello_tag: return "Register";
    case kraken_module_Frame_registered_tag: return "Registered";
    case kraken_module_Frame_start_tag: return "Start";
    case kraken_module_Frame_stop_tag: return "Stop";
    case kraken_module_Frame_config_tag: return "Config";
    case kraken_module_Frame_discover_tag: return "Discover";
    case kraken_module_Frame_fail_tag: return "Fail";
    case kraken_module_Frame_set_state_tag: return "SetState";
    case kraken_module_Frame_log_tag: return "Log";
    case kraken_module_Frame_query_tag: return "Query";
    case kraken_module_Frame_update_cfg_tag: return "UpdateCfg";
    case kraken_module_Frame_reply_tag: return "Reply";
    case kraken_module_Frame_mutation_tag: return "MutationRequest";
    case kraken_module_Frame_event_tag: return "Event";
    default: return "(unknown)";
    }
}

int kraken__module_frame_peek(const uint8_t *data, size_t avail, uint32_t max_frame,
                              uint32_t *len)
{
    if (avail < 4)
        return 1;
    uint32_t n = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
                 (uint32_t)data[3];
    if (n > max_frame)
        return kraken__err(KRAKEN_ELIMIT, "module frame of %u bytes exceeds the bound of %u", n,
                           max_frame);
    *len = n;
    return avail - 4 >= n ? 0 : 1;
}

/* ---- Register <-> descriptor ---------------------------------------------------------------- */

/* The generated structs hold char *; encoding only reads, so descriptor strings are lent. */
static char *lend(const char *s)
{
    return (char *)(uintptr_t)s;
}

static kraken_module_Fact *lend_facts(const kraken_fact *facts, size_t n)
{
    kraken_module_Fact *out = n ? calloc(n, sizeof *out) : NULL;
    for (size_t i = 0; out && i < n; i++) {
        out[i].url = lend(facts[i].url);
        out[i].value = lend(facts[i].value);
    }
    return out;
}

static int lend_mutation(const kraken_mutation_decl *d, kraken_module_Mutation *m)
{
    if (d->n_mutates > 0xffff || d->n_requires > 0xffff || d->n_excludes > 0xffff)
        return kraken__err(KRAKEN_ELIMIT, "mutation '%s': too many entries for the protocol",
                           d->id ? d->id : "");
    m->id = lend(d->id);
    m->mutates_count = (pb_size_t)d->n_mutates;
    m->mutates = d->n_mutates ? calloc(d->n_mutates, sizeof *m->mutates) : NULL;
    for (size_t i = 0; m->mutates && i < d->n_mutates; i++) {
        m->mutates[i].url = lend(d->mutates[i].url);
        m->mutates[i].from = lend(d->mutates[i].from);
        m->mutates[i].to = lend(d->mutates[i].to);
    }
    m->requires_count = (pb_size_t)d->n_requires;
    m->requires = lend_facts(d->requires, d->n_requires);
    m->excludes_count = (pb_size_t)d->n_excludes;
    m->excludes = lend_facts(d->excludes, d->n_excludes);
    m->context = (uint32_t)d->context;
    m->timeout_ms = d->timeout_ms;
    if (d->fail_to.url) {
        m->has_fail_to = true;
        m->fail_to.url = lend(d->fail_to.url);
        m->fail_to.value = lend(d->fail_to.value);
    }
    m->cost = d->cost;
    if ((d->n_mutates && !m->mutates) || (d->n_requires && !m->requires) ||
        (d->n_excludes && !m->excludes))
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    return 0;
}

int kraken__module_register_from_desc(const kraken_module_desc *desc, const char *service_id,
                                      kraken_module_Frame *out)
{
    memset(out, 0, sizeof *out);
    out->which_msg = kraken_module_Frame_hello_tag;
    kraken_module_Register *r = &out->msg.hello;
    r->version = KRAKEN_MODULE_PROTOCOL_VERSION;
    r->service_id = lend(service_id);
    r->module = lend(desc->name);
    r->schemas_json = lend(desc->schemas_json);
    r->config_schema = lend(desc->config_schema);
    r->event_types = desc->event_types;
    r->event_url_pattern = lend(desc->event_url_pattern);
    if (desc->n_discoverables > 0xffff || desc->n_mutations > 0xffff)
        return kraken__err(KRAKEN_ELIMIT, "module '%s': too many declarations for the protocol",
                           desc->name);
    r->discoverables_count = (pb_size_t)desc->n_discoverables;
    r->discoverables = desc->n_discoverables ? calloc(desc->n_discoverables,
                                                      sizeof *r->discoverables)
                                             : NULL;
    r->mutations_count = (pb_size_t)desc->n_mutations;
    r->mutations = desc->n_mutations ? calloc(desc->n_mutations, sizeof *r->mutations) : NULL;
    if ((desc->n_discoverables && !r->discoverables) || (desc->n_mutations && !r->mutations)) {
        kraken__module_register_free(out);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < desc->n_discoverables; i++) {
        r->discoverables[i].url = lend(desc->discoverables[i].url);
        r->discoverables[i].value_name = lend(desc->discoverables[i].value_name);
        r->discoverables[i].value_text = lend(desc->discoverables[i].value_text);
    }
    size_t stride;
    int rc = kraken__mutation_decls_check(desc->mutations, desc->n_mutations, &stride);
    if (rc < 0) {
        kraken__module_register_free(out);
        return kraken__err_prefix(rc, "module '%s'", desc->name);
    }
    for (size_t i = 0; i < desc->n_mutations; i++) {
        kraken_mutation_decl decl; /* element i at the caller's stride, as this library's struct */
        kraken__mutation_decls_get(desc->mutations, stride, i, &decl);
        rc = lend_mutation(&decl, &r->mutations[i]);
        if (rc < 0) {
            kraken__module_register_free(out);
            return rc;
        }
    }
    return 0;
}

/* Frees only the arrays kraken__module_register_from_desc() allocated (the strings are lent). */
void kraken__module_register_free(kraken_module_Frame *frame)
{
    kraken_module_Register *r = &frame->msg.hello;
    for (size_t i = 0; r->mutations && i < r->mutations_count; i++) {
        free(r->mutations[i].mutates);
        free(r->mutations[i].requires);
        free(r->mutations[i].excludes);
    }
    free(r->mutations);
    free(r->discoverables);
    memset(frame, 0, sizeof *frame);
}

/* ---- writing without SIGPIPE ------------------------------------------------------------------ */

#define IOV_BATCH 64

int kraken__module_send_some(int fd, struct evbuffer *out)
{
    while (evbuffer_get_length(out) > 0) {
        struct evbuffer_iovec v[IOV_BATCH];
        int n = evbuffer_peek(out, -1, NULL, v, IOV_BATCH);
        if (n > IOV_BATCH)
            n = IOV_BATCH;
        struct iovec iov[IOV_BATCH];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        evbuffer_drain(out, (size_t)w);
    }
    return 0;
}
