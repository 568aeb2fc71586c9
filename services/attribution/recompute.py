"""Rebuild deals' state and credits from the stored events (``closedloop recompute``).

The result is identical to the incremental path: both derive everything from the stored
events through the same projector functions. Attribution parameters (lookback, half-life,
reporting currency) are recorded with the projection; a worker that starts with different
parameters rebuilds everything before consuming (``recompute_if_parameters_changed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.credits import recompute_deals
from services.attribution.registry import active_models, sync_builtin_models
from services.attribution.state_store import reconvert_costs
from services.core.db.schema import CampaignCostRow, EventRow, SystemStateRow
from services.core.db.unit_of_work import (
    FX_RATES,
    MODELS_IN_FORCE,
    Lock,
    lock_deals,
    nothing_changed,
    unit_of_work,
)
from services.core.db.upsert import upsert
from services.core.settings import Settings
from services.domain import AttributionModel

log = logging.getLogger("closedloop.recompute")
PARAMS_KEY = "attribution_params"
Progress = Callable[[int, int], None]


class UnknownModel(ValueError):
    """A model id that is not among the models in force."""


def attribution_params(settings: Settings) -> dict[str, object]:
    """Return the settings that change attribution results."""
    return {
        "lookback_days": settings.lookback_days,
        "half_life_days": settings.half_life_days,
        "reporting_currency": settings.reporting_currency,
    }


def stored_params(session: Session) -> dict[str, object] | None:
    """Return the parameters the projection was last built with, if recorded."""
    row = session.get(SystemStateRow, PARAMS_KEY)
    return None if row is None else dict(orjson.loads(row.value))


def store_params(session: Session, settings: Settings) -> None:
    """Record the current parameters as those of the projection."""
    upsert(
        session,
        SystemStateRow,
        [
            {
                "key": PARAMS_KEY,
                "value": orjson.dumps(attribution_params(settings)).decode(),
                "updated_at": datetime.now(UTC),
            }
        ],
    )


def recompute(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    deal_ids: Sequence[str] | None = None,
    model_ids: Sequence[str] | None = None,
    batch: int = 500,
    progress: Progress | None = None,
) -> int:
    """Rebuild the given deals (default all) under the given models (default all); return count.

    A full rebuild (no deal or model filter) also re-converts every cost and records the
    parameters used. Each chunk is one unit of work that locks its deals (workers may be
    recomputing some of them) and reads the models in force then.
    """
    with unit_of_work(sessions, Lock(MODELS_IN_FORCE)) as session:
        sync_builtin_models(session, settings)
        _models(session, settings, model_ids)  # refuses unknown ids before any work
        ids = (
            list(deal_ids)
            if deal_ids is not None
            else sorted(
                {d for d in session.scalars(select(EventRow.deal_id).distinct()) if d is not None}
            )
        )
    full = deal_ids is None and model_ids is None
    if deal_ids is None:
        with unit_of_work(sessions, Lock(FX_RATES)) as session:
            reconvert_costs(
                session,
                list(session.scalars(select(CampaignCostRow))),
                reporting=settings.reporting_currency,
            )
    done = 0
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        with unit_of_work(sessions, Lock(MODELS_IN_FORCE, shared=True)) as session:
            lock_deals(session, chunk)
            models = _models(session, settings, model_ids)
            done += recompute_deals(session, chunk, settings=settings, models=models)
        if progress is not None:
            progress(min(start + batch, len(ids)), len(ids))
    if full:
        with unit_of_work(sessions) as session:
            nothing_changed(session)
            store_params(session, settings)
    return done


def _models(
    session: Session, settings: Settings, model_ids: Sequence[str] | None
) -> list[AttributionModel]:
    """The models in force, or those of ``model_ids`` (``UnknownModel`` for an unknown one)."""
    models = active_models(session, settings)
    if model_ids is None:
        return models
    known = {m.model_id for m in models}
    unknown = sorted(set(model_ids) - known)
    if unknown:
        raise UnknownModel(
            f"unknown model(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [m for m in models if m.model_id in set(model_ids)]


def recompute_if_parameters_changed(
    sessions: sessionmaker[Session], settings: Settings, *, progress: Progress | None = None
) -> bool:
    """Rebuild everything when the projection was built with other parameters; return whether."""
    with sessions() as session:
        previous = stored_params(session)
        has_events = session.scalar(select(EventRow.event_id).limit(1)) is not None
    current = attribution_params(settings)
    if previous == current:
        return False
    if previous is None and not has_events:
        with unit_of_work(sessions) as session:
            nothing_changed(session)
            store_params(session, settings)
        return False
    log.warning(
        "attribution parameters changed (%s -> %s): recomputing every deal", previous, current
    )
    recompute(sessions, settings, progress=progress)
    return True
