"""Keep the deal funnel's summary: ``deal_stages`` and ``deal_stage_entries`` (no commits).

Invariant: while ``system_state`` says order O is ``ready`` (``deal_funnel_order``), once
every queued change is resolved and recomputed (``services.attribution.dirty``), the rows of
every deal D in ``deal_stage_entries`` are exactly ``first_entries(history(D), ranked(O),
lost)`` (``services.domain.stages``), where ``history(D)`` is every ``deal_stage_changes`` row
of D. A reader uses these rows only while they are ready under the order it computes itself
in the same snapshot (``services.core.db.deal_stages``); otherwise it tallies the histories
(``services.api.funnel``), so an order that moved never gives a wrong funnel.

How it is kept:
- ``deal_stages`` (each CRM stage's first appearance) is kept with the stage changes, in the
  batch's transaction (``note_first_appearances``): a stage is written only when it is new or
  seen earlier than stored, and the upsert keeps the earlier of the two, so concurrent
  batches leave the minimum whatever their order, and most batches write nothing.
- Every write of entries uses the stored order, ready or not (the *target*), holding
  ``DEAL_FUNNEL`` shared and the deals' row locks: a deal's recompute (every new event of a
  deal marks it dirty; the recompute reads after the changes that marked it committed, the
  same argument as its credits) rewrites its entries (``rewrite_deals``).
- When the order computed now is not the stored one (a new stage, an earlier first
  appearance, another setting), a maintenance pass moves to it in three steps
  (``refresh_deal_funnel``): (1) store it as the target, not ready, holding ``DEAL_FUNNEL``
  exclusively (so no write under the old order is in flight, and none starts after); (2)
  rewrite every deal that has a stage change, read after (1) committed, chunk by chunk like a
  recompute; (3) mark it ready, exclusively, if it is still the target. After (1) every write
  uses the new order, and every deal with a step committed before (1) is rewritten in (2),
  after (1); a deal whose first step commits later is recomputed after it. So at (3) every
  deal's entries are under the new order. Recomputes wait only for the short steps (1) and
  (3), never for the whole rewrite. An order that moves again meanwhile restarts at (1) on a
  later pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.deal_stages import (
    LOST,
    current_order,
    history_rows,
    order_state,
    ranked,
    store_order,
)
from services.core.db.schema import DealStageChangeRow, DealStageEntryRow, DealStageRow
from services.core.db.unit_of_work import (
    DEAL_FUNNEL,
    Lock,
    lock_deals,
    nothing_changed,
    unit_of_work,
)
from services.core.db.upsert import _insert, among, insert_new
from services.core.settings import Settings
from services.domain.stages import Step, first_entries

_CHUNK = 2000  # deals a rebuild rewrites in one transaction


def note_first_appearances(session: Session, steps: Sequence[dict[str, Any]]) -> None:
    """Record the first appearance of each CRM stage among new ``deal_stage_changes`` rows."""
    earliest: dict[str, tuple[datetime, str]] = {}
    for step in steps:
        if step["kind"] == "stage":
            seen = (step["occurred_at"], step["event_id"])
            if step["stage"] not in earliest or seen < earliest[step["stage"]]:
                earliest[step["stage"]] = seen
    if not earliest:
        return
    stored = {
        stage: (at, event_id)
        for stage, at, event_id in session.execute(
            select(DealStageRow.stage, DealStageRow.first_at, DealStageRow.first_event_id).where(
                among(session, DealStageRow.stage, list(earliest))
            )
        )
    }
    rows = [
        {"stage": stage, "first_at": at, "first_event_id": event_id}
        for stage, (at, event_id) in sorted(earliest.items())
        if stage not in stored or (at, event_id) < stored[stage]
    ]
    if not rows:
        return
    stmt = _insert(session, DealStageRow)
    current = tuple_(DealStageRow.first_at, DealStageRow.first_event_id)
    stmt = stmt.on_conflict_do_update(
        index_elements=["stage"],
        set_={"first_at": stmt.excluded.first_at, "first_event_id": stmt.excluded.first_event_id},
        where=tuple_(stmt.excluded.first_at, stmt.excluded.first_event_id) < current,
    )
    session.execute(stmt, rows)


def _histories(session: Session, deal_ids: Sequence[str]) -> Iterator[tuple[str, list[Step]]]:
    """Yield each deal's steps (those with any), grouped by deal."""
    h = history_rows()
    rows = session.execute(
        select(h.c.entity, h.c.stage, h.c.occurred_at, h.c.event_id)
        .where(among(session, h.c.entity, deal_ids))
        .order_by(h.c.entity)
    )
    current: str | None = None
    steps: list[Step] = []
    for deal_id, stage, at, event_id in rows:
        if deal_id != current:
            if current is not None:
                yield current, steps
            current, steps = deal_id, []
        steps.append(Step(at, event_id, stage))
    if current is not None:
        yield current, steps


def _entry_rows(
    histories: Iterable[tuple[str, list[Step]]], order: list[str]
) -> list[dict[str, Any]]:
    stages = ranked(order)
    return [
        {
            "deal_id": deal_id,
            "stage": entry.stage,
            "entered_at": entry.entered_at,
            "next_micros": entry.next_micros,
            "exit_stage": entry.exit_stage,
        }
        for deal_id, steps in histories
        for entry in first_entries(steps, stages, LOST)
    ]


def _rewrite(session: Session, deal_ids: Sequence[str], order: list[str]) -> None:
    session.execute(
        delete(DealStageEntryRow)
        .where(among(session, DealStageEntryRow.deal_id, deal_ids))
        .execution_options(synchronize_session=False)
    )
    insert_new(session, DealStageEntryRow, _entry_rows(_histories(session, deal_ids), order))


def rewrite_deals(session: Session, deal_ids: Sequence[str]) -> None:
    """Rewrite these deals' entries from their histories under the stored order, ready or
    not (none yet: nothing; the first rebuild writes every deal's). The caller holds
    ``DEAL_FUNNEL`` shared and the deals' row locks."""
    state = order_state(session)
    if state is not None and deal_ids:
        _rewrite(session, deal_ids, state[0])


def retarget(sessions: sessionmaker[Session], settings: Settings) -> list[str] | None:
    """Step 1: store the order computed now as the target, not ready; return it (None: the
    stored order is already it, ready)."""
    with unit_of_work(sessions, Lock(DEAL_FUNNEL)) as session:
        order = current_order(session, settings.deal_stage_order)
        if order_state(session) == (order, True):
            nothing_changed(session)  # another worker got there first
            return None
        store_order(session, order, ready=False)  # readers tally the histories from now
        return order


def rewrite_all(sessions: sessionmaker[Session], order: list[str]) -> bool:
    """Step 2: rewrite every deal with a stage change under ``order``, chunk by chunk; return
    False if the target moved meanwhile (the rest is left to a later pass)."""
    with sessions() as session:
        deal_ids = list(
            session.scalars(
                select(DealStageChangeRow.deal_id).distinct().order_by(DealStageChangeRow.deal_id)
            )
        )
    for start in range(0, len(deal_ids), _CHUNK):
        chunk = deal_ids[start : start + _CHUNK]
        with unit_of_work(sessions, Lock(DEAL_FUNNEL, shared=True)) as session:
            nothing_changed(session)  # no reader uses entries that are not ready
            state = order_state(session)
            if state is None or state[0] != order:
                return False
            lock_deals(session, chunk)
            _rewrite(session, chunk, order)
    return True


def publish(sessions: sessionmaker[Session], order: list[str]) -> bool:
    """Step 3: mark ``order`` ready if it is still the target; return whether it was."""
    with unit_of_work(sessions, Lock(DEAL_FUNNEL)) as session:
        state = order_state(session)
        if state is None or state[0] != order:
            nothing_changed(session)
            return False
        store_order(session, order, ready=True)  # readers switch to the entries
        return True


def refresh_deal_funnel(sessions: sessionmaker[Session], settings: Settings) -> bool:
    """Move the deal funnel's entries to the order computed now if they are not ready under
    it; return whether they are ready under a new order now (see the module docstring)."""
    with sessions() as session:
        order = current_order(session, settings.deal_stage_order)
        if order_state(session) == (order, True):
            return False
    target = retarget(sessions, settings)
    return target is not None and rewrite_all(sessions, target) and publish(sessions, target)
