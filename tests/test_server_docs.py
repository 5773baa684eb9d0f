"""The API docs work with no external network: ``/docs`` (Swagger UI) loads its scripts and
styles from the server itself (the fastapi-offline package's files; ReDoc is off: its
bundle fetches a logo from a CDN, which the browser test caught), and
the OpenAPI document describes the v1 routes (summaries, error bodies, request bodies).
Checked over HTTP against a real server and in a real browser that records every request
leaving the server's origin."""

from __future__ import annotations

import re

import httpx
import pytest

from browser import browser, open_page, settle, start_server  # noqa: F401

pytestmark = pytest.mark.slow

ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
V1 = ["/api/v1/modules", "/api/v1/modules/{mid}", "/api/v1/logs", "/api/v1/samples",
      "/api/v1/profiles", "/api/v1/profiles/diff", "/api/v1/symbolize", "/api/v1/crash-groups",
      "/api/v1/crash-groups/{gid}", "/api/v1/crash-groups/{gid}/resolve",
      "/api/v1/crash-events/{eid}", "/api/v1/webhooks", "/api/v1/webhooks/deliveries"]
WEB_HELPER_ROUTES = ("/api/v1/web/", "/api/v1/sources")      # documented by the dashboard code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("docs"), anonymous="read")
    yield s
    s.stop()


def test_docs_page_references_only_this_server(server):
    assert httpx.get(server.url + "/redoc", timeout=30).status_code == 404
    r = httpx.get(server.url + "/docs", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    urls = ATTR.findall(html)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for u in urls:
        got = httpx.get(server.url + u, timeout=30)
        assert got.status_code == 200, u
        if u.endswith(".js"):
            assert "javascript" in got.headers["content-type"] and len(got.content) > 100_000
        if u.endswith(".css"):
            assert got.headers["content-type"].startswith("text/css")


def test_openapi_describes_the_v1_routes(server):
    spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
    assert set(V1) <= set(spec["paths"]), sorted(set(V1) - set(spec["paths"]))
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/") or path.startswith(WEB_HELPER_ROUTES):
            continue
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            # an explicit summary, not FastAPI's title-cased function name
            assert op.get("summary") and " " in op["summary"].strip(), where
            err = op["responses"]["400"]["content"]["application/json"]["schema"]
            assert err["$ref"].endswith("/ErrorBody"), where
            assert {"401", "403", "429"} <= set(op["responses"]), where
    schema = spec["components"]["schemas"]["ErrorBody"]
    assert {"error", "source", "offset", "expected", "found"} <= set(schema["properties"])
    for path in ("/api/v1/logs", "/api/v1/profiles", "/api/v1/modules", "/api/v1/samples",
                 "/api/v1/symbolize", "/api/v1/webhooks"):
        assert spec["paths"][path]["post"]["requestBody"]["content"], path
    assert "multipart/form-data" in spec["paths"]["/api/v1/logs"]["post"]["requestBody"]["content"]


def test_docs_render_in_a_browser_without_leaving_the_server(browser, server):  # noqa: F811
    pg, watch = open_page(browser, server, "/docs")
    try:
        pg.wait_for_selector("#swagger-ui .opblock", timeout=60_000)
        settle(pg, watch)
        text = pg.inner_text("body")
        assert "/api/v1/logs" in text or "Post a gateway log" in text
        assert not watch.external_requests, watch.external_requests
        assert not watch.page_errors and not watch.failed_requests, watch.problems()
    finally:
        pg.context.close()
