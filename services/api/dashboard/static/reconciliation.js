// Reconciliation: GET /v1/reports/reconciliation; attributed + unattributed + pending per model.
import { getJSON } from "./api.js";
import {
  NO_DATA, addDecimals, compareDecimal, el, fillCards, fillTable, handleError, money, plot,
  readFilters, restoreFilters, saveFilters, showMessage, start,
} from "./ui.js";

const form = document.getElementById("filters");

async function draw() {
  const filters = readFilters(form);
  saveFilters(filters);
  const report = await getJSON("/v1/reports/reconciliation", filters);
  const cur = report.currency;
  const inRange = filters.from || filters.to;
  showMessage(report.won_deals || report.unconverted.count ? "" : (inRange ? "No deal was won in this date range." : NO_DATA));
  fillCards(document.getElementById("recon-totals"), [
    ["Closed-won revenue", `${money(report.closed_won_revenue)} ${cur}`, "closed-won"],
    ["Won deals", String(report.won_deals), "won-deals"],
    ["Unconverted deals", String(report.unconverted.count), "unconverted-count"],
  ]);
  const ids = Object.keys(report.models);
  const parts = ["attributed", "unattributed", "pending"];
  const colors = { attributed: "#1f5fbf", unattributed: "#8a94a3", pending: "#e0a526" };
  await plot("recon-chart", parts.map((part) => ({
    type: "bar",
    orientation: "h",
    name: part,
    marker: { color: colors[part] },
    y: ids,
    x: ids.map((id) => Number(report.models[id][part])), // bar lengths only; text is exact
    text: ids.map((id) => money(report.models[id][part])),
    textposition: "none",
    hovertemplate: `%{y} ${part}: %{text} ${cur}<extra></extra>`,
  })), {
    barmode: "stack",
    legend: { orientation: "h", y: 1.12, traceorder: "normal" },
    height: 80 + 28 * ids.length,
    margin: { t: 30, r: 10, b: 40, l: 110 },
    xaxis: { title: { text: `Revenue (${cur})` }, tickformat: ",.0f" },
    yaxis: { autorange: "reversed" },
  });
  const check = (m) => {
    const sum = addDecimals([m.attributed, m.unattributed, m.pending]);
    const ok = compareDecimal(sum, report.closed_won_revenue) === 0;
    return el("span", { class: ok ? "gain" : "loss", text: ok ? "✓ adds up" : `✗ sums to ${money(sum)}` });
  };
  fillTable(
    document.getElementById("recon-table"),
    [{ label: "Model" }, { label: "Status" }, { label: "Attributed", num: true }, { label: "Unattributed", num: true }, { label: "Pending", num: true }, { label: "= closed-won?" }],
    ids.map((id) => { const m = report.models[id]; return [id, m.status, money(m.attributed), money(m.unattributed), money(m.pending), check(m)]; }),
  );
  const amounts = Object.entries(report.unconverted.amounts).map(([c, a]) => `${money(a)} ${c}`);
  document.getElementById("unconverted").textContent = report.unconverted.count
    ? `${report.unconverted.count} won deal(s) have no usable exchange rate to ${cur} and are left out of the revenue above: ${amounts.join(", ")}.`
    : `None: every won deal in range converts to ${cur}.`;
}

async function load() {
  restoreFilters(form);
  await draw();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await draw(); } catch (err) { handleError(err); }
});
start(load);
