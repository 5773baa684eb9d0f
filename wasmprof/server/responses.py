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
    """Every error answer: ``error`` (short) and ``detail`` (a sentence); bad input
    (:class:`~wasmprof.errors.WasmprofError`) says where (``source``, ``offset``) and what
    was ``expected`` and ``found``; a validation failure (422) lists ``errors``."""

    error: str
    source: str | None = None
    offset: int | None = None
    expected: str | None = None
    found: str | None = None
    limit: int | None = None
    errors: list[dict[str, Any]] | None = None
    detail: str


#: Kept for importers; the same shape as :class:`ErrorBody`.
HttpErrorBody = ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input: names the field, file or offset"},
    401: {"model": ErrorBody, "description": "No token, or an invalid or revoked one"},
    403: {"model": ErrorBody, "description": "The token lacks the scope this route needs"},
    404: {"model": ErrorBody, "description": "No such object (or no route)"},
    405: {"model": ErrorBody, "description": "Method not allowed here (see `Allow`)"},
    408: {"model": ErrorBody, "description": "The request's headers or body arrived too slowly"},
    413: {"model": ErrorBody, "description": "Body over this endpoint's size cap"},
    422: {"model": ErrorBody, "description": "A parameter or body field fails its schema "
                                             "(`errors` lists each)"},
    429: {"model": ErrorBody, "description": "Rate limit of the token exceeded"},
}

#: Added to routes with a wall-time budget (:mod:`wasmprof.server.guards`).
BUDGET_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Over this route's time budget (`Retry-After` "
                                             "says when to try again); narrow the request"},
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
