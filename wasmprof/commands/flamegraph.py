"""``wasmprof flamegraph``: profiles → symbolized flame graph (SVG, speedscope JSON, folded)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from wasmprof import output
from wasmprof.errors import UsageError
from wasmprof.profiles import (PROFILE_FORMATS, SymbolizedProfile, Symbolizer,
                               assign_perf_map_modules, discover_perf_maps, merge_profiles,
                               read_profile_input, self_by_function)

FORMATS = ("svg", "speedscope", "folded")
_SUFFIX_FORMAT = {".svg": "svg", ".json": "speedscope", ".speedscope": "speedscope",
                  ".folded": "folded", ".txt": "folded"}

EXAMPLES = """examples:
  # perf + WAMR perf map (found next to the script, or /tmp/perf-PID.map) + the plugin's .wasm
  perf script > out.perf
  wasmprof flamegraph out.perf --module plugin.wasm -o flame.svg
  # speedscope JSON (open in https://www.speedscope.app or the dashboard), one profile per thread
  wasmprof flamegraph out.perf --perf-map /tmp/perf-4242.map --module plugin.aot -o prof.json
  # folded stacks with Wasm names for other tools
  wasmprof flamegraph out.perf --module plugin.wasm --format folded > out.folded
  # agent JSON batches, folded stacks with aot_func#N names, WAMR 'Performance profiler data:'
  wasmprof flamegraph batch1.json batch2.json --module plugin.aot -o flame.svg
"""


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--perf-map", action="append", default=[], metavar="F",
                   help="perf map file (/tmp/perf-PID.map) for bare addresses; repeatable. "
                        "Maps next to a perf script that it names are used automatically")
    p.add_argument("--no-auto-maps", action="store_true",
                   help="do not look for perf-PID.map files next to the inputs")
    p.add_argument("--module", action="append", default=[], metavar="F",
                   help="plugin binary (.wasm, .aot, .aot.wasm, wamrc object, .cwasm) to resolve "
                        "frames against; repeatable (an .aot and its .wasm pair up)")
    p.add_argument("--input-format", choices=PROFILE_FORMATS,
                   help="input format (default: detected from the content)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "flamegraph", help="symbolized flame graph from perf/agent/folded/WAMR profiles",
        description="Read profiles (perf script text, agent JSON batches, folded stacks, WAMR "
                    "'Performance profiler data:' blocks; gzip accepted), map AOT frames "
                    "(aot_func#N, perf-map addresses, text offsets) to Wasm functions, lines and "
                    "inline frames, keep host frames, and write a flame graph.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="profile file(s); merged")
    add_input_options(p)
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: from OUT's suffix: .svg, .json, .folded; else svg)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    p.add_argument("--group-by", default=None, metavar="KEY",
                   help="split by 'thread', a sample label (e.g. 'plugin') or 'none' "
                        "(default: thread for speedscope, none otherwise)")
    p.add_argument("--granularity", choices=("line", "function"), default="line",
                   help="speedscope frames per source line (default) or per function")
    p.add_argument("--title", help="SVG title")
    p.add_argument("--min-width", type=float, default=0.1, metavar="PX",
                   help="SVG: merge frames narrower than this (default 0.1 px)")
    p.add_argument("--max-nodes", type=int, default=12000,
                   help="SVG: at most this many boxes; the merge threshold grows until it fits")
    p.add_argument("--focus", metavar="REGEX",
                   help="SVG/folded: only the sub-trees under frames whose name matches (drill "
                        "down into frames merged away at full scale)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (samples, per-function self counts, statuses) "
                        "on stdout; needs -o")
    p.set_defaults(func=run)


def printable(text: str) -> str:
    """Names come from modules and logs: no terminal control characters on stderr."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def focus_matcher(pattern: str):
    import re
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise UsageError(f"bad --focus regular expression: {e}", source="--focus",
                         found=pattern) from None
    return lambda name: rx.search(name) is not None


def focus_folded(lines: list[str], matches) -> list[str]:
    """Folded lines cut to start at their outermost frame that ``matches``."""
    agg: dict[str, int] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        names = stack.split(";")
        for i, n in enumerate(names):
            if matches(n):
                key = ";".join(names[i:])
                agg[key] = agg.get(key, 0) + int(count)
                break
    return [f"{k} {v}" for k, v in sorted(agg.items())]


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt:
        return fmt
    if out:
        return _SUFFIX_FORMAT.get(Path(out).suffix.lower(), "svg")
    return "svg"


def load_symbolized(paths: list[str], args: argparse.Namespace) -> SymbolizedProfile:
    """Parse and symbolize the inputs (shared by ``flamegraph`` and ``diff``)."""
    from wasmprof.binary.loader import load_module
    from wasmprof.ingest.perf_map import read_perf_map

    modules = [load_module(m) for m in args.module]
    explicit = [read_perf_map(m) for m in args.perf_map]
    symbolizer = Symbolizer(modules)
    results = []
    notes: list[str] = []
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError("no such input file", source=path)
        maps = list(explicit)
        if not args.no_auto_maps and not explicit:
            for mp in discover_perf_maps(path):
                maps.append(read_perf_map(mp))
                notes.append(f"{path}: using perf map {mp}")
        notes.extend(assign_perf_map_modules(maps, modules))
        progress = output.Progress(f"reading {Path(path).name}", os.path.getsize(path))
        try:
            profiles = read_profile_input(path, perf_maps=maps, fmt=args.input_format,
                                          progress=progress.update)
        finally:
            progress.close()
        for prof in profiles:
            results.append(symbolizer.symbolize(prof))
    merged = merge_profiles(results)
    merged.notes = notes + merged.notes
    return merged


def summary(profile: SymbolizedProfile) -> dict[str, Any]:
    by_fn = sorted(self_by_function(profile).items(), key=lambda kv: -kv[1])
    return {
        "samples": len(profile.samples), "total": profile.total, "unit": profile.unit,
        "start": profile.start, "end": profile.end,
        "distinct_frames_resolved": profile.distinct_frames,
        "status_counts": profile.status_counts,
        "self_by_function": [{"wasm_index": k[0], "function": k[1], "self": v} for k, v in by_fn],
        "notes": profile.notes,
    }


def write_output(profile: SymbolizedProfile, fmt: str, out_path: str | None,
                 args: argparse.Namespace) -> int:
    from wasmprof.flamegraph.calltree import focus_tree, tree_from_profile
    from wasmprof.flamegraph.folded import folded_lines
    from wasmprof.flamegraph.speedscope import speedscope_document
    from wasmprof.flamegraph.svg import SvgOptions, render_svg

    group = args.group_by
    if group == "none":
        group = None
    if fmt == "speedscope":
        doc = speedscope_document(profile, granularity=args.granularity,
                                  group_by=group if args.group_by else "thread")
        import orjson
        data = orjson.dumps(doc)
    elif fmt == "folded":
        lines = folded_lines(profile, group_by=group)
        if args.focus:
            lines = focus_folded(lines, focus_matcher(args.focus))
        data = ("\n".join(lines) + "\n").encode("utf-8")
    else:
        tree = tree_from_profile(profile, group_by=group)
        if args.focus:
            tree = focus_tree(tree, focus_matcher(args.focus))
        title = args.title or ("Flame graph: " + ", ".join(Path(p).name for p in args.inputs))
        span = ""
        if profile.start is not None and profile.end is not None:
            span = f", {profile.end - profile.start:.3f} s"
        svg, _ = render_svg(tree, SvgOptions(
            title=title, subtitle=f"{profile.total:,} {profile.unit}{span}",
            min_width_px=args.min_width, max_nodes=args.max_nodes,
            notes=[n for n in profile.notes if "using perf map" not in n][:4]
            + [n for n in tree.notes if n.startswith("focused")]))
        data = svg.encode("utf-8")
    if out_path:
        Path(out_path).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return len(data)


def run(args: argparse.Namespace) -> int:
    if args.json and not args.output:
        raise UsageError("--json prints a summary on stdout; give the flame graph a file with -o",
                         source="command line")
    fmt = output_format(args.format, args.output)
    profile = load_symbolized(args.inputs, args)
    size = write_output(profile, fmt, args.output, args)
    info = summary(profile)
    info.update(output=args.output, format=fmt, bytes=size)
    if args.json:
        output.write_json(info)
    elif args.output:
        top = ", ".join(f"{printable(e['function'])} {e['self']}"
                        for e in info["self_by_function"][:3])
        print(f"wrote {args.output} ({fmt}, {size:,} bytes): {info['total']:,} {profile.unit}; "
              f"top self: {top}", file=sys.stderr)
        for note in profile.notes:
            print(f"note: {printable(note)}", file=sys.stderr)
    return 0
