"""Modules built with the toolchains plugin teams use, cached by content hash (see
``compile.build_dir``): Emscripten ``em++ -sSTANDALONE_WASM``, clang-19 + wasi-libc,
binaryen's ``wasm-opt`` (108 from Debian, 132 from npm), Debian's rustc for wasm32-wasi and
npm AssemblyScript. Each helper returns the cached output path(s); a build is written under
a temporary name and renamed. clang builds compile with -O and link without, as the fixtures
do (clang runs binaryen itself only for -O at link time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from compile import build_dir


def npm_tools() -> Path | None:
    env = os.environ.get("WASMPROF_NPM_TOOLS")
    for cand in ([Path(env)] if env else []) + [
            Path(__file__).resolve().parent.parent / ".tools" / "npm" / "node_modules"]:
        if (cand / "assemblyscript").is_dir():
            return cand
    return None


def _entry(kind: str, *parts: str) -> Path:
    h = hashlib.sha256(kind.encode())
    for p in parts:
        h.update(b"\0" + p.encode())
    d = build_dir() / f"{kind}-{h.hexdigest()[:20]}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 900) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"build failed ({' '.join(map(str, cmd))}):\n{p.stderr}{p.stdout}")


def _write_sources(d: Path, sources: dict[str, str]) -> Path:
    src = d / "src"
    src.mkdir(exist_ok=True)
    for name, text in sources.items():
        (src / name).write_text(text)
    return src


def _finish(tmp: Path, out: Path) -> Path:
    os.replace(tmp, out)
    return out


def emxx(sources: dict[str, str], flags: list[str], name: str = "module.wasm") -> Path:
    """``em++ <flags> -sSTANDALONE_WASM`` (emcc runs binaryen's wasm-opt itself at -O1+)."""
    d = _entry("em", *flags, *sorted(f"{k}\0{v}" for k, v in sources.items()))
    out = d / name
    if out.exists():
        return out
    src = _write_sources(d, sources)
    work = d / f"tmp-{os.getpid()}"
    work.mkdir(exist_ok=True)
    units = [str(src / n) for n in sources if not n.endswith((".h", ".hpp"))]
    _run(["em++", *flags, "-sSTANDALONE_WASM", f"-ffile-prefix-map={src}=/src", *units,
          "-o", name], cwd=work)
    if (work / f"{name}.map").exists():
        os.replace(work / f"{name}.map", d / f"{name}.map")
    return _finish(work / name, out)


def clang_wasi(sources: dict[str, str], cflags: list[str], name: str = "module.wasm") -> Path:
    """clang-19 --target=wasm32-wasi (wasi-libc from /usr): compile each unit with
    ``cflags``, link without -O (so clang runs no wasm-opt)."""
    d = _entry("clang", *cflags, *sorted(f"{k}\0{v}" for k, v in sources.items()))
    out = d / name
    if out.exists():
        return out
    src = _write_sources(d, sources)
    env = None                       # no -O at link time: clang runs no wasm-opt
    objs = []
    for unit in (n for n in sources if n.endswith(".c")):
        obj = d / f"{unit}.o"
        _run(["clang-19", "--target=wasm32-wasi", "--sysroot=/usr", *cflags,
              f"-fdebug-prefix-map={src}=/src", "-c", unit, "-o", str(obj)], cwd=src, env=env)
        objs.append(str(obj))
    tmp = d / f".{name}.{os.getpid()}.tmp"
    lto = ["-flto"] if "-flto" in cflags else []
    _run(["clang-19", "--target=wasm32-wasi", "--sysroot=/usr", *lto, *objs, "-o", str(tmp)],
         cwd=src, env=env)
    return _finish(tmp, out)


def wasm_opt(path: Path, version: str, flags: list[str]) -> Path:
    """``path`` post-processed by binaryen ``version`` ("108": Debian's /usr/bin/wasm-opt,
    "132": npm binaryen)."""
    if version == "108":
        exe = shutil.which("wasm-opt")
    else:
        tools = npm_tools()
        exe = str(tools / "binaryen" / "bin" / "wasm-opt") if tools else None
    if not exe or not Path(exe).exists():
        raise RuntimeError(f"binaryen {version} wasm-opt is not installed")
    got = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert f"version {version}" in got, got
    out = path.with_name(f"{path.stem}.b{version}{''.join(flags).replace('-', '_')}.wasm")
    if out.exists():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    _run([exe, *flags, str(path), "-o", str(tmp)], cwd=path.parent)
    return _finish(tmp, out)


def rustc(source: str, flags: list[str], name: str = "module.wasm") -> Path:
    """Debian's ``/usr/bin/rustc --target wasm32-wasi`` (a newer rustc on PATH has no
    wasm target)."""
    d = _entry("rustc", *flags, source)
    out = d / name
    if out.exists():
        return out
    src = _write_sources(d, {"main.rs": source})
    tmp = d / f".{name}.{os.getpid()}.tmp"
    _run(["/usr/bin/rustc", "--target", "wasm32-wasi", *flags,
          f"--remap-path-prefix={src}=/src", "main.rs", "-o", str(tmp)], cwd=src)
    return _finish(tmp, out)


def asc(sources: dict[str, str], entry: str, flags: list[str],
        name: str = "module.wasm") -> tuple[Path, Path]:
    """npm AssemblyScript ``asc ENTRY <flags> -o NAME``: (module, its .wasm.map)."""
    tools = npm_tools()
    if tools is None:
        raise RuntimeError("npm assemblyscript is not installed (bash scripts/bootstrap.sh "
                           "test installs it)")
    d = _entry("asc", entry, *flags, *sorted(f"{k}\0{v}" for k, v in sources.items()))
    out = d / name
    if out.exists() and (d / f"{name}.map").exists():
        return out, d / f"{name}.map"
    for k, v in sources.items():
        (d / k).write_text(v)
    _run([str(tools / ".bin" / "asc"), entry, *flags, "-o", name], cwd=d)
    return out, d / f"{name}.map"
