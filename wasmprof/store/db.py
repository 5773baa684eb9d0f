"""One database code path for SQLite (default, WAL) and PostgreSQL (psycopg 3).

Write SQL once, in the common subset, with ``?`` placeholders; :class:`Database`
translates them for PostgreSQL. DDL in migrations uses ``{id}`` (auto-increment primary
key), ``{blob}`` (binary), ``{float}`` and ``{bigint}``, expanded per dialect by
:meth:`Database.ddl`.

Usage::

    db = Database.open("sqlite:////var/lib/wasmprof/wasmprof.db")
    with db.tx() as tx:                 # a write transaction, committed on success
        gid = tx.insert("INSERT INTO t (a) VALUES (?) RETURNING id", (1,))
    with db.read() as tx:               # a read-only snapshot
        rows = tx.all("SELECT * FROM t WHERE a = ?", (1,))

Contract: ``tx()`` commits before returning control after the ``with`` block, so data is
durable once the block exits (callers answer 2xx only after that). Connections are
per-thread; SQLite writes in one process are serialized by a lock and across processes by
``BEGIN IMMEDIATE`` + busy timeout. Rows are plain ``dict``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wasmprof.config import redact_url
from wasmprof.errors import UsageError

log = logging.getLogger(__name__)

_DDL = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB",
               "float": "REAL", "bigint": "INTEGER"},
    "postgresql": {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA",
                   "float": "DOUBLE PRECISION", "bigint": "BIGINT"},
}


class StoreError(UsageError):
    """The database cannot be opened or used (not an input problem of a request)."""


class Tx:
    """One transaction on one connection. Methods take ``?`` placeholders."""

    __slots__ = ("_db", "_conn")

    def __init__(self, db: "Database", conn: Any) -> None:
        self._db = db
        self._conn = conn

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._db.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._db.dialect == "sqlite":
            self._conn.executemany(sql, rows)
        else:
            with self._conn.cursor() as cur:
                cur.executemany(self._db.sql(sql), rows)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        return [dict(r) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        if row is None:
            return None
        return next(iter(dict(row).values()))

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an ``INSERT … RETURNING id`` and return the id."""
        row = self.execute(sql, params).fetchone()
        return int(dict(row)["id"])


class Database:
    """A connection factory + transaction helper for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path = Path(url[len("sqlite:///"):])   # sqlite:////abs/path -> /abs/path
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.path = None
        else:
            raise StoreError("unsupported database URL", source="--db",
                             expected="sqlite:///PATH or postgresql://…", found=redact_url(url))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._lock_fd: int | None = None     # SQLite: <db>-writelock, opened per process
        self._lock_pid = 0
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        self.closed = False

    @classmethod
    def open(cls, url: str) -> "Database":
        db = cls(url)
        with db.read() as tx:           # fail early with a clear message
            tx.scalar("SELECT 1 AS one")
        return db

    # -- SQL translation ------------------------------------------------------------
    def sql(self, text: str) -> str:
        if self.dialect == "sqlite":
            return text
        out = self._sql_cache.get(text)
        if out is None:
            out = text.replace("%", "%%").replace("?", "%s")
            self._sql_cache[text] = out
        return out

    def ddl(self, text: str) -> str:
        return text.format(**_DDL[self.dialect])

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            return conn
        import psycopg
        from psycopg.rows import dict_row
        try:
            conn = psycopg.connect(self.url, row_factory=dict_row, autocommit=True,
                                   connect_timeout=15)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}".strip(),
                             source=redact_url(self.url)) from None
        return conn

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or (self.dialect == "postgresql" and conn.closed):
            if self.closed:
                raise StoreError("database is closed", source=redact_url(self.url))
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """A write transaction; commits at the end of the block (durable when it exits).

        Nested use on the same thread (``with db.tx()`` inside another) joins the outer
        transaction: the inner block's writes commit or roll back with the outer one. This
        lets hooks called inside an ingest transaction (alerts' outbox) write atomically
        with the data that triggered them.
        """
        outer = getattr(self._local, "tx", None)
        if outer is not None:
            yield outer
            return
        conn = self._conn()
        if self.dialect == "sqlite":
            with self._write_lock, self._process_lock():
                conn.execute("BEGIN IMMEDIATE")
                tx = self._local.tx = Tx(self, conn)
                try:
                    yield tx
                except BaseException:
                    self._local.tx = None
                    conn.execute("ROLLBACK")
                    raise
                self._local.tx = None
                conn.execute("COMMIT")
            return
        import psycopg
        try:
            with conn.transaction():
                tx = self._local.tx = Tx(self, conn)
                try:
                    yield tx
                finally:
                    self._local.tx = None
        except psycopg.OperationalError:
            self._drop_conn()
            raise

    @contextmanager
    def _process_lock(self) -> Iterator[None]:
        """SQLite: an exclusive ``flock`` on ``<db>-writelock`` around a write transaction.
        Writers in other processes (``serve --workers``, replicas on one file) then queue in
        the kernel and wake the moment the lock is free, instead of SQLite's busy handler
        sleeping and retrying (which left cores idle with several workers). Advisory: a
        writer without it still waits on SQLite's own lock (busy timeout)."""
        fd = self._lock_fd if self._lock_pid == os.getpid() else None
        if fd is None:
            try:
                fd = os.open(f"{self.path}-writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
            except OSError:                  # read-only directory: SQLite's lock alone
                yield
                return
            self._lock_fd, self._lock_pid = fd, os.getpid()   # per process: not inherited
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def savepoint(self, tx: Tx, name: str = "sp") -> Iterator[Tx]:
        """Run a block inside ``tx`` that can fail without aborting ``tx``."""
        tx.execute(f"SAVEPOINT {name}")
        try:
            yield tx
        except BaseException:
            tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        tx.execute(f"RELEASE SAVEPOINT {name}")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot (a transaction that is never committed)."""
        outer = getattr(self._local, "tx", None)
        if outer is not None:
            yield outer
            return
        conn = self._conn()
        if self.dialect == "sqlite":
            conn.execute("BEGIN")
            try:
                yield Tx(self, conn)
            finally:
                conn.execute("ROLLBACK")
            return
        import psycopg
        try:
            with conn.transaction():
                yield Tx(self, conn)
        except psycopg.OperationalError:
            self._drop_conn()
            raise

    def close(self) -> None:
        self.closed = True
        if self._lock_fd is not None and self._lock_pid == os.getpid():
            os.close(self._lock_fd)
        self._lock_fd = None
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def __repr__(self) -> str:
        return f"Database({redact_url(self.url)!r})"


def now() -> float:
    """Wall-clock seconds, the unit of every timestamp column."""
    return time.time()
