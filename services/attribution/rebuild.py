"""Applying a fit: rewrite a data-driven model's credits under a new snapshot, resumably.

Invariant: a fit becomes ``done`` (the model's current snapshot, what the API names) only in
a transaction that finds, holding the fit-status lock exclusively (no dirty-deal recompute is
in flight: they hold it shared), no won and converted deal whose credits for the model come
from another snapshot. Until then it is ``applying``, and the deals still to
re-credit are exactly those whose ``deal_attributions`` row for the model does not carry the
fit's id: derived from the database, not from memory, so after an outage, a crash or a stop
the next maintenance pass (of any worker) continues where the last one stopped.

While a fit is applying, the dirty-deal recompute credits deals with it too (``fits_in_force``),
so the set of deals left only shrinks; a re-credit is ``recompute_deals`` on a chunk of deals,
their rows locked, in one transaction, so each deal's credits always come whole from one
snapshot and never interleave with another rewrite of the deal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.credits import recompute_deals
from services.attribution.recompute import Progress
from services.attribution.registry import (
    FIT_APPLYING,
    FIT_DONE,
    FIT_FAILED,
    fit_model,
    fits_in_force,
)
from services.core.db.schema import DealAttributionRow, DealRow, ModelFitRow
from services.core.db.unit_of_work import MODELS_IN_FORCE, Lock, lock_deals, take, unit_of_work
from services.core.settings import Settings
from services.domain.state import STATUS_WON

log = logging.getLogger("closedloop.fitting")
CHUNK = 500  # deals re-credited per transaction
Stop = Callable[[], bool]


def _uncredited(model_id: str, fit_id: int) -> ColumnElement[bool]:
    """The deal has no credits of ``model_id`` from fit ``fit_id`` (yet)."""
    return ~exists().where(
        DealAttributionRow.model_id == model_id,
        DealAttributionRow.deal_id == DealRow.deal_id,
        DealAttributionRow.fit_id == fit_id,
    )


def _won() -> ColumnElement[bool]:
    """Won and converted: the deals that carry credits."""
    return (DealRow.status == STATUS_WON) & (DealRow.conversion == "converted")


def deals_left(
    session: Session, model_id: str, fit_id: int, *, after: str = "", limit: int = CHUNK
) -> list[str]:
    """Return the next won deals (by id, after ``after``) not yet credited from the fit."""
    return list(
        session.scalars(
            select(DealRow.deal_id)
            .where(_won(), DealRow.deal_id > after, _uncredited(model_id, fit_id))
            .order_by(DealRow.deal_id)
            .limit(limit)
        )
    )


def _count(session: Session, *conditions: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(DealRow).where(*conditions)) or 0)


def apply_fit(
    sessions: sessionmaker[Session],
    settings: Settings,
    fit_id: int,
    *,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> bool:
    """Re-credit every won deal under an applying fit, then mark it done; return whether done.

    Returns False, leaving the fit applying, when asked to ``stop`` or when the same deals
    stay uncredited after being re-credited (logged; a later pass tries again). A database
    error propagates, the fit staying applying with every committed chunk kept.
    """
    with sessions() as session:
        fit = session.get(ModelFitRow, fit_id)
        if fit is None or fit.status != FIT_APPLYING:
            return False
        model = fit_model(fit)
        total = _count(session, _won())
        done = total - _count(session, _won(), _uncredited(model.model_id, fit_id))
    after, recredited = "", set[str]()
    while stop is None or not stop():
        with unit_of_work(sessions) as session:
            row = session.get(ModelFitRow, fit_id)
            if row is None or row.status != FIT_APPLYING:
                return False
            ids = deals_left(session, model.model_id, fit_id, after=after, limit=chunk)
            if not ids and after:  # the end of a sweep: look again from the start
                after = ""
                ids = deals_left(session, model.model_id, fit_id, limit=chunk)
                if ids and recredited.issuperset(ids):
                    log.warning("fit %s: deals %s stay uncredited; retrying later", fit_id, ids)
                    return False
            if not ids:  # no recompute in flight between this check and the status
                take(session, [Lock(MODELS_IN_FORCE)])
                ids = deals_left(session, model.model_id, fit_id, limit=chunk)
            if not ids:
                row.status = FIT_DONE
                row.progress_done = row.progress_total = _count(session, _won())
                return True
            lock_deals(session, ids)
            recompute_deals(session, ids, settings=settings, models=[model])
            recredited.update(ids)
            after, done = ids[-1], done + len(ids)
            row.progress_done, row.progress_total = min(done, total), total
        if progress is not None:
            progress(min(done, total), total)
    return False


def resume_applying_fits(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> list[int]:
    """Finish every fit left applying (by an outage, a crash, a stop); return those done.

    A fit that a newer one of its model has overtaken is marked failed instead: its credits
    are being replaced anyway.
    """
    with sessions() as session:
        applying = list(
            session.execute(
                select(ModelFitRow.id, ModelFitRow.model_id)
                .where(ModelFitRow.status == FIT_APPLYING)
                .order_by(ModelFitRow.id)
            )
        )
        newest = {model_id: fit.id for model_id, fit in fits_in_force(session).items()}
    done = []
    for fit_id, model_id in applying:
        if newest.get(model_id, fit_id) != fit_id:
            supersede(sessions, fit_id, by=newest[model_id])
            continue
        log.info("resuming the credits of %s snapshot %s", model_id, fit_id)
        if apply_fit(sessions, settings, fit_id, chunk=chunk, progress=progress, stop=stop):
            done.append(fit_id)
    return done


def supersede(sessions: sessionmaker[Session], fit_id: int, *, by: int) -> None:
    """Mark an applying fit failed because fit ``by`` of its model replaces it."""
    with unit_of_work(sessions) as session:
        session.execute(
            update(ModelFitRow)
            .where(ModelFitRow.id == fit_id, ModelFitRow.status == FIT_APPLYING)
            .values(status=FIT_FAILED, error=f"superseded by fit {by} before it was applied")
        )
