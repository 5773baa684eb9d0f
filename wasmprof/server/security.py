"""Authentication (bearer tokens with scopes), per-token rate limits, request size caps.

- ``Authorization: Bearer wpt_…`` (or ``X-Wasmprof-Token``) → :class:`TokenInfo` checked for
  the route's scope; without a token, only the configured anonymous scopes apply (all of
  them in ``--demo``, none by default). 401 without usable credentials, 403 when the
  scope is missing.
- Rate limit: a token bucket per token (per client address for anonymous callers) with
  ``rate_limit`` requests/s and ``rate_burst`` capacity, per replica; over the limit → 429
  with ``Retry-After``.
- Size caps: :class:`BodyLimitMiddleware` answers 413 as soon as ``Content-Length`` or the
  streamed body exceeds the cap of the route (modules, logs, samples, profiles, others).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from wasmprof.config import ServerConfig
from wasmprof.store.db import Database
from wasmprof.store.tokens import TokenInfo, authenticate

ANONYMOUS_ID = 0


@dataclass(frozen=True, slots=True)
class Principal:
    token: TokenInfo | None
    scopes: frozenset[str]
    key: str                     # rate-limit bucket key

    @property
    def name(self) -> str:
        return self.token.name if self.token else "anonymous"

    @property
    def token_id(self) -> int | None:
        return self.token.id if self.token else None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class TokenCache:
    """Token lookups cached for ``ttl`` seconds (revocation takes effect within ``ttl``)."""

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._lock = threading.Lock()

    def get(self, plain: str) -> TokenInfo | None:
        t = time.monotonic()
        with self._lock:
            hit = self._cache.get(plain)
        if hit is not None and t - hit[0] < self.ttl:
            return hit[1]
        info = authenticate(self.db, plain)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[plain] = (t, info)
        return info


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float | None:
        """None when allowed, else seconds to wait."""
        if self.rate <= 0:
            return None
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, t)
                return None
            self._buckets[key] = (tokens, t)
            return (1 - tokens) / self.rate


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if h and h[:7].lower() == "bearer ":
        return h[7:].strip()
    return request.headers.get("x-wasmprof-token")


def make_require(config: ServerConfig, tokens: TokenCache, limiter: RateLimiter,
                 on_limited: Callable[[], None]) -> Callable[[str], Any]:
    """``Depends(require("ingest"))`` → Principal, or HTTP 401/403/429."""

    def require(scope: str) -> Callable[[Request], Principal]:
        def dep(request: Request) -> Principal:
            plain = bearer(request)
            if plain:
                info = tokens.get(plain)
                if info is None:
                    raise HTTPException(401, "invalid or revoked token",
                                        headers={"WWW-Authenticate": "Bearer"})
                p = Principal(info, info.scopes, f"t{info.id}")
            else:
                host = request.client.host if request.client else "?"
                p = Principal(None, config.anonymous_scopes, f"a{host}")
                if not p.allows(scope):
                    raise HTTPException(401, f"this request needs a token with the {scope!r} "
                                             "scope: Authorization: Bearer <token> "
                                             "(create one with `wasmprof token create`)",
                                        headers={"WWW-Authenticate": "Bearer"})
            if not p.allows(scope):
                raise HTTPException(403, f"token lacks the {scope!r} scope")
            wait = limiter.check(p.key)
            if wait is not None:
                on_limited()
                raise HTTPException(429, "rate limit exceeded",
                                    headers={"Retry-After": str(max(1, math.ceil(wait)))})
            request.state.principal = p
            return p
        return dep

    return require


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """Pure ASGI middleware: counts request body bytes against the route's cap."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > limit:
                        await _send_413(send, limit)
                        return
                except ValueError:
                    pass
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return msg

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await _send_413(send, limit)
        except BaseExceptionGroup as eg:           # raised inside a task group
            if eg.subgroup(BodyTooLarge) is None:
                raise
            await _send_413(send, limit)


async def _send_413(send: Callable, limit: int) -> None:
    import orjson
    body = orjson.dumps({"error": "request body too large", "limit": limit,
                         "detail": f"request body exceeds the {limit}-byte cap of this endpoint"})
    try:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # noqa: BLE001 - response already started: nothing more to say
        pass
