"""
krakenctl end to end against a real kraken-daemon on ephemeral ports: every command,
its table/JSON output, its error messages and exit codes, the original's command
forms, token handling and `watch` over the websocket event stream.
"""
import json
import os
import re
import select
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

KRAKENCTL = os.environ.get("KRAKENCTL", "build/daemon/krakenctl/krakenctl")
DAEMON = os.environ.get("KRAKEN_DAEMON", "build/daemon/kraken-daemon")
SELF = "c0ffee00-0000-4000-8000-000000000001"
N1 = "11111111-2222-4333-8444-555555555555"
N2 = "22222222-2222-4333-8444-555555555555"
N3 = "33333333-2222-4333-8444-555555555555"
DEADLINE = 10.0

STATE = {"nodes": [
    {"id": SELF, "nodename": "root",
     "services": [{"id": "websocket", "module": "websocket", "state": "RUN",
                   # no port: the stream listens where the system says (ephemeral)
                   "config": {"@type": "type.googleapis.com/WebSocket.Config",
                              "pingPeriod": "54s"}}]},
    {"id": N1, "nodename": "n1", "physState": "POWER_ON", "platform": "sim"},
]}


class Daemon:
    def __init__(self, tmp, *extra, state=None):
        self.state = os.path.join(tmp, "state.json")
        with open(self.state, "w") as f:
            json.dump(state or STATE, f)
        self.log_path = os.path.join(tmp, "daemon.log")
        self.proc = subprocess.Popen(
            [DAEMON, "-id", SELF, "-ipapi", "127.0.0.1:0", "-syncport", "0", "-sync-insecure",
             "-state", self.state, "-log", "6", "-noprefix", *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            m = re.search(r"REST port (\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                return
            assert self.proc.poll() is None, self.log()
            select.select([], [], [], 0.01)
        raise AssertionError("daemon not ready:\n" + self.log())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=DEADLINE) == 0, self.log()


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(str(tmp_path))
    yield d
    d.stop()


def ctl(d, *args, env=None, stdin=None, api=True):
    full = [KRAKENCTL] + (["-i", f"127.0.0.1:{d.port}"] if api and d else []) + list(args)
    e = dict(os.environ)
    e.pop("KRAKEN_TOKEN", None)
    e.pop("KRAKEN_API", None)
    e["HOME"] = "/nonexistent"  # no ~/.krakenctl unless a test gives one
    e.update(env or {})
    r = subprocess.run(full, capture_output=True, text=True, env=e, input=stdin,
                       timeout=DEADLINE * 2)
    return r.returncode, r.stdout, r.stderr


def ok(d, *args, **kw):
    rc, out, err = ctl(d, *args, **kw)
    assert rc == 0, f"{args}: rc {rc}: {err}"
    return out


# ---- list and show -----------------------------------------------------------------------------

def test_list_table_puts_cfg_next_to_dsc(daemon):
    out = ok(daemon, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PHYS", "CFG", "PHYS", "DSC", "RUN", "CFG", "RUN",
                                "DSC", "PLATFORM", "BUSY"]
    assert lines[1].split() == [N1, "n1", "POWER_ON", "sim"]
    assert lines[2].split() == [SELF, "root", "POWER_ON", "SYNC"]
    # the original's form and alias give the same table; no colour when not a tty
    assert ok(daemon, "node", "list") == out
    assert ok(daemon, "ls") == out
    assert "\033[" not in out


def test_list_colours_dsc_against_cfg(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    out = ok(daemon, "--color", "always", "list")
    assert "\033[33mPOWER_OFF\033[0m" in out      # differs from Cfg: converging
    ok(daemon, "set", "--dsc", N1, "/PhysState", "PHYS_HANG")
    assert "\033[1;31mPHYS_HANG\033[0m" in ok(daemon, "--color", "always", "list")
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_ON")
    assert "\033[32mPOWER_ON\033[0m" in ok(daemon, "--color", "always", "list")


def test_list_json_and_single_kinds(daemon):
    mixed = json.loads(ok(daemon, "--json", "list"))
    assert [n["id"] for n in mixed["nodes"]] == [N1, SELF]
    assert mixed["nodes"][0]["cfg"]["physState"] == "POWER_ON"
    assert mixed["nodes"][0]["dsc"]["id"] == N1
    cfg = json.loads(ok(daemon, "list", "-t", "cfg", "-j"))
    assert cfg["nodes"][0]["nodename"] == "n1"
    out = ok(daemon, "node", "list", "-t", "dsc")
    assert out.splitlines()[0].split() == ["ID", "NAME", "PHYS", "RUN", "PLATFORM", "ARCH", "BUSY"]
    assert out.splitlines()[2].split() == [SELF, "root", "POWER_ON", "SYNC"]
    rc, _, err = ctl(daemon, "list", "-t", "both")
    assert (rc, err) == (2, "krakenctl: -t both: expected mixed, cfg or dsc\n")


def test_show_lists_every_value_and_the_plan(daemon):
    out = ok(daemon, "show", N1)
    lines = out.splitlines()
    assert lines[0] == f"node {N1}"
    assert lines[1].split() == ["URL", "CFG", "DSC"]
    rows = {l.split()[0]: l.split()[1:] for l in lines[2:] if l.startswith("/")}
    assert rows["/PhysState"] == ["POWER_ON"]
    assert rows["/Platform"] == ["sim"]
    assert rows["/Id"] == [N1, N1]
    assert re.search(r"^plan: [A-Z_]+", out, re.M)
    assert ok(daemon, "node", "info", N1) == out
    doc = json.loads(ok(daemon, "show", "--json", N1))
    assert doc["id"] == N1 and doc["cfg"]["nodename"] == "n1" and "state" in doc["plan"]


def test_show_unknown_node_is_404(daemon):
    rc, out, err = ctl(daemon, "show", N3)
    assert rc == 1 and out == ""
    assert err == f"krakenctl: GET /cfg/node/{N3}: 404: node {N3} not found\n"


# ---- the original's -t and -f (column filter) ------------------------------------------------

# n1 runs a service and carries an extension; a2 is a child node (parentId): the original puts
# nodes without a parent first, then orders by nodename.
VIEW_STATE = {"nodes": [
    STATE["nodes"][0],
    {"id": N1, "nodename": "n1", "physState": "POWER_ON", "platform": "sim",
     "services": [{"id": "pxe", "module": "pxe", "state": "RUN"}],
     "extensions": [{"@type": "type.googleapis.com/PXE.Client", "method": "iPXE",
                     "state": "WAIT"}]},
    {"id": N2, "nodename": "a2", "arch": "arm64", "parentId": SELF},
]}


@pytest.fixture
def views(tmp_path):
    d = Daemon(str(tmp_path), state=VIEW_STATE)
    ok(d, "set", "--dsc", N1, "/PhysState", "POWER_OFF")   # Dsc differs from Cfg
    yield d
    d.stop()


def table(*rows):
    """The aligned text of a table: columns two blanks apart, no trailing blanks."""
    widths = [max(len(r[c]) if c < len(r) else 0 for r in rows) for c in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() + "\n"
                   for r in rows)


def test_filter_shows_chosen_fields_mixed(views):
    # mixed: Cfg with Dsc's values taking priority (n1's PhysState is Dsc's POWER_OFF); lists
    # as their items' id (or short @type) and state; columns id, nodename, then by name
    out = ok(views, "node", "list", "-f", "physState,services,extensions")
    assert out == table(
        ["id", "nodename", "extensions", "physState", "services"],
        [N1, "n1", "PXE.Client:WAIT", "POWER_OFF", "pxe:RUN"],
        [SELF, "root", "IPv4.IPv4OverEthernet", "POWER_ON", "restapi:RUN,sync:RUN,websocket:RUN"],
        [N2, "a2"])


def test_filter_cfg_and_dsc_views(views):
    assert ok(views, "list", "-t", "cfg", "-f", "physState,arch") == table(
        ["id", "nodename", "arch", "physState"],
        [N1, "n1", "", "POWER_ON"],
        [SELF, "root"],
        [N2, "a2", "arm64"])
    # the Dsc view names nodes with Cfg's nodename; a2's Dsc has no parent, so it sorts first
    assert ok(views, "list", "-t", "dsc", "-f", "physState") == table(
        ["id", "nodename", "physState"],
        [N2, "a2"],
        [N1, "n1", "POWER_OFF"],
        [SELF, "root", "POWER_ON"])


def test_filter_forms_of_the_original(views):
    want = ok(views, "list", "-f", "physState")
    # argparse's forms of an optional argument, blanks around names, and the URL/proto names
    for form in (["--filter", "physState"], ["-fphysState"], ["--filter=physState"],
                 ["-f=physState"], ["-f", " physState "], ["-f", "PhysState"],
                 ["-f", "phys_state,id"], ["-f", "physState,physState"]):
        assert ok(views, "list", *form) == want, form
    # a bare -f keeps id and nodename only
    assert ok(views, "list", "-f") == table(["id", "nodename"], [N1, "n1"], [SELF, "root"],
                                            [N2, "a2"])
    assert ok(views, "list", "-f", "-t", "cfg") == ok(views, "list", "-t", "cfg", "-f")
    # the colour of a state is Dsc's against Cfg's, even where the cell shows Cfg's value
    out = ok(views, "--color", "always", "list", "-f", "physState")
    assert f"{N1}  n1        \033[33mPOWER_OFF\033[0m" in out
    assert f"{SELF}  root      \033[32mPOWER_ON\033[0m" in out


def test_filter_json_has_the_originals_shape(views):
    # -t cfg / -t dsc: {"nodes": [...]} of exactly id, nodename and the columns, "" when absent
    assert json.loads(ok(views, "list", "-t", "cfg", "-f", "arch,busy", "-j")) == {"nodes": [
        {"id": N1, "nodename": "n1", "arch": "", "busy": ""},
        {"id": N2, "nodename": "a2", "arch": "arm64", "busy": ""},
        {"id": SELF, "nodename": "root", "arch": "", "busy": ""}]}
    assert json.loads(ok(views, "-j", "node", "list", "-t", "dsc", "-f", "physState")) == {
        "nodes": [{"id": N1, "nodename": "n1", "physState": "POWER_OFF"},
                  {"id": N2, "nodename": "a2", "physState": ""},
                  {"id": SELF, "nodename": "root", "physState": "POWER_ON"}]}
    # mixed: one object per node, its Cfg and Dsc filtered (as the original's CFG and DSC)
    mixed = json.loads(ok(views, "list", "--json", "--filter", "physState"))
    assert mixed["nodes"][0] == {
        "id": N1, "cfg": {"id": N1, "nodename": "n1", "physState": "POWER_ON"},
        "dsc": {"id": N1, "nodename": "", "physState": "POWER_OFF"}}
    # -t dsc without -f: the Dsc nodes, named as in Cfg
    dsc = json.loads(ok(views, "list", "-t", "dsc", "-j"))
    assert [(n["id"], n["nodename"]) for n in dsc["nodes"]] == [(N1, "n1"), (N2, "a2"),
                                                                (SELF, "root")]


def test_json_text_is_the_originals(views):
    # the original printed json.dumps(indent=4, sort_keys=True): the same text, byte for byte,
    # so line-based scripts (grep '"physState": "POWER_ON"') keep working
    ok(views, "set", N2, "/Nodename", "nœud-\U0001f600\t\"q\"\\")
    for args in (["list", "-t", "cfg", "-j"], ["list", "-t", "dsc", "-f", "physState", "-j"],
                 ["node", "info", "-t", "cfg", "-j", N1], ["node", "info", "-t", "cfg", "-j", N2]):
        out = ok(views, *args)
        assert out == json.dumps(json.loads(out), indent=4, sort_keys=True) + "\n", args
    assert '"nodename": "n\\u0153ud-\\ud83d\\ude00\\t\\"q\\"\\\\"' in ok(
        views, "show", "-t", "cfg", "-j", N2)
    assert json.loads(ok(views, "show", "-t", "cfg", "-j", N2))["nodename"] == \
        "nœud-\U0001f600\t\"q\"\\"
    assert ok(views, "list", "-t", "cfg", "-f", "-j").startswith(
        '{\n    "nodes": [\n        {\n            "id": "%s",\n' % N1)


def original_dumps(value):
    return json.dumps(value, indent=4, sort_keys=True) + "\n"


def test_original_forms_print_the_originals_mixed_json(views):
    # `node list -j` and `node info ID -j` (mixed) print as the original: "CFG:", the Cfg JSON,
    # "DSC:", the Dsc JSON; the own forms (list, show) print one JSON document
    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{views.port}{path}") as r:
            return json.load(r)

    cfg, dsc = get("/cfg/nodes"), get("/dsc/nodes")
    assert ok(views, "node", "list", "-j") == (
        "CFG:\n\n" + original_dumps(cfg) + "\nDSC:\n\n" + original_dumps(dsc))
    one = lambda n: {"id": n["id"], "nodename": n.get("nodename", ""),
                     "physState": n.get("physState", "")}
    assert ok(views, "node", "list", "-j", "-f", "physState") == (
        "CFG:\n\n" + original_dumps({"nodes": [one(n) for n in cfg["nodes"]]}) +
        "\nDSC:\n\n" + original_dumps({"nodes": [one(n) for n in dsc["nodes"]]}))
    cfg1, dsc1 = get(f"/cfg/node/{N1}"), get(f"/dsc/node/{N1}")
    assert ok(views, "node", "info", N1, "-j") == (
        "CFG:\n\n" + original_dumps(cfg1) + "\nDSC:\n\n" + original_dumps(dsc1))
    assert ok(views, "node", "info", "-f", "physState", "-j", N1) == (
        "CFG:\n\n" + original_dumps(one(cfg1)) + "\nDSC:\n\n" + original_dumps(one(dsc1)))
    assert set(json.loads(ok(views, "show", "-j", N1))) == {"id", "cfg", "dsc", "plan"}
    assert json.loads(ok(views, "list", "-j"))["nodes"][0]["id"] == N1


def test_show_type_and_filter(views):
    def shown(*args):
        """The value table, without the plan line(s) that end every view."""
        out = ok(views, *args)
        assert re.search(r"\nplan: [A-Z_]+", out), out
        return out.split("\nplan: ")[0]

    assert shown("node", "info", "-t", "cfg", N1) == f"node {N1}\n" + table(
        ["URL", "CFG"],
        ["/Id", N1],
        ["/Nodename", "n1"],
        ["/PhysState", "POWER_ON"],
        ["/Platform", "sim"],
        ["/Services/pxe/Id", "pxe"],
        ["/Services/pxe/Module", "pxe"],
        ["/Services/pxe/State", "RUN"],
        ["type.googleapis.com/PXE.Client/Method", "iPXE"],
        ["type.googleapis.com/PXE.Client/State", "WAIT"])
    # Dsc, named from Cfg
    assert shown("node", "info", N1, "-t", "dsc") == f"node {N1}\n" + table(
        ["URL", "DSC"], ["/Id", N1], ["/Nodename", "n1"], ["/PhysState", "POWER_OFF"])
    # -f picks the rows of the chosen fields (an extension's URLs are its @type's)
    assert shown("show", "-f", "physState,extensions", N1) == f"node {N1}\n" + table(
        ["URL", "CFG", "DSC"],
        ["/Id", N1, N1],
        ["/Nodename", "n1"],
        ["/PhysState", "POWER_ON", "POWER_OFF"],
        ["type.googleapis.com/PXE.Client/Method", "iPXE"],
        ["type.googleapis.com/PXE.Client/State", "WAIT"])
    # a bare -f before the id: the id stays the operand
    assert shown("node", "info", "-f", N1, "-t", "cfg") == f"node {N1}\n" + table(
        ["URL", "CFG"], ["/Id", N1], ["/Nodename", "n1"])


def test_show_json_of_one_view(views):
    # the original's one node object of the view, filtered like list's
    assert json.loads(ok(views, "node", "info", "-j", "-t", "dsc", N1)) == {
        "id": N1, "physState": "POWER_OFF", "nodename": "n1"}
    assert json.loads(ok(views, "show", "-t", "cfg", "-f", "services,busy", "-j", N1)) == {
        "id": N1, "nodename": "n1", "busy": "",
        "services": [{"id": "pxe", "module": "pxe", "state": "RUN"}]}
    doc = json.loads(ok(views, "show", "-f", "physState", "--json", N1))
    assert (doc["cfg"], doc["dsc"]) == ({"id": N1, "nodename": "n1", "physState": "POWER_ON"},
                                        {"id": N1, "nodename": "", "physState": "POWER_OFF"})
    assert "state" in doc["plan"]


def test_global_flags_after_the_command(views):
    # the original accepted -i, -v and -d at every level of the command
    want = ok(views, "list")
    addr = f"127.0.0.1:{views.port}"
    assert ok(None, "node", "list", "-i", addr, api=False) == want
    assert ok(None, "node", f"--ip={addr}", "list", api=False) == want
    rc, out, err = ctl(None, "node", "-d", "info", "-i" + addr, "-t", "cfg", N1, api=False)
    assert rc == 0 and out.startswith(f"node {N1}\n")
    assert f"> GET http://{addr}/cfg/node/{N1}\n" in err
    assert ok(None, "sme", "status", "-v", "-i", addr, api=False) == "thawed\n"


def test_config_file_of_the_original(daemon, tmp_path):
    # ~/.krakenctl as the original wrote it: the defaults of -i, -v and -d
    home = tmp_path / "home"
    home.mkdir()
    conf = home / ".krakenctl"
    conf.write_text(f"debug: false\nip: 127.0.0.1:{daemon.port}\nverbose: false\n")
    env = {"HOME": str(home)}
    assert ok(daemon, "status", env=env, api=False) == "thawed\n"
    conf.write_text(f"debug: true\nip: 127.0.0.1:{daemon.port}\n")
    rc, out, err = ctl(daemon, "status", env=env, api=False)
    assert (rc, out) == (0, "thawed\n") and err.startswith("> GET http://127.0.0.1:")
    # $KRAKEN_API and -i come first
    conf.write_text(f"ip: 127.0.0.1:{free_port()}\n")
    assert ok(daemon, "status", env=dict(env, KRAKEN_API=f"127.0.0.1:{daemon.port}"),
              api=False) == "thawed\n"
    assert ok(daemon, "status", env=env) == "thawed\n"
    # a file krakenctl cannot use is an error naming the file, line and key
    for text, why in [
            ("ipp: host\n", "1: unknown key 'ipp' (expected ip, verbose or debug)"),
            ("ip: host:1\nverbose: maybe\n", "2: verbose: 'maybe' is not true or false"),
            ("\nip: host:0\n", "2: ip host:0: the port must be 1..65535"),
            ("ip: [a, b]\n", "1: ip: expected a value, not a list or mapping"),
            ("- ip\n", "1: expected a mapping of ip, verbose, debug"),
            ('ip: "host\n', "2:1: invalid YAML: found unexpected end of stream")]:
        conf.write_text(text)
        rc, _, err = ctl(daemon, "status", env=env)
        assert (rc, err) == (2, f"krakenctl: {conf}:{why}\n"), text
    # --help needs no file
    assert subprocess.run([KRAKENCTL, "--help"], capture_output=True,
                          env=dict(os.environ, HOME=str(home))).returncode == 0


# ---- get and set -------------------------------------------------------------------------------

def test_get_and_set_by_url(daemon):
    assert ok(daemon, "get", N1, "/PhysState") == "POWER_ON\n"
    # a top-level field goes as a PATCH of that field alone
    rc, _, err = ctl(daemon, "-d", "set", N1, "/Arch", "amd64")
    assert rc == 0 and f"> PATCH http://127.0.0.1:{daemon.port}/cfg/node/{N1}" in err
    assert ok(daemon, "get", f"{N1}:/Arch") == "amd64\n"
    assert ok(daemon, "get", N1, "/Nodename") == "n1\n"  # untouched by the patch
    # a zero value cannot be a merge patch: the whole node is written back
    rc, _, err = ctl(daemon, "-d", "set", N1, "/Arch", "")
    assert rc == 0 and f"> PUT http://127.0.0.1:{daemon.port}/cfg/node/{N1}" in err
    assert ok(daemon, "get", N1, "/Arch") == "\n"
    ok(daemon, "set", N1, "/PhysState", "PHYS_UNKNOWN")
    assert ok(daemon, "get", N1, "/PhysState") == "PHYS_UNKNOWN\n"
    ok(daemon, "set", N1, "/PhysState", "POWER_ON")
    url = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"
    ok(daemon, "set", f"{N1}:{url}", "10.0.0.5")
    assert ok(daemon, "get", N1, url) == "10.0.0.5\n"
    assert json.loads(ok(daemon, "get", "-j", N1, url)) == {
        "id": N1, "state": "cfg", "url": url, "value": "10.0.0.5"}
    ok(daemon, "set", "--dsc", N1, "/RunState", "INIT")
    assert ok(daemon, "get", "--dsc", N1, "/RunState") == "INIT\n"
    # the self node carries the daemon's own service configs
    assert ok(daemon, "get", SELF, "/Services/websocket/Config/PingPeriod") == "54s\n"


def test_set_refuses_bad_values_before_sending(daemon):
    rc, _, err = ctl(daemon, "set", N1, "/PhysState", "ON")
    assert rc == 2
    assert err == "krakenctl: URL '/PhysState': 'ON' is not a member of enum PhysState\n"
    assert ok(daemon, "get", N1, "/PhysState") == "POWER_ON\n"
    rc, _, err = ctl(daemon, "get", N1, "/Bogus")
    assert (rc, err) == (1, "krakenctl: cfg: URL '/Bogus': kraken.Node has no field 'Bogus'\n")
    rc, _, err = ctl(daemon, "get", "n1", "/PhysState")
    assert (rc, err) == (2, "krakenctl: 'n1' is not a node id "
                            "(expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)\n")
    rc, _, err = ctl(daemon, "set", N1, "/Arch")
    assert (rc, err) == (2, "usage: krakenctl set [--dsc] ID URL VALUE | ID:URL VALUE\n")


# ---- create, update, delete --------------------------------------------------------------------

def test_create_reports_each_node(daemon, tmp_path):
    f = tmp_path / "new.json"
    f.write_text(json.dumps({"nodes": [
        {"id": N2, "nodename": "n2"},
        {"id": N1},
        {"id": N3, "physState": "BOGUS"}]}))
    rc, out, err = ctl(daemon, "create", str(f))
    assert rc == 1
    assert out == "1 node(s) created, 2 failed\n"
    errs = err.splitlines()
    assert len(errs) == 2
    assert errs[0].startswith(f"krakenctl: {N1}: ") and "already exists" in errs[0]
    assert errs[1].startswith(f"krakenctl: {N3}: ") and "BOGUS" in errs[1]
    assert ok(daemon, "get", N2, "/Nodename") == "n2\n"
    # one node object from stdin, the original's form, which says "Success" as the original
    out = ok(daemon, "node", "create", "-", stdin=json.dumps({"id": N3, "nodename": "n3"}))
    assert out == "Success\n"
    # every item refused: the daemon answers 400 with the items' errors, each one is reported
    rc, out, err = ctl(daemon, "create", str(f))
    assert rc == 1
    assert out == "0 node(s) created, 3 failed\n"
    errs = err.splitlines()
    assert len(errs) == 3
    assert errs[0].startswith(f"krakenctl: {N2}: ") and "already exists" in errs[0]
    assert errs[2].startswith(f"krakenctl: {N3}: ") and "BOGUS" in errs[2]
    # the original's form reports failures the same way (the original said nothing, exit 0)
    assert ctl(daemon, "node", "create", str(f))[:2] == (1, "0 node(s) created, 3 failed\n")


def test_create_refuses_bad_files(daemon, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [\n  {"id": }\n]}')
    rc, _, err = ctl(daemon, "create", str(bad))
    assert (rc, err) == (2, f"krakenctl: {bad}:2:10: invalid JSON\n")
    rc, _, err = ctl(daemon, "create", str(tmp_path / "missing.json"))
    assert (rc, err) == (2, f"krakenctl: {tmp_path}/missing.json: No such file or directory\n")
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    rc, _, err = ctl(daemon, "create", str(arr))
    assert (rc, err) == (2, f'krakenctl: {arr}: expected {{"nodes": [...]}} or one node object\n')


def test_update_cfg_and_dsc(daemon, tmp_path):
    f = tmp_path / "upd.json"
    f.write_text(json.dumps({"nodes": [{"id": N1, "nodename": "renamed", "physState": "POWER_OFF"}]}))
    assert ok(daemon, "node", "update", str(f)) == "Success\n"     # the original's form
    assert ok(daemon, "update", str(f)) == "1 node(s) updated, 0 failed\n"
    assert ok(daemon, "get", N1, "/Nodename") == "renamed\n"
    f.write_text(json.dumps({"nodes": [{"id": N1, "physState": "POWER_OFF"}]}))
    ok(daemon, "update", "-t", "dsc", str(f))
    assert ok(daemon, "get", "--dsc", N1, "/PhysState") == "POWER_OFF\n"


def test_delete_checks_every_id_first(daemon):
    rc, _, err = ctl(daemon, "delete", N1, "not-a-uuid")
    assert rc == 2 and "'not-a-uuid' is not a node id" in err
    assert ok(daemon, "get", N1, "/Nodename") == "n1\n"     # nothing was deleted
    assert ok(daemon, "-v", "delete", N1) == f"deleted {N1}\n"
    rc, _, err = ctl(daemon, "rm", N1)
    assert (rc, err) == (1, f"krakenctl: DELETE /cfg/node/{N1}: 404: node {N1} not found\n")


# ---- engine control, plans, graph --------------------------------------------------------------

def test_freeze_thaw_status_in_both_forms(daemon):
    assert ok(daemon, "status") == "thawed\n"
    assert ok(daemon, "freeze") == "frozen\n"
    assert ok(daemon, "sme", "status") == "frozen\n"
    assert json.loads(ok(daemon, "sme", "thaw", "--json")) == {"frozen": False}
    assert ok(daemon, "frozen") == "thawed\n"


def test_plan_shows_state_steps_and_reason(daemon):
    out = ok(daemon, "plan", N1)
    assert re.match(rf"node {N1}: [A-Z_]+", out)
    doc = json.loads(ok(daemon, "plan", "-j", N1))
    assert doc["id"] == N1 and isinstance(doc["steps"], list)
    if doc.get("reason"):
        assert f"why: {doc['reason']}" in out
    rc, _, err = ctl(daemon, "plan", N3)
    assert rc == 1 and err.startswith(f"krakenctl: GET /graph/node/{N3}/path: 404: ")


def test_graph_as_dot(daemon):
    out = ok(daemon, "graph")
    assert out.startswith("digraph kraken {\n") and out.endswith("}\n")
    graph = json.loads(ok(daemon, "graph", "--json"))
    declared = set(re.findall(r'^  "([^"]+)" \[label=', out, re.M))
    assert declared == {n["id"] for n in graph["nodes"]}
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)"', out, re.M)
    assert len(edges) == len(graph["edges"])
    assert all(a in declared and b in declared for a, b in edges)
    assert ok(daemon, "graph", N1).startswith("digraph kraken {\n")


# ---- watch -------------------------------------------------------------------------------------

def test_watch_converges_as_events_arrive(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    watch = subprocess.Popen([KRAKENCTL, "-i", f"127.0.0.1:{daemon.port}", "watch",
                              "--until-converged", "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The first table is printed once watch's subscription is active.
    first = watch.stdout.readline()
    assert first.startswith(f"kraken at 127.0.0.1:{daemon.port}: 2 node(s), 1 converging"), first
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_ON")
    out, err = watch.communicate(timeout=DEADLINE * 2)
    assert watch.returncode == 0, err
    assert f"(UPDATE) {N1}:/PhysState = POWER_ON\n" in out
    assert out.endswith("converged\n")
    assert re.search(rf"^{N1}\s+n1\s+POWER_ON\s+POWER_ON", out, re.M)


def test_watch_json_lines(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    watch = subprocess.Popen([KRAKENCTL, "-i", f"127.0.0.1:{daemon.port}", "-j", "watch",
                              "--until-converged", "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(watch.stdout.readline()) == {"nodes": 2, "converging": 1}
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_ON")
    out, err = watch.communicate(timeout=DEADLINE * 2)
    assert watch.returncode == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    assert {"type": 1, "url": "/PhysState", "nodeid": N1, "value": "POWER_ON",
            "data": f"(UPDATE) {N1}:/PhysState = POWER_ON"} in lines
    assert lines[-2:] == [{"nodes": 2, "converging": 0}, {"converged": True}]


def test_watch_times_out_when_not_converging(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    rc, out, err = ctl(daemon, "watch", "--until-converged", "--timeout", "0.3")
    assert rc == 1
    assert err == "krakenctl: not converged in time: 1 node(s) still differ\n"
    assert re.search(rf"^{N1}\s+n1\s+POWER_ON\s+POWER_OFF", out, re.M)


def test_watch_timeout_alone_ends_the_watch(daemon):
    # without --until-converged, --timeout is how long to watch: not a failure when it passes
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    rc, out, err = ctl(daemon, "watch", "--timeout", "0.3")
    assert (rc, err) == (0, "")
    assert re.search(rf"^{N1}\s+n1\s+POWER_ON\s+POWER_OFF", out, re.M)


def test_watch_already_converged_exits_at_once(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_ON")
    assert ok(daemon, "watch", "--until-converged") == "converged\n"


# ---- tokens, usage, connection errors ----------------------------------------------------------

def test_token_from_file_or_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    os.chmod(token, 0o600)
    d = Daemon(str(tmp_path), "-api-token", str(token))
    try:
        rc, _, err = ctl(d, "freeze")
        assert rc == 1
        assert err == ("krakenctl: GET /sme/freeze: 401: this request needs a bearer token "
                       "(Authorization: Bearer <token>) (pass --token-file FILE or set "
                       "KRAKEN_TOKEN)\n")
        assert ok(d, "--token-file", str(token), "freeze") == "frozen\n"
        assert ok(d, "thaw", env={"KRAKEN_TOKEN": "s3cret-token-0123456789"}) == "thawed\n"
        rc, _, err = ctl(d, "thaw", env={"KRAKEN_TOKEN": "wrong"})
        assert (rc, err) == (1, "krakenctl: GET /sme/thaw: 401: invalid bearer token\n")
        empty = tmp_path / "empty"
        empty.write_text("")
        rc, _, err = ctl(d, "--token-file", str(empty), "thaw")
        assert (rc, err) == (2, f"krakenctl: --token-file {empty}: the file is empty\n")
    finally:
        d.stop()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("args,rc,err", [
    (["frob"], 2, "krakenctl: unknown command 'frob' (see krakenctl --help)\n"),
    (["--bogus", "list"], 2, "krakenctl: unknown option --bogus (see krakenctl --help)\n"),
    (["-i", "host:99999", "list"], 2, "krakenctl: -i host:99999: the port must be 1..65535\n"),
    (["-i", ":3141", "list"], 2, "krakenctl: -i :3141: no host (expected HOST:PORT)\n"),
    (["--color", "pink", "list"], 2, "krakenctl: --color pink: expected auto, always or never\n"),
    (["--token-file", "/nonexistent/token", "list"], 2,
     "krakenctl: --token-file /nonexistent/token: No such file or directory\n"),
    (["show"], 2, "usage: krakenctl show [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j] ID\n"),
    (["node", "info"], 2, "usage: krakenctl show [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j] ID\n"),
    # a command's bad option is named, with the usage, on one line
    (["node", "list", "-x", "extensions"], 2, "krakenctl list: unknown option -x or missing "
     "argument (usage: krakenctl list [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j])\n"),
    (["list", "--fliter"], 2, "krakenctl list: unknown option --fliter or missing argument "
     "(usage: krakenctl list [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j])\n"),
    (["list", "-t"], 2, "krakenctl list: unknown option -t or missing argument "
     "(usage: krakenctl list [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j])\n"),
    (["show", "-jx", "id"], 2, "krakenctl show: unknown option -x or missing argument "
     "(usage: krakenctl show [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j] ID)\n"),
    (["list", "--type=id"], 2, "krakenctl: -t id: expected mixed, cfg or dsc\n"),
    (["node", "info", "-t", "both", N1], 2, "krakenctl: -t both: expected mixed, cfg or dsc\n"),
    # the original's -f: a malformed filter is refused before anything is sent, naming the item
    (["node", "list", "-f", "physState,,arch"], 2,
     "krakenctl: -f physState,,arch: empty column name (item 2)\n"),
    (["list", "--filter=physState,"], 2,
     "krakenctl: -f physState,: empty column name (item 2)\n"),
    (["list", "-f", "physState, physstat"], 2, "krakenctl: -f physState, physstat: no column "
     "'physstat' (a node has id, nodename, runState, physState, arch, platform, parentId, busy, "
     "services, extensions)\n"),
    (["node", "info", "-f", "Services/pxe", N1], 2, "krakenctl: -f Services/pxe: no column "
     "'Services/pxe' (a node has id, nodename, runState, physState, arch, platform, parentId, "
     "busy, services, extensions)\n"),
    # the original's global -i at any level of the command: checked the same way
    (["node", "list", "-i", "host:0"], 2, "krakenctl: -i host:0: the port must be 1..65535\n"),
    (["node", "list", "-i"], 2, "krakenctl: -i: missing HOST:PORT\n"),
    (["watch", "--until-converged", "-xj"], 2, "krakenctl watch: unknown option -x or missing "
     "argument (usage: krakenctl watch [--until-converged] [--timeout SECONDS] [--poll SECONDS]"
     " [-j])\n"),
    (["delete", "-x", "id"], 2, "krakenctl delete: unknown option -x or missing argument "
     "(usage: krakenctl delete ID...)\n"),
    (["watch", "--timeout"], 2, "krakenctl watch: unknown option --timeout or missing argument "
     "(usage: krakenctl watch [--until-converged] [--timeout SECONDS] [--poll SECONDS] [-j])\n"),
    # "node" and "sme" are prefixes: the unknown command is both words
    (["node", "frob", "id"], 2,
     "krakenctl: unknown command 'node frob' (see krakenctl --help)\n"),
    # listed by the original but never implemented there: say so, and what does the job
    (["node", "freeze", "id"], 2, "krakenctl: 'node freeze' was never implemented by the "
     "original krakenctl either; to keep the engine off one node: krakenctl set ID /Busy BUSY\n"),
    (["runtime", "log_level", "5"], 2, "krakenctl: 'runtime log_level' was never implemented by "
     "the original krakenctl either; the daemon's log level is kraken-daemon -log N\n"),
    (["sme"], 2, "krakenctl: unknown command 'sme' (see krakenctl --help)\n"),
])
def test_usage_errors(args, rc, err):
    got = subprocess.run([KRAKENCTL, *args], capture_output=True, text=True)
    assert (got.returncode, got.stderr) == (rc, err)


def test_unreachable_daemon_is_exit_3():
    port = free_port()
    got = subprocess.run([KRAKENCTL, "-i", f"127.0.0.1:{port}", "list"], capture_output=True,
                         text=True)
    assert got.returncode == 3
    assert got.stderr == (f"krakenctl: GET /cfg/nodes at 127.0.0.1:{port}: cannot connect "
                          "(is kraken-daemon listening there?)\n")
    # KRAKEN_API gives the default endpoint
    env = dict(os.environ, KRAKEN_API=f"127.0.0.1:{port}")
    got = subprocess.run([KRAKENCTL, "status"], capture_output=True, text=True, env=env)
    assert got.returncode == 3 and f"127.0.0.1:{port}" in got.stderr


def test_help_lists_every_command():
    out = subprocess.run([KRAKENCTL, "--help"], capture_output=True, text=True).stdout
    for cmd in ["list, node list", "show, node info", "get", "set", "create, node create",
                "update, node update", "delete, node delete", "freeze, sme freeze",
                "thaw, sme thaw", "status, sme status", "plan, node plan", "graph, node graph",
                "watch"]:
        assert f"  {cmd} " in out


class OriginalStandIn:
    """A daemon without GET /schemas (as the original): serves one node's Cfg, 404 elsewhere."""

    def __init__(self, node):
        import http.server
        import threading
        body = json.dumps(node).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                found = self.path == "/cfg/node/" + node["id"]
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body if found else b'{"error": "not found"}')

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_site_schemas_from_a_directory(tmp_path):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "10-rack.json").write_text(json.dumps({"schemas": [{"name": "Site.Rack", "fields": [
        {"name": "rack", "number": 1, "type": "string"},
        {"name": "slot", "number": 2, "type": "uint32"}]}]}))
    state = json.loads(json.dumps(STATE))
    state["nodes"][1]["extensions"] = [
        {"@type": "type.googleapis.com/Site.Rack", "rack": "r12", "slot": 4}]
    d = Daemon(str(tmp_path), "-schemas", str(schemas), state=state)
    url = "type.googleapis.com/Site.Rack/Slot"
    try:
        # the daemon's GET /schemas tells krakenctl the site's types: no --schemas needed
        assert ok(d, "get", N1, url) == "4\n"
        ok(d, "set", N1, url, "5")
        assert ok(d, "get", N1, url) == "5\n"
        assert "Site.Rack" in ok(d, "show", N1)
        assert ok(d, "--schemas", str(schemas), "get", N1, url) == "5\n"
        rc, _, err = ctl(d, "--schemas", str(tmp_path / "none"), "list")
        assert (rc, err) == (2, f"krakenctl: --schemas {tmp_path}/none: No such file or directory\n")
        # a type of --schemas that contradicts the daemon's is named
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "rack.json").write_text(json.dumps({"schemas": [{
            "name": "Site.Rack", "fields": [{"name": "rack", "number": 1, "type": "uint32"}]}]}))
        rc, _, err = ctl(d, "--schemas", str(tmp_path / "other"), "get", N1, url)
        assert rc == 1
        assert err.startswith("krakenctl: GET /schemas: ") and "Site.Rack" in err, err
    finally:
        d.stop()
    # a daemon without GET /schemas (the original): the site's schemas come from --schemas
    original = OriginalStandIn(state["nodes"][1])
    try:
        rc, _, err = ctl(None, "-i", f"127.0.0.1:{original.port}", "get", N1, url)
        assert rc == 2
        assert err == (f"krakenctl: GET /cfg/node/{N1}: node ({N1}): field 'extensions[0]': "
                       "unknown @type 'type.googleapis.com/Site.Rack' (give krakenctl the site's "
                       "schemas: --schemas DIR)\n")
        assert ok(None, "-i", f"127.0.0.1:{original.port}", "--schemas", str(schemas),
                  "get", N1, url) == "4\n"
    finally:
        original.stop()


def test_command_help():
    got = subprocess.run([KRAKENCTL, "node", "list", "--help"], capture_output=True, text=True)
    assert got.returncode == 0
    assert got.stdout == ("usage: krakenctl list [-t mixed|cfg|dsc] [-f [COLUMNS]] [-j]\n"
                          "(also: krakenctl node list)\n"
                          "list the nodes, Cfg next to Dsc (-f: chosen fields)\n")
    got = subprocess.run([KRAKENCTL, "watch", "-h"], capture_output=True, text=True)
    assert (got.returncode, got.stdout.splitlines()[0]) == (
        0, "usage: krakenctl watch [--until-converged] [--timeout SECONDS] [--poll SECONDS] [-j]")


def test_group_help_lists_the_originals_forms():
    got = subprocess.run([KRAKENCTL, "sme", "--help"], capture_output=True, text=True)
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout == (
        "usage: krakenctl sme ACTION [ARGS]   (krakenctl sme ACTION --help for one)\n"
        "  sme freeze             stop all mutations (the engine plans nothing)\n"
        "  sme thaw               resume mutations\n"
        "  sme status             is the engine frozen?\n")
    out = subprocess.run([KRAKENCTL, "node", "-h"], capture_output=True, text=True).stdout
    assert [l.split()[1] for l in out.splitlines()[1:]] == [
        "list", "info", "create", "update", "delete", "plan", "graph"]


def test_watch_polls_without_an_event_stream(tmp_path):
    state = json.loads(json.dumps(STATE))
    state["nodes"][0]["services"][0]["state"] = "STOP"  # no websocket service running
    d = Daemon(str(tmp_path), state=state)
    try:
        ok(d, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
        watch = subprocess.Popen([KRAKENCTL, "-i", f"127.0.0.1:{d.port}", "watch",
                                  "--until-converged", "--timeout", "10"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = watch.stdout.readline()
        assert first.startswith(f"kraken at 127.0.0.1:{d.port}: 2 node(s), 1 converging"), first
        ok(d, "set", "--dsc", N1, "/PhysState", "POWER_ON")
        out, err = watch.communicate(timeout=DEADLINE * 2)
        assert watch.returncode == 0, err
        assert err == ("krakenctl: no event stream (GET /ws answered 503 without a websocket "
                       "port); polling every 1 s\n")
        assert out.endswith("converged\n")
        assert re.search(rf"^{N1}\s+n1\s+POWER_ON\s+POWER_ON", out, re.M)
    finally:
        d.stop()


def test_watch_poll_on_request(daemon):
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_OFF")
    watch = subprocess.Popen([KRAKENCTL, "-i", f"127.0.0.1:{daemon.port}", "-j", "watch",
                              "--poll", "0.05", "--until-converged", "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(watch.stdout.readline()) == {"nodes": 2, "converging": 1}
    ok(daemon, "set", "--dsc", N1, "/PhysState", "POWER_ON")
    out, err = watch.communicate(timeout=DEADLINE * 2)
    assert (watch.returncode, err) == (0, "")
    assert out.splitlines()[-2:] == ['{"nodes": 2, "converging": 0}', '{"converged": true}']
    rc, _, err = ctl(daemon, "watch", "--poll", "0")
    assert (rc, err) == (2, "krakenctl: --poll 0: expected seconds > 0\n")
