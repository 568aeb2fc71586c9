"""``/v1/reports/*``: ROI, model comparison and its diff, reconciliation, leads; JSON or CSV.

Shared rules (contract §6): ``from`` inclusive, ``to`` exclusive, UTC days, a deal counts by
its ``closed_at`` and a cost by its days; money in the reporting currency as decimal strings.
``Accept: text/csv`` answers a CSV (see ``services.api.rendering``); anything but JSON or CSV
is 406.

ROI, compare, its diff and reconciliation depend on the projection alone, so their rendered
bodies are cached per projection version (``services.api.cache.CachedReports``), after the
key's scope and every parameter were checked. Leads depend on the clock and are built every
time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from services.api.deps import (
    DEFAULT_MODEL,
    BaseQuery,
    CachedReportsDep,
    FiltersDep,
    FormatDep,
    ModelQuery,
    ModelsQuery,
    OtherQuery,
    PageDep,
    PeriodDep,
    ReadPrincipal,
    SessionDep,
    SettingsDep,
    known_model,
    requested_model,
    requested_models,
)
from services.api.diff import compare_diff
from services.api.rendering import csv_responses, render
from services.api.reports import compare_report, reconciliation_report, roi_report
from services.api.schemas import (
    CompareDiffOut,
    CompareReportOut,
    GroupBy,
    LeadsOut,
    ReconciliationOut,
    RoiReportOut,
    RoiSnapshotReportOut,
)
from services.api.scoring import leads as leads_report
from services.api.selection import check_sort_model, parse_sort

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_CSV = csv_responses("bad date, range, model, filter, sort or page")
GroupByQuery = Annotated[GroupBy, Query(description="campaign or channel")]
SortQuery = Annotated[
    str | None,
    Query(description="field to order rows by, `-field` descending; default `-revenue`"),
]
# What a next-page link keeps of the request: the parameters the report reads.
_PAGED_PARAMS = frozenset(
    [
        "model",
        "models",
        "from",
        "to",
        "group_by",
        "channel",
        "campaign_id",
        "sourced",
        "sort",
        "limit",
    ]
)


def _paged(request: Request, response: Response, next_offset: int | None) -> Response:
    """Link the next page (``Link: rel="next"``, relative) when there is one."""
    if next_offset is not None:
        kept = [(k, v) for k, v in request.query_params.multi_items() if k in _PAGED_PARAMS]
        query = urlencode([*kept, ("offset", str(next_offset))])
        response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return response


@router.get("/roi", response_model=RoiReportOut | RoiSnapshotReportOut, responses=_CSV)
async def roi(
    request: Request,
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
    filters: FiltersDep,
    page: PageDep,
    model: ModelQuery = DEFAULT_MODEL,
    group_by: GroupByQuery = "campaign",
    sort: SortQuery = None,
) -> Response:
    """Revenue, fractional deals, cost, ROI and ROAS per campaign or channel under one model.

    Rows are the campaigns (channels) with a credit or a cost day in the range, by default by
    revenue descending, then id. A credited campaign with no ``campaign.upserted`` yet has a
    null name and channel. ``totals.unattributed_revenue`` is the won revenue in range no touch
    earned; ``totals.pending_revenue`` the won revenue the model has not credited yet, and
    ``status`` is ``pending`` while it has not credited everything (a data-driven model before
    its first fit, a custom model being computed), else ``ready``. For ``markov`` and
    ``shapley``, ``snapshot`` names the fit behind the credits (null before the first fit).

    ``channel``, ``campaign_id`` (comma-separated) and ``sourced`` filter the rows; ``sort``
    orders them (ties by id, null ROI/ROAS last either way); ``limit``/``offset`` page them
    (no ``limit``: every row). ``total_rows`` counts the filtered rows; ``totals.revenue``
    and ``totals.cost`` are over all of them, not the page; ``next_offset`` and a ``Link:
    rel="next"`` header name the next page.
    """
    order = parse_sort(sort, report="roi", group_by=group_by)

    def build(session: Session, model_id: str) -> Response:
        body = roi_report(
            session,
            model_id=model_id,
            period=period,
            group_by=group_by,
            currency=settings.reporting_currency,
            filters=filters,
            sort=order,
            page=page,
        )
        return _paged(request, render(body, fmt, filename="roi.csv"), body.next_offset)

    return await reports.answer(
        ("roi", period, group_by, fmt, filters, order, page),
        resolve=lambda known: requested_model(known, model),
        build=build,
    )


@router.get("/compare", response_model=CompareReportOut, responses=_CSV)
async def compare(
    request: Request,
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
    filters: FiltersDep,
    page: PageDep,
    models: ModelsQuery = None,
    group_by: GroupByQuery = "campaign",
    sort: SortQuery = None,
) -> Response:
    """Revenue per campaign or channel under several models side by side (default: all).

    Every requested model is a key of every row's ``revenue`` (zero when it credits nothing).
    By default rows are ordered by the first model's revenue, descending, then id.
    ``status`` and ``totals.pending_revenue`` say, per model, whether it has credited all
    won revenue and what it has not yet (as in ROI). ``snapshots`` names, per data-driven
    model compared, the fit behind its credits.

    Filters, ``limit`` and ``offset`` as in ROI; ``sort`` by ``revenue`` (the first model),
    ``revenue:<model>``, ``cost``, ``campaign_name``, ``campaign_id`` or ``channel``.
    """
    order = parse_sort(sort, report="compare", group_by=group_by)

    def resolve(known: list[str]) -> tuple[str, ...]:
        model_ids = requested_models(known, models)
        check_sort_model(order, model_ids)
        return model_ids

    def build(session: Session, model_ids: tuple[str, ...]) -> Response:
        body = compare_report(
            session,
            model_ids=model_ids,
            period=period,
            group_by=group_by,
            currency=settings.reporting_currency,
            filters=filters,
            sort=order,
            page=page,
        )
        return _paged(request, render(body, fmt, filename="compare.csv"), body.next_offset)

    return await reports.answer(
        ("compare", period, group_by, fmt, filters, order, page),
        resolve=resolve,
        build=build,
    )


@router.get("/reconciliation", response_model=ReconciliationOut, responses=_CSV)
async def reconciliation(
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
) -> Response:
    """Closed-won revenue against each model's attributed, unattributed and pending revenue.

    ``closed_won_revenue`` sums the converted amounts of deals won in range; per model,
    attributed + unattributed + pending equals it exactly, at every moment. ``pending`` is
    what the model has not credited yet (``status`` is then ``pending``: a data-driven model
    before its first fit, a custom model being computed), else 0 and ``ready``. Won deals
    with no usable fx rate are left out of revenue and listed under ``unconverted`` with their
    original amounts per currency.
    """

    def build(session: Session, model_ids: tuple[str, ...]) -> Response:
        body = reconciliation_report(
            session, model_ids=model_ids, period=period, currency=settings.reporting_currency
        )
        return render(body, fmt, filename="reconciliation.csv")

    return await reports.answer(
        ("reconciliation", period, fmt), resolve=lambda known: tuple(known), build=build
    )


@router.get("/compare/diff", response_model=CompareDiffOut, responses=_CSV)
async def compare_diff_report(
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
    base: BaseQuery,
    other: OtherQuery,
    group_by: GroupByQuery = "campaign",
) -> Response:
    """Per campaign or channel, the revenue ``other`` credits minus what ``base`` credits.

    ``moved`` is a money string (negative when ``other`` credits less); ``moved_share`` is it
    divided by ``base``'s attributed closed-won revenue in the range (null when that is 0).
    Rows that either model credits, by |moved| descending, then id.
    """

    def resolve(known: list[str]) -> tuple[str, str]:
        return known_model(known, "query.base", base), known_model(known, "query.other", other)

    def build(session: Session, pair: tuple[str, str]) -> Response:
        body = compare_diff(
            session,
            base=pair[0],
            other=pair[1],
            period=period,
            group_by=group_by,
            currency=settings.reporting_currency,
        )
        return render(body, fmt, filename="compare-diff.csv")

    return await reports.answer(("diff", period, group_by, fmt), resolve=resolve, build=build)


@router.get(
    "/leads",
    response_model=LeadsOut,
    responses={**_CSV, 409: {"description": "the markov model has no fit yet"}},
)
def leads(
    _: ReadPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    settings: SettingsDep,
    min_score: Annotated[
        float, Query(ge=0.0, le=1.0, description="only accounts scoring at least this")
    ] = 0.0,
    min_grade: Annotated[
        Literal["A", "B", "C", "D"] | None,
        Query(description="only accounts graded this letter or better (A is best)"),
    ] = None,
    sort: Annotated[
        Literal["score", "grade"], Query(description="rank by score (default) or by grade")
    ] = "score",
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many rows")] = 100,
) -> Response:
    """Open accounts (touched in the lookback window, no won deal) ranked by score or grade.

    Each row: the account's score (see ``/v1/accounts/{account_id}/score``) and grade (see
    ``/v1/accounts/{account_id}/grade``; null before the first grade fit), its touches in
    the window, the latest one's time and its journey's state. By score descending (then
    raw grade), or with ``sort=grade`` by raw grade descending (then score); then account
    id. ``snapshot`` is the markov fit used, ``grade_snapshot`` the grade fit.
    """
    body = leads_report(
        session,
        now=datetime.now(UTC),
        lookback_days=settings.lookback_days,
        min_score=min_score,
        min_grade=min_grade,
        sort=sort,
        limit=limit,
    )
    return render(body, fmt, filename="leads.csv")
