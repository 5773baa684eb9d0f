"""Schemathesis hooks of ``tests/test_api_schemathesis.py`` (loaded through
``SCHEMATHESIS_HOOKS``), and the per-operation tables the test builds its config from.

- ``before_call``: generated scrape-target and plugin-source URLs that the server would
  contact (health scrapes, module pulls run in the background) are pointed at a closed
  loopback port, keeping scheme, path, tag and query; nothing generated reaches the network.
  Only schema-valid (positive) cases are rewritten, and the rewritten URL is valid too.
- ``refusal_names_no_sent_parameter`` (a check): a 400 answered to a schema-valid request,
  on the operations allowed to answer one (:data:`CONTENT_PARSED`, :data:`CROSS_FIELD`),
  must not name a parameter or body field the request sent, except the cross-field ones
  listed and, on content-parsed operations, file parts (their content is what is refused):
  a refusal naming what the schema allowed means the schema is wrong.
"""

from __future__ import annotations

import re

import schemathesis

# Operations whose body is file content parsed by wasmprof (the schema can only say "binary",
# "text" or "object"): a 400 naming the content (body, line, offset) answers a valid request.
CONTENT_PARSED = ["/api/v1/modules", "/api/v1/logs", "/api/v1/profiles", "/api/v1/samples",
                  "/ingest", "/api/v1/modules/{mid}/source-map"]

# The multipart parts of those operations the OpenAPI declares `format: binary`.
FILE_PARTS = {"file", "perf_map", "profile"}

# Operations with a rule no schema can say because it ties values together, and the
# parameter its 400 names: the time range of health series (`from` before `to`, at most 90
# days), the timeline's step against the stored data's span (at most 2000 points).
CROSS_FIELD = {"/api/v1/health/series": {"from"}, "/api/v1/profiles/timeline": {"step"}}

DEAD = "127.0.0.1:9"             # discard port on loopback: connections are refused at once
_HTTP_HOST = re.compile(r"^(https?://)[^/?#]*")
URL_BODIES = {("POST", "/api/v1/health/targets"), ("PATCH", "/api/v1/health/targets/{target_id}"),
              ("PUT", "/api/v1/plugins/{name}/source")}


def dead_http(url: str) -> str:
    return _HTTP_HOST.sub(lambda m: m.group(1) + DEAD, url, count=1)


def dead_oci(url: str) -> str:
    """``[oci://]NAME…`` with its registry replaced (or, for a Docker Hub name, given)."""
    rest = re.sub(r"^[oO][cC][iI]://", "", url)
    first, sep, tail = rest.partition("/")
    registry = sep and ("." in first or ":" in first or first == "localhost"
                        or first.startswith("["))
    if registry:
        rest = tail
    elif not sep:                          # one component: Docker Hub's library/NAME
        rest = "library/" + rest
    return f"oci://{DEAD}/{rest}"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if (case.method.upper(), case.operation.path) not in URL_BODIES:
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        url = body["url"]
        body["url"] = dead_http(url) if url.lower().startswith("http") else dead_oci(url)


def _sent(case) -> set[str]:
    names = set(case.query or {}) | set(case.path_parameters or {})
    names |= {k.lower() for k in (case.headers or {})}
    if isinstance(case.body, dict):
        # a file part of a content-parsed body is content: a 400 naming it refuses what the
        # file holds, which its schema ("binary") cannot describe
        content = case.operation.path in CONTENT_PARSED
        names |= {k for k in case.body if not (content and k in FILE_PARTS)}
    return names


@schemathesis.check
def refusal_names_no_sent_parameter(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        source = response.json().get("source")
    except Exception:  # noqa: BLE001 - not JSON: the schema checks say so
        return None
    if not isinstance(source, str):
        return None
    name = source.split(".", 1)[1] if source.split(".", 1)[0] in (
        "query", "path", "header", "body") and "." in source else source
    allowed = CROSS_FIELD.get(case.operation.path, set())
    if name in _sent(case) and name not in allowed:
        raise AssertionError(f"a schema-valid request was refused (400) naming {source!r}, a "
                             f"parameter it sent: the schema allows what the server refuses")
    return None
