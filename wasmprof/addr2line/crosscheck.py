"""A second reading of a function's inline scopes: LLVM's address-to-DIE map.

The index reads an address's inline chain as the innermost *live* scope covering it
(:mod:`wasmprof.addr2line.hygiene` decides what is live). Where a function's scopes nest
properly (each scope's ranges disjoint, inside its caller's, siblings disjoint), every
reader agrees on that chain. binaryen (Emscripten ``-O2 -g``, ``wasm-opt -g``) leaves scopes
that do not nest: an inlined scope whose ranges overlap each other or run outside its
caller's, two sibling scopes covering the same instruction. There the chain depends on how
the reader resolves the overlap, and llvm-symbolizer (LLVM's ``DWARFUnit`` address map:
ranges inserted in DIE order, a later range splitting the one it starts in and shadowing
it from its start, keys already inside it left standing) and wasm-tools (gimli's
``addr2line``: per depth, a binary search over all scopes of that depth) give answers that
differ from each other and from ours.

:func:`llvm_pieces` replays LLVM's map over the raw ranges of one subprogram's scopes (in
DIE order, the subprogram first), isolated from the other functions (their stray ranges
only add LLVM artifacts). The index compares it with its own innermost scope: where they
name different scopes the chain is unsure (function-only, with a reason naming both);
where they agree, two readings of the DWARF agree.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

TOMBSTONE = 0xFFFFFFFF       # LLVM drops a range starting at the tombstone (address size 4)


def nested(nodes: Sequence[int], ranges: Sequence[Sequence[tuple[int, int]]],
           parent: Sequence[int]) -> bool:
    """True when the scopes of one subprogram nest properly, so that LLVM's map and the
    innermost scope read the same everywhere and no inlined scope overhangs its caller:
    every range non-empty and below the tombstones, inside a range of its parent scope,
    disjoint from its siblings' and from the scope's other ranges. ``nodes[0]`` is the
    subprogram; ``parent``: each node's enclosing node (-1 for none)."""
    depth: dict[int, int] = {}
    items = []
    for node, rs in zip(nodes, ranges):
        p = parent[node]
        d = depth[node] = depth.get(p, -1) + 1 if p >= 0 else 0
        for lo, hi in rs:
            if not 0 < lo < hi < TOMBSTONE - 1:
                return False
            items.append((lo, -hi, d, node))
    items.sort()
    root = nodes[0]
    stack: list[tuple[int, int]] = []            # (end, node) of the enclosing ranges
    for lo, neg, _, node in items:
        while stack and stack[-1][0] <= lo:
            stack.pop()
        if not stack:
            if node != root:
                return False
        else:
            end, top = stack[-1]
            if -neg > end or parent[node] != top:
                return False
        stack.append((-neg, node))
    return True


def llvm_pieces(nodes: Sequence[int], ranges: Sequence[Sequence[tuple[int, int]]],
                live: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """LLVM's innermost scope over the live ranges ``live`` of one subprogram:
    ``[(lo, hi, node), ...]`` sorted, where ``node`` is one of ``nodes`` (the subprogram
    and its scopes, in DIE order) or -1 (LLVM's map has no scope there). ``ranges[k]``:
    the raw ranges of ``nodes[k]`` (dead ones included, as LLVM sees them)."""
    keys: list[int] = []
    ends: list[int] = []
    who: list[int] = []
    for node, rs in zip(nodes, ranges):
        for lo, hi in rs:
            if lo == hi or lo == TOMBSTONE:
                continue
            i = bisect_right(keys, lo)
            if i and lo < ends[i - 1]:          # starts inside an entry: split it
                bend, bnode = ends[i - 1], who[i - 1]
                if hi < bend:                   # the entry resumes after this range
                    j = bisect_left(keys, hi)
                    if j < len(keys) and keys[j] == hi:
                        ends[j], who[j] = bend, bnode
                    else:
                        keys.insert(j, hi)
                        ends.insert(j, bend)
                        who.insert(j, bnode)
                if lo > keys[i - 1]:
                    ends[i - 1] = lo
            j = bisect_left(keys, lo)
            if j < len(keys) and keys[j] == lo:
                ends[j], who[j] = hi, node
            else:
                keys.insert(j, lo)
                ends.insert(j, hi)
                who.insert(j, node)
    out: list[tuple[int, int, int]] = []
    n = len(keys)
    for lo, hi in sorted(live):
        x = lo
        i = bisect_right(keys, x) - 1
        while x < hi:
            nxt = keys[i + 1] if i + 1 < n else hi
            if i >= 0 and x < ends[i]:
                stop = min(ends[i], nxt, hi)
                node = who[i]
            else:
                stop = min(nxt, hi)
                node = -1
            if out and out[-1][1] == x and out[-1][2] == node:
                out[-1] = (out[-1][0], stop, node)
            else:
                out.append((x, stop, node))
            x = stop
            if x >= nxt:
                i += 1
    return out
