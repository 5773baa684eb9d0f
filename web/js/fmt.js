// Formatting of numbers, times and frames: text only, never markup.

/** Parse an API time (ISO string or seconds/milliseconds since the epoch) to a Date. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtTime(value) {
  const d = toDate(value);
  if (!d) return "—";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtAgo(value, now = Date.now()) {
  const d = toDate(value);
  if (!d) return "—";
  const sec = Math.round((now - d.getTime()) / 1000);
  if (sec < 0) return "just now";
  if (sec < 60) return `${sec}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h ago`;
  return `${Math.floor(sec / 86400)}d ago`;
}

export function fmtCount(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

export function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return `${(x * 100).toFixed(digits)}%`;
}

export function fmtDelta(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  const v = (x * 100).toFixed(digits);
  if (Number(v) === 0) return `${(0).toFixed(digits)} pt`;
  return `${x > 0 ? "+" : ""}${v} pt`;
}

export function fmtHex(n) {
  return n === null || n === undefined ? "—" : "0x" + Number(n).toString(16);
}

/** "file:line:col" of a frame, or null. */
export function location(frame) {
  if (!frame || !frame.file) return null;
  let s = frame.file;
  if (frame.line) s += ":" + frame.line;
  if (frame.line && frame.column) s += ":" + frame.column;
  return s;
}

/** Function name to show for a frame: resolved name, else what the input printed, else index. */
export function frameName(frame) {
  if (!frame) return "?";
  if (frame.function) return frame.function;
  if (frame.printed_name) return frame.printed_name;
  if (frame.wasm_index !== null && frame.wasm_index !== undefined) return `$f${frame.wasm_index}`;
  return "??";
}

/** Short identity for tables: "build_id:abcdef…" -> "build_id:abcdef12". */
export function shortId(value, n = 12) {
  if (!value) return "—";
  const s = String(value);
  const i = s.indexOf(":");
  return i >= 0 ? s.slice(0, i + 1) + s.slice(i + 1, i + 1 + n) : s.slice(0, n);
}
