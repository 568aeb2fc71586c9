"""The SQL of ROI, compare and the diff: revenue, deals and cost per campaign or channel.

Every sum, filter, sort and page runs in the database; functions return integers of minor
units and plain floats.

Invariants:
- A credit counts when ``start_at <= closed_at < end_at`` (read from its day's rollup, the
  same thing for a period of whole UTC days); a cost counts by its days, each
  day ``start <= day < end`` (contract §5: a cost is spread evenly over its period's days by
  the worker into ``campaign_cost_days``, so a period straddling a bound is cut there, and a
  one-day period counts whole on its day).
- Rows are the campaigns (channels) with a credit or a cost day in range, after the filters
  (``services.api.selection``). The filters apply to the credits and cost days before any
  sum, so the totals (``Grouped.revenue``, ``Grouped.cost``, ``Grouped.total_rows``) are
  over the whole filtered set, whatever page is asked for.
- Order: the sort key (nulls last, in either direction), then campaign id (channel, null
  last), ascending; text by code point on both dialects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Select,
    Subquery,
    case,
    cast,
    func,
    select,
    union,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.api.params import Period
from services.api.queries import DEALS_DECIMALS, bytewise, on_days, rounded
from services.api.selection import Filters, Page, Sort
from services.core.db.schema import CampaignCostDayRow, CampaignRow, CreditRollupRow

NO_FILTERS, DEFAULT, ALL_ROWS = Filters(), Sort(), Page()


@dataclass(frozen=True)
class GroupRow:
    """One report row: a campaign (or a channel) with revenue and deals per model, and cost."""

    campaign_id: str | None
    campaign_name: str | None
    channel: str | None
    revenue: tuple[int, ...]
    deals: tuple[float, ...]
    cost: int


@dataclass(frozen=True)
class Grouped:
    """One page of rows, and the count and sums over every filtered row."""

    rows: list[GroupRow]
    total_rows: int
    revenue: tuple[int, ...]  # per model
    cost: int


def days_in(period: Period) -> list[ColumnElement[bool]]:
    """Return the conditions ``start <= day < end`` on cost days (none if unbounded)."""
    return on_days(CampaignCostDayRow.day, period)


def _kept(column: InstrumentedAttribute[str], filters: Filters) -> list[ColumnElement[bool]]:
    """Conditions keeping the filtered campaigns' rows (a campaign id ``column``)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.campaign_ids:
        conditions.append(column.in_(filters.campaign_ids))
    if filters.by_campaign:
        wanted = select(CampaignRow.campaign_id)
        if filters.channels:
            wanted = wanted.where(CampaignRow.channel.in_(filters.channels))
        if filters.sourced is not None:
            wanted = wanted.where(CampaignRow.is_sales_sourced == (filters.sourced == "sales"))
        conditions.append(column.in_(wanted))
    return conditions


def _credited(model_list: Sequence[str], period: Period, filters: Filters) -> CTE:
    """Per campaign: ``r<i>``/``d<i>`` revenue and deals under model i, as a CTE.

    Read from ``credit_rollups``, the credits' sums per (model, campaign, UTC day of close):
    a period is whole UTC days, so its days hold exactly the credits closed in it, and every
    filter is on the campaign, part of the key. A (campaign, model) with a credit row in range
    has a positive row count there (its revenue and deals may be 0: touches of weight 0);
    one whose credits all went away has count 0 and is left out, as it has no credit row.
    Deals are rounded to 9 decimals: the same sums reached through other deltas differ in
    the last bits, which must not reorder or sign a report (it shows 4 decimals).

    A CTE because the report reads it twice (the campaign ids, then the sums): PostgreSQL
    computes a CTE referenced twice once. The scan groups by (campaign, model) and only its
    few result rows (at most campaigns × models) are pivoted into columns.
    """
    rollup = CreditRollupRow
    long = (
        select(
            rollup.campaign_id,
            rollup.model_id,
            func.sum(rollup.revenue_minor).label("revenue"),
            func.sum(rollup.deals).label("deals"),
        )
        .where(
            rollup.model_id.in_(model_list),
            *on_days(rollup.day, period),
            *_kept(rollup.campaign_id, filters),
        )
        .group_by(rollup.campaign_id, rollup.model_id)
        .having(func.sum(rollup.credits) > 0)
        .subquery("credited_by_model")
    )
    sums: list[Any] = []
    for i, model_id in enumerate(model_list):
        is_model = long.c.model_id == model_id
        sums.append(func.sum(case((is_model, long.c.revenue), else_=0)).label(f"r{i}"))
        deals = func.sum(case((is_model, long.c.deals), else_=0.0))
        sums.append(rounded(deals, DEALS_DECIMALS).label(f"d{i}"))
    return select(long.c.campaign_id, *sums).group_by(long.c.campaign_id).cte("credited")


def _per_campaign(model_list: Sequence[str], period: Period, filters: Filters) -> Select[Any]:
    """Select per campaign: ``r<i>``/``d<i>`` revenue and deals under model i, and ``cost``."""
    credited = _credited(model_list, period, filters)
    spent = (
        select(
            CampaignCostDayRow.campaign_id, func.sum(CampaignCostDayRow.cost_minor).label("cost")
        )
        .where(*days_in(period), *_kept(CampaignCostDayRow.campaign_id, filters))
        .group_by(CampaignCostDayRow.campaign_id)
        .cte("spent")
    )
    ids = union(select(credited.c.campaign_id), select(spent.c.campaign_id)).subquery("ids")
    columns: list[Any] = [
        ids.c.campaign_id,
        CampaignRow.name.label("campaign_name"),
        CampaignRow.channel.label("channel"),
    ]
    for i in range(len(model_list)):
        columns.append(func.coalesce(credited.c[f"r{i}"], 0).label(f"r{i}"))
        columns.append(func.coalesce(credited.c[f"d{i}"], 0.0).label(f"d{i}"))
    columns.append(func.coalesce(spent.c.cost, 0).label("cost"))
    return (
        select(*columns)
        .select_from(ids)
        .outerjoin(credited, credited.c.campaign_id == ids.c.campaign_id)
        .outerjoin(spent, spent.c.campaign_id == ids.c.campaign_id)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == ids.c.campaign_id)
    )


def _rows(model_list: Sequence[str], period: Period, group_by: str, filters: Filters) -> Subquery:
    """The unordered rows, per campaign or per channel, as a subquery."""
    per_campaign = _per_campaign(model_list, period, filters)
    if group_by == "campaign":
        return per_campaign.subquery("report_rows")
    sub = per_campaign.subquery("per_campaign")
    sums: list[Any] = []
    for i in range(len(model_list)):
        sums += [
            func.sum(sub.c[f"r{i}"]).label(f"r{i}"),
            rounded(func.sum(sub.c[f"d{i}"]), DEALS_DECIMALS).label(f"d{i}"),
        ]
    return (
        select(sub.c.channel, *sums, func.sum(sub.c.cost).label("cost"))
        .group_by(sub.c.channel)
        .subquery("report_rows")
    )


def _order(
    rows: Subquery, sort: Sort, model_list: Sequence[str], group_by: str, dialect: str
) -> list[ColumnElement[Any]]:
    """ORDER BY: the sort key, nulls last either way, then the row's id ascending."""
    c = rows.c
    first = 0 if sort.model is None else list(model_list).index(sort.model)
    revenue = c[f"r{first}"] if model_list else c.cost
    key: ColumnElement[Any]
    if sort.field == "revenue":
        key = revenue
    elif sort.field == "deals":
        key = c[f"d{first}"] if model_list else c.cost
    elif sort.field in ("roi", "roas"):
        # ROI = ROAS - 1 for a positive cost: the same order. Null when the cost is 0.
        key = case((c.cost == 0, None), else_=cast(revenue, Float) / cast(c.cost, Float))
    elif sort.field == "cost":
        key = c.cost
    else:  # campaign_name, campaign_id, channel
        key = bytewise(c[sort.field], dialect)
    ties: list[ColumnElement[Any]] = (
        [bytewise(c.campaign_id, dialect)]
        if group_by == "campaign"
        else [c.channel.is_(None), bytewise(c.channel, dialect)]
    )
    return [key.is_(None), key.desc() if sort.descending else key.asc(), *ties]


def _group_row(row: Any, n: int) -> GroupRow:
    return GroupRow(
        campaign_id=row.get("campaign_id"),
        campaign_name=row.get("campaign_name"),
        channel=row.channel,
        revenue=tuple(int(row[f"r{i}"]) for i in range(n)),
        deals=tuple(float(row[f"d{i}"]) for i in range(n)),
        cost=int(row.cost),
    )


def grouped(
    session: Session,
    model_list: Sequence[str],
    period: Period,
    *,
    group_by: str,
    filters: Filters = NO_FILTERS,
    sort: Sort = DEFAULT,
    page: Page = ALL_ROWS,
) -> Grouped:
    """Return one page of revenue, deals and cost per campaign or channel, and its totals.

    A whole list sums its rows; a page reads the count and sums over every filtered row
    with window functions in the same statement (or, past the end, a statement of its own).
    """
    n = len(model_list)
    rows = _rows(model_list, period, group_by, filters)
    order = _order(rows, sort, model_list, group_by, session.get_bind().dialect.name)
    totals: list[Any] = [
        func.count().label("total_rows"),
        *[func.sum(rows.c[f"r{i}"]).label(f"total_r{i}") for i in range(n)],
        func.sum(rows.c.cost).label("total_cost"),
    ]
    columns: list[Any] = list(rows.c)
    if not page.whole:
        columns += [t.element.over().label(t.name) for t in totals]
    stmt = select(*columns).order_by(*order).limit(page.limit).offset(page.offset or None)
    found = list(session.execute(stmt).mappings())
    out = [_group_row(row, n) for row in found]
    if page.whole:
        return Grouped(
            out,
            len(out),
            tuple(sum(r.revenue[i] for r in out) for i in range(n)),
            sum(r.cost for r in out),
        )
    summary = found[0] if found else session.execute(select(*totals)).mappings().one()
    return Grouped(
        out,
        int(summary["total_rows"]),
        tuple(int(summary[f"total_r{i}"] or 0) for i in range(n)),
        int(summary["total_cost"] or 0),
    )


def grouped_rows(
    session: Session, model_list: Sequence[str], period: Period, *, group_by: str
) -> list[GroupRow]:
    """Return every row per campaign or channel, by the first model's revenue descending."""
    return grouped(session, model_list, period, group_by=group_by).rows
