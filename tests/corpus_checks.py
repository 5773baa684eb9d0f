"""Comparisons of what the readers produce with the fixture ground truth (expected/*.json).

Used by test_wasm_reader.py / test_fixture_corpus.py on tests/data and on ../shared/fixtures.
Each function returns a list of human-readable mismatches (empty = agreement).
"""

from __future__ import annotations

import json
from pathlib import Path

from wasmprof.binary.loader import find_companion, load_module
from wasmprof.model import Module

WABT_SECTION = {"Type": 1, "Import": 2, "Function": 3, "Table": 4, "Memory": 5, "Global": 6,
                "Export": 7, "Start": 8, "Elem": 9, "Code": 10, "Data": 11, "DataCount": 12,
                "Tag": 13, "Custom": 0}


def check_wasm(root: Path, wasm_path: Path) -> list[str]:
    exp = json.loads((root / "expected" / "wasm" / f"{wasm_path.name}.module.expected.json")
                     .read_text())
    m = load_module(wasm_path)
    wb = m.wasm
    bad: list[str] = []
    got_secs = [(s.id, s.payload_start, s.end, s.name) for s in wb.sections]
    want_secs = [(WABT_SECTION[s["id"]], s["payload_start"], s["end"], s.get("name"))
                 for s in exp["sections"]]
    if got_secs != want_secs:
        bad.append(f"sections differ: {got_secs[:3]}... vs {want_secs[:3]}...")
    if m.code_payload_start != exp["code_section_payload_start"]:
        bad.append(f"code payload start {m.code_payload_start} != "
                   f"{exp['code_section_payload_start']}")
    if m.import_function_count != exp["imported_function_count"]:
        bad.append(f"imports {m.import_function_count} != {exp['imported_function_count']}")
    if (m.has_name_section, m.has_dwarf) != (exp["has_name_section"], exp["has_dwarf"]):
        bad.append(f"name/dwarf flags {(m.has_name_section, m.has_dwarf)}")
    names = wb.names.function_names if wb.names else {}
    got = [(f.wasm_index, names.get(f.wasm_index), f.body_start, f.body_end, sorted(f.exports))
           for f in m.functions if not f.imported]
    want = [(f["index"], f["name"], f["body_start"], f["body_end"], sorted(f["exports"]))
            for f in exp["functions"]]
    if got != want:
        diff = [(a, b) for a, b in zip(got, want) if a != b][:3]
        bad.append(f"functions differ ({len(got)} vs {len(want)}): {diff}")
    # the model's names: name section, else the export name
    for f in m.functions:
        if not f.imported:
            want_name = names.get(f.wasm_index) or (f.exports[0] if f.exports else None)
            if f.name != want_name:
                bad.append(f"Module name of {f.wasm_index}: {f.name!r} != {want_name!r}")
                break
    comp = exp.get("debug_companion")
    if comp:
        other = load_module(root / comp["file"])
        if (m.identity == other.identity) != comp["code_section_identical"]:
            bad.append(f"identity vs companion {comp['file']}: {m.identity} / {other.identity}")
        if find_companion(m, [other]) is not other:
            bad.append("find_companion did not pick the unstripped module")
    return bad


def check_native(root: Path, path: Path, modules: dict[str, Module] | None = None) -> list[str]:
    """An .aot / .aot.wasm / .o against expected/aot: index -> name, AOT index <-> Wasm index,
    and for objects the exact symbol values (text offset -> function)."""
    exp = json.loads((root / "expected" / "aot" / f"{path.name}.expected.json").read_text())
    m = load_module(path)
    src_path = root / exp["names_from"]
    src = (modules or {}).get(str(src_path)) or load_module(src_path)
    source_wasm = root / exp["source_wasm"]
    cands = [src]
    if source_wasm != src_path:
        cands.append(load_module(source_wasm))
    bad: list[str] = []
    if m.kind == "aot":
        if find_companion(m, cands) is None:
            bad.append("no companion found by shape")
    elif m.kind == "elf-object":
        if find_companion(m, [src]) is None:
            bad.append("object not matched to its source module")
    if m.import_function_count != exp["imported_function_count"]:
        bad.append(f"imports {m.import_function_count} != {exp['imported_function_count']}")
    native = [f for f in m.functions if not f.imported]
    if len(native) != exp["aot_function_count"]:
        bad.append(f"{len(native)} functions != {exp['aot_function_count']}")
    by_aot = {f.aot_index: f for f in native}
    for e in exp["functions"]:
        f = by_aot.get(e["aot_index"])
        if f is None:
            bad.append(f"aot_func#{e['aot_index']} missing")
            continue
        if f.wasm_index != e["wasm_index"]:
            bad.append(f"aot_func#{e['aot_index']}: wasm index {f.wasm_index} != {e['wasm_index']}")
        if f.name != e["name"]:
            bad.append(f"aot_func#{e['aot_index']}: name {f.name!r} != {e['name']!r}")
        if m.kind == "aot.wasm" and (f.body_start, f.body_end) != (e["wasm_body_start"],
                                                                  e["wasm_body_end"]):
            bad.append(f"aot_func#{e['aot_index']}: body range differs")
        sym = e.get("elf_symbol")
        if sym:
            if (f.text_offset, f.size) != (sym["value"], sym["size"]):
                bad.append(f"aot_func#{e['aot_index']}: symbol {(f.text_offset, f.size)} != "
                           f"{(sym['value'], sym['size'])}")
            hit = m.elf.function_at(sym["value"] + max(sym["size"] - 1, 0))
            if hit != (e["aot_index"], False):
                bad.append(f"function_at(end of aot_func#{e['aot_index']}) = {hit}")
            isym = e.get("elf_internal_symbol")
            if isym:
                if (f.internal_text_offset, f.internal_size) != (isym["value"], isym["size"]):
                    bad.append(f"aot_func_internal#{e['aot_index']} differs")
                if m.elf.function_at(isym["value"]) != (e["aot_index"], True):
                    bad.append(f"function_at(aot_func_internal#{e['aot_index']}) wrong")
        if m.aot is not None and f.text_offset is not None:
            hit = m.aot.function_at(f.text_offset)
            if hit is None or hit[0] != e["aot_index"]:
                bad.append(f"aot function_at({f.text_offset}) = {hit}")
    return bad
