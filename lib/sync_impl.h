/*
 * Private to the sync protocol (lib/sync*.c): the structures its files share and the
 * functions one file calls in another. Not part of lib/internal.h: nothing outside sync uses it.
 */
#ifndef KRAKEN_SYNC_IMPL_H
#define KRAKEN_SYNC_IMPL_H

#include <event2/event.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "sync.pb.h"


/* ---- small helpers -------------------------------------------------------------------- */

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool uuid_eq(const kraken_uuid *a, const kraken_uuid *b)
{
    return memcmp(a->bytes, b->bytes, 16) == 0;
}

static inline void arm_timer(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(ev, &tv);
}

typedef struct blob {
    uint8_t *data;
    size_t len;
    uint32_t depth; /* Cfg depth below the link, so parents go before their children */
    bool reliable;  /* TCP only: a stale node's facts, which the digests do not cover */
} blob;

typedef struct blobs {
    blob *v;
    size_t n, cap;
} blobs;

typedef struct factlist {
    kraken_sync_Fact *v;
    size_t n, cap;
} factlist;

/* ---- reading messages ------------------------------------------------------------------ */

typedef struct rx_node {
    kraken_uuid id;
    bool deleted, dsc_full, has_cfg, stale;
    const uint8_t *cfg; /* points into the received buffer */
    size_t cfg_len;
    kraken_sync_Fact *facts;
    size_t n_facts, cap_facts;
} rx_node;

typedef struct rx_update {
    bool full, more;
    rx_node *nodes;
    size_t n, cap;
} rx_update;

typedef struct rx_body {
    uint32_t kind; /* kraken_sync_Body_*_tag, 0: none */
    kraken_sync_Hello hello;
    kraken_sync_JoinResult result;
    rx_update update;
} rx_body;

typedef struct rx_envelope {
    uint8_t sender[16];
    uint64_t epoch, seq;
    const uint8_t *body;
    size_t body_len;
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    bool has_sender, has_body, has_mac;
} rx_envelope;

/* ---- sync.c --------------------------------------------------------------------------- */

KRAKEN_PRIVATE int blobs_push(blobs *b, uint8_t *data, size_t len, uint32_t depth);

/* ---- sync_wire.c ---------------------------------------------------------------------- */

KRAKEN_PRIVATE int encode_message(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                                  size_t *len);
KRAKEN_PRIVATE int encode_node_state(const kraken_uuid *id, bool deleted, const uint8_t *cfg,
                                     size_t cfg_len, const factlist *facts, bool dsc_full,
                                     bool stale, blobs *out, uint32_t depth);
KRAKEN_PRIVATE void rx_body_clear(rx_body *b);
KRAKEN_PRIVATE bool decode_small(const pb_msgdesc_t *fields, const uint8_t *data, size_t len,
                                 void *msg);
KRAKEN_PRIVATE bool parse_body(rx_body *b, const uint8_t *data, size_t len);
KRAKEN_PRIVATE bool parse_envelope(rx_envelope *e, const uint8_t *data, size_t len);

#endif /* KRAKEN_SYNC_IMPL_H */
