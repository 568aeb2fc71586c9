// What the Leads page and its backtest section share: element lookup, number words, notes,
// the API's expected problem answers, and a lead rule in plain words.
import { ApiError } from "./api.js";

export const $ = (id) => document.getElementById(id);

export const percent = (p) => (p === null || p === undefined ? "–" : `${(p * 100).toFixed(2)}%`);
export const fixed = (x) => (x === null || x === undefined ? "–" : x.toFixed(6));
export const signed = (x) => (x > 0 ? "+" : "") + x.toFixed(6);
export const when = (stamp) => (stamp ? stamp.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "–");

export function note(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

// The API's 409 / 404 answers are part of the page (no fit yet, unknown account); others propagate.
export async function orExpected(promise, statuses = [409]) {
  try {
    return { body: await promise };
  } catch (err) {
    if (err instanceof ApiError && statuses.includes(err.status)) return { error: err };
    throw err;
  }
}

// A definition's rule in plain words: "grade B or better · score ≥ 25% · has title".
export function ruleWords(rule) {
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
