#!/usr/bin/python3
"""A scripted tour of a virtual Kraken cluster: what the state engine does when machines crash,
hang, are switched off, are someone else's, or when the root itself restarts.

Each step acts through the root's REST API (or on the node processes, as a failure would),
waits for the outcome with a deadline and checks it: the integration test
(tests/test_virtual_cluster.py) runs these same steps.

    tour.py --build DIR [-n N] [--workdir DIR] [--net auto|netns|loopback] [--subnet 10.N]
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vcluster import VirtualCluster, choose_net, say_net  # noqa: E402


def say(text):
    print("\n== " + text, flush=True)


def plan_of(vc, name):
    p = vc.path(name)
    return "%s, plan %s, failures %d%s" % (p["state"], " -> ".join(p["steps"]) or "(none)",
                                            p["failures"],
                                            ", reason: " + p["reason"] if p.get("reason") else "")


def up(vc, name, pid=None):
    """The node is POWER_ON and SYNC in the root's Dsc, on a process other than pid."""
    d = vc.dsc(name)
    now = vc.node_pid(name)
    return (d.get("physState") == "POWER_ON" and d.get("runState") == "SYNC" and now is not None
            and now != pid)


def step_kill(vc, name="n0003"):
    say("1. kill %s's kraken-daemon (kill -9): the root sees the machine fail, power-cycles it, "
        "it boots and syncs again" % name)
    pid = vc.node_pid(name)
    since = vc.log_size()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    vc.wait(lambda: up(vc, name, pid), 60, "%s back to SYNC" % name)
    took = time.monotonic() - t0
    assert vc.mutations_dispatched("OFFtoON", since) >= 1
    print("   %s: pid %d killed, recovered as pid %d in %.2f s" % (name, pid, vc.node_pid(name),
                                                                    took))
    return took


def step_power_off(vc, name="n0004"):
    say("2. set %s's Cfg PhysState to POWER_OFF: it is powered down (and back on after)" % name)
    vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF" and vc.node_pid(name) is None,
            30, "%s POWER_OFF" % name)
    print("   %s Dsc: PhysState %s, no process" % (name, vc.dsc(name)["physState"]))
    vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    vc.wait(lambda: up(vc, name), 60, "%s back on" % name)
    print("   Cfg POWER_ON again: %s is back, SYNC" % name)


def set_hang(vc, name, on, via):
    """The hang-at-power-on fault, in the node's own Cfg (its SimPower.Node `fault`) or in the
    sim power module's config (its `hang` list of nodenames)."""
    if via == "cfg":
        vc.set_node_sim(name, fault="HANG_ON_POWER_ON" if on else None)
    else:
        vc.set_power_config(hang=name if on else "")


def step_hang(vc, name="n0005", via="cfg"):
    say("3. make %s hang at every power-on (%s), then crash it: recovery with back-off, STUCK "
        "after repeated failures, the reason shown" %
        (name, "its Cfg: SimPower.Node fault HANG_ON_POWER_ON" if via == "cfg"
         else "the power module's config: hang " + name))
    set_hang(vc, name, True, via)
    pid = vc.node_pid(name)
    os.kill(pid, signal.SIGKILL)
    last = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        p = vc.path(name)
        line = plan_of(vc, name)
        if line != last:
            print("   " + line, flush=True)
            last = line
        if p["stuck"]:
            break
        time.sleep(0.2)
    p = vc.path(name)
    assert p["stuck"] and p.get("reason"), p
    print("   STUCK: %s" % p["reason"])
    say("   clear the fault; the operator's Cfg change (POWER_OFF, then POWER_ON) unsticks it")
    set_hang(vc, name, False, via)
    vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 30, "%s off" % name)
    vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    vc.wait(lambda: up(vc, name), 60, "%s back after the hang" % name)
    print("   %s is SYNC again" % name)
    return p["reason"]


def step_freeze(vc, name="n0006"):
    say("4. freeze the engine, crash %s: nothing is done while frozen; thaw: it recovers" % name)
    st, _ = vc.request("POST", "/sme/freeze")
    assert st == 200 and vc.get("/sme/frozen")[1]["frozen"] is True
    pid = vc.node_pid(name)
    since = vc.log_size()
    os.kill(pid, signal.SIGKILL)
    # The root learns of the crash (the power controller's discovery) but plans nothing.
    vc.wait(lambda: vc.dsc(name).get("physState") == "PHYS_HANG" or
            vc.dsc(name).get("runState") == "ERROR", 30, "%s's failure seen" % name)
    vc.wait(lambda: vc.path(name)["state"] == "FROZEN", 10, "%s's plan FROZEN" % name)
    assert vc.mutations_dispatched("(?:HANGtoOFF|ONtoOFF|OFFtoON)", since) == 0
    print("   frozen: %s is down, %s" % (name, plan_of(vc, name)))
    st, _ = vc.request("POST", "/sme/thaw")
    assert st == 200
    vc.wait(lambda: up(vc, name, pid), 60, "%s recovered after thaw" % name)
    print("   thawed: %s recovered" % name)


def step_restart_root(vc):
    say("5. crash and restart the root (kill -9): the nodes keep running, the new root "
        "discovers them powered on and power-cycles none (SPEC 4.3 scenario 7)")
    pids = {n: vc.node_pid(n) for n in vc.names()}
    vc.stop_root(signal.SIGKILL)
    since = vc.log_size()
    t0 = time.monotonic()
    vc.start()
    vc.wait(lambda: vc.converged(), 120, "every node SYNC after the root restart")
    took = time.monotonic() - t0
    for verb in ("OFFtoON", "ONtoOFF", "HANGtoOFF"):
        assert vc.mutations_dispatched(verb, since) == 0, verb
    assert {n: vc.node_pid(n) for n in vc.names()} == pids
    print("   root back; all %d nodes SYNC again in %.2f s, 0 power-cycled, same pids" %
          (len(pids), took))
    return took


def step_busy(vc, name="n0007"):
    say("6. mark %s BUSY (someone else's, e.g. a running job) and ask for POWER_OFF: it is left "
        "alone; FREE: it powers off" % name)
    pid = vc.node_pid(name)
    vc.set_cfg(name, busy="BUSY", physState="POWER_OFF", runState="UNKNOWN")
    vc.wait(lambda: vc.path(name)["state"] == "BUSY", 10, "%s BUSY" % name)
    assert vc.dsc(name).get("physState") == "POWER_ON" and vc.node_pid(name) == pid
    print("   BUSY: %s stays POWER_ON (pid %d), %s" % (name, pid, plan_of(vc, name)))
    vc.set_cfg(name, busy="FREE")
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 30, "%s off once FREE" % name)
    print("   FREE: %s powered off" % name)
    vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    vc.wait(lambda: up(vc, name), 60, "%s back on" % name)


STEPS = [step_kill, step_power_off, step_hang, step_freeze, step_restart_root, step_busy]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("-n", "--nodes", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/kraken-vcluster-tour-%d" % os.getuid())
    ap.add_argument("--net", choices=("auto", "netns", "loopback"), default="auto",
                    help="as vcluster.py: netns when this machine allows it (auto), or not")
    ap.add_argument("--subnet", default="10.212", help="netns mode: SUBNET.x.y/16 (10.212)")
    a = ap.parse_args()
    n = max(a.nodes, 7)
    net, why = choose_net(a.net, n)
    if why and a.net == "netns":
        ap.error("--net netns: " + why)
    vc = VirtualCluster(a.build, n=n, workdir=a.workdir, power_timeout="2s", net=net,
                        subnet=a.subnet)
    say_net(vc, a.net, why)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop, remove namespaces
    try:
        vc.prepare()
        vc.start()
        vc.wait(vc.converged, 120, "every node SYNC")
        print("a virtual cluster of %d nodes is SYNC (root REST http://%s, log %s)" %
              (vc.n, vc.rest, vc.log_path))
        for step in STEPS:
            step(vc)
        print("\nthe tour is over: every node is SYNC again")
    finally:
        vc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
