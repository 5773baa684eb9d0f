"""Folded-stack output (``root;caller;leaf COUNT``), the FlameGraph lingua franca.

Names are made safe for the format: ``;`` (the separator) becomes ``:``, line breaks and
other control characters become ``?``; trailing spaces are dropped so the count stays the last
field. Lines are sorted, one per distinct stack. ``group_by`` adds a root frame (``thread``:
``comm/tid``; ``process``: ``comm-pid`` like ``stackcollapse-perf.pl --pid``; or a label);
``annotate`` appends FlameGraph's ``_[k]`` to kernel frames (read back by
:mod:`wasmprof.ingest.folded`).
"""

from __future__ import annotations

import re
from typing import BinaryIO

from wasmprof.profiles import SymbolizedProfile, frame_label, sample_group

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def folded_name(name: str) -> str:
    return _UNSAFE.sub("?", name.replace(";", ":")).strip() or "?"


def folded_lines(profile: SymbolizedProfile, *, group_by: str | None = None,
                 annotate: bool = False) -> list[str]:
    names: dict[int, str] = {}
    agg: dict[str, int] = {}
    for s in profile.samples:
        text = names.get(id(s.stack))
        if text is None:
            text = names[id(s.stack)] = ";".join(
                folded_name(frame_label(f)) + ("_[k]" if annotate and f.kernel else "")
                for f in reversed(s.stack)) or "[empty stack]"
        if group_by:
            text = folded_name(sample_group(s, group_by) or "") + ";" + text
        agg[text] = agg.get(text, 0) + s.count
    return [f"{k} {v}" for k, v in sorted(agg.items())]


def write_folded(profile: SymbolizedProfile, out: BinaryIO, *, group_by: str | None = None,
                 annotate: bool = False) -> int:
    lines = folded_lines(profile, group_by=group_by, annotate=annotate)
    out.write(("\n".join(lines) + "\n").encode("utf-8"))
    return len(lines)
