"""Which module a crash is resolved against, which offset space, and how that is explained."""

from __future__ import annotations

import pytest

from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import find_companion, load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.model import AddressSpace, FrameStatus


@pytest.fixture(scope="module")
def mods(data_dir):
    paths = ["wasm/crash_oob.O2.wasm", "wasm/inline_chain.O2.wasm", "wasm/crash_trap.O2.wasm",
             "aot/inline_chain.O2.csn.aot"]
    loaded = [load_module(data_dir / p) for p in paths]
    for m in loaded:
        find_companion(m, loaded)
    return loaded


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


def crash_of(path):
    [c] = list(scan_crashes(path.open("rb"), str(path)))
    return c


def test_names_pick_the_module_and_bytes_pick_the_space(data_dir, mods, resolver):
    sym = CrashSymbolizer(mods, resolver)
    classic = crash_of(data_dir / "dumps/inline_chain.O2.trap2.classic.log")
    aot = crash_of(data_dir / "dumps/inline_chain.O2.trap2.aot-csn.log")
    fast = crash_of(data_dir / "dumps/crash_oob.O2.load.fast.log")
    assert sym.match(classic)[0].path.endswith("inline_chain.O2.wasm")
    assert sym.match(aot)[0].path.endswith("inline_chain.O2.csn.aot")
    assert sym.choose(classic).space is AddressSpace.INTERP
    assert sym.choose(aot).space is AddressSpace.AOT
    assert sym.choose(fast).space is AddressSpace.FAST_INTERP
    text = sym.describe_choice(classic)
    assert "inline_chain.O2.wasm" in text and "interp" in text and "call instruction" in text
    sym.symbolize(fast)
    assert all(f.status is not FrameStatus.EXACT for f in fast.frames)


def test_plugin_name_decides_and_explicit_mode_wins(data_dir, mods, resolver):
    crash = crash_of(data_dir / "dumps/crash_trap.O2.trap.classic.log")
    crash.plugin = "istio-system.crash-trap"
    choice = CrashSymbolizer(mods, resolver).choose(crash)
    assert choice.module.path.endswith("crash_trap.O2.wasm") and "plugin" in choice.module_reason
    forced = CrashSymbolizer(mods, resolver, mode="aot").choose(crash)
    assert forced.space is AddressSpace.AOT and forced.space_reason == "--mode aot"
    with pytest.raises(ValueError):
        CrashSymbolizer(mods, resolver, mode="jit")


def test_without_modules_frames_keep_what_was_printed(data_dir, resolver):
    crash = crash_of(data_dir / "dumps/crash_oob.O2.load.aot-cs.log")
    CrashSymbolizer([], resolver).symbolize(crash)
    assert len(crash.frames) == len(crash.raw_frames)
    assert crash.frames[0].status is FrameStatus.INDEX_ONLY and crash.frames[0].wasm_index == 13
    assert crash.frames[-1].function == "_start" and "no module given" in crash.frames[-1].reason


def test_native_frames_stay_native(resolver, mods):
    text = (b"[2025-02-11 12:00:00.100][1][critical][backtrace] [./source/server/backtrace.h:127] "
            b"Caught Segmentation fault, suspect faulting address 0x0\n"
            b"[2025-02-11 12:00:00.101][1][critical][backtrace] [./source/server/backtrace.h:121] "
            b"#0: __restore_rt [0x7f3b2a05a520]\n"
            b"[2025-02-11 12:00:00.101][1][critical][backtrace] [./source/server/backtrace.h:123] "
            b"#1: [0x40fba0c7]\n")
    [c] = list(scan_crashes([text], "n.log"))
    CrashSymbolizer(mods, resolver).symbolize(c)
    assert [f.native for f in c.frames] == [True, True]
    assert c.frames[0].function == "__restore_rt" and c.frames[1].status is FrameStatus.UNKNOWN
    assert c.space is AddressSpace.NATIVE
