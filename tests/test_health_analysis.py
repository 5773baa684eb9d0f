"""The pure rules of plugin health: counters across restarts, steady growth vs one spike or
step, projected time to the limit, crash loops, totals over threads. Checked against
numpy-free closed forms (the least-squares slope of an exact line is its slope)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from wasmprof.health import analysis

KW = dict(window=3600.0, min_points=6, min_r2=0.8, min_growth_bytes=65536.0,
          min_growth_ratio=0.05, limit=4.0 * 2 ** 30)
PAGE = 65536.0


def series(values, step=60.0, t0=1_000_000.0):
    return [(t0 + i * step, float(v)) for i, v in enumerate(values)]


def test_counter_increase_handles_resets():
    assert analysis.counter_increase(None, 5) == (None, False)
    assert analysis.counter_increase(5, 9) == (4, False)
    assert analysis.counter_increase(9, 2) == (2, True)       # restarted: 2 since the restart


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=2, max_size=40),
       st.sets(st.integers(min_value=1, max_value=39), max_size=4), st.booleans())
def test_summed_increases_equal_true_events_across_any_restarts(events, restarts, signal):
    """A counter counting ``events`` per interval restarts (from 0) at some intervals. With
    the restart signal (the process' uptime) the increases add up exactly to the events
    after the first sample; without it they are never more than that, and exact whenever
    every restart left the counter below its old value."""
    value, prev, total, hidden = 0, None, 0, False
    for i, e in enumerate(events):
        again = i in restarts
        if again:
            hidden |= e >= value        # climbed back to its old value: not visible
            value = 0
        value += e
        inc, _ = analysis.counter_increase(prev, value, restarted=signal and again)
        if inc is not None:
            total += inc
        prev = value
    if signal or not hidden:
        assert total == sum(events[1:])
    else:
        assert total <= sum(events[1:])


def test_restart_from_uptime():
    assert analysis.restarted(100.0, 1000.0, 5.0, 1030.0)          # younger than the interval
    assert analysis.restarted(5000.0, 1000.0, 4000.0, 5030.0)      # went back (long gap)
    assert not analysis.restarted(100.0, 1000.0, 130.0, 1030.0)
    assert not analysis.restarted(None, None, 3.0, 1030.0)


def test_steady_linear_growth_gives_its_slope_and_time_to_limit():
    pts = series([10 * PAGE + i * PAGE / 2 for i in range(61)])        # +0.5 page/min
    now = pts[-1][0]
    g = analysis.memory_growth(pts, now=now, **KW)
    assert g.steady, g.reason
    assert g.slope == pytest.approx(PAGE / 2 / 60.0)
    assert g.r2 == pytest.approx(1.0)
    assert g.seconds_to_limit == pytest.approx((KW["limit"] - pts[-1][1]) / g.slope)
    assert g.window_end - g.window_start == 3600.0


def test_page_staircase_with_jitter_is_steady():
    rng = random.Random(3)
    vals, v = [], 40 * PAGE
    for i in range(121):                       # 30 s scrapes, one page every ~4 minutes
        if rng.random() < 0.125:
            v += PAGE
        vals.append(v)
    vals[-1] = max(vals[-1], vals[0] + 12 * PAGE)
    g = analysis.memory_growth(series(vals, step=30.0), now=1_000_000.0 + 120 * 30, **KW)
    assert g.steady, g.reason


@pytest.mark.parametrize("shape", ["spike", "step", "plateau", "flat", "shrink"])
def test_not_steady(shape):
    n = 61
    base = [20 * PAGE] * n
    if shape == "spike":
        base[30] = 200 * PAGE
    elif shape == "step":
        base = [20 * PAGE] * 30 + [60 * PAGE] * 31
    elif shape == "plateau":                   # warm-up growth, then flat: not a leak
        base = [20 * PAGE + min(i, 12) * 4 * PAGE for i in range(n)]
    elif shape == "shrink":
        base = [80 * PAGE - i * PAGE for i in range(n)]
    pts = series(base)
    g = analysis.memory_growth(pts, now=pts[-1][0], **KW)
    assert not g.steady, (shape, g.reason)


def test_growth_is_judged_after_the_last_rebuild():
    before = [20 * PAGE + i * PAGE for i in range(40)]          # grew, then the VM was rebuilt
    after = [16 * PAGE] * 21
    pts = series(before + after)
    g = analysis.memory_growth(pts, now=pts[-1][0], **KW)
    assert not g.steady and g.points == 21


def test_too_few_points_or_too_little_span():
    g = analysis.memory_growth(series([1, 2, 3]), now=1_000_120.0, **KW)
    assert not g.steady and "samples" in g.reason
    pts = series([PAGE * i for i in range(10)], step=10.0)
    g = analysis.memory_growth(pts, now=pts[-1][0], **KW)
    assert not g.steady and "cover" in g.reason


def test_crash_loop_threshold_counts_crashes_or_rebuilds_not_both():
    now = 10_000.0
    crashes = [(now - 500, 1), (now - 300, 1)]
    rebuilds = [(now - 500, 1), (now - 300, 1)]
    assert not analysis.crash_loop(crashes, rebuilds, now=now, window=600, threshold=3).active
    crashes.append((now - 10, 1))
    cl = analysis.crash_loop(crashes, rebuilds, now=now, window=600, threshold=3)
    assert cl.active and (cl.crashes, cl.rebuilds) == (3, 2)
    assert not analysis.crash_loop([(now - 700, 5)], [], now=now, window=600, threshold=3).active


def test_sum_by_time_skips_scrapes_missing_a_thread():
    a = series([1, 1, 1, 1])
    b = series([2, 2, 2, 2])
    del b[2]
    assert [v for _, v in analysis.sum_by_time([a, b])] == [3, 3, 3]


def test_buckets():
    pts = [(0.0, 1.0), (5.0, 2.0), (12.0, 3.0)]
    assert analysis.bucket(pts, start=0, step=10, n=3, how="last") == [2.0, 3.0, None]
    assert analysis.bucket(pts, start=0, step=10, n=3, how="sum") == [3.0, 3.0, None]
