// Plugin sources on the overview: where each plugin's modules are pulled from (an OCI
// reference), the pull status (pulled / failing and why / waiting), and a dialog to set,
// change or remove the source (admin token). The password is sent, never shown or read back.

import { h, mount } from "./dom.js";
import { ApiError, deleteJson, getJson, postJson, putJson } from "./api.js";
import { fmtAgo } from "./fmt.js";

const STATE_KIND = { ready: "ok", failed: "bad", retrying: "bad", waiting: "warn", pending: "neutral", pulling: "neutral", idle: "neutral" };

/** {plugin: source} from GET /plugin-sources, or {} when the route is unavailable. */
export async function loadSources() {
  try {
    const data = await getJson("/plugin-sources");
    const out = {};
    for (const s of (data && data.sources) || []) out[s.plugin] = s;
    return out;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return {};
    throw err;
  }
}

function statePill(state) {
  return h("span", { class: `pill source-${STATE_KIND[state] || "neutral"}`, title: `pull ${state}` }, state);
}

function refresh() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** The source line of a plugin section: URL, status, failing pulls, actions. */
export function sourceBlock(plugin, src) {
  if (!src) {
    return h("div", { class: "source-line muted small" },
      "No source: modules come from uploads only. ",
      h("button", { type: "button", class: "ghost small set-source", on: { click: () => openSourceDialog(plugin, null) } }, "Set source"));
  }
  const st = src.status || { state: "idle", summary: "" };
  const problems = (src.pulls || []).filter((p) => p.state === "retrying" || p.state === "failed" || p.state === "waiting");
  const note = h("span", { class: "source-note small" });
  const retry = h("button", { type: "button", class: "ghost small retry-source", title: "pull now with fresh attempts (admin scope)" }, "Retry now");
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    mount(note);
    try {
      await postJson(`/plugins/${encodeURIComponent(plugin)}/source/pull`, {});
      mount(note, "queued");
      setTimeout(refresh, 1500);
    } catch (err) {
      retry.disabled = false;
      mount(note, adminError(err));
    }
  });
  return h("div", { class: "source-line", dataset: { state: st.state } },
    h("div", { class: "row" },
      h("span", { class: "muted small" }, "Source"),
      h("code", { class: "source-url" }, src.url),
      src.plain_http ? h("span", { class: "muted small" }, "plain HTTP") : null,
      src.has_credentials ? h("span", { class: "muted small" }, "with credentials") : null,
      statePill(st.state),
      h("span", { class: "source-summary small" }, st.summary || ""),
      h("span", { class: "spacer" }),
      problems.length ? retry : null,
      h("button", { type: "button", class: "ghost small set-source", on: { click: () => openSourceDialog(plugin, src) } }, "Change"),
      note),
    problems.length > 1 || (src.pulls || []).length > 1
      ? h("details", { class: "small" }, h("summary", {}, `${src.pulls.length} pull${src.pulls.length === 1 ? "" : "s"}`),
        h("table", { class: "table pulls" },
          h("thead", {}, h("tr", {}, ["Version", "State", "Attempts", "What happened", "Updated"].map((c) => h("th", {}, c)))),
          h("tbody", {}, src.pulls.map((p) => h("tr", { dataset: { state: p.state } },
            h("td", {}, p.version || "—"), h("td", {}, statePill(p.state)), h("td", { class: "num" }, String(p.attempts)),
            h("td", {}, p.summary, p.error_meaning ? h("div", { class: "muted" }, p.error_meaning) : null),
            h("td", { class: "muted" }, fmtAgo(p.updated_at)))))))
      : (problems[0] && problems[0].error_meaning ? h("div", { class: "muted small" }, problems[0].error_meaning) : null));
}

function adminError(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return h("span", { class: "warn", role: "alert" }, "Needs a token with the ", h("code", {}, "admin"), " scope (Token button, top right).");
  }
  return h("span", { class: "warn", role: "alert" }, err && err.detail ? err.detail : String(err && err.message ? err.message : err));
}

/** The dialog that sets (plugin === null: also names) a plugin's source. */
export function openSourceDialog(plugin, src) {
  const field = (label, input, help) => h("label", { class: "field" }, h("span", {}, label), input, help ? h("span", { class: "muted small" }, help) : null);
  const name = h("input", { name: "plugin", value: plugin || "", placeholder: "plugin name, as in the logs", autocomplete: "off", spellcheck: "false" });
  const url = h("input", { name: "url", value: src ? src.url : "", placeholder: "oci://registry.example.com/plugins/key-auth:1.0.0", autocomplete: "off", spellcheck: "false", size: "60" });
  const plain = h("input", { type: "checkbox", name: "plain_http", checked: !!(src && src.plain_http) });
  const user = h("input", { name: "username", placeholder: src && src.has_credentials ? "(stored; leave empty to keep)" : "optional", autocomplete: "off" });
  const pass = h("input", { type: "password", name: "password", autocomplete: "new-password", placeholder: src && src.has_credentials ? "(stored; never shown)" : "optional" });
  const forget = h("input", { type: "checkbox", name: "forget" });
  const status = h("div", { class: "dialog-status small", role: "status" });
  const dialog = h("dialog", { class: "token-dialog source-dialog" });
  const save = async (e) => {
    e.preventDefault();
    const target = (plugin || name.value).trim();
    if (!target) { mount(status, adminError("give the plugin's name")); return; }
    const body = { url: url.value.trim(), plain_http: plain.checked };
    if (user.value || pass.value) body.credentials = { username: user.value, password: pass.value };
    else if (forget.checked) body.credentials = null;
    mount(status, "Saving…");
    try {
      await putJson(`/plugins/${encodeURIComponent(target)}/source`, body);
      dialog.close();
      refresh();
    } catch (err) {
      mount(status, adminError(err));
    }
  };
  const remove = async () => {
    mount(status, "Removing…");
    try {
      await deleteJson(`/plugins/${encodeURIComponent(plugin)}/source`);
      dialog.close();
      refresh();
    } catch (err) {
      mount(status, adminError(err));
    }
  };
  mount(dialog, h("form", { on: { submit: save } },
    h("h2", {}, plugin ? `Source of ${plugin}` : "Add a plugin source"),
    h("p", { class: "muted small" }, "The image the gateway loads (WasmPlugin ", h("code", {}, "spec.url"), "). Without a tag, a crash's version is the tag; ",
      h("code", {}, ":v{version}"), " is a template; a fixed tag or ", h("code", {}, "@sha256:…"), " is pulled at once. ",
      "Pulls start when a crash, sample batch or profile arrives for a version without a module."),
    plugin ? null : field("Plugin", name),
    field("Image", url),
    h("label", { class: "field-inline" }, plain, " plain HTTP (a local registry; TLS otherwise)"),
    field("Username", user), field("Password or token", pass, "sent to the registry only; stored like webhook secrets"),
    src && src.has_credentials ? h("label", { class: "field-inline" }, forget, " forget the stored credentials") : null,
    status,
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Save"),
      src ? h("button", { type: "button", class: "ghost remove-source", on: { click: remove } }, "Remove source") : null,
      h("button", { type: "button", class: "ghost", on: { click: () => dialog.close() } }, "Cancel"))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  (plugin ? url : name).focus();
}
