"""Issue 15's reproducers, one regression test each, plus the contract items around them:
ids beyond 2^63, empty and mistyped bodies, malformed perf frames, empty logs, multipart
errors, LIKE wildcards, nosniff, the error shape, 405's Allow, /metrics tokens, the token
command in /docs and 401s, revocation on every replica, ignore/reopen and muted alerts,
"regressed" at the event's time. In-process (FastAPI TestClient on a real store); the
timeouts, which live in uvicorn's protocol, are in test_api_timeouts.py."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from occurrences import occurrence

from wasmprof.config import ServerConfig, resolve_store
from wasmprof.server.app import create_app
from wasmprof.store.tokens import create_token, revoke_token

HUGE = "9" * 23                      # > 2^63 - 1
ALL = frozenset({"ingest", "read", "admin"})


def _app(tmp_path, **kw):
    kw.setdefault("anonymous_scopes", ALL)
    cfg = ServerConfig.from_env(resolve_store(tmp_path / "data", None), background=False, **kw)
    return create_app(cfg)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app for the tests that do not depend on stored state."""
    with TestClient(_app(tmp_path_factory.mktemp("contract")), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def fresh(tmp_path):
    """An app of its own, for tests that count stored groups."""
    with TestClient(_app(tmp_path), raise_server_exceptions=False) as c:
        yield c


def _error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and body["detail"], body
    assert r.headers["x-content-type-options"] == "nosniff"
    return body


def _crash_log(data_dir, name="crash_trap.O2.trap.classic.log", ts=None):
    """A new occurrence of the fixture crash each call (log ingest is idempotent)."""
    return occurrence((data_dir / "dumps" / name).read_text(), ts)


def _group(client, data_dir, plugin="crash-trap", **kw):
    r = client.post("/api/v1/logs", params={"plugin": plugin}, content=_crash_log(data_dir, **kw))
    assert r.status_code == 200 and r.json()["groups"], r.text
    return r.json()["groups"][0]["id"]


# -- ids above 2^63 (were 500 OverflowError) ---------------------------------------------

@pytest.mark.parametrize("path", [
    f"/api/v1/crash-groups/{HUGE}", f"/api/v1/modules/{HUGE}", f"/api/v1/crash-events/{HUGE}",
    f"/api/v1/crash-groups/1/events?before_id={HUGE}", f"/api/v1/webhooks/{HUGE}",
    f"/api/v1/webhooks/deliveries?webhook_id={HUGE}", "/api/v1/crash-groups/0",
    "/api/v1/crash-groups?limit=0", "/api/v1/crash-groups?offset=-1"])
def test_ids_beyond_bounds_are_422(client, path):
    body = _error(client.get(path), 422)
    assert body["errors"] and body["source"].split(".")[0] in ("path", "query")


def test_resolve_with_huge_id_and_non_numeric_ids(client):
    _error(client.post(f"/api/v1/crash-groups/{HUGE}/resolve"), 422)
    _error(client.get("/api/v1/crash-groups/abc"), 404)          # no such route
    r = client.get("/api/v1/profiles/inputs", params={"ids": f"1,{'9' * 19},2"})
    assert r.status_code == 200 and r.json()["out_of_range"] == ["9" * 19], r.text
    _error(client.get("/api/v1/profiles/inputs", params={"ids": "1," + "9" * 5000}), 422)


def test_symbolize_module_ids_beyond_bounds(client):
    _error(client.post("/api/v1/symbolize", json={"module": int(HUGE)}), 422)
    body = _error(client.post("/api/v1/symbolize", json={"module": 123456, "addresses": [1]}),
                  404)
    assert body["source"] == "module"


# -- empty and mistyped bodies (were 500 JSONDecodeError / TypeError) ------------------

def test_empty_bodies_are_refused(client):
    body = _error(client.put("/api/v1/plugins/p/runtime"), 422)
    assert body["source"] == "body"
    _error(client.post("/api/v1/symbolize"), 422)
    _error(client.post("/api/v1/symbolize", content=b"{nope",
                       headers={"content-type": "application/json"}), 400)
    body = _error(client.post("/api/v1/logs"), 400)              # was 200
    assert body["source"] == "body" and "empty" in body["error"]


@pytest.mark.parametrize("route,body,source", [
    ("/api/v1/symbolize", {"module": 1, "addresses": [{"func_index": "x"}]},
     "body.addresses.0.func_index"),
    ("/api/v1/symbolize", {"module": 1, "addresses": [int("9" * 30)]}, "body.addresses.0"),
    ("/api/v1/symbolize", {"module": 1, "addresses": ["0xzz"]}, "body.addresses.0"),
    ("/api/v1/symbolize", {"module": 1, "space": "bogus"}, "body.space"),
    ("/api/v1/symbolize", {"jobs": [{"module": 1}] * 11}, "body.jobs"),
])
def test_mistyped_symbolize_bodies_are_422(client, route, body, source):
    err = _error(client.post(route, json=body), 422)
    assert err["source"].startswith(source), err


@pytest.mark.parametrize("body", [{"runtime": [1]}, {"runtime": "nope"}, {"runtime": 5},
                                  {"runtime": None, "extra": 1}, [1, 2]])
def test_mistyped_runtime_bodies_are_422(client, body):
    _error(client.put("/api/v1/plugins/p/runtime", json=body), 422)


def test_runtime_body_accepted(client):
    r = client.put("/api/v1/plugins/p/runtime", json={"runtime": "wamr-aot"})
    assert r.status_code == 200 and r.json()["wamr_dump_space"] == "aot", r.text
    r = client.put("/api/v1/plugins/p/runtime", json={"runtime": None})
    assert r.status_code == 200 and r.json()["runtime"] is None


def test_perf_script_with_bad_aot_offset_is_400(client, data_dir):
    script = (b"iwasm 20737  1849.909784:    2004008 cpu-clock: \n"
              b"\t        41399708 aot_func#3+0xzz (/tmp/perf-20737.map)\n"
              b"\t           3551b touch_pages+0x7b (/usr/local/bin/iwasm)\n\n")
    body = _error(client.post("/api/v1/profiles", params={"format": "perf-script"},
                              content=script), 400)
    assert "aot_func#3+0xzz" in body["found"] and body["source"] == "perf script"


def test_multipart_errors_have_the_documented_shape(client):
    bad = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"   # no end
    for route in ("/api/v1/logs", "/api/v1/modules", "/api/v1/profiles", "/api/v1/sources"):
        r = client.post(route, content=bad,
                        headers={"content-type": "multipart/form-data; boundary=xyz"})
        body = _error(r, 400)
        assert body["error"] in ("bad multipart body", "multipart upload without a 'file' field",
                                 "expected multipart field 'file' (one or more source files)"), body
    r = client.post("/api/v1/modules", files={"other": ("x", b"123")})
    assert _error(r, 400)["source"] == "body"


def test_repeated_single_valued_query_parameter_is_422(client):
    body = _error(client.get("/api/v1/crash-groups?limit=1&limit=2"), 422)
    assert body["source"] == "query.limit"
    assert client.get("/api/v1/web/sources?file=a.c&file=b.c").status_code == 200   # a list


def test_405_lists_every_method_of_the_path(client):
    r = client.request("OPTIONS", "/api/v1/modules")
    _error(r, 405)
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    r = client.patch("/api/v1/webhooks/overview")
    _error(r, 405)
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


# -- search, headers, metrics, docs --------------------------------------------------

def test_like_wildcards_match_literally(fresh, data_dir):
    _group(fresh, data_dir)
    groups = fresh.get("/api/v1/crash-groups").json()["groups"]
    assert groups
    # the title is "unreachable in fail_invariant": as wildcards these would all match it
    for q in ("%", "%%", "\\", "unreach%", "un_eachable", "fail%invariant", "%_%"):
        assert fresh.get("/api/v1/crash-groups", params={"q": q}).json()["total"] == 0, q
    for q in ("UNREACH", "_", "l_i"):                         # literal substrings
        assert fresh.get("/api/v1/crash-groups", params={"q": q}).json()["total"] == 1, q
    assert fresh.get("/api/v1/crash-groups", params={"q": "crash-trap"}).json()["total"] == 1


@pytest.mark.parametrize("method,path", [
    ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/"), ("GET", "/api/v1/stats"), ("GET", "/api/v1/crash-groups/7"),
    ("GET", "/nowhere"), ("POST", "/api/v1/symbolize"), ("DELETE", "/api/v1/stats")])
def test_nosniff_on_every_response(client, method, path):
    r = client.request(method, path)
    assert r.headers.get("x-content-type-options") == "nosniff", (path, r.status_code)


def test_body_over_cap_is_413_with_the_error_shape(tmp_path):
    with TestClient(_app(tmp_path, max_json_bytes=100)) as c:
        r = c.post("/api/v1/symbolize", content=b"[" + b"1," * 200 + b"1]",
                   headers={"content-type": "application/json"})
        assert _error(r, 413)["limit"] == 100
        r = c.post("/api/v1/logs", headers={"content-length": str(2 << 30)}, content=b"")
        assert r.status_code == 413


def test_metrics_token(tmp_path):
    app = _app(tmp_path, anonymous_scopes=frozenset(), metrics_token="s3cret-metrics")
    _, admin = create_token(app.state.service.db, "ops", {"admin"})
    _, reader = create_token(app.state.service.db, "dash", {"read"})
    with TestClient(app) as c:
        body = _error(c.get("/metrics"), 401)
        assert "--metrics-token" in body["detail"]
        _error(c.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
        _error(c.get("/metrics", headers={"Authorization": f"Bearer {reader}"}), 401)
        for tok in ("s3cret-metrics", admin):
            r = c.get("/metrics", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 200 and "wasmprof_http_responses_total" in r.text
    with TestClient(_app(tmp_path / "open", anonymous_scopes=frozenset())) as c:
        assert c.get("/metrics").status_code == 200          # open unless configured


def test_token_command_in_docs_and_401(tmp_path):
    with TestClient(_app(tmp_path, anonymous_scopes=frozenset())) as c:
        desc = c.get("/openapi.json").json()["info"]["description"]
        assert "wasmprof token create NAME --scopes ingest,read" in desc
        body = _error(c.get("/api/v1/crash-groups"), 401)
        assert "wasmprof token create NAME --scopes read" in body["detail"]
        assert c.get("/api/v1/crash-groups", headers={"Authorization": "Bearer wpt_x"}
                     ).status_code == 401


# -- tokens: revocation on the next request, on every replica ---------------------------

def test_revoked_token_fails_on_the_next_request_on_every_replica(tmp_path):
    replicas = [_app(tmp_path, anonymous_scopes=frozenset()) for _ in range(2)]
    db = replicas[0].state.service.db
    _, token = create_token(db, "ci", {"read"})
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(replicas[0]) as a, TestClient(replicas[1]) as b:
        for c in (a, b):                                    # warm any cache
            assert [c.get("/api/v1/stats", headers=auth).status_code for _ in range(3)] == [200] * 3
        assert revoke_token(db, "ci") == 1
        for c in (a, b):
            assert _error(c.get("/api/v1/stats", headers=auth), 401)["detail"] == \
                "invalid or revoked token"


# -- dashboard-facing group status: ignore, reopen, regressed time, muted alerts ---------

def test_ignore_and_reopen(fresh, data_dir):
    gid = _group(fresh, data_dir)
    g = fresh.post(f"/api/v1/crash-groups/{gid}/ignore").json()
    assert g["status"] == "ignored"
    assert fresh.get("/api/v1/crash-groups", params={"status": "ignored"}).json()["total"] == 1
    assert fresh.get("/api/v1/crash-groups", params={"status": "unresolved"}).json()["total"] == 0
    _group(fresh, data_dir)                                  # more crashes: still ignored
    g = fresh.get(f"/api/v1/crash-groups/{gid}").json()
    assert g["status"] == "ignored" and g["count"] == 2
    assert fresh.post(f"/api/v1/crash-groups/{gid}/ignore", json={"ignored": False}
                       ).json()["status"] in ("new", "ongoing")
    assert fresh.post(f"/api/v1/crash-groups/{gid}/resolve").json()["status"] == "resolved"
    assert fresh.post(f"/api/v1/crash-groups/{gid}/resolve", json={"resolved": False}
                       ).json()["status"] in ("new", "ongoing")
    _error(fresh.post("/api/v1/crash-groups/999/ignore"), 404)
    _error(fresh.post(f"/api/v1/crash-groups/{gid}/ignore", json={"ignored": 0}), 422)


def test_regressed_at_is_the_events_time(fresh, data_dir):
    gid = _group(fresh, data_dir)
    resolved_at = fresh.post(f"/api/v1/crash-groups/{gid}/resolve").json()["resolved_at"]
    occurred = resolved_at + 0.4           # crashed after the resolve, shipped a second later
    time.sleep(1.0)
    sent = time.time()
    r = fresh.post("/api/v1/logs", params={"plugin": "crash-trap"},
                    content=_crash_log(data_dir, ts=occurred))
    assert r.json()["groups"][0]["regressed"] is True, r.text
    g = fresh.get(f"/api/v1/crash-groups/{gid}").json()
    assert g["status"] == "regressed"
    assert abs(g["regressed_at"] - occurred) < 0.002, (g["regressed_at"], occurred)
    assert g["regressed_at"] < sent and g["regressed_at"] <= g["last_seen"]


def test_ignored_groups_alert_nothing(tmp_path, data_dir):
    from wasmprof.alerts import outbox
    app = _app(tmp_path)
    db = app.state.service.db
    with TestClient(app) as c:
        r = c.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                             "events": ["crash.*"], "spike_threshold": 1})
        assert r.status_code == 201, r.text
        gid = _group(c, data_dir)
        queued = outbox.counts(db)
        assert sum(queued.values()) >= 1                          # crash.new_group
        c.post(f"/api/v1/crash-groups/{gid}/ignore")
        _group(c, data_dir)
        c.post(f"/api/v1/crash-groups/{gid}/resolve")
        c.post(f"/api/v1/crash-groups/{gid}/ignore")
        _group(c, data_dir)                                       # would regress + spike
        assert outbox.counts(db) == queued
        assert c.get(f"/api/v1/crash-groups/{gid}").json()["status"] == "ignored"
        c.post(f"/api/v1/crash-groups/{gid}/ignore", json={"ignored": False})
        c.post(f"/api/v1/crash-groups/{gid}/resolve")
        _group(c, data_dir)                                       # unmuted: regression alerts
        assert sum(outbox.counts(db).values()) == sum(queued.values()) + 1
