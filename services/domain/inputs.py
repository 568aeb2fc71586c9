"""What the domain reads from events: the fields each fold needs, and nothing of their encoding.

The domain never imports the canonical event classes (``services.core.events``: pydantic,
orjson). Its folds declare the fields they read as protocols, which the canonical events
satisfy as they are (campaigns, contacts, merges, touches, rates), or take plain values built
by a thin adapter (``services.attribution.inputs``) where the domain needs another form: a
deal event's amount as integer minor units (``DealChange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

DEAL_CREATED = "deal.created"
DEAL_UPDATED = "deal.updated"
DEAL_CLOSED_WON = "deal.closed_won"
DEAL_CLOSED_LOST = "deal.closed_lost"
DEAL_REOPENED = "deal.reopened"


class Ordered(Protocol):
    """Anything with an event's identity and time: state is derived in this order."""

    @property
    def event_id(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...


def order_key(event: Ordered) -> tuple[datetime, str]:
    """Return the order in which state is derived: (occurred_at, event_id)."""
    return (event.occurred_at, event.event_id)


class CampaignFacts(Ordered, Protocol):
    """A ``campaign.upserted``; ``carried`` tells an absent optional field from its default."""

    @property
    def campaign_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> str: ...

    @property
    def is_sales_sourced(self) -> bool: ...

    def carried(self, name: str) -> bool: ...


class ContactFacts(Ordered, Protocol):
    """A ``contact.upserted``; ``carried`` tells an absent field from an explicit null."""

    @property
    def contact_id(self) -> str: ...

    @property
    def account_id(self) -> str | None: ...

    @property
    def lifecycle_stage(self) -> str | None: ...

    def carried(self, name: str) -> bool: ...


class MergeFacts(Ordered, Protocol):
    """A ``contact.merged``: ``merged_contact_id`` is absorbed into ``contact_id``."""

    @property
    def contact_id(self) -> str: ...

    @property
    def merged_contact_id(self) -> str: ...


class TouchFacts(Ordered, Protocol):
    """A ``touch`` event."""

    @property
    def campaign_id(self) -> str: ...

    @property
    def contact_id(self) -> str | None: ...

    @property
    def account_id(self) -> str | None: ...

    @property
    def lead_created(self) -> bool: ...


class RateFacts(Ordered, Protocol):
    """An ``fx.rate``: 1 ``base`` = ``rate`` (decimal text) ``quote`` on ``date``."""

    @property
    def date(self) -> date: ...

    @property
    def base(self) -> str: ...

    @property
    def quote(self) -> str: ...

    @property
    def rate(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DealChange:
    """What one deal event says about its deal; None where it carries nothing for a field.

    ``type`` is the event's type (``deal.created`` ... ``deal.reopened``); ``amount_minor``
    and ``currency`` are both set or both None (an amount counts only with its currency).
    """

    event_id: str
    occurred_at: datetime
    type: str
    deal_id: str
    account_id: str | None = None
    stage: str | None = None
    contact_ids: tuple[str, ...] | None = None
    amount_minor: int | None = None
    currency: str | None = None
