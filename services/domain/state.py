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

from services.core.events import (
    CampaignUpserted,
    ContactMerged,
    ContactUpserted,
    DealClosedLost,
    DealClosedWon,
    DealCreated,
    DealEvent,
    DealReopened,
    sort_key,
)
from services.core.money import exponent, to_minor

STATUS_OPEN, STATUS_WON, STATUS_LOST = "open", "won", "lost"


def _ordered(events: Iterable[DealEvent]) -> list[DealEvent]:
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=sort_key)


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


def fold_deal(deal_id: str, events: Iterable[DealEvent]) -> DealState:
    """Derive a deal's state from its events (any order, duplicates allowed).

    ``created_at`` is the earliest ``deal.created``; the status is that of the latest status
    event; every other field is the latest value carried by any event.
    """
    values: dict[str, object] = {}
    created_at: datetime | None = None
    status, status_at = STATUS_OPEN, None
    for event in _ordered(events):
        if isinstance(event, DealCreated) and created_at is None:
            created_at = event.occurred_at
        for name in ("account_id", "stage", "contact_ids"):
            if event.carried(name) and getattr(event, name, None) is not None:
                values[name] = getattr(event, name)
        amount, currency = getattr(event, "amount", None), getattr(event, "currency", None)
        if amount is not None and currency is not None:
            values["amount_minor"], values["currency"] = to_minor(amount, currency), currency
        if isinstance(event, DealClosedWon):
            status, status_at = STATUS_WON, event.occurred_at
        elif isinstance(event, DealClosedLost):
            status, status_at = STATUS_LOST, event.occurred_at
        elif isinstance(event, DealReopened):
            status, status_at = STATUS_OPEN, None
    contact_ids = values.get("contact_ids") or []
    return DealState(
        deal_id=deal_id,
        account_id=values.get("account_id"),  # type: ignore[arg-type]
        status=status,
        stage=values.get("stage"),  # type: ignore[arg-type]
        amount_minor=values.get("amount_minor"),  # type: ignore[arg-type]
        currency=values.get("currency"),  # type: ignore[arg-type]
        created_at=created_at,
        closed_at=status_at if status == STATUS_WON else None,
        lost_at=status_at if status == STATUS_LOST else None,
        contact_ids=tuple(dict.fromkeys(contact_ids)),  # type: ignore[call-overload]
    )


@dataclass(frozen=True)
class ContactState:
    contact_id: str
    account_id: str | None = None
    lifecycle_stage: str | None = None


def fold_contact(contact_id: str, events: Iterable[ContactUpserted]) -> ContactState:
    """Derive a contact's account and lifecycle stage from its ``contact.upserted`` events."""
    account_id: str | None = None
    stage: str | None = None
    for event in sorted({e.event_id: e for e in events}.values(), key=sort_key):
        if event.carried("account_id"):
            account_id = event.account_id
        if event.carried("lifecycle_stage") and event.lifecycle_stage is not None:
            stage = event.lifecycle_stage
    return ContactState(contact_id, account_id, stage)


def fold_campaign(events: Iterable[CampaignUpserted]) -> CampaignUpserted | None:
    """Return the campaign's latest definition (name and channel are always carried)."""
    ordered = sorted({e.event_id: e for e in events}.values(), key=sort_key)
    if not ordered:
        return None
    latest = ordered[-1]
    sales = next(
        (e.is_sales_sourced for e in reversed(ordered) if e.carried("is_sales_sourced")), False
    )
    return latest.model_copy(update={"is_sales_sourced": sales})


def resolve_merges(merges: Iterable[ContactMerged]) -> dict[str, str]:
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

    for merge in sorted({m.event_id: m for m in merges}.values(), key=sort_key):
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
