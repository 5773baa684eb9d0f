"""Compare two profiles: a per-function table and a differential flame graph.

Modes:

- ``normalized`` (default): shares of each profile's total (runs of different length or
  sampling rate compare fairly); deltas are percentage points.
- ``absolute``: raw weights (samples or time units); deltas are weight differences.

The table holds every function of either profile (nothing folded into "other"), with self
and total share/weight before and after and their deltas, sorted by the largest absolute
self delta, then total delta. The differential flame graph is AFTER's call tree (widths are
AFTER's weights) colored by each frame's self delta along the same path in BEFORE: red grew,
blue shrank, white unchanged; frames new in AFTER are dark red. Functions that vanished are
only in the table (they have no width in AFTER) and the graph header says how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmprof.flamegraph.calltree import CallTree, Node, function_table, tree_from_profile
from wasmprof.flamegraph.svg import SvgOptions, SvgStats, render_svg
from wasmprof.profiles import SymbolizedProfile

MODES = ("normalized", "absolute")


@dataclass(slots=True)
class DiffRow:
    function: str
    native: bool
    module: str | None
    before_self: float
    after_self: float
    before_total: float
    after_total: float

    @property
    def delta_self(self) -> float:
        return self.after_self - self.before_self

    @property
    def delta_total(self) -> float:
        return self.after_total - self.before_total

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "native": self.native, "module": self.module,
                "before_self": self.before_self, "after_self": self.after_self,
                "delta_self": self.delta_self, "before_total": self.before_total,
                "after_total": self.after_total, "delta_total": self.delta_total}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")


def diff_table(before: SymbolizedProfile, after: SymbolizedProfile, *,
               mode: str = "normalized") -> list[DiffRow]:
    _check_mode(mode)
    tb, ta = function_table(before), function_table(after)
    nb, na = (before.total or 1, after.total or 1) if mode == "normalized" else (1, 1)
    k = 100.0 if mode == "normalized" else 1.0
    rows = []
    for key in set(tb) | set(ta):
        b, a = tb.get(key), ta.get(key)
        any_ = a or b
        rows.append(DiffRow(
            function=key[0], native=key[1], module=any_.module if any_ else None,
            before_self=k * (b.self_weight if b else 0) / nb,
            after_self=k * (a.self_weight if a else 0) / na,
            before_total=k * (b.total if b else 0) / nb,
            after_total=k * (a.total if a else 0) / na))
    rows.sort(key=lambda r: (-abs(r.delta_self), -abs(r.delta_total), r.function))
    return rows


def format_table(rows: list[DiffRow], *, mode: str = "normalized", limit: int | None = None,
                 before_name: str = "before", after_name: str = "after") -> str:
    """A plain-text table (names sanitized of control characters)."""
    _check_mode(mode)
    unit = "%" if mode == "normalized" else ""
    fmt = (lambda v: f"{v:8.2f}") if mode == "normalized" else (lambda v: f"{v:10,.0f}")
    dfmt = (lambda v: f"{v:+8.2f}") if mode == "normalized" else (lambda v: f"{v:+10,.0f}")
    head = (f"{'self' + unit + ' ' + before_name[:6]:>10} {'after':>10} {'delta':>10} "
            f"{'total' + unit + ' before':>14} {'after':>10} {'delta':>10}  function")
    lines = [head]
    for r in rows[:limit] if limit else rows:
        name = "".join(ch if ch.isprintable() else "?" for ch in r.function)
        lines.append(f"{fmt(r.before_self):>10} {fmt(r.after_self):>10} {dfmt(r.delta_self):>10} "
                     f"{fmt(r.before_total):>14} {fmt(r.after_total):>10} {dfmt(r.delta_total):>10}  "
                     f"{name}{' [host]' if r.native else ''}")
    return "\n".join(lines)


def _index(tree: CallTree) -> dict[tuple, Node]:
    out: dict[tuple, Node] = {}
    stack: list[tuple[tuple, Node]] = [((), tree.root)]
    while stack:
        path, node = stack.pop()
        out[path] = node
        for key, child in node.children.items():
            stack.append((path + (key,), child))
    return out


def diff_svg(before: SymbolizedProfile, after: SymbolizedProfile, *, mode: str = "normalized",
             title: str = "Differential flame graph", subtitle: str | None = None,
             options: SvgOptions | None = None) -> tuple[str, SvgStats]:
    _check_mode(mode)
    tb, ta = tree_from_profile(before), tree_from_profile(after)
    ib = _index(tb)
    nb, na = (tb.total or 1, ta.total or 1) if mode == "normalized" else (1, 1)
    k = 100.0 if mode == "normalized" else 1.0
    deltas: dict[int, tuple[float, float, bool]] = {}   # id(AFTER node) -> (before, delta, new)
    max_abs = 0.0
    for path, a in _index(ta).items():
        b = ib.get(path)
        before_self = k * (b.self_weight if b else 0) / nb
        d = k * a.self_weight / na - before_self
        deltas[id(a)] = (before_self, d, b is None and bool(path))
        max_abs = max(max_abs, abs(d))
    suffix = "pp" if mode == "normalized" else ""

    def color(node: Node) -> str:
        _, d, new = deltas.get(id(node), (0.0, 0.0, False))
        if new:
            return "rgb(190,0,0)"
        if max_abs == 0 or d == 0:
            return "rgb(250,250,250)"
        v = int(210 * min(1.0, abs(d) / max_abs))
        return f"rgb(255,{250 - v},{250 - v})" if d > 0 else f"rgb({250 - v},{250 - v},255)"

    def extra(node: Node) -> str | None:
        b, d, new = deltas.get(id(node), (0.0, 0.0, False))
        if new:
            return "new in AFTER (absent from BEFORE at this stack)"
        return f"self before {b:.2f}{suffix}, change {d:+.2f}{suffix}" if mode == "normalized" \
            else f"self before {b:,.0f}, change {d:+,.0f}"

    vanished = sum(1 for key in function_table(before) if key not in function_table(after))
    o = options or SvgOptions()
    o.title = title
    o.subtitle = subtitle or (f"{mode}: width = AFTER ({ta.total:,} {ta.unit}); "
                              f"color = self change vs BEFORE ({tb.total:,} {tb.unit})")
    o.color = color
    o.tooltip_extra = extra
    o.legend = [("rgb(255,40,40)", "grew"), ("rgb(40,40,255)", "shrank"),
                ("rgb(250,250,250)", "unchanged"), ("rgb(190,0,0)", "new stack"),
                ("rgb(235,235,235)", "merged narrow frames")]
    if vanished:
        o.notes.append(f"{vanished} function(s) present only in BEFORE: see the table (--table)")
    return render_svg(ta, o)
