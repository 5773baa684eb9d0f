"""``POST /api/v1/modules/{mid}/source-map`` (ingest) and ``GET`` (read): the source map of
a Wasm module without DWARF (AssemblyScript ``--sourceMap``, Emscripten ``-gsource-map``).

The map (multipart ``file`` or a raw JSON body) is validated whole before anything is
stored (:meth:`wasmprof.server.registry.ModuleRegistry.upload_source_map`): a Source Map v3
for WebAssembly whose offsets lie inside the module, else 400/422 with the documented error
shape naming the field and offset. Once stored, the module resolves through it (file, line,
column; the dashboard shows the map's ``sourcesContent`` as source context) and the crashes
of the plugins linked to the module are re-symbolized.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.server.bodies import INT, STR, _obj, ok_schema
from wasmprof.server.contract import IdPath, TextQuery
from wasmprof.server.responses import (ERROR_RESPONSES, JSON_BODY, OrjsonResponse,
                                       multipart_body, raw_body)

MAX_MAP_UPLOAD = 64 << 20
MAP_SCHEMA = _obj(["module_id", "sha256", "size"], module_id=INT, sha256=STR, size=INT)


def build_router(svc: Any, require: Callable[[str], Any]) -> APIRouter:
    r = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES,
                  default_response_class=OrjsonResponse)

    @r.post("/modules/{mid:int}/source-map", status_code=201, operation_id="upload_source_map",
            summary="Upload the source map of a Wasm module (multipart 'file' or raw JSON)",
            description="For modules without DWARF (AssemblyScript `--sourceMap`, Emscripten "
                        "`-gsource-map`): the `.wasm.map` is validated (Source Map v3, one "
                        "line of mappings whose columns are offsets inside the module), "
                        "stored, used for every address space from then on; the crashes of "
                        "the module's plugins are re-symbolized. Replaces an earlier map.",
            responses=ok_schema(MAP_SCHEMA, status=201),
            openapi_extra=raw_body({**multipart_body("file"), **JSON_BODY}, "the source map"),
            dependencies=[Depends(require("ingest"))])
    async def upload_source_map(request: Request, mid: IdPath,
                                filename: TextQuery = None) -> dict[str, Any]:
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_MAP_UPLOAD:
            raise HTTPException(413, f"source map larger than {MAX_MAP_UPLOAD} bytes")
        filename = filename or None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=8)
            f = form.get("file")
            if not hasattr(f, "read"):
                raise UsageError("multipart upload without a 'file' field", source="body",
                                 expected="file=@plugin.wasm.map")
            data = await f.read()
            filename = filename or f.filename
        else:
            data = await request.body()
        if not data:
            raise UsageError("empty source map upload", source="body",
                             expected="a source map (JSON)")
        if len(data) > MAX_MAP_UPLOAD:
            raise HTTPException(413, f"source map larger than {MAX_MAP_UPLOAD} bytes")
        try:
            got = await run_in_threadpool(svc.registry.upload_source_map, mid, data, filename)
        except KeyError:
            raise HTTPException(404, "no such module") from None
        for link in {lk["plugin"] for lk in svc.registry.links(mid)}:
            await run_in_threadpool(svc.crashes.resymbolize, plugin=link)
        return got

    @r.get("/modules/{mid:int}/source-map", summary="The uploaded source map's record",
           description="404 when the module has no uploaded map.",
           operation_id="get_source_map", responses=ok_schema(MAP_SCHEMA),
           dependencies=[Depends(require("read"))])
    def get_source_map(mid: IdPath) -> dict[str, Any]:
        row = svc.registry.source_map_row(mid)
        if row is None:
            raise HTTPException(404, "no source map uploaded for this module")
        return row

    return r
