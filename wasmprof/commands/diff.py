"""``wasmprof diff``: compare two profiles (per-function table, differential flame graph)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wasmprof import output
from wasmprof.commands.flamegraph import add_input_options, load_aggregated, make_symbolizer

EXAMPLES = """examples:
  # which functions got hotter between plugin v1 and v2 (normalized shares, percentage points)
  wasmprof diff v1.perf v2.perf --module plugin.wasm --table
  # differential flame graph (red grew, blue shrank) plus the table
  wasmprof diff v1.perf v2.perf --module plugin.wasm -o diff.svg --table
  # absolute sample counts, JSON rows
  wasmprof diff before.folded after.folded --mode absolute --json
  # one event of two multi-event recordings, weighted by period
  wasmprof diff a.perf b.perf --event cycles --weight period --table
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diff", help="compare two profiles: per-function table and differential flame graph",
        description="Symbolize BEFORE and AFTER like 'wasmprof flamegraph' does, then compare "
                    "self and total weight per function (every function of either profile, "
                    "sorted by change) and draw AFTER colored by the change.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", metavar="BEFORE", help="baseline profile")
    p.add_argument("after", metavar="AFTER", help="profile to compare")
    add_input_options(p)
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the differential flame graph (an .svg file)")
    p.add_argument("--table", action="store_true",
                   help="print the per-function table (default when no -o)")
    p.add_argument("--mode", choices=("normalized", "absolute"), default="normalized",
                   help="shares of each total in percent (default) or raw weights")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="table: first N rows")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wasmprof.flamegraph.diff import diff_svg, diff_table, format_table

    out = output.open_output(args.output, allowed_suffixes={".svg": "SVG"}) \
        if args.output else None
    try:
        symbolizer = make_symbolizer(args)
        b = load_aggregated([args.before], args, symbolizer=symbolizer)
        a = load_aggregated([args.after], args, symbolizer=symbolizer)
        before, after = b.profile, a.profile
        rows = diff_table(before, after, mode=args.mode)
        if out is not None:
            svg, _ = diff_svg(before, after, mode=args.mode,
                              title=f"{Path(args.before).name} → {Path(args.after).name}")
            out.write(svg.encode("utf-8"))
            out.close()
            print(f"wrote {args.output}", file=sys.stderr)
    except BaseException:
        if out is not None and hasattr(out, "discard"):
            out.discard()
        raise
    if args.json:
        output.write_json({"mode": args.mode,
                           "before": {"source": args.before, "total": before.total,
                                      "unit": before.unit, "event": b.event, "events": b.events},
                           "after": {"source": args.after, "total": after.total,
                                     "unit": after.unit, "event": a.event, "events": a.events},
                           "rows": [r.to_dict() for r in rows[:args.limit]]})
    elif args.table or not args.output:
        print(format_table(rows, mode=args.mode, limit=args.limit))
    for label, loaded in (("before", b), ("after", a)):
        if len(loaded.events) > 1:
            print(f"note: {label}: " + output_notes_events(loaded), file=sys.stderr)
    return 0


def output_notes_events(loaded: Any) -> str:
    return next((n for n in loaded.notes if n.startswith("events in the input")), "")
