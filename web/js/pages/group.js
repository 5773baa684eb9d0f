// One crash group: what it is, why its crashes were grouped, the symbolized backtrace of a
// selected event (inline frames as such, each frame's status and reason, source context),
// the plugin's panic (message, location, language, its own traceback frames), the plugin's
// last log lines before the crash (breadcrumbs), the raw log lines and the events over time.

import { h, mount } from "../dom.js";
import { getJson, postJson } from "../api.js";
import { normGroup, normEvent, headlineFrame } from "../model.js";
import { backtrace, groupStatusPill, errorBox, pill, frameStatusPill } from "../components.js";
import { barChart, timeBuckets, seriesBuckets } from "../charts.js";
import { fmtTime, fmtAgo, fmtCount, frameName, location as frameLocation } from "../fmt.js";

export async function render(ctx) {
  const id = ctx.params[0];
  const [groupData, hintData] = await Promise.all([
    getJson(`/crash-groups/${encodeURIComponent(id)}`, { events: 200 }),
    getJson("/web/hints"),
  ]);
  const group = normGroup(groupData);
  const hints = ((hintData && hintData.groups) || {})[String(group.id)] || [];
  const events = group.sample_events;
  const selectedId = ctx.query.get("event");
  let selected = events.find((e) => String(e.id) === selectedId) || events[0] || null;
  if (selected && (!selected.raw.length || !selected.frames.length) && selected.id !== undefined) {
    selected = await fullEvent(selected);
  }
  const frames = selected && selected.frames.length ? selected.frames : group.top_frames;
  const top = headlineFrame(frames);
  const loc = frameLocation(top);

  const eventPanel = h("div", { id: "event-panel" });
  const showEvent = async (ev) => {
    ctx.go({ event: ev.id });
    mount(eventPanel, await eventView(await fullEvent(ev), group));
  };
  mount(eventPanel, selected ? await eventView({ ...selected, frames }, group) : h("p", { class: "muted" }, "No event stored for this group."));

  const versions = Object.entries(group.versions);
  // the status pill, the actions and the status facts re-render from the server's answer
  const statusBox = h("span", { id: "group-status" });
  const actions = h("span", { class: "group-actions", id: "group-actions" });
  const statusFacts = h("div", { class: "facts-more", id: "group-status-facts" });
  const showStatus = (g) => {
    mount(statusBox, groupStatusPill(g.status));
    mount(actions, statusActions(g, showStatus));
    mount(statusFacts, statusFactsOf(g));
  };
  showStatus(group);
  const header = h("section", { class: "card group-head" },
    h("div", { class: "card-head" },
      statusBox,
      h("h1", { class: "group-title" }, h("span", { class: "trap" }, group.trap_kind), " in ", h("span", { class: "fn", id: "group-function" }, top ? frameName(top) : "?")),
      h("span", { class: "spacer" }),
      actions),
    loc ? h("p", { class: "mono", id: "group-location" }, loc) : null,
    group.message ? h("p", {}, group.message) : null,
    selected && selected.panic ? h("p", { id: "group-panic" }, h("strong", {}, `${selected.panic.language || "Plugin"} panic: `),
      selected.panic.message || "?", selected.panic.location ? h("span", { class: "mono" }, ` at ${selected.panic.location}`) : null) : null,
    h("dl", { class: "facts" },
      fact("Plugin", group.plugin || "—"),
      fact("Events", fmtCount(group.count)),
      fact("First seen", `${fmtTime(group.first_seen)} (${fmtAgo(group.first_seen)})`),
      fact("Last seen", `${fmtTime(group.last_seen)} (${fmtAgo(group.last_seen)})`),
      fact("Versions", versions.length ? versions.map(([v, n]) => `${v}${n !== null ? ` ×${n}` : ""}`).join(", ") : "—"),
      statusFacts),
    hints.length ? h("div", { class: "warn group-hints", role: "note" },
      h("strong", {}, "What to fix: "), hints.length === 1 ? hints[0] : h("ul", {}, hints.map((x) => h("li", {}, x)))) : null,
    group.reason ? whyGrouped(group) : null);

  const times = events.map((e) => e.time).filter(Boolean);
  // the server's hourly series covers recent weeks; older activity is bucketed here
  const recent = group.timeline && Array.isArray(group.timeline.counts) && group.timeline.counts.some((c) => c > 0);
  const buckets = recent ? seriesBuckets(group.timeline) : timeBuckets(times);
  const timeline = h("section", { class: "card" },
    h("h2", {}, "Events over time"),
    buckets.length ? barChart(buckets, { label: `events of group ${group.id} over time`,
      // drawn about as wide as it is shown, so its labels keep their size on a phone
      width: Math.max(320, Math.min(720, window.innerWidth - 60)) }) : h("p", { class: "muted" }, "No timestamps."),
    h("table", { class: "table events" },
      h("thead", {}, h("tr", {}, ["Event", "Time", "Version", "Offsets", "Received", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, events.slice(0, 50).map((e) => h("tr", { dataset: { eventId: e.id } },
        h("td", { class: "mono" }, `#${e.id}`),
        h("td", { class: "nowrap" }, fmtTime(e.time)),
        h("td", {}, e.version || "—"),
        h("td", {}, e.space || "—"),
        h("td", { class: "muted" }, fmtAgo(e.received_at)),
        h("td", {}, h("button", { type: "button", class: "ghost small", on: { click: () => showEvent(e) } }, "show")))))),
    events.length > 50 ? h("p", { class: "muted" }, `Showing 50 of ${events.length} events.`) : null);

  return [h("p", {}, h("a", { href: "#/crashes" }, "← all crash groups")), header, eventPanel, timeline];
}

/** The stored event with raw lines and all frames; the group's summary of it (first frames
 * only) when that fails, saying so. */
async function fullEvent(ev) {
  if (ev.id === undefined) return ev;
  try {
    return normEvent(await getJson(`/crash-events/${encodeURIComponent(ev.id)}`));
  } catch (err) {
    return { ...ev, notes: [...(ev.notes || []), `showing the group's summary of this event (first frames only): ${err.message}`] };
  }
}

function whyGrouped(group) {
  const r = group.reason;
  const keyRow = (f) => h("li", {}, h("code", {}, f.function || f.key || "?"),
    f.kind ? h("span", { class: "muted" }, ` by ${f.kind}`) : null,
    f.skipped ? h("span", { class: "muted" }, ` — skipped: ${f.skipped}`) : null);
  return h("details", { class: "why", id: "why-grouped" },
    h("summary", {}, "Why these crashes are grouped"),
    r.explanation ? h("p", {}, r.explanation) : null,
    r.basis ? h("p", { class: "muted" }, "Basis: ", h("code", {}, r.basis)) : null,
    r.frames.length ? [h("p", { class: "muted small" }, "Frames in the fingerprint:"), h("ol", { class: "small" }, r.frames.map(keyRow))] : null,
    r.skipped.length ? [h("p", { class: "muted small" }, "Frames left out (not in-app):"), h("ul", { class: "small" }, r.skipped.map(keyRow))] : null,
    group.fingerprint ? h("p", { class: "muted mono small" }, "fingerprint ", group.fingerprint) : null);
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/** Resolved / regressed times. "Regressed" is when the crash that reopened the group
 * happened (the server stores the event's own time), so it never follows "Last seen". */
function statusFactsOf(group) {
  return [
    group.status === "resolved" && group.resolved_at ? fact("Resolved", `${fmtTime(group.resolved_at)} (${fmtAgo(group.resolved_at)})`) : null,
    group.status === "regressed" && group.regressed_at ? fact("Regressed", `${fmtTime(group.regressed_at)} (${fmtAgo(group.regressed_at)})`) : null,
    group.status === "ignored" ? fact("Ignored", "muted: its crashes are counted but alert nothing") : null,
  ];
}

/** The buttons that change a group's status; each answer (the group as the server now has
 * it) re-renders the pill, the buttons and the status facts through ``onChange``. */
function statusActions(group, onChange) {
  const out = h("span", { class: "row" });
  const act = (label, title, route, body) => {
    const btn = h("button", {
      type: "button", class: "ghost", title, dataset: { action: route + (body ? "-off" : "") },
      on: {
        click: async () => {
          for (const b of out.querySelectorAll("button")) b.disabled = true;
          try {
            onChange(normGroup(await postJson(`/crash-groups/${encodeURIComponent(group.id)}/${route}`, body || {})));
          } catch (err) {
            for (const b of out.querySelectorAll("button")) b.disabled = false;
            out.appendChild(errorBox(err));
          }
        },
      },
    }, label);
    return btn;
  };
  const st = group.status;
  if (st === "resolved") out.appendChild(act("Reopen", "Reopen: the group counts as unresolved again", "resolve", { resolved: false }));
  else if (st !== "ignored") out.appendChild(act("Mark resolved", "Mark resolved: a new crash in this group will flag it as regressed", "resolve"));
  if (st === "ignored") out.appendChild(act("Stop ignoring", "Unmute: new crashes alert again", "ignore", { ignored: false }));
  else out.appendChild(act("Ignore", "Mute: keep counting crashes, but never alert (no regression, no spike)", "ignore"));
  if (st === "resolved") out.prepend(pill("resolved " + fmtAgo(group.resolved_at), "resolved"));
  return out;
}

/** The plugin's own panic: language, message, where, its reassembled output and the
 * runtime's text frames (Go's goroutine traceback), never called DWARF. */
function panicView(panic, textFrames) {
  if (!panic) return null;
  const kind = [panic.language || panic.kind || "?", panic.recovered ? "recovered" : null,
    panic.partial ? "no trap followed" : null].filter(Boolean).join(", ");
  const locations = (panic.locations || []).map((l) => [l.file, l.line, l.column].filter((x) => x !== null && x !== undefined && x !== "").join(":"));
  return h("section", { class: "panic", id: "panic" },
    h("h3", {}, "Panic ", h("span", { class: "muted", id: "panic-language" }, `(${kind})`)),
    h("p", { class: "mono", id: "panic-message" }, panic.message || "(no message)"),
    locations.length ? h("p", { class: "mono", id: "panic-location" }, "at ", locations.join(", ")) : null,
    textFrames.length ? [
      h("p", { class: "muted small" }, `${textFrames.length} frames of the runtime's own traceback (its text, not DWARF):`),
      h("ol", { class: "backtrace runtime-text", id: "panic-frames" }, textFrames.map((f) => h("li", { class: "chain" },
        h("div", { class: "frame", dataset: { status: f.status || "runtime-text" } },
          h("span", { class: "frame-main" }, h("span", { class: "fn" }, frameName(f)),
            f.file ? h("span", { class: "loc" }, " at ", h("span", { class: "file" }, frameLocation(f) || f.file)) : null),
          h("span", { class: "frame-meta" }, frameStatusPill(f.status)))))),
    ] : null,
    panic.lines && panic.lines.length > 1 ? h("details", {},
      h("summary", {}, `Its output, reassembled from ${panic.records || panic.lines.length} log record(s)`),
      h("pre", { class: "raw-log", id: "panic-text" }, panic.lines.join("\n"))) : null);
}

function breadcrumbsView(crumbs) {
  if (!crumbs || !crumbs.length) return null;
  return h("section", { class: "breadcrumbs", id: "breadcrumbs" },
    h("h3", {}, "Breadcrumbs ", h("span", { class: "muted small" }, "the plugin's last log lines on this thread before the crash")),
    h("ol", { class: "small mono" }, crumbs.map((b) => h("li", {},
      h("span", { class: "muted" }, `${b.line}: [${b.level || "?"}] `), b.text))));
}

async function eventView(ev, group) {
  const symbolized = ev.frames.filter((f) => f.status === "runtime-text");
  const textFrames = symbolized.length ? symbolized : ((ev.panic && ev.panic.frames) || []);
  ev = { ...ev, frames: ev.frames.filter((f) => f.status !== "runtime-text") };
  const files = [...new Set(ev.frames.filter((f) => f.file && f.line).map((f) => f.file))];
  const available = files.length
    ? (await getJson("/web/sources", { file: files, plugin: ev.plugin || group.plugin })).available || {}
    : {};
  const onSource = (f) => (available[f.file] ? sourceContext(f, ev.plugin || group.plugin) : null);
  return h("section", { class: "card event", dataset: { eventId: ev.id ?? "" } },
    h("div", { class: "card-head" },
      h("h2", {}, "Backtrace"),
      h("span", { class: "muted" }, ev.id !== undefined ? `event #${ev.id}` : "", ev.time ? ` · ${fmtTime(ev.time)}` : "",
        ev.runtime ? ` · ${ev.runtime}` : "", ev.space ? ` · offsets as ${ev.space}` : "")),
    ev.partial ? h("p", { class: "warn" }, "Partial: the log block was cut short or damaged. ", (ev.notes || []).join("; ")) : null,
    !ev.partial && ev.notes && ev.notes.length ? h("p", { class: "muted" }, ev.notes.join("; ")) : null,
    h("p", { class: "legend muted small" }, "Innermost first. Status: ",
      h("span", { class: "pill frame-exact" }, "exact"), " file and line from DWARF or the source map · ",
      h("span", { class: "pill frame-function-only" }, "function-only"), " no line · ",
      h("span", { class: "pill frame-index-only" }, "index-only"), " no name · ",
      h("span", { class: "pill frame-unknown" }, "unknown"), ". Inlined frames are indented under their caller."),
    ev.frames.length || !textFrames.length ? backtrace(ev.frames, { onSource }) : null,
    panicView(ev.panic, textFrames),
    breadcrumbsView(ev.breadcrumbs),
    h("h3", {}, "Raw log lines"),
    ev.raw && ev.raw.length ? h("pre", { class: "raw-log" }, ev.raw.join("\n")) : h("p", { class: "muted" }, "Not kept."),
    ev.grouping ? h("details", {}, h("summary", {}, "Grouping of this event"),
      h("pre", { class: "small" }, JSON.stringify(ev.grouping, null, 2))) : null);
}

/** A collapsible source excerpt around the frame's line; fetched when opened. */
function sourceContext(frame, plugin) {
  const body = h("div", { class: "source-body" }, h("p", { class: "muted small" }, "Loading…"));
  const det = h("details", { class: "source" + (frame.inlined ? " inlined" : "") },
    h("summary", {}, "source"), body);
  det.addEventListener("toggle", async () => {
    if (!det.open || det.dataset.loaded) return;
    det.dataset.loaded = "1";
    try {
      const src = await getJson("/web/source", { file: frame.file, line: frame.line, context: 5, plugin });
      mount(body, sourceView(src, frame.line));
    } catch (err) {
      mount(body, h("p", { class: "muted small" }, err.message));
    }
  });
  return det;
}

function sourceView(src, line) {
  const lines = src.lines || [];
  const first = src.first_line || 1;
  if (!src.line_in_file) return h("p", { class: "warn small" }, `${src.path} has only ${src.total_lines} lines: the uploaded source does not match this build.`);
  const table = h("table", { class: "source-table", title: src.path },
    h("tbody", {}, lines.map((textLine, i) => {
      const n = first + i;
      return h("tr", { class: n === line ? "hit" : "" },
        h("td", { class: "ln" }, String(n)),
        h("td", { class: "code" }, textLine));
    })));
  return [h("div", { class: "muted small" }, src.path, src.origin === "embedded" ? " (embedded in the module's DWARF)" : " (uploaded)"), table];
}
