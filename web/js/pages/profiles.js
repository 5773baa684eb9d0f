// Profiles: pick plugin, labels and time range; show the merged profile in speedscope
// (served from /speedscope/, loaded with #profileURL=) and as wasmprof's own SVG.

import { h, mount } from "../dom.js";
import { frameUrl, apiUrl, getToken, getJson, listOf } from "../api.js";
import { fmtCount } from "../fmt.js";
import { emptyState, errorBox } from "../components.js";
import { loadCatalog, selectionForm, selectionParams, describeSelection } from "../selection.js";

export async function render(ctx) {
  const catalog = await loadCatalog();
  if (!catalog.inputs.length) {
    return [h("h1", {}, "Profiles"), emptyState("No profiles yet",
      h("p", {}, "Post perf samples with ", h("code", {}, "curl -F file=@perf-script.txt -F perf_map=@perf-PID.map 'http://HOST/api/v1/profiles?plugin=NAME'"),
        " or agent batches to ", h("code", {}, "/api/v1/samples"), "."))];
  }
  const sel = {
    plugin: ctx.query.get("plugin") || catalog.plugins[0] || "",
    version: ctx.query.get("version") || "",
    labels: ctx.query.get("labels") || "",
    from: ctx.query.get("from") || "",
    to: ctx.query.get("to") || "",
  };
  const view = h("div", { id: "profile-view" });
  const show = async (s) => {
    ctx.go(s);
    mount(view, h("p", { class: "muted" }, "Loading…"));
    try {
      mount(view, await profileView(s));
    } catch (err) {
      mount(view, errorBox(err));
    }
  };
  const form = selectionForm(catalog, sel, { submitLabel: "Show flame graph", onSubmit: show });
  show(sel);
  return [
    h("h1", {}, "Profiles"),
    h("p", { class: "lead" }, "Samples matching the selection are merged into one profile. ",
      "speedscope shows it interactively (time order, left heavy, sandwich); the SVG below is wasmprof's own flame graph with search and click-to-zoom."),
    form, view,
  ];
}

/** The stored inputs a selection matches (the profiles API without a format). */
export async function matching(sel) {
  return listOf(await getJson("/profiles", selectionParams(sel)), "inputs");
}

export function noMatch(sel) {
  return emptyState("No samples match this selection",
    h("p", {}, describeSelection(sel), ": change the plugin, labels or time range."));
}

async function profileView(sel) {
  const params = selectionParams(sel);
  const inputs = await matching(sel);
  if (!inputs.length) return noMatch(sel);
  const samples = inputs.reduce((a, p) => a + (p.sample_count || 0), 0);
  const speedscopeJson = await frameUrl("/profiles", { ...params, format: "speedscope" }, "application/json");
  const svgUrl = apiUrl("/profiles", { ...params, format: "svg" });
  const title = describeSelection(sel);
  const ssSrc = "/speedscope/#profileURL=" + encodeURIComponent(speedscopeJson) + "&title=" + encodeURIComponent(title);
  return [
    h("section", { class: "card" },
      h("div", { class: "card-head" },
        h("h2", {}, "speedscope"),
        h("span", { class: "muted", id: "profile-summary" },
          `${title} · ${inputs.length} input${inputs.length === 1 ? "" : "s"}, ${fmtCount(samples)} samples`),
        h("span", { class: "spacer" }),
        getToken() ? null : h("a", { href: ssSrc, target: "_blank", rel: "noopener" }, "open full screen"),
        downloads(params)),
      h("iframe", { class: "speedscope", id: "speedscope-frame", title: "speedscope flame graph", src: ssSrc })),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Flame graph (SVG)"),
        h("span", { class: "muted" }, "Search (top right of the graph) highlights matching frames; click a frame to zoom")),
      await svgFrame(svgUrl, "/profiles", { ...params, format: "svg" }, "flame graph of " + title, "svg-frame")),
  ];
}

function downloads(params) {
  if (getToken()) return null;          // plain links cannot carry the token header
  return h("span", { class: "downloads" }, "download: ",
    ["speedscope", "folded", "svg"].map((f, i) => [i ? " · " : "",
      h("a", { href: apiUrl("/profiles", { ...params, format: f }), download: `profile.${f === "speedscope" ? "speedscope.json" : f === "folded" ? "folded.txt" : "svg"}` }, f)]));
}

/**
 * The server's interactive SVG in a sandboxed frame: its scripts run in an opaque origin,
 * so even a bug in its escaping could not reach this page or the API (allow-modals: its
 * Search button asks for the term with prompt()). With a token the
 * SVG is fetched with the header and shown as a static image instead (a frame cannot send it).
 */
export async function svgFrame(directUrl, path, params, label, id) {
  if (getToken()) {
    const src = await frameUrl(path, params, "image/svg+xml");
    return h("img", { class: "flame-img", id, alt: label, src });
  }
  return h("iframe", { class: "flame", id, title: label, src: directUrl, sandbox: "allow-scripts allow-modals" });
}
