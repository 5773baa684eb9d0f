"""The compact, versioned symbolization index of one module's DWARF (think SymCache).

An :class:`IndexBlock` answers "code address -> inline chain + line row" with two binary
searches over flat arrays:

- *segments*: sorted start addresses, each mapped to the innermost scope node covering it
  (the deepest inlined subroutine; between overlapping subprograms the smallest), or -1;
- *nodes*: parent, display name, linkage name, call file/line/column, entry address,
  declaration file/line;
- *line rows*: sorted addresses with file/line/column; a row with file -1 ends a sequence.

Dead and stale ranges never win: :mod:`wasmprof.addr2line.hygiene` decides what is alive
(tombstones, ranges starting at 0, outside every function body or outside the parent
scope are dropped, ranges past their body clipped), and so do declarations and everything
nested in a dropped scope. What was dropped is counted in :attr:`IndexBlock.notes`.

On disk (``$WASMPROF_CACHE_DIR/index/``): ``MAGIC``, a JSON header (format version, module
identity, DWARF hash, array lengths), the arrays' raw bytes and a CRC32 of everything.
:func:`load_index` returns None for a missing, damaged or older-version file; the caller
rebuilds it. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import heapq
import json
import os
import zlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wasmprof.addr2line.crosscheck import llvm_pieces, nested
from wasmprof.addr2line.hygiene import (CLIPPED, TOMBSTONE_MIN, CodeLayout, cap_end_markers,  # noqa: F401
                                        live_ranges, sequence_live)

if TYPE_CHECKING:                      # the decoder is imported only where DWARF is decoded
    from wasmprof.addr2line.fastdwarf import DwarfReader, LineTable, Unit, UnitScopes

FORMAT_VERSION = 2
MAGIC = b"WPRFIDX\0"
NO_NODE = -1
END_OF_SEQUENCE = -1

assert array("I").itemsize == 4 and array("i").itemsize == 4, "32-bit array items needed"

_ARRAYS = (("seg_start", "I"), ("seg_node", "i"), ("node_parent", "i"), ("node_name", "i"),
           ("node_raw", "i"), ("node_cfile", "i"), ("node_cline", "I"), ("node_ccol", "I"),
           ("node_lo", "I"), ("node_hi", "I"), ("node_dfile", "i"), ("node_dline", "I"),
           ("seg_why", "i"), ("ghost_nodes", "i"), ("row_addr", "I"),
           ("row_file", "i"), ("row_line", "I"), ("row_col", "I"))


@dataclass(slots=True)
class IndexBlock:
    """Flat arrays for a set of units (see module doc). ``units``: unit indexes covered."""

    strings: list[str] = field(default_factory=list)
    seg_start: array = field(default_factory=lambda: array("I"))
    seg_node: array = field(default_factory=lambda: array("i"))
    node_parent: array = field(default_factory=lambda: array("i"))
    node_name: array = field(default_factory=lambda: array("i"))
    node_raw: array = field(default_factory=lambda: array("i"))
    node_cfile: array = field(default_factory=lambda: array("i"))
    node_cline: array = field(default_factory=lambda: array("I"))
    node_ccol: array = field(default_factory=lambda: array("I"))
    node_lo: array = field(default_factory=lambda: array("I"))
    node_hi: array = field(default_factory=lambda: array("I"))      # subprograms: end
    seg_why: array = field(default_factory=lambda: array("i"))      # <= -2: ghosts at
    ghost_nodes: array = field(default_factory=lambda: array("i"))  # -2 - why, -1 ends
    node_dfile: array = field(default_factory=lambda: array("i"))   # DW_AT_decl_file
    node_dline: array = field(default_factory=lambda: array("I"))   # DW_AT_decl_line
    row_addr: array = field(default_factory=lambda: array("I"))
    row_file: array = field(default_factory=lambda: array("i"))
    row_line: array = field(default_factory=lambda: array("I"))
    row_col: array = field(default_factory=lambda: array("I"))
    units: frozenset[int] = frozenset()
    notes: list[str] = field(default_factory=list)
    _entry: dict[int, int] | None = None

    # -- lookups -------------------------------------------------------------------------
    def node_at(self, address: int) -> int:
        i = bisect_right(self.seg_start, address) - 1
        return self.seg_node[i] if i >= 0 else NO_NODE

    def row_at(self, address: int) -> int:
        """Index of the line row covering ``address``, or -1."""
        j = bisect_right(self.row_addr, address) - 1
        if j < 0 or self.row_file[j] == END_OF_SEQUENCE:
            return -1
        return j

    def string(self, sid: int) -> str | None:
        return self.strings[sid] if sid >= 0 else None

    def chain(self, address: int) -> list[tuple[str | None, str | None, str | None, int | None,
                                                int | None]]:
        """Inline chain at ``address``, innermost first: (name, linkage name, file, line,
        column); line None means "no line row" and 0 "compiler-generated (line 0)".
        Empty when no live subprogram covers the address."""
        node = self.node_at(address)
        if node < 0:
            return []
        strings = self.strings
        j = self.row_at(address)
        if j >= 0:
            f = self.row_file[j]
            file = strings[f] if f >= 0 else None
            line: int | None = self.row_line[j]
            col: int | None = self.row_col[j]
        else:
            file = line = col = None
        out = []
        parent = self.node_parent
        while node >= 0:
            n = self.node_name[node]
            r = self.node_raw[node]
            out.append((strings[n] if n >= 0 else None, strings[r] if r >= 0 else None,
                        file, line, col))
            p = parent[node]
            if p >= 0:
                cf = self.node_cfile[node]
                file = strings[cf] if cf >= 0 else None
                line = self.node_cline[node]
                col = self.node_ccol[node]
            node = p
        return out

    def subprogram_at_entry(self, entry: int) -> int:
        """Node of the live subprogram whose lowest address is ``entry`` (a function's
        body start as a code offset) or whose range holds it; -1 when none."""
        if self._entry is None:
            self._entry = {}
            for i, lo in enumerate(self.node_lo):
                if lo != 0xFFFFFFFF and self.node_parent[i] < 0:
                    self._entry.setdefault(lo, i)
        n = self._entry.get(entry)
        if n is not None:
            return n
        return NO_NODE

    def names(self, node: int) -> tuple[str | None, str | None]:
        return self.string(self.node_name[node]), self.string(self.node_raw[node])

    # -- (de)serialisation -------------------------------------------------------------
    def to_bytes(self, identity: str, dwarf_hash: str) -> bytes:
        blob = "\0".join(self.strings).encode("utf-8", "surrogatepass")
        header = {"format": FORMAT_VERSION, "identity": identity, "dwarf": dwarf_hash,
                  "strings": len(self.strings), "blob": len(blob), "units": sorted(self.units),
                  "notes": self.notes,
                  "arrays": [[name, code, len(getattr(self, name))] for name, code in _ARRAYS]}
        hb = json.dumps(header).encode()
        parts = [MAGIC, len(hb).to_bytes(4, "little"), hb, blob]
        parts += [getattr(self, name).tobytes() for name, _ in _ARRAYS]
        body = b"".join(parts)
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, data: bytes, identity: str, dwarf_hash: str) -> "IndexBlock | None":
        """The block stored in ``data``, or None when it is damaged, for another module or
        of another format version."""
        try:
            if len(data) < 16 or not data.startswith(MAGIC):
                return None
            body, crc = data[:-4], int.from_bytes(data[-4:], "little")
            if zlib.crc32(body) != crc:
                return None
            hl = int.from_bytes(body[8:12], "little")
            header = json.loads(body[12:12 + hl])
            if header.get("format") != FORMAT_VERSION or header.get("identity") != identity \
                    or header.get("dwarf") != dwarf_hash:
                return None
            pos = 12 + hl
            blob = body[pos:pos + header["blob"]]
            pos += header["blob"]
            strings = blob.decode("utf-8", "surrogatepass").split("\0") if header["strings"] \
                else []
            if len(strings) != header["strings"]:
                return None
            block = cls(strings=strings, units=frozenset(header.get("units", [])),
                        notes=list(header.get("notes", [])))
            for (name, code, n), (want_name, want_code) in zip(header["arrays"], _ARRAYS):
                if name != want_name or code != want_code:
                    return None
                a = array(code)
                a.frombytes(body[pos:pos + 4 * n])
                if len(a) != n:
                    return None
                pos += 4 * n
                setattr(block, name, a)
            if pos != len(body):
                return None
            return block
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None


# -- building ------------------------------------------------------------------------------
def build_block(reader: DwarfReader, units: list[Unit],
                decoded: dict[int, tuple[UnitScopes, list, LineTable | None]],
                layout: CodeLayout | None = None) -> IndexBlock:
    """Merge decoded units (``{unit index: (scopes, names, line table)}``) into one block.
    Ranges and line sequences go through :mod:`wasmprof.addr2line.hygiene` (``layout``: the
    module's function bodies, when known)."""
    block = IndexBlock(units=frozenset(u.index for u in units))
    strings = block.strings
    sid: dict[str, int] = {}

    def intern(s: str | None) -> int:
        if s is None:
            return -1
        i = sid.get(s)
        if i is None:
            i = sid[s] = len(strings)
            strings.append(s)
        return i

    ranges: list[tuple[int, int, int, int, int]] = []   # (lo, hi, -depth, size, node)
    n_parent, n_name, n_raw = block.node_parent, block.node_name, block.node_raw
    n_cfile, n_cline, n_ccol, n_lo = block.node_cfile, block.node_cline, block.node_ccol, \
        block.node_lo
    n_dfile, n_dline, n_hi = block.node_dfile, block.node_dline, block.node_hi
    ghosts: list[tuple[int, int, int, bool]] = []   # (lo, hi, node, end-marker tail?)
    overhangs: list[tuple[int, int, int, int]] = []   # (lo, hi, child, parent)
    readings: list[tuple[int, int, int, int]] = []    # LLVM's: (lo, hi, node, subprogram)
    g_root: list[int] = []                  # node -> its subprogram node
    sequences = []
    dead: dict[str, int] = {}
    dropped_scopes = dropped_seqs = damaged = 0
    for unit in units:
        scopes, names, lines = decoded[unit.index]
        files = lines.files if lines is not None else []
        file_ids = [intern(f) for f in files]
        nfiles = len(file_ids)
        base = len(n_parent)
        root: list[int] = []                 # node -> its (outermost) subprogram node
        root_live: dict[int, list[tuple[int, int]]] = {}   # live subprogram -> its ranges
        depth: list[int] = []
        lives: list[list[tuple[int, int]]] = []
        marked: list[tuple[int, int]] = []
        members: dict[int, list[int]] = {}     # live subprogram -> its scopes, DIE order
        for i, parent in enumerate(scopes.parent):
            kind = scopes.kind[i]
            raw = scopes.ranges[i]
            r = i if parent < 0 else root[parent]
            root.append(r)
            if r in root_live or parent < 0:
                members.setdefault(r, []).append(i)
            clipped: list[int] = []
            if parent < 0:
                live = live_ranges(raw, layout, None, dead, clipped)
                if live:
                    root_live[i] = live
            elif r in root_live:
                live = live_ranges(raw, layout, root_live[r], dead, clipped)
                for glo, ghi in raw:
                    if glo == 0 and ghi > 0:     # a ghost range inside a live function
                        ghosts.extend((max(plo, 1), min(ghi, phi), base + i, False)
                                      for plo, phi in root_live[r] if plo < ghi)
            else:                            # inside a dead subprogram
                live = []
            lives.append(live)
            marked.extend((i, k) for k in clipped)
            d = 0 if parent < 0 else depth[parent] + 1
            depth.append(d)
            name, linkage = names[i][0], names[i][1]
            n_parent.append(base + parent if parent >= 0 else -1)
            n_name.append(intern(name))
            n_raw.append(intern(linkage))
            cf, cl, cc = scopes.call[i]
            n_cfile.append(file_ids[cf] if cf is not None and 0 <= cf < nfiles else -1)
            n_cline.append(cl & 0xFFFFFFFF)
            n_ccol.append(cc & 0xFFFFFFFF)
            df, dl = names[i][2:4] if len(names[i]) >= 4 else (None, 0)
            n_dfile.append(file_ids[df] if df is not None and 0 <= df < nfiles else -1)
            n_dline.append(dl & 0xFFFFFFFF)
            if live and kind == 0:
                n_lo.append(live[0][0] if len(live) == 1 else min(lo for lo, _ in live))
                n_hi.append(live[0][1] if len(live) == 1 else max(hi for _, hi in live))
            else:
                n_lo.append(0xFFFFFFFF)
                n_hi.append(0)
            if not live and raw:
                dropped_scopes += 1
        for lo, hi, node in cap_end_markers(scopes.parent, root, lives, marked):
            ghosts.append((lo, hi, base + node, True))  # the scope may still run there
        g_root.extend(base + r for r in root)
        # functions whose scopes do not nest (binaryen): LLVM's reading of them, and where
        # inlined scopes overhang their caller (binaryen moved code) the chain through
        # them is not trustworthy; a parent that lost ranges itself (ghost [0, x), or none
        # left) does not count (its true ranges are unknown and llvm-symbolizer /
        # wasm-tools report its children's chains). Where scopes nest neither can happen.
        raws = scopes.ranges
        parents = scopes.parent
        for r, nodes in members.items():
            if r not in root_live or len(nodes) == 1:
                continue
            rs = [raws[k] for k in nodes]
            if nested(nodes, rs, parents):
                continue
            for lo, hi, node in llvm_pieces(nodes, rs, root_live[r]):
                readings.append((lo, hi, base + node if node >= 0 else -1, base + r))
            for i in nodes:
                parent = parents[i]
                if parent < 0 or not lives[i] or scopes.kind[parent] != 1 or \
                        not lives[parent] or any(lo == 0 for lo, _ in raws[parent]):
                    continue
                for lo, hi in _outside(lives[i], lives[parent]):
                    overhangs.append((lo, hi, base + i, base + parent))
        for i, live in enumerate(lives):
            if live:
                size = sum(hi - lo for lo, hi in live)
                for lo, hi in live:
                    ranges.append((lo, hi, -depth[i], size, base + i))
        if lines is not None:
            for seq in lines.sequences:
                addrs = seq[0]
                if len(addrs) < 2:
                    continue
                start = addrs[0]
                if not sequence_live(start, layout) or addrs[-1] > 0xFFFFFFFF:
                    dropped_seqs += 1
                    continue
                if addrs != sorted(addrs):          # garbage: rows must not go backwards
                    damaged += 1
                    continue
                sequences.append((start, addrs[-1], seq, file_ids))
    if dropped_scopes or dropped_seqs:
        why = ", ".join(f"{n} {k}" for k, n in sorted(dead.items()) if k != CLIPPED)
        block.notes.append(f"{dropped_scopes} dead-code scopes and {dropped_seqs} line "
                           f"sequences (tombstones, ghosts) ignored" + (f": ranges {why}"
                                                                        if why else ""))
    if dead.get(CLIPPED):
        block.notes.append(f"{dead[CLIPPED]} ranges ending past their function body clipped")
    if damaged:
        block.notes.append(f"{damaged} line sequences with decreasing addresses ignored")

    # Segments: innermost scope per address (sweep over range boundaries). Where ghost
    # ranges of inlined scopes could have been the innermost one, the segment records them
    # (-2 - start of their group in ghost_nodes, a -1-terminated list) for the lookup.
    ranges.sort()
    ghosts.sort()
    overhangs.sort()
    readings.sort()
    bounds = sorted({r[0] for r in ranges} | {r[1] for r in ranges}
                    | {g[0] for g in ghosts} | {g[1] for g in ghosts}
                    | {o[0] for o in overhangs} | {o[1] for o in overhangs}
                    | {e[0] for e in readings} | {e[1] for e in readings})
    heap: list[tuple[int, int, int, int]] = []
    i = g = o = e = 0
    nr, ng, no, ne = len(ranges), len(ghosts), len(overhangs), len(readings)
    active: list[tuple[int, int, int, bool]] = []
    hanging: list[tuple[int, int, int, int]] = []
    reading: list[tuple[int, int, int, int]] = []
    overhang_why: dict[tuple[int, int], int] = {}
    disagree_why: dict[tuple[int, int], int] = {}
    seg_start, seg_node, seg_why = block.seg_start, block.seg_node, block.seg_why
    last = last_why = None
    unsure: dict[int, int] = {}              # ghost nodes seen in some segment
    ghost_nodes = block.ghost_nodes
    groups: dict[tuple[int, ...], int] = {}
    for x in bounds:
        while i < nr and ranges[i][0] <= x:
            lo, hi, nd, size, node = ranges[i]
            heapq.heappush(heap, (nd, size, node, hi))
            i += 1
        while heap and heap[0][3] <= x:
            heapq.heappop(heap)
        node = heap[0][2] if heap else NO_NODE
        why = -1
        if no:
            while o < no and overhangs[o][0] <= x:
                hanging.append(overhangs[o])
                o += 1
            hanging = [h for h in hanging if h[1] > x]
            for _, _, child, par in hanging:
                if node >= 0 and _encloses(n_parent, node, child):
                    key = (child, par)
                    why = overhang_why.get(key, -1)
                    if why < 0:
                        cn = strings[n_name[child]] if n_name[child] >= 0 else "?"
                        pn = strings[n_name[par]] if n_name[par] >= 0 else "?"
                        why = overhang_why[key] = intern(
                            f"in the DWARF the inlined {cn} runs past the code of {pn} it is "
                            "inlined into (binaryen moved code): the inline chain here is "
                            "unsure")
                    break
        if ne:
            # where LLVM's reading of the function's scopes names another scope
            while e < ne and readings[e][0] <= x:
                reading.append(readings[e])
                e += 1
            reading = [r for r in reading if r[1] > x]
            if node >= 0 and why == -1:
                top = g_root[node]
                theirs = next((r[2] for r in reading if r[3] == top), node)
                if theirs != node and not (theirs < 0 and node == top):
                    key = (node, theirs)
                    why = disagree_why.get(key, -1)
                    if why < 0:
                        why = disagree_why[key] = intern(_disagreement(
                            strings, n_name, node, theirs))
        if ng:
            while g < ng and ghosts[g][0] <= x:
                active.append(ghosts[g])
                g += 1
            active = [a for a in active if a[1] > x]
            # a cut-off end-marker tail is unsure whatever the line: stored as -2 - node
            hits = tuple(sorted({-2 - gnode if tail else gnode for _, _, gnode, tail in active
                                 if node >= 0 and _encloses(n_parent, n_parent[gnode], node)}))
            if hits and why == -1:
                at = groups.get(hits)
                if at is None:
                    at = groups[hits] = len(ghost_nodes)
                    ghost_nodes.extend(hits)
                    ghost_nodes.append(-1)
                why = -2 - at
                unsure.update(dict.fromkeys(hits, 1))
        if node != last or why != last_why:
            seg_start.append(x)
            seg_node.append(node)
            seg_why.append(why)
            last = node
            last_why = why
    if disagree_why:
        block.notes.append(f"{len(disagree_why)} inline scopes that do not nest, read "
                           "differently by LLVM's range map: their chains are unsure")
    if overhang_why:
        block.notes.append(f"{len(overhang_why)} inlined scopes overhang their caller: "
                           "their addresses there are resolved as unsure")
    if unsure:
        block.notes.append(f"{len(unsure)} inlined scopes with ghost ranges [0, ...) inside "
                           "live functions: where their source lines show, the chain is unsure")

    # Line rows: live sequences sorted by start; overlapping ones keep the first.
    sequences.sort(key=lambda s: s[0])
    r_addr, r_file, r_line, r_col = block.row_addr, block.row_file, block.row_line, \
        block.row_col
    prev_end = -1
    overlaps = 0
    for start, end, (addrs, files, lns, cols), file_ids in sequences:
        if start < prev_end:
            overlaps += 1
            continue
        nf = len(file_ids)
        r_addr.extend(addrs)
        r_file.extend([file_ids[f] if 0 <= f < nf else (-1 if f == -1 else -2) for f in files])
        r_line.extend([ln & 0xFFFFFFFF for ln in lns])
        r_col.extend([c & 0xFFFFFFFF for c in cols])
        prev_end = end
    if overlaps:
        block.notes.append(f"{overlaps} overlapping line sequences ignored")
    return block


def _disagreement(strings: list[str], names, ours: int, theirs: int) -> str:
    def name(n: int) -> str:
        return strings[names[n]] if n >= 0 and names[n] >= 0 else "no scope"
    return (f"the inline scopes here do not nest (binaryen moved code): the innermost live "
            f"scope is {name(ours)} but LLVM's range map (llvm-symbolizer) reads "
            f"{name(theirs)}: the inline chain is unsure")


def _outside(ranges: list[tuple[int, int]], cover: list[tuple[int, int]]
             ) -> list[tuple[int, int]]:
    """The parts of ``ranges`` not covered by ``cover``."""
    out = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for clo, chi in cover:
            nxt = []
            for a, b in pieces:
                if chi <= a or b <= clo:
                    nxt.append((a, b))
                    continue
                if a < clo:
                    nxt.append((a, clo))
                if chi < b:
                    nxt.append((chi, b))
            pieces = nxt
        out.extend(pieces)
    return out


def _encloses(parent, inner: int, outer: int) -> bool:
    """``outer`` is ``inner`` or one of its enclosing scopes."""
    while inner >= 0:
        if inner == outer:
            return True
        inner = parent[inner]
    return False


# -- cache files ---------------------------------------------------------------------------
def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("WASMPROF_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "wasmprof"


def index_path(root: Path, identity: str, dwarf_hash: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in identity)[:120]
    return root / "index" / f"{safe}.{dwarf_hash[:16]}.v{FORMAT_VERSION}.idx"


def load_index(path: Path, identity: str, dwarf_hash: str) -> IndexBlock | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return IndexBlock.from_bytes(data, identity, dwarf_hash)


def save_index(path: Path, block: IndexBlock, identity: str, dwarf_hash: str) -> bool:
    """Write atomically; returns False (and leaves no partial file) when the disk refuses."""
    return write_atomic(path, block.to_bytes(identity, dwarf_hash))


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename: False (and no
    partial file) when the disk refuses. One writer per derived cache file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
