"""ELF objects written by ``wamrc --format=object`` (formats.md §3), read with pyelftools.

Contract: :func:`parse_elf_object` returns an :class:`ElfObject` with the ``aot_func#N`` and
``aot_func_internal#N`` symbol ranges (``st_value`` = offset in ``.text`` = AOT text offset),
the ``.text`` placement and which ``.debug_*`` sections really exist (pyelftools'
``has_dwarf_info()`` is True for any ``.eh_frame``, so it is not used). Any malformed ELF is
reported as :class:`BinaryFormatError`; pyelftools' own exceptions never escape.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field

from wasmprof.binary.ranges import function_in_ranges
from wasmprof.errors import BinaryFormatError

ELF_MAGIC = b"\x7fELF"
_AOT_SYM = re.compile(r"_?aot_func(_internal)?#(\d+)\Z")


@dataclass(slots=True)
class ElfSection:
    name: str
    type: str
    offset: int
    size: int


@dataclass(slots=True)
class ElfObject:
    source: str
    elf_class: int              # 32 or 64
    machine: str                # pyelftools e_machine name, e.g. "EM_X86_64"
    e_type: str
    osabi: int | str
    sections: list[ElfSection]
    text_offset: int | None     # file offset of .text
    text_size: int
    funcs: dict[int, tuple[int, int]] = field(default_factory=dict)     # N -> (value, size)
    internal: dict[int, tuple[int, int]] = field(default_factory=dict)  # aot_func_internal#N
    debug_sections: list[str] = field(default_factory=list)
    text_sha256: str | None = None  # of .text minus trailing zero bytes (= the AOT code)
    notes: list[str] = field(default_factory=list)
    _ranges: list[tuple[int, int, int, bool]] | None = field(default=None, repr=False)

    @property
    def has_dwarf(self) -> bool:
        """Real DWARF: ``.debug_info`` and ``.debug_line`` (``.eh_frame`` does not count)."""
        return ".debug_info" in self.debug_sections and ".debug_line" in self.debug_sections

    @property
    def has_stack_wrappers(self) -> bool:
        return bool(self.internal)

    def section(self, name: str) -> ElfSection | None:
        return next((s for s in self.sections if s.name == name), None)

    def function_at(self, text_offset: int) -> tuple[int, bool] | None:
        """``(aot_index, internal)`` for a ``.text`` offset, from exact symbol ranges."""
        if self._ranges is None:
            rs = [(v, v + max(s, 1), n, False) for n, (v, s) in self.funcs.items()]
            rs += [(v, v + max(s, 1), n, True) for n, (v, s) in self.internal.items()]
            rs.sort()
            self._ranges = rs
        return function_in_ranges(self._ranges, text_offset)


def is_elf(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) == ELF_MAGIC


def open_elf(data: bytes, source: str):
    """An ``ELFFile`` over ``data`` after basic header checks (bad input -> BinaryFormatError)."""
    from elftools.elf.elffile import ELFFile
    if len(data) == 0:
        raise BinaryFormatError("empty file", source=source, offset=0,
                                expected="the ELF magic 7f 45 4c 46")
    if not is_elf(data):
        raise BinaryFormatError("not an ELF file", source=source, offset=0,
                                expected="magic 7f 45 4c 46", found=bytes(data[:4]).hex(" "))
    if len(data) < 52:
        raise BinaryFormatError("file too short for an ELF header", source=source, offset=0,
                                expected="at least 52 bytes", found=f"{len(data)} bytes")
    try:
        elf = ELFFile(io.BytesIO(data))
        check_sections(elf, len(data), source)
    except BinaryFormatError:
        raise
    except Exception as e:  # pyelftools raises many types on malformed input
        raise BinaryFormatError(f"malformed ELF header: {e}", source=source, offset=0,
                                expected="a valid ELF header") from None
    return elf


def check_sections(elf, size: int, source: str) -> None:
    """Reject section tables that point past the end of the file before reading them."""
    shoff, shnum, shentsize = (elf.header["e_shoff"], elf.header["e_shnum"],
                               elf.header["e_shentsize"])
    if shnum and (shoff + shnum * shentsize > size or shentsize < 40):
        raise BinaryFormatError("ELF section header table runs past the end of the file",
                                source=source, offset=shoff,
                                expected=f"{shnum} entries of {shentsize} bytes within "
                                         f"{size} bytes")
    for i in range(shnum):
        sh = elf._get_section_header(i)
        if sh["sh_type"] not in ("SHT_NOBITS", "SHT_NULL") and \
                sh["sh_offset"] + sh["sh_size"] > size:
            raise BinaryFormatError(
                f"ELF section {i} runs past the end of the file", source=source,
                offset=shoff + i * shentsize,
                expected=f"offset + size <= {size}",
                found=f"offset {sh['sh_offset']} + size {sh['sh_size']}")


def read_sections(elf, source: str) -> list[ElfSection]:
    return [ElfSection(s.name, str(s["sh_type"]), s["sh_offset"], s["sh_size"])
            for s in elf.iter_sections()]


def parse_elf_object(data: bytes, source: str = "<elf>") -> ElfObject:
    """Read a wamrc object file's symbols and sections."""
    elf = open_elf(data, source)
    try:
        return _parse(elf, data, source)
    except BinaryFormatError:
        raise
    except Exception as e:
        raise BinaryFormatError(f"malformed ELF object: {e}", source=source, offset=None,
                                expected="consistent ELF sections and symbols") from None


def _parse(elf, data: bytes, source: str) -> ElfObject:
    sections = read_sections(elf, source)
    text = next((s for s in sections if s.name == ".text"), None)
    obj = ElfObject(source=source, elf_class=elf.elfclass, machine=str(elf.header["e_machine"]),
                    e_type=str(elf.header["e_type"]),
                    osabi=elf.header["e_ident"]["EI_OSABI"], sections=sections,
                    text_offset=text.offset if text else None,
                    text_size=text.size if text else 0,
                    debug_sections=[s.name for s in sections if s.name.startswith(".debug_")])
    if text is not None:
        obj.text_sha256 = hashlib.sha256(
            data[text.offset:text.offset + text.size].rstrip(b"\0")).hexdigest()
    text_index = next((i for i, s in enumerate(elf.iter_sections()) if s.name == ".text"), None)
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        obj.notes.append("no .symtab: function ranges unknown")
        return obj
    for sym in symtab.iter_symbols():
        m = _AOT_SYM.match(sym.name)
        if not m:
            continue
        if sym["st_shndx"] != text_index:
            continue  # an undefined reference (relocation target), not a definition
        n = int(m.group(2))
        (obj.internal if m.group(1) else obj.funcs)[n] = (sym["st_value"], sym["st_size"])
    if obj.funcs and sorted(obj.funcs) != list(range(len(obj.funcs))):
        missing = sorted(set(range(max(obj.funcs) + 1)) - set(obj.funcs))[:5]
        obj.notes.append(f"aot_func symbols are not contiguous (missing {missing}...)")
    return obj
