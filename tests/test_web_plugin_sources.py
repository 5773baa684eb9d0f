"""The overview's plugin sources in headless chromium, against a real ``wasmprof serve`` and a
real registry: a failing source shows its status and why; the dialog sets a source (the
admin token needed, a read token told so), the pull then succeeds and the crash that waited
is symbolized; a hostile plugin name and registry error text render as text."""

from __future__ import annotations

import pytest

from browser import browser, create_token, open_page, settle, wait_for  # noqa: F401  (fixture)
from oci_registry import push_image
from oci_server import PULL_ENV
from pg import free_port
from server_proc import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EVIL = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    env = {**PULL_ENV, "WASMPROF_ANONYMOUS": "", "WASMPROF_DB": ""}
    server = ServerProcess(tmp_path_factory.mktemp("web-src"), extra_args=["--quiet"],
                           env=env).start(timeout=120)
    server.read = create_token(server, "reader", "read")
    server.admin = create_token(server, "admin", "admin,read,ingest")
    yield server
    server.stop()


def _api(srv, method, path, **kw):
    with srv.client(srv.admin) as c:
        r = c.request(method, "/api/v1" + path, **kw)
    assert r.status_code in (200, 201, 202), r.text
    return r.json()


def _login(page, token):
    page.evaluate("t => localStorage.setItem('wasmprof.token', t)", token)
    page.reload()


def test_overview_shows_sources_and_sets_one(browser, srv, oci, data_dir, artifacts_dir):
    wasm = (data_dir / "wasm" / "crash_trap.O2.wasm").read_bytes()
    push_image(oci.open, "web/crash-trap", "1.0", [{"plugin.wasm": wasm}])
    log = (data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_bytes()
    # one plugin with a source whose registry is down, one (hostile name) whose crash waits
    down = f"oci://127.0.0.1:{free_port()}/web/down:1.0"
    _api(srv, "PUT", "/plugins/down-plugin/source", json={"url": down, "plain_http": True})
    _api(srv, "POST", "/logs", params={"plugin": EVIL, "version": "1.0"}, content=log)

    page, watch = open_page(browser, srv)
    _login(page, srv.read)
    settle(page, watch)
    section = page.locator('section.plugin[data-plugin="down-plugin"]')
    wait_for(lambda: (page.reload(), settle(page, watch),
                      section.locator(".source-line").get_attribute("data-state") in ("retrying", "failed"))[-1],
             what="the failing pull on the overview")
    text = section.locator(".source-line").inner_text()
    assert down in text and "unreachable" in text and "cannot connect" in text
    assert "could not be reached" in text                 # what the kind means

    # a read token may look but not set: the dialog says so
    evil = page.locator("section.plugin").filter(has_text="onerror")
    evil.locator("button.set-source").click()
    page.locator("dialog.source-dialog input[name=url]").fill(f"oci://{oci.open.host}/web/crash-trap")
    page.locator("dialog.source-dialog input[name=plain_http]").check()
    page.locator("dialog.source-dialog button[type=submit]").click()
    page.locator("dialog.source-dialog .dialog-status").get_by_text("admin").wait_for()
    page.locator("dialog.source-dialog button", has_text="Cancel").click()

    # with the admin token the same form sets it; the pull runs and the crash is symbolized
    _login(page, srv.admin)
    settle(page, watch)
    evil = page.locator("section.plugin").filter(has_text="onerror")
    evil.locator("button.set-source").click()
    page.locator("dialog.source-dialog input[name=url]").fill(f"oci://{oci.open.host}/web/crash-trap")
    page.locator("dialog.source-dialog input[name=plain_http]").check()
    page.locator("dialog.source-dialog input[name=username]").fill("someone")
    page.locator("dialog.source-dialog input[name=password]").fill("pw-never-shown-9")
    page.locator("dialog.source-dialog button[type=submit]").click()
    settle(page, watch)

    def pulled():
        page.reload()
        settle(page, watch)
        sec = page.locator("section.plugin").filter(has_text="onerror")
        return sec.locator(".source-line").get_attribute("data-state") == "ready" and sec
    sec = wait_for(pulled, what="the pull started from the dialog")
    assert "pulled" in sec.inner_text() and "with credentials" in sec.inner_text()
    assert "pw-never-shown-9" not in page.content()
    assert sec.locator("table.table").count() == 1            # the pulled module is listed
    page.screenshot(path=str(artifacts_dir / "web-plugin-sources.png"), full_page=True)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0
    with srv.client(srv.read) as c:
        groups = c.get("/api/v1/crash-groups", params={"plugin": EVIL}).json()["groups"]
    assert groups[0]["top_frames"][0]["status"] == "exact"

    # remove it from the dialog
    sec.locator("button.set-source").click()
    page.locator("dialog.source-dialog button.remove-source").click()
    settle(page, watch)
    page.locator("section.plugin").filter(has_text="onerror").locator(
        ".source-line", has_text="No source").wait_for()
    # expected failures only: the first load before the token was set (401) and the read
    # token's refused PUT (403); chromium logs every failed fetch as a console error
    expected = [m for m in watch.console_errors if "status of 401" in m or (
        "status of 403" in m and m.rstrip(":0)").endswith("/source"))]
    watch.console_errors = [m for m in watch.console_errors if m not in expected]
    assert watch.problems() == [], watch.problems()
    assert any("403" in m for m in expected)
