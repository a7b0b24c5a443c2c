"""Helpers for kraken-daemon integration tests: start a daemon on an
ephemeral port of its own 127.0.0.x address, wait on its log lines with
deadlines, talk HTTP to it with http.client."""

import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

DAEMON = os.environ.get("KRAKEN_DAEMON", "kraken-daemon")
SELF_ID = "c0ffee00-0000-4000-8000-000000000001"
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# Each daemon gets its own loopback address, so parallel tests never share a port.
_addresses = itertools.count(int(os.environ.get("KD_ADDR_BASE", "20")))


def next_address():
    n = next(_addresses) % 250 + 2
    return "127.0.%d.%d" % (os.getpid() % 250 + 1, n)


class Daemon:
    """One kraken-daemon process; its stderr is collected line by line."""

    def __init__(self, args, addr=None, wait_ready=True, env=None, wrapper=(),
                 default_wsport=False):
        self.addr = addr or next_address()
        self.args = list(wrapper) + [DAEMON] + list(args)
        if not any(a.lstrip("-").startswith("ipapi") for a in args):
            self.args += ["-ipapi", self.addr + ":0"]
        if not any(a.lstrip("-").startswith("syncport") for a in args):
            self.args += ["-syncport", "0"]
        # Each daemon has its own 127.x address, but tests pick ephemeral websocket ports unless
        # one checks the default (3142 on its own address).
        if not default_wsport and not any(a.lstrip("-").startswith("wsport") for a in args):
            self.args += ["-wsport", "0"]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = None
        if wait_ready:
            line = self.wait_line(r"daemon: ready: .*REST port (\d+)")
            self.port = int(re.search(r"REST port (\d+)", line).group(1))

    def _read(self):
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout=20, start=0):
        """The first log line (from index start) matching pattern, waiting up to timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError("no log line /%s/ within %ss; log:\n%s" %
                                         (pattern, timeout, "\n".join(self.lines)))
                self.cond.wait(min(left, 0.5))

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers dict lower-cased, parsed JSON or text)."""
        conn = http.client.HTTPConnection(self.addr, self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            ctype = hdrs.get("content-type", "")
            if ctype.startswith("application/json") and data:
                return resp.status, hdrs, json.loads(data)
            return resp.status, hdrs, data.decode(errors="replace")
        finally:
            conn.close()

    def self_id(self):
        line = self.wait_line(r"daemon: ready: node ")
        return re.search(r"ready: node ([0-9a-f-]{36})", line).group(1)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("daemon did not stop within %ss; log:\n%s" % (timeout, self.log()))
        self.reader.join(5)
        check_sanitizer_output(self.log())
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.reader.join(5)


def check_sanitizer_output(text):
    """UBSan reports and goes on: a report in the log is a failure too."""
    for marker in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
        if marker in text:
            raise AssertionError("sanitizer report in the daemon's log:\n" + text)


def run_daemon(args, timeout=20):
    """Run kraken-daemon to completion: (exit code, stdout, stderr)."""
    args = list(args)
    if "-ipapi" in args and "-wsport" not in args:   # a real start: no fixed websocket port
        args += ["-wsport", "0"]
    p = subprocess.run([DAEMON] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    check_sanitizer_output(p.stderr.decode())
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def wait_until(predicate, timeout=10, what="condition"):
    """Poll predicate (cheap, non-blocking checks only) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        select.select([], [], [], 0.02)


def socket_closed_by_peer(sock, timeout):
    """True when the peer closes sock within timeout (reads until EOF)."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not r:
            break
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return True
        except BlockingIOError:
            continue
        if not data:
            return True
    return False


def durable_cfg(state_path):
    """The Cfg a restart would load: the state file with its journal replayed, by node id."""
    with open(state_path) as f:
        nodes = {n["id"]: n for n in json.load(f)["nodes"]}
    journal = str(state_path) + ".journal"
    if os.path.exists(journal):
        with open(journal) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                entry = json.loads(line)
                if "put" in entry:
                    nodes[entry["put"]["id"]] = entry["put"]
                else:
                    nodes.pop(entry["delete"], None)
    return nodes


def node(id_, **fields):
    n = {"id": id_}
    n.update(fields)
    return n
