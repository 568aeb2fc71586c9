"""The body of ``GET /v1/lead-definitions/{id}/backtest`` (contract §7), and its CSV form.

Money is a decimal string in the reporting currency; ratios are rounded to 4 decimals and null
when their denominator is 0; timestamps are RFC 3339 UTC with ``Z``. The CSV is one row per
definition (the missed deals and the fits are left out, like totals): the report's period and
currency, the definition's id and version, then its figures in the JSON's order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.api.lead_schemas import LeadRuleOut
from services.api.rendering import Table, table


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class BacktestMissedOut(_Out):
    deal_id: str
    account_id: str
    amount: str | None = Field(
        description="won amount in the reporting currency; null: unconverted"
    )
    created_at: str
    closed_at: str
    reasons: list[str] = Field(description="why its account did not meet the rule before creation")


class BacktestDefinitionOut(_Out):
    id: str
    version: int
    rule: LeadRuleOut
    decided_deals: int = Field(description="deals won or lost in range, with an account")
    won_deals: int
    base_win_rate: float | None = Field(description="won_deals / decided_deals")
    qualified_deals: int = Field(
        description="decided deals whose account qualified before creation"
    )
    qualified_won: int
    qualified_win_rate: float | None = Field(description="qualified_won / qualified_deals")
    lift: float | None = Field(description="qualified_win_rate / base_win_rate")
    qualified_accounts: int = Field(description="distinct accounts of the qualified deals")
    won_revenue: str
    caught_won_revenue: str = Field(description="won revenue of the qualified won deals")
    share_of_won_revenue: float | None
    share_of_won_deals: float | None = Field(description="qualified_won / won_deals")
    median_days_to_won: float | None = Field(
        description="median days from qualifying to won over the qualified won deals"
    )
    missed_total: int = Field(description="won deals whose account did not qualify in time")
    missed: list[BacktestMissedOut] = Field(description="the first of them by closed_at")


class BacktestFitOut(_Out):
    month: str = Field(description="deals created in this UTC month (YYYY-MM) use these fits")
    decided_before: str = Field(description="the fits learned from deals decided before this")
    training_deals: int = Field(description="deals won (and converted) or lost before it")
    won: int
    markov: bool = Field(description="a Markov fit exists (a won and a lost journey)")
    grade: bool = Field(description="a grade fit exists (a won and a lost deal with an account)")


class BacktestOut(_Out):
    from_: str | None = Field(alias="from")
    to: str | None
    currency: str
    lookback_days: int
    unconverted_won_deals: int = Field(
        description="won deals in range with no converted amount: counted, no revenue"
    )
    definitions: list[BacktestDefinitionOut]
    fits: list[BacktestFitOut]


_FIGURES = [
    name for name in BacktestDefinitionOut.model_fields if name not in ("id", "version", "rule")
]
_FIGURES.remove("missed")


@table.register
def _backtest(body: BacktestOut) -> Table:
    header = ["from", "to", "currency", "definition_id", "version", *_FIGURES]
    rows: list[list[Any]] = [
        [body.from_, body.to, body.currency, d.id, d.version]
        + [getattr(d, name) for name in _FIGURES]
        for d in body.definitions
    ]
    return header, rows
