"""Does a recording belong to the module a user gave? Checks run before any frame is named.

Evidence, strongest first:

- **Perf-map segments** (WAMR writes one ``aot_func#0..K-1`` run per loaded AOT module): K
  must equal the module's defined-function count; with the ``.aot`` (text offsets known) the
  segment's address deltas must equal the AOT function offsets (function sizes); a
  ``[name]#`` prefix should name the module.
- **Single frames** (no perf map, or V8/Wasmtime perf-map frames): ``aot_func#N`` needs
  N < defined functions and, with the ``.aot``, an offset inside function N; a Wasmtime/V8
  function index must be a defined function of the module, and where both the recording and
  the module name that function, the names must agree (demangled).

A mismatch is a :class:`Mismatch` value; :class:`ModuleMismatchError` carries it to the CLI
(exit 2). The lenient path (server) keeps such frames unnamed with a note instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wasmprof.errors import WasmprofError
from wasmprof.model import Module, ModuleKind, RawFrame

ON_MISMATCH = ("raise", "note")
# Marks perf-map entries of a segment that matched none of the given modules (set as the
# entry's module; the map parser replaces control characters in real module names, so this
# prefix cannot come from a file).
MISMATCH_MARK = "\x00unmatched\x00"


class ModuleMismatchError(WasmprofError):
    """The recording contradicts the module given to name its frames."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    reason: str            # one sentence naming both sides, e.g. "perf map has 58 …, x has 65"
    module: str            # file name of the module that does not fit

    def error(self, source: str | None = None) -> ModuleMismatchError:
        return ModuleMismatchError(
            self.reason, source=source,
            expected="the module this recording was made with (--module), or "
                     "--on-mismatch note to keep such frames unnamed")


def check_on_mismatch(value: str) -> str:
    if value not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, not {value!r}")
    return value


def display(module: Module) -> str:
    return Path(module.path).name


def defined_count(module: Module) -> int:
    return len(module.functions) - module.import_function_count


def aot_offsets(module: Module) -> list[int] | None:
    """Text offsets of the defined functions (AOT index order) when the module (or the
    module it was paired with) is native code with a function table."""
    for m in (module, module.companion):
        if m is None or m.kind not in (ModuleKind.AOT, ModuleKind.ELF_OBJECT):
            continue
        offs = [f.text_offset for f in m.functions if not f.imported]
        if offs and all(o is not None for o in offs):
            return offs  # type: ignore[return-value]
    return None


_EXTENTS: dict[int, tuple[Module, list[int | None] | None]] = {}


def aot_extents(module: Module) -> list[int | None] | None:
    """Per AOT function, the distance to the next function's start (what a perf map's size
    is: the function plus alignment padding); None for the last one, whose perf-map range
    runs to the end of the loaded code (PLT included). Cached per module."""
    hit = _EXTENTS.get(id(module))
    if hit is not None and hit[0] is module:
        return hit[1]
    offs = aot_offsets(module)
    out: list[int | None] | None = None
    if offs is not None:
        order = sorted(range(len(offs)), key=offs.__getitem__)
        out = [None] * len(offs)
        for a, b in zip(order, order[1:]):
            out[a] = offs[b] - offs[a]
    if len(_EXTENTS) > 64:
        _EXTENTS.clear()
    _EXTENTS[id(module)] = (module, out)
    return out


def function_names(module: Module, index: int) -> set[str]:
    """Every name the module (and its companion) gives Wasm function ``index``, raw and
    demangled."""
    from wasmprof.addr2line.demangle import demangle

    out: set[str] = set()
    for m in (module, module.companion):
        if m is None or not 0 <= index < len(m.functions):
            continue
        f = m.functions[index]
        for n in ([f.name] if f.name else []) + list(f.exports):
            out.add(n)
            out.add(demangle(n))
    return out


def names_agree(printed: str, names: set[str]) -> bool:
    from wasmprof.addr2line.demangle import demangle

    return printed in names or demangle(printed) in names


@dataclass(slots=True)
class SegmentFit:
    """How one perf-map segment fits one module."""

    module: Module
    fits: bool
    strong: bool = False          # function offsets checked (the .aot was given)
    reason: str | None = None     # why it does not fit


def fit_segment(starts: list[int], module: Module, where: str) -> SegmentFit:
    """``starts``: the segment's entry addresses (aot_func#0..K-1)."""
    n, have = len(starts), defined_count(module)
    if n != have:
        return SegmentFit(module, False, reason=f"{where} has {n} AOT functions, "
                                                f"{display(module)} has {have}")
    offs = aot_offsets(module)
    if offs is None:
        return SegmentFit(module, True)
    deltas = [s - starts[0] for s in starts]
    want = [o - offs[0] for o in offs]
    if deltas != want:
        k = next(i for i, (a, b) in enumerate(zip(deltas, want)) if a != b)
        return SegmentFit(module, False, reason=(
            f"{where}: aot_func#{k} starts at +0x{deltas[k]:x}, in {display(module)} at "
            f"+0x{want[k]:x} (the functions have other sizes: a different build)"))
    return SegmentFit(module, True, strong=True)


_ALL_NAMES: dict[int, tuple[Module, set[str]]] = {}


def all_names(module: Module) -> set[str]:
    """Every function name of ``module`` and its companion (raw and demangled), cached."""
    hit = _ALL_NAMES.get(id(module))
    if hit is not None and hit[0] is module:
        return hit[1]
    out: set[str] = set()
    for i in range(len(module.functions)):
        out |= function_names(module, i)
    if len(_ALL_NAMES) > 64:
        _ALL_NAMES.clear()
    _ALL_NAMES[id(module)] = (module, out)
    return out


def check_frame(raw: RawFrame, module: Module) -> Mismatch | None:
    """A single Wasm frame of the recording against ``module`` (see the module doc)."""
    if raw.aot_index is not None:
        have = defined_count(module)
        if raw.aot_index >= have:
            return Mismatch(f"the recording has aot_func#{raw.aot_index}, "
                            f"{display(module)} has {have} AOT functions "
                            f"(aot_func#0..{have - 1})", display(module))
        sizes = aot_extents(module)
        if sizes is not None and raw.offset is not None:
            size = sizes[raw.aot_index]
            # a caller's offset is a return address: it may equal the size
            probe = raw.offset - 1 if raw.index > 0 and raw.offset else raw.offset
            if size is not None and probe >= size:
                return Mismatch(f"the recording has aot_func#{raw.aot_index}+0x{raw.offset:x}, "
                                f"past the end of that function in {display(module)} "
                                f"(0x{size:x} bytes)", display(module))
        return None
    if raw.func_index is not None:
        n = raw.func_index
        total, imports = len(module.functions), module.import_function_count
        if not imports <= n < total:
            return Mismatch(f"the recording has Wasm function {n}, {display(module)} defines "
                            f"functions {imports}..{total - 1}", display(module))
        if raw.printed_name:
            names = function_names(module, n)
            if names and not names_agree(raw.printed_name, names):
                return Mismatch(f"the recording names function {n} {raw.printed_name!r}, "
                                f"{display(module)} names it {sorted(names)[0]!r}",
                                display(module))
        return None
    if raw.printed_name:       # Wasmtime perf maps name functions by name alone
        names = all_names(module)
        if names and not names_agree(raw.printed_name, names):
            return Mismatch(f"the recording names a Wasm function {raw.printed_name!r}, which "
                            f"{display(module)} does not have", display(module))
    return None
