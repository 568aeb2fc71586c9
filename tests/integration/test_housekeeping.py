"""The worker stands in for autovacuum where the server runs none (``housekeeping``).

On a real PostgreSQL: a work queue churned by 3,000 inserts and deletes is vacuumed and
analyzed, the planner gets statistics for a table filled and never analyzed, a table under
the threshold is left alone, one worker at a time does it, and nothing happens on a server
whose autovacuum is on (unless asked) or on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, text

from services.core.db.engine import make_engine
from services.core.db.housekeeping import HOUSEKEEPING, Chore, TableStats, chores, housekeep
from services.core.db.schema import DirtyDealRow, DirtyRootRow
from services.core.db.unit_of_work import Lock
from tests.support.infra import postgres_database, sqlite_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def test_autovacuums_default_rule() -> None:
    # Vacuum past 50 + 20 % of the live rows dead; else analyze past 50 + 10 % changed.
    stats = [
        TableStats("churned", live=1000, dead=251, modified_since_analyze=5000),  # 251 > 250
        TableStats("at_threshold", live=1000, dead=250, modified_since_analyze=150),  # neither
        TableStats("grown", live=1000, dead=0, modified_since_analyze=151),  # 151 > 150
        TableStats("empty_queue", live=0, dead=51, modified_since_analyze=0),  # 51 > 50
        TableStats("quiet", live=0, dead=50, modified_since_analyze=50),
    ]
    assert chores(stats) == [
        Chore("churned", vacuum=True),
        Chore("grown", vacuum=False),
        Chore("empty_queue", vacuum=True),
    ]
    assert Chore('we"ird', vacuum=True).statement() == 'VACUUM (ANALYZE) "we""ird"'


@pytest.fixture()
def engine() -> Iterator[Engine]:
    with postgres_database("closedloop_housekeeping") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def counters(engine: Engine, table: str) -> tuple[int, int, int, int]:
    """(dead rows, modifications since analyze, vacuums, analyzes) of ``table``."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT n_dead_tup, n_mod_since_analyze, vacuum_count, analyze_count "
                "FROM pg_stat_user_tables WHERE relname = :t"
            ),
            {"t": table},
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def wait_for_counts(engine: Engine, table: str, *, dead: int, modified: int) -> None:
    """Statistics reach the counters when a backend goes idle: at most a second after its
    last flush, or up to 10 s later if it flushed just before (PostgreSQL 15)."""
    deadline = time.monotonic() + 30
    while (now := counters(engine, table))[:2] < (dead, modified):
        assert time.monotonic() < deadline, now
        time.sleep(0.2)


def test_churned_tables_are_vacuumed_and_analyzed(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(3):  # a queue: marked, claimed, deleted, three times over
            conn.execute(
                insert(DirtyRootRow),
                [{"root_contact_id": f"c{n}-{i}", "marked_at": NOW} for i in range(1000)],
            )
            conn.execute(delete(DirtyRootRow))
        conn.execute(
            insert(DirtyDealRow), [{"deal_id": f"d{i}", "marked_at": NOW} for i in range(500)]
        )
    wait_for_counts(engine, "dirty_roots", dead=3000, modified=6000)
    wait_for_counts(engine, "dirty_deals", dead=0, modified=500)

    done = housekeep(engine, even_with_autovacuum=True)

    assert Chore("dirty_roots", vacuum=True) in done
    assert Chore("dirty_deals", vacuum=False) in done  # 500 new rows, none dead: statistics
    assert all(c.table not in ("deals", "credits") for c in done)  # untouched: nothing due
    dead, _, vacuums, analyzes = counters(engine, "dirty_roots")
    assert (dead, vacuums, analyzes) == (0, 1, 1)
    _, modified, vacuums, analyzes = counters(engine, "dirty_deals")
    assert (modified, vacuums, analyzes) == (0, 0, 1)
    assert housekeep(engine, even_with_autovacuum=True) == []  # nothing left to do


def test_one_worker_at_a_time_and_only_without_autovacuum(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(DirtyRootRow),
            [{"root_contact_id": f"c{i}", "marked_at": NOW} for i in range(200)],
        )
    wait_for_counts(engine, "dirty_roots", dead=0, modified=200)
    with engine.connect() as other:
        key = Lock(HOUSEKEEPING).key
        assert other.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        assert housekeep(engine, even_with_autovacuum=True) == []  # another worker has it
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    with engine.connect() as conn:
        autovacuum = conn.scalar(text("SHOW autovacuum")) == "on"
    done = housekeep(engine)
    assert done == ([] if autovacuum else [Chore("dirty_roots", vacuum=False)])


def test_sqlite_needs_none(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        engine = make_engine(url)
        assert housekeep(engine, even_with_autovacuum=True) == []
        engine.dispose()
