"""Backtesting a lead definition (contract §7): when an account first met a rule, and tallies.

Pure: the caller loads each account's history (its touches and attribute values, with their
times) and the fits that stand for "what was known" at a deal's creation; nothing here reads
a clock or a database.

An account's state at moment t:
- its journey so far: its touches in ``[t - lookback, t]``, in (``occurred_at``, ``event_id``)
  order (contract §2's journey of an open deal, ending at t);
- its attributes as of t: per owner (the account itself, or one of its contacts by root
  contact) and key, the value of the latest (``occurred_at``, ``event_id``) change at or
  before t; a value that is empty or only whitespace is no value (as the live grade reads it).

When the account qualified for a deal created at C (``qualified_at``): the earliest candidate
moment t in ``[C - lookback, C)`` at which ``services.domain.leads.meets`` holds for its
state, with the score of its journey under the Markov fit and the grade of its attributes
under the grade fit given (no fit: no score / no grade, so a condition on it fails).
- The candidate moments are the distinct times of the account's touches and attribute
  changes in that window; between two of them the state changes only by touches leaving the
  journey's window, which the next moment sees.
- The window is the deal's own (contract §2: the touches that may belong to its journey): an
  account that met the rule only during an earlier engagement, long before the deal, did not
  qualify for it, and days from qualifying to won measure this deal's run-up, not the age of
  the account.
- A moment whose journey is empty is not evaluated: the live worker only qualifies accounts
  touched in the window (the leads), so an account is never a lead by its attributes alone.
- A moment at or after C never counts.

Tally (``tally``): over the decided deals, how many were won, how many had an account that
qualified before their creation (caught), how many of those were won, the distinct accounts
caught, won revenue and caught won revenue (reporting minor units; a won deal with no
converted amount adds none), the won deals not caught (by ``closed_at``, then ``deal_id``), and
per caught won deal the exact days from ``qualified_at`` to ``closed_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from .grade import GradeFit, account_features, feature_pairs, grade
from .journey import Touch, journey_channels, order_touches
from .leads import LeadRule, meets, present_keys
from .markov import MarkovFit, conversion_probability

_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Change:
    """One attribute value an event carried: the account's own (``contact`` None) or a contact's.

    ``contact`` is the contact's root (after merges): merged contacts are one person.
    """

    occurred_at: datetime
    event_id: str
    contact: str | None
    key: str
    value: str


@dataclass(frozen=True)
class Attributes:
    """An account's own attributes and each of its contacts' (key -> non-empty value)."""

    own: Mapping[str, str] = field(default_factory=dict)
    contacts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def features(self) -> dict[str, frozenset[str]]:
        """Return the grade's features (``services.domain.grade.account_features``)."""
        return account_features(self.own, self.contacts.values())

    def keys(self) -> frozenset[str]:
        """Return the owner-qualified present keys (``services.domain.leads.present_keys``)."""
        return present_keys(self.own, self.contacts.values())


def _attributes(latest: Mapping[tuple[str | None, str], str]) -> Attributes:
    own: dict[str, str] = {}
    contacts: dict[str, dict[str, str]] = {}
    for (contact, key), value in sorted(
        latest.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or "", kv[0][1])
    ):
        if not value.strip():
            continue
        if contact is None:
            own[key] = value
        else:
            contacts.setdefault(contact, {})[key] = value
    return Attributes(own, contacts)


def attributes_at(changes: Iterable[Change], moment: datetime, *, inclusive: bool) -> Attributes:
    """Return the attributes as of ``moment`` (changes at it count only when ``inclusive``)."""
    latest: dict[tuple[str | None, str], tuple[datetime, str, str]] = {}
    for c in changes:
        if c.occurred_at > moment or (c.occurred_at == moment and not inclusive):
            continue
        held = latest.get((c.contact, c.key))
        if held is None or held[:2] < (c.occurred_at, c.event_id):
            latest[(c.contact, c.key)] = (c.occurred_at, c.event_id, c.value)
    return _attributes({slot: value for slot, (_, _, value) in latest.items()})


@dataclass(frozen=True)
class AccountHistory:
    """An account's touches in journey order and its attribute changes in stamp order."""

    touches: tuple[Touch, ...]
    changes: tuple[Change, ...]


def account_history(touches: Iterable[Touch], changes: Iterable[Change]) -> AccountHistory:
    """Order an account's touches (one per event id) and attribute changes."""
    return AccountHistory(
        order_touches(touches), tuple(sorted(changes, key=lambda c: (c.occurred_at, c.event_id)))
    )


@dataclass(frozen=True)
class AccountState:
    """An account at one moment: its journey's channels and its attributes."""

    at: datetime
    channels: tuple[str, ...]
    attributes: Attributes


def states_before(
    history: AccountHistory,
    *,
    before: datetime,
    lookback: timedelta,
    since: datetime | None = None,
) -> Iterator[AccountState]:
    """Yield the account's state at each candidate moment in ``[since, before)``.

    Moments whose journey (touches in ``[t - lookback, t]``) is empty are left out.
    """
    touches, changes = history.touches, history.changes
    times = [t.occurred_at for t in touches] + [c.occurred_at for c in changes]
    moments = sorted({m for m in times if m < before and (since is None or m >= since)})
    latest: dict[tuple[str | None, str], str] = {}
    applied = low = high = 0
    for moment in moments:
        while applied < len(changes) and changes[applied].occurred_at <= moment:
            change = changes[applied]
            latest[(change.contact, change.key)] = change.value  # stamp order: later wins
            applied += 1
        while high < len(touches) and touches[high].occurred_at <= moment:
            high += 1
        while low < high and touches[low].occurred_at < moment - lookback:
            low += 1
        if low < high:
            yield AccountState(moment, journey_channels(touches[low:high]), _attributes(latest))


class Fits:
    """The fits that stand for what was known: scores and letters, memoised."""

    def __init__(self, markov: MarkovFit | None, grade_fit: GradeFit | None) -> None:
        self.markov, self.grade = markov, grade_fit
        self._scores: dict[tuple[str, ...], float] = {}
        self._letters: dict[frozenset[tuple[str, str]], str] = {}

    def score(self, channels: Sequence[str]) -> float | None:
        """Return the journey's conversion probability, or None without a Markov fit."""
        if self.markov is None:
            return None
        key = tuple(channels)
        if key not in self._scores:
            self._scores[key] = conversion_probability(self.markov, key)
        return self._scores[key]

    def letter(self, attributes: Attributes) -> str | None:
        """Return the attributes' grade letter, or None without a grade fit."""
        if self.grade is None:
            return None
        features = attributes.features()
        key = feature_pairs(features)
        if key not in self._letters:
            self._letters[key] = grade(self.grade, features).letter
        return self._letters[key]

    def check(self, rule: LeadRule, state: AccountState) -> tuple[bool, list[str]]:
        """Return whether the state meets ``rule`` and, if not, why not."""
        return meets(
            rule,
            score=self.score(state.channels),
            grade=self.letter(state.attributes),
            attribute_keys=state.attributes.keys(),
        )


def qualified_at(
    rule: LeadRule,
    fits: Fits,
    history: AccountHistory,
    *,
    created_at: datetime,
    lookback: timedelta,
) -> datetime | None:
    """Return the first moment in ``[created_at - lookback, created_at)`` meeting ``rule``."""
    since = created_at - lookback
    for state in states_before(history, before=created_at, lookback=lookback, since=since):
        if fits.check(rule, state)[0]:
            return state.at
    return None


def reasons_before(
    rule: LeadRule,
    fits: Fits,
    history: AccountHistory,
    *,
    created_at: datetime,
    lookback: timedelta,
) -> list[str]:
    """Return why the account did not meet ``rule`` just before ``created_at``."""
    journey = [t for t in history.touches if created_at - lookback <= t.occurred_at < created_at]
    state = AccountState(
        created_at,
        journey_channels(journey),
        attributes_at(history.changes, created_at, inclusive=False),
    )
    reasons = [] if journey else [f"no touch in the {lookback.days} days before creation"]
    return reasons + fits.check(rule, state)[1]


@dataclass(frozen=True)
class DealOutcome:
    """A decided deal and, under one definition, when its account qualified (None: never)."""

    deal_id: str
    account_id: str
    won: bool
    revenue_minor: int | None  # won and converted: reporting minor units
    created_at: datetime
    closed_at: datetime | None  # won: when
    qualified_at: datetime | None


@dataclass(frozen=True)
class Tally:
    """What a definition would have caught among the decided deals (see the module doc)."""

    decided: int
    won: int
    qualified: int
    qualified_won: int
    qualified_accounts: int
    won_revenue: int
    caught_revenue: int
    missed: tuple[DealOutcome, ...]
    days_to_won: tuple[Fraction, ...]


def days_between(start: datetime, end: datetime) -> Fraction:
    """Return the exact (fractional) days from ``start`` to ``end``."""
    return Fraction((end - start) // timedelta(microseconds=1), _DAY_US)


def tally(outcomes: Iterable[DealOutcome]) -> Tally:
    """Count the decided deals, the caught ones, revenue, the missed won deals, days to won."""
    deals = list(outcomes)
    won = [d for d in deals if d.won]
    caught = [d for d in deals if d.qualified_at is not None]
    caught_won = [d for d in won if d.qualified_at is not None]
    missed = sorted(
        (d for d in won if d.qualified_at is None),
        key=lambda d: (d.closed_at or d.created_at, d.deal_id),
    )
    return Tally(
        decided=len(deals),
        won=len(won),
        qualified=len(caught),
        qualified_won=len(caught_won),
        qualified_accounts=len({d.account_id for d in caught}),
        won_revenue=sum(d.revenue_minor or 0 for d in won),
        caught_revenue=sum(d.revenue_minor or 0 for d in caught_won),
        missed=tuple(missed),
        days_to_won=tuple(
            days_between(d.qualified_at, d.closed_at)
            for d in caught_won
            if d.qualified_at is not None and d.closed_at is not None
        ),
    )
