"""A plugin's own output as Envoy logs it, and its reassembly.

Contract:

- :func:`parse_record` splits an Envoy ``wasm log[ PLUGIN] [ROOT VM]: TEXT`` message into a
  :class:`Record` (``pwch:src/context.cc makeLogPrefix``; Envoy ``Context::log`` writes
  ``"wasm log{prefix}: {message}"``). Never raises; None when the message is not one.
- Every ``fd_write`` of a plugin becomes one record (proxy-wasm ``writevImpl``: stdout at
  ``info``, stderr at ``error``, one trailing newline stripped), so a write of ``"\\n"``
  alone is an empty record. :func:`reassemble` joins the records one writer produced on one
  thread back into text lines: in ``line`` mode (line-buffered writers: TinyGo, C stdio,
  ``proxy_log``) every record is a line; in ``token`` mode (unbuffered writers that print
  one token per write: Go's runtime ``print``, Rust's raw stderr) a record boundary is a
  line end only where the writer's grammar puts one — an empty record, and for Go before a
  ``\\t`` (file lines) and after ``]:`` / ``)`` / ``(...)`` (lines whose newline was
  stripped). Other threads' records never enter a reassembly (the scanner keys them by
  origin and thread).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from wasmprof.model import Breadcrumb, Panic

WASM_LOG = "wasm log"
MAX_TEXT = 4096                # characters of one record kept


@dataclass(slots=True)
class Record:
    """One ``wasm log`` record (or one plain output line): where, who, and the text after
    ``wasm log …: `` (continuation lines joined with ``\\n``)."""

    line: int
    text: str
    level: str | None = None
    plugin: str | None = None
    root_id: str | None = None
    vm_id: str | None = None
    timestamp: str | None = None
    raw: list[str] = field(default_factory=list)

    @property
    def writer(self) -> tuple[str | None, str | None]:
        """(plugin, level): records of one writer (stdout and stderr apart)."""
        return self.plugin or self.root_id, self.level


def split_ids(prefix: str) -> tuple[str | None, str | None, str | None]:
    """``PLUGIN ROOT VM`` / ``ROOT VM`` / ``PLUGIN`` -> (plugin, root_id, vm_id)."""
    ids = prefix.split()
    if len(ids) >= 3:
        return ids[0], ids[1], ids[2]
    if len(ids) == 2:
        return None, ids[0], ids[1]
    if len(ids) == 1:
        return ids[0], None, None
    return None, None, None


def parse_record(message: str, *, line: int, level: str | None = None,
                 timestamp: str | None = None) -> Record | None:
    """The record in an Envoy log message, or None."""
    start = message.find(WASM_LOG)
    if start < 0:
        return None
    colon = message.find(":", start + len(WASM_LOG))
    if colon < 0:
        return None
    prefix = message[start + len(WASM_LOG):colon]
    if prefix and not prefix.startswith(" "):
        return None                       # "wasm loggers: …" is not a record
    plugin, root, vm = split_ids(prefix)
    text = message[colon + 1:]
    text = text[1:] if text.startswith(" ") else text       # exactly the one separator
    return Record(line=line, text=text[:MAX_TEXT], level=level, plugin=plugin, root_id=root,
                  vm_id=vm, timestamp=timestamp, raw=[message])


# one match for the common shapes of a remembered line (its line end removed first): Envoy's
# default format and Istio's TSV. Greedy groups: a lazy one would try the end at every byte.
_ENVOY_RECORD = re.compile(
    rb"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?)\]\[(\d{1,20})\]\[(\w{1,20})\]"
    rb"\[[\w.\-]{1,100}\] ?(?:\[[^\]\s]{1,1000}:\d{1,9}\] ?)?wasm log((?: [^ :]{1,300}){0,3}):"
    rb" ?(.*)\Z", re.S)
_ISTIO_RECORD = re.compile(
    rb"(\d{4}-\d\d-\d\dT[\d:.]{8,20}(?:Z|[+-]\d\d:?\d\d))\t(\w{1,10})\tenvoy [^\t]{1,1100}\t"
    rb"wasm log((?: [^ :]{1,300}){0,3}): ?(.*)\tthread=(\d{1,20})\Z", re.S)


def quick_record(raw: bytes, line: int) -> tuple[str, Record] | None:
    """(thread, record) of a whole ``wasm log`` line in Envoy's or Istio's default format,
    with one regex match (the lines a crash's breadcrumbs come from); None for any other
    shape (the caller parses it in full)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    m = _ENVOY_RECORD.match(raw)
    if m is not None:
        ts, thread, level, ids, text = m.groups()
    else:
        m = _ISTIO_RECORD.match(raw)
        if m is None:
            return None
        ts, level, ids, text, thread = m.groups()
    plugin, root, vm = split_ids(ids.decode("utf-8", "replace"))
    return thread.decode(), Record(line=line, text=text.decode("utf-8", "replace")[:MAX_TEXT],
                                   level=level.decode(), plugin=plugin, root_id=root, vm_id=vm,
                                   timestamp=ts.decode())


def _go_line_end(prev: str, nxt: str) -> bool:
    """Go's runtime printed ``prev`` then ``nxt``: did a newline (stripped from ``prev``'s
    write) come between them?"""
    if nxt.startswith("\t"):
        return True                       # "\tfile.go:12 +0x1e" and "\tpanic: …" lines
    return prev.endswith(("]:", ")", "(...)")) and not nxt.startswith((")", ",", " "))


# Go print tokens that end in a space a terminal or shipper may have trimmed
_GO_SPACED = {"panic:": "panic: ", "goroutine": "goroutine ", "fatal error:": "fatal error: ",
              ",": ", ", "created by": "created by "}


def reassemble(texts: list[str], *, tokens: bool, go: bool = False) -> list[str]:
    """Records' texts (one writer, in order) -> output lines (see the module docstring)."""
    if not tokens:
        out: list[str] = []
        for t in texts:
            out.extend(t.split("\n"))
        return out
    buf: list[str] = []
    lines: list[str] = []
    prev = ""
    for t in texts:
        if t == "":
            lines.append("".join(buf))
            buf = []
            prev = ""
            continue
        if go:
            t = _GO_SPACED.get(t, t)
            if buf and _go_line_end(prev, t):
                lines.append("".join(buf))
                buf = []
        if "\n" in t:                     # a write with newlines inside
            head, *rest = t.split("\n")
            buf.append(head)
            for r in rest:
                lines.append("".join(buf))
                buf = [r]
        else:
            buf.append(t)
        prev = t
    if buf:
        lines.append("".join(buf))
    return lines


# -- per-thread state the crash scanner keeps --------------------------------------------------
MAX_PANIC_RECORDS = 6000       # Go prints <= 100 frames of ~12 tokens each, plus the header
MAX_PANIC_TEXT = 256 << 10
BREADCRUMBS = 5                # records kept per thread for a crash's breadcrumbs
BREADCRUMB_TEXT = 300
MAX_KEYS = 4096                # threads remembered (then forgotten all at once)

Key = tuple[str | None, str | None]
"""(origin, thread): one thread of one log stream."""


@dataclass(slots=True)
class OpenPanic:
    """A panic being collected from one writer on one thread until its trap arrives."""

    key: Key
    kind: str
    tokens: bool
    writer: tuple[str | None, str | None]
    first_line: int
    last_offset: int
    texts: list[str] = field(default_factory=list)
    lines: list[tuple[int, str]] = field(default_factory=list)   # log lines it took
    plugin: str | None = None
    root_id: str | None = None
    vm_id: str | None = None
    timestamp: str | None = None
    size: int = 0
    first_offset: int = 1 << 62
    last_line: int = 0                  # line number of its last record

    @property
    def full(self) -> bool:
        return len(self.texts) >= MAX_PANIC_RECORDS or self.size >= MAX_PANIC_TEXT

    def add(self, text: str, lineno: int, raw: str, offset: int) -> None:
        if offset < self.first_offset:
            self.first_offset = offset
        self.texts.append(text)
        self.lines.append((lineno, raw))
        self.size += len(text) + 1
        self.last_offset = offset
        self.last_line = max(self.last_line, lineno)

    def extend_last(self, text: str, lineno: int, raw: str, offset: int) -> None:
        """A continuation line of the last record (a write holding a newline)."""
        if self.texts:
            self.texts[-1] += "\n" + text
        else:
            self.texts.append(text)
        self.lines.append((lineno, raw))
        self.size += len(text) + 1
        self.last_offset = offset
        self.last_line = max(self.last_line, lineno)

    def panic(self) -> Panic:
        """The panic these records print (never None: an unparsable one keeps its text)."""
        from wasmprof.ingest import panics
        lines = reassemble(self.texts, tokens=self.tokens, go=self.kind == "go")
        p = panics.parse(lines, self.kind)
        if p is None:
            p = Panic(kind=self.kind, language=panics.LANGUAGES.get(self.kind, self.kind),
                      message=(lines[0] if lines else "")[:500], lines=lines[:400])
        p.records = len(self.texts)
        p.log_lines = len(self.lines)
        p.first_line = self.first_line
        return p


class PluginOutputs:
    """What the plugins wrote, per thread: who wrote last (plugin attribution), the last
    records (breadcrumbs) and the panic being written (see :class:`OpenPanic`)."""

    def __init__(self) -> None:
        self.who: dict[Key, tuple[str | None, str | None, str | None, int]] = {}
        self.crumbs: dict[Key, deque[Breadcrumb]] = {}
        self.open: dict[Key, OpenPanic] = {}

    @property
    def plain_open(self) -> int:
        """Open panics read from plain output lines (they need every line)."""
        return sum(1 for o in self.open.values() if o.writer == (None, None))

    def note(self, key: Key, rec: Record) -> None:
        """Remember ``rec`` as the latest record of its thread (not a panic's)."""
        if key[1] is None and rec.plugin is None and rec.root_id is None:
            return
        if len(self.who) >= MAX_KEYS and key not in self.who:
            self.who.clear()
            self.crumbs.clear()
        if rec.plugin is not None or rec.root_id is not None:
            self.who[key] = (rec.plugin, rec.root_id, rec.vm_id, rec.line)
        if not rec.text.strip():
            return                        # a bare newline write: nothing to show
        q = self.crumbs.get(key)
        if q is None:
            q = self.crumbs[key] = deque(maxlen=BREADCRUMBS)
        q.append(self.crumb(rec))

    @staticmethod
    def crumb(rec: Record) -> Breadcrumb:
        text = rec.text if len(rec.text) <= BREADCRUMB_TEXT else rec.text[:BREADCRUMB_TEXT] + "…"
        return Breadcrumb(line=rec.line, level=rec.level, text=text, plugin=rec.plugin,
                          timestamp=rec.timestamp)

    def record(self, key: Key, rec: Record, raw: str, offset: int, *,
               remember: bool = True) -> OpenPanic | None:
        """A ``wasm log`` record on ``key``: the open panic it joined or opened, else None
        (then it is a breadcrumb, kept when ``remember``: a scanner that looks back in the
        raw text finds breadcrumbs there)."""
        from wasmprof.ingest import panics
        out = self.open.get(key)
        if out is not None and out.writer == rec.writer and not out.full:
            out.add(rec.text, rec.line, raw, offset)
            return out
        kind = panics.opens(rec.text)
        if kind is None:
            if remember:
                self.note(key, rec)
            return None
        out = OpenPanic(key=key, kind=kind[0], tokens=kind[1], writer=rec.writer,
                        first_line=rec.line, last_offset=offset, plugin=rec.plugin,
                        root_id=rec.root_id, vm_id=rec.vm_id, timestamp=rec.timestamp)
        out.add(rec.text, rec.line, raw, offset)
        self.open[key] = out
        return out

    def plain(self, key: Key, text: str, lineno: int, offset: int,
              timestamp: str | None = None) -> OpenPanic | None:
        """An output line without Envoy's prefix (a runtime's own stderr): joins the plain
        panic open on ``key`` or opens one."""
        from wasmprof.ingest import panics
        out = self.open.get(key)
        if out is not None and out.writer == (None, None) and not out.full:
            out.add(text, lineno, text, offset)
            return out
        kind = panics.opens(text)
        if kind is None:
            return None
        out = OpenPanic(key=key, kind=kind[0], tokens=False, writer=(None, None),
                        first_line=lineno, last_offset=offset, timestamp=timestamp)
        out.add(text, lineno, text, offset)
        self.open[key] = out
        return out

    def take(self, key: Key) -> OpenPanic | None:
        """The panic open on ``key`` (a crash starts there: it is the crash's)."""
        return self.open.pop(key, None) if self.open else None

    def expired(self, offset: int, window: int) -> list[OpenPanic]:
        """Panics whose last record is more than ``window`` bytes before ``offset``."""
        gone = [k for k, o in self.open.items() if o.last_offset + window < offset]
        return [self.open.pop(k) for k in gone]

    def breadcrumbs(self, key: Key, before_line: int) -> list[Breadcrumb]:
        q = self.crumbs.get(key)
        return [b for b in q if b.line < before_line] if q else []
