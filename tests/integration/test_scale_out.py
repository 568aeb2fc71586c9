"""Scale-out: several workers in one consumer group over a 6-partition topic give the results
of one worker, also while partitions move between them (members joining and leaving)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.core.db.engine import make_engine
from services.simulate import generate, shuffle_with_duplicates
from tests.conftest import make_settings
from tests.e2e.test_pipeline import START
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop
from tests.support.streams import credits_by_key, expected_credits, publish, stored_events

pytestmark = pytest.mark.integration


def test_workers_joining_and_leaving_give_one_workers_results(broker: str, tmp_path: Path) -> None:
    events = generate(seed=21, deals=400, start=START, days=120)
    arrivals = shuffle_with_duplicates(events, seed=21, duplicate_rate=0.05)
    distinct = len({e["event_id"] for e in events})
    with postgres_database("closedloop_scale") as db:
        settings = make_settings(database_url=db, bootstrap=broker, topic_partitions=6)
        publish(settings, arrivals)
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
            "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "CLOSEDLOOP_CONSUMER_GROUP": settings.consumer_group,
            "CLOSEDLOOP_WORKER_MAX_POLL_RECORDS": "150",
        }
        engine = make_engine(db)
        workers = [start_service("worker", env, tmp_path / "w1.log")]
        steps = {0.2: "join", 0.4: "join", 0.6: "leave"}
        deadline = time.monotonic() + 300
        try:
            while (done := stored_events(engine)) < distinct:
                assert time.monotonic() < deadline, f"stored {done} of {distinct}"
                for share, action in list(steps.items()):
                    if done >= distinct * share:
                        del steps[share]
                        if action == "join":
                            n = len(workers) + 1
                            workers.append(start_service("worker", env, tmp_path / f"w{n}.log"))
                        else:
                            stop(workers.pop(0))  # graceful: finishes its batch, leaves
                time.sleep(0.1)
            assert not steps, f"the stream ended before every rebalance step: {steps}"
        finally:
            for worker in workers:
                stop(worker)
        assert stored_events(engine) == distinct
        got = credits_by_key(engine)
        engine.dispose()
    assert got == expected_credits(events, settings)
    assert got, "no credit at all: the test would prove nothing"
