"""A real HTTP webhook receiver on loopback for the alert tests.

``Receiver`` runs a threaded ``http.server`` on 127.0.0.1 and records every request
(headers, raw body, arrival time). Its answers are scripted: ``script`` is a list of
:class:`Reply` consumed one per request; when empty, ``default`` answers (200). A reply can
delay its answer (a slow receiver) or carry headers (``Retry-After``). ``stop()`` closes
the port (a receiver that is down); ``start()`` again binds the same port.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.script: list[Reply] = []
        self.default = Reply()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                if reply.delay:
                    time.sleep(reply.delay)
                with receiver._cond:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()),
                                                      body, time.time(), reply.status))
                    receiver._cond.notify_all()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass        # the client gave up (timeout)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answered(self, status: int = 200) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.answered == status]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(requests)`` is true; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
