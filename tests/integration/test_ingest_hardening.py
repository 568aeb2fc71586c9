"""Ingest under realistic and hostile input (issue 9): every refusal names its field, nothing
refused reaches the topic, credentials are checked before any lookup, and no request a client
can send is answered 500. Real broker, real key database (PostgreSQL)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import decode_record
from services.core.http import KeyStore
from services.core.settings import Settings
from services.ingest.app import create_app
from tests.conftest import make_settings
from tests.integration.test_ingest import killable_broker, read_topic
from tests.support.infra import free_port
from tests.support.signers.generic import sign

pytestmark = pytest.mark.integration

SECRET = "hardening-secret"
AT = "2026-03-01T10:00:00Z"


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    engine = make_engine(pg_url)
    with make_sessionmaker(engine)() as session:
        made = create_key(session, name="hardening", scopes=["ingest"])
        session.commit()
    engine.dispose()
    return made


@pytest.fixture()
def app_settings(pg_url: str, broker: str) -> Settings:
    return make_settings(database_url=pg_url, bootstrap=broker, publish_timeout_s=2.0)


@pytest.fixture()
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings.model_copy(update={"webhook_secret_generic": SECRET}))
    with TestClient(app) as c:
        yield c


def event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": event_type, "occurred_at": AT, **fields}


def touch(**fields: Any) -> dict[str, Any]:
    return event("touch", campaign_id="c1", contact_id="p1", **fields)


def post(client: TestClient, key: str, body: Any) -> Any:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return client.post("/v1/events", content=orjson.dumps(body), headers=headers)


def published(broker: str, topic: str) -> list[str]:
    return [e.event_id for r in read_topic(broker, topic) for e in decode_record(r.value).events]


# -- cross-field rules name their field (item 9) ----------------------------------------------

COST = {"campaign_id": "c1", "amount": "100.00", "currency": "USD"}
FX = {"date": "2026-03-01", "base": "EUR", "quote": "USD", "rate": "1.08"}
CROSS_FIELD = [
    (event("fx.rate", **{**FX, "rate": "0"}), ["rate"], "more than 0"),
    (event("fx.rate", **{**FX, "rate": "0.00"}), ["rate"], "more than 0"),
    (event("fx.rate", **{**FX, "quote": "EUR"}), ["quote"], "differ from base"),
    (
        event("campaign.cost", **COST, period_start="2026-03-10", period_end="2026-03-01"),
        ["period_end"],
        "must not be before period_start",
    ),
    (event("deal.updated", deal_id="D1", stage=None), ["stage"], "must not be null"),
    (
        event("deal.updated", deal_id="D1", stage=None, account_id=None),
        ["stage", "account_id"],
        "must not be null",
    ),
    (
        event("deal.updated", deal_id="D1"),
        ["amount", "stage", "account_id", "contact_ids"],
        "at least one of",
    ),
    (event("deal.closed_won", deal_id="D1", amount="5.00"), ["currency"], "required with amount"),
    (event("deal.updated", deal_id="D1", currency="USD"), ["amount"], "required with currency"),
    (event("touch", campaign_id="c1"), ["contact_id", "account_id"], "at least one"),
    (
        event("contact.merged", contact_id="p1", merged_contact_id="p1"),
        ["merged_contact_id"],
        "must differ",
    ),
]


@pytest.mark.parametrize(("bad", "fields", "words"), CROSS_FIELD)
def test_cross_field_errors_name_the_field_and_publish_nothing(
    client: TestClient,
    key: str,
    app_settings: Settings,
    broker: str,
    bad: dict[str, Any],
    fields: list[str],
    words: str,
) -> None:
    sentinel = touch()
    assert post(client, key, sentinel).status_code == 202  # the topic exists, holding one event

    single = post(client, key, bad)
    assert single.status_code == 422, single.text
    assert single.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in single.json()["errors"]] == fields
    assert all(words in e["problem"] for e in single.json()["errors"])

    batch = post(client, key, {"events": [touch(), touch(), touch(), bad]})
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == [f"events[3].{f}" for f in fields]
    assert published(broker, app_settings.events_topic) == [sentinel["event_id"]]


# -- conflicting copies of an event_id in one request (item 5) --------------------------------


def test_conflicting_copies_are_refused_and_identical_ones_accepted(
    client: TestClient, key: str, app_settings: Settings, broker: str
) -> None:
    deal = event("deal.created", deal_id="D7", account_id="A7", amount="1000.00", currency="USD")
    changed = {**deal, "amount": "2000.00"}
    refused = post(client, key, {"events": [deal, touch(), changed]})
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "events[2].event_id"
    assert error["type"] == "event_id_conflict" and "events[0]" in error["problem"]
    assert published(broker, app_settings.events_topic) == []

    duplicates = post(client, key, {"events": [deal, touch(), dict(deal)]})
    assert duplicates.status_code == 202
    assert duplicates.json() == {"accepted": 3}
    assert published(broker, app_settings.events_topic).count(deal["event_id"]) == 2


def test_the_generic_webhook_refuses_conflicting_copies_too(
    client: TestClient, app_settings: Settings, broker: str
) -> None:
    first = touch()
    body = orjson.dumps({"events": [first, {**first, "campaign_id": "c9"}]})
    response = client.post(
        "/v1/webhooks/generic",
        content=body,
        headers={"Content-Type": "application/json", "X-Closedloop-Signature": sign(SECRET, body)},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["events[1].event_id"]
    assert published(broker, app_settings.events_topic) == []


# -- credentials are checked before any lookup (item 6) ---------------------------------------


@pytest.mark.parametrize(
    "credential",
    [
        "cl_x",
        "x" * 100_000,
        "cl_" + "a" * 42,
        "cl_" + "a" * 44,
        "cl_" + "a" * 42 + "!",
        "CL_" + "a" * 43,
        "cl_" + "a" * 43 + "\x00",
    ],
)
def test_malformed_credentials_are_refused_before_any_lookup(broker: str, credential: str) -> None:
    # The key database is unreachable: a lookup would answer 503, a refusal before it 401.
    settings = make_settings(database_url="sqlite:////nonexistent-dir/keys.db", bootstrap=broker)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {credential}"}
    with TestClient(create_app(settings)) as client:
        refused = client.post("/v1/events", content=orjson.dumps(touch()), headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "malformed API key" in refused.json()["detail"]
        assert credential not in refused.text  # never echoed
        well_formed = "cl_" + secrets.token_urlsafe(32)
        looked_up = post(client, well_formed, touch())
        assert looked_up.status_code == 503  # the shape is right: it reached the key store


def test_the_key_cache_is_bounded_and_keeps_known_keys(pg_url: str, key: str) -> None:
    engine = make_engine(pg_url)
    store = KeyStore(make_sessionmaker(engine), max_known=10, max_unknown=50)
    try:
        known = store.principal(key)
        assert known is not None and known.name == "hardening"
        for _ in range(500):
            assert store.principal("cl_" + secrets.token_urlsafe(32)) is None
        assert len(store) == 51  # 50 unknown (the latest) + 1 known
        assert store.principal(key) == known
    finally:
        engine.dispose()


# -- a broker gone while nothing is published (item 7) ----------------------------------------


def test_readiness_notices_a_broker_gone_idle_then_requests_fail_fast(
    pg_url: str, key: str
) -> None:
    # Nobody publishes when the broker dies: readiness (never blocking) finds out with a
    # background metadata check, and the next client gets its 503 at once, not after the
    # 5 s publish timeout.
    port = free_port()
    settings = make_settings(
        database_url=pg_url, bootstrap=f"127.0.0.1:{port}", publish_timeout_s=5.0
    )
    with killable_broker(port) as broker, TestClient(create_app(settings)) as client:
        assert post(client, key, touch()).status_code == 202
        assert client.get("/readyz").status_code == 200
        broker.kill()
        broker.wait(5)
        deadline = time.monotonic() + 10
        while True:
            started = time.perf_counter()
            ready = client.get("/readyz")
            assert time.perf_counter() - started < 0.5
            if ready.status_code == 503:
                break
            assert ready.status_code == 200 and time.monotonic() < deadline
            time.sleep(0.2)
        assert "broker" in ready.json()["detail"]
        started = time.perf_counter()
        down = post(client, key, touch())
        assert down.status_code == 503 and time.perf_counter() - started < 1.0
        assert down.headers["retry-after"] == "5"


# -- nothing a client sends is a 500 ----------------------------------------------------------

HOSTILE_BODIES = [
    b"\xff\xfe\x00",
    b'{"event_id": "\xed\xa0\x80"}',
    b'{"event_id": "\\ud800"}',
    b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b'{"event_id": 123456789012345678901234567890123456789}',
    b'{"event_id": 1e400}',
    b'{"events": [{"type": ["touch"]}, {"type": {"a": 1}}, {"type": null}, {"type": 1}]}',
    b'{"type": "touch", "type": "deal.created"}',
    b'{"amount": "5", "amount": 5, "type": "deal.created"}',
    b'{"events": [1, "x", null, true, [], 1.5e300]}',
    b"null",
    b"[]",
    b'"x"',
    b"",
    b'{"events": null}',
    b'{"type": "fx.rate", "rate": "9' + b"9" * 39 + b'", "date": "2026-01-01", '
    b'"base": "EUR", "quote": "USD", "event_id": "x", "occurred_at": "2026-01-01T00:00:00Z"}',
    b'{"type": "touch", "occurred_at": "9999-12-31T23:59:59-23:59", "event_id": "x", '
    b'"campaign_id": "c", "contact_id": "p"}',
    b'{"type": "campaign.cost", "event_id": "x", "occurred_at": "2026-01-01T00:00:00Z", '
    b'"campaign_id": "c", "amount": "1", "currency": "USD", '
    b'"period_start": "2200-12-31", "period_end": "2200-12-31"}',
]


@pytest.mark.parametrize("raw", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_are_4xx_problems(client: TestClient, key: str, raw: bytes) -> None:
    for content_type in ("application/json", "application/json; charset=latin-1"):
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {key}"}
        response = client.post("/v1/events", content=raw, headers=headers)
        assert 400 <= response.status_code < 500 or response.status_code == 202, response.text
        if response.status_code != 202:
            assert response.headers["content-type"] == "application/problem+json"
        signed = {"Content-Type": content_type, "X-Closedloop-Signature": sign(SECRET, raw)}
        webhook = client.post("/v1/webhooks/generic", content=raw, headers=signed)
        assert 400 <= webhook.status_code < 500 or webhook.status_code == 202, webhook.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/xml"},
        {"Content-Type": "application/json", "Content-Length": "-1"},
        {"Content-Type": "application/json", "Content-Length": "abc"},
        {"Content-Type": "application/json", "Authorization": "Bearer"},
        {"Content-Type": "application/json", "Authorization": "Basic dXNlcjpwYXNz"},
        {"Content-Type": "application/json", "Authorization": b"Bearer cl_\xe9\xe9"},
    ],
)
def test_hostile_headers_are_4xx_problems(client: TestClient, headers: dict[str, Any]) -> None:
    response = client.post("/v1/events", content=b"{}", headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["touch", "deal.created", "fx.rate", "USD", "1.00", AT, "2026-03-01"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["type", "event_id", "occurred_at", "amount", "currency", "rate", "events", "x"]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=JSON)
def test_arbitrary_json_is_never_a_500(client: TestClient, key: str, body: Any) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    raw = json.dumps(body).encode()  # the standard library writes integers of any size
    response = client.post("/v1/events", content=raw, headers=headers)
    assert response.status_code in {202, 400, 413, 422}, (body, response.text)


VALID = [
    touch(touch_type="form_fill", lead_created=True),
    event("deal.created", deal_id="D1", account_id="A1", amount="12.50", currency="USD"),
    event("deal.updated", deal_id="D1", amount="12.50", currency="JPY", stage="won"),
    event("deal.closed_won", deal_id="D1", amount="1.125", currency="KWD"),
    event("fx.rate", **FX),
    event("campaign.cost", **COST, period_start="2026-03-01", period_end="2026-03-31"),
    event("contact.upserted", contact_id="p1", account_id=None, lifecycle_stage="mql"),
    event("contact.merged", contact_id="p1", merged_contact_id="p2"),
    event("campaign.upserted", campaign_id="c1", name="Webinar", channel="webinar"),
]
NUMBERISH = st.text(alphabet=st.characters(categories=["Nd", "No", "Pd", "Po", "Zs"]), max_size=6)
VALUES = JSON | NUMBERISH | st.from_regex(r"[0-9+\-.eE_ ]{0,8}", fullmatch=True)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from(VALID),
    field=st.sampled_from(sorted({k for e in VALID for k in e})),
    value=VALUES,
)
def test_any_one_field_changed_is_never_a_500(
    client: TestClient, key: str, base: dict[str, Any], field: str, value: Any
) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    body = {"events": [{**base, field: value}]}
    response = client.post("/v1/events", content=json.dumps(body).encode(), headers=headers)
    assert response.status_code in {202, 422}, (body, response.text)
    if response.status_code == 422:
        assert all(e["field"].startswith("events[0]") for e in response.json()["errors"])
