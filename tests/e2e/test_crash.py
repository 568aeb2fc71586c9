"""Crash safety: three workers share a 20,000-event stream, and one of them, chosen at random,
is SIGKILLed again and again (and started again); nothing is lost, nothing is counted twice.

The kills land at arbitrary moments of the batch loop (before, during, after the database
commit, between it and the Kafka offset commit, and in the recompute after the commit, with
the other workers' transactions in flight). The final projection (every deal, credit,
cost and contact row) must equal, to the cent, that of an uninterrupted worker on the same
topic, and the credits and deal states must equal those of the independent reference
(tests/support/reference.py) over the history.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from services.core.db.engine import make_engine
from services.simulate import generate, shuffle_with_duplicates
from tests.conftest import make_settings
from tests.e2e.test_pipeline import START
from tests.support import reference
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop
from tests.support.streams import (
    credits_by_key,
    deal_states,
    expected_deal_states,
    publish,
    reference_for,
    snapshot,
    stored_events,
    wait_settled,
)

pytestmark = pytest.mark.e2e
KILLS = 8
WORKERS = 3
MIN_EVENTS = 20_000  # more, and more kills: make chaos (chaos/scenarios/worker_crashes.py)


def test_worker_killed_repeatedly_loses_and_doubles_nothing(broker: str, tmp_path: Path) -> None:
    events = generate(seed=5, deals=900, start=START, days=120)
    arrivals = shuffle_with_duplicates(events, seed=5, duplicate_rate=0.05)
    distinct = len({e["event_id"] for e in events})
    assert distinct >= MIN_EVENTS
    rng = random.Random(5)
    with (
        postgres_database("closedloop_crash") as killed_db,
        postgres_database("closedloop_calm") as calm_db,
    ):
        settings = make_settings(database_url=killed_db, bootstrap=broker, topic_partitions=6)
        publish(settings, arrivals)

        def env(db: str, group: str) -> dict[str, str]:
            return {
                "CLOSEDLOOP_DATABASE_URL": db,
                "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
                "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
                "CLOSEDLOOP_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
                "CLOSEDLOOP_CONSUMER_GROUP": group,
                "CLOSEDLOOP_WORKER_MAX_POLL_RECORDS": "500",
            }

        killed_env = env(killed_db, settings.consumer_group)
        calm = start_service(
            "worker", env(calm_db, settings.consumer_group + "-calm"), tmp_path / "calm.log"
        )
        killed_engine, calm_engine = make_engine(killed_db), make_engine(calm_db)
        kills = 0
        logs = [tmp_path / f"killed{n}.log" for n in range(WORKERS)]
        workers = [start_service("worker", killed_env, log) for log in logs]
        deadline = time.monotonic() + 600
        try:
            while (done := stored_events(killed_engine)) < distinct:
                assert time.monotonic() < deadline, f"stored {done} of {distinct}"
                if kills < KILLS and done >= distinct * (kills + 1) / (KILLS + 2):
                    time.sleep(rng.uniform(0, 0.4))  # land anywhere in the batch loop
                    victim = rng.randrange(WORKERS)
                    stop(workers[victim], kill=True)
                    kills += 1
                    workers[victim] = start_service("worker", killed_env, logs[victim])
                time.sleep(0.05)
            while stored_events(calm_engine) < distinct:
                assert time.monotonic() < deadline, "the uninterrupted worker did not finish"
                time.sleep(0.2)
            wait_settled(killed_engine)
            wait_settled(calm_engine)
        finally:
            for worker in workers:
                stop(worker)
            stop(calm)
        assert kills == KILLS, f"only {kills} kills before the stream was consumed"
        interrupted, uninterrupted = snapshot(killed_engine), snapshot(calm_engine)
        got, states = credits_by_key(killed_engine), deal_states(killed_engine)
        killed_engine.dispose()
        calm_engine.dispose()
    assert interrupted == uninterrupted
    ref = reference_for(events, settings)
    expected = ref.credit_lines(reference.MODELS)  # no fit ran: no data-driven credits
    assert len(expected) > 4_000
    assert got == expected
    assert states == expected_deal_states(ref)
