/*
 * Unit tests of the websocket stream's parsers (daemon/ws_proto.c): Go
 * durations, the upgrade request head, Sec-WebSocket-Key/Accept and
 * subscribe messages, with the exact refusal texts clients see.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ws_proto.h"

static uint64_t duration(const char *text)
{
    uint64_t ms = 12345;
    ck_assert_msg(kd_ws_parse_duration(text, &ms) == 0, "'%s' refused", text);
    return ms;
}

static void duration_refused(const char *text)
{
    uint64_t ms = 0;
    ck_assert_msg(kd_ws_parse_duration(text, &ms) == -1, "'%s' accepted as %llu ms", text,
                  (unsigned long long)ms);
}

START_TEST(go_durations)
{
    ck_assert_uint_eq(duration("10s"), 10000);
    ck_assert_uint_eq(duration("1m0s"), 60000); /* the original's pongWait */
    ck_assert_uint_eq(duration("54s"), 54000);
    ck_assert_uint_eq(duration("1m30s"), 90000);
    ck_assert_uint_eq(duration("1.5h"), 5400000);
    ck_assert_uint_eq(duration("500ms"), 500);
    ck_assert_uint_eq(duration("300us"), 1); /* rounded up: never 0 for a positive duration */
    ck_assert_uint_eq(duration("2\xc2\xb5s"), 1);
    ck_assert_uint_eq(duration("0"), 0);
    ck_assert_uint_eq(duration("+5s"), 5000);
    duration_refused("");
    duration_refused("10");     /* a unit is required, as in Go */
    duration_refused("-1s");    /* negative: no use for a timeout */
    duration_refused("1x");
    duration_refused("s");
    duration_refused("1s5");
    duration_refused("10000000h"); /* beyond 32-bit milliseconds */
}
END_TEST

static bool parse(const char *head, kd_ws_upgrade *r)
{
    char *copy = strdup(head);
    bool ok = kd_ws_parse_upgrade(copy, r);
    free(copy);
    return ok;
}

START_TEST(upgrade_head)
{
    kd_ws_upgrade r;
    ck_assert(parse("GET /ws?token=x HTTP/1.1\r\nhost: a\r\nUPGRADE:  WebSocket \r\n"
                    "connection: keep-alive,  Upgrade\r\nsec-websocket-version: 13\r\n"
                    "Sec-WebSocket-Key:  dGhlIHNhbXBsZSBub25jZQ== \r\n\r\n",
                    &r));
    ck_assert_str_eq(r.method, "GET");
    ck_assert_str_eq(r.path, "/ws"); /* query string dropped */
    ck_assert(r.upgrade_websocket);
    ck_assert(r.connection_upgrade);
    ck_assert_str_eq(r.version, "13");
    ck_assert_str_eq(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
    /* "Connection: Upgraded" is not the token "upgrade" */
    ck_assert(parse("GET /ws HTTP/1.1\r\nConnection: Upgraded\r\nUpgrade: websockets\r\n\r\n", &r));
    ck_assert(!r.connection_upgrade);
    ck_assert(!r.upgrade_websocket);
    ck_assert(!parse("GET /ws\r\n\r\n", &r));                  /* no version */
    ck_assert(!parse("GET /ws SPDY/3\r\n\r\n", &r));           /* not HTTP/1.x */
    ck_assert(!parse("GET /ws HTTP/1.1\r\nno colon\r\n\r\n", &r));
    ck_assert(!parse("", &r));
}
END_TEST

START_TEST(key_and_accept)
{
    char accept[KD_WS_ACCEPT_LEN + 1];
    ck_assert(kd_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    kd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept); /* RFC 6455 section 1.3 */
    ck_assert_str_eq(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert(!kd_ws_key_valid(""));
    ck_assert(!kd_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));   /* 23 characters */
    ck_assert(!kd_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=x"));  /* no "==" */
    ck_assert(!kd_ws_key_valid("dGhlIHNhbXBs*SBub25jZQ=="));  /* not base64 */
}
END_TEST

START_TEST(bearer_token)
{
    kd_ws_upgrade r;
    ck_assert(parse("GET /ws HTTP/1.1\r\nauthorization: bearer s3cret\r\n\r\n", &r));
    ck_assert(kd_ws_token_ok(&r, "s3cret"));
    ck_assert(!kd_ws_token_ok(&r, "s3cre"));   /* a prefix is not the token */
    ck_assert(!kd_ws_token_ok(&r, "s3cret!"));
    ck_assert(kd_ws_token_ok(&r, NULL));       /* no token configured: open */
    ck_assert(parse("GET /ws?a=1&token=s3cret&b=2 HTTP/1.1\r\n\r\n", &r));
    ck_assert_str_eq(r.query, "a=1&token=s3cret&b=2");
    ck_assert(kd_ws_token_ok(&r, "s3cret"));
    ck_assert(parse("GET /ws?mytoken=s3cret&token= HTTP/1.1\r\n\r\n", &r));
    ck_assert(!kd_ws_token_ok(&r, "s3cret"));
    ck_assert(parse("GET /ws HTTP/1.1\r\nAuthorization: Basic czNjcmV0\r\n\r\n", &r));
    ck_assert(!kd_ws_token_ok(&r, "s3cret"));
}
END_TEST

static int subscribe(const char *msg, unsigned *mask, uint16_t *code, char *why)
{
    return kd_ws_parse_subscribe(msg, strlen(msg), mask, code, why, 124);
}

START_TEST(subscribe_messages)
{
    unsigned mask;
    uint16_t code;
    char why[124];
    ck_assert_int_eq(subscribe("{\"command\": 0, \"type\": \"STATE_CHANGE\"}", &mask, &code, why), 0);
    ck_assert_uint_eq(mask, KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE));
    ck_assert_int_eq(subscribe("{\"command\": \"unsubscribe\", \"type\": \"DISCOVERY\"}", &mask,
                               &code, why), 1);
    ck_assert_uint_eq(mask, KRAKEN_EVENT_MASK(KRAKEN_EVENT_DISCOVERY));
    ck_assert_int_eq(subscribe("{\"type\": \"ALL\"}", &mask, &code, why), 0); /* no command */
    ck_assert_uint_eq(mask, KD_WS_EVENT_TYPES);
    ck_assert_int_eq(subscribe("{\"command\": 1, \"type\": 6}", &mask, &code, why), 1);
    ck_assert_uint_eq(mask, KD_WS_EVENT_TYPES);
    ck_assert_int_eq(subscribe("{\"command\": 0, \"type\": 2}", &mask, &code, why), 0);
    ck_assert_uint_eq(mask, KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION));

    ck_assert_int_eq(subscribe("{\"command\": 0, \"type\": 7}", &mask, &code, why), -1);
    ck_assert_uint_eq(code, 1008);
    ck_assert_str_eq(why, "unknown event type 7 (expected \"STATE_CHANGE\", \"STATE_MUTATION\", "
                          "\"DISCOVERY\" or \"ALL\")");
    ck_assert_int_eq(subscribe("{\"command\": 0.5, \"type\": \"ALL\"}", &mask, &code, why), -1);
    ck_assert_str_eq(why, "unknown command 0.5 (expected 0, 1, \"SUBSCRIBE\" or \"UNSUBSCRIBE\")");
    ck_assert_int_eq(subscribe("\"ALL\"", &mask, &code, why), -1);
    ck_assert_str_eq(why, "expected a JSON object {\"command\": ..., \"type\": ...}");
    ck_assert_int_eq(subscribe("{\"type\": ", &mask, &code, why), -1);
    ck_assert_uint_eq(code, 1007);
    ck_assert_str_eq(why, "invalid JSON near byte 8");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ws_proto");
    TCase *tc = tcase_create("parsers");
    tcase_add_test(tc, go_durations);
    tcase_add_test(tc, upgrade_head);
    tcase_add_test(tc, key_and_accept);
    tcase_add_test(tc, subscribe_messages);
    tcase_add_test(tc, bearer_token);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV); /* meson sets CK_VERBOSITY=silent: stdout is TAP only */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
