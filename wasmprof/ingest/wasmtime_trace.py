"""Wasmtime trap text (formats.md §7.4; ``str(wasmtime.Trap)`` / anyhow debug output).

Contract: line-level recognisers; never raise. Shape::

    error while executing at wasm backtrace:
        0:     0x4a - <unknown>!inner
                        at /src/a.c:1:54          (WASMTIME_BACKTRACE_DETAILS=1 only;
                    - outer                       "- NAME" lines are Wasmtime's own
                        at /src/a.c:9:3            inline expansion of the frame above)
        1:     0x52 - mymod!<wasm function 3>
    note: using the `WASMTIME_BACKTRACE_DETAILS=1` environment variable ...

    Caused by:
        0: memory fault at wasm address 0x11170 in linear memory of size 0x10000
        1: wasm trap: out of bounds memory access

(single-cause form: ``Caused by:`` then one indented line). Offsets are module offsets of
the instruction start: :attr:`AddressSpace.WASMTIME`.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

HEADER_MARK = "wasm backtrace:"
CAUSED_BY = "Caused by:"
_FRAME = re.compile(r" {0,12}(\d{1,9}): {1,12}0x([0-9a-fA-F]{1,16}) - (.*)\Z", re.S)
_AT = re.compile(r" {4,40}at (.*)\Z", re.S)
_INLINED = re.compile(r" {4,40}- (\S.*)\Z", re.S)
_CAUSE = re.compile(r" {2,12}(?:\d{1,4}: )?(\S.*)\Z", re.S)
_WASM_FUNCTION = re.compile(r"<wasm function (\d{1,9})>\Z")


def is_header(message: str) -> bool:
    """The line that opens a Wasmtime backtrace (possibly after ``failed: ``)."""
    return message.rstrip().endswith(HEADER_MARK)


def parse_frame(message: str) -> RawFrame | None:
    m = _FRAME.match(message)
    if not m:
        return None
    index, offset, text = int(m.group(1)), int(m.group(2), 16), m.group(3)
    module, bang, func = text.partition("!")
    if not bang:
        module, func = "", text
    wm = _WASM_FUNCTION.match(func)
    return RawFrame(index=index, space=AddressSpace.WASMTIME, offset=offset,
                    printed_name=None if wm else func,
                    func_index=int(wm.group(1)) if wm else None,
                    module=None if module in ("", "<unknown>") else module, raw=message)


def parse_at(message: str) -> str | None:
    """``  at /src/a.c:1:54`` (a DWARF location Wasmtime itself printed) -> the location."""
    m = _AT.match(message)
    return m.group(1) if m else None


def parse_inlined(message: str) -> str | None:
    """``                - outer_fn`` (WASMTIME_BACKTRACE_DETAILS=1: the function the
    previous frame's code was inlined into, with no index or offset of its own)."""
    m = _INLINED.match(message)
    return m.group(1) if m else None


def is_note(message: str) -> bool:
    return message.startswith("note: ")


def parse_cause(message: str) -> str | None:
    """An indented line of the ``Caused by:`` block, without its ``N: `` number."""
    m = _CAUSE.match(message)
    return m.group(1).rstrip() if m else None


def trap_message(causes: list[str]) -> str | None:
    """The most specific cause: the ``wasm trap: …`` line if any, else the last one."""
    for cause in reversed(causes):
        if cause.startswith("wasm trap: "):
            return cause[len("wasm trap: "):]
    return causes[-1] if causes else None
