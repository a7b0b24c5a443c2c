#!/usr/bin/python3
"""Virtual cluster figures (doc/PERFORMANCE.md, "Virtual cluster"): time from the root's start
to every node POWER_ON and SYNC, peak memory (VmHWM) of the root and of the children, and the
time to recover one killed node, for each size given.

    bench/bench_vcluster.py [--netns] BUILD_DIR [SIZE[/K] ...]    default: 16 100 1000 1000/10

SIZE/K puts the nodes under K intermediate instances. --netns: each node in its own network
namespace (vcluster.py --net netns; needs root); the time to make the namespaces, veths and
bridge is reported apart ("network"), start to all SYNC counts from the root's start as in
loopback mode. One line per run, then a Markdown table.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                                "virtual-cluster"))
from vcluster import VirtualCluster, node_name  # noqa: E402


def hwm_kib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def private_kib(pid):
    """Memory only this process uses (Private_Clean + Private_Dirty): what each more node costs."""
    total = 0
    try:
        for line in open("/proc/%d/smaps_rollup" % pid):
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        pass
    return total


def run(build, n, k, net):
    vc = VirtualCluster(build, n=n, intermediates=k, net=net, subnet="10.211",
                        workdir="/tmp/kraken-bench-vcluster-%s%d" %
                        ("netns-" if net == "netns" else "", os.getuid()), say=lambda _: 0)
    t0 = time.monotonic()
    vc.prepare()
    network = time.monotonic() - t0
    vc.start()
    try:
        vc.wait(vc.converged, 600, "%d nodes SYNC" % n)
        synced = time.monotonic() - vc.started
        pids = [p for p in (vc.node_pid(x) for x in vc.names()) if p]
        kids = sorted(hwm_kib(p) for p in pids)
        inter = [hwm_kib(vc.node_pid(node_name(i))) for i in range(k)]
        leaves = kids if not k else sorted(hwm_kib(vc.node_pid(node_name(i)))
                                           for i in range(k, k + n))
        root = hwm_kib(vc.proc.pid)
        priv = sorted(private_kib(vc.node_pid(node_name(i))) for i in range(k, k + n))
        # Recover one killed leaf: kill -9 to POWER_ON + SYNC on a new process.
        name = node_name(k + n // 2)
        old = vc.node_pid(name)
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)

        def back():
            d = vc.dsc(name)
            p = vc.node_pid(name)
            return d.get("runState") == "SYNC" and d.get("physState") == "POWER_ON" and p and \
                p != old
        vc.wait(back, 120, "recovery")
        recover = time.monotonic() - t0
    finally:
        vc.stop()
    return {"n": n, "k": k, "sync_s": synced, "root_mib": root / 1024.0,
            "leaf_med_mib": leaves[len(leaves) // 2] / 1024.0, "leaf_max_mib": leaves[-1] / 1024.0,
            "inter_max_mib": max(inter) / 1024.0 if inter else 0, "recover_s": recover,
            "leaf_priv_mib": priv[len(priv) // 2] / 1024.0, "net_s": network}


def main():
    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C: each run's finally stops its cluster
    # and removes its namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = sys.argv[1:]
    net = "netns" if "--netns" in args else "loopback"
    args = [a for a in args if a != "--netns"]
    if not args:
        print(__doc__)
        return 2
    sizes = args[1:] or ["16", "100", "1000", "1000/10"]
    rows = []
    for s in sizes:
        n, _, k = s.partition("/")
        r = run(args[0], int(n), int(k or 0), net)
        rows.append(r)
        print("n=%(n)d k=%(k)d: network %(net_s).2f s, all SYNC %(sync_s).2f s, "
              "root %(root_mib).1f MiB, leaf median "
              "%(leaf_med_mib).2f max %(leaf_max_mib).2f MiB, intermediate max "
              "%(inter_max_mib).1f MiB, recover one killed node %(recover_s).2f s" % r,
              flush=True)
    print("\n| nodes | intermediates | network set-up | start to all SYNC | root peak RSS | "
          "child peak RSS "
          "(median / max) | child private memory (median) | intermediate peak RSS | recover a killed "
          "node |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r["net"] = "%.2f s" % r["net_s"] if net == "netns" else "-"
        print("| %(n)d | %(k)d | %(net)s | %(sync_s).2f s | %(root_mib).1f MiB | "
              "%(leaf_med_mib).2f / "
              "%(leaf_max_mib).2f MiB | %(leaf_priv_mib).2f MiB | %(inter_max_mib).1f MiB | "
              "%(recover_s).2f s |" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
