"""Scale-out: several workers in one consumer group over a 6-partition topic give the results
of the independent reference (tests/support/reference.py), also while partitions move between
them (members joining and leaving)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

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
    stored_events,
    wait_settled,
)

pytestmark = pytest.mark.integration


def stalled(engine: Engine, logs: Path, done: int, distinct: int) -> str:
    """Say how far the stream got, what the database sessions wait on and the workers' logs."""
    with engine.connect() as conn:
        sessions = conn.execute(
            text(
                "SELECT state, wait_event_type, wait_event, now() - xact_start, left(query, 120) "
                "FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    tails = {log.name: log.read_text()[-1500:] for log in sorted(logs.glob("w*.log"))}
    return f"stored {done} of {distinct}; sessions {sessions}; logs {tails}"


def assigned(log: Path) -> bool:
    """Whether a worker's log shows that the group gave it its partitions (a join completed)."""
    return log.exists() and "assigned partitions" in log.read_text()


def wait_until(condition: Callable[[], bool], what: str, explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"waited 120 s for {what}: {explain()}"
        time.sleep(0.1)


def test_workers_joining_and_leaving_give_one_workers_results(broker: str, tmp_path: Path) -> None:
    events = generate(seed=21, deals=400, start=START, days=120)
    arrivals = shuffle_with_duplicates(events, seed=21, duplicate_rate=0.05)
    distinct = len({e["event_id"] for e in events})
    with postgres_database("closedloop_scale") as db:
        settings = make_settings(database_url=db, bootstrap=broker, topic_partitions=6)
        held_back = len(arrivals) * 2 // 5
        publish(settings, arrivals[:held_back])
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

        def explain() -> str:
            return stalled(engine, tmp_path, stored_events(engine), distinct)

        def reached(share: float) -> Callable[[], bool]:
            return lambda: stored_events(engine) >= distinct * share

        try:
            # Two members join while the first part of the stream is applied; once both have
            # their partitions (one rebalance at a time: the bundled broker's group coordinator
            # can wedge when a member leaves while another one's join is still in progress),
            # the rest is published and the first member leaves while it is applied.
            for share, n in ((0.1, 2), (0.25, 3)):
                wait_until(reached(share), f"{share:.0%} of the events stored", explain)
                workers.append(start_service("worker", env, tmp_path / f"w{n}.log"))
            wait_until(
                lambda: all(assigned(tmp_path / f"w{n}.log") for n in (2, 3)),
                "the joiners' partitions",
                explain,
            )
            publish(settings, arrivals[held_back:])
            wait_until(reached(0.5), "half of the events stored", explain)
            stop(workers.pop(0))  # graceful: finishes its batch, leaves
            wait_until(reached(1.0), "every event stored", explain)
            wait_settled(engine)
        finally:
            for worker in workers:
                stop(worker)
        assert stored_events(engine) == distinct
        got, states = credits_by_key(engine), deal_states(engine)
        engine.dispose()
    ref = reference_for(events, settings)
    expected = ref.credit_lines(reference.MODELS)  # no fit ran: no data-driven credits
    assert len({deal for _, deal, _ in expected}) > 100, "too few credited deals to prove much"
    assert got == expected
    assert states == expected_deal_states(ref)
