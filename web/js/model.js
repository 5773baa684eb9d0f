// The dashboard's view of API objects. Each norm* function accepts what /api/v1 returns
// and gives the fields pages use, so a renamed server field is fixed here only.

import { toDate } from "./fmt.js";

const DAY_MS = 86400e3;

function bool(...values) {
  for (const v of values) if (v !== undefined && v !== null) return Boolean(v);
  return undefined;
}

function parseMaybeJson(v, fallback) {
  if (typeof v !== "string") return v ?? fallback;
  try { return JSON.parse(v); } catch { return fallback; }
}

export function normModule(m) {
  const st = m.symbols || m.symbol_status || {};
  const info = m.info || {};
  const companion = m.companion || null;
  const index = st.index ?? m.index_state ?? null;
  return {
    id: m.id,
    name: m.filename || m.name || m.sha256,
    filename: m.filename || null,
    kind: m.kind || "wasm",
    plugin: m.plugin || null,
    version: m.version || null,
    identity: m.identity || null,
    sha256: m.sha256 || null,
    size: m.size ?? null,
    uploaded_at: m.uploaded_at ?? null,
    hints: Array.isArray(m.hints) ? m.hints : [],
    // (plugin, version) pairs using this module; one module can serve several
    links: (Array.isArray(m.plugins) ? m.plugins : [])
      .filter((l) => l && l.plugin).map((l) => ({ plugin: String(l.plugin), version: l.version ? String(l.version) : null })),
    notes: Array.isArray(info.notes) ? info.notes : [],
    companion: companion ? (companion.filename || `module ${companion.id}`) : null,
    symbols: {
      dwarf: Boolean(st.dwarf), dwarf_via_companion: Boolean(st.dwarf_via_companion),
      names: Boolean(st.names), names_via_companion: Boolean(st.names_via_companion),
      build_id: st.build_id ?? null,
      aot_matched: st.aot_matched_to_wasm ?? null,
      index_state: index,
      index_ready: st.index_ready ?? (index === "ready"),
      index_error: st.index_error ?? null,
    },
  };
}

/** Display status: new / ongoing / regressed / resolved / ignored. */
export function groupStatus(g, now = Date.now()) {
  const st = (g.status || "").toLowerCase();
  if (["resolved", "regressed", "new", "ongoing", "ignored"].includes(st)) return st;
  if (g.regressed_at && !g.resolved_at) return "regressed";
  const first = toDate(g.first_seen);
  if (first && now - first.getTime() < DAY_MS) return "new";
  return "ongoing";
}

function versionsOf(g) {
  const v = g.versions ?? g.version_counts ?? g.per_version ?? {};
  if (Array.isArray(v)) {
    const out = {};
    for (const x of v) {
      if (typeof x === "string") out[x] = null;
      else if (x) out[x.version ?? "(none)"] = x.count ?? null;
    }
    return out;
  }
  return v || {};
}

export function normFrame(f) {
  return f || {};
}

export function normGroup(g) {
  const top = parseMaybeJson(g.top_frames, []) || [];
  return {
    id: g.id,
    plugin: g.plugin || null,
    trap_kind: g.trap_kind || "unknown",
    title: g.title || null,
    message: g.message || null,
    status: groupStatus(g),
    count: g.count ?? g.event_count ?? 0,
    first_seen: g.first_seen ?? null,
    last_seen: g.last_seen ?? null,
    resolved_at: g.resolved_at ?? null,
    regressed_at: g.regressed_at ?? null,
    versions: versionsOf(g),
    top_frames: top.map(normFrame),
    reason: normReason(parseMaybeJson(g.reason, null), g.basis),
    fingerprint: g.fingerprint || null,
    timeline: g.timeline || g.histogram || null,
    sample_events: (g.sample_events || g.events || []).map(normEvent),
  };
}

/** Why a crash landed in its group: {basis, explanation, frames[], skipped[]}. */
function normReason(r, basis) {
  if (!r && !basis) return null;
  if (typeof r === "string") return { basis: basis || null, explanation: r, frames: [], skipped: [] };
  r = r || {};
  return {
    basis: r.basis || basis || null, explanation: r.explanation || "",
    frames: Array.isArray(r.frames) ? r.frames : [], skipped: Array.isArray(r.skipped) ? r.skipped : [],
  };
}

export function normEvent(e) {
  const crash = parseMaybeJson(e.crash, null) || {};
  const frames = parseMaybeJson(e.frames, null) || crash.frames || [];
  return {
    id: e.id,
    group_id: e.group_id ?? null,
    plugin: e.plugin ?? crash.plugin ?? null,
    version: e.version ?? null,
    labels: parseMaybeJson(e.labels, {}) || {},
    trap_kind: e.trap_kind ?? crash.trap_kind ?? null,
    runtime: e.runtime ?? crash.runtime ?? null,
    space: e.space ?? crash.space ?? null,
    message: e.message ?? crash.message ?? null,
    function: e.function ?? crash.function ?? null,
    thread: e.thread ?? crash.thread ?? null,
    time: e.occurred_at ?? e.received_at ?? e.timestamp ?? crash.timestamp ?? null,
    received_at: e.received_at ?? null,
    raw: e.raw ?? crash.raw ?? [],
    frames: frames.map(normFrame),
    partial: e.partial ?? crash.partial ?? false,
    notes: e.notes ?? crash.notes ?? [],
    grouping: parseMaybeJson(e.grouping, null),
    panic: e.panic ?? crash.panic ?? null,
    breadcrumbs: e.breadcrumbs ?? crash.breadcrumbs ?? [],
    origin: e.origin ?? crash.origin ?? null,
    source: e.source ?? crash.source ?? null,
    symbolized_with: parseMaybeJson(e.symbolized_with, null),
  };
}

/** The frame a group is "about": first resolved, non-native frame, else the first frame. */
export function headlineFrame(frames) {
  return frames.find((f) => !f.native && f.function && f.status !== "unknown") || frames[0] || null;
}

/** "k=v,k2=v2" -> {k: v, k2: v2}; ignores malformed parts. */
export function parseLabels(textValue) {
  const out = {};
  for (const part of String(textValue || "").split(",")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}
