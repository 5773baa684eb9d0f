"""Folded stacks (``root;caller;leaf 42``, Brendan Gregg's format) → Profile.

Frame names:

- ``aot_func#N``, ``aot_func_internal#N``, ``[module]#aot_func#N`` (WAMR perf maps, as
  ``stackcollapse-perf.pl`` prints them): ``space=perf, aot_index=N`` without an offset, so
  they resolve to a function but never to a line;
- ``$fN``: a Wasm function index (``func_index=N``);
- ``name_[k]`` (kernel, ``stackcollapse-perf.pl --kernel``): a host frame; ``_[j]``/``_[i]``
  suffixes are dropped;
- anything else is kept as printed (``printed_name``), not looked up.

Damaged lines (no trailing count) are skipped and counted in ``Profile.notes``; a file
without one valid line raises :class:`~wasmprof.errors.LogFormatError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import BinaryIO

from wasmprof.errors import LogFormatError
from wasmprof.ingest.perf_map import AOT_SYMBOL
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

_FUNC_INDEX = re.compile(r"^\$f(\d+)$")
_ANNOTATION = re.compile(r"_\[([kjiw])\]$")


def folded_frame(name: str, position: int) -> RawFrame:
    """One folded-stack frame name → RawFrame (see module doc)."""
    kernel = False
    if (a := _ANNOTATION.search(name)) is not None:
        kernel = a[1] == "k"
        name = name[:a.start()]
    if (m := AOT_SYMBOL.match(name)) is not None:
        return RawFrame(index=position, space=AddressSpace.PERF, printed_name=name,
                        aot_index=int(m["n"]), module=m["module"], raw=name)
    if (f := _FUNC_INDEX.match(name)) is not None:
        return RawFrame(index=position, space=AddressSpace.FILE, printed_name=name,
                        func_index=int(f[1]), raw=name)
    return RawFrame(index=position, space=AddressSpace.NATIVE, printed_name=name,
                    native=kernel, module="[kernel.kallsyms]" if kernel else None, raw=name)


def parse_folded(stream: BinaryIO, *, source: str = "<folded>",
                 progress: Callable[[int], None] | None = None) -> Profile:
    samples: list[Sample] = []
    frames: dict[tuple[str, int], RawFrame] = {}
    bad = 0
    first_bad: int | None = None
    done = 0
    for lineno, bline in enumerate(stream, 1):
        done += len(bline)
        if progress and lineno % 4096 == 0:
            progress(done)
        line = bline.decode("utf-8", "replace").rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
            if count < 0 or not stack_text:
                raise ValueError
        except ValueError:
            bad += 1
            first_bad = first_bad or lineno
            continue
        names = stack_text.split(";")
        names.reverse()                     # leaf first
        stack = []
        for i, n in enumerate(names):
            key = (n, i)
            fr = frames.get(key)
            if fr is None:
                fr = frames[key] = folded_frame(n, i)
            stack.append(fr)
        samples.append(Sample(stack=tuple(stack), count=count))
    if not samples:
        raise LogFormatError("no folded stack line found", source=source,
                             expected="lines 'frame;frame;... COUNT'",
                             found=f"first damaged line {first_bad}" if first_bad else "nothing")
    notes = [f"{bad} line(s) without 'stack COUNT' skipped (first: line {first_bad})"] if bad else []
    return Profile(samples=samples, unit="samples", source=source, notes=notes)


def looks_like_folded(head: bytes) -> bool:
    for line in head.split(b"\n")[:20]:
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        stack, _, count = line.rpartition(b" ")
        return bool(stack) and count.isdigit()
    return False
