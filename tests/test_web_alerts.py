"""The dashboard's Alerts page (webhook deliveries and dead letters) in headless chromium,
against a real ``wasmprof serve`` with fast retry settings and a real loopback receiver;
plus the read-scope ``GET /api/v1/webhooks/overview`` route it uses (redacted URLs).

A fixture crash log makes a ``crash.new_group`` delivery that dies against a receiver
answering 500 (``max_attempts`` 2); the page shows it with both attempts and a nav badge;
a read-only token gets a readable "needs admin" note; after the receiver recovers, clicking
Redeliver gets the signed delivery to it and the page shows it delivered.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from browser import browser, create_token, open_page, settle, wait_for  # noqa: F401  (fixture)
from receiver import Receiver, Reply
from server_proc import ServerProcess
from test_alerts_units import documented_verifier
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.server.app import create_app
from wasmprof.server.routes_alerts import redact_url
from wasmprof.store.tokens import create_token as store_token

FAST_ENV = {"WASMPROF_WEBHOOK_BASE_DELAY": "0.05", "WASMPROF_WEBHOOK_MAX_DELAY": "0.2",
            "WASMPROF_WEBHOOK_TIMEOUT": "3", "WASMPROF_WEBHOOK_POLL": "0.1",
            "WASMPROF_ANONYMOUS": "", "WASMPROF_DB": ""}
DUMP = "dumps/crash_oob.O2.load.classic.log"
MODULE = "wasm/crash_oob.O2.wasm"
SECRET = "web-alerts-test-secret"
SLACK_TOKEN = "xq7Rk2LmVb9TzW4pNc8HdA1s"
SLACK_URL = f"http://127.0.0.1:9/services/T0A1B2C3D/B0A1B2C3D/{SLACK_TOKEN}"
EVIL = '<img src=x onerror="window.__pwned=1">\x1b[31m'
DOWN = '<b id="bold">down</b> & out'


@pytest.mark.parametrize("url,shown,hidden", [
    ("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "https://hooks.slack.com/services/T000/B000/…", "XXXXXXXX"),
    (SLACK_URL, "http://127.0.0.1:9/services/…/…/…", SLACK_TOKEN),
    ("https://u:pw@hooks.example.com/wasmprof?token=abc123&v=2",
     "https://…@hooks.example.com/wasmprof?token=…&v=…", "abc123"),
    ("https://discord.com/api/webhooks/123456789012345678/tok-en_abcdefghijKLMNOP",
     "https://discord.com/api/webhooks/…/…", "tok-en"),
    ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook", None),
])
def test_redact_url_hides_credentials(url, shown, hidden):
    assert redact_url(url) == shown
    if hidden:
        assert hidden not in redact_url(url)


def test_overview_is_read_scope_redacted_with_counts(tmp_path):
    cfg = ServerConfig(store=resolve_store(tmp_path / "data"), background=False, log_json=False)
    app = create_app(cfg)
    _, read_token = store_token(app.state.service.db, "reader", {"read"})
    _, admin_token = store_token(app.state.service.db, "admin", {"admin"})
    c = TestClient(app)
    admin = {"Authorization": f"Bearer {admin_token}"}
    r = c.post("/api/v1/webhooks", headers=admin, json={
        "url": SLACK_URL, "events": ["crash.new_group"], "format": "slack", "plugin": "p1",
        "secret": SECRET})
    assert r.status_code == 201, r.text
    assert c.get("/api/v1/webhooks/overview").status_code == 401
    r = c.get("/api/v1/webhooks/overview", headers={"Authorization": f"Bearer {read_token}"})
    assert r.status_code == 200, r.text
    assert SLACK_TOKEN not in r.text and SECRET not in r.text and SECRET[-4:] not in r.text
    (hook,) = r.json()["webhooks"]
    assert hook["url"] == redact_url(SLACK_URL) and "secret" not in hook
    assert (hook["events"], hook["format"], hook["plugin"], hook["enabled"]) == (
        ["crash.new_group"], "slack", "p1", True)
    assert set(hook["stats"]) == set(r.json()["counts"]) >= {"pending", "delivered", "dead"}
    assert sum(hook["stats"].values()) == 0


@pytest.fixture(scope="module")
def alerting(tmp_path_factory, data_dir):
    """A server with one webhook whose only delivery is dead (receiver answered 500 twice),
    and a decoy Slack-style webhook that never fires."""
    rx = Receiver().start()
    rx.default = Reply(500, body=DOWN.encode())
    server = ServerProcess(tmp_path_factory.mktemp("web-alerts"), env=FAST_ENV,
                           extra_args=["--allow-anonymous", "read,ingest,admin", "--quiet",
                                       "--rate-limit", "0"]).start(timeout=120)
    try:
        with server.client() as c:
            hook = c.post("/api/v1/webhooks", json={
                "url": rx.url, "events": ["crash.new_group"], "secret": SECRET,
                "max_attempts": 2, "plugin": "crash_oob", "description": EVIL}).json()
            decoy = c.post("/api/v1/webhooks", json={
                "url": SLACK_URL, "events": ["profile.regression"], "format": "slack"})
            assert decoy.status_code == 201, decoy.text
            wasm = data_dir / MODULE
            r = c.post("/api/v1/modules", params={"plugin": "crash_oob", "version": "1.0"},
                       files={"file": (wasm.name, wasm.read_bytes())})
            assert r.status_code in (200, 201), r.text
            r = c.post("/api/v1/logs", params={"plugin": "crash_oob", "version": "1.0"},
                       content=(data_dir / DUMP).read_bytes())
            assert r.status_code == 200 and r.json()["crashes"] == 1, r.text

            def dead():
                ds = c.get("/api/v1/webhooks/deliveries", params={"status": "dead"}).json()
                return ds["deliveries"] or None
            (delivery,) = wait_for(dead, timeout=60, what="a dead delivery")
        yield server, rx, hook, delivery
    finally:
        server.stop()
        rx.stop()


def test_dead_delivery_attempts_redeliver_and_badge(alerting, browser, artifacts_dir):
    server, rx, hook, dead = alerting
    did = dead["id"]
    full = httpx.get(f"{server.url}/api/v1/webhooks/deliveries/{did}").json()
    assert [a["status_code"] for a in full["attempt_log"]] == [500, 500]
    assert len(rx.requests) == 2

    page, watch = open_page(browser, server, "/#/crashes")
    try:
        page.wait_for_selector("#alerts-badge:not([hidden])", timeout=30_000)
        assert page.locator("#alerts-badge").inner_text() == "1"
        page.locator("header.topbar").screenshot(path=str(artifacts_dir / "web-alerts-badge.png"))
        page.click("#nav a[data-route=alerts]")
        row = page.locator(f"tr.delivery[data-delivery-id='{did}']")
        row.wait_for(timeout=30_000)
        settle(page, watch)
        assert row.get_attribute("data-status") == "dead"
        assert "crash.new_group" in row.inner_text() and "HTTP 500" in row.inner_text()

        hooks = page.locator("table#webhooks")
        assert hooks.locator("tr[data-webhook-id]").count() == 2
        text = hooks.inner_text()
        assert redact_url(SLACK_URL) in text and SLACK_TOKEN not in page.content()
        assert SECRET not in page.content()
        assert EVIL.replace("\x1b", "\\x1b") in text                 # shown as text...
        assert hooks.locator("img").count() == 0                      # ...never as markup
        assert page.evaluate("window.__pwned") is None
        mine = hooks.locator(f"tr[data-webhook-id='{hook['id']}']")
        assert mine.locator("td.dead-count").inner_text() == "1"
        mine.locator("td.dead-count button").click()          # its dead letters only
        page.wait_for_function("location.hash.includes('status=dead')")
        settle(page, watch)
        assert page.locator("tr.delivery").count() == 1 and row.get_attribute("data-status") == "dead"

        row.get_by_role("button", name="attempts").click()
        attempts = page.locator("table.attempts-table tbody tr")
        attempts.first.wait_for()
        assert attempts.count() == 2
        for i in range(2):
            cells = attempts.nth(i).locator("td")
            assert cells.nth(0).inner_text() == f"#{i + 1}"
            assert cells.nth(3).inner_text().split("\n") == ["HTTP 500", DOWN]   # as text
        assert page.locator("#bold").count() == 0

        rx.default = Reply(200)
        row.get_by_role("button", name="Redeliver").click()
        page.wait_for_selector(f"tr.delivery[data-delivery-id='{did}'][data-status=delivered]",
                               timeout=60_000)
        wait_for(lambda: attempts.count() == 3, timeout=10, what="the third attempt row")
        assert attempts.nth(2).locator("td").nth(3).inner_text().strip() == "HTTP 200"
        assert "redelivered" in attempts.nth(2).locator("td").nth(0).inner_text()
        assert "out of attempts" in attempts.nth(1).locator("td").nth(4).inner_text()
        wait_for(lambda: mine.locator("td").nth(7).inner_text() == "1", timeout=10,
                 what="the webhook's delivered count")
        assert mine.locator("td.dead-count").inner_text() == "0"
        page.wait_for_selector("#alerts-badge[hidden]", state="attached", timeout=10_000)
        settle(page, watch)
        page.screenshot(path=str(artifacts_dir / "web-alerts.png"), full_page=True)
        assert watch.problems() == []
    finally:
        page.context.close()

    ok = rx.answered(200)
    assert len(ok) == 1 and len(rx.requests) == 3
    got = ok[0]
    assert got.header("X-Wasmprof-Delivery") == did
    assert got.header("X-Wasmprof-Event") == "crash.new_group"
    assert got.body == rx.requests[0].body                  # the same delivery, resent
    assert documented_verifier()(SECRET, got.body, got.headers)


def test_read_only_token_gets_a_readable_admin_note(alerting, browser):
    server, rx, _hook, _dead = alerting
    with server.client() as c:           # a fresh dead letter: the decoy webhook's test
        decoy = next(w for w in c.get("/api/v1/webhooks").json()["webhooks"]
                     if w["format"] == "slack")
        did = c.post(f"/api/v1/webhooks/{decoy['id']}/test").json()["delivery_id"]
    # the decoy's port 9 refuses connections: retried, then dead after the default attempts
    wait_for(lambda: httpx.get(f"{server.url}/api/v1/webhooks/deliveries/{did}").json()["status"]
             == "dead", timeout=60, what="the decoy's test delivery to die")
    token = create_token(server, "reader", "read")
    page, watch = open_page(browser, server, "/#/")
    try:
        page.evaluate("t => localStorage.setItem('wasmprof.token', t)", token)
        page.goto(server.url + "/#/alerts?status=dead")
        row = page.locator(f"tr.delivery[data-delivery-id='{did}']")
        row.wait_for(timeout=30_000)
        assert "connect" in row.locator("td.last-answer").inner_text().lower()
        row.get_by_role("button", name="Redeliver").click()
        note = row.locator(".redeliver-note [role=alert]")
        note.wait_for()
        assert "Needs an admin token" in note.inner_text() and "can only read" in note.inner_text()
        assert httpx.get(f"{server.url}/api/v1/webhooks/deliveries/{did}").json()["status"] == "dead"
        settle(page, watch)
        # the only console error is the browser's own report of the refused (403) request
        assert all("403" in m for m in watch.console_errors) and len(watch.console_errors) == 1
        assert watch.page_errors == [] and watch.dialogs == [] and watch.external_requests == []
    finally:
        page.context.close()
