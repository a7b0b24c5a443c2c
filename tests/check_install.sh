#!/bin/sh
# Usage: check_install.sh BUILD_DIR SOURCE_DIR
# Installs the build into a temporary DESTDIR, then builds examples/plan.c the way a
# tool author would (headers and library found only through pkg-config) and checks
# its output on the fixture cluster. TAP output (tap.sh); a failed step ends the run.
. "$(dirname "$0")/tap.sh"
build=$1; src=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

# step DESCRIPTION COMMAND...: one check; on failure, show its output and stop.
step() {
    what=$1; shift
    if out=$("$@" 2>&1); then
        tap_ok "$what"
    else
        tap_fail "$what"
        tap_diag "$out"
        tap_done
    fi
}

step "meson install into a DESTDIR" meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
pc=$(find "$dest" -name kraken.pc | head -n 1)
step "kraken.pc installed" test -n "$pc"
step "headers installed under include/kraken/" test -n "$(find "$dest" -path '*/include/kraken/kraken.h')"
export PKG_CONFIG_PATH="$(dirname "$pc")"
prefix=$(pkg-config --variable=prefix kraken)
relocate="--define-variable=prefix=$dest$prefix"
flags=$(pkg-config "$relocate" --cflags --libs kraken)
libdir=$(pkg-config "$relocate" --variable=libdir kraken)
# A sanitizer build installs an instrumented library: build the example the same way.
san=""
ldd "$libdir/libkraken.so" | grep -q libasan && san="-fsanitize=address,undefined"
# shellcheck disable=SC2086 # flags are word lists
step "examples/plan.c builds with pkg-config flags only" \
    cc -std=c99 -Wall -Wextra -Werror $san -o "$dest/plan" "$src/examples/plan.c" $flags
step "the installed example runs on the fixture cluster" \
    sh -c 'LD_LIBRARY_PATH="$1" "$2" "$3" "$4" >"$5"' sh "$libdir" "$dest/plan" \
    "$src/tests/fixtures/cluster4.json" "$src/tests/fixtures/cluster4-dsc.json" "$dest/out.txt"
step "its output matches cluster4.plan.expected" \
    diff -u "$src/tests/fixtures/cluster4.plan.expected" "$dest/out.txt"
tap_done
