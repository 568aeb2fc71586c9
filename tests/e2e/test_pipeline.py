"""End to end: the real services as processes, a simulated CRM stream over HTTP in shuffled
order with duplicates, and every report checked to the cent against an independent reference
computation (tests/support/reference.py, which shares no code with the service).
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.core.broker import free_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import EventRow
from services.simulate import generate, post_events, shuffle_with_duplicates
from tests.support import reference
from tests.support.infra import postgres_database
from tests.support.processes import ROOT, service_env, services

pytestmark = pytest.mark.e2e

# The history ends today, so the lead score's window (now − lookback) always holds it.
START = datetime.combine(date.today(), datetime.min.time(), tzinfo=UTC) - timedelta(days=120)
DAYS = 120


def cents(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Worker, ingest and API as processes on PostgreSQL and the bundled broker, fed a stream."""
    logs = tmp_path_factory.mktemp("logs")
    with postgres_database("closedloop_e2e") as db:
        ingest_port, api_port = free_port(), free_port()
        tag = str(ingest_port)
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
            "CLOSEDLOOP_EVENTS_TOPIC": f"e2e-events-{tag}",
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"e2e-dead-{tag}",
            "CLOSEDLOOP_CONSUMER_GROUP": f"e2e-{tag}",
            "CLOSEDLOOP_INGEST_PORT": str(ingest_port),
            "CLOSEDLOOP_API_PORT": str(api_port),
        }
        subprocess.run(
            [sys.executable, "-m", "services", "migrate"],
            env=service_env(env),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        key = subprocess.run(
            [
                sys.executable,
                "-m",
                "services",
                "keys",
                "create",
                "--name",
                "e2e",
                "--scopes",
                "ingest,read,admin",
            ],
            env=service_env(env),
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        events = generate(seed=11, deals=150, start=START, days=DAYS) + edge_cases()
        arrivals = shuffle_with_duplicates(events, seed=11, duplicate_rate=0.1)
        with services(env, logs, ingest_port=ingest_port, api_port=api_port):
            accepted = post_events(
                arrivals,
                url=f"http://127.0.0.1:{ingest_port}",
                api_key=key,
                batch_size=250,
                progress=False,
            )
            assert accepted == len(arrivals)
            distinct = len({e["event_id"] for e in events})
            engine = make_engine(db)
            deadline = time.monotonic() + 120
            stored = 0
            while time.monotonic() < deadline:
                with make_sessionmaker(engine)() as session:
                    stored = session.scalar(select(func.count()).select_from(EventRow)) or 0
                if stored == distinct:
                    break
                time.sleep(0.3)
            engine.dispose()
            assert stored == distinct, f"worker stored {stored} of {distinct} events"
            with httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}",
                timeout=30,
                headers={"Authorization": f"Bearer {key}"},
            ) as client:
                yield {"client": client, "ref": reference.compute(events), "events": events}


def edge_cases() -> list[dict[str, Any]]:
    """Deals the simulation rarely makes: no fx rate (unconverted) and no touches (unattributed)."""
    at = (START + timedelta(days=60)).isoformat().replace("+00:00", "Z")
    return [
        {
            "event_id": "edge-jpy-created",
            "type": "deal.created",
            "occurred_at": at,
            "deal_id": "edge-jpy",
            "account_id": "edge-acct-1",
            "amount": "1500000",
            "currency": "JPY",
        },
        {
            "event_id": "edge-jpy-won",
            "type": "deal.closed_won",
            "occurred_at": at,
            "deal_id": "edge-jpy",
        },
        {
            "event_id": "edge-lonely-created",
            "type": "deal.created",
            "occurred_at": at,
            "deal_id": "edge-lonely",
            "account_id": "edge-acct-2",
            "amount": "999.99",
            "currency": "USD",
        },
        {
            "event_id": "edge-lonely-won",
            "type": "deal.closed_won",
            "occurred_at": at,
            "deal_id": "edge-lonely",
            "amount": "1000.01",
            "currency": "USD",
        },
    ]


def test_edge_cases_are_reported_not_dropped(stack: dict[str, Any]) -> None:
    ref: reference.Reference = stack["ref"]
    assert ref.deals["edge-jpy"].unconverted
    assert ref.deals["edge-lonely"].unattributed_minor == 100001
    body = stack["client"].get("/v1/reports/reconciliation").json()
    assert body["unconverted"]["amounts"].get("JPY") == "1500000"
    deal = stack["client"].get("/v1/deals/edge-lonely/attribution").json()
    assert deal["unattributed"] is True and deal["journey"] == []


def in_range(deal: reference.DealResult, start: date | None, end: date | None) -> bool:
    assert deal.closed_at is not None
    day = deal.closed_at.date()
    return (start is None or day >= start) and (end is None or day < end)


def expected_revenue(
    ref: reference.Reference, model: str, start: date | None = None, end: date | None = None
) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for deal in ref.deals.values():
        if deal.won and deal.reporting_minor is not None and in_range(deal, start, end):
            for campaign, credit in deal.credits.get(model, {}).items():
                out[campaign] += credit
    return dict(out)


def expected_cost(
    ref: reference.Reference, start: date | None = None, end: date | None = None
) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for (campaign, day), minor in ref.cost_days.items():
        if (start is None or day >= start) and (end is None or day < end):
            out[campaign] += minor
    return dict(out)


RANGES = [(None, None), ((START + timedelta(days=45)).date(), (START + timedelta(days=92)).date())]


@pytest.mark.parametrize("model", reference.MODELS)
@pytest.mark.parametrize(("start", "end"), RANGES)
def test_roi_matches_reference(
    stack: dict[str, Any], model: str, start: date | None, end: date | None
) -> None:
    ref: reference.Reference = stack["ref"]
    params = {"model": model, "group_by": "campaign"}
    if start:
        params |= {"from": start.isoformat(), "to": end.isoformat()}  # type: ignore[union-attr]
    body = stack["client"].get("/v1/reports/roi", params=params).json()
    revenue = expected_revenue(ref, model, start, end)
    cost = expected_cost(ref, start, end)
    assert revenue and cost, "nothing to compare in this range"
    got_revenue = {r["campaign_id"]: r["revenue"] for r in body["rows"]}
    got_cost = {r["campaign_id"]: r["cost"] for r in body["rows"]}
    for campaign in set(revenue) | set(cost) | set(got_revenue):
        assert got_revenue.get(campaign, "0.00") == cents(revenue.get(campaign, 0)), campaign
        assert got_cost.get(campaign, "0.00") == cents(cost.get(campaign, 0)), campaign
    # No row without revenue or cost in range, and none twice.
    assert len(body["rows"]) == len(got_revenue)
    assert set(got_revenue) == {
        c for c in set(revenue) | set(cost) if revenue.get(c, 0) or cost.get(c, 0) or c in revenue
    }
    assert body["totals"]["revenue"] == cents(sum(revenue.values()))
    assert body["totals"]["cost"] == cents(sum(cost.values()))
    unattributed = sum(
        d.unattributed_minor
        for d in ref.deals.values()
        if d.won and d.reporting_minor is not None and in_range(d, start, end)
    )
    assert body["totals"]["unattributed_revenue"] == cents(unattributed)


def test_roi_by_channel_and_csv(stack: dict[str, Any]) -> None:
    ref: reference.Reference = stack["ref"]
    client: httpx.Client = stack["client"]
    by_campaign = expected_revenue(ref, "w_shaped")
    assert by_campaign
    by_channel: dict[str, int] = defaultdict(int)
    for campaign, minor in by_campaign.items():
        by_channel[ref.campaigns[campaign]["channel"]] += minor
    body = client.get("/v1/reports/roi", params={"model": "w_shaped", "group_by": "channel"}).json()
    got = {r["channel"]: r["revenue"] for r in body["rows"]}
    assert {c: v for c, v in got.items() if v != "0.00"} == {
        c: cents(v) for c, v in by_channel.items() if v
    }
    response = client.get(
        "/v1/reports/roi", params={"model": "w_shaped"}, headers={"Accept": "text/csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["campaign_id"]: r["revenue"] for r in rows if r["revenue"] != "0.00"} == {
        c: cents(v) for c, v in by_campaign.items() if v
    }


def test_compare_has_every_model(stack: dict[str, Any]) -> None:
    ref: reference.Reference = stack["ref"]
    body = stack["client"].get("/v1/reports/compare").json()
    campaigns = {r["campaign_id"] for r in body["rows"]}
    assert len(campaigns) == len(body["rows"])
    for model in reference.MODELS:
        expected = expected_revenue(ref, model)
        assert expected, model
        got = {r["campaign_id"]: r["revenue"][model] for r in body["rows"]}
        for campaign in campaigns | set(expected):
            assert got.get(campaign) == cents(expected.get(campaign, 0)), (model, campaign)
        assert body["totals"]["revenue"][model] == cents(sum(expected.values()))


def test_reconciliation_to_the_cent(stack: dict[str, Any]) -> None:
    ref: reference.Reference = stack["ref"]
    body = stack["client"].get("/v1/reports/reconciliation").json()
    won = [d for d in ref.deals.values() if d.won and d.reporting_minor is not None]
    total = sum(d.reporting_minor or 0 for d in won)
    assert won and total > 0
    assert body["closed_won_revenue"] == cents(total)
    assert body["won_deals"] == len(won)
    unconverted = [d for d in ref.deals.values() if d.unconverted]
    assert body["unconverted"]["count"] == len(unconverted)
    for model in reference.MODELS:
        attributed = sum(sum(d.credits.get(model, {}).values()) for d in won)
        assert body["models"][model]["attributed"] == cents(attributed)
        assert body["models"][model]["unattributed"] == cents(total - attributed)


def test_every_won_deal_explained(stack: dict[str, Any]) -> None:
    ref: reference.Reference = stack["ref"]
    client: httpx.Client = stack["client"]
    won = sorted(d for d, r in ref.deals.items() if r.won and r.reporting_minor is not None)
    assert won, "the simulation produced no won deal"
    for deal_id in won[:40]:
        for model in ("linear", "full_path", "time_decay"):
            body = client.get(f"/v1/deals/{deal_id}/attribution", params={"model": model}).json()
            expected = ref.deals[deal_id]
            assert [t["event_id"] for t in body["journey"]] == expected.journey
            per_campaign: dict[str, int] = defaultdict(int)
            for touch in body["journey"]:
                per_campaign[touch["campaign_id"]] += round(float(touch["credit"]) * 100)
            assert {c: v for c, v in per_campaign.items()} == expected.credits.get(model, {})


def wait_for(fetch: Any, ready: Any, *, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        body = fetch()
        if ready(body):
            return body
        assert time.monotonic() < deadline, f"gave up waiting; last answer: {body}"
        time.sleep(0.5)


def test_fit_on_request_then_snapshot_everywhere(stack: dict[str, Any]) -> None:
    client: httpx.Client = stack["client"]
    requested = client.post("/v1/models/markov/fit")
    assert requested.status_code == 202, requested.text
    fit_id = requested.json()["fit_id"]
    model = wait_for(
        lambda: client.get("/v1/models/markov").json(),
        lambda body: (body.get("snapshot") or {}).get("fit_id") == fit_id,
    )
    snapshot = model["snapshot"]
    assert snapshot["inputs"]["won_deals"] > 0 and snapshot["inputs"]["lost_deals"] > 0
    assert snapshot["table"] and all(0 <= row["removal_effect"] <= 1 for row in snapshot["table"])
    # The credits follow the snapshot once the worker has recomputed the model: wait for them.
    ref: reference.Reference = stack["ref"]
    won = [d for d in ref.deals.values() if d.won and d.reporting_minor is not None]
    total = sum(d.reporting_minor or 0 for d in won)
    attributed = cents(total - sum(d.unattributed_minor for d in won))
    wait_for(
        lambda: client.get("/v1/reports/reconciliation").json(),
        lambda body: body["models"]["markov"]["attributed"] == attributed,
    )
    roi = client.get("/v1/reports/roi", params={"model": "markov"}).json()
    assert roi["snapshot"]["fit_id"] == fit_id
    assert roi["totals"]["revenue"] == attributed
    # The fit saw every decided deal: its removal effects and each campaign's markov revenue
    # are the reference's (contract §4).
    table = {row["channel"]: row["removal_effect"] for row in snapshot["table"]}
    assert len(table) >= 5
    assert table == pytest.approx({c: float(v) for c, v in ref.removal_effects.items()}, abs=1e-12)
    expected = expected_revenue(ref, "markov")
    got = {r["campaign_id"]: r["revenue"] for r in roi["rows"]}
    assert len(expected) >= 10
    assert {c: v for c, v in got.items() if v != "0.00"} == {
        c: cents(v) for c, v in expected.items() if v
    }


def test_custom_model_lifecycle(stack: dict[str, Any]) -> None:
    client: httpx.Client = stack["client"]
    created = client.put(
        "/v1/models/first_heavy",
        json={"weights": {"first": "0.7", "last": "0.3"}, "description": "e2e"},
    )
    assert created.status_code == 201, created.text
    assert client.put("/v1/models/linear", json={"weights": {"first": "1"}}).status_code == 409
    wait_for(
        lambda: client.get("/v1/models/first_heavy").json(),
        lambda body: body.get("status") == "ready",
    )
    ref: reference.Reference = stack["ref"]
    won = [d for d in ref.deals.values() if d.won and d.reporting_minor is not None]
    # first 0.7 / last 0.3: a one-touch journey takes everything; otherwise the ends split
    # 70/30 by largest remainder (ties to the first) and the touches between get nothing.
    expected: dict[str, int] = defaultdict(int)
    for deal in won:
        if not deal.journey:
            continue
        first, last = expected_ends(deal, stack["events"])
        amount = deal.reporting_minor or 0
        if len(deal.journey) == 1:
            expected[first] += amount
            continue
        a, b = Fraction(amount * 7, 10), Fraction(amount * 3, 10)
        fa, fb = math.floor(a), math.floor(b)
        if amount - fa - fb:
            if a - fa >= b - fb:
                fa += 1
            else:
                fb += 1
        expected[first] += fa
        expected[last] += fb
    assert expected
    compare = client.get("/v1/reports/compare", params={"models": "first_heavy,linear"}).json()
    got = {r["campaign_id"]: r["revenue"]["first_heavy"] for r in compare["rows"]}
    for campaign in set(got) | set(expected):
        assert got.get(campaign, "0.00") == cents(expected.get(campaign, 0)), (
            campaign,
            got,
            dict(expected),
        )
    assert client.delete("/v1/models/first_heavy").status_code == 204
    assert client.get("/v1/models/first_heavy").status_code == 404


def expected_ends(deal: reference.DealResult, events: list[dict[str, Any]]) -> tuple[str, str]:
    campaign_of = {e["event_id"]: e["campaign_id"] for e in events if e["type"] == "touch"}
    return campaign_of[deal.journey[0]], campaign_of[deal.journey[-1]]


def test_lead_score_of_an_open_account(stack: dict[str, Any]) -> None:
    client: httpx.Client = stack["client"]
    wait_for(lambda: client.get("/v1/models/markov").json(), lambda body: body.get("snapshot"))
    leads = client.get("/v1/reports/leads", params={"limit": 5})
    assert leads.status_code == 200, leads.text
    rows = leads.json()["rows"]
    assert rows, "the simulated history ending today must leave open accounts to score"
    top = rows[0]
    score = client.get(f"/v1/accounts/{top['account_id']}/score").json()
    assert 0 <= score["probability"] <= 1
    assert score["probability"] == pytest.approx(top["probability"])
    assert sum(score["contributions"].values()) == pytest.approx(score["probability"])
