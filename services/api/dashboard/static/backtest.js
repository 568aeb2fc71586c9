// The Leads page's backtest section: two lead definitions side by side on the same decided
// deals (GET /v1/lead-definitions/{id}/backtest?version=&compare=&from=&to=); every number
// is the API's.
import { getJSON } from "./api.js";
import { downloadCSV, el, fillCards, fillTable, guarded, money, number, plot, readFilters } from "./ui.js";
import { $, note, orExpected, percent, ruleWords, when } from "./leads_words.js";

const btForm = $("backtest-form");
let latest = 0; // the latest request wins when answers arrive out of order
let saveAll = () => {};

// Backtest. A choice is "id@version" (a stored version) or "id" (its latest); the compare
// select's "none" backtests one definition alone. A choice in the address that is not listed
// is kept and sent as it is: the API judges it (404 unknown, 422 malformed).
const NONE = "none";
const day = (d) => d.toISOString().slice(0, 10);

// The default range: the last 12 months up to today included (UTC days; to is exclusive).
function lastYear() {
  const now = new Date();
  const [y, m, d] = [now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()];
  return { from: day(new Date(Date.UTC(y - 1, m, d))), to: day(new Date(Date.UTC(y, m, d + 1))) };
}

function choices(select, options, wanted, fallback) {
  const values = options.map(([value]) => value);
  const extra = wanted && !values.includes(wanted) ? [[wanted, `${wanted} (not listed)`]] : [];
  select.replaceChildren(...[...options, ...extra].map(([value, text]) => el("option", { value, text })));
  select.value = wanted || fallback;
}

// Fill the form from the address (or the defaults: the active definition, another one, last year).
export function setUpBacktest(body, query) {
  const defined = body.definitions.length > 0;
  btForm.hidden = !defined;
  if (!defined) {
    $("backtest-body").hidden = true;
    note("backtest-status", "No lead definition to backtest yet: store one (see above), then compare it with another.");
    return null;
  }
  const options = body.definitions.flatMap((d) => [...d.versions].reverse().map((v) => [
    `${d.id}@${v.version}`, `${d.id} v${v.version}${v.version === d.version ? " (latest)" : ""}${d.active ? ", active" : ""}`,
  ]));
  const first = body.definitions.find((d) => d.id === body.active) || body.definitions[0];
  const second = body.definitions.find((d) => d.id !== first.id);
  choices($("bt-definition"), options, query.get("definition"), `${first.id}@${first.version}`);
  choices($("bt-compare"), [[NONE, "Nothing (this one alone)"], ...options], query.get("compare"), second ? `${second.id}@${second.version}` : NONE);
  const range = query.has("definition") ? { from: query.get("from") || "", to: query.get("to") || "" } : lastYear();
  $("bt-from").value = range.from;
  $("bt-to").value = range.to;
  return drawBacktest();
}

function backtestQuery(f) {
  const at = f.definition.lastIndexOf("@");
  const versioned = at > 0 && /^\d+$/.test(f.definition.slice(at + 1));
  const id = versioned ? f.definition.slice(0, at) : f.definition;
  return {
    path: `/v1/lead-definitions/${encodeURIComponent(id)}/backtest`,
    params: { from: f.from, to: f.to, version: versioned ? f.definition.slice(at + 1) : "", compare: f.compare === NONE ? "" : f.compare },
  };
}

const lift = (x) => (x === null ? "–" : `${x.toFixed(4)}×`);
const FIGURES = [
  ["Decided deals (won or lost)", (d) => String(d.decided_deals)],
  ["Won deals", (d) => String(d.won_deals)],
  ["Base win rate", (d) => percent(d.base_win_rate)],
  ["Qualified deals (caught)", (d) => String(d.qualified_deals)],
  ["Qualified and won", (d) => String(d.qualified_won)],
  ["Qualified win rate", (d) => percent(d.qualified_win_rate)],
  ["Lift (qualified ÷ base rate)", (d) => lift(d.lift)],
  ["Qualified accounts", (d) => String(d.qualified_accounts)],
  ["Share of won revenue caught", (d) => percent(d.share_of_won_revenue)],
  ["Share of won deals caught", (d) => percent(d.share_of_won_deals)],
  ["Caught won revenue", (d) => money(d.caught_won_revenue)],
  ["Won revenue", (d) => money(d.won_revenue)],
  ["Median days qualifying → won", (d) => number(d.median_days_to_won)],
  ["Won deals missed", (d) => String(d.missed_total)],
];

function drawComparison(body, names) {
  fillTable($("backtest-table"), [{ label: "Figure" }, ...names.map((n) => ({ label: n, num: true }))],
    FIGURES.map(([figure, shown]) => [figure, ...body.definitions.map(shown)]));
  $("backtest-rules").replaceChildren(...body.definitions.map((d, i) => el("li", {}, el("strong", { text: names[i] }), `: ${ruleWords(d.rule)}`)));
  const bars = [
    ["Win rate of its qualified deals", "qualified_win_rate", "#1f5fbf"],
    ["Base win rate (all decided deals)", "base_win_rate", "#9aa3b0"],
    ["Share of won revenue caught", "share_of_won_revenue", "#17663a"],
  ];
  return plot("backtest-chart", bars.map(([name, key, color]) => ({
    type: "bar",
    name,
    x: names,
    y: body.definitions.map((d) => (d[key] === null ? null : d[key] * 100)),
    text: body.definitions.map((d) => percent(d[key])),
    textposition: "outside",
    cliponaxis: false,
    marker: { color },
    hovertemplate: `%{x}<br>${name}: %{text}<extra></extra>`,
  })), {
    barmode: "group",
    height: 340,
    margin: { t: 40, r: 10, b: 40, l: 50 },
    yaxis: { title: { text: "%" }, rangemode: "tozero" },
  });
}

function drawMissed(body, name) {
  const first = body.definitions[0];
  const shownPart = first.missed.length < first.missed_total ? ` The first ${first.missed.length} by close date are listed.` : "";
  $("missed-caption").textContent = first.missed_total
    ? `${first.missed_total} won deals were missed by ${name}: the account had not met its rule before the deal was created.${shownPart}`
    : `${name} missed no won deal.`;
  fillTable($("missed-table"),
    [{ label: "Deal" }, { label: "Account" }, { label: `Amount (${body.currency})`, num: true }, { label: "Closed at" }, { label: "Why it was missed" }],
    first.missed.map((m) => [m.deal_id, m.account_id, m.amount === null ? "not converted" : money(m.amount), when(m.closed_at), m.reasons.join("; ")]));
}

function drawFits(fits) {
  const whole = fits.filter((f) => f.markov && f.grade);
  const lacking = fits.filter((f) => !(f.markov && f.grade));
  const lacks = (f) => `${f.month} (${[!f.markov && "no score", !f.grade && "no grade"].filter(Boolean).join(", ")}; ${f.training_deals} deals decided before it)`;
  fillCards($("fits-cards"), [
    ["Months refitted", String(fits.length), "fits-months"],
    ["With a score and a grade fit", String(whole.length), "fits-complete"],
    ["Missing a fit", String(lacking.length), "fits-lacking"],
  ]);
  $("fits-summary").textContent = `Each month in which a decided deal was created gets its own fit, learned only from the deals decided before the month began (walk-forward), so no deal is judged with what was learned after it. ${lacking.length
    ? `Missing a fit: ${lacking.map(lacks).join("; ")}. A deal created in such a month fails any condition on the missing score or grade, so its account cannot qualify for it.`
    : "Every month had both fits."}`;
  const yes = (x) => (x ? "yes" : "no");
  fillTable($("fits-table"),
    [{ label: "Deals created in" }, { label: "Learned from deals decided before" }, { label: "Training deals", num: true }, { label: "Won", num: true }, { label: "Score fit" }, { label: "Grade fit" }],
    fits.map((f) => [f.month, when(f.decided_before), String(f.training_deals), String(f.won), yes(f.markov), yes(f.grade)]));
}

function explain(body) {
  const d = body.definitions[0];
  const range = `${body.from ?? "the first deal"} and ${body.to ? `${body.to} (exclusive)` : "now"}`;
  const unconverted = body.unconverted_won_deals ? ` ${body.unconverted_won_deals} won deals have no amount in ${body.currency}: they count as won, with no revenue.` : "";
  $("backtest-explained").textContent = `What this means: each of the ${d.decided_deals} deals with an account won or lost between ${range} counts once, for every definition; ${d.won_deals} were won, a base win rate of ${percent(d.base_win_rate)}. A definition caught a deal when the deal's account met its rule at some moment in the ${body.lookback_days} days before the deal was created, scored and graded as the models stood then. A useful definition's caught deals win more often than the base rate (a lift above 1) while it still catches a good share of the won revenue; a stricter rule usually trades share for win rate. Deals' statuses, amounts and dates are read as they are now.${unconverted}`;
}

export async function drawBacktest() {
  saveAll();
  const f = readFilters(btForm);
  if (!f.definition) return;
  const mine = ++latest;
  const { path, params } = backtestQuery(f);
  const { body, error } = await orExpected(getJSON(path, params), [404, 422]);
  if (mine !== latest) return;
  const empty = body && body.definitions[0].decided_deals === 0;
  $("backtest-body").hidden = Boolean(error) || empty;
  if (error) {
    const what = error.status === 404 ? "unknown definition or version" : "the choice or the dates are not valid";
    note("backtest-status", `No backtest (${what}): ${error.message}.`);
    return;
  }
  if (empty) {
    note("backtest-status", "No deal with an account was won or lost in this date range: nothing to backtest. Widen the range.");
    return;
  }
  note("backtest-status", "");
  const names = body.definitions.map((d, i) => `${d.id} v${d.version}${i && d.id === body.definitions[0].id && d.version === body.definitions[0].version ? " (again)" : ""}`);
  $("backtest-caption").textContent = `${body.definitions[0].decided_deals} decided deals; money in ${body.currency}; lookback ${body.lookback_days} days.`;
  drawMissed(body, names[0]);
  drawFits(body.fits);
  explain(body);
  await drawComparison(body, names);
}

// Wire the section's controls; ``save`` keeps the whole page's choices in the address.
export function wireBacktest(save) {
  saveAll = save;
  btForm.addEventListener("submit", guarded(drawBacktest));
  $("bt-definition").addEventListener("change", guarded(drawBacktest));
  $("bt-compare").addEventListener("change", guarded(drawBacktest));
  $("download-backtest").addEventListener("click", guarded(() => {
    const { path, params } = backtestQuery(readFilters(btForm));
    return downloadCSV(path, params);
  }));
}
