"""The marketing-to-sales hand-off SLA report (contract §6): MQL to the first sales response.

How it is computed:
- MQLs: root contacts (after merges, as in ``services.api.funnel``) whose history first
  entered ``mql`` inside [from, to); each falls in the ISO week (UTC) of that moment.
- The sales response is the earliest of: a touch by any contact under the root, at or after
  the MQL moment, of a sales-sourced campaign or with ``touch_type`` ``meeting``, ``call`` or
  ``sales_email``; and the first step of the root's history after the MQL step to ``sql``,
  ``recycled`` or ``disqualified``. The worker keeps, per root, the MQL moment, its week and
  the first response at any time with the exact microseconds to it in ``handoffs``
  (``services.attribution.funnel_summary``); this module reads them with SQL as of ``now``.
- Only what happened by ``now`` counts: an MQL later than ``now`` is not one yet, and a first
  response later than ``now`` means none yet (no earlier one exists).
- Hours to response are exact (integer microseconds); the median is the mean of the middle
  two for an even count; the 90th percentile is the nearest rank: the ceil(0.9·n)-th
  smallest. Both are rounded half-up to 2 decimals. The ranks are read in SQL (PostgreSQL:
  one ``OFFSET`` lookup per rank through the index on (week, response_micros); SQLite: the
  values in order), never estimated.
- Breached: a response more than ``sla_hours`` after the MQL moment, or none by ``now`` while
  more than ``sla_hours`` have passed. Both come to one test: no response or a late one, and
  the MQL moment more than ``sla_hours`` before ``now`` (a late response cannot have come
  before the SLA ran out, and a timely one never breaches). With ``sla_hours`` in whole
  microseconds rounded down (``sla``), "more than" is ``response_micros > sla`` and
  ``mql_at < now - sla``.
- The breaching contacts are listed by (``mql_at``, contact) a page at a time
  (``breaches_limit``, ``breaches_offset``); ``breaches_total`` counts them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from sqlalchemy import ColumnElement, Integer, String, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from services.api.formatting import rfc3339
from services.api.funnel import in_period, middle_ranks, two_decimals
from services.api.funnel_schemas import SlaBreachOut, SlaOut, SlaPeriodOut
from services.api.params import Period
from services.core.db.schema import HandoffRow

HOUR_MICROS = 3_600_000_000
OVERALL = "overall"
H = HandoffRow


@dataclass(frozen=True)
class BreachPage:
    """Which breaching contacts to list: ``limit`` of them after skipping ``offset``."""

    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Clock:
    """The report's moment and SLA: ``sla`` in whole microseconds (rounded down)."""

    now: datetime
    sla: int

    @classmethod
    def of(cls, now: datetime, sla_hours: float) -> Clock:
        """Return the clock for ``now`` and an SLA in (decimal) hours."""
        return cls(now, math.floor(Fraction(str(sla_hours)) * HOUR_MICROS))

    @property
    def overdue_before(self) -> datetime:
        """MQLs before this moment have waited more than the SLA by ``now``."""
        return self.now - timedelta(microseconds=self.sla)


def _mqls(period: Period, clock: Clock) -> list[ColumnElement[bool]]:
    return [H.mql_at <= clock.now, *in_period(H.mql_at, period)]


def _breached(clock: Clock) -> ColumnElement[bool]:
    late_or_none = or_(H.response_micros.is_(None), H.response_micros > clock.sla)
    return late_or_none & (H.mql_at < clock.overdue_before)


def _responded(clock: Clock) -> ColumnElement[bool]:
    return H.responded_at <= clock.now


@dataclass(frozen=True)
class Counts:
    mqls: int
    responded: int
    breached: int


def _week_counts(session: Session, period: Period, clock: Clock) -> dict[str, Counts]:
    rows = session.execute(
        select(
            H.week,
            func.count(),
            func.count(case((_responded(clock), 1))),
            func.count(case((_breached(clock), 1))),
        )
        .where(*_mqls(period, clock))
        .group_by(H.week)
    )
    return {week: Counts(int(m), int(r), int(b)) for week, m, r, b in rows}


def ranks(count: int) -> tuple[int, int, int]:
    """Return the 0-based ranks of the lower and upper middle and the nearest-rank p90."""
    low, high = middle_ranks(count)
    return low, high, math.ceil(Fraction(9, 10) * count) - 1


def _ranked(
    session: Session, period: Period, clock: Clock, wanted: dict[str, int]
) -> dict[tuple[str, int], int]:
    """Return {(group, rank): response_micros} for the ranks ``ranks(n)`` of each group.

    ``wanted`` maps each group (a week, or ``OVERALL``) to its count of answered hand-offs.
    """
    answered = [*_mqls(period, clock), _responded(clock), H.response_micros.is_not(None)]
    if session.get_bind().dialect.name != "postgresql":
        return _ranked_in_order(session, answered, wanted)
    keys = [(g, k) for g, n in wanted.items() for k in sorted(set(ranks(n)))]
    found = _offset_lookups(session, answered, [key for key in keys if key[0] != OVERALL])
    found.update(_offset_lookups(session, answered, [key for key in keys if key[0] == OVERALL]))
    return found


def _offset_lookups(
    session: Session, answered: Sequence[ColumnElement[bool]], keys: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """PostgreSQL: one ``ORDER BY response_micros OFFSET k LIMIT 1`` per (group, k), in one query.

    A week's lookup walks the index on (week, response_micros) up to rank k; the overall one
    the index on response_micros. Both indexes carry ``mql_at`` and ``responded_at``, so the
    walk reads no table rows.
    """
    if not keys:
        return {}
    wanted = (
        func.unnest(
            bindparam(None, [g for g, _ in keys], type_=postgresql.ARRAY(String())),
            bindparam(None, [k for _, k in keys], type_=postgresql.ARRAY(Integer())),
        )
        .table_valued("grp", "k")
        .render_derived()
    )
    lookup = select(H.response_micros).where(*answered)
    if keys[0][0] != OVERALL:
        lookup = lookup.where(H.week == wanted.c.grp)
    value = lookup.order_by(H.response_micros).offset(wanted.c.k).limit(1).scalar_subquery()
    return {(g, k): int(v) for g, k, v in session.execute(select(wanted.c.grp, wanted.c.k, value))}


def _ranked_in_order(
    session: Session, answered: Sequence[ColumnElement[bool]], wanted: dict[str, int]
) -> dict[tuple[str, int], int]:
    """Read every answered hand-off's response in order (small databases: SQLite)."""
    by_week: dict[str, list[int]] = {}
    for week, value in session.execute(
        select(H.week, H.response_micros).where(*answered).order_by(H.response_micros)
    ):
        by_week.setdefault(week, []).append(int(value or 0))  # never null: see ``answered``
    values = {OVERALL: sorted(v for vs in by_week.values() for v in vs), **by_week}
    return {(g, k): values[g][k] for g, n in wanted.items() for k in ranks(n)}


def _period_out(week: str, counts: Counts, found: dict[tuple[str, int], int]) -> SlaPeriodOut:
    n = counts.responded
    median = p90 = None
    if n:
        low, high, top = ranks(n)
        median = two_decimals(Fraction(found[(week, low)] + found[(week, high)], 2 * HOUR_MICROS))
        p90 = two_decimals(Fraction(found[(week, top)], HOUR_MICROS))
    return SlaPeriodOut(
        week=week,
        mqls=counts.mqls,
        responded=n,
        median_hours=median,
        p90_hours=p90,
        breached=counts.breached,
    )


def _breaches(
    session: Session, period: Period, clock: Clock, page: BreachPage
) -> list[SlaBreachOut]:
    rows = session.execute(
        select(H.root_contact_id, H.week, H.mql_at, H.responded_at, H.response_micros)
        .where(*_mqls(period, clock), _breached(clock))
        .order_by(H.mql_at, H.root_contact_id)
        .offset(page.offset)
        .limit(page.limit)
    )
    out = []
    for contact, week, mql_at, responded_at, response in rows:
        # A response after ``now`` is none yet.
        hours = None
        if responded_at is not None and response is not None and responded_at <= clock.now:
            hours = two_decimals(Fraction(response, HOUR_MICROS))
        out.append(
            SlaBreachOut(
                contact_id=contact,
                week=week,
                mql_at=rfc3339(mql_at) or "",
                responded_at=None if hours is None else rfc3339(responded_at),
                hours_to_response=hours,
            )
        )
    return out


def valid_until(
    session: Session, *, period: Period, now: datetime, sla_hours: float
) -> datetime | None:
    """Return the first moment after ``now`` at which the report over ``period`` can change.

    That is the earliest, over the hand-offs of the period, of an MQL moment, a first response
    or the first moment past an SLA deadline (``mql_at`` + SLA + 1 µs) later than ``now``;
    None if there is none (only a change of the projection can change the answer then).
    """
    clock = Clock.of(now, sla_hours)
    in_range = in_period(H.mql_at, period)
    deadline = timedelta(microseconds=clock.sla + 1)
    nxt_mql, nxt_response, nxt_due = session.execute(
        select(
            select(func.min(H.mql_at)).where(H.mql_at > now, *in_range).scalar_subquery(),
            select(func.min(H.responded_at))
            .where(H.responded_at > now, *in_range)
            .scalar_subquery(),
            select(func.min(H.mql_at))
            .where(H.mql_at > now - deadline, *in_range)
            .scalar_subquery(),
        )
    ).one()
    moments: list[datetime | None] = [nxt_mql, nxt_response]
    moments.append(None if nxt_due is None else nxt_due + deadline)
    return min((m for m in moments if m is not None), default=None)


def _total(weeks: Iterable[Counts]) -> Counts:
    weeks = list(weeks)
    return Counts(
        sum(c.mqls for c in weeks), sum(c.responded for c in weeks), sum(c.breached for c in weeks)
    )


def sla_report(
    session: Session,
    *,
    period: Period,
    now: datetime,
    sla_hours: float,
    page: BreachPage = BreachPage(),
) -> SlaOut:
    """Build the hand-off SLA report over ``period`` as of ``now`` (see the module docstring)."""
    clock = Clock.of(now, sla_hours)
    weeks = _week_counts(session, period, clock)
    overall = _total(weeks.values())
    wanted = {w: c.responded for w, c in weeks.items() if c.responded}
    if overall.responded:
        wanted[OVERALL] = overall.responded
    found = _ranked(session, period, clock, wanted) if wanted else {}
    start, end = period.echo()
    return SlaOut(
        from_=start,
        to=end,
        as_of=rfc3339(now) or "",
        sla_hours=sla_hours,
        weeks=[_period_out(w, weeks[w], found) for w in sorted(weeks)],
        overall=_period_out(OVERALL, overall, found),
        breaches=_breaches(session, period, clock, page),
        breaches_total=overall.breached,
    )
