"""Authentication (bearer tokens with scopes), per-token rate limits, request size caps.

- ``Authorization: Bearer wpt_…`` (or ``X-Wasmprof-Token``) → :class:`TokenInfo` checked for
  the route's scope; without a token, only the configured anonymous scopes apply (all of
  them in ``--demo``, none by default). 401 without usable credentials, 403 when the
  scope is missing.
- Rate limit: a token bucket per token (per client address for anonymous callers) with
  ``rate_limit`` requests/s and ``rate_burst`` capacity, per replica; over the limit → 429
  with ``Retry-After``.
- Revocation: tokens are looked up in the database on every request (one indexed query),
  so ``wasmprof token revoke`` takes effect on the next request on every replica.
- ``/metrics``: open, unless a metrics token is configured (``--metrics-token``); then it
  needs ``Authorization: Bearer <that token>`` or an API token with the ``admin`` scope.
- Size caps and timeouts: :mod:`wasmprof.server.guards`.
"""

from __future__ import annotations

import hmac
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
    """Token lookups, cached for ``ttl`` seconds when ``ttl > 0``. The server uses
    ``ttl=0`` (every request asks the database), so a revoked token fails on its next
    request on every replica; a positive ``ttl`` bounds revocation delay by ``ttl``."""

    def __init__(self, db: Database, ttl: float = 0.0) -> None:
        self.db = db
        self.ttl = ttl
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._lock = threading.Lock()

    def get(self, plain: str) -> TokenInfo | None:
        if self.ttl <= 0:
            return authenticate(self.db, plain)
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
                                             "(create one with `wasmprof token create "
                                             f"NAME --scopes {scope}`)",
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


def metrics_guard(config: ServerConfig, tokens: TokenCache) -> Callable[[Request], None]:
    """Dependency of ``/metrics``: nothing when no metrics token is configured; else the
    request needs ``Bearer <metrics token>`` (compared in constant time) or an ``admin``
    API token, or it gets 401."""
    secret = config.metrics_token

    def dep(request: Request) -> None:
        if not secret:
            return
        plain = bearer(request)
        if plain and hmac.compare_digest(plain.encode(), secret.encode()):
            return
        info = tokens.get(plain) if plain else None
        if info is not None and info.allows("admin"):
            return
        raise HTTPException(401, "/metrics needs the metrics token (wasmprof serve "
                                 "--metrics-token) or an admin token: Authorization: Bearer "
                                 "<token>", headers={"WWW-Authenticate": "Bearer"})
    return dep
