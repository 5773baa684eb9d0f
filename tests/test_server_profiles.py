"""Profiles through a running ``wasmprof serve``: the server parses and symbolizes with the
CLI's code (``wasmprof.profiles``): WAMR ``Performance profiler data:`` blocks are accepted,
and a perf map shared by two plugins' AOT code is split between them
(``assign_perf_map_modules``), as ``wasmprof flamegraph`` does."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from pg import wait_until
from server_proc import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("srv-profiles"),
                           extra_args=["--allow-anonymous", "ingest,read,admin",
                                       "--rate-limit", "0", "--quiet"]).start()
    yield server
    server.stop()


def _upload_ready(srv, path: Path, plugin: str) -> dict:
    with srv.client() as c:
        r = c.post("/api/v1/modules", params={"plugin": plugin},
                   files={"file": (path.name, path.read_bytes())})
        assert r.status_code in (200, 201), r.text
        mid = r.json()["id"]
        return wait_until(lambda: (m := c.get(f"/api/v1/modules/{mid}").json())["symbols"]
                          ["index"] in ("ready", "failed") and m, timeout=60)


def _functions(srv, plugin: str) -> dict:
    with srv.client() as c:
        r = c.get("/api/v1/profiles", params={"plugin": plugin, "format": "json"})
    assert r.status_code == 200, r.text
    return r.json()


def test_wamr_profiler_block_from_a_dump(srv, data_dir):
    """A whole WAMR dump (crash + profiler block, functions printed by index) posted as a
    profile: sniffed as ``wamr-profiler``, one sample per ``func`` line, and the indexes get
    the name-section names of the uploaded module."""
    log = data_dir / "dumps/crash_divzero.O2.div.classic-nonames.log"
    truth = json.loads((data_dir / "expected/wasm/crash_divzero.O2.wasm.module.expected.json")
                       .read_text())
    names = {f["index"]: f["name"] for f in truth["functions"]}
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("  func ")]
    printed = [ln[len("  func "):].split(",", 1)[0] for ln in lines]
    assert any(p.isdigit() for p in printed)
    _upload_ready(srv, data_dir / "wasm/crash_divzero.O2.wasm", "divzero")
    with srv.client() as c:
        r = c.post("/api/v1/profiles", params={"plugin": "divzero", "run": "nonames"},
                   content=log.read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "wamr-profiler" and r.json()["samples"] == len(lines)
    got = _functions(srv, "divzero")
    assert got["unit"] == "microseconds"
    shown = {f["function"] for f in got["functions"]}
    want = {names[int(p)] if p.isdigit() else p for p in printed}
    # functions with 0 µs self time may be absent from the table; every other one is named
    assert shown <= want and not any(s.isdigit() or s.startswith("$f") for s in shown)
    assert {names[int(p)] for p in printed if p.isdigit()} & shown


def test_unknown_body_is_a_400_naming_the_input(srv):
    with srv.client() as c:
        r = c.post("/api/v1/profiles", params={"plugin": "x", "name": "junk.bin"},
                   content=b"\x00\x01 this is no profile")
        assert r.status_code == 400
        assert "unrecognized profile format" in r.text and "junk.bin" in r.text
        r = c.post("/api/v1/profiles", params={"format": "bogus"}, content=b"x")
        assert r.status_code == 422 and r.json()["source"] == "query.format"
        assert "wamr-profiler" in r.text and "pprof" in r.text
        r = c.post("/api/v1/profiles", params={"format": "pprof"}, content=b"x")
        assert r.status_code == 400 and "not a pprof profile.proto" in r.text


def test_perf_map_shared_by_two_plugins(srv, data_dir, tmp_path):
    """Two plugins in one Envoy process: one perf map with two unnamed ``aot_func#`` runs.
    The server assigns each run to its module and the per-function self samples equal the
    ground truth of the two separate recordings."""
    runs = ["fib.O2.perf.g", "bot_detect.O2.perf.g"]
    script, maps = [], []
    for run in runs:
        (pmap,) = (data_dir / "perf").glob(f"{run}.perf-*.map")
        pid = pmap.name.rsplit("-", 1)[1].split(".")[0]
        text = (data_dir / "perf" / f"{run}.perf-script.txt").read_text()
        script.append(text.replace(f" {pid} ", " 4242 ").replace(f"perf-{pid}.map", "perf-4242.map"))
        maps.append(pmap.read_text())
    for path in ("aot/fib.O2.perf.aot", "wasm/fib.O2.wasm", "wasm/bot_detect.O2.wasm"):
        assert _upload_ready(srv, data_dir / path, "envoy-two")["symbols"]["index"] == "ready"
    with srv.client() as c:
        r = c.post("/api/v1/profiles", params={"plugin": "envoy-two"},
                   files={"file": ("envoy.perf", "\n".join(script).encode()),
                          "perf_map": ("perf-4242.map", "".join(maps).encode())})
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "perf-script"
    got = _functions(srv, "envoy-two")
    notes = " ".join(got["notes"])
    assert "function offsets match" in notes and "function count only" in notes, notes
    want: Counter = Counter()
    for run in runs:
        raw = (data_dir / "expected" / "perf" / f"{run}.expected.json.gz").read_bytes()
        exp = json.loads(gzip.decompress(raw))
        for e in exp["self_samples_by_wasm_function"]:
            want[e["wasm_name"]] += e["self_samples"]
    have = Counter({f["function"]: f["self"] for f in got["functions"]
                    if not f["native"] and f["self"]})
    assert {k: have[k] for k in want} == dict(want)


def test_events_are_not_merged(srv):
    """A recording of two events: never summed; the one with the most samples is shown, the
    notes list both, and the ``event`` label selects the other."""
    peers = Path(__file__).parent / "data" / "peers" / "flamegraph"
    data = gzip.decompress((peers / "perf-cycles-instructions-01.txt.gz").read_bytes())
    with srv.client() as c:
        r = c.post("/api/v1/profiles", params={"plugin": "two-events"}, content=data)
        assert r.status_code == 200, r.text
    got = _functions(srv, "two-events")
    assert got["total"] == 333
    assert any("cycles (111 samples), instructions (333 samples); showing instructions" in n
               for n in got["notes"]), got["notes"]
    with srv.client() as c:
        r = c.get("/api/v1/profiles", params={"plugin": "two-events", "format": "json",
                                              "labels": "event:cycles"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 111
