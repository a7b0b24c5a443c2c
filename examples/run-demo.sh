#!/usr/bin/env bash
# The main job, for now: build libkraken and print the plan of every node of the
# four-node fixture cluster, plus the mutation graph. Does its own set-up on a
# fresh Debian 12 machine (apt-get, needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
need=(build-essential pkg-config meson ninja-build cmake libevent-dev libcjson-dev check
      libsubunit-dev nanopb libnanopb-dev protobuf-compiler python3-protobuf libsodium-dev)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -d build-demo ] || meson setup build-demo -Dtests=false -Dbench=false >/dev/null
ninja -C build-demo examples/plan >/dev/null
cfg=${1:-tests/fixtures/cluster4.json}
dsc=${2:-tests/fixtures/cluster4-dsc.json}
echo "== plans for $cfg with discovered state $dsc"
build-demo/examples/plan "$cfg" "$dsc"
echo
echo "== plans after a cold start (nothing discovered yet)"
build-demo/examples/plan "$cfg"
echo
echo "== mutation graph (vis.js JSON)"
build-demo/examples/plan -g "$cfg" | tail -n 1
