"""Rebuild a scope's derived profile rows from its retained raw inputs.

Frames resolved at ingest keep no per-PC address, so when a better module set arrives for a
(plugin, version) — a debug build after the stripped one, a corrected module, a companion
linked later — only the raw inputs can tell what the stored samples resolve to now. The
design's rule applies: derived data can always be rebuilt from the stored inputs.

*Stale*: every input records the hash of the module set its rows were derived with
(``profile_inputs.modules`` = :attr:`ScopeResolver.modules_hash`; NULL for inputs stored
before this existed). A scope whose retained, derived inputs were made with another set than
the scope's current one is stale. :meth:`Rebuilder.plan` starts one rebuild per stale scope
over the time range of its stale inputs, aligned to *windows* of :attr:`Rebuilder.window`
seconds (a multiple of every bucket width, so every count row, downsampled or not, lies in
exactly one window).

:meth:`Rebuilder.work` (the maintenance thread of any replica) advances rebuilds. One replica
holds a rebuild's claim at a time (taken over when it goes stale); every step is a
transaction that re-checks the claim, so a replica killed mid-way loses nothing and no step
is done twice:

1. *Shadow*: each retained input overlapping the range is re-derived with ingest's own code
   (:meth:`ProfileService.rederive`: parse, symbolize with the current modules, aggregate)
   into ``profile_rebuild_counts``; frames and stacks go to the dictionary tables (content
   ids: shared, idempotent).
2. *Swap*, one window per transaction with the scope locked (no ingest, backfill or merge
   writes the scope's rows meanwhile; inputs that arrived since are re-derived first): when
   the live rows of the window hold exactly as many samples as the shadow — re-symbolizing
   never changes how many samples fall in a window, so only then is every contributor a
   retained input — the live rows are replaced by the shadow's (at the bucket width the
   downsampler would give them). Otherwise (raw inputs expired after the retention, or no
   longer parse) the window keeps its rows and their old symbols: *kept*.
3. *Finish*: inputs whose every sample was swapped are marked with the module set; kept
   windows put a note on the scope's series, shown with every query of them.

A module change during a rebuild supersedes it (a new one starts for the new set). Progress:
``profile_rebuilds`` (``GET /api/v1/profiles`` summary: ``rebuilds``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from wasmprof.errors import WasmprofError
from wasmprof.server.profile_codec import encode_arrays, merge_rows
from wasmprof.server.profile_ingest import BASE_WIDTH, AggregatedBatch
from wasmprof.server.profile_query import MAX_WIDTH
from wasmprof.server.profile_rollup import mark_range
from wasmprof.store.db import Tx, now

if TYPE_CHECKING:
    from wasmprof.server.profile_ingest import ScopeResolver
    from wasmprof.server.profile_service import ProfileService

log = logging.getLogger(__name__)

CLAIM_STALE = 120.0          # seconds without progress before another replica takes over
SHADOW_BATCH = 20            # inputs re-derived per shadow transaction
CATCH_UP_MAX = 20            # inputs a swap transaction re-derives itself (more: shadow first)
NOTE_KEY = "rebuild-kept"    # profile_notes.note_hash of a series' kept-windows note

_SCOPE = "plugin = ? AND COALESCE(version, '') = ?"
_SERIES = f"series_id IN (SELECT id FROM profile_series WHERE {_SCOPE})"


class _Lost(Exception):
    """The rebuild is no longer ours (superseded, finished or claimed elsewhere)."""


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class Rebuilder:
    def __init__(self, service: ProfileService) -> None:
        self.svc = service
        self.db = service.db
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    @property
    def window(self) -> int:
        """Seconds per swap window: a multiple of every bucket width in use."""
        w = math.lcm(BASE_WIDTH, MAX_WIDTH)
        for width, _age in self.svc.settings.downsample:
            w = math.lcm(w, int(width))
        return w

    # -- planning -----------------------------------------------------------------------
    def plan(self, plugin: str | None = None, t: float | None = None) -> int:
        """Start a rebuild for every stale scope (of ``plugin``); returns how many started."""
        t = now() if t is None else t
        with self.db.read() as tx:
            scopes = tx.all("SELECT DISTINCT plugin, COALESCE(version, '') AS version FROM "
                            "profile_series WHERE plugin IS NOT NULL AND plugin != ''"
                            + (" AND plugin = ?" if plugin else ""), [plugin] if plugin else [])
        started = 0
        for sc in scopes:
            try:
                started += self._plan_scope(sc["plugin"], sc["version"], t)
            except Exception:  # noqa: BLE001 - one scope never stops the others
                log.exception("planning a profile rebuild of %s %s failed", sc["plugin"],
                              sc["version"])
        return started

    @staticmethod
    def _stale(tx: Tx, plugin: str, version: str, key: str) -> dict[str, Any]:
        return tx.one("SELECT COUNT(*) AS n, MIN(start_ts) AS lo, MAX(end_ts) AS hi FROM "
                      f"profile_inputs WHERE {_SCOPE} AND derived = 1 AND start_ts IS NOT NULL "
                      "AND (modules IS NULL OR modules != ?)", (plugin, version, key)) or {}

    @staticmethod
    def _running(tx: Tx, plugin: str, version: str) -> dict[str, Any] | None:
        return tx.one("SELECT * FROM profile_rebuilds WHERE plugin = ? AND version = ? AND "
                      "state = 'running' ORDER BY id DESC LIMIT 1", (plugin, version))

    def _plan_scope(self, plugin: str, version: str, t: float) -> int:
        key = self.svc.scope(plugin, version or None).modules_hash
        with self.db.read() as tx:
            stale = self._stale(tx, plugin, version, key)
            run = self._running(tx, plugin, version)
        if run is not None and run["modules"] == key:
            return 0
        if not stale.get("n") and run is None:
            return 0
        L = self.window
        with self.db.tx() as tx:
            self.svc.pstore.lock_scope(tx, plugin, version, exclusive=True)
            run = self._running(tx, plugin, version)
            if run is not None and run["modules"] == key:
                return 0
            if run is not None:
                self._supersede(tx, run["id"], t)
            stale = self._stale(tx, plugin, version, key)
            if not stale.get("n"):
                return 0
            # from the scope's first row: older data whose inputs expired is walked too, so the
            # note says which of it keeps its old symbols
            first = tx.scalar(f"SELECT MIN(bucket) AS b FROM profile_counts WHERE {_SERIES}",
                              (plugin, version))
            lo = int(min(stale["lo"], first if first is not None else stale["lo"]) // L) * L
            hi = (int(stale["hi"] // L) + 1) * L
            total = tx.scalar(f"SELECT COUNT(*) AS n FROM profile_inputs WHERE {_SCOPE} AND "
                              "derived = 1 AND start_ts IS NOT NULL AND start_ts < ? AND "
                              "end_ts >= ?", (plugin, version, hi, lo))
            rid = tx.insert("INSERT INTO profile_rebuilds (plugin, version, modules, state, lo, "
                            "hi, inputs_total, swap_cursor, created_at) VALUES (?, ?, ?, "
                            "'running', ?, ?, ?, ?, ?) RETURNING id",
                            (plugin, version, key, lo, hi, int(total or 0), lo, t))
        log.info("profile rebuild %d of %s %s: %d stale input(s) of %d, %s .. %s", rid, plugin,
                 version or "(no version)", stale["n"], total, _utc(lo), _utc(hi))
        return 1

    def _supersede(self, tx: Tx, rid: int, t: float) -> None:
        tx.execute("UPDATE profile_rebuilds SET state = 'superseded', finished_at = ?, note = ? "
                   "WHERE id = ? AND state = 'running'",
                   (t, "the module set changed again; a new rebuild replaces this one", rid))
        tx.execute("DELETE FROM profile_rebuild_counts WHERE rebuild_id = ?", (rid,))
        tx.execute("DELETE FROM profile_rebuild_inputs WHERE rebuild_id = ?", (rid,))

    # -- work ---------------------------------------------------------------------------
    def work(self, seconds: float = 2.0) -> bool:
        """Advance rebuilds for about ``seconds``; True when there is more to do now."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rb = self._claim()
            if rb is None:
                return False
            try:
                scope = self.svc.scope(rb["plugin"], rb["version"] or None)
                if scope.modules_hash != rb["modules"]:
                    with self.db.tx() as tx:
                        self.svc.pstore.lock_scope(tx, rb["plugin"], rb["version"],
                                                   exclusive=True)
                        self._supersede(tx, rb["id"], now())
                    self.plan(rb["plugin"])
                    continue
                while time.monotonic() < deadline:
                    if not self.step(rb, scope):
                        break
            except _Lost:
                continue
        return self._claim(peek=True) is not None

    def run(self, plugin: str | None = None) -> int:
        """Plan and finish every rebuild now (tests, ``--demo``); returns how many ran."""
        started = self.plan(plugin)
        while self.work(5.0):
            pass
        return started

    def _claim(self, peek: bool = False) -> dict[str, Any] | None:
        t = now()
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM profile_rebuilds WHERE state = 'running' ORDER BY id "
                          "LIMIT 50")
        for r in rows:
            free = r["claimed_by"] in (None, self.owner) or (r["claimed_at"] or 0) < t - CLAIM_STALE
            if not free:
                continue
            if peek:
                return r
            with self.db.tx() as tx:
                cur = tx.execute("UPDATE profile_rebuilds SET claimed_by = ?, claimed_at = ? "
                                 "WHERE id = ? AND state = 'running' AND (claimed_by IS NULL OR "
                                 "claimed_by = ? OR claimed_at < ?)",
                                 (self.owner, t, r["id"], self.owner, t - CLAIM_STALE))
            if cur.rowcount == 1:
                return {**r, "claimed_by": self.owner, "claimed_at": t}
        return None

    def _mine(self, tx: Tx, rid: int) -> dict[str, Any]:
        """Refresh the claim inside ``tx``; the rebuild's row (raises _Lost)."""
        cur = tx.execute("UPDATE profile_rebuilds SET claimed_at = ? WHERE id = ? AND "
                         "state = 'running' AND claimed_by = ?", (now(), rid, self.owner))
        if cur.rowcount != 1:
            raise _Lost
        row = tx.one("SELECT * FROM profile_rebuilds WHERE id = ?", (rid,))
        assert row is not None
        return row

    @staticmethod
    def _unshadowed(tx: Tx, rb: dict[str, Any], since: int, limit: int) -> list[int]:
        return [int(r["id"]) for r in tx.all(
            f"SELECT id FROM profile_inputs i WHERE {_SCOPE} AND derived = 1 AND start_ts IS NOT "
            "NULL AND start_ts < ? AND end_ts >= ? AND NOT EXISTS (SELECT 1 FROM "
            "profile_rebuild_inputs r WHERE r.rebuild_id = ? AND r.input_id = i.id) "
            f"ORDER BY id LIMIT {int(limit)}",
            (rb["plugin"], rb["version"], rb["hi"], since, rb["id"]))]

    def step(self, rb: dict[str, Any], scope: ScopeResolver) -> bool:
        """One unit of work on a claimed rebuild; False when it is finished."""
        with self.db.read() as tx:
            cursor = int(tx.scalar("SELECT swap_cursor AS c FROM profile_rebuilds WHERE id = ?",
                                   (rb["id"],)))
            todo = self._unshadowed(tx, rb, cursor, max(SHADOW_BATCH, CATCH_UP_MAX + 1))
        if todo and (cursor == rb["lo"] or len(todo) > CATCH_UP_MAX):
            for pid in todo[:SHADOW_BATCH]:        # shadow phase: re-derive outside any lock
                batch = self._rederive(pid)
                with self.db.tx() as tx:
                    self._mine(tx, rb["id"])
                    written = self._shadow(tx, rb, pid, batch, cursor)
                if written is not None:
                    self.svc.pstore.committed(written)
            return True
        return self._swap(rb)

    def _rederive(self, pid: int) -> AggregatedBatch | None:
        """The input's batch with the current modules; None when it is gone or no longer
        passes the ingest checks (its samples then keep their rows)."""
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM profile_inputs WHERE id = ? AND derived = 1", (pid,))
        if row is None:
            return None
        try:
            return self.svc.rederive(row)
        except WasmprofError as e:
            log.warning("profile input %s no longer passes the ingest checks; its samples keep "
                        "their symbols: %s", pid, e)
            return None

    def _shadow(self, tx: Tx, rb: dict[str, Any], pid: int, batch: AggregatedBatch | None,
                since: int) -> dict[str, Any] | None:
        """Record input ``pid``'s re-derived counts (buckets in [since, hi)) in the shadow."""
        cur = tx.execute("INSERT INTO profile_rebuild_inputs (rebuild_id, input_id, from_bucket, "
                         "failed) VALUES (?, ?, ?, ?) ON CONFLICT (rebuild_id, input_id) DO "
                         "NOTHING", (rb["id"], pid, since, int(batch is None)))
        if cur.rowcount != 1:
            return None                            # done already (idempotent)
        tx.execute("UPDATE profile_rebuilds SET inputs_done = inputs_done + 1, inputs_failed = "
                   "inputs_failed + ?, inputs_total = CASE WHEN inputs_total > inputs_done THEN "
                   "inputs_total ELSE inputs_done + 1 END WHERE id = ?",
                   (int(batch is None), rb["id"]))
        if batch is None:
            return None
        written = self.svc.pstore.write(tx, batch, counts=False)
        ids = written["series_ids"]
        rows = []
        for (si, bucket), counts in batch.cells.items():
            if since <= bucket < rb["hi"] and counts:
                keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                vals = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
                rows.append((rb["id"], ids[si], bucket, int(vals.sum()), encode_arrays(keys, vals)))
        tx.executemany("INSERT INTO profile_rebuild_counts (rebuild_id, series_id, bucket, "
                       "samples, data) VALUES (?, ?, ?, ?, ?)", rows)
        return written

    def _target_width(self, w0: int, t: float) -> int:
        """The bucket width the downsampler gives rows of the window starting at ``w0``."""
        L, best = self.window, BASE_WIDTH
        for width, age in self.svc.settings.downsample:
            if w0 + L <= int((t - age) // width * width):
                best = max(best, int(width))
        return best

    def _swap(self, rb: dict[str, Any]) -> bool:
        """Swap the next window with data (scope locked); finish at the end of the range."""
        L, t = self.window, now()
        scope = (rb["plugin"], rb["version"])
        pending: list[dict[str, Any]] = []
        with self.db.tx() as tx:
            self.svc.pstore.lock_scope(tx, *scope, exclusive=True)
            row = self._mine(tx, rb["id"])
            cursor = int(row["swap_cursor"])
            new = self._unshadowed(tx, rb, cursor, CATCH_UP_MAX + 1)
            if len(new) > CATCH_UP_MAX:
                return True                        # many arrived: shadow them first
            for pid in new:                         # arrived since: re-derive under the lock
                w = self._shadow(tx, rb, pid, self._rederive(pid), cursor)
                if w is not None:
                    pending.append(w)
            live_b = tx.scalar(f"SELECT MIN(bucket) AS b FROM profile_counts WHERE {_SERIES} AND "
                               "bucket >= ? AND bucket < ?", (*scope, cursor, rb["hi"]))
            shadow_b = tx.scalar("SELECT MIN(bucket) AS b FROM profile_rebuild_counts WHERE "
                                 "rebuild_id = ? AND bucket >= ?", (rb["id"], cursor))
            done = False
            if live_b is None and shadow_b is None:
                self._finish(tx, row, t)
                done = True
            elif live_b is not None and (shadow_b is None or int(shadow_b) // L > int(live_b) // L):
                # windows with rows but nothing re-derived (their inputs expired): kept at once
                end = int(shadow_b) // L * L if shadow_b is not None else int(rb["hi"])
                got = tx.one(f"SELECT COUNT(DISTINCT bucket / {L}) AS n, MAX(bucket) AS last FROM "
                             f"profile_counts WHERE {_SERIES} AND bucket >= ? AND bucket < ?",
                             (*scope, cursor, end)) or {}
                self._kept(tx, rb["id"], int(got.get("n") or 0), int(live_b) // L * L,
                           int(got["last"]) // L * L + L)
                tx.execute("UPDATE profile_rebuilds SET swap_cursor = ? WHERE id = ?",
                           (end, rb["id"]))
            else:
                w0 = min(int(b) for b in (live_b, shadow_b) if b is not None) // L * L
                w1 = w0 + L
                live = tx.one(f"SELECT COUNT(*) AS n, COALESCE(SUM(samples), 0) AS s FROM "
                              f"profile_counts WHERE {_SERIES} AND bucket >= ? AND bucket < ?",
                              (*scope, w0, w1)) or {}
                shadow = tx.all("SELECT series_id, bucket, samples, data FROM "
                                "profile_rebuild_counts WHERE rebuild_id = ? AND bucket >= ? AND "
                                "bucket < ?", (rb["id"], w0, w1))
                if int(live.get("s") or 0) == sum(int(r["samples"]) for r in shadow):
                    tx.execute(f"DELETE FROM profile_counts WHERE {_SERIES} AND bucket >= ? AND "
                               "bucket < ?", (*scope, w0, w1))
                    mark_range(tx, *scope, w0, w1)
                    self._insert_shadow(tx, shadow, self._target_width(w0, t))
                    tx.execute("UPDATE profile_rebuilds SET windows_rebuilt = windows_rebuilt + 1 "
                               "WHERE id = ?", (rb["id"],))
                else:
                    self._kept(tx, rb["id"], 1, w0, w1)
                tx.execute("DELETE FROM profile_rebuild_counts WHERE rebuild_id = ? AND "
                           "bucket < ?", (rb["id"], w1))
                tx.execute("UPDATE profile_rebuilds SET swap_cursor = ? WHERE id = ?",
                           (w1, rb["id"]))
        for w in pending:
            self.svc.pstore.committed(w)
        return not done

    @staticmethod
    def _kept(tx: Tx, rid: int, n: int, lo: int, hi: int) -> None:
        tx.execute("UPDATE profile_rebuilds SET windows_kept = windows_kept + ?, kept_lo = CASE "
                   "WHEN kept_lo IS NULL OR kept_lo > ? THEN ? ELSE kept_lo END, kept_hi = CASE "
                   "WHEN kept_hi IS NULL OR kept_hi < ? THEN ? ELSE kept_hi END WHERE id = ?",
                   (n, lo, lo, hi, hi, rid))

    def _insert_shadow(self, tx: Tx, shadow: list[dict[str, Any]], width: int) -> None:
        groups: dict[tuple[int, int], list[bytes]] = {}
        for r in shadow:
            b = int(r["bucket"])
            groups.setdefault((int(r["series_id"]), b // width * width), []).append(r["data"])
        rows = []
        for (sid, bucket), blobs in sorted(groups.items()):
            keys, vals = merge_rows(blobs)
            rows.append((sid, bucket, width, int(vals.sum()), len(keys), encode_arrays(keys, vals)))
        tx.executemany("INSERT INTO profile_counts (series_id, bucket, width, samples, stacks, "
                       "data) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _finish(self, tx: Tx, rb: dict[str, Any], t: float) -> None:
        rid = rb["id"]
        rb = tx.one("SELECT * FROM profile_rebuilds WHERE id = ?", (rid,)) or rb
        # inputs whose every sample was in the shadow now carry the module set; the others
        # (partly outside the range, or re-derived only after part of their range was
        # swapped) stay stale and get the next rebuild
        tx.execute("UPDATE profile_inputs SET modules = ? WHERE id IN (SELECT r.input_id FROM "
                   "profile_rebuild_inputs r WHERE r.rebuild_id = ? AND r.from_bucket <= "
                   "profile_inputs.start_ts) AND start_ts >= ? AND end_ts < ?",
                   (rb["modules"], rid, rb["lo"], rb["hi"]))
        tx.execute("DELETE FROM profile_rebuild_counts WHERE rebuild_id = ?", (rid,))
        tx.execute("DELETE FROM profile_rebuild_inputs WHERE rebuild_id = ?", (rid,))
        note = None
        if rb["windows_kept"]:
            days = self.svc.settings.raw_retention / 86400
            note = (f"profile data from {_utc(rb['kept_lo'])} to {_utc(rb['kept_hi'])} "
                    f"({rb['windows_kept']} window(s) of {self.window // 60} min) could not be "
                    "rebuilt for the current modules: raw inputs behind it expired (retention "
                    f"{days:g} days) or no longer pass the ingest checks, so it keeps the "
                    "symbols it was stored with")
            sids = [int(r["id"]) for r in tx.all(
                f"SELECT id FROM profile_series WHERE {_SCOPE}", (rb["plugin"], rb["version"]))]
            tx.executemany("INSERT INTO profile_notes (series_id, note_hash, note) VALUES "
                           "(?, ?, ?) ON CONFLICT (series_id, note_hash) DO UPDATE SET note = "
                           "EXCLUDED.note", [(sid, NOTE_KEY, note) for sid in sids])
        summary = (f"{rb['inputs_done']} input(s) re-derived"
                   + (f" ({rb['inputs_failed']} no longer parse)" if rb["inputs_failed"] else "")
                   + f"; {rb['windows_rebuilt']} window(s) rebuilt, {rb['windows_kept']} kept"
                   + (f": {note}" if note else ""))
        tx.execute("UPDATE profile_rebuilds SET state = 'done', finished_at = ?, swap_cursor = hi, "
                   "note = ? WHERE id = ?", (t, summary, rid))
        log.info("profile rebuild %d of %s %s done: %s", rid, rb["plugin"],
                 rb["version"] or "(no version)", summary)

    # -- progress -----------------------------------------------------------------------
    def status(self, plugin: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Running rebuilds and the latest finished ones (newest first)."""
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM profile_rebuilds"
                          + (" WHERE plugin = ?" if plugin else "")
                          + f" ORDER BY CASE WHEN state = 'running' THEN 0 ELSE 1 END, id DESC "
                            f"LIMIT {int(limit)}", [plugin] if plugin else [])
        out = []
        for r in rows:
            span = max(int(r["hi"]) - int(r["lo"]), 1)
            swapped = min(max(int(r["swap_cursor"] or r["lo"]) - int(r["lo"]), 0), span)
            out.append({"id": r["id"], "plugin": r["plugin"], "version": r["version"] or None,
                        "state": r["state"], "from": r["lo"], "to": r["hi"],
                        "inputs_total": r["inputs_total"], "inputs_done": r["inputs_done"],
                        "inputs_failed": r["inputs_failed"],
                        "swapped": round(swapped / span, 4),
                        "windows_rebuilt": r["windows_rebuilt"],
                        "windows_kept": r["windows_kept"], "created_at": r["created_at"],
                        "finished_at": r["finished_at"], "note": r["note"]})
        return out

