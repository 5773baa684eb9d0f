"""Linux perf map files (``/tmp/perf-PID.map``) and the Wasm symbols JIT/AOT runtimes write.

Format: one ``<start-hex> <size-hex> <symbol>`` line per code range (``0x`` prefix optional:
Wasmtime writes it, WAMR and V8 do not). Symbols that name Wasm code
(:func:`classify_symbol`, also used for the symbols ``perf script`` prints):

- WAMR ``--enable-linux-perf`` (formats.md §4.5): ``aot_func#N`` or ``[module]#aot_func#N``
  (N = AOT index, imports excluded); ``aot_func_internal#N`` in wamrc objects.
- Wasmtime ``profiler=perfmap``: ``wasm[M]::function[N]`` or ``wasm[M]::function[N]::name``
  (N = Wasm function index, imports included). Wasmtime 50 writes the bare (demangled)
  name when the module has one; such entries are Wasm functions only because the map is a
  Wasmtime map (it holds ``wasm[M]::…_trampoline`` entries): see :attr:`PerfMap.runtime`.
  Trampolines are runtime glue, not module functions.
- V8 ``--perf-basic-prof`` (node 20): ``JS:name-N-tier`` (``JS:mix-2-turbofan``,
  ``JS:wasm-function[3]-3-liftoff`` when unnamed; N includes imports; older prefixes
  ``Function:``/``LazyCompile:`` and ``*``/``~`` markers accepted); ``wasm-to-js``/``js-to-wasm``
  wrappers are glue.

Anything else (JS, Java, ...) is kept as a plain symbol. Contract: :func:`parse_perf_map`
never raises on a damaged line; it skips it and records a note naming the line; a file with
no usable line raises :class:`~wasmprof.errors.LogFormatError`. Module names from the file
have control characters replaced (they are attacker-controlled and never start with NUL, which
:mod:`wasmprof.profiles` uses to mark segments checked against no module).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from wasmprof.errors import LogFormatError

# ``aot_func#N`` / ``aot_func_internal#N`` with an optional ``[module]#`` prefix.
AOT_SYMBOL = re.compile(r"^(?:\[(?P<module>[^\]]*)\]#)?aot_func(?P<internal>_internal)?#(?P<n>\d+)$")
WASMTIME_SYMBOL = re.compile(r"^wasm\[(?P<m>\d+)\]::function\[(?P<n>\d+)\](?:::(?P<name>.+))?$")
WASMTIME_GLUE = re.compile(r"^(?:wasm\[\d+\]|signatures\[\d+\])::\w*trampoline\w*(?:\[\d+\])?$")
V8_SYMBOL = re.compile(r"^(?:JS|Function|LazyCompile|Wasm):[*~^]?(?P<name>.+)-(?P<n>\d+)-"
                       r"(?P<tier>liftoff|turbofan|interpreter|none)(?:-debug)?$")
V8_OLD_SYMBOL = re.compile(r"^(?:JS|Function|LazyCompile|Wasm):[*~^]?wasm-function\[(?P<n>\d+)\]$")
_V8_UNNAMED = re.compile(r"^wasm-function\[\d+\]$")
_V8_GLUE = ("wasm-to-js", "js-to-wasm", "wasm-to-capi", "c-wasm-entry")
_PID_IN_NAME = re.compile(r"perf-(\d+)\.map(?:\.gz)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class WasmSymbol:
    """What a JIT/AOT symbol says about the Wasm function it names."""

    runtime: str                     # "wamr" | "wasmtime" | "v8"
    aot_index: int | None = None     # WAMR: N of aot_func#N (imports excluded)
    func_index: int | None = None    # Wasmtime/V8: Wasm function index (imports included)
    name: str | None = None          # the function name the runtime printed, if any
    module: str | None = None        # WAMR ``[module]#`` prefix
    internal: bool = False           # aot_func_internal#N


def classify_symbol(symbol: str) -> WasmSymbol | None:
    """The Wasm function a perf-map/perf-script symbol names, or None (not Wasm code, or
    runtime glue such as trampolines and JS↔Wasm wrappers)."""
    if not symbol:
        return None
    c = symbol[0]
    if c == "a" or c == "[":
        if (m := AOT_SYMBOL.match(symbol)) is not None:
            module = m["module"]
            return WasmSymbol("wamr", aot_index=int(m["n"]),
                              module=_CONTROL.sub("?", module) if module is not None else None,
                              internal=m["internal"] is not None)
        return None
    if c == "w":
        if (m := WASMTIME_SYMBOL.match(symbol)) is not None:
            return WasmSymbol("wasmtime", func_index=int(m["n"]), name=m["name"])
        return None
    if symbol.startswith(("JS:", "Function:", "LazyCompile:", "Wasm:")):
        if (m := V8_SYMBOL.match(symbol)) is not None:
            name = m["name"]
            if name.startswith(_V8_GLUE):
                return None
            return WasmSymbol("v8", func_index=int(m["n"]),
                              name=None if _V8_UNNAMED.match(name) else name)
        if (m := V8_OLD_SYMBOL.match(symbol)) is not None:
            return WasmSymbol("v8", func_index=int(m["n"]))
    return None


def is_runtime_glue(symbol: str) -> bool:
    """Wasmtime trampolines (the map's signature of a Wasmtime perf map)."""
    return symbol[:1] in ("w", "s") and WASMTIME_GLUE.match(symbol) is not None


@dataclass(frozen=True, slots=True)
class PerfMapEntry:
    start: int
    size: int
    symbol: str
    aot_index: int | None = None     # N of ``aot_func#N``
    module: str | None = None        # ``[module]#`` prefix, or the module a segment was matched to
    wasm: WasmSymbol | None = None   # what the symbol says about Wasm code (any runtime)

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class PerfMap:
    """Entries sorted by start address; ``lookup`` finds the entry containing an address.

    ``runtime`` is ``"wamr"``, ``"wasmtime"`` or ``"v8"`` when the map's Wasm symbols (or, for
    Wasmtime, its trampolines) say which runtime wrote it, else None. In a Wasmtime map every
    entry that is not a trampoline is a Wasm function (``entry.wasm`` set, by name when
    Wasmtime printed only the name)."""

    entries: list[PerfMapEntry] = field(default_factory=list)
    source: str | None = None
    pid: int | None = None
    notes: list[str] = field(default_factory=list)
    runtime: str | None = None
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.entries.sort(key=lambda e: e.start)
        self._starts = [e.start for e in self.entries]
        if self.runtime is None:
            kinds = {e.wasm.runtime for e in self.entries if e.wasm is not None}
            if any(is_runtime_glue(e.symbol) for e in self.entries):
                kinds.add("wasmtime")
            self.runtime = kinds.pop() if len(kinds) == 1 else None
        if self.runtime == "wasmtime":
            for i, e in enumerate(self.entries):
                if e.wasm is None and not is_runtime_glue(e.symbol):
                    self.entries[i] = PerfMapEntry(e.start, e.size, e.symbol, None, e.module,
                                                   WasmSymbol("wasmtime", name=e.symbol))

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
            self.entries[i] = PerfMapEntry(e.start, e.size, e.symbol, e.aot_index, module, e.wasm)

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
            if start < 0 or size < 0:
                raise ValueError
        except ValueError:
            notes.append(f"{source}:{lineno}: skipped a line that is not '<start> <size> <symbol>'")
            continue
        symbol = parts[2].strip()
        w = classify_symbol(symbol)
        entries.append(PerfMapEntry(start, size, symbol, w.aot_index if w else None,
                                    w.module if w else None, w))
    if not entries:
        raise LogFormatError("no perf map entries", source=source,
                             expected="lines '<start-hex> <size-hex> <symbol>'")
    pid_match = _PID_IN_NAME.search(source)
    return PerfMap(entries, source=source, pid=int(pid_match[1]) if pid_match else None, notes=notes)


def read_perf_map(path: str | Path) -> PerfMap:
    """A perf map file (gzip-compressed accepted). LogFormatError names the file."""
    import gzip
    import zlib
    p = Path(path)
    try:
        data = p.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except OSError as e:
        raise LogFormatError(f"cannot read perf map: {e.strerror}", source=str(p)) from e
    except (EOFError, zlib.error) as e:
        raise LogFormatError(f"damaged gzip data: {e}", source=str(p)) from e
    return parse_perf_map(data.decode("utf-8", "replace"), source=str(p))


def pid_of_map_path(path: str) -> int | None:
    m = _PID_IN_NAME.search(path)
    return int(m[1]) if m else None
