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
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_ATTR = "_wasmprof_health_monitor"


def monitor_for(service: Any) -> Any:
    """The :class:`~wasmprof.health.monitor.HealthMonitor` of ``service`` (the server's
    ``Service``, or anything with a ``db``), created, not started, on first use (the API's
    "scrape now" works without the thread). Kept on the service object, so it goes away with
    it."""
    from wasmprof.health.monitor import HealthMonitor
    with _lock:
        mon = getattr(service, _ATTR, None)
        if mon is None:
            mon = HealthMonitor(service.db)
            setattr(service, _ATTR, mon)
        return mon


def start_monitor(service: Any, config: Any) -> Any:
    """Called by the app's lifespan: upsert ``config.scrape_envoy`` targets and start the
    monitor thread (stop it with ``.stop()``)."""
    from wasmprof.health.monitor import ensure_config_targets
    urls = tuple(getattr(config, "scrape_envoy", ()) or ())
    if urls:
        ensure_config_targets(service.db, urls, float(getattr(config, "scrape_interval", 30.0)))
    mon = monitor_for(service)
    mon.start()
    return mon
