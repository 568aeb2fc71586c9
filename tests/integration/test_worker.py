"""The worker against the real broker and databases: consume, project, commit offsets after."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.attribution.worker import Worker
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ConsumerOffsetRow, CreditRow, DeadLetterRow, EventRow
from services.core.events import encode, encode_batch, partition_key
from services.core.kafka import ensure_topics
from tests.conftest import make_settings
from tests.integration.test_projector import scenario
from tests.support import builders as b
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration


def publish(bootstrap: str, topic: str, payloads: list[bytes], keys: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in zip(keys, payloads, strict=True):
        producer.send(topic, key=key, value=value)
    producer.flush(10)
    producer.close()


def linear_by_campaign(session: Session) -> dict[str, int]:
    """The linear model's credits summed per campaign."""
    return dict(
        session.execute(
            select(CreditRow.campaign_id, func.sum(CreditRow.credit_minor))
            .where(CreditRow.model_id == "linear")
            .group_by(CreditRow.campaign_id)
        ).all()
    )


def test_worker_consumes_projects_and_commits(broker: str, db_url: str) -> None:
    settings = make_settings(database_url=db_url, bootstrap=broker)
    ensure_topics(settings)
    events = b.events(*scenario())
    payloads = [encode(e) for e in events] + [encode(events[5])]  # one duplicate
    keys = [partition_key(e) for e in events] + [partition_key(events[5])]
    payloads.append(b"{not json")  # a poison record
    keys.append(b"poison")
    publish(broker, settings.events_topic, payloads, keys)

    worker = Worker(settings)
    worker.run(idle_exit_s=3)

    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(EventRow)) == len(events)
        dead = session.scalars(select(DeadLetterRow)).all()
        assert [d.raw for d in dead] == [b"{not json"]
    copies = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=broker,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        copied = [(r.value, dict(r.headers)) for r in copies]
    finally:
        copies.close()
    assert [v for v, _ in copied] == [b"{not json"]
    assert b"undecodable" in copied[0][1]["error"]
    with sessions() as session:
        linear = linear_by_campaign(session)
        assert linear == {"ads": 33334, "mail": 33333, "web": 33333}
        db_offsets = {
            r.partition: r.next_offset for r in session.scalars(select(ConsumerOffsetRow))
        }
    consumer = KafkaConsumer(
        bootstrap_servers=broker, group_id=settings.consumer_group, enable_auto_commit=False
    )
    try:
        # Partitions start at offset 0, so the next offsets add up to the records published.
        assert sum(db_offsets.values()) == len(payloads)
        for partition, next_offset in db_offsets.items():
            tp = TopicPartition(settings.events_topic, partition)
            assert consumer.committed(tp) == next_offset
    finally:
        consumer.close()
    assert orjson.loads(payloads[0])["event_id"] == events[0].event_id


def test_batch_records_give_the_same_projection_and_keep_their_invalid_items(
    broker: str, db_url: str
) -> None:
    # What ingest publishes for a request of many events: JSON arrays, one per partition. An
    # invalid item (another producer's) must not hold back the valid ones beside it.
    settings = make_settings(database_url=db_url, bootstrap=broker, topic_partitions=1)
    ensure_topics(settings)
    events = b.events(*scenario())
    bad = {"event_id": "bad-1", "type": "touch", "occurred_at": "yesterday"}
    first = encode_batch([encode(e) for e in events[:4]] + [orjson.dumps(bad)])
    second = encode_batch([encode(e) for e in events[3:]])  # events[3] a second time
    publish(broker, settings.events_topic, [first, second], [b"batch", b"batch"])

    Worker(settings).run(idle_exit_s=3)

    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        stored = session.scalars(select(EventRow.event_id).order_by(EventRow.event_id)).all()
        assert stored == sorted(e.event_id for e in events)
        [dead] = session.scalars(select(DeadLetterRow)).all()
        assert (dead.partition, dead.offset) == (0, 0)
        assert orjson.loads(dead.raw) == [bad]
        assert dead.error.startswith("undecodable") and "occurred_at" in dead.error
        linear = linear_by_campaign(session)
        assert linear == {"ads": 33334, "mail": 33333, "web": 33333}
        offsets = session.scalars(select(ConsumerOffsetRow.next_offset)).all()
        assert offsets == [2]


def test_event_the_database_rejects_is_dead_lettered_and_the_stream_goes_on(
    broker: str, pg_url: str
) -> None:
    # A real database refusal of one row (a trigger standing in for a constraint the schema
    # could not foresee): the worker must isolate that event, not crash-loop on its batch.
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
              IF NEW.event_id = 'poison' THEN
                RAISE EXCEPTION 'refused by the database' USING ERRCODE = '22023';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        conn.exec_driver_sql("""
            CREATE TRIGGER refuse_poison BEFORE INSERT ON events
            FOR EACH ROW EXECUTE FUNCTION refuse_poison()""")
    try:
        settings = make_settings(database_url=pg_url, bootstrap=broker, topic_partitions=1)
        ensure_topics(settings)
        events = b.events(*scenario())
        poison = b.events(b.touch("poison", "ads", -3, contact="alice"))[0]
        stream = events[:7] + [poison] + events[7:]
        publish(
            broker,
            settings.events_topic,
            [encode(e) for e in stream],
            [partition_key(e) for e in stream],
        )
        Worker(settings).run(idle_exit_s=3)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            stored = set(session.scalars(select(EventRow.event_id)))
            assert stored >= {e.event_id for e in events}
            assert "poison" not in stored
            dead = session.scalars(
                select(DeadLetterRow).where(DeadLetterRow.topic == settings.events_topic)
            ).all()
            assert len(dead) == 1 and dead[0].offset == 7
            assert "could not be applied" in dead[0].error
            assert session.scalar(
                select(ConsumerOffsetRow.next_offset).where(
                    ConsumerOffsetRow.topic == settings.events_topic
                )
            ) == len(stream)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_poison ON events")
        engine.dispose()


def test_crash_between_database_commit_and_offset_commit(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    with postgres_database() as db, caplog.at_level(logging.INFO, logger="closedloop.worker"):
        crash_between_commits(broker, db)
    # The next worker resumed from the database's offset, not Kafka's older one.
    assert "to database offset 14 (kafka had 7)" in caplog.text


def crash_between_commits(broker: str, pg_url: str) -> None:
    # The worst moment to die: the batch is committed to the database, its offsets are not
    # committed to Kafka. The next worker must neither lose nor double anything.
    settings = make_settings(database_url=pg_url, bootstrap=broker, topic_partitions=1)
    ensure_topics(settings)
    events = b.events(*scenario())
    publish(
        broker,
        settings.events_topic,
        [encode(e) for e in events],
        [partition_key(e) for e in events],
    )
    doomed = Worker(settings)
    consumer = KafkaConsumer(
        settings.events_topic,
        bootstrap_servers=broker,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=7,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )

    def poll() -> dict[Any, list[Any]]:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline
            if records := consumer.poll(timeout_ms=500):
                return records

    first = poll()
    doomed.process(first)  # a normal batch: database commit, then offset commit
    consumer.commit()
    doomed.process(poll())  # database commit of records 7..13...
    consumer.close(autocommit=False)  # ...and death before the offset commit
    tp = TopicPartition(settings.events_topic, 0)
    sessions = make_sessionmaker(make_engine(pg_url))
    offset_in_db = select(ConsumerOffsetRow.next_offset).where(
        ConsumerOffsetRow.topic == settings.events_topic
    )
    with sessions() as session:
        assert session.scalar(offset_in_db) == 14

    Worker(settings).run(idle_exit_s=3)

    with sessions() as session:
        linear = linear_by_campaign(session)
        assert linear == {"ads": 33334, "mail": 33333, "web": 33333}
        assert session.scalar(select(func.count()).select_from(EventRow)) == len(events)
        assert session.scalar(offset_in_db) == len(events)
    check = KafkaConsumer(
        bootstrap_servers=broker, group_id=settings.consumer_group, enable_auto_commit=False
    )
    try:
        assert check.committed(tp) == len(events)
    finally:
        check.close()
