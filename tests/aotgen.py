"""A small WAMR AOT *writer* for tests: every layout family of formats.md §1 (L1, L2, L3),
32- and 64-bit targets, from an :class:`AotSpec`.

There are no real L1/L2/i386 files in the fixture corpus, so tests build them here. The
writer follows formats.md independently of the reader's code (the same document, written the
other way round); the L3 output is checked byte-for-byte against real wamrc 2.4.3 files for
the sections the spec carries completely (TEXT, FUNCTION, EXPORT, RELOCATION, NAME).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from wasmprof.binary.aot import AotFile


class W:
    """Little-endian writer that pads like WAMR (u16 to 2, u32/u64 to 4) from its start."""

    def __init__(self, nul_strings: bool = True) -> None:
        self.b = bytearray()
        self.nul = nul_strings

    def pad(self, n: int) -> W:
        self.b += b"\0" * ((-len(self.b)) % n)
        return self

    def u8(self, v: int) -> W:
        self.b.append(v & 0xFF)
        return self

    def u16(self, v: int) -> W:
        self.pad(2)
        self.b += struct.pack("<H", v)
        return self

    def u32(self, v: int) -> W:
        self.pad(4)
        self.b += struct.pack("<I", v)
        return self

    def u64(self, v: int) -> W:
        self.pad(4)
        self.b += struct.pack("<Q", v)
        return self

    def raw(self, data: bytes) -> W:
        self.b += data
        return self

    def string(self, s: str) -> W:
        data = s.encode() + (b"\0" if self.nul else b"")
        self.u16(len(data))
        self.b += data
        return self


@dataclass
class AotSpec:
    version: int = 6
    layout: str = "L3"
    bin_type: int = 2                    # 2 = ELF64 LE, 0 = ELF32 LE
    e_type: int = 1
    e_machine: int = 62
    arch: str = "x86_64"
    feature_flags: int = 0
    types: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"", b""),
                                                                      (b"\x7f", b"\x7f")])
    import_funcs: list[tuple[int, str, str]] = field(default_factory=list)
    func_type_indices: list[int] = field(default_factory=list)
    text_offsets: list[int] = field(default_factory=list)
    code: bytes = b""
    literal: bytes = b""
    exports: list[tuple[str, int, int]] = field(default_factory=list)   # name, kind, index
    names: dict[int, str] | None = None
    raw_sections: dict[str, bytes] = field(default_factory=dict)
    elem_segments: list[list[int]] = field(default_factory=list)  # ref.func indexes each
    mem_segments: list[bytes] = field(default_factory=list)
    globals: int = 1
    import_globals: list[tuple[str, str]] = field(default_factory=list)
    data_sections: list[tuple[str, bytes]] = field(default_factory=list)
    reloc_symbols: list[str] = field(default_factory=lambda: [".rela.text", ".text"])
    reloc_groups: list[tuple[int, list[tuple[int, int, int, int]]]] = field(
        default_factory=lambda: [(0, [(4, 0, 2, 1)])])    # (name idx, [(off, add, type, sym)])
    cells: tuple[list[int], list[int]] | None = None   # max local / stack cell counts
    extra_tail: bytes = b""

    @property
    def is64(self) -> bool:
        return bool(self.bin_type & 2)

    @property
    def nul(self) -> bool:
        return self.layout != "L1"


def _section(out: W, sid: int, payload: bytes) -> None:
    out.pad(4)
    out.u32(sid).u32(len(payload)).raw(payload)


def _init_expr(w: W, kind: int, value: int) -> None:
    w.u32(kind)
    if kind in (0x42, 0x44):
        w.u64(value)
    elif kind:
        w.u32(value)


def target_info(spec: AotSpec) -> bytes:
    w = W()
    w.u16(spec.bin_type).u16(0).u16(spec.e_type).u16(spec.e_machine).u32(1).u32(0)
    if spec.layout == "L1":
        w.u32(0)
    else:
        w.u64(spec.feature_flags).u64(0)
    w.raw(spec.arch.encode().ljust(16, b"\0")[:15] + b"\0")
    return bytes(w.b)


def init_data(spec: AotSpec) -> bytes:
    w = W(spec.nul)
    l1 = spec.layout == "L1"
    # memory
    w.u32(0).u32(1).u32(0).u32(65536).u32(1).u32(16)
    w.u32(len(spec.mem_segments))
    for i, seg in enumerate(spec.mem_segments):
        w.pad(4).u32(0).u32(0)
        if l1:
            w.u32(0x41).u64(1024 * (i + 1))
        else:
            _init_expr(w, 0x41, 1024 * (i + 1))
        w.u32(len(seg)).raw(seg)
    # tables
    w.pad(4).u32(0)                                  # import tables
    w.u32(1)                                          # one table
    if l1:
        w.u32(0x70).u32(1).u32(8).u32(8).u32(0)
    else:
        w.u8(0x70).u8(1).u8(0).u8(0).u32(8).u32(8)
    w.u32(len(spec.elem_segments))
    for seg in spec.elem_segments:
        w.pad(4).u32(0).u32(0x70).u32(0)
        if spec.layout == "L3":
            _init_expr(w, 0x41, 1)
        else:
            w.u32(0x41).u64(1)
        if l1:
            w.u32(len(seg))
            for f in seg:
                w.u32(f)
        else:
            w.u16(0x70).u16(0).u32(0).u32(len(seg))
            for f in seg:
                _init_expr(w, 0xD2, f)
    # types
    w.pad(4).u32(len(spec.types))
    for params, results in spec.types:
        w.pad(4)
        if l1:
            w.u32(len(params)).u32(len(results))
        else:
            w.u16(0).u16(len(params)).u16(len(results))
        w.raw(params + results)
    # import globals
    w.pad(4).u32(len(spec.import_globals))
    for mod, name in spec.import_globals:
        w.pad(2).u8(0x7F).u8(0).string(mod).string(name)
    # globals
    w.pad(4).u32(spec.globals)
    for i in range(spec.globals):
        w.pad(4).u8(0x7F).u8(1)
        if l1:
            w.u16(0x41).u64(65536 + i)
        else:
            w.pad(4)
            _init_expr(w, 0x41, 65536 + i)
    # import functions
    w.pad(4).u32(len(spec.import_funcs))
    for t, mod, name in spec.import_funcs:
        w.u16(t).string(mod).string(name)
    # counts
    w.pad(4).u32(len(spec.text_offsets)).u32(0xFFFFFFFF)
    # aux
    if l1:
        for _ in range(7):
            w.u32(0)
    else:
        w.u32(0).u64(1024).u32(0).u64(4096).u32(0).u64(8192).u32(4096)
    # object data sections
    w.u32(len(spec.data_sections))
    for name, data in spec.data_sections:
        w.string(name).u32(len(data)).raw(data)
    return bytes(w.b)


def text_section(spec: AotSpec) -> bytes:
    w = W()
    w.u32(len(spec.literal)).raw(spec.literal).pad(4).raw(spec.code).pad(4)
    return bytes(w.b)


def function_section(spec: AotSpec) -> bytes:
    w = W()
    for off in spec.text_offsets:
        w.u64(off) if spec.is64 else w.u32(off)
    for t in spec.func_type_indices:
        w.u32(t)
    if spec.layout != "L1":
        n = len(spec.text_offsets)
        local, stack = spec.cells or ([4] * n, [8] * n)
        for v in local + stack:
            w.u32(v)
    return bytes(w.b)


def export_section(spec: AotSpec) -> bytes:
    w = W(spec.nul)
    w.u32(len(spec.exports))
    for name, kind, index in spec.exports:
        w.pad(4).u32(index).u8(kind).u8(0).string(name)
    return bytes(w.b)


def relocation_section(spec: AotSpec) -> bytes:
    area = W(spec.nul)
    offsets = []
    for s in spec.reloc_symbols:
        area.pad(2)
        offsets.append(len(area.b))
        area.string(s)
    w = W(spec.nul)
    w.u32(len(spec.reloc_symbols))
    for o in offsets:
        w.u32(o)
    w.u32(len(area.b)).raw(bytes(area.b))
    w.pad(4).u32(len(spec.reloc_groups))
    for name_index, relocs in spec.reloc_groups:
        w.pad(4).u32(name_index).u32(len(relocs))
        for off, add, rtype, sym in relocs:
            w.pad(4)
            if spec.is64:
                w.u64(off).u64(add)
            else:
                w.u32(off).u32(add)
            w.u32(rtype).u32(sym)
    return bytes(w.b)


def name_section(spec: AotSpec, names: dict[int, str]) -> bytes:
    w = W(spec.nul)
    w.u32(3).u32(4).raw(b"name").u32(1).u32(0xDEAD).u32(len(names))
    for idx in sorted(names):
        w.pad(4).u32(idx).string(names[idx])
    return bytes(w.b)


def raw_section(spec: AotSpec, name: str, data: bytes) -> bytes:
    w = W(spec.nul)
    w.u32(0).string(name).raw(data)
    return bytes(w.b)


def build_aot(spec: AotSpec) -> bytes:
    out = W()
    out.raw(b"\0aot").u32(spec.version)
    _section(out, 0, target_info(spec))
    _section(out, 1, init_data(spec))
    _section(out, 2, text_section(spec))
    _section(out, 3, function_section(spec))
    _section(out, 4, export_section(spec))
    _section(out, 5, relocation_section(spec))
    if spec.names:
        _section(out, 100, name_section(spec, spec.names))
    for name, data in spec.raw_sections.items():
        _section(out, 100, raw_section(spec, name, data))
    return bytes(out.b) + spec.extra_tail


def simple_spec(layout: str = "L3", version: int | None = None, *, bits: int = 64,
                nfuncs: int = 4, imports: int = 2, **kw) -> AotSpec:
    """A small module: ``imports`` imported and ``nfuncs`` defined functions, 16 bytes of
    code each (except the last, 40), AOT offsets *not* sorted by index."""
    version = version or {"L1": 3, "L2": 3, "L3": 6}[layout]
    sizes = [16] * (nfuncs - 1) + [40]
    order = list(range(nfuncs))[::-1]          # laid out in reverse index order
    offsets = [0] * nfuncs
    pos = 0
    for i in order:
        offsets[i] = pos
        pos += sizes[i]
    code = bytes((0x90 + i) % 256 for i in range(pos))
    spec = AotSpec(version=version, layout=layout,
                   bin_type=2 if bits == 64 else 0,
                   e_machine=62 if bits == 64 else 3, arch="x86_64" if bits == 64 else "i386",
                   import_funcs=[(1, "env", f"host{i}") for i in range(imports)],
                   func_type_indices=[i % 2 for i in range(nfuncs)],
                   text_offsets=offsets, code=code,
                   exports=[("memory", 2, 0), ("run", 0, imports + 1)],
                   names={i: f"fn_{i}" for i in range(imports + nfuncs)})
    for k, v in kw.items():
        setattr(spec, k, v)
    return spec


def spec_from_aot(aot: AotFile, data: bytes, layout: str, version: int) -> AotSpec:
    """Re-encode a parsed real file's function-level content into another layout."""
    code = bytes(data[aot.code_offset - aot.base:aot.code_offset - aot.base + aot.code_size])
    t = aot.target
    return AotSpec(
        version=version, layout=layout, bin_type=t.bin_type, e_type=t.e_type,
        e_machine=t.e_machine, arch=t.arch,
        feature_flags=(t.feature_flags or 0) if layout != "L1" else 0,
        types=[(ft.params, ft.results) for ft in aot.init.types],
        import_funcs=[(f.type_index, f.module, f.field) for f in aot.init.import_funcs],
        func_type_indices=list(aot.type_indices), text_offsets=list(aot.text_offsets),
        code=code, cells=(list(aot.max_local_cell_nums), list(aot.max_stack_cell_nums)),
        exports=[(e.name, {"func": 0, "table": 1, "memory": 2, "global": 3}[e.kind], e.index)
                 for e in aot.exports],
        names=dict(aot.names) or None,
        raw_sections=dict(aot.raw_sections),
        data_sections=[(n, b"\0" * s) for n, s in aot.init.data_sections],
        reloc_symbols=list(aot.relocation_symbols),
        reloc_groups=[(aot.relocation_symbols.index(g.name),
                       [(r.offset, r.addend, r.type, aot.relocation_symbols.index(r.symbol))
                        for r in g.relocations]) for g in aot.relocation_groups])
