#!/bin/sh
# Sync across network namespaces: the parent and each child in its own namespace, joined by
# veth pairs (10.200.<i>.1 <-> 10.200.<i>.2), driven by test_sync_procs.py --netns.
# Exit 77 (skipped) when namespaces cannot be created here (not root, no CAP_SYS_ADMIN,
# no iproute2).
#
# Usage: test_sync_netns.sh SYNC_NODE TEST_SYNC_PROCS_PY
set -u
node=$1
driver=$2
probe="ksprobe$$"
if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: iproute2 'ip' not found"
    exit 77
fi
if ! ip netns add "$probe" 2>/dev/null; then
    echo "SKIP: 'ip netns add' is not permitted here (needs root / CAP_SYS_ADMIN)"
    exit 77
fi
ip netns del "$probe"
exec /usr/bin/python3 "$driver" "$node" --netns
