#!/usr/bin/python3
"""Multi-process sync test: a parent and three children, each a tests/sync_node process.

Checks: the children join, a Cfg change at the parent reaches a child, a child's Dsc
discovery reaches the parent, and after `kill -9` of the parent and a restart on the same
port every child rejoins and its state flows again. Every node must exit 0 on SIGTERM (an
ASan-built sync_node exits non-zero on errors or leaks).

    test_sync_procs.py SYNC_NODE            parent on 127.0.1.1, children on 127.0.1.2-4
    test_sync_procs.py SYNC_NODE --netns    each node in its own network namespace, the
                                            parent joined to each child by a veth pair
                                            (10.200.<i>.1 <-> 10.200.<i>.2); needs root

Prints one line per check and exits 0 when all passed, 1 otherwise.
"""
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid

N_CHILDREN = 3
TIMEOUT_MS = 8000


class Node:
    """One sync_node process, driven by line commands on stdin."""

    def __init__(self, binary, name, args, netns=None):
        self.name = name
        cmd = [binary] + args
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""
        line = self.readline(10.0)
        if not line or not line.startswith("READY "):
            raise RuntimeError("%s did not start: %r" % (name, line))
        self.port = int(line.split()[1])

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, text, timeout=None):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()
        return self.readline(timeout if timeout else TIMEOUT_MS / 1000.0 + 5)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
            print("ok - " + what, flush=True)
        else:
            self.failed += 1
            print("not ok - " + what, flush=True)
        return ok


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Netns:
    """Namespaces: one for the parent, one per child, a veth pair per link."""

    def __init__(self):
        tag = "%d" % (os.getpid() % 100000)
        self.parent = "ksp" + tag
        self.children = ["ksc%d-%s" % (i, tag) for i in range(1, N_CHILDREN + 1)]
        self.created = []

    def setup(self):
        for ns in [self.parent] + self.children:
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for i, ns in enumerate(self.children, 1):
            p_if, c_if = "kvp%d" % i, "kvc%d" % i
            run(["ip", "link", "add", p_if, "netns", self.parent, "type", "veth", "peer",
                 "name", c_if, "netns", ns])
            run(["ip", "-n", self.parent, "addr", "add", "10.200.%d.1/24" % i, "dev", p_if])
            run(["ip", "-n", ns, "addr", "add", "10.200.%d.2/24" % i, "dev", c_if])
            run(["ip", "-n", self.parent, "link", "set", p_if, "up"])
            run(["ip", "-n", ns, "link", "set", c_if, "up"])

    def cleanup(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    netns = Netns() if "--netns" in sys.argv[2:] else None
    checks = Checks()
    nodes = []
    tmp = tempfile.TemporaryDirectory(prefix="kraken-sync-procs-")
    try:
        if netns:
            netns.setup()
        secret = os.path.join(tmp.name, "secret")
        subprocess.run([binary, "--write-secret", secret], check=True)
        parent_id = str(uuid.uuid4())
        child_ids = [str(uuid.uuid4()) for _ in range(N_CHILDREN)]
        state = os.path.join(tmp.name, "state.json")
        with open(state, "w") as f:
            json.dump({"nodes": [{"id": c, "parentId": parent_id, "nodename": "c%d" % i}
                                 for i, c in enumerate(child_ids, 1)]}, f)
        timers = ["--hello", "100", "--dead", "1500", "--rejoin-min", "50",
                  "--rejoin-max", "400"]

        def start_parent(port):
            listen = "0.0.0.0" if netns else "127.0.1.1"
            return Node(binary, "parent",
                        ["--id", parent_id, "--listen", listen, "--port", str(port),
                         "--secret", secret, "--state", state] + timers,
                        netns.parent if netns else None)

        parent = start_parent(0)
        port = parent.port
        nodes.append(parent)
        children = []
        for i, cid in enumerate(child_ids, 1):
            if netns:
                listen, up = "10.200.%d.2" % i, "10.200.%d.1:%d" % (i, port)
            else:
                listen, up = "127.0.1.%d" % (i + 1), "127.0.1.1:%d" % port
            # a child holds its own node key, not the cluster secret (PROTOCOL.md 2)
            key = os.path.join(tmp.name, "key%d" % i)
            subprocess.run([binary, "--write-node-key", secret, state, parent_id, cid, key],
                           check=True)
            c = Node(binary, "child%d" % i,
                     ["--id", cid, "--listen", listen, "--parent", up, "--secret", key]
                     + timers, netns.children[i - 1] if netns else None)
            children.append(c)
            nodes.append(c)

        for c in children:
            checks.check(c.cmd("wait joined %d" % TIMEOUT_MS) == "OK", c.name + " joined")
        checks.check(parent.cmd("wait children %d %d" % (N_CHILDREN, TIMEOUT_MS)) == "OK",
                     "parent sees %d children" % N_CHILDREN)
        for c, cid in zip(children, child_ids):
            checks.check(parent.cmd("wait dsc %s /RunState SYNC %d" % (cid, TIMEOUT_MS)) == "OK",
                         "parent discovered RunState SYNC for " + c.name)

        # Cfg down
        checks.check(parent.cmd("cfg %s /Nodename renamed-1" % child_ids[0]) == "OK",
                     "Cfg change at the parent")
        checks.check(children[0].cmd("wait cfg %s /Nodename renamed-1 %d"
                                     % (child_ids[0], TIMEOUT_MS)) == "OK",
                     "Cfg change reached child1")
        # Dsc up
        checks.check(children[1].cmd("dsc %s /Arch arm64" % child_ids[1]) == "OK",
                     "Dsc discovery at child2")
        checks.check(parent.cmd("wait dsc %s /Arch arm64 %d" % (child_ids[1], TIMEOUT_MS))
                     == "OK", "Dsc discovery reached the parent")

        # kill -9 the parent: children notice, mark themselves ERROR, keep trying
        parent.kill9()
        nodes.remove(parent)
        for c, cid in zip(children, child_ids):
            checks.check(c.cmd("wait dsc %s /RunState ERROR %d" % (cid, TIMEOUT_MS)) == "OK",
                         c.name + " marked itself ERROR after the parent died")
        parent = start_parent(port)
        nodes.append(parent)
        checks.check(parent.port == port, "parent restarted on the same port")
        for c in children:
            checks.check(c.cmd("wait joined %d" % TIMEOUT_MS) == "OK", c.name + " rejoined")
        checks.check(parent.cmd("wait children %d %d" % (N_CHILDREN, TIMEOUT_MS)) == "OK",
                     "restarted parent sees %d children" % N_CHILDREN)
        checks.check(parent.cmd("wait dsc %s /Arch arm64 %d" % (child_ids[1], TIMEOUT_MS))
                     == "OK", "child2's Dsc is back at the restarted parent")
        for c, cid in zip(children, child_ids):
            checks.check(c.cmd("wait dsc %s /RunState SYNC %d" % (cid, TIMEOUT_MS)) == "OK",
                         c.name + " is SYNC again")
        # the restarted parent lost child1's rename (its state file has the old name)
        checks.check(children[0].cmd("wait cfg %s /Nodename c1 %d" % (child_ids[0], TIMEOUT_MS))
                     == "OK", "child1 took the restarted parent's Cfg")
        stats = parent.cmd("stats")
        checks.check(stats is not None and "dropped_bad_mac=0" in stats, "no bad macs: %s" % stats)
    except Exception as e:  # a crashed node or a failed setup: report, then clean up
        checks.check(False, "driver: %s: %s" % (type(e).__name__, e))
    finally:
        for n in nodes:
            code = n.stop()
            checks.check(code == 0, "%s exited cleanly (code %s)" % (n.name, code))
        if netns:
            netns.cleanup()
        tmp.cleanup()
    # TAP plan last (the number of checks is known only at the end)
    print("1..%d" % (checks.passed + checks.failed))
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
