"""HMAC-SHA256 signatures on webhook deliveries.

Contract (documented for receivers in ``docs/webhooks.md``):

- ``X-Wasmprof-Timestamp``: unix seconds at the time of *this attempt* (a retry gets a
  fresh timestamp, so receivers can reject stale requests with a short tolerance).
- ``X-Wasmprof-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>``.
- ``X-Wasmprof-Delivery``: the delivery id; identical on every attempt and on a manual
  redeliver, so receivers use it as the idempotency key.
- ``X-Wasmprof-Event``: the event type (``crash.new_group``, ..., ``alerts.digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

TIMESTAMP_HEADER = "X-Wasmprof-Timestamp"
SIGNATURE_HEADER = "X-Wasmprof-Signature"
DELIVERY_HEADER = "X-Wasmprof-Delivery"
EVENT_HEADER = "X-Wasmprof-Event"
SIGNATURE_PREFIX = "sha256="


def new_secret() -> str:
    """A fresh random signing secret (256 bits, URL-safe text)."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>.<body>"`` keyed with ``secret`` (UTF-8)."""
    mac = hmac.new(secret.encode("utf-8"), str(int(timestamp)).encode("ascii") + b"." + body,
                   hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(secret: str, body: bytes, *, delivery_id: str, event: str,
                   timestamp: int | None = None) -> dict[str, str]:
    """All headers of one delivery attempt (content type included)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "Content-Type": "application/json",
        "User-Agent": "wasmprof-webhooks/1",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: signature(secret, ts, body),
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }


def verify(secret: str, body: bytes, timestamp: str | None, signature_header: str | None, *,
           tolerance: float = 300.0, now: float | None = None) -> bool:
    """True when ``signature_header`` is valid for ``body`` and ``timestamp`` is within
    ``tolerance`` seconds of ``now``. Constant-time comparison; never raises on junk."""
    if not timestamp or not signature_header or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body).encode(),
                               signature_header.strip().encode())
