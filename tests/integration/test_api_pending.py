"""Pending revenue (contract §6): a model that has not credited every won deal says so.

The projection is built by the worker's own code (projector, fits, recompute) from the
events below, and read over HTTP through one app (so its report cache sees every change).
Every expected number is worked out by hand:

- campaigns: c-mail (email), c-web (webinar).
- D1 (account A) won $1000.00 at day 10, journey t1 email (day 1), t2 webinar (day 2).
- D2 (account B) won $300.00 at day 12, journey t3 webinar (day 3).
- D3 (account C) won $50.00 at day 15, no touch: unattributed.
- D4 (account L) lost at day 14, journey t4 email (a null path for markov).
- D5 (account E) won EUR 70.00 at day 16 with no EUR rate: unconverted, outside revenue.

Closed-won revenue is 1350.00 over 3 deals; every positional model attributes 1300.00 and
leaves 50.00 unattributed. Markov and shapley credit nothing before their first fit: pending
1350.00.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.api.app import create_app
from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.maintenance import compute_custom_models
from services.attribution.projector import apply_events
from services.attribution.recompute import recompute
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings
from tests.support.builders import campaign, deal_created, deal_status, events, touch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 9, 1, tzinfo=UTC)
# Only D1 closed in this range (T0 + 10 days = 2026-03-11).
D1_ONLY = {"from": "2026-03-11", "to": "2026-03-12"}


def history() -> list[Any]:
    return events(
        campaign("c-mail", "email"),
        campaign("c-web", "webinar"),
        deal_created("D1", "A", "1000.00", 0),
        touch("t1", "c-mail", 1, account="A"),
        touch("t2", "c-web", 2, account="A"),
        deal_status("D1", "closed_won", 10),
        deal_created("D2", "B", "300.00", 0),
        touch("t3", "c-web", 3, account="B"),
        deal_status("D2", "closed_won", 12),
        deal_created("D3", "C", "50.00", 0),
        deal_status("D3", "closed_won", 15),
        deal_created("D4", "L", "80.00", 0),
        touch("t4", "c-mail", 4, account="L"),
        deal_status("D4", "closed_lost", 14),
        deal_created("D5", "E", "70.00", 0, currency="EUR"),
        deal_status("D5", "closed_won", 16),
    )


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]
    admin: dict[str, str]
    sessions: sessionmaker[Session]
    settings: Settings

    def json(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def reconciliation(self, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.json("/v1/reports/reconciliation", **params)
        assert_identity(body)
        return body


def cents(text: str) -> int:
    units, fraction = text.split(".")
    return int(units) * 100 + int(fraction)


def assert_identity(body: dict[str, Any]) -> None:
    """attributed + unattributed + pending = closed-won revenue, for every model."""
    total = cents(body["closed_won_revenue"])
    for model_id, m in body["models"].items():
        parts = cents(m["attributed"]) + cents(m["unattributed"]) + cents(m["pending"])
        assert parts == total, (model_id, m, total)
        assert (m["status"] == "ready") <= (m["pending"] == "0.00"), (model_id, m)


def line(status: str, attributed: str, unattributed: str, pending: str) -> dict[str, str]:
    return {
        "status": status,
        "attributed": attributed,
        "unattributed": unattributed,
        "pending": pending,
    }


READY = line("ready", "1300.00", "50.00", "0.00")
UNFITTED = line("pending", "0.00", "0.00", "1350.00")


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, history(), settings=settings, now=NOW)
        keys = {s: create_key(session, name=s, scopes=[s]) for s in ("read", "admin")}
    read, admin = ({"Authorization": f"Bearer {keys[s]}"} for s in ("read", "admin"))
    with TestClient(create_app(settings)) as client:
        yield Api(client, read, admin, sessions, settings)
    sessions.kw["bind"].dispose()


def test_data_driven_models_are_pending_until_their_first_fit(api: Api) -> None:
    body = api.reconciliation()
    assert (body["closed_won_revenue"], body["won_deals"]) == ("1350.00", 3)
    assert body["unconverted"] == {"count": 1, "amounts": {"EUR": "70.00"}}
    assert body["models"]["linear"] == READY
    assert body["models"]["w_shaped"] == READY
    assert body["models"]["markov"] == UNFITTED
    assert body["models"]["shapley"] == UNFITTED
    assert api.reconciliation(**D1_ONLY)["models"]["markov"] == line(
        "pending", "0.00", "0.00", "1000.00"
    )

    roi = api.json("/v1/reports/roi", model="markov")
    assert roi["status"] == "pending"
    assert roi["totals"] == {
        "revenue": "0.00",
        "cost": "0.00",
        "unattributed_revenue": "0.00",
        "pending_revenue": "1350.00",
    }
    linear = api.json("/v1/reports/roi", model="linear")
    assert (linear["status"], linear["totals"]["pending_revenue"]) == ("ready", "0.00")
    compare = api.json("/v1/reports/compare", models="linear,markov")
    assert compare["status"] == {"linear": "ready", "markov": "pending"}
    assert compare["totals"]["pending_revenue"] == {"linear": "0.00", "markov": "1350.00"}
    diff = api.json("/v1/reports/compare/diff", base="linear", other="shapley")
    assert diff["status"] == {"linear": "ready", "shapley": "pending"}
    deal = api.json("/v1/deals/D1/attribution", model="markov")
    assert (deal["status"], deal["unattributed"], deal["journey"]) == ("pending", False, [])
    assert api.json("/v1/deals/D1/attribution", model="linear")["status"] == "ready"

    # The first markov fit: every won deal credited, so ready with nothing pending.
    with api.sessions.begin() as session:
        request_fit(session, "markov", now=NOW)
    assert len(run_requested_fits(api.sessions, api.settings)) == 1
    body = api.reconciliation()
    assert body["models"]["markov"] == READY
    assert body["models"]["shapley"] == UNFITTED
    roi = api.json("/v1/reports/roi", model="markov")
    assert (roi["status"], roi["totals"]["revenue"], roi["totals"]["pending_revenue"]) == (
        "ready",
        "1300.00",
        "0.00",
    )
    assert api.json("/v1/deals/D1/attribution", model="markov")["status"] == "ready"


def test_a_custom_model_being_computed_shows_exactly_what_is_pending(api: Api) -> None:
    weights = {"weights": {"first": "1/2", "last": "1/2"}}
    created = api.client.put("/v1/models/halves", json=weights, headers=api.admin)
    assert created.status_code == 201, created.text
    assert api.reconciliation()["models"]["halves"] == UNFITTED

    # The worker has written D1 only so far (the model still computing): D2 and D3 pending.
    recompute(api.sessions, api.settings, deal_ids=["D1"], model_ids=["halves"])
    body = api.reconciliation()
    assert body["models"]["halves"] == line("pending", "1000.00", "0.00", "350.00")
    assert body["models"]["linear"] == READY
    assert api.reconciliation(**D1_ONLY)["models"]["halves"] == line(
        "pending", "1000.00", "0.00", "0.00"
    )  # nothing of this range is missing, but the model is still being computed
    roi = api.json("/v1/reports/roi", model="halves")
    assert (roi["status"], roi["totals"]["revenue"], roi["totals"]["pending_revenue"]) == (
        "pending",
        "1000.00",
        "350.00",
    )
    assert [(r["campaign_id"], r["revenue"]) for r in roi["rows"]] == [
        ("c-mail", "500.00"),
        ("c-web", "500.00"),
    ]
    assert api.json("/v1/deals/D2/attribution", model="halves")["status"] == "pending"

    # Done: every deal credited, the model ready.
    assert compute_custom_models(api.sessions, api.settings) == ["halves"]
    assert api.reconciliation()["models"]["halves"] == READY
    assert api.json("/v1/reports/roi", model="halves")["status"] == "ready"

    # New weights: computing again; the old credits still cover every deal, so nothing is
    # pending, but the model says it is not ready.
    changed = {"weights": {"last": "1"}}
    assert api.client.put("/v1/models/halves", json=changed, headers=api.admin).status_code == 200
    assert api.reconciliation()["models"]["halves"] == line("pending", "1300.00", "50.00", "0.00")
