"""Where a set of byte strings occurs in a chunk of log: the crash scanner's fast path.

Contract: :class:`TriggerSet` ``.hits(chunk)`` returns the start offset of every occurrence
of every needle in ``chunk`` (overlapping occurrences included), sorted, as a list. The
scanner reads only the lines these offsets fall in (while no crash block is open), so this
one call per chunk is most of the cost of reading a sparse log.

Two engines, same answer (``tests/test_logs_triggers.py`` holds them equal): Hyperscan
(PyPI ``hyperscan``; all needles in one pass over the chunk, several GB/s) when it imports,
else one ``bytes.find`` pass per needle. ``engine`` says which one a set uses;
``WASMPROF_TRIGGERS=find`` forces the plain one.
"""

from __future__ import annotations

import os
import threading

try:  # pragma: no cover - depends on the platform's wheels
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None


def _literal(needle: bytes) -> bytes:
    """``needle`` as a Hyperscan expression matching exactly those bytes."""
    return b"".join(b"\\x%02x" % b for b in needle)


class TriggerSet:
    """Fixed byte strings, looked for together (see the module docstring)."""

    def __init__(self, needles: tuple[bytes, ...], *, engine: str | None = None) -> None:
        if not needles or any(not x or b"\n" in x for x in needles):
            raise ValueError("needles must be non-empty and hold no newline")
        self.needles = needles
        self._lengths = [len(x) for x in needles]
        want = engine or os.environ.get("WASMPROF_TRIGGERS") or "auto"
        self.engine = "hyperscan" if want in ("auto", "hyperscan") and _hs is not None else "find"
        if want == "hyperscan" and _hs is None:
            raise RuntimeError("the hyperscan package is not installed")
        self._db = None
        self._local = threading.local()          # one Hyperscan scratch per thread
        if self.engine == "hyperscan":
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=[_literal(x) for x in needles],
                       ids=list(range(len(needles))), elements=len(needles),
                       flags=[0] * len(needles))
            self._db = db

    def hits(self, chunk: bytes) -> list[int]:
        """Sorted start offsets of every occurrence of every needle in ``chunk``."""
        if self._db is None:
            return self._find(chunk)
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hs.Scratch(self._db)
        out: list[int] = []
        lengths = self._lengths

        def on_match(i: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            out.append(end - lengths[i])
        self._db.scan(chunk, match_event_handler=on_match, scratch=scratch)
        out.sort()                  # reported by end offset: needles' lengths differ
        return out

    def _find(self, chunk: bytes) -> list[int]:
        out: list[int] = []
        for needle in self.needles:
            find = chunk.find
            p = find(needle)
            while p >= 0:
                out.append(p)
                p = find(needle, p + 1)
        out.sort()
        return out
