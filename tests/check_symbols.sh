#!/bin/sh
# Usage: check_symbols.sh CC LIBKRAKEN_SO KRAKEN_MAP INCLUDE_DIR
#
# The ABI check. Three sets must be equal:
#   declared  - functions declared in the public headers (include/kraken/*.h, via kraken.h)
#   listed    - names in lib/kraken.map under the version node KRAKEN_1
#   exported  - symbols libkraken.so exports (each must carry the version KRAKEN_1)
# Each difference is reported with the exact fix, e.g.
#   MISSING kraken_foo: declared in a public header but not in lib/kraken.map;
#           add this line to the KRAKEN_1 global list (alphabetical order):     kraken_foo;
set -eu
export LC_ALL=C # one sort order for the map check, whatever the locale
. "$(dirname "$0")/tap.sh"
cc=$1; lib=$2; map=$3; inc=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Comments stripped by the preprocessor, so only real declarations count.
"$cc" -E -P -I "$inc" "$inc/kraken/kraken.h" |
    grep -oE '\bkraken_[a-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:](]//g' | sort -u >"$tmp/declared"
# Names between "KRAKEN_1 {" and "local:", one "name;" per line.
sed -n '/^KRAKEN_1 {/,/local:/p' "$map" | grep -oE '^[[:space:]]+kraken_[a-z0-9_]+;' |
    tr -d ' ;\t' | sort >"$tmp/listed_raw"
sort -u "$tmp/listed_raw" >"$tmp/listed"
# Defined dynamic symbols as "name|version" (nm prints "name@@VERSION"; the
# version node itself shows up as an absolute symbol "KRAKEN_1" and is skipped).
nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@@*/|/' >"$tmp/exported_versioned"
cut -d'|' -f1 "$tmp/exported_versioned" | sort -u >"$tmp/exported"

fail=0
if ! cmp -s "$tmp/listed_raw" "$tmp/listed"; then
    echo "# FAIL: lib/kraken.map lists a name twice or out of order:"
    diff "$tmp/listed_raw" "$tmp/listed" | sed -n 's/^[<>] /#     /p' | head -5
    fail=1
fi
for s in $(comm -23 "$tmp/declared" "$tmp/listed"); do
    echo "# MISSING $s: declared in a public header but not in lib/kraken.map;"
    echo "#         add this line to the KRAKEN_1 global list (alphabetical order):     $s;"
    fail=1
done
for s in $(comm -13 "$tmp/declared" "$tmp/listed"); do
    echo "# EXTRA $s: listed in lib/kraken.map but declared in no public header;"
    echo "#       remove the line '    $s;' from lib/kraken.map (or declare it in include/kraken/)"
    fail=1
done
for s in $(comm -23 "$tmp/listed" "$tmp/exported"); do
    echo "# UNDEFINED $s: listed in lib/kraken.map but libkraken.so does not define it;"
    echo "#           implement it in lib/ (non-static) or remove its line from lib/kraken.map"
    fail=1
done
for s in $(comm -13 "$tmp/listed" "$tmp/exported"); do
    echo "# LEAK $s: exported by libkraken.so but not listed in lib/kraken.map (internals, nanopb"
    echo "#      descriptors and libraries linked in must stay local)"
    fail=1
done
for s in $(cat "$tmp/exported"); do
    v=$(grep "^$s|" "$tmp/exported_versioned" | head -n 1 | cut -d'|' -f2)
    if [ "$v" != "KRAKEN_1" ]; then
        echo "# UNVERSIONED $s: exported with version '${v:-none}', expected KRAKEN_1"
        fail=1
    fi
done
if [ "$fail" -ne 0 ]; then
    tap_fail "the exported ABI differs from lib/kraken.map (see the lines above)"
else
    tap_ok "$(wc -l <"$tmp/listed") symbols, each declared in include/kraken/, listed in" \
        "lib/kraken.map and exported as KRAKEN_1; nothing else exported"
fi
tap_done
