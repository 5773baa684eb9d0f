"""DWARF hygiene for Wasm: which address ranges of a scope are alive (formats.md §6.4).

Toolchains leave dead and stale ranges in Wasm DWARF; these rules decide, identically for
the complete index, the partial (small-job) index and the pyelftools reference, which
parts of a subprogram's or inlined subroutine's ranges are kept:

- a range starting at 0 is dead: code offset 0 is the Code section's function-count LEB,
  never an instruction (binaryen's ghost DIEs: ``DW_AT_low_pc 0``, ``[0, 0x12c)``);
- tombstones (start >= 0xFFFFFFFE, wasm-ld's dead code) and empty or negative ranges are
  dead;
- with the module's function bodies known (:class:`CodeLayout`): a range whose start lies
  outside every function body (past the Code section, inside a body-size LEB) is dead, and
  one running past the end of the body it starts in is clipped to that body (binaryen
  108's ``DW_AT_high_pc 0x100000000`` end markers: the true end was lost). The index
  then also ends such an inlined range where the next range of another scope of the same
  function starts (:func:`cap_end_markers`): that is where llvm-symbolizer and wasm-tools
  stop reporting it too, and at a trap that ends the function it keeps the chain; the
  part cut off is treated like a ghost range (the scope may still run there);
- an inlined subroutine's ranges are clipped to the live ranges of the subprogram it
  belongs to (an inline instance cannot run outside the function it was inlined into);
  everything nested in a dead subprogram is dead. An intermediate inlined scope whose own
  ranges died still encloses its live children (binaryen sometimes leaves a parent's
  range at ``[0, 1)`` while its children keep real ranges; llvm-symbolizer and
  wasm-tools then still report the whole chain). Where an inlined scope's range runs past
  its caller's (binaryen moved code; callers that lost ranges themselves do not count),
  the index marks the chain there unsure.

:func:`live_ranges` applies them and returns why a range died, so the index can report
counts (``IndexBlock.notes``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

TOMBSTONE_MIN = 0xFFFFFFFE
ADDRESS_END = 0x1_0000_0000

DEAD_ZERO = "starts at code offset 0 (binaryen ghost)"
DEAD_TOMBSTONE = "tombstone (dead code)"
DEAD_EMPTY = "empty or negative length"
DEAD_OUTSIDE = "starts outside every function body"
DEAD_OUTSIDE_PARENT = "inlined range outside its subprogram's ranges"
CLIPPED = "ends past its function body (clipped)"

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CodeLayout:
    """Function bodies as code offsets (DWARF addresses): ``starts[i]``..``ends[i]``,
    sorted, non-overlapping. ``wasm_index[i]`` is body i's Wasm function index."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    wasm_index: tuple[int, ...]

    @classmethod
    def of_wasm(cls, wasm) -> "CodeLayout | None":
        """The layout of a ``WasmBinary`` (None when it has no Code section)."""
        cps = getattr(wasm, "code_payload_start", None)
        bodies = getattr(wasm, "bodies", None)
        if cps is None or not bodies:
            return None
        return cls(tuple(b.start - cps for b in bodies), tuple(b.end - cps for b in bodies),
                   tuple(b.wasm_index for b in bodies))

    def body_at(self, address: int) -> int:
        """Position of the body holding code ``address``, or -1."""
        i = bisect_right(self.starts, address) - 1
        return i if i >= 0 and address < self.ends[i] else -1


def live_ranges(ranges: Sequence[Range], layout: CodeLayout | None,
                parent: Sequence[Range] | None = None,
                dead: dict[str, int] | None = None,
                clipped: list[int] | None = None) -> list[Range]:
    """The live parts of ``ranges`` (see the module doc); ``parent``: for an inlined
    subroutine, the live ranges of its subprogram. ``dead`` counts the reasons of dropped or
    clipped ranges; ``clipped`` receives the positions (in the result) of the ranges whose
    end was an end marker past the function body."""
    out: list[Range] = []
    for lo, hi in ranges:
        why = None
        marker = False
        if lo >= TOMBSTONE_MIN:
            why = DEAD_TOMBSTONE
        elif lo == 0:
            why = DEAD_ZERO
        elif hi <= lo:
            why = DEAD_EMPTY
        elif layout is not None:
            i = layout.body_at(lo)
            if i < 0:
                why = DEAD_OUTSIDE
            elif hi > layout.ends[i]:
                hi = layout.ends[i]
                marker = True
        elif hi > ADDRESS_END:
            hi = ADDRESS_END
            marker = True
        if marker and dead is not None:
            dead[CLIPPED] = dead.get(CLIPPED, 0) + 1
        if why is None and parent is not None:
            pieces = [(max(lo, plo), min(hi, phi)) for plo, phi in parent
                      if plo < hi and lo < phi]
            if not pieces:
                why = DEAD_OUTSIDE_PARENT
            else:
                if marker and clipped is not None:
                    clipped.append(len(out) + len(pieces) - 1)
                out.extend(pieces)
                continue
        if why is None:
            if marker and clipped is not None:
                clipped.append(len(out))
            out.append((lo, hi))
        elif dead is not None:
            dead[why] = dead.get(why, 0) + 1
    return out


def sequence_live(start: int, layout: CodeLayout | None) -> bool:
    """A line sequence is used only when it starts at a real instruction address: not 0,
    not a tombstone, inside a function body when the layout is known."""
    if start == 0 or start >= TOMBSTONE_MIN:
        return False
    return layout is None or layout.body_at(start) >= 0


def cap_end_markers(parent: Sequence[int], root: Sequence[int],
                    live: list[list[Range]], marked: list[tuple[int, int]]
                    ) -> list[tuple[int, int, int]]:
    """End each clipped end-marker range ``live[node][k]`` (``marked``: (node, k) pairs) of an
    inlined scope at the first later start of a range of another scope of the same
    subprogram that is not nested in it (in place). ``parent``/``root``: each node's
    enclosing node (-1 for none) and subprogram. Returns the cut-off parts ``(lo, hi,
    node)``: the scope may still run there (its true end is unknown)."""
    cut: list[tuple[int, int, int]] = []
    if not marked:
        return cut
    starts: dict[int, list[tuple[int, int]]] = {}       # subprogram -> [(lo, node)]
    for node, rs in enumerate(live):
        if rs:
            bucket = starts.setdefault(root[node], [])
            bucket.extend((lo, node) for lo, _ in rs)
    for bucket in starts.values():
        bucket.sort()

    def nested(node: int, inside: int) -> bool:
        while node >= 0:
            if node == inside:
                return True
            node = parent[node]
        return False

    for node, k in marked:
        if parent[node] < 0:
            continue                    # a subprogram keeps its whole body
        lo, hi = live[node][k]
        bucket = starts.get(root[node], [])
        for other_lo, other in bucket[bisect_right(bucket, (lo, 1 << 62)):]:
            if other_lo >= hi:
                break
            if not nested(other, node):
                if other_lo > lo:
                    cut.append((other_lo, hi, node))
                    hi = other_lo
                break
        live[node][k] = (lo, hi)
    return cut
