/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: schema description files (kraken_schema_load_json), which sites write by
 * hand. Invariants: a refused file registers nothing and explains itself on one line; a loaded
 * one registers well-formed types that a node can carry through both codecs.
 *
 * The registry is process-wide and append-only, so accepted inputs accumulate during a run
 * (later inputs may then conflict with them: that is a refusal like any other).
 */
#include "fuzz_common.h"

/* A node carrying an empty record of each new schema as an extension survives both codecs. */
static void check_new_schemas(size_t from)
{
    for (size_t i = from; i < kraken_schema_count(); i++) {
        const kraken_schema *s = kraken_schema_at(i);
        if (s == NULL || kraken_schema_find(kraken_schema_name(s)) != s)
            fuzz_fail("registered schema not found by its name");
        for (size_t k = 0; k < kraken_schema_field_count(s); k++) {
            kraken_field_def def = {.version = KRAKEN_FIELD_DEF_VERSION};
            if (kraken_schema_field(s, k, &def) != 0 || def.name == NULL)
                fuzz_fail("registered field not readable");
        }
        char json[512];
        int n = snprintf(json, sizeof json, "{\"extensions\": [{\"@type\": \"%s\"}]}",
                         kraken_schema_type_url(s));
        if (n < 0 || (size_t)n >= sizeof json)
            continue; /* a very long name: nothing more to check here */
        kraken_node *node = NULL;
        if (kraken_node_from_json(json, (size_t)n, "fuzz-ext", &node) != 0)
            fuzz_fail("a registered schema is refused as an extension");
        fuzz_check_json(node);
        fuzz_check_binary(node);
        kraken_node_free(node);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t schemas = kraken_schema_count(), enums = kraken_enum_count();
    if (kraken_schema_load_json((const char *)data, size, "fuzz") != 0) {
        fuzz_check_message();
        if (kraken_schema_count() != schemas || kraken_enum_count() != enums)
            fuzz_fail("a refused file registered something");
        return 0;
    }
    check_new_schemas(schemas);
    return 0;
}
