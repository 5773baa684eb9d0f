"""The sources routes in-process: documented in the OpenAPI, scopes, and no 500 for any body
(hypothesis over JSON values and hostile strings)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmprof.config import ServerConfig, resolve_store
from wasmprof.server.app import create_app
from wasmprof.store.tokens import create_token


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    cfg = ServerConfig(store=resolve_store(tmp_path_factory.mktemp("routes")), background=False,
                       log_json=False, rate_limit=0)
    app = create_app(cfg)
    db = app.state.service.db
    tokens = {s: create_token(db, s, {s})[1] for s in ("read", "ingest", "admin")}
    with TestClient(app) as c:
        c.tokens = tokens
        yield c


def _h(c, scope):
    return {"Authorization": f"Bearer {c.tokens[scope]}"}


def test_documented(app_client):
    paths = app_client.get("/openapi.json").json()["paths"]
    for p, methods in (("/api/v1/plugins/{name}/source", {"put", "get", "delete"}),
                       ("/api/v1/plugins/{name}/source/pull", {"post"}),
                       ("/api/v1/plugin-sources", {"get"}), ("/api/v1/symbol-sources", {"get"}),
                       ("/api/v1/modules/{mid}/origins", {"get", "post"})):
        assert methods <= set(paths[p]), p
        for m in methods:
            assert {"400", "401", "403"} <= set(paths[p][m]["responses"]), (p, m)


def test_scopes(app_client):
    c = app_client
    assert c.get("/api/v1/plugin-sources").status_code == 401
    assert c.get("/api/v1/plugin-sources", headers=_h(c, "read")).status_code == 200
    for scope, code in (("read", 403), ("ingest", 403)):
        r = c.put("/api/v1/plugins/p/source", headers=_h(c, scope), json={"url": "oci://r.example.com/a"})
        assert r.status_code == code
    r = c.put("/api/v1/plugins/p/source", headers=_h(c, "admin"), json={"url": "oci://r.example.com/a"})
    assert r.status_code == 200 and r.json()["status"]["state"] == "idle"
    _matches_documented_schema(c, "/api/v1/plugins/{name}/source", "put", r.json())
    got = c.get("/api/v1/plugins/p/source", headers=_h(c, "admin"))
    _matches_documented_schema(c, "/api/v1/plugins/{name}/source", "get", got.json())
    assert c.post("/api/v1/modules/1/origins", headers=_h(c, "read"), json={}).status_code == 403
    r = c.post("/api/v1/modules/99/origins", headers=_h(c, "ingest"),
               json={"reference": "oci://r.example.com/a:1", "digest": "sha256:" + "a" * 64})
    assert r.status_code == 404


def _matches_documented_schema(c, path, method, body):
    """``body`` validates against the 200 schema the OpenAPI documents for the operation."""
    import jsonschema
    schema = c.get("/openapi.json").json()["paths"][path][method]["responses"]["200"]
    jsonschema.validate(body, schema["content"]["application/json"]["schema"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) |
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40) |
    st.sampled_from(["oci://r.example.com/a:1", "oci://r.example.com/a:{version}",
                     "oci://x/" + "a" * 300, "\x00", "oci://r.example.com/a@sha256:" + "b" * 64]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["url", "credentials", "plain_http", "username", "password", "version",
                         "reference", "digest", "x"]), inner, max_size=4),
    max_leaves=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values, name=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and s not in (".", "..")))
def test_no_500(app_client, body, name):
    c = app_client
    admin, ingest = _h(c, "admin"), _h(c, "ingest")
    from urllib.parse import quote
    path = f"/api/v1/plugins/{quote(name, safe='')}/source"
    for method, url, hdr in (("PUT", path, admin), ("POST", path + "/pull", admin),
                             ("POST", "/api/v1/modules/1/origins", ingest)):
        r = c.request(method, url, headers=hdr, json=body)
        assert r.status_code < 500, (method, url, body, r.text)
        if r.status_code == 400:
            assert r.json()["error"]
    r = c.get(path, headers=admin)
    assert r.status_code in (200, 400, 404, 422)


def test_pull_claims_are_shared_and_ingest_hook_is_cheap(app_client):
    """A claimed pull is not taken by another replica until the claim goes stale (a replica
    killed mid-pull); the ingest hook creates one job per (plugin, version) and then only
    consults its memory."""
    import time

    from wasmprof.sources import pulls
    svc = app_client.app.state.service
    src = svc.sources
    src.set_source("claims", {"url": "oci://127.0.0.1:9/claims/x", "plain_http": True})
    assert src.note([("claims", "1.0"), ("claims", "1.0"), ("other", "1.0")]) == 1
    assert src.note([("claims", "1.0")]) == 0
    (row,) = [p for p in pulls.list_pulls(svc.db, "claims")]
    assert (row.state, row.version, row.ref_url) == ("pending", "1.0", "oci://127.0.0.1:9/claims/x:1.0")
    a = pulls.claim_due(svc.db, "replica-a", plugin="claims")
    assert a is not None and a.state == "pulling"
    assert pulls.claim_due(svc.db, "replica-b", plugin="claims") is None
    b = pulls.claim_due(svc.db, "replica-b", plugin="claims", at=time.time() + pulls.STALE_CLAIM + 1)
    assert b is not None and b.id == a.id
    done = src.process(b)                       # nothing listens on port 9
    assert done.state == "retrying" and done.error_kind == "unreachable" and done.attempts == 1
    assert done.next_attempt_at > time.time()
    assert src.retry("claims") >= 1
    assert pulls.list_pulls(svc.db, "claims")[0].state == "pending"
