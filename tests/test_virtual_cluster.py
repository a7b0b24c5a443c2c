"""The virtual cluster (examples/virtual-cluster) end to end: a root kraken-daemon with 16
simulated nodes (modules/simpower.c), each a child kraken-daemon, to full SYNC, checked through
the root's REST API; then every step of the tour (examples/virtual-cluster/tour.py).

Needs KRAKEN_BUILD (the meson build directory holding daemon/kraken-daemon and
modules/simpower.so). Each run takes loopback addresses of its own (127.<150+pid%50>.x.y)."""
import os
import subprocess
import sys

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


def test_hang_backs_off_then_stuck_with_reason(vc):
    reason = tour.step_hang(vc, "n0005")
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
