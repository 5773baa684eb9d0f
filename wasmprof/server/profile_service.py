"""Profiles: validated, symbolized and aggregated once at ingest; queried from the store.

- Ingest (:meth:`ProfileService.ingest`): parse with the CLI's parsers (``wasmprof.profiles``,
  ``wasmprof.ingest.agent_json`` with full validation, ``wasmprof.ingest.pprof``), symbolize
  with the CLI's Symbolizer through a cached :class:`~wasmprof.server.profile_ingest.ScopeResolver`
  per (plugin, version, module set), aggregate (:func:`~wasmprof.server.profile_ingest.aggregate`)
  and write the raw input (zstd-compressed, kept per the retention setting) together with its
  frames, stacks and counts in ONE transaction: acknowledged = queryable = durable.
- Queries (:class:`~wasmprof.server.profile_query.ProfileQuery`): sum counts over the range,
  build the profile from the distinct stacks and feed the existing writers.
- Background (:meth:`maintain`, a thread per replica; every step is safe with several
  replicas): backfill inputs stored before the store existed, re-resolve pending frames when
  a plugin's modules changed, rebuild the derived rows of a scope whose module set changed
  from its retained raw inputs (:mod:`wasmprof.server.profile_rebuild`), merge duplicate
  count rows and downsample old buckets (10 s → 1 min after a day → 1 h after a week),
  recompute the hourly/daily rollups of the days whose rows changed
  (:mod:`wasmprof.server.profile_rollup`), expire raw inputs.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from wasmprof.errors import UsageError, WasmprofError
from wasmprof.model import Module, Profile
from wasmprof.profiles import (PROFILE_FORMATS, SymbolizedProfile, assign_perf_map_modules,
                               detect_profile_format, parse_profile_stream)
from wasmprof.server import profile_rollup as rollup
from wasmprof.server.profile_codec import (decode_many, encode_arrays, merge_rows, pack_ids,
                                           stack_id, sum_pairs)
from wasmprof.server.profile_ingest import (AggregatedBatch, ScopeResolver, aggregate,
                                            aggregate_columns, raw_from_key)
from wasmprof.server.profile_query import (ProfileQuery, QueryBudget, QueryTimeout, Selection,
                                           parse_labels, parse_time)
from wasmprof.server.profile_rebuild import Rebuilder
from wasmprof.server.profile_store import ProfileStore, chunks, marks
from wasmprof.server.registry import ModuleRegistry
from wasmprof.store.db import now
from wasmprof.store.state import Store

__all__ = ["ProfileService", "ProfileSettings", "Selection", "parse_labels", "parse_time",
           "SERVICE_FORMATS", "EXPORT_FORMATS"]

log = logging.getLogger(__name__)

SERVICE_FORMATS = (*PROFILE_FORMATS, "pprof")
EXPORT_FORMATS = ("speedscope", "folded", "svg", "json", "pprof")
PLAUSIBLE_PAST = 400 * 86400.0
PLAUSIBLE_FUTURE = 86400.0
_DAY = 86400.0
_RETRY = {"DeadlockDetected", "SerializationFailure", "LockNotAvailable"}


def _env_float(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
    except ValueError:
        return default
    return v if math.isfinite(v) and v >= 0 else default


def parse_downsample(text: str) -> list[tuple[int, float]]:
    """``"60@1d,3600@7d"`` → [(60, 86400), (3600, 604800)]: (bucket seconds, age)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            width, age = part.split("@")
            w = int(width[:-1]) * units[width[-1]] if width[-1] in units else int(width)
            a = float(age[:-1]) * units[age[-1]] if age[-1] in units else float(age)
        except (ValueError, KeyError):
            raise UsageError("bad downsampling rule", source="WASMPROF_PROFILE_DOWNSAMPLE",
                             expected="WIDTH@AGE,… e.g. 1m@1d,1h@7d", found=part[:40]) from None
        out.append((w, a))
    return sorted(out)


@dataclass(slots=True)
class ProfileSettings:
    """Store policy; environment: ``WASMPROF_PROFILE_RETENTION_DAYS`` (raw inputs, default 7),
    ``WASMPROF_PROFILE_DOWNSAMPLE`` (default ``1m@1d,1h@7d``), ``WASMPROF_PROFILE_QUERY_SECONDS``
    (default 30), ``WASMPROF_PROFILE_QUERY_PAIRS`` (default 40M), ``WASMPROF_PROFILE_MAINTAIN_SECONDS``
    (pause between background passes, default 30)."""

    raw_retention: float = 7 * _DAY
    downsample: list[tuple[int, float]] = field(default_factory=lambda: [(60, _DAY), (3600, 7 * _DAY)])
    query_seconds: float = 30.0
    query_pairs: int = 40_000_000
    maintain_every: float = 30.0

    @classmethod
    def from_env(cls) -> "ProfileSettings":
        s = cls()
        s.raw_retention = _env_float("WASMPROF_PROFILE_RETENTION_DAYS", 7) * _DAY
        if os.environ.get("WASMPROF_PROFILE_DOWNSAMPLE") is not None:
            s.downsample = parse_downsample(os.environ["WASMPROF_PROFILE_DOWNSAMPLE"])
        s.query_seconds = _env_float("WASMPROF_PROFILE_QUERY_SECONDS", 30)
        s.query_pairs = int(_env_float("WASMPROF_PROFILE_QUERY_PAIRS", 40_000_000))
        s.maintain_every = _env_float("WASMPROF_PROFILE_MAINTAIN_SECONDS", 30)
        return s

    def budget(self) -> QueryBudget:
        return QueryBudget(seconds=self.query_seconds, max_pairs=self.query_pairs)


class _Conflict(Exception):
    """Another replica did this step first (roll back quietly)."""


class ProfileService:
    def __init__(self, store: Store, registry: ModuleRegistry, resolver: Any,
                 metrics: Any = None, resolve_lock: threading.Lock | None = None,
                 settings: ProfileSettings | None = None) -> None:
        """``resolve_lock`` guards every use of ``resolver`` (its caches are not
        thread-safe); services sharing one resolver must share the lock."""
        self.store = store
        self.db = store.db
        self.registry = registry
        self.resolver = resolver
        self.metrics = metrics
        self.resolve_lock = resolve_lock or threading.Lock()
        self.settings = settings or ProfileSettings.from_env()
        self.pstore = ProfileStore(self.db)
        self.query = ProfileQuery(self.db, self.pstore)
        self._scopes: dict[tuple[str, str], ScopeResolver] = {}
        self._scopes_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rebuilds = Rebuilder(self)
        self._planned_at = 0.0
        self._series_scope: dict[int, tuple[str, str]] = {}
        #: called after ingest with the stored (plugin, version) pair (module sources)
        self.on_ingest: Callable[..., Any] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="wasmprof-profiles",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.maintain()
            except Exception:  # noqa: BLE001 - keep the worker alive
                log.exception("profile store maintenance failed")
                busy = False
            self._stop.wait(0.05 if busy else self.settings.maintain_every)

    # -- scopes -------------------------------------------------------------------------
    def scope(self, plugin: str | None, version: str | None) -> ScopeResolver:
        """The cached resolver of (plugin, version) for its current module set."""
        rows = self.registry.rows(plugin=plugin) if plugin else []
        if version:
            rows = [r for r in rows if version in r["link_versions"]] or rows
        mkey = tuple((r["id"], r["companion_id"]) for r in rows)
        k = (plugin or "", version or "")
        sc = self._scopes.get(k)
        if sc is not None and sc.module_key == mkey:
            return sc
        mods: list[Module] = []
        for _row, m in self.registry.loaded(rows):
            mods.append(m)
            if m.companion is not None and m.companion not in mods:
                mods.append(m.companion)
        sc = ScopeResolver(plugin, version, mods, self.resolver, self.resolve_lock, mkey)
        with self._scopes_lock:
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[k] = sc
        return sc

    # -- ingest -------------------------------------------------------------------------
    @staticmethod
    def parse(fmt: str, data: bytes, aux: bytes | None, source: str,
              modules: Sequence[Module] = (), time_range: tuple[float, float] | None = None
              ) -> list[Profile]:
        """Parse one input with the CLI's code; a perf map's segments are assigned to
        ``modules`` first, as ``wasmprof flamegraph`` does."""
        if fmt == "agent-json":
            from wasmprof.ingest.agent_json import parse_agent_json
            return [parse_agent_json(data, source, time_range=time_range)]
        if fmt == "pprof":
            from wasmprof.ingest.pprof import parse_pprof
            return [parse_pprof(data, source)]
        from wasmprof.ingest.perf_map import parse_perf_map
        maps = []
        if aux:
            maps.append(parse_perf_map(aux.decode("utf-8", "replace"), source + " perf map"))
        notes = assign_perf_map_modules(maps, modules) if maps and modules else []
        profiles = parse_profile_stream(io.BytesIO(data), source=source, perf_maps=maps, fmt=fmt)
        for p in profiles:
            p.notes.extend(notes)
        return profiles

    @staticmethod
    def detect(data: bytes, name: str) -> str:
        if data[:2] == b"\x1f\x8b":
            return "pprof"
        return detect_profile_format(data[:1 << 16], name)

    def _prepare(self, data: bytes, *, fmt: str, aux: bytes | None, plugin: str | None,
                 version: str | None, labels: dict[str, str], source: str,
                 start: float | None, end: float | None, t: float
                 ) -> tuple[AggregatedBatch, str | None, dict[str, str], int, str | None]:
        """(batch, plugin, labels, sample count, input name) of one input."""
        rng = (t - PLAUSIBLE_PAST, t + PLAUSIBLE_FUTURE)
        if fmt == "agent-json":
            from wasmprof.ingest.agent_json import parse_agent_columns
            cols = parse_agent_columns(data, source, time_range=rng)
            if cols is not None:               # the common case, on arrays
                plugin = plugin or cols.plugin
                scope = self.scope(plugin, version)
                anchor = start if start is not None else (end if end is not None else t)
                batch = aggregate_columns(cols, scope, plugin=plugin, version=version,
                                          labels=labels, anchor=anchor)
                return batch, plugin, {**cols.batch_labels, **labels}, len(cols), cols.name
        if fmt in ("agent-json", "pprof"):
            profiles = self.parse(fmt, data, aux, source, time_range=rng)
            plugin = plugin or profiles[0].plugin
            scope = self.scope(plugin, version)
        else:
            scope = self.scope(plugin, version)
            profiles = self.parse(fmt, data, aux, source, scope.modules, rng)
            plugin = plugin or profiles[0].plugin
            if plugin and scope.plugin != plugin:
                scope = self.scope(plugin, version)
        merged = {**profiles[0].labels, **labels} if profiles else dict(labels)
        anchor = start if start is not None else (end if end is not None else t)
        batch = aggregate(profiles, scope, plugin=plugin, version=version, labels=labels,
                          anchor=anchor, shift=[_shift(p, rng, start, end, t) for p in profiles])
        return (batch, plugin, merged, sum(len(p.samples) for p in profiles),
                profiles[0].name if profiles else None)

    def ingest(self, data: bytes, *, fmt: str | None, aux: bytes | None, plugin: str | None,
               version: str | None, labels: dict[str, str], name: str | None = None,
               start: float | None = None, end: float | None = None,
               client_id: str | None = None) -> dict[str, Any]:
        """Validate, symbolize, aggregate and store one input; idempotent per ``client_id``.
        Raises WasmprofError (→ 400) for any bad input, before anything is written."""
        if fmt is not None and fmt not in SERVICE_FORMATS:
            raise UsageError("unknown profile format", source="format",
                             expected=", ".join(SERVICE_FORMATS), found=fmt[:40])
        source = name or ("sample batch" if fmt == "agent-json" else f"upload {fmt or 'profile'}")
        fmt = fmt or self.detect(data, name or "body")
        if client_id:
            with self.db.read() as tx:
                row = tx.one("SELECT id, sample_count FROM profile_inputs WHERE client_id = ?",
                             (client_id,))
            if row is not None:
                return {"id": row["id"], "samples": row["sample_count"], "duplicate": True}
        t = now()
        batch, plugin, merged, count, pname = self._prepare(
            data, fmt=fmt, aux=aux, plugin=plugin, version=version, labels=labels,
            source=source, start=start, end=end, t=t)
        stored = _compress(data)
        stored_aux = _compress(aux) if aux is not None else None
        params = orjson.dumps({"labels": labels, "start": start, "end": end}).decode()
        for attempt in range(4):
            try:
                pid, written = self._store(fmt, plugin, version, merged, name or pname, count,
                                           batch, data, aux, stored, stored_aux, client_id, t,
                                           params)
                break
            except Exception as e:  # noqa: BLE001 - only lock conflicts are retried
                if type(e).__name__ not in _RETRY or attempt == 3:
                    if type(e).__name__ in _RETRY:
                        raise QueryTimeout("the database stayed busy; retry the request",
                                           source="profiles") from None
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.pstore.committed(written)
        if self.metrics is not None:
            self.metrics.inc("ingest_requests", kind=fmt)
            self.metrics.inc("ingest_bytes", len(data), kind=fmt)
            self.metrics.inc("samples", count)
        if self.on_ingest is not None and plugin:
            self.on_ingest([(plugin, version)], "sample batch" if fmt == "agent-json" else "profile")
        return {"id": pid, "format": fmt, "samples": count, "weight": batch.weight,
                "plugin": plugin, "labels": merged, "start": batch.start, "end": batch.end,
                "stacks": len(batch.stacks), "series": len(batch.series),
                "pending_frames": len(batch.pending), "duplicate": False}

    def _store(self, fmt: str, plugin: str | None, version: str | None, merged: dict[str, str],
               name: str | None, count: int, batch: AggregatedBatch, data: bytes,
               aux: bytes | None, stored: bytes, stored_aux: bytes | None,
               client_id: str | None, t: float, params: str) -> tuple[int, dict[str, Any]]:
        """One transaction: the raw input (with the request's parameters and the module set
        it was derived with, for rebuilds), its aggregates and the alerts note."""
        with self.db.tx() as tx:
            self.pstore.lock_scope(tx, plugin, version)        # first: see lock_scope
            pid = tx.insert(
                "INSERT INTO profile_inputs (format, plugin, version, labels, name, sample_count, "
                "start_ts, end_ts, size, data, aux, client_id, received_at, encoding, derived, "
                "modules, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'zstd', 1, ?, ?) "
                "RETURNING id",
                (fmt, plugin, version, orjson.dumps(merged).decode(), name,
                 count, batch.start, batch.end, len(data) + len(aux or b""), stored, stored_aux,
                 client_id, t, batch.modules, params))
            written = self.pstore.write(tx, batch)
            hook = _profile_hook()
            if hook is not None:
                try:
                    with self.db.savepoint(tx, "alerts_profile_hook"):
                        hook(self.db, {"id": pid, "plugin": plugin, "version": version,
                                       "labels": merged, "format": fmt, "samples": count,
                                       "start": batch.start, "end": batch.end})
                except Exception:  # noqa: BLE001 - alerts never fail ingest
                    log.exception("alerts profile hook failed for input %s", pid)
        return pid, written

    # -- queries ------------------------------------------------------------------------
    def budget(self) -> QueryBudget:
        return self.settings.budget()

    def inputs(self, sel: Selection, *, limit: int = 500) -> list[dict[str, Any]]:
        """The most recent raw inputs the selection matches (metadata only)."""
        from wasmprof.server.profile_query import series_where
        first, params = series_where(sel)
        where = [first]
        if sel.start is not None:
            where.append("end_ts >= ?")
            params.append(sel.start)
        if sel.end is not None:
            where.append("start_ts <= ?")
            params.append(sel.end)
        with self.db.read() as tx:
            rows = tx.all("SELECT id, format, plugin, version, labels, name, sample_count, "
                          "start_ts, end_ts, size, received_at, derived FROM profile_inputs "
                          f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {int(limit) * 4}",
                          params)
        out = []
        for r in rows:
            labels = orjson.loads(r["labels"]) if r["labels"] else {}
            if any(labels.get(k) != v for k, v in sel.labels.items()):
                continue
            r["labels"] = labels
            out.append(r)
        return out[:limit]

    def summary(self, sel: Selection) -> dict[str, Any]:
        from wasmprof.server.profile_query import _range_sql, matching_series
        rows = self.inputs(sel)
        with self.db.read() as tx:
            series = matching_series(tx, sel)
            rng, rparams = _range_sql(sel)
            totals: dict[int, int] = {}
            for part in chunks(sorted(series), 400):
                for r in tx.all(f"SELECT series_id, SUM(samples) AS n FROM profile_counts WHERE "
                                f"series_id IN ({marks(len(part))}){rng} GROUP BY series_id",
                                [*part, *rparams]):
                    totals[int(r["series_id"])] = int(r["n"] or 0)
            backlog = tx.scalar("SELECT COUNT(*) AS n FROM profile_inputs WHERE derived = 0")
        plugins: dict[str, dict[str, Any]] = {}
        for s in series.values():
            p = plugins.setdefault(s.plugin or "", {"plugin": s.plugin, "series": 0, "samples": 0,
                                                     "versions": set(), "labels": {},
                                                     "inputs": 0})
            p["series"] += 1
            p["samples"] += totals.get(s.id, 0)
            if s.version:
                p["versions"].add(s.version)
            for k, v in s.labels.items():
                p["labels"].setdefault(k, set()).add(v)
        for r in rows:
            if (r["plugin"] or "") in plugins:
                plugins[r["plugin"] or ""]["inputs"] += 1
        return {
            "selection": sel.describe(),
            "samples": sum(totals.values()),
            "backfill_pending": int(backlog or 0),
            "rebuilds": self.rebuilds.status(sel.plugin),
            "inputs": [{k: r[k] for k in ("id", "format", "plugin", "version", "labels", "name",
                                          "sample_count", "start_ts", "end_ts", "size",
                                          "received_at")} for r in rows],
            "plugins": [{**p, "versions": sorted(p["versions"]),
                         "labels": {k: sorted(v)[:50] for k, v in p["labels"].items()}}
                        for p in plugins.values() if p["samples"] or p["inputs"]],
        }

    def symbolized(self, sel: Selection, budget: QueryBudget | None = None,
                   group_by: str | None = "series") -> SymbolizedProfile:
        """The SymbolizedProfile of a selection (raises UsageError when empty): one sample per
        (series, distinct stack), or per (thread, stack) / per stack with ``group_by``
        ``"thread"`` / None (cheaper where labels do not matter)."""
        return self.query.profile(sel, budget or self.budget(), group_by)

    def export(self, sel: Selection, fmt: str, *, budget: QueryBudget | None = None,
               focus: str | None = None) -> tuple[Iterator[bytes], str]:
        """(body chunks, media type) for ``speedscope`` | ``folded`` | ``svg`` | ``json`` |
        ``pprof``; ``focus`` (a function name) keeps the sub-trees rooted at it (SVG)."""
        if fmt not in EXPORT_FORMATS:
            raise UsageError("unknown export format", source="format",
                             expected=", ".join(EXPORT_FORMATS), found=fmt[:40])
        # speedscope and pprof show threads; the other exports only need distinct stacks
        prof = self.symbolized(sel, budget, "thread" if fmt in ("speedscope", "pprof") else None)
        if fmt == "speedscope":
            from wasmprof.flamegraph.speedscope import speedscope_document
            doc = speedscope_document(prof, name=sel.describe())
            return _chunked(orjson.dumps(doc)), "application/json"
        if fmt == "folded":
            from wasmprof.flamegraph.folded import folded_lines
            return _lines(folded_lines(prof)), "text/plain; charset=utf-8"
        if fmt == "svg":
            from wasmprof.flamegraph.calltree import focus_tree, tree_from_profile
            from wasmprof.flamegraph.svg import SvgOptions, render_svg
            tree = tree_from_profile(prof)
            if focus:
                tree = focus_tree(tree, lambda name: name == focus)
            svg, _ = render_svg(tree, SvgOptions(title="Flame graph", subtitle=sel.describe()))
            return _chunked(svg.encode()), "image/svg+xml"
        if fmt == "pprof":
            from wasmprof.ingest.pprof import write_pprof
            return _chunked(write_pprof(prof)), "application/vnd.google.protobuf+gzip"
        from wasmprof.flamegraph.calltree import function_table
        rows = sorted(function_table(prof).values(),
                      key=lambda f: (-f.self_weight, -f.total, f.name))
        return _chunked(orjson.dumps({
            "selection": sel.describe(), "total": prof.total, "unit": prof.unit,
            "notes": prof.notes, "status_counts": prof.status_counts,
            "start": prof.start, "end": prof.end,
            "functions": [_row_dict(r) for r in rows[:500]],
            "functions_total": len(rows),
            "cpu_by_module": cpu_by_module(prof),
        })), "application/json"

    def diff(self, before: Selection, after: Selection, *, fmt: str = "json",
             mode: str = "normalized", budget: QueryBudget | None = None
             ) -> tuple[Iterator[bytes], str]:
        from wasmprof.flamegraph.diff import diff_svg, diff_table
        if mode not in ("normalized", "absolute"):
            raise UsageError("unknown diff mode", source="mode", expected="normalized, absolute",
                             found=mode[:40])
        if fmt not in ("json", "svg"):
            raise UsageError("unknown diff format", source="format", expected="json, svg",
                             found=fmt[:40])
        budget = budget or self.budget()
        b, a = self.symbolized(before, budget, None), self.symbolized(after, budget, None)
        if fmt == "svg":
            svg, _ = diff_svg(b, a, mode=mode, subtitle=f"{before.describe()} → {after.describe()}")
            return _chunked(svg.encode()), "image/svg+xml"
        rows = diff_table(b, a, mode=mode)
        return _chunked(orjson.dumps({
            "before": before.describe(), "after": after.describe(), "mode": mode,
            "before_total": b.total, "after_total": a.total,
            "rows": [r.to_dict() for r in rows[:1000]]})), "application/json"

    def function_shares(self, sel: Selection) -> dict[str, tuple[float, float]]:
        """{function: (self %, total %)} of a selection ({} when nothing matches): what the
        ``profile.regression`` alert compares."""
        from wasmprof.flamegraph.calltree import function_table
        try:
            prof = self.symbolized(sel, group_by=None)
        except WasmprofError:
            return {}
        total = prof.total
        if not total:
            return {}
        out: dict[str, tuple[float, float]] = {}
        for (name, _native), st in function_table(prof).items():
            s0, t0 = out.get(name, (0.0, 0.0))
            out[name] = (s0 + 100.0 * st.self_weight / total, max(t0, 100.0 * st.total / total))
        return out

    def timeline(self, sel: Selection, *, step: int | None = None, by: str = "plugin"
                 ) -> dict[str, Any]:
        return self.query.timeline(sel, step=step, by=by)

    def label_names(self, plugin: str | None = None) -> list[str]:
        return self.query.label_names(plugin)

    def label_values(self, name: str, plugin: str | None = None) -> list[str]:
        return self.query.label_values(name, plugin)

    # -- late modules -------------------------------------------------------------------
    def on_modules_changed(self, plugin: str) -> dict[str, Any]:
        """A module of ``plugin`` arrived or changed: re-resolve its pending frames now, and
        plan a rebuild of every scope of it whose rows were derived with another module set
        (done in the background by :meth:`maintain`)."""
        done = self.resolve_pending(plugin)
        done["rebuilds"] = self.rebuilds.plan(plugin)
        return done

    def resolve_pending(self, plugin: str | None = None) -> dict[str, Any]:
        """Re-resolve pending frames (of ``plugin``, or of every plugin with modules) by module
        identity + address and rewrite the stacks and counts that hold them, without
        re-parsing any input. Returns {"frames": resolved, "stacks": rewritten, "rows": …}."""
        with self.db.read() as tx:
            scopes = tx.all("SELECT DISTINCT plugin, version FROM profile_pending"
                            + (" WHERE plugin = ?" if plugin else ""), [plugin] if plugin else [])
        done = {"frames": 0, "stacks": 0, "rows": 0}
        for sc in scopes:
            if not sc["plugin"]:
                continue
            r = self._resolve_scope(sc["plugin"], sc["version"])
            for k in done:
                done[k] += r[k]
        return done

    def _resolve_scope(self, plugin: str, version: str) -> dict[str, int]:
        scope = self.scope(plugin, version or None)
        zero = {"frames": 0, "stacks": 0, "rows": 0}
        if not scope.has_modules:
            return zero
        with self.db.read() as tx:
            pend = tx.all("SELECT frame_id, raw FROM profile_pending WHERE plugin = ? AND "
                          "version = ?", (plugin, version))
        remap: dict[int, tuple[int, ...]] = {}
        contents: dict[int, Any] = {}
        for p in pend:
            chain = scope.chain(raw_from_key(orjson.loads(p["raw"])))
            if not chain.pending:
                remap[int(p["frame_id"])] = chain.ids
                contents.update((fid, c) for fid, c, _ in chain.info)
        if not remap:
            return zero
        with self.db.tx() as tx:
            self.pstore.lock_scope(tx, plugin, version or None)   # first: see lock_scope
            stack_ids: set[int] = set()
            for part in chunks(sorted(remap)):
                stack_ids |= {int(r["stack_id"]) for r in tx.all(
                    f"SELECT stack_id FROM profile_stack_pending WHERE frame_id IN "
                    f"({marks(len(part))})", part)}
            old = self.pstore.stacks(tx, stack_ids)
            new_stacks: dict[int, tuple[int, ...]] = {}
            stack_map: dict[int, int] = {}
            still: set[tuple[int, int]] = set()
            old_pending = {int(p["frame_id"]) for p in pend}
            for sid, fids in old.items():
                nf: list[int] = []
                for f in fids:
                    nf += remap.get(f, (f,))
                nt = tuple(nf)
                nsid = stack_id(nt)
                stack_map[sid] = nsid
                new_stacks[nsid] = nt
                still |= {(f, nsid) for f in nt if f in old_pending and f not in remap}
            frames = contents
            tx.executemany(
                "INSERT INTO profile_frames (id, function, raw_function, file, line, col, "
                "inlined, status, reason, wasm_index, module, native, printed_name, identity) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [(fid, c[0], c[1], c[2], c[3], c[4], int(c[5]), c[6], c[7], c[8], c[9],
                  int(c[10]), c[11], c[12]) for fid, c in sorted(frames.items())])
            tx.executemany("INSERT INTO profile_stacks (id, depth, frames) VALUES (?, ?, ?) "
                           "ON CONFLICT (id) DO NOTHING",
                           [(s, len(f), pack_ids(f)) for s, f in sorted(new_stacks.items())])
            if still:
                tx.executemany("INSERT INTO profile_stack_pending (frame_id, stack_id) VALUES "
                               "(?, ?) ON CONFLICT (frame_id, stack_id) DO NOTHING", sorted(still))
            rows = self._rewrite_counts(tx, plugin, version, stack_map)
            for part in chunks(sorted(remap)):
                tx.execute(f"DELETE FROM profile_pending WHERE frame_id IN ({marks(len(part))})",
                           part)
            for part in chunks(sorted(old)):
                tx.execute(f"DELETE FROM profile_stack_pending WHERE stack_id IN "
                           f"({marks(len(part))})", part)
        log.info("re-resolved %d pending frames of %s %s: %d stacks, %d count rows rewritten",
                 len(remap), plugin, version, len(stack_map), rows)
        return {"frames": len(remap), "stacks": len(stack_map), "rows": rows}

    def _rewrite_counts(self, tx: Any, plugin: str, version: str,
                        stack_map: dict[int, int]) -> int:
        series = [int(r["id"]) for r in tx.all(
            "SELECT id FROM profile_series WHERE plugin = ? AND COALESCE(version, '') = ?",
            (plugin, version))]
        old_ids = np.fromiter(stack_map.keys(), dtype=np.int64, count=len(stack_map))
        new_ids = np.fromiter(stack_map.values(), dtype=np.int64, count=len(stack_map))
        order = np.argsort(old_ids)
        old_ids, new_ids = old_ids[order], new_ids[order]
        n = 0
        for part in chunks(series, 400):
            for r in tx.all(f"SELECT id, bucket, data FROM profile_counts WHERE series_id IN "
                            f"({marks(len(part))})", part):
                keys, vals = decode_many([r["data"]])
                pos = np.searchsorted(old_ids, keys)
                pos[pos >= len(old_ids)] = 0
                hit = old_ids[pos] == keys if len(old_ids) else np.zeros(len(keys), bool)
                if not hit.any():
                    continue
                keys = np.where(hit, new_ids[pos], keys)
                keys, vals = sum_pairs(keys, vals)
                tx.execute("UPDATE profile_counts SET data = ?, stacks = ? WHERE id = ?",
                           (encode_arrays(keys, vals), len(keys), r["id"]))
                rollup.mark_dirty(tx, [(plugin, version, int(r["bucket"]))])
                n += 1
        return n

    # -- background ---------------------------------------------------------------------
    def maintain(self, t: float | None = None) -> bool:
        """One pass of background work; True when there is more to do right away."""
        t = now() if t is None else t
        busy = self.backfill(limit=20) > 0
        with self.db.read() as tx:
            pending_plugins = [r["plugin"] for r in tx.all(
                "SELECT DISTINCT plugin FROM profile_pending")]
        for p in pending_plugins:
            if p and self.scope(p, None).has_modules:
                self.resolve_pending(p)
        if t - self._planned_at >= self.settings.maintain_every:
            self._planned_at = t
            self.rebuilds.plan(t=t)
        busy = self.rebuilds.work(2.0) or busy
        busy = self.compact(t) or busy
        busy = self.downsample(t) or busy
        busy = rollup.refresh(self.db, self.pstore) >= 50 or busy
        self.expire(t)
        return busy

    def backfill(self, limit: int = 20) -> int:
        """Aggregate stored inputs not yet derived (from a data directory of the previous
        version); inputs that fail today's checks are marked refused and logged."""
        with self.db.read() as tx:
            rows = tx.all("SELECT id FROM profile_inputs WHERE derived = 0 ORDER BY id LIMIT ?",
                          (limit,))
        for r in rows:
            self._derive(int(r["id"]))
        return len(rows)

    def rederive(self, row: dict[str, Any]) -> AggregatedBatch:
        """The batch of a stored input (a ``profile_inputs`` row) with today's modules and
        checks, made as its ingest made it (the request's labels and from/to when recorded).
        Raises WasmprofError when it fails today's checks."""
        data = _decompress(bytes(row["data"]), row.get("encoding"))
        aux = _decompress(bytes(row["aux"]), row.get("encoding")) \
            if row["aux"] is not None else None
        params = orjson.loads(row["params"]) if row.get("params") else None
        if params is not None:
            labels, start, end = params.get("labels") or {}, params.get("start"), params.get("end")
        else:        # stored before parameters were: the merged labels, the samples' range
            labels = orjson.loads(row["labels"]) if row["labels"] else {}
            start, end = row["start_ts"], row["end_ts"]
        batch, *_ = self._prepare(
            data, fmt=row["format"], aux=aux, plugin=row["plugin"], version=row["version"],
            labels=labels, source=f"profile input {row['id']}", start=start, end=end,
            t=row["received_at"])
        return batch

    def _derive(self, pid: int) -> None:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM profile_inputs WHERE id = ? AND derived = 0", (pid,))
        if row is None:
            return
        try:
            batch = self.rederive(row)
        except WasmprofError as e:
            log.warning("stored profile input %s skipped: it fails the ingest checks: %s", pid, e)
            with self.db.tx() as tx:
                tx.execute("UPDATE profile_inputs SET derived = -1 WHERE id = ? AND derived = 0",
                           (pid,))
            return
        try:
            with self.db.tx() as tx:
                self.pstore.lock_scope(tx, row["plugin"], row["version"])
                cur = tx.execute("UPDATE profile_inputs SET derived = 1, modules = ? WHERE id = ? "
                                 "AND derived = 0", (batch.modules, pid))
                if cur.rowcount != 1:
                    raise _Conflict
                written = self.pstore.write(tx, batch)
        except _Conflict:
            return
        self.pstore.committed(written)

    def compact(self, t: float, limit: int = 200) -> bool:
        """Merge count rows of one (series, bucket, width) written by separate requests
        (rows older than a minute, so a burst of batches is merged once)."""
        with self.db.read() as tx:
            groups = tx.all("SELECT series_id, bucket, width FROM profile_counts WHERE bucket < ? "
                            "GROUP BY series_id, bucket, width HAVING COUNT(*) > 1 LIMIT ?",
                            (t - 60, limit))
        for g in groups:
            self._merge(g["series_id"], g["bucket"], g["bucket"] + 1, g["width"], g["width"],
                        g["bucket"], lt=False)
        return len(groups) >= limit

    def downsample(self, t: float, limit: int = 200) -> bool:
        """Re-bucket rows older than each rule's age into the rule's width."""
        busy = False
        for width, age in self.settings.downsample:
            cutoff = int((t - age) // width * width)
            with self.db.read() as tx:
                groups = tx.all("SELECT DISTINCT series_id, (bucket / ?) * ? AS cb FROM "
                                "profile_counts WHERE width < ? AND bucket < ? LIMIT ?",
                                (width, width, width, cutoff, limit))
            for g in groups:
                cb = int(g["cb"])
                self._merge(g["series_id"], cb, cb + width, width, width, cb, lt=True)
            busy = busy or len(groups) >= limit
        return busy

    def _merge(self, series_id: int, lo: int, hi: int, width_max: int, new_width: int,
               bucket: int, *, lt: bool) -> None:
        """Delete the rows of a series in [lo, hi) (width < width_max, or == when not ``lt``)
        and insert their sum as one row; DELETE … RETURNING makes it safe with replicas."""
        op = "<" if lt else "="
        scope = self._scope_of_series(series_id)
        with self.db.tx() as tx:
            self.pstore.lock_scope(tx, *scope)          # first: see lock_scope
            rows = tx.all(f"DELETE FROM profile_counts WHERE series_id = ? AND bucket >= ? AND "
                          f"bucket < ? AND width {op} ? RETURNING data",
                          (series_id, lo, hi, width_max))
            if not rows:
                return
            if lt:                             # re-bucketed: the rollups' first/last change
                rollup.mark_range(tx, *scope, min(lo, bucket), max(hi, bucket + 1))
            keys, vals = merge_rows(r["data"] for r in rows)
            tx.execute("INSERT INTO profile_counts (series_id, bucket, width, samples, stacks, "
                       "data) VALUES (?, ?, ?, ?, ?, ?)",
                       (series_id, bucket, new_width, int(vals.sum()), len(keys),
                        encode_arrays(keys, vals)))

    def _scope_of_series(self, series_id: int) -> tuple[str, str]:
        hit = self._series_scope.get(series_id)
        if hit is None:
            with self.db.read() as tx:
                r = tx.one("SELECT plugin, version FROM profile_series WHERE id = ?", (series_id,))
            hit = ((r["plugin"] or "", r["version"] or "") if r else ("", ""))
            if len(self._series_scope) > 100_000:
                self._series_scope.clear()
            self._series_scope[series_id] = hit
        return hit

    def expire(self, t: float) -> int:
        """Delete raw inputs older than the retention (derived data stays)."""
        if not self.settings.raw_retention:
            return 0
        with self.db.tx() as tx:
            cur = tx.execute("DELETE FROM profile_inputs WHERE received_at < ? AND derived != 0",
                             (t - self.settings.raw_retention,))
            return cur.rowcount or 0


def _shift(p: Profile, rng: tuple[float, float], start: float | None, end: float | None,
           t: float) -> float:
    """Seconds to add to ``p``'s sample timestamps: 0 for wall-clock times; a relative clock
    (perf's monotonic time) is moved so the recording starts at ``start`` or ends at ``end``
    or, by default, when it was received."""
    if p.start is None or p.end is None or (rng[0] <= p.start and p.end <= rng[1]):
        return 0.0
    if start is not None:
        return start - p.start
    if end is not None:
        return end - p.end
    return t - p.end


def cpu_by_module(prof: SymbolizedProfile) -> list[dict[str, Any]]:
    """Where a recording also holds host frames: each module's share of all samples (a sample
    counts for the innermost Wasm module resolved on its stack; samples without one are the
    host's). Empty when no stack has a host frame."""
    if not any(f.native for s in prof.samples for f in s.stack):
        return []
    total = prof.total or 1
    by: dict[str, int] = {}
    for s in prof.samples:
        mod = next((f.module for f in s.stack if f.module and not f.native), None)
        key = mod if mod is not None else "[host only]"
        by[key] = by.get(key, 0) + s.count
    return [{"module": k, "samples": v, "share": v / total}
            for k, v in sorted(by.items(), key=lambda kv: -kv[1])]


_ZSTD = threading.local()


def _compress(data: bytes) -> bytes:
    """Raw inputs are kept zstd-compressed (level 1: ~4x faster than zlib -1, smaller)."""
    import zstandard
    c = getattr(_ZSTD, "c", None)
    if c is None:
        c = _ZSTD.c = zstandard.ZstdCompressor(level=1)
    return c.compress(data)


def _decompress(data: bytes, encoding: str | None) -> bytes:
    if encoding == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    if encoding == "zlib":
        return zlib.decompress(data)
    return data


def _chunked(data: bytes, size: int = 1 << 16) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
    if not data:
        yield b""


def _lines(lines: Iterable[str], size: int = 1 << 16) -> Iterator[bytes]:
    buf: list[str] = []
    n = 0
    for ln in lines:
        buf.append(ln)
        n += len(ln) + 1
        if n >= size:
            yield ("\n".join(buf) + "\n").encode()
            buf, n = [], 0
    if buf:
        yield ("\n".join(buf) + "\n").encode()


def _row_dict(r: Any) -> dict[str, Any]:
    return {"function": r.name, "native": r.native, "module": r.module,
            "self": r.self_weight, "total": r.total}


def _profile_hook() -> Any:
    try:
        import wasmprof.alerts as alerts
    except ImportError:
        return None
    return getattr(alerts, "on_profile_input", None)

