// Reusable pieces of pages: status pills, the symbolized backtrace, module health, errors.

import { h } from "./dom.js";
import { location as frameLocation, frameName, fmtHex } from "./fmt.js";

const FRAME_STATUS_HELP = {
  "exact": "function, file and line from DWARF at this address",
  "function-only": "function known (DWARF, name section or symbol) but no line",
  "index-only": "only the function index is known: the module has no names for it",
  "unknown": "nothing could be resolved for this address",
  "runtime-text": "function, file and line as the language runtime printed them (Go's traceback text), not DWARF",
  "unsymbolized": "not symbolized yet: the module was not uploaded (it is re-symbolized when it arrives)",
};

export function pill(textValue, kind) {
  return h("span", { class: `pill pill-${kind || "neutral"}` }, textValue);
}

export function frameStatusPill(status) {
  return h("span", { class: `pill frame-${status || "unknown"}`, title: FRAME_STATUS_HELP[status] || "" }, status || "unknown");
}

export function groupStatusPill(status) {
  const kind = { new: "new", ongoing: "ongoing", regressed: "regressed", resolved: "resolved", ignored: "ignored" }[status] || "neutral";
  return h("span", { class: `pill status-${kind}` }, status || "unknown");
}

export function errorBox(err) {
  const msg = err && err.message ? err.message : String(err);
  return h("div", { class: "error", role: "alert" }, h("strong", {}, "Error: "), msg);
}

export function emptyState(title, ...body) {
  return h("div", { class: "empty" }, h("h3", {}, title), ...body);
}

/** Group a flat frame list (innermost first, inline chains expanded) into input frames. */
export function chains(frames) {
  const out = [];
  let cur = null;
  frames.forEach((f, i) => {
    const key = f.input_index ?? `i${i}`;
    if (!cur || cur.key !== key || !cur.open) {
      cur = { key, frames: [], open: true };
      out.push(cur);
    }
    cur.frames.push(f);
    if (!f.inlined) cur.open = false;     // the outermost element closes the chain
  });
  return out;
}

/**
 * The symbolized backtrace: one block per input frame; inlined functions are indented
 * under their caller and labelled "inlined into"; every frame shows its status and reason.
 * `onSource(frame)` (optional) returns a Node with source context, or null.
 */
export function backtrace(frames, { onSource } = {}) {
  if (!frames || !frames.length) return emptyState("No frames", h("p", {}, "The log had no backtrace for this crash."));
  const list = h("ol", { class: "backtrace" });
  for (const chain of chains(frames)) {
    const outer = chain.frames[chain.frames.length - 1];
    const li = h("li", { class: "chain" + (outer.native ? " native" : "") });
    chain.frames.forEach((f, j) => {
      const inlinedInto = f.inlined ? frameName(chain.frames[j + 1]) : null;
      const loc = frameLocation(f);
      const row = h("div", { class: "frame" + (f.inlined ? " inlined" : ""), dataset: { status: f.status || "unknown" } },
        h("span", { class: "frame-no" }, j === 0 ? `#${f.input_index ?? "?"}` : ""),
        h("span", { class: "frame-main" },
          h("span", { class: "fn" }, frameName(f)),
          inlinedInto ? h("span", { class: "inl" }, " inlined into ", h("span", { class: "fn" }, inlinedInto)) : null,
          loc ? h("span", { class: "loc" }, " at ", h("span", { class: "file" }, loc)) : null,
          f.native ? h("span", { class: "muted" }, " (host frame)") : null),
        h("span", { class: "frame-meta" },
          frameStatusPill(f.status),
          f.raw_offset !== null && f.raw_offset !== undefined && !f.inlined
            ? h("span", { class: "muted mono", title: "offset printed by the runtime" }, fmtHex(f.raw_offset)) : null));
      li.appendChild(row);
      if (f.reason) li.appendChild(h("div", { class: "reason" + (f.inlined ? " inlined" : "") }, f.reason));
      if (f.printed_name && f.function && f.printed_name !== f.function && !f.inlined) {
        li.appendChild(h("div", { class: "reason" }, "printed as ", h("code", {}, f.printed_name)));
      }
      if (f.dwarf_function && f.dwarf_function !== f.function) {
        li.appendChild(h("div", { class: "reason" }, "DWARF names it ", h("code", {}, f.dwarf_function)));
      }
      if (f.decl_file && !f.line) {
        li.appendChild(h("div", { class: "reason" }, "declared at ",
          h("span", { class: "file" }, `${f.decl_file}:${f.decl_line || "?"}`)));
      }
      if (onSource && f.file && f.line) {
        const src = onSource(f);
        if (src) li.appendChild(src);
      }
    });
    list.appendChild(li);
  }
  return list;
}

const AOT_KINDS = new Set(["aot", "aot.wasm", "elf-object"]);

/** ✓/✗ badges for a module's symbol health (server's `symbols`, see model.normModule). */
export function healthBadges(m) {
  const st = m.symbols;
  const badge = (ok, label, title) => h("span", { class: `badge ${ok === true ? "ok" : ok === false ? "bad" : "na"}`, title: title || "" },
    (ok === true ? "✓ " : ok === false ? "✗ " : "○ ") + label);
  const out = [
    badge(st.dwarf || st.dwarf_via_companion, "DWARF",
      st.dwarf ? "DWARF line tables in this module" : st.dwarf_via_companion ? `through ${m.companion}` : "no DWARF"),
    badge(st.names || st.names_via_companion, "names",
      st.names ? "Wasm name section" : st.names_via_companion ? `through ${m.companion}` : "no name section"),
    badge(st.build_id ? true : null, "build_id", st.build_id || "no build_id section: matched to companions by code hash instead"),
  ];
  if (AOT_KINDS.has(m.kind)) out.push(badge(st.aot_matched === true, "AOT→Wasm", m.companion ? `matched to ${m.companion}` : "no matching .wasm uploaded"));
  const idx = st.index_ready ? true : st.index_state === "failed" || st.index_error ? false : null;
  out.push(badge(idx, "index", st.index_error || `index ${st.index_state || "pending"}`));
  return h("span", { class: "badges" }, out);
}
