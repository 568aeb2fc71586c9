"""Hand-worked scenarios for the independent reference implementation (tests/support/reference.py).

The expected numbers are worked out by hand from the contract, not from the service. Builders
are local on purpose: nothing here imports the service.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from tests.support import reference_datadriven as dd
from tests.support.reference import (
    MODELS,
    UNKNOWN_CHANNEL,
    compute,
    parse_ts,
    split_minor,
    to_minor,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
F = Fraction


def at(days: float, seconds: float = 0) -> str:
    return (T0 + timedelta(days=days, seconds=seconds)).isoformat().replace("+00:00", "Z")


def campaign(cid: str, channel: str = "email", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"c-{cid}",
        "type": "campaign.upserted",
        "occurred_at": at(-300),
        "campaign_id": cid,
        "name": f"Campaign {cid}",
        "channel": channel,
        **extra,
    }


def contact(cid: str, account: str | None, *, days: float = -250, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ct-{cid}-{days}",
        "type": "contact.upserted",
        "occurred_at": at(days),
        "contact_id": cid,
        "account_id": account,
        **extra,
    }


def merge(survivor: str, absorbed: str, days: float) -> dict[str, Any]:
    return {
        "event_id": f"m-{survivor}-{absorbed}",
        "type": "contact.merged",
        "occurred_at": at(days),
        "contact_id": survivor,
        "merged_contact_id": absorbed,
    }


def touch(
    eid: str,
    cid: str,
    days: float,
    *,
    contact: str | None = None,
    account: str | None = None,
    lead: bool = False,
    seconds: float = 0,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": eid,
        "type": "touch",
        "occurred_at": at(days, seconds),
        "campaign_id": cid,
        "lead_created": lead,
    }
    if contact is not None:
        e["contact_id"] = contact
    if account is not None:
        e["account_id"] = account
    return e


def created(
    did: str,
    account: str,
    amount: str,
    days: float,
    *,
    currency: str = "USD",
    contacts: list[str] | None = None,
) -> dict[str, Any]:
    e = {
        "event_id": f"{did}-created",
        "type": "deal.created",
        "occurred_at": at(days),
        "deal_id": did,
        "account_id": account,
        "amount": amount,
        "currency": currency,
    }
    if contacts is not None:
        e["contact_ids"] = contacts
    return e


def status(did: str, kind: str, days: float, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{did}-{kind}-{days}",
        "type": f"deal.{kind}",
        "occurred_at": at(days),
        "deal_id": did,
        **fields,
    }


def fx(day: str, base: str, quote: str, rate: str) -> dict[str, Any]:
    return {
        "event_id": f"fx-{day}-{base}{quote}-{rate}",
        "type": "fx.rate",
        "occurred_at": f"{day}T00:00:00Z",
        "date": day,
        "base": base,
        "quote": quote,
        "rate": rate,
    }


def cost(
    eid: str, cid: str, amount: str, start: str, end: str, currency: str = "USD"
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "campaign.cost",
        "occurred_at": f"{start}T00:00:00Z",
        "campaign_id": cid,
        "amount": amount,
        "currency": currency,
        "period_start": start,
        "period_end": end,
    }


def three_touch_deal(amount: str = "100.00") -> list[dict[str, Any]]:
    """Touches a (day -10), b (day -5), c (day 5) on account A; created day 0, won day 10.

    Roles: a = first + lead_creation (no lead_created flag) ; b = opportunity_creation
    (last touch on or before C) ; c = last.
    """
    return [
        campaign("a"),
        campaign("b"),
        campaign("c"),
        touch("t1", "a", -10, account="A"),
        touch("t2", "b", -5, account="A"),
        touch("t3", "c", 5, account="A"),
        created("D", "A", amount, 0),
        status("D", "closed_won", 10),
    ]


def u_shape_deal() -> list[dict[str, Any]]:
    """Touch 1 is first + lead_creation + opportunity_creation; touch 3 is last."""
    return [
        campaign("a"),
        campaign("b"),
        campaign("c"),
        touch("t1", "a", -10, account="A", lead=True),
        touch("t2", "b", 2, account="A"),
        touch("t3", "c", 5, account="A"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 10),
    ]


# ------------------------------------------------------------------------------------------
# Positional models
# ------------------------------------------------------------------------------------------


def test_models_list() -> None:
    assert MODELS[-1] == "time_decay"
    assert len(MODELS) == 10 and len(set(MODELS)) == 10


def test_linear_three_touches_ties_go_to_the_earliest() -> None:
    d = compute(three_touch_deal()).deals["D"]
    assert d.status == "won" and d.reporting_minor == 10000
    assert d.journey == ["t1", "t2", "t3"]
    assert d.credits["linear"] == {"a": 3334, "b": 3333, "c": 3333}
    assert d.weights["linear"] == {"a": F(1, 3), "b": F(1, 3), "c": F(1, 3)}


def test_position_based_40_20_40() -> None:
    d = compute(three_touch_deal()).deals["D"]
    assert d.credits["position_based"] == {"a": 4000, "b": 2000, "c": 4000}
    assert d.credits["first_touch"] == {"a": 10000, "b": 0, "c": 0}
    assert d.credits["last_touch"] == {"a": 0, "b": 0, "c": 10000}
    assert d.credits["j_shaped"] == {"a": 2000, "b": 2000, "c": 6000}
    assert d.credits["inverse_j"] == {"a": 6000, "b": 2000, "c": 2000}


def test_w_shaped_and_full_path_on_distinct_roles() -> None:
    d = compute(three_touch_deal()).deals["D"]
    # a: first+lead .6, b: opp .3, c: middle .1 (last is not weighted by w_shaped).
    assert d.weights["w_shaped"] == {"a": F(6, 10), "b": F(3, 10), "c": F(1, 10)}
    assert d.credits["w_shaped"] == {"a": 6000, "b": 3000, "c": 1000}
    # full_path: a .45, b .225, c .225, no middle touch -> middle dropped, /0.9.
    assert d.weights["full_path"] == {"a": F(1, 2), "b": F(1, 4), "c": F(1, 4)}
    assert d.credits["full_path"] == {"a": 5000, "b": 2500, "c": 2500}


def test_u_shaped_point8_point1_point1() -> None:
    d = compute(u_shape_deal()).deals["D"]
    assert d.weights["u_shaped"] == {"a": F(8, 10), "b": F(1, 10), "c": F(1, 10)}
    assert d.credits["u_shaped"] == {"a": 8000, "b": 1000, "c": 1000}
    # w_shaped: a = first+lead+opp .9; b, c middles .05 each.
    assert d.credits["w_shaped"] == {"a": 9000, "b": 500, "c": 500}
    # full_path: a .675, b middle .1, c last .225.
    assert d.credits["full_path"] == {"a": 6750, "b": 1000, "c": 2250}


def test_lead_created_flag_moves_lead_creation() -> None:
    events = three_touch_deal()
    events[4] = touch("t2", "b", -5, account="A", lead=True)
    d = compute(events).deals["D"]
    # u_shaped: a first .4, b lead .4, c middle .2.
    assert d.credits["u_shaped"] == {"a": 4000, "b": 4000, "c": 2000}


def test_time_decay_one_half_life() -> None:
    events = [
        campaign("a"),
        campaign("b"),
        touch("t1", "a", 3, account="A"),
        touch("t2", "b", 10, account="A"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 10),
    ]
    d = compute(events).deals["D"]
    assert d.weights["time_decay"] == {"a": F(1, 3), "b": F(2, 3)}
    assert d.credits["time_decay"] == {"a": 3333, "b": 6667}
    d14 = compute(events, half_life_days=3.5).deals["D"]
    assert d14.weights["time_decay"] == {"a": F(1, 5), "b": F(4, 5)}


def test_same_campaign_touches_are_summed_and_credits_sum_exactly() -> None:
    events = three_touch_deal("99.99")
    events[5] = touch("t3", "a", 5, account="A")
    d = compute(events).deals["D"]
    assert d.credits["position_based"] == {"a": 7999, "b": 2000}
    for model in MODELS:
        assert sum(d.credits[model].values()) == 9999
        assert sum(d.weights[model].values()) == 1


def test_split_minor_largest_remainder() -> None:
    assert split_minor(10, [F("0.11"), F("0.89")]) == [1, 9]
    assert split_minor(2, [F(1, 3)] * 3) == [1, 1, 0]
    assert split_minor(0, [F(1, 2)] * 2) == [0, 0]


def test_unattributed_when_journey_is_empty() -> None:
    events = [created("D", "A", "50.00", 0), status("D", "closed_won", 1)]
    d = compute(events).deals["D"]
    assert d.reporting_minor == 5000 and d.journey == [] and d.credits == {}
    assert d.unattributed_minor == 5000


# ------------------------------------------------------------------------------------------
# Money and FX
# ------------------------------------------------------------------------------------------


def eur_deal(*rates: dict[str, Any], amount: str = "100.00") -> list[dict[str, Any]]:
    # Won at 2026-03-11T12:00Z -> close date 2026-03-11.
    return [
        campaign("a"),
        touch("t1", "a", -1, account="A"),
        created("D", "A", amount, 0, currency="EUR"),
        status("D", "closed_won", 10),
        *rates,
    ]


def test_minor_units_by_exponent() -> None:
    assert to_minor("12500.00", "USD") == 1250000
    assert to_minor("1500", "JPY") == 1500
    assert to_minor("1.234", "KWD") == 1234
    with pytest.raises(ValueError):
        to_minor("1.234", "USD")


def test_eur_direct_rate_latest_on_or_before_close() -> None:
    events = eur_deal(
        fx("2026-03-01", "EUR", "USD", "1.05"),
        fx("2026-03-05", "EUR", "USD", "1.1"),
        fx("2026-03-12", "EUR", "USD", "2"),
    )
    d = compute(events).deals["D"]
    assert (d.currency, d.amount_minor, d.reporting_minor) == ("EUR", 10000, 11000)
    assert d.credits["linear"] == {"a": 11000}


def test_inverse_rate_and_direct_wins_a_same_day_tie() -> None:
    d = compute(eur_deal(fx("2026-03-05", "USD", "EUR", "0.8"))).deals["D"]
    assert d.reporting_minor == 12500
    # A newer inverse beats an older direct.
    d = compute(
        eur_deal(fx("2026-03-04", "EUR", "USD", "1.1"), fx("2026-03-05", "USD", "EUR", "0.8"))
    ).deals["D"]
    assert d.reporting_minor == 12500
    # Same date: direct wins.
    d = compute(
        eur_deal(fx("2026-03-05", "EUR", "USD", "1.1"), fx("2026-03-05", "USD", "EUR", "0.8"))
    ).deals["D"]
    assert d.reporting_minor == 11000


def test_rate_on_close_date_counts_and_latest_event_for_a_key_wins() -> None:
    first = fx("2026-03-11", "EUR", "USD", "1.2")
    second = dict(fx("2026-03-11", "EUR", "USD", "1.3"), occurred_at="2026-03-11T01:00:00Z")
    d = compute(eur_deal(first, second)).deals["D"]
    assert d.reporting_minor == 13000


def test_half_up_rounding() -> None:
    d = compute(eur_deal(fx("2026-03-05", "EUR", "USD", "1.005"), amount="1.00")).deals["D"]
    assert d.reporting_minor == 101  # 100.5 cents -> 101 (half-up, not half-even)
    d = compute(eur_deal(fx("2026-03-05", "USD", "EUR", "3"), amount="1.00")).deals["D"]
    assert d.reporting_minor == 33  # 33.33.. cents


def test_zero_exponent_currency_inverse() -> None:
    events = [
        campaign("a"),
        touch("t1", "a", -1, account="A"),
        created("D", "A", "1000", 0, currency="JPY"),
        status("D", "closed_won", 10),
        fx("2026-03-01", "USD", "JPY", "150"),
    ]
    d = compute(events).deals["D"]
    assert d.amount_minor == 1000 and d.reporting_minor == 667  # 6.666.. USD


def test_no_rate_means_unconverted() -> None:
    # Only a rate after the close date, and an unrelated pair.
    events = eur_deal(fx("2026-03-12", "EUR", "USD", "1.1"), fx("2026-03-01", "GBP", "USD", "1.3"))
    d = compute(events).deals["D"]
    assert d.status == "won" and d.unconverted
    assert (d.currency, d.amount_minor, d.reporting_minor) == ("EUR", 10000, None)
    assert d.journey == ["t1"] and d.credits == {} and d.unattributed_minor == 0


def test_reporting_currency_setting() -> None:
    d = compute(eur_deal(), reporting_currency="EUR").deals["D"]
    assert d.reporting_minor == 10000


# ------------------------------------------------------------------------------------------
# Journeys
# ------------------------------------------------------------------------------------------


def test_merge_moves_a_touch_into_the_journey() -> None:
    base = [
        campaign("a"),
        campaign("b"),
        contact("c1", "A"),
        contact("c2", "B"),
        touch("t1", "a", -3, contact="c1"),
        touch("t2", "b", -2, contact="c2"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 5),
    ]
    assert compute(base).deals["D"].journey == ["t1"]
    # The merge happens after the close: final state is used all the same.
    merged = compute([*base, merge("c1", "c2", 20)]).deals["D"]
    assert merged.journey == ["t1", "t2"]


def test_deal_contact_ids_and_merge_roots() -> None:
    events = [
        campaign("a"),
        contact("c3", None),
        touch("t1", "a", -3, contact="c3"),
        touch("t2", "a", -2, contact="c4"),  # c4 has no contact.upserted at all
        touch("t3", "a", -1, contact="c5"),
        merge("c4", "c3", -10),  # c3 absorbed into c4: c4's touches belong to D via c3
        created("D", "A", "100.00", 0, contacts=["c3"]),
        status("D", "closed_won", 5),
    ]
    assert compute(events).deals["D"].journey == ["t1", "t2"]


def test_merge_cycle_and_double_absorb_are_skipped() -> None:
    events = [
        campaign("a"),
        contact("x", "A"),
        contact("y", "B"),
        contact("z", "C"),
        touch("t1", "a", -3, contact="y"),
        merge("x", "y", -20),  # y -> x  (y now counts for A)
        merge("y", "x", -19),  # root(y) == x == absorbed: cycle, skipped
        merge("z", "y", -18),  # y already absorbed: skipped
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 5),
        created("E", "C", "100.00", 0),
        status("E", "closed_won", 5),
    ]
    ref = compute(events)
    assert ref.deals["D"].journey == ["t1"]
    assert ref.deals["E"].journey == []


def test_contact_account_latest_key_wins_even_null() -> None:
    base = [
        campaign("a"),
        contact("c1", "A", days=-250),
        touch("t1", "a", -3, contact="c1"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 5),
    ]
    stage_only = {
        "event_id": "ct-stage",
        "type": "contact.upserted",
        "occurred_at": at(-100),
        "contact_id": "c1",
        "lifecycle_stage": "mql",
    }
    assert compute([*base, stage_only]).deals["D"].journey == ["t1"]
    assert compute([*base, contact("c1", None, days=-100)]).deals["D"].journey == []


def test_touch_after_close_excluded_touch_at_close_included() -> None:
    events = [
        campaign("a"),
        touch("t1", "a", 5, account="A"),
        touch("t2", "a", 5, account="A", seconds=1),
        touch("t3", "a", 1, account="B"),  # other account
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 5),
    ]
    assert compute(events).deals["D"].journey == ["t1"]


def test_lookback_boundary() -> None:
    events = [
        campaign("a"),
        touch("t-in", "a", -180, account="A"),
        touch("t-out", "a", -180, account="A", seconds=-1),
        touch("t-31", "a", -31, account="A"),
        touch("t-30", "a", -30, account="A"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 5),
    ]
    assert compute(events).deals["D"].journey == ["t-in", "t-31", "t-30"]
    assert compute(events, lookback_days=30).deals["D"].journey == ["t-30"]


def test_created_at_falls_back_to_closed_at() -> None:
    events = [
        campaign("a"),
        touch("t1", "a", -175, account="A"),
        touch("t2", "a", -185, account="A"),
        status("D", "closed_won", 5, account_id="A", amount="10.00", currency="USD"),
    ]
    d = compute(events).deals["D"]
    assert d.journey == ["t1"] and d.reporting_minor == 1000


def test_journey_orders_by_utc_time_then_event_id() -> None:
    events = [
        campaign("a"),
        campaign("b"),
        campaign("c"),
        # 2026-03-01T13:00+02:00 == 11:00Z, before t-b at 11:30Z.
        dict(touch("t-z", "a", 0, account="A"), occurred_at="2026-03-01T13:00:00+02:00"),
        dict(touch("t-b", "b", 0, account="A"), occurred_at="2026-03-01T11:30:00Z"),
        dict(touch("t-a", "c", 0, account="A"), occurred_at="2026-03-01T11:30:00Z"),
        created("D", "A", "100.00", 1),
        status("D", "closed_won", 5),
    ]
    assert compute(events).deals["D"].journey == ["t-z", "t-a", "t-b"]
    assert parse_ts("2026-03-01T13:00:00+02:00") == datetime(2026, 3, 1, 11, tzinfo=UTC)


# ------------------------------------------------------------------------------------------
# Deal state
# ------------------------------------------------------------------------------------------


def test_reopened_deal_is_not_won() -> None:
    events = [*three_touch_deal(), status("D", "reopened", 12)]
    d = compute(events).deals["D"]
    assert d.status == "open" and d.closed_at is None and d.reporting_minor is None
    assert d.credits == {}
    # Won again later: closed_at is the latest closed_won.
    d = compute([*events, status("D", "closed_won", 15)]).deals["D"]
    assert d.status == "won" and d.closed_at == T0 + timedelta(days=15)
    lost = compute([*three_touch_deal(), status("D", "closed_lost", 12)]).deals["D"]
    assert lost.status == "lost" and lost.reporting_minor is None


def test_amount_latest_carried_wins() -> None:
    events = [
        *three_touch_deal(),
        status("D", "updated", 1, amount="200.00", currency="USD"),
        status("D", "updated", 2, stage="negotiation"),
    ]
    assert compute(events).deals["D"].reporting_minor == 20000
    events.append(
        dict(status("D", "closed_won", 10), amount="300.00", currency="USD", event_id="D-won-final")
    )
    # Two closed_won at the same instant: the later event_id ("D-won-final") carries 300.
    assert compute(events).deals["D"].reporting_minor == 30000


def test_duplicates_and_shuffled_order_give_the_same_result() -> None:
    events = [
        *u_shape_deal(),
        contact("c1", "A"),
        contact("c2", "B"),
        merge("c1", "c2", -50),
        touch("t9", "b", 1, contact="c2"),
        created("E", "B", "100.00", 0, currency="EUR"),
        status("E", "closed_won", 10),
        status("E", "reopened", 11),
        status("E", "closed_won", 12),
        fx("2026-03-05", "USD", "EUR", "0.8"),
        cost("k1", "a", "10.00", "2026-03-01", "2026-03-03"),
    ]
    expected = compute(events)
    assert expected.deals["D"].journey == ["t1", "t9", "t2", "t3"]
    assert expected.deals["E"].reporting_minor == 12500
    rng = random.Random(7)
    for _ in range(5):
        noisy = events + rng.sample(events, k=len(events) // 2)
        rng.shuffle(noisy)
        assert compute(noisy) == expected


def test_campaign_latest_wins_and_sales_sourced_default() -> None:
    events = [
        campaign("a", "webinar"),
        dict(campaign("a", "events"), event_id="c-a-2", occurred_at=at(-200)),
        campaign("b", "outbound_sales", is_sales_sourced=True),
        dict(campaign("b", "outbound_sales"), event_id="c-b-2", occurred_at=at(-200)),
    ]
    ref = compute(events)
    assert ref.campaigns["a"] == {
        "name": "Campaign a",
        "channel": "events",
        "is_sales_sourced": False,
    }
    assert ref.campaigns["b"]["is_sales_sourced"] is True


# ------------------------------------------------------------------------------------------
# Costs
# ------------------------------------------------------------------------------------------


def test_cost_spread_1000_over_3_days() -> None:
    ref = compute([cost("k1", "a", "10.00", "2026-03-01", "2026-03-03")])
    assert ref.cost_days == {
        ("a", date(2026, 3, 1)): 334,
        ("a", date(2026, 3, 2)): 333,
        ("a", date(2026, 3, 3)): 333,
    }


def test_costs_add_up_convert_at_period_start_and_skip_unconverted() -> None:
    ref = compute(
        [
            cost("k1", "a", "10.00", "2026-03-01", "2026-03-03"),
            cost("k2", "a", "2.00", "2026-03-02", "2026-03-02", currency="EUR"),
            cost("k3", "a", "5.00", "2026-02-01", "2026-02-01", currency="GBP"),  # no rate
            fx("2026-03-01", "EUR", "USD", "1.5"),
            fx("2026-03-03", "EUR", "USD", "9"),
        ]
    )
    assert ref.cost_days == {
        ("a", date(2026, 3, 1)): 334,
        ("a", date(2026, 3, 2)): 633,
        ("a", date(2026, 3, 3)): 333,
    }


# ------------------------------------------------------------------------------------------
# Data-driven models (contract §4): Markov removal effects, Shapley values, per-deal split
# ------------------------------------------------------------------------------------------


def test_markov_two_paths_by_hand() -> None:
    """Paths (A, B) -> conversion and (B) -> null.

    Steps: start->A 1, start->B 1, A->B 1, B->conv 1, B->null 1. So x_B = 1/2, x_A = x_B = 1/2,
    P = (x_A + x_B)/2 = 1/2. Without A: start->A ends in null, P = x_B/2 = 1/4, effect 1/2.
    Without B: A->B ends in null, x_A = 0, P = 0, effect 1.
    """
    paths = [(("A", "B"), True), (("B",), False)]
    assert dd.conversion_probability(paths) == F(1, 2)
    assert dd.conversion_probability(paths, removed="A") == F(1, 4)
    assert dd.markov_removal_effects(paths) == (F(1, 2), {"A": F(1, 2), "B": F(1)})


def test_markov_with_a_loop_by_hand() -> None:
    """Paths (A, B, A) -> conversion, (B) -> null, (A) -> null: a cycle A <-> B.

    Out of A (3 steps): B, conv, null; out of B (2): A, null; out of start (3): A 2, B 1.
    x_A = x_B/3 + 1/3 and x_B = x_A/2 give x_A = 2/5, x_B = 1/5; P = 2/3*2/5 + 1/3*1/5 = 1/3.
    Without A: x_B = 0, P = 0, effect 1. Without B: x_A = 1/3, P = 2/9, effect 1 - 2/3 = 1/3.
    """
    paths = [(("A", "B", "A"), True), (("B",), False), (("A",), False)]
    assert dd.markov_removal_effects(paths) == (F(1, 3), {"A": F(1), "B": F(1, 3)})


def test_markov_collapses_repeats_and_handles_no_conversion() -> None:
    # A, A, B, B is the chain's A, B: the same fit as the collapsed paths.
    assert dd.collapse(("A", "A", "B", "A", "A")) == ["A", "B", "A"]
    long = [(("A", "A", "B", "B"), True), (("B", "B"), False)]
    assert dd.markov_removal_effects(long) == (F(1, 2), {"A": F(1, 2), "B": F(1)})
    assert dd.markov_removal_effects([(("A",), False)]) == (F(0), {"A": F(0)})
    assert dd.markov_removal_effects([]) == (F(0), {})


def test_shapley_three_channels_by_hand() -> None:
    """Converted sets {A} x2, {A, B} x1, {B, C} x3; a lost (C) adds nothing.

    v(A)=2, v(B)=v(C)=0, v(AB)=3, v(AC)=2, v(BC)=3, v(ABC)=6. Marginal contributions over the
    six orders ABC, ACB, BAC, BCA, CAB, CBA: A 2,2,3,3,2,3 (mean 5/2); B 1,4,0,0,4,3 (2);
    C 3,0,3,3,0,0 (3/2). They add up to v(ABC) = 6.
    """
    paths = [
        (("A",), True),
        (("A", "A"), True),
        (("B", "A"), True),
        (("C", "B", "C"), True),
        (("B", "C"), True),
        (("C", "B"), True),
        (("C",), False),
    ]
    assert dd.shapley_values(paths) == {"A": F(5, 2), "B": F(2), "C": F(3, 2)}
    # A channel seen only on lost paths is a null player.
    assert dd.shapley_values([*paths, (("D",), False)])["D"] == 0


def permutation_shapley(paths: list[tuple[tuple[str, ...], bool]]) -> dict[str, Fraction]:
    """Shapley values by brute force: the mean marginal contribution over every order."""
    players = sorted({c for path, _ in paths for c in path})
    sets = [set(path) for path, converted in paths if converted]

    def worth(coalition: set[str]) -> int:
        return sum(1 for members in sets if members <= coalition)

    totals = dict.fromkeys(players, Fraction(0))
    orders = list(itertools.permutations(players))
    for order in orders:
        before: set[str] = set()
        for player in order:
            totals[player] += worth(before | {player}) - worth(before)
            before.add(player)
    return {c: total / len(orders) for c, total in totals.items()}


def random_paths(
    seed: int, n: int, channels: list[str], longest: int = 6
) -> list[tuple[tuple[str, ...], bool]]:
    rng = random.Random(seed)
    paths = []
    for _ in range(n):
        pool = channels[: rng.randint(1, len(channels))]
        steps = tuple(rng.choice(pool) for _ in range(rng.randint(1, longest)))
        paths.append((steps, rng.random() < 0.2 + 0.1 * len(set(steps))))
    return paths


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shapley_equals_permutation_brute_force(seed: int) -> None:
    paths = random_paths(seed, 60, ["a", "b", "c", "d", "e"], longest=4)
    values = dd.shapley_values(paths)
    assert values == permutation_shapley(paths)
    assert sum(values.values()) == sum(1 for _, converted in paths if converted) > 0


def mam_removal_effects(paths: list[tuple[tuple[str, ...], bool]]) -> dict[str, float]:
    """``marketing-attribution-models``' first-order Markov removal effects on the paths."""
    import mam
    import polars as pl

    grouped: dict[tuple[str, bool], int] = {}
    for channels, converted in paths:
        key = (" > ".join(channels), converted)
        grouped[key] = grouped.get(key, 0) + 1
    frame = pl.DataFrame(
        {
            "journey": [journey for journey, _ in grouped],
            "conv": [converted for _, converted in grouped],
            "occurrences": list(grouped.values()),
        }
    )
    model = mam.MAM(frame, "grouped_journey", "journey", "conv", occurrences_colname="occurrences")
    table = model.run_markov().metadata["removal_effect"]["removal_effect"]
    return {str(c): float(v) for c, v in table.to_dict().items()}


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_markov_removal_effects_equal_marketing_attribution_models(seed: int) -> None:
    paths = random_paths(seed, 400, ["content", "email", "events", "paid_search", "webinar"])
    base, ours = dd.markov_removal_effects(paths)
    theirs = mam_removal_effects(paths)
    assert 0 < base < 1
    assert set(ours) == set(theirs) and len(ours) == 5
    for channel, effect in ours.items():
        assert 0 < effect <= 1
        assert float(effect) == pytest.approx(theirs[channel], abs=1e-9, rel=0), channel


def test_channel_weights_split_by_channel_then_evenly() -> None:
    table = {"email": F(1, 2), "webinar": F(1)}
    # email 1/3, webinar 2/3 shared by its three touches.
    assert dd.channel_weights(["email", "webinar", "webinar", "webinar"], table) == [
        F(1, 3),
        F(2, 9),
        F(2, 9),
        F(2, 9),
    ]
    # Every channel weighs 0 (or is missing): the channels share equally.
    assert dd.channel_weights(["x", "y", "y"], {"x": F(0)}) == [F(1, 2), F(1, 4), F(1, 4)]


def data_driven_history() -> list[dict[str, Any]]:
    """D won (email, webinar x3), L lost (webinar; a touch after the loss is not in it),
    O open, U won but unconverted (no EUR rate), E won with an empty journey.

    Paths: (email, webinar, webinar, webinar) -> conversion, (webinar) -> null: as in
    test_markov_two_paths_by_hand, email 1/2 and webinar 1; Shapley 1/2 each.
    """
    return [
        campaign("a", "email"),
        campaign("b", "webinar"),
        touch("t1", "a", -10, account="A"),
        touch("t2", "b", -5, account="A"),
        touch("t3", "b", -4, account="A"),
        touch("t4", "b", 5, account="A"),
        created("D", "A", "100.00", 0),
        status("D", "closed_won", 10),
        touch("t5", "b", -3, account="B"),
        touch("t6", "a", 8, account="B"),
        created("L", "B", "70.00", 0),
        status("L", "closed_lost", 6),
        touch("t7", "a", -3, account="C"),
        created("O", "C", "10.00", 0),
        touch("t8", "a", -3, account="X"),
        created("U", "X", "10.00", 0, currency="EUR"),
        status("U", "closed_won", 2),
        created("E", "Y", "10.00", 0),
        status("E", "closed_won", 2),
    ]


def test_data_driven_fit_uses_won_converted_and_lost_deals() -> None:
    ref = compute(data_driven_history())
    assert ref.deals["L"].journey == ["t5"] and ref.deals["L"].lost_at == T0 + timedelta(6)
    assert ref.deals["O"].journey == [] and ref.deals["U"].unconverted
    assert sorted(ref.paths) == [
        (("email", "webinar", "webinar", "webinar"), True),
        (("webinar",), False),
    ]
    assert ref.conversion_probability == F(1, 2)
    assert ref.removal_effects == {"email": F(1, 2), "webinar": F(1)}
    assert ref.shapley_values == {"email": F(1, 2), "webinar": F(1, 2)}


def test_markov_and_shapley_deal_credits_by_hand() -> None:
    """D: 10000 cents. Markov: email 1/3 (3333.33), webinar 2/9 per touch (2222.22 x3): floors
    9999, the last unit to the largest fraction, email. Shapley: email 5000, webinar 1666.67
    x3: floors 9998, two units to the tied fractions, the earlier touches."""
    d = compute(data_driven_history()).deals["D"]
    assert d.channels == ["email", "webinar", "webinar", "webinar"]
    assert d.touch_credits["markov"] == {"t1": 3334, "t2": 2222, "t3": 2222, "t4": 2222}
    assert d.credits["markov"] == {"a": 3334, "b": 6666}
    assert d.weights["markov"] == {"a": F(1, 3), "b": F(2, 3)}
    assert d.touch_credits["shapley"] == {"t1": 5000, "t2": 1667, "t3": 1667, "t4": 1666}
    ref = compute(data_driven_history())
    lines = ref.credit_lines(["markov", "linear"])
    assert len(lines) == 8  # only D is credited: four touches, two models
    assert lines[("markov", "D", "t1")] == 3334 and lines[("linear", "D", "t4")] == 2500


def test_channel_less_campaign_is_its_own_channel_and_gets_credit() -> None:
    # Campaign "z" is never upserted: its touches are channel "(unknown)", a channel like any
    # other in the fit and in each deal's split (not silently weighed 0).
    events = [
        campaign("a", "email"),
        touch("t1", "z", -2, account="A"),
        touch("t2", "a", -1, account="A"),
        created("D", "A", "90.00", 0),
        status("D", "closed_won", 1),
        touch("t3", "a", -1, account="B"),
        created("L", "B", "10.00", 0),
        status("L", "closed_lost", 1),
    ]
    ref = compute(events)
    d = ref.deals["D"]
    assert d.channels == [UNKNOWN_CHANNEL, "email"]
    # Paths ((unknown), email) -> conv, (email) -> null: as test_markov_two_paths_by_hand.
    assert ref.removal_effects == {UNKNOWN_CHANNEL: F(1, 2), "email": F(1)}
    assert d.touch_credits["markov"] == {"t1": 3000, "t2": 6000}
    assert d.touch_credits["shapley"] == {"t1": 4500, "t2": 4500}
