// Shared page behaviour: the key form, messages, exact decimal helpers, tables, filters.
import { ApiError, forgetKey, getCSV, getJSON, storedKey, storeKey, takeKeyFromFragment } from "./api.js";

const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function showMessage(text, { error = false } = {}) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", error);
  box.setAttribute("role", error ? "alert" : "status");
  box.hidden = !text;
}

function askForKey(reason) {
  $("page").hidden = true;
  $("key-status").hidden = true;
  showMessage("");
  $("key-reason").textContent = reason;
  $("key-panel").hidden = false;
  $("key-input").value = "";
  $("key-input").focus();
}

function showKeyStatus() {
  const key = storedKey();
  $("key-label").textContent = `Key …${key.slice(-4)}`;
  $("key-status").hidden = false;
}

// Shows the API's refusal of the key (401/403) with the key form, or any other problem.
export function handleError(err) {
  if (err instanceof ApiError && err.isAuth) {
    const what = err.status === 401 ? "The API refused this key" : "This key may not read reports";
    askForKey(`${what} (${err.status} ${err.problem.title || ""}: ${err.message}). Enter a key with the read scope.`);
  } else if (err instanceof ApiError) {
    showMessage(`The API answered ${err.status} ${err.problem.title || ""}: ${err.message}`, { error: true });
  } else {
    showMessage(`Could not reach the API: ${err.message}`, { error: true });
  }
}

// Runs load() once a key is known; again whenever the user enters a new one.
export function start(load) {
  const run = async () => {
    $("key-panel").hidden = true;
    $("page").hidden = false;
    showKeyStatus();
    try { await load(); } catch (err) { handleError(err); }
  };
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeKey($("key-input").value);
    run();
  });
  $("change-key").addEventListener("click", () => askForKey("Enter another API key."));
  $("forget-key").addEventListener("click", () => { forgetKey(); askForKey("The key was removed from this browser."); });
  takeKeyFromFragment();
  if (storedKey()) run(); else askForKey("Enter an API key to read the reports.");
}

export const NO_DATA = "No data yet: no closed-won deal has been attributed. Send CRM events to the ingest service (or run closedloop simulate) and reload this page.";
export const NOTHING_IN_RANGE = "Nothing in this date range: no revenue or cost falls between these dates.";

// Exact decimal strings (money) compared and added as scaled BigInts, never as floats.
function scaleOf(text) { const dot = text.indexOf("."); return dot < 0 ? 0 : text.length - dot - 1; }
function scaled(text, scale) {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole + fraction.padEnd(scale, "0"));
  return negative ? -value : value;
}
export function compareDecimal(a, b) {
  const scale = Math.max(scaleOf(a), scaleOf(b));
  const x = scaled(a, scale), y = scaled(b, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}
export function addDecimals(values) {
  const scale = Math.max(0, ...values.map(scaleOf));
  let sum = 0n;
  for (const value of values) sum += scaled(value, scale);
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const text = scale ? `${whole}.${digits.slice(digits.length - scale)}` : whole;
  return negative ? `-${text}` : text;
}

// "1234567.50" -> "1,234,567.50": grouping only, the digits stay the API's.
export function money(text) {
  if (text === null || text === undefined) return "–";
  const negative = text.startsWith("-");
  const [whole, fraction] = (negative ? text.slice(1) : text).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "−" : "") + grouped + (fraction !== undefined ? `.${fraction}` : "");
}
export function number(value, digits = 2) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

export function campaignLabel(row) {
  if ("campaign_id" in row) return row.campaign_name || row.campaign_id;
  return row.channel || "(no channel)";
}

export function models() { return getJSON("/v1/models").then((body) => body.models); }

// Filters live in the page's query string too, so a view can be bookmarked or shared.
export function readFilters(form) {
  const values = {};
  for (const [name, value] of new FormData(form)) {
    if (values[name] === undefined) values[name] = value;
  }
  return values;
}
export function restoreFilters(form) {
  const query = new URLSearchParams(location.search);
  for (const [name, value] of query) {
    const field = form.elements.namedItem(name);
    if (field && "value" in field && !(field instanceof RadioNodeList)) field.value = value;
  }
  return query;
}
export function saveFilters(values) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) if (value) query.set(name, value);
  const text = query.toString();
  history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
}

export function fillSelect(select, ids, chosen) {
  select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
  if (chosen && ids.includes(chosen)) select.value = chosen;
}

// A table: header cells are {label, num}; body rows are arrays of cell text (or nodes).
export function fillTable(table, columns, rows, footer) {
  const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null, text: c.label }))));
  const cell = (value, i) => el("td", { class: columns[i].num ? "num" : null }, value);
  const body = el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map(cell))));
  table.replaceChildren(head, body);
  if (footer) table.append(el("tfoot", {}, el("tr", {}, ...footer.map(cell))));
}

export function fillCards(list, items) {
  list.replaceChildren(...items.map(([term, value, id]) => el("div", {}, el("dt", { text: term }), el("dd", { text: value, id }))));
}

export function pendingNote(node, statuses) {
  const pending = Object.entries(statuses).filter(([, s]) => s === "pending").map(([m]) => m);
  node.hidden = pending.length === 0;
  node.textContent = pending.length
    ? `Pending: ${pending.join(", ")} ${pending.length > 1 ? "have" : "has"} not credited all won revenue yet (a data-driven model before its first fit, or a custom model being computed); their numbers are incomplete.`
    : "";
}

export function plot(node, traces, layout) {
  const base = { margin: { t: 30, r: 10, b: 110, l: 80 }, font: { family: "system-ui, sans-serif", size: 12 }, legend: { orientation: "h", y: 1.12 } };
  return window.Plotly.react(node, traces, { ...base, ...layout }, { responsive: true, displaylogo: false });
}

// An event handler that runs `fn` and shows its error instead of leaving it unhandled.
export const guarded = (fn) => async (event) => {
  if (event) event.preventDefault();
  try { await fn(); } catch (err) { handleError(err); }
};

// Download a report as CSV: the API answers it (Accept: text/csv), the browser saves it.
export async function downloadCSV(path, params) {
  const { blob, filename } = await getCSV(path, params);
  const link = el("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
