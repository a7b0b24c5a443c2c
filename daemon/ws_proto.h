/*
 * ws_proto.h: the parts of the websocket event stream that read untrusted
 * text, as pure functions (no sockets, no engine): the HTTP upgrade request,
 * Sec-WebSocket-Key/Accept, subscribe messages and Go durations. Used by
 * websocket.c; fuzzed by fuzz/fuzz_ws.c.
 */
#ifndef KD_WS_PROTO_H
#define KD_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kraken/error.h>
#include <kraken/event.h>

/* The event types the stream carries (SPEC 9.3): 1, 2 and 5. */
#define KD_WS_EVENT_TYPES                                                                          \
    (KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE) | KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION) | \
     KRAKEN_EVENT_MASK(KRAKEN_EVENT_DISCOVERY))

/* Length of a Sec-WebSocket-Accept value (base64 of a SHA-1 digest). */
#define KD_WS_ACCEPT_LEN 28

/* What the upgrade request says (only what the handshake needs). */
typedef struct kd_ws_upgrade {
    char method[16];
    char path[256];          /* without the query string */
    bool upgrade_websocket;  /* Upgrade: lists "websocket" */
    bool connection_upgrade; /* Connection: lists "upgrade" */
    char version[16];        /* Sec-WebSocket-Version */
    char key[64];            /* Sec-WebSocket-Key */
    char query[512];         /* after '?' in the target, or "" */
    char authorization[512]; /* Authorization header, or "" */
} kd_ws_upgrade;

/* Parse a request head (NUL-terminated, lines end in CRLF; modified). False if malformed. */
bool kd_ws_parse_upgrade(char *head, kd_ws_upgrade *out);
/* RFC 6455 4.1: 16 bytes in base64 (22 characters and "=="). */
bool kd_ws_key_valid(const char *key);
/* base64(SHA-1(key + the RFC 6455 GUID)), NUL-terminated. */
void kd_ws_accept_key(const char *key, char out[KD_WS_ACCEPT_LEN + 1]);

/*
 * True when the request carries @p token: "Authorization: Bearer <token>", or
 * a "token=<token>" query parameter (browsers cannot set headers on a
 * websocket). Compared in constant time.
 */
bool kd_ws_token_ok(const kd_ws_upgrade *r, const char *token);

/*
 * A client's message: {"command": 0|1|"SUBSCRIBE"|"UNSUBSCRIBE", "type":
 * "STATE_CHANGE"|"STATE_MUTATION"|"DISCOVERY"|"ALL" (or 1, 2, 5, 6)}. An
 * absent command subscribes, as the original (its zero value). Returns 0
 * (subscribe) or 1 (unsubscribe) with *mask set, or -1 with the close code
 * (1007 invalid JSON, 1008 otherwise) and a one-line reason in @p why.
 */
int kd_ws_parse_subscribe(const char *msg, size_t len, unsigned *mask, uint16_t *close_code,
                          char *why, size_t why_len);

/*
 * A Go duration ("10s", "1m30s", "500ms", "1.5h"; units ns us µs ms s m h)
 * in milliseconds, rounded up. -1 if malformed, negative or too large.
 */
int kd_ws_parse_duration(const char *text, uint64_t *out_ms);

#endif
