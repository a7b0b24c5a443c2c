#!/usr/bin/python3
"""A virtual Kraken cluster on this machine: one root kraken-daemon and N simulated nodes,
each a real child kraken-daemon, powered on and off by the sim power module
(modules/simpower.c). Each node lives either in a network namespace of its own (an interface
`kraken` with the node's address, a veth whose other end is on a bridge next to the root), or
on a loopback address of its own; `--net auto` (the default) takes namespaces when this
machine allows them.

Used by `run` (the command line below), by `tour` and by the integration tests
(tests/test_virtual_cluster*.py), which import VirtualCluster.

    vcluster.py --build DIR [-n N] [--intermediates K] [--exit-when-synced] [--workdir DIR]
                [--net auto|netns|loopback] [--subnet 10.N]
"""
import argparse
import http.client
import ipaddress
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
SIMNODE = "type.googleapis.com/SimPower.Node"  # a node's own sim power settings (simpower.c)


def _die_with_parent():
    """In the root's process before exec: SIGTERM it (a clean stop, every node powered off)
    when the program that started it dies, even by SIGKILL."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def node_addr(i, prefix):
    """The loopback address of node i (0-based): PREFIX.(i / 250).(i % 250 + 2)."""
    return "%s.%d.%d" % (prefix, i // 250, i % 250 + 2)


class NetnsError(RuntimeError):
    """Network namespace mode cannot be set up: the message says why, in one line."""


def _run_ip(args, stdin=None):
    r = subprocess.run(["ip"] + args, input=stdin, capture_output=True, text=True)
    return r.returncode, (r.stderr.strip().splitlines() or [""])[0]


def netns_unavailable():
    """Why this machine does not allow network namespace mode, or None when it does. Probes
    what the mode needs: a namespace and a bridge (root, or CAP_SYS_ADMIN + CAP_NET_ADMIN
    outside a restricted container, and iproute2)."""
    if os.geteuid() != 0:
        return "not root (namespaces and a bridge need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if not shutil.which("ip"):
        return "iproute2's ip command is not installed"
    probe = "kvcp%d" % os.getpid()
    rc, err = _run_ip(["netns", "add", probe])
    if rc:
        return "cannot create a network namespace (ip netns add: %s)" % err
    _run_ip(["netns", "del", probe])
    rc, err = _run_ip(["link", "add", probe, "type", "bridge"])
    if rc:
        return "cannot create a bridge (ip link add type bridge: %s)" % err
    _run_ip(["link", "del", probe])
    return None


def mac_of(addr):
    """A node's MAC address, made from its IPv4 address (locally administered: 02:00:...)."""
    return "02:00:" + ":".join("%02x" % int(b) for b in addr.split("."))


class NetnsNetwork:
    """The simulated machines' network in netns mode.

    Each node has a network namespace `kvc<N>-<nodename>` holding an interface `kraken` with the
    node's address SUBNET.x.y/16: one end of a veth pair whose other end (`kvc<N>v<i>`) is a
    port of the bridge `kvc<N>br` in this (the root's) namespace, which holds the root's
    address SUBNET.255.1. Every instance reaches every other over that one layer-2 segment:
    nodes their root or intermediate, the root and this script every node's REST API. Nothing
    is routed or forwarded, so the subnet is reachable from this machine only.

    The runner makes it all before the root starts and removes it at stop (also on Ctrl-C);
    simpower only starts each node's daemon inside its namespace (the node's Cfg SimPower.Node
    `netns`). The bridge's alias records the owner's pid: a later start that finds the names
    of its subnet with the owner gone removes them (a crashed run), and refuses to touch them
    while the owner runs. N is the subnet's second octet, so clusters on different subnets
    never share a name.
    """
    MAX_NODES = 1023  # a Linux bridge has at most 1024 ports (BR_MAX_PORTS); one is spare
    PARALLEL = 8      # `ip -n NS` processes configuring namespaces at once

    def __init__(self, subnet):
        self.subnet = subnet
        tag = subnet.split(".")[1]
        self.bridge = "kvc%sbr" % tag
        self.ns_prefix = "kvc%s-" % tag
        self.veth_prefix = "kvc%sv" % tag
        self.root_addr = subnet + ".255.1"
        self.network = ipaddress.ip_network(subnet + ".0.0/16")
        self.made = False  # this object made the network: teardown() removes it

    def ns(self, name):
        return self.ns_prefix + name

    def existing(self):
        """Namespaces, veths and bridge of this subnet's names present on the machine now."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        names = [line.split()[0] for line in out.splitlines()
                 if line.startswith(self.ns_prefix)]
        links = os.listdir("/sys/class/net")
        veths = [v for v in links if v.startswith(self.veth_prefix)]
        return names, veths, self.bridge in links

    def owner(self):
        """The pid of the running program that made this subnet's bridge, or None."""
        try:
            with open("/sys/class/net/%s/ifalias" % self.bridge) as f:
                m = re.fullmatch(r"kraken-vcluster pid (\d+)", f.read().strip())
        except OSError:
            return None
        pid = int(m.group(1)) if m else 0
        return pid if pid > 1 and pid != os.getpid() and os.path.exists("/proc/%d" % pid) \
            else None

    def remove_stale(self, say):
        """Remove what a crashed run on this subnet left; refuse if its owner still runs."""
        names, veths, bridge = self.existing()
        if not (names or veths or bridge):
            return
        owner = self.owner()
        if owner:
            raise NetnsError("%s is in use by the virtual cluster of pid %d (bridge %s); stop "
                             "it, or pick another --subnet" % (self.network, owner, self.bridge))
        say("removing what an earlier virtual cluster on %s left: %d network namespaces "
            "(%s*), %d veths%s" % (self.network, len(names), self.ns_prefix, len(veths),
                                   ", bridge " + self.bridge if bridge else ""))
        self.remove(names, veths, bridge)

    def remove(self, names=None, veths=None, bridge=None):
        """Kill what still runs in the namespaces, then delete veths, namespaces, bridge."""
        if names is None:
            names, veths, bridge = self.existing()
        inodes = set()
        for ns in names:
            try:
                inodes.add(os.stat("/run/netns/" + ns).st_ino)
            except OSError:
                pass
        for pid in (p for p in os.listdir("/proc") if p.isdigit()) if inodes else ():
            try:
                if os.stat("/proc/%s/ns/net" % pid).st_ino in inodes:
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        lines = ["link del " + v for v in veths] + ["netns del " + ns for ns in names]
        if bridge:
            lines.append("link del " + self.bridge)
        if lines:
            _run_ip(["-force", "-batch", "-"], "\n".join(lines) + "\n")

    def teardown(self):
        """Remove the network this object made (never another cluster's)."""
        if self.made:
            self.remove()
            self.made = False

    def check_free(self):
        """Refuse a subnet that overlaps an address or a route of this machine."""
        for what, cmd in (("route", ["-j", "-4", "route", "show", "table", "all"]),
                          ("address", ["-j", "-4", "addr", "show"])):
            out = subprocess.run(["ip"] + cmd, capture_output=True, text=True).stdout
            for entry in json.loads(out or "[]"):
                if what == "route":
                    nets = [entry.get("dst", "default")]
                else:
                    nets = ["%s/%s" % (a["local"], a["prefixlen"])
                            for a in entry.get("addr_info", []) if "local" in a]
                for net in nets:
                    if net == "default":
                        continue
                    try:
                        other = ipaddress.ip_network(net, strict=False)
                    except ValueError:
                        continue
                    if other.overlaps(self.network):
                        raise NetnsError(
                            "--subnet %s: %s overlaps the %s %s%s on this machine; pick "
                            "another --subnet" % (self.subnet, self.network, what, net,
                                                  " (dev %s)" % entry["dev"]
                                                  if entry.get("dev") else ""))

    def setup(self, nodes, say):
        """Make the bridge and, for each (nodename, address, parent's address), its namespace
        and veth. The parent (None: the root) is what the node talks to; its intermediates'
        children are what an intermediate talks to.

        Every pair that talks gets static (permanent) neighbour entries, not ARP: the kernel's
        ARP table is one for all namespaces, and its thresholds (gc_thresh2 512, gc_thresh3
        1024 entries) are host-wide; with 1,000 nodes the dynamic entries pass them, garbage
        collection and "neighbour table overflow" then drop the sync's datagrams and connects
        fail ("No route to host"). Permanent entries are not counted, never expire, and no ARP
        broadcast floods a 1,000-port bridge."""
        if len(nodes) > self.MAX_NODES:
            raise NetnsError("%d nodes: a bridge holds at most %d (use --net loopback)" %
                             (len(nodes), self.MAX_NODES))
        self.remove_stale(say)
        self.check_free()
        self.made = True
        br = self.bridge
        lines = ["link add %s address %s type bridge" % (br, mac_of(self.root_addr)),
                 "link set %s alias \"kraken-vcluster pid %d\"" % (br, os.getpid()),
                 "link set %s addrgenmode none" % br,  # no IPv6 link-local chatter
                 "addr add %s/16 dev %s" % (self.root_addr, br),
                 "link set %s up" % br]
        for i, (name, addr, _) in enumerate(nodes):
            ns, veth = self.ns(name), "%s%d" % (self.veth_prefix, i)
            lines += ["netns add " + ns,
                      "link add %s type veth peer name kraken address %s netns %s" %
                      (veth, mac_of(addr), ns),
                      "link set %s addrgenmode none" % veth,
                      "link set %s master %s up" % (veth, br),
                      "neigh replace %s lladdr %s dev %s nud permanent" % (addr, mac_of(addr), br)]
        rc, err = _run_ip(["-batch", "-"], "\n".join(lines) + "\n")
        if rc:
            self.remove()
            raise NetnsError("setting up the bridge and namespaces failed: " + err)
        # Addresses inside the namespaces: one `ip -n NS` each (a batch cannot switch
        # namespaces), a few at a time.
        children = {}
        for _, addr, parent in nodes:
            children.setdefault(parent, []).append(addr)
        todo, running = list(nodes), []
        while todo or running:
            while todo and len(running) < self.PARALLEL:
                name, addr, parent = todo.pop(0)
                peers = [self.root_addr] + ([parent] if parent else []) + children.get(addr, [])
                p = subprocess.Popen(["ip", "-n", self.ns(name), "-batch", "-"],
                                     stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                p.stdin.write("link set lo up\nlink set kraken addrgenmode none\n"
                              "addr add %s/16 dev kraken\nlink set kraken up\n" % addr +
                              "".join("neigh replace %s lladdr %s dev kraken nud permanent\n" %
                                      (peer, mac_of(peer)) for peer in peers))
                p.stdin.close()
                running.append((name, p))
            name, p = running.pop(0)
            err = p.stderr.read().strip()
            if p.wait():
                for _, q in running:
                    q.wait()
                self.remove()
                why = (err.splitlines() or ["exit %d" % p.returncode])[0]
                raise NetnsError("configuring namespace %s failed: %s" % (self.ns(name), why))


def node_name(i):
    return "n%04d" % (i + 1)


def node_id(name):
    return str(uuid.uuid5(NS, name))


class VirtualCluster:
    """The root daemon of a virtual cluster and what it needs (secret, state, config)."""

    def __init__(self, build, n=16, workdir=None, root_addr="127.254.0.1", prefix="127.253",
                 intermediates=0, poweron_ms=200, boot_ms=300, power_timeout="5s",
                 child_log=5, root_log=6, net="loopback", subnet="10.213", say=print):
        """net "loopback": node i on PREFIX.x.y (node_addr), the root on root_addr. net
        "netns": node i in its own network namespace on SUBNET.x.y, the root on SUBNET.255.1
        (NetnsNetwork; root_addr and prefix are not used)."""
        self.build = os.path.abspath(build)
        self.daemon = os.path.join(self.build, "daemon", "kraken-daemon")
        self.module_dir = os.path.join(self.build, "modules")
        self.n = n
        self.k = intermediates
        self.netns = NetnsNetwork(subnet) if net == "netns" else None
        self.root_addr = self.netns.root_addr if self.netns else root_addr
        self.prefix = subnet if self.netns else prefix  # node_addr(i, prefix) either way
        self.say = say
        self.workdir = os.path.abspath(workdir or "/tmp/kraken-vcluster-%d" % os.getuid())
        self.poweron_ms, self.boot_ms = poweron_ms, boot_ms
        self.power_timeout = power_timeout
        self.child_log, self.root_log = child_log, root_log
        self.proc = None
        self.sockdir = self.workdir
        self.log_path = os.path.join(self.workdir, "root.log")
        self.rest = "%s:3141" % self.root_addr
        # On a bridge address the REST APIs are not on loopback: they take a bearer token for
        # every state-changing request (reads stay open), as kraken-daemon requires.
        self.token = os.path.join(self.workdir, "token") if self.netns else None

    # ---- set-up -------------------------------------------------------------------------------

    def names(self):
        return [node_name(i) for i in range(self.k + self.n)]

    def prepare(self, fresh=True):
        """Write the secret, the config and the state file (the Cfg of every node)."""
        if fresh and os.path.isdir(self.workdir):
            self.kill_leftovers()
            shutil.rmtree(self.workdir)
        if fresh and self.netns:
            t0 = time.monotonic()
            self.netns.setup([(name, node_addr(i, self.prefix), self.parent_addr(i))
                              for i, name in enumerate(self.names())], self.say)
            self.say("network: %d namespaces, veths and the bridge made in %.1f s" %
                     (self.n + self.k, time.monotonic() - t0))
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
        if self.token and not os.path.exists(self.token):
            with open(os.open(self.token, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(os.urandom(16).hex() + "\n")
        nodes = [self.root_node()]
        for i in range(self.k + self.n):
            parent = ROOT_ID
            if self.k and i >= self.k:
                parent = node_id(node_name(self.parent_index(i)))
            nodes.append(self.sim_node(i, parent))
        with open(os.path.join(self.workdir, "state.json"), "w") as f:
            json.dump({"nodes": nodes}, f, indent=1)
        with open(os.path.join(self.workdir, "kraken.yaml"), "w") as f:
            f.write(self.config_yaml(os.path.join(self.workdir, "module.sock")))
        with open(os.path.join(self.workdir, "intermediate.yaml"), "w") as f:
            f.write(self.config_yaml(None))

    def parent_index(self, i):
        """The intermediate (its index) node i is under, or None: the root."""
        return (i - self.k) % self.k if self.k and i >= self.k else None

    def parent_addr(self, i):
        """The address of node i's parent, or None when that is the root."""
        p = self.parent_index(i)
        return None if p is None else node_addr(p, self.prefix)

    def power_config(self, secret, parent_addr, childargs):
        return {"@type": "type.googleapis.com/SimPower.Config",
                "secret": secret, "parent": parent_addr + ":31415",
                "workdir": os.path.join(self.workdir, "nodes"), "daemon": self.daemon,
                "poweron": self.poweron_ms, "boot": self.boot_ms, "childargs": childargs}

    def child_args(self):
        args = "-log %d -noprefix" % self.child_log
        if self.token:
            args += " -api-token %s -api-open-reads" % self.token
        return args

    def root_node(self):
        args = self.child_args()
        if self.k:  # intermediates run simpower for their own nodes
            args += " -config %s -module-socket %s" % (
                os.path.join(self.workdir, "intermediate.yaml"),
                os.path.join(self.sockdir, "{id}.sock"))
        # No PhysState or RunState: nothing powers or boots the root (it is this machine), so
        # a desired value there would only give the root a plan with no path.
        return {"id": ROOT_ID, "nodename": "root",
                "services": [{"id": "power", "state": "RUN", "config": self.power_config(
                    os.path.join(self.workdir, "secret"), self.root_addr, args)}],
                "extensions": [self.iface(self.root_addr)]}

    def iface(self, addr):
        mask = "255.255.0.0" if self.netns else "255.0.0.0"
        return {"@type": IFACE, "ifaces": {"kraken": {"ip": {"ip": addr, "subnet": mask}}}}

    def sim_node(self, i, parent):
        addr = node_addr(i, self.prefix)
        node = {"id": node_id(node_name(i)), "nodename": node_name(i), "arch": "amd64",
                "platform": "sim", "parentId": parent, "runState": "SYNC",
                "physState": "POWER_ON", "extensions": [self.iface(addr)]}
        if self.netns:  # where simpower starts its daemon (setns)
            node["extensions"].append({"@type": SIMNODE, "netns": self.netns.ns(node_name(i))})
        if self.k and i < self.k:  # an intermediate powers its own children
            key = os.path.join(self.workdir, "nodes", node["id"] + ".key")
            node["services"] = [{"id": "power", "state": "RUN", "config": self.power_config(
                key, addr, self.child_args())}]
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
             "-noprefix"] + (["-api-token", self.token, "-api-open-reads"] if self.token else []),
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
        if self.netns:
            self.netns.teardown()
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
            headers = {"Content-Type": "application/json"} if data else {}
            if self.token and method != "GET":
                with open(self.token) as f:
                    headers["Authorization"] = "Bearer " + f.read().strip()
            conn.request(method, path, body=data, headers=headers)
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

    def set_node_sim(self, name, **fields):
        """Set fields of the node's own SimPower.Node in its Cfg (fault, failpercent, poweron,
        poweroff): GET the node, change the extension, PUT it back. None removes a field.
        simpower reads them at the node's next mutation."""
        cfg = self.cfg(name)
        exts = cfg.setdefault("extensions", [])
        ext = next((e for e in exts if e.get("@type") == SIMNODE), None)
        if ext is None:
            ext = {"@type": SIMNODE}
            exts.append(ext)
        for k, v in fields.items():
            if v is None:
                ext.pop(k, None)
            else:
                ext[k] = v
        st, out = self.request("PUT", "/cfg/node/" + node_id(name), cfg)
        if st != 200:
            raise RuntimeError("PUT /cfg/node/%s: %s %s" % (name, st, out))
        return out

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
    api = "-i " + vc.rest  # krakenctl learns SimPower's types from the root (GET /schemas)
    netns = [("ip -n %s addr show kraken" % vc.netns.ns(first),
              "%s's network namespace: its interface and address" % first)] if vc.netns else []
    return netns + [
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
    where = ("in network namespaces %s<node> on %s.x.y (bridge %s)" %
             (vc.netns.ns_prefix, vc.prefix, vc.netns.bridge) if vc.netns
             else "on %s.x.y" % vc.prefix)
    print("\nThe virtual cluster runs: root %s (REST :3141, websocket :3142, sync :31415), %d "
          "nodes %s,\neach a kraken-daemon with its own REST API on :3141.\n\nLook at it:"
          % (vc.root_addr, vc.n + vc.k, where))
    if vc.token:  # state changes need the REST token (the REST APIs are not on loopback)
        ctl = "%s --token-file %s" % (ctl, vc.token)
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


def choose_net(requested, total):
    """The network mode to use for --net REQUESTED with TOTAL simulated nodes, and why
    namespaces are not (None when they are, or were not asked for)."""
    if requested == "loopback":
        return "loopback", None
    why = netns_unavailable()
    if not why and total > NetnsNetwork.MAX_NODES:
        why = "%d nodes: a bridge holds at most %d" % (total, NetnsNetwork.MAX_NODES)
    return ("loopback" if why else "netns"), why


def say_net(vc, requested, why):
    """One line: which network the nodes are on, and for auto, why."""
    if vc.netns:
        print("network: each node in a network namespace of its own (%s<node>), on bridge %s, "
              "%s (--net %s)" % (vc.netns.ns_prefix, vc.netns.bridge, vc.netns.network,
                                 requested), flush=True)
    else:
        print("network: each node on a loopback address of its own, %s.x.y (--net %s%s)" %
              (vc.prefix, requested, "; network namespaces: " + why if why else ""), flush=True)


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
                    help="loopback mode: nodes get PREFIX.x.y addresses (127.253)")
    ap.add_argument("--net", choices=("auto", "netns", "loopback"), default="auto",
                    help="netns: each node in its own network namespace; loopback: each on a "
                    "127.x address; auto (default): netns when this machine allows it")
    ap.add_argument("--netns", dest="net", action="store_const", const="netns",
                    help="same as --net netns")
    ap.add_argument("--subnet", default="10.213",
                    help="netns mode: nodes get SUBNET.x.y/16 on a bridge (10.213)")
    a = ap.parse_args()
    if a.nodes < 1 or a.nodes > 60000 or a.intermediates < 0:
        ap.error("-n must be 1..60000 and --intermediates >= 0")
    if not re.fullmatch(r"127\.\d{1,3}", a.prefix):
        ap.error("--prefix must be 127.N (the nodes live on loopback addresses)")
    m = re.fullmatch(r"10\.(\d{1,3})", a.subnet)
    if not m or int(m.group(1)) > 255:
        ap.error("--subnet must be 10.N, N 0..255 (a /16 of the private 10.0.0.0/8)")
    for need in (os.path.join(a.build, "daemon", "kraken-daemon"),
                 os.path.join(a.build, "modules", "simpower.so")):
        if not os.path.isfile(need):
            ap.error("--build %s: %s is missing (build it: ninja -C %s)" %
                     (a.build, os.path.relpath(need, a.build), a.build))
    net, why = choose_net(a.net, a.nodes + a.intermediates)
    if why and a.net == "netns":
        ap.error("--net netns: " + why)
    vc = VirtualCluster(a.build, n=a.nodes, workdir=a.workdir, intermediates=a.intermediates,
                        root_addr=a.root_addr, prefix=a.prefix, net=net, subnet=a.subnet)
    say_net(vc, a.net, why)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        vc.prepare()
        vc.start()
    except (RuntimeError, NetnsError) as e:
        vc.stop()
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
