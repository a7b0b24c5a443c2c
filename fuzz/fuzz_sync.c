/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the sync protocol's wire decoders (lib/sync.c, lib/sync_net.c).
 *
 * The first byte picks the decoder (kraken_sync_wire), or, past the last one, a TCP byte
 * stream: frames are cut from the input with the transport's length parser (the handshake or
 * the session limit, by the next byte) and each frame goes through the envelope and body
 * decoders, as a frame from a peer would. Whatever is accepted must be self-consistent. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "kraken/kraken.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "invariant broken: %s (last error: %s)\n", what, kraken_error_last());
    abort();
}

static void check_envelope(const uint8_t *data, size_t size, const kraken_sync_decoded *d)
{
    if (d->body == NULL || d->body < data || d->body_len > size ||
        (size_t)(d->body - data) > size - d->body_len)
        fuzz_fail("envelope body outside the input");
    kraken_sync_decoded b;
    (void)kraken__sync_decode(KRAKEN_SYNC_WIRE_BODY, d->body, d->body_len, &b);
    kraken_error_clear();
}

static void check_decoded(const kraken_sync_decoded *d, size_t size)
{
    if (d->cfg_bytes > size)
        fuzz_fail("more Cfg bytes than input");
    /* every item but a standalone Fact (which may be empty) takes at least two bytes */
    if (d->nodes > size / 2 || d->facts > size / 2 + 1 || d->owned_urls > size / 2)
        fuzz_fail("more items than input bytes");
}

static void stream(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    uint32_t max = data[0] & 1 ? KRAKEN_SYNC_MAX_FRAME : 64u << 10;
    data++;
    size--;
    for (;;) {
        uint32_t len = 0;
        int whole = kraken__sync_frame_parse(data, size, max, &len);
        if (whole < 0 && len <= max)
            fuzz_fail("frame refused under the limit");
        if (whole <= 0)
            return;
        if (len > size - KRAKEN_SYNC_FRAME_HEAD)
            fuzz_fail("frame longer than the bytes buffered");
        const uint8_t *frame = data + KRAKEN_SYNC_FRAME_HEAD;
        kraken_sync_decoded d;
        if (kraken__sync_decode(KRAKEN_SYNC_WIRE_ENVELOPE, frame, len, &d) == 0)
            check_envelope(frame, len, &d);
        kraken_error_clear();
        data += KRAKEN_SYNC_FRAME_HEAD + len;
        size -= KRAKEN_SYNC_FRAME_HEAD + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned what = data[0];
    data++;
    size--;
    if (what >= KRAKEN_SYNC_WIRE_COUNT) {
        stream(data, size);
        return 0;
    }
    kraken_sync_decoded d;
    int rc = kraken__sync_decode((kraken_sync_wire)what, data, size, &d);
    if (rc != 0 && rc != KRAKEN_EPROTO)
        fuzz_fail("decoder returned neither OK nor EPROTO");
    if (rc == 0) {
        check_decoded(&d, size);
        if (what == KRAKEN_SYNC_WIRE_ENVELOPE)
            check_envelope(data, size, &d);
    }
    kraken_error_clear();
    return 0;
}
