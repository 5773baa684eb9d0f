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
``(event, period, timestamp, thread, labels, stack)``: ``event`` the event name ("" when perf
printed none), ``period`` an int or None, ``thread`` ``"comm/tid"``, ``labels`` a shared dict
(``{"pid": "27409"}`` when perf printed ``pid/tid``; treat it as read-only), ``stack`` a tuple
of RawFrames leaf first. Parsing is streamed in bounded chunks; frame lines are interned (a
bounded cache: identical lines parse once), so memory does not grow with the input.
Damaged blocks (no header) are skipped and counted; a block longer than :data:`MAX_BLOCK`
raises (not perf script output).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wasmprof.errors import LogFormatError
from wasmprof.ingest.perf_map import PerfMap, classify_symbol, pid_of_map_path
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
_CHUNK = 8 << 20
MAX_BLOCK = 64 << 20     # one sample's text; more means this is not perf script output
CACHE_LIMIT = 200_000    # interned frame lines before the cache is dropped (bounded memory)
_KERNEL_HALF = 0xFFFF800000000000
_NOT_KERNEL = ("[unknown]", "[vdso]", "[vsyscall]", "[vectors]", "[heap]", "[stack]",
               "[anon]", "[uprobes]", "[jit]")

PerfRecord = tuple  # (event, period, timestamp, thread, labels, stack): see the module doc


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
    """One frame line → RawFrame (see the module doc)."""

    def __init__(self, maps: _MapSet, stats: PerfScriptStats) -> None:
        self.maps = maps
        self.stats = stats

    def parse(self, line: bytes, caller: bool, pid: int | None) -> RawFrame | None:
        text = line.decode("utf-8", "replace").strip()
        parts = split_frame_line(text)
        if parts is None:
            return None
        ip, symoff, dso = parts
        position = 1 if caller else 0
        sym, plus, off_text = symoff.rpartition("+0x")
        if not plus or not _HEX.match(off_text):
            sym, off_text = symoff, ""
        if sym == "[unknown]":
            sym = ""
        w = classify_symbol(sym) if sym else None
        # Only frames perf could not name, named from a perf map, or named as Wasm code are
        # looked up: a host DSO's ip is a file offset that may fall inside a map by chance.
        map_dso = dso is not None and pid_of_map_path(dso) is not None
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
                        return RawFrame(
                            index=position, space=AddressSpace.PERF, offset=ip - entry.start,
                            printed_name=(ew.name if ew.runtime != "wamr" else sym or entry.symbol),
                            aot_index=entry.aot_index, func_index=ew.func_index,
                            module=entry.module, raw=text)
                    return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                                    printed_name=sym or entry.symbol, module=dso or pmap.source,
                                    native=True, raw=text)
        off = int(off_text, 16) if off_text else None
        if w is not None:
            return RawFrame(index=position, space=AddressSpace.PERF, offset=off,
                            printed_name=sym if w.runtime == "wamr" else w.name,
                            aot_index=w.aot_index, func_index=w.func_index, module=w.module,
                            raw=text)
        kernel = is_kernel_dso(dso, ip)
        if sym:
            return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                            printed_name=sym, module=dso, native=True, raw=text, kernel=kernel)
        if dso not in (None, "[unknown]") or kernel:
            # An unnamed address inside a known DSO (or a perf map we were not given): a host
            # frame that keeps its DSO.
            return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                            module=dso or "[kernel]", native=True, raw=text, kernel=kernel)
        return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip, raw=text)


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


class PerfScriptReader:
    """Streaming ``perf script`` reader (see the module doc). One instance per input;
    ``stats`` is complete once :meth:`records` is exhausted."""

    def __init__(self, *, perf_maps: Iterable[PerfMap] = (), source: str = "<perf script>",
                 progress: Callable[[int], None] | None = None,
                 cache_limit: int = CACHE_LIMIT) -> None:
        self.maps = _MapSet(perf_maps)
        self.source = source
        self.progress = progress
        self.stats = PerfScriptStats()
        self.cache_limit = cache_limit
        self.start: float | None = None
        self.end: float | None = None
        self._frames = _FrameParser(self.maps, self.stats)

    def records(self, stream: BinaryIO) -> Iterator[PerfRecord]:
        stats = self.stats
        parse_frame = self._frames.parse
        by_pid = len(self.maps.maps) > 1          # the map chosen for a frame depends on pid
        caches: dict[tuple[int | None, bool], dict[bytes, RawFrame | None]] = {}
        cached = 0
        threads: dict[bytes, tuple[str, dict[str, str], int | None]] = {}
        events: dict[bytes, tuple[str, EventStats]] = {}
        header = _header
        start, end = float("inf"), float("-inf")
        for blocks in iter_blocks(stream, self.progress, source=self.source):
            pending: list[list[bytes]] = []
            for block in blocks:
                lines = block.split(b"\n")
                pending.append(lines)
                while pending:
                    lines = pending.pop()
                    i, n = 0, len(lines)
                    while i < n and (not lines[i].strip() or lines[i].lstrip()[:1] == b"#"):
                        i += 1                       # blank and comment lines (--header)
                    if i == n:
                        continue
                    h = header(lines[i])
                    if h is None:
                        stats.skipped_blocks += 1
                        if stats.first_bad is None:
                            stats.first_bad = lines[i][:120].decode("utf-8", "replace")
                        continue
                    comm, pid_t, tid_t, _cpu, time_t, period_t, event_t, rest = h.group(
                        "comm", "pid", "tid", "cpu", "time", "period", "event", "rest")
                    body = lines[i + 1:]
                    if rest:
                        parts = split_frame_line(rest.decode("utf-8", "replace"))
                        if parts is not None and (parts[1] or parts[2]):
                            # No call chains: the frame is on the header, each line a sample.
                            if body:
                                pending.append(body)
                            body = [rest]
                    key = h.string[:h.start("cpu") if _cpu is not None else
                                   (h.start("time") if time_t is not None else h.end("tid"))]
                    th = threads.get(key)
                    if th is None:
                        name = comm.decode("utf-8", "replace").strip() if comm else ""
                        tid = int(tid_t) if tid_t is not None else None
                        labels = {"pid": str(int(pid_t))} if pid_t is not None else {}
                        pid = int(pid_t) if pid_t is not None else tid
                        thread = f"{name}/{tid}" if tid is not None else (name or "?")
                        th = threads[key] = (thread, labels, pid)
                    thread, labels, pid = th
                    ev = events.get(event_t or b"")
                    if ev is None:
                        ev = events[event_t or b""] = (
                            (event_t or b"").decode("utf-8", "replace"), EventStats(
                                first_header=lines[i][:200].decode("utf-8", "replace")))
                        stats.events[ev[0]] = ev[1]
                    period = int(period_t) if period_t is not None else None
                    es = ev[1]
                    es.samples += 1
                    if period is not None:
                        es.period += period
                        es.with_period += 1
                    else:
                        es.period += 1
                    if time_t is not None:
                        t = float(time_t)
                        if t > end:
                            end = t
                        if t < start:
                            start = t
                    else:
                        t = None
                        stats.untimed += 1
                    ck = pid if by_pid else None
                    leaf_cache = caches.get((ck, False))
                    if leaf_cache is None:
                        leaf_cache = caches[(ck, False)] = {}
                        caller_cache = caches[(ck, True)] = {}
                    else:
                        caller_cache = caches[(ck, True)]
                    stack: list[RawFrame | None] = []
                    first = True
                    for line in body:
                        cache = caller_cache if not first else leaf_cache
                        f = cache.get(line, False)
                        if f is False:
                            if not line.strip():
                                continue
                            f = cache[line] = parse_frame(line, not first, pid)
                            cached += 1
                            stats.distinct_lines += 1
                        if f is None:
                            stats.skipped_lines += 1
                            continue
                        stack.append(f)
                        first = False
                    stats.samples += 1
                    yield ev[0], period, t, thread, labels, tuple(stack)
                    if cached > self.cache_limit:
                        # Bounded memory: frames already yielded stay valid (callers keep
                        # what they need); new lines parse again.
                        for c in caches.values():
                            c.clear()
                        cached = 0
        if start <= end:
            self.start, self.end = start, end
        stats.finish()
        if not stats.samples:
            raise LogFormatError("no perf script sample found", source=self.source,
                                 expected="'comm tid time: period event:' headers followed by "
                                          "frames",
                                 found=repr(stats.first_bad) if stats.first_bad else
                                 "no sample header")


def parse_perf_script_events(stream: BinaryIO, *, perf_maps: Iterable[PerfMap] = (),
                             source: str = "<perf script>",
                             progress: Callable[[int], None] | None = None
                             ) -> tuple[list[Profile], PerfScriptStats]:
    """Parse a whole perf script into one Profile per event (label ``event``, in order of
    first appearance), every sample kept in order (``count`` 1, ``period`` as printed).
    Raises LogFormatError when no sample header is found at all."""
    reader = PerfScriptReader(perf_maps=perf_maps, source=source, progress=progress)
    by_event: dict[str, list[Sample]] = {}
    for event, period, t, thread, labels, stack in reader.records(stream):
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
