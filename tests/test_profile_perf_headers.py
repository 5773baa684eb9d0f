"""``perf script`` output shapes: header fields present or not (``-F``), one-line samples
(``-G``), tracepoint payloads, source lines, comments, CRLF; frames with odd DSOs; kernel
marking; the streaming reader against the plain parse. A live ``perf record`` + ``perf script
-F …`` run checks real field orders where perf may record here."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from wasmprof.aggregate import ProfileAggregator
from wasmprof.flamegraph.folded import folded_lines
from wasmprof.flamegraph.speedscope import speedscope_document
from wasmprof.ingest.perf_map import parse_perf_map
from wasmprof.ingest.perf_script import (PerfScriptReader, _FrameParser, _MapSet,
                                         PerfScriptStats, is_kernel_dso,
                                         parse_perf_script_events, split_frame_line)
from wasmprof.model import AddressSpace
from wasmprof.profiles import Symbolizer

FRAME = "\t    7f1e2215d058 read+0x18 (/lib/x86_64-linux-gnu/libc.so.6)\n"


def one(header: str, frames: str = FRAME):
    (p,), stats = parse_perf_script_events(io.BytesIO((header + "\n" + frames + "\n").encode()))
    (s,) = p.samples
    return p, s, stats


@pytest.mark.parametrize("header, thread, pid, t, period, event", [
    ("iwasm 20737  1849.917999:    2004008 cpu-clock: ", "iwasm/20737", None, 1849.917999,
     2004008, "cpu-clock"),
    ("iperf 27409/28744 [000] 441995.133575: cpu-clock: ", "iperf/28744", "27409",
     441995.133575, None, "cpu-clock"),
    ("java 19983 cycles:", "java/19983", None, None, None, "cycles"),
    ("V8 WorkerThread 24636/25607 [000] 94564.109216: 100 cycles:u: ", "V8 WorkerThread/25607",
     "24636", 94564.109216, 100, "cycles:u"),
    ("swapper     0 [002] 30143.481591: cpu-clock: ", "swapper/0", None, 30143.481591, None,
     "cpu-clock"),
    ("simple-terminat     9/9     198791.127353: cpu-clock: ", "simple-terminat/9", "9",
     198791.127353, None, "cpu-clock"),
    ("24130  3238.915632:    2004008 cpu-clock:ppp: ", "/24130", None, 3238.915632, 2004008,
     "cpu-clock:ppp"),
    (" 3238.915632: cpu-clock:ppp: ", "?", None, 3238.915632, None, "cpu-clock:ppp"),
    ("python 24130  3238.915632: ", "python/24130", None, 3238.915632, None, ""),
    ("python 24130  3238.915632192: 7 cycles: ", "python/24130", None, 3238.915632192, 7,
     "cycles"),
    ("          python 24130 [003]  3238.9: 5 task-clock: ", "python/24130", None, 3238.9, 5,
     "task-clock"),
    ("java 3244 10101 cpu-clock:", "java/3244", None, None, 10101, "cpu-clock"),
    ("wrk:worker 0 12/34 [001]  5.500:  cycles:u:  ", "wrk:worker 0/34", "12", 5.5, None,
     "cycles:u"),
    ("kworker/0:1 123 [000] 7.25: sched:sched_switch: prev_comm=a prev_pid=1 ==> next_pid=2",
     "kworker/0:1/123", None, 7.25, None, "sched:sched_switch"),
])
def test_header_fields(header, thread, pid, t, period, event):
    p, s, stats = one(header)
    assert (s.thread, s.labels.get("pid"), s.timestamp, s.period) == (thread, pid, t, period)
    assert p.labels.get("event", "") == event
    assert s.stack[0].printed_name == "read" and s.stack[0].module == \
        "/lib/x86_64-linux-gnu/libc.so.6"
    assert stats.skipped_blocks == 0


def test_one_line_samples_and_damage():
    text = ("# ========\n# cmdline : /usr/bin/perf record -a\n#\n"
            "          python 24130  3238.915632:    2004008 cpu-clock:ppp:      7f91caaf9c66 "
            "_Py_GetLocaleEncoding@plt+0x6 (/lib/libpython3.11.so.1.0)\r\n"
            "          python 24130  3238.953625:    2004008 cpu-clock:ppp:  ffffffff82255a37 "
            "clear_page_rep+0x7 ([kernel.kallsyms])\r\n"
            "\r\n"
            "garbage that is no header\n\tffff f (x)\n\n"
            "python 24130  3240.000001:    2004008 cpu-clock:ppp: \n"
            "\t    7f91caaf9c66 _Py_GetLocaleEncoding@plt+0x6 (/lib/libpython3.11.so.1.0)\n"
            "  libpython3.11.so.1.0[f9c66]\n"                        # -F +srcline
            "\t ffffffff82255a37 clear_page_rep+0x7 ([kernel.kallsyms])\n"
            "  [kernel.kallsyms][ffffffff82255a37]\n")              # no final blank line
    (p,), stats = parse_perf_script_events(io.BytesIO(text.encode()))
    assert [len(s.stack) for s in p.samples] == [1, 1, 2]
    assert [s.timestamp for s in p.samples] == [3238.915632, 3238.953625, 3240.000001]
    assert p.samples[1].stack[0].kernel and not p.samples[0].stack[0].kernel
    assert stats.skipped_blocks == 1 and "garbage" in stats.first_bad
    assert stats.skipped_lines == 2
    assert any("not frames" in n for n in stats.notes)


def test_long_one_line_recordings_stream(monkeypatch):
    """perf script -G of a long run has no blank lines at all: read in bounded pieces."""
    import wasmprof.ingest.perf_script as ps
    monkeypatch.setattr(ps, "_LONG_BLOCK", 1 << 12)
    lines = "".join(f"w 7  {i}.5: 1 cpu-clock:  {0x1000 + i:x} f{i % 7}+0x1 (/bin/x)\n"
                    for i in range(3000))
    r = PerfScriptReader()
    recs = list(r.records(io.BytesIO(lines.encode())))
    assert len(recs) == 3000 and r.stats.skipped_blocks == 0
    assert {rec[5][0].printed_name for rec in recs} == {f"f{k}" for k in range(7)}


@pytest.mark.parametrize("line, want", [
    ("7f1e2215d058 read+0x18 (/lib/libc.so.6)", (0x7f1e2215d058, "read+0x18", "/lib/libc.so.6")),
    ("7f1e2215d058  (/lib/libc.so.6)", (0x7f1e2215d058, "", "/lib/libc.so.6")),
    ("1234 foo(int, char const*) const (/usr/lib/x.so)",
     (0x1234, "foo(int, char const*) const", "/usr/lib/x.so")),
    ("1234 foo(int) (/tmp/x (deleted))", (0x1234, "foo(int)", "/tmp/x (deleted)")),
    ("1234 foo(int)", (0x1234, "foo(int)", None)),
    ("f9c66 _Py_GetLocaleEncoding@plt", (0xF9C66, "_Py_GetLocaleEncoding@plt", None)),
    ("uniform_int_dist.h:300", None),
    ("libc-2.33.so[27b25]", None),
])
def test_frame_lines(line, want):
    assert split_frame_line(line) == want


def test_kernel_dsos():
    assert is_kernel_dso("[kernel.kallsyms]") and is_kernel_dso("[nf_conntrack_ipv4]")
    assert is_kernel_dso("/lib/modules/4.3.0/build/vmlinux")
    assert not is_kernel_dso("[vdso]") and not is_kernel_dso("[unknown]")
    assert not is_kernel_dso("/lib/libc.so.6") and not is_kernel_dso("[perf-12.map]")
    assert is_kernel_dso(None, 0xFFFFFFFF81000000) and not is_kernel_dso(None, 0x400000)


def test_unknown_frames_keep_their_dso_and_kernel_is_apart():
    text = ("a 1  1.0: 1 cpu-clock:\n"
            "\tffffffff8101 [unknown] ([kernel.kallsyms])\n"
            "\t7f0000001000 [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
            "\t55550000 [unknown] ([unknown])\n"
            "\t7f0000002000 [unknown] (/tmp/perf-1.map)\n\n")
    (p,), _ = parse_perf_script_events(io.BytesIO(text.encode()))
    sp = Symbolizer([]).symbolize(p)
    lines = folded_lines(sp, annotate=True)
    assert lines == ["[perf-1.map];[unknown];[libc.so.6];[kernel.kallsyms]_[k] 1"]
    k = sp.samples[0].stack[0]
    assert k.kernel and k.native and k.module == "[kernel.kallsyms]"


def test_templates_equal_the_plain_frame_parse():
    """The template fast path builds the same RawFrames as the full parse, including ips
    that leave the perf-map entry the template was made from."""
    pmap = parse_perf_map("1000  40  aot_func#0\n1040  40  aot_func#1\n"
                          "2000 30 JS:mix-2-turbofan\n", "/tmp/perf-7.map")
    lines = []
    for ip in range(0xFF0, 0x1090, 3):
        lines.append(f"\t{ip:x} aot_func#0+0x{max(ip - 0x1000, 0):x} (/tmp/perf-7.map)")
    for ip in range(0x1FF0, 0x2040, 5):
        lines.append(f"\t{ip:x} JS:mix-2-turbofan+0x{max(ip - 0x2000, 0):x} (/tmp/perf-7.map)")
    for off in range(0, 300, 7):
        lines.append(f"\t{0x7f00 + off:x} read+0x{off:x} (/lib/libc.so.6)")
        lines.append(f"\t{0xffff0000 + off:x} clear_page+0x{off:x} ([kernel.kallsyms])")
    fast = _FrameParser(_MapSet([pmap]), PerfScriptStats())
    slow = _FrameParser(_MapSet([pmap]), PerfScriptStats())
    templates: dict = {}
    for caller in (False, True):
        for line in lines:
            b = line.encode()
            assert fast.parse(b, caller, 7, templates) == slow.parse_slow(b, caller, 7)[0], line
    assert templates


def _records_text(n: int) -> bytes:
    import random
    rng = random.Random(3)
    out = []
    for i in range(n):
        leaf = rng.randrange(0x1000, 0x10C0)
        out.append(f"iwasm 7 [00{i % 2}] {i}.000100: {1 + i % 3} cpu-clock:\n"
                   f"\t{leaf:x} aot_func#{(leaf - 0x1000) // 0x40}+0x{(leaf - 0x1000) % 0x40:x}"
                   " (/tmp/perf-7.map)\n"
                   + (f"\t{0x1041 + rng.randrange(3):x} aot_func#1+0x1 (/tmp/perf-7.map)\n"
                      if i % 5 else "")
                   + "\t2fb0f invoke_native+0x1cf (/usr/local/bin/iwasm)\n\n"
                   + ("\n" if i % 7 == 3 else ""))          # stray blank lines
    return "".join(out).encode()


def speedscope_runs(profile) -> list:
    """Per speedscope profile: (stack names, weight) runs, consecutive equal stacks merged."""
    doc = speedscope_document(profile)
    frames = doc["shared"]["frames"]
    out = []
    for pr in doc["profiles"]:
        runs: list = []
        for stack, w in zip(pr["samples"], pr["weights"]):
            names = [frames[i]["name"] for i in stack]
            if runs and runs[-1][0] == names:
                runs[-1][1] += w
            else:
                runs.append([names, w])
        out.append((pr["name"], runs))
    return out


@pytest.mark.parametrize("limit", [6, 60, 50_000])
@pytest.mark.parametrize("path", ["records", "columns"])
@pytest.mark.parametrize("pids", [1, 2])
def test_streaming_aggregate_equals_the_plain_path(limit, path, pids, monkeypatch):
    """Bounded caches (here flushed every few lines), the per-sample and the columnar path,
    one or several perf maps: never a different answer than the plain parse."""
    import wasmprof.ingest.perf_script as ps
    monkeypatch.setattr(ps, "_CHUNK", 1 << 13)          # many chunks
    text = "1000  40  aot_func#0\n1040  40  aot_func#1\n1080  40  aot_func#2\n"
    maps = [parse_perf_map(text, f"/tmp/perf-{7 + k}.map") for k in range(pids)]
    data = _records_text(500)
    if pids == 2:   # the second half of the samples from process 8, its own map
        half = data.index(b"iwasm 7 [000] 250.")
        data = data[:half] + data[half:].replace(b"iwasm 7 ", b"iwasm 8 ").replace(
            b"perf-7.map", b"perf-8.map")
    (p,), _ = parse_perf_script_events(io.BytesIO(data), perf_maps=maps)
    plain = Symbolizer([]).symbolize(p)
    for weight in ("samples", "period"):
        reader = PerfScriptReader(perf_maps=maps, cache_limit=limit)
        reader.chain_bytes = limit * 40
        agg = ProfileAggregator(Symbolizer([]), weight=weight, cache_limit=limit,
                                timeline=True)
        if path == "records":
            agg.add_records(reader.records(io.BytesIO(data)), source="x")
        else:
            kinds = []
            batches = reader.batches

            def spy(stream):
                for kind, batch in batches(stream):
                    kinds.append(kind)
                    yield kind, batch
            reader.batches = spy
            agg.add_reader(reader, io.BytesIO(data), source="x")
            assert "cols" in kinds
        (a,) = agg.results()
        if weight == "samples":
            assert folded_lines(a) == folded_lines(plain)
            assert folded_lines(a, group_by="thread") == folded_lines(plain, group_by="thread")
            assert a.sample_count == 500 and a.total == 500
            # the time order kept by the stream is the recording's
            assert speedscope_runs(a) == speedscope_runs(plain)
        else:
            assert a.total == sum(s.period for s in p.samples) and a.unit == "nanoseconds"
        assert a.timeline is not None and sum(a.timeline.weights) == a.total
        assert (a.start, a.end) == (p.start, p.end)
        assert reader.stats.samples == 500


def _perf_record(tmp_path: Path) -> Path | None:
    perf = shutil.which("perf")
    if perf is None:
        return None
    data = tmp_path / "ls.data"
    r = subprocess.run([perf, "record", "-F", "999", "-g", "-o", str(data), "--", "sh", "-c",
                        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"],
                       capture_output=True, text=True)
    return data if r.returncode == 0 and data.exists() else None


@pytest.mark.parametrize("fields", [
    None, "comm,tid,time,event,ip,sym,dso", "tid,time,period,event,ip,sym",
    "comm,pid,tid,time,period,event,ip,sym,dso", "comm,tid,event,ip,sym,dso",
    "time,event,ip,sym,dso", "comm,tid,time,ip,sym,dso", "comm,tid,time,event,ip,sym,dso,srcline",
    "-G",
])
def test_live_perf_script_field_orders(tmp_path, fields):
    data = _perf_record(tmp_path)
    if data is None:
        pytest.skip("perf record cannot record here (not installed or not permitted)")
    base = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True).stdout
    args = [] if fields is None else ["-G"] if fields == "-G" else ["-F", fields]
    out = subprocess.run(["perf", "script", "-i", str(data), *args], capture_output=True).stdout
    (p0,), _ = parse_perf_script_events(io.BytesIO(base))
    profiles, stats = parse_perf_script_events(io.BytesIO(out))
    assert stats.skipped_blocks == 0
    assert sum(len(p.samples) for p in profiles) == len(p0.samples) > 10
    p = profiles[0]
    if fields is None or "time" in (fields or "") or fields == "-G":
        assert [s.timestamp for s in p.samples] == [s.timestamp for s in p0.samples]
    if fields != "-G":
        assert [len(s.stack) for s in p.samples] == [len(s.stack) for s in p0.samples]
    if "period" in (fields or "") or fields in (None, "-G"):
        assert [s.period for s in p.samples] == [s.period for s in p0.samples]
    assert all(f.space in (AddressSpace.NATIVE, AddressSpace.PERF)
               for s in p.samples for f in s.stack)


@pytest.mark.parametrize("frame", ["aot_func#3+0xzz", "aot_func#12345678901+0x10"])
def test_malformed_aot_frames_are_refused(frame):
    from wasmprof.errors import LogFormatError
    text = f"iwasm 7  1.5: 1 cpu-clock:\n\t41399708 {frame} (/tmp/perf-7.map)\n\n".encode()
    with pytest.raises(LogFormatError) as e:
        parse_perf_script_events(io.BytesIO(text))
    assert frame in str(e.value)
