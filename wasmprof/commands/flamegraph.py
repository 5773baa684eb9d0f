"""``wasmprof flamegraph``: profiles → symbolized flame graph (SVG, speedscope JSON, folded).

Inputs are read in one streaming pass (:mod:`wasmprof.aggregate`): perf scripts of any size
in bounded memory. A recording with several events gives one profile per event; the first is
drawn unless ``--event`` names another, and the summary lists them all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from wasmprof import output
from wasmprof.errors import UsageError
from wasmprof.profiles import PROFILE_FORMATS, SymbolizedProfile, self_by_function

FORMATS = ("svg", "speedscope", "folded")
SUFFIX_FORMAT = {".svg": "svg", ".json": "speedscope", ".speedscope": "speedscope",
                 ".folded": "folded", ".collapsed": "folded", ".txt": "folded"}

EXAMPLES = """examples:
  # perf + WAMR perf map (found next to the script, or /tmp/perf-PID.map) + the plugin's .wasm
  perf script > out.perf
  wasmprof flamegraph out.perf --module plugin.wasm -o flame.svg
  # speedscope JSON (open in https://www.speedscope.app or the dashboard), one profile per thread
  wasmprof flamegraph out.perf --perf-map /tmp/perf-4242.map --module plugin.aot -o prof.json
  # folded stacks with Wasm names for other tools (FlameGraph's --pid root: --group-by process)
  wasmprof flamegraph out.perf --module plugin.wasm --format folded > out.folded
  # a recording of several events (perf record -e cycles,instructions), weighted by period
  wasmprof flamegraph out.perf --event instructions --weight period -o instr.svg
  # node --perf-basic-prof or Wasmtime profiler=perfmap recordings: Wasm frames by index
  wasmprof flamegraph node.perf --perf-map /tmp/perf-1234.map --module plugin.wasm -o v8.svg
  # agent JSON batches, folded stacks with aot_func#N names, WAMR 'Performance profiler data:'
  wasmprof flamegraph batch1.json batch2.json --module plugin.aot -o flame.svg

exit codes: 0 written; 2 bad input or usage, including a --module that does not fit the
recording (e.g. "perf map has 58 AOT functions, crash_oob.O2.wasm has 65")
"""


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--perf-map", action="append", default=[], metavar="F",
                   help="perf map file (/tmp/perf-PID.map) for bare addresses and JIT frames; "
                        "repeatable. Maps next to a perf script that it names are used "
                        "automatically")
    p.add_argument("--no-auto-maps", action="store_true",
                   help="do not look for perf-PID.map files next to the inputs")
    p.add_argument("--module", action="append", default=[], metavar="F",
                   help="plugin binary (.wasm, .aot, .aot.wasm, wamrc object, .cwasm) to resolve "
                        "frames against; repeatable (an .aot and its .wasm pair up)")
    p.add_argument("--input-format", choices=PROFILE_FORMATS,
                   help="input format (default: detected from the content)")
    p.add_argument("--event", metavar="NAME",
                   help="which event of a multi-event recording (default: the first one; the "
                        "summary lists them)")
    p.add_argument("--weight", choices=("samples", "period"), default="samples",
                   help="weigh stacks by sample count (default) or by perf's sample period "
                        "where printed (as stackcollapse-perf.pl does; 1 where not)")
    p.add_argument("--on-mismatch", choices=("error", "note"), default="error",
                   help="when the recording does not fit a --module (function counts, offsets "
                        "or names differ): stop with exit 2 (default), or keep those frames "
                        "unnamed (aot_func#N) with a note")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "flamegraph", help="symbolized flame graph from perf/agent/folded/WAMR profiles",
        description="Read profiles (perf script text, agent JSON batches, folded stacks, WAMR "
                    "'Performance profiler data:' blocks; gzip accepted) in one streaming "
                    "pass, map AOT/JIT frames (aot_func#N, perf-map addresses, V8 and "
                    "Wasmtime perf-map names, text offsets) to Wasm functions, lines and inline "
                    "frames after checking that the module fits the recording, keep host "
                    "frames (unknown ones with their DSO, kernel frames marked), and write a "
                    "flame graph.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="profile file(s); merged")
    add_input_options(p)
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: from OUT's suffix: " +
                        ", ".join(f"{k} {v}" for k, v in SUFFIX_FORMAT.items()) +
                        "; svg on stdout)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    p.add_argument("--group-by", default=None, metavar="KEY",
                   help="split by 'thread' (comm/tid), 'process' (comm-pid), a sample label "
                        "(e.g. 'plugin') or 'none' (default: thread for speedscope, none "
                        "otherwise)")
    p.add_argument("--granularity", choices=("line", "function"), default="line",
                   help="speedscope frames per source line (default) or per function")
    p.add_argument("--annotate-kernel", action="store_true",
                   help="folded: append _[k] to kernel frames (stackcollapse-perf.pl --kernel)")
    p.add_argument("--title", help="SVG title")
    p.add_argument("--min-width", type=float, default=0.1, metavar="PX",
                   help="SVG: merge frames narrower than this (default 0.1 px)")
    p.add_argument("--max-nodes", type=int, default=12000,
                   help="SVG: at most this many boxes; the merge threshold grows until it fits")
    p.add_argument("--focus", metavar="REGEX",
                   help="SVG/folded: only the sub-trees under frames whose name matches (drill "
                        "down into frames merged away at full scale)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (samples, events, per-function self counts, "
                        "statuses) on stdout; needs -o")
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
    """The output format: ``--format``, else OUT's suffix (an unknown suffix is refused:
    see :func:`wasmprof.output.open_output`), else svg."""
    if fmt:
        return fmt
    if out and out != "-":
        return SUFFIX_FORMAT.get(Path(out).suffix.lower(), "svg")
    return "svg"


class Loaded:
    """The inputs of one command run, parsed, symbolized and aggregated."""

    def __init__(self, profile: SymbolizedProfile, events: list[dict[str, Any]],
                 event: str | None, notes: list[str]) -> None:
        self.profile = profile
        self.events = events
        self.event = event
        self.notes = notes


def make_symbolizer(args: argparse.Namespace) -> Any:
    from wasmprof.binary.loader import load_module
    from wasmprof.profiles import Symbolizer

    modules = [load_module(m) for m in args.module]
    return Symbolizer(modules, on_mismatch="raise" if args.on_mismatch == "error" else "note")


def load_aggregated(paths: list[str], args: argparse.Namespace, *, timeline: bool = False,
                    symbolizer: Any = None) -> Loaded:
    """Parse, symbolize and aggregate ``paths`` in one streaming pass (shared by
    ``flamegraph`` and ``diff``); the event ``--event`` names (default: the first)."""
    from wasmprof.aggregate import ProfileAggregator
    from wasmprof.ingest.perf_map import read_perf_map
    from wasmprof.ingest.perf_script import PerfScriptReader
    from wasmprof.profiles import (assign_perf_map_modules, detect_profile_format,
                                   discover_perf_maps, open_profile_input, parse_profile_stream)

    symbolizer = symbolizer or make_symbolizer(args)
    modules = symbolizer.modules.modules
    mode = "raise" if args.on_mismatch == "error" else "note"
    explicit = [read_perf_map(m) for m in args.perf_map]
    agg = ProfileAggregator(symbolizer, weight=args.weight, timeline=timeline)
    notes: list[str] = []
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError("no such input file", source=path)
        maps = list(explicit)
        if not args.no_auto_maps and not explicit:
            for mp in discover_perf_maps(path):
                maps.append(read_perf_map(mp))
                notes.append(f"{path}: using perf map {mp}")
        for m in maps:
            notes.extend(m.notes[:3])
        notes.extend(assign_perf_map_modules(maps, modules, on_mismatch=mode))
        progress = output.Progress(f"reading {Path(path).name}", os.path.getsize(path))
        try:
            with open_profile_input(path) as f:
                fmt = args.input_format or detect_profile_format(f.read(1 << 16), path)
                f.seek(0)
                if fmt == "perf-script":
                    reader = PerfScriptReader(perf_maps=maps, source=path,
                                              progress=progress.update)
                    agg.add_reader(reader, f, source=path)
                    notes.extend(n for n in reader.stats.notes if not n.startswith("events in"))
                else:
                    for prof in parse_profile_stream(f, source=path, perf_maps=maps, fmt=fmt,
                                                     progress=progress.update):
                        agg.add_profile(prof, source=path)
        finally:
            progress.close()
    results = agg.results()
    events = [s.to_dict() for s in agg.summaries()]
    names = [p.labels.get("event", "") for p in results]
    if args.event is not None:
        if args.event not in names:
            raise UsageError("no such event in the input", source="--event", found=args.event,
                             expected="one of " + ", ".join(repr(n) for n in names if n))
        chosen = results[names.index(args.event)]
    else:
        chosen = results[0]
    chosen.notes = list(dict.fromkeys(notes + chosen.notes))
    if len(results) > 1:
        chosen.notes.append("events in the input: " + ", ".join(
            f"{e['event'] or '(none)'} ({e['samples']:,} samples"
            + (", shown)" if p is chosen else f"; --event {e['event']})")
            for e, p in zip(events, results)))
    return Loaded(chosen, events, chosen.labels.get("event"), chosen.notes)


def load_symbolized(paths: list[str], args: argparse.Namespace) -> SymbolizedProfile:
    """The aggregated, symbolized profile of ``paths`` (see :func:`load_aggregated`)."""
    return load_aggregated(paths, args).profile


def summary(profile: SymbolizedProfile, loaded: Loaded | None = None) -> dict[str, Any]:
    by_fn = sorted(self_by_function(profile).items(), key=lambda kv: -kv[1])
    return {
        "samples": profile.sample_count if profile.sample_count is not None
        else len(profile.samples),
        "distinct_stacks": len(profile.samples),
        "total": profile.total, "unit": profile.unit, "weight": profile.weight,
        "event": loaded.event if loaded else profile.labels.get("event"),
        "events": loaded.events if loaded else [],
        "start": profile.start, "end": profile.end,
        "distinct_frames_resolved": profile.distinct_frames,
        "status_counts": profile.status_counts,
        "self_by_function": [{"wasm_index": k[0], "function": k[1], "self": v} for k, v in by_fn],
        "notes": profile.notes,
    }


def render(profile: SymbolizedProfile, fmt: str, args: argparse.Namespace) -> bytes:
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
        return orjson.dumps(doc)
    if fmt == "folded":
        lines = folded_lines(profile, group_by=group, annotate=args.annotate_kernel)
        if args.focus:
            lines = focus_folded(lines, focus_matcher(args.focus))
        return ("\n".join(lines) + "\n").encode("utf-8")
    tree = tree_from_profile(profile, group_by=group)
    if args.focus:
        tree = focus_tree(tree, focus_matcher(args.focus))
    title = args.title or ("Flame graph: " + ", ".join(Path(p).name for p in args.inputs))
    span = ""
    if profile.start is not None and profile.end is not None:
        span = f", {profile.end - profile.start:.3f} s"
    event = profile.labels.get("event")
    svg, _ = render_svg(tree, SvgOptions(
        title=title, subtitle=f"{profile.total:,} {profile.unit}{span}"
        + (f", event {event}" if event else ""),
        min_width_px=args.min_width, max_nodes=args.max_nodes,
        notes=[n for n in profile.notes if "using perf map" not in n][:4]
        + [n for n in tree.notes if n.startswith("focused")]))
    return svg.encode("utf-8")


def run(args: argparse.Namespace) -> int:
    if args.json and not args.output:
        raise UsageError("--json prints a summary on stdout; give the flame graph a file with -o",
                         source="command line")
    allowed = None if args.format else SUFFIX_FORMAT
    out = output.open_output(args.output, allowed_suffixes=allowed) \
        if args.output and args.output != "-" else None
    try:
        fmt = output_format(args.format, args.output)
        loaded = load_aggregated(args.inputs, args, timeline=fmt == "speedscope")
        profile = loaded.profile
        data = render(profile, fmt, args)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            out.write(data)
            out.close()
    except BaseException:
        if out is not None and hasattr(out, "discard"):
            out.discard()
        raise
    info = summary(profile, loaded)
    info.update(output=args.output, format=fmt, bytes=len(data))
    if args.json:
        output.write_json(info)
    elif args.output:
        top = ", ".join(f"{printable(e['function'])} {e['self']:,}"
                        for e in info["self_by_function"][:3])
        print(f"wrote {args.output} ({fmt}, {len(data):,} bytes): {profile.total:,} "
              f"{profile.unit}; top self: {top}", file=sys.stderr)
        for note in profile.notes:
            print(f"note: {printable(note)}", file=sys.stderr)
    return 0
