"""Tables of the profile store (migration component ``profiles``).

- ``profile_series``: one row per series = plugin + version + labels + thread + unit; ``key``
  is the canonical JSON of those (unique). ``profile_series_labels`` repeats the labels as
  rows for label discovery.
- ``profile_frames``: one row per distinct *resolved* frame (function, file, line, column,
  inlined, status, reason, wasm index, module name and identity, native, printed name);
  ``id`` = a
  63-bit hash of that content. Frames that could not be resolved yet (no module) carry the
  raw address in their content and have a ``profile_pending`` row (scope + raw frame) so a
  late module re-resolves exactly them.
- ``profile_stacks``: the stack dictionary: ``id`` = hash of the frame ids (leaf first),
  ``frames`` = those ids as little-endian int64.
- ``profile_stack_pending``: which stacks hold a pending frame (to rewrite them).
- ``profile_counts``: sample counts per (series, time bucket): ``data`` holds the (stack id,
  count) pairs (:mod:`wasmprof.server.profile_codec`), ``samples`` their sum (time series
  without decoding), ``width`` the bucket's seconds (10 → 60 → 3600 as it is downsampled).
  Ingest appends one row per (series, bucket) it touches; the maintenance job merges rows.
- ``profile_notes``: what symbolization said about a series' inputs (module matching...).
- ``profile_state``: key/value (backfill progress).
- ``profile_inputs`` (core table, the raw inputs) gains ``encoding`` (``zstd`` or ``zlib`` when the
  stored bytes are compressed) and ``derived`` (0 = not yet aggregated — inputs from before this
  store, backfilled in the background —, 1 = aggregated, -1 = refused by the checks).

Migration 2 (rebuilds, :mod:`wasmprof.server.profile_rebuild`):

- ``profile_inputs`` gains ``modules`` (hash of the module set its derived rows were made
  with; NULL = unknown, from before this migration) and ``params`` (the request's labels and
  from/to as JSON, so a rebuild derives it exactly as ingest did).
- ``profile_scopes``: one row per (plugin, version) that has data; the row every writer of the
  scope's count rows locks (PostgreSQL: ``FOR KEY SHARE``; a rebuild's swap: ``FOR UPDATE``).
- ``profile_rebuilds``: one rebuild of a scope's derived rows for one module set (``modules``)
  over the time range [``lo``, ``hi``): state ``running`` / ``done`` / ``superseded``, the
  replica working on it (``claimed_by``, ``claimed_at``), progress (inputs re-derived, the swap
  cursor, windows rebuilt and kept).
- ``profile_rebuild_inputs``: which inputs a rebuild has re-derived (and from which bucket on);
  ``profile_rebuild_counts``: their counts (the shadow rows swapped in window by window).

Migration 3 (rollups, :mod:`wasmprof.server.profile_rollup`): derived from ``profile_counts``
and rebuilt from it at any time.

- ``profile_rollups``: the sum of a scope's count rows per (group, hour or day): ``gkey`` is
  the canonical JSON of what a query groups and filters on besides the scope (unit, thread,
  ``event`` label), ``width`` 3600 or 86400, ``bucket`` the hour/day start; ``lo``/``hi``
  the first bucket start and last bucket end of the rows summed, ``series`` their series ids
  (packed int64), ``data`` the (stack, count) pairs (profile_codec).
- ``profile_rollup_dirty``: (scope, day) whose count rows changed since its rollups were made
  (written in the same transaction as the change); queries read those days raw and the
  maintenance job recomputes them. The upgrade marks every day that has data.
"""

from __future__ import annotations

COMPONENT = "profiles"

MIGRATIONS = [
    """CREATE TABLE profile_series (
        id {id}, key TEXT NOT NULL UNIQUE, plugin TEXT, version TEXT, thread TEXT,
        unit TEXT NOT NULL, labels TEXT NOT NULL, created_at {float} NOT NULL);
    CREATE INDEX profile_series_plugin ON profile_series (plugin, version);
    CREATE TABLE profile_series_labels (
        series_id {bigint} NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (series_id, name));
    CREATE INDEX profile_series_labels_name ON profile_series_labels (name, value);
    CREATE TABLE profile_frames (
        id {bigint} PRIMARY KEY, function TEXT, raw_function TEXT, file TEXT, line INTEGER,
        col INTEGER, inlined INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
        wasm_index INTEGER, module TEXT, native INTEGER NOT NULL, printed_name TEXT,
        identity TEXT);
    CREATE TABLE profile_stacks (
        id {bigint} PRIMARY KEY, depth INTEGER NOT NULL, frames {blob} NOT NULL);
    CREATE TABLE profile_pending (
        frame_id {bigint} PRIMARY KEY, plugin TEXT NOT NULL, version TEXT NOT NULL,
        raw TEXT NOT NULL, created_at {float} NOT NULL);
    CREATE INDEX profile_pending_scope ON profile_pending (plugin, version);
    CREATE TABLE profile_stack_pending (
        frame_id {bigint} NOT NULL, stack_id {bigint} NOT NULL,
        PRIMARY KEY (frame_id, stack_id));
    CREATE TABLE profile_counts (
        id {id}, series_id {bigint} NOT NULL, bucket {bigint} NOT NULL,
        width INTEGER NOT NULL, samples {bigint} NOT NULL, stacks INTEGER NOT NULL,
        data {blob} NOT NULL);
    CREATE INDEX profile_counts_series ON profile_counts (series_id, bucket);
    CREATE INDEX profile_counts_age ON profile_counts (width, bucket);
    CREATE TABLE profile_notes (
        series_id {bigint} NOT NULL, note_hash TEXT NOT NULL, note TEXT NOT NULL,
        PRIMARY KEY (series_id, note_hash));
    CREATE TABLE profile_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ALTER TABLE profile_inputs ADD COLUMN encoding TEXT;
    ALTER TABLE profile_inputs ADD COLUMN derived INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX profile_inputs_derived ON profile_inputs (derived, id);
    CREATE INDEX profile_inputs_received ON profile_inputs (received_at)""",
    """ALTER TABLE profile_inputs ADD COLUMN modules TEXT;
    ALTER TABLE profile_inputs ADD COLUMN params TEXT;
    CREATE INDEX profile_inputs_scope ON profile_inputs (plugin, version, modules);
    CREATE TABLE profile_scopes (
        plugin TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (plugin, version));
    CREATE TABLE profile_rebuilds (
        id {id}, plugin TEXT NOT NULL, version TEXT NOT NULL, modules TEXT NOT NULL,
        state TEXT NOT NULL, lo {bigint} NOT NULL, hi {bigint} NOT NULL,
        inputs_total INTEGER NOT NULL DEFAULT 0, inputs_done INTEGER NOT NULL DEFAULT 0,
        inputs_failed INTEGER NOT NULL DEFAULT 0, swap_cursor {bigint},
        windows_rebuilt INTEGER NOT NULL DEFAULT 0, windows_kept INTEGER NOT NULL DEFAULT 0,
        kept_lo {bigint}, kept_hi {bigint}, claimed_by TEXT, claimed_at {float},
        created_at {float} NOT NULL, finished_at {float}, note TEXT);
    CREATE INDEX profile_rebuilds_scope ON profile_rebuilds (plugin, version, state);
    CREATE INDEX profile_rebuilds_state ON profile_rebuilds (state, id);
    CREATE TABLE profile_rebuild_inputs (
        rebuild_id {bigint} NOT NULL, input_id {bigint} NOT NULL, from_bucket {bigint},
        failed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (rebuild_id, input_id));
    CREATE TABLE profile_rebuild_counts (
        rebuild_id {bigint} NOT NULL, series_id {bigint} NOT NULL, bucket {bigint} NOT NULL,
        samples {bigint} NOT NULL, data {blob} NOT NULL);
    CREATE INDEX profile_rebuild_counts_window ON profile_rebuild_counts (rebuild_id, bucket)""",
    """CREATE TABLE profile_rollups (
        plugin TEXT NOT NULL, version TEXT NOT NULL, gkey TEXT NOT NULL,
        width INTEGER NOT NULL, bucket {bigint} NOT NULL, lo {bigint} NOT NULL,
        hi {bigint} NOT NULL, samples {bigint} NOT NULL, stacks INTEGER NOT NULL,
        series {blob} NOT NULL, data {blob} NOT NULL,
        PRIMARY KEY (width, bucket, plugin, version, gkey));
    CREATE INDEX profile_rollups_scope ON profile_rollups (plugin, version, bucket);
    CREATE TABLE profile_rollup_dirty (
        plugin TEXT NOT NULL, version TEXT NOT NULL, day {bigint} NOT NULL,
        PRIMARY KEY (day, plugin, version));
    INSERT INTO profile_rollup_dirty (plugin, version, day)
        SELECT DISTINCT COALESCE(s.plugin, ''), COALESCE(s.version, ''), (c.bucket / 86400) * 86400
        FROM profile_counts c JOIN profile_series s ON s.id = c.series_id""",
]
