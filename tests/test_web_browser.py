"""The dashboard in headless Debian chromium against a real server holding fixture data.

The server (`wasmprof serve`, SQLite) gets real fixture inputs over HTTP: the
inline_chain and crash_trap modules with their WAMR classic-interpreter dumps, the
inline_chain source, and two real perf recordings of bot_detect (built with and without
call-stack frames). Every expectation is computed from the fixture ground truth
(``expected/dumps``, ``expected/perf``), never typed in.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import httpx
import pytest

from browser import browser, open_page, settle, start_server, wait_for  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PERF_A = "bot_detect.O2.perf.g"        # -g, AOT with frame pointers
PERF_B = "bot_detect.O2.perfcs.fp"     # AOT with call-stack frames, --call-graph=fp
COMPARE = ("/#/compare?before.plugin=bot_detect&before.labels=build%3Aperf"
           "&after.plugin=bot_detect&after.labels=build%3Aperfcs")


def _perf_files(data_dir: Path, run: str) -> tuple[Path, Path]:
    script = data_dir / "perf" / f"{run}.perf-script.txt"
    maps = sorted((data_dir / "perf").glob(f"{run}.perf-*.map"))
    assert script.is_file() and len(maps) == 1
    return script, maps[0]


def _perf_truth(data_dir: Path, run: str) -> dict:
    base = data_dir / "expected" / "perf" / f"{run}.expected.json"
    gz = base.with_name(base.name + ".gz")
    return json.loads(gzip.decompress(gz.read_bytes()) if gz.exists() else base.read_bytes())


def _dump_truth(data_dir: Path, log: str) -> dict:
    return json.loads((data_dir / "expected" / "dumps" / f"{log}.expected.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_dir):
    server = start_server(tmp_path_factory.mktemp("web-lab"), anonymous="read,ingest,admin")
    api = server.url + "/api/v1"
    try:
        with httpx.Client(timeout=120) as c:
            for sample, plugin, version in [("inline_chain", "inline_chain", "1.0"),
                                            ("crash_trap", "crash_trap", "2.0")]:
                wasm = data_dir / "wasm" / f"{sample}.O2.wasm"
                r = c.post(f"{api}/modules", params={"plugin": plugin, "version": version},
                           files={"file": (wasm.name, wasm.read_bytes())})
                assert r.status_code in (200, 201), r.text
            for log, plugin, version in [("inline_chain.O2.trap4.classic.log", "inline_chain", "1.0"),
                                         ("crash_trap.O2.trap.classic.log", "crash_trap", "2.0")]:
                r = c.post(f"{api}/logs", params={"plugin": plugin, "version": version},
                           content=(data_dir / "dumps" / log).read_bytes())
                assert r.status_code == 200 and r.json()["crashes"] == 1, r.text
            src = data_dir / "src" / "inline_chain.c"
            r = c.post(f"{api}/sources", data={"path": "src/inline_chain.c"},
                       files={"file": (src.name, src.read_bytes())})
            assert r.status_code == 200, r.text
            wasm = data_dir / "wasm" / "bot_detect.O2.wasm"
            r = c.post(f"{api}/modules", params={"plugin": "bot_detect", "version": "1.0"},
                       files={"file": (wasm.name, wasm.read_bytes())})
            assert r.status_code in (200, 201), r.text
            for run, build in [(PERF_A, "perf"), (PERF_B, "perfcs")]:
                script, pmap = _perf_files(data_dir, run)
                r = c.post(f"{api}/profiles",
                           params={"plugin": "bot_detect", "version": "1.0", "labels": f"build:{build}"},
                           files={"file": (script.name, script.read_bytes()),
                                  "perf_map": (pmap.name, pmap.read_bytes())})
                assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


def _group_id(server, plugin: str) -> int:
    groups = httpx.get(server.url + "/api/v1/crash-groups", params={"plugin": plugin}).json()["groups"]
    assert len(groups) == 1
    return groups[0]["id"]


def _loaded(page, watch, selector: str) -> None:
    page.wait_for_selector(selector, timeout=30_000)
    settle(page, watch)


def test_every_page_loads_without_errors(lab, browser, artifacts_dir):
    gid = _group_id(lab, "inline_chain")
    pages = [
        ("overview", "/#/", "section.plugin"),
        ("crash-groups", "/#/crashes", "table.groups tr[data-group-id]"),
        ("crash-group", f"/#/crashes/{gid}", "ol.backtrace"),
        ("profiles", "/#/profiles?plugin=bot_detect&labels=build%3Aperf", "#svg-frame"),
        ("compare", COMPARE, "#diff-table"),
    ]
    for name, path, ready in pages:
        page, watch = open_page(browser, lab, path)
        try:
            _loaded(page, watch, ready)
            if name == "profiles":
                page.frame_locator("#speedscope-frame").locator("canvas").first.wait_for(timeout=30_000)
                page.frame_locator("#svg-frame").locator("g.f").first.wait_for(timeout=30_000)
            assert page.locator(".error").count() == 0, page.locator(".error").first.inner_text()
            page.screenshot(path=str(artifacts_dir / f"web-{name}.png"), full_page=True)
            assert watch.problems() == [], f"{name}: {watch.problems()}"
        finally:
            page.context.close()


def test_crash_group_shows_ground_truth_function_line_and_inline_chain(lab, browser, data_dir):
    log = "inline_chain.O2.trap4.classic.log"
    truth = _dump_truth(data_dir, log)
    gid = _group_id(lab, "inline_chain")
    page, watch = open_page(browser, lab, "/#/crashes")
    try:
        _loaded(page, watch, "table.groups tr[data-group-id]")
        page.locator(f'tr[data-group-id="{gid}"] a.group-link').click()
        _loaded(page, watch, "ol.backtrace")
        chains = page.locator("ol.backtrace > li.chain")
        for k in range(2):                     # the first two input frames, innermost first
            expected = truth["frames"][k]["symbolized"]["frames"]
            rows = chains.nth(k).locator(".frame")
            assert rows.count() == len(expected)
            for i, exp in enumerate(expected):
                row = rows.nth(i)
                assert row.locator(".frame-main > .fn").inner_text() == exp["function"]
                assert row.locator(".file").inner_text() == f"{exp['file']}:{exp['line']}:{exp['column']}"
                assert ("inlined" in (row.get_attribute("class") or "")) == exp["inlined"]
                assert row.get_attribute("data-status") == "exact"
                if exp["inlined"]:
                    assert row.locator(".inl .fn").inner_text() == expected[i + 1]["function"]
        top = truth["frames"][0]["symbolized"]["frames"][0]
        assert page.locator("#group-function").inner_text() == top["function"]
        assert page.locator("#group-location").inner_text() == f"{top['file']}:{top['line']}:{top['column']}"
        first_dump_line = next(line for line in (data_dir / "dumps" / log).read_text().splitlines()
                               if line.startswith("#00:"))
        assert first_dump_line in page.locator("pre.raw-log").inner_text()
        # source context around the innermost frame's line, from the uploaded source
        page.locator("details.source > summary").first.click()
        hit = page.locator(".source-table tr.hit")
        hit.wait_for()
        source_line = (data_dir / "src" / "inline_chain.c").read_text().splitlines()[top["line"] - 1]
        assert hit.locator(".ln").inner_text() == str(top["line"])
        assert hit.locator(".code").inner_text().strip() == source_line.strip()
        assert watch.problems() == []
    finally:
        page.context.close()


def test_crash_list_filters_search_and_resolve(lab, browser, data_dir):
    truth = _dump_truth(data_dir, "crash_trap.O2.trap.classic.log")
    trap_fn = truth["frames"][0]["symbolized"]["frames"][0]["function"]
    trap_gid = _group_id(lab, "crash_trap")
    page, watch = open_page(browser, lab, "/#/crashes")
    try:
        _loaded(page, watch, "table.groups tr[data-group-id]")
        rows = page.locator("table.groups tr[data-group-id]")
        assert rows.count() == 2
        assert page.locator("tr[data-group-id] svg.sparkline rect.spark-bar").count() >= 2
        page.fill("input[name=q]", trap_fn)
        assert rows.count() == 1 and rows.first.get_attribute("data-group-id") == str(trap_gid)
        assert trap_fn in rows.first.locator(".fn").inner_text()
        page.fill("input[name=q]", "no-such-function-anywhere")
        assert rows.count() == 0 and "No crash group matches" in page.locator("table.groups").inner_text()
        page.fill("input[name=q]", "")
        page.select_option("select[name=plugin]", "inline_chain")
        assert rows.count() == 1
        assert "plugin=inline_chain" in page.url            # filters live in the URL
        page.select_option("select[name=plugin]", "")
        page.select_option("select[name=status]", "resolved")
        assert rows.count() == 0
        # resolve the crash_trap group from its page
        page.goto(f"{lab.url}/#/crashes/{trap_gid}")
        _loaded(page, watch, "ol.backtrace")
        page.get_by_role("button", name="Mark resolved").click()
        page.locator(".pill-resolved").wait_for()
        g = httpx.get(f"{lab.url}/api/v1/crash-groups/{trap_gid}").json()
        assert g["status"] == "resolved"
        page.goto(f"{lab.url}/#/crashes?status=resolved")
        _loaded(page, watch, "table.groups")
        wait_for(lambda: rows.count() == 1, what="the resolved group in the list")
        assert rows.first.get_attribute("data-status") == "resolved"
        assert watch.problems() == []
    finally:
        page.context.close()
        httpx.post(f"{lab.url}/api/v1/crash-groups/{trap_gid}/resolve", json={"resolved": False})


def test_flame_graph_renders_and_search_highlights_frames(lab, browser, data_dir):
    truth = _perf_truth(data_dir, PERF_A)
    target = max(truth["self_samples_by_wasm_function"], key=lambda r: r["self_samples"])["wasm_name"]
    with_target = sum(1 for s in truth["samples"]
                      if any(f.get("wasm_name") == target for f in s["frames"]))
    expected_pct = 100 * with_target / len(truth["samples"])
    page, watch = open_page(browser, lab, "/#/profiles?plugin=bot_detect&labels=build%3Aperf")
    try:
        _loaded(page, watch, "#svg-frame")
        ss = page.frame_locator("#speedscope-frame")
        ss.locator("canvas").first.wait_for(timeout=30_000)
        wait_for(lambda: "bot_detect" in ss.locator("body").inner_text(), what="speedscope title")
        assert not re.search(r"(?i)something went wrong|failed to load|error", ss.locator("body").inner_text())
        svg = page.frame_locator("#svg-frame")
        svg.locator("g.f").first.wait_for(timeout=30_000)
        highlighted = svg.locator('g.f rect[fill="rgb(230,0,230)"]')
        assert highlighted.count() == 0
        watch.prompt_answer = f"^{target}$"
        svg.locator("#search").click()
        wait_for(lambda: highlighted.count() > 0, what="search highlight")
        titles = svg.locator('g.f:has(> rect[fill="rgb(230,0,230)"]) > title').all_text_contents()
        assert len(titles) == highlighted.count()
        assert all(t.split("\n")[0].startswith(target) for t in titles), titles
        matched = svg.locator("#matched").text_content()
        m = re.fullmatch(r"Matched: ([\d.]+)%", matched)
        assert m, matched
        assert abs(float(m.group(1)) - expected_pct) < 0.2, (matched, expected_pct)
        assert watch.answered and watch.problems() == []
    finally:
        page.context.close()


def test_comparison_shows_the_known_change(lab, browser, data_dir):
    def shares(run):
        t = _perf_truth(data_dir, run)
        n = len(t["samples"])
        return {r["wasm_name"]: 100 * r["self_samples"] / n for r in t["self_samples_by_wasm_function"]}

    a, b = shares(PERF_A), shares(PERF_B)
    delta = {f: b.get(f, 0) - a.get(f, 0) for f in set(a) | set(b)}
    biggest = max(delta, key=lambda f: abs(delta[f]))
    grew = max(delta, key=lambda f: delta[f])
    page, watch = open_page(browser, lab, COMPARE)
    try:
        _loaded(page, watch, "#diff-table")
        rows = page.locator("#diff-table tbody tr")
        first = rows.first.locator("td")
        assert first.nth(0).locator(".fn").inner_text() == biggest
        assert first.nth(1).inner_text() == f"{a.get(biggest, 0):.1f}%"
        assert first.nth(2).inner_text() == f"{b.get(biggest, 0):.1f}%"
        assert first.nth(3).inner_text() == f"{delta[biggest]:+.1f} pt"
        grew_row = rows.filter(has=page.locator(".fn", has_text=re.compile(f"^{re.escape(grew)}$")))
        assert grew_row.count() == 1 and "grew" in grew_row.get_attribute("class")
        assert grew_row.locator("td").nth(3).inner_text() == f"{delta[grew]:+.1f} pt"
        page.frame_locator("#diff-frame").locator("g.f").first.wait_for(timeout=30_000)
        assert watch.problems() == []
    finally:
        page.context.close()


def test_selection_without_samples_says_so(lab, browser, data_dir):
    samples_b = len(_perf_truth(data_dir, PERF_B)["samples"])
    page, watch = open_page(browser, lab, "/#/profiles?plugin=bot_detect&labels=build%3Anone")
    try:
        page.get_by_text("No samples match this selection").wait_for()
        settle(page, watch)
        assert page.locator("#speedscope-frame, #svg-frame").count() == 0
        page.fill("form.selection input[name=labels]", "build:perfcs")
        page.get_by_role("button", name="Show flame graph").click()
        page.wait_for_selector("#svg-frame")
        assert f"1 input, {samples_b:,} samples" in page.locator("#profile-summary").inner_text()
        settle(page, watch)
        assert watch.problems() == []
    finally:
        page.context.close()
