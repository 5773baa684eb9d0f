"""One module's DWARF, decoded lazily and cached on disk as an :class:`IndexBlock`.

:class:`ModuleDebug` answers code-address lookups. It first tries the on-disk index
(``load``: milliseconds). Without one it decodes only the units whose address ranges cover
the addresses asked (:meth:`ensure`), so a one-crash job on a many-unit module stays
cheap; a large job (or :meth:`build_full`) decodes every unit, and once every unit is
decoded the index is written for next time.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

from wasmprof.addr2line.bulk import paused_gc
from wasmprof.addr2line.fastdwarf import DwarfReader, DwarfSections, Unit
from wasmprof.addr2line.index import (IndexBlock, build_block, index_path, load_index,
                                      save_index)

FULL_BUILD_THRESHOLD = 64     # more distinct addresses than this: decode every unit
MAX_PARTIAL_BUILDS = 4        # partial blocks merged before decoding everything


def dwarf_hash(sections: DwarfSections) -> str:
    h = hashlib.sha256()
    for name in sorted(sections.data):
        h.update(name.encode() + b"\0" + len(sections.data[name]).to_bytes(8, "little"))
        h.update(sections.data[name])
    return h.hexdigest()


class ModuleDebug:
    """Lookups over the DWARF of one Wasm module (``wasm``: a ``WasmBinary`` with DWARF)."""

    def __init__(self, wasm, identity: str, cache_root: Path | None) -> None:
        self.sections = DwarfSections.from_wasm(wasm)
        self.identity = identity
        self.hash = dwarf_hash(self.sections)
        self.path = index_path(cache_root, identity, self.hash) if cache_root else None
        self.block: IndexBlock | None = None
        self.complete = False
        self.loaded_from_disk = False
        self.saved = False
        self._reader: DwarfReader | None = None
        self._decoded: dict[int, tuple] = {}
        self._partial_builds = 0
        self._lock = threading.RLock()      # one Resolver may serve several threads
        if self.path is not None:
            blk = load_index(self.path, identity, self.hash)
            if blk is not None:
                self.block = blk
                self.complete = True
                self.loaded_from_disk = True

    @property
    def reader(self) -> DwarfReader:
        if self._reader is None:
            self._reader = DwarfReader(self.sections)
        return self._reader

    # -- decoding ------------------------------------------------------------------------
    def _units_for(self, addresses: Iterable[int]) -> set[int]:
        units = self.reader.units
        need: set[int] = set()
        for a in addresses:
            for u in units:
                if u.index in need:
                    continue
                if u.ranges is None or any(lo <= a < hi for lo, hi in u.ranges):
                    need.add(u.index)
        return need

    def _decode(self, unit: Unit) -> None:
        if unit.index in self._decoded:
            return
        r = self.reader
        scopes = r.decode_unit(unit)
        names = r.resolve_names(scopes)
        lines = r.decode_line_program(unit)
        self._decoded[unit.index] = (scopes, names, lines)

    def ensure(self, addresses: Iterable[int]) -> None:
        """Make sure every unit covering one of ``addresses`` is in :attr:`block`."""
        if self.complete:
            return
        with self._lock, paused_gc():
            self._ensure(set(addresses))

    def _ensure(self, addrs: set[int]) -> None:
        if self.complete:
            return
        if len(addrs) > FULL_BUILD_THRESHOLD:
            self.build_full()
            return
        need = self._units_for(addrs)
        if self.block is not None and need <= self.block.units:
            return
        units = self.reader.units
        want = need | set(self._decoded)
        # Decoding most of .debug_info anyway (one big unit): build and cache the whole
        # index once instead of re-merging partial blocks as more addresses come.
        share = sum(units[i].end - units[i].offset for i in want)
        # Also when callers keep asking one address at a time (each new unit re-merges
        # the partial block): after a few partial blocks, finish the job once.
        if len(want) == len(units) or share * 2 > max(len(self.reader.info), 1) or \
                self._partial_builds >= MAX_PARTIAL_BUILDS:
            self.build_full()
            return
        self._partial_builds += 1
        for i in need:
            self._decode(units[i])
        have = sorted(self._decoded)
        self.block = build_block(self.reader, [units[i] for i in have], self._decoded)

    def build_full(self) -> IndexBlock:
        """Decode every unit, build the complete index and write it to the cache."""
        with self._lock, paused_gc():
            return self._build_full()

    def _build_full(self) -> IndexBlock:
        if self.complete and self.block is not None:
            return self.block
        units = self.reader.units
        for u in units:
            self._decode(u)
        self.block = build_block(self.reader, units, self._decoded)
        self.complete = True
        self._decoded.clear()
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
