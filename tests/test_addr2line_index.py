"""The on-disk index: built once, loaded from the cache, rebuilt when damaged or of another
format version; small cold jobs decode only the units they need; the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from wasmprof.addr2line import index as idx
from wasmprof.addr2line.debuginfo import ModuleDebug
from wasmprof.addr2line.demangle import demangle
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.model import AddressSpace

ROOT = Path(__file__).resolve().parent.parent


def _chains(block, addrs):
    return [block.chain(a) for a in addrs]


def test_index_is_cached_and_reloaded(data_dir, tmp_path):
    mod = load_module(data_dir / "wasm/inline_chain.O2.wasm")
    first = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    assert not first.loaded_from_disk
    block = first.build_full()
    assert first.saved and first.path.exists()
    addrs = sorted(set(block.row_addr))[::7]
    second = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    assert second.loaded_from_disk and second.complete
    assert _chains(second.block, addrs) == _chains(block, addrs)
    assert any(len(c) >= 4 for c in _chains(second.block, addrs)), "inline chains survive"


def test_damaged_index_is_rebuilt(data_dir, tmp_path):
    mod = load_module(data_dir / "wasm/crash_oob.O2.wasm")
    d = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    good = d.build_full()
    data = bytearray(d.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    d.path.write_bytes(bytes(data))
    again = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    assert not again.loaded_from_disk
    assert again.chain(543) == good.chain(543)
    d.path.write_bytes(b"WPRFIDX\0garbage")              # truncated
    assert not ModuleDebug(mod.wasm, mod.identity, tmp_path).loaded_from_disk
    # rebuilt on demand and rewritten
    third = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    third.build_full()
    assert ModuleDebug(mod.wasm, mod.identity, tmp_path).loaded_from_disk


def test_other_format_version_is_rebuilt(data_dir, tmp_path, monkeypatch):
    mod = load_module(data_dir / "wasm/crash_oob.O2.wasm")
    d = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    block = d.build_full()
    # a file written by another format version at the same place is refused
    monkeypatch.setattr(idx, "FORMAT_VERSION", idx.FORMAT_VERSION + 1)
    d.path.write_bytes(block.to_bytes(mod.identity, d.hash))
    monkeypatch.undo()
    assert idx.load_index(d.path, mod.identity, d.hash) is None
    assert not ModuleDebug(mod.wasm, mod.identity, tmp_path).loaded_from_disk
    # and a new version never reads an old file name
    monkeypatch.setattr(idx, "FORMAT_VERSION", idx.FORMAT_VERSION + 1)
    assert idx.index_path(tmp_path, mod.identity, d.hash) != d.path


def test_small_cold_job_decodes_only_covering_units(data_dir, tmp_path):
    mod = load_module(data_dir / "wasm/crash_oob.O2.wasm")
    d = ModuleDebug(mod.wasm, mod.identity, tmp_path)
    chain = d.chain(543)
    assert [c[0] for c in chain] == ["header_value_len", "headers_total_size"]
    assert len(d.block.units) == 1 < len(d.reader.units)
    assert not d.complete and not d.path.exists()        # partial work is not cached
    full = ModuleDebug(mod.wasm, mod.identity, None).build_full()
    assert full.chain(543) == chain


def test_demangling_real_names():
    assert demangle("_ZNK7higress4util10RingBufferIiLj8EE2atEj") == \
        "higress::util::RingBuffer<int, 8u>::at(unsigned int) const"
    assert demangle("_ZN4core3fmt9Formatter3pad17h0123456789abcdefE") == \
        "core::fmt::Formatter::pad"
    assert demangle("_RNvCs15kBYyAo9fc_7mycrate7example") == "mycrate::example"
    assert demangle("main.(*Router).ServeHTTP") == "main.(*Router).ServeHTTP"   # Go: as is
    assert demangle("_Zgarbage") == "_Zgarbage"


def test_cxx_plugin_names_from_dwarf(data_dir):
    """cxx_plugin: the display name is the demangled DWARF linkage name, equal to what the
    module's name section (and so WAMR's dump) shows."""
    mod = load_module(data_dir / "wasm/cxx_plugin.O2.wasm")
    r = Resolver()
    names = mod.wasm.names.function_names
    seen = 0
    for f in mod.functions:
        if f.body_start is None or not names.get(f.wasm_index, "").count("::"):
            continue
        got = r.resolve_address(mod, f.body_end - 2, AddressSpace.FILE)
        outer = got[-1]
        if outer.raw_function and outer.raw_function.startswith("_Z"):
            assert outer.function == names[f.wasm_index]
            seen += 1
    assert seen >= 3


def _cli(*args, stdin: str | None = None):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "wasmprof", "addr2line", *args],
                          capture_output=True, text=True, input=stdin, cwd=ROOT, env=env,
                          timeout=60)


def test_cli_json_text_stdin_and_errors(data_dir):
    wasm = str(data_dir / "wasm/crash_oob.O2.wasm")
    p = _cli(wasm, "0x3fc", "1021", "--space", "interp", "--json")
    assert p.returncode == 0, p.stderr
    objs = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [o["space"] for o in objs] == ["interp", "interp"]
    assert [f["function"] for f in objs[1]["frames"]] == ["header_value_len",
                                                         "headers_total_size"]
    assert objs[1]["frames"][0] | {"line": 23, "column": 12, "inlined": True} == \
        objs[1]["frames"][0]
    p = _cli(wasm, stdin="0x3fc\n\n0x399\n")
    assert p.returncode == 0 and "oob_buffer.c:23:12 (inlined)" in p.stdout
    assert "crash_oob.c:39:28" in p.stdout
    p = _cli(wasm, "0x3fc", "zzz")
    assert p.returncode == 2 and "not an address" in p.stderr and "0x3fc:" in p.stdout
    assert "Traceback" not in p.stderr
    p = _cli(str(data_dir / "src"), "0x10")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = _cli("--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "fast-interp" in p.stdout


def test_cli_stripped_with_companion_and_aot(data_dir):
    stripped = str(data_dir / "wasm/crash_oob.O2.strip-all.wasm")
    comp = str(data_dir / "wasm/crash_oob.O2.wasm")
    p = _cli(stripped, "0x3fc", "--json")
    assert json.loads(p.stdout)["frames"][0]["status"] == "index-only"
    p = _cli(stripped, "0x3fc", "--json", "--companion", comp)
    assert json.loads(p.stdout)["frames"][-1]["function"] == "headers_total_size"
    p = _cli(str(data_dir / "aot/crash_oob.O2.csn.aot"), "0x3fc", "--space", "aot",
             "--companion", comp, "--json")
    fr = json.loads(p.stdout)["frames"]
    assert (fr[0]["function"], fr[0]["line"], fr[0]["status"]) == ("header_value_len", 23,
                                                                   "exact")
    p = _cli(stripped, "0x3fc", "--companion", str(data_dir / "wasm/fib.O2.wasm"))
    assert p.returncode == 2 and "does not match" in p.stderr


def test_bulk_resolve_addresses_matches_resolve_many(data_dir, tmp_path):
    """``resolve_addresses`` (shared, read-only results) gives resolve_many's answers for
    every space and kind of address: inside bodies, offset 0, outside every body; results
    are shared between addresses of one interval and carry no per-input fields."""
    import random

    from wasmprof.model import RawFrame

    mod = load_module(data_dir / "wasm/cxx_plugin.O2.wasm")
    w = mod.wasm
    cps = w.code_payload_start
    rnd = random.Random(5)
    files = [rnd.randrange(b.start, b.end) for b in w.bodies for _ in range(4)]
    files += [0, 1, cps - 3, w.bodies[-1].end + 10, files[0], files[0] + 1]
    fields = ("function", "raw_function", "file", "line", "column", "inlined", "status",
              "reason", "wasm_index", "module")
    for cache in (None, tmp_path):        # cold (builds the index) and warm (loads it)
        for space, addrs in ((AddressSpace.FILE, files),
                             (AddressSpace.CODE, [max(a - cps, 0) for a in files]),
                             (AddressSpace.INTERP, [a + 1 for a in files])):
            raws = [RawFrame(index=i, space=space, offset=a) for i, a in enumerate(addrs)]
            want = Resolver(cache_dir=cache).resolve_many(mod, raws)
            got = Resolver(cache_dir=cache).resolve_addresses(mod, addrs, space)
            assert len(got) == len(want)
            for i, (g, wnt) in enumerate(zip(got, want)):
                assert [tuple(getattr(f, k) for k in fields) for f in g] == \
                    [tuple(getattr(f, k) for k in fields) for f in wnt], (space, addrs[i])
                shared = g[0].input_index is None
                if shared:
                    assert g[0].address is None and g[0].raw_offset is None
                else:
                    assert g[0].input_index == i and g[0].raw_offset == addrs[i]
                assert shared or g[0].status != "exact" or addrs[i] == 0 or \
                    g[0].address is not None
            assert got[-2] is got[0]                     # same address: the same list
            assert any(f.status == "exact" for fr in got for f in fr)
            assert any(f.status != "exact" for fr in got for f in fr)


def test_prefetch_makes_one_partial_decode_for_a_crash(data_dir, tmp_path):
    """Frames resolved one by one after ``prefetch`` need no further decoding, and get the
    same answers as with the complete index."""
    from wasmprof.model import RawFrame

    mod = load_module(data_dir / "wasm/cxx_plugin.O2.wasm")
    w = mod.wasm
    raws = [RawFrame(index=i, space=AddressSpace.FILE, offset=(b.start + b.end) // 2)
            for i, b in enumerate(w.bodies[::3][:12])]
    r = Resolver(cache_dir=tmp_path)
    r.prefetch(mod, raws)
    d = r.debug_for(mod)
    assert not d.complete and d.block is not None
    block = d.block
    got = [r.resolve(mod, raw, input_index=raw.index) for raw in raws]
    assert d.block is block, "no re-decoding after prefetch"
    full = Resolver(cache_dir=None)
    full.build_index(mod)
    assert [[(f.function, f.file, f.line, f.column) for f in fr] for fr in got] == \
        [[(f.function, f.file, f.line, f.column) for f in full.resolve(mod, raw)]
         for raw in raws]
    assert sum(f.status == "exact" for fr in got for f in fr) >= 6
