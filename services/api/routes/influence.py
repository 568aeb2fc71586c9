"""``GET /v1/reports/influence``: sourced and influenced revenue per campaign; JSON or CSV.

The same rules as the other reports (``services.api.routes.reports``): ``from`` inclusive,
``to`` exclusive, UTC days, a deal counts by its ``closed_at``; ``Accept: text/csv`` answers
a CSV, anything but JSON or CSV is 406. The body depends on the projection alone, so it is
cached per projection version after the key's scope and the period were checked.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from services.api.deps import CachedReportsDep, FormatDep, PeriodDep, ReadPrincipal, SettingsDep
from services.api.influence import InfluenceReportOut, influence_report
from services.api.rendering import csv_responses, render
from services.core.db.rollups import SOURCE_MODEL

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_CSV = csv_responses("bad date or range")


@router.get("/influence", response_model=InfluenceReportOut, responses=_CSV)
async def influence(
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
) -> Response:
    """Per campaign: the won revenue it sourced and the won revenue it influenced.

    ``sourced_revenue`` / ``sourced_deals``: won deals whose ``lead_creation`` touch is the
    campaign's. ``influenced_revenue`` / ``influenced_deals``: won deals with any touch of the
    campaign, each at its full amount (not split, so these overlap between campaigns). Rows
    are the campaigns that touched a won deal in range, by sourced then influenced revenue
    descending, then id. ``totals``: won revenue = sales-sourced + marketing-sourced +
    unsourced (won deals with an empty journey), exactly; won deals without a usable fx rate
    are left out and counted in ``unconverted_deals``.
    """

    def build(session: Session, _model: str) -> Response:
        body = influence_report(session, period=period, currency=settings.reporting_currency)
        return render(body, fmt, filename="influence.csv")

    return await reports.answer(
        ("influence", period, fmt), resolve=lambda _known: SOURCE_MODEL, build=build
    )
