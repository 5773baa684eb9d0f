"""WAMR's ``Performance profiler data:`` block → flat per-function Profiles.

Printed by runtimes built with ``WAMR_BUILD_PERF_PROFILING=1`` (formats.md §4.6)::

    Performance profiler data:
      func fib_rec, execution time: 12.500 ms, execution count: 40 times, children execution time: 2.000 ms
      func 40, execution time: ...          (a Wasm function index when no name is known)

Names may contain ``", "`` (``RingBuffer<int, 8u>::push(int)``), so the fields are matched
from the right. One Profile per block (a log may hold several runs), unit
``microseconds``; each function is a one-frame Sample whose ``count`` is its *self* time
(execution time minus children time, never negative) and whose labels carry
``execution_count``, ``total_us`` and ``children_us``. Stderr lines (``Exception: ...``) that
the terminal interleaved into the block are skipped; the block ends at the first other line.
"""

from __future__ import annotations

import re

from wasmprof.errors import LogFormatError
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

MARKER = "Performance profiler data:"
_FUNC = re.compile(
    r"^\s*func (?P<name>.+), execution time: (?P<total>[\d.]+) ms, execution count: "
    r"(?P<calls>\d+) times, children execution time: (?P<children>[\d.]+) ms\s*$")


def _us(ms_text: str) -> int:
    return round(float(ms_text) * 1000)


def parse_wamr_profiler(text: str, source: str = "<log>") -> list[Profile]:
    """All profiler blocks of ``text`` (may be empty blocks: a run that called nothing)."""
    profiles: list[Profile] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        k = lines[i].find(MARKER)
        if k < 0:
            i += 1
            continue
        first_line = i + 1
        samples: list[Sample] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            m = _FUNC.match(line)
            if m is None:
                if line.startswith("Exception: "):
                    i += 1
                    continue
                break
            name = m["name"]
            total, children = _us(m["total"]), _us(m["children"])
            frame = (RawFrame(index=0, space=AddressSpace.FILE, func_index=int(name), raw=line)
                     if name.isdigit() else
                     RawFrame(index=0, space=AddressSpace.FILE, printed_name=name, raw=line))
            samples.append(Sample(stack=(frame,), count=max(total - children, 0), labels={
                "execution_count": m["calls"], "total_us": str(total), "children_us": str(children)}))
            i += 1
        profiles.append(Profile(samples=samples, unit="microseconds",
                                name=f"WAMR profiler block at line {first_line}",
                                source=source, labels={"kind": "wamr-perf-profiling"}))
    if not profiles:
        raise LogFormatError(f"no '{MARKER}' block found", source=source,
                             expected=f"a '{MARKER}' line followed by '  func NAME, execution time: ...'")
    return profiles


def looks_like_wamr_profiler(head: bytes) -> bool:
    return MARKER.encode() in head
