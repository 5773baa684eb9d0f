"""``wasmprof flamegraph`` / ``wasmprof diff`` command lines: events (``--event``, what was
there), weights (``--weight period``), output paths refused before any work, speedscope time
order from the streaming pass, exit codes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from wasmprof.cli import main

PEERS = Path(__file__).parent / "data" / "peers" / "flamegraph"


@pytest.fixture(scope="module")
def two_events(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("events") / "cycles-instructions.perf"
    p.write_bytes(gzip.decompress((PEERS / "perf-cycles-instructions-01.txt.gz").read_bytes()))
    return p


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("faults") / "java-faults.perf"
    p.write_bytes(gzip.decompress((PEERS / "perf-java-faults-01.txt.gz").read_bytes()))
    return p


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasmprof", *args], capture_output=True,
                          text=True, timeout=300)


def test_events_first_by_default_and_listed(two_events, tmp_path, capsysbinary):
    out = tmp_path / "a.folded"
    assert main(["flamegraph", str(two_events), "-o", str(out), "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert info["event"] == "instructions" and info["samples"] == 333
    assert [(e["event"], e["samples"]) for e in info["events"]] == [("instructions", 333),
                                                                    ("cycles", 111)]
    assert sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines()) == 333
    assert any("--event cycles" in n for n in info["notes"])
    assert main(["flamegraph", str(two_events), "--event", "cycles", "-o", str(out),
                 "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert info["event"] == "cycles" and info["total"] == 111
    r = run("flamegraph", str(two_events), "--event", "page-faults", "-o", str(out))
    assert r.returncode == 2 and "'instructions'" in r.stderr and "'cycles'" in r.stderr
    r = run("flamegraph", str(two_events), "-o", str(tmp_path / "b.svg"))
    assert r.returncode == 0 and "events in the input: instructions (333 samples, shown)" in r.stderr
    svg = (tmp_path / "b.svg").read_text()
    assert "event instructions" in svg


def test_weight_period_as_flamegraph_does(faults, tmp_path, capsysbinary):
    out = tmp_path / "f.folded"
    assert main(["flamegraph", str(faults), "-o", str(out), "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert (info["total"], info["unit"], info["weight"]) == (23, "samples", "samples")
    assert main(["flamegraph", str(faults), "--weight", "period", "-o", str(out), "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert (info["total"], info["unit"], info["weight"]) == (200, "page-faults", "period")
    assert info["events"][0]["period"] == 200 and info["events"][0]["samples_with_period"] == 23
    assert sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines()) == 200


@pytest.mark.parametrize("cmd", ["flamegraph", "diff"])
def test_output_paths_are_checked_before_any_work(cmd, faults, tmp_path):
    inputs = [str(faults)] if cmd == "flamegraph" else [str(faults), str(faults)]
    r = run(cmd, *inputs, "-o", "/nonexistent/dir/x.svg")
    assert r.returncode == 2 and "output directory does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(cmd, *inputs, "-o", str(tmp_path / "x.pdf"))
    assert r.returncode == 2 and "unknown output file suffix" in r.stderr and ".svg" in r.stderr
    assert not (tmp_path / "x.pdf").exists() and not list(tmp_path.iterdir())
    r = run(cmd, *inputs, "-o", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    if cmd == "flamegraph":
        assert "(speedscope)" in run(cmd, *inputs, "-o", str(tmp_path / "x.pdf")).stderr
        # an explicit --format takes any name
        r = run(cmd, *inputs, "--format", "folded", "-o", str(tmp_path / "x.data"))
        assert r.returncode == 0 and (tmp_path / "x.data").read_text().strip()


def test_failed_run_leaves_no_partial_output(faults, tmp_path):
    out = tmp_path / "keep.svg"
    out.write_text("previous result")
    r = run("flamegraph", str(faults), "--module", str(tmp_path / "missing.wasm"), "-o", str(out))
    assert r.returncode == 2
    assert out.read_text() == "previous result" and sorted(tmp_path.iterdir()) == [out]


def test_speedscope_keeps_time_order_from_the_stream(data_dir, tmp_path):
    script = data_dir / "perf" / "fib.O2.perf.g.perf-script.txt"
    out = tmp_path / "p.json"
    assert main(["flamegraph", str(script), "--module", str(data_dir / "wasm/fib.O2.wasm"),
                 "-o", str(out)]) == 0
    doc = orjson.loads(out.read_bytes())
    (prof,) = doc["profiles"]
    frames = doc["shared"]["frames"]
    # run-length encoded time order: as many runs as changes of stack in the recording
    from wasmprof.ingest.perf_script import parse_perf_script_events
    from wasmprof.ingest.perf_map import read_perf_map
    from wasmprof.binary.loader import load_module
    from wasmprof.profiles import Symbolizer, frame_label
    (pmap,) = (data_dir / "perf").glob("fib.O2.perf.g.perf-*.map")
    with open(script, "rb") as f:
        (p,), _ = parse_perf_script_events(f, perf_maps=[read_perf_map(pmap)])
    sp = Symbolizer([load_module(data_dir / "wasm/fib.O2.wasm")]).symbolize(p)
    names = [[frame_label(f) for f in reversed(s.stack)] for s in sp.samples]
    runs = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    got = [[frames[i]["name"] for i in stack] for stack in prof["samples"]]
    # speedscope frames are per line: adjacent runs may differ by line only
    collapsed = [n for i, n in enumerate(got) if i == 0 or n != got[i - 1]]
    assert collapsed == runs and sum(prof["weights"]) == len(sp.samples)


def test_diff_with_events_and_weights(two_events, faults, capsys):
    assert main(["diff", str(two_events), str(two_events), "--event", "cycles", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["before"]["event"] == doc["after"]["event"] == "cycles"
    assert all(abs(r["delta_self"]) < 1e-9 for r in doc["rows"])
    assert main(["diff", str(faults), str(faults), "--weight", "period", "--mode", "absolute",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["before"]["total"] == 200
