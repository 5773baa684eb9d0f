"""Benchmark: pulling a plugin module from a real OCI registry on loopback.

Starts Debian's ``docker-registry`` on a free port, pushes one module of ``--mb`` MiB
(a real fixture module grown by a custom section of random bytes: nothing a cache or gzip can
skip) as a Wasm OCI artifact and as a Docker "compat" image (gzip tar layer holding
plugin.wasm), then pulls each in fresh child processes, best of ``--runs``, side by side:

- ``wasmprof`` — :func:`wasmprof.oci.pull.pull` (manifest, digest checks, module in memory);
- ``oras-py`` — the ``oras`` package's ``OrasClient.pull`` (artifact only; writes a file);
- ``curl`` — one ``curl -o /dev/null`` of the layer blob (transfer floor, no checks).

Prints wall time, CPU time, peak RSS, MB/s and the ratios, with the load average.

    .venv/bin/python bench/pull.py [--mb 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(kind: str, ref: str, out: str) -> None:
    """Run one pull in this (fresh) process; print wall, cpu, rss as JSON."""
    t0 = time.perf_counter()
    if kind.startswith("wasmprof"):
        from wasmprof.oci.pull import pull
        from wasmprof.oci.reference import parse_reference
        got = pull(parse_reference(ref), plain_http=True, max_bytes=4 << 30)
        size = len(got.data)
    else:
        import oras.client
        host = ref.split("/", 1)[0]
        oras.client.OrasClient(hostname=host, insecure=True).pull(target=ref, outdir=out)
        size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss": peak_rss(),
                      "size": size}))


def peak_rss() -> int:
    """VmHWM of this process (ru_maxrss would carry the parent's high-water mark across
    exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_child(kind: str, ref: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, __file__, "--child", kind, ref, out],
                           capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_curl(url: str) -> dict:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.perf_counter() - t0,
            "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "rss": None, "size": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=64.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from oci_registry import Registry, padded_module, push_artifact, push_image, sha256_digest

    wasm = (ROOT / "tests" / "data" / "wasm" / "crash_trap.O2.wasm").read_bytes()
    module = padded_module(wasm, int(args.mb * (1 << 20)), seed=7)
    storage = Path(tempfile.mkdtemp(prefix="wasmprof-bench-pull-"))
    reg = Registry(storage).start()
    try:
        push_artifact(reg, "bench/artifact", "1.0", module)
        push_image(reg, "bench/compat", "1.0", [{"plugin.wasm": module}])
        blob = f"{reg.url}/v2/bench/artifact/blobs/{sha256_digest(module)}"
        peers = [("wasmprof artifact", lambda: run_child("wasmprof", f"{reg.host}/bench/artifact:1.0")),
                 ("oras-py artifact", lambda: run_child("oras", f"{reg.host}/bench/artifact:1.0")),
                 ("curl blob (floor)", lambda: run_curl(blob)),
                 ("wasmprof compat (gzip tar)", lambda: run_child("wasmprof", f"{reg.host}/bench/compat:1.0"))]
        best: dict[str, dict] = {}
        for _ in range(args.runs):
            for name, fn in peers:              # interleaved: load changes hit every peer
                r = fn()
                if name not in best or r["wall"] < best[name]["wall"]:
                    best[name] = r
        mb = len(module) / 1e6
        print(f"module {len(module):,} bytes ({mb:.1f} MB), best of {args.runs}, "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        ref = best["oras-py artifact"]["wall"]
        print(f"{'peer':30s} {'wall s':>8s} {'cpu s':>8s} {'MB/s':>8s} {'peak RSS MB':>12s} {'oras/this':>10s}")
        for name, r in best.items():
            rss = f"{r['rss'] / 1e6:12.1f}" if r["rss"] else f"{'—':>12s}"
            print(f"{name:30s} {r['wall']:8.3f} {r['cpu']:8.3f} {mb / r['wall']:8.1f} {rss} "
                  f"{ref / r['wall']:9.2f}x")
    finally:
        reg.close()
        shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
