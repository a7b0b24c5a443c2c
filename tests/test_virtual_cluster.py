"""The virtual cluster (examples/virtual-cluster) end to end: a root kraken-daemon with 16
simulated nodes (modules/simpower.c), each a child kraken-daemon, to full SYNC, checked through
the root's REST API; then every step of the tour (examples/virtual-cluster/tour.py).

Needs KRAKEN_BUILD (the meson build directory holding daemon/kraken-daemon and
modules/simpower.so). Each run takes loopback addresses of its own (127.<150+pid%50>.x.y)."""
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                                "virtual-cluster"))
import tour  # noqa: E402
from vcluster import ROOT_ID, VirtualCluster, node_addr, node_id  # noqa: E402

N = 16


@pytest.fixture(scope="module")
def vc(tmp_path_factory):
    prefix = "127.%d" % (150 + os.getpid() % 50)
    c = VirtualCluster(os.environ["KRAKEN_BUILD"], n=N, prefix=prefix,
                       root_addr=prefix + ".255.1", power_timeout="2s",
                       workdir=str(tmp_path_factory.mktemp("vcluster")))
    c.prepare()
    c.start()
    try:
        c.wait(c.converged, 120, "16 nodes SYNC")
        yield c
    finally:
        # A clean stop (SIGTERM) powers every node off and exits 0 (non-zero under ASan on a leak).
        rc = c.stop_root()
        leftovers = [n for n in c.names() if c.node_pid(n)]
        c.kill_leftovers()
        assert rc == 0, "the root exited %d; log %s" % (rc, c.log_path)
        assert not leftovers, "node daemons left running after the root stopped: %s" % leftovers


def test_sixteen_nodes_reach_sync(vc):
    st, dsc = vc.get("/dsc/nodes")
    assert st == 200
    by_id = {n["id"]: n for n in dsc["nodes"]}
    for i, name in enumerate(vc.names()):
        d = by_id[node_id(name)]
        assert d["physState"] == "POWER_ON" and d["runState"] == "SYNC", d
        # Each node is a real kraken-daemon on its own address, answering for itself.
        st, own = vc.get("/dsc/node/" + node_id(name), host="%s:3141" % node_addr(i, vc.prefix))
        assert st == 200 and own["id"] == node_id(name)
        assert vc.path(name)["steps"] == [] or vc.path(name)["current"] == len(
            vc.path(name)["steps"])
    m = vc.metrics()
    assert m["kraken_sync_children"] == N
    assert vc.cfg("n0001")["parentId"] == ROOT_ID


def test_killed_node_is_power_cycled_and_resyncs(vc):
    assert tour.step_kill(vc, "n0003") < 60


def test_cfg_power_off_powers_down(vc):
    tour.step_power_off(vc, "n0004")


@pytest.mark.parametrize("via", ["cfg", "module"])
def test_hang_backs_off_then_stuck_with_reason(vc, via):
    # The fault in the node's own Cfg (SimPower.Node) or in the module config (`hang`).
    reason = tour.step_hang(vc, "n0005", via=via)
    assert reason.startswith("stuck after 5 failures in a row: power/OFFtoON timed out")


def test_freeze_dispatches_nothing_until_thaw(vc):
    tour.step_freeze(vc, "n0006")


def test_root_restart_power_cycles_no_healthy_node(vc):
    tour.step_restart_root(vc)


def test_node_adopted_after_the_restart_is_recovered_when_it_crashes(vc):
    # n0010 was started by the previous root: the new one watches it by its pid file.
    assert tour.step_kill(vc, "n0010") < 60


def test_busy_node_is_left_alone(vc):
    tour.step_busy(vc, "n0007")


def test_bad_power_config_fails_the_step_with_its_reason(vc):
    # A node without a kraken interface address cannot be started: the step fails, named.
    st, _ = vc.request("POST", "/cfg/node", {"id": node_id("bare"), "nodename": "bare",
                                               "platform": "sim", "parentId": ROOT_ID,
                                               "physState": "POWER_ON"})
    assert st in (200, 201)
    vc.wait(lambda: "no kraken interface address" in (vc.path("bare").get("reason") or ""), 30,
            "the failure reason")
    assert vc.dsc("bare").get("physState") != "POWER_ON"


def test_the_commands_run_prints_work(vc):
    # Every command `run` shows to look at the cluster, run as printed (krakenctl and curl).
    ctl = os.path.join(os.environ["KRAKEN_BUILD"], "daemon", "krakenctl", "krakenctl")
    from vcluster import look_commands
    for cmd, _ in look_commands(vc, ctl):
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip(), (cmd, r.returncode, r.stderr)
    first = node_id("n0001")
    r = subprocess.run([ctl, "-i", vc.rest, "show", first], capture_output=True, text=True)
    assert "n0001" in r.stdout and "SYNC" in r.stdout


def test_unreadable_secret_fails_power_on_naming_the_file(vc):
    # A bad config changes nothing else: the step fails with a one-line reason naming the file.
    vc.set_power_config(secret="/nonexistent/secret")
    try:
        vc.set_cfg("n0008", physState="POWER_OFF", runState="UNKNOWN")
        vc.wait(lambda: vc.dsc("n0008").get("physState") == "POWER_OFF", 30, "n0008 off")
        vc.set_cfg("n0008", physState="POWER_ON", runState="SYNC")
        vc.wait(lambda: (vc.path("n0008").get("reason") or "").endswith(
            "simpower: secret /nonexistent/secret: No such file or directory"), 30,
            "the reason names the secret file")
    finally:
        vc.set_power_config(secret=os.path.join(vc.workdir, "secret"))
    vc.wait(lambda: tour.up(vc, "n0008"), 60, "n0008 back once the secret is readable")


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_hang_fault_freezes_a_running_node_and_thaws_it(vc):
    pid = vc.node_pid("n0009")
    vc.set_power_config(hang="n0009")
    try:
        vc.wait(lambda: proc_state(pid) == "T", 10, "n0009 stopped (SIGSTOP)")
    finally:
        vc.set_power_config(hang="")
    vc.wait(lambda: proc_state(pid) != "T", 10, "n0009 running again (SIGCONT)")
    assert vc.node_pid("n0009") == pid and tour.up(vc, "n0009")


def test_two_level_tree_under_intermediates_reaches_sync(tmp_path):
    # 2 intermediates under the root, 6 nodes under each: the intermediates run simpower for
    # their own nodes, the root sees every node's Dsc through them.
    prefix = "127.%d" % (100 + os.getpid() % 50)
    c = VirtualCluster(os.environ["KRAKEN_BUILD"], n=12, intermediates=2, prefix=prefix,
                       root_addr=prefix + ".255.1", workdir=str(tmp_path / "tree"))
    c.prepare()
    c.start()
    try:
        c.wait(c.converged, 120, "14 nodes SYNC under 2 intermediates")
        assert c.metrics()["kraken_sync_children"] == 2
        inter = node_addr(0, prefix) + ":3141"
        st, text = c.get("/metrics", host=inter)
        assert st == 200 and "\nkraken_sync_children 6\n" in text
        assert c.cfg("n0003")["parentId"] == node_id("n0001")
        # The root powered on only the intermediates; they powered on their own nodes.
        assert c.mutations_dispatched("OFFtoON") == 2
    finally:
        rc = c.stop_root()
        leftovers = [n for n in c.names() if c.node_pid(n)]
        c.stop()
    assert rc == 0 and not leftovers, (rc, leftovers)


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "vcluster.py: error: -n must be 1..60000 and --intermediates >= 0"),
    (["--prefix", "10.0"],
     "vcluster.py: error: --prefix must be 127.N (the nodes live on loopback addresses)"),
    (["--build", "/nonexistent"], "vcluster.py: error: --build /nonexistent: "
     "daemon/kraken-daemon is missing (build it: ninja -C /nonexistent)"),
])
def test_runner_refuses_bad_arguments_in_one_line(args, message):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                          "virtual-cluster", "vcluster.py")
    if "--build" not in args:
        args = ["--build", os.environ["KRAKEN_BUILD"]] + args
    r = subprocess.run([sys.executable, script] + args, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == message, r.stderr


# ---- faults in a node's own Cfg (its SimPower.Node extension) -------------------------------

def reasons_until(vc, name, cond, timeout, what):
    """Wait for cond(); return every plan failure reason of the node seen meanwhile."""
    seen = set()

    def poll():
        r = vc.path(name).get("reason")
        if r:
            seen.add(r)
        return cond()
    vc.wait(poll, timeout, what)
    return seen


def power_off_then_on(vc, name):
    vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 60, "%s off" % name)
    vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    vc.wait(lambda: tour.up(vc, name), 60, "%s back on" % name)


@pytest.mark.parametrize("fault, reason, phys", [
    ("FAIL", "simulated failure (fault FAIL, failpercent 100)", "POWER_ON"),
    # A step that times out sets its fail_to: the machine is taken to hang.
    ("NO_ANSWER", "power/ONtoOFF timed out after 2000 ms", "PHYS_HANG"),
])
def test_node_cfg_fault_acts_on_its_next_step(vc, fault, reason, phys):
    name = "n0011"
    pid = vc.node_pid(name)
    vc.set_node_sim(name, fault=fault)
    assert vc.cfg(name)["extensions"][-1] == {"@type": "type.googleapis.com/SimPower.Node",
                                              "fault": fault}
    try:
        vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
        vc.wait(lambda: reason in (vc.path(name).get("reason") or ""), 30,
                "%s's ONtoOFF fails: %s" % (name, reason))
        # Nothing happened to the machine: the same process runs.
        assert vc.node_pid(name) == pid and vc.dsc(name)["physState"] == phys
    finally:
        vc.set_node_sim(name, fault=None)
    # Cleared in its Cfg: the next attempt (after the back-off) powers it off.
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF" or vc.path(name)["stuck"], 60,
            "%s off once the fault is cleared" % name)
    if vc.path(name)["stuck"]:  # the back-off ran out first: the operator's change unsticks it
        vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    power_off_then_on(vc, name)


def test_node_cfg_failpercent_fails_a_share_of_steps_and_retries_succeed(vc):
    # 50 % of this node's steps fail at random (seeded: the same draws every run); the engine
    # retries each failed step, so the node still gets where its Cfg says. A power cycle is
    # six steps (ONtoOFF, OFFtoON, NONEtoWAIT, WAITtoINIT, ...).
    name = "n0012"
    vc.set_node_sim(name, failpercent=50)
    seen = set()
    try:
        for phys, run in (("POWER_OFF", "UNKNOWN"), ("POWER_ON", "SYNC")):
            vc.set_cfg(name, physState=phys, runState=run)
            seen |= reasons_until(vc, name, lambda: (vc.dsc(name).get("physState") == phys and
                                                     not vc.path(name)["steps"][
                                                         vc.path(name)["current"]:]) or
                                  vc.path(name)["stuck"], 90, "%s %s despite failures" %
                                  (name, phys))
            assert not vc.path(name)["stuck"], vc.path(name)
    finally:
        vc.set_node_sim(name, failpercent=None)
    assert any("simulated failure (random, failpercent 50)" in r for r in seen), seen
    vc.wait(lambda: tour.up(vc, name), 60, "%s SYNC" % name)


def test_node_cfg_poweron_delay_wins_over_the_module_config(vc):
    name = "n0013"
    vc.set_node_sim(name, poweron=1500)
    try:
        vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
        vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 30, "%s off" % name)
        t0 = time.monotonic()
        vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
        vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_ON", 30, "%s on" % name)
        assert time.monotonic() - t0 >= 1.5  # the module's own poweron is 200 ms
    finally:
        vc.set_node_sim(name, poweron=None)
    vc.wait(lambda: tour.up(vc, name), 60, "%s SYNC" % name)


def test_node_cfg_with_a_bad_fault_name_is_refused_in_one_line(vc):
    cfg = vc.cfg("n0014")
    cfg["extensions"].append({"@type": "type.googleapis.com/SimPower.Node", "fault": "MELT"})
    st, out = vc.request("PUT", "/cfg/node/" + node_id("n0014"), cfg)
    assert st == 400 and "MELT" in out["error"] and "\n" not in out["error"], out
    assert len(vc.cfg("n0014")["extensions"]) == 1


def test_net_auto_falls_back_to_loopback_and_says_why(monkeypatch, capsys):
    # Where namespaces are not allowed (here: as if not root), auto picks loopback addresses
    # and the first line says why; --net loopback never probes.
    import vcluster
    monkeypatch.setattr(vcluster.os, "geteuid", lambda: 1000)
    why = "not root (namespaces and a bridge need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    assert vcluster.choose_net("auto", 16) == ("loopback", why)
    assert vcluster.choose_net("netns", 16) == ("loopback", why)
    assert vcluster.choose_net("loopback", 16) == ("loopback", None)
    vcluster.say_net(VirtualCluster(os.environ["KRAKEN_BUILD"]), "auto", why)
    assert capsys.readouterr().out == (
        "network: each node on a loopback address of its own, 127.253.x.y (--net auto; network "
        "namespaces: %s)\n" % why)
