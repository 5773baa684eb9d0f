"""The dashboard's plugin health in headless chromium against a real ``wasmprof serve
--scrape-envoy`` scraping a real stats endpoint (a plugin that leaks on every scrape, one
that crash-loops), with a CPU profile of the same plugin: the plugin page shows CPU, memory
and VM health on the same time axis, one brush zooms all three, Reset goes back; the
overview ranks plugins by memory growth and crash/rebuild rate and shows a failing target;
a hostile plugin name from a log renders as text."""

from __future__ import annotations

import time

import pytest

from browser import browser, open_page, settle, wait_for  # noqa: F401  (fixture)
from envoy_stats import PAGE, Gateway, StatsServer, memory_block
from server_proc import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EVIL = "<img/src=x/onerror=window.__pwned=1>"


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir):
    g = Gateway()
    g.add("key-auth")
    g.add("bot-detect")
    renders = [0]
    plain = g.render

    def render():
        renders[0] += 1
        g.grow("key-auth", 1)
        if renders[0] % 5 == 0:
            g.crash("bot-detect")
        return plain()
    g.render = render
    with StatsServer(g) as srv, StatsServer(Gateway()) as down:
        down.fail = 503
        server = ServerProcess(tmp_path_factory.mktemp("web-health") / "data", extra_args=[
            "--allow-anonymous", "read,ingest,admin", "--quiet", "--scrape-envoy", srv.url,
            down.url, "--scrape-interval", "0.2"], env={"WASMPROF_ANONYMOUS": "", "WASMPROF_DB": ""}).start()
        try:
            with server.client() as c:
                assert c.post("/api/v1/modules?plugin=key-auth&version=1.0",
                              content=(data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()).status_code == 201
                assert c.put("/api/v1/health/settings", json={
                    "memory_window": 4, "memory_min_growth_bytes": 1, "crash_window": 4,
                    "check_interval": 0.2}).status_code == 200
                t0 = time.time()
                wait_for(lambda: renders[0] >= 30, timeout=60, what="30 scrapes")
                t1 = time.time()
                r = c.post("/api/v1/profiles", params={"plugin": "key-auth", "format": "folded",
                                                       "from": t0 + 0.5, "to": t1 - 0.5},
                           content=b"proxy_on_request_headers;check_key;glob_match 120\n"
                                   b"proxy_on_request_headers;check_key 30\n")
                assert r.status_code == 200, r.text
                named = f"[2025-11-03 08:20:00.000][31][info][wasm] wasm log {EVIL} root vm: hi\n"
                r = c.post("/api/v1/logs?source=pod-x",
                           content=(named + memory_block(uptime=5, memories=9 * PAGE)).encode())
                assert r.json()["memory"]["plugins"] == [EVIL]
                wait_for(lambda: c.get("/api/v1/health/alerts").json()["alerts"], timeout=30,
                         what="a health alert")
            yield server
        finally:
            server.stop()


def charts(page):
    return page.evaluate("""() => [...document.querySelectorAll('.chart-box')].map(b => ({
        chart: b.dataset.chart, from: Number(b.dataset.from), to: Number(b.dataset.to),
        series: Number(b.dataset.series),
        shapes: b.querySelectorAll('svg .timechart-series polygon, svg .timechart-series polyline, svg .timechart-series path, svg .timechart-series circle').length,
        label: (b.querySelector('svg') || {}).ariaLabel || (b.querySelector('svg') || {getAttribute: () => ''}).getAttribute('aria-label')}))""")


def test_plugin_page_cpu_memory_vm_on_one_axis_and_one_brush(browser, env, artifacts_dir):
    page, watch = open_page(browser, env, "/#/health?plugin=key-auth", height=1300)
    page.wait_for_selector(".chart-box[data-chart=vm] svg .timechart-series", state="attached")
    settle(page, watch)
    got = charts(page)
    assert [c["chart"] for c in got] == ["cpu", "memory", "vm"]
    assert len({(c["from"], c["to"]) for c in got}) == 1          # one time axis
    assert all(c["series"] >= 1 and c["shapes"] >= 1 for c in got), got
    assert len({c["label"].split(",")[1] for c in got}) == 1      # same range in each chart's text
    assert page.locator("#memory-growth").inner_text().startswith("steady growth")
    assert "plugin.memory_growth" in page.locator("#plugin-alerts").inner_text()
    before = got[0]
    page.screenshot(path=str(artifacts_dir / "web-health-plugin.png"), full_page=True)

    # brush on the memory chart: every chart shows the selected range
    svg = page.locator(".chart-box[data-chart=memory] svg")
    box = svg.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.mouse.up()
    wait_for(lambda: charts(page) and charts(page)[0]["from"] > before["from"], timeout=30,
             what="zoomed charts")
    settle(page, watch)
    zoomed = charts(page)
    assert len({(c["from"], c["to"]) for c in zoomed}) == 1
    assert zoomed[0]["to"] - zoomed[0]["from"] < (before["to"] - before["from"]) * 0.5
    assert "from=" in page.url and "to=" in page.url
    page.locator(".chart-box[data-chart=cpu] .timechart-reset").click()
    wait_for(lambda: charts(page) and charts(page)[0]["from"] == before["from"], timeout=30,
             what="reset charts")
    settle(page, watch)
    assert watch.problems() == []


def test_overview_ranks_plugins_and_shows_failing_target(browser, env, artifacts_dir):
    page, watch = open_page(browser, env, "/#/")
    page.wait_for_selector(".health-overview .rank-memory li")
    settle(page, watch)
    first = page.locator(".health-overview .rank-memory li").first
    assert first.get_attribute("data-plugin") == "key-auth"
    assert "steady growth" in first.inner_text()
    crash = page.locator(".health-overview .rank-crash li").first
    assert crash.get_attribute("data-plugin") == "bot_detect"
    problems = page.locator(".health-overview .scrape-problems").inner_text()
    assert "failing" in problems and "HTTP 503" in problems
    page.screenshot(path=str(artifacts_dir / "web-health-overview.png"), full_page=True)

    page.goto(env.url + "/#/health")
    page.wait_for_selector("table.targets tbody tr")
    settle(page, watch)
    statuses = sorted(page.locator("table.targets tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"))
    assert statuses == ["failing", "ok"]
    names = page.locator("table.rank-memory a.plugin-link").all_inner_texts()
    assert names[0] == "key-auth" and EVIL in names              # shown as text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("table.rank-memory img").count() == 0
    page.screenshot(path=str(artifacts_dir / "web-health-list.png"), full_page=True)

    page.locator("table.rank-memory a.plugin-link", has_text="onerror").click()
    page.wait_for_selector(".chart-box[data-chart=memory]")
    settle(page, watch)
    assert page.locator("h1 .plugin-name").inner_text() == EVIL
    assert page.evaluate("window.__pwned") is None
    assert watch.problems() == []
