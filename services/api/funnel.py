"""The funnel report (contract §6): stage volumes, conversions, days to the next stage.

How it is computed:
- A contact's stage history is its ``lifecycle_changes`` rows plus those of every contact
  merged into it, grouped by the root contact (``contacts.root_contact_id``), so an absorbed
  contact never counts on its own. A deal's history is its ``deal_stage_changes`` (its
  stages, then ``won`` / ``lost``).
- A history is ordered by (``occurred_at``, ``event_id``) and repeats of the same stage in a
  row are collapsed: a step is a change. A stage is *entered* at its first step; a stage
  never entered (skipped) counts nowhere.
- ``volume`` of stage S: histories whose first entry into S is inside [from, to).
  ``converted``: of them, those with a later step into a stage further along the order (at
  any time stored; no clock, so the body is cached per projection version);
  ``median_days_to_next``: the median over those of the days from entering S to the first
  such step (exact, the mean of the middle two for an even count, rounded half-up to 2
  decimals). ``recycled`` / ``disqualified`` (deals: ``lost``): the step right after
  entering S is that exit.
- Contacts: the worker keeps exactly these facts per root and stage in
  ``contact_stage_entries`` (``services.attribution.funnel_summary``), so the report is SQL:
  one GROUP BY over the entries in range, and per stage the middle one or two of the exact
  microseconds to the next stage, read in order through the partial index on
  (stage, next_micros, entered_at).
- Deal stages are ordered by the ``deal_stage_order`` setting, then any other stage by its
  first appearance overall (earliest step, then event_id); ``won`` comes last in the order
  (every stage converts into it), and ``lost`` is the deals' exit, shown as a final row.
  ``won`` and ``lost`` rows convert into nothing. The worker keeps these facts per deal and
  stage in ``deal_stage_entries`` under the order it stored (``services.attribution.
  deal_funnel``); while that is the order computed here (same snapshot) the report is the
  same SQL as the contacts'. Otherwise (the order just moved: a new stage, an earlier first
  appearance, another setting, before the worker's rebuild) SQL selects the deal histories
  with a first entry in range and the tally runs in Python.
"""

from __future__ import annotations

import itertools
import statistics
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session

from services.api.formatting import ratio
from services.api.funnel_schemas import (
    DealFunnelOut,
    DealFunnelStageOut,
    FunnelOut,
    FunnelStageOut,
)
from services.api.params import Period
from services.core.db.deal_stages import (
    LOST,
    STAGE_PREFIX,
    WON,
    current_order,
    history_rows,
    ranked,
    stored_order,
)
from services.core.db.schema import ContactStageEntryRow, DealStageEntryRow
from services.core.events import FUNNEL_STAGES, SIDE_EXITS
from services.domain.stages import Step, collapse, first_entries

DAY_MICROS = 86_400_000_000


@dataclass
class Tally:
    """What the histories did after first entering one stage."""

    volume: int = 0
    days: list[Fraction] = field(default_factory=list)  # one per converted history
    exits: dict[str, int] = field(default_factory=dict)
    # Read from a summary instead of tallied from ``days``: set both together.
    summary: tuple[int, float | None] | None = None

    @property
    def converted(self) -> int:
        return len(self.days) if self.summary is None else self.summary[0]

    @property
    def median(self) -> float | None:
        return median(self.days) if self.summary is None else self.summary[1]


def _inside(at: Any, period: Period) -> bool:
    start, end = period.start_at, period.end_at
    return (start is None or at >= start) and (end is None or at < end)


def tally(
    histories: Iterable[Sequence[Step]], *, order: Sequence[str], exit_stage: str, period: Period
) -> dict[str, Tally]:
    """Tally histories per stage of ``order`` and the exit: the first entries in range, as
    the worker's entries record them (``services.domain.stages.first_entries``)."""
    out = {stage: Tally(exits={exit_stage: 0}) for stage in (*order, exit_stage)}
    for steps in histories:
        for entry in first_entries(steps, order, exit_stage):
            if not _inside(entry.entered_at, period):
                continue
            t = out[entry.stage]
            t.volume += 1
            if entry.next_micros is not None:
                t.days.append(Fraction(entry.next_micros, DAY_MICROS))
            if entry.exit_stage is not None:
                t.exits[exit_stage] += 1
    return out


def two_decimals(value: Fraction) -> float:
    """Round an exact quantity half-up to 2 decimals."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def median(values: Sequence[Fraction]) -> float | None:
    """Return the median (mean of the middle two for an even count), 2 decimals, or None."""
    return two_decimals(statistics.median(values)) if values else None


def middle_ranks(count: int) -> tuple[int, int]:
    """Return the 0-based ranks of the middle value(s) of ``count`` sorted values."""
    return (count - 1) // 2, count // 2


def in_period(column: Any, period: Period) -> list[ColumnElement[bool]]:
    """Return the conditions that put ``column`` inside [from, to)."""
    conditions = []
    if period.start_at is not None:
        conditions.append(column >= period.start_at)
    if period.end_at is not None:
        conditions.append(column < period.end_at)
    return conditions


Entries = type[ContactStageEntryRow] | type[DealStageEntryRow]


def _stage_counts(
    session: Session, period: Period, e: Entries = ContactStageEntryRow
) -> dict[str, tuple[int, int, int, int, int]]:
    """Per stage: (volume, converted, recycled, disqualified, lost) of the entries in range."""
    rows = session.execute(
        select(
            e.stage,
            func.count(),
            func.count(e.next_micros),
            func.count(case((e.exit_stage == SIDE_EXITS[0], 1))),
            func.count(case((e.exit_stage == SIDE_EXITS[1], 1))),
            func.count(case((e.exit_stage == LOST, 1))),
        )
        .where(*in_period(e.entered_at, period))
        .group_by(e.stage)
    )
    return {stage: (int(v), int(c), int(r), int(d), int(lost)) for stage, v, c, r, d, lost in rows}


def _median_days(
    session: Session,
    stage: str,
    converted: int,
    period: Period,
    e: Entries = ContactStageEntryRow,
) -> float | None:
    """Return the exact median days to next of a stage's ``converted`` entries in range."""
    if converted == 0:
        return None
    low, high = middle_ranks(converted)
    middle = [
        int(value)
        for value in session.scalars(
            select(e.next_micros)
            .where(e.stage == stage, e.next_micros.is_not(None), *in_period(e.entered_at, period))
            .order_by(e.next_micros)
            .offset(low)
            .limit(high - low + 1)
        )
        if value is not None
    ]
    return two_decimals(Fraction(sum(middle), len(middle) * DAY_MICROS))


def funnel_report(session: Session, *, period: Period) -> FunnelOut:
    """Build the contacts funnel over ``period`` (see the module docstring)."""
    counts = _stage_counts(session, period)
    stages = []
    for stage in FUNNEL_STAGES:
        volume, converted, recycled, disqualified, _ = counts.get(stage, (0, 0, 0, 0, 0))
        stages.append(
            FunnelStageOut(
                stage=stage,
                volume=volume,
                converted=converted,
                conversion_rate=ratio(converted, volume),
                median_days_to_next=_median_days(session, stage, converted, period),
                recycled=recycled,
                disqualified=disqualified,
            )
        )
    start, end = period.echo()
    return FunnelOut(from_=start, to=end, stages=stages)


def deal_steps(session: Session, period: Period) -> Iterator[list[Step]]:
    """Stream the collapsed histories of deals with a first entry into any stage in range.

    Rows arrive grouped by deal from a server-side cursor, so memory holds one chunk of rows
    and one deal's history at a time, not every deal's.
    """
    h = history_rows()
    stmt: Select[Any] = select(h.c.entity, h.c.stage, h.c.occurred_at, h.c.event_id)
    if period.start is not None or period.end is not None:
        # Uncorrelated: the same subquery, read a second time for the first entries.
        firsts = select(h.c.entity).group_by(h.c.entity, h.c.stage).correlate(None)
        if period.start_at is not None:
            firsts = firsts.having(func.min(h.c.occurred_at) >= period.start_at)
        if period.end_at is not None:
            firsts = firsts.having(func.min(h.c.occurred_at) < period.end_at)
        stmt = stmt.where(h.c.entity.in_(firsts))
    rows = session.execute(stmt.order_by(h.c.entity), execution_options={"yield_per": 5000})
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        yield collapse(Step(at, event_id, stage) for _, stage, at, event_id in group)


# Tallying streams every deal's stage history through this process (seconds and ~70 MB at
# 100k won deals): one at a time bounds the API's memory; the answers are cached.
_TALLIES = threading.Semaphore(1)


def _tallied(session: Session, period: Period, order: list[str]) -> dict[str, Tally]:
    """Tally the deals' histories (when the worker's entries are not under this order)."""
    with _TALLIES:
        return tally(deal_steps(session, period), order=order, exit_stage=LOST, period=period)


def _summarised(session: Session, period: Period, order: list[str]) -> dict[str, Tally]:
    """Read the same tallies from the worker's ``deal_stage_entries`` (SQL, no history)."""
    e = DealStageEntryRow
    counts = _stage_counts(session, period, e)
    out = {}
    for stage in [*order, LOST]:
        volume, converted, *_, lost = counts.get(stage, (0, 0, 0, 0, 0))
        days = _median_days(session, stage, converted, period, e)
        out[stage] = Tally(volume=volume, exits={LOST: lost}, summary=(converted, days))
    return out


def deal_funnel_report(session: Session, *, period: Period, configured_order: str) -> DealFunnelOut:
    """Build the deal-stage funnel over ``period`` (see the module docstring)."""
    names = current_order(session, configured_order)
    order = ranked(names)
    summarised = stored_order(session) == names
    tallies = (_summarised if summarised else _tallied)(session, period, order)
    start, end = period.echo()
    return DealFunnelOut(
        from_=start,
        to=end,
        stage_order=[*names, WON, LOST],
        stages=[
            DealFunnelStageOut(
                stage=stage.removeprefix(STAGE_PREFIX),
                volume=t.volume,
                converted=t.converted,
                conversion_rate=ratio(t.converted, t.volume),
                median_days_to_next=t.median,
                lost=t.exits[LOST],
            )
            for stage, t in tallies.items()
        ],
    )
