"""The dashboard's files and how they are served (no browser needed).

- mount_web serves the shell, scripts, styles and speedscope with a strict CSP and adds no
  route outside its own paths;
- no asset is loaded from another origin (the page works offline);
- the escaping rule is kept mechanically: no HTML-string sinks anywhere in web/js.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from wasmprof.server.web import WEB_DIR, mount_web

JS_FILES = sorted((WEB_DIR / "js").rglob("*.js"))
OWN_FILES = [WEB_DIR / "index.html", WEB_DIR / "css" / "app.css", *JS_FILES]


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.get("/api/v1/ping")
    def ping() -> dict:
        return {"ok": True}

    mount_web(app)
    return TestClient(app)


def test_web_tree_is_complete():
    assert (WEB_DIR / "index.html").is_file()
    assert len(JS_FILES) >= 8
    ss = WEB_DIR / "vendor" / "speedscope"
    assert (ss / "index.html").is_file() and (ss / "LICENSE").is_file()
    html = (ss / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert (ss / ref).is_file(), f"speedscope's index.html references missing {ref}"


def test_shell_scripts_and_speedscope_are_served_with_csp(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "object-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for src in re.findall(r'src="(/[^"]+)"', r.text) + re.findall(r'href="(/[^"]+)"', r.text):
        assert client.get(src).status_code == 200, src
    js = client.get("/js/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "content-security-policy" in js.headers
    ss = client.get("/speedscope/")
    assert ss.status_code == 200 and "speedscope" in ss.text
    assert "wasm-unsafe-eval" in ss.headers["content-security-policy"]
    assert client.get("/speedscope/LICENSE").status_code == 200


def test_api_routes_are_not_shadowed(client):
    assert client.get("/api/v1/ping").json() == {"ok": True}
    assert client.get("/api/v1/nothing-here").status_code == 404
    assert client.get("/js/../../pyproject.toml").status_code == 404


def test_no_external_assets():
    """Every URL the dashboard loads is same-origin (the page works offline)."""
    for f in OWN_FILES:
        text = f.read_text()
        for m in re.finditer(r"""(?:src|href|action)\s*=\s*["'](https?:)?//""", text):
            pytest.fail(f"{f.name}: external URL at {m.start()}")
        assert not re.search(r"""url\(\s*["']?(https?:)?//""", text), f.name
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), f.name
        assert "fetch(\"http" not in text and "fetch('http" not in text, f.name
    js = (WEB_DIR / "vendor" / "speedscope").glob("*.js")
    for f in js:
        text = f.read_text(errors="replace")
        # speedscope mentions its home page in text; it must never load from a CDN
        assert "fonts.googleapis" not in text and "unpkg.com" not in text and "cdn." not in text


SINKS = re.compile(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write\(|"
                   r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]|createContextualFragment")


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: str(p.relative_to(WEB_DIR)))
def test_no_html_string_sinks(path: Path):
    """Data reaches the DOM only through dom.js (createElement + textContent)."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        assert not SINKS.search(line), f"{path.name}:{n}: {line.strip()}"
