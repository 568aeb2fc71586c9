// Leads: the active lead definition (GET /v1/lead-definitions), open accounts ranked by score or
// grade (GET /v1/reports/leads), one account's grade and score explained (GET
// /v1/accounts/{id}/grade and /score), the emitted MQLs (GET /v1/reports/mqls; its CSV is the
// API's own, Accept: text/csv), and the backtest of two definitions side by side (GET
// /v1/lead-definitions/{id}/backtest?version=&compare=&from=&to=): every number is the API's.
import { ApiError, getJSON } from "./api.js";
import {
  downloadCSV, el, fillCards, fillTable, guarded, money, number, plot, readFilters, restoreFilters,
  saveFilters, start,
} from "./ui.js";

const $ = (id) => document.getElementById(id);
const leadsForm = $("leads-filters");
const mqlForm = $("mql-filters");
const btForm = $("backtest-form");
let selected = null; // the account whose grade and score are shown
// The latest request of each part wins when answers arrive out of order.
const latest = { account: 0, leads: 0, mqls: 0, backtest: 0 };
let mqlRows = [];

const percent = (p) => (p === null || p === undefined ? "–" : `${(p * 100).toFixed(2)}%`);
const fixed = (x) => (x === null || x === undefined ? "–" : x.toFixed(6));
const signed = (x) => (x > 0 ? "+" : "") + x.toFixed(6);
const when = (stamp) => (stamp ? stamp.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "–");

function note(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

// The API's 409 / 404 answers are part of the page (no fit yet, unknown account); others propagate.
async function orExpected(promise, statuses = [409]) {
  try {
    return { body: await promise };
  } catch (err) {
    if (err instanceof ApiError && statuses.includes(err.status)) return { error: err };
    throw err;
  }
}

function saveAll() {
  saveFilters({ ...readFilters(leadsForm), ...readFilters(mqlForm), ...readFilters(btForm), account: selected });
}

// A definition's rule in plain words: "grade B or better · score ≥ 25% · has title".
function ruleWords(rule) {
  const m = rule.mql;
  const parts = [];
  if (m.min_grade) parts.push(m.min_grade === "A" ? "grade A" : `grade ${m.min_grade} or better`);
  if (m.min_score !== null && m.min_score !== undefined) parts.push(`score ≥ ${+(m.min_score * 100).toFixed(4)}%`);
  for (const key of m.required_attributes) {
    if (key.startsWith("account.")) parts.push(`the account has ${key.slice(8)}`);
    else if (key.startsWith("contact.")) parts.push(`a contact has ${key.slice(8)}`);
    else parts.push(`has ${key}`);
  }
  return parts.length ? parts.join(" · ") : "any open account (no condition set)";
}

const VERSION_COLUMNS = [{ label: "Version", num: true }, { label: "Rule" }, { label: "Note" }, { label: "Changed by" }, { label: "Changed at" }];

async function drawDefinitions() {
  const body = await getJSON("/v1/lead-definitions");
  const active = body.definitions.find((d) => d.id === body.active);
  $("no-definition").hidden = Boolean(active);
  $("active-definition").hidden = !active;
  $("api-origin").textContent = location.origin;
  if (active) {
    const newest = active.versions[active.versions.length - 1];
    $("definition-rule").textContent = ruleWords(active.rule);
    fillCards($("definition-cards"), [
      ["Definition", active.id, "definition-id"],
      ["Version", String(active.version), "definition-version"],
      ["Changed by", newest.created_by, "definition-by"],
      ["Changed at", when(newest.created_at), "definition-at"],
    ]);
    $("definition-stages").textContent = `Contacts already at ${active.rule.sales_ready_stages.join(", ")} count as sales-ready and are not made MQLs again.`;
    $("definition-note").textContent = newest.note ? `Note on this version: ${newest.note}` : "";
    fillTable($("versions-table"), VERSION_COLUMNS, [...active.versions].reverse().map((v) => [
      String(v.version), ruleWords(v.rule), v.note || "–", v.created_by, when(v.created_at),
    ]));
  }
  const others = body.definitions.filter((d) => d.id !== body.active);
  $("other-definitions").hidden = others.length === 0;
  fillTable($("others-table"), [{ label: "Definition" }, ...VERSION_COLUMNS.slice(0, 2), ...VERSION_COLUMNS.slice(3)],
    others.map((d) => {
      const newest = d.versions[d.versions.length - 1];
      return [d.id, String(d.version), ruleWords(d.rule), newest.created_by, when(newest.created_at)];
    }));
  return body;
}

function leadParams() {
  const f = readFilters(leadsForm);
  const pct = f.min_score_pct === "" ? null : Number(f.min_score_pct);
  return { min_grade: f.min_grade, min_score: pct === null ? "" : String(pct / 100), sort: f.sort, limit: 100 };
}

function accountButton(accountId) {
  const button = el("button", { type: "button", class: "link", "aria-controls": "account-detail", "data-account": accountId, text: accountId });
  button.addEventListener("click", guarded(() => selectAccount(accountId, { focus: true })));
  return button;
}

function markSelected() {
  for (const button of $("leads-table").querySelectorAll("button[data-account]")) {
    const on = button.dataset.account === selected;
    button.setAttribute("aria-pressed", String(on));
    button.closest("tr").classList.toggle("selected", on);
  }
}

const LEAD_COLUMNS = [{ label: "Account" }, { label: "Score", num: true }, { label: "Grade" }, { label: "Raw grade", num: true }, { label: "Touches", num: true }, { label: "Last touch (UTC)" }];

async function drawLeads() {
  saveAll();
  const mine = ++latest.leads;
  const { body, error } = await orExpected(getJSON("/v1/reports/leads", leadParams()));
  if (mine !== latest.leads) return;
  if (error) {
    fillTable($("leads-table"), LEAD_COLUMNS, []);
    $("leads-caption").textContent = "";
    note("leads-status", `No scores yet: ${error.message}. The worker fits the markov model once closed-won deals exist.`);
    return;
  }
  fillTable($("leads-table"), LEAD_COLUMNS, body.rows.map((r) => [
    accountButton(r.account_id), percent(r.probability), r.grade ?? "–", fixed(r.raw_grade), String(r.touches),
    el("span", { title: when(r.last_touch_at), text: r.last_touch_at ? r.last_touch_at.slice(0, 10) : "–" }),
  ]));
  const graded = body.grade_snapshot ? `grade fit #${body.grade_snapshot.fit_id}` : "no grade fit yet";
  $("leads-caption").textContent = `${body.rows.length} accounts (at most ${body.limit}) as of ${when(body.as_of)}; score from markov fit #${body.snapshot.fit_id}, ${graded}.`;
  const filtered = body.min_grade || body.min_score > 0;
  note("leads-status", body.rows.length ? (body.grade_snapshot ? "" : "No grade yet: the worker fits the grade once decided deals include a won and a lost one.")
    : filtered ? "No open account meets these filters." : "No open accounts: none was touched in the lookback window without a won deal.");
  markSelected();
}

function drawGrade({ body, error }) {
  $("grade-body").hidden = Boolean(error);
  if (error) { note("grade-status", error.status === 409 ? `No grade yet: ${error.message}.` : error.message); return; }
  const items = body.contributions;
  note("grade-status", items.length ? "" : "This account has no attributes: nothing to compare, its raw grade is 0.");
  fillCards($("grade-cards"), [
    ["Grade", body.letter, "grade-letter"],
    ["Raw grade", fixed(body.raw), "grade-raw"],
    ["Base rate (won / decided)", percent(body.base_rate), "grade-base"],
  ]);
  const c = body.cutoffs;
  $("grade-cutoffs").textContent = `Cut-offs on the raw grade: A ≥ ${fixed(c.A)} · B ≥ ${fixed(c.B)} · C ≥ ${fixed(c.C)} · else D (grade fit #${body.snapshot.fit_id}).`;
  const labels = items.map((i) => `${i.key} = ${i.value}`);
  // Room on both sides for the value written past each bar's end.
  const values = items.map((i) => i.contribution);
  const low = Math.min(0, ...values), high = Math.max(0, ...values);
  const pad = Math.max(high - low, 0.1) * 0.3;
  plot("grade-chart", [{
    type: "bar",
    orientation: "h",
    name: "Contribution",
    y: labels,
    x: items.map((i) => i.contribution),
    text: items.map((i) => (i.seen ? signed(i.contribution) : "0 (unseen)")),
    // Inside a bar long enough to hold it, else past its end; an unseen value's 0 bar has none.
    textposition: items.map((i) => (i.seen ? "auto" : "outside")),
    insidetextfont: { color: "#fff" },
    outsidetextfont: { color: "#1b2330" },
    cliponaxis: false,
    customdata: items.map((i) => [i.deals, i.won]),
    marker: { color: items.map((i) => (!i.seen ? "#9aa3b0" : i.contribution >= 0 ? "#17663a" : "#a4262c")) },
    hovertemplate: "%{y}: %{text}<br>decided deals with it: %{customdata[0]}, won: %{customdata[1]}<extra></extra>",
  }], {
    margin: { t: 10, r: 10, b: 40, l: 10 },
    height: Math.max(220, 70 + 28 * items.length),
    showlegend: false,
    xaxis: { title: { text: "log-odds against the base rate" }, range: [low - pad, high + pad], zeroline: true, zerolinecolor: "#5a6472" },
    yaxis: { autorange: "reversed", automargin: true },
  });
  fillTable($("grade-table"),
    [{ label: "Attribute" }, { label: "Value" }, { label: "Contribution", num: true }, { label: "Decided deals", num: true }, { label: "Won", num: true }],
    items.map((i) => [i.key, i.value, i.seen ? signed(i.contribution) : "0 (unseen)", String(i.deals), String(i.won)]));
}

function drawScore({ body, error }) {
  $("score-body").hidden = Boolean(error);
  if (error) { note("score-status", error.status === 409 ? `No score yet: ${error.message}.` : `No score: ${error.message}.`); return; }
  note("score-status", "");
  fillCards($("score-cards"), [
    ["Score (chance of a won deal)", percent(body.probability), "score-probability"],
    ["Touches in the window", String(body.journey.length), "score-touches"],
    ["Latest channel", body.state, "score-state"],
  ]);
  const channels = Object.entries(body.contributions).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  fillTable($("score-table"), [{ label: "Channel" }, { label: "Share of the score", num: true }],
    channels.map(([channel, share]) => [channel, percent(share)]));
}

async function selectAccount(accountId, { focus = false } = {}) {
  selected = accountId;
  const mine = ++latest.account;
  saveAll();
  markSelected();
  const path = `/v1/accounts/${encodeURIComponent(accountId)}`;
  const [grade, score] = await Promise.all([
    orExpected(getJSON(`${path}/grade`), [404, 409]),
    orExpected(getJSON(`${path}/score`), [404, 409]),
  ]);
  if (mine !== latest.account) return;
  $("account-title").textContent = `Account ${accountId}`;
  $("account-hint").hidden = true;
  $("account-body").hidden = false;
  drawScore(score);
  drawGrade(grade);
  if (focus) $("account-title").focus();
}

const MQL_COLUMNS = [{ label: "Contact" }, { label: "Account" }, { label: "Definition" }, { label: "Qualified at" }, { label: "Score", num: true }, { label: "Grade" }, { label: "Published" }];

async function drawMqls({ more = false } = {}) {
  saveAll();
  const f = readFilters(mqlForm);
  const mine = ++latest.mqls;
  const body = await getJSON("/v1/reports/mqls", { since: f.since, limit: f.limit || 100, offset: more ? mqlRows.length : 0 });
  if (mine !== latest.mqls) return;
  mqlRows = more ? [...mqlRows, ...body.rows] : body.rows;
  fillTable($("mql-table"), MQL_COLUMNS, mqlRows.map((r) => [
    r.contact_id, r.account_id, `${r.definition_id}@${r.version}`, when(r.qualified_at), percent(r.score), r.grade ?? "–", r.published ? "yes" : "not yet",
  ]));
  $("mql-more").hidden = body.next_offset === null;
  note("mql-status", mqlRows.length ? "" : f.since ? "No MQL since this date." : "No MQLs yet: the worker emits them when an account meets the active definition.");
}

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
function setUpBacktest(body, query) {
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

async function drawBacktest() {
  saveAll();
  const f = readFilters(btForm);
  if (!f.definition) return;
  const mine = ++latest.backtest;
  const { path, params } = backtestQuery(f);
  const { body, error } = await orExpected(getJSON(path, params), [404, 422]);
  if (mine !== latest.backtest) return;
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

const download = () => downloadCSV("/v1/reports/mqls", { since: readFilters(mqlForm).since });

async function load() {
  const query = restoreFilters(leadsForm);
  restoreFilters(mqlForm);
  const [definitions] = await Promise.all([drawDefinitions(), drawLeads(), drawMqls()]);
  await Promise.all([
    query.get("account") ? selectAccount(query.get("account")) : null,
    setUpBacktest(definitions, query),
  ]);
}

leadsForm.addEventListener("submit", guarded(drawLeads));
$("min-grade").addEventListener("change", guarded(drawLeads));
$("sort").addEventListener("change", guarded(drawLeads));
mqlForm.addEventListener("submit", guarded(() => drawMqls()));
$("mql-more").addEventListener("click", guarded(() => drawMqls({ more: true })));
$("download-mqls").addEventListener("click", guarded(download));
btForm.addEventListener("submit", guarded(drawBacktest));
$("bt-definition").addEventListener("change", guarded(drawBacktest));
$("bt-compare").addEventListener("change", guarded(drawBacktest));
$("download-backtest").addEventListener("click", guarded(() => {
  const { path, params } = backtestQuery(readFilters(btForm));
  return downloadCSV(path, params);
}));
start(load);
