"""Crash logs in, crash events and groups out: the service side of ``wasmprof symbolize``.

- :meth:`CrashService.ingest_log` streams a log through ``scan_crashes`` (constant memory),
  symbolizes each crash with the plugin's modules (the same ``CrashSymbolizer`` the CLI
  uses), fingerprints it (:mod:`wasmprof.grouping`) and stores the event (raw lines + raw
  frames, i.e. the input, plus the derived frames and grouping) in batches; every batch is
  committed before the response. After each stored event the alerts hook
  ``wasmprof.alerts.on_crash_event(db, group, event, is_new_group, regressed)`` runs inside
  the same transaction (under a savepoint), when the alerts package is installed.
- Which modules: the plugin's modules are grouped by the version they are linked as (a
  module linked as several versions belongs to each; :class:`Build`). A crash of version V
  uses the build of V when there is one; otherwise (or when the crash has no version) the
  build whose functions agree best with the names and offsets the crash printed
  (``CrashSymbolizer.agreement``), ties going to the most recently linked. Every fallback is
  said: a ``version: …`` crash note naming the version and module used and why, the same in
  the event's ``grouping.note`` and ``symbolization`` (``match``: exact / fallback /
  unversioned / none, ``version_used``, ``module``); an exact build whose modules lack names
  the crash printed while another build has them is flagged the same way.
- :meth:`CrashService.resymbolize` re-runs symbolization + grouping for stored events (a
  module arrived after its crashes: an exact-version module then replaces a fallback, and
  the stored crash's notes are rewritten) and moves events between groups; group counters are
  recomputed from the events, so they never drift. In the same transaction it calls
  ``wasmprof.alerts.on_crash_regrouped(db, created, removed, regressed=…)``: groups created
  by the regrouping alert ``crash.new_group`` with their symbolized frames, a resolved group
  that receives a crash received after it was resolved turns ``regressed`` and alerts
  ``crash.regressed`` (as ingest would have), and the undelivered ``crash.new_group`` of
  groups the regrouping emptied (the unsymbolized ones) is cancelled.
- Groups: status ``open`` / ``resolved`` / ``regressed`` stored; shown as ``new`` (open,
  first seen < 24 h ago), ``ongoing``, ``regressed``, ``resolved``.
- Idempotent log ingest (tables in :mod:`wasmprof.server.log_schema`): every crash gets an
  event key (:func:`event_key`: its stream, thread, time and first line, plus its rank
  among identical crashes of the body); a key already stored is not stored again, so a log
  posted twice, or overlapping windows of one stream (a shipper retrying), count each crash
  once — except that a complete copy of a crash stored partial (cut at a window's end)
  replaces it. An ``Idempotency-Key`` / ``batch_id`` seen before answers the first post's
  result with ``duplicate: true`` without reading the body again (409 while that first post
  is still running). The answer says ``new_events`` / ``duplicate_events``.
- :func:`read_log_body` spools a request body (raw or multipart ``file``) to a temporary
  file in constant memory, decompressing ``Content-Encoding: gzip`` (or a gzip body) with
  the decompressed size held to the same cap.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

import orjson

from wasmprof.errors import UsageError, WasmprofError
from wasmprof.grouping import GroupKey, fingerprint
from wasmprof.model import (AddressSpace, Breadcrumb, Crash, Frame, FrameStatus, Panic, RawFrame,
                            Runtime, TrapKind)
from wasmprof.server.registry import ModuleRegistry
from wasmprof.store.db import Tx, now
from wasmprof.store.state import Store

log = logging.getLogger(__name__)

BATCH = 200
MAX_LISTED = 1000
NEW_WINDOW = 24 * 3600.0


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def crash_to_json(crash: Crash) -> str:
    """The crash as input (no derived frames): what re-symbolization starts from."""
    d = crash.to_dict()
    d.pop("frames", None)
    d["raw_frames"] = [{
        "index": r.index, "space": str(r.space), "offset": r.offset,
        "printed_name": r.printed_name, "func_index": r.func_index, "aot_index": r.aot_index,
        "module": r.module, "native": r.native, "truncated": r.truncated, "raw": r.raw,
    } for r in crash.raw_frames]
    return _json(d)


def crash_from_json(text: str) -> Crash:
    d = orjson.loads(text)
    raws = [RawFrame(index=r["index"], space=AddressSpace(r["space"]), offset=r.get("offset"),
                     printed_name=r.get("printed_name"), func_index=r.get("func_index"),
                     aot_index=r.get("aot_index"), module=r.get("module"),
                     native=bool(r.get("native")), truncated=bool(r.get("truncated")),
                     raw=r.get("raw")) for r in d.get("raw_frames", [])]
    return Crash(message=d.get("message"), trap_kind=TrapKind(d.get("trap_kind") or "unknown"),
                 runtime=Runtime(d.get("runtime") or "unknown"),
                 space=AddressSpace(d["space"]) if d.get("space") else None,
                 plugin=d.get("plugin"), vm_id=d.get("vm_id"), root_id=d.get("root_id"),
                 function=d.get("function"), thread=d.get("thread"),
                 timestamp=d.get("timestamp"), source=d.get("source"),
                 first_line=d.get("first_line"), raw=list(d.get("raw") or []),
                 raw_frames=raws, partial=bool(d.get("partial")), notes=list(d.get("notes") or []),
                 panic=Panic.from_dict(d["panic"]) if d.get("panic") else None,
                 breadcrumbs=[Breadcrumb.from_dict(b) for b in d.get("breadcrumbs") or []],
                 origin=d.get("origin"))


def event_keys(crash: Crash, plugin: str | None, version: str | None) -> tuple[str, str]:
    """(content key, head key) of a crash event, the same whenever the same log text is
    posted again for the same plugin and version: stream, thread, log time and the crash's
    lines (whitespace normalized; the head key only the first line). Crashes printed
    without a time are told apart by their rank among identical ones (added by the caller)."""
    lines = [" ".join(x.split())[:2000] for x in crash.raw] or [""]
    head = "\x1f".join([plugin or "", version or "", crash.origin or "", crash.thread or "",
                        crash.timestamp or "", lines[0]])
    content = hashlib.sha256("\x1e".join([head, *lines[1:]]).encode("utf-8", "replace"))
    return content.hexdigest()[:32], hashlib.sha256(head.encode("utf-8", "replace")).hexdigest()[:32]


def frames_from_json(text: str | None) -> list[Frame]:
    if not text:
        return []
    out = []
    for f in orjson.loads(text):
        f = dict(f)
        f["status"] = FrameStatus(f["status"])
        out.append(Frame(**f))
    return out


def parse_log_time(ts: str | None, received: float) -> float:
    """The crash's time from its log timestamp (UTC assumed), else the receive time."""
    if ts:
        try:
            t = datetime.fromisoformat(ts.strip().replace(",", "."))
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            v = t.timestamp()
            if received - 400 * 86400 < v < received + 86400:
                return v
        except ValueError:
            pass
    return received


def like_literal(text: str) -> str:
    """``text`` for a SQL ``LIKE … ESCAPE '\\'`` pattern that matches it literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def display_status(row: dict[str, Any], at: float | None = None) -> str:
    st = row["status"]
    if st in ("resolved", "regressed", "ignored"):
        return st
    return "new" if (at or now()) - row["first_seen"] < NEW_WINDOW else "ongoing"


def _alerts_hook(name: str = "on_crash_event") -> Callable[..., Any] | None:
    try:
        import wasmprof.alerts as alerts
    except ImportError:
        return None
    return getattr(alerts, name, None)


def _memory_tap(**kw: Any) -> Any:
    """A :class:`wasmprof.health.logs.LogMemoryTap` when the health package is installed."""
    try:
        from wasmprof.health.logs import LogMemoryTap
    except ImportError:
        return None
    return LogMemoryTap(**kw)


#: Prefix of the crash note saying which plugin version's modules were used (replaced on
#: every re-symbolization, like the symbolizer's ``module: `` note).
VERSION_NOTE = "version: "


@dataclass(slots=True)
class Symbolized:
    crash: Crash
    key: GroupKey
    space: str | None
    modules: list[str] = field(default_factory=list)    # sha256 of modules used (chosen first)
    note: str | None = None
    symbolization: dict[str, Any] | None = None         # which module/version, and why
    event_key: str | None = None                        # idempotency (log_event_keys)
    head_key: str | None = None


@dataclass(slots=True)
class Build:
    """The modules of one plugin version (``version`` None: linked without a version), most
    recently linked first, and the symbolizer over them."""

    version: str | None
    rows: list[dict[str, Any]]
    symbolizer: Any
    linked_at: float

    @property
    def label(self) -> str:
        return f"version {self.version}" if self.version else "the modules uploaded without a version"

    def files(self, limit: int = 3) -> str:
        names = [str(r["filename"] or f"module {r['id']}") for r in self.rows]
        return ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                           if len(names) > limit else "")


def _agrees(a: Any) -> str:
    if not a.named:
        return "the crash printed no function names to check"
    return f"{a.agreeing} of {a.named} printed frames agree with its functions"


class CrashService:
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
        #: called after ingest with the stored (plugin, version) pairs (module sources)
        self.on_ingest: Callable[..., Any] | None = None

    # -- symbolization --------------------------------------------------------------
    def _builds(self, plugin: str | None, runtime: Runtime, cache: dict
                ) -> tuple[list[Build], str, str]:
        """The plugin's modules grouped by linked version (a module linked as several
        versions is in each), most recently linked build first; and the WAMR dump mode."""
        wamr = runtime in (Runtime.WAMR, Runtime.UNKNOWN)
        ck = (plugin, wamr)
        hit = cache.get(ck)
        if hit is not None:
            return hit
        mode, why = self.registry.wamr_mode(plugin) if wamr else ("auto", "dialect tells")
        by_version: dict[str | None, list[dict[str, Any]]] = {}
        for r in (self.registry.plugin_links(plugin) if plugin else []):
            by_version.setdefault(r["link_version"], []).append(r)
        builds = []
        if by_version:
            from wasmprof.crashes import CrashSymbolizer
            for v, rows in by_version.items():
                rows.sort(key=lambda r: (-r["linked_at"], -r["id"]))
                pairs = self.registry.loaded(rows)
                if pairs:
                    builds.append(Build(v, [r for r, _ in pairs],
                                        CrashSymbolizer([m for _, m in pairs], self.resolver,
                                                        mode=mode),
                                        max(r["linked_at"] for r, _ in pairs)))
        builds.sort(key=lambda b: -b.linked_at)
        out = (builds, mode, why)
        cache[ck] = out
        return out

    @staticmethod
    def _pick_build(crash: Crash, version: str | None, builds: list[Build]
                    ) -> tuple[Build, str, str | None]:
        """(build, match, why): the exact version when uploaded; otherwise the build whose
        functions agree best with the names and offsets the crash printed, ties going to the
        most recently linked. ``match``: exact / fallback (other version) / unversioned (the
        crash has no version). ``why`` completes the note (None: nothing to say)."""
        exact = next((b for b in builds if version and b.version == version), None)
        if exact is not None:
            if len(builds) > 1:
                a = exact.symbolizer.agreement(crash)
                if a.missing:
                    better = [(b, m) for b in builds if b is not exact
                              for m in [b.symbolizer.agreement(crash).missing] if m < a.missing]
                    if better:
                        b, m = min(better, key=lambda t: t[1])
                        return exact, "exact", (
                            f"{a.missing} of the {a.named} function names the crash printed are "
                            f"not in the modules of version {version} ({exact.files()}) but "
                            f"only {m} are missing from {b.label} ({b.files()}): is the "
                            "crash's version label right?")
            return exact, "exact", None
        scored = sorted(((b.symbolizer.agreement(crash), i, b) for i, b in enumerate(builds)),
                        key=lambda t: (-t[0].points, t[1]))
        a, _, best = scored[0]
        why = _agrees(a)
        if a.named and a.missing == a.named:
            why = (f"none of the {len(builds)} uploaded builds knows the function names the "
                   "crash printed: frames may be wrong")
        others = [f"{b.label} ({b.files(1)}): {o.agreeing} of {o.named}"
                  for o, _, b in scored[1:4]]
        if others and a.named:
            why += "; also considered " + "; ".join(others)
        elif len(scored) > 1:
            why += f"; the most recently linked of {len(scored)} builds"
        return best, ("fallback" if version else "unversioned"), why

    def symbolize(self, crash: Crash, plugin: str | None, version: str | None,
                  cache: dict | None = None) -> Symbolized:
        cache = {} if cache is None else cache
        crash.frames = []
        crash.notes = [n for n in crash.notes if not n.startswith(VERSION_NOTE)]
        builds, mode, why = self._builds(plugin, crash.runtime, cache)
        note = None
        chosen: dict[str, Any] | None = None
        build: Build | None = None
        info: dict[str, Any] = {"crash_version": version, "match": "none", "version_used": None,
                                "module": None, "note": None}
        if builds:
            t0 = time.perf_counter()
            try:
                with self.resolve_lock:
                    build, match, vwhy = self._pick_build(crash, version, builds)
                    choice = build.symbolizer.choose(crash)
                    build.symbolizer.symbolize(crash, choice)
                    desc = build.symbolizer.describe_choice(crash, choice)
                chosen = next((r for r, m in zip(build.rows, build.symbolizer.modules)
                               if m is choice.module), None)
                used = (f"{build.label} ({chosen['filename']})" if chosen is not None
                        else f"{build.label} ({build.files()}; none of them matched)")
                vnote = None
                if match == "fallback":
                    vnote = f"no module uploaded for version {version}; used {used}: {vwhy}"
                elif match == "unversioned" and len(builds) > 1:
                    vnote = f"the crash has no version; used {used}: {vwhy}"
                elif vwhy:
                    vnote = vwhy
                if vnote:
                    crash.notes.append(VERSION_NOTE + vnote)
                versions = [b.version for b in builds
                            if chosen is not None and any(r["id"] == chosen["id"] for r in b.rows)]
                info.update(match=match, version_used=build.version, note=vnote, module=(
                    {"id": chosen["id"], "sha256": chosen["sha256"],
                     "filename": chosen["filename"], "kind": chosen["kind"],
                     "versions": versions} if chosen is not None else None))
                note = "; ".join(x for x in (vnote, desc) if x)
            except Exception as e:  # noqa: BLE001 - never lose the event for a resolver bug
                log.exception("symbolization failed for a crash of plugin %s", plugin)
                crash.frames = []
                note = f"symbolization failed: {type(e).__name__}: {e}"
            if self.metrics is not None:
                self.metrics.observe("symbolize", time.perf_counter() - t0)
        else:
            note = ("no module uploaded for plugin " + repr(plugin) if plugin
                    else "no plugin given: upload modules with plugin=NAME and post logs with ?plugin=NAME")
        rows = build.rows if build is not None else []
        if chosen is not None:
            rows = [chosen, *(r for r in rows if r["id"] != chosen["id"])]
        identity = rows[0]["identity"] if rows else None
        key = fingerprint(crash, plugin=plugin or "", module_identity=identity)
        space = str(crash.space) if crash.space else None
        return Symbolized(crash=crash, key=key, space=space,
                          modules=[r["sha256"] for r in rows[:8]], note=note,
                          symbolization=info)

    # -- ingest ---------------------------------------------------------------------------
    def ingest_log(self, stream: IO[bytes] | Iterable[bytes], *, source: str, size: int,
                   sha256: str | None, plugin: str | None, version: str | None,
                   labels: dict[str, str], token_id: int | None = None,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        from wasmprof.ingest.crashlog import scan_crashes
        if idempotency_key is not None:
            replay = self._claim_ingest_key(idempotency_key)
            if replay is not None:
                return replay
        try:
            result = self._ingest_log(stream, source=source, size=size, sha256=sha256,
                                      plugin=plugin, version=version, labels=labels,
                                      token_id=token_id, scan=scan_crashes)
        except BaseException:
            if idempotency_key is not None:
                with self.db.tx() as tx:
                    tx.execute("DELETE FROM log_ingest_keys WHERE idempotency_key = ? AND "
                               "result IS NULL", (idempotency_key,))
            raise
        if idempotency_key is not None:
            result["idempotency_key"] = idempotency_key
            with self.db.tx() as tx:
                tx.execute("UPDATE log_ingest_keys SET ingest_id = ?, result = ? WHERE "
                           "idempotency_key = ?", (result["ingest_id"], _json(result),
                                                   idempotency_key))
        return result

    def _claim_ingest_key(self, key: str) -> dict[str, Any] | None:
        """None: this post is the first with ``key`` (now claimed); else the first post's
        answer, marked ``duplicate``. Raises (409) while the first post is running."""
        with self.db.tx() as tx:
            row = tx.one("INSERT INTO log_ingest_keys (idempotency_key, created_at) VALUES (?, ?) "
                         "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                         (key, now()))
            if row is not None:
                return None
            prior = tx.one("SELECT ingest_id, result FROM log_ingest_keys WHERE "
                           "idempotency_key = ?", (key,))
        if prior is None or prior["result"] is None:
            raise IngestInProgress("a log with this idempotency key is still being ingested",
                                   source="Idempotency-Key", found=key[:80])
        out = orjson.loads(prior["result"])
        out.update(duplicate=True, new_events=0, duplicate_events=out.get("crashes", 0))
        return out

    def _ingest_log(self, stream: IO[bytes] | Iterable[bytes], *, source: str, size: int,
                    sha256: str | None, plugin: str | None, version: str | None,
                    labels: dict[str, str], token_id: int | None, scan: Callable
                    ) -> dict[str, Any]:
        received = now()
        with self.db.tx() as tx:
            ingest_id = tx.insert(
                "INSERT INTO ingests (kind, plugin, version, labels, source, size, sha256, "
                "crash_count, token_id, received_at) VALUES ('log', ?, ?, ?, ?, ?, ?, 0, ?, ?) "
                "RETURNING id", (plugin, version, _json(labels), source, size, sha256, token_id,
                                 received))
        events: list[dict[str, Any]] = []
        groups: dict[int, dict[str, Any]] = {}
        total = stored = duplicates = 0
        batch: list[Symbolized] = []
        cache: dict = {}
        ranks: dict[str, int] = {}

        def flush() -> None:
            nonlocal stored, duplicates
            if not batch:
                return
            with self.db.tx() as tx:
                rows, dups = self._store_batch(tx, batch, ingest_id=ingest_id, plugin=plugin,
                                               version=version, labels=labels, received=received)
                duplicates += dups
                for ev, grp in rows:
                    stored += 1
                    if len(events) < MAX_LISTED:
                        events.append(ev)
                    g = groups.setdefault(grp["id"], {
                        "id": grp["id"], "title": grp["title"], "fingerprint": grp["fingerprint"],
                        "new": False, "regressed": False, "events": 0})
                    g["events"] += 1
                    g["new"] |= ev["new_group"]
                    g["regressed"] |= ev["regressed"]
                tx.execute("UPDATE ingests SET crash_count = ? WHERE id = ?", (stored, ingest_id))
            batch.clear()

        memory = _memory_tap(source=source, plugin=plugin)   # WAMR memory blocks (health)
        if memory is not None:
            stream = memory.wrap(stream)
        seen: set[tuple[str | None, str | None]] = set()
        for crash in scan(stream, source):
            total += 1
            p = plugin or crash.plugin
            seen.add((p, version))
            s = self.symbolize(crash, p, version, cache)
            base, head = event_keys(crash, p, version)
            ranks[base] = rank = ranks.get(base, 0) + 1
            s.event_key, s.head_key = f"{base}:{rank}", f"{head}:{rank}"
            batch.append(s)
            if len(batch) >= BATCH:
                flush()
        flush()
        if self.on_ingest is not None and seen:
            self.on_ingest(seen, "crash")
        if self.metrics is not None:
            self.metrics.inc("crash_events", stored)
        out = {"ingest_id": ingest_id, "bytes": size, "crashes": total,
               "new_events": stored, "duplicate_events": duplicates,
               "events": events, "events_truncated": stored > len(events),
               "groups": sorted(groups.values(), key=lambda g: g["id"])}
        if memory is not None:
            out["memory"] = memory.store(self.db, received=received)
        return out

    def _claim_events(self, tx: Tx, batch: list[Symbolized]) -> tuple[list[Symbolized], int, set[int]]:
        """The crashes of ``batch`` not stored before (their keys now claimed), how many were
        duplicates, and the groups that lost a cut event a longer copy replaces. A copy is
        "cut" when partial or still open when its input ended (:data:`OPEN_AT_END`)."""
        from wasmprof.ingest.crashlog import OPEN_AT_END
        fresh: list[Symbolized] = []
        dups = 0
        emptied: set[int] = set()
        t = now()
        for s in batch:
            if s.event_key is None:
                fresh.append(s)
                continue
            cut = int(s.crash.partial or OPEN_AT_END in s.crash.notes)
            n = len(s.crash.raw)
            if tx.one("INSERT INTO log_event_keys (event_key, head_key, partial, lines, "
                      "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING "
                      "RETURNING event_key", (s.event_key, s.head_key, cut, n, t)) is None:
                dups += 1                             # the very same crash text
                continue
            same_head = tx.all("SELECT event_key, event_id, partial, lines FROM log_event_keys "
                               "WHERE head_key = ? AND event_key != ?", (s.head_key, s.event_key))
            if cut and any(r["lines"] >= n for r in same_head):
                tx.execute("DELETE FROM log_event_keys WHERE event_key = ?", (s.event_key,))
                dups += 1                             # a cut copy of a stored crash
                continue
            for r in same_head:
                if r["partial"] and (not cut or r["lines"] < n):    # a longer copy of a cut one
                    if r["event_id"] is not None:
                        ev = tx.one("SELECT group_id FROM crash_events WHERE id = ?",
                                    (r["event_id"],))
                        tx.execute("DELETE FROM crash_events WHERE id = ?", (r["event_id"],))
                        if ev is not None and ev["group_id"] is not None:
                            emptied.add(int(ev["group_id"]))
                    tx.execute("DELETE FROM log_event_keys WHERE event_key = ?", (r["event_key"],))
            fresh.append(s)
        return fresh, dups, emptied

    def _store_batch(self, tx: Tx, batch: list[Symbolized], *, ingest_id: int | None,
                     plugin: str | None, version: str | None, labels: dict[str, str],
                     received: float) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
        """Store the events not stored before; one group upsert per distinct fingerprint in
        the batch. Returns the stored (event, group) pairs and the duplicates' count."""
        batch, duplicates, emptied = self._claim_events(tx, batch)
        prepared = []
        by_fp: dict[str, list[int]] = {}
        for i, s in enumerate(batch):
            prepared.append((s, plugin or s.crash.plugin, parse_log_time(s.crash.timestamp, received)))
            by_fp.setdefault(s.key.fingerprint, []).append(i)
        groups: dict[str, tuple[int, bool, bool, dict[str, Any]]] = {}
        for fp, idxs in by_fp.items():
            s0, p0, _ = prepared[idxs[0]]
            seen = [prepared[i][2] for i in idxs]
            gid, is_new, regressed = self._upsert_group(
                tx, s0.key, p0, str(s0.crash.trap_kind), min(seen), max(seen),
                top_frames(prepared[idxs[-1]][0].crash), count=len(idxs))
            groups[fp] = (gid, is_new, regressed, self._group_row(tx, gid))
        hook = _alerts_hook()
        labels_json = _json(labels)
        out = []
        announced: set[str] = set()
        for s, p, seen in prepared:
            c = s.crash
            fp = s.key.fingerprint
            gid, is_new, regressed, group = groups[fp]
            first = fp not in announced
            announced.add(fp)
            frames = _json([f.to_dict() for f in c.frames]) if c.frames else None
            grouping = {**s.key.reason, "fingerprint": fp, "note": s.note, "space": s.space,
                        "symbolization": s.symbolization}
            eid = tx.insert(
                "INSERT INTO crash_events (ingest_id, group_id, plugin, version, labels, trap_kind, "
                "runtime, message, function, occurred_at, received_at, crash, space, frames, "
                "symbolized_with, fingerprint, grouping, symbolized_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (ingest_id, gid, p, version, labels_json, str(c.trap_kind), str(c.runtime),
                 (c.message or "")[:2000], c.function, seen, received, crash_to_json(c), s.space,
                 frames, _json(s.modules), fp, _json(grouping), received))
            if s.event_key is not None:
                tx.execute("UPDATE log_event_keys SET event_id = ? WHERE event_key = ?",
                           (eid, s.event_key))
            event = {"id": eid, "group_id": gid, "plugin": p, "version": version,
                     "labels": labels, "trap_kind": str(c.trap_kind), "message": c.message,
                     "occurred_at": seen, "received_at": received,
                     "new_group": is_new and first, "regressed": regressed and first,
                     "title": group["title"], "fingerprint": fp,
                     "frames": [f.to_dict() for f in c.frames[:20]],
                     "panic": _panic_summary(c.panic)}
            if hook is not None:
                try:
                    with self.db.savepoint(tx, "alerts_hook"):
                        hook(self.db, group, event, event["new_group"], event["regressed"])
                except Exception:  # noqa: BLE001 - alerts must never block or fail ingest
                    log.exception("alerts hook failed for crash event %s", eid)
            out.append((event, group))
        if emptied:
            self._refresh_groups(tx, emptied | {g[0] for g in groups.values()})
        return out, duplicates

    def _upsert_group(self, tx: Tx, key: GroupKey, plugin: str | None, trap: str,
                      seen_min: float, seen_max: float, frames: list[dict], *,
                      count: int) -> tuple[int, bool, bool]:
        """(group id, created, regressed). Safe with concurrent replicas."""
        t = now()
        row = tx.one("SELECT id FROM crash_groups WHERE fingerprint = ?", (key.fingerprint,))
        if row is None:
            row = tx.one(
                "INSERT INTO crash_groups (fingerprint, plugin, trap_kind, title, basis, reason, "
                "top_frames, first_seen, last_seen, count, status, created_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (fingerprint) DO NOTHING "
                "RETURNING id", (key.fingerprint, plugin, trap, key.title, key.basis,
                                 _json(key.reason), _json(frames), seen_min, seen_max, count, t))
            if row is not None:
                return int(row["id"]), True, False
            row = tx.one("SELECT id FROM crash_groups WHERE fingerprint = ?", (key.fingerprint,))
        gid = int(row["id"])
        # regressed at the crash's own time (the log's timestamp), not when it was received
        regressed = count > 0 and tx.one("UPDATE crash_groups SET status = 'regressed', regressed_at = ? "
                           "WHERE id = ? AND status = 'resolved' RETURNING id",
                           (min(seen_max, t), gid)) is not None
        tx.execute(
            "UPDATE crash_groups SET count = count + ?, "
            "last_seen = CASE WHEN last_seen < ? THEN ? ELSE last_seen END, "
            "first_seen = CASE WHEN first_seen > ? THEN ? ELSE first_seen END, "
            "title = ?, basis = ?, reason = ?, top_frames = ? WHERE id = ?",
            (count, seen_max, seen_max, seen_min, seen_min, key.title, key.basis, _json(key.reason),
             _json(frames), gid))
        return gid, False, regressed

    def _group_row(self, tx: Tx, gid: int) -> dict[str, Any]:
        row = tx.one("SELECT * FROM crash_groups WHERE id = ?", (gid,))
        return self._group_dict(row) if row else {}

    @staticmethod
    def _group_dict(row: dict[str, Any]) -> dict[str, Any]:
        d = dict(row)
        d["reason"] = orjson.loads(d["reason"]) if d.get("reason") else None
        d["top_frames"] = orjson.loads(d["top_frames"]) if d.get("top_frames") else []
        d["stored_status"] = d["status"]
        d["status"] = display_status(row)
        return d

    # -- re-symbolization -------------------------------------------------------------
    def resymbolize(self, *, plugin: str | None = None, only_unsymbolized: bool = False,
                    page: int = BATCH) -> dict[str, int]:
        """Re-symbolize and regroup stored events (of ``plugin``, or all)."""
        last = 0
        seen = changed = moved = 0
        cache: dict = {}
        while True:
            with self.db.read() as tx:
                where = "id > ?"
                params: list[Any] = [last]
                if plugin is not None:
                    where += " AND plugin = ?"
                    params.append(plugin)
                if only_unsymbolized:
                    where += " AND frames IS NULL"
                rows = tx.all(f"SELECT id, group_id, plugin, version, crash, frames, fingerprint, "
                              f"symbolized_with, grouping FROM crash_events WHERE {where} "
                              f"ORDER BY id LIMIT {int(page)}", params)
            if not rows:
                break
            last = rows[-1]["id"]
            updates = []
            for r in rows:
                seen += 1
                crash = crash_from_json(r["crash"])
                s = self.symbolize(crash, r["plugin"], r["version"], cache)
                frames = _json([f.to_dict() for f in crash.frames]) if crash.frames else None
                before = orjson.loads(r["grouping"]) if r["grouping"] else {}
                if (frames == r["frames"] and s.key.fingerprint == r["fingerprint"]
                        and _json(s.modules) == r["symbolized_with"]
                        and before.get("note") == s.note):
                    continue
                changed += 1
                updates.append((r, s, frames))
            if updates:
                with self.db.tx() as tx:
                    touched: set[int] = set()
                    created: dict[int, tuple[dict[str, Any], Symbolized, float]] = {}
                    regressed: dict[int, tuple[dict[str, Any], Symbolized, float]] = {}
                    for r, s, frames in updates:
                        ev = tx.one("SELECT occurred_at, received_at FROM crash_events "
                                    "WHERE id = ?", (r["id"],))
                        occurred = ev["occurred_at"]
                        gid, is_new, _ = self._upsert_group(
                            tx, s.key, r["plugin"], str(s.crash.trap_kind), occurred, occurred,
                            top_frames(s.crash), count=0)
                        if is_new or gid in created:
                            created[gid] = (r, s, occurred)
                        elif gid != r["group_id"] and (gid in regressed or tx.one(
                                "UPDATE crash_groups SET status = 'regressed', regressed_at = ? "
                                "WHERE id = ? AND status = 'resolved' AND resolved_at < ? "
                                "RETURNING id", (min(occurred, now()), gid,
                                                 ev["received_at"])) is not None):
                            # received after the resolve: ingest would have flagged it then
                            regressed[gid] = (r, s, occurred)
                        if gid != r["group_id"]:
                            touched.update((gid, r["group_id"]))
                            moved += 1
                        grouping = {**s.key.reason, "fingerprint": s.key.fingerprint,
                                    "note": s.note, "space": s.space,
                                    "symbolization": s.symbolization, "regrouped_at": now()}
                        # the crash's notes say which module/version was used: keep them current
                        tx.execute("UPDATE crash_events SET group_id = ?, frames = ?, space = ?, "
                                   "symbolized_with = ?, fingerprint = ?, grouping = ?, "
                                   "symbolized_at = ?, crash = ? WHERE id = ?",
                                   (gid, frames, s.space, _json(s.modules), s.key.fingerprint,
                                    _json(grouping), now(), crash_to_json(s.crash), r["id"]))
                    removed = self._refresh_groups(tx, touched)
                    self._announce_regroup(tx, created, regressed, removed)
        return {"events": seen, "changed": changed, "moved": moved}

    def _announce_regroup(self, tx: Tx, created: dict[int, tuple[dict[str, Any], Symbolized, float]],
                          regressed: dict[int, tuple[dict[str, Any], Symbolized, float]],
                          removed: list[int]) -> None:
        hook = _alerts_hook("on_crash_regrouped")
        if hook is None or not (created or regressed or removed):
            return

        def pairs(groups: dict[int, tuple[dict[str, Any], Symbolized, float]]) -> list[tuple]:
            out = []
            for gid, (r, s, occurred) in groups.items():
                c = s.crash
                out.append((self._group_row(tx, gid), {
                    "id": r["id"], "group_id": gid, "plugin": r["plugin"],
                    "version": r["version"], "trap_kind": str(c.trap_kind), "message": c.message,
                    "occurred_at": occurred, "fingerprint": s.key.fingerprint,
                    "frames": [f.to_dict() for f in c.frames[:20]],
                    "panic": _panic_summary(c.panic)}))
            return out
        try:
            with self.db.savepoint(tx, "alerts_regroup_hook"):
                hook(self.db, pairs(created), removed, regressed=pairs(regressed))
        except Exception:  # noqa: BLE001 - alerts must never fail a regrouping
            log.exception("alerts regroup hook failed")

    def refresh_groups(self, ids: Iterable[int]) -> list[int]:
        """Recompute count/first/last seen from the events; drop groups left empty (their
        ids are returned)."""
        with self.db.tx() as tx:
            return self._refresh_groups(tx, ids)

    @staticmethod
    def _refresh_groups(tx: Tx, ids: Iterable[int]) -> list[int]:
        removed = []
        for gid in sorted({i for i in ids if i is not None}):
            agg = tx.one("SELECT COUNT(*) AS n, MIN(occurred_at) AS lo, MAX(occurred_at) AS hi "
                         "FROM crash_events WHERE group_id = ?", (gid,))
            if not agg or not agg["n"]:
                tx.execute("DELETE FROM crash_groups WHERE id = ?", (gid,))
                removed.append(gid)
            else:
                tx.execute("UPDATE crash_groups SET count = ?, first_seen = ?, last_seen = ? "
                           "WHERE id = ?", (agg["n"], agg["lo"], agg["hi"], gid))
        return removed

    # -- reads ------------------------------------------------------------------------
    def list_groups(self, *, plugin: str | None = None, status: str | None = None,
                    trap_kind: str | None = None, q: str | None = None,
                    version: str | None = None, limit: int = 100, offset: int = 0,
                    sort: str = "last_seen") -> dict[str, Any]:
        where, params = ["1 = 1"], []
        if plugin:
            where.append("plugin = ?")
            params.append(plugin)
        if trap_kind:
            where.append("trap_kind = ?")
            params.append(trap_kind)
        if q:
            where.append("(LOWER(title) LIKE ? ESCAPE '\\' "
                         "OR LOWER(COALESCE(plugin, '')) LIKE ? ESCAPE '\\')")
            needle = "%" + like_literal(q.lower()) + "%"
            params += [needle, needle]
        if version:
            where.append("id IN (SELECT group_id FROM crash_events WHERE version = ?)")
            params.append(version)
        t = now()
        if status in ("resolved", "regressed", "ignored"):
            where.append("status = ?")
            params.append(status)
        elif status == "new":
            where.append("status = 'open' AND first_seen >= ?")
            params.append(t - NEW_WINDOW)
        elif status == "ongoing":
            where.append("status = 'open' AND first_seen < ?")
            params.append(t - NEW_WINDOW)
        elif status == "unresolved":
            where.append("status NOT IN ('resolved', 'ignored')")
        order = {"last_seen": "last_seen DESC", "first_seen": "first_seen DESC",
                 "count": "count DESC"}.get(sort, "last_seen DESC")
        limit = max(1, min(int(limit), 1000))
        with self.db.read() as tx:
            total = tx.scalar(f"SELECT COUNT(*) AS n FROM crash_groups WHERE {' AND '.join(where)}",
                              params)
            rows = tx.all(f"SELECT * FROM crash_groups WHERE {' AND '.join(where)} "
                          f"ORDER BY {order}, id DESC LIMIT {limit} OFFSET {max(0, int(offset))}",
                          params)
            versions: dict[int, dict[str, int]] = {}
            if rows:
                marks = ",".join("?" for _ in rows)
                for v in tx.all(f"SELECT group_id, version, COUNT(*) AS n FROM crash_events "
                                f"WHERE group_id IN ({marks}) GROUP BY group_id, version",
                                [r["id"] for r in rows]):
                    versions.setdefault(v["group_id"], {})[v["version"] or "unknown"] = v["n"]
        out = []
        for r in rows:
            d = self._group_dict(r)
            d.pop("reason", None)
            d["versions"] = versions.get(r["id"], {})
            out.append(d)
        return {"total": total, "groups": out}

    def get_group(self, gid: int, *, events: int = 20) -> dict[str, Any] | None:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM crash_groups WHERE id = ?", (gid,))
            if row is None:
                return None
            d = self._group_dict(row)
            d["versions"] = {v["version"] or "unknown": v["n"] for v in tx.all(
                "SELECT version, COUNT(*) AS n FROM crash_events WHERE group_id = ? "
                "GROUP BY version", (gid,))}
            evs = tx.all("SELECT id, plugin, version, trap_kind, message, occurred_at, "
                         "received_at, frames, space, grouping FROM crash_events WHERE group_id = ? "
                         "ORDER BY id DESC LIMIT ?", (gid, max(1, min(events, 200))))
            times = tx.all("SELECT occurred_at FROM crash_events WHERE group_id = ? "
                           "ORDER BY id DESC LIMIT 10000", (gid,))
        d["sample_events"] = [{
            **{k: e[k] for k in ("id", "plugin", "version", "trap_kind", "message",
                                 "occurred_at", "received_at", "space")},
            "frames": (orjson.loads(e["frames"]) if e["frames"] else [])[:12],
            "symbolization": (orjson.loads(e["grouping"]) if e["grouping"] else {}
                              ).get("symbolization"),
        } for e in evs]
        d["timeline"] = hourly([t["occurred_at"] for t in times])
        return d

    def list_events(self, gid: int, *, limit: int = 50, before_id: int | None = None
                    ) -> dict[str, Any]:
        """Events of a group, newest first, paged by ``before_id``."""
        limit = max(1, min(int(limit), 500))
        with self.db.read() as tx:
            rows = tx.all("SELECT id, plugin, version, labels, trap_kind, message, occurred_at, "
                          "received_at, space FROM crash_events WHERE group_id = ? AND id < ? "
                          "ORDER BY id DESC LIMIT ?", (gid, before_id or 2**62, limit))
        for r in rows:
            r["labels"] = orjson.loads(r["labels"]) if r["labels"] else {}
        return {"events": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    def get_event(self, eid: int) -> dict[str, Any] | None:
        with self.db.read() as tx:
            r = tx.one("SELECT * FROM crash_events WHERE id = ?", (eid,))
        if r is None:
            return None
        crash = orjson.loads(r["crash"])
        grouping = orjson.loads(r["grouping"]) if r["grouping"] else None
        return {
            "id": r["id"], "group_id": r["group_id"], "ingest_id": r["ingest_id"],
            "plugin": r["plugin"], "version": r["version"],
            "labels": orjson.loads(r["labels"]) if r["labels"] else {},
            "trap_kind": r["trap_kind"], "runtime": r["runtime"], "message": r["message"],
            "function": r["function"], "occurred_at": r["occurred_at"],
            "received_at": r["received_at"], "space": r["space"],
            "frames": orjson.loads(r["frames"]) if r["frames"] else [],
            "raw": crash.get("raw", []), "raw_frames": crash.get("raw_frames", []),
            "partial": crash.get("partial"), "notes": crash.get("notes", []),
            "panic": crash.get("panic"), "breadcrumbs": crash.get("breadcrumbs", []),
            "origin": crash.get("origin"),
            "thread": crash.get("thread"), "timestamp": crash.get("timestamp"),
            "source": crash.get("source"), "first_line": crash.get("first_line"),
            "grouping": grouping,
            "symbolization": (grouping or {}).get("symbolization"),
            "symbolized_with": orjson.loads(r["symbolized_with"]) if r["symbolized_with"] else [],
        }

    def set_resolved(self, gid: int, resolved: bool) -> dict[str, Any] | None:
        return self.set_status(gid, "resolved" if resolved else "open")

    def set_status(self, gid: int, status: str) -> dict[str, Any] | None:
        """``resolved`` (a later crash regresses it), ``ignored`` (muted: counted, never
        alerted, never regressed) or ``open`` (reopen a resolved or ignored group; a
        regressed group is already open). None when the group does not exist."""
        with self.db.tx() as tx:
            if status == "resolved":
                tx.execute("UPDATE crash_groups SET status = 'resolved', resolved_at = ? "
                           "WHERE id = ?", (now(), gid))
            elif status == "ignored":
                tx.execute("UPDATE crash_groups SET status = 'ignored' WHERE id = ?", (gid,))
            elif status == "open":
                tx.execute("UPDATE crash_groups SET status = 'open' WHERE id = ? "
                           "AND status IN ('resolved', 'ignored')", (gid,))
            else:
                raise ValueError(f"unknown crash group status {status!r}")
        return self.get_group(gid, events=5)


class IngestInProgress(WasmprofError):
    """An ``Idempotency-Key`` whose first post has not finished (answered 409)."""

    http_status = 409


def _panic_summary(panic: Panic | None) -> dict[str, Any] | None:
    """The panic as alerts and event lists show it (no text lines, no frames)."""
    if panic is None:
        return None
    return {"kind": panic.kind, "language": panic.language, "message": panic.message,
            "location": panic.location, "recovered": panic.recovered, "partial": panic.partial}


async def read_log_body(request: Any, *, limit: int) -> tuple[Any, int, str, str | None]:
    """Spool a log request body (raw, or multipart ``file``) to a temporary file: (file at
    offset 0, size, sha256 of the bytes stored, the multipart file name). A gzip body
    (``Content-Encoding: gzip`` or gzip magic) is decompressed on the way, every member of
    concatenated gzip files, its size held to ``limit`` like a plain body; a damaged gzip
    stream is a 400."""
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    h = hashlib.sha256()
    size = 0
    filename = None
    gunzip: Any = None
    declared = "gzip" in request.headers.get("content-encoding", "").lower()

    def store(data: bytes) -> None:
        nonlocal size
        if size + len(data) > limit or (gunzip is not None and gunzip.unconsumed_tail):
            raise UsageError("log body too large once decompressed", source="body",
                             expected=f"at most {limit} bytes", found=f"more than {limit}")
        h.update(data)
        spool.write(data)
        size += len(data)

    def put(data: bytes) -> None:
        nonlocal gunzip
        if gunzip is None and size == 0 and (declared or data[:2] == b"\x1f\x8b"):
            gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if gunzip is None:
            store(data)
            return
        while data:
            if gunzip.eof:               # the next member (gzip files concatenated)
                if not data.strip(b"\0"):
                    return               # zero padding after the last member
                gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                store(gunzip.decompress(data, max(0, limit + 1 - size)))
            except zlib.error as e:
                raise UsageError(f"bad gzip body: {e}", source="body", offset=size) from None
            data = gunzip.unused_data if gunzip.eof else b""

    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=4, max_fields=32)
            f = form.get("file")
            if not hasattr(f, "read"):
                raise UsageError("multipart upload without a 'file' field", source="body")
            filename = f.filename
            while chunk := await f.read(1 << 20):
                put(chunk)
        else:
            async for chunk in request.stream():
                if chunk:
                    put(chunk)
        if gunzip is not None and not gunzip.eof and size:
            raise UsageError("gzip body cut short", source="body", offset=size)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, h.hexdigest(), filename


def top_frames(crash: Crash, n: int = 12) -> list[dict[str, Any]]:
    """A compact view of the first frames for lists (function, file:line, status)."""
    if crash.frames:
        return [{"function": f.function, "file": f.file, "line": f.line, "column": f.column,
                 "status": str(f.status), "inlined": f.inlined, "native": f.native,
                 "input_index": f.input_index} for f in crash.frames[:n]]
    return [{"function": r.printed_name, "file": None, "line": None, "column": None,
             "status": "unsymbolized", "inlined": False, "native": r.native,
             "input_index": r.index} for r in crash.raw_frames[:n]]


def hourly(times: list[float], hours: int = 24 * 14) -> dict[str, Any]:
    """Event counts per hour for the last ``hours`` hours (sparkline data)."""
    end = int(now() // 3600) + 1
    start = end - hours
    buckets = [0] * hours
    for t in times:
        h = int(t // 3600)
        if start <= h < end:
            buckets[h - start] += 1
    return {"start": start * 3600, "step": 3600, "counts": buckets}

