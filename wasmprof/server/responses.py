"""JSON responses serialized with orjson (``wasmprof.output.dumps``)."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from starlette.responses import JSONResponse

from wasmprof.output import dumps


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return dumps(content)
        except TypeError:
            return dumps(jsonable_encoder(content))
