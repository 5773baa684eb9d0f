"""Shared output helpers: JSON (orjson), terminal progress, output files (:func:`open_output`)."""

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


class _Output:
    """A binary output file written to a temporary sibling and renamed into place on a
    successful ``close()`` (a failed run never leaves a truncated or half-written file);
    ``discard()`` (or leaving a ``with`` block by an exception) removes the temporary."""

    def __init__(self, path: str, tmp: str, f: BinaryIO) -> None:
        self.path, self._tmp, self._f = path, tmp, f
        self.name = path

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        import os
        if self._f.closed:
            return
        self._f.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        import os
        if not self._f.closed:
            self._f.close()
            try:
                os.unlink(self._tmp)
            except OSError:
                pass

    def __enter__(self) -> "_Output":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def open_output(path: str, *, allowed_suffixes: dict[str, str] | None) -> BinaryIO:
    """Open the output file ``path`` for binary writing, or raise
    :class:`~wasmprof.errors.UsageError` (exit 2) naming it: a suffix not in
    ``allowed_suffixes`` (lower-case suffix → what it means; None allows any) is refused with
    the list; so are a directory, a missing parent directory and a place we may not write.
    ``-`` is standard output. The file appears only when the returned object is closed
    without error (see :class:`_Output`); use it as a context manager."""
    import os
    import tempfile
    from pathlib import Path

    from wasmprof.errors import UsageError

    if path == "-":
        return sys.stdout.buffer
    p = Path(path)
    if p.is_dir():
        raise UsageError("output is a directory", source=path, expected="a file name")
    if allowed_suffixes is not None and p.suffix.lower() not in allowed_suffixes:
        choices = ", ".join(f"{k} ({v})" for k, v in allowed_suffixes.items())
        raise UsageError("unknown output file suffix", source=path,
                         expected=f"one of {choices}", found=repr(p.suffix or "no suffix"))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError("output directory does not exist", source=path,
                         expected=f"an existing directory ({parent})")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UsageError(f"cannot write the output: {e.strerror}", source=path) from None
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    return _Output(str(p), tmp, os.fdopen(fd, "wb"))  # type: ignore[return-value]
