// Alerts: the configured webhooks (URLs redacted by the server), their deliveries with a
// status filter kept in the URL, every attempt of a delivery, and a manual "Redeliver" for
// dead letters (needs the admin scope). Also the nav badge counting dead deliveries.

import { h, mount } from "../dom.js";
import { ApiError, getJson, postJson, listOf } from "../api.js";
import { emptyState, errorBox } from "../components.js";
import { fmtAgo, fmtTime, fmtCount } from "../fmt.js";

const STATUSES = ["pending", "collecting", "delivered", "dead", "cancelled"];
const STATUS_HELP = {
  pending: "queued or waiting for its next retry",
  collecting: "collecting events into a digest while the webhook is over its rate limit",
  delivered: "the receiver answered 2xx",
  dead: "gave up: out of attempts or a final answer (3xx, 4xx); redeliver it by hand",
  cancelled: "cancelled before a receiver took it (webhook removed or group regrouped)",
};
const WAITING = new Set(["pending", "collecting"]);
const POLL_MS = 1000;
const POLL_TRIES = 90;
const DELIVERY_LIMIT = 200;

/** Text with control characters shown as \xNN (receivers and configs are untrusted). */
function visible(value) {
  return String(value).replace(/[\u0000-\u001f\u007f]/g, (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
}

export async function render(ctx) {
  const state = { status: ctx.query.get("status") || "", webhook: ctx.query.get("webhook") || "" };
  if (state.status && !STATUSES.includes(state.status)) state.status = "";
  const [overview, first] = await Promise.all([getJson("/webhooks/overview"), loadDeliveries(state)]);
  const hooks = listOf(overview, "webhooks");
  refreshBadgeFrom(overview.counts);
  const showDead = (id) => { state.webhook = String(id); state.status = "dead"; hookSelect.value = state.webhook; reload(); };
  const hooksBox = h("div", { id: "webhooks-box" }, webhooksCard(hooks, showDead));
  /** After a redelivery: the per-webhook counts changed. */
  const refreshHooks = async () => {
    try {
      const fresh = await getJson("/webhooks/overview");
      if (!ctx.stale()) mount(hooksBox, webhooksCard(listOf(fresh, "webhooks"), showDead));
    } catch { /* keep the last counts */ }
  };

  const summary = h("p", { class: "muted", id: "delivery-count" });
  const tbody = h("tbody", {});
  const statusSelect = h("select", { name: "status", on: { change: (e) => { state.status = e.target.value; reload(); } } });
  const hookSelect = h("select", { name: "webhook", on: { change: (e) => { state.webhook = e.target.value; reload(); } } },
    h("option", { value: "" }, "all"),
    hooks.map((w) => h("option", { value: String(w.id), selected: state.webhook === String(w.id) }, `#${w.id} ${w.url}`)));
  const fillStatusOptions = (counts) => mount(statusSelect,
    h("option", { value: "" }, "all"),
    STATUSES.map((st) => h("option", { value: st, selected: state.status === st, title: STATUS_HELP[st] },
      `${st} (${fmtCount((counts || {})[st] ?? 0)})`)));

  function show(data) {
    const items = listOf(data, "deliveries");
    fillStatusOptions(data.counts);
    refreshBadgeFrom(data.counts);
    summary.textContent = `${items.length} deliver${items.length === 1 ? "y" : "ies"}` +
      (state.status ? ` with status ${state.status}` : "") + (state.webhook ? ` of webhook #${state.webhook}` : "") +
      (items.length >= DELIVERY_LIMIT ? ` (the newest ${DELIVERY_LIMIT})` : "");
    mount(tbody, items.length ? items.map((d) => deliveryRows(d, refreshHooks)) :
      h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No delivery matches these filters.")));
  }
  async function reload() {
    ctx.go(state);
    try {
      const data = await loadDeliveries(state);
      if (!ctx.stale()) show(data);
    } catch (err) {
      if (!ctx.stale()) mount(tbody, h("tr", {}, h("td", { colspan: 9 }, errorBox(err))));
    }
  }
  show(first);

  const filters = h("form", { class: "filters", on: { submit: (e) => e.preventDefault() } },
    h("label", {}, "Status ", statusSelect), h("label", {}, "Webhook ", hookSelect));
  return [
    h("h1", {}, "Alerts"),
    h("p", { class: "lead" }, "Webhook deliveries for new, regressed and spiking crash groups, profile regressions, and plugin memory growth and crash loops. ",
      "A delivery is retried with backoff; when its attempts run out (or the receiver gives a final answer) it is ",
      h("strong", {}, "dead"), " and stays here until you redeliver it: same delivery id, so receivers can deduplicate."),
    hooksBox,
    h("section", { class: "card" },
      h("h2", {}, "Deliveries"),
      filters, summary,
      h("table", { class: "table deliveries", id: "deliveries" },
        h("thead", {}, h("tr", {}, ["Status", "Event", "Delivery", "Webhook", "Plugin", "Attempts", "Last answer", "When", ""].map((c) => h("th", {}, c)))),
        tbody)),
  ];
}

function loadDeliveries(state) {
  return getJson("/webhooks/deliveries", { status: state.status, webhook_id: state.webhook, limit: DELIVERY_LIMIT });
}

function webhooksCard(hooks, showDead) {
  if (!hooks.length) {
    return emptyState("No webhook configured",
      h("p", {}, "Add one with ", h("code", {}, "wasmprof webhook add URL --events crash.new_group,crash.regressed"),
        " or ", h("code", {}, "POST /api/v1/webhooks"), " (admin token)."));
  }
  return h("section", { class: "card" },
    h("h2", {}, "Webhooks"),
    h("table", { class: "table webhooks", id: "webhooks" },
      h("thead", {}, h("tr", {}, ["#", "URL", "Events", "Plugin", "Format", "Enabled", "Pending", "Delivered", "Dead"].map((c) => h("th", {}, c)))),
      h("tbody", {}, hooks.map((w) => {
        const st = w.stats || {};
        const dead = st.dead || 0;
        return h("tr", { dataset: { webhookId: w.id } },
          h("td", { class: "mono" }, String(w.id)),
          h("td", { class: "mono small hook-url", title: "secret parts of the URL are not shown" }, w.url,
            w.description ? h("div", { class: "muted" }, visible(w.description)) : null),
          h("td", {}, (w.events || []).map((e) => h("code", { class: "event" }, e))),
          h("td", {}, w.plugin || h("span", { class: "muted" }, "all")),
          h("td", {}, w.format || "json"),
          h("td", {}, w.enabled ? h("span", { class: "pill status-resolved" }, "enabled") : h("span", { class: "pill" }, "disabled")),
          h("td", { class: "num" }, fmtCount((st.pending || 0) + (st.collecting || 0))),
          h("td", { class: "num" }, fmtCount(st.delivered || 0)),
          h("td", { class: "num dead-count" }, dead
            ? h("button", { type: "button", class: "ghost small dead", title: "show its dead deliveries", on: { click: () => showDead(w.id) } }, fmtCount(dead))
            : "0"));
      }))));
}

function statusPill(status) {
  return h("span", { class: `pill delivery-${STATUSES.includes(status) ? status : "other"}`, title: STATUS_HELP[status] || "" }, status || "?");
}

/** "HTTP 500" and what the receiver said (the error text repeats the status: dropped), or
 * the error (timeout, connection error). The receiver's words are attacker-controlled text. */
function answerView(status, error) {
  const known = status !== null && status !== undefined;
  let said = error || "";
  if (known && said.startsWith(`HTTP ${status}`)) said = said.slice(`HTTP ${status}`.length).replace(/^:\s*/, "");
  if (!known && !said) return h("span", { class: "muted" }, "—");
  return [known ? h("span", { class: "mono http-status" }, `HTTP ${status}`) : null,
    said ? h("div", { class: "small answer-text" }, visible(said)) : null];
}

function lastAnswer(d) {
  return answerView(d.last_status, d.last_error);
}

function when(d) {
  if (WAITING.has(d.status) && d.next_attempt_at) {
    return h("span", { title: fmtTime(d.next_attempt_at) }, "next try ", fmtTime(d.next_attempt_at));
  }
  if (d.status === "delivered" && d.delivered_at) return h("span", { title: fmtTime(d.delivered_at) }, "delivered ", fmtAgo(d.delivered_at));
  return h("span", { title: `created ${fmtTime(d.created_at)}` }, fmtAgo(d.updated_at || d.created_at));
}

/** The row of one delivery and the (initially hidden) row with its attempts. */
function deliveryRows(initial, onChange) {
  let d = initial;
  let open = false;
  const row = h("tr", { class: "delivery" });
  const detailCell = h("td", { colspan: 9 });
  const detail = h("tr", { class: "delivery-detail" }, detailCell);
  detail.hidden = true;
  const note = h("div", { class: "redeliver-note" });

  async function loadDetail() {
    mount(detailCell, h("p", { class: "muted small" }, "Loading…"));
    try {
      const full = await getJson(`/webhooks/deliveries/${encodeURIComponent(d.id)}`);
      d = full;
      draw();
      mount(detailCell, attemptsView(full));
    } catch (err) {
      mount(detailCell, errorBox(err));
    }
  }
  const toggle = async () => {
    open = !open;
    detail.hidden = !open;
    draw();
    if (open) await loadDetail();
  };

  async function redeliver(btn) {
    btn.disabled = true;
    mount(note);
    try {
      d = await postJson(`/webhooks/deliveries/${encodeURIComponent(d.id)}/redeliver`, {});
      draw();
      for (let i = 0; i < POLL_TRIES && WAITING.has(d.status) && row.isConnected; i++) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        d = await getJson(`/webhooks/deliveries/${encodeURIComponent(d.id)}`);
        draw();
      }
      if (open && row.isConnected) mount(detailCell, attemptsView(d));
      refreshBadge();
      onChange();
    } catch (err) {
      btn.disabled = false;
      mount(note, redeliverError(err));
    }
  }

  function draw() {
    const actions = [h("button", { type: "button", class: "ghost small", "aria-expanded": String(open), on: { click: toggle } },
      open ? "hide attempts" : "attempts")];
    if (d.status === "dead") {
      const btn = h("button", { type: "button", class: "small redeliver", title: "queue it again with a fresh attempt budget (admin scope)" }, "Redeliver");
      btn.addEventListener("click", () => redeliver(btn));
      actions.push(btn);
    }
    row.dataset.deliveryId = d.id;
    row.dataset.status = d.status;
    mount(row,
      h("td", {}, statusPill(d.status)),
      h("td", {}, h("code", {}, d.event), d.items > 1 ? h("span", { class: "muted small" }, ` ×${d.items}`) : null),
      h("td", { class: "mono small" }, d.id),
      h("td", { class: "mono" }, `#${d.webhook_id}`),
      h("td", {}, d.plugin || "—", d.group_id ? h("div", {}, h("a", { href: `#/crashes/${encodeURIComponent(d.group_id)}`, class: "small" }, `group ${d.group_id}`)) : null),
      h("td", { class: "num" }, fmtCount(d.attempts)),
      h("td", { class: "last-answer" }, lastAnswer(d)),
      h("td", { class: "small" }, when(d)),
      h("td", { class: "actions" }, h("div", { class: "row" }, actions), note));
  }
  draw();
  return [row, detail];
}

function redeliverError(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return h("div", { class: "warn small", role: "alert" },
      h("strong", {}, "Needs an admin token. "),
      "Redelivering changes the outbox, so it needs a token with the ", h("code", {}, "admin"), " scope",
      err.status === 403 ? " (this token can only read)" : "", ". Create one with ",
      h("code", {}, "wasmprof token create ops --scopes read,admin"), " and ",
      h("button", { type: "button", class: "ghost small", on: { click: () => document.getElementById("token-button").click() } }, "enter it"),
      ".", h("div", { class: "muted" }, err.detail || ""));
  }
  return errorBox(err);
}

/** An attempt's outcome; a retryable failure with no next try was the last attempt. */
function outcomeText(a, next) {
  if (a.outcome === "retry" && !a.next_attempt_at && (!next || next.attempt <= a.attempt)) return "retry: out of attempts → dead";
  if (a.outcome === "failed") return "failed: final answer → dead";
  return a.outcome || "—";
}

/** Every attempt of a delivery: time, HTTP status or error, outcome, next retry. */
function attemptsView(d) {
  const attempts = d.attempt_log || [];
  const p = d.payload || {};
  const title = typeof p.title === "string" ? p.title : typeof p.text === "string" ? p.text : null;
  return h("div", { class: "attempts" },
    title ? h("p", { class: "small" }, h("strong", {}, "Alert: "), title) : null,
    attempts.length ? h("table", { class: "table attempts-table" },
      h("thead", {}, h("tr", {}, ["Attempt", "Sent", "Took", "Answer", "Outcome", "Next retry"].map((c) => h("th", {}, c)))),
      h("tbody", {}, attempts.map((a, i) => h("tr", { dataset: { outcome: a.outcome || "" } },
        h("td", { class: "num" }, `#${a.attempt}`,
          i > 0 && a.attempt <= attempts[i - 1].attempt ? h("div", { class: "muted small" }, "redelivered") : null),
        h("td", {}, fmtTime(a.started_at)),
        h("td", { class: "num" }, a.duration_ms === null || a.duration_ms === undefined ? "—" : `${Math.round(a.duration_ms)} ms`),
        h("td", { class: "answer" }, answerView(a.status_code, a.error)),
        h("td", {}, outcomeText(a, i === attempts.length - 1 ? null : attempts[i + 1])),
        h("td", {}, a.next_attempt_at ? fmtTime(a.next_attempt_at) : "—")))))
      : h("p", { class: "muted small" }, "No attempt yet."),
    h("details", { class: "small" }, h("summary", {}, "payload"),
      h("pre", { class: "small payload" }, JSON.stringify(d.payload ?? null, null, 2))));
}

/** Update the nav badge from a {status: count} map (hidden when nothing is dead). */
function refreshBadgeFrom(counts) {
  const el = document.getElementById("alerts-badge");
  if (!el) return;
  const n = (counts && counts.dead) || 0;
  el.textContent = n ? String(n) : "";
  el.hidden = !n;
  el.title = n ? `${n} dead deliver${n === 1 ? "y" : "ies"}` : "";
}

/** Ask the server how many deliveries are dead and show it in the nav; silent on errors
 * (servers without alerts, tokens without the read scope). */
export async function refreshBadge() {
  try {
    const data = await getJson("/webhooks/deliveries", { status: "dead", limit: 1 });
    refreshBadgeFrom(data.counts);
  } catch {
    refreshBadgeFrom(null);
  }
}
