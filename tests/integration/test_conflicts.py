"""Conflicting copies of an ``event_id`` (contract §1; issue 9, item 5), on the real broker and
databases: the first accepted copy is stored and used by every report; later, different copies
are recorded once each and listed to admins at ``GET /v1/admin/conflicts``; replays add nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.api.app import create_app as create_api
from services.attribution.batch import Record, apply_batch
from services.attribution.worker import Worker
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import DeadLetterRow, DirtyDealRow, EventConflictRow, EventRow
from services.core.settings import Settings
from services.ingest.app import create_app as create_ingest
from tests.conftest import make_settings
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration


def touch(campaign: str) -> dict[str, Any]:
    # Both copies concern contact p1: same partition key, so the log keeps request order.
    return {
        "event_id": "touch-1",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": campaign,
        "contact_id": "p1",
    }


def won(amount: str) -> dict[str, Any]:
    return {
        "event_id": "d1-won",
        "type": "deal.closed_won",
        "occurred_at": "2026-03-10T10:00:00Z",
        "deal_id": "D1",
        "amount": amount,
        "currency": "USD",
    }


FIRST = [
    {
        "event_id": "camp-ads",
        "type": "campaign.upserted",
        "occurred_at": "2026-01-01T00:00:00Z",
        "campaign_id": "ads",
        "name": "Ads",
        "channel": "paid_search",
    },
    {
        "event_id": "camp-mail",
        "type": "campaign.upserted",
        "occurred_at": "2026-01-01T00:00:00Z",
        "campaign_id": "mail",
        "name": "Mail",
        "channel": "email",
    },
    {
        "event_id": "p1-upsert",
        "type": "contact.upserted",
        "occurred_at": "2026-02-01T00:00:00Z",
        "contact_id": "p1",
        "account_id": "A1",
    },
    {
        "event_id": "d1-created",
        "type": "deal.created",
        "occurred_at": "2026-03-05T10:00:00Z",
        "deal_id": "D1",
        "account_id": "A1",
        "amount": "1000.00",
        "currency": "USD",
    },
    touch("ads"),
    won("1000.00"),
]
# The same two event ids with other content, and one identical copy (a plain duplicate).
SECOND = [touch("mail"), won("2000.00"), FIRST[2]]


def canonical(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


@pytest.fixture()
def stack(pg_url: str, broker: str) -> Iterator[dict[str, Any]]:
    settings = make_settings(database_url=pg_url, bootstrap=broker)
    engine = make_engine(pg_url)
    with make_sessionmaker(engine).begin() as session:
        key = create_key(session, name="conflicts", scopes=["ingest", "read", "admin"])
        reader = create_key(session, name="conflicts-read", scopes=["read"])
    with TestClient(create_ingest(settings)) as ingest, TestClient(create_api(settings)) as api:
        yield {
            "settings": settings,
            "ingest": ingest,
            "api": api,
            "auth": {"Authorization": f"Bearer {key}"},
            "read": {"Authorization": f"Bearer {reader}"},
            "sessions": make_sessionmaker(engine),
        }
    engine.dispose()


def send(stack: dict[str, Any], events: list[dict[str, Any]]) -> None:
    response = stack["ingest"].post("/v1/events", json={"events": events}, headers=stack["auth"])
    assert response.status_code == 202, response.text


def consume(settings: Settings) -> None:
    Worker(settings).run(idle_exit_s=3)


def conflict_rows(sessions: sessionmaker[Session]) -> list[tuple[str, str, int]]:
    with sessions() as session:
        return [
            (r.event_id, orjson.loads(r.payload)["event_id"], r.copies)
            for r in session.scalars(select(EventConflictRow).order_by(EventConflictRow.event_id))
        ]


def test_later_conflicting_copies_are_listed_and_never_used(stack: dict[str, Any]) -> None:
    settings, api, auth = stack["settings"], stack["api"], stack["auth"]
    send(stack, FIRST)
    consume(settings)
    send(stack, SECOND)
    consume(settings)

    with stack["sessions"]() as session:
        stored = dict(session.execute(select(EventRow.event_id, EventRow.payload)).all())
    assert orjson.loads(stored["touch-1"]) == canonical(touch("ads"))
    assert orjson.loads(stored["d1-won"]) == canonical(won("1000.00"))

    # Reports use the first copies: the deal is worth 1000.00, all of it to "ads".
    deal = api.get("/v1/deals/D1/attribution?model=linear", headers=auth).json()
    assert deal["deal"]["reporting_amount"] == "1000.00"
    assert [(t["event_id"], t["campaign_id"], t["credit"]) for t in deal["journey"]] == [
        ("touch-1", "ads", "1000.00")
    ]
    assert api.get("/v1/reports/reconciliation", headers=auth).json()["closed_won_revenue"] == (
        "1000.00"
    )

    body = api.get("/v1/admin/conflicts", headers=auth).json()
    assert body["next_after_id"] is None
    listed = {c["event_id"]: c for c in body["conflicts"]}
    assert set(listed) == {"touch-1", "d1-won"}  # the identical contact copy is no conflict
    t = listed["touch-1"]
    assert t["stored_payload"] == canonical(touch("ads"))
    assert t["conflicting_payload"] == canonical(touch("mail"))
    assert t["copies"] == 1 and t["partition"] is not None and t["offset"] is not None
    assert t["first_seen_at"] == t["last_seen_at"]
    assert listed["d1-won"]["conflicting_payload"]["amount"] == "2000.00"

    # Admin only; CSV like the other admin lists; paged.
    assert api.get("/v1/admin/conflicts", headers=stack["read"]).status_code == 403
    page = api.get("/v1/admin/conflicts?limit=1", headers=auth)
    assert len(page.json()["conflicts"]) == 1 and 'rel="next"' in page.headers["link"]
    rest = api.get(f"/v1/admin/conflicts?after_id={page.json()['next_after_id']}", headers=auth)
    assert len(rest.json()["conflicts"]) == 1
    text = api.get("/v1/admin/conflicts", headers={**auth, "Accept": "text/csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["event_id"] for r in rows} == {"touch-1", "d1-won"}
    by_id = {r["event_id"]: r for r in rows}
    assert orjson.loads(by_id["touch-1"]["conflicting_payload"])["campaign_id"] == "mail"
    metrics = api.get("/metrics").text
    assert "closedloop_event_conflicts 2.0" in metrics
    assert "closedloop_event_conflict_copies 2.0" in metrics
    # The recompute queues are drained (the worker went idle) and scraped from the database.
    assert 'closedloop_recompute_queued{queue="deals"} 0.0' in metrics
    with stack["sessions"]() as session, session.begin():
        marked = datetime.now(UTC) - timedelta(seconds=90)
        session.add(DirtyDealRow(deal_id="waiting", marked_at=marked))
    metrics = api.get("/metrics").text
    assert 'closedloop_recompute_queued{queue="deals"} 1.0' in metrics
    (age_line,) = [
        line for line in metrics.splitlines() if line.startswith("closedloop_recompute_oldest_s")
    ]
    age = float(age_line.split()[1])
    assert 90 <= age < 200
    consume(settings)  # the worker recomputes it (a deal without events: nothing to write)
    assert 'closedloop_recompute_queued{queue="deals"} 0.0' in api.get("/metrics").text

    # The same conflicting copy sent again is a new arrival: counted, no new row.
    send(stack, SECOND[:1])
    consume(settings)
    assert conflict_rows(stack["sessions"]) == [("d1-won", "d1-won", 1), ("touch-1", "touch-1", 2)]
    again = api.get("/v1/admin/conflicts?event_id=touch-1", headers=auth).json()["conflicts"]
    assert again[0]["copies"] == 2 and again[0]["last_seen_at"] >= again[0]["first_seen_at"]
    for params in ({"event_id": "touch\x001"}, {"event_id": ""}, {"after_id": 2**31}):
        refused = api.get("/v1/admin/conflicts", params=params, headers=auth)
        assert refused.status_code == 422, params  # NUL: PostgreSQL would fail, a 500
        assert refused.headers["content-type"] == "application/problem+json"

    # A replay of the whole topic (a new consumer group reads it from the start) adds nothing.
    replay = settings.model_copy(update={"consumer_group": settings.consumer_group + "-replay"})
    consume(replay)
    assert conflict_rows(stack["sessions"]) == [("d1-won", "d1-won", 1), ("touch-1", "touch-1", 2)]
    deal = api.get("/v1/deals/D1/attribution?model=linear", headers=auth).json()
    assert deal["journey"][0]["campaign_id"] == "ads"


# -- within one batch: log order decides, not the order of the poll -------------------------

NOW = datetime(2026, 3, 20, tzinfo=UTC)


def record(partition: int, offset: int, item: dict[str, Any], topic: str = "t") -> Record:
    return Record(topic, partition, offset, orjson.dumps(item))


def in_one_batch(url: str, records: list[Record]) -> tuple[dict[str, Any], list[Any]]:
    settings = make_settings(database_url=url, bootstrap="unused:9092")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        apply_batch(sessions, records, settings=settings)
        apply_batch(sessions, records, settings=settings)  # a replay of the same records
        with sessions() as session:
            payload = session.scalar(select(EventRow.payload).where(EventRow.event_id == "x"))
            conflicts = [
                (
                    orjson.loads(r.payload)["campaign_id"],
                    r.kafka_partition,
                    r.kafka_offset,
                    r.copies,
                )
                for r in session.scalars(select(EventConflictRow))
            ]
    finally:
        engine.dispose()
    assert payload is not None
    return orjson.loads(payload), conflicts


def copy_of_x(campaign: str, contact: str) -> dict[str, Any]:
    # Other contacts: other partition keys, so the copies may sit on different partitions.
    return {
        "event_id": "x",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": campaign,
        "contact_id": contact,
    }


@pytest.mark.parametrize("order", ["as_logged", "reversed"])
def test_two_new_copies_in_one_batch_keep_the_first_in_log_order(db_url: str, order: str) -> None:
    records = [
        record(0, 7, copy_of_x("b", "p2")),
        record(1, 3, copy_of_x("a", "p1")),
        record(1, 4, copy_of_x("c", "p3")),
        record(2, 0, copy_of_x("a", "p1")),
    ]
    if order == "reversed":
        records.reverse()  # how a poll happened to hand the partitions over
    stored, conflicts = in_one_batch(db_url, records)
    assert stored["campaign_id"] == "b"  # partition 0 comes first in the log
    # Two distinct conflicting copies; "a" arrived in two records. The replay added nothing.
    assert sorted(conflicts) == [("a", 1, 3, 2), ("c", 1, 4, 1)]


def test_isolation_path_keeps_the_same_copy_and_counts_it_once() -> None:
    # A poison event in the batch sends it down the one-by-one path; the conflict must come
    # out exactly as on the batch path, and the whole batch's replay must add nothing.
    with postgres_database("closedloop_conflicts") as url:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("""
                CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
                BEGIN
                  IF NEW.event_id = 'poison' THEN
                    RAISE EXCEPTION 'refused by the database' USING ERRCODE = '22023';
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql""")
            conn.exec_driver_sql("""
                CREATE TRIGGER refuse_poison BEFORE INSERT ON events
                FOR EACH ROW EXECUTE FUNCTION refuse_poison()""")
        engine.dispose()
        poison = {**copy_of_x("z", "p9"), "event_id": "poison"}
        records = [
            record(1, 3, copy_of_x("a", "p1")),
            record(1, 4, poison),
            record(0, 7, copy_of_x("b", "p2")),
        ]
        stored, conflicts = in_one_batch(url, records)
        assert stored["campaign_id"] == "b"
        assert conflicts == [("a", 1, 3, 1)]
        sessions = make_sessionmaker(make_engine(url))
        with sessions() as session:
            dead = session.scalars(select(DeadLetterRow)).all()
        assert [(d.partition, d.offset) for d in dead] == [(1, 4)]
