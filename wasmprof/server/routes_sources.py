"""API routes of module sources (:mod:`wasmprof.sources`).

- ``PUT /api/v1/plugins/{name}/source`` (admin): ``{"url": "oci://HOST/REPO[:TAG|@sha256:…]",
  "credentials"?: {"username", "password"} | null, "plain_http"?: bool}``; the answer never
  holds the password (``password_set``). Omitting ``credentials`` keeps the stored ones when
  the registry host is unchanged. Pulls that failed for the old source are forgotten and
  the plugin's stored crash/profile versions are queued again.
- ``GET|DELETE /api/v1/plugins/{name}/source`` (admin): the source with its pulls / remove it.
- ``POST /api/v1/plugins/{name}/source/pull`` (admin): ``{"version"?: V}``: retry now (failed
  or waiting pulls get fresh attempts; 202).
- ``GET /api/v1/plugin-sources`` (read): every source with its pull status, no credentials
  (the dashboard's overview).
- ``GET /api/v1/symbol-sources`` (read): the configured symbol sources (``wasmprof serve
  --symbol-source``) and their recent lookups (found / missing / error / mismatch).
- ``POST /api/v1/modules/{mid}/origins`` (ingest): record that a module came from an image
  (``wasmprof module pull --server`` sends it after the upload); ``GET`` (read) lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.oci.reference import DIGEST_RE, parse_reference
from wasmprof.server.responses import ERROR_RESPONSES, JSON_BODY, OrjsonResponse, raw_body
from wasmprof.server.contract import read_json_body as json_body
from wasmprof.server.routes_api import _text_param
from wasmprof.sources import origins
from wasmprof.sources.origins import Origin

MAX_ID = 2**63 - 1
SOURCE_BODY = ('{"url": "oci://HOST/REPO[:TAG][@sha256:DIGEST]" (or REPO:v{version}), '
               '"credentials"?: {"username": "...", "password": "..."} | null, '
               '"plain_http"?: false}')


def _plugin(name: str) -> str:
    value = _text_param(name, "plugin")
    if value is None:
        raise UsageError("empty plugin name", source="plugin")
    return value


def _origin_from_body(body: Any) -> Origin:
    if not isinstance(body, dict):
        raise UsageError("expected a JSON object", source="body")
    allowed = {"reference", "digest", "image_digest", "layer_digest", "variant", "filename"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise UsageError("unknown field", source=f"body.{extra[0]}", expected=", ".join(sorted(allowed)))
    ref = parse_reference(body.get("reference") if isinstance(body.get("reference"), str) else "",
                          source="reference")
    digests = {}
    for k in ("digest", "image_digest", "layer_digest"):
        v = body.get(k)
        if v is None and k != "digest":
            digests[k] = None
            continue
        if not isinstance(v, str) or not DIGEST_RE.fullmatch(v):
            raise UsageError(f"bad {k}", source=k, expected="sha256:<64 hex>", found=repr(v)[:80])
        digests[k] = v
    variant = body.get("variant")
    if variant is not None and variant not in ("artifact", "compat"):
        raise UsageError("bad variant", source="variant", expected="artifact, compat")
    filename = _text_param(body.get("filename"), "filename")
    return Origin(ref_url=str(ref), digest=digests["digest"], image_digest=digests["image_digest"],
                  layer_digest=digests["layer_digest"], variant=variant, filename=filename)


def build_router(svc: Any, require: Callable[[str], Any]) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["sources"], responses=ERROR_RESPONSES,
                  default_response_class=OrjsonResponse)
    admin = [Depends(require("admin"))]
    read = [Depends(require("read"))]
    ingest = [Depends(require("ingest"))]
    sources = svc.sources
    name_param = Path(..., min_length=1, max_length=200, description="plugin name")
    id_param = Path(..., ge=1, le=MAX_ID, description="module id")

    @r.put("/plugins/{name}/source", dependencies=admin,
           summary="Set where a plugin's modules are pulled from (an OCI reference)",
           description="Pulls happen in the background when a crash, sample batch or profile "
                       "arrives for a version without a module (a fixed tag or digest is "
                       "pulled at once). Credentials are stored and never returned.",
           openapi_extra=raw_body(JSON_BODY, SOURCE_BODY),
           responses={200: {"description": "The source (no password) with its pulls"}})
    async def put_source(request: Request, name: str = name_param):
        plugin = _plugin(name)
        body = await json_body(request)
        return await run_in_threadpool(sources.set_source, plugin, body)

    @r.get("/plugins/{name}/source", dependencies=admin,
           summary="A plugin's source and its pulls (state, attempts, errors, digests)")
    def get_source(name: str = name_param):
        d = sources.get(_plugin(name), admin=True)
        if d is None:
            raise HTTPException(404, "the plugin has no source")
        return d

    @r.delete("/plugins/{name}/source", dependencies=admin, summary="Remove a plugin's source",
              description="Modules already pulled stay; unfinished pulls are dropped.")
    def delete_source(name: str = name_param):
        if not sources.remove_source(_plugin(name)):
            raise HTTPException(404, "the plugin has no source")
        return {"removed": name}

    @r.post("/plugins/{name}/source/pull", dependencies=admin, status_code=202,
            summary="Pull now: retry failed pulls (or one version's) with fresh attempts",
            openapi_extra=raw_body(JSON_BODY, '{"version"?: "1.2.0"} (or an empty body)'),
            responses={202: {"description": "Queued"}})
    async def pull_now(request: Request, name: str = name_param):
        plugin = _plugin(name)
        body = await json_body(request) if await request.body() else {}
        if not isinstance(body, dict) or set(body) - {"version"}:
            raise UsageError("expected {} or {\"version\": V}", source="body")
        version = _text_param(body.get("version"), "version")
        if sources.get(plugin, admin=False) is None:
            raise HTTPException(404, "the plugin has no source")
        queued = await run_in_threadpool(sources.retry, plugin, version)
        return OrjsonResponse({"plugin": plugin, "queued": queued}, status_code=202)

    @r.get("/plugin-sources", dependencies=read,
           summary="Every plugin source with its pull status (no credentials)")
    def list_plugin_sources():
        return sources.overview()

    @r.get("/symbol-sources", dependencies=read,
           summary="Configured symbol sources (debug builds by identity) and recent lookups")
    def list_symbol_sources():
        return sources.symbol_overview()

    @r.post("/modules/{mid}/origins", dependencies=ingest, status_code=201,
            summary="Record the image a stored module was pulled from",
            openapi_extra=raw_body(JSON_BODY, '{"reference": "oci://…", "digest": "sha256:…", '
                                              '"image_digest"?, "layer_digest"?, "variant"?, '
                                              '"filename"?}'),
            responses={201: {"description": "Recorded"}})
    async def add_origin(request: Request, mid: int = id_param):
        origin = _origin_from_body(await json_body(request))
        if svc.registry.get_row(mid) is None:
            raise HTTPException(404, "no such module")
        await run_in_threadpool(origins.record, svc.db, mid, origin)
        return OrjsonResponse({"module": mid, "origins": origins.origins_of(svc.db, [mid]).get(mid, [])},
                              status_code=201)

    @r.get("/modules/{mid}/origins", dependencies=read,
           summary="The images a module was pulled from (reference, digests, variant)")
    def get_origins(mid: int = id_param):
        if svc.registry.get_row(mid) is None:
            raise HTTPException(404, "no such module")
        return {"module": mid, "origins": origins.origins_of(svc.db, [mid]).get(mid, [])}

    return r
