"""``wasmprof inspect FILE...``: what a binary is and its function table.

Exit codes: 0 every file read; 1 ``--validate`` found an invalid module; 2 a file could not be
read (the others are still reported).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from wasmprof.errors import WasmprofError
from wasmprof.model import Module, ModuleKind
from wasmprof.output import Progress, write_json

if TYPE_CHECKING:
    from wasmprof.binary.aot import AotFile

KIND_TEXT = {ModuleKind.WASM: "WebAssembly module", ModuleKind.AOT: "WAMR AOT file",
             ModuleKind.AOT_WASM: "Wasm module with an appended WAMR AOT image",
             ModuleKind.ELF_OBJECT: "wamrc object file (ELF)",
             ModuleKind.CWASM: "Wasmtime precompiled module"}

EPILOG = """\
examples:
  wasmprof inspect plugin.wasm                 what it is, identity, function table
  wasmprof inspect plugin.aot plugin.wasm      the .aot gets its names from the .wasm
  wasmprof inspect --json plugin.aot.wasm      machine-readable (one object; a list for
                                               several files)
  wasmprof inspect --summary --validate *.wasm facts only, plus wasm-tools validation

Kinds are detected from the content: wasm, aot, aot.wasm, elf-object, cwasm.
Exit codes: 0 ok, 1 --validate found an invalid module, 2 a file could not be read.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="show what a Wasm/AOT/object/cwasm file is and its function table",
        description="Show what each FILE is (wasm, aot, aot.wasm, elf-object, cwasm), its "
                    "architecture and AOT layout, identity, DWARF/name-section/build_id "
                    "presence and its function table. Files given together are matched "
                    "(an .aot with the .wasm it was compiled from, a stripped module with "
                    "its debug build) so names are filled in.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="module files to inspect")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--summary", action="store_true", help="omit the function table")
    p.add_argument("--validate", action="store_true",
                   help="also validate Wasm modules with wasm-tools (slower)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wasmprof.binary.loader import find_companion, load_module
    from wasmprof.binary.wasm import validate_with_wasm_tools

    modules: list[Module] = []
    errors: list[tuple[str, WasmprofError]] = []
    prog = Progress("inspect", len(args.files), unit="files")
    for i, path in enumerate(args.files):
        try:
            modules.append(load_module(path))
        except WasmprofError as e:
            errors.append((path, e))
        prog.update(i + 1)
    prog.close()
    for m in modules:
        find_companion(m, modules)
    validation: dict[str, tuple[bool, str]] = {}
    if args.validate:
        for m in modules:
            if m.kind in (ModuleKind.WASM, ModuleKind.AOT_WASM):
                validation[m.path] = validate_with_wasm_tools(m.path)

    if args.json:
        docs: list[dict[str, Any]] = [module_to_dict(m, functions=not args.summary,
                                                     validation=validation.get(m.path))
                                      for m in modules]
        docs += [{"path": p, "error": e.to_dict()} for p, e in errors]
        write_json(docs[0] if len(args.files) == 1 else docs)
    else:
        out = sys.stdout
        for m in modules:
            print_module(m, out, functions=not args.summary, validation=validation.get(m.path))
    for _, e in errors:
        print(f"wasmprof: error: {safe_text(str(e))}", file=sys.stderr)
    if errors:
        return 2
    if any(not ok for ok, _ in validation.values()):
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------
def module_to_dict(m: Module, *, functions: bool = True,
                   validation: tuple[bool, str] | None = None) -> dict[str, Any]:
    """The ``inspect --json`` document of one module (also usable by the server)."""
    d: dict[str, Any] = {
        "path": m.path, "kind": str(m.kind), "name": m.name, "identity": m.identity,
        "sha256": m.sha256, "shape": m.shape, "arch": m.arch, "aot_version": m.aot_version,
        "layout": m.aot_layout, "has_dwarf": m.has_dwarf, "has_name_section": m.has_name_section,
        "build_id": m.build_id, "external_debug_info": m.external_debug_info,
        "source_mapping_url": m.source_mapping_url, "code_payload_start": m.code_payload_start,
        "import_function_count": m.import_function_count,
        "defined_function_count": sum(1 for f in m.functions if not f.imported),
        "companion": m.companion.path if m.companion else None,
        "sections": _sections(m), "notes": list(m.notes),
    }
    if m.aot is not None:
        d["target"] = _target(m.aot)
    if validation is not None:
        d["validation"] = {"ok": validation[0], "message": validation[1]}
    if functions:
        native = m.kind in (ModuleKind.AOT, ModuleKind.AOT_WASM, ModuleKind.ELF_OBJECT,
                            ModuleKind.CWASM)
        rows = []
        imports = _import_names(m)
        for f in m.functions:
            row: dict[str, Any] = {"wasm_index": f.wasm_index, "name": f.name,
                                   "imported": f.imported, "exports": list(f.exports)}
            if f.imported and f.wasm_index < len(imports):
                row["import"] = imports[f.wasm_index]
            if f.body_start is not None:
                row["body_start"], row["body_end"] = f.body_start, f.body_end
            if native:
                row["aot_index"] = f.aot_index
                row["text_offset"] = f.text_offset
                row["size"] = f.size
                if f.internal_text_offset is not None:
                    row["internal_text_offset"] = f.internal_text_offset
                    row["internal_size"] = f.internal_size
            rows.append(row)
        d["functions"] = rows
    return d


def _import_names(m: Module) -> list[str]:
    """``module.field`` of each imported function, in index order (when the file says)."""
    from wasmprof.binary.aot import AotFile

    if m.wasm is not None:
        return [f"{i.module}.{i.field}" for i in m.wasm.imports if i.kind == 0]
    if isinstance(m.aot, AotFile):
        return [f"{i.module}.{i.field}" for i in m.aot.init.import_funcs]
    return []


def _target(aot: AotFile) -> dict[str, Any]:
    t = aot.target
    return {"arch": t.arch, "machine": t.machine, "bin_type": t.bin_type,
            "bits": 64 if t.is_64bit else 32, "big_endian": t.big_endian, "abi_type": t.abi_type,
            "e_type": t.e_type, "e_machine": t.e_machine, "e_flags": t.e_flags,
            "feature_flags": t.feature_flags, "features": t.features, "xip": t.xip,
            "literal_size": aot.literal_size, "code_offset": aot.code_offset,
            "code_size": aot.code_size, "stack_wrappers": aot.has_stack_wrappers,
            "embedded_sections": sorted(aot.raw_sections),
            "relocation_groups": [{"name": g.name, "count": len(g.relocations)}
                                  for g in aot.relocation_groups]}


def _sections(m: Module) -> list[dict[str, Any]]:
    from wasmprof.binary.aot import AotFile
    from wasmprof.binary.cwasm import CwasmFile
    from wasmprof.binary.elf import ElfObject

    out: list[dict[str, Any]] = []
    if m.wasm is not None:
        out += [{"format": "wasm", "id": s.id, "kind": s.kind, "name": s.name, "offset": s.offset,
                 "payload_start": s.payload_start, "size": s.size} for s in m.wasm.sections]
    if isinstance(m.aot, AotFile):
        out += [{"format": "aot", "id": s.id, "kind": s.kind, "name": s.name, "offset": s.offset,
                 "payload_start": s.payload_start, "size": s.size} for s in m.aot.sections]
    if isinstance(m.elf, (ElfObject, CwasmFile)):
        out += [{"format": "elf", "name": s.name, "type": s.type, "offset": s.offset,
                 "size": s.size} for s in m.elf.sections if s.type != "SHT_NULL"]
    return out


# ---------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------
_BIDI = {0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068,
         0x2069}


def safe_text(s: str | None) -> str:
    """``s`` with terminal control characters (C0, DEL, C1, bidi overrides) escaped."""
    if s is None:
        return "-"
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif o in _BIDI:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def print_module(m: Module, out, *, functions: bool = True,
                 validation: tuple[bool, str] | None = None) -> None:
    w = out.write
    head = f"{safe_text(m.path)}: {KIND_TEXT.get(m.kind, str(m.kind))} ({m.kind})"
    if m.arch:
        head += f", {safe_text(m.arch)}"
    if m.aot_version is not None:
        head += f", AOT version {m.aot_version} layout {m.aot_layout}"
    w(head + "\n")
    defined = sum(1 for f in m.functions if not f.imported)
    rows = [("name", safe_text(m.name)), ("identity", m.identity), ("sha256", m.sha256),
            ("functions", f"{m.import_function_count} imported, {defined} defined"),
            ("DWARF", "yes" if m.has_dwarf else "no"),
            ("name section", "yes" if m.has_name_section else "no"),
            ("build_id", m.build_id or "-")]
    if m.external_debug_info:
        rows.append(("debug file", safe_text(m.external_debug_info)))
    if m.source_mapping_url:
        rows.append(("source map", safe_text(m.source_mapping_url)))
    if m.code_payload_start is not None:
        rows.append(("code start", f"{m.code_payload_start} (0x{m.code_payload_start:x})"))
    if m.aot is not None:
        t = m.aot.target
        machine = "" if t.machine == t.arch else f" ({t.machine})"
        rows.append(("target", f"{safe_text(t.arch)}{machine}, "
                               f"{64 if t.is_64bit else 32}-bit, e_type {t.e_type}"
                               + (" (XIP)" if t.xip else "")))
        rows.append(("features", ", ".join(t.features) or "-"))
        rows.append(("code", f"offset {m.aot.code_offset}, {m.aot.code_size} bytes"
                             + (", stack-check wrappers" if m.aot.has_stack_wrappers else "")))
        if m.aot.raw_sections:
            rows.append(("embedded", safe_text(", ".join(sorted(m.aot.raw_sections)))))
    if m.companion is not None:
        rows.append(("companion", safe_text(m.companion.path)))
    if validation is not None:
        rows.append(("validation", "valid" if validation[0]
                     else "INVALID: " + safe_text(validation[1])))
    for k, v in rows:
        w(f"  {k:<13}{v}\n")
    for n in m.notes:
        w(f"  note: {safe_text(n)}\n")
    if functions:
        native = any(f.text_offset is not None for f in m.functions)
        if native:
            w(f"  {'wasm':>6} {'aot':>6} {'text_off':>10} {'size':>8}  name\n")
        else:
            w(f"  {'wasm':>6} {'body':>10} {'size':>8}  name\n")
        imports = _import_names(m)
        for f in m.functions:
            name = safe_text(f.name) if f.name else "-"
            if f.imported:
                imp = imports[f.wasm_index] if f.wasm_index < len(imports) else None
                name += f" (import {safe_text(imp)})" if imp else " (import)"
            extra = [e for e in f.exports if e != f.name]
            if extra:
                name += "  [export " + ", ".join(safe_text(e) for e in extra) + "]"
            if native:
                aot = "-" if f.aot_index is None else str(f.aot_index)
                off = "-" if f.text_offset is None else f"0x{f.text_offset:x}"
                size = "-" if f.size is None else str(f.size)
                w(f"  {f.wasm_index:>6} {aot:>6} {off:>10} {size:>8}  {name}\n")
            else:
                body = "-" if f.body_start is None else f"0x{f.body_start:x}"
                size = "-" if f.body_start is None else str(f.body_end - f.body_start)
                w(f"  {f.wasm_index:>6} {body:>10} {size:>8}  {name}\n")
    w("\n")
