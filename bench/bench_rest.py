#!/usr/bin/python3
"""REST API figures of kraken-daemon, measured with wrk (Debian package wrk).

  bench/bench_rest.py BUILD/daemon/kraken-daemon [NODES]

Starts one daemon (release build recommended) with a state file of NODES nodes
(default 10000) on 127.0.0.1 with an ephemeral port, then measures:
  1. GET /cfg/node/{id}   requests/s (wrk, 1 thread, 32 connections, 5 s)
  2. GET /cfg/nodes       latency with NODES nodes (wrk, 1 connection, 5 s)
  3. PUT /cfg/nodes       of NODES nodes, latency including the state-file write
                          that precedes the answer (wrk, 1 connection)
  4. the idle daemon with NODES nodes: RSS and CPU over 5 s
The daemon is one thread: every figure is one core. Prints a markdown table.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def make_state(path, n, self_id):
    nodes = [{"id": self_id, "nodename": "head", "physState": "POWER_ON", "runState": "SYNC"}]
    for i in range(n):
        nodes.append({
            "id": "10000000-0000-4000-8000-%012d" % i, "nodename": "n%05d" % i,
            "arch": "amd64", "platform": "sim", "parentId": self_id,
            "extensions": [{"@type": "type.googleapis.com/IPv4.IPv4OverEthernet",
                            "ifaces": {"kraken": {
                                "eth": {"iface": "eth0", "mac": "02:00:00:%02x:%02x:%02x" %
                                        (i >> 16 & 255, i >> 8 & 255, i & 255)},
                                "ip": {"ip": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255,
                                                              i & 255)}}}}]})
    with open(path, "w") as f:
        json.dump({"nodes": nodes}, f)
    return nodes


def wrk(args, script=None, pid=None):
    """(requests/s, mean latency ms, p99 ms, daemon CPU ms per request)."""
    cpu0 = proc_stat(pid)[0] if pid else 0
    cmd = ["wrk", "--latency"] + args
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[lat.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit("wrk saw %s error answers:\n%s" % (non2xx.group(1), out))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_ms = (proc_stat(pid)[0] - cpu0) * 1000.0 / max(total, 1) if pid else 0.0
    return rps, float(lat.group(1)) * scale, p99_ms, cpu_ms


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return cpu, rss


def main():
    if len(sys.argv) < 2 or not shutil.which("wrk"):
        raise SystemExit(__doc__)
    daemon = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    self_id = "c0ffee00-0000-4000-8000-000000000001"
    work = tempfile.mkdtemp(prefix="bench_rest.")
    state = os.path.join(work, "state.json")
    nodes = make_state(state, n, self_id)
    proc = subprocess.Popen([daemon, "-id", self_id, "-state", state, "-ipapi", "127.0.0.1:0",
                             "-wsport", "0", "-syncport", "0", "-log", "5", "-freeze"],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"REST port (\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("the daemon did not start")
        # Keep reading its log so that it never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        base = "http://127.0.0.1:%d" % port
        rows = []
        pid = proc.pid
        rps, lat, p99, cpu = wrk(["-t1", "-c32", "-d5s", base + "/cfg/node/" + nodes[n // 2]["id"]],
                                 pid=pid)
        rows.append(("GET /cfg/node/{id}", "%.0f req/s" % rps, "%.3f ms" % lat, "%.3f ms" % p99,
                     "%.4f ms (%.0f req/s per core)" % (cpu, 1000.0 / cpu if cpu else 0)))
        rps, lat, p99, cpu = wrk(["-t1", "-c1", "-d5s", base + "/cfg/nodes"], pid=pid)
        rows.append(("GET /cfg/nodes (%d nodes)" % n, "%.1f req/s" % rps, "%.1f ms" % lat,
                     "%.1f ms" % p99, "%.1f ms" % cpu))
        body = os.path.join(work, "put.json")
        for node in nodes[1:]:
            node["nodename"] += "x"   # every PUT changes nothing after the first: the cost
        with open(body, "w") as f:   # measured is decode + compare + answer + save
            json.dump({"nodes": nodes[1:]}, f)
        script = os.path.join(work, "put.lua")
        with open(script, "w") as f:
            f.write('local f = io.open("%s", "rb")\nwrk.method = "PUT"\nwrk.body = f:read("*a")\n'
                    'f:close()\nwrk.headers["Content-Type"] = "application/json"\n' % body)
        rps, lat, p99, cpu = wrk(["-t1", "-c1", "-d10s", "--timeout", "10s", base + "/cfg/nodes"],
                                 script, pid=pid)
        rows.append(("PUT /cfg/nodes (%d nodes, saved before the answer)" % n,
                     "%.2f req/s" % rps, "%.1f ms" % lat, "%.1f ms" % p99, "%.1f ms" % cpu))
        # A benchmark measuring idleness (not a test waiting on a condition): let the last
        # request's work finish, then count CPU over 10 s.
        time.sleep(2)
        cpu0, _ = proc_stat(proc.pid)
        t0 = time.monotonic()
        time.sleep(10)
        cpu1, rss = proc_stat(proc.pid)
        rows.append(("idle, %d nodes" % n, "RSS %.1f MiB" % (rss / 1024.0),
                     "CPU %.2f%%" % (100 * (cpu1 - cpu0) / (time.monotonic() - t0)), "", ""))
        with open("/proc/loadavg") as f:
            print("# load average during the run: " + f.read().strip())
        print("| request | throughput | mean latency | p99 | daemon CPU per request |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| %s | %s | %s | %s | %s |" % r)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
