"""The worker against the real broker and databases: consume, project, commit offsets after."""

from __future__ import annotations

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select

from services.attribution.worker import Worker
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ConsumerOffsetRow, CreditRow, DeadLetterRow, EventRow
from services.core.events import encode, partition_key
from services.core.kafka import ensure_topics
from tests.conftest import make_settings
from tests.integration.test_projector import scenario
from tests.support import builders as b

pytestmark = pytest.mark.integration


def publish(bootstrap: str, topic: str, payloads: list[bytes], keys: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in zip(keys, payloads, strict=True):
        producer.send(topic, key=key, value=value)
    producer.flush(10)
    producer.close()


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
        linear = dict(
            session.execute(
                select(CreditRow.campaign_id, func.sum(CreditRow.credit_minor))
                .where(CreditRow.model_id == "linear")
                .group_by(CreditRow.campaign_id)
            ).all()
        )
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
