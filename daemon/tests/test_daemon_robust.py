"""kraken-daemon under stress and misuse: acknowledged writes survive kill -9,
the bearer token is enforced, the listener follows its Cfg config, and slow,
malformed or idle clients each get a clear answer (or are closed) while the
daemon keeps serving everyone else."""

import json
import hashlib
import hmac
import os
import uuid
import re
import resource
import shutil
import socket
import time

import pytest

from kdtest import (FIXTURES, SELF_ID, Daemon, durable_cfg, node, run_daemon,
                    socket_closed_by_peer, wait_until)

TOKEN = "s3cret-token-0123456789abcdef"


def test_acknowledged_writes_survive_kill9_and_restart(tmp_path):
    state = tmp_path / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    # A long debounce: only the flush before the answer can have saved it.
    d = Daemon(["-id", SELF_ID, "-state", str(state), "-persist-delay", "1h"])
    ids = ["dddddddd-0000-4000-8000-%012d" % i for i in range(20)]
    for i, nid in enumerate(ids):
        assert d.request("POST", "/cfg/node", node(nid, nodename="k%d" % i))[0] == 200
    assert d.request("PATCH", "/cfg/node/" + ids[0], {"physState": "POWER_OFF"})[0] == 200
    assert d.request("DELETE", "/cfg/node/" + ids[1])[0] == 200
    assert d.request("PUT", "/cfg/nodes", {"nodes": [node(ids[2], nodename="bulk")]})[0] == 200
    d.kill9()
    assert not list(tmp_path.glob("*.tmp*")), "a temporary file was left behind"
    # The changes are in the journal (the state file is rewritten only 2 s after the writes
    # stop, which a loaded machine may have reached before the kill).
    journaled = os.path.exists(str(state) + ".journal")
    assert durable_cfg(state)[ids[0]]["physState"] == "POWER_OFF"

    d = Daemon(["-id", SELF_ID, "-state", str(state), "-log", "5"], addr=d.addr)
    try:
        if journaled:
            d.wait_line(r"NOTICE state: replayed \d+ change\(s\) from .*state\.json\.journal")
        # Replayed and compacted at start: the state file alone is the whole Cfg again.
        assert not os.path.exists(str(state) + ".journal")
        saved = {n["id"]: n for n in json.loads(state.read_text())["nodes"]}
        assert saved[ids[2]]["nodename"] == "bulk" and ids[1] not in saved
        nodes = {n["id"]: n for n in d.get("/cfg/nodes")[2]["nodes"]}
        assert set(ids) - {ids[1]} <= set(nodes)
        assert ids[1] not in nodes
        assert nodes[ids[0]]["physState"] == "POWER_OFF"
        assert nodes[ids[2]]["nodename"] == "bulk"
        assert nodes[SELF_ID]["nodename"] == "head"
    finally:
        assert d.stop() == 0


def test_journal_torn_last_line_is_dropped_and_bad_line_refused(tmp_path):
    state = tmp_path / "state.json"
    journal = tmp_path / "state.json.journal"
    a, b = "13131313-0000-4000-8000-000000000001", "13131313-0000-4000-8000-000000000002"
    state.write_text(json.dumps({"nodes": [{"id": a, "nodename": "a"}]}))
    journal.write_text('{"put":{"id":"%s","nodename":"a2"}}\n{"put":{"id":"%s","nodename":"b"}}\n'
                       '{"delete":"%s"}\n{"put":{"id":"%s","nodena' % (a, b, b, a))
    d = Daemon(["-state", str(state)])
    try:
        d.wait_line(r"WARNING state: .*state\.json\.journal:4: incomplete last line dropped")
        assert d.get("/cfg/node/" + a)[2]["nodename"] == "a2"
        assert d.get("/cfg/node/" + b)[0] == 404
    finally:
        assert d.stop() == 0
    assert not journal.exists()
    journal.write_text('{"put":{"id":"%s","physState":"ON"}}\n' % a)
    rc, _, err = run_daemon(["-state", str(state), "-ipapi", "127.0.0.1:0", "-syncport", "0"])
    assert rc == 1
    lines = [l for l in err.splitlines() if l.startswith("kraken-daemon:")]
    assert lines == ["kraken-daemon: %s:1: node (%s): field 'physState': unknown PhysState name "
                     "'ON'" % (journal, a)], err


def test_many_single_writes_use_the_journal(tmp_path):
    state = tmp_path / "state.json"
    d = Daemon(["-state", str(state), "-persist-delay", "1h"])
    try:
        for i in range(30):
            assert d.request("POST", "/cfg/node",
                             node("14141414-0000-4000-8000-%012d" % i))[0] == 200
        text = d.get("/metrics")[2]
        appends = int(re.search(r"kraken_state_journal_appends_total (\d+)", text).group(1))
        saves = int(re.search(r"kraken_state_saves_total (\d+)", text).group(1))
        assert appends >= 30 and saves <= 5, text  # a rewrite only after a 2 s pause
        assert len(durable_cfg(state)) == 31
    finally:
        assert d.stop() == 0
    # A clean stop compacts: one whole state file, no journal.
    assert not os.path.exists(str(state) + ".journal")
    assert len(json.loads(state.read_text())["nodes"]) == 31


def test_concurrent_writers_all_durable_with_group_commit(tmp_path):
    import threading
    state = tmp_path / "state.json"
    d = Daemon(["-state", str(state), "-persist-delay", "1h"])
    ids = ["15151515-0000-4000-8000-%012d" % i for i in range(8)]
    statuses = []
    try:
        for nid in ids:
            assert d.request("POST", "/cfg/node", node(nid))[0] == 200
        before = int(re.search(r"kraken_state_journal_appends_total (\d+)",
                               d.get("/metrics")[2]).group(1))

        def writer(nid):
            for k in range(20):
                statuses.append(d.request("PATCH", "/cfg/node/" + nid,
                                          {"nodename": "w%d" % k})[0])

        threads = [threading.Thread(target=writer, args=(nid,)) for nid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * 160
        after = int(re.search(r"kraken_state_journal_appends_total (\d+)",
                              d.get("/metrics")[2]).group(1))
        assert 0 < after - before <= 160   # one append per batch of answers
        saved = durable_cfg(state)
        assert all(saved[nid]["nodename"] == "w19" for nid in ids)
        d.kill9()
        d = Daemon(["-state", str(state)], addr=d.addr)
        assert all(d.get("/cfg/node/" + nid)[2]["nodename"] == "w19" for nid in ids)
    finally:
        assert d.stop() == 0


def test_state_file_is_written_whole_and_valid_on_sigterm(tmp_path):
    state = tmp_path / "state.json"
    d = Daemon(["-state", str(state), "-id", SELF_ID])
    d.request("POST", "/cfg/node", node("eeeeeeee-0000-4000-8000-000000000001"))
    assert d.stop() == 0
    saved = json.loads(state.read_text())
    assert {n["id"] for n in saved["nodes"]} == {SELF_ID, "eeeeeeee-0000-4000-8000-000000000001"}
    me = [n for n in saved["nodes"] if n["id"] == SELF_ID][0]
    assert "restapi" in [s["id"] for s in me["services"]]


def test_token_enforced_on_writes_and_reads(tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    tok.chmod(0o600)
    d = Daemon(["-api-token", str(tok)])
    try:
        status, hdrs, err = d.get("/cfg/nodes")
        assert status == 401
        assert hdrs["www-authenticate"].startswith("Bearer")
        assert err == {"error": "this request needs a bearer token "
                                "(Authorization: Bearer <token>)"}
        status, _, err = d.request("POST", "/cfg/node", node("ffffffff-0000-4000-8000-000000000001"),
                                   headers={"Authorization": "Bearer wrong"})
        assert status == 401 and err == {"error": "invalid bearer token"}
        assert d.get("/cfg/node/ffffffff-0000-4000-8000-000000000001",
                     headers={"Authorization": "Bearer " + TOKEN})[0] == 404
        good = {"Authorization": "Bearer " + TOKEN}
        assert d.request("POST", "/cfg/node", node("ffffffff-0000-4000-8000-000000000001"),
                         headers=good)[0] == 200
        assert d.get("/cfg/nodes", headers=good)[0] == 200
        # Freeze changes state even though the original used GET for it.
        assert d.get("/sme/freeze")[0] == 401
        # Preflight never needs the token (browsers send none).
        assert d.request("OPTIONS", "/cfg/nodes")[0] == 200
        # The event stream needs it too (reads are not open), in the header or the URL.
        ws = d.get("/ws", headers=good)[2]
        try:
            import websocket
        except ImportError:
            websocket = None
        if websocket is not None:
            url = "ws://%s:%s%s" % (ws["host"], ws["port"], ws["url"])
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(url, timeout=10)
            assert refused.value.status_code == 401
            websocket.create_connection(url + "?token=" + TOKEN, timeout=10).close()
        assert "refused POST /cfg/node: invalid bearer token" in d.log()
    finally:
        d.stop()


def test_sighup_reloads_the_token(tmp_path):
    import signal
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    tok.chmod(0o600)
    d = Daemon(["-api-token", str(tok)])
    try:
        old = {"Authorization": "Bearer " + TOKEN}
        new = {"Authorization": "Bearer " + TOKEN[::-1]}
        assert d.get("/sme/frozen", headers=old)[0] == 200
        tok.write_text(TOKEN[::-1] + "\n")
        start = len(d.lines)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_line(r"NOTICE restapi: SIGHUP: API token reloaded from ", start=start)
        assert d.get("/sme/frozen", headers=old)[0] == 401
        assert d.get("/sme/frozen", headers=new)[0] == 200
        # A bad file keeps the current token.
        tok.write_text("short")
        start = len(d.lines)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_line(r"ERROR restapi: SIGHUP: token not reloaded, the previous one stays: .*at "
                    r"least 16 characters", start=start)
        assert d.get("/sme/frozen", headers=new)[0] == 200
    finally:
        assert d.stop() == 0


def test_open_reads_with_token_on_a_public_address(tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    tok.chmod(0o644)
    d = Daemon(["-api-token", str(tok), "-api-open-reads"], addr="0.0.0.0")
    try:
        d.wait_line(r"WARNING restapi: .*token file is readable by others")
        assert d.get("/cfg/nodes")[0] == 200
        assert d.get("/metrics")[0] == 200
        assert d.request("PUT", "/cfg/nodes", {"nodes": []})[0] == 401
        assert d.get("/sme/thaw")[0] == 401
        assert "-api-insecure" not in d.log()
    finally:
        d.stop()


def test_short_token_file_refused(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("short")
    rc, _, err = run_daemon(["-api-token", str(tok), "-ipapi", "127.0.0.1:0", "-syncport", "0"])
    assert rc == 1
    assert err.endswith("kraken-daemon: %s: the API token must be at least 16 characters\n" % tok)


def test_listener_follows_its_cfg_config(tmp_path):
    d = Daemon(["-id", SELF_ID, "-state", str(tmp_path / "s.json")])
    try:
        new_addr = d.addr.rsplit(".", 1)[0] + ".250"
        status, _, me = d.request("PATCH", "/cfg/node/" + SELF_ID, {"services": [
            {"id": "restapi", "config": {"@type": "type.googleapis.com/restapi.Config",
                                         "addr": new_addr, "port": 0}}]})
        assert status == 200
        line = d.wait_line(r"restapi: listening on %s port (\d+)" % new_addr.replace(".", r"\."))
        d.addr, d.port = new_addr, int(line.rsplit(" ", 1)[1])
        assert d.get("/sme/frozen")[2] == {"frozen": False}
        # A config the policy refuses keeps the current listener and says why.
        status, _, _ = d.request("PATCH", "/cfg/node/" + SELF_ID, {"services": [
            {"id": "restapi", "config": {"addr": "0.0.0.0"}}]})
        assert status == 200
        d.wait_line(r"ERROR restapi: refusing to listen on 0\.0\.0\.0")
        assert d.get("/sme/frozen")[0] == 200
    finally:
        assert d.stop() == 0
    # The new address was persisted; an explicit -ipapi wins over it at the next start.
    saved = json.loads((tmp_path / "s.json").read_text())
    me = [n for n in saved["nodes"] if n["id"] == SELF_ID][0]
    rest = [s for s in me["services"] if s["id"] == "restapi"][0]
    assert rest["config"]["addr"] == "0.0.0.0"


def test_restapi_disabled_by_config(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("serviceinstances:\n  restapi:\n    disable: true\n")
    d = Daemon(["-config", str(cfg)], wait_ready=False)
    try:
        d.wait_line(r"daemon: ready")
        assert "restapi: listening" not in d.log()
    finally:
        assert d.stop() == 0


def test_unknown_service_in_config_is_warned(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("serviceinstances:\n  powerman:\n    disable: true\n")
    d = Daemon(["-config", str(cfg)])
    try:
        d.wait_line(r"NOTICE daemon: serviceinstances\.powerman: no such service instance yet; "
                    r"its settings apply when it registers")
        me = d.get("/cfg/node/" + d.self_id())[2]
        assert {"id": "powerman", "state": "STOP"} in me["services"]
    finally:
        d.stop()


def test_mutation_overrides_from_the_config(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("serviceinstances:\n  sync:\n    mutations:\n"
                   "      INITtoSYNC: {disable: true, timeout: 5s}\n"
                   "  later:\n    mutations:\n      X: {timeout: 1m30s}\n")
    d = Daemon(["-config", str(cfg)])
    try:
        status, _, body = d.get("/mutations")
        assert status == 200
        m = [x for x in body["mutations"] if (x["service"], x["id"]) == ("sync", "INITtoSYNC")]
        assert len(m) == 1, body
        m = m[0]
        assert m["disabled"] is True
        assert m["timeoutMs"] == 5000 and m["declaredTimeoutMs"] == 90000
        assert m["context"] == "CHILD"
        assert m["mutates"] == [{"url": "/RunState", "from": "INIT", "to": "SYNC"}]
        assert m["requires"] == {"/PhysState": "POWER_ON"}
        # The engine's sync service runs.
        me = d.get("/dsc/node/" + d.self_id())[2]
        assert [s["state"] for s in me["services"] if s["id"] == "sync"] == ["RUN"]
    finally:
        assert d.stop() == 0


def test_oversized_body_is_refused_and_others_served():
    d = Daemon(["-api-max-body", "4096"])
    try:
        big = {"nodes": [node("abababab-0000-4000-8000-%012d" % i, nodename="x" * 50)
                         for i in range(100)]}
        status = None
        try:
            status, _, _ = d.request("PUT", "/cfg/nodes", big)
        except (ConnectionResetError, BrokenPipeError):
            status = "reset"
        assert status in (413, "reset")
        assert d.get("/cfg/nodes")[0] == 200
        assert all(n["id"].startswith("abababab") is False for n in d.get("/cfg/nodes")[2]["nodes"])
    finally:
        d.stop()


def test_invalid_json_gets_a_clear_answer():
    d = Daemon([])
    try:
        status, _, err = d.request("POST", "/cfg/nodes", b'{"nodes": [ {"id": ')
        assert status == 400
        assert err == {"error": "request body: invalid JSON at line 1, column 19"}
        status, _, err = d.request("PUT", "/cfg/node", b"\xff\xfe garbage")
        assert status == 400 and err["error"].startswith("request body: invalid JSON")
    finally:
        d.stop()


def test_slow_and_partial_clients_do_not_block_others():
    d = Daemon(["-api-timeout", "1s"])
    try:
        partial = socket.create_connection((d.addr, d.port))
        partial.sendall(b"GET /cfg/nodes HTTP/1.1\r\nHost: x\r\nX-Half: ")
        slow_body = socket.create_connection((d.addr, d.port))
        slow_body.sendall(b"PUT /cfg/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        # Others are served while those two hang.
        for _ in range(5):
            assert d.get("/sme/frozen")[0] == 200
        # Both are closed by the slow-client timeout.
        assert socket_closed_by_peer(partial, 10)
        assert socket_closed_by_peer(slow_body, 10)
        partial.close()
        slow_body.close()
        # Garbage instead of HTTP gets an answer or a close, never a hang.
        junk = socket.create_connection((d.addr, d.port))
        junk.sendall(b"\x00\x01\x02 NOT HTTP\r\n\r\n")
        assert socket_closed_by_peer(junk, 10)
        junk.close()
        huge = socket.create_connection((d.addr, d.port))
        huge.sendall(b"GET /cfg/nodes HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        assert socket_closed_by_peer(huge, 10)
        huge.close()
        assert d.get("/sme/frozen")[0] == 200
    finally:
        assert d.stop() == 0


def test_two_thousand_idle_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2000
    if hard < want + 200:
        pytest.skip("hard open-file limit %d is below %d" % (hard, want + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = Daemon(["-api-timeout", "30s"])
    conns = []
    try:
        for _ in range(want):
            conns.append(socket.create_connection((d.addr, d.port)))
        t0 = time.monotonic()
        for _ in range(10):
            assert d.get("/cfg/nodes")[0] == 200
        assert time.monotonic() - t0 < 10
    finally:
        for c in conns:
            c.close()
        assert d.stop() == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sdnotify_ready_and_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    d = Daemon(["-sdnotify"], env=env)
    try:
        assert sock.recv(4096) == b"READY=1"
    finally:
        assert d.stop() == 0
    assert sock.recv(4096) == b"STOPPING=1"
    sock.close()


def test_sdnotify_watchdog_pings(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    d = Daemon(["-sdnotify"], env=env)
    try:
        assert sock.recv(4096) == b"READY=1"
        assert sock.recv(4096) == b"WATCHDOG=1"   # every 100 ms
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        assert d.stop() == 0
    sock.close()


def test_child_joins_parent_and_follows_its_cfg(tmp_path):
    # The operator's way to the keys: kraken-daemon's one-shot -write-secret and -write-node-key.
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)]) == (0, "", "")
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    state = tmp_path / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    n1 = "4afdefa4-573b-5cfe-a419-c59075cf18a5"
    root = Daemon(["-id", SELF_ID, "-state", str(state), "-secret", str(secret)])
    root_ip = root.addr
    try:
        line = root.wait_line(r"sync: listening on .* port (\d+)")
        sync_port = int(line.rsplit(" ", 1)[1])
        # A child holds only its own node key, derived from the cluster secret along the Cfg
        # parent chain (doc/PROTOCOL.md; kraken_sync_write_node_key): n1's parent is the root.
        child_key = tmp_path / "n1.key"
        assert run_daemon(["-state", str(state), "-secret", str(secret),
                           "-write-node-key", "%s:%s" % (n1, child_key)]) == (0, "", "")
        assert child_key.stat().st_mode & 0o777 == 0o600
        assert child_key.read_bytes() == hmac.new(secret.read_bytes(), b"kraken-node-key-v1" +
                                                  uuid.UUID(n1).bytes, hashlib.sha256).digest()
        child = Daemon(["-id", n1, "-secret", str(child_key), "-ip", root.addr.rsplit(".", 1)[0] +
                        ".251", "-parent", "%s:%d" % (root_ip, sync_port)])
        try:
            assert "child, REST port" in child.wait_line(r"daemon: ready")
            wait_until(lambda: "kraken_sync_joined 1" in child.get("/metrics")[2], 20,
                       "child joined")
            # Cfg flows down: the root's change of the child's node reaches the child.
            assert root.request("PATCH", "/cfg/node/" + n1, {"arch": "arm64"})[0] == 200
            wait_until(lambda: child.get("/cfg/node/" + n1)[2].get("arch") == "arm64", 20,
                       "Cfg change at the child")
            # Dsc flows up: the root sees where the child's REST API listens.
            def child_rest_in_root_dsc():
                svcs = root.get("/dsc/node/" + n1)[2].get("services", [])
                return [s for s in svcs if s["id"] == "restapi" and
                        s.get("config", {}).get("port") == child.port]
            wait_until(child_rest_in_root_dsc, 20, "child's Dsc at the root")
            # The parent's Cfg has no restapi config for the child: it keeps its -ipapi.
            assert child.get("/sme/frozen")[0] == 200
            assert "kraken_sync_children 1" in root.get("/metrics")[2]
            # One log line per fact: the join, not also "neighbor up" or the event's echo.
            joined = [l for l in root.log().splitlines() if n1 in l and "sync:" in l and
                      "fresh again" not in l]
            assert len(joined) == 1 and re.search(
                r"NOTICE sync: child %s joined from [0-9.]+:\d+$" % n1, joined[0]), joined
        finally:
            assert child.stop() == 0
        # The session's end is logged once, by the library, with its reason.
        ended = root.wait_line(r"sync: session with child %s ended: " % n1)
        assert [l for l in root.log().splitlines()
                if re.search(r"sync: .*(ended|neighbor down|%s: child)" % n1, l)] == [ended]
    finally:
        assert root.stop() == 0


def test_refused_join_is_logged_once_per_attempt(tmp_path):
    secret = tmp_path / "secret"
    assert run_daemon(["-write-secret", str(secret)])[0] == 0
    state = tmp_path / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    n1 = "4afdefa4-573b-5cfe-a419-c59075cf18a5"
    root = Daemon(["-id", SELF_ID, "-state", str(state), "-secret", str(secret)])
    try:
        line = root.wait_line(r"sync: listening on .* port (\d+)")
        sync_port = int(line.rsplit(" ", 1)[1])
        # The cluster secret is not n1's node key: every join is refused, on both sides.
        child = Daemon(["-id", n1, "-secret", str(secret), "-ip", root.addr.rsplit(".", 1)[0] +
                        ".251", "-parent", "%s:%d" % (root.addr, sync_port)])
        try:
            root.wait_line(r"WARNING sync: join of %s from \S+ refused: " % n1)
            child.wait_line(r"WARNING sync: join to the parent at \S+ refused: ")
        finally:
            assert child.stop() == 0
    finally:
        assert root.stop() == 0
    # Each refusal is one line (the library's, with the address), not also the SYNC event's.
    for d, form in ((root, r"WARNING sync: join of %s from \S+ refused: " % n1),
                    (child, r"WARNING sync: join to the parent at \S+ refused: ")):
        refused = [l for l in d.log().splitlines() if re.search(r" sync: .*refused", l)]
        assert refused and all(re.search(form, l) for l in refused), refused


def test_child_without_secret_is_refused():
    rc, _, err = run_daemon(["-parent", "127.0.0.1:1", "-ipapi", "127.0.0.1:0", "-syncport", "0"])
    assert rc == 1
    assert "kraken-daemon: sync: " in err and "secret" in err


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.skipif(os.environ.get("KD_SANITIZE", "none") != "none",
                    reason="a sanitizer build does not run under valgrind")
def test_valgrind_clean_run_and_shutdown(tmp_path):
    state = tmp_path / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    d = Daemon(["-id", SELF_ID, "-state", str(state), "-sync-insecure", "-ip", "127.0.0.1"],
               wrapper=["valgrind", "--error-exitcode=99", "--leak-check=full",
                        "--errors-for-leak-kinds=definite,indirect", "-q"])
    assert d.proc.args[0] == "valgrind"
    try:
        nid = "99999999-0000-4000-8000-000000000001"
        d.request("POST", "/cfg/nodes", {"nodes": [node(nid), {"nodename": "x"},
                                                   node(nid[:-1] + "2", physState="BAD")]})
        d.request("PATCH", "/cfg/node/" + nid, {"nodename": "v"})
        for path in ("/cfg/nodes", "/dsc/nodes", "/graph/json", "/graph/node/%s/json" % nid,
                     "/graph/node/%s/path" % nid, "/enumerables", "/metrics", "/ws", "/nope"):
            d.get(path)
        d.request("PUT", "/cfg/node", b"{bad")
        d.request("DELETE", "/cfg/node/" + nid)
    finally:
        assert d.stop(timeout=60) == 0, d.log()


def test_schema_directory_loaded_before_the_state(tmp_path):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "10-site.json").write_text(json.dumps({
        "enums": [{"name": "Site.Cooling", "members": {"UNKNOWN": 0, "AIR": 1, "WATER": 2}}],
        "schemas": [{"name": "Site.Rack", "fields": [
            {"name": "row", "number": 1, "type": "string"},
            {"name": "slot", "number": 2, "type": "uint32"},
            {"name": "cooling", "number": 3, "type": "enum", "type_name": "Site.Cooling"}]}]}))
    (schemas / "README").write_text("not a schema: ignored")
    state = tmp_path / "state.json"
    rack = {"@type": "type.googleapis.com/Site.Rack", "row": "B", "slot": 7, "cooling": "WATER"}
    nid = "12121212-0000-4000-8000-000000000001"
    state.write_text(json.dumps({"nodes": [{"id": nid, "extensions": [rack]},
                                           {"id": SELF_ID, "extensions": [rack]}]}))
    # Without the directory the type is unknown: one line naming file, node and type.
    rc, _, err = run_daemon(["-id", SELF_ID, "-state", str(state), "-ipapi", "127.0.0.1:0",
                             "-syncport", "0"])
    assert rc == 1
    lines = [l for l in err.splitlines() if l.startswith("kraken-daemon:")]
    assert len(lines) == 1 and str(state) in lines[0] and "Site.Rack" in lines[0], err
    d = Daemon(["-id", SELF_ID, "-state", str(state), "-schemas", str(schemas), "-log", "6"])
    try:
        d.wait_line(r"INFO schema: loaded schema file .*10-site\.json")
        assert d.get("/cfg/node/" + nid)[2]["extensions"] == [rack]
        # The self node's enums include the site's (the dashboard's legend).
        enums = d.get("/enumerables")[2]
        assert {"name": "cooling", "url": "type.googleapis.com/Site.Rack/cooling",
                "options": {"0": "UNKNOWN", "1": "AIR", "2": "WATER"}} in enums
    finally:
        assert d.stop() == 0


def test_bad_schema_file_is_one_line(tmp_path):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "bad.json").write_text('{"schemas": [{"name": "X.Y", "fields": [{"name": "a", '
                                      '"number": 1, "type": "float"}]}]}')
    rc, _, err = run_daemon(["-schemas", str(schemas), "-ipapi", "127.0.0.1:0", "-syncport", "0"])
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kraken-daemon: ") and "bad.json" in lines[0]
    assert "float" in lines[0]
    rc, _, err = run_daemon(["-schemas", str(tmp_path / "none"), "-ipapi", "127.0.0.1:0"])
    assert rc == 1
    assert err == "kraken-daemon: %s/none: cannot open schema directory: No such file or " \
                  "directory\n" % tmp_path
