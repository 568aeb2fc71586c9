"""``/v1/reports/compare/diff``: the revenue one model moves away from another, per row.

Decisions where the contract is silent:
- Rows are the campaigns (channels) that either model credits with a non-zero amount in the
  range (a campaign both credit with nothing, or that only has a cost, moves nothing).
- ``moved`` = other − base, exact in minor units (negative when ``other`` credits less).
- ``moved_share`` = moved / the base model's closed-won attributed revenue in the range (the
  sum of its ``deal_attributions.attributed_minor``), a JSON number rounded to 4 decimals;
  null when that total is 0. Shares of all rows sum to (other total − base total) / base
  total, 0 when both models credit the same deals.
- Order: the size of the move, |moved|, descending, then campaign id (channel, a null channel
  last), by code point.
- ``status`` says, per model, whether it has credited all won revenue in the range
  (``services.api.readiness``): a move against a pending model is not a real move yet.
- The sums run in SQL (``grouped.grouped_rows``); only the few aggregated rows are sorted here.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.api import grouped as grouped_sql
from services.api import queries, readiness, snapshots
from services.api.formatting import ratio
from services.api.params import Period
from services.api.schemas import (
    CompareDiffOut,
    DiffCampaignRowOut,
    DiffChannelRowOut,
    DiffTotalsOut,
    GroupBy,
)
from services.core.money import format_minor


def compare_diff(
    session: Session,
    *,
    base: str,
    other: str,
    period: Period,
    group_by: GroupBy,
    currency: str,
) -> CompareDiffOut:
    """Build the per-campaign (or per-channel) revenue moved from ``base`` to ``other``."""
    grouped = grouped_sql.grouped_rows(session, [base, other], period, group_by=group_by)
    rows = [r for r in grouped if r.revenue[0] or r.revenue[1]]
    key = (lambda r: r.campaign_id) if group_by == "campaign" else (lambda r: r.channel)
    rows.sort(key=lambda r: (-abs(r.revenue[1] - r.revenue[0]), key(r) is None, key(r) or ""))
    models = list(dict.fromkeys([base, other]))
    sums = queries.deal_attribution_sums(session, models, period)
    won = queries.converted_won(session, period)
    states = readiness.model_states(session, models, period, sums=sums, won=won)
    base_attributed = sums.get(base, queries.NO_DEALS).attributed

    moves = [
        DiffChannelRowOut(
            channel=r.channel,
            base_revenue=format_minor(r.revenue[0], currency),
            other_revenue=format_minor(r.revenue[1], currency),
            moved=format_minor(r.revenue[1] - r.revenue[0], currency),
            moved_share=ratio(r.revenue[1] - r.revenue[0], base_attributed),
        )
        for r in rows
    ]
    out_rows: list[DiffCampaignRowOut] | list[DiffChannelRowOut] = moves
    if group_by == "campaign":
        out_rows = [
            DiffCampaignRowOut(
                campaign_id=r.campaign_id or "", campaign_name=r.campaign_name, **dict(move)
            )
            for r, move in zip(rows, moves, strict=True)
        ]
    base_total, other_total = sum(r.revenue[0] for r in rows), sum(r.revenue[1] for r in rows)
    start, end = period.echo()
    return CompareDiffOut(
        base=base,
        other=other,
        status={m: states[m].status for m in models},
        from_=start,
        to=end,
        currency=currency,
        group_by=group_by,
        rows=out_rows,
        totals=DiffTotalsOut(
            base_revenue=format_minor(base_total, currency),
            other_revenue=format_minor(other_total, currency),
            moved=format_minor(other_total - base_total, currency),
        ),
        snapshots=snapshots.used_by_reports(session, models, sums),
    )
