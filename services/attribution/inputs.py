"""Canonical events as the pure domain's inputs (the adapter between ``core`` and ``domain``).

The domain reads campaigns, contacts, merges, touches and rates through protocols the
canonical events satisfy as they are; only a deal event is rewritten, into a ``DealChange``
whose amount is already integer minor units (the money rules of ``services.core.money``).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.core.events import (
    CampaignUpserted,
    ContactMerged,
    ContactUpserted,
    DealEvent,
    Event,
    FxRate,
    Touch,
)
from services.core.money import to_minor
from services.domain.history import History
from services.domain.inputs import (
    CampaignFacts,
    ContactFacts,
    DealChange,
    MergeFacts,
    RateFacts,
    TouchFacts,
)


def deal_change(event: DealEvent) -> DealChange:
    """Return what a deal event says about its deal (a field carried as null says nothing)."""
    fields = event.__dict__  # a missing field is slow to ask a pydantic model for
    amount, currency = fields.get("amount"), fields.get("currency")
    amount_minor = None
    if amount is not None and currency is not None:
        amount_minor = to_minor(amount, currency)
    contact_ids = fields.get("contact_ids")
    return DealChange(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        type=event.type,
        deal_id=event.deal_id,
        account_id=fields.get("account_id"),
        stage=fields.get("stage"),
        contact_ids=None if contact_ids is None else tuple(contact_ids),
        amount_minor=amount_minor,
        currency=None if amount_minor is None else currency,
    )


def history_of(events: Iterable[Event]) -> History:
    """Sort canonical events into the domain's ``History`` (other kinds are not needed)."""
    deals: list[DealChange] = []
    campaigns: list[CampaignFacts] = []
    contacts: list[ContactFacts] = []
    merges: list[MergeFacts] = []
    touches: list[TouchFacts] = []
    rates: list[RateFacts] = []
    for event in events:
        if isinstance(event, DealEvent):
            deals.append(deal_change(event))
        elif isinstance(event, CampaignUpserted):
            campaigns.append(event)
        elif isinstance(event, ContactUpserted):
            contacts.append(event)
        elif isinstance(event, ContactMerged):
            merges.append(event)
        elif isinstance(event, Touch):
            touches.append(event)
        elif isinstance(event, FxRate):
            rates.append(event)
    return History(deals, campaigns, contacts, merges, touches, rates)
