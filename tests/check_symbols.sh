#!/bin/sh
# Usage: check_symbols.sh libkraken.so
# Fails if the shared library exports any symbol that is not public kraken_ API.
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v -E '^kraken_[a-z0-9]' | grep -v -E '^(KRAKEN_|_init$|_fini$)' )
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c -E '^kraken_[a-z0-9]')
if [ -n "$bad" ]; then
    echo "FAIL: non-API symbols exported:"; echo "$bad" | head -20; exit 1
fi
if [ "$count" -lt 10 ]; then echo "FAIL: only $count kraken_ symbols exported"; exit 1; fi
echo "ok: $count kraken_ symbols, nothing else"
