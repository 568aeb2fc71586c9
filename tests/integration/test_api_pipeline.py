"""The pipeline report over HTTP, on PostgreSQL and SQLite, from the worker's own snapshot.

The projection is built by the worker's code (``apply_events``), the snapshot by
``compute_pipeline`` at a fixed NOW, and the report read through the API. The expected numbers
come from the plain computation in ``expected``: journeys filtered by hand from the story's
table (contract §2: account match, ``C − lookback ≤ t ≤ now``), linear and first-touch weights
written out, split with the reference's largest-remainder rule; never from the code under test.

Story (T0 = 2026-03-01T12:00Z, NOW = T0 + 60 days, lookback 30 days, reporting USD; EUR→USD
1.10 from March 1, 1.20 from April 15, 1.30 from May 10, after NOW):
- O1 (A) $1000.00 created day 10, stage proposal: t1 (day −25, before C − lookback: out),
  t2 c-web (lead) day 5, t3 c-mail day 15, t4 c-ads day 61 (after NOW: out).
- O2 (B) EUR 100.00 created day 0, stage discovery: t5 c-ads, t6 c-web, t7 c-mail → at the
  latest rate on or before NOW's day, 1.20: $120.00.
- O3 (C) $333.33 created day 30, stage discovery, no touch: unattributed pipeline.
- O4 (E) GBP 50.00, touched by c-web: no GBP rate, unconverted, left out.
- O5 (F) $10.00 created day 39, no stage: c-web, c-mail, c-web → linear 3.34 / 3.33 / 3.33.
- W1 (D) won, L1 (G) lost: touched, but not pipeline.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.api.app import create_app
from services.attribution.pipeline import compute_pipeline
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.attribution.worker import Worker
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import PipelineCreditRow, PipelineDealRow, PipelineRollupRow
from services.core.settings import Settings
from tests.support.builders import T0, campaign, deal_created, deal_status, events, fx, touch
from tests.support.reference import split_minor

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(days=60)
LOOKBACK_DAYS = 30
CHANNELS = {"c-web": "webinar", "c-mail": "email", "c-ads": "paid_search"}
# deal: (account, amount, currency, created day, stage, amount in USD cents or None)
OPEN = {
    "O1": ("A", "1000.00", "USD", 10, "proposal", 100000),
    "O2": ("B", "100.00", "EUR", 0, "discovery", 12000),
    "O3": ("C", "333.33", "USD", 30, "discovery", 33333),
    "O4": ("E", "50.00", "GBP", 5, None, None),
    "O5": ("F", "10.00", "USD", 39, None, 1000),
}
# (event id, campaign, day, account, lead_created)
TOUCHES = [
    ("t1", "c-mail", -25, "A", False),
    ("t2", "c-web", 5, "A", True),
    ("t3", "c-mail", 15, "A", False),
    ("t4", "c-ads", 61, "A", False),
    ("t5", "c-ads", 1, "B", False),
    ("t6", "c-web", 2, "B", False),
    ("t7", "c-mail", 3, "B", False),
    ("t8", "c-web", 6, "E", False),
    ("t10", "c-web", 40, "F", False),
    ("t11", "c-mail", 41, "F", False),
    ("t12", "c-web", 42, "F", False),
    ("t13", "c-web", 1, "D", False),
    ("t14", "c-ads", 1, "G", False),
]


def story() -> list[dict[str, Any]]:
    out = [campaign(c, ch) for c, ch in CHANNELS.items()]
    out += [
        fx("2026-03-01", "EUR", "USD", "1.10"),
        fx("2026-04-15", "EUR", "USD", "1.20"),
        fx("2026-05-10", "EUR", "USD", "1.30"),
    ]
    for deal_id, (account, amount, currency, day, stage, _) in OPEN.items():
        out.append(deal_created(deal_id, account, amount, day, currency=currency))
        if stage:
            out.append(deal_status(deal_id, "updated", day + 1, stage=stage))
    out += [touch(e, c, d, account=a, lead=lead) for e, c, d, a, lead in TOUCHES]
    out += [
        deal_created("W1", "D", "700.00", 0),
        deal_status("W1", "closed_won", 20),
        deal_created("L1", "G", "50.00", 0),
        deal_status("L1", "closed_lost", 5),
    ]
    return out


def journey(deal_id: str) -> list[str]:
    """The deal's touches inside [C − lookback, NOW], in time order (contract §2), by hand."""
    account, _, _, created, _, _ = OPEN[deal_id]
    start = created - LOOKBACK_DAYS
    now = (NOW - T0).days
    inside = [(d, e, c) for e, c, d, a, _ in TOUCHES if a == account and start <= d <= now]
    return [c for _, _, c in sorted(inside)]


def expected(model: str, group_by: str) -> tuple[dict[str | None, dict[str, Any]], dict[str, Any]]:
    """Rows keyed by campaign (or channel) with pipeline cents per stage, and the totals."""
    rows: dict[str | None, dict[str, Any]] = {}
    total = unattributed = deals = unconverted = 0
    for deal_id, (_, _, _, _, stage, cents) in OPEN.items():
        if cents is None:
            unconverted += 1
            continue
        deals += 1
        total += cents
        campaigns = journey(deal_id)
        if not campaigns:
            unattributed += cents
            continue
        n = len(campaigns)
        weights = (
            [Fraction(1, n)] * n if model == "linear" else [Fraction(1)] + [Fraction(0)] * (n - 1)
        )
        for cid, credit, weight in zip(
            campaigns, split_minor(cents, weights), weights, strict=True
        ):
            key = cid if group_by == "campaign" else CHANNELS[cid]
            row = rows.setdefault(key, {"cents": 0, "deals": Fraction(0), "stages": {}})
            row["cents"] += credit
            row["deals"] += weight
            name = stage or "(none)"
            row["stages"][name] = row["stages"].get(name, 0) + credit
    totals = {
        "pipeline": money(total),
        "unattributed_pipeline": money(unattributed),
        "open_deals": deals,
        "unconverted_deals": unconverted,
    }
    return rows, totals


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]
    sessions: sessionmaker[Session]
    settings: Settings

    def get(self, params: dict[str, str], accept: str = "application/json") -> Any:
        headers = {**self.headers, "Accept": accept}
        return self.client.get("/v1/reports/pipeline", params=params, headers=headers)

    def snapshot(self, now: datetime = NOW) -> None:
        with self.sessions.begin() as session:
            compute_pipeline(session, self.settings, now)


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url, lookback_days=LOOKBACK_DAYS)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, events(*story()), settings=settings, now=NOW)
        key = create_key(session, name="read", scopes=["read"])
    with TestClient(create_app(settings)) as client:
        yield Api(client, {"Authorization": f"Bearer {key}"}, sessions, settings)
    sessions.kw["bind"].dispose()


def check_rows(body: dict[str, Any], want: dict[str | None, dict[str, Any]], key: str) -> None:
    got = {r[key]: r for r in body["rows"]}
    assert set(got) == set(want)
    for k, row in want.items():
        assert got[k]["pipeline"] == money(row["cents"]), k
        assert got[k]["deals"] == round(float(row["deals"]), 4), k
        assert got[k]["stages"] == {s: money(c) for s, c in row["stages"].items()}, k


def test_before_the_first_snapshot_the_report_says_so(api: Api) -> None:
    body = api.get({}).json()
    assert (body["as_of"], body["rows"], body["status"]) == (None, [], "pending")
    assert body["totals"] == {
        "pipeline": "0.00",
        "unattributed_pipeline": "0.00",
        "open_deals": 0,
        "unconverted_deals": 0,
    }


@pytest.mark.parametrize("model", ["linear", "first_touch"])
def test_campaign_rows_match_the_plain_computation(api: Api, model: str) -> None:
    api.snapshot()
    response = api.get({"model": model})
    assert response.status_code == 200, response.text
    body = response.json()
    rows, totals = expected(model, "campaign")
    assert (body["model"], body["status"], body["currency"]) == (model, "ready", "USD")
    assert body["as_of"] == "2026-04-30T12:00:00Z"
    check_rows(body, rows, "campaign_id")
    assert body["totals"] == totals
    names = {r["campaign_id"]: (r["campaign_name"], r["channel"]) for r in body["rows"]}
    assert names["c-web"] == ("Campaign c-web", "webinar")
    pipeline = [r["pipeline"] for r in body["rows"]]
    assert pipeline == sorted(pipeline, key=lambda p: -int(p.replace(".", "")))


def test_the_story_by_hand(api: Api) -> None:
    api.snapshot()
    linear = {r["campaign_id"]: r for r in api.get({"model": "linear"}).json()["rows"]}
    # O1: t2, t3 (t1 too early, t4 after NOW) 500 each; O2: 40 each; O5: 3.34 + 3.33 to c-web.
    assert linear["c-web"]["pipeline"] == "546.67"
    assert linear["c-web"]["stages"] == {
        "proposal": "500.00",
        "discovery": "40.00",
        "(none)": "6.67",
    }
    assert linear["c-mail"]["pipeline"] == "543.33"
    assert linear["c-ads"]["pipeline"] == "40.00"
    first = {r["campaign_id"]: r for r in api.get({"model": "first_touch"}).json()["rows"]}
    assert {k: r["pipeline"] for k, r in first.items()} == {
        "c-web": "1010.00",
        "c-ads": "120.00",
        "c-mail": "0.00",  # in journeys, earning nothing under first touch: a row of zero
    }
    totals = api.get({}).json()["totals"]
    # 1000 + 120 (EUR at 1.20) + 333.33 + 10; O3 unattributed; O4 (GBP) unconverted.
    assert totals == {
        "pipeline": "1463.33",
        "unattributed_pipeline": "333.33",
        "open_deals": 4,
        "unconverted_deals": 1,
    }


def test_channel_rows(api: Api) -> None:
    api.snapshot()
    body = api.get({"model": "linear", "group_by": "channel"}).json()
    rows, totals = expected("linear", "channel")
    assert body["group_by"] == "channel"
    assert all(set(r) == {"channel", "pipeline", "deals", "stages"} for r in body["rows"])
    check_rows(body, rows, "channel")
    assert body["totals"] == totals


def test_every_models_credits_sum_to_each_deals_converted_amount(api: Api) -> None:
    api.snapshot()
    with api.sessions() as session:
        amounts = dict(
            session.execute(
                select(PipelineDealRow.deal_id, PipelineDealRow.reporting_minor).where(
                    PipelineDealRow.journey_touches > 0,
                    PipelineDealRow.reporting_minor.is_not(None),
                )
            ).all()
        )
        sums = session.execute(
            select(
                PipelineCreditRow.model_id,
                PipelineCreditRow.deal_id,
                func.sum(PipelineCreditRow.credit_minor),
            ).group_by(PipelineCreditRow.model_id, PipelineCreditRow.deal_id)
        ).all()
    assert amounts == {"O1": 100000, "O2": 12000, "O5": 1000}
    by_model: dict[str, dict[str, int]] = {}
    for model_id, deal_id, total in sums:
        by_model.setdefault(model_id, {})[deal_id] = int(total)
    assert len(by_model) == 10  # the built-ins (no decided-deal fit was run here)
    for model_id, per_deal in by_model.items():
        assert per_deal == amounts, model_id
    for model_id in ("markov", "shapley"):  # never fitted: said, not silently zero
        body = api.get({"model": model_id}).json()
        assert (body["status"], body["rows"]) == ("pending", [])


def test_the_snapshots_sums_equal_its_credit_rows(api: Api) -> None:
    """``pipeline_rollups`` (what the report reads) sums ``pipeline_credits`` per key exactly,
    after a first snapshot and after one that replaced it."""
    for when in (NOW, NOW + timedelta(days=3)):
        api.snapshot(when)
        with api.sessions() as session:
            want: dict[tuple[Any, ...], list[Any]] = {}
            for c in session.scalars(select(PipelineCreditRow)):
                sums = want.setdefault((c.model_id, c.campaign_id, c.stage), [0, [], 0])
                sums[0] += c.credit_minor
                sums[1].append(c.weight)
                sums[2] += 1
            have = {
                (r.model_id, r.campaign_id, r.stage): (r.credit_minor, r.weight, r.credits)
                for r in session.scalars(select(PipelineRollupRow))
            }
        assert len(want) > 10
        assert set(have) == set(want)
        for key, (minor, weights, count) in want.items():
            assert have[key][0] == minor and have[key][2] == count, key
            assert have[key][1] == pytest.approx(math.fsum(weights), abs=1e-12), key


def test_a_new_snapshot_replaces_the_old_and_the_cache(api: Api) -> None:
    api.snapshot()
    assert api.get({}).json()["totals"]["pipeline"] == "1463.33"
    with api.sessions.begin() as session:
        apply_events(
            session, events(deal_status("O1", "closed_won", 59)), settings=api.settings, now=NOW
        )
    api.snapshot(NOW + timedelta(hours=1))
    body = api.get({}).json()
    assert body["as_of"] == "2026-04-30T13:00:00Z"
    assert body["totals"]["pipeline"] == "463.33"  # O1 is won now: no longer pipeline
    assert "c-web" in {r["campaign_id"] for r in body["rows"]}


def test_csv_is_the_json_rows_with_a_column_per_stage(api: Api) -> None:
    api.snapshot()
    response = api.get({"model": "linear"}, accept="text/csv")
    assert response.status_code == 200, response.text
    assert 'filename="pipeline.csv"' in response.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    stages = ["(none)", "discovery", "proposal"]
    header = ["campaign_id", "campaign_name", "channel", "pipeline", "deals"]
    assert list(parsed[0]) == header + [f"stage_{s}" for s in stages]
    for line, row in zip(parsed, api.get({"model": "linear"}).json()["rows"], strict=True):
        assert [line[k] for k in header] == [str(row[k]) for k in header]
        assert [line[f"stage_{s}"] for s in stages] == [
            row["stages"].get(s, "0.00") for s in stages
        ]
    channel = api.get({"group_by": "channel"}, accept="text/csv").text.splitlines()[0]
    assert channel.startswith("channel,pipeline,deals,stage_")


def test_refusals_name_the_problem(api: Api) -> None:
    bad = api.get({"model": "nope"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.model"
    assert api.get({"group_by": "week"}).status_code == 422
    assert api.get({}, accept="application/xml").status_code == 406
    assert api.client.get("/v1/reports/pipeline").status_code == 401


def test_the_worker_maintenance_pass_takes_the_snapshot(db_url: str) -> None:
    """First pass: a snapshot; no change: none (from any worker); a change: a new one."""
    settings = Settings(_env_file=None, database_url=db_url, pipeline_interval_s=0.01)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, events(*story()), settings=settings, now=NOW)
    worker = Worker(settings, sessions=sessions)

    def snapshot() -> tuple[datetime | None, set[str]]:
        with sessions() as session:
            rows = session.execute(select(PipelineDealRow.deal_id, PipelineDealRow.computed_at))
            pairs = rows.all()
        return (max((t for _, t in pairs), default=None), {d for d, _ in pairs})

    worker._maintain()
    first, deals = snapshot()
    assert first is not None and deals == {"O1", "O2", "O3", "O4", "O5"}
    with sessions() as session:  # the pass also fitted markov: the snapshot credits it
        credited = set(session.scalars(select(PipelineCreditRow.model_id).distinct()))
    assert {"linear", "markov", "shapley"} <= credited
    worker._pipeline_at = 0.0  # the interval passed
    worker._maintain()
    assert snapshot() == (first, deals)  # nothing changed: not recomputed
    Worker(settings, sessions=sessions)._maintain()  # another worker: current, no recompute
    assert snapshot() == (first, deals)
    with sessions.begin() as session:
        apply_events(
            session,
            events(deal_created("O6", "H", "5.00", 50)),
            settings=settings,
            now=datetime.now(UTC),
        )
    worker._pipeline_at = 0.0
    worker._maintain()
    later, deals = snapshot()
    assert later is not None and later > first and "O6" in deals
    sessions.kw["bind"].dispose()
