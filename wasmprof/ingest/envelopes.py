"""Envelopes: what clusters and people wrap gateway log lines in, peeled before any format
parser (:mod:`wasmprof.ingest.logline`) sees a line. The one place that knows them.

Contract:

- :func:`detect` looks at the first lines of a stream (at most :data:`DETECT_LINES` lines /
  :data:`DETECT_BYTES` bytes) and returns a :class:`Layout`: ``plain`` (no envelope: the
  scanner's fast path runs unchanged), ``lines`` (a :class:`Peeler` applied to each physical
  line) or ``json`` (the input is JSON values spanning lines: JSON arrays, pretty-printed
  records, Loki documents; read with :func:`iter_json_records`). Detection scores each
  candidate (and stacks of up to three, e.g. a Fluent Bit record holding a CRI line) by how
  many sample lines become recognisable gateway log text; ties keep the simpler layout.
- A :class:`Peeler` turns one physical line (decoded, without its line ending) into zero or
  more logical lines, each an :class:`Item` (text, origin, stream). Zero: a partial line
  (CRI ``P``, Docker json-file without its ``\\n``, a TUI row that wrapped) held until its
  rest arrives (``pending`` is true meanwhile: the scanner then reads every line). Several:
  records with embedded or literal ``\\n``. Peelers never raise; a line that does not fit
  the detected envelope comes out unchanged.
- ``origin`` names the log stream a line came from inside the input (``pod/container`` of a
  kubectl / stern prefix, a shipper's Kubernetes metadata, Loki labels): thread ids repeat
  across pods, so the scanner keys threads by (origin, thread).

Shapes (field.md): any constant per-line prefix of space-free tokens (``kubectl logs
--prefix`` as ``[pod/NAME/CONTAINER] `` or ``POD CONTAINER ``, ``--timestamps`` RFC 3339,
stern, with ANSI colours), TUI borders (``│ … │``, wrapped rows joined), Docker json-file
(``{"log": "…\\n", "stream": …}``, partial lines joined), CRI (``TIME stdout|stderr F|P
TEXT``, ``P`` joined), Fluent Bit / Vector / Loki JSON records (``log`` / ``message`` /
``msg`` / ``line``; NDJSON, arrays, Loki ``streams``/``values`` sorted by time), pasted JSON
strings (quotes, ``\\n``, ``\\t``, ``\\"``, ``\\u`` escapes) and whole records on one line
with literal ``\\n`` (Envoy ``--log-format-escaped``). Istio's own JSON format is a line
format, not an envelope: it passes through to the line parser.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from wasmprof.ingest.logline import is_istio_json

DETECT_LINES = 200
DETECT_BYTES = 256 << 10
MAX_PENDING = 1 << 20          # a partial line longer than this is let out unjoined
MAX_JSON_VALUE = 64 << 20      # one JSON value (record, Loki document) at most
TEXT_KEYS = ("log", "message", "msg", "line", "MESSAGE", "text")

Item = tuple[str, str | None, str | None]
"""One logical line: (text, origin, stream)."""

_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)"
_TS_RE = re.compile(_TS + r"\Z")
_CRI = re.compile(r"(" + _TS + r") (stdout|stderr) ([FP]) ?")
_ANSI = re.compile(r"\x1b\[[0-9;?]{0,32}[A-Za-z]|\x1b\][^\x07\x1b]{0,256}(?:\x07|\x1b\\)")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[nrt\"\\/'])")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "/": "/", "'": "'"}
_BORDERS = "│┃║|"
# where a gateway log line of a known format starts (used to find a prefix in front of it)
_ANCHOR = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\[Envoy \(Epoch \d|"
                     + _TS + r"\t\w{1,10}\t|\{\"(?:level|time|msg|scope)\"")
# a new log record starting (tabs may be expanded: a terminal's rendering)
_RECORD_START = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:|\[Envoy \(Epoch \d|" + _TS + r"\s|\{\"")
# a line of a crash block (a row starting so did not continue the one before)
_BLOCK_LINE = re.compile(r" {0,12}(?:#\d{2,9}: 0x[0-9a-fA-F]|\d{1,4}: {1,12}0x[0-9a-fA-F]{1,16} - "
                         r"|Proxy-Wasm plugin in-VM backtrace:|Caused by:|at \S.{0,300}wasm://wasm/)")
# text that is recognisably gateway crash/log content without any prefix
_BARE = re.compile(r"\s{0,12}(?:#\d{2,9}: 0x[0-9a-fA-F]|\d{1,4}: {1,12}0x[0-9a-fA-F]{1,16} - "
                   r"|Proxy-Wasm plugin in-VM backtrace:|at \S.{0,300}wasm://wasm/"
                   r"|Function: \S{1,200} failed: |Caught [A-Z]|wasm backtrace:)")


def unescape(text: str) -> str:
    """JSON/C-style escapes (``\\n``, ``\\t``, ``\\"``, ``\\\\``, ``\\uXXXX``…) -> characters;
    an unknown escape such as ``\\d`` stays as written."""
    if "\\" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "u":
            return chr(int(e[1:], 16))
        return _ESCAPES[e]
    out = _ESCAPE.sub(sub, text)
    if ("\\ud" in text or "\\uD" in text) and any("\ud800" <= c <= "\udfff" for c in out):
        out = out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return out


def _split(text: str) -> list[str]:
    """Lines of a record text; one trailing newline is the record's own end."""
    if text.endswith("\n"):
        text = text[:-1]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text.split("\n")


# -- peelers ----------------------------------------------------------------------------------
class Peeler:
    """Base: one envelope layer. Subclasses implement :meth:`peel`; state (partial lines)
    lives in the instance, one instance per input stream."""

    name = "identity"
    skippable = True
    """Lines without a trigger may be skipped unseen (False: a line may be the start of a
    row that wrapped, so every line must be read)."""

    def peel(self, text: str) -> list[Item]:
        return [(text, None, None)]

    def partial(self, line: bytes) -> bool:
        """Cheap byte test: is this physical line the first part of a longer one (to be read
        even without a trigger, since the rest may hold one)?"""
        return False

    @property
    def pending(self) -> bool:
        """A partial line is held: the next lines must be read (no fast-path skipping)."""
        return False

    def flush(self) -> list[Item]:
        """End of input: let out what is held."""
        return []

    def describe(self) -> str:
        return self.name


class _Joiner:
    """Partial lines per (origin, stream) until the part that ends them."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str | None, str | None], list[str]] = {}
        self.size = 0

    def add(self, key: tuple[str | None, str | None], text: str, complete: bool) -> str | None:
        held = self.parts.get(key)
        if held is None and complete:
            return text
        if held is None:
            held = self.parts[key] = []
        held.append(text)
        self.size += len(text)
        if complete or self.size > MAX_PENDING:
            del self.parts[key]
            self.size -= sum(len(p) for p in held)
            return "".join(held)
        return None

    def flush(self) -> list[tuple[tuple[str | None, str | None], str]]:
        out = [(k, "".join(v)) for k, v in self.parts.items()]
        self.parts.clear()
        self.size = 0
        return out


class CriPeeler(Peeler):
    """``<RFC3339> stdout|stderr F|P <text>`` (the files under /var/log/containers);
    ``P`` parts are joined with the rest of their line."""

    name = "cri"

    def __init__(self) -> None:
        self.joiner = _Joiner()

    def partial(self, line: bytes) -> bool:
        return b" P " in line[:48]

    def peel(self, text: str) -> list[Item]:
        m = _CRI.match(text)
        if not m:
            return [(text, None, None)]
        stream = m.group(2)
        whole = self.joiner.add((None, stream), text[m.end():], m.group(3) == "F")
        return [] if whole is None else [(whole, None, stream)]

    @property
    def pending(self) -> bool:
        return bool(self.joiner.parts)

    def flush(self) -> list[Item]:
        return [(t, None, k[1]) for k, t in self.joiner.flush()]


class PrefixPeeler(Peeler):
    """A constant per-line prefix: ``literal`` text, or ``tokens`` space-free words (the
    kinds in ``kinds``: ``ts`` for RFC 3339 timestamps, ``pod`` for ``[pod/…/…]``, ``word``),
    optionally with ANSI colour codes (stern) removed first. The non-timestamp words are
    the line's origin."""

    name = "prefix"

    def __init__(self, *, literal: str | None = None, kinds: tuple[str, ...] = (),
                 ansi: bool = False) -> None:
        self.literal = literal
        self.kinds = kinds
        self.ansi = ansi
        self.origin = _origin_word(literal.strip()) if literal else None

    def describe(self) -> str:
        what = (f"prefix {self.literal!r}" if self.literal is not None
                else "prefix " + " ".join(self.kinds))
        return what + (" (ANSI colours removed)" if self.ansi else "")

    def peel(self, text: str) -> list[Item]:
        if self.ansi and "\x1b" in text:
            text = _ANSI.sub("", text)
        if self.literal is not None:
            if text.startswith(self.literal):
                return [(text[len(self.literal):], self.origin, None)]
            if text == self.literal.rstrip():
                return [("", self.origin, None)]
            return [(text, None, None)]
        k = len(self.kinds)
        parts = text.split(" ", k)
        if len(parts) < k:
            return [(text, None, None)]
        origin = []
        for tok, kind in zip(parts, self.kinds):
            if not _token_is(tok, kind):
                return [(text, None, None)]
            if kind != "ts":
                origin.append(_origin_word(tok))
        rest = parts[k] if len(parts) > k else ""
        return [(rest, "/".join(origin) or None, None)]


def _origin_word(tok: str) -> str | None:
    """``[pod/NAME/CONTAINER]`` -> ``NAME/CONTAINER``; ``POD CONTAINER`` -> ``POD/CONTAINER``."""
    tok = tok.strip("[]")
    tok = tok[4:] if tok.startswith("pod/") else tok
    return tok.replace(" ", "/")[:200] or None


def _token_is(tok: str, kind: str) -> bool:
    if kind == "ts":
        return bool(_TS_RE.match(tok))
    if kind == "pod":
        return tok.startswith("[") and tok.endswith("]")
    return bool(tok) and not tok.startswith("[20")


class TuiPeeler(Peeler):
    """Rows of a terminal UI pane: ``│ text   │``. Borders and padding go; a row that fills
    the pane up to its right border (``width``) wrapped, and is joined with the next."""

    name = "tui"
    skippable = False

    def __init__(self, width: int | None) -> None:
        self.width = width
        self.held: list[str] = []

    def peel(self, text: str) -> list[Item]:
        s = text.strip(" ")
        if not s or s[0] not in _BORDERS:
            return self._out(text, wrapped=False)
        right = len(s) > 1 and s[-1] == s[0]
        inner = _tui_inner(s)
        wrapped = bool(right and self.width and len(inner) >= self.width
                       and not inner.endswith(" "))
        return self._out(inner.rstrip(" "), wrapped=wrapped)

    def _out(self, text: str, *, wrapped: bool) -> list[Item]:
        out: list[Item] = []
        if self.held and (_RECORD_START.match(text) or _BLOCK_LINE.match(text)) and not (
                self.held[0].startswith("{") and not self.held[-1].endswith("}")):  # JSON
            out = self.flush()            # a row that filled the pane exactly, not wrapped
        if wrapped and sum(map(len, self.held)) < MAX_PENDING:
            self.held.append(text)
            return out
        if self.held:
            text = "".join(self.held) + text
            self.held = []
        return out + [(_retab(text), None, None)]

    @property
    def pending(self) -> bool:
        return bool(self.held)

    def flush(self) -> list[Item]:
        if not self.held:
            return []
        text, self.held = "".join(self.held), []
        return [(_retab(text), None, None)]


_ISTIO_EXPANDED = re.compile(r"(" + _TS + r") +(\w{1,10}) +(envoy [\w.\-]{1,100}"
                             r"(?: \S{1,1000}:\d{1,9})?) +(.*)\Z", re.S)
_THREAD_EXPANDED = re.compile(r" {2,}(thread=\d{1,20})\Z")


def _retab(text: str) -> str:
    """Istio TSV whose tabs a terminal expanded to spaces -> tabs again (fields: time,
    level, ``envoy LOGGER [LOCATION]``, message, ``thread=N``)."""
    m = _ISTIO_EXPANDED.match(text) if text[:1].isdigit() else None
    if m:
        text = "\t".join(m.groups())
    if "thread=" in text:
        text = _THREAD_EXPANDED.sub(r"\t\1", text)
    return text


def _tui_inner(row: str) -> str:
    """A pane row without its borders and their one space of padding each."""
    right = len(row) > 1 and row[-1] == row[0]
    inner = row[1:-1] if right else row[1:]
    if inner.startswith(" "):
        inner = inner[1:]
    if right and inner.endswith(" "):
        inner = inner[:-1]
    return inner


class EscapedPeeler(Peeler):
    """Records with literal escapes: a pasted JSON string per line (``"…\\n",``) or whole
    multi-line records on one line with literal ``\\n`` (Envoy ``--log-format-escaped``,
    text copied out of a JSON shipper)."""

    name = "escaped"

    def peel(self, text: str) -> list[Item]:
        s = text.strip()
        if s.startswith('"'):
            values = _json_values_in_line(s)
            if values is not None:
                return [it for v in values if isinstance(v, str)
                        for it in ((t, None, None) for t in _split(v))]
        if "\\" not in text or (s.startswith("{") and _json_values_in_line(s) is not None):
            return [(text, None, None)]           # a JSON line keeps its own escapes
        return [(t, None, None) for t in _split(unescape(text))]


class JsonLinesPeeler(Peeler):
    """One or more JSON values per line (NDJSON of Docker json-file, Fluent Bit, Vector or
    Loki records; a line holding an array). Lines that are not JSON pass unchanged; Istio's
    own JSON lines pass unchanged (a line format)."""

    name = "json-lines"

    def __init__(self) -> None:
        self.records = RecordReader()

    def partial(self, line: bytes) -> bool:
        # Docker json-file parts end without "\n"; Fluent Bit's CRI parser tags them "P"
        return (b'"log":"' in line and b'\\n"' not in line) or b'"logtag":"P"' in line

    def peel(self, text: str) -> list[Item]:
        s = text.strip()
        if not s or s[0] not in "{[\"":
            return [(text, None, None)]
        values = _json_values_in_line(s)
        if values is None:
            return [(text, None, None)]
        out: list[Item] = []
        for v in values:
            out.extend(self.records.lines(v))
        return out

    @property
    def pending(self) -> bool:
        return bool(self.records.joiner.parts)

    def flush(self) -> list[Item]:
        return self.records.flush()


class Chain(Peeler):
    """Several layers, outermost first (e.g. a kubectl prefix over CRI lines)."""

    def __init__(self, layers: list[Peeler]) -> None:
        self.layers = layers
        self.name = "+".join(p.name for p in layers)
        self.skippable = all(p.skippable for p in layers)

    def describe(self) -> str:
        return " then ".join(p.describe() for p in self.layers)

    def peel(self, text: str) -> list[Item]:
        items: list[Item] = [(text, None, None)]
        for layer in self.layers:
            items = _through(layer, items)
        return items

    def partial(self, line: bytes) -> bool:
        return any(p.partial(line) for p in self.layers)

    @property
    def pending(self) -> bool:
        return any(p.pending for p in self.layers)

    def flush(self) -> list[Item]:
        out: list[Item] = []
        for i, layer in enumerate(self.layers):
            items = layer.flush()
            for inner in self.layers[i + 1:]:
                items = _through(inner, items)
            out.extend(items)
        return out


def _through(layer: Peeler, items: list[Item]) -> list[Item]:
    out: list[Item] = []
    for text, origin, stream in items:
        for t, o, s in layer.peel(text):
            out.append((t, o or origin, s or stream))
    return out


def _json_values_in_line(s: str) -> list[object] | None:
    """Every JSON value on one line (separated by commas/whitespace; a trailing comma of a
    pasted array element is fine), or None when the line is not JSON."""
    try:
        return [orjson.loads(s.rstrip(",").strip())]
    except orjson.JSONDecodeError:
        pass
    dec = _DECODER
    out = []
    pos, n = 0, len(s)
    try:
        while pos < n:
            while pos < n and s[pos] in " \t,":
                pos += 1
            if pos >= n:
                break
            value, pos = dec.raw_decode(s, pos)
            out.append(value)
    except ValueError:
        return None
    return out or None


_DECODER = json.JSONDecoder()


# -- JSON records ---------------------------------------------------------------------------
class RecordReader:
    """JSON values -> logical lines: strings, shipper records, Loki documents, arrays."""

    def __init__(self) -> None:
        self.joiner = _Joiner()

    def flush(self) -> list[Item]:
        return [(t, k[0], k[1]) for k, t in self.joiner.flush()]

    def lines(self, value: object, origin: str | None = None, depth: int = 0) -> list[Item]:
        if depth > 8:
            return []
        if isinstance(value, str):
            return [(t, origin, None) for t in _split(value)]
        if isinstance(value, list):
            if len(value) >= 2 and isinstance(value[1], str) and _is_time(value[0]):
                return [(t, origin, None) for t in _split(value[1])]    # Loki [ts, line]
            out: list[Item] = []
            for v in value:
                out.extend(self.lines(v, origin, depth + 1))
            return out
        if not isinstance(value, dict):
            return []
        if is_istio_json(value):
            return [(orjson.dumps(value).decode(), origin or _origin(value), None)]  # istio JSON
        loki = _loki_streams(value)
        if loki is not None:
            out = []
            for labels, entries in loki:
                o = _origin(labels) if isinstance(labels, dict) else origin
                for _, line in entries:
                    out.extend((t, o or origin, None) for t in _split(line))
            return out
        for key in TEXT_KEYS:
            text = value.get(key)
            if isinstance(text, str):
                break
            if isinstance(text, (dict, list)):
                return self.lines(text, origin or _origin(value), depth + 1)
        else:
            return []
        o = origin or _origin(value)
        stream = value.get("stream") or value.get("source")
        stream = stream if stream in ("stdout", "stderr") else None
        complete = True
        if value.get("logtag") == "P" or value.get("_p") == "P":
            complete = False
        elif key == "log" and {"log", "stream", "time"} <= set(value) <= {"log", "stream",
                                                                            "time", "attrs"}:
            complete = text.endswith("\n")                  # Docker json-file
        whole = self.joiner.add((o, stream), text, complete)
        if whole is None:
            return []
        return [(t, o, stream) for t in _split(whole)]


def _is_time(v: object) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, str) and v[:1].isdigit())


def _loki_streams(d: dict) -> list[tuple[object, list[tuple[float, str]]]] | None:
    """Loki push (``streams``) and query (``data.result``) documents: per stream its labels
    and (time, line) entries in time order (Loki answers newest first)."""
    streams = d.get("streams")
    if streams is None and isinstance(d.get("data"), dict):
        streams = d["data"].get("result")
    if not isinstance(streams, list):
        return None
    out = []
    for s in streams:
        if not isinstance(s, dict):
            continue
        labels = s.get("stream") if "stream" in s else s.get("labels")
        entries: list[tuple[float, str]] = []  # (time, line)
        for v in s.get("values") or []:
            if isinstance(v, list) and len(v) >= 2 and isinstance(v[1], str):
                entries.append((_num(v[0]), v[1]))
        for e in s.get("entries") or []:
            if isinstance(e, dict) and isinstance(e.get("line"), str):
                entries.append((_num(e.get("ts")), e["line"]))
        entries.sort(key=lambda x: x[0])      # stable: equal times keep their order
        out.append((labels, entries))
    return out


def _num(v: object) -> float:
    """A Loki timestamp (nanoseconds as a string, or RFC 3339) as a sortable number."""
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        if v.isdigit():
            return int(v)
        try:
            return float(v)
        except ValueError:
            return 0 if not _TS_RE.match(v) else int("".join(ch for ch in v if ch.isdigit())[:23])
    return 0


def _origin(d: dict) -> str | None:
    """``pod/container`` (or the closest the record has) from shipper metadata."""
    k8s = next((d[k] for k in ("kubernetes", "labels") if isinstance(d.get(k), dict)), d)
    pod = k8s.get("pod_name") or k8s.get("pod")
    container = k8s.get("container_name") or k8s.get("container")
    if not pod and not container:
        name = d.get("container_name") or d.get("host") or d.get("instance")
        return str(name).lstrip("/")[:200] if isinstance(name, str) and name else None
    return "/".join(str(x) for x in (pod, container) if x)[:200]


def iter_json_records(chunks: Iterable[bytes]) -> Iterator[tuple[int, list[Item]]]:
    """JSON values spanning lines (arrays, pretty-printed records, Loki documents, one JSON
    string holding a whole log), streamed: ``(line number of the value's start, lines)``.
    A top-level array is read element by element, so its size is not bounded by memory;
    one element is (:data:`MAX_JSON_VALUE`). Text that is not JSON is skipped to the next
    line and yielded as plain lines."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    reader = RecordReader()
    buf = ""
    pos = 0
    lineno = 1
    depth_open = 0                    # top-level arrays entered
    eof = False
    it = iter(chunks)

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        try:
            piece = next(it)
        except StopIteration:
            eof = True
            buf = buf[pos:] + decoder.decode(b"", final=True)
            pos = 0
            return bool(buf)
        buf = buf[pos:] + decoder.decode(piece)
        pos = 0
        return True

    while True:
        while True:                           # skip separators
            n = len(buf)
            while pos < n and buf[pos] in " \t\r\n,\ufeff":
                if buf[pos] == "\n":
                    lineno += 1
                pos += 1
            if pos < n or not more():
                break
        if pos >= len(buf):
            break
        c = buf[pos]
        if c == "[" and not depth_open and _array_of_values(buf, pos):
            depth_open += 1
            pos += 1
            continue
        if c == "]" and depth_open:
            depth_open -= 1
            pos += 1
            continue
        start_line = lineno
        while True:
            try:
                value, end = _DECODER.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as e:
                cut = e.pos >= len(buf) - 1 or e.msg.startswith("Unterminated")
                if not cut or eof or len(buf) - pos > MAX_JSON_VALUE:
                    value, end = None, -1
                    break
                want = max(2 * (len(buf) - pos), 1 << 16)
                while not eof and len(buf) - pos < want:
                    more()
        if end < 0:                           # not JSON: pass the line on as text
            nl = buf.find("\n", pos)
            while nl < 0 and more():
                nl = buf.find("\n", pos)
            stop = len(buf) if nl < 0 else nl
            text = buf[pos:stop]
            pos = stop
            yield start_line, [(text, None, None)]
            continue
        lineno += buf.count("\n", pos, end)
        pos = end
        items = reader.lines(value)
        if items:
            yield start_line, items
    rest = reader.flush()
    if rest:
        yield lineno, rest


def _array_of_values(buf: str, pos: int) -> bool:
    """``[`` opening an array of records/strings (not an Envoy ``[2025-…`` line)."""
    k = pos + 1
    while k < len(buf) and buf[k] in " \t\r\n":
        k += 1
    return k >= len(buf) or buf[k] in "{[\"]"


# -- detection --------------------------------------------------------------------------------
@dataclass(slots=True)
class Layout:
    """How a stream is read: ``kind`` ``plain`` | ``lines`` | ``json``; ``peeler`` for
    ``lines``; ``why`` says what was detected (for notes and ``--json``)."""

    kind: str
    peeler: Peeler | None = None
    why: str = "no envelope"
    recognised: int = 0
    sample: int = 0
    gateway: bool = True
    """Most sample lines (crash-block lines such as WAMR's stdout dumps aside) carry an
    Envoy/Istio line prefix: a plugin's output comes only in ``wasm log`` records (else the
    text is a runtime's own output: panics are plain lines)."""


def recognised(text: str) -> int:
    """How many lines of gateway log text ``text`` is: a known line prefix at the start
    (Istio's JSON counts its message's recognisable lines too), or crash text of a known
    shape (1); else 0."""
    from wasmprof.ingest.logline import parse_line
    if not text:
        return 0
    ll = parse_line(text)
    if ll.has_prefix:
        return 1 + sum(1 for x in ll.extra_lines if _BARE.match(x))
    return 1 if _BARE.match(text) else 0


def _score(items: list[Item]) -> int:
    return sum(recognised(t) for t, _, _ in items)


def _candidates(lines: list[str]) -> list[Peeler]:
    """Envelope layers the sample lines may carry, built from what they show."""
    nonempty = [x for x in lines if x.strip()]
    if not nonempty:
        return []
    n = len(nonempty)
    out: list[Peeler] = []
    if sum(1 for x in nonempty if _CRI.match(x)) * 2 >= n:
        out.append(CriPeeler())
    starts = [x.lstrip()[:1] for x in nonempty]
    if sum(1 for c in starts if c in "{[") * 2 >= n:
        out.append(JsonLinesPeeler())
    if sum(1 for x in nonempty if x.lstrip().startswith('"') or "\\n" in x or "\\t" in x) \
            * 10 >= n * 3:
        out.append(EscapedPeeler())
    borders = [x.strip(" ") for x in nonempty]
    if sum(1 for b in borders if b[:1] in _BORDERS) * 5 >= n * 3:
        widths = [len(_tui_inner(b)) for b in borders
                  if len(b) > 1 and b[0] in _BORDERS and b[-1] == b[0]]
        out.append(TuiPeeler(max(widths) if widths else None))
    prefix = _prefix_candidate(nonempty)
    if prefix is not None:
        out.append(prefix)
    return out


def _prefix_candidate(lines: list[str]) -> PrefixPeeler | None:
    ansi = any("\x1b[" in x for x in lines)
    prefixes = []
    for x in lines:
        if ansi:
            x = _ANSI.sub("", x)
        m = _ANCHOR.search(x, 0, 4096)
        if m and m.start() > 0:
            prefixes.append(x[:m.start()])
    if len(prefixes) < max(1, len(lines) // 5):
        return None
    if len(set(prefixes)) == 1:
        if prefixes[0].strip(" ") in tuple(_BORDERS):
            return None                   # a pane's border: the TUI layer's, with its wraps
        return PrefixPeeler(literal=prefixes[0], ansi=ansi)
    if not all(p.endswith(" ") for p in prefixes):
        return None
    toks = [p[:-1].split(" ") for p in prefixes]
    k = len(toks[0])
    if any(len(t) != k for t in toks) or any(not w for t in toks for w in t):
        return None
    kinds = []
    for i in range(k):
        col = [t[i] for t in toks]
        if all(_TS_RE.match(w) for w in col):
            kinds.append("ts")
        elif all(w.startswith("[") and w.endswith("]") for w in col):
            kinds.append("pod")
        else:
            kinds.append("word")
    return PrefixPeeler(kinds=tuple(kinds), ansi=ansi)


def _best(lines: list[str], depth: int) -> tuple[int, list[Peeler]]:
    """The best stack of layers for ``lines``: highest score, then fewest layers."""
    base = _score([(x, None, None) for x in lines])
    best: tuple[int, list[Peeler]] = (base, [])
    if depth == 0:
        return best
    for cand in _candidates(lines):
        items = _through(cand, [(x, None, None) for x in lines]) + cand.flush()
        inner = [t for t, _, _ in items]
        if inner == lines:
            continue                      # the layer changes nothing
        score, layers = _best(inner, depth - 1)
        if score > best[0] or (score == best[0] and best[1] and len(layers) + 1 < len(best[1])):
            best = (score, [cand, *layers])
    return best


def fresh(p: Peeler) -> Peeler:
    """A new instance of a detected layer (detection fed the sample through the old one)."""
    if isinstance(p, Chain):
        return Chain([fresh(x) for x in p.layers])
    if isinstance(p, PrefixPeeler):
        return PrefixPeeler(literal=p.literal, kinds=p.kinds, ansi=p.ansi)
    if isinstance(p, TuiPeeler):
        return TuiPeeler(p.width)
    return type(p)()


def detect(head: bytes) -> Layout:
    """The layout of a stream from its first bytes (see the module docstring)."""
    text = head[:DETECT_BYTES].decode("utf-8", "replace").lstrip("\ufeff")
    start = text.lstrip()
    cut = len(head) > DETECT_BYTES                # the sample ends inside the stream
    if start[:1] == "[" and _array_starts(start, cut) or (
            start[:1] == "{" and _first_value_spans_lines(start, cut)):
        return Layout("json", why="JSON values spanning lines (array, pretty-printed "
                                  "records or a Loki document)")
    lines = text.split("\n")
    if len(head) > DETECT_BYTES or not head.endswith(b"\n"):
        lines = lines[:-1] or lines       # the last one may be cut
    lines = [x[:-1] if x.endswith("\r") else x for x in lines if x.strip()][:DETECT_LINES]
    if not lines:
        return Layout("plain")
    score, layers = _best(lines, 3)
    base = _score([(x, None, None) for x in lines])
    if not layers or score <= base:
        return Layout("plain", recognised=base, sample=len(lines),
                      gateway=_gateway([(x, None, None) for x in lines]))
    peeler = fresh(layers[0]) if len(layers) == 1 else Chain([fresh(p) for p in layers])
    probe = fresh(peeler)
    items = _through(probe, [(x, None, None) for x in lines]) + probe.flush()
    return Layout("lines", peeler, why=peeler.describe(), recognised=score, sample=len(lines),
                  gateway=_gateway(items))


def _gateway(items: list[Item]) -> bool:
    from wasmprof.ingest.logline import parse_line
    texts = [t for t, _, _ in items if t.strip() and not _BARE.match(t)]
    return sum(1 for t in texts if parse_line(t).has_prefix) * 2 >= len(texts) > 0


def _array_starts(text: str, cut: bool) -> bool:
    """A JSON array of records or strings: its first element reads as JSON (or is cut by
    the end of a ``cut`` sample)."""
    k = 1
    while k < len(text) and text[k] in " \t\r\n":
        k += 1
    if k >= len(text) or text[k] not in "{[\"]":
        return False
    if text[k] == "]":
        return text[k + 1:].strip() == ""
    try:
        _DECODER.raw_decode(text, k)
        return True
    except json.JSONDecodeError as e:
        return cut and (e.pos >= len(text) - 1 or e.msg.startswith("Unterminated"))


def _first_value_spans_lines(text: str, cut: bool) -> bool:
    """The text opens with one JSON value longer than its first line (pretty-printed records,
    a Loki document); a sample cut inside that value counts."""
    line = text.split("\n", 1)[0].strip()
    try:
        orjson.loads(line.rstrip(","))
        return False                      # NDJSON: one value per line
    except orjson.JSONDecodeError:
        pass
    try:
        _DECODER.raw_decode(text)
        return True
    except json.JSONDecodeError as e:
        return cut and (e.pos >= len(text) - 1 or e.msg.startswith("Unterminated"))


# -- writing envelopes (tests, samples, benchmarks) -------------------------------------------
SHAPES = ("kubectl-prefix", "kubectl-prefix-old", "timestamps", "prefix-timestamps", "stern",
          "tui", "docker", "cri", "fluent-bit", "vector", "msg-records", "loki", "ndjson-array",
          "pretty-json", "json-string", "escaped")


def wrap(shape: str, lines: list[str], *, pod: str = "higress-gateway-7d9f8-abcde",
         container: str = "istio-proxy", stream: str = "stderr",
         time: str = "2025-11-03T08:14:22.517000000Z") -> str:
    """The bare log ``lines`` as ``shape`` ships or pastes them (the inverse of peeling), for
    tests, samples and benchmarks. Returns the whole text, ending with a newline."""
    def ts(i: int) -> str:
        return time[:20] + f"{(int(time[20:29]) + i) % 10**9:09d}" + time[29:]
    if shape == "kubectl-prefix":
        return "".join(f"[pod/{pod}/{container}] {x}\n" for x in lines)
    if shape == "kubectl-prefix-old":
        return "".join(f"{pod} {container} {x}\n" for x in lines)
    if shape == "timestamps":
        return "".join(f"{ts(i)} {x}\n" for i, x in enumerate(lines))
    if shape == "prefix-timestamps":
        return "".join(f"[pod/{pod}/{container}] {ts(i)} {x}\n" for i, x in enumerate(lines))
    if shape == "stern":
        return "".join(f"\x1b[32m{pod}\x1b[0m \x1b[34m{container}\x1b[0m {x}\n" for x in lines)
    if shape == "tui":
        rows_of = [x.replace("\t", "    ") for x in lines]
        width = max(60, min(120, max((len(x) for x in rows_of), default=0) // 2))
        while any(x[k - 1] == " " for x in rows_of for k in range(width, len(x), width)) or \
                any(x and len(x) % width == 0 for x in rows_of):
            width += 1                   # a space at the edge would read as padding, a line
                                         # that fills its last row exactly as a wrapped one
        rows = []
        for x in rows_of:
            while len(x) > width:
                rows.append(f"│ {x[:width]} │")
                x = x[width:]
            rows.append(f"│ {x.ljust(width)} │")
        return "\n".join(rows) + "\n"
    if shape == "docker":
        out = []
        for i, x in enumerate(lines):
            if len(x) > 40 and i % 3 == 0:       # a split line, as Docker does past 16 KiB
                out.append(orjson.dumps({"log": x[:25], "stream": stream, "time": ts(i)}))
                x = x[25:]
            out.append(orjson.dumps({"log": x + "\n", "stream": stream, "time": ts(i)}))
        return b"\n".join(out).decode() + "\n"
    if shape == "cri":
        out_s = []
        for i, x in enumerate(lines):
            if len(x) > 40 and i % 3 == 0:
                out_s.append(f"{ts(i)} {stream} P {x[:25]}")
                x = x[25:]
            out_s.append(f"{ts(i)} {stream} F {x}")
        return "\n".join(out_s) + "\n"
    if shape == "fluent-bit":
        return "".join(orjson.dumps({"date": 1762157662.517 + i, "log": x + "\n",
                                     "stream": stream, "kubernetes": {
                                         "pod_name": pod, "container_name": container,
                                         "namespace_name": "higress-system"}}).decode() + "\n"
                       for i, x in enumerate(lines))
    if shape == "vector":
        return "".join(orjson.dumps({"message": x, "stream": stream, "timestamp": ts(i),
                                     "kubernetes": {"pod_name": pod,
                                                    "container_name": container}}).decode()
                       + "\n" for i, x in enumerate(lines))
    if shape == "msg-records":       # a shipper naming the text "msg" (not Istio's JSON)
        return "".join(orjson.dumps({"ts": ts(i), "level": "info", "msg": x, "pod": pod,
                                     "container": container}).decode() + "\n"
                       for i, x in enumerate(lines))
    if shape == "loki":
        values = [[str(1762157662517000000 + i), x] for i, x in enumerate(lines)]
        doc = {"streams": [{"stream": {"pod": pod, "container": container},
                            "values": values[::-1]}]}      # Loki answers newest first
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    if shape == "ndjson-array":
        return orjson.dumps([{"log": x, "stream": stream} for x in lines]).decode() + "\n"
    if shape == "pretty-json":
        return "".join(orjson.dumps({"message": x, "kubernetes": {"pod_name": pod}},
                                    option=orjson.OPT_INDENT_2).decode() + "\n" for x in lines)
    if shape == "json-string":
        return "".join(orjson.dumps(x + "\n").decode() + ",\n" for x in lines)
    if shape == "escaped":
        return orjson.dumps("\n".join(lines)).decode()[1:-1] + "\n"
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
