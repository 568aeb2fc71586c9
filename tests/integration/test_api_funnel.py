"""The funnel and SLA reports over HTTP, on projections the worker's code built from events.

Every expected number is worked out by hand in the comments, from the event lists below
(T0 = 2026-03-01T12:00Z, a Sunday of ISO week 2026-W09; times are hours after T0).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from services.api.app import create_app
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.migrate import upgrade
from services.core.db.schema import DealStageChangeRow, LifecycleChangeRow
from services.core.settings import Settings
from tests.support import builders as b

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ts(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def stage(contact: str, hours: float, name: str, *, eid: str | None = None) -> dict[str, Any]:
    return {
        "event_id": eid or f"st-{contact}-{hours}",
        "type": "contact.upserted",
        "occurred_at": ts(hours),
        "contact_id": contact,
        "lifecycle_stage": name,
    }


def merged(survivor: str, absorbed: str, hours: float) -> dict[str, Any]:
    return {
        "event_id": f"merge-{absorbed}",
        "type": "contact.merged",
        "occurred_at": ts(hours),
        "contact_id": survivor,
        "merged_contact_id": absorbed,
    }


def deal(kind: str, did: str, hours: float, **fields: Any) -> dict[str, Any]:
    e = {"event_id": f"{did}-{kind}-{hours}", "type": kind, "occurred_at": ts(hours)}
    return e | {"deal_id": did} | fields


def touch(eid: str, campaign: str, hours: float, contact: str, kind: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "touch",
        "occurred_at": ts(hours),
        "campaign_id": campaign,
        "contact_id": contact,
        "touch_type": kind,
    }


# alice: every stage in turn. bob skips subscriber, is recycled after mql, then returns.
# carol is disqualified. erin's changes join dave's when dave absorbs her. frank's repeat of
# lead is no change. gina only becomes a lead, late.
CONTACTS = [
    stage("alice", 0, "subscriber"),
    stage("alice", 24, "lead"),
    stage("alice", 48, "mql"),
    stage("alice", 84, "sql"),
    stage("alice", 144, "opportunity"),
    stage("alice", 240, "customer"),
    stage("bob", 12, "lead"),
    stage("bob", 24, "mql"),
    stage("bob", 54, "recycled"),
    stage("bob", 120, "lead"),
    stage("bob", 168, "mql"),
    stage("carol", 0, "subscriber"),
    stage("carol", 24, "disqualified"),
    stage("dave", 0, "subscriber"),
    stage("erin", 36, "lead"),
    stage("erin", 72, "mql"),
    stage("dave", 102, "sql"),
    merged("dave", "erin", 200),
    stage("frank", 456, "lead"),
    stage("frank", 468, "lead"),
    stage("frank", 488, "mql"),
    stage("gina", 960, "lead"),
]
# d1 walks qualified -> proposal -> won; d2 starts at proposal and is lost; d3 goes through
# negotiation, is lost, reopened and won.
DEALS = [
    deal("deal.created", "d1", 0, account_id="a", amount="10.00", currency="USD", stage="qualified"),
    deal("deal.updated", "d1", 48, stage="proposal"),
    deal("deal.closed_won", "d1", 96),
    deal("deal.created", "d2", 24, account_id="a", amount="10.00", currency="USD", stage="proposal"),
    deal("deal.closed_lost", "d2", 30),
    deal("deal.created", "d3", 12, account_id="a", amount="10.00", currency="USD", stage="qualified"),
    deal("deal.updated", "d3", 36, stage="negotiation"),
    deal("deal.closed_lost", "d3", 60),
    deal("deal.reopened", "d3", 70),
    deal("deal.closed_won", "d3", 100),
]


def apply(url: str, batches: list[list[dict[str, Any]]]) -> None:
    settings = Settings(_env_file=None, database_url=url)
    sessions = make_sessionmaker(make_engine(url))
    for batch in batches:
        with sessions() as session, session.begin():
            sync_builtin_models(session, settings)
            apply_events(session, b.events(*batch), settings=settings, now=T0)


class Api:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {key}"}

    def json(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def csv(self, path: str, **params: Any) -> list[dict[str, str]]:
        headers = self.headers | {"Accept": "text/csv"}
        response = self.client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.text)))


def serve(url: str, **settings: Any) -> Iterator[Api]:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        key = create_key(session, name="reader", scopes=["read"])
        session.commit()
    engine.dispose()
    app = create_app(Settings(_env_file=None, database_url=url, **settings))
    with TestClient(app) as client:
        yield Api(client, key)


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    # Out of order: one event per batch, newest first (the merge before erin's changes),
    # and a duplicate copy of a change.
    apply(db_url, [[e] for e in reversed(CONTACTS + DEALS)] + [[CONTACTS[2]]])
    yield from serve(db_url)


def row(stage_name: str, volume: int, converted: int, rate: Any, days: Any, rec: int, dis: int):
    return {
        "stage": stage_name,
        "volume": volume,
        "converted": converted,
        "conversion_rate": rate,
        "median_days_to_next": days,
        "recycled": rec,
        "disqualified": dis,
    }


def test_funnel_of_contacts_over_all_time(api: Api) -> None:
    body = api.json("/v1/reports/funnel")
    assert body["object"] == "contacts" and body["from"] is None
    assert body["stages"] == [
        # alice, carol, dave (erin is dave's now). alice -> lead after 1 d, dave after 36 h
        # = 1.5 d; carol's next change is disqualified.
        row("subscriber", 3, 2, 0.6667, 1.25, 0, 1),
        # alice 1 d, bob 0.5 d, dave (erin's) 36 h -> 72 h = 1.5 d, frank 456 h -> 488 h
        # = 1.3333 d; gina never. Median of [0.5, 1, 1.3333, 1.5] = 1.1667.
        row("lead", 5, 4, 0.8, 1.17, 0, 0),
        # alice 1.5 d, dave (72 h -> 102 h) 1.25 d; bob was recycled next (his second mql
        # is not a first entry); frank stays. Median 1.375 rounds half-up to 1.38.
        row("mql", 4, 2, 0.5, 1.38, 1, 0),
        row("sql", 2, 1, 0.5, 2.5, 0, 0),  # alice 84 h -> 144 h; dave stays at sql
        row("opportunity", 1, 1, 1.0, 4.0, 0, 0),  # alice 144 h -> 240 h
        row("customer", 1, 0, 0.0, None, 0, 0),
    ]


def test_funnel_range_counts_first_entries_inside_it(api: Api) -> None:
    # [2026-03-02, 2026-03-04) = [12 h, 60 h): first entries of alice's lead (24 h) and mql
    # (48 h), bob's lead (12 h) and mql (24 h), dave's lead (erin's 36 h). Conversions after
    # the range still count (dave's mql at 72 h).
    body = api.json("/v1/reports/funnel", **{"from": "2026-03-02", "to": "2026-03-04"})
    assert body["stages"] == [
        row("subscriber", 0, 0, None, None, 0, 0),
        row("lead", 3, 3, 1.0, 1.0, 0, 0),  # 1 d, 0.5 d, 1.5 d
        row("mql", 2, 1, 0.5, 1.5, 1, 0),
        row("sql", 0, 0, None, None, 0, 0),
        row("opportunity", 0, 0, None, None, 0, 0),
        row("customer", 0, 0, None, None, 0, 0),
    ]


def test_funnel_csv(api: Api) -> None:
    rows = api.csv("/v1/reports/funnel")
    assert [r["stage"] for r in rows] == [
        "subscriber", "lead", "mql", "sql", "opportunity", "customer"
    ]
    assert rows[2] == {
        "stage": "mql",
        "volume": "4",
        "converted": "2",
        "conversion_rate": "0.5",
        "median_days_to_next": "1.38",
        "recycled": "1",
        "disqualified": "0",
    }
    assert rows[5]["median_days_to_next"] == ""


def deal_row(name: str, volume: int, converted: int, rate: Any, days: Any, lost: int):
    return {
        "stage": name,
        "volume": volume,
        "converted": converted,
        "conversion_rate": rate,
        "median_days_to_next": days,
        "lost": lost,
    }


def test_funnel_of_deals_in_order_of_first_appearance(api: Api) -> None:
    body = api.json("/v1/reports/funnel", object="deals")
    # First seen: qualified (0 h), proposal (24 h), negotiation (36 h).
    assert body["stage_order"] == ["qualified", "proposal", "negotiation", "won", "lost"]
    assert body["stages"] == [
        # d1 -> proposal after 2 d; d3 -> negotiation after 1 d.
        deal_row("qualified", 2, 2, 1.0, 1.5, 0),
        # d1 48 h -> won 96 h = 2 d; d2 skipped qualified and was lost next.
        deal_row("proposal", 2, 1, 0.5, 2.0, 1),
        # d3 36 h -> lost at 60 h (next), won at 100 h: 64 h = 2.6667 d.
        deal_row("negotiation", 1, 1, 1.0, 2.67, 1),
        deal_row("won", 2, 0, 0.0, None, 0),
        deal_row("lost", 2, 0, 0.0, None, 0),
    ]
    rows = api.csv("/v1/reports/funnel", object="deals")
    assert rows[2] == {
        "stage": "negotiation",
        "volume": "1",
        "converted": "1",
        "conversion_rate": "1.0",
        "median_days_to_next": "2.67",
        "lost": "1",
    }


def test_deal_stage_order_setting(sqlite_url: str) -> None:
    apply(sqlite_url, [DEALS])
    for api in serve(sqlite_url, deal_stage_order="proposal, negotiation"):
        body = api.json("/v1/reports/funnel", object="deals")
        # Listed first, then qualified (unlisted) by first appearance: now only won is
        # further than qualified: d1 0 h -> 96 h = 4 d, d3 12 h -> 100 h = 3.6667 d.
        assert body["stage_order"] == ["proposal", "negotiation", "qualified", "won", "lost"]
        assert body["stages"][2] == deal_row("qualified", 2, 2, 1.0, 3.83, 0)
        # proposal: d1 (48 h) -> negotiation? no: d1 goes to won at 96 h = 2 d.
        assert body["stages"][0] == deal_row("proposal", 2, 1, 0.5, 2.0, 1)


def test_funnel_is_the_same_whatever_the_arrival_order(sqlite_url: str, tmp_path: Path) -> None:
    shuffled = CONTACTS + DEALS
    random.Random(7).shuffle(shuffled)
    apply(sqlite_url, [shuffled[:9], shuffled[9:20], shuffled[20:]])
    for api in serve(sqlite_url):
        assert [s["volume"] for s in api.json("/v1/reports/funnel")["stages"]] == [
            3, 5, 4, 2, 1, 1
        ]
