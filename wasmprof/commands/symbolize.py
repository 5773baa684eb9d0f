"""``wasmprof symbolize LOG…``: find every Wasm crash in gateway logs and resolve its frames.

Like Envoy's ``tools/stack_decode.py``, it is a filter: the log comes out as it went in,
with each crash block gathered in one place, its backtrace frames expanded to
``function (inlined into …) at file:line:col``. Exit codes: 0 crashes found (and
symbolized as far as the modules allow), 1 no crash found, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from wasmprof.crashes import MODES, CrashSymbolizer
from wasmprof.errors import UsageError, WasmprofError
from wasmprof.model import Crash, Frame, FrameStatus, Module
from wasmprof.output import Progress, write_json

EPILOG = """\
examples:
  wasmprof symbolize envoy.log --module plugin.wasm
        the log with every Wasm backtrace expanded (one module applies to every crash)
  kubectl logs deploy/higress-gateway | wasmprof symbolize - --modules-dir ./plugins
        modules matched to crashes by plugin name, file name or function names
  wasmprof symbolize crash.log --module plugin.aot --only-crashes
        only the crash blocks; an .aot module means WAMR AOT offsets
  wasmprof symbolize iwasm.out --module plugin.wasm --mode fast-interp --json
        force the offset space; JSON: {"crashes": [{"message", "trap_kind", "frames"...}]}

  kubectl logs deploy/higress-gateway --prefix --timestamps | wasmprof symbolize - --json
        envelopes are peeled first: kubectl/stern prefixes, Docker json-file, CRI,
        Fluent Bit / Vector / Loki JSON, TUI borders, pasted JSON strings
  node run.js 2> err.txt; wasmprof symbolize err.txt --module plugin.wasm
        node / Chrome / Deno err.stack traces (wasm://wasm/...:wasm-function[N]:0x...)

Reads Envoy, istio-proxy (TSV and JSON) and Higress logs, plain stdout (WAMR dumps) and
.gz files, in whatever envelope they were shipped or pasted (detected from the first
lines). Dialects: WAMR call-stack dumps (classic/fast interpreter, AOT), V8 and WAVM
in-VM backtraces, V8 err.stack outside Envoy, Wasmtime traps, Envoy native crash
backtraces (kept as native frames). The plugin's own panic output (Go's goroutine
traceback written one token per record, TinyGo, Rust, C++) is reassembled per thread and
shown with the crash that follows it, with the plugin's last log lines (breadcrumbs).
--mode auto (default) infers the offset space from the dialect and the module and prints
its choice under each crash.
Exit codes: 0 crashes found, 1 none found, 2 bad usage or input (a binary file given as
LOG: "did you mean --module?").
"""

MODULE_SUFFIXES = (".wasm", ".aot", ".o", ".cwasm")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "symbolize", help="find Wasm crashes in gateway logs and symbolize their backtraces",
        description="Find every Wasm plugin crash in Envoy / istio-proxy / Higress logs and "
                    "print the log with each backtrace frame resolved to function, file, "
                    "line and inline chain.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="LOG", help="log files ('-' for stdin, .gz ok)")
    p.add_argument("--module", dest="modules", action="append", default=[], metavar="FILE",
                   help="a module the crashes may come from (.wasm, .aot, .aot.wasm, wamrc .o, "
                        ".cwasm); repeatable")
    p.add_argument("--modules-dir", dest="modules_dirs", action="append", default=[],
                   metavar="DIR", help="load every module file in DIR (non-recursive); "
                                       "repeatable")
    p.add_argument("--source-map", dest="source_maps", action="append", default=[],
                   metavar="FILE", help="a .wasm.map for a module without DWARF "
                   "(AssemblyScript, Emscripten -gsource-map); repeatable")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="address space of the printed offsets (default: auto)")
    p.add_argument("--only-crashes", action="store_true",
                   help="print the crash blocks only, not the other log lines")
    p.add_argument("--json", action="store_true",
                   help='print {"crashes": [...]} as JSON instead of the annotated log')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wasmprof.ingest.crashlog import scan_log

    modules = load_modules(args.modules, args.modules_dirs, args.source_maps)
    symbolizer = CrashSymbolizer(modules, _make_resolver(), mode=args.mode)
    out = sys.stdout.buffer
    tty = sys.stdout.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    found: list[dict] = []
    count = 0
    for path in args.logs:
        with _open_log(path) as stream:
            size = _size(path)
            progress = Progress(f"scanning {Path(path).name}", size)
            for item in scan_log(stream, path, progress=progress,
                                 keep_lines=not (args.json or args.only_crashes)):
                if isinstance(item, Crash):
                    count += 1
                    symbolizer.symbolize(item)
                    if args.json:
                        found.append(item.to_dict())
                    else:
                        out.write(render_crash(item, count, color=color).encode())
                elif not args.json:
                    out.write(sanitize(item.decode("utf-8", "replace")).encode()
                              if tty else item)
    if args.json:
        write_json({"crashes": found})
    else:
        out.flush()
    if count == 0:
        print("wasmprof: no Wasm crash found", file=sys.stderr)
        return 1
    return 0


def load_modules(files: list[str], directories: list[str],
                 source_maps: list[str] = ()) -> list[Module]:
    """Modules from ``--module`` (errors are fatal) and ``--modules-dir`` (unreadable files
    are skipped with a warning), with ``--source-map`` files attached, matched with each other
    (.aot <-> .wasm, stripped <-> debug)."""
    from wasmprof.binary.loader import attach_source_maps, find_companion, load_module

    modules = [load_module(f) for f in files]
    for directory in directories:
        d = Path(directory)
        if not d.is_dir():
            raise UsageError("not a directory", source=directory, expected="--modules-dir DIR")
        for f in sorted(d.iterdir()):
            if f.is_file() and f.name.endswith(MODULE_SUFFIXES):
                try:
                    modules.append(load_module(f))
                except WasmprofError as e:
                    print(f"wasmprof: warning: skipped {e}", file=sys.stderr)
    attach_source_maps(modules, source_maps)
    for m in modules:
        if m.companion is None:
            find_companion(m, modules)
    return modules


def _make_resolver():
    from wasmprof.addr2line.resolver import Resolver
    return Resolver()


def _size(path: str) -> int | None:
    if path == "-" or path.endswith(".gz"):
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class _open_log:
    """Context manager: a binary stream for a path ('-' = stdin, .gz decompressed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if self.path == "-":
            stdin = _GuardedStream(sys.stdin.buffer, "<stdin>")
            check_text(stdin.peek(TEXT_SNIFF), "<stdin>")
            return stdin  # type: ignore[return-value]
        try:
            if self.path.endswith(".gz"):
                self.stream = gzip.open(self.path, "rb")  # type: ignore[assignment]
            else:
                self.stream = open(self.path, "rb")  # noqa: SIM115
        except OSError as e:
            raise WasmprofError(f"cannot read log: {e.strerror}", source=self.path) from None
        guarded = _GuardedStream(self.stream, self.path)
        check_text(guarded.peek(TEXT_SNIFF), self.path)
        return guarded  # type: ignore[return-value]

    def __exit__(self, *exc) -> None:
        if self.stream is not None:
            self.stream.close()


class _GuardedStream:
    """Turns read errors (a corrupt .gz, an unreadable file) into WasmprofError; a gzip
    stream without the .gz name is decompressed too."""

    def __init__(self, stream: BinaryIO, path: str) -> None:
        self.stream = stream
        self.path = path
        self.head = b""

    def peek(self, n: int) -> bytes:
        """The first ``n`` bytes (kept for the next reads)."""
        while len(self.head) < n:
            piece = self.read(n - len(self.head), _peeking=True)
            if not piece:
                break
            self.head += piece
        if self.head[:2] == b"\x1f\x8b" and not isinstance(self.stream, gzip.GzipFile):
            self.stream = gzip.GzipFile(fileobj=_Prefixed(self.head, self.stream))  # type: ignore[assignment]
            self.head = b""
            return self.peek(n)
        return self.head[:n]

    def read(self, n: int = -1, *, _peeking: bool = False) -> bytes:
        if self.head and not _peeking:
            if n < 0:
                out, self.head = self.head + self._read(-1), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self._read(n)

    def _read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise WasmprofError(f"cannot read log: {e}", source=self.path) from None


class _Prefixed:
    """Bytes already read, then the rest of a stream."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 else (self.head[:n], self.head[n:])
            return out
        return self.stream.read(n)


TEXT_SNIFF = 1024
_BINARY_MAGIC = {b"\0asm": "a WebAssembly module", b"\0aot": "a WAMR AOT module",
                 b"\x7fELF": "an ELF file"}


def check_text(head: bytes, source: str) -> None:
    """Refuse a binary file given where a log belongs (``wasmprof symbolize plugin.wasm``),
    judged from its first KiB: Wasm/AOT/ELF magic, NUL bytes, or mostly non-text bytes."""
    what = next((w for magic, w in _BINARY_MAGIC.items() if head.startswith(magic)), None)
    if what is None and head:
        if b"\0" in head:
            what = "binary data (NUL bytes)"
        else:
            text = head.decode("utf-8", "replace")
            odd = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\x1b\x0c"))
            if odd * 10 > len(text):
                what = "binary data"
    if what is not None:
        raise WasmprofError(f"not a text log ({what}); did you mean --module?", source=source,
                            offset=0, expected="a gateway log (text)",
                            found=what)


# -- text rendering -------------------------------------------------------------------------
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f,
                                         *range(0x80, 0xa0))}
_CONTROL.update({c: f"\\u{c:04x}" for c in (*range(0x202a, 0x202f), *range(0x2066, 0x206a))})
_CONTROL_NO_NL = dict(_CONTROL)
_CONTROL_NO_NL[0x0a] = "\\n"


def sanitize(text: str, *, single_line: bool = False) -> str:
    """Escape terminal control characters (ESC, C1, CR…) in attacker-controlled text."""
    return text.translate(_CONTROL_NO_NL if single_line else _CONTROL)


def _style(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def describe_frame(frame: Frame, outer: Frame | None) -> str:
    """``function (inlined into outer) at file:line:col`` plus the status when not exact."""
    name = frame.function or (f"$f{frame.wasm_index}" if frame.wasm_index is not None else "??")
    text = name
    if frame.inlined and outer is not None and outer.function:
        text += f" (inlined into {outer.function})"
    if frame.file:
        loc = frame.file
        if frame.line:
            loc += f":{frame.line}"
            if frame.column:
                loc += f":{frame.column}"
        text += f" at {loc}"
    if frame.status is not FrameStatus.EXACT:
        text += f"  [{frame.status}" + (f": {frame.reason}" if frame.reason else "") + "]"
    return sanitize(text, single_line=True)


def render_crash(crash: Crash, number: int, *, color: bool = False) -> str:
    """The crash block: a heading, its raw lines with each frame line followed by its
    resolved frames, then notes. All log-derived text is escaped."""
    by_input: dict[int, list[Frame]] = {}
    for f in crash.frames:
        by_input.setdefault(f.input_index if f.input_index is not None else -1, []).append(f)
    head = [f"wasm crash #{number}: {crash.trap_kind}"]
    if crash.message and crash.message.replace(" ", "-") != str(crash.trap_kind):
        head.append(crash.message)
    head.append(str(crash.runtime) + (f"/{crash.space}" if crash.space else ""))
    if crash.plugin:
        head.append(f"plugin {crash.plugin}")
    if crash.function:
        head.append(f"in {crash.function}")
    if crash.thread:
        head.append(f"thread {crash.thread}")
    if crash.first_line:
        head.append(f"{Path(crash.source or '-').name}:{crash.first_line}")
    if crash.partial:
        head.append("PARTIAL")
    lines = [_style("==> " + sanitize(" | ".join(head), single_line=True), "1;31", color)]
    frame_raw = {id(rf.raw): i for i, rf in enumerate(crash.raw_frames) if rf.raw is not None}
    total = len(crash.raw_frames)
    elide = range(SHOW_HEAD, total - SHOW_TAIL) if total > SHOW_HEAD + SHOW_TAIL + 10 else range(0)
    panic_lines = crash.panic.log_lines if crash.panic is not None else 0
    for n, raw in enumerate(crash.raw):
        if panic_lines > PANIC_SHOWN and PANIC_SHOWN // 2 <= n < panic_lines - PANIC_SHOWN // 2:
            if n == PANIC_SHOWN // 2:
                lines.append(_style(f"    ... {panic_lines - PANIC_SHOWN} more lines of the "
                                    "plugin's panic output (reassembled below; --json has "
                                    "them all)", "2", color))
            continue
        k = frame_raw.get(id(raw))
        if k is not None and k in elide:
            if k == elide.start:
                lines.append(_style(f"    ... {len(elide)} frames not shown: "
                                    f"{_summary(crash, elide)} (--json lists them all)", "2",
                                    color))
            continue
        lines.append(sanitize(raw, single_line=True))
        if k is None:
            continue
        chain = by_input.get(k, [])
        for j, fr in enumerate(chain):
            outer = chain[j + 1] if fr.inlined and j + 1 < len(chain) else None
            arrow = _style("    -> ", "2", color)
            text = describe_frame(fr, outer)
            lines.append(arrow + (_style(text, "36", color) if fr.status is FrameStatus.EXACT
                                  else text))
    lines.extend(_render_panic(crash, by_input.get(-1, []), color))
    if crash.breadcrumbs:
        lines.append(_style(f"    breadcrumbs (the plugin's last {len(crash.breadcrumbs)} log "
                            "records on this thread):", "2", color))
        for b in crash.breadcrumbs:
            lines.append(_style(f"      {b.line}: [{b.level or '?'}] " + sanitize(b.text, single_line=True),
                                "2", color))
    for note in crash.notes:
        lines.append(_style("    note: " + sanitize(note, single_line=True), "2", color))
    return "\n".join(lines) + "\n"


def _render_panic(crash: Crash, text_frames: list[Frame], color: bool) -> list[str]:
    p = crash.panic
    if p is None:
        return []
    head = f"    panic ({p.language}{', recovered' if p.recovered else ''}"
    head += ", partial: no trap followed)" if p.partial else ")"
    head += ": " + sanitize(p.message or "?", single_line=True)
    if p.location:
        head += " at " + sanitize(p.location, single_line=True)
    out = [_style(head, "1;33", color)]
    if p.records > 1 and p.lines:
        out.append(_style(f"    its output, reassembled from {p.records} log records:", "2",
                          color))
        out.extend("      " + sanitize(x, single_line=True).replace("\t", "    ")
                   for x in p.lines[:PANIC_TEXT_SHOWN])
        if len(p.lines) > PANIC_TEXT_SHOWN:
            out.append(f"      ... {len(p.lines) - PANIC_TEXT_SHOWN} more lines")
    frames = [f for f in text_frames if f.status is FrameStatus.RUNTIME_TEXT]
    if frames:
        out.append(_style(f"    {len(frames)} frames from its traceback (the runtime's text, "
                          "not DWARF): " + ", ".join(sanitize(f"{f.function} ({f.file}:{f.line})",
                                                             single_line=True)
                                                    for f in frames[:6])
                          + (" …" if len(frames) > 6 else ""), "2", color))
    return out


SHOW_HEAD, SHOW_TAIL = 60, 20     # deep recursion dumps (8192 frames) are cut in the middle
PANIC_SHOWN = 6                   # log lines of a panic's output shown before reassembly
PANIC_TEXT_SHOWN = 40


def _summary(crash: Crash, frames: range) -> str:
    """``parse_list x4000, parse_value x4000`` for the elided part of a deep stack."""
    counts: dict[str, int] = {}
    for k in frames:
        rf = crash.raw_frames[k]
        name = rf.printed_name or (f"$f{rf.func_index}" if rf.func_index is not None else "?")
        counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{sanitize(n, single_line=True)} x{c}" for n, c in top[:4])
    return text + (f" and {len(top) - 4} more functions" if len(top) > 4 else "")


def iter_crashes(path: str) -> Iterator[Crash]:
    """Crashes of one log file (unsymbolized): a convenience for scripts and tests."""
    from wasmprof.ingest.crashlog import scan_log

    with _open_log(path) as stream:
        for item in scan_log(stream, path, keep_lines=False):
            if isinstance(item, Crash):
                yield item
