"""Shared output helpers: JSON (orjson) and terminal progress."""

from __future__ import annotations

import sys
import time
from typing import Any, BinaryIO

import orjson


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    opts = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_DATACLASS
    if pretty:
        opts |= orjson.OPT_INDENT_2
    return orjson.dumps(obj, option=opts)


def write_json(obj: Any, out: BinaryIO | None = None, *, pretty: bool = True) -> None:
    """Write ``obj`` as JSON plus a newline to ``out`` (default: stdout)."""
    stream = out or sys.stdout.buffer
    stream.write(dumps(obj, pretty=pretty) + b"\n")
    stream.flush()


class Progress:
    """A throttled one-line progress report on stderr, shown only on a terminal.

    ``update(done)`` with bytes/items done; ``close()`` clears the line. ``total`` may be
    None (unknown size). Never writes when stderr is not a TTY (logs, CI, pipes).
    """

    def __init__(self, label: str, total: int | None = None, *, unit: str = "B",
                 enabled: bool | None = None, interval: float = 0.2) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.interval = interval
        self._last = 0.0
        self._start = time.monotonic()
        self._shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        if self.unit == "B":
            text = f"{done / 1e6:,.1f} MB ({rate / 1e6:,.1f} MB/s)"
            if self.total:
                text = f"{100 * done / self.total:5.1f}% {text} of {self.total / 1e6:,.1f} MB"
        else:
            text = f"{done:,} {self.unit} ({rate:,.0f}/s)"
            if self.total:
                text = f"{100 * done / self.total:5.1f}% {text}"
        sys.stderr.write(f"\r{self.label}: {text}\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
