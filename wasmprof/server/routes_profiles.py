"""Profile routes: ingest (agent JSON batches, any profile format, pprof, Pyroscope's
``POST /ingest``), queries (flame graph exports, diff, time series, label discovery).

Every ingest is validated whole before anything is stored (400 naming the field) and
committed before the 2xx. Queries run in a worker thread under the store's budget
(:class:`~wasmprof.server.profile_query.QueryBudget`): 413 when the selection holds too much
data, 503 when it runs out of time (both say what to narrow); a client that disconnects
cancels its query. Export bodies are streamed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.server.contract import MAX_ID
from wasmprof.server.profile_query import QueryBudget
from wasmprof.server.profile_service import EXPORT_FORMATS, SERVICE_FORMATS, Selection, parse_time
from wasmprof.server.responses import (BINARY_BODY, ERROR_RESPONSES, HttpErrorBody, JSON_BODY,
                                       TEXT_BODY, OrjsonResponse, multipart_body, raw_body)
from wasmprof.server.routes_api import _form_file, _inline_headers, _labels, _text_param
from wasmprof.server.security import Principal

QUERY_RESPONSES = {
    **ERROR_RESPONSES,
    413: {"model": HttpErrorBody, "description": "Body over the size cap, or a selection "
          "holding more data than one query may read (narrow the time range or labels)"},
    503: {"model": HttpErrorBody, "description": "The query ran out of its time budget"},
}
EXPORT_MEDIA = {
    "application/json": {"schema": {"type": "object"}},
    "text/plain": {"schema": {"type": "string"}},
    "image/svg+xml": {"schema": {"type": "string"}},
    "application/vnd.google.protobuf+gzip": {"schema": {"type": "string", "format": "binary"}},
}
_PYRO_NAME = re.compile(r"^([^{}]{1,200})(?:\{(.*)\})?$", re.S)
_PYRO_SUFFIXES = (".cpu", ".itimer", ".wall")


async def _run_query(request: Request, budget: QueryBudget, fn: Callable[..., Any], *args: Any,
                     **kw: Any) -> Any:
    """Run a query in the thread pool; a client disconnect sets the budget's cancel flag."""

    async def watch() -> None:
        while not budget.cancel.is_set():
            if await request.is_disconnected():
                budget.cancel.set()
                return
            await asyncio.sleep(0.2)

    task = asyncio.create_task(watch())
    try:
        return await run_in_threadpool(fn, *args, budget=budget, **kw)
    finally:
        task.cancel()


def _stream(chunks: Any, media: str) -> Response:
    return StreamingResponse(chunks, media_type=media, headers=_inline_headers(media))


def parse_pyroscope_name(name: str) -> tuple[str, dict[str, str]]:
    """``my.app.cpu{env=prod,region=eu}`` → ("my.app", {"env": "prod", "region": "eu"}); a
    trailing profile-type suffix (``.cpu``, ``.itimer``, ``.wall``) is dropped."""
    m = _PYRO_NAME.match(name.strip())
    if not m:
        raise UsageError("bad Pyroscope application name", source="name",
                         expected="APP or APP{key=value,…}", found=name[:60])
    app, inner = m.group(1).strip(), m.group(2)
    for suf in _PYRO_SUFFIXES:
        if app.endswith(suf) and len(app) > len(suf):
            app = app[: -len(suf)]
    labels: dict[str, str] = {}
    for part in (inner or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UsageError("bad Pyroscope label", source="name", expected="key=value",
                             found=part[:60])
        k, v = part.split("=", 1)
        labels[_text_param(k.strip(), "label name") or "?"] = _text_param(v.strip(), f"label {k}") or ""
    if "__name__" in labels:
        labels.pop("__name__")
    return _text_param(app, "name") or app, labels


def build_router(svc: Any, require: Callable[[str], Any]) -> APIRouter:
    r = APIRouter(default_response_class=OrjsonResponse, responses=QUERY_RESPONSES)
    ingest = Depends(require("ingest"))
    read = Depends(require("read"))
    prof = svc.profiles

    async def _ingest(request: Request, data: bytes, *, fmt: str | None, aux: bytes | None,
                      name: str | None, labels: dict[str, str] | None = None,
                      plugin: str | None = None) -> Any:
        q = request.query_params
        return await run_in_threadpool(
            prof.ingest, data, fmt=fmt, aux=aux,
            plugin=plugin or _text_param(q.get("plugin"), "plugin"),
            version=_text_param(q.get("version"), "version"),
            labels=_labels(request) if labels is None else labels,
            name=_text_param(name, "name"), start=parse_time(q.get("from"), "from"),
            end=parse_time(q.get("to"), "to"),
            client_id=_text_param(q.get("batch_id"), "batch_id"))

    # -- ingest -------------------------------------------------------------------------
    @r.post("/api/v1/samples", summary="Post an agent JSON sample batch",
            description="Validated whole (400 names `samples[i].field`; nothing of a refused "
                        "batch is stored), symbolized and aggregated. Query: `plugin`, "
                        "`version`, labels, `batch_id` (idempotency key: a batch posted twice "
                        "is stored once), `from`/`to` (time of samples without `timestamp`).",
            openapi_extra=raw_body(JSON_BODY, '{"modules": [...], "samples": [{"stack": [pc, '
                                              '...]}]}'))
    async def post_samples(request: Request, p: Principal = ingest):
        return await _ingest(request, await request.body(), fmt="agent-json", aux=None,
                             name=request.query_params.get("name"))

    @r.post("/api/v1/profiles", summary="Post a profile: perf script (+ multipart 'perf_map'), "
                                        "folded stacks, agent JSON, a WAMR profiler block or pprof",
            description="The format is detected as `wasmprof flamegraph` does (gzip = pprof), or "
                        "`format=" + "|".join(SERVICE_FORMATS) + "`. Query: `plugin`, "
                        "`version`, labels, `name`, `batch_id`, `from`/`to` (where a recording "
                        "with a relative clock starts or ends).",
            openapi_extra=raw_body({**multipart_body("file", "perf_map"), **TEXT_BODY,
                                    **BINARY_BODY}, "the profile (and a perf map for perf script)"))
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
        if not data:
            raise UsageError("empty profile upload", source="body", expected="profile bytes")
        return await _ingest(request, data, fmt=q.get("format") or None, aux=aux, name=name)

    @r.post("/ingest", summary="Pyroscope ingest API: folded stacks or pprof",
            description="`name=APP{k=v,…}` (required; the app is the plugin, a `.cpu` suffix is "
                        "dropped; the labels are labels), `from`/`until` (unix seconds: samples "
                        "of folded stacks are placed at `from`), `format=folded|pprof` (default "
                        "folded; `lines` = folded), `sampleRate` (Hz), `spyName`, `units`, "
                        "`aggregationType` (kept as labels where they say something). pprof may "
                        "come as the raw body or a multipart `profile` field.",
            openapi_extra=raw_body({**TEXT_BODY, **BINARY_BODY, **multipart_body("profile")},
                                   "folded stacks or a (gzipped) profile.proto"),
            tags=["pyroscope"])
    async def pyroscope_ingest(request: Request, p: Principal = ingest,
                               name: str = Query(..., max_length=1000),
                               format: str = Query("folded", max_length=20),  # noqa: A002
                               sampleRate: int | None = Query(None, ge=1, le=1_000_000),  # noqa: N803
                               spyName: str | None = Query(None, max_length=100),  # noqa: N803
                               units: str | None = Query(None, max_length=40),
                               aggregationType: str | None = Query(None, max_length=20)):  # noqa: N803
        q = request.query_params
        plugin, labels = parse_pyroscope_name(name)
        fmt = {"folded": "folded", "lines": "folded", "pprof": "pprof"}.get(format)
        if fmt is None:
            raise UsageError("unsupported Pyroscope format", source="format",
                             expected="folded, lines or pprof", found=format[:20])
        if spyName:
            labels["spy"] = _text_param(spyName, "spyName") or ""
        if sampleRate:
            labels["sample_rate"] = str(sampleRate)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            f, _form = await _form_file(request, "profile")
            if f is None:
                raise UsageError("multipart upload without a 'profile' field", source="body")
            data = await f.read()
        else:
            data = await request.body()
        if not data:
            raise UsageError("empty profile", source="body", expected="folded stacks or pprof")
        start = parse_time(q.get("from"), "from")
        end = parse_time(q.get("until"), "until")
        return await run_in_threadpool(
            prof.ingest, data, fmt=fmt, aux=None, plugin=plugin,
            version=_text_param(labels.pop("version", None), "version"), labels=labels,
            name=f"pyroscope {fmt}", start=start, end=end, client_id=None)

    # -- queries ------------------------------------------------------------------------
    @r.get("/api/v1/profiles", summary="Select profiles (plugin, version, labels=k:v,…, from, "
                                       "to); format=" + "|".join(EXPORT_FORMATS) + " merges "
                                       "them, none summarizes",
           description="Without `format`: the series' plugins/versions/labels with sample "
                       "counts and the most recent raw inputs. With it: the flame graph of the "
                       "selection from the store (`focus=FUNCTION` keeps the sub-trees rooted at "
                       "that function in the SVG); `json` is the top-functions table "
                       "(self/total), the notes, and each module's share of the samples where "
                       "the recording holds host frames.",
           responses={200: {"content": EXPORT_MEDIA, "description": "the export"}})
    async def get_profiles(request: Request, p: Principal = read,
                           format: str | None = Query(None, max_length=20),  # noqa: A002
                           focus: str | None = Query(None, max_length=500)) -> Response:
        sel = Selection.from_params(dict(request.query_params))
        if not format:
            return OrjsonResponse(await run_in_threadpool(prof.summary, sel))
        if format not in EXPORT_FORMATS:
            raise UsageError("unknown export format", source="format",
                             expected=", ".join(EXPORT_FORMATS), found=format[:40])
        chunks, media = await _run_query(request, prof.budget(), prof.export, sel, format,
                                         focus=focus or None)
        return _stream(chunks, media)

    @r.get("/api/v1/profiles/diff", summary="Compare two selections: before.plugin, "
                                            "before.labels, before.from, … and after.*; "
                                            "format=json|svg",
           responses={200: {"content": {k: EXPORT_MEDIA[k] for k in ("application/json",
                                                                      "image/svg+xml")},
                            "description": "table or differential flame graph"}})
    async def diff_profiles(request: Request, p: Principal = read,
                            format: str = Query("json", max_length=10),  # noqa: A002
                            mode: str = Query("normalized", max_length=20)) -> Response:
        params = dict(request.query_params)
        before = Selection.from_params(params, "before.")
        after = Selection.from_params(params, "after.")
        chunks, media = await _run_query(request, prof.budget(), prof.diff, before, after,
                                         fmt=format, mode=mode)
        return _stream(chunks, media)

    @r.get("/api/v1/profiles/timeline", summary="Samples per time step per series group",
           description="Query: the selection (`plugin`, `version`, `labels`, `from`, `to`), "
                       "`step` (seconds, default: about 240 points), `by` = plugin | version | "
                       "thread | series | a label name. Answer: `{from, to, step, by, unit, "
                       "series: [{name, points: [[t, samples], …]}]}`.")
    async def timeline(request: Request, p: Principal = read,
                       step: int | None = Query(None, ge=10, le=31 * 86400),
                       by: str = Query("plugin", min_length=1, max_length=200)):
        sel = Selection.from_params(dict(request.query_params))
        return await run_in_threadpool(prof.timeline, sel, step=step, by=by)

    @r.get("/api/v1/profiles/labels", summary="Label names of the stored series",
           description="`plugin`, `version` and `thread` are always offered; optionally of one "
                       "`plugin`.")
    def label_names(plugin: str | None = Query(None, max_length=200), p: Principal = read):
        return {"names": prof.label_names(plugin)}

    @r.get("/api/v1/profiles/labels/{name}/values", summary="Values of one label")
    def label_values(name: str = Path(..., min_length=1, max_length=200),
                     plugin: str | None = Query(None, max_length=200), p: Principal = read):
        return {"name": name, "values": prof.label_values(name, plugin)}

    @r.get("/api/v1/profiles/inputs", summary="Stored raw inputs by id (ids=1,2,3): which exist")
    def get_inputs(ids: Annotated[str, Query(
                       max_length=8000, pattern=r"^ *([0-9]{1,19} *(, *[0-9]{1,19} *)*,? *)?$",
                       description="comma-separated ids")] = "",
                   p: Principal = read):
        wanted = [int(x) for x in ids.split(",") if x.strip()][:10000]
        beyond = [i for i in wanted if not 1 <= i <= MAX_ID]      # cannot exist
        wanted = [i for i in wanted if 1 <= i <= MAX_ID]
        found: list[int] = []
        with svc.db.read() as tx:
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                marks = ",".join("?" for _ in part)
                found += [row["id"] for row in tx.all(
                    f"SELECT id FROM profile_inputs WHERE id IN ({marks})", part)]
        out: dict[str, Any] = {"found": sorted(found), "missing": sorted(set(wanted) - set(found))}
        if beyond:                       # outside 1..2^63-1: cannot exist (as text: too big)
            out["out_of_range"] = [str(i) for i in beyond[:100]]
        return out

    return r
