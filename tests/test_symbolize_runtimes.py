"""Wasmtime traps produced live by the ``wasmtime`` package, and V8 backtraces written with
the same real offsets: embedded in gateway log lines, parsed, symbolized and compared with
what Wasmtime itself reports (its frames, and its own DWARF lines with
WASMTIME_BACKTRACE_DETAILS=1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import wasmtime

from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.model import AddressSpace, FrameStatus, Runtime, TrapKind

PROGRAMS = [("crash_oob.O2.wasm", "load", TrapKind.OUT_OF_BOUNDS),
            ("crash_divzero.O2.wasm", "div", TrapKind.DIVIDE_BY_ZERO),
            ("inline_chain.O2.wasm", "trap2", None)]


def run_until_trap(path: Path, mode: str, details: bool, monkeypatch) -> wasmtime.Trap:
    monkeypatch.setenv("WASMTIME_BACKTRACE_DETAILS", "1" if details else "0")
    engine = wasmtime.Engine()          # reads WASMTIME_BACKTRACE_DETAILS when created
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    wasi = wasmtime.WasiConfig()
    wasi.argv = [path.stem, mode]
    store.set_wasi(wasi)
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(path)))
    with pytest.raises(wasmtime.Trap) as info:
        instance.exports(store)["_start"](store)
    return info.value


_DETAIL_FRAME = re.compile(r"^\s+(?:\d+:\s+0x[0-9a-f]+ )?- (.+)$")
_DETAIL_AT = re.compile(r"^\s+at (.+):(\d+):(\d+)$")


def wasmtime_own_chains(text: str) -> list[list[tuple[str, str, int, int]]]:
    """Wasmtime's own (name, file, line, col) per input frame, innermost first."""
    chains: list[list] = []
    for line in text.splitlines():
        if line.strip().startswith("Caused by"):
            break
        m = _DETAIL_FRAME.match(line)
        if m:
            if re.match(r"^\s+\d+:", line):
                chains.append([])
            chains[-1].append([m.group(1).split("!")[-1], None, None, None])
            continue
        m = _DETAIL_AT.match(line)
        if m and chains:
            chains[-1][-1][1:] = [m.group(1), int(m.group(2)), int(m.group(3))]
    return chains


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


@pytest.mark.parametrize("name,mode,kind", PROGRAMS)
def test_live_wasmtime_trap_symbolizes_like_wasmtime(data_dir, monkeypatch, resolver,
                                                     name, mode, kind):
    wasm = data_dir / "wasm" / name
    module = load_module(wasm)
    for details in (False, True):
        trap = run_until_trap(wasm, mode, details, monkeypatch)
        text = str(trap)
        log = "\n".join([
            format_record(LineFormat.ISTIO, "wasm log default.demo root vm: request",
                          thread="22", level="info"),
            format_record(LineFormat.ISTIO, "Function: proxy_on_request_headers failed: "
                          + text, thread="22"),
            format_record(LineFormat.ISTIO, "after", thread="23", logger="main")]) + "\n"
        [crash] = list(scan_crashes([log.encode()], "gw.log"))
        assert (crash.runtime, crash.thread, crash.plugin) == (
            Runtime.WASMTIME, "22", "default.demo")
        if kind is not None:
            assert crash.trap_kind is kind
        assert len(crash.raw_frames) == len(trap.frames)
        CrashSymbolizer([module], resolver).symbolize(crash)
        assert crash.space is AddressSpace.WASMTIME
        chains = [[f for f in crash.frames if f.input_index == i] for i in range(len(trap.frames))]
        for chain, wf in zip(chains, trap.frames):
            assert chain[0].raw_offset == wf.module_offset
            assert chain[-1].wasm_index == wf.func_index
        if details:
            theirs = wasmtime_own_chains(text)
            assert len(theirs) == len(chains)
            compared = 0
            for ours, own in zip(chains, theirs):
                if own[0][1] is None:         # Wasmtime found no DWARF row either
                    assert ours[0].status is not FrameStatus.EXACT
                    continue
                assert len(ours) == len(own)
                for o, (fname, file, line, col) in zip(ours, own):
                    assert fname in (o.function, o.raw_function)
                    assert (o.file, o.line, o.column) == (file, line, col)
                    compared += 1
            assert compared >= 3


def test_v8_backtrace_with_real_offsets_symbolizes(data_dir, monkeypatch, resolver):
    """V8 prints module offsets of the instruction, as Wasmtime does: a V8-format backtrace
    built from a live trap's frames must resolve to Wasmtime's own DWARF lines."""
    wasm = data_dir / "wasm" / "inline_chain.O2.wasm"
    trap = run_until_trap(wasm, "trap2", True, monkeypatch)
    lines = [f"{i:3d}:  0x{f.module_offset:x} - {f.func_name}" for i, f in enumerate(trap.frames)]
    message = ("Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable\n"
               "Proxy-Wasm plugin in-VM backtrace:\n" + "\n".join(lines))
    log = format_record(LineFormat.ENVOY, message, thread="8") + "\n"
    [crash] = list(scan_crashes([log.encode()], "gw.log"))
    assert crash.runtime is Runtime.V8
    CrashSymbolizer([load_module(wasm)], resolver).symbolize(crash)
    theirs = wasmtime_own_chains(str(trap))
    for i, own in enumerate(theirs):
        ours = [f for f in crash.frames if f.input_index == i]
        if own[0][1] is None:
            continue
        assert [(o.file, o.line, o.column) for o in ours] == [tuple(x[1:]) for x in own]
