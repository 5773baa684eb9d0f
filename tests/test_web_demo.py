"""What a newcomer sees: ``wasmprof serve --demo`` (the README's main command) in chromium.

The demo's content belongs to the bundled samples, so these checks are about the pages:
each loads without console errors or external requests, shows real data (crash groups
with symbolized frames, a flame graph, a comparison) and its screenshot is kept in
``tests/artifacts/web-demo-*.png``.
"""

from __future__ import annotations

import httpx
import pytest

from browser import browser, open_page, settle, start_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("web-demo"), demo=True)
    try:
        yield server
    finally:
        server.stop()


def _shot(page, artifacts_dir, name):
    page.screenshot(path=str(artifacts_dir / f"web-demo-{name}.png"), full_page=True)


def test_demo_pages_show_real_data_without_errors(demo, browser, artifacts_dir):
    groups = httpx.get(demo.url + "/api/v1/crash-groups").json()["groups"]
    assert groups, "the demo has no crash groups"
    page, watch = open_page(browser, demo, "/")
    try:
        page.wait_for_selector("section.plugin")
        settle(page, watch)
        assert page.locator("section.plugin").count() >= 1
        _shot(page, artifacts_dir, "overview")

        page.locator("nav a", has_text="Crash groups").click()
        page.wait_for_selector("table.groups tr[data-group-id]")
        settle(page, watch)
        assert page.locator("table.groups tr[data-group-id]").count() == len(groups)
        _shot(page, artifacts_dir, "crash-groups")

        page.locator("table.groups tr[data-group-id] a.group-link").first.click()
        page.wait_for_selector("ol.backtrace")
        settle(page, watch)
        assert page.locator('.frame[data-status="exact"] .file').count() >= 1
        assert page.locator("pre.raw-log").inner_text().strip()
        _shot(page, artifacts_dir, "crash-group")

        page.locator("nav a", has_text="Profiles").click()
        page.wait_for_selector("#svg-frame")
        page.frame_locator("#speedscope-frame").locator("canvas").first.wait_for(timeout=30_000)
        page.frame_locator("#svg-frame").locator("g.f").first.wait_for(timeout=30_000)
        settle(page, watch)
        _shot(page, artifacts_dir, "profiles")

        page.locator("nav a", has_text="Compare").click()
        page.wait_for_selector("#diff-table tbody tr", timeout=30_000)   # a suggested comparison
        page.frame_locator("#diff-frame").locator("g.f").first.wait_for(timeout=30_000)
        settle(page, watch)
        _shot(page, artifacts_dir, "compare")
        assert watch.problems() == []
    finally:
        page.context.close()
