"""API v1 routes (JSON via orjson). Scopes: ``ingest`` for POSTs of data, ``read`` for GETs
and stateless symbolization, ``admin`` for state changes (resolve a group, plugin runtime).

Inputs follow :mod:`wasmprof.server.contract` (ids ``{name:int}`` in 1..2^63-1, bounded
limits, printable text, JSON bodies as pydantic models in :mod:`wasmprof.server.bodies`).
Bodies are read within the size caps and timeouts of :mod:`wasmprof.server.guards`; log
bodies stream to a spooled temp file (constant memory) before scanning. Every write is
committed before the 2xx answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typing import Annotated, Literal

from fastapi import (APIRouter, Body as BodyParam, Depends, Header, HTTPException, Query, Request,
                     UploadFile)
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import NotFoundError, UsageError
from wasmprof.model import AddressSpace, RawFrame
from wasmprof.server import bodies, bodies_sources
from wasmprof.server.contract import (MAX_ID, PRINTABLE, IdPath, IdQuery, NamePath, OffsetQuery,
                                      LabelsQuery, TextQuery, has_control, limit_query)
from wasmprof.server.profile_query import parse_labels
from wasmprof.server.responses import (BINARY_BODY, BUDGET_RESPONSES, ERROR_RESPONSES,
                                       JSON_BODY, TEXT_BODY, ErrorBody, OrjsonResponse,
                                       multipart_body, raw_body)
from wasmprof.server.security import Principal
from wasmprof.server.service import Service

RESERVED_QUERY = {"plugin", "version", "source", "labels", "format", "batch_id", "from", "to",
                  "name", "filename"}
MAX_NAME = 200


def _text_param(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text", source=what)
    if len(value) > MAX_NAME or has_control(value):
        raise UsageError(f"bad {what}", source=what,
                         expected=f"at most {MAX_NAME} printable characters", found=value[:40])
    return value


def _labels(request: Request) -> dict[str, str]:
    labels = parse_labels(request.query_params.get("labels"))
    for k, v in request.query_params.items():
        if k not in RESERVED_QUERY:
            labels[k] = v
    if len(labels) > 64:
        raise UsageError("too many labels", source="labels", expected="at most 64")
    for k, v in labels.items():
        _text_param(k, "label name")
        _text_param(v, f"label {k}")
    return labels


async def _form_file(request: Request, field: str = "file") -> tuple[UploadFile | None, Any]:
    form = await request.form(max_files=4, max_fields=32)
    f = form.get(field)
    return (f if hasattr(f, "read") else None), form


def build_router(svc: Service, require: Callable[[str], Any]) -> APIRouter:
    r = APIRouter(prefix="/api/v1", default_response_class=OrjsonResponse,
                  responses=ERROR_RESPONSES)
    ingest = Depends(require("ingest"))
    read = Depends(require("read"))
    admin = Depends(require("admin"))

    # -- modules ----------------------------------------------------------------------
    @r.post("/modules", summary="Upload a module (multipart 'file', or a raw body)",
            description="A `.wasm`, `.aot`, `.aot.wasm`, wamrc object or `.cwasm`; query "
                        "`plugin`, `version`, `filename`. Stored by sha256 (201 when new, 200 "
                        "when known), parsed (never executed) and indexed in the background; "
                        "crashes of the plugin that arrived earlier are then regrouped.",
            responses=bodies.created_links("module", bodies.MODULE_LINKS),
            openapi_extra=raw_body({**multipart_body("file"), **BINARY_BODY},
                                   "the module file"))
    async def upload_module(request: Request, plugin: TextQuery = None,
                            version: TextQuery = None, filename: TextQuery = None,
                            p: Principal = ingest) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            f, form = await _form_file(request)
            if f is None:
                raise UsageError("multipart upload without a 'file' field", source="body",
                                 expected="file=@module.wasm")
            data = await f.read()
            filename = filename or f.filename
            plugin = plugin or form.get("plugin")
            version = version or form.get("version")
        else:
            data = await request.body()
        if not data:
            raise UsageError("empty module upload", source="body", expected="module bytes")
        desc, created = await run_in_threadpool(
            svc.upload_module, data, _text_param(filename, "filename"),
            plugin=_text_param(plugin, "plugin"), version=_text_param(version, "version"))
        return OrjsonResponse({**desc, "created": created}, status_code=201 if created else 200)

    @r.get("/modules", summary="List modules with their symbol status",
           description="DWARF? names? build id? index ready? Optionally of one `plugin` "
                       "(then most recently linked first, with `versions`: every version of "
                       "the plugin the module is linked as).",
           responses=bodies.ok_schema(
               {"type": "object", "required": ["modules"],
                "properties": {"modules": {"type": "array", "items": bodies.MODULE_SCHEMA}}},
               bodies.MODULE_LIST_LINKS))
    def list_modules(plugin: TextQuery = None, p: Principal = read):
        rows = svc.registry.rows(plugin=plugin)
        by_id = {row["id"]: row for row in rows}
        out = []
        for row in rows:
            comp = by_id.get(row["companion_id"]) if row["companion_id"] else None
            d = svc.registry.describe(row, comp)
            if plugin:                   # the versions of this plugin the module is linked as
                d["versions"] = row["link_versions"]
            out.append(d)
        return {"modules": out}

    @r.get("/modules/{mid:int}", summary="One module with its symbol status", operation_id="get_module",
           responses=bodies.ok_schema(bodies.MODULE_SCHEMA))
    def get_module(mid: IdPath, p: Principal = read):
        row = svc.registry.get_row(mid)
        if row is None:
            raise HTTPException(404, "no such module")
        return svc.registry.describe(row)

    # -- plugins ----------------------------------------------------------------------
    @r.get("/plugins", summary="List plugins: runtime setting, module kinds, versions",
           responses=bodies.ok_schema(bodies.PLUGIN_LIST_SCHEMA, bodies_sources.PLUGIN_LIST_LINKS))
    def list_plugins(p: Principal = read):
        return {"plugins": svc.registry.plugins()}

    @r.put("/plugins/{name}/runtime", summary="Set how WAMR dumps of a plugin are read",
           description='`{"runtime": "wamr-aot" | "wamr-interp" | ... | null}` (null: decide '
                       "from the uploaded modules); the plugin's crashes are regrouped at once.")
    async def set_runtime(name: NamePath, body: bodies.RuntimeBody, p: Principal = admin):
        info = await run_in_threadpool(svc.registry.set_runtime, name, body.runtime)
        regrouped = await run_in_threadpool(svc.crashes.resymbolize, plugin=name)
        return {**info, "regrouped": regrouped}

    # -- logs -------------------------------------------------------------------------
    @r.post("/logs", summary="Post a gateway log (raw body or multipart 'file'); crashes "
                             "are stored, symbolized and grouped",
            description="Query: `plugin`, `version`, `source`, `labels=k:v,...`, `batch_id` and "
                        "any other parameter as a label. Streamed up to the server's cap; "
                        "`Content-Encoding: gzip` bodies are decompressed within the same cap. "
                        "Any envelope is read: plain Envoy/Istio text, CRI, Docker json-file, "
                        "Fluent Bit / Vector NDJSON or JSON arrays, Loki push documents, "
                        "kubectl/stern prefixes. Idempotent: each crash event is stored once "
                        "however often (or in however many overlapping windows) a log is "
                        "posted; an `Idempotency-Key` header (or `batch_id`) seen before "
                        "answers the first post's result with `duplicate: true` (409 while "
                        "that post still runs). The answer lists the created events and their "
                        "groups (`new`, `regressed`) and counts `new_events` and "
                        "`duplicate_events`.",
            responses={**bodies.ok_schema(bodies.LOG_RESULT_SCHEMA, bodies.LOG_LINKS),
                       409: {"model": ErrorBody, "description": "A post with this "
                                                               "Idempotency-Key is still running"}},
            openapi_extra=raw_body({**TEXT_BODY, **multipart_body("file")},
                                   "Envoy/Istio/WAMR/V8/Wasmtime log text"))
    async def post_log(request: Request, plugin: TextQuery = None, version: TextQuery = None,
                       source: TextQuery = None, labels: LabelsQuery = None,
                       batch_id: TextQuery = None,
                       idempotency_key: Annotated[str | None, Header(
                           min_length=1, max_length=MAX_NAME, pattern=PRINTABLE,
                           description="the post's key: a key seen before answers the "
                                       "first post's result")] = None,
                       p: Principal = ingest):
        from wasmprof.server.crash_service import read_log_body
        labels = _labels(request)
        key = idempotency_key or batch_id
        spool, size, sha256, filename = await read_log_body(request,
                                                           limit=svc.config.max_log_bytes)
        try:
            if not size:
                raise UsageError("empty log body", source="body",
                                 expected="log text (raw body or multipart 'file')")
            result = await run_in_threadpool(
                svc.crashes.ingest_log, spool, source=source or filename or "upload", size=size,
                sha256=sha256, plugin=plugin, version=version, labels=labels,
                token_id=p.token_id, idempotency_key=key)
        finally:
            spool.close()
        svc.metrics.inc("ingest_requests", kind="log")
        svc.metrics.inc("ingest_bytes", size, kind="log")
        return result

    # -- samples / profiles: wasmprof.server.routes_profiles -------------------------

    # -- symbolize (stateless) ------------------------------------------------------
    @r.post("/symbolize", summary="Stateless: module (id or sha256) + addresses + space → frames",
            description='`{"module": ID or sha256, "space": "file"|"code"|..., "addresses": '
                        '[0x..., {"aot_index": N, "offset": 0x...}]}` or `{"jobs": [...]}` '
                        "(at most 10). An unknown module is a 404.",
            responses=BUDGET_RESPONSES)
    async def symbolize(body: bodies.SymbolizeJob | bodies.SymbolizeBatch, p: Principal = read):
        jobs = body.jobs if isinstance(body, bodies.SymbolizeBatch) else [body]
        return {"results": [await run_in_threadpool(_symbolize_job, svc, j) for j in jobs]}

    # -- crash groups --------------------------------------------------------------
    @r.get("/crash-groups", summary="List crash groups",
           description="Filter by `plugin`, `status` (new, ongoing, regressed, resolved, "
                       "ignored, unresolved = not resolved nor ignored), `trap_kind`, "
                       "`version`, `q` (substring of the title or plugin, taken literally); "
                       "`sort` = last_seen, first_seen or count; paged by `limit`/`offset`.",
           responses=bodies.ok_schema(bodies.GROUP_LIST_SCHEMA, bodies.GROUP_LIST_LINKS))
    def list_groups(plugin: TextQuery = None, status: bodies.GroupFilter | None = None,
                    trap_kind: TextQuery = None, q: TextQuery = None, version: TextQuery = None,
                    limit: int = limit_query(100, 1000), offset: OffsetQuery = 0,
                    sort: Literal["last_seen", "first_seen", "count"] = "last_seen",
                    p: Principal = read):
        return svc.crashes.list_groups(plugin=plugin, status=status, trap_kind=trap_kind, q=q,
                                       version=version, limit=limit, offset=offset, sort=sort)

    @r.get("/crash-groups/{gid:int}", operation_id="get_crash_group",
           summary="One crash group: counts, versions, top frames, why its crashes landed "
                   "there, sample events",
           responses=bodies.ok_schema(bodies.GROUP_SCHEMA))
    def get_group(gid: IdPath, events: int = limit_query(20, 200), p: Principal = read):
        g = svc.crashes.get_group(gid, events=events)
        if g is None:
            raise HTTPException(404, "no such crash group")
        return g

    @r.get("/crash-groups/{gid:int}/events", operation_id="list_crash_group_events",
           summary="A group's events, newest first (before_id pages)")
    def group_events(gid: IdPath, limit: int = limit_query(50, 500), before_id: IdQuery = None,
                     p: Principal = read):
        if svc.crashes.get_group(gid, events=1) is None:
            raise HTTPException(404, "no such crash group")
        return svc.crashes.list_events(gid, limit=limit, before_id=before_id)

    @r.post("/crash-groups/{gid:int}/resolve", operation_id="resolve_crash_group",
            summary="Mark resolved ({\"resolved\": false} reopens)",
            description="No body or `{\"resolved\": true}` resolves; `{\"resolved\": false}` "
                        "reopens a resolved or ignored group. Answers the group.",
            responses=bodies.ok_schema(bodies.GROUP_SCHEMA))
    async def resolve_group(gid: IdPath,
                            body: Annotated[bodies.ResolveBody | None, BodyParam()] = None,
                            p: Principal = admin):
        return await _set_status(gid, "resolved" if body is None or body.resolved else "open")

    @r.post("/crash-groups/{gid:int}/ignore", operation_id="ignore_crash_group",
            summary="Mute a group ({\"ignored\": false} unmutes)",
            description="An ignored group keeps counting its crashes but alerts nothing (no "
                        "regression, no spike) and is left out of `status=unresolved`. No body "
                        "or `{\"ignored\": true}` ignores; `{\"ignored\": false}` reopens.",
            responses=bodies.ok_schema(bodies.GROUP_SCHEMA))
    async def ignore_group(gid: IdPath,
                           body: Annotated[bodies.IgnoreBody | None, BodyParam()] = None,
                           p: Principal = admin):
        return await _set_status(gid, "ignored" if body is None or body.ignored else "open")

    async def _set_status(gid: int, status: str) -> dict[str, Any]:
        g = await run_in_threadpool(svc.crashes.set_status, gid, status)
        if g is None:
            raise HTTPException(404, "no such crash group")
        return g

    @r.get("/crash-events/{eid:int}", operation_id="get_crash_event",
           summary="One crash event: raw lines, raw and symbolized frames, grouping reason",
           responses=bodies.ok_schema(bodies.EVENT_SCHEMA))
    def get_event(eid: IdPath, p: Principal = read):
        e = svc.crashes.get_event(eid)
        if e is None:
            raise HTTPException(404, "no such crash event")
        return e

    @r.get("/stats", summary="Counts of modules, groups, events, profiles, pending jobs")
    def stats(p: Principal = read):
        return svc.stats()

    return r


def _inline_headers(media: str) -> dict[str, str]:
    h = {"X-Content-Type-Options": "nosniff"}
    if media.startswith("image/svg"):
        # the SVG's own script needs to run when opened directly; nothing else may load
        h["Content-Security-Policy"] = ("default-src 'none'; script-src 'unsafe-inline'; "
                                        "style-src 'unsafe-inline'")
    return h


def _parse_addr(v: Any) -> int:
    """An address given as an integer or a decimal / 0x-hex string (the body model has
    already bounded both)."""
    return v if isinstance(v, int) else int(v, 0 if v[:2].lower() == "0x" else 10)


def _symbolize_job(svc: Service, job: bodies.SymbolizeJob) -> dict[str, Any]:
    ref = job.module
    row = None
    if isinstance(ref, int) or ref.isdigit():
        mid = int(ref)
        row = svc.registry.get_row(mid) if mid <= MAX_ID else None
    else:
        row = svc.registry.get_row_by_sha(ref.lower())
    if row is None:
        raise NotFoundError("unknown module", source="module",
                            expected="the id or sha256 of an uploaded module",
                            found=repr(ref)[:80])
    module = svc.registry.module(row)
    with svc.resolve_lock:
        return {"module": row["id"], "sha256": row["sha256"],
                "results": _resolve_all(svc, module, job.space, job.addresses)}


def _resolve_all(svc: Service, module: Any, space: AddressSpace, addrs: list) -> list[dict]:
    out = []
    for i, a in enumerate(addrs):
        if isinstance(a, bodies.AddressRef):
            raw = RawFrame(index=i, space=space,
                           offset=_parse_addr(a.offset) if a.offset is not None else None,
                           func_index=a.func_index, aot_index=a.aot_index,
                           printed_name=a.name)
            frames = svc.resolver.resolve(module, raw, input_index=i)
            addr = raw.offset
        else:
            addr = _parse_addr(a)
            frames = svc.resolver.resolve_address(module, addr, space)
        out.append({"address": addr, "space": str(space), "frames": [f.to_dict() for f in frames]})
    return out
