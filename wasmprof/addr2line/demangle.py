"""Readable function names: Itanium C++ (cxxfilt = libiberty's demangler) and Rust legacy
and v0 (rust-demangler). Anything else (C, Go/TinyGo ``main.(*T).M``, already-demangled
name-section entries) is returned unchanged. Never raises: a name that does not demangle
stays as it is.

:func:`display_name` is for names a runtime printed with no module to resolve them against
(V8 in Envoy demangles with ``__cxa_demangle``, which leaves Rust's ``$u7b$`` escapes and
``::h<hash>`` suffixes; node prints names raw; wasm-ld's ``.command_export`` wrappers).
:func:`runtime_glue` recognises the Go and TinyGo runtime's own frames.
"""

from __future__ import annotations

import re
from functools import lru_cache


_RUST_LEGACY_HASH = re.compile(r"17h[0-9a-f]{16}E$")
_RUST_HASH_SUFFIX = re.compile(r"::h[0-9a-f]{16}$")
_RUST_ESCAPE = re.compile(r"\$(?:u[0-9a-f]{1,6}|LT|GT|C|RF|BP|SP|LP|RP)\$")
_RUST_ESCAPES = {"LT": "<", "GT": ">", "C": ",", "RF": "&", "BP": "*", "SP": "@", "LP": "(",
                 "RP": ")"}
COMMAND_EXPORT = ".command_export"
# Go (gc) and TinyGo runtime code and the glue Go's wasm ports generate around it.
_GO_GLUE = re.compile(r"^(?:runtime[./]|_rt0_wasm_|wasm_pc_f_loop$|wasm_export_|gcWriteBarrier"
                      r"|callRet$|memeqbody$|cmpbody$|tinygo_|internal/task\.|internal_task\."
                      r"|\(\*internal/task\.Task\)|sync/atomic\.|sync_atomic\.)")


def is_mangled(name: str | None) -> bool:
    return bool(name) and (name.startswith(("_Z", "__Z", "_R")))


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """Display form of a (possibly mangled) symbol name."""
    if not name or not is_mangled(name):
        return name
    import cxxfilt          # imported on first use: keeps CLI start-up fast
    import rust_demangler
    try:
        if name.startswith("_R") or (name.startswith("_ZN") and _RUST_LEGACY_HASH.search(name)):
            out = rust_demangler.demangle(name)
            return _RUST_HASH_SUFFIX.sub("", out) if out else name
        out = cxxfilt.demangle(name[1:] if name.startswith("__Z") else name)
        return out or name
    except Exception:  # noqa: BLE001 - demanglers raise assorted errors on bad input
        return name


@lru_cache(maxsize=65536)
def display_name(name: str) -> str:
    """What to show for a name a runtime printed, with no module at hand: demangled (C++,
    Rust legacy and v0), Rust escapes and hash suffixes of half-demangled names undone,
    ``.command_export`` dropped."""
    if not name:
        return name
    if name.endswith(COMMAND_EXPORT) and len(name) > len(COMMAND_EXPORT):
        name = name[:-len(COMMAND_EXPORT)]
    if is_mangled(name):
        return demangle(name)
    if "$" in name and _RUST_ESCAPE.search(name):
        name = _RUST_ESCAPE.sub(_rust_escape, name).replace("..", "::")
        name = re.sub(r"::_(?=[{<])", "::", name)
    return _RUST_HASH_SUFFIX.sub("", name)


def _rust_escape(m: re.Match[str]) -> str:
    code = m.group()[1:-1]
    if code[0] == "u" and code not in _RUST_ESCAPES:
        try:
            return chr(int(code[1:], 16))
        except ValueError:
            return m.group()
    return _RUST_ESCAPES[code]


def runtime_glue(name: str | None) -> str | None:
    """``"Go runtime"`` for frames of Go's / TinyGo's runtime and the glue of their Wasm
    ports (``runtime.gopanic``, ``runtime._panic``, ``wasm_pc_f_loop``…), else None."""
    if name and _GO_GLUE.search(name):
        return "Go runtime"
    return None
