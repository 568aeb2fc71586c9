"""Rebuild credits from stored events, in chunks of deals, each chunk one transaction."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select

from services.attribution.credits import recompute_deals
from services.attribution.projector import lock_for_batch
from services.attribution.registry import active_models, sync_builtin_models
from services.attribution.state_store import reconvert_costs
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CampaignCostRow, EventRow
from services.core.settings import Settings


def recompute_all(
    settings: Settings, *, deal_ids: list[str] | None, batch: int, console: Console
) -> int:
    """Recompute the given deals (default: every deal with events); return how many."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        sync_builtin_models(session, settings)
        ids = deal_ids or sorted(
            set(
                session.scalars(
                    select(EventRow.deal_id).where(EventRow.deal_id.is_not(None)).distinct()
                )
            )
        )
    if deal_ids is None:  # a full recompute also re-converts every cost
        with sessions() as session, session.begin():
            lock_for_batch(session)
            reconvert_costs(
                session,
                list(session.scalars(select(CampaignCostRow))),
                reporting=settings.reporting_currency,
            )
    done = 0
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("Recomputing deals", total=len(ids))
        for start in range(0, len(ids), batch):
            chunk = [d for d in ids[start : start + batch] if d is not None]
            with sessions() as session, session.begin():
                lock_for_batch(session)
                done += recompute_deals(
                    session, chunk, settings=settings, models=active_models(session, settings)
                )
            progress.advance(task, len(chunk))
    engine.dispose()
    return done
