"""Apply a batch of decoded events: store → project (each step noting its impact) → queue.

The batch transaction stores the new events and projects what their own partitions own
(campaigns, touches, contacts, stage histories, attributes, rates, costs), each step adding to
the batch's ``Impact``; the worker queues that impact, and the deals and roots it reaches are
recomputed after the commit (``services.attribution.dirty``, which says why that is exact with
several workers). ``apply_events`` runs the whole pipeline in one transaction, for callers
that have the database to themselves (tests, tools).

Idempotent: events are keyed by ``event_id`` (a second copy does nothing), derived state is
re-derived from the stored events, and affected deals' credits are replaced wholesale. So
re-applying any batch (after a crash between the database commit and the Kafka offset
commit, or a full replay) leaves the database exactly as applying it once.

The few projections that read state another partition writes take advisory locks
(``locks_for``): a contact merge rewrites the roots of contacts whose own upserts live in
other partitions (merges exclusive, upserts shared), and a rate reconverts costs of campaigns
in other partitions (rates exclusive, costs shared). Both are rare next to touches and deals,
which take none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from services.attribution.attributes import project_attributes
from services.attribution.conflicts import Conflict, Origin
from services.attribution.dirty import settle
from services.attribution.event_cache import EventCache
from services.attribution.funnel_summary import note_funnel_changes
from services.attribution.stage_history import project_stage_changes
from services.attribution.state_store import (
    Impact,
    Stored,
    project_campaigns,
    project_contacts,
    project_costs,
    project_fx_rates,
    project_touches,
    store_events,
)
from services.core.db.unit_of_work import CONTACT_MERGES, FX_RATES, Lock
from services.core.db.version import bump_projection_version
from services.core.events import Event
from services.core.settings import Settings


@dataclass(frozen=True)
class BatchResult:
    received: int
    stored: int
    duplicates: int  # copies of stored events, identical or conflicting
    deals_recomputed: int
    affected: frozenset[str] = frozenset()  # the deals recomputed with the batch
    conflicts: tuple[Conflict, ...] = ()  # copies whose content differs from the stored event


def locks_for(events: Sequence[Event]) -> list[Lock]:
    """The advisory locks a batch of these events takes (see the module docstring)."""
    types = {event.type for event in events}
    locks = []
    if "contact.merged" in types:
        locks.append(Lock(CONTACT_MERGES))
    elif "contact.upserted" in types:
        locks.append(Lock(CONTACT_MERGES, shared=True))
    if "fx.rate" in types:
        locks.append(Lock(FX_RATES))
    elif "campaign.cost" in types:
        locks.append(Lock(FX_RATES, shared=True))
    return locks


@dataclass(frozen=True)
class Projected:
    """What the batch step did: the events it stored (and the conflicting copies), its impact."""

    stored: Stored
    impact: Impact


def store_and_project(
    session: Session,
    events: Sequence[Event],
    *,
    settings: Settings,
    now: datetime,
    origins: Sequence[Origin | None] | None = None,
    cache: EventCache | None = None,
) -> Projected:
    """Store new events and project them; return them with the impact to resolve later.

    ``events`` are in log order, ``origins`` (parallel) where each arrived. Conflicting copies
    are returned, not recorded: the caller records them with the batch's offsets.
    """
    stored = store_events(session, events, stored_at=now, origins=origins, cache=cache)
    new = stored.new
    impact = Impact(deal_ids={e.deal_id for e in new if hasattr(e, "deal_id")})
    project_campaigns(session, new, cache=cache)
    project_touches(session, new, impact)
    project_contacts(session, new, impact, cache=cache)
    project_stage_changes(session, new)
    project_attributes(session, new)
    project_fx_rates(session, new, impact)
    project_costs(session, new, impact, reporting=settings.reporting_currency)
    note_funnel_changes(session, new, impact, cache=cache)
    session.flush()
    return Projected(stored, impact)


def apply_events(
    session: Session,
    events: Sequence[Event],
    *,
    settings: Settings,
    now: datetime,
    origins: Sequence[Origin | None] | None = None,
    cache: EventCache | None = None,
) -> BatchResult:
    """Store, project and settle a batch in the caller's transaction (exclusive callers)."""
    projected = store_and_project(
        session, events, settings=settings, now=now, origins=origins, cache=cache
    )
    new = projected.stored.new
    deals: set[str] = set()
    if new:
        bump_projection_version(session)
        deals = settle(session, projected.impact, settings, cache)
    return batch_result(events, projected, deals)


def batch_result(events: Sequence[Event], projected: Projected, deals: set[str]) -> BatchResult:
    """Summarise a batch: counts, the deals recomputed with it, the conflicting copies."""
    return BatchResult(
        received=len(events),
        stored=len(projected.stored.new),
        duplicates=len(events) - len(projected.stored.new),
        deals_recomputed=len(deals),
        affected=frozenset(deals),
        conflicts=tuple(projected.stored.conflicts),
    )
