"""Native function ranges: ``(start, end, aot_index, internal)`` tuples sorted by start."""

from __future__ import annotations

import bisect

FunctionRange = tuple[int, int, int, bool]


def function_in_ranges(ranges: list[FunctionRange], text_offset: int) -> tuple[int, bool] | None:
    """``(aot_index, internal)`` of the range holding ``text_offset``, else None."""
    i = bisect.bisect_right(ranges, (text_offset, 1 << 62, 0, True)) - 1
    if i >= 0:
        start, end, n, internal = ranges[i]
        if start <= text_offset < end:
            return n, internal
    return None
