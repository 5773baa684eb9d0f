// DOM building without HTML strings. Every piece of data reaches the page through
// textContent or setAttribute on an allow-listed attribute: never innerHTML, never an
// event-handler attribute, never a javascript: URL. Names in modules, logs and labels are
// attacker-controlled; this file is the one place that puts them into the document.

const SVG_NS = "http://www.w3.org/2000/svg";

// Attributes that may carry data. URLs are checked separately (safeUrl).
const URL_ATTRS = new Set(["href", "src"]);
const ALLOWED_ATTRS = new Set([
  "id", "class", "title", "alt", "role", "type", "name", "value", "placeholder", "for",
  "colspan", "rowspan", "min", "max", "step", "checked", "selected", "disabled",
  "target", "rel", "download", "sandbox", "loading", "referrerpolicy", "tabindex",
  "width", "height", "x", "y", "x1", "x2", "y1", "y2", "points", "d", "fill",
  "stroke", "stroke-width", "viewBox", "preserveAspectRatio", "text-anchor",
  "dominant-baseline", "font-size", "rx", "cx", "cy", "r", "transform", "open",
  "autocomplete", "spellcheck", "list", "multiple", "size", "datetime", "start",
]);

/** A URL we are willing to put in href/src: same-origin paths, fragments and blob: URLs. */
export function safeUrl(value) {
  const s = String(value);
  if (s.startsWith("#") || s.startsWith("blob:")) return s;
  if (s.startsWith("/") && !s.startsWith("//") && !s.startsWith("/\\")) return s;
  throw new Error(`refusing URL ${JSON.stringify(s)}`);
}

function setAttr(el, key, value) {
  if (value === null || value === undefined || value === false) return;
  if (key === "on") {
    for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    return;
  }
  if (key === "dataset") {
    for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    return;
  }
  if (key === "style") {              // only our own constant styles, as an object
    for (const [k, v] of Object.entries(value)) el.style.setProperty(k, String(v));
    return;
  }
  const lower = key.toLowerCase();
  if (lower.startsWith("on")) throw new Error(`refusing event attribute ${key}`);
  if (URL_ATTRS.has(lower)) {
    el.setAttribute(key, safeUrl(value));
    return;
  }
  if (!ALLOWED_ATTRS.has(key) && !lower.startsWith("aria-") && !lower.startsWith("data-")) {
    throw new Error(`attribute ${key} is not allow-listed`);
  }
  el.setAttribute(key, value === true ? "" : String(value));
}

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(el, c);
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/x", class: "y"}, "text", otherNode, [more]) -> HTMLElement. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) setAttr(el, k, v);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) setAttr(el, k, v);
  append(el, children);
  return el;
}

/** Replace all children of el. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Escape-free rendering of a value that may be missing. */
export function text(value, fallback = "—") {
  return value === null || value === undefined || value === "" ? fallback : String(value);
}
