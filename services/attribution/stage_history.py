"""Project the stage histories the funnel and SLA reports read (no commits here).

Invariants: one row per stored event that carries a stage, written in the caller's
transaction with the event itself, keyed by ``event_id`` (insert-ignore), so re-applying a
batch adds nothing and the rows never depend on arrival order: readers order them by
(``occurred_at``, ``event_id``) and resolve merges through ``contacts.root_contact_id`` at
query time. ``contact.upserted`` without ``lifecycle_stage`` and ``deal.reopened`` are not
steps; ``deal.closed_won`` / ``deal.closed_lost`` are the deal's final steps ``won`` / ``lost``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from services.attribution.deal_funnel import note_first_appearances
from services.core.db.schema import DealStageChangeRow, LifecycleChangeRow
from services.core.db.upsert import insert_ignore
from services.core.events import (
    ContactUpserted,
    DealClosedLost,
    DealClosedWon,
    DealCreated,
    DealUpdated,
    Event,
)

OUTCOMES = {"deal.closed_won": "won", "deal.closed_lost": "lost"}


def project_stage_changes(session: Session, new: Sequence[Event]) -> None:
    """Record the lifecycle and deal stage steps carried by newly stored events."""
    contacts: list[dict[str, Any]] = []
    deals: list[dict[str, Any]] = []
    for e in new:
        if isinstance(e, ContactUpserted) and e.lifecycle_stage:
            contacts.append(
                {
                    "event_id": e.event_id,
                    "contact_id": e.contact_id,
                    "stage": e.lifecycle_stage,
                    "occurred_at": e.occurred_at,
                }
            )
        elif isinstance(e, (DealCreated, DealUpdated)) and e.stage:
            deals.append(_deal_step(e, "stage", e.stage))
        elif isinstance(e, (DealClosedWon, DealClosedLost)):
            deals.append(_deal_step(e, OUTCOMES[e.type], OUTCOMES[e.type]))
    insert_ignore(session, LifecycleChangeRow, contacts)
    insert_ignore(session, DealStageChangeRow, deals)
    note_first_appearances(session, deals)


def _deal_step(
    e: DealCreated | DealUpdated | DealClosedWon | DealClosedLost, kind: str, stage: str
) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "deal_id": e.deal_id,
        "kind": kind,
        "stage": stage,
        "occurred_at": e.occurred_at,
    }
