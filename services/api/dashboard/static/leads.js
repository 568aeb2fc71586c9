// Leads: the active lead definition (GET /v1/lead-definitions), open accounts ranked by score or
// grade (GET /v1/reports/leads), one account's grade and score explained (GET
// /v1/accounts/{id}/grade and /score), the emitted MQLs (GET /v1/reports/mqls; its CSV is the
// API's own, Accept: text/csv); the backtest section is backtest.js. Every number is the API's.
import { getJSON } from "./api.js";
import { setUpBacktest, wireBacktest } from "./backtest.js";
import { $, fixed, note, orExpected, percent, ruleWords, signed, when } from "./leads_words.js";
import {
  downloadCSV, el, fillCards, fillTable, guarded, number, plot, readFilters, restoreFilters,
  saveFilters, start,
} from "./ui.js";

const leadsForm = $("leads-filters");
const mqlForm = $("mql-filters");
const btForm = $("backtest-form");
let selected = null; // the account whose grade and score are shown
// The latest request of each part wins when answers arrive out of order.
const latest = { account: 0, leads: 0, mqls: 0 };
let mqlRows = [];

function saveAll() {
  saveFilters({ ...readFilters(leadsForm), ...readFilters(mqlForm), ...readFilters(btForm), account: selected });
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
wireBacktest(saveAll);
start(load);
