"""The crash scanner's fast path is the line-by-line path, only faster: trigger hits found by
Hyperscan equal ``bytes.find``'s; skipping lines without a trigger, reading frame and record
runs in one regex match each and looking back in the raw chunks for a thread's plugin records
give the crashes the plain path (every line fed to :class:`CrashScanner`) gives, on the
benchmark's crash-dense logs of every kind (bench/logs.py), in both line formats."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmprof.ingest import crashlog, triggers
from wasmprof.ingest.crashlog import OPEN_AT_END, TRIGGERS, CrashScanner, scan_crashes
from wasmprof.ingest.logline import LineFormat
from wasmprof.ingest.triggers import TriggerSet
from wasmprof.model import Crash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import logs as bench_logs  # noqa: E402

NEEDLES = (b": 0x", b"anic", b"Function: ", b"#00 ", b"aa", b"libc++abi")
needs_hyperscan = pytest.mark.skipif(triggers._hs is None, reason="hyperscan not installed")


@needs_hyperscan
@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"x", b" ", b"\n", b": 0x", b"panic", b"Function: ", b"a",
                                 b"#00 ", b"libc++abi", b"\xff", b"\x00"]), max_size=80))
def test_hyperscan_hits_equal_bytes_find(pieces):
    chunk = b"".join(pieces)
    assert TriggerSet(NEEDLES, engine="hyperscan").hits(chunk) == \
        TriggerSet(NEEDLES, engine="find").hits(chunk)


def test_trigger_sets_refuse_needles_they_cannot_serve():
    with pytest.raises(ValueError):
        TriggerSet((b"a\nb",))
    with pytest.raises(ValueError):
        TriggerSet(())
    assert TriggerSet(TRIGGERS, engine="find").engine == "find"


def _segment(fmt: LineFormat, density: float) -> bytes:
    saved = bench_logs.SEGMENT_LINES
    bench_logs.SEGMENT_LINES = 6000
    try:
        return bench_logs.make_segment(fmt, random.Random(3), density)[0]
    finally:
        bench_logs.SEGMENT_LINES = saved


def _line_by_line(data: bytes) -> list[dict]:
    sc = CrashScanner("x", keep_lines=False)
    out: list[dict] = []
    offset = 0
    for lineno, line in enumerate(io.BytesIO(data), 1):
        sc.expire(offset)
        sc.feed_line(line, lineno, offset)
        offset += len(line)
        out += [c.to_dict() for c in sc.drain() if isinstance(c, Crash)]
    sc.finish()
    return out + [c.to_dict() for c in sc.drain() if isinstance(c, Crash)]


@pytest.mark.parametrize("engine", ["hyperscan", "find"])
@pytest.mark.parametrize("fmt", [LineFormat.ENVOY, LineFormat.ISTIO])
def test_fast_path_gives_the_line_by_line_crashes(fmt, engine, monkeypatch):
    if engine == "hyperscan" and triggers._hs is None:
        pytest.skip("hyperscan not installed")
    for name in ("_GATEWAY_SET", "_ENVELOPED_SET", "_PLAIN_SET", "_NATIVE_SET"):
        monkeypatch.setattr(crashlog, name, TriggerSet(getattr(crashlog, name).needles,
                                                       engine=engine))
    monkeypatch.setattr(crashlog, "CHUNK_SIZE", 1 << 16)     # lookbacks across chunks
    data = _segment(fmt, 0.1)
    fast = sorted((c.to_dict() for c in scan_crashes(io.BytesIO(data), "x")),
                  key=lambda d: d["first_line"])
    slow = sorted(_line_by_line(data), key=lambda d: d["first_line"])
    assert len(fast) == len(slow) > 40
    kinds = {(d["runtime"], d["panic"]["kind"] if d["panic"] else None) for d in fast}
    assert len(kinds) >= 6                         # WAMR, V8 (+ Rust/TinyGo/Go), Wasmtime, native
    for a, b in zip(fast, slow):
        # the fast path keeps breadcrumbs from the last 16 KiB of the thread (the plain path
        # its last 5 records), and does not read the line after a native backtrace: a block
        # near the end stays open to the end
        fb, sb = a.pop("breadcrumbs"), b.pop("breadcrumbs")
        assert fb == sb[len(sb) - len(fb):], a["first_line"]
        for d in (a, b):
            d["notes"] = [n for n in d["notes"] if n != OPEN_AT_END]
        assert a == b
