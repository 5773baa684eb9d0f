"""Issue 16's done-when, against a real ``wasmprof serve`` (SQLite and PostgreSQL) and a real
registry: set a plugin's source, post its crash log, get a symbolized crash group with no
upload — for a Higress-style compat image, for the Wasm OCI artifact by tag and by digest —
and a stripped production image whose debug build is found in a symbol source (HTTP
directory and OCI repository) resolving frames ``exact``."""

from __future__ import annotations

import json

import pytest

from oci_registry import StaticDir, push_artifact, push_image
from oci_server import (call, expected_top, groups, post_log, set_source, source, start_server,
                        wait_pull, wait_symbolized)
from pg import wait_until
from wasmprof.binary.loader import load_module
from wasmprof.sources.symbols import lookup_keys

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def symbols_dir(tmp_path_factory):
    d = StaticDir(tmp_path_factory.mktemp("symbols"))
    yield d
    d.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory, oci, symbols_dir):
    db = None
    if request.param == "postgres":
        db = request.getfixturevalue("pg_cluster").create_database("oci")
    server = start_server(tmp_path_factory.mktemp(f"oci-srv-{request.param}"), db, [
        "--symbol-source", symbols_dir.url,
        "--symbol-source", f"oci://{oci.open.host}/{request.param}/debug",
        "--symbol-source-plain-http"])
    server.backend = request.param
    yield server
    server.stop()


def _check_top(group: dict, want: dict) -> None:
    top = group["top_frames"][0]
    assert (top["function"], top["file"], top["line"], top["status"]) == (
        want["function"], want["file"], want["line"], "exact")


def _no_upload_but_pulled(srv, plugin: str, digest: str) -> dict:
    mods = call(srv, "read", "GET", "/modules", params={"plugin": plugin}).json()["modules"]
    assert len(mods) == 1
    origins = call(srv, "read", "GET", f"/modules/{mods[0]['id']}/origins").json()["origins"]
    assert [o["digest"] for o in origins] == [digest]
    return mods[0]


def test_compat_image_source_symbolizes_crash(srv, oci, data_dir):
    """A Higress-style Docker image (FROM scratch + plugin.wasm); the source has no tag, so
    the crash's version is the tag."""
    plugin = f"higress-system.crash-trap-{srv.backend}"
    repo = f"{srv.backend}/crash-trap"
    digest, _ = push_image(oci.open, repo, "1.0.0", [{"plugin.wasm": (data_dir / "wasm" / "crash_trap.O2.wasm").read_bytes()}])
    set_source(srv, plugin, f"oci://{oci.open.host}/{repo}")
    assert source(srv, plugin)["status"]["state"] == "idle"        # nothing to pull yet
    log = data_dir / "dumps" / "crash_trap.O2.trap.classic.log"
    r = post_log(srv, log, plugin, "1.0.0")
    assert r["crashes"] == 1
    g = wait_symbolized(srv, plugin)
    _check_top(g, expected_top(data_dir, log.name))
    s = source(srv, plugin)
    pull = s["pulls"][0]
    assert (pull["state"], pull["version"], pull["digest"]) == ("ready", "1.0.0", digest)
    assert pull["reference"] == f"oci://{oci.open.host}/{repo}:1.0.0" and "crash" in pull["trigger"]
    mod = _no_upload_but_pulled(srv, plugin, digest)
    assert mod["versions"] == ["1.0.0"]
    # another version of the plugin that was never pushed: recorded, ingest unaffected
    r = post_log(srv, log, plugin, "1.0.1")
    assert r["crashes"] == 1
    st = wait_pull(srv, plugin, ("retrying",), kind="not-found")["status"]
    assert "1.0.1" in st["summary"] and "MANIFEST_UNKNOWN" in st["summary"]


def test_artifact_by_tag(srv, oci, data_dir):
    plugin = f"divzero-{srv.backend}"
    repo = f"{srv.backend}/divzero"
    wasm = (data_dir / "wasm" / "crash_divzero.O2.wasm").read_bytes()
    digest = push_artifact(oci.open, repo, "2.0", wasm)
    set_source(srv, plugin, f"oci://{oci.open.host}/{repo}:2.0")   # a fixed tag: pulled at once
    wait_pull(srv, plugin, ("ready",))
    log = data_dir / "dumps" / "crash_divzero.O2.div.classic.log"
    post_log(srv, log, plugin, "2.0")
    g = wait_symbolized(srv, plugin)
    _check_top(g, expected_top(data_dir, log.name))
    ev = call(srv, "read", "GET", f"/crash-groups/{g['id']}").json()["sample_events"][0]
    assert ev["symbolization"]["match"] == "exact" and ev["symbolization"]["version_used"] == "2.0"
    _no_upload_but_pulled(srv, plugin, digest)


def test_artifact_by_digest(srv, oci, data_dir):
    """A digest-pinned source; the log posted before the source was set waits, then is
    re-symbolized (as for a late upload)."""
    plugin = f"callind-{srv.backend}"
    repo = f"{srv.backend}/callind"
    wasm = (data_dir / "wasm" / "crash_callind.O2.wasm").read_bytes()
    digest = push_artifact(oci.open, repo, "latest", wasm)
    push_artifact(oci.open, repo, "latest", (data_dir / "wasm" / "fib.O2.wasm").read_bytes())  # tag moved on
    log = data_dir / "dumps" / "crash_callind.O2.sig.classic.log"
    post_log(srv, log, plugin)
    assert groups(srv, plugin)[0]["top_frames"][0]["status"] == "unsymbolized"
    set_source(srv, plugin, f"oci://{oci.open.host}/{repo}@{digest}")
    g = wait_symbolized(srv, plugin)
    _check_top(g, expected_top(data_dir, log.name))
    pull = source(srv, plugin)["pulls"][0]
    assert pull["state"] == "ready" and pull["version"] is None and pull["digest"] == digest
    _no_upload_but_pulled(srv, plugin, digest)


def test_stripped_image_finds_debug_build_in_http_symbol_source(srv, oci, data_dir, symbols_dir):
    plugin = f"oob-stripped-{srv.backend}"
    repo = f"{srv.backend}/oob"
    stripped = (data_dir / "wasm" / "crash_oob.O2.strip-all.wasm").read_bytes()
    debug = (data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()
    key = lookup_keys(load_module("s.wasm", stripped))[0]
    (symbols_dir.root / key).mkdir(exist_ok=True)
    (symbols_dir.root / key / "debug.wasm").write_bytes(debug)
    push_image(oci.open, repo, "3.0", [{"plugin.wasm": stripped}])
    set_source(srv, plugin, f"oci://{oci.open.host}/{repo}:3.0")
    post_log(srv, data_dir / "dumps" / "crash_oob.O2.strip-all.load.classic.log", plugin, "3.0")

    def exact_frames():
        gs = groups(srv, plugin)
        if len(gs) != 1:
            return None
        r = call(srv, "read", "GET", f"/crash-groups/{gs[0]['id']}/events")
        evs = r.json()["events"] if r.status_code == 200 else []
        if not evs:                          # mid-regroup: the event moves to a new group
            return None
        ev = evs[0]
        frames = call(srv, "read", "GET", f"/crash-events/{ev['id']}").json()["frames"]
        return [f for f in frames if f["status"] == "exact"] or None
    frames = wait_until(exact_frames, timeout=60, interval=0.2)
    first = next(f for f in frames if f["input_index"] == 1)
    assert (first["function"], first["file"], first["line"]) == (
        "header_value_len", "/fixtures/src/oob_buffer.c", 23)
    assert f"/{key}/debug.wasm" in symbols_dir.requests
    mods = call(srv, "read", "GET", "/modules").json()["modules"]
    prod = next(m for m in mods if m["sha256"] == load_module("s", stripped).sha256)
    assert prod["companion"] is not None and prod["symbols"]["dwarf_via_companion"]
    comp = call(srv, "read", "GET", f"/modules/{prod['companion']['id']}/origins").json()["origins"]
    assert comp[0]["role"] == "debug" and comp[0]["ref_url"].endswith(f"/{key}/debug.wasm")
    lookups = call(srv, "read", "GET", "/symbol-sources").json()
    assert any(x["lookup_key"] == key and x["outcome"] == "found" for x in lookups["recent"])


def _sqlite_only(srv):
    """The routes below run the same SQL on both backends as the tests above: once is enough."""
    if srv.backend != "sqlite":
        pytest.skip("covered on SQLite; the PostgreSQL run keeps to the done-when cases")


def test_stripped_module_finds_debug_build_in_oci_symbol_source(srv, oci, data_dir, symbols_dir):
    """The debug build pushed to an OCI repository under the module's key as its tag; the
    stripped module here is an upload (symbol sources serve any module without DWARF)."""
    stripped_path = data_dir / "wasm" / "hmac_auth.O2.llvm-strip.wasm"
    stripped = stripped_path.read_bytes()
    mod = load_module("s", stripped)
    key = lookup_keys(mod)[0]
    push_artifact(oci.open, f"{srv.backend}/debug", key, (data_dir / "wasm" / "hmac_auth.O2.wasm").read_bytes())
    r = call(srv, "ingest", "POST", "/modules", params={"plugin": f"hmac-{srv.backend}", "version": "1"},
             files={"file": (stripped_path.name, stripped)})
    assert r.status_code == 201, r.text
    mid = r.json()["id"]

    def linked():
        m = call(srv, "read", "GET", f"/modules/{mid}").json()
        return m if m["companion"] else None
    m = wait_until(linked, timeout=60, interval=0.2)
    assert m["symbols"]["dwarf_via_companion"] and m["symbols"]["names_via_companion"]
    # the HTTP directory was asked first and had nothing: remembered as missing
    assert f"/{key}/debug.wasm" in symbols_dir.requests
    recent = call(srv, "read", "GET", "/symbol-sources").json()["recent"]
    outcomes = {(x["source"].split(":")[0], x["outcome"]) for x in recent if x["lookup_key"] == key}
    assert ("http", "missing") in outcomes and ("oci", "found") in outcomes
    # frames of the stripped module resolve exact through the debug build
    code = next(f for f in mod.functions if f.body_start)
    r = call(srv, "read", "POST", "/symbolize", json={"module": mid, "space": "file",
                                                      "addresses": [code.body_start + 2]})
    frames = r.json()["results"][0]["results"][0]["frames"]
    assert frames[-1]["status"] == "exact" and frames[-1]["file"]


def test_sources_overview_and_credentials_never_returned(srv, oci):
    _sqlite_only(srv)
    plugin = f"secret-{srv.backend}"
    body = set_source(srv, plugin, f"oci://{oci.basic.host}/nothing/here:1",
                      credentials={"username": "ci", "password": "hunter2-secret"})
    assert body["credentials"] == {"username": "ci", "password_set": True}
    for scope, path in (("admin", f"/plugins/{plugin}/source"), ("read", "/plugin-sources"),
                        ("admin", "/plugin-sources")):
        text = call(srv, scope, "GET", path).text
        assert "hunter2" not in text
    over = call(srv, "read", "GET", "/plugin-sources").json()
    mine = next(s for s in over["sources"] if s["plugin"] == plugin)
    assert mine["has_credentials"] and mine["credentials"] is None
    # the same host keeps the stored secret; another host forgets it
    again = set_source(srv, plugin, f"oci://{oci.basic.host}/nothing/else:1")
    assert again["credentials"] == {"username": "ci", "password_set": True}
    moved = set_source(srv, plugin, f"oci://{oci.token.host}/nothing/else:1")
    assert moved["credentials"] is None and not moved["has_credentials"]
    # scopes and validation
    assert call(srv, "read", "GET", f"/plugins/{plugin}/source").status_code == 403
    assert call(srv, "ingest", "PUT", f"/plugins/{plugin}/source", json={"url": "oci://a.b/c"}).status_code == 403
    for bad in ({"url": "https://x.example.com/a"}, {"url": "oci://reg.example.com/A:1"}, {"url": 5},
                {"url": "oci://r.example.com/a:1", "extra": 1}, {"url": "oci://r.example.com/a",
                                                                  "plain_http": "yes"},
                {"url": "oci://r.example.com/a:{version}@sha256:" + "a" * 64}, []):
        r = call(srv, "admin", "PUT", f"/plugins/{plugin}/source", json=bad)
        assert r.status_code == 422, (bad, r.text)      # outside the body's schema
        assert r.json()["error"] and r.json()["source"].startswith("body")
    r = call(srv, "admin", "PUT", f"/plugins/{plugin}/source", content=b"{not json",
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["source"] == "body"
    assert call(srv, "admin", "DELETE", f"/plugins/{plugin}/source").status_code == 200
    assert call(srv, "admin", "DELETE", f"/plugins/{plugin}/source").status_code == 404
    assert call(srv, "admin", "POST", f"/plugins/{plugin}/source/pull").status_code == 404
    assert call(srv, "read", "GET", "/modules/0/origins").status_code == 422


def test_cli_against_the_server(srv, oci, data_dir):
    """`wasmprof module pull --server` uploads what it pulled and records its origin;
    `module source set|show|pull|remove --server` drive the same routes."""
    from oci_server import module_cli
    _sqlite_only(srv)
    plugin = f"cli-remote-{srv.backend}"
    repo = f"{srv.backend}/cli-remote"
    wasm = (data_dir / "wasm" / "inline_chain.O2.wasm").read_bytes()
    digest = push_artifact(oci.open, repo, "5.0", wasm)
    base = ["--server", srv.url]
    r = module_cli("pull", f"oci://{oci.open.host}/{repo}:5.0", "--plain-http", "--plugin", plugin,
                   *base, "--token", srv.tokens["ingest"], "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["stored"]["where"] == srv.url and d["stored"]["plugins"] == [{"plugin": plugin, "version": "5.0"}]
    origins = call(srv, "read", "GET", f"/modules/{d['stored']['id']}/origins").json()["origins"]
    assert origins[0]["digest"] == digest and origins[0]["variant"] == "artifact"
    # sources through the CLI; the password comes from stdin and never back
    other = f"cli-src-{srv.backend}"
    r = module_cli("source", "set", other, f"oci://{oci.basic.host}/{repo}:5.0", "--plain-http",
                   "--username", oci.basic_user, "--password-stdin", *base,
                   "--token", srv.tokens["admin"], stdin=oci.basic_password + "\n")
    assert r.returncode == 0, r.stderr
    assert f"user {oci.basic_user}" in r.stdout and oci.basic_password not in r.stdout
    wait_pull(srv, other, ("ready",))
    r = module_cli("source", "show", *base, "--token", srv.tokens["read"], "--json")
    shown = json.loads(r.stdout)
    assert any(s["plugin"] == other and s["status"]["state"] == "ready" for s in shown["sources"])
    r = module_cli("source", "pull", other, *base, "--token", srv.tokens["admin"])
    assert r.returncode == 0, r.stderr
    r = module_cli("source", "remove", other, *base, "--token", srv.tokens["read"])
    assert r.returncode == 2 and "403" in r.stderr
    r = module_cli("source", "remove", other, *base, "--token", srv.tokens["admin"])
    assert r.returncode == 0
    assert call(srv, "admin", "GET", f"/plugins/{other}/source").status_code == 404
