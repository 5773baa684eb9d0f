"""Request bodies and documented answers of the plugin health routes
(:mod:`wasmprof.server.routes_health`).

The models say in the OpenAPI exactly what :mod:`wasmprof.health.targets` and
:mod:`wasmprof.health.settings` accept (those still check what they are given: the CLI and
``--scrape-envoy`` call them too); the bounds come from there, not from a copy.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from wasmprof.health import settings, targets
from wasmprof.server import bodies
from wasmprof.server.bodies import Bool, Text, json_float, json_int, omittable
from wasmprof.server.contract import PRINTABLE, Body

_H4 = "[0-9a-fA-F]{1,4}"
#: An IPv6 address in brackets (the uncompressed and ``::`` forms; no embedded IPv4, no zone).
IPV6 = (rf"\[(({_H4}:){{7}}{_H4}|({_H4}:){{1,7}}:|({_H4}:){{1,6}}:{_H4}"
        rf"|({_H4}:){{1,5}}(:{_H4}){{1,2}}|({_H4}:){{1,4}}(:{_H4}){{1,3}}"
        rf"|({_H4}:){{1,3}}(:{_H4}){{1,4}}|({_H4}:){{1,2}}(:{_H4}){{1,5}}"
        rf"|{_H4}:(:{_H4}){{1,6}}|:((:{_H4}){{1,7}}|:))\]")
_PORT = (r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
         r"|6553[0-5]))?")
#: A scrape URL, a subset of what ``targets.validate_url`` accepts: http(s), optional
#: ``user:password@``, a host name (letters, digits, ``.``, ``-``, ``_``) or bracketed IPv6,
#: a port 1-65535, a path/query without spaces or control characters, no ``#fragment``.
SCRAPE_URL_PATTERN = (r"^https?://([^\x00-\x20\x7f/?#@\[\]\\]*@)?"
                      rf"([A-Za-z0-9_]([A-Za-z0-9_.-]{{0,250}}[A-Za-z0-9_])?|({IPV6})){_PORT}"
                      r"([/?][^\x00-\x20\x7f#]*)?$")

Interval = json_float(targets.MIN_INTERVAL, targets.MAX_INTERVAL)
Timeout = json_float(0.05, 300.0)
_URL = {"max_length": 2048, "pattern": SCRAPE_URL_PATTERN,
        "description": "an Envoy admin `/stats/prometheus` URL"}
_NAME = {"min_length": 1, "max_length": 200, "pattern": PRINTABLE}


class TargetBody(Body):
    """A scrape target to add (the same URL again updates its other fields). ``null`` for
    interval, name or timeout means the default."""

    url: Text = Field(**_URL)
    interval: Interval | None = Field(None, description="seconds between scrapes (default 30)")
    name: Text | None = Field(None, **_NAME)
    timeout: Timeout | None = Field(None, description="seconds (default: 0.8 × interval, "
                                                      "0.5 .. 10)")
    enabled: Bool = True


class TargetPatch(Body):
    """Fields of a scrape target to change (the others stay)."""

    url: Text = omittable(**_URL)
    interval: Interval | None = None
    name: Text | None = Field(None, **_NAME)
    timeout: Timeout | None = None
    enabled: Bool = omittable()


def _setting(name: str) -> tuple[Any, Any]:
    lo, hi = settings._BOUNDS[name]
    kind = json_int(int(lo), int(hi)) if name in settings._INTEGER else json_float(lo, hi)
    return kind, omittable()


#: ``PUT /api/v1/health/settings``: any of the detection settings, each within its bounds.
SettingsBody = create_model(  # type: ignore[call-overload]
    "SettingsBody", __base__=Body, __doc__="Detection settings to change (the others stay).",
    **{f: _setting(f) for f in settings.HealthSettings.__slots__})


def changes(body: Body) -> dict[str, Any]:
    """The members a client sent (what the health modules' validators take)."""
    return body.model_dump(exclude_unset=True)


# -- answers --------------------------------------------------------------------------------

_obj = bodies._obj
NUM = {"type": "number"}
TARGET_SCHEMA = _obj(["id", "url", "name", "interval", "enabled", "status"], id=bodies.INT,
                     url=bodies.STR, name=bodies.STR, interval=NUM,
                     enabled={"type": "boolean"},
                     status={"type": "string", "enum": ["ok", "warning", "failing", "stale",
                                                        "pending", "disabled"]})
TARGET_LIST_SCHEMA = _obj(["targets"], targets={"type": "array", "items": TARGET_SCHEMA})
SETTINGS_SCHEMA = _obj(list(settings.HealthSettings.__slots__),
                       **{f: NUM for f in settings.HealthSettings.__slots__})
TARGET_OPS = {"GetTarget": "get_health_target", "PatchTarget": "patch_health_target",
              "DeleteTarget": "delete_health_target", "ScrapeTarget": "scrape_health_target"}
TARGET_LINKS = bodies._links(TARGET_OPS, "target_id", "$response.body#/id")
TARGET_LIST_LINKS = bodies._links({f"{k}Listed": v for k, v in TARGET_OPS.items()},
                                  "target_id", "$response.body#/targets/0/id")
