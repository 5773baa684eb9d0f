"""Done-when: real perf recordings → per-Wasm-function self samples equal the ground truth,
with Wasm names (not aot_func#N) and host frames kept; addresses resolved once each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
from truth import perf_runs, perf_truth

from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.ingest.agent_json import parse_agent_json
from wasmprof.ingest.perf_map import read_perf_map
from wasmprof.model import FrameStatus
from wasmprof.profiles import Symbolizer, read_profile_input, self_by_function, symbolize_profile

DATA = Path(__file__).parent / "data"




def symbolized(root: Path, run: str, *, with_aot: bool = True, resolver=None):
    truth = perf_truth(root, run)
    script = root / "perf" / f"{run}.perf-script.txt"
    (pmap,) = (root / "perf").glob(f"{run}.perf-*.map")
    mods = [load_module(root / truth["source_wasm"])]
    if with_aot and (root / truth["perf_run"]["aot"]).exists():
        mods.append(load_module(root / truth["perf_run"]["aot"]))
    (prof,) = read_profile_input(str(script), perf_maps=[read_perf_map(pmap)])
    return symbolize_profile(prof, mods, resolver), truth


def check(sp, truth) -> None:
    got = {k: v for k, v in self_by_function(sp).items() if k[0] is not None}
    want = {(e["wasm_func_index"], e["wasm_name"]): e["self_samples"]
            for e in truth["self_samples_by_wasm_function"]}
    assert got == want
    # every sample is kept: the non-AOT leaves are host/unknown frames, not dropped
    assert sum(s.count for s in sp.samples) == truth["sample_count"]
    assert sum(got.values()) == truth["samples_with_leaf_in_aot"]
    for s, ws in zip(sp.samples, truth["samples"], strict=True):
        outer = [f for f in s.stack if not f.inlined]
        assert len(outer) == len(ws["frames"])
        for f, wf in zip(outer, ws["frames"], strict=True):
            if wf["in_aot_code"]:
                assert f.wasm_index == wf["wasm_func_index"] and f.function == wf["wasm_name"]
                assert not f.native and "aot_func#" not in f.function
            elif wf["perf_symbol"] != "[unknown]":
                assert f.native and f.function == wf["perf_symbol"].rpartition("+0x")[0]
                assert f.status is FrameStatus.FUNCTION_ONLY and f.reason
            else:
                assert f.status is FrameStatus.UNKNOWN and f.reason


@pytest.mark.parametrize("run", perf_runs(DATA))
def test_self_samples_equal_ground_truth(data_dir, run):
    sp, truth = symbolized(data_dir, run)
    check(sp, truth)


def test_self_samples_whole_corpus(shared_fixtures):
    for run in perf_runs(shared_fixtures):
        sp, truth = symbolized(shared_fixtures, run, with_aot=False)
        check(sp, truth)


def test_each_distinct_address_resolved_once(data_dir):
    class Counting(Resolver):
        calls: list = []

        def resolve(self, module, raw, *, input_index=None):
            self.calls.append((raw.aot_index, raw.offset))
            return super().resolve(module, raw, input_index=input_index)

    r = Counting()
    sp, truth = symbolized(data_dir, "fib.O2.perf.g", resolver=r)
    frames_in = sum(len(s["frames"]) for s in truth["samples"])
    assert len(r.calls) == len(set(r.calls)) < frames_in / 20
    check(sp, truth)


def test_without_modules_frames_say_why(data_dir):
    (prof,) = read_profile_input(str(data_dir / "perf" / "fib.O2.perf.g.perf-script.txt"))
    sp = Symbolizer([]).symbolize(prof)
    aot = [f for s in sp.samples for f in s.stack if f.printed_name and "aot_func#" in f.printed_name]
    assert aot and all(f.status is FrameStatus.INDEX_ONLY and "no module" in f.reason for f in aot)


def test_stripped_perf_script_with_map_symbolizes_the_same(data_dir, tmp_path):
    run = "inline_chain.O2.perf.g"
    script = data_dir / "perf" / f"{run}.perf-script.txt"
    (pmap,) = (data_dir / "perf").glob(f"{run}.perf-*.map")
    text = re.sub(r"(?m)^(\s+[0-9a-f]+)\s+aot_func#\d+\+0x[0-9a-f]+ \(/tmp/perf-\d+\.map\)$",
                  r"\1 [unknown] ([unknown])", script.read_text())
    path = tmp_path
    (path / "stripped.perf").write_text(text)
    truth = perf_truth(data_dir, run)
    (prof,) = read_profile_input(str(path / "stripped.perf"), perf_maps=[read_perf_map(pmap)])
    sp = symbolize_profile(prof, [load_module(data_dir / truth["source_wasm"])])
    check(sp, truth)


def test_agent_batch_with_aot_text_offsets(data_dir):
    """Agent PCs minus text_base → AOT function table of the .aot (no perf map involved)."""
    truth = perf_truth(data_dir, "fib.O2.perf.g")
    base = int(truth["object_cross_check"]["load_base_of_text"], 16)
    lo, hi = (int(x, 16) for x in truth["aot_code_range"])
    batch = {"modules": [{"id": "fib.O2.perf", "text_base": base, "text_size": hi - base}],
             "samples": [{"stack": [int(f["ip"], 16) for f in s["frames"]],
                          "thread": "worker_0"} for s in truth["samples"]]}
    prof = parse_agent_json(orjson.dumps(batch))
    mods = [load_module(data_dir / "aot/fib.O2.perf.aot"), load_module(data_dir / "wasm/fib.O2.wasm")]
    sp = symbolize_profile(prof, mods)
    got = {k: v for k, v in self_by_function(sp).items() if k[0] is not None}
    want = {(e["wasm_func_index"], e["wasm_name"]): e["self_samples"]
            for e in truth["self_samples_by_wasm_function"]}
    assert got == want
    for s, ws in zip(sp.samples, truth["samples"], strict=True):
        for f, wf in zip(s.stack, ws["frames"], strict=True):
            if wf["in_aot_code"]:
                assert f.wasm_index == wf["wasm_func_index"], (f, wf)


def test_wasm_offset_frames_get_lines_and_inline_chains(data_dir):
    """Agent stacks with AOT call-stack offsets (file offsets) resolve to file:line and
    inline frames, taken from a real WAMR dump's frames of inline_chain.O2."""
    exp = json.loads((data_dir / "expected/dumps/inline_chain.O2.trap4.aot-cstrap.log.expected.json")
                     .read_text())
    frames = [f for f in exp["frames"] if f.get("symbolized") and f["symbolized"]["frames"]]
    stack = [{"module": "inline_chain", "offset": f["lookup_file_offset"], "space": "aot"}
             for f in frames]
    prof = parse_agent_json(orjson.dumps({"samples": [{"stack": stack, "count": 5}]}))
    sp = symbolize_profile(prof, [load_module(data_dir / "wasm/inline_chain.O2.wasm")])
    got = [(f.function, f.line, f.inlined) for f in sp.samples[0].stack]
    want = [(g["function"], g["line"] or None, g["inlined"])
            for f in frames for g in f["symbolized"]["frames"]]
    assert [w[1:] for w in want] == [g[1:] for g in got]
    assert any(inl for _, _, inl in got)
    assert all(f.file for f in sp.samples[0].stack)


def test_two_plugins_in_one_process_share_one_perf_map(data_dir, tmp_path):
    """Envoy loads several plugins into one process: one perf map holds several
    ``aot_func#0..K-1`` runs and frames name no module. Built from two real recordings
    (fib.O2 and bot_detect.O2) merged under one PID; each run is matched to its module
    (fib by AOT function offsets, bot_detect by function count) and attributed correctly."""
    from collections import Counter

    from wasmprof.profiles import assign_perf_map_modules

    runs_ = ["fib.O2.perf.g", "bot_detect.O2.perf.g"]
    script, maps = [], []
    for run in runs_:
        (pmap,) = (data_dir / "perf").glob(f"{run}.perf-*.map")
        pid = pmap.name.rsplit("-", 1)[1].split(".")[0]
        text = (data_dir / "perf" / f"{run}.perf-script.txt").read_text()
        script.append(text.replace(f" {pid} ", " 4242 ").replace(f"perf-{pid}.map", "perf-4242.map"))
        maps.append(pmap.read_text())
    (tmp_path / "envoy.perf").write_text("\n".join(script))
    (tmp_path / "perf-4242.map").write_text("".join(maps))
    mods = [load_module(data_dir / "aot/fib.O2.perf.aot"), load_module(data_dir / "wasm/fib.O2.wasm"),
            load_module(data_dir / "wasm/bot_detect.O2.wasm")]
    pmap = read_perf_map(tmp_path / "perf-4242.map")
    assert len(pmap.segments()) == 2
    notes = assign_perf_map_modules([pmap], mods)
    assert any("fib.O2.perf.aot (function offsets match)" in n for n in notes), notes
    assert any("bot_detect.O2.wasm (function count only" in n for n in notes), notes
    (prof,) = read_profile_input(str(tmp_path / "envoy.perf"), perf_maps=[pmap])
    sp = symbolize_profile(prof, mods)
    want: Counter = Counter()
    for run in runs_:
        for e in perf_truth(data_dir, run)["self_samples_by_wasm_function"]:
            want[(e["wasm_func_index"], e["wasm_name"])] += e["self_samples"]
    got = Counter({k: v for k, v in self_by_function(sp).items() if k[0] is not None})
    assert got == want
    # without the segment matching, two modules and no hint: frames say why they stay unnamed
    (prof2,) = read_profile_input(str(tmp_path / "envoy.perf"),
                                  perf_maps=[read_perf_map(tmp_path / "perf-4242.map")])
    sp2 = symbolize_profile(prof2, mods)
    unnamed = [f for s in sp2.samples for f in s.stack if f.status is FrameStatus.INDEX_ONLY]
    assert unnamed and "2 modules given" in unnamed[0].reason


def test_wamr_profiler_indexes_get_names(data_dir):
    """``func 12`` lines (runtime built without names) resolve to the name-section names."""
    log = data_dir / "dumps/crash_divzero.O2.div.classic-nonames.log"
    truth = json.loads((data_dir / "expected/wasm/crash_divzero.O2.wasm.module.expected.json")
                       .read_text())
    names = {f["index"]: f["name"] for f in truth["functions"]}
    (prof,) = read_profile_input(str(log))
    assert prof.unit == "microseconds"
    sp = symbolize_profile(prof, [load_module(data_dir / "wasm/crash_divzero.O2.wasm")])
    indexed = [(s.stack[0], raw.stack[0]) for s, raw in zip(sp.samples, prof.samples, strict=True)
               if raw.stack[0].func_index is not None]
    assert indexed
    for frame, raw in indexed:
        assert frame.function == names[raw.func_index] and frame.wasm_index == raw.func_index
    assert sp.total == sum(s.count for s in prof.samples)


def test_wasmtime_cwasm_agent_samples_get_source_lines(data_dir, tmp_path):
    """Agent PCs into a Wasmtime precompiled module: the .cwasm address map turns them into
    fib.c lines inside fib_rec (source lines 15-20); PCs without a Wasm origin stay
    function-only with a reason."""
    wasmtime = pytest.importorskip("wasmtime")
    src = data_dir / "wasm/fib.O2.wasm"
    blob = wasmtime.Module(wasmtime.Engine(), src.read_bytes()).serialize()
    (tmp_path / "fib.cwasm").write_bytes(blob)
    cw, wasm = load_module(tmp_path / "fib.cwasm"), load_module(src)
    fn = next(f for f in cw.functions if f.name == "fib_rec")
    base = 0x7F12_3400_0000
    pcs = [base + fn.text_offset + k for k in range(fn.size)]
    batch = {"modules": [{"id": "fib", "text_base": base, "text_size": 1 << 24}],
             "samples": [{"stack": [pc]} for pc in pcs]}
    sp = symbolize_profile(parse_agent_json(orjson.dumps(batch)), [cw, wasm])
    exact = [s.stack[0] for s in sp.samples if s.stack[0].status is FrameStatus.EXACT]
    assert all(s.stack[0].function == "fib_rec" and s.stack[0].reason or s.stack[0] in exact
               for s in sp.samples)
    assert exact and all(f.file.endswith("fib.c") and 15 <= f.line <= 20 for f in exact)
    assert all(f.function == "fib_rec" for s in sp.samples for f in s.stack if not f.inlined)


@pytest.mark.parametrize("caller_first", [True, False])
def test_leaf_and_caller_at_one_lookup_address_keep_their_own_reason(data_dir, caller_first):
    """A caller at ``X+1`` is looked up at ``X``, as a leaf at ``X`` is: the two answers
    differ (raw offset, "caller: looked up at the return address - 1"), so one Symbolizer
    must not hand the first one's answer to the second, in either order."""
    from wasmprof.model import AddressSpace, RawFrame

    aot = load_module(data_dir / "aot/fib.O2.perf.aot")
    mods = [aot, load_module(data_dir / "wasm/fib.O2.wasm")]
    starts, _ = aot.aot.function_intervals()
    x = starts[3] + 8                     # inside the third function's native code
    leaf = RawFrame(index=0, space=AddressSpace.NATIVE, offset=x, module="fib.O2.perf")
    caller = RawFrame(index=1, space=AddressSpace.NATIVE, offset=x + 1, module="fib.O2.perf")
    sym = Symbolizer(mods)
    order = [caller, leaf] if caller_first else [leaf, caller]
    got = {id(r): sym.frames_for(r) for r in order}
    fresh_leaf, fresh_caller = Symbolizer(mods).frames_for(leaf), Symbolizer(mods).frames_for(caller)
    assert got[id(leaf)] == fresh_leaf and got[id(caller)] == fresh_caller
    assert fresh_leaf[-1].function and fresh_leaf[-1].function == fresh_caller[-1].function
    assert "caller:" not in (fresh_leaf[-1].reason or "")
    assert "caller: looked up at the return address - 1" in fresh_caller[-1].reason
    assert fresh_leaf[-1].raw_offset == x and fresh_caller[-1].raw_offset == x + 1
