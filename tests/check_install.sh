#!/bin/sh
# Usage: check_install.sh BUILD_DIR SOURCE_DIR
# Installs the build into a temporary DESTDIR, then builds examples/plan.c the way a
# tool author would (headers and library found only through pkg-config) and checks
# its output on the fixture cluster.
set -eu
build=$1; src=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(find "$dest" -name kraken.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: kraken.pc not installed"; exit 1; }
[ -n "$(find "$dest" -path '*/include/kraken/kraken.h')" ] ||
    { echo "FAIL: headers not installed under include/kraken/"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
prefix=$(pkg-config --variable=prefix kraken)
relocate="--define-variable=prefix=$dest$prefix"
flags=$(pkg-config "$relocate" --cflags --libs kraken)
libdir=$(pkg-config "$relocate" --variable=libdir kraken)
# A sanitizer build installs an instrumented library: build the example the same way.
san=""
ldd "$libdir/libkraken.so" | grep -q libasan && san="-fsanitize=address,undefined"
cc -std=c99 -Wall -Wextra -Werror $san -o "$dest/plan" "$src/examples/plan.c" $flags
LD_LIBRARY_PATH="$libdir" "$dest/plan" "$src/tests/fixtures/cluster4.json" \
    "$src/tests/fixtures/cluster4-dsc.json" >"$dest/out.txt"
diff -u "$src/tests/fixtures/cluster4.plan.expected" "$dest/out.txt"
echo "ok: installed headers + pkg-config + libkraken.so build and run examples/plan.c"
