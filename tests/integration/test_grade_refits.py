"""The grade's refit schedule, through the worker's own maintenance pass (contract §7: "fitted
and versioned like the Markov and Shapley fits, refitted on the same schedule").

The rule (README "Lead lifecycle"; ``services.attribution.grading``): the first grade fit as
soon as decided deals exist, at any pass; after that only a scheduled pass refits, and only
when the latest grade fit is at least ``fit_interval_s`` old and more decided deals exist than
it learned from. Every fit is a new ``model_fits`` row of model ``grade`` with its inputs; the
earlier rows stay as they were. Time passing is the latest fit's times moved back by the
interval (the rule compares them with the pass's clock).

The story is ``tests.integration.test_grade``'s, its deals closed in steps, then a fifth:
1. no deal closed: no fit;
2. D1 (A) and D2 (B) won: fit 1, failed (a grade needs a won and a lost deal), inputs 2/2/2;
3. D3 (C) and D4 (D) lost: no refit while fit 1 is young or the pass is not scheduled; once
   it is old, fit 2 on 4 deals: test_grade's hand-worked table (base rate 1/2);
4. fit 2 old, no new decided deal: no refit;
5. D5 (F, retail) won: fit 3 on 5 deals, base rate 3/5, prior m = 10 adds 6 won and 4 lost
   deals per value, r = (w + 6) / (n + 10), contribution ln(odds(r) / odds(3/5)):
   software n=3 w=2 → 8/13 → ln((8/5)/(3/2)) = ln(16/15); retail n=2 w=1 → 7/12 → ln(14/15);
   CFO n=1 w=1 → 7/11 → ln((7/4)/(3/2)) = ln(7/6); Analyst n=1 w=0 → 6/11 → ln(4/5).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.api.app import create_app
from services.attribution.maintenance import maintain_models
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ModelFitRow
from services.core.settings import Settings
from tests.integration.test_grade import ANALYST, CFO, NOW, RETAIL, SOFTWARE, account, r6, story
from tests.support.builders import deal_created, deal_status, events, touch

pytestmark = pytest.mark.integration


def grade_fits(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(
            select(ModelFitRow).where(ModelFitRow.model_id == "grade").order_by(ModelFitRow.id)
        ).all()
        return [
            {
                "id": r.id,
                "status": r.status,
                "inputs": orjson.loads(r.inputs),
                "results": orjson.loads(r.results),
                "error": r.error,
            }
            for r in rows
        ]


def table(fit: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, float]]:
    return {
        (v["key"], v["value"]): (v["deals"], v["won"], v["contribution"])
        for v in fit["results"]["values"]
    }


def test_the_grade_is_refitted_on_the_models_schedule(db_url: str) -> None:
    settings = Settings(_env_file=None, database_url=db_url, lookback_days=3650)
    sessions = make_sessionmaker(make_engine(db_url))

    def project(*batch: dict[str, Any]) -> None:
        with sessions.begin() as session:
            apply_events(session, events(*batch), settings=settings, now=NOW)

    def age_latest_fit() -> None:
        with sessions.begin() as session:
            row = session.scalars(
                select(ModelFitRow)
                .where(ModelFitRow.model_id == "grade")
                .order_by(ModelFitRow.id.desc())
                .limit(1)
            ).one()
            gone = timedelta(seconds=settings.fit_interval_s)
            row.requested_at -= gone
            if row.fitted_at is not None:
                row.fitted_at -= gone

    def passes(*schedules: bool) -> int:
        for schedule in schedules:
            maintain_models(sessions, settings, schedule=schedule)
        return len(grade_fits(sessions))

    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        key = create_key(session, name="read", scopes=["read"])
    everything = story()
    closes = {e["deal_id"]: e for e in everything if e["type"].startswith("deal.closed")}
    project(*(e for e in everything if not e["type"].startswith("deal.closed")))

    # 1. No decided deal: nothing to learn from, scheduled or not.
    assert passes(False, True) == 0

    # 2. Two won deals: the first fit at once (not waiting for the schedule); it fails.
    project(closes["D1"], closes["D2"])
    assert passes(False) == 1
    [first] = grade_fits(sessions)
    assert first["status"] == "failed"
    assert "at least one won and one lost" in first["error"]
    assert first["inputs"] == {"decided_deals": 2, "samples": 2, "won": 2}
    assert passes(False, True) == 1  # not retried: nothing new, and not old

    # 3. Two lost deals: new decided deals, but fit 1 is young or the pass unscheduled.
    project(closes["D3"], closes["D4"])
    assert passes(False, True) == 1
    age_latest_fit()
    assert passes(False) == 1
    assert passes(True) == 2
    second = grade_fits(sessions)[1]
    assert second["id"] > first["id"]
    assert second["status"] == "done"
    assert second["inputs"] == {"decided_deals": 4, "samples": 4, "won": 2}
    assert second["results"]["base_rate"] == "1/2"
    assert table(second) == {
        ("industry", "software"): (3, 2, SOFTWARE),
        ("industry", "retail"): (1, 0, RETAIL),
        ("contact.title", "CFO"): (1, 1, CFO),
        ("contact.title", "Analyst"): (1, 0, ANALYST),
    }

    # 4. Fit 2 is old but no decided deal came since: no refit.
    age_latest_fit()
    assert passes(True, True) == 2

    # 5. A fifth decided deal: the next scheduled pass refits (fit 2 is old already).
    project(
        account("F", -30, "acc-F", industry="retail"),
        deal_created("D5", "F", "1000.00", 0),
        touch("t-D5-1", "c-web", 2, account="F"),
        deal_status("D5", "closed_won", 14),
    )
    assert passes(False) == 2
    assert passes(True) == 3
    before, third = grade_fits(sessions)[1:]
    assert before == second  # an earlier version is never rewritten
    assert third["id"] > second["id"]
    assert third["status"] == "done"
    assert third["inputs"] == {"decided_deals": 5, "samples": 5, "won": 3}
    assert third["results"]["base_rate"] == "3/5"
    assert table(third) == {
        ("industry", "software"): (3, 2, r6(math.log(16 / 15))),
        ("industry", "retail"): (2, 1, r6(math.log(14 / 15))),
        ("contact.title", "CFO"): (1, 1, r6(math.log(7 / 6))),
        ("contact.title", "Analyst"): (1, 0, r6(math.log(4 / 5))),
    }
    assert passes(True) == 3  # fit 3 is young

    # The API grades with the latest version.
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/accounts/E/grade", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["snapshot"]["fit_id"] == third["id"]
    assert body["base_rate"] == 0.6
    assert body["raw"] == pytest.approx(math.log(16 / 15) + math.log(7 / 6), abs=2e-6)
    sessions.kw["bind"].dispose()
