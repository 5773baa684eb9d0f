"""A better module set for a scope whose frames were already resolved rebuilds the scope's
derived rows from its retained raw inputs (SQLite and PostgreSQL): the result equals the
CLI's symbolization with the new modules; data whose raw inputs expired keeps its old
symbols and says so; the rebuild is idempotent, shows its progress in the summary, takes in
inputs that arrive meanwhile, and moves to another replica when its claim goes stale."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest

from wasmprof.binary.loader import load_module
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.flamegraph.folded import folded_lines
from wasmprof.ingest.agent_json import parse_agent_json
from wasmprof.profiles import merge_profiles, symbolize_profile
from wasmprof.server.profile_query import Selection
from wasmprof.server.service import Service

pytestmark = pytest.mark.slow

STRIPPED = "wasm/crash_oob.O2.strip-debug.wasm"      # names, no DWARF: function-only frames
DEBUG = "wasm/crash_oob.O2.wasm"                     # the same code with DWARF: file:line
HOUR = 3600


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    if request.param == "postgres":
        return request.getfixturevalue("pg_cluster").create_database(f"rb{time.time_ns()}")
    return None


def _service(tmp_path: Path, db: str | None, name: str = "d") -> Service:
    return Service(ServerConfig(store=resolve_store(tmp_path / name, db), background=False))


@pytest.fixture
def svc(tmp_path, db):
    s = _service(tmp_path, db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def bodies(data_dir):
    m = load_module(str(data_dir / DEBUG))
    return [(f.body_start, f.body_end) for f in m.functions
            if not f.imported and f.body_start is not None and f.body_end - f.body_start > 16]


def _batch(bodies, seed: int, t0: float, n: int = 60) -> dict:
    """Wasm file-offset stacks (a leaf and 1-3 callers) inside the module's real bodies."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        frames = [rng.choice(bodies) for _ in range(rng.randint(2, 4))]
        samples.append({"stack": [{"offset": rng.randrange(a + 1, b), "space": "file"}
                                  for a, b in frames],
                        "count": rng.randint(1, 3), "timestamp": t0 + i * 0.5,
                        "thread": f"w{i % 2}"})
    return {"samples": samples}


def _upload(svc, data_dir, path, plugin="rb"):
    svc.upload_module((data_dir / path).read_bytes(), Path(path).name, plugin=plugin,
                      version=None, background=False)


def _ingest(svc, doc, plugin="rb"):
    return svc.profiles.ingest(orjson.dumps(doc), fmt="agent-json", aux=None, plugin=plugin,
                               version=None, labels={"pod": "a"})


def _folded(svc, sel):
    body, _ = svc.profiles.export(sel, "folded")
    return sorted(b"".join(body).decode().splitlines())


def _cli(data_dir, paths, docs):
    mods = [load_module(str(data_dir / p)) for p in paths]
    return sorted(folded_lines(merge_profiles(
        [symbolize_profile(parse_agent_json(orjson.dumps(d)), mods) for d in docs])))


def _lines_of(svc, sel):
    """(file, line) of every frame in the selection's profile."""
    prof = svc.profiles.symbolized(sel, group_by=None)
    return {(f.file, f.line) for s in prof.samples for f in s.stack}


def _window(t0):
    return Selection(plugin="rb", start=t0, end=t0 + 59)


def test_better_module_rebuilds_resolved_frames_from_raw_inputs(svc, data_dir, bodies):
    t = (time.time() // HOUR - 4) * HOUR
    times = [t, t + HOUR, t + 2 * HOUR]                 # three windows of an hour
    docs = [_batch(bodies, 7 + i, t0) for i, t0 in enumerate(times)]
    _upload(svc, data_dir, STRIPPED)
    for d in docs:
        assert _ingest(svc, d)["pending_frames"] == 0    # resolved: names, no lines
    assert _folded(svc, Selection(plugin="rb")) == _cli(data_dir, [STRIPPED], docs)
    assert _lines_of(svc, Selection(plugin="rb")) == {(None, None)}
    with svc.db.tx() as tx:           # the oldest input expired: its window cannot be rebuilt
        tx.execute("DELETE FROM profile_inputs WHERE id = (SELECT MIN(id) FROM profile_inputs)")

    _upload(svc, data_dir, DEBUG)     # the debug build arrives: a rebuild is planned
    (rb,) = svc.profiles.summary(Selection(plugin="rb"))["rebuilds"]
    assert rb["state"] == "running" and rb["inputs_total"] == 2 and rb["inputs_done"] == 0
    assert _lines_of(svc, Selection(plugin="rb")) == {(None, None)}   # not yet

    while svc.profiles.maintain():
        pass
    (rb,) = svc.profiles.summary(Selection(plugin="rb"))["rebuilds"]
    assert (rb["state"], rb["inputs_done"], rb["windows_rebuilt"], rb["windows_kept"],
            rb["swapped"]) == ("done", 2, 2, 1, 1.0), rb
    # the two windows with raw inputs: exactly the CLI's answer with the debug build
    for t0, d in zip(times[1:], docs[1:]):
        assert _folded(svc, _window(t0)) == _cli(data_dir, [STRIPPED, DEBUG], [d])
        assert len({ln for _f, ln in _lines_of(svc, _window(t0)) if ln}) > 5
    # the expired one keeps its old symbols, and the profile says so
    assert _folded(svc, _window(times[0])) == _cli(data_dir, [STRIPPED], docs[:1])
    notes = svc.profiles.symbolized(Selection(plugin="rb")).notes
    assert any("could not be rebuilt" in n and "expired" in n for n in notes), notes
    total = sum(s["count"] for d in docs for s in d["samples"])
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in _folded(svc, Selection(plugin="rb"))) == total

    # idempotent: nothing is stale any more, another pass changes nothing
    with svc.db.read() as tx:
        keys = {r["modules"] for r in tx.all("SELECT modules FROM profile_inputs")}
    assert keys == {svc.profiles.scope("rb", None).modules_hash}
    before = _folded(svc, Selection(plugin="rb"))
    assert svc.profiles.rebuilds.plan() == 0
    svc.profiles.maintain(time.time() + 3600)
    assert _folded(svc, Selection(plugin="rb")) == before


def test_rebuild_takes_in_late_inputs_and_moves_to_another_replica(tmp_path, db, data_dir,
                                                                    bodies):
    a = _service(tmp_path, db, "a")
    b = _service(tmp_path, db, "b") if db else None     # replicas share one PostgreSQL
    b = b or Service(ServerConfig(store=a.config.store, background=False))  # or one SQLite
    try:
        t = (time.time() // HOUR - 30) * HOUR            # some of it downsampled
        times = [t + k * 7 * HOUR for k in range(4)]
        docs = [_batch(bodies, 30 + i, t0) for i, t0 in enumerate(times)]
        _upload(a, data_dir, STRIPPED)
        for d in docs:
            _ingest(a, d)
        while a.profiles.maintain():
            pass
        _upload(a, data_dir, DEBUG)
        ra = a.profiles.rebuilds
        claim = ra._claim()
        assert claim is not None and ra.step(claim, a.profiles.scope("rb", None))
        assert b.profiles.rebuilds._claim() is None       # a holds it
        # an input arriving during the rebuild (derived with the new modules already)
        late = _batch(bodies, 99, t + 14 * HOUR + 600)
        _ingest(b, late)
        with a.db.tx() as tx:                             # a dies: its claim goes stale
            tx.execute("UPDATE profile_rebuilds SET claimed_at = claimed_at - 3600")
        assert b.profiles.rebuilds.run() == 0             # b takes over and finishes it
        (rb,) = b.profiles.summary(Selection(plugin="rb"))["rebuilds"]
        assert rb["state"] == "done" and rb["windows_kept"] == 0, rb
        assert _folded(b, Selection(plugin="rb")) == \
            _cli(data_dir, [STRIPPED, DEBUG], [*docs, late])
        assert not ra.work(1.0)                           # nothing left for a
    finally:
        a.close()
        b.close()


def test_a_module_change_during_a_rebuild_supersedes_it(svc, data_dir, bodies):
    t = (time.time() // HOUR - 3) * HOUR
    docs = [_batch(bodies, 50 + i, t + i * HOUR) for i in range(2)]
    _upload(svc, data_dir, STRIPPED)
    for d in docs:
        _ingest(svc, d)
    _upload(svc, data_dir, DEBUG)
    first = svc.profiles.summary(Selection(plugin="rb"))["rebuilds"][0]
    _upload(svc, data_dir, "wasm/crash_oob.O2d4.wasm")   # yet another build linked
    svc.profiles.rebuilds.run("rb")
    states = {r["id"]: r["state"] for r in svc.profiles.summary(Selection(plugin="rb"))["rebuilds"]}
    assert states[first["id"]] == "superseded" and "done" in states.values(), states
    got = _folded(svc, Selection(plugin="rb"))
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in got) == \
        sum(s["count"] for d in docs for s in d["samples"])


def test_inputs_of_unknown_module_set_are_rebuilt_to_the_same_answer(svc, data_dir):
    """Inputs stored before module sets were recorded (NULL, as after an upgrade) are stale:
    they are rebuilt once, and with the same modules the answer is exactly what ingest made
    (agent PCs through the AOT fast path and a perf script with its map and relative clock)."""
    from profile_gen import StackModel, aot_ranges
    aot = "aot/fib.O2.perf.aot"
    for p in ("wasm/fib.O2.wasm", aot):
        _upload(svc, data_dir, p)
    fib = load_module(str(data_dir / aot))
    model = StackModel(aot_ranges(fib), 3)
    t = time.time() - 5 * HOUR
    for k in range(3):
        doc = model.batch(300, module_id="fib", text_base=0x7F00_0000_0000, text_size=1 << 20,
                          t0=t + k * 2000)
        _ingest(svc, doc)
    perf = data_dir / "perf"
    svc.profiles.ingest((perf / "fib.O2.perf.g.perf-script.txt").read_bytes(), fmt=None,
                        aux=(perf / "fib.O2.perf.g.perf-20737.map").read_bytes(), plugin="rb",
                        version=None, labels={"pod": "b"}, end=t + HOUR)
    sel = Selection(plugin="rb")
    before = (_folded(svc, sel), svc.profiles.timeline(sel, step=600))
    with svc.db.tx() as tx:
        tx.execute("UPDATE profile_inputs SET modules = NULL")
    assert svc.profiles.rebuilds.run() == 1
    (rb,) = svc.profiles.summary(sel)["rebuilds"]
    assert rb["state"] == "done" and rb["inputs_done"] == 4 and rb["windows_kept"] == 0, rb
    assert rb["windows_rebuilt"] >= 2
    assert (_folded(svc, sel), svc.profiles.timeline(sel, step=600)) == before
    assert svc.profiles.rebuilds.plan() == 0


def test_ingest_during_a_rebuild_loses_and_doubles_nothing(svc, data_dir, bodies):
    """Batches posted (by 3 threads) while the rebuild shadows and swaps: every sample is
    counted once, and everything ends with the new module's symbols."""
    import threading
    t = (time.time() // HOUR - 6) * HOUR
    old = [_batch(bodies, 200 + i, t + i * 1800) for i in range(8)]
    _upload(svc, data_dir, STRIPPED)
    for d in old:
        _ingest(svc, d)
    _upload(svc, data_dir, DEBUG)
    new = [[_batch(bodies, 300 + 10 * k + j, t + (k * 4 + j) * 1500 + 7) for j in range(4)]
           for k in range(3)]
    errors: list[BaseException] = []

    def post(docs):
        for d in docs:
            try:
                _ingest(svc, d)
            except BaseException as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

    threads = [threading.Thread(target=post, args=(docs,)) for docs in new]
    for th in threads:
        th.start()
    svc.profiles.rebuilds.run()
    for th in threads:
        th.join()
    assert not errors, errors[:2]
    svc.profiles.rebuilds.run()             # inputs that came after the first one finished
    everything = [*old, *(d for docs in new for d in docs)]
    assert _folded(svc, Selection(plugin="rb")) == _cli(data_dir, [STRIPPED, DEBUG], everything)
