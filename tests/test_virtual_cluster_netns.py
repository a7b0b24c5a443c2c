"""The virtual cluster in network namespace mode (examples/virtual-cluster, --net netns): each
simulated node's kraken-daemon in a network namespace of its own, with an interface `kraken`
holding the node's address, on a bridge next to the root. 16 nodes to full SYNC checked through
REST (each child answers on its address, inside its namespace), the whole tour, a two-level
tree, a crashed run's leftovers removed at the next start, a colliding subnet refused, and
nothing left on the machine after each run.

Skipped, with the reason, where namespaces are not allowed (not root, no CAP_SYS_ADMIN); CI
runs as root, so there it runs. Each run takes a subnet of its own (10.<150+pid%50>)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "virtual-cluster"))
import tour  # noqa: E402
from vcluster import (NetnsNetwork, VirtualCluster, netns_unavailable,  # noqa: E402
                      node_addr, node_id)

WHY = netns_unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason="network namespaces: %s" % WHY)
SCRIPT = os.path.join(HERE, "..", "examples", "virtual-cluster", "vcluster.py")
BUILD = os.environ.get("KRAKEN_BUILD", "")
SUBNET = "10.%d" % (150 + os.getpid() % 50)
N = 16


def leftovers(net):
    """This subnet's namespaces, veths and bridge still on the machine."""
    names, veths, bridge = net.existing()
    return names + veths + ([net.bridge] if bridge else [])


def wait_gone(vc, net):
    """After a stop: nothing of the network is left (the removal is synchronous; the kernel
    frees a namespace's devices when its last user is gone, so allow it a deadline)."""
    vc.wait(lambda: not leftovers(net), 10, "namespaces and veths removed")


def ns_inode(ns):
    return os.stat("/run/netns/" + ns).st_ino


@pytest.fixture(scope="module")
def vc(tmp_path_factory):
    c = VirtualCluster(BUILD, n=N, net="netns", subnet=SUBNET, power_timeout="2s",
                       workdir=str(tmp_path_factory.mktemp("vcns")))
    try:
        c.prepare()
        c.start()
        c.wait(c.converged, 120, "16 nodes SYNC in their namespaces")
        yield c
    finally:
        rc = c.stop_root()
        running = [n for n in c.names() if c.node_pid(n)]
        c.stop()
        wait_gone(c, c.netns)
        assert rc == 0, "the root exited %d; log %s" % (rc, c.log_path)
        assert not running, "node daemons left running after the root stopped: %s" % running


def test_sixteen_nodes_sync_each_in_its_own_namespace(vc):
    st, dsc = vc.get("/dsc/nodes")
    assert st == 200
    by_id = {n["id"]: n for n in dsc["nodes"]}
    own_ns = os.stat("/proc/self/ns/net").st_ino
    for i, name in enumerate(vc.names()):
        addr = node_addr(i, SUBNET)
        assert by_id[node_id(name)]["physState"] == "POWER_ON"
        assert by_id[node_id(name)]["runState"] == "SYNC"
        # The child answers on its own address, over the bridge, and says it is itself.
        st, own = vc.get("/dsc/node/" + node_id(name), host=addr + ":3141")
        assert st == 200 and own["id"] == node_id(name)
        st, cfg = vc.get("/cfg/node/" + node_id(name), host=addr + ":3141")
        assert cfg["extensions"][0]["ifaces"]["kraken"]["ip"]["ip"] == addr
        # Its process is in its namespace (not ours), where `kraken` holds that address.
        ns = vc.netns.ns(name)
        pid = vc.node_pid(name)
        assert os.stat("/proc/%d/ns/net" % pid).st_ino == ns_inode(ns) != own_ns
        out = subprocess.run(["ip", "-n", ns, "-j", "-4", "addr", "show", "kraken"],
                             capture_output=True, text=True, check=True).stdout
        assert [a["local"] for a in json.loads(out)[0]["addr_info"]] == [addr]
    assert vc.metrics()["kraken_sync_children"] == N
    assert vc.rest == "%s.255.1:3141" % SUBNET


def test_state_changes_need_the_token_reads_do_not(vc):
    # The REST APIs are on a bridge, not loopback: writes take the bearer token.
    import http.client
    conn = http.client.HTTPConnection(vc.rest, timeout=10)
    conn.request("PATCH", "/cfg/node/" + node_id("n0002"), body=json.dumps({"busy": "BUSY"}))
    assert conn.getresponse().status == 401
    conn.close()
    assert vc.get("/cfg/node/" + node_id("n0002"))[0] == 200
    assert "busy" not in vc.cfg("n0002")


def test_the_commands_run_prints_work(vc):
    from vcluster import look_commands
    ctl = os.path.join(BUILD, "daemon", "krakenctl", "krakenctl")
    cmds = look_commands(vc, ctl)
    assert cmds[0][0].startswith("ip -n %s-n0001 addr" % vc.netns.ns_prefix[:-1])
    for cmd, _ in cmds:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip(), (cmd, r.returncode, r.stderr)


@pytest.mark.parametrize("step", tour.STEPS, ids=lambda s: s.__name__)
def test_tour_step(vc, step):
    step(vc)


def test_a_recovered_node_is_back_in_its_namespace(vc):
    # After the tour's power cycles, n0003 runs a new process, still in its namespace.
    pid = vc.node_pid("n0003")
    assert os.stat("/proc/%d/ns/net" % pid).st_ino == ns_inode(vc.netns.ns("n0003"))


def test_missing_namespace_fails_power_on_naming_it(vc):
    # A node whose namespace does not exist: the step fails, and the reason names it.
    name = "n0016"
    vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 30, "n0016 off")
    vc.set_node_sim(name, netns="kvc-nonexistent")
    try:
        vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
        vc.wait(lambda: (vc.path(name).get("reason") or "").endswith(
            "simpower: network namespace kvc-nonexistent: /run/netns/kvc-nonexistent: "
            "No such file or directory"), 30, "the reason names the namespace")
    finally:
        vc.set_node_sim(name, netns=vc.netns.ns(name))
    vc.set_cfg(name, physState="POWER_OFF", runState="UNKNOWN")  # unstick it (operator change)
    vc.wait(lambda: vc.dsc(name).get("physState") == "POWER_OFF", 30, "n0016 off again")
    vc.set_cfg(name, physState="POWER_ON", runState="SYNC")
    vc.wait(lambda: tour.up(vc, name), 60, "n0016 back in its namespace")


def test_two_level_tree_in_namespaces(tmp_path):
    subnet = "10.%d" % (100 + os.getpid() % 50)
    c = VirtualCluster(BUILD, n=8, intermediates=2, net="netns", subnet=subnet,
                       workdir=str(tmp_path / "tree"))
    try:
        c.prepare()
        c.start()
        c.wait(c.converged, 120, "10 nodes SYNC under 2 intermediates")
        assert c.metrics()["kraken_sync_children"] == 2
        st, text = c.get("/metrics", host=node_addr(0, subnet) + ":3141")
        assert st == 200 and "\nkraken_sync_children 4\n" in text
        # A leaf's daemon was started by its intermediate, inside the leaf's namespace.
        leaf = "n0003"
        assert c.cfg(leaf)["parentId"] == node_id("n0001")
        assert (os.stat("/proc/%d/ns/net" % c.node_pid(leaf)).st_ino ==
                ns_inode(c.netns.ns(leaf)))
        assert c.mutations_dispatched("OFFtoON") == 2
    finally:
        c.stop()
    wait_gone(c, c.netns)


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, "--build", BUILD] + list(args),
                          capture_output=True, text=True, timeout=120)


def test_a_crashed_runs_leftovers_are_removed_at_start(tmp_path):
    subnet = "10.%d" % (50 + os.getpid() % 50)
    net = NetnsNetwork(subnet)
    # What a run killed by SIGKILL leaves: the bridge (its owner pid gone) and namespaces.
    net.setup([("n0001", subnet + ".0.2", None), ("n0002", subnet + ".0.3", None)],
              lambda _: None)
    subprocess.run(["ip", "link", "set", net.bridge, "alias", "kraken-vcluster pid 999999999"],
                   check=True)
    r = run_script("-n", "2", "--net", "netns", "--subnet", subnet, "--exit-when-synced",
                   "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("removing what an earlier virtual cluster on %s.0.0/16 left: 2 network namespaces "
            "(%s*), 2 veths, bridge %s" % (subnet, net.ns_prefix, net.bridge)) in r.stdout
    assert "all 2 nodes SYNC" in r.stdout
    assert not leftovers(net)


def test_a_running_clusters_subnet_is_not_touched(vc, tmp_path):
    r = run_script("-n", "1", "--net", "netns", "--subnet", SUBNET, "--workdir",
                   str(tmp_path / "w"))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "vcluster: %s.0.0/16 is in use by the virtual cluster of pid %d (bridge %s); stop it, "
        "or pick another --subnet" % (SUBNET, os.getpid(), vc.netns.bridge))
    assert vc.converged()


def test_a_subnet_colliding_with_a_route_is_refused(tmp_path):
    subnet = "10.%d" % (220 + os.getpid() % 30)  # not 10.212/10.213: tour and run
    route = ["ip", "route", "add", "blackhole", subnet + ".7.0/24"]
    subprocess.run(route, check=True)
    try:
        r = run_script("-n", "1", "--netns", "--subnet", subnet, "--workdir",
                       str(tmp_path / "w"))
    finally:
        route[2] = "del"
        subprocess.run(route, check=True)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "vcluster: --subnet %s: %s.0.0/16 overlaps the route %s.7.0/24 on this machine; pick "
        "another --subnet" % (subnet, subnet, subnet))
    assert not leftovers(NetnsNetwork(subnet))


def test_netns_refused_in_one_line_where_not_allowed():
    # As an unprivileged user the probe fails: --netns says why; auto would use loopback.
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if subprocess.run(nobody + ["-c", "import os, sys; sys.exit(not all(os.access(p, os.R_OK) "
                                "for p in sys.argv[1:]))", SCRIPT,
                                os.path.join(BUILD, "modules", "simpower.so")]).returncode:
        pytest.skip("user nobody cannot read this checkout or build")
    r = subprocess.run(nobody + [SCRIPT, "--build", BUILD, "--netns"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        "vcluster.py: error: --net netns: not root (namespaces and a bridge need CAP_SYS_ADMIN "
        "and CAP_NET_ADMIN)")


def test_too_many_nodes_for_one_bridge_is_refused():
    r = run_script("-n", "1100", "--netns")
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        "vcluster.py: error: --net netns: 1100 nodes: a bridge holds at most 1023")


def start_script(subnet, workdir):
    """vcluster.py in netns mode as a user runs it; returns it once every node is SYNC."""
    p = subprocess.Popen([sys.executable, SCRIPT, "--build", BUILD, "-n", "4", "--netns",
                          "--subnet", subnet, "--workdir", workdir],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:  # the line comes once, or the script exits (EOF): no sleeping
        out.append(line)
        if line.startswith("all 4 nodes SYNC"):
            return p, out
    p.wait()
    raise AssertionError("vcluster.py exited %s before SYNC:\n%s" % (p.returncode, "".join(out)))


def test_killed_script_leftovers_removed_at_next_start_ctrl_c_removes_all(tmp_path):
    import signal
    subnet = "10.%d" % (20 + os.getpid() % 30)
    net = NetnsNetwork(subnet)
    workdir = str(tmp_path / "w")
    # A crash of the script (SIGKILL): the root stops with it (it powers its nodes off), the
    # network stays behind.
    p, _ = start_script(subnet, workdir)
    p.kill()
    p.wait()
    p.stdout.close()
    assert len(net.existing()[0]) == 4
    # The next start says what it removes, and works; Ctrl-C then removes everything.
    p, out = start_script(subnet, workdir)
    try:
        assert ("removing what an earlier virtual cluster on %s.0.0/16 left: 4 network "
                "namespaces (%s*), 4 veths, bridge %s\n" % (subnet, net.ns_prefix, net.bridge)
                ) in out, out
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, rest
    assert not leftovers(net)


def test_net_auto_takes_namespaces_here_and_loopback_beyond_one_bridge():
    from vcluster import choose_net
    assert choose_net("auto", 1023) == ("netns", None)
    assert choose_net("auto", 1024) == ("loopback", "1024 nodes: a bridge holds at most 1023")
