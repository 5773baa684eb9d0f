// Talking to the wasmprof HTTP API (/api/v1). The only module that knows routes.
// A token (scope "read") is kept in localStorage when the server requires one and sent as
// "Authorization: Bearer"; the dashboard asks for it on the first 401.

const BASE = "/api/v1";
const TOKEN_KEY = "wasmprof.token";

export class ApiError extends Error {
  constructor(status, detail, path) {
    super(`${path}: HTTP ${status}${detail ? ": " + detail : ""}`);
    this.status = status;
    this.detail = detail;
    this.path = path;
  }
}

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives for this page only */ }
}

/** "/api/v1" + path + query string, dropping empty parameters. */
export function apiUrl(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, String(x)));
    else q.append(k, String(v));
  }
  const qs = q.toString();
  return BASE + path + (qs ? "?" + qs : "");
}

async function request(method, path, params, body) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = apiUrl(path, params);
  const resp = await fetch(url, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!resp.ok) {
    let detail = "";
    try {
      const j = await resp.json();
      detail = typeof j.detail === "string" ? j.detail : (j.error || JSON.stringify(j.detail || j));
    } catch { detail = resp.statusText; }
    throw new ApiError(resp.status, detail, url);
  }
  return resp;
}

export async function getJson(path, params) {
  return (await request("GET", path, params)).json();
}

export async function postJson(path, body, params) {
  return (await request("POST", path, params, body)).json();
}

export async function putJson(path, body, params) {
  return (await request("PUT", path, params, body)).json();
}

export async function deleteJson(path, params) {
  return (await request("DELETE", path, params)).json();
}

export async function getText(path, params) {
  return (await request("GET", path, params)).text();
}

/** The first `limit` characters of a text answer (e.g. an SVG's root element); the rest of
 * the answer is not read (the download is cancelled). */
export async function getTextHead(path, params, limit = 4096) {
  const resp = await request("GET", path, params);
  if (!resp.body || typeof resp.body.getReader !== "function") return (await resp.text()).slice(0, limit);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (text.length < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return text.slice(0, limit);
}

/** A same-origin URL a child frame can load without our Authorization header: the API URL
 * itself when no token is set, else a blob: URL of the response fetched with the token. */
export async function frameUrl(path, params, type) {
  if (!getToken()) return apiUrl(path, params);
  const resp = await request("GET", path, params);
  const blob = new Blob([await resp.arrayBuffer()], { type: type || resp.headers.get("Content-Type") || "" });
  const url = URL.createObjectURL(blob);
  blobUrls.push(url);
  return url;
}

const blobUrls = [];

/** Free the blob: URLs made by frameUrl (called when the page changes). */
export function releaseFrameUrls() {
  while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
}

/** The list in a response that is either a bare list or {key: [...]} / {items: [...]}. */
export function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && Array.isArray(data.items)) return data.items;
  return [];
}
