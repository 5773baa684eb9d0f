"""Self-contained interactive SVG flame graph.

- Interactive with no external resource: click a frame to zoom (its ancestors stay as a
  dimmed path), "Reset zoom", "Search" (regex, highlights matches and shows the matched share
  of samples without double counting nested matches), hover details, native ``<title>``
  tooltips with module, file:line (hottest lines with percentages), total/self counts and
  percentages, and how the frame was resolved (status, reason).
- Every name comes from modules/logs and is attacker-controlled: it is only ever written as
  escaped XML text or attribute value (XML-invalid control characters replaced), and the
  script reads names back through ``textContent`` only; no data is interpolated into script.
- Readable with 100k+ nodes: children narrower than ``min_width_px`` are merged per parent
  into one "[N narrower frames]" box (dropped entirely when even the merged box is narrower
  than the threshold), and the threshold is doubled until at most ``max_nodes`` boxes remain.
  The header states how many frames/samples were merged or dropped: nothing is hidden
  silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from wasmprof.flamegraph.calltree import CallTree, Node

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(text: str) -> str:
    """Escape for XML text and double- or single-quoted attributes."""
    text = _XML_INVALID.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


@dataclass(slots=True)
class SvgOptions:
    title: str = "Flame Graph"
    subtitle: str | None = None
    width: int = 1200
    frame_height: int = 16
    font_size: int = 12
    min_width_px: float = 0.1
    max_nodes: int = 12000
    color: Callable[[Node], str] | None = None            # overrides the palette (diff)
    tooltip_extra: Callable[[Node], str | None] | None = None
    legend: list[tuple[str, str]] | None = None            # (color, text)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SvgStats:
    drawn: int = 0
    merged_frames: int = 0        # frames folded into "[N narrower frames]" boxes
    merged_boxes: int = 0
    dropped_frames: int = 0       # frames whose merged box was itself too narrow
    merged_weight: int = 0
    dropped_weight: int = 0
    min_width_px: float = 0.1
    depth: int = 0
    bytes: int = 0


def _hash01(name: str) -> tuple[float, float, float]:
    h = hashlib.blake2b(name.encode("utf-8", "replace"), digest_size=3).digest()
    return h[0] / 255, h[1] / 255, h[2] / 255


def palette(node: Node) -> str:
    a, b, c = _hash01(node.name)
    kind = node.kind
    if kind == "kernel":
        return f"rgb({int(170 + 40 * a)},{int(145 + 35 * b)},{int(215 + 35 * c)})"
    if kind == "native":
        return f"rgb({int(80 + 60 * a)},{int(150 + 50 * b)},{int(190 + 50 * c)})"
    if kind == "inlined":
        return f"rgb({int(120 + 50 * a)},{int(195 + 45 * b)},{int(60 + 50 * c)})"
    if kind == "unresolved":
        v = int(175 + 45 * a)
        return f"rgb({v},{v},{v})"
    return f"rgb({int(215 + 40 * a)},{int(70 + 110 * b)},{int(40 * c)})"


LEGEND = [("rgb(235,125,20)", "Wasm function"), ("rgb(145,218,85)", "inlined"),
          ("rgb(110,175,215)", "host (native)"), ("rgb(190,162,232)", "kernel"),
          ("rgb(195,195,195)", "unresolved"),
          ("rgb(235,235,235)", "merged narrow frames")]

_MERGED = "rgb(235,235,235)"


@dataclass(slots=True)
class _Box:
    node: Node | None
    depth: int
    x: float           # in weight units
    w: float
    merged: int = 0    # frames in a merged box


def _subtree_size(node: Node) -> int:
    n, stack = 0, [node]
    while stack:
        x = stack.pop()
        n += 1
        stack.extend(x.children.values())
    return n


def _layout(tree: CallTree, min_weight: float) -> tuple[list[_Box], SvgStats]:
    stats = SvgStats()
    boxes: list[_Box] = [_Box(tree.root, 0, 0.0, float(tree.root.total))]
    stack = [(tree.root, 0, 0.0)]
    while stack:
        node, depth, x = stack.pop()
        cx = x
        small_w, small_n, small_x = 0, 0, None
        for child in node.sorted_children():
            if child.total < min_weight:
                if small_x is None:
                    small_x = cx
                small_w += child.total
                small_n += _subtree_size(child)
            else:
                if small_x is not None:
                    cx = _flush(boxes, stats, depth + 1, small_x, small_w, small_n, min_weight)
                    small_w, small_n, small_x = 0, 0, None
                boxes.append(_Box(child, depth + 1, cx, float(child.total)))
                stack.append((child, depth + 1, cx))
                cx += child.total
        if small_x is not None:
            _flush(boxes, stats, depth + 1, small_x, small_w, small_n, min_weight)
    stats.drawn = len(boxes)
    stats.depth = max(b.depth for b in boxes)
    return boxes, stats


def _flush(boxes: list[_Box], stats: SvgStats, depth: int, x: float, w: float, n: int,
           min_weight: float) -> float:
    if w >= min_weight:
        boxes.append(_Box(None, depth, x, float(w), merged=n))
        stats.merged_frames += n
        stats.merged_boxes += 1
        stats.merged_weight += int(w)
    else:
        stats.dropped_frames += n
        stats.dropped_weight += int(w)
    return x + w


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "0%"


def _tooltip(node: Node, total: int, unit: str, extra: str | None) -> str:
    parts = [node.name]
    where = []
    if node.module:
        where.append(node.module)
    if node.lines:
        tot = sum(node.lines.values())
        hot = sorted(node.lines.items(), key=lambda kv: -kv[1])[:3]
        where.append(", ".join(f"{f or '?'}:{ln} ({_pct(c, tot)})" for (f, ln), c in hot))
    elif node.file:
        where.append(node.file)
    if where:
        parts.append(" · ".join(where))
    parts.append(f"{node.total:,} {unit} ({_pct(node.total, total)}), "
                 f"self {node.self_weight:,} ({_pct(node.self_weight, total)})")
    status = f"{node.status}" + (" · inlined" if node.inlined else "") + (" · kernel" if node.kernel else " · host" if node.native else "")
    if node.reason:
        status += f" · {node.reason}"
    parts.append(status)
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def _fit(name: str, width_px: float, font_size: int) -> str:
    chars = int((width_px - 6) / (font_size * 0.6))
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[: chars - 2] + ".."


def render_svg(tree: CallTree, options: SvgOptions | None = None) -> tuple[str, SvgStats]:
    """The SVG text and what was drawn/merged."""
    o = options or SvgOptions()
    total = tree.root.total
    pad = 10
    inner = o.width - 2 * pad
    min_px = o.min_width_px
    scale = inner / total if total else 0.0
    notes = list(o.notes)
    while True:
        min_weight = (min_px / scale) if scale else float("inf")
        boxes, stats = _layout(tree, min_weight)
        if len(boxes) <= o.max_nodes or not scale:
            break
        min_px *= 2
    stats.min_width_px = min_px
    if min_px != o.min_width_px:
        notes.append(f"more than {o.max_nodes:,} frames: width threshold raised to {min_px:g} px")
    if stats.merged_frames or stats.dropped_frames:
        notes.append(
            f"{stats.merged_frames + stats.dropped_frames:,} frames narrower than {min_px:g} px "
            f"({stats.merged_weight + stats.dropped_weight:,} {tree.unit}, "
            f"{_pct(stats.merged_weight + stats.dropped_weight, total)}) merged into "
            f"{stats.merged_boxes:,} grey boxes"
            + (f"; {stats.dropped_frames:,} too narrow even merged were left out"
               if stats.dropped_frames else ""))
    fh = o.frame_height
    top = 3 * fh + 8 + fh * len(notes)
    height = top + (stats.depth + 1) * fh + 2 * fh + pad
    out: list[str] = []
    w = out.append
    w('<?xml version="1.0" standalone="no"?>\n')
    w(f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{o.width}" height="{height}" '
      f'viewBox="0 0 {o.width} {height}" onload="init(evt)" data-fh="{fh}" data-pad="{pad}" '
      f'data-fs="{o.font_size}">\n')
    w("<style>text{font-family:Verdana,sans-serif;font-size:%dpx;fill:#000}"
      ".f text{pointer-events:none}.f:hover rect{stroke:#000;stroke-width:0.5}"
      ".h{font-size:17px;text-anchor:middle}.b{cursor:pointer}.hide{display:none}"
      ".dim rect{opacity:0.55}</style>\n" % o.font_size)
    w(f'<rect x="0" y="0" width="{o.width}" height="{height}" fill="#fdfdf8"/>\n')
    w(f'<text class="h" x="{o.width / 2:.0f}" y="{fh + 4}">{esc(o.title)}</text>\n')
    y = 2 * fh + 4
    if o.subtitle:
        w(f'<text x="{o.width / 2:.0f}" y="{y}" style="text-anchor:middle">{esc(o.subtitle)}</text>\n')
    y += fh
    for note in notes:
        w(f'<text x="{pad}" y="{y}" fill="#a00" style="fill:#a00">{esc(note)}</text>\n')
        y += fh
    lx = pad
    for color, text in (o.legend if o.legend is not None else LEGEND):
        w(f'<rect x="{lx}" y="{y - fh + 6}" width="10" height="10" fill="{esc(color)}"/>'
          f'<text x="{lx + 14}" y="{y + 3}">{esc(text)}</text>\n')
        lx += 24 + int(len(text) * o.font_size * 0.6)
    w(f'<text id="reset" class="b hide" x="{pad}" y="{fh + 4}">Reset zoom</text>\n')
    w(f'<text id="search" class="b" x="{o.width - pad - 110}" y="{fh + 4}">Search</text>\n')
    w(f'<text id="matched" x="{o.width - pad - 110}" y="{height - 6}"></text>\n')
    w(f'<text id="details" x="{pad}" y="{height - 6}"> </text>\n')
    w(f'<g id="frames" data-total="{total}">\n')
    base_y = height - 2 * fh - pad
    color = o.color or palette
    unit = tree.unit
    for b in boxes:
        x = pad + b.x * scale
        bw = b.w * scale
        yy = base_y - b.depth * fh
        if b.node is None:
            name = f"[{b.merged:,} narrower frames]"
            title = (f"{name}\n{int(b.w):,} {unit} ({_pct(b.w, total)}) in frames narrower than "
                     f"{min_px:g} px, merged (not in this file); render their parent with "
                     f"'wasmprof flamegraph --focus NAME' to see them")
            fill = _MERGED
        else:
            name = b.node.name
            extra = o.tooltip_extra(b.node) if o.tooltip_extra else None
            title = _tooltip(b.node, total, unit, extra)
            fill = ("rgb(205,205,215)" if b.depth == 0 else
                    "rgb(215,200,240)" if b.node.reason == "group" else color(b.node))
        w(f'<g class="f"><title>{esc(title)}</title><rect x="{x:.2f}" y="{yy}" '
          f'width="{bw:.2f}" height="{fh - 1}" fill="{fill}" rx="2"/>'
          f'<text x="{x + 3:.2f}" y="{yy + fh - 4}">{esc(_fit(name, bw, o.font_size))}</text></g>\n')
    w("</g>\n")
    w("<script type=\"text/ecmascript\"><![CDATA[\n" + _SCRIPT + "\n]]></script>\n</svg>\n")
    text = "".join(out)
    stats.bytes = len(text.encode("utf-8"))
    return text, stats


# Static script: reads everything from the DOM, writes names only through textContent.
_SCRIPT = r"""
"use strict";
var svg, frames, details, matchedEl, resetBtn, W, PAD, FH, FS, zoomed = null, term = null;
function init(evt) {
  svg = document.documentElement;
  W = parseFloat(svg.getAttribute("width"));
  PAD = parseFloat(svg.getAttribute("data-pad"));
  FH = parseFloat(svg.getAttribute("data-fh"));
  FS = parseFloat(svg.getAttribute("data-fs"));
  details = document.getElementById("details");
  matchedEl = document.getElementById("matched");
  resetBtn = document.getElementById("reset");
  frames = [];
  var gs = document.querySelectorAll("#frames > g.f");
  for (var i = 0; i < gs.length; i++) {
    var g = gs[i], r = g.querySelector("rect"), t = g.querySelector("title");
    var f = {g: g, r: r, t: g.querySelector("text"), x: parseFloat(r.getAttribute("x")),
             w: parseFloat(r.getAttribute("width")), y: parseFloat(r.getAttribute("y")),
             fill: r.getAttribute("fill"), name: t.textContent.split("\n")[0],
             info: t.textContent.split("\n").slice(0, 3).join(" | ")};
    frames.push(f);
    g.addEventListener("click", zoomer(f));
    g.addEventListener("mouseover", hover(f));
    g.addEventListener("mouseout", function () { details.textContent = " "; });
  }
  resetBtn.addEventListener("click", unzoom);
  document.getElementById("search").addEventListener("click", askSearch);
  window.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === "f") { e.preventDefault(); askSearch(); }
    else if (e.key === "Escape") { clearSearch(); unzoom(); }
  });
}
function hover(f) { return function () { details.textContent = f.info; }; }
function zoomer(f) { return function () { zoom(f); }; }
function label(f, w) {
  var chars = Math.floor((w - 6) / (FS * 0.6));
  if (chars < 3) return "";
  return f.name.length <= chars ? f.name : f.name.substring(0, chars - 2) + "..";
}
function place(f, x, w) {
  f.r.setAttribute("x", x.toFixed(2)); f.r.setAttribute("width", w.toFixed(2));
  f.t.setAttribute("x", (x + 3).toFixed(2)); f.t.textContent = label(f, w);
}
function zoom(z) {
  zoomed = z;
  resetBtn.classList.remove("hide");
  var ratio = (W - 2 * PAD) / z.w, eps = 1e-6;
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    f.g.classList.remove("hide"); f.g.classList.remove("dim");
    if (f.y > z.y) {            /* rows below: ancestors if they overlap */
      if (f.x <= z.x + eps && f.x + f.w >= z.x + z.w - eps) { place(f, PAD, W - 2 * PAD); f.g.classList.add("dim"); }
      else f.g.classList.add("hide");
    } else if (f.x >= z.x - eps && f.x + f.w <= z.x + z.w + eps) {
      place(f, PAD + (f.x - z.x) * ratio, f.w * ratio);
    } else f.g.classList.add("hide");
  }
}
function unzoom() {
  zoomed = null;
  resetBtn.classList.add("hide");
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    f.g.classList.remove("hide"); f.g.classList.remove("dim");
    place(f, f.x, f.w);
  }
}
function askSearch() {
  var t = window.prompt("Search frames (regular expression)", term || "");
  if (t === null) return;
  if (t === "") { clearSearch(); return; }
  search(t);
}
function clearSearch() {
  term = null; matchedEl.textContent = "";
  for (var i = 0; i < frames.length; i++) frames[i].r.setAttribute("fill", frames[i].fill);
}
function search(t) {
  var re;
  try { re = new RegExp(t); } catch (e) { matchedEl.textContent = "bad regex"; return; }
  term = t;
  var spans = [];
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    if (re.test(f.name)) { f.r.setAttribute("fill", "rgb(230,0,230)"); spans.push([f.x, f.x + f.w]); }
    else f.r.setAttribute("fill", f.fill);
  }
  spans.sort(function (a, b) { return a[0] - b[0]; });
  var covered = 0, end = -1;
  for (var k = 0; k < spans.length; k++) {   /* union: nested matches count once */
    var s = spans[k][0], e = spans[k][1];
    if (s > end) { covered += e - s; end = e; }
    else if (e > end) { covered += e - end; end = e; }
  }
  matchedEl.textContent = "Matched: " + (100 * covered / (W - 2 * PAD)).toFixed(1) + "%";
}
"""
