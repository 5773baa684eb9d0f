"""DWARF range hygiene rules (wasmprof.addr2line.hygiene) on hand-made ranges, and the
index built from them: what binaryen leaves behind never becomes a chain."""

from __future__ import annotations

from wasmprof.addr2line.fastdwarf import LineTable, Unit, UnitScopes
from wasmprof.addr2line.hygiene import (CLIPPED, DEAD_EMPTY, DEAD_OUTSIDE, DEAD_OUTSIDE_PARENT,
                                        DEAD_TOMBSTONE, DEAD_ZERO, CodeLayout, cap_end_markers,
                                        live_ranges, sequence_live)
from wasmprof.addr2line.index import build_block

# two bodies: [0x10, 0x80) and [0x90, 0x100) (code offsets)
LAYOUT = CodeLayout((0x10, 0x90), (0x80, 0x100), (3, 4))


def test_dead_and_clipped_ranges():
    dead: dict[str, int] = {}
    clipped: list[int] = []
    got = live_ranges([(0, 0x12c), (0xFFFFFFFF, 0xFFFFFFFF + 8), (0x20, 0x20), (0x84, 0x88),
                       (0x200, 0x210), (0x20, 0x40), (0x60, 0x1_0000_0000)], LAYOUT, None,
                      dead, clipped)
    assert got == [(0x20, 0x40), (0x60, 0x80)] and clipped == [1]
    assert dead == {DEAD_ZERO: 1, DEAD_TOMBSTONE: 1, DEAD_EMPTY: 1, DEAD_OUTSIDE: 2, CLIPPED: 1}
    # an inlined range is kept inside its subprogram's ranges
    assert live_ranges([(0x30, 0x70)], LAYOUT, [(0x20, 0x40), (0x60, 0x80)]) == \
        [(0x30, 0x40), (0x60, 0x70)]
    d2: dict[str, int] = {}
    assert live_ranges([(0x92, 0x98)], LAYOUT, [(0x20, 0x40)], d2) == [] and \
        d2 == {DEAD_OUTSIDE_PARENT: 1}
    assert not sequence_live(0, LAYOUT) and not sequence_live(0x84, LAYOUT)
    assert sequence_live(0x10, LAYOUT) and sequence_live(0x10, None)


def test_end_markers_end_at_the_next_scope():
    # subprogram 0 [0x10, 0x80); inline 1 starts at 0x20 with an end marker; inline 2 (its
    # sibling) starts at 0x50; inline 3 (nested in 1) at 0x30
    parent = [-1, 0, 0, 1]
    root = [0, 0, 0, 0]
    live = [[(0x10, 0x80)], [(0x20, 0x80)], [(0x50, 0x60)], [(0x30, 0x38)]]
    cap_end_markers(parent, root, live, [(1, 0)])
    assert live[1] == [(0x20, 0x50)]          # not past the sibling, the nested one kept
    live = [[(0x10, 0x80)], [(0x70, 0x80)]]
    cap_end_markers([-1, 0], [0, 0], live, [(1, 0)])
    assert live[1] == [(0x70, 0x80)]          # a trap that ends the function keeps its chain


def _block(nodes, lines):
    sc = UnitScopes(0)
    for parent, kind, ranges, name, call in nodes:
        sc.parent.append(parent)
        sc.kind.append(kind)
        sc.ranges.append(ranges)
        sc.call.append(call)
        sc.origin.append((name, None, None))
        sc.decl.append((None, 0))
    names = [(o[0], None, None, 0) for o in sc.origin]
    return build_block(None, [Unit(0, 0, 0, 4, 1, 4, 0, 0)], {0: (sc, names, lines)}, LAYOUT)


def test_ghost_chains_never_reach_other_functions():
    """binaryen's ``[0, 0x12c)`` inlined ghosts: dead, and they never give a chain to
    addresses of another function; where the ghost could own the line inside its own
    function the index marks the segment (the lookup then says the chain is unsure)."""
    lines = LineTable(["<0>", "/src/a.c"], [([0x10, 0x80], [1, -1], [5, 0], [1, 0]),
                                            ([0x90, 0x100], [1, -1], [40, 0], [1, 0])])
    blk = _block([
        (-1, 0, [(0x10, 0x80)], "outer", (None, 0, 0)),
        (0, 1, [(0, 0x12c)], "ghost", (1, 7, 3)),            # ghost inside outer
        (-1, 0, [(0x90, 0x100)], "other", (None, 0, 0)),
        (-1, 0, [(0, 0x300)], "dead_sub", (None, 0, 0)),     # ghost subprogram
    ], lines)
    assert blk.chain(0x95) == [("other", None, "/src/a.c", 40, 1)]
    assert blk.chain(0x20) == [("outer", None, "/src/a.c", 5, 1)]
    seg = blk.seg_start.tolist().index(0x10)
    assert blk.seg_why[seg] <= -2                             # the ghost is recorded there
    seg2 = blk.seg_start.tolist().index(0x90)
    assert blk.seg_why[seg2] == -1
    assert any("ghost" in n or "dead-code" in n for n in blk.notes)
