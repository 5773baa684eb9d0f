// Plugin health: per plugin, memory and VM health over time next to CPU, on one time axis
// with one brush (select a range on any chart: all three zoom; Reset goes back). Without a
// plugin: plugins ranked by steady memory growth and by crash/rebuild rate, and the scrape
// targets with the outcome of their last scrape. `healthOverview()` is the overview's card.
//
// Data: /api/v1/health/{plugins,series,overview} (wasmprof.health); CPU: cpuSeries() below.

import { h, mount } from "../dom.js";
import { getJson, listOf } from "../api.js";
import { timeChart } from "../timechart.js";
import { emptyState, errorBox, pill } from "../components.js";
import { fmtAgo, fmtCount, fmtTime } from "../fmt.js";

const DEFAULT_SPAN = 6 * 3600;
const VM_METRICS = [["crashes", "crashes"], ["rebuilds", "rebuilds"], ["recoveries", "recoveries"],
  ["crashed", "VM crashed (1 = yes)"]];

export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, x = Number(n);
  while (Math.abs(x) >= 1024 && i < u.length - 1) { x /= 1024; i++; }
  return `${x.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** A count short enough for the chart's axis: 1234 -> "1.2k". */
function fmtShort(v) {
  const n = Number(v) || 0;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtDuration(sec) {
  if (sec === null || sec === undefined) return "—";
  const units = [["d", 86400], ["h", 3600], ["min", 60]];
  for (const [u, n] of units) if (sec >= n) return `${(sec / n).toFixed(1)} ${u}`;
  return `${Math.round(sec)} s`;
}

function healthLink(plugin) {
  return "#/health?plugin=" + encodeURIComponent(plugin);
}

export async function render(ctx) {
  const plugin = ctx.query.get("plugin");
  return plugin ? pluginPage(ctx, plugin) : listPage();
}

// -- list: rankings and targets ---------------------------------------------------------------

async function listPage() {
  const [ov, ranked] = await Promise.all([getJson("/health/overview"), getJson("/health/plugins")]);
  const plugins = listOf(ranked, "plugins");
  return [
    h("h1", {}, "Plugin health"),
    h("p", { class: "lead" }, "Memory and VM health of each Wasm plugin over time, from the gateways' Envoy stats ",
      "(", h("code", {}, "wasmprof serve --scrape-envoy URL"), ") and WAMR memory dumps in posted logs. ",
      "A plugin whose memory grows steadily, or that keeps crashing and being rebuilt, is listed first."),
    targetsProblems(ov),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Plugins by memory growth"),
        h("span", { class: "muted" }, `window ${fmtDuration(ranked.window_seconds)}`)),
      plugins.length ? rankingTable(plugins, "memory") : emptyState("No health data yet",
        h("p", {}, "Add a gateway with ", h("code", {}, "wasmprof serve --scrape-envoy http://GATEWAY:15000/stats/prometheus"),
          " or ", h("code", {}, "POST /api/v1/health/targets"), "; WAMR ", h("code", {}, "Memory consumption summary"),
          " blocks in logs posted to ", h("code", {}, "/api/v1/logs"), " count too."))),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Plugins by crash / rebuild rate")),
      rankingTable([...plugins].sort((a, b) => (b.crashes_per_hour + b.rebuilds_per_hour) - (a.crashes_per_hour + a.rebuilds_per_hour)
        || a.plugin.localeCompare(b.plugin)), "crash")),
    targetsCard(ov),
  ];
}

function growthCell(g) {
  if (!g) return h("span", { class: "muted" }, "no memory samples in the window");
  const rate = `${g.slope >= 0 ? "+" : ""}${fmtBytes(g.slope * 3600)}/h`;
  return h("span", { title: g.reason || "" },
    g.steady ? pill("steady growth", "bad") : null, " ", rate,
    g.steady && g.seconds_to_limit !== null ? h("span", { class: "muted" }, ` · limit in ${fmtDuration(g.seconds_to_limit)}`) : null);
}

function rankingTable(plugins, kind) {
  const rows = plugins.slice(0, 50).map((p) => h("tr", { dataset: { plugin: p.plugin } },
    h("td", {}, h("a", { href: healthLink(p.plugin), class: "plugin-link" }, p.plugin),
      (p.alerts || []).map((a) => [" ", pill(a.kind.replace("plugin.", ""), "bad")])),
    h("td", { class: "num" }, fmtBytes(p.memory_bytes)),
    h("td", {}, growthCell(p.memory_growth)),
    h("td", { class: "num" }, fmtCount(p.crashes)),
    h("td", { class: "num" }, fmtCount(p.rebuilds)),
    h("td", { class: "num" }, (p.crashes_per_hour + p.rebuilds_per_hour).toFixed(1)),
    h("td", { class: "muted" }, fmtAgo(p.last_sample_at))));
  return h("table", { class: `table health-rank rank-${kind}` },
    h("thead", {}, h("tr", {}, ["Plugin", "Memory", "Growth", "Crashes", "Rebuilds", "Crash+rebuild / h", "Last sample"]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

function targetsProblems(ov) {
  const bad = listOf(ov, "failing");
  if (!bad.length) return null;
  return h("div", { class: "warn scrape-problems", role: "status" },
    h("strong", {}, `${bad.length} scrape target${bad.length === 1 ? "" : "s"} need${bad.length === 1 ? "s" : ""} attention: `),
    bad.map((t, i) => [i ? "; " : "", h("span", { class: "target-problem" }, `${t.name} (${t.status}): ${t.last_error || "no scrape for a while"}`)]));
}

function targetsCard(ov) {
  const ts = listOf(ov, "targets");
  if (!ts.length) return null;
  const cls = { ok: "resolved", warning: "ongoing", failing: "regressed", stale: "regressed" };
  return h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Scrape targets")),
    h("table", { class: "table targets" },
      h("thead", {}, h("tr", {}, ["Target", "Status", "Interval", "Last scrape", "Series", "Plugins", "Problem"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ts.map((t) => h("tr", { dataset: { status: t.status } },
        h("td", {}, h("div", { class: "mod-name" }, t.name), h("div", { class: "muted mono small" }, t.url)),
        h("td", {}, h("span", { class: `pill status-${cls[t.status] || "neutral"}` }, t.status)),
        h("td", { class: "num" }, `${t.interval} s`),
        h("td", { class: "muted" }, fmtAgo(t.last_scrape_at)),
        h("td", { class: "num" }, fmtCount(t.last_series)),
        h("td", {}, (t.plugins || []).join(", ") || "—"),
        h("td", { class: "small" }, t.last_error || (t.unmapped_metrics && t.unmapped_metrics.length
          ? `unknown Wasm metrics: ${t.unmapped_metrics.slice(0, 3).join(", ")}` : "")))))));
}

/** The overview's card: failing targets and the top plugins of both rankings. */
export async function healthOverview() {
  let ov;
  try {
    ov = await getJson("/health/overview");
  } catch (err) {
    return null;                       // the overview works without health data
  }
  const growth = listOf(ov, "memory_growth").filter((p) => p.memory_growth);
  const crash = listOf(ov, "crash_rate");
  if (!growth.length && !crash.length && !listOf(ov, "targets").length) return null;
  const item = (p, text) => h("li", { dataset: { plugin: p.plugin } }, h("a", { href: healthLink(p.plugin) }, p.plugin), " ", text);
  return h("section", { class: "card health-overview" },
    h("div", { class: "card-head" }, h("h2", {}, "Plugin health"), h("span", { class: "spacer" }),
      h("a", { href: "#/health" }, "all plugins")),
    targetsProblems(ov),
    h("div", { class: "health-columns" },
      h("div", { class: "rank-memory" }, h("h3", {}, "Memory growth"),
        growth.length ? h("ol", {}, growth.slice(0, 5).map((p) => item(p, growthCell(p.memory_growth))))
          : h("p", { class: "muted" }, "no memory series yet")),
      h("div", { class: "rank-crash" }, h("h3", {}, "Crash / rebuild rate"),
        crash.length ? h("ol", {}, crash.slice(0, 5).map((p) => item(p,
          h("span", {}, `${fmtCount(p.crashes)} crashes, ${fmtCount(p.rebuilds)} rebuilds in ${fmtDuration(p.window_seconds)}`))))
          : h("p", { class: "muted" }, "no crashes or rebuilds"))));
}

// -- one plugin: CPU, memory, VM health on one axis ------------------------------------------

/**
 * CPU samples of `plugin` per `step` over [from, to] as timeChart series. The profile
 * store's timeline (GET /profiles/timeline) when the server has it; else the stored profile
 * inputs, each input's samples spread evenly over its time range. (Kept apart so the source
 * can be switched in one place.)
 */
export async function cpuSeries(plugin, from, to, step) {
  if (await hasRoute("/api/v1/profiles/timeline")) {
    const tl = await getJson("/profiles/timeline", { plugin, from, to, step: Math.max(10, Math.round(step)), by: "plugin" });
    return listOf(tl, "series").map((se) => ({ name: "CPU samples", points: se.points || [] }));
  }
  const inputs = listOf(await getJson("/profiles", { plugin }), "inputs");
  const n = Math.max(1, Math.ceil((to - from) / step));
  const counts = new Array(n).fill(0);
  let any = false;
  for (const p of inputs) {
    const a = Number(p.start_ts ?? p.received_at), b = Number(p.end_ts ?? p.start_ts ?? p.received_at);
    if (!Number.isFinite(a) || !(p.sample_count > 0)) continue;
    const lo = Math.min(a, b), hi = Math.max(a, b);
    const i0 = Math.floor((lo - from) / step), i1 = Math.floor((hi - from) / step);
    const span = Math.max(1, i1 - i0 + 1);
    for (let i = i0; i <= i1; i++) {
      if (i >= 0 && i < n) { counts[i] += p.sample_count / span; any = true; }
    }
  }
  if (!any) return [];
  return [{ name: "CPU samples", points: counts.map((c, i) => [from + i * step, c]) }];
}

let routes = null;

/** Does the server have this API route? (Its OpenAPI document, read once: probing a route
 * that is not there would log a failed request in the console.) */
async function hasRoute(path) {
  if (routes === null) {
    try {
      const resp = await fetch("/openapi.json", { credentials: "same-origin" });
      routes = resp.ok ? new Set(Object.keys((await resp.json()).paths || {})) : new Set();
    } catch { routes = new Set(); }
  }
  return routes.has(path);
}

/** Gauge values forward-filled between a series' first and last bucket with data. */
function filled(values) {
  const out = values.slice();
  let last = null;
  const end = values.reduce((a, v, i) => (v !== null && v !== undefined ? i : a), -1);
  for (let i = 0; i <= end; i++) {
    if (out[i] === null || out[i] === undefined) out[i] = last; else last = out[i];
  }
  return out;
}

function toPoints(times, values) {
  const pts = [];
  values.forEach((v, i) => { if (v !== null && v !== undefined) pts.push([times[i], v]); });
  return pts;
}

/** Memory per source (threads summed; the per-thread series win over an aggregate). */
function memorySeries(view) {
  const mem = view.series.filter((s) => s.metric === "memory_bytes");
  const bySource = new Map();
  for (const s of mem) {
    if (!bySource.has(s.source)) bySource.set(s.source, []);
    bySource.get(s.source).push(s);
  }
  const out = [];
  for (const [, list] of bySource) {
    const threaded = list.filter((s) => s.thread);
    const use = threaded.length ? threaded : list;
    const sum = new Array(view.times.length).fill(null);
    for (const s of use) {
      filled(s.values).forEach((v, i) => { if (v !== null && v !== undefined) sum[i] = (sum[i] || 0) + v; });
    }
    const origin = use[0].origin === "wamr" ? "WAMR dumps" : `${use.length} thread${use.length === 1 ? "" : "s"}`;
    out.push({ name: `${use[0].source_name} (${origin})`, kind: "gauge", points: toPoints(view.times, sum) });
  }
  return out;
}

function vmSeries(view) {
  return VM_METRICS.filter(([m]) => view.totals[m]).map(([m, label]) => {
    const values = view.totals[m];
    const gauge = view.series.some((s) => s.metric === m && s.kind === "gauge");
    return { name: label, kind: gauge ? "gauge" : "count",
      points: toPoints(view.times, gauge ? filled(values) : values.map((v) => v ?? 0)) };
  }).filter((s) => s.points.length);
}

async function pluginPage(ctx, plugin) {
  const head = await getJson("/health/plugins", { plugin });
  const entry = listOf(head, "plugins").find((p) => p.plugin === plugin) || listOf(head, "plugins")[0] || null;
  const now = Number(head.at) || Date.now() / 1000;
  const view = h("div", { class: "health-view" });
  const fixed = { from: Number(ctx.query.get("from")) || null, to: Number(ctx.query.get("to")) || null };
  let charts = [];

  const show = async (range) => {
    charts.forEach((c) => c.destroy());
    charts = [];
    ctx.go({ plugin, from: range.from || "", to: range.to || "" });
    mount(view, h("p", { class: "muted" }, "Loading…"));
    try {
      const content = await chartsView(plugin, range, now, (c) => charts.push(c), show);
      mount(view, content.nodes);
      content.draw();
    } catch (err) {
      mount(view, errorBox(err));
    }
  };
  show(fixed);
  return [
    h("h1", {}, "Plugin health: ", h("span", { class: "plugin-name" }, plugin)),
    h("p", { class: "lead" }, h("a", { href: "#/health" }, "← all plugins"), " · CPU, memory and VM health share one time axis: ",
      "drag across any chart to zoom all three, Reset (or Escape) to go back."),
    entry ? verdictCard(entry) : h("p", { class: "warn" }, "No health series for this plugin yet."),
    view,
  ];
}

async function chartsView(plugin, range, now, keep, show) {
  let to = range.to || now;
  let from = range.from || to - DEFAULT_SPAN;
  let view = await getJson("/health/series", { plugin, from, to });
  if (!range.from && view.data_from && view.data_from > from) {       // zoom to the data
    from = Math.max(from, view.data_from - Math.max(1, (to - view.data_from) * 0.05));
    view = await getJson("/health/series", { plugin, from, to });
  }
  const step = view.step;
  const cpuStep = Math.max(10, Math.round(step));
  const cpu = await cpuSeries(plugin, from, to, cpuStep);
  const axis = { from, to };
  const brush = (a, b) => show({ from: a, to: b });
  const reset = () => show({});
  const sections = [
    { id: "cpu", title: "CPU", sub: "profile samples per bucket", series: cpu, unit: "samples", stacked: true, step: cpuStep,
      empty: "No CPU profiles of this plugin in this range (post perf or agent samples with ?plugin=)." },
    { id: "memory", title: "Memory", sub: "Wasm linear memory, per gateway (threads summed)", series: memorySeries(view),
      unit: "bytes", stacked: true, empty: "No memory series in this range." },
    { id: "vm", title: "VM health", sub: "crashes, rebuilds, recoveries per bucket (restarts handled)", series: vmSeries(view),
      unit: "count", stacked: false, step, empty: "No VM counters in this range." },
  ];
  const nodes = [];
  const draws = [];
  for (const sec of sections) {
    const box = h("div", { class: "chart-box", dataset: { chart: sec.id, from: String(from), to: String(to), series: String(sec.series.length) } });
    nodes.push(h("section", { class: "card health-chart", id: `health-${sec.id}` },
      h("div", { class: "card-head" }, h("h2", {}, sec.title), h("span", { class: "muted" }, sec.sub),
        h("span", { class: "spacer" }), h("span", { class: "muted small" }, `${fmtTime(from)} – ${fmtTime(to)}`)),
      box, sec.series.length ? null : h("p", { class: "muted small" }, sec.empty)));
    draws.push(() => keep(timeChart(box, {
      series: sec.series, stacked: sec.stacked, unit: sec.unit, from, to, height: 160, step: sec.step,
      onBrush: brush, onReset: reset,
      formatValue: sec.unit === "bytes" ? fmtBytes : fmtShort,
    })));
  }
  nodes.push(seriesTable(view));
  return { nodes, draw: () => draws.forEach((d) => d()), axis };
}

function verdictCard(p) {
  const g = p.memory_growth;
  return h("section", { class: "card verdict" },
    h("div", { class: "facts" },
      h("dt", {}, "Memory now"), h("dd", { id: "memory-now" }, fmtBytes(p.memory_bytes)),
      h("dt", {}, "Growth"), h("dd", { id: "memory-growth" }, growthCell(g), g ? h("div", { class: "muted small" }, g.reason) : null),
      h("dt", {}, "Crashes / rebuilds"), h("dd", {}, `${fmtCount(p.crashes)} / ${fmtCount(p.rebuilds)} in ${fmtDuration(p.window_seconds)}`),
      h("dt", {}, "Open alerts"), h("dd", { id: "plugin-alerts" }, (p.alerts || []).length
        ? p.alerts.map((a) => [pill(a.kind, "bad"), ` since ${fmtTime(a.started_at)} `]) : "none"),
      h("dt", {}, "Sources"), h("dd", {}, (p.sources || []).join(", ") || "—")));
}

function seriesTable(view) {
  const rows = view.series.map((s) => h("tr", {},
    h("td", {}, s.source_name), h("td", {}, s.runtime || "—"), h("td", {}, s.thread || "all"),
    h("td", {}, h("code", {}, s.metric)), h("td", {}, s.kind),
    h("td", { class: "num" }, s.unit === "bytes" ? fmtBytes(s.last_value) : fmtCount(s.last_value)),
    h("td", { class: "muted" }, fmtAgo(s.last_ts)),
    h("td", { class: "small" }, [s.stats_name ? `stats name ${s.stats_name}` : null, s.note, s.resets.length ? `${s.resets.length} counter reset(s)` : null]
      .filter(Boolean).join("; "))));
  return h("details", { class: "card series-list" },
    h("summary", {}, `${view.series.length} series`),
    h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Source", "Runtime", "Thread", "Metric", "Kind", "Last value", "Last sample", "Notes"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)));
}
