"""Attribution of a whole event history at once: the pure specification of the worker's result.

``attribute_history`` derives, from a history of events in any order and with any duplicates,
every deal's state, conversion, journey and credits under the given models. The worker reaches
the same result incrementally, batch by batch, through the database; both apply one rule to
each deal once its state and journey candidates are known (``outcome.deal_outcome``). The
history holds the domain's inputs (``inputs``): canonical events are turned into it by
``services.attribution.inputs.history_of``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from .inputs import (
    CampaignFacts,
    ContactFacts,
    DealChange,
    MergeFacts,
    RateFacts,
    TouchFacts,
    order_key,
)
from .journey import Touch as JourneyTouch
from .models import AttributionModel
from .outcome import DealOutcome, deal_outcome
from .state import (
    DealState,
    Rate,
    fold_campaign,
    fold_contact,
    fold_deal,
    resolve_merges,
)


@dataclass(frozen=True)
class History:
    """Every event of a history, by kind (duplicates allowed)."""

    deals: Sequence[DealChange] = ()
    campaigns: Sequence[CampaignFacts] = ()
    contacts: Sequence[ContactFacts] = ()
    merges: Sequence[MergeFacts] = ()
    touches: Sequence[TouchFacts] = ()
    rates: Sequence[RateFacts] = ()


def _latest_rates(events: Sequence[RateFacts]) -> list[Rate]:
    latest: dict[tuple[object, str, str], RateFacts] = {}
    for event in sorted(events, key=order_key):
        latest[(event.date, event.base, event.quote)] = event
    return [Rate(e.date, e.base, e.quote, Decimal(e.rate)) for e in latest.values()]


def attribute_history(
    history: History,
    *,
    models: Sequence[AttributionModel],
    reporting_currency: str,
    lookback: timedelta,
) -> dict[str, DealOutcome]:
    """Derive every deal's outcome from the history (order and duplicates do not matter)."""
    deal_changes: dict[str, list[DealChange]] = defaultdict(list)
    for change in history.deals:
        deal_changes[change.deal_id].append(change)
    campaign_events: dict[str, list[CampaignFacts]] = defaultdict(list)
    for campaign in history.campaigns:
        campaign_events[campaign.campaign_id].append(campaign)
    contact_events: dict[str, list[ContactFacts]] = defaultdict(list)
    for contact in history.contacts:
        contact_events[contact.contact_id].append(contact)
    channels = {
        cid: c.channel
        for cid, evs in campaign_events.items()
        if (c := fold_campaign(evs)) is not None
    }
    accounts = {cid: fold_contact(cid, evs).account_id for cid, evs in contact_events.items()}
    roots = resolve_merges(history.merges)

    def root(contact: str) -> str:
        return roots.get(contact, contact)

    rates = _latest_rates(list({r.event_id: r for r in history.rates}.values()))
    touches = list({t.event_id: t for t in history.touches}.values())
    outcomes: dict[str, DealOutcome] = {}
    for deal_id, changes in deal_changes.items():
        deal = fold_deal(deal_id, changes)
        outcomes[deal_id] = _outcome(
            deal,
            touches,
            channels=channels,
            accounts=accounts,
            root=root,
            rates=rates,
            models=models,
            reporting_currency=reporting_currency,
            lookback=lookback,
        )
    return outcomes


def _outcome(
    deal: DealState,
    touches: Sequence[TouchFacts],
    *,
    channels: dict[str, str],
    accounts: dict[str, str | None],
    root: Callable[[str], str],
    rates: Sequence[Rate],
    models: Sequence[AttributionModel],
    reporting_currency: str,
    lookback: timedelta,
) -> DealOutcome:
    """The deal's outcome over the touches that belong to it (contract §2)."""
    deal_roots = set(deal.contact_ids) | {root(c) for c in deal.contact_ids}

    def belongs(touch: TouchFacts) -> bool:
        if deal.account_id is not None and touch.account_id == deal.account_id:
            return True
        if touch.contact_id is None:
            return False
        contact_root = root(touch.contact_id)
        if deal.account_id is not None and accounts.get(contact_root) == deal.account_id:
            return True
        return contact_root in deal_roots

    candidates = [
        JourneyTouch(
            event_id=t.event_id,
            occurred_at=t.occurred_at,
            campaign_id=t.campaign_id,
            channel=channels.get(t.campaign_id, ""),
            lead_created=t.lead_created,
        )
        for t in touches
        if belongs(t)
    ]
    return deal_outcome(
        deal,
        candidates,
        rates=rates,
        models=models,
        reporting_currency=reporting_currency,
        lookback=lookback,
    )
