"""Looking back from a crash for its thread's ``wasm log`` records, in the raw bytes.

Contract: :class:`Lookback` holds the last two chunks of a plain stream (no envelope) as the
scanner read them. :meth:`Lookback.records` finds, newest first, the ``wasm log`` lines of
one thread that end before a byte offset (with their line numbers), searching backwards
with ``bytes.rfind`` for the thread's field — so the fast path never has to look at plugin
lines at all: a gateway log's plugin lines cost nothing unless a crash needs them. Bounded
by :data:`MAX_RECORDS` records and ``max_bytes`` bytes; never raises.
"""

from __future__ import annotations

import re

MAX_RECORDS = 6               # records looked at per crash (its breadcrumbs, one more for its
                              # panic's first record)
MAX_BYTES = 16 << 10          # how far back from the crash, by default
_WASM_LOGGER = re.compile(rb"\w{1,20}\]\[wasm\] ")   # after ``][T][``: ``level][wasm] ``


def thread_marker(thread: str, sample: bytes) -> tuple[bytes, bool]:
    """(bytes a line of ``thread`` holds in the format of ``sample``, whether they end the
    line): Envoy ``][T][``, Istio ``\\tthread=T`` at the end, Istio JSON ``"thread":T``."""
    t = thread.encode()
    if sample[:1] == b"[":
        return b"][" + t + b"][", False
    if sample[:1] == b"{":
        return b'"thread":' + t, False
    return b"\tthread=" + t, True


class Lookback:
    """The current and the previous chunk of the stream, with their offsets and line numbers."""

    def __init__(self) -> None:
        self.prev = b""
        self.prev_base = 0
        self.cur = b""
        self.cur_base = 0
        self.cur_line = 1

    def push(self, chunk: bytes, base: int, line: int) -> None:
        """The scanner starts reading ``chunk`` (whose first line is number ``line``) at
        stream offset ``base``."""
        self.prev, self.prev_base = self.cur, self.cur_base
        self.cur, self.cur_base, self.cur_line = chunk, base, line

    def records(self, thread: str, before: int, before_line: int, sample: bytes,
                limit: int = MAX_RECORDS, max_bytes: int = MAX_BYTES
                ) -> list[tuple[int, int, bytes]]:
        """(line number, offset, line) of ``thread``'s ``wasm log`` lines that end before
        offset ``before`` (a crash's first line, number ``before_line``), newest first."""
        marker, at_end = thread_marker(thread, sample)
        envoy = sample[:1] == b"["                 # "][T][level][wasm] … wasm log …"
        out: list[tuple[int, int, bytes]] = []
        line_at = before_line          # the number of the line that starts at `mark`
        budget = max_bytes
        for buf, base in ((self.cur, self.cur_base), (self.prev, self.prev_base)):
            if base != self.cur_base and before >= self.cur_base:
                line_at = self.cur_line    # the previous chunk ends where this one starts
            region = end = min(max(before - base, 0), len(buf))
            if end <= 0 or budget <= 0:
                continue
            mark = end                 # newlines are counted from here back, as we go
            floor = max(0, end - budget)
            while len(out) < limit:
                i = buf.rfind(marker, floor, end)
                if i < 0:
                    break
                if envoy and _WASM_LOGGER.match(buf, i + len(marker)) is None:
                    end = i                         # another logger's line (or the text
                    continue                        # of a message): look further back
                start = buf.rfind(b"\n", 0, i) + 1
                end = start
                stop = buf.find(b"\n", i)
                stop = len(buf) if stop < 0 else stop + 1
                if envoy and buf.find(b"wasm log", i, stop) < 0:
                    continue
                if at_end and buf[i + len(marker):stop].strip():
                    continue                        # thread=24 is not thread=2…
                if not envoy and (buf.find(b"wasm log", start, i) < 0 or not at_end and
                                  buf[i + len(marker):i + len(marker) + 1].isdigit()):
                    continue
                line = buf[start:stop]
                line_at -= buf.count(b"\n", start, mark)
                mark = start
                out.append((line_at, base + start, line))
            budget -= region - floor
            if len(out) >= limit or budget <= 0:
                break
        return out
