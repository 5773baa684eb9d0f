"""WAVM's proxy-wasm in-VM backtrace (formats.md §5.5; proxy-wasm removed WAVM in 2025).

Contract: line-level recogniser; never raises. Lines are ``%3d: wasm!<module>!<function>+<n>``
with frames numbered from 1. WAVM's ``+<n>`` is believed to be an operator index, not a byte
offset, so frames carry no offset (``offset=None``): they resolve by name only.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

_FRAME = re.compile(r" {0,8}(\d{1,9}): wasm!([^!\s]{0,500})!(.+?)(?:\+(\d{1,12}))?\Z", re.S)


def is_wavm_message(message: str) -> bool:
    """A ``failed:`` message in WAVM's words (``wavm.outOfBoundsMemoryAccess``)."""
    return "wavm." in message


def parse_frame(message: str) -> RawFrame | None:
    if "wasm!" not in message:
        return None
    m = _FRAME.match(message)
    if not m:
        return None
    return RawFrame(index=int(m.group(1)), space=AddressSpace.FILE, offset=None,
                    printed_name=m.group(3), module=m.group(2) or None, raw=message)
