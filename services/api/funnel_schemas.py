"""Response bodies of the funnel and SLA reports (contract §6), and their CSV tables.

As elsewhere in the read API: ratios are JSON numbers rounded to 4 decimals, timestamps RFC
3339 UTC with ``Z``, ``from`` is serialised under its own name. Durations (days, hours) are
JSON numbers rounded half-up to 2 decimals. The CSV of a funnel is one row per stage; the
CSV of the SLA is one row per ISO week, then one ``overall`` row (the breach list is JSON
only: a CSV is one table). The breach list is paged (``breaches_total`` counts them all).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.rendering import Table, table


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class FunnelStageOut(_Out):
    """One lifecycle stage: contacts (roots) that first entered it in range, and what next."""

    stage: str
    volume: int
    converted: int
    conversion_rate: float | None
    median_days_to_next: float | None
    recycled: int
    disqualified: int


class FunnelOut(_Out):
    object: Literal["contacts"] = "contacts"
    from_: str | None = Field(alias="from")
    to: str | None
    stages: list[FunnelStageOut]


class DealFunnelStageOut(_Out):
    """One deal stage (or the final ``won`` / ``lost``): deals that first entered it in range."""

    stage: str
    volume: int
    converted: int
    conversion_rate: float | None
    median_days_to_next: float | None
    lost: int


class DealFunnelOut(_Out):
    object: Literal["deals"] = "deals"
    from_: str | None = Field(alias="from")
    to: str | None
    stage_order: list[str] = Field(description="the stages in funnel order, then won and lost")
    stages: list[DealFunnelStageOut]


class SlaPeriodOut(_Out):
    """MQLs of one ISO week (``week`` like ``2026-W10``) or of the whole range (``overall``)."""

    week: str
    mqls: int
    responded: int
    median_hours: float | None
    p90_hours: float | None
    breached: int


class SlaBreachOut(_Out):
    contact_id: str
    week: str
    mql_at: str
    responded_at: str | None
    hours_to_response: float | None


class SlaOut(_Out):
    from_: str | None = Field(alias="from")
    to: str | None
    as_of: str
    sla_hours: float
    weeks: list[SlaPeriodOut]
    overall: SlaPeriodOut
    breaches: list[SlaBreachOut] = Field(
        description="the page of breaching contacts asked for, by MQL moment then contact"
    )
    breaches_total: int = Field(description="how many contacts breached (all pages)")


_FUNNEL = ["stage", "volume", "converted", "conversion_rate", "median_days_to_next"]


@table.register
def _funnel(body: FunnelOut) -> Table:
    keys = [*_FUNNEL, "recycled", "disqualified"]
    return keys, [[getattr(row, k) for k in keys] for row in body.stages]


@table.register
def _deal_funnel(body: DealFunnelOut) -> Table:
    keys = [*_FUNNEL, "lost"]
    return keys, [[getattr(row, k) for k in keys] for row in body.stages]


_SLA = ["week", "mqls", "responded", "median_hours", "p90_hours", "breached"]


@table.register
def _sla(body: SlaOut) -> Table:
    rows: list[list[Any]] = [[getattr(w, k) for k in _SLA] for w in [*body.weeks, body.overall]]
    return _SLA, rows
