"""The report rollups as additive deltas: what a change of summarised rows adds to each key.

A rollup sums some rows (credits, deal attributions, won deals) per key (model, campaign,
UTC day of close, ...). It is kept as append-only delta rows: a change that removes rows
``old`` and writes rows ``new`` appends, per key, ``sums(new) - sums(old)``, and the rollup's
value for a key is the sum of its delta rows.

Invariants:
- ``delta(spec, old, new)`` holds one entry per key whose sums change; a key whose every sum
  is unchanged (all integers equal, the float sums exactly equal) gets none. So rewriting the
  same rows adds nothing, and the sums stay exact whatever the order rows come in.
- Integer sums (money, counts) are exact. A float sum (fractional deals) is computed with
  ``math.fsum`` over the new values and the negated old ones, so it is the correctly rounded
  net change, and exactly 0.0 when the rows' values are the same multiset.
- Every rollup counts its rows (``credits`` or ``deals``), so a key whose rows all went away
  (count 0) is told apart from one whose rows sum to 0 (touches of weight 0): readers keep
  the keys with a positive count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

Row = Mapping[Any, Any]  # a row's columns by name
Key = tuple[Any, ...]
Entry = tuple[Key, tuple[Any, ...]]  # a summarised row's key and summed values
FLOAT_RESIDUE = 1e-9  # below it, a float sum of an empty key is rounding left over


@lru_cache(maxsize=4096)  # the credit rows of one deal share its close
def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware timestamp: the rollups' ``day``."""
    return moment.astimezone(UTC).date()


@dataclass(frozen=True)
class RollupSpec:
    """How one rollup summarises rows: its key and summed columns, and which rows count.

    ``key`` and ``values`` read a summarised row (a mapping of its columns); ``floats`` names
    the summed columns that are floats (the others are integers); ``counts`` says whether a
    row is summarised at all.
    """

    key_columns: tuple[str, ...]
    value_columns: tuple[str, ...]
    key: Callable[[Row], Key]
    values: Callable[[Row], tuple[int | float, ...]]
    floats: frozenset[str] = frozenset()
    counts: Callable[[Row], bool] = lambda row: True
    # The summed column counting the summarised rows (a key with 0 summarises nothing), and
    # the key columns that hold a key's rows together for incremental compaction.
    count_column: str = "deals"
    group_columns: tuple[str, ...] = ("model_id", "day")


def _credit_key(row: Row) -> Key:
    return (row["model_id"], row["campaign_id"], utc_day(row["closed_at"]))


def _attribution_key(row: Row) -> Key:
    return (row["model_id"], utc_day(row["closed_at"]), row["fit_id"])


def _won_key(row: Row) -> Key:
    return (utc_day(row["closed_at"]), row["conversion"] or "unconverted", row["currency"])


def _is_won(row: Row) -> bool:
    return row["status"] == "won" and row["closed_at"] is not None


CREDITS = RollupSpec(
    key_columns=("model_id", "campaign_id", "day"),
    value_columns=("revenue_minor", "deals", "credits"),
    key=_credit_key,
    values=lambda row: (row["credit_minor"], row["weight"], 1),
    floats=frozenset({"deals"}),
    count_column="credits",
)
"""``credits`` per (model, campaign, day of close): revenue, deals (sum of weights), rows."""

ATTRIBUTIONS = RollupSpec(
    key_columns=("model_id", "day", "fit_id"),
    value_columns=("deals", "amount_minor", "attributed_minor", "unattributed_minor"),
    key=_attribution_key,
    values=lambda row: (
        1,
        row["amount_minor"],
        row["attributed_minor"],
        row["unattributed_minor"],
    ),
)
"""``deal_attributions`` per (model, day of close, fit): rows and their three amounts."""

WON = RollupSpec(
    key_columns=("day", "conversion", "currency"),
    value_columns=("deals", "amount_minor", "reporting_minor"),
    key=_won_key,
    values=lambda row: (1, row["amount_minor"] or 0, row["reporting_minor"] or 0),
    counts=_is_won,
    group_columns=("day",),
)
"""Won ``deals`` per (day of close, conversion, original currency): count and both amounts.

A won deal's ``conversion`` is 'converted' or 'unconverted'; a null one counts as the latter.
"""


INFLUENCE = RollupSpec(
    key_columns=("campaign_id", "day"),
    value_columns=("sourced_minor", "sourced_deals", "influenced_minor", "influenced_deals"),
    key=lambda row: (row["campaign_id"], row["day"]),
    values=lambda row: (
        row["amount_minor"] if row["sourced"] else 0,
        1 if row["sourced"] else 0,
        row["amount_minor"],
        1,
    ),
    count_column="influenced_deals",
    group_columns=("day",),
)
"""Won deals per (campaign, UTC day of close) as the influence report counts them.

A summarised row is one (deal, campaign) pair of a deal's ``linear`` journey (every positional
model credits every journey touch, and ``linear`` is built in and never pending): ``day`` of
the credits' close, ``sourced`` whether one of the campaign's touches holds the deal's
``lead_creation`` role, ``amount_minor`` the deal's reporting amount (its ``linear`` deal
attribution). A deal counts once per campaign at its full amount, so influenced revenue does
not add up across campaigns; sourced revenue does (one sourcing touch per journey).
"""


InfluenceTouch = tuple[str, str, date, bool]  # (deal, campaign, day of close, holds lead)


def influence_pairs(
    touches: Iterable[InfluenceTouch], amounts: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The influence rollup's summarised rows of deals' ``linear`` journey touches: one per
    (deal, campaign, day), sourced when any of those touches holds the lead-creation role, at
    the deal's amount; a deal without an amount has none."""
    sourced: dict[tuple[str, str, date], bool] = {}
    for deal_id, campaign_id, day, lead in touches:
        if deal_id in amounts:
            key = (deal_id, campaign_id, day)
            sourced[key] = sourced.get(key, False) or lead
    return [
        {"campaign_id": c, "day": d, "sourced": lead, "amount_minor": amounts[deal_id]}
        for (deal_id, c, d), lead in sourced.items()
    ]


def entries(spec: RollupSpec, rows: Iterable[Row]) -> Iterator[Entry]:
    """Yield the (key, summed values) of each summarised row the rollup counts."""
    key_of, values_of, counts = spec.key, spec.values, spec.counts
    for row in rows:
        if counts(row):
            yield key_of(row), values_of(row)


def net(spec: RollupSpec, old: Iterable[Entry], new: Iterable[Entry]) -> list[dict[str, Any]]:
    """Return per key the sums of the ``new`` entries minus those of the ``old`` ones.

    One rollup row per key whose sums change (key columns and summed columns, by name), in
    key order of first appearance; nothing for a key whose sums are all unchanged.
    """
    is_float = [column in spec.floats for column in spec.value_columns]
    ints = [i for i, f in enumerate(is_float) if not f]
    floats = [i for i, f in enumerate(is_float) if f]
    parts: dict[Key, list[Any]] = {}  # per key and column: a running int, or a float list
    for source, sign in ((new, 1), (old, -1)):
        for key, values in source:
            sums = parts.get(key)
            if sums is None:
                sums = parts[key] = [[] if f else 0 for f in is_float]
            for i in ints:
                sums[i] += sign * values[i]
            for i in floats:
                sums[i].append(sign * values[i])
    out = []
    for key, sums in parts.items():
        totals = [math.fsum(v) if f else v for v, f in zip(sums, is_float, strict=True)]
        if any(totals):
            out.append(
                dict(zip(spec.key_columns, key, strict=True))
                | dict(zip(spec.value_columns, totals, strict=True))
            )
    return out


def delta(spec: RollupSpec, old: Iterable[Row], new: Iterable[Row]) -> list[dict[str, Any]]:
    """Return the rollup rows that turn the sums of ``old`` rows into those of ``new``."""
    return net(spec, entries(spec, old), entries(spec, new))


def totals(spec: RollupSpec, rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Return one rollup row per key with the sums of the summarised ``rows``."""
    return delta(spec, (), rows)


def combine(spec: RollupSpec, rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Return one rollup row per key summing the given rollup rows; none for an empty key.

    The sums are exact as in ``net``, so the combined rows add up to what the given rows
    add up to, key by key. A key is empty when every integer sum (its row count among them)
    is 0 and every float sum is below ``FLOAT_RESIDUE``: it summarises no row, and its float
    sum is what rounding left of deltas that cancel (e.g. a deleted model's, summed by SQL).
    """
    keyed = (
        (tuple(row[c] for c in spec.key_columns), tuple(row[c] for c in spec.value_columns))
        for row in rows
    )
    return [row for row in net(spec, (), keyed) if not _empty(spec, row)]


def _empty(spec: RollupSpec, row: Row) -> bool:
    """Whether a combined row summarises nothing (integer sums 0, float sums a residue)."""
    return all(
        abs(row[c]) < FLOAT_RESIDUE if c in spec.floats else row[c] == 0 for c in spec.value_columns
    )
