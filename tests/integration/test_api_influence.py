"""The influence report over HTTP, on PostgreSQL and SQLite, from events the worker projects.

The projection is built by the worker's own code (``apply_events``) from the story below; the
expected numbers come from ``tests.support.reference`` (journeys per contract §2, conversions
per §5) and the plain sourcing rule written out in ``expected`` (the lead-creation touch is
the first with ``lead_created``, else the first), never from the code under test. A few of
them are also spelled out by hand, so the story keeps covering what it is meant to.

Story (T0 = 2026-03-01T12:00Z, range March 2026; reporting currency USD):
- c-web (webinar), c-mail (email), c-sdr (outbound_sales, sales-sourced); c-ghost is touched
  but never upserted (marketing-sourced by default, no name).
- D1 (A) $1000.00 won day 10: c-mail, c-web (lead), c-mail → sourced by c-web.
- D2 (B) EUR 500.00 at 1.10 = $550.00 won day 12: c-sdr, c-web, c-mail → sourced by c-sdr.
- D3 (C) $200.00 won day 15, no touch → unsourced.
- D4 (D) $300.00 won day 40 (April): outside the range.
- D5 (E) GBP 70.00 won day 9, no GBP rate: unconverted, left out.
- D6 (F) $80.00 won day 8: c-ghost → marketing-sourced.
- D7 (G) lost day 11, touched by c-sdr: not won, not counted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings
from tests.support import reference
from tests.support.builders import campaign, deal_created, deal_status, events, fx, touch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 9, 1, tzinfo=UTC)
MARCH = {"from": "2026-03-01", "to": "2026-04-01"}


def story() -> list[dict[str, Any]]:
    return [
        campaign("c-web", "webinar"),
        campaign("c-mail", "email"),
        campaign("c-sdr", "outbound_sales", sales=True),
        fx("2026-03-01", "EUR", "USD", "1.10"),
        deal_created("D1", "A", "1000.00", 0),
        touch("t1", "c-mail", -5, account="A"),
        touch("t2", "c-web", 1, account="A", lead=True),
        touch("t3", "c-mail", 3, account="A"),
        deal_status("D1", "closed_won", 10),
        deal_created("D2", "B", "500.00", 0, currency="EUR"),
        touch("t4", "c-sdr", 2, account="B"),
        touch("t5", "c-web", 4, account="B"),
        touch("t6", "c-mail", 5, account="B"),
        deal_status("D2", "closed_won", 12),
        deal_created("D3", "C", "200.00", 0),
        deal_status("D3", "closed_won", 15),
        deal_created("D4", "D", "300.00", 30),
        touch("t7", "c-web", 31, account="D", lead=True),
        deal_status("D4", "closed_won", 40),
        deal_created("D5", "E", "70.00", 0, currency="GBP"),
        touch("t8", "c-mail", 1, account="E"),
        deal_status("D5", "closed_won", 9),
        deal_created("D6", "F", "80.00", 0),
        touch("t9", "c-ghost", 6, account="F"),
        deal_status("D6", "closed_won", 8),
        deal_created("D7", "G", "90.00", 0),
        touch("t10", "c-sdr", 3, account="G"),
        deal_status("D7", "closed_lost", 11),
    ]


def money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def expected(raw: list[dict[str, Any]], start: datetime | None, end: datetime | None) -> Any:
    """The report worked out plainly from the reference's journeys and conversions."""
    ref = reference.compute(raw)
    by_id = {e["event_id"]: e for e in raw if e["type"] == "touch"}
    sales = {cid for cid, c in ref.campaigns.items() if c["is_sales_sourced"]}
    rows: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(
        ["won", "won_n", "sales", "sales_n", "marketing", "marketing_n", "none", "none_n"], 0
    )
    unconverted = 0
    for deal in ref.deals.values():
        if deal.status != "won" or deal.closed_at is None:
            continue
        if (start and deal.closed_at < start) or (end and deal.closed_at >= end):
            continue
        if deal.reporting_minor is None:
            unconverted += 1
            continue
        amount = deal.reporting_minor
        totals["won"] += amount
        totals["won_n"] += 1
        if not deal.journey:
            totals["none"] += amount
            totals["none_n"] += 1
            continue
        leads = [t for t in deal.journey if by_id[t]["lead_created"]]
        source = by_id[(leads or deal.journey)[0]]["campaign_id"]
        side = "sales" if source in sales else "marketing"
        totals[side] += amount
        totals[side + "_n"] += 1
        for cid in {by_id[t]["campaign_id"] for t in deal.journey}:
            row = rows.setdefault(cid, dict.fromkeys(["s", "s_n", "i", "i_n"], 0))
            row["i"] += amount
            row["i_n"] += 1
            if cid == source:
                row["s"] += amount
                row["s_n"] += 1
    out_rows = {
        cid: {
            "campaign_name": ref.campaigns.get(cid, {}).get("name"),
            "channel": ref.campaigns.get(cid, {}).get("channel"),
            "is_sales_sourced": cid in sales,
            "sourced_revenue": money(r["s"]),
            "sourced_deals": r["s_n"],
            "influenced_revenue": money(r["i"]),
            "influenced_deals": r["i_n"],
        }
        for cid, r in rows.items()
    }
    out_totals = {
        "won_revenue": money(totals["won"]),
        "won_deals": totals["won_n"],
        "sales_sourced_revenue": money(totals["sales"]),
        "sales_sourced_deals": totals["sales_n"],
        "marketing_sourced_revenue": money(totals["marketing"]),
        "marketing_sourced_deals": totals["marketing_n"],
        "unsourced_revenue": money(totals["none"]),
        "unsourced_deals": totals["none_n"],
        "unconverted_deals": unconverted,
    }
    return out_rows, out_totals


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]

    def get(self, params: dict[str, str], accept: str = "application/json") -> Any:
        headers = {**self.headers, "Accept": accept}
        return self.client.get("/v1/reports/influence", params=params, headers=headers)


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, events(*story()), settings=settings, now=NOW)
        key = create_key(session, name="read", scopes=["read"])
    with TestClient(create_app(settings)) as client:
        yield Api(client, {"Authorization": f"Bearer {key}"})
    sessions.kw["bind"].dispose()


def by_campaign(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["campaign_id"]: {k: v for k, v in r.items() if k != "campaign_id"} for r in body["rows"]
    }


def test_march_sourced_and_influenced_match_the_reference(api: Api) -> None:
    response = api.get(MARCH)
    assert response.status_code == 200, response.text
    body = response.json()
    rows, totals = expected(
        story(), datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    )
    assert (body["currency"], body["from"], body["to"]) == ("USD", "2026-03-01", "2026-04-01")
    assert by_campaign(body) == rows
    assert body["totals"] == totals
    # The story's intent, by hand: c-web sources D1 and influences D1 and D2 (D4 is April);
    # c-mail only influences (D1, D2; D5 is unconverted); c-sdr is sales, D2 at 550.00.
    assert rows["c-web"]["sourced_revenue"] == "1000.00"
    assert rows["c-web"]["influenced_revenue"] == "1550.00"
    assert (rows["c-mail"]["sourced_deals"], rows["c-mail"]["influenced_deals"]) == (0, 2)
    assert (rows["c-sdr"]["sourced_revenue"], rows["c-sdr"]["is_sales_sourced"]) == ("550.00", True)
    assert rows["c-ghost"]["campaign_name"] is None
    assert (totals["won_revenue"], totals["unsourced_revenue"]) == ("1830.00", "200.00")
    assert totals["unconverted_deals"] == 1
    # Best sourced first, then influenced, then id.
    assert [r["campaign_id"] for r in body["rows"]] == ["c-web", "c-sdr", "c-ghost", "c-mail"]


def test_unbounded_range_counts_every_won_deal_and_the_sources_add_up(api: Api) -> None:
    body = api.get({}).json()
    rows, totals = expected(story(), None, None)
    assert by_campaign(body) == rows
    assert body["totals"] == totals
    assert (body["from"], body["to"]) == (None, None)
    assert totals["won_revenue"] == "2130.00"  # D4 (April) now counts
    cents = [
        int(body["totals"][k].replace(".", ""))
        for k in ("sales_sourced_revenue", "marketing_sourced_revenue", "unsourced_revenue")
    ]
    assert sum(cents) == int(body["totals"]["won_revenue"].replace(".", ""))


def test_a_range_with_no_won_deal_is_empty(api: Api) -> None:
    body = api.get({"from": "2026-05-01", "to": "2026-06-01"}).json()
    assert body["rows"] == []
    assert body["totals"]["won_revenue"] == "0.00"
    assert body["totals"]["won_deals"] == 0


def test_csv_is_the_json_rows(api: Api) -> None:
    response = api.get(MARCH, accept="text/csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="influence.csv"' in response.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    json_rows = api.get(MARCH).json()["rows"]
    flat = [
        {
            k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in r.items()
        }
        for r in json_rows
    ]
    assert parsed == flat
    assert list(parsed[0]) == [
        "campaign_id",
        "campaign_name",
        "channel",
        "is_sales_sourced",
        "sourced_revenue",
        "sourced_deals",
        "influenced_revenue",
        "influenced_deals",
    ]


def test_refusals_name_the_problem(api: Api) -> None:
    assert api.get(MARCH, accept="application/xml").status_code == 406
    bad = api.get({"from": "2026-04-01", "to": "2026-03-01"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.to"
    assert api.client.get("/v1/reports/influence").status_code == 401
