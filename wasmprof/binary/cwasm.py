"""Wasmtime precompiled modules (``.cwasm``, formats.md §7), read with pyelftools.

Contract: :func:`parse_cwasm` returns a :class:`CwasmFile`: the ``wasm[m]::function[i]``
symbols (Wasm index incl. imports -> ``.text`` offset, size, name) and the
``.wasmtime.addrmap`` native->Wasm map in either encoding (legacy fixed arrays or the compact
block form of wasmtime PR 13628). :meth:`CwasmFile.native_to_wasm` answers the Wasm *file*
offset (the space V8/Wasmtime/WAMR-AOT print) for a ``.text`` offset. Malformed input raises
:class:`BinaryFormatError`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from wasmprof.binary.elf import ElfSection, open_elf, read_sections
from wasmprof.binary.reader import ByteReader
from wasmprof.errors import BinaryFormatError

ELFOSABI_WASMTIME = 200
_FUNC_SYM = re.compile(r"wasm\[(\d+)\]::function\[(\d+)\](?:::(.*))?\Z", re.S)
_NONE = 0xFFFFFFFF


@dataclass(slots=True)
class CwasmFunction:
    module_index: int
    wasm_index: int
    name: str | None
    text_offset: int
    size: int


@dataclass(slots=True)
class AddressMap:
    """Sorted ``.text`` offsets and the Wasm file offset each starts (None: no Wasm origin)."""

    encoding: str                   # "legacy" or "compact"
    pcs: list[int]
    positions: list[int | None]

    def lookup(self, text_offset: int) -> int | None:
        i = bisect.bisect_right(self.pcs, text_offset) - 1
        return self.positions[i] if i >= 0 else None


@dataclass(slots=True)
class CwasmFile:
    source: str
    machine: str
    sections: list[ElfSection]
    text_offset: int | None
    text_size: int
    functions: list[CwasmFunction]
    addrmap: AddressMap | None
    has_dwarf: bool = False
    notes: list[str] = field(default_factory=list)
    _starts: list[int] | None = field(default=None, repr=False)

    def function(self, wasm_index: int, module_index: int = 0) -> CwasmFunction | None:
        return next((f for f in self.functions
                     if f.wasm_index == wasm_index and f.module_index == module_index), None)

    def function_at(self, text_offset: int) -> CwasmFunction | None:
        """The Wasm function whose native code holds ``text_offset`` (trampolines: None)."""
        if self._starts is None:
            self.functions.sort(key=lambda f: f.text_offset)
            self._starts = [f.text_offset for f in self.functions]
        i = bisect.bisect_right(self._starts, text_offset) - 1
        if i >= 0:
            f = self.functions[i]
            if f.text_offset <= text_offset < f.text_offset + max(f.size, 1):
                return f
        return None

    def native_to_wasm(self, text_offset: int) -> int | None:
        """Wasm file offset for a ``.text`` offset, or None (no address map, no Wasm origin)."""
        if self.addrmap is None:
            return None
        return self.addrmap.lookup(text_offset)


def is_cwasm_elf(elf) -> bool:
    if elf.header["e_ident"]["EI_OSABI"] in (ELFOSABI_WASMTIME, "ELFOSABI_WASMTIME"):
        return True
    return any(s.name.startswith(".wasmtime.") for s in elf.iter_sections())


def parse_cwasm(data: bytes, source: str = "<cwasm>") -> CwasmFile:
    elf = open_elf(data, source)
    try:
        return _parse(elf, data, source)
    except BinaryFormatError:
        raise
    except Exception as e:  # pyelftools raises many types on malformed input
        raise BinaryFormatError(f"malformed Wasmtime module: {e}", source=source, offset=None,
                                expected="consistent ELF sections and symbols") from None


def _parse(elf, data: bytes, source: str) -> CwasmFile:
    sections = read_sections(elf, source)
    text = next((s for s in sections if s.name == ".text"), None)
    funcs: list[CwasmFunction] = []
    symtab = elf.get_section_by_name(".symtab")
    if symtab is not None:
        for sym in symtab.iter_symbols():
            m = _FUNC_SYM.match(sym.name)
            if m and sym["st_info"]["type"] == "STT_FUNC":
                funcs.append(CwasmFunction(int(m.group(1)), int(m.group(2)), m.group(3) or None,
                                           sym["st_value"], sym["st_size"]))
    cw = CwasmFile(source=source, machine=str(elf.header["e_machine"]), sections=sections,
                   text_offset=text.offset if text else None, text_size=text.size if text else 0,
                   functions=funcs, addrmap=None,
                   has_dwarf=any(s.name == ".debug_info" for s in sections))
    am = next((s for s in sections if s.name == ".wasmtime.addrmap"), None)
    if am is None:
        cw.notes.append("no .wasmtime.addrmap: native offsets map to functions only")
    else:
        cw.addrmap = decode_addrmap(data, am.offset, am.size, source)
    return cw


def decode_addrmap(data: bytes, offset: int, size: int, source: str) -> AddressMap:
    """Decode ``.wasmtime.addrmap`` (legacy if ``size == 4 + 8 * count``, else compact)."""
    r = ByteReader(data, source, start=offset, end=offset + size)
    count = r.u32("addrmap entry count")
    if size == 4 + 8 * count:
        pcs = [r.u32("addrmap text offset") for _ in range(count)]
        pos = [r.u32("addrmap wasm offset") for _ in range(count)]
        _check_sorted(pcs, offset + 4, source)
        return AddressMap("legacy", pcs, [None if p == _NONE else p for p in pos])
    nblocks = r.u32("addrmap block count")
    r.check_count(nblocks, 8, "addrmap block")
    index = [(r.u32("block text offset"), r.u32("block body position")) for _ in range(nblocks)]
    body_start = r.pos
    r.check_count(count, 1, "addrmap entry")
    pcs: list[int] = []
    positions: list[int | None] = []
    for k, (first_pc, body_pos) in enumerate(index):
        start = body_start + body_pos
        end = body_start + index[k + 1][1] if k + 1 < nblocks else r.end
        if not body_start <= start <= end <= r.end:
            raise r.error(f"addrmap block {k} body lies outside the section",
                          at=r.pos - 8 * (nblocks - k), expected="ascending body positions "
                          f"within {r.end - body_start} bytes", found=str(body_pos))
        br = ByteReader(data, source, start=start, end=end)
        pc = first_pc
        last: int | None = None
        first = True
        while not br.at_end():
            token = br.uleb("addrmap entry token", bits=64)
            delta, is_none = token >> 1, token & 1
            if first and delta:
                raise br.error("first entry of an addrmap block has a pc delta",
                               expected="delta 0", found=str(delta))
            pc += delta
            if is_none:
                positions.append(None)
            elif last is None:
                last = br.uleb("addrmap position", bits=64)
                positions.append(last)
            else:
                last += br.sleb("addrmap position delta")
                positions.append(last)
            pcs.append(pc)
            first = False
    if len(pcs) != count:
        raise BinaryFormatError("addrmap entry count does not match its blocks", source=source,
                                offset=offset, expected=f"{count} entries",
                                found=f"{len(pcs)} decoded")
    _check_sorted(pcs, offset, source)
    return AddressMap("compact", pcs, positions)


def _check_sorted(pcs: list[int], offset: int, source: str) -> None:
    for i in range(1, len(pcs)):
        if pcs[i] < pcs[i - 1]:
            raise BinaryFormatError("addrmap text offsets are not sorted", source=source,
                                    offset=offset, expected="ascending offsets",
                                    found=f"{pcs[i]} after {pcs[i - 1]} (entry {i})")
