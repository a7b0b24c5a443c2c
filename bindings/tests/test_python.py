"""The Python bindings (import kraken): every binding call, values as native types, the
error mapping with the library's messages, closed objects, free orders, callback lifetimes
and exceptions, 1,000,000 callbacks without a leak, the GIL released while the loop runs,
asyncio, in-process modules, and modules in Python and Lua driving a node from cold to SYNC
through a running kraken-daemon (the examples, run as they are)."""

import asyncio
import gc
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
import weakref

import pytest

import kraken
from kraken import core

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, os.path.join(ROOT, "daemon", "tests"))
N1 = "7e57c0de-0000-4000-8000-000000000001"
N2 = "7e57c0de-0000-4000-8000-000000000002"
IP = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"
MAC = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mac"
MTU = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mtu"
CONTROL = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Control"
# The daemon tests need kraken-daemon (meson passes it unless -Ddaemon=false).
needs_daemon = pytest.mark.skipif(not os.environ.get("KRAKEN_DAEMON"),
                                  reason="kraken-daemon not built (-Ddaemon=false)")
POWER = [("discover", "/PhysState", "PHYS_UNKNOWN", "POWER_OFF"),
         ("poweron", "/PhysState", "POWER_OFF", "POWER_ON")]


def power_service(engine, on_mutate=None, **kw):
    """A service 'power' answering every step with its goal (or on_mutate)."""
    svc = engine.add_service("power", on_mutate=on_mutate or (lambda s, r: s.complete(r)), **kw)
    for mid, url, old, new in POWER:
        svc.declare(mid, mutates=[(url, old, new)], context="ALL", timeout=30)
    return svc


def dsc(engine, node, url="/PhysState"):
    return engine.store.get(node, url, "dsc")


# ---- values ---------------------------------------------------------------------------------------

def test_node_values_are_native_types():
    n = kraken.Node(N1, nodename="n1", phys_state="POWER_ON", arch="amd64")
    assert n.id == uuid.UUID(N1) and isinstance(n.id, uuid.UUID)
    assert n["/PhysState"] == "POWER_ON" and n.get("/Nodename") == "n1"
    n[IP] = "10.0.0.5"
    n[MAC] = "02:00:00:00:01:01"
    n[MTU] = 9000
    n[CONTROL] = True
    n["/ParentId"] = uuid.UUID(N2)
    assert (n[IP], n[MAC], n[MTU], n[CONTROL]) == ("10.0.0.5", "02:00:00:00:01:01", 9000, True)
    assert n["/ParentId"] == uuid.UUID(N2)
    assert n[MTU.rsplit("/", 2)[0]] == {"iface": "", "mac": "02:00:00:00:01:01", "mtu": 9000,
                                        "control": True} or isinstance(n[MTU.rsplit("/", 2)[0]],
                                                                       dict)
    assert n.extensions == ["type.googleapis.com/IPv4.IPv4OverEthernet"]
    assert n.get("/Services/nope/State", "absent") == "absent"
    n["/Services/pxe/State"] = "RUN"
    assert n.services == ["pxe"]
    del n["/Services/pxe"]
    assert n.services == []
    assert n.get("/RunState") == "UNKNOWN"          # unset reads as the zero value
    c = kraken.Node.from_json(n.to_json())
    assert c == n and c is not n and c.to_dict()["nodename"] == "n1"
    assert kraken.Node.from_json({"id": N1, "physState": "POWER_OFF"})["/PhysState"] == "POWER_OFF"
    d = n.copy()
    d["/Nodename"] = "other"
    assert n["/Nodename"] == "n1" and d != n
    assert repr(kraken.Node(N2)) == 'Node({"id":"%s"})' % N2
    assert kraken.Node().id != kraken.Node().id      # random ids
    assert kraken.enum_members("PhysState")["POWER_ON"] == 2
    assert kraken.canonical_url("/physState") == "/PhysState"


# ---- errors ---------------------------------------------------------------------------------------

def test_errors_map_codes_to_classes_with_the_library_message():
    n = kraken.Node(N1)
    with pytest.raises(kraken.ParseError) as e:
        n["/Bogus"]
    assert str(e.value) == "URL '/Bogus': kraken.Node has no field 'Bogus'"
    assert (e.value.code, e.value.name) == (-6, "KRAKEN_EPARSE")
    assert isinstance(e.value, ValueError) and isinstance(e.value, kraken.Error)
    with pytest.raises(kraken.WrongType, match=r"^URL '/PhysState': 'ON' is not a member "
                       r"of enum PhysState$"):
        n["/PhysState"] = "ON"
    store = kraken.Store()
    with pytest.raises(kraken.NotFound) as e:
        store.read(N1)
    assert isinstance(e.value, LookupError) and e.value.code == core.KRAKEN_ENOTFOUND
    with pytest.raises(kraken.ParseError, match=r"^store_read: invalid node id 'nope': "
                       r"expected a UUID"):
        store.read("nope")
    store.create(kraken.Node(N1, nodename="a"))
    with pytest.raises(kraken.AlreadyExists):
        store.create(kraken.Node(N1))
    with pytest.raises(kraken.NoPath, match="no mutation path"):
        ms = kraken.MutationSet([("p", kraken.Mutation("x", [("/PhysState", "POWER_OFF",
                                                                "POWER_ON")]))])
        ms.plan(kraken.Node(N1, phys_state="POWER_ON"))
    with pytest.raises(kraken.IOFailure) as e:
        store.load("/nonexistent/state.json")
    assert "/nonexistent/state.json" in str(e.value) and isinstance(e.value, OSError)
    # every code has its class, named by its symbol
    for code in range(-1, -14, -1):
        err = kraken.errors.error_for(code, "m")
        assert type(err) is not kraken.Error and err.name == core.kb_err_name(code)
    assert type(kraken.errors.error_for(-99, "m")) is kraken.Error


def test_mutation_requires_as_dict_or_pairs():
    """requires/excludes read as a dict or as (url, value) pairs, the way mutates is written;
    anything else is a TypeError naming the mutation, not an AttributeError from inside."""
    on = [("/PhysState", "POWER_OFF", "POWER_ON")]
    plans = []
    for requires in ({"/Platform": "sim"}, [("/Platform", "sim")]):
        ms = kraken.MutationSet([("p", kraken.Mutation("on", on, requires=requires))])
        plans.append(list(ms.plan(kraken.Node(N1, phys_state="POWER_ON", platform="sim"),
                                  kraken.Node(N1, phys_state="POWER_OFF"))))
    assert plans == [["p/on"], ["p/on"]]
    with pytest.raises(TypeError, match=r"^mutation 'on': excludes must be a dict \{url: value\} "
                       r"or a list of \(url, value\) pairs, not 5$"):
        kraken.MutationSet([("p", kraken.Mutation("on", on, excludes=5))])
    with pytest.raises(TypeError, match=r"^mutation 'on': requires must be"):
        kraken.MutationSet([("p", kraken.Mutation("on", on, requires=[("/Platform",)]))])


def test_wrong_types_raise_type_errors_not_crashes():
    with pytest.raises(TypeError):
        kraken.Node(5)
    with pytest.raises(TypeError):
        kraken.Node(N1)["/Nodename"] = object()
    with pytest.raises(TypeError):
        kraken.Engine(bogus=1)
    with pytest.raises(TypeError):
        core.kb_store_count("not a store")
    with pytest.raises(kraken.InvalidArgument, match="store_count: no store"):
        core.kb_store_count(None)
    with pytest.raises(TypeError, match="not callable"):
        core.kb_py_callback_new(42)
    with pytest.raises(ValueError, match="state kind 'both'"):
        kraken.Store().get(N1, "/PhysState", "both")
    with pytest.raises(OverflowError):
        core.kb_loop_step(kraken.Loop()._h, 2**40)


# ---- store ----------------------------------------------------------------------------------------

def test_store_load_save_listen(tmp_path):
    with kraken.Store() as store:
        store.load(os.path.join(FIXTURES, "cluster4.json"))
        store.load_dsc(os.path.join(FIXTURES, "cluster4-dsc.json"))
        assert len(store) == 5 and store.find("n1") in store
        n1 = store.find("n1")
        assert store.cfg(n1)["/Nodename"] == "n1"
        assert sorted(store) == store.ids()
        changes = []
        listener = store.listen(changes.append)
        store.set(n1, "/PhysState", "POWER_OFF")
        assert changes[-1].kind == "CFG_UPDATE" and changes[-1].url == "/PhysState"
        assert changes[-1].new == "POWER_OFF"
        listener.remove()
        store.set(n1, "/PhysState", "POWER_ON")
        assert len(changes) == 1
        node = store.cfg(n1)
        node["/Arch"] = "arm64"
        store.update(node)
        assert store.get(n1, "/Arch") == "arm64"
        path = tmp_path / "saved.json"
        store.save(path)
        again = kraken.Store()
        again.load(path)
        assert again.to_json() == store.to_json() and len(json.loads(again.to_json())["nodes"]) == 5
        store.delete(n1)
        assert n1 not in store and len(store) == 4
        with pytest.raises(kraken.NotFound, match="nodename 'nobody'"):
            store.find("nobody")
        assert [n.id for n in store.nodes("dsc")] == store.ids()
        new = store.create(nodename="fresh")
        assert store.cfg(new)["/Nodename"] == "fresh"


# ---- closed objects and free orders ---------------------------------------------------------------

def test_calls_on_closed_objects_raise_state_error():
    engine = kraken.Engine()
    store, svc, sub = engine.store, power_service(engine), engine.subscribe()
    engine.close()
    engine.close()                               # idempotent
    for call, message in [
            (lambda: store.create(kraken.Node()), "store_create: the store's engine is closed"),
            (lambda: engine.status(N1), "node_status: the engine is closed"),
            (lambda: engine.subscribe(), "subscribe: the engine is closed"),
            (lambda: svc.discover(N1, "/PhysState", "POWER_ON"),
             "service_discover_text: service 'power' was detached: its engine was freed")]:
        with pytest.raises(kraken.StateError) as e:
            call()
        assert str(e.value) == message
    sub.remove()
    svc.remove()
    with pytest.raises(kraken.StateError, match="discover: the service was removed"):
        svc.discover(N1, "/PhysState", "POWER_ON")
    own = kraken.Store()
    own.close()
    with pytest.raises(kraken.StateError, match="store_count: the store is closed"):
        len(own)


def _objects():
    loop = kraken.Loop()
    store = kraken.Store()
    engine = kraken.Engine(loop, store=store)
    svc = power_service(engine)
    sub = engine.subscribe(lambda ev: None)
    listener = store.listen(lambda ch: None)
    module = kraken.Module("m").run_in(engine, "m")
    engine._owned.clear()     # only the names below hold them
    store.create(kraken.Node(N1, phys_state="POWER_ON"))
    loop.step(0)
    return {"loop": loop, "store": store, "engine": engine, "svc": svc, "sub": sub,
            "listener": listener, "module": module}


def test_objects_freed_in_any_order_by_the_collector():
    # The Python objects keep what they use alive (an engine its loop); what the collector
    # may free in any order is their C handles: drop each handle's last reference, in every
    # order, and check that it was destroyed right then.
    names = ["loop", "store", "engine", "svc", "sub", "listener", "module"]
    for order in itertools.permutations(names, 6):
        objs = _objects()
        for name in order:
            handle = objs[name]._h
            ref = weakref.ref(handle)
            objs[name]._h = None
            del handle
            assert ref() is None, "%s's handle outlived its last reference" % name
        del objs
    gc.collect()
    # and every order of explicit closes, then collection
    for order in itertools.permutations(["store", "engine", "svc", "sub", "module"]):
        objs = _objects()
        for name in order:
            o = objs[name]
            (o.remove if hasattr(o, "remove") else o.close)()
        objs.clear()
    gc.collect()


# ---- the engine, services, events ---------------------------------------------------------------------

def test_service_mutations_events_and_request_ids():
    requests = []

    def mutate(svc, req):
        if req.mutation == "discover":      # the nodes are read during this callback only
            requests.append((req, req.cfg.copy(), req.dsc["/PhysState"]))
        else:
            requests.append((req, None, None))
        svc.complete(req)

    with kraken.Engine(log=lambda *a: None, log_level="DEBUG") as engine:
        svc = power_service(engine, mutate)
        assert svc.id == "power"
        events = engine.subscribe(types=["STATE_MUTATION", "DISCOVERY"])
        seen = []
        engine.subscribe(seen.append, types="DISCOVERY", url="/Phys*")
        engine.store.create(kraken.Node(N1, nodename="n1", phys_state="POWER_ON"))
        assert engine.loop.run_until(lambda: dsc(engine, N1) == "POWER_ON", 10)
        assert engine.loop.run_until(lambda: engine.status(N1).state == "CONVERGED", 10)
        st = engine.status(N1)
        assert st.steps == ["power/discover", "power/poweron"] and st.current == 2
        assert (st.failures, st.reason) == (0, None)
        req, cfg, before = requests[0]
        assert req.mutation == "discover" and req.node == uuid.UUID(N1) and req.id > 0
        assert req.mutates == [kraken.Mutate("/PhysState", "PHYS_UNKNOWN", "POWER_OFF")]
        assert req.goal == {"/PhysState": "POWER_OFF"} and cfg["/Nodename"] == "n1"
        assert before == "PHYS_UNKNOWN"
        with pytest.raises(kraken.StateError, match="readable during the callback only"):
            requests[1][0].dsc
        with pytest.raises(kraken.StateError):        # a late answer is refused
            svc.report(req, "/PhysState", "POWER_OFF")
        engine.flush()
        kinds = [(e.type, e.kind, e.mutation) for e in events]
        assert ("STATE_MUTATION", "MUTATE", "discover") in kinds
        assert ("STATE_MUTATION", "DONE", "poweron") in kinds
        assert all(e.type == "DISCOVERY" and e.url == "/PhysState" for e in seen)
        assert seen[-1].new == "POWER_ON" and seen[-1].service == "power"
        assert events.dropped == 0 and len(events) == 0
        svc.discover(N1, "/PhysState", "POWER_OFF")          # unsolicited fact
        assert dsc(engine, N1) == "POWER_OFF"
        graph = engine.graph(N1)
        assert {"nodes", "edges"} <= set(graph)
        engine.freeze()
        assert engine.frozen
        engine.thaw()
        engine.disable_mutation("power", "poweron")
        engine.set_mutation_timeout("power", "discover", 5)
        engine.reset_node(N1)
        assert engine.self_id in engine.store


def test_engine_options_and_log():
    lines = []
    self_id = uuid.UUID("c0ffee00-0000-4000-8000-000000000001")
    with kraken.Engine(self_id=self_id, start_frozen=False, max_failures=2,
                       timeout_scale=0.5, log=lambda *a: lines.append(a),
                       log_level="DDDEBUG") as engine:
        assert engine.self_id == self_id
        svc = power_service(engine, lambda s, r: s.fail(r, "no BMC"))
        engine.store.create(kraken.Node(N1, phys_state="POWER_ON"))
        assert engine.loop.run_until(lambda: engine.status(N1).failures >= 1, 10)
        assert engine.status(N1).reason == "power/discover failed: no BMC"
        svc.remove()
    assert all(isinstance(level, str) for level, _, _ in lines)


def test_callback_that_raises_fails_its_request_and_the_engine_goes_on():
    calls = []

    def mutate(svc, req):
        calls.append(req.mutation)
        if len(calls) == 1:
            raise RuntimeError("boom")
        svc.complete(req)

    with kraken.Engine(backoff_initial_ms=10) as engine:
        power_service(engine, mutate)
        failed = engine.subscribe(types="STATE_MUTATION")
        with pytest.warns(kraken.CallbackWarning, match="boom"):
            engine.store.create(kraken.Node(N1, phys_state="POWER_ON"))
            assert engine.loop.run_until(lambda: len(calls) >= 1, 10)
        assert engine.loop.run_until(lambda: dsc(engine, N1) == "POWER_ON", 10)
        engine.flush()
        reasons = [e.message for e in failed if e.kind == "FAILED"]
        assert reasons == ["RuntimeError: boom"]
    # a custom handler sees the exception
    got = []
    kraken.set_callback_error_handler(lambda where, exc: got.append((where, str(exc))))
    try:
        with kraken.Engine() as engine:
            engine.subscribe(lambda ev: 1 / 0)
            engine.store.create(kraken.Node(N1))
            engine.flush()
    finally:
        kraken.set_callback_error_handler(None)
    assert got and got[0] == ("event", "division by zero")


def test_keyboard_interrupt_in_a_callback_stops_run():
    with kraken.Engine() as engine:
        def interrupt(ev):
            raise KeyboardInterrupt
        engine.subscribe(interrupt)
        engine.store.create(kraken.Node(N1))
        with pytest.raises(KeyboardInterrupt):
            engine.loop.run(timeout=10)


def test_callbacks_released_when_unregistered_or_parent_freed():
    class Fn:
        def __call__(self, *a):
            self.calls = getattr(self, "calls", 0) + 1

    engine = kraken.Engine()
    fn = Fn()
    ref = weakref.ref(fn)
    sub = engine.subscribe(fn)
    del fn
    engine.store.create(kraken.Node(N1))
    engine.flush()
    assert ref().calls >= 1
    sub.remove()                          # unregister, collect, then events: no call, no crash
    gc.collect()
    assert ref() is None
    engine.store.create(kraken.Node(N2))
    engine.flush()
    engine.loop.step(0)
    # the parent's free releases the callbacks of its children too
    fn2 = Fn()
    ref2 = weakref.ref(fn2)
    svc = engine.add_service("s", on_mutate=fn2)
    del fn2
    engine.close()
    gc.collect()
    assert ref2() is None
    svc.remove()


def test_million_callbacks_do_not_leak():
    """1,000,000 invocations of a Python callback through the C trampoline (a store listener:
    synchronous, so the count is exact); memory measured by tracemalloc after a warm-up."""
    store = kraken.Store()
    store.create(kraken.Node(N1))
    count = [0]

    def listener(call):
        count[0] += 1

    handle = core.kb_store_listen(store._h, core.kb_py_callback_new(listener))
    set_text, h = core.kb_store_set_text, store._h
    values = ["a", "b"]
    for i in range(10000):
        set_text(h, core.KRAKEN_CFG, N1, "/Nodename", values[i & 1])
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1000000):
        set_text(h, core.KRAKEN_CFG, N1, "/Nodename", values[i & 1])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert count[0] == 1010000
    assert after - before < 64 * 1024, "grew by %d bytes" % (after - before)
    core.kb_listener_close(handle)
    set_text(h, core.KRAKEN_CFG, N1, "/Nodename", "c")
    assert count[0] == 1010000


# ---- threads and asyncio ------------------------------------------------------------------------------

def test_gil_released_while_the_loop_runs():
    loop = kraken.Loop()
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        n0 = len(ticks)
        loop.run(timeout=0.3)            # blocks in C for 300 ms without the GIL
        assert len(ticks) - n0 > 20
    finally:
        stop.set()
        t.join()


def test_asyncio_drives_the_engine():
    async def main():
        with kraken.Engine() as engine:
            power_service(engine)
            task = kraken.aio.attach(engine.loop)
            engine.store.create(kraken.Node(N1, phys_state="POWER_ON"))
            for _ in range(5000):
                if dsc(engine, N1) == "POWER_ON":
                    break
                await asyncio.sleep(0.002)
            task.cancel()
            return dsc(engine, N1)

    assert asyncio.run(main()) == "POWER_ON"


# ---- modules --------------------------------------------------------------------------------------------

def test_module_in_process_with_events_and_query():
    mod = kraken.Module("inproc", schemas={"schemas": [{"name": "InProc.Config", "fields": [
        {"name": "mode", "number": 1, "type": "string"},
        {"name": "retries", "number": 2, "type": "uint32"}]}]}, config_schema="InProc.Config")
    mod.discoverable("/PhysState", "NODE_OFF", "POWER_OFF")
    for mid, url, old, new in POWER:
        mod.mutation(mid, mutates=[(url, old, new)], context="ALL")
    started, events = [], []

    @mod.on_start
    def start(m, config):
        started.append(config)
        m.set_state("RUN")

    @mod.on_mutate
    def mutate(m, req):
        m.complete(req)

    @mod.on_event
    def event(m, ev):
        events.append(ev.type)

    configs = []
    mod.on_config(lambda m, config: configs.append(config))

    mod.events(types=["DISCOVERY"])
    with kraken.Engine() as engine:
        client = mod.run_in(engine, "pwr")
        assert client.service_id == "pwr" and client.connected
        engine.store.create(kraken.Node(N1, phys_state="POWER_ON"))
        assert engine.loop.run_until(lambda: dsc(engine, N1) == "POWER_ON", 10)
        assert started == [None] and "DISCOVERY" in events
        client.discover_named(N2 if False else N1, "/PhysState", "NODE_OFF")
        assert dsc(engine, N1) == "POWER_OFF"
        assert client.query(N1, "dsc")["/PhysState"] == "POWER_OFF"
        client.update_cfg(N1, "/Arch", "arm64")
        assert engine.store.get(N1, "/Arch") == "arm64"
        client.log("hello", "NOTICE")
        # the service's config: a record pushed to on_config as a dict, fields typed by the node
        config = {"@type": "type.googleapis.com/InProc.Config", "mode": "fast", "retries": 3}
        engine.store.set(engine.self_id, "/Services/pwr/Config", config)
        assert engine.loop.run_until(lambda: configs, 10) and configs[-1] == config
        assert engine.store.get(engine.self_id, "/Services/pwr/Config/Retries") == 3
        assert engine.store.cfg(engine.self_id)["/Services/pwr/Config/Mode"] == "fast"
        with pytest.raises(kraken.StateError, match="module 'inproc' is running"):
            mod.discoverable("/Arch")
        client.close()
        with pytest.raises(kraken.StateError, match="discover: the module is closed"):
            client.discover(N1, "/PhysState", "POWER_ON")


def _daemon(tmp_path, service, command, args, env):
    from kdtest import Daemon
    cfg = {"modulesocket": str(tmp_path / "module.sock"), "modulegrace": "1s",
           "serviceinstances": {"power": {"module": service, "command": command,
                                          "args": args, "env": env}}}
    (tmp_path / "kraken.json").write_text(json.dumps(cfg))
    return Daemon(["-id", "c0ffee00-0000-4000-8000-000000000001", "-log", "6",
                   "-config", str(tmp_path / "kraken.json")])


def _binding_env():
    keep = ("PYTHONPATH", "LUA_CPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
    return {k: os.environ[k] for k in keep if k in os.environ}


@needs_daemon
@pytest.mark.parametrize("language", ["python", "lua"])
def test_example_power_module_drives_a_node_cold_to_sync_through_the_daemon(tmp_path, language):
    from kdtest import wait_until
    if language == "python":
        d = _daemon(tmp_path, "pypower", sys.executable, [os.path.join(EXAMPLES, "power.py")],
                    _binding_env())
    else:
        d = _daemon(tmp_path, "luapower", shutil.which("lua5.4") or "/usr/bin/lua5.4",
                    [os.path.join(EXAMPLES, "power.lua")], _binding_env())
    try:
        d.wait_line(r"power: %spower: connected as power" % ("py" if language == "python"
                                                               else "lua"))
        status, _, _ = d.request("POST", "/cfg/node", {"id": N1, "nodename": "cold1",
                                                       "physState": "POWER_ON",
                                                       "runState": "SYNC"})
        assert status == 200
        wait_until(lambda: d.get("/dsc/node/" + N1)[2].get("runState") == "SYNC", 30,
                   "node SYNC")
        assert d.get("/dsc/node/" + N1)[2]["physState"] == "POWER_ON"
        d.wait_line(r"power: sync cold1")             # the module's log line, via the daemon
    finally:
        assert d.stop() == 0


@needs_daemon
def test_python_module_connects_by_itself_queries_and_sees_refusals(tmp_path):
    from kdtest import Daemon
    sock = tmp_path / "module.sock"
    (tmp_path / "kraken.json").write_text(json.dumps({"modulesocket": str(sock)}))
    d = Daemon(["-log", "6", "-config", str(tmp_path / "kraken.json")])
    try:
        d.wait_line(r"daemon: ready")
        mod = kraken.Module("selfpower")
        mod.discoverable("/PhysState")
        for mid, url, old, new in POWER:
            mod.mutation(mid, mutates=[(url, old, new)], context="ALL", timeout=30)
        errors, gone = [], []
        mod.on_mutate(lambda m, req: m.complete(req))
        mod.on_error(lambda m, err: errors.append(err))
        mod.on_disconnect(lambda m, why: gone.append(why))
        with pytest.raises(kraken.IOFailure, match="nothing.sock: No such file"):
            mod.connect(socket=str(tmp_path / "nothing.sock"), service_id="x", timeout=1)
        client = mod.connect(socket=str(sock), service_id="sp")
        assert client.connected and client.service_id == "sp"
        status, _, _ = d.request("POST", "/cfg/node", {"id": N1, "physState": "POWER_ON"})
        assert status == 200
        assert client.loop.run_until(
            lambda: client.query(N1, "dsc")["/PhysState"] == "POWER_ON", 20)
        client.update_cfg(N1, "/Nodename", "named")
        assert client.query(N1)["/Nodename"] == "named"
        client.discover(N1, "/Arch", "x86_64")            # not declared: refused, asynchronously
        assert client.loop.run_until(lambda: errors, 10)
        assert isinstance(errors[0], kraken.InvalidArgument)
        assert "'/Arch' was not declared discoverable" in str(errors[0])
        d.stop()
        assert client.loop.run_until(lambda: gone, 10) and not client.connected
        with pytest.raises(kraken.StateError):
            client.discover(N1, "/PhysState", "POWER_ON")
        d = Daemon(["-log", "6", "-config", str(tmp_path / "kraken.json")])   # back again
        client.reconnect()
        assert client.connected
        d.request("POST", "/cfg/node", {"id": N2, "physState": "POWER_ON"})
        assert client.loop.run_until(
            lambda: client.query(N2, "dsc")["/PhysState"] == "POWER_ON", 20)
        client.close()
    finally:
        d.stop()


# ---- the examples ---------------------------------------------------------------------------------------

def test_example_plan_prints_what_plan_c_prints():
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(EXAMPLES, "plan.py")] + list(args),
                              capture_output=True, text=True, timeout=60)
    out = run(os.path.join(FIXTURES, "cluster4.json"), os.path.join(FIXTURES, "cluster4-dsc.json"))
    with open(os.path.join(FIXTURES, "cluster4.plan.expected")) as f:
        assert out.stdout == f.read() and out.returncode == 0
    out = run(os.path.join(FIXTURES, "cluster4.json"), os.path.join(FIXTURES, "cluster4-dsc.json"),
              "--set", "n4:/PhysState=POWER_OFF")
    assert "n4: nothing to do" not in out.stdout and "n4: no path" in out.stdout
    out = run("-g", os.path.join(FIXTURES, "cluster4.json"))
    with open(os.path.join(FIXTURES, "cluster4.graph.expected")) as f:
        assert out.stdout == f.read()
    out = run(os.path.join(FIXTURES, "cluster4.json"), "--set", "/Bogus=1")
    assert out.returncode == 1
    assert out.stderr == "plan.py: URL '/Bogus': kraken.Node has no field 'Bogus' (KRAKEN_EPARSE)\n"


def test_examples_are_short():
    for name in ("power.py", "power.lua"):
        with open(os.path.join(EXAMPLES, name)) as f:
            assert len(f.read().splitlines()) <= 60, name


EXIT_PY = '''
import kraken
e = kraken.Engine()
svc = e.add_service("p", on_mutate=lambda s, r: (e, s.complete(r)))   # cycles through C
sub = e.subscribe(lambda ev: e)
listener = e.store.listen(lambda c: None)
m = kraken.Module("x").run_in(e, "x")
e.store.create(kraken.Node(phys_state="POWER_ON"))
e.loop.step(0)
st = kraken.Store(); e2 = kraken.Engine(store=st); e2.subscribe(lambda ev: st)
print("alive")
'''
EXIT_LUA = '''
local kraken = require "kraken"
local e = kraken.engine()
e:add_service("p", {on_mutate = function(s, r) local _ = e; s:complete(r) end})
e:subscribe(function(ev) local _ = e end)
kraken.module{name = "x"}:run_in(e, "x")
e.store:create(nil, {phys_state = "POWER_ON"})
e.loop:step(0)
local st = kraken.store(); local e2 = kraken.engine{store = st}
e2:subscribe(function() local _ = st end)
print("alive")
'''


@pytest.mark.parametrize("language", ["python", "lua"])
def test_interpreter_exits_cleanly_with_everything_alive(language):
    """Finalisation frees whatever is left, callbacks that refer back to their engine
    included, in the interpreter's order."""
    cmd = ([sys.executable, "-c", EXIT_PY] if language == "python"
           else [shutil.which("lua5.4") or "/usr/bin/lua5.4", "-e", EXIT_LUA])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "alive\n"), out.stderr
    assert "ERROR" not in out.stderr and "runtime error" not in out.stderr


def test_objects_belong_to_their_thread():
    with kraken.Engine() as engine:
        caught = []

        def other():
            try:
                engine.store.create(kraken.Node(N1))
            except kraken.Error as e:
                caught.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert isinstance(caught[0], kraken.WrongThread) and isinstance(caught[0], RuntimeError)
        assert "libkraken handles are single-threaded" in str(caught[0])
        assert N1 not in engine.store
