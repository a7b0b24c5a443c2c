#!/usr/bin/env bash
# The test command: on a fresh Debian 12 machine, installs what the project needs
# (apt-get), builds with warnings as errors, runs the whole suite, runs it again
# in an ASan+UBSan build and under valgrind, runs each fuzzer briefly, and ends
# with one line "N passed, N failed, N skipped" (tests/summarize.py): each distinct
# test counted once, whatever the number of variants it ran in; per-variant figures,
# every failure and every skip are listed above that line. A variant that fails to
# configure or compile is a failure on the line. Exit status 0 only when nothing failed.
#
# Usage: tests/run-all.sh [--quick]   (--quick: normal build only)
set -uo pipefail

cd "$(dirname "$0")/.."
top=$PWD
quick=0
[ "${1:-}" = "--quick" ] && quick=1

# Debian's python3 owns meson's modules and pytest; a pyenv python3 may shadow it.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

packages=(build-essential pkg-config meson ninja-build cmake libevent-dev libcjson-dev check
          libsubunit-dev nanopb libnanopb-dev protobuf-compiler python3-protobuf libprotobuf-dev
          libsodium-dev libyaml-dev swig python3-dev python3-pytest lua5.4 liblua5.4-dev valgrind
          clang libclang-rt-14-dev iproute2 openssl libsystemd-dev libwslay-dev nettle-dev
          python3-websocket curl wrk graphviz)

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

logs=()     # VARIANT=meson testlog.json, for summarize.py
broken=()   # --broken VARIANT=REASON: a build that did not configure or compile
status=0

# setup_and_test VARIANT DIR [meson options...]: configure (fresh), build, test.
# Returns 1 when the build is broken (recorded as a failure of VARIANT).
setup_and_test() {
    local variant=$1 dir=$2; shift 2
    rm -rf "$dir"
    if ! meson setup "$dir" "$@" >"$dir.setup.log" 2>&1; then
        tail -n 30 "$dir.setup.log"
        broken+=(--broken "$variant=meson setup failed (see $dir.setup.log)")
        status=1
        return 1
    fi
    if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
        grep -E -A5 'error|FAILED' "$dir.build.log" | head -n 60
        broken+=(--broken "$variant=compilation failed (see $dir.build.log)")
        status=1
        return 1
    fi
    meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
    logs+=("$variant=$dir/meson-logs/testlog.json")
}

install_packages || { echo "package installation failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

normal_ok=1
setup_and_test normal build -Dwerror=true || normal_ok=0

if [ $quick -eq 0 ]; then
    setup_and_test asan build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbench=false
    # valgrind over the unit suite of the normal build (separate log directory).
    if [ $normal_ok -eq 1 ]; then
        meson test -C build --setup valgrind --suite unit --print-errorlogs --num-processes 2 \
            --logbase valgrind-testlog || status=1
        logs+=("valgrind=build/meson-logs/valgrind-testlog-valgrind.json")  # meson appends the setup name
    else
        broken+=(--broken "valgrind=not run: the normal build is broken")
    fi
    # writes build-fuzz/fuzz-testlog.json (a failed fuzz build is a FAIL entry in it)
    tests/fuzz-smoke.sh "${FUZZ_SECONDS:-20}" || status=1
    logs+=("fuzz=build-fuzz/fuzz-testlog.json")
fi

# The last line must be the count, even if the summariser itself breaks.
summary=$(/usr/bin/python3 tests/summarize.py "${broken[@]}" "${logs[@]}")
rc=$?
printf '%s\n' "$summary"
if [ $rc -gt 1 ] || ! printf '%s\n' "$summary" | tail -n 1 | grep -Eq '^[0-9]+ passed, [0-9]+ failed'; then
    echo "tests/summarize.py failed (exit code $rc)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
[ $rc -eq 0 ] || status=1
exit $status
