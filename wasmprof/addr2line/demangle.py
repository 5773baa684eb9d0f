"""Readable function names: Itanium C++ (cxxfilt = libiberty's demangler) and Rust legacy
and v0 (rust-demangler). Anything else (C, Go/TinyGo ``main.(*T).M``, already-demangled
name-section entries) is returned unchanged. Never raises: a name that does not demangle
stays as it is.
"""

from __future__ import annotations

import re
from functools import lru_cache


_RUST_LEGACY_HASH = re.compile(r"17h[0-9a-f]{16}E$")
_RUST_HASH_SUFFIX = re.compile(r"::h[0-9a-f]{16}$")


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
