"""One module's DWARF, decoded lazily and cached on disk as an :class:`IndexBlock`.

:class:`ModuleDebug` answers code-address lookups. It first tries the on-disk index
(``load``: milliseconds). Without one, a small job (:meth:`ensure` with few addresses, at
once or one by one) decodes only what its addresses need: per covering unit a cheap walk
lists the subprograms' ranges (:meth:`DwarfReader.subprogram_directory`) and the line
sequences' starts (:meth:`DwarfReader.line_directory`), then only the covering
subprogram subtrees and line sequences are decoded into a partial block that answers
those addresses exactly like the complete index (checked in
``tests/test_addr2line_dwarf.py``); partial work is not cached. A large job (or
:meth:`build_full`) decodes everything and writes the index for next time, and so does a
job asking one address at a time once rebuilding partial blocks has cost about as much.

Known limits of the partial path (malformed DWARF only; compilers do not emit it): an
inlined subroutine whose range lies outside its subprogram's, or one outside any
code-carrying subprogram, is not seen; line sequences are checked for overlap with their
predecessor only (others overlapping further back are not detected).
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

from typing import TYPE_CHECKING

from wasmprof.addr2line.bulk import paused_gc
from wasmprof.addr2line.hygiene import CodeLayout, sequence_live
from wasmprof.addr2line.index import IndexBlock, build_block, index_path, load_index, save_index

if TYPE_CHECKING:            # the decoder is imported when DWARF is decoded, not for lookups
    from wasmprof.addr2line.fastdwarf import DwarfReader, DwarfSections, LineTable, Unit, \
        UnitScopes

FULL_BUILD_THRESHOLD = 64     # more distinct addresses in one call: decode everything
PARTIAL_ADDRESS_LIMIT = 160   # more distinct addresses asked in all: decode everything
PARTIAL_WORK_MIN = 8192       # partial-block work (nodes + rows/4) always allowed


def _merge_scopes(unit_index: int, parts: list[UnitScopes]) -> UnitScopes:
    """Concatenate subtree decodes (in DIE order) into one unit's scopes."""
    from wasmprof.addr2line.fastdwarf import UnitScopes
    if len(parts) == 1:
        return parts[0]
    out = UnitScopes(unit_index)
    for p in parts:
        base = len(out.parent)
        out.parent.extend(q + base if q >= 0 else q for q in p.parent)
        out.kind.extend(p.kind)
        out.ranges.extend(p.ranges)
        out.call.extend(p.call)
        out.origin.extend(p.origin)
        out.decl.extend(p.decl)
        out.decls.update(p.decls)
    return out


def dwarf_hash(data: dict[str, bytes]) -> str:
    """Digest of DWARF sections ``{name: bytes}`` (what an index is valid for)."""
    h = hashlib.sha256()
    for name in sorted(data):
        h.update(name.encode() + b"\0" + len(data[name]).to_bytes(8, "little"))
        h.update(data[name])
    return h.hexdigest()


def _line_table(files: list[str]) -> LineTable:
    """A line table with no sequences (call/declaration files still name its entries)."""
    from wasmprof.addr2line.fastdwarf import LineTable
    return LineTable(files, [])


class ModuleDebug:
    """Lookups over the DWARF of one Wasm module (``wasm``: a ``WasmBinary`` with DWARF).
    The cached index is read when :attr:`block` or :attr:`complete` is first asked."""

    def __init__(self, wasm, identity: str, cache_root: Path | None,
                 layout: CodeLayout | None = None) -> None:
        self._wasm = wasm
        self._sections: DwarfSections | None = None
        # function bodies for the range hygiene (the module's own, or those of the module
        # a DWARF-only companion describes)
        self.layout = layout if layout is not None else CodeLayout.of_wasm(wasm)
        self.identity = identity
        self.hash = dwarf_hash({k: v[1] for k, v in wasm.dwarf_sections.items()})
        self.path = index_path(cache_root, identity, self.hash) if cache_root else None
        self._block: IndexBlock | None = None
        self._complete = False
        self._on_disk: bool | None = None    # None: the cached index not looked at yet
        self.saved = False
        self._reader: DwarfReader | None = None
        self._asked: set[int] = set()     # addresses the partial block answers for
        self._partial_work = 0                 # nodes + rows/4 built into partial blocks
        self._dirs: dict[int, tuple] = {}      # unit -> (subprogram dir, line dir)
        self._subtrees: dict[int, tuple[UnitScopes, int]] = {}
        self._lines: dict[int, LineTable | None] = {}
        self._seqs: dict[tuple[int, int], list] = {}
        self._units_of: dict[int, frozenset[int]] = {}
        self._unit_spans: tuple | None = None
        self._lock = threading.RLock()      # one Resolver may serve several threads

    # -- the cached index, read on first use -------------------------------------------
    def _disk(self) -> None:
        if self._on_disk is None:
            with self._lock:
                if self._on_disk is None:
                    blk = load_index(self.path, self.identity, self.hash) \
                        if self.path is not None and not self._complete else None
                    if blk is not None:
                        self._block = blk
                        self._complete = True
                    self._on_disk = blk is not None

    @property
    def block(self) -> IndexBlock | None:
        if self._on_disk is None:
            self._disk()
        return self._block

    @block.setter
    def block(self, value: IndexBlock | None) -> None:
        self._block = value

    @property
    def complete(self) -> bool:
        if self._on_disk is None:
            self._disk()
        return self._complete

    @complete.setter
    def complete(self, value: bool) -> None:
        self._complete = value

    @property
    def loaded_from_disk(self) -> bool:
        if self._on_disk is None:
            self._disk()
        return bool(self._on_disk)

    @property
    def sections(self) -> DwarfSections:
        if self._sections is None:
            from wasmprof.addr2line.fastdwarf import DwarfSections
            self._sections = DwarfSections.from_wasm(self._wasm)
        return self._sections

    @property
    def reader(self) -> DwarfReader:
        if self._reader is None:
            from wasmprof.addr2line.fastdwarf import DwarfReader
            self._reader = DwarfReader(self.sections)
        return self._reader

    # -- decoding ------------------------------------------------------------------------
    def _units_for(self, addresses: Iterable[int]) -> set[int]:
        """Units whose ranges hold one of ``addresses`` (or whose ranges are unknown)."""
        if self._unit_spans is None:
            # every unit range as (lo, hi, unit), by lo; units whose ranges are unknown
            # hold every address
            spans = sorted((lo, hi, u.index) for u in self.reader.units
                           for lo, hi in (u.ranges or ()) if lo < hi)
            widest = 0
            ends = []                       # the furthest end among spans[:i+1]
            for _, hi, _ in spans:
                widest = max(widest, hi)
                ends.append(widest)
            self._unit_spans = (spans, [s[0] for s in spans], ends,
                                frozenset(u.index for u in self.reader.units
                                          if u.ranges is None))
        spans, los, ends, always = self._unit_spans
        need: set[int] = set(always)
        for a in addresses:
            got = self._units_of.get(a)
            if got is None:
                i = bisect_right(los, a)
                hit = set()
                while i > 0 and ends[i - 1] > a:      # spans starting at or before a
                    i -= 1
                    lo, hi, u = spans[i]
                    if a < hi:
                        hit.add(u)
                got = self._units_of[a] = frozenset(hit)
            need |= got
        return need

    def ensure(self, addresses: Iterable[int]) -> None:
        """Make sure every address in ``addresses`` resolves in :attr:`block` as it would
        in the complete index."""
        if self.complete:
            return
        with self._lock, paused_gc():
            self._ensure(set(addresses))

    def _ensure(self, addrs: set[int]) -> None:
        if self.complete or addrs <= self._asked:
            return
        asked = self._asked | addrs
        if len(addrs) > FULL_BUILD_THRESHOLD or len(asked) > PARTIAL_ADDRESS_LIMIT:
            self.build_full()
            return
        if self._partial_work > max(PARTIAL_WORK_MIN,
                                    (len(self.reader.info) + len(self.reader.line)) // 40):
            # asked one by one for long: rebuilding partial blocks now costs more than
            # decoding everything once
            self.build_full()
            return
        self.block = self._partial_block(sorted(asked))
        self._asked = asked
        self._partial_work += len(self.block.node_parent) + len(self.block.row_addr) // 4

    def _partial_block(self, addrs: list[int]) -> IndexBlock:
        """The index restricted to ``addrs``: per covering unit, only the subprogram
        subtrees whose ranges hold one of them and the line sequences that can (see
        :meth:`_pick_sequences`). Lookups at ``addrs`` equal the complete index's."""
        r = self.reader
        units = [r.units[i] for i in sorted(self._units_for(addrs))]
        decoded = {}
        for u in units:
            d = self._dirs.get(u.index)
            if d is None:
                d = self._dirs[u.index] = (sorted(r.subprogram_directory(u)),
                                           r.line_directory(u))
            subs, _ = d
            offs = set()
            for a in addrs:
                for lo, hi, off in subs:
                    if lo > a:
                        break
                    if a < hi:
                        offs.add(off)
            parts = []
            done_to = -1
            for off in sorted(offs):
                if off >= done_to:        # else nested in a subtree already taken
                    sc, done_to = self._subtree(u, off)
                    parts.append(sc)
            scopes = _merge_scopes(u.index, parts)
            decoded[u.index] = (scopes, r.resolve_names(scopes), None)
        lines = self._pick_sequences(units, addrs)
        for u in units:
            sc, names, _ = decoded[u.index]
            lt = lines.get(u.index)
            if lt is None:
                # no sequence needed here, but call and declaration files still name
                # entries of this unit's file table
                ld = self._dirs[u.index][1]
                lt = _line_table(ld.header.files) if ld is not None else None
            decoded[u.index] = (sc, names, lt)
        return build_block(r, units, decoded, self.layout)

    def _subtree(self, unit: Unit, off: int) -> tuple[UnitScopes, int]:
        got = self._subtrees.get(off)
        if got is None:
            from wasmprof.addr2line.fastdwarf import UnitScopes
            sc = UnitScopes(unit.index)
            got = self._subtrees[off] = (sc, self.reader.decode_subprogram(unit, off, sc))
        return got

    def _pick_sequences(self, units: list[Unit], addrs: list[int]) -> dict[int, LineTable]:
        """Line tables holding, per unit, only the sequences the complete index would use
        at ``addrs``: for each address the sequence with the greatest start at or below it
        (and its predecessor, to check they do not overlap). When the directory cannot
        tell (inexact, duplicate starts, a sequence that starts elsewhere than announced,
        overlaps, unordered rows), the units' whole line programs are decoded instead."""
        r = self.reader
        cands = []                    # (start, unit order, sequence number, unit)
        for order, u in enumerate(units):
            ld = self._dirs[u.index][1]
            if ld is None:
                continue
            if not ld.exact:
                return self._whole_lines(units)
            for k, (start, _, _) in enumerate(ld.sequences):
                if start is not None and sequence_live(start, self.layout):
                    cands.append((start, order, k, u))
        cands.sort(key=lambda c: (c[0], c[1]))
        starts = [c[0] for c in cands]
        picks: set[int] = set()
        for a in addrs:
            i = bisect_right(starts, a) - 1
            if i >= 0:
                picks.add(i)
                if i > 0:
                    picks.add(i - 1)
        got: dict[int, tuple] = {}
        for i in sorted(picks):
            start, _, k, u = cands[i]
            seqs = self._seqs.get((u.index, k))
            if seqs is None:
                ld = self._dirs[u.index][1]
                seqs = self._seqs[(u.index, k)] = r.decode_line_sequences(u, ld, [k]).sequences
            if len(seqs) != 1 or seqs[0][0][0] != start or len(seqs[0][0]) < 2 or \
                    seqs[0][0] != sorted(seqs[0][0]):
                return self._whole_lines(units)
            got[i] = seqs[0]
        for i in got:
            if i + 1 in got and (starts[i] == starts[i + 1] or got[i][0][-1] > starts[i + 1]):
                return self._whole_lines(units)
        out: dict[int, LineTable] = {}
        for i in sorted(got):
            u = cands[i][3]
            lt = out.get(u.index)
            if lt is None:
                lt = out[u.index] = _line_table(self._dirs[u.index][1].header.files)
            lt.sequences.append(got[i])
        return out

    def _whole_lines(self, units: list[Unit]) -> dict[int, LineTable]:
        out = {}
        for u in units:
            lt = self._lines.get(u.index)
            if lt is None:
                lt = self._lines[u.index] = self.reader.decode_line_program(u)
            if lt is not None:
                out[u.index] = lt
        return out

    def build_full(self) -> IndexBlock:
        """Decode every unit, build the complete index and write it to the cache."""
        with self._lock, paused_gc():
            return self._build_full()

    def _build_full(self) -> IndexBlock:
        if self.complete and self.block is not None:
            return self.block
        r = self.reader
        units = r.units
        decoded = {}
        for u in units:
            scopes = r.decode_unit(u)
            decoded[u.index] = (scopes, r.resolve_names(scopes), r.decode_line_program(u))
        self.block = build_block(r, units, decoded, self.layout)
        self.complete = True
        self._dirs.clear()
        self._subtrees.clear()
        self._lines.clear()
        self._seqs.clear()
        self._units_of.clear()
        if self.path is not None:
            self.saved = save_index(self.path, self.block, self.identity, self.hash)
        return self.block

    # -- lookups -------------------------------------------------------------------------
    def chain(self, address: int):
        self.ensure((address,))
        return self.block.chain(address) if self.block is not None else []

    def entry_names(self, entry: int) -> tuple[str | None, str | None] | None:
        """(name, linkage name) of the subprogram starting at code offset ``entry``."""
        self.ensure((entry,))
        if self.block is None:
            return None
        node = self.block.subprogram_at_entry(entry)
        if node < 0:
            return None
        return self.block.names(node)
