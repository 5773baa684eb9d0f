"""wamrc --format=object files and Wasmtime .cwasm modules produced here with wasmtime-py."""

from __future__ import annotations

import json
import struct

import pytest

from wasmprof.binary.cwasm import decode_addrmap, parse_cwasm
from wasmprof.binary.elf import parse_elf_object
from wasmprof.binary.loader import find_companion, load_module
from wasmprof.binary.wasm import parse_wasm
from wasmprof.errors import BinaryFormatError

wasmtime = pytest.importorskip("wasmtime")


def test_object_symbols_match_readelf(data_dir):
    name = "crash_oob.O2.objsbc.o"
    raw = (data_dir / "aot" / name).read_bytes()
    exp = json.loads((data_dir / "expected" / "aot" / f"{name}.expected.json").read_text())
    obj = parse_elf_object(raw, name)
    want = {(s["name"], s["value"], s["size"]) for s in exp["elf_symbols"]
            if s["name"].startswith("aot_func") and s["section_index"] == "2"}
    got = {(f"aot_func#{n}", v, s) for n, (v, s) in obj.funcs.items()} | \
          {(f"aot_func_internal#{n}", v, s) for n, (v, s) in obj.internal.items()}
    assert got == want
    assert obj.machine == "EM_X86_64" and obj.elf_class == 64
    # .eh_frame makes pyelftools claim DWARF; there is none
    from io import BytesIO

    from elftools.elf.elffile import ELFFile
    assert ELFFile(BytesIO(raw)).has_dwarf_info()
    assert obj.debug_sections == [] and not obj.has_dwarf
    mod = load_module(data_dir / "aot" / name)
    assert mod.kind == "elf-object" and not mod.has_dwarf and mod.arch == "x86_64"


def test_object_without_wrappers_has_no_internal_symbols(data_dir):
    obj = parse_elf_object((data_dir / "aot" / "crash_oob.O2.obj.o").read_bytes(), "obj.o")
    assert obj.internal == {} and len(obj.funcs) == 65
    v, s = obj.funcs[5]
    assert obj.function_at(v) == (5, False) and obj.function_at(v + s - 1) == (5, False)


@pytest.fixture(scope="session")
def cwasm_files(data_dir, tmp_path_factory):
    """(.wasm path, .cwasm path) pairs compiled once per session."""
    out = []
    d = tmp_path_factory.mktemp("cwasm")
    for name in ("fib.O2.wasm", "crash_oob.O2.wasm"):
        src = data_dir / "wasm" / name
        engine = wasmtime.Engine()
        blob = wasmtime.Module(engine, src.read_bytes()).serialize()
        p = d / name.replace(".wasm", ".cwasm")
        p.write_bytes(blob)
        out.append((src, p))
    return out


def test_cwasm_functions_map_back_to_wasm_bodies(cwasm_files):
    for src, path in cwasm_files:
        wb = parse_wasm(src.read_bytes(), str(src))
        mod = load_module(path)
        assert mod.kind == "cwasm" and mod.arch == "x86_64"
        assert mod.import_function_count == wb.import_function_count
        cw = mod.elf
        assert cw.addrmap is not None
        bodies = {b.wasm_index: b for b in wb.bodies}
        checked = 0
        for f in cw.functions:
            body = bodies[f.wasm_index]
            assert f.name == wb.function_name(f.wasm_index)
            # every address-map value inside this function's native code lies in its body
            for pc in range(f.text_offset, f.text_offset + f.size):
                pos = cw.native_to_wasm(pc)
                if pos is not None:
                    assert body.size_offset <= pos < body.end, (f, pc, pos)
                    checked += 1
            assert cw.function_at(f.text_offset + f.size - 1) is f
        assert checked > 1000
        assert mod.functions[wb.import_function_count].text_offset == 0


def test_addrmap_legacy_encoding_gives_the_same_answers(cwasm_files):
    _, path = cwasm_files[0]
    cw = parse_cwasm(path.read_bytes(), str(path))
    am = cw.addrmap
    assert am.encoding == "compact"
    n = len(am.pcs)
    legacy = struct.pack("<I", n) + struct.pack(f"<{n}I", *am.pcs) + struct.pack(
        f"<{n}I", *[0xFFFFFFFF if p is None else p for p in am.positions])
    again = decode_addrmap(legacy, 0, len(legacy), "legacy")
    assert again.encoding == "legacy"
    for pc in range(0, am.pcs[-1] + 16, 3):
        assert again.lookup(pc) == am.lookup(pc)


def test_addrmap_damage_is_reported():
    bad = struct.pack("<II", 5, 1) + struct.pack("<II", 0, 999) + b"\x00"
    with pytest.raises(BinaryFormatError) as e:
        decode_addrmap(bad, 0, len(bad), "x.cwasm")
    assert "addrmap" in str(e.value)


def test_cwasm_with_native_dwarf(data_dir, tmp_path):
    cfg = wasmtime.Config()
    cfg.debug_info = True
    engine = wasmtime.Engine(cfg)
    blob = wasmtime.Module(engine, (data_dir / "wasm" / "fib.O2.wasm").read_bytes()).serialize()
    p = tmp_path / "dbg.cwasm"
    p.write_bytes(blob)
    mod = load_module(p)
    assert mod.kind == "cwasm" and mod.has_dwarf


def test_cwasm_finds_the_wasm_it_was_compiled_from(cwasm_files, data_dir):
    (fib_src, fib_cw), (oob_src, oob_cw) = cwasm_files
    stripped = load_module(data_dir / "wasm" / "fib.O2.strip-all.wasm")
    fib, oob = load_module(fib_src), load_module(oob_src)
    mod = load_module(oob_cw)
    assert find_companion(mod, [stripped, fib]) is None       # other code: no match
    assert find_companion(mod, [stripped, fib, oob]) is oob
    mod = load_module(fib_cw)
    assert find_companion(mod, [stripped, oob, fib]) is fib   # same code, DWARF preferred
    assert find_companion(load_module(fib_cw), [stripped]) is stripped
