"""Parsers of plugin health data: Envoy's Wasm stats (upstream and Higress names, as Envoy's
Prometheus handler writes them) and WAMR ``Memory consumption summary`` blocks (in the
format of the fixture dumps' stdout: bh_log-prefixed lines, other threads interleaved).

Ground truth for the stats: ``prometheus_client`` parsing the *whole* page (every value we
keep must be the value the library reads for that name; the byte pre-filter must not lose
or change anything)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

from envoy_stats import PAGE, Gateway, memory_block
from wasmprof.errors import LogFormatError
from wasmprof.ingest.envoy_stats import parse_envoy_stats, sanitize, wasm_lines
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.ingest.wamr_memory import (MemoryBlockScanner, block_samples, block_times,
                                         parse_memory_blocks, tap)
from wasmprof.model import HealthMetric as M


def by_key(reading):
    return {(s.plugin, s.runtime, s.thread, s.metric): s.value for s in reading.samples}


def library_values(text: bytes) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[s.name] = s.value
    return out


@pytest.fixture
def higress():
    g = Gateway(flavor="higress", noise_clusters=40)
    g.add("key-auth")
    g.add("higress-system.bot-detect", threads=["main_thread", "worker_0", "worker_1"])
    g.grow("key-auth", 3, thread="worker_1")
    g.crash("higress-system.bot-detect")
    g.crash("higress-system.bot-detect")
    g.plugins["key-auth"].recover_errors = 2
    g.plugins["key-auth"].reclaims = 5
    g.plugins["key-auth"].crashed = 1
    return g


def test_higress_names_map_to_plugin_runtime_thread_series(higress):
    text = higress.render()
    r = parse_envoy_stats(text)
    got = by_key(r)
    assert r.unmapped == []
    assert r.plugins == ["higress_system_bot_detect", "key_auth"]     # Envoy's sanitized names
    assert got[("key_auth", "v8", "worker_0", M.MEMORY_BYTES)] == 16 * PAGE
    assert got[("key_auth", "v8", "worker_1", M.MEMORY_BYTES)] == 19 * PAGE
    for t in ("main_thread", "worker_0", "worker_1"):
        assert got[("higress_system_bot_detect", "v8", t, M.MEMORY_BYTES)] == 16 * PAGE
    assert got[("higress_system_bot_detect", "v8", "", M.CRASHES)] == 2
    assert got[("higress_system_bot_detect", "v8", "", M.REBUILDS)] == 2
    assert got[("higress_system_bot_detect", "v8", "", M.RECOVERIES)] == 2
    assert got[("key_auth", "v8", "", M.RECOVER_ERRORS)] == 2
    assert got[("key_auth", "v8", "", M.RECLAIMS)] == 5          # the histogram's count
    assert got[("key_auth", "v8", "", M.CRASHED)] == 1          # the `crash` gauge, not crash_total
    assert got[("key_auth", "v8", "", M.CRASHES)] == 0
    assert got[("", "v8", "", M.VM_ACTIVE)] == 5
    assert got[("", "v8", "", M.VM_CREATED)] == 7
    assert got[("", "", "", M.UPTIME_SECONDS)] == 1000
    assert not any(s.plugin.startswith("remote_load") for s in r.samples)
    assert r.wasm_lines < text.count(b"\n") / 2         # the noise never reached the parser


def test_upstream_names(higress):
    g = Gateway(flavor="upstream")
    g.add("key-auth")
    g.add("rate.limit")
    g.grow("key-auth", 4)
    g.crash("rate.limit")
    g.plugins["rate.limit"].reload_failures = 1
    got = by_key(parse_envoy_stats(g.render()))
    assert got[("key_auth", "", "", M.MEMORY_BYTES)] == 2 * 20 * PAGE
    assert got[("rate_limit", "", "", M.REBUILDS)] == 1
    assert got[("rate_limit", "", "", M.RELOAD_FAILURES)] == 1
    assert got[("", "v8", "", M.MEMORY_BYTES)] == (40 + 32) * PAGE
    assert got[("", "v8", "", M.VM_CREATED)] == 5
    assert got[("", "", "", M.VM_ACTIVE)] == 4                    # wasm.wasm_vm_count


@pytest.mark.parametrize("flavor", ["higress", "upstream"])
def test_every_kept_value_is_what_prometheus_client_reads_from_the_whole_page(flavor):
    g = Gateway(flavor=flavor, noise_clusters=60, seed=7)
    g.add("key-auth")
    g.add("waf")
    g.grow("waf", 9)
    g.crash("key-auth")
    text = g.render()
    truth = library_values(text)
    r = parse_envoy_stats(text)
    assert len(r.samples) >= 10
    for s in r.samples:
        assert truth[s.name] == s.value, s.name
    # and every Wasm name of the page is either mapped, known-ignored or reported unmapped
    wasm_names = {n for n in truth if n.startswith("envoy_wasm_")} | {"envoy_server_uptime"}
    assert {s.name for s in r.samples} <= wasm_names
    assert wasm_lines(text).count(b"\n") == sum(1 for line in text.splitlines()
                                                if b"envoy_wasm" in line or b"uptime" in line)


def test_unknown_wasm_metric_is_reported_not_dropped():
    text = (b"# TYPE envoy_wasm_envoy_wasm_runtime_v8_plugin_x_crash_total counter\n"
            b"envoy_wasm_envoy_wasm_runtime_v8_plugin_x_crash_total{} 4\n"
            b"# TYPE envoy_wasm_something_new gauge\nenvoy_wasm_something_new{} 1\n")
    r = parse_envoy_stats(text)
    assert by_key(r) == {("x", "v8", "", M.CRASHES): 4}
    assert r.unmapped == ["envoy_wasm_something_new"]


def test_tag_extracted_labels_win_and_untyped_counters():
    text = (b'envoy_wasm_envoy_wasm_runtime_wamr_plugin_crash_total{plugin_name="key-auth"} 3\n'
            b'envoy_wasm_envoy_wasm_runtime_wamr_plugin_memory_size{plugin_name="key-auth",'
            b'thread="worker_3"} 131072\n')
    got = by_key(parse_envoy_stats(text))
    assert got[("key-auth", "wamr", "", M.CRASHES)] == 3
    assert got[("key-auth", "wamr", "worker_3", M.MEMORY_BYTES)] == 131072


def test_plugin_thread_split_prefers_known_plugins():
    base = "envoy_wasm_envoy_wasm_runtime_v8_plugin_"
    text = "".join([
        f"# TYPE {base}cache_worker_crash_total counter\n{base}cache_worker_crash_total{{}} 0\n",
        f"{base}cache_worker_worker_0_memory_size{{}} 65536\n",       # known plugin
        f"{base}lonely_main_thread_memory_size{{}} 131072\n",         # dispatcher name
        f"{base}oddname_memory_size{{}} 196608\n",                    # cannot split
    ]).encode()
    r = parse_envoy_stats(text)
    got = by_key(r)
    assert got[("cache_worker", "v8", "worker_0", M.MEMORY_BYTES)] == 65536
    assert got[("lonely", "v8", "main_thread", M.MEMORY_BYTES)] == 131072
    odd = [s for s in r.samples if s.plugin == "oddname"]
    assert odd and odd[0].thread == "" and "could not split" in odd[0].note


def test_bad_stats_text_is_refused_with_the_line():
    with pytest.raises(LogFormatError) as e:
        parse_envoy_stats(b"envoy_wasm_x{} 1\nenvoy_wasm_broken{le=\"1\" 7\n", source="gw")
    assert e.value.source == "gw" and "envoy_wasm_broken" in (e.value.found or "")


def test_sanitize_is_envoys():
    assert sanitize("higress-system.key-auth@v1") == "higress_system_key_auth_v1"


# -- WAMR memory blocks -----------------------------------------------------------------

def fixture_dump(data_dir) -> str:
    return (data_dir / "dumps" / "crash_oob.O2.load.classic.log").read_text()


def test_block_after_a_fixture_dump_with_plugin_and_log_time(data_dir):
    envoy = format_record(LineFormat.ENVOY, "wasm log key-auth key_root key_vm: dump memory",
                          timestamp="2025-11-03 08:14:20.100", level="info",
                          location="source/extensions/common/wasm/context.cc:1192")
    text = fixture_dump(data_dir) + envoy + "\n" + memory_block(uptime=605.123, memories=20 * PAGE)
    blocks = parse_memory_blocks(text)
    assert len(blocks) == 1
    b = blocks[0]
    assert (b.linear_memory, b.tid, b.partial) == (20 * PAGE, "7F3A2C1FE640", False)
    assert b.plugin == "key-auth" and "wasm log" in b.plugin_note
    assert b.sections["module"]["aot code"] == 40960
    assert b.totals["aux_stack_used"] is None and b.totals["native_stack_left"] == 245760
    assert b.totals["total"] == (b.sections["module"]["total"] + b.sections["instance"]["total"]
                                 + b.sections["exec_env"]["total"])
    samples = block_samples(blocks, received=1762160000.0)
    mem = [s for s in samples if s.metric is M.MEMORY_BYTES]
    assert mem[0].plugin == "key-auth" and mem[0].runtime == "wamr"
    assert mem[0].ts == pytest.approx(1762157660.1)        # the Envoy record's time (UTC)
    assert {s.metric for s in samples} >= {M.WAMR_TOTAL_BYTES, M.WAMR_STACK_USED_BYTES}


def test_interleaved_threads_and_foreign_lines():
    a = memory_block(uptime=100.0, tid="AAAA", memories=10 * PAGE).splitlines(keepends=True)
    b = memory_block(uptime=100.5, tid="BBBB", memories=30 * PAGE).splitlines(keepends=True)
    mixed = []
    for i in range(max(len(a), len(b))):
        mixed += a[i:i + 1] + b[i:i + 1]
        if i % 5 == 0:
            mixed.append("#03: 0x0042 - $f7\n")              # other stdout output
    blocks = parse_memory_blocks("".join(mixed))
    assert sorted((x.tid, x.linear_memory, x.partial) for x in blocks) == [
        ("AAAA", 10 * PAGE, False), ("BBBB", 30 * PAGE, False)]
    mem = [s for s in block_samples(blocks, received=5000.0) if s.metric is M.MEMORY_BYTES]
    assert {s.plugin for s in mem} == {""} and all("per process" in s.note for s in mem)


def test_block_without_prefix_old_wamr_and_cut_block():
    plain = memory_block(uptime=0, memories=5 * PAGE, native_stack=False, aot=False)
    plain = "\n".join(line.split("]: ", 1)[1] for line in plain.splitlines()) + "\n"
    cut = memory_block(uptime=7.0, tid="CCCC", memories=6 * PAGE).splitlines(keepends=True)[:20]
    blocks = parse_memory_blocks(plain + "".join(cut))
    assert [(x.linear_memory, x.partial) for x in blocks] == [(5 * PAGE, False), (6 * PAGE, True)]
    assert "native_stack_left" not in blocks[0].totals
    assert "input ended" in blocks[1].notes[0]


def test_container_runtime_envelope():
    lines = memory_block(uptime=3.5, memories=8 * PAGE).splitlines()
    text = "".join(f"2025-11-03T08:15:{i % 60:02d}.000000001Z stdout F {line}\n"
                   for i, line in enumerate(lines))
    blocks = parse_memory_blocks(text)
    assert blocks[0].linear_memory == 8 * PAGE and blocks[0].time_note == "time of the header line"


def test_block_times_from_uptimes_across_midnight():
    text = (memory_block(uptime=86399.0, memories=PAGE) + memory_block(uptime=9.0, memories=2 * PAGE)
            + memory_block(uptime=69.0, memories=3 * PAGE))
    times = [t for t, _ in block_times(parse_memory_blocks(text), 10_000.0)]
    assert times == pytest.approx([10_000.0 - 70.0, 10_000.0 - 60.0, 10_000.0])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
def test_chunking_never_changes_the_blocks(cuts):
    text = ("noise line\n" * 3 + memory_block(uptime=10.0, memories=4 * PAGE) + "x\n"
            + memory_block(uptime=20.0, tid="BEEF", memories=7 * PAGE)).encode()
    pieces, pos = [], 0
    for c in cuts:
        pieces.append(text[pos:pos + c])
        pos += c
    pieces.append(text[pos:])
    sc = MemoryBlockScanner()
    passed = b"".join(tap(pieces, sc))
    assert passed == text                                  # the crash scanner sees the same bytes
    got = [(b.linear_memory, b.tid, b.partial, b.line) for b in sc.finish()]
    headers = [i + 1 for i, line in enumerate(text.splitlines()) if b"summary (bytes)" in line]
    assert got == [(4 * PAGE, "7F3A2C1FE640", False, headers[0]),
                   (7 * PAGE, "BEEF", False, headers[1])]


# -- CLI: the same parsers offline ------------------------------------------------------

def test_cli_stats_and_wamr_memory(tmp_path, capfd, higress):
    import gzip
    import json

    import sys

    from wasmprof.cli import main

    def out_of(rc_expected, argv):
        assert main(argv) == rc_expected
        sys.stdout.flush()
        return capfd.readouterr().out

    stats = tmp_path / "stats.txt"
    stats.write_bytes(higress.render())
    out = out_of(0, ["health", "stats", str(stats)])
    assert "key_auth" in out and "worker_1" in out and "memory_bytes" in out
    rows = json.loads(out_of(0, ["health", "stats", str(stats), "--json"]))[0]["samples"]
    assert {(r["plugin"], r["thread"], r["metric"], r["value"]) for r in rows} == {
        (s.plugin, s.thread, str(s.metric), s.value) for s in parse_envoy_stats(higress.render()).samples}
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n")
    assert "0 Wasm series" in out_of(1, ["health", "stats", str(empty)])
    out_of(2, ["health", "stats", "http://127.0.0.1:9/stats/prometheus", "--timeout", "2"])
    out_of(2, ["health", "stats", str(tmp_path / "missing")])
    log = tmp_path / "pod.log.gz"
    log.write_bytes(gzip.compress(memory_block(uptime=1, memories=3 * PAGE).encode()))
    blocks = json.loads(out_of(0, ["health", "wamr-memory", str(log), "--json"]))[0]["blocks"]
    assert [b["linear_memory"] for b in blocks] == [3 * PAGE]
    assert "0 memory block" in out_of(1, ["health", "wamr-memory", str(empty)])
