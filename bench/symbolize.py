"""Symbolization benchmark (not a test): wasmprof vs llvm-symbolizer and wasm-tools addr2line.

    .venv/bin/python bench/symbolize.py [--addresses 100000] [--seed 1]

1. Builds a ~3.5 MB module with DWARF reproducibly: zstd's single-file source from the
   ``zstandard`` 0.25.0 sdist (``pip download``), ``python -m ziglang cc --target=wasm32-wasi
   -O2 -g`` (binaryen kept off PATH), cached in ``bench/out/``.
2. (a) N random code addresses (seeded, uniform over function bodies): wasmprof cold (empty
   cache: decode + index build + lookups), warm (index loaded from the cache), both
   in-process (``Resolver.resolve_many`` -> Frames) and through the CLI; peers
   ``llvm-symbolizer --inlines`` (llvm-symbolizer-19 if installed) and ``wasm-tools
   addr2line``, each run as a child process on the same addresses.
   (b) a 20-frame WAMR AOT dump, cold, end to end through ``wasmprof symbolize``.
3. Prints times, ratios vs the faster peer, index build time, index size, peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable
ZSTD_VERSION = "0.25.0"


def clean_env(**extra) -> dict:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    env = dict(os.environ, PATH=os.pathsep.join(
        p for p in parts if p and not (Path(p) / "wasm-opt").exists()))
    env.update(extra)
    return env


def build_module() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    wasm = OUT / "zstd.O2.wasm"
    if wasm.exists():
        return wasm
    src_dir = OUT / f"zstandard-{ZSTD_VERSION}"
    if not (src_dir / "zstd" / "zstd.c").exists():
        subprocess.run([PY, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        f"zstandard=={ZSTD_VERSION}", "-d", str(OUT), "-q"], check=True)
        shutil.unpack_archive(str(OUT / f"zstandard-{ZSTD_VERSION}.tar.gz"), str(OUT))
    obj = OUT / "zstd.O2.o"
    print("building zstd.c for wasm32-wasi (-O2 -g) ...", file=sys.stderr)
    subprocess.run([PY, "-m", "ziglang", "cc", "--target=wasm32-wasi", "-O2", "-g", "-c",
                    "-w", f"-fdebug-prefix-map={src_dir}=/zstd", str(src_dir / "zstd/zstd.c"),
                    "-o", str(obj)], check=True, env=clean_env())
    subprocess.run([PY, "-m", "ziglang", "cc", "--target=wasm32-wasi", "-O2", "-g", str(obj),
                    "-mexec-model=reactor", "-Wl,--export-dynamic",
                    "-lwasi-emulated-process-clocks", "-o", str(wasm)], check=True,
                   env=clean_env())
    return wasm


def timed(cmd: list[str], stdin: bytes | None = None, env=None) -> tuple[float, bytes]:
    t = time.perf_counter()
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr.decode()[:500]}")
    return dt, p.stdout


def peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addresses", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from wasmprof.addr2line.resolver import Resolver
    from wasmprof.binary.loader import load_module
    from wasmprof.binary.wasm import wasm_tools_path
    from wasmprof.model import AddressSpace, RawFrame

    wasm = build_module()
    module = load_module(wasm)
    w = module.wasm
    cps = w.code_payload_start
    rnd = random.Random(args.seed)
    addrs = []
    for _ in range(args.addresses):
        b = w.bodies[rnd.randrange(len(w.bodies))]
        addrs.append(rnd.randrange(b.start, b.end) - cps)
    sizes = {k: len(v[1]) for k, v in w.dwarf_sections.items()}
    print(f"module: {wasm} ({wasm.stat().st_size / 1e6:.2f} MB; code "
          f"{w.code_section.size / 1e6:.2f} MB; .debug_info {sizes.get('.debug_info', 0) / 1e6:.2f}"
          f" MB, .debug_line {sizes.get('.debug_line', 0) / 1e6:.2f} MB; "
          f"{len(w.bodies)} functions); {len(addrs)} random code addresses, seed {args.seed}")
    hex_in = "".join(f"0x{a:x}\n" for a in addrs).encode()
    results: dict[str, float] = {}

    # -- peers -----------------------------------------------------------------------
    llvm = shutil.which("llvm-symbolizer-19") or shutil.which("llvm-symbolizer")
    if llvm:
        ver = subprocess.run([llvm, "--version"], capture_output=True, text=True).stdout
        ver = next((ln.strip() for ln in ver.splitlines() if "version" in ln), "?")
        dt, _ = timed([llvm, "--inlines", f"--obj={wasm}"], hex_in)
        results[f"llvm-symbolizer --inlines ({ver})"] = dt
    wt = wasm_tools_path()
    if wt:
        file_addrs = [str(a + cps) for a in addrs]
        t = time.perf_counter()
        chunk = 20000                     # stay under ARG_MAX
        for i in range(0, len(file_addrs), chunk):
            subprocess.run([wt, "addr2line", str(wasm), *file_addrs[i:i + chunk]],
                           capture_output=True, check=True)
        results["wasm-tools addr2line"] = time.perf_counter() - t
    peer_rss = peak_child_rss_mb()

    # -- wasmprof in-process -----------------------------------------------------------
    cache = Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    raws = [RawFrame(index=i, space=AddressSpace.CODE, offset=a) for i, a in enumerate(addrs)]
    r = Resolver(cache_dir=cache)
    t = time.perf_counter()
    cold = r.resolve_many(module, raws)
    results["wasmprof cold, in-process (decode + index + lookups)"] = time.perf_counter() - t
    dbg = r.debug_for(module)
    idx_file = dbg.path
    t = time.perf_counter()
    Resolver(cache_dir=Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))).build_index(module)
    build_time = time.perf_counter() - t
    r2 = Resolver(cache_dir=cache)
    t = time.perf_counter()
    warm = r2.resolve_many(module, raws)
    results["wasmprof warm, in-process (index from cache -> Frames)"] = time.perf_counter() - t
    assert [[(f.function, f.line) for f in x] for x in warm[:2000]] == \
        [[(f.function, f.line) for f in x] for x in cold[:2000]]
    blk = r2.debug_for(module).block
    t = time.perf_counter()
    for a in addrs:
        blk.chain(a)
    results["wasmprof warm, index lookups only (chain tuples)"] = time.perf_counter() - t
    frames = sum(len(x) for x in cold)
    inlined = sum(1 for x in cold if len(x) > 1)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # -- wasmprof CLI (fresh process) --------------------------------------------------
    cli_cache = Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    env = clean_env(WASMPROF_CACHE_DIR=str(cli_cache))
    cli = [PY, "-m", "wasmprof", "addr2line", "--space", "code", str(wasm)]
    dt, _ = timed(cli, hex_in, env)
    results["wasmprof CLI cold (fresh process, empty cache)"] = dt
    dt, _ = timed(cli, hex_in, env)
    results["wasmprof CLI warm (fresh process, cached index)"] = dt

    # -- (b) 20-frame stack through `wasmprof symbolize`, cold ----------------------------
    stack_cache = Path(tempfile.mkdtemp(prefix="wasmprof-bench-"))
    names = w.names.function_names if w.names else {}
    picks = [w.bodies[rnd.randrange(len(w.bodies))] for _ in range(20)]
    lines = ["", *[f"#{i:02d}: 0x{rnd.randrange(b.start, b.end):04x} - "
                   f"{names.get(b.wasm_index, f'$f{b.wasm_index}')}"
                   for i, b in enumerate(picks)], "", "Exception: unreachable"]
    log = OUT / "stack20.log"
    log.write_text("\n".join(lines) + "\n")
    env = clean_env(WASMPROF_CACHE_DIR=str(stack_cache))
    stack_cmd = [PY, "-m", "wasmprof", "symbolize", str(log), "--module", str(wasm),
                 "--mode", "aot", "--json"]
    dt, out = timed(stack_cmd, None, env)
    results["20-frame stack, `wasmprof symbolize` cold (fresh process, empty cache)"] = dt
    dt2, _ = timed(stack_cmd, None, env)
    results["20-frame stack, `wasmprof symbolize` warm"] = dt2
    t = time.perf_counter()
    subprocess.run([PY, "-c", "import wasmprof.cli"], check=True)
    startup = time.perf_counter() - t

    # -- report ------------------------------------------------------------------------
    peers = {k: v for k, v in results.items() if not k.startswith(("wasmprof", "20-frame"))}
    best = min(peers.values()) if peers else None
    print(f"\n{'measurement':72} {'seconds':>8} {'vs best peer':>12}")
    for k, v in results.items():
        ratio = f"{best / v:.2f}x" if best and not k.startswith("20-frame") else ""
        print(f"{k:72} {v:8.3f} {ratio:>12}")
    print(f"\nframes produced: {frames} for {len(addrs)} addresses ({inlined} with inlines)")
    print(f"index build (decode all DWARF + build arrays): {build_time:.3f} s; index file "
          f"{idx_file.stat().st_size / 1e6:.2f} MB ({idx_file.name})")
    print(f"python interpreter + wasmprof import: {startup:.3f} s")
    print(f"peak RSS: bench process {self_rss:.0f} MB; largest child (peers/CLI) "
          f"{max(peer_rss, peak_child_rss_mb()):.0f} MB")
    print("ratios > 1 mean wasmprof is faster than the faster peer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
