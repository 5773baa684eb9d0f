"""Linux perf map files (``/tmp/perf-PID.map``) as written by WAMR ``--enable-linux-perf``.

Format (formats.md §4.5): one ``<start-hex> <size-hex> <symbol>`` line per function, where
WAMR's symbols are ``aot_func#N`` or ``[module]#aot_func#N`` (N = AOT index, imports
excluded). Other JIT writers (V8 ``--perf-basic-prof``) put arbitrary names there; those are
kept as plain symbols. Contract: :func:`parse_perf_map` never raises on a damaged line; it
skips it and records a note naming the line; a file with no usable line raises
:class:`~wasmprof.errors.LogFormatError`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from wasmprof.errors import LogFormatError

# ``aot_func#N`` / ``aot_func_internal#N`` with an optional ``[module]#`` prefix.
AOT_SYMBOL = re.compile(r"^(?:\[(?P<module>[^\]]*)\]#)?aot_func(?P<internal>_internal)?#(?P<n>\d+)$")
_PID_IN_NAME = re.compile(r"perf-(\d+)\.map$")


@dataclass(frozen=True, slots=True)
class PerfMapEntry:
    start: int
    size: int
    symbol: str
    aot_index: int | None = None     # N of ``aot_func#N``
    module: str | None = None        # ``[module]#`` prefix when WAMR had a module name

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class PerfMap:
    """Entries sorted by start address; ``lookup`` finds the entry containing an address."""

    entries: list[PerfMapEntry] = field(default_factory=list)
    source: str | None = None
    pid: int | None = None
    notes: list[str] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.entries.sort(key=lambda e: e.start)
        self._starts = [e.start for e in self.entries]

    def segments(self) -> list[list[int]]:
        """Entry indexes per loaded AOT module: WAMR writes one module's ``aot_func#0..K-1``
        contiguously, so a run restarts at ``aot_func#0`` (or where the ``[module]#``
        prefix changes). Non-AOT entries are in no segment."""
        segs: list[list[int]] = []
        prev: PerfMapEntry | None = None
        for i, e in enumerate(self.entries):
            if e.aot_index is None:
                prev = None
                continue
            if prev is None or e.aot_index == 0 or e.module != prev.module \
                    or e.aot_index != prev.aot_index + 1:
                segs.append([])
            segs[-1].append(i)
            prev = e
        return segs

    def set_module(self, indexes: list[int], module: str) -> None:
        """Name the module of the given entries (a segment matched to a loaded module)."""
        for i in indexes:
            e = self.entries[i]
            self.entries[i] = PerfMapEntry(e.start, e.size, e.symbol, e.aot_index, module)

    def lookup(self, address: int) -> tuple[PerfMapEntry, int] | None:
        """The entry whose ``[start, start+size)`` holds ``address`` and the offset into it."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        e = self.entries[i]
        if address >= e.end:
            return None
        return e, address - e.start

    def by_symbol(self, symbol: str) -> PerfMapEntry | None:
        for e in self.entries:
            if e.symbol == symbol:
                return e
        return None


def parse_perf_map(text: str, source: str = "<perf map>") -> PerfMap:
    entries: list[PerfMapEntry] = []
    notes: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        try:
            if len(parts) != 3:
                raise ValueError
            start = int(parts[0], 16)
            size = int(parts[1], 16)
        except ValueError:
            notes.append(f"{source}:{lineno}: skipped a line that is not '<start> <size> <symbol>'")
            continue
        symbol = parts[2].strip()
        m = AOT_SYMBOL.match(symbol)
        entries.append(PerfMapEntry(start, size, symbol,
                                    int(m["n"]) if m else None, m["module"] if m else None))
    if not entries:
        raise LogFormatError("no perf map entries", source=source,
                             expected="lines '<start-hex> <size-hex> <symbol>'")
    pid_match = _PID_IN_NAME.search(source)
    return PerfMap(entries, source=source, pid=int(pid_match[1]) if pid_match else None, notes=notes)


def read_perf_map(path: str | Path) -> PerfMap:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LogFormatError(f"cannot read perf map: {e.strerror}", source=str(p)) from e
    return parse_perf_map(data.decode("utf-8", "replace"), source=str(p))


def pid_of_map_path(path: str) -> int | None:
    m = _PID_IN_NAME.search(path)
    return int(m[1]) if m else None
