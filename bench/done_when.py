"""Issue 13's done-when over every instruction of real builds (not a test: the zstd builds
take minutes and a PyPI download, see ``bench/symbolize.py``).

    .venv/bin/python bench/done_when.py [--modules emscripten,zstd,rust] [--show 10]

For every instruction of each module (wabt's ``wasm-objdump -d``), the chain wasmprof gives
(``Resolver.resolve_addresses``, the path every command shares) must be the chain
llvm-symbolizer or ``wasm-tools addr2line`` reports (locations and depth), or a single
frame that is not ``exact`` and says why; never a chain neither of them reports. Prints,
per module: instructions, failures (with the first ``--show`` of them), the exact share
(every frame exact or DWARF's own line 0), not-exact answers by reason. Exit code 1 when
any module has a failure.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from peers import done_when, instruction_offsets, llvm_chains, wasm_tools_chains  # noqa: E402
from symbolize import BUILDERS  # noqa: E402

from wasmprof.addr2line.resolver import Resolver  # noqa: E402
from wasmprof.binary.loader import load_module  # noqa: E402
from wasmprof.model import AddressSpace  # noqa: E402


def check(path: Path, show: int) -> int:
    module = load_module(path)
    cps = module.wasm.code_payload_start
    t = time.perf_counter()
    codes = [o - cps for o in instruction_offsets(path)]
    llvm, wt = llvm_chains(path, codes), wasm_tools_chains(path, codes)
    peers_s = time.perf_counter() - t
    t = time.perf_counter()
    got = Resolver(cache_dir=Path(tempfile.mkdtemp(prefix="wasmprof-dw-"))).resolve_addresses(
        module, codes, AddressSpace.CODE)
    ours_s = time.perf_counter() - t
    bad = []
    reasons: collections.Counter = collections.Counter()
    exact = 0
    for c, frames in zip(codes, got):
        why = done_when(frames, llvm[c], wt[c])
        if why:
            bad.append((c, frames, why))
        if all(f.status == "exact" or (f.reason or "").startswith("line 0") for f in frames):
            exact += 1
        else:
            r = next(f.reason for f in frames if f.status != "exact" and
                     not (f.reason or "").startswith("line 0"))
            reasons[_reason_kind(r)] += 1
    n = len(codes)
    print(f"\n== {path.name}: {n} instructions; peers {peers_s:.1f} s, wasmprof {ours_s:.1f} s")
    print(f"failures (a chain neither peer reports): {len(bad)} ({100 * len(bad) / n:.3f}%)")
    print(f"exact (or DWARF line 0): {exact} ({100 * exact / n:.1f}%)")
    for why, k in reasons.most_common():
        print(f"  not exact, {k:7d}: {why}")
    for c, frames, why in bad[:show]:
        print(f"  0x{c:x}: {[(f.function, f.line, f.column, str(f.status)) for f in frames]}")
        print(f"      llvm {llvm[c]}\n      wasm-tools {wt[c]}")
    return len(bad)


def _reason_kind(reason: str | None) -> str:
    """A reason without its names and numbers (to count reasons by kind)."""
    if not reason:
        return "(no reason)"
    for key in ("DWARF is stale", "has no reliable extent", "runs past the code of",
                "no line-table row", "outside every function body", "no DWARF",
                "offset 0"):
        if key in reason:
            return key
    return reason[:80]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", default="emscripten",
                    help="comma list of: " + ", ".join(BUILDERS))
    ap.add_argument("--show", type=int, default=10, help="failures to print per module")
    args = ap.parse_args()
    failed = 0
    for name in [m.strip() for m in args.modules.split(",") if m.strip()]:
        failed += check(BUILDERS[name](), args.show)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
