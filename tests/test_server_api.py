"""API v1 over real HTTP against a real ``wasmprof serve`` subprocess, once on SQLite and once
on PostgreSQL (same tests). Each test uses its own plugin name, so they share one server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pg import wait_until
from server_proc import ServerProcess, wasmprof_cli
from logs_util import occurrence

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory):
    data = tmp_path_factory.mktemp(f"srv-{request.param}")
    db = None
    if request.param == "postgres":
        db = request.getfixturevalue("pg_cluster").create_database("api")
    store = ["--data", str(data)] + (["--db", db] if db else [])
    tokens = {}
    for name, scopes in (("ingest", "ingest"), ("read", "read"), ("admin", "admin")):
        out = wasmprof_cli("token", "create", f"t-{name}", "--scopes", scopes, "--json", *store)
        tokens[name] = json.loads(out.stdout)["token"]
    server = ServerProcess(data, db, extra_args=["--max-samples-mb", "1", "--max-module-mb", "2",
                                                 "--rate-limit", "0", "--quiet"]).start()
    server.tokens = tokens
    server.backend = request.param
    yield server
    server.stop()


def _client(srv, scope):
    return srv.client(srv.tokens[scope])


def _upload(srv, path: Path, plugin: str, version: str | None = None) -> dict:
    params = {"plugin": plugin, **({"version": version} if version else {})}
    with _client(srv, "ingest") as c:
        r = c.post("/api/v1/modules", params=params,
                   files={"file": (path.name, path.read_bytes())})
    assert r.status_code in (200, 201), r.text
    return r.json()


def _wait_ready(srv, mid: int) -> dict:
    def ready():
        with _client(srv, "read") as c:
            m = c.get(f"/api/v1/modules/{mid}").json()
        return m if m["symbols"]["index"] in ("ready", "failed") else None
    return wait_until(ready, timeout=60)


def _expected(data_dir: Path, log: str) -> dict:
    return json.loads((data_dir / "expected" / "dumps" / f"{log}.expected.json").read_text())


def test_health_metrics_and_docs(srv):
    with srv.client() as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok"
        assert h["database"] == ("sqlite" if srv.backend == "sqlite" else "postgresql")
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
        assert "/api/v1/logs" in spec["paths"] and "/api/v1/crash-groups/{gid}" in spec["paths"]
        text = c.get("/metrics").text
    assert "# TYPE wasmprof_http_responses_total counter" in text
    assert "wasmprof_queue_depth" in text


def test_auth_scopes(srv, data_dir):
    with srv.client() as anon:
        r = anon.get("/api/v1/crash-groups")
        assert r.status_code == 401 and "token" in r.json()["detail"]
    with srv.client("wpt_not-a-token") as bad:
        assert bad.get("/api/v1/crash-groups").status_code == 401
    with _client(srv, "read") as c:
        assert c.get("/api/v1/crash-groups").status_code == 200
        r = c.post("/api/v1/logs", content=b"hello\n")
        assert r.status_code == 403 and "ingest" in r.json()["detail"]
    with _client(srv, "ingest") as c:
        assert c.post("/api/v1/logs", content=b"hello\n").json()["crashes"] == 0
        assert c.post("/api/v1/crash-groups/1/resolve").status_code == 403
    with _client(srv, "admin") as c:
        assert c.get("/api/v1/stats").status_code == 200


def test_module_upload_dedupe_status_and_companion(srv, data_dir):
    wasm = data_dir / "wasm" / "crash_oob.O2.wasm"
    m = _upload(srv, wasm, "comp", "1.0")
    assert m["created"] is True and m["kind"] == "wasm"
    again = _upload(srv, wasm, "comp", "1.0")
    assert again["created"] is False and again["id"] == m["id"]
    ready = _wait_ready(srv, m["id"])
    assert ready["symbols"] == {**ready["symbols"], "dwarf": True, "names": True, "index": "ready"}
    assert ready["hints"] == []
    stripped = _upload(srv, data_dir / "wasm" / "crash_oob.O2.strip-all.wasm", "comp", "1.0")
    assert stripped["identity"] == m["identity"]            # same code section
    s = _wait_ready(srv, stripped["id"])
    assert s["symbols"]["dwarf"] is False and s["symbols"]["dwarf_via_companion"] is True
    assert s["companion"]["id"] == m["id"]
    aot = _upload(srv, data_dir / "aot" / "crash_oob.O2.csn.aot", "comp", "1.0")
    a = _wait_ready(srv, aot["id"])
    assert a["kind"] == "aot" and a["symbols"]["aot_matched_to_wasm"] is True
    with _client(srv, "read") as c:
        listed = c.get("/api/v1/modules", params={"plugin": "comp"}).json()["modules"]
        plugin = next(p for p in c.get("/api/v1/plugins").json()["plugins"] if p["name"] == "comp")
    assert {x["id"] for x in listed} == {m["id"], stripped["id"], aot["id"]}
    assert plugin["wamr_dump_space"] == "aot"                  # an .aot is uploaded


def test_bad_inputs_are_4xx_with_location(srv, data_dir):
    with _client(srv, "ingest") as c:
        r = c.post("/api/v1/modules", params={"plugin": "bad"},
                   files={"file": ("x.wasm", b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f")})
        assert r.status_code == 400
        err = r.json()
        assert err["source"] and "x.wasm" in err["source"] and err["offset"] is not None
        r = c.post("/api/v1/samples", params={"plugin": "bad"}, content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]
        big = b"x" * (1024 * 1024 + 10)                          # over --max-samples-mb 1
        assert c.post("/api/v1/samples", content=big).status_code == 413
        r = c.post("/api/v1/logs", params={"plugin": "bad\x1b[31m"}, content=b"x\n")
        assert r.status_code == 422 and r.json()["source"] == "query.plugin"
        garbage = bytes(range(256)) * 4000 + b"\n#00: 0xzz - \xff\xfe\n"
        r = c.post("/api/v1/logs", params={"plugin": "bad"}, content=garbage)
        assert r.status_code == 200 and r.json()["crashes"] == 0


def test_log_to_symbolized_group_then_resolve_and_regress(srv, data_dir):
    log_name = "crash_oob.O2.load.classic.log"
    exp = _expected(data_dir, log_name)
    m = _upload(srv, data_dir / "wasm" / "crash_oob.O2.wasm", "oob", "2.0")
    _wait_ready(srv, m["id"])
    body = (data_dir / "dumps" / log_name).read_bytes()
    with _client(srv, "ingest") as c:
        r = c.post("/api/v1/logs", params={"plugin": "oob", "version": "2.0", "pod": "gw-1"},
                   content=body)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["crashes"] == 1 and len(res["groups"]) == 1 and res["groups"][0]["new"] is True
    gid = res["groups"][0]["id"]
    with _client(srv, "read") as c:
        g = c.get(f"/api/v1/crash-groups/{gid}").json()
        ev = c.get(f"/api/v1/crash-events/{g['sample_events'][0]['id']}").json()
    assert g["count"] == 1 and g["status"] == "new" and g["versions"] == {"2.0": 1}
    assert g["trap_kind"] == "out-of-bounds-memory" and g["plugin"] == "oob"
    # every input frame's outermost function equals the ground truth's name
    outer = {}
    for f in ev["frames"]:
        if not f["inlined"]:
            outer[f["input_index"]] = f["function"]
    for ef in exp["frames"]:
        if ef["frame"] < 8:
            assert outer[ef["frame"]] == ef["expected_function_name"], ef["frame"]
    # the caller frame #01 has ground-truth file:line with an inline chain
    chain = [f for f in ev["frames"] if f["input_index"] == 1]
    want = exp["frames"][1]["symbolized"]["frames"]
    assert [(f["function"], f["file"], f["line"], f["column"]) for f in chain] == \
        [(w["function"], w["file"], w["line"], w["column"]) for w in want]
    assert ev["labels"] == {"pod": "gw-1"} and ev["raw"] and ev["raw_frames"][0]["printed_name"]
    assert ev["grouping"]["basis"] == "symbols" and "top" in ev["grouping"]["explanation"]
    with _client(srv, "ingest") as c:       # the same log again: the same crash, stored once
        same = c.post("/api/v1/logs", params={"plugin": "oob", "version": "2.0", "pod": "gw-1"},
                      content=body).json()
        assert (same["crashes"], same["new_events"], same["duplicate_events"]) == (1, 0, 1)
        again = c.post("/api/v1/logs", params={"plugin": "oob", "version": "2.1"},
                       content=occurrence(body, 1)).json()
    with _client(srv, "read") as c:
        assert c.get(f"/api/v1/crash-groups/{gid}").json()["count"] == 2
    assert again["groups"][0]["id"] == gid and again["groups"][0]["new"] is False
    with _client(srv, "admin") as c:
        assert c.post(f"/api/v1/crash-groups/{gid}/resolve").json()["status"] == "resolved"
    with _client(srv, "ingest") as c:
        third = c.post("/api/v1/logs", params={"plugin": "oob", "version": "2.1"},
                       content=occurrence(body, 2)).json()
    assert third["groups"][0]["regressed"] is True
    with _client(srv, "read") as c:
        g = c.get(f"/api/v1/crash-groups/{gid}").json()
        listed = c.get("/api/v1/crash-groups", params={"plugin": "oob", "status": "regressed"}).json()
        page1 = c.get(f"/api/v1/crash-groups/{gid}/events", params={"limit": 2}).json()
        page2 = c.get(f"/api/v1/crash-groups/{gid}/events",
                      params={"limit": 2, "before_id": page1["next_before_id"]}).json()
    assert len(page1["events"]) == 2 and len(page2["events"]) == 1 and page2["next_before_id"] is None
    assert page2["events"][0]["labels"] == {"pod": "gw-1"}
    assert g["count"] == 3 and g["status"] == "regressed" and g["versions"] == {"2.0": 1, "2.1": 2}
    assert [x["id"] for x in listed["groups"]] == [gid]


def test_crash_before_module_is_resymbolized_and_regrouped(srv, data_dir):
    log_name = "crash_trap.O2.trap.classic.log"
    exp = _expected(data_dir, log_name)
    body = (data_dir / "dumps" / log_name).read_bytes()
    with _client(srv, "ingest") as c:
        res = c.post("/api/v1/logs", params={"plugin": "late"}, content=body).json()
    assert res["crashes"] == 1
    eid, gid = res["events"][0]["id"], res["groups"][0]["id"]
    with _client(srv, "read") as c:
        ev = c.get(f"/api/v1/crash-events/{eid}").json()
    assert ev["frames"] == [] and "no module" in ev["grouping"]["note"]
    m = _upload(srv, data_dir / "wasm" / "crash_trap.O2.wasm", "late")

    def resymbolized():
        with _client(srv, "read") as c:
            e = c.get(f"/api/v1/crash-events/{eid}").json()
        return e if e["frames"] else None
    ev = wait_until(resymbolized, timeout=60)
    top = exp["frames"][0]["symbolized"]["frames"]
    got = [f for f in ev["frames"] if f["input_index"] == 0]
    assert (got[0]["function"], got[0]["file"], got[0]["line"]) == \
        (top[0]["function"], top[0]["file"], top[0]["line"])
    assert got[0]["status"] == "exact"
    assert _wait_ready(srv, m["id"])["symbols"]["index_ready"]
    with _client(srv, "read") as c:
        groups = c.get("/api/v1/crash-groups", params={"plugin": "late"}).json()["groups"]
    assert sum(g["count"] for g in groups) == 1 and groups[0]["id"] == ev["group_id"]
    if ev["group_id"] != gid:                                 # moved: the old group is gone
        with _client(srv, "read") as c:
            assert c.get(f"/api/v1/crash-groups/{gid}").status_code == 404


def test_wamr_space_follows_plugin_modules_and_runtime_override(srv, data_dir):
    log_name = "crash_trap.O2.trap.aot-csn.log"
    exp = _expected(data_dir, log_name)
    _wait_ready(srv, _upload(srv, data_dir / "wasm" / "crash_trap.O2.wasm", "rt")["id"])
    _wait_ready(srv, _upload(srv, data_dir / "aot" / "crash_trap.O2.csn.aot", "rt")["id"])
    with _client(srv, "ingest") as c:
        res = c.post("/api/v1/logs", params={"plugin": "rt"},
                     content=(data_dir / "dumps" / log_name).read_bytes()).json()
    eid = res["events"][0]["id"]
    with _client(srv, "read") as c:
        ev = c.get(f"/api/v1/crash-events/{eid}").json()
    assert ev["space"] == "aot"
    caller = [f for f in ev["frames"] if f["input_index"] == 1]
    want = exp["frames"][1]["symbolized"]["frames"]
    assert (caller[-1]["function"], caller[-1]["line"]) == (want[-1]["function"], want[-1]["line"])
    with _client(srv, "admin") as c:
        r = c.put("/api/v1/plugins/rt/runtime", json={"runtime": "wamr-interp"})
        assert r.status_code == 200 and r.json()["wamr_dump_space"] == "interp"
        assert c.put("/api/v1/plugins/rt/runtime", json={"runtime": "nope"}).status_code == 422
    with _client(srv, "read") as c:
        assert c.get(f"/api/v1/crash-events/{eid}").json()["space"] == "interp"


def test_stateless_symbolize(srv, data_dir):
    exp = _expected(data_dir, "crash_oob.O2.load.classic.log")
    m = _upload(srv, data_dir / "wasm" / "crash_oob.O2.wasm", "sym")
    f1 = exp["frames"][1]
    with _client(srv, "read") as c:
        r = c.post("/api/v1/symbolize", json={"module": m["sha256"], "space": "file",
                                              "addresses": [f1["lookup_file_offset"], "0x0"]})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]["results"]
    assert [f["function"] for f in res[0]["frames"]] == \
        [x["function"] for x in f1["symbolized"]["frames"]]
    assert res[1]["frames"][0]["status"] != "exact"
    with _client(srv, "read") as c:
        assert c.post("/api/v1/symbolize", json={"module": 999999, "addresses": [1]}).status_code == 404
        assert c.post("/api/v1/symbolize", json={"module": m["id"], "space": "bogus",
                                                 "addresses": [1]}).status_code == 422


def test_samples_and_profiles_roundtrip(srv, data_dir):
    aot = data_dir / "aot" / "fib.O2.perf.aot"
    _upload(srv, data_dir / "wasm" / "fib.O2.wasm", "fib")
    _upload(srv, aot, "fib")
    script = (data_dir / "perf" / "fib.O2.perf.g.perf-script.txt").read_bytes()
    pmap = (data_dir / "perf" / "fib.O2.perf.g.perf-20737.map").read_bytes()
    with _client(srv, "ingest") as c:
        r = c.post("/api/v1/profiles", params={"plugin": "fib", "labels": "run:a"},
                   files={"file": ("fib.perf-script.txt", script), "perf_map": ("perf.map", pmap)})
        assert r.status_code == 200, r.text
        assert r.json()["format"] == "perf-script" and r.json()["samples"] > 10
        batch = {"modules": [{"id": "fib", "text_base": "0x1000"}],
                 "samples": [{"stack": ["0x1010", "0x9999"], "count": 3, "thread": "w0"}] * 5}
        r = c.post("/api/v1/samples", params={"plugin": "fib", "run": "b", "batch_id": "b-1"},
                   json=batch)
        assert r.status_code == 200 and r.json()["samples"] == 5, r.text
        dup = c.post("/api/v1/samples", params={"plugin": "fib", "run": "b", "batch_id": "b-1"},
                     json=batch).json()
        assert dup["duplicate"] is True and dup["id"] == r.json()["id"]
    with _client(srv, "read") as c:
        summary = c.get("/api/v1/profiles", params={"plugin": "fib"}).json()
        assert len(summary["inputs"]) == 2
        ss = c.get("/api/v1/profiles", params={"plugin": "fib", "labels": "run:a",
                                               "format": "speedscope"})
        assert ss.status_code == 200, ss.text
        names = {f["name"] for f in ss.json()["shared"]["frames"]}
        assert "fib_recursive" in names or any("fib" in n for n in names)
        assert not any(n.startswith("aot_func#") for n in names)
        svg = c.get("/api/v1/profiles", params={"plugin": "fib", "labels": "run:a", "format": "svg"})
        assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
        folded = c.get("/api/v1/profiles", params={"plugin": "fib", "labels": "run:a",
                                                   "format": "folded"}).text
        assert folded.strip() and all(line.rsplit(" ", 1)[1].isdigit()
                                      for line in folded.strip().splitlines())
        d = c.get("/api/v1/profiles/diff", params={"before.plugin": "fib", "before.labels": "run:a",
                                                   "after.plugin": "fib", "after.labels": "run:a"})
        assert d.status_code == 200 and all(abs(row["delta_self"]) < 1e-9 for row in d.json()["rows"])
        none = c.get("/api/v1/profiles", params={"plugin": "nothing-here", "format": "svg"})
        assert none.status_code == 404 and "no profile data" in none.json()["error"]   # nothing found
