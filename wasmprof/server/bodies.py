"""Request body models and documented response shapes of the API routes.

Bodies are :class:`wasmprof.server.contract.Body` models (unknown fields refused), so the
OpenAPI schema is exactly what the server accepts. Response schemas here are deliberately
partial (``additionalProperties`` allowed): they pin the fields clients and OpenAPI links
rely on (ids, statuses), and schemathesis checks every answer against them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, Strict

from wasmprof.alerts.events import SUBSCRIBABLE
from wasmprof.model import AddressSpace
from wasmprof.server.contract import Body



def _integral(v: Any) -> Any:
    """JSON Schema's ``integer`` includes ``5.0``; a bool or a string is not one."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


# JSON bodies are validated as JSON Schema reads their OpenAPI types: no 0 for false, no
# "5" for 5 (pydantic's lax mode would take both), but 5.0 is the integer 5.
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]


def json_int(ge: int, le: int) -> Any:
    """An integer in ``ge..le`` as JSON Schema reads one (the validator order matters:
    bounds must come before the BeforeValidator to reach the OpenAPI schema)."""
    return Annotated[int, Strict(), Field(ge=ge, le=le), BeforeValidator(_integral)]


def json_float(ge: float, le: float) -> Any:
    """A finite number in ``ge..le`` (an integer is a number too; a bool or string is not)."""
    return Annotated[float, Strict(), Field(ge=ge, le=le, allow_inf_nan=False)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omittable(**kw: Any) -> Any:
    """``Field`` of a member that may be left out but not sent as ``null``: the model holds
    ``None`` when it is absent (read it with ``model_dump(exclude_unset=True)``) and the
    OpenAPI schema shows no ``null`` default."""
    return Field(None, json_schema_extra=_no_default, **kw)


U32 = json_int(0, 2**32 - 1)
#: Largest integer a JSON body may carry where a bound matters: 2^53-1, the largest every
#: JSON parser (and JSON Schema validator) reads exactly; module offsets and ids are far
#: smaller. Path and query ids keep the full 1..2^63-1 (:data:`contract.MAX_ID`).
MAX_JSON_INT = 2**53 - 1
#: An address: an integer 0..2^53-1, or a decimal or 0x-hex string of one.
Address = (json_int(0, MAX_JSON_INT)
           | Annotated[str, Strict(), Field(pattern=r"^(0[xX][0-9a-fA-F]{1,13}|[0-9]{1,15})$")])
#: A module reference: its id, or its sha256 (64 hex digits); a decimal string is an id.
ModuleRef = (json_int(1, MAX_JSON_INT)
             | Annotated[str, Strict(), Field(pattern=r"^([0-9]{1,19}|[0-9a-fA-F]{64})$")])

RuntimeName = Literal["wamr-interp", "wamr-fast-interp", "wamr-aot", "v8", "wasmtime"]
GroupFilter = Literal["new", "ongoing", "regressed", "resolved", "ignored", "unresolved"]
GROUP_STATUSES = ["new", "ongoing", "regressed", "resolved", "ignored"]


class RuntimeBody(Body):
    """How WAMR dumps of a plugin are read; null: decide from the uploaded modules."""

    runtime: RuntimeName | None


class ResolveBody(Body):
    resolved: Bool = True


class IgnoreBody(Body):
    ignored: Bool = True


class AddressRef(Body):
    """One frame given by parts: an offset, and/or the function's Wasm or AOT index, and
    the name the runtime printed."""

    offset: Address | None = None
    func_index: U32 | None = None
    aot_index: U32 | None = None
    name: Text | None = Field(None, max_length=1000)


class SymbolizeJob(Body):
    module: ModuleRef
    space: AddressSpace = AddressSpace.FILE
    addresses: list[Address | AddressRef] = Field(default_factory=list, max_length=10000)


class SymbolizeBatch(Body):
    jobs: list[SymbolizeJob] = Field(min_length=1, max_length=10)


#: Subscribable events and their wildcards, from the one list in :mod:`wasmprof.alerts.events`.
_EVENT_NAMES = tuple(e.value for e in SUBSCRIBABLE) + tuple(
    sorted({e.value.split(".")[0] + ".*" for e in SUBSCRIBABLE if e.value.startswith(("crash.", "plugin."))}))
EventName = Literal[_EVENT_NAMES]  # type: ignore[valid-type]
#: http(s)://host[:port][/path][?query]: what :func:`wasmprof.alerts.webhooks.validate_url`
#: accepts, spelled as a pattern (port 1-65535, no spaces or control characters).
URL_PATTERN = (r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,250}[A-Za-z0-9])?"
               r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
               r"|6553[0-5]))?([/?][^\x00-\x20\x7f]*)?$")
_EVENT = "(" + "|".join(re.escape(n) for n in _EVENT_NAMES) + ")"
#: The events as one comma-separated string (``"crash.*, profile.regression"``).
EventList = Annotated[str, Strict(), Field(max_length=400,
                                           pattern=rf"^ *{_EVENT}( *, *{_EVENT})* *$")]
Seconds = Annotated[float, Strict(), Field(gt=0, le=30 * 86400, allow_inf_nan=False)]
Count = json_int(1, 2**31 - 1)


class WebhookBody(Body):
    """A webhook to add (see ``wasmprof webhook add --help`` for each field)."""

    url: Text = Field(max_length=2048, pattern=URL_PATTERN)
    events: (Annotated[list[EventName], Field(min_length=1, max_length=8)]
             | EventList)
    secret: Text | None = Field(None, min_length=8, max_length=512)
    format: Literal["json", "slack"] = "json"
    plugin: Text | None = Field(None, min_length=1, max_length=256)
    description: Text | None = Field(None, max_length=1000)
    max_attempts: json_int(1, 100) | None = None
    timeout: Annotated[float, Strict(), Field(gt=0, le=600, allow_inf_nan=False)] | None = None
    rate_limit: Count = 20
    rate_window: Seconds = 60.0
    spike_threshold: Count = 50
    spike_window: Seconds = 300.0
    regression_points: Annotated[float, Strict()] = Field(5.0, gt=0, lt=100,
                                                          allow_inf_nan=False)
    baseline: Text | None = Field(None, max_length=1000)


class EnabledBody(Body):
    enabled: Bool


# -- documented responses ------------------------------------------------------------------

def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


INT = {"type": "integer"}
STR = {"type": "string"}
MODULE_SCHEMA = _obj(["id", "sha256", "kind"], id=INT, sha256=STR, kind=STR,
                     symbols={"type": "object"})
PLUGIN_LIST_SCHEMA = _obj(["plugins"], plugins={"type": "array",
                                               "items": _obj(["name"], name=STR)})
GROUP_SCHEMA = _obj(["id", "status", "count"], id=INT, count=INT,
                    status={"type": "string", "enum": GROUP_STATUSES})
GROUP_LIST_SCHEMA = _obj(["total", "groups"], total=INT,
                         groups={"type": "array", "items": GROUP_SCHEMA})
EVENT_SCHEMA = _obj(["id", "group_id", "raw"], id=INT, group_id={"type": ["integer", "null"]},
                    raw={"type": "array"})
LOG_RESULT_SCHEMA = _obj(["ingest_id", "crashes", "events", "groups"], ingest_id=INT,
                         crashes=INT, events={"type": "array", "items": _obj(["id"], id=INT)},
                         groups={"type": "array", "items": _obj(["id"], id=INT)})
WEBHOOK_SCHEMA = _obj(["id", "url", "events", "enabled"], id=INT, url=STR,
                      events={"type": "array", "items": STR}, enabled={"type": "boolean"})
DELIVERY_QUEUED_SCHEMA = _obj(["delivery_id", "status"], delivery_id=STR, status=STR)


def _links(target_ops: dict[str, str], param: str, expr: str) -> dict[str, Any]:
    return {name: {"operationId": op, "parameters": {param: expr}}
            for name, op in target_ops.items()}


#: Operations that take a module id (``mid``), reached from an upload or the module list.
MODULE_OPS = {"GetModule": "get_module", "GetOrigins": "get_module_origins",
              "AddOrigin": "add_module_origin", "GetSourceMap": "get_source_map",
              "UploadSourceMap": "upload_source_map"}
MODULE_LINKS = _links(MODULE_OPS, "mid", "$response.body#/id")
GROUP_OPS = {"GetGroup": "get_crash_group", "GetGroupEvents": "list_crash_group_events",
             "ResolveGroup": "resolve_crash_group", "IgnoreGroup": "ignore_crash_group"}
GROUP_LIST_LINKS = _links(GROUP_OPS, "gid", "$response.body#/groups/0/id")
LOG_LINKS = {**_links(GROUP_OPS, "gid", "$response.body#/groups/0/id"),
             **_links({"GetEvent": "get_crash_event"}, "eid", "$response.body#/events/0/id")}
MODULE_LIST_LINKS = _links({f"{k}OfListed": v for k, v in MODULE_OPS.items()}, "mid",
                           "$response.body#/modules/0/id")
WEBHOOK_OPS = {"GetWebhook": "get_webhook", "PatchWebhook": "patch_webhook",
               "DeleteWebhook": "delete_webhook", "TestWebhook": "test_webhook"}
WEBHOOK_LINKS = _links(WEBHOOK_OPS, "webhook_id", "$response.body#/id")
DELIVERY_LINKS = _links({"GetDelivery": "get_delivery", "Redeliver": "redeliver"},
                        "delivery_id", "$response.body#/delivery_id")


def ok_schema(schema: dict[str, Any], links: dict[str, Any] | None = None,
              status: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses=`` documenting the JSON answer's (partial) schema and OpenAPI links."""
    out: dict[str, Any] = {"description": "Successful Response",
                           "content": {"application/json": {"schema": schema}}}
    if links:
        out["links"] = links
    return {status: out}


def created_links(what: str, links: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """201 (created) and 200 (already known) answers carrying the same object."""
    return {**ok_schema(MODULE_SCHEMA if what == "module" else WEBHOOK_SCHEMA, links, 201),
            **ok_schema(MODULE_SCHEMA if what == "module" else WEBHOOK_SCHEMA, links, 200)}

