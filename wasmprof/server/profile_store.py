"""Profile store writes and dictionary reads (tables: :mod:`wasmprof.server.profile_schema`).

:meth:`ProfileStore.write` puts one :class:`~wasmprof.server.profile_ingest.AggregatedBatch`
into an open write transaction (the caller's, together with the raw input), with batched
statements: unknown frames and stacks (``INSERT … ON CONFLICT DO NOTHING``: ids are content
hashes, so replicas never conflict), series get-or-create, one count row per (series,
bucket) and the rollup marks of the days it touched
(:mod:`wasmprof.server.profile_rollup`). What this process knows is in the database is cached only after the commit
(:meth:`committed`), so a rolled-back transaction never leaves a cache claiming rows that
do not exist.

Reads (:meth:`frames`, :meth:`stacks`) go through in-process caches: frames and stacks are
immutable (an id is the hash of its content), so a cached entry is never stale.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from wasmprof.model import Frame
from wasmprof.server.profile_codec import encode_counts, pack_ids, unpack_ids
from wasmprof.server.profile_ingest import AggregatedBatch, SeriesKey, content_frame
from wasmprof.server.profile_rollup import mark_dirty
from wasmprof.store.db import Database, Tx, now

_CHUNK = 500
_MAX_KNOWN = 2_000_000
_MAX_NOTES_PER_SERIES = 50


def chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def marks(n: int) -> str:
    return ",".join("?" * n)


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._known_frames: set[int] = set()
        self._known_stacks: set[int] = set()
        self._series_ids: dict[str, int] = {}
        self._known_scopes: set[tuple[str, str]] = set()
        self._frame_cache: dict[int, Frame] = {}
        self._stack_cache: dict[int, tuple[int, ...]] = {}

    # -- writes ---------------------------------------------------------------------------
    def write(self, tx: Tx, batch: AggregatedBatch, *, counts: bool = True) -> dict[str, Any]:
        """Write ``batch`` inside ``tx``; returns what to pass to :meth:`committed` (and, as
        ``series_ids``, the id of each of ``batch.series``). ``counts=False`` writes the
        dictionary rows only (a rebuild keeps the counts in its shadow table)."""
        t = now()
        # every insert runs in key order: concurrent transactions (PostgreSQL replicas) that
        # add overlapping new keys then wait on each other in one order and never deadlock
        new_series: dict[str, int] = {}
        order = sorted(range(len(batch.series)), key=lambda i: batch.series[i].key())
        series_ids = [0] * len(batch.series)
        for i in order:
            series_ids[i] = self._series_id(tx, batch.series[i], t, new_series)
        frames = sorted((fid, *c) for fid, c in batch.frames.items()
                        if fid not in self._known_frames)
        if frames:
            tx.executemany(
                "INSERT INTO profile_frames (id, function, raw_function, file, line, col, "
                "inlined, status, reason, wasm_index, module, native, printed_name, identity) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [(f[0], f[1], f[2], f[3], f[4], f[5], int(f[6]), f[7], f[8], f[9], f[10],
                  int(f[11]), f[12], f[13]) for f in frames])
        stacks = sorted((sid, len(fids), pack_ids(fids)) for sid, fids in batch.stacks.items()
                        if sid not in self._known_stacks)
        if stacks:
            tx.executemany("INSERT INTO profile_stacks (id, depth, frames) VALUES (?, ?, ?) "
                           "ON CONFLICT (id) DO NOTHING", stacks)
        if batch.pending:
            tx.executemany("INSERT INTO profile_pending (frame_id, plugin, version, raw, "
                           "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (frame_id) DO NOTHING",
                           sorted((fid, p, v, raw, t) for fid, (p, v, raw) in batch.pending.items()))
        if batch.stack_pending:
            tx.executemany("INSERT INTO profile_stack_pending (frame_id, stack_id) VALUES (?, ?) "
                           "ON CONFLICT (frame_id, stack_id) DO NOTHING", sorted(batch.stack_pending))
        if counts:
            mark_dirty(tx, ((batch.series[si].plugin, batch.series[si].version, bucket)
                            for (si, bucket), c in batch.cells.items() if c))
            self.insert_cells(tx, [(series_ids[si], bucket, batch.width, c)
                                   for (si, bucket), c in batch.cells.items()])
        if batch.notes:
            notes = list(dict.fromkeys(batch.notes))[:_MAX_NOTES_PER_SERIES]
            tx.executemany("INSERT INTO profile_notes (series_id, note_hash, note) VALUES (?, ?, ?) "
                           "ON CONFLICT (series_id, note_hash) DO NOTHING",
                           sorted((sid, hashlib.sha256(n.encode()).hexdigest()[:32], n[:2000])
                                  for sid in set(series_ids) for n in notes))
        return {"frames": [f[0] for f in frames], "stacks": [s[0] for s in stacks],
                "series": new_series, "series_ids": series_ids}

    def lock_scope(self, tx: Tx, plugin: str | None, version: str | None, *,
                   exclusive: bool = False) -> None:
        """Lock the ``profile_scopes`` row of (plugin, version) — call it FIRST in a
        transaction that writes or deletes count rows of the scope's series (ingest, backfill,
        merges: shared; a rebuild's swap: ``exclusive``), so a swap sees no concurrent writer
        of the scope. On SQLite write transactions are serialized already; the row is only
        created (a rebuild's planner creates it there)."""
        key = (plugin or "", version or "")
        if tx.dialect == "sqlite":
            if exclusive:
                tx.execute("INSERT INTO profile_scopes (plugin, version) VALUES (?, ?) "
                           "ON CONFLICT (plugin, version) DO NOTHING", key)
            return
        mine = False
        if key not in self._known_scopes:
            cur = tx.execute("INSERT INTO profile_scopes (plugin, version) VALUES (?, ?) "
                             "ON CONFLICT (plugin, version) DO NOTHING", key)
            mine = cur.rowcount == 1
        row = tx.one("SELECT plugin FROM profile_scopes WHERE plugin = ? AND version = ? FOR "
                     + ("UPDATE" if exclusive else "KEY SHARE"), key)
        if row is not None and not mine:       # committed by someone: it stays (never deleted)
            with self._lock:
                self._known_scopes.add(key)

    @staticmethod
    def insert_cells(tx: Tx, cells: Sequence[tuple[int, int, int, dict[int, int]]]) -> None:
        """Count rows: (series id, bucket start, width, {stack id: count})."""
        rows = [(sid, bucket, width, sum(c.values()), len(c), encode_counts(c))
                for sid, bucket, width, c in cells if c]
        if rows:
            tx.executemany("INSERT INTO profile_counts (series_id, bucket, width, samples, "
                           "stacks, data) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def committed(self, written: dict[str, Any]) -> None:
        with self._lock:
            if len(self._known_frames) > _MAX_KNOWN:
                self._known_frames.clear()
            if len(self._known_stacks) > _MAX_KNOWN:
                self._known_stacks.clear()
            self._known_frames.update(written["frames"])
            self._known_stacks.update(written["stacks"])
            self._series_ids.update(written.get("series", {}))

    def forget(self) -> None:
        """Drop what this process believes is stored (after a rollback it cannot see)."""
        with self._lock:
            self._known_frames.clear()
            self._known_stacks.clear()
            self._series_ids.clear()

    def _series_id(self, tx: Tx, s: SeriesKey, t: float, new: dict[str, int]) -> int:
        key = s.key()
        sid = self._series_ids.get(key) or new.get(key)
        if sid is not None:
            return sid
        row = tx.one("SELECT id FROM profile_series WHERE key = ?", (key,))
        if row is None:
            tx.execute("INSERT INTO profile_series (key, plugin, version, thread, unit, labels, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                       (key, s.plugin, s.version, s.thread, s.unit,
                        orjson.dumps(s.labels, option=orjson.OPT_SORT_KEYS).decode(), t))
            row = tx.one("SELECT id FROM profile_series WHERE key = ?", (key,))
            assert row is not None
            tx.executemany("INSERT INTO profile_series_labels (series_id, name, value) "
                           "VALUES (?, ?, ?) ON CONFLICT (series_id, name) DO NOTHING",
                           sorted((row["id"], k, v) for k, v in s.labels.items()))
        sid = new[key] = int(row["id"])
        return sid

    # -- dictionary reads -----------------------------------------------------------------
    @staticmethod
    def _cached(cache: dict[int, Any], ids: Iterable[int], fetch: Any) -> dict[int, Any]:
        """``cache`` hits plus ``fetch(missing ids chunk) -> {id: value}`` for the rest."""
        out: dict[int, Any] = {}
        missing = []
        for i in ids:
            hit = cache.get(i)
            if hit is None:
                missing.append(i)
            else:
                out[i] = hit
        for part in chunks(missing):
            got = fetch(part)
            out.update(got)
            cache.update(got)
        if len(cache) > _MAX_KNOWN:
            cache.clear()
        return out

    def stacks(self, tx: Tx, ids: Iterable[int]) -> dict[int, tuple[int, ...]]:
        return self._cached(self._stack_cache, ids, lambda part: {
            int(r["id"]): unpack_ids(r["frames"]) for r in tx.all(
                f"SELECT id, frames FROM profile_stacks WHERE id IN ({marks(len(part))})", part)})

    def frames(self, tx: Tx, ids: Iterable[int]) -> dict[int, Frame]:
        return self._cached(self._frame_cache, ids, lambda part: {
            int(r["id"]): content_frame((r["function"], r["raw_function"], r["file"], r["line"],
                                         r["col"], r["inlined"], r["status"], r["reason"],
                                         r["wasm_index"], r["module"], r["native"],
                                         r["printed_name"]))
            for r in tx.all("SELECT id, function, raw_function, file, line, col, inlined, status, "
                            "reason, wasm_index, module, native, printed_name FROM profile_frames "
                            f"WHERE id IN ({marks(len(part))})", part)})
