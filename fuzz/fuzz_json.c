/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: JSON node lists (kraken_nodes_from_json) and single nodes. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    kraken_node **nodes = NULL;
    size_t n = 0;
    if (kraken_nodes_from_json(text, size, "fuzz", &nodes, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            fuzz_check_json(nodes[i]);
            fuzz_check_binary(nodes[i]);
        }
        kraken_nodes_free(nodes, n);
        return 0;
    }
    if (nodes != NULL || n != 0)
        fuzz_fail("failed parse returned nodes");
    fuzz_check_message();
    kraken_node *node = NULL;
    if (kraken_node_from_json(text, size, "fuzz", &node) == 0) {
        fuzz_check_json(node);
        fuzz_check_binary(node);
        kraken_node_free(node);
    } else if (node != NULL) {
        fuzz_fail("failed parse returned a node");
    } else {
        fuzz_check_message();
    }
    return 0;
}
