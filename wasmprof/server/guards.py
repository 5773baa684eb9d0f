"""Bounded requests: what a slow, huge or vanishing client can cost the service.

- **Headers** (:class:`GuardedH11Protocol`, uvicorn's h11 protocol with one timer): the
  request line and headers must arrive within ``header_timeout`` seconds of the connection
  opening (or of the previous response, on a kept-alive connection); else the server writes
  a 408 and closes. uvicorn's own keep-alive timer is reset by every byte, so it alone lets a
  client that sends one header byte every few seconds hold a connection forever.
- **Body** (:class:`RequestGuard`, pure ASGI, outermost): the body is counted against the
  route's size cap (413 at once for a ``Content-Length`` over it, or as soon as a streamed
  body passes it), must not pause for more than ``body_idle_timeout`` seconds between chunks
  and, after ``body_grace`` seconds, must average at least ``body_min_rate`` bytes/s (else
  408). The guard answers itself and then tells the route the client disconnected, so no
  route code (nor FastAPI's body parsing, which turns exceptions into 400) can hide it.
- **Wall budget** (``budget_for(method, path)``): heavy read routes (profile exports and
  diffs, stateless symbolization) answer 503 with ``Retry-After`` when the budget is spent;
  the work already running in a worker thread finishes and its answer is dropped (these
  routes write nothing). Writes are never cut short (their input is bounded by the caps).
- **Vanishing clients**: a client that closes the connection during its body is logged as
  one ``client closed the connection`` line, never as a traceback.
- **Headers on every response**: ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
import orjson
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("wasmprof.server.guards")

SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)


@dataclass(frozen=True, slots=True)
class Limits:
    """Time bounds of one request (seconds; bytes/s for the rate)."""

    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    body_grace: float = 10.0
    body_min_rate: float = 8 * 1024.0
    request_budget: float = 120.0


def _json_response(status: int, reason: bytes, body: dict[str, Any]) -> bytes:
    data = orjson.dumps(body)
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"x-content-type-options: nosniff\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % (status, reason, len(data))) + data


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header read timeout (``header_timeout`` class
    attribute; :func:`protocol_with` makes a subclass with another value)."""

    header_timeout: float = Limits.header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        if self.header_timeout > 0:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:      # request line + headers are in
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()                   # the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, as the documented JSON error."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.close()
            return
        self.transport.write(_json_response(400, b"Bad Request", {
            "error": "invalid HTTP request",
            "detail": f"{msg} (request line and headers must be valid HTTP/1.1, at most "
                      "16 KiB)"}))
        self.transport.close()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:       # part of a request line/headers: say why
            log.info("request headers too slow; connection closed",
                     extra={"client": self.client[0] if self.client else None,
                            "timeout_s": self.header_timeout})
            self.transport.write(_json_response(408, b"Request Timeout", {
                "error": "request headers too slow",
                "detail": f"the request line and headers must arrive within "
                          f"{self.header_timeout:g} s"}))
        self.transport.close()


def protocol_with(header_timeout: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with this header timeout (for uvicorn's
    ``http=`` setting, which takes a class)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})


class _Answered(Exception):
    pass


class RequestGuard:
    """Pure ASGI middleware; see the module docstring. ``limit_for(path)`` gives the body
    cap in bytes, ``budget_for(method, path)`` the wall budget in seconds (or None)."""

    def __init__(self, app: Any, *, limits: Limits, limit_for: Callable[[str], int],
                 budget_for: Callable[[str, str], float | None]) -> None:
        self.app = app
        self.limits = limits
        self.limit_for = limit_for
        self.budget_for = budget_for

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        cap = self.limit_for(path)
        lim = self.limits
        state = {"started": False, "answered": False, "disconnected": False}

        async def guarded_send(msg: dict) -> None:
            if state["answered"]:
                return                              # we already answered for the route
            if msg["type"] == "http.response.start":
                state["started"] = True
                headers = list(msg.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in have]
                msg = {**msg, "headers": headers}
            await send(msg)

        async def answer(status: int, body: dict[str, Any], headers: list = ()) -> None:
            if state["started"] or state["answered"]:
                return
            state["answered"] = True
            data = orjson.dumps(body)
            try:
                await send({"type": "http.response.start", "status": status, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()), (b"connection", b"close"),
                    *SECURITY_HEADERS, *headers]})
                await send({"type": "http.response.body", "body": data})
            except Exception:  # noqa: BLE001 - the client is gone: nothing more to say
                pass

        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    continue
                if declared > cap:
                    await answer(413, _too_large(cap))
                    return

        t0 = time.monotonic()
        seen = 0
        body_done = False

        async def guarded_receive() -> dict:
            nonlocal seen, body_done
            if state["answered"]:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()              # waits for a disconnect
            timeout = lim.body_idle_timeout if lim.body_idle_timeout > 0 else None
            try:
                msg = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                log.info("request body stalled; answered 408",
                         extra={"path": path, "received_bytes": seen,
                                "timeout_s": lim.body_idle_timeout})
                await answer(408, {"error": "request body too slow",
                                   "detail": f"no body bytes for {lim.body_idle_timeout:g} s "
                                             f"(after {seen} bytes)"})
                return {"type": "http.disconnect"}
            if msg["type"] == "http.disconnect":
                state["disconnected"] = True
                return msg
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if not msg.get("more_body", False):
                    body_done = True
                if seen > cap:
                    await answer(413, _too_large(cap))
                    return {"type": "http.disconnect"}
                elapsed = time.monotonic() - t0
                if (not body_done and lim.body_min_rate > 0 and elapsed > lim.body_grace
                        and seen / elapsed < lim.body_min_rate):
                    log.info("request body too slow; answered 408",
                             extra={"path": path, "received_bytes": seen,
                                    "seconds": round(elapsed, 1)})
                    await answer(408, {"error": "request body too slow",
                                       "detail": f"{seen} bytes in {elapsed:.0f} s; at least "
                                                 f"{lim.body_min_rate:g} bytes/s are needed"})
                    return {"type": "http.disconnect"}
            return msg

        budget = self.budget_for(scope.get("method", ""), path)
        try:
            if budget is None:
                await self.app(scope, guarded_receive, guarded_send)
            else:
                await self._with_budget(scope, guarded_receive, guarded_send, answer, budget)
        except Exception as e:  # noqa: BLE001 - filtered: only a vanished client is quiet
            if not (state["answered"] or state["disconnected"]) or not _is_disconnect(e):
                raise
        if state["disconnected"] and not body_done:
            log.info("client closed the connection during the request",
                     extra={"path": path, "received_bytes": seen})

    async def _with_budget(self, scope: dict, receive: Callable, send: Callable,
                           answer: Callable, budget: float) -> None:
        task = asyncio.ensure_future(self.app(scope, receive, send))
        done, _ = await asyncio.wait({task}, timeout=budget)
        if task in done:
            task.result()
            return
        log.warning("request over its time budget; answered 503",
                    extra={"path": scope.get("path"), "budget_s": budget})
        await answer(503, {"error": "over the time budget",
                           "detail": f"this request did not finish within {budget:g} s; "
                                     "narrow it (fewer profiles, a shorter time range, fewer "
                                     "addresses) or try again later"},
                     [(b"retry-after", str(max(1, math.ceil(budget))).encode())])
        # the route keeps running in its worker thread; its answer is dropped by send
        task.add_done_callback(_log_late_failure)


def _log_late_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("request finished after its budget with an error: %s", task.exception())


def _too_large(cap: int) -> dict[str, Any]:
    return {"error": "request body too large", "limit": cap,
            "detail": f"request body exceeds the {cap}-byte cap of this endpoint"}


def _is_disconnect(e: BaseException) -> bool:
    """True for starlette's ClientDisconnect, FastAPI's 400 'error parsing the body' that
    wraps it, and exception groups made only of those."""
    if isinstance(e, ClientDisconnect):
        return True
    if isinstance(e, BaseExceptionGroup):
        return all(_is_disconnect(x) for x in e.exceptions)
    cause = e.__cause__ or e.__context__
    return cause is not None and _is_disconnect(cause)
