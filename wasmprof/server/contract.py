"""The HTTP contract every route follows (see ARCHITECTURE.md, "HTTP routes").

- **Typed inputs.** Ids are integers in ``1..2^63-1`` (:data:`IdPath`, :data:`IdQuery`;
  paths use the ``{name:int}`` convertor, so a non-numeric segment is no route: 404 or 405),
  limits and offsets are bounded (:func:`limit_query`, :data:`OffsetQuery`), free text is at
  most 200 printable characters (:data:`TextQuery`). JSON bodies are pydantic models with
  ``extra="forbid"`` (:class:`Body`), so the OpenAPI schema is the validator.
- **One error shape.** Every 4xx/5xx answer is a JSON object with ``error`` (what went
  wrong, short) and ``detail`` (one sentence for humans); a :class:`WasmprofError` adds
  ``source``/``offset``/``expected``/``found``, a validation failure (422) adds ``errors``
  (pydantic's list, each with ``loc``/``msg``/``type``). :func:`install_error_handlers`
  makes FastAPI/Starlette answers (HTTPException, validation, multipart parse errors,
  405 with the full ``Allow`` list, repeated scalar query parameters, unexpected bugs)
  follow it.
- **Statuses.** ``WasmprofError`` → its ``http_status`` (400 unless a subclass says
  otherwise, e.g. :class:`wasmprof.errors.NotFoundError` → 404); ``HTTPException`` keeps its
  code; request validation → 422. The statuses a route can send are documented once in
  :data:`wasmprof.server.responses.ERROR_RESPONSES`.
"""

from __future__ import annotations

import logging
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from wasmprof.errors import WasmprofError
from wasmprof.server.responses import OrjsonResponse

log = logging.getLogger(__name__)

#: Largest id any table hands out (signed 64-bit, as SQLite and PostgreSQL ``bigint``).
MAX_ID = 2**63 - 1
#: Printable text: no C0 control characters and no DEL.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
MAX_TEXT = 200

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="an id (1..2^63-1)")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="an id (1..2^63-1)")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")]
TextQuery = Annotated[str | None, Query(max_length=MAX_TEXT, pattern=PRINTABLE,
                                        description="at most 200 printable characters")]
NamePath = Annotated[str, Path(min_length=1, max_length=MAX_TEXT, pattern=PRINTABLE,
                               description="a name of 1-200 printable characters")]


def text_query(max_length: int = MAX_TEXT, *, description: str | None = None,
               alias: str | None = None) -> Any:
    """``Query`` (for ``Annotated[str | None, text_query(n)] = None``) of free text of at
    most ``max_length`` printable characters."""
    return Query(alias=alias, max_length=max_length, pattern=PRINTABLE,
                 description=description or f"at most {max_length} printable characters")


def one_of_pattern(values: Any) -> str:
    """A regex alternation of literal ``values`` (for comma lists of enum members)."""
    return "(" + "|".join(re.escape(str(v)) for v in values) + ")"


def comma_list_pattern(values: Any) -> str:
    """``a, b,,c``: a comma-separated list of ``values`` (spaces and empty items allowed)."""
    item = one_of_pattern(values)
    return rf"^ *({item} *)?(, *({item} *)?)*$"


# -- times -----------------------------------------------------------------------------------
# What the time parsers (``profile_query.parse_time``) accept, spelled as a pattern so that
# every value the OpenAPI allows is a time: unix seconds (0 .. < 1e11) or an ISO 8601 date
# or date-time (years 1971-4999, real calendar days, a ``Z`` or ±HH:MM zone; no zone = UTC).
_YEAR = r"(197[1-9]|19[89][0-9]|[2-4][0-9]{3})"
_LEAP = r"(19(7[26]|8[048]|9[26])|[2-4][0-9](0[48]|[2468][048]|[13579][26])|(2[048]|3[26]|4[048])00)"
_MONTH_DAY = (r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
              r"|02-(0[1-9]|1[0-9]|2[0-8]))")
_TIME = (r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
         r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?")
TIME_PATTERN = (rf"^([0-9]{{1,11}}(\.[0-9]{{1,9}})?|({_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29){_TIME})$")
TimeQuery = Annotated[str | None, Query(max_length=40, pattern=TIME_PATTERN,
                                        description="unix seconds or ISO 8601 (UTC when it "
                                                    "names no zone)")]


def time_query(alias: str, description: str | None = None) -> Any:
    """``Query`` (for ``Annotated``) of a time under another name (``from``, ``before.from``)."""
    return Query(alias=alias, max_length=40, pattern=TIME_PATTERN,
                 description=description or "unix seconds or ISO 8601 (UTC when it names "
                                            "no zone)")


# -- labels ----------------------------------------------------------------------------------
# ``labels=k:v,k2=v2`` as ``profile_query.parse_labels`` reads it (at most 64 pairs; names and
# values of at most 200 printable characters; a pair with ``=`` has no ``:`` in it).
_LABEL_KEY = r"[^,:=\x00-\x1f\x7f]{1,200}"
_LABEL_PAIR = (rf"( *{_LABEL_KEY}(:[^,\x00-\x1f\x7f]{{0,200}}|=[^,:\x00-\x1f\x7f]{{0,200}}) *| *)")
LABELS_PATTERN = rf"^{_LABEL_PAIR}(,{_LABEL_PAIR}){{0,63}}$"


def python_pattern(pattern: str) -> Any:
    """A validator matching text against ``pattern`` with Python's ``re``: for patterns with
    counted repetitions of Unicode classes that pydantic's Rust engine refuses to compile
    (its size limit). Declare the pattern in the schema with ``json_schema_extra``."""
    rx = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, str) and not rx.match(value):
            raise ValueError(f"does not match the pattern {pattern[:60]}…")
        return value

    return AfterValidator(check)


def labels_query(alias: str = "labels") -> Any:
    return Query(alias=alias, max_length=16000, json_schema_extra={"pattern": LABELS_PATTERN},
                 description="labels as `key:value,key2=value2` (at most 64 pairs; names "
                             "and values of at most 200 printable characters)")


LabelsQuery = Annotated[str | None, labels_query(), python_pattern(LABELS_PATTERN)]


def has_control(text: str) -> bool:
    """True when ``text`` holds a C0 control character or DEL (what :data:`PRINTABLE`
    refuses)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def limit_query(default: int, maximum: int) -> Any:
    """``Query`` for a page size in ``1..maximum``."""
    return Query(default, ge=1, le=maximum, description=f"page size (1..{maximum})")


class Body(BaseModel):
    """Base of JSON request bodies: unknown fields are refused (422), so the OpenAPI
    schema (``additionalProperties: false``) says exactly what is accepted."""

    model_config = ConfigDict(extra="forbid")


def error_body(error: str, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    """The documented error object: ``error`` + ``detail`` (+ any fields given)."""
    return {"error": error, **extra, "detail": detail if detail is not None else error}


def _validation_error(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for e in exc.errors():
        e = dict(e)
        e.pop("url", None)
        if "input" in e:                       # keep the echo short: inputs can be huge
            e["input"] = repr(e["input"])[:80]
        e.pop("ctx", None)
        errors.append(e)
    # the most telling error: the deepest location (inside the union branch that got
    # furthest), a real mismatch before a missing or extra field
    first = min(errors, key=lambda e: (-len(e.get("loc", ())),
                                       e.get("type") in ("missing", "extra_forbidden"))
                ) if errors else {"loc": (), "msg": "invalid request"}
    loc = list(first.get("loc", ()))
    # a parameter's name is kept as it is (`header.idempotency-key`); deeper parts drop the
    # union branch names pydantic puts in
    head = loc[:2] if loc[:1] in (["query"], ["path"], ["header"], ["cookie"]) else loc[:1]
    where = ".".join([*map(str, head), *(str(x) for x in loc[len(head):] if _is_field(x))])
    detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return error_body("invalid request", detail, source=where or None,
                      found=first.get("input"), errors=jsonable_encoder(errors))


def _is_field(part: Any) -> bool:
    """A field name or list index of an error location; pydantic also puts the names of
    union branches there (``constrained-int``, ``SymbolizeJob``, ``literal[…]``)."""
    return isinstance(part, int) or bool(re.fullmatch(r"[a-z_][a-z0-9_]*", str(part)))


def allowed_methods(app: FastAPI, path: str, given: str = "") -> list[str]:
    """Every method the OpenAPI document lists for a template matching ``path``, plus the
    ones Starlette named (``given``, an ``Allow`` value): for ``Allow`` on 405, which
    Starlette fills from the first route that matched the path only."""
    table = getattr(app.state, "_allow_table", None)
    if table is None:
        table = []
        for template, ops in app.openapi().get("paths", {}).items():
            ints = {p["name"] for op in ops.values() for p in op.get("parameters", [])
                    if p.get("in") == "path" and p.get("schema", {}).get("type") == "integer"}
            rx = re.sub(r"\\{([^/]+?)\\}",
                        lambda m: "[0-9]+" if m.group(1) in ints else "[^/]+",
                        re.escape(template))
            table.append((re.compile("^" + rx + "$"), {m.upper() for m in ops}))
        app.state._allow_table = table
    methods = {m.strip().upper() for m in given.split(",") if m.strip()}
    for rx, ops in table:
        if rx.match(path):
            methods |= ops
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def repeated_scalar_params(request: Request) -> None:
    """App-wide dependency: a declared single-valued query parameter given twice is a 422
    (``?limit=1&limit=2`` would otherwise silently keep one)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    params = request.query_params
    for field in _query_fields(dependant):
        name = field.alias
        if len(params.getlist(name)) > 1 and not _is_sequence(field):
            raise RequestValidationError([{
                "type": "repeated", "loc": ("query", name),
                "msg": "given more than once; this parameter takes one value",
                "input": params.getlist(name)[:3]}])


def _query_fields(dependant: Any) -> list[Any]:
    out = list(dependant.query_params)
    for sub in dependant.dependencies:
        out += _query_fields(sub)
    return out


def _is_sequence(field: Any) -> bool:
    """Whether a FastAPI parameter field takes several values (``list[str]`` etc.)."""
    return _sequence_type(getattr(getattr(field, "field_info", None), "annotation", None))


def _sequence_type(t: Any) -> bool:
    origin = get_origin(t)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (Union, types.UnionType, Annotated):
        return any(_sequence_type(a) for a in get_args(t)[: None if origin is not Annotated else 1])
    return t in (list, tuple, set, frozenset)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer follow the documented shape (module docstring)."""

    @app.exception_handler(WasmprofError)
    async def _wasmprof_error(request: Request, exc: WasmprofError) -> OrjsonResponse:
        return OrjsonResponse(exc.to_dict(), status_code=getattr(exc, "http_status", 400))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> OrjsonResponse:
        body = _validation_error(exc)
        bad = [e for e in body["errors"] if e.get("type") == "json_invalid"]
        if bad:                                                  # not JSON at all
            loc = bad[0].get("loc") or ()
            pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            body.update(error="body is not valid JSON", source="body", offset=pos, found=None,
                        detail="body" + (f" at offset {pos}" if pos is not None else "")
                               + ": not valid JSON")
            return OrjsonResponse(body, status_code=400)
        return OrjsonResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        headers = dict(exc.headers or {})
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        error = detail
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path,
                                                         headers.pop("Allow", "")))
            detail = f"method {request.method} is not allowed here; allowed: {headers['Allow']}"
            error = "method not allowed"
        elif exc.status_code == 404 and detail == "Not Found":
            error, detail = "not found", f"no route or object at {request.url.path}"
        elif exc.status_code == 400 and "multipart" in detail.lower():
            error, detail = "bad multipart body", f"body: {detail}"
        return OrjsonResponse(error_body(error, detail), status_code=exc.status_code,
                              headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> OrjsonResponse:
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return OrjsonResponse(error_body("internal error", "the server failed on this "
                                         "request; the error is in its log"), status_code=500,
                              headers={"X-Content-Type-Options": "nosniff"})


async def read_json_body(request: Request) -> Any:
    """The request body parsed as JSON (an empty body is ``None``); a ``UsageError`` (400,
    ``source="body"``) when it is not JSON. For routes that check their body by hand; prefer a
    :class:`Body` model declared as the endpoint's parameter."""
    import orjson

    from wasmprof.errors import UsageError
    raw = await request.body()
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as e:
        raise UsageError(f"request body is not JSON: {e}", source="body") from None
