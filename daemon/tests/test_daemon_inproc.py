"""restapi and websocket as in-process modules of kraken-daemon (kraken/module.h; rest.c,
websocket.c, the table in main.c): their service instances start, stop and re-listen through
the module handlers as Cfg /Services/<id> says; a start that cannot listen leaves the service
ERROR with an error_msg naming the port; a config or Cfg service instance naming module
"restapi" or "websocket" runs another instance in-process."""

import http.client
import json
import socket

import pytest

from kdtest import SELF_ID, Daemon, next_address, wait_until

WS_CONFIG = "type.googleapis.com/WebSocket.Config"
REST_CONFIG = "type.googleapis.com/restapi.Config"


def services(d, kind="dsc"):
    return {s["id"]: s for s in d.get("/%s/node/%s" % (kind, SELF_ID))[2].get("services", [])}


def state_of(d, sid):
    return services(d).get(sid, {}).get("state", "")


def patch_service(d, **svc):
    status, _, body = d.request("PATCH", "/cfg/node/" + SELF_ID, {"services": [svc]})
    assert status == 200, body


def ws_port(d):
    return int(d.get("/ws")[2]["port"])


def accepts(addr, port):
    try:
        socket.create_connection((addr, port), timeout=5).close()
        return True
    except OSError:
        return False


def free_port(addr):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def taken_port(addr):
    """A socket listening on addr: the port is taken while it stays open."""
    s = socket.socket()
    s.bind((addr, 0))
    s.listen(1)
    return s, s.getsockname()[1]


@pytest.fixture
def d():
    daemon = Daemon(["-id", SELF_ID])
    yield daemon
    assert daemon.stop() == 0


def test_self_node_lists_both_module_instances_as_before(d):
    cfg = services(d, "cfg")
    # -ipapi ADDR:0 and -wsport 0 (kdtest): port 0 is the zero value, left out of the JSON
    assert cfg["restapi"] == {"id": "restapi", "module": "restapi", "state": "RUN",
                              "config": {"@type": REST_CONFIG, "addr": d.addr}}
    assert cfg["websocket"] == {"id": "websocket", "module": "websocket", "state": "RUN",
                                "config": {"@type": WS_CONFIG, "writeWait": "10s",
                                           "pongWait": "1m0s", "pingPeriod": "54s",
                                           "maxMessageSize": "512"}}
    dsc = services(d)
    assert dsc["restapi"]["state"] == "RUN" and dsc["websocket"]["state"] == "RUN"
    assert dsc["restapi"]["config"] == {"@type": REST_CONFIG, "addr": d.addr, "port": d.port}


def test_websocket_state_stop_and_run_go_through_the_module(d):
    port = ws_port(d)
    assert accepts(d.addr, port)
    patch_service(d, id="websocket", state="STOP")
    wait_until(lambda: state_of(d, "websocket") == "STOP", 10, "websocket STOP")
    wait_until(lambda: not accepts(d.addr, port), 10, "listener closed")
    patch_service(d, id="websocket", state="RUN")
    wait_until(lambda: state_of(d, "websocket") == "RUN", 10, "websocket RUN")
    assert accepts(d.addr, ws_port(d))


def test_websocket_config_change_relistens(d):
    old = ws_port(d)
    new = free_port(d.addr)
    patch_service(d, id="websocket", config={"@type": WS_CONFIG, "port": new})
    wait_until(lambda: ws_port(d) == new, 10, "websocket on the new port")
    assert accepts(d.addr, new)
    wait_until(lambda: not accepts(d.addr, old), 10, "old listener closed")
    assert state_of(d, "websocket") == "RUN"


def test_websocket_start_failure_is_error_naming_the_port(d):
    holder, port = taken_port(d.addr)
    try:
        patch_service(d, id="websocket", state="STOP")
        wait_until(lambda: state_of(d, "websocket") == "STOP", 10, "websocket STOP")
        patch_service(d, id="websocket", config={"@type": WS_CONFIG, "port": port})
        patch_service(d, id="websocket", state="RUN")
        wait_until(lambda: state_of(d, "websocket") == "ERROR", 10, "websocket ERROR")
        assert services(d)["websocket"]["errorMsg"] == (
            "websocket: cannot listen on %s port %d: Address already in use" % (d.addr, port))
    finally:
        holder.close()
    # The port is free again. The engine leaves an ERROR service alone on Cfg STOP (it is not
    # running); Cfg RUN after it starts it again.
    patch_service(d, id="websocket", state="STOP")
    patch_service(d, id="websocket", state="RUN")
    wait_until(lambda: state_of(d, "websocket") == "RUN", 10, "websocket RUN")
    assert accepts(d.addr, port)


def test_second_restapi_from_the_config_stops_starts_and_reports_a_taken_port(tmp_path):
    admin = free_port("127.0.0.1")
    cfg = tmp_path / "k.json"
    cfg.write_text(json.dumps({"serviceinstances": {"admin": {"module": "restapi"}}}))
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"nodes": [{"id": SELF_ID, "services": [
        {"id": "admin", "module": "restapi", "state": "RUN",
         "config": {"@type": REST_CONFIG, "addr": "127.0.0.1", "port": admin}}]}]}))
    d = Daemon(["-id", SELF_ID, "-config", str(cfg), "-state", str(state)])
    try:
        d.wait_line(r"NOTICE admin: in-process module restapi")
        d.wait_line(r"NOTICE admin: listening on 127\.0\.0\.1 port %d" % admin)
        wait_until(lambda: state_of(d, "admin") == "RUN", 10, "admin RUN")
        # the same routes on both listeners
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        conn.request("GET", "/cfg/node/" + SELF_ID)
        assert json.loads(conn.getresponse().read()) == d.get("/cfg/node/" + SELF_ID)[2]
        conn.close()
        patch_service(d, id="admin", state="STOP")
        wait_until(lambda: state_of(d, "admin") == "STOP", 10, "admin STOP")
        wait_until(lambda: not accepts("127.0.0.1", admin), 10, "admin listener closed")
        holder, port = taken_port("127.0.0.1")
        try:
            patch_service(d, id="admin", config={"@type": REST_CONFIG, "addr": "127.0.0.1",
                                                 "port": port})
            patch_service(d, id="admin", state="RUN")
            wait_until(lambda: state_of(d, "admin") == "ERROR", 10, "admin ERROR")
            assert services(d)["admin"]["errorMsg"] == (
                "cannot listen on 127.0.0.1 port %d: Address already in use" % port)
        finally:
            holder.close()
        assert d.get("/sme/frozen")[0] == 200  # the daemon's own API serves on
    finally:
        assert d.stop() == 0


def test_cfg_service_of_module_websocket_runs_in_process(tmp_path):
    addr = next_address()  # every websocket instance listens on the REST API's address
    port = free_port(addr)
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"nodes": [{"id": SELF_ID, "services": [
        {"id": "events2", "module": "websocket", "state": "RUN",
         "config": {"@type": WS_CONFIG, "port": port}}]}]}))
    d = Daemon(["-id", SELF_ID, "-state", str(state)], addr=addr)
    try:
        d.wait_line(r"NOTICE events2: in-process module websocket")
        wait_until(lambda: state_of(d, "events2") == "RUN", 10, "events2 RUN")
        assert accepts(addr, port)
        assert ws_port(d) != port  # /ws names the daemon's own instance
        try:
            import websocket
        except ImportError:
            pytest.skip("python3-websocket is not installed")
        ws = websocket.create_connection("ws://%s:%d/ws" % (addr, port), timeout=10)
        ws.send(json.dumps({"command": "SUBSCRIBE", "type": "STATE_CHANGE"}))
        ws.close()
    finally:
        assert d.stop() == 0
    saved = json.loads(state.read_text())
    me = [n for n in saved["nodes"] if n["id"] == SELF_ID][0]
    kept = {s["id"]: s for s in me["services"]}
    assert kept["events2"] == {"id": "events2", "module": "websocket", "state": "RUN",
                               "config": {"@type": WS_CONFIG, "port": port}}


def test_services_of_both_modules_added_to_cfg_run_at_once(d):
    port = free_port(d.addr)
    holder, busy = taken_port(d.addr)
    try:
        status, _, body = d.request("PATCH", "/cfg/node/" + SELF_ID, {"services": [
            {"id": "ws3", "module": "websocket", "state": "RUN",
             "config": {"@type": WS_CONFIG, "port": port}},
            {"id": "ws4", "module": "websocket", "state": "RUN",
             "config": {"@type": WS_CONFIG, "port": busy}},
            {"id": "api2", "module": "restapi", "state": "RUN",
             "config": {"@type": REST_CONFIG, "addr": d.addr, "port": busy}}]})
        assert status == 200, body
        d.wait_line(r"NOTICE ws3: in-process module websocket")
        wait_until(lambda: state_of(d, "ws3") == "RUN", 10, "ws3 RUN")
        assert accepts(d.addr, port)
        # another instance's busy port is its own ERROR; the daemon carries on
        wait_until(lambda: state_of(d, "ws4") == "ERROR", 10, "ws4 ERROR")
        assert services(d)["ws4"]["errorMsg"] == (
            "websocket: cannot listen on %s port %d: Address already in use" % (d.addr, busy))
        wait_until(lambda: state_of(d, "api2") == "ERROR", 10, "api2 ERROR")
        assert services(d)["api2"]["errorMsg"] == (
            "cannot listen on %s port %d: Address already in use" % (d.addr, busy))
        assert state_of(d, "websocket") == "RUN" and accepts(d.addr, ws_port(d))
        assert d.get("/sme/frozen")[0] == 200
    finally:
        holder.close()
