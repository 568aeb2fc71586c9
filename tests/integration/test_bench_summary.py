"""The reports benchmark writes the funnel and SLA summaries the migration would build.

``bench.reports.populate`` fills ``contact_stage_entries`` and ``handoffs`` from the histories
it generates (with the worker's pure rules); dropping both and letting migration 0006 backfill
them from the stored ``lifecycle_changes``, ``contacts``, ``touches`` and ``campaigns`` (its
own copy of the rules) must give the same rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from bench.reports import populate
from services.core.db.engine import make_engine
from services.core.db.migrate import alembic_config, upgrade
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration


def summaries(url: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        entries = {tuple(r) for r in conn.execute(text("SELECT * FROM contact_stage_entries"))}
        handoffs = {tuple(r) for r in conn.execute(text("SELECT * FROM handoffs"))}
    engine.dispose()
    return entries, handoffs


def test_populate_writes_what_the_migration_backfills() -> None:
    with postgres_database("closedloop_bench_summary") as url:
        populate(url, deals=300)
        written = summaries(url)
        entries, handoffs = written
        assert len(handoffs) > 100 and any(h[3] is not None for h in handoffs)
        assert {e[1] for e in entries} == {
            "subscriber",
            "lead",
            "mql",
            "sql",
            "opportunity",
            "customer",
        }
        command.downgrade(alembic_config(url), "0005")
        upgrade(url)
        assert summaries(url) == written
