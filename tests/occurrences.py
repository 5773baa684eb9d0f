"""A crash log as a new occurrence: the same crash re-logged at another time.

Log ingest is idempotent (the same log posted twice stores each crash once), so a test that
wants N crash events of one crash posts N occurrences: the dump's lines as Envoy records
stamped with distinct times, as a gateway would log the crash happening again."""

from __future__ import annotations

import itertools
import time

from wasmprof.ingest.logline import LineFormat, format_record

_seq = itertools.count()


def occurrence(text: str, ts: float | None = None, thread: str = "9") -> bytes:
    """``text`` (a bare crash dump) as Envoy records at ``ts`` (default: now, made unique)."""
    if ts is None:
        ts = time.time() + next(_seq) * 0.001
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    return "\n".join(format_record(LineFormat.ENVOY, line, timestamp=stamp, thread=thread)
                     for line in text.splitlines()).encode()
