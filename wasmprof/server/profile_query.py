"""Profile queries on the store: a :class:`Selection` → summed counts → SymbolizedProfile.

Cost is O(count rows in the range) for the sums, done on compact arrays
(:func:`~wasmprof.server.profile_codec.decode_many`), then O(distinct stacks) to build the
:class:`~wasmprof.profiles.SymbolizedProfile` the existing writers take (speedscope, folded,
SVG, function table, diff): one sample per (series, distinct stack) holding the summed count.

A selection is ``plugin`` + ``version`` + ``labels`` (all must match; ``thread`` is matched as
a label) + time range (``from``/``to``: unix seconds or ISO 8601). Buckets overlapping the range
are counted whole, so the range's resolution is the bucket width (10 s, coarser once
downsampled).

Every query runs under a :class:`QueryBudget`: a wall-clock deadline (→ 503), a cap on the
(stack, count) pairs it may read (→ 413 naming what to narrow) and a cancel flag set when the
HTTP client disconnects.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from wasmprof.errors import NotFoundError, UsageError, WasmprofError
from wasmprof.model import Frame, FrameStatus, Sample
from wasmprof.profiles import SymbolizedProfile
from wasmprof.server import profile_rollup as rollup
from wasmprof.server.profile_codec import decode_many, sum_pairs
from wasmprof.server.profile_store import ProfileStore, chunks, marks
from wasmprof.store.db import Database, Tx

MAX_WIDTH = 3600                     # the coarsest bucket: rows starting this early may overlap


class QueryTooLarge(WasmprofError):
    """The selection holds more data than one query may read (HTTP 413)."""

    http_status = 413


class QueryTimeout(WasmprofError):
    """The query ran out of its time budget (HTTP 503)."""

    http_status = 503


class QueryCancelled(WasmprofError):
    """The client went away; nobody reads the answer."""

    http_status = 499


@dataclass(slots=True)
class QueryBudget:
    seconds: float = 30.0
    max_pairs: int = 40_000_000
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def check(self, pairs: int, what: str) -> None:
        if self.cancel.is_set():
            raise QueryCancelled("client disconnected", source="profiles")
        if pairs > self.max_pairs:
            raise QueryTooLarge(
                f"the selection holds more than {self.max_pairs:,} (stack, bucket) counts",
                source="profiles", expected="a shorter time range (from/to), a plugin, a "
                "version or labels", found=what)
        if time.monotonic() - self.started > self.seconds:
            raise QueryTimeout(f"query took longer than its {self.seconds:g} s budget",
                               source="profiles", expected="a shorter time range (from/to), "
                               "a plugin, a version or labels", found=what)


def parse_time(value: str | float | None, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        t = float(value)
    else:
        try:
            t = float(value)
        except ValueError:
            try:
                d = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError("bad time", source=what, expected="unix seconds or ISO 8601",
                                 found=value[:40]) from None
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            t = d.timestamp()
    if not math.isfinite(t) or abs(t) > 1e11:
        raise UsageError("bad time", source=what, expected="unix seconds or ISO 8601",
                         found=str(value)[:40])
    return t


def parse_labels(text: str | None) -> dict[str, str]:
    """``"k1:v1,k2=v2"`` -> dict."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        sep = ":" if ":" in part else "="
        if sep not in part:
            raise UsageError("bad label", source="labels", expected="key:value[,key:value]",
                             found=part[:60])
        k, v = part.split(sep, 1)
        out[k.strip()] = v.strip()
    return out


@dataclass(slots=True)
class Selection:
    plugin: str | None = None
    version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None

    @classmethod
    def from_params(cls, params: dict[str, str], prefix: str = "") -> "Selection":
        g = lambda k: params.get(prefix + k)  # noqa: E731
        return cls(plugin=g("plugin") or None, version=g("version") or None,
                   labels=parse_labels(g("labels")), start=parse_time(g("from"), prefix + "from"),
                   end=parse_time(g("to"), prefix + "to"))

    def describe(self) -> str:
        parts = [f"plugin={self.plugin}" if self.plugin else "all plugins"]
        if self.version:
            parts.append(f"version={self.version}")
        parts += [f"{k}={v}" for k, v in sorted(self.labels.items())]
        return " ".join(parts)


@dataclass(slots=True)
class Series:
    id: int
    plugin: str | None
    version: str | None
    thread: str | None
    unit: str
    labels: dict[str, str]


@dataclass(slots=True)
class Sums:
    """Summed counts of a selection per group of series (``group_by``): (stack ids, counts).

    ``group_by="series"`` keeps every series apart (labels and thread on each sample);
    ``"thread"`` merges series with one thread and unit (what speedscope shows: one profile per
    thread); ``None`` merges everything of one unit (flame graph, table, diff): the profile then
    has one sample per distinct stack."""

    series: dict[int, Series]
    groups: dict[Any, tuple[np.ndarray, np.ndarray]]
    members: dict[Any, Series]                 # a series of each group (thread, unit, labels)
    used: set[int] = field(default_factory=set)  # series that had counts in the range
    first: float | None = None
    last: float | None = None
    rows: int = 0
    pairs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(int(c.sum()) for _, c in self.groups.values()))


def _group_key(ser: Series, group_by: str | None) -> Any:
    if group_by == "series":
        return ser.id
    if group_by == "thread":
        return (ser.unit, ser.thread)
    return ser.unit


def series_where(sel: Selection) -> tuple[str, list[Any]]:
    """SQL condition + parameters for the plugin/version of a selection (series and inputs
    tables both have these columns)."""
    where, params = ["1 = 1"], []
    if sel.plugin:
        where.append("plugin = ?")
        params.append(sel.plugin)
    if sel.version:
        where.append("version = ?")
        params.append(sel.version)
    return " AND ".join(where), params


def matching_series(tx: Tx, sel: Selection) -> dict[int, Series]:
    where, params = series_where(sel)
    out: dict[int, Series] = {}
    for r in tx.all(f"SELECT id, plugin, version, thread, unit, labels FROM profile_series "
                    f"WHERE {where}", params):
        labels = orjson.loads(r["labels"]) if r["labels"] else {}
        ok = True
        for k, v in sel.labels.items():
            have = r["thread"] if k == "thread" and k not in labels else labels.get(k)
            if have != v:
                ok = False
                break
        if ok:
            out[int(r["id"])] = Series(int(r["id"]), r["plugin"], r["version"], r["thread"],
                                       r["unit"], labels)
    return out


def one_event(tx: Tx, series: dict[int, Series], sel: Selection
              ) -> tuple[dict[int, Series], list[str]]:
    """Series of several perf events (a recording of ``-e cycles,instructions``) are never
    summed: without an ``event`` label in the selection, the event with the most samples in
    the range is kept (the store does not know which came first in the file), and a note
    says which events there were."""
    if "event" in sel.labels:
        return series, []
    by_event: dict[str, list[int]] = {}
    for sid, ser in series.items():
        ev = ser.labels.get("event")
        if ev is not None:
            by_event.setdefault(ev, []).append(sid)
    if len(by_event) < 2:
        return series, []
    rng, rparams = _range_sql(sel)
    totals: dict[str, int] = {}
    for ev, sids in by_event.items():
        n = 0
        for part in chunks(sorted(sids), 400):
            row = tx.one(f"SELECT SUM(samples) AS n FROM profile_counts WHERE series_id IN "
                         f"({marks(len(part))}){rng}", [*part, *rparams])
            n += int(row["n"] or 0) if row else 0
        totals[ev] = n
    keep = max(sorted(totals), key=totals.__getitem__)
    kept = {sid: ser for sid, ser in series.items() if ser.labels.get("event", keep) == keep}
    listing = ", ".join(f"{ev} ({n:,} samples)" for ev, n in sorted(totals.items()))
    return kept, [f"events in the selection: {listing}; showing {keep} (select another with "
                  f"labels=event:NAME)"]


def _range_sql(sel: Selection) -> tuple[str, list[Any]]:
    where, params = [], []
    if sel.start is not None:
        where.append("bucket >= ? AND bucket + width > ?")
        params += [int(math.floor(sel.start)) - MAX_WIDTH, sel.start]
    if sel.end is not None:
        where.append("bucket <= ?")
        params.append(sel.end)
    return (" AND " + " AND ".join(where)) if where else "", params


class ProfileQuery:
    def __init__(self, db: Database, store: ProfileStore) -> None:
        self.db = db
        self.store = store

    def sums(self, tx: Tx, sel: Selection, budget: QueryBudget,
             group_by: str | None = "series", *, rollups: bool = True) -> Sums:
        """Summed counts of ``sel``. Without label filters and per-series groups, the hours and
        days entirely inside the range are read from the rollups
        (:mod:`~wasmprof.server.profile_rollup`; exactly the same sums), the rest raw;
        ``rollups=False`` reads everything raw."""
        series, event_notes = one_event(tx, matching_series(tx, sel), sel)
        out = Sums(series=series, groups={}, members={}, notes=event_notes)
        if not series:
            return out
        rng, rparams = _range_sql(sel)
        acc: dict[Any, list[tuple[np.ndarray, np.ndarray]]] = {}
        blobs: dict[Any, list[bytes]] = {}
        sizes: dict[Any, int] = {}
        gkey = {sid: _group_key(ser, group_by) for sid, ser in series.items()}
        bounds = [math.inf, -math.inf]

        def flush(g: Any) -> None:                 # decode a group's rows, keep memory bounded
            if blobs.get(g):
                acc.setdefault(g, []).append(sum_pairs(*decode_many(blobs.pop(g))))
            if len(acc.get(g, ())) > 1 and sum(len(a) for a, _ in acc[g]) > 2_000_000:
                acc[g] = [sum_pairs(np.concatenate([a for a, _ in acc[g]]),
                                    np.concatenate([b for _, b in acc[g]]))]

        def take(g: Any, member: Series, data: bytes, n: int, lo: int, hi: int) -> None:
            blobs.setdefault(g, []).append(data)
            out.members.setdefault(g, member)
            sizes[g] = sizes.get(g, 0) + n
            out.pairs += n
            out.rows += 1
            if lo < bounds[0]:
                bounds[0] = lo
            if hi > bounds[1]:
                bounds[1] = hi
            if sizes[g] > 1_000_000:
                flush(g)
                sizes[g] = 0

        def raw(ids: list[int], extra: str, xparams: list[Any]) -> None:
            for part in chunks(ids, 400):
                cur = tx.execute(f"SELECT series_id, bucket, width, stacks, data FROM "
                                 f"profile_counts WHERE series_id IN ({marks(len(part))})"
                                 f"{rng}{extra}", [*part, *rparams, *xparams])
                while True:
                    rows = cur.fetchmany(2000)
                    if not rows:
                        break
                    for r in rows:
                        sid, bucket = r["series_id"], r["bucket"]
                        out.used.add(sid)
                        take(gkey[sid], series[sid], r["data"], int(r["stacks"]), bucket,
                             bucket + r["width"])
                    budget.check(out.pairs, f"{out.rows:,} count rows, {out.pairs:,} counts so far")

        ids = sorted(series)
        c = (rollup.cover(sel.start, sel.end, 0, 10 ** 11)
             if rollups and group_by != "series" and not sel.labels else None)
        if c is None or c.empty:
            raw(ids, "", [])
        else:
            self._rolled_up(tx, sel, c, series, gkey, take, raw, out)
            budget.check(out.pairs, f"{out.rows:,} count rows, {out.pairs:,} counts so far")
        for g in list(blobs):
            flush(g)
        for g, parts in acc.items():
            out.groups[g] = sum_pairs(np.concatenate([a for a, _ in parts]),
                                      np.concatenate([b for _, b in parts]))
        if out.rows:
            out.first, out.last = float(bounds[0]), float(bounds[1])
        return out

    @staticmethod
    def _rolled_up(tx: Tx, sel: Selection, c: "rollup.Cover", series: dict[int, Series],
                   gkey: dict[int, Any], take: Any, raw: Any, out: Sums) -> None:
        """The rollup rows of the cover ``c`` (skipping dirty days), the raw rows of the
        edges and of the dirty days."""
        dirty = rollup.dirty_days(tx, c.hour_lo, c.hour_hi)    # first: see profile_rollup
        by_group: dict[tuple[str, str, str], int] = {}         # (scope, rollup group) -> series
        by_scope: dict[tuple[str, str], list[int]] = {}
        for sid, ser in sorted(series.items()):
            sc = rollup.scope_of(ser.plugin, ser.version)
            by_group.setdefault((*sc, rollup.group_key(ser.unit, ser.thread, ser.labels)), sid)
            by_scope.setdefault(sc, []).append(sid)
        cur = rollup.rollup_rows(tx, c, sel.plugin, sel.version)
        while True:
            rows = cur.fetchmany(2000)
            if not rows:
                break
            for r in rows:
                sc = (r["plugin"], r["version"])
                sid = by_group.get((*sc, r["gkey"]))
                if sid is None or (*sc, int(r["bucket"]) // rollup.DAY * rollup.DAY) in dirty:
                    continue
                out.used.update(int(x) for x in rollup.unpack_series(r["series"])
                                if int(x) in series)
                take(gkey[sid], series[sid], r["data"], int(r["stacks"]), int(r["lo"]),
                     int(r["hi"]))
        raw(sorted(series), " AND (bucket < ? OR bucket >= ?)", [c.hour_lo, c.hour_hi])
        for p, v, day in sorted(dirty):
            ids = by_scope.get((p, v))
            lo, hi = max(day, c.hour_lo), min(day + rollup.DAY, c.hour_hi)
            if ids and hi > lo:
                raw(ids, " AND bucket >= ? AND bucket < ?", [lo, hi])

    def notes(self, tx: Tx, series_ids: Iterable[int]) -> list[str]:
        out: list[str] = []
        for part in chunks(sorted(series_ids), 400):
            out += [r["note"] for r in tx.all(
                f"SELECT DISTINCT note FROM profile_notes WHERE series_id IN ({marks(len(part))})",
                part)]
        return sorted(set(out))[:200]

    def profile(self, sel: Selection, budget: QueryBudget | None = None,
                group_by: str | None = "series") -> SymbolizedProfile:
        """The SymbolizedProfile of a selection (UsageError when nothing matches); samples are
        one per (group of series, distinct stack), see :class:`Sums`."""
        budget = budget or QueryBudget()
        with self.db.read() as tx:
            sums = self.sums(tx, sel, budget, group_by)
            if not sums.groups:
                raise NotFoundError("no profile data matches the selection", source="profiles",
                                 found=sel.describe())
            return self.build(tx, sel, sums, budget)

    def build(self, tx: Tx, sel: Selection, sums: Sums, budget: QueryBudget) -> SymbolizedProfile:
        all_ids: set[int] = set()
        for k, _ in sums.groups.values():
            all_ids.update(k.tolist())
        stacks = self.store.stacks(tx, all_ids)
        fids: set[int] = set()
        for s in stacks.values():
            fids.update(s)
        frames = self.store.frames(tx, fids)
        budget.check(0, f"{len(all_ids):,} stacks")
        missing = Frame(function=None, status=FrameStatus.UNKNOWN,
                        reason="frame missing from the store (damaged data)")
        tuples: dict[int, tuple[Frame, ...]] = {
            sid: tuple(frames.get(f, missing) for f in s) for sid, s in stacks.items()}
        samples: list[Sample] = []
        units: set[str] = set()
        per_series = all(isinstance(g, int) for g in sums.groups)
        for g, (keys, counts) in sorted(sums.groups.items(), key=lambda kv: str(kv[0])):
            ser = sums.members[g]
            units.add(ser.unit)
            labels: dict[str, str] = {}
            if per_series:
                labels = {**ser.labels}
                if ser.plugin:
                    labels.setdefault("plugin", ser.plugin)
                if ser.version:
                    labels.setdefault("version", ser.version)
            thread = ser.thread if per_series or isinstance(g, tuple) else None
            for k, c in zip(keys.tolist(), counts.tolist()):
                st = tuples.get(k)
                if st is None or not c:
                    continue
                samples.append(Sample(stack=st, count=c, timestamp=None, thread=thread,
                                      labels=labels))
        status: dict[str, int] = {}
        for f in frames.values():
            if not f.inlined:
                status[str(f.status)] = status.get(str(f.status), 0) + 1
        notes = self.notes(tx, sums.used) + sums.notes
        unit = sorted(units)[0] if units else "samples"
        if len(units) > 1:
            notes.append(f"merged profiles with different units: {sorted(units)}")
        plugins = {sums.series[i].plugin for i in sums.used}
        return SymbolizedProfile(
            samples=samples, unit=unit, name=sel.describe(),
            plugin=next(iter(plugins)) if len(plugins) == 1 else None,
            labels=dict(sel.labels), start=sums.first, end=sums.last, source="profile store",
            notes=notes, distinct_frames=len(frames), status_counts=status)

    # -- time series ------------------------------------------------------------------------
    def timeline(self, sel: Selection, *, step: int | None, by: str, max_points: int = 2000
                 ) -> dict[str, Any]:
        """Samples per ``step`` seconds per group of series (``by``: plugin, version, thread,
        series, or a label name). A downsampled row wider than ``step`` is spread evenly over
        the steps it covers."""
        with self.db.read() as tx:
            series, _ = one_event(tx, matching_series(tx, sel), sel)
            where_range, rparams = _range_sql(sel)
            lo = sel.start
            hi = sel.end
            if series and (lo is None or hi is None):
                ids = sorted(series)
                got = [tx.one(f"SELECT MIN(bucket) AS lo, MAX(bucket + width) AS hi FROM "
                              f"profile_counts WHERE series_id IN ({marks(len(p))}){where_range}",
                              [*p, *rparams]) for p in chunks(ids, 400)]
                los = [g["lo"] for g in got if g and g["lo"] is not None]
                his = [g["hi"] for g in got if g and g["hi"] is not None]
                lo = lo if lo is not None else (min(los) if los else None)
                hi = hi if hi is not None else (max(his) if his else None)
            if not series or lo is None or hi is None:
                return {"from": sel.start, "to": sel.end, "step": step, "by": by,
                        "unit": "samples", "series": []}
            span = max(hi - lo, 1)
            if step is None:
                step = _nice_step(span / 240)
            step = max(int(step), 10)
            if span / step > max_points:
                raise UsageError("too many points", source="step",
                                 expected=f"at most {max_points} steps in the range (step >= "
                                 f"{math.ceil(span / max_points)})", found=str(step))
            base = int(math.floor(lo / step) * step)
            n = int(math.ceil((hi - base) / step))
            groups: dict[str, list[float]] = {}
            ids = sorted(series)
            for part in chunks(ids, 400):
                for r in tx.all(
                        f"SELECT series_id, width, bucket, SUM(samples) AS n FROM profile_counts "
                        f"WHERE series_id IN ({marks(len(part))}){where_range} "
                        f"GROUP BY series_id, width, bucket", [*part, *rparams]):
                    ser = series[r["series_id"]]
                    name = _group_name(ser, by)
                    vals = groups.setdefault(name, [0.0] * n)
                    b, w, total = int(r["bucket"]), int(r["width"]), float(r["n"])
                    first = max((b - base) // step, 0)
                    last = min((b + w - 1 - base) // step, n - 1)
                    if last < first:
                        continue
                    share = total / (last - first + 1)
                    for i in range(first, last + 1):
                        vals[i] += share
        units = {s.unit for s in series.values()}
        return {"from": base, "to": base + n * step, "step": step, "by": by,
                "unit": sorted(units)[0] if len(units) == 1 else "mixed",
                "series": [{"name": name, "points": [[base + i * step, round(v, 3)]
                                                     for i, v in enumerate(vals)]}
                           for name, vals in sorted(groups.items())]}

    # -- labels -------------------------------------------------------------------------
    def label_names(self, plugin: str | None) -> list[str]:
        with self.db.read() as tx:
            where, params = ("WHERE s.plugin = ?", [plugin]) if plugin else ("", [])
            names = {r["name"] for r in tx.all(
                "SELECT DISTINCT l.name AS name FROM profile_series_labels l JOIN profile_series s "
                f"ON s.id = l.series_id {where}", params)}
            has_thread = tx.one(f"SELECT id FROM profile_series s {where}"
                                + (" AND" if where else " WHERE") + " thread IS NOT NULL LIMIT 1",
                                params)
        names |= {"plugin", "version"} | ({"thread"} if has_thread else set())
        return sorted(names)

    def label_values(self, name: str, plugin: str | None, limit: int = 1000) -> list[str]:
        with self.db.read() as tx:
            if name in ("plugin", "version", "thread"):
                cond = f"{name} IS NOT NULL" + (" AND plugin = ?" if plugin else "")
                rows = tx.all(f"SELECT DISTINCT {name} AS v FROM profile_series WHERE {cond} "
                              f"ORDER BY v LIMIT {int(limit)}", [plugin] if plugin else [])
            else:
                where = " AND s.plugin = ?" if plugin else ""
                rows = tx.all("SELECT DISTINCT l.value AS v FROM profile_series_labels l JOIN "
                              f"profile_series s ON s.id = l.series_id WHERE l.name = ?{where} "
                              f"ORDER BY v LIMIT {int(limit)}", [name, *([plugin] if plugin else [])])
        return [r["v"] for r in rows]


def _group_name(ser: Series, by: str) -> str:
    if by == "plugin":
        return ser.plugin or "[no plugin]"
    if by == "version":
        return f"{ser.plugin or '?'} {ser.version or '[no version]'}"
    if by == "thread":
        return ser.thread or "[no thread]"
    if by == "series":
        parts = [ser.plugin or "?", *(f"{k}={v}" for k, v in sorted(ser.labels.items()))]
        if ser.version:
            parts.insert(1, ser.version)
        if ser.thread:
            parts.append(f"thread={ser.thread}")
        return " ".join(parts)
    return ser.labels.get(by) or (ser.thread if by == "thread" else None) or f"[no {by}]"


_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _nice_step(raw: float) -> int:
    for s in _STEPS:
        if s >= raw:
            return s
    return int(math.ceil(raw / 86400) * 86400)
