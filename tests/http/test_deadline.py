"""--request-timeout-s: a request's headers and body must arrive within it,
counted from the request's first byte (src/deadline.c).  evhttp's own
timeout (--timeout-s) is an idle timeout that every byte restarts, so
before this a client trickling a byte now and then held its connection,
and its --max-connections slot, for as long as it liked."""
import json
import os
import socket
import threading
import time

from conftest import SLOWDOWN, run_cli

from test_hostile import _server_sockets, db_state


def _read_until_closed(s, limit):
    """Bytes the server sends until it closes (or `limit` seconds pass)."""
    got = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError:         # reset: the server closed with our bytes unread
            return got, True
        if not d:
            return got, True
        got += d
    return got, False


class Trickler(threading.Thread):
    """Starts a request and sends one more byte of its headers every
    `every` seconds, never ending them; records what it got and when the
    server closed the connection (None: it never did)."""

    def __init__(self, port, every=0.25, limit=8.0):
        super().__init__(daemon=True)
        self.port, self.every, self.limit = port, every, limit
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        self.t0 = time.monotonic()
        self.closed_after = None
        self.got = b""

    def run(self):
        s = self.sock
        try:
            while time.monotonic() - self.t0 < self.limit:
                try:
                    s.send(b"X")
                except OSError:
                    self.closed_after = time.monotonic() - self.t0
                    return
                got, closed = _read_until_closed(s, self.every)
                self.got += got
                if closed:
                    self.closed_after = time.monotonic() - self.t0
                    return
        finally:
            s.close()


def _exchange(port, chunks, pause):
    """Sends the chunks `pause` seconds apart on one connection; returns
    the socket and everything read once the last answer is complete."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    for i, c in enumerate(chunks):
        if i:
            time.sleep(pause)
        s.sendall(c)
    return s


def _read_answers(s, n, limit=5.0):
    """n HTTP answers (bodies by Content-Length) -> [(status, headers, body)]."""
    buf, out = b"", []
    end = time.monotonic() + limit
    while len(out) < n and time.monotonic() < end:
        while b"\r\n\r\n" in buf and len(out) < n:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            hdrs = dict(l.split(": ", 1) for l in lines[1:])
            length = int(hdrs.get("Content-Length", "0"))
            if len(rest) < length:
                break
            out.append((int(lines[0].split()[1]), hdrs, rest[:length]))
            buf = rest[length:]
        if len(out) == n:
            break
        s.settimeout(max(0.05, end - time.monotonic()))
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return out


def test_trickled_request_is_answered_408_and_closed(gateway_factory):
    gate = gateway_factory(extra_args=["--request-timeout-s", "1", "--timeout-s", "30"])
    t = Trickler(gate.port, limit=6.0 * SLOWDOWN)
    t.start()
    t.join(10 * SLOWDOWN)
    assert t.closed_after is not None, "a trickling client kept its connection for %.0f s" % t.limit
    assert 0.9 <= t.closed_after <= 2.5 * SLOWDOWN, t.closed_after
    head, body = t.got.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    hdrs = dict(l.split(": ", 1) for l in lines[1:])
    assert lines[0] == "HTTP/1.1 408 Request Timeout"
    assert hdrs["Connection"] == "close"
    assert hdrs["Content-Type"] == "application/json;charset=UTF-8"
    assert int(hdrs["Content-Length"]) == len(body)
    js = json.loads(body)
    assert js["error_code"] == "TGW.0002"
    assert "--request-timeout-s" in js["error_msg"] and "1 s" in js["error_msg"]
    assert js["request_id"] == hdrs["X-Request-Id"]
    # logged and counted like any answer
    entries = gate.access_log(js["request_id"])
    assert len(entries) == 1 and entries[0]["status"] == 408 and entries[0]["method"] == "-", entries
    assert entries[0]["latency_us"] >= 900000
    st, _, _, raw = gate.request("GET", "/metrics", token=gate.token)
    assert st == 200
    assert 'tagway_requests_total{route="-",status="408"} 1' in raw.decode(), raw.decode()[-800:]


def test_tricklers_no_longer_hold_the_connection_slots(gateway_factory):
    """The audit's case: more trickling clients than --max-connections kept
    every new client out for as long as they trickled."""
    gate = gateway_factory(extra_args=["--max-connections", "6", "--request-timeout-s", "1",
                                       "--timeout-s", "30", "--workers", "1"])
    limit = 9.0 * SLOWDOWN
    tricklers = [Trickler(gate.port, limit=limit) for _ in range(10)]
    for t in tricklers:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    st, _, js, _ = gate.request("GET", "/healthz", token=None, timeout=limit)
    waited = time.monotonic() - t0
    assert st == 200 and js == {"status": "ok"}
    assert waited < 4.0 * SLOWDOWN, "healthz waited %.1f s behind trickling clients" % waited
    for t in tricklers:
        t.join(limit + 2)
        assert t.closed_after is not None and t.closed_after < limit, t.closed_after


def test_deadline_is_per_request_and_not_between_requests(gateway_factory):
    """A slow request that ends in time is served, and the next request on
    the connection gets its own time: two requests of 0.75 s each, then an
    idle wait longer than the deadline, then a third, all on one connection
    and all answered."""
    gate = gateway_factory(extra_args=["--request-timeout-s", "1", "--timeout-s", "30"])
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    parts = [req[:10], req[10:20], req[20:30], req[30:]]
    s = _exchange(gate.port, parts, 0.25)
    assert [a[0] for a in _read_answers(s, 1)] == [200]
    for i, p in enumerate(parts):
        if i:
            time.sleep(0.25)
        s.sendall(p)
    assert [a[0] for a in _read_answers(s, 1)] == [200]
    time.sleep(1.6)                     # idle: the idle timeout's business
    s.sendall(req)
    assert [a[0] for a in _read_answers(s, 1)] == [200]
    # a body that arrives in time counts the same
    body = b'{"name": "slow-body"}'
    post = (b"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + gate.token.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    s.sendall(post)
    for i in range(0, len(body), 7):
        time.sleep(0.15)
        s.sendall(body[i:i + 7])
    (status, _, raw), = _read_answers(s, 1)
    assert status == 201, raw
    s.close()
    # and pipelined requests are each answered
    s = _exchange(gate.port, [req * 3], 0)
    assert [a[0] for a in _read_answers(s, 3)] == [200, 200, 200]
    s.close()


def test_a_body_trickled_past_the_deadline_is_cut_and_not_stored(gateway_factory):
    gate = gateway_factory(extra_args=["--request-timeout-s", "1", "--timeout-s", "30"])
    body = b'{"name": "never-stored"}'
    post = (b"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + gate.token.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    before = db_state(gate)
    s = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
    s.sendall(post)
    got, closed = b"", False
    for i in range(len(body)):
        try:
            s.sendall(body[i:i + 1])
        except OSError:
            closed = True
            break
        more, closed = _read_until_closed(s, 0.2)
        got += more
        if closed:
            break
    s.close()
    assert closed and got.startswith(b"HTTP/1.1 408 "), got[:80]
    assert db_state(gate) == before


def test_zero_turns_the_deadline_off(gateway_factory):
    gate = gateway_factory(extra_args=["--request-timeout-s", "0", "--timeout-s", "30"])
    t = Trickler(gate.port, limit=2.5)
    t.start()
    t.join(6)
    assert t.closed_after is None and t.got == b"", (t.closed_after, t.got[:80])


def test_trackers_let_go_of_every_connection(gateway_factory):
    """Each connection's tracker holds a reference on its bufferevent (so
    its socket stays open) until evhttp closes the connection: every kind
    of ending must let go, or sockets pile up until the next sweep."""
    gate = gateway_factory(extra_args=["--request-timeout-s", "60", "--timeout-s", "1"])
    base = _server_sockets(gate)
    port = gate.port

    def raw(data, wait=3.0):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if data:
            s.sendall(data)
        got, _ = _read_until_closed(s, wait)
        s.close()
        return got

    assert raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert raw(b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"POST /v2/images HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n").startswith(b"HTTP/1.1 413")
    assert raw(b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]  # the idle timeout ends these
    for _ in range(20):
        socket.create_connection(("127.0.0.1", port)).close()
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /heal")
        time.sleep(0.01)
        s.close()
    keep = socket.create_connection(("127.0.0.1", port))
    for _ in range(50):
        keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [a[0] for a in _read_answers(keep, 1)] == [200]
    keep.close()
    for s in idle:
        got, closed = _read_until_closed(s, 3.0 * SLOWDOWN)
        assert closed and got == b""
        s.close()
    end = time.monotonic() + 2.0 * SLOWDOWN
    while _server_sockets(gate) > base and time.monotonic() < end:
        time.sleep(0.05)
    assert _server_sockets(gate) == base, "sockets left open: %d" % (_server_sockets(gate) - base)


def test_bad_values_are_usage(tmp_path):
    from conftest import SRC_LUA, SRC_POLICIES
    for v in ("-1", "abc", "3601", ""):
        p = run_cli("serve", "--db", str(tmp_path / "x.db"), "--request-timeout-s", v, timeout=5)
        assert p.returncode == 2, (v, p.returncode, p.stderr)
        assert "invalid value for request-timeout-s: '%s'" % v in p.stderr, p.stderr
    for v in ("0", "1", "3600"):            # the option exists: its range is taken
        p = run_cli("check", "--scripts", SRC_LUA, "--policies", SRC_POLICIES,
                    "--request-timeout-s", v, timeout=10)
        assert p.returncode == 0, (v, p.stderr)


def _noread_pipeline(port, seconds):
    """Pipelines GETs for `seconds` without reading an answer; -> (socket,
    bytes the kernel took)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            sent += s.send(req)
        except BlockingIOError:
            time.sleep(0.01)
    return s, sent


def test_a_client_that_stops_reading_neither_crashes_nor_floods_the_gateway(gateway_factory):
    """helper-39's review: evhttp writes an answer with no read callback, which
    the tracker took for "evhttp has freed it" and let go of a live
    connection; that connection's close then released the freed tracker
    again (an assertion abort in libevent, or a use-after-free) when the
    client went, or at SIGTERM.  And evhttp read on while writing: a
    client pipelining without reading pushed 414 MB into the gateway in a
    second; now it reads 64 KiB ahead and the kernel pushes back."""
    gate = gateway_factory(extra_args=["--request-timeout-s", "1", "--timeout-s", "30",
                                       "--workers", "1"])
    base = _server_sockets(gate)
    s, sent = _noread_pipeline(gate.port, 1.0)
    assert sent < 32 << 20, "the gateway took %d bytes from a client that reads nothing" % sent
    time.sleep(2.5)                     # past the deadline timer and a sweep
    # evhttp is writing answers the client does not take: bytes it read
    # meanwhile start no request's clock (the idle timeout covers a reader)
    assert _server_sockets(gate) == base + 1
    held = socket.socket()              # and one held at SIGTERM
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.connect(("127.0.0.1", gate.port))
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()                           # a reset, answers unread
    time.sleep(0.3)
    assert gate.running()
    st, _, js, _ = gate.request("GET", "/healthz", token=None, timeout=5)
    assert st == 200 and js == {"status": "ok"}
    time.sleep(1.5)                     # another sweep with `held` mid-answer
    assert _server_sockets(gate) == base + 1
    gate.stop()                         # exit status 0 asserted there
    held.close()


def test_a_large_body_pipelined_behind_an_answer_is_read_whole(gateway_factory):
    """While an answer is written the gateway reads at most 64 KiB ahead;
    once it is written reading is unbounded again, as evhttp keeps a body
    in the connection's buffer until all of it has come (bounding the
    whole connection stalled every body over the bound)."""
    gate = gateway_factory(extra_args=["--workers", "1"])
    body = json.dumps({"name": "big-behind", "junk": "a" * 900000}).encode()
    post = (b"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + gate.token.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    s = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 50 + post + body)
    answers = _read_answers(s, 51, limit=10.0)
    s.close()
    assert [a[0] for a in answers] == [200] * 50 + [201], [a[0] for a in answers]
    assert json.loads(answers[-1][2])["name"] == "big-behind"


def test_bytes_that_come_after_the_408_run_nothing(gateway_factory):
    """helper-40's review: the deadline shut the socket, but a shut socket
    still yields what the kernel holds, and evhttp completed the request
    from those bytes after its 408 and ran it (images stored behind a 408).
    Here the gateway is stopped while the rest of a 60 KB body arrives, so
    on waking it reads one 16 KiB chunk, the deadline passes in the same
    loop pass, and the rest waits in the kernel.  The body is spaces first
    and the client sends spaces after it, so what the old code dropped
    from its buffer at the 408 still left a whole JSON body to run."""
    import signal
    gate = gateway_factory(extra_args=["--request-timeout-s", "1", "--timeout-s", "30",
                                       "--workers", "1"])
    body = b" " * 60000 + b'{"name": "late-big"}'
    head = (b"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + gate.token.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    s = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
    s.sendall(head + body[:2])
    time.sleep(0.7)
    os.kill(gate.proc.pid, signal.SIGSTOP)
    try:
        s.sendall(body[2:] + b" " * 40000)
        time.sleep(0.6)
    finally:
        os.kill(gate.proc.pid, signal.SIGCONT)
    got, closed = _read_until_closed(s, 3.0)
    s.close()
    assert closed
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:200]
    st, _, js, _ = gate.request("POST", "/v2/%s/images/resource_instances/action" % gate.project,
                                {"action": "count", "matches": [{"key": "resource_name",
                                                                 "value": "late-big"}]})
    assert st == 200 and js["total_count"] == 0, (js, got[:200])
