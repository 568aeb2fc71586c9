"""``/v1/reports/funnel`` and ``/v1/reports/sla``: stage funnels and the hand-off SLA.

The funnel depends on the projection alone (no clock), so its rendered body is cached per
projection version like ROI. The SLA depends on the clock too ("none yet once that long has
passed"): it is a few SQL aggregates over the worker's ``handoffs`` as of the request's
moment, cached per projection version and *epoch*: the window in which the body built last
for the same query is still exactly the answer (until the next MQL, response or deadline of
its range, ``services.api.sla_windows``), else the query's current ``SLA_FRESH_S``-second
window (a body at most that old; each query's windows start at its own offset, so the
queries of a dashboard do not all rebuild at once). 32 readers cost one build.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
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
from services.api.selection import MAX_LIMIT, MAX_OFFSET
from services.api.sla import BreachPage, sla_report, valid_until
from services.api.sla_windows import SlaWindows, Window

router = APIRouter(prefix="/v1/reports", tags=["reports"])

# An SLA answer is reused for at most this many seconds (its ``as_of`` says when it was made).
SLA_FRESH_S = 5

_CSV = csv_responses("bad date or range")
BreachesLimit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="breaching contacts listed (a page)")
]
BreachesOffset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="breaching contacts skipped before the page")
]
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
        body: FunnelOut | DealFunnelOut
        if object == "deals":
            body = deal_funnel_report(session, period=period, configured_order=order)
        else:
            body = funnel_report(session, period=period)
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
    breaches_limit: BreachesLimit = 100,
    breaches_offset: BreachesOffset = 0,
) -> Response:
    """MQLs in range per ISO week and overall: responses, median and p90 hours, breaches.

    A sales response is the first later touch (after merges) of a sales-sourced campaign or
    of type meeting, call or sales_email, or the first later change to sql, recycled or
    disqualified. Breached: answered after more than ``CLOSEDLOOP_SLA_HOURS`` (default 24),
    or unanswered that long after. The breaching contacts are listed (JSON only) by MQL
    moment then contact id, ``breaches_limit`` (default 100) after ``breaches_offset``;
    ``breaches_total`` counts them all. The answer was computed at ``as_of``: it is the
    answer now too when no MQL, response or SLA deadline of the range came in between, else
    at most ``SLA_FRESH_S`` seconds old.
    """
    now = datetime.now(UTC)
    hours = settings.sla_hours
    page = BreachPage(breaches_limit, breaches_offset)
    windows: SlaWindows = request.app.state.sla_windows
    query = ("sla", period, hours, fmt, page)
    epoch = windows.epoch(query, now, otherwise=("fresh", freshness_window(query, now)))

    def build(session: Session, _: None) -> Response:
        body = sla_report(session, period=period, now=now, sla_hours=hours, page=page)
        until = valid_until(session, period=period, now=now, sla_hours=hours)
        windows.record(query, Window(epoch, now, until))
        return render(body, fmt, filename="sla.csv")

    return await reports.answer((*query, epoch), resolve=lambda _: None, build=build)


def freshness_window(key: Hashable, now: datetime) -> int:
    """Number the ``SLA_FRESH_S``-second window of ``now`` in which ``key``'s body is reused.

    Each query's windows start at its own offset (a stable hash of the key), so the queries
    of a page or a dashboard expire at different moments instead of all rebuilding at once.
    """
    offset = zlib.crc32(repr(key).encode()) % (SLA_FRESH_S * 1000) / 1000
    return int((now.timestamp() + offset) // SLA_FRESH_S)
