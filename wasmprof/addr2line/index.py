"""The compact, versioned symbolization index of one module's DWARF (think SymCache).

An :class:`IndexBlock` answers "code address -> inline chain + line row" with two binary
searches over flat arrays:

- *segments*: sorted start addresses, each mapped to the innermost scope node covering it
  (the deepest inlined subroutine; between overlapping subprograms the smallest), or -1;
- *nodes*: parent, display name, linkage name, call file/line/column, entry address;
- *line rows*: sorted addresses with file/line/column; a row with file -1 ends a sequence.

Tombstones never win (formats.md §6.4): ranges and line sequences starting at
``>= 0xFFFFFFFE`` are dropped, so are subprograms whose ``low_pc`` is 0 (binaryen ghosts),
empty ranges, declarations, and inlined subroutines of a dropped subprogram.

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

from wasmprof.addr2line.fastdwarf import DwarfReader, LineTable, Unit, UnitScopes

FORMAT_VERSION = 1
MAGIC = b"WPRFIDX\0"
TOMBSTONE_MIN = 0xFFFFFFFE
NO_NODE = -1
END_OF_SEQUENCE = -1

assert array("I").itemsize == 4 and array("i").itemsize == 4, "32-bit array items needed"

_ARRAYS = (("seg_start", "I"), ("seg_node", "i"), ("node_parent", "i"), ("node_name", "i"),
           ("node_raw", "i"), ("node_cfile", "i"), ("node_cline", "I"), ("node_ccol", "I"),
           ("node_lo", "I"), ("row_addr", "I"), ("row_file", "i"), ("row_line", "I"),
           ("row_col", "I"))


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
        hb = json.dumps(header, separators=(",", ":")).encode()
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
                decoded: dict[int, tuple[UnitScopes, list, LineTable | None]]) -> IndexBlock:
    """Merge decoded units (``{unit index: (scopes, names, line table)}``) into one block."""
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
    sequences = []
    dropped = 0
    damaged = 0
    for unit in units:
        scopes, names, lines = decoded[unit.index]
        files = lines.files if lines is not None else []
        file_ids = [intern(f) for f in files]
        base = len(n_parent)
        alive: list[bool] = []
        depth: list[int] = []
        for i, parent in enumerate(scopes.parent):
            kind = scopes.kind[i]
            live = [(lo, hi) for lo, hi in scopes.ranges[i]
                    if lo < TOMBSTONE_MIN and lo < hi <= 0xFFFFFFFF
                    and not (kind == 0 and lo == 0)]
            ok = bool(live) and (parent < 0 or alive[parent])
            alive.append(ok)
            d = 0 if parent < 0 else depth[parent] + 1
            depth.append(d)
            name, linkage = names[i]
            n_parent.append(base + parent if parent >= 0 else -1)
            n_name.append(intern(name))
            n_raw.append(intern(linkage))
            cf, cl, cc = scopes.call[i]
            n_cfile.append(file_ids[cf] if cf is not None and 0 <= cf < len(file_ids) else -1)
            n_cline.append(cl & 0xFFFFFFFF)
            n_ccol.append(cc & 0xFFFFFFFF)
            n_lo.append(min(lo for lo, _ in live) if ok and kind == 0 else 0xFFFFFFFF)
            if ok:
                size = sum(hi - lo for lo, hi in live)
                for lo, hi in live:
                    ranges.append((lo, hi, -d, size, base + i))
            elif scopes.ranges[i]:
                dropped += 1
        if lines is not None:
            for seq in lines.sequences:
                addrs = seq[0]
                if len(addrs) < 2:
                    continue
                start = addrs[0]
                if start == 0 or start >= TOMBSTONE_MIN or addrs[-1] > 0xFFFFFFFF:
                    dropped += 1
                    continue
                if addrs != sorted(addrs):          # garbage: rows must not go backwards
                    damaged += 1
                    continue
                sequences.append((start, addrs[-1], seq, file_ids))
    if dropped:
        block.notes.append(f"{dropped} dead-code scopes/sequences (tombstones, ghosts) ignored")
    if damaged:
        block.notes.append(f"{damaged} line sequences with decreasing addresses ignored")

    # Segments: innermost scope per address (sweep over range boundaries).
    ranges.sort()
    bounds = sorted({r[0] for r in ranges} | {r[1] for r in ranges})
    heap: list[tuple[int, int, int, int]] = []
    i = 0
    nr = len(ranges)
    seg_start, seg_node = block.seg_start, block.seg_node
    last = None
    for x in bounds:
        while i < nr and ranges[i][0] <= x:
            lo, hi, nd, size, node = ranges[i]
            heapq.heappush(heap, (nd, size, node, hi))
            i += 1
        while heap and heap[0][3] <= x:
            heapq.heappop(heap)
        node = heap[0][2] if heap else NO_NODE
        if node != last:
            seg_start.append(x)
            seg_node.append(node)
            last = node

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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(block.to_bytes(identity, dwarf_hash))
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
