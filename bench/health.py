"""Plugin health costs, peers side by side in one run (issue 17).

1. **Reading a stats page.** A large Envoy ``/stats/prometheus`` page (``--clusters`` clusters'
   worth of other metrics whose values differ line by line, plus the Wasm metrics of
   ``--plugins`` Higress plugins with 4 worker threads each), read by:
   - ``prometheus_client`` parsing the whole page, then keeping the ``envoy_wasm`` samples
     (what a scraper without a pre-filter does; the peer);
   - ``grep -c '^envoy_wasm'`` (the floor: finding the lines, nothing parsed);
   - ``parse_envoy_stats`` (byte pre-filter + ``prometheus_client`` on the Wasm part +
     mapping to series): what ``wasmprof serve`` runs per scrape.
2. **Storing a scrape.** ``wasmprof.health.store.record`` of one scrape's samples into SQLite
   (new points every time: the memory and counters change between scrapes).
3. **WAMR blocks in log ingest.** ``scan_crashes`` over a generated gateway log with WAMR
   memory blocks in it, with and without the memory-block tap (what the log ingest adds).

Each figure: best of ``--repeat`` wall seconds, CPU seconds, and the process' peak RSS at
the end (one process for all: peak RSS is a ceiling). Prints the 1-minute load average.

Usage: ``python bench/health.py [--clusters 60000] [--plugins 20] [--log-mb 200] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from envoy_stats import PAGE, Gateway, memory_block  # noqa: E402
from wasmprof.ingest.crashlog import scan_crashes  # noqa: E402
from wasmprof.ingest.envoy_stats import parse_envoy_stats  # noqa: E402
from wasmprof.ingest.logline import LineFormat, format_record  # noqa: E402


def best(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall s, its CPU s, result)"""
    out = None
    runs = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(runs)
    return wall, cpu, out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stats_page(clusters: int, plugins: int) -> tuple[bytes, Gateway]:
    g = Gateway(flavor="higress", noise_clusters=clusters, seed=11)
    rng = random.Random(5)
    for i in range(plugins):
        g.add(f"plugin-{i}", threads=[f"worker_{k}" for k in range(4)])
        g.grow(f"plugin-{i}", rng.randrange(50))
    return g.render(), g


def peer_full_parse(text: bytes) -> int:
    from prometheus_client.parser import text_string_to_metric_families
    n = 0
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if s.name.startswith("envoy_wasm"):
                n += 1
    return n


def gen_log(path: Path, mb: int, blocks_every: int) -> int:
    """An Envoy log of ~mb MB, distinct lines, a WAMR memory block every ``blocks_every``
    lines (plus the usual crash records)."""
    rng = random.Random(3)
    written = blocks = 0
    with open(path, "w") as f:
        line = 0
        while written < mb * 1_000_000:
            ts = f"2025-11-03 08:{(line // 60000) % 60:02d}:{(line // 1000) % 60:02d}.{line % 1000:03d}"
            msg = (f"wasm log key-auth root vm: request {rng.randrange(10**9)} took "
                   f"{rng.random() * 10:.3f} ms") if line % 3 else (
                f"[C{rng.randrange(10**6)}][S{rng.randrange(10**9)}] request headers complete")
            text = format_record(LineFormat.ENVOY, msg, timestamp=ts, thread=str(20 + line % 8),
                                 level="info", logger="wasm" if line % 3 else "http") + "\n"
            if line % blocks_every == 0:
                text += memory_block(uptime=line * 0.01, tid=f"7F{line % 97:02X}AA", memories=(16 + line % 500) * PAGE)
                blocks += 1
            f.write(text)
            written += len(text)
            line += 1
    return blocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=60000)
    ap.add_argument("--plugins", type=int, default=20)
    ap.add_argument("--log-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")

    text, gw = stats_page(args.clusters, args.plugins)
    mb = len(text) / 1e6
    lines = text.count(b"\n")
    print(f"\n1. stats page: {mb:.1f} MB, {lines:,} lines, {args.plugins} plugins x 4 threads")
    with tempfile.NamedTemporaryFile(suffix=".txt") as tf:
        tf.write(text)
        tf.flush()
        grep_w, grep_c, _ = best(lambda: subprocess.run(["grep", "-c", "^envoy_wasm", tf.name],
                                                        capture_output=True, check=False), args.repeat)
    peer_w, peer_c, peer_n = best(lambda: peer_full_parse(text), args.repeat)
    ours_w, ours_c, reading = best(lambda: parse_envoy_stats(text), args.repeat)
    print(f"   grep -c '^envoy_wasm' (floor)           {grep_w:7.3f} s  (child process)")
    print(f"   prometheus_client, whole page (peer)    {peer_w:7.3f} s  cpu {peer_c:6.3f} s  "
          f"{peer_n:,} wasm samples  {mb / peer_w:6.1f} MB/s")
    print(f"   parse_envoy_stats (wasmprof)            {ours_w:7.3f} s  cpu {ours_c:6.3f} s  "
          f"{len(reading.samples):,} series  {mb / ours_w:6.1f} MB/s  "
          f"= {peer_w / ours_w:.1f}x the peer (wall), {peer_c / max(ours_c, 1e-9):.1f}x (cpu)")

    from wasmprof.health import store
    from wasmprof.store.db import Database
    from wasmprof.store.migrations import migrate
    with tempfile.TemporaryDirectory() as d:
        db = Database.open(f"sqlite:///{d}/h.db")
        migrate(db)
        t = [1_760_000_000.0]

        small = Gateway(flavor="higress", noise_clusters=0)
        small.plugins = gw.plugins
        text_small = b""

        def one_store():
            nonlocal text_small
            for p in gw.plugins.values():
                gw.grow(p.name, 1)
            text_small = small.render()
            r = parse_envoy_stats(text_small)
            t[0] += 30
            return store.record(db, r.samples, source="envoy:1", origin="envoy", ts=t[0])
        one_store()
        st_w, st_c, rec = best(one_store, max(args.repeat, 5))
        print(f"\n2. storing one scrape (SQLite, parse of the Wasm part + record): {st_w * 1000:.1f} ms, "
              f"cpu {st_c * 1000:.1f} ms, {rec.points} points")
        db.close()

    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "gw.log"
        blocks = gen_log(log, args.log_mb, blocks_every=20000)
        size = log.stat().st_size / 1e6
        print(f"\n3. log ingest: {size:.0f} MB Envoy log with {blocks} WAMR memory blocks")
        from wasmprof.ingest.wamr_memory import MemoryBlockScanner, tap

        def plain():
            with open(log, "rb") as f:
                return sum(1 for _ in scan_crashes(f, "gw.log"))

        def tapped():
            sc = MemoryBlockScanner()
            with open(log, "rb") as f:
                n = sum(1 for _ in scan_crashes(tap(iter(lambda: f.read(1 << 20), b""), sc), "gw.log"))
            return n, len(sc.finish())

        p_w, p_c, _ = best(plain, args.repeat)
        t_w, t_c, (_n, found) = best(tapped, args.repeat)
        print(f"   scan_crashes                       {p_w:7.2f} s  cpu {p_c:6.2f} s  {size / p_w:6.0f} MB/s")
        print(f"   scan_crashes + memory-block tap    {t_w:7.2f} s  cpu {t_c:6.2f} s  {size / t_w:6.0f} MB/s  "
              f"({found} blocks; {100 * (t_w / p_w - 1):+.1f}% wall, {100 * (t_c / p_c - 1):+.1f}% cpu)")
    print(f"\npeak RSS of this process: {rss_mb():.0f} MB; load average (1 min) at end: "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
