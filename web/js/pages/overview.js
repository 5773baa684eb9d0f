// Overview: plugins, their modules/versions with symbol health and what to fix, and the
// crash/profile headline numbers that answer "what needs attention?".

import { h } from "../dom.js";
import { getJson, listOf } from "../api.js";
import { normModule, normGroup } from "../model.js";
import { healthBadges, emptyState, groupStatusPill } from "../components.js";
import { fmtAgo, fmtCount, shortId } from "../fmt.js";
import { loadSources, openSourceDialog, sourceBlock } from "../sources.js";
import { healthOverview } from "./health.js";

export async function render() {
  const [modData, groupData, profData, hintData, healthCard, sources] = await Promise.all([
    getJson("/modules"),
    getJson("/crash-groups"),
    getJson("/profiles"),
    getJson("/web/hints"),
    healthOverview(),          // plugins ranked by memory growth / crash rate, scrape failures
    loadSources(),
  ]);
  // hints that need crash data (e.g. AOT built without call-stack frames) join the registry's
  const extraHints = (hintData && hintData.modules) || {};
  const modules = listOf(modData, "modules").map(normModule).map((m) => {
    const more = (extraHints[String(m.id)] || []).filter((x) => !m.hints.includes(x));
    return more.length ? { ...m, hints: [...m.hints, ...more] } : m;
  });
  const groups = listOf(groupData, "groups").map(normGroup);
  const profileInputs = listOf(profData, "inputs");

  const plugins = new Map();
  const add = (name) => {
    const key = name || "(no plugin)";
    if (!plugins.has(key)) plugins.set(key, { name: key, modules: [], groups: [], profiles: 0 });
    return plugins.get(key);
  };
  // a module used by several plugins (or versions) is listed under each, with its versions there
  modules.forEach((m) => {
    const links = m.links.length ? m.links : [{ plugin: m.plugin, version: m.version }];
    const byPlugin = new Map();
    links.forEach((l) => {
      if (!byPlugin.has(l.plugin)) byPlugin.set(l.plugin, []);
      if (l.version) byPlugin.get(l.plugin).push(l.version);
    });
    byPlugin.forEach((versions, plugin) => add(plugin).modules.push({ ...m, versions }));
  });
  groups.forEach((g) => add(g.plugin).groups.push(g));
  profileInputs.forEach((p) => { add(p.plugin).profiles += 1; });
  Object.keys(sources).forEach((name) => { add(name).source = sources[name]; });

  const open = groups.filter((g) => g.status !== "resolved");
  const byStatus = (st) => groups.filter((g) => g.status === st).length;
  const needFix = modules.filter((m) => m.hints.length);

  const cards = h("div", { class: "cards" },
    statCard("Plugins", plugins.size, "#/"),
    statCard("Modules", modules.length, "#/", needFix.length ? `${needFix.length} need attention` : "all symbolize well"),
    statCard("Open crash groups", open.length, "#/crashes",
      `${byStatus("new")} new · ${byStatus("regressed")} regressed`),
    statCard("Crash events", groups.reduce((a, g) => a + (g.count || 0), 0), "#/crashes"),
    statCard("Profiles", profileInputs.length, "#/profiles"));

  // what needs attention first: open crash groups (regressed, new), then modules to fix
  const rank = (p) => {
    const open = p.groups.filter((g) => g.status !== "resolved");
    return [-open.filter((g) => g.status === "regressed" || g.status === "new").length, -open.length,
      -p.modules.filter((m) => m.hints.length).length];
  };
  const cmp = (a, b) => {
    const ra = rank(a), rb = rank(b);
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
    return a.name.localeCompare(b.name);
  };
  const sections = [...plugins.values()].sort(cmp).map(pluginSection);
  return [
    h("h1", {}, "Overview"),
    h("p", { class: "lead" }, "Crashes and CPU profiles of your WebAssembly plugins, symbolized to functions, files and lines. ",
      "Start with the crash groups that are new or regressed, then check modules marked ✗ below: they are why a frame has no line."),
    cards,
    healthCard,
    h("div", { class: "row" }, h("span", { class: "spacer" }),
      h("button", { type: "button", class: "ghost small add-source", title: "pull a plugin's modules from its OCI image (admin token)",
        on: { click: () => openSourceDialog(null, null) } }, "Add plugin source")),
    sections.length ? sections : emptyState("Nothing uploaded yet",
      h("p", {}, "Upload a module with ", h("code", {}, "curl -F file=@plugin.wasm -F plugin=NAME -F version=1.0 http://HOST/api/v1/modules"),
        " and post a gateway log to ", h("code", {}, "/api/v1/logs?plugin=NAME"), "; or start the server with ",
        h("code", {}, "wasmprof serve --demo"), ".")),
  ];
}

/** Dotted versions in numeric order ("1.10" after "1.9"), other strings alphabetically. */
function versionOrder(a, b) {
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function statCard(label, value, href, sub) {
  return h("a", { class: "stat", href },
    h("span", { class: "stat-value" }, fmtCount(value)),
    h("span", { class: "stat-label" }, label),
    sub ? h("span", { class: "stat-sub" }, sub) : null);
}

/** The plugin card's module table; on a phone each row is a block and cells say their column
 * (data-label). */
const MODULE_COLUMNS = ["Module", "Version", "Kind", "Symbol health", "What to fix", "Uploaded"];

function pluginSection(p) {
  const open = p.groups.filter((g) => g.status !== "resolved");
  const worst = ["regressed", "new", "ongoing"].find((st) => open.some((g) => g.status === st));
  const versions = [...new Set(p.modules.flatMap((m) => m.versions))].sort(versionOrder);
  const rows = p.modules.sort((a, b) => String(b.uploaded_at).localeCompare(String(a.uploaded_at))).map((m) => {
    const hints = m.hints;
    const label = (i) => ({ label: MODULE_COLUMNS[i] });
    return h("tr", {},
      h("td", {}, h("div", { class: "mod-name" }, m.name), h("div", { class: "muted mono small", title: m.identity || "" }, shortId(m.identity))),
      h("td", { dataset: label(1) }, m.versions.length ? [...m.versions].sort(versionOrder).join(", ") : "—"),
      h("td", { dataset: label(2) }, h("code", {}, m.kind)),
      h("td", { dataset: label(3) }, healthBadges(m)),
      h("td", { class: "hints", dataset: label(4) },
        hints.length ? h("ul", {}, hints.map((x) => h("li", {}, x))) : h("span", { class: "ok-text" }, "symbolizes fully"),
        m.companion ? h("div", { class: "muted small" }, "resolves through ", m.companion) : null,
        m.notes.length ? h("details", { class: "small" }, h("summary", {}, `${m.notes.length} reader note${m.notes.length === 1 ? "" : "s"}`),
          h("ul", {}, m.notes.map((x) => h("li", { class: "muted" }, x)))) : null),
      h("td", { class: "muted", dataset: label(5) }, fmtAgo(m.uploaded_at)));
  });
  return h("section", { class: "card plugin", dataset: { plugin: p.name } },
    h("div", { class: "card-head" },
      h("h2", {}, p.name),
      versions.length ? h("span", { class: "muted" }, "versions ", versions.join(", ")) : null,
      h("span", { class: "spacer" }),
      open.length ? h("a", { href: "#/crashes?plugin=" + encodeURIComponent(p.name) },
        `${open.length} open crash group${open.length === 1 ? "" : "s"} `, worst ? groupStatusPill(worst) : null)
        : h("span", { class: "muted" }, "no open crash groups"),
      p.profiles ? h("a", { href: "#/profiles?plugin=" + encodeURIComponent(p.name) }, `${p.profiles} profile${p.profiles === 1 ? "" : "s"}`) : null),
    p.name === "(no plugin)" ? null : sourceBlock(p.name, p.source),
    p.modules.length
      ? h("table", { class: "table modules-table" },
        h("thead", {}, h("tr", {}, MODULE_COLUMNS.map((c) => h("th", {}, c)))),
        h("tbody", {}, rows))
      : h("p", { class: "warn" }, p.source
        ? "No module pulled yet for this plugin: its crashes show only what the log printed until the pull succeeds."
        : "No module uploaded for this plugin: its crashes show only what the log printed. Upload the .wasm (with DWARF), or set its source, to get files and lines."));
}
