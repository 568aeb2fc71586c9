"""Fit snapshots of the data-driven models (``model_fits``) as the API shows them.

A snapshot row is written by the worker: ``params`` / ``inputs`` / ``results`` are JSON text,
``results`` being ``services.domain.datadriven.markov_to_json`` or ``shapley_to_json`` output
(fractions as ``"n/d"`` text). Read-only; every function takes the request's session.

Decisions:
- "The latest snapshot" of a model is its done fit with the highest id (fits are numbered in
  the order they were requested, the order the worker performs them), as the worker's own
  ``latest_fits`` picks it. A newer fit still ``applying`` is not a snapshot yet (the worker
  already credits new deals with it, to finish applying it).
- The table is the removal effects (markov) or Shapley values (shapley) as floats, each with
  its ``share``: the value divided by the sum of all values (the exact fractions are divided,
  then rounded to a float; 0 for every channel when they sum to 0), sorted by value
  descending, then channel. The transition summary is cut to its first ``TRANSITION_ROWS``
  rows (``transitions_total`` counts all of them).
- Reports name the snapshot behind their credits: the newest ``deal_attributions.fit_id``
  among the model's deals closed in the range. Only a done fit is named: while a new fit is
  applying (its credits replacing the current snapshot's, chunk by chunk; it becomes done
  when all are), reports name the current snapshot, the latest done fit, and some deals may
  already carry the new one for a moment. With no deal in the range credited from a snapshot
  (never fitted, or not yet re-credited), or no done fit yet, the report says null rather
  than name a fit its numbers do not come from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.formatting import rfc3339
from services.api.queries import AttributionSums
from services.api.schemas import (
    FailedFitOut,
    FitRefOut,
    MarkovTableRowOut,
    ShapleyTableRowOut,
    SnapshotOut,
    SnapshotRefOut,
    TransitionOut,
)
from services.core.db.schema import ModelFitRow
from services.domain.datadriven import DATA_DRIVEN

DONE, REQUESTED, FAILED = "done", "requested", "failed"
TRANSITION_ROWS = 200


def latest_done(session: Session, model_id: str) -> ModelFitRow | None:
    """Return the model's latest successful fit, or None."""
    return session.scalars(
        select(ModelFitRow)
        .where(ModelFitRow.model_id == model_id, ModelFitRow.status == DONE)
        .order_by(ModelFitRow.id.desc())
        .limit(1)
    ).first()


def pending(session: Session, model_id: str) -> ModelFitRow | None:
    """Return the model's oldest fit still waiting for the worker, or None."""
    return session.scalars(
        select(ModelFitRow)
        .where(ModelFitRow.model_id == model_id, ModelFitRow.status == REQUESTED)
        .order_by(ModelFitRow.id)
        .limit(1)
    ).first()


def failed_since(session: Session, model_id: str, after_id: int) -> FailedFitOut | None:
    """Return the model's latest failed fit newer than fit ``after_id``, or None."""
    row = session.scalars(
        select(ModelFitRow)
        .where(
            ModelFitRow.model_id == model_id,
            ModelFitRow.status == FAILED,
            ModelFitRow.id > after_id,
        )
        .order_by(ModelFitRow.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return FailedFitOut(id=row.id, requested_at=rfc3339(row.requested_at), error=row.error)


def fit_ref(row: ModelFitRow) -> FitRefOut:
    """Return a fit's id and request time."""
    return FitRefOut(id=row.id, requested_at=rfc3339(row.requested_at))


def ref(row: ModelFitRow) -> SnapshotRefOut:
    """Return the short reference to a snapshot that reports carry."""
    return SnapshotRefOut(fit_id=row.id, fitted_at=rfc3339(row.fitted_at))


def _shares(values: Mapping[str, Fraction]) -> list[tuple[str, Fraction, Fraction]]:
    total = sum(values.values(), Fraction(0))
    rows = [(c, v, v / total if total else Fraction(0)) for c, v in values.items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def snapshot(row: ModelFitRow) -> SnapshotOut:
    """Explain a done fit: inputs, parameters, the value table and (markov) the chain."""
    results: dict[str, Any] = json.loads(row.results or "{}")
    table: list[MarkovTableRowOut] | list[ShapleyTableRowOut]
    transitions: list[dict[str, Any]] | None = None
    probability: float | None = None
    if row.model_id == "markov":
        effects = {c: Fraction(v) for c, v in results.get("removal_effects", {}).items()}
        table = [
            MarkovTableRowOut(channel=c, removal_effect=float(v), share=float(s))
            for c, v, s in _shares(effects)
        ]
        transitions = list(results.get("transition_summary", []))
        probability = float(Fraction(results.get("conversion_probability", "0")))
    else:
        values = {c: Fraction(v) for c, v in results.get("values", {}).items()}
        table = [
            ShapleyTableRowOut(channel=c, shapley_value=float(v), share=float(s))
            for c, v, s in _shares(values)
        ]
    return SnapshotOut(
        fit_id=row.id,
        fitted_at=rfc3339(row.fitted_at),
        inputs=json.loads(row.inputs or "{}"),
        params=json.loads(row.params or "{}"),
        table=table,
        conversion_probability=probability,
        transition_summary=None
        if transitions is None
        else [TransitionOut.model_validate(t) for t in transitions[:TRANSITION_ROWS]],
        transitions_total=None if transitions is None else len(transitions),
        exact=bool(results.get("exact", True)),
        max_error=float(results.get("max_error", 0.0)),
    )


def used_by_reports(
    session: Session, model_ids: Sequence[str], sums: Mapping[str, AttributionSums]
) -> dict[str, SnapshotRefOut | None]:
    """Return the snapshot behind each data-driven model's credits in a report's range.

    ``sums`` is ``queries.deal_attribution_sums`` over the same range, which carries each
    model's newest ``fit_id`` (see module doc); the fits are then read in one query.
    """
    fit_ids = {
        m: sums[m].fit_id for m in model_ids if m in DATA_DRIVEN and m in sums and sums[m].fit_id
    }
    rows = (
        {
            row.id: row
            for row in session.scalars(
                select(ModelFitRow).where(ModelFitRow.id.in_(fit_ids.values()))
            )
        }
        if fit_ids
        else {}
    )
    out: dict[str, SnapshotRefOut | None] = {}
    for model_id in model_ids:
        if model_id not in DATA_DRIVEN:
            continue
        fit_id = fit_ids.get(model_id)
        if fit_id in rows and rows[fit_id].status != DONE:  # still applying: not current yet
            current = latest_done(session, model_id)
            out[model_id] = None if current is None else ref(current)
        elif fit_id is None:  # no credit in range comes from any snapshot (yet): say so
            out[model_id] = None
        elif fit_id in rows:
            out[model_id] = ref(rows[fit_id])
        else:
            out[model_id] = SnapshotRefOut(fit_id=fit_id, fitted_at=None)
    return out
