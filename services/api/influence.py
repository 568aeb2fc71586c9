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
cent. The journeys and their roles come from the ``linear`` model's credit rows: every
positional model writes one row per journey touch with the touch's roles, and ``linear`` is
a built-in, so it is always there and always computed with the deal (never pending).

Read from ``influence_rollups`` (per campaign and UTC day of close: sourced and influenced
revenue and deals, one count per (deal, campaign) pair, kept by the worker in the transaction
that rewrites a deal's credits: ``services.domain.rollup.INFLUENCE``) and ``won_rollups``, so
a report costs a few rows a day, not a scan of ``credits``. A period is whole UTC days and a
deal lies in one day, so the per-day counts add up to the per-range counts exactly.
Unsourced = converted won - sourced (revenue and deals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session

from services.api.params import Period
from services.api.queries import bytewise, on_days, won_totals
from services.api.rendering import Table, table
from services.core.db.schema import CampaignRow, InfluenceRollupRow
from services.core.money import format_minor


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
    rollup = InfluenceRollupRow
    sums = (
        select(
            rollup.campaign_id,
            func.sum(rollup.sourced_minor).label("sourced_minor"),
            func.sum(rollup.sourced_deals).label("sourced_deals"),
            func.sum(rollup.influenced_minor).label("influenced_minor"),
            func.sum(rollup.influenced_deals).label("influenced_deals"),
        )
        .where(*on_days(rollup.day, period))
        .group_by(rollup.campaign_id)
        .having(func.sum(rollup.influenced_deals) > 0)
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


def influence_report(session: Session, *, period: Period, currency: str) -> InfluenceReportOut:
    """Build the sourced and influenced revenue per campaign over a period."""
    rows = campaign_rows(session, period)
    won = won_totals(session, period)
    # Every converted won deal with a journey is sourced by exactly one campaign; the rest of
    # the converted won revenue had an empty journey (counted, not dropped).
    unsourced_minor = won.converted.revenue_minor - sum(r.sourced_minor for r in rows)
    unsourced_deals = won.converted.deals - sum(r.sourced_deals for r in rows)
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
            won_revenue=format_minor(won.converted.revenue_minor, currency),
            won_deals=won.converted.deals,
            sales_sourced_revenue=format_minor(sum(r.sourced_minor for r in sales), currency),
            sales_sourced_deals=sum(r.sourced_deals for r in sales),
            marketing_sourced_revenue=format_minor(
                sum(r.sourced_minor for r in marketing), currency
            ),
            marketing_sourced_deals=sum(r.sourced_deals for r in marketing),
            unsourced_revenue=format_minor(unsourced_minor, currency),
            unsourced_deals=unsourced_deals,
            unconverted_deals=won.unconverted_count,
        ),
    )


_FIELDS = list(InfluenceRowOut.model_fields)


@table.register
def _influence(body: InfluenceReportOut) -> Table:
    """One CSV row per campaign, the JSON rows' fields in order (totals left out)."""
    return _FIELDS, [[getattr(row, k) for k in _FIELDS] for row in body.rows]
