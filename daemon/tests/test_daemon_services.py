"""kraken-daemon's service manager (SPEC 7.3, daemon/services.c): the
testpower module as an external module process started from the config's
command line (its output in the daemon's log under the service id), driving
nodes from cold to SYNC; config pushed to it; crashes restarted with back-off,
ERROR with the reason after repeated crashes, cleared by a Cfg change; stop
with SIGTERM then SIGKILL, leaving no orphan process; a loadable module from
the module directory."""

import json
import os
import re
import signal

import pytest

from kdtest import SELF_ID, Daemon, node, wait_until

MODULE_PROC = os.environ.get("KRAKEN_MODULE_PROC", "module_proc")
MODULE_DIR = os.environ.get("KRAKEN_TEST_MODULE_DIR", "tests/modules")
NODE = "7e57c0de-0000-4000-8000-000000000001"
CONFIG_TYPE = "type.googleapis.com/TestPower.Config"
SCHEMAS = {"schemas": [{"name": "TestPower.Config", "fields": [
    {"name": "mode", "number": 1, "type": "string"},
    {"name": "label", "number": 2, "type": "string"}]}]}


def start(tmp_path, service=None, extra=(), state_config=None, **top):
    """A daemon with one service instance 'power' (testpower); returns it."""
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "testpower.json").write_text(json.dumps(SCHEMAS))
    svc = {"module": "testpower", "command": MODULE_PROC, "cwd": str(tmp_path),
           "env": {"TESTPOWER_NOTE": "from-config"}}
    svc.update(service or {})
    cfg = {"modulesocket": str(tmp_path / "module.sock"), "modulegrace": "1s",
           "modulerestart": "100ms", "modulemaxcrashes": 3, "schemadir": str(schemas),
           "serviceinstances": {"power": svc}}
    cfg.update(top)
    (tmp_path / "kraken.json").write_text(json.dumps(cfg))
    args = ["-id", SELF_ID, "-log", "6", "-config", str(tmp_path / "kraken.json")]
    if state_config is not None:
        state = tmp_path / "state.json"
        state.write_text(json.dumps({"nodes": [{
            "id": SELF_ID, "services": [{"id": "power", "config": state_config}]}]}))
        args += ["-state", str(state)]
    return Daemon(args + list(extra))


def dsc_service(d, sid="power"):
    for s in d.get("/dsc/node/" + SELF_ID)[2].get("services", []):
        if s["id"] == sid:
            return s
    return {}


def service_state(d, sid="power"):
    return dsc_service(d, sid).get("state", "")


def pid_of(d, sid="power", start=0):
    line = d.wait_line(r"%s: started .* \(pid (\d+)\)" % sid, start=start)
    return int(re.search(r"pid (\d+)", line).group(1))


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def add_cold_node(d, nid=NODE):
    status, _, _ = d.request("POST", "/cfg/node", node(nid, physState="POWER_ON",
                                                        runState="SYNC"))
    assert status == 200


def synced(d, nid=NODE):
    return d.get("/dsc/node/" + nid)[2].get("runState") == "SYNC"


def set_config(d, config):
    status, _, body = d.request("PATCH", "/cfg/node/" + SELF_ID,
                                {"services": [{"id": "power", "config": config}]})
    assert status == 200, body


def test_external_module_process_drives_nodes(tmp_path):
    d = start(tmp_path)
    pid = pid_of(d)
    # its stdout in the daemon's log, under the service id; the socket is private
    d.wait_line(r"power: module_proc: connected as power")
    assert oct(os.stat(tmp_path / "module.sock").st_mode & 0o777) == "0o600"
    wait_until(lambda: service_state(d) == "RUN", 20, "service RUN")
    add_cold_node(d)
    wait_until(lambda: synced(d), 20, "node SYNC")
    assert d.get("/dsc/node/" + NODE)[2]["physState"] == "POWER_ON"
    assert d.stop() == 0
    d.wait_line(r"power: pid %d stopped" % pid)
    assert not alive(pid)


def test_config_pushed_to_the_running_module(tmp_path):
    d = start(tmp_path, state_config={"@type": CONFIG_TYPE, "label": "boot"})
    d.wait_line(r"power: start mode= label=boot")
    set_config(d, {"@type": CONFIG_TYPE, "label": "pushed"})
    d.wait_line(r"power: config mode= label=pushed")
    assert d.stop() == 0


def test_crashes_restart_with_backoff_then_error_until_cfg_changes(tmp_path):
    d = start(tmp_path, state_config={"@type": CONFIG_TYPE, "mode": "crash"})
    add_cold_node(d)
    d.wait_line(r"power: pid \d+ killed by signal 6 .*; restart 1 in 100 ms")
    d.wait_line(r"power: pid \d+ killed by signal 6 .*; restart 2 in 200 ms")
    d.wait_line(r"power: pid \d+ crashed 3 times in a row; last: killed by signal 6")
    wait_until(lambda: service_state(d) == "ERROR", 20, "service ERROR")
    msg = dsc_service(d).get("errorMsg", "")
    assert msg.startswith("crashed 3 times in a row; last: killed by signal 6 (Aborted)"), msg
    # each crash interrupted the step in flight
    d.wait_line(r"engine: interrupt %s power/poweron: the module disconnected" % NODE)
    n = len(d.lines)
    # no restart while ERROR ...
    assert not [l for l in d.lines[n:] if "power: started" in l]
    # ... until a Cfg change: then it runs again and the node converges
    set_config(d, {"@type": CONFIG_TYPE, "mode": "fast"})
    d.wait_line(r"power: Cfg changed: the failure is cleared", start=n)
    pid_of(d, start=n)
    wait_until(lambda: synced(d), 20, "node SYNC after the fix")
    assert service_state(d) == "RUN"
    assert d.stop() == 0


def test_stop_kills_a_module_that_ignores_sigterm(tmp_path):
    # sh ignores TERM for the exec'ed module (an ignored disposition survives exec)
    d = start(tmp_path, {"command": "/bin/sh",
                         "args": ["-c", "trap '' TERM; exec %s" % MODULE_PROC]})
    pid = pid_of(d)
    wait_until(lambda: service_state(d) == "RUN", 20, "service RUN")
    assert d.stop() == 0
    d.wait_line(r"power: pid %d did not stop within 1000 ms: SIGKILL" % pid)
    assert not alive(pid)


def test_daemon_killed_leaves_no_orphan(tmp_path):
    d = start(tmp_path)
    pid = pid_of(d)
    wait_until(lambda: service_state(d) == "RUN", 20, "service RUN")
    d.kill9()
    wait_until(lambda: not alive(pid), 10, "module process gone with its daemon")


def test_cfg_stop_and_run(tmp_path):
    d = start(tmp_path)
    pid = pid_of(d)
    wait_until(lambda: service_state(d) == "RUN", 20, "service RUN")
    status, _, body = d.request("PATCH", "/cfg/node/" + SELF_ID,
                                {"services": [{"id": "power", "state": "STOP"}]})
    assert status == 200, body
    wait_until(lambda: service_state(d) == "STOP", 20, "service STOP")
    wait_until(lambda: not alive(pid), 10, "process gone")
    n = len(d.lines)
    status, _, body = d.request("PATCH", "/cfg/node/" + SELF_ID,
                                {"services": [{"id": "power", "state": "RUN"}]})
    assert status == 200, body
    pid_of(d, start=n)
    wait_until(lambda: service_state(d) == "RUN", 20, "service RUN again")
    assert d.stop() == 0


def test_loadable_module_from_the_module_dir(tmp_path):
    d = start(tmp_path, {"command": None}, moduledir=MODULE_DIR)
    d.wait_line(r"power: loaded module testpower from ")
    add_cold_node(d)
    wait_until(lambda: synced(d), 20, "node SYNC")
    assert d.stop() == 0


def test_a_module_the_daemon_cannot_run_is_named(tmp_path):
    """A module that is not built in, has no command and no .so in the module dir (a forgotten
    moduledir, a misspelt name) is waited for as an external process: the log says why."""
    d = start(tmp_path, {"command": None, "module": "simpowr"}, moduledir="")
    d.wait_line(r"WARNING daemon: serviceinstances\.power: module 'simpowr' is not built in, has "
                r"no command and no -module-dir \(moduledir\) is given to load simpowr\.so from; "
                r"the service waits for an external module process to connect$")
    assert d.stop() == 0
    (tmp_path / "again").mkdir()
    d = start(tmp_path / "again", {"command": None, "module": "simpowr"}, moduledir=MODULE_DIR,
              modulesocket=None)
    d.wait_line(r"serviceinstances\.power: module 'simpowr' is not built in, has no command and "
                r"%s/simpowr\.so does not exist; the service waits for an external module "
                r"process to connect \(and no module socket is open: give -module-socket\)$"
                % re.escape(MODULE_DIR))
    assert d.stop() == 0


def test_wrong_abi_module_refused(tmp_path):
    from kdtest import run_daemon
    cfg = {"moduledir": MODULE_DIR, "modulesocket": str(tmp_path / "m.sock"),
           "serviceinstances": {"bad": {"module": "wrongabi"}}}
    (tmp_path / "k.json").write_text(json.dumps(cfg))
    rc, _, err = run_daemon(["-config", str(tmp_path / "k.json"), "-syncport", "0",
                             "-ipapi", "127.0.0.1:0"])
    assert rc == 1
    assert ("kraken-daemon: serviceinstances.bad: module %s/wrongabi.so: built for module ABI 3, "
            "this libkraken has 2; rebuild it against this libkraken" % MODULE_DIR) in err


def test_printrc_shows_the_module_keys(tmp_path):
    from kdtest import run_daemon
    cfg = {"modulesocket": "/tmp/x.sock", "serviceinstances": {"power": {
        "module": "testpower", "command": "/usr/bin/mod", "args": ["-v", "x y"],
        "env": {"A": "1"}, "cwd": "/tmp"}}}
    (tmp_path / "k.json").write_text(json.dumps(cfg))
    rc, out, err = run_daemon(["-config", str(tmp_path / "k.json"), "-printrc"])
    assert rc == 0, err
    assert 'modulesocket: "/tmp/x.sock"' in out
    assert "modulegrace: \"5s\"" in out and "modulemaxcrashes: 5" in out
    # the default module directory is where `ninja install` puts modules
    assert re.search(r'^moduledir: "/.+/kraken/modules"$', out, re.M), out
    assert '    command: "/usr/bin/mod"\n    args: ["-v", "x y"]\n    env: {A: "1"}\n' \
           '    cwd: "/tmp"\n' in out, out
    (tmp_path / "bad.json").write_text(json.dumps({"serviceinstances": {"p": {"args": "x"}}}))
    rc, _, err = run_daemon(["-config", str(tmp_path / "bad.json"), "-printrc"])
    assert rc == 2
    assert "bad.json:1:" in err and "args must be a sequence of strings" in err
