"""web/js/timechart.js in headless Debian chromium, on the page the server serves: bucketed
counts are drawn as flat steps of their bucket's width (a lone bucket stays visible, two
buckets are two flat steps, never a ramp; a missing bucket is a gap), stacked series sit on
each other, unstacked counts are bars side by side, gauges are lines; the tooltip names the
bucket's values, the brush snaps to whole buckets and the keyboard selects and resets.

The geometry is read back from the drawn SVG (``isPointInFill`` / bounding boxes), not from
the chart's own bookkeeping."""

from __future__ import annotations

import pytest

from browser import browser, open_page, settle, start_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser]

# Renders one chart into a fresh 800 px box; brushes and resets are recorded on window.
RENDER = """async ({ id, options }) => {
  const { timeChart } = await import('/js/timechart.js');
  const box = document.createElement('div');
  box.id = id; box.style.width = '800px';
  document.body.prepend(box);
  window.__calls = window.__calls || {};
  const calls = window.__calls[id] = { brush: [], reset: 0 };
  timeChart(box, { ...options,
    onBrush: (a, b) => calls.brush.push([a, b]), onReset: () => { calls.reset += 1; } });
  const plot = box.querySelector('.timechart-plot');
  return { x: +plot.getAttribute('x'), y: +plot.getAttribute('y'),
           w: +plot.getAttribute('width'), h: +plot.getAttribute('height') };
}"""

# The topmost and bottommost filled y (SVG units) of a series' shape at SVG x, or null.
FILL_AT = """([id, k, x]) => {
  const el = document.querySelector(`#${id} .timechart-series [data-series="${k}"]`);
  const svg = el.ownerSVGElement, p = svg.createSVGPoint();
  const ys = [];
  for (let y = 0; y <= +svg.getAttribute('height'); y += 0.25) {
    p.x = x; p.y = y;
    if (el.isPointInFill(p)) ys.push(y);
  }
  return ys.length ? [ys[0], ys[ys.length - 1]] : null;
}"""

BBOX = """([id, sel]) => [...document.querySelectorAll(`#${id} ${sel}`)].map((el) => {
  const b = el.getBBox(); return [b.x, b.y, b.width, b.height]; })"""


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    server = start_server(tmp_path_factory.mktemp("web-timechart"), anonymous="read")
    pg, watch = open_page(browser, server, "/#/alerts", width=1000, height=900)
    try:
        pg.wait_for_selector("h1")
        settle(pg, watch)
        pg.watch = watch
        yield pg
        assert watch.problems() == []
    finally:
        pg.context.close()
        server.stop()


def render(page, id_: str, **options) -> dict:
    return page.evaluate(RENDER, {"id": id_, "options": options})


def x_of(plot: dict, t: float, t0: float, t1: float) -> float:
    return plot["x"] + (t - t0) / (t1 - t0) * plot["w"]


def test_a_lone_bucket_is_visible_at_any_zoom(page):
    # one 10 s bucket in a day: narrower than a pixel, drawn at least 3 px wide
    plot = render(page, "lone", series=[{"name": "a", "points": [[43200, 7]]}],
                  **{"from": 0, "to": 86400, "step": 10, "unit": "samples"})
    (box,) = page.evaluate(BBOX, ["lone", ".timechart-area"])
    assert box[2] >= 2.9 and box[3] > 0.5 * plot["h"]
    centre = x_of(plot, 43205, 0, 86400)
    assert box[0] <= centre <= box[0] + box[2]
    assert page.get_attribute("#lone svg", "data-buckets") == "1"
    # one bucket that is the whole range (the demo's first chart): the whole plot width
    plot = render(page, "whole", series=[{"name": "a", "points": [[1000, 1509]]}],
                  **{"from": 1000, "to": 1010, "step": 10})
    (box,) = page.evaluate(BBOX, ["whole", ".timechart-area"])
    assert box[2] == pytest.approx(plot["w"], abs=0.2) and box[3] > 0


def test_two_buckets_are_two_flat_steps_not_a_ramp(page):
    plot = render(page, "two", series=[{"name": "cpu", "points": [[1000, 4], [1010, 2]]}],
                  **{"from": 1000, "to": 1020, "step": 10})
    tops = []
    for t0 in (1000, 1010):
        edge = [page.evaluate(FILL_AT, ["two", 0, x_of(plot, t0 + f * 10, 1000, 1020)])
                for f in (0.05, 0.5, 0.95)]
        assert all(e is not None for e in edge)
        assert max(e[0] for e in edge) - min(e[0] for e in edge) <= 0.5      # flat top
        assert all(e[1] >= plot["y"] + plot["h"] - 1 for e in edge)          # down to 0
        tops.append(edge[0][0])
    bottom = plot["y"] + plot["h"]
    assert (bottom - tops[0]) == pytest.approx(2 * (bottom - tops[1]), rel=0.03)


def test_stacked_series_sit_on_each_other_and_a_missing_bucket_is_a_gap(page):
    series = [{"name": "a", "points": [[0, 2], [10, 2], [30, 1]]},
              {"name": "b", "points": [[0, 1], [10, 3], [30, 1]]}]
    plot = render(page, "stack", series=series, stacked=True, **{"from": 0, "to": 40, "step": 10})
    mid = {t: x_of(plot, t + 5, 0, 40) for t in (0, 10, 20, 30)}
    a10, b10 = (page.evaluate(FILL_AT, ["stack", k, mid[10]]) for k in (0, 1))
    assert b10[1] == pytest.approx(a10[0], abs=0.6)                # b's bottom = a's top
    unit = (plot["y"] + plot["h"] - a10[0]) / 2                    # px per sample
    assert b10[1] - b10[0] == pytest.approx(3 * unit, rel=0.05)
    for k in (0, 1):                                               # [20, 30): no data, no fill
        assert page.evaluate(FILL_AT, ["stack", k, mid[20]]) is None
        assert page.evaluate(FILL_AT, ["stack", k, mid[30]]) is not None


def test_unstacked_counts_are_bars_side_by_side_and_gauges_are_lines(page):
    pts = [[t, 1] for t in range(0, 100, 10)]
    series = [{"name": n, "points": pts} for n in ("crashes", "rebuilds", "recoveries")]
    series.append({"name": "crashed", "kind": "gauge", "points": [[t, 0] for t in range(0, 100, 10)]})
    render(page, "bars", series=series, stacked=False, **{"from": 0, "to": 100, "step": 10})
    boxes = page.evaluate(BBOX, ["bars", ".timechart-bars"])
    assert len(boxes) == 3 and all(b[2] > 0 and b[3] > 0 for b in boxes)
    # identical values do not hide each other: each series has its own slot in the bucket
    firsts = sorted(b[0] for b in boxes)
    assert firsts[1] - firsts[0] > 5 and firsts[2] - firsts[1] > 5
    assert page.locator("#bars polyline.timechart-line.timechart-gauge").count() == 1


def test_tooltip_brush_snapping_and_keyboard(page):
    pts = [[t, 10 + t / 10] for t in range(0, 600, 60)]              # 10 buckets of 60 s
    plot = render(page, "io", series=[{"name": "fib", "points": pts}, {"name": "fib-canary", "points": pts}],
                  **{"from": 0, "to": 600, "step": 60, "unit": "samples"})
    svg = page.locator("#io svg")
    box = svg.bounding_box()
    scale = box["width"] / float(svg.get_attribute("width"))
    sx = lambda t: box["x"] + x_of(plot, t, 0, 600) * scale            # noqa: E731
    y = box["y"] + box["height"] / 2
    page.mouse.move(sx(150), y)                                         # inside [120, 180)
    tip = page.locator("#io .timechart-tip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert "fib: 22 samples" in text and "fib-canary: 22 samples" in text and "total: 44" in text
    band = page.evaluate(BBOX, ["io", ".timechart-band"])[0]
    assert band[0] == pytest.approx(x_of(plot, 120, 0, 600), abs=0.2)
    # drag from inside bucket 1 to inside bucket 3: the range is buckets 1..3 exactly
    page.mouse.move(sx(75), y)
    page.mouse.down()
    page.mouse.move(sx(200), y, steps=6)
    page.mouse.up()
    calls = lambda: page.evaluate("window.__calls.io")                 # noqa: E731
    assert calls()["brush"] == [[60, 240]]
    page.mouse.move(box["x"] + box["width"] + 50, y)                   # leave: no tooltip
    assert not tip.is_visible()
    # keyboard: two steps right, Shift+Right selects two buckets, Enter brushes them
    svg.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    assert calls()["brush"][-1] == [60, 180]
    page.keyboard.press("Escape")
    assert calls()["reset"] == 1
