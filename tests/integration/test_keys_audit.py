"""Key lifecycle (create with expiry, list, revoke) and the audit log of admin actions.

The CLI runs in process (typer's CliRunner) against a real database; the services are the
real apps; nothing is mocked.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from services.api.app import create_app
from services.attribution.registry import sync_builtin_models
from services.cli.main import app as cli
from services.core.auth import InvalidExpiry, issue_key, parse_expiry
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ApiKeyRow, AuditLogRow
from services.core.settings import Settings
from services.ingest.app import create_app as create_ingest_app
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Cli:
    url: str
    runner: CliRunner

    def __call__(self, *args: str, code: int = 0) -> str:
        result = self.runner.invoke(cli, list(args), env={"CLOSEDLOOP_DATABASE_URL": self.url})
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output

    def key_list(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self("keys", "list")), delimiter="\t"))

    def audit(self) -> list[AuditLogRow]:
        engine = make_engine(self.url)
        with make_sessionmaker(engine)() as session:
            rows = list(session.scalars(select(AuditLogRow).order_by(AuditLogRow.id)))
        engine.dispose()
        return rows


@pytest.fixture()
def run(db_url: str) -> Cli:
    return Cli(db_url, CliRunner())


def test_expiry_syntax() -> None:
    assert parse_expiry("90d", now=NOW) == NOW + timedelta(days=90)
    assert parse_expiry(" 12H ", now=NOW) == NOW + timedelta(hours=12)
    assert parse_expiry("2027-01-01", now=NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_expiry("2026-06-02T00:00:00+02:00", now=NOW) == datetime(
        2026, 6, 1, 22, tzinfo=UTC
    )
    for bad in ("", "0d", "-1d", "90", "d", "1w", "soon", "2026-05-31", "2026-06-02T00:00:00"):
        with pytest.raises(InvalidExpiry):
            parse_expiry(bad, now=NOW)
    with pytest.raises(InvalidExpiry, match="100 years"):
        parse_expiry("999999d", now=NOW)


def test_create_list_and_revoke_keys_with_the_cli(run: Cli) -> None:
    before = datetime.now(UTC)
    secret = run("keys", "create", "--name", "finance", "--scopes", "read", "--expires", "90d")
    secret = secret.strip()
    assert secret.startswith("cl_") and "\n" not in secret
    forever = run("keys", "create", "--name", "ops", "--scopes", "read,admin").strip()
    for args, hint in (
        (["--expires", "soon"], "--expires"),
        (["--expires", "2020-01-01"], "--expires"),
        (["--scopes", "write"], "--scopes"),
    ):
        output = run("keys", "create", "--name", "bad", *args, code=2)
        assert hint in output
    keys = run.key_list()
    assert [(k["id"], k["name"], k["scopes"], k["state"]) for k in keys] == [
        ("1", "finance", "read", "active"),
        ("2", "ops", "read,admin", "active"),
    ]
    assert keys[0]["prefix"] == secret[:10] + "…" and keys[1]["prefix"] == forever[:10] + "…"
    expires = datetime.fromisoformat(keys[0]["expires"])
    assert before + timedelta(days=90) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=90)
    assert keys[1]["expires"] == "-"
    assert secret not in run("keys", "list")

    assert "revoked key 1 (finance)" in run("keys", "revoke", "1")
    assert "already revoked" in run("keys", "revoke", "1")
    assert "no API key with id 7" in run("keys", "revoke", "7", code=1)
    assert [k["state"] for k in run.key_list()] == ["revoked", "active"]

    # An expired key is listed as such.
    engine = make_engine(run.url)
    with make_sessionmaker(engine).begin() as session:
        row = session.get(ApiKeyRow, 2)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    engine.dispose()
    assert [k["state"] for k in run.key_list()] == ["revoked", "expired"]

    audit = run.audit()
    assert [(a.key_id, a.key_name, a.action, a.target) for a in audit] == [
        (None, "cli", "key.create", "key:1"),
        (None, "cli", "key.create", "key:2"),
        (None, "cli", "key.revoke", "key:1"),  # once: the second revoke changed nothing
    ]
    assert '"scopes":["read"]' in audit[0].detail and '"name":"finance"' in audit[0].detail
    assert '"expires_at":"-"' in audit[1].detail


def wait_for_401(call: Any, *, before: int = 200, within_s: float) -> float:
    """Poll ``call`` (answering ``before`` meanwhile) until it answers 401; return how long."""
    start = time.monotonic()
    while True:
        response = call()
        if response.status_code == 401:
            return time.monotonic() - start
        assert response.status_code == before, response.text
        assert time.monotonic() - start < within_s, f"still {response.status_code}"
        time.sleep(0.2)


def test_a_revoked_or_expired_key_stops_working_within_seconds(pg_url: str, broker: str) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker)
    assert settings.api_key_cache_s == 5.0  # the default, and its bound
    with pytest.raises(ValueError):
        Settings(_env_file=None, api_key_cache_s=60)
    run = Cli(pg_url, CliRunner())
    revoked = run("keys", "create", "--name", "soon-revoked", "--scopes", "read,ingest").strip()
    key_id = run.key_list()[-1]["id"]
    engine = make_engine(pg_url)
    with make_sessionmaker(engine).begin() as session:
        sync_builtin_models(session, settings)
        expiring = issue_key(
            session,
            name="soon-expired",
            scopes=["read"],
            expires_at=datetime.now(UTC) + timedelta(seconds=2),
        ).secret
        expired = issue_key(
            session, name="expired", scopes=["read"], expires_at=datetime.now(UTC)
        ).secret
    engine.dispose()

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with TestClient(create_app(settings)) as api, TestClient(create_ingest_app(settings)) as ingest:
        assert api.get("/v1/models", headers=bearer(expired)).status_code == 401

        def models(key: str) -> Any:
            return lambda: api.get("/v1/models", headers=bearer(key))

        def events() -> Any:  # an empty batch: authenticated, then refused as invalid (422)
            return ingest.post("/v1/events", json={"events": []}, headers=bearer(revoked))

        # Both services now hold the keys in their caches as valid.
        assert models(revoked)().status_code == 200 and events().status_code == 422
        assert models(expiring)().status_code == 200
        run("keys", "revoke", key_id)
        revoked_after = wait_for_401(models(revoked), within_s=7)
        wait_for_401(events, before=422, within_s=7)
        expired_after = wait_for_401(models(expiring), within_s=9)
    assert revoked_after <= settings.api_key_cache_s + 1
    assert expired_after <= 2 + settings.api_key_cache_s + 1


@dataclass
class AdminApi:
    client: TestClient
    admin: dict[str, str]
    read: dict[str, str]
    admin_id: int


@pytest.fixture()
def admin_api(db_url: str) -> Iterator[AdminApi]:
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as session:
        sync_builtin_models(session, settings)
        admin = issue_key(session, name="alice", scopes=["admin"])
        read = issue_key(session, name="reader", scopes=["read"])
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield AdminApi(
            client,
            {"Authorization": f"Bearer {admin.secret}"},
            {"Authorization": f"Bearer {read.secret}"},
            admin.key_id,
        )


def test_admin_actions_are_audited_and_listed(admin_api: AdminApi) -> None:
    api, admin = admin_api.client, admin_api.admin
    weights = {"weights": {"first": "1/2", "last": "1/2"}, "description": "halves"}
    assert api.put("/v1/models/halves", json=weights, headers=admin).status_code == 201
    assert api.put("/v1/models/linear", json=weights, headers=admin).status_code == 409
    first = api.post("/v1/models/markov/fit", headers=admin).json()["fit_id"]
    assert api.post("/v1/models/markov/fit", headers=admin).json()["fit_id"] == first
    assert api.delete("/v1/models/halves", headers=admin).status_code == 204
    assert api.delete("/v1/models/halves", headers=admin).status_code == 404

    body = api.get("/v1/admin/audit", headers=admin).json()
    entries = body["entries"]
    # Newest first; refused actions (409, 404) changed nothing and are not recorded.
    assert [(e["key_id"], e["key_name"], e["action"], e["target"]) for e in entries] == [
        (admin_api.admin_id, "alice", "model.delete", "model:halves"),
        (admin_api.admin_id, "alice", "model.fit", "model:markov"),
        (admin_api.admin_id, "alice", "model.fit", "model:markov"),
        (admin_api.admin_id, "alice", "model.define", "model:halves"),
    ]
    assert [e["detail"] for e in entries] == [
        # The stored (normalised, exact) weights: 1/2 is 0.5.
        {"weights": {"first": "0.5", "last": "0.5"}, "description": "halves"},
        {"fit_id": first, "queued": False},
        {"fit_id": first, "queued": True},
        {"weights": {"first": "0.5", "last": "0.5"}, "description": "halves", "created": True},
    ]
    assert body["next_before_id"] is None
    assert all(e["at"].endswith("Z") for e in entries)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)

    page = api.get("/v1/admin/audit", params={"limit": 3}, headers=admin)
    assert [e["id"] for e in page.json()["entries"]] == ids[:3]
    assert page.json()["next_before_id"] == ids[2]
    assert f"before_id={ids[2]}" in page.headers["link"]
    rest = api.get("/v1/admin/audit", params={"before_id": ids[2]}, headers=admin).json()
    assert ([e["id"] for e in rest["entries"]], rest["next_before_id"]) == (ids[3:], None)
    fits = api.get("/v1/admin/audit", params={"action": "model.fit"}, headers=admin).json()
    assert [e["id"] for e in fits["entries"]] == ids[1:3]

    rows = list(
        csv.DictReader(
            io.StringIO(api.get("/v1/admin/audit", headers={**admin, "Accept": "text/csv"}).text)
        )
    )
    assert [(r["action"], r["key_name"], r["key_id"]) for r in rows][0] == (
        "model.delete",
        "alice",
        str(admin_api.admin_id),
    )
    assert rows[1]["detail"] == f'{{"fit_id":{first},"queued":false}}'

    assert api.get("/v1/admin/audit").status_code == 401
    assert api.get("/v1/admin/audit", headers=admin_api.read).status_code == 403
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"before_id": 0},
        {"before_id": 2**31},
        {"action": "key\x00.create"},  # found by schemathesis: a 500 on PostgreSQL
        {"action": "Key Create"},
    ):
        refused = api.get("/v1/admin/audit", params=params, headers=admin)
        assert refused.status_code == 422, params
        assert refused.headers["content-type"] == "application/problem+json"


def test_the_dev_key_of_up_is_audited_too(sqlite_url: str) -> None:
    from services.cli.stack import _migrate_and_key

    secret = _migrate_and_key(Settings(_env_file=None, database_url=sqlite_url))
    run = Cli(sqlite_url, CliRunner())
    assert [(k["name"], k["scopes"], k["state"]) for k in run.key_list()] == [
        ("dev (closedloop up)", "ingest,read,admin", "active")
    ]
    assert run.key_list()[0]["prefix"] == secret[:10] + "…"
    assert [(a.key_name, a.action, a.target) for a in run.audit()] == [
        ("cli", "key.create", "key:1")
    ]
