"""Address-space rules (formats.md §4.2, §6.2): what a printed number means and how it
becomes a DWARF (Code-section-relative) address.

| space | printed number | DWARF address |
|---|---|---|
| ``file``, ``v8``, ``wasmtime``, ``aot`` | file offset of the instruction | ``off - code_payload_start`` |
| ``interp`` | file offset *after* the instruction | ``off - 1 - code_payload_start`` |
| ``code`` | Code-section offset | ``off`` |
| ``fast-interp`` | offset into WAMR's transformed code | none: function index only |
| ``native`` | offset into an AOT/cwasm text section | via a native->Wasm map only |
| ``perf`` | offset inside ``aot_func#N`` | none: function only |

WAMR prints 0 for "unknown" (host frames, AOT entry frames without call-stack frames).
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace

SPACE_HELP = {
    AddressSpace.FILE: "byte offset in the .wasm file (wasm-tools addr2line's default)",
    AddressSpace.CODE: "offset from the Code section payload start (= DWARF address)",
    AddressSpace.INTERP: "WAMR classic interpreter dump: file offset after the instruction",
    AddressSpace.FAST_INTERP: "WAMR fast interpreter dump: function only",
    AddressSpace.AOT: "WAMR AOT dump with call-stack frames: file offset of the instruction",
    AddressSpace.V8: "V8 module offset (file offset)",
    AddressSpace.WASMTIME: "Wasmtime module offset (file offset)",
    AddressSpace.NATIVE: "offset into an AOT/.cwasm text section",
    AddressSpace.PERF: "offset inside a perf-map symbol aot_func#N",
}

_CODE = AddressSpace.CODE
_INTERP = AddressSpace.INTERP
_FIDX = re.compile(r"^\$f(\d+)$")
_AOT_FUNC = re.compile(r"^(?:\[[^\]]*\]#)?aot_func(?:_internal)?#(\d+)(?:\+0x[0-9a-fA-F]+)?$")


def file_offset(space: AddressSpace, offset: int, code_payload_start: int) -> int:
    """File offset of the instruction a printed ``offset`` designates (Wasm spaces only)."""
    if space is _CODE:
        return offset + code_payload_start
    return offset - 1 if space is _INTERP else offset


def maps_to_wasm(space: AddressSpace) -> bool:
    """True when the number is a (possibly adjusted) offset into the Wasm module."""
    return space is AddressSpace.CODE or space.is_wasm_file_offset


def index_from_printed_name(name: str | None, import_count: int) -> int | None:
    """Wasm function index stated by a printed name: ``$f12`` -> 12,
    ``aot_func#3`` -> 3 + imports. None for ordinary names."""
    if not name:
        return None
    m = _FIDX.match(name)
    if m:
        return int(m.group(1))
    m = _AOT_FUNC.match(name)
    if m:
        return int(m.group(1)) + import_count
    return None
