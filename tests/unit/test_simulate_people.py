"""The simulator's accounts and contacts: firmographics that sway outcomes, personas, lifecycle
stages with side exits, and sales responses after MQLs (measured here plainly from the events)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from services.core.events import EVENT_LIST_ADAPTER
from services.simulate import generate

START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
DAYS = 120
FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
SEGMENT_BANDS = {
    "smb": {"1-10", "11-50"},
    "mid_market": {"51-200", "201-500"},
    "enterprise": {"501-1000", "1001-5000", "5001+"},
}


@cache
def _sample(seed: int, deals: int) -> str:
    return json.dumps(generate(seed=seed, deals=deals, start=START, days=DAYS))


def sample(seed: int = 11, deals: int = 600) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(_sample(seed, deals))
    return events


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == type_]


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def latest_attributes(events: list[dict[str, Any]], type_: str, key: str) -> dict[str, dict]:
    out: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for event in of_type(events, type_):  # in occurred_at order: the latest value wins
        out[event[key]].update(event.get("attributes") or {})
    return dict(out)


def stage_histories(events: list[dict[str, Any]]) -> dict[str, list[tuple[datetime, str]]]:
    out: defaultdict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in of_type(events, "contact.upserted"):
        if event.get("lifecycle_stage"):
            out[event["contact_id"]].append((at(event), event["lifecycle_stage"]))
    return dict(out)


def decided_deals(events: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(account_id, primary contact_id, won) of every deal whose last status is won or lost."""
    created = {e["deal_id"]: e for e in of_type(events, "deal.created")}
    status: dict[str, str] = {}
    for event in events:
        if event["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened"):
            status[event["deal_id"]] = event["type"]
    return [
        (created[d]["account_id"], created[d]["contact_ids"][0], s == "deal.closed_won")
        for d, s in status.items()
        if s != "deal.reopened"
    ]


def win_shares(rows: list[tuple[str, bool]]) -> dict[str, float]:
    won: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for group, is_won in rows:
        total[group] += 1
        won[group] += is_won
    return {group: won[group] / total[group] for group in total}


@pytest.mark.parametrize("seed", [11, 12])
def test_every_event_validates_and_generation_is_deterministic(seed: int) -> None:
    events = sample(seed=seed)
    assert len(EVENT_LIST_ADAPTER.validate_python(events)) == len(events)
    again = generate(seed=seed, deals=600, start=START, days=DAYS)
    assert json.loads(json.dumps(again)) == events


def test_every_account_has_firmographics_before_it_is_first_mentioned() -> None:
    events = sample()
    first_upsert: dict[str, datetime] = {}
    for event in of_type(events, "account.upserted"):
        first_upsert.setdefault(event["account_id"], at(event))
    mentioned: dict[str, datetime] = {}
    for event in events:
        account = event.get("account_id") if event["type"] != "account.upserted" else None
        if account is not None:
            mentioned.setdefault(account, at(event))
    assert mentioned and set(mentioned) <= set(first_upsert)
    assert all(first_upsert[account] <= moment for account, moment in mentioned.items())
    attributes = latest_attributes(events, "account.upserted", "account_id")
    for values in attributes.values():
        assert set(values) == {"industry", "segment", "employees", "country"}
        assert all(isinstance(v, str) and 0 < len(v) <= 200 for v in values.values())
    assert {v["segment"] for v in attributes.values()} == set(SEGMENT_BANDS)
    assert len({v["industry"] for v in attributes.values()}) >= 6
    named = [e for e in of_type(events, "account.upserted") if "name" in e]
    assert len(named) == len(first_upsert)


def test_some_accounts_are_enriched_or_grow_later_and_the_latest_value_wins() -> None:
    upserts = of_type(sample(), "account.upserted")
    first: dict[str, dict[str, str]] = {}
    changed = enriched = 0
    for event in upserts:
        account, values = event["account_id"], event["attributes"]
        if account not in first:
            first[account] = dict(values)
            band = values.get("employees")
            assert band is None or band in SEGMENT_BANDS[values["segment"]]
            continue
        enriched += "country" in values and "country" not in first[account]
        old = first[account].get("employees")
        changed += old is not None and values.get("employees") not in (None, old)
    assert 0.05 * len(first) < enriched < 0.25 * len(first)
    assert 0 < changed < 0.15 * len(first)


def test_won_share_depends_on_segment_industry_and_seniority() -> None:
    """Pooled over two runs of 600 deals (840 decided): the designed fit shows plainly."""
    rows = []
    for seed in (11, 12):
        events = sample(seed=seed)
        accounts = latest_attributes(events, "account.upserted", "account_id")
        contacts = latest_attributes(events, "contact.upserted", "contact_id")
        deals = decided_deals(events)
        assert len(deals) == 420  # 40% won + 30% lost of 600, exactly
        assert sum(won for *_, won in deals) == 240
        rows += [(accounts[a], contacts[c], won) for a, c, won in deals]
    by_segment = win_shares([(account["segment"], won) for account, _, won in rows])
    by_industry = win_shares([(account["industry"], won) for account, _, won in rows])
    pairs = win_shares([(f"{a['industry']} {a['segment']}", won) for a, _, won in rows])
    executive = {"c_level": "executive", "vp": "executive", "staff": "staff"}
    seniority = win_shares([(executive.get(c["seniority"], ""), won) for _, c, won in rows])
    assert by_segment["enterprise"] > by_segment["mid_market"] > by_segment["smb"] + 0.1
    assert by_segment["enterprise"] > by_segment["smb"] + 0.2
    assert by_industry["software"] > by_industry["retail"] + 0.2
    assert pairs["software enterprise"] > 2 * pairs["retail smb"]
    assert seniority["executive"] > seniority["staff"] + 0.1


def test_enterprise_deals_are_larger() -> None:
    events = sample()
    accounts = latest_attributes(events, "account.upserted", "account_id")
    amounts: defaultdict[str, list[float]] = defaultdict(list)
    for event in of_type(events, "deal.created"):
        if event["currency"] == "USD":
            amounts[accounts[event["account_id"]]["segment"]].append(float(event["amount"]))
    median = {k: sorted(v)[len(v) // 2] for k, v in amounts.items()}
    assert median["enterprise"] > 2 * median["mid_market"] > 2 * median["smb"]


def test_contacts_carry_titles_and_a_few_are_promoted() -> None:
    events = sample()
    described: set[str] = set()
    promotions = 0
    for event in of_type(events, "contact.upserted"):
        values = event.get("attributes")
        if event.get("lifecycle_stage") and event["contact_id"] not in described:
            assert values is not None, "a contact's first stage carries its persona"
            assert set(values) == {"title", "seniority", "department"}
            described.add(event["contact_id"])
        elif values is not None:
            assert "account_id" not in event and "lifecycle_stage" not in event
            promotions += 1
    titles = latest_attributes(events, "contact.upserted", "contact_id")
    assert len({v["title"] for v in titles.values()}) >= 10
    assert {v["seniority"] for v in titles.values()} == {
        "c_level",
        "vp",
        "director",
        "manager",
        "staff",
    }
    assert 0 < promotions < 0.05 * len(described)


def test_lifecycle_moves_forward_except_through_the_side_exits() -> None:
    """Forward only; recycled (after mql/sql) lets a contact become an mql again; disqualified
    is final; every stage change is no earlier than the previous one."""
    seen: Counter[str] = Counter()
    for steps in stage_histories(sample()).values():
        furthest = -1
        for (moment, stage), previous in zip(steps, [None, *steps[:-1]], strict=True):
            assert previous is None or (previous[0] <= moment and previous[1] != "disqualified")
            seen[stage] += 1
            if stage == "recycled":
                assert previous is not None and previous[1] in ("mql", "sql")
                furthest = FUNNEL.index("lead")
            elif stage != "disqualified":
                assert FUNNEL.index(stage) > furthest, steps
                furthest = FUNNEL.index(stage)
    assert set(seen) == {*FUNNEL, "recycled", "disqualified"}


def test_subscribers_recycles_and_disqualifications_are_common_enough() -> None:
    events = sample()
    histories = stage_histories(events)
    stages = {contact: [stage for _, stage in steps] for contact, steps in histories.items()}
    starts = Counter(path[0] for path in stages.values())
    assert 0.1 < starts["subscriber"] / len(stages) < 0.35
    assert any(path[:2] == ["subscriber", "lead"] for path in stages.values())
    recycled = [path for path in stages.values() if "recycled" in path]
    assert len(recycled) > 0.05 * len(stages)
    assert any("mql" in path[path.index("recycled") :] for path in recycled)  # re-MQL
    assert any(p[p.index("recycled") :][1:2] == ["mql"] and "sql" in p for p in recycled)
    exits_after = Counter(
        path[i - 1] for path in stages.values() for i, s in enumerate(path) if s == "disqualified"
    )
    assert exits_after["mql"] and exits_after["sql"] and exits_after["lead"]
    # Prospects (accounts with no deal) move too: mqls recycled or disqualified.
    deal_accounts = {e["account_id"] for e in of_type(events, "deal.created")}
    home: dict[str, str] = {}
    for event in of_type(events, "contact.upserted"):
        if event.get("account_id"):
            home.setdefault(event["contact_id"], event["account_id"])
    prospect_exits = Counter(
        exit_
        for contact, path in stages.items()
        if contact in home and home[contact] not in deal_accounts and "mql" in path
        for exit_ in ("recycled", "disqualified")
        if exit_ in path
    )
    assert prospect_exits["recycled"] > 10 and prospect_exits["disqualified"] > 5


def sla_responses(events: list[dict[str, Any]]) -> list[tuple[datetime, datetime | None]]:
    """(first mql, first sales response) per contact after merges, by contract §6's rule."""
    root = {e["merged_contact_id"]: e["contact_id"] for e in of_type(events, "contact.merged")}
    sales = {
        e["campaign_id"] for e in of_type(events, "campaign.upserted") if e.get("is_sales_sourced")
    }
    histories: defaultdict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for contact, steps in stage_histories(events).items():
        histories[root.get(contact, contact)].extend(steps)
    touches: defaultdict[str, list[datetime]] = defaultdict(list)
    for t in of_type(events, "touch"):
        if t.get("contact_id") and (
            t["campaign_id"] in sales or t.get("touch_type") in ("meeting", "call", "sales_email")
        ):
            touches[root.get(t["contact_id"], t["contact_id"])].append(at(t))
    out = []
    for contact, steps in histories.items():
        steps.sort()
        mql = next((i for i, (_, stage) in enumerate(steps) if stage == "mql"), None)
        if mql is None:
            continue
        mql_at = steps[mql][0]
        later = [m for m, s in steps[mql + 1 :] if s in ("sql", "recycled", "disqualified")]
        candidates = [t for t in touches[contact] if t >= mql_at] + later[:1]
        out.append((mql_at, min(candidates, default=None)))
    return out


def test_sales_respond_to_most_mqls_within_a_day_some_late_some_never() -> None:
    events = sample()
    responses = sla_responses(events)
    end = START + timedelta(days=DAYS)
    day = timedelta(hours=24)
    on_time = sum(r is not None and r - m <= day for m, r in responses)
    late = sum(r is not None and r - m > day for m, r in responses)
    never = sum(r is None and end - m > day for m, r in responses)
    assert len(responses) > 600
    assert 0.6 < on_time / len(responses) < 0.85
    assert 0.1 < late / len(responses) < 0.35
    assert 0.02 < never / len(responses) < 0.15
    assert any(
        r is not None and timedelta(days=2) <= r - m <= timedelta(days=5) for m, r in responses
    )
    sales_touches = Counter(
        t["touch_type"]
        for t in of_type(events, "touch")
        if t["touch_type"] in ("call", "sales_email")
    )
    assert sales_touches["call"] > 20 and sales_touches["sales_email"] > 10
