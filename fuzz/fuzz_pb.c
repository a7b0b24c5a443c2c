/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: protobuf nodes (kraken_node_decode). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kraken_node *node = NULL;
    if (kraken_node_decode(data, size, &node) != 0) {
        if (node != NULL)
            fuzz_fail("failed decode returned a node");
        return 0;
    }
    fuzz_check_binary(node);
    fuzz_check_json(node);
    kraken_node_free(node);
    return 0;
}
