// Profiles: CPU samples over time (stacked by plugin, version or a label) above the flame
// graph; brushing a time range re-queries the flame graph and the top-functions table
// beside it (self / total, sortable; a click focuses the graph on that function); each
// module's share of the gateway's CPU where the recording holds host frames; speedscope.

import { h, mount } from "../dom.js";
import { frameUrl, apiUrl, getToken, getJson, getTextHead } from "../api.js";
import { fmtCount, fmtPct, fmtTime } from "../fmt.js";
import { emptyState, errorBox } from "../components.js";
import { loadCatalog, selectionForm, selectionParams, describeSelection } from "../selection.js";
import { timeChart } from "../timechart.js";

export async function render(ctx) {
  const catalog = await loadCatalog();
  if (!catalog.plugins.length && !catalog.inputs.length) {
    return [h("h1", {}, "Profiles"), emptyState("No profiles yet",
      h("p", {}, "Post perf samples with ", h("code", {}, "curl -F file=@perf-script.txt -F perf_map=@perf-PID.map 'http://HOST/api/v1/profiles?plugin=NAME'"),
        ", agent batches to ", h("code", {}, "/api/v1/samples"), " or Pyroscope clients to ", h("code", {}, "/ingest"), "."))];
  }
  const sel = {
    plugin: ctx.query.get("plugin") ?? (catalog.plugins[0] || ""),
    version: ctx.query.get("version") || "",
    labels: ctx.query.get("labels") || "",
    from: ctx.query.get("from") || "",
    to: ctx.query.get("to") || "",
  };
  // stacked by plugin unless the store holds one plugin in several versions: then by version
  const defaultBy = catalog.plugins.length <= 1 && catalog.versions.length > 1 ? "version" : "plugin";
  const state = { by: ctx.query.get("by") || defaultBy, focus: ctx.query.get("focus") || "" };
  const chartBox = h("div", { id: "cpu-chart" });
  const view = h("div", { id: "profile-view" });
  let chart = null;
  let current = sel;

  const go = () => ctx.go({ ...current, by: state.by === defaultBy ? "" : state.by, focus: state.focus });
  const showProfile = async (s) => {
    current = s;
    go();
    mount(view, h("p", { class: "muted" }, "Loading…"));
    try {
      mount(view, await profileView(s, state, () => showProfile(current)));
    } catch (err) {
      mount(view, errorBox(err));
    }
  };
  const showChart = async () => {
    // the chart keeps the whole stored range as context; the brush picks the flame graph's
    const params = { ...selectionParams({ ...current, from: "", to: "" }), by: state.by };
    if (state.by === "plugin") params.plugin = "";
    let tl;
    try {
      tl = await getJson("/profiles/timeline", params);
    } catch (err) {
      mount(chartBox, errorBox(err));
      return;
    }
    const opts = {
      series: tl.series || [], stacked: true, unit: "samples", from: tl.from, to: tl.to, step: tl.step, height: 160,
      formatValue: (v) => fmtCount(Math.round(v)),
      onBrush: (f, t) => { form.setRange(f, t); showProfile({ ...current, from: String(f), to: String(t) }); },
      onReset: () => { form.setRange("", ""); showProfile({ ...current, from: "", to: "" }); },
    };
    if (!chart) {
      chartBox.replaceChildren();
      chart = timeChart(chartBox, opts);
    } else {
      chart.update(opts);
    }
    chartNote.textContent = tl.series && tl.series.length
      ? `${tl.series.length} series · ${fmtTime(tl.from)} – ${fmtTime(tl.to)} · one point per ${stepText(tl.step)}. Drag across the chart to show that time range below.`
      : "No samples in the store for this selection.";
  };
  const form = selectionForm(catalog, sel, {
    submitLabel: "Show flame graph",
    onSubmit: (s) => { showProfile(s); showChart(); },
  });
  const byPick = h("select", { name: "by", id: "chart-by", "aria-label": "stack the chart by",
    on: { change: () => { state.by = byPick.value; go(); showChart(); } } },
  ["plugin", "version", "thread", ...catalog.labelNames.filter((n) => !["plugin", "version", "thread"].includes(n))]
    .map((n) => h("option", { value: n, selected: n === state.by }, n)));
  const chartNote = h("p", { class: "muted small", id: "chart-note" });
  showChart();
  showProfile(sel);
  return [
    h("h1", {}, "Profiles"),
    h("p", { class: "lead" }, "CPU samples over time from the profile store; drag across the chart to select a time range. ",
      "The flame graph and the top-functions table show the selection; speedscope below offers time order, left heavy and sandwich views."),
    form,
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "CPU samples over time"),
        h("label", { class: "muted" }, "stacked by ", byPick)),
      chartBox, chartNote),
    view,
  ];
}

function stepText(step) {
  if (!step) return "bucket";
  if (step % 86400 === 0) return `${step / 86400} d`;
  if (step % 3600 === 0) return `${step / 3600} h`;
  if (step % 60 === 0) return `${step / 60} min`;
  return `${step} s`;
}

/** The store's summary of a selection: {samples, inputs: [...], plugins: [...]}. */
export async function matching(sel) {
  return getJson("/profiles", selectionParams(sel));
}

export function noMatch(sel) {
  return emptyState("No samples match this selection",
    h("p", {}, describeSelection(sel), ": change the plugin, labels or time range."));
}

async function profileView(sel, state, refresh) {
  const params = selectionParams(sel);
  const summary = await matching(sel);
  if (!summary.samples) return noMatch(sel);
  const inputs = (summary.inputs || []).length;
  const table = await getJson("/profiles", { ...params, format: "json" });
  const title = describeSelection(sel);
  const svgParams = { ...params, format: "svg", focus: state.focus || "" };
  const svgBox = h("div", { id: "svg-box" },
    await svgFrame(apiUrl("/profiles", svgParams), "/profiles", svgParams, "flame graph of " + title, "svg-frame"));
  const focusNote = h("p", { class: "muted small", id: "focus-note" },
    state.focus ? ["Focused on ", h("code", {}, state.focus), " ",
      h("button", { type: "button", class: "ghost small", id: "clear-focus", on: { click: () => { state.focus = ""; refresh(); } } }, "Show all")] : null);
  const onFocus = (name) => { state.focus = state.focus === name ? "" : name; refresh(); };
  const speedscopeJson = await frameUrl("/profiles", { ...params, format: "speedscope" }, "application/json");
  const ssSrc = "/speedscope/#profileURL=" + encodeURIComponent(speedscopeJson) + "&title=" + encodeURIComponent(title);
  return [
    h("section", { class: "card" },
      h("div", { class: "card-head" },
        h("h2", {}, "Flame graph"),
        h("span", { class: "muted", id: "profile-summary" },
          `${title} · ${inputs} input${inputs === 1 ? "" : "s"}, ${fmtCount(summary.samples)} samples`),
        h("span", { class: "spacer" }), downloads(params)),
      focusNote,
      h("div", { class: "profile-split" },
        svgBox,
        topFunctions(table, state.focus, onFocus))),
    cpuShares(table),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "speedscope"),
        h("span", { class: "spacer" }),
        getToken() ? null : h("a", { href: ssSrc, target: "_blank", rel: "noopener" }, "open full screen")),
      h("iframe", { class: "speedscope", id: "speedscope-frame", title: "speedscope flame graph", src: ssSrc })),
  ];
}

const COLUMNS = [
  { key: "function", label: "Function" },
  { key: "self", label: "Self" },
  { key: "total", label: "Total" },
];

/** Sortable top-functions table: self and total samples (and share of all samples). */
function topFunctions(table, focus, onFocus) {
  const total = table.total || 0;
  const rows = (table.functions || []).map((f) => ({ ...f }));
  let sortKey = "self", desc = true;
  const body = h("tbody");
  const head = h("tr");
  const draw = () => {
    rows.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      const c = typeof x === "string" ? String(x).localeCompare(String(y)) : (x - y);
      return desc ? -c : c;
    });
    mount(head, COLUMNS.map((c) => h("th", {
      "aria-sort": c.key === sortKey ? (desc ? "descending" : "ascending") : null,
      tabindex: "0", dataset: { key: c.key },
      on: {
        click: () => { sortBy(c.key); },
        keydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(c.key); } },
      },
    }, c.label, c.key === sortKey ? (desc ? " ▾" : " ▴") : "")));
    mount(body, rows.slice(0, 200).map((r) => h("tr", { class: r.function === focus ? "focused" : "", dataset: { fn: r.function } },
      h("td", { class: "fn" }, h("button", { type: "button", title: "focus the flame graph on this function", on: { click: () => onFocus(r.function) } }, r.function ?? "?"),
        r.native ? h("span", { class: "muted small" }, " (host)") : null),
      h("td", { class: "num self" }, fmtCount(r.self), h("span", { class: "muted small" }, ` ${fmtPct(total ? r.self / total : 0)}`)),
      h("td", { class: "num total" }, fmtCount(r.total), h("span", { class: "muted small" }, ` ${fmtPct(total ? r.total / total : 0)}`)))));
  };
  const sortBy = (key) => {
    if (key === sortKey) desc = !desc; else { sortKey = key; desc = key !== "function"; }
    draw();
  };
  draw();
  return h("div", { class: "top-functions" },
    h("h3", {}, "Top functions"),
    h("p", { class: "muted small" }, `${fmtCount(table.functions_total ?? rows.length)} functions; samples where the function is the leaf (self) or on the stack (total).`),
    h("table", { class: "table top-table", id: "top-table" }, h("thead", {}, head), body));
}

/** Each module's share of the samples, when the recording holds host (Envoy) frames. */
function cpuShares(table) {
  const rows = table.cpu_by_module || [];
  if (!rows.length) return null;
  return h("section", { class: "card", id: "cpu-shares" },
    h("div", { class: "card-head" }, h("h2", {}, "Share of the gateway's CPU"),
      h("span", { class: "muted" }, "samples whose stack holds each plugin's Wasm code, of all samples of the recording")),
    h("table", { class: "table" },
      h("tbody", {}, rows.map((r) => h("tr", { dataset: { module: r.module } },
        h("td", { class: "mod-name" }, r.module),
        h("td", { class: "num" }, fmtPct(r.share)),
        h("td", { class: "share-cell" }, h("span", { class: "share-bar", style: { width: `${Math.max(0.5, Math.min(100, r.share * 100)).toFixed(1)}%` } })),
        h("td", { class: "num muted" }, fmtCount(r.samples)))))));
}

function downloads(params) {
  if (getToken()) return null;          // plain links cannot carry the token header
  const names = { speedscope: "profile.speedscope.json", folded: "profile.folded.txt", svg: "profile.svg", pprof: "profile.pb.gz" };
  return h("span", { class: "downloads" }, "download: ",
    Object.entries(names).map(([f, file], i) => [i ? " · " : "",
      h("a", { href: apiUrl("/profiles", { ...params, format: f }), download: file }, f)]));
}

/** {width, height} of an SVG from the attributes of its root element (text only), or null. */
export function svgSize(head) {
  const m = /<svg\b[^>]*>/.exec(head || "");
  if (!m) return null;
  const attr = (name) => {
    const a = new RegExp(`\\s${name}="([0-9.]+)"`).exec(m[0]);
    return a ? Number(a[1]) : NaN;
  };
  const width = attr("width"), height = attr("height");
  return width > 0 && height > 0 ? { width, height } : null;
}

/** The narrowest a flame graph is drawn, as a share of its own width: its 12 px labels stay
 * at 9 px or more; a narrower box scrolls sideways. */
const MIN_SCALE = 0.75;

/**
 * The server's interactive SVG in a sandboxed frame: its scripts run in an opaque origin,
 * so even a bug in its escaping could not reach this page or the API (allow-modals: its
 * Search button asks for the term with prompt()). With a token the
 * SVG is fetched with the header and shown as a static image instead (a frame cannot send it).
 *
 * The frame takes the graph's own aspect ratio (read from the SVG's root element), so the
 * graph fills its box without bands above and below; in a box narrower than MIN_SCALE of
 * the graph's width it keeps that width and its box scrolls sideways.
 */
export async function svgFrame(directUrl, path, params, label, id) {
  let node, size;
  if (getToken()) {
    const src = await frameUrl(path, params, "image/svg+xml");
    size = svgSize(await (await fetch(src)).text().catch(() => ""));
    node = h("img", { class: "flame-img", id, alt: label, src });
  } else {
    size = svgSize(await getTextHead(path, params).catch(() => ""));
    node = h("iframe", { class: "flame", id, title: label, src: directUrl, sandbox: "allow-scripts allow-modals" });
  }
  if (size) {
    node.style.setProperty("aspect-ratio", `${size.width} / ${size.height}`);
    node.style.setProperty("min-width", `${Math.round(size.width * MIN_SCALE)}px`);
    node.dataset.svgWidth = String(size.width);
    node.dataset.svgHeight = String(size.height);
  }
  return h("div", { class: "flame-box" + (size ? " sized" : "") }, node);
}
