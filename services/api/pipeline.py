"""The pipeline report: open deals' amounts credited to campaigns or channels, with stages.

Reads the worker's latest pipeline snapshot (``pipeline_rollups``: its credits summed per
model, campaign and stage; ``pipeline_deals``; and the ``system_state`` row
``pipeline_snapshot``, written together in one transaction by
``services.attribution.pipeline``), never computes journeys itself. Definitions:
- ``as_of`` is the snapshot's time: journeys end there and amounts convert at the latest rate
  on or before its day. Before the worker's first snapshot ``as_of`` is null, ``rows`` empty,
  totals zero and ``status`` ``pending``.
- ``pipeline`` of a row: the credits its touches earned under the model; ``deals``: the sum of
  their weights (fractional deals, 4 decimals); ``stages``: ``pipeline`` by the deal's current
  stage (``(none)`` for a deal without one), adding up to it exactly.
- ``totals.pipeline``: every converted open deal's amount; ``unattributed_pipeline``: those
  with an empty journey. For a ``ready`` model, rows + unattributed = pipeline to the cent.
  ``status`` is ``pending`` for a model the snapshot did not credit (a data-driven model
  before its first fit, a custom model defined since): its rows are missing, not zero.
- ``unconverted_deals``: open deals with no usable rate, left out of every amount.
Every sum runs in SQL; only the per-stage sums of a row are gathered here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from services.api.rendering import Table, table
from services.core.db.schema import (
    CampaignRow,
    PipelineDealRow,
    PipelineRollupRow,
    SystemStateRow,
)
from services.core.money import format_minor

# Written by the worker (``services.attribution.pipeline.PIPELINE_SNAPSHOT_KEY``); the API
# may not import the worker, so the key is spelled here too and the tests cover both ends.
PIPELINE_SNAPSHOT_KEY = "pipeline_snapshot"
NO_STAGE = "(none)"
CONVERTED = "converted"

GroupBy = Literal["campaign", "channel"]


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PipelineCampaignRowOut(_Out):
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    pipeline: str
    deals: float = Field(description="fractional open deals: the sum of the touches' weights")
    stages: dict[str, str] = Field(description="pipeline by the deal's current stage")


class PipelineChannelRowOut(_Out):
    channel: str | None
    pipeline: str
    deals: float = Field(description="fractional open deals: the sum of the touches' weights")
    stages: dict[str, str] = Field(description="pipeline by the deal's current stage")


class PipelineTotalsOut(_Out):
    pipeline: str = Field(description="every converted open deal's amount")
    unattributed_pipeline: str = Field(description="open deals with an empty journey")
    open_deals: int = Field(description="converted open deals with an amount")
    unconverted_deals: int = Field(description="open deals with no usable fx rate: left out")


class PipelineReportOut(_Out):
    model: str
    status: Literal["ready", "pending"]
    currency: str
    group_by: GroupBy
    as_of: str | None = Field(description="the snapshot's time; null before the first one")
    rows: list[PipelineCampaignRowOut] | list[PipelineChannelRowOut]
    totals: PipelineTotalsOut


@dataclass
class _Row:
    key: str | None
    name: str | None = None
    channel: str | None = None
    minor: int = 0
    deals: float = 0.0
    stages: dict[str, int] = field(default_factory=dict)


def _sums(model_id: str, group_by: GroupBy) -> Select[Any]:
    """Select credits and weights per (campaign or channel, stage) under one model."""
    rollup = PipelineRollupRow
    stage = func.coalesce(rollup.stage, NO_STAGE).label("stage")
    minor = func.sum(rollup.credit_minor).label("minor")
    deals = func.sum(rollup.weight).label("deals")
    joined = select().select_from(rollup)
    joined = joined.outerjoin(CampaignRow, CampaignRow.campaign_id == rollup.campaign_id)
    joined = joined.where(rollup.model_id == model_id)
    if group_by == "channel":
        return joined.add_columns(CampaignRow.channel.label("key"), stage, minor, deals).group_by(
            CampaignRow.channel, stage
        )
    return joined.add_columns(
        rollup.campaign_id.label("key"),
        func.max(CampaignRow.name).label("name"),
        func.max(CampaignRow.channel).label("channel"),
        stage,
        minor,
        deals,
    ).group_by(rollup.campaign_id, stage)


def _rows(session: Session, model_id: str, group_by: GroupBy) -> list[_Row]:
    """Return the rows, by pipeline descending then key (nulls last), stages gathered."""
    rows: dict[str | None, _Row] = {}
    for r in session.execute(_sums(model_id, group_by)):
        row = rows.setdefault(r.key, _Row(r.key))
        if group_by == "campaign":
            row.name, row.channel = r.name, r.channel
        row.minor += int(r.minor)
        row.deals += float(r.deals)
        row.stages[r.stage] = row.stages.get(r.stage, 0) + int(r.minor)
    return sorted(rows.values(), key=lambda r: (-r.minor, r.key is None, r.key or ""))


@dataclass(frozen=True)
class _Totals:
    pipeline: int
    unattributed: int
    open_deals: int
    unconverted: int


def _totals(session: Session) -> _Totals:
    converted = PipelineDealRow.conversion == CONVERTED
    empty = converted & (PipelineDealRow.journey_touches == 0)
    row = session.execute(
        select(
            func.coalesce(func.sum(case((converted, PipelineDealRow.reporting_minor))), 0),
            func.coalesce(func.sum(case((empty, PipelineDealRow.reporting_minor))), 0),
            func.count(case((converted, 1))),
            func.count(case((~converted, 1))),
        )
    ).one()
    return _Totals(*(int(v or 0) for v in row))


def _snapshot(session: Session) -> tuple[str | None, list[str]]:
    """Return the snapshot's time and the models it credited (None, [] before the first)."""
    row = session.get(SystemStateRow, PIPELINE_SNAPSHOT_KEY)
    if row is None:
        return None, []
    value = orjson.loads(row.value)
    return str(value["computed_at"]), [str(m) for m in value["models"]]


def _row_out(
    row: _Row, group_by: GroupBy, currency: str
) -> PipelineCampaignRowOut | PipelineChannelRowOut:
    money = {
        "pipeline": format_minor(row.minor, currency),
        "deals": round(row.deals, 4),
        "stages": {s: format_minor(v, currency) for s, v in sorted(row.stages.items())},
    }
    if group_by == "channel":
        return PipelineChannelRowOut(channel=row.key, **money)
    assert row.key is not None  # a credit always names its campaign
    return PipelineCampaignRowOut(
        campaign_id=row.key, campaign_name=row.name, channel=row.channel, **money
    )


def pipeline_report(
    session: Session, *, model_id: str, group_by: GroupBy, currency: str
) -> PipelineReportOut:
    """Build the pipeline report of one model from the latest snapshot."""
    as_of, credited = _snapshot(session)
    totals = _totals(session)
    rows = [_row_out(r, group_by, currency) for r in _rows(session, model_id, group_by)]
    return PipelineReportOut(
        model=model_id,
        status="ready" if model_id in credited else "pending",
        currency=currency,
        group_by=group_by,
        as_of=as_of,
        rows=rows,
        totals=PipelineTotalsOut(
            pipeline=format_minor(totals.pipeline, currency),
            unattributed_pipeline=format_minor(totals.unattributed, currency),
            open_deals=totals.open_deals,
            unconverted_deals=totals.unconverted,
        ),
    )


@table.register
def _pipeline(body: PipelineReportOut) -> Table:
    """One CSV row per JSON row; ``stages`` flattened into a ``stage_<name>`` column each."""
    keys = (
        ["campaign_id", "campaign_name", "channel"] if body.group_by == "campaign" else ["channel"]
    )
    keys += ["pipeline", "deals"]
    stages = sorted({s for row in body.rows for s in row.stages})
    zero = format_minor(0, body.currency)
    rows = [
        [getattr(row, k) for k in keys] + [row.stages.get(s, zero) for s in stages]
        for row in body.rows
    ]
    return keys + [f"stage_{s}" for s in stages], rows
