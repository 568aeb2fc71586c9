"""The influence report: who sourced the won revenue, and which campaigns touched it.

Definitions (contract §6; ``from`` inclusive, ``to`` exclusive, a deal counts by ``closed_at``):
- A campaign *sources* a won deal when its touch holds the deal's ``lead_creation`` role (the
  first touch with ``lead_created``, else the first touch: contract §2). Every non-empty
  journey has exactly one such touch, so each won deal is sourced by one campaign, or by none
  when its journey is empty (``totals.unsourced_revenue``: unattributed, not dropped).
- A campaign *influences* a won deal when any touch of the deal's journey is the campaign's;
  the deal's full converted amount counts for every campaign that influenced it (not split),
  so influenced revenue does not add up across campaigns, while sourced revenue does.
- Sales- vs marketing-sourced: by the sourcing campaign's ``is_sales_sourced``. A campaign that
  was touched but never upserted counts as marketing-sourced (the contract's default ``false``)
  and has a null name and channel.
- Only won deals converted into the reporting currency count: an unconverted deal has no
  reporting amount; it is left out and counted in ``totals.unconverted_deals`` (the
  reconciliation report lists its original amounts).

Invariant: sales + marketing + unsourced revenue (and deals) = won revenue (and deals), to the
cent. The journeys and their roles are read from the ``linear`` model's credit rows: every
positional model writes one row per journey touch with the touch's roles, and ``linear`` is
a built-in, so it is always there and always computed with the deal (never pending). All
sums run in SQL; only the per-campaign rows are added up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, case, false, func, select
from sqlalchemy.orm import Session

from services.api.params import Period
from services.api.queries import CONVERTED, UNCONVERTED, WON, bytewise, closed_in
from services.api.rendering import Table, table
from services.core.db.schema import CampaignRow, CreditRow, DealRow
from services.core.money import format_minor

SOURCE_MODEL = "linear"  # built-in: a row per journey touch, with the touch's roles
LEAD_CREATION = "lead_creation"


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class InfluenceRowOut(_Out):
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    is_sales_sourced: bool
    sourced_revenue: str = Field(description="won deals whose lead_creation touch is this one's")
    sourced_deals: int
    influenced_revenue: str = Field(description="won deals with any touch of this campaign")
    influenced_deals: int


class InfluenceTotalsOut(_Out):
    won_revenue: str
    won_deals: int
    sales_sourced_revenue: str
    sales_sourced_deals: int
    marketing_sourced_revenue: str
    marketing_sourced_deals: int
    unsourced_revenue: str = Field(description="won deals with an empty journey")
    unsourced_deals: int
    unconverted_deals: int = Field(description="won deals with no usable fx rate: left out")


class InfluenceReportOut(_Out):
    currency: str
    from_: str | None = Field(alias="from")
    to: str | None
    rows: list[InfluenceRowOut]
    totals: InfluenceTotalsOut


@dataclass(frozen=True)
class _Row:
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    is_sales_sourced: bool
    sourced_minor: int
    sourced_deals: int
    influenced_minor: int
    influenced_deals: int


def _per_campaign(period: Period, dialect: str) -> Select[Any]:
    """Select per campaign: sourced and influenced amounts and deal counts, best first."""
    holds_lead = case((CreditRow.roles.contains(LEAD_CREATION), 1), else_=0)
    # One row per (campaign, deal): a campaign with several touches on a deal counts it once.
    touched = (
        select(
            CreditRow.campaign_id,
            CreditRow.deal_id,
            func.max(holds_lead).label("sourced"),
        )
        .where(CreditRow.model_id == SOURCE_MODEL, *closed_in(CreditRow.closed_at, period))
        .group_by(CreditRow.campaign_id, CreditRow.deal_id)
        .subquery("touched")
    )
    amount = DealRow.reporting_minor
    sums = (
        select(
            touched.c.campaign_id,
            func.sum(case((touched.c.sourced == 1, amount), else_=0)).label("sourced_minor"),
            func.sum(touched.c.sourced).label("sourced_deals"),
            func.sum(amount).label("influenced_minor"),
            func.count().label("influenced_deals"),
        )
        .join(DealRow, DealRow.deal_id == touched.c.deal_id)
        .group_by(touched.c.campaign_id)
        .subquery("influence")
    )
    return (
        select(
            sums,
            CampaignRow.name.label("campaign_name"),
            CampaignRow.channel.label("channel"),
            func.coalesce(CampaignRow.is_sales_sourced, false()).label("is_sales_sourced"),
        )
        .outerjoin(CampaignRow, CampaignRow.campaign_id == sums.c.campaign_id)
        .order_by(
            sums.c.sourced_minor.desc(),
            sums.c.influenced_minor.desc(),
            bytewise(sums.c.campaign_id, dialect),
        )
    )


def campaign_rows(session: Session, period: Period) -> list[_Row]:
    """Return every campaign that touched a won deal closed in range, with its sums."""
    dialect = session.get_bind().dialect.name
    return [
        _Row(
            campaign_id=r.campaign_id,
            campaign_name=r.campaign_name,
            channel=r.channel,
            is_sales_sourced=bool(r.is_sales_sourced),
            sourced_minor=int(r.sourced_minor or 0),
            sourced_deals=int(r.sourced_deals or 0),
            influenced_minor=int(r.influenced_minor or 0),
            influenced_deals=int(r.influenced_deals),
        )
        for r in session.execute(_per_campaign(period, dialect))
    ]


@dataclass(frozen=True)
class _Won:
    deals: int
    revenue_minor: int
    empty_deals: int
    empty_minor: int
    unconverted: int


def won_deals(session: Session, period: Period) -> _Won:
    """Return the won deals closed in range: converted, of them with an empty journey, not."""
    converted = DealRow.conversion == CONVERTED
    empty = and_(converted, DealRow.journey_touches == 0)
    row = session.execute(
        select(
            func.count(case((converted, 1))),
            func.coalesce(func.sum(case((converted, DealRow.reporting_minor))), 0),
            func.count(case((empty, 1))),
            func.coalesce(func.sum(case((empty, DealRow.reporting_minor))), 0),
            func.count(case((DealRow.conversion == UNCONVERTED, 1))),
        ).where(DealRow.status == WON, *closed_in(DealRow.closed_at, period))
    ).one()
    return _Won(*(int(v or 0) for v in row))


def influence_report(session: Session, *, period: Period, currency: str) -> InfluenceReportOut:
    """Build the sourced and influenced revenue per campaign over a period."""
    rows = campaign_rows(session, period)
    won = won_deals(session, period)
    sales = [r for r in rows if r.is_sales_sourced]
    marketing = [r for r in rows if not r.is_sales_sourced]
    start, end = period.echo()
    return InfluenceReportOut(
        currency=currency,
        from_=start,
        to=end,
        rows=[
            InfluenceRowOut(
                campaign_id=r.campaign_id,
                campaign_name=r.campaign_name,
                channel=r.channel,
                is_sales_sourced=r.is_sales_sourced,
                sourced_revenue=format_minor(r.sourced_minor, currency),
                sourced_deals=r.sourced_deals,
                influenced_revenue=format_minor(r.influenced_minor, currency),
                influenced_deals=r.influenced_deals,
            )
            for r in rows
        ],
        totals=InfluenceTotalsOut(
            won_revenue=format_minor(won.revenue_minor, currency),
            won_deals=won.deals,
            sales_sourced_revenue=format_minor(sum(r.sourced_minor for r in sales), currency),
            sales_sourced_deals=sum(r.sourced_deals for r in sales),
            marketing_sourced_revenue=format_minor(
                sum(r.sourced_minor for r in marketing), currency
            ),
            marketing_sourced_deals=sum(r.sourced_deals for r in marketing),
            unsourced_revenue=format_minor(won.empty_minor, currency),
            unsourced_deals=won.empty_deals,
            unconverted_deals=won.unconverted,
        ),
    )


_FIELDS = list(InfluenceRowOut.model_fields)


@table.register
def _influence(body: InfluenceReportOut) -> Table:
    """One CSV row per campaign, the JSON rows' fields in order (totals left out)."""
    return _FIELDS, [[getattr(row, k) for k in _FIELDS] for row in body.rows]
