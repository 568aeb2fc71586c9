"""The backtest's pure part: attributes as of a moment, the qualification moment, tallies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from services.domain import Touch
from services.domain.backtest import (
    Attributes,
    Change,
    DealOutcome,
    Fits,
    account_history,
    attributes_at,
    days_between,
    qualified_at,
    reasons_before,
    states_before,
    tally,
)
from services.domain.grade import GradeSample, fit_grade
from services.domain.leads import make_rule
from services.domain.markov import fit_markov
from services.domain.paths import Path

LOOKBACK = timedelta(days=10)


def day(d: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d - 1, hours=hour)


def touch(eid: str, d: int, channel: str = "webinar", hour: int = 0) -> Touch:
    return Touch(eid, day(d, hour), f"c-{channel}", channel)


def change(d: int, key: str, value: str, *, contact: str | None = None, eid: str = "") -> Change:
    return Change(day(d), eid or f"e{d}-{key}-{value}", contact, key, value)


def test_attributes_latest_stamp_wins_blank_clears_and_contacts_are_kept_apart() -> None:
    changes = [
        change(5, "industry", "retail", eid="b"),
        change(5, "industry", "software", eid="a"),  # same time, smaller id: loses to "b"
        change(3, "title", "CFO", contact="p1"),
        change(6, "title", "  ", contact="p1"),  # cleared
        change(4, "title", "VP", contact="p2"),
        change(7, "country", "DE"),
    ]
    assert attributes_at(changes, day(5), inclusive=True) == Attributes(
        {"industry": "retail"}, {"p1": {"title": "CFO"}, "p2": {"title": "VP"}}
    )
    assert attributes_at(changes, day(5), inclusive=False) == Attributes(
        {}, {"p1": {"title": "CFO"}, "p2": {"title": "VP"}}
    )
    later = attributes_at(changes, day(9), inclusive=True)
    assert later == Attributes({"industry": "retail", "country": "DE"}, {"p2": {"title": "VP"}})
    assert later.keys() == {"account.industry", "account.country", "contact.title"}


def test_states_skip_moments_without_a_touch_in_the_window_and_stop_before_creation() -> None:
    history = account_history(
        [touch("t2", 2), touch("t1", 2, "email"), touch("t20", 20), touch("t30", 30)],
        [change(1, "title", "CFO"), change(15, "industry", "software"), change(25, "x", "y")],
    )
    states = list(states_before(history, before=day(30), lookback=LOOKBACK))
    # day 1: no touch yet; day 15: touches of day 2 left the 10-day window; day 30 is C.
    assert [(s.at, s.channels) for s in states] == [
        (day(2), ("email", "webinar")),  # t1 < t2 by event id at the same instant
        (day(20), ("webinar",)),
        (day(25), ("webinar",)),
    ]
    assert states[1].attributes.own == {"title": "CFO", "industry": "software"}


def test_qualified_at_is_the_first_moment_meeting_the_rule_before_creation() -> None:
    rule = make_rule(required_attributes=["title"])
    no_fits = Fits(None, None)
    history = account_history([touch("t1", 3), touch("t2", 8)], [change(6, "title", "CFO")])
    assert qualified_at(rule, no_fits, history, created_at=day(14), lookback=LOOKBACK) == day(6)
    # The title arrives after creation: not caught, though the account meets the rule later.
    assert qualified_at(rule, no_fits, history, created_at=day(5), lookback=LOOKBACK) is None
    # A moment at creation does not count.
    assert qualified_at(rule, no_fits, history, created_at=day(6), lookback=LOOKBACK) is None
    # Met during an earlier engagement, long before the deal's window [C - 10 days, C): no.
    assert qualified_at(rule, no_fits, history, created_at=day(30), lookback=LOOKBACK) is None
    engaged_again = account_history([*history.touches, touch("t3", 25)], history.changes)
    assert qualified_at(rule, no_fits, engaged_again, created_at=day(30), lookback=LOOKBACK) == day(
        25
    )
    # Conditions on a score or a grade fail without a fit.
    graded = make_rule(min_grade="D")
    assert qualified_at(graded, no_fits, history, created_at=day(20), lookback=LOOKBACK) is None
    assert reasons_before(graded, no_fits, history, created_at=day(15), lookback=LOOKBACK) == [
        "no grade yet (needs D)"
    ]


def test_score_and_grade_come_from_the_fits_given() -> None:
    # Markov: webinar always converts, email never: P(webinar)=1, P(email)=0, start 1/2.
    markov = fit_markov([Path(("webinar",), True, 1), Path(("email",), False, 0)])
    # Grade: software won, retail lost (base 1/2); cut-offs A = software's raw, B = retail's.
    graded = fit_grade(
        [GradeSample({"industry": "software"}, True), GradeSample({"industry": "retail"}, False)]
    )
    fits = Fits(markov, graded)
    history = account_history(
        [touch("t1", 2, "email"), touch("t2", 4, "webinar")],
        [change(1, "industry", "retail"), change(3, "industry", "software")],
    )
    scored = make_rule(min_score=0.75)
    assert qualified_at(scored, fits, history, created_at=day(9), lookback=LOOKBACK) == day(4)
    assert reasons_before(scored, fits, history, created_at=day(3), lookback=LOOKBACK) == [
        "score 0.0 < 0.75"
    ]
    a_grade = make_rule(min_grade="A")
    assert qualified_at(a_grade, fits, history, created_at=day(9), lookback=LOOKBACK) == day(3)
    assert reasons_before(a_grade, fits, history, created_at=day(3), lookback=LOOKBACK) == [
        "grade B below A"
    ]
    nothing = account_history([], [])
    assert reasons_before(a_grade, fits, nothing, created_at=day(3), lookback=LOOKBACK) == [
        "no touch in the 10 days before creation",
        "grade B below A",  # no attributes: raw 0, between the B and A cut-offs
    ]


def test_tally_counts_caught_deals_revenue_missed_and_days_to_won() -> None:
    def deal(
        did: str, account: str, won: bool, revenue: int | None, q: datetime | None
    ) -> DealOutcome:
        closed = day(40) if won else None
        return DealOutcome(did, account, won, revenue, day(20), closed, q)

    outcomes = [
        deal("d1", "a", True, 1000, day(10, 12)),  # 29.5 days to won
        deal("d2", "a", False, None, day(10)),
        deal("d3", "b", True, 3000, None),
        deal("d4", "c", True, None, day(30)),  # unconverted: caught, no revenue; 10 days
        deal("d5", "d", False, None, None),
        DealOutcome("d0", "e", True, 500, day(20), day(39), None),  # missed, closed earlier
    ]
    t = tally(outcomes)
    assert (t.decided, t.won, t.qualified, t.qualified_won, t.qualified_accounts) == (6, 4, 3, 2, 2)
    assert (t.won_revenue, t.caught_revenue) == (4500, 1000)
    assert [m.deal_id for m in t.missed] == ["d0", "d3"]
    assert sorted(t.days_to_won) == [Fraction(10), Fraction(59, 2)]
    assert days_between(day(1), day(1, 6)) == Fraction(1, 4)
