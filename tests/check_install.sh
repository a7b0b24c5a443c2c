#!/bin/sh
# Usage: check_install.sh BUILD_DIR SOURCE_DIR
# Installs the build into a temporary DESTDIR, then builds every examples/*.c the way
# a tool author would (headers and libraries found only through `pkg-config --cflags
# --libs kraken`, which must bring libevent along) and checks their output on the
# fixture cluster.
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
# Every example, with nothing but the flags pkg-config gives (status.c uses libevent itself).
for example in "$src"/examples/*.c; do
    name=$(basename "$example" .c)
    cc -std=c99 -Wall -Wextra -Werror $san -o "$dest/$name" "$example" $flags ||
        { echo "FAIL: examples/$name.c does not build with \$(pkg-config --cflags --libs kraken)"; exit 1; }
done
fx="$src/tests/fixtures"
LD_LIBRARY_PATH="$libdir" "$dest/plan" "$fx/cluster4.json" "$fx/cluster4-dsc.json" >"$dest/plan.txt"
diff -u "$fx/cluster4.plan.expected" "$dest/plan.txt"
LD_LIBRARY_PATH="$libdir" "$dest/status" "$fx/cluster4.json" "$fx/cluster4-dsc.json" head \
    >"$dest/status.txt"
diff -u "$fx/cluster4.status.expected" "$dest/status.txt"
echo "ok: installed headers + pkg-config --cflags --libs kraken build and run every example"
