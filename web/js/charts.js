// Small SVG charts built with createElementNS: a sparkline for group lists and a bar chart
// of events over time. Values are numbers; labels are set as text nodes.

import { s } from "./dom.js";
import { toDate, fmtTime } from "./fmt.js";

/** Bucket timestamps into `n` equal bins over [from, to] (ms). Returns counts. */
export function bucketize(times, from, to, n) {
  const counts = new Array(n).fill(0);
  const span = Math.max(to - from, 1);
  for (const t of times) {
    const d = toDate(t);
    if (!d) continue;
    let i = Math.floor(((d.getTime() - from) / span) * n);
    if (i === n) i = n - 1;
    if (i >= 0 && i < n) counts[i] += 1;
  }
  return counts;
}

export function sparkline(values, { width = 120, height = 24, label = "" } = {}) {
  const max = Math.max(1, ...values);
  const n = Math.max(values.length, 1);
  const bw = width / n;
  const svg = s("svg", {
    class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": label || `events over time, max ${max}`,
  });
  values.forEach((v, i) => {
    if (!v) return;
    const bh = Math.max(2, (v / max) * (height - 2));
    svg.appendChild(s("rect", {
      x: (i * bw + 0.5).toFixed(1), y: (height - bh).toFixed(1),
      width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1), class: "spark-bar",
    }, s("title", {}, String(v))));
  });
  svg.appendChild(s("line", { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: "spark-axis" }));
  return svg;
}

/** Bar chart with a time axis; buckets = [{start: ms, end: ms, count}]. */
export function barChart(buckets, { width = 720, height = 140, label = "events over time" } = {}) {
  const padL = 36, padB = 22, padT = 8;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const w = width - padL - 4, hgt = height - padB - padT;
  const bw = w / Math.max(buckets.length, 1);
  const svg = s("svg", {
    class: "barchart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label,
  });
  svg.appendChild(s("text", { x: padL - 6, y: padT + 8, "text-anchor": "end", class: "axis-label" }, String(max)));
  svg.appendChild(s("text", { x: padL - 6, y: padT + hgt, "text-anchor": "end", class: "axis-label" }, "0"));
  buckets.forEach((b, i) => {
    const bh = b.count ? Math.max(2, (b.count / max) * hgt) : 0;
    const rect = s("rect", {
      x: (padL + i * bw + 0.5).toFixed(1), y: (padT + hgt - bh).toFixed(1),
      width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1), class: "bar",
    }, s("title", {}, `${b.count} event(s) ${fmtTime(b.start)} – ${fmtTime(b.end)}`));
    svg.appendChild(rect);
  });
  svg.appendChild(s("line", { x1: padL, x2: width - 4, y1: padT + hgt + 0.5, y2: padT + hgt + 0.5, class: "axis" }));
  if (buckets.length) {
    svg.appendChild(s("text", { x: padL, y: height - 6, class: "axis-label" }, fmtTime(buckets[0].start)));
    svg.appendChild(s("text", { x: width - 4, y: height - 6, "text-anchor": "end", class: "axis-label" },
      fmtTime(buckets[buckets.length - 1].end)));
  }
  return svg;
}

/** Even buckets spanning the given times (at least one hour), for barChart. */
export function timeBuckets(times, n = 48) {
  const ms = times.map((t) => toDate(t)).filter(Boolean).map((d) => d.getTime());
  if (!ms.length) return [];
  let from = Math.min(...ms), to = Math.max(...ms);
  if (to - from < 3600e3) { const mid = (from + to) / 2; from = mid - 1800e3; to = mid + 1800e3; }
  const counts = bucketize(ms, from, to, n);
  const step = (to - from) / n;
  return counts.map((count, i) => ({ start: from + i * step, end: from + (i + 1) * step, count }));
}

/** Buckets of a server series {start (s), step (s), counts[]}, trimmed to the active span
 * (at least `min` buckets ending at the last one). */
export function seriesBuckets(series, min = 24) {
  if (!series || !Array.isArray(series.counts) || !series.counts.length) return [];
  const counts = series.counts;
  let first = counts.findIndex((c) => c > 0);
  if (first < 0) first = counts.length - min;
  first = Math.max(0, Math.min(first - 1, counts.length - min));
  const out = [];
  for (let i = first; i < counts.length; i++) {
    const start = (series.start + i * series.step) * 1000;
    out.push({ start, end: start + series.step * 1000, count: counts[i] });
  }
  return out;
}
