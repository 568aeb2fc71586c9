"""Crash safety: SIGKILL the worker repeatedly while it consumes; nothing lost, nothing doubled.

The worker process is killed at arbitrary moments (also between its database commit and its
Kafka offset commit, whichever moment the signal lands in) and restarted; the final credits
must equal the independent reference computed from the events as delivered once, in order.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CreditRow, DealAttributionRow, EventRow
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from services.simulate import generate, shuffle_with_duplicates
from tests.e2e.test_pipeline import START
from tests.support import reference
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.e2e
KILLS = 4


def test_worker_killed_repeatedly_loses_and_doubles_nothing(broker: str, tmp_path: Path) -> None:
    events = generate(seed=5, deals=300, start=START, days=120)
    arrivals = shuffle_with_duplicates(events, seed=5, duplicate_rate=0.1)
    with postgres_database("closedloop_crash") as db:
        tag = str(time.monotonic_ns())
        settings = Settings(
            _env_file=None,
            database_url=db,
            kafka_bootstrap_servers=broker,
            events_topic=f"crash-{tag}",
            consumer_group=f"crash-{tag}",
            worker_max_poll_records=200,
        )
        ensure_topics(settings)
        producer = make_producer(settings)
        for event in EVENT_LIST_ADAPTER.validate_python(arrivals):
            producer.send(settings.events_topic, key=partition_key(event), value=encode(event))
        producer.flush(60)
        producer.close()
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
            "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
            "CLOSEDLOOP_CONSUMER_GROUP": settings.consumer_group,
            "CLOSEDLOOP_WORKER_MAX_POLL_RECORDS": "200",
        }
        engine = make_engine(db)
        sessions = make_sessionmaker(engine)

        def stored() -> int:
            with sessions() as session:
                return session.scalar(select(func.count()).select_from(EventRow)) or 0

        distinct = len({e["event_id"] for e in events})
        kills = 0
        proc = start_service("worker", env, tmp_path / "worker.log")
        deadline = time.monotonic() + 240
        while stored() < distinct and time.monotonic() < deadline:
            if kills < KILLS and stored() > distinct * (kills + 1) / (KILLS + 2):
                stop(proc, kill=True)
                kills += 1
                proc = start_service("worker", env, tmp_path / "worker.log")
            time.sleep(0.05)
        stop(proc)
        assert kills == KILLS, f"only {kills} kills happened before the stream was consumed"
        assert stored() == distinct

        ref = reference.compute(events)
        with sessions() as session:
            for model in ("linear", "w_shaped", "time_decay"):
                rows = session.execute(
                    select(CreditRow.campaign_id, func.sum(CreditRow.credit_minor))
                    .where(CreditRow.model_id == model)
                    .group_by(CreditRow.campaign_id)
                )
                got = {c: int(s) for c, s in rows if s}
                expected: dict[str, int] = defaultdict(int)
                for deal in ref.deals.values():
                    for campaign, credit in deal.credits.get(model, {}).items():
                        expected[campaign] += credit
                assert got == {c: v for c, v in expected.items() if v}, model
                deals = session.scalar(
                    select(func.count())
                    .select_from(DealAttributionRow)
                    .where(DealAttributionRow.model_id == model)
                )
                assert deals == sum(
                    1 for d in ref.deals.values() if d.won and d.reporting_minor is not None
                )
        engine.dispose()
