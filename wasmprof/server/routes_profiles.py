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
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.server.contract import (LABELS_PATTERN, MAX_ID, PRINTABLE, LabelsQuery, NamePath,
                                      TextQuery, TimeQuery, labels_query, python_pattern,
                                      text_query, time_query)
from wasmprof.server.profile_query import QueryBudget
from wasmprof.server.profile_service import (EXPORT_FORMATS, SERVICE_FORMATS, Selection,
                                             parse_labels, parse_time)
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
# What parse_pyroscope_name accepts, as the OpenAPI pattern of `name`: an application name
# (1-200 printable characters, no braces, not starting with a space) and optional
# `{key=value,…}` labels (names and values of at most 200 printable characters, no braces or
# commas). Python's str.strip() also strips Unicode spaces: the first character is none.
_NOT_SPACE = r"\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PYRO_LABEL = r"( *[^,={}\x00-\x1f\x7f]{0,200}=[^,{}\x00-\x1f\x7f]{0,200}| *)"
PYROSCOPE_NAME_PATTERN = (rf"^ *[^{{}}{_NOT_SPACE}][^{{}}\x00-\x1f\x7f]{{0,199}}"
                          rf"(\{{{_PYRO_LABEL}(,{_PYRO_LABEL})*\}})? *$")
ExportFormat = Literal[EXPORT_FORMATS]  # type: ignore[valid-type]
IngestFormat = Literal[SERVICE_FORMATS]  # type: ignore[valid-type]
FromQuery = Annotated[str | None, time_query("from")]
ToQuery = Annotated[str | None, time_query("to")]


def selection(prefix: str = "") -> Callable[..., Selection]:
    """A dependency declaring the selection's query parameters (``plugin``, ``version``,
    ``labels``, ``from``, ``to``, each under ``prefix``) and building the :class:`Selection`."""

    def dep(plugin: str | None = None, version: str | None = None, labels: str | None = None,
            frm: str | None = None, to: str | None = None) -> Selection:
        return Selection(plugin=plugin or None, version=version or None,
                         labels=parse_labels(labels), start=parse_time(frm, prefix + "from"),
                         end=parse_time(to, prefix + "to"))

    # real objects, not the strings of `from __future__ import annotations`: the names
    # depend on `prefix`, which FastAPI could not see when evaluating strings
    dep.__annotations__ = {
        "plugin": Annotated[str | None, text_query(alias=prefix + "plugin")],
        "version": Annotated[str | None, text_query(alias=prefix + "version")],
        "labels": Annotated[str | None, labels_query(prefix + "labels"),
                            python_pattern(LABELS_PATTERN)],
        "frm": Annotated[str | None, time_query(prefix + "from")],
        "to": Annotated[str | None, time_query(prefix + "to")],
        "return": Selection}
    return dep



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
    # The declared query parameters document and validate what `_ingest` reads; any other
    # parameter is a label (as on POST /api/v1/logs).
    @r.post("/api/v1/samples", summary="Post an agent JSON sample batch",
            description="Validated whole (400 names `samples[i].field`; nothing of a refused "
                        "batch is stored), symbolized and aggregated. Query: `plugin`, "
                        "`version`, labels, `batch_id` (idempotency key: a batch posted twice "
                        "is stored once), `from`/`to` (time of samples without `timestamp`).",
            openapi_extra=raw_body(JSON_BODY, '{"modules": [...], "samples": [{"stack": [pc, '
                                              '...]}]}'))
    async def post_samples(request: Request, plugin: TextQuery = None, version: TextQuery = None,
                           labels: LabelsQuery = None, name: TextQuery = None,
                           batch_id: TextQuery = None, frm: FromQuery = None,
                           to: ToQuery = None, p: Principal = ingest):
        return await _ingest(request, await request.body(), fmt="agent-json", aux=None,
                             name=name)

    @r.post("/api/v1/profiles", summary="Post a profile: perf script (+ multipart 'perf_map'), "
                                        "folded stacks, agent JSON, a WAMR profiler block or pprof",
            description="The format is detected as `wasmprof flamegraph` does (gzip = pprof), or "
                        "`format=" + "|".join(SERVICE_FORMATS) + "`. Query: `plugin`, "
                        "`version`, labels, `name`, `batch_id`, `from`/`to` (where a recording "
                        "with a relative clock starts or ends).",
            openapi_extra=raw_body({**multipart_body("file", "perf_map"), **TEXT_BODY,
                                    **BINARY_BODY}, "the profile (and a perf map for perf script)"))
    async def post_profile(request: Request, plugin: TextQuery = None, version: TextQuery = None,
                           labels: LabelsQuery = None, name: TextQuery = None,
                           batch_id: TextQuery = None, frm: FromQuery = None, to: ToQuery = None,
                           format: IngestFormat | None = None,  # noqa: A002
                           p: Principal = ingest):
        aux = None
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
        return await _ingest(request, data, fmt=format or None, aux=aux, name=name)

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
                               name: str = Query(..., max_length=1000,
                                                 pattern=PYROSCOPE_NAME_PATTERN,
                                                 description="APP or APP{key=value,…}"),
                               format: Literal["folded", "lines", "pprof"] = "folded",  # noqa: A002
                               sampleRate: int | None = Query(None, ge=1, le=1_000_000),  # noqa: N803
                               spyName: Annotated[str | None, text_query(100)] = None,  # noqa: N803
                               units: Annotated[str | None, text_query(40)] = None,
                               aggregationType: Annotated[str | None, text_query(20)] = None,  # noqa: N803
                               frm: FromQuery = None,
                               until: TimeQuery = None):
        plugin, labels = parse_pyroscope_name(name)
        fmt = {"folded": "folded", "lines": "folded", "pprof": "pprof"}[format]
        if spyName:
            labels["spy"] = spyName
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
        return await run_in_threadpool(
            prof.ingest, data, fmt=fmt, aux=None, plugin=plugin,
            version=_text_param(labels.pop("version", None), "version"), labels=labels,
            name=f"pyroscope {fmt}", start=parse_time(frm, "from"),
            end=parse_time(until, "until"), client_id=None)

    # -- queries ------------------------------------------------------------------------
    @r.get("/api/v1/profiles", summary="Select profiles (plugin, version, labels=k:v,…, from, "
                                       "to); format=" + "|".join(EXPORT_FORMATS) + " merges "
                                       "them, none summarizes",
           description="Without `format`: the series' plugins/versions/labels with sample "
                       "counts and the most recent raw inputs. With it: the flame graph of the "
                       "selection from the store (`focus=FUNCTION` keeps the sub-trees rooted at "
                       "that function in the SVG); `json` is the top-functions table "
                       "(self/total), the notes, and each module's share of the samples where "
                       "the recording holds host frames. A selection with no data is a 404.",
           responses={200: {"content": EXPORT_MEDIA, "description": "the export"}})
    async def get_profiles(request: Request, p: Principal = read,
                           sel: Selection = Depends(selection()),
                           format: ExportFormat | None = None,  # noqa: A002
                           focus: Annotated[str | None, text_query(500)] = None) -> Response:
        if not format:
            return OrjsonResponse(await run_in_threadpool(prof.summary, sel))
        chunks, media = await _run_query(request, prof.budget(), prof.export, sel, format,
                                         focus=focus or None)
        return _stream(chunks, media)

    @r.get("/api/v1/profiles/diff", summary="Compare two selections: before.plugin, "
                                            "before.labels, before.from, … and after.*; "
                                            "format=json|svg",
           description="A side with no data is a 404.",
           responses={200: {"content": {k: EXPORT_MEDIA[k] for k in ("application/json",
                                                                      "image/svg+xml")},
                            "description": "table or differential flame graph"}})
    async def diff_profiles(request: Request, p: Principal = read,
                            before: Selection = Depends(selection("before.")),
                            after: Selection = Depends(selection("after.")),
                            format: Literal["json", "svg"] = "json",  # noqa: A002
                            mode: Literal["normalized", "absolute"] = "normalized") -> Response:
        chunks, media = await _run_query(request, prof.budget(), prof.diff, before, after,
                                         fmt=format, mode=mode)
        return _stream(chunks, media)

    @r.get("/api/v1/profiles/timeline", summary="Samples per time step per series group",
           description="Query: the selection (`plugin`, `version`, `labels`, `from`, `to`), "
                       "`step` (seconds, default: about 240 points; at most 2000 steps in the "
                       "range, else 400), `by` = plugin | version | thread | series | a label "
                       "name. Answer: `{from, to, step, by, unit, series: [{name, points: "
                       "[[t, samples], …]}]}`.")
    async def timeline(p: Principal = read, sel: Selection = Depends(selection()),
                       step: int | None = Query(None, ge=10, le=31 * 86400),
                       by: str = Query("plugin", min_length=1, max_length=200,
                                       pattern=PRINTABLE)):
        return await run_in_threadpool(prof.timeline, sel, step=step, by=by)

    @r.get("/api/v1/profiles/labels", summary="Label names of the stored series",
           description="`plugin`, `version` and `thread` are always offered; optionally of one "
                       "`plugin`.")
    def label_names(plugin: TextQuery = None, p: Principal = read):
        return {"names": prof.label_names(plugin or None)}

    @r.get("/api/v1/profiles/labels/{name}/values", summary="Values of one label")
    def label_values(name: NamePath, plugin: TextQuery = None, p: Principal = read):
        return {"name": name, "values": prof.label_values(name, plugin or None)}

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
