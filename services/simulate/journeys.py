"""Accounts, contacts, touches and deals of a simulated run.

A deal's timeline: first touch → weeks of nurture → ``deal.created`` → the deal is worked
(meetings, amount and stage updates) → closed (or still open at the end of the window).
Contacts are created by their first touch and only move forward through
lead → mql → sql → opportunity → customer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.simulate.catalog import (
    ACCOUNT_MIX,
    CHANNEL_BY_SLUG,
    DEAL_STAGES,
    FIRST_TOUCH_MIX,
    NURTURE_MIX,
    WORKING_MIX,
)
from services.simulate.world import DAY, HOUR, Fields, Simulation

LIFECYCLE = ("lead", "mql", "sql", "opportunity", "customer")
WON_SHARE = 0.40
LOST_SHARE = 0.30
REOPEN_SHARE = 0.06  # of won deals: closed, reopened, won again
SALES_SOURCED_SHARE = 0.20
LEAD_CREATED_SHARE = 0.85
ACCOUNT_TOUCH_SHARE = 0.15
UNMATCHED_SHARE = 0.15  # new contacts not yet matched to their company
PROSPECTS_PER_DEAL = 0.6  # accounts (or lone contacts) that never reach a deal
MERGE_SHARE = 0.04
MOVE_SHARE = 0.03


@dataclass
class Contact:
    id: str
    stage: int = -1
    introduced_at: int | None = None


@dataclass
class DealRecord:
    """What merges and moves need to know about a simulated deal."""

    account_id: str
    contacts: list[Contact]
    end: int
    closed_at: int | None


def add_prospects(sim: Simulation) -> None:
    """Emit accounts and lone contacts that are touched but never reach a deal."""
    rng = sim.rng
    for _ in range(round(PROSPECTS_PER_DEAL * sim.deals)):
        lone = rng.random() < 0.25
        account = None if lone else sim.new_id("acc")
        if account is not None:
            sim.prospect_accounts.append(account)
        contacts = [Contact(sim.new_id("ct")) for _ in range(1 if lone else rng.randint(1, 3))]
        first = sim.between(0, sim.length - 2 * DAY)
        last = min(sim.length - HOUR, first + sim.between(7 * DAY, 60 * DAY))
        times = [first, *sorted(sim.between(first + 60, last) for _ in range(rng.randint(1, 5)))]
        for i, at in enumerate(times):
            if account is not None and i > 0 and rng.random() < ACCOUNT_TOUCH_SHARE:
                _touch(sim, at, sim.pick(ACCOUNT_MIX), contact=None, account=account)
                continue
            contact = contacts[0] if i == 0 else rng.choice(contacts)
            mix = FIRST_TOUCH_MIX if contact.introduced_at is None else NURTURE_MIX
            _touch(sim, at, sim.pick(mix), contact=contact, account=account)
        for contact in contacts:
            if contact.introduced_at is not None and rng.random() < 0.3:
                mql_at = sim.between(contact.introduced_at + HOUR, last)
                _advance(sim, contact, "mql", mql_at, account)


def add_deals(sim: Simulation) -> None:
    """Emit ``sim.deals`` deals with their journeys: exactly 40% won, 30% lost, the rest open."""
    rng = sim.rng
    won, lost = round(WON_SHARE * sim.deals), round(LOST_SHARE * sim.deals)
    outcomes = ["won"] * won + ["lost"] * lost + ["open"] * (sim.deals - won - lost)
    rng.shuffle(outcomes)
    won_at = [i for i, outcome in enumerate(outcomes) if outcome == "won"]
    reopened = set(rng.sample(won_at, max(1, round(REOPEN_SHARE * won)))) if won_at else set()
    records = [_deal(sim, outcome, reopen=i in reopened) for i, outcome in enumerate(outcomes)]
    if not records:
        return
    for record in rng.sample(records, min(len(records), max(1, round(MERGE_SHARE * sim.deals)))):
        _merge(sim, record)
    decided = [record for record in records if record.closed_at is not None]
    for record in rng.sample(decided, min(len(decided), max(1, round(MOVE_SHARE * sim.deals)))):
        _move(sim, record)


def _deal(sim: Simulation, outcome: str, *, reopen: bool) -> DealRecord:
    rng, length = sim.rng, sim.length
    if outcome == "open":
        created = sim.between(0.35 * length, length - DAY)
        closed_at = None
        end = min(length - HOUR, created + sim.between(14 * DAY, 60 * DAY))
    else:
        closed_at = sim.between(0.3 * length, length - 2 * HOUR)
        created = int(closed_at - min(rng.uniform(14, 90) * DAY, 0.55 * closed_at))
        end = closed_at
    first = int(created - min(rng.uniform(10, 80) * DAY, 0.85 * created))
    account = sim.new_id("acc")
    size = rng.choices((1, 2, 3, 4), weights=(25, 35, 25, 15))[0]
    contacts = [Contact(sim.new_id("ct")) for _ in range(size)]
    _lay_touches(sim, account, contacts, first=first, created=created, end=end)
    contact_ids = _progress_contacts(sim, account, contacts, first=first, created=created)
    status_at = _deal_events(
        sim, account, contact_ids, outcome=outcome, reopen=reopen, created=created, end=end
    )
    if status_at is not None:  # the deal was won at status_at: its buyers become customers
        by_id = {contact.id: contact for contact in contacts}
        for n, contact_id in enumerate(contact_ids):
            _advance(sim, by_id[contact_id], "customer", status_at + 300 + n, account)
    return DealRecord(account, contacts, end, closed_at)


def _lay_touches(
    sim: Simulation, account: str, contacts: list[Contact], *, first: int, created: int, end: int
) -> None:
    """Emit 2-12 touches from ``first`` to ``end``, mostly before the deal is created."""
    rng = sim.rng
    count = min(12, max(2, round(rng.lognormvariate(math.log(5.5), 0.45))))
    later = [
        sim.between(first + 60, created - 60)
        if rng.random() < 0.75
        else sim.between(created + 60, end - 60)
        for _ in range(count - 1)
    ]
    waiting = list(contacts[1:])
    sales_sourced = rng.random() < SALES_SOURCED_SHARE
    first_channel = "outbound_sales" if sales_sourced else sim.pick(FIRST_TOUCH_MIX)
    _touch(sim, first, first_channel, contact=contacts[0], account=account, lead_share=0.9)
    for at in sorted(later):
        mix = NURTURE_MIX if at < created else WORKING_MIX
        if rng.random() < ACCOUNT_TOUCH_SHARE:
            _touch(sim, at, sim.pick(ACCOUNT_MIX), contact=None, account=account)
            continue
        known = [contact for contact in contacts if contact.introduced_at is not None]
        contact = waiting.pop(0) if waiting and rng.random() < 0.45 else rng.choice(known)
        _touch(sim, at, sim.pick(mix), contact=contact, account=account)


def _progress_contacts(
    sim: Simulation, account: str, contacts: list[Contact], *, first: int, created: int
) -> list[str]:
    """Move contacts through the funnel up to the deal; return the deal's contact roles."""
    rng = sim.rng
    primary, others = contacts[0], contacts[1:]
    intro = primary.introduced_at if primary.introduced_at is not None else first
    span = max(created - intro, 4 * 60)
    mql_at = intro + int(span * rng.uniform(0.25, 0.55))
    _advance(sim, primary, "mql", mql_at, account)
    _advance(
        sim, primary, "sql", max(mql_at + 60, intro + int(span * rng.uniform(0.65, 0.95))), account
    )
    roles = [primary]
    for contact in others:
        if contact.introduced_at is None:  # never touched: added by sales to the opportunity
            _advance(
                sim,
                contact,
                "sql",
                sim.between(max(first, created - 3 * DAY), created - 60),
                account,
            )
            roles.append(contact)
            continue
        if contact.introduced_at >= created:  # joined while the deal was worked: no role
            continue
        if rng.random() < 0.5:
            reached = contact.introduced_at + int((created - contact.introduced_at) * 0.6)
            _advance(sim, contact, "mql", reached, account)
        if rng.random() < 0.5:
            roles.append(contact)
    for n, contact in enumerate(roles):
        _advance(sim, contact, "opportunity", created + 120 + n, account)
    return [contact.id for contact in roles]


def _deal_events(
    sim: Simulation,
    account: str,
    contact_ids: list[str],
    *,
    outcome: str,
    reopen: bool,
    created: int,
    end: int,
) -> int | None:
    """Emit the deal's own events; return when it was first won (None if never won)."""
    rng = sim.rng
    deal_id = sim.new_id("deal")
    currency = _deal_currency(sim)
    scale = sim.usd[currency]
    amount = _round_to(
        min(max(rng.lognormvariate(math.log(24_000), 0.8), 3_000), 400_000) / scale, 50
    )
    sim.emit(
        created,
        "deal.created",
        {
            "deal_id": deal_id,
            "account_id": account,
            "amount": sim.exact(amount, currency),
            "currency": currency,
            "contact_ids": contact_ids,
            "stage": "qualification",
        },
    )
    first_close = created + int((end - created) * rng.uniform(0.5, 0.6)) if reopen else end
    updates = rng.randint(0, 2) if outcome == "open" else rng.randint(1, 3)
    for i, at in enumerate(
        sorted(sim.between(created + HOUR, first_close - HOUR) for _ in range(updates))
    ):
        fields: Fields = {"deal_id": deal_id, "stage": DEAL_STAGES[min(i, len(DEAL_STAGES) - 1)]}
        if rng.random() < 0.4:
            amount = max(_round_to(amount * rng.uniform(0.75, 1.3), 250), 500 / scale)
            fields |= {"amount": sim.exact(amount, currency), "currency": currency}
        sim.emit(at, "deal.updated", fields)
    if outcome == "open":
        return None
    if outcome == "lost":
        sim.emit(end, "deal.closed_lost", {"deal_id": deal_id})
        return None
    won_at = end
    if reopen:
        first_status = rng.choice(("deal.closed_won", "deal.closed_lost"))
        sim.emit(first_close, first_status, {"deal_id": deal_id})
        reopened_at = sim.between(first_close + HOUR, first_close + (end - first_close) // 2)
        sim.emit(reopened_at, "deal.reopened", {"deal_id": deal_id})
        if rng.random() < 0.6:
            amount = _round_to(amount * rng.uniform(0.85, 1.15), 50)
            sim.emit(
                sim.between(reopened_at + HOUR, end - HOUR),
                "deal.updated",
                {
                    "deal_id": deal_id,
                    "amount": sim.exact(amount, currency),
                    "currency": currency,
                    "stage": "negotiation",
                },
            )
        won_at = first_close if first_status == "deal.closed_won" else end
    won: Fields = {"deal_id": deal_id}
    if rng.random() < 0.65:  # the final amount, sometimes after a discount
        final = _round_to(amount * rng.choice((1.0, 1.0, 1.0, 0.95, 0.9)), 50)
        won |= {"amount": sim.exact(final, currency), "currency": currency}
    if rng.random() < 0.2:
        won["account_id"] = account
    sim.emit(end, "deal.closed_won", won)
    return won_at


def _merge(sim: Simulation, record: DealRecord) -> None:
    """Emit a duplicate of a known contact, touched once, later merged into the survivor."""
    known = [contact for contact in record.contacts if contact.introduced_at is not None]
    survivor = sim.rng.choice(known)
    assert survivor.introduced_at is not None
    duplicate = Contact(sim.new_id("ct"))
    at = sim.between(survivor.introduced_at + HOUR, record.end - HOUR)
    _touch(sim, at, sim.pick(NURTURE_MIX), contact=duplicate, account=None)
    sim.emit(
        at + sim.between(HOUR, 10 * DAY),
        "contact.merged",
        {"contact_id": survivor.id, "merged_contact_id": duplicate.id},
    )


def _move(sim: Simulation, record: DealRecord) -> None:
    """Emit a contact of a decided deal changing company some weeks after the close."""
    assert record.closed_at is not None
    known = [contact for contact in record.contacts if contact.introduced_at is not None]
    contact = sim.rng.choice(known)
    target = sim.rng.choice(sim.prospect_accounts) if sim.prospect_accounts else sim.new_id("acc")
    at = sim.between(record.closed_at + 3 * DAY, record.closed_at + 30 * DAY)
    if at >= sim.length:
        at = sim.between(record.closed_at + 60, sim.length - 1)
    sim.emit(at, "contact.upserted", {"contact_id": contact.id, "account_id": target})


def _touch(
    sim: Simulation,
    at: int,
    channel: str,
    *,
    contact: Contact | None,
    account: str | None,
    lead_share: float = LEAD_CREATED_SHARE,
) -> None:
    """Emit one touch; a contact's first touch usually creates the lead (and the contact)."""
    rng = sim.rng
    fields: Fields = {
        "campaign_id": sim.campaign_for(channel),
        "touch_type": rng.choice(CHANNEL_BY_SLUG[channel].touch_types),
    }
    if contact is not None:
        fields["contact_id"] = contact.id
    if account is not None and (contact is None or rng.random() < 0.2):
        fields["account_id"] = account
    new = contact is not None and contact.introduced_at is None
    if new and rng.random() < lead_share:
        fields["lead_created"] = True
    elif rng.random() < 0.05:
        fields["lead_created"] = False
    sim.emit(at, "touch", fields)
    if contact is not None and new:
        _introduce(sim, contact, at, account)


def _introduce(sim: Simulation, contact: Contact, at: int, account: str | None) -> None:
    """Create the contact as a lead; some start unmatched and get their company later."""
    contact.introduced_at = at
    unmatched = account is not None and sim.rng.random() < UNMATCHED_SHARE
    _advance(sim, contact, "lead", at + 30, None if unmatched else account)
    if unmatched and sim.rng.random() < 0.7:
        matched_at = at + sim.between(HOUR, 5 * DAY)
        sim.emit(matched_at, "contact.upserted", {"contact_id": contact.id, "account_id": account})


def _advance(sim: Simulation, contact: Contact, stage: str, at: int, account: str | None) -> None:
    """Emit a lifecycle change if it moves the contact forward (stages never go back)."""
    index = LIFECYCLE.index(stage)
    if index <= contact.stage:
        return
    if contact.introduced_at is None:
        contact.introduced_at = at
    contact.stage = index
    sim.emit(
        at,
        "contact.upserted",
        {"contact_id": contact.id, "account_id": account, "lifecycle_stage": stage},
    )


def _deal_currency(sim: Simulation) -> str:
    weights = [
        55 if c == sim.reporting else 45 / max(1, len(sim.currencies) - 1) for c in sim.currencies
    ]
    return sim.rng.choices(sim.currencies, weights=weights)[0]


def _round_to(value: float, step: float) -> float:
    """Round to a whole multiple of ``step`` (at least one step)."""
    return max(step, round(value / step) * step)
