"""WAMR call-stack dump lines (formats.md §4.1, §4.4, §4.6).

Contract: line-level recognisers used by :mod:`wasmprof.ingest.crashlog`; they never look
symbols up and never raise. A dump is ``#NN: 0xOOOO - NAME`` lines (WAMR >= 2.0; ``#NN NAME``
before 2.0 and under the JITs), framed by empty lines, followed by a
``Performance profiler data:`` block (its parser is :mod:`wasmprof.ingest.wamr_profiler`;
crashes skip it) and, from ``iwasm``, an ``Exception: <message>`` line. The dump alone does
not say which execution mode printed it, so frames get a provisional space
(:data:`PROVISIONAL_SPACE`) that :mod:`wasmprof.crashes` replaces from the module kind or
``--mode``.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

# WAMR prints %02u, so at least two digits; deep recursion dumps reach #8191.
_FRAME = re.compile(r"#(\d{2,9}): 0x([0-9a-fA-F]{1,16}) - (.*)\Z", re.S)
_FRAME_OLD = re.compile(r"#(\d{2,9}) (\S.*)\Z", re.S)
_FUNC_INDEX = re.compile(r"\$f(\d{1,9})\Z")
PROFILER_HEADER = "Performance profiler data:"
EXCEPTION_PREFIX = "Exception: "
# WAMR cuts dump lines at 255 bytes including the newline and ends them with "...".
_TRUNCATED_MIN_LEN = 250

PROVISIONAL_SPACE = AddressSpace.AOT
"""Space given to dump frames until the symbolizer decides (interp / fast-interp / aot)."""


def parse_frame(message: str) -> RawFrame | None:
    """A dump frame line (``#03: 0x04e5 - main``), or None. ``$fN`` sets ``func_index``."""
    if not message.startswith("#"):
        return None
    m = _FRAME.match(message)
    offset: int | None
    if m:
        index, offset, name = int(m.group(1)), int(m.group(2), 16), m.group(3)
    else:
        m = _FRAME_OLD.match(message)
        # "#12 sym [0x...]" is Envoy's stderr native frame, not an old WAMR dump line.
        if not m or message.endswith("]"):
            return None
        index, offset, name = int(m.group(1)), None, m.group(2)
    truncated = name.endswith("...") and len(message) >= _TRUNCATED_MIN_LEN
    fm = _FUNC_INDEX.match(name)
    return RawFrame(index=index, space=PROVISIONAL_SPACE, offset=offset, printed_name=name,
                    func_index=int(fm.group(1)) if fm else None, truncated=truncated,
                    raw=message)


def is_profiler_header(message: str) -> bool:
    return message.startswith(PROFILER_HEADER)


def is_profiler_line(message: str) -> bool:
    """A line of the ``Performance profiler data:`` block (``  func NAME, execution …``)."""
    return message.startswith("  func ")


def exception_message(message: str) -> str | None:
    """``Exception: unreachable`` -> ``unreachable``; None for other lines."""
    if message.startswith(EXCEPTION_PREFIX):
        return message[len(EXCEPTION_PREFIX):].strip()
    return None
