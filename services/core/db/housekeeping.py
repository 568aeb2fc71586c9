"""Vacuum and analyze the churned tables when PostgreSQL's autovacuum does not.

The projection churns: a recompute replaces a deal's credits and pipeline credits, the work
queues (``pending_impacts``, ``dirty_deals``, ``dirty_roots``) are inserted and deleted every
cycle, contacts are updated as their roots and accounts move. PostgreSQL's autovacuum
reclaims the dead rows and, just as important, keeps the planner's statistics current. A
server with ``autovacuum = off`` (this project's development machine has it) does neither: the
tables bloat, and tables never analyzed get plans guessed without statistics, sequential scans
of ``contacts``, ``events`` and ``touches`` where an index would do; the worker's rate falls as
the database grows (BENCHMARKS.md §3).

So when the server's autovacuum is off, a worker stands in for it, with autovacuum's default
rule (``autovacuum_vacuum_threshold`` 50 + ``autovacuum_vacuum_scale_factor`` 0.2 of the live
rows for a vacuum, 50 + 0.1 for an analyze) read from ``pg_stat_user_tables``. One worker at a
time (a session advisory lock that the others skip). ``VACUUM`` takes no lock that blocks
reads or writes of the table. With autovacuum on, nothing is done here: the server's own
settings rule. SQLite needs none of this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from services.core.db.unit_of_work import Lock

log = logging.getLogger("closedloop.housekeeping")

HOUSEKEEPING = "jobs:housekeeping"
VACUUM_BASE, VACUUM_SCALE = 50, 0.2  # PostgreSQL's autovacuum defaults
ANALYZE_BASE, ANALYZE_SCALE = 50, 0.1


@dataclass(frozen=True)
class TableStats:
    """What ``pg_stat_user_tables`` says of one table."""

    name: str
    live: int
    dead: int
    modified_since_analyze: int


@dataclass(frozen=True)
class Chore:
    """What one table needs: ``VACUUM (ANALYZE)`` or only ``ANALYZE``."""

    table: str
    vacuum: bool

    def statement(self) -> str:
        quoted = '"' + self.table.replace('"', '""') + '"'
        return f"VACUUM (ANALYZE) {quoted}" if self.vacuum else f"ANALYZE {quoted}"


def chores(stats: list[TableStats]) -> list[Chore]:
    """Apply autovacuum's default rule to each table (pure)."""
    due = []
    for table in stats:
        if table.dead > VACUUM_BASE + VACUUM_SCALE * table.live:
            due.append(Chore(table.name, vacuum=True))
        elif table.modified_since_analyze > ANALYZE_BASE + ANALYZE_SCALE * table.live:
            due.append(Chore(table.name, vacuum=False))
    return due


def autovacuum_on(conn: Connection) -> bool:
    """Whether the server runs autovacuum (it needs ``track_counts`` too)."""
    query = "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'track_counts')"
    settings: dict[str, str] = {str(n): str(v) for n, v in conn.execute(text(query)).all()}
    return settings.get("autovacuum") == "on" and settings.get("track_counts") == "on"


def table_stats(conn: Connection) -> list[TableStats]:
    """The counters of this schema's tables."""
    rows = conn.execute(
        text(
            "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze "
            "FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname"
        )
    ).all()
    return [TableStats(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


def housekeep(engine: Engine, *, even_with_autovacuum: bool = False) -> list[Chore]:
    """Vacuum or analyze the tables that need it if autovacuum is off; return what was done.

    Returns nothing done on SQLite, with autovacuum on (unless ``even_with_autovacuum``), or
    while another worker holds the job.
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if autovacuum_on(conn) and not even_with_autovacuum:
            return []
        key = Lock(HOUSEKEEPING).key
        if not conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            return []
        try:
            done = chores(table_stats(conn))
            for chore in done:
                conn.exec_driver_sql(chore.statement())
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    if done:
        log.info("autovacuum is off: %s", ", ".join(c.statement() for c in done))
    return done
