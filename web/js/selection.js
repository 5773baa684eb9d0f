// A profile selection (plugin, labels, time range) and the form that edits it; shared by
// the profiles and comparison pages.

import { h } from "./dom.js";
import { getJson, listOf } from "./api.js";
import { toDate } from "./fmt.js";

/** What the profile store holds (plugins, versions, labels) and the most recent raw
 * inputs (for pickers and the suggested comparison). */
export async function loadCatalog() {
  const [data, names] = await Promise.all([getJson("/profiles"), getJson("/profiles/labels").catch(() => ({ names: [] }))]);
  const inputs = listOf(data, "inputs").map((p) => ({
    id: p.id, plugin: p.plugin || "", version: p.version || "", name: p.name || "",
    labels: (typeof p.labels === "string" ? safeJson(p.labels) : p.labels) || {},
    start: p.start ?? p.start_ts ?? null, end: p.end ?? p.end_ts ?? null,
    samples: p.sample_count ?? p.samples ?? null, format: p.format || "",
  }));
  const stored = listOf(data, "plugins");
  const plugins = [...new Set([...stored.map((p) => p.plugin), ...inputs.map((p) => p.plugin)].filter(Boolean))].sort();
  const versions = [...new Set([...stored.flatMap((p) => p.versions || []), ...inputs.map((p) => p.version)].filter(Boolean))].sort();
  const labelPairs = new Set();
  for (const p of stored) {
    for (const [k, vs] of Object.entries(p.labels || {})) for (const v of vs) labelPairs.add(`${k}=${v}`);
  }
  for (const p of inputs) {
    for (const [k, v] of Object.entries(p.labels)) labelPairs.add(`${k}=${v}`);
  }
  const pluginVersions = Object.fromEntries(stored.filter((p) => p.plugin).map((p) => [p.plugin, [...(p.versions || [])]]));
  return { inputs, plugins, versions, pluginVersions, labelPairs: [...labelPairs].sort(), labelNames: listOf(names, "names") };
}

/** Dotted versions in numeric order ("1.10" after "1.9"). */
const versionOrder = (a, b) => String(a).localeCompare(String(b), undefined, { numeric: true });

/** A first comparison worth showing: the two newest versions of a plugin of the store (a
 * release against the one before); else two inputs of one plugin that differ in version or
 * in some label; the selections keep only what differs. Null when there is none. */
export function suggestComparison(catalog) {
  for (const plugin of catalog.plugins) {
    const vs = [...((catalog.pluginVersions || {})[plugin] || [])].sort(versionOrder);
    if (vs.length >= 2) {
      const sel = (version) => ({ plugin, version, labels: "", from: "", to: "" });
      return [sel(vs[vs.length - 2]), sel(vs[vs.length - 1])];
    }
  }
  for (const plugin of catalog.plugins) {
    const ins = catalog.inputs.filter((p) => p.plugin === plugin);
    for (let i = 0; i < ins.length; i++) {
      for (let j = i + 1; j < ins.length; j++) {
        const a = ins[i], b = ins[j];
        const keys = [...new Set([...Object.keys(a.labels), ...Object.keys(b.labels)])]
          .filter((k) => a.labels[k] !== b.labels[k] && a.labels[k] !== undefined && b.labels[k] !== undefined);
        if (a.version !== b.version || keys.length) {
          const sel = (x) => ({
            plugin, version: a.version !== b.version ? x.version : "",
            labels: keys.map((k) => `${k}:${x.labels[k]}`).join(","), from: "", to: "",
          });
          const [older, newer] = (a.start ?? 0) <= (b.start ?? 0) ? [a, b] : [b, a];
          return [sel(older), sel(newer)];
        }
      }
    }
  }
  return null;
}

function safeJson(s) { try { return JSON.parse(s); } catch { return {}; } }

/** datetime-local value (UTC) <-> unix seconds. */
function toLocalInput(sec) {
  const d = toDate(Number(sec));
  return d ? d.toISOString().slice(0, 16) : "";
}
function fromLocalInput(v) {
  if (!v) return "";
  const d = new Date(v + "Z");
  return Number.isNaN(d.getTime()) ? "" : String(Math.floor(d.getTime() / 1000));
}

let formSeq = 0;

/** The form; `onSubmit(selection)` gets {plugin, version, labels, from, to} (from/to unix seconds). */
export function selectionForm(catalog, sel, { submitLabel, onSubmit, legend, name }) {
  const id = `sel${++formSeq}`;
  const plugin = h("select", { name: "plugin", "aria-label": `${legend || "selection"} plugin` },
    h("option", { value: "" }, "all plugins"),
    catalog.plugins.map((p) => h("option", { value: p, selected: p === sel.plugin }, p)));
  const version = h("select", { name: "version", "aria-label": `${legend || "selection"} version` },
    h("option", { value: "" }, "any"),
    catalog.versions.map((v) => h("option", { value: v, selected: v === sel.version }, v)));
  const labels = h("input", {
    name: "labels", type: "text", value: sel.labels, placeholder: "k=v,k2=v2", list: `${id}-labels`,
    "aria-label": `${legend || "selection"} labels`,
  });
  const from = h("input", { name: "from", type: "datetime-local", value: sel.from ? toLocalInput(sel.from) : "", "aria-label": "from (UTC)" });
  const to = h("input", { name: "to", type: "datetime-local", value: sel.to ? toLocalInput(sel.to) : "", "aria-label": "to (UTC)" });
  const form = h("form", {
    class: "filters selection", dataset: { selection: name || "" },
    on: {
      submit: (e) => {
        e.preventDefault();
        onSubmit(form.read());
      },
    },
  },
  legend ? h("strong", { class: "legend" }, legend) : null,
  h("label", {}, "Plugin ", plugin),
  h("label", {}, "Version ", version),
  h("label", {}, "Labels ", labels, h("datalist", { id: `${id}-labels` }, catalog.labelPairs.map((p) => h("option", { value: p })))),
  h("label", {}, "From ", from),
  h("label", {}, "To ", to),
  submitLabel ? h("button", { type: "submit" }, submitLabel) : null);
  form.setRange = (f, t) => {
    from.value = f ? toLocalInput(f) : "";
    to.value = t ? toLocalInput(t) : "";
  };
  form.read = () => ({
    plugin: plugin.value, version: version.value, labels: labels.value.trim(),
    from: fromLocalInput(from.value), to: fromLocalInput(to.value),
  });
  return form;
}

/** Query parameters of the profiles API for a selection. */
export function selectionParams(sel, prefix = "") {
  return {
    [prefix + "plugin"]: sel.plugin || "",
    [prefix + "version"]: sel.version || "",
    [prefix + "labels"]: sel.labels || "",
    [prefix + "from"]: sel.from || "",
    [prefix + "to"]: sel.to || "",
  };
}

export function describeSelection(sel) {
  const parts = [sel.plugin || "all plugins"];
  if (sel.version) parts.push(`version ${sel.version}`);
  if (sel.labels) parts.push(sel.labels);
  if (sel.from || sel.to) {
    const f = sel.from ? toDate(Number(sel.from)).toISOString().slice(0, 16) : "…";
    const t = sel.to ? toDate(Number(sel.to)).toISOString().slice(0, 16) : "…";
    parts.push(`${f} – ${t}`);
  }
  return parts.join(" · ");
}
