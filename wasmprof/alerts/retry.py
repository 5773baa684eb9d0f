"""When to retry a webhook delivery, and how long to wait.

Retried: timeouts, connection errors, HTTP 408, 429 and 5xx. A ``Retry-After`` header
(seconds or an HTTP date) on 429/503 is honoured: the next attempt is never earlier than it
says (capped at ``max_retry_after`` so a hostile receiver cannot park a delivery forever).
Otherwise the wait is exponential, ``base_delay * 2**(attempt-1)`` capped at ``max_delay``,
with jitter (a random fraction up to ``jitter`` is taken off) so replicas and webhooks do not
retry in lock-step. Any other answer (3xx: redirects are never followed, 4xx) is final.

Every knob is configurable (environment ``WASMPROF_WEBHOOK_*``, see :meth:`RetryPolicy.from_env`)
so tests run the whole retry ladder in seconds.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from dataclasses import dataclass
from enum import StrEnum

from wasmprof.errors import UsageError


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"          # final answer from the receiver; dead-letter at once


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delivery timing. ``max_attempts`` is a default; a webhook may override it."""

    max_attempts: int = 8
    base_delay: float = 10.0
    max_delay: float = 3600.0
    jitter: float = 0.3
    timeout: float = 10.0
    max_retry_after: float = 6 * 3600.0
    poll_interval: float = 1.0     # how often a worker looks for due deliveries
    lease_margin: float = 5.0      # a claim lasts 2 × timeout + this; then others may take it
    retention: float = 30 * 86400.0  # delivered/cancelled deliveries are kept this long

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RetryPolicy:
        """Read ``WASMPROF_WEBHOOK_{MAX_ATTEMPTS,BASE_DELAY,MAX_DELAY,JITTER,TIMEOUT,
        MAX_RETRY_AFTER,POLL,LEASE_MARGIN,RETENTION}`` (seconds, except the attempt count);
        unset ones keep their defaults."""
        env = os.environ if env is None else env
        names = {"max_attempts": "MAX_ATTEMPTS", "base_delay": "BASE_DELAY",
                 "max_delay": "MAX_DELAY", "jitter": "JITTER", "timeout": "TIMEOUT",
                 "max_retry_after": "MAX_RETRY_AFTER", "poll_interval": "POLL",
                 "lease_margin": "LEASE_MARGIN", "retention": "RETENTION"}
        values: dict[str, float | int] = {}
        for attr, suffix in names.items():
            raw = env.get(f"WASMPROF_WEBHOOK_{suffix}")
            if raw is None or raw == "":
                continue
            try:
                num = float(raw)
            except ValueError:
                raise UsageError(f"WASMPROF_WEBHOOK_{suffix} must be a number",
                                 source="environment", found=repr(raw)) from None
            if num < 0 or num != num or num == float("inf"):
                raise UsageError(f"WASMPROF_WEBHOOK_{suffix} must be finite and >= 0",
                                 source="environment", found=raw)
            values[attr] = int(num) if attr == "max_attempts" else num
        policy = cls(**values)  # type: ignore[arg-type]
        if policy.max_attempts < 1:
            raise UsageError("WASMPROF_WEBHOOK_MAX_ATTEMPTS must be at least 1",
                             source="environment", found=str(policy.max_attempts))
        return policy

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exp = min(max(attempt - 1, 0), 62)
        delay = min(self.max_delay, self.base_delay * (2 ** exp))
        r = (rng or random).random()
        return delay * (1.0 - self.jitter * r)

    def next_delay(self, attempt: int, retry_after: float | None,
                   rng: random.Random | None = None) -> float:
        """The wait before the next attempt: Retry-After when the receiver gave one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff(attempt, rng)


def classify_status(status: int) -> Outcome:
    """What an HTTP status means for the delivery."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Outcome.RETRY
    return Outcome.FAILED


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date);
    None when absent or unreadable (then normal backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value[:12]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)
