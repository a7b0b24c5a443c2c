#!/bin/sh
# Usage: check_install.sh BUILD_DIR SOURCE_DIR
# Installs the build into a temporary DESTDIR, then builds every examples/*.c the way
# a tool author would (headers and libraries found only through `pkg-config --cflags
# --libs kraken`, which must bring libevent along) and checks their output on the
# fixture cluster. TAP output (tap.sh); a failed step ends the run.
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
# Every example, with nothing but the flags pkg-config gives (status.c calls libevent itself,
# so libevent must come from kraken's Requires).
for example in "$src"/examples/*.c; do
    name=$(basename "$example" .c)
    # shellcheck disable=SC2086 # flags are word lists
    step "examples/$name.c builds with \$(pkg-config --cflags --libs kraken) only" \
        cc -std=c99 -Wall -Wextra -Werror $san -o "$dest/$name" "$example" $flags
done
fx="$src/tests/fixtures"
step "the installed plan example runs on the fixture cluster" \
    sh -c 'LD_LIBRARY_PATH="$1" "$2" "$3" "$4" >"$5"' sh "$libdir" "$dest/plan" \
    "$fx/cluster4.json" "$fx/cluster4-dsc.json" "$dest/plan.txt"
step "its output matches cluster4.plan.expected" \
    diff -u "$fx/cluster4.plan.expected" "$dest/plan.txt"
step "the installed status example runs on the fixture cluster" \
    sh -c 'LD_LIBRARY_PATH="$1" "$2" "$3" "$4" head >"$5"' sh "$libdir" "$dest/status" \
    "$fx/cluster4.json" "$fx/cluster4-dsc.json" "$dest/status.txt"
step "its output matches cluster4.status.expected" \
    diff -u "$fx/cluster4.status.expected" "$dest/status.txt"
tap_done
