"""Symbolize a :class:`~wasmprof.model.Profile`: RawFrame stacks → Frame stacks.

Contract:

- Every distinct address is resolved once (profiles repeat the same PCs millions of times):
  frames are keyed by (module, space, indexes, lookup offset) and identical raw stacks (the
  parsers intern them) are symbolized once.
- Caller frames (every stack position but the leaf) of native/perf spaces hold return
  addresses; they are looked up at ``offset - 1`` so a call ending a function or an inline
  range is attributed to the caller's code. ``Frame.raw_offset`` keeps the printed offset.
- Nothing is dropped: host frames stay (``native=True``, status ``function-only``, reason
  says where the name came from; unnamed ones keep their DSO: label ``[libc.so.6]``; kernel
  frames have ``kernel=True``), frames that cannot be resolved stay with status
  ``unknown``/``index-only`` and a reason.
- Modules are matched to frames by the frame's module hint (``[name]#aot_func#N``, an agent
  module id, the identity :func:`assign_perf_map_modules` gave a perf-map segment) against
  each module's name, file name, stem or identity; V8/Wasmtime frames (function index and
  name) go to the module whose function agrees; when a single module (with its companions)
  is given, every Wasm/AOT frame uses it.
- **Wrong modules are refused, never used to name frames** (:mod:`wasmprof.module_match`):
  ``on_mismatch="raise"`` (the CLI) raises :class:`~wasmprof.module_match.ModuleMismatchError`
  naming both sides ("perf map has 58 AOT functions, crash_oob.O2.wasm has 65");
  ``on_mismatch="note"`` (the default; the server) leaves such frames unnamed
  (``aot_func#N``, status ``index-only``, the reason says why) and adds a note to the profile.
  Perf-map segments are checked in :func:`assign_perf_map_modules`, single frames in
  :class:`Symbolizer`. A segment that fits none of the given modules while another segment
  fits is another plugin of the same process: unnamed with a note even when strict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wasmprof.model import (AddressSpace, Frame, FrameStatus, Module, ModuleKind, Profile,
                            RawFrame, Sample)
from wasmprof.module_match import (MISMATCH_MARK, Mismatch, ModuleMismatchError,
                                   check_frame, check_on_mismatch, display, fit_segment)

_SUFFIXES = (".aot.wasm", ".cwasm", ".wasm", ".aot", ".o")

__all__ = ["FrameResolver", "ModuleMismatchError", "ModuleSet", "SymbolizedProfile",
           "SymbolizedSample", "Symbolizer", "Timeline", "assign_perf_map_modules",
           "frame_label", "merge_profiles", "process_label", "sample_group", "self_by_function",
           "symbolize_profile"]


class FrameResolver(Protocol):
    def resolve(self, module: Module, raw_frame: RawFrame,
                input_index: int | None = None) -> list[Frame]: ...


# A symbolized sample is the core model's Sample holding Frames. Samples with the same raw
# stack share one ``stack`` tuple (consumers aggregate by ``id(stack)``).
SymbolizedSample = Sample


@dataclass(slots=True)
class Timeline:
    """Time order of an aggregated profile, as runs: run ``i`` is ``weights[i]`` of
    ``samples[order[i]]`` (the profile's aggregated samples); consecutive samples of one
    thread with the same stack are one run. Kept for speedscope's time-order view."""

    order: Any            # array('I')
    weights: Any          # array('q')


@dataclass(slots=True)
class SymbolizedProfile(Profile):
    """A ``Profile[Frame]`` plus what symbolization used.

    Profiles from :meth:`Symbolizer.symbolize` keep one sample per input sample (with its
    timestamp); those from :class:`wasmprof.aggregate.ProfileAggregator` hold one sample per
    distinct (stack, thread, labels) with summed ``count``/``period`` (no timestamps) and
    optionally a :class:`Timeline`. Every writer accepts both."""

    distinct_frames: int = 0          # distinct (module, address) resolutions used
    status_counts: dict[str, int] = field(default_factory=dict)   # of those, by status
    timeline: Timeline | None = None
    sample_count: int | None = None   # input samples behind an aggregated profile
    weight: str = "samples"           # "samples" or "period" (what ``count`` holds)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.samples)


def frame_label(frame: Frame) -> str:
    """The name shown for a frame: function name, else the printed/raw name, else a
    placeholder that says what is missing: the DSO of an unnamed host frame
    (``[libc.so.6]``, ``[kernel.kallsyms]``), ``$fN``, or ``[unknown]``."""
    name = frame.function or frame.raw_function or frame.printed_name
    if name:
        return name
    if frame.wasm_index is not None:
        return f"$f{frame.wasm_index}"
    if frame.native and frame.module:
        m = frame.module
        if m.startswith("[") and m.endswith("]"):
            return m
        return f"[{m.rstrip('/').rsplit('/', 1)[-1]}]"
    return "[unknown]"


def process_label(sample: Sample) -> str:
    """``comm-pid`` of a perf sample (``thread`` is ``comm/tid``, label ``pid`` when perf
    printed one; ``comm`` alone otherwise)."""
    comm = (sample.thread or "").rpartition("/")[0] or (sample.thread or "?")
    pid = sample.labels.get("pid")
    return f"{comm}-{pid}" if pid else comm


def sample_group(sample: Sample, group_by: str | None) -> str | None:
    """The value a sample is grouped by: None (no grouping), ``"thread"``, ``"process"``
    (:func:`process_label`) or a sample label name (``"[no KEY]"`` when the label is
    missing)."""
    if not group_by:
        return None
    if group_by == "thread":
        return sample.thread or "[no thread]"
    if group_by == "process":
        return process_label(sample)
    return sample.labels.get(group_by) or f"[no {group_by}]"


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

    def by_key(self, key: str) -> Module | None:
        m = self._by_key.get(key)
        if m is None:
            for suf in _SUFFIXES:
                if key.endswith(suf):
                    return self._by_key.get(key[: -len(suf)])
        return m

    def for_frame(self, raw: RawFrame) -> tuple[Module | None, str | None]:
        """(module, reason when none)."""
        if raw.module:
            if raw.module.startswith(MISMATCH_MARK):
                return None, raw.module[len(MISMATCH_MARK):]
            m = self.by_key(raw.module)
            if m is not None:
                return m, None
        if len(self.plugins) == 1:
            return self.plugins[0], None
        if not self.plugins:
            return None, "no module given (--module)"
        if raw.module is None and raw.aot_index is None and (
                raw.func_index is not None or raw.printed_name):
            # V8/Wasmtime frames name no module: the plugins whose function agrees
            fits = [p for p in self.plugins if check_frame(raw, p) is None]
            if len(fits) == 1:
                return fits[0], None
            return None, (f"{len(self.plugins)} modules given and "
                          f"{len(fits) or 'none'} of them fit this frame")
        return None, (f"{len(self.plugins)} modules given and the frame names "
                      + (f"'{raw.module}', which matches none" if raw.module else "no module"))


def _segment_where(pmap: Any, sg: list[int]) -> str:
    first = pmap.entries[sg[0]]
    return (f"perf map {Path(pmap.source).name if pmap.source else ''}: "
            f"aot_func#0..{len(sg) - 1} at 0x{first.start:x}").replace("map : ", "map: ")


def assign_perf_map_modules(perf_maps: Iterable[Any], modules: Sequence[Module], *,
                            on_mismatch: str = "note") -> list[str]:
    """Check each perf-map segment (one AOT module's ``aot_func#0..K-1`` run) against the
    given modules and tell which module it belongs to (WAMR prints ``[name]#`` only for
    named modules; Envoy and iwasm name none). A segment fits a plugin with exactly its
    function count, and, when the plugin's ``.aot`` is known, exactly its function offsets
    (strong); the single fitting plugin (strong preferred) gets the segment (entries'
    ``module`` = its identity). A segment no plugin fits is refused
    (:mod:`wasmprof.module_match`): with ``on_mismatch="raise"`` a
    :class:`ModuleMismatchError` naming both counts when no segment of the recording fits any
    given module, else (and with ``"note"``) its entries are marked so the Symbolizer leaves
    them unnamed. Returns notes saying what was matched and how."""
    check_on_mismatch(on_mismatch)
    mset = ModuleSet(modules)
    notes: list[str] = []
    if not mset.plugins:
        return notes
    maps = list(perf_maps)
    refused: list[tuple[Any, list[int], Mismatch]] = []
    fitted = 0
    for pmap in maps:
        for sg in pmap.segments():
            first = pmap.entries[sg[0]]
            if first.module is not None and first.module.startswith(MISMATCH_MARK):
                continue                                   # already decided
            where = _segment_where(pmap, sg)
            starts = [pmap.entries[i].start for i in sg]
            hinted = mset.by_key(first.module) if first.module else None
            cands = [hinted] if hinted is not None else mset.plugins
            fits = [fit_segment(starts, p, where) for p in cands]
            ok = [f for f in fits if f.fits]
            strong = [f for f in ok if f.strong]
            chosen = strong if strong else ok
            if len(chosen) == 1:
                fit = chosen[0]
                fitted += 1
                if first.module is None or first.module != fit.module.identity:
                    pmap.set_module(sg, fit.module.identity)
                how = "function offsets match" if fit.strong else \
                    "function count only: give the .aot for a stronger match"
                if first.module and hinted is None:
                    how += f"; the map names module '{first.module}'"
                if len(maps) > 1 or len(pmap.segments()) > 1 or len(mset.plugins) > 1 \
                        or first.module:
                    notes.append(f"{where} -> {display(fit.module)} ({how})")
                continue
            if len(chosen) > 1:
                notes.append(f"{where}: no single module matches ({len(chosen)} candidates "
                             f"with {len(sg)} functions); its frames stay unnamed")
                continue
            if len(fits) == 1:
                reason = fits[0].reason or ""
            else:
                reason = (f"{where} has {len(sg)} AOT functions; the given modules have "
                          + ", ".join(f"{len(f.module.functions) - f.module.import_function_count}"
                                      f" ({display(f.module)})" for f in fits))
            refused.append((pmap, sg, Mismatch(reason, ", ".join(display(f.module) for f in fits))))
    if refused and on_mismatch == "raise" and not fitted:
        pmap, _, mm = refused[0]
        raise mm.error(source=pmap.source)
    for pmap, sg, mm in refused:
        pmap.set_module(sg, MISMATCH_MARK + mm.reason + ": frames left unnamed")
        notes.append(f"{mm.reason}: its frames are left unnamed (aot_func#N)"
                     + ("; another segment fits, so this is another plugin of the process"
                        if fitted else ""))
    return notes


def _is_caller_space(space: AddressSpace) -> bool:
    return space in (AddressSpace.PERF, AddressSpace.NATIVE)


_JIT_REASON = {"v8": "V8 perf map names the function; JIT code has no line map here",
               "wasmtime": "Wasmtime perf map names the function; JIT code has no line map "
                           "here"}


def _host_frame(raw: RawFrame) -> Frame:
    if raw.printed_name:
        return Frame(function=raw.printed_name, status=FrameStatus.FUNCTION_ONLY,
                     reason="host frame: name as the input printed it",
                     module=raw.module, raw_offset=raw.offset,
                     printed_name=raw.printed_name, native=True, kernel=raw.kernel)
    return Frame(function=None, status=FrameStatus.UNKNOWN, native=True, kernel=raw.kernel,
                 reason=("host address: no symbol" + (f" in {raw.module}" if raw.module else "")),
                 module=raw.module, raw_offset=raw.offset)


class Symbolizer:
    """Resolves frames with a per-instance cache (one per CLI run / request).

    ``on_mismatch``: ``"note"`` (default) or ``"raise"`` (see the module doc)."""

    def __init__(self, modules: Sequence[Module] = (), resolver: FrameResolver | None = None,
                 *, on_mismatch: str = "note") -> None:
        self.on_mismatch = check_on_mismatch(on_mismatch)
        self.modules = ModuleSet(modules)
        if resolver is None and self.modules.plugins:
            from wasmprof.addr2line.resolver import Resolver
            resolver = Resolver()
        self.resolver = resolver
        self._frames: dict[tuple, tuple[Frame, ...]] = {}
        self.mismatches: dict[str, int] = {}     # reason -> distinct frames left unnamed
        self.unverified: dict[str, int] = {}     # kind -> distinct frames checked weakly

    def mismatch_notes(self) -> list[str]:
        out = [f"{reason} ({n} distinct frame(s) left unnamed)"
               for reason, n in self.mismatches.items()]
        if self.unverified.get("aot"):
            out.append("AOT frames named without a perf map (perf printed aot_func#N): checked "
                       "against the module's function count only; give the map for the full "
                       "check")
        if self.unverified.get("jit"):
            out.append("V8/Wasmtime frames that carry only a function index (no name in the "
                       "recording): checked against the module's function count only")
        return out

    def offset_free(self, raw: RawFrame, module: Module | None) -> bool:
        """True when ``raw``'s answer cannot depend on its offset: host frames, and AOT/JIT
        perf frames (no line map; a .cwasm's address map is the exception)."""
        return raw.native or (raw.space is AddressSpace.PERF and (
            module is None or module.kind is not ModuleKind.CWASM))

    def frames_for(self, raw: RawFrame, *, shared: bool = False) -> tuple[Frame, ...]:
        """The Frames (inline chain) of one raw frame. ``shared``: frames whose answer does
        not depend on the offset (:meth:`offset_free`) are resolved once per function and
        carry no per-input ``raw_offset`` (the streaming path uses this)."""
        caller = raw.index > 0 and _is_caller_space(raw.space) and not raw.native
        probe = raw.offset - 1 if caller and raw.offset else raw.offset
        module, why = (None, None) if raw.native else self.modules.for_frame(raw)
        free = shared and self.offset_free(raw, module)
        if free and raw.aot_index is not None and module is not None and raw.offset:
            # the one offset-dependent check: aot_func#N+off must lie inside function N
            free = check_frame(raw, module) is None
        # a caller looked up at ``offset - 1`` answers with its own raw_offset and reason
        # ("caller: looked up at the return address - 1"), so it never shares a leaf's
        # entry for the same lookup address
        key = (id(module), raw.space, raw.aot_index, raw.func_index,
               None if free else (probe, probe != raw.offset),
               raw.native, raw.printed_name if raw.aot_index is None or module is None else None,
               raw.module if raw.native or module is None else None, raw.kernel,
               why if module is None else None)
        hit = self._frames.get(key)
        if hit is None:
            hit = self._resolve(raw, module, why, raw.offset if free else probe)
            if free:
                hit = tuple(dataclasses.replace(f, raw_offset=None, input_index=None)
                            if f.raw_offset is not None or f.input_index is not None else f
                            for f in hit)
            self._frames[key] = hit
        return hit

    def _resolve(self, raw: RawFrame, module: Module | None, why: str | None,
                 probe: int | None) -> tuple[Frame, ...]:
        if raw.native:
            return (_host_frame(raw),)
        wasm_frame = raw.aot_index is not None or raw.func_index is not None or (
            raw.space is AddressSpace.PERF) or (
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
        if module is not None and raw.space is AddressSpace.PERF:
            if raw.aot_index is not None and raw.module is None:
                self.unverified["aot"] = self.unverified.get("aot", 0) + 1
            elif raw.aot_index is None and raw.func_index is not None and not raw.printed_name:
                self.unverified["jit"] = self.unverified.get("jit", 0) + 1
            mm = check_frame(raw, module)
            if mm is not None:
                if self.on_mismatch == "raise":
                    err = mm.error()
                    if raw.raw:
                        err.found = f"frame {raw.raw!r}"
                    raise err
                self.mismatches[mm.reason] = self.mismatches.get(mm.reason, 0) + 1
                module, why = None, mm.reason + ": frames left unnamed"
        if module is None or self.resolver is None:
            jit = raw.aot_index is None and raw.func_index is not None
            name = raw.printed_name if raw.aot_index is None else raw.printed_name
            return (Frame(function=raw.printed_name if jit else None, raw_function=name,
                          status=(FrameStatus.FUNCTION_ONLY if jit and raw.printed_name else
                                  FrameStatus.INDEX_ONLY if (raw.aot_index is not None
                                                             or raw.func_index is not None)
                                  else FrameStatus.UNKNOWN),
                          reason=why or "no resolver", raw_offset=raw.offset,
                          wasm_index=raw.func_index if jit else None,
                          printed_name=raw.printed_name, module=raw.module
                          if raw.module and not raw.module.startswith(MISMATCH_MARK) else None),)
        lookup = raw if probe == raw.offset else dataclasses.replace(raw, offset=probe)
        frames = self._lookup(module, lookup)
        if not frames:
            return (Frame(function=None, status=FrameStatus.UNKNOWN,
                          reason="resolver returned nothing", raw_offset=raw.offset,
                          printed_name=raw.printed_name),)
        runtime = _jit_runtime(raw)
        if runtime is not None and len(frames) == 1 and frames[0].line is None:
            frames = [dataclasses.replace(frames[0], reason=_JIT_REASON[runtime])]
        if lookup is not raw:
            frames = [dataclasses.replace(f, raw_offset=raw.offset) for f in frames]
            last = frames[-1]
            frames[-1] = dataclasses.replace(
                last, reason=((last.reason + "; ") if last.reason else "")
                + "caller: looked up at the return address - 1")
        return tuple(frames)

    def _lookup(self, module: Module, lookup: RawFrame) -> list[Frame]:
        """The resolver's answer for one lookup address. In caller spaces a leaf at ``X``
        and a caller at ``X+1`` (looked up at ``X``) have two entries in the frame cache
        but share this one resolver call (kept in the same dict, so clearing it clears
        both)."""
        if not _is_caller_space(lookup.space):
            return self.resolver.resolve(module, lookup)   # type: ignore[union-attr]
        key = ("lookup", id(module), lookup.space, lookup.offset, lookup.aot_index,
               lookup.func_index, lookup.printed_name, lookup.module, lookup.truncated)
        hit = self._frames.get(key)
        if hit is None:
            hit = self._frames[key] = tuple(self.resolver.resolve(module, lookup))  # type: ignore[union-attr]
        return list(hit)

    def symbolize(self, profile: Profile) -> SymbolizedProfile:
        """Every sample kept, in order, with its timestamp, thread, labels, count and
        period; samples with the same raw stack share one symbolized stack tuple."""
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
            out.append(SymbolizedSample(sym, s.count, s.timestamp, s.thread, s.labels, s.period))
        return SymbolizedProfile(samples=out, unit=profile.unit, name=profile.name,
                                 plugin=profile.plugin, labels=dict(profile.labels),
                                 start=profile.start, end=profile.end, source=profile.source,
                                 notes=list(profile.notes) + self.modules.notes
                                 + self.mismatch_notes(),
                                 distinct_frames=len(used), status_counts=status_counts(used),
                                 sample_count=len(out))


def status_counts(used: dict[int, tuple[Frame, ...]]) -> dict[str, int]:
    """Distinct resolutions by the status of their outermost frame."""
    status: dict[str, int] = {}
    for frames in used.values():
        k = str(frames[-1].status)
        status[k] = status.get(k, 0) + 1
    return status


def _jit_runtime(raw: RawFrame) -> str | None:
    if raw.space is not AddressSpace.PERF or raw.aot_index is not None:
        return None
    text = raw.raw or ""
    if "wasm[" in text or "trampoline" in text:
        return "wasmtime"
    if "JS:" in text or "Function:" in text or "LazyCompile:" in text:
        return "v8"
    return "wasmtime" if raw.func_index is None else "v8"


def symbolize_profile(profile: Profile, modules: Sequence[Module] = (),
                      resolver: FrameResolver | None = None, *,
                      on_mismatch: str = "note") -> SymbolizedProfile:
    return Symbolizer(modules, resolver, on_mismatch=on_mismatch).symbolize(profile)


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
    notes = list(dict.fromkeys(n for p in ps for n in p.notes))
    if len(units) > 1:
        notes.append(f"merged profiles with different units: {sorted(units)}")
    counts = [p.sample_count for p in ps]
    return SymbolizedProfile(
        samples=[s for p in ps for s in p.samples], unit=first.unit,
        name=first.name, plugin=first.plugin, labels=dict(first.labels),
        start=min(starts) if starts else None, end=max(ends) if ends else None,
        source=", ".join(p.source or "?" for p in ps), notes=notes,
        distinct_frames=sum(p.distinct_frames for p in ps),
        status_counts={k: sum(p.status_counts.get(k, 0) for p in ps)
                       for k in {k for p in ps for k in p.status_counts}},
        sample_count=sum(c for c in counts if c is not None) if None not in counts else None,
        weight=first.weight)


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


def open_profile_input(path: str):
    """A binary stream of ``path``, gunzipped when it starts with the gzip magic. Raises
    LogFormatError (file named) when it cannot be opened."""
    import gzip

    from wasmprof.errors import LogFormatError
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller
        if f.read(2) == b"\x1f\x8b":
            f.close()
            return gzip.open(path, "rb")
        f.seek(0)
        return f
    except OSError as e:
        raise LogFormatError(f"cannot read profile: {e.strerror}", source=path) from None


_open_input = open_profile_input


def discover_perf_maps(path: str) -> list[str]:
    """Perf maps next to a perf script (``*perf-PID.map[.gz]`` for a PID its first MB mentions
    in a frame's DSO or a sample header), else ``/tmp/perf-PID.map`` for that PID when it
    exists on this machine."""
    import glob
    import os
    import re

    with _open_input(path) as f:
        head = f.read(1 << 20)
    from wasmprof.ingest.perf_script import header_pids

    pids = {int(p) for p in re.findall(rb"perf-(\d+)\.map", head)} | header_pids(head)
    found = []
    d = os.path.dirname(os.path.abspath(path))
    for pid in sorted(pids):
        here = []
        for pattern in (f"*perf-{pid}.map", f"*perf-{pid}.map.gz"):
            here.extend(sorted(glob.glob(os.path.join(glob.escape(d), pattern))))
        tmp = f"/tmp/perf-{pid}.map"
        if not here and os.path.exists(tmp):
            here.append(tmp)
        found.extend(here)
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
    first 64 KiB unless ``fmt`` is given). A perf script gives one Profile per event (label
    ``event``, the first event first). Raises LogFormatError naming ``source``."""
    from wasmprof.errors import LogFormatError
    from wasmprof.ingest.agent_json import parse_agent_json
    from wasmprof.ingest.folded import parse_folded
    from wasmprof.ingest.perf_script import parse_perf_script_events
    from wasmprof.ingest.wamr_profiler import parse_wamr_profiler

    head = f.read(_SNIFF)
    fmt = fmt or detect_profile_format(head, source)
    f.seek(0)
    if fmt == "perf-script":
        profiles, _ = parse_perf_script_events(f, perf_maps=perf_maps, source=source,
                                               progress=progress)
        return profiles
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
    with open_profile_input(path) as f:
        fmt = fmt or detect_profile_format(f.read(_SNIFF), path)
        f.seek(0)
        profiles = parse_profile_stream(f, source=path, perf_maps=perf_maps, fmt=fmt,
                                        progress=progress)
    for p in profiles:
        p.labels.setdefault("format", fmt)
    return profiles
