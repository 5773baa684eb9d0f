"""The Profiles page on the profile store, in headless Debian chromium: the CPU-over-time
chart (stacked by plugin, tooltip, legend), brush-to-zoom re-querying the flame graph,
reset (button and keyboard), the top-functions table (sort, click to focus the graph), and
each module's share of the gateway's CPU for a recording with host frames."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from browser import browser, open_page, settle, start_server, wait_for  # noqa: F401  (fixture)
from profile_gen import StackModel, aot_ranges
from wasmprof.binary.loader import load_module

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOURS = 6


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_dir):
    server = start_server(tmp_path_factory.mktemp("web-pstore"), anonymous="read,ingest,admin")
    api = server.url + "/api/v1"
    fib = load_module(str(data_dir / "aot/fib.O2.perf.aot"))
    t0 = (int(time.time()) // 3600 - HOURS) * 3600
    try:
        with httpx.Client(timeout=120) as c:
            for plugin in ("fib", "fib-canary"):
                for path in ("wasm/fib.O2.wasm", "aot/fib.O2.perf.aot"):
                    r = c.post(f"{api}/modules", params={"plugin": plugin},
                               files={"file": (path.rsplit("/", 1)[1], (data_dir / path).read_bytes())})
                    assert r.status_code in (200, 201), r.text
            model = StackModel(aot_ranges(fib), 1)
            for h in range(HOURS):
                for plugin, n in (("fib", 300 + 100 * h), ("fib-canary", 150)):
                    batch = model.batch(n, module_id="fib", text_base=0x7F00_0000_0000,
                                        text_size=1 << 20, t0=t0 + h * 3600 + 60)
                    r = c.post(f"{api}/samples", params={"plugin": plugin, "pod": f"pod-{h % 2}"},
                               content=orjson.dumps(batch))
                    assert r.status_code == 200, r.text
            run = "bot_detect.O2.perf.g"
            wasm = data_dir / "wasm" / "bot_detect.O2.wasm"
            c.post(f"{api}/modules", params={"plugin": "bot_detect"},
                   files={"file": (wasm.name, wasm.read_bytes())})
            (pmap,) = (data_dir / "perf").glob(f"{run}.perf-*.map")
            script = data_dir / "perf" / f"{run}.perf-script.txt"
            r = c.post(f"{api}/profiles", params={"plugin": "bot_detect"},
                       files={"file": (script.name, script.read_bytes()),
                              "perf_map": (pmap.name, pmap.read_bytes())})
            assert r.status_code == 200, r.text
        server.t0 = t0
        yield server
    finally:
        server.stop()


def _api_total(server, **params) -> int:
    r = httpx.get(server.url + "/api/v1/profiles", params={**params, "format": "json"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["total"]


def _summary_samples(page) -> int:
    text = page.locator("#profile-summary").inner_text()
    return int(re.search(r"([\d,]+) samples$", text).group(1).replace(",", ""))


def test_cpu_chart_brush_reset_and_top_functions(lab, browser, artifacts_dir):
    page, watch = open_page(browser, lab, "/#/profiles?plugin=fib")
    try:
        page.wait_for_selector("#cpu-chart svg.timechart-svg path.timechart-area", timeout=30_000)
        page.wait_for_selector("#svg-frame", timeout=30_000)
        settle(page, watch)
        # stacked by plugin: one area per plugin with samples, legend in the same order
        areas = page.locator("#cpu-chart path.timechart-area")
        legend = page.locator("#cpu-chart .timechart-key").all_inner_texts()
        assert legend == ["bot_detect", "fib", "fib-canary"] and areas.count() == 3
        total = _api_total(lab, plugin="fib")
        assert _summary_samples(page) == total == sum(300 + 100 * h for h in range(HOURS))
        # hover: the tooltip names every series with its value at that bucket
        box = page.locator("#cpu-chart svg").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        tip = page.locator("#cpu-chart .timechart-tip")
        wait_for(lambda: tip.is_visible(), what="tooltip")
        assert "fib-canary:" in tip.inner_text() and "fib:" in tip.inner_text()
        # brush the middle of the chart: the flame graph now covers that range only
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.5, steps=8)
        page.mouse.up()
        wait_for(lambda: "from=" in page.url and "to=" in page.url, what="brushed range in the URL")
        q = parse_qs(urlsplit(page.url.replace("#", "", 1)).query)
        frm, to = q["from"][0], q["to"][0]
        want = _api_total(lab, plugin="fib", **{"from": frm, "to": to})
        assert 0 < want < total
        wait_for(lambda: page.locator("#profile-summary").count() and _summary_samples(page) == want,
                 what="flame graph re-queried for the brushed range")
        src = page.locator("#svg-frame").get_attribute("src")
        assert f"from={frm}" in src and f"to={to}" in src
        page.screenshot(path=str(artifacts_dir / "web-profiles-store.png"), full_page=True)
        # reset with the keyboard (Escape on the focused chart)
        page.locator("#cpu-chart svg").focus()
        page.keyboard.press("Escape")
        wait_for(lambda: "from=" not in page.url, what="reset range")
        wait_for(lambda: _summary_samples(page) == total, what="whole range again")
        # top functions: sorted by self, descending; Total sorts by total; a click focuses
        rows = page.locator("#top-table tbody tr")
        wait_for(lambda: rows.count() > 3, what="top functions")
        selfs = [int(t.split(" ")[0].replace(",", "")) for t in
                 page.locator("#top-table td.self").all_inner_texts()]
        assert selfs == sorted(selfs, reverse=True) and selfs[0] > 0
        page.locator("#top-table th[data-key=total]").click()
        totals = [int(t.split(" ")[0].replace(",", "")) for t in
                  page.locator("#top-table td.total").all_inner_texts()]
        assert totals == sorted(totals, reverse=True)
        assert page.locator("#top-table th[data-key=total]").get_attribute("aria-sort") == "descending"
        name = rows.nth(1).get_attribute("data-fn")
        rows.nth(1).locator("td.fn button").click()
        wait_for(lambda: page.locator("#focus-note code").count() == 1, what="focus note")
        assert page.locator("#focus-note code").inner_text() == name
        assert "focus=" in page.locator("#svg-frame").get_attribute("src")
        page.frame_locator("#svg-frame").locator("g.f").first.wait_for(timeout=30_000)
        settle(page, watch)
        assert watch.problems() == []
    finally:
        page.context.close()


def test_chart_by_label_and_cpu_share_of_host_frames(lab, browser):
    page, watch = open_page(browser, lab, "/#/profiles?plugin=bot_detect")
    try:
        page.wait_for_selector("#cpu-shares", timeout=30_000)
        shares = page.locator("#cpu-shares tr")
        names = [shares.nth(i).get_attribute("data-module") for i in range(shares.count())]
        assert "[host only]" in names and any(n.startswith("bot_detect") for n in names), names
        # stack by the pod label (fib's samples)
        page.goto(lab.url + "/#/profiles?plugin=fib")
        page.wait_for_selector("#cpu-chart path.timechart-area", timeout=30_000)
        page.select_option("#chart-by", "pod")
        wait_for(lambda: page.locator("#cpu-chart .timechart-key").all_inner_texts() == ["pod-0", "pod-1"],
                 what="chart stacked by pod")
        settle(page, watch)
        assert watch.problems() == []
    finally:
        page.context.close()
