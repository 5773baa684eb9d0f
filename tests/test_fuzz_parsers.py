"""Fuzz targets for every parser the HTTP API feeds (bounded hypothesis).

Each target takes real inputs from ``tests/data`` (crash logs of every dialect, perf scripts
and maps, folded stacks, agent JSON batches, a WAMR profiler block, Wasm/AOT modules),
mutates them (byte flips, deletions, truncation, duplicated lines, inserted tokens that
parsers trip on: huge numbers, bad hex, NUL, unbalanced brackets, LEB128 overflows) and feeds
them to the same function the server calls. The contract: a value or a
:class:`~wasmprof.errors.WasmprofError` comes out, nothing else; the work stays within a
memory bound (tracemalloc peak) and a per-example hang guard (hypothesis ``deadline``, set
far above the milliseconds a small input takes: it catches hangs, it is not a speed test).

``FUZZ_EXAMPLES`` sets the examples per target (default 60; derandomized in CI, so a run is
reproducible; set ``FUZZ_RANDOM=1`` to explore other inputs).
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmprof.errors import WasmprofError

DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=20),
                derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Peak traced memory allowed per example: a fixed allowance plus a multiple of the input.
MEM_BASE = 48 << 20
MEM_PER_BYTE = 64

TOKENS = [b"0x", b"0xzz", b"+0x", b"+0xzz", b"9" * 40, b"-1", b"1e999", b"NaN", b"\x00", b"\xff\xfe",
          b"\r\n", b"\n", b" ", b"#", b";", b",", b":", b"(", b")", b"[", b"]", b"{", b"}",
          b'"', b"\\", b"aot_func#", b"aot_func#4294967296+0x1", b"#00: 0x", b" - ", b"func ",
          b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
          b"\x00asm\x01\x00\x00\x00", b"\x00aot", b"wasm-function[", b"wasm://wasm/",
          b"execution time: ", b"Performance profiler data:", b" ms", b"1" * 5000]


def _head(path: Path, limit: int = 24 << 10) -> bytes:
    return path.read_bytes()[:limit]


def _seeds(pattern: str, limit: int = 24 << 10, n: int = 8) -> list[bytes]:
    return [_head(p, limit) for p in sorted(DATA.glob(pattern))[:n]]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 5))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 2:
            del data[pos:pos + draw(st.integers(1, 256))]
        elif op == 3:
            del data[pos:]
        elif op == 4:
            data[pos:pos] = draw(st.binary(max_size=24))
        else:                                     # repeat a line with a twist
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            line = bytes(data[start:end if end >= 0 else len(data)])
            data[pos:pos] = line[::-1] if draw(st.booleans()) else line
    return bytes(data)


def bounded(fn, data: bytes) -> None:
    """Run ``fn(data)``: a value or a WasmprofError, within the memory bound."""
    tracemalloc.start()
    try:
        try:
            fn(data)
        except WasmprofError as e:
            assert str(e)                     # names where and what
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEM_BASE + MEM_PER_BYTE * len(data), f"peak {peak} bytes for {len(data)}"


# -- logs (POST /api/v1/logs) --------------------------------------------------------------

def _log_seeds() -> list[bytes]:
    from wasmprof.ingest.logline import LineFormat, format_record
    raw = _seeds("dumps/*.log", n=12)
    wrapped = []
    for i, fmt in enumerate((LineFormat.ENVOY, LineFormat.ISTIO_JSON, LineFormat.ISTIO,
                             LineFormat.ENVOY_EPOCH)):
        lines = raw[i].decode("utf-8", "replace").splitlines()
        wrapped.append("\n".join(format_record(fmt, line, thread="7") for line in lines)
                       .encode())
    return raw + wrapped


LOGS = _log_seeds()


def _scan_log(data: bytes) -> None:
    from wasmprof.ingest.crashlog import scan_crashes
    for crash in scan_crashes(io.BytesIO(data), "fuzz.log"):
        assert crash.raw_frames is not None


@FUZZ
@given(mutated(LOGS))
def test_fuzz_crash_log_scanner(data):
    bounded(_scan_log, data)


# -- perf script + perf map (POST /api/v1/profiles) --------------------------------------

PERF = _seeds("perf/*.perf-script.txt", n=6)
MAPS = _seeds("perf/*.map", limit=8 << 10, n=6)


def _perf_script(data: bytes) -> None:
    from wasmprof.ingest.perf_map import parse_perf_map
    from wasmprof.ingest.perf_script import parse_perf_script
    pmap = parse_perf_map(MAPS[0].decode(), "fuzz.map")
    profile, _ = parse_perf_script(io.BytesIO(data), perf_maps=[pmap], source="fuzz.perf")
    assert profile is not None


@FUZZ
@given(mutated(PERF))
def test_fuzz_perf_script(data):
    bounded(_perf_script, data)


def _perf_map(data: bytes) -> None:
    from wasmprof.ingest.perf_map import parse_perf_map
    pmap = parse_perf_map(data.decode("utf-8", "replace"), "fuzz.map")
    pmap.lookup(0x41399708)


@FUZZ
@given(mutated(MAPS))
def test_fuzz_perf_map(data):
    bounded(_perf_map, data)


# -- folded stacks ----------------------------------------------------------------------

FOLDED = [b"main;route_request;glob_match 42\nmain;route_request;class_match 7\n",
          b"iwasm;aot_func#4;aot_func#7 1000\n[unknown];fib 3\n",
          b"wasm-function[12];wasm-function[3] 5\nnative_host;hmac::verify 2\n"]


def _folded(data: bytes) -> None:
    from wasmprof.ingest.folded import parse_folded
    parse_folded(io.BytesIO(data), source="fuzz.folded")


@FUZZ
@given(mutated(FOLDED))
def test_fuzz_folded(data):
    bounded(_folded, data)


# -- agent JSON (POST /api/v1/samples: shape check at ingest, full parse at query) ------

AGENT = [json.dumps(b).encode() for b in (
    {"modules": [{"id": "bot", "text_base": 1096388612, "text_size": 40960}],
     "samples": [{"stack": [1096388700, 1096389000, 4198400], "count": 3, "timestamp": 12.5,
                  "thread": "wrk:worker_0", "labels": {"route": "/api"}}]},
    {"name": "run", "plugin": "bot", "labels": {"env": "ci"},
     "modules": [{"name": "bot", "text_base": "0x41599004", "space": "native"}],
     "samples": [{"stack": [{"pc": "0x41599100"}, {"name": "host_fn"},
                            {"module": "bot", "offset": 1234, "space": "v8", "func_index": 3}]}]},
)]


def _agent_json(data: bytes) -> None:
    from wasmprof.ingest.agent_json import parse_agent_json
    parse_agent_json(data, "fuzz batch")      # the door: full validation at ingest


@FUZZ
@given(mutated(AGENT))
def test_fuzz_agent_json(data):
    bounded(_agent_json, data)


# -- WAMR profiler block --------------------------------------------------------------

WAMR_PROFILER = [
    b"Performance profiler data:\n"
    b"  func fib_rec, execution time: 12.500 ms, execution count: 40 times, children "
    b"execution time: 2.000 ms\n"
    b"  func RingBuffer<int, 8u>::push(int), execution time: 1.250 ms, execution count: 3 "
    b"times, children execution time: 0.000 ms\n"
    b"  func 40, execution time: 0.010 ms, execution count: 1 times, children execution "
    b"time: 0.000 ms\nException: unreachable\n"]


def _wamr_profiler(data: bytes) -> None:
    from wasmprof.ingest.wamr_profiler import parse_wamr_profiler
    parse_wamr_profiler(data.decode("utf-8", "replace"), source="fuzz.log")


@FUZZ
@given(mutated(WAMR_PROFILER))
def test_fuzz_wamr_profiler(data):
    bounded(_wamr_profiler, data)


# -- the sniffing path every profile upload takes --------------------------------------

def _profile_upload(data: bytes) -> None:
    from wasmprof.profiles import parse_profile_stream
    parse_profile_stream(io.BytesIO(data), source="upload")


@FUZZ
@given(mutated(PERF[:2] + FOLDED + AGENT + WAMR_PROFILER))
def test_fuzz_profile_upload_sniffing(data):
    bounded(_profile_upload, data)


# -- modules (POST /api/v1/modules) -----------------------------------------------------

MODULES = ([p.read_bytes() for p in sorted(DATA.glob("wasm/*.wasm"))
            if p.stat().st_size < 64 << 10][:5]
           + [p.read_bytes() for p in sorted(DATA.glob("aot/*.aot"))
              if p.stat().st_size < 64 << 10][:3])


def _module(data: bytes) -> None:
    from wasmprof.binary.loader import load_module
    m = load_module("upload.wasm", data)
    assert m is not None


@pytest.mark.skipif(not MODULES, reason="no small modules in tests/data")
@FUZZ
@given(mutated(MODULES or [b"\0asm\1\0\0\0"]))
def test_fuzz_module_loader(data):
    bounded(_module, data)
