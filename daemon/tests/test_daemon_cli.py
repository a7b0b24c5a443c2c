"""kraken-daemon command line and config files (SPEC 9.1): flags in the
original's single-dash form and GNU long forms, YAML and JSON config with the
original's keys, precedence defaults < file < flags, -printrc, and one-line
errors that name the file and position."""

import hashlib
import hmac
import json
import os
import uuid

import pytest

from kdtest import FIXTURES, SELF_ID, Daemon, run_daemon


def printrc(*args):
    rc, out, err = run_daemon(list(args) + ["-printrc"])
    assert rc == 0, err
    assert out.startswith("---\n")
    values = {}
    for line in out.splitlines()[1:]:
        if not line.startswith(" ") and ": " in line:
            k, v = line.split(": ", 1)
            values[k] = v
    return out, values


def test_defaults_printed_as_yaml_with_the_original_keys():
    out, v = printrc()
    for key in ("freeze", "id", "ip", "ipapi", "loglevel", "parent", "noprefix", "sdnotify",
                "statefile"):
        assert key in v, out
    assert v["loglevel"] == "5"
    assert v["freeze"] == "false"
    assert "serviceinstances: {}" in out


@pytest.mark.parametrize("form", [["-log", "7"], ["-log=7"], ["--log", "7"], ["--log=7"]])
def test_flag_forms(form):
    _, v = printrc(*form)
    assert v["loglevel"] == "7"


def test_bool_flags_take_no_value_but_accept_one():
    assert printrc("-freeze")[1]["freeze"] == "true"
    assert printrc("--freeze=false")[1]["freeze"] == "false"


def test_precedence_defaults_file_flags(tmp_path):
    cfg = tmp_path / "kraken.yaml"
    cfg.write_text("loglevel: 8\nfreeze: true\nstatefile: /var/lib/kraken/state.json\n")
    _, v = printrc("-config", str(cfg))
    assert (v["loglevel"], v["freeze"], v["statefile"]) == ("8", "true",
                                                            '"/var/lib/kraken/state.json"')
    # A flag wins over the file, wherever it is on the command line.
    _, v = printrc("-log", "3", "-config", str(cfg))
    assert v["loglevel"] == "3"
    assert v["freeze"] == "true"


def test_json_config_and_durations(tmp_path):
    cfg = tmp_path / "kraken.json"
    cfg.write_text('{\n\t"loglevel": 6,\n\t"serviceinstances": {"pxe": {"disable": true, '
                   '"module": "pxe", "mutations": {"NONEtoWAIT": {"timeout": "1m30s"}, '
                   '"WAITtoINIT": {"disable": true}}}}\n}\n')
    out, v = printrc("--config=" + str(cfg))
    assert v["loglevel"] == "6"
    assert '  "pxe":\n    disable: true\n    module: "pxe"\n' in out
    assert '      "NONEtoWAIT":\n        disable: false\n        timeout: "1m30s"\n' in out
    # An omitted timeout stays omitted (the module's default applies).
    assert '      "WAITtoINIT":\n        disable: true\n      ' in out or \
        out.endswith('      "WAITtoINIT":\n        disable: true\n')


def test_printrc_output_reads_back_unchanged(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("id: %s\nloglevel: 2\napitimeout: 2m5.5s\nserviceinstances:\n"
                   "  restapi:\n    mutations:\n      m1: {timeout: 250ms}\n" % SELF_ID)
    first, _ = printrc("-config", str(cfg))
    again = tmp_path / "b.yaml"
    again.write_text(first)
    second, _ = printrc("-config", str(again))
    assert first == second
    assert 'apitimeout: "2m5.5s"' in first
    assert 'timeout: "250ms"' in first


def test_go_duration_in_nanoseconds_as_a_plain_integer(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("apitimeout: 3000000000\n")
    assert printrc("-config", str(cfg))[1]["apitimeout"] == '"3s"'


@pytest.mark.parametrize("args,message", [
    (["-foo"], "kraken-daemon: unknown flag '-foo' (see --help)"),
    (["--log"], "kraken-daemon: flag '-log' needs a value"),
    (["-log", "12"], "kraken-daemon: flag '-log': invalid value '12' for loglevel "
                     "(want an integer 0..9)"),
    (["-id", "zz"], "kraken-daemon: flag '-id': invalid UUID 'zz' for id"),
    (["-freeze=maybe"], "kraken-daemon: flag '-freeze': invalid boolean 'maybe' for freeze"),
    (["stray"], "kraken-daemon: unexpected argument 'stray' (flags start with '-'; see --help)"),
    (["-api-timeout", "0s"], "kraken-daemon: flag '-api-timeout': apitimeout must be at least "
                             "1ms, not '0s'"),
    (["-api-timeout", "5 minutes"], "kraken-daemon: flag '-api-timeout': invalid duration "
                                    "'5 minutes' for apitimeout (want e.g. \"10s\", \"1m30s\")"),
])
def test_bad_flags_exit_nonzero_with_one_line(args, message):
    rc, out, err = run_daemon(args)
    assert rc == 2
    assert err == message + "\n"
    assert out == ""


@pytest.mark.parametrize("name,text,message", [
    ("bad.yaml", "loglevel: 7\n  oops: [\n", "bad.yaml:2:7: invalid YAML: mapping values are "
                                             "not allowed in this context"),
    ("bad.json", '{"loglevel": 7,\n "id": }\n', "bad.json:2:8: invalid JSON"),
    ("type.json", '{"loglevel": 7,\n "id": "nope"}\n', "type.json:2:8: invalid UUID 'nope' "
                                                       "for id"),
    ("unknown.yaml", "loglevel: 3\nlogleve: 4\n", "unknown.yaml:2:1: unknown key 'logleve'"),
    ("dur.yaml", "serviceinstances:\n  sync:\n    mutations:\n      INITtoSYNC:\n"
                 "        timeout: soon\n",
     "dur.yaml:5:18: invalid duration 'soon' for timeout (want e.g. \"10s\")"),
    ("svc.yaml", "serviceinstances:\n  sync:\n    disabled: true\n",
     "svc.yaml:3:5: unknown key 'disabled' in service instance 'sync' (known: disable, "
     "module, mutations, command, args, env, cwd)"),
    ("list.yaml", "- loglevel\n", "list.yaml:1:1: the config must be a mapping"),
])
def test_bad_config_files_name_file_line_column(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    rc, out, err = run_daemon(["-config", str(path)])
    assert rc == 2
    assert err == "kraken-daemon: %s/%s\n" % (tmp_path, message)


def test_unreadable_config_file(tmp_path):
    rc, _, err = run_daemon(["-config", str(tmp_path / "absent.yaml")])
    assert rc == 2
    assert err == "kraken-daemon: %s/absent.yaml: cannot open: No such file or directory\n" % \
        tmp_path


def test_help_and_version():
    rc, out, err = run_daemon(["--help"])
    assert rc == 0 and err == ""
    assert out.startswith("Usage: kraken-daemon [flags]")
    for flag in ("-config FILE", "-printrc", "-state FILE", "-parent", "-sdnotify", "-noprefix",
                 "-api-token FILE", "-secret FILE"):
        assert flag in out
    rc, out, _ = run_daemon(["-version"])
    assert rc == 0 and out.startswith("kraken-daemon 0.")


def test_invalid_state_file_is_one_line(tmp_path):
    state = tmp_path / "state.json"
    state.write_text('{"nodes": [{"id": "%s", "physState": "ON"}]}' % SELF_ID)
    rc, _, err = run_daemon(["-id", SELF_ID, "-state", str(state), "-ipapi", "127.0.0.1:0",
                             "-syncport", "0"])
    assert rc == 1
    lines = [l for l in err.splitlines() if l.startswith("kraken-daemon:")]
    assert len(lines) == 1, err
    assert str(state) in lines[0] and "ON" in lines[0]


def test_refuses_public_rest_without_token():
    rc, _, err = run_daemon(["-ipapi", "0.0.0.0:0", "-syncport", "0"])
    assert rc == 1
    assert ("CRITICAL restapi: refusing to listen on 0.0.0.0: not a loopback address and no "
            "-api-token FILE (or -api-insecure to allow anyone who can reach it to change "
            "state)") in err


def test_api_insecure_warns_at_every_start():
    for _ in range(2):
        d = Daemon(["-api-insecure"], addr="0.0.0.0")
        try:
            d.wait_line(r"WARNING restapi: -api-insecure: the REST API on 0\.0\.0\.0 has no token")
        finally:
            assert d.stop() == 0


def test_sync_insecure_warns_and_root_without_secret_has_no_sync():
    d = Daemon([])
    try:
        d.wait_line(r"NOTICE sync: no -secret FILE: sync is off")
    finally:
        d.stop()
    d = Daemon(["-sync-insecure", "-ip", "127.0.0.1"])
    try:
        d.wait_line(r"WARNING sync: -sync-insecure: sync runs with a fixed, public key")
        d.wait_line(r"NOTICE sync: listening on 127\.0\.0\.1 port \d+")
    finally:
        assert d.stop() == 0


def test_both_listeners_logged_at_the_default_level():
    d = Daemon([])
    try:
        d.wait_line(r"^\S+ NOTICE restapi: listening on [\d.]+ port \d+$")
        d.wait_line(r"^\S+ NOTICE websocket: listening on [\d.]+ port \d+, path /ws$")
    finally:
        assert d.stop() == 0


def test_fd_limit_logged_at_info():
    d = Daemon(["-log", "6"])
    try:
        d.wait_line(r"INFO daemon: open-file limit \d+ \(was \d+, hard limit \d+\)")
    finally:
        d.stop()
    d = Daemon(["-log", "5"])
    try:
        assert "open-file limit" not in d.log()
    finally:
        d.stop()


def test_noprefix_drops_the_timestamp():
    d = Daemon(["-noprefix"])
    try:
        line = d.wait_line(r"daemon: ready")
        assert line.startswith("NOTICE daemon: ready: node ")
    finally:
        d.stop()


def test_sigterm_and_sigint_stop_cleanly(tmp_path):
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon(["-state", str(tmp_path / "s.json"), "-log", "6"])
        assert d.stop(sig) == 0
        lines = d.log().splitlines()
        # "stopped" is the last word, after the state is saved and the listeners closed
        assert lines[-1].endswith("daemon: stopped"), lines[-4:]
        assert any(line.endswith("state: state saved") for line in lines), lines[-4:]
        assert os.path.exists(tmp_path / "s.json")


def test_ipv6_rest_and_ws_host_in_brackets():
    import socket
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    d = Daemon(["-ipapi", "[::1]:0"], addr="::1")
    try:
        status, _, body = d.get("/ws")
        assert status == 200 and body["host"] == "[::1]"
    finally:
        assert d.stop() == 0


def test_unwritable_state_file_is_one_line():
    # A directory nobody can create files in, whoever runs the test (root included).
    path = "/proc/kraken-no-such-dir/state.json"
    rc, _, err = run_daemon(["-state", path, "-ipapi", "127.0.0.1:0", "-syncport", "0"])
    assert rc == 1
    lines = [l for l in err.splitlines() if "ERROR" in l or l.startswith("kraken-daemon:")]
    assert lines == ["kraken-daemon: %s: cannot create temporary file: No such file or "
                     "directory" % path], err


def test_write_secret_never_replaces_a_file(tmp_path):
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)]) == (0, "", "")
    before = secret.read_bytes()
    assert len(before) == 32 and secret.stat().st_mode & 0o777 == 0o600
    assert run_daemon(["--write-secret=" + str(secret)]) == (
        1, "", "kraken-daemon: -write-secret: secret file %s already exists (not replaced)\n"
        % secret)
    assert secret.read_bytes() == before


@pytest.mark.parametrize("args, code, message", [
    (["-write-node-key", "nonsense"], 2, "-write-node-key 'nonsense': want ID:FILE"),
    (["-write-node-key", "not-a-uuid:k"], 2, "-write-node-key: invalid node id 'not-a-uuid'"),
    (["-write-node-key", "4afdefa4-573b-5cfe-a419-c59075cf18a5:k"], 2,
     "-write-node-key needs -secret (the cluster secret) and -state (the Cfg node list)"),
    (["-state", "STATE", "-secret", "SECRET",
      "-write-node-key", "99999999-0000-4000-8000-000000000001:k"], 1,
     "-write-node-key: STATE: node 99999999-0000-4000-8000-000000000001 is not in the store"),
    (["-state", "STATE", "-secret", "SECRET",
      "-write-node-key", "4afdefa4-573b-5cfe-a419-c59075cf18a5:DIR/none/k"], 1,
     "-write-node-key: key file DIR/none/k: cannot create a temporary file: "
     "No such file or directory"),
])
def test_write_node_key_errors_are_one_line(tmp_path, args, code, message):
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)])[0] == 0
    state = os.path.join(FIXTURES, "cluster4.json")
    subst = {"STATE": state, "SECRET": str(secret)}
    args = [subst.get(a, a).replace("DIR", str(tmp_path)) for a in args]
    message = message.replace("STATE", state).replace("DIR", str(tmp_path))
    assert run_daemon(args) == (code, "", "kraken-daemon: %s\n" % message)
    assert not (tmp_path / "k").exists()


def test_write_node_key_of_a_grandchild_from_a_daemon_written_state(tmp_path):
    # A state file the daemon wrote holds config types (restapi.Config) of its own: only the
    # Cfg tree is read for the key. The key chains down root -> n1 -> n2.
    root, n1 = SELF_ID, "4afdefa4-573b-5cfe-a419-c59075cf18a5"
    n2 = "aaaaaaaa-0000-4000-8000-000000000002"
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"nodes": [
        {"id": root, "services": [{"id": "restapi", "config": {
            "@type": "type.googleapis.com/restapi.Config", "addr": "127.0.0.1", "port": 3141}}]},
        {"id": n1, "parentId": root}, {"id": n2, "parentId": n1}]}))
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)])[0] == 0
    key = tmp_path / "n2.key"
    assert run_daemon(["-state", str(state), "-secret", str(secret),
                       "-write-node-key", n2 + ":" + str(key)]) == (0, "", "")

    def derive(parent_key, node):
        return hmac.new(parent_key, b"kraken-node-key-v1" + uuid.UUID(node).bytes,
                        hashlib.sha256).digest()
    assert key.read_bytes() == derive(derive(secret.read_bytes(), n1), n2)
    assert key.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("text, message", [
    ("{", "invalid JSON"),
    ('{"nodes": [{"id": "zz"}]}', "node 0: field 'id': invalid UUID 'zz'"),
    ('{"cluster": []}', 'no "nodes" list'),
])
def test_write_node_key_bad_state_file(tmp_path, text, message):
    state = tmp_path / "state.json"
    state.write_text(text)
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)])[0] == 0
    assert run_daemon(["-state", str(state), "-secret", str(secret), "-write-node-key",
                       SELF_ID + ":" + str(tmp_path / "k")]) == (
        1, "", "kraken-daemon: -write-node-key: %s: %s\n" % (state, message))
    assert not (tmp_path / "k").exists()
