#!/bin/sh
# Usage: check_headers.sh CC INCLUDE_DIR header...
# Compiles each public header alone, as C99 with -pedantic -Werror.
cc=$1; inc=$2; shift 2
status=0
for h in "$@"; do
    if printf '#include <kraken/%s>\nint kraken_header_test_dummy;\n' "$h" |
        "$cc" -std=c99 -pedantic -Wall -Wextra -Werror -I"$inc" -x c -c -o /dev/null -; then
        echo "ok: $h"
    else
        echo "FAIL: $h does not compile on its own"; status=1
    fi
done
exit $status
