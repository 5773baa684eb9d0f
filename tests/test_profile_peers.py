"""The peers' own test corpora, read by wasmprof (Done-when of issue 14).

**FlameGraph** (13 real perf scripts, ``tests/data/peers/flamegraph``): wasmprof's folded
output (``--group-by process --weight period``) equals the expected
``stackcollapse-perf.pl --pid`` output, per stack and count, after these documented naming
differences (applied to OUR side, :func:`as_flamegraph`):

1. root frame: FlameGraph prints ``comm-pid`` and ``comm-?`` when perf printed no pid, with
   spaces in ``comm`` as ``_``; wasmprof prints ``comm-pid``, or ``comm`` alone.
2. unnamed frames: both print ``[dso basename]``; FlameGraph doubles the brackets of a
   bracketed DSO (``[[kernel.kallsyms]]``), wasmprof does not (``[kernel.kallsyms]``).
3. argument lists and quotes: FlameGraph cuts a name at its first ``(`` (except
   ``(anonymous namespace)`` and Go's ``pkg.(*T).M``) and deletes ``"`` and ``'``; wasmprof
   keeps the names perf printed.
4. a file without a final blank line: FlameGraph drops its last sample; wasmprof keeps it.
5. a frame line with no symbol at all (``7f1e2215d058  (/lib/.../libc-2.15.so)``): FlameGraph
   makes it a frame named `` `` (one space), wasmprof ``[libc-2.15.so]`` (like ``[unknown]``).

Java's ``L`` class prefix needs no rule: the expected files (recorded before FlameGraph's
Java tidying) keep it, and so does wasmprof.

**speedscope** (7 samples): per thread, the profiles speedscope's importer builds (its
snapshot: profile names, every frame's self and total weight, the time-order stacks and
their durations) equal what we compute from wasmprof's parse with speedscope's own weighting
rule (each sample weighs from the midpoint with its predecessor to the midpoint with its
successor; the first timed event only). ``rust-mangled`` has no snapshot: its per-thread
sample counts are checked against the headers.
"""

from __future__ import annotations

import gzip
import io
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from wasmprof.aggregate import ProfileAggregator
from wasmprof.flamegraph.folded import folded_lines
from wasmprof.ingest.perf_script import PerfScriptReader, parse_perf_script_events
from wasmprof.profiles import Symbolizer, process_label

PEERS = Path(__file__).parent / "data" / "peers"
FG = PEERS / "flamegraph"
SS = PEERS / "speedscope"
FG_INPUTS = sorted(p.name[: -len(".txt.gz")] for p in FG.glob("perf-*.txt.gz"))
SS_INPUTS = sorted(p.name[: -len(".linux-perf.txt.gz")] for p in SS.glob("*.linux-perf.txt.gz"))


def read_gz(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def test_the_corpora_are_all_here():
    assert len(FG_INPUTS) == 13 and len(SS_INPUTS) == 7


# --- FlameGraph -------------------------------------------------------------------------

def _fg_tidy(name: str) -> str:
    if not re.search(r"\.\(.*\)\.", name):
        name = re.sub(r"\((?!anonymous namespace\)).*", "", name)
    return name.replace('"', "").replace("'", "")


def as_flamegraph(line: str, roots: dict[str, str], blank: set[str]) -> tuple[str, int]:
    """One of OUR folded lines in FlameGraph's naming (rules 1-3 and 5 of the module doc;
    ``blank``: labels of DSOs whose frames perf printed without any symbol)."""
    stack, _, count = line.rpartition(" ")
    root, *frames = stack.split(";")
    out = [roots[root]]
    for f in frames:
        if f in blank:
            f = " "
        elif f.startswith("[kernel") or f in ("[vdso]",):
            f = f"[{f}]"
        out.append(_fg_tidy(f))
    return ";".join(out), int(count)


def symbolless_dsos(data: bytes) -> set[str]:
    """``[basename]`` of DSOs whose frame lines have no symbol at all (rule 5); such a DSO
    must have no ``[unknown]`` lines, or the two forms could not be told apart here."""
    blank = {m[1].decode().rsplit("/", 1)[-1]
             for m in re.finditer(rb"(?m)^\s*[0-9a-f]+ {2,}\((.*)\)$", data)}
    unknown = {m[1].decode().rsplit("/", 1)[-1]
               for m in re.finditer(rb"(?m)^\s*[0-9a-f]+ \[unknown\] \((.*)\)$", data)}
    assert not blank & unknown
    return {f"[{b}]" for b in blank}


def wasmprof_folded(data: bytes, *, drop_last: bool) -> tuple[Counter, dict]:
    reader = PerfScriptReader(source="peer")
    records = list(reader.records(io.BytesIO(data)))
    if drop_last:                                      # rule 4
        records = records[:-1]
    agg = ProfileAggregator(Symbolizer([]), weight="period")
    agg.add_records(records, source="peer")
    profiles = agg.results()
    first = profiles[0]
    # rule 1: our process root -> FlameGraph's, from what perf printed
    roots = {}
    for s in first.samples:
        comm = s.thread.rpartition("/")[0]
        roots[process_label(s)] = comm.replace(" ", "_") + "-" + s.labels.get("pid", "?")
    got: Counter = Counter()
    blank = symbolless_dsos(data)
    for line in folded_lines(first, group_by="process"):
        k, c = as_flamegraph(line, roots, blank)
        got[k] += c
    return got, {"events": [p.labels.get("event") for p in profiles], "reader": reader}


@pytest.mark.parametrize("name", FG_INPUTS)
def test_flamegraph_corpus_per_stack_counts(name):
    data = read_gz(FG / f"{name}.txt.gz")
    got, info = wasmprof_folded(data, drop_last=not data.endswith(b"\n\n"))
    want: Counter = Counter()
    for line in (FG / "results" / f"{name}-collapsed-pid.txt").read_text().splitlines():
        k, _, c = line.rpartition(" ")
        want[k] += int(c)
    assert got == want
    assert info["reader"].stats.skipped_blocks == 0


def test_flamegraph_corpus_details():
    # two events: one profile each, the first (instructions, 333 samples) is FlameGraph's
    data = read_gz(FG / "perf-cycles-instructions-01.txt.gz")
    profiles, stats = parse_perf_script_events(io.BytesIO(data))
    assert [(p.labels["event"], len(p.samples)) for p in profiles] == [
        ("instructions", 333), ("cycles", 111)]
    assert any("events in the recording" in n for n in stats.notes)
    # page faults weigh 1..72 each: 23 samples, 200 faults with --weight period
    data = read_gz(FG / "perf-java-faults-01.txt.gz")
    (p,), _ = parse_perf_script_events(io.BytesIO(data))
    periods = [s.period for s in p.samples]
    assert len(periods) == 23 and sum(periods) == 200 and min(periods) == 1 \
        and max(periods) == 72
    # headers without a time field are read (4 of the 13 files)
    untimed = []
    for name in FG_INPUTS:
        r = PerfScriptReader()
        n = sum(1 for _ in r.records(io.BytesIO(read_gz(FG / f"{name}.txt.gz"))))
        if r.stats.untimed:
            untimed.append((name, r.stats.untimed == n))
    assert sorted(untimed) == [("perf-funcab-pid-01", True), ("perf-java-stacks-02", True),
                               ("perf-js-stacks-01", True), ("perf-vertx-stacks-01", True)]
    # unknown frames keep their DSO and kernel frames are marked
    data = read_gz(FG / "perf-numa-stacks-01.txt.gz")
    (p,), _ = parse_perf_script_events(io.BytesIO(data))
    sp = Symbolizer([]).symbolize(p)
    labels = {frame.module: frame for s in sp.samples for frame in s.stack
              if frame.function is None and frame.native}
    assert "/tmp/perf-10939.map" in labels
    kernel = [f for s in sp.samples for f in s.stack if f.kernel]
    assert kernel and all(f.module == "[kernel.kallsyms]" for f in kernel)
    assert not any(f.kernel for s in sp.samples for f in s.stack
                   if f.module and f.module.startswith("/"))


# --- speedscope -------------------------------------------------------------------------

def parse_snapshot() -> dict[str, list[dict]]:
    """The snapshot's profiles per sample file: name, frames (key → self, total), stacks."""
    text = read_gz(SS / "linux-tools-perf.test.ts.snap.gz").decode()
    out: dict[str, list[dict]] = {}
    for m in re.finditer(r"exports\[`importFromLinuxPerf (\S+?)(?:\.linux-perf\.txt) (\d+)`\] = `"
                         r"\n(\{.*?\n\})\n`;", text, re.S):
        body = m[3]
        frames = {}
        for fm in re.finditer(r'"key": "(.*?)",\n.*?"name": "(.*?)",\n\s+"selfWeight": (\S+),'
                              r'\n\s+"totalWeight": (\S+),', body, re.S):
            frames[fm[1]] = (fm[2], float(fm[3]), float(fm[4]))
        name = re.search(r'^  "name": "(.*)",$', body, re.M)[1]
        stacks = re.findall(r'^    "(.*) (\S+)",$', body, re.M)
        out.setdefault(m[1], []).append({"name": name, "frames": frames, "stacks": stacks})
    return out


SNAPSHOT_NAME = {"simple-with-pid": "simple-with-pids"}   # the snapshot's name for the file


def speedscope_name(sample) -> str:
    comm, _, tid = sample.thread.rpartition("/")
    parts = [comm]
    if int(sample.labels.get("pid", 0)):
        parts.append(f"pid: {sample.labels['pid']}")
    if int(tid):
        parts.append(f"tid: {tid}")
    return " ".join(parts)


def frame_key(f) -> tuple[str, str]:
    """(speedscope key, display name) of one of our host frames."""
    file = f.module or "[unknown]"
    sym = f.function or "[unknown]"
    return f"{sym} ({file})", (f"??? ({file})" if f.function is None else sym)


def _duration(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) * 1e-3
    if text.endswith("µs"):
        return float(text[:-2]) * 1e-6
    if text.endswith("ns"):
        return float(text[:-2]) * 1e-9
    if text.endswith("s"):
        return float(text[:-1])
    return float(text.replace(",", ""))


def speedscope_profiles(data: bytes) -> dict[str, dict]:
    """Per thread: weighted samples as speedscope's importer would build them from OUR
    parse (first timed event, midpoint weights, zero weights dropped)."""
    profiles, _ = parse_perf_script_events(io.BytesIO(data))
    timed = [p for p in profiles if any(s.timestamp is not None for s in p.samples)]
    sp = Symbolizer([]).symbolize(timed[0])
    by_thread: dict[str, list] = {}
    for s in sp.samples:
        if s.timestamp is not None:
            by_thread.setdefault(speedscope_name(s), []).append(s)
    out = {}
    for name, samples in by_thread.items():
        weights = []
        start = central = samples[0].timestamp
        for s in samples[1:]:
            end = (s.timestamp + central) / 2
            weights.append(end - start)
            start, central = end, s.timestamp
        weights.append(central - start if any(w for w in weights) else 1)
        if len(samples) == 1:
            weights = [1]
        kept = [(s, w) for s, w in zip(samples, weights) if w != 0]
        frames: dict[str, list] = {}
        for s, w in kept:
            keys = [frame_key(f) for f in reversed(s.stack)]
            for k, disp in dict.fromkeys(keys):
                frames.setdefault(k, [disp, 0.0, 0.0])[2] += w
            frames[keys[-1][0]][1] += w
        out[name] = {"samples": kept, "frames": frames}
    return out


def time_order_stacks(kept: list) -> list[tuple[str, float]]:
    """speedscope's time-order dump (the snapshot's ``stacks``): one line per run of
    consecutive samples with the same stack (its append-order call tree reuses the same
    nodes for them and ``forEachCall`` emits a line whenever the open stack changes)."""
    lines: list[list] = []
    prev = None
    for s, w in kept:
        keys = tuple(frame_key(f) for f in reversed(s.stack))
        if keys == prev:
            lines[-1][1] += w
        else:
            lines.append([";".join(d for _, d in keys), w])
            prev = keys
    return [(a, b) for a, b in lines]


@pytest.mark.parametrize("name", [n for n in SS_INPUTS if n != "rust-mangled"])
def test_speedscope_corpus_matches_its_snapshot(name):
    snap = parse_snapshot()[SNAPSHOT_NAME.get(name, name)]
    ours = speedscope_profiles(read_gz(SS / f"{name}.linux-perf.txt.gz"))
    assert sorted(ours) == sorted(p["name"] for p in snap)
    for want in snap:
        got = ours[want["name"]]
        assert set(got["frames"]) == set(want["frames"]), want["name"]
        for key, (disp, self_w, total_w) in want["frames"].items():
            g = got["frames"][key]
            assert g[0] == disp
            assert math.isclose(g[1], self_w, rel_tol=1e-9, abs_tol=1e-12), (key, g, self_w)
            assert math.isclose(g[2], total_w, rel_tol=1e-9, abs_tol=1e-12), (key, g, total_w)
        lines = time_order_stacks(got["samples"])
        assert [s for s, _ in lines] == [s for s, _ in want["stacks"]]
        for (_, value), (_, text) in zip(lines, want["stacks"]):
            shown = _duration(text)
            assert math.isclose(value, shown, rel_tol=0.006, abs_tol=1e-9) or \
                (text.replace(",", "").isdigit() and value == shown), (value, text)


def test_speedscope_rust_mangled_sample_counts():
    data = read_gz(SS / "rust-mangled.linux-perf.txt.gz")
    want = Counter(m[1].decode() + "/" + m[2].decode()
                   for m in re.finditer(rb"(?m)^(\S+)\s+(\d+)\s+\d+\.\d+:", data))
    (p,), _ = parse_perf_script_events(io.BytesIO(data))
    assert Counter(s.thread for s in p.samples) == want and sum(want.values()) == 96
    assert p.labels["event"] == "task-clock:ppp"
    names = {f.printed_name for s in p.samples for f in s.stack}
    assert any(n and n.startswith("_RINvNtCs") for n in names)   # no +0x offsets left
    assert not any(n and "+0x" in n for n in names)
