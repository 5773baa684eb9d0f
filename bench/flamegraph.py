"""Benchmark: a >= 100k-sample ``perf script`` → SVG and → speedscope JSON.

The input is generated from the real perf recordings of one plugin (``fib.O2``: perf.g,
perfcs.fp and plain.g, three PIDs with their perf maps) by repetition, each repetition with
shifted timestamps. Each pipeline (parse + perf map + symbolize against the .wasm + render)
runs in a fresh child process, which reports its wall time and peak RSS.

Prints samples/s, MB/s, peak RSS, output size, and the ratio to FlameGraph's
``stackcollapse-perf.pl | flamegraph.pl`` when those scripts are on PATH (or in
``$FLAMEGRAPH_DIR``; with only stackcollapse-perf.pl found, its time alone is a lower bound);
otherwise the issue's reference figure (12.4 s for 100k samples, measured elsewhere) and the
command to compare with here. Timings are wall clock: run it on an idle machine.

    .venv/bin/python bench/flamegraph.py [--samples 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("fib.O2.perf.g", "fib.O2.perfcs.fp", "fib.O2.plain.g")
REFERENCE_SECONDS_100K = 12.4      # FlameGraph perl scripts, from the issue


def fixtures() -> Path:
    shared = ROOT.parent / "shared" / "fixtures"
    return shared if (shared / "perf").is_dir() else ROOT / "tests" / "data"


def generate(out: Path, samples_wanted: int) -> tuple[int, list[Path]]:
    """Write the repeated script; return (sample count, perf maps)."""
    root = fixtures()
    blocks: list[bytes] = []
    maps = []
    for run in RUNS:
        text = (root / "perf" / f"{run}.perf-script.txt").read_bytes()
        blocks.extend(b for b in text.split(b"\n\n") if b.strip())
        maps.extend((root / "perf").glob(f"{run}.perf-*.map"))
    header = re.compile(rb"^(\S.*?\s)(\d+\.\d+)(:)", re.M)
    n = 0
    rep = 0
    with open(out, "wb") as f:
        while n < samples_wanted:
            shift = rep * 10000.0
            for b in blocks:
                f.write(header.sub(lambda m: m[1] + b"%.6f" % (float(m[2]) + shift) + m[3], b, 1))
                f.write(b"\n\n")
                n += 1
            rep += 1
    return n, maps


def child(fmt: str, script: str, out: str, maps: list[str], module: str) -> None:
    """Run the CLI pipeline in this process and report time and peak RSS as JSON."""
    sys.path.insert(0, str(ROOT))
    from wasmprof.cli import main

    t = time.perf_counter()
    argv = ["flamegraph", script, "--module", module, "--format", fmt, "-o", out]
    for m in maps:
        argv += ["--perf-map", m]
    rc = main(argv)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rc": rc, "seconds": seconds, "rss": rss}))


def measure(fmt: str, script: Path, out: Path, maps: list[Path], module: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", fmt, str(script), str(out), str(module)] + \
        [str(m) for m in maps]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{fmt} run failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def flamegraph_pl() -> tuple[str | None, str | None]:
    """Paths of FlameGraph's stackcollapse-perf.pl and flamegraph.pl (PATH or $FLAMEGRAPH_DIR)."""
    d = os.environ.get("FLAMEGRAPH_DIR")
    found = []
    for name in ("stackcollapse-perf.pl", "flamegraph.pl"):
        p = shutil.which(name) or (str(Path(d) / name) if d else None)
        found.append(p if p and Path(p).exists() else None)
    return found[0], found[1]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        fmt, script, out, module, *maps = sys.argv[2:]
        child(fmt, script, out, maps, module)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the generated script and outputs here")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        script = work / "big.perf-script.txt"
        t = time.perf_counter()
        n, maps = generate(script, args.samples)
        size = script.stat().st_size
        print(f"input: {n:,} samples, {size / 1e6:.1f} MB ({size / n:.0f} B/sample) from "
              f"{', '.join(RUNS)} of {fixtures()} (generated in {time.perf_counter() - t:.1f} s)")
        module = fixtures() / "wasm" / "fib.O2.wasm"
        results = {}
        for fmt, suffix in (("svg", "svg"), ("speedscope", "json")):
            out = work / f"out.{suffix}"
            r = measure(fmt, script, out, maps, module)
            r["bytes"] = out.stat().st_size
            results[fmt] = r
            print(f"{fmt:>10}: {r['seconds']:6.2f} s  {n / r['seconds']:>10,.0f} samples/s  "
                  f"{size / r['seconds'] / 1e6:7.1f} MB/s  peak RSS {r['rss'] / 1e6:6.0f} MB  "
                  f"output {r['bytes'] / 1e6:.2f} MB")
        sc, fg = flamegraph_pl()
        if sc:
            t = time.perf_counter()
            with open(work / "pl.folded", "wb") as o:
                subprocess.run(["perl", sc, str(script)], stdout=o, check=True)
            collapse = time.perf_counter() - t
            total = collapse
            what = "stackcollapse-perf.pl"
            if fg:
                t = time.perf_counter()
                with open(work / "pl.folded", "rb") as i, open(work / "pl.svg", "wb") as o:
                    subprocess.run(["perl", fg], stdin=i, stdout=o, check=True)
                total += time.perf_counter() - t
                what += " + flamegraph.pl"
            else:
                what += " alone (flamegraph.pl not found: a lower bound)"
            print(f"FlameGraph perl, {what}: {total:.2f} s ({n / total:,.0f} samples/s); "
                  f"wasmprof SVG is {total / results['svg']['seconds']:.1f}x faster, "
                  f"speedscope {total / results['speedscope']['seconds']:.1f}x")
        else:
            scaled = REFERENCE_SECONDS_100K * n / 100_000
            print(f"FlameGraph perl scripts not found here; against the issue's reference "
                  f"({REFERENCE_SECONDS_100K} s per 100k samples, other machine): "
                  f"{scaled / results['svg']['seconds']:.1f}x (SVG)")
            print(f"to compare on this machine: put stackcollapse-perf.pl and flamegraph.pl on "
                  f"PATH or in $FLAMEGRAPH_DIR and rerun, or: time (perl stackcollapse-perf.pl "
                  f"{script} | perl flamegraph.pl > /tmp/pl.svg) with --keep")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
