"""speedscope JSON (https://www.speedscope.app/file-format-schema.json), written with orjson.

- ``shared.frames[i].name`` is the function name alone (demangled as resolved, no module
  prefix); ``file``/``line``/``col`` are set where known. Granularity ``line`` (default) keys
  frames by (name, file, line, col) so the hot lines and inline call sites show; granularity
  ``function`` keys them by (name, file) and omits line/col.
- One *sampled* profile per thread (or per process, or per value of a sample label, e.g.
  ``plugin``), stacks root first, time order kept (an aggregated profile's
  :class:`~wasmprof.profiles.Timeline` when it has one, else the order of its samples);
  consecutive identical stacks are merged into one weight.
- Units: ``samples`` → ``none``; time units pass through (period weighting of cpu-clock is
  ``nanoseconds``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from wasmprof import __version__
from wasmprof.model import Frame, Sample
from wasmprof.profiles import SymbolizedProfile, frame_label, sample_group

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
_UNITS = {"bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"}


def speedscope_document(profile: SymbolizedProfile, *, granularity: str = "line",
                        group_by: str | None = "thread", name: str | None = None) -> dict[str, Any]:
    if granularity not in ("line", "function"):
        raise ValueError(f"granularity must be 'line' or 'function', not {granularity!r}")
    frames: list[dict[str, Any]] = []
    index: dict[tuple, int] = {}
    by_line = granularity == "line"

    def frame_id(f: Frame) -> int:
        lbl = frame_label(f)
        key = (lbl, f.file, f.line, f.column) if by_line else (lbl, f.file)
        i = index.get(key)
        if i is None:
            entry: dict[str, Any] = {"name": lbl}
            if f.file:
                entry["file"] = f.file
            if by_line and f.line is not None:
                entry["line"] = f.line
                if f.column:
                    entry["col"] = f.column
            i = index[key] = len(frames)
            frames.append(entry)
        return i

    stack_ids: dict[int, list[int]] = {}
    groups: dict[str, tuple[list[list[int]], list[int]]] = {}
    for s, w in weighted_samples(profile):
        ids = stack_ids.get(id(s.stack))
        if ids is None:
            ids = stack_ids[id(s.stack)] = [frame_id(f) for f in reversed(s.stack)]
        if group_by == "thread":
            g = s.thread or profile.name or "all"
        elif group_by == "process":
            g = sample_group(s, group_by) or "all"
        elif group_by:
            g = s.labels.get(group_by) or profile.plugin or f"[no {group_by}]"
        else:
            g = profile.name or "all"
        stacks, weights = groups.setdefault(g, ([], []))
        if stacks and stacks[-1] is ids:
            weights[-1] += w
        else:
            stacks.append(ids)
            weights.append(w)
    unit = profile.unit if profile.unit in _UNITS else "none"
    profiles = []
    for g in sorted(groups):
        stacks, weights = groups[g]
        profiles.append({"type": "sampled", "name": g, "unit": unit, "startValue": 0,
                         "endValue": sum(weights), "samples": stacks, "weights": weights})
    return {"$schema": SCHEMA_URL, "shared": {"frames": frames}, "profiles": profiles,
            "name": name or profile.name or profile.source or "wasmprof profile",
            "activeProfileIndex": 0, "exporter": f"wasmprof {__version__}"}


def weighted_samples(profile: SymbolizedProfile) -> Iterator[tuple[Sample, int]]:
    """(sample, weight) in time order: the profile's timeline runs when it has one, else its
    samples with their counts."""
    tl = profile.timeline
    if tl is None:
        for s in profile.samples:
            yield s, s.count
        return
    samples = profile.samples
    for i, w in zip(tl.order, tl.weights):
        yield samples[i], w


def write_speedscope(doc: dict[str, Any], out: BinaryIO) -> int:
    data = orjson.dumps(doc)
    out.write(data)
    return len(data)
