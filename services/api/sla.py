"""The marketing-to-sales hand-off SLA report (contract §6): MQL to the first sales response.

How it is computed:
- MQLs: root contacts (after merges, as in ``services.api.funnel``) whose history first
  entered ``mql`` inside [from, to); each falls in the ISO week (UTC) of that moment.
- The sales response is the earliest of: a touch by any contact under the root, at or after
  the MQL moment, of a sales-sourced campaign or with ``touch_type`` ``meeting``, ``call`` or
  ``sales_email``; and the first step of the root's history after the MQL step to ``sql``,
  ``recycled`` or ``disqualified``. Only what happened by ``now`` counts: the first response
  over all time is found once per projection version (``HandoffCache``), and a first
  response later than ``now`` means none yet (no earlier one exists).
- Hours to response are exact (fractions of microseconds); the median is the mean of the
  middle two for an even count; the 90th percentile is the nearest rank: the
  ceil(0.9·n)-th smallest. Both are rounded half-up to 2 decimals.
- Breached: a response more than ``sla_hours`` after the MQL moment, or none by ``now`` while
  more than ``sla_hours`` have passed. The answer depends on the clock, so the body is built
  on every request; only the clock-free hand-offs are cached, per projection version.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.api.formatting import rfc3339
from services.api.funnel import Step, contact_steps, median, two_decimals
from services.api.funnel_schemas import SlaBreachOut, SlaOut, SlaPeriodOut
from services.api.params import Period
from services.core.db.schema import CampaignRow, ContactRow, TouchRow
from services.core.db.upsert import among

SALES_TOUCH_TYPES = ("meeting", "call", "sales_email")
RESPONSE_STAGES = ("sql", "recycled", "disqualified")
_HOUR_MICROS = 3_600_000_000


@dataclass(frozen=True)
class Handoff:
    """One MQL: its root contact, when, and the first sales response by ``now`` (if any)."""

    contact_id: str
    mql_at: datetime
    responded_at: datetime | None

    @property
    def week(self) -> str:
        """The ISO week of the MQL moment, like ``2026-W10``."""
        year, week, _ = self.mql_at.isocalendar()
        return f"{year}-W{week:02d}"

    def hours(self, until: datetime) -> Fraction:
        """Exact hours from the MQL moment to ``until``."""
        delta = until - self.mql_at
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return Fraction(micros, _HOUR_MICROS)

    def breached(self, *, now: datetime, sla: Fraction) -> bool:
        """Whether the response came too late, or has not come and is overdue."""
        return self.hours(self.responded_at or now) > sla


def nearest_rank(values: Sequence[Fraction], share: Fraction) -> float | None:
    """Return the nearest-rank percentile (the ceil(share·n)-th smallest), 2 decimals."""
    if not values:
        return None
    rank = max(1, math.ceil(share * len(values)))
    return two_decimals(sorted(values)[rank - 1])


class HandoffCache:
    """Hand-offs per (projection version, period): the clock-free part of the report."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[Hashable, list[Handoff]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], list[Handoff]]) -> list[Handoff]:
        """Return the hand-offs stored under ``key``, building and storing them if missing."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        built = build()
        with self._lock:
            self._entries[key] = built
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return built


def as_of(found: Sequence[Handoff], now: datetime) -> list[Handoff]:
    """Return the hand-offs as known at ``now``: a first response after ``now`` is none yet."""
    return [
        h
        if h.responded_at is None or h.responded_at <= now
        else Handoff(h.contact_id, h.mql_at, None)
        for h in found
        if h.mql_at <= now
    ]


def _stage_responses(histories: dict[str, list[Step]], period: Period) -> list[Handoff]:
    out = []
    for root, steps in histories.items():
        i = next((k for k, s in enumerate(steps) if s.stage == "mql"), None)
        if i is None:
            continue
        start, end = period.start_at, period.end_at
        if (start is not None and steps[i].at < start) or (end is not None and steps[i].at >= end):
            continue
        later = (s.at for s in steps[i + 1 :] if s.stage in RESPONSE_STAGES)
        out.append(Handoff(root, steps[i].at, next(later, None)))
    return out


def _touch_times(session: Session, roots: set[str]) -> dict[str, list[datetime]]:
    """Return the sales-response touches of every contact under ``roots``."""
    members: dict[str, str] = dict(
        session.execute(
            select(ContactRow.contact_id, ContactRow.root_contact_id).where(
                among(session, ContactRow.root_contact_id, roots)
            )
        ).all()
    )
    members.update({root: root for root in roots if root not in members})
    rows = session.execute(
        select(TouchRow.contact_id, TouchRow.occurred_at)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == TouchRow.campaign_id)
        .where(
            among(session, TouchRow.contact_id, members),
            or_(
                CampaignRow.is_sales_sourced.is_(True),
                TouchRow.touch_type.in_(SALES_TOUCH_TYPES),
            ),
        )
    )
    out: dict[str, list[datetime]] = {}
    for contact_id, at in rows:
        out.setdefault(members[str(contact_id)], []).append(at)
    return out


def handoffs(session: Session, *, period: Period) -> list[Handoff]:
    """Return the MQLs in range with their first sales response (at any time)."""
    found = _stage_responses(contact_steps(session, period, ("mql",)), period)
    touches = _touch_times(session, {h.contact_id for h in found})
    out = []
    for h in found:
        candidates = [t for t in touches.get(h.contact_id, []) if t >= h.mql_at]
        if h.responded_at is not None:
            candidates.append(h.responded_at)
        out.append(Handoff(h.contact_id, h.mql_at, min(candidates, default=None)))
    return sorted(out, key=lambda h: (h.mql_at, h.contact_id))


def _summary(week: str, group: Sequence[Handoff], *, now: datetime, sla: Fraction) -> SlaPeriodOut:
    hours = [h.hours(h.responded_at) for h in group if h.responded_at is not None]
    return SlaPeriodOut(
        week=week,
        mqls=len(group),
        responded=len(hours),
        median_hours=median(hours),
        p90_hours=nearest_rank(hours, Fraction(9, 10)),
        breached=sum(h.breached(now=now, sla=sla) for h in group),
    )


def sla_report(
    found: Sequence[Handoff], *, period: Period, now: datetime, sla_hours: float
) -> SlaOut:
    """Build the hand-off SLA report over ``period`` as of ``now`` from its hand-offs."""
    sla = Fraction(str(sla_hours))
    found = as_of(found, now)
    weeks: dict[str, list[Handoff]] = {}
    for h in found:
        weeks.setdefault(h.week, []).append(h)
    start, end = period.echo()
    return SlaOut(
        from_=start,
        to=end,
        as_of=rfc3339(now) or "",
        sla_hours=sla_hours,
        weeks=[_summary(w, g, now=now, sla=sla) for w, g in sorted(weeks.items())],
        overall=_summary("overall", found, now=now, sla=sla),
        breaches=[
            SlaBreachOut(
                contact_id=h.contact_id,
                week=h.week,
                mql_at=rfc3339(h.mql_at) or "",
                responded_at=rfc3339(h.responded_at),
                hours_to_response=(
                    None if h.responded_at is None else two_decimals(h.hours(h.responded_at))
                ),
            )
            for h in found
            if h.breached(now=now, sla=sla)
        ],
    )
