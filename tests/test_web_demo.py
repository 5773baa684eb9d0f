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


def _flame_fills_its_box(page, sel):
    """The flame graph's frame has the SVG's own aspect ratio (no bands above and below) and
    draws it at 75% of its size or more (readable labels)."""
    frame = page.locator(sel)
    w, h = (float(frame.get_attribute(a)) for a in ("data-svg-width", "data-svg-height"))
    box = frame.bounding_box()
    inner = (box["width"] - 2) / (box["height"] - 2)              # the 1 px border
    assert inner == pytest.approx(w / h, rel=0.02), (box, w, h)
    assert box["width"] >= 0.75 * w - 1


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
        # hours of CPU samples in the first minute: one plugin in two versions, stacked by version
        chart = page.locator("#cpu-chart svg.timechart-svg")
        assert int(chart.get_attribute("data-buckets")) >= 100
        assert [k.split(" ")[-1] for k in page.locator("#cpu-chart .timechart-key").all_inner_texts()] \
            == ["0.9.0", "0.9.1"]
        assert page.locator("#cpu-chart path.timechart-area").count() == 2
        _flame_fills_its_box(page, "#svg-frame")
        _shot(page, artifacts_dir, "profiles")

        page.locator("nav a", has_text="Compare").click()
        page.wait_for_selector("#diff-table tbody tr", timeout=30_000)   # a suggested comparison
        page.frame_locator("#diff-frame").locator("g.f").first.wait_for(timeout=30_000)
        settle(page, watch)
        # the suggestion is the release against the one before; the regression shows
        assert page.locator("form[data-selection=a] select[name=version]").input_value() == "0.9.0"
        assert page.locator("form[data-selection=b] select[name=version]").input_value() == "0.9.1"
        grew = page.locator("#diff-table tbody tr.grew", has_text="class_match")
        assert grew.count() == 1
        _flame_fills_its_box(page, "#diff-frame")
        _shot(page, artifacts_dir, "compare")
        assert watch.problems() == []
    finally:
        page.context.close()


PHONE_PAGES = ("/", "/crashes", "/profiles", "/compare", "/health",
               "/health?plugin=higress-system.inline-chain", "/alerts")


@pytest.mark.parametrize("width", (360, 414))
def test_demo_pages_fit_a_phone(demo, browser, artifacts_dir, width):
    """At 360-414 px no page is wider than the screen, no table squeezes a column to a few
    letters per line (tables scroll in their box), and the overview's module tables become
    one block per module whose "what to fix" gets the card's width."""
    groups = httpx.get(demo.url + "/api/v1/crash-groups").json()["groups"]
    paths = [*PHONE_PAGES, *(f"/crashes/{g['id']}" for g in groups[:2])]
    page, watch = open_page(browser, demo, "/", width=width, height=800)
    try:
        for path in paths:
            page.goto(demo.url + "/#" + path)
            page.wait_for_selector("#app h1", timeout=30_000)
            settle(page, watch)
            assert page.evaluate("document.documentElement.scrollWidth") <= width, path
            squeezed = page.evaluate("""() => [...document.querySelectorAll('#app table td')]
              .filter((td) => td.offsetParent !== null && td.innerText.trim().length >= 6
                      && !td.querySelector('svg') && td.getBoundingClientRect().width < 40)
              .map((td) => td.innerText.trim().slice(0, 30))""")
            assert squeezed == [], (path, squeezed)
            if path == "/":
                hints = page.locator("section.plugin table.modules-table td.hints")
                assert hints.count() >= 6
                for box in (hints.nth(i).bounding_box() for i in range(hints.count())):
                    assert box["width"] >= width - 80, box
                page.screenshot(path=str(artifacts_dir / f"web-demo-phone-{width}.png"), full_page=True)
        assert watch.problems() == []
    finally:
        page.context.close()
