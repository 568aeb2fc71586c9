// Funnel and SLA: GET /v1/reports/funnel (contacts, or ?object=deals) and GET /v1/reports/sla.
import { getJSON } from "./api.js";
import {
  el, fillCards, fillTable, handleError, number, plot, readFilters, restoreFilters, saveFilters,
  showMessage, start,
} from "./ui.js";

const form = document.getElementById("filters");
const $ = (id) => document.getElementById(id);

const NO_FUNNEL_DATA = "No data yet: no contact or deal has entered a stage. Send CRM events to the ingest service (or run closedloop simulate) and reload this page.";
const NOTHING_IN_RANGE = "Nothing in this date range: no contact or deal entered a stage, and no contact became an MQL, between these dates.";

const percent = (rate) => (rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(2)}%`);
const when = (stamp) => (stamp ? stamp.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "–");

// The exits of a stage: recycled / disqualified for contacts, lost for deals.
function exits(report) {
  return report.object === "deals"
    ? [["lost", "Lost"]]
    : [["recycled", "Recycled"], ["disqualified", "Disqualified"]];
}

async function drawFunnelChart(report) {
  const stages = report.stages;
  const exitKeys = exits(report);
  const exitText = (s) => exitKeys.filter(([k]) => s[k]).map(([k, l]) => `${l.toLowerCase()} ${s[k]}`).join(", ");
  await plot("funnel-chart", [{
    type: "funnel",
    name: "Volume",
    y: stages.map((s) => s.stage),
    x: stages.map((s) => s.volume),
    text: stages.map((s) => (s.conversion_rate === null ? String(s.volume) : `${s.volume} · ${percent(s.conversion_rate)} onward`)),
    customdata: stages.map((s) => [s.converted, number(s.median_days_to_next), exitText(s) || "none"]),
    textinfo: "text",
    textposition: "auto",
    insidetextfont: { color: "#fff" },
    cliponaxis: false,
    marker: { color: "#1f5fbf" },
    connector: { fillcolor: "#dbe5f5" },
    hovertemplate: "%{y}: %{x} entered<br>converted onward: %{customdata[0]}<br>median days to next: %{customdata[1]}<br>exits: %{customdata[2]}<extra></extra>",
  }], {
    margin: { t: 10, r: 40, b: 20, l: 100 },
    height: Math.max(360, 60 + 48 * stages.length),
    showlegend: false,
    yaxis: { automargin: true },
  });
}

function drawFunnel(report) {
  const deals = report.object === "deals";
  $("funnel-title").textContent = deals ? "Deal funnel: deal stages, then won and lost" : "Contact funnel: lifecycle stages";
  const exitKeys = exits(report);
  fillTable(
    $("funnel-table"),
    [{ label: "Stage" }, { label: "Volume", num: true }, { label: "Converted", num: true }, { label: "Conversion rate", num: true }, { label: "Median days to next", num: true },
      ...exitKeys.map(([, label]) => ({ label, num: true }))],
    report.stages.map((s) => [
      s.stage, String(s.volume), String(s.converted), percent(s.conversion_rate), number(s.median_days_to_next),
      ...exitKeys.map(([key]) => String(s[key])),
    ]),
  );
  const total = (key) => report.stages.reduce((sum, s) => sum + s[key], 0);
  $("funnel-exits").textContent = deals
    ? `Lost after a stage: ${total("lost")} deal(s) in all (the "lost" row counts the deals that first became lost in range).`
    : `Exits: ${total("recycled")} contact(s) recycled and ${total("disqualified")} disqualified right after a stage.`;
  return drawFunnelChart(report);
}

async function drawSla(sla) {
  const o = sla.overall;
  $("sla-rule").textContent = `A response is the contact's first later sales touch (a sales-sourced campaign, a meeting, call or sales email) or its first later change to sql, recycled or disqualified. Breached: answered after more than ${sla.sla_hours} hours, or unanswered that long after becoming an MQL. As of ${when(sla.as_of)}.`;
  fillCards($("sla-totals"), [
    ["MQLs", String(o.mqls), "sla-mqls"],
    ["Responded", String(o.responded), "sla-responded"],
    ["Median hours", number(o.median_hours), "sla-median"],
    ["90th percentile hours", number(o.p90_hours), "sla-p90"],
    [`Breached (> ${sla.sla_hours} h)`, String(o.breached), "sla-breached"],
  ]);
  const weeks = sla.weeks.map((w) => w.week);
  const series = [["mqls", "MQLs", "#1f5fbf"], ["breached", "Breached", "#a4262c"]];
  await plot("sla-chart", series.map(([key, name, color]) => ({
    type: "bar", name, marker: { color }, x: weeks, y: sla.weeks.map((w) => w[key]),
    hovertemplate: `%{x}<br>${name}: %{y}<extra></extra>`,
  })), {
    barmode: "group",
    margin: { t: 30, r: 10, b: 60, l: 50 },
    height: 360,
    // Full ISO weeks crowd a laptop-wide chart: the year only where it starts or changes.
    xaxis: { type: "category", automargin: true, tickvals: weeks, ticktext: weeks.map((w, i) => (i && w.slice(0, 4) === weeks[i - 1].slice(0, 4) ? w.slice(5) : w)) },
    yaxis: { title: { text: "Contacts" }, rangemode: "tozero" },
  });
  const row = (w) => [w.week, String(w.mqls), String(w.responded), number(w.median_hours), number(w.p90_hours), String(w.breached)];
  fillTable(
    $("sla-table"),
    [{ label: "ISO week" }, { label: "MQLs", num: true }, { label: "Responded", num: true }, { label: "Median hours", num: true }, { label: "p90 hours", num: true }, { label: "Breached", num: true }],
    sla.weeks.map(row),
    ["Overall", ...row(o).slice(1)],
  );
  drawBreaches(sla);
}

function drawBreaches(sla) {
  // The API lists the breaches a page at a time (the first 100 by MQL time here) and counts
  // them all in breaches_total.
  const total = sla.breaches_total;
  const shown = sla.breaches.length;
  const open = sla.breaches.filter((b) => b.responded_at === null).length;
  const listed = shown < total ? ` The ${shown} earliest MQLs are listed; ${open} of them` : ` ${open} of them`;
  $("breaches-summary").textContent = total
    ? `${total} contact(s) breached the ${sla.sla_hours}-hour SLA.${listed} have no response yet.`
    : "None: every MQL in range got a response within the SLA (or is still inside it).";
  fillTable(
    $("breaches-table"),
    [{ label: "Contact" }, { label: "ISO week" }, { label: "Became MQL" }, { label: "First response" }, { label: "Hours to response", num: true }],
    sla.breaches.map((b) => [
      b.contact_id, b.week, when(b.mql_at),
      b.responded_at ? when(b.responded_at) : el("span", { class: "loss", text: "no response yet" }),
      number(b.hours_to_response),
    ]),
  );
}

async function draw() {
  const filters = readFilters(form);
  saveFilters(filters);
  const range = { from: filters.from, to: filters.to };
  const [report, sla] = await Promise.all([
    getJSON("/v1/reports/funnel", { ...range, object: filters.object }),
    getJSON("/v1/reports/sla", range),
  ]);
  const any = report.stages.some((s) => s.volume) || sla.overall.mqls;
  showMessage(any ? "" : (filters.from || filters.to ? NOTHING_IN_RANGE : NO_FUNNEL_DATA));
  await drawFunnel(report);
  await drawSla(sla);
}

async function load() {
  restoreFilters(form);
  await draw();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await draw(); } catch (err) { handleError(err); }
});
// Switching between the contact and the deal funnel redraws at once (Apply does too).
$("funnel-object").addEventListener("change", () => form.requestSubmit());
start(load);
