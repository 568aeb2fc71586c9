"""The reports' SQL: every sum, count and group-by runs in the database.

Reads only the report projection (``credits``, ``deal_attributions``), derived state (``deals``,
``campaigns``, ``campaign_cost_days``, ``touches``), ``attribution_models`` and the projection
version (``projection_versions``); never writes.
Functions return integers of minor units and plain floats; formatting is the caller's job.

Range rules: a credit or deal attribution counts when ``start_at <= closed_at < end_at``; a
cost day counts when ``start <= day < end`` (so a cost spread over days is cut at the bounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    func,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.api.params import Period
from services.core.db.schema import (
    AttributionModelRow,
    CampaignRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    TouchRow,
)
from services.core.db.version import projection_version, version_column

WON = "won"
CONVERTED = "converted"
UNCONVERTED = "unconverted"


@dataclass(frozen=True)
class AttributionSums:
    """One model's sums over the deals closed in a range, and the newest fit behind them."""

    attributed: int
    unattributed: int
    fit_id: int | None
    deals: int = 0  # how many deal attribution rows the sums are over


NO_DEALS = AttributionSums(0, 0, None)  # a model with no deal in range


@dataclass(frozen=True)
class ConvertedWon:
    """The won deals closed in a range whose amount converted into the reporting currency."""

    deals: int
    revenue_minor: int


@dataclass(frozen=True)
class WonTotals:
    converted: ConvertedWon
    unconverted_count: int
    unconverted_by_currency: dict[str, int]


@dataclass(frozen=True)
class JourneyRow:
    event_id: str
    occurred_at: datetime | None
    campaign_id: str
    channel: str | None
    roles: str
    weight: float
    credit_minor: int


def closed_in(
    column: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None], period: Period
) -> list[ColumnElement[bool]]:
    """Return the conditions ``start_at <= column < end_at`` of a period (none if unbounded)."""
    conditions: list[ColumnElement[bool]] = []
    if period.start_at is not None:
        conditions.append(column >= period.start_at)
    if period.end_at is not None:
        conditions.append(column < period.end_at)
    return conditions


def bytewise(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """Order strings by code point on both dialects (PostgreSQL's default is locale order)."""
    return column.collate("C") if dialect == "postgresql" else column


def models(session: Session) -> list[AttributionModelRow]:
    """Return every attribution model in display order."""
    stmt = select(AttributionModelRow).order_by(
        AttributionModelRow.position, AttributionModelRow.model_id
    )
    return list(session.scalars(stmt))


def model_ids(session: Session) -> list[str]:
    """Return every model id in display order."""
    stmt = select(AttributionModelRow.model_id).order_by(
        AttributionModelRow.position, AttributionModelRow.model_id
    )
    return list(session.scalars(stmt))


def version_and_models_statement() -> Select[str, str]:
    """Select the projection version beside each model id, in display order (one statement)."""
    return select(cast(version_column(), String), AttributionModelRow.model_id).order_by(
        AttributionModelRow.position, AttributionModelRow.model_id
    )


def version_and_model_ids(session: Session) -> tuple[str, list[str]]:
    """Return the projection version and every model id in display order, in one statement."""
    # Core on the session's connection: same transaction, same snapshot, less work than the ORM.
    rows = session.connection().execute(version_and_models_statement()).all()
    if not rows:
        return projection_version(session), []
    return rows[0][0], [model_id for _, model_id in rows]


def deal_attribution_sums(
    session: Session, model_list: Sequence[str], period: Period
) -> dict[str, AttributionSums]:
    """Return each model's attributed and unattributed sums over deals closed in range.

    Also the newest ``fit_id`` among those deals (null but for data-driven models), so a
    report names its snapshot without scanning the range again, and the number of rows
    (``services.api.readiness`` uses it). Models without a row in range are absent.
    """
    stmt = (
        select(
            DealAttributionRow.model_id,
            func.sum(DealAttributionRow.attributed_minor),
            func.sum(DealAttributionRow.unattributed_minor),
            func.max(DealAttributionRow.fit_id),
            func.count(),
        )
        .where(
            DealAttributionRow.model_id.in_(model_list),
            *closed_in(DealAttributionRow.closed_at, period),
        )
        .group_by(DealAttributionRow.model_id)
    )
    return {
        model_id: AttributionSums(
            int(attributed), int(unattributed), None if fit_id is None else int(fit_id), int(n)
        )
        for model_id, attributed, unattributed, fit_id, n in session.execute(stmt)
    }


def _won_in(period: Period) -> list[ColumnElement[bool]]:
    return [DealRow.status == WON, *closed_in(DealRow.closed_at, period)]


def converted_won(session: Session, period: Period) -> ConvertedWon:
    """Return how many won deals closed in range converted, and their converted amounts' sum."""
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(DealRow.reporting_minor), 0)).where(
            *_won_in(period), DealRow.conversion == CONVERTED
        )
    ).one()
    return ConvertedWon(int(count), int(total or 0))


def uncredited(session: Session, model_list: Sequence[str], period: Period) -> dict[str, int]:
    """Per model: the converted amounts of won deals closed in range it has no row for.

    An anti-join of the won and converted deals against the model's ``deal_attributions``;
    models missing no deal are absent from the answer.
    """
    if not model_list:
        return {}
    has_row = (
        select(DealAttributionRow.deal_id)
        .where(
            DealAttributionRow.model_id == AttributionModelRow.model_id,
            DealAttributionRow.deal_id == DealRow.deal_id,
        )
        .exists()
    )
    stmt = (
        select(AttributionModelRow.model_id, func.sum(DealRow.reporting_minor))
        .select_from(AttributionModelRow)
        .join(DealRow, true())
        .where(
            AttributionModelRow.model_id.in_(model_list),
            *_won_in(period),
            DealRow.conversion == CONVERTED,
            ~has_row,
        )
        .group_by(AttributionModelRow.model_id)
    )
    return {model_id: int(total or 0) for model_id, total in session.execute(stmt)}


def won_totals(session: Session, period: Period) -> WonTotals:
    """Return the won deals closed in range: converted count and sum, unconverted per currency."""
    in_range = and_(*_won_in(period))
    per_currency = session.execute(
        select(DealRow.currency, func.count(), func.coalesce(func.sum(DealRow.amount_minor), 0))
        .where(in_range, DealRow.conversion == UNCONVERTED)
        .group_by(DealRow.currency)
        .order_by(DealRow.currency)
    ).all()
    return WonTotals(
        converted=converted_won(session, period),
        unconverted_count=sum(int(n or 0) for _, n, _ in per_currency),
        # A won deal that never carried an amount has no currency: counted, with no amount.
        unconverted_by_currency={cur: int(amount or 0) for cur, _, amount in per_currency if cur},
    )


def deal(session: Session, deal_id: str) -> DealRow | None:
    """Return the deal with this id, or None."""
    return session.get(DealRow, deal_id)


def has_attribution(session: Session, model_id: str, deal_id: str) -> bool:
    """Whether the projection holds a (model, deal) attribution, i.e. the deal is won+converted."""
    return session.get(DealAttributionRow, (model_id, deal_id)) is not None


def journey(session: Session, model_id: str, deal_id: str) -> list[JourneyRow]:
    """Return a deal's credited touches under one model, in journey order."""
    stmt = (
        select(
            CreditRow.touch_event_id,
            TouchRow.occurred_at,
            CreditRow.campaign_id,
            CampaignRow.channel,
            CreditRow.roles,
            CreditRow.weight,
            CreditRow.credit_minor,
        )
        .outerjoin(TouchRow, TouchRow.event_id == CreditRow.touch_event_id)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == CreditRow.campaign_id)
        .where(CreditRow.model_id == model_id, CreditRow.deal_id == deal_id)
        .order_by(CreditRow.position, CreditRow.touch_event_id)
    )
    return [JourneyRow(*row) for row in session.execute(stmt)]
