"""API v1 routes (JSON via orjson). Scopes: ``ingest`` for POSTs of data, ``read`` for GETs
and stateless symbolization, ``admin`` for state changes (resolve a group, plugin runtime).

Bodies are read within the size caps of :class:`~wasmprof.server.security.BodyLimitMiddleware`;
log bodies stream to a spooled temp file (constant memory) before scanning. Every write is
committed before the 2xx answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.responses import Response

from wasmprof.server.responses import (BINARY_BODY, ERROR_RESPONSES, JSON_BODY, TEXT_BODY,
                                       ErrorBody, OrjsonResponse, multipart_body, raw_body)
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.model import AddressSpace, RawFrame
from wasmprof.server.profile_service import Selection, parse_labels, parse_time
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
    if len(value) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in value):
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
            openapi_extra=raw_body({**multipart_body("file"), **BINARY_BODY},
                                   "the module file"))
    async def upload_module(request: Request, p: Principal = ingest) -> Response:
        q = request.query_params
        plugin, version, filename = q.get("plugin"), q.get("version"), q.get("filename")
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
                       "the plugin the module is linked as).")
    def list_modules(plugin: str | None = None, p: Principal = read):
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

    @r.get("/modules/{mid}", summary="One module with its symbol status")
    def get_module(mid: int, p: Principal = read):
        row = svc.registry.get_row(mid)
        if row is None:
            raise HTTPException(404, "no such module")
        return svc.registry.describe(row)

    # -- plugins ----------------------------------------------------------------------
    @r.get("/plugins", summary="List plugins: runtime setting, module kinds, versions")
    def list_plugins(p: Principal = read):
        return {"plugins": svc.registry.plugins()}

    @r.put("/plugins/{name}/runtime", summary="Set how WAMR dumps of a plugin are read",
           description='`{"runtime": "aot" | "interp" | ... | null}` (null: decide from the '
                       "uploaded modules); the plugin's crashes are regrouped at once.",
           openapi_extra=raw_body(JSON_BODY, '{"runtime": ...}'))
    async def set_runtime(name: str, request: Request, p: Principal = admin):
        body = await request.json()
        runtime = body.get("runtime") if isinstance(body, dict) else None
        _text_param(name, "plugin")
        info = await run_in_threadpool(svc.registry.set_runtime, name, runtime)
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
            responses={409: {"model": ErrorBody,
                             "description": "A post with this Idempotency-Key is still running"}},
            openapi_extra=raw_body({**TEXT_BODY, **multipart_body("file")},
                                   "Envoy/Istio/WAMR/V8/Wasmtime log text"))
    async def post_log(request: Request, p: Principal = ingest):
        from wasmprof.server.crash_service import read_log_body
        q = request.query_params
        plugin = _text_param(q.get("plugin"), "plugin")
        version = _text_param(q.get("version"), "version")
        source = _text_param(q.get("source"), "source")
        key = _text_param(request.headers.get("idempotency-key"), "Idempotency-Key") or \
            _text_param(q.get("batch_id"), "batch_id")
        labels = _labels(request)
        spool, size, sha256, filename = await read_log_body(request,
                                                           limit=svc.config.max_log_bytes)
        try:
            result = await run_in_threadpool(
                svc.crashes.ingest_log, spool, source=source or filename or "upload", size=size,
                sha256=sha256, plugin=plugin, version=version, labels=labels,
                token_id=p.token_id, idempotency_key=key)
        finally:
            spool.close()
        svc.metrics.inc("ingest_requests", kind="log")
        svc.metrics.inc("ingest_bytes", size, kind="log")
        return result

    # -- samples / profiles ----------------------------------------------------------
    @r.post("/samples", summary="Post an agent JSON sample batch",
            description="Query: `plugin`, `version`, labels, `batch_id` (idempotency key: a "
                        "batch posted twice is stored once), `from`/`to`.",
            openapi_extra=raw_body(JSON_BODY, '{"modules": [...], "samples": [{"stack": [pc, '
                                              '...]}]}'))
    async def post_samples(request: Request, p: Principal = ingest):
        q = request.query_params
        data = await request.body()
        return await run_in_threadpool(
            svc.profiles.ingest, data, fmt="agent-json", aux=None,
            plugin=_text_param(q.get("plugin"), "plugin"),
            version=_text_param(q.get("version"), "version"), labels=_labels(request),
            name=_text_param(q.get("name"), "name"), start=parse_time(q.get("from"), "from"),
            end=parse_time(q.get("to"), "to"), client_id=_text_param(q.get("batch_id"), "batch_id"))

    @r.post("/profiles", summary="Post a profile: perf script (+ multipart 'perf_map'), "
                                 "folded stacks, agent JSON or a WAMR profiler block",
            description="The format is detected as `wasmprof flamegraph` does (or give "
                        "`format=perf-script|folded|agent-json|wamr-profiler`). Query: "
                        "`plugin`, `version`, labels, `name`, `batch_id`, `from`/`to`.",
            openapi_extra=raw_body({**multipart_body("file", "perf_map"), **TEXT_BODY},
                                   "the profile (and a perf map for perf script)"))
    async def post_profile(request: Request, p: Principal = ingest):
        q = request.query_params
        aux = None
        name = q.get("name")
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            f, form = await _form_file(request)
            if f is None:
                raise UsageError("multipart upload without a 'file' field", source="body")
            data = await f.read()
            name = name or f.filename
            m = form.get("perf_map")
            if hasattr(m, "read"):
                aux = await m.read()
        else:
            data = await request.body()
        return await run_in_threadpool(
            svc.profiles.ingest, data, fmt=q.get("format") or None, aux=aux,
            plugin=_text_param(q.get("plugin"), "plugin"),
            version=_text_param(q.get("version"), "version"), labels=_labels(request),
            name=_text_param(name, "name"), start=parse_time(q.get("from"), "from"),
            end=parse_time(q.get("to"), "to"), client_id=_text_param(q.get("batch_id"), "batch_id"))

    @r.get("/profiles", summary="Select profiles (plugin, version, labels=k:v,…, from, to); "
                                "format=speedscope|folded|svg|json merges them, none lists inputs")
    async def get_profiles(request: Request, p: Principal = read) -> Response:
        params = dict(request.query_params)
        sel = Selection.from_params(params)
        fmt = params.get("format")
        if not fmt:
            return OrjsonResponse(await run_in_threadpool(svc.profiles.summary, sel))
        body, media = await run_in_threadpool(svc.profiles.export, sel, fmt)
        return Response(body, media_type=media, headers=_inline_headers(media))

    @r.get("/profiles/diff", summary="Compare two selections: before.plugin, before.labels, "
                                     "before.from, … and after.*; format=json|svg")
    async def diff_profiles(request: Request, p: Principal = read) -> Response:
        params = dict(request.query_params)
        before = Selection.from_params(params, "before.")
        after = Selection.from_params(params, "after.")
        body, media = await run_in_threadpool(svc.profiles.diff, before, after,
                                              fmt=params.get("format", "json"),
                                              mode=params.get("mode", "normalized"))
        return Response(body, media_type=media, headers=_inline_headers(media))

    @r.get("/profiles/inputs", summary="Stored inputs by id (ids=1,2,3): which exist")
    def get_inputs(ids: str = "", p: Principal = read):
        try:
            wanted = [int(x) for x in ids.split(",") if x.strip()][:10000]
        except ValueError:
            raise UsageError("ids must be integers", source="ids") from None
        found: list[int] = []
        with svc.db.read() as tx:
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                if part:
                    marks = ",".join("?" for _ in part)
                    found += [row["id"] for row in tx.all(
                        f"SELECT id FROM profile_inputs WHERE id IN ({marks})", part)]
        return {"found": sorted(found), "missing": sorted(set(wanted) - set(found))}

    # -- symbolize (stateless) ------------------------------------------------------
    @r.post("/symbolize", summary="Stateless: module (id or sha256) + addresses + space → frames",
            description='`{"module": ID or sha256, "space": "file"|"code"|..., "addresses": '
                        '[0x..., {"aot_index": N, "offset": 0x...}]}` or `{"jobs": [...]}` '
                        "(at most 10).",
            openapi_extra=raw_body(JSON_BODY, "one job or {\"jobs\": [...]}"))
    async def symbolize(request: Request, p: Principal = read):
        body = await request.json()
        jobs = body.get("jobs") if isinstance(body, dict) and "jobs" in body else [body]
        if not isinstance(jobs, list) or len(jobs) > 10:
            raise UsageError("at most 10 jobs", source="jobs")
        return {"results": [await run_in_threadpool(_symbolize_job, svc, j) for j in jobs]}

    # -- crash groups --------------------------------------------------------------
    @r.get("/crash-groups", summary="List crash groups",
           description="Filter by `plugin`, `status` (new, ongoing, regressed, resolved, "
                       "unresolved), `trap_kind`, `version`, `q` (title search); `sort` = "
                       "last_seen, first_seen or count; paged by `limit`/`offset`.")
    def list_groups(plugin: str | None = None, status: str | None = None,
                    trap_kind: str | None = None, q: str | None = None, version: str | None = None,
                    limit: int = 100, offset: int = 0, sort: str = "last_seen",
                    p: Principal = read):
        return svc.crashes.list_groups(plugin=plugin, status=status, trap_kind=trap_kind, q=q,
                                       version=version, limit=limit, offset=offset, sort=sort)

    @r.get("/crash-groups/{gid}", summary="One crash group: counts, versions, top frames, "
                                          "why its crashes landed there, sample events")
    def get_group(gid: int, events: int = 20, p: Principal = read):
        g = svc.crashes.get_group(gid, events=events)
        if g is None:
            raise HTTPException(404, "no such crash group")
        return g

    @r.get("/crash-groups/{gid}/events", summary="A group's events, newest first (before_id pages)")
    def group_events(gid: int, limit: int = 50, before_id: int | None = None, p: Principal = read):
        return svc.crashes.list_events(gid, limit=limit, before_id=before_id)

    @r.post("/crash-groups/{gid}/resolve", summary="Mark resolved ({\"resolved\": false} reopens)")
    async def resolve_group(gid: int, request: Request, p: Principal = admin):
        resolved = True
        if await request.body():
            body = await request.json()
            if isinstance(body, dict) and "resolved" in body:
                resolved = bool(body["resolved"])
        g = await run_in_threadpool(svc.crashes.set_resolved, gid, resolved)
        if g is None:
            raise HTTPException(404, "no such crash group")
        return g

    @r.get("/crash-events/{eid}", summary="One crash event: raw lines, raw and symbolized "
                                          "frames, grouping reason")
    def get_event(eid: int, p: Principal = read):
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
    if isinstance(v, int) and v >= 0:
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            pass
    raise UsageError("bad address", source="addresses", expected="integer or 0x-hex string",
                     found=repr(v)[:40])


def _symbolize_job(svc: Service, job: Any) -> dict[str, Any]:
    if not isinstance(job, dict):
        raise UsageError("a job must be an object", source="jobs")
    ref = job.get("module")
    if ref is None and isinstance(job.get("modules"), list) and job["modules"]:
        ref = job["modules"][0]
    row = None
    if isinstance(ref, int):
        row = svc.registry.get_row(ref)
    elif isinstance(ref, str):
        row = svc.registry.get_row(int(ref)) if ref.isdigit() else svc.registry.get_row_by_sha(ref)
    if row is None:
        raise UsageError("unknown module", source="module", expected="a module id or sha256",
                         found=repr(ref)[:80])
    try:
        space = AddressSpace(job.get("space", "file"))
    except ValueError:
        raise UsageError("unknown address space", source="space",
                         expected=", ".join(s.value for s in AddressSpace),
                         found=str(job.get("space"))[:40]) from None
    addrs = job.get("addresses") or []
    if not isinstance(addrs, list) or len(addrs) > 10000:
        raise UsageError("addresses must be a list of at most 10000", source="addresses")
    module = svc.registry.module(row)
    with svc.resolve_lock:
        return {"module": row["id"], "sha256": row["sha256"],
                "results": _resolve_all(svc, module, space, addrs)}


def _resolve_all(svc: Service, module: Any, space: AddressSpace, addrs: list) -> list[dict]:
    out = []
    for i, a in enumerate(addrs):
        if isinstance(a, dict):
            raw = RawFrame(index=i, space=space, offset=_parse_addr(a["offset"]) if "offset" in a else None,
                           func_index=a.get("func_index"), aot_index=a.get("aot_index"),
                           printed_name=a.get("name"))
            frames = svc.resolver.resolve(module, raw, input_index=i)
            addr = raw.offset
        else:
            addr = _parse_addr(a)
            frames = svc.resolver.resolve_address(module, addr, space)
        out.append({"address": addr, "space": str(space), "frames": [f.to_dict() for f in frames]})
    return out
