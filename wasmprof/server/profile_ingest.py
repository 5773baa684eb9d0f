"""Profile ingest: a parsed :class:`~wasmprof.model.Profile` → an :class:`AggregatedBatch`
(frames, stacks, per-(series, bucket) counts) ready for :mod:`wasmprof.server.profile_store`.

Symbolization is the CLI's (:class:`wasmprof.profiles.Symbolizer.frames_for`, one call per
distinct raw frame); this module only decides *which* raw frames are the same for the store:

- host frames collapse to (printed name, module hint): their raw address is never resolved;
- an AOT native-text offset collapses to the function that holds it (one bisect,
  ``AotFile.function_at``, the resolver's own lookup) — AOT native code has no line map, so
  every offset inside a function resolves to the same frame;
- every other frame keys on its full raw address (the Symbolizer's own key).

Resolved frames then collapse to their content (function, file, line, …): the realistic
case of a distinct PC per sample becomes a handful of frames and stacks. A Wasm frame that
stayed unresolved (``unknown``/``index-only``: no module yet, or none that covers it) is
*pending*: its content keeps the raw address and scope so that a module uploaded later
re-resolves exactly it (``ProfileService.resolve_pending``).

A :class:`ScopeResolver` exists per (plugin, version) and module set and is cached by the
service, so addresses are resolved once across batches; it is replaced when the module set
changes.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from wasmprof.model import AddressSpace, Frame, FrameStatus, Module, Profile, RawFrame
from wasmprof.profiles import Symbolizer
from wasmprof.server.profile_codec import frame_id, stack_id

BASE_WIDTH = 10                       # seconds per bucket at ingest
MAX_CACHED_KEYS = 400_000             # raw-frame keys kept per scope before the cache resets
_CALLER_SPACES = (AddressSpace.PERF, AddressSpace.NATIVE)
_UNRESOLVED = (FrameStatus.UNKNOWN, FrameStatus.INDEX_ONLY)

FrameContent = tuple  # see frame_content()


def frame_content(f: Frame, identity: str | None) -> FrameContent:
    """The stored fields of a frame (everything but per-address values)."""
    return (f.function, f.raw_function, f.file, f.line, f.column, bool(f.inlined),
            str(f.status), f.reason, f.wasm_index, f.module, bool(f.native), f.printed_name,
            identity)


def content_frame(c: Sequence) -> Frame:
    return Frame(function=c[0], raw_function=c[1], file=c[2], line=c[3], column=c[4],
                 inlined=bool(c[5]), status=FrameStatus(c[6]), reason=c[7], wasm_index=c[8],
                 module=c[9], native=bool(c[10]), printed_name=c[11])


def raw_key(raw: RawFrame, caller: bool) -> dict[str, Any]:
    """What a pending frame keeps to be resolved later (JSON)."""
    return {"space": str(raw.space), "offset": raw.offset, "aot_index": raw.aot_index,
            "func_index": raw.func_index, "name": raw.printed_name, "module": raw.module,
            "truncated": raw.truncated, "caller": caller}


def raw_from_key(d: dict[str, Any]) -> RawFrame:
    return RawFrame(index=1 if d.get("caller") else 0, space=AddressSpace(d["space"]),
                    offset=d.get("offset"), aot_index=d.get("aot_index"),
                    func_index=d.get("func_index"), printed_name=d.get("name"),
                    module=d.get("module"), truncated=bool(d.get("truncated")))


def make_symbolizer(modules: Sequence[Module], resolver: Any) -> Symbolizer:
    """The CLI's Symbolizer; recordings that do not match a module are left unnamed with a
    note where the Symbolizer supports it (``on_mismatch="note"``)."""
    try:
        params = inspect.signature(Symbolizer).parameters
    except (TypeError, ValueError):
        params = {}
    if "on_mismatch" in params:
        return Symbolizer(modules, resolver, on_mismatch="note")  # type: ignore[call-arg]
    return Symbolizer(modules, resolver)


def modules_hash(module_key: Any) -> str:
    """Hash of a scope's module key (module and companion ids, in registry order)."""
    return hashlib.sha256(orjson.dumps([list(k) for k in module_key or ()])).hexdigest()[:16]


class ScopeResolver:
    """Raw frames of one (plugin, version) → frame ids, with one module set.

    ``lock`` guards every resolver call (shared with the crash service). Thread-safe for
    concurrent batches: caches are plain dicts filled idempotently."""

    def __init__(self, plugin: str | None, version: str | None, modules: Sequence[Module],
                 resolver: Any, lock: threading.Lock, module_key: Any = None) -> None:
        self.plugin, self.version = plugin or "", version or ""
        self.module_key = module_key
        self.modules = list(modules)
        self.resolver = resolver
        self.lock = lock
        self.symbolizer = make_symbolizer(self.modules, resolver)
        self.notes: list[str] = list(self.symbolizer.modules.notes)
        self._chains: dict[tuple, tuple[int, ...]] = {}
        self._stack_ids: dict[tuple[int, ...], int] = {}
        self._module_by_hint: dict[str | None, tuple[Module | None, str | None]] = {}
        self._intervals: dict[int, tuple[Any, list]] = {}

    def intervals(self, module: Module | None) -> tuple[Any, list] | None:
        """(starts as int64 array, results) of ``module``'s AOT function lookup
        (``AotFile.function_intervals``) when the fast key applies to its native offsets."""
        if module is None or module.aot is None or \
                getattr(module.elf, "native_to_wasm", None) is not None:
            return None
        hit = self._intervals.get(id(module))
        if hit is None:
            import numpy as np
            starts, results = module.aot.function_intervals()
            hit = self._intervals[id(module)] = (np.array(starts, dtype=np.int64), results)
        return hit

    @property
    def has_modules(self) -> bool:
        return bool(self.symbolizer.modules.plugins)

    @property
    def modules_hash(self) -> str:
        """A short hash of the module set (what every input records it was derived with;
        :mod:`wasmprof.server.profile_rebuild`)."""
        return modules_hash(self.module_key)

    def _module_for(self, raw: RawFrame) -> tuple[Module | None, str | None]:
        hit = self._module_by_hint.get(raw.module)
        if hit is None:
            hit = self._module_by_hint[raw.module] = self.symbolizer.modules.for_frame(raw)
        return hit

    def key(self, raw: RawFrame) -> tuple[tuple, Module | None, bool]:
        """(cache key, module, caller) of a raw frame: frames with one key resolve alike."""
        caller = raw.index > 0 and raw.space in _CALLER_SPACES and not raw.native
        if raw.native:
            return ("h", raw.printed_name, raw.module), None, caller
        module, _why = self._module_for(raw)
        probe = raw.offset - 1 if caller and raw.offset else raw.offset
        if (module is not None and raw.space is AddressSpace.NATIVE and probe is not None
                and module.aot is not None and raw.aot_index is None and raw.func_index is None
                and raw.printed_name is None
                and getattr(module.elf, "native_to_wasm", None) is None):
            starts, results = self.intervals(module)  # type: ignore[misc]
            hit = results[int(starts.searchsorted(probe, side="right")) - 1]
            if hit is not None:
                return ("f", id(module), hit, caller), module, caller
        return (("r", id(module) if module is not None else None, raw.space, raw.aot_index,
                 raw.func_index, probe, raw.printed_name, raw.module, caller, raw.truncated),
                module, caller)

    def chain_at(self, fast_key: tuple | None, ident: str | None, pos: int, leaf: bool,
                 cols: Any) -> Chain:
        """:meth:`chain` of position ``pos`` of an AgentColumns batch (a host frame when
        ``ident`` is None), cached under ``fast_key`` when given (the aggregate_columns
        interval key: every PC with that key has the same chain)."""
        if fast_key is not None:
            hit = self._chains.get(fast_key)
            if hit is not None:
                return hit
        off = int(cols.offset[pos])
        if ident is None:
            raw = RawFrame(index=0, space=AddressSpace.NATIVE, offset=off, native=True)
        else:
            raw = RawFrame(index=0 if leaf else 1, space=AddressSpace.NATIVE, offset=off,
                           module=ident)
        hit = self.chain(raw)
        if fast_key is not None:
            self._chains[fast_key] = hit
        return hit

    def stack_id(self, fids: tuple[int, ...]) -> int:
        """:func:`stack_id`, memoized (the same stacks come back batch after batch)."""
        sid = self._stack_ids.get(fids)
        if sid is None:
            if len(self._stack_ids) >= MAX_CACHED_KEYS:
                self._stack_ids.clear()
            sid = self._stack_ids[fids] = stack_id(fids)
        return sid

    def chain(self, raw: RawFrame) -> Chain:
        """The resolution of one raw frame: frame ids (innermost first) and, per id, its
        content and (for a pending frame) the raw key kept to resolve it later."""
        key, module, caller = self.key(raw)
        hit = self._chains.get(key)
        if hit is not None:
            return hit
        with self.lock:
            frames = self.symbolizer.frames_for(raw)
        pending = None
        if not raw.native and frames and frames[-1].status in _UNRESOLVED and (
                raw.offset is not None or raw.aot_index is not None or raw.func_index is not None):
            pending = orjson.dumps(raw_key(raw, caller)).decode()
        identity = module.identity if module is not None else None
        ids, info = [], []
        for f in frames:
            c = frame_content(f, identity)
            fid = frame_id(c if pending is None else (*c, "pending", self.plugin, self.version,
                                                      pending))
            ids.append(fid)
            info.append((fid, c, pending))
        hit = Chain(tuple(ids), tuple(info))
        if len(self._chains) >= MAX_CACHED_KEYS:
            self._chains.clear()
            self.symbolizer = make_symbolizer(self.modules, self.resolver)  # its cache too
        self._chains[key] = hit
        return hit


@dataclass(frozen=True, slots=True)
class Chain:
    """One raw frame resolved: ``ids`` innermost first; ``info`` = (id, content, pending raw
    key JSON or None) per id."""

    ids: tuple[int, ...]
    info: tuple[tuple[int, FrameContent, str | None], ...]

    @property
    def pending(self) -> bool:
        return any(p is not None for _, _, p in self.info)


@dataclass(slots=True)
class SeriesKey:
    plugin: str | None
    version: str | None
    thread: str | None
    unit: str
    labels: dict[str, str]

    def key(self) -> str:
        return orjson.dumps([self.plugin, self.version, self.thread, self.unit,
                             sorted(self.labels.items())]).decode()


@dataclass(slots=True)
class AggregatedBatch:
    series: list[SeriesKey] = field(default_factory=list)
    frames: dict[int, FrameContent] = field(default_factory=dict)
    stacks: dict[int, tuple[int, ...]] = field(default_factory=dict)
    cells: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)
    pending: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    known: dict[int, tuple[FrameContent, str | None]] = field(default_factory=dict)
    stack_pending: set[tuple[int, int]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    weight: int = 0
    start: float | None = None
    end: float | None = None
    width: int = BASE_WIDTH
    modules: str | None = None        # ScopeResolver.modules_hash of the module set used

    def use(self, chain: Chain) -> tuple[int, ...]:
        """Note the frames of a chain this batch uses; its ids."""
        for fid, content, pending in chain.info:
            self.known[fid] = (content, pending)
        return chain.ids

    def add_stack(self, fids: tuple[int, ...], scope: ScopeResolver) -> int:
        """Record a stack (and its frames, and which of them are pending); its id."""
        sid = scope.stack_id(fids)
        self.stacks[sid] = fids
        for fid in fids:
            content, pending = self.known[fid]
            self.frames[fid] = content
            if pending is not None:
                self.stack_pending.add((fid, sid))
                self.pending[fid] = (scope.plugin, scope.version, pending)
        return sid


def aggregate(profiles: Sequence[Profile], scope: ScopeResolver, *, plugin: str | None,
              version: str | None, labels: dict[str, str], anchor: float,
              shift: float | Sequence[float] = 0.0, width: int = BASE_WIDTH) -> AggregatedBatch:
    """Symbolize and sum ``profiles`` into (series, bucket, stack) counts.

    A sample's time is ``timestamp + shift`` (``shift``, one value or one per profile, moves a
    recording's relative clock to wall time), or ``anchor`` when it has none. Series = plugin + version + labels (the
    request's, the profile's and the sample's) + thread + unit."""
    out = AggregatedBatch(width=width, modules=scope.modules_hash)
    series_index: dict[tuple, int] = {}
    by_fids: dict[tuple[int, ...], int] = {}
    cells: dict[tuple[int, int], dict[tuple[int, ...], int]] = {}
    shifts = [shift] * len(profiles) if isinstance(shift, (int, float)) else list(shift)
    for profile, shift_p in zip(profiles, shifts, strict=True):
        base_labels = {**profile.labels, **labels}
        raw_ids: dict[int, tuple[int, ...]] = {}
        stack_fids: dict[int, tuple[int, ...]] = {}
        for s in profile.samples:
            st = s.stack
            fids = stack_fids.get(id(st))
            if fids is None:
                parts: list[int] = []
                for r in st:
                    c = raw_ids.get(id(r))
                    if c is None:
                        c = raw_ids[id(r)] = out.use(scope.chain(r))
                    parts += c
                fids = stack_fids[id(st)] = tuple(parts)
            # the profile's labels too: a perf script parses into one profile per event
            skey = (profile.unit, s.thread, tuple(sorted(s.labels.items())) if s.labels else (),
                    tuple(sorted(profile.labels.items())))
            si = series_index.get(skey)
            if si is None:
                si = series_index[skey] = len(out.series)
                out.series.append(SeriesKey(plugin, version, s.thread, profile.unit,
                                            {**base_labels, **s.labels}))
            t = s.timestamp + shift_p if s.timestamp is not None else anchor
            if out.start is None or t < out.start:
                out.start = t
            if out.end is None or t > out.end:
                out.end = t
            cell_key = (si, int(t // width) * width)
            cell = cells.get(cell_key)
            if cell is None:
                cell = cells[cell_key] = {}
            cell[fids] = cell.get(fids, 0) + s.count
            out.samples += 1
            out.weight += s.count
        out.notes.extend(profile.notes)
    for cell_key, cell in cells.items():
        dst = out.cells[cell_key] = {}
        for fids, n in cell.items():
            sid = by_fids.get(fids)
            if sid is None:
                sid = by_fids[fids] = out.add_stack(fids, scope)
            dst[sid] = dst.get(sid, 0) + n
    out.notes.extend(scope.notes)
    return out


def aggregate_columns(cols: Any, scope: ScopeResolver, *, plugin: str | None,
                      version: str | None, labels: dict[str, str], anchor: float,
                      width: int = BASE_WIDTH) -> AggregatedBatch:
    """:func:`aggregate` for an :class:`~wasmprof.ingest.agent_json.AgentColumns` batch, on
    arrays: PCs are collapsed to their resolution key with one vectorized bisect per module
    (AOT function intervals), each distinct key is resolved once through
    :meth:`ScopeResolver.chain` (the same Symbolizer call as the general path), and samples
    are summed per (series, bucket, stack) with numpy. Equal to ``aggregate`` on
    ``parse_agent_json`` of the same batch (tested)."""
    import numpy as np

    n_pos = len(cols.offset)
    is_leaf = np.zeros(n_pos, dtype=bool)
    is_leaf[cols.starts[:-1]] = True
    # an integer code per position whose distinct values need one chain() each
    code = np.full(n_pos, -1, dtype=np.int64)
    #: per code: (chain cache key or None, module ident (None: host frame), a position)
    reps: list[tuple[tuple | None, str | None, int]] = []
    host = cols.module < 0
    if host.any():
        code[host] = 0
        reps.append((None, None, int(np.flatnonzero(host)[0])))
    for j, ident in enumerate(cols.modules):
        sel = np.flatnonzero(cols.module == j)
        if not len(sel):
            continue
        off = cols.offset[sel].astype(np.int64) if int(cols.offset[sel].max()) < 1 << 63 \
            else None
        probe_raw = RawFrame(index=0, space=AddressSpace.NATIVE, offset=1, module=ident)
        module, _why = scope._module_for(probe_raw)
        intervals = scope.intervals(module) if off is not None else None
        if intervals is not None:
            starts_arr, results = intervals
            caller = ~is_leaf[sel]
            probe = off - (caller & (off > 0)).astype(np.int64)
            iv = np.searchsorted(starts_arr, probe, side="right") - 1
            none_iv = np.array([results[i] is None for i in range(len(results))])[iv]
            combo = iv * 2 + caller
            fast = ~none_iv
            fast_pos = sel[fast]
            uniq, first, inv = np.unique(combo[fast], return_index=True, return_inverse=True)
            base = len(reps)
            # (function interval, caller) resolves alike for every PC in it: its chain is
            # cached under that key, so a warm scope skips RawFrame and key() per distinct PC
            for c, pos in zip(uniq.tolist(), fast_pos[first].tolist()):
                reps.append((("iv", id(module), c >> 1, c & 1), ident, pos))
            code[fast_pos] = base + inv
            slow = sel[none_iv]
        else:
            slow = sel
        if len(slow):                                  # per-address keys (no fast lookup)
            key = cols.offset[slow].astype(np.uint64)
            caller = ~is_leaf[slow]
            pairs: dict[tuple[int, bool], int] = {}
            for p, o, c in zip(slow.tolist(), key.tolist(), caller.tolist()):
                k = pairs.get((o, c))
                if k is None:
                    k = pairs[(o, c)] = len(reps)
                    reps.append((None, ident, p))
                code[p] = k
    out = AggregatedBatch(width=width, modules=scope.modules_hash)
    chains = [out.use(scope.chain_at(fk, ident, pos, bool(is_leaf[pos]), cols))
              for fk, ident, pos in reps]
    # distinct stacks: samples as byte strings of their position codes
    code32 = code.astype(np.int32 if len(reps) < 1 << 31 else np.int64)
    buf = code32.tobytes()
    w = code32.itemsize
    st = (cols.starts * w).tolist()
    stack_index: dict[bytes, int] = {}
    add = stack_index.setdefault
    sample_stack = np.array([add(buf[a:b], len(stack_index)) for a, b in zip(st, st[1:])],
                            dtype=np.int64)
    stack_ids: list[int] = []
    for b in stack_index:
        fids: list[int] = []
        for c in np.frombuffer(b, dtype=code32.dtype).tolist():
            fids += chains[c]
        stack_ids.append(out.add_stack(tuple(fids), scope))
    # series per sample: thread + sample labels (+ the batch's labels and the request's)
    base_labels = {**cols.batch_labels, **labels}
    series_index: dict[Any, int] = {}
    if any(cols.labels):
        keys: list[Any] = [(th, tuple(sorted(lb.items()))) for th, lb in zip(cols.threads, cols.labels)]
    else:
        keys = cols.threads
    for i, sk in enumerate(keys):
        if sk not in series_index:
            series_index[sk] = len(out.series)
            lb = cols.labels[i]
            out.series.append(SeriesKey(plugin, version, cols.threads[i], "samples",
                                        {**base_labels, **lb}))
    sample_series = np.fromiter(map(series_index.__getitem__, keys), dtype=np.int64,
                                count=len(keys))
    ts = np.where(np.isnan(cols.timestamps), anchor, cols.timestamps)
    buckets = (np.floor(ts / width) * width).astype(np.int64)
    b0 = int(buckets.min())
    rel = (buckets - b0) // width
    n_stacks, n_rel = len(stack_index), int(rel.max()) + 1
    key = (sample_series * n_rel + rel) * n_stacks + sample_stack
    from wasmprof.server.profile_codec import sum_pairs
    ukeys, sums = sum_pairs(key, cols.counts)
    for k, c in zip(ukeys.tolist(), sums.tolist()):
        sk, stk = divmod(k, n_stacks)
        si, r = divmod(sk, n_rel)
        cell = out.cells.setdefault((si, b0 + r * width), {})
        sid = stack_ids[stk]
        cell[sid] = cell.get(sid, 0) + c
    out.samples = len(cols)
    out.weight = int(cols.counts.sum())
    out.start, out.end = float(ts.min()), float(ts.max())
    out.notes.extend(scope.notes)
    return out
