"""``/v1/deals/{deal_id}/attribution``: why a deal's revenue went where it went."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.api.deps import FormatDep, ModelDep, ReadPrincipal, SessionDep, SettingsDep
from services.api.rendering import render
from services.api.reports import deal_attribution
from services.api.schemas import DealAttributionOut

router = APIRouter(prefix="/v1/deals", tags=["deals"])


@router.get(
    "/{deal_id}/attribution",
    response_model=DealAttributionOut,
    responses={
        200: {"content": {"text/csv": {}}},
        404: {"description": "unknown deal"},
        406: {"description": "neither JSON nor CSV accepted"},
    },
)
def attribution(
    deal_id: str,
    _: ReadPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    settings: SettingsDep,
    model: ModelDep,
) -> Response:
    """A deal, its journey in order, and each touch's roles, weight and credit under a model.

    A won and converted deal lists its credited touches; with an empty journey it has
    ``unattributed: true``. An open, lost or unconverted deal answers its state with an
    empty journey (nothing was credited). ``status`` is ``pending`` when the model has not
    credited this won deal yet, or has not credited everything yet (a data-driven model
    before its first fit, a custom model being computed), else ``ready``.
    """
    body = deal_attribution(
        session, deal_id=deal_id, model_id=model, currency=settings.reporting_currency
    )
    return render(body, fmt, filename="deal-attribution.csv")
