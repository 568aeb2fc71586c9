"""After a batch commits: resolve its impact into dirty deals and roots, and recompute them.

Several workers apply their partitions at once, each batch in its own transaction, with no
global lock. A batch stores its events, projects the state its own partition owns, and queues
its ``Impact`` (what it touched) in ``pending_impacts``, all in one transaction. Everything
that joins entities from different partitions (a deal's credits: its events, the touches of
its account and contacts, the contacts' roots, the rates of its currency; a root's funnel
summary) is derived afterwards, by whichever worker is free, in three steps, each its own
transaction (``drain``):

1. **Resolve**: claim pending impacts (``FOR UPDATE SKIP LOCKED``), find the deals and roots
   they may change by reading committed state (``affected_deals``, ``funnel_roots``), mark
   those dirty, delete the impacts.
2. **Recompute**: claim dirty deals (``SKIP LOCKED``), lock their rows, recompute them from
   committed state, delete the claimed marks.
3. **Rewrite**: the same for dirty roots' funnel summaries.

Why this is exact, whatever the interleaving (the race a global lock used to prevent: worker A
stores a touch of account X while worker B stores the win of X's deal D; each transaction
misses the other's uncommitted row):

- An impact is resolved only after its batch committed, against committed state. Say A
  commits first. If A's impact is resolved after B committed, it finds D won and marks it.
  If before, B commits later than A; B's impact names D, so D is recomputed after B's
  commit, reading A's touch, committed earlier. Either way a recompute of D that reads both
  rows follows both commits. The same argument covers every input of a deal (a rate, a
  merge, a contact moving account) and of a root (a touch versus its campaign's flag).
- A resolve never overlaps a recompute (``RESOLVE``: resolves take it exclusively,
  recomputes shared). The resolver finds a touch's deals through state that recomputes
  derive (a deal's won status, its contacts); were a recompute that read before the touch
  committed still uncommitted when the touch's impact is resolved, neither would see the
  other. Mutually excluded, either the resolve comes first (so the recompute starts after the
  touch committed, and reads it) or after the recompute committed (and finds the deal).
  Contacts' roots and accounts are read when the impact is resolved, not when the batch
  ran (``_link_touches``). Batches never wait on this lock.
- A deal is recomputed by one transaction at a time: the claim holds its ``dirty_deals``
  row, and ``lock_deals`` its ``deals`` row, which fits and custom models being applied lock
  too. The recompute reads after taking them, so it sees every change whose mark it claimed.
- A mark is never lost: marking is an upsert that, on a claimed row, waits for the claimer
  to commit its delete and then inserts a fresh mark, recomputed again later. The claimer
  deletes only the rows it claimed.
- Every step is idempotent and commits alone: a crash leaves impacts or marks in place, and
  whichever worker runs next finishes them.

On SQLite (one writer) every unit of work holds the database's write lock from its first
statement, so the steps are serial and the same argument holds trivially.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.credits import affected_deals, recompute_deals
from services.attribution.deal_funnel import rewrite_deals
from services.attribution.event_cache import EventCache
from services.attribution.funnel_summary import funnel_roots, rewrite_roots
from services.attribution.registry import active_models
from services.attribution.state_store import Impact
from services.core.db.schema import (
    ContactRow,
    DeadLetterRow,
    DirtyDealRow,
    DirtyRootRow,
    PendingImpactRow,
)
from services.core.db.unit_of_work import (
    DEAL_FUNNEL,
    MODELS_IN_FORCE,
    Lock,
    lock_deals,
    nothing_changed,
    unit_of_work,
)
from services.core.db.upsert import _insert, among, insert_ignore
from services.core.settings import Settings

log = logging.getLogger("closedloop.worker")

IMPACTS_PER_STEP = 50  # pending impacts resolved in one transaction
DEALS_PER_STEP = 2000  # dirty deals recomputed in one transaction
ROOTS_PER_STEP = 5000  # dirty roots rewritten in one transaction
FAILED_DEALS_TOPIC = "closedloop.deals"  # the dead letters of deals that cannot be recomputed

DataErrors = tuple[type[BaseException], ...]
RESOLVE = "dirty:resolve"  # resolves exclusive, recomputes shared (see the module docstring)
RECOMPUTE_LOCKS = (
    Lock(MODELS_IN_FORCE, shared=True),
    Lock(RESOLVE, shared=True),
    Lock(DEAL_FUNNEL, shared=True),  # a deal's funnel entries are rewritten with it
)


def queue_impact(session: Session, impact: Impact, *, now: datetime) -> None:
    """Queue a batch's impact, in the batch's transaction (nothing if it touched nothing)."""
    if impact:
        session.add(PendingImpactRow(impact=impact.to_json(), created_at=now))


@dataclass
class Drained:
    """What one ``drain`` did."""

    impacts: int = 0
    deals: int = 0
    roots: int = 0

    def __bool__(self) -> bool:
        return bool(self.impacts or self.deals or self.roots)

    def add(self, other: Drained) -> None:
        self.impacts += other.impacts
        self.deals += other.deals
        self.roots += other.roots


def resolve(session: Session, impact: Impact, settings: Settings) -> tuple[set[str], set[str]]:
    """Return the deals and roots ``impact`` may have changed, read from the session's state."""
    _link_touches(session, impact)
    deals = affected_deals(
        session,
        impact,
        reporting=settings.reporting_currency,
        lookback=timedelta(days=settings.lookback_days),
    )
    return deals, funnel_roots(session, impact)


def _link_touches(session: Session, impact: Impact) -> None:
    """Widen the new touches' spans to their contacts' roots and accounts as committed now.

    The batch noted them as it saw them, but a contact row (its account, its root) may have
    been committed by another worker after the batch read it and before its commit: that
    contact's own impact was resolved without the touch, so the touch's must see the link.
    """
    if not impact.touch_roots:
        return
    links = session.execute(
        select(
            ContactRow.contact_id, ContactRow.root_contact_id, ContactRow.effective_account_id
        ).where(among(session, ContactRow.contact_id, list(impact.touch_roots)))
    ).all()
    for contact, root, account in links:
        low, high = impact.touch_roots[contact]
        for at in (low, high):
            impact.note_touch(account=account, root=root, at=at)


def recompute(
    session: Session,
    deal_ids: Iterable[str],
    settings: Settings,
    cache: EventCache | None,
    *,
    staged: set[str] | None = None,
) -> int:
    """Lock and recompute ``deal_ids`` under every active model, and rewrite the funnel
    entries (``services.attribution.deal_funnel``) of those ``staged`` (by one of their own
    events: only those can have a new stage step; all when None), in steps; return the count."""
    ordered = sorted(set(deal_ids))
    if not ordered:
        return 0
    models = active_models(session, settings)
    done = 0
    for start in range(0, len(ordered), DEALS_PER_STEP):
        chunk = ordered[start : start + DEALS_PER_STEP]
        lock_deals(session, chunk)
        done += recompute_deals(session, chunk, settings=settings, models=models, cache=cache)
        rewrite_deals(session, chunk if staged is None else [d for d in chunk if d in staged])
    return done


def settle(
    session: Session, impact: Impact, settings: Settings, cache: EventCache | None = None
) -> set[str]:
    """Resolve and apply an impact in the caller's transaction; return the deals recomputed.

    For callers that have the database to themselves (tests, tools, a single replay): the
    same three steps as ``drain`` without the queues.
    """
    deals, roots = resolve(session, impact, settings)
    recompute(session, deals, settings, cache, staged=impact.deal_ids)
    rewrite_roots(session, roots)
    return deals


def _mark(
    session: Session,
    row_cls: Any,
    key: str,
    ids: set[str],
    now: datetime,
    *,
    staged: set[str] | None = None,
) -> None:
    """Mark ``ids`` dirty, in key order; an existing mark keeps its time (its place in line).
    Deals: ``staged`` ones are marked so (kept by an existing mark: ``stages`` only grows).

    ``DO UPDATE`` rather than ``DO NOTHING``: on a row a recompute has claimed it waits for
    that transaction, then inserts a fresh mark after the claimer's delete.
    """
    if not ids:
        return
    table = getattr(row_cls, key).table
    stmt = _insert(session, row_cls)
    update: dict[str, Any] = {"marked_at": table.c.marked_at}
    rows: list[dict[str, Any]] = [{key: value, "marked_at": now} for value in sorted(ids)]
    if staged is not None:
        update["stages"] = table.c.stages | stmt.excluded.stages
        for row in rows:
            row["stages"] = row[key] in staged
    stmt = stmt.on_conflict_do_update(index_elements=[key], set_=update)
    session.execute(stmt, rows)


def _claim(session: Session, column: Any, order: Any, limit: int) -> list[Any]:
    """Claim up to ``limit`` queued rows no one else holds, oldest first."""
    return list(
        session.scalars(
            select(column).order_by(order, column).limit(limit).with_for_update(skip_locked=True)
        )
    )


def resolve_step(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Resolve a step of pending impacts into dirty marks; return how many impacts."""
    with unit_of_work(sessions, Lock(RESOLVE)) as session:
        nothing_changed(session)  # marks change no report
        rows = session.execute(
            select(PendingImpactRow.id, PendingImpactRow.impact)
            .order_by(PendingImpactRow.id)
            .limit(IMPACTS_PER_STEP)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        impact = Impact()
        for _, raw in rows:
            impact.merge(Impact.from_json(raw))
        deals, roots = resolve(session, impact, settings)
        now = datetime.now(UTC)
        _mark(session, DirtyDealRow, "deal_id", deals, now, staged=impact.deal_ids)
        _mark(session, DirtyRootRow, "root_contact_id", roots, now)
        ids = [row_id for row_id, _ in rows]
        session.execute(delete(PendingImpactRow).where(among(session, PendingImpactRow.id, ids)))
        return len(rows)


def recompute_step(
    sessions: sessionmaker[Session],
    settings: Settings,
    cache: EventCache | None,
    *,
    limit: int = DEALS_PER_STEP,
) -> int:
    """Recompute a step of dirty deals; return how many were claimed.

    Holds the fit-status lock shared: a fit is declared applied only between recomputes
    (``services.attribution.rebuild``).
    """
    with unit_of_work(sessions, *RECOMPUTE_LOCKS) as session:
        claimed = session.execute(
            select(DirtyDealRow.deal_id, DirtyDealRow.stages)
            .order_by(DirtyDealRow.marked_at, DirtyDealRow.deal_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not claimed:
            nothing_changed(session)
            return 0
        ids = [deal_id for deal_id, _ in claimed]
        recompute(session, ids, settings, cache, staged={d for d, staged in claimed if staged})
        session.execute(delete(DirtyDealRow).where(among(session, DirtyDealRow.deal_id, ids)))
        return len(ids)


def rewrite_step(sessions: sessionmaker[Session]) -> int:
    """Rewrite a step of dirty roots' funnel summaries; return how many."""
    with unit_of_work(sessions) as session:
        roots = _claim(
            session, DirtyRootRow.root_contact_id, DirtyRootRow.marked_at, ROOTS_PER_STEP
        )
        if not roots:
            nothing_changed(session)
            return 0
        rewrite_roots(session, roots)
        session.execute(
            delete(DirtyRootRow).where(among(session, DirtyRootRow.root_contact_id, roots))
        )
        return len(roots)


def isolate_failed_deals(
    sessions: sessionmaker[Session],
    settings: Settings,
    cache: EventCache | None,
    *,
    data_errors: DataErrors,
    is_transient: Callable[[BaseException], bool],
) -> int:
    """Recompute dirty deals one at a time; dead-letter those the database refuses.

    Called when a step failed on its data: every deal that still fails alone gets a dead
    letter (topic ``closedloop.deals``, the deal id as its bytes) and leaves the queue, so
    one poison deal never stops the others. Returns how many were dead-lettered.
    """
    with sessions() as session:
        queued = list(session.scalars(select(DirtyDealRow.deal_id).order_by(DirtyDealRow.deal_id)))
    failed = 0
    for deal_id in queued:
        try:
            with unit_of_work(sessions, *RECOMPUTE_LOCKS) as session:
                claimed = session.scalars(
                    select(DirtyDealRow.deal_id)
                    .where(DirtyDealRow.deal_id == deal_id)
                    .with_for_update(skip_locked=True)
                ).all()
                if claimed:
                    recompute(session, claimed, settings, cache)
                    session.execute(delete(DirtyDealRow).where(DirtyDealRow.deal_id == deal_id))
        except data_errors as exc:
            if is_transient(exc):
                raise
            log.warning(
                "dead-lettering deal %s: its credits could not be computed: %s", deal_id, exc
            )
            _dead_letter_deal(sessions, deal_id, f"could not be recomputed: {exc}")
            failed += 1
    return failed


def _dead_letter_deal(sessions: sessionmaker[Session], deal_id: str, error: str) -> None:
    with unit_of_work(sessions) as session:
        nothing_changed(session)
        insert_ignore(
            session,
            DeadLetterRow,
            [
                {
                    "topic": FAILED_DEALS_TOPIC,
                    "partition": 0,
                    "offset": zlib.crc32(deal_id.encode()),
                    "raw": deal_id.encode(),
                    "error": error[:4000],
                    "created_at": datetime.now(UTC),
                }
            ],
        )
        session.execute(delete(DirtyDealRow).where(DirtyDealRow.deal_id == deal_id))


def drain(
    sessions: sessionmaker[Session],
    settings: Settings,
    cache: EventCache | None = None,
    *,
    budget_s: float | None = None,
    data_errors: DataErrors = (),
    is_transient: Callable[[BaseException], bool] = lambda _: False,
) -> Drained:
    """Run resolve, recompute and rewrite steps until the queues are empty (or the budget).

    A step that fails on its data (``data_errors`` and not transient) isolates the deal
    responsible (``isolate_failed_deals``) and goes on; other errors propagate.
    """
    started = datetime.now(UTC)
    total = Drained()
    while True:
        try:
            step = Drained(
                impacts=resolve_step(sessions, settings),
                deals=recompute_step(sessions, settings, cache),
                roots=rewrite_step(sessions),
            )
        except data_errors as exc:
            if is_transient(exc):
                raise
            log.warning("a recompute failed on its data (%s); isolating the deal", exc)
            isolate_failed_deals(
                sessions, settings, cache, data_errors=data_errors, is_transient=is_transient
            )
            continue
        total.add(step)
        if not step:
            return total
        if budget_s is not None and (datetime.now(UTC) - started).total_seconds() > budget_s:
            return total


def queued(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Return how many impacts, dirty deals and dirty roots wait (for metrics and tools)."""
    with sessions() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in (
                ("impacts", PendingImpactRow),
                ("deals", DirtyDealRow),
                ("roots", DirtyRootRow),
            )
        }
