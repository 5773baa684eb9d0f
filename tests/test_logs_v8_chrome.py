"""V8 outside Envoy, in the browser: ``err.stack`` produced live by Debian chromium (a newer V8
than node's) on the C++ module the node tests build, found and symbolized like node's; and
the error lines of Chrome's console (``Uncaught (in promise) …``) and Deno (``error: Uncaught
…``) in front of the same frames."""

from __future__ import annotations

import base64

import pytest

from browser import browser  # noqa: F401  (fixture)
from plugin_builds import build_cxx
from test_logs_panics import CXX_SOURCE, line_of
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.crashes import CrashSymbolizer
from wasmprof.ingest.crashlog import scan_crashes
from wasmprof.model import AddressSpace, FrameStatus, Runtime

# WASI imports stubbed (fd_write counts the bytes, proc_exit throws), main called via _start
RUN = """async (b64) => {
  Error.stackTraceLimit = 50;
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  let inst;
  const wasi = new Proxy({
    fd_write(fd, iovs, n, nwritten) {
      const dv = new DataView(inst.exports.memory.buffer);
      let total = 0;
      for (let i = 0; i < n; i++) total += dv.getUint32(iovs + 8 * i + 4, true);
      dv.setUint32(nwritten, total, true);
      return 0;
    },
    proc_exit(code) { throw new Error("exit " + code); },
  }, { get: (t, k) => t[k] || (() => 0) });
  ({ instance: inst } = await WebAssembly.instantiate(bytes, { wasi_snapshot_preview1: wasi }));
  try { inst.exports._start(); } catch (e) { return String(e.stack); }
  return null;
}"""


@pytest.fixture(scope="module")
def chrome_trace(browser):  # noqa: F811
    wasm = build_cxx(CXX_SOURCE)
    page = browser.new_page()
    try:
        stack = page.evaluate(RUN, base64.b64encode(wasm.read_bytes()).decode())
    finally:
        page.close()
    return wasm, stack


def _symbolized(wasm, text: str):
    [c] = list(scan_crashes([text.encode()], "chrome.txt"))
    sym = CrashSymbolizer([load_module(wasm)], Resolver(), mode="auto")
    choice = sym.choose(c)
    sym.symbolize(c, choice)
    return c, choice


def test_chromium_err_stack_is_found_and_symbolized(chrome_trace):
    wasm, stack = chrome_trace
    assert stack and "wasm://wasm/" in stack and stack.startswith("RuntimeError: unreachable")
    c, choice = _symbolized(wasm, stack + "\n")
    assert c.runtime is Runtime.V8_JS and choice.space is AddressSpace.V8
    assert len(c.raw_frames) == sum("wasm-function[" in x for x in stack.splitlines()) >= 3
    hit = next(f for f in c.frames if f.function == "Table::at(int)" and not f.inlined)
    assert hit.status is FrameStatus.EXACT and hit.line == line_of(CXX_SOURCE, "// TERM")


@pytest.mark.parametrize("head", ["Uncaught (in promise) RuntimeError: unreachable",
                                  "Uncaught RuntimeError: unreachable",
                                  "error: Uncaught (in promise) RuntimeError: unreachable"])
def test_console_and_deno_error_lines(chrome_trace, head):
    """The same frames after the error line as Chrome's console and Deno print it."""
    wasm, stack = chrome_trace
    frames = stack.split("\n", 1)[1]
    c, _ = _symbolized(wasm, f"{head}\n{frames}\n")
    assert c.message == "RuntimeError: unreachable" and not c.partial
    assert any(f.function == "Table::at(int)" and f.status is FrameStatus.EXACT
               for f in c.frames)
