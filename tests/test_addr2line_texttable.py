"""The pre-rendered text of ``wasmprof addr2line`` (wasmprof.addr2line.texttable): built
once per module next to its index, read back by the next run without reading the index,
rebuilt when damaged or written for another module or layout; cold, warm and one-by-one
``resolve`` print the same bytes for every address, whatever its width."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wasmprof.addr2line import texttable as tt
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.commands import addr2line as a2l
from wasmprof.model import AddressSpace, RawFrame

sys.path.insert(0, str(Path(__file__).parent))
from peers import instruction_offsets  # noqa: E402


def _text(resolver, module, values, space=AddressSpace.FILE) -> str:
    return "".join(a2l.fast_text(resolver, module, values, space))


def _single(module, values, space=AddressSpace.FILE) -> str:
    """What rendering ``resolve``'s frames address by address prints."""
    r = Resolver()
    return "".join(hex(v) + a2l._render_text(
        r.resolve(module, RawFrame(index=0, space=space, offset=v)), len(hex(v)))[1]
        for v in values)


def _table_files(cache: Path) -> list[Path]:
    return sorted((cache / "index").glob("*.text*"))


@pytest.mark.parametrize("name", ["inline_chain.O2.wasm", "cxx_plugin.O2.wasm"])
def test_cold_warm_and_single_resolves_print_the_same(data_dir, tmp_path, name):
    path = data_dir / "wasm" / name
    module = load_module(path)
    cps = module.wasm.code_payload_start
    # every instruction, narrow addresses (other widths than most), offset 0, gaps, far
    addrs = instruction_offsets(path) + [0, 1, 5, cps, cps + 1, 0xFFFFFF, 1 << 40]
    cold = _text(Resolver(cache_dir=tmp_path), module, addrs)
    files = _table_files(tmp_path)
    assert len(files) == 1
    warm_resolver = Resolver(cache_dir=tmp_path)
    warm = _text(warm_resolver, module, addrs)
    debug = warm_resolver._view(module).debug
    assert debug._on_disk is None, "the warm path does not read the index"
    assert cold == warm == _single(module, addrs)
    # code addresses too (another head width than file offsets)
    codes = [a - cps for a in addrs if a >= cps]
    assert _text(Resolver(cache_dir=tmp_path), module, codes, AddressSpace.CODE) == \
        _single(module, codes, AddressSpace.CODE)


def test_damaged_or_foreign_table_is_rebuilt(data_dir, tmp_path):
    path = data_dir / "wasm" / "crash_oob.O2.wasm"
    module = load_module(path)
    addrs = instruction_offsets(path)
    want = _text(Resolver(cache_dir=tmp_path), module, addrs)
    (table,) = _table_files(tmp_path)
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    r = Resolver(cache_dir=tmp_path)
    assert _text(r, module, addrs) == want
    assert r._view(module).debug.complete, "rebuilt from the index"
    assert tt.load_table(table, {}) is not None, "and written again"
    table.write_bytes(b"WPRFTXT\0short")
    assert _text(Resolver(cache_dir=tmp_path), module, addrs) == want
    # a table keyed for another module layout is not used
    good = table.read_bytes()
    key = {"layout": "0" * 32}
    assert tt.TextTable.from_bytes(good, key) is None
    assert tt.TextTable.from_bytes(good, {}) is not None


def test_stripped_module_with_companion_gets_its_own_table(data_dir, tmp_path):
    """The table is per module: a stripped build resolved through its companion does not
    reuse the companion's table (names of functions come from each module)."""
    from wasmprof.binary.loader import find_companion
    full = load_module(data_dir / "wasm" / "crash_oob.O2.wasm")
    stripped = load_module(data_dir / "wasm" / "crash_oob.O2.strip-all.wasm")
    assert find_companion(stripped, [full]) is not None
    addrs = instruction_offsets(data_dir / "wasm" / "crash_oob.O2.wasm")
    a = _text(Resolver(cache_dir=tmp_path), full, addrs)
    b = _text(Resolver(cache_dir=tmp_path), stripped, addrs)
    assert len(_table_files(tmp_path)) == 2
    assert b == _single(stripped, addrs) and a == _single(full, addrs)
