"""What DWARF says at a code address: the one lookup behind every resolution path.

:class:`ChainLookup` answers, for code addresses, from an :class:`IndexBlock` (complete or
partial, see :mod:`wasmprof.addr2line.debuginfo`) and the module's function bodies:

- an *entry* ``(specs, wasm_index, tail)``: the inline chain innermost first as Frame field
  tuples ``(function, status, raw_function, file, line, column, inlined, reason)``;
  ``tail`` is the memoised list of the tuples after the innermost (the same object for
  every address in the same scope, None for a chain of one);
- a *reason* (str) when DWARF covers the address but cannot be trusted there: the DWARF
  subprogram does not match the function body holding the address (stale DWARF: the
  module was rewritten without updating it), or a ghost range makes the inline chain
  unsure (see :mod:`wasmprof.addr2line.index`);
- None when no function body or no live DWARF scope holds the address.

``Resolver.resolve``, ``resolve_many``, ``resolve_addresses`` (and through them
``symbolize``, ``addr2line``, the server and profiles) all answer through
:meth:`ChainLookup.lookup`, so they agree on function, chain and status.
:meth:`ChainLookup.slots` adds a memo for bulk jobs: one bisect over a merged boundary
list finds the slot holding the answer for every address between two boundaries.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import repeat

from wasmprof.addr2line.demangle import demangle, is_mangled
from wasmprof.addr2line.hygiene import CodeLayout
from wasmprof.addr2line.index import IndexBlock
from wasmprof.model import FrameStatus

EXACT = FrameStatus.EXACT
FUNCTION_ONLY = FrameStatus.FUNCTION_ONLY
NO_ROW = "no line-table row at this address"
LINE_0 = "line 0: compiler-generated code"

Entry = tuple[list[tuple], int, "list[tuple] | None"]


@lru_cache(maxsize=65536)
def display_name(name: str | None, linkage: str | None) -> str | None:
    """What users read: the demangled linkage name when it is mangled, else DW_AT_name."""
    if linkage and is_mangled(linkage):
        return demangle(linkage)
    if name:
        return demangle(name) if is_mangled(name) else name
    return linkage


class ChainLookup:
    """Lookups over one :class:`IndexBlock` for one module layout (see the module doc).
    ``section_name(idx)`` names functions DWARF leaves unnamed; ``describe(idx)`` says
    which function an index is, for reasons."""

    def __init__(self, block: IndexBlock, layout: CodeLayout,
                 section_name: Callable[[int], str | None],
                 describe: Callable[[int], str]) -> None:
        self.block = block
        self.layout = layout
        self._section_name = section_name
        self._describe = describe
        inf = -(1 << 62)
        # shifted by one (a sentinel first): bisect_right positions index them directly
        self._seg_node = [-1, *block.seg_node]
        self._seg_why = [-1, *block.seg_why] if len(block.seg_why) == len(block.seg_node) \
            else [-1] * (len(block.seg_node) + 1)
        self._row_file = [-1, *block.row_file]
        self._row_line = [0, *block.row_line]
        self._row_col = [0, *block.row_col]
        self._ends = [inf, *layout.ends]
        self._starts1 = [inf, *layout.starts]
        self._widx = [-1, *layout.wasm_index]
        self._names: dict[tuple[int, int], tuple] = {}
        self._tails: dict[tuple[int, int], list[tuple]] = {}
        self._segs: list = [None] * (len(block.seg_start) + 1)
        self._rows: list = [None] * (len(block.row_addr) + 1)
        self._roots: dict[int, int] = {}
        self._stale: dict[tuple[int, int], str | None] = {}
        self._table: tuple[list[int], list] | None = None

    # -- the lookup ----------------------------------------------------------------------
    def lookup(self, codes: Sequence[int]) -> list[Entry | str | None]:
        """The answer at each code address (see the module doc); bisects batched in C,
        everything that depends on the segment only (names, callers, staleness) memoised
        per segment."""
        segs, rows = self.positions(codes)
        memo = self._segs
        out: list = []
        append = out.append
        rowinfo = self._rows
        for seg, row in zip(segs, rows):
            s = memo[seg]
            if s is None:
                s = self.segment(seg)
            if s.__class__ is not tuple:
                append(s)
                continue
            nm, idx, tail, ghosts, node = s
            if ghosts >= 0:
                why = self._ghosts_reason(ghosts, node, row)
                if why is not None:
                    append(why)
                    continue
            r = rowinfo[row]
            if r is None:
                r = self.row(row)
            first = (nm[0], r[3], nm[1], r[0], r[1], r[2], nm[2], r[4])
            append(([first], idx, None) if tail is None else ([first, *tail], idx, tail))
        return out

    def positions(self, codes: Sequence[int]) -> tuple[list[int], list[int]]:
        """(segment, row) positions of code addresses, as :meth:`segment` and :meth:`row`
        take them (bisects in C)."""
        n = len(codes)
        blk = self.block
        return (list(map(bisect_right, repeat(blk.seg_start, n), codes)),
                list(map(bisect_right, repeat(blk.row_addr, n), codes)))

    def row(self, row: int) -> tuple:
        """``(file, line, column, status, reason)`` of the innermost frame from line row
        ``row`` (a :meth:`positions` row): exact with a line, function-only for "no row"
        and for DWARF's line 0. Memoised."""
        got = self._rows[row]
        if got is None:
            f = self._row_file[row]
            if f == -1:
                got = (None, None, None, FUNCTION_ONLY, NO_ROW)
            else:
                file = self.block.strings[f] if f >= 0 else None
                line = self._row_line[row]
                got = (file, line, self._row_col[row], EXACT, None) if line else \
                    (file, None, None, FUNCTION_ONLY, LINE_0)
            self._rows[row] = got
        return got

    def row_columns(self) -> tuple[list[int], list[int], list[int]]:
        """The line-row arrays :meth:`row` reads, by :meth:`positions` row (0: before the
        first row): file (string id; -1 no row, -2 a file the table does not name), line
        (0: DWARF's line 0), column. For bulk renderers; :meth:`row` says what they mean."""
        return self._row_file, self._row_line, self._row_col

    def segment(self, seg: int):
        """What segment ``seg`` (a :meth:`positions` segment) answers for every address in
        it, memoised: None (no scope, outside every body), a reason (stale DWARF), or
        ``(names, wasm index, callers, ghost group or -1, node)`` where names is
        ``(display name, raw name, inlined)`` of the innermost scope and callers the
        memoised Frame field tuples of its enclosing scopes (None for a chain of one); with
        a ghost group, :meth:`ghosts_reason` must be asked per row."""
        got = self._segs[seg]
        if got is None:
            got = self._segs[seg] = self._segment(seg)
        return got

    def ghosts_reason(self, at: int, node: int, row: int) -> str | None:
        return self._ghosts_reason(at, node, row)

    def _segment(self, seg: int):
        node = self._seg_node[seg]
        if node < 0:
            return None
        code = self.block.seg_start[seg - 1]
        bi = bisect_right(self.layout.starts, code)
        if code >= self._ends[bi]:
            return None
        why = self._seg_why[seg]
        bad = self._stale_reason(node, bi)
        if bad is not None:
            return bad
        if why >= 0:                         # unsure everywhere in the segment
            return self.block.strings[why]
        idx = self._widx[bi]
        nm = self._names.get((node, idx))
        if nm is None:
            nm = self._names_of(node, idx)
        tail = None
        if self.block.node_parent[node] >= 0:
            tail = self._tails.get((node, idx))
            if tail is None:
                tail = self._callers(node, idx)
        return (nm, idx, tail, -2 - why if why <= -2 else -1, node)

    def slots(self) -> tuple[list[int], list]:
        """``(bounds, slots)`` for bulk jobs: every address between two consecutive bounds
        (segment starts, line rows, body starts and ends) has the same answer, memoised in
        ``slots[bisect_right(bounds, address)]`` (None = not computed yet)."""
        if self._table is None:
            blk = self.block
            bounds = sorted({*blk.seg_start, *blk.row_addr, *self.layout.starts,
                             *self.layout.ends})
            self._table = (bounds, [None] * (len(bounds) + 1))
        return self._table

    def fill(self, slots: list, keys: Sequence[int], firsts: dict[int, int]) -> None:
        """Compute the missing ``slots[k]`` for ``keys`` (``firsts[k]``: an address of
        slot k); an answer that is not an entry is stored as False."""
        missing = [k for k in keys if slots[k] is None]
        if missing:
            for k, ent in zip(missing, self.lookup([firsts[k] for k in missing])):
                slots[k] = ent if isinstance(ent, tuple) else False

    # -- pieces ----------------------------------------------------------------------------
    def root(self, node: int) -> int:
        r = self._roots.get(node)
        if r is None:
            parent = self.block.node_parent
            r = node
            while parent[r] >= 0:
                r = parent[r]
            self._roots[node] = r
        return r

    def _stale_reason(self, node: int, bi: int) -> str | None:
        """Why the DWARF subprogram holding ``node`` does not describe body ``bi`` (shifted
        position), or None when its live range is exactly the body. Memoised per
        (subprogram, body)."""
        r = self.root(node)
        key = (r, bi)
        try:
            return self._stale[key]
        except KeyError:
            got = self._stale[key] = self._stale_of(r, bi)
            return got

    def _stale_of(self, r: int, bi: int) -> str | None:
        blk = self.block
        lo, hi = blk.node_lo[r], blk.node_hi[r]
        start, end = self._starts1[bi], self._ends[bi]
        if lo == start and hi == end:
            return None
        n, raw = blk.names(r)
        what = display_name(n, raw) or "a function"
        return (f"DWARF is stale here: it places {what} at [0x{lo:x}, 0x{hi:x}) but the code "
                f"section's {self._describe(self._widx[bi])} spans [0x{start:x}, 0x{end:x}) "
                "(code offsets): the module was rewritten without updating its DWARF")

    def _ghosts_reason(self, at: int, node: int, row: int) -> str | None:
        """:meth:`_ghost_reason` for each ghost of the group at ``at`` in ghost_nodes."""
        gn = self.block.ghost_nodes
        while 0 <= at < len(gn) and gn[at] != -1:
            g = gn[at]
            why = self._ghost_reason(-2 - g, node, -1) if g < -1 else \
                self._ghost_reason(g, node, row)
            if why is not None:
                return why
            at += 1
        return None

    def _ghost_reason(self, ghost: int, node: int, row: int) -> str | None:
        """Whether the line row (shifted position) at an address whose innermost live scope
        is ``node`` may belong to the inlined scope ``ghost``, whose extent is lost there
        (binaryen wrote ``[0, hi)``, or an end marker the index cut short): the row's source
        line is then in the ghost's function
        (its file, and its declaration is the closest one above the line), and the chain is
        unsure: a reason. None when the row shows the code is not the ghost's."""
        blk = self.block
        f = self._row_file[row] if row >= 0 else -1     # row -1: unsure whatever the line
        gf, gl = blk.node_dfile[ghost], blk.node_dline[ghost]
        unsure = f < 0 or gf < 0
        if not unsure and f == gf:
            line = self._row_line[row]
            nf, nl = blk.node_dfile[node], blk.node_dline[node]
            best = gl if gl <= line else -1
            unsure = not (nf == gf and best < nl <= line)
        if not unsure:
            return None
        n = blk.node_name[ghost]
        where = f" ({blk.strings[gf]}:{gl})" if gf >= 0 else ""
        return (f"an inlined scope of {blk.strings[n] if n >= 0 else '?'}{where} has no "
                "reliable extent in the DWARF (binaryen wrote a range starting at 0 or "
                "ending past its function) and the source line here may be its: the inline "
                "chain at this address is unsure")

    def entry_ok(self, node: int, body_pos: int) -> bool:
        """The subprogram ``node`` is exactly the body at ``body_pos`` (unshifted)."""
        return self._stale_reason(node, body_pos + 1) is None

    def _names_of(self, node: int, idx: int) -> tuple[str, str | None, bool]:
        """(display name, raw name, inlined) of a scope node, memoised."""
        blk = self.block
        n, r = blk.node_name[node], blk.node_raw[node]
        name = blk.strings[n] if n >= 0 else None
        linkage = blk.strings[r] if r >= 0 else None
        outermost = blk.node_parent[node] < 0
        fn = display_name(name, linkage)
        if fn is None:
            fn = (self._section_name(idx) if outermost else None) or f"$f{idx}"
        got = self._names[(node, idx)] = (fn, linkage or name, not outermost)
        return got

    def _spec(self, node: int, idx: int, file, line, col) -> tuple:
        nm = self._names.get((node, idx))
        if nm is None:
            nm = self._names_of(node, idx)
        if line is None:
            return (nm[0], FUNCTION_ONLY, nm[1], file, None, None, nm[2], NO_ROW)
        if line == 0:
            return (nm[0], FUNCTION_ONLY, nm[1], file, None, None, nm[2], LINE_0)
        return (nm[0], EXACT, nm[1], file, line, col, nm[2], None)

    def _callers(self, node: int, idx: int) -> list[tuple]:
        """Frames of the scopes enclosing ``node`` (each at its call site), memoised per
        node (a node's list extends its caller's)."""
        key = (node, idx)
        got = self._tails.get(key)
        if got is None:
            blk = self.block
            p = blk.node_parent[node]
            if p < 0:
                return []
            cf = blk.node_cfile[node]
            got = [self._spec(p, idx, blk.strings[cf] if cf >= 0 else None,
                              blk.node_cline[node], blk.node_ccol[node])]
            if blk.node_parent[p] >= 0:
                got += self._callers(p, idx)
            self._tails[key] = got
        return got
