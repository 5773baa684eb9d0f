"""Bounded requests: slow headers, slow and vanishing bodies against a real ``wasmprof
serve`` (raw sockets on loopback, uvicorn's h11 protocol with our header timer), and the
request guard's minimum body rate and wall budget driven directly as ASGI.

Waits are bounded by socket timeouts far above the configured limits: they catch a server
that never cuts the client off, they do not measure it."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from starlette.concurrency import run_in_threadpool

from server_proc import ServerProcess
from wasmprof.server.guards import Limits, RequestGuard

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("timeouts")
    server = ServerProcess(data, extra_args=[
        "--allow-anonymous", "ingest,read", "--header-timeout", "1", "--body-timeout", "1",
        "--quiet"]).start()
    yield server
    server.stop()


def _connect(srv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        out += chunk
    return out


def _status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"nosniff" in head.lower(), head
    return status, json.loads(body)


def test_slow_headers_get_408_and_the_connection_closed(srv):
    with _connect(srv) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")         # never finished
        status, body = _status_and_body(_read_all(s))
    assert status == 408 and body["error"] == "request headers too slow"


def test_a_trickle_of_header_bytes_does_not_keep_the_connection(srv):
    with _connect(srv) as s:
        t0 = time.monotonic()
        closed = False
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 8:
                break
        raw = b"" if closed else _read_all(s)
    assert closed or raw.startswith(b"HTTP/1.1 408"), raw[:200]


def test_keep_alive_connection_gets_a_header_timeout_for_the_next_request(srv):
    with _connect(srv) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"}" not in first:                                  # the whole JSON answer
            first += s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        s.sendall(b"GET /healthz HTTP/1.1\r\n")                     # the next one stalls
        rest = _read_all(s)
    assert rest.startswith(b"HTTP/1.1 408"), rest[:200]


def test_stalled_body_gets_408_and_nothing_is_stored(srv):
    with srv.client() as c:
        before = c.get("/api/v1/stats").json()["log_ingests"]
    with _connect(srv) as s:
        s.sendall(b"POST /api/v1/logs?plugin=slow HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly ten b")
        status, body = _status_and_body(_read_all(s))
    assert status == 408 and body["error"] == "request body too slow", body
    with srv.client() as c:
        assert c.get("/api/v1/stats").json()["log_ingests"] == before


def test_client_closing_mid_body_logs_no_traceback(srv):
    for route in ("/api/v1/logs", "/api/v1/modules", "/api/v1/symbolize"):
        s = _connect(srv)
        s.sendall(f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 100000\r\n\r\n".encode() + b"{" * 500)
        time.sleep(0.2)
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and srv.log_tail(1 << 20).count(
            "client closed the connection") < 3:
        time.sleep(0.1)
    log = srv.log_tail(1 << 22)
    assert log.count("client closed the connection") >= 3, log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
    with srv.client() as c:
        assert c.get("/healthz").status_code == 200


def test_garbage_request_line_gets_a_json_400(srv):
    with _connect(srv) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, body = _status_and_body(_read_all(s))
    assert status == 400 and body["error"] == "invalid HTTP request"


# -- the guard on its own: minimum body rate and wall budget ------------------------------

def _run(app, limits, messages, *, budget=None, path="/api/v1/logs"):
    sent: list[dict] = []

    async def main():
        queue = list(messages)

        async def receive():
            if not queue:
                await asyncio.sleep(3600)
            delay, msg = queue.pop(0)
            await asyncio.sleep(delay)
            return msg

        async def send(msg):
            sent.append(msg)

        guard = RequestGuard(app, limits=limits, limit_for=lambda p: 1 << 20,
                             budget_for=lambda m, p: budget)
        await guard({"type": "http", "method": "POST", "path": path, "headers": []},
                    receive, send)
    asyncio.run(main())
    return sent


async def _reader_app(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect" or not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_body_below_the_minimum_rate_gets_408():
    chunk = {"type": "http.request", "body": b"x" * 10, "more_body": True}
    limits = Limits(body_idle_timeout=5, body_grace=0.2, body_min_rate=1000)
    sent = _run(_reader_app, limits, [(0.1, chunk)] * 6)
    assert sent[0]["status"] == 408 and len(sent) == 2
    assert json.loads(sent[1]["body"])["error"] == "request body too slow"
    fast = Limits(body_idle_timeout=5, body_grace=0.2, body_min_rate=10)
    done = {"type": "http.request", "body": b"x", "more_body": False}
    assert _run(_reader_app, fast, [(0.1, chunk)] * 3 + [(0, done)])[0]["status"] == 200


def test_heavy_route_over_its_budget_gets_503_and_the_late_answer_is_dropped():
    async def slow_app(scope, receive, send):
        await run_in_threadpool(time.sleep, 1.0)                 # work in a worker thread
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    async def main():
        sent: list[dict] = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        guard = RequestGuard(slow_app, limits=Limits(), limit_for=lambda p: 1 << 20,
                             budget_for=lambda m, p: 0.2)
        await guard({"type": "http", "method": "GET", "path": "/api/v1/profiles",
                     "headers": []}, receive, send)
        answered = list(sent)
        await asyncio.sleep(1.3)                                 # the thread finishes
        return answered, sent

    answered, after = asyncio.run(main())
    assert answered[0]["status"] == 503
    assert dict(answered[0]["headers"])[b"retry-after"] == b"1"
    assert json.loads(answered[1]["body"])["error"] == "over the time budget"
    assert after == answered                                     # "late" never sent
