"""Per-plugin series wasmprof derives, for its own ``/metrics`` (Prometheus text).

Labels stay low-cardinality: ``plugin`` (at most :data:`MAX_PLUGINS`, the busiest; the rest
are summed as ``plugin="_other"``), ``trap_kind`` (a fixed enum), ``kind`` (two alert
kinds) and ``target`` (the scrape target's name; targets are configured by admins, at
most a few hundred). Computed from the database when ``/metrics`` is read, cached for
:data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from wasmprof.health import targets

MAX_PLUGINS = 50
CACHE_SECONDS = 5.0
OTHER = "_other"

Row = tuple[str, str, str, dict[str, str], float]


def collector(db: Any, *, clock=time.time, names: Any = None) -> Callable[[], list[Row]]:
    """The ``Metrics.collectors`` entry; ``names`` (a ``PluginNames``) makes stats names
    canonical."""
    lock = threading.Lock()
    cache: dict[str, Any] = {"at": -1e18, "rows": []}

    def collect() -> list[Row]:
        now = clock()
        with lock:
            if now - cache["at"] < CACHE_SECONDS:
                return cache["rows"]
        rows = _rows(db, now, names.canonical if names is not None else (lambda p: p))
        with lock:
            cache.update(at=now, rows=rows)
        return rows
    return collect


def _rows(db: Any, now: float, canon: Callable[[str], str]) -> list[Row]:
    with db.read() as tx:
        groups = tx.all("SELECT plugin, trap_kind, status, count FROM crash_groups")
        memory = tx.all("SELECT plugin, source, thread, last_value, last_ts FROM health_series "
                        "WHERE metric = 'memory_bytes' AND plugin <> ''")
        alerts = tx.all("SELECT plugin, kind FROM health_alerts WHERE status = 'active'")
    for m in memory:
        m["plugin"] = canon(m["plugin"])
    activity: dict[str, float] = {}
    for g in groups:
        p = g["plugin"] or ""
        activity[p] = activity.get(p, 0.0) + float(g["count"] or 0)
    for m in memory:
        activity.setdefault(m["plugin"], 0.0)
    keep = set(sorted(activity, key=lambda p: (-activity[p], p))[:MAX_PLUGINS])

    def label(p: str | None) -> str:
        p = p or ""
        return p if p in keep else OTHER

    out: list[Row] = []
    open_groups: dict[str, float] = {}
    events: dict[tuple[str, str], float] = {}
    for g in groups:
        p = label(g["plugin"])
        if g["status"] != "resolved":
            open_groups[p] = open_groups.get(p, 0.0) + 1
        k = (p, g["trap_kind"] or "unknown")
        events[k] = events.get(k, 0.0) + float(g["count"] or 0)
    for p, n in sorted(open_groups.items()):
        out.append(("wasmprof_plugin_crash_groups_open", "gauge",
                    "Crash groups not resolved, per plugin", {"plugin": p}, n))
    for (p, trap), n in sorted(events.items()):
        out.append(("wasmprof_plugin_crash_events_total", "counter",
                    "Crash events stored, per plugin and trap kind of their group",
                    {"plugin": p, "trap_kind": trap}, n))
    for p, v in sorted(_memory_now(memory, label).items()):
        out.append(("wasmprof_plugin_memory_bytes", "gauge",
                    "Latest Wasm memory of the plugin (scraped and WAMR blocks, summed over "
                    "sources and threads)", {"plugin": p}, v))
    counts: dict[tuple[str, str], float] = {}
    for a in alerts:
        k = (label(a["plugin"]), a["kind"])
        counts[k] = counts.get(k, 0.0) + 1
    for (p, kind), n in sorted(counts.items()):
        out.append(("wasmprof_plugin_health_alerts_active", "gauge",
                    "Open plugin health alert episodes", {"plugin": p, "kind": kind}, n))
    for t in targets.list_all(db):
        out.append(("wasmprof_health_scrape_up", "gauge",
                    "1 when the last scrape of the target succeeded", {"target": t.name},
                    1.0 if t.last_scrape_at is not None and not t.consecutive_failures else 0.0))
        if t.last_ok_at is not None:
            out.append(("wasmprof_health_scrape_age_seconds", "gauge",
                        "Seconds since the last successful scrape of the target",
                        {"target": t.name}, round(max(0.0, now - t.last_ok_at), 3)))
    return out


def _memory_now(rows: list[dict[str, Any]], label: Callable[[str], str]) -> dict[str, float]:
    """Per plugin: per source the per-thread levels summed (or the thread-less aggregate when
    there are no per-thread series), then summed over sources."""
    by: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if r["last_value"] is None:
            continue
        by.setdefault((r["plugin"], r["source"]), {})[r["thread"]] = float(r["last_value"])
    out: dict[str, float] = {}
    for (p, _src), threads in by.items():
        per_thread = {k: v for k, v in threads.items() if k}
        v = sum(per_thread.values()) if per_thread else threads.get("", 0.0)
        out[label(p)] = out.get(label(p), 0.0) + v
    return out
