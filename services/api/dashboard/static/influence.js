// Influence: GET /v1/reports/influence; sourced vs influenced revenue per campaign, and who sourced it.
import { getJSON } from "./api.js";
import {
  NO_DATA, addDecimals, compareDecimal, downloadCSV, el, fillCards, fillTable, guarded, money,
  plot, readFilters, restoreFilters, saveFilters, showMessage, start,
} from "./ui.js";

const form = document.getElementById("filters");
const label = (row) => row.campaign_name || row.campaign_id;

function drawTotals(report) {
  const t = report.totals;
  const cur = report.currency;
  fillCards(document.getElementById("influence-totals"), [
    ["Won revenue", `${money(t.won_revenue)} ${cur}`, "won-revenue"],
    ["Won deals", String(t.won_deals), "won-deals"],
    ["Marketing-sourced", `${money(t.marketing_sourced_revenue)} ${cur} · ${t.marketing_sourced_deals} deals`, "marketing-sourced"],
    ["Sales-sourced", `${money(t.sales_sourced_revenue)} ${cur} · ${t.sales_sourced_deals} deals`, "sales-sourced"],
    ["Unsourced (empty journey)", `${money(t.unsourced_revenue)} ${cur} · ${t.unsourced_deals} deals`, "unsourced"],
  ]);
  const sum = addDecimals([t.marketing_sourced_revenue, t.sales_sourced_revenue, t.unsourced_revenue]);
  const ok = compareDecimal(sum, t.won_revenue) === 0;
  document.getElementById("influence-check").replaceChildren(el("span", {
    class: ok ? "gain" : "loss",
    text: ok ? "✓ Marketing + sales + unsourced = won revenue." : `✗ The sourced parts sum to ${money(sum)} ${cur}.`,
  }));
  document.getElementById("influence-unconverted").textContent = t.unconverted_deals
    ? `${t.unconverted_deals} won deal(s) have no usable exchange rate to ${cur} and are left out (see Reconciliation).`
    : "";
}

async function drawChart(report) {
  const labels = report.rows.map(label);
  const series = [["sourced_revenue", "Sourced", "#1f5fbf"], ["influenced_revenue", "Influenced", "#8fb3e8"]];
  await plot("influence-chart", series.map(([key, name, color]) => ({
    type: "bar",
    name,
    marker: { color },
    x: labels,
    y: report.rows.map((row) => Number(row[key])), // bar heights only; text is exact
    text: report.rows.map((row) => money(row[key])),
    textposition: "none",
    hovertemplate: `%{x}<br>${name}: %{text} ${report.currency}<extra></extra>`,
  })), {
    barmode: "group",
    yaxis: { title: { text: `Revenue (${report.currency})` }, tickformat: ",.0f" },
    xaxis: { automargin: true },
  });
}

function drawTable(report) {
  const t = report.totals;
  fillTable(
    document.getElementById("influence-table"),
    [{ label: "Campaign" }, { label: "Channel" }, { label: "Sourced by" }, { label: "Sourced revenue", num: true }, { label: "Sourced deals", num: true }, { label: "Influenced revenue", num: true }, { label: "Influenced deals", num: true }],
    report.rows.map((r) => [
      label(r), r.channel || "–", r.is_sales_sourced ? "Sales" : "Marketing",
      money(r.sourced_revenue), String(r.sourced_deals), money(r.influenced_revenue), String(r.influenced_deals),
    ]),
    // Influenced revenue overlaps between campaigns: it has no meaningful total.
    ["Total sourced", "", "", money(addDecimals([t.marketing_sourced_revenue, t.sales_sourced_revenue])),
      String(t.marketing_sourced_deals + t.sales_sourced_deals), "", ""],
  );
}

async function draw() {
  const filters = readFilters(form);
  saveFilters(filters);
  const report = await getJSON("/v1/reports/influence", filters);
  const any = report.totals.won_deals || report.totals.unconverted_deals;
  showMessage(any ? "" : (filters.from || filters.to ? "No deal was won in this date range." : NO_DATA));
  drawTotals(report);
  await drawChart(report);
  drawTable(report);
}

const download = () => downloadCSV("/v1/reports/influence", readFilters(form));

async function load() {
  restoreFilters(form);
  await draw();
}

form.addEventListener("submit", guarded(draw));
document.getElementById("download-csv").addEventListener("click", guarded(download));
start(load);
