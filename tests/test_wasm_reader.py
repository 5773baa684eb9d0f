"""Wasm reader against wasm-objdump/llvm ground truth (tests/data copy of the corpus)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_checks import check_wasm  # noqa: E402

from wasmprof.binary.loader import find_companion, load_module  # noqa: E402
from wasmprof.binary.wasm import parse_wasm, validate_with_wasm_tools  # noqa: E402

_DATA = Path(__file__).parent / "data"
# every module of the subset that has ground truth (other tests may add modules without it)
DATA_WASM = sorted(p for p in (_DATA / "wasm").glob("*.wasm")
                   if (_DATA / "expected" / "wasm" / f"{p.name}.module.expected.json").exists())


@pytest.mark.parametrize("path", DATA_WASM, ids=[p.name for p in DATA_WASM])
def test_module_matches_ground_truth(data_dir, path):
    assert check_wasm(data_dir, path) == []


def test_identity_links_stripped_and_debug_builds(data_dir):
    full = load_module(data_dir / "wasm" / "crash_oob.O2.wasm")
    stripped = load_module(data_dir / "wasm" / "crash_oob.O2.strip-all.wasm")
    other = load_module(data_dir / "wasm" / "fib.O2.wasm")
    # same code, DWARF 4 instead of 5: the same identity (either is a valid debug companion)
    assert load_module(data_dir / "wasm" / "crash_oob.O2d4.wasm").identity == full.identity
    assert full.identity == stripped.identity and full.identity.startswith("code:")
    assert full.sha256 != stripped.sha256
    assert not stripped.has_dwarf and not stripped.has_name_section
    assert find_companion(stripped, [other, full]) is full
    assert stripped.companion is full
    assert stripped.functions[9].name == "on_request_headers"    # filled from the companion
    assert find_companion(full, [stripped]) is None                 # nothing better to offer


def test_custom_sections_and_producers(data_dir):
    wb = parse_wasm((data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes(), "x.wasm")
    assert wb.has_dwarf and ".debug_line" in wb.dwarf_sections
    off, content = wb.dwarf_sections[".debug_info"]
    assert wb.data[off:off + len(content)] == content
    assert any("clang" in n for n, _ in wb.producers.get("processed-by", []))
    assert wb.build_id is None and wb.external_debug_info is None


def test_build_id_and_debug_links_are_read():
    """Sections wasm-ld writes with --build-id / emcc -gseparate-dwarf / source maps."""
    def custom(name: str, payload: bytes) -> bytes:
        body = bytes([len(name)]) + name.encode() + payload
        return b"\0" + bytes([len(body)]) + body
    def vec(b: bytes) -> bytes:
        return bytes([len(b)]) + b
    mod = (b"\0asm\1\0\0\0" + custom("build_id", vec(b"\xde\xad\xbe\xef"))
           + custom("external_debug_info", vec(b"plugin.debug"))
           + custom("sourceMappingURL", vec(b"a.wasm.map")))
    m = load_module("synthetic.wasm", mod)
    assert m.build_id == "deadbeef" and m.identity == "build_id:deadbeef"
    assert m.external_debug_info == "plugin.debug"
    assert m.source_mapping_url == "a.wasm.map"


def test_merged_aot_wasm_keeps_wasm_offsets(data_dir):
    merged = load_module(data_dir / "aot" / "fib.O2.plain.aot.wasm")
    plain = load_module(data_dir / "wasm" / "fib.O2.wasm")
    assert merged.kind == "aot.wasm" and merged.identity == plain.identity
    assert merged.code_payload_start == plain.code_payload_start
    assert [f.body_start for f in merged.functions] == [f.body_start for f in plain.functions]
    assert merged.aot_version == 6 and merged.arch == "x86_64"
    assert all(f.text_offset is not None for f in merged.functions if not f.imported)


def test_wasm_tools_validation(data_dir, tmp_path):
    ok, msg = validate_with_wasm_tools(str(data_dir / "wasm" / "fib.O2.wasm"))
    assert ok, msg
    bad = bytearray((data_dir / "wasm" / "fib.O2.wasm").read_bytes())
    code = parse_wasm(bytes(bad)).bodies[3]
    bad[code.end - 1] = 0x02          # the body's final `end` becomes a `block`
    p = tmp_path / "bad.wasm"
    p.write_bytes(bytes(bad))
    ok, msg = validate_with_wasm_tools(str(p))
    assert not ok and msg
