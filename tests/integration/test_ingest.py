"""The ingest service against the real bundled broker and a real key database."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.core.auth import create_key
from services.core.broker import start_bundled_broker
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import EVENT_ADAPTER, decode, decode_record, partition_key
from services.core.settings import Settings
from services.ingest.app import create_app
from services.ingest.routes.webhooks import INLINE_BODY_BYTES
from tests.conftest import make_settings
from tests.support.infra import free_port, running_broker
from tests.support.signers.generic import sign

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def keys(pg_url: str) -> dict[str, str]:
    """An ``ingest`` key and a ``read``-only key in the test database."""
    engine = make_engine(pg_url)
    with make_sessionmaker(engine)() as session:
        made = {
            "ingest": create_key(session, name="ingest-test", scopes=["ingest"]),
            "read": create_key(session, name="read-test", scopes=["read"]),
        }
        session.commit()
    engine.dispose()
    return made


@pytest.fixture()
def settings(pg_url: str, broker: str) -> Settings:
    return make_settings(database_url=pg_url, bootstrap=broker, publish_timeout_s=2.0)


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
    with TestClient(app) as c:
        yield c


def auth(keys: dict[str, str], scope: str = "ingest") -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[scope]}"}


def touch(n: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"t-{uuid.uuid4().hex}-{n}",
        "type": "touch",
        "occurred_at": "2024-03-01T10:00:00+02:00",
        "campaign_id": f"c{n % 7}",
        "contact_id": f"p{n}",
        **fields,
    }


def deal_created(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"d-{uuid.uuid4().hex}",
        "type": "deal.created",
        "occurred_at": "2024-03-02T09:00:00Z",
        "deal_id": "D1",
        "account_id": "A1",
        "amount": "12500.00",
        "currency": "USD",
        **fields,
    }


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record of ``topic``, read from the beginning up to each partition's high watermark.

    The watermark comes from fetch responses: the bundled broker's ListOffsets answers the
    last batch's base offset + 1, so ``end_offsets`` under-counts batched records there.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            marks = [consumer.highwater(tp) for tp in parts]
            if all(
                m is not None and consumer.position(tp) >= m
                for tp, m in zip(parts, marks, strict=True)
            ):
                return records
            assert time.monotonic() < deadline, "could not read the topic to its end"
    finally:
        consumer.close()


def post(client: TestClient, body: Any, keys: dict[str, str], **headers: str) -> Any:
    return client.post(
        "/v1/events",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json", **auth(keys), **headers},
    )


def test_single_event_is_on_the_topic(
    client: TestClient, settings: Settings, keys: dict[str, str], broker: str
) -> None:
    event = deal_created(contact_ids=["p1", "p2"])
    response = post(client, event, keys)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1}
    [record] = read_topic(broker, settings.events_topic)
    parsed = EVENT_ADAPTER.validate_python(event)
    assert decode(record.value) == parsed
    assert record.key == partition_key(parsed) == b"deal:D1"


def test_batch_of_1000_all_acknowledged(
    client: TestClient, settings: Settings, keys: dict[str, str], broker: str
) -> None:
    batch = [touch(n) for n in range(1000)]
    response = post(client, {"events": batch}, keys)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1000}
    records = read_topic(broker, settings.events_topic)
    # Batch records: one per partition the events hash to, not one per event.
    assert 1 <= len(records) <= settings.topic_partitions
    assert all(r.key is None and r.value.startswith(b"[") for r in records)
    on_topic = [e for r in records for e in decode_record(r.value).events]
    assert sorted(e.event_id for e in on_topic) == sorted(e["event_id"] for e in batch)
    # Topic created by the service with the configured partitions, records spread by key.
    assert len({r.partition for r in records}) == settings.topic_partitions


def test_invalid_batch_publishes_nothing(
    client: TestClient, settings: Settings, keys: dict[str, str], broker: str
) -> None:
    assert post(client, touch(), keys).status_code == 202
    batch = [touch(n) for n in range(10)]
    batch[3] = deal_created(amount=12.5)
    batch[5] = {k: v for k, v in touch(5).items() if k != "type"}
    batch[7] = touch(7, type="deal.exploded")
    batch[8] = deal_created(amount="1.005")
    response = post(client, {"events": batch}, keys)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    fields = [e["field"] for e in body["errors"]]
    assert fields == ["events[3].amount", "events[5].type", "events[7].type", "events[8].amount"]
    assert "decimal string" in body["errors"][0]["problem"]
    assert len(read_topic(broker, settings.events_topic)) == 1


def test_single_invalid_event_names_its_fields(client: TestClient, keys: dict[str, str]) -> None:
    response = post(client, deal_created(currency="XYZ", surprise=1), keys)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"currency", "surprise"}
    response = post(client, touch(contact_id=None), keys)
    assert [e["field"] for e in response.json()["errors"]] == ["contact_id", "account_id"]


def test_authentication(client: TestClient, keys: dict[str, str]) -> None:
    body = orjson.dumps(touch())
    json_type = {"Content-Type": "application/json"}
    missing = client.post("/v1/events", content=body, headers=json_type)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    malformed = client.post(
        "/v1/events", content=body, headers={**json_type, "Authorization": "Bearer cl_nope"}
    )
    assert malformed.status_code == 401
    assert "malformed" in malformed.json()["detail"]
    unknown = client.post(
        "/v1/events", content=body, headers={**json_type, "Authorization": "Bearer cl_" + "n" * 43}
    )
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == "unknown or revoked API key"
    read_only = client.post("/v1/events", content=body, headers={**json_type, **auth(keys, "read")})
    assert read_only.status_code == 403
    assert read_only.json()["status"] == 403


def test_content_type(client: TestClient, keys: dict[str, str]) -> None:
    body = orjson.dumps(touch())
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/v1/events", content=body, headers={"Content-Type": content_type, **auth(keys)}
        )
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/events", content=body, headers=auth(keys)).status_code == 415
    ok = client.post(
        "/v1/events",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8", **auth(keys)},
    )
    assert ok.status_code == 202


def test_body_too_large(pg_url: str, broker: str, keys: dict[str, str]) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker, max_body_bytes=2000)
    body = orjson.dumps({"events": [touch(n) for n in range(20)]})
    assert len(body) > 2000
    with TestClient(create_app(settings)) as client:
        assert post(client, touch(), keys).status_code == 202  # the topic exists: 1 record
        declared = post(client, {"events": [touch(n) for n in range(20)]}, keys)
        assert declared.status_code == 413
        assert declared.headers["content-type"] == "application/problem+json"
        # Chunked, with no Content-Length: the bytes read are counted.
        chunked = client.post(
            "/v1/events",
            content=iter([body[:1000], body[1000:]]),
            headers={"Content-Type": "application/json", **auth(keys)},
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413
        assert len(read_topic(broker, settings.events_topic)) == 1


def test_malformed_json(client: TestClient, keys: dict[str, str]) -> None:
    for raw in (b'{"events": [', b"", b"\xff\xfe", b"NaN"):
        response = client.post(
            "/v1/events", content=raw, headers={"Content-Type": "application/json", **auth(keys)}
        )
        assert response.status_code == 400, raw
        assert response.headers["content-type"] == "application/problem+json"


def test_batch_bounds(client: TestClient, keys: dict[str, str]) -> None:
    too_many = post(client, {"events": [touch(n) for n in range(5001)]}, keys)
    assert too_many.status_code == 422
    assert [e["field"] for e in too_many.json()["errors"]] == ["events"]
    for body, field in (
        ({"events": []}, "events"),
        ({"events": {}}, "events"),
        ({"events": [touch()], "extra": 1}, "extra"),
        ([touch()], "body"),
    ):
        response = post(client, body, keys)
        assert response.status_code == 422, body
        assert [e["field"] for e in response.json()["errors"]] == [field]


def test_broker_down_then_back(pg_url: str, keys: dict[str, str]) -> None:
    port = free_port()
    settings = make_settings(
        database_url=pg_url, bootstrap=f"127.0.0.1:{port}", publish_timeout_s=1.0
    )
    with ExitStack() as app_running:
        client = app_running.enter_context(TestClient(create_app(settings)))
        down = post(client, touch(), keys)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        assert down.headers["content-type"] == "application/problem+json"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        with running_broker(port) as bootstrap:
            deadline = time.monotonic() + 15
            accepted: list[str] = []
            while True:
                event = touch()
                status = post(client, event, keys).status_code
                if status != 503:
                    break
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.3)
            assert status == 202
            accepted.append(event["event_id"])
            assert client.get("/readyz").status_code == 200
            on_topic = {
                decode(r.value).event_id for r in read_topic(bootstrap, settings.events_topic)
            }
            assert set(accepted) <= on_topic
            # Close the app first: the broker waits ~5 s for connected clients on SIGTERM.
            app_running.close()


@contextmanager
def killable_broker(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A bundled broker this test may SIGKILL (a crash: no goodbye to connected clients)."""
    proc = start_bundled_broker(port)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def test_broker_crash_and_restart(pg_url: str, keys: dict[str, str]) -> None:
    # The restarted in-memory broker forgets the idempotent producer's id: the service must
    # notice and connect afresh rather than fail forever.
    port = free_port()
    settings = make_settings(
        database_url=pg_url, bootstrap=f"127.0.0.1:{port}", publish_timeout_s=1.0
    )
    with killable_broker(port) as first, TestClient(create_app(settings)) as client:
        assert post(client, touch(), keys).status_code == 202
        first.kill()
        first.wait(5)
        crashed = post(client, touch(), keys)
        assert crashed.status_code == 503
        assert crashed.headers["retry-after"] == "5"
        with killable_broker(port):
            deadline = time.monotonic() + 15
            while True:
                event = touch()
                status = post(client, event, keys).status_code
                if status != 503:
                    break
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.3)
            assert status == 202
            records = read_topic(f"127.0.0.1:{port}", settings.events_topic)
            assert event["event_id"] in {decode(r.value).event_id for r in records}
            partitions = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}")
            try:
                assert len(partitions.partitions_for_topic(settings.events_topic) or ()) == 3
            finally:
                partitions.close()


def test_generic_webhook(client: TestClient, settings: Settings, broker: str) -> None:
    body = orjson.dumps({"events": [touch(1), deal_created()]})
    headers = {"Content-Type": "application/json"}
    good = client.post(
        "/v1/webhooks/generic",
        content=body,
        headers={**headers, "X-Closedloop-Signature": sign(SECRET, body)},
    )
    assert good.status_code == 202, good.text
    assert good.json() == {"accepted": 2, "ignored": 0}
    assert len(read_topic(broker, settings.events_topic)) == 2
    for signature in (sign("other", body), "sha256=zz", "", b"sha256=\xe9"):
        bad = client.post(
            "/v1/webhooks/generic",
            content=body,
            headers={**headers, "X-Closedloop-Signature": signature},
        )
        assert bad.status_code == 401, signature
    assert client.post("/v1/webhooks/generic", content=body, headers=headers).status_code == 401
    invalid = orjson.dumps({"events": [touch(), {"type": "touch"}]})
    signed = client.post(
        "/v1/webhooks/generic",
        content=invalid,
        headers={**headers, "X-Closedloop-Signature": sign(SECRET, invalid)},
    )
    assert signed.status_code == 422
    assert client.post("/v1/webhooks/nope", content=body, headers=headers).status_code == 404
    assert len(read_topic(broker, settings.events_topic)) == 2


def test_webhook_large_signed_batch_is_checked_off_the_loop(
    client: TestClient, settings: Settings, broker: str
) -> None:
    # Above INLINE_BODY_BYTES the signature and validation run in a thread: same answers.
    batch = [touch(n, touch_type="webinar_attended") for n in range(600)]
    body = orjson.dumps({"events": batch})
    assert len(body) > INLINE_BODY_BYTES
    headers = {"Content-Type": "application/json"}
    good = client.post(
        "/v1/webhooks/generic",
        content=body,
        headers={**headers, "X-Closedloop-Signature": sign(SECRET, body)},
    )
    assert good.status_code == 202, good.text
    assert good.json() == {"accepted": 600, "ignored": 0}
    bad = client.post(
        "/v1/webhooks/generic",
        content=body,
        headers={**headers, "X-Closedloop-Signature": sign("other", body)},
    )
    assert bad.status_code == 401
    batch[599] = deal_created(amount=1.5)
    invalid = orjson.dumps({"events": batch})
    refused = client.post(
        "/v1/webhooks/generic",
        content=invalid,
        headers={**headers, "X-Closedloop-Signature": sign(SECRET, invalid)},
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["events[599].amount"]
    records = read_topic(broker, settings.events_topic)
    assert len([e for r in records for e in decode_record(r.value).events]) == 600


def test_webhook_content_type_size_and_metrics(pg_url: str, broker: str) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker, max_body_bytes=2000)
    app = create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
    one = orjson.dumps(touch())
    big = orjson.dumps({"events": [touch(n) for n in range(20)]})
    with TestClient(app) as client:
        wrong_type = client.post(
            "/v1/webhooks/generic",
            content=one,
            headers={"Content-Type": "text/plain", "X-Closedloop-Signature": sign(SECRET, one)},
        )
        assert wrong_type.status_code == 415
        assert wrong_type.headers["content-type"] == "application/problem+json"
        too_large = client.post(
            "/v1/webhooks/generic",
            content=big,
            headers={
                "Content-Type": "application/json",
                "X-Closedloop-Signature": sign(SECRET, big),
            },
        )
        assert too_large.status_code == 413
        ok = client.post(
            "/v1/webhooks/generic",
            content=one,
            headers={
                "Content-Type": "application/json",
                "X-Closedloop-Signature": sign(SECRET, one),
            },
        )
        assert ok.status_code == 202
        assert ok.headers["content-type"] == "application/json"
        metrics = client.get("/metrics").text
        assert 'closedloop_ingest_events_accepted_total{endpoint="webhook_generic"} 1.0' in metrics
        operation = client.get("/openapi.json").json()["paths"]["/v1/webhooks/{provider}"]["post"]
        assert {"provider", "webhook-signature"} <= {p["name"] for p in operation["parameters"]}


def test_webhook_broker_down_is_503(pg_url: str) -> None:
    settings = make_settings(
        database_url=pg_url, bootstrap=f"127.0.0.1:{free_port()}", publish_timeout_s=1.0
    )
    body = orjson.dumps(touch())
    app = create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
    with TestClient(app) as client:
        down = client.post(
            "/v1/webhooks/generic",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Closedloop-Signature": sign(SECRET, body),
            },
        )
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        metrics = client.get("/metrics").text
        assert 'closedloop_ingest_publish_failures_total{endpoint="webhook_generic"} 1.0' in metrics


def test_webhook_without_secret_is_closed(pg_url: str, broker: str) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker)
    body = b"{}"
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/webhooks/generic",
            content=body,
            headers={"Content-Type": "application/json", "X-Closedloop-Signature": sign("", body)},
        )
        assert response.status_code == 401


def test_concurrent_batches(
    client: TestClient, settings: Settings, keys: dict[str, str], broker: str
) -> None:
    def send(worker: int) -> int:
        response = post(client, {"events": [touch(worker * 100 + n) for n in range(100)]}, keys)
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(send, range(8))) == [202] * 8
    records = read_topic(broker, settings.events_topic)
    assert len([e for r in records for e in decode_record(r.value).events]) == 800


def test_health_and_metrics(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert post(client, {"events": [touch(n) for n in range(3)]}, keys).status_code == 202
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'closedloop_ingest_events_accepted_total{endpoint="events"} 3.0' in metrics.text
    assert 'http_requests_total{route="/v1/events",service="ingest",status="202"}' in metrics.text
    assert client.get("/openapi.json").status_code == 200


def test_key_store_down_is_503(broker: str, keys: dict[str, str]) -> None:
    settings = make_settings(database_url="sqlite:////nonexistent-dir/keys.db", bootstrap=broker)
    with TestClient(create_app(settings)) as client:
        response = post(client, touch(), keys)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "database" in ready.json()["detail"]
