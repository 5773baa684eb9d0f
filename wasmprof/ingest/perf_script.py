"""``perf script`` text → sample records / :class:`~wasmprof.model.Profile` (one per event).

A sample is a header line followed by its call chain, one frame per line, leaf first, then a
blank line::

    iwasm 20737  1849.917999:    2004008 cpu-clock:
            41399708  aot_func#4+0x34 (/tmp/perf-20737.map)
               2fb0f invoke_native_with_hw_bound_check+0x1cf (/usr/local/bin/iwasm)

**Headers.** perf prints the fields it was asked for (``-F``) in a fixed order, each optional:
``comm [pid/]tid [cpu] time: [period] event: [rest]``; without a time field
(``java 19983 cycles:``) the event ends the header. ``comm`` may contain spaces
(``V8 WorkerThread``); a ``rest`` that is a frame (no call chains: ``perf script -F ...,ip,sym``)
makes every line of the block its own sample; any other ``rest`` (tracepoint fields) is ignored.
Headers that perf wrote without a time keep ``timestamp=None``.

**Frames** (``ip [sym[+0xoff]] [(dso)]``; lines whose first word is not hex, such as
``-F +srcline`` source lines, are skipped and counted) become
:class:`~wasmprof.model.RawFrame` (``index`` is 0 for the leaf and 1 for every caller: frames
are shared between stacks):

- WAMR ``aot_func#N+0xOFF`` / ``[mod]#aot_func#N+0xOFF``, or a bare address that a given perf
  map covers: ``space=perf, aot_index=N, offset=OFF`` (callers, which hold return addresses,
  are looked up in the map at ``ip - 1`` so a call that ends a function is not attributed to
  the next one);
- Wasmtime ``wasm[M]::function[N]::name`` and V8 ``JS:name-N-tier`` (also from a given perf
  map, where a Wasmtime map's bare names count too): ``space=perf, func_index=N`` (imports
  included), ``printed_name`` = the function name the runtime printed, ``offset`` = the native
  offset into the function;
- anything else is a host frame (``native=True``, ``printed_name`` = perf's symbol without
  ``+0x…``, or None for ``[unknown]``; ``module`` = perf's DSO, kept for unknown symbols so they
  show as ``[libc.so.6]``; ``kernel=True`` for ``[kernel.kallsyms]``, ``[module]``, vmlinux
  frames), except a bare address in anonymous memory (``[unknown]`` DSO) that no map covers:
  ``space=native, native=False``, no name (maybe JIT/AOT code; status ``unknown`` later).

**Records.** :meth:`PerfScriptReader.records` yields one tuple per sample,
``(event, period, timestamp, thread, labels, stack, callers)``: ``event`` the event name (""
when perf printed none), ``period`` an int or None, ``thread`` ``"comm/tid"``, ``labels`` a
shared dict (``{"pid": "27409"}`` when perf printed ``pid/tid``; treat it as read-only),
``stack`` a tuple of RawFrames leaf first, ``callers`` the interned tuple ``stack[1:]`` when
the call chain was seen before (or None). Parsing is streamed in bounded chunks; headers are
split at the time field into a per-thread prefix and a per-event suffix (both cached), frame
lines and whole caller chains are interned (bounded caches: identical text parses once;
chain interning switches itself off while callers keep varying), so memory does not grow
with the input.
Damaged blocks (no header) are skipped and counted; a block longer than :data:`MAX_BLOCK`
raises (not perf script output).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_, itemgetter
from typing import Any, BinaryIO, NamedTuple

from wasmprof.errors import LogFormatError
from wasmprof.ingest.perf_map import AOT_SYMBOL, PerfMap, classify_symbol, pid_of_map_path
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

# comm [pid/]tid [cpu] time: [period] [event:] [rest]
_HEADER_TIMED = re.compile(
    rb"^[ \t]*(?:(?P<comm>\S.*?)[ \t]+)??(?:(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)[ \t]+)?"
    rb"(?:\[(?P<cpu>\d+)\][ \t]+)?(?P<time>\d+\.\d+):(?:[ \t]+(?P<period>\d+))?"
    rb"(?:[ \t]+(?P<event>\S+):)?(?:[ \t]+(?P<rest>.*?))?[ \t]*$")
# comm [pid/]tid [cpu] [period] event: [rest]   (no time field)
_HEADER_UNTIMED = re.compile(
    rb"^[ \t]*(?:(?P<comm>\S.*?)[ \t]+)??(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)"
    rb"(?:[ \t]+\[(?P<cpu>\d+)\])?(?P<time>(?!))?(?:[ \t]+(?P<period>\d+))?[ \t]+(?P<event>\S+):"
    rb"(?:[ \t]+(?P<rest>.*?))?[ \t]*$")
_HEX = re.compile(r"^(?:0x)?[0-9a-fA-F]+$")
_CHUNK = 1 << 20        # read size: small enough that chunk copies stay a few MB
MAX_BLOCK = 64 << 20     # one line's text; more means this is not perf script output
_LONG_BLOCK = 4 << 20    # text without a blank line that is split at line ends
CACHE_LIMIT = 50_000     # interned frame lines before the caches are dropped (bounded memory)
CHAIN_BYTES = 8 << 20    # interned caller-chain text (all contexts) before it is dropped
_KERNEL_HALF = 0xFFFF800000000000
_NOT_KERNEL = ("[unknown]", "[vdso]", "[vsyscall]", "[vectors]", "[heap]", "[stack]",
               "[anon]", "[uprobes]", "[jit]")

PerfRecord = tuple  # (event, period, timestamp, thread, labels, stack, callers): module doc


@dataclass(slots=True)
class EventStats:
    samples: int = 0
    period: int = 0                   # summed periods (samples without one count 1)
    with_period: int = 0              # samples that printed a period
    first_header: str | None = None


@dataclass(slots=True)
class PerfScriptStats:
    samples: int = 0
    skipped_blocks: int = 0
    skipped_lines: int = 0            # lines in a call chain that are not frames (srcline...)
    distinct_lines: int = 0           # frame lines parsed (cache misses)
    map_lookups: int = 0
    caller_reattributed: int = 0      # ip-1 fell into another function than perf's symbol
    untimed: int = 0                  # samples whose header had no time field
    events: dict[str, EventStats] = field(default_factory=dict)
    first_bad: str | None = None
    notes: list[str] = field(default_factory=list)

    def finish(self) -> None:
        """Fill ``notes`` from the counters (called at the end of a pass)."""
        notes = []
        if self.skipped_blocks:
            notes.append(f"{self.skipped_blocks} block(s) without a perf sample header skipped"
                         + (f" (first: {self.first_bad!r})" if self.first_bad else ""))
        if self.skipped_lines:
            notes.append(f"{self.skipped_lines} call-chain line(s) that are not frames skipped "
                         "(source lines of -F +srcline, or damage)")
        if self.caller_reattributed:
            notes.append(f"{self.caller_reattributed} caller frame(s) re-attributed by the "
                         "perf map at ip-1 (return address past the end of perf's symbol)")
        if self.untimed and self.untimed < self.samples:
            notes.append(f"{self.untimed} sample header(s) without a time field")
        if len(self.events) > 1:
            notes.append("events in the recording: " + ", ".join(
                f"{name or '(none)'} ({e.samples:,} samples)" for name, e in self.events.items()))
        self.notes = notes


class _MapSet:
    """Perf maps by pid; chooses the map for a frame."""

    def __init__(self, maps: Iterable[PerfMap]) -> None:
        self.maps = list(maps)
        self.by_pid = {m.pid: m for m in self.maps if m.pid is not None}

    def for_frame(self, dso: str | None, pid: int | None, address: int) -> PerfMap | None:
        if not self.maps:
            return None
        if dso and (p := pid_of_map_path(dso)) is not None and p in self.by_pid:
            return self.by_pid[p]
        if pid is not None and pid in self.by_pid:
            return self.by_pid[pid]
        if len(self.maps) == 1:
            return self.maps[0]
        holders = [m for m in self.maps if m.lookup(address)]
        return holders[0] if len(holders) == 1 else None


def split_frame_line(text: str) -> tuple[int, str, str | None] | None:
    """``'41399708  aot_func#4+0x34 (/tmp/perf-1.map)'`` → (ip, ``'aot_func#4+0x34'``, dso);
    None when the line is not a frame (its first word is not hex). The DSO is the last
    balanced ``(…)`` group preceded by a space (``(/tmp/x (deleted))`` is one DSO; a symbol's
    own argument list is not a DSO)."""
    text = text.strip()
    head, _, rest = text.partition(" ")
    if not head or _HEX.match(head) is None:
        if head.endswith(":") and _HEX.match(head[:-1]):     # "ip:" in some perf builds
            head = head[:-1]
        else:
            return None
    ip = int(head, 16)
    rest = rest.strip()
    dso = None
    if rest.endswith(")"):
        k = rest.rfind(" (")
        if k >= 0 and "(" not in rest[k + 2:] and ")" not in rest[k + 2:-1]:
            return ip, rest[:k].rstrip(), rest[k + 2:-1]       # the usual case
        depth = 0
        for k in range(len(rest) - 1, -1, -1):
            c = rest[k]
            if c == ")":
                depth += 1
            elif c == "(":
                depth -= 1
                if depth == 0:
                    if k == 0 or rest[k - 1] in " \t":
                        dso, rest = rest[k + 1:-1], rest[:k].rstrip()
                    break
    return ip, rest, dso


def is_kernel_dso(dso: str | None, ip: int | None = None) -> bool:
    """perf's kernel DSOs: ``[kernel.kallsyms]``, ``[kernel.*]``, kernel modules
    (``[nf_conntrack]``), ``…/vmlinux``; an ip in the upper half of a 64-bit address space
    with no user-space DSO."""
    if dso:
        if dso.startswith("[kernel") or dso.endswith("vmlinux"):
            return True
        if dso.startswith("[") and dso.endswith("]"):
            return dso not in _NOT_KERNEL and not dso.startswith("[perf-")
        return False
    return ip is not None and ip >= _KERNEL_HALF


class _FrameParser:
    """One frame line → RawFrame (see the module doc).

    :meth:`parse` first tries a *template*: lines that differ only in their ip and
    ``+0x`` offset from a line parsed before (same symbol, same DSO) build their RawFrame from
    what that parse decided, without regular expressions or lookups (a perf-map frame only
    while the new ip stays inside the same map entry). Tested against :meth:`parse_slow`."""

    def __init__(self, maps: _MapSet, stats: PerfScriptStats) -> None:
        self.maps = maps
        self.stats = stats
        self._map_dso: dict[str | None, bool] = {None: False}
        self._kernel_dso: dict[str | None, bool] = {}

    def parse(self, line: bytes, caller: bool, pid: int | None,
              templates: dict[bytes, tuple] | None = None) -> RawFrame | None:
        t = line.strip()
        sp = t.find(b" ")
        key = None
        if templates is not None and sp > 0 and t[-1:] == b")":
            plus = t.rfind(b"+0x")
            par = t.rfind(b" (")
            if sp < plus < par:
                key = t[sp:plus] + t[par:]
                tp = templates.get(key)
                if tp is not None:
                    try:
                        ip = int(t[:sp], 16)
                        off = int(t[plus + 3:par], 16)
                    except ValueError:
                        tp = None
                    if tp is not None:
                        f = self._apply(tp, ip, off, caller, t)
                        if f is not None:
                            return f
        f, tp = self.parse_slow(line, caller, pid)
        if key is not None and tp is not None:
            templates[key] = tp  # type: ignore[index]
        return f

    @staticmethod
    def _apply(tp: tuple, ip: int, off: int, caller: bool, t: bytes) -> RawFrame | None:
        kind = tp[0]
        position = 1 if caller else 0
        if kind == 0:                                   # host frame: name and DSO as printed
            return RawFrame(position, AddressSpace.NATIVE, ip, tp[1], None, None, tp[2], True,
                            False, t.decode("utf-8", "replace"), tp[3])
        if kind == 1:                                   # perf-map entry [start, end)
            start, end = tp[1], tp[2]
            probe = ip - 1 if caller else ip
            if not start <= probe < end:
                return None
            return RawFrame(position, tp[3], ip - start, tp[4], tp[5], tp[6], tp[7], tp[8],
                            False, t.decode("utf-8", "replace"))
        if kind == 2:                                   # Wasm symbol, no map: printed offset
            return RawFrame(position, AddressSpace.PERF, off, tp[1], tp[2], tp[3], tp[4], False,
                            False, t.decode("utf-8", "replace"))
        return None

    def parse_slow(self, line: bytes, caller: bool, pid: int | None
                   ) -> tuple[RawFrame | None, tuple | None]:
        """(frame, template for lines that differ only in ip/offset, or None)."""
        text = line.decode("utf-8", "replace").strip()
        parts = split_frame_line(text)
        if parts is None:
            return None, None
        ip, symoff, dso = parts
        position = 1 if caller else 0
        sym, plus, off_text = symoff.rpartition("+0x")
        if not plus or not _HEX.match(off_text):
            if plus and AOT_SYMBOL.match(sym):
                raise LogFormatError("bad WAMR AOT frame in perf script", source="perf script",
                                     expected="aot_func#N+0xHEX", found=text[:80])
            sym, off_text = symoff, ""
        if sym == "[unknown]":
            sym = ""
        w = classify_symbol(sym) if sym else None
        if w is not None and w.runtime == "wamr" and w.aot_index >= 10 ** 9:
            raise LogFormatError("bad WAMR AOT frame in perf script", source="perf script",
                                 expected="aot_func#N+0xHEX with N below 10^9", found=text[:80])
        # Only frames perf could not name, named from a perf map, or named as Wasm code are
        # looked up: a host DSO's ip is a file offset that may fall inside a map by chance.
        map_dso = self._map_dso.get(dso)
        if map_dso is None:
            map_dso = self._map_dso[dso] = pid_of_map_path(dso) is not None  # type: ignore[arg-type]
        pmap = None
        if w is not None or not sym or map_dso:
            pmap = self.maps.for_frame(dso, pid, ip) if (map_dso or dso in (None, "[unknown]")
                                                         or w is not None) else None
            if pmap is not None:
                # Callers hold return addresses: the call instruction ends just before ip.
                hit = pmap.lookup(ip - 1 if caller else ip)
                if hit is not None:
                    entry = hit[0]
                    self.stats.map_lookups += 1
                    ew = entry.wasm
                    if ew is not None:
                        if w is not None and w.aot_index is not None and \
                                w.aot_index != entry.aot_index:
                            self.stats.caller_reattributed += 1
                        name = ew.name if ew.runtime != "wamr" else sym or entry.symbol
                        f = RawFrame(
                            index=position, space=AddressSpace.PERF, offset=ip - entry.start,
                            printed_name=name, aot_index=entry.aot_index,
                            func_index=ew.func_index, module=entry.module, raw=text)
                        same = w is None or w.aot_index is None or \
                            w.aot_index == entry.aot_index
                        return f, ((1, entry.start, entry.end, AddressSpace.PERF, name,
                                    ew.func_index, entry.aot_index, entry.module, False)
                                   if same else None)
                    name = sym or entry.symbol
                    module = dso or pmap.source
                    return (RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                                     printed_name=name, module=module, native=True, raw=text),
                            None)
        off = int(off_text, 16) if off_text else None
        if w is not None:
            name = sym if w.runtime == "wamr" else w.name
            return (RawFrame(index=position, space=AddressSpace.PERF, offset=off,
                             printed_name=name, aot_index=w.aot_index,
                             func_index=w.func_index, module=w.module, raw=text),
                    # a template only when no map could re-attribute other ips of the symbol
                    (2, name, w.func_index, w.aot_index, w.module)
                    if off is not None and pmap is None else None)
        kernel = self._kernel_dso.get(dso) if dso is not None else None
        if kernel is None:
            kernel = is_kernel_dso(dso, ip)
            if dso is not None:
                self._kernel_dso[dso] = kernel
        if sym:
            return (RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                             printed_name=sym, module=dso, native=True, raw=text, kernel=kernel),
                    (0, sym, dso, kernel) if dso is not None and not map_dso and pmap is None
                    else None)
        if dso not in (None, "[unknown]") or kernel:
            # An unnamed address inside a known DSO (or a perf map we were not given): a host
            # frame that keeps its DSO.
            return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                            module=dso or "[kernel]", native=True, raw=text, kernel=kernel), None
        return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip, raw=text), None


def iter_blocks(stream: BinaryIO, progress: Callable[[int], None] | None = None,
                chunk_size: int = _CHUNK, source: str = "<perf script>") -> Iterator[list[bytes]]:
    """Lists of blank-line separated blocks of a stream, read in bounded chunks (one list per
    chunk, so callers loop in bulk)."""
    tail = b""
    done = 0
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        done += len(chunk)
        if progress:
            progress(done)
        data = tail + chunk if tail else chunk
        if b"\r" in chunk:
            data = data.replace(b"\r\n", b"\n")
            if data.endswith(b"\r"):
                data, extra = data[:-1], b"\r"
            else:
                extra = b""
        else:
            extra = b""
        k = data.rfind(b"\n\n")
        if k < 0 and len(data) > _LONG_BLOCK and (j := data.rfind(b"\n")) > 0:
            # No blank line for a long stretch: one-line samples (perf script -G); complete
            # lines are a block of their own (a real call chain is far shorter than this).
            tail = data[j + 1:] + extra
            yield [data[:j]]
            continue
        if k < 0:
            tail = data + extra
            if len(tail) > MAX_BLOCK:
                raise LogFormatError(f"a sample block longer than {MAX_BLOCK >> 20} MiB",
                                     source=source, offset=done - len(tail),
                                     expected="perf script samples separated by blank lines")
            continue
        tail = data[k + 2:] + extra
        if len(tail) > MAX_BLOCK:
            raise LogFormatError(f"a sample block longer than {MAX_BLOCK >> 20} MiB",
                                 source=source, offset=done - len(tail),
                                 expected="perf script samples separated by blank lines")
        yield data[:k].split(b"\n\n")
    if tail.strip():
        yield [tail]


def _header(line: bytes):
    h = _HEADER_TIMED.match(line)
    if h is None:
        h = _HEADER_UNTIMED.match(line)
    return h


# Fast header path: the time field splits a header into a per-thread prefix and a
# per-event suffix that both repeat (cached); the full expressions above decide the rest.
_TIME_FIELD = re.compile(rb" (\d+\.\d+):(?=[ \t]|$)")   # a literal first: fast search
_PREFIX = re.compile(
    rb"^[ \t]*(?:(?P<comm>\S.*?)[ \t]+)??(?:(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)[ \t]*)?"
    rb"(?:\[(?P<cpu>\d+)\][ \t]*)?$")
_SUFFIX = re.compile(
    rb"^(?:[ \t]+(?P<period>\d+))?(?:[ \t]+(?P<event>\S+):)?(?:[ \t]+(?P<rest>.*?))?[ \t]*$")
_HEAD_CACHE = 4096
_NOT_FRAME = RawFrame(index=-1, space=AddressSpace.NATIVE)   # cached "this line is no frame"


_SPLIT3 = bytes.split
_NL = repeat(b"\n")
_TWO = repeat(2)
_ONE = repeat(1)
_FIRST = itemgetter(slice(0, 1))
_TIME_SPLIT = _TIME_FIELD.split


class Head(NamedTuple):
    """One distinct sample header of the columns path (time aside)."""

    event: str
    period: int | None
    thread: str
    labels: dict[str, str]
    pid: int | None


@dataclass(slots=True)
class Columns:
    """One chunk of samples, column-wise: sample ``i`` has header ``reader.heads[heads[i]]``,
    leaf frame ``leaves[i]`` and the interned caller tuple ``callers[i]`` (its stack is
    ``(leaves[i],) + callers[i]``)."""

    heads: list[int]
    leaves: list[RawFrame]
    callers: list[tuple[RawFrame, ...]]
    start: float                      # earliest and latest sample time of the chunk
    end: float
    interned: bool = True             # callers[i] are shared interned tuples

class _Caches:
    """Interned frames of one map context (one pid when several maps are given): leaf
    lines, caller lines, and whole caller chains (the bytes after the leaf line)."""

    __slots__ = ("leaf", "caller", "chains", "templates")

    def __init__(self) -> None:
        self.leaf: dict[bytes, RawFrame | None] = {}
        self.caller: dict[bytes, RawFrame | None] = {}
        self.chains: dict[bytes, tuple[RawFrame, ...]] = {}
        self.templates: dict[bytes, tuple] = {}


class PerfScriptReader:
    """Streaming ``perf script`` reader (see the module doc). One instance per input;
    ``stats`` is complete once :meth:`records` is exhausted.

    Records are ``(event, period, timestamp, thread, labels, stack, callers)``: ``callers``
    is the tuple of caller frames (``stack[1:]``) when it is an interned call chain shared
    with other samples (consumers may cache by its identity), else None."""

    def __init__(self, *, perf_maps: Iterable[PerfMap] = (), source: str = "<perf script>",
                 progress: Callable[[int], None] | None = None,
                 cache_limit: int = CACHE_LIMIT) -> None:
        self.maps = _MapSet(perf_maps)
        self.source = source
        self.progress = progress
        self.stats = PerfScriptStats()
        self.cache_limit = cache_limit
        self.chain_bytes = CHAIN_BYTES
        self.start: float | None = None
        self.end: float | None = None
        self._frames = _FrameParser(self.maps, self.stats)
        self._threads: dict[bytes, tuple[str, dict[str, str], int | None] | None] = {}
        self._suffixes: dict[bytes, tuple[int | None, str, bytes | None] | None] = {}
        self._events: dict[str, EventStats] = self.stats.events
        self._caches: dict[int | None, _Caches] = {}
        self._cached = 0
        self._chain_state = (0, 0, True)          # chain hits, misses, interning on
        self._chain_budget = self.chain_bytes
        self.heads: list[Head] = []               # header table of the columns path
        self._head_ids: dict[tuple[bytes, bytes], int] = {}
        self._col_leaves: dict[Any, RawFrame] = {}
        self._col_chains: dict[Any, tuple[RawFrame, ...]] = {}
        self._col_intern = True                   # intern caller chains (columns path)
        self._col_hits = self._col_misses = 0

    # -- headers --------------------------------------------------------------------------
    def _thread(self, comm: bytes | None, pid_t: bytes | None, tid_t: bytes | None
                ) -> tuple[str, dict[str, str], int | None]:
        name = comm.decode("utf-8", "replace").strip() if comm else ""
        tid = int(tid_t) if tid_t is not None else None
        labels = {"pid": str(int(pid_t))} if pid_t is not None else {}
        pid = int(pid_t) if pid_t is not None else tid
        thread = f"{name}/{tid}" if tid is not None else (name or "?")
        return thread, labels, pid

    def _event(self, event_t: bytes | None, header: bytes) -> str:
        name = (event_t or b"").decode("utf-8", "replace")
        if name not in self._events:
            self._events[name] = EventStats(first_header=header[:200].decode("utf-8", "replace"))
        return name

    def _prefix(self, prefix: bytes):
        m = _PREFIX.match(prefix)
        out = None if m is None else self._thread(m["comm"], m["pid"], m["tid"])
        if len(self._threads) > _HEAD_CACHE:
            self._threads.clear()
        self._threads[prefix] = out
        return out

    def _suffix(self, suffix: bytes, header: bytes):
        m = _SUFFIX.match(suffix)
        out = None
        if m is not None:
            period = int(m["period"]) if m["period"] is not None else None
            out = (period, self._event(m["event"], header), m["rest"] or None)
        if len(self._suffixes) > _HEAD_CACHE:
            self._suffixes.clear()
        self._suffixes[suffix] = out
        return out

    def _slow_header(self, line: bytes):
        """(thread, labels, pid, time, period, event, rest) from the full expressions."""
        h = _header(line)
        if h is None:
            return None
        comm, pid_t, tid_t, time_t, period_t, event_t, rest = h.group(
            "comm", "pid", "tid", "time", "period", "event", "rest")
        thread, labels, pid = self._thread(comm, pid_t, tid_t)
        return (thread, labels, pid, float(time_t) if time_t is not None else None,
                int(period_t) if period_t is not None else None, self._event(event_t, line),
                rest or None)

    # -- frames ---------------------------------------------------------------------------
    def _frames_of(self, lines: list[bytes], c: _Caches, pid: int | None,
                   first: bool = True) -> list[RawFrame]:
        """Frames of ``lines`` (``first``: the first frame found is the leaf); lines that are
        not frames are skipped and counted."""
        out: list[RawFrame] = []
        it = iter(lines)
        if first:
            for line in it:
                f = self._line(line, c.leaf, False, c, pid)
                if f is not None:
                    out.append(f)
                    break
        get = c.caller.get
        append = out.append
        for line in it:
            f = get(line)
            if f is None:
                f = self._line(line, c.caller, True, c, pid)
                if f is not None:
                    append(f)
            elif f is not _NOT_FRAME:
                append(f)
            else:
                self.stats.skipped_lines += 1
        return out

    def _line(self, line: bytes, cache: dict, caller: bool, c: _Caches, pid: int | None
              ) -> RawFrame | None:
        """One line through ``cache`` (parsed on a miss); None when it is no frame."""
        f = cache.get(line)
        if f is None:
            if not line.strip():
                return None
            f = self._frames.parse(line, caller, pid, c.templates)
            cache[line] = _NOT_FRAME if f is None else f
            self._cached += 1
            self.stats.distinct_lines += 1
        if f is None or f is _NOT_FRAME:
            self.stats.skipped_lines += 1
            return None
        return f

    def _chain(self, rest: bytes, c: _Caches, pid: int | None) -> tuple[RawFrame, ...]:
        """The caller frames of the bytes after the leaf line (every line is a caller)."""
        return tuple(self._frames_of(rest.split(b"\n"), c, pid, first=False))

    def _maybe_flush(self) -> None:
        if self._cached > self.cache_limit:
            # Bounded memory: frames already yielded stay valid (consumers keep what they
            # need); new lines parse again.
            for c in self._caches.values():
                c.leaf.clear()
                c.caller.clear()
                c.chains.clear()
                c.templates.clear()
            self._col_leaves.clear()
            self._col_chains.clear()
            self._cached = 0

    def _slow_block(self, block: bytes) -> list[tuple]:
        """Records of a block the fast path does not take: comments, headers without a
        time, one-line samples (no call chains: every line is a header carrying its frame,
        perf script -G or -F without callchains), damage."""
        stats = self.stats
        out: list[tuple] = []
        lines = block.split(b"\n")
        i, n = 0, len(lines)
        while i < n:
            while i < n and (not lines[i].strip() or lines[i].lstrip()[:1] == b"#"):
                i += 1                       # blank and comment lines (--header)
            if i == n:
                break
            header = lines[i]
            hv = self._slow_header(header)
            if hv is None:
                stats.skipped_blocks += 1
                if stats.first_bad is None:
                    stats.first_bad = header[:120].decode("utf-8", "replace")
                break
            thread, labels, pid, t, period, event, rest = hv
            if t is None:
                stats.untimed += 1
            else:
                self._times(t)
            c = self._cache(pid)
            if rest is not None and (fp := split_frame_line(rest.decode("utf-8", "replace"))) \
                    is not None and (fp[1] or fp[2]):
                body, i = [rest], i + 1      # the frame is on the header; next line: a sample
            else:
                body, i = lines[i + 1:], n
            out.append((event, period, t, thread, labels, tuple(self._frames_of(body, c, pid)),
                        None))
        return out

    def _times(self, t: float) -> None:
        if self.start is None or t < self.start:
            self.start = t
        if self.end is None or t > self.end:
            self.end = t

    def _cache(self, pid: int | None) -> _Caches:
        ck = pid if len(self.maps.maps) > 1 else None   # the map for a frame depends on pid
        c = self._caches.get(ck)
        if c is None:
            c = self._caches[ck] = _Caches()
        return c

    def records(self, stream: BinaryIO) -> Iterator[tuple]:
        """One record per sample (see the class doc)."""
        for blocks in iter_blocks(stream, self.progress, source=self.source):
            yield from self._rows(blocks)
        self._finish()

    def batches(self, stream: BinaryIO) -> Iterator[tuple[str, Any]]:
        """The same samples per chunk of input, for bulk consumers: ``("cols", Columns)``
        when every sample of the chunk has the usual shape (time field, one event, a call
        chain, few distinct header suffixes), else ``("rows", [record, ...])``. Columns hold
        one entry per sample, in order, without building per-sample tuples in Python."""
        for blocks in iter_blocks(stream, self.progress, source=self.source):
            cols = self._columns(blocks)
            if cols is None:
                yield "rows", list(self._rows(blocks))
            else:
                yield "cols", cols
        self._finish()

    def _finish(self) -> None:
        stats = self.stats
        stats.finish()
        if not stats.samples:
            raise LogFormatError("no perf script sample found", source=self.source,
                                 expected="'comm tid time: period event:' headers followed by "
                                          "frames",
                                 found=repr(stats.first_bad) if stats.first_bad else
                                 "no sample header")

    def _count(self, event: str, n: int) -> None:
        self._events[event].samples += n
        self.stats.samples += n

    def _rows(self, blocks: list[bytes]) -> Iterator[tuple]:
        """Records of one chunk's blocks. The hot loop: a header is split at its time field
        into cached prefix/suffix parts; the leaf line and the caller chain are looked up in
        the interning caches; anything unusual goes to :meth:`_slow_block`."""
        by_pid = len(self.maps.maps) > 1
        caches = self._caches
        threads, suffixes = self._threads, self._suffixes
        threads_get, suffixes_get = threads.get, suffixes.get
        time_search = _TIME_FIELD.search
        start, end = float("inf"), float("-inf")
        chain_hits, chain_misses, use_chains = self._chain_state
        counts: dict[str, int] = {}
        c = None
        last_ck: object = object()
        for block in blocks:
            parts = block.split(b"\n", 2)
            header = parts[0]
            m = time_search(header)
            if m is None or header[:1] == b"#":
                for rec in self._slow_block(block):
                    counts[rec[0]] = counts.get(rec[0], 0) + 1
                    yield rec
                continue
            prefix = header[:m.start()]
            th = threads_get(prefix, False)
            if th is False:
                th = self._prefix(prefix)
            suffix = header[m.end():]
            sf = suffixes_get(suffix, False)
            if sf is False:
                sf = self._suffix(suffix, header)
            if th is None or sf is None or sf[2] is not None:
                for rec in self._slow_block(block):
                    counts[rec[0]] = counts.get(rec[0], 0) + 1
                    yield rec
                continue
            thread, labels, pid = th
            period, event, _ = sf
            t = float(m[1])
            if t > end:
                end = t
            if t < start:
                start = t
            ck = pid if by_pid else None
            if ck != last_ck:
                c = caches.get(ck)
                if c is None:
                    c = caches[ck] = _Caches()
                last_ck = ck
            callers = None
            if len(parts) == 3 and use_chains:
                leaf = c.leaf.get(parts[1])
                if leaf is None or leaf is _NOT_FRAME:
                    frames = self._frames_of([parts[1]], c, pid)
                    leaf = frames[0] if frames else None
                callers = c.chains.get(parts[2])
                if callers is None:
                    chain_misses += 1
                    callers = self._intern_chain(parts[2], c, pid)
                    if chain_misses + chain_hits >= 8192:
                        # Recordings whose callers vary too: interning chains only costs.
                        use_chains = chain_hits >= chain_misses
                        if not use_chains:
                            for cc in caches.values():
                                cc.chains.clear()
                        chain_hits = chain_misses = 0
                else:
                    chain_hits += 1
                if leaf is None:            # the first line was not a frame: damage
                    stack = tuple(self._frames_of([parts[1]] + parts[2].split(b"\n"), c, pid))
                    callers = None
                else:
                    stack = (leaf,) + callers
            elif len(parts) == 3:
                stack = tuple(self._frames_of([parts[1]] + parts[2].split(b"\n"), c, pid))
                chain_misses += 1
                if chain_misses >= 1 << 16:   # try interning again now and then
                    use_chains, chain_misses = True, 0
            else:
                stack = tuple(self._frames_of(parts[1:], c, pid))
            if event in counts:
                counts[event] += 1
            else:
                counts[event] = 1
            yield event, period, t, thread, labels, stack, callers
            if self._cached > self.cache_limit:
                self._maybe_flush()
        self._chain_state = (chain_hits, chain_misses, use_chains)
        if start <= end:
            self._times(start)
            self._times(end)
        for name, k in counts.items():
            self._count(name, k)

    def _intern_chain(self, rest: bytes, c: _Caches, pid: int | None) -> tuple[RawFrame, ...]:
        callers = self._chain(rest, c, pid)
        self._chain_budget -= len(rest) + 200
        if self._chain_budget < 0:
            for cc in self._caches.values():
                cc.chains.clear()
            self._col_chains.clear()
            self._chain_budget = self.chain_bytes
        c.chains[rest] = callers
        return callers

    # -- columns --------------------------------------------------------------------------
    def _untimed_head(self, header: bytes) -> int | None:
        """Index into :attr:`heads` of a header without a time field (cached whole)."""
        hv = self._slow_header(header)
        if hv is None or hv[3] is not None:
            return None
        thread, labels, pid, _, period, event, rest = hv
        if rest is not None:
            return None
        return self._new_head(header, Head(event, period, thread, labels, pid))

    def _new_head(self, key: Any, head: Head) -> int:
        hid = len(self.heads)
        self.heads.append(head)
        if len(self._head_ids) > _HEAD_CACHE:
            self._head_ids.clear()
        self._head_ids[key] = hid
        return hid

    def _head(self, key: tuple[bytes, bytes], header: bytes) -> int | None:
        """Index into :attr:`heads` of a (prefix, suffix) pair; None when it is not a plain
        header (no thread, a payload after the event)."""
        prefix, suffix = key
        th = self._threads.get(prefix, False)
        if th is False:
            th = self._prefix(prefix)
        sf = self._suffixes.get(suffix, False)
        if sf is False:
            sf = self._suffix(suffix, header)
        if th is None or sf is None or sf[2] is not None:
            return None
        thread, labels, pid = th
        period, event, _ = sf
        return self._new_head(key, Head(event, period, thread, labels, pid))

    def _fill_chains(self, miss: list[int], callers: list, chains: tuple, ckeys: Any,
                     pids: list, interned: bool) -> None:
        """``callers[i]`` for the samples ``miss`` whose caller chain was not interned: the
        distinct chains of the chunk, per map context, are split into lines in one pass and
        looked up in bulk; only new lines are parsed."""
        by_ctx: dict[Any, list[int]] = {}
        ctx_pid: dict[Any, int | None] = {}
        by_pid = len(self.maps.maps) > 1
        for i, pid in zip(miss, pids):
            ck = pid if by_pid else None
            by_ctx.setdefault(ck, []).append(i)
            ctx_pid[ck] = pid
        for ck, group in by_ctx.items():
            pid = ctx_pid[ck]
            c = self._cache(pid)
            done: dict[bytes, tuple[RawFrame, ...]] = {}
            todo = []
            for rest in dict.fromkeys(chains[i] for i in group):
                hit = c.chains.get(rest) if interned else None
                if hit is not None:
                    done[rest] = hit
                elif not rest:
                    done[rest] = ()
                else:
                    todo.append(rest)
            if todo:
                counts = list(map(bytes.count, todo, repeat(b"\n")))
                lines = b"\n".join(todo).split(b"\n")
                cache = c.caller
                fr = list(map(cache.get, lines))
                if True in map(is_, fr, repeat(None)):
                    for j, f in enumerate(fr):
                        if f is None:
                            f = self._line(lines[j], cache, True, c, pid)
                            fr[j] = _NOT_FRAME if f is None else f
                elif True in map(is_, fr, repeat(_NOT_FRAME)):
                    self.stats.skipped_lines += sum(map(is_, fr, repeat(_NOT_FRAME)))
                odd = True in map(is_, fr, repeat(_NOT_FRAME))
                pos = 0
                for rest, k in zip(todo, counts):
                    part = fr[pos:pos + k + 1]
                    pos += k + 1
                    chain = tuple(f for f in part if f is not _NOT_FRAME) if odd else tuple(part)
                    done[rest] = chain
                    if interned:
                        self._chain_budget -= len(rest) + 200
                        c.chains[rest] = chain
                if interned and self._chain_budget < 0:
                    for cc in self._caches.values():
                        cc.chains.clear()
                    self._col_chains.clear()
                    self._chain_budget = self.chain_bytes
            for i in group:
                cl = done[chains[i]]
                callers[i] = cl
                if interned:
                    self._col_chains[ckeys[i]] = cl

    def _columns(self, blocks: list[bytes]) -> Columns | None:
        """The chunk as columns, or None when it needs the per-block path (see
        :meth:`batches`). Every step is a C-level pass over the chunk; Python runs only on
        cache misses."""
        if not blocks or blocks[0][:1] == b"#":
            return None
        # blank lines between samples ("\n\n\n"): empty blocks or a leading newline
        blocks = list(filter(None, map(bytes.lstrip, blocks, _NL)))
        if not blocks:
            return None
        parts = list(map(_SPLIT3, blocks, _NL, _TWO))
        lens = set(map(len, parts))
        if lens != {3}:
            if not lens <= {2, 3}:
                return None
            parts = [p if len(p) == 3 else [p[0], p[1], b""] for p in parts]
        heads, leaves, chains = zip(*parts)
        if b"#" in set(map(_FIRST, heads)):
            return None
        hs = list(map(_TIME_SPLIT, heads, _ONE))
        hlens = set(map(len, hs))
        if hlens == {3}:
            prefixes, times, suffixes = zip(*hs)
            if len(set(suffixes)) > 64:
                return None           # per-sample periods (cycles in frequency mode)
            hkeys: Any = list(zip(prefixes, suffixes))
        elif hlens == {1}:            # no time field: headers repeat whole
            if len(set(heads)) > 256:
                return None
            times = None
            hkeys = heads
        else:
            return None
        hids = list(map(self._head_ids.get, hkeys))
        if True in map(is_, hids, repeat(None)):
            for i, h in enumerate(hids):
                if h is None:
                    h = self._head_ids.get(hkeys[i])
                    if h is None:
                        h = self._head(hkeys[i], heads[i]) if times is not None else \
                            self._untimed_head(heads[i])
                        if h is None:
                            return None
                    hids[i] = h
        table = self.heads
        events = {table[h].event for h in set(hids)}
        if len(events) != 1:
            return None
        by_pid = len(self.maps.maps) > 1
        if by_pid:
            ctxs = [table[h].pid for h in hids]
            lkeys: Any = list(zip(ctxs, leaves))
            ckeys: Any = list(zip(ctxs, chains))
        else:
            ctxs = None
            lkeys, ckeys = leaves, chains
        lget, cget = self._col_leaves.get, self._col_chains.get
        frames = list(map(lget, lkeys))
        if True in map(is_, frames, repeat(None)):
            for i, f in enumerate(frames):
                if f is None:
                    pid = table[hids[i]].pid
                    c = self._cache(pid)
                    f = self._line(leaves[i], c.leaf, False, c, pid)
                    if f is None:
                        return None               # the leaf line is no frame: damage
                    self._col_leaves[lkeys[i]] = f
                    frames[i] = f
        interned = self._col_intern
        callers = list(map(cget, ckeys)) if interned else [None] * len(ckeys)
        if True in map(is_, callers, repeat(None)):
            miss = [i for i, cl in enumerate(callers) if cl is None]
            self._fill_chains(miss, callers, chains, ckeys,
                              [table[hids[i]].pid for i in miss], interned)
            # Callers that keep varying (chains rarely repeat): stop interning them (it
            # only costs memory); try again now and then.
            self._col_hits += len(callers) - len(miss)
            self._col_misses += len(miss)
        else:
            self._col_hits += len(callers)
        if self._col_hits + self._col_misses >= 16384:
            self._col_intern = True if not interned else self._col_hits >= self._col_misses
            if not self._col_intern:
                self._col_chains.clear()
            self._col_hits = self._col_misses = 0
        if len(self._col_leaves) > self.cache_limit:
            self._col_leaves.clear()
        if times is not None:
            ts = list(map(float, times))
            t0, t1 = min(ts), max(ts)
            self._times(t0)
            self._times(t1)
        else:
            t0, t1 = float("inf"), float("-inf")
            self.stats.untimed += len(hids)
        self._count(events.pop(), len(hids))
        if self._cached > self.cache_limit:
            self._maybe_flush()
        return Columns(hids, frames, callers, t0, t1, interned)


def parse_perf_script_events(stream: BinaryIO, *, perf_maps: Iterable[PerfMap] = (),
                             source: str = "<perf script>",
                             progress: Callable[[int], None] | None = None
                             ) -> tuple[list[Profile], PerfScriptStats]:
    """Parse a whole perf script into one Profile per event (label ``event``, in order of
    first appearance), every sample kept in order (``count`` 1, ``period`` as printed).
    Raises LogFormatError when no sample header is found at all."""
    reader = PerfScriptReader(perf_maps=perf_maps, source=source, progress=progress)
    by_event: dict[str, list[Sample]] = {}
    for event, period, t, thread, labels, stack, _ in reader.records(stream):
        samples = by_event.get(event)
        if samples is None:
            samples = by_event[event] = []
        samples.append(Sample(stack, 1, t, thread, labels, period))
    stats = reader.stats
    profiles = []
    for event, samples in by_event.items():
        times = [s.timestamp for s in samples if s.timestamp is not None]
        profiles.append(Profile(samples=samples, unit="samples", source=source,
                                start=min(times) if times else None,
                                end=max(times) if times else None,
                                labels={"event": event} if event else {},
                                name=event or None, notes=list(stats.notes)))
    return profiles, stats


def parse_perf_script(stream: BinaryIO, *, perf_maps: Iterable[PerfMap] = (),
                      source: str = "<perf script>",
                      progress: Callable[[int], None] | None = None) -> tuple[Profile, PerfScriptStats]:
    """The first event's Profile (see :func:`parse_perf_script_events`; the notes list the
    other events when there are several)."""
    profiles, stats = parse_perf_script_events(stream, perf_maps=perf_maps, source=source,
                                               progress=progress)
    return profiles[0], stats


def header_pids(head: bytes) -> set[int]:
    """PIDs (or TIDs when perf printed no PID) of the sample headers in ``head``."""
    pids = set()
    for line in head.split(b"\n"):
        if line[:1] not in (b"\t", b" ", b"#", b"") and (h := _header(line)) is not None \
                and h["tid"] is not None:
            pids.add(int(h["pid"] or h["tid"]))
    return pids


def looks_like_perf_script(head: bytes) -> bool:
    """True when the first non-comment line of ``head`` is a perf script sample header
    followed by a frame line, a blank line or the end."""
    lines = head.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        h = _header(line.rstrip(b"\r"))
        if h is None:
            return False
        if h["time"] is not None:
            return True
        # No time field: demand a frame (or the end) next, so folded stacks never pass.
        nxt = lines[i + 1].rstrip(b"\r") if i + 1 < len(lines) else b""
        return not nxt.strip() or split_frame_line(nxt.decode("utf-8", "replace")) is not None
    return False
