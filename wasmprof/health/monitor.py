"""The health monitor thread of ``wasmprof serve``: scrape due targets, check, prune.

One daemon thread per replica. Scrapes run on a small pool (a slow or dead gateway only
occupies one worker until its timeout, never the loop, the API or ingest); targets are
leased through the database, so replicas split them. After new data (and at least every
``check_interval``) the :class:`~wasmprof.health.checks.HealthChecker` runs. ``clock`` is
injectable and :meth:`HealthMonitor.run_once` does one round synchronously, so tests drive
minutes of scrapes without sleeping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from wasmprof.health import settings, store, targets
from wasmprof.health.checks import CheckResult, HealthChecker
from wasmprof.health.scraper import ScrapeResult, new_client, scrape

log = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(self, db: Any, *, clock=time.time, workers: int = 4,
                 checker: HealthChecker | None = None, names: store.PluginNames | None = None,
                 owner: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.workers = max(1, workers)
        self.names = names or store.PluginNames(db)
        self.checker = checker or HealthChecker(db, names=self.names)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = new_client()
        self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                        thread_name_prefix="wasmprof-scrape")
        self._inflight: set[Future] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_check = 0.0
        self._next_prune = 0.0
        self._new_data = threading.Event()
        self.last_check: CheckResult | None = None

    # -- one round ---------------------------------------------------------------------
    def scrape_now(self, target_id: int) -> ScrapeResult | None:
        """Scrape one target at once (``POST …/targets/{id}/scrape``); None when it is
        unknown or another worker holds it."""
        claimed = targets.claim_due(self.db, owner=self.owner, now=self.clock(), limit=1,
                                    only_id=target_id)
        if not claimed:
            return None
        result = self._scrape(claimed[0])
        return result

    def _scrape(self, target: targets.Target) -> ScrapeResult:
        result = scrape(self.db, target, client=self._client, clock=self.clock,
                        names=self.names)
        if result.ok and result.points:
            self._new_data.set()
        if not result.ok:
            log.warning("scrape of %s failed: %s", target.name, result.error)
        return result

    def run_once(self, *, check: bool | None = None) -> dict[str, Any]:
        """Scrape every due target (synchronously) and run the checks when due (or when
        ``check`` says so). Returns what happened."""
        now = self.clock()
        due = targets.claim_due(self.db, owner=self.owner, now=now, limit=1000)
        results = [self._scrape(t) for t in due]
        checked = self._maybe_check(force=check)
        return {"scrapes": [r.to_dict() for r in results],
                "check": checked.to_dict() if checked else None}

    def _maybe_check(self, *, force: bool | None = None) -> CheckResult | None:
        now = self.clock()
        if force is False:
            return None
        st = settings.load(self.db)
        if force or now >= self._next_check or self._new_data.is_set():
            self._new_data.clear()
            self._next_check = now + st.check_interval
            self.last_check = self.checker.run(now, st)
            for f in self.last_check.fired:
                log.info("health alert %s for %s (%s)", f["kind"], f["plugin"], f["source"])
            if now >= self._next_prune:
                self._next_prune = now + 3600.0
                store.prune(self.db, now=now, retention_days=st.retention_days)
            return self.last_check
        return None

    # -- thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="wasmprof-health", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:  # noqa: BLE001 - a DB hiccup must not end the monitor
                log.exception("health monitor round failed; retrying")
            self._wake.wait(self._sleep_for())
            self._wake.clear()

    def _round(self) -> None:
        with self._lock:
            self._inflight = {f for f in self._inflight if not f.done()}
            free = self.workers - len(self._inflight)
        if free > 0:
            for t in targets.claim_due(self.db, owner=self.owner, now=self.clock(), limit=free):
                fut = self._pool.submit(self._scrape_safely, t)
                with self._lock:
                    self._inflight.add(fut)
        self._maybe_check()

    def _scrape_safely(self, target: targets.Target) -> None:
        try:
            self._scrape(target)
        except Exception:  # noqa: BLE001
            log.exception("scraping %s failed", target.name)
        finally:
            self._wake.set()

    def _sleep_for(self) -> float:
        now = self.clock()
        with self.db.read() as tx:
            nxt = tx.scalar("SELECT MIN(next_scrape_at) AS t FROM health_targets WHERE "
                            "deleted_at IS NULL AND enabled = 1")
        waits = [self._next_check - now]
        if nxt is not None:
            waits.append(float(nxt) - now)
        return max(0.02, min(1.0, *waits))

    def stop_thread(self, timeout: float = 10.0) -> None:
        """End the loop (``run_once``/``scrape_now`` keep working)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stop.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_thread(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def ensure_config_targets(db: Any, urls: list[str] | tuple[str, ...], interval: float,
                          *, now: float | None = None) -> list[targets.Target]:
    """Upsert the targets given on the command line / in the config (``origin='config'``)."""
    now = time.time() if now is None else now
    out = []
    for url in urls:
        t, _created = targets.create(db, {"url": url, "interval": interval}, now=now,
                                     origin="config")
        out.append(t)
    return out
