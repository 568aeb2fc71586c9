"""The reports' SQL: every sum, count and group-by runs in the database.

Reads only the report projection (``credits``, ``deal_attributions`` and their rollups),
derived state (``deals`` and theirs, ``campaigns``, ``campaign_cost_days``, ``touches``),
``attribution_models`` and the projection version (``projection_versions``); never writes.
Functions return integers of minor units and plain floats; formatting is the caller's job.

Range rules: a credit, deal attribution or won deal counts when ``start_at <= closed_at <
end_at``; a cost day counts when ``start <= day < end`` (so a cost spread over days is cut at
the bounds). A period is whole UTC days, so the sums over a range are read from the rollups
(``services.core.db.rollups``: per UTC day of close, the sums of the rows closed that day):
the same numbers as the rows' own sums, at the cost of a few rows a day instead of every
deal's. A rollup key counts when its row count is positive (a key whose rows all went away
sums to 0 rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.functions import FunctionElement

from services.api.params import Period
from services.core.db.schema import (
    AttributionModelRow,
    AttributionRollupRow,
    CampaignRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    TouchRow,
    WonRollupRow,
)
from services.core.db.version import projection_version, version_column

WON = "won"
CONVERTED = "converted"
UNCONVERTED = "unconverted"
DEALS_DECIMALS = 9  # fractional deals as reports sum them: finer than shown, coarser than noise


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


def on_days(column: Any, period: Period) -> list[ColumnElement[bool]]:
    """Return the conditions ``start <= column < end`` on a date column (none if unbounded)."""
    conditions: list[ColumnElement[bool]] = []
    if period.start is not None:
        conditions.append(column >= period.start)
    if period.end is not None:
        conditions.append(column < period.end)
    return conditions


class rounded(FunctionElement[float]):  # noqa: N801 - a SQL function, named like one
    """``round(x, digits)`` of a float, as a float, on both dialects (PostgreSQL rounds only
    numerics)."""

    type = Float()
    inherit_cache = True

    def __init__(self, value: ColumnElement[Any], digits: int) -> None:
        super().__init__(value, literal_column(str(int(digits))))


@compiles(rounded)
def _rounded(element: rounded, compiler: Any, **kw: Any) -> str:
    value, digits = (compiler.process(c, **kw) for c in element.clauses)
    return f"round({value}, {digits})"


@compiles(rounded, "postgresql")
def _rounded_pg(element: rounded, compiler: Any, **kw: Any) -> str:
    value, digits = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(round(CAST({value} AS NUMERIC), {digits}) AS DOUBLE PRECISION)"


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
    (``services.api.readiness`` uses it). Models without a row in range are absent. Read from
    ``attribution_rollups``, keyed by fit: a fit counts when it has rows in range.
    """
    rollup = AttributionRollupRow
    per_fit = (
        select(
            rollup.model_id,
            rollup.fit_id,
            func.sum(rollup.attributed_minor).label("attributed"),
            func.sum(rollup.unattributed_minor).label("unattributed"),
            func.sum(rollup.deals).label("deals"),
        )
        .where(rollup.model_id.in_(model_list), *on_days(rollup.day, period))
        .group_by(rollup.model_id, rollup.fit_id)
        .having(func.sum(rollup.deals) > 0)
        .subquery("per_fit")
    )
    stmt = select(
        per_fit.c.model_id,
        func.sum(per_fit.c.attributed),
        func.sum(per_fit.c.unattributed),
        func.max(per_fit.c.fit_id),
        func.sum(per_fit.c.deals),
    ).group_by(per_fit.c.model_id)
    return {
        model_id: AttributionSums(
            int(attributed), int(unattributed), None if fit_id is None else int(fit_id), int(n)
        )
        for model_id, attributed, unattributed, fit_id, n in session.execute(stmt)
    }


def converted_won(session: Session, period: Period) -> ConvertedWon:
    """Return how many won deals closed in range converted, and their converted amounts' sum."""
    rollup = WonRollupRow
    count, total = session.execute(
        select(
            func.coalesce(func.sum(rollup.deals), 0),
            func.coalesce(func.sum(rollup.reporting_minor), 0),
        ).where(rollup.conversion == CONVERTED, *on_days(rollup.day, period))
    ).one()
    return ConvertedWon(int(count), int(total or 0))


def uncredited(session: Session, model_list: Sequence[str], period: Period) -> dict[str, int]:
    """Per model: the converted amounts of won deals closed in range it has no row for.

    The converted revenue in range minus the amounts of the model's ``deal_attributions``
    rows in range: the worker writes such a row only for a won and converted deal, with the
    deal's converted amount and close (``services.attribution.credits``), so the difference
    is the amount of the deals without one. Models missing nothing are absent.
    """
    if not model_list:
        return {}
    won = converted_won(session, period).revenue_minor
    rollup = AttributionRollupRow
    credited = dict(
        session.execute(
            select(rollup.model_id, func.sum(rollup.amount_minor))
            .where(rollup.model_id.in_(model_list), *on_days(rollup.day, period))
            .group_by(rollup.model_id)
        ).all()
    )
    missing = {m: won - int(credited.get(m) or 0) for m in model_list}
    return {m: minor for m, minor in missing.items() if minor}


def won_totals(session: Session, period: Period) -> WonTotals:
    """Return the won deals closed in range: converted count and sum, unconverted per currency."""
    rollup = WonRollupRow
    per_currency = session.execute(
        select(
            rollup.currency,
            func.sum(rollup.deals),
            func.coalesce(func.sum(rollup.amount_minor), 0),
        )
        .where(rollup.conversion == UNCONVERTED, *on_days(rollup.day, period))
        .group_by(rollup.currency)
        .having(func.sum(rollup.deals) > 0)
        .order_by(rollup.currency)
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
