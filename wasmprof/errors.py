"""Errors that reach users.

Contract: every failure caused by *input* (a file, a log, an HTTP body) is raised as a
:class:`WasmprofError` (or subclass) carrying where it happened and what was expected.
The CLI prints ``str(err)`` and exits 2; the service answers 4xx with ``err.to_dict()``.
Any other exception is a bug in wasmprof.
"""

from __future__ import annotations


class WasmprofError(Exception):
    """An input problem with a location.

    ``source`` names the file (or "<stdin>", "upload foo.wasm"), ``offset`` the byte offset
    (or None when not meaningful), ``expected`` what the reader wanted, ``found`` what it
    saw instead.
    """

    exit_code = 2
    #: HTTP status the service answers with (subclasses may say otherwise).
    http_status = 400

    def __init__(self, message: str, *, source: str | None = None, offset: int | None = None,
                 expected: str | None = None, found: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        where = self.source or "<input>"
        if self.offset is not None:
            where += f" at offset {self.offset} (0x{self.offset:x})"
        text = f"{where}: {self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        if self.found:
            text += f", found {self.found}"
        return text

    def to_dict(self) -> dict:
        return {"error": self.message, "source": self.source, "offset": self.offset,
                "expected": self.expected, "found": self.found, "detail": str(self)}


class BinaryFormatError(WasmprofError):
    """A binary (Wasm, AOT, ELF, cwasm) that does not follow its format."""


class LogFormatError(WasmprofError):
    """A log or profile text that cannot be read at all (partial damage is flagged, not raised)."""


class UsageError(WasmprofError):
    """A bad combination of arguments or options."""


class ConflictError(UsageError):
    """A well-formed request that the stored state refuses (a name or URL another object
    has, a table at its cap): HTTP 409."""

    http_status = 409


class NotFoundError(UsageError):
    """A well-formed reference to something that does not exist (a module id, a selection
    that matches no data): HTTP 404, exit code 1 (nothing found)."""

    http_status = 404
    exit_code = 1
