"""The ``--demo`` data: sample logs moved to now, a week of crash history with every group
status and real versions, the "AOT built without call-stack frames" hint, and the dashboard
shipped in the wheel. Real store, real app (FastAPI TestClient), real fixture dumps."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from wasmprof.config import ServerConfig, resolve_store
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.ingest.logline import LineFormat, format_record, parse_line
from wasmprof.server.app import create_app
from wasmprof.server.demo import LOG_AGE, load_samples, shift_timestamps, split_by_plugin
from wasmprof.server.routes_web import NO_CALL_STACK_HINT, entry_frame_only
from wasmprof.server.service import Service

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LOG = ROOT / "samples" / "logs" / "higress-gateway.log"
DAY = 86400.0


def _times(text: str) -> list[float]:
    """Record times of the lines the real line parser recognizes."""
    out = []
    for line in text.splitlines():
        ts = parse_line(line).timestamp
        if ts:
            out.append(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
    return out


def _service(tmp_path: Path, db_url: str | None = None) -> Service:
    cfg = ServerConfig.from_env(resolve_store(tmp_path / "data", db_url), demo=True, background=False)
    return Service(cfg)


def test_shift_moves_the_newest_record_and_keeps_spacing_and_dump_lines():
    text = SAMPLE_LOG.read_text()
    before = _times(text)
    assert len(before) > 10
    target = 1_790_000_000.25
    shifted = shift_timestamps(text, target)
    after = _times(shifted)
    assert len(after) == len(before)
    assert max(after) == pytest.approx(target, abs=1e-3)
    assert [b - a for a, b in zip(after, after[1:])] == pytest.approx(
        [b - a for a, b in zip(before, before[1:])], abs=1e-3)
    dump_lines = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert dump_lines and all(ln in shifted.splitlines() for ln in dump_lines)
    # the crashes still parse, with the new times
    crashes = list(scan_crashes(io.BytesIO(shifted.encode()), "g"))
    assert {c.plugin for c in crashes} == {"higress-system.inline-chain", "higress-system.crash-oob"}
    assert all(c.timestamp.startswith("2026-") for c in crashes)


def test_shift_handles_envoy_brackets_and_istio_json():
    lines = [format_record(LineFormat.ENVOY, "a", timestamp="2025-01-02 03:04:05.006"),
             format_record(LineFormat.ISTIO_JSON, "b", timestamp="2025-01-02 03:04:07.006")]
    out = shift_timestamps("\n".join(lines), 1_700_000_000.0).splitlines()
    assert out[0].startswith("[2023-11-14 22:13:18.000]")
    assert '"time":"2023-11-14T22:13:20.000000Z"' in out[1]
    assert parse_line(out[0]).format is LineFormat.ENVOY
    assert parse_line(out[1]).format is LineFormat.ISTIO_JSON
    assert shift_timestamps("no times here\n#00: 0x0 - f", 1.0) == "no times here\n#00: 0x0 - f"


def test_split_by_plugin_gives_each_plugin_only_its_crash():
    parts = split_by_plugin(SAMPLE_LOG.read_text(), "g")
    assert set(parts) == {"higress-system.inline-chain", "higress-system.crash-oob"}
    for plugin, text in parts.items():
        crashes = list(scan_crashes(io.BytesIO(text.encode()), "g"))
        assert [c.plugin for c in crashes] == [plugin]


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    svc = _service(tmp_path_factory.mktemp("demo"))
    start = time.time()
    loaded = load_samples(svc)
    assert loaded["errors"] == []
    with TestClient(create_app(svc.config, svc)) as client:
        yield client, loaded, start


def test_demo_history_has_every_status_real_versions_and_recent_times(demo_app):
    client, loaded, start = demo_app
    groups = client.get("/api/v1/crash-groups", params={"limit": 100}).json()["groups"]
    assert loaded["crashes"] == sum(g["count"] for g in groups) > 20
    assert {g["status"] for g in groups} == {"new", "ongoing", "regressed", "resolved"}
    for g in groups:
        assert g["versions"] and "unknown" not in g["versions"], g
    by_title = {(g["plugin"], g["status"]): g for g in groups}
    oob = by_title[("higress-system.crash-oob", "ongoing")]
    assert set(oob["versions"]) == {"1.4.1", "1.4.2"}
    # the gateway log's crash is the newest event, a few minutes old; history spans a week
    assert max(g["last_seen"] for g in groups) == pytest.approx(start - LOG_AGE, abs=60)
    assert start - min(g["first_seen"] for g in groups) > 5 * DAY
    # one post per replayed crash: none is mistaken for a duplicated block of the previous one
    events = client.get(f"/api/v1/crash-groups/{oob['id']}", params={"events": 50}).json()
    for ev in events["sample_events"][:5]:
        r = client.get(f"/api/v1/crash-events/{ev['id']}")
        assert r.status_code == 200 and "duplicated block" not in r.text
    regressed = by_title[("higress-system.inline-chain", "regressed")]
    assert regressed["resolved_at"] < regressed["last_seen"]
    assert set(regressed["versions"]) == {"2.0.0", "2.0.1"}
    # sparklines: the ongoing group has events on most days of the last week
    tl = client.get("/api/v1/web/crash-timeline", params={"hours": 168, "buckets": 7}).json()
    assert sum(1 for c in tl["groups"][str(oob["id"])] if c) >= 6


def test_demo_modules_show_every_linked_plugin_version(demo_app):
    client, _, _ = demo_app
    mods = {m["filename"]: m for m in client.get("/api/v1/modules").json()["modules"]}
    links = {(p["plugin"], p["version"]) for p in mods["crash_oob.O2.wasm"]["plugins"]}
    assert {("higress-system.crash-oob", "1.4.1"), ("higress-system.crash-oob", "1.4.2"),
            ("higress-system.body-limit", "3.0.0")} <= links


def test_demo_hints_flag_only_the_aot_built_without_call_stacks(demo_app):
    client, _, _ = demo_app
    hints = client.get("/api/v1/web/hints").json()
    mods = {m["filename"]: m for m in client.get("/api/v1/modules").json()["modules"]}
    assert hints["modules"] == {str(mods["crash_oob.O2.plain.aot"]["id"]): [NO_CALL_STACK_HINT]}
    groups = client.get("/api/v1/crash-groups", params={"limit": 100}).json()["groups"]
    flagged = [g for g in groups if str(g["id"]) in hints["groups"]]
    assert [g["plugin"] for g in flagged] == ["higress-system.body-limit"]
    assert "--enable-dump-call-stack" in NO_CALL_STACK_HINT


def _crash_log(dump: Path, plugin: str) -> bytes:
    return ("\n".join([
        format_record(LineFormat.ISTIO, f"wasm log {plugin} r v: request", thread="7", level="info"),
        format_record(LineFormat.ISTIO, "Function: proxy_on_request_headers failed: Exception: "
                      "out of bounds memory access", thread="7"),
        dump.read_text()]) + "\n").encode()


def test_call_stack_hint_follows_the_real_dumps(tmp_path, data_dir, db_url):
    """plain AOT (no --enable-dump-call-stack) -> hint; the same code with call stacks -> none;
    a plain-AOT plugin that once shows a full stack is not flagged any more. SQLite and
    PostgreSQL; the demo's resolve-in-the-past goes through the same store."""
    svc = _service(tmp_path, db_url)
    wasm = (data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()
    for plugin, aot in (("p.plain", "crash_oob.O2.plain.aot"), ("p.cs", "crash_oob.O2.cstrap.aot")):
        svc.upload_module(wasm, "crash_oob.O2.wasm", plugin=plugin, version="1", background=False)
        svc.upload_module((data_dir / "aot" / aot).read_bytes(), aot, plugin=plugin, version="1",
                          background=False)
    with TestClient(create_app(svc.config, svc)) as c:
        for plugin, dump in (("p.plain", "crash_oob.O2.load.aot-plain.log"),
                             ("p.cs", "crash_oob.O2.load.aot-cstrap.log")):
            r = c.post("/api/v1/logs", params={"plugin": plugin, "version": "1"},
                       content=_crash_log(data_dir / "dumps" / dump, plugin))
            assert r.status_code == 200 and r.json()["crashes"] == 1, r.text
        mods = {m["filename"]: m["id"] for m in c.get("/api/v1/modules").json()["modules"]}
        hints = c.get("/api/v1/web/hints").json()
        assert list(hints["modules"]) == [str(mods["crash_oob.O2.plain.aot"])]
        groups = {g["plugin"]: g["id"] for g in c.get("/api/v1/crash-groups").json()["groups"]}
        assert list(hints["groups"]) == [str(groups["p.plain"])]
        event = c.get(f"/api/v1/crash-groups/{groups['p.cs']}", params={"events": 1}).json()
        assert not entry_frame_only(event["sample_events"][0]["frames"] if "frames" in
                                    event["sample_events"][0] else event["top_frames"])
        # the same AOT module crashing with a real stack: the hint was wrong, drop it
        r = c.post("/api/v1/logs", params={"plugin": "p.plain", "version": "1"},
                   content=_crash_log(data_dir / "dumps" / "crash_oob.O2.load.aot-cstrap.log", "p.plain"))
        assert r.status_code == 200
        assert c.get("/api/v1/web/hints").json()["modules"] == {}


def test_entry_frame_only_on_raw_frames():
    assert entry_frame_only([], [{"offset": 0, "native": False}])
    assert entry_frame_only([], [{"offset": 0}, {"offset": 0x1234, "native": True}])
    assert not entry_frame_only([], [{"offset": 0x3081}, {"offset": 0x3f7}])
    assert not entry_frame_only([], [{"offset": 0x3081}])
    assert not entry_frame_only([], [])


@pytest.mark.slow
def test_wheel_ships_the_dashboard_and_serves_it(tmp_path):
    """Build the wheel from a copy of the tree, install it in a fresh venv (dependencies from
    this venv), and GET / from there: the installed dashboard is found and served."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wasmprof", src / "wasmprof", ignore=ignore)
    shutil.copytree(ROOT / "web", src / "web", ignore=ignore)
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(out), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(out.glob("wasmprof-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f.relative_to(ROOT / "web").as_posix() for f in (ROOT / "web").rglob("*")
                if f.is_file() and "__pycache__" not in f.parts}
    prefix = next(n.split("share/wasmprof/web/")[0] for n in names if "share/wasmprof/web/" in n)
    shipped = {n[len(prefix) + len("share/wasmprof/web/"):] for n in names
               if n.startswith(prefix + "share/wasmprof/web/")}
    assert {"index.html", "js/app.js", "css/app.css", "vendor/speedscope/index.html"} <= shipped
    assert shipped == expected

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    # dependencies from this venv, without its editable wasmprof (a plain path, no .pth run)
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    vsite = next((venv / "lib").glob("python3*/site-packages"))
    (vsite / "deps.pth").write_text(str(site) + "\n")
    probe = (
        "import wasmprof, sys\n"
        "from wasmprof.server.web import find_web_dir\n"
        "from starlette.testclient import TestClient\n"
        "from wasmprof.config import ServerConfig, resolve_store\n"
        "from wasmprof.server.app import create_app\n"
        "from wasmprof.server.service import Service\n"
        "cfg = ServerConfig.from_env(resolve_store(sys.argv[1], None), demo=True, background=False)\n"
        "c = TestClient(create_app(cfg, Service(cfg)))\n"
        "r = c.get('/'); j = c.get('/js/app.js')\n"
        "print(wasmprof.__file__); print(find_web_dir()); print(r.status_code, j.status_code)\n"
        "print('<script' in r.text)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WASMPROF_WEB")}
    res = subprocess.run([str(py), "-c", probe, str(tmp_path / "data")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    module_file, web_dir, statuses, has_script = res.stdout.strip().splitlines()[-4:]
    assert module_file.startswith(str(venv))
    assert Path(web_dir) == venv / "share" / "wasmprof" / "web"
    assert statuses == "200 200" and has_script == "True"


@pytest.mark.postgres
def test_demo_loads_the_same_on_postgres(tmp_path, pg_url):
    svc = _service(tmp_path, pg_url)
    loaded = load_samples(svc)
    assert loaded["errors"] == [] and loaded["resolved"] == 2
    groups = svc.crashes.list_groups(limit=100)["groups"]
    assert {g["status"] for g in groups} == {"new", "ongoing", "regressed", "resolved"}
    assert sum(g["count"] for g in groups) == loaded["crashes"]


# -- the demo's profile history (samples/profile-history.json, demo_profiles.py) ------------
HISTORY = ROOT / "samples" / "profile-history.json"
BOT = "higress-system.bot-detect"


def _recordings():
    """The spec and its versions' recordings, read as the demo reads them."""
    import orjson

    from wasmprof.server.demo_profiles import read_recording
    spec = orjson.loads(HISTORY.read_bytes())
    prof = ROOT / "samples" / "profiles"
    recs, mods = {}, {}
    for v in spec["versions"]:
        stem = v["recording"].split(".perf-script", 1)[0]
        recs[v["version"]] = read_recording(
            (prof / v["recording"]).read_bytes(), next(prof.glob(f"{stem}.perf-*.map")).read_bytes(),
            (prof / f"{stem}.run.log").read_text(), 0)
        mods[v["version"]] = v["module"].rsplit(".", 1)[0]
    return spec, recs, mods


def test_profile_history_batches_come_from_the_recordings_and_never_repeat():
    import orjson

    from wasmprof.server.demo_profiles import history_batches
    spec, recs, mods = _recordings()
    # CPU per request from the run logs: the call-stack build needs ~1.9x
    assert recs["0.9.1"].per_round / recs["0.9.0"].per_round == pytest.approx(
        (729 / 20000) / (780 / 40000), rel=1e-6)
    now = 1_790_000_000.0
    batches = history_batches(spec, recs, mods, now)
    assert len({b.body for b in batches}) == len(batches) > 100       # no identical blocks
    starts = sorted(b.start for b in batches)
    assert now - starts[0] >= 11 * 3600 and now - starts[-1] <= 900
    kernel = {sym for r in recs.values() for st in r.stacks for _pc, sym, k in st if k}
    aot_fns = {start for r in recs.values() for start, _n in r.functions}
    assert kernel and aot_fns
    seen_versions = {}
    for b in batches:
        body = orjson.loads(b.body)
        (mod,) = body["modules"]
        lo, hi = mod["text_base"], mod["text_base"] + mod["text_size"]
        for s in body["samples"]:
            assert b.start <= s["timestamp"] < b.start + 600
            names = {e["name"] for e in s["stack"] if isinstance(e, dict)}
            assert not names & kernel                                 # an agent sees no kernel
            assert any(lo <= e < hi for e in s["stack"] if isinstance(e, int)) or names
        seen_versions.setdefault(b.pod, []).append((b.start, b.version))
    # canary first: one pod runs 0.9.1 for 5 h, the others for the last 2.5 h only
    first_new = sorted(min(t for t, v in runs if v == "0.9.1") for runs in seen_versions.values())
    assert now - first_new[0] == pytest.approx(5 * 3600, abs=600)
    assert [now - t for t in first_new[1:]] == pytest.approx([2.5 * 3600] * 2, abs=600)
    for runs in seen_versions.values():                               # never back to 0.9.0
        versions = [v for _t, v in sorted(runs)]
        assert versions == sorted(versions)


def test_demo_profiles_span_hours_with_a_visible_regression(demo_app):
    client, loaded, start = demo_app
    assert loaded["profiles"] > 100 and loaded["profile_samples"] > 10_000
    tl = client.get("/api/v1/profiles/timeline", params={"plugin": BOT, "by": "version"}).json()
    assert tl["to"] - tl["from"] >= 11 * 3600
    by = {s["name"].rsplit(" ", 1)[-1]: s["points"] for s in tl["series"]}
    assert set(by) == {"0.9.0", "0.9.1"}
    assert len({t for s in by.values() for t, n in s if n > 0}) >= 100
    assert min(t for t, n in by["0.9.0"] if n > 0) - tl["from"] < 900        # from the start
    assert tl["to"] - min(t for t, n in by["0.9.1"] if n > 0) == pytest.approx(5 * 3600, abs=1200)
    # the canary pod on 0.9.1 burns ~1.9x the CPU of a pod still on 0.9.0 in the same hours
    span = {"from": int(start - 4.5 * 3600), "to": int(start - 3 * 3600)}
    total = {}
    for pod in ("higress-gateway-6c8d9f-x2k4q", "higress-gateway-6c8d9f-m7p2z"):
        r = client.get("/api/v1/profiles", params={"plugin": BOT, "labels": f"pod:{pod}",
                                                   "format": "json", **span})
        total[pod] = r.json()["total"]
    assert total["higress-gateway-6c8d9f-x2k4q"] / total["higress-gateway-6c8d9f-m7p2z"] == \
        pytest.approx(1.87, rel=0.2)
    # what changed in the function mix, and both builds resolve through the .wasm's names
    diff = client.get("/api/v1/profiles/diff", params={
        "before.plugin": BOT, "before.version": "0.9.0", "after.plugin": BOT,
        "after.version": "0.9.1", "format": "json"}).json()
    rows = {r["function"]: r for r in diff["rows"]}
    assert rows["class_match"]["delta_self"] > 5 and rows["glob_match"]["delta_self"] < -5
    for v in ("0.9.0", "0.9.1"):
        folded = client.get("/api/v1/profiles", params={"plugin": BOT, "version": v,
                                                        "format": "folded"}).text
        top = max(folded.splitlines(), key=lambda ln: int(ln.rsplit(" ", 1)[1]))
        assert top.startswith("invoke_native_with_hw_bound_check;_start.command_export;"
                              "__main_void;main;check_user_agent;glob_match"), (v, top)
