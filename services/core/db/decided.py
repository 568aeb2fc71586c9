"""The decided deals the data-driven models learn from, as channel paths (worker and API).

A decided deal is won and converted (its value: the converted amount) or lost (it ends in
null); its journey (contract §2) ends at its win or its loss; an empty journey is left out.
``decided_before`` cuts the deals to those decided before a moment (the backtest's refits).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.db.journeys import journey_candidates
from services.core.db.schema import DealContactRow, DealRow
from services.core.settings import Settings
from services.domain import journey_channels, select_journey
from services.domain.paths import Path
from services.domain.state import STATUS_LOST, STATUS_WON, DealState

_CHUNK = 1000


def _decided(session: Session, decided_before: datetime | None = None) -> list[DealRow]:
    won = (DealRow.status == STATUS_WON) & (DealRow.conversion == "converted")
    lost = DealRow.status == STATUS_LOST
    if decided_before is not None:
        won &= DealRow.closed_at < decided_before
        lost &= DealRow.lost_at < decided_before
    return list(session.scalars(select(DealRow).where(won | lost).order_by(DealRow.deal_id)))


def decided_deal_count(session: Session) -> int:
    """Count the deals a fit learns from (won and converted, or lost)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(DealRow)
            .where(
                ((DealRow.status == STATUS_WON) & (DealRow.conversion == "converted"))
                | (DealRow.status == STATUS_LOST)
            )
        )
        or 0
    )


def collect_paths(
    session: Session, settings: Settings, *, decided_before: datetime | None = None
) -> tuple[list[Path], dict[str, Any]]:
    """Return the channel paths of all decided deals and a summary of the inputs.

    ``decided_before``: only the deals won or lost before that moment (a backtest's refit).
    """
    rows = _decided(session, decided_before)
    lookback = timedelta(days=settings.lookback_days)
    paths: list[Path] = []
    won = lost = 0
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        contacts: dict[str, list[str]] = {}
        for deal_id, contact_id in session.execute(
            select(DealContactRow.deal_id, DealContactRow.contact_id).where(
                DealContactRow.deal_id.in_([r.deal_id for r in chunk])
            )
        ):
            contacts.setdefault(deal_id, []).append(contact_id)
        states = [
            state
            for r in chunk
            if (state := _as_closed(r, tuple(contacts.get(r.deal_id, ())))) is not None
        ]
        candidates = journey_candidates(session, states, lookback=lookback)
        values = {r.deal_id: r.reporting_minor for r in chunk}
        for state in states:
            assert state.closed_at is not None and state.journey_start is not None
            journey = select_journey(
                candidates.get(state.deal_id, []),
                created_at=state.journey_start,
                closed_at=state.closed_at,
                lookback=lookback,
            )
            if not journey:
                continue
            converted = state.status == STATUS_WON
            won, lost = won + converted, lost + (not converted)
            paths.append(
                Path(
                    journey_channels(journey),
                    converted,
                    value=(values[state.deal_id] or 0) if converted else 0,
                )
            )
    closes = [end for r in rows if (end := r.closed_at or r.lost_at) is not None]
    inputs = {
        "won_deals": won,
        "lost_deals": lost,
        "decided_deals": len(rows),
        "paths": len(paths),
        "distinct_paths": len({(p.channels, p.converted) for p in paths}),
        "channels": sorted({c for p in paths for c in p.channels}),
        "from": min(closes).isoformat() if closes else None,
        "to": max(closes).isoformat() if closes else None,
    }
    return paths, inputs


def _as_closed(row: DealRow, contact_ids: tuple[str, ...]) -> DealState | None:
    """The deal as a journey ending at its win or its loss (§4: a lost deal's journey)."""
    end = row.closed_at if row.status == STATUS_WON else row.lost_at
    if end is None:
        return None
    return DealState(
        deal_id=row.deal_id,
        account_id=row.account_id,
        status=row.status,
        created_at=row.created_at,
        closed_at=end,
        contact_ids=contact_ids,
    )
