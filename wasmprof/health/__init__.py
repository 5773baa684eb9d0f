"""Per-plugin memory and VM health over time (issue 17).

Where the data comes from:

- Envoy admin ``/stats/prometheus`` endpoints, scraped every ``interval`` (default 30 s):
  ``wasmprof serve --scrape-envoy URL…`` or ``POST /api/v1/health/targets``; the Wasm
  metrics of upstream Envoy and of Higress are mapped to (plugin, runtime, thread) series of
  memory bytes, VM counts, crashes, recoveries and rebuilds
  (:mod:`wasmprof.ingest.envoy_stats`);
- WAMR ``Memory consumption summary`` blocks in posted logs (:mod:`wasmprof.ingest.
  wamr_memory`, hooked into the log ingest by :mod:`wasmprof.health.logs`).

Modules: :mod:`~.schema` (tables), :mod:`~.settings` (detection settings), :mod:`~.targets`
(scrape targets), :mod:`~.store` (series and points, reset-aware counters, queries),
:mod:`~.analysis` (pure rules: steady growth, crash loops, buckets), :mod:`~.scraper` (one
scrape), :mod:`~.checks` (alert episodes → ``plugin.memory_growth`` / ``plugin.crash_loop``
webhooks), :mod:`~.monitor` (the thread), :mod:`~.metrics` (``/metrics`` series). The HTTP
routes are in :mod:`wasmprof.server.routes_health`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)

_monitors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def monitor_for(db: Any) -> Any:
    """This process's :class:`~wasmprof.health.monitor.HealthMonitor` on ``db`` (created,
    not started, on first use: the API's "scrape now" works without the thread)."""
    from wasmprof.health.monitor import HealthMonitor
    with _lock:
        mon = _monitors.get(db)
        if mon is None:
            mon = _monitors[db] = HealthMonitor(db)
        return mon


def forget_monitor(db: Any, monitor: Any) -> None:
    """Drop a stopped monitor so the next :func:`monitor_for` makes a fresh one."""
    with _lock:
        if _monitors.get(db) is monitor:
            del _monitors[db]


def start_monitor(service: Any, config: Any) -> Any:
    """Called by the app's lifespan: upsert ``config.scrape_envoy`` targets and start the
    monitor thread (stop it with ``.stop()``)."""
    from wasmprof.health.monitor import ensure_config_targets
    db = service.db
    urls = tuple(getattr(config, "scrape_envoy", ()) or ())
    if urls:
        ensure_config_targets(db, urls, float(getattr(config, "scrape_interval", 30.0)))
    mon = monitor_for(db)
    mon.start()
    return mon
