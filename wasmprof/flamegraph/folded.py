"""Folded-stack output (``root;caller;leaf COUNT``), the FlameGraph lingua franca.

Names are made safe for the format: ``;`` (the separator) becomes ``:``, line breaks and
other control characters become ``?``; trailing spaces are dropped so the count stays the last
field. Lines are sorted, one per distinct stack.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from wasmprof.profiles import SymbolizedProfile, frame_label

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def folded_name(name: str) -> str:
    return _UNSAFE.sub("?", name.replace(";", ":")).strip() or "?"


def folded_lines(profile: SymbolizedProfile, *, group_by: str | None = None) -> list[str]:
    names: dict[int, str] = {}
    agg: dict[str, int] = {}
    for s in profile.samples:
        text = names.get(id(s.stack))
        if text is None:
            text = names[id(s.stack)] = ";".join(
                folded_name(frame_label(f)) for f in reversed(s.stack)) or "[empty stack]"
        if group_by:
            g = s.thread if group_by == "thread" else s.labels.get(group_by)
            text = folded_name(g or f"[no {group_by}]") + ";" + text
        agg[text] = agg.get(text, 0) + s.count
    return [f"{k} {v}" for k, v in sorted(agg.items())]


def write_folded(profile: SymbolizedProfile, out: BinaryIO, *, group_by: str | None = None) -> int:
    lines = folded_lines(profile, group_by=group_by)
    out.write(("\n".join(lines) + "\n").encode("utf-8"))
    return len(lines)
