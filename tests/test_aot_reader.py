"""WAMR AOT reader: real wamrc 2.4.3 files (L3, x86_64 + aarch64) and synthetic L1/L2/L3,
i386 and version-4 files from tests/aotgen.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from aotgen import (build_aot, export_section, function_section,  # noqa: E402
                    name_section, relocation_section, simple_spec, spec_from_aot,
                    target_info, text_section)

from wasmprof.binary.aot import parse_aot  # noqa: E402
from wasmprof.binary.elf import parse_elf_object  # noqa: E402
from wasmprof.errors import BinaryFormatError  # noqa: E402


def _load(data_dir: Path, name: str):
    data = (data_dir / "aot" / name).read_bytes()
    return parse_aot(data, name), data


def _expected(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "expected" / "aot" / f"{name}.expected.json").read_text())


@pytest.mark.parametrize("name", ["crash_oob.O2.csn.aot", "crash_oob.O2.plain.aot",
                                  "crash_oob.O2.aarch64.aot", "crash_oob.O2.sbc.aot",
                                  "fib.O2.perf.aot", "cxx_plugin.O2.csn.aot"])
def test_real_files_counts_and_names(data_dir, name):
    aot, _ = _load(data_dir, name)
    exp = _expected(data_dir, name)
    assert aot.version == 6 and aot.layout == "L3"
    assert aot.import_func_count == exp["imported_function_count"]
    assert aot.func_count == exp["aot_function_count"] == len(aot.text_offsets)
    if ".csn." in name:
        # NAME custom section: wasm index (imports included) -> name
        for f in exp["functions"]:
            assert aot.names[f["wasm_index"]] == f["name"]
    else:
        assert aot.names == {}


def test_target_info_decoded(data_dir):
    x86, _ = _load(data_dir, "crash_oob.O2.csn.aot")
    arm, _ = _load(data_dir, "crash_oob.O2.aarch64.aot")
    assert (x86.target.arch, x86.target.e_machine, x86.target.is_64bit) == ("x86_64", 62, True)
    assert x86.target.features == ["tiny-stack-frame", "frame-per-function"]
    assert (arm.target.arch, arm.target.machine) == ("aarch64v8", "aarch64")
    assert arm.target.features == []
    # relocation groups name real ELF relocation sections, symbols include runtime helpers
    assert {g.name for g in x86.relocation_groups} <= {".rela.text", ".rela.rodata",
                                                         ".rela.rodata.cst16", ".rela.data",
                                                         ".rela.rodata.cst8", ".rela.rodata.cst4"}
    assert any(s.startswith("aot_") for s in x86.relocation_symbols)


@pytest.mark.parametrize("aot_name,obj_name", [("crash_oob.O2.plain.aot", "crash_oob.O2.obj.o"),
                                               ("crash_oob.O2.sbc.aot", "crash_oob.O2.objsbc.o")])
def test_text_offsets_equal_object_twin(data_dir, aot_name, obj_name):
    aot, _ = _load(data_dir, aot_name)
    obj = parse_elf_object((data_dir / "aot" / obj_name).read_bytes(), obj_name)
    assert aot.code_sha256 == obj.text_sha256          # same code bytes
    assert aot.text_offsets == [obj.funcs[n][0] for n in range(len(aot.text_offsets))]
    # without the twin, wrappers and bodies cannot be told apart
    has_internal = bool(obj.internal)
    assert aot.has_stack_wrappers is has_internal
    v, s = obj.funcs[2]
    assert aot.function_at(v + s - 1) == (2, None if has_internal else False)
    assert aot.apply_object_symbols(obj)
    if has_internal:
        iv, isz = obj.internal[2]
        assert aot.function_at(iv) == (2, True)
        assert aot.function_at(v) == (2, False)
    # a twin that does not match is refused
    other = parse_elf_object((data_dir / "aot" / "crash_oob.O2.objperf.o").read_bytes(), "p.o")
    fresh, _ = _load(data_dir, aot_name)
    assert fresh.apply_object_symbols(other) is False


def test_function_at_matches_perf_map(data_dir):
    """The perf map written by iwasm gives each aot_func#N's load address: text offset =
    address - code base (the aot_func#0 address, ...004)."""
    aot, _ = _load(data_dir, "fib.O2.perf.aot")
    lines = (data_dir / "perf" / "fib.O2.perf.g.perf-20737.map").read_text().splitlines()
    entries = [(int(a, 16), int(s, 16), sym) for a, s, sym in (ln.split() for ln in lines)]
    base = min(a for a, _, _ in entries)
    for addr, size, sym in entries:
        n = int(sym.split("#")[1])
        assert aot.text_offsets[n] == addr - base
        assert aot.function_at(addr - base) == (n, False)
        if addr - base + size <= aot.code_size:     # the last size includes the runtime PLT
            assert aot.function_at(addr - base + size - 1)[0] == n
    assert aot.function_at(aot.code_size) is None
    assert aot.function_at(-1) is None


def test_reencoded_l3_is_byte_identical_for_carried_sections(data_dir):
    """The test writer reproduces wamrc's own bytes: evidence that aotgen's L1/L2 output
    (same writer, other layout switches) follows the same conventions."""
    aot, data = _load(data_dir, "crash_oob.O2.csn.aot")
    spec = spec_from_aot(aot, data, "L3", 6)
    secs = {s.id if s.id != 100 else (100, s.subtype): data[s.payload_start:s.end]
            for s in aot.sections}
    assert target_info(spec) == secs[0]
    assert text_section(spec) == secs[2]
    assert function_section(spec) == secs[3]
    assert export_section(spec) == secs[4]
    assert relocation_section(spec) == secs[5]
    ours, real = name_section(spec, spec.names), secs[(100, 3)]
    assert ours[:16] == real[:16] and ours[20:] == real[20:]   # bytes 16..20: copied LEB size


@pytest.mark.parametrize("layout,version", [("L1", 3), ("L2", 3), ("L2", 4), ("L3", 5),
                                            ("L3", 6)])
@pytest.mark.parametrize("name", ["crash_oob.O2.csn.aot", "crash_oob.O2.aarch64.aot"])
def test_real_file_reencoded_in_every_layout(data_dir, name, layout, version):
    aot, data = _load(data_dir, name)
    again = parse_aot(build_aot(spec_from_aot(aot, data, layout, version)), f"{name}.{layout}")
    assert again.version == version and again.layout == layout
    assert again.text_offsets == aot.text_offsets
    assert again.type_indices == aot.type_indices
    assert again.import_func_count == aot.import_func_count
    assert again.names == aot.names
    assert [(e.name, e.index) for e in again.exports] == [(e.name, e.index) for e in aot.exports]
    assert [len(g.relocations) for g in again.relocation_groups] == \
        [len(g.relocations) for g in aot.relocation_groups]
    assert again.target.feature_flags == (None if layout == "L1" else aot.target.feature_flags)


@pytest.mark.parametrize("layout", ["L1", "L2", "L3"])
@pytest.mark.parametrize("bits", [32, 64])
def test_synthetic_layouts_and_widths(layout, bits):
    spec = simple_spec(layout, bits=bits, nfuncs=5, imports=3,
                       elem_segments=[[3, 4, 5]], mem_segments=[b"hello", b"world!!"],
                       import_globals=[("env", "g")],
                       raw_sections={".debug_info": b"\1\2\3", ".debug_line": b"\4"},
                       data_sections=[(".rodata", b"abc"), (".aot_stack_sizes", b"\0" * 20)])
    aot = parse_aot(build_aot(spec), "synthetic.aot")
    assert aot.layout == layout and aot.target.is_64bit is (bits == 64)
    assert aot.target.arch == ("x86_64" if bits == 64 else "i386")
    assert aot.import_func_count == 3 and aot.func_count == 5
    assert aot.text_offsets == spec.text_offsets
    assert [f.field for f in aot.init.import_funcs] == ["host0", "host1", "host2"]
    assert aot.names == spec.names
    assert aot.raw_sections == {".debug_info": b"\1\2\3", ".debug_line": b"\4"}
    assert aot.has_dwarf and aot.has_stack_wrappers
    assert aot.init.elem_segments == 1 and aot.init.mem_segments == 2
    # offsets are not in index order: lookups go through the sorted table
    for n, off in enumerate(spec.text_offsets):
        assert aot.function_at(off)[0] == n
        assert aot.text_range(n)[1] - off == (40 if n == 4 else 16)
    rel = aot.relocation_groups[0].relocations[0]
    assert (rel.offset, rel.type, rel.symbol) == (4, 2, ".text")


def test_aarch64_32bit_offsets_follow_bin_type_not_arch():
    spec = simple_spec("L3", bits=32)
    spec.arch, spec.e_machine = "armv7", 40
    aot = parse_aot(build_aot(spec), "arm.aot")
    assert not aot.target.is_64bit and aot.text_offsets == spec.text_offsets


@pytest.mark.parametrize("layout", ["L2", "L3"])
def test_version4_element_layout_ambiguity(layout):
    """v4 was written by 2.3 (fixed element offsets) and 2.4.0 (init exprs): the reader
    keeps the layout whose INIT_DATA ends exactly at the section end."""
    spec = simple_spec(layout, 4, elem_segments=[[2, 3], [4]])
    aot = parse_aot(build_aot(spec), "v4.aot")
    assert aot.layout == layout
    assert aot.text_offsets == spec.text_offsets
    assert any("element layout" in n for n in aot.notes)


def test_version4_without_elements_parses():
    aot = parse_aot(build_aot(simple_spec("L3", 4)), "v4.aot")
    assert aot.version == 4 and aot.layout in ("L2", "L3")


def test_legacy_strings_without_nul():
    spec = simple_spec("L1")
    blob = build_aot(spec)
    assert b"\x05\x00host0" in blob and b"\x06\x00host0" not in blob   # u16 len, no NUL
    assert parse_aot(blob, "l1.aot").init.import_funcs[0].module == "env"


def test_v3_target_info_size_decides_legacy_layout():
    spec = simple_spec("L2", 3)
    aot = parse_aot(build_aot(spec), "v3.aot")
    assert aot.layout == "L2" and aot.target.feature_flags == 0
    spec = simple_spec("L1", 3)
    aot = parse_aot(build_aot(spec), "v3.aot")
    assert aot.layout == "L1" and aot.target.feature_flags is None


def test_extended_const_init_expressions_in_l3():
    spec = simple_spec("L3", 5)
    # replace the first global's init expr by (i32.add (i32.const 1) (global.get 0))
    from aotgen import W, init_data
    base = init_data(spec)
    plain = W()
    plain.u32(0x41).u32(65536)
    nested = W()
    nested.u32(0x6A).u32(0x41).u32(1).u32(0x23).u32(0)
    assert base.count(bytes(plain.b)) == 1
    patched = base.replace(bytes(plain.b), bytes(nested.b))

    import aotgen
    orig = aotgen.init_data
    aotgen.init_data = lambda s: patched
    try:
        blob = aotgen.build_aot(spec)
    finally:
        aotgen.init_data = orig
    aot = parse_aot(blob, "ext.aot")
    assert aot.text_offsets == spec.text_offsets


def test_aot_inside_wasm_custom_section_uses_blob_relative_alignment(data_dir):
    from wasmprof.binary.wasm import parse_wasm
    data = (data_dir / "aot" / "crash_oob.O2.csn.aot.wasm").read_bytes()
    wb = parse_wasm(data, "x.aot.wasm")
    name, off, length = wb.wamr_aot_blob()
    assert name == "wamr-aot-2.4.3"
    aot = parse_aot(memoryview(data)[off:off + length], "x.aot.wasm", base=off)
    plain, _ = _load(data_dir, "crash_oob.O2.csn.aot")
    assert aot.text_offsets == plain.text_offsets and aot.names == plain.names
    assert aot.code_offset == plain.code_offset + off     # file offsets include the base
    # a blob placed at an offset that is not 4-aligned still parses (alignment is relative)
    shifted = b"\xff\xff" + bytes(memoryview(data)[off:off + length])
    assert parse_aot(memoryview(shifted)[2:], "s", base=2).text_offsets == plain.text_offsets


def test_errors_name_offsets():
    spec = simple_spec("L3")
    blob = bytearray(build_aot(spec))
    blob[4] = 9
    with pytest.raises(BinaryFormatError) as e:
        parse_aot(bytes(blob), "v9.aot")
    assert e.value.offset == 4 and "version 9" in str(e.value) and "v9.aot" in str(e.value)


def test_debug_aot_code_area_holding_an_elf_object(data_dir):
    """DEBUG_AOT wamrc puts the whole object file in the code area; the code base moves to its
    .text. Built here from the real --format=object twin of crash_oob.O2.plain.aot."""
    aot, data = _load(data_dir, "crash_oob.O2.plain.aot")
    obj_bytes = (data_dir / "aot" / "crash_oob.O2.obj.o").read_bytes()
    spec = spec_from_aot(aot, data, "L3", 6)
    spec.code = obj_bytes
    blob = build_aot(spec)
    dbg = parse_aot(blob, "debug.aot")
    assert dbg.embedded_elf and dbg.embedded_debug_sections == []
    obj = parse_elf_object(obj_bytes, "o")
    assert dbg.code_offset == dbg.embedded_elf_offset + obj.text_offset
    assert blob[dbg.code_offset:dbg.code_offset + 64] == \
        data[aot.code_offset:aot.code_offset + 64]
    assert dbg.code_sha256 == aot.code_sha256
    assert dbg.function_at(aot.text_offsets[3]) == aot.function_at(aot.text_offsets[3])
