"""The delivery worker: sends due outbox rows, signs each attempt, records the outcome.

Runs as a daemon thread inside ``wasmprof serve`` (one per replica; replicas share the
outbox through leases). Ingest never waits on it: enqueueing only writes rows and calls
:meth:`DeliveryWorker.wake`. Redirects are never followed, so only the configured URL is
called; at most ``MAX_RESPONSE_BYTES`` of a response are read.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from wasmprof.alerts import outbox
from wasmprof.alerts.outbox import AttemptResult, Claim
from wasmprof.alerts.payloads import clean
from wasmprof.alerts.retry import Outcome, RetryPolicy, classify_status, parse_retry_after
from wasmprof.alerts.signing import signed_headers

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 2048


def attempt(client: httpx.Client, claim: Claim, *, clock=time.time) -> AttemptResult:
    """POST one delivery once. Never raises for network or receiver problems."""
    started = clock()
    t0 = time.monotonic()
    headers = signed_headers(claim.secret, claim.body, delivery_id=claim.id, event=claim.event,
                             timestamp=int(started))
    try:
        with client.stream("POST", claim.url, content=claim.body, headers=headers,
                           timeout=httpx.Timeout(claim.timeout)) as resp:
            snippet = b""
            for chunk in resp.iter_bytes():
                snippet += chunk
                if len(snippet) >= MAX_RESPONSE_BYTES:
                    break
            status = resp.status_code
            outcome = classify_status(status)
            retry_after = (parse_retry_after(resp.headers.get("retry-after"), now=started)
                           if outcome is Outcome.RETRY else None)
            error = None
            if outcome is not Outcome.DELIVERED:
                text = clean(snippet[:300].decode("utf-8", "replace"), 300) or ""
                error = f"HTTP {status}" + (f": {text}" if text else "")
                if 300 <= status < 400:
                    error += " (redirects are not followed: only the configured URL is called)"
                if retry_after is not None:
                    error += f" (Retry-After {retry_after:g}s)"
    except httpx.TimeoutException as e:
        return AttemptResult(Outcome.RETRY, None, f"timeout after {claim.timeout:g}s "
                             f"({type(e).__name__})", None, started, _ms(t0))
    except httpx.TransportError as e:
        return AttemptResult(Outcome.RETRY, None, f"connection error: {type(e).__name__}: "
                             f"{clean(str(e), 200)}", None, started, _ms(t0))
    except httpx.HTTPError as e:
        return AttemptResult(Outcome.FAILED, None, f"{type(e).__name__}: {clean(str(e), 200)}",
                             None, started, _ms(t0))
    return AttemptResult(outcome, status, error, retry_after, started, _ms(t0))


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000.0, 2)


class DeliveryWorker:
    """Polls the outbox every ``policy.poll_interval`` seconds (or at once after
    :meth:`wake`) and delivers due rows with up to ``concurrency`` requests in flight."""

    def __init__(self, db: Any, *, base_url: str, policy: RetryPolicy | None = None,
                 concurrency: int = 4, owner: str | None = None, clock=time.time,
                 rng: random.Random | None = None,
                 tasks: list[Callable[[float], int]] | None = None) -> None:
        self.db = db
        self.base_url = base_url
        self.policy = policy or RetryPolicy.from_env()
        self.concurrency = max(1, concurrency)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(follow_redirects=False, trust_env=False,
                                    timeout=httpx.Timeout(self.policy.timeout))
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                        thread_name_prefix="wasmprof-webhook")
        self.attempts_made = 0
        self.tasks = list(tasks or [])      # extra periodic jobs (profile checks): f(now) -> done
        self._next_prune = 0.0

    # -- one round ---------------------------------------------------------------------
    def run_once(self, *, only_id: str | None = None) -> int:
        """Claim due deliveries, attempt each once, record outcomes. Returns attempts made."""
        claims = outbox.claim(self.db, owner=self.owner, now=self.clock(), policy=self.policy,
                              base_url=self.base_url, limit=self.concurrency * 2,
                              only_id=only_id)
        if not claims:
            return 0
        list(self._pool.map(self._deliver, claims))
        return len(claims)

    def _deliver(self, claim: Claim) -> str:
        result = attempt(self._client, claim, clock=self.clock)
        delay = self.policy.next_delay(claim.attempts + 1, result.retry_after, self.rng)
        status = outbox.record(self.db, claim, result, policy=self.policy, now=self.clock(),
                               delay=delay)
        self.attempts_made += 1
        level = logging.INFO if status in ("delivered", "pending") else logging.WARNING
        log.log(level, "webhook delivery %s (%s) attempt %d -> %s%s", claim.id, claim.event,
                claim.attempts + 1, status, f": {result.error}" if result.error else "")
        return status

    # -- thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="wasmprof-webhooks",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due deliveries now (called after an enqueue)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.clock() >= self._next_prune:
                self._next_prune = self.clock() + 3600.0
                try:
                    outbox.prune(self.db, now=self.clock(), keep_seconds=self.policy.retention)
                except Exception:  # noqa: BLE001
                    log.exception("pruning old webhook deliveries failed")
            for task in self.tasks:
                try:
                    task(self.clock())
                except Exception:  # noqa: BLE001
                    log.exception("webhook worker task failed")
            try:
                made = self.run_once()
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the worker
                log.exception("webhook worker round failed; retrying")
                made = 0
            if made == 0:
                self._wake.wait(self.policy.poll_interval)
                self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
        from wasmprof.alerts.hooks import unregister_waker
        unregister_waker(self.wake)
