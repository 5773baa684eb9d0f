// Crash group list: counts, sparkline, first/last seen, plugin/version, trap kind, status;
// filters (status, plugin, trap kind) and free-text search, all kept in the URL.

import { h, mount } from "../dom.js";
import { getJson, listOf } from "../api.js";
import { normGroup, headlineFrame } from "../model.js";
import { groupStatusPill, emptyState } from "../components.js";
import { sparkline } from "../charts.js";
import { fmtAgo, fmtTime, fmtCount, frameName, location as frameLocation, toDate } from "../fmt.js";

// a week in 6-hour buckets: daily crashes show their rhythm, a new one its start
const SPARK_DAYS = 7;
const SPARK_BUCKETS = 28;
const SPARK_LABEL = "7 days";

export async function render(ctx) {
  const data = await getJson("/crash-groups", { limit: 500 });
  const groups = listOf(data, "groups").map(normGroup);
  const timelines = await loadTimelines(groups);

  const state = {
    status: ctx.query.get("status") || "",
    plugin: ctx.query.get("plugin") || "",
    trap: ctx.query.get("trap") || "",
    q: ctx.query.get("q") || "",
  };
  const plugins = [...new Set(groups.map((g) => g.plugin).filter(Boolean))].sort();
  const traps = [...new Set(groups.map((g) => g.trap_kind).filter(Boolean))].sort();

  const select = (name, label, options) => h("label", {}, label + " ",
    h("select", { name, on: { change: (e) => { state[name] = e.target.value; update(); } } },
      h("option", { value: "" }, "all"),
      options.map((o) => h("option", { value: o, selected: state[name] === o }, o))));
  const search = h("input", {
    type: "search", name: "q", placeholder: "search function, file, message…", value: state.q,
    "aria-label": "search crash groups", on: { input: (e) => { state.q = e.target.value; update(); } },
  });
  const tbody = h("tbody", {});
  const summary = h("p", { class: "muted", id: "group-count" });

  function update() {
    ctx.go(state);
    const needle = state.q.trim().toLowerCase();
    const shown = groups.filter((g) =>
      (!state.status || g.status === state.status) &&
      (!state.plugin || g.plugin === state.plugin) &&
      (!state.trap || g.trap_kind === state.trap) &&
      (!needle || searchText(g).includes(needle)));
    const total = data.total ?? groups.length;
    summary.textContent = `${shown.length} of ${groups.length} group${groups.length === 1 ? "" : "s"}` +
      (total > groups.length ? ` (the ${groups.length} seen last of ${total})` : "");
    mount(tbody, shown.map((g) => row(g, timelines)));
    if (!shown.length) mount(tbody, h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No crash group matches these filters.")));
  }

  const filters = h("form", { class: "filters", on: { submit: (e) => e.preventDefault() } },
    select("status", "Status", ["new", "ongoing", "regressed", "resolved", "ignored"]),
    select("plugin", "Plugin", plugins),
    select("trap", "Trap", traps),
    search);
  update();

  if (!groups.length) {
    return [h("h1", {}, "Crash groups"), emptyState("No crashes yet",
      h("p", {}, "Post a gateway log with ", h("code", {}, "curl --data-binary @envoy.log 'http://HOST/api/v1/logs?plugin=NAME'"),
        ": every Wasm crash in it is symbolized and grouped here."))];
  }
  return [
    h("h1", {}, "Crash groups"),
    h("p", { class: "lead" }, "Crashes with the same plugin, trap and top in-app frames form a group. ",
      "The sparkline covers the last ", h("span", { id: "spark-span" }, timelines.label), "."),
    filters, summary,
    h("table", { class: "table groups" },
      h("thead", {}, h("tr", {}, ["Status", "Crash", "Plugin", "Versions", "Events", "Over time", "First seen", "Last seen"].map((c) => h("th", {}, c)))),
      tbody),
  ];
}

function searchText(g) {
  const parts = [g.title, g.message, g.plugin, g.trap_kind, ...Object.keys(g.versions)];
  for (const f of g.top_frames) parts.push(f.function, f.printed_name, f.file);
  return parts.filter(Boolean).join("\n").toLowerCase();
}

function row(g, timelines) {
  const top = headlineFrame(g.top_frames);
  const loc = frameLocation(top);
  const versions = Object.entries(g.versions);
  return h("tr", { dataset: { groupId: g.id, status: g.status } },
    h("td", {}, groupStatusPill(g.status)),
    h("td", { class: "crash-cell" },
      h("a", { href: `#/crashes/${encodeURIComponent(g.id)}`, class: "group-link" },
        h("span", { class: "trap" }, g.trap_kind), " in ", h("span", { class: "fn" }, top ? frameName(top) : "?")),
      loc ? h("div", { class: "muted mono small" }, loc) : null,
      g.message ? h("div", { class: "muted small" }, g.message) : null),
    h("td", {}, g.plugin || "—"),
    h("td", { class: "small" }, versions.length ? versions.map(([v, n]) => h("div", {}, v, n !== null ? h("span", { class: "muted" }, ` ×${n}`) : null)) : "—"),
    h("td", { class: "num" }, fmtCount(g.count)),
    h("td", {}, sparkline(timelines.get(String(g.id)) || new Array(SPARK_BUCKETS).fill(0), { label: `events of group ${g.id} over ${timelines.label}` })),
    h("td", { title: fmtTime(g.first_seen) }, fmtAgo(g.first_seen)),
    h("td", { title: fmtTime(g.last_seen) }, fmtAgo(g.last_seen)));
}

/** Per-group event counts over the week up to the latest event, in one request. */
async function loadTimelines(groups) {
  if (!groups.length) return Object.assign(new Map(), { label: SPARK_LABEL });
  const last = Math.max(0, ...groups.map((g) => (toDate(g.last_seen) || new Date(0)).getTime()));
  const end = Math.min(Date.now(), last + 60e3);
  const data = await getJson("/web/crash-timeline", { hours: SPARK_DAYS * 24, buckets: SPARK_BUCKETS, to: Math.ceil(end / 1000) });
  const out = new Map();
  for (const [id, counts] of Object.entries(data.groups || {})) out.set(String(id), counts);
  out.label = Date.now() - end < 3600e3 ? SPARK_LABEL : `${SPARK_LABEL} up to the latest crash (${fmtTime(end)})`;
  return out;
}
