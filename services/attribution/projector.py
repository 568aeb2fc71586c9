"""Apply one batch of decoded events inside the caller's transaction.

Idempotent: events are keyed by ``event_id`` (a second copy does nothing), derived state is
re-derived from the stored events, and affected deals' credits are replaced wholesale. So
re-applying any batch (after a crash between the database commit and the Kafka offset
commit, or a full replay) leaves the database exactly as applying it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.attribution.attributes import project_attributes
from services.attribution.conflicts import Conflict, Origin
from services.attribution.credits import affected_deals, recompute_deals
from services.attribution.event_cache import EventCache
from services.attribution.funnel_summary import project_funnel_summary
from services.attribution.registry import active_models
from services.attribution.stage_history import project_stage_changes
from services.attribution.state_store import (
    Impact,
    project_campaigns,
    project_contacts,
    project_costs,
    project_fx_rates,
    project_touches,
    store_events,
)
from services.core.db.version import bump_projection_version
from services.core.events import Event
from services.core.settings import Settings

# Serialises batch transactions of several workers on PostgreSQL: a deal recomputed by one
# worker must see the touches another worker committed (no lost credit between partitions).
_PG_BATCH_LOCK = 7_120_421_001


# Deals recomputed per step: bounds the memory and the rows of one step when a batch (a rate
# of a busy currency, say) affects very many deals.
RECOMPUTE_CHUNK = 2000


@dataclass(frozen=True)
class BatchResult:
    received: int
    stored: int
    duplicates: int  # copies of stored events, identical or conflicting
    deals_recomputed: int
    affected: frozenset[str] = frozenset()  # the deals the batch may have changed
    conflicts: tuple[Conflict, ...] = ()  # copies whose content differs from the stored event


def lock_for_batch(session: Session) -> None:
    """Take the cross-worker batch lock (PostgreSQL; SQLite already serialises writers)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_BATCH_LOCK})


def apply_events(
    session: Session,
    events: Sequence[Event],
    *,
    settings: Settings,
    now: datetime,
    origins: Sequence[Origin | None] | None = None,
    cache: EventCache | None = None,
) -> BatchResult:
    """Store new events, project state and recompute the credits of every affected deal.

    ``events`` are in log order, ``origins`` (parallel) where each arrived. Conflicting copies
    are returned, not recorded: the caller records them with the batch's offsets.
    """
    stored = store_events(session, events, stored_at=now, origins=origins, cache=cache)
    new = stored.new
    impact = Impact(deal_ids={e.deal_id for e in new if hasattr(e, "deal_id")})
    if new:
        bump_projection_version(session)
    project_campaigns(session, new, cache=cache)
    project_touches(session, new, impact)
    project_contacts(session, new, impact, cache=cache)
    project_stage_changes(session, new)
    project_attributes(session, new)
    project_fx_rates(session, new, impact)
    project_costs(session, new, impact, reporting=settings.reporting_currency)
    project_funnel_summary(session, new, impact, cache=cache)
    session.flush()
    deals = (
        affected_deals(
            session,
            impact,
            reporting=settings.reporting_currency,
            lookback=timedelta(days=settings.lookback_days),
        )
        if new
        else set()
    )
    models = active_models(session, settings) if deals else []
    ordered = sorted(deals)
    recomputed = 0
    for start in range(0, len(ordered), RECOMPUTE_CHUNK):
        recomputed += recompute_deals(
            session,
            ordered[start : start + RECOMPUTE_CHUNK],
            settings=settings,
            models=models,
            cache=cache,
        )
    return BatchResult(
        received=len(events),
        stored=len(new),
        duplicates=len(events) - len(new),
        deals_recomputed=recomputed,
        affected=frozenset(deals),
        conflicts=tuple(stored.conflicts),
    )
