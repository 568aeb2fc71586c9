"""Journeys of a simulated run: accounts that reach a deal, and prospects that never do.

A deal's timeline: its account is created with the first touch → weeks of nurture → the
primary contact becomes an mql and sales answers (mostly by accepting it as an sql within
hours; some primaries are recycled first and come back as mqls later) → ``deal.created`` →
the deal is worked (meetings, amount and stage updates) → closed (or still open at the end).
Outcomes are exactly 40% won, 30% lost, 30% open; which decided deals are won follows each
deal's fit (``firmographics``: industry, segment, the primary contact's seniority).
Prospects are touched, some become mqls, and sales follows up (``people.follow_up``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.simulate.catalog import ACCOUNT_MIX, FIRST_TOUCH_MIX, NURTURE_MIX, WORKING_MIX
from services.simulate.deals import deal_events
from services.simulate.firmographics import (
    Firmographics,
    Persona,
    draw_account,
    draw_persona,
    fit,
    pick_winners,
)
from services.simulate.people import (
    Contact,
    add_account,
    advance,
    follow_up,
    leave,
    promote,
    response_delay,
    touch,
)
from services.simulate.world import DAY, HOUR, Simulation

WON_SHARE = 0.40
LOST_SHARE = 0.30
REOPEN_SHARE = 0.06  # of won deals: closed, reopened, won again
SALES_SOURCED_SHARE = 0.20
ACCOUNT_TOUCH_SHARE = 0.15
PROSPECTS_PER_DEAL = 0.6  # accounts (or lone contacts) that never reach a deal
PROSPECT_MQL_SHARE = 0.35
JUNK_SHARE = 0.05  # prospect leads disqualified without ever becoming an mql
PRIMARY_RECYCLE_SHARE = 0.15  # of primaries with a long nurture: recycled once first
PROMOTION_SHARE = 0.03
MERGE_SHARE = 0.04
MOVE_SHARE = 0.03


@dataclass
class DealPlan:
    """Who a deal is with, drawn before outcomes are assigned (they depend on it)."""

    firm: Firmographics
    primary: Persona
    outcome: str = "open"
    reopen: bool = False


@dataclass
class DealRecord:
    """What merges and moves need to know about a simulated deal."""

    account_id: str
    contacts: list[Contact]
    end: int
    closed_at: int | None


def new_contact(sim: Simulation) -> Contact:
    """Return a new contact with a persona."""
    return Contact(sim.new_id("ct"), draw_persona(sim.rng))


def add_prospects(sim: Simulation) -> None:
    """Emit accounts and lone contacts that are touched but never reach a deal."""
    rng = sim.rng
    for _ in range(round(PROSPECTS_PER_DEAL * sim.deals)):
        lone = rng.random() < 0.25
        first = sim.between(0, sim.length - 2 * DAY)
        account = None if lone else sim.new_id("acc")
        if account is not None:
            created = max(0, first - sim.between(0, 2 * HOUR))
            sim.prospect_accounts.append((account, created))
            add_account(sim, account, draw_account(rng), created)
        contacts = [new_contact(sim) for _ in range(1 if lone else rng.randint(1, 3))]
        last = min(sim.length - HOUR, first + sim.between(7 * DAY, 60 * DAY))
        times = [first, *sorted(sim.between(first + 60, last) for _ in range(rng.randint(1, 5)))]
        for i, at in enumerate(times):
            if account is not None and i > 0 and rng.random() < ACCOUNT_TOUCH_SHARE:
                touch(sim, at, sim.pick(ACCOUNT_MIX), contact=None, account=account)
                continue
            contact = contacts[0] if i == 0 else rng.choice(contacts)
            mix = FIRST_TOUCH_MIX if contact.introduced_at is None else NURTURE_MIX
            touch(sim, at, sim.pick(mix), contact=contact, account=account)
        for contact in contacts:
            _prospect_stages(sim, contact, account, last)


def _prospect_stages(sim: Simulation, contact: Contact, account: str | None, last: int) -> None:
    """Move a prospect contact: a few junk leads are disqualified, some become mqls."""
    if contact.introduced_at is None:
        return
    roll, at = sim.rng.random(), sim.between(contact.introduced_at + HOUR, last)
    if roll < JUNK_SHARE:
        leave(sim, contact, "disqualified", at, account)
    elif roll < JUNK_SHARE + PROSPECT_MQL_SHARE:
        mql_at = advance(sim, contact, "mql", at, account)
        if mql_at is not None:
            follow_up(sim, contact, mql_at, account)
    elif contact.stage == "subscriber" and sim.rng.random() < 0.3:
        advance(sim, contact, "lead", at, account)


def add_deals(sim: Simulation) -> None:
    """Emit ``sim.deals`` deals: exactly 40% won and 30% lost (by fit), the rest open."""
    rng = sim.rng
    won, lost = round(WON_SHARE * sim.deals), round(LOST_SHARE * sim.deals)
    plans = [DealPlan(draw_account(rng), draw_persona(rng)) for _ in range(sim.deals)]
    decided = rng.sample(range(sim.deals), won + lost)
    winners = pick_winners(rng, [fit(plans[i].firm, plans[i].primary) for i in decided], won)
    for k, i in enumerate(decided):
        plans[i].outcome = "won" if k in winners else "lost"
    won_at = [i for i, plan in enumerate(plans) if plan.outcome == "won"]
    for i in rng.sample(won_at, max(1, round(REOPEN_SHARE * won))) if won_at else []:
        plans[i].reopen = True
    records = [_deal(sim, plan) for plan in plans]
    if not records:
        return
    for record in rng.sample(records, min(len(records), max(1, round(MERGE_SHARE * sim.deals)))):
        _merge(sim, record)
    closed = [record for record in records if record.closed_at is not None]
    for record in rng.sample(closed, min(len(closed), max(1, round(MOVE_SHARE * sim.deals)))):
        _move(sim, record)


def _deal(sim: Simulation, plan: DealPlan) -> DealRecord:
    rng, length = sim.rng, sim.length
    if plan.outcome == "open":
        created = sim.between(0.35 * length, length - DAY)
        closed_at = None
        end = min(length - HOUR, created + sim.between(14 * DAY, 60 * DAY))
    else:
        closed_at = sim.between(0.3 * length, length - 2 * HOUR)
        created = int(closed_at - min(rng.uniform(14, 90) * DAY, 0.55 * closed_at))
        end = closed_at
    first = int(created - min(rng.uniform(10, 80) * DAY, 0.85 * created))
    account = sim.new_id("acc")
    add_account(sim, account, plan.firm, first - sim.between(0, 2 * HOUR))
    size = rng.choices((1, 2, 3, 4), weights=(25, 35, 25, 15))[0]
    contacts = [Contact(sim.new_id("ct"), plan.primary)]
    contacts += [new_contact(sim) for _ in range(size - 1)]
    _lay_touches(sim, account, contacts, first=first, created=created, end=end)
    contact_ids = _progress_contacts(sim, account, contacts, first=first, created=created)
    status_at = deal_events(
        sim,
        account,
        contact_ids,
        outcome=plan.outcome,
        reopen=plan.reopen,
        created=created,
        end=end,
        size=plan.firm.size_factor,
    )
    if status_at is not None:  # the deal was won at status_at: its buyers become customers
        by_id = {contact.id: contact for contact in contacts}
        for n, contact_id in enumerate(contact_ids):
            advance(sim, by_id[contact_id], "customer", status_at + 300 + n, account)
    for contact in contacts:
        if contact.introduced_at is not None and rng.random() < PROMOTION_SHARE:
            promote(sim, contact, sim.between(contact.introduced_at + DAY, end))
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
    touch(sim, first, first_channel, contact=contacts[0], account=account, lead_share=0.9)
    for at in sorted(later):
        mix = NURTURE_MIX if at < created else WORKING_MIX
        if rng.random() < ACCOUNT_TOUCH_SHARE:
            touch(sim, at, sim.pick(ACCOUNT_MIX), contact=None, account=account)
            continue
        known = [contact for contact in contacts if contact.introduced_at is not None]
        contact = waiting.pop(0) if waiting and rng.random() < 0.45 else rng.choice(known)
        touch(sim, at, sim.pick(mix), contact=contact, account=account)


def _progress_contacts(
    sim: Simulation, account: str, contacts: list[Contact], *, first: int, created: int
) -> list[str]:
    """Move contacts through the funnel up to the deal; return the deal's contact roles."""
    rng = sim.rng
    _primary_path(sim, contacts[0], account, first=first, created=created)
    roles = [contacts[0]]
    for contact in contacts[1:]:
        if contact.introduced_at is None:  # never touched: added by sales to the opportunity
            at = sim.between(max(first, created - 3 * DAY), created - 60)
            advance(sim, contact, "sql", at, account)
            roles.append(contact)
            continue
        if contact.introduced_at >= created:  # joined while the deal was worked: no role
            continue
        role = rng.random() < 0.5
        if rng.random() < 0.5:
            reached = contact.introduced_at + int((created - contact.introduced_at) * 0.6)
            mql_at = advance(sim, contact, "mql", reached, account)
            delay = response_delay(sim)
            if mql_at is not None and delay is not None and mql_at + delay < created - 60:
                if role:  # accepted by sales; the others are not the buyer
                    advance(sim, contact, "sql", mql_at + delay, account)
                else:
                    exit_ = "recycled" if rng.random() < 0.75 else "disqualified"
                    leave(sim, contact, exit_, mql_at + delay, account)
        if role:
            roles.append(contact)
    for n, contact in enumerate(roles):
        advance(sim, contact, "opportunity", created + 120 + n, account)
    return [contact.id for contact in roles]


def _primary_path(
    sim: Simulation, primary: Contact, account: str, *, first: int, created: int
) -> None:
    """Make the primary contact an mql, then an sql after sales's response (some recycled first)."""
    rng = sim.rng
    intro = primary.introduced_at if primary.introduced_at is not None else first
    span = max(created - intro, 4 * 60)
    planned = intro + int(span * rng.uniform(0.25, 0.55))
    if span > 20 * DAY and rng.random() < PRIMARY_RECYCLE_SHARE:
        early = advance(sim, primary, "mql", intro + int(span * rng.uniform(0.05, 0.15)), account)
        if early is not None:
            back = early + (response_delay(sim) or sim.between(DAY, 3 * DAY))
            leave(sim, primary, "recycled", min(back, planned - DAY), account)
    mql_at = advance(sim, primary, "mql", planned, account) or planned
    natural = max(mql_at + 60, intro + int(span * rng.uniform(0.65, 0.95)))
    delay = response_delay(sim)
    accepted = natural if delay is None or mql_at + delay >= natural else mql_at + delay
    advance(sim, primary, "sql", accepted, account)


def _merge(sim: Simulation, record: DealRecord) -> None:
    """Emit a duplicate of a known contact, touched once, later merged into the survivor."""
    known = [contact for contact in record.contacts if contact.introduced_at is not None]
    survivor = sim.rng.choice(known)
    assert survivor.introduced_at is not None
    duplicate = Contact(sim.new_id("ct"), survivor.persona)
    at = sim.between(survivor.introduced_at + HOUR, record.end - HOUR)
    touch(sim, at, sim.pick(NURTURE_MIX), contact=duplicate, account=None)
    sim.emit(
        at + sim.between(HOUR, 10 * DAY),
        "contact.merged",
        {"contact_id": survivor.id, "merged_contact_id": duplicate.id},
    )


def _move(sim: Simulation, record: DealRecord) -> None:
    """Emit a contact of a decided deal moving, weeks after the close, to an existing prospect."""
    assert record.closed_at is not None
    known = [contact for contact in record.contacts if contact.introduced_at is not None]
    contact = sim.rng.choice(known)
    at = sim.between(record.closed_at + 3 * DAY, record.closed_at + 30 * DAY)
    if at >= sim.length:
        at = sim.between(record.closed_at + 60, sim.length - 1)
    existing = [account for account, created in sim.prospect_accounts if created < at]
    if existing:
        target = sim.rng.choice(existing)
    else:
        target = sim.new_id("acc")
        add_account(sim, target, draw_account(sim.rng), at - 60)
    sim.emit(at, "contact.upserted", {"contact_id": contact.id, "account_id": target})
