"""Hourly and daily rollups of the profile store (tables: :mod:`wasmprof.server.profile_schema`,
migration 3): derived from ``profile_counts``, used by wide queries, recomputed when it changes.

A rollup row sums the count rows of one *group* of a scope (plugin, version) whose bucket
start lies in one hour or day: a group is the series with one unit, thread and ``event``
label (what a profile query without label filters groups and filters by, see
:meth:`wasmprof.server.profile_query.ProfileQuery.sums`), so a 7-day query over every plugin
reads ~7 rows per group instead of one row per (series, minute).

Exactness: a query counts a count row when its bucket overlaps the range, which for a row
whose bucket start lies in an hour/day entirely inside [from, to] is always the case; so
the rollups of the hours/days inside the range plus the raw rows of the edges give the very
same sums. Rows also record the first bucket start, the last bucket end and the series that
had counts (the profile's start/end and notes).

Keeping in step: every writer of ``profile_counts`` (ingest, backfill, downsampling,
re-resolved stacks, a rebuild's swap) calls :func:`mark_dirty` in its transaction for the
days whose rows it changed (merging equal buckets changes nothing and marks nothing). A query
reads a dirty (scope, day) from the raw rows; :func:`refresh` (the maintenance pass)
recomputes it under the scope's exclusive lock and clears the mark. Because queries read the
marks before the rollups, a day is never counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from wasmprof.server.profile_codec import encode_arrays, merge_rows, pack_ids
from wasmprof.store.db import Database, Tx

HOUR = 3600
DAY = 86400
WIDTHS = (DAY, HOUR)


def group_key(unit: str, thread: str | None, labels: dict[str, str]) -> str:
    """The rollup group of a series within its scope."""
    return orjson.dumps([unit, thread, labels.get("event")]).decode()


def scope_of(plugin: str | None, version: str | None) -> tuple[str, str]:
    return (plugin or "", version or "")


def mark_dirty(tx: Tx, marks: Iterable[tuple[str | None, str | None, int]]) -> None:
    """Mark (plugin, version, bucket start) → that bucket's day dirty (in key order: writers
    of PostgreSQL replicas then never deadlock on the marks)."""
    rows = sorted({(int(b) // DAY * DAY, *scope_of(p, v)) for p, v, b in marks})
    if rows:
        tx.executemany("INSERT INTO profile_rollup_dirty (day, plugin, version) VALUES (?, ?, ?) "
                       "ON CONFLICT (day, plugin, version) DO NOTHING", rows)


def mark_range(tx: Tx, plugin: str | None, version: str | None, lo: int, hi: int) -> None:
    """Mark every day with a bucket start in [lo, hi) of a scope dirty."""
    if hi > lo:
        mark_dirty(tx, ((plugin, version, d) for d in range(lo // DAY * DAY, hi, DAY)))


@dataclass(slots=True)
class Cover:
    """What of a range [start, end] the rollups may answer: days [day_lo, day_hi) and hours
    [hour_lo, hour_hi) ⊇ the days; the raw rows answer buckets outside [hour_lo, hour_hi)."""

    day_lo: int
    day_hi: int
    hour_lo: int
    hour_hi: int

    @property
    def empty(self) -> bool:
        return self.hour_hi <= self.hour_lo


def cover(start: float | None, end: float | None, first: int, last: int) -> Cover:
    """The cover of [start, end]; ``first``/``last`` bound the stored buckets (open ends)."""
    lo = first if start is None else max(first, int(math.ceil(start)))
    # a bucket b is counted when b <= end: a period [p, p + w) is inside when p + w - 1 <= end
    hi = last + 1 if end is None else min(last + 1, int(math.floor(end)) + 1)
    h_lo, h_hi = -(-lo // HOUR) * HOUR, hi // HOUR * HOUR
    d_lo, d_hi = -(-lo // DAY) * DAY, hi // DAY * DAY
    if d_hi <= d_lo:
        d_lo = d_hi = h_lo
    if h_hi <= h_lo:
        h_lo = h_hi = d_lo = d_hi = 0
    return Cover(d_lo, d_hi, h_lo, h_hi)


def dirty_days(tx: Tx, lo: int, hi: int) -> set[tuple[str, str, int]]:
    """Dirty (plugin, version, day) with a day overlapping [lo, hi)."""
    return {(r["plugin"], r["version"], int(r["day"])) for r in tx.all(
        "SELECT plugin, version, day FROM profile_rollup_dirty WHERE day >= ? AND day < ?",
        (lo // DAY * DAY, hi))}


def rollup_rows(tx: Tx, c: Cover, plugin: str | None, version: str | None) -> Any:
    """A cursor over the rollup rows of a cover (day rows inside it, hour rows at its edges)."""
    where, params = [], []
    if plugin:
        where.append("plugin = ?")
        params.append(plugin)
    if version:
        where.append("version = ?")
        params.append(version)
    scope = "".join(f" AND {w}" for w in where)
    return tx.execute(
        "SELECT plugin, version, gkey, width, bucket, lo, hi, stacks, series, data FROM "
        f"profile_rollups WHERE ((width = {DAY} AND bucket >= ? AND bucket < ?) OR (width = {HOUR} "
        f"AND ((bucket >= ? AND bucket < ?) OR (bucket >= ? AND bucket < ?)))){scope}",
        [c.day_lo, c.day_hi, c.hour_lo, c.day_lo, c.day_hi, c.hour_hi, *params])


def refresh(db: Database, pstore: Any, limit: int = 50) -> int:
    """Recompute up to ``limit`` dirty (scope, day); returns how many were done."""
    with db.read() as tx:
        todo = tx.all("SELECT plugin, version, day FROM profile_rollup_dirty ORDER BY day, "
                      "plugin, version LIMIT ?", (limit,))
    for r in todo:
        recompute(db, pstore, r["plugin"], r["version"], int(r["day"]))
    return len(todo)


def recompute(db: Database, pstore: Any, plugin: str, version: str, day: int) -> None:
    """The rollups of one (scope, day) from its count rows, and the mark cleared, in one
    transaction holding the scope's exclusive lock (no writer of the scope runs meanwhile)."""
    with db.tx() as tx:
        pstore.lock_scope(tx, plugin or None, version or None, exclusive=True)
        series = {int(s["id"]): group_key(s["unit"], s["thread"],
                                          orjson.loads(s["labels"]) if s["labels"] else {})
                  for s in tx.all("SELECT id, unit, thread, labels FROM profile_series WHERE "
                                  "COALESCE(plugin, '') = ? AND COALESCE(version, '') = ?",
                                  (plugin, version))}
        groups: dict[tuple[int, int, str], list[Any]] = {}
        ids = sorted(series)
        for i in range(0, len(ids), 400):
            part = ids[i:i + 400]
            for c in tx.all(f"SELECT series_id, bucket, width, data FROM profile_counts WHERE "
                            f"series_id IN ({','.join('?' * len(part))}) AND bucket >= ? AND "
                            f"bucket < ?", [*part, day, day + DAY]):
                sid, b, w = int(c["series_id"]), int(c["bucket"]), int(c["width"])
                for width in WIDTHS:
                    g = groups.setdefault((width, b // width * width, series[sid]),
                                          [[], math.inf, -math.inf, set()])
                    g[0].append(c["data"])
                    g[1], g[2] = min(g[1], b), max(g[2], b + w)
                    g[3].add(sid)
        tx.execute("DELETE FROM profile_rollups WHERE plugin = ? AND version = ? AND bucket >= ? "
                   "AND bucket < ?", (plugin, version, day, day + DAY))
        rows = []
        for (width, bucket, gkey), (blobs, lo, hi, sids) in sorted(groups.items()):
            keys, vals = merge_rows(blobs)
            rows.append((plugin, version, gkey, width, bucket, int(lo), int(hi),
                         int(vals.sum()), len(keys), pack_ids(sorted(sids)),
                         encode_arrays(keys, vals)))
        if rows:
            tx.executemany("INSERT INTO profile_rollups (plugin, version, gkey, width, bucket, "
                           "lo, hi, samples, stacks, series, data) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        tx.execute("DELETE FROM profile_rollup_dirty WHERE day = ? AND plugin = ? AND version = ?",
                   (day, plugin, version))


def unpack_series(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<i8")
