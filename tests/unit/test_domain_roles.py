"""Journey selection, ordering and role assignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.domain import (
    ROLE_FIRST,
    ROLE_LAST,
    ROLE_LEAD_CREATION,
    ROLE_OPPORTUNITY_CREATION,
    Touch,
    assign_roles,
    order_touches,
    role_labels,
    select_journey,
)

FIRST, LAST = ROLE_FIRST, ROLE_LAST
LEAD, OPP = ROLE_LEAD_CREATION, ROLE_OPPORTUNITY_CREATION
ALL = frozenset({FIRST, LAST, LEAD, OPP})
MIDDLE: frozenset[str] = frozenset()

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def touch(event_id: str, day: float, *, lead: bool = False, campaign: str = "c") -> Touch:
    return Touch(event_id, T0 + day * DAY, campaign, "email", lead)


def roles_of(journey: list[Touch], created_day: float) -> list[frozenset[str]]:
    return assign_roles(journey, created_at=T0 + created_day * DAY)


def test_empty_journey_has_no_roles() -> None:
    assert roles_of([], 0) == []


def test_single_touch_holds_every_role() -> None:
    assert roles_of([touch("a", 5)], created_day=1) == [ALL]
    assert roles_of([touch("a", 5)], created_day=9) == [ALL]


def test_two_touches_before_creation() -> None:
    # Both before creation: opportunity creation is the last touch <= created_at.
    assert roles_of([touch("a", 1), touch("b", 2)], created_day=3) == [
        frozenset({FIRST, LEAD}),
        frozenset({LAST, OPP}),
    ]


def test_two_touches_straddling_creation() -> None:
    assert roles_of([touch("a", 1), touch("b", 5)], created_day=3) == [
        frozenset({FIRST, LEAD, OPP}),
        frozenset({LAST}),
    ]


def test_three_touches_with_a_middle() -> None:
    assert roles_of([touch("a", 1), touch("b", 2), touch("c", 5)], created_day=3) == [
        frozenset({FIRST, LEAD}),
        frozenset({OPP}),
        frozenset({LAST}),
    ]
    assert roles_of([touch("a", 1), touch("b", 4), touch("c", 5)], created_day=3) == [
        frozenset({FIRST, LEAD, OPP}),
        MIDDLE,
        frozenset({LAST}),
    ]


def test_lead_creation_is_the_first_flagged_touch() -> None:
    journey = [touch("a", 1), touch("b", 2, lead=True), touch("c", 3, lead=True), touch("d", 4)]
    assert roles_of(journey, created_day=0) == [
        frozenset({FIRST, OPP}),
        frozenset({LEAD}),
        MIDDLE,
        frozenset({LAST}),
    ]


def test_lead_flag_on_the_last_touch() -> None:
    journey = [touch("a", 1), touch("b", 2), touch("c", 3, lead=True)]
    assert roles_of(journey, created_day=0) == [
        frozenset({FIRST, OPP}),
        MIDDLE,
        frozenset({LAST, LEAD}),
    ]


def test_opportunity_creation_falls_back_to_first_when_all_after_creation() -> None:
    journey = [touch("a", 4), touch("b", 5), touch("c", 6)]
    assert roles_of(journey, created_day=3) == [
        frozenset({FIRST, LEAD, OPP}),
        MIDDLE,
        frozenset({LAST}),
    ]


def test_touch_exactly_at_creation_counts_for_opportunity_creation() -> None:
    journey = [touch("a", 1), touch("b", 3), touch("c", 4)]
    assert roles_of(journey, created_day=3)[1] == frozenset({OPP})


def test_ties_in_time_are_broken_by_event_id() -> None:
    same = [touch("b", 1, campaign="cb"), touch("a", 1, campaign="ca"), touch("c", 2)]
    journey = list(order_touches(same))
    assert [t.event_id for t in journey] == ["a", "b", "c"]
    assert roles_of(journey, created_day=0) == [
        frozenset({FIRST, LEAD, OPP}),
        MIDDLE,
        frozenset({LAST}),
    ]


def test_order_touches_dedupes_by_event_id() -> None:
    ordered = order_touches([touch("x", 3), touch("y", 2), touch("x", 3), touch("x", 1)])
    assert [(t.event_id, t.occurred_at) for t in ordered] == [
        ("x", T0 + 1 * DAY),
        ("y", T0 + 2 * DAY),
    ]


def test_assign_roles_rejects_unordered_or_duplicated_journeys() -> None:
    with pytest.raises(ValueError):
        roles_of([touch("b", 2), touch("a", 1)], created_day=0)
    with pytest.raises(ValueError):
        roles_of([touch("a", 1), touch("a", 1)], created_day=0)


def test_select_journey_window_is_inclusive_and_ordered() -> None:
    created, closed, lookback = T0 + 10 * DAY, T0 + 20 * DAY, timedelta(days=5)
    candidates = [
        touch("late", 20.5),
        touch("close", 20),
        touch("mid", 12),
        touch("start", 5),
        touch("early", 4.9),
    ]
    journey = select_journey(candidates, created_at=created, closed_at=closed, lookback=lookback)
    assert [t.event_id for t in journey] == ["start", "mid", "close"]


def test_select_journey_zero_lookback_and_empty() -> None:
    created, closed = T0 + 10 * DAY, T0 + 20 * DAY
    journey = select_journey(
        [touch("before", 9), touch("at", 10)],
        created_at=created,
        closed_at=closed,
        lookback=timedelta(0),
    )
    assert [t.event_id for t in journey] == ["at"]
    assert select_journey([], created_at=created, closed_at=closed, lookback=DAY) == ()


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError):
        Touch("a", datetime(2024, 1, 1), "c")


@pytest.mark.parametrize(
    ("roles", "labels"),
    [
        (MIDDLE, ["middle"]),
        (ALL, ["first", "lead_creation", "opportunity_creation", "last"]),
        (frozenset({LAST, FIRST}), ["first", "last"]),
        (frozenset({OPP}), ["opportunity_creation"]),
    ],
)
def test_role_labels(roles: frozenset[str], labels: list[str]) -> None:
    assert role_labels(roles) == labels
