"""V8's proxy-wasm in-VM backtrace (formats.md §5.5; ``pwch:src/v8/v8.cc getFailMessage``).

Contract: line-level recognisers; never raise. After ``Function: X failed: <V8 trap text>``
the message continues with ``Proxy-Wasm plugin in-VM backtrace:`` and one line per frame,
``%3d:  0x<hex module offset> - <name>`` (the name is the ``name`` section entry as V8
demangled it, or ``unknown(function index:N)``). Older/other hosts print only the
indented name (``  runtime.gopanic``). Offsets are V8 module offsets (file offset of the
instruction): :attr:`AddressSpace.V8`.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

HEADER = "Proxy-Wasm plugin in-VM backtrace:"
_FRAME = re.compile(r" {0,8}(\d{1,9}): {1,8}0x([0-9a-fA-F]{1,16}) - (.*)\Z", re.S)
_FRAME_NO_OFFSET_NUMBERED = re.compile(r" {0,8}(\d{1,9}): {1,8}(\S.*)\Z", re.S)
_FRAME_NAME_ONLY = re.compile(r" {1,8}(\S[^ ]*)\Z")
_UNKNOWN = re.compile(r"unknown\(function index:(\d{1,9})\)\Z")
_MESSAGE_MARKERS = ("Uncaught ", "RuntimeError", "TerminationException", "RangeError",
                    "CompileError", "LinkError")


def is_v8_message(message: str) -> bool:
    """A ``failed:`` message in V8's words (``Uncaught RuntimeError: unreachable``)."""
    return any(m in message for m in _MESSAGE_MARKERS)


def is_header(message: str) -> bool:
    return message.strip() == HEADER


def parse_frame(message: str, position: int) -> RawFrame | None:
    """One backtrace line, or None. ``position`` numbers frames without a printed index."""
    m = _FRAME.match(message)
    if m:
        index, offset, name = int(m.group(1)), int(m.group(2), 16), m.group(3)
    else:
        m = _FRAME_NO_OFFSET_NUMBERED.match(message)
        if m and "wasm!" not in message:
            index, offset, name = int(m.group(1)), None, m.group(2)
        else:
            m = _FRAME_NAME_ONLY.match(message)
            if not m:
                return None
            index, offset, name = position, None, m.group(1)
    um = _UNKNOWN.match(name)
    return RawFrame(index=index, space=AddressSpace.V8, offset=offset,
                    printed_name=None if um else name,
                    func_index=int(um.group(1)) if um else None, raw=message)
