"""Outputs: speedscope JSON (schema-valid), folded, interactive SVG (escaping, merging,
node bounds, zoom/search in a real browser), and the ``flamegraph`` CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import orjson
import pytest
from truth import perf_truth

from wasmprof.binary.loader import load_module
from wasmprof.cli import main
from wasmprof.flamegraph.calltree import build_call_tree, tree_from_profile
from wasmprof.flamegraph.folded import folded_lines
from wasmprof.flamegraph.speedscope import speedscope_document
from wasmprof.flamegraph.svg import SvgOptions, render_svg
from wasmprof.ingest.agent_json import parse_agent_json
from wasmprof.ingest.folded import parse_folded
from wasmprof.ingest.perf_map import read_perf_map
from wasmprof.model import Frame, FrameStatus
from wasmprof.profiles import (SymbolizedProfile, SymbolizedSample, read_profile_input,
                               self_by_function, symbolize_profile)

DATA = Path(__file__).parent / "data"
SVG_NS = "{http://www.w3.org/2000/svg}"
RUNS = sorted(p.name[: -len(".perf-script.txt")] for p in (DATA / "perf").glob("*.perf-script.txt"))
HOSTILE = ['<script>alert(1)</script>', '"onload="alert(2)', "</svg><svg onload=alert(3)>",
           "a&b&amp;", "esc\x1b[31mred\x07", "]]><script>x</script>", "quote'single"]


def expected(run: str) -> dict:
    return perf_truth(DATA, run)


def symbolized(run: str):
    truth = expected(run)
    (pmap,) = (DATA / "perf").glob(f"{run}.perf-*.map")
    (prof,) = read_profile_input(str(DATA / "perf" / f"{run}.perf-script.txt"),
                                 perf_maps=[read_perf_map(pmap)])
    return symbolize_profile(prof, [load_module(DATA / truth["source_wasm"])]), truth


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((DATA / "speedscope-file-format-schema.json").read_text())


@pytest.mark.parametrize("run", RUNS)
def test_speedscope_valid_and_names_are_wasm_functions(run, schema):
    sp, truth = symbolized(run)
    doc = orjson.loads(orjson.dumps(speedscope_document(sp)))
    jsonschema.validate(doc, schema)
    names = {f["name"] for f in doc["shared"]["frames"]}
    wasm_names = {e["wasm_name"] for e in truth["self_samples_by_wasm_function"]}
    assert wasm_names <= names
    assert not any("aot_func#" in n or n.startswith("[") and "]#" in n for n in names)
    host = {f["perf_symbol"].rpartition("+0x")[0] for smp in truth["samples"]
            for f in smp["frames"] if not f["in_aot_code"] and f["perf_symbol"] != "[unknown]"}
    assert host and host <= names                                  # host frames kept
    assert sum(sum(p["weights"]) for p in doc["profiles"]) == truth["sample_count"]
    threads = {s.thread for s in sp.samples}
    assert {p["name"] for p in doc["profiles"]} == threads
    # leaf frame weights reproduce the ground truth per function
    self_w: dict[str, int] = {}
    for p in doc["profiles"]:
        for stack, w in zip(p["samples"], p["weights"], strict=True):
            n = doc["shared"]["frames"][stack[-1]]["name"]
            self_w[n] = self_w.get(n, 0) + w
    for e in truth["self_samples_by_wasm_function"]:
        assert self_w[e["wasm_name"]] == e["self_samples"]


def test_speedscope_file_line_col_and_granularity(schema):
    exp = json.loads((DATA / "expected/dumps/inline_chain.O2.trap4.aot-cstrap.log.expected.json")
                     .read_text())
    frames = [f for f in exp["frames"] if f.get("symbolized") and f["symbolized"]["frames"]]
    stack = [{"module": "m", "offset": f["lookup_file_offset"], "space": "aot"} for f in frames]
    prof = parse_agent_json(orjson.dumps({"samples": [{"stack": stack, "count": 3},
                                                      {"stack": stack[1:], "count": 1}]}))
    sp = symbolize_profile(prof, [load_module(DATA / "wasm/inline_chain.O2.wasm")])
    doc = speedscope_document(sp)
    jsonschema.validate(orjson.loads(orjson.dumps(doc)), schema)
    by_line = doc["shared"]["frames"]
    want = {(g["function"], g["line"]) for f in frames for g in f["symbolized"]["frames"] if g["line"]}
    assert want <= {(f["name"], f.get("line")) for f in by_line}
    assert all(f.get("file", "").endswith(".c") for f in by_line)
    assert any("col" in f for f in by_line)
    fn_doc = speedscope_document(sp, granularity="function")
    jsonschema.validate(orjson.loads(orjson.dumps(fn_doc)), schema)
    assert all("line" not in f for f in fn_doc["shared"]["frames"])
    assert len(fn_doc["shared"]["frames"]) <= len(by_line)


def _hostile_profile() -> SymbolizedProfile:
    root = Frame(function="root", status=FrameStatus.EXACT)
    samples = [SymbolizedSample(stack=(Frame(function=f"leaf{i}", status=FrameStatus.EXACT,
                                             file=n, line=3),
                                       Frame(function=n, status=FrameStatus.FUNCTION_ONLY,
                                             module=n, reason=n), root), count=i + 1)
               for i, n in enumerate(HOSTILE)]
    return SymbolizedProfile(samples=samples, name="<i>profile</i>")


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.encode())
    return [el.text or "" for el in root.iter() if el.tag in (SVG_NS + "title", SVG_NS + "text")]


def test_svg_escapes_attacker_names(schema):
    sp = _hostile_profile()
    svg, stats = render_svg(tree_from_profile(sp), SvgOptions(title="<b>t</b> & \"x\""))
    root = ET.fromstring(svg.encode())                    # well-formed XML
    assert len([el for el in root.iter() if el.tag == SVG_NS + "script"]) == 1
    assert "<script>alert" not in svg and "</svg><svg" not in svg and "\x1b" not in svg
    titles = "\n".join(_texts(svg))
    for n in HOSTILE:
        visible = n.replace("\x1b", "\ufffd").replace("\x07", "\ufffd")
        assert visible in titles
    assert "<b>t</b> & \"x\"" in titles
    # no attribute of any element carries a name (only numbers, colors, ids, classes)
    for el in root.iter():
        for k, v in el.attrib.items():
            assert "alert" not in v and "<" not in v, (el.tag, k, v)
    # folded and speedscope keep names intact but safe for their formats
    lines = folded_lines(sp)
    assert all(line.count(" ") >= 1 and "\x1b" not in line for line in lines)
    doc = orjson.loads(orjson.dumps(speedscope_document(sp)))
    jsonschema.validate(doc, schema)
    assert set(HOSTILE) <= {f["name"] for f in doc["shared"]["frames"]}
    assert set(HOSTILE) <= {f.get("file") for f in doc["shared"]["frames"]}
    back = parse_folded(io.BytesIO(("\n".join(lines) + "\n").encode()))
    assert sum(smp.count for smp in back.samples) == sp.total


def test_svg_tooltips_give_counts_and_percentages():
    sp, truth = symbolized("fib.O2.perf.g")
    svg, stats = render_svg(tree_from_profile(sp), SvgOptions(min_width_px=0.0001))
    titles = [t for t in _texts(svg) if t.startswith("fib_rec\n")]
    total = truth["sample_count"]
    selfs = []
    for t in titles:
        name, where, counts, status = t.split("\n")[:4]
        m = re.match(r"([\d,]+) samples \(([\d.]+)%\), self ([\d,]+) \(([\d.]+)%\)$", counts)
        n, pct, s, spct = int(m[1].replace(",", "")), float(m[2]), int(m[3].replace(",", "")), float(m[4])
        assert pct == pytest.approx(100 * n / total, abs=0.005)
        assert spct == pytest.approx(100 * s / total, abs=0.005)
        assert where == "fib.O2.wasm" and status.startswith("function-only")
        selfs.append(s)
    # recursion spreads fib_rec over many depths; the boxes' self counts add up to the truth
    assert len(titles) > 5
    assert sum(selfs) == truth["self_samples_by_wasm_function"][0]["self_samples"]


def _wide_tree(branches: int, leaves: int):
    samples = []
    for i in range(branches):
        mid = Frame(function=f"mid_{i}", status=FrameStatus.EXACT)
        for j in range(leaves):
            leaf = Frame(function=f"leaf_{i}_{j}", status=FrameStatus.FUNCTION_ONLY,
                         file="x.c", line=j + 1)
            samples.append(SymbolizedSample(stack=(leaf, mid), count=1 + (j % 3)))
    return build_call_tree(samples)


def test_svg_with_150k_nodes_is_bounded_and_says_what_it_merged():
    tree = _wide_tree(300, 500)
    nodes = tree.root.count_nodes()
    assert nodes > 150_000
    svg, stats = render_svg(tree, SvgOptions(max_nodes=8000))
    boxes = svg.count('<g class="f">')
    assert boxes == stats.drawn <= 8000
    assert stats.bytes == len(svg.encode()) < 3_000_000
    # every node is drawn, merged into a grey box, or counted as left out
    assert stats.drawn - stats.merged_boxes + stats.merged_frames + stats.dropped_frames == nodes
    assert stats.merged_frames > 100_000
    notes = [t for t in _texts(svg) if "narrower than" in t and "merged" in t]
    assert notes and f"{stats.merged_frames + stats.dropped_frames:,} frames" in notes[0]
    ET.fromstring(svg.encode())


def test_small_profile_is_not_merged():
    sp, _ = symbolized("fib.O2.plain.g")
    tree = tree_from_profile(sp)
    svg, stats = render_svg(tree, SvgOptions(min_width_px=0.0001))
    assert stats.merged_frames == stats.dropped_frames == 0
    assert stats.drawn == tree.root.count_nodes()
    assert "narrower than" not in svg


def test_folded_roundtrip_keeps_counts_and_names():
    sp, truth = symbolized("cxx_plugin.O2.perf.g")
    text = "\n".join(folded_lines(sp)) + "\n"
    back = symbolize_profile(parse_folded(io.BytesIO(text.encode())))
    assert "\n".join(folded_lines(back)) + "\n" == text
    got = {name: n for (_, name), n in self_by_function(back).items()}
    for e in truth["self_samples_by_wasm_function"]:
        assert got[e["wasm_name"]] == e["self_samples"]


def test_cli_flamegraph_formats(tmp_path, schema, capsysbinary):
    script = str(DATA / "perf/fib.O2.perf.g.perf-script.txt")
    mod = str(DATA / "wasm/fib.O2.wasm")
    assert main(["flamegraph", script, "--module", mod, "-o", str(tmp_path / "f.svg")]) == 0
    ET.fromstring((tmp_path / "f.svg").read_bytes())
    assert main(["flamegraph", script, "--module", mod, "-o", str(tmp_path / "f.json")]) == 0
    jsonschema.validate(json.loads((tmp_path / "f.json").read_text()), schema)
    capsysbinary.readouterr()
    assert main(["flamegraph", script, "--module", mod, "--format", "folded"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert "invoke_native_with_hw_bound_check;" in out and ";fib_rec " in out
    assert "aot_func#" not in out
    assert main(["flamegraph", script, "--module", mod, "-o", str(tmp_path / "g.folded"),
                 "--json"]) == 0
    summary = json.loads(capsysbinary.readouterr().out)
    assert summary["self_by_function"][0] == {"wasm_index": 11, "function": "fib_rec", "self": 784}


def test_cli_errors_exit_2_and_name_the_file(tmp_path):
    bad = tmp_path / "junk.bin"
    bad.write_bytes(b"\x7fELF not a profile")
    r = subprocess.run([sys.executable, "-m", "wasmprof", "flamegraph", str(bad), "-o",
                        str(tmp_path / "x.svg")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "junk.bin" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "wasmprof", "flamegraph", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--perf-map" in r.stdout


@pytest.mark.browser
def test_svg_zoom_and_search_in_a_real_browser(tmp_path):
    from browser import chromium_path
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    sp, truth = symbolized("bot_detect.O2.perfcs.fp")
    svg, _ = render_svg(tree_from_profile(sp))
    path = tmp_path / "f.svg"
    path.write_text(svg)
    total = truth["sample_count"]
    glob_total = sum(s.count for s in sp.samples if any(f.function == "glob_match" for f in s.stack))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu",
                                                         "--disable-dev-shm-usage"])
        page = b.new_page(viewport={"width": 1250, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        box = page.locator("g.f", has_text="check_user_agent").first
        box.click()
        w = float(box.locator("rect").get_attribute("width"))
        assert w == pytest.approx(1200 - 20, abs=0.1)             # zoomed to full width
        assert page.locator("#reset").get_attribute("class") == "b"
        page.once("dialog", lambda d: d.accept("^glob_match$"))
        page.locator("#search").click()
        matched = page.locator("#matched").text_content()
        assert matched == f"Matched: {100 * glob_total / total:.1f}%"
        page.keyboard.press("Escape")
        assert page.locator("#matched").text_content() == ""
        b.close()
    assert not errors


def test_focus_drills_into_merged_frames(tmp_path, capsysbinary):
    from wasmprof.flamegraph.calltree import focus_tree

    tree = _wide_tree(300, 500)
    focused = focus_tree(tree, lambda n: n == "mid_7")
    svg, stats = render_svg(focused, SvgOptions(max_nodes=8000))
    assert stats.merged_frames == stats.dropped_frames == 0
    leaves = [t for t in _texts(svg) if t.startswith("leaf_7_")]
    assert len(leaves) == 500
    assert focused.total == sum(1 + (j % 3) for j in range(500))
    # CLI: folded output cut at the focused frame, counts re-aggregated
    script = str(DATA / "perf/bot_detect.O2.perfcs.fp.perf-script.txt")
    mod = str(DATA / "wasm/bot_detect.O2.wasm")
    assert main(["flamegraph", script, "--module", mod, "--format", "folded",
                 "--focus", "^check_user_agent$"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines and all(ln.startswith("check_user_agent") for ln in lines)
    assert len({ln.rpartition(" ")[0] for ln in lines}) == len(lines)
    sp, _ = symbolized("bot_detect.O2.perfcs.fp")
    assert sum(int(ln.rpartition(" ")[2]) for ln in lines) == sum(
        s.count for s in sp.samples if any(f.function == "check_user_agent" for f in s.stack))
