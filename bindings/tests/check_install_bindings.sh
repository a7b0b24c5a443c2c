#!/bin/sh
# Usage: check_install_bindings.sh BUILD_DIR
# `meson install` (into a temporary DESTDIR) puts the Python package in a directory that
# /usr/bin/python3 searches and kraken.so in one of lua5.4's C paths, and both load from there.
# TAP output.
set -u
build=$1
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
n=0; failed=0
step() {
    n=$((n + 1)); what=$1; shift
    if out=$("$@" 2>&1); then echo "ok $n - $what"; else
        failed=1; echo "not ok $n - $what"; printf '%s\n' "$out" | sed 's/^/# /'; fi
}
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null 2>&1
pkg=$(find "$dest" -type d -name kraken -path '*dist-packages*' | head -1)
lua_so=$(find "$dest" -name kraken.so -path '*lua/5.4*' | head -1)
lib=$(dirname "$(find "$dest" -name 'libkraken.so.0' | head -1)")
pydir=${pkg#"$dest"}; pydir=$(dirname "$pydir")
luadir=$(dirname "${lua_so#"$dest"}")
step "python package installed ($pydir)" test -f "$pkg/__init__.py" -a -f "$pkg/core.py"
step "$pydir is on /usr/bin/python3's sys.path" /usr/bin/python3 -c \
    "import sys; assert '$pydir' in sys.path, sys.path"
step "import kraken from the installed package" env LD_LIBRARY_PATH="$lib" \
    PYTHONPATH="$dest$pydir" /usr/bin/python3 -c \
    "import kraken; assert kraken.__file__.startswith('$dest'); kraken.Node(nodename='x')"
step "$luadir is in lua5.4's package.cpath" lua5.4 -e \
    "assert(package.cpath:find('$luadir/?.so', 1, true), package.cpath)"
step "require 'kraken' from the installed module" env LD_LIBRARY_PATH="$lib" \
    LUA_CPATH="$dest$luadir/?.so" lua5.4 -e 'local k = require "kraken"; k.node(nil, {nodename = "x"})'
echo "1..$n"
exit $failed
