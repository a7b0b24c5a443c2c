#!/bin/sh
# Sync across network namespaces: the parent and each child in its own namespace, joined by
# veth pairs (10.200.<i>.1 <-> 10.200.<i>.2), driven by test_sync_procs.py --netns (TAP).
# Reports "1..0 # SKIP" (a visible skip) when namespaces cannot be created here (not root,
# no CAP_SYS_ADMIN, no iproute2).
#
# Usage: test_sync_netns.sh SYNC_NODE TEST_SYNC_PROCS_PY
set -u
. "$(dirname "$0")/tap.sh"
node=$1
driver=$2
probe="ksprobe$$"
if ! command -v ip >/dev/null 2>&1; then
    tap_skip_all "iproute2 'ip' not found"
fi
if ! ip netns add "$probe" 2>/dev/null; then
    tap_skip_all "'ip netns add' is not permitted here (needs root / CAP_SYS_ADMIN)"
fi
ip netns del "$probe"
exec /usr/bin/python3 "$driver" "$node" --netns
