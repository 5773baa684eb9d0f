"""Profile inputs: perf script (+ perf maps), folded, agent JSON, WAMR profiler blocks.

Ground truth: expected/perf/*.expected.json[.gz] (every sample's frames, innermost first,
with the AOT function each ip belongs to, callers looked up at ip-1).
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import orjson
import pytest
from truth import perf_runs, perf_truth

from wasmprof.errors import LogFormatError, WasmprofError
from wasmprof.ingest.agent_json import parse_agent_json
from wasmprof.ingest.folded import parse_folded
from wasmprof.ingest.perf_map import parse_perf_map, read_perf_map
from wasmprof.ingest.perf_script import parse_perf_script, parse_perf_script_events
from wasmprof.ingest.wamr_profiler import parse_wamr_profiler
from wasmprof.model import AddressSpace
from wasmprof.profiles import discover_perf_maps, read_profile_input, sniff_profile_format




def perf_inputs(root: Path, run: str) -> tuple[Path, Path]:
    script = root / "perf" / f"{run}.perf-script.txt"
    (pmap,) = (root / "perf").glob(f"{run}.perf-*.map")
    return script, pmap


def check_against_truth(profile, truth: dict) -> None:
    assert len(profile.samples) == truth["sample_count"]
    for sample, want in zip(profile.samples, truth["samples"], strict=True):
        assert sample.timestamp == pytest.approx(float(want["time"]))
        assert len(sample.stack) == len(want["frames"])
        for raw, wf in zip(sample.stack, want["frames"], strict=True):
            if wf["in_aot_code"]:
                assert raw.space is AddressSpace.PERF and raw.aot_index == wf["aot_func"], wf
                assert raw.offset == wf["offset_in_func"]
                assert not raw.native
            elif wf["perf_symbol"] != "[unknown]":
                assert raw.native and raw.printed_name == wf["perf_symbol"].rpartition("+0x")[0]
                assert raw.module == wf["perf_dso"]


@pytest.mark.parametrize("run", perf_runs(Path(__file__).parent / "data"))
def test_perf_script_matches_ground_truth(data_dir, run):
    script, pmap = perf_inputs(data_dir, run)
    with open(script, "rb") as f:
        profile, stats = parse_perf_script(f, perf_maps=[read_perf_map(pmap)], source=str(script))
    check_against_truth(profile, perf_truth(data_dir, run))
    assert stats.distinct_lines < 3 * stats.samples
    assert profile.start <= profile.end


def test_perf_script_whole_corpus(shared_fixtures):
    for run in perf_runs(shared_fixtures):
        script, pmap = perf_inputs(shared_fixtures, run)
        with open(script, "rb") as f:
            profile, _ = parse_perf_script(f, perf_maps=[read_perf_map(pmap)])
        check_against_truth(profile, perf_truth(shared_fixtures, run))


def _strip_perf_symbols(text: str) -> str:
    """What perf prints when the perf map was not there at report time."""
    return re.sub(r"(?m)^(\s+[0-9a-f]+)\s+\S*aot_func#\d+\+0x[0-9a-f]+ \(/tmp/perf-\d+\.map\)$",
                  r"\1 [unknown] ([unknown])", text)


def test_bare_addresses_resolved_through_the_perf_map(data_dir):
    run = "fib.O2.perf.g"
    script, pmap = perf_inputs(data_dir, run)
    stripped = _strip_perf_symbols(script.read_text())
    assert "aot_func#" not in stripped
    profile, stats = parse_perf_script(io.BytesIO(stripped.encode()), perf_maps=[read_perf_map(pmap)])
    truth = perf_truth(data_dir, run)
    for sample, want in zip(profile.samples, truth["samples"], strict=True):
        for raw, wf in zip(sample.stack, want["frames"], strict=True):
            if wf["in_aot_code"]:
                assert raw.aot_index == wf["aot_func"] and raw.offset == wf["offset_in_func"]
    assert stats.map_lookups > 0
    # without any map the same frames stay unresolved bare addresses, not host frames
    profile2, _ = parse_perf_script(io.BytesIO(stripped.encode()))
    aot_frames = [r for s in profile2.samples for r in s.stack if r.printed_name is None]
    assert aot_frames and all(r.aot_index is None and not r.native for r in aot_frames)


def test_caller_return_address_at_function_end_goes_to_the_caller():
    # A call that is the last instruction of aot_func#0: the return address is the first
    # byte of aot_func#1, so perf names aot_func#1+0x0; the caller is aot_func#0.
    pmap = parse_perf_map("1000  10  aot_func#0\n1010  20  aot_func#1\n", "perf-7.map")
    text = ("w 7  1.000: 1 cpu-clock:\n"
            "\t    1015 aot_func#1+0x5 (/tmp/perf-7.map)\n"
            "\t    1010 aot_func#1+0x0 (/tmp/perf-7.map)\n\n")
    profile, stats = parse_perf_script(io.BytesIO(text.encode()), perf_maps=[pmap])
    leaf, caller = profile.samples[0].stack
    assert (leaf.aot_index, leaf.offset) == (1, 5)
    assert (caller.aot_index, caller.offset) == (0, 0x10)
    assert stats.caller_reattributed == 1


def test_perf_map_forms_and_damage():
    m = parse_perf_map("40fba004  90  aot_func#0\n40fba094  a0  [bot]#aot_func#1\n"
                       "garbage line\n7f00  10  JS:foo\n", "/tmp/perf-42.map")
    assert m.pid == 42
    assert [(e.aot_index, e.module) for e in m.entries] == [(None, None), (0, None), (1, "bot")]
    assert m.lookup(0x40fba094 + 3)[0].aot_index == 1
    assert m.lookup(0x40fba094 + 0xa0) is None
    assert m.notes and "3" in m.notes[0]
    with pytest.raises(LogFormatError):
        parse_perf_map("nothing here\n", "x.map")


def test_perf_script_header_variants_and_errors():
    text = (b"# comment\n"
            b"wrk:worker 0 12/34 [001]  5.500:  cycles:u:  \n\t  abc fn+0x1 (/usr/bin/envoy)\n\n"
            b"iwasm 9  6.000: 1 cpu-clock:  13 aot_func#2+0x3 (/tmp/perf-9.map)\n")
    (pa, pb), _ = parse_perf_script_events(io.BytesIO(text))
    (a,), (b,) = pa.samples, pb.samples
    assert (pa.labels["event"], pb.labels["event"]) == ("cycles:u", "cpu-clock")
    assert a.thread == "wrk:worker 0/34" and a.stack[0].printed_name == "fn" and a.stack[0].native
    assert a.labels == {"pid": "12"} and a.period is None and b.period == 1
    assert b.stack[0].aot_index == 2 and b.stack[0].offset == 3
    with pytest.raises(LogFormatError) as e:
        parse_perf_script(io.BytesIO(b"hello\nworld\n"), source="x.txt")
    assert "x.txt" in str(e.value)


def test_folded_input():
    text = (b"iwasm;aot_func#1;aot_func#4 10\n[bot]#aot_func#2;$f9 3\n"
            b"do_syscall_64_[k] 2\nnot a stack line\nmain;fn\xff 1\n")
    p = parse_folded(io.BytesIO(text), source="x.folded")
    assert [s.count for s in p.samples] == [10, 3, 2, 1]
    s0 = p.samples[0].stack
    assert [f.aot_index for f in s0] == [4, 1, None]            # leaf first
    assert p.samples[1].stack[0].func_index == 9 and p.samples[1].stack[1].module == "bot"
    assert p.samples[2].stack[0].native and p.samples[2].stack[0].printed_name == "do_syscall_64"
    assert p.notes and "1 line" in p.notes[0]
    with pytest.raises(LogFormatError):
        parse_folded(io.BytesIO(b"just text\n"))


def test_agent_json_from_ground_truth(data_dir):
    """Agent batches made of the real ips: PC - text_base must land on the same functions."""
    truth = perf_truth(data_dir, "fib.O2.perf.g")
    base = int(truth["object_cross_check"]["load_base_of_text"], 16)
    lo, hi = (int(x, 16) for x in truth["aot_code_range"])
    batch = {"modules": [{"id": "fib", "text_base": hex(base), "text_size": hi - base}],
             "samples": [{"stack": [int(f["ip"], 16) for f in s["frames"]], "count": 2,
                          "timestamp": float(s["time"]), "thread": "worker_1",
                          "labels": {"plugin": "fib"}} for s in truth["samples"]]}
    p = parse_agent_json(orjson.dumps(batch), source="batch.json")
    assert sum(s.count for s in p.samples) == 2 * truth["sample_count"]
    entries = {e["symbol"]: int(e["start"], 16) for e in truth["perf_map_entries"]}
    for sample, want in zip(p.samples, truth["samples"], strict=True):
        for raw, wf in zip(sample.stack, want["frames"], strict=True):
            if wf["in_aot_code"]:
                assert raw.space is AddressSpace.NATIVE and raw.module == "fib"
                assert raw.offset == entries[f"aot_func#{wf['aot_func']}"] + wf["offset_in_func"] - base
            else:
                assert raw.native
    assert p.samples[0].labels == {"plugin": "fib"} and p.start <= p.end


@pytest.mark.parametrize("doc, where", [
    (b"[1]", "$"),
    (b'{"samples": 3}', "samples"),
    (b'{"modules": [{"text_base": 1}], "samples": []}', "modules[0].id"),
    (b'{"samples": [{"stack": []}]}', "samples[0].stack"),
    (b'{"samples": [{"stack": [1, "zz"]}]}', "samples[0].stack[1]"),
    (b'{"samples": [{"stack": [1], "count": -1}]}', "samples[0].count"),
    (b'{"samples": [{"stack": [{"module": "m", "offset": 3, "space": "nope"}]}]}',
     "samples[0].stack[0].space"),
    (b"{not json", None),
])
def test_agent_json_errors_name_the_field(doc, where):
    with pytest.raises(LogFormatError) as e:
        parse_agent_json(doc, source="b.json")
    assert "b.json" in str(e.value)
    if where:
        assert where in str(e.value)


def test_agent_json_wasm_offset_frames():
    doc = {"samples": [{"stack": [{"module": "plug", "offset": 0x1a3f, "space": "v8"},
                                  {"name": "envoy::Filter::onData"}, {"pc": "0x10"}]}]}
    p = parse_agent_json(orjson.dumps(doc))
    a, b, c = p.samples[0].stack
    assert a.space is AddressSpace.V8 and a.offset == 0x1a3f and a.module == "plug"
    assert b.native and b.printed_name == "envoy::Filter::onData"
    assert c.native and c.offset == 0x10


def test_wamr_profiler_blocks_from_dumps(data_dir):
    logs = sorted((data_dir / "dumps").glob("*.log"))
    seen_comma = seen_index = False
    blocks = 0
    for log in logs:
        text = log.read_text(errors="replace")
        if "Performance profiler data:" not in text:
            continue
        profiles = parse_wamr_profiler(text, source=str(log))
        blocks += len(profiles)
        lines = [ln for ln in text.splitlines() if ln.startswith("  func ")]
        assert sum(len(p.samples) for p in profiles) == len(lines)
        for p in profiles:
            assert p.unit == "microseconds"
            for s in p.samples:
                total, children = int(s.labels["total_us"]), int(s.labels["children_us"])
                assert s.count == max(total - children, 0)
                f = s.stack[0]
                if f.func_index is not None:
                    seen_index = True
                elif ", " in f.printed_name:
                    seen_comma = True
    assert blocks > 0
    assert seen_index and seen_comma   # "func 40" and "RingBuffer<int, 8u>::push(int)" exist


def test_wamr_profiler_block_details():
    text = ("Performance profiler data:\n"
            "  func higress::util::RingBuffer<int, 8u>::push(int), execution time: 0.008 ms, "
            "execution count: 9 times, children execution time: 0.000 ms\n"
            "Exception: unreachable\n"
            "  func 40, execution time: 2.500 ms, execution count: 3 times, children execution "
            "time: 1.000 ms\n"
            "after the block\n")
    (p,) = parse_wamr_profiler(text)
    a, b = p.samples
    assert a.stack[0].printed_name == "higress::util::RingBuffer<int, 8u>::push(int)"
    assert a.count == 8 and a.labels["execution_count"] == "9"
    assert b.stack[0].func_index == 40 and b.count == 1500
    with pytest.raises(WasmprofError):
        parse_wamr_profiler("no block here")


def test_sniffing_and_auto_maps(data_dir, tmp_path):
    script, pmap = perf_inputs(data_dir, "fib.O2.perf.g")
    assert sniff_profile_format(script.read_bytes()[:4096]) == "perf-script"
    assert sniff_profile_format(b"a;b 1\n") == "folded"
    assert sniff_profile_format(b'{"samples": []}') == "agent-json"
    assert sniff_profile_format(b"Performance profiler data:\n") == "wamr-profiler"
    assert discover_perf_maps(str(script)) == [str(pmap)]
    gz = tmp_path / "x.perf.gz"
    gz.write_bytes(gzip.compress(script.read_bytes()))
    (prof,) = read_profile_input(str(gz), perf_maps=[read_perf_map(pmap)])
    assert len(prof.samples) == perf_truth(data_dir, "fib.O2.perf.g")["sample_count"]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01binary")
    with pytest.raises(LogFormatError) as e:
        read_profile_input(str(bad))
    assert "bad.bin" in str(e.value)


def test_stripped_script_finds_its_map_by_header_pid(data_dir, tmp_path):
    script, pmap = perf_inputs(data_dir, "fib.O2.plain.g")
    (tmp_path / "run.perf").write_text(_strip_perf_symbols(script.read_text()))
    (tmp_path / pmap.name).write_bytes(pmap.read_bytes())
    (tmp_path / "other.perf-1.map").write_text("1000  10  aot_func#0\n")
    assert discover_perf_maps(str(tmp_path / "run.perf")) == [str(tmp_path / pmap.name)]


def test_endless_block_is_refused_not_buffered(monkeypatch):
    import wasmprof.ingest.perf_script as ps

    monkeypatch.setattr(ps, "MAX_BLOCK", 1 << 16)
    text = b"iwasm 1  1.000: 1 cpu-clock:\n" + b"\t 10 f+0x1 (/bin/x)\n" * 20000
    with pytest.raises(LogFormatError) as e:
        parse_perf_script(io.BytesIO(text), source="huge.txt")
    assert "huge.txt" in str(e.value) and "block" in str(e.value)
