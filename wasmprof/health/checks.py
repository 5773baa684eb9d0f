"""The periodic health checker: memory growth and crash loops → alert episodes → webhooks.

:meth:`HealthChecker.run` (called by :class:`wasmprof.health.monitor.HealthMonitor` every
``check_interval``, or directly with an injected ``now`` in tests) evaluates every plugin:

- ``plugin.memory_growth`` per (plugin, source): :func:`wasmprof.health.analysis.memory_growth`
  over ``memory_window``;
- ``plugin.crash_loop`` per plugin (all sources): crashes or rebuilds (counter increases,
  restarts handled) within ``crash_window`` reaching ``crash_threshold``.

An alert is an *episode* (``health_alerts``): it opens when the condition first holds, and
its one delivery per webhook is queued in the same transaction
(:func:`wasmprof.alerts.on_health_alert`, keyed by the episode, so two replicas or two
checks never send it twice); while it holds the episode stays open (``last_seen_at``); once
the condition has been gone for half a memory window (memory) or a whole crash window
(crash loop) the episode is cleared and a later occurrence alerts again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from wasmprof.health import analysis, settings, store
from wasmprof.health.settings import HealthSettings

log = logging.getLogger(__name__)

MEMORY = "plugin.memory_growth"
CRASH_LOOP = "plugin.crash_loop"
ALL_SOURCES = "*"


@dataclass(slots=True)
class CheckResult:
    at: float
    fired: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[dict[str, Any]] = field(default_factory=list)
    ongoing: int = 0
    units: int = 0
    plugins: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "fired": self.fired, "cleared": self.cleared,
                "ongoing": self.ongoing, "units": self.units, "plugins": self.plugins}


def _alert_hook() -> Callable[..., Any] | None:
    try:
        from wasmprof.alerts import on_health_alert
    except ImportError:
        return None
    return on_health_alert


class HealthChecker:
    def __init__(self, db: Any, *, alert: Callable[..., Any] | None = None,
                 names: store.PluginNames | None = None) -> None:
        self.db = db
        self.alert = alert if alert is not None else _alert_hook()
        self.names = names or store.PluginNames(db)

    def run(self, now: float, st: HealthSettings | None = None) -> CheckResult:
        st = st or settings.load(self.db)
        res = CheckResult(now)
        labels = store.source_labels(self.db)
        self.names.invalidate()
        for u in store.memory_units(self.db, plugin=None, start=now - st.memory_window, end=now,
                                    names=self.names):
            res.units += 1
            g = analysis.memory_growth(
                u.points, now=now, window=st.memory_window, min_points=st.memory_min_points,
                min_r2=st.memory_min_r2, min_growth_bytes=st.memory_min_growth_bytes,
                min_growth_ratio=st.memory_min_growth_ratio, limit=st.memory_limit_bytes)
            source = u.source + (f"#{u.thread}" if u.thread else "")
            name = labels.get(u.source, u.source) + (f" thread {u.thread}" if u.thread else "")
            self._episode(res, MEMORY, u.plugin, source, g.steady, now,
                          clear_after=st.memory_window * 0.5,
                          event=lambda key, g=g, name=name, u=u: _memory_event(key, u.plugin, g, name, now),
                          info=g.to_dict())
        start = now - st.crash_window
        crashes = store.counter_deltas(self.db, metrics=store.CRASH_METRICS, start=start, end=now,
                                       names=self.names)
        rebuilds = store.counter_deltas(self.db, metrics=store.REBUILD_METRICS, start=start,
                                        end=now, names=self.names)
        for plugin in sorted(set(crashes) | set(rebuilds) | self._open_plugins(CRASH_LOOP)):
            res.plugins += 1
            cl = analysis.crash_loop(crashes.get(plugin, []), rebuilds.get(plugin, []), now=now,
                                     window=st.crash_window, threshold=st.crash_threshold)
            self._episode(res, CRASH_LOOP, plugin, ALL_SOURCES, cl.active, now,
                          clear_after=st.crash_window,
                          event=lambda key, cl=cl, plugin=plugin: _crash_event(key, plugin, cl, now),
                          info=cl.to_dict())
        return res

    def _open_plugins(self, kind: str) -> set[str]:
        with self.db.read() as tx:
            return {r["plugin"] for r in tx.all(
                "SELECT plugin FROM health_alerts WHERE kind = ? AND status = 'active'", (kind,))}

    def _episode(self, res: CheckResult, kind: str, plugin: str, source: str, holds: bool,
                 now: float, *, clear_after: float, event: Callable[[str], Any],
                 info: dict[str, Any]) -> None:
        info_json = orjson.dumps(info).decode()
        with self.db.tx() as tx:
            row = tx.one("SELECT id, last_seen_at, event_key FROM health_alerts WHERE kind = ? "
                         "AND plugin = ? AND source = ? AND status = 'active'", (kind, plugin, source))
            if row is not None:
                if holds:
                    tx.execute("UPDATE health_alerts SET last_seen_at = ?, info = ? WHERE id = ?",
                               (now, info_json, row["id"]))
                    res.ongoing += 1
                elif now - float(row["last_seen_at"]) >= clear_after:
                    tx.execute("UPDATE health_alerts SET status = 'cleared', cleared_at = ? "
                               "WHERE id = ?", (now, row["id"]))
                    res.cleared.append({"kind": kind, "plugin": plugin, "source": source,
                                        "key": row["event_key"]})
                return
            if not holds:
                return
            key = f"{kind}:{plugin}:{source}:{now:.3f}"
            cur = tx.execute(
                "INSERT INTO health_alerts (kind, plugin, source, status, started_at, "
                "last_seen_at, event_key, info) VALUES (?, ?, ?, 'active', ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING", (kind, plugin, source, now, now, key, info_json))
            if (cur.rowcount or 0) != 1:
                return                  # another replica opened this episode
            deliveries = self.alert(self.db, event(key), now=now) if self.alert else []
            res.fired.append({"kind": kind, "plugin": plugin, "source": source, "key": key,
                              "deliveries": list(deliveries or [])})


def _memory_event(key: str, plugin: str, g: analysis.Growth, source_name: str, now: float) -> Any:
    from wasmprof.alerts.events import AlertEvent, EventType, HealthInfo
    return AlertEvent(
        type=EventType.PLUGIN_MEMORY_GROWTH, key=key, occurred_at=now, plugin=plugin,
        title=f"Memory of {plugin} grows steadily", message=g.reason,
        health=HealthInfo(window_seconds=g.window_end - g.window_start,
                          window_start=g.window_start, window_end=g.window_end,
                          source=source_name, slope_bytes_per_second=g.slope,
                          growth_bytes=g.growth_bytes, current_bytes=g.last_value,
                          limit_bytes=g.limit_bytes, seconds_to_limit=g.seconds_to_limit,
                          r2=round(g.r2, 4), points=g.points, reason=g.reason))


def _crash_event(key: str, plugin: str, cl: analysis.CrashLoop, now: float) -> Any:
    from wasmprof.alerts.events import AlertEvent, EventType, HealthInfo
    reason = (f"{cl.crashes:g} crashes and {cl.rebuilds:g} rebuilds in {cl.window_seconds:g}s "
              f"(threshold {cl.threshold})")
    return AlertEvent(
        type=EventType.PLUGIN_CRASH_LOOP, key=key, occurred_at=now, plugin=plugin,
        title=f"{plugin} is crash-looping", message=reason, count=int(max(cl.crashes, cl.rebuilds)),
        health=HealthInfo(window_seconds=cl.window_seconds, window_start=cl.window_start,
                          window_end=cl.window_end, source="all sources", crashes=cl.crashes,
                          rebuilds=cl.rebuilds, threshold=cl.threshold, reason=reason))
