// ROI: GET /v1/reports/roi for one model, sorted here; the CSV is the API's own (Accept: text/csv).
import { getJSON } from "./api.js";
import {
  NO_DATA, NOTHING_IN_RANGE, campaignLabel, compareDecimal, downloadCSV, el, fillCards, fillSelect,
  guarded, models, money, number, pendingNote, readFilters, restoreFilters, saveFilters,
  showMessage, start,
} from "./ui.js";

const form = document.getElementById("filters");
const table = document.getElementById("roi-table");
let report = null;
let sort = { key: null, descending: true };

const byText = (a, b) => (a ?? "\uffff").localeCompare(b ?? "\uffff");
const byNumber = (a, b) => (a === null) - (b === null) || (a ?? 0) - (b ?? 0);
const COLUMNS = [
  { key: "name", label: "Campaign", value: (r) => campaignLabel(r), compare: byText, campaignOnly: true },
  { key: "channel", label: "Channel", value: (r) => r.channel, compare: byText, show: (v) => v || "–" },
  { key: "revenue", label: "Revenue", value: (r) => r.revenue, compare: compareDecimal, show: money, num: true },
  { key: "deals", label: "Deals", value: (r) => r.deals, compare: byNumber, show: (v) => number(v, 4), num: true },
  { key: "cost", label: "Cost", value: (r) => r.cost, compare: compareDecimal, show: money, num: true },
  { key: "roi", label: "ROI", value: (r) => r.roi, compare: byNumber, show: (v) => number(v, 4), num: true },
  { key: "roas", label: "ROAS", value: (r) => r.roas, compare: byNumber, show: (v) => number(v, 4), num: true },
];

function columns() {
  return COLUMNS.filter((c) => !c.campaignOnly || report.group_by === "campaign");
}

function sortedRows() {
  const rows = [...report.rows];
  const column = COLUMNS.find((c) => c.key === sort.key);
  if (!column) return rows; // the API's order: revenue descending
  rows.sort((a, b) => column.compare(column.value(a), column.value(b)) * (sort.descending ? -1 : 1));
  return rows;
}

function header(column) {
  const button = el("button", { type: "button", text: column.label });
  button.addEventListener("click", () => {
    sort = { key: column.key, descending: sort.key === column.key ? !sort.descending : column.num === true };
    drawTable();
    table.querySelector(`th[data-key="${column.key}"] button`).focus();
  });
  const state = sort.key === column.key ? (sort.descending ? "descending" : "ascending") : null;
  return el("th", { scope: "col", class: column.num ? "num" : null, "data-key": column.key, "aria-sort": state }, button);
}

function drawTable() {
  const shown = columns();
  const cell = (column, row) => {
    const value = column.value(row);
    return el("td", { class: column.num ? "num" : null, text: column.show ? column.show(value) : value });
  };
  const totals = report.totals;
  const foot = shown.map((c) => {
    const text = c.key === shown[0].key ? "Total" : c.key === "revenue" ? money(totals.revenue) : c.key === "cost" ? money(totals.cost) : "";
    return el("td", { class: c.num ? "num" : null, text });
  });
  table.replaceChildren(
    el("caption", { class: "hint", text: `${report.model}, ${report.currency}; revenue credited to each ${report.group_by}` }),
    el("thead", {}, el("tr", {}, ...shown.map(header))),
    el("tbody", {}, ...sortedRows().map((row) => el("tr", {}, ...shown.map((c) => cell(c, row))))),
    el("tfoot", {}, el("tr", {}, ...foot)),
  );
}

async function draw() {
  const filters = readFilters(form);
  saveFilters(filters);
  report = await getJSON("/v1/reports/roi", filters);
  pendingNote(document.getElementById("roi-status"), { [report.model]: report.status });
  showMessage(report.rows.length ? "" : (filters.from || filters.to ? NOTHING_IN_RANGE : NO_DATA));
  const t = report.totals;
  fillCards(document.getElementById("roi-totals"), [
    ["Revenue", `${money(t.revenue)} ${report.currency}`, "total-revenue"],
    ["Cost", `${money(t.cost)} ${report.currency}`, "total-cost"],
    ["Unattributed revenue", `${money(t.unattributed_revenue)} ${report.currency}`, "total-unattributed"],
    ["Pending revenue", `${money(t.pending_revenue)} ${report.currency}`, "total-pending"],
    ["Model status", report.status, "model-status"],
  ]);
  drawTable();
}

const download = () => downloadCSV("/v1/reports/roi", readFilters(form));

async function load() {
  const query = restoreFilters(form);
  fillSelect(document.getElementById("model"), (await models()).map((m) => m.id), query.get("model") || "linear");
  await draw();
}

form.addEventListener("submit", guarded(() => { sort = { key: null, descending: true }; return draw(); }));
document.getElementById("model").addEventListener("change", guarded(draw));
document.getElementById("download-csv").addEventListener("click", guarded(download));
start(load);
