"""The REST API (SPEC 9.2) route by route, with a real HTTP client: the
original's shapes and status codes (so its dashboard and krakenctl work), the
CORS header, JSON error bodies, per-item bulk errors, PATCH, plan status,
/metrics, 404 and 405."""

import json
import os
import shutil

import pytest

from kdtest import FIXTURES, SELF_ID, Daemon, durable_cfg, node

N1 = "4afdefa4-573b-5cfe-a419-c59075cf18a5"
N2 = "3ac72083-5f34-57a6-bc6b-6d3164394575"
NEW = "11111111-2222-4333-8444-555555555555"
NEW2 = "11111111-2222-4333-8444-666666666666"
IP_TYPE = "type.googleapis.com/IPv4.IPv4OverEthernet"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    state = tmp_path_factory.mktemp("rest") / "state.json"
    shutil.copy(os.path.join(FIXTURES, "cluster4.json"), state)
    daemon = Daemon(["-id", SELF_ID, "-state", str(state), "-ip", "127.0.0.1"])
    daemon.state = state
    yield daemon
    assert daemon.stop() == 0


def ids(nodes):
    return sorted(n["id"] for n in nodes)


def test_node_lists_cfg_and_dsc(d):
    for kind in ("cfg", "dsc"):
        status, hdrs, body = d.get("/%s/nodes" % kind)
        assert status == 200
        assert hdrs["access-control-allow-origin"] == "*"
        assert hdrs["content-type"] == "application/json"
        assert SELF_ID in ids(body["nodes"]) and N1 in ids(body["nodes"])
    # The dashboard finds the master as the Cfg node without parentId.
    cfg = d.get("/cfg/nodes")[2]["nodes"]
    masters = [n for n in cfg if "parentId" not in n]
    assert [m["id"] for m in masters] == [SELF_ID]


def test_self_node_describes_its_kraken_interface_and_services(d):
    status, _, me = d.get("/cfg/node/" + SELF_ID)
    assert status == 200
    ext = [e for e in me["extensions"] if e["@type"] == IP_TYPE][0]
    assert ext["ifaces"]["kraken"]["ip"]["ip"] == "127.0.0.1"
    # Merged from the state file's copy of this node.
    assert me["nodename"] == "head"
    svc = {s["id"]: s for s in me["services"]}
    assert svc["restapi"]["module"] == "restapi"
    assert svc["restapi"]["state"] == "RUN"
    assert svc["restapi"]["config"] == {"@type": "type.googleapis.com/restapi.Config",
                                        "addr": d.addr}
    assert svc["websocket"]["module"] == "websocket" and svc["websocket"]["state"] == "RUN"
    # Dsc says where it really listens.
    dsc = d.get("/dsc/node/" + SELF_ID)[2]
    rest = [s for s in dsc["services"] if s["id"] == "restapi"][0]
    assert rest["state"] == "RUN"
    assert rest["config"]["port"] == d.port


def test_single_node_read_and_errors(d):
    status, _, n = d.get("/cfg/node/" + N1)
    assert status == 200 and n["id"] == N1 and n["nodename"] == "n1"
    status, hdrs, err = d.get("/cfg/node/" + NEW2)
    assert status == 404
    assert hdrs["access-control-allow-origin"] == "*"
    assert err == {"error": "node %s not found" % NEW2}
    status, _, err = d.get("/dsc/node/not-a-uuid")
    assert status == 400
    assert err == {"error": "invalid node id 'not-a-uuid' in URL /dsc/node/not-a-uuid"}


def test_create_conflict_replace_patch_delete(d):
    body = node(NEW, nodename="new1", arch="amd64", platform="sim", parentId=SELF_ID)
    status, _, created = d.request("POST", "/cfg/node", body)
    assert status == 200 and created["nodename"] == "new1"
    status, _, err = d.request("POST", "/cfg/node/" + NEW, body)
    assert status == 409
    assert err == {"error": "node %s already exists" % NEW}   # no internal function name
    # Dsc got an empty node with the same id.
    assert d.get("/dsc/node/" + NEW)[2] == {"id": NEW}

    body["physState"] = "POWER_OFF"
    status, _, replaced = d.request("PUT", "/cfg/node", body)
    assert status == 200 and replaced["physState"] == "POWER_OFF"
    status, _, err = d.request("PUT", "/cfg/node/" + NEW2, body)
    assert status == 400
    assert err == {"error": "request body: node id %s does not match the URL's %s" % (NEW, NEW2)}

    status, _, patched = d.request("PATCH", "/cfg/node/" + NEW, {
        "nodename": "renamed", "arch": None,
        "extensions": [{"@type": IP_TYPE, "ifaces": {"kraken": {"ip": {"ip": "10.0.0.9"}}}}]})
    assert status == 200
    assert patched["nodename"] == "renamed"
    assert "arch" not in patched
    assert patched["platform"] == "sim" and patched["physState"] == "POWER_OFF"
    assert patched["extensions"][0]["ifaces"]["kraken"]["ip"]["ip"] == "10.0.0.9"
    # A second PATCH merges into the same extension, not a copy of it.
    status, _, patched = d.request("PATCH", "/cfg/node/" + NEW, {
        "extensions": [{"@type": IP_TYPE, "ifaces": {"kraken": {"eth": {"mtu": 9000}}}}]})
    assert status == 200
    iface = patched["extensions"][0]["ifaces"]["kraken"]
    assert iface == {"eth": {"mtu": 9000}, "ip": {"ip": "10.0.0.9"}}
    status, _, err = d.request("PATCH", "/cfg/node/" + NEW, {"physState": "WARM"})
    assert status == 400 and "WARM" in err["error"]
    assert d.get("/cfg/node/" + NEW)[2]["physState"] == "POWER_OFF"   # unchanged
    status, _, err = d.request("PATCH", "/cfg/node/" + NEW, {"id": NEW2})
    assert status == 400
    assert err == {"error": "request body: \"id\" must be absent or the URL's %s" % NEW}

    status, _, gone = d.request("DELETE", "/cfg/node/" + NEW)
    assert status == 200 and gone["nodename"] == "renamed"
    assert d.get("/cfg/node/" + NEW)[0] == 404
    assert d.get("/dsc/node/" + NEW)[0] == 404
    status, _, err = d.request("DELETE", "/cfg/node/" + NEW)
    assert status == 404 and err == {"error": "node %s not found" % NEW}
    # No library function names ("store_update: ...") in what a client reads.
    status, _, err = d.request("PUT", "/cfg/node/" + NEW, body)
    assert status == 404 and err == {"error": "node %s not found" % NEW}
    status, _, err = d.get("/graph/node/%s/json" % NEW)
    assert status == 404 and err == {"error": "node %s not found" % NEW}
    status, _, err = d.request("DELETE", "/cfg/node/" + SELF_ID)
    assert status == 409
    assert err == {"error": "node %s is this kraken instance itself; it cannot be deleted" %
                   SELF_ID}


def test_post_with_id_in_path_only(d):
    status, _, created = d.request("POST", "/cfg/node/" + NEW2, {"nodename": "pathonly"})
    assert status == 200 and created["id"] == NEW2
    assert d.request("DELETE", "/cfg/node/" + NEW2)[0] == 200
    status, _, err = d.request("POST", "/cfg/node", {"nodename": "noid"})
    assert status == 400 and err == {"error": "request body: the node has no id"}


def test_bad_bodies(d):
    status, _, err = d.request("PUT", "/cfg/node", b'{"id": "%s",\n "nodename": }' %
                               NEW.encode())
    assert status == 400
    assert err == {"error": "request body: invalid JSON at line 2, column 14"}
    status, _, err = d.request("PUT", "/cfg/node", b"")
    assert status == 400 and err == {"error": "request body: empty (expected JSON)"}
    status, _, err = d.request("PUT", "/cfg/node", b"[1, 2]")
    assert status == 400 and err == {"error": "request body: expected a node object"}
    status, _, err = d.request("PUT", "/cfg/nodes", b'{"nodes": 3}')
    assert status == 400 and err == {"error": 'request body: expected {"nodes": [...]}'}
    status, _, err = d.request("POST", "/cfg/node", {
        "id": NEW, "extensions": [{"@type": "type.googleapis.com/No.Such"}]})
    assert status == 400 and "No.Such" in err["error"]
    assert d.get("/cfg/node/" + NEW)[0] == 404


def test_bulk_create_update_with_per_item_errors(d):
    a, b = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"
    status, _, res = d.request("POST", "/cfg/nodes", {"nodes": [
        node(a, nodename="a"), node(N1, nodename="dup"), {"nodename": "noid"},
        node(b, physState="SIDEWAYS"), node(b, nodename="b")]})
    assert status == 200
    assert ids(res["nodes"]) == [a, b]
    errs = res["errors"]
    assert [e["index"] for e in errs] == [1, 2, 3]
    assert errs[0] == {"index": 1, "id": N1, "error": "node %s already exists" % N1}
    assert errs[1] == {"index": 2, "error": "the node has no id"}
    assert errs[2]["id"] == b and "SIDEWAYS" in errs[2]["error"]
    assert d.get("/cfg/node/" + N1)[2]["nodename"] == "n1"   # the bad item changed nothing

    status, _, res = d.request("PUT", "/cfg/nodes", {"nodes": [
        node(a, nodename="a2"), node("aaaaaaaa-0000-4000-8000-00000000000f", nodename="x")]})
    assert status == 200
    assert [n["nodename"] for n in res["nodes"]] == ["a2"]
    assert len(res["errors"]) == 1 and res["errors"][0]["index"] == 1

    # Every item failed: 400, with the reasons.
    status, _, res = d.request("PUT", "/cfg/nodes", {"nodes": [node(NEW2, nodename="x")]})
    assert status == 400 and res["nodes"] == [] and len(res["errors"]) == 1

    status, _, res = d.request("PUT", "/dsc/nodes", {"nodes": [node(a, physState="POWER_ON")]})
    assert status == 200 and res == {"nodes": [{"id": a, "physState": "POWER_ON"}],
                                     "errors": []}
    for x in (a, b):
        assert d.request("DELETE", "/cfg/node/" + x)[0] == 200


def test_dsc_single_put(d):
    status, _, n = d.request("PUT", "/dsc/node/" + N2, {"id": N2, "runState": "INIT"})
    assert status == 200 and n["runState"] == "INIT"
    assert d.get("/dsc/node/" + N2)[2]["runState"] == "INIT"
    # Cfg is untouched by a Dsc write.
    assert d.get("/cfg/node/" + N2)[2]["runState"] == "SYNC"


def test_graph_and_plan_path(d):
    status, _, g = d.get("/graph/json")
    assert status == 200 and set(g) >= {"nodes", "edges"}
    status, _, g = d.get("/graph/node/%s/json" % N1)
    assert status == 200 and set(g) >= {"nodes", "edges"}
    assert d.get("/graph/node/%s/json" % NEW2)[0] == 404
    status, _, p = d.get("/graph/node/%s/path" % N1)
    assert status == 200
    assert p["id"] == N1
    assert p["state"] in ("CONVERGED", "RUNNING", "PASSIVE", "BACKOFF", "STUCK", "NO_PATH",
                          "FROZEN")
    assert isinstance(p["steps"], list) and isinstance(p["current"], int)
    assert isinstance(p["stuck"], bool) and isinstance(p["failures"], int)
    status, _, err = d.get("/graph/node/%s/path" % NEW2)
    assert status == 404 and NEW2 in err["error"]


def test_freeze_thaw_frozen(d):
    assert d.get("/sme/freeze") == (200, d.get("/sme/freeze")[1], {"frozen": True})
    assert d.get("/sme/frozen")[2] == {"frozen": True}
    assert d.request("POST", "/sme/thaw")[2] == {"frozen": False}
    assert d.get("/sme/frozen")[2] == {"frozen": False}


def test_enumerables_shape(d):
    status, _, enums = d.get("/enumerables")
    assert status == 200
    assert enums[-2] == {"name": "PhysState", "url": "physState", "options": {
        "0": "PHYS_UNKNOWN", "1": "POWER_OFF", "2": "POWER_ON", "3": "POWER_CYCLE",
        "4": "PHYS_HANG", "5": "PHYS_ERROR"}}
    assert enums[-1] == {"name": "RunState", "url": "runState", "options": {
        "0": "UNKNOWN", "1": "INIT", "2": "SYNC", "3": "ERROR"}}


def test_schemas_describe_the_types_beyond_the_built_ins(d):
    status, _, described = d.get("/schemas")
    assert status == 200
    assert set(described) == {"enums", "schemas"}
    by_name = {s["name"]: s for s in described["schemas"]}
    assert by_name["restapi.Config"] == {"name": "restapi.Config", "fields": [
        {"name": "addr", "number": 1, "type": "string"},
        {"name": "port", "number": 2, "type": "int32"}]}
    assert "WebSocket.Config" in by_name
    assert "kraken.Node" not in by_name and "IPv4.IPv4OverEthernet" not in by_name


def test_enumerables_lists_extension_enums_of_the_self_node(d):
    status, _, _ = d.request("PATCH", "/cfg/node/" + SELF_ID, {
        "extensions": [{"@type": "type.googleapis.com/PXE.Client", "state": "WAIT"}]})
    assert status == 200
    enums = d.get("/enumerables")[2]
    pxe = [e for e in enums if e["url"].startswith("type.googleapis.com/PXE.Client/")]
    assert {e["name"] for e in pxe} == {"method", "state"}
    state = [e for e in pxe if e["name"] == "state"][0]
    assert state == {"name": "state", "url": "type.googleapis.com/PXE.Client/state",
                     "options": {"0": "NONE", "1": "WAIT", "2": "INIT"}}
    d.request("PATCH", "/cfg/node/" + SELF_ID, {
        "extensions": [{"@type": "type.googleapis.com/PXE.Client", "state": None}]})


def test_websocket_defaults_to_port_3142_and_writes_its_config(tmp_path):
    """Without -wsport or a config, the stream listens on 3142 (SPEC 9.3) and its defaults
    are written to the self node's Cfg, as the original's."""
    d = Daemon(["-id", SELF_ID, "-state", str(tmp_path / "state.json")], default_wsport=True)
    try:
        status, _, body = d.get("/ws")
        assert status == 200 and body["port"] == "3142"
        svc = [s for s in d.get("/cfg/node/" + SELF_ID)[2]["services"] if s["id"] == "websocket"]
        assert svc[0]["config"] == {"@type": "type.googleapis.com/WebSocket.Config",
                                    "port": 3142, "writeWait": "10s", "pongWait": "1m0s",
                                    "pingPeriod": "54s", "maxMessageSize": "512"}
    finally:
        assert d.stop() == 0


def test_ws_names_the_websocket_and_it_streams_events(d):
    status, hdrs, body = d.get("/ws")
    assert status == 200
    assert hdrs["access-control-allow-origin"] == "*"
    assert body["host"] == d.addr and body["url"] == "/ws"
    assert isinstance(body["port"], str) and int(body["port"]) > 0   # a string, as the original
    try:
        import websocket
    except ImportError:
        pytest.skip("python3-websocket is not installed")
    # What the dashboard does: connect where /ws says, subscribe, watch a change arrive.
    ws = websocket.create_connection("ws://%s:%s%s" % (body["host"], body["port"], body["url"]),
                                     timeout=10)
    try:
        ws.send(json.dumps({"command": "SUBSCRIBE", "type": "STATE_CHANGE"}))
        # The subscription races the first change (two connections): change again until an
        # event for a change is seen, within a deadline.
        import time
        ws.settimeout(0.5)
        deadline = time.monotonic() + 20
        seen = None
        attempt = 0
        while seen is None and time.monotonic() < deadline:
            attempt += 1
            want = "riscv%d" % attempt
            assert d.request("PATCH", "/cfg/node/" + N2, {"arch": want})[0] == 200
            try:
                while True:
                    ev = json.loads(ws.recv())
                    if ev["type"] == 1 and ev["nodeid"] == N2 and ev["value"] == want:
                        seen = ev
                        break
            except websocket.WebSocketTimeoutException:
                pass
        assert seen is not None, "no STATE_CHANGE event within 20s"
        assert seen["url"] == "/Arch" and "data" in seen
    finally:
        ws.close()
        d.request("PATCH", "/cfg/node/" + N2, {"arch": "amd64"})


def test_metrics(d):
    d.get("/cfg/nodes")
    status, hdrs, text = d.get("/metrics")
    assert status == 200
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    for needle in ("# TYPE kraken_nodes gauge", 'kraken_nodes_phys_state{state="POWER_ON"}',
                   'kraken_plans{state="CONVERGED"}', "kraken_plans_in_flight ",
                   "kraken_plan_failures ", "kraken_frozen 0", "kraken_state_saves_total ",
                   'kraken_http_requests_total{method="GET",route="/cfg/nodes",code="200"}',
                   'kraken_http_request_duration_seconds_bucket{route="/cfg/nodes",le="+Inf"}',
                   'kraken_http_request_duration_seconds_count{route="/cfg/nodes"}',
                   "kraken_websocket_clients "):
        assert needle in text, needle
    # Every sample line is "name{labels} value".
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)


def test_unknown_route_and_wrong_method(d):
    status, hdrs, err = d.get("/cfg/nodez")
    assert status == 404 and err == {"error": "no such route: /cfg/nodez"}
    assert hdrs["access-control-allow-origin"] == "*"
    status, hdrs, err = d.request("DELETE", "/cfg/nodes")
    assert status == 405
    assert hdrs["allow"] == "GET, PUT, POST, OPTIONS"
    assert err == {"error": "method DELETE is not allowed on /cfg/nodes "
                            "(allowed: GET, PUT, POST, OPTIONS)"}
    assert d.request("POST", "/graph/json")[0] == 405


def test_head_is_get_without_body(d):
    status, hdrs, body = d.request("HEAD", "/cfg/nodes")
    assert status == 200 and body == ""
    assert hdrs["access-control-allow-origin"] == "*"
    # The GET's header fields (RFC 9110 9.3.2), Content-Length included.
    _, get_hdrs, _ = d.get("/cfg/nodes")
    assert hdrs["content-length"] == get_hdrs["content-length"] != "0"
    assert hdrs["content-type"] == "application/json"
    assert d.request("HEAD", "/cfg/node/" + NEW2)[0] == 404


def test_cors_preflight(d):
    status, hdrs, _ = d.request("OPTIONS", "/cfg/node", headers={
        "Origin": "http://dashboard.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 200
    assert hdrs["access-control-allow-origin"] == "*"
    assert hdrs["content-type"] == "application/json"   # not evhttp's text/html default
    for m in ("PUT", "GET", "POST", "DELETE"):
        assert m in hdrs["access-control-allow-methods"]
    assert hdrs["access-control-allow-headers"] == \
        "X-Requested-With, Content-Type, Authorization"


def test_dashboard_power_off_flow(d):
    """What the original dashboard does: PUT the Dsc node, then the Cfg node, to /x/node."""
    cfg = d.get("/cfg/node/" + N1)[2]
    dsc = d.get("/dsc/node/" + N1)[2]
    cfg["physState"], cfg["runState"] = "POWER_OFF", "UNKNOWN"
    dsc["runState"] = "UNKNOWN"
    status, hdrs, body = d.request("PUT", "/dsc/node", json.dumps(dsc),
                                   headers={"Content-Type": "application/json"})
    assert status == 200 and hdrs["access-control-allow-origin"] == "*"
    status, _, body = d.request("PUT", "/cfg/node", json.dumps(cfg),
                                headers={"Content-Type": "application/json"})
    assert status == 200 and body["physState"] == "POWER_OFF"


def test_krakenctl_style_requests(d):
    """The original krakenctl posts a node list without a Content-Type and checks the answer
    has keys; it reads single nodes by id."""
    c = "bbbbbbbb-0000-4000-8000-000000000001"
    status, _, res = d.request("POST", "/cfg/nodes",
                               '{"nodes": [{"id": "%s", "nodename": "ctl"}]}' % c)
    assert status == 200 and len(res.keys()) > 0 and res["nodes"][0]["id"] == c
    status, _, res = d.request("PUT", "/dsc/nodes",
                               '{"nodes": [{"id": "%s", "physState": "POWER_ON"}]}' % c)
    assert status == 200 and len(res["nodes"]) == 1
    assert d.request("DELETE", "/cfg/node/" + c)[0] == 200


def test_writes_reach_the_state_file_before_the_answer(d):
    c = "cccccccc-0000-4000-8000-000000000001"
    assert d.request("POST", "/cfg/node", node(c, nodename="durable"))[0] == 200
    assert durable_cfg(d.state)[c]["nodename"] == "durable"
    assert d.request("DELETE", "/cfg/node/" + c)[0] == 200
    assert c not in durable_cfg(d.state)
