"""A hand-written, narrow DWARF 4/5 decoder for Wasm custom sections (formats.md §6).

It reads only what symbolization needs and skips the rest as fast as Python allows:

- unit headers and each unit's top DIE (name, comp_dir, stmt_list, bases, address ranges),
  so a small job can pick the units covering its addresses without decoding anything else;
- per unit, the ``DW_TAG_subprogram`` / ``DW_TAG_inlined_subroutine`` tree with address
  ranges, names, linkage names and call file/line/column (:func:`decode_unit`);
- per unit, the line program rows (:func:`decode_line_program`).

Everything is checked against pyelftools' answers in ``tests/test_addr2line_dwarf.py``.
Damaged input raises :class:`~wasmprof.errors.BinaryFormatError` naming the section and
offset (``IndexError``/``struct.error`` from a truncated section are converted by callers
via :func:`guarded`).

Wasm facts relied on: little-endian, 32-bit DWARF (``unit_length`` < 0xfffffff0; 64-bit
units are rejected), ``address_size`` 4 (8 accepted). Tombstones (formats.md §6.4) are
*not* filtered here; :mod:`wasmprof.addr2line.index` does that, so tests can see them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, TypeVar

from wasmprof.errors import BinaryFormatError

# -- constants (DWARF 5 §7) -------------------------------------------------------------
TAG_COMPILE_UNIT = 0x11
TAG_PARTIAL_UNIT = 0x3C
TAG_SKELETON_UNIT = 0x4A
TAG_SUBPROGRAM = 0x2E
TAG_INLINED_SUBROUTINE = 0x1D

AT_NAME = 0x03
AT_STMT_LIST = 0x10
AT_LOW_PC = 0x11
AT_HIGH_PC = 0x12
AT_COMP_DIR = 0x1B
AT_DECL_FILE = 0x3A
AT_DECL_LINE = 0x3B
AT_INLINE = 0x20
AT_ABSTRACT_ORIGIN = 0x31
AT_DECLARATION = 0x3C
AT_SPECIFICATION = 0x47
AT_RANGES = 0x55
AT_CALL_COLUMN = 0x57
AT_CALL_FILE = 0x58
AT_CALL_LINE = 0x59
AT_LINKAGE_NAME = 0x6E
AT_STR_OFFSETS_BASE = 0x72
AT_ADDR_BASE = 0x73
AT_RNGLISTS_BASE = 0x74
AT_MIPS_LINKAGE_NAME = 0x2007
AT_GNU_RANGES_BASE = 0x2132
AT_GNU_ADDR_BASE = 0x2133

WANTED_ATTRS = frozenset({
    AT_NAME, AT_STMT_LIST, AT_LOW_PC, AT_HIGH_PC, AT_COMP_DIR, AT_ABSTRACT_ORIGIN,
    AT_DECL_FILE, AT_DECL_LINE, AT_DECLARATION, AT_SPECIFICATION, AT_RANGES, AT_CALL_COLUMN,
    AT_CALL_FILE, AT_CALL_LINE,
    AT_LINKAGE_NAME, AT_STR_OFFSETS_BASE, AT_ADDR_BASE, AT_RNGLISTS_BASE, AT_MIPS_LINKAGE_NAME,
    AT_GNU_RANGES_BASE, AT_GNU_ADDR_BASE})

F_ADDR, F_BLOCK2, F_BLOCK4, F_DATA2, F_DATA4, F_DATA8, F_STRING, F_BLOCK = 1, 3, 4, 5, 6, 7, 8, 9
F_BLOCK1, F_DATA1, F_FLAG, F_SDATA, F_STRP, F_UDATA, F_REF_ADDR = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10
F_REF1, F_REF2, F_REF4, F_REF8, F_REF_UDATA, F_INDIRECT = 0x11, 0x12, 0x13, 0x14, 0x15, 0x16
F_SEC_OFFSET, F_EXPRLOC, F_FLAG_PRESENT, F_STRX, F_ADDRX = 0x17, 0x18, 0x19, 0x1A, 0x1B
F_REF_SUP4, F_STRP_SUP, F_DATA16, F_LINE_STRP, F_REF_SIG8, F_IMPLICIT_CONST = 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x21
F_LOCLISTX, F_RNGLISTX, F_REF_SUP8 = 0x22, 0x23, 0x24
F_STRX1, F_STRX2, F_STRX3, F_STRX4 = 0x25, 0x26, 0x27, 0x28
F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4 = 0x29, 0x2A, 0x2B, 0x2C
F_GNU_ADDR_INDEX, F_GNU_STR_INDEX, F_GNU_REF_ALT, F_GNU_STRP_ALT = 0x1F01, 0x1F02, 0x1F20, 0x1F21

# Byte sizes of fixed-size forms for 32-bit DWARF (offset size 4); address forms are
# patched with the unit's address size.
_FIXED = {F_DATA1: 1, F_REF1: 1, F_FLAG: 1, F_STRX1: 1, F_ADDRX1: 1,
          F_DATA2: 2, F_REF2: 2, F_STRX2: 2, F_ADDRX2: 2, F_STRX3: 3, F_ADDRX3: 3,
          F_DATA4: 4, F_REF4: 4, F_STRP: 4, F_LINE_STRP: 4, F_SEC_OFFSET: 4, F_REF_ADDR: 4,
          F_STRX4: 4, F_ADDRX4: 4, F_REF_SUP4: 4, F_STRP_SUP: 4, F_GNU_REF_ALT: 4,
          F_GNU_STRP_ALT: 4, F_DATA8: 8, F_REF8: 8, F_REF_SIG8: 8, F_REF_SUP8: 8,
          F_DATA16: 16, F_FLAG_PRESENT: 0, F_IMPLICIT_CONST: 0}
_LEB_FORMS = frozenset({F_SDATA, F_UDATA, F_REF_UDATA, F_STRX, F_ADDRX, F_LOCLISTX, F_RNGLISTX,
                        F_GNU_ADDR_INDEX, F_GNU_STR_INDEX})
# DW_AT_high_pc forms that hold an offset from DW_AT_low_pc (the others an address)
_HIGH_OFFSET = frozenset({F_DATA1, F_DATA2, F_DATA4, F_DATA8, F_UDATA})
# skip-plan step codes (negative so they never clash with a fixed byte count)
_S_LEB, _S_STRING, _S_BLOCK1, _S_BLOCK2, _S_BLOCK4, _S_BLOCK = -1, -2, -3, -4, -5, -6

DW_LNS_copy, DW_LNS_advance_pc, DW_LNS_advance_line, DW_LNS_set_file = 1, 2, 3, 4
DW_LNS_set_column, DW_LNS_negate_stmt, DW_LNS_set_basic_block, DW_LNS_const_add_pc = 5, 6, 7, 8
DW_LNS_fixed_advance_pc = 9
DW_LNE_end_sequence, DW_LNE_set_address, DW_LNE_define_file = 1, 2, 3

T = TypeVar("T")


def guarded(section: str, offset: int, fn: Callable[[], T]) -> T:
    """Run a decoder step; turn the errors of truncated/garbled bytes into BinaryFormatError."""
    try:
        return fn()
    except BinaryFormatError:
        raise
    except (IndexError, struct.error, ValueError, KeyError, UnicodeDecodeError,
            RecursionError) as e:
        raise BinaryFormatError(f"damaged {section} ({type(e).__name__}: {e})",
                                source=section, offset=offset) from None


@dataclass(slots=True)
class DwarfSections:
    """The DWARF custom sections of one module: ``{".debug_info": bytes, ...}``.

    ``file_offsets`` keeps where each section's content starts in the .wasm, for errors.
    """

    data: dict[str, bytes]
    file_offsets: dict[str, int] = field(default_factory=dict)
    source: str = "<wasm>"

    @classmethod
    def from_wasm(cls, wasm) -> "DwarfSections":
        secs = wasm.dwarf_sections
        return cls({k: v[1] for k, v in secs.items()}, {k: v[0] for k, v in secs.items()},
                   wasm.source)

    def get(self, name: str) -> bytes:
        return self.data.get(name, b"")

    def error(self, name: str, offset: int, message: str) -> BinaryFormatError:
        base = self.file_offsets.get(name)
        return BinaryFormatError(f"{name}: {message}", source=self.source,
                                 offset=None if base is None else base + offset)


# -- little helpers (inlined by hand in the hot loops) ---------------------------------
def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _sleb(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8", "replace"), end + 1


# -- abbreviations -----------------------------------------------------------------------
@dataclass(slots=True)
class Abbrev:
    tag: int
    has_children: bool
    attrs: list[tuple[int, int, int]]         # (attribute, form, implicit const)
    skip: list[int]                           # skip plan (see _plan)
    fixed_size: int                           # >= 0 when every form has a fixed size
    scope: "ScopePlan | None | bool" = False  # subprograms/inlined: see _scope_plan


# struct codes of fixed-size forms whose value the scope decoder reads (32-bit DWARF,
# little-endian); F_ADDR and the address-index forms take the unit's address size
_STRUCT = {F_DATA1: "B", F_REF1: "B", F_FLAG: "B", F_STRX1: "B", F_ADDRX1: "B",
           F_DATA2: "H", F_REF2: "H", F_STRX2: "H", F_ADDRX2: "H",
           F_DATA4: "I", F_REF4: "I", F_STRP: "I", F_LINE_STRP: "I", F_SEC_OFFSET: "I",
           F_REF_ADDR: "I", F_STRX4: "I", F_ADDRX4: "I", F_REF_SUP4: "I", F_STRP_SUP: "I",
           F_GNU_REF_ALT: "I", F_GNU_STRP_ALT: "I", F_DATA8: "Q", F_REF8: "Q",
           F_REF_SIG8: "Q", F_REF_SUP8: "Q"}
@dataclass(slots=True)
class ScopePlan:
    """How to read a subprogram / inlined-subroutine DIE of one abbreviation in a few
    C calls: ``steps`` run in order, each a ``struct.Struct`` over a run of fixed-size
    forms (its values appended) or a variable form code (one value appended: LEBs and
    strings decoded, blocks skipped as None). ``wanted``: ``(attribute, form, position
    in the values or -1, value of a form without bytes)`` of each attribute the scope
    walk uses, in DIE order."""

    steps: list
    wanted: list[tuple[int, int, int, int]]


def _scope_plan(attrs: list[tuple[int, int, int]], addr_size: int) -> "ScopePlan | None":
    """The plan of a scope abbreviation, or None when a form needs the generic decoder
    (DW_FORM_indirect, unknown forms, 3-byte indexes, 16-byte values)."""
    steps: list = []
    codes: list[str] = []
    wanted: list[tuple[int, int, int, int]] = []
    count = 0
    for at, form, ic in attrs:
        if form in (F_FLAG_PRESENT, F_IMPLICIT_CONST):
            if at in WANTED_ATTRS:
                wanted.append((at, form, -1, 1 if form == F_FLAG_PRESENT else ic))
            continue
        code = _STRUCT.get(form)
        if code is None and form == F_ADDR:
            code = "I" if addr_size == 4 else "Q"
        if code is not None:
            codes.append(code)
        else:
            if form not in _LEB_FORMS and form not in (F_STRING, F_BLOCK1, F_BLOCK2, F_BLOCK4,
                                                        F_BLOCK, F_EXPRLOC):
                return None
            if codes:
                steps.append(struct.Struct("<" + "".join(codes)))
                codes = []
            steps.append(form)
        if at in WANTED_ATTRS:
            wanted.append((at, form, count, 0))
        count += 1
    if codes:
        steps.append(struct.Struct("<" + "".join(codes)))
    return ScopePlan(steps, wanted)


def _plan(attrs: list[tuple[int, int, int]], addr_size: int) -> tuple[list[int], int]:
    steps: list[int] = []
    run = 0
    fixed = True
    for _, form, _ in attrs:
        if form == F_ADDR:
            run += addr_size
            continue
        n = _FIXED.get(form)
        if n is not None:
            run += n
            continue
        fixed = False
        if run:
            steps.append(run)
            run = 0
        if form in _LEB_FORMS:
            steps.append(_S_LEB)
        elif form == F_STRING:
            steps.append(_S_STRING)
        elif form == F_BLOCK1:
            steps.append(_S_BLOCK1)
        elif form == F_BLOCK2:
            steps.append(_S_BLOCK2)
        elif form == F_BLOCK4:
            steps.append(_S_BLOCK4)
        elif form in (F_BLOCK, F_EXPRLOC):
            steps.append(_S_BLOCK)
        else:
            # DW_FORM_indirect or an unknown form: the generic decoder handles it.
            return [], -2
    if run:
        steps.append(run)
    return steps, (sum(steps) if fixed else -1)


def parse_abbrevs(data: bytes, offset: int, addr_size: int) -> dict[int, Abbrev]:
    out: dict[int, Abbrev] = {}
    pos = offset
    while True:
        code, pos = _uleb(data, pos)
        if code == 0:
            return out
        tag, pos = _uleb(data, pos)
        has_children = data[pos] != 0
        pos += 1
        attrs = []
        while True:
            at, pos = _uleb(data, pos)
            form, pos = _uleb(data, pos)
            if at == 0 and form == 0:
                break
            ic = 0
            if form == F_IMPLICIT_CONST:
                ic, pos = _sleb(data, pos)
            attrs.append((at, form, ic))
        skip, fixed = _plan(attrs, addr_size)
        out[code] = Abbrev(tag, has_children, attrs, skip, fixed)


# -- units -----------------------------------------------------------------------------
@dataclass(slots=True)
class Unit:
    """A unit header plus what its top DIE says (resolved: strings, bases, ranges)."""

    index: int
    offset: int               # offset of unit_length in .debug_info
    end: int                  # first byte after the unit
    version: int
    unit_type: int
    addr_size: int
    abbrev_offset: int
    die_offset: int           # first DIE
    tag: int = 0
    name: str | None = None
    comp_dir: str | None = None
    stmt_list: int | None = None
    low_pc: int = 0           # base address for ranges/location lists
    str_offsets_base: int = 8
    addr_base: int = 8
    rnglists_base: int = 12
    ranges: list[tuple[int, int]] | None = None   # None: unknown (decode when in doubt)
    abbrevs: dict[int, Abbrev] | None = None


class DwarfReader:
    """Unit table and decoders over one module's DWARF sections."""

    def __init__(self, sections: DwarfSections) -> None:
        self.sections = sections
        self.info = sections.get(".debug_info")
        self.abbrev = sections.get(".debug_abbrev")
        self.str = sections.get(".debug_str")
        self.line_str = sections.get(".debug_line_str")
        self.str_offsets = sections.get(".debug_str_offsets")
        self.addr = sections.get(".debug_addr")
        self.ranges_sec = sections.get(".debug_ranges")
        self.rnglists = sections.get(".debug_rnglists")
        self.line = sections.get(".debug_line")
        self._abbrev_cache: dict[tuple[int, int], dict[int, Abbrev]] = {}
        self._strp_cache: dict[int, str] = {}
        self.units: list[Unit] = guarded(".debug_info", 0, self._read_units)

    # -- strings / addresses -----------------------------------------------------------
    def _strp(self, off: int) -> str:
        d = self.str
        end = d.index(b"\0", off)
        return d[off:end].decode("utf-8", "replace")

    def _strp_memo(self, off: int) -> str:
        """:meth:`_strp`, memoised (scope names repeat across inline instances)."""
        got = self._strp_cache.get(off)
        if got is None:
            got = self._strp_cache[off] = self._strp(off)
        return got

    def _line_strp(self, off: int) -> str:
        d = self.line_str
        end = d.index(b"\0", off)
        return d[off:end].decode("utf-8", "replace")

    def _strx(self, unit: Unit, idx: int) -> str:
        p = unit.str_offsets_base + 4 * idx
        return self._strp(int.from_bytes(self.str_offsets[p:p + 4], "little"))

    def _addrx(self, unit: Unit, idx: int) -> int:
        p = unit.addr_base + unit.addr_size * idx
        return int.from_bytes(self.addr[p:p + unit.addr_size], "little")

    # -- units -------------------------------------------------------------------------
    def _read_units(self) -> list[Unit]:
        data = self.info
        units: list[Unit] = []
        pos = 0
        n = len(data)
        while pos + 11 <= n:
            length = int.from_bytes(data[pos:pos + 4], "little")
            if length >= 0xFFFFFFF0:
                raise self.sections.error(".debug_info", pos,
                                          "64-bit DWARF units are not supported in Wasm")
            end = pos + 4 + length
            if end > n:
                raise self.sections.error(".debug_info", pos,
                                          f"unit length {length} runs past the section end")
            version = int.from_bytes(data[pos + 4:pos + 6], "little")
            if version >= 5:
                unit_type = data[pos + 6]
                addr_size = data[pos + 7]
                abbrev_off = int.from_bytes(data[pos + 8:pos + 12], "little")
                die = pos + 12
                if unit_type in (4, 5):           # skeleton / split_compile: dwo id
                    die += 8
                elif unit_type in (2, 6):         # type units: signature + type offset
                    die += 12
            elif 2 <= version <= 4:
                unit_type = 1
                abbrev_off = int.from_bytes(data[pos + 6:pos + 10], "little")
                addr_size = data[pos + 10]
                die = pos + 11
            else:
                raise self.sections.error(".debug_info", pos + 4,
                                          f"unsupported DWARF version {version}")
            if addr_size not in (4, 8):
                raise self.sections.error(".debug_info", pos,
                                          f"unsupported address size {addr_size}")
            u = Unit(len(units), pos, end, version, unit_type, addr_size, abbrev_off, die)
            self._read_top_die(u)
            units.append(u)
            pos = end
        return units

    def abbrevs_for(self, unit: Unit) -> dict[int, Abbrev]:
        if unit.abbrevs is None:
            key = (unit.abbrev_offset, unit.addr_size)
            ab = self._abbrev_cache.get(key)
            if ab is None:
                ab = guarded(".debug_abbrev", unit.abbrev_offset,
                             lambda: parse_abbrevs(self.abbrev, unit.abbrev_offset,
                                                   unit.addr_size))
                self._abbrev_cache[key] = ab
            unit.abbrevs = ab
        return unit.abbrevs

    def _read_top_die(self, unit: Unit) -> None:
        abbrevs = self.abbrevs_for(unit)
        data = self.info
        code, pos = _uleb(data, unit.die_offset)
        if code == 0:
            return
        ab = abbrevs.get(code)
        if ab is None:
            raise self.sections.error(".debug_info", unit.die_offset,
                                      f"unknown abbreviation code {code}")
        unit.tag = ab.tag
        raw: dict[int, tuple[int, object]] = {}
        for at, form, ic in ab.attrs:
            val, pos = self._read_form(unit, data, pos, form, ic)
            raw[at] = (form, val)
        # bases first: the top DIE's own strx/addrx/rnglistx forms depend on them
        for at, attr in ((AT_STR_OFFSETS_BASE, "str_offsets_base"), (AT_ADDR_BASE, "addr_base"),
                         (AT_GNU_ADDR_BASE, "addr_base"), (AT_RNGLISTS_BASE, "rnglists_base")):
            if at in raw:
                setattr(unit, attr, int(raw[at][1]))
        if AT_NAME in raw:
            unit.name = self._string(unit, *raw[AT_NAME])
        if AT_COMP_DIR in raw:
            unit.comp_dir = self._string(unit, *raw[AT_COMP_DIR])
        if AT_STMT_LIST in raw:
            unit.stmt_list = int(raw[AT_STMT_LIST][1])
        low = None
        if AT_LOW_PC in raw:
            low = self._address(unit, *raw[AT_LOW_PC])
            unit.low_pc = low
        if AT_RANGES in raw:
            unit.ranges = self.read_ranges(unit, *raw[AT_RANGES])
        elif low is not None and AT_HIGH_PC in raw:
            unit.ranges = [(low, self._high_pc(unit, low, *raw[AT_HIGH_PC]))]
        elif AT_LOW_PC not in raw and AT_HIGH_PC not in raw:
            unit.ranges = []          # no code in this unit (types only)

    # -- generic attribute decoding (cold paths) ---------------------------------------
    def _read_form(self, unit: Unit, data: bytes, pos: int, form: int, ic: int
                   ) -> tuple[object, int]:
        """Raw value of one attribute: ints stay unresolved indexes; strings decoded."""
        if form == F_ADDR:
            return int.from_bytes(data[pos:pos + unit.addr_size], "little"), pos + unit.addr_size
        n = _FIXED.get(form)
        if n is not None:
            if form == F_IMPLICIT_CONST:
                return ic, pos
            if form == F_FLAG_PRESENT:
                return 1, pos
            return int.from_bytes(data[pos:pos + n], "little"), pos + n
        if form in _LEB_FORMS:
            if form == F_SDATA:
                return _sleb(data, pos)
            return _uleb(data, pos)
        if form == F_STRING:
            return _cstr(data, pos)
        if form == F_BLOCK1:
            n = data[pos]
            return None, pos + 1 + n
        if form == F_BLOCK2:
            return None, pos + 2 + int.from_bytes(data[pos:pos + 2], "little")
        if form == F_BLOCK4:
            return None, pos + 4 + int.from_bytes(data[pos:pos + 4], "little")
        if form in (F_BLOCK, F_EXPRLOC):
            n, pos = _uleb(data, pos)
            return None, pos + n
        if form == F_INDIRECT:
            real, pos = _uleb(data, pos)
            return self._read_form(unit, data, pos, real, ic)
        raise self.sections.error(".debug_info", pos, f"unknown attribute form 0x{form:x}")

    def _string(self, unit: Unit, form: int, val) -> str | None:
        if isinstance(val, str):
            return val
        if form in (F_STRP, F_STRP_SUP, F_GNU_STRP_ALT):
            return self._strp(val) if form == F_STRP else None
        if form == F_LINE_STRP:
            return self._line_strp(val)
        if form in (F_STRX, F_STRX1, F_STRX2, F_STRX3, F_STRX4, F_GNU_STR_INDEX):
            return self._strx(unit, val)
        return None

    def _address(self, unit: Unit, form: int, val) -> int:
        if form in (F_ADDRX, F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4, F_GNU_ADDR_INDEX):
            return self._addrx(unit, val)
        return int(val)

    def _high_pc(self, unit: Unit, low: int, form: int, val) -> int:
        if form in (F_ADDR, F_ADDRX, F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4, F_GNU_ADDR_INDEX):
            return self._address(unit, form, val)
        return low + int(val)

    # -- ranges ------------------------------------------------------------------------
    def read_ranges(self, unit: Unit, form: int, val) -> list[tuple[int, int]]:
        """Address ranges ``[(lo, hi), ...]`` of a DW_AT_ranges value (tombstones kept)."""
        if unit.version >= 5:
            if form == F_RNGLISTX:
                p = unit.rnglists_base + 4 * int(val)
                off = unit.rnglists_base + int.from_bytes(self.rnglists[p:p + 4], "little")
            else:
                off = int(val)
            return guarded(".debug_rnglists", off, lambda: self._rnglist(unit, off))
        return guarded(".debug_ranges", int(val), lambda: self._ranges4(unit, int(val)))

    def _ranges4(self, unit: Unit, off: int) -> list[tuple[int, int]]:
        d = self.ranges_sec
        a = unit.addr_size
        maxa = (1 << (8 * a)) - 1
        base = unit.low_pc
        out = []
        while True:
            lo = int.from_bytes(d[off:off + a], "little")
            hi = int.from_bytes(d[off + a:off + 2 * a], "little")
            if off + 2 * a > len(d):
                raise IndexError("range list runs past the section end")
            off += 2 * a
            if lo == 0 and hi == 0:
                return out
            if lo == maxa:
                base = hi
                continue
            if lo >= maxa - 1:                 # tombstone pair (-2, -2): keep as-is
                out.append((lo, hi))
            else:
                out.append((base + lo, base + hi))

    def _rnglist(self, unit: Unit, off: int) -> list[tuple[int, int]]:
        d = self.rnglists
        a = unit.addr_size
        base = unit.low_pc
        out = []
        while True:
            kind = d[off]
            off += 1
            if kind == 0:                       # end_of_list
                return out
            if kind == 1:                       # base_addressx
                i, off = _uleb(d, off)
                base = self._addrx(unit, i)
            elif kind == 2:                     # startx_endx
                i, off = _uleb(d, off)
                j, off = _uleb(d, off)
                out.append((self._addrx(unit, i), self._addrx(unit, j)))
            elif kind == 3:                     # startx_length
                i, off = _uleb(d, off)
                n, off = _uleb(d, off)
                s = self._addrx(unit, i)
                out.append((s, s + n))
            elif kind == 4:                     # offset_pair
                s, off = _uleb(d, off)
                e, off = _uleb(d, off)
                out.append((base + s, base + e))
            elif kind == 5:                     # base_address
                base = int.from_bytes(d[off:off + a], "little")
                off += a
            elif kind == 6:                     # start_end
                s = int.from_bytes(d[off:off + a], "little")
                e = int.from_bytes(d[off + a:off + 2 * a], "little")
                off += 2 * a
                out.append((s, e))
            elif kind == 7:                     # start_length
                s = int.from_bytes(d[off:off + a], "little")
                off += a
                n, off = _uleb(d, off)
                out.append((s, s + n))
            else:
                raise ValueError(f"unknown range list entry kind {kind}")

    # -- the DIE tree ------------------------------------------------------------------
    def decode_unit(self, unit: Unit) -> "UnitScopes":
        """Every code-carrying subprogram and inlined subroutine of ``unit``."""
        return guarded(".debug_info", unit.offset,
                       lambda: self._walk(unit, unit.die_offset, UnitScopes(unit.index)))

    def subprogram_directory(self, unit: Unit) -> list[tuple[int, int, int]]:
        """``(lo, hi, DIE offset)`` per address range of each code-carrying subprogram of
        ``unit`` (at any depth; declarations excluded), in DIE order. A cheap walk: inlined
        subroutines are skipped and no names are decoded. With :meth:`decode_subprograms`
        it lets a small job decode only the subprograms covering its addresses."""
        out: list[tuple[int, int, int]] = []
        guarded(".debug_info", unit.offset,
                lambda: self._walk(unit, unit.die_offset, UnitScopes(unit.index), directory=out))
        return out

    def decode_subprograms(self, unit: Unit, offsets: list[int]) -> "UnitScopes":
        """Like :meth:`decode_unit`, restricted to the subtrees of the subprogram DIEs at
        ``offsets`` (from :meth:`subprogram_directory`); a subtree nested in one already
        decoded is not decoded twice. Node order follows DIE order, as in the full walk."""
        scopes = UnitScopes(unit.index)
        done_to = -1
        for off in sorted(set(offsets)):
            if off < done_to:
                continue
            done_to = self.decode_subprogram(unit, off, scopes)
        return scopes

    def decode_subprogram(self, unit: Unit, offset: int, scopes: "UnitScopes") -> int:
        """Append the subtree of the DIE at ``offset`` to ``scopes``; returns the offset
        just after the subtree."""
        return guarded(".debug_info", offset,
                       lambda: self._walk(unit, offset, scopes, single=True))

    def _walk(self, unit: Unit, start: int, scopes: "UnitScopes", *, single: bool = False,
              directory: list | None = None):
        """The DIE walk behind :meth:`decode_unit` (``start`` = first DIE, to the unit
        end), :meth:`decode_subprograms` (``single``: one DIE and its subtree; returns the
        offset after it) and :meth:`subprogram_directory` (``directory``: collect
        subprogram ranges only; inlined subroutines are skipped like any other DIE)."""
        abbrevs = self.abbrevs_for(unit)
        data = self.info
        end = unit.end
        addr_size = unit.addr_size
        inl_tag = -1 if directory is not None else TAG_INLINED_SUBROUTINE
        # node fields (parallel lists)
        n_parent = scopes.parent
        n_kind = scopes.kind
        n_ranges = scopes.ranges
        n_call = scopes.call
        n_origin = scopes.origin
        decls = scopes.decls          # DIE offset -> (name, linkage, ref, decl file, line)
        stack: list[int] = []         # enclosing node id per open DIE with children
        cur = -1
        pos = start
        wanted = WANTED_ATTRS
        fixed_tbl = _FIXED
        strp = self._strp_memo
        unit_off = unit.offset
        while pos < end:
            die_off = pos
            # uleb abbreviation code (fast path for one byte)
            code = data[pos]
            pos += 1
            if code >= 0x80:
                code, pos = _uleb(data, die_off)
            if code == 0:
                if stack:
                    cur = stack.pop()
                    if single and not stack:
                        return pos
                continue
            ab = abbrevs[code]
            tag = ab.tag
            if tag != TAG_SUBPROGRAM and tag != inl_tag:
                fs = ab.fixed_size
                if fs >= 0:
                    pos += fs
                elif fs == -1:
                    for step in ab.skip:
                        if step >= 0:
                            pos += step
                        elif step == _S_LEB:
                            while data[pos] & 0x80:
                                pos += 1
                            pos += 1
                        elif step == _S_STRING:
                            pos = data.index(b"\0", pos) + 1
                        elif step == _S_BLOCK:
                            n = data[pos]
                            pos += 1
                            if n >= 0x80:
                                n, pos = _uleb(data, pos - 1)
                            pos += n
                        elif step == _S_BLOCK1:
                            pos += 1 + data[pos]
                        elif step == _S_BLOCK2:
                            pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
                        else:
                            pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
                else:
                    for _, form, ic in ab.attrs:
                        _, pos = self._read_form(unit, data, pos, form, ic)
                if ab.has_children:
                    stack.append(cur)
                continue
            # a subprogram or inlined subroutine: decode the attributes we need
            vals: dict[int, tuple[int, object]] = {}
            plan = ab.scope
            if plan is False:
                plan = ab.scope = _scope_plan(ab.attrs, addr_size)
            if plan is not None:
                flat: list = []
                for st in plan.steps:
                    if st.__class__ is int:
                        if st == F_SDATA:
                            v, pos = _sleb(data, pos)
                        elif st in _LEB_FORMS:
                            v, pos = _uleb(data, pos)
                        elif st == F_STRING:
                            v, pos = _cstr(data, pos)
                        else:
                            v, pos = self._read_form(unit, data, pos, st, 0)
                        flat.append(v)
                    else:
                        flat.extend(st.unpack_from(data, pos))
                        pos += st.size
                for at, form, k, const in plan.wanted:
                    vals[at] = (form, flat[k] if k >= 0 else const)
            else:
                for at, form, ic in ab.attrs:
                    if form == F_ADDR:
                        if at in wanted:
                            vals[at] = (form, int.from_bytes(data[pos:pos + addr_size], "little"))
                        pos += addr_size
                        continue
                    n = fixed_tbl.get(form)
                    if n is not None:
                        if at in wanted:
                            if form == F_FLAG_PRESENT:
                                vals[at] = (form, 1)
                            elif form == F_IMPLICIT_CONST:
                                vals[at] = (form, ic)
                            else:
                                vals[at] = (form, int.from_bytes(data[pos:pos + n], "little"))
                        pos += n
                        continue
                    val, pos = self._read_form(unit, data, pos, form, ic)
                    if at in wanted:
                        vals[at] = (form, val)
            if directory is not None:
                if AT_DECLARATION not in vals:
                    if AT_RANGES in vals:
                        for lo, hi in self.read_ranges(unit, *vals[AT_RANGES]):
                            directory.append((lo, hi, die_off))
                    elif AT_LOW_PC in vals and AT_HIGH_PC in vals:
                        low = self._address(unit, *vals[AT_LOW_PC])
                        directory.append((low, self._high_pc(unit, low, *vals[AT_HIGH_PC]),
                                          die_off))
                if ab.has_children:
                    stack.append(cur)
                continue
            get = vals.get
            name = linkage = None
            nv = get(AT_NAME)
            if nv is not None:
                name = strp(nv[1]) if nv[0] == F_STRP else self._string(unit, *nv)
            lv = get(AT_LINKAGE_NAME) or get(AT_MIPS_LINKAGE_NAME)
            if lv is not None:
                linkage = strp(lv[1]) if lv[0] == F_STRP else self._string(unit, *lv)
            ref = None
            rv = get(AT_ABSTRACT_ORIGIN) or get(AT_SPECIFICATION)
            if rv is not None:
                ref = unit_off + rv[1] if rv[0] == F_REF4 else self._ref(unit, *rv)
            ranges: list[tuple[int, int]] = []
            xv = get(AT_RANGES)
            if xv is not None:
                ranges = self.read_ranges(unit, *xv)
            else:
                lowv = get(AT_LOW_PC)
                if lowv is not None:
                    low = lowv[1] if lowv[0] == F_ADDR else self._address(unit, *lowv)
                    hv = get(AT_HIGH_PC)
                    if hv is not None:
                        ranges = [(low, low + hv[1] if hv[0] in _HIGH_OFFSET
                                   else self._high_pc(unit, low, *hv))]
            dfv = get(AT_DECL_FILE)
            dlv = get(AT_DECL_LINE)
            decl = (None if dfv is None else int(dfv[1]), 0 if dlv is None else int(dlv[1]))
            if tag == TAG_SUBPROGRAM:
                decls[die_off] = (name, linkage, ref, *decl)
            new_cur = cur
            if tag == TAG_INLINED_SUBROUTINE or (ranges and AT_DECLARATION not in vals):
                new_cur = len(n_parent)
                n_parent.append(cur if tag == TAG_INLINED_SUBROUTINE else -1)
                n_kind.append(0 if tag == TAG_SUBPROGRAM else 1)
                n_ranges.append(ranges)
                cf = vals.get(AT_CALL_FILE)
                cl = vals.get(AT_CALL_LINE)
                cc = vals.get(AT_CALL_COLUMN)
                n_call.append((None if cf is None else int(cf[1]),
                               0 if cl is None else int(cl[1]),
                               0 if cc is None else int(cc[1])))
                n_origin.append((name, linkage, ref))
                scopes.decl.append(decl)
            if ab.has_children:
                stack.append(cur)
                cur = new_cur
            elif single and not stack:
                return pos
        return scopes if not single else pos

    def _ref(self, unit: Unit, form: int, val) -> int | None:
        if form in (F_REF1, F_REF2, F_REF4, F_REF8, F_REF_UDATA):
            return unit.offset + int(val)
        if form == F_REF_ADDR:
            return int(val)
        return None

    def die_names_at(self, offset: int) -> tuple:
        """``(name, linkage name, abstract_origin/specification ref, decl_file, decl_line)``
        of the DIE at a global .debug_info offset (used for references into units not
        decoded)."""
        unit = self.unit_at(offset)
        if unit is None:
            return None, None, None, None, 0
        abbrevs = self.abbrevs_for(unit)
        data = self.info
        code, pos = _uleb(data, offset)
        ab = abbrevs.get(code)
        if ab is None:
            return None, None, None, None, 0
        name = linkage = ref = dfile = None
        dline = 0
        for at, form, ic in ab.attrs:
            val, pos = self._read_form(unit, data, pos, form, ic)
            if at == AT_NAME:
                name = self._string(unit, form, val)
            elif at in (AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME):
                linkage = self._string(unit, form, val)
            elif at in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION):
                ref = self._ref(unit, form, val)
            elif at == AT_DECL_FILE:
                dfile = int(val)
            elif at == AT_DECL_LINE:
                dline = int(val)
        return name, linkage, ref, dfile, dline

    def unit_at(self, offset: int) -> Unit | None:
        lo, hi = 0, len(self.units)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.units[mid].offset <= offset:
                lo = mid + 1
            else:
                hi = mid
        if lo and offset < self.units[lo - 1].end:
            return self.units[lo - 1]
        return None

    def resolve_names(self, scopes: "UnitScopes") -> list[tuple]:
        """``(name, linkage name, decl_file, decl_line)`` per node, following
        abstract_origin/specification. ``decl_file`` indexes the node's own unit's line
        table files, so a declaration reached through a reference into another unit gives
        no file (and no line)."""
        decls = scopes.decls
        unit = self.units[scopes.unit_index] if 0 <= scopes.unit_index < len(self.units) \
            else None
        lo_u, hi_u = (unit.offset, unit.end) if unit is not None else (0, 0)
        out = []
        own = scopes.decl
        for i, (name, linkage, ref) in enumerate(scopes.origin):
            dfile, dline = own[i] if i < len(own) else (None, 0)
            hops = 0
            while ref is not None and (name is None or linkage is None or dfile is None) \
                    and hops < 8:
                hops += 1
                got = decls.get(ref)
                if got is None:
                    got = guarded(".debug_info", ref, lambda r=ref: self.die_names_at(r))
                    decls[ref] = got
                n2, l2, target, f2, l2n = got
                name = name or n2
                linkage = linkage or l2
                if dfile is None and f2 is not None and lo_u <= ref < hi_u:
                    dfile, dline = f2, l2n
                ref = target
            out.append((name, linkage, dfile, dline))
        return out

    # -- line programs -----------------------------------------------------------------
    def decode_line_program(self, unit: Unit) -> "LineTable | None":
        if unit.stmt_list is None or not self.line:
            return None
        off = unit.stmt_list
        return guarded(".debug_line", off, lambda: self._decode_line_program(unit, off))

    def _file_entries(self, unit: Unit, data: bytes, pos: int, version: int
                      ) -> tuple[list[str], int]:
        """Directory and file tables; returns full paths indexed like DW_AT_call_file."""
        comp_dir = unit.comp_dir or ""
        if version >= 5:
            dirs, pos = self._v5_entries(unit, data, pos)
            dir_names = [d.get(1, "") for d in dirs]
            files, pos = self._v5_entries(unit, data, pos)
            paths = []
            for f in files:
                name = f.get(1, "")
                di = f.get(2, 0)
                d = dir_names[di] if di < len(dir_names) else ""
                paths.append(_join(comp_dir, d, name))
            return paths, pos
        dir_names = [comp_dir]
        while data[pos] != 0:
            d, pos = _cstr(data, pos)
            dir_names.append(d)
        pos += 1
        paths = ["<file 0>"]               # DWARF <= 4 file numbers are 1-based
        while data[pos] != 0:
            name, pos = _cstr(data, pos)
            di, pos = _uleb(data, pos)
            _, pos = _uleb(data, pos)
            _, pos = _uleb(data, pos)
            d = dir_names[di] if di < len(dir_names) else ""
            paths.append(_join(comp_dir, d if di else "", name))
        return paths, pos + 1

    def _v5_entries(self, unit: Unit, data: bytes, pos: int) -> tuple[list[dict], int]:
        nfmt = data[pos]
        pos += 1
        fmt = []
        for _ in range(nfmt):
            ct, pos = _uleb(data, pos)
            form, pos = _uleb(data, pos)
            fmt.append((ct, form))
        count, pos = _uleb(data, pos)
        if count > len(data) - pos or (count and not fmt):
            raise ValueError(f"line table entry count {count} does not fit the section")
        out = []
        for _ in range(count):
            e: dict[int, object] = {}
            for ct, form in fmt:
                if form == F_DATA16:          # MD5
                    pos += 16
                    continue
                val, pos = self._read_form(unit, data, pos, form, 0)
                if ct == 1:                   # DW_LNCT_path
                    val = self._string(unit, form, val) or ""
                e[ct] = val
            out.append(e)
        return out, pos

    def _line_header(self, unit: Unit, off: int) -> "_LineHeader":
        data = self.line
        length = int.from_bytes(data[off:off + 4], "little")
        if length >= 0xFFFFFFF0:
            raise self.sections.error(".debug_line", off, "64-bit line tables are not supported")
        end = off + 4 + length
        if end > len(data):
            raise self.sections.error(".debug_line", off,
                                      f"line program length {length} runs past the section end")
        version = int.from_bytes(data[off + 4:off + 6], "little")
        if not 2 <= version <= 5:
            raise self.sections.error(".debug_line", off + 4,
                                      f"unsupported line table version {version}")
        pos = off + 6
        if version >= 5:
            pos += 2                          # address_size, segment_selector_size
        header_length = int.from_bytes(data[pos:pos + 4], "little")
        pos += 4
        prog = pos + header_length
        min_inst = data[pos]
        pos += 1
        if version >= 4:
            pos += 1                          # maximum_operations_per_instruction
        line_base = data[pos + 1]               # data[pos]: default_is_stmt (unused: LLVM and
                                                # wasm-tools look rows up regardless of it)
        if line_base >= 0x80:
            line_base -= 0x100
        line_range = data[pos + 2]
        opcode_base = data[pos + 3]
        pos += 4
        if line_range == 0:
            raise self.sections.error(".debug_line", pos, "line_range is 0")
        std_lengths = list(data[pos:pos + opcode_base - 1])
        pos += opcode_base - 1
        files, _ = self._file_entries(unit, data, pos, version)
        return _LineHeader(files, prog, end, min_inst, line_base, line_range, opcode_base,
                           std_lengths)

    def line_directory(self, unit: Unit) -> "LineDirectory | None":
        """Where each sequence of ``unit``'s line program starts and ends (byte offsets)
        and its first address, without computing rows: runs of ordinary opcodes are
        skipped by a regular expression (in C); only extended opcodes are looked at.
        ``None`` when the unit has no line program. A sequence whose first address is
        not set by its leading ``DW_LNE_set_address``, or a ``DW_LNE_define_file``, makes
        the directory ``exact=False`` (callers then decode the whole program)."""
        if unit.stmt_list is None or not self.line:
            return None
        off = unit.stmt_list
        return guarded(".debug_line", off, lambda: self._line_directory(unit, off))

    def _line_directory(self, unit: Unit, off: int) -> "LineDirectory":
        h = self._line_header(unit, off)
        data = self.line
        run = _skip_pattern(h.opcode_base, tuple(h.std_lengths), False).match
        neutral = _skip_pattern(h.opcode_base, tuple(h.std_lengths), True).match
        seqs: list[tuple[int | None, int, int]] = []
        exact = True
        pos = begin = h.program
        end = h.end
        first: int | None = None
        clean = True          # no row emitted and no address change yet in this sequence
        while pos < end:
            was = pos
            pos = run(data, pos, end).end()
            if pos >= end:
                break
            if data[pos] != 0:                # an operand runs past the program end
                raise ValueError(f"truncated opcode at .debug_line+{pos}")
            if clean and pos != was and neutral(data, was, pos).end() != pos:
                clean = False
            n, p = _uleb(data, pos + 1)
            sub = data[p]
            if sub == DW_LNE_end_sequence:
                seqs.append((first, begin, p + n))
                begin = p + n
                first = None
                clean = True
            elif sub == DW_LNE_set_address:
                if clean and first is None:
                    first = int.from_bytes(data[p + 1:p + n], "little")
            elif sub == DW_LNE_define_file:
                exact = False
            pos = p + n
        if any(f is None for f, _, _ in seqs):
            exact = False
        return LineDirectory(h, seqs, exact)

    def decode_line_sequences(self, unit: Unit, directory: "LineDirectory",
                              picks: list[int]) -> "LineTable":
        """Rows of the directory's sequences numbered ``picks`` only (same rows as the
        full :meth:`decode_line_program` gives for them)."""
        h = directory.header
        out = []
        for k in sorted(set(picks)):
            _, b, e = directory.sequences[k]
            out += guarded(".debug_line", b, lambda b=b, e=e: self._run_program(unit, h, b, e))
        return LineTable(h.files, out)

    def _decode_line_program(self, unit: Unit, off: int) -> "LineTable":
        h = self._line_header(unit, off)
        return LineTable(h.files, self._run_program(unit, h, h.program, h.end))

    def _run_program(self, unit: Unit, h: "_LineHeader", pos: int, end: int
                     ) -> list[tuple[list[int], list[int], list[int], list[int]]]:
        """Run the line program bytes ``[pos, end)`` (whole sequences) into rows."""
        data = self.line
        files = h.files
        min_inst, line_base, line_range = h.min_inst, h.line_base, h.line_range
        opcode_base, std_lengths = h.opcode_base, h.std_lengths

        # Precomputed special opcodes: address advance, line advance.
        s_addr = [0] * 256
        s_line = [0] * 256
        for op in range(opcode_base, 256):
            adj = op - opcode_base
            s_addr[op] = (adj // line_range) * min_inst
            s_line[op] = line_base + adj % line_range
        const_add = ((255 - opcode_base) // line_range) * min_inst

        seqs: list[tuple[list[int], list[int], list[int], list[int]]] = []
        flat: list[int] = []                  # address, file, line, column per row
        push = flat.extend
        address = 0
        file = 1
        line = 1
        column = 0
        # opcodes as literals, most frequent first (clang: special, set_column,
        # advance_line, negate_stmt make up nearly all of a program)
        while pos < end:
            op = data[pos]
            pos += 1
            if op >= opcode_base:
                address += s_addr[op]
                line += s_line[op]
                push((address, file, line, column))
            elif op == 5:                     # DW_LNS_set_column
                column = data[pos]
                if column < 0x80:
                    pos += 1
                else:
                    column, pos = _uleb(data, pos)
            elif op == 3:                     # DW_LNS_advance_line (SLEB, inlined)
                v = data[pos]
                pos += 1
                if v < 0x80:
                    line += v - 0x80 if v & 0x40 else v
                else:
                    v &= 0x7F
                    shift = 7
                    while True:
                        b = data[pos]
                        pos += 1
                        v |= (b & 0x7F) << shift
                        shift += 7
                        if b < 0x80:
                            break
                    line += v - (1 << shift) if b & 0x40 else v
            elif op == 6 or op == 7 or op == 10 or op == 11:
                pass                          # negate_stmt, basic_block, prologue, epilogue
            elif op == 1:                     # DW_LNS_copy
                push((address, file, line, column))
            elif op == 2:                     # DW_LNS_advance_pc
                v, pos = _uleb(data, pos)
                address += v * min_inst
            elif op == 8:                     # DW_LNS_const_add_pc
                address += const_add
            elif op == 4:                     # DW_LNS_set_file
                file, pos = _uleb(data, pos)
            elif op == 9:                     # DW_LNS_fixed_advance_pc
                address += data[pos] | (data[pos + 1] << 8)
                pos += 2
            elif op == 0:
                n, pos = _uleb(data, pos)
                sub = data[pos]
                if sub == DW_LNE_end_sequence:
                    push((address, -1, 0, 0))
                    seqs.append((flat[0::4], flat[1::4], flat[2::4], flat[3::4]))
                    flat = []
                    push = flat.extend
                    address = 0
                    file = 1
                    line = 1
                    column = 0
                elif sub == DW_LNE_set_address:
                    address = int.from_bytes(data[pos + 1:pos + n], "little")
                elif sub == DW_LNE_define_file:
                    name, _ = _cstr(data, pos + 1)
                    files.append(_join(unit.comp_dir or "", "", name))
                pos += n
            else:                             # set_isa and unknown standard opcodes
                for _ in range(std_lengths[op - 1] if op - 1 < len(std_lengths) else 0):
                    _, pos = _uleb(data, pos)
        return seqs


def _join(comp_dir: str, directory: str, name: str) -> str:
    """Path of a line-table file as LLVM prints it (no normalisation)."""
    if name.startswith("/"):
        return name
    if directory:
        if not directory.startswith("/") and comp_dir:
            directory = comp_dir.rstrip("/") + "/" + directory
        return directory.rstrip("/") + "/" + name
    if comp_dir:
        return comp_dir.rstrip("/") + "/" + name
    return name


@dataclass(slots=True)
class UnitScopes:
    """Code-carrying subprograms and all inlined subroutines of one unit, as parallel lists.

    ``parent[i]``: enclosing node (-1 for subprograms); ``kind[i]``: 0 subprogram, 1 inlined;
    ``ranges[i]``: raw address ranges (tombstones kept); ``call[i]``: (call_file index or None,
    call_line, call_column); ``origin[i]``: (name, linkage name, ref) before following refs;
    ``decl[i]``: the DIE's own (decl_file index or None, decl_line).
    """

    unit_index: int
    parent: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    ranges: list[list[tuple[int, int]]] = field(default_factory=list)
    call: list[tuple[int | None, int, int]] = field(default_factory=list)
    origin: list[tuple[str | None, str | None, int | None]] = field(default_factory=list)
    decl: list[tuple[int | None, int]] = field(default_factory=list)
    decls: dict[int, tuple] = field(default_factory=dict)


@dataclass(slots=True)
class LineTable:
    """One unit's line program: ``files`` (full paths, indexed like the program's file
    numbers) and its sequences as parallel lists (address, file, line, column); each
    sequence ends with an end-of-sequence row whose file is -1."""

    files: list[str]
    sequences: list[tuple[list[int], list[int], list[int], list[int]]]


@dataclass(slots=True)
class _LineHeader:
    files: list[str]
    program: int              # first opcode
    end: int                  # first byte after the program
    min_inst: int
    line_base: int
    line_range: int
    opcode_base: int
    std_lengths: list[int]


@dataclass(slots=True)
class LineDirectory:
    """Sequences of one line program: ``(first address or None, byte begin, byte end)``."""

    header: _LineHeader
    sequences: list[tuple[int | None, int, int]]
    exact: bool


_LEB = rb"[\x80-\xff]*[\x00-\x7f]"


@lru_cache(maxsize=32)
def _skip_pattern(opcode_base: int, std_lengths: tuple[int, ...], neutral: bool
                  ) -> "re.Pattern[bytes]":
    """A regex matching the longest run of non-extended line opcodes (with operands), as
    the decoder reads them: special opcodes, standard opcodes 1-11 with their fixed
    operands, others with ``std_lengths`` LEB operands. ``neutral``: only opcodes that
    neither emit a row nor move the address (what may precede a sequence's first
    ``DW_LNE_set_address``)."""
    single = [] if neutral else [op for op in range(max(opcode_base, 1), 256)]
    alts = []
    for op in range(1, opcode_base):
        if neutral and op in (DW_LNS_copy, DW_LNS_advance_pc, DW_LNS_const_add_pc,
                              DW_LNS_fixed_advance_pc):
            continue
        if op in (DW_LNS_copy, DW_LNS_negate_stmt, DW_LNS_set_basic_block,
                  DW_LNS_const_add_pc, 10, 11):
            single.append(op)
        elif op in (DW_LNS_advance_pc, DW_LNS_advance_line, DW_LNS_set_file,
                    DW_LNS_set_column):
            alts.append(re.escape(bytes([op])) + _LEB)
        elif op == DW_LNS_fixed_advance_pc:
            alts.append(re.escape(bytes([op])) + rb"[\x00-\xff]{2}")
        else:
            n = std_lengths[op - 1] if op - 1 < len(std_lengths) else 0
            if n == 0:
                single.append(op)
            else:
                alts.append(re.escape(bytes([op])) + _LEB * n)
    cls = b"[" + b"".join(re.escape(bytes([c])) for c in sorted(single)) + b"]" if single \
        else None
    parts = ([cls] if cls else []) + alts
    return re.compile(b"(?:" + b"|".join(parts) + b")*")
