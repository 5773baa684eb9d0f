"""The profile store in-process (SQLite and PostgreSQL): ingest aggregates with the CLI's
symbolization, queries equal the CLI's output, late modules re-resolve pending frames
without re-parsing, old data directories are backfilled, downsampling keeps every count,
budgets stop oversized queries."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import orjson
import pytest

from profile_gen import StackModel, aot_ranges
from wasmprof.binary.loader import load_module
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.errors import LogFormatError
from wasmprof.flamegraph.folded import folded_lines
from wasmprof.ingest.agent_json import parse_agent_json
from wasmprof.profiles import Symbolizer, symbolize_profile
from wasmprof.server.profile_ingest import ScopeResolver, frame_content
from wasmprof.server.profile_query import QueryBudget, QueryCancelled, QueryTooLarge, Selection
from wasmprof.server.service import Service

pytestmark = pytest.mark.slow

FIB_AOT = "aot/fib.O2.perf.aot"
FIB_WASM = "wasm/fib.O2.wasm"


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request, tmp_path):
    db = None
    if request.param == "postgres":
        db = request.getfixturevalue("pg_cluster").create_database(f"store{time.time_ns()}")
    service = Service(ServerConfig(store=resolve_store(tmp_path / "data", db), background=False))
    yield service
    service.close()


@pytest.fixture(scope="module")
def sqlite_svc(tmp_path_factory):
    """One SQLite service shared by the many small validation cases."""
    service = Service(ServerConfig(store=resolve_store(tmp_path_factory.mktemp("poison") / "d"),
                                   background=False))
    yield service
    service.close()


@pytest.fixture(scope="module")
def fib(data_dir):
    return load_module(str(data_dir / FIB_AOT))


def _upload(svc, data_dir, plugin, *paths):
    for p in paths:
        svc.upload_module((data_dir / p).read_bytes(), Path(p).name, plugin=plugin, version=None,
                          background=False)


def _batch(fib, seed, n=400, t0=None):
    model = StackModel(aot_ranges(fib), seed)
    return model.batch(n, module_id="fib", text_base=0x7F00_0000_0000, text_size=1 << 20,
                       t0=t0 if t0 is not None else time.time() - 600)


def _folded(svc, sel):
    body, _ = svc.profiles.export(sel, "folded")
    return b"".join(body).decode().splitlines()


def _cli_folded(svc, plugin, batches):
    mods = []
    for _, m in svc.registry.modules_for(plugin, None):
        mods.append(m)
        if m.companion is not None and m.companion not in mods:
            mods.append(m.companion)
    sym = []
    for b in batches:
        sym.append(symbolize_profile(parse_agent_json(orjson.dumps(b)), mods, svc.resolver))
    from wasmprof.profiles import merge_profiles
    return folded_lines(merge_profiles(sym))


def test_query_equals_the_cli_and_distinct_pcs_collapse(svc, data_dir, fib):
    _upload(svc, data_dir, "fib", FIB_WASM, FIB_AOT)
    batches = [_batch(fib, s) for s in range(3)]
    for b in batches:
        r = svc.profiles.ingest(orjson.dumps(b), fmt="agent-json", aux=None, plugin="fib",
                                version=None, labels={"pod": "a"})
        assert r["samples"] == 400 and r["pending_frames"] == 0
    got = _folded(svc, Selection(plugin="fib"))
    assert got == _cli_folded(svc, "fib", batches)
    assert not any("aot_func#" in ln or "[unknown];" in ln.split(" ")[0][-10:] for ln in got[:0])
    # 1,200 distinct leaf PCs resolve to far fewer frames and stacks
    with svc.db.read() as tx:
        frames = tx.scalar("SELECT COUNT(*) AS n FROM profile_frames")
        stacks = tx.scalar("SELECT COUNT(*) AS n FROM profile_stacks")
    assert frames < 120 and stacks <= 3 * 120, (frames, stacks)
    names = {ln.rsplit(" ", 1)[0].split(";")[-1] for ln in got}
    assert {f.name for f in fib.functions if f.name} & names


def test_fast_function_lookup_equals_the_symbolizer(data_dir, fib):
    """The store keys an AOT text offset by the function holding it; every offset must
    resolve exactly as the CLI's Symbolizer resolves it one by one."""
    from wasmprof.addr2line.resolver import Resolver
    import threading
    mods = [load_module(str(data_dir / FIB_AOT)), load_module(str(data_dir / FIB_WASM))]
    resolver = Resolver()
    scope = ScopeResolver("fib", None, mods, resolver, threading.Lock())
    p = parse_agent_json(orjson.dumps(_batch(fib, 7, n=300)))
    raws = list({id(r): r for s in p.samples for r in s.stack}.values())
    sym = Symbolizer(mods, resolver)      # one cache for leaves and callers, as the CLI's
    for raw in raws:
        want = [frame_content(f, None)[:12] for f in sym.frames_for(raw)]
        got = [c[:12] for _fid, c, _p in scope.chain(raw).info]
        assert got == want, raw
    assert len(raws) > 300


@pytest.mark.parametrize("sample, field", [
    ({"stack": [1], "count": -5}, "samples[1].count"),
    ({"stack": [1], "count": 1.5}, "samples[1].count"),
    ({"stack": [1], "count": 1e30}, "samples[1].count"),
    ({"stack": [1], "count": 1 << 60}, "samples[1].count"),
    ({"stack": [1], "count": "3"}, "samples[1].count"),
    ({"stack": [1], "count": True}, "samples[1].count"),
    ({"stack": ["zz"]}, "samples[1].stack[0]"),
    ({"stack": [-1]}, "samples[1].stack[0]"),
    ({"stack": [1.5]}, "samples[1].stack[0]"),
    ({"stack": ["0x1" + "0" * 17]}, "samples[1].stack[0]"),
    ({"stack": [{"offset": 1, "space": []}]}, "samples[1].stack[0].space"),
    ({"stack": [{"offset": 1, "space": "nope"}]}, "samples[1].stack[0].space"),
    ({"stack": [{"offset": "x", "space": "v8"}]}, "samples[1].stack[0].offset"),
    ({"stack": [1], "timestamp": 0}, "samples[1].timestamp"),
    ({"stack": [1], "timestamp": "now"}, "samples[1].timestamp"),
    ({"stack": [1] * 5000}, "samples[1].stack"),
    ({"stack": []}, "samples[1].stack"),
    ({"stack": [1], "thread": 5}, "samples[1].thread"),
])
def test_poisoned_batches_are_refused_whole(sqlite_svc, fib, sample, field):
    svc = sqlite_svc
    good = _batch(fib, 1, n=20)
    svc.profiles.ingest(orjson.dumps(good), fmt="agent-json", aux=None, plugin="p",
                        version=None, labels={})
    before = _folded(svc, Selection(plugin="p"))
    with svc.db.read() as tx:
        inputs = tx.scalar("SELECT COUNT(*) AS n FROM profile_inputs")
    bad = {"samples": [good["samples"][0], sample]}
    with pytest.raises(LogFormatError) as e:
        svc.profiles.ingest(orjson.dumps(bad), fmt="agent-json", aux=None, plugin="p",
                            version=None, labels={})
    assert field in str(e.value)
    with svc.db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) AS n FROM profile_inputs") == inputs
    assert _folded(svc, Selection(plugin="p")) == before


def test_late_module_re_resolves_pending_frames_without_inputs(svc, data_dir, fib, caplog):
    batches = [_batch(fib, s, n=300) for s in (11, 12)]
    for b in batches:
        r = svc.profiles.ingest(orjson.dumps(b), fmt="agent-json", aux=None, plugin="late",
                                version=None, labels={"pod": "x"})
        assert r["pending_frames"] > 0
    before = _folded(svc, Selection(plugin="late"))
    total = sum(int(ln.rsplit(" ", 1)[1]) for ln in before)
    assert all("fib" not in ln for ln in before)
    with svc.db.tx() as tx:           # the raw inputs are gone: only the store can answer
        tx.execute("DELETE FROM profile_inputs")
    _upload(svc, data_dir, "late", FIB_WASM, FIB_AOT)   # calls on_modules_changed("late")
    after = _folded(svc, Selection(plugin="late"))
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in after) == total
    assert after == _cli_folded(svc, "late", batches)
    with svc.db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) AS n FROM profile_pending WHERE plugin = 'late'") == 0


def test_downsampling_and_compaction_keep_every_count(svc, data_dir, fib):
    _upload(svc, data_dir, "ds", FIB_WASM, FIB_AOT)
    t = time.time()
    for i, age in enumerate((30 * 86400.0, 9 * 86400, 2 * 86400, 3600, 3600)):
        svc.profiles.ingest(orjson.dumps(_batch(fib, 20 + i, n=200, t0=t - age)), fmt="agent-json",
                            aux=None, plugin="ds", version=None, labels={})
    sel = Selection(plugin="ds")
    before = _folded(svc, sel)
    tl_before = svc.profiles.timeline(sel, step=86400)
    with svc.db.read() as tx:
        rows_before = tx.scalar("SELECT COUNT(*) AS n FROM profile_counts")
    while svc.profiles.maintain(t + 120):
        pass
    with svc.db.read() as tx:
        widths = {r["width"]: r["n"] for r in tx.all(
            "SELECT width, COUNT(*) AS n FROM profile_counts GROUP BY width")}
        rows_after = tx.scalar("SELECT COUNT(*) AS n FROM profile_counts")
    assert set(widths) == {10, 60, 3600} and rows_after < rows_before, widths
    assert _folded(svc, sel) == before
    tl_after = svc.profiles.timeline(sel, step=86400)
    assert sum(v for s in tl_after["series"] for _, v in s["points"]) == \
        sum(v for s in tl_before["series"] for _, v in s["points"]) == 1000
    # a window that covers only the newest hour
    recent = _folded(svc, Selection(plugin="ds", start=t - 7200))
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in recent) == 400


def test_upgrade_backfills_stored_inputs(tmp_path, data_dir, fib, monkeypatch, caplog):
    """A data directory of the previous version (raw inputs only, no store tables) upgrades
    in place: the inputs are aggregated in the background; one that fails today's checks is
    skipped with a logged note, never a 500."""
    from wasmprof.store import migrations
    from wasmprof.store.db import Database
    store = resolve_store(tmp_path / "old")
    store.data_dir.mkdir(parents=True)
    old = {k: v for k, v in migrations.EXTENSION_MODULES.items() if k != "profiles"}
    monkeypatch.setattr(migrations, "EXTENSION_MODULES", old)
    db = Database.open(store.db_url)
    migrations.migrate(db)
    good = _batch(fib, 3, n=100)
    poisoned = {"samples": [{"stack": [1], "count": -5}]}
    t = time.time()
    with db.tx() as tx:
        for doc in (good, poisoned, good):
            data = orjson.dumps(doc)
            tx.execute("INSERT INTO profile_inputs (format, plugin, version, labels, name, "
                       "sample_count, start_ts, end_ts, size, data, received_at) VALUES "
                       "('agent-json', 'up', NULL, '{\"pod\": \"a\"}', NULL, ?, ?, ?, ?, ?, ?)",
                       (len(doc["samples"]), t, t, len(data), data, t))
    db.close()
    monkeypatch.undo()
    svc = Service(ServerConfig(store=store, background=False))
    try:
        with caplog.at_level(logging.WARNING):
            assert svc.profiles.summary(Selection(plugin="up"))["backfill_pending"] == 3
            while svc.profiles.backfill():
                pass
        assert "profile input 2" in caplog.text and "skipped" in caplog.text
        got = _folded(svc, Selection(plugin="up", labels={"pod": "a"}))
        assert sum(int(ln.rsplit(" ", 1)[1]) for ln in got) == 200
        with svc.db.read() as tx:
            assert [r["derived"] for r in tx.all("SELECT derived FROM profile_inputs ORDER BY id")] \
                == [1, -1, 1]
    finally:
        svc.close()


def test_budgets_stop_oversized_and_cancelled_queries(svc, fib):
    for s in range(3):
        svc.profiles.ingest(orjson.dumps(_batch(fib, s, n=100)), fmt="agent-json", aux=None,
                            plugin="big", version=None, labels={})
    with pytest.raises(QueryTooLarge) as e:
        svc.profiles.symbolized(Selection(plugin="big"), QueryBudget(max_pairs=10))
    assert e.value.http_status == 413 and "time range" in str(e.value)
    b = QueryBudget()
    b.cancel.set()
    with pytest.raises(QueryCancelled):
        svc.profiles.symbolized(Selection(plugin="big"), b)


def test_relative_clock_recordings_land_at_wall_time(svc, data_dir):
    """perf script times are seconds since boot: the recording is placed so it ends when it
    arrived (or where from/to say)."""
    script = (data_dir / "perf" / "fib.O2.perf.g.perf-script.txt").read_bytes()
    t = time.time()
    r = svc.profiles.ingest(script, fmt=None, aux=None, plugin="rel", version=None, labels={})
    assert t - 60 < r["start"] <= r["end"] <= time.time() + 1
    r2 = svc.profiles.ingest(script, fmt=None, aux=None, plugin="rel2", version=None, labels={},
                             start=t - 86400)
    assert abs(r2["start"] - (t - 86400)) < 1


@pytest.mark.parametrize("with_modules", [True, False])
def test_columnar_fast_path_equals_the_general_path(data_dir, fib, with_modules):
    """Plain-PC batches go through arrays (parse_agent_columns + aggregate_columns); the
    result must equal parse_agent_json + aggregate exactly: same stacks, frames, counts,
    series and pending frames — with host PCs, two modules, PCs outside every function,
    sample labels, missing timestamps, counts > 1."""
    import threading
    from wasmprof.addr2line.resolver import Resolver
    from wasmprof.ingest.agent_json import parse_agent_columns
    from wasmprof.server.profile_ingest import aggregate, aggregate_columns
    # fresh objects: a Module shared with other tests may carry a companion link from them
    mods = [load_module(str(data_dir / FIB_AOT)), load_module(str(data_dir / FIB_WASM))] \
        if with_modules else []
    doc = _batch(fib, 41, n=500)
    rng = random.Random(3)
    doc["modules"].append({"id": "other", "text_base": 0x10, "text_size": 0x100})
    for i, s in enumerate(doc["samples"]):
        if i % 7 == 0:
            s["stack"].insert(1, 0x20 + i % 5)                      # the second module
        if i % 11 == 0:
            s["stack"][0] = 0x7F00_0000_0000 + (1 << 20) - 1 - i    # past the AOT code
        if i % 5 == 0:
            s["labels"] = {"route": f"/r{i % 3}"}
        if i % 13 == 0:
            del s["timestamp"]
        s["count"] = rng.randrange(0, 4)
    data = orjson.dumps(doc)
    lock = threading.Lock()
    resolver = Resolver()
    cols = parse_agent_columns(data, "b")
    assert cols is not None
    fast = aggregate_columns(cols, ScopeResolver("p", None, mods, resolver, lock), plugin="p",
                             version=None, labels={"pod": "a"}, anchor=1000.0)
    slow = aggregate([parse_agent_json(data, "b")], ScopeResolver("p", None, mods, resolver, lock),
                     plugin="p", version=None, labels={"pod": "a"}, anchor=1000.0)

    def norm(b):
        series = [s.key() for s in b.series]
        cells = {(series[si], bk): {k: v for k, v in c.items() if v} for (si, bk), c in b.cells.items()}
        return (cells, b.stacks, b.frames, b.pending, b.stack_pending, b.samples, b.weight)

    assert norm(fast) == norm(slow)
    if with_modules:       # named frames, and PCs past the AOT code stay pending
        assert any(c[0] and c[12] for c in fast.frames.values()) and fast.pending
    else:
        assert fast.pending and not any(c[12] for c in fast.frames.values())


def test_function_intervals_equal_function_at(data_dir, shared_fixtures_or_none):
    import bisect
    paths = sorted((data_dir / "aot").glob("*.aot"))
    if shared_fixtures_or_none is not None:
        paths += sorted((shared_fixtures_or_none / "aot").glob("*.aot"))
    rng = random.Random(1)
    checked = 0
    for path in paths:
        try:
            aot = load_module(str(path)).aot
        except LogFormatError:
            continue
        if aot is None:
            continue
        starts, results = aot.function_intervals()
        points = {x for st in starts[1:] for x in (st - 1, st, st + 1)}
        points |= {rng.randrange(-8, aot.code_size + 8) for _ in range(200)}
        for x in points:
            assert aot.function_at(x) == results[bisect.bisect_right(starts, x) - 1], (path, x)
            checked += 1
    assert checked > 1000


def test_concurrent_replicas_never_deadlock(pg_cluster, tmp_path, data_dir, fib):
    """Two services on one PostgreSQL database (replicas) ingesting concurrently batches that
    create overlapping new frames and stacks: every batch is stored (rows are inserted in key
    order, lock conflicts are retried), none fails."""
    import threading
    db = pg_cluster.create_database(f"race{time.time_ns()}")
    svcs = [Service(ServerConfig(store=resolve_store(tmp_path / f"r{i}", db), background=False))
            for i in range(2)]
    try:
        for s in svcs[:1]:
            _upload(s, data_dir, "race", FIB_WASM, FIB_AOT)
        errors: list[BaseException] = []
        done: list[int] = []

        def worker(k: int) -> None:
            svc = svcs[k % 2]
            for j in range(4):
                doc = _batch(fib, 100 + k * 10 + j, n=200)
                try:
                    svc.profiles.ingest(orjson.dumps(doc), fmt="agent-json", aux=None,
                                        plugin="race", version=None, labels={"w": str(k)})
                    done.append(1)
                except BaseException as e:  # noqa: BLE001 - collected for the assertion
                    errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(done) == 32, errors[:3]
        got = _folded(svcs[1], Selection(plugin="race"))
        assert sum(int(ln.rsplit(" ", 1)[1]) for ln in got) == 32 * 200
    finally:
        for s in svcs:
            s.close()
