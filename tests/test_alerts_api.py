"""Webhook API routes on the real app (FastAPI TestClient, real store, real receiver):
CRUD, scopes, validation errors, the dead-letter list and manual redeliver."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pg import wait_until
from receiver import Receiver, Reply
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.server.app import create_app
from wasmprof.store.tokens import create_token


@pytest.fixture
def client(tmp_path, monkeypatch):
    for k, v in {"WASMPROF_WEBHOOK_BASE_DELAY": "0.05", "WASMPROF_WEBHOOK_MAX_DELAY": "0.2",
                 "WASMPROF_WEBHOOK_TIMEOUT": "1", "WASMPROF_WEBHOOK_POLL": "0.05"}.items():
        monkeypatch.setenv(k, v)
    cfg = ServerConfig(store=resolve_store(tmp_path / "data"),
                       anonymous_scopes=frozenset({"read", "admin", "ingest"}), log_json=False)
    with TestClient(create_app(cfg)) as c:          # runs the lifespan: worker started
        yield c


def test_crud_dead_letter_and_redeliver(client):
    with Receiver() as rx:
        rx.default = Reply(503)
        r = client.post("/api/v1/webhooks", json={"url": rx.url, "events": "crash.new_group",
                                                  "max_attempts": 2, "format": "slack"})
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"].startswith("whsec_")
        listed = client.get("/api/v1/webhooks").json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]]
        assert listed[0]["secret"] != hook["secret"]            # masked after creation
        assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["format"] == "slack"

        r = client.post(f"/api/v1/webhooks/{hook['id']}/test")
        assert r.status_code == 202
        did = r.json()["delivery_id"]

        def dead():
            ds = client.get("/api/v1/webhooks/deliveries", params={"status": "dead"}).json()
            return ds["deliveries"] if ds["deliveries"] else None
        (d,) = wait_until(dead, timeout=20)
        assert d["id"] == did and d["dead_letter"] and d["last_status"] == 503
        one = client.get(f"/api/v1/webhooks/deliveries/{did}").json()
        assert one["payload"]["text"] and [a["status_code"] for a in one["attempt_log"]] == [503]

        assert "wasmprof_webhook_deliveries_dead 1" in client.get("/metrics").text
        rx.default = Reply(200)
        r = client.post(f"/api/v1/webhooks/deliveries/{did}/redeliver")
        assert r.status_code == 202
        wait_until(lambda: client.get(f"/api/v1/webhooks/deliveries/{did}").json()["status"]
                   == "delivered", timeout=20)
        assert [q.answered for q in rx.requests] == [503, 200]
        # pending or unknown deliveries cannot be redelivered
        assert client.post("/api/v1/webhooks/deliveries/dlv_nope/redeliver").status_code == 404

        assert client.patch(f"/api/v1/webhooks/{hook['id']}",
                            json={"enabled": False}).json()["enabled"] is False
        assert client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 200
        assert client.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
        assert client.get("/api/v1/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize("body,field", [
    ({"url": "gopher://x/", "events": ["crash.new_group"]}, "url"),
    ({"url": "http://x/", "events": ["crash.sometimes"]}, "events"),
    ({"url": "http://x/", "events": ["crash.new_group"], "format": "xml"}, "format"),
    ({"url": "http://x/", "events": ["crash.new_group"], "rate_limit": -1}, "rate_limit"),
    ({"url": "http://x/", "events": ["crash.new_group"], "secret": "short"}, "secret"),
    ({"url": "http://x/"}, "events"),
    (["not", "an", "object"], "body"),
])
def test_bad_webhook_is_422_naming_the_field(client, body, field):
    r = client.post("/api/v1/webhooks", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["source"].startswith("body" if field == "body" else f"body.{field}"), r.text


def test_non_json_body_and_bad_status_filter(client):
    r = client.post("/api/v1/webhooks", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.get("/api/v1/webhooks/deliveries", params={"status": "<script>"})
    assert r.status_code == 422 and "<script>" not in r.headers.get("content-type", "")


def test_configuration_needs_admin_scope(tmp_path):
    cfg = ServerConfig(store=resolve_store(tmp_path / "data"), background=False, log_json=False)
    app = create_app(cfg)
    _, read_token = create_token(app.state.service.db, "reader", {"read"})
    _, admin_token = create_token(app.state.service.db, "admin", {"admin"})
    c = TestClient(app)
    hook = {"url": "http://x/", "events": ["crash.new_group"]}
    assert c.post("/api/v1/webhooks", json=hook).status_code == 401          # no token
    reader = {"Authorization": f"Bearer {read_token}"}
    assert c.post("/api/v1/webhooks", json=hook, headers=reader).status_code == 403
    assert c.get("/api/v1/webhooks", headers=reader).status_code == 403      # URLs hold secrets
    assert c.get("/api/v1/webhooks/deliveries", headers=reader).status_code == 200
    admin = {"Authorization": f"Bearer {admin_token}"}
    assert c.post("/api/v1/webhooks", json=hook, headers=admin).status_code == 201
