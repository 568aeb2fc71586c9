"""The deal funnel's stage order and stage histories, as the worker and the read API see them.

The order (contract §6): the configured stages (``deal_stage_order``), then every other CRM
stage by its first appearance (earliest ``occurred_at``, then ``event_id``; ``deal_stages``),
then ``won``; ``lost`` is the deals' exit. The worker keeps ``deal_stage_entries`` under one
order, stored beside them (``system_state`` key ``deal_funnel_order``, with ``ready`` once
every deal's entries are under it); a reader may use those rows only while they are ready
under the order it computes now (``services.attribution.deal_funnel``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import String, delete, literal, select, text
from sqlalchemy.orm import Session

from services.core.db.schema import DealStageChangeRow, DealStageRow, SystemStateRow
from services.core.db.upsert import _insert

ORDER_KEY = "deal_funnel_order"
STAGE_PREFIX = "stage:"  # a CRM stage named like an outcome stays apart from the outcome
WON, LOST = "won", "lost"


def configured_stages(configured: str) -> list[str]:
    """The stages listed in the ``deal_stage_order`` setting, in order."""
    return [s.strip() for s in configured.split(",") if s.strip()]


def current_order(session: Session, configured: str) -> list[str]:
    """Return the CRM deal stages in funnel order: configured ones, then by first appearance."""
    seen = session.scalars(
        select(DealStageRow.stage).order_by(DealStageRow.first_at, DealStageRow.first_event_id)
    )
    return list(dict.fromkeys([*configured_stages(configured), *seen]))


def ranked(order: list[str]) -> list[str]:
    """The funnel's ranked stages for a CRM order: each prefixed, then ``won``."""
    return [f"{STAGE_PREFIX}{s}" for s in order] + [WON]


def order_state(session: Session) -> tuple[list[str], bool] | None:
    """Return the order the worker writes ``deal_stage_entries`` under, and whether every
    deal's entries are under it (``ready``); None before the first one was chosen."""
    row = session.get(SystemStateRow, ORDER_KEY, populate_existing=True)
    if row is None:
        return None
    value = orjson.loads(row.value)
    return [str(s) for s in value["order"]], bool(value["ready"])


def stored_order(session: Session) -> list[str] | None:
    """Return the order every deal's ``deal_stage_entries`` are under (None: none is)."""
    state = order_state(session)
    return state[0] if state is not None and state[1] else None


def store_order(session: Session, order: list[str], *, ready: bool) -> None:
    """Record the order entries are written under, and whether every deal's are."""
    value = orjson.dumps({"order": order, "ready": ready}).decode()
    stmt = _insert(session, SystemStateRow).values(
        key=ORDER_KEY, value=value, updated_at=datetime.now(UTC)
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
    )


def fill_first_appearances(session: Session) -> None:
    """Fill ``deal_stages`` from ``deal_stage_changes`` (for a projection written in bulk:
    the worker keeps it with each batch). Not safe beside concurrent writers."""
    session.execute(delete(DealStageRow))
    session.execute(
        text(
            "INSERT INTO deal_stages (stage, first_at, first_event_id) SELECT stage, "
            "occurred_at, event_id FROM (SELECT stage, occurred_at, event_id, row_number() "
            "OVER (PARTITION BY stage ORDER BY occurred_at, event_id) AS n FROM "
            "deal_stage_changes WHERE kind = 'stage') AS firsts WHERE n = 1"
        )
    )


def history_rows() -> Any:
    """Select every deal step as (entity, stage, occurred_at, event_id): CRM stages prefixed,
    ``won`` and ``lost`` as they are (a subquery; filter and order it as needed)."""
    outcomes = select(
        DealStageChangeRow.deal_id.label("entity"),
        DealStageChangeRow.stage,
        DealStageChangeRow.occurred_at,
        DealStageChangeRow.event_id,
    ).where(DealStageChangeRow.kind != "stage")
    stages = select(
        DealStageChangeRow.deal_id,
        (literal(STAGE_PREFIX, String()) + DealStageChangeRow.stage).label("stage"),
        DealStageChangeRow.occurred_at,
        DealStageChangeRow.event_id,
    ).where(DealStageChangeRow.kind == "stage")
    return outcomes.union_all(stages).subquery("h")
