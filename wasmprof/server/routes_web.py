"""API routes the dashboard needs beyond the core API: sparklines and source context.

- ``GET  /api/v1/web/crash-timeline?hours=24&buckets=24`` (read): per-group event counts in
  equal buckets over the last ``hours`` (by occurrence time), for the crash-group list's
  sparklines in one request: ``{"start", "step", "buckets", "groups": {id: [counts]}}``.
- ``POST /api/v1/sources`` (ingest): multipart ``file`` (one or more source files), optional
  form fields ``path`` (the path the debug info names, e.g. ``/src/app/main.c``; default the
  upload's file name) and ``plugin``. Stored content-addressed in the blob store; never
  executed, only shown as text.
- ``GET  /api/v1/web/sources?file=A&file=B[&plugin=]`` (read): which frame files have an
  uploaded source: ``{"available": {file: stored path}}``.
- ``GET  /api/v1/web/source?file=&line=&context=5[&plugin=]`` (read): lines around ``line``
  of the uploaded source whose path equals ``file``, else the one sharing the longest path
  suffix with it (same base name). 404 when no source matches.

Everything returned is data: the dashboard renders it with textContent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from wasmprof.store.db import Tx, now
from wasmprof.store.state import Store

#: Source files larger than this are refused (they are shown in a browser, a few lines at a time).
MAX_SOURCE_BYTES = 4 * 1024 * 1024

def _norm_path(path: str) -> str:
    p = path.replace("\\", "/").strip()
    return str(PurePosixPath(p)) if p else p


def store_source(store: Store, tx: Tx, path: str, data: bytes, plugin: str | None = None) -> dict:
    """Store one source file (inside the caller's transaction); replaces the same path+plugin."""
    if len(data) > MAX_SOURCE_BYTES:
        raise HTTPException(413, f"source file {path!r} exceeds {MAX_SOURCE_BYTES} bytes")
    path = _norm_path(path)
    if not path or path == ".":
        raise HTTPException(400, "source path is empty")
    sha = hashlib.sha256(data).hexdigest()
    store.blobs.put(tx, data, sha)
    if plugin is None:
        tx.execute("DELETE FROM web_sources WHERE path = ? AND plugin IS NULL", (path,))
    else:
        tx.execute("DELETE FROM web_sources WHERE path = ? AND plugin = ?", (path, plugin))
    sid = tx.insert("INSERT INTO web_sources (path, basename, plugin, sha256, size, uploaded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (path, PurePosixPath(path).name, plugin, sha, len(data), now()))
    return {"id": sid, "path": path, "plugin": plugin, "sha256": sha, "size": len(data)}


def load_sources_dir(store: Store, directory: Path, *, prefix: str = "",
                     plugin: str | None = None) -> int:
    """Upload every regular file under ``directory`` as ``prefix + relative path`` (demo data)."""
    count = 0
    with store.db.tx() as tx:
        for f in sorted(Path(directory).rglob("*")):
            if f.is_file() and f.stat().st_size <= MAX_SOURCE_BYTES:
                rel = f.relative_to(directory).as_posix()
                store_source(store, tx, (prefix.rstrip("/") + "/" + rel) if prefix else rel,
                             f.read_bytes(), plugin)
                count += 1
    return count


def _suffix_len(a: str, b: str) -> int:
    """Number of equal trailing path components."""
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


def find_source(tx: Tx, file: str, plugin: str | None) -> dict[str, Any] | None:
    file = _norm_path(file)
    rows = tx.all("SELECT id, path, plugin, sha256, size FROM web_sources WHERE basename = ? "
                  "ORDER BY uploaded_at DESC", (PurePosixPath(file).name,))
    best, best_score = None, (-1, -1)
    for r in rows:
        score = (_suffix_len(r["path"], file) + (1000 if r["path"] == file else 0),
                 1 if plugin and r["plugin"] == plugin else 0)
        if score > best_score:
            best, best_score = r, score
    return best


def build_router(store: Store, require: Callable[[str], Any]) -> APIRouter:
    """The routes above, guarded by the service's ``require(scope)`` dependency."""
    router = APIRouter(prefix="/api/v1", tags=["dashboard"])

    @router.get("/web/crash-timeline", dependencies=[Depends(require("read"))])
    def crash_timeline(hours: int = Query(24, ge=1, le=24 * 90),
                       buckets: int = Query(24, ge=1, le=500),
                       to: float | None = None) -> dict[str, Any]:
        end = to if to is not None else now()
        start = end - hours * 3600.0
        step = (end - start) / buckets
        out: dict[str, list[int]] = {}
        with store.db.read() as tx:
            rows = tx.all("SELECT group_id, occurred_at FROM crash_events "
                          "WHERE group_id IS NOT NULL AND occurred_at >= ? AND occurred_at <= ?",
                          (start, end))
        for r in rows:
            counts = out.setdefault(str(r["group_id"]), [0] * buckets)
            i = min(int((r["occurred_at"] - start) / step), buckets - 1)
            counts[i] += 1
        return {"start": start, "step": step, "buckets": buckets, "groups": out}

    @router.post("/sources", dependencies=[Depends(require("ingest"))])
    async def upload_sources(request: Request) -> dict[str, Any]:
        form = await request.form()
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise HTTPException(400, "expected multipart field 'file' (one or more source files)")
        paths = [str(p) for p in form.getlist("path")]
        plugin = str(form.get("plugin")) if form.get("plugin") else None
        if paths and len(paths) != len(files):
            raise HTTPException(400, "give one 'path' per 'file', or none")
        stored = []
        with store.db.tx() as tx:
            for i, f in enumerate(files):
                data = await f.read(MAX_SOURCE_BYTES + 1)
                stored.append(store_source(store, tx, paths[i] if paths else (f.filename or ""),
                                           data, plugin))
        return {"sources": stored}

    @router.get("/web/sources", dependencies=[Depends(require("read"))])
    def sources_available(file: list[str] = Query(default=[], max_length=200),
                          plugin: str | None = None) -> dict[str, Any]:
        """Which of these frame files have an uploaded source: {file: stored path}."""
        out: dict[str, str] = {}
        with store.db.read() as tx:
            for f in file[:200]:
                row = find_source(tx, f[:4096], plugin)
                if row is not None:
                    out[f] = row["path"]
        return {"available": out}

    @router.get("/web/source", dependencies=[Depends(require("read"))])
    def source(file: str = Query(..., max_length=4096), line: int = Query(..., ge=1),
               context: int = Query(5, ge=0, le=200), plugin: str | None = None) -> dict[str, Any]:
        with store.db.read() as tx:
            row = find_source(tx, file, plugin)
        if row is None:
            raise HTTPException(404, f"no uploaded source matches {file!r}")
        text = store.blobs.get(row["sha256"]).decode("utf-8", errors="replace")
        lines = text.splitlines()
        first = max(1, line - context)
        last = min(len(lines), line + context)
        return {"file": file, "path": row["path"], "plugin": row["plugin"], "line": line,
                "first_line": first, "lines": lines[first - 1:last], "total_lines": len(lines),
                "origin": "uploaded", "line_in_file": line <= len(lines)}

    return router
