// A generic time chart (SVG, built with createElementNS/textContent only) of several series
// over a time axis, a legend, a hover tooltip with each series' value at the bucket under
// the pointer, brush-to-select with the mouse, and keyboard use (focus the plot: ←/→ move
// the cursor, Shift+←/→ extend a selection, Enter selects, Escape or the "Reset" button
// resets).
//
//   import { timeChart } from "../timechart.js";
//   const chart = timeChart(container, {
//     series: [{ name: "fib", points: [[tSeconds, value], ...], kind: "gauge" }, ...],
//     stacked: true, unit: "samples" | "bytes" | "count",
//     from: tSeconds, to: tSeconds, height: 160,
//     step: seconds,                                   // optional: the bucket width
//     onBrush: (fromSeconds, toSeconds) => { ... },   // null to disable
//     onReset: () => { ... },                          // optional: the Reset button
//     formatValue: (v) => string });
//   chart.update(sameOptions); chart.destroy();
//
// Two kinds of series:
// - bucketed counts (the default): a point [t, v] is the total of the bucket [t, t + step)
//   and is drawn as a flat segment of the bucket's width (stacked: one step-shaped area per
//   series; unstacked: the series' bars side by side in each bucket). Missing buckets are
//   gaps, never a ramp. A bucket narrower than MIN_PX is widened around its centre so a
//   lone bucket stays visible at any zoom. `step` defaults to the smallest distance between
//   two times, or the rest of the range after a lone bucket;
// - gauges (`kind: "gauge"`, a level sampled at t): lines between the points (stacked:
//   areas), a lone point a dot.
// Brushing a bucketed chart snaps the range to whole buckets.

import { h, s, mount } from "./dom.js";
import { fmtTime } from "./fmt.js";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const PAD = { l: 56, r: 12, t: 8, b: 24 };
/** Narrowest drawn run of buckets, in pixels. */
const MIN_PX = 3;
/** Narrowest bar of an unstacked series; below it the series is drawn as a step line. */
const MIN_BAR_PX = 1.5;
/** Time-axis tick spacings (seconds); ticks fall on UTC multiples of one of them. */
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400, 172800, 604800, 1209600, 2592000];

function defaultFormat(unit) {
  return (v) => {
    const n = Number(v) || 0;
    if (unit === "bytes") {
      const u = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0, x = n;
      while (Math.abs(x) >= 1024 && i < u.length - 1) { x /= 1024; i++; }
      return `${x.toFixed(i ? 1 : 0)} ${u[i]}`;
    }
    const r = Math.abs(n) >= 100 ? Math.round(n) : Math.round(n * 10) / 10;
    return r.toLocaleString("en-US") + (unit && unit !== "count" ? ` ${unit}` : "");
  };
}

/** Union of the series' times, sorted, and each series' value at each time (0 if absent). */
function table(series) {
  const times = [...new Set(series.flatMap((se) => (se.points || []).map((p) => Number(p[0]))))]
    .filter((t) => Number.isFinite(t)).sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const values = series.map((se) => {
    const row = new Array(times.length).fill(0);
    for (const [t, v] of se.points || []) {
      const i = index.get(Number(t));
      if (i !== undefined && Number.isFinite(Number(v))) row[i] += Number(v);
    }
    return row;
  });
  return { times, values };
}

const isGauge = (se) => se && se.kind === "gauge";

/** The bucket width: `step`, else the smallest gap between two times, else null. */
function bucketWidth(times, step) {
  if (Number(step) > 0) return Number(step);
  let w = Infinity;
  for (let i = 1; i < times.length; i++) w = Math.min(w, times[i] - times[i - 1]);
  return Number.isFinite(w) && w > 0 ? w : null;
}

/** The smallest "nice" value >= v (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k; bytes: of 1024^k). */
export function niceMax(v, unit) {
  if (!(v > 0)) return 1;
  const base = unit === "bytes" ? 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024))) : 1;
  const x = v / base;
  const p = 10 ** Math.floor(Math.log10(x));
  const m = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((k) => k * p >= x * (1 - 1e-9)) || 10;
  return m * p * base;
}

/** Tick times on round UTC multiples, at most `maxTicks` of them over [from, to]. */
export function timeTicks(from, to, maxTicks) {
  const span = Math.max(to - from, 1e-9);
  const step = TICK_STEPS.find((st) => span / st <= maxTicks) || TICK_STEPS[TICK_STEPS.length - 1];
  const ticks = [];
  for (let t = Math.ceil(from / step) * step; t <= to + 1e-9; t += step) ticks.push(t);
  return { step, ticks };
}

function tickLabel(t, step, span) {
  const iso = fmtTime(t);                         // "YYYY-MM-DD HH:MM:SSZ"
  if (step % 86400 === 0) return iso.slice(5, 10);
  if (span > 86400) return iso.slice(5, 16);
  if (step < 60) return iso.slice(11, 19);
  return iso.slice(11, 16);
}

const f1 = (v) => v.toFixed(1);

export function timeChart(container, options) {
  let opts = { ...options };
  const root = h("div", { class: "timechart" });
  const tip = h("div", { class: "timechart-tip", role: "status", "aria-live": "polite" });
  const legend = h("div", { class: "timechart-legend" });
  const reset = h("button", { type: "button", class: "timechart-reset", title: "Reset the selected time range (Escape)" }, "Reset");
  const svg = s("svg", { class: "timechart-svg", role: "img", tabindex: "0" });
  root.append(h("div", { class: "timechart-bar" }, legend, reset), svg, tip);
  container.appendChild(root);

  let geo = null;          // layout of the current drawing
  let drag = null;         // {x0, x1} in plot pixels while brushing
  let cursor = null;       // index of the bucket under the pointer/keyboard cursor
  let keySel = null;       // [i0, i1] keyboard selection

  function fmt(v) { return (opts.formatValue || defaultFormat(opts.unit))(v); }

  function draw() {
    const width = Math.max(240, Math.floor(container.clientWidth || 720));
    const height = opts.height || 160;
    const series = opts.series || [];
    const { times, values } = table(series);
    const bucketed = series.some((se) => !isGauge(se));
    let w = bucketWidth(times, opts.step);
    const from = Number.isFinite(opts.from) ? opts.from : (times[0] ?? 0);
    const last = times[times.length - 1];
    let to = Number.isFinite(opts.to) ? opts.to
      : (last === undefined ? from + 1 : last + (bucketed && w ? w : 0));
    if (to <= from) to = from + 1;
    if (w === null) w = times.length ? Math.max(to - times[0], 1) : 1;
    const stacked = opts.stacked !== false;
    const tops = values.map((row) => row.slice());
    if (stacked) for (let k = 1; k < tops.length; k++) tops[k] = tops[k].map((v, i) => v + tops[k - 1][i]);
    const peak = Math.max(0, ...tops.flat());
    const max = niceMax(peak, opts.unit);
    const pw = width - PAD.l - PAD.r, ph = height - PAD.t - PAD.b;
    const xRaw = (t) => PAD.l + ((t - from) / (to - from)) * pw;
    const x = (t) => Math.max(PAD.l, Math.min(PAD.l + pw, xRaw(t)));
    const y = (v) => PAD.t + ph - (Math.max(0, v) / max) * ph;
    const spans = bucketSpans(times, w, x, PAD.l, PAD.l + pw, from, to);
    geo = { width, height, times, values, tops, from, to, x, y, pw, ph, series, bucketed, w, spans };

    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("aria-label", `${series.length} series over time, ${fmtTime(from)} to ${fmtTime(to)}, peak ${fmt(peak)}`);
    svg.dataset.step = String(w);
    svg.dataset.buckets = String(bucketed
      ? times.filter((_, i) => series.some((se, k) => !isGauge(se) && values[k][i] > 0)).length : 0);
    svg.appendChild(s("rect", { x: PAD.l, y: PAD.t, width: pw, height: ph, class: "timechart-plot" }));
    for (const frac of [0, 0.5, 1]) {
      const yy = PAD.t + ph - frac * ph;
      svg.appendChild(s("line", { x1: PAD.l, x2: PAD.l + pw, y1: yy, y2: yy, class: "timechart-grid" }));
      svg.appendChild(s("text", { x: PAD.l - 6, y: yy + 4, "text-anchor": "end", class: "axis-label" }, fmt(max * frac)));
    }
    const axis = timeTicks(from, to, Math.max(2, Math.floor(pw / 90)));
    for (const t of axis.ticks) {
      const label = tickLabel(t, axis.step, to - from);
      const xx = xRaw(t), half = label.length * 3;
      const anchor = xx - half < 2 ? "start" : xx + half > width - 2 ? "end" : "middle";
      svg.appendChild(s("line", { x1: f1(xx), x2: f1(xx), y1: PAD.t + ph, y2: PAD.t + ph + 3, class: "timechart-tick" }));
      svg.appendChild(s("text", { x: f1(xx), y: height - 6, "text-anchor": anchor, class: "axis-label" }, label));
    }
    const layer = s("g", { class: "timechart-series" });
    const bars = series.map((se, k) => k).filter((k) => !isGauge(series[k]));
    values.forEach((row, k) => {
      if (!times.length) return;
      const color = PALETTE[k % PALETTE.length];
      const title = s("title", {}, series[k].name);
      const base = (i) => (stacked && k ? tops[k - 1][i] : 0);
      const top = (i) => (stacked ? tops[k][i] : row[i]);
      let shape;
      if (!isGauge(series[k]) && stacked) {
        shape = s("path", { d: stepArea(spans, row, top, base, y), fill: color, class: "timechart-area", "data-series": String(k) }, title);
      } else if (!isGauge(series[k])) {
        shape = barsOrSteps(spans, row, y, bars.indexOf(k), bars.length, color, k, title);
      } else if (times.length === 1) {
        shape = s("circle", { cx: f1(x(times[0])), cy: f1(y(top(0))), r: 3, fill: color, class: "timechart-dot", "data-series": String(k) }, title);
      } else if (stacked) {
        const upper = times.map((t, i) => `${f1(x(t))},${f1(y(top(i)))}`);
        const lower = times.map((t, i) => `${f1(x(t))},${f1(y(base(i)))}`).reverse();
        shape = s("polygon", { points: [...upper, ...lower].join(" "), fill: color, class: "timechart-area timechart-gauge", "data-series": String(k) }, title);
      } else {
        shape = s("polyline", { points: times.map((t, i) => `${f1(x(t))},${f1(y(row[i]))}`).join(" "), fill: "none", stroke: color,
          "stroke-width": 2, class: "timechart-line timechart-gauge", "data-series": String(k) }, title);
      }
      layer.appendChild(shape);
    });
    svg.appendChild(layer);
    geo.band = s("rect", { x: 0, y: PAD.t, width: 0, height: ph, class: "timechart-band hidden" });
    geo.cursorLine = s("line", { x1: 0, x2: 0, y1: PAD.t, y2: PAD.t + ph, class: "timechart-cursor hidden" });
    geo.brush = s("rect", { x: 0, y: PAD.t, width: 0, height: ph, class: "timechart-brush hidden" });
    svg.insertBefore(geo.band, layer);
    svg.append(geo.cursorLine, geo.brush);

    mount(legend, series.map((se, k) => h("span", { class: "timechart-key" },
      h("span", { class: "swatch", style: { background: PALETTE[k % PALETTE.length] } }), String(se.name))));
    reset.hidden = !opts.onBrush && !opts.onReset;
    showCursor(cursor !== null && cursor < times.length ? cursor : null);
  }

  /** The bucket (bucketed charts: the one holding the time; else the nearest time) at px. */
  function indexAt(px) {
    if (!geo || !geo.times.length) return null;
    const t = geo.from + ((px - PAD.l) / geo.pw) * (geo.to - geo.from);
    const ts = geo.times;
    if (geo.bucketed) {
      let lo = 0, hi = ts.length - 1;
      if (t < ts[0]) return 0;
      while (lo < hi) {                       // the last bucket starting at or before t
        const mid = (lo + hi + 1) >> 1;
        if (ts[mid] <= t) lo = mid; else hi = mid - 1;
      }
      return lo;
    }
    let best = 0;
    for (let i = 1; i < ts.length; i++) if (Math.abs(ts[i] - t) < Math.abs(ts[best] - t)) best = i;
    return best;
  }

  function showCursor(i) {
    cursor = i;
    if (!geo || i === null || i === undefined || !geo.times.length) {
      tip.hidden = true;
      if (geo && geo.cursorLine) {
        geo.cursorLine.setAttribute("class", "timechart-cursor hidden");
        geo.band.setAttribute("class", "timechart-band hidden");
      }
      return;
    }
    const t = geo.times[i];
    let xx;
    if (geo.bucketed) {
      const sp = geo.spans[i];
      xx = (sp.x0 + sp.x1) / 2;
      geo.band.setAttribute("x", f1(sp.x0));
      geo.band.setAttribute("width", f1(Math.max(1, sp.x1 - sp.x0)));
      geo.band.setAttribute("class", "timechart-band");
    } else {
      xx = geo.x(t);
    }
    geo.cursorLine.setAttribute("x1", f1(xx));
    geo.cursorLine.setAttribute("x2", f1(xx));
    geo.cursorLine.setAttribute("class", "timechart-cursor");
    const total = geo.values.reduce((a, row) => a + row[i], 0);
    const when = geo.bucketed ? `${fmtTime(t)} – ${fmtTime(t + geo.w).slice(11)}` : fmtTime(t);
    mount(tip, h("div", { class: "timechart-tip-time" }, when),
      geo.series.map((se, k) => h("div", { class: "timechart-tip-row" },
        h("span", { class: "swatch", style: { background: PALETTE[k % PALETTE.length] } }),
        `${se.name}: ${fmt(geo.values[k][i])}`)),
      geo.series.length > 1 ? h("div", { class: "timechart-tip-total" }, `total: ${fmt(total)}`) : null);
    tip.hidden = false;
    const scale = svg.getBoundingClientRect().width / Math.max(geo.width, 1) || 1;
    const room = Math.max(0, root.clientWidth - tip.offsetWidth);
    tip.style.left = `${Math.min(Math.max(xx * scale + 8, 0), room)}px`;
  }

  function showBrush(x0, x1) {
    if (!geo) return;
    const a = Math.max(PAD.l, Math.min(x0, x1)), b = Math.min(PAD.l + geo.pw, Math.max(x0, x1));
    geo.brush.setAttribute("x", f1(a));
    geo.brush.setAttribute("width", f1(Math.max(0, b - a)));
    geo.brush.setAttribute("class", "timechart-brush");
  }

  function hideBrush() { if (geo) geo.brush.setAttribute("class", "timechart-brush hidden"); }

  function pxToTime(px) {
    const c = Math.max(0, Math.min(geo.pw, px - PAD.l));
    return geo.from + (c / geo.pw) * (geo.to - geo.from);
  }

  /** A time moved to a bucket edge (bucketed charts), inside the chart's range. */
  function snap(t, round) {
    if (!geo.bucketed || !geo.times.length) return t;
    const t0 = geo.times[0];
    return Math.max(geo.from, Math.min(geo.to, t0 + round((t - t0) / geo.w) * geo.w));
  }

  function localX(ev) {
    const r = svg.getBoundingClientRect();
    return ((ev.clientX - r.left) / Math.max(r.width, 1)) * (geo ? geo.width : 1);
  }

  function emitBrush(t0, t1) {
    if (typeof opts.onBrush === "function" && t1 > t0) opts.onBrush(Math.floor(t0), Math.ceil(t1));
  }

  function doReset() {
    keySel = null;
    hideBrush();
    if (typeof opts.onReset === "function") opts.onReset();
    else if (typeof opts.onBrush === "function" && geo) opts.onBrush(geo.from, geo.to);
  }

  const onDown = (ev) => {
    if (!opts.onBrush || ev.button !== 0) return;
    drag = { x0: localX(ev), x1: localX(ev) };
    ev.preventDefault();
  };
  const onMove = (ev) => {
    const px = localX(ev);
    if (drag) { drag.x1 = px; showBrush(drag.x0, drag.x1); }
    showCursor(indexAt(px));
  };
  const onUp = () => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (Math.abs(d.x1 - d.x0) < 4) { hideBrush(); return; }
    const a = snap(pxToTime(Math.min(d.x0, d.x1)), Math.floor);
    const b = snap(pxToTime(Math.max(d.x0, d.x1)), Math.ceil);
    showBrush(geo.x(a), geo.x(b));
    emitBrush(a, b);
  };
  const onLeave = () => { if (!drag) showCursor(null); };
  const onKey = (ev) => {
    if (!geo || !geo.times.length) return;
    const n = geo.times.length;
    const end = (i) => (geo.bucketed ? geo.spans[i].x1 : geo.x(geo.times[i]) + Math.max(2, geo.pw / n));
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const d = ev.key === "ArrowRight" ? 1 : -1;
      const i = Math.max(0, Math.min(n - 1, (cursor ?? (d > 0 ? -1 : n)) + d));
      if (ev.shiftKey && opts.onBrush) {
        keySel = keySel ? [keySel[0], i] : [cursor ?? i, i];
        const [a, b] = [Math.min(...keySel), Math.max(...keySel)];
        showBrush(geo.bucketed ? geo.spans[a].x0 : geo.x(geo.times[a]), end(b));
      }
      showCursor(i);
      ev.preventDefault();
    } else if (ev.key === "Enter" && keySel) {
      const [a, b] = [Math.min(...keySel), Math.max(...keySel)];
      keySel = null;
      emitBrush(geo.times[a], geo.times[b] + geo.w);
      ev.preventDefault();
    } else if (ev.key === "Escape") {
      doReset();
      ev.preventDefault();
    }
  };
  svg.addEventListener("mousedown", onDown);
  svg.addEventListener("mousemove", onMove);
  svg.addEventListener("mouseleave", onLeave);
  svg.addEventListener("keydown", onKey);
  window.addEventListener("mouseup", onUp);
  reset.addEventListener("click", doReset);
  const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => draw()) : null;
  if (ro) ro.observe(container);
  draw();

  return {
    update(next) { opts = { ...opts, ...next }; draw(); },
    destroy() {
      window.removeEventListener("mouseup", onUp);
      if (ro) ro.disconnect();
      root.remove();
    },
    get element() { return root; },
  };
}

/**
 * Pixel extents {x0, x1, run, out} of each bucket [t, t + w) on a plot from px `lo` to `hi`:
 * buckets that touch form a run; a run narrower than MIN_PX is widened around its centre
 * (its buckets keep their proportions); a bucket outside [from, to) is `out` (not drawn).
 */
function bucketSpans(times, w, x, lo, hi, from, to) {
  const spans = times.map((t) => ({ x0: x(t), x1: x(t + w), run: 0, out: t + w <= from || t >= to }));
  let start = 0, run = 0;
  for (let i = 1; i <= times.length; i++) {
    if (i < times.length && times[i] - times[i - 1] <= w * 1.000001 && !spans[i].out && !spans[i - 1].out) continue;
    const a = spans[start].x0, b = spans[i - 1].x1;
    if (b - a < MIN_PX) {
      const left = Math.max(lo, Math.min((a + b) / 2 - MIN_PX / 2, hi - MIN_PX));
      const k = b > a ? MIN_PX / (b - a) : 0;
      for (let j = start; j < i; j++) {
        const sp = spans[j];
        sp.x0 = k ? left + (sp.x0 - a) * k : left;
        sp.x1 = k ? left + (sp.x1 - a) * k : left + MIN_PX;
      }
    }
    for (let j = start; j < i; j++) spans[j].run = run;
    run += 1;
    start = i;
  }
  return spans;
}

/** Runs of consecutive bucket indices: [[i0, i1], ...] (inclusive). */
function runsOf(spans) {
  const runs = [];
  spans.forEach((sp, i) => {
    if (sp.out) return;
    if (runs.length && i > 0 && spans[i - 1].run === sp.run && !spans[i - 1].out) runs[runs.length - 1][1] = i;
    else runs.push([i, i]);
  });
  return runs;
}

/** One stacked series as a step-shaped area: each bucket a flat top over its width. */
function stepArea(spans, row, top, base, y) {
  const parts = [];
  for (const [a, b] of runsOf(spans)) {
    let any = false;
    for (let i = a; i <= b; i++) if (row[i] > 0) any = true;
    if (!any) continue;
    const upper = [], lower = [];
    for (let i = a; i <= b; i++) {
      upper.push(`${f1(spans[i].x0)},${f1(y(top(i)))}`, `${f1(spans[i].x1)},${f1(y(top(i)))}`);
      lower.push(`${f1(spans[i].x0)},${f1(y(base(i)))}`, `${f1(spans[i].x1)},${f1(y(base(i)))}`);
    }
    parts.push(`M${upper.join("L")}L${lower.reverse().join("L")}Z`);
  }
  return parts.join("") || "M0,0";
}

/** One unstacked bucketed series: its bar in each bucket (slot j of n), or, when bars would
 * be too thin, a step line. */
function barsOrSteps(spans, row, y, j, n, color, k, title) {
  const thin = spans.some((sp) => !sp.out && (sp.x1 - sp.x0) / n < MIN_BAR_PX);
  if (thin) {
    const parts = runsOf(spans).map(([a, b]) => {
      const pts = [];
      for (let i = a; i <= b; i++) pts.push(`${f1(spans[i].x0)},${f1(y(row[i]))}`, `${f1(spans[i].x1)},${f1(y(row[i]))}`);
      return `M${pts.join("L")}`;
    });
    return s("path", { d: parts.join("") || "M0,0", fill: "none", stroke: color, "stroke-width": 2,
      class: "timechart-line timechart-steps", "data-series": String(k) }, title);
  }
  const parts = [];
  spans.forEach((sp, i) => {
    if (sp.out || !(row[i] > 0)) return;
    const slot = (sp.x1 - sp.x0) / n;
    const x0 = sp.x0 + j * slot, x1 = x0 + Math.max(slot - (slot > 3 ? 1 : 0), 0.5);
    parts.push(`M${f1(x0)},${f1(y(0))}V${f1(y(row[i]))}H${f1(x1)}V${f1(y(0))}Z`);
  });
  return s("path", { d: parts.join("") || "M0,0", fill: color, class: "timechart-bars", "data-series": String(k) }, title);
}
