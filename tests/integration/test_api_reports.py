"""The read API over HTTP against a hand-built projection, on PostgreSQL and SQLite.

The rows below are the API's input contract (what the worker writes); every expected number is
computed by hand in the comments next to it.

Data (reporting currency USD, models ``first_touch`` and ``linear``):
- campaigns: camp-search (paid_search), camp-ads (paid_search, cost only), camp-webinar
  (webinar); camp-ghost is credited but has no campaigns row.
- touches: t1 2024-01-05 search, t2 2024-01-10 webinar (lead), t3 2024-01-20 search,
  t4 2024-02-01 ghost.
- D6 won 2023-12-31T23:59:59Z, $70.00, journey [t1].
- D1 won 2024-01-31T12:00Z, $1000.00, journey [t1, t2, t3]
  (linear: 333.34 / 333.33 / 333.33; first_touch: 1000.00 / 0 / 0).
- D2 won 2024-02-01T00:00Z exactly, $500.00, journey [t3, t4]
  (linear: 250.00 / 250.00; first_touch: 500.00 / 0).
- D3 won 2024-02-15, $200.00, empty journey (unattributed).
- D4 won 2024-01-25, EUR 1234.56, unconverted. D5 open.
- costs: search $1000.00 over 2024-01-30..02-02 ($250.00/day); ads $300.00 on 2024-01-15;
  webinar $100.00 over 2024-01-10..01-11.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.api.app import create_app
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    AttributionModelRow,
    CampaignCostDayRow,
    CampaignCostRow,
    CampaignRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    TouchRow,
)
from services.core.settings import Settings

pytestmark = pytest.mark.integration

JAN, FEB = {"from": "2024-01-01", "to": "2024-02-01"}, {"from": "2024-02-01", "to": "2024-03-01"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- builders: the projection rows, as the worker writes them -------------------------------


def add_model(session: Session, model_id: str, *, position: int, params: str) -> None:
    session.add(
        AttributionModelRow(
            model_id=model_id,
            kind="positional",
            params=params,
            description=f"{model_id} model",
            builtin=True,
            position=position,
        )
    )


def add_campaign(session: Session, campaign_id: str, name: str, channel: str) -> None:
    session.add(
        CampaignRow(campaign_id=campaign_id, name=name, channel=channel, is_sales_sourced=False)
    )


def add_touch(
    session: Session, event_id: str, when: str, campaign_id: str, *, lead: bool = False
) -> None:
    session.add(
        TouchRow(
            event_id=event_id,
            occurred_at=at(when),
            campaign_id=campaign_id,
            contact_id="c1",
            account_id="acme",
            touch_type="form_fill",
            lead_created=lead,
        )
    )


def add_deal(
    session: Session,
    deal_id: str,
    *,
    status: str = "won",
    closed: str | None = None,
    amount_minor: int,
    currency: str = "USD",
    reporting_minor: int | None = None,
    conversion: str | None = "converted",
    touches: int = 0,
) -> None:
    session.add(
        DealRow(
            deal_id=deal_id,
            account_id="acme",
            status=status,
            stage="closed",
            amount_minor=amount_minor,
            currency=currency,
            created_at=at("2024-01-15T00:00:00"),
            closed_at=at(closed) if closed else None,
            reporting_minor=reporting_minor,
            conversion=conversion,
            journey_touches=touches,
        )
    )


def attribute(
    session: Session,
    model_id: str,
    deal_id: str,
    closed: str,
    amount_minor: int,
    parts: list[tuple[str, str, str, float, int]],
) -> None:
    """Write credits (touch, campaign, roles, weight, credit) and the deal's attribution row."""
    for position, (touch_id, campaign_id, roles, weight, credit) in enumerate(parts):
        session.add(
            CreditRow(
                model_id=model_id,
                deal_id=deal_id,
                touch_event_id=touch_id,
                position=position,
                campaign_id=campaign_id,
                roles=roles,
                weight=weight,
                credit_minor=credit,
                closed_at=at(closed),
            )
        )
    attributed = sum(p[4] for p in parts)
    session.add(
        DealAttributionRow(
            model_id=model_id,
            deal_id=deal_id,
            closed_at=at(closed),
            amount_minor=amount_minor,
            attributed_minor=attributed,
            unattributed_minor=amount_minor - attributed,
        )
    )


def add_cost(
    session: Session, event_id: str, campaign_id: str, first: date, days: int, per_day_minor: int
) -> None:
    session.add(
        CampaignCostRow(
            event_id=event_id,
            campaign_id=campaign_id,
            amount_minor=per_day_minor * days,
            currency="USD",
            period_start=first,
            period_end=first + timedelta(days=days - 1),
            reporting_minor=per_day_minor * days,
        )
    )
    session.flush()
    for n in range(days):
        session.add(
            CampaignCostDayRow(
                cost_event_id=event_id,
                day=first + timedelta(days=n),
                campaign_id=campaign_id,
                cost_minor=per_day_minor,
            )
        )


def seed(session: Session) -> None:
    add_model(session, "linear", position=2, params='{"middle": "1"}')
    add_model(session, "first_touch", position=0, params='{"first": "1"}')
    add_campaign(session, "camp-search", "Search Q1", "paid_search")
    add_campaign(session, "camp-ads", "Display Ads", "paid_search")
    add_campaign(session, "camp-webinar", "Webinar", "webinar")
    add_touch(session, "t1", "2024-01-05T10:00:00", "camp-search")
    add_touch(session, "t2", "2024-01-10T15:30:00", "camp-webinar", lead=True)
    add_touch(session, "t3", "2024-01-20T08:00:00", "camp-search")
    add_touch(session, "t4", "2024-02-01T00:00:00", "camp-ghost")

    d6, d1, d2, d3 = (
        "2023-12-31T23:59:59",
        "2024-01-31T12:00:00",
        "2024-02-01T00:00:00",
        "2024-02-15T09:30:00",
    )
    add_deal(session, "D6", closed=d6, amount_minor=7000, reporting_minor=7000, touches=1)
    add_deal(session, "D1", closed=d1, amount_minor=100000, reporting_minor=100000, touches=3)
    add_deal(session, "D2", closed=d2, amount_minor=50000, reporting_minor=50000, touches=2)
    add_deal(session, "D3", closed=d3, amount_minor=20000, reporting_minor=20000)
    add_deal(
        session,
        "D4",
        closed="2024-01-25T00:00:00",
        amount_minor=123456,
        currency="EUR",
        conversion="unconverted",
    )
    add_deal(session, "D5", status="open", amount_minor=999, conversion=None)
    third = 1 / 3
    for model_id in ("linear", "first_touch"):
        attribute(
            session,
            model_id,
            "D6",
            d6,
            7000,
            [("t1", "camp-search", "first,lead_creation,opportunity_creation,last", 1.0, 7000)],
        )
        attribute(session, model_id, "D3", d3, 20000, [])
    attribute(
        session,
        "linear",
        "D1",
        d1,
        100000,
        [
            ("t1", "camp-search", "first", third, 33334),
            ("t2", "camp-webinar", "lead_creation,opportunity_creation", third, 33333),
            ("t3", "camp-search", "last", third, 33333),
        ],
    )
    attribute(
        session,
        "first_touch",
        "D1",
        d1,
        100000,
        [
            ("t1", "camp-search", "first", 1.0, 100000),
            ("t2", "camp-webinar", "lead_creation,opportunity_creation", 0.0, 0),
            ("t3", "camp-search", "last", 0.0, 0),
        ],
    )
    attribute(
        session,
        "linear",
        "D2",
        d2,
        50000,
        [
            ("t3", "camp-search", "first,lead_creation,opportunity_creation", 0.5, 25000),
            ("t4", "camp-ghost", "last", 0.5, 25000),
        ],
    )
    attribute(
        session,
        "first_touch",
        "D2",
        d2,
        50000,
        [
            ("t3", "camp-search", "first,lead_creation,opportunity_creation", 1.0, 50000),
            ("t4", "camp-ghost", "last", 0.0, 0),
        ],
    )
    add_cost(session, "cost-search", "camp-search", date(2024, 1, 30), 4, 25000)
    add_cost(session, "cost-ads", "camp-ads", date(2024, 1, 15), 1, 30000)
    add_cost(session, "cost-webinar", "camp-webinar", date(2024, 1, 10), 2, 5000)


@dataclass
class Api:
    client: TestClient
    read: dict[str, str]
    ingest_only: dict[str, str]
    url: str

    def get(self, path: str, *, accept: str | None = None, **params: Any) -> Any:
        headers = dict(self.read)
        if accept:
            headers["Accept"] = accept
        return self.client.get(path, params=params, headers=headers)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    def csv(self, path: str, **params: Any) -> list[dict[str, str]]:
        response = self.get(path, accept="text/csv", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        seed(session)
        read_key = create_key(session, name="reader", scopes=["read"])
        ingest_key = create_key(session, name="ingester", scopes=["ingest"])
        session.commit()
    engine.dispose()
    settings = Settings(_env_file=None, database_url=db_url)
    with TestClient(create_app(settings)) as client:
        yield Api(
            client,
            {"Authorization": f"Bearer {read_key}"},
            {"Authorization": f"Bearer {ingest_key}"},
            db_url,
        )


def test_roi_by_campaign_in_january(api: Api) -> None:
    body = api.json("/v1/reports/roi", model="linear", **JAN)
    # Only D1 closed in January (D2 closes exactly at `to`, D6 before `from`). Search holds
    # t1+t3 = 333.34+333.33 and 2/3 of the deal; its cost days inside are 01-30 and 01-31.
    assert body == {
        "model": "linear",
        "status": "ready",
        "from": "2024-01-01",
        "to": "2024-02-01",
        "currency": "USD",
        "group_by": "campaign",
        "rows": [
            {
                "campaign_id": "camp-search",
                "campaign_name": "Search Q1",
                "channel": "paid_search",
                "revenue": "666.67",
                "deals": 0.6667,
                "cost": "500.00",
                "roi": 0.3333,
                "roas": 1.3333,
            },  # 16667/50000, 66667/50000
            {
                "campaign_id": "camp-webinar",
                "campaign_name": "Webinar",
                "channel": "webinar",
                "revenue": "333.33",
                "deals": 0.3333,
                "cost": "100.00",
                "roi": 2.3333,
                "roas": 3.3333,
            },
            {
                "campaign_id": "camp-ads",
                "campaign_name": "Display Ads",
                "channel": "paid_search",
                "revenue": "0.00",
                "deals": 0.0,
                "cost": "300.00",
                "roi": -1.0,
                "roas": 0.0,
            },
        ],
        "totals": {
            "revenue": "1000.00",
            "cost": "900.00",
            "unattributed_revenue": "0.00",
            "pending_revenue": "0.00",
        },
        # the default order, every row: one page
        "sort": "-revenue",
        "total_rows": 3,
        "offset": 0,
        "limit": None,
        "next_offset": None,
    }


def test_roi_unbounded_by_campaign_and_channel(api: Api) -> None:
    body = api.json("/v1/reports/roi")  # defaults: linear, by campaign, all time
    assert (body["model"], body["from"], body["to"], body["group_by"]) == (
        "linear",
        None,
        None,
        "campaign",
    )
    rows = {r["campaign_id"]: r for r in body["rows"]}
    assert [r["campaign_id"] for r in body["rows"]] == [
        "camp-search",
        "camp-webinar",
        "camp-ghost",
        "camp-ads",
    ]
    # search: 70.00 (D6) + 666.67 (D1) + 250.00 (D2); deals 1 + 2/3 + 1/2; cost all 4 days.
    assert rows["camp-search"] == {
        "campaign_id": "camp-search",
        "campaign_name": "Search Q1",
        "channel": "paid_search",
        "revenue": "986.67",
        "deals": 2.1667,
        "cost": "1000.00",
        "roi": -0.0133,
        "roas": 0.9867,
    }
    assert rows["camp-ghost"] == {
        "campaign_id": "camp-ghost",
        "campaign_name": None,
        "channel": None,
        "revenue": "250.00",
        "deals": 0.5,
        "cost": "0.00",
        "roi": None,
        "roas": None,
    }
    assert body["totals"] == {
        "revenue": "1570.00",
        "cost": "1400.00",
        "unattributed_revenue": "200.00",
        "pending_revenue": "0.00",
    }

    by_channel = api.json("/v1/reports/roi", group_by="channel")
    assert by_channel["group_by"] == "channel"
    assert by_channel["rows"] == [
        # search + ads: 986.67 against 1000.00 + 300.00
        {
            "channel": "paid_search",
            "revenue": "986.67",
            "deals": 2.1667,
            "cost": "1300.00",
            "roi": -0.241,
            "roas": 0.759,
        },
        {
            "channel": "webinar",
            "revenue": "333.33",
            "deals": 0.3333,
            "cost": "100.00",
            "roi": 2.3333,
            "roas": 3.3333,
        },
        {
            "channel": None,
            "revenue": "250.00",
            "deals": 0.5,
            "cost": "0.00",
            "roi": None,
            "roas": None,
        },
    ]
    assert by_channel["totals"] == body["totals"]

    january = api.json("/v1/reports/roi", group_by="channel", **JAN)["rows"]
    # paid_search in January: 666.67 against 500.00 + 300.00
    assert january[0] == {
        "channel": "paid_search",
        "revenue": "666.67",
        "deals": 0.6667,
        "cost": "800.00",
        "roi": -0.1667,
        "roas": 0.8333,
    }


def test_roi_range_boundaries(api: Api) -> None:
    feb = api.json("/v1/reports/roi", model="linear", **FEB)
    # D2 closes at 2024-02-01T00:00Z: inside [from, to). Tie at 250.00 broken by campaign id.
    assert [(r["campaign_id"], r["revenue"], r["deals"], r["cost"]) for r in feb["rows"]] == [
        ("camp-ghost", "250.00", 0.5, "0.00"),
        ("camp-search", "250.00", 0.5, "500.00"),
    ]
    assert feb["totals"] == {
        "revenue": "500.00",
        "cost": "500.00",
        "unattributed_revenue": "200.00",
        "pending_revenue": "0.00",
    }
    # Only `to`: everything closed before 2024-01-01 (D6), cost days before it (none).
    before = api.json("/v1/reports/roi", to="2024-01-01")
    assert before["from"] is None
    assert [(r["campaign_id"], r["revenue"], r["cost"]) for r in before["rows"]] == [
        ("camp-search", "70.00", "0.00")
    ]
    # One day: only 2024-01-31 of the search cost, and D1 (closed at noon that day).
    day = api.json(
        "/v1/reports/roi", model="first_touch", **{"from": "2024-01-31"}, to="2024-02-01"
    )
    assert [(r["campaign_id"], r["revenue"], r["cost"]) for r in day["rows"]] == [
        ("camp-search", "1000.00", "250.00"),
        ("camp-webinar", "0.00", "0.00"),
    ]


def test_compare(api: Api) -> None:
    body = api.json("/v1/reports/compare")
    assert body["models"] == ["first_touch", "linear"]  # all models, in position order
    assert body["group_by"] == "campaign"
    assert body["rows"] == [  # by first_touch revenue, then campaign id
        {
            "campaign_id": "camp-search",
            "campaign_name": "Search Q1",
            "channel": "paid_search",
            "revenue": {"first_touch": "1570.00", "linear": "986.67"},
            "cost": "1000.00",
        },
        {
            "campaign_id": "camp-ads",
            "campaign_name": "Display Ads",
            "channel": "paid_search",
            "revenue": {"first_touch": "0.00", "linear": "0.00"},
            "cost": "300.00",
        },
        {
            "campaign_id": "camp-ghost",
            "campaign_name": None,
            "channel": None,
            "revenue": {"first_touch": "0.00", "linear": "250.00"},
            "cost": "0.00",
        },
        {
            "campaign_id": "camp-webinar",
            "campaign_name": "Webinar",
            "channel": "webinar",
            "revenue": {"first_touch": "0.00", "linear": "333.33"},
            "cost": "100.00",
        },
    ]
    assert body["totals"] == {
        "revenue": {"first_touch": "1570.00", "linear": "1570.00"},
        "unattributed_revenue": {"first_touch": "200.00", "linear": "200.00"},
        "pending_revenue": {"first_touch": "0.00", "linear": "0.00"},
        "cost": "1400.00",
    }
    assert body["status"] == {"first_touch": "ready", "linear": "ready"}

    by_channel = api.json(
        "/v1/reports/compare", models="linear,first_touch,linear", group_by="channel", **JAN
    )
    assert by_channel["models"] == ["linear", "first_touch"]
    assert by_channel["rows"] == [
        {
            "channel": "paid_search",
            "revenue": {"linear": "666.67", "first_touch": "1000.00"},
            "cost": "800.00",
        },
        {
            "channel": "webinar",
            "revenue": {"linear": "333.33", "first_touch": "0.00"},
            "cost": "100.00",
        },
    ]


def test_reconciliation_identity(api: Api) -> None:
    body = api.json("/v1/reports/reconciliation")
    assert body == {
        "currency": "USD",
        "from": None,
        "to": None,
        "closed_won_revenue": "1770.00",  # D6 + D1 + D2 + D3; D4 is unconverted
        "won_deals": 4,
        "unconverted": {"count": 1, "amounts": {"EUR": "1234.56"}},
        "models": {
            "first_touch": {
                "status": "ready",
                "attributed": "1570.00",
                "unattributed": "200.00",
                "pending": "0.00",
            },
            "linear": {
                "status": "ready",
                "attributed": "1570.00",
                "unattributed": "200.00",
                "pending": "0.00",
            },
        },
    }
    for period in ({}, JAN, FEB, {"from": "2024-01-31"}):
        report = api.json("/v1/reports/reconciliation", **period)
        total = to_cents(report["closed_won_revenue"])
        for model in report["models"].values():
            parts = (model["attributed"], model["unattributed"], model["pending"])
            assert sum(map(to_cents, parts)) == total
    january = api.json("/v1/reports/reconciliation", **JAN)
    assert (january["closed_won_revenue"], january["won_deals"], january["unconverted"]) == (
        "1000.00",
        1,
        {"count": 1, "amounts": {"EUR": "1234.56"}},
    )
    february = api.json("/v1/reports/reconciliation", **FEB)
    assert february["models"]["linear"] == {
        "status": "ready",
        "attributed": "500.00",
        "unattributed": "200.00",
        "pending": "0.00",
    }
    assert february["unconverted"] == {"count": 0, "amounts": {}}


def to_cents(text: str) -> int:
    units, cents = text.split(".")
    return int(units) * 100 + int(cents)


def test_deal_attribution(api: Api) -> None:
    body = api.json("/v1/deals/D1/attribution")
    assert body["model"] == "linear"
    assert body["unattributed"] is False
    assert body["deal"] == {
        "deal_id": "D1",
        "account_id": "acme",
        "status": "won",
        "stage": "closed",
        "amount": "1000.00",
        "currency": "USD",
        "created_at": "2024-01-15T00:00:00Z",
        "closed_at": "2024-01-31T12:00:00Z",
        "reporting_amount": "1000.00",
        "reporting_currency": "USD",
        "conversion": "converted",
    }
    journey = body["journey"]
    assert [
        (t["event_id"], t["occurred_at"], t["campaign_id"], t["channel"], t["roles"], t["credit"])
        for t in journey
    ] == [
        ("t1", "2024-01-05T10:00:00Z", "camp-search", "paid_search", ["first"], "333.34"),
        (
            "t2",
            "2024-01-10T15:30:00Z",
            "camp-webinar",
            "webinar",
            ["lead_creation", "opportunity_creation"],
            "333.33",
        ),
        ("t3", "2024-01-20T08:00:00Z", "camp-search", "paid_search", ["last"], "333.33"),
    ]
    assert all(math.isclose(t["weight"], 1 / 3) for t in journey)

    first = api.json("/v1/deals/D2/attribution", model="first_touch")
    assert [(t["event_id"], t["channel"], t["weight"], t["credit"]) for t in first["journey"]] == [
        ("t3", "paid_search", 1.0, "500.00"),
        ("t4", None, 0.0, "0.00"),
    ]

    empty = api.json("/v1/deals/D3/attribution")
    assert (empty["unattributed"], empty["journey"]) == (True, [])
    unconverted = api.json("/v1/deals/D4/attribution")
    assert unconverted["deal"]["amount"] == "1234.56"
    assert unconverted["deal"]["reporting_amount"] is None
    assert (
        unconverted["deal"]["conversion"],
        unconverted["unattributed"],
        unconverted["journey"],
    ) == ("unconverted", False, [])
    still_open = api.json("/v1/deals/D5/attribution")
    assert (
        still_open["deal"]["status"],
        still_open["deal"]["closed_at"],
        still_open["journey"],
    ) == ("open", None, [])

    missing = api.get("/v1/deals/nope/attribution")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["status"] == 404
    assert api.get("/v1/deals/nul%00/attribution").status_code == 404


def test_csv_for_every_report(api: Api) -> None:
    roi = api.csv("/v1/reports/roi", **JAN)
    assert list(roi[0]) == [
        "campaign_id",
        "campaign_name",
        "channel",
        "revenue",
        "deals",
        "cost",
        "roi",
        "roas",
    ]
    assert roi[0] == {
        "campaign_id": "camp-search",
        "campaign_name": "Search Q1",
        "channel": "paid_search",
        "revenue": "666.67",
        "deals": "0.6667",
        "cost": "500.00",
        "roi": "0.3333",
        "roas": "1.3333",
    }
    assert len(roi) == 3
    by_channel = api.csv("/v1/reports/roi", group_by="channel")
    assert list(by_channel[0]) == ["channel", "revenue", "deals", "cost", "roi", "roas"]
    assert by_channel[2] == {
        "channel": "",
        "revenue": "250.00",
        "deals": "0.5",
        "cost": "0.00",
        "roi": "",
        "roas": "",
    }

    compare = api.csv("/v1/reports/compare")
    assert list(compare[0]) == [
        "campaign_id",
        "campaign_name",
        "channel",
        "revenue_first_touch",
        "revenue_linear",
        "cost",
    ]
    assert [
        (r["campaign_id"], r["revenue_first_touch"], r["revenue_linear"], r["cost"])
        for r in compare
    ] == [
        ("camp-search", "1570.00", "986.67", "1000.00"),
        ("camp-ads", "0.00", "0.00", "300.00"),
        ("camp-ghost", "0.00", "250.00", "0.00"),
        ("camp-webinar", "0.00", "333.33", "100.00"),
    ]

    recon = api.csv("/v1/reports/reconciliation", **JAN)
    assert [
        (
            r["model"],
            r["closed_won_revenue"],
            r["won_deals"],
            r["attributed"],
            r["unattributed"],
            r["unconverted_count"],
        )
        for r in recon
    ] == [
        ("first_touch", "1000.00", "1", "1000.00", "0.00", "1"),
        ("linear", "1000.00", "1", "1000.00", "0.00", "1"),
    ]

    deal = api.csv("/v1/deals/D1/attribution", model="linear")
    assert [(r["event_id"], r["roles"], r["credit"]) for r in deal] == [
        ("t1", "first", "333.34"),
        ("t2", "lead_creation,opportunity_creation", "333.33"),
        ("t3", "last", "333.33"),
    ]
    assert deal[0]["occurred_at"] == "2024-01-05T10:00:00Z"
    assert api.csv("/v1/deals/D5/attribution") == []


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.1, text/csv", "text/csv"),
        ("text/*", "text/csv"),
    ],
)
def test_content_negotiation(api: Api, accept: str | None, expected: str) -> None:
    response = api.get("/v1/reports/reconciliation", accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(expected)


def test_errors(api: Api) -> None:
    for path in (
        "/v1/reports/roi",
        "/v1/reports/compare",
        "/v1/reports/reconciliation",
        "/v1/deals/D1/attribution",
        "/v1/models",
    ):
        anonymous = api.client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert api.client.get(path, headers={"Authorization": "Bearer cl_wrong"}).status_code == 401
        forbidden = api.client.get(path, headers=api.ingest_only)
        assert forbidden.status_code == 403
        assert forbidden.json()["title"] == "Forbidden"

    def problem(path: str, status: int, **params: Any) -> dict[str, Any]:
        response = api.get(path, **params)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body: dict[str, Any] = response.json()
        assert body["status"] == status
        return body

    for bad in ("2024-13-01", "yesterday", "2024/01/01", "20240101", "2024-02-30"):
        body = problem("/v1/reports/roi", 422, **{"from": bad})
        assert body["errors"][0]["field"] == "query.from"
    assert problem("/v1/reports/reconciliation", 422, to="soon")["errors"][0]["field"] == "query.to"
    for period in (
        {"from": "2024-02-01", "to": "2024-02-01"},
        {"from": "2024-03-01", "to": "2024-02-01"},
    ):
        assert problem("/v1/reports/compare", 422, **period)["errors"][0]["field"] == "query.to"
    assert problem("/v1/reports/roi", 422, model="nope")["errors"][0]["field"] == "query.model"
    assert "nope" in problem("/v1/deals/D1/attribution", 422, model="nope")["detail"]
    unknown = problem("/v1/reports/compare", 422, models="linear,nope,nul\x00")
    assert unknown["errors"][0]["field"] == "query.models"
    assert problem("/v1/reports/roi", 422, group_by="region")["errors"][0]["field"] == (
        "query.group_by"
    )
    for path in (
        "/v1/reports/roi",
        "/v1/reports/compare",
        "/v1/reports/reconciliation",
        "/v1/deals/D1/attribution",
    ):
        problem(path, 406, accept="application/xml")
        problem(path, 406, accept="text/csv;q=0, application/json;q=0")


def test_models_health_and_metrics(api: Api) -> None:
    assert api.json("/v1/models") == {
        "models": [
            {
                "id": "first_touch",
                "kind": "positional",
                "params": {"first": "1"},
                "description": "first_touch model",
                "builtin": True,
            },
            {
                "id": "linear",
                "kind": "positional",
                "params": {"middle": "1"},
                "description": "linear model",
                "builtin": True,
            },
        ]
    }
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'http_requests_total{route="/v1/models",service="api",status="200"}' in metrics.text


def test_each_request_reads_one_snapshot_and_never_writes(api: Api) -> None:
    """A report's statements agree even if the worker commits between them."""
    sessions = api.client.app.state.sessions  # type: ignore[attr-defined]
    writer = make_engine(api.url)
    with sessions() as reader:
        count = select(func.count()).select_from(DealRow)
        before = reader.scalar(count)
        with make_sessionmaker(writer)() as session:
            add_deal(session, "D7", closed="2024-03-01T00:00:00", amount_minor=1, reporting_minor=1)
            session.commit()
        assert reader.scalar(count) == before
    with sessions() as reader:
        assert reader.scalar(count) == before + 1
        add_campaign(reader, "camp-new", "New", "email")
        with pytest.raises(Exception, match=r"(?i)read.only|readonly"):
            reader.flush()
    writer.dispose()


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:{port}/none", "sqlite:////nonexistent-dir/closedloop.db"],
)
def test_unreachable_database_answers_503(url: str) -> None:
    from tests.support.infra import free_port

    settings = Settings(_env_file=None, database_url=url.format(port=free_port()))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/readyz", "/v1/reports/roi"):
            response = client.get(path, headers={"Authorization": "Bearer cl_" + "x" * 43})
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "5"
