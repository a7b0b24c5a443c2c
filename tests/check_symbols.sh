#!/bin/sh
# Usage: check_symbols.sh libkraken.so
# Fails if the shared library exports any symbol that is not public kraken_ API. TAP output.
. "$(dirname "$0")/tap.sh"
lib=$1
names=$(nm -D --defined-only "$lib" | awk '{print $3}')
bad=$(printf '%s\n' "$names" | grep -v -E '^kraken_[a-z0-9]' | grep -v -E '^(KRAKEN_|_init$|_fini$)')
count=$(printf '%s\n' "$names" | grep -c -E '^kraken_[a-z0-9]')
if [ -z "$bad" ]; then
    tap_ok "no symbols exported beyond kraken_* API"
else
    tap_fail "non-API symbols exported"
    tap_diag "$(printf '%s\n' "$bad" | head -20)"
fi
if [ "$count" -ge 10 ]; then
    tap_ok "$count kraken_* symbols exported"
else
    tap_fail "only $count kraken_* symbols exported"
fi
tap_done
