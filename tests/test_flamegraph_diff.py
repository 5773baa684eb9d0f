"""Diff of two real recordings of the same plugin: bot_detect.O2 AOT built with
``--enable-linux-perf`` (perf.g) vs. the same plus call-stack features (perfcs.fp).

Ground truth (expected/perf): glob_match 769/780 leaf samples → 617/729, class_match
(not a separate frame in perf.g) 0 → 99/729.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from wasmprof.binary.loader import load_module
from wasmprof.cli import main
from wasmprof.flamegraph.diff import diff_svg, diff_table, format_table
from wasmprof.ingest.perf_map import read_perf_map
from wasmprof.profiles import read_profile_input, symbolize_profile

DATA = Path(__file__).parent / "data"
BEFORE, AFTER = "bot_detect.O2.perf.g", "bot_detect.O2.perfcs.fp"
SVG_NS = "{http://www.w3.org/2000/svg}"


def truth_self(run: str) -> tuple[dict[str, int], int]:
    d = json.loads(gzip.decompress((DATA / "expected/perf" / f"{run}.expected.json.gz").read_bytes()))
    return {e["wasm_name"]: e["self_samples"] for e in d["self_samples_by_wasm_function"]}, \
        d["sample_count"]


def load(run: str):
    (pmap,) = (DATA / "perf").glob(f"{run}.perf-*.map")
    (prof,) = read_profile_input(str(DATA / "perf" / f"{run}.perf-script.txt"),
                                 perf_maps=[read_perf_map(pmap)])
    return symbolize_profile(prof, [load_module(DATA / "wasm/bot_detect.O2.wasm")])


@pytest.fixture(scope="module")
def pair():
    return load(BEFORE), load(AFTER)


def test_table_normalized_matches_ground_truth(pair):
    before, after = pair
    (tb, nb), (ta, na) = truth_self(BEFORE), truth_self(AFTER)
    rows = diff_table(before, after)
    by = {r.function: r for r in rows if not r.native}
    for fn in set(tb) | set(ta):
        r = by[fn]
        assert r.before_self == pytest.approx(100 * tb.get(fn, 0) / nb)
        assert r.after_self == pytest.approx(100 * ta.get(fn, 0) / na)
    # the two expected movers lead the table: glob_match shrinks, class_match grows
    assert [rows[0].function, rows[1].function] == ["glob_match", "class_match"]
    assert rows[0].delta_self < -10 and rows[1].delta_self > 10
    assert by["class_match"].before_total == 0 and by["class_match"].after_total > 10
    deltas = [abs(r.delta_self) for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    # nothing folded into "other": every function of either side has a row
    assert len(rows) == len({(r.function, r.native) for r in rows})
    text = format_table(rows, limit=3)
    assert "glob_match" in text and "class_match" in text and len(text.splitlines()) == 4


def test_table_absolute(pair):
    before, after = pair
    (tb, _), (ta, _) = truth_self(BEFORE), truth_self(AFTER)
    by = {r.function: r for r in diff_table(before, after, mode="absolute")}
    assert by["class_match"].delta_self == ta["class_match"]
    assert by["glob_match"].delta_self == ta["glob_match"] - tb["glob_match"]
    with pytest.raises(ValueError):
        diff_table(before, after, mode="relative")


def test_differential_svg_colors_growth_and_shrink(pair):
    before, after = pair
    svg, stats = diff_svg(before, after)
    root = ET.fromstring(svg.encode())
    fills: dict[str, list[str]] = {}
    for g in root.iter(SVG_NS + "g"):
        title = g.find(SVG_NS + "title")
        rect = g.find(SVG_NS + "rect")
        if title is not None and rect is not None:
            fills.setdefault(title.text.split("\n")[0], []).append(rect.get("fill"))

    def rgb(c: str) -> tuple[int, ...]:
        return tuple(int(x) for x in c[4:-1].split(","))

    assert "rgb(190,0,0)" in fills["class_match"]                 # new stack in AFTER
    blue = [rgb(c) for c in fills["glob_match"] if rgb(c)[2] > rgb(c)[0]]
    assert blue, fills["glob_match"]                             # the hot glob_match shrank
    assert "present only in BEFORE" in svg
    assert stats.drawn > 5


def test_cli_diff(tmp_path, capsys):
    a = str(DATA / "perf" / f"{BEFORE}.perf-script.txt")
    b = str(DATA / "perf" / f"{AFTER}.perf-script.txt")
    mod = str(DATA / "wasm/bot_detect.O2.wasm")
    assert main(["diff", a, b, "--module", mod, "--json", "--limit", "2",
                 "-o", str(tmp_path / "d.svg")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["function"] for r in out["rows"]] == ["glob_match", "class_match"]
    assert out["before"]["total"] == truth_self(BEFORE)[1]
    ET.fromstring((tmp_path / "d.svg").read_bytes())
    assert main(["diff", a, b, "--module", mod, "--mode", "absolute", "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "+99" in text and "class_match" in text
