"""A source map uploaded for a module in the server (issue 13): an AssemblyScript module
whose ``.wasm.map`` is not beside it resolves function-only, the map arrives through
``POST /api/v1/modules/{id}/source-map``, the plugin's crashes are re-symbolized to
``plugin.ts`` lines, the dashboard gets the TypeScript source context from the map's
``sourcesContent``; bad maps are refused whole with the documented error shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from wasmprof.config import SCOPES, ServerConfig, resolve_store
from wasmprof.server.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from test_sourcemap import AS_SRC, _line, _v8_frames, _with_url, as_module  # noqa: E402,F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cfg = ServerConfig(store=resolve_store(tmp_path_factory.mktemp("srv-maps")),
                       anonymous_scopes=frozenset(SCOPES), background=False, log_json=False)
    with TestClient(create_app(cfg)) as c:
        yield c


def test_uploaded_map_resolves_the_plugins_crashes(client, as_module):
    wasm, map_path = as_module
    live = _v8_frames(wasm)
    r = client.post("/api/v1/modules", params={"plugin": "ts-filter", "version": "1"},
                    files={"file": ("plugin.wasm", wasm.read_bytes())})
    assert r.status_code in (200, 201), r.text
    mod = r.json()
    assert mod["symbols"]["source_map"] == "missing"
    assert any("source-map" in h for h in mod["hints"])
    assert client.put("/api/v1/plugins/ts-filter/runtime",
                      json={"runtime": "wamr-aot"}).status_code == 200
    dump = "\n".join(["", *[f"#{i:02d}: 0x{off:04x} - {name}" for i, (off, name)
                            in enumerate(live)], "", "Exception: unreachable", ""])
    r = client.post("/api/v1/logs", params={"plugin": "ts-filter", "version": "1"},
                    content=dump.encode())
    assert r.status_code == 200 and r.json()["crashes"] == 1, r.text
    eid = r.json()["events"][0]["id"]
    before = client.get(f"/api/v1/crash-events/{eid}").json()["frames"]
    assert before[0]["status"] == "function-only" and "source map" in before[0]["reason"]

    r = client.post(f"/api/v1/modules/{mod['id']}/source-map",
                    files={"file": ("plugin.wasm.map", map_path.read_bytes())})
    assert r.status_code == 201, r.text
    assert r.json()["mappings"] > 500
    assert client.get(f"/api/v1/modules/{mod['id']}/source-map").json()["sha256"] == \
        r.json()["sha256"]
    assert client.get(f"/api/v1/modules/{mod['id']}").json()["symbols"]["source_map"] == \
        "uploaded"
    after = client.get(f"/api/v1/crash-events/{eid}").json()["frames"]
    assert [(f["file"], f["line"], f["status"]) for f in after] == [
        ("plugin.ts", _line("AS_TRAP"), "exact"), ("plugin.ts", _line("AS_CALL_CHECK"), "exact"),
        ("plugin.ts", _line("AS_CALL_SCORE"), "exact")]

    # the dashboard's source context for .ts comes from the map's sourcesContent
    avail = client.get("/api/v1/web/sources", params={"file": ["plugin.ts"],
                                                      "plugin": "ts-filter"}).json()
    assert avail["available"] == {"plugin.ts": "plugin.ts"}
    body = client.get("/api/v1/web/source", params={"file": "plugin.ts",
                                                    "line": _line("AS_TRAP"), "context": 1,
                                                    "plugin": "ts-filter"}).json()
    assert body["origin"] == "embedded"
    assert body["lines"][1] == AS_SRC.splitlines()[_line("AS_TRAP") - 1]


def _vlq(n: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    v, out = n << 1, ""
    while True:
        d, v = v & 31, v >> 5
        out += digits[d | (32 if v else 0)]
        if not v:
            return out


def test_bad_maps_are_refused_whole(client, as_module):
    wasm, map_path = as_module
    other = _with_url(wasm.read_bytes(), "elsewhere.wasm.map")        # another module
    mid = client.post("/api/v1/modules", files={"file": ("p.wasm", other)}).json()["id"]
    bad = client.post(f"/api/v1/modules/{mid}/source-map",
                      content=b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAA,A!"}',
                      headers={"content-type": "application/json"})
    assert bad.status_code in (400, 422) and "bad character" in bad.json()["error"]
    assert bad.json()["offset"] == 6
    doc = json.loads(map_path.read_text())
    doc["mappings"] += "," + _vlq(10_000_000)       # a mapping far past the module's end
    far = client.post(f"/api/v1/modules/{mid}/source-map", content=json.dumps(doc).encode())
    assert far.status_code in (400, 422) and "does not describe" in far.json()["error"]
    assert client.get(f"/api/v1/modules/{mid}/source-map").status_code == 404
    assert client.post("/api/v1/modules/999999/source-map",
                       content=map_path.read_bytes()).status_code == 404
    assert client.post("/api/v1/modules/0/source-map", content=b"{}").status_code == 422
    assert client.post(f"/api/v1/modules/{mid}/source-map", content=b"").status_code in (400,
                                                                                          422)
