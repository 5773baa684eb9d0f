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
        # the AOT compiled without call stacks says how to fix it, on its own row only
        body_limit = page.locator('section.plugin[data-plugin="higress-system.body-limit"]')
        assert "--enable-dump-call-stack" in body_limit.locator(
            "tr", has_text="crash_oob.O2.plain.aot").locator("td.hints").inner_text()
        assert "call-stack" not in page.locator(
            'section.plugin[data-plugin="higress-system.inline-chain"]').inner_text()
        # a module shared by two versions is listed with both
        assert "1.4.1, 1.4.2" in page.locator(
            'section.plugin[data-plugin="higress-system.crash-oob"]').inner_text()
        _shot(page, artifacts_dir, "overview")

        page.locator("nav a", has_text="Crash groups").click()
        page.wait_for_selector("table.groups tr[data-group-id]")
        settle(page, watch)
        assert page.locator("table.groups tr[data-group-id]").count() == len(groups)
        rows = page.locator("table.groups tr[data-group-id]")
        statuses = {rows.nth(i).get_attribute("data-status") for i in range(rows.count())}
        assert statuses == {"new", "ongoing", "regressed", "resolved"}
        assert "unknown" not in page.locator("table.groups").inner_text()
        # the week-long groups draw bars on several days of their sparkline
        ongoing = page.locator('table.groups tr[data-status="ongoing"]').first
        assert ongoing.locator("svg.sparkline rect.spark-bar").count() >= 8
        _shot(page, artifacts_dir, "crash-groups")

        page.locator('table.groups tr[data-group-id]', has_text="higress-system.body-limit") \
            .locator("a.group-link").click()
        page.wait_for_selector("ol.backtrace")
        settle(page, watch)
        assert "--enable-dump-call-stack" in page.locator(".group-hints").inner_text()
        _shot(page, artifacts_dir, "crash-group-aot-plain")
        page.go_back()
        page.wait_for_selector("table.groups tr[data-group-id]")
        settle(page, watch)

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
