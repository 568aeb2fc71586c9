"""The simulator: deterministic, canonical, realistic in shape; delivery shuffles and repeats."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from services.core.events import EVENT_LIST_ADAPTER, EVENT_TYPES
from services.simulate import batches, generate, shuffle_with_duplicates

START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
DEALS = 400


@cache
def _sample(seed: int = 11, deals: int = DEALS) -> tuple[dict[str, Any], ...]:
    return tuple(generate(seed=seed, deals=deals, start=START))


def sample(seed: int = 11, deals: int = DEALS) -> list[dict[str, Any]]:
    return json.loads(json.dumps(list(_sample(seed, deals))))


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == type_]


def final_status(events: list[dict[str, Any]]) -> dict[str, str]:
    status = {event["deal_id"]: "open" for event in of_type(events, "deal.created")}
    for event in events:  # already in (occurred_at, event_id) order
        if event["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened"):
            status[event["deal_id"]] = event["type"].removeprefix("deal.")
    return status


def test_same_seed_gives_identical_events() -> None:
    assert generate(seed=5, deals=60, start=START) == generate(seed=5, deals=60, start=START)


def test_other_arguments_never_reuse_an_id() -> None:
    first = {event["event_id"] for event in generate(seed=5, deals=60, start=START)}
    other_seed = {event["event_id"] for event in generate(seed=6, deals=60, start=START)}
    more_deals = {event["event_id"] for event in generate(seed=5, deals=61, start=START)}
    assert not first & other_seed
    assert not first & more_deals


def test_event_ids_are_unique() -> None:
    events = sample()
    assert len({event["event_id"] for event in events}) == len(events)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_event_validates_against_the_canonical_schema(seed: int) -> None:
    events = sample(seed=seed, deals=150)
    assert len(EVENT_LIST_ADAPTER.validate_python(events)) == len(events)


def test_other_currencies_validate_too() -> None:
    events = generate(
        seed=9, deals=80, start=START, currencies=("JPY", "EUR", "CHF"), reporting_currency="EUR"
    )
    EVENT_LIST_ADAPTER.validate_python(events)
    yen = [e["amount"] for e in events if e.get("currency") == "JPY"]
    assert yen and all("." not in amount for amount in yen)
    pairs = {(e["base"], e["quote"]) for e in of_type(events, "fx.rate")}
    assert {("JPY", "EUR"), ("CHF", "EUR")} <= pairs


def test_every_event_type_appears() -> None:
    assert {event["type"] for event in sample()} == set(EVENT_TYPES)


def test_events_are_json_ready_with_no_floats() -> None:
    def walk(value: Any) -> None:
        assert not isinstance(value, float)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    events = list(_sample())
    walk(events)
    assert json.loads(json.dumps(events)) == events
    for event in events:
        if "amount" in event:
            assert Decimal(event["amount"]) >= 0
            if event["currency"] in ("USD", "EUR", "GBP"):
                assert len(event["amount"].partition(".")[2]) == 2


def test_events_are_in_order_inside_the_window_and_ids_sort_the_same_way() -> None:
    events = sample()
    stamps = [event["occurred_at"] for event in events]
    assert all(stamp.endswith("Z") for stamp in stamps)
    assert stamps == sorted(stamps)
    ids = [event["event_id"] for event in events]
    assert ids == sorted(ids)
    moments = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert moments[0] >= START and moments[-1] < START + timedelta(days=120)


def test_naive_start_is_taken_as_utc() -> None:
    naive = generate(seed=4, deals=30, start=START.replace(tzinfo=None))
    assert naive == generate(seed=4, deals=30, start=START)


def test_outcomes_follow_the_designed_mix() -> None:
    events = sample()
    status = final_status(events)
    counts = Counter(status.values())
    assert len(status) == DEALS
    assert counts["closed_won"] == pytest.approx(0.40 * DEALS, abs=1)
    assert counts["closed_lost"] == pytest.approx(0.30 * DEALS, abs=1)
    assert counts["open"] == pytest.approx(0.30 * DEALS, abs=2)
    reopened = {event["deal_id"] for event in of_type(events, "deal.reopened")}
    assert reopened and all(status[deal_id] == "closed_won" for deal_id in reopened)
    assert 0 < len(reopened) <= 0.1 * counts["closed_won"]


def test_deals_start_with_creation_and_some_change_amount() -> None:
    events = sample()
    first_seen: dict[str, str] = {}
    for event in events:
        if event["type"].startswith("deal."):
            first_seen.setdefault(event["deal_id"], event["type"])
    assert set(first_seen.values()) == {"deal.created"}
    assert all(event["contact_ids"] for event in of_type(events, "deal.created"))
    assert sum("amount" in event for event in of_type(events, "deal.updated")) > DEALS * 0.2
    assert {event["currency"] for event in of_type(events, "deal.created")} == {"USD", "EUR", "GBP"}


def test_campaigns_cover_every_channel_with_costs() -> None:
    events = sample()
    campaigns = {e["campaign_id"]: e for e in of_type(events, "campaign.upserted")}
    assert 12 <= len(campaigns) <= 40
    channels = {e["channel"] for e in campaigns.values()}
    assert channels == {
        "paid_search",
        "paid_social",
        "email",
        "webinar",
        "events",
        "content",
        "organic_search",
        "outbound_sales",
        "partner",
    }
    for campaign in campaigns.values():
        assert campaign.get("is_sales_sourced", False) is (campaign["channel"] == "outbound_sales")
    costs = of_type(events, "campaign.cost")
    assert {cost["campaign_id"] for cost in costs} <= set(campaigns)
    assert len({cost["campaign_id"] for cost in costs}) >= len(campaigns) // 2
    assert all(cost["period_start"] <= cost["period_end"] for cost in costs)
    touched = {event["campaign_id"] for event in of_type(events, "touch")}
    assert touched <= set(campaigns)


def test_fx_rates_cover_every_day_with_some_inverse_pairs() -> None:
    events = sample()
    rates = of_type(events, "fx.rate")
    last = (START + timedelta(days=120, seconds=-1)).date()
    days = {START.date() + timedelta(days=n) for n in range((last - START.date()).days + 1)}
    for currency in ("EUR", "GBP"):
        quoted = {
            date.fromisoformat(r["date"])
            for r in rates
            if {r["base"], r["quote"]} == {currency, "USD"}
        }
        assert quoted == days
    assert any(rate["base"] == "USD" for rate in rates)
    assert all(Decimal(rate["rate"]) > 0 for rate in rates)


def test_accounts_have_one_to_four_contacts_and_two_to_twelve_touches() -> None:
    events = sample()
    home: dict[str, str] = {}  # contact -> the first account it was given
    for event in of_type(events, "contact.upserted"):
        if event.get("account_id") is not None:
            home.setdefault(event["contact_id"], event["account_id"])
    deal_accounts = {event["account_id"] for event in of_type(events, "deal.created")}
    contacts: defaultdict[str, set[str]] = defaultdict(set)
    for contact_id, account_id in home.items():
        contacts[account_id].add(contact_id)
    touches: Counter[str] = Counter()
    for touch in of_type(events, "touch"):
        account = touch.get("account_id") or home.get(touch.get("contact_id") or "")
        touches[account or ""] += 1
    for account in deal_accounts:
        assert 1 <= len(contacts[account]) <= 4
        assert 2 <= touches[account] <= 12


def test_first_touches_usually_create_the_lead() -> None:
    seen: set[str] = set()
    created = []
    for touch in of_type(sample(), "touch"):
        contact_id = touch.get("contact_id")
        if contact_id and contact_id not in seen:
            seen.add(contact_id)
            created.append(touch.get("lead_created", False))
    assert 0.7 < sum(created) / len(created) < 0.98
    assert any(touch.get("contact_id") is None for touch in of_type(sample(), "touch"))


def test_some_contacts_are_merged_and_some_move_account() -> None:
    events = sample()
    merges = of_type(events, "contact.merged")
    assert merges and all(m["contact_id"] != m["merged_contact_id"] for m in merges)
    accounts: defaultdict[str, list[str]] = defaultdict(list)
    for event in of_type(events, "contact.upserted"):
        if event.get("account_id") is not None:
            accounts[event["contact_id"]].append(event["account_id"])
    assert any(len(set(history)) > 1 for history in accounts.values())


@pytest.mark.parametrize(
    "overrides",
    [
        {"days": 7},
        {"deals": -1},
        {"currencies": ()},
        {"currencies": ("USD", "XXQ")},
        {"reporting_currency": "usd"},
    ],
)
def test_bad_arguments_are_rejected(overrides: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"seed": 1, "deals": 10, "start": START} | overrides
    with pytest.raises(ValueError):
        generate(**arguments)


def test_no_deals_still_gives_campaigns_costs_and_rates() -> None:
    events = generate(seed=1, deals=0, start=START, days=30)
    EVENT_LIST_ADAPTER.validate_python(events)
    assert {"campaign.upserted", "campaign.cost", "fx.rate"} <= {e["type"] for e in events}


def test_shuffle_keeps_every_event_and_repeats_some_verbatim() -> None:
    events = sample(deals=100)
    arrivals = shuffle_with_duplicates(events, seed=3, duplicate_rate=0.05)
    assert len(arrivals) == len(events) + round(len(events) * 0.05)
    counts = Counter(event["event_id"] for event in arrivals)
    assert set(counts) == {event["event_id"] for event in events}
    assert set(counts.values()) == {1, 2}
    by_id = {event["event_id"]: event for event in events}
    assert all(event == by_id[event["event_id"]] for event in arrivals)
    assert [e["event_id"] for e in arrivals] != [e["event_id"] for e in events]


def test_shuffle_is_deterministic_and_leaves_its_input_alone() -> None:
    events = sample(deals=50)
    before = json.dumps(events)
    first = shuffle_with_duplicates(events, seed=8)
    assert first == shuffle_with_duplicates(events, seed=8)
    assert first != shuffle_with_duplicates(events, seed=9)
    first[0]["event_id"] = "changed"
    assert json.dumps(events) == before


def test_shuffle_without_duplicates_is_a_permutation() -> None:
    events = sample(deals=50)
    arrivals = shuffle_with_duplicates(events, seed=1, duplicate_rate=0)
    assert sorted(e["event_id"] for e in arrivals) == sorted(e["event_id"] for e in events)
    with pytest.raises(ValueError):
        shuffle_with_duplicates(events, seed=1, duplicate_rate=1.5)


def test_batches_split_in_order() -> None:
    items = [{"n": n} for n in range(7)]
    assert [len(batch) for batch in batches(items, 3)] == [3, 3, 1]
    assert [item for batch in batches(items, 3) for item in batch] == items
    assert list(batches([], 3)) == []
    with pytest.raises(ValueError):
        list(batches(items, 0))
