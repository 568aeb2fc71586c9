"""Webhooks through the real ingest app and broker: what is refused publishes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import decode_record
from services.core.settings import Settings
from services.ingest.app import create_app
from tests.conftest import make_settings
from tests.integration.test_ingest import read_topic
from tests.support.signers.generic import standard_headers

pytestmark = pytest.mark.integration

SECRET = "whsec_c2VjcmV0LWZvci13ZWJob29rLXRlc3Rz"
JSON = {"Content-Type": "application/json"}


def touch(n: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"t-{uuid.uuid4().hex}-{n}",
        "type": "touch",
        "occurred_at": "2026-11-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": f"p{n}",
    }


@pytest.fixture()
def settings(pg_url: str, broker: str) -> Settings:
    return make_settings(
        database_url=pg_url, bootstrap=broker, webhook_secret_generic=SECRET, max_body_bytes=4096
    )


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def events_on(settings: Settings) -> list[Any]:
    records = read_topic(settings.kafka_bootstrap_servers, settings.events_topic)
    return [e for r in records for e in decode_record(r.value).events]


def signed(body: bytes, *, now: datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    return {**JSON, **standard_headers(body, secret=secret, now=now or datetime.now(UTC))}


def test_standard_webhooks_delivery_is_published_once_acknowledged(
    client: TestClient, settings: Settings
) -> None:
    sent = [touch(1), touch(2)]
    body = orjson.dumps({"events": sent})
    response = client.post("/v1/webhooks/generic", content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "ignored": 0}
    assert sorted(e.event_id for e in events_on(settings)) == sorted(e["event_id"] for e in sent)


def test_refused_deliveries_publish_nothing(client: TestClient, settings: Settings) -> None:
    body = orjson.dumps(touch())
    now = datetime.now(UTC)
    replay = signed(body, now=now - timedelta(minutes=6))  # captured, sent again later
    oversized = orjson.dumps({"events": [touch(n) for n in range(40)]})
    malformed = b'{"events": [{"type": "touch"'
    invalid = orjson.dumps(
        {
            "event_id": "d1",
            "type": "deal.created",
            "occurred_at": "2026-11-01T10:00:00Z",
            "deal_id": "D",
            "amount": 1.5,
            "currency": "USD",
        }
    )
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("no signature", body, JSON, 401),
        ("bad signature", body, signed(body, secret="whsec_b3RoZXI="), 401),
        ("replayed after the tolerance", body, replay, 401),
        ("from the future", body, signed(body, now=now + timedelta(minutes=6)), 401),
        ("body changed after signing", body + b" ", signed(body), 401),
        ("not JSON content type", body, {**signed(body), "Content-Type": "text/plain"}, 415),
        ("oversized", oversized, signed(oversized), 413),
        ("malformed", malformed, signed(malformed), 400),
        ("invalid event", invalid, signed(invalid), 422),
    ]
    for name, content, headers, status in cases:
        response = client.post("/v1/webhooks/generic", content=content, headers=headers)
        assert response.status_code == status, (name, response.text)
        problem = response.json()
        assert problem["status"] == status and problem["detail"], name
        assert "c2VjcmV0" not in response.text, name  # no secret in any answer
    assert events_on(settings) == []
    metrics = client.get("/metrics").text
    for status, count in (("401", 5), ("415", 1), ("413", 1), ("400", 1), ("422", 1)):
        labels = f'endpoint="webhook_generic",status="{status}"'
        assert f"closedloop_ingest_requests_refused_total{{{labels}}} {count}.0" in metrics
    invalid_answer = client.post("/v1/webhooks/generic", content=invalid, headers=signed(invalid))
    assert {e["field"] for e in invalid_answer.json()["errors"]} == {"amount"}


def test_an_unknown_provider_is_404_and_an_unset_one_401_naming_its_setting(
    pg_url: str, broker: str
) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker)
    body = orjson.dumps(touch())
    with TestClient(create_app(settings)) as client:
        unknown = client.post("/v1/webhooks/zoho", content=body, headers=signed(body))
        assert unknown.status_code == 404 and "generic" in unknown.json()["detail"]
        unset = client.post("/v1/webhooks/generic", content=body, headers=signed(body))
        assert unset.status_code == 401
        assert "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC" in unset.json()["detail"]
    assert events_on(settings) == []


def test_rate_limits_answer_429_and_publish_nothing_over_the_limit(
    pg_url: str, broker: str
) -> None:
    settings = make_settings(
        database_url=pg_url,
        bootstrap=broker,
        webhook_secret_generic=SECRET,
        rate_limit_per_s=0.01,  # no refill within the test
        rate_limit_burst=3,
    )
    engine = make_engine(pg_url)
    with make_sessionmaker(engine).begin() as session:
        key = create_key(session, name=f"limited-{uuid.uuid4().hex[:6]}", scopes=["ingest"])
        other = create_key(session, name=f"other-{uuid.uuid4().hex[:6]}", scopes=["ingest"])
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        hooks = []
        for n in range(5):
            body = orjson.dumps(touch(n))
            hooks.append(client.post("/v1/webhooks/generic", content=body, headers=signed(body)))
        assert [r.status_code for r in hooks] == [202, 202, 202, 429, 429]
        assert int(hooks[3].headers["retry-after"]) >= 1
        bearer = {**JSON, "Authorization": f"Bearer {key}"}
        calls = [
            client.post("/v1/events", content=orjson.dumps(touch(10 + n)), headers=bearer)
            for n in range(4)
        ]
        assert [r.status_code for r in calls] == [202, 202, 202, 429]
        # Each credential has its own bucket.
        fresh = client.post(
            "/v1/events",
            content=orjson.dumps(touch(20)),
            headers={**JSON, "Authorization": f"Bearer {other}"},
        )
        assert fresh.status_code == 202
    assert len(events_on(settings)) == 3 + 3 + 1
