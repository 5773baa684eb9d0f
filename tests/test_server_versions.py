"""Module <-> version correctness of the service, over real HTTP against a real
``wasmprof serve`` (SQLite and PostgreSQL): a module linked to several versions counts for
each; a crash of a version without modules falls back to another version's modules *and
says so*; the fallback prefers the build whose functions agree with the names the crash
printed; a module for the exact version arriving later re-symbolizes the crash against it.
Each test uses its own plugin name, so they share one server per backend."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from browser import browser, open_page, settle, start_server  # noqa: F401  (fixture)
from pg import wait_until
from server_proc import ServerProcess, wasmprof_cli

pytestmark = pytest.mark.slow

OOB_LOG = "crash_oob.O2.load.classic.log"
TRAP_LOG = "crash_trap.O2.trap.classic.log"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory):
    data = tmp_path_factory.mktemp(f"versions-{request.param}")
    db = None
    if request.param == "postgres":
        db = request.getfixturevalue("pg_cluster").create_database("versions")
    store = ["--data", str(data)] + (["--db", db] if db else [])
    out = wasmprof_cli("token", "create", "t-all", "--scopes", "ingest,read,admin", "--json", *store)
    server = ServerProcess(data, db, extra_args=["--rate-limit", "0", "--quiet"]).start()
    server.token = json.loads(out.stdout)["token"]
    yield server
    server.stop()


def _upload(srv, path: Path, plugin: str, version: str) -> dict:
    with srv.client(srv.token) as c:
        r = c.post("/api/v1/modules", params={"plugin": plugin, "version": version},
                   files={"file": (path.name, path.read_bytes())})
    assert r.status_code in (200, 201), r.text
    m = r.json()
    wait_until(lambda: _get(srv, f"/api/v1/modules/{m['id']}")["symbols"]["index"] == "ready",
               timeout=60)
    return m


def _get(srv, url: str, **params) -> dict:
    with srv.client(srv.token) as c:
        r = c.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _post_log(srv, data_dir: Path, log: str, plugin: str, version: str | None) -> dict:
    """Post one fixture log holding one crash; returns its stored event."""
    params = {"plugin": plugin, **({"version": version} if version else {})}
    with srv.client(srv.token) as c:
        r = c.post("/api/v1/logs", params=params, content=(data_dir / "dumps" / log).read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["crashes"] == 1
    return _get(srv, f"/api/v1/crash-events/{r.json()['events'][0]['id']}")


def _outer_functions(event: dict) -> dict[int, str]:
    return {f["input_index"]: f["function"] for f in event["frames"] if not f["inlined"]}


def _expected_names(data_dir: Path, log: str) -> dict[int, str]:
    exp = json.loads((data_dir / "expected" / "dumps" / f"{log}.expected.json").read_text())
    return {f["frame"]: f["expected_function_name"] for f in exp["frames"]
            if f.get("expected_function_name") and f["frame"] < 5}


def _version_notes(event: dict) -> list[str]:
    return [n for n in event["notes"] if n.startswith("version: ")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_bytes_for_two_versions_count_for_both(srv, data_dir):
    wasm = data_dir / "wasm" / "crash_oob.O2.wasm"
    first = _upload(srv, wasm, "v-same", "1.0")
    again = _upload(srv, wasm, "v-same", "2.0")
    assert again["created"] is False and again["id"] == first["id"]
    listed = _get(srv, "/api/v1/modules", plugin="v-same")["modules"]
    assert [m["id"] for m in listed] == [first["id"]] and listed[0]["versions"] == ["1.0", "2.0"]
    assert {(p["plugin"], p["version"]) for p in listed[0]["plugins"]} == \
        {("v-same", "1.0"), ("v-same", "2.0")}
    plugin = next(p for p in _get(srv, "/api/v1/plugins")["plugins"] if p["name"] == "v-same")
    assert plugin["versions"] == ["1.0", "2.0"]
    for version in ("2.0", "1.0"):               # each version symbolizes as an exact match
        ev = _post_log(srv, data_dir, OOB_LOG, "v-same", version)
        sym = ev["symbolization"]
        assert sym["match"] == "exact" and sym["version_used"] == version, sym
        assert sym["module"]["id"] == first["id"]
        assert sorted(sym["module"]["versions"]) == ["1.0", "2.0"]
        assert _version_notes(ev) == [] and sym["note"] is None
        assert _outer_functions(ev).items() >= _expected_names(data_dir, OOB_LOG).items()


def test_fallback_is_explicit_then_exact_module_takes_over(srv, data_dir):
    o2 = data_dir / "wasm" / "crash_oob.O2.wasm"
    _upload(srv, o2, "v-fb", "2.0")
    ev = _post_log(srv, data_dir, OOB_LOG, "v-fb", "2.1")
    want = _expected_names(data_dir, OOB_LOG)
    assert _outer_functions(ev).items() >= want.items()        # the fallback was right here
    sym = ev["symbolization"]
    assert sym["match"] == "fallback" and sym["crash_version"] == "2.1"
    assert sym["version_used"] == "2.0" and sym["module"]["sha256"] == _sha(o2)
    notes = _version_notes(ev)
    assert len(notes) == 1 and notes[0].startswith(
        "version: no module uploaded for version 2.1; used version 2.0 (crash_oob.O2.wasm)"), notes
    assert ev["grouping"]["note"].startswith("no module uploaded for version 2.1")
    group = _get(srv, f"/api/v1/crash-groups/{ev['group_id']}")
    sample = next(e for e in group["sample_events"] if e["id"] == ev["id"])
    assert sample["symbolization"]["match"] == "fallback"

    # the module built for 2.1 arrives (other bytes, same code): the event moves to it
    d4 = data_dir / "wasm" / "crash_oob.O2d4.wasm"
    m21 = _upload(srv, d4, "v-fb", "2.1")
    assert m21["created"] is True

    def resymbolized():
        e = _get(srv, f"/api/v1/crash-events/{ev['id']}")
        return e if e["symbolization"]["match"] == "exact" else None
    after = wait_until(resymbolized, timeout=60)
    assert after["symbolization"]["version_used"] == "2.1"
    assert after["symbolization"]["module"]["sha256"] == _sha(d4)
    assert after["symbolized_with"][0] == _sha(d4)
    assert _version_notes(after) == [] and after["symbolization"]["note"] is None
    assert "no module uploaded for version" not in (after["grouping"]["note"] or "")
    assert _outer_functions(after).items() >= want.items()


def test_fallback_prefers_the_build_whose_names_agree(srv, data_dir):
    oob = data_dir / "wasm" / "crash_oob.O2.wasm"
    trap = data_dir / "wasm" / "crash_trap.O2.wasm"
    _upload(srv, oob, "v-pick", "1.0")
    _upload(srv, trap, "v-pick", "2.0")                 # linked last: the most recent build
    for log, module, version in ((OOB_LOG, oob, "1.0"), (TRAP_LOG, trap, "2.0")):
        for crash_version in ("3.0", None):
            ev = _post_log(srv, data_dir, log, "v-pick", crash_version)
            sym = ev["symbolization"]
            assert sym["module"]["sha256"] == _sha(module), (log, crash_version, sym)
            assert sym["version_used"] == version
            assert sym["match"] == ("fallback" if crash_version else "unversioned")
            note = _version_notes(ev)[0]
            assert f"used version {version} ({module.name})" in note
            assert "printed frames agree" in note and "also considered" in note
            assert _outer_functions(ev).items() >= _expected_names(data_dir, log).items()

    # an exact version whose module knows none of the printed names: used, but flagged
    _upload(srv, trap, "v-pick", "4.0")
    ev = _post_log(srv, data_dir, OOB_LOG, "v-pick", "4.0")
    assert ev["symbolization"]["match"] == "exact"
    assert ev["symbolization"]["module"]["sha256"] == _sha(trap)
    (note,) = _version_notes(ev)
    assert "is the crash's version label right?" in note and "version 1.0" in note


def test_group_page_shows_the_fallback_note_escaped(browser, tmp_path, data_dir):
    """The dashboard's group page shows which version's module was used; the module's file
    name (attacker-controlled) is shown as text, never run."""
    server = start_server(tmp_path / "web", anonymous="read,ingest,admin")
    name = "<img src=x onerror=alert(1)>.wasm"
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=120) as c:
            wasm = (data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()
            r = c.post("/modules", params={"plugin": "web-fb", "version": "2.0"},
                       files={"file": (name, wasm)})
            assert r.status_code == 201, r.text
            r = c.post("/logs", params={"plugin": "web-fb", "version": "2.1"},
                       content=(data_dir / "dumps" / OOB_LOG).read_bytes())
            gid = r.json()["groups"][0]["id"]
        page, watch = open_page(browser, server, f"/#/crashes/{gid}")
        page.wait_for_selector("ol.backtrace", timeout=30_000)
        settle(page, watch)
        text = page.inner_text("#event-panel")
        assert f"no module uploaded for version 2.1; used version 2.0 ({name})" in text
        assert watch.problems() == [] and page.query_selector("#event-panel img") is None
        page.context.close()
    finally:
        server.stop()
