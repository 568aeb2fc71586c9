// Compare models: GET /v1/reports/compare (grouped bars) and /v1/reports/compare/diff.
import { getJSON } from "./api.js";
import {
  NO_DATA, NOTHING_IN_RANGE, addDecimals, campaignLabel, el, fillSelect, fillTable, guarded, models, money,
  pendingNote, plot, readFilters, restoreFilters, saveFilters, showMessage, start,
} from "./ui.js";

const form = document.getElementById("filters");
const boxes = document.getElementById("model-boxes");
const diffForm = document.getElementById("diff-form");
const DEFAULT_MODELS = ["first_touch", "last_touch", "linear", "w_shaped", "markov"];

function chosenModels() {
  return [...boxes.querySelectorAll("input:checked")].map((box) => box.value);
}

function period() {
  const { from, to, group_by } = readFilters(form);
  return { from, to, group_by };
}

async function drawCompare() {
  const chosen = chosenModels();
  const filters = period();
  saveFilters({ ...filters, models: chosen.join(",") });
  if (chosen.length === 0) {
    showMessage("Tick at least one model to compare.");
    window.Plotly.purge("compare-chart");
    return;
  }
  const report = await getJSON("/v1/reports/compare", { ...filters, models: chosen.join(",") });
  pendingNote(document.getElementById("compare-status"), report.status);
  showMessage(report.rows.length ? "" : (filters.from || filters.to ? NOTHING_IN_RANGE : NO_DATA));
  const labels = report.rows.map(campaignLabel);
  const traces = report.models.map((model) => ({
    type: "bar",
    name: model,
    x: labels,
    y: report.rows.map((row) => Number(row.revenue[model])), // bar heights only; text is exact
    text: report.rows.map((row) => money(row.revenue[model])),
    textposition: "none",
    hovertemplate: `%{x}<br>${model}: %{text} ${report.currency}<extra></extra>`,
  }));
  await plot("compare-chart", traces, {
    barmode: "group",
    yaxis: { title: { text: `Revenue (${report.currency})` }, tickformat: ",.0f" },
    xaxis: { automargin: true },
  });
  const columns = [{ label: report.group_by === "campaign" ? "Campaign" : "Channel" }, ...report.models.map((m) => ({ label: m, num: true }))];
  fillTable(
    document.getElementById("compare-table"),
    columns,
    report.rows.map((row) => [campaignLabel(row), ...report.models.map((m) => money(row.revenue[m]))]),
    ["Total", ...report.models.map((m) => money(report.totals.revenue[m]))],
  );
}

async function drawDiff() {
  const { base, other } = readFilters(diffForm);
  const filters = period();
  const diff = await getJSON("/v1/reports/compare/diff", { ...filters, base, other });
  const gains = diff.rows.filter((row) => !row.moved.startsWith("-") && /[1-9]/.test(row.moved)).map((row) => row.moved);
  const losses = diff.rows.filter((row) => row.moved.startsWith("-")).map((row) => row.moved.slice(1));
  const what = diff.group_by === "campaign" ? "campaigns" : "channels";
  const cur = diff.currency;
  // The net total is zero whenever both models credit all won revenue: what moves is the gains.
  const net = /[1-9]/.test(diff.totals.moved) ? ` Net change ${money(diff.totals.moved)} ${cur} (a model has revenue pending).` : "";
  document.getElementById("diff-summary").textContent = diff.rows.length
    ? `Moving from ${base} to ${other}: ${gains.length} ${what} gain ${money(addDecimals(gains))} ${cur}, ${losses.length} lose ${money(addDecimals(losses))} ${cur}.${net}`
    : `Neither ${base} nor ${other} credits any revenue here.`;
  const moved = (text) => el("span", { class: text.startsWith("-") ? "loss" : /[1-9]/.test(text) ? "gain" : null, text: (/^[0-9.]*[1-9]/.test(text) ? "+" : "") + money(text) });
  const share = (value) => (value === null ? "–" : `${(value * 100).toFixed(2).replace("-", "−")}%`);
  fillTable(
    document.getElementById("diff-table"),
    [{ label: diff.group_by === "campaign" ? "Campaign" : "Channel" }, { label: "Channel" }, { label: `${base}`, num: true }, { label: `${other}`, num: true }, { label: "Moved", num: true }, { label: "Share of base", num: true }],
    diff.rows.map((row) => [campaignLabel(row), row.channel || "–", money(row.base_revenue), money(row.other_revenue), moved(row.moved), share(row.moved_share)]),
    ["Total", "", money(diff.totals.base_revenue), money(diff.totals.other_revenue), moved(diff.totals.moved), ""],
  );
}

async function load() {
  const known = (await models()).map((m) => m.id);
  const query = restoreFilters(form);
  const wanted = query.get("models") ? query.get("models").split(",") : DEFAULT_MODELS.filter((m) => known.includes(m));
  boxes.replaceChildren(
    el("legend", { text: "Models" }),
    ...known.map((id) => el("label", {}, el("input", { type: "checkbox", name: "model", value: id, checked: wanted.includes(id) }), id)),
  );
  fillSelect(document.getElementById("diff-base"), known, "linear");
  fillSelect(document.getElementById("diff-other"), known, known.includes("markov") ? "markov" : "first_touch");
  await Promise.all([drawCompare(), drawDiff()]);
}

boxes.addEventListener("change", guarded(drawCompare));
form.addEventListener("submit", guarded(() => Promise.all([drawCompare(), drawDiff()])));
diffForm.addEventListener("submit", guarded(drawDiff));
start(load);
