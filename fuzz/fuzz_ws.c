/* libFuzzer target: what a websocket client sends before and after the upgrade, as the
 * event stream (daemon/ws_proto.c) reads it. The first byte picks the parser: 0 the HTTP
 * upgrade head, 1 a subscribe message, 2 a Go duration from WebSocket.Config. Invariants:
 * accepted heads carry NUL-terminated fields within their buffers, an accepted key gives a
 * 28-character accept value, a refused message always says why with a close code of 1007
 * or 1008, and an accepted subscription names only the stream's event types. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "invariant broken: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 3) {
    case 0: {
        kd_ws_upgrade r;
        if (kd_ws_parse_upgrade(text, &r)) {
            if (strlen(r.method) >= sizeof r.method || strlen(r.path) >= sizeof r.path ||
                strlen(r.version) >= sizeof r.version || strlen(r.key) >= sizeof r.key)
                fail("upgrade field not terminated");
            if (strlen(r.query) >= sizeof r.query ||
                strlen(r.authorization) >= sizeof r.authorization)
                fail("upgrade field not terminated");
            (void)kd_ws_token_ok(&r, "s3cret");
            if (kd_ws_key_valid(r.key)) {
                char accept[KD_WS_ACCEPT_LEN + 1];
                kd_ws_accept_key(r.key, accept);
                if (strlen(accept) != KD_WS_ACCEPT_LEN)
                    fail("accept length");
            }
        }
        break;
    }
    case 1: {
        unsigned mask = 0;
        uint16_t code = 0;
        char why[124] = "";
        int cmd = kd_ws_parse_subscribe((const char *)data + 1, size - 1, &mask, &code, why,
                                        sizeof why);
        if (cmd < 0 && (!why[0] || (code != 1007 && code != 1008)))
            fail("refusal without a reason");
        if (cmd >= 0 && (cmd > 1 || mask == 0 || (mask & ~KD_WS_EVENT_TYPES)))
            fail("accepted subscription out of range");
        break;
    }
    default: {
        uint64_t ms = 0;
        if (kd_ws_parse_duration(text, &ms) == 0 && ms > UINT32_MAX)
            fail("duration out of range");
        break;
    }
    }
    free(text);
    return 0;
}
