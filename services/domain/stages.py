"""Stage histories: what a root contact's steps say for the funnel and the hand-off SLA.

A history is a set of steps (stage changes) ordered by (``occurred_at``, ``event_id``); a step
into the stage just held is a repeat, not a change, and is dropped (``collapse``). A stage is
*entered* at its first step; a stage never entered counts nowhere. ``summarize`` turns one
root's steps (the steps of every contact merged into it) and its sales-response touch times
into the rows the worker stores: per stage of ``rules.order`` entered, when, the exact
microseconds to the first later step into a stage further along, and the side exit taken right
after; and for the hand-off stage (``mql``) when it was entered and its first response at any
time (the earliest of the first later step into a response stage and the first touch at or
after that moment). Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple


class Step(NamedTuple):
    """One stage change; tuples sort by (occurred_at, event_id), the history's order."""

    at: datetime
    event_id: str
    stage: str


@dataclass(frozen=True)
class StageRules:
    """The stage order, its side exits, the hand-off stage and what answers a hand-off."""

    order: Sequence[str]
    exits: Sequence[str]
    handoff: str
    responses: Sequence[str]


@dataclass(frozen=True)
class Entry:
    """A root's first entry into ``stage`` and what followed it."""

    stage: str
    entered_at: datetime
    next_micros: int | None  # to the first later step into a stage further along
    exit_stage: str | None  # the side exit taken right after entering, if any


@dataclass(frozen=True)
class Handoff:
    """A root's first entry into the hand-off stage and its first response (at any time)."""

    mql_at: datetime
    week: str
    responded_at: datetime | None
    response_micros: int | None


@dataclass(frozen=True)
class Summary:
    entries: tuple[Entry, ...]
    handoff: Handoff | None


def micros(delta: timedelta) -> int:
    """Return a duration in whole microseconds (exact)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_week(at: datetime) -> str:
    """Return the ISO week of a moment (in its own time zone, UTC here), like ``2026-W10``."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def collapse(steps: Iterable[Step]) -> list[Step]:
    """Order steps by (occurred_at, event_id) and drop repeats of the stage just held."""
    out: list[Step] = []
    for step in sorted(steps):
        if not out or out[-1].stage != step.stage:
            out.append(step)
    return out


def _entry(history: Sequence[Step], i: int, rank: dict[str, int], exits: Sequence[str]) -> Entry:
    here = history[i]
    further = (s for s in history[i + 1 :] if rank.get(s.stage, -1) > rank[here.stage])
    nxt = next(further, None)
    after = history[i + 1].stage if i + 1 < len(history) else None
    return Entry(
        stage=here.stage,
        entered_at=here.at,
        next_micros=None if nxt is None else micros(nxt.at - here.at),
        exit_stage=after if after in exits else None,
    )


def _handoff(
    history: Sequence[Step], i: int, responses: Iterable[datetime], rules: StageRules
) -> Handoff:
    at = history[i].at
    later = [s.at for s in history[i + 1 :] if s.stage in rules.responses][:1]
    first = min([*later, *(t for t in responses if t >= at)], default=None)
    return Handoff(
        mql_at=at,
        week=iso_week(at),
        responded_at=first,
        response_micros=None if first is None else micros(first - at),
    )


def summarize(steps: Iterable[Step], responses: Iterable[datetime], rules: StageRules) -> Summary:
    """Summarize one root's steps and sales-response touch times (see the module docstring)."""
    history = collapse(steps)
    rank = {stage: i for i, stage in enumerate(rules.order)}
    first: dict[str, int] = {}
    for index, step in enumerate(history):
        first.setdefault(step.stage, index)
    entries = tuple(
        _entry(history, first[stage], rank, rules.exits) for stage in rules.order if stage in first
    )
    at = first.get(rules.handoff)
    handoff = None if at is None else _handoff(history, at, responses, rules)
    return Summary(entries, handoff)


def first_entries(
    steps: Iterable[Step], order: Sequence[str], exit_stage: str
) -> tuple[Entry, ...]:
    """A deal's first entry into each stage of ``order`` and into ``exit_stage``, in order.

    ``order`` ranks the stages (the deal funnel's: CRM stages, then ``won``); the exit ranks
    nowhere. An entry's ``next_micros`` runs to the first later step into a stage ranked
    higher (none for the exit or for a stage not in ``order``); its ``exit_stage`` is the exit
    when the step right after entering is the exit.
    """
    history = collapse(steps)
    rank = {stage: i for i, stage in enumerate(order)}
    first: dict[str, int] = {}
    for index, step in enumerate(history):
        first.setdefault(step.stage, index)
    out = []
    for stage in (*order, exit_stage):
        i = first.get(stage)
        if i is None:
            continue
        here = rank.get(stage)
        further = (s for s in history[i + 1 :] if here is not None and rank.get(s.stage, -1) > here)
        nxt = next(further, None)
        after = history[i + 1].stage if i + 1 < len(history) else None
        out.append(
            Entry(
                stage=stage,
                entered_at=history[i].at,
                next_micros=None if nxt is None else micros(nxt.at - history[i].at),
                exit_stage=exit_stage if after == exit_stage else None,
            )
        )
    return tuple(out)
