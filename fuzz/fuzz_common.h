/* SPDX-License-Identifier: BSD-3-Clause */
/* Invariants shared by the fuzz targets: whatever a decoder accepts must survive both
 * codecs unchanged, and encoding must be deterministic. A broken invariant aborts, which
 * libFuzzer reports as a crash with the input that caused it. */
#ifndef KRAKEN_FUZZ_COMMON_H
#define KRAKEN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kraken/kraken.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "invariant broken: %s (last error: %s)\n", what, kraken_error_last());
    abort();
}

/* A refusal explains itself on one line: no control byte may reach a log or a terminal. */
static void fuzz_check_message(void)
{
    const char *msg = kraken_error_last();
    if (msg == NULL || msg[0] == '\0')
        fuzz_fail("error without a message");
    for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            fuzz_fail("control byte in an error message");
}

/* node -> protobuf -> node must be equal, and encoding the copy gives the same bytes. */
static void fuzz_check_binary(const kraken_node *node)
{
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    if (kraken_node_encode(node, &a, &la) != 0)
        fuzz_fail("encode");
    kraken_node *back = NULL;
    if (kraken_node_decode(a, la, &back) != 0)
        fuzz_fail("decode of our own encoding");
    if (!kraken_node_equal(node, back))
        fuzz_fail("binary round trip changed the node");
    if (kraken_node_encode(back, &b, &lb) != 0)
        fuzz_fail("re-encode");
    if (la != lb || memcmp(a, b, la) != 0)
        fuzz_fail("encoding is not deterministic");
    kraken_node_free(back);
    free(a);
    free(b);
}

/* node -> JSON -> node must be equal, and printing the copy gives the same text. */
static void fuzz_check_json(const kraken_node *node)
{
    char *a = NULL, *b = NULL;
    if (kraken_node_to_json(node, 0, &a) != 0)
        fuzz_fail("to_json");
    kraken_node *back = NULL;
    if (kraken_node_from_json(a, strlen(a), "fuzz-out", &back) != 0)
        fuzz_fail("from_json of our own JSON");
    if (!kraken_node_equal(node, back))
        fuzz_fail("JSON round trip changed the node");
    if (kraken_node_to_json(back, 0, &b) != 0)
        fuzz_fail("to_json again");
    if (strcmp(a, b) != 0)
        fuzz_fail("JSON output is not deterministic");
    kraken_node_free(back);
    free(a);
    free(b);
}

#endif
