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
from sqlalchemy import func, select

from services.api.app import create_app
from services.attribution.deal_funnel import refresh_deal_funnel
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.deal_stages import current_order, stored_order
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.migrate import upgrade
from services.core.db.schema import DealStageChangeRow, EventRow, LifecycleChangeRow
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
    deal(
        "deal.created", "d1", 0, account_id="a", amount="10.00", currency="USD", stage="qualified"
    ),
    deal("deal.updated", "d1", 48, stage="proposal"),
    deal("deal.closed_won", "d1", 96),
    deal(
        "deal.created", "d2", 24, account_id="a", amount="10.00", currency="USD", stage="proposal"
    ),
    deal("deal.closed_lost", "d2", 30),
    deal(
        "deal.created", "d3", 12, account_id="a", amount="10.00", currency="USD", stage="qualified"
    ),
    deal("deal.updated", "d3", 36, stage="negotiation"),
    deal("deal.closed_lost", "d3", 60),
    deal("deal.reopened", "d3", 70),
    deal("deal.closed_won", "d3", 100),
]


def apply(
    url: str, batches: list[list[dict[str, Any]]], *, summarise: bool = False, **options: Any
) -> None:
    """Apply the batches as the worker does; ``summarise``: and run the worker's deal funnel
    upkeep after each (a rebuild when the stage order moved), so the deal funnel is read from
    ``deal_stage_entries`` rather than tallied from the histories."""
    settings = Settings(_env_file=None, database_url=url, **options)
    sessions = make_sessionmaker(make_engine(url))
    for batch in batches:
        with sessions() as session, session.begin():
            sync_builtin_models(session, settings)
            apply_events(session, b.events(*batch), settings=settings, now=T0)
        if summarise:
            refresh_deal_funnel(sessions, settings)
    if summarise:
        with sessions() as session:  # the report will read the entries, not the histories
            assert stored_order(session) == current_order(session, settings.deal_stage_order)


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


@pytest.fixture(params=["histories", "summary"])
def api(db_url: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    # Out of order: one event per batch, newest first (the merge before erin's changes),
    # and a duplicate copy of a change. The deal funnel from the histories, and from the
    # worker's entries (rebuilt as stages appear, else rewritten with each deal's recompute).
    batches = [[e] for e in reversed(CONTACTS + DEALS)] + [[CONTACTS[2]]]
    apply(db_url, batches, summarise=request.param == "summary")
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
        "subscriber",
        "lead",
        "mql",
        "sql",
        "opportunity",
        "customer",
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


@pytest.mark.parametrize("summarise", [False, True], ids=["histories", "summary"])
def test_deal_stage_order_setting(sqlite_url: str, summarise: bool) -> None:
    order = "proposal, negotiation"
    apply(sqlite_url, [DEALS], summarise=summarise, deal_stage_order=order)
    for api in serve(sqlite_url, deal_stage_order=order):
        body = api.json("/v1/reports/funnel", object="deals")
        # Listed first, then qualified (unlisted) by first appearance: now only won is
        # further than qualified: d1 0 h -> 96 h = 4 d, d3 12 h -> 100 h = 3.6667 d.
        assert body["stage_order"] == ["proposal", "negotiation", "qualified", "won", "lost"]
        assert body["stages"][2] == deal_row("qualified", 2, 2, 1.0, 3.83, 0)
        # proposal: d1 (48 h) -> negotiation? no: d1 goes to won at 96 h = 2 d.
        assert body["stages"][0] == deal_row("proposal", 2, 1, 0.5, 2.0, 1)


def test_deal_funnel_when_a_backdated_stage_moves_the_order(db_url: str) -> None:
    """A stage first seen before the others moves the order: the entries the worker wrote
    under the old one are not used (the report tallies the histories) until the worker
    rebuilds them under the new one; both answers are the same, worked out by hand."""
    apply(db_url, [DEALS], summarise=True)
    discovery = deal("deal.updated", "d1", -10, stage="discovery")  # before qualified (0 h)
    apply(db_url, [[discovery]])
    url_settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        assert stored_order(session) == ["qualified", "proposal", "negotiation"]
    bodies = []
    for api in serve(db_url):
        bodies.append(api.json("/v1/reports/funnel", object="deals"))
        assert refresh_deal_funnel(sessions, url_settings)  # the worker's next pass
        with sessions() as session:
            assert stored_order(session) == ["discovery", "qualified", "proposal", "negotiation"]
        bodies.append(api.json("/v1/reports/funnel", object="deals"))
    assert bodies[0] == bodies[1]
    assert bodies[0]["stage_order"][0] == "discovery"
    # d1 -10 h -> qualified at 0 h: 10 h = 0.42 d; d1 is still qualified's, as before.
    assert bodies[0]["stages"][0] == deal_row("discovery", 1, 1, 1.0, 0.42, 0)
    assert bodies[0]["stages"][1] == deal_row("qualified", 2, 2, 1.0, 1.5, 0)


def test_funnel_is_the_same_whatever_the_arrival_order(sqlite_url: str, tmp_path: Path) -> None:
    shuffled = CONTACTS + DEALS
    random.Random(7).shuffle(shuffled)
    apply(sqlite_url, [shuffled[:9], shuffled[9:20], shuffled[20:]])
    for api in serve(sqlite_url):
        assert [s["volume"] for s in api.json("/v1/reports/funnel")["stages"]] == [3, 5, 4, 2, 1, 1]


# SLA (24 h). p1: a meeting touch of a marketing campaign 10 h 20 min after mql. p2: a
# sales-sourced campaign's touch 30 h after (late). p3: a form fill (no response) then sql
# 6 h after. p4: nothing (overdue). p5: a meeting before the mql (not a response), recycled
# 5 h after. p6 absorbed p7, whose sales touch 2 h after p6's mql answers it. p9: mql 2 h
# ago, nothing yet (not overdue).
def sla_events(now: datetime) -> list[dict[str, Any]]:
    recent = (now - timedelta(hours=2) - T0).total_seconds() / 3600
    return [
        b.campaign("sdr", "outbound_sales", sales=True),
        b.campaign("ads", "paid_search"),
        stage("p1", 0, "mql"),
        touch("t1", "ads", 10 + 20 / 60, "p1", "meeting"),
        stage("p2", 0, "mql"),
        touch("t2", "sdr", 30, "p2", "email_click"),
        stage("p3", 24, "mql"),
        touch("t3", "ads", 25, "p3", "form_fill"),
        stage("p3", 30, "sql"),
        stage("p4", 24, "mql"),
        touch("t5", "ads", 40, "p5", "meeting"),
        stage("p5", 48, "mql"),
        stage("p5", 53, "recycled"),
        stage("p6", 50, "mql"),
        touch("t7", "sdr", 52, "p7", "email_click"),
        merged("p6", "p7", 60),
        stage("p9", recent, "mql", eid="st-p9"),
    ]


def week(mqls: int, responded: int, median: Any, p90: Any, breached: int, name: str):
    return {
        "week": name,
        "mqls": mqls,
        "responded": responded,
        "median_hours": median,
        "p90_hours": p90,
        "breached": breached,
    }


def test_sla_by_iso_week(db_url: str) -> None:
    now = datetime.now(UTC)
    apply(db_url, [sla_events(now)])
    for api in serve(db_url):
        body = api.json("/v1/reports/sla")
        # p9's MQL, 2 h ago: the week of that moment (the week before now's, on a Monday
        # before 02:00 UTC).
        year, number, _ = (now - timedelta(hours=2)).isocalendar()
        this_week = f"{year}-W{number:02d}"
        assert body["sla_hours"] == 24.0
        assert body["weeks"] == [
            # p1 10.3333 h, p2 30 h: median 20.1667, nearest rank ceil(1.8) = 2nd -> 30.
            week(2, 2, 20.17, 30.0, 1, "2026-W09"),
            # p3 6 h, p5 5 h, p6 2 h (p7's touch), p4 none: median 5, rank ceil(2.7) = 3rd.
            week(4, 3, 5.0, 6.0, 1, "2026-W10"),
            week(1, 0, None, None, 0, this_week),  # p9: 2 h without response is not a breach
        ]
        # [2, 5, 6, 10.33, 30]: median 6, p90 rank ceil(4.5) = 5th -> 30.
        assert body["overall"] == week(7, 5, 6.0, 30.0, 2, "overall")
        assert body["breaches"] == [
            {
                "contact_id": "p2",
                "week": "2026-W09",
                "mql_at": "2026-03-01T12:00:00Z",
                "responded_at": "2026-03-02T18:00:00Z",
                "hours_to_response": 30.0,
            },
            {
                "contact_id": "p4",
                "week": "2026-W10",
                "mql_at": "2026-03-02T12:00:00Z",
                "responded_at": None,
                "hours_to_response": None,
            },
        ]
        # [2026-03-02, 2026-03-03): p3 and p4 only.
        ranged = api.json("/v1/reports/sla", **{"from": "2026-03-02", "to": "2026-03-03"})
        assert ranged["overall"] == week(2, 1, 6.0, 6.0, 1, "overall")
        rows = api.csv("/v1/reports/sla", **{"from": "2026-03-02", "to": "2026-03-03"})
        assert rows == [
            {
                "week": "2026-W10",
                "mqls": "2",
                "responded": "1",
                "median_hours": "6.0",
                "p90_hours": "6.0",
                "breached": "1",
            },
            {
                "week": "overall",
                "mqls": "2",
                "responded": "1",
                "median_hours": "6.0",
                "p90_hours": "6.0",
                "breached": "1",
            },
        ]


def test_sla_setting_moves_the_breach_line(sqlite_url: str) -> None:
    apply(sqlite_url, [sla_events(datetime.now(UTC))])
    for api in serve(sqlite_url, sla_hours=5.5):
        # Over 5.5 h: p1 (10.33), p2 (30), p3 (6), p4 (none); p5 (5) and p6 (2) are in time.
        body = api.json("/v1/reports/sla")
        assert [b["contact_id"] for b in body["breaches"]] == ["p1", "p2", "p3", "p4"]
        assert body["breaches_total"] == 4 == body["overall"]["breached"]
        # Nothing happens before p9's deadline (in 3.5 h): the same answer, computed once.
        assert api.json("/v1/reports/sla") == body
        # Paged by (mql_at, contact): p1 and p2 became MQLs at 0 h, p3 and p4 at 24 h.
        page = api.json("/v1/reports/sla", breaches_limit=3, breaches_offset=1)
        assert [b["contact_id"] for b in page["breaches"]] == ["p2", "p3", "p4"]
        assert page["breaches_total"] == 4 and page["overall"] == body["overall"]
        assert api.json("/v1/reports/sla", breaches_offset=4)["breaches"] == []
        for bad in ({"breaches_limit": 0}, {"breaches_limit": 1001}, {"breaches_offset": -1}):
            response = api.client.get("/v1/reports/sla", params=bad, headers=api.headers)
            assert response.status_code == 422, bad
            assert response.json()["errors"][0]["field"] == f"query.{next(iter(bad))}"


def test_migration_backfills_history_of_stored_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0002")
    stored = b.events(*CONTACTS, DEALS[0], DEALS[2], DEALS[8])  # d1 created, won; d3 reopened
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            EventRow.__table__.insert(),
            [
                {
                    "event_id": e.event_id,
                    "type": e.type,
                    "occurred_at": e.occurred_at,
                    "payload": json.dumps(e.model_dump(mode="json", exclude_unset=True)),
                    "stored_at": T0,
                    "contact_id": getattr(e, "contact_id", None),
                    "deal_id": getattr(e, "deal_id", None),
                }
                for e in stored
            ],
        )
    upgrade(url)
    with make_sessionmaker(engine)() as session:
        history = session.execute(
            select(LifecycleChangeRow.contact_id, LifecycleChangeRow.stage)
            .where(LifecycleChangeRow.contact_id == "bob")
            .order_by(LifecycleChangeRow.occurred_at)
        ).all()
        assert [s for _, s in history] == ["lead", "mql", "recycled", "lead", "mql"]
        assert session.scalar(select(func.count()).select_from(LifecycleChangeRow)) == 21
        deals = session.execute(
            select(DealStageChangeRow.kind, DealStageChangeRow.stage).order_by(
                DealStageChangeRow.occurred_at
            )
        ).all()
        assert [tuple(d) for d in deals] == [("stage", "qualified"), ("won", "won")]
    engine.dispose()
    for api in serve(url):
        # No contact rows here (only events were stored), so erin is her own root: lead and
        # mql count her instead of dave, the same volumes as above.
        assert [s["volume"] for s in api.json("/v1/reports/funnel")["stages"]] == [3, 5, 4, 2, 1, 1]
