"""One unit of work for every write transaction: begin → concurrency rule → work → version → commit.

Every writer of the projection (worker batches, the recompute of dirty deals, fits, custom
models, maintenance, the API's admin writes, the CLI) opens its transaction here, so the
rules live in one place:

- **Begin.** On SQLite the first statement takes the database's write lock (SQLite has one
  writer; taking it up front means everything the transaction reads stays true until it
  commits, and two processes never interleave a read-then-write). PostgreSQL runs READ
  COMMITTED; what must not interleave there is named by the caller.
- **The concurrency rule.** There is no global lock. A caller names the advisory locks its
  work needs (``Lock``: exclusive or shared, taken in one sorted order so two units of work
  cannot deadlock on them), and row-level claims (``FOR UPDATE SKIP LOCKED``, ``lock_deals``)
  are taken by the repositories that need them. The rules and why they are exact are in
  ``services.attribution.dirty``.
- **The version.** On success the projection version is bumped in the same transaction
  (``services.core.db.version``), unless the work said it changed nothing
  (``nothing_changed``), so a cache is invalidated exactly when a change becomes visible.
- **Commit**, or roll back on any exception (which propagates).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.schema import DealRow, ProjectionVersionRow
from services.core.db.upsert import among
from services.core.db.version import bump_projection_version

_UNCHANGED = "closedloop.unchanged"


@dataclass(frozen=True, order=True)
class Lock:
    """A named advisory lock held until the transaction ends (PostgreSQL; SQLite needs none)."""

    name: str
    shared: bool = False

    @property
    def key(self) -> int:
        """A stable signed 64-bit key for the name (CRC-32 in a project-specific range)."""
        return 7_120_421_000_000 + zlib.crc32(self.name.encode())


# The locks of the few writes that span partitions and are not per-deal (see ``dirty``).
CONTACT_MERGES = "contacts:merges"  # merges exclusive; contact upserts shared
FX_RATES = "fx:rates"  # rates exclusive; costs shared
MODELS_IN_FORCE = "models:in-force"  # changing models or fits exclusive; recomputes shared
DEAL_FUNNEL = "deals:funnel-order"  # rebuilding the deal funnel exclusive; recomputes shared


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def take(session: Session, locks: Iterable[Lock]) -> None:
    """Take advisory locks in one global order (by key), exclusive before shared of a key."""
    if not _is_postgres(session):
        return
    wanted: dict[int, bool] = {}
    for lock in locks:
        wanted[lock.key] = wanted.get(lock.key, True) and lock.shared
    for key in sorted(wanted):
        function = "pg_advisory_xact_lock_shared" if wanted[key] else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {function}(:key)"), {"key": key})


def try_take(session: Session, name: str) -> bool:
    """Try an exclusive advisory lock without waiting; return whether it is held.

    For jobs any worker may do but only one should do at a time (a fit, a qualification
    pass): the others skip it. On SQLite the write lock already makes the holder alone.
    """
    if not _is_postgres(session):
        return True
    return bool(
        session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": Lock(name).key})
    )


def lock_deals(session: Session, deal_ids: Sequence[str]) -> None:
    """Lock the stored rows of these deals (in id order) until the transaction ends.

    Whoever rewrites a deal's credits (the dirty-deal recompute, a fit or a custom model
    being applied) holds its row first and reads after, so two rewrites of one deal never
    interleave and the later one reads what the earlier one committed. Row locks live in the
    rows, not in PostgreSQL's shared lock table, so a chunk of thousands of deals is cheap.
    """
    if deal_ids and _is_postgres(session):
        session.execute(
            select(DealRow.deal_id)
            .where(among(session, DealRow.deal_id, deal_ids))
            .order_by(DealRow.deal_id)
            .with_for_update()
        ).all()


def nothing_changed(session: Session) -> None:
    """Tell the unit of work that this transaction changed nothing a report reads."""
    session.info[_UNCHANGED] = True


@contextmanager
def unit_of_work(sessions: sessionmaker[Session], *locks: Lock) -> Iterator[Session]:
    """Open a write transaction with ``locks`` held; bump the version and commit on success."""
    with sessions() as session, session.begin():
        if not _is_postgres(session):
            # A write that changes nothing: SQLite begins the transaction and takes its write
            # lock now, before anything is read.
            session.execute(update(ProjectionVersionRow).where(text("0 = 1")).values(counter=0))
        take(session, locks)
        yield session
        if not session.info.pop(_UNCHANGED, False):
            bump_projection_version(session)
