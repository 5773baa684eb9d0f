"""The plugin's own panic output, reassembled from its ``wasm log`` records and attached to
the crash that follows it: Go produced live (Go's runtime, ``GOOS=js GOARCH=wasm`` under
node with Go's wasm_exec.js: one record per print token, field.md), Rust and C++ produced
live under ``node:wasi`` (each ``fd_write`` one record, as proxy-wasm does), TinyGo and the
other text shapes written from their runtime's source as field.md describes."""

from __future__ import annotations

import re

import pytest

from plugin_builds import (build_cxx, build_go, build_rust, envoy_records, in_vm_backtrace,
                           run_go, run_wasi)
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.grouping import fingerprint
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.ingest.plugin_output import BREADCRUMBS
from wasmprof.model import Crash, FrameStatus, TrapKind

GO_SOURCE = """\
package main

import "os"

type T struct{ xs []int }

func (t *T) At(i int) int { return t.xs[i] } // AT

//go:noinline
func handle(path string, i int) int {
	t := &T{xs: []int{1, 2, 3}}
	println("handling", path)
	return t.At(i) // HANDLE
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "recover" {
		defer func() {
			if r := recover(); r != nil {
				panic(r) // REPANIC
			}
		}()
	}
	println(handle("/ok", 1))
	println(handle("/boom", 7)) // MAIN
}
"""

RUST_SOURCE = """\
#[inline(never)]
fn parse_token(s: &str) -> u32 {
    let v: Vec<u32> = s.bytes().map(|b| b as u32).collect();
    if v.len() > 3 { panic!("invalid token_id {}", v.len()); } // PANIC
    v[0]
}
#[no_mangle]
pub extern "C" fn on_request(n: u32) -> u32 {
    let s = if n > 2 { "abcdef" } else { "ab" };
    parse_token(s) + n
}
fn main() { println!("{}", on_request(std::env::args().count() as u32 + 5)); }
"""

CXX_SOURCE = """\
#include <exception>
#include <cstdio>
struct Table {
  int cells[4];
  __attribute__((noinline)) int at(int i) {
    if (i >= 4) { std::fputs("table index out of range\\n", stderr); std::terminate(); } // TERM
    return cells[i];
  }
};
__attribute__((noinline)) int on_headers(int n) { Table t{{1, 2, 3, 4}}; return t.at(n); }
int main(int argc, char**) { return on_headers(argc + 5); }
"""

VM = "source/extensions/common/wasm/wasm_vm.cc:38"


def line_of(source: str, marker: str) -> int:
    return next(i for i, x in enumerate(source.splitlines(), 1) if marker in x)


def crashes(lines: list[str]) -> list[Crash]:
    return list(scan_crashes([("\n".join(lines) + "\n").encode()], "gateway.log"))


def interleave(mine: list[str], other: list[str]) -> list[str]:
    """Another thread's records between ours (one every third record)."""
    out, it = [], iter(other)
    for k, line in enumerate(mine):
        out.append(line)
        if k % 3 == 1:
            out.append(next(it, other[-1]))
    return out


def trap(message: str, backtrace: str, thread: str, fmt=LineFormat.ENVOY) -> list[str]:
    return format_record(fmt, f"Function: proxy_on_request_headers failed: {message}\n"
                         f"{backtrace}", timestamp="2025-11-03 08:14:59.001", thread=thread,
                         location=VM).split("\n")


# -- Go, live ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def go_build():
    wasm = build_go(GO_SOURCE)
    return wasm, load_module(wasm)


@pytest.fixture(scope="session")
def go_writes(go_build):
    writes = run_go(go_build[0])
    return [(fd, t) for fd, t in writes if fd in (1, 2)]


def _go_in_vm(module) -> str:
    """V8's in-VM backtrace of the Go plugin, names and offsets of the real module's
    functions (Go's linker writes the name section; field.md: no DWARF)."""
    by_name = {f.name: f for f in module.functions if f.name}
    names = ["runtime.fatalpanic", "runtime.gopanic", "runtime.goPanicIndex", "main.handle",
             "main.main"]
    return "Proxy-Wasm plugin in-VM backtrace:\n" + "\n".join(
        f"{k:3d}:  0x{by_name[n].body_start + 8:x} - {n}" for k, n in enumerate(names))


def test_go_token_per_record_traceback_interleaved_is_one_crash(go_build, go_writes):
    wasm, module = go_build
    assert sum(1 for fd, _ in go_writes if fd == 2) >= 40     # one print token per write
    mine = envoy_records(go_writes, plugin="higress-system.go-auth", prefix=" ga_root ga_vm",
                         thread="24")
    other = envoy_records([(1, f"consumer {i} authenticated") for i in range(40)],
                          plugin="higress-system.key-auth", prefix=" ka_root ka_vm",
                          thread="25")
    log = interleave(mine, other) + trap("Uncaught RuntimeError: unreachable", _go_in_vm(module),
                                         "24")
    [c] = crashes(log)
    assert (c.thread, c.plugin, c.trap_kind, c.partial) == (
        "24", "higress-system.go-auth", TrapKind.PANIC, False)
    p = c.panic
    assert (p.kind, p.language, p.recovered) == ("go", "Go", False)
    assert p.message == "runtime error: index out of range [7] with length 3"
    want = [("main.(*T).At", "example.com/goplug/main.go", line_of(GO_SOURCE, "// AT")),
            ("main.handle", "example.com/goplug/main.go", line_of(GO_SOURCE, "// HANDLE")),
            ("main.main", "example.com/goplug/main.go", line_of(GO_SOURCE, "// MAIN"))]
    assert [(f.function, f.file, f.line) for f in p.frames] == want
    assert p.location == f"example.com/goplug/main.go:{want[0][2]}"
    start = next(k for k, (_, t) in enumerate(go_writes) if t == "panic: ")
    assert p.records == len(go_writes) - start                 # every write from "panic: " on
    crumbs = [b.text for b in c.breadcrumbs]       # the last records before the panic
    assert crumbs and ["handling ", "/ok", "2", "handling ", "/boom"][-len(crumbs):] == crumbs
    assert len(crumbs) <= BREADCRUMBS
    assert not any("consumer" in x for x in c.raw)             # the other thread stays out

    CrashSymbolizer([module], Resolver()).symbolize(c)
    in_vm = [f for f in c.frames if f.status is not FrameStatus.RUNTIME_TEXT]
    text = [f for f in c.frames if f.status is FrameStatus.RUNTIME_TEXT]
    assert [f.function for f in in_vm] == ["runtime.fatalpanic", "runtime.gopanic",
                                           "runtime.goPanicIndex", "main.handle", "main.main"]
    assert all(f.status is FrameStatus.FUNCTION_ONLY for f in in_vm)   # Go Wasm: no DWARF
    assert [(f.function, f.file, f.line) for f in text] == want
    assert all(f.input_index is None and "not DWARF" in f.reason for f in text)
    assert "in-VM frame #3" in text[1].reason                  # main.handle is both
    key = fingerprint(c)
    assert key.basis == "symbols" and key.used[0].function == "main.handle"


def test_go_panic_cut_before_its_trap_is_a_partial_crash(go_writes):
    mine = envoy_records(go_writes, plugin="higress-system.go-auth", prefix=" r v", thread="24",
                         fmt=LineFormat.ISTIO)
    [c] = crashes(mine)
    assert c.partial and c.trap_kind is TrapKind.PANIC and c.panic.partial
    assert c.message == "runtime error: index out of range [7] with length 3"
    assert c.panic.frames and any("no trap after it" in n for n in c.notes)


def test_go_recovered_and_repanicked(go_build):
    writes = [(fd, t) for fd, t in run_go_args(go_build[0], "recover") if fd in (1, 2)]
    log = envoy_records(writes, plugin="ns.go", thread="7") + trap(
        "Uncaught RuntimeError: unreachable", _go_in_vm(go_build[1]), "7")
    [c] = crashes(log)
    assert c.panic.recovered and c.panic.message.startswith("runtime error: index out of range")
    assert c.panic.location == f"example.com/goplug/main.go:{line_of(GO_SOURCE, '// REPANIC')}"


def run_go_args(wasm, *args):
    import plugin_builds
    return plugin_builds._node(plugin_builds._GO_RUNNER.replace(
        "const go = new Go();", f"const go = new Go(); go.argv = ['plugin', {', '.join(map(repr, args))}];"),
        "go-runner-args.js", str(wasm), plugin_builds.go_wasm_exec())


# -- Rust and C++, live --------------------------------------------------------------------
@pytest.fixture(scope="session")
def rust_run():
    wasm = build_rust(RUST_SOURCE)
    writes, stack = run_wasi(wasm)
    assert stack and "RuntimeError: unreachable" in stack
    return wasm, writes, stack


def test_rust_std_panic_written_piecewise_attaches_with_its_location(rust_run):
    wasm, writes, stack = rust_run
    assert len(writes) > 5                              # Rust's raw stderr: a write per piece
    log = envoy_records(writes, plugin="higress-system.rust-auth", thread="31") + trap(
        "Uncaught RuntimeError: unreachable", in_vm_backtrace(stack), "31")
    [c] = crashes(log)
    line = line_of(RUST_SOURCE, "// PANIC")
    assert (c.panic.kind, c.panic.message) == ("rust", "invalid token_id 6")
    assert c.panic.locations[0][:2] == ("plugin.rs", line)
    CrashSymbolizer([load_module(wasm)], Resolver()).symbolize(c)
    parse = next(f for f in c.frames if f.function == "plugin::parse_token")
    assert parse.status is FrameStatus.EXACT and parse.line == line and parse.file.endswith("plugin.rs")
    outer = {f.input_index: f.function for f in c.frames if not f.inlined}
    assert outer[2] == "std::panicking::rust_panic_with_hook"             # demangled
    key = fingerprint(c)
    assert key.used[0].function == "plugin::parse_token"


def test_cxx_terminate_attaches_libcxxabi_message():
    wasm = build_cxx(CXX_SOURCE)
    writes, stack = run_wasi(wasm)
    assert stack and ("libc++abi: " in [t for _, t in writes])      # a write of its own
    log = envoy_records(writes, plugin="higress-system.cxx-auth", thread="12") + trap(
        "Uncaught RuntimeError: unreachable", in_vm_backtrace(stack), "12")
    [c] = crashes(log)
    assert (c.panic.kind, c.panic.language, c.panic.message) == ("cxx", "C++", "terminating")
    assert [b.text for b in c.breadcrumbs] == ["table index out of range"]
    CrashSymbolizer([load_module(wasm)], Resolver()).symbolize(c)
    at = next(f for f in c.frames if f.function == "Table::at(int)")
    assert at.status is FrameStatus.EXACT and at.line == line_of(CXX_SOURCE, "// TERM")
    assert fingerprint(c).used[0].function == "Table::at(int)"


# -- text shapes from the runtimes' sources -------------------------------------------------
TINYGO_TRAP = ("Proxy-Wasm plugin in-VM backtrace:\n  0:  0x10a9 - runtime._panic\n"
               "  1:  0x10f0 - runtime.slicePanic\n  2:  0xdcc9 - proxy_on_request_body")


def _tinygo(message: str, thread: str, ms: int) -> list[str]:
    return (format_record(LineFormat.ISTIO, f"wasm log ns.tg r v: panic: {message}", thread=thread,
                          level="info", timestamp=f"2025-11-03 08:14:22.{ms:03d}").split("\n")
            + trap("Uncaught RuntimeError: unreachable", TINYGO_TRAP, thread, LineFormat.ISTIO))


def test_tinygo_crashes_group_on_their_panic_not_on_runtime_panic():
    a = crashes(_tinygo("runtime error: slice out of range", "3", 1))[0]
    b = crashes(_tinygo("runtime error: slice out of range", "4", 2))[0]
    c = crashes(_tinygo("runtime error: nil pointer dereference", "5", 3))[0]
    for x in (a, b, c):
        CrashSymbolizer([], None).symbolize(x)
        assert x.panic.kind == "tinygo" and x.trap_kind is TrapKind.PANIC
    ka, kb, kc = (fingerprint(x) for x in (a, b, c))
    assert ka.basis == "panic" and ka.fingerprint == kb.fingerprint != kc.fingerprint
    assert ka.title == "panic: runtime error: slice out of range"
    assert {k.function for k in ka.skipped} == {"runtime._panic", "runtime.slicePanic",
                                               "proxy_on_request_body"}


@pytest.mark.parametrize("fmt", [LineFormat.ENVOY, LineFormat.ISTIO, LineFormat.ISTIO_JSON])
def test_rust_173_panic_message_on_the_next_line(fmt):
    """Rust >= 1.73: ``panicked at FILE:L:C:`` then the message, one proxy_log record with a
    newline inside (continuation line; Istio puts ``thread=`` after it)."""
    lines = format_record(fmt, "wasm log ns.r r v: panicked at src/dispatcher.rs:424:14:\n"
                          "invalid token_id 7", thread="39", level="critical").split("\n")
    lines += trap("Uncaught RuntimeError: unreachable", "Proxy-Wasm plugin in-VM backtrace:\n"
                  "  0:  0x3015a - __rust_start_panic", "39", fmt)
    [c] = crashes(lines)
    assert (c.panic.message, c.panic.location, c.thread) == (
        "invalid token_id 7", "src/dispatcher.rs:424:14", "39")


def test_libstdcxx_terminate_and_c_assert():
    cxx = (format_record(LineFormat.ENVOY, "wasm log ns.c r v: terminate called after throwing an "
                         "instance of 'std::out_of_range'", thread="8").split("\n")
           + format_record(LineFormat.ENVOY, "wasm log ns.c r v:   what():  vector::_M_range_check",
                           thread="8").split("\n")
           + trap("Uncaught RuntimeError: unreachable", "Proxy-Wasm plugin in-VM backtrace:\n"
                  "  0:  0x1 - abort", "8"))
    [c] = crashes(cxx)
    assert c.panic.message == "uncaught std::out_of_range: vector::_M_range_check"
    c_assert = format_record(LineFormat.ENVOY, "wasm log ns.c r v: Assertion failed: n < 4 "
                             "(plugin.c: on_headers: 42)", thread="9").split("\n")
    [c] = crashes(c_assert)                      # no trap followed: a crash of its own
    assert (c.panic.kind, c.panic.location, c.partial) == ("c", "plugin.c:42", True)
    assert c.message == "Assertion failed: n < 4 in on_headers"


def test_a_panic_outside_the_window_is_not_attached():
    lines = format_record(LineFormat.ENVOY, "wasm log ns.tg r v: panic: boom", thread="3",
                          level="info").split("\n")
    filler = format_record(LineFormat.ENVOY, "x" * 200, thread="4", level="debug",
                           logger="http").split("\n") * 400          # > 64 KiB of other log
    got = crashes(lines + filler + trap("Uncaught RuntimeError: unreachable",
                                        TINYGO_TRAP, "3"))
    assert [(c.partial, c.panic is not None) for c in got] == [(True, True), (False, False)]
    assert got[1].trap_kind is TrapKind.PANIC                  # from runtime._panic, as before


def test_go_traceback_in_plain_stderr():
    """A runtime's own stderr (wasmtime, node): the panic is plain text before the trap."""
    text = ["panic: runtime error: integer divide by zero", "", "goroutine 1 [running]:",
            "main.ratio(...)", "\t/app/main.go:9", "main.main()", "\t/app/main.go:14 +0x3",
            "RuntimeError: unreachable",
            "    at main.ratio (wasm://wasm/00ab12cd:wasm-function[300]:0x9f00)"]
    [c] = crashes(text)
    assert c.panic.kind == "go" and [f.line for f in c.panic.frames] == [9, 14]
    assert re.fullmatch(r"/app/main\.go:9", c.panic.location)


@pytest.mark.parametrize("fmt", [LineFormat.ENVOY, LineFormat.ISTIO])
@pytest.mark.parametrize("text,kind,message,location", [
    ("panic: runtime error: nil map writes", "tinygo", "runtime error: nil map writes", None),
    ("panicked at 'boom', src/lib.rs:3:4", "rust", "boom", "src/lib.rs:3:4"),
    ("panicked at src/lib.rs:3:4:\nboom", "rust", "boom", "src/lib.rs:3:4"),
    ("libc++abi: terminating due to uncaught exception of type std::runtime_error: bad", "cxx",
     "uncaught std::runtime_error: bad", None),
    ("terminate called after throwing an instance of 'std::out_of_range'\n  what():  vector",
     "cxx", "uncaught std::out_of_range: vector", None),
    ("Assertion failed: x > 0 (plugin.c: check: 12)", "c", "Assertion failed: x > 0 in check",
     "plugin.c:12"),
    ("fatal error: concurrent map writes", "go", "fatal error: concurrent map writes", None)])
def test_each_panic_kind_without_its_trap_is_a_partial_crash_of_its_thread(fmt, text, kind,
                                                                           message, location):
    """The trap record was cut off: the panic is still reported, partial, with the plugin and
    the thread (Istio writes a multi-line record's ``thread=`` on its last line)."""
    lines = format_record(fmt, f"wasm log ns.p r v: {text}", thread="7").split("\n")
    lines += format_record(fmt, "something else", thread="8", level="info",
                           logger="http").split("\n")
    [c] = crashes(lines)
    assert (c.partial, c.trap_kind, c.plugin, c.thread) == (True, TrapKind.PANIC, "ns.p", "7")
    assert (c.panic.kind, c.panic.message, c.panic.location) == (kind, message, location)
