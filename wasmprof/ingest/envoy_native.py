"""Envoy's native crash block (formats.md §5.6; ``source/server/backtrace.h``).

Contract: line-level recognisers on the *message* part of a line (the prefix is already
removed by :mod:`wasmprof.ingest.logline`); never raise. Frames are kept as native frames
(``native=True``, absolute address in ``offset``): wasmprof does not symbolize Envoy itself,
and an unsymbolized address (``#3: [0x40fba0c7]``) may be JIT/AOT code that only a perf map
could place.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

_CAUGHT = re.compile(r"Caught ([^,]{1,200})(?:, suspect faulting address (0x[0-9a-fA-F]{1,16}))?")
# "#3: sym [0x7f…]", "#3: [0x7f…]" and the stderr form "#3 sym [0x7f…]"
_FRAME = re.compile(r"#(\d{1,6}):? (?:(.*?) )?\[(0x[0-9a-fA-F]{1,16})\]\Z", re.S)
_MAPPING = re.compile(r"Address mapping: ([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16}) (.*)\Z", re.S)
INFO_PREFIXES = ("Backtrace (use tools/stack_decode.py", "Envoy version:", "Address mapping:")


def parse_caught(message: str) -> str | None:
    """``Caught Segmentation fault, suspect faulting address 0x0`` -> the whole text."""
    if not message.startswith("Caught "):
        return None
    return message.strip() if _CAUGHT.match(message) else None


def is_info(message: str) -> bool:
    """Lines of the block that are neither the head nor a frame."""
    return message.startswith(INFO_PREFIXES)


def parse_mapping(message: str) -> tuple[int, int, str] | None:
    m = _MAPPING.match(message)
    if not m:
        return None
    return int(m.group(1), 16), int(m.group(2), 16), m.group(3)


def parse_frame(message: str) -> RawFrame | None:
    if not message.startswith("#") or not message.endswith("]"):
        return None
    m = _FRAME.match(message)
    if not m:
        return None
    return RawFrame(index=int(m.group(1)), space=AddressSpace.NATIVE,
                    offset=int(m.group(3), 16), printed_name=m.group(2) or None,
                    native=True, raw=message)
