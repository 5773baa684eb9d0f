"""Wrong modules are refused (issue 14, Build 2): before naming AOT or JIT frames the
recording is checked against the module (perf-map function count vs AOT functions, function
offsets vs the .aot's text offsets, ``aot_func#N`` and offsets vs the function table). The CLI
exits 2 naming both sides; the library/server path leaves those frames ``aot_func#N`` with a
note. Several plugins in one process: the same per perf-map segment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof.binary.loader import load_module
from wasmprof.cli import main
from wasmprof.ingest.perf_map import read_perf_map
from wasmprof.model import FrameStatus
from wasmprof.module_match import ModuleMismatchError
from wasmprof.profiles import (Symbolizer, assign_perf_map_modules, read_profile_input,
                               self_by_function)

BOT = "bot_detect.O2.perf.g"


def run_files(data_dir: Path, run: str) -> tuple[Path, Path]:
    (pmap,) = (data_dir / "perf").glob(f"{run}.perf-*.map")
    return data_dir / "perf" / f"{run}.perf-script.txt", pmap


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasmprof", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_a_wrong_module_naming_both_counts(data_dir, tmp_path):
    script, _ = run_files(data_dir, BOT)
    out = tmp_path / "x.svg"
    r = cli("flamegraph", str(script), "--module", str(data_dir / "wasm/crash_oob.O2.wasm"),
            "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "has 58 AOT functions, crash_oob.O2.wasm has 65" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and not list(tmp_path.iterdir())
    # the right module: exit 0 and Wasm names
    r = cli("flamegraph", str(script), "--module", str(data_dir / "wasm/bot_detect.O2.wasm"),
            "--format", "folded", "-o", str(tmp_path / "ok.folded"))
    assert r.returncode == 0, r.stderr
    assert "glob_match" in (tmp_path / "ok.folded").read_text()


def test_cli_note_mode_keeps_the_frames_unnamed(data_dir, tmp_path):
    script, _ = run_files(data_dir, BOT)
    wrong = load_module(data_dir / "wasm/crash_oob.O2.wasm")
    r = cli("flamegraph", str(script), "--module", wrong.path, "--on-mismatch", "note",
            "--format", "folded", "-o", str(tmp_path / "x.folded"), "--json")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "x.folded").read_text()
    assert "aot_func#" in text
    wasm_names = {f.name for f in wrong.functions if f.name and not f.imported}
    frames = {f for line in text.splitlines() for f in line.rpartition(" ")[0].split(";")}
    assert not frames & (wasm_names - {"main", "_start"}), frames & wasm_names
    import json
    info = json.loads(r.stdout)
    assert any("crash_oob.O2.wasm has 65" in n and "left unnamed" in n for n in info["notes"])


def test_other_aot_build_is_refused_by_function_offsets(data_dir):
    """Same plugin and function count, another wamrc build (no frame pointers): the .aot's
    text offsets disagree with the perf map's addresses."""
    script, pmap_path = run_files(data_dir, "fib.O2.perf.g")
    mods = [load_module(data_dir / "aot/fib.O2.plain.aot"), load_module(data_dir / "wasm/fib.O2.wasm")]
    with pytest.raises(ModuleMismatchError) as e:
        assign_perf_map_modules([read_perf_map(pmap_path)], mods, on_mismatch="raise")
    assert "fib.O2.plain.aot" in str(e.value) and "different build" in str(e.value)
    # the build that made the recording fits, strongly
    notes = assign_perf_map_modules([read_perf_map(pmap_path)],
                                    [load_module(data_dir / "aot/fib.O2.perf.aot"),
                                     load_module(data_dir / "wasm/fib.O2.wasm")],
                                    on_mismatch="raise")
    assert notes == []


def test_without_a_perf_map_indexes_past_the_module_are_refused(data_dir, tmp_path):
    wasmtime = pytest.importorskip("wasmtime")
    tiny = tmp_path / "tiny.wasm"
    tiny.write_bytes(wasmtime.wat2wasm(
        '(module (func $a) (func $b) (func $c) (export "a" (func $a)))'))
    script, _ = run_files(data_dir, BOT)
    r = cli("flamegraph", str(script), "--no-auto-maps", "--module", str(tiny),
            "--format", "folded", "-o", str(tmp_path / "x.folded"))
    assert r.returncode == 2
    assert "tiny.wasm has 3 AOT functions" in r.stderr and "aot_func#" in r.stderr
    # the right module without its map: named, with a note that the check was weaker
    (p,) = read_profile_input(str(script))
    sp = Symbolizer([load_module(data_dir / "wasm/bot_detect.O2.wasm")],
                    on_mismatch="raise").symbolize(p)
    assert any("without a perf map" in n for n in sp.notes)
    assert ("glob_match" in {k[1] for k in self_by_function(sp)})


def _two_plugin_process(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    runs = ["fib.O2.perf.g", BOT]
    script, maps = [], []
    for run in runs:
        s, pmap = run_files(data_dir, run)
        pid = pmap.name.rsplit("-", 1)[1].split(".")[0]
        script.append(s.read_text().replace(f" {pid} ", " 4242 ")
                      .replace(f"perf-{pid}.map", "perf-4242.map"))
        maps.append(pmap.read_text())
    (tmp_path / "envoy.perf").write_text("\n".join(script))
    (tmp_path / "perf-4242.map").write_text("".join(maps))
    return tmp_path / "envoy.perf", tmp_path / "perf-4242.map"


def test_two_plugins_one_module_given(data_dir, tmp_path):
    """One process, two plugins, only fib's module given: fib's segment is named, the other
    segment is another plugin and stays aot_func#N with a note, even in strict mode; a
    module that fits neither segment is refused."""
    script, pmap_path = _two_plugin_process(data_dir, tmp_path)
    fib = [load_module(data_dir / "aot/fib.O2.perf.aot"), load_module(data_dir / "wasm/fib.O2.wasm")]
    pmap = read_perf_map(pmap_path)
    notes = assign_perf_map_modules([pmap], fib, on_mismatch="raise")
    assert any("fib.O2.perf.aot (function offsets match)" in n for n in notes), notes
    assert any("has 58 AOT functions" in n and "another plugin" in n for n in notes), notes
    (prof,) = read_profile_input(str(script), perf_maps=[pmap])
    sp = Symbolizer(fib, on_mismatch="raise").symbolize(prof)
    by_fn = self_by_function(sp)
    assert any(name == "fib_rec" and n > 0 for (_, name), n in by_fn.items())
    unnamed = {f.printed_name for s in sp.samples for f in s.stack
               if f.status is FrameStatus.INDEX_ONLY and f.reason and "left unnamed" in f.reason}
    assert unnamed and all(n.startswith("aot_func#") for n in unnamed)
    assert not any(f.function == "glob_match" for s in sp.samples for f in s.stack)
    wrong = [load_module(data_dir / "wasm/crash_oob.O2.wasm")]
    with pytest.raises(ModuleMismatchError) as e:
        assign_perf_map_modules([read_perf_map(pmap_path)], wrong, on_mismatch="raise")
    assert "the given modules have" in str(e.value) or "crash_oob.O2.wasm has 65" in str(e.value)
    assert main(["flamegraph", str(script), "--perf-map", str(pmap_path), "--module",
                 str(data_dir / "wasm/crash_oob.O2.wasm"), "-o", str(tmp_path / "x.svg")]) == 2
    assert not (tmp_path / "x.svg").exists()


def test_library_default_is_lenient(data_dir):
    """What the server calls: no on_mismatch given → frames unnamed, a note, no exception."""
    script, pmap_path = run_files(data_dir, BOT)
    mods = [load_module(data_dir / "wasm/crash_oob.O2.wasm")]
    pmap = read_perf_map(pmap_path)
    notes = assign_perf_map_modules([pmap], mods)
    assert any("crash_oob.O2.wasm has 65" in n for n in notes)
    (prof,) = read_profile_input(str(script), perf_maps=[pmap])
    sp = Symbolizer(mods).symbolize(prof)
    aot = [f for s in sp.samples for f in s.stack if f.printed_name and "aot_func#" in f.printed_name]
    assert aot and all(f.status is FrameStatus.INDEX_ONLY and f.function is None for f in aot)
    from wasmprof.profiles import frame_label
    assert {frame_label(f) for f in aot} == {f.printed_name for f in aot}
    with pytest.raises(ValueError):
        Symbolizer(mods, on_mismatch="maybe")


@pytest.mark.slow
def test_server_keeps_unmatched_frames_unnamed_with_a_note(data_dir, tmp_path_factory):
    """A profile posted under the wrong plugin: the export names no crash_oob function, shows
    aot_func#N, and says why."""
    from pg import wait_until
    from server_proc import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("srv-mismatch"),
                        extra_args=["--allow-anonymous", "ingest,read,admin", "--rate-limit",
                                    "0", "--quiet"]).start()
    try:
        wasm = data_dir / "wasm/crash_oob.O2.wasm"
        with srv.client() as c:
            r = c.post("/api/v1/modules", params={"plugin": "wrong-plugin"},
                       files={"file": (wasm.name, wasm.read_bytes())})
            assert r.status_code in (200, 201), r.text
            mid = r.json()["id"]
            wait_until(lambda: c.get(f"/api/v1/modules/{mid}").json()["symbols"]["index"]
                       in ("ready", "failed"), timeout=60)
            script, pmap = run_files(data_dir, BOT)
            r = c.post("/api/v1/profiles", params={"plugin": "wrong-plugin"},
                       files={"file": (script.name, script.read_bytes()),
                              "perf_map": (pmap.name, pmap.read_bytes())})
            assert r.status_code == 200, r.text
            r = c.get("/api/v1/profiles", params={"plugin": "wrong-plugin", "format": "json"})
            assert r.status_code == 200, r.text
            got = r.json()
    finally:
        srv.stop()
    funcs = {f["function"] for f in got["functions"] if not f["native"]}
    crash_names = {f.name for f in load_module(wasm).functions if f.name}
    assert not funcs & crash_names, funcs & crash_names
    assert any(f.startswith("aot_func#") for f in funcs)
    assert any("58 AOT functions" in n and "crash_oob.O2.wasm has 65" in n for n in got["notes"])


def test_offsets_past_a_function_are_refused_in_the_stream(data_dir, tmp_path):
    """No perf map, the .aot given: ``aot_func#N+off`` with off beyond function N's code is
    evidence of another build, also when other offsets of N came first."""
    lines = [f"iwasm 7  1.{i:06d}: 1 cpu-clock:\n\t{0x1000 + i:x} aot_func#3+0x{i:x} (/tmp/perf-7.map)\n\n"
             for i in range(4)]
    lines.append("iwasm 7  2.000000: 1 cpu-clock:\n\t9999 aot_func#3+0x9999 (/tmp/perf-7.map)\n\n")
    script = tmp_path / "x.perf"
    script.write_text("".join(lines))
    aot = str(data_dir / "aot/fib.O2.perf.aot")
    r = cli("flamegraph", str(script), "--no-auto-maps", "--module", aot, "--format", "folded",
            "-o", str(tmp_path / "x.folded"))
    assert r.returncode == 2 and "aot_func#3+0x9999, past the end" in r.stderr, r.stderr
    r = cli("flamegraph", str(script), "--no-auto-maps", "--module", aot, "--on-mismatch",
            "note", "--format", "folded", "-o", str(tmp_path / "x.folded"))
    assert r.returncode == 0
    folded = (tmp_path / "x.folded").read_text().splitlines()
    assert sorted(line.rsplit(" ", 1)[1] for line in folded) == ["1", "4"]
    assert any(line.startswith("aot_func#3 ") for line in folded)
