"""Streaming crash scanner: gateway log bytes in, :class:`Crash` objects out.

Contract:

- :func:`scan_crashes` reads a log (binary stream or iterable of byte pieces) in constant
  memory and yields every Wasm crash it finds, in the order the crashes complete. It never
  raises on damaged text: unreadable parts are skipped, crashes cut short come out with
  ``partial=True`` and a note saying why.
- :func:`scan_log` yields the same crashes plus the lines that belong to no crash
  (verbatim ``bytes``), in file order, each crash at the position of its first line: the
  basis of ``wasmprof symbolize``'s pass-through output.

How it stays fast: the scanner only looks at lines that contain one of a few trigger
byte strings (:data:`TRIGGERS`, all found in one pass per chunk by
:mod:`wasmprof.ingest.triggers`), except while a crash block is open (continuation lines,
a WAMR dump, an Envoy native backtrace), when every line is read.

What it assembles (formats.md §4, §5): ``Function: X failed: MESSAGE`` records with V8 /
WAVM in-VM backtraces or Wasmtime ``wasm backtrace:`` blocks as continuation lines;
WAMR ``#NN: 0xOOOO - NAME`` dumps (stdout, unprefixed or prefixed, interleaved with other
threads) paired with the nearest ``Function: … failed: Exception: …`` record or
``Exception: …`` line before or after them; Envoy native ``Caught <signal>`` blocks.
``wasm log PLUGIN ROOT VM:`` lines name the plugin last active on their thread; the last of
them become the crash's breadcrumbs, and a language runtime's panic written through them
(:mod:`wasmprof.ingest.plugin_output`, :mod:`wasmprof.ingest.panics`: Go's one record per
token, TinyGo, Rust, C++) is attached to the crash that follows on the same thread within
:data:`PANIC_WINDOW` bytes, or comes out as a crash of its own, partial. node / Chrome /
Deno ``err.stack`` traces (:mod:`wasmprof.ingest.v8_errstack`) are a dialect of their own.

Envelopes (:mod:`wasmprof.ingest.envelopes`) are detected per stream from its first bytes
and peeled before any of this; a plain log keeps the fast path unchanged. Threads are keyed
by (origin, thread): pods in one ``kubectl --prefix`` stream reuse thread ids.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wasmprof.ingest import (envelopes, envoy_native, panics, v8_backtrace, v8_errstack,
                             wamr_dump, wasmtime_trace, wavm_backtrace)
from wasmprof.ingest.envelopes import Item, Peeler
from wasmprof.ingest.logline import LineFormat, LogLine, decode, parse_line, split_thread_suffix
from wasmprof.ingest.lookback import MAX_BYTES as LOOKBACK_MAX_BYTES
from wasmprof.ingest.lookback import Lookback
from wasmprof.ingest.plugin_output import (BREADCRUMBS, OpenPanic, PluginOutputs, Record,
                                            parse_record, quick_record)
from wasmprof.ingest.traps import classify
from wasmprof.ingest.triggers import TriggerSet
from wasmprof.model import AddressSpace, Crash, RawFrame, Runtime, TrapKind
from wasmprof.output import Progress

TRIGGERS: tuple[bytes, ...] = (b": 0x", b"#00 ", b"Function: ", b"Exception: ", b"Caught ",
                               b" backtrace:", b"anic", b"libc++abi", b"terminate called",
                               b"Assertion failed", b"fatal error: ")
"""In a gateway log (Envoy/Istio line prefixes) read without an envelope, a line without
any of these can neither start nor end a crash when no block is open (the last five: a
plugin's record opening a panic, ``panic:`` / ``panicked at`` / ``libc++abi:`` …). Plugin
lines are not among them — a crash finds its thread's plugin lines afterwards (:mod:`wasmprof.ingest.lookback`)."""
PLUGIN_TRIGGER = b"wasm log"
"""Looked for too while a panic is being collected (its records), and always when the lines
come through an envelope (no lookback in peeled text)."""
PLAIN_TRIGGERS: tuple[bytes, ...] = TRIGGERS + (PLUGIN_TRIGGER, b"Error", b"wasm://wasm/",
                                                b"thread '")
"""Other text (a runtime's own stdout/stderr, node traces): panics and err.stack lines are
plain lines there, so they are triggers too."""
NATIVE_TRIGGERS: tuple[bytes, ...] = (b"[0x", b"Backtrace (use", b"Envoy version: ",
                                      b"Address mapping: ")
"""Lines of an Envoy native backtrace, looked for only while one is open."""
_GATEWAY_SET = TriggerSet(TRIGGERS)
_ENVELOPED_SET = TriggerSet(TRIGGERS + (PLUGIN_TRIGGER,))
_PLAIN_SET = TriggerSet(PLAIN_TRIGGERS)
_NATIVE_SET = TriggerSet(NATIVE_TRIGGERS)

CHUNK_SIZE = 1 << 20
MAX_LINE = 4 << 20            # longer lines are cut into pieces (kept verbatim in output)
MAX_KEPT_LINE = 16 << 10      # a crash keeps at most this much of one raw line
PAIR_WINDOW = 64 << 10        # bytes within which a WAMR dump and its message are paired
NATIVE_WINDOW = 16 << 10      # bytes without a backtrace line that close a native block
MAX_FRAMES = 100_000          # frames per crash (deep recursion prints 8192); more are
                              # read as the next (partial) crash, so memory stays bounded
MAX_HELD = 32 << 20           # pass-through bytes held back while crashes are open
MAX_THREADS = 4096            # threads remembered for plugin attribution

PANIC_WINDOW = 64 << 10       # bytes after a panic's last record within which its trap comes
LOOKBACK_BYTES = 256 << 10    # how far back a crash looks for a record naming its plugin
OPEN_AT_END = "the input ended inside this crash's block (the next part of the log may hold the rest)"
"""Note on crashes still open when the input ended: a later window of the same stream may
hold a longer copy (idempotent ingest lets that copy replace this one)."""

# "#3: …" (WAMR >= 2.0 dumps, Envoy native frames), "#00 name" (old WAMR top frame); the
# native stderr form "#3 sym [0x…]" only matters after a "Caught" line (slow path then).
_WORTH = re.compile(rb"Function: |Exception: |Caught | backtrace:|#\d{1,9}: |#00 ")
# the same in plain text, plus panic openers (panics.opens), err.stack lines and their error line
_WORTH_PLAIN = re.compile(rb"Function: |Exception: |Caught | backtrace:|#\d{1,9}: |#00 |panic|"
                          rb"thread '|libc\+\+abi|wasm://wasm/|Error|fatal error: |terminat|"
                          rb"Assertion failed")
# how the text of a `wasm log` record that may open a panic starts (panics.opens): such a
# record is read, not remembered; the text follows "wasm log[ ids]:" and one space
_OPENERS = (b"panic", b"thread '", b"' panicked", b"libc++abi", b"fatal error",
            b"terminate called",
            b"Assertion failed")
_OPENERS = _OPENERS + tuple(b" " + o for o in _OPENERS)


def _opens_panic(line: bytes) -> bool:
    """Cheap byte test on a ``wasm log`` line: may its record open a panic?"""
    i = line.find(b"wasm log")
    colon = line.find(b":", i + 8) if i >= 0 else -1
    return colon > 0 and line.startswith(_OPENERS, colon + 1)
# runs of frame lines (CrashScanner.frame_run): exactly what v8_backtrace / wamr_dump read
_V8_RUN = re.compile(rb" {0,8}(\d{1,9}): {1,8}0x([0-9a-fA-F]{1,16}) - ([^\t\r\n]*)\r?\n")
_NATIVE_RUN = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?\]\[(\d{1,20})\]\[\w{1,20}\]"
                         rb"\[backtrace\] ?(?:\[[^\]\s]{1,1000}:\d{1,9}\] ?)?(#\d[^\r\n]{0,2000})\r?\n")
_DUMP_RUN = re.compile(rb"#(\d{2,9}): 0x([0-9a-fA-F]{1,16}) - ([^\r\n]*)\r?\n")
_UNKNOWN_FN = re.compile(r"unknown\(function index:(\d{1,9})\)\Z")
_DOLLAR_F = re.compile(r"\$f(\d{1,9})\Z")
# V8 in-VM frames fused on one line (copied out of a terminal UI)
_FUSED = re.compile(r"(?<=\S)\s+(?=\d{1,4}: {1,8}0x[0-9a-fA-F]{1,16} - )")
_FAILED = "Function: "
_FAILED_MID = " failed: "


@dataclass(slots=True)
class _Unit:
    """A crash being assembled."""

    crash: Crash
    lines: list[tuple[int, str]] = field(default_factory=list)
    state: str = ""             # dialect-specific parser state
    causes: list[str] = field(default_factory=list)
    last_offset: int = 0        # byte offset of the last line that belonged to it
    ended: bool = False         # dump: saw its closing empty line
    suffix_due: bool = False    # an istio record whose last line (with thread=N) is to come
    first_offset: int = 1 << 62  # byte offset of its first line

    @property
    def first_line(self) -> int:
        return self.lines[0][0] if self.lines else 0

    def add(self, lineno: int, text: str, offset: int) -> None:
        if offset < self.first_offset:
            self.first_offset = offset
        if len(text) > MAX_KEPT_LINE:
            text = text[:MAX_KEPT_LINE] + f"… [{len(text) - MAX_KEPT_LINE} more characters]"
        self.lines.append((lineno, text))
        self.last_offset = offset

    @property
    def full(self) -> bool:
        return len(self.lines) >= MAX_FRAMES

    def add_frame(self, frame: RawFrame, lineno: int, text: str, offset: int) -> None:
        self.add(lineno, text, offset)
        frame.raw = self.lines[-1][1]
        self.crash.raw_frames.append(frame)

    def flag(self, note: str) -> None:
        self.crash.partial = True
        if note not in self.crash.notes:
            self.crash.notes.append(note)


class CrashScanner:
    """The line-level state machine behind :func:`scan_log` (exposed for tests and servers
    that receive text line by line). Feed lines with :meth:`feed_line` (or already peeled
    :meth:`feed_items`), fetch finished crashes and pass-through lines with :meth:`drain`,
    end with :meth:`finish`. ``peeler``: the stream's envelope (None: plain)."""

    def __init__(self, source: str, *, keep_lines: bool = True,
                 peeler: Peeler | None = None) -> None:
        self.source = source
        self.keep_lines = keep_lines
        self.peeler = peeler
        self.origin: str | None = None            # the stream the current state belongs to
        self.record: _Unit | None = None          # Function: … failed: with continuations
        self.dump: _Unit | None = None            # WAMR #NN dump being read
        self.parked: dict[str | None, tuple[_Unit | None, _Unit | None]] = {}
        self.natives: dict[tuple[str | None, str | None], _Unit] = {}
        self.pending_msgs: list[_Unit] = []       # WAMR failure records awaiting a dump
        self.pending_dumps: list[_Unit] = []      # WAMR dumps awaiting their message
        self.ready: list[_Unit] = []
        self.held: list[tuple[int, bytes]] = []   # pass-through while crashes are open
        self.held_bytes = 0
        self.outputs = PluginOutputs()
        self.cont: OpenPanic | None = None        # a record whose continuation lines may follow
        self.lookback: Lookback | None = None     # raw chunks (plain streams): plugin lines
        self.who_offsets: dict[tuple[str | None, str | None], int] = {}  # where the record
        #                                  that named a thread's plugin was (lookback streams)
        self.panic_spans: dict[tuple[str | None, str | None], list[tuple[int, int]]] = {}
        #                      (first, last) lines of a thread's last panics given to crashes
        self.panic_lines: dict[tuple[str | None, str | None], int] = {}  # last line of a
        #                                                    thread's panic given to a crash
        self.prev: tuple[int, str] | None = None  # (line, text) of the last line read
        self.recent_wamr: list[tuple[str | None, int]] = []
        self.last_signature: tuple | None = None
        self.last_signature_line = 0
        self.at_end = False
        self.deadline = -1          # expire() has nothing to do up to this offset

    # -- state ---------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No block is open: lines without a trigger can be skipped."""
        return (self.record is None and self.dump is None and not self.natives
                and not self.outputs.open and not self.parked
                and (self.peeler is None or not self.peeler.pending))

    @property
    def skippable(self) -> bool:
        """Lines without a trigger may be skipped unseen: nothing open reads every line (a
        panic being collected needs only its thread's ``wasm log`` records, which the fast
        path then feeds instead of remembering; an Envoy native backtrace only its lines,
        found by :data:`NATIVE_TRIGGERS`)."""
        return (self.record is None and self.dump is None and self.cont is None
                and not self.parked and (not self.outputs.open or self.outputs.plain_open == 0)
                and (self.peeler is None or not self.peeler.pending))

    @property
    def busy(self) -> bool:
        """Some crash is open or waiting to be paired: pass-through must be held back."""
        return not self.idle or bool(self.pending_msgs) or bool(self.pending_dumps)

    def expire(self, offset: int) -> None:
        """Give up pairing units whose window ended before byte ``offset``. Cheap until the
        earliest window of what is open ends (:attr:`deadline`: a unit opened later ends
        no earlier than ``NATIVE_WINDOW`` after the last full check)."""
        if offset <= self.deadline:
            return
        self._expire(offset)
        lasts = [offset + NATIVE_WINDOW]
        if self.pending_msgs:
            lasts.append(self.pending_msgs[0].last_offset + PAIR_WINDOW)
        if self.pending_dumps:
            lasts.append(self.pending_dumps[0].last_offset + PAIR_WINDOW)
        if self.dump is not None:
            lasts.append(self.dump.last_offset + NATIVE_WINDOW)
        lasts += [u.last_offset + NATIVE_WINDOW for u in self.natives.values()]
        lasts += [o.last_offset + PANIC_WINDOW for o in self.outputs.open.values()]
        for record, dump in self.parked.values():
            lasts += [u.last_offset + NATIVE_WINDOW for u in (record, dump) if u is not None]
        self.deadline = min(lasts)

    def _expire(self, offset: int) -> None:
        # a message waits as long as a dump is being read: that dump may be its own
        for lst in ((self.pending_dumps,) if self.dump is not None
                    else (self.pending_msgs, self.pending_dumps)):
            while lst and lst[0].last_offset + PAIR_WINDOW < offset:
                self._emit(lst.pop(0))
        if self.dump is not None and self.dump.last_offset + NATIVE_WINDOW < offset:
            self._close_dump(ended=self.dump.crash.thread is not None)
        for key, unit in list(self.natives.items()):
            if unit.last_offset + NATIVE_WINDOW < offset:
                del self.natives[key]
                self._emit(unit)
        if self.outputs.open:
            for out in self.outputs.expired(offset, PANIC_WINDOW):
                self._emit_panic(out, f"nothing within {PANIC_WINDOW >> 10} KiB of log after it")
        if self.parked:
            for origin, (record, dump) in list(self.parked.items()):
                last = max(u.last_offset for u in (record, dump) if u is not None)
                if last + NATIVE_WINDOW < offset:
                    self._switch(origin)
                    self._close_open()
                    self._switch(None)

    # -- pass-through ----------------------------------------------------------------
    def passthrough(self, lineno: int, data: bytes) -> None:
        if not self.keep_lines or not data:
            return
        self.held.append((lineno, data))
        self.held_bytes += len(data)

    # -- one line --------------------------------------------------------------------
    def feed_line(self, raw: bytes, lineno: int, offset: int) -> None:
        """Read one physical line (with its line ending) at 1-based ``lineno``."""
        text = decode(raw)
        if "\x00" in text:
            text = text.replace("\x00", "\\x00")
        if self.peeler is None:
            if self.origin is not None:
                self._switch(None)
            ll = parse_line(text)
            taken = self._line(ll, text, lineno, offset)
            if ll.extra_lines:
                self._extra_lines(ll, lineno, offset)
            self.prev = (lineno, ll.message)
        else:
            taken = False
            for t, origin, stream in self.peeler.peel(text):
                taken |= self._logical(t, origin, stream, lineno, offset)
        if not taken:
            self.passthrough(lineno, raw)
        if self.held_bytes > MAX_HELD:
            self._relieve()

    def feed_items(self, items: list[Item], lineno: int, offset: int) -> None:
        """Read logical lines an envelope reader already peeled (JSON records)."""
        for t, origin, stream in items:
            if not self._logical(t, origin, stream, lineno, offset):
                self.passthrough(lineno, (t + "\n").encode())
            offset += len(t) + 1
        if self.held_bytes > MAX_HELD:
            self._relieve()

    def _logical(self, text: str, origin: str | None, stream: str | None, lineno: int,
                 offset: int) -> bool:
        ll = parse_line(text)
        if origin is not None or stream is not None:
            ll.origin, ll.stream = origin, stream
        if ll.origin is not self.origin and ll.origin != self.origin:
            self._switch(ll.origin)
        taken = self._line(ll, text, lineno, offset)
        if ll.extra_lines:
            self._extra_lines(ll, lineno, offset)
        self.prev = (lineno, ll.message)
        return taken

    def _extra_lines(self, ll: LogLine, lineno: int, offset: int) -> None:
        """Istio JSON: the message's further lines, read as continuation lines."""
        for extra in ll.extra_lines:
            if not self._line(LogLine(LineFormat.PLAIN, extra, thread=ll.thread,
                                      origin=ll.origin), extra, lineno, offset):
                break

    def _switch(self, origin: str | None) -> None:
        """Park the open record/dump of the current stream, resume ``origin``'s."""
        if self.record is not None or self.dump is not None:
            self.parked[self.origin] = (self.record, self.dump)
        self.record, self.dump = self.parked.pop(origin, (None, None))
        self.origin = origin
        self.cont = None

    def _line(self, ll: LogLine, text: str, lineno: int, offset: int) -> bool:
        """Handle one line; True when it became part of a crash."""
        msg = ll.message
        if self.record is not None:
            if ll.has_prefix:                 # a new record: the message has ended
                self._close_record()
            else:
                body, suffix_thread = split_thread_suffix(msg, relaxed=True)
                if self._continue_record(body, lineno, text, offset):
                    if suffix_thread is not None:
                        self.record.crash.thread = self.record.crash.thread or suffix_thread
                        self.record.suffix_due = False
                        self._close_record()
                    return True
                self._close_record()
        if self.dump is not None:
            taken = self._continue_dump(ll, msg, lineno, text, offset)
            if taken is not None:
                return taken
        if self.natives and self._continue_native(ll, msg, lineno, text, offset):
            return True
        if self.cont is not None:
            if not ll.has_prefix and not msg.startswith("#") and msg.strip():
                body, suffix_thread = split_thread_suffix(msg)
                self.cont.extend_last(body, lineno, text, offset)
                if suffix_thread is not None:
                    self._thread_came(self.cont, suffix_thread)
                    self.cont = None
                return True
            self.cont = None
        return self._start(ll, msg, lineno, text, offset)

    # -- heads -----------------------------------------------------------------------
    def _start(self, ll: LogLine, msg: str, lineno: int, text: str, offset: int) -> bool:
        if msg.startswith("wasm log") and ll.has_prefix:
            return self._plugin_record(ll, msg, lineno, text, offset)   # a plugin's record
        if _FAILED in msg and _FAILED_MID in msg:
            return self._start_record(ll, msg, lineno, text, offset)
        if msg.startswith("#"):
            frame = wamr_dump.parse_frame(msg)
            if frame is not None and (frame.offset is not None or frame.index == 0):
                unit = self._new_unit(ll, Runtime.WAMR, lineno)
                unit.crash.space = None
                if frame.index != 0:
                    unit.flag(f"dump starts at frame #{frame.index:02d}: its top was lost")
                unit.add_frame(frame, lineno, text, offset)
                self.dump = unit
                return True
            return False          # e.g. a native frame without its "Caught" line
        if msg.startswith(wamr_dump.EXCEPTION_PREFIX):
            return self._exception_line(ll, msg, lineno, text, offset)
        if msg.startswith("Caught "):
            head = envoy_native.parse_caught(msg)
            if head is None:
                return False
            unit = self._new_unit(ll, Runtime.ENVOY_NATIVE, lineno)
            unit.crash.message = head
            unit.crash.trap_kind = TrapKind.NATIVE_CRASH
            unit.crash.space = AddressSpace.NATIVE
            unit.add(lineno, text, offset)
            key = (ll.origin, ll.thread)
            old = self.natives.pop(key, None)
            if old is not None:
                self._emit(old)
            self.natives[key] = unit
            return True
        if "wasm log" in msg:
            return self._plugin_record(ll, msg, lineno, text, offset)
        if v8_backtrace.is_header(msg) or wasmtime_trace.is_header(msg):
            # The head line was lost (cut log): keep the orphan backtrace.
            unit = self._new_unit(ll, Runtime.UNKNOWN, lineno)
            unit.flag("backtrace without its 'Function: … failed:' line")
            if wasmtime_trace.is_header(msg):
                unit.crash.runtime, unit.crash.space, unit.state = (
                    Runtime.WASMTIME, AddressSpace.WASMTIME, "wt-frames")
                unit.crash.message = None
            else:
                unit.crash.runtime, unit.crash.space, unit.state = (
                    Runtime.V8, AddressSpace.V8, "v8-frames")
            unit.add(lineno, text, offset)
            self.record = unit
            return True
        if v8_errstack.MARK in msg:
            frame = v8_errstack.parse_frame(msg, 0)
            if frame is not None:
                return self._start_errstack(ll, frame, lineno, text, offset)
        if not ll.has_prefix and self._plain_output(ll, msg, lineno, text, offset):
            return True
        return False

    def _new_unit(self, ll: LogLine, runtime: Runtime, lineno: int) -> _Unit:
        crash = Crash(runtime=runtime, thread=ll.thread, timestamp=ll.timestamp,
                      source=self.source, first_line=lineno, origin=ll.origin)
        unit = _Unit(crash)
        out = self.outputs.take((ll.origin, ll.thread))
        if out is not None:
            self._attach_panic(unit, out)
        return unit

    def _start_record(self, ll: LogLine, msg: str, lineno: int, text: str,
                      offset: int) -> bool:
        start = msg.find(_FAILED)
        mid = msg.find(_FAILED_MID, start)
        function = msg[start + len(_FAILED):mid].strip()
        if not function or " " in function or mid < 0:
            return False
        message = msg[mid + len(_FAILED_MID):]
        # --log-format-escaped: the whole multi-line message on one physical line
        escaped_lines: list[str] = []
        if "\\n" in message:
            message, *escaped_lines = message.split("\\n")
        unit = self._new_unit(ll, Runtime.UNKNOWN, lineno)
        crash = unit.crash
        crash.function = function
        unit.add(lineno, text, offset)
        unit.suffix_due = ll.format is LineFormat.ISTIO and ll.thread is None
        wamr_message = wamr_dump.exception_message(message)
        if wamr_message is not None:
            crash.message = wamr_message
            crash.runtime = Runtime.WAMR
        elif wasmtime_trace.is_header(message) or "wasm trap:" in message:
            crash.runtime, crash.space = Runtime.WASMTIME, AddressSpace.WASMTIME
            crash.message = message.strip()
            unit.state = "wt-frames" if wasmtime_trace.is_header(message) else "wt-causes"
        elif wavm_backtrace.is_wavm_message(message):
            crash.runtime, crash.space = Runtime.WAVM, AddressSpace.FILE
            crash.message = message.strip()
            crash.notes.append("WAVM '+N' offsets are operator indices, not byte offsets: "
                               "frames resolve by name only")
            unit.state = "v8-header"
        else:
            crash.runtime = Runtime.V8 if v8_backtrace.is_v8_message(message) else Runtime.UNKNOWN
            crash.space = AddressSpace.V8 if crash.runtime is Runtime.V8 else None
            crash.message = message.strip()
            unit.state = "v8-header"
        crash.trap_kind = classify(crash.message)
        if crash.runtime is Runtime.WAMR:
            self._finish_wamr_message(unit)
            return True
        self.record = unit
        for extra in escaped_lines:
            if not self._continue_record(extra, lineno, extra, offset):
                break
        return True

    def _start_errstack(self, ll: LogLine, frame: RawFrame, lineno: int, text: str,
                        offset: int) -> bool:
        """The first Wasm ``at`` line of a node/Chrome/Deno ``err.stack``; its error line
        is the line just before it."""
        unit = self._new_unit(ll, Runtime.V8_JS, lineno)
        crash = unit.crash
        crash.space = AddressSpace.V8
        prev = self.prev
        message = v8_errstack.error_message(prev[1]) if prev and prev[0] >= lineno - 1 else None
        if message is not None and prev is not None:
            crash.message = message
            unit.add(prev[0], prev[1], offset)
            if self.held and self.held[-1][0] == prev[0]:
                self.held_bytes -= len(self.held.pop()[1])   # the crash prints it now
        else:
            unit.flag("err.stack frames without the error line before them")
        crash.trap_kind = classify(crash.message)
        unit.add_frame(frame, lineno, text, offset)
        unit.state = "js-frames"
        self.record = unit
        return True

    # -- runs of frame lines, read in one go (plain streams) -----------------------------
    def frame_run(self, chunk: bytes, pos: int, lineno: int, base: int) -> tuple[int, int]:
        """Read the V8 in-VM frame lines (or WAMR dump frame lines, or Envoy native backtrace
        frame lines in Envoy's default format) that follow line
        ``lineno`` at ``pos`` of ``chunk`` with one regex match each instead of the
        line-by-line path; stops at the first line that needs that path (a thread field, two
        frames on one line, a gap in a dump's numbering, a long line). Returns (position
        after them, how many)."""
        first = lineno
        unit = self.record
        if unit is not None:
            if unit.state != "v8-frames" or unit.crash.runtime is not Runtime.V8:
                return pos, 0
            frames = unit.crash.raw_frames
            lines = unit.lines           # what unit.add does, inlined: these lines are short
            match = _V8_RUN.match
            v8 = AddressSpace.V8
            start = pos
            while len(lines) < MAX_FRAMES:
                m = match(chunk, pos)
                if m is None:
                    break
                index, offset, name = m.groups()
                if len(name) > 200 or b"0x" in name or b"thread=" in name or b"\0" in name:
                    break
                text = m.group(0).rstrip(b"\r\n").decode("utf-8", "replace")
                lineno += 1
                lines.append((lineno, text))
                name_s = name.decode("utf-8", "replace")
                um = _UNKNOWN_FN.match(name_s) if name_s.startswith("unknown(") else None
                frames.append(RawFrame(int(index), v8, int(offset, 16),
                                       None if um else name_s,
                                       int(um.group(1)) if um else None, raw=text))
                start, pos = pos, m.end()
            if lineno > first:
                unit.last_offset = base + start
            return pos, lineno - first
        unit = self.dump
        if unit is None:
            return self._native_run(chunk, pos, lineno, base) if self.natives else (pos, 0)
        frames = unit.crash.raw_frames
        lines = unit.lines
        match = _DUMP_RUN.match
        space = wamr_dump.PROVISIONAL_SPACE
        start = pos
        while len(lines) < MAX_FRAMES:
            m = match(chunk, pos)
            if m is None:
                break
            whole = m.group(0)
            index = int(m.group(1))
            if (frames and index != frames[-1].index + 1 or len(whole) >= 240
                    or b"\0" in whole):
                break
            text = whole.rstrip(b"\r\n").decode("utf-8", "replace")
            name = m.group(3).decode("utf-8", "replace")
            lineno += 1
            lines.append((lineno, text))
            fm = _DOLLAR_F.match(name) if name.startswith("$f") else None
            frames.append(RawFrame(index, space, int(m.group(2), 16), name,
                                   int(fm.group(1)) if fm else None, raw=text))
            start, pos = pos, m.end()
        if lineno > first:
            unit.last_offset = base + start
        return pos, lineno - first

    def _native_run(self, chunk: bytes, pos: int, lineno: int, base: int) -> tuple[int, int]:
        """The frame lines of open Envoy native backtraces in Envoy's default format, one
        regex match each (the line-by-line path reads the rest)."""
        first = lineno
        match = _NATIVE_RUN.match
        while True:
            m = match(chunk, pos)
            if m is None or b"\0" in m.group(0):
                break
            unit = self.natives.get((None, m.group(1).decode()))
            if unit is None or unit.full:
                break
            frame = envoy_native.parse_frame(m.group(2).decode("utf-8", "replace"))
            if frame is None:
                break
            lineno += 1
            self._native_frame(unit, frame, lineno,
                               m.group(0).rstrip(b"\r\n").decode("utf-8", "replace"), base + pos)
            pos = m.end()
        return pos, lineno - first

    def record_run(self, chunk: bytes, pos: int, lineno: int, base: int) -> tuple[int, int]:
        """Like :meth:`frame_run`, for the records of the panic being collected (Go's one
        record per print token): consecutive whole ``wasm log`` lines of its thread and
        writer in Envoy's or Istio's default format."""
        out = self.cont
        if out is None or not out.tokens:
            return pos, 0
        first = lineno
        thread = out.key[1]
        while not out.full:
            nl = chunk.find(b"\n", pos)
            if nl < 0:
                break
            raw = chunk[pos:nl + 1]
            quick = quick_record(raw, lineno + 1) if b"\0" not in raw else None
            if quick is None or quick[0] != thread or quick[1].writer != out.writer:
                break
            lineno += 1
            out.add(quick[1].text, lineno, raw[:-1].decode("utf-8", "replace").rstrip("\r"),
                    base + pos)
            pos = nl + 1
        return pos, lineno - first

    # -- continuation lines of a record ------------------------------------------------
    def _continue_record(self, body: str, lineno: int, text: str, offset: int) -> bool:
        unit = self.record
        assert unit is not None
        if unit.full:
            unit.flag(f"more than {MAX_FRAMES} lines: the rest was passed through")
            return False
        crash = unit.crash
        state = unit.state
        if state == "v8-header":
            if v8_backtrace.is_header(body):
                unit.add(lineno, text, offset)
                unit.state = "v8-frames"
                return True
            return False
        if state == "v8-frames":
            if (crash.runtime is not Runtime.WAVM and body.count("0x") > 1
                    and _FUSED.search(body) is not None):
                parts = _FUSED.split(body)
                return all([self._continue_record(p, lineno, p, offset) for p in parts])
            frame = (wavm_backtrace.parse_frame(body) if crash.runtime is Runtime.WAVM
                     else v8_backtrace.parse_frame(body, len(crash.raw_frames)))
            if frame is None and crash.runtime is not Runtime.WAVM:
                frame = wavm_backtrace.parse_frame(body)
                if frame is not None:
                    crash.runtime, crash.space = Runtime.WAVM, AddressSpace.FILE
            if frame is not None:
                unit.add_frame(frame, lineno, text, offset)
                return True
            if body.startswith("  ") and body.strip()[:1].isdigit():
                unit.add(lineno, text, offset)
                unit.flag(f"unreadable backtrace line {lineno}")
                return True
            return False
        if state in ("wt-frames", "wt-causes"):
            return self._continue_wasmtime(unit, body, lineno, text, offset)
        if state == "js-frames":
            frame = v8_errstack.parse_frame(body, len(crash.raw_frames))
            if frame is not None:
                unit.add_frame(frame, lineno, text, offset)
                return True
            if v8_errstack.is_js_frame(body):
                unit.add(lineno, text, offset)
                return True
            return False
        return False

    def _continue_wasmtime(self, unit: _Unit, body: str, lineno: int, text: str,
                           offset: int) -> bool:
        if unit.state == "wt-frames":
            frame = wasmtime_trace.parse_frame(body)
            if frame is not None:
                unit.add_frame(frame, lineno, text, offset)
                return True
            loc = wasmtime_trace.parse_at(body)
            if loc is None and unit.crash.raw_frames:
                loc = wasmtime_trace.parse_inlined(body)
            if loc is not None and unit.crash.raw_frames:
                unit.add(lineno, text, offset)
                return True
            if not body.strip() or wasmtime_trace.is_note(body):
                unit.add(lineno, text, offset)
                return True
            if body.strip() == wasmtime_trace.CAUSED_BY:
                unit.add(lineno, text, offset)
                unit.state = "wt-causes"
                return True
            return False
        cause = wasmtime_trace.parse_cause(body) if body.startswith("  ") else None
        if cause is not None:
            unit.add(lineno, text, offset)
            unit.causes.append(cause)
            return True
        if body.strip() == wasmtime_trace.CAUSED_BY or (not body.strip() and unit.causes):
            unit.add(lineno, text, offset)
            return True
        return False

    def _close_record(self) -> None:
        unit, self.record = self.record, None
        if unit is None:
            return
        crash = unit.crash
        if crash.runtime is Runtime.WASMTIME:
            trap = wasmtime_trace.trap_message(unit.causes)
            if trap:
                crash.message = trap
                crash.trap_kind = classify(trap)
            elif unit.state == "wt-frames":
                unit.flag("Wasmtime backtrace cut before its 'Caused by:' block")
        elif unit.state == "v8-frames" and not crash.raw_frames:
            unit.flag("in-VM backtrace header without frames")
        if unit.suffix_due and len(unit.lines) > 1:
            unit.flag("the record's last line (with istio's thread= field) is missing: cut off?")
        self._emit(unit)

    # -- WAMR dumps ----------------------------------------------------------------------
    def _continue_dump(self, ll: LogLine, msg: str, lineno: int, text: str,
                       offset: int) -> bool | None:
        """True/False: the line was handled (part of a crash or not); None: not a dump line,
        the dump is closed or left open, go on with the other parsers."""
        unit = self.dump
        assert unit is not None
        if msg.startswith("#"):
            frame = wamr_dump.parse_frame(msg)
            if frame is not None and unit.full:
                unit.flag(f"more than {MAX_FRAMES} lines: the rest is read as another crash")
                self._close_dump(ended=True)
                return None
            if frame is not None:
                frames = unit.crash.raw_frames
                last = frames[-1].index if frames else -1
                if frame.index <= last:
                    self._close_dump(ended=False)
                    return None          # a new dump starts: handled by _start
                if frame.index != last + 1:
                    unit.flag(f"frames #{last + 1:02d}..#{frame.index - 1:02d} missing")
                unit.add_frame(frame, lineno, text, offset)
                return True
        if not msg.strip() and not ll.has_prefix:
            self._close_dump(ended=True)
            return False
        if ll.has_prefix and not msg.startswith(wamr_dump.EXCEPTION_PREFIX):
            if unit.crash.thread is not None and ll.thread == unit.crash.thread:
                self._close_dump(ended=True)     # a dump logged through Envoy: its thread
            return None                  # moved on; else another thread's line in between
        self._close_dump(ended=wamr_dump.is_profiler_header(msg)
                         or msg.startswith(wamr_dump.EXCEPTION_PREFIX))
        return None

    def _close_dump(self, *, ended: bool) -> None:
        unit, self.dump = self.dump, None
        if unit is None:
            return
        if not ended:
            unit.flag("call-stack dump cut short (no closing empty line)")
        if self.pending_msgs:
            msg_unit = self.pending_msgs.pop(0)
            self._merge(unit, msg_unit)
            if msg_unit.crash.function is not None:
                self._emit(unit)        # the host's record: nothing more to wait for
                return
        self.pending_dumps.append(unit)

    def _exception_line(self, ll: LogLine, msg: str, lineno: int, text: str,
                        offset: int) -> bool:
        """``Exception: MSG`` as iwasm prints it after a dump (weak: an Envoy ``failed:``
        record for the same crash may still come and is preferred)."""
        message = wamr_dump.exception_message(msg) or ""
        for unit in self.pending_dumps:
            if unit.crash.message is None:
                unit.crash.message = message
                unit.crash.trap_kind = classify(message)
                unit.add(lineno, text, offset)
                return True
        for unit in self.pending_msgs:
            if unit.crash.message == message:
                unit.add(lineno, text, offset)
                return True
        for recent_message, recent_offset in self.recent_wamr:
            if recent_message == message and recent_offset + PAIR_WINDOW >= offset:
                return False     # the crash already came out with the host's message
        if classify(message) is TrapKind.UNKNOWN:
            return False
        unit = self._new_unit(ll, Runtime.WAMR, lineno)
        unit.crash.message = message
        unit.crash.trap_kind = classify(message)
        unit.add(lineno, text, offset)
        self.pending_msgs.append(unit)
        return True

    def _finish_wamr_message(self, unit: _Unit) -> None:
        """An Envoy failure record in WAMR's words: pair it with a dump or wait for one."""
        if self.pending_dumps:
            dump = self.pending_dumps.pop(0)
            self._merge(dump, unit)
            self._emit(dump)
        else:
            self.pending_msgs.append(unit)

    def _merge(self, dump: _Unit, msg_unit: _Unit) -> None:
        d, m = dump.crash, msg_unit.crash
        if m.message is not None:
            d.message, d.trap_kind = m.message, m.trap_kind
        for name in ("function", "thread", "timestamp", "plugin", "vm_id", "root_id", "panic",
                     "origin"):
            if getattr(d, name) is None:
                setattr(d, name, getattr(m, name))
        d.notes.extend(n for n in m.notes if n not in d.notes)
        dump.lines = sorted(dump.lines + msg_unit.lines, key=lambda x: x[0])
        dump.last_offset = max(dump.last_offset, msg_unit.last_offset)
        dump.first_offset = min(dump.first_offset, msg_unit.first_offset)  # with its first line

    # -- Envoy native crash ---------------------------------------------------------------
    def _continue_native(self, ll: LogLine, msg: str, lineno: int, text: str,
                         offset: int) -> bool:
        key = (ll.origin, ll.thread)
        unit = self.natives.get(key)
        if unit is None and ll.format is LineFormat.PLAIN and len(self.natives) == 1:
            key, unit = next(iter(self.natives.items()))  # stderr form: no prefix, no thread
        if unit is None:
            return False
        if unit.full:
            unit.flag(f"more than {MAX_FRAMES} lines: the rest was passed through")
            del self.natives[key]
            self._emit(unit)
            return False
        frame = envoy_native.parse_frame(msg)
        if frame is not None:
            self._native_frame(unit, frame, lineno, text, offset)
            return True
        if envoy_native.is_info(msg):
            unit.add(lineno, text, offset)
            mapping = envoy_native.parse_mapping(msg)
            if mapping is not None:
                unit.crash.notes.append(
                    f"Envoy text mapped at 0x{mapping[0]:x}-0x{mapping[1]:x} ({mapping[2]})")
            return True
        if ll.has_prefix and ll.thread == unit.crash.thread and ll.logger != "backtrace":
            del self.natives[key]
            self._emit(unit)
        return False

    @staticmethod
    def _native_frame(unit: _Unit, frame: RawFrame, lineno: int, text: str,
                      offset: int) -> None:
        unit.add_frame(frame, lineno, text, offset)
        if frame.printed_name is None:
            note = ("frames without a symbol may be JIT/AOT code (WAMR AOT, V8); a perf "
                    "map of the process is needed to place them")
            if note not in unit.crash.notes:
                unit.crash.notes.append(note)

    # -- the plugins' own output ------------------------------------------------------------
    def _looked_back(self, crash: Crash, unit: _Unit) -> list[tuple[Record, int]]:
        """The crash's thread's plugin records just before it, newest first, with their byte
        offsets (plain streams: found in the raw bytes, parsed only now)."""
        assert self.lookback is not None and crash.thread is not None
        out = []
        sample = crash.raw[0].encode() if crash.raw else b"["
        found = self.lookback.records(crash.thread, unit.first_offset, unit.first_line or 1,
                                      sample)
        if not found:
            # no record lately: the last one names the plugin, if any, looked for back to
            # the record that named it last time (then that one still does)
            seen = self.who_offsets.get((crash.origin, crash.thread))
            span = LOOKBACK_BYTES if seen is None else min(LOOKBACK_BYTES,
                                                           unit.first_offset - seen)
            if span > LOOKBACK_MAX_BYTES:
                found = self.lookback.records(crash.thread, unit.first_offset,
                                              unit.first_line or 1, sample, limit=1,
                                              max_bytes=span)
        for lineno, offset, raw in found:
            quick = quick_record(raw, lineno)
            if quick is not None:
                if quick[0] == crash.thread:
                    out.append((quick[1], offset))
                continue
            ll = parse_line(decode(raw))
            rec = parse_record(ll.message, line=lineno, level=ll.level,
                               timestamp=ll.timestamp) if ll.thread == crash.thread else None
            if rec is not None:
                out.append((rec, offset))
        return out

    def _plugin_record(self, ll: LogLine, msg: str, lineno: int, text: str,
                       offset: int) -> bool:
        """A ``wasm log`` record read on the slow path: breadcrumb, or part of a panic."""
        rec = parse_record(msg, line=lineno, level=ll.level, timestamp=ll.timestamp)
        if rec is None:
            return False
        key = (ll.origin, ll.thread)
        before = self.outputs.open.get(key)
        if before is not None and before.writer == rec.writer and not before.full:
            before.add(rec.text, lineno, text, offset)      # the panic being written
            self.cont = before
            return True
        out = self.outputs.record(key, rec, text, offset, remember=self.lookback is None)
        if before is not None and out is not None and out is not before:
            self._emit_panic(before, "another panic started on the same thread")
        self.cont = out
        return out is not None

    def _plain_output(self, ll: LogLine, msg: str, lineno: int, text: str,
                      offset: int) -> bool:
        """A line of a runtime's own stderr (node, wasmtime, iwasm): a panic there too."""
        if not self.outputs.open and not ("anic" in msg or "fatal" in msg or "erminat" in msg
                                          or "Assertion" in msg):
            return False
        out = self.outputs.plain((ll.origin, None), msg, lineno, offset, ll.timestamp)
        return out is not None

    def _attach_panic(self, unit: _Unit, out: OpenPanic) -> None:
        """The panic written just before this crash, on its thread, is the crash's."""
        crash = unit.crash
        crash.panic = out.panic()
        unit.lines.extend(out.lines)
        if out.lines and out.first_offset < unit.first_offset:
            unit.first_offset = out.first_offset
        crash.plugin = crash.plugin or out.plugin
        crash.root_id = crash.root_id or out.root_id
        crash.vm_id = crash.vm_id or out.vm_id
        crash.notes.append(f"{crash.panic.language} panic written by the plugin just before "
                           f"(line {out.first_line}, {len(out.texts)} log record(s))")
        self._panic_done(out)
        if self.cont is out:
            self.cont = None

    def _panic_done(self, out: OpenPanic) -> None:
        """Its records belong to a crash now: never another's panic."""
        if len(self.panic_lines) >= MAX_THREADS:
            self.panic_lines.clear()
            self.panic_spans.clear()
        last = max(out.last_line, out.first_line)
        self.panic_lines[out.key] = max(self.panic_lines.get(out.key, 0), last)
        spans = self.panic_spans.setdefault(out.key, [])
        spans[:] = spans[-3:] + [(out.first_line, last)]

    def _thread_came(self, out: OpenPanic, thread: str) -> None:
        """Istio wrote a multi-line record's ``thread=`` on its last line: the panic it
        opened is that thread's from now on."""
        key = (out.key[0], thread)
        if out.key[1] is None and key not in self.outputs.open \
                and self.outputs.open.get(out.key) is out:
            del self.outputs.open[out.key]
            out.key = key
            self.outputs.open[key] = out

    def _late_panic(self, unit: _Unit) -> None:
        """The panic of a crash whose thread came late (istio puts ``thread=`` on a record's
        last line) or never (that line was cut off: then the one panic open in its stream,
        if there is exactly one, and the thread is taken from it, saying so)."""
        crash = unit.crash
        if crash.thread is not None:
            key = (crash.origin, crash.thread)
            out = self.outputs.open.get(key)
        else:
            near = [o for o in self.outputs.open.values()
                    if o.key[0] == crash.origin and o.key[1] is not None]
            out = near[0] if len(near) == 1 else None
        if out is None or out.first_line > unit.first_line:
            return
        self.outputs.take(out.key)
        if crash.thread is None:
            crash.thread = out.key[1]
            crash.notes.append(f"thread {out.key[1]} taken from the panic written just before "
                               "it (the record's own thread field is missing)")
        self._attach_panic(unit, out)
        unit.lines.sort(key=lambda x: x[0])
        crash.raw = [t for _, t in unit.lines]
        crash.first_line = unit.first_line

    def _emit_panic(self, out: OpenPanic, why: str) -> None:
        """A panic no trap followed: a crash of its own, partial."""
        unit = _Unit(Crash(runtime=Runtime.UNKNOWN, thread=out.key[1], origin=out.key[0],
                           timestamp=out.timestamp, source=self.source,
                           first_line=out.first_line, plugin=out.plugin, root_id=out.root_id,
                           vm_id=out.vm_id, trap_kind=TrapKind.PANIC))
        unit.lines.extend(out.lines)
        unit.last_offset = out.last_offset
        unit.first_offset = out.first_offset
        crash = unit.crash
        crash.panic = out.panic()
        crash.panic.partial = True
        crash.message = crash.panic.message
        self._panic_done(out)
        unit.flag(f"{crash.panic.language} panic with no trap after it ({why}): the trap "
                  "record may have been cut off")
        if self.cont is out:
            self.cont = None
        self._emit(unit)

    def _attribute(self, crash: Crash, unit: _Unit) -> None:
        """Plugin, breadcrumbs and (when the plugin's output was not collected on the way)
        the panic printed just before the crash, from its thread's plugin records."""
        key = (crash.origin, crash.thread)
        if self.lookback is not None and crash.thread is not None and crash.origin is None:
            found = self._looked_back(crash, unit)
            if crash.panic is None:
                self._panic_from(unit, found)
            recs = [r for r, _ in found]
            spans = self.panic_spans.get(key, ())
            for rec in recs:
                if crash.panic is not None and rec.line >= (crash.panic.first_line or 0):
                    continue
                if any(a <= rec.line <= b for a, b in spans):
                    continue                  # a panic's record (this crash's or an earlier's)
                if rec.text.strip() and len(crash.breadcrumbs) < BREADCRUMBS:
                    crash.breadcrumbs.append(self.outputs.crumb(rec))
            crash.breadcrumbs.reverse()
            named = next((((r.plugin, r.root_id, r.vm_id, r.line), offset) for r, offset in found
                          if r.plugin is not None or r.root_id is not None), None)
            who = None if named is None else named[0]
            if named is not None:
                if len(self.outputs.who) >= MAX_THREADS:
                    self.outputs.who.clear()
                    self.who_offsets.clear()
                self.outputs.who[key], self.who_offsets[key] = named
            else:                  # the last record of the thread seen before
                who = self.outputs.who.get(key)
        else:
            crash.breadcrumbs = self.outputs.breadcrumbs(key, crash.first_line or 1 << 62)
            who = self.outputs.who.get(key) if crash.thread is not None else None
        if who is None:
            return
        plugin, root, vm, lineno = who
        if crash.plugin is None and plugin is not None:
            crash.plugin = plugin
            crash.notes.append(f"plugin named by the last 'wasm log' line of thread "
                               f"{crash.thread} (line {lineno})")
        crash.root_id = crash.root_id or root
        crash.vm_id = crash.vm_id or vm

    def _panic_from(self, unit: _Unit, found: list[tuple[Record, int]]) -> None:
        """A panic in the records just before the crash (newest first) that the fast path
        did not collect (a Rust panic's first pieces ``thread '`` …, a piece of a C++ one):
        the records from its opener on, within :data:`PANIC_WINDOW` and after the last
        panic this thread had."""
        crash = unit.crash
        done = self.panic_lines.get((crash.origin, crash.thread), 0)
        recs = []
        for rec, offset in found:
            if offset + PANIC_WINDOW < unit.first_offset or rec.line <= done:
                break
            recs.append(rec)
        start = None
        for k, rec in enumerate(recs):
            if panics.opens(rec.text) is not None:
                start = k
        if start is None:
            return
        chosen = list(reversed(recs[:start + 1]))
        kind, tokens = panics.opens(chosen[0].text)  # type: ignore[misc]
        out = OpenPanic(key=(crash.origin, crash.thread), kind=kind, tokens=tokens,
                        writer=chosen[0].writer, first_line=chosen[0].line, last_offset=0,
                        plugin=chosen[0].plugin, root_id=chosen[0].root_id,
                        vm_id=chosen[0].vm_id, timestamp=chosen[0].timestamp)
        for rec in chosen:
            out.add(rec.text, rec.line, rec.raw[0] if rec.raw else rec.text, 0)
        out.lines = []                       # its log lines are not in the crash's raw lines
        self._attach_panic(unit, out)

    # -- output ---------------------------------------------------------------------------
    def _emit(self, unit: _Unit) -> None:
        crash = unit.crash
        unit.lines.sort(key=lambda x: x[0])
        crash.raw = [t for _, t in unit.lines]
        crash.first_line = unit.first_line or crash.first_line
        if crash.runtime is Runtime.WAMR:
            if not crash.raw_frames:
                crash.notes.append("no WAMR call-stack dump found near this message (WAMR "
                                   "prints it on stdout; is the runtime built with "
                                   "WAMR_BUILD_DUMP_CALL_STACK=1?)")
            elif crash.message is None:
                crash.notes.append("call-stack dump without a trap message nearby")
        if crash.runtime is Runtime.WAMR:
            self.recent_wamr = self.recent_wamr[-15:] + [(crash.message, unit.last_offset)]
        if crash.panic is None and self.outputs.open:
            self._late_panic(unit)
        self._attribute(crash, unit)
        _refine_panic(crash)
        if self.at_end and OPEN_AT_END not in crash.notes:
            crash.notes.append(OPEN_AT_END)
        signature = (crash.message, tuple((f.offset, f.printed_name) for f in crash.raw_frames))
        if signature == self.last_signature and crash.raw_frames:
            crash.notes.append(f"same message and frames as the crash at line "
                               f"{self.last_signature_line} (duplicated block?)")
        self.last_signature, self.last_signature_line = signature, crash.first_line or 0
        self.ready.append(unit)

    def _open_first_line(self) -> int | None:
        units = [u for u in (self.record, self.dump) if u is not None]
        units += self.natives.values()
        units += self.pending_msgs
        units += self.pending_dumps
        for record, dump in self.parked.values():
            units += [u for u in (record, dump) if u is not None]
        lines = [u.first_line for u in units]
        lines += [o.first_line for o in self.outputs.open.values()]
        return min(lines, default=None)

    def drain(self) -> Iterator[bytes | Crash]:
        """Pass-through bytes and finished crashes that can be written now, in file order
        (without pass-through: the crashes as they completed)."""
        if not self.ready and not self.held:
            return
        if not self.keep_lines:
            ready, self.ready = self.ready, []
            for unit in ready:
                yield unit.crash
            return
        boundary = self._open_first_line()
        ready = sorted(self.ready, key=lambda u: u.first_line)
        if boundary is None:
            self.ready = []
            held, self.held, self.held_bytes = self.held, [], 0
        else:
            self.ready = [u for u in ready if u.first_line >= boundary]
            ready = [u for u in ready if u.first_line < boundary]
            held = [h for h in self.held if h[0] < boundary]
            self.held = [h for h in self.held if h[0] >= boundary]
            self.held_bytes = sum(len(h[1]) for h in self.held)
        i = 0
        for unit in ready:
            while i < len(held) and held[i][0] < unit.first_line:
                yield held[i][1]
                i += 1
            yield unit.crash
        for j in range(i, len(held)):
            yield held[j][1]

    def _relieve(self) -> None:
        """Too much held back: stop waiting for the oldest pairing so output can flow."""
        if self.pending_msgs or self.pending_dumps or self.outputs.open:
            self.expire(1 << 62)

    def _close_open(self) -> None:
        if self.record is not None:
            self._close_record()
        if self.dump is not None:
            self._close_dump(ended=False)

    def finish(self) -> None:
        """End of input: close everything that is open (noted :data:`OPEN_AT_END`)."""
        self.at_end = True
        if self.peeler is not None:
            for t, origin, stream in self.peeler.flush():
                self._logical(t, origin, stream, self.prev[0] if self.prev else 1, 1 << 61)
        self._close_open()
        for origin in list(self.parked):
            self._switch(origin)
            self._close_open()
        for unit in self.natives.values():
            self._emit(unit)
        self.natives.clear()
        self.expire(1 << 62)


_PANIC_FRAMES = re.compile(r"runtime\._panic|runtime\.gopanic|runtime\.nilPanic|rust_panic|"
                           r"__rust_start_panic|rust_begin_unwind|core::panicking|core9panicking|"
                           r"std::panicking|std9panicking|runtime\.runtimePanic|"
                           r"runtime\.fatalpanic")


def _refine_panic(crash: Crash) -> None:
    """``unreachable`` raised by a language runtime's panic path is a panic; so is a trap the
    plugin's own panic output explains."""
    if crash.panic is not None and crash.trap_kind in (TrapKind.UNREACHABLE, TrapKind.UNKNOWN,
                                                        TrapKind.HOST_ERROR):
        crash.trap_kind = TrapKind.PANIC
        return
    if crash.trap_kind is not TrapKind.UNREACHABLE or not crash.raw_frames:
        return
    for frame in crash.raw_frames[:8]:
        name = frame.printed_name or ""
        if _PANIC_FRAMES.search(name) is not None:
            crash.trap_kind = TrapKind.PANIC
            crash.notes.append(f"'unreachable' reached from the panic path ({name})")
            return


def _chunks(stream: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """Pieces of the input that end at a line end (or are a cut overlong line)."""
    read = getattr(stream, "read", None)
    pieces: Iterable[bytes] = iter(lambda: read(CHUNK_SIZE), b"") if read else stream
    parts: list[bytes] = []
    size = 0
    for piece in pieces:
        if not piece:
            continue
        parts.append(bytes(piece))
        size += len(piece)
        if size < CHUNK_SIZE:
            continue
        data = b"".join(parts)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) <= MAX_LINE:
                parts, size = [data], len(data)
                continue
            cut = len(data)
        yield data[:cut]
        rest = data[cut:]
        parts, size = ([rest], len(rest)) if rest else ([], 0)
        while size > MAX_LINE:
            yield rest[:MAX_LINE]
            rest = rest[MAX_LINE:]
            parts, size = ([rest], len(rest)) if rest else ([], 0)
    if parts:
        yield b"".join(parts)


def _worth_parsing(line: bytes) -> bool:
    """Cheap byte test: can this line start, continue or end a crash (when no block is
    open)? Lines that merely contain ``#`` or ``wasm log`` are not."""
    return _WORTH.search(line) is not None


def _worth_parsing_plain(line: bytes) -> bool:
    return _WORTH_PLAIN.search(line) is not None


def scan_log(stream: BinaryIO | Iterable[bytes], source: str, *,
             progress: Progress | None = None, keep_lines: bool = True
             ) -> Iterator[bytes | Crash]:
    """Yield pass-through ``bytes`` (verbatim, whole lines) and :class:`Crash` objects in
    file order. With ``keep_lines=False`` only crashes are yielded (as they complete).
    The stream's envelope is detected from its first chunk; lines of a JSON-values input
    are passed through as their peeled text, and numbered as the records' lines."""
    chunks = _chunks(stream)
    first = next(chunks, b"")
    layout = envelopes.detect(first)
    pieces = itertools.chain((first,), chunks) if first else chunks
    if layout.kind == "json":
        found = _scan_json(pieces, source, progress=progress, keep_lines=keep_lines)
    else:
        sc = CrashScanner(source, keep_lines=keep_lines, peeler=layout.peeler)
        found = _scan_lines(sc, pieces, progress=progress, keep_lines=keep_lines,
                            gateway=layout.gateway)
    note = None if layout.kind == "plain" else f"log envelope: {layout.why}"
    for item in found:
        if note is not None and isinstance(item, Crash):
            item.notes.append(note)
        yield item
    if progress is not None:
        progress.close()


def _scan_json(pieces: Iterable[bytes], source: str, *, progress: Progress | None,
               keep_lines: bool) -> Iterator[bytes | Crash]:
    sc = CrashScanner(source, keep_lines=keep_lines)
    seen = 0

    def counted() -> Iterator[bytes]:
        nonlocal seen
        for piece in pieces:
            seen += len(piece)
            if progress is not None:
                progress.update(seen)
            yield piece
    offset = 0
    lineno = 0            # JSON inputs: line numbers count the records' lines
    for _, items in envelopes.iter_json_records(counted()):
        for item in items:
            lineno += 1
            if sc.pending_msgs or sc.pending_dumps or not sc.idle:
                sc.expire(offset)
            sc.feed_items([item], lineno, offset)
            offset += len(item[0]) + 1
        if sc.ready or (sc.held and not sc.busy):
            yield from sc.drain()
    sc.finish()
    yield from sc.drain()


def _scan_lines(sc: CrashScanner, pieces: Iterable[bytes], *, progress: Progress | None,
                keep_lines: bool, gateway: bool = True) -> Iterator[bytes | Crash]:
    """The fast path over physical lines: between lines that must be read, jump from one
    trigger hit to the next (:class:`~wasmprof.ingest.triggers.TriggerSet`: all of a chunk's
    hits in one call); ``gateway``: Envoy/Istio-prefixed
    text (a plugin's output only in ``wasm log`` records), else plain text. A gateway log
    read without an envelope skips plugin lines: a crash looks its thread's up afterwards
    (``sc.lookback``); while a panic is being collected they are looked for too."""
    lazy = sc.peeler is None and gateway
    if not gateway:
        finders = _PLAIN_SET
    else:
        finders = _GATEWAY_SET if lazy else _ENVELOPED_SET
    worth = _worth_parsing if gateway else _worth_parsing_plain
    if lazy:
        sc.lookback = Lookback()
    skip = sc.peeler is None or sc.peeler.skippable
    partial = None if sc.peeler is None else sc.peeler.partial
    runs = sc.peeler is None                  # frame lines read in runs (no envelope)
    base = 0
    lineno = 1            # line number at position ln_pos of the current chunk
    for chunk in pieces:
        if sc.lookback is not None:
            sc.lookback.push(chunk, base, lineno)
        n = len(chunk)
        hits = finders.hits(chunk)               # every trigger's hits in this chunk
        nhits, j = len(hits), 0
        natives: list[int] | None = None         # NATIVE_TRIGGERS' hits, once one is open
        nj = 0
        plugins = -1                             # the next plugin line, while needed
        pos = ln_pos = 0
        pt, pt_lineno = 0, lineno      # start of pass-through bytes not yet handed on
        while pos < n:
            skipping = skip and sc.skippable
            if skipping:
                while j < nhits and hits[j] < pos:
                    j += 1
                hit = hits[j] if j < nhits else n
                if sc.natives:
                    if natives is None:
                        natives = _NATIVE_SET.hits(chunk)
                    while nj < len(natives) and natives[nj] < pos:
                        nj += 1
                    if nj < len(natives) and natives[nj] < hit:
                        hit = natives[nj]
                if lazy and sc.outputs.open:
                    if plugins < pos:
                        plugins = chunk.find(PLUGIN_TRIGGER, pos)
                        plugins = n if plugins < 0 else plugins
                    hit = min(hit, plugins)
                if hit >= n:
                    break
                nl = chunk.rfind(b"\n", pos, hit)
                if nl >= 0:
                    pos = nl + 1
                while partial is not None and pos > pt:   # first parts of the hit's line
                    start = max(pt, chunk.rfind(b"\n", pt, pos - 1) + 1)
                    if not partial(chunk[start:pos]):
                        break
                    pos = start
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            line = chunk[pos:end]
            if skipping and not worth(line) and not (partial is not None and partial(line)) \
                    and not (sc.natives and _native_line(line)):
                if PLUGIN_TRIGGER not in line or (lazy and not sc.outputs.open
                                                  and not _opens_panic(line)):
                    pos = end
                    continue
            if keep_lines and pt < pos:
                if sc.pending_msgs or sc.pending_dumps:
                    sc.expire(base + pos)
                if sc.busy:
                    sc.passthrough(pt_lineno, chunk[pt:pos])
                else:
                    yield from sc.drain()
                    yield chunk[pt:pos]
            lineno += chunk.count(b"\n", ln_pos, pos)
            ln_pos = pos
            if (sc.pending_msgs or sc.pending_dumps or sc.natives or sc.dump
                    or sc.outputs.open or sc.parked):
                sc.expire(base + pos)
            sc.feed_line(line, lineno, base + pos)
            pos = pt = end
            pt_lineno = lineno + (nl >= 0)
            if runs and nl >= 0 and (sc.record is not None or sc.dump is not None
                                     or sc.cont is not None or sc.natives):
                after, count = (sc.record_run if sc.cont is not None
                                else sc.frame_run)(chunk, pos, lineno, base)
                if count:                    # lines lineno+1 … lineno+count were frames
                    pos = pt = ln_pos = after
                    lineno += 1 + count
                    pt_lineno = lineno
            if sc.ready:
                yield from sc.drain()
        if pt < n:
            if sc.pending_msgs or sc.pending_dumps or sc.natives:
                sc.expire(base + n)
            if sc.busy:
                sc.passthrough(pt_lineno, chunk[pt:n])
            elif keep_lines:
                yield from sc.drain()
                yield chunk[pt:n]
        lineno += chunk.count(b"\n", ln_pos, n)
        base += n
        if progress is not None:
            progress.update(base)
        if sc.ready or (sc.held and not sc.busy):
            yield from sc.drain()
    sc.finish()
    yield from sc.drain()


def _native_line(line: bytes) -> bool:
    return any(t in line for t in NATIVE_TRIGGERS)


def scan_crashes(stream: BinaryIO | Iterable[bytes], source: str, *,
                 progress: Progress | None = None) -> Iterator[Crash]:
    """Every crash in a log, in constant memory; never raises on damaged text."""
    for item in scan_log(stream, source, progress=progress, keep_lines=False):
        if isinstance(item, Crash):
            yield item
