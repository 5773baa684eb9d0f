// Comparison: two selections (baseline A, comparison B) -> differential flame graph (SVG
// from the server) and the per-function table (self/total share in A and B, change).

import { h, mount } from "../dom.js";
import { getJson, apiUrl } from "../api.js";
import { emptyState, errorBox } from "../components.js";
import { fmtPct, fmtDelta, fmtCount } from "../fmt.js";
import { loadCatalog, selectionForm, selectionParams, describeSelection, suggestComparison } from "../selection.js";
import { svgFrame, matching, noMatch } from "./profiles.js";

function selFromQuery(q, p, fallbackPlugin) {
  return {
    plugin: q.get(p + "plugin") ?? fallbackPlugin ?? "", version: q.get(p + "version") || "",
    labels: q.get(p + "labels") || "", from: q.get(p + "from") || "", to: q.get(p + "to") || "",
  };
}

export async function render(ctx) {
  const catalog = await loadCatalog();
  if (!catalog.plugins.length && !catalog.inputs.length) {
    return [h("h1", {}, "Compare profiles"), emptyState("No profiles yet", h("p", {}, "Upload at least one profile to compare selections."))];
  }
  const asked = ctx.query.has("before.plugin") || ctx.query.has("after.plugin");
  const suggested = asked ? null : suggestComparison(catalog);
  const a = suggested ? suggested[0] : selFromQuery(ctx.query, "before.", catalog.plugins[0]);
  const b = suggested ? suggested[1] : selFromQuery(ctx.query, "after.", catalog.plugins[0]);
  const view = h("div", { id: "compare-view" });
  const formA = selectionForm(catalog, a, { legend: "A (baseline)", name: "a" });
  const formB = selectionForm(catalog, b, { legend: "B (comparison)", name: "b" });
  const run = async () => {
    const sa = formA.read(), sb = formB.read();
    ctx.go({ ...selectionParams(sa, "before."), ...selectionParams(sb, "after.") });
    mount(view, h("p", { class: "muted" }, "Loading…"));
    try {
      mount(view, await compareView(sa, sb));
    } catch (err) {
      mount(view, errorBox(err));
    }
  };
  const go = h("form", { class: "filters", on: { submit: (e) => { e.preventDefault(); run(); } } },
    h("button", { type: "submit", id: "compare-button" }, "Compare"),
    h("span", { class: "muted" }, "Shares are normalized: each side's samples sum to 100%, so profiles of different lengths compare."));
  if (asked || suggested) run();
  return [
    h("h1", {}, "Compare profiles"),
    h("p", { class: "lead" }, "What changed between two selections, e.g. two versions of a plugin or two label sets. ",
      "Red frames grew in B, blue frames shrank."),
    formA, formB, go, view,
  ];
}

async function compareView(a, b) {
  const params = { ...selectionParams(a, "before."), ...selectionParams(b, "after.") };
  const [inA, inB] = await Promise.all([matching(a), matching(b)]);
  if (!inA.samples) return noMatch(a);
  if (!inB.samples) return noMatch(b);
  const table = await getJson("/profiles/diff", { ...params, format: "json" });
  // normalized mode: shares in percent of each side's samples
  const rows = (table.rows || []).map((r) => ({
    name: r.function, native: r.native, module: r.module,
    selfA: r.before_self / 100, selfB: r.after_self / 100,
    totalA: r.before_total / 100, totalB: r.after_total / 100,
    deltaSelf: r.delta_self / 100, deltaTotal: r.delta_total / 100,
  }));
  const svg = await svgFrame(apiUrl("/profiles/diff", { ...params, format: "svg" }), "/profiles/diff",
    { ...params, format: "svg" }, "differential flame graph", "diff-frame");
  const tA = table.before_total ?? null, tB = table.after_total ?? null;
  return [
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Differential flame graph"),
        h("span", { class: "muted" }, `A: ${describeSelection(a)}${tA !== null ? ` (${fmtCount(tA)} samples)` : ""} → B: ${describeSelection(b)}${tB !== null ? ` (${fmtCount(tB)} samples)` : ""}`)),
      svg),
    h("section", { class: "card" },
      h("h2", {}, "Per-function change"),
      rows.length ? h("table", { class: "table diff-table", id: "diff-table" },
        h("thead", {}, h("tr", {}, ["Function", "Self A", "Self B", "Δ self", "Total A", "Total B", "Δ total"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.slice(0, 30).map((r) => h("tr", { class: r.deltaSelf > 0.0005 ? "grew" : r.deltaSelf < -0.0005 ? "shrank" : "" },
          h("td", {}, h("span", { class: "fn" }, r.name ?? "?"), r.native ? h("span", { class: "muted small" }, " (host)") : null),
          h("td", { class: "num" }, fmtPct(r.selfA)), h("td", { class: "num" }, fmtPct(r.selfB)),
          h("td", { class: "num delta" }, fmtDelta(r.deltaSelf)),
          h("td", { class: "num" }, fmtPct(r.totalA)), h("td", { class: "num" }, fmtPct(r.totalB)),
          h("td", { class: "num delta" }, fmtDelta(r.deltaTotal))))))
        : h("p", { class: "muted" }, "No functions in either selection."),
      rows.length > 30 ? h("p", { class: "muted small" }, `The 30 largest changes of ${rows.length} functions; the full table: `,
        h("a", { href: apiUrl("/profiles/diff", { ...params, format: "json" }) }, "JSON")) : null),
  ];
}
