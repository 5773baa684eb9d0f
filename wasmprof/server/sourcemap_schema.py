"""Table of uploaded source maps (:mod:`wasmprof.server.routes_sourcemaps`), applied by
:func:`wasmprof.store.migrations.migrate` through ``EXTENSION_MODULES["sourcemaps"]``.
Append-only: never edit an applied migration, add the next version at the end."""

from __future__ import annotations

from wasmprof.store.migrations import Migration

COMPONENT = "sourcemaps"
MIGRATIONS = [
    Migration(1, "module source maps", [
        """CREATE TABLE module_source_maps (
            module_id {bigint} PRIMARY KEY, sha256 TEXT NOT NULL, filename TEXT,
            size {bigint} NOT NULL, uploaded_at {float} NOT NULL)""",
    ]),
]
