"""Bulk-work helper: pause the cyclic garbage collector while building many small objects.

Decoding DWARF and resolving 100k addresses allocate hundreds of thousands of tuples and
Frames and no reference cycles; CPython's generational GC would rescan them again and again
(~40% of a bulk resolve). Reference counting still frees everything; the collector is only
paused for the duration and restored (it is process-wide, so the pause is kept short).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc(enabled: bool = True) -> Iterator[None]:
    if not enabled or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
