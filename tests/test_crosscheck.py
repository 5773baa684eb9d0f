"""LLVM's reading of a function's inline scopes (wasmprof.addr2line.crosscheck) and the
index's use of it: where it names another scope than the innermost live one, the chain is
unsure; where scopes nest, both readings agree everywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wasmprof.addr2line.crosscheck import llvm_pieces, nested
from wasmprof.addr2line.fastdwarf import LineTable, Unit, UnitScopes
from wasmprof.addr2line.hygiene import CodeLayout
from wasmprof.addr2line.index import build_block


def _at(pieces, x):
    return next((n for lo, hi, n in pieces if lo <= x < hi), None)


def test_llvm_reading_of_overlapping_ranges():
    """binaryen's ``ZSTD_fracWeight`` in Emscripten -O2 zstd: ranges ``[0x1c3db, 0x1c3dc)``
    then ``[0x1c3c4, 0x1c3e8)`` inside its caller ``[0x1c3ae, 0x1c3eb)``, a child at
    ``[0x1c3e4, 0x1c3e7)``. llvm-symbolizer answers the caller at 0x1c3dc (the split entry
    resumes there and the later, wider range does not remove it)."""
    nodes = [0, 1, 2, 3]
    ranges = [[(0x1b19c, 0x1d31a)], [(0x1c3ae, 0x1c3eb)],
              [(0x1c3db, 0x1c3dc), (0x1c3c4, 0x1c3e8)], [(0x1c3e4, 0x1c3e7)]]
    got = llvm_pieces(nodes, ranges, [(0x1b19c, 0x1d31a)])
    assert _at(got, 0x1c3c4) == 2 and _at(got, 0x1c3db) == 2
    assert _at(got, 0x1c3dc) == 1 and _at(got, 0x1c3e4) == 3 and _at(got, 0x1c3e7) == 1
    assert _at(got, 0x1c3eb) == 0 and _at(got, 0x1b19c) == 0
    # pieces tile the live ranges, sorted, without gaps
    assert got[0][0] == 0x1b19c and got[-1][1] == 0x1d31a
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
    # a range at the tombstone, an empty one and a stale one ending before it starts
    assert llvm_pieces([0, 1], [[(0x10, 0x40)], [(0xFFFFFFFF, 0xFFFFFFFF), (0x20, 0x20),
                                                 (0x30, 0x28)]], [(0x10, 0x40)]) == \
        [(0x10, 0x30, 0), (0x30, 0x40, -1)]


@st.composite
def nested_scopes(draw):
    """A subprogram ``[0x100, 0x400)`` and inlined scopes that nest properly: each scope's
    ranges disjoint and inside its parent's, siblings disjoint (what compilers emit)."""
    nodes = [(-1, [(0x100, 0x400)])]

    def grow(parent: int, lo: int, hi: int, depth: int) -> None:
        x = lo
        while depth < 4 and hi - x > 8 and draw(st.booleans()):
            a = draw(st.integers(x, hi - 4))
            b = draw(st.integers(a + 1, min(hi, a + 0x80)))
            nodes.append((parent, [(a, b)]))
            grow(len(nodes) - 1, a, b, depth + 1)
            x = b
    grow(0, 0x100, 0x400, 0)
    return nodes


@settings(max_examples=60, deadline=None)
@given(nested_scopes())
def test_both_readings_agree_where_scopes_nest(nodes):
    pieces = llvm_pieces(range(len(nodes)), [r for _, r in nodes], [(0x100, 0x400)])
    for x in range(0x100, 0x400, 3):
        inner = max((i for i, (_, rs) in enumerate(nodes)
                     if any(lo <= x < hi for lo, hi in rs)), default=-1)
        assert _at(pieces, x) == inner, hex(x)
    blk = _block([(p, 0 if p < 0 else 1, r, f"f{i}") for i, (p, r) in enumerate(nodes)])
    assert all(w == -1 for w in blk.seg_why), "nesting scopes are never unsure"


def _block(nodes):
    sc = UnitScopes(0)
    for parent, kind, ranges, name in nodes:
        sc.parent.append(parent)
        sc.kind.append(kind)
        sc.ranges.append(ranges)
        sc.call.append((1, 9, 2))
        sc.origin.append((name, None, None))
        sc.decl.append((None, 0))
    names = [(o[0], None, None, 0) for o in sc.origin]
    lines = LineTable(["<0>", "/src/a.c"], [([0x10, 0x200], [1, -1], [5, 0], [1, 0])])
    return build_block(None, [Unit(0, 0, 0, 4, 1, 4, 0, 0)], {0: (sc, names, lines)},
                       _layout(nodes))


def _layout(nodes) -> CodeLayout:
    """One function body: the subprogram's range."""
    lo, hi = nodes[0][2][0]
    return CodeLayout((lo,), (hi,), (3,))


def test_index_marks_where_the_readings_disagree():
    """Two sibling scopes covering the same instructions (binaryen's ``ZSTD_hash4`` with an
    end marker and ``MEM_read64`` in Emscripten -O2 zstd): the index's innermost live scope
    is the deeper one, LLVM's map the one whose range starts at the address; there the
    chain is unsure and the reason names both."""
    from wasmprof.addr2line.chains import ChainLookup
    blk = _block([
        (-1, 0, [(0x10, 0x200)], "outer"),
        (0, 1, [(0x40, 0x80)], "hash4Ptr"),
        (1, 1, [(0x50, 0x80)], "hash4"),
        (0, 1, [(0x30, 0x70)], "hashPtr"),
        (3, 1, [(0x30, 0x70)], "hash8Ptr"),
        (4, 1, [(0x30, 0x70)], "MEM_read64"),
    ])
    look = ChainLookup(blk, _layout([(-1, 0, [(0x10, 0x200)])]), lambda i: None,
                       lambda i: f"$f{i}")
    unsure, sure, clean = look.lookup([0x50, 0x35, 0x20])
    assert isinstance(unsure, str) and "MEM_read64" in unsure and "hash4" in unsure
    assert [s[0] for s in sure[0]] == ["MEM_read64", "hash8Ptr", "hashPtr", "outer"]
    assert [s[0] for s in clean[0]] == ["outer"]
    assert any("LLVM's range map" in n for n in blk.notes)


@settings(max_examples=60, deadline=None)
@given(nested_scopes())
def test_nesting_scopes_are_recognised(nodes):
    parent = [p for p, _ in nodes]
    assert nested(range(len(nodes)), [r for _, r in nodes], parent)


def test_what_does_not_nest():
    parent = [-1, 0, 0, 1]
    ok = [[(0x10, 0x80)], [(0x20, 0x40)], [(0x40, 0x60)], [(0x20, 0x30)]]
    assert nested(range(4), ok, parent)
    for k, bad in [(2, [(0x38, 0x60)]),                  # overlaps its sibling
                   (3, [(0x38, 0x48)]),                  # runs out of its caller
                   (3, [(0x40, 0x48)]),                  # inside its caller's caller only
                   (1, [(0x20, 0x40), (0x30, 0x38)]),    # overlaps itself
                   (1, [(0, 0x40)]),                     # binaryen's ghost
                   (1, [(0x20, 0x1_0000_0000)]),         # binaryen's end marker
                   (2, [(0x50, 0x50)])]:                 # empty
        rs = [list(r) for r in ok]
        rs[k] = bad
        assert not nested(range(4), rs, parent), (k, bad)
