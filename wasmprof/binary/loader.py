"""Sniff a binary and build the :class:`~wasmprof.model.Module` every later layer uses.

Kinds (by content, never by file name): ``\\0asm`` -> ``wasm``, or ``aot.wasm`` when a
``wamr-aot[-ver]`` custom section carries an AOT image; ``\\0aot`` -> ``aot``; ELF with
``EI_OSABI`` 200 or ``.wasmtime.*`` sections -> ``cwasm``; any other ELF -> ``elf-object``
(``wamrc --format=object``). Anything else is a :class:`BinaryFormatError`.

Contracts:

- ``identity``: ``build_id:<hex>`` / ``code:<sha256 of the Code payload>`` for Wasm (and for
  ``.aot.wasm``, the embedded Wasm's); an ``.aot`` that embeds a ``build_id`` section (RAW
  custom section) gets that build id; otherwise ``file:<sha256 of the file>``.
- ``shape``: sha256 over (import function count, defined functions' type indexes, sorted
  function exports) computed identically for Wasm and AOT, so an ``.aot`` can be matched to
  the ``.wasm`` it was compiled from. None where the information is not in the file.
- ``functions`` is indexed by Wasm function index (imports first). Names: AOT NAME section
  -> Wasm ``name`` section -> export name (a companion's names fill gaps, see
  :func:`find_companion`).
- Files larger than ``max_size`` (default 1 GiB, env ``WASMPROF_MAX_MODULE_BYTES``) are
  refused before they are read.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from typing import TYPE_CHECKING

from wasmprof.binary.reader import ByteReader
from wasmprof.binary.wasm import WASM_MAGIC, WasmBinary, parse_wasm
from wasmprof.errors import BinaryFormatError, UsageError
from wasmprof.model import FunctionInfo, Module, ModuleKind

if TYPE_CHECKING:       # the AOT / ELF / cwasm readers load only for such files
    from wasmprof.binary.aot import AotFile
    from wasmprof.binary.cwasm import CwasmFile
    from wasmprof.binary.elf import ElfObject

AOT_MAGIC = b"\0aot"
ELF_MAGIC = b"\x7fELF"

DEFAULT_MAX_SIZE = 1 << 30
ENV_MAX_SIZE = "WASMPROF_MAX_MODULE_BYTES"

_ELF_ARCH = {"EM_X86_64": "x86_64", "EM_386": "i386", "EM_AARCH64": "aarch64", "EM_ARM": "arm",
             "EM_RISCV": "riscv", "EM_XTENSA": "xtensa", "EM_MIPS": "mips", "EM_S390": "s390x"}


def max_module_size() -> int:
    raw = os.environ.get(ENV_MAX_SIZE)
    if not raw:
        return DEFAULT_MAX_SIZE
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"bad {ENV_MAX_SIZE}", source=ENV_MAX_SIZE,
                         expected="a byte count", found=raw) from None


def load_module(path: str | os.PathLike, data: bytes | None = None, *, name: str | None = None,
                max_size: int | None = None,
                source_map: str | os.PathLike | None = None) -> Module:
    """Read ``path`` (or use ``data``, naming it ``path``) and build its Module.

    A Wasm module's source map is attached as ``module.source_map``: ``source_map`` (a
    path; a bad file raises) or what its ``sourceMappingURL`` names (see
    :func:`attach_source_map`)."""
    source = str(path)
    limit = max_module_size() if max_size is None else max_size
    if data is None:
        try:
            size = os.stat(source).st_size
        except OSError as e:
            raise BinaryFormatError(f"cannot read file: {e.strerror}", source=source) from None
        _check_size(size, limit, source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise BinaryFormatError(f"cannot read file: {e.strerror}", source=source) from None
    _check_size(len(data), limit, source)
    data = bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    stem = Path(source).name
    for suffix in (".aot.wasm", ".wasm", ".aot", ".cwasm", ".o"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break

    if not data:
        raise BinaryFormatError("empty file", source=source, offset=0,
                                expected="a Wasm (\\0asm), WAMR AOT (\\0aot) or ELF file")
    head = data[:4]
    if head == WASM_MAGIC:
        mod = _from_wasm(data, source, sha)
    elif head == AOT_MAGIC:
        from wasmprof.binary.aot import parse_aot
        mod = _from_aot(parse_aot(data, source), source, sha)
    elif head == ELF_MAGIC:
        from wasmprof.binary.cwasm import is_cwasm_elf, parse_cwasm
        from wasmprof.binary.elf import open_elf, parse_elf_object
        elf = open_elf(data, source)
        try:
            cw = is_cwasm_elf(elf)
        except Exception as e:
            raise BinaryFormatError(f"malformed ELF: {e}", source=source, offset=0) from None
        mod = _from_cwasm(parse_cwasm(data, source), source, sha) if cw else \
            _from_elf(parse_elf_object(data, source), source, sha)
    else:
        raise BinaryFormatError(
            "unrecognised file type", source=source, offset=0,
            expected="magic \\0asm (Wasm), \\0aot (WAMR AOT) or \\x7fELF (wamrc object, "
                     "Wasmtime .cwasm)", found=head.hex(" "))
    mod.name = name or mod.name or stem
    if source_map is not None:
        try:
            blob = _read_capped(Path(source_map))
        except OSError as e:
            raise UsageError(f"cannot read the source map: {e.strerror}",
                             source=str(source_map)) from None
        attach_source_map(mod, blob, str(source_map))
    elif mod.source_mapping_url and mod.wasm is not None:
        _discover_source_map(mod, source if os.path.isfile(source) else None)
    return mod


def attach_source_maps(modules: list[Module], maps: Iterable[str | os.PathLike]) -> None:
    """Attach each source map file to the Wasm module it belongs to: the one whose
    ``sourceMappingURL`` ends in the map's file name, else the one the map is named after
    (``plugin.wasm.map`` -> ``plugin.wasm``), else the only Wasm module given."""
    wasm = [m for m in modules if m.wasm is not None and m.kind == ModuleKind.WASM]
    for path in maps:
        p = Path(path)
        named = [m for m in wasm if m.source_mapping_url and
                 m.source_mapping_url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] == p.name]
        if len(named) != 1:
            named = [m for m in wasm if Path(m.path).name + ".map" == p.name]
        if len(named) != 1:
            named = wasm if len(wasm) == 1 else []
        if len(named) != 1:
            raise UsageError("cannot tell which module this source map belongs to",
                             source=str(p), expected="a map named <module>.wasm.map or named "
                             "by a module's sourceMappingURL, or a single --module")
        try:
            blob = _read_capped(p)
        except OSError as e:
            raise UsageError(f"cannot read the source map: {e.strerror}", source=str(p)) \
                from None
        attach_source_map(named[0], blob, str(p))


def attach_source_map(module: Module, data: bytes, where: str) -> None:
    """Parse ``data`` as ``module``'s source map (raises ``SourceMapError`` when it is not
    one) and attach it."""
    from wasmprof.addr2line.sourcemap import SourceMap   # only modules with maps pay
    module.source_map = SourceMap.parse(data, where)


def _discover_source_map(mod: Module, path: str | None) -> None:
    """The map ``sourceMappingURL`` names: a ``data:`` URL, else a file next to the module
    (the URL's last path component when it is absolute or remote: never fetched). A missing
    or broken map is a note, not an error: the module itself is fine."""
    from wasmprof.addr2line.sourcemap import SourceMapError, decode_data_url
    url = mod.source_mapping_url or ""
    try:
        if url.lower().startswith("data:"):
            attach_source_map(mod, decode_data_url(url, "sourceMappingURL"),
                              f"{Path(mod.path).name} (sourceMappingURL data: URL)")
            return
        if path is None:
            return
        rel = url.split("?", 1)[0].split("#", 1)[0]
        if "://" in rel or rel.startswith("/"):
            rel = rel.rstrip("/").rsplit("/", 1)[-1]
        cand = (Path(path).parent / rel) if rel else None
        if cand is None or not cand.is_file():
            mod.notes.append(f"source map {url[:200]!r} (sourceMappingURL) not found next to "
                             "the module: pass it with --source-map")
            return
        attach_source_map(mod, _read_capped(cand), str(cand))
    except (SourceMapError, OSError) as e:
        mod.notes.append(f"source map not used: {e}")


def _read_capped(path: Path) -> bytes:
    from wasmprof.addr2line.sourcemap import MAX_MAP_BYTES, SourceMapError
    if path.stat().st_size > MAX_MAP_BYTES:
        raise SourceMapError("source map too large", source=str(path),
                             expected=f"at most {MAX_MAP_BYTES} bytes")
    return path.read_bytes()


def _check_size(size: int, limit: int, source: str) -> None:
    if size > limit:
        raise BinaryFormatError(
            "file is larger than the module size limit", source=source,
            expected=f"at most {limit} bytes (raise {ENV_MAX_SIZE} to allow more)",
            found=f"{size} bytes")


# ---------------------------------------------------------------------------------------
# shape
# ---------------------------------------------------------------------------------------
def compute_shape(import_count: int, type_indices: Iterable[int],
                  function_exports: Iterable[tuple[str, int]]) -> str:
    """The shape hash shared by a .wasm and every .aot compiled from it."""
    h = hashlib.sha256()
    h.update(f"imports={import_count};types=".encode())
    h.update(",".join(map(str, type_indices)).encode())
    h.update(b";exports=")
    for name, idx in sorted(function_exports):
        h.update(name.encode("utf-8", "surrogatepass") + b"\0" + str(idx).encode() + b"\0")
    return h.hexdigest()


def _wasm_shape(wb: WasmBinary) -> str:
    return compute_shape(wb.import_function_count, wb.function_type_indices,
                         [(e.name, e.index) for e in wb.exports if e.kind == "func"])


def _aot_shape(aot: "AotFile") -> str:
    return compute_shape(aot.import_func_count, aot.type_indices, aot.function_exports())


# ---------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------
def _wasm_functions(wb: WasmBinary) -> list[FunctionInfo]:
    funcs = [FunctionInfo(wasm_index=i, imported=True) for i in range(wb.import_function_count)]
    funcs += [FunctionInfo(wasm_index=b.wasm_index, body_start=b.start, body_end=b.end)
              for b in wb.bodies]
    names = wb.names.function_names if wb.names else {}
    for e in wb.exports:
        if e.kind == "func" and e.index < len(funcs):
            funcs[e.index].exports.append(e.name)
    for f in funcs:
        f.name = names.get(f.wasm_index) or (f.exports[0] if f.exports else None)
    return funcs


def _from_wasm(data: bytes, source: str, sha: str) -> Module:
    wb = parse_wasm(data, source)
    funcs = _wasm_functions(wb)
    mod = Module(kind=ModuleKind.WASM, path=source, sha256=sha, identity=wb.identity,
                 import_function_count=wb.import_function_count, functions=funcs,
                 name=wb.names.module_name if wb.names else None,
                 has_dwarf=wb.has_dwarf, has_name_section="name" in wb.custom,
                 build_id=wb.build_id, external_debug_info=wb.external_debug_info,
                 source_mapping_url=wb.source_mapping_url,
                 code_payload_start=wb.code_payload_start, shape=_wasm_shape(wb),
                 notes=list(wb.notes), wasm=wb)
    blob = wb.wamr_aot_blob()
    if blob is not None:
        sec_name, off, length = blob
        from wasmprof.binary.aot import parse_aot
        aot = parse_aot(memoryview(data)[off:off + length], source, base=off)
        mod.kind = ModuleKind.AOT_WASM
        mod.aot = aot
        _apply_aot(mod, aot)
        mod.notes.append(f"AOT image in custom section {sec_name!r} at offset {off}")
        if sec_name != "wamr-aot":
            mod.notes.append(f"Envoy's allow_precompiled only loads a section named 'wamr-aot', "
                             f"not {sec_name!r}: the gateway interprets this module")
        if aot.import_func_count != wb.import_function_count or \
                aot.func_count != len(wb.bodies) or _aot_shape(aot) != mod.shape:
            mod.notes.append("the embedded AOT image was NOT compiled from this Wasm module "
                             "(function counts, types or exports differ)")
    return mod


def _apply_aot(mod: Module, aot: "AotFile") -> None:
    """Native-code facts and AOT names onto ``mod.functions`` (same index space)."""
    mod.arch = aot.target.arch
    mod.aot_version = aot.version
    mod.aot_layout = aot.layout
    mod.notes.extend(aot.notes)
    n_imp = aot.import_func_count
    for i, off in enumerate(aot.text_offsets):
        idx = n_imp + i
        if idx >= len(mod.functions):
            break
        f = mod.functions[idx]
        f.aot_index = i
        f.text_offset = off
        start, end = aot.text_range(i)
        f.size = end - start
    for idx, nm in aot.names.items():
        if 0 <= idx < len(mod.functions) and nm:
            mod.functions[idx].name = nm


def _raw_build_id(aot: "AotFile") -> str | None:
    raw = aot.raw_sections.get("build_id")
    if raw is None:
        return None
    try:
        r = ByteReader(raw, aot.source)
        return r.bytes(r.uleb("build_id length"), "build_id bytes").hex() or None
    except BinaryFormatError:
        return None


def _from_aot(aot: "AotFile", source: str, sha: str) -> Module:
    funcs = [FunctionInfo(wasm_index=i, imported=True)
             for i in range(aot.import_func_count)]
    funcs += [FunctionInfo(wasm_index=aot.import_func_count + i) for i in range(aot.func_count)]
    for e in aot.exports:
        if e.kind == "func" and e.index < len(funcs):
            funcs[e.index].exports.append(e.name)
    for f in funcs:
        f.name = f.exports[0] if f.exports else None
    bid = _raw_build_id(aot)
    mod = Module(kind=ModuleKind.AOT, path=source, sha256=sha,
                 identity=f"build_id:{bid}" if bid else f"file:{sha}",
                 import_function_count=aot.import_func_count, functions=funcs,
                 has_dwarf=aot.has_dwarf, has_name_section=bool(aot.names), build_id=bid,
                 shape=_aot_shape(aot), aot=aot)
    _apply_aot(mod, aot)
    return mod


def _from_elf(obj: "ElfObject", source: str, sha: str) -> Module:
    n = len(obj.funcs)
    funcs = []
    for i in range(n):
        v, s = obj.funcs.get(i, (None, None))
        f = FunctionInfo(wasm_index=i, aot_index=i, text_offset=v, size=s)
        if i in obj.internal:
            f.internal_text_offset, f.internal_size = obj.internal[i]
        funcs.append(f)
    mod = Module(kind=ModuleKind.ELF_OBJECT, path=source, sha256=sha, identity=f"file:{sha}",
                 import_function_count=0, functions=funcs,
                 arch=_ELF_ARCH.get(obj.machine, obj.machine), has_dwarf=obj.has_dwarf,
                 notes=list(obj.notes), elf=obj)
    mod.notes.append("wamrc object files do not record the imported-function count: "
                     "wasm_index = aot_index until a companion .wasm/.aot is found")
    return mod


def _from_cwasm(cw: "CwasmFile", source: str, sha: str) -> Module:
    mine = [f for f in cw.functions if f.module_index == 0]
    imports = min((f.wasm_index for f in mine), default=0)
    top = max((f.wasm_index for f in mine), default=-1)
    funcs = [FunctionInfo(wasm_index=i, imported=i < imports) for i in range(top + 1)]
    for f in mine:
        fi = funcs[f.wasm_index]
        fi.name, fi.text_offset, fi.size = f.name, f.text_offset, f.size
    mod = Module(kind=ModuleKind.CWASM, path=source, sha256=sha, identity=f"file:{sha}",
                 import_function_count=imports, functions=funcs,
                 arch=_ELF_ARCH.get(cw.machine, cw.machine), has_dwarf=cw.has_dwarf,
                 notes=list(cw.notes), elf=cw)
    if len({f.module_index for f in cw.functions}) > 1:
        mod.notes.append("component with several core modules: only wasm[0] is listed")
    mod.notes.append("import count inferred from the first defined function's index")
    return mod


# ---------------------------------------------------------------------------------------
# companions
# ---------------------------------------------------------------------------------------
def _code_sha(mod: Module) -> str | None:
    """sha256 of the native code bytes (an .aot and its --format=object twin share it)."""
    if mod.aot is not None:
        return mod.aot.code_sha256
    if mod.elf is not None:
        from wasmprof.binary.elf import ElfObject
        if isinstance(mod.elf, ElfObject):
            return mod.elf.text_sha256
    return None


def find_companion(module: Module, candidates: Iterable[Module]) -> Module | None:
    """The module ``module`` should be symbolized against, also set as ``module.companion``.

    - Wasm / .aot.wasm: another Wasm with the same identity (stripped <-> unstripped),
      preferring one with DWARF, then one with a name section.
    - .aot: a Wasm with the same shape (preferring DWARF), else an .aot.wasm.
    - .cwasm: a Wasm whose function bodies contain every address-map value of the matching
      native functions (preferring DWARF).
    - wamrc object: an .aot whose code bytes are identical (its twin; the object's functions
      are re-indexed with that file's import count), else a Wasm with the same number of
      defined functions when exactly one such candidate exists (noted as weak).

    Fills names the module lacks from the companion (Wasm ``name`` section names replace
    export-only names, never AOT NAME-section names). Returns None when nothing matches.
    """
    cands = [c for c in candidates if c is not module]
    wasm_like = [c for c in cands if c.kind in (ModuleKind.WASM, ModuleKind.AOT_WASM)]

    def rank(c: Module) -> tuple:
        return (c.has_dwarf, c.source_map is not None, c.has_name_section,
                c.kind == ModuleKind.WASM)

    best: Module | None = None
    if module.kind in (ModuleKind.WASM, ModuleKind.AOT_WASM):
        same = [c for c in wasm_like if c.identity == module.identity]
        best = max(same, key=rank) if same else None
        if best is not None and rank(best)[:3] <= rank(module)[:3]:
            best = None  # nothing better than what the module already has
    elif module.kind == ModuleKind.AOT:
        same = [c for c in wasm_like if c.shape and c.shape == module.shape]
        best = max(same, key=rank) if same else None
    elif module.kind == ModuleKind.ELF_OBJECT:
        mine = _code_sha(module)
        twins = [c for c in cands if c.kind == ModuleKind.AOT and _code_sha(c) == mine]
        if twins:
            twin = twins[0]
            _reindex(module, twin.import_function_count)
            if twin.aot is not None:
                twin.aot.apply_object_symbols(module.elf)
            src = find_companion(twin, cands) if twin.companion is None else twin.companion
            _fill_names(module, twin)
            best = src or twin
            if src is not None:
                _fill_names(module, src)
            module.companion = best
            return best
        n = len(module.functions)
        same_count = [c for c in wasm_like
                      if len(c.functions) - c.import_function_count == n]
        if len(same_count) == 1 or (same_count and len({c.identity for c in same_count}) == 1):
            best = max(same_count, key=rank)
            _reindex(module, best.import_function_count)
            module.notes.append(f"matched to {best.path} by function count only")
    elif module.kind == ModuleKind.CWASM and _is_cwasm(module.elf):
        fits = [c for c in wasm_like if _cwasm_fits(module, c)]
        best = max(fits, key=rank) if fits else None
    if best is None:
        return None
    _fill_names(module, best)
    module.companion = best
    return best


def _is_cwasm(obj) -> bool:
    if obj is None:
        return False
    from wasmprof.binary.cwasm import CwasmFile
    return isinstance(obj, CwasmFile)


def _cwasm_fits(module: Module, cand: Module) -> bool:
    """A .cwasm was compiled from ``cand`` when the import counts agree and every native->Wasm
    address-map value of each function lies inside that function's body in ``cand`` (names
    must agree when the map is absent)."""
    cw: "CwasmFile" = module.elf
    if cand.wasm is None or cand.import_function_count != module.import_function_count:
        return False
    bodies = {b.wasm_index: b for b in cand.wasm.bodies}
    am = cw.addrmap
    for f in cw.functions:
        if f.module_index != 0:
            continue
        body = bodies.get(f.wasm_index)
        if body is None:
            return False
        if am is None:
            if f.name and cand.functions[f.wasm_index].name not in (None, f.name):
                return False
            continue
        i = bisect.bisect_left(am.pcs, f.text_offset)
        while i < len(am.pcs) and am.pcs[i] < f.text_offset + f.size:
            pos = am.positions[i]
            if pos is not None and not body.size_offset <= pos < body.end:
                return False
            i += 1
    return True


def _reindex(module: Module, imports: int) -> None:
    if module.import_function_count == imports:
        return
    defined = [f for f in module.functions if not f.imported]
    for f in defined:
        f.wasm_index = (f.aot_index if f.aot_index is not None else f.wasm_index) + imports
    module.functions = [FunctionInfo(wasm_index=i, imported=True)
                        for i in range(imports)] + defined
    module.import_function_count = imports
    module.notes = [n for n in module.notes if "imported-function count" not in n]


def _fill_names(module: Module, src: Module) -> None:
    aot_names = module.aot.names if module.aot is not None else {}
    for f in module.functions:
        if f.wasm_index in aot_names:
            continue
        if f.wasm_index < len(src.functions):
            other = src.functions[f.wasm_index]
            if other.name and (f.name is None or f.name in f.exports):
                f.name = other.name
