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
byte strings (:data:`TRIGGERS`, found with ``bytes.find``), except while a crash block is
open (continuation lines, a WAMR dump, an Envoy native backtrace), when every line is read.

What it assembles (formats.md §4, §5): ``Function: X failed: MESSAGE`` records with V8 /
WAVM in-VM backtraces or Wasmtime ``wasm backtrace:`` blocks as continuation lines;
WAMR ``#NN: 0xOOOO - NAME`` dumps (stdout, unprefixed or prefixed, interleaved with other
threads) paired with the nearest ``Function: … failed: Exception: …`` record or
``Exception: …`` line before or after them; Envoy native ``Caught <signal>`` blocks.
``wasm log PLUGIN ROOT VM:`` lines name the plugin last active on their thread.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wasmprof.ingest import envoy_native, v8_backtrace, wamr_dump, wasmtime_trace, wavm_backtrace
from wasmprof.ingest.logline import LineFormat, LogLine, decode, parse_line, split_thread_suffix
from wasmprof.ingest.traps import classify
from wasmprof.model import AddressSpace, Crash, RawFrame, Runtime, TrapKind
from wasmprof.output import Progress

TRIGGERS: tuple[bytes, ...] = (b": 0x", b"#00 ", b"Function: ", b"Exception: ", b"Caught ",
                               b"wasm log", b" backtrace:")
"""A line without any of these can neither start nor end a crash when no block is open."""

CHUNK_SIZE = 1 << 20
MAX_LINE = 4 << 20            # longer lines are cut into pieces (kept verbatim in output)
MAX_KEPT_LINE = 16 << 10      # a crash keeps at most this much of one raw line
PAIR_WINDOW = 64 << 10        # bytes within which a WAMR dump and its message are paired
NATIVE_WINDOW = 16 << 10      # bytes without a backtrace line that close a native block
MAX_FRAMES = 100_000          # frames per crash (deep recursion prints 8192); more are
                              # read as the next (partial) crash, so memory stays bounded
MAX_HELD = 32 << 20           # pass-through bytes held back while crashes are open
MAX_THREADS = 4096            # threads remembered for plugin attribution

# "#3: …" (WAMR >= 2.0 dumps, Envoy native frames), "#00 name" (old WAMR top frame); the
# native stderr form "#3 sym [0x…]" only matters after a "Caught" line (slow path then).
_WORTH = re.compile(rb"Function: |Exception: |Caught | backtrace:|#\d{1,9}: |#00 ")
PLUGIN_LINES = 2048           # recent `wasm log` lines kept for plugin attribution
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

    @property
    def first_line(self) -> int:
        return self.lines[0][0] if self.lines else 0

    def add(self, lineno: int, text: str, offset: int) -> None:
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
    that receive text line by line). Feed lines with :meth:`feed_line`, fetch finished
    crashes and pass-through lines with :meth:`drain`, end with :meth:`finish`."""

    def __init__(self, source: str, *, keep_lines: bool = True) -> None:
        self.source = source
        self.keep_lines = keep_lines
        self.record: _Unit | None = None          # Function: … failed: with continuations
        self.dump: _Unit | None = None            # WAMR #NN dump being read
        self.natives: dict[str | None, _Unit] = {}
        self.pending_msgs: list[_Unit] = []       # WAMR failure records awaiting a dump
        self.pending_dumps: list[_Unit] = []      # WAMR dumps awaiting their message
        self.ready: list[_Unit] = []
        self.held: list[tuple[int, bytes]] = []   # pass-through while crashes are open
        self.held_bytes = 0
        self.plugins: dict[str, tuple[str | None, str | None, str | None, str, int]] = {}
        self.plugin_lines: deque[tuple[bytes, int]] = deque(maxlen=PLUGIN_LINES)
        self.recent_wamr: list[tuple[str | None, int]] = []
        self.last_signature: tuple | None = None
        self.last_signature_line = 0

    # -- state ---------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No block is open: lines without a trigger can be skipped."""
        return self.record is None and self.dump is None and not self.natives

    @property
    def busy(self) -> bool:
        """Some crash is open or waiting to be paired: pass-through must be held back."""
        return not self.idle or bool(self.pending_msgs) or bool(self.pending_dumps)

    def expire(self, offset: int) -> None:
        """Give up pairing units whose window ended before byte ``offset``."""
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
        ll = parse_line(text)
        taken = self._line(ll, text, lineno, offset)
        for extra in ll.extra_lines:          # JSON-escaped newlines: continuation lines
            if not self._line(LogLine(LineFormat.PLAIN, extra, thread=ll.thread), extra,
                              lineno, offset):
                break
        if not taken:
            self.passthrough(lineno, raw)
        if self.held_bytes > MAX_HELD:
            self._relieve()

    def _line(self, ll: LogLine, text: str, lineno: int, offset: int) -> bool:
        """Handle one line; True when it became part of a crash."""
        msg = ll.message
        if self.record is not None:
            if ll.has_prefix:                 # a new record: the message has ended
                self._close_record()
            else:
                body, suffix_thread = split_thread_suffix(msg)
                if self._continue_record(body, lineno, text, offset):
                    if suffix_thread is not None:
                        self.record.crash.thread = self.record.crash.thread or suffix_thread
                        self._close_record()
                    return True
                self._close_record()
        if self.dump is not None:
            taken = self._continue_dump(ll, msg, lineno, text, offset)
            if taken is not None:
                return taken
        if self.natives and self._continue_native(ll, msg, lineno, text, offset):
            return True
        return self._start(ll, msg, lineno, text, offset)

    # -- heads -----------------------------------------------------------------------
    def _start(self, ll: LogLine, msg: str, lineno: int, text: str, offset: int) -> bool:
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
            old = self.natives.pop(ll.thread, None)
            if old is not None:
                self._emit(old)
            self.natives[ll.thread] = unit
            return True
        if "wasm log" in msg:
            self._note_plugin(ll, msg, lineno)
            return False
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
        return False

    def _new_unit(self, ll: LogLine, runtime: Runtime, lineno: int) -> _Unit:
        crash = Crash(runtime=runtime, thread=ll.thread, timestamp=ll.timestamp,
                      source=self.source, first_line=lineno)
        return _Unit(crash)

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
        for name in ("function", "thread", "timestamp", "plugin", "vm_id", "root_id"):
            if getattr(d, name) is None:
                setattr(d, name, getattr(m, name))
        d.notes.extend(n for n in m.notes if n not in d.notes)
        dump.lines = sorted(dump.lines + msg_unit.lines, key=lambda x: x[0])
        dump.last_offset = max(dump.last_offset, msg_unit.last_offset)

    # -- Envoy native crash ---------------------------------------------------------------
    def _continue_native(self, ll: LogLine, msg: str, lineno: int, text: str,
                         offset: int) -> bool:
        unit = self.natives.get(ll.thread)
        if unit is None and ll.format is LineFormat.PLAIN and len(self.natives) == 1:
            unit = next(iter(self.natives.values()))     # stderr form: no prefix, no thread
        if unit is None:
            return False
        if unit.full:
            unit.flag(f"more than {MAX_FRAMES} lines: the rest was passed through")
            del self.natives[unit.crash.thread]
            self._emit(unit)
            return False
        frame = envoy_native.parse_frame(msg)
        if frame is not None:
            unit.add_frame(frame, lineno, text, offset)
            if frame.printed_name is None:
                note = ("frames without a symbol may be JIT/AOT code (WAMR AOT, V8); a perf "
                        "map of the process is needed to place them")
                if note not in unit.crash.notes:
                    unit.crash.notes.append(note)
            return True
        if envoy_native.is_info(msg):
            unit.add(lineno, text, offset)
            mapping = envoy_native.parse_mapping(msg)
            if mapping is not None:
                unit.crash.notes.append(
                    f"Envoy text mapped at 0x{mapping[0]:x}-0x{mapping[1]:x} ({mapping[2]})")
            return True
        if ll.has_prefix and ll.thread == unit.crash.thread and ll.logger != "backtrace":
            del self.natives[ll.thread]
            self._emit(unit)
        return False

    # -- plugin attribution ------------------------------------------------------------------
    def remember_plugin_line(self, raw: bytes, lineno: int) -> None:
        """A ``wasm log`` line seen on the fast path: parsed only if a crash needs it."""
        self.plugin_lines.append((raw, lineno))

    def _parse_plugin_lines(self, thread: str) -> None:
        """Read remembered ``wasm log`` lines, newest first, until one of ``thread``'s."""
        newer: list[tuple[LogLine, str, int]] = []
        while self.plugin_lines:
            raw, lineno = self.plugin_lines.pop()
            ll = parse_line(decode(raw))
            newer.append((ll, ll.message, lineno))
            if ll.thread == thread:
                break
        for ll, msg, lineno in reversed(newer):
            if ll.thread is not None and (ll.thread not in self.plugins
                                          or self.plugins[ll.thread][4] < lineno):
                self._note_plugin(ll, msg, lineno)

    def _note_plugin(self, ll: LogLine, msg: str, lineno: int) -> None:
        start = msg.find("wasm log")
        colon = msg.find(":", start)
        if colon < 0 or ll.thread is None:
            return
        ids = msg[start + 8:colon].split()
        plugin = root = vm = None
        if len(ids) >= 3:
            plugin, root, vm = ids[0], ids[1], ids[2]
        elif len(ids) == 2:
            root, vm = ids
        elif len(ids) == 1:
            plugin = ids[0]
        if len(self.plugins) >= MAX_THREADS and ll.thread not in self.plugins:
            self.plugins.clear()
        self.plugins[ll.thread] = (plugin, root, vm, msg[colon + 1:colon + 301].strip(), lineno)

    def _attribute(self, crash: Crash) -> None:
        if crash.thread is not None and self.plugin_lines:
            self._parse_plugin_lines(crash.thread)
        info = self.plugins.get(crash.thread) if crash.thread is not None else None
        if info is None:
            return
        plugin, root, vm, last_text, lineno = info
        if crash.plugin is None and plugin is not None:
            crash.plugin = plugin
            crash.notes.append(f"plugin named by the last 'wasm log' line of thread "
                               f"{crash.thread} (line {lineno})")
        crash.root_id = crash.root_id or root
        crash.vm_id = crash.vm_id or vm
        if "panicked at" in last_text or "panic:" in last_text:
            crash.notes.append(f"last plugin log on this thread: {last_text}")

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
        self._attribute(crash)
        _refine_panic(crash)
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
        return min((u.first_line for u in units), default=None)

    def drain(self) -> Iterator[bytes | Crash]:
        """Pass-through bytes and finished crashes that can be written now, in file order."""
        if not self.ready and not self.held:
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
        if self.pending_msgs or self.pending_dumps:
            self.expire(1 << 62)

    def finish(self) -> None:
        """End of input: close everything that is open."""
        if self.record is not None:
            self._close_record()
        if self.dump is not None:
            self._close_dump(ended=False)
        for unit in self.natives.values():
            self._emit(unit)
        self.natives.clear()
        self.expire(1 << 62)


_PANIC_FRAMES = ("runtime._panic", "runtime.gopanic", "runtime.nilPanic", "rust_panic",
                 "__rust_start_panic", "rust_begin_unwind", "core::panicking", "core9panicking",
                 "std::panicking", "std9panicking")


def _refine_panic(crash: Crash) -> None:
    """``unreachable`` raised by a language runtime's panic path is a panic."""
    if crash.trap_kind is not TrapKind.UNREACHABLE or not crash.raw_frames:
        return
    for frame in crash.raw_frames[:8]:
        name = frame.printed_name or ""
        if any(p in name for p in _PANIC_FRAMES):
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


def scan_log(stream: BinaryIO | Iterable[bytes], source: str, *,
             progress: Progress | None = None, keep_lines: bool = True
             ) -> Iterator[bytes | Crash]:
    """Yield pass-through ``bytes`` (verbatim, whole lines) and :class:`Crash` objects in
    file order. With ``keep_lines=False`` only crashes are yielded (as they complete)."""
    sc = CrashScanner(source, keep_lines=keep_lines)
    finders = TRIGGERS
    base = 0
    lineno = 1            # line number at position ln_pos of the current chunk
    for chunk in _chunks(stream):
        n = len(chunk)
        nexts = [chunk.find(t) for t in finders]
        nexts = [p if p >= 0 else n for p in nexts]
        pos = ln_pos = 0
        pt, pt_lineno = 0, lineno      # start of pass-through bytes not yet handed on
        while pos < n:
            if sc.idle:
                hit = min(nexts)
                while hit < pos:
                    k = nexts.index(hit)
                    p = chunk.find(finders[k], pos)
                    nexts[k] = p if p >= 0 else n
                    hit = min(nexts)
                if hit >= n:
                    break
                nl = chunk.rfind(b"\n", pos, hit)
                if nl >= 0:
                    pos = nl + 1
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            line = chunk[pos:end]
            if sc.idle and not _worth_parsing(line):
                if b"wasm log" in line:
                    lineno += chunk.count(b"\n", ln_pos, pos)
                    ln_pos = pos
                    sc.remember_plugin_line(line, lineno)
                pos = end
                continue
            if pt < pos:
                if sc.pending_msgs or sc.pending_dumps:
                    sc.expire(base + pos)
                if sc.busy:
                    sc.passthrough(pt_lineno, chunk[pt:pos])
                elif keep_lines:
                    yield from sc.drain()
                    yield chunk[pt:pos]
            lineno += chunk.count(b"\n", ln_pos, pos)
            ln_pos = pos
            if sc.pending_msgs or sc.pending_dumps or sc.natives or sc.dump:
                sc.expire(base + pos)
            sc.feed_line(line, lineno, base + pos)
            pos = pt = end
            pt_lineno = lineno + (nl >= 0)
            if sc.ready:
                yield from sc.drain()
        if pt < n:
            if sc.pending_msgs or sc.pending_dumps:
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
    if progress is not None:
        progress.close()


def scan_crashes(stream: BinaryIO | Iterable[bytes], source: str, *,
                 progress: Progress | None = None) -> Iterator[Crash]:
    """Every crash in a log, in constant memory; never raises on damaged text."""
    for item in scan_log(stream, source, progress=progress, keep_lines=False):
        if isinstance(item, Crash):
            yield item
