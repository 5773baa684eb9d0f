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

Bodies are the models of :mod:`wasmprof.server.bodies_sources` (a 422 names the field); what
only the sources service can tell (a template whose sample tag does not parse) is a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body as BodyParam, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from wasmprof.oci.reference import parse_reference
from wasmprof.server import bodies_sources as sb
from wasmprof.server.bodies import ok_schema
from wasmprof.server.contract import IdPath, NamePath
from wasmprof.server.responses import ERROR_RESPONSES, OrjsonResponse
from wasmprof.sources import origins
from wasmprof.sources.origins import Origin


def _origin(body: sb.OriginBody) -> Origin:
    ref = parse_reference(body.reference, source="reference")
    return Origin(ref_url=str(ref), digest=body.digest, image_digest=body.image_digest,
                  layer_digest=body.layer_digest, variant=body.variant,
                  filename=body.filename or None)


def build_router(svc: Any, require: Callable[[str], Any]) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["sources"], responses=ERROR_RESPONSES,
                  default_response_class=OrjsonResponse)
    admin = [Depends(require("admin"))]
    read = [Depends(require("read"))]
    ingest = [Depends(require("ingest"))]
    sources = svc.sources

    @r.put("/plugins/{name}/source", dependencies=admin, operation_id="put_plugin_source",
           summary="Set where a plugin's modules are pulled from (an OCI reference)",
           description="Pulls happen in the background when a crash, sample batch or profile "
                       "arrives for a version without a module (a fixed tag or digest is "
                       "pulled at once). Credentials are stored and never returned.",
           responses=ok_schema(sb.SOURCE_SCHEMA, sb.SOURCE_LINKS))
    async def put_source(name: NamePath, body: sb.SourceBody):
        return await run_in_threadpool(sources.set_source, name, sb.fields(body))

    @r.get("/plugins/{name}/source", dependencies=admin, operation_id="get_plugin_source",
           summary="A plugin's source and its pulls (state, attempts, errors, digests)",
           responses=ok_schema(sb.SOURCE_SCHEMA))
    def get_source(name: NamePath):
        d = sources.get(name, admin=True)
        if d is None:
            raise HTTPException(404, "the plugin has no source")
        return d

    @r.delete("/plugins/{name}/source", dependencies=admin, operation_id="delete_plugin_source",
              summary="Remove a plugin's source",
              description="Modules already pulled stay; unfinished pulls are dropped.",
              responses=ok_schema({"type": "object", "required": ["removed"],
                                   "properties": {"removed": {"type": "string"}}}))
    def delete_source(name: NamePath):
        if not sources.remove_source(name):
            raise HTTPException(404, "the plugin has no source")
        return {"removed": name}

    @r.post("/plugins/{name}/source/pull", dependencies=admin, status_code=202,
            operation_id="pull_plugin_source",
            summary="Pull now: retry failed pulls (or one version's) with fresh attempts",
            description='No body, `{}` or `{"version": "1.2.0"}`.',
            responses=ok_schema({"type": "object", "required": ["plugin", "queued"],
                                 "properties": {"plugin": {"type": "string"},
                                                "queued": {"type": "integer"}}}, status=202))
    async def pull_now(name: NamePath,
                       body: Annotated[sb.PullBody | None, BodyParam()] = None):
        version = body.version if body is not None and body.version else None
        if sources.get(name, admin=False) is None:
            raise HTTPException(404, "the plugin has no source")
        queued = await run_in_threadpool(sources.retry, name, version)
        return OrjsonResponse({"plugin": name, "queued": queued}, status_code=202)

    @r.get("/plugin-sources", dependencies=read,
           summary="Every plugin source with its pull status (no credentials)",
           responses=ok_schema({"type": "object", "required": ["sources"], "properties": {
               "sources": {"type": "array", "items": sb.SOURCE_SCHEMA}}}))
    def list_plugin_sources():
        return sources.overview()

    @r.get("/symbol-sources", dependencies=read,
           summary="Configured symbol sources (debug builds by identity) and recent lookups")
    def list_symbol_sources():
        return sources.symbol_overview()

    @r.post("/modules/{mid:int}/origins", dependencies=ingest, status_code=201,
            operation_id="add_module_origin",
            summary="Record the image a stored module was pulled from",
            responses=ok_schema(sb.ORIGINS_SCHEMA, status=201))
    async def add_origin(mid: IdPath, body: sb.OriginBody):
        origin = _origin(body)
        if svc.registry.get_row(mid) is None:
            raise HTTPException(404, "no such module")
        await run_in_threadpool(origins.record, svc.db, mid, origin)
        return OrjsonResponse({"module": mid, "origins": origins.origins_of(svc.db, [mid]).get(mid, [])},
                              status_code=201)

    @r.get("/modules/{mid:int}/origins", dependencies=read, operation_id="get_module_origins",
           summary="The images a module was pulled from (reference, digests, variant)",
           responses=ok_schema(sb.ORIGINS_SCHEMA))
    def get_origins(mid: IdPath):
        if svc.registry.get_row(mid) is None:
            raise HTTPException(404, "no such module")
        return {"module": mid, "origins": origins.origins_of(svc.db, [mid]).get(mid, [])}

    return r
