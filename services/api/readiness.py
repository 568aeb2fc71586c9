"""Each model's ``status`` and ``pending`` revenue over a range (contract §6).

A model's pending revenue is the converted amount of the won deals closed in the range that
it has not credited yet: those without a ``deal_attributions`` row for it (a data-driven model
before its first fit is applied, a custom model the worker is still computing). Its attributed
and unattributed revenue come from the rows it has, so per model, at every moment,

    attributed + unattributed + pending = closed-won revenue (converted, in range).

A model's rows in a range are a subset of the won and converted deals closed in it: the
worker writes one per such deal, with the deal's ``closed_at`` and converted amount, in the
transaction that changes the deal, and deletes it when the deal leaves that state. So a
model with as many rows in the range as there are such deals has one for each (pending 0),
and otherwise its pending revenue is the converted revenue minus the amounts of its rows
(``queries.uncredited``, from the day rollups: a few rows a day, run only for the models
that may miss a deal).

``status`` is ``pending`` while a model has not credited everything it will: a data-driven
model with no done fit (no snapshot yet), a custom model still ``computing`` (its credits may
be partial, or the previous definition's), or any pending revenue; else ``ready``. Every input
changes only in a transaction that also bumps the projection version, so the report cache
(``services.api.cache``) never serves a stale status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api import queries
from services.api.definitions import COMPUTING
from services.api.params import Period
from services.api.snapshots import DONE
from services.core.db.schema import AttributionModelRow, ModelFitRow
from services.domain.datadriven import DATA_DRIVEN

READY: Literal["ready"] = "ready"
PENDING: Literal["pending"] = "pending"
Status = Literal["ready", "pending"]


@dataclass(frozen=True)
class ModelState:
    """Whether a model has credited all won revenue in a range, and what it has not."""

    status: Status
    pending_minor: int


def model_states(
    session: Session,
    model_ids: Sequence[str],
    period: Period,
    *,
    sums: Mapping[str, queries.AttributionSums],
    won: queries.ConvertedWon,
) -> dict[str, ModelState]:
    """Return each model's status and pending revenue over ``period``.

    ``sums`` is ``queries.deal_attribution_sums`` and ``won`` ``queries.converted_won`` over
    the same period, read in the same snapshot.
    """
    incomplete = [m for m in model_ids if sums.get(m, queries.NO_DEALS).deals < won.deals]
    pending = queries.uncredited(session, incomplete, period)
    unready = unready_models(session, model_ids)
    out = {}
    for model_id in model_ids:
        minor = pending.get(model_id, 0)
        status = PENDING if minor or model_id in unready else READY
        out[model_id] = ModelState(status, minor)
    return out


def unready_models(session: Session, model_ids: Sequence[str]) -> set[str]:
    """Return the models among ``model_ids`` whose credits are not (all) computed yet.

    A data-driven model without a done fit, and a custom model whose status is computing.
    """
    data_driven = [m for m in model_ids if m in DATA_DRIVEN]
    fitted = (
        set(
            session.scalars(
                select(ModelFitRow.model_id)
                .where(ModelFitRow.model_id.in_(data_driven), ModelFitRow.status == DONE)
                .distinct()
            )
        )
        if data_driven
        else set()
    )
    computing = set(
        session.scalars(
            select(AttributionModelRow.model_id).where(
                AttributionModelRow.model_id.in_(model_ids),
                AttributionModelRow.builtin.is_(False),
                AttributionModelRow.status == COMPUTING,
            )
        )
    )
    return (set(data_driven) - fitted) | computing
