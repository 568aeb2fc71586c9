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


def rollups(url: str) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every rollup's sums per key (its rows summed: one per key here, in any order)."""
    keys = {
        "credit_rollups": ("model_id, campaign_id, day", "revenue_minor, deals, credits"),
        "attribution_rollups": (
            "model_id, day, fit_id",
            "deals, amount_minor, attributed_minor, unattributed_minor",
        ),
        "won_rollups": ("day, conversion, currency", "deals, amount_minor, reporting_minor"),
    }
    out = {}
    engine = make_engine(url)
    with engine.connect() as conn:
        for table, (key, values) in keys.items():
            sums = ", ".join(f"sum({v.strip()})" for v in values.split(","))
            query = f"SELECT {key}, {sums} FROM {table} GROUP BY {key}"
            width = len(key.split(","))
            out[table] = {tuple(r[:width]): tuple(r[width:]) for r in conn.execute(text(query))}
    engine.dispose()
    return out


def test_populate_sums_the_rollups_the_migration_backfills() -> None:
    """``populate`` writes credits in bulk, then rebuilds the rollups from them: the same
    sums as migration 0007's backfill over the same rows (fractional deals to 1e-9)."""
    with postgres_database("closedloop_bench_rollups") as url:
        populate(url, deals=300)
        written = rollups(url)
        assert len(written["credit_rollups"]) > 1000 and len(written["won_rollups"]) > 200
        command.downgrade(alembic_config(url), "0006")
        upgrade(url)
        backfilled = rollups(url)
        assert {t: set(r) for t, r in backfilled.items()} == {t: set(r) for t, r in written.items()}
        for table, sums in written.items():
            for key, values in sums.items():
                again = backfilled[table][key]
                assert all(abs(a - b) < 1e-9 for a, b in zip(values, again, strict=True)), key
                assert [type(a) for a in values] == [type(b) for b in again]
