"""Crash-log scan throughput: ``wasmprof.ingest.crashlog`` vs ``grep -c`` (and, with
``--peer-tree``, another checkout's wasmprof) on the same generated file, in one run.

Generates a gateway log (default 1 GiB, Envoy default format; several worker threads
interleaved) in which ``--crash-density`` of the lines belong to crashes (default 0.001):
WAMR dumps with their Envoy record and another thread's line inside, V8 backtraces (some
after a Rust or TinyGo panic record of the plugin), Wasmtime traps, Envoy native crashes,
Go panics written one print token per record. The distinct 100k-line segments are
repeated with a different date each time, so no two blocks of the file are identical.
Every scanner runs in a fresh process: the figures are wall time, CPU time and peak RSS of
that process, MB/s, and ratios to grep and to the peer.

Usage::

    python bench/logs.py [--size-mb 1024] [--crash-density 0.1] [--format envoy|istio]
                         [--peer-tree /path/to/other/checkout] [--keep FILE]

Targets: >= 100 MB/s on sparse logs (the default density), >= 50 MB/s when every 10th line
is a crash line (``--crash-density 0.1``). Record the load average next to the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wasmprof.ingest.logline import LineFormat, format_record  # noqa: E402

SEGMENT_LINES = 100_000          # distinct lines generated, then repeated with other dates

NORMAL = [
    ("http", "debug", "source/common/http/conn_manager_impl.cc:1032",
     "[C{c}][S{s}] request headers complete (end_stream=false):\n"),
    ("connection", "debug", "source/common/network/connection_impl.cc:250",
     "[C{c}] closing socket: 0"),
    ("wasm", "info", "source/extensions/common/wasm/context.cc:1157",
     "wasm log higress-system.key-auth key_root key_vm: consumer #{s} authenticated"),
    ("router", "debug", "source/common/router/router.cc:732",
     "[C{c}][S{s}] cluster 'outbound|80||backend.default.svc.cluster.local' match for URL "
     "'/api/v1/orders?id={s}'"),
    ("pool", "debug", "source/common/conn_pool/conn_pool_base.cc:293",
     "[C{c}] using existing fully connected connection"),
    ("upstream", "info", "source/common/upstream/cds_api_helper.cc:32",
     "cds: add {c} cluster(s), remove 0 cluster(s)"),
]
WASM_LOG = "source/extensions/common/wasm/context.cc:1157"
GO_TOKENS = ["panic: ", "runtime error: index out of range [{n}] with length 3", "", "",
             "goroutine ", "1", " [", "running", "]:", "main.handle", "(...)", "\t",
             "/src/plugin/main.go", ":", "42", "", "main.main", "(", ")", "\t",
             "/src/plugin/main.go", ":", "77", " +", "0x1d", ""]


RUST_FRAMES = ["__rust_start_panic", "rust_panic", "std::panicking::rust_panic_with_hook",
               "std::panicking::begin_panic_handler::{{closure}}",
               "std::sys_common::backtrace::__rust_end_short_backtrace", "rust_begin_unwind",
               "core::panicking::panic_fmt", "core::result::unwrap_failed",
               "plugin::dispatcher::on_headers", "plugin::auth::check_token",
               "proxy_wasm::dispatcher::Dispatcher::on_http_request_headers",
               "proxy_on_request_headers"]
GO_FRAMES = ["runtime.fatalpanic", "runtime.gopanic", "runtime.goPanicIndex", "main.parseClaims",
             "main.(*filter).OnHttpRequestHeaders", "github.com_higress_group_wasm_go_pkg_wrapper"
             ".(*CommonHttpCtx).OnHttpRequestHeaders", "proxy_on_request_headers",
             "wasm_export_run", "wasm_pc_f_loop"]
WAMR_FRAMES = ["check_token", "token_digest", "digest_round", "headers_total_size",
               "compute_header_bytes", "on_request_headers", "main", "__main_void",
               "__original_main", "_start"]


def crash_block(kind: int, fmt: LineFormat, ts: str, thread: str, other: str,
                rng: random.Random) -> list[str]:
    """One crash as the log holds it (its lines, with another thread's line where a real
    log interleaves one). Frame counts vary as real backtraces of each kind do: WAMR dumps
    4-10 frames, V8 backtraces of Rust 8-12 and of Go 5-9, TinyGo 2-3, Wasmtime 2-6, Envoy
    native 4-12."""
    off = lambda: rng.randrange(0x100, 0x40000)   # noqa: E731 - frames differ per crash
    rec = lambda msg, **kw: format_record(fmt, msg, timestamp=ts, **kw).split("\n")  # noqa: E731
    noise = rec("[C1] closing socket: 0", thread=other, level="debug", logger="connection")
    v8 = lambda names: "Proxy-Wasm plugin in-VM backtrace:\n" + "\n".join(  # noqa: E731
        f"{k:3d}:  0x{off():x} - {n}" for k, n in enumerate(names))
    if kind == 0:         # WAMR: Envoy record + stdout dump, another thread inside
        names = WAMR_FRAMES[-rng.randrange(4, 11):]
        dump = [f"#{i:02d}: 0x{off():04x} - {n}" for i, n in enumerate(names)]
        return (rec("Function: proxy_on_request_headers failed: Exception: unreachable",
                    thread=thread) + ["", *dump[:2]] + noise + dump[2:] + [""])
    if kind in (1, 4, 5):  # V8: Rust after its panic record (4), TinyGo (5), Go frames (1)
        pre = []
        names = GO_FRAMES[:rng.randrange(5, 10)]
        if kind == 4:
            pre = rec(f"wasm log higress-system.rust-auth r v: panicked at 'bad token {off()}', "
                      "src/dispatcher.rs:424:14", thread=thread, level="critical",
                      location=WASM_LOG)
            names = RUST_FRAMES[:rng.randrange(8, 13)]
        elif kind == 5:
            pre = rec("wasm log higress-system.tg r v: panic: runtime error: slice out of range",
                      thread=thread, level="info", location=WASM_LOG)
            names = ["runtime._panic", "runtime.slicePanic", "proxy_on_request_body"][
                :rng.randrange(2, 4)]
        return pre + rec("Function: proxy_on_request_body failed: Uncaught RuntimeError: "
                         "unreachable\n" + v8(names), thread=thread)
    if kind == 2:
        frames = "\n".join(f"    {k}:    0x{off():x} - crash_oob.O2.wasm!{n}" for k, n in
                           enumerate(WAMR_FRAMES[:rng.randrange(2, 7)]))
        return rec("Function: proxy_on_request_headers failed: error while executing at wasm "
                   f"backtrace:\n{frames}\n\nCaused by:\n"
                   "    0: memory fault at wasm address 0xfffffff0 in linear memory of size "
                   "0x20000\n    1: wasm trap: out of bounds memory access", thread=thread)
    if kind == 3:
        out: list[str] = []
        msgs = ["Caught Segmentation fault, suspect faulting address 0x0",
                "Backtrace (use tools/stack_decode.py to get line numbers):",
                "#0: __restore_rt [0x7f3b2a05a520]"]
        msgs += [f"#{k}: [0x40fb{off():04x}]" for k in range(1, rng.randrange(4, 13))]
        for msg in msgs:
            out += rec(msg, thread=thread, level="critical", logger="backtrace",
                       location="./source/server/backtrace.h:121")
        return out
    out = []                        # Go: one record per print token, another thread between
    for k, tok in enumerate(GO_TOKENS):
        out += rec(f"wasm log higress-system.go-auth g v: {tok.format(n=off() % 97)}",
                   thread=thread, level="error", location=WASM_LOG)
        if k % 7 == 3:
            out += noise
    return out + rec("Function: proxy_on_request_headers failed: Uncaught RuntimeError: "
                     "unreachable\n" + v8(GO_FRAMES[:rng.randrange(5, 10)]), thread=thread)


KINDS = 7


def make_segment(fmt: LineFormat, rng: random.Random, density: float) -> tuple[bytes, int]:
    """~SEGMENT_LINES lines, ``density`` of them in crash blocks; returns (bytes, crashes)."""
    lines: list[str] = []
    crashes = crash_lines = 0
    threads = [str(t) for t in range(20, 36)]
    ms = 0
    while len(lines) < SEGMENT_LINES:
        ms += rng.randrange(1, 4)
        ts = f"2025-11-03 08:{(ms // 60000) % 60:02d}:{(ms // 1000) % 60:02d}.{ms % 1000:03d}"
        if crash_lines < density * len(lines):
            block = crash_block(crashes % KINDS, fmt, ts, rng.choice(threads),
                                rng.choice(threads), rng)
            crashes += 1
            crash_lines += len(block)
            lines += block
            continue
        logger, level, loc, template = NORMAL[rng.randrange(len(NORMAL))]
        msg = template.format(c=rng.randrange(1, 5000), s=rng.randrange(1, 10**6))
        lines += format_record(fmt, msg, timestamp=ts, thread=rng.choice(threads), level=level,
                               logger=logger, location=loc).split("\n")
    return ("\n".join(lines) + "\n").encode(), crashes


def generate(path: Path, size: int, fmt: LineFormat, density: float) -> int:
    rng = random.Random(1)
    segments = [make_segment(fmt, rng, density) for _ in range(4)]
    written = crashes = 0
    with path.open("wb") as f:
        k = 0
        while written < size:
            data, n = segments[k % len(segments)]
            day = k // len(segments)                  # another date on every repetition
            if day:
                data = data.replace(b"2025-11-03", b"%04d-%02d-%02d" % (
                    2026 + day // 336, 1 + day // 28 % 12, 1 + day % 28))
            f.write(data)
            written += len(data)
            crashes += n
            k += 1
    return crashes


RUNNER = r"""
import os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from wasmprof.ingest.crashlog import scan_crashes, scan_log
from wasmprof.model import Crash
path, mode = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
n = 0
with open(path, "rb") as f:
    if mode == "crashes":
        n = sum(1 for _ in scan_crashes(f, path))
    else:
        with open(os.devnull, "wb") as out:
            for item in scan_log(f, path):
                if isinstance(item, Crash):
                    n += 1
                else:
                    out.write(item)
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_SELF)
print(n, wall, r.ru_utime + r.ru_stime, r.ru_maxrss)
"""


def run_scanner(tree: Path, path: Path, mode: str) -> tuple[int, float, float, int]:
    """(crashes, wall s, CPU s, peak RSS KiB) of one scan in a fresh process."""
    out = subprocess.run([sys.executable, "-c", RUNNER, str(tree), str(path), mode],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    n, wall, cpu, rss = out.stdout.split()
    return int(n), float(wall), float(cpu), int(rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--crash-density", type=float, default=0.001,
                    help="fraction of lines that are crash lines (0.1: every 10th)")
    ap.add_argument("--format", choices=["envoy", "istio"], default="envoy")
    ap.add_argument("--peer-tree", type=Path, action="append", default=[],
                    help="another wasmprof checkout to run on the same file (e.g. main)")
    ap.add_argument("--keep", metavar="FILE", help="write the log here and keep it")
    args = ap.parse_args()
    if not 0 < args.crash_density < 1:
        ap.error("--crash-density must be between 0 and 1")
    fmt = LineFormat.ENVOY if args.format == "envoy" else LineFormat.ISTIO
    tmpdir = None
    if args.keep:
        path = Path(args.keep)
    else:
        tmpdir = tempfile.mkdtemp(prefix="wasmprof-bench-")
        path = Path(tmpdir) / "gateway.log"
    try:
        gen_s = time.perf_counter()
        expected = generate(path, args.size_mb << 20, fmt, args.crash_density)
        gen_s = time.perf_counter() - gen_s
        size = path.stat().st_size
        mb = size / 1e6
        print(f"log: {mb:,.0f} MB ({args.format} format, crash density {args.crash_density:g}), "
              f"{expected:,} crashes, generated in {gen_s:.1f} s")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        grep = shutil.which("grep")
        grep_s = None
        if grep:
            t0 = time.perf_counter()
            out = subprocess.run([grep, "-c", "-F", "failed: ", str(path)], capture_output=True,
                                 text=True).stdout
            grep_s = time.perf_counter() - t0
            print(f"{'grep -c -F failed:':34s} {grep_s:7.2f} s  {mb / grep_s:8,.0f} MB/s  "
                  f"({out.strip()} lines)")
        trees = [("wasmprof", ROOT)] + [(f"peer {t}", t.resolve()) for t in args.peer_tree]
        results: dict[tuple[str, str], float] = {}
        for mode, what in (("crashes", "scan_crashes"), ("pass", "scan_log+pass")):
            for label, tree in trees:
                found, wall, cpu, rss = run_scanner(tree, path, mode)
                results[(label, mode)] = wall
                ratio = f"  {wall / grep_s:5.1f}x grep's time" if grep_s else ""
                peer = ""
                if label != "wasmprof":
                    peer = f"  this tree is {wall / results[('wasmprof', mode)]:.2f}x as fast"
                print(f"{label + ' ' + what:34s} {wall:7.2f} s  {mb / wall:8,.0f} MB/s  "
                      f"cpu {cpu:6.2f} s  peak RSS {rss / 1024:5.0f} MB{ratio}{peer}  "
                      f"({found:,} crashes{'' if found == expected else f', EXPECTED {expected:,}'})")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
