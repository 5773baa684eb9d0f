"""Every WAMR dump of the fixture corpus symbolizes to the ground truth in expected/dumps,
read raw (iwasm's own output) and embedded in Envoy / istio-proxy logs with other threads'
lines interleaved into the stdout dump."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import find_companion, load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest.crashlog import scan_crashes, scan_log
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.model import Crash, FrameStatus, Runtime

_MODULES: dict[str, object] = {}
_RESOLVER: list[Resolver] = []


def _module(path: Path):
    key = str(path)
    if key not in _MODULES:
        _MODULES[key] = load_module(path)
    return _MODULES[key]


def _resolver() -> Resolver:
    if not _RESOLVER:
        _RESOLVER.append(Resolver())
    return _RESOLVER[0]


def _cases(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for log in sorted((root / "dumps").glob("*.log")):
        exp_path = root / "expected" / "dumps" / (log.name + ".expected.json")
        if not exp_path.exists():
            continue
        exp = json.loads(exp_path.read_text())
        if all((root / m).exists() for m in (exp["run"]["module"], exp["symbolized_against"])):
            out.append((log, exp))
    return out


def _symbolizer(root: Path, exp: dict) -> CrashSymbolizer:
    paths = dict.fromkeys([exp["run"]["module"], exp["symbolized_against"]])
    mods = [_module(root / p) for p in paths]
    for m in mods:
        if m.companion is None:
            find_companion(m, mods)
    return CrashSymbolizer(mods, _resolver())


def _noise(fmt: LineFormat, k: int) -> str:
    texts = [("17", "debug", "http", "[C12][S9] request end stream"),
             ("42", "info", "wasm", "wasm log other-plugin root_b vm_b: token ok #1"),
             ("17", "trace", "wasm", "[host->vm] proxy_on_request_headers(2, 8, 1)"),
             ("42", "warning", "main", "caught 3 connections # pending")]
    thread, level, logger, msg = texts[k % len(texts)]
    return format_record(fmt, msg, thread=thread, level=level, logger=logger,
                         timestamp=f"2025-11-03 08:14:22.{k % 1000:03d}")


def embed(dump: str, fmt: LineFormat, exception: str | None, sample: str, *,
          record_after: bool) -> bytes:
    """A gateway log holding the dump as Envoy+WAMR would write it: the failure record
    (stderr, with prefix) before or after the stdout dump, other threads' lines in between."""
    lines = [_noise(fmt, k) for k in range(4)]
    lines.append(format_record(fmt, f"wasm log istio-system.{sample} my_root my_vm: handling",
                               thread="31", level="info",
                               location="source/extensions/common/wasm/context.cc:1157"))
    record = format_record(fmt, "Function: proxy_on_request_headers failed: Exception: "
                           f"{exception}", thread="31") if exception else None
    if record and not record_after:
        lines.append(record)
    for i, line in enumerate(dump.splitlines()):
        lines.append(line)
        if i % 3 == 1 and line.startswith("#"):
            lines.append(_noise(fmt, i))
    if record and record_after:
        lines.append(_noise(fmt, 5))
        lines.append(record)
    lines += [_noise(fmt, k) for k in range(6, 9)]
    return ("\n".join(lines) + "\n").encode()


def check_against_truth(crash: Crash, exp: dict, root: Path) -> None:
    wasm = _module(root / exp["symbolized_against"])
    export_index = next((f.wasm_index for f in wasm.functions if "_start" in f.exports), None)
    assert crash.message == exp["exception"]
    assert crash.runtime is Runtime.WAMR
    assert len(crash.raw_frames) == exp["frame_count"]
    by_input: dict[int, list] = {}
    for f in crash.frames:
        by_input.setdefault(f.input_index, []).append(f)
    for ef in exp["frames"]:
        chain = by_input[ef["frame"]]
        where = f"{exp['log']} frame #{ef['frame']:02d}"
        assert chain[0].raw_offset == ef["raw_offset"], where
        assert chain[0].printed_name == ef["printed_name"], where
        truth = ef["symbolized"]
        if _export_named_wrapper(ef, exp):
            # Ground truth maps the printed "_start" through the name section (f7), but an AOT
            # file without names prints *export* names: "_start" is the export of
            # _start.command_export (the function the offset lies in when there is one).
            # We follow the runtime.
            assert chain[-1].wasm_index == export_index, where
            if ef.get("func_index_from_offset") is not None:
                assert export_index == ef["func_index_from_offset"], where
            continue
        if (truth is None or ef.get("offset_consistent_with_name") is False
                or not truth["frames"]):
            # unusable offset (fast interpreter, 0, stale) or no DWARF row there (libc):
            # the function only, and the reason why
            assert len(chain) == 1, where
            assert chain[0].status is not FrameStatus.EXACT, where
            assert chain[0].reason, where
            assert chain[0].function == ef["expected_function_name"], where
            continue
        assert len(chain) == len(truth["frames"]), (where, chain, truth["frames"])
        for got, want in zip(chain, truth["frames"]):
            assert _same_function(got.function, want), (where, got)
            assert got.file == want["file"], where
            if want["line"]:
                assert (got.line, got.column) == (want["line"], want["column"]), (where, got)
                assert got.status is FrameStatus.EXACT, where
            else:
                assert got.line is None and got.status is not FrameStatus.EXACT, where
            assert got.inlined == want["inlined"], where


def _demangler_neutral(name: str) -> str:
    """llvm-cxxfilt prints template literals as ``8u``, wasm-tools as ``(unsigned int)8``."""
    name = re.sub(r"\(unsigned int\)(\d+)", r"\1u", name)
    name = re.sub(r"\(unsigned long\)(\d+)", r"\1ul", name)
    return re.sub(r"\(int\)(-?\d+)", r"\1", name)


def _same_function(got: str | None, want: dict) -> bool:
    if got in (want["function"], want["qualified_function"]):
        return True
    return got is not None and want["qualified_function"] is not None and (
        _demangler_neutral(got) == _demangler_neutral(want["qualified_function"]))


def _export_named_wrapper(ef: dict, exp: dict) -> bool:
    return (ef.get("offset_consistent_with_name") is False
            and ef["printed_name"] == "_start"
            and all(f["printed_name"] == "_start" or f["printed_name"].startswith("$f")
                    for f in exp["frames"]))


def _run_raw(root: Path, log: Path, exp: dict) -> None:
    crashes = list(scan_crashes(log.open("rb"), str(log)))
    if exp["frame_count"] == 0:
        assert crashes == [], log.name       # the runtime aborted before printing a dump
        return
    assert len(crashes) == 1, (log.name, crashes)
    check_against_truth(_symbolizer(root, exp).symbolize(crashes[0]), exp, root)


def _run_embedded(root: Path, log: Path, exp: dict, fmt: LineFormat, record_after: bool) -> None:
    data = embed(log.read_text(), fmt, exp["exception"], exp["run"]["sample"],
                 record_after=record_after)
    items = list(scan_log([data[i:i + 700] for i in range(0, len(data), 700)], "gw.log"))
    crashes = [c for c in items if isinstance(c, Crash)]
    # nothing lost: pass-through + crash lines = every input line
    out_lines = sum(len(x.splitlines()) if isinstance(x, bytes) else len(x.raw) for x in items)
    assert out_lines == len(data.splitlines())
    if exp["exception"] is None:
        assert crashes == [] or not crashes[0].raw_frames
        return
    assert len(crashes) == 1, (log.name, fmt, [(c.message, c.first_line) for c in crashes])
    crash = crashes[0]
    if fmt is not LineFormat.ISTIO_OLD:          # the old TSV format prints no thread
        assert crash.thread == "31"
        assert crash.plugin == f"istio-system.{exp['run']['sample']}"
    assert crash.function == "proxy_on_request_headers"
    check_against_truth(_symbolizer(root, exp).symbolize(crash), exp, root)


VARIANTS = [(LineFormat.ENVOY, False), (LineFormat.ISTIO, True), (LineFormat.ISTIO_OLD, False)]


def test_local_dumps_raw_and_embedded(data_dir):
    cases = _cases(data_dir)
    assert len(cases) >= 50
    kinds = {exp["run"]["exec_mode"] for _, exp in cases}
    assert {"classic-interp", "fast-interp", "aot"} <= kinds
    for log, exp in cases:
        _run_raw(data_dir, log, exp)
        for fmt, after in VARIANTS:
            _run_embedded(data_dir, log, exp, fmt, after)


@pytest.mark.fixtures
def test_every_shared_dump_raw(shared_fixtures):
    cases = _cases(shared_fixtures)
    assert len(cases) >= 190
    for log, exp in cases:
        _run_raw(shared_fixtures, log, exp)


@pytest.mark.fixtures
@pytest.mark.parametrize("fmt,after", VARIANTS, ids=[f"{f}-{a}" for f, a in VARIANTS])
def test_every_shared_dump_embedded(shared_fixtures, fmt, after):
    for log, exp in _cases(shared_fixtures):
        _run_embedded(shared_fixtures, log, exp, fmt, after)
