"""``/v1/lead-definitions/{id}/backtest``: how a lead definition would have performed (§7).

The backtest depends on the projection and the stored events alone (no clock), so its rendered
body is cached per projection version like the other reports; storing a definition's version
bumps the projection version, so a new version is never answered from an older body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from services.api.backtest import MISSED_LIMIT, backtest_report, parse_compare
from services.api.backtest_schemas import BacktestOut
from services.api.deps import (
    CachedReportsDep,
    FormatDep,
    PeriodDep,
    ReadPrincipal,
    SettingsDep,
)
from services.api.rendering import csv_responses, render

router = APIRouter(prefix="/v1/lead-definitions", tags=["lead definitions"])

VersionQuery = Annotated[
    int | None,
    Query(ge=1, le=2_147_483_647, description="the version to backtest; absent: the latest"),
]
CompareQuery = Annotated[
    str | None,
    Query(
        description="a second definition evaluated on the same deals: `id` (its latest "
        "version) or `id@version`"
    ),
]
MissedLimitQuery = Annotated[
    int, Query(ge=0, le=1000, description="list at most this many missed won deals")
]


@router.get(
    "/{definition_id}/backtest",
    response_model=BacktestOut,
    responses={
        **csv_responses("bad from, to, version, compare or missed_limit"),
        404: {"description": "unknown definition or version"},
    },
)
async def backtest(
    definition_id: str,
    _: ReadPrincipal,
    fmt: FormatDep,
    reports: CachedReportsDep,
    settings: SettingsDep,
    period: PeriodDep,
    version: VersionQuery = None,
    compare: CompareQuery = None,
    missed_limit: MissedLimitQuery = MISSED_LIMIT,
) -> Response:
    """What the definition would have caught among the deals won or lost in [from, to).

    For each deal, the account counts as qualified only if it met the rule in the lookback
    window before the deal was created, scored and graded by a Markov chain and a grade
    refitted on the deals decided before the deal's creation month (walk-forward; ``fits``
    lists them). Per
    definition: qualified deals and accounts, their win rate and lift over the base rate,
    the share of won revenue and of won deals caught, the won deals missed (with why), and
    the median days from qualifying to won. ``compare`` adds a second definition, side by
    side. See ``services.api.backtest``.
    """
    other = parse_compare(compare)

    def build(session: Session, _: None) -> Response:
        body = backtest_report(
            session,
            settings,
            definition_id=definition_id,
            version=version,
            compare=other,
            period=period,
            missed_limit=missed_limit,
        )
        return render(body, fmt, filename=f"backtest-{definition_id}.csv")

    key = ("backtest", definition_id, version, other, period, missed_limit, fmt)
    return await reports.answer(key, resolve=lambda _: None, build=build)
