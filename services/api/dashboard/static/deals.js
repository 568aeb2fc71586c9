// Deal explorer: GET /v1/deals/{id}/attribution; campaign names from GET /v1/reports/roi.
import { ApiError, getJSON } from "./api.js";
import { el, fillCards, fillSelect, handleError, models, money, restoreFilters, saveFilters, showMessage, start } from "./ui.js";

const form = document.getElementById("deal-form");
let names = null;

async function campaignNames() {
  if (names === null) {
    const report = await getJSON("/v1/reports/roi", { model: "linear", group_by: "campaign" });
    names = new Map(report.rows.map((row) => [row.campaign_id, row.campaign_name]));
  }
  return names;
}

function why(body) {
  const deal = body.deal;
  if (body.status === "pending") return `${body.model} has not credited this deal yet (a data-driven model before its first fit, or a custom model being computed).`;
  if (deal.status !== "won") return `This deal is ${deal.status}: only won deals are credited, so its journey is not listed.`;
  if (deal.reporting_amount === null) return `This won deal has no usable exchange rate to ${deal.reporting_currency}: nothing was credited.`;
  if (body.unattributed) return "No touch earned this deal: its revenue is unattributed.";
  return "";
}

function touch(item, campaignNamesMap, currency) {
  const when = item.occurred_at ? item.occurred_at.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "–";
  const name = campaignNamesMap.get(item.campaign_id);
  return el("li", {},
    el("span", { class: "credit", text: `${money(item.credit)} ${currency}` }),
    el("div", { class: "when", text: when }),
    el("div", {}, el("strong", { text: name || item.campaign_id }), name ? ` (${item.campaign_id})` : "", ` · ${item.channel || "no channel"}`),
    el("div", {}, ...item.roles.map((role) => el("span", { class: "chip", text: role.replaceAll("_", " ") })),
      ` weight ${(item.weight * 100).toFixed(2)}%`),
  );
}

async function explain() {
  const { deal, model } = Object.fromEntries(new FormData(form));
  const id = deal.trim();
  if (!id) return;
  saveFilters({ deal: id, model });
  const result = document.getElementById("deal-result");
  let body;
  try {
    body = await getJSON(`/v1/deals/${encodeURIComponent(id)}/attribution`, { model });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      result.hidden = true;
      showMessage(`No deal with id "${id}". Deal ids are the CRM's (for example from a deal.created event).`, { error: true });
      return;
    }
    throw err;
  }
  showMessage("");
  const d = body.deal;
  const currency = d.reporting_currency;
  document.getElementById("deal-title").textContent = `Deal ${d.deal_id} under ${body.model}`;
  fillCards(document.getElementById("deal-facts"), [
    // A closed deal keeps the CRM's last stage before it closed: say so, it is not its stage now.
    ["Status", !d.stage ? d.status : d.status === "open" ? `open (${d.stage})` : `${d.status} (last stage ${d.stage})`, "deal-status"],
    ["Amount", d.amount === null ? "–" : `${money(d.amount)} ${d.currency}`, "deal-amount"],
    [`Revenue (${currency})`, d.reporting_amount === null ? "–" : money(d.reporting_amount), "deal-revenue"],
    ["Account", d.account_id || "–", "deal-account"],
    ["Created", d.created_at ? d.created_at.slice(0, 10) : "–", "deal-created"],
    ["Closed", d.closed_at ? d.closed_at.slice(0, 10) : "–", "deal-closed"],
    ["Touches", String(body.journey.length), "deal-touches"],
  ]);
  const note = why(body);
  const noteNode = document.getElementById("deal-note");
  noteNode.textContent = note;
  noteNode.hidden = !note;
  const map = await campaignNames();
  document.getElementById("timeline").replaceChildren(...body.journey.map((item) => touch(item, map, currency)));
  result.hidden = false;
}

async function load() {
  const query = restoreFilters(form);
  fillSelect(document.getElementById("model"), (await models()).map((m) => m.id), query.get("model") || "linear");
  if (query.get("deal")) await explain();
  else document.getElementById("deal-id").focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await explain(); } catch (err) { handleError(err); }
});
start(load);
