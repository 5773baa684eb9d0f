"""Compile small C/C++ programs to wasm32-wasi for tests, cached by content hash.

``compile_wasm({"a.c": SOURCE}, ["-O2", "-g"]) -> Path`` runs
``python -m ziglang cc --target=wasm32-wasi`` (``c++`` when a source ends in ``.cpp``/``.cc``)
once per distinct (sources, flags, zig version) and returns the cached ``.wasm``.

- The cache lives in ``$WASMPROF_TEST_BUILD_DIR`` or ``<tmp>/wasmprof-test-build``, outside the
  tree, so it survives test sessions; a build is written to a temporary name and renamed, so
  concurrent sessions never see half a file.
- binaryen's ``wasm-opt`` is kept off ``PATH`` (a driver that finds it rewrites the code and
  leaves stale DWARF).
- Sources are written under a fixed directory name inside the cache entry and compiled with
  ``-fdebug-prefix-map`` so ``DW_AT_comp_dir``/file names are ``/src/<name>`` whatever the
  cache location.
- C++ sources are built freestanding from libc++ (``-fno-exceptions -fno-rtti -nostdlib++``),
  like the fixture corpus.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_PREFIX = "/src"


def build_dir() -> Path:
    d = Path(os.environ.get("WASMPROF_TEST_BUILD_DIR")
             or Path(tempfile.gettempdir()) / "wasmprof-test-build")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _zig_version() -> str:
    try:
        from importlib.metadata import version
        return version("ziglang")
    except Exception:  # noqa: BLE001 - any failure just means "unknown" in the cache key
        return "unknown"


def _clean_path() -> str:
    """PATH without any directory that holds binaryen's wasm-opt."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in parts if p and not (Path(p) / "wasm-opt").exists())


def compile_wasm(sources: dict[str, str] | str | os.PathLike, flags: list[str] | tuple[str, ...]
                 = ("-O0", "-g"), *, output_name: str = "module.wasm",
                 timeout: float = 600.0) -> Path:
    """Compile ``sources`` (``{file name: text}`` or a path to one source file) with ``flags``.

    Returns the path of the cached ``.wasm``. Raises ``RuntimeError`` with the compiler's
    output when compilation fails.
    """
    if not isinstance(sources, dict):
        p = Path(sources)
        sources = {p.name: p.read_text()}
    flags = list(flags)
    is_cxx = any(name.endswith((".cpp", ".cc", ".cxx")) for name in sources)
    key = hashlib.sha256()
    for part in [_zig_version(), "c++" if is_cxx else "cc", *flags]:
        key.update(part.encode() + b"\0")
    for name in sorted(sources):
        key.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    entry = build_dir() / key.hexdigest()[:24]
    out = entry / output_name
    if out.exists():
        return out
    src_dir = entry / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (src_dir / name).write_text(text)
    compile_units = [n for n in sources if not n.endswith((".h", ".hpp"))]
    cmd = [sys.executable, "-m", "ziglang", "c++" if is_cxx else "cc", "--target=wasm32-wasi",
           f"-fdebug-prefix-map={src_dir}={SOURCE_PREFIX}", *flags]
    if is_cxx:
        cmd += ["-std=c++17", "-fno-exceptions", "-fno-rtti", "-nostdlib++"]
    tmp_out = entry / f".{output_name}.{os.getpid()}.tmp"
    cmd += [*compile_units, "-o", str(tmp_out)]
    env = dict(os.environ, PATH=_clean_path())
    proc = subprocess.run(cmd, cwd=src_dir, capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        tmp_out.unlink(missing_ok=True)
        raise RuntimeError(f"compilation failed ({' '.join(cmd)}):\n{proc.stderr}{proc.stdout}")
    os.replace(tmp_out, out)
    return out


def strip_wasm(path: Path, *, all_custom: bool = True) -> Path:
    """A stripped copy of ``path`` (``wasm-tools strip [--all]``), cached next to it."""
    out = path.with_name(path.stem + (".strip-all" if all_custom else ".strip-debug") + ".wasm")
    if out.exists():
        return out
    tool = Path(sys.executable).parent / "wasm-tools"
    exe = str(tool) if tool.exists() else shutil.which("wasm-tools")
    if exe is None:
        raise RuntimeError("wasm-tools is not installed")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [exe, "strip", *(["--all"] if all_custom else []), str(path), "-o", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True)
    os.replace(tmp, out)
    return out
