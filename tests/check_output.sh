#!/bin/sh
# Usage: check_output.sh EXPECTED_FILE PROGRAM [ARGS...]
# Runs PROGRAM and fails (showing a diff) unless its stdout equals EXPECTED_FILE.
expected=$1; shift
out=$("$@") || { echo "FAIL: $* exited $?"; exit 1; }
if printf '%s\n' "$out" | diff -u "$expected" -; then
    echo "ok: output of $(basename "$1") matches $(basename "$expected")"
else
    echo "FAIL: output differs from $expected"; exit 1
fi
