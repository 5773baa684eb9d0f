"""Health time series in the database: record samples, read them back bucketed, rank plugins.

- :func:`record` stores parsed :class:`~wasmprof.model.HealthSample` of one source (a
  scrape, or the WAMR blocks of one posted log) in one transaction: a series row per (source,
  plugin, runtime, thread, metric) and a point per sample; counters get the reset-aware
  increase since their previous point (:func:`~wasmprof.health.analysis.counter_increase`).
  When the source's uptime says its process restarted (or most of its counters went down
  at once), every counter's increase is its new value and a ``restarts`` point is added to
  the source's process-level series.
- Plugin names from Envoy stats are sanitized (``key-auth`` → ``key_auth``). Series keep
  the input's name (so a series never splits when a plugin becomes known); on read,
  :class:`PluginNames` maps it to a plugin wasmprof knows (modules, crashes, profiles) when
  exactly one matches, and queries by a plugin's name include its sanitized form.
- :func:`series_view` answers ``GET /api/v1/health/series`` and :func:`plugin_health` the
  ranking (``GET /api/v1/health/plugins``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmprof.health import analysis
from wasmprof.health.settings import HealthSettings
from wasmprof.ingest.envoy_stats import sanitize
from wasmprof.model import HealthMetric, HealthSample

MAX_BUCKETS = 2000
MAX_SERIES = 400

#: what a chart shows for each metric
UNITS = {m: ("count" if m.is_counter or m in (HealthMetric.VM_ACTIVE, HealthMetric.CRASHED)
             else "bytes") for m in HealthMetric}


def unit_of(metric: str) -> str:
    try:
        return UNITS[HealthMetric(metric)]
    except ValueError:
        return "count"


@dataclass(slots=True)
class RecordResult:
    series: int = 0
    points: int = 0
    resets: int = 0
    restarted: bool = False
    plugins: list[str] = field(default_factory=list)


class PluginNames:
    """Sanitized stats names → the plugin names wasmprof knows, refreshed every ``ttl`` s.

    ``key_auth`` → ``key-auth`` when exactly one known plugin sanitizes to it; otherwise a
    name ending in ``_key_auth`` (Envoy filter names often carry a namespace, e.g.
    ``higress-system.key-auth``) when exactly one known plugin is such a suffix; else the
    name as given."""

    def __init__(self, db: Any, ttl: float = 30.0) -> None:
        self.db = db
        self.ttl = ttl
        self._at = -1e18
        self._by_sanitized: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        with self.db.read() as tx:
            names: set[str] = set()
            for sql in ("SELECT DISTINCT plugin AS p FROM module_links",
                        "SELECT DISTINCT plugin AS p FROM crash_groups",
                        "SELECT DISTINCT plugin AS p FROM profile_inputs",
                        "SELECT name AS p FROM plugins"):
                names.update(r["p"] for r in tx.all(sql) if r["p"])
        by: dict[str, list[str]] = {}
        for n in names:
            by.setdefault(sanitize(n), []).append(n)
        self._by_sanitized = by

    def canonical(self, raw: str) -> str:
        if not raw:
            return raw
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._refresh()
                self._at = time.monotonic()
            by = self._by_sanitized
        if raw in by and len(by[raw]) == 1:
            return by[raw][0]
        if raw in by:
            return raw if raw in by[raw] else sorted(by[raw])[0]
        suffix = [names[0] for s, names in by.items() if len(names) == 1 and raw.endswith("_" + s)]
        return suffix[0] if len(suffix) == 1 else raw

    def invalidate(self) -> None:
        with self._lock:
            self._at = -1e18


def _series_id(tx: Any, key: tuple[str, str, str, str, str], *, kind: str, origin: str,
               raw: str | None, note: str | None, now: float) -> dict[str, Any]:
    source, plugin, runtime, thread, metric = key
    row = tx.one("SELECT id, last_value, last_ts FROM health_series WHERE source = ? AND "
                 "plugin = ? AND runtime = ? AND thread = ? AND metric = ?", key)
    if row is not None:
        return row
    tx.execute("INSERT INTO health_series (source, plugin, plugin_raw, runtime, thread, metric, "
               "kind, origin, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (source, plugin, runtime, thread, metric) DO NOTHING",
               (source, plugin, raw, runtime, thread, metric, kind, origin, note, now))
    row = tx.one("SELECT id, last_value, last_ts FROM health_series WHERE source = ? AND "
                 "plugin = ? AND runtime = ? AND thread = ? AND metric = ?", key)
    assert row is not None
    return row


def record(db: Any, samples: Sequence[HealthSample], *, source: str, origin: str, ts: float,
           names: PluginNames | None = None) -> RecordResult:
    """Store ``samples`` of ``source`` (``ts`` for those without their own time)."""
    res = RecordResult()
    if not samples:
        return res
    now = time.time()
    counters = resets = 0
    plugins: set[str] = set()
    with db.tx() as tx:
        restart = _restarted(tx, samples, source, ts)
        for s in samples:
            t = s.ts if s.ts is not None else ts
            if not math.isfinite(t) or not math.isfinite(s.value):
                continue
            plugin = s.plugin       # as the input names it: canonical names are applied on read
            raw = None
            if names is not None and names.canonical(plugin) != plugin:
                raw = plugin        # noted on the series (which known plugin it is read as)
            key = (source, plugin, s.runtime, s.thread, str(s.metric))
            kind = "counter" if s.metric.is_counter else "gauge"
            row = _series_id(tx, key, kind=kind, origin=origin, raw=raw, note=s.note, now=now)
            last_ts = row["last_ts"]
            delta, reset = None, False
            if kind == "counter":
                counters += 1
                if last_ts is not None and t <= last_ts:
                    continue            # a counter only moves forward in time
                delta, reset = analysis.counter_increase(row["last_value"], s.value, restart)
                resets += reset
            cur = tx.execute("INSERT INTO health_points (series_id, ts, value, delta, reset) "
                             "VALUES (?, ?, ?, ?, ?) ON CONFLICT (series_id, ts) DO NOTHING",
                             (row["id"], t, s.value, delta, 1 if reset else 0))
            if (cur.rowcount or 0) > 0:
                res.points += 1
            if last_ts is None or t > last_ts:
                tx.execute("UPDATE health_series SET last_ts = ?, last_value = ?, "
                           "first_ts = COALESCE(first_ts, ?) WHERE id = ?",
                           (t, s.value, t, row["id"]))
            res.series += 1
            if plugin:
                plugins.add(names.canonical(plugin) if names is not None else plugin)
        if restart or (origin == "envoy" and counters >= 2 and resets * 2 >= counters):
            res.restarted = True
            row = _series_id(tx, (source, "", "", "", str(HealthMetric.RESTARTS)), kind="counter",
                             origin=origin, raw=None, now=now,
                             note="the process restarted: its uptime went back or most "
                                  "counters went down")
            value = float(row["last_value"] or 0.0) + 1.0
            tx.execute("INSERT INTO health_points (series_id, ts, value, delta, reset) "
                       "VALUES (?, ?, ?, 1, 0) ON CONFLICT (series_id, ts) DO NOTHING",
                       (row["id"], ts, value))
            tx.execute("UPDATE health_series SET last_ts = ?, last_value = ?, first_ts = "
                       "COALESCE(first_ts, ?) WHERE id = ?", (ts, value, ts, row["id"]))
    res.resets = resets
    res.plugins = sorted(plugins)
    return res


def _restarted(tx: Any, samples: Sequence[HealthSample], source: str, ts: float) -> bool:
    """Did the source's process restart since its previous scrape (by its uptime)?"""
    up = next((s for s in samples if s.metric is HealthMetric.UPTIME_SECONDS), None)
    if up is None:
        return False
    row = tx.one("SELECT last_value, last_ts FROM health_series WHERE source = ? AND plugin = '' "
                 "AND runtime = ? AND thread = ? AND metric = ?",
                 (source, up.runtime, up.thread, str(HealthMetric.UPTIME_SECONDS)))
    if row is None:
        return False
    return analysis.restarted(row["last_value"], row["last_ts"], up.value,
                              up.ts if up.ts is not None else ts)


# -- reading -----------------------------------------------------------------------------

def series_rows(db: Any, *, plugin: str | None, source: str | None = None,
                metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Series of ``plugin`` ("" = process-level; None = every plugin); a plugin's series
    stored under Envoy's sanitized form of its name (``key_auth`` for ``key-auth``, before a
    module or crash made the name known) are included."""
    sql = "SELECT * FROM health_series WHERE 1 = 1"
    params: list[Any] = []
    if plugin is not None:                  # the name, or the form Envoy's stats give it
        sql += " AND plugin IN (?, ?)"
        params += [plugin, sanitize(plugin)]
    if source is not None:
        sql += " AND source = ?"
        params.append(source)
    wanted = list(metrics or [])
    if wanted:
        sql += " AND metric IN (" + ",".join("?" for _ in wanted) + ")"
        params += wanted
    sql += " ORDER BY source, plugin, runtime, thread, metric LIMIT ?"
    params.append(MAX_SERIES)
    with db.read() as tx:
        return tx.all(sql, params)


def points(db: Any, series_ids: Sequence[int], start: float, end: float
           ) -> dict[int, list[tuple[float, float, float | None, int]]]:
    """(ts, value, delta, reset) per series in ``[start, end]``, time order."""
    out: dict[int, list[tuple[float, float, float | None, int]]] = {i: [] for i in series_ids}
    if not series_ids:
        return out
    with db.read() as tx:
        for i in range(0, len(series_ids), 200):
            part = list(series_ids[i:i + 200])
            marks = ",".join("?" for _ in part)
            for r in tx.all(f"SELECT series_id, ts, value, delta, reset FROM health_points "
                            f"WHERE series_id IN ({marks}) AND ts >= ? AND ts <= ? "
                            f"ORDER BY series_id, ts", (*part, start, end)):
                out[int(r["series_id"])].append((float(r["ts"]), float(r["value"]),
                                                 r["delta"], int(r["reset"])))
    return out


def source_labels(db: Any) -> dict[str, str]:
    """``envoy:<id>`` → the target's name (series of removed targets keep their id)."""
    with db.read() as tx:
        rows = tx.all("SELECT id, name, url FROM health_targets")
    from wasmprof.health.targets import default_name
    return {f"envoy:{r['id']}": r["name"] or default_name(r["url"]) for r in rows}


def auto_step(start: float, end: float, step: float | None) -> tuple[float, int]:
    span = max(end - start, 1.0)
    if step is None:
        step = max(1.0, span / 240.0)
    ratio = span / step                  # inf for a subnormal step: clamped below
    n = int(math.ceil(ratio)) if ratio <= MAX_BUCKETS else MAX_BUCKETS + 1
    if n > MAX_BUCKETS:
        step = span / MAX_BUCKETS
        n = MAX_BUCKETS
    return step, max(n, 1)


def series_view(db: Any, *, plugin: str | None, start: float, end: float, step: float | None,
                source: str | None = None, metrics: Iterable[str] | None = None,
                names: PluginNames | None = None) -> dict[str, Any]:
    """Every series of ``plugin`` bucketed on one time axis: gauges give their level at the
    end of each bucket, counters the sum of their increases (resets handled) in it. Also
    per metric a ``total`` over threads/runtimes/sources (gauges: summed at equal scrape
    times, using the per-thread series when there are any, else the aggregate)."""
    step, n = auto_step(start, end, step)
    rows = series_rows(db, plugin=plugin, source=source, metrics=metrics)
    pts = points(db, [int(r["id"]) for r in rows], start, end)
    labels = source_labels(db)
    out_series = []
    by_metric: dict[str, list[tuple[dict[str, Any], list]]] = {}
    for r in rows:
        p = pts[int(r["id"])]
        metric = r["metric"]
        counter = r["kind"] == "counter"
        vals = [(t, d) for t, _v, d, _r in p if d is not None] if counter else [(t, v) for t, v, _d, _r in p]
        buckets = analysis.bucket(vals, start=start, step=step, n=n, how="sum" if counter else "last")
        resets = [t for t, _v, _d, rs in p if rs]
        out_series.append({
            "id": int(r["id"]), "source": r["source"], "source_name": labels.get(r["source"], r["source"]),
            "plugin": _canon(names)(r["plugin"]),
            "stats_name": r["plugin"] if _canon(names)(r["plugin"]) != r["plugin"] else None,
            "runtime": r["runtime"],
            "thread": r["thread"], "metric": metric, "kind": r["kind"], "origin": r["origin"],
            "unit": unit_of(metric),
            "note": r["note"], "values": buckets, "resets": resets, "points": len(p),
            "last_ts": r["last_ts"], "last_value": r["last_value"]})
        by_metric.setdefault(metric, []).append((r, p))
    totals = {}
    for metric, items in by_metric.items():
        counter = items[0][0]["kind"] == "counter"
        if counter:
            vals = [(t, d) for _r, p in items for t, _v, d, _x in p if d is not None]
            totals[metric] = analysis.bucket(sorted(vals), start=start, step=step, n=n, how="sum")
        else:
            summed = gauge_total([(r, [(t, v) for t, v, _d, _x in p]) for r, p in items])
            totals[metric] = analysis.bucket(summed, start=start, step=step, n=n, how="last")
    firsts = [r["first_ts"] for r in rows if r["first_ts"] is not None]
    lasts = [r["last_ts"] for r in rows if r["last_ts"] is not None]
    return {"plugin": plugin, "from": start, "to": end, "step": step, "buckets": n,
            "times": [start + i * step for i in range(n)], "series": out_series, "totals": totals,
            "data_from": min(firsts) if firsts else None, "data_to": max(lasts) if lasts else None}


def gauge_total(items: Sequence[tuple[dict[str, Any], list[analysis.Point]]]) -> list[analysis.Point]:
    """One gauge summed over threads and runtimes per source (per-thread series win over a
    thread-less aggregate of the same source), then over sources by carrying each
    source's last level forward."""
    by_source: dict[str, list[tuple[dict[str, Any], list[analysis.Point]]]] = {}
    for r, p in items:
        by_source.setdefault(r["source"], []).append((r, p))
    per_source: list[list[analysis.Point]] = []
    for _src, group in by_source.items():
        threaded = [p for r, p in group if r["thread"]]
        use = threaded if threaded else [p for r, p in group if not r["thread"]]
        if any(r["origin"] == "wamr" for r, _p in group):
            per_source.append(_carry_sum(use))
        else:
            per_source.append(analysis.sum_by_time(use))
    return per_source[0] if len(per_source) == 1 else _carry_sum(per_source)


def _carry_sum(series: Sequence[Sequence[analysis.Point]]) -> list[analysis.Point]:
    events = sorted((t, i, v) for i, pts in enumerate(series) for t, v in pts)
    last: dict[int, float] = {}
    out: list[analysis.Point] = []
    for t, i, v in events:
        last[i] = v
        if out and out[-1][0] == t:
            out[-1] = (t, sum(last.values()))
        else:
            out.append((t, sum(last.values())))
    return out


# -- per-plugin health (ranking, checks) ----------------------------------------------

@dataclass(slots=True)
class Unit:
    """The memory of one plugin as one source sees it (a gateway, or one WAMR thread in a
    log source), and its points."""

    plugin: str
    source: str
    thread: str
    points: list[analysis.Point]


def _canon(names: PluginNames | None) -> Any:
    return names.canonical if names is not None else (lambda p: p)


def memory_units(db: Any, *, plugin: str | None, start: float, end: float,
                 names: PluginNames | None = None) -> list[Unit]:
    """Memory per (plugin, source[, WAMR thread]); plugin names made canonical by ``names``."""
    canon = _canon(names)
    rows = [r for r in series_rows(db, plugin=plugin, metrics=[str(HealthMetric.MEMORY_BYTES)])
            if r["plugin"]]
    pts = points(db, [int(r["id"]) for r in rows], start, end)
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], list[analysis.Point]]]] = {}
    for r in rows:
        thread = r["thread"] if r["origin"] == "wamr" else ""
        groups.setdefault((canon(r["plugin"]), r["source"], thread), []).append(
            (r, [(t, v) for t, v, _d, _x in pts[int(r["id"])]]))
    out = []
    for (p, src, thread), items in groups.items():
        out.append(Unit(p, src, thread, gauge_total(items)))
    return out


def counter_deltas(db: Any, *, metrics: Sequence[HealthMetric], start: float, end: float,
                   plugin: str | None = None, names: PluginNames | None = None
                   ) -> dict[str, list[analysis.Point]]:
    """Per plugin, the (ts, increase) of the given counters summed over sources/threads."""
    canon = _canon(names)
    rows = [r for r in series_rows(db, plugin=plugin, metrics=[str(m) for m in metrics])
            if r["plugin"]]
    pts = points(db, [int(r["id"]) for r in rows], start, end)
    out: dict[str, list[analysis.Point]] = {}
    for r in rows:
        out.setdefault(canon(r["plugin"]), []).extend(
            (t, d) for t, _v, d, _x in pts[int(r["id"])] if d)
    for v in out.values():
        v.sort()
    return out


CRASH_METRICS = (HealthMetric.CRASHES,)
REBUILD_METRICS = (HealthMetric.REBUILDS,)


def plugin_health(db: Any, settings: HealthSettings, *, now: float,
                  window: float | None = None, plugin: str | None = None,
                  names: PluginNames | None = None) -> list[dict[str, Any]]:
    """Per plugin: memory now, its growth over ``window`` (the worst source), crashes and
    rebuilds in the window and per hour, the last sample time, the sources."""
    window = window or settings.memory_window
    start = now - window
    units = memory_units(db, plugin=plugin, start=start, end=now, names=names)
    crashes = counter_deltas(db, metrics=CRASH_METRICS, start=start, end=now, plugin=plugin,
                             names=names)
    rebuilds = counter_deltas(db, metrics=REBUILD_METRICS, start=start, end=now, plugin=plugin,
                              names=names)
    labels = source_labels(db)
    plugins: dict[str, dict[str, Any]] = {}

    def entry(p: str) -> dict[str, Any]:
        return plugins.setdefault(p, {
            "plugin": p, "memory_bytes": None, "memory_growth": None, "sources": [],
            "crashes": 0.0, "rebuilds": 0.0, "crashes_per_hour": 0.0, "rebuilds_per_hour": 0.0,
            "last_sample_at": None})

    for u in units:
        e = entry(u.plugin)
        if u.source not in e["sources"]:
            e["sources"].append(u.source)
        if not u.points:
            continue
        g = analysis.memory_growth(
            u.points, now=now, window=window, min_points=settings.memory_min_points,
            min_r2=settings.memory_min_r2, min_growth_bytes=settings.memory_min_growth_bytes,
            min_growth_ratio=settings.memory_min_growth_ratio, limit=settings.memory_limit_bytes)
        d = {**g.to_dict(), "source": u.source, "source_name": labels.get(u.source, u.source),
             "thread": u.thread}
        cur = e["memory_growth"]
        if cur is None or (d["steady"], d["slope"]) > (cur["steady"], cur["slope"]):
            e["memory_growth"] = d
        e["memory_bytes"] = (e["memory_bytes"] or 0.0) + u.points[-1][1]
        e["last_sample_at"] = max(e["last_sample_at"] or 0.0, u.points[-1][0])
    for counts, key in ((crashes, "crashes"), (rebuilds, "rebuilds")):
        for p, pts in counts.items():
            e = entry(p)
            e[key] = sum(d for t, d in pts if start < t <= now)
            e[key + "_per_hour"] = e[key] * 3600.0 / window
            if pts:
                e["last_sample_at"] = max(e["last_sample_at"] or 0.0, pts[-1][0])
    with db.read() as tx:
        active = tx.all("SELECT kind, plugin, source, started_at, info FROM health_alerts "
                        "WHERE status = 'active'")
    canon = _canon(names)
    for a in active:
        a["plugin"] = canon(a["plugin"])
        if a["plugin"] in plugins:
            plugins[a["plugin"]].setdefault("alerts", []).append(
                {"kind": a["kind"], "source": a["source"], "started_at": a["started_at"]})
    for e in plugins.values():
        e.setdefault("alerts", [])
        e["window_seconds"] = window
    return list(plugins.values())


def rank(entries: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """``memory_growth``: steady growers first, then by slope; ``crash_rate``: by crashes +
    rebuilds per hour; ``memory``: by current memory."""
    if by == "crash_rate":
        key = lambda e: (-(e["crashes_per_hour"] + e["rebuilds_per_hour"]), e["plugin"])  # noqa: E731
    elif by == "memory":
        key = lambda e: (-(e["memory_bytes"] or 0.0), e["plugin"])  # noqa: E731
    else:
        def key(e: dict[str, Any]) -> tuple:
            g = e["memory_growth"] or {}
            return (not g.get("steady", False), -(g.get("slope") or 0.0), e["plugin"])
    return sorted(entries, key=key)


def prune(db: Any, *, now: float, retention_days: float) -> int:
    """Delete points older than the retention; returns how many."""
    with db.tx() as tx:
        cur = tx.execute("DELETE FROM health_points WHERE ts < ?", (now - retention_days * 86400.0,))
        return max(cur.rowcount or 0, 0)
