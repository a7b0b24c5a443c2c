#!/usr/bin/env bash
# Mutation check: plant each bug of tests/mutants/mutants.txt in a scratch copy of the tree,
# build, run the normal unit suites (`meson test --suite unit`; a mutant's optional "tests:"
# line names other meson tests, e.g. the daemon's), and report whether a test caught it. Run on purpose (it takes minutes), not in CI; record the table in doc/TESTING.md.
#
# Usage: tests/mutants/run.sh [NAME...]      (default: every mutant)
# Environment: MUTANTS_DIR  scratch directory (default /tmp/kraken-mutants-$USER)
#              MUTANTS_TIMEOUT  meson --timeout-multiplier for each run (default 0.5)
# Prints one line per mutant and a markdown table in
# $MUTANTS_DIR/results.md. Verdicts: CAUGHT (a unit test failed, and does not fail again on
# the unmodified tree), SURVIVED (all passed), FLAKY (the only failures recur without the
# mutant), STALE (the snippet is no longer in the source: update mutants.txt), BROKEN (the
# mutant does not compile). Exit status 0 only when every mutant was caught.
set -uo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

top=$(cd "$(dirname "$0")/../.." && pwd)
list="$top/tests/mutants/mutants.txt"
helper="/usr/bin/python3 $top/tests/mutants/mutate.py"
work=${MUTANTS_DIR:-/tmp/kraken-mutants-$(id -un)}
mult=${MUTANTS_TIMEOUT:-0.5}

# A scratch copy of the working tree (tracked and new files; no build directories).
rm -rf "$work"
mkdir -p "$work/src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"
src="$work/src"
build="$work/build"

unit_tests() { # LOG [TEST...]: run the unit suites (or the tests named); failures are read
               # from the meson log LOG afterwards
    local log=$1; shift
    local which=(--suite unit)
    [ $# -gt 0 ] && which=("$@")
    meson test -C "$build" --num-processes 2 --timeout-multiplier "$mult" --logbase "$log" \
        "${which[@]}" >"$work/$log.out" 2>&1
}

echo "mutants: scratch copy in $src"
if ! meson setup "$build" "$src" -Dbench=false >"$work/setup.log" 2>&1 ||
   ! ninja -C "$build" >"$work/build.log" 2>&1; then
    echo "the unmodified tree does not build (see $work/setup.log, $work/build.log)"; exit 2
fi
if ! unit_tests baseline; then
    echo "the unmodified tree fails its unit tests: $($helper failures "$build/meson-logs/baseline.json")"
    exit 2
fi

names=("$@")
[ ${#names[@]} -eq 0 ] && mapfile -t names < <($helper list "$list")

results="$work/results.tsv"
: >"$results"
caught=0; total=0
for name in "${names[@]}"; do
    total=$((total + 1))
    if ! $helper apply "$list" "$name" "$src" 2>"$work/$name.apply"; then
        verdict=STALE; by="snippet not found once in the source: $(cat "$work/$name.apply")"
    elif ! ninja -C "$build" >"$work/$name.build.log" 2>&1; then
        verdict=BROKEN; by="does not compile (see $work/$name.build.log)"
    elif read -r -a tests <<<"$($helper tests "$list" "$name")"; unit_tests "$name" "${tests[@]}"; then
        verdict=SURVIVED; by="-"
    else
        verdict=CAUGHT
    fi
    $helper revert "$list" "$name" "$src"
    if [ "$verdict" = CAUGHT ]; then
        # A failure that the unmodified tree repeats is the test's own flakiness, not a catch.
        read -r -a again <<<"$($helper failed-tests "$build/meson-logs/$name.json")"
        ninja -C "$build" >/dev/null 2>&1
        clean=""
        if [ ${#again[@]} -gt 0 ]; then
            meson test -C "$build" --num-processes 2 --timeout-multiplier "$mult" \
                --logbase "$name.clean" "${again[@]}" >"$work/$name.clean.out" 2>&1
            clean="$build/meson-logs/$name.clean.json"
        fi
        by=$($helper confirmed "$build/meson-logs/$name.json" $clean)
        if [ -z "$by" ]; then
            verdict=FLAKY; by="only failures that recur without the mutant: $($helper failures "$build/meson-logs/$name.json")"
        else
            caught=$((caught + 1))
        fi
    fi
    printf '%-32s %-8s %s\n' "$name" "$verdict" "$by"
    printf '%s\t%s\t%s\n' "$name" "$verdict" "$by" >>"$results"
done
ninja -C "$build" >/dev/null 2>&1 # back to the unmodified tree

$helper table "$list" "$results" >"$work/results.md"
echo "$caught of $total mutants caught (table: $work/results.md)"
[ "$caught" -eq "$total" ]
