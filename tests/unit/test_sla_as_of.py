"""The SLA report's clock: the stored hand-offs are read as of each request's time.

Also how long an answer holds (until the next MQL, response or deadline) and the windows
the API reuses bodies in.

The hand-offs (MQL moment, first response at any time) are written straight into an
in-memory SQLite ``handoffs`` table; the report reads them as of a given ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.api.params import Period
from services.api.sla import BreachPage, Clock, ranks, sla_report, valid_until
from services.api.sla_windows import SlaWindows, Window
from services.core.db.schema import Base, HandoffRow

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday: ISO week 2026-W10
HOUR = 3_600_000_000


def handoff(contact: str, mql_at: datetime, hours: float | None, week: str) -> HandoffRow:
    responded = None if hours is None else mql_at + timedelta(hours=hours)
    micros = None if hours is None else int(hours * HOUR)
    return HandoffRow(
        root_contact_id=contact,
        mql_at=mql_at,
        week=week,
        responded_at=responded,
        response_micros=micros,
    )


@pytest.fixture()
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[HandoffRow.__table__])  # type: ignore[list-item]
    with Session(engine) as s:
        s.add_all(
            [
                handoff("a", T0, 30, "2026-W10"),  # answered late, at 30 h
                handoff("b", T0, 2, "2026-W10"),  # answered in time
                handoff("c", T0 + timedelta(days=9), None, "2026-W11"),  # after both clocks
            ]
        )
        s.flush()
        yield s
    engine.dispose()


def test_a_first_response_after_now_is_none_yet_and_breaches_once_overdue(
    session: Session,
) -> None:
    period = Period(None, None)
    early = sla_report(session, period=period, now=T0 + timedelta(hours=10), sla_hours=24)
    # At 10 h: a's response (30 h) is none yet, b's (2 h) counts; c is no MQL yet.
    assert (early.overall.mqls, early.overall.responded, early.overall.breached) == (2, 1, 0)
    assert [w.week for w in early.weeks] == ["2026-W10"]
    # At 26 h, a has had no response for more than 24 h: breached while still unanswered.
    overdue = sla_report(session, period=period, now=T0 + timedelta(hours=26), sla_hours=24)
    assert (overdue.overall.responded, overdue.overall.breached) == (1, 1)
    assert [b.contact_id for b in overdue.breaches] == ["a"]
    assert overdue.breaches[0].responded_at is None
    assert overdue.breaches[0].hours_to_response is None
    late = sla_report(session, period=period, now=T0 + timedelta(hours=40), sla_hours=24)
    assert (late.overall.responded, late.overall.breached) == (2, 1)
    assert late.overall.median_hours == 16.0  # (2 + 30) / 2
    assert late.breaches[0].responded_at == "2026-03-03T15:00:00Z"
    assert late.breaches[0].hours_to_response == 30.0


def test_the_sla_line_is_exact_to_the_microsecond(session: Session) -> None:
    # a answered after exactly 30 h: an SLA of 30 h is met, one a microsecond shorter is not.
    period = Period(None, None)
    now = T0 + timedelta(hours=40)
    assert sla_report(session, period=period, now=now, sla_hours=30).overall.breached == 0
    shorter = 30 - 1 / HOUR  # 29.99999999972 h, rounded down to whole microseconds
    assert Clock.of(now, shorter).sla == 30 * HOUR - 1
    assert sla_report(session, period=period, now=now, sla_hours=shorter).overall.breached == 1
    # Unanswered c (MQL at 9 d) breaches only once more than the SLA has passed.
    c_due = T0 + timedelta(days=9, hours=24)
    at_due = sla_report(session, period=period, now=c_due, sla_hours=24)
    assert [b.contact_id for b in at_due.breaches] == ["a"]
    after = sla_report(session, period=period, now=c_due + timedelta(microseconds=1), sla_hours=24)
    assert [b.contact_id for b in after.breaches] == ["a", "c"]


def test_breaches_are_paged_with_their_total(session: Session) -> None:
    now = T0 + timedelta(days=20)
    first = sla_report(
        session, period=Period(None, None), now=now, sla_hours=1, page=BreachPage(limit=2)
    )
    # Over 1 h: a (30 h), b (2 h), c (none): by MQL moment, then contact id.
    assert [b.contact_id for b in first.breaches] == ["a", "b"]
    assert first.breaches_total == 3 == first.overall.breached
    rest = sla_report(
        session, period=Period(None, None), now=now, sla_hours=1, page=BreachPage(2, 2)
    )
    assert [b.contact_id for b in rest.breaches] == ["c"] and rest.breaches_total == 3


def test_ranks_of_the_median_and_the_nearest_rank_p90() -> None:
    # 0-based: lower middle, upper middle, ceil(0.9 n)-th smallest.
    assert ranks(1) == (0, 0, 0)
    assert ranks(4) == (1, 2, 3)  # ceil(3.6) = 4th
    assert ranks(5) == (2, 2, 4)  # ceil(4.5) = 5th
    assert ranks(10) == (4, 5, 8)  # ceil(9) = 9th exactly
    assert ranks(70) == (34, 35, 62)  # 63rd: 0.9 * 70 is 63.00000000000001 in floating point


def test_an_answer_holds_until_the_next_mql_response_or_deadline(session: Session) -> None:
    period, sla = Period(None, None), 24

    def report(now: datetime) -> dict[str, object]:
        body = sla_report(session, period=period, now=now, sla_hours=sla)
        return body.model_dump(exclude={"as_of"})

    # At 10 h: next come a's and b's deadline (24 h + 1 µs), a's response (30 h), c (9 d).
    at_10h = T0 + timedelta(hours=10)
    until = valid_until(session, period=period, now=at_10h, sla_hours=sla)
    assert until == T0 + timedelta(hours=24, microseconds=1)
    assert report(until - timedelta(microseconds=1)) == report(at_10h) != report(until)
    # At 40 h: only c is ahead, as an MQL at 9 d.
    at_40h = T0 + timedelta(hours=40)
    assert valid_until(session, period=period, now=at_40h, sla_hours=sla) == T0 + timedelta(days=9)
    # Once c's deadline has passed, nothing ahead changes the answer; nor for a past range.
    assert valid_until(session, period=period, now=T0 + timedelta(days=20), sla_hours=sla) is None
    march_2 = Period(date(2026, 3, 2), date(2026, 3, 3))
    assert valid_until(session, period=march_2, now=at_40h, sla_hours=sla) is None


def test_windows_name_the_body_that_answers_a_moment() -> None:
    windows = SlaWindows(max_entries=2)
    assert windows.epoch("q", T0, otherwise="fresh") == "fresh"
    windows.record("q", Window("e1", T0, T0 + timedelta(hours=1)))
    assert windows.epoch("q", T0 + timedelta(minutes=59), otherwise="fresh") == "e1"
    assert windows.epoch("q", T0 + timedelta(hours=1), otherwise="fresh") == "fresh"
    assert windows.epoch("q", T0 - timedelta(seconds=1), otherwise="fresh") == "fresh"
    windows.record("r", Window("e2", T0, None))  # nothing ahead: holds until the data change
    assert windows.epoch("r", T0 + timedelta(days=400), otherwise="fresh") == "e2"
    windows.record("s", Window("e3", T0, None))  # the least recent query ("q") is forgotten
    assert windows.epoch("q", T0, otherwise="fresh") == "fresh"
    assert windows.epoch("r", T0, otherwise="fresh") == "e2"
