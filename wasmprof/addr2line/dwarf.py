"""DWARF over Wasm custom sections with pyelftools (formats.md §6.6).

The generic, slow reference reader. wasmprof's resolver uses the hand-written decoder in
:mod:`wasmprof.addr2line.fastdwarf`; this module exists so tests (and anyone debugging a
module) can check every shortcut against pyelftools' reading of the same bytes:

- :func:`dwarfinfo` builds a pyelftools ``DWARFInfo`` from a module's custom sections;
- :func:`reference_line_rows` lists (address, file, line, column, end_sequence) rows;
- :func:`reference_scopes` lists subprogram / inlined-subroutine ranges with names;
- :func:`reference_frames` resolves one code address into an inline chain the naive way
  (walk every DIE), with the same tombstone rules as the index.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DWARFInfo, DwarfConfig

_NAMES = ["info", "aranges", "abbrev", "frame", "str", "loc", "ranges", "line", "pubtypes",
          "pubnames", "addr", "str_offsets", "line_str", "loclists", "rnglists", "sup", "types"]
TOMBSTONE_MIN = 0xFFFFFFFE


def dwarfinfo(sections: dict[str, tuple[int, bytes]]) -> DWARFInfo:
    """``sections``: ``WasmBinary.dwarf_sections`` (``{".debug_info": (file offset, bytes)}``)."""
    def desc(name: str):
        if name not in sections:
            return None
        off, data = sections[name]
        return DebugSectionDescriptor(io.BytesIO(data), name, off, len(data), 0)
    kwargs = {f"debug_{n}_sec": desc(f".debug_{n}") for n in _NAMES}
    kwargs["eh_frame_sec"] = None
    kwargs["gnu_debugaltlink_sec"] = None
    return DWARFInfo(DwarfConfig(True, "wasm32", 4), **kwargs)


def _text(v) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _file_paths(di: DWARFInfo, cu, lp) -> list[str]:
    """Line-table file paths indexed like the program's file numbers (LLVM-style join)."""
    comp_dir = _text(cu.get_top_DIE().attributes.get("DW_AT_comp_dir").value) \
        if "DW_AT_comp_dir" in cu.get_top_DIE().attributes else ""
    version = lp.header["version"]
    dirs = [_text(d) for d in lp.header["include_directory"]]
    out = []
    if version < 5:
        out.append("<file 0>")
        dirs = [comp_dir] + dirs
    for fe in lp.header["file_entry"]:
        name = _text(fe.name)
        d = dirs[fe.dir_index] if fe.dir_index < len(dirs) else ""
        if version < 5 and fe.dir_index == 0:
            d = ""
        if name.startswith("/"):
            out.append(name)
        elif d:
            if not d.startswith("/") and comp_dir:
                d = comp_dir.rstrip("/") + "/" + d
            out.append(d.rstrip("/") + "/" + name)
        elif comp_dir:
            out.append(comp_dir.rstrip("/") + "/" + name)
        else:
            out.append(name)
    return out


def reference_line_rows(di: DWARFInfo) -> list[list[tuple[int, str | None, int, int, bool]]]:
    """Per CU, every line row: (address, file path or None at end_sequence, line, column, end)."""
    out = []
    for cu in di.iter_CUs():
        lp = di.line_program_for_CU(cu)
        rows = []
        if lp is not None:
            paths = _file_paths(di, cu, lp)
            for e in lp.get_entries():
                st = e.state
                if st is None:
                    continue
                if st.end_sequence:
                    rows.append((st.address, None, 0, 0, True))
                else:
                    f = paths[st.file] if st.file < len(paths) else None
                    rows.append((st.address, f, st.line, st.column, False))
        out.append(rows)
    return out


@dataclass
class RefScope:
    offset: int
    tag: str
    name: str | None
    linkage: str | None
    ranges: list[tuple[int, int]]
    depth: int                              # inline depth (0 = subprogram)
    call_file: int | None = None
    call_line: int | None = None
    call_column: int | None = None
    parent: "RefScope | None" = None
    cu_paths: list[str] | None = None


def _die_names(die) -> tuple[str | None, str | None]:
    name = linkage = None
    seen = 0
    while die is not None and seen < 8:
        seen += 1
        a = die.attributes
        if name is None and "DW_AT_name" in a:
            name = _text(a["DW_AT_name"].value)
        for k in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name"):
            if linkage is None and k in a:
                linkage = _text(a[k].value)
        if name is not None and linkage is not None:
            break
        nxt = None
        for k in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if k in a:
                nxt = die.get_DIE_from_attribute(k)
                break
        die = nxt
    return name, linkage


def _die_ranges(di: DWARFInfo, cu, die) -> list[tuple[int, int]]:
    a = die.attributes
    if "DW_AT_ranges" in a:
        rl = di.range_lists()
        out = []
        top = cu.get_top_DIE().attributes
        base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
        for e in rl.get_range_list_at_offset(a["DW_AT_ranges"].value, cu=cu):
            if hasattr(e, "begin_offset"):
                if getattr(e, "is_absolute", False):
                    out.append((e.begin_offset, e.end_offset))
                else:
                    out.append((base + e.begin_offset, base + e.end_offset))
            elif hasattr(e, "base_address"):
                base = e.base_address
        return out
    if "DW_AT_low_pc" in a and "DW_AT_high_pc" in a:
        lo = a["DW_AT_low_pc"].value
        hp = a["DW_AT_high_pc"]
        hi = hp.value if hp.form in ("DW_FORM_addr", "DW_FORM_addrx", "DW_FORM_addrx1",
                                     "DW_FORM_addrx2", "DW_FORM_addrx3", "DW_FORM_addrx4") \
            else lo + hp.value
        return [(lo, hi)]
    return []


def reference_scopes(di: DWARFInfo) -> list[RefScope]:
    """Every code-carrying subprogram and every inlined subroutine, with its ranges."""
    out: list[RefScope] = []
    for cu in di.iter_CUs():
        lp = di.line_program_for_CU(cu)
        paths = _file_paths(di, cu, lp) if lp is not None else []
        _walk(di, cu, cu.get_top_DIE(), None, out, paths)
    return out


def _walk(di, cu, die, parent: RefScope | None, out: list[RefScope], paths) -> None:
    for child in die.iter_children():
        scope = parent
        if child.tag == "DW_TAG_subprogram" and "DW_AT_declaration" not in child.attributes:
            rng = _die_ranges(di, cu, child)
            if rng:
                n, l = _die_names(child)
                scope = RefScope(child.offset, child.tag, n, l, rng, 0, cu_paths=paths)
                out.append(scope)
        elif child.tag == "DW_TAG_inlined_subroutine":
            n, l = _die_names(child)
            a = child.attributes
            scope = RefScope(child.offset, child.tag, n, l, _die_ranges(di, cu, child),
                             (parent.depth + 1) if parent else 1,
                             a["DW_AT_call_file"].value if "DW_AT_call_file" in a else None,
                             a["DW_AT_call_line"].value if "DW_AT_call_line" in a else 0,
                             a["DW_AT_call_column"].value if "DW_AT_call_column" in a else 0,
                             parent, paths)
            out.append(scope)
        if child.has_children:
            _walk(di, cu, child, scope, out, paths)


def _live(lo: int, hi: int, *, subprogram: bool) -> bool:
    if lo >= TOMBSTONE_MIN or hi <= lo:
        return False
    return not (subprogram and lo == 0)


def reference_frames(di: DWARFInfo, address: int, *, scopes: list[RefScope] | None = None,
                     rows: list[list[tuple]] | None = None) -> list[dict]:
    """Inline chain at a code address, innermost first, as dicts with ``function``
    (DW_AT_name), ``linkage``, ``file``, ``line``, ``column`` — the naive way."""
    scopes = reference_scopes(di) if scopes is None else scopes
    rows = reference_line_rows(di) if rows is None else rows
    best = None
    for s in scopes:
        sub = s.tag == "DW_TAG_subprogram"
        if not any(_live(lo, hi, subprogram=sub) and lo <= address < hi for lo, hi in s.ranges):
            continue
        if sub and s.parent is None and best is not None and best.depth == 0:
            # two subprograms: the smaller one wins (formats.md §6.4)
            if _size(s) >= _size(best):
                continue
        if best is None or s.depth >= best.depth:
            best = s
    row = None
    for cu_rows in rows:
        seq: list[tuple] = []
        for r in cu_rows:
            seq.append(r)
            if not r[4]:
                continue
            start = seq[0][0]
            if 0 < start < TOMBSTONE_MIN and start <= address < r[0]:
                cand = [x for x in seq[:-1] if x[0] <= address]
                if cand:
                    row = cand[-1]
            seq = []
    chain = []
    node = best
    file = row[1] if row else None
    line = row[2] if row else None
    col = row[3] if row else None
    while node is not None:
        chain.append({"function": node.name, "linkage": node.linkage, "file": file,
                      "line": line, "column": col})
        if node.tag == "DW_TAG_inlined_subroutine":
            paths = node.cu_paths or []
            cf = node.call_file
            file = paths[cf] if cf is not None and cf < len(paths) else None
            line, col = node.call_line, node.call_column
        node = node.parent
    return chain


def _size(s: RefScope) -> int:
    return sum(hi - lo for lo, hi in s.ranges)
