/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the module protocol decoder (lib/module_wire.c), as the
 * module server and client run it on bytes from a peer: length prefixes
 * against the frame bound, then each frame body decoded. A frame that
 * decodes must encode again and decode to the same bytes (no state the
 * encoder cannot express), and every decoded frame is released (leaks are
 * failures under ASan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module_int.h"

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_module: %s\n", what);
    abort();
}

#define FUZZ_MAX_FRAME (64u * 1024u)

static void roundtrip(const kraken_module_Frame *f)
{
    uint8_t *buf = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    if (kraken__module_frame_encode(f, &buf, &len) != 0)
        fuzz_fail("a decoded frame does not encode");
    kraken_module_Frame g;
    if (kraken__module_frame_decode(buf + 4, len - 4, &g) != 0)
        fuzz_fail("an encoded frame does not decode");
    if (g.which_msg != f->which_msg)
        fuzz_fail("the message changed in a round trip");
    if (kraken__module_frame_encode(&g, &again, &len2) != 0 || len2 != len ||
        memcmp(buf, again, len) != 0)
        fuzz_fail("the second encoding differs");
    kraken__module_frame_release(&g);
    free(buf);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        uint32_t len = 0;
        int rc = kraken__module_frame_peek(data + off, size - off, FUZZ_MAX_FRAME, &len);
        if (rc != 0) /* incomplete (wait for more) or over the bound (close) */
            break;
        kraken_module_Frame f;
        if (kraken__module_frame_decode(data + off + 4, len, &f) == 0) {
            (void)kraken__module_frame_name(f.which_msg);
            roundtrip(&f);
            kraken__module_frame_release(&f);
        } else if (f.which_msg != 0) {
            fuzz_fail("a failed decode left a message behind");
        }
        kraken_error_clear();
        off += 4 + (size_t)len;
    }
    return 0;
}
