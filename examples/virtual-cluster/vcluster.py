#!/usr/bin/python3
"""A virtual Kraken cluster on this machine: one root kraken-daemon and N simulated nodes,
each a real child kraken-daemon on its own loopback address, powered on and off by the sim
power module (modules/simpower.c).

Used by `run` (the command line below), by `tour` and by the integration test
(tests/test_virtual_cluster.py), which import VirtualCluster.

    vcluster.py --build DIR [-n N] [--intermediates K] [--exit-when-synced] [--workdir DIR]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

ROOT_ID = "c0ffee00-0000-4000-8000-000000000001"
NS = uuid.UUID("6b72616b-656e-4000-8000-766972747561")  # node ids are uuid5(NS, nodename)
IFACE = "type.googleapis.com/IPv4.IPv4OverEthernet"


def _die_with_parent():
    """In the root's process before exec: SIGTERM it (a clean stop, every node powered off)
    when the program that started it dies, even by SIGKILL."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def node_addr(i, prefix):
    """The loopback address of node i (0-based): PREFIX.(i / 250).(i % 250 + 2)."""
    return "%s.%d.%d" % (prefix, i // 250, i % 250 + 2)


def node_name(i):
    return "n%04d" % (i + 1)


def node_id(name):
    return str(uuid.uuid5(NS, name))


class VirtualCluster:
    """The root daemon of a virtual cluster and what it needs (secret, state, config)."""

    def __init__(self, build, n=16, workdir=None, root_addr="127.254.0.1", prefix="127.253",
                 intermediates=0, poweron_ms=200, boot_ms=300, power_timeout="5s",
                 child_log=5, root_log=6):
        self.build = os.path.abspath(build)
        self.daemon = os.path.join(self.build, "daemon", "kraken-daemon")
        self.module_dir = os.path.join(self.build, "modules")
        self.n = n
        self.k = intermediates
        self.root_addr = root_addr
        self.prefix = prefix
        self.workdir = os.path.abspath(workdir or "/tmp/kraken-vcluster-%d" % os.getuid())
        self.poweron_ms, self.boot_ms = poweron_ms, boot_ms
        self.power_timeout = power_timeout
        self.child_log, self.root_log = child_log, root_log
        self.proc = None
        self.sockdir = self.workdir
        self.log_path = os.path.join(self.workdir, "root.log")
        self.rest = "%s:3141" % root_addr

    # ---- set-up -------------------------------------------------------------------------------

    def names(self):
        return [node_name(i) for i in range(self.k + self.n)]

    def prepare(self, fresh=True):
        """Write the secret, the config and the state file (the Cfg of every node)."""
        if fresh and os.path.isdir(self.workdir):
            self.kill_leftovers()
            shutil.rmtree(self.workdir)
        os.makedirs(os.path.join(self.workdir, "nodes"), exist_ok=True)
        # Intermediates' module sockets: a socket path has at most ~100 bytes, a workdir may
        # be long, so they live in a short directory of their own.
        self.sockdir = os.path.join(self.workdir, "s")
        if len(os.path.join(self.sockdir, ROOT_ID + ".sock")) > 90:
            import tempfile
            self.sockdir = tempfile.mkdtemp(prefix="kraken-vc-")
        os.makedirs(self.sockdir, exist_ok=True)
        secret = os.path.join(self.workdir, "secret")
        if not os.path.exists(secret):
            with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(os.urandom(32))
        nodes = [self.root_node()]
        for i in range(self.k + self.n):
            parent = ROOT_ID
            if self.k and i >= self.k:
                parent = node_id(node_name((i - self.k) % self.k))
            nodes.append(self.sim_node(i, parent))
        with open(os.path.join(self.workdir, "state.json"), "w") as f:
            json.dump({"nodes": nodes}, f, indent=1)
        with open(os.path.join(self.workdir, "kraken.yaml"), "w") as f:
            f.write(self.config_yaml(os.path.join(self.workdir, "module.sock")))
        with open(os.path.join(self.workdir, "intermediate.yaml"), "w") as f:
            f.write(self.config_yaml(None))

    def power_config(self, secret, parent_addr, childargs):
        return {"@type": "type.googleapis.com/SimPower.Config",
                "secret": secret, "parent": parent_addr + ":31415",
                "workdir": os.path.join(self.workdir, "nodes"), "daemon": self.daemon,
                "poweron": self.poweron_ms, "boot": self.boot_ms, "childargs": childargs}

    def root_node(self):
        args = "-log %d -noprefix" % self.child_log
        if self.k:  # intermediates run simpower for their own nodes
            args += " -config %s -module-socket %s" % (
                os.path.join(self.workdir, "intermediate.yaml"),
                os.path.join(self.sockdir, "{id}.sock"))
        return {"id": ROOT_ID, "nodename": "root", "runState": "SYNC", "physState": "POWER_ON",
                "services": [{"id": "power", "state": "RUN", "config": self.power_config(
                    os.path.join(self.workdir, "secret"), self.root_addr, args)}],
                "extensions": [self.iface(self.root_addr)]}

    def iface(self, addr):
        return {"@type": IFACE, "ifaces": {"kraken": {"ip": {"ip": addr,
                                                              "subnet": "255.0.0.0"}}}}

    def sim_node(self, i, parent):
        addr = node_addr(i, self.prefix)
        node = {"id": node_id(node_name(i)), "nodename": node_name(i), "arch": "amd64",
                "platform": "sim", "parentId": parent, "runState": "SYNC",
                "physState": "POWER_ON", "extensions": [self.iface(addr)]}
        if self.k and i < self.k:  # an intermediate powers its own children
            key = os.path.join(self.workdir, "nodes", node["id"] + ".key")
            node["services"] = [{"id": "power", "state": "RUN", "config": self.power_config(
                key, addr, "-log %d -noprefix" % self.child_log)}]
        return node

    def config_yaml(self, socket):
        muts = "".join("      %s: {timeout: %s}\n" % (m, self.power_timeout)
                       for m in ("UKtoOFF", "OFFtoON", "ONtoOFF", "HANGtoOFF"))
        return (("modulesocket: %s\n" % socket if socket else "") +
                "moduledir: %s\nserviceinstances:\n  power:\n    module: simpower\n"
                "    mutations:\n%s" % (self.module_dir, muts))

    # ---- the root -----------------------------------------------------------------------------

    def start(self):
        """Start (or restart) the root daemon; returns once it says it is ready."""
        import socket
        with socket.socket() as probe:
            if probe.connect_ex((self.root_addr, 3141)) == 0:
                raise RuntimeError("%s:3141 is taken (another virtual cluster or kraken-daemon?);"
                                   " stop it or pick another --root-addr" % self.root_addr)
        since = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.daemon, "-config", os.path.join(self.workdir, "kraken.yaml"),
             "-id", ROOT_ID, "-ip", self.root_addr, "-ipapi", self.rest, "-wsport", "3142",
             "-state", os.path.join(self.workdir, "state.json"),
             "-secret", os.path.join(self.workdir, "secret"), "-log", str(self.root_log),
             "-noprefix"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent)
        log.close()
        self.started = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                f.seek(since)
                if "daemon: ready: node" in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("the root kraken-daemon exited (%d); its log %s ends:\n%s" %
                                   (self.proc.returncode, self.log_path, self.log_tail()))
            time.sleep(0.02)
        raise RuntimeError("the root did not get ready in 30 s; log: " + self.log_path)

    def stop_root(self, sig=signal.SIGTERM):
        """Stop the root: SIGTERM powers every node off; SIGKILL leaves them running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def kill_leftovers(self):
        """Kill node daemons a crashed root left behind (their pid files)."""
        d = os.path.join(self.workdir, "nodes")
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".pid"):
                pid = self.node_pid_from(os.path.join(d, f), f[:-4])
                if pid:
                    os.kill(pid, signal.SIGKILL)

    def node_pid_from(self, path, nid):
        try:
            pid = int(open(path).read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return pid if nid.encode() in f.read() else None
        except (OSError, ValueError):
            return None

    def node_pid(self, name):
        nid = node_id(name)
        return self.node_pid_from(os.path.join(self.workdir, "nodes", nid + ".pid"), nid)

    def stop(self):
        self.stop_root(signal.SIGTERM)
        self.kill_leftovers()
        if not self.sockdir.startswith(self.workdir):
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def log_tail(self, n=20):
        try:
            return "\n".join(open(self.log_path).read().splitlines()[-n:])
        except OSError:
            return ""

    # ---- REST ---------------------------------------------------------------------------------

    def request(self, method, path, body=None, host=None):
        host = host or self.rest
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            data = json.dumps(body) if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read().decode()
            ctype = r.getheader("Content-Type", "")
            return r.status, json.loads(raw) if "json" in ctype and raw else raw
        finally:
            conn.close()

    def get(self, path, host=None):
        return self.request("GET", path, host=host)

    def metrics(self):
        """The root's /metrics as {name{labels}: value}."""
        out = {}
        for line in self.get("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def dsc(self, name):
        return self.get("/dsc/node/" + node_id(name))[1]

    def cfg(self, name):
        return self.get("/cfg/node/" + node_id(name))[1]

    def path(self, name):
        return self.get("/graph/node/%s/path" % node_id(name))[1]

    def set_cfg(self, name, **fields):
        body = dict(fields, id=node_id(name))
        st, out = self.request("PATCH", "/cfg/node/" + node_id(name), body)
        if st != 200:
            raise RuntimeError("PATCH /cfg/node/%s: %s %s" % (name, st, out))
        return out

    def set_power_config(self, **fields):
        """Change the root's sim power config (faults) at run time."""
        cfg = self.get("/cfg/node/" + ROOT_ID)[1]
        svc = next(s for s in cfg["services"] if s["id"] == "power")
        # A JSON merge patch: null removes a field (an empty list of nodes).
        svc["config"].update({k: (None if v in ("", None) else v) for k, v in fields.items()})
        st, out = self.request("PATCH", "/cfg/node/" + ROOT_ID,
                               {"id": ROOT_ID, "services": [svc]})
        if st != 200:
            raise RuntimeError("PATCH root power config: %s %s" % (st, out))

    def counts(self):
        """Nodes by RunState / PhysState (the simulated ones, root excluded) and plans."""
        m = self.metrics()
        g = lambda k: int(m.get(k, 0))
        run = {s: g('kraken_nodes_run_state{state="%s"}' % s)
               for s in ("UNKNOWN", "INIT", "SYNC", "ERROR")}
        phys = {s: g('kraken_nodes_phys_state{state="%s"}' % s)
                for s in ("PHYS_UNKNOWN", "POWER_OFF", "POWER_ON", "PHYS_HANG")}
        root = self.get("/dsc/node/" + ROOT_ID)[1]  # the root's own node is counted too
        if root.get("runState", "UNKNOWN") in run:
            run[root.get("runState", "UNKNOWN")] -= 1
        if root.get("physState", "PHYS_UNKNOWN") in phys:
            phys[root.get("physState", "PHYS_UNKNOWN")] -= 1
        return {"run": run, "phys": phys, "in_flight": g("kraken_plans_in_flight"),
                "stuck": g('kraken_plans{state="STUCK"}'),
                "failures": g("kraken_plan_failures")}

    def converged(self, c=None):
        """Every simulated node is POWER_ON and SYNC in Dsc."""
        c = c or self.counts()
        total = self.n + self.k
        return c["run"]["SYNC"] == total and c["phys"]["POWER_ON"] == total

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (OSError, KeyError, StopIteration, TypeError):
                pass
            time.sleep(0.1)
        raise AssertionError("%s: not within %ss (root log %s)" % (what, timeout, self.log_path))

    def mutations_dispatched(self, mutation, since=0):
        """How often the root's log shows `mutate <node> power/<mutation>` (from byte since)."""
        with open(self.log_path) as f:
            f.seek(since)
            return len(re.findall(r"mutate \S+ power/%s\b" % mutation, f.read()))

    def log_size(self):
        return os.path.getsize(self.log_path)


# ---- the command ----------------------------------------------------------------------------

def progress_line(c, total, elapsed):
    r, p = c["run"], c["phys"]
    return ("%6.1fs  SYNC %d/%d | RunState INIT %d ERROR %d UNKNOWN %d | PhysState ON %d OFF %d "
            "HANG %d UNKNOWN %d | in flight %d | failures %d stuck %d" %
            (elapsed, r["SYNC"], total, r["INIT"], r["ERROR"], r["UNKNOWN"], p["POWER_ON"],
             p["POWER_OFF"], p["PHYS_HANG"], p["PHYS_UNKNOWN"], c["in_flight"], c["failures"],
             c["stuck"]))


def look_commands(vc, ctl):
    """The commands `run` prints to look at the cluster: (shell command, comment). The
    integration test runs each of them."""
    first = node_name(vc.k)
    nid = node_id(first)
    api = "-i " + vc.rest
    return [
        ("%s %s list" % (ctl, api), "every node, Cfg next to Dsc"),
        ("%s %s show %s" % (ctl, api, nid), "%s: every value and its plan" % first),
        ("curl -s http://%s/cfg/nodes" % vc.rest, "desired state (Cfg) of every node, REST"),
        ("curl -s http://%s/dsc/node/%s" % (vc.rest, nid), "discovered state (Dsc) of " + first),
        ("curl -s http://%s/graph/node/%s/path" % (vc.rest, nid), "its plan, as JSON"),
        ("curl -s http://%s/metrics" % vc.rest, "nodes by state, plans, sync (Prometheus)"),
        ("curl -s http://%s:3141/dsc/nodes" % node_addr(vc.k, vc.prefix),
         "%s's own kraken-daemon, as it sees itself" % first),
    ]


def how_to_look(vc, ctl):
    first = node_name(vc.k)
    nid = node_id(first)
    print("\nThe virtual cluster runs: root %s (REST :3141, websocket :3142, sync :31415), %d "
          "nodes on %s.x.y,\neach a kraken-daemon with its own REST API on :3141.\n\nLook at it:"
          % (vc.root_addr, vc.n + vc.k, vc.prefix))
    for cmd, why in look_commands(vc, ctl):
        print("  %s\n      # %s" % (cmd, why))
    print("  %s -i %s watch\n      # a live table from the websocket event stream "
          "ws://%s:3142/ws" % (ctl, vc.rest, vc.root_addr))
    print("""
Play with it:
  kill -9 $(cat %(wd)s/nodes/%(id)s.pid)
      # crash %(n1)s: it is power-cycled and syncs again
  %(ctl)s -i %(rest)s set %(id)s /RunState UNKNOWN
  %(ctl)s -i %(rest)s set %(id)s /PhysState POWER_OFF
      # power %(n1)s off (set /PhysState POWER_ON, /RunState SYNC to bring it back)
  examples/virtual-cluster/tour
      # the guided tour of failures (on a cluster of its own)
Logs: %(wd)s/root.log, %(wd)s/nodes/<id>.log
Stop: Ctrl-C here (or kill %(pid)d): every node is powered off.
""" % {"ctl": ctl, "rest": vc.rest, "id": nid, "n1": first, "wd": vc.workdir,
       "pid": os.getpid()}, flush=True)


def main():
    ap = argparse.ArgumentParser(description="Run a virtual Kraken cluster on this machine.")
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("-n", "--nodes", type=int, default=16, help="simulated nodes (16)")
    ap.add_argument("--intermediates", type=int, default=0, metavar="K",
                    help="K intermediate instances under the root, the nodes under them")
    ap.add_argument("--exit-when-synced", action="store_true",
                    help="stop the cluster and exit 0 once every node is SYNC")
    ap.add_argument("--workdir", help="state, keys and logs (/tmp/kraken-vcluster-UID)")
    ap.add_argument("--timeout", type=float, default=600, help="give up after this (s)")
    ap.add_argument("--root-addr", default="127.254.0.1", help="the root's address (127.254.0.1)")
    ap.add_argument("--prefix", default="127.253",
                    help="nodes get PREFIX.x.y addresses (127.253)")
    a = ap.parse_args()
    if a.nodes < 1 or a.nodes > 60000 or a.intermediates < 0:
        ap.error("-n must be 1..60000 and --intermediates >= 0")
    if not re.fullmatch(r"127\.\d{1,3}", a.prefix):
        ap.error("--prefix must be 127.N (the nodes live on loopback addresses)")
    vc = VirtualCluster(a.build, n=a.nodes, workdir=a.workdir, intermediates=a.intermediates,
                        root_addr=a.root_addr, prefix=a.prefix)
    for need in (vc.daemon, os.path.join(vc.module_dir, "simpower.so")):
        if not os.path.isfile(need):
            ap.error("--build %s: %s is missing (build it: ninja -C %s)" %
                     (a.build, os.path.relpath(need, vc.build), a.build))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    vc.prepare()
    try:
        vc.start()
    except RuntimeError as e:
        print("vcluster: %s" % e, file=sys.stderr)
        return 1
    total = vc.n + vc.k
    tty = sys.stdout.isatty()
    last = None
    code = 0
    try:
        while not stop:
            elapsed = time.monotonic() - vc.started
            c = vc.counts()
            line = progress_line(c, total, elapsed)
            if tty:  # one line, redrawn in place: never wider than the terminal
                width = shutil.get_terminal_size().columns - 1
                sys.stdout.write("\r\033[K" + line[:width])
                sys.stdout.flush()
            elif int(elapsed) != last:
                print(line, flush=True)
                last = int(elapsed)
            if vc.converged(c):
                print("\n" if tty else "", end="")
                print("all %d nodes SYNC in %.1f s" % (total, elapsed), flush=True)
                break
            if elapsed > a.timeout:
                print("\nnot converged after %.0f s; root log: %s" % (elapsed, vc.log_path))
                code = 1
                break
            if vc.proc.poll() is not None:
                print("\nthe root daemon exited; log:\n" + vc.log_tail())
                return 1
            time.sleep(0.25)
        if not stop and not a.exit_when_synced and code == 0:
            how_to_look(vc, os.path.join(vc.build, "daemon", "krakenctl", "krakenctl"))
            while not stop and vc.proc.poll() is None:
                time.sleep(0.5)
    finally:
        vc.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
