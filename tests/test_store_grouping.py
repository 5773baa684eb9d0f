"""Crash fingerprints on real fixture crashes and on hand-built frames."""

from __future__ import annotations

import pytest

from wasmprof.grouping import fingerprint, normalize_function, skip_reason
from wasmprof.model import AddressSpace, Crash, Frame, FrameStatus, RawFrame, TrapKind


def _crash(names, trap=TrapKind.UNREACHABLE, message="unreachable", status=FrameStatus.EXACT):
    frames = [Frame(function=n, status=status, input_index=i, wasm_index=10 + i)
              for i, n in enumerate(names)]
    return Crash(message=message, trap_kind=trap, frames=frames)


@pytest.mark.parametrize("name,want", [
    ("app::handler::h0123456789abcdef", "app::handler"),
    ("std::vector<int, std::allocator<int> >::push_back(int const&)", "std::vector<T>::push_back"),
    ("ns::Foo<long>::bar() const", "ns::Foo<T>::bar"),
    ("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop::h0011223344556677",
     "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
    ("ns::Foo<T>::operator<<(int)", "ns::Foo<T>::operator<<"),
    ("operator()", "operator()"),
    ("main", "main"),
])
def test_normalize(name, want):
    assert normalize_function(name) == want


def test_normalize_is_bounded_on_hostile_names():
    assert len(normalize_function("<" * 5000 + ">" * 5000)) <= 512
    normalize_function("a<" * 300)                      # unbalanced: no exception


@pytest.mark.parametrize("name,why", [
    ("runtime._panic", "runtime/panic"), ("core::panicking::panic_fmt", "runtime/panic"),
    ("rust_panic", "runtime/panic"), ("abort", "runtime/panic"), ("dlmalloc", "allocator"),
    ("__rust_alloc", "allocator"), ("memcpy", "libc memory routine"), ("_start", "entry glue"),
    ("select_upstream", None), ("proxy_on_request_headers", None),
])
def test_skip_rules(name, why):
    assert skip_reason(name) == why


def test_hash_suffixes_templates_and_panic_frames_do_not_split_groups():
    a = _crash(["core::panicking::panic_fmt", "rust_panic", "app::Router<u8>::route::h1111111111111111",
                "app::handle::h2222222222222222"])
    b = _crash(["abort", "app::Router<u16>::route::h3333333333333333",
                "app::handle::h4444444444444444", "_start"])
    ka, kb = fingerprint(a, plugin="p"), fingerprint(b, plugin="p")
    assert ka.fingerprint == kb.fingerprint and ka.basis == "symbols"
    assert [f.key for f in ka.used] == ["app::Router<T>::route", "app::handle"]
    assert {f.skipped for f in ka.skipped} == {"runtime/panic"}
    assert "app::Router<T>::route < app::handle" in ka.explanation
    assert fingerprint(a, plugin="other").fingerprint != ka.fingerprint
    c = _crash(["app::Router<u8>::route", "app::handle"], trap=TrapKind.OUT_OF_BOUNDS)
    assert fingerprint(c, plugin="p").fingerprint != ka.fingerprint


def test_top_n_limits_the_frames_used():
    deep = _crash([f"f{i}_work" for i in range(20)])
    k = fingerprint(deep, plugin="p", top_n=3)
    assert [f.key for f in k.used] == ["f0_work", "f1_work", "f2_work"]
    other_bottom = _crash([f"f{i}_work" for i in range(3)] + ["elsewhere"])
    assert fingerprint(other_bottom, plugin="p", top_n=3).fingerprint == k.fingerprint


def test_function_index_fallback_uses_module_identity():
    raw = [RawFrame(index=0, space=AddressSpace.INTERP, offset=0x3d0, printed_name="$f12", func_index=12),
           RawFrame(index=1, space=AddressSpace.INTERP, offset=0x3bf, printed_name="$f9", func_index=9)]
    crash = Crash(message="integer divide by zero", trap_kind=TrapKind.DIVIDE_BY_ZERO, raw_frames=raw)
    k1 = fingerprint(crash, plugin="p", module_identity="code:aaa")
    k2 = fingerprint(crash, plugin="p", module_identity="code:bbb")
    assert k1.basis == "function-indices" and k1.fingerprint != k2.fingerprint
    assert [f.key for f in k1.used] == ["code:aaa#f12", "code:aaa#f9"]
    # resolved frames without names (index-only) fall back the same way
    idx = Crash(message="x", trap_kind=TrapKind.DIVIDE_BY_ZERO, frames=[
        Frame(function=None, status=FrameStatus.INDEX_ONLY, wasm_index=12, input_index=0)])
    assert fingerprint(idx, plugin="p", module_identity="code:aaa").used[0].key == "code:aaa#f12"


def test_message_basis_masks_numbers_and_says_why():
    a = Crash(message="out of bounds memory access at 0x1234 (len 16)", trap_kind=TrapKind.OUT_OF_BOUNDS)
    b = Crash(message="out of bounds memory access at 0xbeef (len 99)", trap_kind=TrapKind.OUT_OF_BOUNDS)
    ka, kb = fingerprint(a, plugin="p"), fingerprint(b, plugin="p")
    assert ka.basis == "message" and ka.fingerprint == kb.fingerprint
    glue = Crash(message="unreachable", trap_kind=TrapKind.UNREACHABLE, raw_frames=[
        RawFrame(index=0, space=AddressSpace.AOT, offset=0, printed_name="_start")])
    kg = fingerprint(glue, plugin="p")
    assert kg.basis == "message" and "entry" in kg.explanation


def _symbolized(data_dir, sample: str, run: str, mode: str):
    from wasmprof.addr2line.resolver import Resolver
    from wasmprof.binary.loader import load_module
    from wasmprof.crashes import CrashSymbolizer
    from wasmprof.ingest.crashlog import scan_crashes

    wasm = load_module(data_dir / "wasm" / f"{sample.split('.')[0]}.O2.wasm")
    path = data_dir / "dumps" / f"{sample}.{run}.log"
    with path.open("rb") as f:
        crash = next(iter(scan_crashes(f, path.name)))
    raw_key = fingerprint(crash, plugin="p", module_identity=wasm.identity)
    CrashSymbolizer([wasm], Resolver(), mode=mode).symbolize(crash)
    return fingerprint(crash, plugin="p", module_identity=wasm.identity), raw_key


@pytest.mark.parametrize("sample", ["crash_divzero.O2.div", "crash_trap.O2.trap", "crash_oob.O2.load"])
def test_same_bug_in_interpreter_and_aot_is_one_group(data_dir, sample):
    """Symbolized, a crash printed by the classic interpreter (post-advance offsets), by AOT
    with and without trap-ip, and by a runtime without name support fingerprint alike."""
    keys = {run: _symbolized(data_dir, sample, run, mode)[0].fingerprint
            for run, mode in (("classic", "interp"), ("aot-csn", "aot"), ("aot-cstrap", "aot"),
                              ("classic-nonames", "interp"))}
    assert len(set(keys.values())) == 1, keys


def test_different_bugs_are_different_groups(data_dir):
    div = _symbolized(data_dir, "crash_divzero.O2.div", "classic", "interp")[0]
    rem = _symbolized(data_dir, "crash_divzero.O2.rem", "classic", "interp")[0]
    assert div.fingerprint != rem.fingerprint
    assert [f.key for f in div.used][:2] == ["per_second", "compute_rate"]


def test_unsymbolized_nonames_dump_uses_indices_until_the_module_arrives(data_dir):
    sym, raw = _symbolized(data_dir, "crash_divzero.O2.div", "classic-nonames", "interp")
    assert raw.basis == "function-indices" and sym.basis == "symbols"
    assert raw.fingerprint != sym.fingerprint
