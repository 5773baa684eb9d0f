"""Damaged, interleaved and hostile logs: keep what can be read, flag what is partial, never
raise, never lose a line."""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from wasmprof.ingest.crashlog import MAX_LINE, scan_crashes, scan_log
from wasmprof.model import Crash, TrapKind

DUMP = ("\n#00: 0x0412 - fail_invariant\n#01: 0x03cc - check_cluster\n"
        "#02: 0x03a1 - select_upstream\n\n")
RECORD = ("[2025-11-03 08:14:22.517][{t}][error][wasm] [source/extensions/common/wasm/"
          "wasm_vm.cc:38] Function: proxy_on_request_headers failed: Exception: {m}\n")
OTHER = "[2025-11-03 08:14:22.600][17][info][main] [x.cc:1] unrelated line {k}\n"


def crashes(data: bytes) -> list[Crash]:
    return list(scan_crashes([data], "t.log"))


def lines_out(items) -> int:
    return sum(x.count(b"\n") if isinstance(x, bytes) else len(x.raw) for x in items)


def test_dump_cut_short_is_partial_but_kept():
    data = (RECORD.format(t=31, m="unreachable") + "\n#00: 0x0412 - fail_invariant\n"
            "#01: 0x03cc - check_cl").encode() + b"\x00\xff"
    [c] = crashes(data + b"\n#01: 0x03")
    assert c.partial and c.message == "unreachable"
    assert [f.printed_name for f in c.raw_frames] == ["fail_invariant", "check_cl\\x00\ufffd"]
    assert any("cut short" in n for n in c.notes)


def test_dump_whose_top_was_lost_and_frames_missing():
    [c] = crashes(b"Exception: unreachable\n#03: 0x03a1 - a\n#04: 0x0010 - b\n#07: 0x0020 - c\n\n")
    assert c.partial and [f.index for f in c.raw_frames] == [3, 4, 7]
    assert any("#03" in n for n in c.notes) and any("#05..#06 missing" in n for n in c.notes)
    assert c.message == "unreachable"


def test_duplicated_block_is_flagged():
    block = RECORD.format(t=31, m="unreachable") + DUMP
    a, b = crashes((block + OTHER.format(k=1) + block).encode())
    assert not any("duplicated" in n for n in a.notes)
    assert any("duplicated" in n for n in b.notes)


def test_two_threads_crashing_at_once_pair_in_order():
    data = (RECORD.format(t=31, m="unreachable") + OTHER.format(k=1)
            + RECORD.format(t=32, m="out of bounds memory access")
            + DUMP + OTHER.format(k=2) + DUMP.replace("fail_invariant", "load_u32"))
    a, b = crashes(data.encode())
    assert (a.thread, a.trap_kind, a.raw_frames[0].printed_name) == (
        "31", TrapKind.UNREACHABLE, "fail_invariant")
    assert (b.thread, b.trap_kind, b.raw_frames[0].printed_name) == (
        "32", TrapKind.OUT_OF_BOUNDS, "load_u32")


def test_other_threads_inside_the_stdout_dump_pass_through():
    lines = DUMP.splitlines(keepends=True)
    mixed = lines[:2] + [OTHER.format(k=9)] + lines[2:]
    data = (RECORD.format(t=31, m="unreachable") + "".join(mixed)).encode()
    items = list(scan_log([data], "t.log"))
    [c] = [i for i in items if isinstance(i, Crash)]
    assert len(c.raw_frames) == 3 and not c.partial
    assert b"unrelated line 9" in b"".join(i for i in items if isinstance(i, bytes))
    assert lines_out(items) == data.count(b"\n")


def test_crlf_binary_and_a_1mb_garbage_line():
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(4096)).replace(b"\n", b" ") * 256
    text = (OTHER.format(k=1) + RECORD.format(t=31, m="integer divide by zero") + DUMP)
    data = garbage + b"\n" + text.replace("\n", "\r\n").encode() + b"\x00\x01\x1b[31m\r\n"
    items = list(scan_log([data], "t.log"))
    [c] = [i for i in items if isinstance(i, Crash)]
    assert c.trap_kind is TrapKind.DIVIDE_BY_ZERO and len(c.raw_frames) == 3
    assert all(not r.endswith("\r") for r in c.raw)
    assert lines_out(items) == data.count(b"\n")


def test_overlong_line_without_newline_is_cut_not_buffered_forever():
    data = b"x" * (MAX_LINE * 2 + 123)
    items = list(scan_log(iter([data[i:i + 65536] for i in range(0, len(data), 65536)]), "t"))
    assert b"".join(items) == data
    assert all(len(i) <= MAX_LINE * 2 for i in items)


def test_pieces_of_any_size_give_the_same_crashes():
    text = (OTHER.format(k=1) + RECORD.format(t=31, m="unreachable") + OTHER.format(k=2)
            + DUMP + OTHER.format(k=3)).encode()
    whole = [(c.message, c.thread, [f.offset for f in c.raw_frames]) for c in crashes(text)]
    for size in (1, 3, 64):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        got = [(c.message, c.thread, [f.offset for f in c.raw_frames])
               for c in scan_crashes(pieces, "t")]
        assert got == whole


def test_binary_stream_input(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes((RECORD.format(t=31, m="unreachable") + DUMP).encode())
    with p.open("rb") as f:
        [c] = list(scan_crashes(f, str(p)))
    assert c.source == str(p) and c.first_line == 1


def test_log_without_crash_passes_through_byte_for_byte():
    data = b"".join(OTHER.format(k=k).encode() for k in range(50)) + b"#hash tag\r\nno newline"
    items = list(scan_log([data], "t.log"))
    assert b"".join(items) == data
    assert crashes(data) == []


_FRAGMENTS = st.sampled_from([
    b"\n", b"\r\n", b"#00: 0x0010 - f\n", b"#01: 0x0020 - g\n", b"Exception: unreachable\n",
    RECORD.format(t=3, m="unreachable").encode(), b"Proxy-Wasm plugin in-VM backtrace:\n",
    b"  0:  0x10 - h\n", b"Caught Segmentation fault\n", b"#1: [0x1234]\n",
    b"error while executing at wasm backtrace:\n", b"Caused by:\n", b"    wasm trap: x\n",
    b"wasm log a b c: hi\n", b"Function: x failed: Uncaught RuntimeError: unreachable\n",
    OTHER.format(k=1).encode(), b"\x00\xff\x1b[2J", b"  func f, execution time: 1 ms\n",
])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=40)), max_size=40),
       st.integers(min_value=1, max_value=50))
def test_any_input_never_raises_and_loses_no_line(parts, piece):
    data = b"".join(parts)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    items = list(scan_log(pieces, "fuzz"))
    assert lines_out(items) == data.count(b"\n")
    for item in items:
        if isinstance(item, Crash):
            assert item.raw and item.first_line >= 1


def test_random_bytes_scan_quickly_enough_to_finish():
    data = os.urandom(1 << 20) + b"\n" + (RECORD.format(t=1, m="unreachable") + DUMP).encode()
    [c] = crashes(data)
    assert len(c.raw_frames) == 3


def test_endless_dump_is_cut_into_bounded_crashes(monkeypatch):
    from wasmprof.ingest import crashlog
    monkeypatch.setattr(crashlog, "MAX_FRAMES", 50)
    data = ("Exception: unreachable\n\n" + "".join(f"#{i:02d}: 0x{16 + i:04x} - f{i}\n"
                                                   for i in range(120)) + "\n").encode()
    items = list(scan_log([data], "t.log"))
    found = [i for i in items if isinstance(i, Crash)]
    assert [len(c.raw_frames) for c in found] == [50, 50, 20]
    assert all(c.partial for c in found)
    assert lines_out(items) == data.count(b"\n")
