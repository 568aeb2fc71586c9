"""The test infrastructure itself: broker reachable, migrations create the schema, no drift."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.core.db.engine import make_engine
from services.core.db.schema import Base
from services.core.kafka import ensure_topics
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == [], f"models and migrations drift: {diff}"
    assert set(Base.metadata.tables) <= tables


def test_topics_are_created_with_partitions(broker: str, sqlite_url: str) -> None:
    from kafka import KafkaConsumer

    settings = make_settings(database_url=sqlite_url, bootstrap=broker, topic_partitions=4)
    ensure_topics(settings)
    ensure_topics(settings)  # idempotent
    consumer = KafkaConsumer(bootstrap_servers=broker)
    try:
        assert consumer.partitions_for_topic(settings.events_topic) == {0, 1, 2, 3}
    finally:
        consumer.close()
