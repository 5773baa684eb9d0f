"""Benchmark: ``wasmprof flamegraph`` against FlameGraph's ``stackcollapse-perf.pl | flamegraph.pl``
on large perf scripts built from REAL recordings, in the same run.

Inputs (generated into a temporary directory, deleted afterwards unless ``--keep``):

- ``realistic``: the fixture recordings (``../shared/fixtures/perf/*.perf-script.txt``, 10 runs
  of 7 plugins, each with its perf map and ``.aot``; ``tests/data/perf`` from a clone) cycled
  to ``--size-mb``, every sample's **leaf address redrawn** uniformly inside its real
  function range (the perf-map range for AOT code; for host symbols ``[0, largest offset the
  recordings show for that symbol]``), timestamps moving forward: no two sample blocks are
  identical, callers repeat as in long real recordings.
- ``worst``: the same, with **every frame's** address redrawn (callers vary too).
- ``vertx``: FlameGraph's own ``perf-vertx-stacks-01.txt`` (Java, no modules) with unique
  leaves, the case where every sample is distinct.
- ``--huge``: a 1 GB ``realistic`` input generated on the fly, wasmprof only (constant
  memory); FlameGraph too with ``--huge-flamegraph``.

Every pipeline runs in child processes; CPU (user+sys), wall time and peak RSS come from
``wait4`` of each child (a pipeline's CPU is the sum, its RSS the larger of the two). Ratios are
FlameGraph's CPU / wasmprof's CPU. FlameGraph runs when ``FLAMEGRAPH_DIR`` holds its scripts
(not shipped: ``git clone https://github.com/brendangregg/FlameGraph`` somewhere). The
machine's load average is printed before and after: compare figures only from a quiet machine.

    FLAMEGRAPH_DIR=/tmp/FlameGraph .venv/bin/python bench/flamegraph.py [--size-mb 100]
        [--scenario realistic,worst,vertx] [--huge] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("realistic", "worst", "vertx")
_FRAME = re.compile(rb"^(\s*)([0-9a-f]+)(\s+)(\S.*?)\+0x([0-9a-f]+)( \(.*\))$")
_BARE = re.compile(rb"^(\s*)([0-9a-f]+)(\s+)(\[unknown\]|\S+)( \(.*\))$")
_TIME = re.compile(rb"(\s)(\d+\.\d+):")


def fixtures() -> Path:
    shared = ROOT.parent / "shared" / "fixtures"
    return shared if (shared / "perf").is_dir() else ROOT / "tests" / "data"


def peers() -> Path:
    shared = ROOT.parent / "shared" / "peers" / "flamegraph" / "test"
    return shared if shared.is_dir() else ROOT / "tests" / "data" / "peers" / "flamegraph"


@dataclass
class Recording:
    name: str
    blocks: list[list[bytes]]               # lines per sample block
    span: float                             # time covered
    maps: list[Path] = field(default_factory=list)
    modules: list[Path] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)   # perf-map (start, end)


def _read_blocks(data: bytes) -> list[list[bytes]]:
    return [b.split(b"\n") for b in data.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]


def load_recordings(scenario: str) -> list[Recording]:
    import gzip
    if scenario == "vertx":
        p = peers() / "perf-vertx-stacks-01.txt"
        data = p.read_bytes() if p.exists() else gzip.decompress(p.with_suffix(".txt.gz").read_bytes())
        return [Recording("perf-vertx-stacks-01", _read_blocks(data), 1.0)]
    root = fixtures()
    index = json.loads((root / "perf" / "index.json").read_text())
    out = []
    for run in index:
        script = root / run["perf_script"]
        if not script.exists():
            continue
        blocks = _read_blocks(script.read_bytes())
        times = [float(m[2]) for b in blocks if (m := _TIME.search(b[0]))]
        pmap = root / run["perf_map"]
        ranges = []
        for line in pmap.read_text().splitlines():
            a, s, _ = line.split(None, 2)
            ranges.append((int(a, 16), int(a, 16) + int(s, 16)))
        mods = [root / run["aot"]]
        wasm = root / "wasm" / (run["name"].split(".")[0] + "." + run["name"].split(".")[1] + ".wasm")
        if wasm.exists():
            mods.append(wasm)
        out.append(Recording(run["name"], blocks, (max(times) - min(times)) if times else 1.0,
                             [pmap], [m for m in mods if m.exists()], sorted(ranges)))
    return out


def host_ranges(recs: list[Recording]) -> tuple[dict[bytes, int], dict[bytes, tuple[int, int]]]:
    """Per host symbol: the largest ``+0x`` offset seen (its known extent), and for frames
    printed without offsets (``-F ip,sym``, FlameGraph's Java recordings) the lowest and
    highest ip seen for (symbol, DSO)."""
    offs: dict[bytes, int] = {}
    ips: dict[bytes, tuple[int, int]] = {}
    for r in recs:
        for b in r.blocks:
            for line in b[1:]:
                m = _FRAME.match(line)
                if m and b"perf-" not in m[6]:
                    off = int(m[5], 16)
                    if off > offs.get(m[4], -1):
                        offs[m[4]] = off
                    continue
                m2 = _BARE.match(line)
                if m2 and m2[4] != b"[unknown]":
                    ip = int(m2[2], 16)
                    lo, hi = ips.get(m2[4] + m2[5], (ip, ip))
                    ips[m2[4] + m2[5]] = (min(lo, ip), max(hi, ip))
    return offs, ips


class Redraw:
    """Redraws frame addresses inside their function ranges."""

    def __init__(self, rec: Recording, host: tuple[dict, dict], rng: random.Random) -> None:
        import bisect
        self.rec, self.rng = rec, rng
        self.host, self.host_ips = host
        self.starts = [a for a, _ in rec.ranges]
        self.bisect = bisect.bisect_right

    def line(self, line: bytes) -> bytes:
        m = _FRAME.match(line)
        if m is None:
            m2 = _BARE.match(line)
            if m2 is None:
                return line
            ip = int(m2[2], 16)
            k = self.bisect(self.starts, ip) - 1
            if k < 0 or ip >= self.rec.ranges[k][1]:
                span = self.host_ips.get(m2[4] + m2[5])
                if span is None:
                    return line
                lo, hi = span                    # no offset printed: redraw the ip itself
                new = lo + self.rng.randrange(max(hi - lo, 15) + 1)
                text = b"%x" % new
                return b"%s%s%s%s%s" % (m2[1], text.rjust(len(m2[2])), m2[3], m2[4], m2[5])
            a, e = self.rec.ranges[k]
            new = a + self.rng.randrange(e - a)
            return b"%s%s%s%s%s" % (m2[1], b"%x" % new, m2[3], m2[4], m2[5])
        ip, off = int(m[2], 16), int(m[5], 16)
        base = ip - off
        if b"perf-" in m[6]:
            k = self.bisect(self.starts, ip) - 1
            if k >= 0 and ip < self.rec.ranges[k][1]:
                a, e = self.rec.ranges[k]
                base, size = a, e - a
            else:
                return line
        else:
            size = self.host.get(m[4], off) + 1
        new_off = self.rng.randrange(size)
        text = b"%x" % (base + new_off)
        width = len(m[2])
        return b"%s%s%s%s+0x%x%s" % (m[1], text.rjust(width) if len(text) < width else text,
                                     m[3], m[4], new_off, m[6])


def generate(out: Path, scenario: str, size_mb: float, seed: int = 1) -> dict:
    """Write the scenario's script; return what was made and the inputs wasmprof needs."""
    recs = load_recordings(scenario)
    host = host_ranges(recs)
    rng = random.Random(seed)
    redraw = {r.name: Redraw(r, host, rng) for r in recs}
    every = scenario == "worst"
    want = int(size_mb * 1e6)
    written = samples = rep = 0
    with open(out, "wb", buffering=1 << 20) as f:
        while written < want:
            for r in recs:
                rd = redraw[r.name]
                shift = rep * (r.span + 1.0)
                for b in r.blocks:
                    if rep and b[0][:1] == b"#":       # perf's --header comments: once
                        b = [x for x in b if x[:1] != b"#"]
                    header = b[0]
                    if rep:
                        header = _TIME.sub(lambda m: m[1] + b"%.6f:" % (float(m[2]) + shift),
                                           header, 1)
                    frames = b[1:]
                    if frames:
                        if every:
                            frames = [rd.line(x) for x in frames]
                        else:
                            frames = [rd.line(frames[0])] + frames[1:]
                    block = b"\n".join([header, *frames]) + b"\n\n"
                    f.write(block)
                    written += len(block)
                    samples += 1
                    if written >= want:
                        break
                if written >= want:
                    break
            rep += 1
    maps = [m for r in recs for m in r.maps]
    mods = sorted({m for r in recs for m in r.modules})
    return {"samples": samples, "bytes": written, "maps": maps, "modules": mods,
            "recordings": [r.name for r in recs]}


@dataclass
class Run:
    cpu: float
    wall: float
    rss: int
    detail: str = ""


def run_children(cmds: list[list[str]], stdin: Path | None, stdout: Path) -> Run:
    """Run ``cmds`` as a pipeline (stdin → c1 | c2 | … → stdout); wait4 every child."""
    t = time.perf_counter()
    procs = []
    prev = open(stdin, "rb") if stdin else subprocess.DEVNULL
    out = open(stdout, "wb")
    err = []
    for i, cmd in enumerate(cmds):
        last = i == len(cmds) - 1
        e = tempfile.TemporaryFile()
        err.append(e)
        p = subprocess.Popen(cmd, stdin=prev, stdout=out if last else subprocess.PIPE, stderr=e)
        if prev not in (None, subprocess.DEVNULL):
            prev.close()
        prev = p.stdout
        procs.append(p)
    cpu, rss, parts = 0.0, 0, []
    for p, e in zip(procs, err):
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        c = ru.ru_utime + ru.ru_stime
        cpu += c
        rss = max(rss, ru.ru_maxrss * 1024)
        parts.append(f"{Path(p.args[1] if p.args[0] == 'perl' else p.args[-1]).name}: "
                     f"{c:.2f} s, {ru.ru_maxrss / 1024:.0f} MB")
        if p.returncode != 0:
            e.seek(0)
            raise SystemExit(f"{p.args} failed ({p.returncode}):\n{e.read().decode()[-2000:]}")
    out.close()
    return Run(cpu, time.perf_counter() - t, rss, "; ".join(parts))


def wasmprof_cmd(script: Path, made: dict, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "wasmprof", "flamegraph", str(script), "-o", str(out),
           "--no-auto-maps", *extra]
    for m in made["modules"]:
        cmd += ["--module", str(m)]
    for m in made["maps"]:
        cmd += ["--perf-map", str(m)]
    return cmd


def flamegraph_dir() -> Path | None:
    d = os.environ.get("FLAMEGRAPH_DIR")
    if d and (Path(d) / "stackcollapse-perf.pl").exists() and (Path(d) / "flamegraph.pl").exists():
        return Path(d)
    return None


def line(label: str, r: Run, size: int, samples: int) -> str:
    return (f"  {label:<34} CPU {r.cpu:7.2f} s  wall {r.wall:7.2f} s  peak RSS {r.rss / 1e6:6.0f} MB"
            f"  {size / 1e6 / max(r.cpu, 1e-9):6.1f} MB/s CPU  {samples / max(r.cpu, 1e-9):9,.0f}"
            " samples/s")


def bench(work: Path, scenario: str, size_mb: float, fg: Path | None, *, outputs: list[str],
          with_fg: bool = True) -> dict:
    script = work / f"{scenario}.perf-script.txt"
    t = time.perf_counter()
    made = generate(script, scenario, size_mb)
    gen = time.perf_counter() - t
    size = script.stat().st_size
    print(f"\n[{scenario}] {made['samples']:,} samples, {size / 1e6:.1f} MB "
          f"({size / made['samples']:.0f} B/sample) from {', '.join(made['recordings'])} "
          f"(generated in {gen:.1f} s)")
    res: dict = {"scenario": scenario, "samples": made["samples"], "bytes": size}
    for fmt in outputs:
        out = work / f"{scenario}.wasmprof.{ {'svg': 'svg', 'speedscope': 'json', 'folded': 'folded'}[fmt] }"
        r = run_children([wasmprof_cmd(script, made, out, "--format", fmt)], None,
                         work / "wasmprof.stdout")
        res[f"wasmprof_{fmt}"] = {"cpu": r.cpu, "wall": r.wall, "rss": r.rss,
                                  "output_bytes": out.stat().st_size}
        print(line(f"wasmprof flamegraph → {fmt}", r, size, made["samples"]))
    if fg is not None and with_fg:
        r = run_children([["perl", str(fg / "stackcollapse-perf.pl"), str(script)],
                          ["perl", str(fg / "flamegraph.pl")]], None, work / f"{scenario}.fg.svg")
        res["flamegraph"] = {"cpu": r.cpu, "wall": r.wall, "rss": r.rss, "detail": r.detail}
        print(line("stackcollapse-perf.pl | flamegraph.pl", r, size, made["samples"]))
        print(f"    ({r.detail})")
        for fmt in outputs:
            w = res[f"wasmprof_{fmt}"]
            print(f"  ratio FlameGraph / wasmprof {fmt}: CPU {r.cpu / w['cpu']:.1f}x, "
                  f"wall {r.wall / w['wall']:.1f}x, peak RSS {w['rss'] / r.rss:.1f}x theirs")
    elif with_fg:
        print("  FlameGraph: set FLAMEGRAPH_DIR to a checkout of brendangregg/FlameGraph to "
              "run stackcollapse-perf.pl | flamegraph.pl on the same file")
    script.unlink()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--scenario", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    ap.add_argument("--outputs", default="svg,speedscope",
                    help="wasmprof output formats to time (svg, speedscope, folded)")
    ap.add_argument("--huge", action="store_true", help="also a 1 GB realistic input")
    ap.add_argument("--huge-mb", type=float, default=1024.0)
    ap.add_argument("--huge-flamegraph", action="store_true",
                    help="run FlameGraph on the 1 GB input too (slow)")
    ap.add_argument("--keep", metavar="DIR", help="keep outputs here")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = ap.parse_args()
    fg = flamegraph_dir()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; {os.cpu_count()} CPUs; "
          f"python {sys.version.split()[0]}; FlameGraph: {fg or 'not set (FLAMEGRAPH_DIR)'}")
    results = []
    outputs = [o for o in args.outputs.split(",") if o]
    try:
        for sc in [s for s in args.scenario.split(",") if s]:
            if sc not in SCENARIOS:
                raise SystemExit(f"unknown scenario {sc!r}; choose from {SCENARIOS}")
            results.append(bench(work, sc, args.size_mb, fg, outputs=outputs))
        if args.huge:
            results.append(bench(work, "realistic", args.huge_mb, fg, outputs=["svg"],
                                 with_fg=args.huge_flamegraph))
            results[-1]["scenario"] = "realistic-huge"
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    print(f"\nload average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": load0, "load_end": load1,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
