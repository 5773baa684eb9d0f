"""Schema migrations: append-only lists, run on every start (``serve``, ``token``, …).

How to add tables (for every component, including ``wasmprof.alerts``):

- Each component owns ONE append-only list of :class:`Migration` and a component name.
  The core list is :data:`CORE` below. Never edit or reorder an applied migration; add a
  new one at the end with the next ``version`` number.
- Another package adds its own list by defining, in a module named in
  :data:`EXTENSION_MODULES` (``wasmprof/alerts/migrations.py`` or ``…/schema.py``)::

      COMPONENT = "alerts"
      MIGRATIONS = [
          Migration(1, "webhooks", [
              "CREATE TABLE webhooks (id {id}, url TEXT NOT NULL, created_at {float})",
          ]),
      ]

  and nothing else: :func:`migrate` imports it when the module exists (ImportError =
  component not installed) and applies what is missing, after the core list. A plain
  string in ``MIGRATIONS`` is accepted too (its position + 1 is its version); a string
  may hold several ``;``-separated statements.
- SQL is the common subset of SQLite and PostgreSQL; write ``{id}`` for an auto-increment
  integer primary key, ``{blob}`` for bytes, ``{float}`` for double, ``{bigint}`` for 64-bit
  integers (see :meth:`wasmprof.store.db.Database.ddl`). Store booleans as INTEGER 0/1,
  JSON as TEXT, times as ``{float}`` unix seconds. A step may also be a callable
  ``step(tx)`` for data migrations.
- Applied versions are recorded in ``schema_migrations(component, version)``. Migrations of
  concurrent replicas are serialized (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wasmprof.store.db import Database, Tx, now

log = logging.getLogger(__name__)

Step = str | Callable[[Tx], None]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    steps: Sequence[Step]


CORE: list[Migration] = [
    Migration(1, "core tables", [
        """CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY, size {bigint} NOT NULL, data {blob},
            created_at {float} NOT NULL)""",
        """CREATE TABLE plugins (
            name TEXT PRIMARY KEY, runtime TEXT, updated_at {float} NOT NULL)""",
        """CREATE TABLE modules (
            id {id}, sha256 TEXT NOT NULL UNIQUE, identity TEXT NOT NULL, kind TEXT NOT NULL,
            filename TEXT, name TEXT, plugin TEXT, version TEXT, size {bigint} NOT NULL,
            has_dwarf INTEGER NOT NULL DEFAULT 0, has_name_section INTEGER NOT NULL DEFAULT 0,
            build_id TEXT, shape TEXT, arch TEXT, function_count INTEGER, info TEXT,
            companion_id {bigint}, index_state TEXT NOT NULL DEFAULT 'pending',
            index_error TEXT, index_claimed_at {float}, indexed_at {float},
            uploaded_at {float} NOT NULL)""",
        "CREATE INDEX modules_identity ON modules (identity)",
        "CREATE INDEX modules_plugin ON modules (plugin, uploaded_at)",
        """CREATE TABLE crash_groups (
            id {id}, fingerprint TEXT NOT NULL UNIQUE, plugin TEXT, trap_kind TEXT,
            title TEXT, basis TEXT, reason TEXT, top_frames TEXT,
            first_seen {float} NOT NULL, last_seen {float} NOT NULL,
            count {bigint} NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'open',
            resolved_at {float}, regressed_at {float}, created_at {float} NOT NULL)""",
        "CREATE INDEX crash_groups_last_seen ON crash_groups (last_seen)",
        """CREATE TABLE ingests (
            id {id}, kind TEXT NOT NULL, plugin TEXT, version TEXT, labels TEXT,
            source TEXT, size {bigint} NOT NULL, sha256 TEXT, crash_count INTEGER,
            token_id {bigint}, received_at {float} NOT NULL)""",
        """CREATE TABLE crash_events (
            id {id}, ingest_id {bigint}, group_id {bigint}, plugin TEXT, version TEXT,
            labels TEXT, trap_kind TEXT, runtime TEXT, message TEXT, function TEXT,
            occurred_at {float}, received_at {float} NOT NULL, crash TEXT NOT NULL,
            space TEXT, frames TEXT, symbolized_with TEXT, fingerprint TEXT, grouping TEXT,
            symbolized_at {float})""",
        "CREATE INDEX crash_events_group ON crash_events (group_id, received_at)",
        "CREATE INDEX crash_events_plugin ON crash_events (plugin)",
        """CREATE TABLE tokens (
            id {id}, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
            scopes TEXT NOT NULL, created_at {float} NOT NULL, revoked_at {float},
            last_used_at {float})""",
        """CREATE TABLE profile_inputs (
            id {id}, format TEXT NOT NULL, plugin TEXT, version TEXT, labels TEXT, name TEXT,
            sample_count {bigint} NOT NULL DEFAULT 0, start_ts {float}, end_ts {float},
            size {bigint} NOT NULL, data {blob} NOT NULL, aux {blob}, client_id TEXT,
            received_at {float} NOT NULL)""",
        "CREATE INDEX profile_inputs_plugin ON profile_inputs (plugin, received_at)",
        "CREATE INDEX profile_inputs_client ON profile_inputs (client_id)",
    ]),
    Migration(2, "module links: one module file used by several plugins/versions", [
        """CREATE TABLE module_links (
            module_id {bigint} NOT NULL, plugin TEXT NOT NULL, version TEXT NOT NULL DEFAULT '',
            created_at {float} NOT NULL, PRIMARY KEY (module_id, plugin, version))""",
        "CREATE INDEX module_links_plugin ON module_links (plugin, version)",
        """INSERT INTO module_links (module_id, plugin, version, created_at)
           SELECT id, plugin, COALESCE(version, ''), uploaded_at FROM modules
           WHERE plugin IS NOT NULL""",
    ]),
]

#: Components that may add migrations: each entry lists candidate modules; the first that
#: exists and defines ``MIGRATIONS`` is used (``COMPONENT`` defaults to the entry's key).
EXTENSION_MODULES: dict[str, list[str]] = {
    "alerts": ["wasmprof.alerts.migrations", "wasmprof.alerts.schema"],
    "web": ["wasmprof.server.web_schema"],
    "logs": ["wasmprof.server.log_schema"],
    "sources": ["wasmprof.sources.schema"],
    "health": ["wasmprof.health.schema"],
    "profiles": ["wasmprof.server.profile_schema"],
    "sourcemaps": ["wasmprof.server.sourcemap_schema"],
}

_ADVISORY_LOCK = 0x5741534D  # "WASM"


def components() -> list[tuple[str, list[Migration]]]:
    out: list[tuple[str, list[Migration]]] = [("core", CORE)]
    for component, candidates in EXTENSION_MODULES.items():
        for name in candidates:
            try:
                mod = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name and name.startswith(e.name):
                    continue            # component not installed
                raise
            if not hasattr(mod, "MIGRATIONS"):
                continue
            items = [m if isinstance(m, Migration) else Migration(i + 1, f"{component} {i + 1}", [m])
                     for i, m in enumerate(mod.MIGRATIONS)]
            out.append((getattr(mod, "COMPONENT", component), items))
            break
    return out


def split_statements(sql: str) -> list[str]:
    """Split a DDL string holding several ``;``-separated statements (quotes respected)."""
    out, buf = [], ""
    for piece in sql.split(";"):
        buf = f"{buf};{piece}" if buf else piece
        if sqlite3.complete_statement(buf + ";"):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def migrate(db: Database) -> list[str]:
    """Apply every missing migration; returns ``["core:1", …]`` of what was applied."""
    applied_now: list[str] = []
    with db.tx() as tx:
        tx.execute(db.ddl("""CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
            applied_at {float} NOT NULL, PRIMARY KEY (component, version))"""))
    for component, migrations in components():
        _check_list(component, migrations)
        with db.tx() as tx:
            if db.dialect == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK,))
            done = {r["version"] for r in tx.all(
                "SELECT version FROM schema_migrations WHERE component = ?", (component,))}
            for m in migrations:
                if m.version in done:
                    continue
                for step in m.steps:
                    if callable(step):
                        step(tx)
                    else:
                        for stmt in split_statements(db.ddl(step)):
                            tx.execute(stmt)
                tx.execute("INSERT INTO schema_migrations (component, version, name, applied_at) "
                           "VALUES (?, ?, ?, ?)", (component, m.version, m.name, now()))
                applied_now.append(f"{component}:{m.version}")
                log.info("applied migration %s:%d %s", component, m.version, m.name)
    return applied_now


def _check_list(component: str, migrations: list[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations of {component!r} must be numbered 1..N in order, "
                           f"got {versions}")
