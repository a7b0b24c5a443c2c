#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a bounded time.
# Writes build-fuzz/fuzz-testlog.json (one meson-style result line per target).
# Usage: tests/fuzz-smoke.sh [seconds-per-target]
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
seconds=${1:-20}
dir=build-fuzz
rm -rf "$dir"
if ! CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Dbench=false -Db_lundef=false \
        >"$dir.setup.log" 2>&1 || ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    cat "$dir.setup.log" "$dir.build.log" 2>/dev/null | tail -30
    mkdir -p "$dir"
    echo '{"name": "fuzz-build", "result": "FAIL"}' >"$dir/fuzz-testlog.json"
    exit 1
fi
: >"$dir/fuzz-testlog.json"
status=0
for name in json pb url sync rest schema ws module; do
    target=fuzz_$name
    work=$(mktemp -d)
    dict=()
    [ -f "fuzz/$name.dict" ] && dict=(-dict="$top/fuzz/$name.dict")
    if ASAN_OPTIONS=detect_leaks=1 "$dir/fuzz/$target" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=0 "${dict[@]}" -artifact_prefix="$dir/" \
            "$work" "fuzz/corpus/$name" >"$dir/$target.log" 2>&1; then
        result=OK
        echo "fuzz: $target ran ${seconds}s clean"
    else
        result=FAIL; status=1
        echo "fuzz: $target FAILED"; tail -40 "$dir/$target.log"
    fi
    echo "{\"name\": \"$target\", \"result\": \"$result\"}" >>"$dir/fuzz-testlog.json"
    rm -rf "$work"
done
exit $status
