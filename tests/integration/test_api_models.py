"""The models API, fit snapshots in reports, the compare diff and the lead score, over HTTP.

The rows below stand in for the worker's output: fits are computed with the pure domain on
the hand-made paths ``PATHS`` and stored as the worker stores them; the numbers expected are
worked out by hand next to each assertion.

Paths (order-1 Markov over channels): email > webinar converts x3, paid_search is lost x2,
email is lost x1, paid_search > webinar converts x1, webinar is lost x1. From (start): 4 of 8
go to email, 3 to paid_search, 1 to webinar; P(conversion) = 1/2. Removal effects: webinar 1
(no conversion without it), email 3/5, paid_search 1/5. Absorption: webinar 4/5, email
3/5, paid_search 4/15. Shapley (conversions per channel set, split evenly): {email, webinar}
3 -> 1.5 each; {paid_search, webinar} 1 -> 0.5 each; so webinar 2, email 1.5, paid_search 0.5.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.api.app import create_app
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    AttributionModelRow,
    CampaignCostDayRow,
    CampaignCostRow,
    CampaignRow,
    ContactRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    ModelFitRow,
    TouchRow,
)
from services.core.settings import Settings
from services.domain.datadriven import markov_to_json, shapley_to_json
from services.domain.markov import conversion_probability, fit_markov, score_contributions
from services.domain.paths import Path
from services.domain.shapley import fit_shapley

pytestmark = pytest.mark.integration

PATHS = [
    Path(("email", "webinar"), True, value=300000, count=3),
    Path(("paid_search",), False, count=2),
    Path(("email",), False),
    Path(("paid_search", "webinar"), True, value=50000),
    Path(("webinar",), False),
]
MARKOV = fit_markov(PATHS)
NOW = datetime.now(UTC)
MARCH = {"from": "2024-03-01", "to": "2024-04-01"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


# --- builders ---------------------------------------------------------------------------


def add_fit(session: Session, model_id: str, results: dict[str, Any], *, fitted: str) -> int:
    params = {"order": 1} if model_id == "markov" else {"characteristic": "conversions"}
    inputs = {"won_deals": 4, "lost_deals": 4, "paths": 8, "distinct_paths": 5}
    row = ModelFitRow(
        model_id=model_id,
        status="done",
        requested_at=at(fitted) - timedelta(minutes=1),
        fitted_at=at(fitted),
        params=json.dumps(params),
        inputs=json.dumps(inputs),
        results=json.dumps(results),
    )
    session.add(row)
    session.flush()
    return row.id


def add_touch(
    session: Session,
    event_id: str,
    when: datetime,
    campaign_id: str,
    *,
    account_id: str | None = None,
    contact_id: str | None = None,
) -> None:
    session.add(
        TouchRow(
            event_id=event_id,
            occurred_at=when,
            campaign_id=campaign_id,
            contact_id=contact_id,
            account_id=account_id,
            lead_created=False,
        )
    )


def add_won(session: Session, deal_id: str, account_id: str, closed: str, amount: int) -> None:
    session.add(
        DealRow(
            deal_id=deal_id,
            account_id=account_id,
            status="won",
            amount_minor=amount,
            currency="USD",
            closed_at=at(closed),
            reporting_minor=amount,
            conversion="converted",
        )
    )


def credit(
    session: Session,
    model_id: str,
    deal_id: str,
    closed: str,
    parts: list[tuple[str, str, int]],
    *,
    fit_id: int | None = None,
) -> None:
    """Write a deal's credits (touch, campaign, minor units) and its attribution row."""
    total = sum(p[2] for p in parts)
    for position, (touch_id, campaign_id, minor) in enumerate(parts):
        session.add(
            CreditRow(
                model_id=model_id,
                deal_id=deal_id,
                touch_event_id=touch_id,
                position=position,
                campaign_id=campaign_id,
                roles="",
                weight=minor / total,
                credit_minor=minor,
                closed_at=at(closed),
            )
        )
    session.add(
        DealAttributionRow(
            model_id=model_id,
            deal_id=deal_id,
            closed_at=at(closed),
            amount_minor=total,
            attributed_minor=total,
            unattributed_minor=0,
            fit_id=fit_id,
        )
    )


def seed(session: Session, settings: Settings, *, fits: bool = True) -> dict[str, int]:
    """Write the models, campaigns, contacts, touches, deals, credits and (optionally) fits."""
    sync_builtin_models(session, settings)
    for campaign_id, channel in (
        ("c-email", "email"),
        ("c-web", "webinar"),
        ("c-search", "paid_search"),
        ("c-ads", "paid_search"),
    ):
        session.add(CampaignRow(campaign_id=campaign_id, name=f"{channel} Q1", channel=channel))
    session.add_all(
        [
            # k2 was merged into k1: both now belong to acme. k3 belongs to delta.
            ContactRow(
                contact_id="k1",
                account_id="acme",
                root_contact_id="k1",
                effective_account_id="acme",
            ),
            ContactRow(
                contact_id="k2", merged_into="k1", root_contact_id="k1", effective_account_id="acme"
            ),
            ContactRow(
                contact_id="k3",
                account_id="delta",
                root_contact_id="k3",
                effective_account_id="delta",
            ),
        ]
    )
    # Open journeys, relative to now (lookback 180 days).
    add_touch(session, "a0", ago(200), "c-search", account_id="acme")  # before the window
    add_touch(session, "a1", ago(30), "c-email", account_id="acme")
    add_touch(session, "a2", ago(20), "c-web", contact_id="k2")  # through the merged contact
    add_touch(session, "a3", ago(10), "c-ghost", account_id="acme", contact_id="k1")  # no campaign
    add_touch(session, "a9", NOW + timedelta(days=1), "c-search", account_id="acme")  # future
    add_touch(session, "d1", ago(5), "c-web", contact_id="k3")
    add_touch(session, "b1", ago(40), "c-search", account_id="beta")
    add_touch(session, "e1", ago(3), "c-email", account_id="epsilon")
    add_touch(session, "g1", ago(300), "c-email", account_id="gamma")
    add_touch(session, "w1", ago(2), "c-web", account_id="won-co")
    add_won(session, "W", "won-co", "2023-06-01T00:00:00", 1000)
    # March 2024: D1 $1000 over t1 email, t2 webinar, t3 search; D2 $500 over t4 search, t5 web.
    for event_id, day, campaign_id in (
        ("t1", "01", "c-email"),
        ("t2", "02", "c-web"),
        ("t3", "03", "c-search"),
        ("t4", "12", "c-search"),
        ("t5", "15", "c-web"),
    ):
        add_touch(session, event_id, at(f"2024-03-{day}T09:00:00"), campaign_id, account_id="old")
    d1, d2 = "2024-03-10T00:00:00", "2024-03-20T00:00:00"
    add_won(session, "D1", "old", d1, 100000)
    add_won(session, "D2", "old", d2, 50000)
    credit(session, "first_touch", "D1", d1, [("t1", "c-email", 100000), ("t2", "c-web", 0)])
    credit(session, "first_touch", "D2", d2, [("t4", "c-search", 50000), ("t5", "c-web", 0)])
    credit(
        session,
        "linear",
        "D1",
        d1,
        [("t1", "c-email", 33334), ("t2", "c-web", 33333), ("t3", "c-search", 33333)],
    )
    credit(session, "linear", "D2", d2, [("t4", "c-search", 25000), ("t5", "c-web", 25000)])
    session.add(
        CampaignCostRow(
            event_id="cost-ads",
            campaign_id="c-ads",
            amount_minor=9900,
            currency="USD",
            period_start=date(2024, 3, 5),
            period_end=date(2024, 3, 5),
            reporting_minor=9900,
        )
    )
    session.flush()
    session.add(
        CampaignCostDayRow(
            cost_event_id="cost-ads",
            day=date(2024, 3, 5),
            campaign_id="c-ads",
            cost_minor=9900,
        )
    )
    if not fits:
        return {}
    ids = {
        "markov1": add_fit(
            session, "markov", markov_to_json(fit_markov(PATHS[:2])), fitted="2024-03-01T00:00:00"
        ),
        "shapley": add_fit(
            session, "shapley", shapley_to_json(fit_shapley(PATHS)), fitted="2024-03-02T00:00:00"
        ),
    }
    session.add(
        ModelFitRow(
            model_id="markov", status="failed", requested_at=at("2024-03-03T00:00:00"), error="boom"
        )
    )
    ids["markov2"] = add_fit(
        session, "markov", markov_to_json(MARKOV), fitted="2024-04-02T00:00:00"
    )
    # The markov credits still come from the first snapshot (the worker is behind).
    credit(
        session,
        "markov",
        "D1",
        d1,
        [("t1", "c-email", 30000), ("t2", "c-web", 50000), ("t3", "c-search", 20000)],
        fit_id=ids["markov1"],
    )
    return ids


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    url: str
    fits: dict[str, int]

    def headers(self, scope: str | None) -> dict[str, str]:
        return {} if scope is None else {"Authorization": f"Bearer {self.keys[scope]}"}

    def call(self, method: str, path: str, *, scope: str | None = "read", **kw: Any) -> Any:
        headers = {**self.headers(scope), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def json(self, path: str, **params: Any) -> Any:
        response = self.call("GET", path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def csv(self, path: str, **params: Any) -> list[dict[str, str]]:
        response = self.call("GET", path, params=params, headers={"Accept": "text/csv"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.text)))

    def rows(self, model: type[Any], *where: Any) -> int:
        engine = make_engine(self.url)
        with make_sessionmaker(engine)() as session:
            count = session.scalar(select(func.count()).select_from(model).where(*where))
        engine.dispose()
        return int(count or 0)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def make_api(client: TestClient, url: str, fits: dict[str, int]) -> Api:
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        keys = {
            scope: create_key(session, name=f"{scope}-key", scopes=[scope])
            for scope in ("read", "admin")
        }
    engine.dispose()
    return Api(client, keys, url, fits)


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as session:
        fits = seed(session, settings)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield make_api(client, db_url, fits)


# --- GET /v1/models/{id} ----------------------------------------------------------------


def test_model_detail_shows_the_latest_snapshot(api: Api) -> None:
    markov = api.json("/v1/models/markov")
    assert (markov["id"], markov["kind"], markov["builtin"]) == ("markov", "markov", True)
    assert (markov["status"], markov["progress"], markov["pending_fit"]) == ("ready", None, None)
    # The failed fit is older than the latest done one: nothing to report.
    assert markov["failed_fit"] is None
    snapshot = markov["snapshot"]
    assert snapshot["fit_id"] == api.fits["markov2"]
    assert snapshot["fitted_at"] == "2024-04-02T00:00:00Z"
    assert snapshot["params"] == {"order": 1}
    assert snapshot["inputs"]["won_deals"] == 4
    # Removal effects 1, 3/5, 1/5 sum to 9/5: shares 5/9, 1/3, 1/9.
    assert snapshot["table"] == [
        {"channel": "webinar", "removal_effect": 1.0, "share": 5 / 9},
        {"channel": "email", "removal_effect": 0.6, "share": 1 / 3},
        {"channel": "paid_search", "removal_effect": 0.2, "share": 1 / 9},
    ]
    assert snapshot["conversion_probability"] == 0.5
    summary = markov_to_json(MARKOV)["transition_summary"]
    assert snapshot["transition_summary"] == summary
    assert snapshot["transition_summary"][0] == {
        "from": "(start)",
        "to": "email",
        "count": 4,
        "probability": 0.5,
    }
    assert snapshot["transitions_total"] == len(summary) == 9
    assert (snapshot["exact"], snapshot["max_error"]) == (True, 0.0)

    shapley = api.json("/v1/models/shapley")["snapshot"]
    assert shapley["fit_id"] == api.fits["shapley"]
    # Shapley values 2, 3/2, 1/2 sum to the 4 conversions.
    assert shapley["table"] == [
        {"channel": "webinar", "shapley_value": 2.0, "share": 0.5},
        {"channel": "email", "shapley_value": 1.5, "share": 0.375},
        {"channel": "paid_search", "shapley_value": 0.5, "share": 0.125},
    ]
    assert shapley["conversion_probability"] is None
    assert shapley["transition_summary"] is None

    linear = api.json("/v1/models/linear")
    assert linear == {
        "id": "linear",
        "kind": "positional",
        "params": {"middle": "1"},
        "description": linear["description"],
        "builtin": True,
        "status": "ready",
        "progress": None,
        "snapshot": None,
        "pending_fit": None,
        "failed_fit": None,
    }
    problem(api.call("GET", "/v1/models/nope"), 404)
    problem(api.call("GET", "/v1/models/nul%00"), 404)
    problem(api.call("GET", "/v1/models/markov", scope=None), 401)
    problem(api.call("GET", "/v1/models/markov", scope="admin"), 403)


# --- POST /v1/models/{id}/fit -----------------------------------------------------------


def fit_params(api: Api, fit_id: int) -> tuple[str, dict[str, Any]]:
    engine = make_engine(api.url)
    with make_sessionmaker(engine)() as session:
        row = session.get(ModelFitRow, fit_id)
        assert row is not None
        found = (row.status, json.loads(row.params))
    engine.dispose()
    return found


def test_fit_requests_queue_one_fit_per_model(api: Api) -> None:
    problem(api.call("POST", "/v1/models/markov/fit", scope=None), 401)
    problem(api.call("POST", "/v1/models/markov/fit", scope="read"), 403)

    first = api.call("POST", "/v1/models/markov/fit", scope="admin")
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["model_id"], body["status"]) == ("markov", "requested")
    assert body["fit_id"] > api.fits["markov2"]
    assert fit_params(api, body["fit_id"]) == ("requested", {"order": 1})
    # While it waits for the worker, asking again answers the same fit.
    again = api.call("POST", "/v1/models/markov/fit", scope="admin")
    assert again.status_code == 202
    assert again.json() == body
    detail = api.json("/v1/models/markov")
    assert detail["pending_fit"] == {"id": body["fit_id"], "requested_at": body["requested_at"]}
    assert detail["snapshot"]["fit_id"] == api.fits["markov2"]

    shapley = api.call("POST", "/v1/models/shapley/fit", scope="admin").json()
    assert shapley["fit_id"] not in (body["fit_id"], api.fits["shapley"])
    assert fit_params(api, shapley["fit_id"]) == ("requested", {"characteristic": "conversions"})

    for model_id in ("linear", "nope"):
        found = problem(api.call("POST", f"/v1/models/{model_id}/fit", scope="admin"), 422)
        assert found["errors"][0]["field"] == "path.model_id"
        assert model_id in found["detail"]


# --- PUT and DELETE /v1/models/{id} -----------------------------------------------------


def put(api: Api, model_id: str, body: Any, scope: str = "admin") -> Any:
    return api.call("PUT", f"/v1/models/{model_id}", scope=scope, json=body)


def set_progress(api: Api, model_id: str, status: str, done: int) -> None:
    engine = make_engine(api.url)
    with make_sessionmaker(engine).begin() as session:
        row = session.get(AttributionModelRow, model_id)
        assert row is not None
        row.status, row.progress_done, row.progress_total = status, done, done
    engine.dispose()


def test_custom_model_definition(api: Api) -> None:
    halves = {"weights": {"first": "0.5", "last": "0.50"}, "description": "halves"}
    problem(put(api, "halves", halves, scope="read"), 403)
    created = put(api, "halves", halves)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "id": "halves",
        "kind": "positional",
        "params": {"first": "0.5", "last": "0.5"},
        "description": "halves",
        "builtin": False,
        "status": "computing",
        "progress": {"done": 0, "total": 0},
        "snapshot": None,
        "pending_fit": None,
        "failed_fit": None,
    }
    assert api.json("/v1/models/halves") == created.json()
    # Listed after the built-ins; compared like any model.
    assert [m["id"] for m in api.json("/v1/models")["models"]][-1] == "halves"
    compare = api.json("/v1/reports/compare", **MARCH)
    assert compare["models"][-1] == "halves"
    assert compare["rows"] and all(row["revenue"]["halves"] == "0.00" for row in compare["rows"])

    # The worker finished; a new description alone keeps its credits (and status).
    set_progress(api, "halves", "ready", 2)
    renamed = put(api, "halves", {**halves, "description": "50/50"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["description"] == "50/50"
    assert (renamed.json()["status"], renamed.json()["progress"]) == (
        "ready",
        {"done": 2, "total": 2},
    )
    # New weights: computed again. Non-terminating fractions stay exact.
    thirds = put(api, "halves", {"weights": {"first": "1/3", "middle": "2/3"}})
    assert thirds.status_code == 200
    assert thirds.json()["params"] == {"first": "1/3", "middle": "2/3"}
    assert thirds.json()["description"] == ""
    assert (thirds.json()["status"], thirds.json()["progress"]) == (
        "computing",
        {"done": 0, "total": 0},
    )

    for builtin in ("linear", "time_decay", "markov"):
        found = problem(put(api, builtin, halves), 409)
        assert found["detail"].startswith("built-in models cannot be changed")
    for bad_id in ("Halves", "-halves", "a" * 64, "half ves"):
        found = problem(put(api, bad_id, halves), 422)
        assert found["errors"][0]["field"] == "path.model_id"
    for weights, field in (
        ({"bogus": "1"}, "body.weights"),
        ({"first": "0"}, "body.weights"),
        ({"first": "-1", "last": "2"}, "body.weights"),
        ({}, "body.weights"),
        ({"first": 0.5}, "body.weights.first"),
        ({"first": "1e999999999"}, "body.weights.first"),
        ({"first": "NaN"}, "body.weights.first"),
    ):
        found = problem(put(api, "other", {"weights": weights}), 422)
        assert found["errors"][0]["field"] == field, (weights, found)
    problem(put(api, "other", {"weights": {"first": "1"}, "color": "red"}), 422)
    problem(api.call("GET", "/v1/models/other"), 404)


def test_delete_custom_model_with_its_credits(api: Api) -> None:
    assert put(api, "mine", {"weights": {"last": "1"}}).status_code == 201
    engine = make_engine(api.url)
    with make_sessionmaker(engine).begin() as session:
        credit(session, "mine", "D1", "2024-03-10T00:00:00", [("t3", "c-search", 100000)])
    engine.dispose()
    assert api.rows(CreditRow, CreditRow.model_id == "mine") == 1

    problem(api.call("DELETE", "/v1/models/mine", scope="read"), 403)
    for builtin in ("linear", "shapley"):
        found = problem(api.call("DELETE", f"/v1/models/{builtin}", scope="admin"), 409)
        assert found["detail"].startswith("built-in models cannot be changed")
    problem(api.call("DELETE", "/v1/models/nope", scope="admin"), 404)

    gone = api.call("DELETE", "/v1/models/mine", scope="admin")
    assert (gone.status_code, gone.content) == (204, b"")
    assert api.rows(CreditRow, CreditRow.model_id == "mine") == 0
    assert api.rows(DealAttributionRow, DealAttributionRow.model_id == "mine") == 0
    assert api.rows(AttributionModelRow, AttributionModelRow.model_id == "mine") == 0
    assert api.rows(CreditRow, CreditRow.model_id == "linear") == 5
    problem(api.call("GET", "/v1/models/mine"), 404)
    problem(api.call("DELETE", "/v1/models/mine", scope="admin"), 404)


# --- snapshots in reports -----------------------------------------------------------------


def test_reports_name_the_snapshot_behind_their_credits(api: Api) -> None:
    roi = api.json("/v1/reports/roi", model="markov", **MARCH)
    # The credits were made with the first markov fit, though a newer one exists.
    markov1 = {"fit_id": api.fits["markov1"], "fitted_at": "2024-03-01T00:00:00Z"}
    assert roi["snapshot"] == markov1
    assert roi["totals"]["revenue"] == "1000.00"
    # D2 ($500.00, March) has no markov credit yet: pending, and the report says so.
    assert (roi["status"], roi["totals"]["pending_revenue"]) == ("pending", "500.00")
    # Shapley has a fit but no credits from it yet: its numbers come from no snapshot.
    assert api.json("/v1/reports/roi", model="shapley")["snapshot"] is None
    assert "snapshot" not in api.json("/v1/reports/roi", model="linear")
    assert api.json("/v1/reports/compare")["snapshots"] == {"markov": markov1, "shapley": None}
    assert api.json("/v1/reports/compare", models="linear,first_touch")["snapshots"] == {}
    header = next(
        csv.reader(
            io.StringIO(
                api.call(
                    "GET",
                    "/v1/reports/roi",
                    params={"model": "markov"},
                    headers={"Accept": "text/csv"},
                ).text
            )
        )
    )
    assert header[:3] == ["campaign_id", "campaign_name", "channel"]


# --- GET /v1/reports/compare/diff -----------------------------------------------------------


def test_compare_diff(api: Api) -> None:
    body = api.json("/v1/reports/compare/diff", base="first_touch", other="linear", **MARCH)
    # first_touch credits email 1000.00 (D1) and search 500.00 (D2): 1500.00 in March.
    # linear: email 333.34; web 333.33 + 250.00; search 333.33 + 250.00.
    # Shares of 1500.00: -666.66 -> -0.44444; 583.33 -> 0.388887; 83.33 -> 0.055553.
    # c-ads only has a cost: it moves nothing and is left out.
    assert body == {
        "base": "first_touch",
        "other": "linear",
        "status": {"first_touch": "ready", "linear": "ready"},
        "from": "2024-03-01",
        "to": "2024-04-01",
        "currency": "USD",
        "group_by": "campaign",
        "rows": [
            {
                "campaign_id": "c-email",
                "campaign_name": "email Q1",
                "channel": "email",
                "base_revenue": "1000.00",
                "other_revenue": "333.34",
                "moved": "-666.66",
                "moved_share": -0.4444,
            },
            {
                "campaign_id": "c-web",
                "campaign_name": "webinar Q1",
                "channel": "webinar",
                "base_revenue": "0.00",
                "other_revenue": "583.33",
                "moved": "583.33",
                "moved_share": 0.3889,
            },
            {
                "campaign_id": "c-search",
                "campaign_name": "paid_search Q1",
                "channel": "paid_search",
                "base_revenue": "500.00",
                "other_revenue": "583.33",
                "moved": "83.33",
                "moved_share": 0.0556,
            },
        ],
        "totals": {"base_revenue": "1500.00", "other_revenue": "1500.00", "moved": "0.00"},
        "snapshots": {},
    }
    by_channel = api.json(
        "/v1/reports/compare/diff", base="linear", other="markov", group_by="channel", **MARCH
    )
    # linear 1500.00 in March; markov credits D1 only: email 300.00, webinar 500.00, search 200.00.
    # Moves: email -33.34, webinar -83.33, paid_search -383.33 (of 1500.00).
    assert [(r["channel"], r["moved"], r["moved_share"]) for r in by_channel["rows"]] == [
        ("paid_search", "-383.33", -0.2556),
        ("webinar", "-83.33", -0.0556),
        ("email", "-33.34", -0.0222),
    ]
    assert by_channel["status"] == {"linear": "ready", "markov": "pending"}
    assert by_channel["snapshots"] == {
        "markov": {"fit_id": api.fits["markov1"], "fitted_at": "2024-03-01T00:00:00Z"}
    }
    # A base that credits nothing in range: no share to speak of.
    empty = api.json("/v1/reports/compare/diff", base="w_shaped", other="linear", **MARCH)
    assert {r["moved_share"] for r in empty["rows"]} == {None}
    assert empty["totals"]["moved"] == "1500.00"

    rows = api.csv("/v1/reports/compare/diff", base="first_touch", other="linear", **MARCH)
    assert list(rows[0]) == [
        "campaign_id",
        "campaign_name",
        "channel",
        "base_revenue",
        "other_revenue",
        "moved",
        "moved_share",
    ]
    assert [(r["campaign_id"], r["moved"], r["moved_share"]) for r in rows] == [
        ("c-email", "-666.66", "-0.4444"),
        ("c-web", "583.33", "0.3889"),
        ("c-search", "83.33", "0.0556"),
    ]

    for params, field in (
        ({"base": "nope", "other": "linear"}, "query.base"),
        ({"base": "linear", "other": "nope"}, "query.other"),
        ({"other": "linear"}, "query.base"),
    ):
        found = problem(api.call("GET", "/v1/reports/compare/diff", params=params), 422)
        assert found["errors"][0]["field"] == field
    problem(
        api.call("GET", "/v1/reports/compare/diff", scope=None, params={"base": "a", "other": "b"}),
        401,
    )


# --- the lead score ---------------------------------------------------------------------


def test_account_score(api: Api) -> None:
    body = api.json("/v1/accounts/acme/score")
    # a0 is before the window, a9 in the future; a2 comes through the merged contact k2, a3
    # (its own account and contact k1's) once. c-ghost has no campaign row: (unknown).
    assert [(t["event_id"], t["channel"]) for t in body["journey"]] == [
        ("a1", "email"),
        ("a2", "webinar"),
        ("a3", None),
    ]
    channels = ["email", "webinar", "(unknown)"]
    # (unknown) is not in the fit: the chain stands at webinar, absorption 4/5.
    assert body["probability"] == conversion_probability(MARKOV, channels) == 0.8
    assert body["state"] == "webinar"
    assert body["contributions"] == score_contributions(MARKOV, channels)
    # 4/5 split by removal effect: email 3/5 and webinar 1 -> 3/8 and 5/8 of it.
    assert body["contributions"] == pytest.approx({"email": 0.3, "webinar": 0.5, "(unknown)": 0})
    assert body["snapshot"] == {"fit_id": api.fits["markov2"], "fitted_at": "2024-04-02T00:00:00Z"}
    assert body["account_id"] == "acme" and body["as_of"].endswith("Z")
    assert body["journey"][0]["occurred_at"].endswith("Z")

    delta = api.json("/v1/accounts/delta/score")
    assert ([t["event_id"] for t in delta["journey"]], delta["probability"]) == (["d1"], 0.8)
    beta = api.json("/v1/accounts/beta/score")
    assert beta["probability"] == 4 / 15  # paid_search: 1 of 3 walks on to webinar (4/5)
    # gamma's only touch is older than the lookback: an empty journey, at (start).
    gamma = api.json("/v1/accounts/gamma/score")
    assert (gamma["journey"], gamma["state"], gamma["probability"]) == ([], "(start)", 0.5)
    assert gamma["contributions"] == {}

    problem(api.call("GET", "/v1/accounts/nobody/score"), 404)
    problem(api.call("GET", "/v1/accounts/acme/score", scope=None), 401)
    problem(api.call("GET", "/v1/accounts/acme/score", scope="admin"), 403)


def test_leads_report(api: Api) -> None:
    body = api.json("/v1/reports/leads")
    # won-co has a won deal, gamma no touch in the window, old only a won deal's touches.
    # acme and delta tie at 4/5 (by account id), epsilon 3/5 (email), beta 4/15.
    assert [
        (r["account_id"], r["probability"], r["touches"], r["state"]) for r in body["rows"]
    ] == [
        ("acme", 0.8, 3, "webinar"),
        ("delta", 0.8, 1, "webinar"),
        ("epsilon", 0.6, 1, "email"),
        ("beta", 4 / 15, 1, "paid_search"),
    ]
    acme = api.json("/v1/accounts/acme/score")
    assert body["rows"][0]["last_touch_at"] == acme["journey"][-1]["occurred_at"]
    assert (body["min_score"], body["limit"]) == (0.0, 100)
    assert body["snapshot"]["fit_id"] == api.fits["markov2"]

    top = api.json("/v1/reports/leads", min_score=0.6)
    assert [r["account_id"] for r in top["rows"]] == ["acme", "delta", "epsilon"]
    assert [r["account_id"] for r in api.json("/v1/reports/leads", limit=1)["rows"]] == ["acme"]

    rows = api.csv("/v1/reports/leads", min_score=0.7)
    assert list(rows[0]) == ["account_id", "probability", "touches", "last_touch_at", "state"]
    assert [(r["account_id"], r["probability"], r["touches"]) for r in rows] == [
        ("acme", "0.8", "3"),
        ("delta", "0.8", "1"),
    ]
    for params in ({"min_score": 1.5}, {"min_score": "x"}, {"limit": 0}, {"limit": 1001}):
        problem(api.call("GET", "/v1/reports/leads", params=params), 422)
    problem(api.call("GET", "/v1/reports/leads", scope="admin"), 403)


# --- before the first fit ------------------------------------------------------------------


def test_before_any_fit(sqlite_url: str) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_url)
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine).begin() as session:
        seed(session, settings, fits=False)
        session.add(
            ModelFitRow(
                model_id="markov",
                status="failed",
                requested_at=at("2024-03-03T00:00:00"),
                error="no decided deals",
            )
        )
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        api = make_api(client, sqlite_url, {})
        markov = api.json("/v1/models/markov")
        assert markov["snapshot"] is None
        assert markov["failed_fit"]["error"] == "no decided deals"
        assert api.json("/v1/reports/roi", model="markov")["snapshot"] is None
        assert api.json("/v1/reports/compare")["snapshots"] == {"markov": None, "shapley": None}
        for path in ("/v1/accounts/acme/score", "/v1/reports/leads"):
            found = problem(api.call("GET", path), 409)
            assert "POST /v1/models/markov/fit" in found["detail"]
        # Still 404 for an account nobody touched, fit or not.
        problem(api.call("GET", "/v1/accounts/nobody/score"), 404)
        queued = api.call("POST", "/v1/models/markov/fit", scope="admin")
        assert queued.status_code == 202
        assert api.json("/v1/models/markov")["pending_fit"]["id"] == queued.json()["fit_id"]
