"""Replay and recompute: the whole topic from offset 0 into an empty database, and
``closedloop recompute`` (all deals, one model, one deal), give the incremental path's results
exactly; a changed attribution setting is followed by a full recompute. The incremental
results themselves are checked against the independent reference (tests/support/reference.py),
so every "equals incremental" below is anchored outside the service."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from services.attribution.recompute import recompute
from services.attribution.worker import Worker
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    CreditRow,
    DealAttributionRow,
)
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from services.simulate import generate, shuffle_with_duplicates
from tests.conftest import make_settings
from tests.e2e.test_pipeline import START
from tests.support.infra import postgres_database
from tests.support.processes import ROOT, service_env
from tests.support.streams import credits_by_key, expected_credits, snapshot

pytestmark = pytest.mark.integration


def consume_all(settings: Settings) -> None:
    Worker(settings).run(idle_exit_s=3)


def history() -> list[dict[str, Any]]:
    return generate(seed=3, deals=120, start=START, days=120)


@pytest.fixture(scope="module")
def stream(broker: str) -> Iterator[tuple[Settings, str]]:
    """A topic holding a shuffled simulated stream with duplicates, and a database fed by it."""
    arrivals = EVENT_LIST_ADAPTER.validate_python(shuffle_with_duplicates(history(), seed=3))
    with postgres_database("closedloop_replay") as db:
        settings = make_settings(database_url=db, bootstrap=broker)
        ensure_topics(settings)
        producer = make_producer(settings)
        for e in arrivals:
            producer.send(settings.events_topic, key=partition_key(e), value=encode(e))
        producer.flush(30)
        producer.close()
        consume_all(settings)
        yield settings, db


def test_replay_from_offset_zero_into_an_empty_database(stream: tuple[Settings, str]) -> None:
    settings, db = stream
    engine = make_engine(db)
    incremental = snapshot(engine)
    expected = expected_credits(history(), settings)
    assert len({deal for _, deal, _ in expected}) > 30
    assert credits_by_key(engine) == expected
    with postgres_database("closedloop_replay2") as fresh:
        replay = settings.model_copy(
            update={"database_url": fresh, "consumer_group": settings.consumer_group + "-2"}
        )
        consume_all(replay)
        fresh_engine = make_engine(fresh)
        assert snapshot(fresh_engine) == incremental
        fresh_engine.dispose()
    engine.dispose()


def test_recompute_all_one_model_one_deal_equal_incremental(stream: tuple[Settings, str]) -> None:
    settings, db = stream
    engine = make_engine(db)
    sessions = make_sessionmaker(engine)
    incremental = snapshot(engine)
    assert recompute(sessions, settings) > 0
    assert snapshot(engine) == incremental
    with engine.begin() as conn:  # lose one model's credits, then rebuild that model alone
        conn.execute(delete(CreditRow).where(CreditRow.model_id == "w_shaped"))
        conn.execute(delete(DealAttributionRow).where(DealAttributionRow.model_id == "w_shaped"))
    recompute(sessions, settings, model_ids=["w_shaped"])
    assert snapshot(engine) == incremental
    some_deal = incremental["deal_attributions"][0][1]
    with engine.begin() as conn:
        conn.execute(delete(CreditRow).where(CreditRow.deal_id == some_deal))
    assert recompute(sessions, settings, deal_ids=[some_deal]) == 1
    assert snapshot(engine) == incremental
    engine.dispose()


def test_recompute_command_shows_progress(stream: tuple[Settings, str]) -> None:
    settings, db = stream
    env = service_env({"CLOSEDLOOP_DATABASE_URL": db})
    done = subprocess.run(
        [sys.executable, "-m", "services", "recompute"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Recomputing deals" in done.stdout and "recomputed" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "services", "recompute", "--model", "nope"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "unknown model" in (bad.stderr + bad.stdout)


def test_changed_lookback_is_followed_by_a_recompute(stream: tuple[Settings, str]) -> None:
    settings, db = stream
    engine = make_engine(db)
    before = snapshot(engine)
    shorter = settings.model_copy(update={"lookback_days": 20})
    consume_all(shorter)  # nothing new on the topic: only the start-up recompute runs
    after = snapshot(engine)
    assert after["credits"] != before["credits"], "a 20-day lookback should cut journeys"
    assert credits_by_key(engine) == expected_credits(history(), shorter)
    with postgres_database("closedloop_replay3") as fresh:
        replay = shorter.model_copy(
            update={"database_url": fresh, "consumer_group": settings.consumer_group + "-3"}
        )
        consume_all(replay)
        fresh_engine = make_engine(fresh)
        assert snapshot(fresh_engine) == after
        fresh_engine.dispose()
    consume_all(settings)  # and back: the original results again
    assert snapshot(engine) == before
    engine.dispose()
