"""Crash-log scan throughput: ``wasmprof.ingest.crashlog`` vs ``grep -c`` on the same file.

Generates a synthetic gateway log on the fly (default 1 GiB, Envoy default format; several
worker threads interleaved; 0.1% of lines belong to crashes: WAMR dumps with their Envoy
record, V8 backtraces, Wasmtime traps, an Envoy native crash), then times:

- ``grep -c -F 'failed: '`` (the floor: one pass in C, counting);
- ``scan_crashes`` (crashes only, what the server runs);
- ``scan_log`` with pass-through written to /dev/null (what ``wasmprof symbolize`` runs).

Usage: ``python bench/logs.py [--size-mb 1024] [--keep FILE] [--format envoy|istio]``.
Prints MB/s and the ratio to grep. Target: >= 100 MB/s for the scan.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wasmprof.ingest.crashlog import scan_crashes, scan_log  # noqa: E402
from wasmprof.ingest.logline import LineFormat, format_record  # noqa: E402

SEGMENT_LINES = 100_000          # distinct lines generated, then repeated to reach the size
CRASH_LINE_RATIO = 0.001

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

WAMR_DUMP = ["", "#00: 0x0491 - check_token", "#01: 0x02e5 - main", "#02: 0x28eb - __main_void",
             "#03: 0x0495 - __original_main", "#04: 0x01da - _start",
             "#05: 0x662c - _start.command_export", ""]
V8_MSG = ("Function: proxy_on_request_body failed: Uncaught RuntimeError: unreachable\n"
          "Proxy-Wasm plugin in-VM backtrace:\n  0:  0x10a9 - runtime._panic\n"
          "  1:  0x103ab - main.anotherCalculation\n  2:  0xdcc9 - proxy_on_request_body")
WASMTIME_MSG = ("Function: proxy_on_request_headers failed: error while executing at wasm "
                "backtrace:\n    0:    0x3a7 - crash_oob.O2.wasm!buf_load_u32\n"
                "    1:    0x3f7 - crash_oob.O2.wasm!headers_total_size\n\nCaused by:\n"
                "    0: memory fault at wasm address 0xfffffff0 in linear memory of size 0x20000\n"
                "    1: wasm trap: out of bounds memory access")


def make_segment(fmt: LineFormat, rng: random.Random) -> tuple[bytes, int]:
    """~SEGMENT_LINES lines with crash blocks making up 0.1% of them; returns (bytes, crashes)."""
    lines: list[str] = []
    crashes = 0
    crash_lines = 0
    threads = [str(t) for t in range(20, 36)]
    ms = 0
    while len(lines) < SEGMENT_LINES:
        ms += rng.randrange(1, 4)
        ts = f"2025-11-03 08:{(ms // 60000) % 60:02d}:{(ms // 1000) % 60:02d}.{ms % 1000:03d}"
        if crash_lines < CRASH_LINE_RATIO * len(lines) - 8:
            kind = crashes % 4
            crashes += 1
            thread = rng.choice(threads)
            if kind == 0:         # WAMR: Envoy record + stdout dump, another thread inside
                lines.append(format_record(fmt, "Function: proxy_on_request_headers failed: "
                                           "Exception: unreachable", timestamp=ts, thread=thread))
                lines += WAMR_DUMP[:3]
                lines.append(format_record(fmt, "[C1] closing socket: 0", timestamp=ts,
                                           thread=rng.choice(threads), level="debug",
                                           logger="connection"))
                lines += WAMR_DUMP[3:]
                crash_lines += 1 + len(WAMR_DUMP)
            elif kind == 1:
                text = format_record(fmt, V8_MSG, timestamp=ts, thread=thread)
                lines += text.split("\n")
                crash_lines += text.count("\n") + 1
            elif kind == 2:
                text = format_record(fmt, WASMTIME_MSG, timestamp=ts, thread=thread)
                lines += text.split("\n")
                crash_lines += text.count("\n") + 1
            else:
                for msg in ("Caught Segmentation fault, suspect faulting address 0x0",
                            "Backtrace (use tools/stack_decode.py to get line numbers):",
                            "#0: __restore_rt [0x7f3b2a05a520]", "#1: [0x40fba0c7]"):
                    lines.append(format_record(fmt, msg, timestamp=ts, thread=thread,
                                               level="critical", logger="backtrace",
                                               location="./source/server/backtrace.h:121"))
                crash_lines += 4
            continue
        logger, level, loc, template = NORMAL[rng.randrange(len(NORMAL))]
        msg = template.format(c=rng.randrange(1, 5000), s=rng.randrange(1, 10**6))
        lines += format_record(fmt, msg, timestamp=ts, thread=rng.choice(threads), level=level,
                               logger=logger, location=loc).split("\n")
    return ("\n".join(lines) + "\n").encode(), crashes


def generate(path: Path, size: int, fmt: LineFormat) -> int:
    rng = random.Random(1)
    segments = [make_segment(fmt, rng) for _ in range(4)]
    written = crashes = 0
    with path.open("wb") as f:
        k = 0
        while written < size:
            data, n = segments[k % len(segments)]
            f.write(data)
            written += len(data)
            crashes += n
            k += 1
    return crashes


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--format", choices=["envoy", "istio"], default="envoy")
    ap.add_argument("--keep", metavar="FILE", help="write the log here and keep it")
    args = ap.parse_args()
    fmt = LineFormat.ENVOY if args.format == "envoy" else LineFormat.ISTIO
    tmpdir = None
    if args.keep:
        path = Path(args.keep)
    else:
        tmpdir = tempfile.mkdtemp(prefix="wasmprof-bench-")
        path = Path(tmpdir) / "gateway.log"
    try:
        gen_s, expected = timed(lambda: generate(path, args.size_mb << 20, fmt))
        size = path.stat().st_size
        mb = size / 1e6
        print(f"log: {mb:,.0f} MB ({args.format} format), {expected:,} crashes, "
              f"generated in {gen_s:.1f} s")
        grep = shutil.which("grep")
        grep_s = None
        if grep:
            grep_s, out = timed(lambda: subprocess.run([grep, "-c", "-F", "failed: ", str(path)],
                                                       capture_output=True, text=True).stdout)
            print(f"grep -c -F 'failed: ':   {grep_s:6.2f} s  {mb / grep_s:8,.0f} MB/s  "
                  f"({out.strip()} lines)")

        def scan_only() -> int:
            with path.open("rb") as f:
                return sum(1 for _ in scan_crashes(f, str(path)))

        def scan_passthrough() -> int:
            n = 0
            with path.open("rb") as f, open(os.devnull, "wb") as out:
                for item in scan_log(f, str(path)):
                    if isinstance(item, bytes):
                        out.write(item)
                    else:
                        n += 1
            return n

        for label, fn in (("wasmprof scan_crashes", scan_only),
                          ("wasmprof scan_log+pass", scan_passthrough)):
            secs, found = timed(fn)
            ratio = f"  {secs / grep_s:5.1f}x grep's time" if grep_s else ""
            print(f"{label}: {secs:6.2f} s  {mb / secs:8,.0f} MB/s{ratio}  ({found:,} crashes"
                  f"{'' if found == expected else f', EXPECTED {expected:,}'})")
        return 0
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
