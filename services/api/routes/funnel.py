"""``/v1/reports/funnel`` and ``/v1/reports/sla``: stage funnels and the hand-off SLA.

The funnel depends on the projection alone (no clock), so its rendered body is cached per
projection version like ROI; the SLA depends on the clock ("none yet once that long has
passed"): its hand-offs (each MQL and its first response) are cached per projection version
and period, and a body built from them as of the clock is served for up to ``SLA_FRESH_S``
seconds (its ``as_of`` says when).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from services.api.deps import (
    CachedReportsDep,
    FormatDep,
    PeriodDep,
    ReadPrincipal,
    SettingsDep,
)
from services.api.funnel import deal_funnel_report, funnel_report
from services.api.funnel_schemas import DealFunnelOut, FunnelOut, SlaOut
from services.api.rendering import csv_responses, render
from services.api.sla import HandoffCache, handoffs, sla_report
from services.core.db.version import projection_version

router = APIRouter(prefix="/v1/reports", tags=["reports"])

# An SLA answer is reused for at most this many seconds (its ``as_of`` says when it was made).
SLA_FRESH_S = 5

_CSV = csv_responses("bad date or range")
ObjectQuery = Annotated[
    Literal["contacts", "deals"], Query(description="contacts' lifecycle stages or deal stages")
]


@router.get("/funnel", response_model=FunnelOut | DealFunnelOut, responses=_CSV)
async def funnel(
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
    object: ObjectQuery = "contacts",  # noqa: A002 - the contract's parameter name
) -> Response:
    """Per stage: volume first entering it in range, converted onward, days to next, exits.

    Contacts count after merges (the surviving contact holds both histories); stages in
    order subscriber, lead, mql, sql, opportunity, customer, with ``recycled`` and
    ``disqualified`` counting those whose next change was that exit. ``object=deals``: deal
    stages in the configured order (``CLOSEDLOOP_DEAL_STAGE_ORDER``, then by first
    appearance), then ``won`` and ``lost``. See ``services.api.funnel``.
    """
    order = settings.deal_stage_order

    def build(session: Session, _: None) -> Response:
        body: FunnelOut | DealFunnelOut = (
            deal_funnel_report(session, period=period, configured_order=order)
            if object == "deals"
            else funnel_report(session, period=period)
        )
        return render(body, fmt, filename=f"funnel-{object}.csv")

    return await reports.answer(
        ("funnel", object, order, period, fmt), resolve=lambda _: None, build=build
    )


@router.get("/sla", response_model=SlaOut, responses=_CSV)
async def sla(
    _: ReadPrincipal,
    request: Request,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
) -> Response:
    """MQLs in range per ISO week and overall: responses, median and p90 hours, breaches.

    A sales response is the first later touch (after merges) of a sales-sourced campaign or
    of type meeting, call or sales_email, or the first later change to sql, recycled or
    disqualified. Breached: answered after more than ``CLOSEDLOOP_SLA_HOURS`` (default 24),
    or unanswered that long after. The breaching contacts are listed (JSON only). The answer
    is as of ``as_of``, at most ``SLA_FRESH_S`` seconds before the request.
    """
    now = datetime.now(UTC)
    handoff_cache: HandoffCache = request.app.state.handoffs
    hours = settings.sla_hours

    def build(session: Session, _: None) -> Response:
        # The version and the hand-offs come from the build's one snapshot (services.api.db).
        found = handoff_cache.get_or_build(
            (projection_version(session), period), lambda: handoffs(session, period=period)
        )
        body = sla_report(found, period=period, now=now, sla_hours=hours)
        return render(body, fmt, filename="sla.csv")

    # The clock only moves breaches of unanswered MQLs: a body is served for a few seconds,
    # like the projection-only reports are for a version, so 32 clients cost one build.
    fresh = int(now.timestamp() // SLA_FRESH_S)
    return await reports.answer(
        ("sla", period, hours, fmt, fresh), resolve=lambda _: None, build=build
    )
