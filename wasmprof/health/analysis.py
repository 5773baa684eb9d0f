"""Pure time-series rules of plugin health: counter increases across restarts, steady
memory growth (slope, fit, projected time to a limit), crash loops, bucketing for charts.

No I/O here: :mod:`wasmprof.health.store` feeds these from the database and
:mod:`wasmprof.health.checks` turns their results into alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

Point = tuple[float, float]          # (unix seconds, value)

#: a drop of the memory level by this share is a rebuild/restart: growth is judged after it
DROP_RATIO = 0.2


def counter_increase(previous: float | None, value: float,
                     restarted: bool = False) -> tuple[float | None, bool]:
    """(increase since ``previous``, reset?) of a counter. A counter that went down, or
    whose process is known to have restarted since (``restarted``: its uptime says so), was
    reset: everything it counts now happened since, so the increase is the new value.
    No previous value: unknown (None). Without a restart signal, a counter that restarted
    and climbed back past its old value cannot be told apart (the increase is then a lower
    bound, as with Prometheus' ``rate()``)."""
    if previous is None:
        return None, False
    if restarted or value < previous:
        return value, True
    return value - previous, False


def restarted(prev_uptime: float | None, prev_ts: float | None, uptime: float,
              ts: float) -> bool:
    """Did the process restart between two samples of its uptime? Yes when it is younger
    than the time since the previous sample (a second of slack for clock skew)."""
    if prev_uptime is None or prev_ts is None:
        return False
    return uptime + 1.0 < ts - prev_ts or uptime + 1.0 < prev_uptime


@dataclass(slots=True)
class Fit:
    slope: float          # per second
    intercept: float      # value at t = 0 of the shifted axis (first point)
    r2: float


def linear_fit(points: Sequence[Point]) -> Fit | None:
    """Least squares over ``points`` (time shifted to the first point); None with fewer
    than two distinct times. R² is 1 for a flat series that fits exactly."""
    if len(points) < 2:
        return None
    t0 = points[0][0]
    xs = [t - t0 for t, _ in points]
    ys = [v for _, v in points]
    n = float(len(points))
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    syy = sum((y - my) ** 2 for y in ys)
    if syy <= 0:
        return Fit(slope, intercept, 1.0)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    return Fit(slope, intercept, max(0.0, 1.0 - ss_res / syy))


@dataclass(slots=True)
class Growth:
    """The verdict on one memory series over a window; ``reason`` says why (not) steady."""

    steady: bool
    reason: str
    points: int
    window_start: float
    window_end: float
    span_seconds: float = 0.0
    first_value: float | None = None
    last_value: float | None = None
    slope: float = 0.0                  # bytes per second (least squares)
    r2: float = 0.0
    growth_bytes: float = 0.0           # fitted growth over the span
    limit_bytes: float | None = None
    seconds_to_limit: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def since_last_drop(points: Sequence[Point], ratio: float = DROP_RATIO) -> list[Point]:
    """The points after the last drop by more than ``ratio`` (a VM rebuild or a restart:
    the memory level starts over and growth before it says nothing about now)."""
    start = 0
    for i in range(1, len(points)):
        prev = points[i - 1][1]
        if prev > 0 and points[i][1] < prev * (1.0 - ratio):
            start = i
    return list(points[start:])


def quarter_means(points: Sequence[Point]) -> list[float] | None:
    """Means of the values in four equal time slices of the span; None when one is empty."""
    t0, t1 = points[0][0], points[-1][0]
    span = t1 - t0
    if span <= 0:
        return None
    sums = [0.0] * 4
    counts = [0] * 4
    for t, v in points:
        k = min(3, int((t - t0) / span * 4))
        sums[k] += v
        counts[k] += 1
    if min(counts) == 0:
        return None
    return [s / c for s, c in zip(sums, counts)]


def memory_growth(points: Sequence[Point], *, now: float, window: float, min_points: int,
                  min_r2: float, min_growth_bytes: float, min_growth_ratio: float,
                  limit: float | None) -> Growth:
    """Is the memory in ``points`` (time order) growing steadily over ``[now - window,
    now]``? See :class:`wasmprof.health.settings.HealthSettings` for the rule."""
    start = now - window
    inside = [p for p in points if start <= p[0] <= now]
    seg = since_last_drop(inside)
    g = Growth(False, "", len(seg), start, now, limit_bytes=limit)
    if seg:
        g.first_value, g.last_value = seg[0][1], seg[-1][1]
        g.span_seconds = seg[-1][0] - seg[0][0]
    fit = linear_fit(seg)
    if fit is not None:             # measured even when too little to judge (for rankings)
        g.slope, g.r2 = fit.slope, fit.r2
        g.growth_bytes = fit.slope * g.span_seconds
        if limit is not None and fit.slope > 0 and g.last_value is not None:
            g.seconds_to_limit = max(0.0, (limit - g.last_value) / fit.slope)
    if len(seg) < min_points:
        g.reason = f"{len(seg)} samples since the window start or the last drop (need {min_points})"
        return g
    if g.span_seconds < window * 0.5:
        g.reason = (f"samples cover {g.span_seconds:.0f}s of the {window:.0f}s window "
                    "(need half)")
        return g
    if fit is None:
        g.reason = "no spread in time"
        return g
    if fit.slope <= 0:
        g.reason = "not growing"
        return g
    base = max(fit.intercept, 0.0)
    if g.growth_bytes < min_growth_bytes or g.growth_bytes < min_growth_ratio * base:
        g.reason = (f"grew {g.growth_bytes:.0f} bytes (need {min_growth_bytes:.0f} and "
                    f"{min_growth_ratio:.0%} of {base:.0f})")
        return g
    if fit.r2 < min_r2:
        g.reason = f"growth is not steady: R² {fit.r2:.2f} < {min_r2:.2f}"
        return g
    means = quarter_means(seg)
    if means is None or any(b <= a for a, b in zip(means, means[1:])):
        g.reason = "growth is not steady: a quarter of the window did not grow (a step or spike)"
        return g
    g.steady = True
    g.reason = (f"steady growth: {fit.slope * 3600:.0f} bytes/hour over {g.span_seconds:.0f}s, "
                f"R² {fit.r2:.2f}")
    return g


@dataclass(slots=True)
class CrashLoop:
    active: bool
    crashes: float
    rebuilds: float
    threshold: int
    window_seconds: float
    window_start: float
    window_end: float

    def to_dict(self) -> dict:
        return asdict(self)


def crash_loop(crash_deltas: Iterable[Point], rebuild_deltas: Iterable[Point], *, now: float,
               window: float, threshold: int) -> CrashLoop:
    """Crashes and rebuilds (counter increases at their times) within the window; a loop
    when either reaches ``threshold`` (a crash usually causes a rebuild: they are not added)."""
    start = now - window
    crashes = sum(d for t, d in crash_deltas if start < t <= now)
    rebuilds = sum(d for t, d in rebuild_deltas if start < t <= now)
    return CrashLoop(crashes >= threshold or rebuilds >= threshold, crashes, rebuilds,
                     threshold, window, start, now)


def bucket(points: Sequence[Point], *, start: float, step: float, n: int,
           how: str) -> list[float | None]:
    """Values in ``n`` buckets of ``step`` seconds from ``start``: ``last`` (a gauge's
    level at the end of each bucket) or ``sum`` (counter increases); None = no data."""
    out: list[float | None] = [None] * n
    for t, v in points:
        k = int(math.floor((t - start) / step))
        if k < 0 or k >= n:
            continue
        if how == "sum":
            out[k] = (out[k] or 0.0) + v
        else:
            out[k] = v
    return out


def sum_by_time(series: Sequence[Sequence[Point]]) -> list[Point]:
    """Add series point by point at equal times (the samples of one scrape share its time);
    times where fewer series than at most other times reported are left out, so a thread
    missing from one scrape does not look like a drop."""
    by_t: dict[float, list[float]] = {}
    for pts in series:
        for t, v in pts:
            by_t.setdefault(t, []).append(v)
    if not by_t:
        return []
    counts = sorted(len(v) for v in by_t.values())
    usual = counts[len(counts) // 2]
    return [(t, sum(v)) for t, v in sorted(by_t.items()) if len(v) >= usual]
