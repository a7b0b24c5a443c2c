/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ws_proto.c: parsing of what websocket clients send (see ws_proto.h). Every
 * function takes bytes from the network or from Cfg and never trusts them.
 */
#include "ws_proto.h"

#include "duration.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- the HTTP upgrade ---------------------------------------------------------------------- */

static bool has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0)
            return true;
    }
    return false;
}

static void copy_trimmed(char *dst, size_t cap, const char *src)
{
    while (*src == ' ' || *src == '\t')
        src++;
    size_t n = strlen(src);
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Parse the request head (NUL-terminated, lines end in CRLF). False if malformed. */
bool kd_ws_parse_upgrade(char *head, kd_ws_upgrade *r)
{
    memset(r, 0, sizeof *r);
    char *save = NULL;
    char *line = strtok_r(head, "\r\n", &save);
    if (!line)
        return false;
    char target[1024], proto[16];
    if (sscanf(line, "%15s %1023s %15s", r->method, target, proto) != 3 ||
        strncmp(proto, "HTTP/1.", 7) != 0)
        return false;
    char *q = strchr(target, '?');
    if (q) {
        *q = '\0';
        copy_trimmed(r->query, sizeof r->query, q + 1);
    }
    copy_trimmed(r->path, sizeof r->path, target);
    while ((line = strtok_r(NULL, "\r\n", &save))) {
        char *colon = strchr(line, ':');
        if (!colon)
            return false;
        *colon = '\0';
        const char *value = colon + 1;
        if (strcasecmp(line, "Upgrade") == 0)
            r->upgrade_websocket = has_token(value, "websocket");
        else if (strcasecmp(line, "Connection") == 0)
            r->connection_upgrade = has_token(value, "upgrade");
        else if (strcasecmp(line, "Sec-WebSocket-Version") == 0)
            copy_trimmed(r->version, sizeof r->version, value);
        else if (strcasecmp(line, "Sec-WebSocket-Key") == 0)
            copy_trimmed(r->key, sizeof r->key, value);
        else if (strcasecmp(line, "Authorization") == 0)
            copy_trimmed(r->authorization, sizeof r->authorization, value);
    }
    return true;
}

/* Equal strings, in time that depends on the length of @p want only. */
static bool secret_equal(const char *got, size_t got_len, const char *want)
{
    size_t want_len = strlen(want);
    unsigned char diff = got_len != want_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(i < got_len ? got[i] : 0) ^ (unsigned char)want[i];
    return diff == 0;
}

bool kd_ws_token_ok(const kd_ws_upgrade *r, const char *token)
{
    if (!token || !*token)
        return true;
    if (strncasecmp(r->authorization, "Bearer ", 7) == 0 &&
        secret_equal(r->authorization + 7, strlen(r->authorization + 7), token))
        return true;
    for (const char *p = r->query; *p;) {
        size_t len = strcspn(p, "&");
        if (len > 6 && strncmp(p, "token=", 6) == 0 && secret_equal(p + 6, len - 6, token))
            return true;
        p += len;
        if (*p == '&')
            p++;
    }
    return false;
}

/* RFC 6455 4.1: the key is 16 random bytes in base64, i.e. 22 characters and "==". */
bool kd_ws_key_valid(const char *key)
{
    if (strlen(key) != 24 || strcmp(key + 22, "==") != 0)
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!isalnum((unsigned char)key[i]) && key[i] != '+' && key[i] != '/')
            return false;
    return true;
}

void kd_ws_accept_key(const char *key, char out[KD_WS_ACCEPT_LEN + 1])
{
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key), (const uint8_t *)key);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    base64_encode_raw(out, sizeof digest, digest);
    out[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE)] = '\0';
}

/* ---- subscribe messages -------------------------------------------------------------------- */

static const char *type_names_expected =
    "expected \"STATE_CHANGE\", \"STATE_MUTATION\", \"DISCOVERY\" or \"ALL\"";

/* Mask of the event type a subscribe message names, or 0 (and a reason) when it names none. */
static unsigned parse_type(const cJSON *type, char *why, size_t why_len)
{
    if (cJSON_IsString(type)) {
        const char *s = type->valuestring;
        if (strcasecmp(s, "ALL") == 0)
            return KD_WS_EVENT_TYPES;
        kraken_event_type t;
        if (kraken_event_type_parse(&t, s) == 0 && (KRAKEN_EVENT_MASK(t) & KD_WS_EVENT_TYPES))
            return KRAKEN_EVENT_MASK(t);
        kraken_error_clear();
        snprintf(why, why_len, "unknown event type \"%.32s\" (%s)", s, type_names_expected);
        return 0;
    }
    if (cJSON_IsNumber(type)) {
        double d = type->valuedouble;
        if (d == 6) /* the original's Event_ALL */
            return KD_WS_EVENT_TYPES;
        if (d >= 0 && d < 32 && d == (unsigned)d && (KRAKEN_EVENT_MASK((unsigned)d) & KD_WS_EVENT_TYPES))
            return KRAKEN_EVENT_MASK((unsigned)d);
        snprintf(why, why_len, "unknown event type %g (%s)", d, type_names_expected);
        return 0;
    }
    snprintf(why, why_len, "missing or non-string \"type\" (%s)", type_names_expected);
    return 0;
}

/* 0 = subscribe, 1 = unsubscribe, -1 = invalid. An absent command subscribes, as the
 * original (its zero value). */
static int parse_command(const cJSON *cmd, char *why, size_t why_len)
{
    if (!cmd)
        return 0;
    if (cJSON_IsNumber(cmd) && (cmd->valuedouble == 0 || cmd->valuedouble == 1))
        return (int)cmd->valuedouble;
    if (cJSON_IsString(cmd)) {
        if (strcasecmp(cmd->valuestring, "SUBSCRIBE") == 0)
            return 0;
        if (strcasecmp(cmd->valuestring, "UNSUBSCRIBE") == 0)
            return 1;
    }
    char *shown = cJSON_PrintUnformatted(cmd);
    snprintf(why, why_len, "unknown command %.32s (expected 0, 1, \"SUBSCRIBE\" or \"UNSUBSCRIBE\")",
             shown ? shown : "?");
    cJSON_free(shown);
    return -1;
}

int kd_ws_parse_subscribe(const char *msg, size_t len, unsigned *mask, uint16_t *close_code,
                          char *why, size_t why_len)
{
    *mask = 0;
    cJSON *root = cJSON_ParseWithLength(msg, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= msg && at <= msg + len ? (size_t)(at - msg) : 0;
        *close_code = 1007; /* invalid frame payload data */
        snprintf(why, why_len, "invalid JSON near byte %zu", pos);
        return -1;
    }
    *close_code = 1008; /* policy violation */
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(why, why_len, "expected a JSON object {\"command\": ..., \"type\": ...}");
        return -1;
    }
    int command = parse_command(cJSON_GetObjectItemCaseSensitive(root, "command"), why, why_len);
    if (command >= 0)
        *mask = parse_type(cJSON_GetObjectItemCaseSensitive(root, "type"), why, why_len);
    cJSON_Delete(root);
    return command < 0 || *mask == 0 ? -1 : command;
}

/* ---- Go durations -------------------------------------------------------------------------- */

/* A WebSocket.Config duration: kd_duration_parse(), at most UINT32_MAX ms (timer range). */
int kd_ws_parse_duration(const char *text, uint64_t *out_ms)
{
    uint64_t ms;
    if (kd_duration_parse(text, &ms) != 0 || ms > UINT32_MAX)
        return -1;
    *out_ms = ms;
    return 0;
}
