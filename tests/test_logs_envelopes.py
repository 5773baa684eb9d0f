"""Envelopes and paste shapes (field.md "What people paste and ship"): every shape gives the
same crashes, frames, plugin and thread as the bare Envoy log; the inputs are written here
from the descriptions (``envelopes.wrap``), never copied from an issue thread."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest import envelopes
from wasmprof.ingest.crashlog import scan_crashes, scan_log
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.model import Crash, Runtime

CTX = "source/extensions/common/wasm/context.cc:1157"
VM = "source/extensions/common/wasm/wasm_vm.cc:38"


def rec(fmt: LineFormat, msg: str, *, thread: str, ms: int, level: str = "error",
        logger: str = "wasm", location: str = VM) -> list[str]:
    ts = f"2025-11-03 08:14:{22 + ms // 1000:02d}.{ms % 1000:03d}"
    return format_record(fmt, msg, timestamp=ts, thread=thread, level=level, logger=logger,
                         location=location).split("\n")


def bare_log(fmt: LineFormat = LineFormat.ISTIO) -> list[str]:
    """A gateway log with one crash of each dialect, threads interleaved, plugin lines and
    the plugins' panic output (a Rust panic, a TinyGo panic, Go's tokens)."""
    lines: list[str] = []
    lines += rec(fmt, "wasm log higress-system.rust-auth ra_root ra_vm: checking token",
                 thread="24", ms=1, level="info", location=CTX)
    lines += rec(fmt, "wasm log higress-system.key-auth ka_root ka_vm: consumer ok",
                 thread="25", ms=2, level="info", location=CTX)
    lines += rec(fmt, "wasm log higress-system.rust-auth ra_root ra_vm: panicked at "
                 "'invalid token_id', src/dispatcher.rs:424:14", thread="24", ms=3,
                 level="critical", location=CTX)
    lines += rec(fmt, "Function: proxy_on_request_headers failed: Uncaught RuntimeError: "
                 "unreachable\nProxy-Wasm plugin in-VM backtrace:\n"
                 "  0:  0x3015a - __rust_start_panic\n  1:  0x300d6 - rust_panic\n"
                 "  2:  0x47da - _ZN6plugin7connect17h80f53ab29bcaeccbE\n"
                 "  3:  0x51b0 - unknown(function index:42)", thread="24", ms=4)
    # TinyGo on thread 26: buffered line to stdout, then the trap
    lines += rec(fmt, "wasm log higress-system.tg-filter tg_root tg_vm: panic: runtime error: "
                 "slice out of range", thread="26", ms=5, level="info", location=CTX)
    lines += rec(fmt, "wasm log higress-system.key-auth ka_root ka_vm: consumer ok",
                 thread="25", ms=6, level="info", location=CTX)
    lines += rec(fmt, "Function: proxy_on_request_body failed: Uncaught RuntimeError: "
                 "unreachable\nProxy-Wasm plugin in-VM backtrace:\n  0:  0x10a9 - runtime._panic"
                 "\n  1:  0xdcc9 - proxy_on_request_body", thread="26", ms=7)
    # WAMR: the Envoy record, its stdout dump with another thread's line inside
    lines += rec(fmt, "Function: proxy_on_request_headers failed: Exception: out of bounds "
                 "memory access", thread="27", ms=8)
    lines += ["", "#00: 0x0000 - buf_load_u32", "#01: 0x03fd - headers_total_size"]
    lines += rec(fmt, "wasm log higress-system.key-auth ka_root ka_vm: consumer ok",
                 thread="25", ms=9, level="info", location=CTX)
    lines += ["#02: 0x0399 - compute_header_bytes", "#03: 0x033c - on_request_headers", ""]
    # Go's runtime on thread 28: one record per print token (stderr), then the trap
    go = ["panic: ", "runtime error: index out of range [5] with length 3", "", "", "goroutine ",
          "1", " [", "running", "]:", "main.handle", "(...)", "\t", "/src/plugin/main.go", ":",
          "42", "", "main.main", "(", ")", "\t", "/src/plugin/main.go", ":", "77", " +", "0x1d",
          ""]
    for k, tok in enumerate(go):
        lines += rec(fmt, f"wasm log higress-system.go-auth ga_root ga_vm: {tok}", thread="28",
                     ms=10 + k, location=CTX)
        if k % 5 == 2:
            lines += rec(fmt, "wasm log higress-system.key-auth ka_root ka_vm: consumer ok",
                         thread="25", ms=10 + k, level="info", location=CTX)
    lines += rec(fmt, "Function: proxy_on_request_headers failed: Uncaught RuntimeError: "
                 "unreachable\nProxy-Wasm plugin in-VM backtrace:\n  0:  0x1a2b - runtime.gopanic"
                 "\n  1:  0x2e4f - main.handle\n  2:  0x3001 - main.main", thread="28", ms=60)
    lines += rec(fmt, "caught SIGTERM", thread="1", ms=70, level="warning", logger="main",
                 location="source/server/server.cc:513")
    return lines


def signature(c: Crash) -> tuple:
    p = c.panic
    return (c.message, str(c.trap_kind), str(c.runtime), c.function, c.thread, c.plugin,
            c.partial, tuple((f.index, f.offset, f.printed_name, f.func_index)
                             for f in c.raw_frames),
            None if p is None else (p.kind, p.message, p.location, p.recovered,
                                    tuple((f.function, f.file, f.line) for f in p.frames)))


def crashes(text: str) -> list[Crash]:
    return list(scan_crashes([text.encode()], "t.log"))


def test_bare_log_crashes_are_what_the_shapes_must_reproduce():
    got = crashes("\n".join(bare_log()) + "\n")
    assert [(c.thread, c.plugin, c.panic.kind if c.panic else None) for c in got] == [
        ("24", "higress-system.rust-auth", "rust"), ("26", "higress-system.tg-filter", "tinygo"),
        ("27", None, None), ("28", "higress-system.go-auth", "go")]
    rust, tinygo, wamr, go = got
    assert rust.panic.location == "src/dispatcher.rs:424:14"
    assert rust.raw_frames[3].func_index == 42 and rust.raw_frames[3].printed_name is None
    assert tinygo.panic.message == "runtime error: slice out of range"
    assert [f.printed_name for f in wamr.raw_frames] == [
        "buf_load_u32", "headers_total_size", "compute_header_bytes", "on_request_headers"]
    assert go.panic.message == "runtime error: index out of range [5] with length 3"
    assert [(f.function, f.file, f.line) for f in go.panic.frames] == [
        ("main.handle", "/src/plugin/main.go", 42), ("main.main", "/src/plugin/main.go", 77)]
    assert not [f for c in got for f in c.raw_frames if "thread" in (f.printed_name or "")]


def test_every_shape_gives_the_bare_logs_crashes():
    bare = bare_log()
    want = [signature(c) for c in crashes("\n".join(bare) + "\n")]
    assert len(want) == 4
    for shape in envelopes.SHAPES:
        text = envelopes.wrap(shape, bare)
        got = crashes(text)
        assert [signature(c) for c in got] == want, shape
        if shape in ("kubectl-prefix", "prefix-timestamps", "fluent-bit", "vector", "loki",
                     "msg-records"):
            assert {c.origin for c in got} == {"higress-gateway-7d9f8-abcde/istio-proxy"}, shape
        if shape not in ("tui", "escaped", "json-string"):
            assert all(n.startswith("log envelope: ") for c in got for n in c.notes[-1:]), shape


def test_plain_logs_are_not_read_as_an_envelope(data_dir):
    for fmt in (LineFormat.ENVOY, LineFormat.ISTIO, LineFormat.ISTIO_JSON, LineFormat.ISTIO_OLD):
        assert envelopes.detect(("\n".join(bare_log(fmt)) + "\n").encode()).kind == "plain", fmt
    for dump in sorted((data_dir / "dumps").glob("*.log"))[:20]:
        assert envelopes.detect(dump.read_bytes()).kind == "plain", dump.name


def test_pods_sharing_thread_ids_stay_apart():
    """kubectl logs -l app=gateway --prefix: two pods, both with thread 24, lines interleaved
    one by one (kubectl writes each pod's lines as they come)."""
    a = [f"[pod/gw-a/istio-proxy] {x}" for x in rec(
        LineFormat.ENVOY, "wasm log ns.plugin-a ra rv: working", thread="24", ms=1, level="info",
        location=CTX) + rec(LineFormat.ENVOY, "Function: proxy_on_request_headers failed: "
                            "Uncaught RuntimeError: unreachable\nProxy-Wasm plugin in-VM "
                            "backtrace:\n  0:  0x10 - a_inner\n  1:  0x20 - a_outer",
                            thread="24", ms=5)]
    b = [f"[pod/gw-b/istio-proxy] {x}" for x in rec(
        LineFormat.ENVOY, "wasm log ns.plugin-b rb vb: working", thread="24", ms=2, level="info",
        location=CTX) + rec(LineFormat.ENVOY, "Function: proxy_on_request_body failed: "
                            "Uncaught RuntimeError: memory access out of bounds\nProxy-Wasm "
                            "plugin in-VM backtrace:\n  0:  0x30 - b_inner\n  1:  0x40 - "
                            "b_outer", thread="24", ms=6)]
    mixed = [x for pair in zip(a, b) for x in pair] + a[len(b):] + b[len(a):]
    got = sorted(crashes("\n".join(mixed) + "\n"), key=lambda c: c.origin)
    assert [(c.origin, c.plugin, [f.printed_name for f in c.raw_frames]) for c in got] == [
        ("gw-a/istio-proxy", "ns.plugin-a", ["a_inner", "a_outer"]),
        ("gw-b/istio-proxy", "ns.plugin-b", ["b_inner", "b_outer"])]


def test_tui_fused_frames_and_expanded_tabs():
    """Copied out of a terminal UI: borders, tabs expanded to spaces, two frames fused on one
    row, the istio thread field separated by spaces."""
    head = ("2023-04-10T19:25:09.865055Z    error    envoy wasm external/envoy/source/extensions"
            "/common/wasm/wasm_vm.cc:38    Function: proxy_on_request_body failed: Uncaught Runtim"
            "eError: unreachable")
    width = 96                                      # the pane: a row wraps after 96 columns
    rows = [f"│ {head[k:k + width].ljust(width)} │" for k in range(0, len(head), width)]
    rows += [f"│ {x.ljust(width)} │" for x in (
        "Proxy-Wasm plugin in-VM backtrace:",
        "  0:  0x10a9 - runtime._panic    1:  0xdcc9 - proxy_on_request_body    thread=39")]
    assert len(rows) == 4 and head[width - 1] != " "
    [c] = crashes("\n".join(rows) + "\n")
    assert [(f.index, f.offset, f.printed_name) for f in c.raw_frames] == [
        (0, 0x10A9, "runtime._panic"), (1, 0xDCC9, "proxy_on_request_body")]
    assert (c.thread, c.function, c.runtime) == ("39", "proxy_on_request_body", Runtime.V8)


def test_partial_lines_are_joined():
    """CRI ``P`` parts and Docker json-file parts (no trailing \\n) of one long line."""
    head = rec(LineFormat.ENVOY, "Function: proxy_on_request_headers failed: Uncaught "
               "RuntimeError: unreachable", thread="31", ms=1)[0]
    cut = head.index("RuntimeError") + 5             # (a trigger cut in two is missed)
    cri = [f"2025-11-03T08:14:22.1Z stderr P {head[:cut]}", f"2025-11-03T08:14:22.1Z stderr F "
           f"{head[cut:]}", "2025-11-03T08:14:22.1Z stderr F Proxy-Wasm plugin in-VM backtrace:",
           "2025-11-03T08:14:22.1Z stderr F   0:  0x10a9 - on_headers"]
    docker = [orjson.dumps({"log": head[:cut], "stream": "stderr", "time": "t"}).decode(),
              orjson.dumps({"log": head[cut:] + "\n", "stream": "stderr", "time": "t"}).decode(),
              orjson.dumps({"log": "Proxy-Wasm plugin in-VM backtrace:\n", "stream": "stderr",
                            "time": "t"}).decode(),
              orjson.dumps({"log": "  0:  0x10a9 - on_headers\n", "stream": "stderr",
                            "time": "t"}).decode()]
    for lines in (cri, docker):
        [c] = crashes("\n".join(lines) + "\n")
        assert (c.function, c.thread, [f.printed_name for f in c.raw_frames]) == (
            "proxy_on_request_headers", "31", ["on_headers"])


def test_loki_documents_are_read_in_time_order():
    lines = rec(LineFormat.ENVOY, "Function: proxy_on_tick failed: Uncaught RuntimeError: "
                "unreachable\nProxy-Wasm plugin in-VM backtrace:\n  0:  0x11 - tick_inner\n"
                "  1:  0x22 - proxy_on_tick", thread="9", ms=1)
    values = [[str(1762157662000000000 + i), x] for i, x in enumerate(lines)][::-1]
    doc = {"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"pod": "gw-0", "container": "istio-proxy"}, "values": values}]}}
    [c] = crashes(orjson.dumps(doc).decode())
    assert [f.printed_name for f in c.raw_frames] == ["tick_inner", "proxy_on_tick"]
    assert c.origin == "gw-0/istio-proxy"


def test_pass_through_keeps_every_other_line():
    """``wasmprof symbolize`` is a filter: lines that are no crash come out as they went in."""
    text = envelopes.wrap("kubectl-prefix", bare_log())
    out = b"".join(x for x in scan_log([text.encode()], "t.log") if isinstance(x, bytes))
    kept = out.decode().splitlines()
    assert "caught SIGTERM" in kept[-1] and kept[-1].startswith("[pod/")
    assert all(x in text for x in kept)


def _record_strategy():
    fmts = st.sampled_from([LineFormat.ENVOY, LineFormat.ENVOY_EPOCH, LineFormat.ISTIO,
                            LineFormat.ISTIO_JSON])
    names = st.from_regex(r"[a-z_][a-z0-9_:.]{0,20}", fullmatch=True)
    frames = st.lists(st.tuples(st.integers(0, 0xFFFFF), names), min_size=1, max_size=6)
    dialect = st.sampled_from(["v8", "wasmtime", "wamr"])
    panic = st.sampled_from([None, "rust-old", "rust-new", "tinygo"])
    return st.tuples(fmts, st.integers(1, 999), frames, dialect, panic,
                     st.sampled_from(["ns.plugin-a", "higress-system.b"]))


def _one_record(fmt, thread, frames, dialect, panic, plugin) -> list[str]:
    t = str(thread)
    lines = rec(fmt, f"wasm log {plugin} r v: started", thread=t, ms=1, level="info",
                location=CTX)
    if panic == "rust-old":
        lines += rec(fmt, f"wasm log {plugin} r v: panicked at 'bad', src/lib.rs:7:9", thread=t,
                     ms=2, level="critical", location=CTX)
    elif panic == "rust-new":
        lines += rec(fmt, f"wasm log {plugin} r v: panicked at src/lib.rs:7:9:\nbad value",
                     thread=t, ms=2, level="critical", location=CTX)
    elif panic == "tinygo":
        lines += rec(fmt, f"wasm log {plugin} r v: panic: nil map", thread=t, ms=2,
                     level="info", location=CTX)
    if dialect == "v8":
        body = "\n".join(f"  {i}:  0x{off:x} - {n}" for i, (off, n) in enumerate(frames))
        lines += rec(fmt, "Function: proxy_on_request_headers failed: Uncaught RuntimeError: "
                     "unreachable\nProxy-Wasm plugin in-VM backtrace:\n" + body, thread=t, ms=3)
    elif dialect == "wasmtime":
        body = "\n".join(f"    {i}:    0x{off:x} - m.wasm!{n}" for i, (off, n) in enumerate(frames))
        lines += rec(fmt, "Function: proxy_on_request_headers failed: error while executing at "
                     "wasm backtrace:\n" + body + "\n\nCaused by:\n    wasm trap: wasm "
                     "`unreachable` instruction executed", thread=t, ms=3)
    else:
        lines += rec(fmt, "Function: proxy_on_request_headers failed: Exception: unreachable",
                     thread=t, ms=3)
        lines += [""] + [f"#{i:02d}: 0x{off:04x} - {n}" for i, (off, n) in enumerate(frames)] + [""]
    lines += rec(fmt, "next request", thread=t, ms=4, level="debug", logger="http",
                 location="source/common/http/conn_manager_impl.cc:1")
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_record_strategy(), st.sampled_from(envelopes.SHAPES))
def test_any_record_in_any_envelope_is_the_bare_records_crash(record, shape):
    bare = _one_record(*record)
    want = [signature(c) for c in crashes("\n".join(bare) + "\n")]
    assert len(want) == 1
    got = crashes(envelopes.wrap(shape, bare))
    assert [signature(c) for c in got] == want


def test_printed_names_without_a_module_are_demangled():
    [c] = [x for x in crashes("\n".join(bare_log()) + "\n") if (x.plugin or "").endswith("rust-auth")]
    CrashSymbolizer([], None).symbolize(c)
    names = [(f.function, str(f.status), f.wasm_index) for f in c.frames]
    assert names[2] == ("plugin::connect", "function-only", None)
    assert names[3] == ("$f42", "index-only", 42)               # unknown(function index:42)


def test_breadcrumbs_point_at_their_lines_across_chunks(monkeypatch):
    """Breadcrumbs come from looking back in the raw chunks; their line numbers stay right
    when the records are in the previous chunk."""
    from wasmprof.ingest import crashlog
    monkeypatch.setattr(crashlog, "CHUNK_SIZE", 1 << 14)
    lines: list[str] = []
    for i in range(60):
        lines += bare_log(LineFormat.ENVOY if i % 2 else LineFormat.ISTIO)
    got = crashes("\n".join(lines) + "\n")
    assert len(got) == 240
    crumbs = [b for c in got for b in c.breadcrumbs]
    assert len(crumbs) >= 60                    # every thread-24 crash: its "checking token"
    # an earlier crash's panic records (Go's tokens, the Rust and TinyGo lines) are that
    # crash's, never a later crash's breadcrumbs (the line-by-line path agrees)
    assert {b.text for b in crumbs} == {"checking token"}
    assert all(b.text in lines[b.line - 1] and b.line < c.first_line
               for c in got for b in c.breadcrumbs)
