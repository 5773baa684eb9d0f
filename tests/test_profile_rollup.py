"""Hourly/daily rollups (wasmprof.server.profile_rollup) give exactly the raw rows' answer
(SQLite and PostgreSQL): for windows with ragged edges, plugin/version filters, several perf
events, open ranges; label filters read raw; new data, downsampling, late modules
(re-resolved stacks) and rebuilds keep them in step; an existing database upgrades in place."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from profile_gen import StackModel, aot_ranges
from wasmprof.binary.loader import load_module
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.server.profile_query import QueryBudget, Selection
from wasmprof.server.service import Service

pytestmark = pytest.mark.slow

FIB_AOT, FIB_WASM = "aot/fib.O2.perf.aot", "wasm/fib.O2.wasm"
STRIPPED, DEBUG = "wasm/crash_oob.O2.strip-debug.wasm", "wasm/crash_oob.O2.wasm"
H, D = 3600, 86400


@pytest.fixture
def svc(db_url, tmp_path):
    s = Service(ServerConfig(store=resolve_store(tmp_path / "d", db_url), background=False))
    yield s
    s.close()


@pytest.fixture(scope="module")
def fib(data_dir):
    return load_module(str(data_dir / FIB_AOT))


def _upload(svc, data_dir, plugin, *paths):
    for p in paths:
        svc.upload_module((data_dir / p).read_bytes(), Path(p).name, plugin=plugin,
                          version=None, background=False)


def _ingest(svc, fib, seed, t0, plugin, version=None, labels=None, n=120):
    doc = StackModel(aot_ranges(fib), seed).batch(n, module_id="fib", text_base=0x7F00_0000_0000,
                                                  text_size=1 << 20, t0=t0)
    svc.profiles.ingest(orjson.dumps(doc), fmt="agent-json", aux=None, plugin=plugin,
                        version=version, labels=labels or {})


def _settle(svc, t):
    while svc.profiles.maintain(t):
        pass
    with svc.db.read() as tx:
        return (tx.scalar("SELECT COUNT(*) AS n FROM profile_rollups"),
                tx.scalar("SELECT COUNT(*) AS n FROM profile_rollup_dirty"))


def _same(svc, sel, group_by=None, *, rolled=True):
    """Rollup answer == raw answer (sums, first/last, series used, the built profile)."""
    q = svc.profiles.query
    with svc.db.read() as tx:
        a = q.sums(tx, sel, QueryBudget(), group_by)
        b = q.sums(tx, sel, QueryBudget(), group_by, rollups=False)
        pa, pb = q.build(tx, sel, a, QueryBudget()), q.build(tx, sel, b, QueryBudget())
    assert sorted(map(str, a.groups)) == sorted(map(str, b.groups)), sel
    for g in b.groups:
        assert np.array_equal(a.groups[g][0], b.groups[g][0]), (sel, g)
        assert np.array_equal(a.groups[g][1], b.groups[g][1]), (sel, g)
    assert (a.first, a.last, a.used, a.notes) == (b.first, b.last, b.used, b.notes), sel
    key = lambda p: sorted((tuple(map(repr, s.stack)), s.count, s.thread or "")  # noqa: E731
                           for s in p.samples)
    assert key(pa) == key(pb) and (pa.start, pa.end, pa.notes) == (pb.start, pb.end, pb.notes)
    if rolled:
        assert a.rows < b.rows, (sel, a.rows, b.rows)          # the rollups were used
    else:
        assert a.rows == b.rows, sel                            # raw only
    return b


def test_rollups_equal_raw_rows_and_stay_in_step(svc, data_dir, fib):
    for p in ("a", "b"):
        _upload(svc, data_dir, p, FIB_WASM, FIB_AOT)
    rng = random.Random(3)
    t = (time.time() // H) * H - 17
    for i in range(48):                     # 4 days back, ragged times, 2 versions, 3 pods
        _ingest(svc, fib, i, t - rng.random() * 4 * D, rng.choice("ab"), rng.choice(["1", "2"]),
                {"pod": f"p{rng.randrange(3)}"})
    for i, ev in enumerate(("cycles", "cycles", "instructions")):   # two perf events
        _ingest(svc, fib, 100 + i, t - (i + 1) * 20 * H, "a", "1", {"event": ev})
    rollups, dirty = _settle(svc, t + 120)
    assert rollups and dirty == 0

    sels = [Selection(start=t - 7 * D, end=t), Selection(),
            Selection(start=t - 50 * H - 1234.5, end=t - 3 * H - 17.25),
            Selection(plugin="a", start=t - 3 * D - 5, end=t - 7),
            Selection(plugin="b", version="2", start=t - 4 * D, end=t - D + 1),
            Selection(version="1", end=t - 30 * H), Selection(start=t - 60 * H)]
    for sel in sels:
        for g in (None, "thread"):
            _same(svc, sel, g)
    _same(svc, Selection(start=t - 20 * H - 1800, end=t - 20 * H - 1), rolled=False)  # < 1 h
    for labels in ({"pod": "p1"}, {"event": "instructions"}, {"thread": "worker_1"}):
        b = _same(svc, Selection(labels=labels, start=t - 7 * D, end=t), rolled=False)
        assert b.rows                        # label filters: raw rows, never the rollups
    with svc.db.read() as tx:                # (which would have answered for every pod)
        whole = svc.profiles.query.sums(tx, Selection(start=t - 7 * D, end=t), QueryBudget(), None)
        pod = svc.profiles.query.sums(tx, Selection(labels={"pod": "p1"}, start=t - 7 * D, end=t),
                                      QueryBudget(), None)
    assert 0 < pod.total < whole.total

    # new data in a rolled-up day is read raw until the rollup is recomputed
    wide = Selection(start=t - 7 * D, end=t)
    before = _same(svc, wide).total
    _ingest(svc, fib, 200, t - 2 * D - 5 * H, "a", "1", {"pod": "p0"})
    with svc.db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) AS n FROM profile_rollup_dirty") == 1
    assert _same(svc, wide).total == before + 120
    _settle(svc, t + 120)
    assert _same(svc, wide).total == before + 120
    # downsampling (a day later: 10 s → 1 min rows) changes first/last: kept in step
    _settle(svc, t + D + 120)
    for sel in sels[:4]:
        _same(svc, sel, "thread")

    # a plugin without modules: pending frames; the late module re-resolves them
    for i in range(12):
        _ingest(svc, fib, 300 + i, t - i // 2 * 11 * H, "late", None, {"pod": f"p{i % 2}"})
    _settle(svc, t + D + 120)
    late = Selection(plugin="late", start=t - 3 * D, end=t)
    unresolved = _same(svc, late)
    _upload(svc, data_dir, "late", FIB_WASM, FIB_AOT)
    svc.profiles.on_modules_changed("late")
    resolved = _same(svc, late, rolled=False)          # dirty days: raw
    assert len(resolved.groups["samples"][0]) < len(unresolved.groups["samples"][0])
    _settle(svc, t + D + 120)
    assert np.array_equal(_same(svc, late).groups["samples"][1], resolved.groups["samples"][1])


def test_rebuilt_scope_rebuilds_its_rollups(svc, data_dir):
    m = load_module(str(data_dir / DEBUG))
    bodies = [(f.body_start, f.body_end) for f in m.functions
              if not f.imported and f.body_start is not None and f.body_end - f.body_start > 16]
    _upload(svc, data_dir, "rb", STRIPPED)
    rng = random.Random(1)
    t = (time.time() // H) * H
    for k in range(4):
        samples = [{"stack": [{"offset": rng.randrange(a + 1, b), "space": "file"}
                              for a, b in (rng.choice(bodies) for _ in range(3))],
                    "count": 1, "timestamp": t - (k * 7 + 3) * H + i, "thread": "w"}
                   for i in range(40)]
        svc.profiles.ingest(orjson.dumps({"samples": samples}), fmt="agent-json", aux=None,
                            plugin="rb", version=None, labels={})
    _settle(svc, time.time())
    sel = Selection(plugin="rb", start=t - 2 * D, end=t)
    lines = lambda: {f.line for s in svc.profiles.symbolized(sel, group_by=None).samples  # noqa: E731
                     for f in s.stack}
    _same(svc, sel)
    assert lines() == {None}
    _upload(svc, data_dir, "rb", DEBUG)                # a rebuild from the raw inputs
    _settle(svc, time.time())
    (rb,) = svc.profiles.summary(Selection(plugin="rb"))["rebuilds"]
    assert rb["state"] == "done" and rb["windows_rebuilt"] >= 1, rb
    _same(svc, sel)
    assert len(lines() - {None}) > 5                   # the rollups hold the rebuilt frames


def test_upgrade_marks_existing_days_for_rollups(tmp_path, data_dir, fib):
    """A store made before migration 3 (its tables dropped, its version forgotten) upgrades
    in place: every day with data is marked, queries read raw rows until the background pass
    has computed the rollups."""
    store = resolve_store(tmp_path / "old")
    old = Service(ServerConfig(store=store, background=False))
    _upload(old, data_dir, "up", FIB_WASM, FIB_AOT)
    t = (time.time() // H) * H
    for i in range(10):
        _ingest(old, fib, i, t - i // 2 * 9 * H - 600, "up", None, {"pod": f"p{i % 2}"})
    with old.db.tx() as tx:
        tx.execute("DROP TABLE profile_rollups")
        tx.execute("DROP TABLE profile_rollup_dirty")
        tx.execute("DELETE FROM schema_migrations WHERE component = 'profiles' AND version = 3")
    old.close()
    svc = Service(ServerConfig(store=store, background=False))
    try:
        sel = Selection(start=t - 3 * D, end=t)
        with svc.db.read() as tx:
            assert tx.scalar("SELECT COUNT(*) AS n FROM profile_rollup_dirty") >= 2
        _same(svc, sel, rolled=False)
        assert _settle(svc, time.time())[1] == 0
        _same(svc, sel)
    finally:
        svc.close()
