// A generic time chart (SVG, built with createElementNS/textContent only): stacked areas or
// lines of several series over a time axis, a legend, a hover tooltip with each series'
// value at the bucket under the pointer, brush-to-select with the mouse, and keyboard use
// (focus the plot: ←/→ move the cursor, Shift+←/→ extend a selection, Enter selects,
// Escape or the "Reset" button resets).
//
//   import { timeChart } from "../timechart.js";
//   const chart = timeChart(container, {
//     series: [{ name: "fib", points: [[tSeconds, value], ...] }, ...],
//     stacked: true, unit: "samples" | "bytes" | "count",
//     from: tSeconds, to: tSeconds, height: 160,
//     onBrush: (fromSeconds, toSeconds) => { ... },   // null to disable
//     onReset: () => { ... },                          // optional: the Reset button
//     formatValue: (v) => string });
//   chart.update(sameOptions); chart.destroy();

import { h, s, mount } from "./dom.js";
import { fmtTime } from "./fmt.js";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const PAD = { l: 56, r: 12, t: 8, b: 24 };

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
    const width = Math.max(320, Math.floor(container.clientWidth || 720));
    const height = opts.height || 160;
    const series = opts.series || [];
    const { times, values } = table(series);
    const from = Number.isFinite(opts.from) ? opts.from : (times[0] ?? 0);
    let to = Number.isFinite(opts.to) ? opts.to : (times[times.length - 1] ?? from + 1);
    if (to <= from) to = from + 1;
    const stacked = opts.stacked !== false;
    const tops = values.map((row) => row.slice());
    if (stacked) for (let k = 1; k < tops.length; k++) tops[k] = tops[k].map((v, i) => v + tops[k - 1][i]);
    const max = Math.max(1, ...tops.flat());
    const pw = width - PAD.l - PAD.r, ph = height - PAD.t - PAD.b;
    const x = (t) => PAD.l + ((t - from) / (to - from)) * pw;
    const y = (v) => PAD.t + ph - (v / max) * ph;
    geo = { width, height, times, values, tops, from, to, x, y, pw, ph, series };

    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("aria-label", `${series.length} series over time, ${fmtTime(from)} to ${fmtTime(to)}, peak ${fmt(max)}`);
    svg.appendChild(s("rect", { x: PAD.l, y: PAD.t, width: pw, height: ph, class: "timechart-plot" }));
    for (const frac of [0, 0.5, 1]) {
      const yy = PAD.t + ph - frac * ph;
      svg.appendChild(s("line", { x1: PAD.l, x2: PAD.l + pw, y1: yy, y2: yy, class: "timechart-grid" }));
      svg.appendChild(s("text", { x: PAD.l - 6, y: yy + 4, "text-anchor": "end", class: "axis-label" }, fmt(max * frac)));
    }
    const ticks = 4;
    for (let i = 0; i <= ticks; i++) {
      const t = from + ((to - from) * i) / ticks;
      svg.appendChild(s("text", { x: x(t), y: height - 6, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle", class: "axis-label" },
        fmtTime(t).slice(5, 16)));
    }
    const layer = s("g", { class: "timechart-series" });
    values.forEach((row, k) => {
      if (!times.length) return;
      const color = PALETTE[k % PALETTE.length];
      const top = times.map((t, i) => `${x(t).toFixed(1)},${y(tops[k][i]).toFixed(1)}`);
      if (stacked) {
        const base = times.map((t, i) => `${x(t).toFixed(1)},${y(k ? tops[k - 1][i] : 0).toFixed(1)}`).reverse();
        layer.appendChild(s("polygon", { points: [...top, ...base].join(" "), fill: color, class: "timechart-area", "data-series": String(k) },
          s("title", {}, series[k].name)));
      } else {
        layer.appendChild(s("polyline", { points: top.join(" "), fill: "none", stroke: color, "stroke-width": 2, class: "timechart-line", "data-series": String(k) },
          s("title", {}, series[k].name)));
      }
    });
    svg.appendChild(layer);
    geo.cursorLine = s("line", { x1: 0, x2: 0, y1: PAD.t, y2: PAD.t + ph, class: "timechart-cursor hidden" });
    geo.brush = s("rect", { x: 0, y: PAD.t, width: 0, height: ph, class: "timechart-brush hidden" });
    svg.append(geo.cursorLine, geo.brush);

    mount(legend, series.map((se, k) => h("span", { class: "timechart-key" },
      h("span", { class: "swatch", style: { background: PALETTE[k % PALETTE.length] } }), String(se.name))));
    reset.hidden = !opts.onBrush && !opts.onReset;
    showCursor(cursor);
  }

  function indexAt(px) {
    if (!geo || !geo.times.length) return null;
    const t = geo.from + ((px - PAD.l) / geo.pw) * (geo.to - geo.from);
    let best = 0;
    for (let i = 1; i < geo.times.length; i++) {
      if (Math.abs(geo.times[i] - t) < Math.abs(geo.times[best] - t)) best = i;
    }
    return best;
  }

  function showCursor(i) {
    cursor = i;
    if (!geo || i === null || i === undefined || !geo.times.length) {
      tip.hidden = true;
      if (geo && geo.cursorLine) geo.cursorLine.setAttribute("class", "timechart-cursor hidden");
      return;
    }
    const xx = geo.x(geo.times[i]);
    geo.cursorLine.setAttribute("x1", xx.toFixed(1));
    geo.cursorLine.setAttribute("x2", xx.toFixed(1));
    geo.cursorLine.setAttribute("class", "timechart-cursor");
    const total = geo.values.reduce((a, row) => a + row[i], 0);
    mount(tip, h("div", { class: "timechart-tip-time" }, fmtTime(geo.times[i])),
      geo.series.map((se, k) => h("div", { class: "timechart-tip-row" },
        h("span", { class: "swatch", style: { background: PALETTE[k % PALETTE.length] } }),
        `${se.name}: ${fmt(geo.values[k][i])}`)),
      geo.series.length > 1 ? h("div", { class: "timechart-tip-total" }, `total: ${fmt(total)}`) : null);
    tip.hidden = false;
    tip.style.left = `${Math.min(Math.max(xx + 8, 0), geo.width - 180)}px`;
  }

  function showBrush(x0, x1) {
    if (!geo) return;
    const a = Math.max(PAD.l, Math.min(x0, x1)), b = Math.min(PAD.l + geo.pw, Math.max(x0, x1));
    geo.brush.setAttribute("x", a.toFixed(1));
    geo.brush.setAttribute("width", Math.max(0, b - a).toFixed(1));
    geo.brush.setAttribute("class", "timechart-brush");
  }

  function hideBrush() { if (geo) geo.brush.setAttribute("class", "timechart-brush hidden"); }

  function pxToTime(px) {
    const c = Math.max(0, Math.min(geo.pw, px - PAD.l));
    return geo.from + (c / geo.pw) * (geo.to - geo.from);
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
    emitBrush(pxToTime(Math.min(d.x0, d.x1)), pxToTime(Math.max(d.x0, d.x1)));
  };
  const onLeave = () => { if (!drag) showCursor(null); };
  const step = (geoTimes) => (geoTimes.length > 1 ? geoTimes[1] - geoTimes[0] : 0);
  const onKey = (ev) => {
    if (!geo || !geo.times.length) return;
    const n = geo.times.length;
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const d = ev.key === "ArrowRight" ? 1 : -1;
      const i = Math.max(0, Math.min(n - 1, (cursor ?? (d > 0 ? -1 : n)) + d));
      if (ev.shiftKey && opts.onBrush) {
        keySel = keySel ? [keySel[0], i] : [cursor ?? i, i];
        const [a, b] = [Math.min(...keySel), Math.max(...keySel)];
        showBrush(geo.x(geo.times[a]), geo.x(geo.times[b]) + Math.max(2, geo.pw / n));
      }
      showCursor(i);
      ev.preventDefault();
    } else if (ev.key === "Enter" && keySel) {
      const [a, b] = [Math.min(...keySel), Math.max(...keySel)];
      keySel = null;
      emitBrush(geo.times[a], geo.times[b] + step(geo.times));
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
