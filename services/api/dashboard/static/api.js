// The read API as the dashboard calls it: the same /v1 endpoints a user's script calls,
// with the user's key as a bearer token. The key lives in localStorage only.
const STORAGE = "closedloop.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  get isAuth() { return this.status === 401 || this.status === 403; }
}

export function storedKey() { return localStorage.getItem(STORAGE); }
export function storeKey(key) { localStorage.setItem(STORAGE, key.trim()); }
export function forgetKey() { localStorage.removeItem(STORAGE); }

// A key handed over as /#key=... is stored, then removed from the address bar and history.
export function takeKeyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (!key) return false;
  storeKey(key);
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function call(path, params, accept) {
  const response = await fetch(url(path, params), {
    headers: { Authorization: `Bearer ${storedKey() || ""}`, Accept: accept },
  });
  if (!response.ok) {
    let problem = { title: response.statusText };
    try { problem = await response.json(); } catch { /* not a problem body */ }
    throw new ApiError(response.status, problem);
  }
  return response;
}

export async function getJSON(path, params) {
  return (await call(path, params, "application/json")).json();
}

// The report as the API renders it for Accept: text/csv, with the API's file name.
export async function getCSV(path, params) {
  const response = await call(path, params, "text/csv");
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return { blob: await response.blob(), filename: match ? match[1] : "report.csv" };
}
