"""Envoy / istio-proxy / Higress log line prefixes (formats.md §5.1–5.3).

Contract: :func:`parse_line` takes one physical line (already decoded, without its line
ending) and returns a :class:`LogLine`: the prefix fields when the line starts with a known
prefix, else ``format == PLAIN`` with the whole text as ``message`` (stdout lines such as
WAMR's call-stack dump, and continuation lines of multi-line messages). It never raises and
runs in time linear in the line length (all regexes are anchored, without nested
quantifiers; bounded repetitions where a field could be long).

Recognised prefixes:

- Envoy default ``[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v`` (location optional, for old
  Envoy builds that added it themselves or custom formats without it);
- ``[Envoy (Epoch N)] `` in front of the Envoy default (Istio <= 1.5);
- Istio TSV old ``%Y-%m-%dT%T.%fZ\\t%l\\tenvoy %n\\t%v`` and new
  ``…\\tenvoy %n %g:%#\\t%v\\tthread=%t`` (the ``thread=`` suffix is on the *last* line of a
  multi-line message only: see :func:`split_thread_suffix`), and pilot-agent's own
  ``time\\tlevel\\tmsg`` lines;
- Istio JSON (``--log_as_json``): the message's embedded newlines come back as
  ``extra_lines``.

What wraps these lines (container runtimes, shippers, kubectl, terminals) is peeled first,
by :mod:`wasmprof.ingest.envelopes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import orjson


class LineFormat(StrEnum):
    ENVOY = "envoy"
    ENVOY_EPOCH = "envoy-epoch"
    ISTIO = "istio"              # TSV with location and thread= suffix
    ISTIO_OLD = "istio-old"      # TSV without location / thread
    ISTIO_AGENT = "istio-agent"  # pilot-agent's own TSV lines (no "envoy " scope)
    ISTIO_JSON = "istio-json"
    PLAIN = "plain"


@dataclass(slots=True)
class LogLine:
    """One physical line split into its prefix fields and message."""

    format: LineFormat
    message: str
    timestamp: str | None = None
    thread: str | None = None
    level: str | None = None
    logger: str | None = None
    location: str | None = None
    epoch: int | None = None
    stream: str | None = None              # "stdout"/"stderr" when the envelope says
    extra_lines: tuple[str, ...] = ()      # further message lines (JSON-escaped newlines)
    origin: str | None = None              # the stream within the input (envelopes.py)

    @property
    def has_prefix(self) -> bool:
        return self.format is not LineFormat.PLAIN


_ENVOY = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?)\]\[(\d{1,20})\]\[(\w{1,20})\]"
    r"\[([\w.\-]{1,100})\] ?(?:\[([^\]\s]{1,1000}):(\d{1,9})\] ?)?")
_EPOCH = re.compile(r"\[Envoy \(Epoch (\d{1,9})\)\] ")
_ISO_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)\Z")
_THREAD_SUFFIX = re.compile(r"\tthread=(\d{1,20})\Z")
_THREAD_SUFFIX_RELAXED = re.compile(r"[\t ]{1,64}thread=(\d{1,20})\s{0,8}\Z")
_LEVELS = frozenset(("trace", "debug", "info", "warn", "warning", "error", "err", "critical",
                     "fatal", "off"))


def decode(raw: bytes) -> str:
    """Bytes of one line -> text: UTF-8 with replacement, line ending (LF/CRLF) removed."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def split_thread_suffix(text: str, *, relaxed: bool = False) -> tuple[str, str | None]:
    """Strip Istio's trailing ``\\tthread=N`` (last line of a multi-line message).
    ``relaxed``: also when the tab became spaces (text copied out of a terminal); for
    continuation lines of a backtrace, where no name ends in `` thread=N``."""
    if "thread=" not in text:
        return text, None
    m = _THREAD_SUFFIX.search(text) if "\tthread=" in text else None
    if m is None and relaxed:
        m = _THREAD_SUFFIX_RELAXED.search(text)
    if not m:
        return text, None
    return text[:m.start()], m.group(1)


def parse_line(text: str) -> LogLine:
    """Split one line into prefix fields and message (PLAIN when no prefix matches)."""
    line = _parse_prefixed(text)
    return line if line is not None else LogLine(LineFormat.PLAIN, text)


def _parse_prefixed(text: str) -> LogLine | None:
    first = text[:1]
    if first == "[":
        epoch = None
        body = text
        if text.startswith("[Envoy (Epoch "):
            m = _EPOCH.match(text)
            if not m:
                return None
            epoch = int(m.group(1))
            body = text[m.end():]
        m = _ENVOY.match(body)
        if not m:
            return None
        loc = f"{m.group(5)}:{m.group(6)}" if m.group(5) else None
        return LogLine(LineFormat.ENVOY_EPOCH if epoch is not None else LineFormat.ENVOY,
                       body[m.end():], timestamp=m.group(1), thread=m.group(2),
                       level=m.group(3), logger=m.group(4), location=loc, epoch=epoch)
    if first.isdigit():
        return _parse_tsv(text)
    if first == "{" and '"msg"' in text:
        return _parse_json(text)
    return None


def _parse_tsv(text: str) -> LogLine | None:
    parts = text.split("\t", 3)
    if len(parts) < 3 or not _ISO_TS.match(parts[0]) or parts[1].lower() not in _LEVELS:
        return None
    ts, level = parts[0], parts[1]
    if len(parts) == 3 or not parts[2].startswith("envoy "):
        # pilot-agent line: time, level, message (which may itself hold tabs)
        msg = text.split("\t", 2)[2]
        return LogLine(LineFormat.ISTIO_AGENT, msg, timestamp=ts, level=level)
    scope = parts[2][6:]
    logger, _, location = scope.partition(" ")
    msg, thread = split_thread_suffix(parts[3])
    fmt = LineFormat.ISTIO if location else LineFormat.ISTIO_OLD
    return LogLine(fmt, msg, timestamp=ts, thread=thread, level=level, logger=logger,
                   location=location or None)


def _parse_json(text: str) -> LogLine | None:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not is_istio_json(obj):
        return None             # e.g. a shipper's record with a "msg" (envelopes.py peels it)
    scope = obj.get("scope")
    logger = None
    if isinstance(scope, str):
        logger = scope[6:] if scope.startswith("envoy ") else scope
    thread = obj.get("thread")
    lines = obj["msg"].replace("\r\n", "\n").split("\n")
    return LogLine(LineFormat.ISTIO_JSON, lines[0], timestamp=_str_or_none(obj.get("time")),
                   thread=None if thread is None else str(thread),
                   level=_str_or_none(obj.get("level")), logger=logger,
                   location=_str_or_none(obj.get("caller")), extra_lines=tuple(lines[1:]))


def is_istio_json(obj: object) -> bool:
    """A decoded JSON line is Istio's own log record (``msg`` with its ``scope`` or
    ``caller``), not a shipper's record that happens to name its text ``msg``."""
    return (isinstance(obj, dict) and isinstance(obj.get("msg"), str)
            and ("scope" in obj or "caller" in obj))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def format_record(fmt: LineFormat, message: str, *, timestamp: str = "2025-11-03 08:14:22.517",
                  thread: str = "31", level: str = "error", logger: str = "wasm",
                  location: str = "source/extensions/common/wasm/wasm_vm.cc:38") -> str:
    """Write ``message`` as the given format would (the inverse of :func:`parse_line`), for
    tests, samples and benchmarks. ``timestamp`` is in Envoy's form; it is converted for the
    Istio formats. Multi-line messages keep their newlines (Istio puts ``thread=`` last)."""
    iso = timestamp.replace(" ", "T")
    iso = (iso + "000Z") if len(iso) == 23 else iso + "Z"
    if fmt is LineFormat.ENVOY:
        return f"[{timestamp}][{thread}][{level}][{logger}] [{location}] {message}"
    if fmt is LineFormat.ENVOY_EPOCH:
        return f"[Envoy (Epoch 0)] [{timestamp}][{thread}][{level}][{logger}] [{location}] {message}"
    if fmt is LineFormat.ISTIO:
        return f"{iso}\t{level}\tenvoy {logger} {location}\t{message}\tthread={thread}"
    if fmt is LineFormat.ISTIO_OLD:
        return f"{iso}\t{level}\tenvoy {logger}\t{message}"
    if fmt is LineFormat.ISTIO_JSON:
        return orjson.dumps({"level": level, "time": iso, "scope": f"envoy {logger}",
                             "msg": message, "caller": location,
                             "thread": int(thread) if thread.isdigit() else thread}).decode()
    return message
