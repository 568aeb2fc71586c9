"""Cached reports over HTTP: never stale after a projection change, still scoped and checked.

The projection is the hand-built one of ``test_api_reports`` (its ``seed``); a change is made
the way every writer makes one: rows and ``bump_projection_version`` in one transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from services.api.app import create_app
from services.api.cache import CachedReports, ReportCache
from services.api.db import make_read_engine, make_statement_engine
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.version import bump_projection_version
from services.core.settings import Settings
from tests.integration.test_api_reports import JAN, Api, add_deal, attribute, seed

pytestmark = pytest.mark.integration


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        seed(session)
        read_key = create_key(session, name="reader", scopes=["read", "admin"])
        ingest_key = create_key(session, name="ingester", scopes=["ingest"])
        session.commit()
    engine.dispose()
    with TestClient(create_app(Settings(_env_file=None, database_url=db_url))) as client:
        yield Api(
            client,
            {"Authorization": f"Bearer {read_key}"},
            {"Authorization": f"Bearer {ingest_key}"},
            db_url,
        )


def write(api: Api, change: Callable[[Session], None], *, bump: bool = True) -> None:
    """Change the projection in one transaction, giving it a new version unless told not to."""
    engine = make_engine(api.url)
    with make_sessionmaker(engine).begin() as session:
        change(session)
        if bump:
            bump_projection_version(session)
    engine.dispose()


def new_january_deal(session: Session) -> None:
    """D8: $100.00 won 2024-01-20, all of it (under linear) to camp-webinar."""
    closed = "2024-01-20T00:00:00"
    add_deal(session, "D8", closed=closed, amount_minor=10000, reporting_minor=10000, touches=1)
    attribute(session, "linear", "D8", closed, 10000, [("t2", "camp-webinar", "first", 1.0, 10000)])


def revenue(body: dict[str, Any], campaign_id: str) -> Any:
    return next(r["revenue"] for r in body["rows"] if r.get("campaign_id") == campaign_id)


def hits(api: Api) -> int:
    return int(api.client.app.state.reports.cache.hits)  # type: ignore[attr-defined]


def test_a_report_changes_as_soon_as_the_projection_does(api: Api) -> None:
    roi = api.json("/v1/reports/roi", model="linear", **JAN)
    compare = api.json("/v1/reports/compare", **JAN)
    reconciliation = api.json("/v1/reports/reconciliation", **JAN)
    csv_before = api.csv("/v1/reports/roi", model="linear", **JAN)
    before = hits(api)
    assert api.json("/v1/reports/roi", model="linear", **JAN) == roi
    assert hits(api) == before + 1

    # A change whose writer forgot the version is not seen: proof that the body came from
    # the cache (and why every writer must bump).
    write(
        api, lambda s: add_deal(s, "D9", closed="2024-01-21T00:00:00", amount_minor=1), bump=False
    )
    assert api.json("/v1/reports/reconciliation", **JAN) == reconciliation

    write(api, new_january_deal)
    after = api.json("/v1/reports/roi", model="linear", **JAN)
    assert revenue(roi, "camp-webinar") == "333.33"
    assert revenue(after, "camp-webinar") == "433.33"
    assert after["totals"]["revenue"] == "1100.00"
    assert revenue(api.json("/v1/reports/compare", **JAN), "camp-webinar") == {
        "linear": "433.33",
        "first_touch": "0.00",
    }
    assert revenue(compare, "camp-webinar")["linear"] == "333.33"
    # D1, D8, and D9, written earlier without a version, seen now that the version moved.
    assert api.json("/v1/reports/reconciliation", **JAN)["won_deals"] == 3
    webinar = next(
        r
        for r in api.csv("/v1/reports/roi", model="linear", **JAN)
        if "ebinar" in r["campaign_name"]
    )
    assert webinar["revenue"] == "433.33"
    assert csv_before != api.csv("/v1/reports/roi", model="linear", **JAN)


def test_json_and_csv_are_answered_apart(api: Api) -> None:
    for _ in range(2):
        body = api.json("/v1/reports/compare", models="linear", group_by="channel")
        rows = api.csv("/v1/reports/compare", models="linear", group_by="channel")
        assert [r["channel"] for r in rows] == [r["channel"] or "" for r in body["rows"]]
        assert [r["revenue_linear"] for r in rows] == [r["revenue"]["linear"] for r in body["rows"]]
        response = api.get("/v1/reports/compare", accept="text/csv", models="linear")
        assert response.headers["content-disposition"] == 'attachment; filename="compare.csv"'
        assert next(csv.reader(io.StringIO(response.text)))[0] == "campaign_id"


def test_every_request_is_authorised_and_checked_before_the_cache(api: Api) -> None:
    path = "/v1/reports/roi"
    assert api.get(path, model="linear").status_code == 200
    assert api.client.get(path, params={"model": "linear"}).status_code == 401
    assert (
        api.client.get(path, params={"model": "linear"}, headers=api.ingest_only).status_code == 403
    )
    assert api.get(path, model="nope").status_code == 422
    assert api.get(path, model="linear", **{"from": "2024-13-01"}).status_code == 422
    assert api.get(path, model="linear", accept="application/xml").status_code == 406
    # Different parameters are different reports, never one another's body.
    assert api.json(path, model="linear")["model"] == "linear"
    assert api.json(path, model="first_touch")["model"] == "first_touch"
    assert api.json(path, model="")["model"] == "linear"  # empty is the default, as before
    assert api.json(path, model="linear", group_by="channel")["group_by"] == "channel"


def test_model_definitions_change_the_reports(api: Api) -> None:
    def models() -> set[str]:
        return set(api.json("/v1/reports/reconciliation")["models"])

    assert models() == {"linear", "first_touch"}
    assert set(api.json("/v1/reports/compare")["models"]) == {"linear", "first_touch"}
    put = api.client.put("/v1/models/mine", json={"weights": {"last": "1"}}, headers=api.read)
    assert put.status_code == 201, put.text
    assert models() == {"linear", "first_touch", "mine"}
    assert "mine" in api.json("/v1/reports/compare")["models"]
    assert api.client.delete("/v1/models/mine", headers=api.read).status_code == 204
    assert models() == {"linear", "first_touch"}
    assert api.get("/v1/reports/roi", model="mine").status_code == 422


def test_a_failing_version_check_raises_as_sqlalchemy_would(tmp_path: Path) -> None:
    """The check runs on the DBAPI directly; its errors still map to 503 like any other."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"  # no tables at all
    engine = make_statement_engine(url)
    reports = CachedReports(engine, make_sessionmaker(make_read_engine(url)), ReportCache())
    with pytest.raises(OperationalError, match="no such table"):
        reports._current()
    engine.dispose()


def test_database_lost_after_the_key_check_answers_503_not_500() -> None:
    """Found by the chaos suite (database_outage): with the key cached, a report request went
    straight to the version check, whose connection attempt raised the bare DBAPI error
    (outside the conversion to SQLAlchemy's), so every report answered 500 while PostgreSQL
    was down, and the client's next request on that connection was reset."""
    from tests.integration.test_outages import postgres_behind_proxy

    with postgres_behind_proxy() as (direct, via_proxy, proxy):
        engine = make_engine(direct)
        with make_sessionmaker(engine)() as session:
            seed(session)
            key = create_key(session, name="reader", scopes=["read"])
            session.commit()
        engine.dispose()
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(Settings(_env_file=None, database_url=via_proxy))) as client:
            for path in ("/v1/reports/roi", "/v1/reports/funnel", "/v1/reports/pipeline"):
                assert client.get(path, headers=auth).status_code == 200, path  # key cached
                proxy.cut()
                response = client.get(path, headers=auth)
                assert response.status_code == 503, (path, response.text[:300])
                assert response.headers["retry-after"] == "5"
                proxy.restore()
                assert client.get(path, headers=auth).status_code == 200, path


def test_a_database_restart_costs_a_cache_hit_nothing(api: Api) -> None:
    """The version check's pool does not ping connections on checkout: one the database
    dropped (as a restart drops them all) fails its statement, and the check runs again on a
    fresh connection instead of answering 503."""
    if not api.url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop connections")
    before = api.json("/v1/reports/roi", model="linear", **JAN)
    reports: CachedReports = api.client.app.state.reports  # type: ignore[attr-defined]
    assert reports.statements.pool.checkedin() >= 1  # a pooled connection to be dropped
    with psycopg.connect(api.url.replace("+psycopg", ""), autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    hits_before = hits(api)
    response = api.get("/v1/reports/roi", model="linear", **JAN)
    assert response.status_code == 200, response.text[:300]
    assert response.json() == before
    assert hits(api) == hits_before + 1  # served from the cache, after a second check
