"""V8 (node ``--perf-basic-prof``) and Wasmtime (``profiler=perfmap``) perf recordings: their
Wasm frames are recognized (by the perf-map symbol forms, or as a Wasmtime map's functions)
and symbolized against the module; a wrong module is refused by index and name.

Real recordings made here are in ``tests/data/perf/jit`` (see its README); the live tests
make a fresh Wasmtime and node perf map each run, and a fresh ``perf record`` where perf may
record (else that part is skipped, saying why)."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof.aggregate import ProfileAggregator
from wasmprof.binary.loader import load_module
from wasmprof.cli import main
from wasmprof.ingest.perf_map import WasmSymbol, classify_symbol, parse_perf_map, read_perf_map
from wasmprof.ingest.perf_script import PerfScriptReader
from wasmprof.model import FrameStatus
from wasmprof.module_match import ModuleMismatchError
from wasmprof.profiles import Symbolizer, discover_perf_maps, self_by_function

JIT = Path(__file__).parent / "data" / "perf" / "jit"
NAMES = {2: "mix", 3: "inner", 4: "run"}


def test_symbol_forms():
    assert classify_symbol("JS:mix-2-turbofan") == WasmSymbol("v8", func_index=2, name="mix")
    assert classify_symbol("JS:wasm-function[3]-3-liftoff") == WasmSymbol("v8", func_index=3)
    assert classify_symbol("Function:*wasm-function[7]") == WasmSymbol("v8", func_index=7)
    assert classify_symbol("JS:wasm-to-js:i:i-imp_b-0-turbofan") is None       # glue
    assert classify_symbol("JS:^compileForInternalLoader") is None             # JavaScript
    assert classify_symbol("wasm[0]::function[4]::run") == WasmSymbol("wasmtime", func_index=4,
                                                                      name="run")
    assert classify_symbol("wasm[1]::function[9]") == WasmSymbol("wasmtime", func_index=9)
    assert classify_symbol("wasm[0]::array_to_wasm_trampoline[4]") is None
    assert classify_symbol("[bot]#aot_func#3") == WasmSymbol("wamr", aot_index=3, module="bot")
    assert classify_symbol("aot_func_internal#2").internal
    assert classify_symbol("main") is None
    m = parse_perf_map("0x7f00 10 mix\n0x7f10 20 wasm[0]::function[3]\n"
                       "0x7f30 8 wasm[0]::array_to_wasm_trampoline[4]\n", "/tmp/perf-9.map")
    assert m.runtime == "wasmtime"
    assert [e.wasm.name if e.wasm else None for e in m.entries] == ["mix", None, None]
    assert m.entries[1].wasm.func_index == 3
    # a Java JIT map is no Wasmtime map: its names stay plain symbols
    j = parse_perf_map("7f00 10 Ljava/lang/String;::hashCode\n", "/tmp/perf-8.map")
    assert j.runtime is None and j.entries[0].wasm is None


def recording(kind: str, module: str):
    script = JIT / f"{kind}.{module}.perf-script.txt.gz"
    maps = [read_perf_map(m) for m in discover_perf_maps(str(script))]
    assert len(maps) == 1 and maps[0].source.startswith(str(JIT))
    return script, maps


def aggregate(script: Path, maps, modules, **kw):
    sym = Symbolizer(modules, **kw)
    agg = ProfileAggregator(sym)
    reader = PerfScriptReader(perf_maps=maps, source=str(script))
    agg.add_records(reader.records(io.BytesIO(gzip.decompress(script.read_bytes()))),
                    source=str(script))
    (p,) = agg.results()
    return p


@pytest.mark.parametrize("kind", ["v8", "wt"])
@pytest.mark.parametrize("module", ["jit_hot", "jit_hot.strip"])
def test_real_recordings_name_the_wasm_functions(kind, module):
    script, maps = recording(kind, module)
    assert maps[0].runtime == ("v8" if kind == "v8" else "wasmtime")
    mod = load_module(JIT / "jit_hot.wasm")          # names even for the stripped build
    p = aggregate(script, maps, [mod], on_mismatch="raise")
    wasm = [f for s in p.samples for f in s.stack if f.wasm_index is not None]
    assert wasm and all(not f.native and f.function == NAMES[f.wasm_index] for f in wasm)
    assert {f.wasm_index for f in wasm} == {2, 3, 4}
    assert all("perf map names the function" in f.reason for f in wasm)
    top = max(self_by_function(p).items(), key=lambda kv: kv[1])
    assert top[0] == (2, "mix") and top[1] > p.sample_count / 3
    # the chain: mix is called by inner, inner by run, run from the runtime (host frames)
    leafs = [s.stack for s in p.samples if s.stack[0].wasm_index == 2]
    chain = [f.wasm_index for f in leafs[0][:3]]
    assert chain == [2, 3, 4] and leafs[0][3].native
    if module.endswith("strip") and kind == "v8":
        assert any("only a function index" in n for n in p.notes)


@pytest.mark.parametrize("kind", ["v8", "wt"])
def test_stripped_module_gives_indexes_and_exports(kind):
    script, maps = recording(kind, "jit_hot.strip")
    p = aggregate(script, maps, [load_module(JIT / "jit_hot.strip.wasm")])
    wasm = {f.wasm_index: f for s in p.samples for f in s.stack if f.wasm_index is not None}
    assert wasm[2].function == "$f2" and wasm[2].status is FrameStatus.INDEX_ONLY
    assert wasm[4].function == "run"                  # the export keeps its name


@pytest.mark.parametrize("kind", ["v8", "wt"])
def test_wrong_module_is_refused(kind, data_dir, capsys):
    script, maps = recording(kind, "jit_hot")
    wrong = load_module(data_dir / "wasm" / "crash_oob.O2.wasm")
    with pytest.raises(ModuleMismatchError) as e:
        aggregate(script, maps, [wrong], on_mismatch="raise")
    assert "crash_oob.O2.wasm" in str(e.value) and str(script) in str(e.value)
    p = aggregate(script, maps, [wrong], on_mismatch="note")
    names = {f.function for s in p.samples for f in s.stack if not f.native}
    wrong_names = {f.name for f in wrong.functions if f.name}
    assert not (names & wrong_names)
    unnamed = [f for s in p.samples for f in s.stack if f.reason and "left unnamed" in f.reason]
    assert unnamed and any("left unnamed" in n for n in p.notes)
    # the CLI: exit 2, one line, both sides named
    assert main(["flamegraph", str(script), "--module", str(data_dir / "wasm/crash_oob.O2.wasm"),
                 "--format", "folded", "-o", os.devnull]) == 2
    err = capsys.readouterr().err
    assert "crash_oob.O2.wasm" in err and "Traceback" not in err


def test_a_jit_frame_picks_the_module_whose_function_fits(data_dir):
    """Two modules given, frames name no module: each V8/Wasmtime frame goes to the module
    whose function N has the printed name."""
    script, maps = recording("v8", "jit_hot")
    mods = [load_module(JIT / "jit_hot.wasm"), load_module(data_dir / "wasm/fib.O2.wasm")]
    p = aggregate(script, maps, mods, on_mismatch="raise")
    wasm = [f for s in p.samples for f in s.stack if f.wasm_index is not None]
    assert wasm and all(f.function == NAMES[f.wasm_index] for f in wasm)


# --- live ---------------------------------------------------------------------------------

def _run_wasmtime(module: Path, seconds: float, perf: list[str] | None = None):
    pytest.importorskip("wasmtime")
    cmd = [sys.executable, str(JIT / "run_wasmtime.py"), str(module), str(seconds)]
    return subprocess.Popen((perf or []) + cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def take_perf_map(pid: int):
    """The map a runtime wrote to /tmp for ``pid``, read and removed."""
    mp = Path(f"/tmp/perf-{pid}.map")
    try:
        return read_perf_map(mp)
    finally:
        mp.unlink(missing_ok=True)


@pytest.mark.parametrize("module", ["jit_hot", "jit_hot.strip"])
def test_live_wasmtime_perf_map(tmp_path, module):
    """A perf map written right now by PyPI wasmtime: its entries are the module's functions
    (by name, or by index when stripped), and frames perf would print for them resolve to
    the right Wasm functions."""
    wasm = JIT / f"{module}.wasm"
    p = _run_wasmtime(wasm, 0.05)
    p.wait(timeout=60)
    pmap = take_perf_map(p.pid)
    assert pmap.runtime == "wasmtime"
    funcs = [e for e in pmap.entries if e.wasm is not None]
    assert len(funcs) == 3
    # perf's view of a sample in each function: "ip sym+0xOFF (/tmp/perf-PID.map)"
    text = "".join(f"python {p.pid} 1.{i:06d}: 1000 cpu-clock:\n"
                   f"\t{e.start + 5:x} {e.symbol}+0x5 (/tmp/perf-{p.pid}.map)\n\n"
                   for i, e in enumerate(funcs))
    sym = Symbolizer([load_module(JIT / "jit_hot.wasm")], on_mismatch="raise")
    agg = ProfileAggregator(sym)
    agg.add_records(PerfScriptReader(perf_maps=[pmap]).records(io.BytesIO(text.encode())),
                    source="live")
    (prof,) = agg.results()
    got = sorted((s.stack[0].wasm_index, s.stack[0].function) for s in prof.samples)
    assert got == [(2, "mix"), (3, "inner"), (4, "run")]


def test_live_node_perf_map(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # node also writes an isolate-*-v8.log into its working directory
    p = subprocess.Popen([node, "--perf-basic-prof", str(JIT / "run_v8.js"),
                          str(JIT / "jit_hot.wasm")], stdout=subprocess.DEVNULL, cwd=tmp_path)
    p.wait(timeout=120)
    pmap = take_perf_map(p.pid)
    wasm = {e.wasm.func_index: e.wasm.name for e in pmap.entries if e.wasm is not None}
    assert pmap.runtime == "v8" and wasm == NAMES


def _perf_can_record(tmp_path: Path) -> str | None:
    perf = shutil.which("perf")
    if perf is None:
        return "perf is not installed"
    r = subprocess.run([perf, "record", "-o", str(tmp_path / "probe.data"), "-F", "99", "--",
                        "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"perf record fails here: {r.stderr.strip()[-200:]}"


def test_live_perf_record_of_wasmtime(tmp_path):
    why = _perf_can_record(tmp_path)
    if why:
        pytest.skip(why)
    data = tmp_path / "wt.data"
    p = _run_wasmtime(JIT / "jit_hot.wasm", 1.0,
                      ["perf", "record", "-F", "499", "-g", "-o", str(data), "--"])
    p.wait(timeout=120)
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True).stdout
    pmap = take_perf_map(int(script.split(b"\n", 1)[0].split()[1]))
    sym = Symbolizer([load_module(JIT / "jit_hot.wasm")], on_mismatch="raise")
    agg = ProfileAggregator(sym)
    agg.add_records(PerfScriptReader(perf_maps=[pmap]).records(io.BytesIO(script)), source="rec")
    (prof,) = agg.results()
    top = max(self_by_function(prof).items(), key=lambda kv: kv[1])
    assert top[0] == (2, "mix")
    assert any(f.wasm_index == 4 and f.function == "run" for s in prof.samples for f in s.stack)
