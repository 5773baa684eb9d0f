"""Tables of idempotent log ingest (:mod:`wasmprof.server.crash_service`), applied by
:func:`wasmprof.store.migrations.migrate` through ``EXTENSION_MODULES["logs"]``.
Append-only: never edit an applied migration, add the next version at the end.

- ``log_event_keys``: one row per crash event ever stored from a log, keyed by what the
  crash is (``event_key``: plugin, version, stream, thread, time and every line, plus its rank among
  identical crashes of one body), so a log posted twice or overlapping windows of one
  stream store each crash once. ``head_key`` (the same without the lines after the first)
  with ``partial`` (cut, or still open when its input ended) and ``lines`` let a longer copy
  replace a cut one, and a cut copy of a stored longer one count as a duplicate.
- ``log_ingest_keys``: ``Idempotency-Key`` header / ``batch_id`` of a log post and the
  answer it got (``result`` NULL while the first post is still running).
"""

from __future__ import annotations

from wasmprof.store.migrations import Migration

COMPONENT = "logs"
MIGRATIONS = [
    Migration(1, "idempotent log ingest", [
        """CREATE TABLE log_event_keys (
            event_key TEXT PRIMARY KEY, head_key TEXT NOT NULL, event_id {bigint},
            partial INTEGER NOT NULL DEFAULT 0, lines INTEGER NOT NULL DEFAULT 0,
            created_at {float} NOT NULL)""",
        "CREATE INDEX log_event_keys_head ON log_event_keys (head_key)",
        """CREATE TABLE log_ingest_keys (
            idempotency_key TEXT PRIMARY KEY, ingest_id {bigint}, result TEXT,
            created_at {float} NOT NULL)""",
    ]),
]
