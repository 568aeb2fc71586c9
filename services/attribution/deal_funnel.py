"""Keep the deal funnel's summary: ``deal_stages`` and ``deal_stage_entries`` (no commits).

Invariant: while ``system_state`` holds order O (``deal_funnel_order``), once every queued
change is resolved and recomputed (``services.attribution.dirty``), the rows of every deal D in
``deal_stage_entries`` are exactly ``first_entries(history(D), ranked(O), lost)``
(``services.domain.stages``), where ``history(D)`` is every ``deal_stage_changes`` row of D.
A reader uses these rows only while O equals the order it computes itself in the same
snapshot (``services.core.db.deal_stages.current_order``); otherwise it tallies the
histories (``services.api.funnel``), so an order that moved never gives a wrong funnel.

How it is kept:
- ``deal_stages`` (each CRM stage's first appearance) is kept with the stage changes, in the
  batch's transaction (``note_first_appearances``): a stage is written only when it is new or
  seen earlier than stored, and the upsert keeps the earlier of the two, so concurrent
  batches leave the minimum whatever their order, and most batches write nothing.
- A deal's entries are rewritten whenever the deal is recomputed (``rewrite_deals``): every
  new event of a deal marks it dirty, the recompute holds the deal's claim and reads after
  the changes that marked it committed (the same argument as its credits), under the stored
  order, holding ``DEAL_FUNNEL`` shared.
- When the order computed now is not the stored one (a new stage, an earlier first
  appearance, another setting), maintenance rebuilds every deal's entries under the new order
  and stores it, in one transaction holding ``DEAL_FUNNEL`` exclusively
  (``refresh_deal_funnel``): no recompute writes entries under the old order after that
  commit, and a change the rebuild did not read marks its deal dirty, recomputed after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.deal_stages import (
    LOST,
    ORDER_KEY,
    current_order,
    history_rows,
    ranked,
    stored_order,
)
from services.core.db.schema import (
    DealStageChangeRow,
    DealStageEntryRow,
    DealStageRow,
    SystemStateRow,
)
from services.core.db.unit_of_work import DEAL_FUNNEL, Lock, nothing_changed, unit_of_work
from services.core.db.upsert import _insert, among, insert_new, upsert
from services.core.settings import Settings
from services.domain.stages import Step, first_entries

_CHUNK = 2000  # deals whose histories a rebuild reads and writes at a time


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


def rewrite_deals(session: Session, deal_ids: Sequence[str]) -> None:
    """Rewrite these deals' entries from their histories under the stored order (none yet:
    nothing; the first rebuild writes every deal's). The caller holds ``DEAL_FUNNEL`` shared
    and the deals' claims."""
    order = stored_order(session)
    if order is None or not deal_ids:
        return
    session.execute(
        delete(DealStageEntryRow)
        .where(among(session, DealStageEntryRow.deal_id, deal_ids))
        .execution_options(synchronize_session=False)
    )
    insert_new(session, DealStageEntryRow, _entry_rows(_histories(session, deal_ids), order))


def rebuild(session: Session, settings: Settings) -> list[str]:
    """Rewrite every deal's entries under the order computed now, and store that order; return
    it. The caller holds ``DEAL_FUNNEL`` exclusively."""
    order = current_order(session, settings.deal_stage_order)
    session.execute(delete(DealStageEntryRow).execution_options(synchronize_session=False))
    deal_ids = list(
        session.scalars(
            select(DealStageChangeRow.deal_id).distinct().order_by(DealStageChangeRow.deal_id)
        )
    )
    for start in range(0, len(deal_ids), _CHUNK):
        chunk = deal_ids[start : start + _CHUNK]
        insert_new(session, DealStageEntryRow, _entry_rows(_histories(session, chunk), order))
    value = orjson.dumps(order).decode()
    upsert(
        session,
        SystemStateRow,
        [{"key": ORDER_KEY, "value": value, "updated_at": datetime.now(UTC)}],
    )
    return order


def refresh_deal_funnel(sessions: sessionmaker[Session], settings: Settings) -> bool:
    """Rebuild the deal funnel's entries if the order moved since they were written; return
    whether it rebuilt them (one transaction; any worker, one at a time)."""
    configured = settings.deal_stage_order
    with sessions() as session:
        if stored_order(session) == current_order(session, configured):
            return False
    with unit_of_work(sessions, Lock(DEAL_FUNNEL)) as session:
        if stored_order(session) == current_order(session, configured):
            nothing_changed(session)  # another worker rebuilt it meanwhile
            return False
        rebuild(session, settings)
    return True
