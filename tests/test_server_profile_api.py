"""The profile store through a real ``wasmprof serve``: poisoned batches are 400 and the
plugin keeps working; Pyroscope's ``/ingest``; pprof in and out (checked with ``go tool
pprof``); time series and label discovery; 413 for a query over its budget."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time

import orjson
import pytest

from pg import wait_until
from profile_gen import StackModel, aot_ranges
from server_proc import ServerProcess
from wasmprof.binary.loader import load_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("srv-pstore"),
                           extra_args=["--allow-anonymous", "ingest,read,admin",
                                       "--rate-limit", "0", "--quiet"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fib_plugin(srv, data_dir):
    """Plugin ``fib`` with its .wasm and .aot uploaded and indexed."""
    with srv.client() as c:
        for path in ("wasm/fib.O2.wasm", "aot/fib.O2.perf.aot"):
            r = c.post("/api/v1/modules", params={"plugin": "fib"},
                       files={"file": (path.rsplit("/", 1)[1], (data_dir / path).read_bytes())})
            assert r.status_code in (200, 201), r.text
            mid = r.json()["id"]
            wait_until(lambda: c.get(f"/api/v1/modules/{mid}").json()["symbols"]["index"]
                       in ("ready", "failed"), timeout=60)
    return load_module(str(data_dir / "aot/fib.O2.perf.aot"))


def _batch(fib, seed, n=300, t0=None):
    return StackModel(aot_ranges(fib), seed).batch(
        n, module_id="fib", text_base=0x7F00_0000_0000, text_size=1 << 20,
        t0=t0 if t0 is not None else time.time() - 900)


def _folded(c, **params) -> dict[str, int]:
    r = c.get("/api/v1/profiles", params={**params, "format": "folded"})
    assert r.status_code == 200, r.text
    return {ln.rsplit(" ", 1)[0]: int(ln.rsplit(" ", 1)[1]) for ln in r.text.splitlines()}


POISON = [
    {"stack": [4096], "count": -5},
    {"stack": [4096], "count": 2.5},
    {"stack": [4096], "count": 1e300},
    {"stack": [4096], "count": 9007199254740993},
    {"stack": ["0xzz"]},
    {"stack": [{"offset": 1, "space": []}]},
    {"stack": [{"offset": 1, "space": "bogus"}]},
    {"stack": [4096], "timestamp": 32503680000},
]


def test_poisoned_batches_get_400_and_the_plugin_keeps_working(srv, fib_plugin):
    with srv.client() as c:
        assert c.post("/api/v1/samples", params={"plugin": "fib", "pod": "p1"},
                      content=orjson.dumps(_batch(fib_plugin, 1))).status_code == 200
        before = _folded(c, plugin="fib", labels="pod:p1")
        for bad in POISON:
            body = {"modules": [{"id": "fib", "text_base": 4096}],
                    "samples": [{"stack": [4100]}, bad]}
            r = c.post("/api/v1/samples", params={"plugin": "fib", "pod": "p1"},
                       content=orjson.dumps(body))
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"].startswith("bad agent sample batch field samples[1]"), r.text
        # nothing of the refused batches was stored, every export still works
        assert _folded(c, plugin="fib", labels="pod:p1") == before
        for fmt in ("speedscope", "svg", "json", "pprof"):
            assert c.get("/api/v1/profiles", params={"plugin": "fib", "format": fmt}).status_code == 200
        assert c.get("/api/v1/profiles/diff", params={"before.plugin": "fib",
                                                      "after.plugin": "fib"}).status_code == 200


def test_pyroscope_ingest_folded_and_pprof(srv):
    t = int(time.time()) - 300
    folded = b"main;handle_request;glob_match 7\nmain;handle_request;class_match 3\nmain;idle 2\n"
    with srv.client() as c:
        r = c.post("/ingest", params={"name": "bot.cpu{env=prod,region=eu-1}", "from": t,
                                      "until": t + 10, "format": "folded", "sampleRate": 100,
                                      "spyName": "ebpfspy"}, content=folded)
        assert r.status_code == 200, r.text
        assert r.json()["plugin"] == "bot" and r.json()["weight"] == 12
        got = _folded(c, plugin="bot", labels="env:prod,region:eu-1")
        assert got == {"main;handle_request;glob_match": 7, "main;handle_request;class_match": 3,
                       "main;idle": 2}
        names = c.get("/api/v1/profiles/labels", params={"plugin": "bot"}).json()["names"]
        assert {"env", "region", "spy", "plugin"} <= set(names)
        assert c.get("/api/v1/profiles/labels/env/values").json()["values"] == ["prod"]
        # the same stacks as pprof, multipart `profile` like Pyroscope's clients send
        pprof = c.get("/api/v1/profiles", params={"plugin": "bot", "format": "pprof"}).content
        r = c.post("/ingest", params={"name": "bot2{env=stage}", "from": t, "until": t + 10,
                                      "format": "pprof"},
                   files={"profile": ("cpu.pb.gz", pprof)})
        assert r.status_code == 200, r.text
        assert _folded(c, plugin="bot2") == got
        for bad in ({"name": "x{broken", "from": t, "until": t}, {"name": "x", "format": "jfr"}):
            assert c.post("/ingest", params=bad, content=folded).status_code in (400, 422)


def test_pprof_round_trip_and_go_tool_pprof(srv, fib_plugin, tmp_path):
    with srv.client() as c:
        c.post("/api/v1/samples", params={"plugin": "fib", "pod": "rt"},
               content=orjson.dumps(_batch(fib_plugin, 5)))
        want = _folded(c, plugin="fib", labels="pod:rt")
        data = c.get("/api/v1/profiles", params={"plugin": "fib", "labels": "pod:rt",
                                                 "format": "pprof"}).content
        assert data[:2] == b"\x1f\x8b"
        r = c.post("/api/v1/profiles", params={"plugin": "fib-rt"}, content=data)
        assert r.status_code == 200 and r.json()["format"] == "pprof", r.text
        assert _folded(c, plugin="fib-rt") == want
        bad = gzip.compress(b"\x0a\x02\x08\x01")       # sample_type with an unknown string index
        assert c.post("/api/v1/profiles", params={"plugin": "x", "format": "pprof"},
                      content=bad).status_code == 400
    go = shutil.which("go")
    if go is None:
        pytest.skip("go (golang-go) is not installed")
    path = tmp_path / "fib.pb.gz"
    path.write_bytes(data)
    out = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=1000", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    leaves: dict[str, int] = {}
    for stack, n in want.items():
        leaf = stack.split(";")[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
    top = max(leaves, key=leaves.get)
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().endswith(" " + top))
    assert int(line.split()[0]) == leaves[top], line


def test_timeline_and_label_discovery(srv, fib_plugin):
    t = (int(time.time()) // 3600 - 5) * 3600
    with srv.client() as c:
        for i, pod in enumerate(("tl-a", "tl-b", "tl-a")):
            r = c.post("/api/v1/samples", params={"plugin": "fibtl", "pod": pod},
                       content=orjson.dumps(_batch(fib_plugin, 30 + i, n=200, t0=t + i * 3600)))
            assert r.status_code == 200, r.text
        tl = c.get("/api/v1/profiles/timeline", params={"plugin": "fibtl", "step": 3600,
                                                        "by": "pod"}).json()
        assert tl["step"] == 3600 and [s["name"] for s in tl["series"]] == ["tl-a", "tl-b"]
        per = {s["name"]: [v for _, v in s["points"]] for s in tl["series"]}
        assert per["tl-a"][0] == 200 and per["tl-b"][1] == 200 and per["tl-a"][2] == 200
        assert sum(per["tl-a"]) == 400
        assert c.get("/api/v1/profiles/labels/pod/values",
                     params={"plugin": "fibtl"}).json()["values"] == ["tl-a", "tl-b"]
        # brushing one hour selects that hour's samples only
        got = _folded(c, plugin="fibtl", **{"from": t + 3600, "to": t + 7199})
        assert sum(got.values()) == 200
        assert c.get("/api/v1/profiles/timeline", params={"plugin": "fibtl",
                                                          "step": 5}).status_code == 422


def test_query_over_its_budget_is_413(tmp_path, fib_plugin):
    server = ServerProcess(tmp_path / "small", extra_args=["--allow-anonymous", "ingest,read",
                                                           "--quiet"],
                           env={"WASMPROF_PROFILE_QUERY_PAIRS": "50"}).start()
    try:
        with server.client() as c:
            c.post("/api/v1/samples", params={"plugin": "q"},
                   content=orjson.dumps(_batch(fib_plugin, 9, n=300)))
            r = c.get("/api/v1/profiles", params={"plugin": "q", "format": "svg"})
            assert r.status_code == 413 and "time range" in r.json()["detail"], r.text
            assert c.get("/api/v1/profiles/timeline", params={"plugin": "q"}).status_code == 200
    finally:
        server.stop()
