"""Alert events: what happened, independent of how it is delivered.

An :class:`AlertEvent` is built from a stored crash group / crash event (``crash.*``) or
from two profile selections (``profile.regression``), then rendered per webhook format by
:mod:`wasmprof.alerts.payloads`. Its ``key`` is unique per occurrence, so enqueueing the
same occurrence twice (a retried ingest, two replicas) yields one delivery per webhook.

The detection rules here are pure functions; :mod:`wasmprof.alerts.hooks` feeds them from
the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    CRASH_NEW_GROUP = "crash.new_group"
    CRASH_REGRESSED = "crash.regressed"
    CRASH_SPIKE = "crash.spike"
    PROFILE_REGRESSION = "profile.regression"
    PLUGIN_MEMORY_GROWTH = "plugin.memory_growth"   # wasmprof.health: steady memory growth
    PLUGIN_CRASH_LOOP = "plugin.crash_loop"         # wasmprof.health: crashes/rebuilds per window
    DIGEST = "alerts.digest"        # sent instead of many messages when a webhook is rate-limited
    TEST = "webhook.test"           # `wasmprof webhook test`


#: Events a webhook can subscribe to.
SUBSCRIBABLE: tuple[EventType, ...] = (EventType.CRASH_NEW_GROUP, EventType.CRASH_REGRESSED,
                                       EventType.CRASH_SPIKE, EventType.PROFILE_REGRESSION,
                                       EventType.PLUGIN_MEMORY_GROWTH, EventType.PLUGIN_CRASH_LOOP)
#: Plugin health events (``plugin.*``), raised by :mod:`wasmprof.health.checks`.
HEALTH_EVENTS: tuple[EventType, ...] = (EventType.PLUGIN_MEMORY_GROWTH, EventType.PLUGIN_CRASH_LOOP)


@dataclass(slots=True)
class AlertFrame:
    """One symbolized frame as shown in an alert (innermost first)."""

    function: str | None
    file: str | None = None
    line: int | None = None
    status: str | None = None
    inlined: bool = False

    @property
    def location(self) -> str | None:
        if not self.file:
            return None
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(slots=True)
class SpikeInfo:
    window_seconds: float
    count_in_window: int
    threshold: int


@dataclass(slots=True)
class RegressionInfo:
    """A function whose share of samples grew by ``delta_points`` percentage points."""

    function: str
    metric: str                     # "self" or "total"
    baseline_share: float           # percent of all samples, 0..100
    current_share: float
    delta_points: float
    baseline: str = ""              # human description of the baseline selection
    current: str = ""


@dataclass(slots=True)
class HealthInfo:
    """What a ``plugin.*`` alert measured. Memory growth: ``slope_bytes_per_second`` over
    ``window_seconds`` (``window_start``..``window_end``), the fit's ``r2``, the level now and
    the projected ``seconds_to_limit``. Crash loop: ``crashes`` and ``rebuilds`` within the
    window against ``threshold``. ``source`` names the gateway (scrape target) or log."""

    window_seconds: float
    window_start: float
    window_end: float
    source: str | None = None
    slope_bytes_per_second: float | None = None
    growth_bytes: float | None = None
    current_bytes: float | None = None
    limit_bytes: float | None = None
    seconds_to_limit: float | None = None
    r2: float | None = None
    points: int | None = None
    crashes: float | None = None
    rebuilds: float | None = None
    threshold: int | None = None
    reason: str | None = None


@dataclass(slots=True)
class AlertEvent:
    type: EventType
    key: str
    occurred_at: float
    plugin: str | None = None
    module_version: str | None = None
    group_id: str | None = None
    title: str | None = None
    trap_kind: str | None = None
    message: str | None = None
    count: int | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    frames: list[AlertFrame] = field(default_factory=list)
    spike: SpikeInfo | None = None
    regressions: list[RegressionInfo] = field(default_factory=list)
    panic: dict[str, Any] | None = None     # the plugin's panic: kind, language, message, location
    health: HealthInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = str(self.type)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertEvent:
        spike = d.get("spike")
        return cls(
            type=EventType(d["type"]), key=d["key"], occurred_at=float(d["occurred_at"]),
            plugin=d.get("plugin"), module_version=d.get("module_version"),
            group_id=d.get("group_id"), title=d.get("title"), trap_kind=d.get("trap_kind"),
            message=d.get("message"), count=d.get("count"), first_seen=d.get("first_seen"),
            last_seen=d.get("last_seen"),
            frames=[AlertFrame(**f) for f in d.get("frames") or []],
            spike=SpikeInfo(**spike) if spike else None,
            regressions=[RegressionInfo(**r) for r in d.get("regressions") or []],
            panic=d.get("panic"),
            health=HealthInfo(**d["health"]) if d.get("health") else None,
        )


def parse_event_list(text: str) -> list[EventType]:
    """``"crash.new_group,crash.regressed"`` → event types; raises ValueError naming the bad one."""
    out: list[EventType] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name in ("crash.*", "plugin.*"):
            out.extend(e for e in SUBSCRIBABLE if e.value.startswith(name[:-1]) and e not in out)
            continue
        try:
            ev = EventType(name)
        except ValueError:
            raise ValueError(f"unknown event {name!r}; choose from "
                             + ", ".join(e.value for e in SUBSCRIBABLE)) from None
        if ev not in SUBSCRIBABLE:
            raise ValueError(f"event {name!r} cannot be subscribed to")
        if ev not in out:
            out.append(ev)
    if not out:
        raise ValueError("no events given")
    return out


def spike_due(count_in_window: int, threshold: int, last_fired_at: float | None,
              now: float, window: float) -> bool:
    """A spike alert fires when a group's count within ``window`` reaches ``threshold``,
    at most once per window per group and webhook."""
    if threshold <= 0 or count_in_window < threshold:
        return False
    return last_fired_at is None or now - last_fired_at >= window


def function_shares(stacks: Iterable[tuple[Sequence[str], int]]) -> dict[str, tuple[float, float]]:
    """Per function ``(self %, total %)`` of the weight of ``stacks`` (leaf first).

    Self: weight of stacks whose leaf is the function. Total: weight of stacks containing it
    (recursion counted once per stack).
    """
    total = 0
    self_w: dict[str, int] = {}
    total_w: dict[str, int] = {}
    for frames, weight in stacks:
        if weight <= 0 or not frames:
            continue
        total += weight
        self_w[frames[0]] = self_w.get(frames[0], 0) + weight
        for name in set(frames):
            total_w[name] = total_w.get(name, 0) + weight
    if total == 0:
        return {}
    return {name: (100.0 * self_w.get(name, 0) / total, 100.0 * w / total)
            for name, w in total_w.items()}


def profile_regressions(baseline: dict[str, tuple[float, float]],
                        current: dict[str, tuple[float, float]], threshold_points: float, *,
                        baseline_desc: str = "", current_desc: str = "",
                        limit: int = 10) -> list[RegressionInfo]:
    """Functions whose self or total share grew by more than ``threshold_points``
    percentage points from ``baseline`` to ``current`` (largest growth first; a function
    reported once, by its larger growth, self on a tie). Functions new in ``current`` start from 0 %."""
    found: list[RegressionInfo] = []
    for name, (cur_self, cur_total) in current.items():
        base_self, base_total = baseline.get(name, (0.0, 0.0))
        d_self, d_total = cur_self - base_self, cur_total - base_total
        if max(d_self, d_total) <= threshold_points:
            continue
        if d_self >= d_total:
            found.append(RegressionInfo(name, "self", round(base_self, 2), round(cur_self, 2),
                                        round(d_self, 2), baseline_desc, current_desc))
        else:
            found.append(RegressionInfo(name, "total", round(base_total, 2), round(cur_total, 2),
                                        round(d_total, 2), baseline_desc, current_desc))
    # On ties a self-share growth ranks first: it names the function that got slower.
    found.sort(key=lambda r: (-r.delta_points, r.metric != "self", r.function))
    return found[:limit]
