"""Journeys: which touches count towards a deal, in what order, holding which roles.

Invariants:
- A journey is a tuple of touches strictly increasing in ``(occurred_at, event_id)``;
  event ids are therefore unique within a journey.
- ``select_journey`` keeps exactly the touches with
  ``created_at - lookback <= occurred_at <= closed_at`` (both bounds inclusive).
- ``assign_roles`` gives every non-empty journey each of the four named roles exactly
  once: ``first`` (first touch), ``last`` (last touch), ``lead_creation`` (first touch
  flagged ``lead_created``, else the first touch) and ``opportunity_creation`` (last
  touch with ``occurred_at <= created_at``, else the first touch). A touch may hold
  several roles; a touch holding none is a middle touch (empty role set).
- The roles depend only on the journey's shape ``(length, lead_creation index,
  opportunity_creation index)``, so they are computed once per shape (``shape_roles``).
- Everything here is a pure function of its arguments; nothing reads a clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice, pairwise
from operator import lt
from typing import TypeAlias

ROLE_FIRST = "first"
ROLE_LAST = "last"
ROLE_LEAD_CREATION = "lead_creation"
ROLE_OPPORTUNITY_CREATION = "opportunity_creation"
ROLE_MIDDLE = "middle"

ROLES: tuple[str, ...] = (
    ROLE_FIRST,
    ROLE_LEAD_CREATION,
    ROLE_OPPORTUNITY_CREATION,
    ROLE_LAST,
)

# The channel of a touch whose campaign has none (no ``campaign.upserted`` yet) in data-driven
# models: the fit's paths and each deal's split read it through ``journey_channels`` alike, so
# such touches earn the credit the fit gives them.
UNKNOWN_CHANNEL = "(unknown)"


@dataclass(frozen=True, slots=True)
class Touch:
    """One marketing touch (a campaign interaction) that may earn deal credit."""

    event_id: str
    occurred_at: datetime
    campaign_id: str
    channel: str = ""
    lead_created: bool = False

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValueError(f"touch {self.event_id!r}: occurred_at must be timezone-aware")


def journey_channels(journey: Iterable[Touch]) -> tuple[str, ...]:
    """Return the channel each touch counts under in data-driven models (contract §4)."""
    return tuple(touch.channel or UNKNOWN_CHANNEL for touch in journey)


def _sort_key(touch: Touch) -> tuple[datetime, str, str, str, bool]:
    # (occurred_at, event_id) is the contract order; the remaining fields only make the
    # choice between conflicting duplicates of one event_id deterministic.
    return (touch.occurred_at, touch.event_id, touch.campaign_id, touch.channel, touch.lead_created)


def order_touches(touches: Iterable[Touch]) -> tuple[Touch, ...]:
    """Sort touches by (occurred_at, event_id) and keep the earliest touch per event_id."""
    seen: set[str] = set()
    ordered: list[Touch] = []
    for touch in sorted(touches, key=_sort_key):
        if touch.event_id not in seen:
            seen.add(touch.event_id)
            ordered.append(touch)
    return tuple(ordered)


def select_journey(
    touches: Iterable[Touch],
    *,
    created_at: datetime,
    closed_at: datetime,
    lookback: timedelta,
) -> tuple[Touch, ...]:
    """Return the ordered journey of touches inside [created_at - lookback, closed_at].

    The window filter runs before de-duplication, so a duplicated event_id counts if any
    of its copies falls inside the window.
    """
    window_start = created_at - lookback
    return order_touches(t for t in touches if window_start <= t.occurred_at <= closed_at)


Shape: TypeAlias = tuple[int, int, int]


def _check_ordered(journey: Sequence[Touch]) -> None:
    for before, after in pairwise(journey):
        if (before.occurred_at, before.event_id) >= (after.occurred_at, after.event_id):
            raise ValueError(
                "journey must be strictly ordered by (occurred_at, event_id) without "
                f"duplicate event ids; {before.event_id!r} precedes {after.event_id!r}"
            )


def journey_shape(journey: Sequence[Touch], *, created_at: datetime) -> Shape:
    """Return ``(length, lead_creation index, opportunity_creation index)`` of a journey.

    The shape is all the roles depend on (first and last are the ends), so role sets and
    positional weights can be computed once per shape. Raises ``ValueError`` unless the
    journey is non-empty and strictly ordered by ``(occurred_at, event_id)``.
    """
    return shape_and_times(journey, created_at=created_at)[0]


def shape_and_times(
    journey: Sequence[Touch], *, created_at: datetime
) -> tuple[Shape, list[datetime]]:
    """Return the journey's shape (see ``journey_shape``) and its touches' times, in order."""
    if not journey:
        raise ValueError("an empty journey has no shape")
    times = [t.occurred_at for t in journey]
    # Strictly increasing times, checked in C, are in order; only ties need the event ids.
    if not all(map(lt, times, islice(times, 1, None))):
        _check_ordered(journey)
    flags = [t.lead_created for t in journey]
    lead = flags.index(True) if True in flags else 0
    return (len(journey), lead, max(bisect_right(times, created_at) - 1, 0)), times


@lru_cache(maxsize=4096)
def shape_roles(shape: Shape) -> tuple[frozenset[str], ...]:
    """Return the named roles each touch of a journey of this shape holds (shared, cached)."""
    length, lead, opportunity = shape
    holders = {ROLE_FIRST: 0, ROLE_LEAD_CREATION: lead, ROLE_OPPORTUNITY_CREATION: opportunity}
    holders[ROLE_LAST] = length - 1
    return tuple(
        frozenset(role for role, index in holders.items() if index == position)
        for position in range(length)
    )


def assign_roles(journey: Sequence[Touch], *, created_at: datetime) -> list[frozenset[str]]:
    """Return the named roles each journey touch holds (an empty set marks a middle touch)."""
    if not journey:
        return []
    return list(shape_roles(journey_shape(journey, created_at=created_at)))
