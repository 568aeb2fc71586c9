"""Session fixtures: one real broker and one real PostgreSQL database per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from services.core.settings import Settings
from tests.support.infra import postgres_database, running_broker, sqlite_database

# The suite (make test, CI) draws the same examples every run, so a result is reproducible and
# one rare example cannot make a run fail that the previous one passed; HYPOTHESIS_PROFILE=explore
# draws new ones each run (and prints how to reproduce a failure), for hunting bugs.
hypothesis_settings.register_profile("repeatable", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of a bundled Kafka-protocol broker on a free port."""
    with running_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database migrated to head, dropped after the session."""
    with postgres_database() as url:
        yield url


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """URL of a fresh SQLite file migrated to head."""
    with sqlite_database(tmp_path) as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each dialect (PostgreSQL gets its own database per test)."""
    if request.param == "sqlite":
        with sqlite_database(tmp_path) as url:
            yield url
    else:
        with postgres_database() as url:
            yield url


def make_settings(*, database_url: str, bootstrap: str, **overrides: object) -> Settings:
    """Settings isolated to one test: unique topics and consumer group."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "events_topic": f"events-{tag}",
        "dead_letter_topic": f"dead-{tag}",
        "consumer_group": f"group-{tag}",
        "topic_partitions": 3,
        "publish_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]
