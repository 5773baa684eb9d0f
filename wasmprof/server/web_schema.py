"""Tables of the dashboard's routes (:mod:`wasmprof.server.routes_web`), applied by
:func:`wasmprof.store.migrations.migrate` through ``EXTENSION_MODULES["web"]``.
Append-only: never edit an applied migration, add the next version at the end."""

from __future__ import annotations

from wasmprof.store.migrations import Migration

COMPONENT = "web"
MIGRATIONS = [
    Migration(1, "uploaded sources", [
        """CREATE TABLE web_sources (
            id {id}, path TEXT NOT NULL, basename TEXT NOT NULL, plugin TEXT,
            sha256 TEXT NOT NULL, size {bigint} NOT NULL, uploaded_at {float} NOT NULL)""",
        "CREATE INDEX web_sources_basename ON web_sources (basename)",
    ]),
]
