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
- ``GET  /api/v1/web/hints`` (read): symbol-health hints that need crash data, beyond the
  module registry's own (:func:`wasmprof.server.registry.module_hints`): an AOT module whose
  crashes only ever show WAMR's entry frame was compiled without call-stack frames
  (:func:`call_stack_hints`): ``{"modules": {id: [hint]}, "groups": {id: [hint]}}``.
- ``GET  /api/v1/web/source?file=&line=&context=5[&plugin=]`` (read): lines around ``line``
  of the uploaded source whose path equals ``file``, else the one sharing the longest path
  suffix with it (same base name); else of a source embedded in the DWARF 5 line table of
  one of the plugin's modules (``clang -gembed-source``). 404 when no source matches.

Everything returned is data: the dashboard renders it with textContent.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from wasmprof.server.contract import MAX_ID, TextQuery, has_control
from wasmprof.server.responses import ERROR_RESPONSES, raw_body

from wasmprof.errors import WasmprofError
from wasmprof.store.db import Tx, now
from wasmprof.store.state import Store

log = logging.getLogger(__name__)

#: The multipart form of ``POST /api/v1/sources`` (a path needs one character that is not
#: ``.``, ``/``, ``\`` or a space: anything else normalizes to nothing).
SOURCES_FORM = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "path": {"type": "string", "maxLength": 4096,
                 "pattern": r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f./\\ ][^\x00-\x1f\x7f]*$"},
        "plugin": {"type": "string", "maxLength": 200, "pattern": r"^[^\x00-\x1f\x7f]*$"}}}}}

#: Source files larger than this are refused (they are shown in a browser, a few lines at a time).
MAX_SOURCE_BYTES = 4 * 1024 * 1024

#: Shown for AOT modules / crash groups whose crashes only show the entry frame.
NO_CALL_STACK_HINT = (
    "AOT built without call-stack frames: its crashes only show the entry frame "
    "(#00: 0x0000 - _start). Recompile with wamrc --enable-dump-call-stack "
    "--call-stack-features=bounds-checks,ip,func-idx --emit-custom-sections=name")
#: How many recent AOT crash events :func:`call_stack_hints` looks at.
HINT_EVENTS = 2000


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


class EmbeddedSources:
    """Source text embedded in modules' DWARF 5 line tables (``DW_LNCT_LLVM_source``, written
    by ``clang -gembed-source``) or in their source maps' ``sourcesContent`` (AssemblyScript
    ``.ts``), per module, cached by module sha256 (LRU)."""

    def __init__(self, registry: Any, cache_size: int = 16) -> None:
        self.registry = registry
        self._cache: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = cache_size

    def _files(self, row: dict[str, Any]) -> dict[str, bytes]:
        sha = row["sha256"]
        with self._lock:
            if sha in self._cache:
                self._cache.move_to_end(sha)
                return self._cache[sha]
        out: dict[str, bytes] = {}
        try:
            module = self.registry.module(row)
            wasm = module.wasm if module.wasm is not None and module.has_dwarf else \
                (module.companion.wasm if module.companion is not None else None)
            if wasm is not None and wasm.has_dwarf:
                out = embedded_sources(wasm.dwarf_sections)
            for m in (module, module.companion):      # source maps' sourcesContent (.ts)
                sm = getattr(m, "source_map", None) if m is not None else None
                if sm is not None:
                    out.update((src, text.encode()) for src, text in zip(sm.sources, sm.contents)
                               if text is not None and src not in out)
        except (WasmprofError, FileNotFoundError, ValueError, KeyError) as e:
            log.info("no embedded sources in module %s: %s", row.get("id"), e)
        with self._lock:
            self._cache[sha] = out
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return out

    def find(self, file: str, plugin: str | None) -> tuple[str, bytes] | None:
        """The embedded source sharing the longest path suffix with ``file`` (same base name)."""
        rows = self.registry.rows(plugin=plugin) if plugin else self.registry.rows()
        base = PurePosixPath(_norm_path(file)).name
        best, best_len = None, 0
        for row in rows[:50]:
            for path, text in self._files(row).items():
                if PurePosixPath(path).name != base:
                    continue
                n = _suffix_len(path, _norm_path(file))
                if n > best_len:
                    best, best_len = (path, text), n
        return best


def embedded_sources(dwarf_sections: dict[str, tuple[int, bytes]]) -> dict[str, bytes]:
    """{path: source bytes} of every line-table file entry that embeds its source."""
    from wasmprof.addr2line.dwarf import dwarfinfo
    if ".debug_line" not in dwarf_sections:
        return {}
    di = dwarfinfo(dwarf_sections)
    out: dict[str, bytes] = {}
    for cu in di.iter_CUs():
        lp = di.line_program_for_CU(cu)
        if lp is None or lp.header["version"] < 5:
            continue
        dirs = [_text(d.get("DW_LNCT_path")) for d in lp.header.get("directories") or []]
        for entry in lp.header.get("file_names") or []:
            src = entry.get("DW_LNCT_LLVM_source")
            name = _text(entry.get("DW_LNCT_path"))
            if not src or not name:
                continue
            di_index = entry.get("DW_LNCT_directory_index") or 0
            if not name.startswith("/") and 0 <= di_index < len(dirs) and dirs[di_index]:
                name = dirs[di_index].rstrip("/") + "/" + name
            out[_norm_path(name)] = src if isinstance(src, bytes) else str(src).encode()
    return out


def entry_frame_only(frames: list[dict[str, Any]], raw_frames: list[dict[str, Any]] | None = None
                     ) -> bool:
    """True when a crash's backtrace is only WAMR's entry frame: one Wasm frame (inlined
    frames of one printed frame count once) at offset 0, as an AOT module compiled without
    ``--enable-dump-call-stack`` prints (``#00: 0x0000 - _start``). ``frames``: symbolized
    frames (``Frame.to_dict``); ``raw_frames`` (``RawFrame`` dicts) when none were resolved."""
    if frames:
        wasm = [f for f in frames if not f.get("native")]
        printed = {f.get("input_index") for f in wasm}
        return len(printed) == 1 and not wasm[0].get("raw_offset")
    wasm = [r for r in raw_frames or [] if not r.get("native")]
    return len(wasm) == 1 and not wasm[0].get("offset")


def call_stack_hints(tx: Tx, modules: list[dict[str, Any]], limit: int = HINT_EVENTS
                     ) -> dict[str, dict[str, list[str]]]:
    """:data:`NO_CALL_STACK_HINT` for each AOT module (rows with ``id``, ``sha256``,
    ``kind``) and crash group whose recent AOT-space crashes all show only the entry frame
    (:func:`entry_frame_only`); the ``limit`` newest AOT crash events are looked at."""
    from wasmprof.server.registry import AOT_KINDS
    rows = tx.all("SELECT group_id, frames, CASE WHEN frames IS NULL THEN crash END AS crash, "
                  "symbolized_with FROM crash_events WHERE space = 'aot' ORDER BY id DESC LIMIT ?",
                  (limit,))
    by_module: dict[str, list[bool]] = {}
    by_group: dict[int, list[bool]] = {}
    for r in rows:
        try:
            frames = orjson.loads(r["frames"]) if r["frames"] else []
            raw = (orjson.loads(r["crash"]).get("raw_frames") or []) if r["crash"] else []
            used = orjson.loads(r["symbolized_with"]) if r["symbolized_with"] else []
        except (orjson.JSONDecodeError, AttributeError):
            continue
        only = entry_frame_only(frames, raw)
        for sha in used:
            by_module.setdefault(str(sha), []).append(only)
        if r["group_id"] is not None:
            by_group.setdefault(int(r["group_id"]), []).append(only)
    out_modules = {str(m["id"]): [NO_CALL_STACK_HINT] for m in modules
                   if m["kind"] in AOT_KINDS and by_module.get(m["sha256"])
                   and all(by_module[m["sha256"]])}
    out_groups = {str(g): [NO_CALL_STACK_HINT] for g, flags in by_group.items() if all(flags)}
    return {"modules": out_modules, "groups": out_groups}


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


def build_router(service: Any, require: Callable[[str], Any]) -> APIRouter:
    """The routes above, guarded by the service's ``require(scope)`` dependency;
    ``service`` is the server's :class:`wasmprof.server.service.Service`."""
    router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=ERROR_RESPONSES)
    store: Store = service.store
    embedded = EmbeddedSources(service.registry)

    @router.get("/web/crash-timeline", dependencies=[Depends(require("read"))])
    def crash_timeline(hours: int = Query(24, ge=1, le=24 * 90),
                       buckets: int = Query(24, ge=1, le=500),
                       to: float | None = Query(None, ge=0, le=1e11, allow_inf_nan=False)
                       ) -> dict[str, Any]:
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

    @router.get("/web/hints", dependencies=[Depends(require("read"))])
    def hints() -> dict[str, Any]:
        modules = service.registry.rows()
        with store.db.read() as tx:
            return call_stack_hints(tx, modules)

    @router.post("/sources", dependencies=[Depends(require("ingest"))],
                 summary="Upload source files shown next to frames (multipart 'file', 'path')",
                 openapi_extra=raw_body(SOURCES_FORM, "one or more 'file' parts, optional "
                                                      "'path' per file and 'plugin'"))
    async def upload_sources(request: Request) -> dict[str, Any]:
        form = await request.form()
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise HTTPException(400, "expected multipart field 'file' (one or more source files)")
        paths = [str(p) for p in form.getlist("path")]
        plugin = str(form.get("plugin")) if form.get("plugin") else None
        if plugin is not None and (len(plugin) > 200 or has_control(plugin)):
            raise HTTPException(400, "bad 'plugin' field: at most 200 characters, no control "
                                     "characters")
        if any(len(p) > 4096 or has_control(p) for p in paths):
            raise HTTPException(400, "bad 'path' field: at most 4096 characters, no control "
                                     "characters")
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
                          plugin: TextQuery = None) -> dict[str, Any]:
        """Which of these frame files have an uploaded source: {file: stored path}."""
        out: dict[str, str] = {}
        with store.db.read() as tx:
            for f in file[:200]:
                row = find_source(tx, f[:4096], plugin)
                if row is not None:
                    out[f] = row["path"]
        for f in file[:200]:
            if f not in out:
                hit = embedded.find(f[:4096], plugin)
                if hit is not None:
                    out[f] = hit[0]
        return {"available": out}

    @router.get("/web/source", dependencies=[Depends(require("read"))])
    def source(file: str = Query(..., max_length=4096), line: int = Query(..., ge=1, le=MAX_ID),
               context: int = Query(5, ge=0, le=200), plugin: TextQuery = None) -> dict[str, Any]:
        with store.db.read() as tx:
            row = find_source(tx, file, plugin)
        if row is not None:
            path, origin = row["path"], "uploaded"
            text = store.blobs.get(row["sha256"]).decode("utf-8", errors="replace")
        else:
            hit = embedded.find(file, plugin)
            if hit is None:
                raise HTTPException(404, f"no uploaded or embedded source matches {file!r}")
            path, origin, text = hit[0], "embedded", hit[1].decode("utf-8", errors="replace")
        lines = text.splitlines()
        first = max(1, line - context)
        last = min(len(lines), line + context)
        return {"file": file, "path": path, "line": line, "origin": origin,
                "first_line": first, "lines": lines[first - 1:last], "total_lines": len(lines),
                "line_in_file": line <= len(lines)}

    return router
