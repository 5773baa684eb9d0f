#!/usr/bin/env python3
"""Ingest benchmark: N concurrent HTTP clients push agent sample batches and gateway logs
into a real ``wasmprof serve`` for a while, then check that nothing acknowledged was lost.

    .venv/bin/python bench/ingest.py                      # 16 clients, 60 s, SQLite, own server
    .venv/bin/python bench/ingest.py --seconds 20 --db postgresql://postgres@127.0.0.1:5432/b
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8080 --token wpt_…   # running server
    .venv/bin/python bench/ingest.py --durability         # + kill -9 mid-ingest, restart, verify

Reports sustained samples/s, log MB/s, p50/p99 latency per request kind, and the final
count check (acknowledged vs stored). Half the clients post sample batches
(``--batch-samples`` samples each along call paths of the fixture fib AOT module with every
leaf PC drawn anew inside its real function, the module uploaded so batches are symbolized
and aggregated into the profile store as in production), the other
half post logs (``--log-kb`` of Envoy-format text with real WAMR crash dumps from the fixture
corpus interleaved at ~0.1% of lines and plugins' ``wasm log`` records at ~1 line in 8; each
post is another hour of the gateway, so its crashes are new events: log ingest is idempotent
and would store a re-posted crash once). Targets on 2 cores: >= 100k samples/s, >= 16 MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIB_AOT = ROOT / "tests" / "data" / "aot" / "fib.O2.perf.aot"
FIB_WASM = ROOT / "tests" / "data" / "wasm" / "fib.O2.wasm"
DUMPS = [ROOT / "tests" / "data" / "dumps" / n for n in (
    "crash_oob.O2.load.classic.log", "crash_trap.O2.trap.classic.log",
    "crash_divzero.O2.div.classic.log")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# every line's time starts with this; each post replaces it with a minute of its own
TIME_PREFIX = b"[2026-01-01 10:"
PLUGINS = ["higress-system.key-auth", "higress-system.jwt-auth", "higress-system.ai-proxy"]


def make_log(size: int, seed: int) -> tuple[bytes, int]:
    """Envoy-format log text of ~size bytes with real WAMR dumps; returns (bytes, crashes).
    Times advance through one hour (``TIME_PREFIX`` + MM:SS.mmm); worker threads interleave;
    about 1 line in 8 is a plugin's ``wasm log`` record (what a crash's breadcrumbs and plugin
    name are looked up from)."""
    rng = random.Random(seed)
    dumps = []
    for p in DUMPS:
        text = p.read_text(errors="replace")
        block = [ln for ln in text.splitlines() if ln.startswith("#") or ln.startswith("Exception")]
        dumps.append(block)
    out: list[str] = []
    n = 0
    crashes = 0
    ms = 0
    step = max(1, 3_600_000 * 180 // max(size, 1))      # the log spans about an hour
    routes = ["/api/users", "/login", "/v1/items/42", "/healthz", "/static/app.js"]
    while n < size:
        ms += rng.randrange(1, 2 * step)
        ts = (TIME_PREFIX.decode() + f"{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}."
              f"{ms % 1000:03d}]")
        thread = rng.randrange(17, 33)
        if rng.random() < 0.0001:          # ~0.1% of lines are crash lines (a dump is ~10)
            d = dumps[rng.randrange(len(dumps))]
            head = (f"{ts}[{thread}][error][wasm] [source/extensions/common/wasm/"
                    f"wasm_vm.cc:38] Function: proxy_on_request_headers failed: {d[-1]}")
            lines = [head, ""] + d[:-1] + [""]
            crashes += 1
        elif rng.random() < 0.125:
            lines = [f"{ts}[{thread}][info][wasm] [source/extensions/common/wasm/context.cc:1157]"
                     f" wasm log {rng.choice(PLUGINS)} root vm: request {rng.randrange(10**9)} "
                     f"consumer=c{rng.randrange(5000)} allowed"]
        else:
            lines = [f"{ts}[{thread}][info][router] [source/common/router/router.cc:"
                     f"{rng.randrange(100, 900)}] [C{rng.randrange(10**6)}][S{rng.randrange(10**9)}]"
                     f" route {rng.choice(routes)} cluster=backend-{rng.randrange(20)} upstream=10.0."
                     f"{rng.randrange(255)}.{rng.randrange(255)}:8080 status="
                     f"{rng.choice((200, 200, 200, 404, 503))}"]
        for ln in lines:
            out.append(ln)
            n += len(ln) + 1
    return ("\n".join(out) + "\n").encode(), crashes


def fresh_occurrence(log: bytes, k: int, base: datetime) -> bytes:
    """The log as another hour of the gateway (log ingest stores a crash text posted again
    once): every line's date and hour become those of ``base`` + ``k`` hours, a valid Envoy
    time unique to this post (``k``: the post's number among all clients')."""
    when = base + timedelta(hours=k)
    return log.replace(TIME_PREFIX, when.strftime("[%Y-%m-%d %H:").encode())


def make_batches(samples: int, count: int = 32) -> list[bytes]:
    """``count`` distinct agent batches of ``samples`` samples: stacks along call paths of the
    fixture fib AOT module's real functions, every leaf PC drawn anew inside its function
    (tests/profile_gen.py), timestamps of the last minutes."""
    sys.path.insert(0, str(ROOT / "tests"))
    from profile_gen import StackModel, aot_ranges
    from wasmprof.binary.loader import load_module
    model = StackModel(aot_ranges(load_module(str(FIB_AOT))), 1)
    t0 = time.time() - 600
    return [json.dumps(model.batch(samples, module_id="fib", text_base=0x7F00_0000_0000,
                                   text_size=1 << 20, t0=t0 + k * samples / 200, threads=4),
                       separators=(",", ":")).encode() for k in range(count)]


def upload_modules(url: str, token: str | None) -> None:
    """The plugin's .wasm and .aot, so batches are symbolized as in production."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        for path in (FIB_WASM, FIB_AOT):
            r = c.post("/api/v1/modules", params={"plugin": "bench"},
                       files={"file": (path.name, path.read_bytes())})
            r.raise_for_status()


class Server:
    def __init__(self, data: Path, db: str | None, port: int) -> None:
        self.data, self.db, self.port = data, db, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, cwd: Path = ROOT, env: dict[str, str] | None = None,
              extra: list[str] = ()) -> None:
        """Start ``wasmprof serve`` (the one importable from ``cwd`` / ``env``'s PYTHONPATH)."""
        cmd = [sys.executable, "-m", "wasmprof", "serve", "--data", str(self.data), "--port",
               str(self.port), "--quiet", "--rate-limit", "0", *extra] + (
                   ["--db", self.db] if self.db else [])
        self.log = open(self.data / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: see {self.data / 'server.log'}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("server did not start")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


class Load:
    """Runs the clients; collects acknowledged ids, counts, bytes and latencies."""

    def __init__(self, url: str, token: str | None, clients: int, batches: list[bytes],
                 batch_samples: int, logs: list[tuple[bytes, int]], tag: str) -> None:
        self.tag = tag                       # makes batch ids unique per run
        self.url, self.token, self.clients = url, token, clients
        self.batches, self.batch_samples, self.logs = batches, batch_samples, logs
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.lat = {"samples": [], "logs": []}
        self.acked_batches: list[int] = []
        self.acked_events: list[int] = []
        self.samples = 0
        self.crashes = 0
        self.log_bytes = 0
        self.batch_bytes = 0
        self.errors = 0
        self.posts = 0                       # log posts so far (each gets an hour of its own)
        self.duplicates = 0
        # posted hours end before now: crash times are kept as logged (within 400 days)
        hours = 24 * 300
        self.base = (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(
            minute=0, second=0, microsecond=0, tzinfo=None)

    def _client(self, i: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        kind = "samples" if i % 2 == 0 else "logs"
        n = 0
        with httpx.Client(base_url=self.url, headers=headers, timeout=120) as c:
            while not self.stop.is_set():
                n += 1
                t0 = time.perf_counter()
                try:
                    if kind == "samples":
                        batch = self.batches[(n * self.clients + i) % len(self.batches)]
                        r = c.post("/api/v1/samples", content=batch,
                                   params={"plugin": "bench", "batch_id": f"{self.tag}-{i}-{n}"},
                                   headers={"content-type": "application/json"})
                    else:
                        with self.lock:
                            k, self.posts = self.posts, self.posts + 1
                        body = fresh_occurrence(self.logs[n % len(self.logs)][0], k, self.base)
                        r = c.post("/api/v1/logs", content=body,
                                   params={"plugin": "bench", "source": f"client-{i}"})
                except httpx.HTTPError:
                    with self.lock:
                        self.errors += 1
                    if self.stop.wait(0.2):
                        return
                    continue
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    with self.lock:
                        self.errors += 1
                    continue
                d = r.json()
                with self.lock:
                    self.lat[kind].append(dt)
                    if kind == "samples":
                        if d.get("duplicate"):
                            raise RuntimeError("batch id reused: the benchmark would count old data")
                        self.acked_batches.append(d["id"])
                        self.samples += d["samples"]
                        self.batch_bytes += len(batch)
                    else:
                        self.crashes += d["new_events"]
                        self.duplicates += d["duplicate_events"]
                        self.log_bytes += len(body)
                        self.acked_events.extend(e["id"] for e in d["events"])

    def run(self, seconds: float, on_half=None) -> float:
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                   for i in range(self.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        if on_half is not None:
            time.sleep(seconds / 2)
            on_half()
            time.sleep(seconds / 2)
        else:
            time.sleep(seconds)
        self.stop.set()
        for t in threads:
            t.join(timeout=180)
        return time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000


def verify(url: str, token: str | None, batches: list[int], events: list[int]) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    missing_b = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        for i in range(0, len(batches), 2000):
            part = batches[i:i + 2000]
            missing_b += c.get("/api/v1/profiles/inputs",
                               params={"ids": ",".join(map(str, part))}).json()["missing"]
        missing_e = [e for e in events[:2000] if c.get(f"/api/v1/crash-events/{e}").status_code != 200]
        stats = c.get("/api/v1/stats").json()
    return {"missing_batches": len(missing_b), "missing_events_checked": len(missing_e),
            "events_checked": min(len(events), 2000), "stats": stats}


def token_for(data: Path, db: str | None) -> str:
    cmd = [sys.executable, "-m", "wasmprof", "token", "create", "bench", "--scopes", "ingest,read",
           "--json", "--data", str(data)] + (["--db", db] if db else [])
    return json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True,
                                     text=True).stdout)["token"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--batch-samples", type=int, default=5000)
    ap.add_argument("--log-kb", type=int, default=2048)
    ap.add_argument("--db", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    ap.add_argument("--pg", action="store_true",
                    help="start a throwaway local PostgreSQL (Debian postgresql) and use it")
    ap.add_argument("--url", default=None, help="benchmark an already running server")
    ap.add_argument("--token", default=None, help="token for --url (ingest,read)")
    ap.add_argument("--durability", action="store_true",
                    help="also run the kill -9 durability check (own server only)")
    ap.add_argument("--durability-seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.clients < 2:
        ap.error("--clients must be >= 2 (half samples, half logs)")

    batches = make_batches(args.batch_samples)
    logs = [make_log(args.log_kb * 1024, s) for s in range(4)]
    print(f"workload: {args.clients} clients for {args.seconds:.0f} s; {len(batches)} distinct "
          f"sample batches of {args.batch_samples} samples = {len(batches[0]) / 1e6:.2f} MB; log body "
          f"{len(logs[0][0]) / 1e6:.2f} MB with {sum(n for _, n in logs) / len(logs):.1f} crashes "
          f"on average (~0.1% of lines)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    cluster = None
    if args.pg:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg import PgCluster, pg_bin_dir
        cluster = PgCluster(pg_bin_dir(), Path(tempfile.mkdtemp(prefix="wasmprof-bench-pg-")))
        cluster.start(durable=True)            # fsync on: honest commit costs
        args.db = cluster.create_database("bench")
    server = None
    url, token = args.url, args.token
    if url is None:
        token = token_for(tmp, args.db)
        server = Server(tmp, args.db, free_port())
        server.start()
        url = server.url
        upload_modules(url, token)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}) as c:
            before = c.get("/api/v1/stats").json()
        run = f"{os.getpid()}-{time.time_ns()}"
        load = Load(url, token, args.clients, batches, args.batch_samples, logs, f"{run}-main")
        wall = load.run(args.seconds)
        check = verify(url, token, load.acked_batches, load.acked_events)
        after = check["stats"]
        stored_samples = after["samples"] - before["samples"]
        stored_events = after["crash_events"] - before["crash_events"]
        print(f"\n== sustained ingest ({'PostgreSQL' if args.db else 'SQLite'}, {wall:.1f} s wall)")
        print(f"samples   : {load.samples / wall:12,.0f} samples/s  ({load.batch_bytes / wall / 1e6:.1f} MB/s JSON, "
              f"{len(load.lat['samples'])} batches)  target >= 100,000")
        print(f"logs      : {load.log_bytes / wall / 1e6:12.1f} MB/s of log text "
              f"({len(load.lat['logs'])} posts, {load.crashes / wall:,.0f} crashes/s)  target >= 16")
        for kind in ("samples", "logs"):
            v = load.lat[kind]
            if v:
                print(f"latency {kind:7s}: p50 {pct(v, .5):7.1f} ms  p99 {pct(v, .99):7.1f} ms  "
                      f"mean {statistics.mean(v) * 1000:7.1f} ms")
        print(f"errors    : {load.errors}; duplicate crash events answered: {load.duplicates}")
        lost_samples = load.samples - stored_samples if args.url is None else "n/a (shared server)"
        print(f"count check: acknowledged samples {load.samples:,} stored {stored_samples:,}; "
              f"acknowledged crash events {load.crashes:,} stored {stored_events:,}; "
              f"missing batches by id {check['missing_batches']}; "
              f"missing events (of {check['events_checked']} checked) {check['missing_events_checked']}; "
              f"lost = {lost_samples}")
        ok = check["missing_batches"] == 0 and check["missing_events_checked"] == 0
        if args.url is None:
            ok = ok and load.samples == stored_samples and load.crashes == stored_events
        if args.durability and server is not None:
            print(f"\n== durability: kill -9 after {args.durability_seconds / 2:.0f} s of ingest, restart, verify")
            d = Load(url, token, args.clients, batches, args.batch_samples, logs, f"{run}-kill")
            d.run(args.durability_seconds, on_half=server.kill9)
            server.start()
            chk = verify(url, token, d.acked_batches, d.acked_events)
            print(f"acknowledged before the kill: {len(d.acked_batches)} batches "
                  f"({d.samples:,} samples), {len(d.acked_events)} crash events; after restart "
                  f"missing batches {chk['missing_batches']}, missing events "
                  f"{chk['missing_events_checked']} of {chk['events_checked']} checked; "
                  f"client errors during the kill {d.errors}")
            ok = ok and chk["missing_batches"] == 0 and chk["missing_events_checked"] == 0
        print("\nRESULT:", "OK, 0 acknowledged items lost" if ok else "FAILED: data lost")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
