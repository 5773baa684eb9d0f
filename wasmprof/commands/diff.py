"""``wasmprof diff``: compare two profiles (per-function table, differential flame graph)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wasmprof import output
from wasmprof.commands.flamegraph import add_input_options, load_symbolized

EXAMPLES = """examples:
  # which functions got hotter between plugin v1 and v2 (normalized shares, percentage points)
  wasmprof diff v1.perf v2.perf --module plugin.wasm --table
  # differential flame graph (red grew, blue shrank) plus the table
  wasmprof diff v1.perf v2.perf --module plugin.wasm -o diff.svg --table
  # absolute sample counts, JSON rows
  wasmprof diff before.folded after.folded --mode absolute --json
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
    p.add_argument("-o", "--output", metavar="OUT", help="write the differential flame graph (SVG)")
    p.add_argument("--table", action="store_true",
                   help="print the per-function table (default when no -o)")
    p.add_argument("--mode", choices=("normalized", "absolute"), default="normalized",
                   help="shares of each total in percent (default) or raw weights")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="table: first N rows")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wasmprof.flamegraph.diff import diff_svg, diff_table, format_table

    before = load_symbolized([args.before], args)
    after = load_symbolized([args.after], args)
    rows = diff_table(before, after, mode=args.mode)
    if args.output:
        svg, _ = diff_svg(before, after, mode=args.mode,
                          title=f"{Path(args.before).name} → {Path(args.after).name}")
        Path(args.output).write_text(svg, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        output.write_json({"mode": args.mode, "before": {"source": args.before, "total": before.total,
                                                         "unit": before.unit},
                           "after": {"source": args.after, "total": after.total, "unit": after.unit},
                           "rows": [r.to_dict() for r in rows[:args.limit]]})
    elif args.table or not args.output:
        print(format_table(rows, mode=args.mode, limit=args.limit))
    return 0
