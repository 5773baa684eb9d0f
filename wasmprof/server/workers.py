"""``wasmprof serve --workers N``: N server processes sharing one listening socket.

The parent binds ``host:port`` once (so port conflicts fail before anything forks), runs the
database migrations once (and loads the ``--demo`` samples), then forks N workers. Each worker
builds its own :class:`~wasmprof.server.service.Service` (own database connections, own
caches, own claim owner ids, which carry its pid) and runs uvicorn on its own
``SO_REUSEPORT`` socket (Linux: the kernel spreads new connections evenly over the workers by
address hash; one shared accept queue let the first worker take most keep-alive connections
in the benchmark) or, where that option is missing, on the parent's inherited socket.

Background threads per process (all of them coordinate through database claims or leases, so
several processes are as safe as several replicas):

- every worker: the module indexer (it takes the uploads this process received; the
  ``index_state`` claim keeps two processes off one module) and the source puller (debug
  look-ups of the modules this process indexed; due pulls are claimed in ``source_pulls``);
- worker 0 only (``ServerConfig.maintenance``): the periodic store-wide scanners — profile
  maintenance (downsampler, raw-input retention, backfill, profile rebuilds), webhook delivery
  and the Envoy health monitor. They are replica-safe, so running them in every process would
  not be wrong, only wasted CPU and write contention on one host.

The parent supervises: a worker that dies is started again (same index, so worker 0's
duties come back); SIGTERM/SIGINT stop every worker gracefully (SIGKILL after
:data:`STOP_GRACE` seconds). Responses carry ``X-Wasmprof-Worker: <index>/<pid>`` and log
lines a ``worker`` field, so one can tell which process served what.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import time
from typing import Any, Callable

from wasmprof.config import ServerConfig
from wasmprof.errors import UsageError

log = logging.getLogger("wasmprof.serve")

STOP_GRACE = 30.0          # seconds a worker gets to finish after SIGTERM
CRASH_WINDOW = 10.0        # a worker dying this soon after its start counts as a crash loop
MAX_QUICK_CRASHES = 5
HEADER = b"x-wasmprof-worker"
MAX_WORKERS = 64


def worker_count(value: str) -> int:
    """argparse type of ``--workers``: 1..64."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a number of processes 1..{MAX_WORKERS}, "
                                         f"found {value[:20]!r}")
    return n


REUSEPORT = hasattr(socket, "SO_REUSEPORT")


def listen_socket(host: str, port: int, *, listen: bool = True, reuse_port: bool = False,
                  backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``host:port`` (inheritable; listening unless ``listen=False``).
    ``reuse_port``: with ``SO_REUSEPORT``, so each worker can have its own socket on the port
    and the kernel spreads new connections evenly over them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _type, _proto, _canon, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}", source="--port",
                         found=str(port)) from None
    if listen:
        sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class WorkerHeader:
    """Pure ASGI wrapper: adds ``X-Wasmprof-Worker: <index>/<pid>`` to every HTTP response."""

    def __init__(self, app: Any, value: str) -> None:
        self.app = app
        self.value = value.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_with)


class WorkerField(logging.Filter):
    """Stamps ``worker`` (``<index>/<pid>``) on every log record of this process."""

    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.value
        return True


def worker_config(config: ServerConfig, index: int) -> ServerConfig:
    """The config of worker ``index``: only worker 0 runs the periodic store-wide threads."""
    return dataclasses.replace(config, maintenance=config.maintenance and index == 0)


def run_workers(config: ServerConfig, n: int, run_one: Callable[[ServerConfig, list, str], int],
                prepare: Callable[[ServerConfig], None]) -> int:
    """Bind, ``prepare(config)`` once (migrations, demo data), fork ``n`` workers each calling
    ``run_one(worker config, [socket], "<index>/<pid>")``, supervise them; the exit code."""
    # Linux: the parent holds the port bound but not listening (a clear error now if it is
    # taken; no connection is ever queued on it) and every worker listens on a socket of its
    # own with SO_REUSEPORT. Elsewhere: one listening socket shared by the workers.
    sock = listen_socket(config.host, config.port, listen=not REUSEPORT, reuse_port=REUSEPORT)
    prepare(config)

    def body(i: int) -> int:
        own = (listen_socket(config.host, config.port, reuse_port=True) if REUSEPORT
               else sock)
        return _child(run_one, worker_config(config, i), own, i)

    sup = _Supervisor(n, body)
    log.info("wasmprof workers", extra={"workers": n, "host": config.host, "port": config.port})
    try:
        return sup.run()
    finally:
        sock.close()


def _child(run_one: Callable[[ServerConfig, list, str], int], config: ServerConfig,
           sock: socket.socket, index: int) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.environ["WASMPROF_WORKER"] = str(index)
    return run_one(config, [sock], f"{index}/{os.getpid()}")


class _Supervisor:
    def __init__(self, n: int, body: Callable[[int], int]) -> None:
        self.n, self.body = n, body
        self.children: dict[int, tuple[int, float]] = {}     # pid -> (index, started)
        self.stopping: float | None = None
        self.quick_crashes = 0
        self.code = 0

    def spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:                                  # the worker
            code = 1
            try:
                code = self.body(index)
            except BaseException:  # noqa: BLE001 - a worker must never return into the loop
                logging.getLogger("wasmprof.serve").exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())

    def stop(self, signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        if self.stopping is None:
            self.stopping = time.monotonic()
            log.info("stopping workers", extra={"signal": signum})
            for pid in list(self.children):
                _kill(pid, signal.SIGTERM)

    def run(self) -> int:
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.n):
                self.spawn(i)
            while self.children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    if self.stopping is not None and time.monotonic() - self.stopping > STOP_GRACE:
                        for p in list(self.children):
                            _kill(p, signal.SIGKILL)
                    time.sleep(0.2)
                    continue
                self.reaped(pid, os.waitstatus_to_exitcode(status))
            return self.code
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def reaped(self, pid: int, code: int) -> None:
        entry = self.children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        if self.stopping is not None:
            return
        quick = time.monotonic() - started < CRASH_WINDOW
        self.quick_crashes = self.quick_crashes + 1 if quick else 0
        if self.quick_crashes >= MAX_QUICK_CRASHES:
            log.error("workers keep failing at start; giving up", extra={"exit": code})
            self.code = 1
            self.stop()
            return
        log.warning("worker exited; starting it again",
                    extra={"worker": index, "pid": pid, "exit": code})
        time.sleep(1.0 if quick else 0.0)
        self.spawn(index)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
