"""``GET /v1/reports/pipeline``: open deals' amounts attributed under one model; JSON or CSV.

``Accept: text/csv`` answers a CSV, anything but JSON or CSV is 406, an unknown model is 422
(as for ROI). The body depends on the worker's latest snapshot alone, and the snapshot is
written with a new projection version, so it is cached per projection version after the
key's scope and the model were checked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from services.api.deps import (
    DEFAULT_MODEL,
    CachedReportsDep,
    FormatDep,
    ModelQuery,
    ReadPrincipal,
    SettingsDep,
    requested_model,
)
from services.api.pipeline import GroupBy, PipelineReportOut, pipeline_report
from services.api.rendering import csv_responses, render

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_CSV = csv_responses("unknown model or grouping")
GroupByQuery = Annotated[GroupBy, Query(description="campaign or channel")]


@router.get("/pipeline", response_model=PipelineReportOut, responses=_CSV)
async def pipeline(
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    model: ModelQuery = DEFAULT_MODEL,
    group_by: GroupByQuery = "campaign",
) -> Response:
    """Open deals' amounts credited to campaigns (or channels) under one model, by stage.

    Journeys end at ``as_of``, the time of the worker's latest snapshot (recomputed every
    ``pipeline_interval_s`` when anything changed), and amounts convert at the latest rate on
    or before its day. ``stages`` splits each row's ``pipeline`` by the deals' current stage.
    ``totals.unattributed_pipeline`` is the open amount with an empty journey; open deals with
    no usable rate are left out and counted in ``totals.unconverted_deals``. Before the first
    snapshot ``as_of`` is null and ``rows`` empty; ``status`` is ``pending`` for a model the
    snapshot has not credited (rows missing, not zero).
    """

    def build(session: Session, model_id: str) -> Response:
        body = pipeline_report(
            session, model_id=model_id, group_by=group_by, currency=settings.reporting_currency
        )
        return render(body, fmt, filename="pipeline.csv")

    return await reports.answer(
        ("pipeline", group_by, fmt),
        resolve=lambda known: requested_model(known, model),
        build=build,
    )
