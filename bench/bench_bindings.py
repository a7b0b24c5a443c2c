#!/usr/bin/python3
"""bench_bindings.py [N_MUTATE_NODES [N_DISCOVERIES]]: the bindings' overhead, C vs Python vs
Lua, the same work in the same run (doc/PERFORMANCE.md, "Bindings").

Runs bench_callbacks (C), then this file's Python equivalent and bench_bindings.lua, each as
an in-process module of an embedded engine: per mutation callback (a handler reporting the
goal at once) and per discovery. Then the figure that matters for external modules: a Python
module's discoveries per second through a running kraken-daemon's module socket.

    PYTHONPATH=build/bindings/python LUA_CPATH='build/bindings/lua/?.so;;' \
      bench/bench_bindings.py 5000 200000       # from the source root, build/ built
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("KRAKEN_BUILD", os.path.join(ROOT, "build"))


def python_bench(mode, n):
    import kraken
    mutations = [0]
    mod = kraken.Module("pypower")
    mod.discoverable("/PhysState")
    if mode == "mutate":
        mod.mutation("discover", mutates=[("/PhysState", "PHYS_UNKNOWN", "POWER_OFF")],
                     context="ALL")
        mod.mutation("poweron", mutates=[("/PhysState", "POWER_OFF", "POWER_ON")],
                     context="ALL")

    @mod.on_mutate
    def mutate(m, req):
        mutations[0] += 1
        m.complete(req)

    with kraken.Engine(no_sync_service=True) as engine:
        client = mod.run_in(engine, "power")
        engine.loop.step(0)
        ids = [engine.store.create(kraken.Node(phys_state="POWER_ON") if mode == "mutate"
                                   else kraken.Node()) for _ in range(n if mode == "mutate"
                                                                       else 1000)]
        t0 = time.monotonic()
        if mode == "mutate":
            ops = 2 * n
            while mutations[0] < ops:
                engine.loop.step(None)
        else:
            ops = n
            values = ("POWER_OFF", "POWER_ON")
            for i in range(n):
                client.discover(ids[i % 1000], "/PhysState", values[i & 1])
            engine.loop.step(0)
        dt = time.monotonic() - t0
    return ops, dt


def external_discoveries(n):
    """A Python module connected to kraken-daemon: n discoveries, then a query (answered after
    every discovery before it was applied): discoveries/s end to end."""
    import json
    import tempfile
    import kraken
    sys.path.insert(0, os.path.join(ROOT, "daemon", "tests"))
    os.environ.setdefault("KRAKEN_DAEMON", os.path.join(BUILD, "daemon", "kraken-daemon"))
    from kdtest import Daemon
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "module.sock")
        with open(os.path.join(tmp, "k.json"), "w") as f:
            json.dump({"modulesocket": sock}, f)
        d = Daemon(["-log", "5", "-config", os.path.join(tmp, "k.json")])
        try:
            ids = []
            for i in range(100):
                nid = "7e57c0de-0000-4000-8000-%012d" % (i + 1)
                d.request("POST", "/cfg/node", {"id": nid})
                ids.append(nid)
            mod = kraken.Module("extpower")
            mod.discoverable("/PhysState")
            client = mod.connect(socket=sock, service_id="ext")
            values = ("POWER_OFF", "POWER_ON")
            t0 = time.monotonic()
            for i in range(n):
                client.discover(ids[i % 100], "/PhysState", values[i & 1])
                if i % 1000 == 999:
                    client.loop.step(0)        # read what the daemon sent back meanwhile
            client.query(ids[0], "dsc")
            dt = time.monotonic() - t0
            client.close()
        finally:
            d.stop()
    return n, dt


def main():
    n_mut = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    n_disc = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    if len(sys.argv) > 3:                     # child mode: python_bench MODE N
        ops, dt = python_bench(sys.argv[2], int(sys.argv[3]))
        print("%s %d %.3f %.2f" % (sys.argv[2], ops, dt, dt / ops * 1e6))
        return
    rows = []
    for mode, n in (("mutate", n_mut), ("discover", n_disc)):
        c = subprocess.run([os.path.join(BUILD, "bench", "bench_callbacks"), mode, str(n)],
                           capture_output=True, text=True, check=True).stdout.split()
        ops, dt = python_bench(mode, n)
        lua = subprocess.run(["lua5.4", os.path.join(ROOT, "bench", "bench_bindings.lua"), mode,
                              str(n)], capture_output=True, text=True, check=True).stdout.split()
        rows.append((mode, int(c[1]), float(c[3]), dt / ops * 1e6, float(lua[3])))
    print("%-9s %9s %10s %10s %10s %12s %12s" % ("work", "ops", "C us/op", "Py us/op",
                                                  "Lua us/op", "Py overhead", "Lua overhead"))
    for mode, ops, c, p, lu in rows:
        print("%-9s %9d %10.2f %10.2f %10.2f %12.2f %12.2f" % (mode, ops, c, p, lu, p - c, lu - c))
    n, dt = external_discoveries(n_disc)
    print("python module -> kraken-daemon: %d discoveries in %.2f s = %.0f discoveries/s"
          % (n, dt, n / dt))


if __name__ == "__main__":
    main()
