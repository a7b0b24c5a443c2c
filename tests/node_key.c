/*
 * node_key SECRET_FILE ID: print, in hex, the node key kraken_sync_derive_node_key() derives for
 * node ID from the key in SECRET_FILE (tests/check_readme_keys.sh compares the README's shell
 * recipe with it). Public API only.
 */
#include <kraken/kraken.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: node_key SECRET_FILE ID\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    unsigned char key[4096];
    size_t len = f ? fread(key, 1, sizeof key, f) : 0;
    if (f)
        fclose(f);
    kraken_uuid id;
    uint8_t out[KRAKEN_SYNC_NODE_KEY_LEN];
    if (!f || kraken_uuid_parse(&id, argv[2]) < 0 ||
        kraken_sync_derive_node_key(key, len, &id, out) < 0) {
        fprintf(stderr, "node_key: %s\n", f ? kraken_error_last() : "cannot read the key file");
        return 1;
    }
    for (size_t i = 0; i < sizeof out; i++)
        printf("%02x", out[i]);
    printf("\n");
    return 0;
}
