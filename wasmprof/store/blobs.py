"""Content-addressed blob storage (uploaded modules) keyed by sha256.

- SQLite: the file ``<data>/blobs/ab/abcdef…`` is the stored copy (written to a temp
  file, fsynced, renamed) and the ``blobs`` row (``data`` NULL) records it. The file is
  written before the row commits, so a committed row always has its file.
- PostgreSQL: the bytes live in ``blobs.data`` (shared by every replica); the local file
  is this replica's cache, materialized on first use.

``put`` is idempotent (same bytes, same key). Blobs are never executed, only parsed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from wasmprof.store.db import Database, Tx, now


class BlobStore:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def _write_file(self, sha256: str, data: bytes) -> Path:
        path = self.path_for(sha256)
        if path.exists() and path.stat().st_size == len(data):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def put(self, tx: Tx, data: bytes, sha256: str | None = None) -> str:
        """Store ``data`` inside the caller's transaction; returns its sha256."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        self._write_file(sha, data)          # file first: a committed row implies a file
        payload = data if self.db.dialect == "postgresql" else None
        tx.execute("INSERT INTO blobs (sha256, size, data, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (sha256) DO NOTHING", (sha, len(data), payload, now()))
        return sha

    def local_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (fetched from the database if needed)."""
        path = self.path_for(sha256)
        if path.exists():
            return path
        with self.db.read() as tx:
            row = tx.one("SELECT data FROM blobs WHERE sha256 = ?", (sha256,))
        if row is None or row["data"] is None:
            raise FileNotFoundError(f"blob {sha256} is not stored")
        return self._write_file(sha256, bytes(row["data"]))

    def get(self, sha256: str) -> bytes:
        return self.local_path(sha256).read_bytes()
