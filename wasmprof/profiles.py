"""Symbolize a :class:`~wasmprof.model.Profile`: RawFrame stacks → Frame stacks.

Contract:

- Every distinct address is resolved once (profiles repeat the same PCs millions of times):
  frames are keyed by (module, space, indexes, lookup offset) and identical raw stacks (the
  parsers intern them) are symbolized once.
- Caller frames (every stack position but the leaf) of native/perf spaces hold return
  addresses; they are looked up at ``offset - 1`` so a call ending a function or an inline
  range is attributed to the caller's code. ``Frame.raw_offset`` keeps the printed offset.
- Nothing is dropped: host frames stay (``native=True``, status ``function-only``, reason
  says where the name came from), frames that cannot be resolved stay with status
  ``unknown``/``index-only`` and a reason.
- Modules are matched to frames by the frame's module hint (``[name]#aot_func#N``, an agent
  module id) against each module's name, file name, stem or identity; when a single module
  (with its companions) is given, every Wasm/AOT frame uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wasmprof.model import (AddressSpace, Frame, FrameStatus, Module, Profile, RawFrame,
                            Sample)

_SUFFIXES = (".aot.wasm", ".cwasm", ".wasm", ".aot", ".o")


class FrameResolver(Protocol):
    def resolve(self, module: Module, raw_frame: RawFrame,
                input_index: int | None = None) -> list[Frame]: ...


# A symbolized sample is the core model's Sample holding Frames. Samples with the same raw
# stack share one ``stack`` tuple (consumers aggregate by ``id(stack)``).
SymbolizedSample = Sample


@dataclass(slots=True)
class SymbolizedProfile(Profile):
    """A ``Profile[Frame]`` plus what symbolization used."""

    distinct_frames: int = 0          # distinct (module, address) resolutions used
    status_counts: dict[str, int] = field(default_factory=dict)   # of those, by status

    @property
    def total(self) -> int:
        return sum(s.count for s in self.samples)


def frame_label(frame: Frame) -> str:
    """The name shown for a frame: function name, else the printed/raw name, else a
    placeholder that says what is missing."""
    name = frame.function or frame.raw_function or frame.printed_name
    if name:
        return name
    if frame.wasm_index is not None:
        return f"$f{frame.wasm_index}"
    return "[unknown]"


def module_keys(module: Module) -> set[str]:
    keys = {module.identity, Path(module.path).name}
    stem = Path(module.path).name
    for suf in _SUFFIXES:
        if stem.endswith(suf):
            keys.add(stem[: -len(suf)])
            break
    if module.name:
        keys.add(module.name)
    return {k for k in keys if k}


class ModuleSet:
    """The modules a user gave, grouped into plugins (an AOT/cwasm and the .wasm it was
    compiled from are one plugin), and chosen per frame."""

    def __init__(self, modules: Sequence[Module]) -> None:
        from wasmprof.binary.loader import find_companion

        self.modules = list(modules)
        self.notes: list[str] = []
        self.plugins: list[Module] = []
        for m in self.modules:
            if m.companion is None:
                find_companion(m, self.modules)
        companions = {id(m.companion) for m in self.modules if m.companion is not None}
        # A module that is some other module's companion is that plugin's debug side.
        self.plugins = [m for m in self.modules if id(m) not in companions]
        if not self.plugins and self.modules:
            self.plugins = [self.modules[0]]
        self._by_key: dict[str, Module] = {}
        for p in self.plugins:
            for k in module_keys(p) | (module_keys(p.companion) if p.companion else set()):
                self._by_key.setdefault(k, p)

    def for_frame(self, raw: RawFrame) -> tuple[Module | None, str | None]:
        """(module, reason when none)."""
        if raw.module:
            m = self._by_key.get(raw.module)
            if m is None:
                stem = raw.module
                for suf in _SUFFIXES:
                    if stem.endswith(suf):
                        m = self._by_key.get(stem[: -len(suf)])
                        break
            if m is not None:
                return m, None
        if len(self.plugins) == 1:
            return self.plugins[0], None
        if not self.plugins:
            return None, "no module given (--module)"
        return None, (f"{len(self.plugins)} modules given and the frame names "
                      + (f"'{raw.module}', which matches none" if raw.module else "no module"))


def assign_perf_map_modules(perf_maps: Iterable[Any], modules: Sequence[Module]) -> list[str]:
    """Tell which loaded module each perf-map segment (one AOT module's ``aot_func#0..K-1``
    run) belongs to, when the map does not say (WAMR prints ``[name]#`` only for named
    modules; Envoy and iwasm name none). A segment matches a plugin whose AOT function
    offsets have exactly the segment's address deltas (strong), else the only plugin with
    the segment's function count (weak, noted). Matched entries get ``module`` = the
    plugin's identity. Returns notes saying what was matched and how."""
    mset = ModuleSet(modules)
    notes: list[str] = []
    for pmap in perf_maps:
        segs = [sg for sg in pmap.segments() if pmap.entries[sg[0]].module is None]
        if len(segs) <= 1 and len(mset.plugins) <= 1:
            continue
        for sg in segs:
            starts = [pmap.entries[i].start - pmap.entries[sg[0]].start for i in sg]
            strong, weak = [], []
            for p in mset.plugins:
                defined = [f for f in p.functions if not f.imported]
                if len(defined) != len(sg):
                    continue
                offs = [f.text_offset for f in defined]
                if all(o is not None for o in offs) and \
                        [o - offs[0] for o in offs] == starts:  # type: ignore[operator]
                    strong.append(p)
                elif not any(o is not None for o in offs):
                    weak.append(p)
            where = f"{pmap.source}: aot_func#0..{len(sg) - 1} at 0x{pmap.entries[sg[0]].start:x}"
            if len(strong) == 1 or (not strong and len(weak) == 1):
                chosen = (strong or weak)[0]
                pmap.set_module(sg, chosen.identity)
                notes.append(f"{where} -> {Path(chosen.path).name} "
                             + ("(function offsets match)" if strong else
                                "(function count only: give the .aot for a stronger match)"))
            else:
                notes.append(f"{where}: no single module matches "
                             f"({len(strong) or len(weak)} candidates)")
    return notes


def _is_caller_space(space: AddressSpace) -> bool:
    return space in (AddressSpace.PERF, AddressSpace.NATIVE)


class Symbolizer:
    """Resolves frames with a per-instance cache (one per CLI run / request)."""

    def __init__(self, modules: Sequence[Module] = (), resolver: FrameResolver | None = None) -> None:
        self.modules = ModuleSet(modules)
        if resolver is None and self.modules.plugins:
            from wasmprof.addr2line.resolver import Resolver
            resolver = Resolver()
        self.resolver = resolver
        self._frames: dict[tuple, tuple[Frame, ...]] = {}

    def frames_for(self, raw: RawFrame) -> tuple[Frame, ...]:
        caller = raw.index > 0 and _is_caller_space(raw.space) and not raw.native
        probe = raw.offset - 1 if caller and raw.offset else raw.offset
        module, why = (None, None) if raw.native else self.modules.for_frame(raw)
        key = (id(module), raw.space, raw.aot_index, raw.func_index, probe, raw.native,
               raw.printed_name if raw.aot_index is None and raw.func_index is None else None,
               raw.module if raw.native or module is None else None)
        hit = self._frames.get(key)
        if hit is None:
            hit = self._frames[key] = self._resolve(raw, module, why, probe)
        return hit

    def _resolve(self, raw: RawFrame, module: Module | None, why: str | None,
                 probe: int | None) -> tuple[Frame, ...]:
        if raw.native:
            if raw.printed_name:
                return (Frame(function=raw.printed_name, status=FrameStatus.FUNCTION_ONLY,
                              reason="host frame: name as the input printed it",
                              module=raw.module, raw_offset=raw.offset,
                              printed_name=raw.printed_name, native=True),)
            return (Frame(function=None, status=FrameStatus.UNKNOWN, native=True,
                          reason="host address outside every given module", module=raw.module,
                          raw_offset=raw.offset),)
        wasm_frame = raw.aot_index is not None or raw.func_index is not None or (
            raw.offset is not None and raw.printed_name is None
            and (raw.space is not AddressSpace.NATIVE or raw.module is not None))
        if not wasm_frame:
            if raw.printed_name:
                return (Frame(function=raw.printed_name, status=FrameStatus.FUNCTION_ONLY,
                              reason="name as the input printed it; not looked up",
                              printed_name=raw.printed_name, raw_offset=raw.offset),)
            return (Frame(function=None, status=FrameStatus.UNKNOWN,
                          reason="bare address: no symbol and no perf map or module covers it",
                          raw_offset=raw.offset, module=raw.module),)
        if module is None or self.resolver is None:
            return (Frame(function=None, raw_function=raw.printed_name,
                          status=FrameStatus.INDEX_ONLY if (raw.aot_index is not None
                                                            or raw.func_index is not None)
                          else FrameStatus.UNKNOWN,
                          reason=why or "no resolver", raw_offset=raw.offset,
                          printed_name=raw.printed_name, module=raw.module),)
        lookup = raw if probe == raw.offset else dataclasses.replace(raw, offset=probe)
        frames = self.resolver.resolve(module, lookup)
        if not frames:
            return (Frame(function=None, status=FrameStatus.UNKNOWN,
                          reason="resolver returned nothing", raw_offset=raw.offset,
                          printed_name=raw.printed_name),)
        if lookup is not raw:
            frames = [dataclasses.replace(f, raw_offset=raw.offset) for f in frames]
            last = frames[-1]
            frames[-1] = dataclasses.replace(
                last, reason=((last.reason + "; ") if last.reason else "")
                + "caller: looked up at the return address - 1")
        return tuple(frames)

    def symbolize(self, profile: Profile) -> SymbolizedProfile:
        stacks: dict[int, tuple[Frame, ...]] = {}
        keep: list[Any] = []       # keeps raw stacks alive so id() keys stay unique
        out: list[SymbolizedSample] = []
        used: dict[int, tuple[Frame, ...]] = {}     # distinct resolutions this profile used
        for s in profile.samples:
            sym = stacks.get(id(s.stack))
            if sym is None:
                keep.append(s.stack)
                chain: list[Frame] = []
                for raw in s.stack:
                    frames = self.frames_for(raw)
                    used[id(frames)] = frames
                    chain.extend(frames)
                sym = stacks[id(s.stack)] = tuple(chain)
            out.append(SymbolizedSample(sym, s.count, s.timestamp, s.thread, s.labels))
        status: dict[str, int] = {}
        for frames in used.values():
            k = str(frames[-1].status)
            status[k] = status.get(k, 0) + 1
        return SymbolizedProfile(samples=out, unit=profile.unit, name=profile.name,
                                 plugin=profile.plugin, labels=dict(profile.labels),
                                 start=profile.start, end=profile.end, source=profile.source,
                                 notes=list(profile.notes) + self.modules.notes,
                                 distinct_frames=len(used), status_counts=status)


def symbolize_profile(profile: Profile, modules: Sequence[Module] = (),
                      resolver: FrameResolver | None = None) -> SymbolizedProfile:
    return Symbolizer(modules, resolver).symbolize(profile)


def self_by_function(profile: SymbolizedProfile) -> dict[tuple[int | None, str], int]:
    """Samples whose leaf instruction is in each function: key (wasm_index, name) of the
    outermost frame of the leaf's inline chain (the function owning the code)."""
    weights: dict[int, list] = {}
    for s in profile.samples:
        e = weights.get(id(s.stack))
        if e is None:
            weights[id(s.stack)] = [s.stack, s.count]
        else:
            e[1] += s.count
    out: dict[tuple[int | None, str], int] = {}
    for stack, weight in weights.values():
        if not stack:
            continue
        leaf = stack[0]
        for f in stack:
            leaf = f
            if not f.inlined:
                break
        key = (leaf.wasm_index, frame_label(leaf))
        out[key] = out.get(key, 0) + weight
    return out


def merge_profiles(profiles: Iterable[SymbolizedProfile]) -> SymbolizedProfile:
    ps = list(profiles)
    if len(ps) == 1:
        return ps[0]
    units = {p.unit for p in ps}
    first = ps[0]
    starts = [p.start for p in ps if p.start is not None]
    ends = [p.end for p in ps if p.end is not None]
    notes = [n for p in ps for n in p.notes]
    if len(units) > 1:
        notes.append(f"merged profiles with different units: {sorted(units)}")
    return SymbolizedProfile(
        samples=[s for p in ps for s in p.samples], unit=first.unit,
        name=first.name, plugin=first.plugin, labels=dict(first.labels),
        start=min(starts) if starts else None, end=max(ends) if ends else None,
        source=", ".join(p.source or "?" for p in ps), notes=notes,
        distinct_frames=sum(p.distinct_frames for p in ps),
        status_counts={k: sum(p.status_counts.get(k, 0) for p in ps)
                       for k in {k for p in ps for k in p.status_counts}})


# --------------------------------------------------------------------------------------
# Inputs: sniff a profile file and parse it with the right ingest module.

PROFILE_FORMATS = ("perf-script", "folded", "agent-json", "wamr-profiler")
_SNIFF = 1 << 16


def sniff_profile_format(head: bytes) -> str | None:
    from wasmprof.ingest.agent_json import looks_like_agent_json
    from wasmprof.ingest.folded import looks_like_folded
    from wasmprof.ingest.perf_script import looks_like_perf_script
    from wasmprof.ingest.wamr_profiler import looks_like_wamr_profiler

    if looks_like_agent_json(head):
        return "agent-json"
    if looks_like_perf_script(head):
        return "perf-script"
    if looks_like_wamr_profiler(head):
        return "wamr-profiler"
    if looks_like_folded(head):
        return "folded"
    return None


def _open_input(path: str):
    import gzip
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def discover_perf_maps(path: str) -> list[str]:
    """Perf maps next to a perf script (``*perf-PID.map`` for a PID its first MB mentions in
    a frame's DSO or a sample header) and ``/tmp/perf-PID.map`` for those PIDs when they exist
    on this machine."""
    import glob
    import os
    import re

    with _open_input(path) as f:
        head = f.read(1 << 20)
    from wasmprof.ingest.perf_script import header_pids

    pids = {int(p) for p in re.findall(rb"perf-(\d+)\.map", head)} | header_pids(head)
    found = []
    for pid in sorted(pids):
        d = os.path.dirname(os.path.abspath(path))
        found.extend(sorted(glob.glob(os.path.join(glob.escape(d), f"*perf-{pid}.map"))))
        tmp = f"/tmp/perf-{pid}.map"
        if not any(os.path.basename(x) == f"perf-{pid}.map" for x in found) and os.path.exists(tmp):
            found.append(tmp)
    return found


def detect_profile_format(head: bytes, source: str) -> str:
    """The format of a profile input from its first bytes; LogFormatError naming ``source``
    when none matches (the CLI and the server both decide with this)."""
    from wasmprof.errors import LogFormatError

    fmt = sniff_profile_format(head)
    if fmt is None:
        raise LogFormatError("unrecognized profile format", source=source,
                             expected="perf script text, folded stacks, agent JSON or a "
                                      "WAMR 'Performance profiler data:' block",
                             found=repr(head[:60]))
    return fmt


def parse_profile_stream(f: Any, *, source: str, perf_maps: Sequence[Any] = (),
                         fmt: str | None = None, progress: Any = None) -> list[Profile]:
    """Parse one seekable binary stream of any :data:`PROFILE_FORMATS` (detected from its
    first 64 KiB unless ``fmt`` is given). Raises LogFormatError naming ``source``."""
    from wasmprof.errors import LogFormatError
    from wasmprof.ingest.agent_json import parse_agent_json
    from wasmprof.ingest.folded import parse_folded
    from wasmprof.ingest.perf_script import parse_perf_script
    from wasmprof.ingest.wamr_profiler import parse_wamr_profiler

    head = f.read(_SNIFF)
    fmt = fmt or detect_profile_format(head, source)
    f.seek(0)
    if fmt == "perf-script":
        profile, _ = parse_perf_script(f, perf_maps=perf_maps, source=source, progress=progress)
        return [profile]
    if fmt == "folded":
        return [parse_folded(f, source=source, progress=progress)]
    if fmt == "agent-json":
        return [parse_agent_json(f.read(), source=source)]
    if fmt == "wamr-profiler":
        return parse_wamr_profiler(f.read().decode("utf-8", "replace"), source=source)
    raise LogFormatError(f"unknown profile format {fmt!r}", source=source,
                         expected=", ".join(PROFILE_FORMATS))


def read_profile_input(path: str, *, perf_maps: Sequence[Any] = (), fmt: str | None = None,
                       progress: Any = None) -> list[Profile]:
    """Parse one profile file (optionally gzip-compressed) of any supported format; each
    profile gets a ``format`` label. Raises LogFormatError (file named) when the format is
    not recognized."""
    from wasmprof.errors import LogFormatError

    try:
        f = _open_input(path)
    except OSError as e:
        raise LogFormatError(f"cannot read profile: {e.strerror}", source=path) from None
    with f:
        fmt = fmt or detect_profile_format(f.read(_SNIFF), path)
        f.seek(0)
        profiles = parse_profile_stream(f, source=path, perf_maps=perf_maps, fmt=fmt,
                                        progress=progress)
    for p in profiles:
        p.labels.setdefault("format", fmt)
    return profiles
