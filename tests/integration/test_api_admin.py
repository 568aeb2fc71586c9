"""The admin dead-letter endpoints against the real bundled broker and real databases.

Dead letters are inserted as the worker writes them; a retried one must be on the events topic
exactly as ingest would have published it (canonical bytes, usual key).
"""

from __future__ import annotations

import base64
import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from services.api.app import create_app
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import DeadLetterRow
from services.core.events import (
    EVENT_ADAPTER,
    Event,
    decode_record,
    encode,
    encode_batch,
    partition_key,
)
from services.core.settings import Settings
from tests.conftest import make_settings
from tests.support.infra import free_port

pytestmark = pytest.mark.integration

NOT_JSON = b"{not json"
NOT_UTF8 = b"\xff\xfe{"
MISSING_FIELDS = b'{"type": "touch", "event_id": "half"}'


def make_keys(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        made = {
            "admin": create_key(session, name="admin-test", scopes=["admin"]),
            "read": create_key(session, name="read-test", scopes=["read"]),
        }
    engine.dispose()
    return made


@pytest.fixture(scope="module")
def keys(pg_url: str) -> dict[str, str]:
    return make_keys(pg_url)


@pytest.fixture()
def settings(pg_url: str, broker: str) -> Settings:
    return make_settings(database_url=pg_url, bootstrap=broker)


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def as_(keys: dict[str, str], scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[scope]}"}


def a_touch() -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "event_id": f"t-{uuid.uuid4().hex}",
            "type": "touch",
            "occurred_at": "2024-03-01T10:00:00+02:00",
            "campaign_id": "camp-1",
            "contact_id": "alice",
        }
    )


def add_dead_letters(url: str, topic: str, raws: list[bytes], *, retried: int = -1) -> list[int]:
    """Insert one dead letter per raw value (offsets 0..n-1); return their ids in order."""
    engine = make_engine(url)
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    rows = [
        DeadLetterRow(
            topic=topic,
            partition=1,
            offset=offset,
            raw=raw,
            error="undecodable: test",
            created_at=now,
            retried_at=now if offset == retried else None,
        )
        for offset, raw in enumerate(raws)
    ]
    with make_sessionmaker(engine).begin() as session:
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    engine.dispose()
    return ids


def retry_as_an_operator(client: TestClient, dead_letter_id: int, headers: dict[str, str]) -> Any:
    """POST the retry, and again after ``Retry-After`` while it answers 503 (for up to 60 s).

    A 503 says the broker did not acknowledge in time and nothing was marked retried: what an
    operator does is retry. On a loaded 2-core machine the first publish can miss its bounds
    (kafka-python's bootstrap gives up after 2 s), which is not what these tests are about.
    """
    deadline = time.monotonic() + 60
    while True:
        response = client.post(f"/v1/admin/dead-letters/{dead_letter_id}/retry", headers=headers)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))


def retried_at(url: str, dead_letter_id: int) -> datetime | None:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        value = session.scalar(
            select(DeadLetterRow.retried_at).where(DeadLetterRow.id == dead_letter_id)
        )
    engine.dispose()
    return value


def read_topic(bootstrap: str, topic: str, event_id: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record of ``topic`` once ``event_id`` is among them and each partition is read.

    Partition ends come from the fetch responses' high watermarks, not ``end_offsets`` (the
    bundled broker's ListOffsets under-counts batched partitions).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not (partitions := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            time.sleep(0.1)
        parts = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        while True:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            found = any(orjson.loads(r.value).get("event_id") == event_id for r in records)
            marks = [consumer.highwater(tp) for tp in parts]
            if found and all(
                m is not None and consumer.position(tp) >= m
                for tp, m in zip(parts, marks, strict=True)
            ):
                return records
            assert time.monotonic() < deadline, f"{event_id} not found on {topic}"
    finally:
        consumer.close()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_only_admin_keys_list_or_retry(client: TestClient, keys: dict[str, str]) -> None:
    assert_problem(client.get("/v1/admin/dead-letters"), 401)
    assert_problem(client.get("/v1/admin/dead-letters", headers=as_(keys, "read")), 403)
    assert_problem(client.post("/v1/admin/dead-letters/1/retry"), 401)
    assert_problem(client.post("/v1/admin/dead-letters/1/retry", headers=as_(keys, "read")), 403)
    ok = client.get("/v1/admin/dead-letters", headers=as_(keys, "admin"))
    assert ok.status_code == 200 and "dead_letters" in ok.json()


def test_list_pages_in_id_order_and_hides_retried_ones(
    client: TestClient, keys: dict[str, str], settings: Settings, pg_url: str
) -> None:
    event = a_touch()
    raws = [NOT_JSON, encode(event), MISSING_FIELDS, NOT_UTF8, b"last"]
    ids = add_dead_letters(pg_url, settings.events_topic, raws, retried=2)
    admin = as_(keys, "admin")

    def page(**params: Any) -> Any:
        response = client.get("/v1/admin/dead-letters", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return response

    # Rows of other test modules sharing the database all have lower ids.
    first = page(limit=2, after_id=ids[0] - 1)
    body = first.json()
    assert [d["id"] for d in body["dead_letters"]] == ids[:2]
    assert body["next_after_id"] == ids[1]
    assert f"after_id={ids[1]}" in first.headers["link"] and 'rel="next"' in first.headers["link"]
    bad, good = body["dead_letters"]
    assert bad == {
        "id": ids[0],
        "topic": settings.events_topic,
        "partition": 1,
        "offset": 0,
        "error": "undecodable: test",
        "created_at": "2024-03-01T12:00:00Z",
        "retried_at": None,
        "raw": "{not json",
        "raw_base64": base64.b64encode(NOT_JSON).decode(),
    }
    assert good["raw"] == encode(event).decode()

    second = page(limit=2, after_id=ids[1]).json()  # the retried ids[2] is left out
    assert [d["id"] for d in second["dead_letters"]] == ids[3:5]
    assert second["next_after_id"] is None
    not_utf8 = second["dead_letters"][0]
    assert not_utf8["raw"] is None and base64.b64decode(not_utf8["raw_base64"]) == NOT_UTF8

    everything = page(after_id=ids[0] - 1, include_retried="true").json()
    assert [d["id"] for d in everything["dead_letters"]] == ids
    assert everything["dead_letters"][2]["retried_at"] == "2024-03-01T12:00:00Z"

    csv_page = client.get(
        "/v1/admin/dead-letters",
        params={"after_id": ids[0] - 1, "limit": 2},
        headers={**admin, "Accept": "text/csv"},
    )
    assert csv_page.status_code == 200 and csv_page.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_page.text)))
    assert [int(r["id"]) for r in rows] == ids[:2]
    assert rows[0]["raw"] == "{not json" and rows[0]["retried_at"] == ""
    assert base64.b64decode(rows[1]["raw_base64"]) == encode(event)

    assert_problem(client.get("/v1/admin/dead-letters?limit=0", headers=admin), 422)
    assert_problem(client.get(f"/v1/admin/dead-letters?after_id={2**31}", headers=admin), 422)


def test_retry_republishes_only_a_valid_event_once(
    client: TestClient, keys: dict[str, str], settings: Settings, pg_url: str, broker: str
) -> None:
    event = a_touch()
    not_json, valid, half = add_dead_letters(
        pg_url, settings.events_topic, [NOT_JSON, encode(event), MISSING_FIELDS]
    )
    admin = as_(keys, "admin")

    def retry(dead_letter_id: int, query: str = "") -> Any:
        return client.post(f"/v1/admin/dead-letters/{dead_letter_id}/retry{query}", headers=admin)

    problem = assert_problem(retry(not_json), 422)
    assert [e["field"] for e in problem["errors"]] == ["raw"]
    problem = assert_problem(retry(half), 422)
    assert {e["field"] for e in problem["errors"]} == {"raw.occurred_at", "raw.campaign_id"}
    assert "raw.occurred_at" in problem["detail"]

    accepted = retry(valid)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {
        "id": valid,
        "event_id": event.event_id,
        "event_ids": [event.event_id],
        "republished": True,
    }

    records = read_topic(broker, settings.events_topic, event.event_id)
    assert [(r.key, r.value) for r in records] == [(partition_key(event), encode(event))]
    assert retried_at(pg_url, valid) is not None
    assert retried_at(pg_url, not_json) is None and retried_at(pg_url, half) is None

    again = assert_problem(retry(valid), 409)
    assert "force=true" in again["detail"]
    assert retry(valid, "?force=true").status_code == 202  # harmless: same event_id
    assert_problem(retry(2**31 - 1), 404)
    assert_problem(retry(2**31), 422)  # beyond the id column: invalid, not a database error

    # Each re-publication is in the audit log, newest first; refused retries are not.
    audit = client.get("/v1/admin/audit", params={"action": "dead_letter.retry"}, headers=admin)
    mine = [
        (e["key_name"], e["detail"])
        for e in audit.json()["entries"]
        if e["target"] in {f"dead_letter:{i}" for i in (not_json, valid, half)}
    ]
    assert mine == [
        ("admin-test", {"event_ids": [event.event_id], "force": True}),
        ("admin-test", {"event_ids": [event.event_id], "force": False}),
    ]


def test_retry_of_a_batch_records_dead_letter_republishes_all_or_nothing(
    client: TestClient, keys: dict[str, str], settings: Settings, pg_url: str, broker: str
) -> None:
    # The worker keeps a batch record's invalid items as one JSON array.
    first, second = a_touch(), a_touch()
    still_bad = encode_batch([encode(first), MISSING_FIELDS])
    mended = encode_batch([encode(first), encode(second)])
    bad_id, good_id = add_dead_letters(pg_url, settings.events_topic, [still_bad, mended])
    admin = as_(keys, "admin")

    problem = assert_problem(
        client.post(f"/v1/admin/dead-letters/{bad_id}/retry", headers=admin), 422
    )
    assert {e["field"] for e in problem["errors"]} == {"raw[1].occurred_at", "raw[1].campaign_id"}
    accepted = retry_as_an_operator(client, good_id, admin)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["event_ids"] == [first.event_id, second.event_id]
    consumer = KafkaConsumer(
        settings.events_topic,
        bootstrap_servers=broker,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        republished = [e for r in consumer for e in decode_record(r.value).events]
    finally:
        consumer.close()
    assert republished == [first, second]
    assert retried_at(pg_url, bad_id) is None and retried_at(pg_url, good_id) is not None


def test_broker_down_answers_503_and_marks_nothing(pg_url: str, keys: dict[str, str]) -> None:
    settings = make_settings(
        database_url=pg_url, bootstrap=f"127.0.0.1:{free_port()}", publish_timeout_s=1.0
    )
    (dead_letter_id,) = add_dead_letters(pg_url, settings.events_topic, [encode(a_touch())])
    with TestClient(create_app(settings)) as client:
        response = client.post(
            f"/v1/admin/dead-letters/{dead_letter_id}/retry", headers=as_(keys, "admin")
        )
    assert_problem(response, 503)
    assert response.headers["retry-after"].isdigit()
    assert retried_at(pg_url, dead_letter_id) is None


def test_retry_writes_beside_the_read_only_engine_on_sqlite(sqlite_url: str, broker: str) -> None:
    settings = make_settings(database_url=sqlite_url, bootstrap=broker)
    sqlite_keys = make_keys(sqlite_url)
    event = a_touch()
    (dead_letter_id,) = add_dead_letters(sqlite_url, settings.events_topic, [encode(event)])
    admin = as_(sqlite_keys, "admin")
    with TestClient(create_app(settings)) as client:
        response = retry_as_an_operator(client, dead_letter_id, admin)
        assert response.status_code == 202, response.text
        assert client.get("/v1/admin/dead-letters", headers=admin).json() == {
            "dead_letters": [],
            "next_after_id": None,
        }
        listed = client.get("/v1/admin/dead-letters?include_retried=true", headers=admin).json()
    assert [d["id"] for d in listed["dead_letters"]] == [dead_letter_id]
    assert listed["dead_letters"][0]["retried_at"].endswith("Z")
    assert [r.value for r in read_topic(broker, settings.events_topic, event.event_id)] == [
        encode(event)
    ]
