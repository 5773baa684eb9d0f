// Entry point: hash router (#/path?query) and the token dialog. Each page module exports
// `render(root, ctx)` (async) where ctx = {params, query, go(query)}; a page that is
// superseded by a newer navigation simply has its output discarded.

import { h, mount } from "./dom.js";
import { ApiError, getToken, setToken, releaseFrameUrls } from "./api.js";
import { errorBox } from "./components.js";
import * as overview from "./pages/overview.js";
import * as crashes from "./pages/crashes.js";
import * as group from "./pages/group.js";
import * as profiles from "./pages/profiles.js";
import * as compare from "./pages/compare.js";
import * as alerts from "./pages/alerts.js";
import * as health from "./pages/health.js";

const ROUTES = [
  { re: /^\/?$/, page: overview, nav: "overview", title: "Overview" },
  { re: /^\/crashes\/([^/]+)$/, page: group, nav: "crashes", title: "Crash group" },
  { re: /^\/crashes\/?$/, page: crashes, nav: "crashes", title: "Crash groups" },
  { re: /^\/profiles\/?$/, page: profiles, nav: "profiles", title: "Profiles" },
  { re: /^\/compare\/?$/, page: compare, nav: "compare", title: "Compare profiles" },
  { re: /^\/alerts\/?$/, page: alerts, nav: "alerts", title: "Alerts" },
  { re: /^\/health\/?$/, page: health, nav: "health", title: "Plugin health" },
];

let generation = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  return { path, query };
}

/** Replace the query of the current route (keeps history short: replaceState). */
function setQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const qs = q.toString();
  history.replaceState(null, "", "#" + path + (qs ? "?" + qs : ""));
}

async function route() {
  const gen = ++generation;
  releaseFrameUrls();
  const { path, query } = parseHash();
  const root = document.getElementById("app");
  let match = null, r = null;
  for (const candidate of ROUTES) {
    match = candidate.re.exec(path);
    if (match) { r = candidate; break; }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", r !== null && a.dataset.route === r.nav);
  }
  if (!r) {
    mount(root, h("section", { class: "card" }, h("h1", {}, "Not found"),
      h("p", {}, "No page at ", h("code", {}, path), ". ", h("a", { href: "#/" }, "Go to the overview."))));
    return;
  }
  document.title = `${r.title} · wasmprof`;
  const container = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  mount(root, container);
  const ctx = {
    params: match.slice(1).map(decodeURIComponent),
    query,
    go: (params) => setQuery(path, params),
    stale: () => gen !== generation,
  };
  try {
    const content = await r.page.render(ctx);
    if (gen !== generation) return;
    mount(container, content);
    if (r.page !== alerts) alerts.refreshBadge();   // the page itself keeps it current
  } catch (err) {
    if (gen !== generation) return;
    mount(container, errorView(err));
  }
}

function errorView(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return h("section", { class: "card" },
      h("h1", {}, "This server requires a token"),
      h("p", {}, "Read endpoints need an API token with the ", h("code", {}, "read"), " scope. ",
        "Create one with ", h("code", {}, "wasmprof token create dashboard --scopes read"), " and enter it here."),
      h("button", { type: "button", on: { click: openTokenDialog } }, "Enter token"),
      errorBox(err));
  }
  return errorBox(err);
}

function openTokenDialog() {
  const input = h("input", { type: "password", name: "token", placeholder: "wasmprof token", autocomplete: "off", value: getToken() });
  const dialog = h("dialog", { class: "token-dialog" },
    h("form", { on: { submit: (e) => { e.preventDefault(); setToken(input.value.trim()); dialog.close(); route(); } } },
      h("h2", {}, "API token"),
      h("p", { class: "muted" }, "Kept in this browser's local storage and sent as ",
        h("code", {}, "Authorization: Bearer"), ". Leave empty for anonymous access (demo servers)."),
      input,
      h("div", { class: "row" },
        h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "ghost", on: { click: () => { setToken(""); dialog.close(); route(); } } }, "Clear"),
        h("button", { type: "button", class: "ghost", on: { click: () => dialog.close() } }, "Cancel"))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  input.focus();
}

document.getElementById("token-button").addEventListener("click", openTokenDialog);
window.addEventListener("hashchange", route);
route();
