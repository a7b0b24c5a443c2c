"""
The websocket event stream (daemon/websocket.c) against real websocket clients.

tests/ws_host.c runs an engine with the websocket module on an ephemeral port and is
driven over stdin; clients are Debian's python3-websocket (`import websocket`) and, where
a test needs to misbehave (never read, unmasked frames, broken handshakes), raw sockets.
Ordering without sleeps: the server handles a client's frames in order and sends events
queued before a ping ahead of the pong, so "ping, wait for the pong" is a barrier.
"""
import base64
import json
import os
import socket
import struct
import subprocess
import time

import pytest
import websocket

WS_HOST = os.environ.get("WS_HOST", "build/tests/ws_host")
NODE = "11111111-2222-4333-8444-555555555555"
NODE2 = "11111111-2222-4333-8444-666666666666"
DEADLINE = 10.0


class Host:
    def __init__(self, *args, expect_ready=True):
        self.stderr_path = f"/tmp/ws_host.{os.getpid()}.{id(self)}.log"
        self.proc = subprocess.Popen([WS_HOST, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"),
                                     text=True)
        self.port = None
        if expect_ready:
            line = self.proc.stdout.readline().split()
            assert line and line[0] == "READY", self.log()
            self.port = int(line[1])

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def ok(self, line):
        answer = self.cmd(line)
        assert answer == "OK", f"{line}: {answer}"

    def stats(self):
        words = self.cmd("stats").split()
        assert words[0] == "STATS"
        return {k: int(v) for k, v in (w.split("=") for w in words[1:])}

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def wait_log(self, text, deadline=DEADLINE):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if text in self.log():
                return
            self.stats()  # a round trip lets the host run its loop
        raise AssertionError(f"log line {text!r} not seen:\n{self.log()}")

    def wait_stat(self, name, value, deadline=DEADLINE):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.stats()[name] == value:
                return
        raise AssertionError(f"{name} never became {value}: {self.stats()}")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
            except BrokenPipeError:
                pass
        rc = self.proc.wait(timeout=DEADLINE)
        os.unlink(self.stderr_path)
        return rc


@pytest.fixture
def host():
    h = Host()
    yield h
    assert h.close() == 0


def connect(h, path="/ws"):
    return websocket.create_connection(f"ws://127.0.0.1:{h.port}{path}", timeout=DEADLINE)


def barrier(ws):
    """Ping and wait for the pong; returns the data frames that arrived before it."""
    ws.ping(b"barrier")
    got = []
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"barrier":
            return got
        if opcode == websocket.ABNF.OPCODE_TEXT:
            got.append(json.loads(frame.data))


def subscribe(ws, command, type_):
    ws.send(json.dumps({"command": command, "type": type_}))
    barrier(ws)


def close_frame(ws):
    """Read until the server's close frame; returns (code, reason)."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0]
            return code, frame.data[2:].decode()


# ---- raw clients -------------------------------------------------------------------------------

def raw_request(port, head):
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    s.sendall(head)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, data.split(b"\r\n\r\n", 1)[0].decode(), body


def upgrade_head(path="/ws", method="GET", version="13", key="dGhlIHNhbXBsZSBub25jZQ==",
                 extra=""):
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()


def raw_ws(port, rcvbuf=None):
    """A websocket client on a plain socket: handshake done, nothing read afterwards."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(DEADLINE)
    s.connect(("127.0.0.1", port))
    s.sendall(upgrade_head())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def frame(opcode, payload, masked=True, fin=True):
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | n)
    else:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, n)
    if not masked:
        return header + payload
    mask = b"\x01\x02\x03\x04"
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(s, stop=lambda op, data: op == 8):
    """Parse server frames from a raw socket until stop(opcode, payload) (returned last)."""
    buf = b""
    frames = []
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack("!H", buf[2:4])[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack("!Q", buf[2:10])[0]
                off = 10
            if len(buf) < off + n:
                break
            frames.append((buf[0] & 0x0F, buf[off:off + n]))
            buf = buf[off + n:]
            if stop(*frames[-1]):
                return frames
        chunk = s.recv(1 << 20)
        if not chunk:
            return frames
        buf += chunk


# ---- handshake ---------------------------------------------------------------------------------

def test_handshake_accept_key_is_rfc6455_example(host):
    s = socket.create_connection(("127.0.0.1", host.port), timeout=DEADLINE)
    s.sendall(upgrade_head())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    s.close()
    # RFC 6455 section 1.3: key "dGhlIHNhbXBsZSBub25jZQ==" answers this accept value.
    assert b"HTTP/1.1 101 Switching Protocols\r\n" in head
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head


@pytest.mark.parametrize("head,status,message", [
    (upgrade_head(path="/events"), 404,
     "websocket: no such path /events (the event stream is at /ws)"),
    (upgrade_head(method="POST"), 405, "websocket: method POST not allowed on /ws (use GET)"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426,
     "websocket: /ws needs a websocket upgrade (Upgrade: websocket, Connection: Upgrade)"),
    (upgrade_head(version="8"), 426,
     'websocket: unsupported Sec-WebSocket-Version "8" (13 required)'),
    (upgrade_head(key="short"), 400,
     "websocket: missing or malformed Sec-WebSocket-Key (16 bytes in base64)"),
    (b"HELLO\r\n\r\n", 400, "websocket: malformed HTTP request head"),
    (upgrade_head(extra="X-Big: " + "a" * 9000 + "\r\n"), 431,
     "websocket: request header larger than 8192 bytes"),
])
def test_bad_upgrade_gets_http_error_with_json_reason(host, head, status, message):
    got_status, headers, body = raw_request(host.port, head)
    assert got_status == status
    assert json.loads(body) == {"error": message}
    assert "Access-Control-Allow-Origin: *" in headers
    assert host.stats()["rejected"] >= 1
    # the server keeps serving
    ws = connect(host)
    barrier(ws)
    ws.close()


def test_request_split_over_many_segments_and_frames_right_behind_it(host):
    s = socket.create_connection(("127.0.0.1", host.port), timeout=DEADLINE)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = upgrade_head()
    for i in range(0, len(head), 7):
        s.sendall(head[i:i + 7])
    # a subscribe and a ping in the same segment as nothing else: processed in order
    s.sendall(frame(1, b'{"command": 0, "type": "STATE_CHANGE"}') + frame(9, b"p"))
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1)
    host.ok(f"create {NODE} n1")
    s.sendall(frame(9, b"q"))
    got = read_frames_until_pong(s, b"q")
    assert any(json.loads(p)["data"] == f"(CREATE) {NODE}" for op, p in got if op == 1)
    s.close()


def read_frames_until_pong(s, payload):
    return read_frames(s, stop=lambda op, data: (op, data) == (10, payload))


# ---- subscriptions and event shapes ------------------------------------------------------------

def test_state_change_events_have_the_originals_shape(host):
    ws = connect(host)
    subscribe(ws, 0, "STATE_CHANGE")
    host.ok(f"create {NODE} n1")
    host.ok(f"dsc {NODE} /PhysState POWER_ON")
    host.ok(f"cfg {NODE} /RunState SYNC")
    host.ok(f"dsc {NODE} type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip 10.0.0.7")
    host.ok(f"delete {NODE}")
    events = barrier(ws)
    assert events == [
        {"type": 1, "url": "", "data": f"(CREATE) {NODE}", "nodeid": NODE, "value": ""},
        {"type": 1, "url": "/PhysState", "data": f"(UPDATE) {NODE}:/PhysState = POWER_ON",
         "nodeid": NODE, "value": "POWER_ON"},
        {"type": 1, "url": "/RunState", "data": f"(CFG_UPDATE) {NODE}:/RunState = SYNC",
         "nodeid": NODE, "value": "SYNC"},
        {"type": 1, "url": "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip",
         "data": f"(UPDATE) {NODE}:type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"
                 " = 10.0.0.7",
         "nodeid": NODE, "value": "10.0.0.7"},
        {"type": 1, "url": "", "data": f"(DELETE) {NODE}", "nodeid": NODE, "value": ""},
    ]
    # exact key order of the original's Payload struct
    host.ok(f"create {NODE} n1")
    ws.ping(b"x")
    opcode, raw = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_TEXT
    assert list(json.loads(raw.data).keys()) == ["type", "url", "data", "nodeid", "value"]
    ws.close()


def test_unsubscribe_stops_events_and_strings_work_as_numbers(host):
    ws = connect(host)
    host.ok(f"create {NODE} n1")
    subscribe(ws, "SUBSCRIBE", "STATE_CHANGE")
    host.ok(f"dsc {NODE} /Arch amd64")
    assert [e["url"] for e in barrier(ws)] == ["/Arch"]
    subscribe(ws, "UNSUBSCRIBE", "STATE_CHANGE")
    host.ok(f"dsc {NODE} /Arch arm64")
    assert barrier(ws) == []
    subscribe(ws, 0, "ALL")
    host.ok(f"dsc {NODE} /Arch ppc64le")
    assert [e["value"] for e in barrier(ws)] == ["ppc64le"]
    subscribe(ws, 1, "ALL")
    host.ok(f"dsc {NODE} /Arch amd64")
    assert barrier(ws) == []
    ws.close()


def test_subscribe_only_the_asked_type(host):
    ws = connect(host)
    subscribe(ws, 0, "DISCOVERY")
    host.ok(f"create {NODE} n1")
    host.ok(f"dsc {NODE} /Arch amd64")
    assert barrier(ws) == []
    ws.close()


def test_mutation_and_discovery_events_from_a_plan():
    h = Host("--sim")
    try:
        ws = connect(h)
        subscribe(ws, 0, "STATE_MUTATION")
        subscribe(ws, 0, "DISCOVERY")
        h.ok(f"create {NODE} n1")
        h.ok(f"cfg {NODE} /Platform sim")
        h.ok(f"cfg {NODE} /PhysState POWER_ON")
        seen = []
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            e = json.loads(ws.recv())
            if e["nodeid"] != NODE:
                continue
            seen.append(e)
            if e["type"] == 2 and e["data"].startswith("(DONE)") and e["value"] == "OFFtoON":
                break
        assert {"type": 2, "url": "", "nodeid": NODE, "value": "UKtoOFF",
                "data": f"(MUTATE) {NODE} : power -> UKtoOFF"} in seen
        assert {"type": 5, "url": "/PhysState", "nodeid": NODE, "value": "POWER_ON",
                "data": f"(power) {NODE}:/PhysState == POWER_ON"} in seen
        assert {"type": 2, "url": "", "nodeid": NODE, "value": "OFFtoON",
                "data": f"(DONE) {NODE} : power -> OFFtoON"} == seen[-1]
        assert all(e["type"] in (2, 5) for e in seen)
        ws.close()
    finally:
        assert h.close() == 0


# ---- malformed input ---------------------------------------------------------------------------

@pytest.mark.parametrize("message,code,reason", [
    ("{not json", 1007, "invalid JSON near byte 2"),
    ('{"command": 0, "type": "ALL"', 1007, "invalid JSON near byte 27"),
    ("[1, 2]", 1008, 'expected a JSON object {"command": ..., "type": ...}'),
    ('{"command": 0, "type": "STATE_SYNC"}', 1008,
     'unknown event type "STATE_SYNC" (expected "STATE_CHANGE", "STATE_MUTATION", "DISCOVERY" '
     'or "ALL")'),
    ('{"command": 0}', 1008,
     'missing or non-string "type" (expected "STATE_CHANGE", "STATE_MUTATION", "DISCOVERY" or '
     '"ALL")'),
    ('{"command": 7, "type": "ALL"}', 1008,
     'unknown command 7 (expected 0, 1, "SUBSCRIBE" or "UNSUBSCRIBE")'),
    ('{"command": "LISTEN", "type": "ALL"}', 1008,
     'unknown command "LISTEN" (expected 0, 1, "SUBSCRIBE" or "UNSUBSCRIBE")'),
])
def test_malformed_message_is_closed_with_a_clear_reason(host, message, code, reason):
    ws = connect(host)
    ws.send(message)
    assert close_frame(ws) == (code, reason)
    host.wait_stat("clients", 0)
    assert host.stats()["closed_bad_input"] == 1
    assert f"{code} {reason}" in host.log()


def test_binary_message_is_refused(host):
    ws = connect(host)
    ws.send_binary(b"\x00\x01")
    assert close_frame(ws) == (1003, "binary messages are not supported: send JSON text")


def test_message_over_max_size_is_refused():
    h = Host("--max-message-size", "64")
    try:
        ws = connect(h)
        ws.send(json.dumps({"command": 0, "type": "ALL", "pad": "x" * 100}))
        code, _ = close_frame(ws)
        assert code == 1009  # message too big
        h.wait_stat("clients", 0)
    finally:
        assert h.close() == 0


def test_unmasked_client_frame_is_a_protocol_error(host):
    s = raw_ws(host.port)
    s.sendall(frame(1, b'{"command": 0, "type": "ALL"}', masked=False))
    frames = read_frames(s)
    assert frames[-1][0] == 8
    assert struct.unpack("!H", frames[-1][1][:2])[0] == 1002
    s.close()
    host.wait_stat("clients", 0)


def test_abrupt_disconnect_is_cleaned_up(host):
    s = raw_ws(host.port)
    host.wait_stat("clients", 1)
    s.close()
    host.wait_stat("clients", 0)


# ---- keep-alive and slow clients ---------------------------------------------------------------

def test_server_pings_and_drops_a_silent_client():
    h = Host("--ping-period", "50ms", "--pong-wait", "300ms")
    try:
        ws = connect(h)
        opcode, _ = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PING
        # a raw client that never answers pings (nor sends anything) is dropped
        s = raw_ws(h.port)
        h.wait_log("silent for 300 ms (no pong)")
        s.close()
        ws.close()
    finally:
        assert h.close() == 0


def test_live_client_survives_many_ping_periods():
    h = Host("--ping-period", "50ms", "--pong-wait", "1s")
    try:
        ws = connect(h)
        pings = 0
        while pings < 30:  # 1.5 s: longer than the pong wait, every ping answered
            opcode, f = ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_PING:
                pings += 1
                ws.pong(f.data)
        assert h.stats()["clients"] == 1
        ws.close()
    finally:
        assert h.close() == 0


def test_slow_client_is_dropped_and_others_get_every_event():
    h = Host("--queue-limit", "65536", "--write-wait", "5s")
    try:
        h.ok(f"create {NODE} n1")
        slow = raw_ws(h.port, rcvbuf=4096)
        slow.sendall(frame(1, b'{"command": 0, "type": "STATE_CHANGE"}'))
        fast = connect(h)
        subscribe(fast, 0, "STATE_CHANGE")
        h.wait_stat("clients", 2)
        # let the slow client's subscription land: its own ping comes back after it
        slow.sendall(frame(9, b"s"))
        # Chunks the fast reader drains before the next one; the slow one never reads, so
        # its queue passes the limit once the kernel's socket buffers are full.
        chunk, chunks = 200, 250  # 200 events are ~35 KB
        received = 0

        def burst(k):
            nonlocal received
            h.ok(f"burst {NODE} {chunk} {k * chunk}")
            while received < (k + 1) * chunk:
                e = json.loads(fast.recv())
                assert e["value"] == f"burst{received}", "event lost or out of order"
                received += 1

        for k in range(chunks):
            burst(k)
            if h.stats()["dropped_slow"] == 1:
                break
        assert h.stats()["dropped_slow"] == 1, "the slow client was never dropped"
        h.wait_log("dropping slow client 127.0.0.1:")
        assert "bytes of events queued (limit 65536)" in h.log()
        # the slow client, reading now (within the close grace time), finds the close frame
        # after what was queued
        frames = read_frames(slow)
        assert frames[-1][0] == 8
        assert struct.unpack("!H", frames[-1][1][:2])[0] == 1008
        assert frames[-1][1][2:] == b"slow consumer: more than 65536 bytes of events queued"
        slow.close()
        h.wait_stat("clients", 1)
        burst(k + 1)  # the fast client is still served, nothing lost
        fast.close()
    finally:
        assert h.close() == 0


def test_many_clients_receive_every_event_in_order(host):
    host.ok(f"create {NODE} n1")
    clients = [connect(host) for _ in range(50)]
    for ws in clients:
        subscribe(ws, "SUBSCRIBE", "STATE_CHANGE")
    host.wait_stat("clients", 50)
    host.ok(f"burst {NODE} 300")
    for ws in clients:
        values = [e["value"] for e in barrier(ws)]
        assert values == [f"burst{i}" for i in range(300)]
        ws.close()
    host.wait_stat("clients", 0)


# ---- service life cycle and config -------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_config_change_relistens_and_stop_closes_clients(host):
    ws = connect(host)
    subscribe(ws, 0, "ALL")
    new_port = free_port()
    host.ok(f"wscfg Port {new_port}")
    assert host.cmd(f"wait port {new_port} 5000") == "OK"
    assert host.cmd("port") == f"PORT {new_port}"
    old_port, host.port = host.port, new_port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=DEADLINE)
    ws2 = connect(host)
    barrier(ws2)
    host.ok("wsstate STOP")
    assert close_frame(ws2) == (1001, "websocket service stopped")
    host.wait_stat("clients", 0)
    assert host.cmd("wait port 0 5000") == "OK"
    assert host.cmd("service") == "SERVICE STOP"
    host.ok("wsstate RUN")
    assert host.cmd(f"wait port {new_port} 5000") == "OK"
    assert host.cmd("service") == "SERVICE RUN"
    barrier(connect(host))


def test_invalid_config_is_refused_and_service_keeps_serving(host):
    host.ok("wscfg PingPeriod soon")
    expected = ('SERVICE ERROR WebSocket.Config PingPeriod "soon": not a positive Go duration '
                '(e.g. "10s", "1m30s", "500ms")')
    end = time.monotonic() + DEADLINE
    while host.cmd("service") != expected and time.monotonic() < end:
        pass
    assert host.cmd("service") == expected
    barrier(connect(host))
    host.ok("wscfg PingPeriod 1m0s")
    expected = ("SERVICE ERROR WebSocket.Config pingPeriod (60000 ms) must be shorter than "
                "pongWait (60000 ms)")
    while host.cmd("service") != expected and time.monotonic() < end:
        pass
    assert host.cmd("service") == expected
    host.ok("wscfg PingPeriod 30s")
    while host.cmd("service") != "SERVICE RUN" and time.monotonic() < end:
        pass
    assert host.cmd("service") == "SERVICE RUN"


def test_bad_bind_address_and_busy_port_fail_at_start(host):
    bad = Host("--addr", "999.1.1.1", expect_ready=False)
    assert bad.proc.wait(timeout=DEADLINE) == 1
    assert bad.log().strip().endswith(
        'ws_host: websocket: bind address "999.1.1.1" is not an IPv4 or IPv6 address')
    bad.close()
    busy = Host("--port", str(host.port), expect_ready=False)
    assert busy.proc.wait(timeout=DEADLINE) == 1
    assert (f"ws_host: websocket: cannot listen on 127.0.0.1 port {host.port}: "
            "Address already in use") in busy.log()
    busy.close()


def test_ipv6_loopback():
    h = Host("--addr", "::1")
    try:
        ws = websocket.create_connection(f"ws://[::1]:{h.port}/ws", timeout=DEADLINE)
        barrier(ws)
        ws.close()
    finally:
        assert h.close() == 0


def test_engine_freed_before_the_module_lets_clients_go():
    h = Host("--free-engine-first")
    ws = connect(h)
    subscribe(ws, 0, "ALL")
    h.ok(f"create {NODE} n1")
    barrier(ws)
    assert h.close() == 0  # frees the engine, runs the loop once, then the module
    code, reason = close_frame(ws)
    assert (code, reason) == (1001, "websocket service removed")


def test_half_open_handshakes_do_not_block_others(host):
    # 300 connections that never finish their upgrade request (slowloris)
    idle = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", host.port), timeout=DEADLINE)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        idle.append(s)
    ws = connect(host)
    subscribe(ws, 0, "STATE_CHANGE")
    host.ok(f"create {NODE} n1")
    assert [e["data"] for e in barrier(ws)] == [f"(CREATE) {NODE}"]
    assert host.stats()["clients"] == 1  # the half-open ones are not clients
    for s in idle:
        s.close()
    ws.close()
    host.wait_stat("clients", 0)


def test_unfinished_upgrade_request_times_out():
    h = Host("--ping-period", "50ms", "--pong-wait", "300ms")
    try:
        s = socket.create_connection(("127.0.0.1", h.port), timeout=DEADLINE)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        assert s.recv(100) == b""  # closed by the server, no answer
        h.wait_log("no complete upgrade request within 300 ms")
        s.close()
    finally:
        assert h.close() == 0


def test_bearer_token_on_the_upgrade():
    token = "t0ken-0123456789abcdef"
    h = Host("--token", token)
    try:
        status, headers, body = raw_request(h.port, upgrade_head())
        assert status == 401
        assert json.loads(body) == {"error": "websocket: this event stream needs a bearer token "
                                             "(Authorization: Bearer <token>, or ?token=<token> "
                                             "from a browser)"}
        assert 'WWW-Authenticate: Bearer realm="kraken"' in headers
        status, _, _ = raw_request(h.port, upgrade_head(extra="Authorization: Bearer wrong\r\n"))
        assert status == 401
        ws = websocket.create_connection(f"ws://127.0.0.1:{h.port}/ws", timeout=DEADLINE,
                                         header=[f"Authorization: Bearer {token}"])
        barrier(ws)
        ws.close()
        ws = websocket.create_connection(f"ws://127.0.0.1:{h.port}/ws?x=1&token={token}",
                                         timeout=DEADLINE)
        barrier(ws)
        ws.close()
    finally:
        assert h.close() == 0
