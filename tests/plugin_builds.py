"""Plugins that really crash, built with the toolchains the teams use and run live in node.

- ``build_go`` (``GOOS=js GOARCH=wasm go build -trimpath``: a real Go Wasm module, name section,
  no DWARF), ``build_rust`` (``/usr/bin/rustc --target wasm32-wasi``), ``build_cxx``
  (``python -m ziglang c++ --target=wasm32-wasi`` with libc++abi), ``build_as``
  (AssemblyScript's ``asc --debug --sourceMap`` from ``$WASMPROF_NPM_TOOLS``); each cached by
  content hash under :func:`compile.build_dir` (built once, reused across sessions).
- ``run_go`` runs a Go module under node with Go's own ``wasm_exec.js``; ``run_wasi`` runs a
  WASI module under ``node:wasi``; ``run_js`` instantiates a module and calls an export.
  Every ``fd_write`` of fd 1/2 is recorded as one write, exactly as proxy-wasm turns each
  ``fd_write`` into one Envoy log record; the records go to a file of their own (writing
  them to stderr from inside the hook would recurse). The trap's ``err.stack`` is kept.
- ``envoy_records`` writes those writes as Envoy ``wasm log`` records (stdout -> info, stderr
  -> error, one trailing newline stripped); ``in_vm_backtrace`` writes V8's proxy-wasm
  in-VM backtrace for the same frames (the offsets node printed are V8's module offsets).

Missing toolchains skip the tests on a workstation and FAIL them in CI (``CI=true``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compile import build_dir
from wasmprof.ingest.logline import LineFormat, format_record


def require(tool: str | None, what: str) -> str:
    if tool and (Path(tool).is_file() or shutil.which(tool)):
        return tool if Path(tool).is_file() else shutil.which(tool)  # type: ignore[return-value]
    msg = f"{what} is not installed"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + "; CI must have it (scripts/bootstrap.sh test installs it)")
    pytest.skip(msg)


def _entry(kind: str, *parts: str) -> Path:
    h = hashlib.sha256("\0".join((kind, *parts)).encode()).hexdigest()[:20]
    d = build_dir() / f"{kind}-{h}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}{p.stdout}")


def _publish(tmp: Path, out: Path) -> Path:
    os.replace(tmp, out)
    return out


def build_go(source: str) -> Path:
    go = require("go", "Go (golang-go)")
    d = _entry("go", source)
    out = d / "plugin.wasm"
    if not out.exists():
        (d / "main.go").write_text(source)
        (d / "go.mod").write_text("module example.com/goplug\n\ngo 1.19\n")
        tmp = d / f".plugin.{os.getpid()}.wasm"
        _run([go, "build", "-trimpath", "-o", str(tmp), "."], d,
             {"GOOS": "js", "GOARCH": "wasm", "GOFLAGS": "-mod=mod", "GOWORK": "off",
              "CGO_ENABLED": "0"})
        _publish(tmp, out)
    return out


def build_rust(source: str, flags: tuple[str, ...] = ("-g", "-O", "-C", "panic=abort")) -> Path:
    rustc = require("/usr/bin/rustc", "Debian rustc with the wasm32-wasi target")
    d = _entry("rust", source, *flags)
    out = d / "plugin.wasm"
    if not out.exists():
        (d / "plugin.rs").write_text(source)
        tmp = d / f".plugin.{os.getpid()}.wasm"
        _run([rustc, "--target", "wasm32-wasi", "--crate-name", "plugin", *flags,
              f"--remap-path-prefix={d}=/src", "plugin.rs", "-o", str(tmp)], d)
        _publish(tmp, out)
    return out


def build_cxx(source: str, flags: tuple[str, ...] = ("-O1", "-g")) -> Path:
    """C++ with libc++/libc++abi (std::terminate prints ``libc++abi: terminating``); compiled
    without linking wasm-opt in (binaryen off PATH), linked without -O."""
    from compile import _clean_path
    d = _entry("cxx", "module-name", source, *flags)
    out = d / "plugin.wasm"
    if not out.exists():
        (d / "plugin.cpp").write_text(source)
        env = {"PATH": _clean_path()}
        zig = [sys.executable, "-m", "ziglang", "c++", "--target=wasm32-wasi"]
        _run([*zig, *flags, "-fno-exceptions", f"-fdebug-prefix-map={d}=/src", "-c",
              "plugin.cpp", "-o", "plugin.o"], d, env)
        tmp = d / f"tmp{os.getpid()}"                 # zig names the module after the file
        tmp.mkdir(exist_ok=True)
        _run([*zig, "-g", "-fno-exceptions", "plugin.o", "-o", str(tmp / "plugin.wasm")], d, env)
        _publish(tmp / "plugin.wasm", out)
        tmp.rmdir()
    return out


def build_as(source: str) -> Path:
    tools = os.environ.get("WASMPROF_NPM_TOOLS")
    asc = require(str(Path(tools) / ".bin" / "asc") if tools else None,
                  "AssemblyScript (npm tools: run `bash scripts/bootstrap.sh test` once, or set "
                  "WASMPROF_NPM_TOOLS)")
    d = _entry("as", source)
    out = d / "plugin.wasm"
    if not out.exists():
        (d / "plugin.ts").write_text(source)
        _run([asc, "plugin.ts", "--debug", "--sourceMap", "-o", "out.wasm"], d)
        _publish(d / "out.wasm", out)
    return out


# -- running them in node ---------------------------------------------------------------------
_GO_RUNNER = r"""
const fs = require("fs");
const out = fs.openSync(process.argv[3], "w");
const write = fs.writeSync;
fs.writeSync = function (fd, buf, ...rest) {
  if (fd === 1 || fd === 2) {       // one fd_write of the plugin = one record, to our own fd
    write.call(fs, out, JSON.stringify([fd, Buffer.from(buf).toString("utf8")]) + "\n");
    return buf.length;
  }
  return write.call(fs, fd, buf, ...rest);
};
globalThis.fs = fs;
globalThis.require = require;
require(process.argv[4]);
const go = new Go();
go.exit = (code) => write.call(fs, out, JSON.stringify(["exit", String(code)]) + "\n");
WebAssembly.instantiate(fs.readFileSync(process.argv[2]), go.importObject)
  .then((r) => go.run(r.instance))
  .catch((e) => write.call(fs, out, JSON.stringify(["stack", String(e.stack)]) + "\n"));
"""

_WASI_RUNNER = r"""
const fs = require("fs");
const { WASI } = require("wasi");
const out = fs.openSync(process.argv[3], "w");
Error.stackTraceLimit = 50;
const wasi = new WASI({ version: "preview1", args: ["plugin", ...process.argv.slice(4)],
                        env: {}, returnOnExit: true });
const imports = wasi.getImportObject();
let inst;
const fdWrite = imports.wasi_snapshot_preview1.fd_write;
imports.wasi_snapshot_preview1.fd_write = (fd, iovs, n, nwritten) => {
  if (fd !== 1 && fd !== 2) return fdWrite(fd, iovs, n, nwritten);
  const mem = new DataView(inst.exports.memory.buffer);
  let s = "";
  for (let i = 0; i < n; i++) {
    const p = mem.getUint32(iovs + 8 * i, true), l = mem.getUint32(iovs + 8 * i + 4, true);
    s += Buffer.from(inst.exports.memory.buffer, p, l).toString("utf8");
  }
  fs.writeSync(out, JSON.stringify([fd, s]) + "\n");
  mem.setUint32(nwritten, Buffer.byteLength(s), true);
  return 0;
};
inst = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(process.argv[2])), imports);
try { wasi.start(inst); } catch (e) { fs.writeSync(out, JSON.stringify(["stack", String(e.stack)]) + "\n"); }
"""

_JS_RUNNER = r"""
const fs = require("fs");
Error.stackTraceLimit = 50;
const out = fs.openSync(process.argv[3], "w");
const imports = { env: { abort() {} } };   // AssemblyScript's abort: returns, then unreachable
const inst = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(process.argv[2])), imports);
try { inst.exports[process.argv[4]](...process.argv.slice(5).map(Number)); }
catch (e) { fs.writeSync(out, JSON.stringify(["stack", String(e.stack)]) + "\n"); }
"""


def _node(runner: str, name: str, *args: str) -> list[tuple[object, str]]:
    node = require("node", "node (Debian nodejs)")
    d = _entry("node-run", runner, *args)
    script = d / name
    script.write_text(runner)
    rec = d / f"writes.{os.getpid()}.jsonl"
    subprocess.run([node, "--no-warnings", str(script), args[0], str(rec), *args[1:]],
                   capture_output=True, timeout=120, check=False)
    writes = [tuple(json.loads(line)) for line in rec.read_text().splitlines() if line]
    rec.unlink()
    return writes  # type: ignore[return-value]


def go_wasm_exec() -> str:
    go = require("go", "Go (golang-go)")
    root = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True).stdout.strip()
    path = Path(root) / "misc" / "wasm" / "wasm_exec.js"
    return require(str(path) if path.is_file() else None, "Go's misc/wasm/wasm_exec.js")


def run_go(wasm: Path) -> list[tuple[object, str]]:
    """The Go module's writes (fd, text), in order, and ``("exit", code)``."""
    return _node(_GO_RUNNER, "go-runner.js", str(wasm), go_wasm_exec())


def run_wasi(wasm: Path, *args: str) -> tuple[list[tuple[int, str]], str | None]:
    """(writes to fd 1/2, the trap's err.stack)."""
    got = _node(_WASI_RUNNER, "wasi-runner.js", str(wasm), *args)
    stack = next((t for k, t in got if k == "stack"), None)
    return [(int(k), t) for k, t in got if k in (1, 2)], stack  # type: ignore[arg-type]


def run_js(wasm: Path, export: str, *args: int) -> str | None:
    """The err.stack of calling ``export(*args)`` (None when it did not trap)."""
    got = _node(_JS_RUNNER, "js-runner.js", str(wasm), export, *map(str, args))
    return next((t for k, t in got if k == "stack"), None)


# -- as Envoy logs it --------------------------------------------------------------------------
WASM_LOG_AT = "source/extensions/common/wasm/context.cc:1157"


def envoy_records(writes: list[tuple[int, str]], *, plugin: str, thread: str,
                  fmt: LineFormat = LineFormat.ENVOY, start_ms: int = 0,
                  prefix: str = "") -> list[str]:
    """Each write as the Envoy ``wasm log`` record proxy-wasm makes of it."""
    out = []
    for k, (fd, text) in enumerate(writes):
        if text.endswith("\n"):
            text = text[:-1]                        # writevImpl strips one trailing newline
        ms = start_ms + k
        ts = f"2025-11-03 08:14:{22 + ms // 1000 % 30:02d}.{ms % 1000:03d}"
        out.append(format_record(fmt, f"wasm log {plugin}{prefix}: {text}", timestamp=ts,
                                 thread=thread, level="info" if fd == 1 else "error",
                                 location=WASM_LOG_AT))
    return out


_AT = re.compile(r"\s+at (?:(.+?) \()?wasm://wasm/(?:([^:()\s]+)-)?[0-9a-f]+:wasm-function\[(\d+)\]"
                 r":0x([0-9a-f]+)\)?$")


def in_vm_backtrace(stack: str) -> str:
    """``Proxy-Wasm plugin in-VM backtrace:`` for the Wasm frames of an err.stack (V8 offsets
    as node printed them; names as the name section has them, module prefix removed)."""
    lines = ["Proxy-Wasm plugin in-VM backtrace:"]
    for line in stack.splitlines():
        m = _AT.match(line)
        if not m:
            continue
        name, module, index, off = m.groups()
        if name and module and name.startswith(module + "."):
            name = name[len(module) + 1:]
        name = name if name and name != module else f"unknown(function index:{index})"
        lines.append(f"{len(lines) - 1:3d}:  0x{off} - {name}")
    return "\n".join(lines)
