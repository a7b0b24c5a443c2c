#!/bin/sh
# Usage: check_headers.sh CC INCLUDE_DIR header...
# Compiles each public header alone, as C99 with -pedantic -Werror. TAP output (tap.sh).
. "$(dirname "$0")/tap.sh"
cc=$1; inc=$2; shift 2
for h in "$@"; do
    if out=$(printf '#include <kraken/%s>\nint kraken_header_test_dummy;\n' "$h" |
        "$cc" -std=c99 -pedantic -Wall -Wextra -Werror -I"$inc" -x c -c -o /dev/null - 2>&1); then
        tap_ok "$h compiles on its own (C99, -pedantic -Werror)"
    else
        tap_fail "$h does not compile on its own"
        tap_diag "$out"
    fi
done
tap_done
