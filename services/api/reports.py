"""Turn query results into report bodies: money formatting, ratios, zero-filling.

Invariants kept here:
- ``totals.revenue`` is the sum of the revenue of every filtered row, ``totals.cost`` the sum
  of their cost, over all pages (integers, summed before formatting, so the totals match the
  rows to the cent: the rows of all pages together). ``unattributed_revenue`` and
  ``pending_revenue`` belong to no campaign: they are over the range, whatever the filters.
- Every requested model appears in every compare row and total (zero when it has no credit).
- A report over a data-driven model (markov, shapley) names the fit snapshot behind its credits
  (``services.api.snapshots.used_by_reports``): ``snapshot`` in ROI, ``snapshots`` in compare.
- Reconciliation takes attributed and unattributed from ``deal_attributions``, which the worker
  keeps so that, per model, attributed + unattributed = the converted amount of each deal it
  has credited; ``pending`` is the won revenue a model has not credited yet, so attributed +
  unattributed + pending = closed-won revenue for every model (``services.api.readiness``).
- A model that has not credited everything yet is ``status: pending`` in every report (ROI's
  ``status``, compare's and the diff's ``status`` per model), with its pending revenue in ROI's
  and compare's ``totals.pending_revenue``: revenue is never silently missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.api import queries, readiness, snapshots
from services.api.errors import DealNotFound
from services.api.formatting import ratio, rfc3339
from services.api.grouped import ALL_ROWS, DEFAULT, NO_FILTERS, grouped
from services.api.params import Period
from services.api.schemas import (
    CompareCampaignRowOut,
    CompareChannelRowOut,
    CompareReportOut,
    CompareTotalsOut,
    DealAttributionOut,
    DealOut,
    GroupBy,
    JourneyTouchOut,
    ModelReconciliationOut,
    ReconciliationOut,
    RoiCampaignRowOut,
    RoiChannelRowOut,
    RoiReportOut,
    RoiSnapshotReportOut,
    RoiTotalsOut,
    UnconvertedOut,
)
from services.api.selection import Filters, Page, Sort
from services.core.money import format_minor


def _states(
    session: Session,
    model_ids: Sequence[str],
    period: Period,
    sums: dict[str, queries.AttributionSums],
) -> dict[str, readiness.ModelState]:
    won = queries.converted_won(session, period)
    return readiness.model_states(session, model_ids, period, sums=sums, won=won)


def _paging(sort: Sort, page: Page, found: int, total_rows: int) -> dict[str, object]:
    """The order and page fields: the next page starts where this one ends, if rows remain."""
    following = page.offset + found
    more = page.limit is not None and following < total_rows
    return {
        "sort": sort.text(),
        "total_rows": total_rows,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": following if more else None,
    }


def roi_report(
    session: Session,
    *,
    model_id: str,
    period: Period,
    group_by: GroupBy,
    currency: str,
    filters: Filters = NO_FILTERS,
    sort: Sort = DEFAULT,
    page: Page = ALL_ROWS,
) -> RoiReportOut:
    """Build the ROI report of one model over a period: one page of the filtered rows."""
    found = grouped(
        session, [model_id], period, group_by=group_by, filters=filters, sort=sort, page=page
    )
    rows = found.rows
    sums = queries.deal_attribution_sums(session, [model_id], period)
    state = _states(session, [model_id], period, sums)[model_id]
    out_rows: list[RoiCampaignRowOut] | list[RoiChannelRowOut]
    common = [
        {
            "channel": r.channel,
            "revenue": format_minor(r.revenue[0], currency),
            "deals": round(r.deals[0], 4),
            "cost": format_minor(r.cost, currency),
            "roi": ratio(r.revenue[0] - r.cost, r.cost),
            "roas": ratio(r.revenue[0], r.cost),
        }
        for r in rows
    ]
    if group_by == "campaign":
        out_rows = [
            RoiCampaignRowOut(
                campaign_id=r.campaign_id or "", campaign_name=r.campaign_name, **fields
            )
            for r, fields in zip(rows, common, strict=True)
        ]
    else:
        out_rows = [RoiChannelRowOut(**fields) for fields in common]
    start, end = period.echo()
    report = RoiReportOut(
        model=model_id,
        status=state.status,
        from_=start,
        to=end,
        currency=currency,
        group_by=group_by,
        rows=out_rows,
        totals=RoiTotalsOut(
            revenue=format_minor(found.revenue[0], currency),
            cost=format_minor(found.cost, currency),
            unattributed_revenue=format_minor(
                sums.get(model_id, queries.NO_DEALS).unattributed, currency
            ),
            pending_revenue=format_minor(state.pending_minor, currency),
        ),
        **_paging(sort, page, len(rows), found.total_rows),
    )
    used = snapshots.used_by_reports(session, [model_id], sums)
    if model_id not in used:
        return report
    return RoiSnapshotReportOut(**dict(report), snapshot=used[model_id])


def compare_report(
    session: Session,
    *,
    model_ids: Sequence[str],
    period: Period,
    group_by: GroupBy,
    currency: str,
    filters: Filters = NO_FILTERS,
    sort: Sort = DEFAULT,
    page: Page = ALL_ROWS,
) -> CompareReportOut:
    """Build the side-by-side revenue of several models over a period: one page of rows."""
    found = grouped(
        session, model_ids, period, group_by=group_by, filters=filters, sort=sort, page=page
    )
    rows = found.rows
    sums = queries.deal_attribution_sums(session, model_ids, period)
    states = _states(session, model_ids, period, sums)

    def per_model(values: Sequence[int]) -> dict[str, str]:
        return {m: format_minor(v, currency) for m, v in zip(model_ids, values, strict=True)}

    out_rows: list[CompareCampaignRowOut] | list[CompareChannelRowOut]
    if group_by == "campaign":
        out_rows = [
            CompareCampaignRowOut(
                campaign_id=r.campaign_id or "",
                campaign_name=r.campaign_name,
                channel=r.channel,
                revenue=per_model(r.revenue),
                cost=format_minor(r.cost, currency),
            )
            for r in rows
        ]
    else:
        out_rows = [
            CompareChannelRowOut(
                channel=r.channel, revenue=per_model(r.revenue), cost=format_minor(r.cost, currency)
            )
            for r in rows
        ]
    start, end = period.echo()
    return CompareReportOut(
        models=list(model_ids),
        status={m: states[m].status for m in model_ids},
        from_=start,
        to=end,
        currency=currency,
        group_by=group_by,
        rows=out_rows,
        totals=CompareTotalsOut(
            revenue=per_model(found.revenue),
            unattributed_revenue=per_model(
                [sums.get(m, queries.NO_DEALS).unattributed for m in model_ids]
            ),
            pending_revenue=per_model([states[m].pending_minor for m in model_ids]),
            cost=format_minor(found.cost, currency),
        ),
        snapshots=snapshots.used_by_reports(session, model_ids, sums),
        **_paging(sort, page, len(rows), found.total_rows),
    )


def reconciliation_report(
    session: Session, *, model_ids: Sequence[str], period: Period, currency: str
) -> ReconciliationOut:
    """Build the reconciliation of closed-won revenue against each model's attribution."""
    won = queries.won_totals(session, period)
    sums = queries.deal_attribution_sums(session, model_ids, period)
    states = readiness.model_states(session, model_ids, period, sums=sums, won=won.converted)
    start, end = period.echo()
    return ReconciliationOut(
        currency=currency,
        from_=start,
        to=end,
        closed_won_revenue=format_minor(won.converted.revenue_minor, currency),
        won_deals=won.converted.deals,
        unconverted=UnconvertedOut(
            count=won.unconverted_count,
            amounts={
                cur: format_minor(amount, cur)
                for cur, amount in won.unconverted_by_currency.items()
            },
        ),
        models={
            m: ModelReconciliationOut(
                status=states[m].status,
                attributed=format_minor(sums.get(m, queries.NO_DEALS).attributed, currency),
                unattributed=format_minor(sums.get(m, queries.NO_DEALS).unattributed, currency),
                pending=format_minor(states[m].pending_minor, currency),
            )
            for m in model_ids
        },
    )


def deal_attribution(
    session: Session, *, deal_id: str, model_id: str, currency: str
) -> DealAttributionOut:
    """Build one deal's journey with each touch's roles, weight and credit under one model."""
    # PostgreSQL text cannot hold NUL, so no stored deal id has one (and asking would fail).
    row = None if "\x00" in deal_id else queries.deal(session, deal_id)
    if row is None:
        raise DealNotFound(deal_id)
    # Only a won deal has a journey with credits; an open or lost one answers its status and [].
    touches = queries.journey(session, model_id, deal_id) if row.status == queries.WON else []
    amount = (
        format_minor(row.amount_minor, row.currency)
        if row.amount_minor is not None and row.currency
        else None
    )
    reporting = None if row.reporting_minor is None else format_minor(row.reporting_minor, currency)
    credited = queries.has_attribution(session, model_id, deal_id)
    # A won and converted deal without the model's row: the model has not credited it yet.
    uncredited = row.status == queries.WON and row.conversion == queries.CONVERTED and not credited
    pending = uncredited or bool(readiness.unready_models(session, [model_id]))
    return DealAttributionOut(
        deal=DealOut(
            deal_id=row.deal_id,
            account_id=row.account_id,
            status=row.status,
            stage=row.stage,
            amount=amount,
            currency=row.currency,
            created_at=rfc3339(row.created_at),
            closed_at=rfc3339(row.closed_at),
            reporting_amount=reporting,
            reporting_currency=currency,
            conversion=row.conversion,
        ),
        model=model_id,
        status=readiness.PENDING if pending else readiness.READY,
        unattributed=not touches and credited,
        journey=[
            JourneyTouchOut(
                event_id=t.event_id,
                occurred_at=rfc3339(t.occurred_at),
                campaign_id=t.campaign_id,
                channel=t.channel,
                roles=[r for r in t.roles.split(",") if r] or ["middle"],
                weight=t.weight,
                credit=format_minor(t.credit_minor, currency),
            )
            for t in touches
        ],
    )
