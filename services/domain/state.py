"""State derived from events (contract §1): pure folds in (occurred_at, event_id) order.

Invariant: each fold sorts its input first, so the result depends only on the *set* of
events, never on their arrival order or on duplicates (events are keyed by ``event_id``).
For any field, the latest event that carries it wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .inputs import (
    DEAL_CLOSED_LOST,
    DEAL_CLOSED_WON,
    DEAL_CREATED,
    DEAL_REOPENED,
    CampaignFacts,
    ContactFacts,
    DealChange,
    MergeFacts,
    order_key,
)
from .money import exponent

STATUS_OPEN, STATUS_WON, STATUS_LOST = "open", "won", "lost"


def _ordered(changes: Iterable[DealChange]) -> list[DealChange]:
    unique = {c.event_id: c for c in changes}
    return sorted(unique.values(), key=order_key)


@dataclass(frozen=True)
class DealState:
    """A deal as of all its events; ``closed_at`` is set only while the deal is won."""

    deal_id: str
    account_id: str | None = None
    status: str = STATUS_OPEN
    stage: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    lost_at: datetime | None = None
    contact_ids: tuple[str, ...] = ()

    @property
    def journey_start(self) -> datetime | None:
        """Return C: the creation time, or the close time when no deal.created arrived."""
        return self.created_at or self.closed_at


def fold_deal(deal_id: str, changes: Iterable[DealChange]) -> DealState:
    """Derive a deal's state from its events' changes (any order, duplicates allowed).

    ``created_at`` is the earliest ``deal.created``; the status is that of the latest status
    event; every other field is the latest value carried by any event.
    """
    account_id: str | None = None
    stage: str | None = None
    currency: str | None = None
    amount_minor: int | None = None
    contact_ids: tuple[str, ...] = ()
    created_at: datetime | None = None
    status, status_at = STATUS_OPEN, None
    for change in _ordered(changes):
        if change.type == DEAL_CREATED and created_at is None:
            created_at = change.occurred_at
        if change.account_id is not None:
            account_id = change.account_id
        if change.stage is not None:
            stage = change.stage
        if change.contact_ids is not None:
            contact_ids = change.contact_ids
        if change.amount_minor is not None and change.currency is not None:
            amount_minor, currency = change.amount_minor, change.currency
        if change.type == DEAL_CLOSED_WON:
            status, status_at = STATUS_WON, change.occurred_at
        elif change.type == DEAL_CLOSED_LOST:
            status, status_at = STATUS_LOST, change.occurred_at
        elif change.type == DEAL_REOPENED:
            status, status_at = STATUS_OPEN, None
    return DealState(
        deal_id=deal_id,
        account_id=account_id,
        status=status,
        stage=stage,
        amount_minor=amount_minor,
        currency=currency,
        created_at=created_at,
        closed_at=status_at if status == STATUS_WON else None,
        lost_at=status_at if status == STATUS_LOST else None,
        contact_ids=tuple(dict.fromkeys(contact_ids)),
    )


@dataclass(frozen=True)
class ContactState:
    contact_id: str
    account_id: str | None = None
    lifecycle_stage: str | None = None


def fold_contact(contact_id: str, events: Iterable[ContactFacts]) -> ContactState:
    """Derive a contact's account and lifecycle stage from its ``contact.upserted`` events.

    The account is the latest carried one (even null); the stage the latest non-null one.
    """
    account_id: str | None = None
    stage: str | None = None
    for event in sorted({e.event_id: e for e in events}.values(), key=order_key):
        if event.carried("account_id"):
            account_id = event.account_id
        if event.lifecycle_stage is not None:
            stage = event.lifecycle_stage
    return ContactState(contact_id, account_id, stage)


@dataclass(frozen=True)
class CampaignState:
    campaign_id: str
    name: str
    channel: str
    is_sales_sourced: bool = False


def fold_campaign(events: Iterable[CampaignFacts]) -> CampaignState | None:
    """Return the campaign's latest definition (name and channel are always carried)."""
    ordered = sorted({e.event_id: e for e in events}.values(), key=order_key)
    if not ordered:
        return None
    latest = ordered[-1]
    sales = next(
        (e.is_sales_sourced for e in reversed(ordered) if e.carried("is_sales_sourced")), False
    )
    return CampaignState(latest.campaign_id, latest.name, latest.channel, sales)


def resolve_merges(merges: Iterable[MergeFacts]) -> dict[str, str]:
    """Map every contact involved in a merge to its surviving root contact.

    Merges apply in (occurred_at, event_id) order. A contact is absorbed at most once (a later
    merge of an already absorbed contact is ignored), and a merge that would close a cycle is
    ignored, so the result is always a forest.
    """
    parent: dict[str, str] = {}

    def root(contact: str) -> str:
        while contact in parent:
            contact = parent[contact]
        return contact

    for merge in sorted({m.event_id: m for m in merges}.values(), key=order_key):
        absorbed, survivor = merge.merged_contact_id, merge.contact_id
        if absorbed in parent or root(survivor) == absorbed:
            continue
        parent[absorbed] = survivor
    involved = set(parent) | set(parent.values())
    return {c: root(c) for c in involved}


@dataclass(frozen=True)
class Rate:
    rate_date: date
    base: str
    quote: str
    rate: Decimal


@dataclass(frozen=True)
class Conversion:
    """The outcome of converting an amount: ``amount_minor`` is None when no rate applies."""

    amount_minor: int | None
    rate: Decimal | None = None
    rate_date: date | None = None
    inverse: bool = False


def pick_rate(rates: Iterable[Rate], *, source: str, target: str, on: date) -> Rate | None:
    """Return the latest usable rate on or before ``on``, direct or inverse; direct wins ties."""
    best: Rate | None = None
    best_key: tuple[date, int] | None = None
    for rate in rates:
        if rate.rate_date > on:
            continue
        direct = rate.base == source and rate.quote == target
        inverse = rate.base == target and rate.quote == source
        if not (direct or inverse):
            continue
        key = (rate.rate_date, 1 if direct else 0)
        if best_key is None or key > best_key:
            best, best_key = rate, key
    return best


def convert(
    amount_minor: int, *, source: str, target: str, on: date, rates: Iterable[Rate]
) -> Conversion:
    """Convert once at the rate of ``on`` (contract §5); never at an implied 1.0.

    An inverse pair divides by its rate (1 target = rate source) rather than rounding 1/rate.
    """
    if source == target:
        return Conversion(amount_minor, Decimal(1), on)
    rate = pick_rate(rates, source=source, target=target, on=on)
    if rate is None:
        return Conversion(None)
    inverse = rate.base != source
    major = Decimal(amount_minor).scaleb(-exponent(source))
    major = major / rate.rate if inverse else major * rate.rate
    minor = major.scaleb(exponent(target)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return Conversion(int(minor), rate.rate, rate.rate_date, inverse=inverse)


def spread_days(amount_minor: int, start: date, end: date) -> list[tuple[date, int]]:
    """Spread an amount evenly over the days start..end inclusive; earlier days get remainders."""
    days = (end - start).days + 1
    base, extra = divmod(amount_minor, days)
    return [(start + timedelta(days=i), base + (1 if i < extra else 0)) for i in range(days)]


def convert_won_deal(deal: DealState, *, target: str, rates: Iterable[Rate]) -> Conversion:
    """Convert a won deal's amount once, at the rate of its close date (contract §5).

    ``amount_minor`` is None when the deal is not won, carries no amount, or no rate applies.
    """
    if deal.status != STATUS_WON or deal.amount_minor is None or deal.currency is None:
        return Conversion(None)
    assert deal.closed_at is not None
    return convert(
        deal.amount_minor,
        source=deal.currency,
        target=target,
        on=deal.closed_at.date(),
        rates=rates,
    )
