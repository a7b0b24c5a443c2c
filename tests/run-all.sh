#!/usr/bin/env bash
# The test command: on a fresh Debian 12 machine, installs what the project needs
# (apt-get), builds with warnings as errors, runs the whole suite, runs it again
# in an ASan+UBSan build and under valgrind, runs each fuzzer briefly, and ends
# with one line "N passed, N failed" counting every test that ran.
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
          clang libclang-rt-14-dev iproute2 libsystemd-dev libwslay-dev nettle-dev
          python3-websocket)

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

logs=()
status=0

# setup_and_test DIR [meson options...]: configure (fresh), build, test.
setup_and_test() {
    local dir=$1; shift
    rm -rf "$dir"
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; status=1; return; }
    ninja -C "$dir" || { status=1; return; }
    meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
    logs+=("$dir/meson-logs/testlog.json")
}

install_packages || { echo "package installation failed"; echo "0 passed, 1 failed"; exit 1; }

setup_and_test build -Dwerror=true

if [ $quick -eq 0 ]; then
    setup_and_test build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbench=false
    # valgrind over the unit suite of the normal build (separate log directory).
    if meson test -C build --setup valgrind --suite unit --print-errorlogs --num-processes 2 \
        --logbase valgrind-testlog; then :; else status=1; fi
    logs+=("build/meson-logs/valgrind-testlog-valgrind.json")  # meson appends the setup name
    tests/fuzz-smoke.sh "${FUZZ_SECONDS:-20}" || status=1
    [ -f build-fuzz/fuzz-testlog.json ] && logs+=("build-fuzz/fuzz-testlog.json")
fi

/usr/bin/python3 tests/summarize.py "${logs[@]}" || status=1
exit $status
