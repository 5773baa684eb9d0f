"""WAMR AOT file reader (formats.md §1, §2): every layout family, x86_64 / i386 / aarch64 / others.

Layouts (formats.md §1.2):

- ``L1``: version 3 written by WAMR <= 1.3.x (36-byte target info, strings without NUL,
  function section = text offsets + type indexes);
- ``L2``: version 3 of WAMR 2.0-2.2 and version 4 of 2.3.x (48-byte target info, NUL-terminated
  strings, function section with two cell-count arrays, fixed 12-byte element offsets);
- ``L3``: version 4 of 2.4.0, versions 5 and 6 (element offsets are init expressions).

A version-4 file is ambiguous between L2 and L3 element layouts: both are parsed and the one
that ends exactly at the INIT_DATA section end is kept.

Contract: :func:`parse_aot` reads structure only (never relocates, never executes) and raises
:class:`BinaryFormatError` naming the source, the *file* offset and the expectation on any
framing problem. Every alignment is relative to the first byte of the AOT blob (its magic),
which for a standalone ``.aot`` is the file start and for an ``.aot.wasm`` is inside the
``wamr-aot`` custom section; offsets reported in errors and stored in ``*_offset`` fields are
file offsets (``base`` + blob position). Text offsets are relative to the code base.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from wasmprof.binary.ranges import function_in_ranges
from wasmprof.binary.reader import ByteReader
from wasmprof.errors import BinaryFormatError

AOT_MAGIC = b"\0aot"
SUPPORTED_VERSIONS = (3, 4, 5, 6)

SECTION_NAMES = {0: "TARGET_INFO", 1: "INIT_DATA", 2: "TEXT", 3: "FUNCTION", 4: "EXPORT",
                 5: "RELOCATION", 100: "CUSTOM"}
CUSTOM_SUBTYPES = {0: "RAW", 1: "NATIVE_SYMBOL", 2: "ACCESS_CONTROL", 3: "NAME",
                   4: "STRING_LITERAL"}
EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}

FEATURE_FLAGS = {
    0x1: "simd-128bit", 0x2: "bulk-memory", 0x4: "multi-thread", 0x8: "ref-types",
    0x10: "gc", 0x20: "exception-handling", 0x40: "tiny-stack-frame", 0x80: "multi-memory",
    0x100: "dynamic-linking", 0x200: "component-model", 0x400: "relaxed-simd",
    0x800: "flexible-vectors", 0x1000: "frame-per-function", 0x2000: "frame-no-func-idx",
}
FEATURE_GC = 0x10

E_MACHINES = {3: "i386", 8: "mips", 40: "arm", 62: "x86_64", 93: "arc", 94: "xtensa",
              183: "aarch64", 195: "arc", 243: "riscv", 0x14C: "i386 (COFF)",
              0x8664: "x86_64 (COFF)"}

# init_expr types (formats.md §1.5.2)
_EXPR_U32 = {0x41, 0x43, 0x23, 0xD0, 0xD2}
_EXPR_U64 = {0x42, 0x44}
_EXPR_V128 = 0xFD
_EXPR_BINOPS = {0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E}
_MAX_EXPR_DEPTH = 64


# ---------------------------------------------------------------------------------------
# data model
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class AotSection:
    id: int
    offset: int          # file offset of the section header (its id)
    payload_start: int   # file offset of the payload
    size: int            # payload size
    subtype: int | None = None   # CUSTOM sections: AOTCustomSectionType
    name: str | None = None      # CUSTOM RAW sections: the Wasm section name

    @property
    def end(self) -> int:
        return self.payload_start + self.size

    @property
    def kind(self) -> str:
        k = SECTION_NAMES.get(self.id, f"unknown({self.id})")
        if self.subtype is not None:
            k += "/" + CUSTOM_SUBTYPES.get(self.subtype, str(self.subtype))
        return k


@dataclass(slots=True)
class TargetInfo:
    bin_type: int
    abi_type: int
    e_type: int
    e_machine: int
    e_version: int
    e_flags: int
    feature_flags: int | None   # None for L1 (the field does not exist there)
    arch: str

    @property
    def is_64bit(self) -> bool:
        return bool(self.bin_type & 2)

    @property
    def big_endian(self) -> bool:
        return bool(self.bin_type & 1)

    @property
    def is_coff(self) -> bool:
        return self.bin_type in (4, 6)

    @property
    def xip(self) -> bool:
        return self.e_type == 4

    @property
    def machine(self) -> str:
        return E_MACHINES.get(self.e_machine, f"machine {self.e_machine}")

    @property
    def features(self) -> list[str]:
        flags = self.feature_flags or 0
        out = [name for bit, name in FEATURE_FLAGS.items() if flags & bit]
        unknown = flags & ~sum(FEATURE_FLAGS)
        if unknown:
            out.append(f"unknown(0x{unknown:x})")
        return out


@dataclass(slots=True)
class ImportFunc:
    type_index: int
    module: str
    field: str


@dataclass(slots=True)
class FuncType:
    params: bytes
    results: bytes


@dataclass(slots=True)
class InitData:
    """What wasmprof keeps from INIT_DATA (enough to map indexes and to re-encode tests)."""

    memories: list[tuple[int, int, int, int]] = field(default_factory=list)
    mem_segments: int = 0
    import_tables: int = 0
    tables: int = 0
    elem_segments: int = 0
    types: list[FuncType] = field(default_factory=list)
    import_globals: list[tuple[int, int, str, str]] = field(default_factory=list)
    globals: int = 0
    import_funcs: list[ImportFunc] = field(default_factory=list)
    func_count: int = 0
    start_func_index: int | None = None
    data_sections: list[tuple[str, int]] = field(default_factory=list)  # (name, size)


@dataclass(slots=True)
class AotExport:
    name: str
    kind: str
    index: int     # Wasm index space (functions: imports first)


@dataclass(slots=True)
class Relocation:
    offset: int
    addend: int
    type: int
    symbol: str


@dataclass(slots=True)
class RelocationGroup:
    name: str
    relocations: list[Relocation]


@dataclass(slots=True)
class AotFile:
    """One parsed AOT image. ``text_offsets[N]`` is the code-base-relative offset of
    ``aot_func#N``; Wasm function index = ``import_func_count + N``."""

    source: str
    base: int                       # file offset of the blob's magic
    size: int                       # blob size
    version: int
    layout: str                     # "L1", "L2", "L3"
    sections: list[AotSection]
    target: TargetInfo
    init: InitData
    literal_size: int = 0
    code_offset: int = 0            # file offset of the code base
    code_size: int = 0
    text_offsets: list[int] = field(default_factory=list)
    type_indices: list[int] = field(default_factory=list)
    max_local_cell_nums: list[int] = field(default_factory=list)
    max_stack_cell_nums: list[int] = field(default_factory=list)
    internal_text_offsets: list[int] | None = None   # only WAMR 2.0.0 Xtensa-XIP files
    exports: list[AotExport] = field(default_factory=list)
    relocation_symbols: list[str] = field(default_factory=list)
    relocation_groups: list[RelocationGroup] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)          # NAME: wasm index -> name
    raw_sections: dict[str, bytes] = field(default_factory=dict)  # RAW: name -> payload
    native_symbols: list[str] = field(default_factory=list)
    embedded_elf: bool = False      # DEBUG_AOT: the code area is a whole ELF object
    embedded_elf_offset: int | None = None          # its file offset
    embedded_debug_sections: list[str] = field(default_factory=list)  # its .debug_* names
    code_sha256: str | None = None  # of the code bytes minus trailing zero padding
    notes: list[str] = field(default_factory=list)
    _sorted: list[tuple[int, int]] | None = field(default=None, repr=False)
    _ranges: list[tuple[int, int, int, bool]] | None = field(default=None, repr=False)

    # -- counts ---------------------------------------------------------------------
    @property
    def import_func_count(self) -> int:
        return len(self.init.import_funcs)

    @property
    def func_count(self) -> int:
        return self.init.func_count

    @property
    def has_stack_wrappers(self) -> bool:
        """True when functions are split into ``aot_func#N`` wrapper + ``aot_func_internal#N``
        body (stack bound checks or stack estimation: a ``.aot_stack_sizes`` data section)."""
        return any(n == ".aot_stack_sizes" for n, _ in self.init.data_sections)

    @property
    def has_dwarf(self) -> bool:
        return ".debug_info" in self.raw_sections and ".debug_line" in self.raw_sections

    def function_exports(self) -> list[tuple[str, int]]:
        return sorted((e.name, e.index) for e in self.exports if e.kind == "func")

    # -- native code lookups --------------------------------------------------------
    def text_range(self, aot_index: int) -> tuple[int, int]:
        """``[start, end)`` of ``aot_func#N`` as far as the AOT file tells: up to the next
        higher function offset or the end of the code (sizes are not stored, §1.11)."""
        start = self.text_offsets[aot_index]
        srt = self._sorted_offsets()
        i = bisect.bisect_right(srt, (start, 1 << 62))
        end = srt[i][0] if i < len(srt) else self.code_size
        return start, max(end, start)

    def _sorted_offsets(self) -> list[tuple[int, int]]:
        if self._sorted is None:
            self._sorted = sorted((off, n) for n, off in enumerate(self.text_offsets))
        return self._sorted

    def function_at(self, text_offset: int) -> tuple[int, bool | None] | None:
        """``(aot_index, internal)`` of the function whose code holds ``text_offset``.

        ``internal`` is True inside an ``aot_func_internal#N`` body, False inside the
        ``aot_func#N`` entry (or when the file has no wrappers), None when the file has
        wrappers but no symbol ranges were applied (:meth:`apply_object_symbols`), so
        wrapper and body cannot be told apart. None when the offset is outside the code.
        """
        if self._ranges is not None:
            return function_in_ranges(self._ranges, text_offset)
        if text_offset < 0 or text_offset >= self.code_size:
            return None
        srt = self._sorted_offsets()
        i = bisect.bisect_right(srt, (text_offset, 1 << 62)) - 1
        if i < 0:
            return None
        return srt[i][1], (None if self.has_stack_wrappers else False)

    def function_intervals(self) -> tuple[list[int], list[tuple[int, bool | None] | None]]:
        """The piecewise-constant map behind :meth:`function_at`, for callers that look up
        millions of offsets (profile ingest): ``function_at(x) ==
        results[bisect_right(starts, x) - 1]`` for every integer ``x``."""
        lo = -(1 << 63)
        starts: list[int] = [lo]
        results: list[tuple[int, bool | None] | None] = [None]
        if self._ranges is not None:
            for start, end, n, internal in self._ranges:
                if start > starts[-1] or results[-1] is None:
                    starts.append(start)
                    results.append((n, internal))
                starts.append(end)
                results.append(None)
            return starts, results
        wrappers = None if self.has_stack_wrappers else False
        for off, n in self._sorted_offsets():
            if off >= self.code_size:
                break
            if off == starts[-1]:
                results[-1] = (n, wrappers)          # bisect picks the last of equal offsets
            else:
                if off < 0:
                    continue
                starts.append(off)
                results.append((n, wrappers))
        starts.append(self.code_size)
        results.append(None)
        return starts, results

    def apply_object_symbols(self, elf) -> bool:
        """Use the exact symbol ranges of a ``wamrc --format=object`` twin (an
        :class:`~wasmprof.binary.elf.ElfObject` built with the same flags).

        Returns False (and changes nothing) when the twin does not match this file: a
        different function count or any ``aot_func#N`` offset that differs.
        """
        if len(elf.funcs) != len(self.text_offsets):
            return False
        for n, off in enumerate(self.text_offsets):
            sym = elf.funcs.get(n)
            if sym is None or sym[0] != off:
                return False
        ranges = [(v, v + max(s, 1), n, False) for n, (v, s) in elf.funcs.items()]
        ranges += [(v, v + max(s, 1), n, True) for n, (v, s) in elf.internal.items()]
        ranges.sort()
        self._ranges = ranges
        return True


# ---------------------------------------------------------------------------------------
# reader with WAMR's implicit alignment
# ---------------------------------------------------------------------------------------
class _AotReader(ByteReader):
    """ByteReader that aligns like WAMR's ``TEMPLATE_READ``: u16 to 2, u32 and u64 to 4,
    relative to the blob start (position 0 of ``data``). Padding must be zero."""

    __slots__ = ("nul_strings",)

    def __init__(self, data, source: str, *, base: int = 0, start: int = 0,
                 end: int | None = None, nul_strings: bool = True) -> None:
        super().__init__(data, source, base=base, start=start, end=end)
        self.nul_strings = nul_strings

    def pad(self, n: int, what: str) -> None:
        p = (-self.pos) % n
        if p:
            start = self.pos
            self.need(p, f"padding before {what}")
            if any(self.data[start:start + p]):
                raise self.error(f"misaligned AOT data: non-zero padding before {what}",
                                 at=start, expected=f"{p} zero bytes to {n}-byte alignment",
                                 found=bytes(self.data[start:start + p]).hex(" "))
            self.pos += p

    def a16(self, what: str) -> int:
        self.pad(2, what)
        return self.u16(what)

    def a32(self, what: str) -> int:
        self.pad(4, what)
        return self.u32(what)

    def a64(self, what: str) -> int:
        self.pad(4, what)
        return self.u64(what)

    def string(self, what: str) -> str:
        n = self.a16(f"{what} length")
        start = self.pos
        raw = self.bytes(n, what)
        if self.nul_strings:
            if not raw or raw[-1] != 0:
                raise self.error(f"{what} is not NUL-terminated", at=start,
                                 expected="a string whose length counts a final NUL byte")
            raw = raw[:-1]
        elif raw.endswith(b"\0"):    # L1 XIP/indirect mode counts the NUL
            raw = raw[:-1]
        return raw.decode("utf-8", errors="replace")

    def count(self, what: str, min_entry: int) -> int:
        return self.check_count(self.a32(f"{what} count"), min_entry, what)


# ---------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------
def is_aot(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) == AOT_MAGIC


def parse_aot(data: bytes | memoryview, source: str = "<aot>", *, base: int = 0) -> AotFile:
    """Parse one AOT image. ``data`` is the blob (starting at its ``\\0aot`` magic);
    ``base`` is the blob's file offset in ``source`` (non-zero inside an ``.aot.wasm``)."""
    r = _AotReader(data, source, base=base)
    version = r.header(AOT_MAGIC, "WAMR AOT", "\\0aot")
    if version not in SUPPORTED_VERSIONS:
        raise r.error(f"unknown AOT version {version}", at=4,
                      expected="version 3, 4, 5 or 6 (WAMR 1.x to 2.4.x and main)",
                      found=str(version))

    sections = _read_section_headers(r)
    by_id = {s.id: s for s in sections if s.id != 100}
    ti = by_id[0]
    if version == 3:
        layout = "L1" if ti.size == 36 else "L2"
    elif version == 4:
        layout = "L2"      # refined after INIT_DATA (2.3 vs 2.4.0 element layout)
    else:
        layout = "L3"
    nul = layout != "L1"

    def sub(sec: AotSection) -> _AotReader:
        return _AotReader(data, source, base=base, start=sec.payload_start - base,
                          end=sec.end - base, nul_strings=nul)

    target = _read_target_info(sub(ti), layout, ti)
    notes: list[str] = []
    if target.big_endian:
        notes.append("big-endian target: WAMR writes AOT files little-endian regardless")
    if target.feature_flags and target.feature_flags & FEATURE_GC:
        raise BinaryFormatError("GC-enabled AOT files are not supported", source=source,
                                offset=ti.payload_start + 16,
                                expected="feature_flags without the GC bit (0x10)",
                                found=f"0x{target.feature_flags:x}")

    init_sec = by_id[1]
    if version == 4:
        init, layout, note = _read_init_data_v4(sub, init_sec)
        if note:
            notes.append(note)
    else:
        init = _read_init_data(sub(init_sec), layout)

    aot = AotFile(source=source, base=base, size=len(data), version=version, layout=layout,
                  sections=sections, target=target, init=init, notes=notes)
    _read_text(sub(by_id[2]), aot)
    _read_functions(sub(by_id[3]), aot)
    _read_exports(sub(by_id[4]), aot)
    _read_relocations(sub(by_id[5]), aot)
    for sec in sections:
        if sec.id == 100:
            _read_custom(sub(sec), sec, aot)
    return aot


def _read_section_headers(r: _AotReader) -> list[AotSection]:
    sections: list[AotSection] = []
    expected_next = 0
    while not r.at_end():
        r.pad(4, "section header")
        if r.at_end():
            break
        off = r.offset
        sid = r.u32("section id")
        size = r.u32("section size")
        if sid != 100 and sid != expected_next:
            if sid in SECTION_NAMES and sid < expected_next:
                what = f"duplicate {SECTION_NAMES[sid]} section"
            else:
                what = "unexpected AOT section id"
            exp = (f"section {expected_next} ({SECTION_NAMES[expected_next]})"
                   if expected_next <= 5 else "a custom section (100)")
            raise r.error(what, at=off - r.base, expected=exp, found=str(sid))
        if sid == 100 and expected_next == 0:
            raise r.error("custom section before TARGET_INFO", at=off - r.base,
                          expected="section 0 (TARGET_INFO) first", found="100")
        if size > r.remaining:
            raise r.error(f"{SECTION_NAMES.get(sid, '?')} section size {size} runs past the "
                          f"end of the file", at=off - r.base + 4,
                          expected=f"at most {r.remaining} bytes", found=f"{size} bytes")
        sec = AotSection(sid, off, r.offset, size)
        if sid == 100:
            if size < 4:
                raise r.error("custom section too small for its sub-type", at=off - r.base + 4,
                              expected="at least 4 bytes", found=f"{size} bytes")
            sec.subtype = int.from_bytes(r.data[r.pos:r.pos + 4], "little")
        else:
            expected_next += 1
        sections.append(sec)
        r.pos += size
    if expected_next <= 5:
        raise r.error(f"missing {SECTION_NAMES[expected_next]} section", at=r.pos,
                      expected=f"section {expected_next} before the end of the file",
                      found="end of file")
    return sections


def _read_target_info(r: _AotReader, layout: str, sec: AotSection) -> TargetInfo:
    want = 36 if layout == "L1" else 48
    if sec.size != want:
        raise r.error("unexpected TARGET_INFO size", at=r.pos - 4,
                      expected=f"{want} bytes" + (" (36 for WAMR <= 1.3, 48 for 2.x)"
                                                  if layout in ("L1", "L2") else ""),
                      found=f"{sec.size} bytes")
    bin_type = r.u16("bin_type")
    abi = r.u16("abi_type")
    e_type = r.u16("e_type")
    e_machine = r.u16("e_machine")
    e_version = r.u32("e_version")
    e_flags = r.u32("e_flags")
    if layout == "L1":
        r.u32("reserved")
        feature_flags = None
    else:
        feature_flags = r.u64("feature_flags")
        r.u64("reserved")
    arch_off = r.pos
    arch_raw = r.bytes(16, "arch name")
    if arch_raw[15] != 0:
        raise r.error("arch name is not NUL-terminated", at=arch_off,
                      expected="a NUL byte at position 15")
    if bin_type not in (0, 1, 2, 3, 4, 6):
        raise r.error("unknown bin_type", at=0, expected="0-3 (ELF), 4 or 6 (COFF)",
                      found=str(bin_type))
    arch = arch_raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
    return TargetInfo(bin_type, abi, e_type, e_machine, e_version, e_flags, feature_flags, arch)


def _init_expr(r: _AotReader, layout: str, what: str, depth: int = 0) -> None:
    at = r.pos
    t = r.a32(f"{what} init_expr type")
    if t == 0:
        return
    if t in _EXPR_U32:
        r.a32(f"{what} init_expr value")
    elif t in _EXPR_U64:
        r.a64(f"{what} init_expr value")
    elif t == _EXPR_V128:
        r.a64(f"{what} v128 low")
        r.a64(f"{what} v128 high")
    elif t in _EXPR_BINOPS and layout == "L3":
        if depth >= _MAX_EXPR_DEPTH:
            raise r.error("init_expr nested too deeply", at=at,
                          expected=f"at most {_MAX_EXPR_DEPTH} levels")
        _init_expr(r, layout, what, depth + 1)
        _init_expr(r, layout, what, depth + 1)
    else:
        raise r.error(f"unsupported {what} init_expr type 0x{t:x}", at=at,
                      expected="0 (none), i32/i64/f32/f64/v128.const, global.get, ref.null, "
                               "ref.func" + (" or an extended-const operator"
                                             if layout == "L3" else ""),
                      found=f"0x{t:x}")


def _read_init_data_v4(sub, sec: AotSection) -> tuple[InitData, str, str | None]:
    """Version 4: try the 2.3 (L2) and the 2.4.0 (L3) element layouts."""
    results: dict[str, InitData] = {}
    errors: dict[str, BinaryFormatError] = {}
    for layout in ("L2", "L3"):
        try:
            results[layout] = _read_init_data(sub(sec), layout)
        except BinaryFormatError as e:
            errors[layout] = e
    if "L2" in results and "L3" in results:
        note = None
        if results["L2"].elem_segments:
            note = ("version 4 file: both the 2.3 and 2.4.0 element layouts parse; "
                    "using 2.3 (L2)")
        return results["L2"], "L2", note
    if results:
        layout = next(iter(results))
        return results[layout], layout, (f"version 4 file with the "
                                         f"{'2.3' if layout == 'L2' else '2.4.0'} element layout")
    e2, e3 = errors["L2"], errors["L3"]
    raise BinaryFormatError(
        "INIT_DATA matches neither version-4 layout", source=e2.source,
        offset=max(e2.offset or 0, e3.offset or 0),
        expected="the WAMR 2.3 or the 2.4.0 table element layout",
        found=f"2.3 layout: {e2.message}; 2.4.0 layout: {e3.message}")


def _read_init_data(r: _AotReader, layout: str) -> InitData:
    init = InitData()
    l1 = layout == "L1"
    # 1. memory info
    r.a32("import memory count")
    n = r.count("memory", 16)
    init.memories = [(r.a32("memory flags"), r.a32("bytes per page"), r.a32("init pages"),
                      r.a32("max pages")) for _ in range(n)]
    n = r.count("memory init data", 20)
    for _ in range(n):
        r.a32("is_passive")
        r.a32("memory index")
        if l1:
            r.a32("data segment offset type")
            r.a64("data segment offset")
        else:
            _init_expr(r, layout, "data segment offset")
        size = r.a32("data segment size")
        r.skip(size, "data segment bytes")
    init.mem_segments = n
    # 2. table info
    init.import_tables = r.count("import table", 12)
    for _ in range(init.import_tables):
        if l1:
            for w in ("elem_type", "init_size", "max_size", "possible_grow"):
                r.a32(f"import table {w}")
        else:
            r.u8("import table elem_type")
            r.u8("import table flags")
            r.u8("import table possible_grow")
            r.u8("import table nullable")
            r.a32("import table init_size")
            r.a32("import table max_size")
    init.tables = r.count("table", 12)
    for _ in range(init.tables):
        if l1:
            for w in ("elem_type", "flags", "init_size", "max_size", "possible_grow"):
                r.a32(f"table {w}")
        else:
            r.u8("table elem_type")
            r.u8("table flags")
            r.u8("table possible_grow")
            r.u8("table nullable")
            r.a32("table init_size")
            r.a32("table max_size")
    n = r.count("table init data", 24)
    for _ in range(n):
        r.a32("element mode")
        r.a32("element elem_type")
        r.a32("element table index")
        if layout == "L3":
            _init_expr(r, layout, "element offset")
        else:
            r.a32("element offset type")
            r.a64("element offset")
        if l1:
            m = r.count("element function index", 4)
            r.skip(4 * m, "element function indexes")
        else:
            r.a16("element ref_type")
            r.a16("element nullable")
            r.a32("element heap_type")
            m = r.count("element value", 4)
            for _ in range(m):
                _init_expr(r, layout, "element value")
    init.elem_segments = n
    # 3. types
    n = r.count("type", 6)
    for _ in range(n):
        if l1:
            pc = r.a32("param count")
            rc = r.a32("result count")
        else:
            r.pad(4, "type entry")
            flag_at = r.pos
            flag = r.a16("type flag")
            if flag != 0:
                raise r.error("non-function type entry (GC types are not supported)",
                              at=flag_at, expected="type flag 0", found=str(flag))
            pc = r.a16("param count")
            rc = r.a16("result count")
        init.types.append(FuncType(r.bytes(pc, "param types"), r.bytes(rc, "result types")))
    # 4. import globals
    n = r.count("import global", 6)
    for _ in range(n):
        vt = r.u8("import global type")
        mut = r.u8("import global mutability")
        init.import_globals.append((vt, mut, r.string("import global module"),
                                    r.string("import global name")))
    # 5. globals
    init.globals = r.count("global", 8)
    for _ in range(init.globals):
        r.pad(4, "global")
        vt = r.u8("global type")
        r.u8("global mutability")
        if l1:
            t = r.a16("global init_expr type")
            r.a64("global init value")
            if t == _EXPR_V128 or vt == 0x7B:
                r.a64("global v128 high")
        else:
            _init_expr(r, layout, "global")
    # 6. import functions
    n = r.count("import function", 6)
    init.import_funcs = [ImportFunc(r.a16("import function type index"),
                                    r.string("import function module"),
                                    r.string("import function name")) for _ in range(n)]
    # 7. counts
    init.func_count = r.a32("function count")
    start = r.a32("start function index")
    init.start_func_index = None if start == 0xFFFFFFFF else start
    # 8. aux info
    if l1:
        for _ in range(7):
            r.a32("aux info")
    else:
        for w in ("data_end", "heap_base", "stack_bottom"):
            r.a32(f"aux {w} global index")
            r.a64(f"aux {w}")
        r.a32("aux stack size")
    # 9. object data sections
    n = r.count("object data section", 8)
    for _ in range(n):
        name = r.string("object data section name")
        size = r.a32("object data section size")
        r.skip(size, f"object data section {name!r}")
        init.data_sections.append((name, size))
    if not r.at_end():
        raise r.error("INIT_DATA section has trailing bytes", expected="the end of the section",
                      found=f"{r.remaining} more bytes")
    return init


def _read_text(r: _AotReader, aot: AotFile) -> None:
    lit = r.a32("literal size")
    r.skip(lit, "literal pool")
    aot.literal_size = lit
    aot.code_offset = r.offset
    aot.code_size = r.remaining
    if r.remaining >= 4 and bytes(r.data[r.pos:r.pos + 4]) == b"\x7fELF":
        _embedded_elf(r, aot)
    start = aot.code_offset - r.base
    aot.code_sha256 = hashlib.sha256(
        bytes(r.data[start:start + aot.code_size]).rstrip(b"\0")).hexdigest()


def _embedded_elf(r: _AotReader, aot: AotFile) -> None:
    """DEBUG_AOT (formats.md §1.6): the code area is a whole ELF object; the loader moves the
    code base to its ``.text``. Function offsets are relative to that section."""
    from wasmprof.binary.elf import parse_elf_object
    elf_start = r.offset
    obj = parse_elf_object(bytes(r.data[r.pos:r.end]), f"{aot.source} (embedded ELF at "
                                                        f"offset {elf_start})")
    text = obj.section(".text") or obj.section(".ltext")
    if text is None:
        raise r.error("embedded ELF object has no .text section",
                      expected="a .text or .ltext section (DEBUG_AOT code area)")
    aot.embedded_elf = True
    aot.embedded_elf_offset = elf_start
    aot.embedded_debug_sections = list(obj.debug_sections)
    aot.code_offset = elf_start + text.offset
    aot.code_size = text.size
    aot.notes.append(f"DEBUG_AOT file: the code area is an ELF object at offset {elf_start}; "
                     f"code base = its .text at offset {aot.code_offset}")


def _read_functions(r: _AotReader, aot: AotFile) -> None:
    n = aot.init.func_count
    w = 8 if aot.target.is_64bit else 4
    size = r.remaining
    per = w + 4 if aot.layout == "L1" else w + 12
    doubled = False
    if size != n * per:
        # WAMR 2.0.0 Xtensa XIP with stack checks: 2N offsets and 2N type indexes.
        if aot.layout != "L1" and size == 2 * n * (w + 4) + 8 * n:
            doubled = True
        else:
            raise r.error("FUNCTION section size does not match the function count",
                          at=r.pos - 4,
                          expected=f"{n * per} bytes for {n} functions "
                                   f"({'u64' if w == 8 else 'u32'} offsets, {aot.layout})",
                          found=f"{size} bytes")
    count = 2 * n if doubled else n
    read = r.a64 if w == 8 else r.a32
    offsets = [read("function text offset") for _ in range(count)]
    types = [r.a32("function type index") for _ in range(count)]
    if doubled:
        aot.text_offsets, aot.internal_text_offsets = offsets[:n], offsets[n:]
        aot.type_indices = types[:n]
    else:
        aot.text_offsets, aot.type_indices = offsets, types
    if aot.layout != "L1":
        aot.max_local_cell_nums = [r.a32("max local cell count") for _ in range(n)]
        aot.max_stack_cell_nums = [r.a32("max stack cell count") for _ in range(n)]
    for i, off in enumerate(aot.text_offsets):
        if off >= max(aot.code_size, 1):
            raise BinaryFormatError(
                f"text offset of aot_func#{i} lies outside the code",
                source=aot.source, offset=_func_section(aot).payload_start + i * w,
                expected=f"an offset below the code size {aot.code_size}",
                found=str(off))
    ntypes = len(aot.init.types)
    for i, t in enumerate(aot.type_indices):
        if t >= ntypes:
            raise BinaryFormatError(
                f"type index of aot_func#{i} is out of range", source=aot.source,
                offset=_func_section(aot).payload_start + count * w + 4 * i,
                expected=f"an index below the type count {ntypes}", found=str(t))


def _func_section(aot: AotFile) -> AotSection:
    return next(s for s in aot.sections if s.id == 3)


def _read_exports(r: _AotReader, aot: AotFile) -> None:
    n = r.count("export", 8)
    nfuncs = aot.import_func_count + aot.func_count
    for _ in range(n):
        at = r.pos
        index = r.a32("export index")
        kind = r.u8("export kind")
        r.u8("export padding")
        name = r.string("export name")
        k = EXPORT_KINDS.get(kind, str(kind))
        if k == "func" and index >= nfuncs:
            raise r.error(f"export {name!r} names function {index}, which does not exist",
                          at=at, expected=f"a function index below {nfuncs}", found=str(index))
        aot.exports.append(AotExport(name, k, index))
    if not r.at_end():
        raise r.error("EXPORT section has trailing bytes", expected="the end of the section",
                      found=f"{r.remaining} more bytes")


def _read_relocations(r: _AotReader, aot: AotFile) -> None:
    n = r.count("relocation symbol", 6)
    offsets = [r.a32("relocation symbol offset") for _ in range(n)]
    total = r.a32("relocation string area size")
    area = r.sub(total, "relocation string area")
    ar = _AotReader(r.data, r.source, base=r.base, start=area.pos, end=area.end,
                    nul_strings=r.nul_strings)
    symbols = []
    for i in range(n):
        ar.pad(2, "relocation symbol")
        rel = ar.pos - area.pos
        if rel != offsets[i]:
            # the loader checks this (validate_symbol_table); a mismatch means a damaged file
            raise ar.error(f"relocation symbol {i} is not where the offset table says",
                           expected=f"offset {offsets[i]} in the string area", found=str(rel))
        symbols.append(ar.string("relocation symbol"))
    aot.relocation_symbols = symbols
    w64 = aot.target.is_64bit
    ng = r.count("relocation group", 8)
    for _ in range(ng):
        name_at = r.pos
        name_index = r.a32("relocation group name index")
        if name_index >= n:
            raise r.error("relocation group name index out of range", at=name_at,
                          expected=f"an index below {n}", found=str(name_index))
        m = r.count("relocation", 24 if w64 else 16)
        relocs = []
        for _ in range(m):
            if w64:
                off, add = r.a64("relocation offset"), r.a64("relocation addend")
            else:
                off, add = r.a32("relocation offset"), r.a32("relocation addend")
            rtype = r.a32("relocation type")
            sat = r.pos
            si = r.a32("relocation symbol index")
            if si >= n:
                raise r.error("relocation symbol index out of range", at=sat,
                              expected=f"an index below {n}", found=str(si))
            relocs.append(Relocation(off, add, rtype, symbols[si]))
        aot.relocation_groups.append(RelocationGroup(symbols[name_index], relocs))
    if not r.at_end():
        raise r.error("RELOCATION section has trailing bytes",
                      expected="the end of the section", found=f"{r.remaining} more bytes")


def _read_custom(r: _AotReader, sec: AotSection, aot: AotFile) -> None:
    sub = r.u32("custom section sub-type")
    if sub == 0:        # RAW: NUL string name + the Wasm custom section payload verbatim
        name = r.string("custom section name")
        sec.name = name
        if name in aot.raw_sections:
            aot.notes.append(f"duplicate embedded custom section {name!r} ignored")
        else:
            aot.raw_sections[name] = r.bytes(r.remaining, f"custom section {name!r}")
    elif sub == 1:      # NATIVE_SYMBOL
        n = r.count("native symbol", 2)
        aot.native_symbols = [r.string("native symbol") for _ in range(n)]
    elif sub == 3:      # NAME
        try:
            _read_name(r, aot)
        except BinaryFormatError as e:
            # A damaged name section must not hide the functions (names are a bonus).
            aot.notes.append(f"AOT name section ignored: {e}")
            aot.names = {}
    else:
        aot.notes.append(f"custom section sub-type {CUSTOM_SUBTYPES.get(sub, sub)} "
                         f"at offset {sec.offset} skipped")


def _read_name(r: _AotReader, aot: AotFile) -> None:
    at = r.pos
    n = r.a32("name section name length")
    label = r.bytes(n, "name section name")
    if label != b"name":
        raise r.error("unexpected name section label", at=at, expected="'name'",
                      found=repr(label[:32]))
    names: dict[int, str] = {}
    while r.remaining >= 4:
        r.pad(4, "name subsection")
        if r.remaining < 4:
            break
        sat = r.pos
        sub_id = r.a32("name subsection id")
        r.a32("name subsection size")  # copied from the Wasm LEB size: not the AOT size
        if sub_id != 1:
            raise r.error("unexpected name subsection", at=sat,
                          expected="1 (function names; WAMR keeps no others)", found=str(sub_id))
        count = r.count("function name", 6)
        for _ in range(count):
            idx = r.a32("function name index")
            names[idx] = r.string("function name")
    aot.names = names
