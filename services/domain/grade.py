"""The closed-loop grade (contract §7): how closely an account's attributes match won accounts.

How it is fitted (``fit_grade``), from one sample per decided deal — the features of the deal's
account and whether the deal was won:

- Features are (key, value) pairs: the account's attributes as they are (``industry`` ->
  ``software``) and its contacts' under keys prefixed ``contact.`` (``contact.title`` -> ``CFO``),
  so a key may carry several values (``account_features``). Values are compared verbatim; a value
  that is empty or only whitespace is no value. A pair counts once per sample, however many
  contacts share it.
- Base rate ``p0 = won / samples``; a fit needs at least one won and one lost deal
  (``GradeFitError`` otherwise), so ``0 < p0 < 1``.
- For each pair seen in ``n`` deals of which ``w`` were won, the smoothed win rate is
  ``r = (w + m*p0) / (n + m)``: the mean of a Beta(m*p0, m*(1-p0)) prior centred on the base
  rate, updated by the pair's deals; ``m`` (``prior_strength``, default 10) is how many deals'
  worth of evidence the prior weighs. Rates are exact fractions, so the fit does not depend on
  the samples' order.
- The pair's contribution is ``logit(r) - logit(p0)``, rounded to 6 decimals: positive when
  accounts with it won more often than the base rate, negative when less, near 0 when they are
  few. A pair seen only in won deals has ``r >= p0``, so its contribution is never negative.

How an account is graded (``grade``): each of its pairs contributes its fitted contribution, or
0 if the fit never saw it (listed with ``seen`` false). ``raw`` is the sum of the listed
(6-decimal) contributions, rounded to 6 decimals, so adding up the listed contributions as
decimals gives ``raw`` exactly. The letter comes from cut-offs fitted on the samples' own raw
grades (one per decided deal), by nearest rank — the P-th percentile of N sorted values is the
value at 1-based rank ``ceil(P*N/100)``: ``A`` if raw >= the 75th percentile, else ``B`` if >= the
50th, else ``C`` if >= the 25th, else ``D``. The cut-offs never decrease from C to A, so the
letter never gets worse as raw grows; when cut-offs coincide (e.g. many raw 0) the letters
between them are simply not given, and an account always gets at least the letter of any
account with a lower raw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeAlias

Features: TypeAlias = Mapping[str, str | Iterable[str]]
Pair: TypeAlias = tuple[str, str]

LETTERS = ("A", "B", "C", "D")
PERCENTILES = {"A": 75, "B": 50, "C": 25}
CONTACT_PREFIX = "contact."
DEFAULT_PRIOR_STRENGTH = 10
DECIMALS = 6


class GradeFitError(ValueError):
    """A grade cannot be learned: the decided deals include no won or no lost deal."""


@dataclass(frozen=True)
class GradeSample:
    """One decided deal: its account's features and whether it was won."""

    features: Features
    won: bool


@dataclass(frozen=True)
class ValueStats:
    """What the fit learned about one (key, value) pair."""

    deals: int
    won: int
    contribution: float


@dataclass(frozen=True)
class GradeFit:
    """A fitted grade: its inputs' summary, the per-pair table and the letter cut-offs.

    ``cutoffs`` maps ``A``, ``B``, ``C`` to the least raw grade that earns the letter.
    """

    samples: int
    won: int
    base_rate: Fraction
    prior_strength: Fraction
    cutoffs: Mapping[str, float]
    table: Mapping[Pair, ValueStats]


@dataclass(frozen=True)
class Contribution:
    """One of an account's (key, value) pairs and what it adds to the raw grade."""

    key: str
    value: str
    contribution: float
    seen: bool
    deals: int
    won: int


@dataclass(frozen=True)
class Grade:
    """An account's letter, raw log-odds and each pair's contribution (largest first)."""

    letter: str
    raw: float
    contributions: tuple[Contribution, ...]


def account_features(
    attributes: Mapping[str, str], contacts: Iterable[Mapping[str, str]] = ()
) -> dict[str, frozenset[str]]:
    """Return an account's features: its attributes, and its contacts' under ``contact.``."""
    features: dict[str, set[str]] = {}
    for key, value in attributes.items():
        features.setdefault(key, set()).add(value)
    for contact in contacts:
        for key, value in contact.items():
            features.setdefault(CONTACT_PREFIX + key, set()).add(value)
    return {key: frozenset(values) for key, values in features.items()}


def feature_pairs(features: Features) -> frozenset[Pair]:
    """Return the distinct (key, value) pairs of ``features``; a str is a single value."""
    pairs: set[Pair] = set()
    for key, values in features.items():
        for value in (values,) if isinstance(values, str) else values:
            if value.strip():
                pairs.add((key, value))
    return frozenset(pairs)


def _log_odds_ratio(rate: Fraction, base: Fraction) -> float:
    # One log of an exact ratio: >= 0 exactly when rate >= base, whatever the float rounding.
    return math.log((rate * (1 - base)) / ((1 - rate) * base))


def smoothed_rate(stats: ValueStats, base_rate: Fraction, prior_strength: Fraction) -> Fraction:
    """Return ``(w + m*p0) / (n + m)``, the pair's win rate shrunk towards the base rate."""
    return (stats.won + prior_strength * base_rate) / (stats.deals + prior_strength)


def _table(
    samples: list[tuple[frozenset[Pair], bool]], base: Fraction, prior: Fraction
) -> dict[Pair, ValueStats]:
    counts: dict[Pair, list[int]] = {}
    for pairs, is_won in samples:
        for pair in pairs:
            tally = counts.setdefault(pair, [0, 0])
            tally[0] += 1
            tally[1] += is_won
    table: dict[Pair, ValueStats] = {}
    for pair in sorted(counts):
        deals, won = counts[pair]
        rate = (won + prior * base) / (deals + prior)
        table[pair] = ValueStats(deals, won, round(_log_odds_ratio(rate, base), DECIMALS))
    return table


def _nearest_rank(ordered: list[float], percentile: int) -> float:
    rank = max(1, -(-percentile * len(ordered) // 100))
    return ordered[rank - 1]


def fit_grade(
    samples: Iterable[GradeSample], *, prior_strength: int | Fraction = DEFAULT_PRIOR_STRENGTH
) -> GradeFit:
    """Fit the per-pair contributions and the letter cut-offs on the decided deals."""
    prior = Fraction(prior_strength)
    if prior <= 0:
        raise ValueError(f"prior_strength must be > 0, got {prior_strength!r}")
    decided = [(feature_pairs(s.features), bool(s.won)) for s in samples]
    won = sum(1 for _, w in decided if w)
    if won == 0 or won == len(decided):
        raise GradeFitError(
            "a grade is learned from decided deals and needs at least one won and one lost "
            f"deal; got {won} won and {len(decided) - won} lost"
        )
    base = Fraction(won, len(decided))
    table = _table(decided, base, prior)
    raws = sorted(_raw([table[p].contribution for p in pairs]) for pairs, _ in decided)
    return GradeFit(
        samples=len(decided),
        won=won,
        base_rate=base,
        prior_strength=prior,
        cutoffs={letter: _nearest_rank(raws, p) for letter, p in PERCENTILES.items()},
        table=table,
    )


def _raw(contributions: Iterable[float]) -> float:
    return round(math.fsum(contributions), DECIMALS)


def letter_for(fit: GradeFit, raw: float) -> str:
    """Return the letter a raw grade earns under the fit's cut-offs (never worse as raw grows)."""
    for letter in ("A", "B", "C"):
        if raw >= fit.cutoffs[letter]:
            return letter
    return "D"


def grade(fit: GradeFit, features: Features) -> Grade:
    """Grade an account: its letter, raw log-odds and every pair's contribution, unseen as 0."""
    rows: list[Contribution] = []
    for key, value in feature_pairs(features):
        stats = fit.table.get((key, value))
        if stats is None:
            rows.append(Contribution(key, value, 0.0, False, 0, 0))
        else:
            rows.append(Contribution(key, value, stats.contribution, True, stats.deals, stats.won))
    rows.sort(key=lambda c: (-abs(c.contribution), c.key, c.value))
    raw = _raw(c.contribution for c in rows)
    return Grade(letter=letter_for(fit, raw), raw=raw, contributions=tuple(rows))


def letter_at_least(letter: str, minimum: str) -> bool:
    """Return whether ``letter`` is ``minimum`` or better (``A`` is best)."""
    for name in (letter, minimum):
        if name not in LETTERS:
            raise ValueError(f"a grade letter is one of {', '.join(LETTERS)}, got {name!r}")
    return LETTERS.index(letter) <= LETTERS.index(minimum)


def grade_fit_to_json(fit: GradeFit) -> dict[str, Any]:
    """Serialise a grade fit: its inputs' summary, cut-offs and the per-pair table."""
    return {
        "method": "log-odds of a Beta-smoothed win rate per attribute value, against the base rate",
        "samples": fit.samples,
        "won": fit.won,
        "lost": fit.samples - fit.won,
        "base_rate": str(fit.base_rate),
        "prior_strength": str(fit.prior_strength),
        "percentiles": dict(PERCENTILES),
        "cutoffs": dict(fit.cutoffs),
        "values": [
            {
                "key": key,
                "value": value,
                "deals": stats.deals,
                "won": stats.won,
                "rate": round(float(smoothed_rate(stats, fit.base_rate, fit.prior_strength)), 6),
                "contribution": stats.contribution,
            }
            for (key, value), stats in fit.table.items()
        ],
    }


def grade_fit_from_json(data: Mapping[str, Any]) -> GradeFit:
    """Rebuild a grade fit from ``grade_fit_to_json`` output (``rate`` is for readers only)."""
    return GradeFit(
        samples=int(data["samples"]),
        won=int(data["won"]),
        base_rate=Fraction(data["base_rate"]),
        prior_strength=Fraction(data["prior_strength"]),
        cutoffs={letter: float(data["cutoffs"][letter]) for letter in PERCENTILES},
        table={
            (str(row["key"]), str(row["value"])): ValueStats(
                int(row["deals"]), int(row["won"]), float(row["contribution"])
            )
            for row in sorted(data["values"], key=lambda row: (row["key"], row["value"]))
        },
    )
