"""V8 outside Envoy: ``err.stack`` traces produced live by node (Debian nodejs) on Rust,
C++ and AssemblyScript modules built here, found as crashes of their own dialect and
symbolized with ``--mode auto`` choosing the V8 space."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plugin_builds import build_as, build_cxx, build_rust, run_js, run_wasi
from test_logs_panics import CXX_SOURCE, RUST_SOURCE, line_of
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.model import AddressSpace, FrameStatus, Runtime, TrapKind

AS_SOURCE = """\
class Table {
  cells: Array<i32> = [1, 2, 3, 4];
  at(i: i32): i32 { return this.cells[i]; }
}
function onHeaders(n: i32): i32 {
  const t = new Table();
  return t.at(n);
}
export function run(n: i32): i32 { return onHeaders(n + 5); }
"""


@pytest.fixture(scope="session")
def rust_trace():
    rust = build_rust(RUST_SOURCE)
    writes, stack = run_wasi(rust)
    return rust, stack, writes


@pytest.fixture(scope="session")
def cxx_trace():
    cxx = build_cxx(CXX_SOURCE)
    writes, stack = run_wasi(cxx)
    return cxx, stack, writes


@pytest.fixture(scope="session")
def as_trace():
    asm = build_as(AS_SOURCE)
    return asm, run_js(asm, "run", 1), []


@pytest.fixture
def traces(request):
    """(module path, err.stack, writes to stderr) of the language a test asks for."""
    class Lazy(dict):
        def __missing__(self, lang):
            self[lang] = request.getfixturevalue(f"{lang}_trace")
            return self[lang]
    return Lazy()


def scan(text: str):
    return list(scan_crashes([text.encode()], "node.txt"))


@pytest.mark.parametrize("lang,function,exact", [
    ("rust", "plugin::parse_token", True), ("cxx", "Table::at(int)", True),
    ("as", "plugin/Table#at", False)])
def test_node_err_stack_is_found_and_symbolized(traces, lang, function, exact):
    wasm, stack, _ = traces[lang]
    assert stack and "wasm://wasm/" in stack
    [c] = scan(stack + "\n")
    assert c.runtime is Runtime.V8_JS and c.message == "RuntimeError: unreachable"
    wasm_lines = [x for x in stack.splitlines() if "wasm-function[" in x]
    assert len(c.raw_frames) == len(wasm_lines) >= 3
    assert all(f.func_index is not None and f.offset for f in c.raw_frames)
    module = load_module(wasm)
    sym = CrashSymbolizer([module], Resolver(), mode="auto")
    choice = sym.choose(c)
    assert choice.space is AddressSpace.V8 and "err.stack" in choice.space_reason
    sym.symbolize(c, choice)
    outer = {f.input_index: f for f in c.frames if not f.inlined}
    hit = next(f for f in outer.values() if f.function == function)
    assert hit.wasm_index == c.raw_frames[hit.input_index].func_index
    if exact:
        src = RUST_SOURCE if lang == "rust" else CXX_SOURCE
        mark = "// PANIC" if lang == "rust" else "// TERM"
        assert hit.status is FrameStatus.EXACT and hit.line == line_of(src, mark)
    else:                         # AssemblyScript: no DWARF; its source map gives the .ts line
        assert hit.status is FrameStatus.EXACT and hit.file.endswith(".ts"), hit
        assert hit.line == next(i for i, x in enumerate(AS_SOURCE.splitlines(), 1)
                                if "this.cells[i]" in x), hit


def test_module_name_prefix_is_not_part_of_the_name(traces):
    """zig writes a module name ("plugin.wasm"): V8 prints ``plugin.wasm.Table::at(int)`` in
    ``wasm://wasm/plugin.wasm-<hash>``."""
    _, stack, _ = traces["cxx"]
    assert "wasm://wasm/plugin.wasm-" in stack
    [c] = scan(stack + "\n")
    assert "Table::at(int)" in [f.printed_name for f in c.raw_frames]
    assert {f.module for f in c.raw_frames} == {"plugin.wasm"}


def test_rust_panic_on_stderr_attaches_to_the_node_trace(traces):
    """node's WASI writes the panic to its stderr, then the trap's stack: one crash."""
    wasm, stack, writes = traces["rust"]
    text = "".join(t for fd, t in writes if fd == 2) + stack + "\n"
    [c] = scan(text)
    assert c.panic is not None and c.panic.kind == "rust" and c.trap_kind is TrapKind.PANIC
    assert c.panic.message == "invalid token_id 6"


def test_cli_mode_auto_picks_v8_for_a_node_trace(traces, tmp_path):
    wasm, stack, _ = traces["rust"]
    log = tmp_path / "node.txt"
    log.write_text("wasm://wasm/01234567:1\n\n\n" + stack + "\n\nNode.js v20\n")
    out = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", str(log), "--module",
                          str(wasm), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [c] = json.loads(out.stdout)["crashes"]
    assert (c["runtime"], c["space"]) == ("v8-js", "v8")
    assert any(f["function"] == "plugin::parse_token" and f["status"] == "exact"
               for f in c["frames"])


def test_text_output_prints_the_error_line_once(traces, tmp_path):
    """The line before the first ``at`` line (the error) belongs to the crash: the filter
    prints it with the crash, not once more as a pass-through line."""
    wasm, stack, _ = traces["cxx"]
    log = tmp_path / "node.txt"
    log.write_text("starting plugin test\n" + stack + "\nNode.js v20\n")
    out = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", str(log), "--module",
                          str(wasm)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines.count(stack.splitlines()[0]) == 1
    assert lines[0] == "starting plugin test" and lines[-1] == "Node.js v20"
    assert any(x.strip().startswith("-> Table::at(int) at /src/plugin.cpp:") for x in lines)
