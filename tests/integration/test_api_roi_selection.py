"""ROI and compare: filters, sort, pages and cost proration, on PostgreSQL and SQLite.

The projection is built by the worker's own code (``apply_events``) from the events below;
every expected number comes from ``expected_rows``, a plain computation of contract §2, §3
and §5 over the same data written in this file (never from the code under test):
- first_touch credits a deal's whole amount (and 1 deal) to its first touch's campaign,
  last_touch to its last; the other touches' campaigns get a zero credit row;
- a cost is spread over the days of its period, earlier days taking the remainder cents (the
  worker's documented choice where the contract says only "evenly"); a report over
  [from, to) counts the days inside.

Data (T0 = 2026-03-01T12:00Z, each deal's own account; the report range is 03-05..03-25):
- campaigns: c-search (paid_search), c-social (paid_social), c-mail (email), c-free (email),
  marketing-sourced; c-sdr (outbound), c-event (events), sales-sourced; c-ghost has touches
  but no campaign.upserted.
- D1 $1200.00 won 03-07: c-search, c-sdr. D2 $900.00 won 03-09: c-social, c-search.
  D3 $450.00 won 03-11: c-event. D4 $300.00 won 03-13: c-free, c-ghost.
  D7 $600.00 won 03-10: c-sdr. D6 $75.00 won 03-15, no touch (unattributed).
  D5 $2000.00 won 03-31: c-search (outside the range).
- costs: search $1000.00 over 03-01..03-10 (straddles from: 6 days in, $600.00); social
  $100.00 over 03-23..03-25 (straddles to: 33.34 + 33.33 in); sdr $50.00 on 03-05 (one day,
  on from: in); event $80.00 on 03-25 (one day, on to: out), $40.00 on 03-24 (in) and
  $30.00 on 03-04 (out); mail $200.00 over 03-10..03-13 (inside); search $500.00 over
  04-01..04-05 (outside).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings
from tests.support.builders import campaign, cost, deal_created, deal_status, events, touch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 9, 1, tzinfo=UTC)
RANGE = {"from": "2026-03-05", "to": "2026-03-25"}

# campaign id -> (channel, sales-sourced); c-ghost has no campaign.upserted
CAMPAIGNS = {
    "c-search": ("paid_search", False),
    "c-social": ("paid_social", False),
    "c-mail": ("email", False),
    "c-free": ("email", False),
    "c-sdr": ("outbound", True),
    "c-event": ("events", True),
}
# deal id -> (amount in cents, close day after T0, [(touch day after T0, campaign)])
DEALS: dict[str, tuple[int, float, list[tuple[float, str]]]] = {
    "D1": (120000, 6, [(1, "c-search"), (3, "c-sdr")]),
    "D2": (90000, 8, [(2, "c-social"), (4, "c-search")]),
    "D3": (45000, 10, [(5, "c-event")]),
    "D4": (30000, 12, [(6, "c-free"), (7, "c-ghost")]),
    "D7": (60000, 9, [(2, "c-sdr")]),
    "D6": (7500, 14, []),
    "D5": (200000, 30, [(20, "c-search")]),
}
# (event id, campaign, cents, first day, last day)
COSTS = [
    ("k-search", "c-search", 100000, date(2026, 3, 1), date(2026, 3, 10)),
    ("k-social", "c-social", 10000, date(2026, 3, 23), date(2026, 3, 25)),
    ("k-sdr", "c-sdr", 5000, date(2026, 3, 5), date(2026, 3, 5)),
    ("k-event-to", "c-event", 8000, date(2026, 3, 25), date(2026, 3, 25)),
    ("k-event-in", "c-event", 4000, date(2026, 3, 24), date(2026, 3, 24)),
    ("k-event-before", "c-event", 3000, date(2026, 3, 4), date(2026, 3, 4)),
    ("k-mail", "c-mail", 20000, date(2026, 3, 10), date(2026, 3, 13)),
    ("k-search-apr", "c-search", 50000, date(2026, 4, 1), date(2026, 4, 5)),
]
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def history() -> list[Any]:
    out = [campaign(cid, ch, sales=sales) for cid, (ch, sales) in CAMPAIGNS.items()]
    for did, (cents, closed, journey) in DEALS.items():
        account = f"acct-{did}"
        out.append(deal_created(did, account, money(cents), 0))
        out += [
            touch(f"t-{did}-{n}", cid, day, account=account) for n, (day, cid) in enumerate(journey)
        ]
        out.append(deal_status(did, "closed_won", closed))
    out += [cost(eid, cid, money(c), a.isoformat(), b.isoformat()) for eid, cid, c, a, b in COSTS]
    return events(*out)


# --- the independent computation ------------------------------------------------------------


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def cost_in(cents: int, first: date, last: date, start: date, end: date) -> int:
    """The cents of a cost spread over first..last that fall on days in [start, end)."""
    days = (last - first).days + 1
    total = 0
    for i in range(days):
        day = first + timedelta(days=i)
        if start <= day < end:
            total += cents // days + (1 if i < cents % days else 0)
    return total


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else float(round(Fraction(num, den), 4))


def expected_rows(model: str, start: date, end: date) -> list[dict[str, Any]]:
    """Every campaign row of the ROI report (unsorted), per contract §2, §3, §5."""
    revenue: dict[str, int] = {}
    deals: dict[str, int] = {}
    lo, hi = (datetime.combine(d, datetime.min.time(), UTC) for d in (start, end))
    for cents, closed, journey in DEALS.values():
        if not lo <= T0 + timedelta(days=closed) < hi or not journey:
            continue
        credited = journey[0][1] if model == "first_touch" else journey[-1][1]
        for _, cid in journey:
            revenue.setdefault(cid, 0)
            deals.setdefault(cid, 0)
        revenue[credited] += cents
        deals[credited] += 1
    spent: dict[str, int] = {}
    for _, cid, cents, first, last in COSTS:
        if (c := cost_in(cents, first, last, start, end)) or any(
            start <= first + timedelta(days=i) < end for i in range((last - first).days + 1)
        ):
            spent[cid] = spent.get(cid, 0) + c
    rows = []
    for cid in set(revenue) | set(spent):
        rev, spend = revenue.get(cid, 0), spent.get(cid, 0)
        channel, _ = CAMPAIGNS.get(cid, (None, None))
        rows.append(
            {
                "campaign_id": cid,
                "campaign_name": f"Campaign {cid}" if cid in CAMPAIGNS else None,
                "channel": channel,
                "revenue": money(rev),
                "deals": float(deals.get(cid, 0)),
                "cost": money(spend),
                "roi": ratio(rev - spend, spend),
                "roas": ratio(rev, spend),
                "_rev": rev,
                "_cost": spend,
            }
        )
    return rows


def keep(row: dict[str, Any], channels: set[str], ids: set[str], sourced: str | None) -> bool:
    known = CAMPAIGNS.get(row["campaign_id"])
    if channels and (known is None or known[0] not in channels):
        return False
    if ids and row["campaign_id"] not in ids:
        return False
    return sourced is None or (known is not None and known[1] == (sourced == "sales"))


def ordered(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """Sort rows: key (nulls last either way), then campaign id ascending."""
    desc = sort.startswith("-")
    field = sort.lstrip("-")

    def value(row: dict[str, Any]) -> Any:
        if field in ("revenue", "cost"):
            return row[f"_{'rev' if field == 'revenue' else 'cost'}"]
        if field in ("roi", "roas"):  # exact ratios, not the rounded ones shown
            return None if row["_cost"] == 0 else Fraction(row["_rev"], row["_cost"])
        return row[field]

    present = [r for r in rows if value(r) is not None]
    absent = sorted((r for r in rows if value(r) is None), key=lambda r: r["campaign_id"])
    present.sort(key=lambda r: r["campaign_id"])
    present.sort(key=value, reverse=desc)  # stable: ties stay by campaign id
    return present + absent


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


START, END = date(2026, 3, 5), date(2026, 3, 25)


# --- the API --------------------------------------------------------------------------------


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]

    def get(self, path: str, accept: str | None = None, **params: Any) -> Any:
        headers = {**self.headers, **({"Accept": accept} if accept else {})}
        return self.client.get(path, params=params, headers=headers)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def problem(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(path, **params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, history(), settings=settings, now=NOW)
        key = create_key(session, name="reader", scopes=["read"])
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield Api(client, {"Authorization": f"Bearer {key}"})


def test_cost_proration_at_the_range_edges(api: Api) -> None:
    costs = {r["campaign_id"]: r["cost"] for r in api.json("/v1/reports/roi", **RANGE)["rows"]}
    # search 03-05..03-10 of 03-01..03-10 at $100.00/day; social 03-23 (33.34) + 03-24
    # (33.33); sdr's one day is `from`; event's 03-24 counts, its 03-25 (`to`) and 03-04 not.
    assert costs == {
        "c-search": "600.00",
        "c-social": "66.67",
        "c-sdr": "50.00",
        "c-event": "40.00",
        "c-mail": "200.00",
        "c-free": "0.00",
        "c-ghost": "0.00",
    }
    assert costs == {r["campaign_id"]: r["cost"] for r in expected_rows("linear", START, END)}
    # A one-day range: the one-day cost on it, and one day of social's three (the last: 33.33).
    day = api.json("/v1/reports/roi", **{"from": "2026-03-25", "to": "2026-03-26"})
    assert {r["campaign_id"]: r["cost"] for r in day["rows"]} == {
        "c-event": "80.00",
        "c-social": "33.33",
    }
    assert day["totals"]["cost"] == "113.33"
    # Only the straddling search cost's day before `from`: 03-04 alone.
    before = api.json("/v1/reports/roi", **{"from": "2026-03-04", "to": "2026-03-05"})
    assert {r["campaign_id"]: r["cost"] for r in before["rows"]} == {
        "c-search": "100.00",
        "c-event": "30.00",
    }


@pytest.mark.parametrize("model", ["first_touch", "last_touch"])
def test_roi_rows_match_the_independent_computation(api: Api, model: str) -> None:
    body = api.json("/v1/reports/roi", model=model, **RANGE)
    assert body["rows"] == [
        public(r) for r in ordered(expected_rows(model, START, END), "-revenue")
    ]
    assert body["totals"]["revenue"] == "3450.00"  # D1 + D2 + D3 + D4 + D7
    assert body["totals"]["cost"] == "956.67"  # 600 + 66.67 + 50 + 40 + 200
    assert body["totals"]["unattributed_revenue"] == "75.00"  # D6
    assert (body["total_rows"], body["next_offset"], body["sort"]) == (7, None, "-revenue")


FILTERS = [
    {"channel": "paid_search,paid_social", "sourced": "marketing"},
    {"campaign_id": "c-sdr,c-event,c-search,c-ghost", "sourced": "sales"},
    {"channel": "email,outbound", "campaign_id": "c-mail, c-sdr,,c-free,c-search"},
    {"sourced": "marketing"},
    {"campaign_id": "c-ghost,c-social"},
    {"channel": "email", "sourced": "sales"},  # no row
]


@pytest.mark.parametrize("filters", FILTERS)
def test_filters_combined(api: Api, filters: dict[str, str]) -> None:
    channels = set(filters.get("channel", "").replace(" ", "").split(",")) - {""}
    ids = set(filters.get("campaign_id", "").replace(" ", "").split(",")) - {""}
    rows = [
        r
        for r in expected_rows("first_touch", START, END)
        if keep(r, channels, ids, filters.get("sourced"))
    ]
    body = api.json("/v1/reports/roi", model="first_touch", **RANGE, **filters)
    assert body["rows"] == [public(r) for r in ordered(rows, "-revenue")]
    assert body["total_rows"] == len(rows)
    assert body["totals"]["revenue"] == money(sum(r["_rev"] for r in rows))
    assert body["totals"]["cost"] == money(sum(r["_cost"] for r in rows))
    assert body["totals"]["unattributed_revenue"] == "75.00"  # belongs to no campaign


def test_filters_by_channel(api: Api) -> None:
    body = api.json(
        "/v1/reports/roi", model="last_touch", group_by="channel", sourced="marketing", **RANGE
    )
    # last_touch, marketing campaigns: search has D2 (900.00), free nothing (D4 -> ghost).
    # paid_search 900.00 / 600.00; email: free 0 + mail 0 against 200.00; social 66.67.
    assert body["rows"] == [
        {
            "channel": "paid_search",
            "revenue": "900.00",
            "deals": 1.0,
            "cost": "600.00",
            "roi": 0.5,
            "roas": 1.5,
        },
        {
            "channel": "email",
            "revenue": "0.00",
            "deals": 0.0,
            "cost": "200.00",
            "roi": -1.0,
            "roas": 0.0,
        },
        {
            "channel": "paid_social",
            "revenue": "0.00",
            "deals": 0.0,
            "cost": "66.67",
            "roi": -1.0,
            "roas": 0.0,
        },
    ]
    by_cost = api.json(
        "/v1/reports/roi", group_by="channel", sort="cost", sourced="marketing", **RANGE
    )
    assert [r["channel"] for r in by_cost["rows"]] == ["paid_social", "email", "paid_search"]


SORTS = ["revenue", "cost", "roi", "roas", "campaign_name", "campaign_id", "channel", "deals"]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("field", SORTS)
def test_sort_both_ways_nulls_last(api: Api, field: str, descending: bool) -> None:
    sort = f"-{field}" if descending else field
    body = api.json("/v1/reports/roi", model="first_touch", sort=sort, **RANGE)
    want = ordered(expected_rows("first_touch", START, END), sort)
    assert [r["campaign_id"] for r in body["rows"]] == [r["campaign_id"] for r in want]
    assert body["sort"] == sort


def test_sort_examples_by_hand(api: Api) -> None:
    # first_touch ROAS: search 1200/600 = 2, social 900/66.67 = 13.4993, sdr 600/50 = 12,
    # event 450/40 = 11.25, mail 0/200 = 0; free and ghost have no cost: null, last, by id.
    up = api.json("/v1/reports/roi", model="first_touch", sort="roi", **RANGE)["rows"]
    assert [(r["campaign_id"], r["roi"]) for r in up] == [
        ("c-mail", -1.0),
        ("c-search", 1.0),
        ("c-event", 10.25),
        ("c-sdr", 11.0),
        ("c-social", 12.4993),
        ("c-free", None),
        ("c-ghost", None),
    ]
    down = api.json("/v1/reports/roi", model="first_touch", sort="-roas", **RANGE)["rows"]
    assert [r["campaign_id"] for r in down] == [
        "c-social",
        "c-sdr",
        "c-event",
        "c-search",
        "c-mail",
        "c-free",
        "c-ghost",
    ]
    # Revenue ties at 0.00 (mail, ghost) keep campaign id order in both directions.
    for sort in ("revenue", "-revenue"):
        rows = api.json("/v1/reports/roi", model="first_touch", sort=sort, **RANGE)["rows"]
        zeros = [r["campaign_id"] for r in rows if r["revenue"] == "0.00"]
        assert zeros == ["c-ghost", "c-mail"]


@pytest.mark.parametrize("sort", ["-revenue", "roi", "-campaign_name", "channel"])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_pages_concatenate_to_the_whole(api: Api, sort: str, limit: int) -> None:
    params = {"model": "first_touch", "sort": sort, **RANGE}
    whole = api.json("/v1/reports/roi", **params)
    rows: list[dict[str, Any]] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        response = api.get("/v1/reports/roi", **params, limit=limit, offset=offset)
        page = response.json()
        assert (page["total_rows"], page["totals"]) == (7, whole["totals"])
        assert (page["offset"], page["limit"]) == (offset, limit)
        assert len(page["rows"]) == min(limit, 7 - offset)
        rows += page["rows"]
        following = page["next_offset"]
        assert following == (offset + limit if offset + limit < 7 else None)
        link = response.headers.get("link")
        assert (link is None) == (following is None)
        if link:
            assert f"offset={following}" in link and f"limit={limit}" in link
        offset, pages = following, pages + 1
    assert rows == whole["rows"]
    assert pages == -(-7 // limit)
    past = api.json("/v1/reports/roi", **params, limit=limit, offset=9)
    assert (past["rows"], past["total_rows"], past["totals"]) == ([], 7, whole["totals"])


def test_following_the_link(api: Api) -> None:
    response = api.get("/v1/reports/roi", model="first_touch", limit=3, sourced="marketing")
    seen = response.json()["rows"]
    while "link" in response.headers:
        url = response.headers["link"].split(">")[0].lstrip("<")
        response = api.client.get(url, headers=api.headers)
        seen += response.json()["rows"]
    whole = api.json("/v1/reports/roi", model="first_touch", sourced="marketing")["rows"]
    assert seen == whole and len(whole) == 4  # search, social, mail, free


def test_compare_filters_sort_and_pages(api: Api) -> None:
    params = {"models": "first_touch,last_touch", "sort": "-revenue:last_touch", **RANGE}
    first = expected_rows("first_touch", START, END)
    last = {r["campaign_id"]: r for r in expected_rows("last_touch", START, END)}
    rows = [r for r in first if keep(r, set(), set(), "marketing")]
    by_last = [{**r, "_rev": last[r["campaign_id"]]["_rev"]} for r in rows]
    want = [
        {
            "campaign_id": r["campaign_id"],
            "campaign_name": r["campaign_name"],
            "channel": r["channel"],
            "revenue": {
                "first_touch": r["revenue"],
                "last_touch": last[r["campaign_id"]]["revenue"],
            },
            "cost": r["cost"],
        }
        for r in ordered(by_last, "-revenue")
    ]
    page1 = api.json("/v1/reports/compare", **params, sourced="marketing", limit=2)
    page2 = api.json("/v1/reports/compare", **params, sourced="marketing", limit=2, offset=2)
    assert page1["rows"] + page2["rows"] == want
    # last_touch: search D2 900.00; first_touch: search D1 1200.00, social D2, free D4.
    assert [r["campaign_id"] for r in want] == ["c-search", "c-free", "c-mail", "c-social"]
    assert page1["totals"] == page2["totals"]
    assert page1["totals"]["revenue"] == {"first_touch": "2400.00", "last_touch": "900.00"}
    assert page1["totals"]["cost"] == "866.67"
    assert (page1["next_offset"], page2["next_offset"], page2["total_rows"]) == (2, None, 4)
    assert page1["sort"] == "-revenue:last_touch"


def test_csv_of_a_filtered_sorted_page(api: Api) -> None:
    response = api.get(
        "/v1/reports/roi",
        accept="text/csv",
        model="first_touch",
        sourced="sales",
        channel="outbound,events,paid_search",
        sort="-roas",
        limit=1,
        offset=1,
        **RANGE,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    # sales: sdr (12.0) then event (11.25): the second page of one row is event; no more.
    assert list(csv.DictReader(io.StringIO(response.text))) == [
        {
            "campaign_id": "c-event",
            "campaign_name": "Campaign c-event",
            "channel": "events",
            "revenue": "450.00",
            "deals": "1.0",
            "cost": "40.00",
            "roi": "10.25",
            "roas": "11.25",
        }
    ]
    assert "link" not in response.headers
    first = api.get(
        "/v1/reports/compare", accept="text/csv", sourced="sales", sort="campaign_id", limit=1
    )
    assert first.text.splitlines()[1].startswith("c-event,")
    assert "offset=1" in first.headers["link"]


def test_parameters_are_part_of_the_cache_key(api: Api) -> None:
    # The same projection version, asked differently: each answer is its own.
    ids = ["c-event", "c-free", "c-ghost", "c-mail", "c-sdr", "c-search", "c-social"]
    for _ in range(2):
        up = api.json("/v1/reports/roi", sort="campaign_id", **RANGE)["rows"]
        down = api.json("/v1/reports/roi", sort="-campaign_id", **RANGE)["rows"]
        assert [r["campaign_id"] for r in up] == ids
        assert [r["campaign_id"] for r in down] == ids[::-1]
        assert len(api.json("/v1/reports/roi", limit=2, **RANGE)["rows"]) == 2
        assert api.json("/v1/reports/roi", limit=2, offset=6, **RANGE)["rows"][0]["cost"]
        assert api.json("/v1/reports/roi", sourced="sales", **RANGE)["total_rows"] == 2
        assert api.json("/v1/reports/roi", channel="email", **RANGE)["total_rows"] == 2
        assert api.json("/v1/reports/roi", campaign_id="c-mail", **RANGE)["total_rows"] == 1


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/reports/roi", {"sort": "name"}, "query.sort"),
        ("/v1/reports/roi", {"sort": "--revenue"}, "query.sort"),
        ("/v1/reports/roi", {"sort": "revenue:linear"}, "query.sort"),
        ("/v1/reports/roi", {"sort": "campaign_id", "group_by": "channel"}, "query.sort"),
        ("/v1/reports/compare", {"sort": "roi"}, "query.sort"),
        ("/v1/reports/compare", {"sort": "revenue:nope"}, "query.sort"),
        ("/v1/reports/compare", {"models": "linear", "sort": "revenue:first_touch"}, "query.sort"),
        ("/v1/reports/roi", {"limit": "0"}, "query.limit"),
        ("/v1/reports/roi", {"limit": "1001"}, "query.limit"),
        ("/v1/reports/compare", {"limit": "ten"}, "query.limit"),
        ("/v1/reports/roi", {"offset": "-1"}, "query.offset"),
        ("/v1/reports/roi", {"sourced": "partner"}, "query.sourced"),
        ("/v1/reports/compare", {"channel": "email,e\x00"}, "query.channel"),
        ("/v1/reports/roi", {"campaign_id": ",".join(map(str, range(501)))}, "query.campaign_id"),
    ],
)
def test_invalid_parameters(api: Api, path: str, params: dict[str, str], field: str) -> None:
    body = api.problem(path, **params)
    assert [e["field"] for e in body["errors"]] == [field]
    csv_too = api.get(path, accept="text/csv", **params)
    assert csv_too.status_code == 422
