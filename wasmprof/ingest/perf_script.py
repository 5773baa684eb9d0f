"""``perf script`` text → :class:`~wasmprof.model.Profile`.

A sample is a header line (``comm [pid/]tid [cpu] time: [period] event:``) followed by its
call chain, one frame per line, leaf first, then a blank line::

    iwasm 20737  1849.917999:    2004008 cpu-clock:
            41399708  aot_func#4+0x34 (/tmp/perf-20737.map)
               2fb0f invoke_native_with_hw_bound_check+0x1cf (/usr/local/bin/iwasm)

Frames become :class:`~wasmprof.model.RawFrame`:

- ``aot_func#N+0xOFF`` / ``[mod]#aot_func#N+0xOFF`` (perf resolved through the WAMR perf
  map): ``space=perf, aot_index=N, offset=OFF``;
- a bare address (``[unknown]``) that a given perf map covers: looked up in the map, same
  as above; callers (every frame but the leaf) hold return addresses and are looked up at
  ``ip - 1`` so a call that ends a function is not attributed to the next one;
- anything else is a host frame (``native=True``, ``printed_name`` = perf's symbol or None,
  ``module`` = perf's DSO, ``offset`` = the ip), except a bare address in anonymous memory
  (``[unknown]`` DSO) that no perf map covers: ``space=native, native=False``, no name (may be
  JIT/AOT code; status ``unknown`` later, with a reason).

Blocks are separated by blank lines; a header that carries the frame itself (``perf script``
without call chains) makes every line its own sample. Comment lines (``#``) are skipped.

Parsing is streamed in chunks (bounded memory) and interned: identical call chains share one
tuple of RawFrames, so a 100k-sample script costs one parse per distinct chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from wasmprof.errors import LogFormatError
from wasmprof.ingest.perf_map import AOT_SYMBOL, PerfMap, pid_of_map_path
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

_HEADER = re.compile(
    rb"^\s*(?P<comm>.*?)\s+(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)\s+(?:\[(?P<cpu>\d+)\]\s+)?"
    rb"(?P<time>\d+\.\d+):\s+(?:(?P<period>\d+)\s+)?(?P<event>\S+?):(?:\s+(?P<rest>.*))?$")
_CHUNK = 8 << 20
MAX_BLOCK = 64 << 20     # one sample's text; more means this is not perf script output


@dataclass(slots=True)
class PerfScriptStats:
    samples: int = 0
    skipped_blocks: int = 0
    distinct_chains: int = 0
    map_lookups: int = 0
    caller_reattributed: int = 0      # ip-1 fell into another function than perf's symbol
    notes: list[str] = field(default_factory=list)


class _MapSet:
    """Perf maps by pid; chooses the map for a frame (see :func:`parse_perf_script`)."""

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


def _split_frame_line(line: str) -> tuple[int | None, str, str | None]:
    """``'41399708  aot_func#4+0x34 (/tmp/perf-1.map)'`` → (ip, symbol+off, dso)."""
    text = line.strip()
    head, _, rest = text.partition(" ")
    try:
        ip = int(head, 16)
    except ValueError:
        ip, rest = None, text
    rest = rest.strip()
    dso = None
    if rest.endswith(")") and (k := rest.rfind(" (")) >= 0:
        dso, rest = rest[k + 2:-1], rest[:k].rstrip()
    elif rest.startswith("(") and rest.endswith(")"):
        dso, rest = rest[1:-1], ""
    return ip, rest, dso


def _is_hex(text: str) -> bool:
    """An empty offset (none printed) or hex digits."""
    return all(c in "0123456789abcdefABCDEF" for c in text)


class _FrameParser:
    def __init__(self, maps: _MapSet, stats: PerfScriptStats) -> None:
        self.maps = maps
        self.stats = stats
        self.cache: dict[tuple[bytes, int, int | None], RawFrame] = {}

    def frame(self, line: bytes, position: int, pid: int | None) -> RawFrame:
        key = (line, position, pid)
        f = self.cache.get(key)
        if f is None:
            f = self.cache[key] = self._parse(line.decode("utf-8", "replace"), position, pid)
        return f

    def _parse(self, line: str, position: int, pid: int | None) -> RawFrame:
        ip, symoff, dso = _split_frame_line(line)
        raw = line.strip()
        sym, plus, off_text = symoff.rpartition("+0x")
        if not plus:
            sym, off_text = symoff, ""
        m = AOT_SYMBOL.match(sym) if sym else None
        if m is not None and (len(m["n"]) > 9 or not _is_hex(off_text)):
            raise LogFormatError("bad WAMR AOT frame in perf script", source="perf script",
                                 expected="aot_func#N+0xHEX with N below 10^9",
                                 found=raw[:80])
        # Only frames perf could not name, or named from a perf map, are looked up: a host
        # DSO's ip is a file offset that may fall inside the map's range by chance.
        mappable = m is not None or sym in ("", "[unknown]") or (
            dso is not None and pid_of_map_path(dso) is not None)
        pmap = self.maps.for_frame(dso, pid, ip) if mappable and ip is not None else None
        if pmap is not None and ip is not None:
            # Callers hold return addresses: the call instruction ends just before ip.
            probe = ip - 1 if position > 0 else ip
            hit = pmap.lookup(probe)
            if hit is not None and hit[0].aot_index is not None:
                entry = hit[0]
                self.stats.map_lookups += 1
                if m is not None and int(m["n"]) != entry.aot_index:
                    self.stats.caller_reattributed += 1
                return RawFrame(index=position, space=AddressSpace.PERF, offset=ip - entry.start,
                                printed_name=sym or None, aot_index=entry.aot_index,
                                module=entry.module, raw=raw)
        if m is not None:
            off = int(off_text, 16) if off_text else None
            return RawFrame(index=position, space=AddressSpace.PERF, offset=off,
                            printed_name=sym, aot_index=int(m["n"]), module=m["module"], raw=raw)
        if sym and sym != "[unknown]":
            return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                            printed_name=sym, module=dso, native=True, raw=raw)
        if dso not in (None, "[unknown]") and pid_of_map_path(dso) is None:
            # An unnamed address inside a host DSO: still a host frame.
            return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip,
                            module=dso, native=True, raw=raw)
        return RawFrame(index=position, space=AddressSpace.NATIVE, offset=ip, raw=raw)


def iter_blocks(stream: BinaryIO, progress: Callable[[int], None] | None = None,
                chunk_size: int = _CHUNK, source: str = "<perf script>") -> Iterable[bytes]:
    """Blank-line separated blocks of a stream, read in bounded chunks."""
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
        parts = data.split(b"\n\n")
        tail = parts.pop()
        if len(tail) > MAX_BLOCK:
            raise LogFormatError(f"a sample block longer than {MAX_BLOCK >> 20} MiB",
                                 source=source, offset=done - len(tail),
                                 expected="perf script samples separated by blank lines")
        yield from parts
    if tail.strip():
        yield tail


def parse_perf_script(stream: BinaryIO, *, perf_maps: Iterable[PerfMap] = (),
                      source: str = "<perf script>",
                      progress: Callable[[int], None] | None = None) -> tuple[Profile, PerfScriptStats]:
    """Parse ``perf script`` output (see module doc). Raises LogFormatError when no sample
    header is found at all; damaged blocks are skipped and counted in the stats/notes."""
    stats = PerfScriptStats()
    parser = _FrameParser(_MapSet(perf_maps), stats)
    chains: dict[tuple[bytes, bytes], tuple[RawFrame, ...]] = {}
    samples: list[Sample] = []
    threads: dict[tuple[bytes, bytes], str] = {}
    first_bad: str | None = None
    header_match = _HEADER.match
    pending: list[bytes] = []
    append = samples.append
    start, end = float("inf"), float("-inf")
    for raw_block in iter_blocks(stream, progress, source=source):
        pending.append(raw_block)
        while pending:
            block = pending.pop().strip(b"\n")
            while block.startswith((b"#", b" #")):
                nl = block.find(b"\n")                   # comment lines (perf script --header)
                block = b"" if nl < 0 else block[nl + 1:]
            if not block:
                continue
            header, _, body = block.partition(b"\n")
            h = header_match(header)
            if h is None:
                stats.skipped_blocks += 1
                if first_bad is None:
                    first_bad = header[:120].decode("utf-8", "replace")
                continue
            comm, pid_text, tid_text, _cpu, time_text, _period, _event, rest = h.groups()
            if rest and rest.strip():
                # No call chains: one line per sample, the frame on the header line.
                if body:
                    pending.append(body)
                body = rest
            key = (body, pid_text or tid_text)
            stack = chains.get(key)
            if stack is None:
                pid = int(pid_text or tid_text)
                stack = chains[key] = tuple(
                    parser.frame(line, i, pid)
                    for i, line in enumerate(ln for ln in body.split(b"\n") if ln.strip()))
            tkey = (comm, tid_text)
            thread = threads.get(tkey)
            if thread is None:
                name = comm.decode("utf-8", "replace").strip()
                thread = threads[tkey] = f"{name}/{int(tid_text)}"
            t = float(time_text)
            if t > end:
                end = t
            if t < start:
                start = t
            append(Sample(stack, 1, t, thread))
    if not samples:
        raise LogFormatError("no perf script sample found", source=source,
                             expected="'comm tid time: period event:' headers followed by frames",
                             found=repr(first_bad) if first_bad else "no sample header")
    stats.samples = len(samples)
    stats.distinct_chains = len(chains)
    if stats.skipped_blocks:
        stats.notes.append(f"{stats.skipped_blocks} block(s) without a perf sample header skipped"
                           + (f" (first: {first_bad!r})" if first_bad else ""))
    if stats.caller_reattributed:
        stats.notes.append(f"{stats.caller_reattributed} caller frame(s) re-attributed by the "
                           "perf map at ip-1 (return address past the end of perf's symbol)")
    profile = Profile(samples=samples, unit="samples", source=source, start=start, end=end,
                      notes=list(stats.notes))
    return profile, stats


def header_pids(head: bytes) -> set[int]:
    """PIDs (or TIDs when perf printed no PID) of the sample headers in ``head``."""
    pids = set()
    for line in head.split(b"\n"):
        if line[:1] not in (b"\t", b" ", b"#", b"") and (h := _HEADER.match(line)) is not None:
            pids.add(int(h["pid"] or h["tid"]))
    return pids


def looks_like_perf_script(head: bytes) -> bool:
    """True when the first non-comment line of ``head`` is a perf script sample header."""
    for line in head.split(b"\n"):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        return _HEADER.match(line.rstrip(b"\r")) is not None
    return False
