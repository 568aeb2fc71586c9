"""The rollup deltas (``services.domain.rollup``): old sums + delta = new sums, exactly.

Expected sums are computed here plainly (integers, and ``Fraction`` for the float weights, so
the float sums are checked against the exact value), never with the module's own functions.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.rollup import ATTRIBUTIONS, CREDITS, WON, combine, delta, utc_day

PROPS = settings(max_examples=300, deadline=None)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)

# Closes around a UTC midnight, some with a non-UTC offset: the key is the UTC day.
moments = st.builds(
    lambda minutes, hours: (MIDNIGHT + timedelta(minutes=minutes)).astimezone(
        timezone(timedelta(hours=hours))
    ),
    st.integers(min_value=-600, max_value=600),
    st.sampled_from([0, -5, 9]),
)
weights = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-18, max_value=1.0, allow_nan=False),
    st.sampled_from([1 / 3, 0.1, 0.2, 0.5, 1.0]),
)
credit_rows = st.fixed_dictionaries(
    {
        "model_id": st.sampled_from(["linear", "first_touch"]),
        "campaign_id": st.sampled_from(["c1", "c2", "c3"]),
        "closed_at": moments,
        "credit_minor": st.integers(min_value=0, max_value=10**12),
        "weight": weights,
    }
)
deal_rows = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["won", "won", "lost", "open"]),
        "closed_at": st.one_of(st.none(), moments),
        "conversion": st.sampled_from([None, "converted", "unconverted"]),
        "currency": st.sampled_from([None, "USD", "EUR"]),
        "amount_minor": st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
        "reporting_minor": st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
    }
)


def credit_sums(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, Fraction, int]]:
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Fraction(0), 0])
    for r in rows:
        key = (r["model_id"], r["campaign_id"], r["closed_at"].astimezone(UTC).date())
        out[key][0] += r["credit_minor"]
        out[key][1] += Fraction(r["weight"])
        out[key][2] += 1
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def applied(
    before: dict[tuple[Any, ...], tuple[Any, ...]], rows: list[dict[str, Any]], names: list[str]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """``before`` plus the delta rows, per key (keys summing to all zeros dropped)."""
    out = {k: list(v) for k, v in before.items()}
    for row in rows:
        key = tuple(row[c] for c in ("model_id", "campaign_id", "day"))
        sums = out.setdefault(key, [0, Fraction(0), 0])
        for i, name in enumerate(names):
            sums[i] += Fraction(row[name]) if name == "deals" else row[name]
    return {k: tuple(v) for k, v in out.items() if any(v)}


@PROPS
@given(st.lists(credit_rows, max_size=12), st.lists(credit_rows, max_size=12))
def test_old_sums_plus_delta_are_the_new_sums(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> None:
    rows = delta(CREDITS, old, new)
    got = applied(credit_sums(old), rows, ["revenue_minor", "deals", "credits"])
    want = credit_sums(new)
    for key in set(got) | set(want):
        revenue, deals, count = want.get(key, (0, Fraction(0), 0))
        assert got[key][0] == revenue and got[key][2] == count
        # The delta's float is the correctly rounded net change; the old sums here are exact,
        # so a key may differ by the rounding of its old and new sums (a few ulps of them).
        assert abs(got[key][1] - deals) <= Fraction(2**-48)
    assert len({(r["model_id"], r["campaign_id"], r["day"]) for r in rows}) == len(rows)


@PROPS
@given(st.lists(credit_rows, max_size=20), st.randoms(use_true_random=False))
def test_rewriting_the_same_rows_in_any_order_adds_nothing(
    rows: list[dict[str, Any]], rng: random.Random
) -> None:
    shuffled = list(rows)
    rng.shuffle(shuffled)
    assert delta(CREDITS, rows, shuffled) == []


def test_a_moved_credit_leaves_its_old_day_and_joins_the_new_one() -> None:
    old = {"model_id": "linear", "campaign_id": "c1", "credit_minor": 500, "weight": 0.5}
    before = old | {"closed_at": datetime(2026, 3, 1, 23, 59, tzinfo=UTC)}
    after = old | {"closed_at": datetime(2026, 3, 2, 0, 0, tzinfo=UTC)}
    assert delta(CREDITS, [before], [after]) == [
        {
            "model_id": "linear",
            "campaign_id": "c1",
            "day": datetime(2026, 3, 2).date(),
            "revenue_minor": 500,
            "deals": 0.5,
            "credits": 1,
        },
        {
            "model_id": "linear",
            "campaign_id": "c1",
            "day": datetime(2026, 3, 1).date(),
            "revenue_minor": -500,
            "deals": -0.5,
            "credits": -1,
        },
    ]


def test_a_weight_zero_credit_still_counts_as_a_row() -> None:
    row = {
        "model_id": "first_touch",
        "campaign_id": "c2",
        "closed_at": MIDNIGHT,
        "credit_minor": 0,
        "weight": 0.0,
    }
    assert delta(CREDITS, [], [row]) == [
        {
            "model_id": "first_touch",
            "campaign_id": "c2",
            "day": MIDNIGHT.date(),
            "revenue_minor": 0,
            "deals": 0.0,
            "credits": 1,
        }
    ]
    assert delta(CREDITS, [row], [])[0]["credits"] == -1


@PROPS
@given(st.lists(deal_rows, max_size=12), st.lists(deal_rows, max_size=12))
def test_won_deltas_count_only_won_deals_with_a_close(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> None:
    def sums(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
        out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            if r["status"] != "won" or r["closed_at"] is None:
                continue
            key = (
                r["closed_at"].astimezone(UTC).date(),
                r["conversion"] or "unconverted",
                r["currency"],
            )
            out[key][0] += 1
            out[key][1] += r["amount_minor"] or 0
            out[key][2] += r["reporting_minor"] or 0
        return out

    total = {k: list(v) for k, v in sums(old).items()}
    for row in delta(WON, old, new):
        key = (row["day"], row["conversion"], row["currency"])
        values = total.setdefault(key, [0, 0, 0])
        for i, name in enumerate(WON.value_columns):
            values[i] += row[name]
    assert {k: v for k, v in total.items() if any(v)} == {
        k: v for k, v in sums(new).items() if any(v)
    }


def test_attribution_keys_carry_the_fit() -> None:
    row = {
        "model_id": "markov",
        "closed_at": MIDNIGHT,
        "fit_id": 3,
        "amount_minor": 100,
        "attributed_minor": 60,
        "unattributed_minor": 40,
    }
    refit = row | {"fit_id": 4, "attributed_minor": 100, "unattributed_minor": 0}
    assert sorted(delta(ATTRIBUTIONS, [row], [refit]), key=lambda r: r["fit_id"]) == [
        {
            "model_id": "markov",
            "day": MIDNIGHT.date(),
            "fit_id": 3,
            "deals": -1,
            "amount_minor": -100,
            "attributed_minor": -60,
            "unattributed_minor": -40,
        },
        {
            "model_id": "markov",
            "day": MIDNIGHT.date(),
            "fit_id": 4,
            "deals": 1,
            "amount_minor": 100,
            "attributed_minor": 100,
            "unattributed_minor": 0,
        },
    ]


@PROPS
@given(st.lists(st.lists(credit_rows, max_size=6), max_size=6))
def test_combined_deltas_sum_like_the_deltas_and_drop_empty_keys(
    history: list[list[dict[str, Any]]],
) -> None:
    """Each list replaces the previous one; the deltas of all steps combine per key."""
    rows, previous = [], []
    for current in history:
        rows += delta(CREDITS, previous, current)
        previous = current
    combined = combine(CREDITS, rows)
    final = credit_sums(previous)
    got = {(r["model_id"], r["campaign_id"], r["day"]): r for r in combined}
    assert set(got) == set(final)  # a key whose credits all went away is gone
    for key, (revenue, deals, count) in final.items():
        assert got[key]["revenue_minor"] == revenue and got[key]["credits"] == count
        assert abs(Fraction(got[key]["deals"]) - deals) < Fraction(1, 10**9)


def test_combine_keeps_a_residue_that_is_not_rounding() -> None:
    """Rows whose counts cancel but whose money does not are summed, never dropped."""
    key = {"model_id": "linear", "campaign_id": "c1", "day": MIDNIGHT.date()}
    rows = [
        key | {"revenue_minor": 5, "deals": 0.0, "credits": 0},
        key | {"revenue_minor": 0, "deals": 1e-12, "credits": 0},
    ]
    assert combine(CREDITS, rows) == [key | {"revenue_minor": 5, "deals": 1e-12, "credits": 0}]
    assert combine(CREDITS, rows[1:]) == []  # count 0, money 0, deals a rounding residue


def test_utc_day_of_an_offset_moment() -> None:
    tokyo = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=9)))
    assert utc_day(tokyo) == datetime(2026, 3, 1).date()
