"""Profiles: stored as received (agent JSON batches, perf script + perf map, folded, WAMR
``Performance profiler data:`` blocks),
parsed, symbolized and merged at query time with the same code the CLI uses
(``wasmprof.ingest.*``, ``wasmprof.profiles``, ``wasmprof.flamegraph.*``).

A selection is ``plugin`` + ``version`` + ``labels`` (all must match) + time range
(``from``/``to`` overlap the input's range; unix seconds or ISO 8601).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from wasmprof.errors import LogFormatError, UsageError
from wasmprof.model import Module, Profile
from wasmprof.profiles import (PROFILE_FORMATS, assign_perf_map_modules, detect_profile_format,
                               merge_profiles, parse_profile_stream, symbolize_profile)
from wasmprof.server.registry import ModuleRegistry
from wasmprof.store.db import now
from wasmprof.store.state import Store

log = logging.getLogger(__name__)

MAX_QUERY_INPUTS = 5000
MAX_QUERY_BYTES = 1 << 30


def parse_time(value: str | float | None, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("bad time", source=what, expected="unix seconds or ISO 8601",
                         found=value[:40]) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


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


class ProfileService:
    def __init__(self, store: Store, registry: ModuleRegistry, resolver: Any,
                 metrics: Any = None, resolve_lock: threading.Lock | None = None) -> None:
        """``resolve_lock`` guards every use of ``resolver`` (its caches are not
        thread-safe); services sharing one resolver must share the lock."""
        self.store = store
        self.db = store.db
        self.registry = registry
        self.resolver = resolver
        self.metrics = metrics
        self.resolve_lock = resolve_lock or threading.Lock()

    # -- ingest -----------------------------------------------------------------------
    @staticmethod
    def _parse(fmt: str, data: bytes, aux: bytes | None, source: str,
               modules: Sequence[Module] = ()) -> list[Profile]:
        """Parse a stored input with the CLI's code (``wasmprof.profiles``); a perf map's
        segments are assigned to ``modules`` first, as ``wasmprof flamegraph`` does."""
        from wasmprof.ingest.perf_map import parse_perf_map
        maps = []
        if aux:
            maps.append(parse_perf_map(aux.decode("utf-8", "replace"), source + " perf map"))
        notes = assign_perf_map_modules(maps, modules) if maps and modules else []
        profiles = parse_profile_stream(io.BytesIO(data), source=source, perf_maps=maps, fmt=fmt)
        for p in profiles:
            p.notes.extend(notes)
        return profiles

    def ingest(self, data: bytes, *, fmt: str | None, aux: bytes | None, plugin: str | None,
               version: str | None, labels: dict[str, str], name: str | None = None,
               start: float | None = None, end: float | None = None,
               client_id: str | None = None) -> dict[str, Any]:
        """Validate (parse) and store one input; idempotent per ``client_id``."""
        if fmt is not None and fmt not in PROFILE_FORMATS:
            raise UsageError("unknown profile format", source="format",
                             expected=", ".join(PROFILE_FORMATS), found=fmt[:40])
        fmt = fmt or detect_profile_format(data[:1 << 16], name or "body")
        if client_id:
            with self.db.read() as tx:
                row = tx.one("SELECT id, sample_count FROM profile_inputs WHERE client_id = ?",
                             (client_id,))
            if row is not None:
                return {"id": row["id"], "samples": row["sample_count"], "duplicate": True}
        if fmt == "agent-json":   # full parse at query time
            profiles: list[Any] = [check_agent_batch(data, name or "sample batch")]
        else:
            profiles = self._parse(fmt, data, aux, name or f"upload {fmt}")
        profile = profiles[0]
        count = sum(len(p.samples) for p in profiles)
        plugin = plugin or profile.plugin
        labels = {**profile.labels, **labels}
        t = now()
        start = start if start is not None else (profile.start if _plausible(profile.start, t) else t)
        end = end if end is not None else (profile.end if _plausible(profile.end, t) else t)
        with self.db.tx() as tx:
            pid = tx.insert(
                "INSERT INTO profile_inputs (format, plugin, version, labels, name, sample_count, "
                "start_ts, end_ts, size, data, aux, client_id, received_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (fmt, plugin, version, orjson.dumps(labels).decode(), name or profile.name, count,
                 start, end, len(data) + len(aux or b""), data, aux, client_id, t))
            hook = _profile_hook()
            if hook is not None:
                try:
                    with self.db.savepoint(tx, "alerts_profile_hook"):
                        hook(self.db, {"id": pid, "plugin": plugin, "version": version,
                                       "labels": labels, "format": fmt, "samples": count,
                                       "start": start, "end": end})
                except Exception:  # noqa: BLE001 - alerts never fail ingest
                    log.exception("alerts profile hook failed for input %s", pid)
        if self.metrics is not None:
            self.metrics.inc("ingest_requests", kind=fmt)
            self.metrics.inc("ingest_bytes", len(data), kind=fmt)
            self.metrics.inc("samples", count)
        return {"id": pid, "format": fmt, "samples": count, "plugin": plugin,
                "labels": labels, "start": start, "end": end, "duplicate": False}

    # -- queries -----------------------------------------------------------------------
    def inputs(self, sel: Selection, *, with_data: bool = False, limit: int = MAX_QUERY_INPUTS
               ) -> list[dict[str, Any]]:
        cols = ("id, format, plugin, version, labels, name, sample_count, start_ts, end_ts, size, "
                "client_id, received_at" + (", data, aux" if with_data else ""))
        where, params = ["1 = 1"], []
        if sel.plugin:
            where.append("plugin = ?")
            params.append(sel.plugin)
        if sel.version:
            where.append("version = ?")
            params.append(sel.version)
        if sel.start is not None:
            where.append("end_ts >= ?")
            params.append(sel.start)
        if sel.end is not None:
            where.append("start_ts <= ?")
            params.append(sel.end)
        with self.db.read() as tx:
            rows = tx.all(f"SELECT {cols} FROM profile_inputs WHERE {' AND '.join(where)} "
                          f"ORDER BY id DESC LIMIT {int(limit)}", params)
        out = []
        for r in rows:
            labels = orjson.loads(r["labels"]) if r["labels"] else {}
            # ``event`` picks one event inside a multi-event input (see ``symbolized``)
            if any(labels.get(k) != v for k, v in sel.labels.items() if k != "event"):
                continue
            r["labels"] = labels
            out.append(r)
        return out

    def summary(self, sel: Selection) -> dict[str, Any]:
        rows = self.inputs(sel)
        plugins: dict[str, dict[str, Any]] = {}
        for r in rows:
            p = plugins.setdefault(r["plugin"] or "", {"plugin": r["plugin"], "inputs": 0,
                                                        "samples": 0, "versions": set(),
                                                        "labels": {}})
            p["inputs"] += 1
            p["samples"] += r["sample_count"]
            if r["version"]:
                p["versions"].add(r["version"])
            for k, v in r["labels"].items():
                p["labels"].setdefault(k, set()).add(v)
        return {
            "selection": sel.describe(),
            "inputs": [{k: r[k] for k in ("id", "format", "plugin", "version", "labels", "name",
                                          "sample_count", "start_ts", "end_ts", "size",
                                          "received_at")} for r in rows[:500]],
            "plugins": [{**p, "versions": sorted(p["versions"]),
                         "labels": {k: sorted(v)[:50] for k, v in p["labels"].items()}}
                        for p in plugins.values()],
        }

    def symbolized(self, sel: Selection) -> Any:
        """The merged SymbolizedProfile of a selection (raises UsageError when empty)."""
        rows = self.inputs(sel, with_data=True)
        if not rows:
            raise UsageError("no profile data matches the selection", source="profiles",
                             found=sel.describe())
        by_key: dict[tuple, list[dict[str, Any]]] = {}
        total = 0
        for r in rows:
            total += r["size"]
            if total > MAX_QUERY_BYTES:
                break
            by_key.setdefault((r["plugin"], r["version"]), []).append(r)
        symbolized = []
        for (plugin, version), key_rows in by_key.items():
            mods: list[Module] = []
            for _row, m in self.registry.modules_for(plugin, version):
                mods.append(m)
                if m.companion is not None and m.companion not in mods:
                    mods.append(m.companion)
            for r in key_rows:
                parsed = self._parse(r["format"], bytes(r["data"]),
                                     bytes(r["aux"]) if r["aux"] is not None else None,
                                     f"profile input {r['id']}", mods)
                for profile in _one_event(parsed, sel.labels.get("event"), r["id"]):
                    profile.plugin = r["plugin"] or profile.plugin
                    profile.labels = {**profile.labels, **r["labels"]}
                    with self.resolve_lock:
                        symbolized.append(symbolize_profile(profile, mods, self.resolver))
        merged = merge_profiles(symbolized)
        merged.name = sel.describe()
        return merged

    def export(self, sel: Selection, fmt: str) -> tuple[bytes, str]:
        """(body, media type) for ``speedscope`` | ``folded`` | ``svg`` | ``json``."""
        prof = self.symbolized(sel)
        if fmt == "speedscope":
            from wasmprof.flamegraph.speedscope import speedscope_document
            doc = speedscope_document(prof, name=sel.describe())
            return orjson.dumps(doc), "application/json"
        if fmt == "folded":
            from wasmprof.flamegraph.folded import folded_lines
            return ("\n".join(folded_lines(prof)) + "\n").encode(), "text/plain; charset=utf-8"
        if fmt == "svg":
            from wasmprof.flamegraph.calltree import tree_from_profile
            from wasmprof.flamegraph.svg import SvgOptions, render_svg
            svg, _ = render_svg(tree_from_profile(prof),
                                SvgOptions(title="Flame graph", subtitle=sel.describe()))
            return svg.encode(), "image/svg+xml"
        if fmt == "json":
            from wasmprof.flamegraph.calltree import function_table
            rows = sorted(function_table(prof).values(),
                          key=lambda f: (-f.self_weight, -f.total, f.name))
            return orjson.dumps({
                "selection": sel.describe(), "total": prof.total, "unit": prof.unit,
                "notes": prof.notes, "status_counts": prof.status_counts,
                "functions": [_row_dict(r) for r in rows[:500]],
            }, option=orjson.OPT_SERIALIZE_DATACLASS), "application/json"
        raise UsageError("unknown export format", source="format",
                         expected="speedscope, folded, svg, json", found=fmt)

    def diff(self, before: Selection, after: Selection, *, fmt: str = "json",
             mode: str = "normalized") -> tuple[bytes, str]:
        from wasmprof.flamegraph.diff import diff_svg, diff_table
        if mode not in ("normalized", "absolute"):
            raise UsageError("unknown diff mode", source="mode", expected="normalized, absolute",
                             found=mode)
        b, a = self.symbolized(before), self.symbolized(after)
        if fmt == "svg":
            svg, _ = diff_svg(b, a, mode=mode, subtitle=f"{before.describe()} → {after.describe()}")
            return svg.encode(), "image/svg+xml"
        rows = diff_table(b, a, mode=mode)
        return orjson.dumps({"before": before.describe(), "after": after.describe(), "mode": mode,
                             "before_total": b.total, "after_total": a.total,
                             "rows": [r.to_dict() for r in rows[:1000]]}), "application/json"


def _one_event(profiles: list[Profile], wanted: str | None, input_id: int) -> list[Profile]:
    """A perf script parses into one profile per event: never merge events; take the one
    the selection's ``event`` label names, else the first, and say what was there."""
    events = [p.labels.get("event") for p in profiles]
    if len(profiles) < 2 or not any(events):
        return profiles
    chosen = [p for p in profiles if p.labels.get("event") == wanted] if wanted else profiles[:1]
    listing = ", ".join(f"{e} ({len(p.samples)} samples)" for e, p in zip(events, profiles))
    for p in chosen:
        p.notes.append(f"profile input {input_id} holds events {listing}; showing "
                       f"{p.labels.get('event')} (select another with labels=event:NAME)")
    return chosen


@dataclass(slots=True)
class _BatchSummary:
    samples: list[Any]
    plugin: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    name: str | None = None


def check_agent_batch(data: bytes, source: str) -> _BatchSummary:
    """Cheap structural check of an agent batch at ingest (the hot path): JSON object with
    ``samples`` = list of objects each holding a ``stack`` list. PCs and modules are checked
    by the full parser (``parse_agent_json``) when the batch is queried."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise LogFormatError(f"not JSON: {e}", source=source, offset=getattr(e, "pos", None)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
        raise LogFormatError("bad agent sample batch", source=source,
                             expected='{"modules": [...], "samples": [...]}',
                             found=type(doc).__name__)
    samples = doc["samples"]
    for i, smp in enumerate(samples):
        if not isinstance(smp, dict) or not isinstance(smp.get("stack"), list):
            raise LogFormatError(f"bad agent sample batch field samples[{i}]", source=source,
                                 expected='{"stack": [pc, ...]}', found=repr(smp)[:80])
    mods = doc.get("modules", [])
    if not isinstance(mods, list):
        raise LogFormatError("bad agent sample batch field modules", source=source,
                             expected="a list", found=repr(mods)[:80])
    labels = doc.get("labels") if isinstance(doc.get("labels"), dict) else {}
    stamps = [s["timestamp"] for s in samples if isinstance(s.get("timestamp"), (int, float))]
    return _BatchSummary(samples=samples, plugin=doc.get("plugin") if isinstance(doc.get("plugin"), str) else None,
                         labels={str(k): str(v) for k, v in labels.items()},
                         start=min(stamps) if stamps else None, end=max(stamps) if stamps else None,
                         name=doc.get("name") if isinstance(doc.get("name"), str) else None)


def _row_dict(r: Any) -> dict[str, Any]:
    return {"function": r.name, "native": r.native, "module": r.module,
            "self": r.self_weight, "total": r.total}


def _plausible(ts: float | None, t: float) -> bool:
    return ts is not None and t - 400 * 86400 < ts < t + 86400


def _profile_hook() -> Any:
    try:
        import wasmprof.alerts as alerts
    except ImportError:
        return None
    return getattr(alerts, "on_profile_input", None)
