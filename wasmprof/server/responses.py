"""JSON responses serialized with orjson (``wasmprof.output.dumps``), and the error
bodies every API route may answer, documented once for OpenAPI (``ERROR_RESPONSES``)."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.responses import JSONResponse

from wasmprof.output import dumps


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return dumps(content)
        except TypeError:
            return dumps(jsonable_encoder(content))


class ErrorBody(BaseModel):
    """A :class:`~wasmprof.errors.WasmprofError` (HTTP 400): what was wrong and where."""

    error: str
    source: str | None = None
    offset: int | None = None
    expected: str | None = None
    found: str | None = None
    detail: str


class HttpErrorBody(BaseModel):
    """Authentication, scope, missing object, size cap or rate limit (401/403/404/413/429)."""

    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input: names the field, file or offset"},
    401: {"model": HttpErrorBody, "description": "No token, or an invalid or revoked one"},
    403: {"model": HttpErrorBody, "description": "The token lacks the scope this route needs"},
    404: {"model": HttpErrorBody, "description": "No such object"},
    413: {"model": HttpErrorBody, "description": "Body over this endpoint's size cap"},
    429: {"model": HttpErrorBody, "description": "Rate limit of the token exceeded"},
}


def raw_body(media: dict[str, Any], description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that a route reads from the raw request."""
    return {"requestBody": {"required": True, "description": description, "content": media}}


TEXT_BODY = {"text/plain": {"schema": {"type": "string"}}}
JSON_BODY = {"application/json": {"schema": {"type": "object"}}}
BINARY_BODY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def multipart_body(*fields: str) -> dict[str, Any]:
    """A multipart form with the given file fields (the first is required)."""
    return {"multipart/form-data": {"schema": {
        "type": "object", "required": [fields[0]],
        "properties": {f: {"type": "string", "format": "binary"} for f in fields}}}}
