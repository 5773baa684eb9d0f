"""One streaming pass: parse, symbolize and aggregate samples in bounded memory.

:class:`ProfileAggregator` takes perf script records (:class:`wasmprof.ingest.perf_script.
PerfScriptReader`) or whole :class:`~wasmprof.model.Profile` objects and keeps only one entry
per distinct (event, thread, labels, symbolized stack), with summed weight and period; the
result is one :class:`~wasmprof.profiles.SymbolizedProfile` per event whose samples are those
aggregates (``timestamp=None``), which every writer in :mod:`wasmprof.flamegraph` accepts.

Memory: the per-frame caches are bounded (dropped and rebuilt past ``cache_limit``), the
aggregate grows with the number of distinct symbolized stacks, not with the input; the
optional :class:`~wasmprof.profiles.Timeline` (speedscope's time order) costs 12 bytes per run
of identical consecutive samples and is dropped, with a note, past ``timeline_limit`` runs.

Weights (``weight``): ``"samples"`` counts samples (a parsed Profile's ``count``);
``"period"`` sums perf's sample period where printed and counts 1 where not (what
``stackcollapse-perf.pl`` does). The profile's ``unit`` says which (``samples``, or for period
weighting ``nanoseconds`` for cpu-clock/task-clock, else the event name).

Frames are shared: the symbolizer's ``shared`` mode resolves AOT/JIT perf frames and host
frames once per function (they carry no line, so the offset does not matter) and identical
resolutions are one object, so the aggregate keys are small tuples of ints.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby, repeat
from operator import is_, itemgetter
from typing import Any

from wasmprof.addr2line.bulk import paused_gc
from wasmprof.model import AddressSpace, Frame, Profile, RawFrame, Sample
from wasmprof.module_match import ModuleMismatchError
from wasmprof.profiles import SymbolizedProfile, Symbolizer, Timeline, status_counts

WEIGHTS = ("samples", "period")
_SECOND = itemgetter(1)
_FIRST_ITEM = itemgetter(0)
_FOURTH = itemgetter(3)
_PERF = AddressSpace.PERF
_TIME_EVENTS = ("cpu-clock", "task-clock")


def period_unit(event: str) -> str:
    """The unit of perf's period for ``event``: ns for the software clocks, else events."""
    base = event.split(":", 1)[0]
    return "nanoseconds" if base in _TIME_EVENTS else (base or "period")


@dataclass(slots=True)
class EventSummary:
    name: str
    samples: int = 0
    period: int = 0
    with_period: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, "samples": self.samples, "period": self.period,
                "samples_with_period": self.with_period}


@dataclass(slots=True)
class _EventAgg:
    summary: EventSummary
    # key -> [samples, summed period, samples with a period, position in ``keys``]
    index: dict[tuple, list] = field(default_factory=dict)
    keys: list[tuple] = field(default_factory=list)      # (gid, sym ids, keep-alive)
    order: Any = None
    weights: Any = None
    last_run: dict[int, int] = field(default_factory=dict)   # gid -> position in order
    start: float = float("inf")
    end: float = float("-inf")
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    unit: str | None = None


def _content(f: Frame) -> tuple:
    return (f.function, f.raw_function, f.file, f.line, f.column, f.inlined, f.status,
            f.reason, f.wasm_index, f.module, f.native, f.kernel, f.printed_name)


class ProfileAggregator:
    """See the module doc. Feed with :meth:`add_records` / :meth:`add_profile`, then call
    :meth:`results` once."""

    def __init__(self, symbolizer: Symbolizer, *, weight: str = "samples",
                 timeline: bool = False, timeline_limit: int = 2_000_000,
                 cache_limit: int = 60_000) -> None:
        if weight not in WEIGHTS:
            raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
        self.symbolizer = symbolizer
        self.weight = weight
        self.timeline = timeline
        self.timeline_limit = timeline_limit
        self.cache_limit = cache_limit
        self.events: dict[str, _EventAgg] = {}
        self._runs = 0
        self._timeline_dropped = False
        self._groups: dict[tuple, int] = {}
        self._group_list: list[tuple[str | None, dict[str, str]]] = []
        self._labels: dict[tuple, dict[str, str]] = {}
        self._raw_sym: dict[int, int] = {}
        self._raw_keep: list[RawFrame] = []
        self._chains: dict[int, tuple[tuple, tuple[int, ...]]] = {}
        self._canon_chains: dict[tuple, tuple] = {}
        self._heads_info: dict[int, tuple[_EventAgg, int, int | None]] = {}
        self._canon: dict[tuple, int] = {}
        self._by_content: dict[tuple, int] = {}
        self._sym: list[tuple[Frame, ...]] = []

    # -- frames ---------------------------------------------------------------------------
    def _sym_id(self, raw: RawFrame) -> int:
        ck = None
        if raw.native or (raw.space is _PERF and (raw.aot_index is None or raw.module)):
            # Offset-free frames (most of a perf recording): one answer per function. (AOT
            # frames without a perf map are checked per offset against the function table.)
            ck = (raw.space, raw.aot_index, raw.func_index, raw.printed_name, raw.module,
                  raw.native, raw.kernel, raw.index > 0)
            sid = self._by_content.get(ck)
            if sid is not None:
                self._remember(raw, sid)
                return sid
        frames = self.symbolizer.frames_for(raw, shared=True)
        key = tuple(map(_content, frames))
        sid = self._canon.get(key)
        if sid is None:
            sid = self._canon[key] = len(self._sym)
            self._sym.append(tuple(
                f if f.address is None and f.input_index is None and f.raw_offset is None
                else dataclasses.replace(f, address=None, input_index=None, raw_offset=None)
                for f in frames))
        if ck is not None and (raw.native or self.symbolizer.offset_free(
                raw, self.symbolizer.modules.for_frame(raw)[0])):
            if len(self._by_content) >= self.cache_limit:
                self._by_content.clear()
            self._by_content[ck] = sid
        self._remember(raw, sid)
        return sid

    def _remember(self, raw: RawFrame, sid: int) -> None:
        if len(self._raw_sym) >= self.cache_limit:
            self._raw_sym.clear()
            self._raw_keep.clear()
            if len(self.symbolizer._frames) >= self.cache_limit:
                self.symbolizer._frames.clear()
        self._raw_sym[id(raw)] = sid
        self._raw_keep.append(raw)       # keeps id(raw) unique while it is a cache key

    def _event(self, name: str, source: str) -> _EventAgg:
        ev = self.events.get(name)
        if ev is None:
            ev = self.events[name] = _EventAgg(EventSummary(name))
            if self.timeline:
                ev.order, ev.weights = array("I"), array("q")
        if source not in ev.sources:
            ev.sources.append(source)
        return ev

    def _group(self, thread: str | None, labels: dict[str, str]) -> int:
        key = (thread, tuple(sorted(labels.items())) if labels else ())
        gid = self._groups.get(key)
        if gid is None:
            gid = self._groups[key] = len(self._group_list)
            self._group_list.append((thread, dict(labels)))
        return gid

    # -- input ----------------------------------------------------------------------------
    def add_records(self, records: Iterable[tuple], *, source: str) -> int:
        """Perf script records ``(event, period, timestamp, thread, labels, stack, callers)``
        (:class:`~wasmprof.ingest.perf_script.PerfScriptReader`); returns how many were
        read. Interned caller chains (``callers``) are symbolized once per chain. A
        :class:`~wasmprof.module_match.ModuleMismatchError` names ``source``."""
        try:
            with paused_gc():
                return self._add_records(records, source)
        except ModuleMismatchError as e:
            e.source = e.source or source
            raise

    def _add_records(self, records: Iterable[tuple], source: str) -> int:
        get = self._raw_sym.get
        chain_get = self._chains.get
        sym_id = self._sym_id
        by_period = self.weight == "period"
        gids: dict[tuple[str, int], int] = {}
        keep_labels: list[dict] = []
        cur_name: str | None = None
        ev: _EventAgg | None = None
        index: dict = {}
        keys: list = []
        n = 0
        start, end = float("inf"), float("-inf")
        timeline = self.timeline
        last_thread: object = None
        last_labels: object = None
        gid = 0
        for event, period, t, thread, labels, stack, callers in records:
            n += 1
            if event != cur_name:
                if ev is not None:
                    ev.start, ev.end = min(ev.start, start), max(ev.end, end)
                ev = self._event(event, source)
                index, keys, cur_name = ev.index, ev.keys, event
                start, end = ev.start, ev.end
            if thread is not last_thread or labels is not last_labels:
                gk = (thread, id(labels))
                gid = gids.get(gk)
                if gid is None:
                    gid = gids[gk] = self._group(thread, labels)
                    keep_labels.append(labels)
                last_thread, last_labels = thread, labels
            if callers is not None:
                hit = chain_get(id(callers))
                if hit is None:
                    hit = self._chain_ids(callers)     # one cids object per distinct chain
                cids = hit[1]
                lid = get(id(stack[0]))
                if lid is None:
                    lid = sym_id(stack[0])
                # id(cids) is unique while the entry holds cids (in ``keys``); a chain
                # re-interned after a cache flush may get a second entry for the same
                # stack, which the writers sum like any two samples with one stack.
                key = (gid, lid, id(cids))
                e = index.get(key)
                if e is None:
                    e = index[key] = [0, 0, 0, len(keys)]
                    keys.append((gid, (lid,) + cids, cids))
            else:
                ids = list(map(get, map(id, stack)))
                if None in ids:
                    ids = [sym_id(r) if i is None else i for i, r in zip(ids, stack)]
                ids = tuple(ids)
                key = (gid, ids)
                e = index.get(key)
                if e is None:
                    e = index[key] = [0, 0, 0, len(keys)]
                    keys.append((gid, ids, None))
            e[0] += 1
            if period is not None:
                e[1] += period
                e[2] += 1
            if t is not None:
                if t < start:
                    start = t
                if t > end:
                    end = t
            if timeline:
                self._run(ev, gid, e[3], (period if period is not None else 1) if by_period
                          else 1)
        if ev is not None:
            ev.start, ev.end = min(ev.start, start), max(ev.end, end)
        return n

    def add_reader(self, reader: Any, stream: Any, *, source: str) -> int:
        """All samples of a :class:`~wasmprof.ingest.perf_script.PerfScriptReader` over
        ``stream``: column batches (counted in bulk) when no timeline is kept, records
        otherwise. Returns how many samples were read."""
        try:
            with paused_gc():        # millions of small objects, no cycles: no GC passes
                self._heads_info = {}            # header ids are per reader
                n = 0
                for kind, batch in reader.batches(stream):
                    if kind == "rows":
                        n += self._add_records(batch, source)
                    else:
                        n += self._add_columns(batch, reader.heads, source)
                return n
        except ModuleMismatchError as e:
            e.source = e.source or source
            raise

    def _add_columns(self, cols: Any, heads: list, source: str) -> int:
        """One :class:`~wasmprof.ingest.perf_script.Columns` batch: symbol ids by C-level
        lookups, then one update per distinct (header, leaf, chain)."""
        get = self._raw_sym.get
        lids = list(map(get, map(id, cols.leaves)))
        if None in lids:
            lids = [self._sym_id(r) if i is None else i for i, r in zip(lids, cols.leaves)]
        chains = self._chains
        if cols.interned:
            hits = list(map(chains.get, map(id, cols.callers)))
            if True in map(is_, hits, repeat(None)):
                for i, h in enumerate(hits):
                    if h is None:
                        callers = cols.callers[i]
                        h = chains.get(id(callers))
                        if h is None:
                            h = self._chain_ids(callers)
                        hits[i] = h
        else:
            hits = [self._chain_ids(c, remember=False) for c in cols.callers]
        cid_objs = list(map(_SECOND, hits))
        cid_of = dict(zip(map(id, cid_objs), cid_objs))
        head_info = self._heads_info
        for hid in set(cols.heads) - set(head_info):
            hd = heads[hid]
            ev = self._event(hd.event, source)
            head_info[hid] = (ev, self._group(hd.thread, hd.labels), hd.period)
        ev = head_info[cols.heads[0]][0]            # one event per column batch
        ev.start, ev.end = min(ev.start, cols.start), max(ev.end, cols.end)
        counted = Counter(zip(cols.heads, lids, map(id, cid_objs)))
        entries: dict[tuple, list] = {}
        for hk, k in counted.items():
            hid, lid, ck = hk
            ev, gid, period = head_info[hid]
            key = (gid, lid, ck)
            e = ev.index.get(key)
            if e is None:
                cids = cid_of[ck]
                e = ev.index[key] = [0, 0, 0, len(ev.keys)]
                ev.keys.append((gid, (lid,) + cids, cids))
            e[0] += k
            if period is not None:
                e[1] += period * k
                e[2] += k
            entries[hk] = e
        if self.timeline:
            self._runs_of(ev, cols, lids, cid_objs, entries, head_info)
        return len(lids)

    def _runs_of(self, ev: _EventAgg, cols: Any, lids: list, cid_objs: list,
                 entries: dict, head_info: dict) -> None:
        """The batch's samples in time order as runs of one entry (see :meth:`_run`)."""
        by_period = self.weight == "period"
        idxs = map(_FOURTH, map(entries.__getitem__, zip(cols.heads, lids, map(id, cid_objs))))
        keys = ev.keys
        for idx, group in groupby(zip(idxs, cols.heads), key=_FIRST_ITEM):
            if not self.timeline:
                return
            if by_period:
                w = 0
                for _, hid in group:
                    period = head_info[hid][2]
                    w += period if period is not None else 1
            else:
                w = sum(1 for _ in group)
            self._run(ev, keys[idx][0], idx, w)

    def _drop_timeline(self) -> None:
        if not self._timeline_dropped:
            self._timeline_dropped = True
            self.timeline = False
            for e in self.events.values():
                e.order = e.weights = None

    def _chain_ids(self, callers: tuple, remember: bool = True
                   ) -> tuple[tuple, tuple[int, ...]]:
        """(callers, their symbol ids); ``remember``: cached for ``callers``' identity (an
        interned chain). The ids tuple is one object per distinct content."""
        get = self._raw_sym.get
        cids = list(map(get, map(id, callers)))
        if None in cids:
            cids = [self._sym_id(r) if i is None else i for i, r in zip(cids, callers)]
        cids = tuple(cids)
        canon = self._canon_chains
        cids = canon.setdefault(cids, cids)
        if not remember:
            if len(canon) >= self.cache_limit:
                canon.clear()
            return callers, cids
        chains = self._chains
        if len(chains) >= max(self.cache_limit // 4, 16):
            chains.clear()
            canon.clear()
        hit = chains[id(callers)] = (callers, cids)       # keeps id(callers) unique
        return hit

    def _run(self, ev: _EventAgg, gid: int, idx: int, w: int) -> None:
        pos = ev.last_run.get(gid)
        if pos is not None and ev.order[pos] == idx:
            ev.weights[pos] += w
            return
        if self._runs >= self.timeline_limit:
            self._drop_timeline()
            return
        ev.last_run[gid] = len(ev.order)
        ev.order.append(idx)
        ev.weights.append(w)
        self._runs += 1

    def add_profile(self, profile: Profile, *, source: str | None = None) -> int:
        """A parsed Profile (folded, agent JSON, WAMR profiler, or perf in memory): its
        ``event`` label (or none) decides the event; ``count`` is the sample weight (period
        weighting uses ``period`` where a sample has one)."""
        try:
            with paused_gc():
                return self._add_profile(profile, source)
        except ModuleMismatchError as e:
            e.source = e.source or source or profile.source
            raise

    def _add_profile(self, profile: Profile, source: str | None) -> int:
        name = profile.labels.get("event", "")
        ev = self._event(name, source or profile.source or "?")
        if profile.unit != "samples":
            ev.unit = profile.unit
        ev.notes.extend(n for n in profile.notes if n not in ev.notes)
        by_period = self.weight == "period"
        get = self._raw_sym.get
        for s in profile.samples:
            ids = tuple([self._sym_id(r) if (i := get(id(r))) is None else i for r in s.stack])
            gid = self._group(s.thread, s.labels)
            key = (gid, ids)
            e = ev.index.get(key)
            if e is None:
                e = ev.index[key] = [0, 0, 0, len(ev.keys)]
                ev.keys.append((gid, ids, None))
            e[0] += s.count
            if s.period is not None:
                e[1] += s.period
                e[2] += s.count
            w = s.period if by_period and s.period is not None else s.count
            if s.timestamp is not None:
                ev.start, ev.end = min(ev.start, s.timestamp), max(ev.end, s.timestamp)
            if self.timeline:
                self._run(ev, gid, e[3], w)
        if profile.start is not None:
            ev.start = min(ev.start, profile.start)
        if profile.end is not None:
            ev.end = max(ev.end, profile.end)
        return len(profile.samples)

    def note(self, event: str | None, text: str) -> None:
        """Add a note to one event's profile (None: to every event's)."""
        for name, ev in self.events.items():
            if (event is None or name == event) and text not in ev.notes:
                ev.notes.append(text)

    # -- output ---------------------------------------------------------------------------
    def summaries(self) -> list[EventSummary]:
        """Per event: samples read, summed period (1 for samples without one)."""
        out = []
        for ev in self.events.values():
            sm = ev.summary
            sm.samples = sum(e[0] for e in ev.index.values())
            sm.with_period = sum(e[2] for e in ev.index.values())
            sm.period = sum(e[1] for e in ev.index.values()) + sm.samples - sm.with_period
            out.append(sm)
        return out

    def results(self) -> list[SymbolizedProfile]:
        """One SymbolizedProfile per event, in order of first appearance (label ``event``
        when the input named one)."""
        out = []
        sym = self._sym
        stacks: dict[tuple, tuple[Frame, ...]] = {}
        extra = self.symbolizer.modules.notes + self.symbolizer.mismatch_notes()
        if self._timeline_dropped:
            extra = extra + [f"time order dropped after {self.timeline_limit:,} runs of "
                             "samples (bounded memory): samples are aggregated by stack"]
        self.summaries()
        by_period = self.weight == "period"
        for name, ev in self.events.items():
            samples = []
            used: dict[int, tuple[Frame, ...]] = {}
            entries = sorted(ev.index.values(), key=lambda e: e[3])
            for (gid, ids, _), (count, period, n_period, _) in zip(ev.keys, entries):
                w = period + count - n_period if by_period else count
                stack = stacks.get(ids)
                if stack is None:
                    chain: list[Frame] = []
                    for i in ids:
                        chain.extend(sym[i])
                        used[i] = sym[i]
                    stack = stacks[ids] = tuple(chain)
                else:
                    for i in ids:
                        used[i] = sym[i]
                thread, labels = self._group_list[gid]
                samples.append(Sample(stack, w, None, thread, labels,
                                      period if n_period else None))
            unit = ev.unit or ("samples" if self.weight == "samples" else period_unit(name))
            timeline = Timeline(ev.order, ev.weights) if ev.order is not None else None
            out.append(SymbolizedProfile(
                samples=samples, unit=unit, name=name or None,
                labels={"event": name} if name else {}, source=", ".join(ev.sources),
                start=ev.start if ev.start <= ev.end else None,
                end=ev.end if ev.start <= ev.end else None,
                notes=list(dict.fromkeys(ev.notes + extra)), distinct_frames=len(used),
                status_counts=status_counts(used), timeline=timeline,
                sample_count=ev.summary.samples, weight=self.weight))
        return out
