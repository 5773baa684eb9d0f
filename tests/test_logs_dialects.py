"""Runtime dialects and line formats, on log text written in the real public formats
(formats.md §5; proxy-wasm's V8/WAVM getFailMessage, Envoy backtrace.h, Istio docs)."""

from __future__ import annotations

from wasmprof.ingest.crashlog import scan_crashes, scan_log
from wasmprof.ingest.envelopes import CriPeeler
from wasmprof.ingest.logline import LineFormat, format_record, parse_line
from wasmprof.model import AddressSpace, Crash, Runtime, TrapKind


def crashes_of(text: str) -> list[Crash]:
    return list(scan_crashes([text.encode()], "test.log"))


# -- line prefixes ---------------------------------------------------------------------------
def test_line_prefixes_parse_to_fields():
    env = parse_line("[2025-11-03 08:14:22.517][31][error][wasm] "
                     "[source/extensions/common/wasm/wasm_vm.cc:38] Function: f failed: x")
    assert (env.format, env.timestamp, env.thread, env.level, env.logger, env.location) == (
        LineFormat.ENVOY, "2025-11-03 08:14:22.517", "31", "error", "wasm",
        "source/extensions/common/wasm/wasm_vm.cc:38")
    assert env.message == "Function: f failed: x"
    epoch = parse_line("[Envoy (Epoch 0)] [2020-04-16 01:58:25.271][17][warning][main] "
                       "[external/envoy/source/server/server.cc:513] caught SIGTERM")
    assert (epoch.format, epoch.epoch, epoch.thread, epoch.message) == (
        LineFormat.ENVOY_EPOCH, 0, "17", "caught SIGTERM")
    new = parse_line("2023-04-10T19:25:09.865055Z\terror\tenvoy wasm external/envoy/source/"
                     "extensions/common/wasm/wasm_vm.cc:38\tFunction: a failed: b\tthread=39")
    assert (new.format, new.thread, new.logger, new.message) == (
        LineFormat.ISTIO, "39", "wasm", "Function: a failed: b")
    old = parse_line("2022-05-19T07:12:57.911491Z\terror\tenvoy wasm\tFunction: a failed: b")
    assert (old.format, old.thread, old.logger, old.message) == (
        LineFormat.ISTIO_OLD, None, "wasm", "Function: a failed: b")
    agent = parse_line("2020-04-16T01:58:23.257420Z\tinfo\tWatcher start\twith tab")
    assert (agent.format, agent.message) == (LineFormat.ISTIO_AGENT, "Watcher start\twith tab")
    # the CRI prefix is an envelope (wasmprof.ingest.envelopes), peeled before parse_line
    assert CriPeeler().peel("2024-01-01T00:00:00.123456789Z stdout F #00: 0x0010 - f") == [
        ("#00: 0x0010 - f", None, "stdout")]
    js = parse_line(format_record(LineFormat.ISTIO_JSON, "Function: a failed: b\nline2",
                                  thread="7"))
    assert (js.format, js.thread, js.message, js.extra_lines) == (
        LineFormat.ISTIO_JSON, "7", "Function: a failed: b", ("line2",))
    for text in ("[not a prefix", "2023-04-10T19:25:09Z only", "{\"msg\": 3}", "", "\t\t"):
        assert parse_line(text).format is LineFormat.PLAIN


def test_format_record_round_trips_every_format():
    for fmt in LineFormat:
        if fmt in (LineFormat.PLAIN, LineFormat.ISTIO_AGENT):
            continue
        line = parse_line(format_record(fmt, "hello world", thread="12", level="info",
                                        logger="wasm"))
        assert line.format is fmt and line.message == "hello world"
        if fmt is not LineFormat.ISTIO_OLD:
            assert line.thread == "12"


# -- V8 --------------------------------------------------------------------------------------
ISTIO_GO_PANIC = (
    "2023-04-10T19:25:08.100000Z\tinfo\tenvoy wasm external/envoy/source/extensions/common/"
    "wasm/context.cc:1157\twasm log istio-system.go-filter my_root my_vm: start\tthread=39\n"
    "2023-04-10T19:25:09.865055Z\terror\tenvoy wasm external/envoy/source/extensions/common/"
    "wasm/wasm_vm.cc:38\tFunction: proxy_on_request_body failed: Uncaught RuntimeError: "
    "unreachable\n"
    "Proxy-Wasm plugin in-VM backtrace:\n"
    "  0:  0x10a9 - runtime._panic\n"
    "  1:  0xdcc9 - proxy_on_request_body\tthread=39\n"
    "2023-04-10T19:25:09.900000Z\tinfo\tenvoy main external/envoy/source/server/server.cc:1\t"
    "next\tthread=12\n")


def test_v8_go_panic_istio_new_format():
    [c] = crashes_of(ISTIO_GO_PANIC)
    assert (c.runtime, c.space, c.function, c.thread) == (
        Runtime.V8, AddressSpace.V8, "proxy_on_request_body", "39")
    assert c.message == "Uncaught RuntimeError: unreachable"
    assert c.trap_kind is TrapKind.PANIC                     # unreachable from runtime._panic
    assert c.plugin == "istio-system.go-filter" and (c.root_id, c.vm_id) == ("my_root", "my_vm")
    assert [(f.index, f.offset, f.printed_name) for f in c.raw_frames] == [
        (0, 0x10A9, "runtime._panic"), (1, 0xDCC9, "proxy_on_request_body")]
    assert all(f.space is AddressSpace.V8 for f in c.raw_frames)
    assert not c.partial and len(c.raw) == 4


def test_v8_go_panic_istio_old_format():
    text = ("2022-05-19T07:12:57.911491Z\terror\tenvoy wasm\tFunction: proxy_on_context_create "
            "failed: Uncaught RuntimeError: unreachable\nProxy-Wasm plugin in-VM backtrace:\n"
            "  0:  0xd90 - runtime._panic\n  1:  0x10a47 - proxy_on_context_create\n"
            "2022-05-19T07:12:57.911600Z\tinfo\tenvoy main\tsomething else\n")
    [c] = crashes_of(text)
    assert c.function == "proxy_on_context_create" and c.thread is None
    assert [f.offset for f in c.raw_frames] == [0xD90, 0x10A47]


RUST_PANIC = """\
[2022-07-20 22:00:37.928][36][critical][wasm] [external/envoy/source/extensions/common/wasm/context.cc:1227] wasm log: panicked at 'failed to connect to Redis: operation not supported on this platform', src/lib.rs:74:10
[2022-07-20 22:00:37.928][36][error][wasm] [external/envoy/source/extensions/common/wasm/wasm_vm.cc:39] Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable
Proxy-Wasm plugin in-VM backtrace:
  0:  0x3015a - __rust_start_panic
  1:  0x300d6 - rust_panic
  2:  0x300a6 - _ZN3std9panicking20rust_panic_with_hook17h1c368a27f9b0afe1E
  3:  0x2f69a - _ZN3std9panicking19begin_panic_handler28_$u7b$$u7b$closure$u7d$$u7d$17h8e1f8b682ca33009E
  4:  0x2f5d9 - _ZN3std10sys_common9backtrace26__rust_end_short_backtrace17h7f7da41799766719E
  5:  0x2fd18 - rust_begin_unwind
  6:  0x317ea - _ZN4core9panicking9panic_fmt17hcdb13a4b2416cf82E
  7:  0x338f6 - _ZN4core6result13unwrap_failed17he825aa6f43b16604E
  8:  0x451f - _ZN4core6result19Result$LT$T$C$E$GT$6expect17hd84817813fccb93fE
  9:  0x47da - _ZN6plugin7connect17h80f53ab29bcaeccbE
[2022-07-20 22:00:37.929][36][debug][http] [source/common/http/conn_manager_impl.cc:1] reset
"""


def test_v8_rust_panic_keeps_mangled_names_and_panic_message():
    [c] = crashes_of(RUST_PANIC)
    assert c.trap_kind is TrapKind.PANIC and c.thread == "36"
    assert len(c.raw_frames) == 10
    assert c.raw_frames[2].printed_name == "_ZN3std9panicking20rust_panic_with_hook17h1c368a27f9b0afe1E"
    assert c.raw_frames[9].offset == 0x47DA
    assert c.panic is not None and (c.panic.kind, c.panic.location) == ("rust", "src/lib.rs:74:10")
    assert c.panic.message.startswith("failed to connect to Redis")
    assert c.raw[0].endswith("src/lib.rs:74:10") and c.first_line == 1
    assert c.plugin is None                      # "wasm log:" without ids names no plugin


def test_v8_variants_without_offsets_and_unknown_names():
    text = ("[2024-01-01 00:00:00.000][9][error][wasm] [wasm_vm.cc:38] Function: _initialize "
            "failed: Uncaught Error: restricted_callback\nProxy-Wasm plugin in-VM backtrace:\n"
            "  runtime.poll_oneoff\n  runtime.usleep\n  syscall.init.1\n"
            "[2024-01-01 00:00:00.001][9][error][wasm] [wasm_vm.cc:38] Function: proxy_on_tick "
            "failed: Uncaught RuntimeError: divide by zero\nProxy-Wasm plugin in-VM backtrace:\n"
            "  0:  0x1234 - unknown(function index:12)\n")
    a, b = crashes_of(text)
    assert [f.printed_name for f in a.raw_frames] == ["runtime.poll_oneoff", "runtime.usleep",
                                                      "syscall.init.1"]
    assert all(f.offset is None for f in a.raw_frames) and a.trap_kind is TrapKind.HOST_ERROR
    assert (b.raw_frames[0].func_index, b.raw_frames[0].printed_name) == (12, None)
    assert b.trap_kind is TrapKind.DIVIDE_BY_ZERO


def test_v8_without_name_section_has_no_backtrace():
    [c] = crashes_of("[2024-01-01 00:00:00.000][9][error][wasm] [x.cc:1] Function: "
                     "proxy_on_tick failed: Uncaught RuntimeError: memory access out of bounds\n"
                     "[2024-01-01 00:00:00.000][9][info][main] [x.cc:1] next\n")
    assert c.raw_frames == [] and c.trap_kind is TrapKind.OUT_OF_BOUNDS and not c.partial


def test_epoch_and_json_formats():
    text = ("[Envoy (Epoch 0)] [2020-04-16 01:58:25.271][17][error][wasm] [wasm_vm.cc:38] "
            "Function: proxy_on_tick failed: Uncaught RuntimeError: unreachable\n"
            "Proxy-Wasm plugin in-VM backtrace:\n  0:  0xdbd - runtime._panic\n"
            + format_record(LineFormat.ISTIO_JSON, "Function: proxy_on_log failed: Uncaught "
                            "RuntimeError: unreachable\nProxy-Wasm plugin in-VM backtrace:\n"
                            "  0:  0x103ab - main.anotherCalculation\n"
                            "  1:  0xea15 - proxy_on_request_headers", thread="44") + "\n")
    a, b = crashes_of(text)
    assert (a.thread, [f.offset for f in a.raw_frames]) == ("17", [0xDBD])
    assert (b.thread, b.function, [f.offset for f in b.raw_frames]) == (
        "44", "proxy_on_log", [0x103AB, 0xEA15])


# -- WAVM, Wasmtime ----------------------------------------------------------------------------
def test_wavm_frames_resolve_by_name_only():
    [c] = crashes_of(
        "[2022-02-28 15:00:28.797][7][error][wasm] [source/extensions/common/wasm/wasm_vm.cc:38]"
        " Function: proxy_on_context_create failed: wavm.outOfBoundsMemoryAccess\n"
        "Proxy-Wasm plugin in-VM backtrace:\n  1: wasm!helloworld!runtime._panic+7\n"
        "  2: wasm!helloworld!proxy_on_tick+0\n")
    assert (c.runtime, c.trap_kind) == (Runtime.WAVM, TrapKind.OUT_OF_BOUNDS)
    assert [(f.index, f.module, f.printed_name, f.offset) for f in c.raw_frames] == [
        (1, "helloworld", "runtime._panic", None), (2, "helloworld", "proxy_on_tick", None)]


def test_wasmtime_trap_in_envoy_line():
    [c] = crashes_of(
        "[2026-01-12 09:00:01.002][22][error][wasm] [source/extensions/common/wasm/wasm_vm.cc:38]"
        " Function: proxy_on_request_headers failed: error while executing at wasm backtrace:\n"
        "    0:     0x4a - <unknown>!inner\n    1:     0x52 - mymod!<wasm function 3>\n\n"
        "Caused by:\n    0: memory fault at wasm address 0x11170 in linear memory of size "
        "0x10000\n    1: wasm trap: out of bounds memory access\n"
        "[2026-01-12 09:00:01.003][22][info][main] [x.cc:1] after\n")
    assert (c.runtime, c.space, c.message, c.trap_kind) == (
        Runtime.WASMTIME, AddressSpace.WASMTIME, "out of bounds memory access",
        TrapKind.OUT_OF_BOUNDS)
    assert [(f.offset, f.module, f.printed_name, f.func_index) for f in c.raw_frames] == [
        (0x4A, None, "inner", None), (0x52, "mymod", None, 3)]
    assert not c.partial


def test_wasmtime_cut_before_causes_is_partial():
    [c] = crashes_of("[2026-01-12 09:00:01.002][22][error][wasm] [x.cc:38] Function: f failed: "
                     "error while executing at wasm backtrace:\n    0:     0x4a - m!inner\n")
    assert c.partial and "Caused by" in " ".join(c.notes) and len(c.raw_frames) == 1


# -- Envoy native crash ------------------------------------------------------------------------
def test_envoy_native_crash_istio_and_default():
    istio = (
        "2021-01-03T10:23:14.358626Z\tcritical\tenvoy backtrace\tCaught Segmentation fault, "
        "suspect faulting address 0x28\n"
        "2021-01-03T10:23:14.358645Z\tcritical\tenvoy backtrace\tBacktrace (use tools/"
        "stack_decode.py to get line numbers):\n"
        "2021-01-03T10:23:14.358671Z\tcritical\tenvoy backtrace\tEnvoy version: b45c635f/"
        "1.15.1-dev/Clean/RELEASE/BoringSSL\n"
        "2021-01-03T10:23:14.358855Z\tcritical\tenvoy backtrace\t#0: __restore_rt "
        "[0x7f7614c2c980]\n"
        "2021-01-03T10:23:14.365490Z\tcritical\tenvoy backtrace\t#1: Envoy::Extensions::"
        "Common::Wasm::createWasm() [0x559057a3b1dd]\n")
    [a] = crashes_of(istio)
    assert (a.runtime, a.trap_kind, a.space) == (Runtime.ENVOY_NATIVE, TrapKind.NATIVE_CRASH,
                                                 AddressSpace.NATIVE)
    assert a.message == "Caught Segmentation fault, suspect faulting address 0x28"
    assert [(f.index, f.printed_name, f.offset, f.native) for f in a.raw_frames] == [
        (0, "__restore_rt", 0x7F7614C2C980, True),
        (1, "Envoy::Extensions::Common::Wasm::createWasm()", 0x559057A3B1DD, True)]
    assert len(a.raw) == 5
    default = (
        "[2025-02-11 12:00:00.100][1][critical][backtrace] [./source/server/backtrace.h:127] "
        "Caught Segmentation fault, suspect faulting address 0x0\n"
        "[2025-02-11 12:00:00.100][1][critical][backtrace] [./source/server/backtrace.h:114] "
        "Address mapping: 55f0c4a00000-55f0c7e42000 /usr/local/bin/envoy\n"
        "[2025-02-11 12:00:00.101][5][info][main] [x.cc:1] another thread\n"
        "[2025-02-11 12:00:00.101][1][critical][backtrace] [./source/server/backtrace.h:121] "
        "#0: __restore_rt [0x7f3b2a05a520]\n"
        "[2025-02-11 12:00:00.101][1][critical][backtrace] [./source/server/backtrace.h:123] "
        "#1: [0x40fba0c7]\n")
    [b] = crashes_of(default)
    assert [(f.printed_name, f.offset) for f in b.raw_frames] == [
        ("__restore_rt", 0x7F3B2A05A520), (None, 0x40FBA0C7)]
    assert any("55f0c4a00000" in n for n in b.notes)
    assert any("JIT/AOT" in n for n in b.notes)
    assert b.thread == "1"


def test_native_stderr_form_without_prefix():
    [c] = crashes_of("Caught Aborted, suspect faulting address 0x1\n#0 __restore_rt [0x7f01]\n"
                     "#1 abort [0x7f02]\nunrelated\n")
    assert [f.printed_name for f in c.raw_frames] == ["__restore_rt", "abort"]


def test_scan_log_passes_other_lines_through_verbatim():
    items = list(scan_log([ISTIO_GO_PANIC.encode()], "x"))
    assert [type(i).__name__ for i in items] == ["bytes", "Crash", "bytes"]
    assert items[0].startswith(b"2023-04-10T19:25:08.100000Z") and items[2].endswith(b"thread=12\n")


def test_wamr_dump_logged_through_envoy_lines():
    """Hosts that route WAMR's os_printf into Envoy's logger: every dump line has a prefix."""
    def line(thread: str, msg: str) -> str:
        return format_record(LineFormat.ENVOY, msg, thread=thread, level="error") + "\n"
    text = (line("31", "Function: proxy_on_tick failed: Exception: integer overflow")
            + line("31", "#00: 0x0412 - fail_invariant") + line("17", "other thread")
            + line("31", "#01: 0x03cc - check_cluster") + line("31", "next record of 31")
            + line("17", "#not a frame"))
    [c] = crashes_of(text)
    assert (c.thread, c.trap_kind, c.function) == ("31", TrapKind.INTEGER_OVERFLOW, "proxy_on_tick")
    assert [f.printed_name for f in c.raw_frames] == ["fail_invariant", "check_cluster"]
    assert not c.partial
