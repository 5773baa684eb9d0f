"""``wasmprof health``: read plugin health data the way ``wasmprof serve`` does, offline.

- ``wasmprof health stats SOURCE…``: an Envoy ``/stats/prometheus`` page (an http(s) URL,
  a file, or ``-`` for stdin) → its Wasm series: plugin, runtime, thread, metric, value
  (:mod:`wasmprof.ingest.envoy_stats`);
- ``wasmprof health wamr-memory LOG…``: WAMR ``Memory consumption summary`` blocks in logs
  (files, ``.gz``, ``-``) → one line per block (:mod:`wasmprof.ingest.wamr_memory`).

Exit codes: 0 found something, 1 nothing found, 2 bad input or an unreachable URL.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path
from typing import Any

from wasmprof.commands.inspect import safe_text
from wasmprof.errors import UsageError
from wasmprof.output import write_json

EPILOG = """examples:
  wasmprof health stats http://127.0.0.1:15000/stats/prometheus
  kubectl exec gw-0 -c istio-proxy -- curl -s localhost:15000/stats/prometheus | wasmprof health stats -
  wasmprof health stats saved-stats.txt --json
  wasmprof health wamr-memory gateway-stdout.log
  wasmprof health wamr-memory pod.log.gz --json

exit codes: 0 found series/blocks, 1 none found, 2 bad input or unreachable URL.
Scrape continuously with: wasmprof serve --scrape-envoy URL…"""


def register(subparsers) -> None:
    p = subparsers.add_parser("health", help="read Envoy Wasm stats and WAMR memory dumps "
                                             "(per-plugin memory and VM health)",
                              description="Read the per-plugin health data wasmprof serve "
                                          "collects: Envoy's Wasm stats and WAMR memory "
                                          "consumption blocks.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="health_command", metavar="WHAT")
    s = sub.add_parser("stats", help="Wasm series of an Envoy /stats/prometheus page",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("sources", nargs="+", metavar="SOURCE", help="http(s) URL, file, or -")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per URL (default 10)")
    s.set_defaults(func=run_stats)
    w = sub.add_parser("wamr-memory", help="WAMR memory consumption blocks in logs",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("logs", nargs="+", metavar="LOG", help="log file (.gz ok), or -")
    w.add_argument("--json", action="store_true", help="JSON output")
    w.set_defaults(func=run_memory)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _read(source: str, timeout: float | None = None) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith(("http://", "https://")):
        from wasmprof.health.scraper import _Failed, fetch, new_client
        from wasmprof.health.targets import validate_url
        validate_url(source, source=source)
        with new_client() as client:
            try:
                return fetch(client, source, timeout or 10.0)
            except _Failed as e:
                raise UsageError(f"cannot scrape: {e}", source=source) from None
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read: {e.strerror}", source=source) from None
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def run_stats(args: argparse.Namespace) -> int:
    from wasmprof.ingest.envoy_stats import parse_envoy_stats
    results: list[dict[str, Any]] = []
    for src in args.sources:
        reading = parse_envoy_stats(_read(src, args.timeout), source=src)
        results.append({"source": src, "bytes": reading.total_bytes,
                        "wasm_lines": reading.wasm_lines, "plugins": reading.plugins,
                        "unmapped": reading.unmapped,
                        "samples": [{"plugin": s.plugin, "runtime": s.runtime, "thread": s.thread,
                                     "metric": str(s.metric), "value": s.value, "name": s.name,
                                     "note": s.note} for s in reading.samples]})
    found = any(r["samples"] for r in results)
    if args.json:
        write_json(results)
        return 0 if found else 1
    for r in results:
        print(f"{safe_text(r['source'])}: {len(r['samples'])} Wasm series, "
              f"{len(r['plugins'])} plugin(s)")
        rows = sorted(r["samples"], key=lambda s: (s["plugin"], s["metric"], s["runtime"], s["thread"]))
        if rows:
            print(f"  {'PLUGIN':<28} {'RUNTIME':<9} {'THREAD':<12} {'METRIC':<20} VALUE")
        for s in rows:
            value = f"{s['value']:.0f}" if float(s["value"]).is_integer() else f"{s['value']:g}"
            print(f"  {safe_text(s['plugin'] or '(process)'):<28} {s['runtime'] or '-':<9} "
                  f"{safe_text(s['thread'] or '-'):<12} {s['metric']:<20} {value}"
                  + (f"   ({safe_text(s['note'])})" if s["note"] else ""))
        for name in r["unmapped"]:
            print(f"  not understood: {safe_text(name)}")
    return 0 if found else 1


def run_memory(args: argparse.Namespace) -> int:
    from wasmprof.ingest.wamr_memory import MemoryBlockScanner
    results: list[dict[str, Any]] = []
    for src in args.logs:
        sc = MemoryBlockScanner()
        data = _read(src)
        sc.feed(data if data.endswith(b"\n") else data + b"\n")
        results.append({"source": src, "blocks": [b.to_dict() for b in sc.finish()]})
    found = any(r["blocks"] for r in results)
    if args.json:
        write_json(results)
        return 0 if found else 1
    for r in results:
        print(f"{safe_text(r['source'])}: {len(r['blocks'])} memory block(s)")
        for b in r["blocks"]:
            t = b["totals"]
            print(f"  line {b['line']}: linear memory {b['linear_memory']} bytes, total "
                  f"{t.get('total')}, app heap used {t.get('app_heap_used')}, stack used "
                  f"{t.get('interp_stack_used')}; thread {safe_text(b['tid'])}, plugin "
                  f"{safe_text(b['plugin'] or '(process)')}, time {safe_text(b['timestamp'])}"
                  + (" [partial: " + safe_text("; ".join(b["notes"])) + "]" if b["partial"] else ""))
    return 0 if found else 1
