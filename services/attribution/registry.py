"""The attribution models in force: built-ins from the domain plus user-defined ones in the DB."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.core.db.schema import AttributionModelRow, ModelFitRow
from services.core.db.upsert import upsert
from services.core.settings import Settings
from services.domain import (
    AttributionModel,
    builtin_models,
    make_positional_model,
)
from services.domain.datadriven import DATA_DRIVEN, ChannelWeightModel, channel_weights

# A fit's life (``model_fits.status``): requested -> applying (fitted, its credits being
# written) -> done (every credit uses it) | failed.
FIT_REQUESTED, FIT_APPLYING, FIT_DONE, FIT_FAILED = "requested", "applying", "done", "failed"

DATA_DRIVEN_DESCRIPTIONS = {
    "markov": "First-order (or order-k) Markov chain over channels: removal effects, solved "
    "exactly from the absorbing chain of won (conversion) and lost (null) journeys.",
    "shapley": "Shapley values over channels (Zhao et al. 2018 characteristic function: "
    "conversions of journeys whose channel set lies within the coalition), exact.",
}


def sync_builtin_models(session: Session, settings: Settings) -> None:
    """Write the built-in model definitions (with current settings) into ``attribution_models``."""
    models = builtin_models(half_life_days=settings.half_life_days)
    rows = [
        {
            "model_id": m.model_id,
            "kind": m.kind,
            "params": orjson.dumps(m.params()).decode(),
            "description": m.description,
            "builtin": True,
            "position": i,
        }
        for i, m in enumerate(models)
    ]
    data_params = {
        "markov": {"order": str(settings.markov_order)},
        "shapley": {"characteristic": "conversions"},
    }
    rows += [
        {
            "model_id": model_id,
            "kind": model_id,
            "params": orjson.dumps(data_params[model_id]).decode(),
            "description": DATA_DRIVEN_DESCRIPTIONS[model_id],
            "builtin": True,
            "position": len(models) + i,
        }
        for i, model_id in enumerate(DATA_DRIVEN)
    ]
    upsert(session, AttributionModelRow, rows)
    session.execute(
        delete(AttributionModelRow).where(
            AttributionModelRow.builtin.is_(True),
            AttributionModelRow.model_id.not_in([r["model_id"] for r in rows]),
        )
    )


def _newest_fit(session: Session, model_id: str, statuses: Sequence[str]) -> ModelFitRow | None:
    return session.scalars(
        select(ModelFitRow)
        .where(ModelFitRow.model_id == model_id, ModelFitRow.status.in_(statuses))
        .order_by(ModelFitRow.id.desc())
        .limit(1)
    ).first()


def latest_fits(session: Session) -> dict[str, ModelFitRow]:
    """Return the latest done fit of each data-driven model: its current snapshot."""
    fits = {m: _newest_fit(session, m, (FIT_DONE,)) for m in DATA_DRIVEN}
    return {m: fit for m, fit in fits.items() if fit is not None}


def fits_in_force(session: Session) -> dict[str, ModelFitRow]:
    """Return the fit each data-driven model's credits are computed with: its newest fit
    that is done or being applied.

    While a new fit is applied, every deal credited (by a batch or by the rebuild) gets the
    new fit, so the rebuild only ever shrinks the set of deals left to re-credit.
    """
    fits = {m: _newest_fit(session, m, (FIT_APPLYING, FIT_DONE)) for m in DATA_DRIVEN}
    return {m: fit for m, fit in fits.items() if fit is not None}


def fit_model(fit: ModelFitRow) -> ChannelWeightModel:
    """Return a data-driven model frozen at the fit's snapshot."""
    return ChannelWeightModel(
        model_id=fit.model_id,
        fit_id=fit.id,
        channel_weights=channel_weights(fit.model_id, orjson.loads(fit.results)),
        description=DATA_DRIVEN_DESCRIPTIONS[fit.model_id],
    )


def active_models(session: Session, settings: Settings) -> list[AttributionModel]:
    """Return every model whose credits the worker maintains.

    The built-ins, the data-driven models that have a fit (frozen at the fit in force, see
    ``fits_in_force``), then the custom ones.
    """
    models: list[AttributionModel] = list(builtin_models(half_life_days=settings.half_life_days))
    models += [fit_model(fit) for fit in fits_in_force(session).values()]
    custom = session.scalars(
        select(AttributionModelRow)
        .where(AttributionModelRow.builtin.is_(False), AttributionModelRow.kind == "positional")
        .order_by(AttributionModelRow.position, AttributionModelRow.model_id)
    )
    for row in custom:
        models.append(
            make_positional_model(
                row.model_id, orjson.loads(row.params), description=row.description
            )
        )
    return models
