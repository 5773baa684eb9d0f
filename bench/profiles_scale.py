#!/usr/bin/env python3
"""Profile store at fleet scale: ingest, bytes on disk, query latency, RSS — SQLite and
PostgreSQL side by side, plus the previous design (git main's ProfileService) for the ratio.

    .venv/bin/python bench/profiles_scale.py                      # 10M samples, both backends
    .venv/bin/python bench/profiles_scale.py --samples 1000000 --backends sqlite
    .venv/bin/python bench/profiles_scale.py --only issue-table   # the issue's 100k/500k/2M table
    .venv/bin/python bench/profiles_scale.py --only scale --samples 2000000 --workers 1,2 \
        --queries 0                           # serve --workers 1 vs 2, ingest only

Workload (``tests/profile_gen.py``): 20 plugins × 10 pods, each plugin one of the fixture AOT
modules (uploaded with its .wasm), stacks along fixed call paths through the module's real
functions with the leaf PC drawn anew inside the leaf's real code range for every sample
(return addresses at fixed call sites, host PCs at the root, a text base per pod), 1,000
samples per batch = 5 s of one pod at 100 Hz on 2 threads, batches at random times over the
last 7 days. Bodies are generated before the clock starts (cached under --cache) so client
work does not compete with the server during the timed phases.

Reports: sustained ingest samples/s with --clients clients (and the server's CPU seconds),
bytes on disk per sample (derived store alone, and with the raw inputs kept for the retention
period), query latency p50/p99 for 1 h / 24 h / 7 d windows of one plugin and 7 d of all
plugins (speedscope export), peak server RSS during ingest and during queries; then the
issue's table (one plugin, 100k / 500k / 2M samples: speedscope and SVG time, RSS) for this
store and for the previous design at 100k samples (the ratio). Targets on 2 cores: ingest >=
100k samples/s, <= 10 bytes/sample, any window p50 <= 0.5 s and p99 <= 2 s, RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import Server, free_port, token_for  # noqa: E402  (bench/ingest.py)
from profile_gen import StackModel, aot_ranges  # noqa: E402  (tests/profile_gen.py)

DATA = ROOT / "tests" / "data"
MODULES = [  # (aot, wasm companion or None)
    ("aot/fib.O2.perf.aot", "wasm/fib.O2.wasm"),
    ("aot/cxx_plugin.O2.perf.aot", "wasm/cxx_plugin.O2.wasm"),
    ("aot/inline_chain.O2.perf.aot", "wasm/inline_chain.O2.wasm"),
    ("aot/crash_oob.O2.csn.aot", "wasm/crash_oob.O2.wasm"),
    ("aot/crash_trap.O2.csn.aot", "wasm/crash_trap.O2.wasm"),
]
WEEK = 7 * 86400
RATE_HZ, THREADS = 100.0, 2


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / hz, sum(v[:8]) / hz


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the worker processes of ``serve --workers``)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return [pid, *(int(k) for k in kids)]


def tree_cpu(pid: int) -> dict[int, float]:
    return {p: cpu_s(p) for p in tree(pid)}


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(rss_kb(p) for p in tree(self.pid)))
            self._stop.wait(0.05)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


# -- workload ---------------------------------------------------------------------------
def load_modules():
    from wasmprof.binary.loader import load_module
    return [load_module(str(DATA / aot)) for aot, _ in MODULES]


def plan(samples: int, batch: int, plugins: int, pods: int, seed: int, now: float):
    """[(plugin index, pod index, t0)] for every batch, times spread over the last 7 days."""
    rng = random.Random(seed)
    n = samples // batch
    span = batch / THREADS / RATE_HZ
    return [(i % plugins, rng.randrange(pods), now - WEEK + rng.random() * (WEEK - span - 60))
            for i in range(n)]


def generate(path: Path, batches, batch: int, modules, seed: int) -> list[tuple[int, int]]:
    """Write every batch body to ``path``; returns (offset, length) per batch."""
    models = {}
    offsets = []
    with open(path, "wb") as f:
        for k, (pl, pod, t0) in enumerate(batches):
            m = models.get(pl)
            if m is None:
                mod = modules[pl % len(modules)]
                m = models[pl] = StackModel(aot_ranges(mod), seed * 1000 + pl)
            base = 0x7F00_0000_0000 + pod * 0x1000_0000 + pl * 0x10_0000_0000
            body = orjson.dumps(m.batch(batch, module_id=f"plugin-{pl}", text_base=base,
                                        text_size=1 << 24, t0=t0, rate_hz=RATE_HZ,
                                        threads=THREADS))
            offsets.append((f.tell(), len(body)))
            f.write(body)
            if k % 1000 == 999:
                print(f"  generated {k + 1:,} batches", flush=True)
    return offsets


def workload(args, modules):
    """The cached batch file for these parameters (generated once)."""
    key = f"s{args.samples}-b{args.batch}-p{args.plugins}-d{args.pods}-r{args.seed}"
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    body, meta = cache / f"{key}.jsonl", cache / f"{key}.json"
    if meta.exists() and body.exists():
        m = json.loads(meta.read_text())
        return body, m["batches"], m["offsets"], m["now"]
    now = time.time()
    batches = plan(args.samples, args.batch, args.plugins, args.pods, args.seed, now)
    t = time.perf_counter()
    offsets = generate(body, batches, args.batch, modules, args.seed)
    print(f"generated {len(batches):,} batches ({body.stat().st_size / 1e6:,.0f} MB) in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    meta.write_text(json.dumps({"batches": batches, "offsets": offsets, "now": now}))
    return body, batches, offsets, now


# -- servers ----------------------------------------------------------------------------
class OldServer(Server):
    """``wasmprof serve`` of an older commit, extracted with ``git archive`` (no worktree)."""

    def __init__(self, data: Path, tree: Path, port: int) -> None:
        super().__init__(data, None, port)
        self.tree = tree

    def start(self) -> None:
        super().start(cwd=self.tree, env={**os.environ, "PYTHONPATH": str(self.tree)},
                      extra=["--allow-anonymous", "ingest,read,admin"])


def old_tree(commit: str) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="wasmprof-old-"))
    data = subprocess.run(["git", "archive", commit, "wasmprof"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tf:
        tf.extractall(dst, filter="data")
    return dst


def upload_modules(c: httpx.Client, plugins: int) -> None:
    mids = []
    for pl in range(plugins):
        aot, wasm = MODULES[pl % len(MODULES)]
        for path in (wasm, aot):
            if path is None:
                continue
            r = c.post("/api/v1/modules", params={"plugin": f"plugin-{pl}"},
                       files={"file": (Path(path).name, (DATA / path).read_bytes())})
            r.raise_for_status()
            mids.append(r.json()["id"])
    end = time.monotonic() + 300
    for mid in mids:
        while time.monotonic() < end:
            st = c.get(f"/api/v1/modules/{mid}").json()["symbols"]["index"]
            if st in ("ready", "failed"):
                break
            time.sleep(0.2)


def post_all(urls: str | list[str], token: str | None, body_file: Path, offsets, batches,
             clients: int, plugin_of=lambda pl: f"plugin-{pl}"):
    """POST every batch with ``clients`` threads (client i talks to ``urls[i % len]``)."""
    urls = [urls] if isinstance(urls, str) else urls
    lat: list[float] = []
    acked = [0]
    errors = [0]
    lock = threading.Lock()
    todo = list(range(len(offsets)))
    todo.reverse()

    def client(url: str) -> None:
        headers = {"content-type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with open(body_file, "rb") as f, httpx.Client(base_url=url, headers=headers,
                                                      timeout=300) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    k = todo.pop()
                off, n = offsets[k]
                f.seek(off)
                body = f.read(n)
                pl, pod, _ = batches[k]
                t0 = time.perf_counter()
                r = c.post("/api/v1/samples", content=body,
                           params={"plugin": plugin_of(pl), "pod": f"pod-{pod}"})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        lat.append(dt)
                        acked[0] += r.json()["samples"]
                    else:
                        errors[0] += 1
                        if errors[0] < 5:
                            print("  error", r.status_code, r.text[:200], flush=True)

    threads = [threading.Thread(target=client, args=(urls[i % len(urls)],))
               for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t, acked[0], lat, errors[0]


def timed_get(c: httpx.Client, params: dict) -> tuple[float, int, int]:
    t = time.perf_counter()
    r = c.get("/api/v1/profiles", params=params)
    return time.perf_counter() - t, r.status_code, len(r.content)


# -- bytes on disk ----------------------------------------------------------------------
DERIVED = ("profile_counts", "profile_stacks", "profile_frames", "profile_series",
           "profile_series_labels", "profile_pending", "profile_stack_pending", "profile_notes",
           "profile_rollups", "profile_rollup_dirty")


def sqlite_bytes(db: Path) -> tuple[int, int, int]:
    """(derived store bytes incl. indexes, raw inputs bytes, whole file)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {n: t for n, t in con.execute("SELECT name, tbl_name FROM sqlite_master")}
        sizes: dict[str, int] = {}
        for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            sizes[tables.get(name, name)] = sizes.get(tables.get(name, name), 0) + size
    finally:
        con.close()
    derived = sum(v for k, v in sizes.items() if k in DERIVED)
    total = db.stat().st_size + (db.with_name(db.name + "-wal").stat().st_size
                                 if db.with_name(db.name + "-wal").exists() else 0)
    return derived, sizes.get("profile_inputs", 0), total


def pg_bytes(url: str) -> tuple[int, int, int]:
    import psycopg
    with psycopg.connect(url) as con:
        def size(t: str) -> int:
            return con.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
        derived = sum(size(t) for t in DERIVED)
        raw = size("profile_inputs")
        total = con.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return derived, raw, total


def count_rows(backend: str, where: Path | str) -> int:
    if backend == "sqlite":
        con = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM profile_counts").fetchone()[0]
        finally:
            con.close()
    import psycopg
    with psycopg.connect(where) as con:
        return con.execute("SELECT COUNT(*) FROM profile_counts").fetchone()[0]


def settle(backend: str, where, timeout: float = 900) -> int:
    """Wait until the background maintenance stops merging rows; returns the row count."""
    last, same, end = -1, 0, time.monotonic() + timeout
    while time.monotonic() < end:
        n = count_rows(backend, where)
        same = same + 1 if n == last else 0
        if same >= 3:
            return n
        last = n
        time.sleep(4)
    return last


# -- phases -----------------------------------------------------------------------------
def run_scale(args, backend: str, body, batches, offsets, now, cluster, workers: int = 1) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"wasmprof-scale-{backend}-"))
    db = (cluster.create_database(f"scale{int(time.time())}w{workers}") if backend == "postgres"
          else None)
    os.environ["WASMPROF_PROFILE_MAINTAIN_SECONDS"] = "2"
    token = token_for(tmp, db)
    servers = [Server(tmp, db, free_port()) for _ in range(args.replicas)]
    for sv in servers:
        sv.start(extra=["--workers", str(workers)] if workers > 1 else [])
    server = servers[0]
    tag = f"{backend} w{workers}"
    out: dict = {"backend": backend, "replicas": args.replicas, "workers": workers}
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=600) as c:
            upload_modules(c, args.plugins)
        pids = [sv.proc.pid for sv in servers]
        cpu0 = {k: v for p in pids for k, v in tree_cpu(p).items()}
        load0, busy0, mine0 = os.getloadavg(), machine_busy(), self_cpu()
        wall, acked, lat, errors = post_all([sv.url for sv in servers], token, body, offsets,
                                            batches, args.clients)
        load1, busy1, mine1 = os.getloadavg(), machine_busy(), self_cpu()
        machine = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9)
        cpu1 = {k: v for p in pids for k, v in tree_cpu(p).items()}
        per_proc = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
        procs = [k for p in pids for k in tree(p)]
        server_cpu = sum(per_proc.values())
        out.update(ingest_wall=wall, acked=acked, errors=errors,
                   samples_per_s=acked / wall, p50_ms=pct(lat, .5) * 1000,
                   p99_ms=pct(lat, .99) * 1000, server_cpu=server_cpu,
                   samples_per_cpu_s=acked / max(server_cpu, 1e-9),
                   cpu_per_process=sorted(round(v, 1) for v in per_proc.values()),
                   load_before=load0, load_after=load1, machine_busy=machine,
                   client_cpu=mine1 - mine0,
                   ingest_peak_rss_mb=max(rss_kb(p, "VmHWM") for p in procs) / 1024,
                   ingest_rss_sum_mb=sum(rss_kb(p) for p in procs) / 1024)
        print(f"[{tag}] ingest {acked:,} samples in {wall:.1f} s = {acked / wall:,.0f} "
              f"samples/s with {args.replicas} replica(s) x {workers} worker(s) on one database "
              f"(server CPU {server_cpu:.0f} s = {out['samples_per_cpu_s']:,.0f} samples per "
              f"CPU-second, per process {out['cpu_per_process']}), p50 {out['p50_ms']:.0f} ms, "
              f"p99 {out['p99_ms']:.0f} ms, errors {errors}; peak RSS per process "
              f"{out['ingest_peak_rss_mb']:.0f} MB, all processes {out['ingest_rss_sum_mb']:.0f} "
              f"MB; load {load0[0]:.2f} -> {load1[0]:.2f}, machine CPU busy {machine:.0%}, bench "
              f"clients {out['client_cpu']:.0f} CPU s", flush=True)
        for sv in servers[1:]:            # queries: one replica, its RSS
            sv.stop()
        if args.queries <= 0:
            return out
        where = tmp / "wasmprof.db" if backend == "sqlite" else db
        t = time.perf_counter()
        rows = settle(backend, where)
        out["settle_s"] = time.perf_counter() - t
        derived, raw, total = sqlite_bytes(where) if backend == "sqlite" else pg_bytes(where)
        out.update(rows=rows, derived_bytes=derived, raw_bytes=raw, total_bytes=total,
                   bytes_per_sample=derived / max(acked, 1),
                   total_bytes_per_sample=total / max(acked, 1))
        print(f"[{tag}] after maintenance ({out['settle_s']:.0f} s): {rows:,} count rows; "
              f"derived store {derived / 1e6:.1f} MB = {derived / acked:.2f} bytes/sample; raw "
              f"inputs (zstd, kept {7} d) {raw / 1e6:.0f} MB; whole database "
              f"{total / acked:.1f} bytes/sample", flush=True)
        rng = random.Random(5)
        res = {}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=600) as c, RssSampler(server.proc.pid) as rs:
            for name, width, n, plugin in (("1h", 3600, args.queries, True),
                                           ("24h", 86400, args.queries, True),
                                           ("7d", WEEK, max(5, args.queries // 2), True),
                                           ("7d all plugins", WEEK, 5, False)):
                times, sizes, codes = [], [], set()
                for _ in range(n):
                    end = now - rng.random() * (WEEK - width) if width < WEEK else now
                    params = {"format": "speedscope", "from": int(end - width), "to": int(end)}
                    if plugin:
                        params["plugin"] = f"plugin-{rng.randrange(args.plugins)}"
                    dt, code, size = timed_get(c, params)
                    times.append(dt)
                    sizes.append(size)
                    codes.add(code)
                res[name] = {"p50": pct(times, .5), "p99": pct(times, .99), "n": n,
                             "codes": sorted(codes), "kb": statistics.mean(sizes) / 1024}
                print(f"[{tag}] query {name:15s}: p50 {res[name]['p50']:.3f} s  p99 "
                      f"{res[name]['p99']:.3f} s  ({n} queries, {res[name]['kb']:.0f} KB "
                      f"speedscope, HTTP {sorted(codes)})", flush=True)
        out["queries"] = res
        out["query_peak_rss_mb"] = rs.peak / 1024
        print(f"[{tag}] peak server RSS: ingest {out['ingest_peak_rss_mb']:.0f} MB, during "
              f"queries {out['query_peak_rss_mb']:.0f} MB", flush=True)
    finally:
        for sv in servers:
            sv.stop()
    return out


def issue_table(args, modules, sizes=(100_000, 500_000, 2_000_000), old_commit: str | None = None
                ) -> list[dict]:
    """One plugin (fib, its AOT + .wasm) with N samples in 1,000-sample batches, queried as
    speedscope and SVG: this store, and the previous design where given."""
    fib = modules[0]
    model = StackModel(aot_ranges(fib), 99)
    body_dir = Path(tempfile.mkdtemp(prefix="wasmprof-issue-"))
    now = time.time()
    rows = []
    targets = [("new", s) for s in sizes] + ([("old", sizes[0])] if old_commit else [])
    tree = old_tree(old_commit) if old_commit else None
    for kind, n in targets:
        path = body_dir / f"b{n}.jsonl"
        offsets, batches = [], []
        if not path.exists():
            with open(path, "wb") as f:
                for k in range(n // 1000):
                    t0 = now - 3 * 86400 + k * 10
                    b = orjson.dumps(model.batch(1000, module_id="fib", text_base=0x7F00_0000_0000,
                                                 text_size=1 << 24, t0=t0))
                    offsets.append((f.tell(), len(b)))
                    batches.append((0, 0, t0))
                    f.write(b)
            (body_dir / f"b{n}.json").write_text(json.dumps([offsets, batches]))
        else:
            offsets, batches = json.loads((body_dir / f"b{n}.json").read_text())
        tmp = Path(tempfile.mkdtemp(prefix=f"wasmprof-issue-{kind}-"))
        server = OldServer(tmp, tree, free_port()) if kind == "old" else Server(tmp, None, free_port())
        if kind == "new":
            os.environ["WASMPROF_PROFILE_MAINTAIN_SECONDS"] = "2"
            token = token_for(tmp, None)
        else:
            token = None
        server.start()
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with httpx.Client(base_url=server.url, headers=headers, timeout=3600) as c:
                for path_ in ("wasm/fib.O2.wasm", "aot/fib.O2.perf.aot"):
                    r = c.post("/api/v1/modules", params={"plugin": "fib"},
                               files={"file": (Path(path_).name, (DATA / path_).read_bytes())})
                    r.raise_for_status()
                time.sleep(2)
                wall, acked, _lat, errors = post_all(server.url, token, path, offsets, batches,
                                                     args.clients, plugin_of=lambda _pl: "fib")
                with RssSampler(server.proc.pid) as rs:
                    ss = [timed_get(c, {"plugin": "fib", "format": "speedscope"})
                          for _ in range(3 if kind == "new" else 1)]
                    svg = [timed_get(c, {"plugin": "fib", "format": "svg"})
                           for _ in range(3 if kind == "new" else 1)]
            row = {"kind": kind, "samples": acked, "ingest_s": wall,
                   "speedscope_s": min(x[0] for x in ss), "svg_s": min(x[0] for x in svg),
                   "codes": sorted({x[1] for x in ss + svg}), "query_rss_mb": rs.peak / 1024}
            rows.append(row)
            print(f"[issue table] {kind:3s} {acked:>9,} samples: ingest {wall:6.1f} s; "
                  f"speedscope {row['speedscope_s']:.3f} s, SVG {row['svg_s']:.3f} s (best of "
                  f"{len(ss)}), HTTP {row['codes']}, peak RSS during queries "
                  f"{row['query_rss_mb']:.0f} MB", flush=True)
        finally:
            server.stop()
    new100 = next((r for r in rows if r["kind"] == "new" and r["samples"] == sizes[0]), None)
    old100 = next((r for r in rows if r["kind"] == "old"), None)
    if new100 and old100:
        print(f"[issue table] ratio at {sizes[0]:,} samples (old / new): speedscope "
              f"{old100['speedscope_s'] / new100['speedscope_s']:.0f}x, SVG "
              f"{old100['svg_s'] / new100['svg_s']:.0f}x", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--plugins", type=int, default=20)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--replicas", type=int, default=1,
                    help="server processes on the one database during ingest (default 1; "
                         "queries use the first)")
    ap.add_argument("--workers", default="1", type=lambda v: [int(x) for x in v.split(",")],
                    help="`wasmprof serve --workers N` of each server, comma-separated to "
                         "compare several side by side (default 1; e.g. 1,2)")
    ap.add_argument("--queries", type=int, default=20,
                    help="queries per window (default 20; 0 = ingest only)")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "wasmprof-bench-profiles"))
    ap.add_argument("--only", choices=("scale", "issue-table"), default=None)
    ap.add_argument("--old", default="2069869", help="commit of the previous design (git main "
                    "before the store) for the ratio; '' to skip")
    ap.add_argument("--issue-sizes", default="100000,500000,2000000",
                    help="sample counts of the issue's table (default 100000,500000,2000000)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; {os.cpu_count()} CPUs", flush=True)
    modules = load_modules()
    report: dict = {"load_before": os.getloadavg()}
    if args.only in (None, "scale"):
        body, batches, offsets, now = workload(args, modules)
        cluster = None
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        if "postgres" in backends:
            from pg import PgCluster, pg_bin_dir
            cluster = PgCluster(pg_bin_dir(), Path(tempfile.mkdtemp(prefix="wasmprof-bench-pg-")))
            cluster.start(durable=True)
        try:
            report["scale"] = [run_scale(args, b, body, batches, offsets, now, cluster, w)
                               for b in backends for w in args.workers]
        finally:
            if cluster is not None:
                cluster.stop()
    if args.only in (None, "issue-table"):
        sizes = tuple(int(x) for x in args.issue_sizes.split(",") if x.strip())
        report["issue_table"] = issue_table(args, modules, sizes, old_commit=args.old or None)
    report["load_after"] = os.getloadavg()
    print(f"load average after: {report['load_after'][0]:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
