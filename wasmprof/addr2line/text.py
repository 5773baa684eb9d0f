"""The text ``wasmprof addr2line`` prints for a frame (its default output style).

One address prints ``0x3fc: fn at file:line:column (inlined) [status: reason]``, its
callers below it, each indented by the width of the address plus two. Everything here
is shared by the per-address renderer and the bulk text table
(:mod:`wasmprof.addr2line.texttable`), so both print the same bytes.

Names and paths come from modules: :func:`clean` escapes control characters so that
nothing reaches a terminal raw (which also keeps :data:`PAD`, a NUL, out of any text).
"""

from __future__ import annotations

import re
from functools import lru_cache

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# where a caller's line starts: "\n" + (address width + 2) spaces once the width is known
PAD = "\0"


@lru_cache(maxsize=65536)
def clean(text: str | None) -> str:
    """Names come from modules and logs: never let control characters reach a terminal."""
    if text is None:
        return "??"
    if text.isascii() and text.isprintable():
        return text
    return _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def where(file: str | None, line: int | None, column: int | None) -> str:
    """``file:line:column`` as printed (``??`` for no file; no line/column when 0)."""
    out = clean(file) if file else "??"
    if line:
        out += f":{line}"
        if column:
            out += f":{column}"
    return out


def status_text(status, reason: str | None) -> str:
    """`` [status: reason]`` for a frame that is not exact, else nothing."""
    return "" if status == "exact" else f" [{status}: {clean(reason)}]"


def frame_fields(f) -> tuple:
    """A frame's fields as the renderers read them, from a Frame or a bulk entry's tuple
    ``(function, status, raw_function, file, line, column, inlined, reason)``."""
    if f.__class__ is tuple:
        return (*f, None, None)
    return (f.function, f.status, f.raw_function, f.file, f.line, f.column, f.inlined,
            f.reason, f.decl_file, f.decl_line)


@lru_cache(maxsize=65536)
def text_frame(fields: tuple) -> str:
    """One frame (fields as :func:`frame_fields` gives them) without the address."""
    fn, status, _, file, line, col, inlined, reason, decl_file, decl_line = fields
    s = f"{clean(fn)} at {where(file, line, col)}"
    if inlined:
        s += " (inlined)"
    if status != "exact":
        if decl_file:
            s += f" (declared at {clean(decl_file)}:{decl_line or 0})"
        s += f" [{status}: {clean(reason)}]"
    return s


def frames_text(frames: list) -> str:
    """What follows an address for a chain of frames: ``": " + frame`` lines joined by
    :data:`PAD` (``?? [unknown]`` for no frame), ending with a newline."""
    lines = [text_frame(frame_fields(f)) for f in frames] or ["?? [unknown]"]
    return f": {PAD.join(lines)}\n"


def pad_for(width: int) -> str:
    """What :data:`PAD` becomes after an address printed ``width`` characters wide."""
    return "\n" + " " * (width + 2)
