"""The projection version: a token that changes in every transaction that changes the reports.

Every writer of the report projection (the worker's batches and recomputes, fits, custom-model
passes, the API's admin writes) calls ``bump_projection_version`` inside its own transaction
(``services.core.db.unit_of_work`` does it for them), so the new token becomes visible exactly
when its changes do. Readers may cache anything derived from the projection under the token
they read first: a cached answer is never served after a commit that could change it.

The token is the sum of one counter per writer process (``projection_versions``): a writer
increments only its own row, so two workers committing at once never wait on each other for
it (one shared row would serialise every write transaction on its row lock). Every commit
adds one to the sum, and nothing ever lowers it (``fold_idle_writers`` moves an idle writer's
counter into the shared base row in one transaction), so a token is never seen twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from services.core.db.schema import ProjectionVersionRow
from services.core.db.upsert import _insert

WRITER = uuid.uuid4().hex  # this process's counter
BASE = "base"  # where idle writers' counters are folded


def version_column() -> ColumnElement[int]:
    """The projection version as a SQL expression (0 before any writer committed)."""
    return (
        select(func.coalesce(func.sum(ProjectionVersionRow.counter), 0))
        .scalar_subquery()
        .label("projection_version")
    )


def projection_version(session: Session) -> str:
    """Return the current projection version ("0" before any writer committed)."""
    return str(session.scalar(select(version_column())))


def bump_projection_version(session: Session, *, writer: str = WRITER) -> None:
    """Give the projection a new version, in the caller's transaction (this writer's row)."""
    now = datetime.now(UTC)
    stmt = _insert(session, ProjectionVersionRow).values(writer=writer, counter=1, updated_at=now)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["writer"],
            set_={"counter": ProjectionVersionRow.counter + 1, "updated_at": now},
        )
    )


def fold_idle_writers(session: Session, *, idle: timedelta = timedelta(days=1)) -> int:
    """Move the counters of writers idle for ``idle`` into the base row; return how many.

    The sum, hence the version, is unchanged: one row per process ever started would
    otherwise accumulate.
    """
    cutoff = datetime.now(UTC) - idle
    gone = session.execute(
        delete(ProjectionVersionRow)
        .where(ProjectionVersionRow.updated_at < cutoff, ProjectionVersionRow.writer != BASE)
        .returning(ProjectionVersionRow.counter)
    ).all()
    total = sum(counter for (counter,) in gone)
    if total:
        now = datetime.now(UTC)
        stmt = _insert(session, ProjectionVersionRow).values(
            writer=BASE, counter=total, updated_at=now
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["writer"],
                set_={"counter": ProjectionVersionRow.counter + total, "updated_at": now},
            )
        )
    return len(gone)
