/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: URL reads and writes on a fixed node. The input is "<url>" or
 * "<url>\n<value>" (a NUL also separates): with a value, kraken_node_set_text() runs on a
 * copy of the node, and the changed node must still survive both codecs. */
#include "fuzz_common.h"
#include "internal.h"

static const char base_json[] =
    "{\"id\": \"c0ffee00-0000-4000-8000-000000000001\", \"nodename\": \"head\","
    " \"runState\": \"SYNC\", \"physState\": \"POWER_ON\", \"arch\": \"amd64\","
    " \"platform\": \"sim\", \"parentId\": \"c0ffee00-0000-4000-8000-000000000002\","
    " \"services\": [{\"id\": \"pxe\", \"module\": \"pxe\", \"state\": \"RUN\","
    "   \"config\": {\"@type\": \"type.googleapis.com/Powerman.Control\", \"apiServer\": \"10.0.0.1\"}}],"
    " \"extensions\": [{\"@type\": \"type.googleapis.com/PXE.Client\", \"method\": \"iPXE\"},"
    "  {\"@type\": \"type.googleapis.com/IPv4.IPv4OverEthernet\", \"ifaces\": {\"kraken\":"
    "   {\"eth\": {\"iface\": \"eth0\", \"mac\": \"02:00:00:00:01:01\", \"mtu\": 9000},"
    "    \"ip\": {\"ip\": \"127.0.1.1\", \"subnet\": \"255.0.0.0\"}}},"
    "   \"routes\": [{\"ip\": \"10.0.0.0\"}], \"hostname\": {\"hostname\": \"h\"}}]}";

static kraken_node *base_node(void)
{
    static kraken_node *node;
    if (node == NULL && kraken_node_from_json(base_json, sizeof base_json - 1, "base", &node) != 0)
        fuzz_fail("base node");
    return node;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *input = malloc(size + 1);
    if (input == NULL)
        return 0;
    memcpy(input, data, size);
    input[size] = '\0';
    char *value = NULL;
    for (size_t i = 0; i < size; i++) {
        if (input[i] == '\n' || input[i] == '\0') {
            input[i] = '\0';
            value = input + i + 1;
            break;
        }
    }
    const char *url = input;
    kraken_node *base = base_node();

    char *text = NULL;
    if (kraken_node_get_text(base, url, &text) == 0)
        free(text);
    kraken_value v = KRAKEN_VALUE_INIT;
    if (kraken_node_get(base, url, &v) == 0)
        kraken_value_clear(&v);
    char *canonical = NULL;
    if (kraken_url_canonical(url, &canonical) == 0)
        free(canonical);

    if (value != NULL) {
        kraken_node *copy = NULL;
        if (kraken_node_copy(&copy, base) != 0)
            fuzz_fail("copy");
        if (kraken_node_set_text(copy, url, value) == 0) {
            fuzz_check_binary(copy);
            fuzz_check_json(copy);
        } else if (!kraken_node_equal(copy, base)) {
            fuzz_fail("failed set_text changed the node");
        }
        if (kraken_node_unset(copy, url) == 0) {
            fuzz_check_binary(copy);
            fuzz_check_json(copy);
        }
        kraken_node_free(copy);
    }
    free(input);
    return 0;
}
