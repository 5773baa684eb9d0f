"""Dashboard fixes of issue 15 in headless Debian chromium against a real server: the status
pill and actions refresh after resolve / reopen / ignore; "Regressed" shows the crash's own
time; the navigation works at 360-414 px; long raw log lines stay inside their box.

Data: the crash_trap module and its WAMR classic dump over HTTP, once as is and once
wrapped in Envoy log lines whose location field is 900 characters long (as a deep build path
makes it), under another plugin."""

from __future__ import annotations

import time

import httpx
import pytest

from browser import browser, open_page, settle, start_server, wait_for  # noqa: F401  (fixture)
from wasmprof.ingest.logline import LineFormat, format_record

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (360, 414)


def _fmt_time(t: float) -> str:
    """What the dashboard's fmtTime prints (UTC, seconds)."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def _envoy(text: str, *, ts: float, location: str = "source/extensions/common/wasm/wasm_vm.cc:38") -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    return "\n".join(format_record(LineFormat.ENVOY, line, timestamp=stamp, thread="5",
                                   location=location) for line in text.splitlines()).encode()


@pytest.fixture(scope="module")
def site(tmp_path_factory, data_dir):
    server = start_server(tmp_path_factory.mktemp("web-status"), anonymous="read,ingest,admin")
    api = server.url + "/api/v1"
    wasm = data_dir / "wasm" / "crash_trap.O2.wasm"
    dump = (data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_text()
    gids = {}
    for plugin, location in (("status-trap", None), ("long-lines", "source/" + "deep/" * 175 + "vm.cc:38")):
        r = httpx.post(f"{api}/modules", params={"plugin": plugin},
                       files={"file": (wasm.name, wasm.read_bytes())}, timeout=60)
        assert r.status_code in (200, 201), r.text
        body = _envoy(dump, ts=time.time() - 2 * 86400, **({"location": location} if location else {}))
        r = httpx.post(f"{api}/logs", params={"plugin": plugin}, content=body, timeout=60)
        assert r.status_code == 200 and r.json()["groups"], r.text
        gids[plugin] = r.json()["groups"][0]["id"]
    server.gids = gids
    server.dump = dump
    yield server
    server.stop()


def _status(page) -> str:
    return page.locator("#group-status .pill").inner_text().strip()


def _click(page, name: str) -> None:
    page.locator("#group-actions").get_by_role("button", name=name, exact=True).click()


def test_status_and_actions_refresh_after_each_change(site, browser, artifacts_dir):
    gid = site.gids["status-trap"]
    api = f"{site.url}/api/v1/crash-groups/{gid}"
    page, watch = open_page(browser, site, f"/#/crashes/{gid}")
    try:
        page.wait_for_selector("ol.backtrace")
        settle(page, watch)
        assert _status(page) == "ongoing"                     # first seen two days ago
        steps = [("Mark resolved", "resolved", "Resolved", "web-group-resolved.png"),
                 ("Reopen", "ongoing", None, None),
                 ("Ignore", "ignored", "alert nothing", "web-group-ignored.png"),
                 ("Stop ignoring", "ongoing", None, None)]
        for button, status, fact, shot in steps:
            _click(page, button)
            wait_for(lambda: _status(page) == status, what=f"the {status} pill after {button}")
            assert httpx.get(api).json()["status"] == status
            if fact:
                assert fact in page.locator("#group-status-facts").inner_text()
            if shot:
                page.screenshot(path=str(artifacts_dir / shot))
            if status == "ongoing":                           # the actions came back too
                assert page.locator("#group-actions").get_by_role(
                    "button", name="Mark resolved").count() == 1
        page.goto(f"{site.url}/#/crashes?status=ignored")
        page.wait_for_selector("table.groups")
        settle(page, watch)
        assert page.locator("table.groups tr[data-group-id]").count() == 0
        assert watch.problems() == []
    finally:
        page.context.close()


def test_regressed_shows_the_crash_time_not_the_receive_time(site, browser):
    gid = site.gids["status-trap"]
    api = site.url + "/api/v1"
    resolved_at = httpx.post(f"{api}/crash-groups/{gid}/resolve").json()["resolved_at"]
    occurred = resolved_at + 1.0        # crashed a second after the resolve ...
    time.sleep(2.5)                     # ... and the log arrives later
    r = httpx.post(f"{api}/logs", params={"plugin": "status-trap"},
                   content=_envoy(site.dump, ts=occurred))
    assert r.json()["groups"][0]["regressed"] is True, r.text
    g = httpx.get(f"{api}/crash-groups/{gid}").json()
    page, watch = open_page(browser, site, f"/#/crashes/{gid}")
    try:
        page.wait_for_selector("#group-status-facts dt")
        settle(page, watch)
        assert _status(page) == "regressed"
        facts = page.locator("#group-status-facts").inner_text()
        assert "Regressed" in facts and _fmt_time(occurred) in facts, facts
        assert g["regressed_at"] <= g["last_seen"]
        assert watch.problems() == []
    finally:
        page.context.close()
        httpx.post(f"{api}/crash-groups/{gid}/resolve", json={"resolved": False})


@pytest.mark.parametrize("width", WIDTHS)
def test_navigation_works_on_a_phone(site, browser, artifacts_dir, width):
    page, watch = open_page(browser, site, "/", width=width, height=780)
    try:
        page.wait_for_selector("#nav a")
        settle(page, watch)
        targets = [*page.locator("#nav a").all(), page.locator("#token-button")]
        names = [t.inner_text().strip() for t in targets]
        assert {"Alerts", "Health", "Token"} <= {n.split()[0] for n in names if n}, names
        for el in targets:
            box = el.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, \
                (el.inner_text(), box)
            hit = page.evaluate(
                "([x, y]) => { const e = document.elementFromPoint(x, y); "
                "return e && (e.closest('#nav a, #token-button') || e).textContent; }",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
            assert hit and el.inner_text().strip() in hit, (el.inner_text(), hit)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(artifacts_dir / f"web-nav-{width}.png"))
        page.locator("#nav a", has_text="Alerts").click()
        page.wait_for_function("location.hash.startsWith('#/alerts')")
        page.locator("#token-button").click()
        assert page.locator("dialog[open]").count() == 1
        assert watch.problems() == []
    finally:
        page.context.close()


@pytest.mark.parametrize("width", (*WIDTHS, 1360))
def test_long_raw_log_lines_stay_inside_their_box(site, browser, artifacts_dir, width):
    gid = site.gids["long-lines"]
    page, watch = open_page(browser, site, f"/#/crashes/{gid}", width=width, height=900)
    try:
        page.wait_for_selector("pre.raw-log")
        settle(page, watch)
        pre = page.locator("pre.raw-log")
        assert "deep/deep/" in pre.inner_text()               # the long lines are shown
        sizes = pre.evaluate("e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right]")
        assert sizes[0] <= sizes[1] + 1 and sizes[2] <= width, sizes
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width == WIDTHS[0]:
            pre.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts_dir / "web-raw-log-narrow.png"))
        assert watch.problems() == []
    finally:
        page.context.close()
