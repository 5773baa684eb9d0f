"""What ``wasmprof symbolize`` accepts as LOG: binary files are refused (exit 2, "did you mean
--module?"), names from logs are escaped on a terminal, envelopes and panics show in the
text output; names without a module are demangled (demangle.display_name)."""

from __future__ import annotations

import gzip
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from test_logs_envelopes import bare_log
from wasmprof.addr2line.demangle import display_name, runtime_glue
from wasmprof.cli import main
from wasmprof.commands.symbolize import check_text
from wasmprof.errors import WasmprofError
from wasmprof.ingest import envelopes

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name,data", [
    ("plugin.wasm", None), ("plugin.aot", None), ("x.o", b"\x7fELF\x02\x01\x01" + bytes(200)),
    ("blob.bin", bytes(range(256)) * 4), ("nul.log", b"ok line\n\x00\x00\x00 more\n")])
def test_binary_input_is_refused_with_a_hint(tmp_path, capsysbinary, data_dir, name, data):
    path = tmp_path / name
    if data is None:
        src = (data_dir / "wasm" / "crash_oob.O2.wasm" if name.endswith(".wasm")
               else data_dir / "aot" / "crash_oob.O2.plain.aot")
        data = src.read_bytes()
    path.write_bytes(data)
    code = main(["symbolize", str(path)])
    out, err = capsysbinary.readouterr()
    assert code == 2 and out == b""                     # nothing binary reaches the terminal
    assert b"not a text log" in err and b"did you mean --module?" in err
    assert name.encode() in err


def test_binary_on_stdin_and_text_that_is_fine(data_dir):
    wasm = (data_dir / "wasm" / "fib.O2.wasm").read_bytes()
    p = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", "-"], input=wasm,
                       capture_output=True, timeout=60)
    assert p.returncode == 2 and b"did you mean --module?" in p.stderr and not p.stdout
    for ok in (b"", b"plain text\n", "ünïcödé\tand tabs \x1b[31mcolour\x1b[0m\n".encode()):
        check_text(ok, "x")
    with pytest.raises(WasmprofError):
        check_text(b"\x00asm\x01\x00\x00\x00", "x")


def test_gzip_without_its_name_is_read(tmp_path, capsysbinary):
    path = tmp_path / "gateway.log.1"
    path.write_bytes(gzip.compress(("\n".join(bare_log()) + "\n").encode()))
    code = main(["symbolize", str(path), "--json"])
    out, _ = capsysbinary.readouterr()
    assert code == 0 and len(json.loads(out)["crashes"]) == 4


def _on_a_terminal(args: list[str]) -> bytes:
    """Run the CLI with its stdout on a pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "wasmprof", *args], stdout=slave,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         env={**os.environ, "NO_COLOR": "1"})
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 30)
        if not r:
            break
        try:
            piece = os.read(master, 65536)
        except OSError:
            break
        if not piece:
            break
        out += piece
    p.wait(timeout=30)
    os.close(master)
    return out


def test_names_from_logs_are_escaped_on_a_terminal(tmp_path):
    hostile = "evil\x1b]0;pwned\x07\x1b[2J"
    lines = [f"[2025-11-03 08:14:22.001][7][info][wasm] [ctx.cc:1] wasm log ns.p r v: {hostile}",
             "[2025-11-03 08:14:22.002][7][error][wasm] [vm.cc:38] Function: proxy_on_tick "
             "failed: Uncaught RuntimeError: unreachable", "Proxy-Wasm plugin in-VM backtrace:",
             f"  0:  0x10 - {hostile}", "[2025-11-03 08:14:22.003][8][info][main] [s.cc:1] "
             f"pass-through {hostile}"]
    log = tmp_path / "hostile.log"
    log.write_text("\n".join(lines) + "\n")
    out = _on_a_terminal(["symbolize", str(log)])
    assert b"wasm crash #1" in out and b"\\x1b]0;pwned\\x07" in out
    assert b"\x1b" not in out and b"\x07" not in out


def test_text_output_shows_envelope_panic_and_breadcrumbs(tmp_path, capsysbinary):
    log = tmp_path / "kubectl.log"
    log.write_text(envelopes.wrap("kubectl-prefix", bare_log()))
    code = main(["symbolize", str(log), "--only-crashes"])
    text = capsysbinary.readouterr()[0].decode()
    assert code == 0 and text.count("==> wasm crash #") == 4
    assert "panic (Rust): invalid token_id at src/dispatcher.rs:424:14" in text
    assert "panic (Go): runtime error: index out of range [5] with length 3 at " \
           "/src/plugin/main.go:42" in text
    assert "2 frames from its traceback (the runtime's text, not DWARF): main.handle " \
           "(/src/plugin/main.go:42), main.main (/src/plugin/main.go:77)" in text
    assert "breadcrumbs (the plugin's last 1 log records on this thread):" in text
    assert "note: log envelope: prefix '[pod/higress-gateway-7d9f8-abcde/istio-proxy] '" in text
    assert "plugin::connect  [function-only" in text           # demangled, no module


@pytest.mark.parametrize("printed,shown", [
    ("_ZN3std9panicking20rust_panic_with_hook17h0934220b8bcb5bb0E",
     "std::panicking::rust_panic_with_hook"),
    ("_RNvCs1234_7mycrate4main", "mycrate::main"),
    ("_ZN4core6result19Result$LT$T$C$E$GT$6expect17hd84817813fccb93fE",
     "core::result::Result<T,E>::expect"),
    ("std::panicking::begin_panic_handler::_$u7b$$u7b$closure$u7d$$u7d$::h8e1f8b682ca33009",
     "std::panicking::begin_panic_handler::{{closure}}"),
    ("_ZNK5proxy7Context9onRequestEv", "proxy::Context::onRequest() const"),
    ("_start.command_export", "_start"), ("main.(*T).At", "main.(*T).At"),
    ("proxy_on_request_body", "proxy_on_request_body"), ("", "")])
def test_display_names_without_a_module(printed, shown):
    assert display_name(printed) == shown


def test_go_runtime_frames_are_glue():
    for name in ("runtime.gopanic", "runtime._panic", "runtime.runtimePanic", "wasm_pc_f_loop",
                 "wasm_export_run", "runtime/internal/atomic.Load"):
        assert runtime_glue(name) == "Go runtime", name
    for name in ("main.handle", "github.com_a_b.Handler", "proxy_on_request_headers"):
        assert runtime_glue(name) is None, name
