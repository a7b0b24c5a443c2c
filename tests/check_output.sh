#!/bin/sh
# Usage: check_output.sh EXPECTED_FILE PROGRAM [ARGS...]
# Runs PROGRAM; one TAP check that it exits 0 and one that its stdout equals EXPECTED_FILE.
. "$(dirname "$0")/tap.sh"
expected=$1; shift
what="$(basename "$1") $(basename "$expected" .expected)"
out=$("$@")
rc=$?
if [ $rc -eq 0 ]; then tap_ok "$what: exits 0"; else tap_fail "$what: exited $rc"; fi
if diff_out=$(printf '%s\n' "$out" | diff -u "$expected" - 2>&1); then
    tap_ok "$what: output matches $(basename "$expected")"
else
    tap_fail "$what: output differs from $(basename "$expected")"
    tap_diag "$diff_out"
fi
tap_done
