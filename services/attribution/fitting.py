"""Fitting the data-driven models (contract §4): paths from decided deals, versioned snapshots.

A fit collects the journeys of every decided deal — won and converted deals convert (value:
the converted amount), lost deals end in null; empty journeys are left out — as channel paths,
fits the model, and stores a ``model_fits`` snapshot with its inputs and results, ``applying``.
The model's credits are then recomputed for every deal, each recording the snapshot it used,
and the fit becomes ``done`` once all are (``rebuild``). Fits are requested on demand (API,
``closedloop fit``), by the schedule when new decided deals exist, and at once for a model never
fitted as soon as a decided deal exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.rebuild import CHUNK, Stop, apply_fit, resume_applying_fits
from services.attribution.recompute import Progress
from services.attribution.registry import (
    FIT_APPLYING,
    FIT_FAILED,
    FIT_REQUESTED,
    fits_in_force,
)
from services.core.db.decided import collect_paths, decided_deal_count
from services.core.db.schema import ModelFitRow
from services.core.db.unit_of_work import unit_of_work
from services.core.settings import Settings
from services.domain.datadriven import DATA_DRIVEN, markov_to_json, shapley_to_json
from services.domain.markov import fit_markov
from services.domain.paths import Path
from services.domain.shapley import fit_shapley

log = logging.getLogger("closedloop.fitting")


def fit_results(
    model_id: str,
    paths: Sequence[Path],
    settings: Settings,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit one data-driven model on the paths; return (params, results) as JSON-ready dicts."""
    params: dict[str, Any]
    if model_id == "markov":
        params = {"order": settings.markov_order}
        return params, markov_to_json(fit_markov(paths, order=settings.markov_order))
    if model_id == "shapley":
        params = {"characteristic": "conversions"}
        return params, shapley_to_json(fit_shapley(paths, characteristic="conversions"))
    raise ValueError(f"{model_id!r} is not a data-driven model ({', '.join(DATA_DRIVEN)})")


def request_fit(session: Session, model_id: str, *, now: datetime) -> int:
    """Queue a fit (or return the one already queued); return its id."""
    queued = session.scalars(
        select(ModelFitRow.id).where(
            ModelFitRow.model_id == model_id, ModelFitRow.status == FIT_REQUESTED
        )
    ).first()
    if queued is not None:
        return queued
    row = ModelFitRow(model_id=model_id, status=FIT_REQUESTED, requested_at=now)
    session.add(row)
    session.flush()
    return row.id


def due_models(
    session: Session, settings: Settings, *, now: datetime, schedule: bool = True
) -> list[str]:
    """Return the data-driven models to fit now.

    A model never fitted (no fit of any status) is due as soon as a decided deal exists: until
    its first fit its revenue is pending, so that fit does not wait for the schedule (a failed
    one is retried on the schedule, not at every pass). On ``schedule``, a model
    is also due when its fit in force is older than ``fit_interval_s`` and more decided deals
    exist than it learned from (and no fit of it is already queued or being applied).
    """
    newest = {
        model_id: session.scalars(
            select(ModelFitRow.status)
            .where(ModelFitRow.model_id == model_id)
            .order_by(ModelFitRow.id.desc())
            .limit(1)
        ).first()
        for model_id in DATA_DRIVEN
    }
    never = [model_id for model_id, status in newest.items() if status is None]
    if not (schedule or never):
        return []
    decided = decided_deal_count(session)
    if decided == 0:
        return []
    if not schedule:
        return never
    due = []
    fits = fits_in_force(session)
    for model_id, status in newest.items():
        if status in (FIT_REQUESTED, FIT_APPLYING):
            continue  # already on its way
        fit = fits.get(model_id)
        if fit is None:
            due.append(model_id)
            continue
        fitted_with = orjson.loads(fit.inputs).get("decided_deals", 0)
        old = fit.fitted_at is None or now - fit.fitted_at >= timedelta(
            seconds=settings.fit_interval_s
        )
        if old and decided > fitted_with:
            due.append(model_id)
    return due


def run_requested_fits(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> list[int]:
    """Finish the fits being applied, then perform every requested fit; return the fits done.

    A requested fit is fitted, stored ``applying`` with its results, then applied
    (``rebuild.apply_fit``): it becomes the model's current snapshot once every credit uses it.
    """
    done = resume_applying_fits(sessions, settings, chunk=chunk, progress=progress, stop=stop)
    with sessions() as session:
        queued = list(
            session.execute(
                select(ModelFitRow.id, ModelFitRow.model_id)
                .where(ModelFitRow.status == FIT_REQUESTED)
                .order_by(ModelFitRow.id)
            )
        )
    paths: list[Path] | None = None
    inputs: dict[str, Any] = {}
    for fit_id, model_id in queued:
        if stop is not None and stop():
            break
        if paths is None:
            with sessions() as session:
                paths, inputs = collect_paths(session, settings)
        try:
            params, results = fit_results(model_id, paths, settings)
        except (ValueError, ArithmeticError) as exc:
            log.exception("fit %s of %s failed", fit_id, model_id)
            _finish_request(sessions, fit_id, status=FIT_FAILED, error=str(exc)[:4000])
            continue
        if not _finish_request(
            sessions,
            fit_id,
            status=FIT_APPLYING,
            fitted_at=datetime.now(UTC),
            params=orjson.dumps(params).decode(),
            inputs=orjson.dumps(inputs).decode(),
            results=orjson.dumps(results).decode(),
            progress_done=0,
            progress_total=0,  # counted by the first chunk
        ):
            continue  # another worker took it
        log.info(
            "fitted %s (snapshot %s) on %s paths; recomputing its credits",
            model_id,
            fit_id,
            inputs["paths"],
        )
        if apply_fit(sessions, settings, fit_id, chunk=chunk, progress=progress, stop=stop):
            done.append(fit_id)
    return done


def _finish_request(sessions: sessionmaker[Session], fit_id: int, **values: Any) -> bool:
    """Move a requested fit on (to applying or failed); False if it was no longer requested."""
    with unit_of_work(sessions) as session:
        moved = session.execute(
            update(ModelFitRow)
            .where(ModelFitRow.id == fit_id, ModelFitRow.status == FIT_REQUESTED)
            .values(**values)
        )
        return bool(moved.rowcount)  # type: ignore[attr-defined]
