"""Source context for crash frames (``wasmprof.server.routes_web``), through the real app.

- embedded: a module compiled on the fly with ``-gdwarf-5 -gembed-source`` carries its
  source in the line table; a crash in it gets source lines without any upload;
- uploaded: ``POST /api/v1/sources`` wins over embedded text and is matched by path suffix;
- the sparkline series counts a group's events.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from compile import compile_wasm
from wasmprof.binary.loader import load_module
from wasmprof.config import SCOPES, ServerConfig, resolve_store
from wasmprof.server.app import create_app
from wasmprof.server.routes_web import embedded_sources

pytestmark = pytest.mark.slow

SOURCE = """\
#include <stdlib.h>

static int checksum(const char *s, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    return sum;
}

__attribute__((noinline)) int validate(const char *s, int n) {
    int sum = checksum(s, n);
    if (sum % 7 == 3)
        __builtin_trap();
    return sum;
}

int main(int argc, char **argv) {
    return validate(argv[0], argc * 3);
}
"""


@pytest.fixture(scope="module")
def embedded_wasm():
    return compile_wasm({"app.c": SOURCE}, ["-O1", "-g", "-gdwarf-5", "-gembed-source"])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cfg = ServerConfig(store=resolve_store(tmp_path_factory.mktemp("web-sources")),
                       anonymous_scopes=frozenset(SCOPES), background=False, log_json=False)
    with TestClient(create_app(cfg)) as c:
        yield c


def _dump_for(module_path, names: list[str]) -> str:
    """A WAMR classic-interpreter dump with one frame inside each named function's body
    (the printed offset is the file offset after an instruction: body start + 3)."""
    m = load_module(str(module_path))
    by_name = {f.name: f for f in m.functions if f.name and f.body_start is not None}
    lines = [f"#{i:02d}: 0x{by_name[n].body_start + 3:04x} - {n}" for i, n in enumerate(names)]
    return "\n".join(["", *lines, "", "Exception: unreachable", ""])


def test_embedded_source_is_read_from_the_line_table(embedded_wasm):
    m = load_module(str(embedded_wasm))
    files = embedded_sources(m.wasm.dwarf_sections)
    app = [p for p in files if p.endswith("/app.c")]
    assert len(app) == 1, sorted(files)
    assert files[app[0]].decode() == SOURCE


def test_crash_frames_get_embedded_then_uploaded_source(client, embedded_wasm):
    r = client.post("/api/v1/modules", params={"plugin": "emb", "version": "1"},
                    files={"file": ("app.wasm", embedded_wasm.read_bytes())})
    assert r.status_code in (200, 201), r.text
    r = client.post("/api/v1/logs", params={"plugin": "emb", "version": "1"},
                    content=_dump_for(embedded_wasm, ["validate", "main"]).encode())
    assert r.status_code == 200 and r.json()["crashes"] == 1, r.text
    event = r.json()["events"][0]
    frames = client.get(f"/api/v1/crash-events/{event['id']}").json()["frames"]
    located = [f for f in frames if f["file"] and f["line"] and f["file"].endswith("app.c")]
    assert located, frames
    files = sorted({f["file"] for f in located})

    avail = client.get("/api/v1/web/sources", params={"file": files + ["/nowhere/x.c"],
                                                      "plugin": "emb"}).json()["available"]
    assert sorted(avail) == files
    src_lines = SOURCE.splitlines()
    for f in located:
        r = client.get("/api/v1/web/source", params={"file": f["file"], "line": f["line"],
                                                     "context": 2, "plugin": "emb"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["origin"] == "embedded" and body["line_in_file"]
        assert body["lines"][f["line"] - body["first_line"]] == src_lines[f["line"] - 1]
        assert body["first_line"] == max(1, f["line"] - 2)

    # an uploaded source wins, matched by the longest path suffix
    edited = SOURCE.replace("int sum = 0;", "int sum = 0; /* uploaded copy */")
    r = client.post("/api/v1/sources", data={"path": "checkout/src/app.c", "plugin": "emb"},
                    files={"file": ("app.c", edited.encode())})
    assert r.status_code == 200, r.text
    line = SOURCE.splitlines().index("    int sum = 0;") + 1
    body = client.get("/api/v1/web/source", params={"file": located[0]["file"], "line": line,
                                                    "context": 0, "plugin": "emb"}).json()
    assert body["origin"] == "uploaded" and body["path"] == "checkout/src/app.c"
    assert body["lines"] == ["    int sum = 0; /* uploaded copy */"]

    assert client.get("/api/v1/web/source", params={"file": "/x/none.c", "line": 1}).status_code == 404

    series = client.get("/api/v1/web/crash-timeline", params={"hours": 24, "buckets": 12}).json()
    assert sum(series["groups"][str(event["group_id"])]) == 1 and series["buckets"] == 12
