"""Accounts' and contacts' own events: firmographics, touches, lifecycle stages, sales responses.

Lifecycle invariants, per contact and in time order (a change is never earlier than the last):
- funnel stages only move forward: subscriber → lead → mql → sql → opportunity → customer. Some
  contacts start as subscribers (mostly from email, content and organic first touches); a
  subscriber becomes a lead just before it first moves further.
- ``recycled`` (only after mql or sql) sends a contact back to nurture, from where it may become
  an mql again; ``disqualified`` is final.
- A contact's first ``contact.upserted`` carries its persona as ``attributes``; a promotion is
  a later upsert with only ``attributes`` (``account_id`` left out, so it keeps its value).

Sales responses to an MQL (what the SLA report of contract §6 measures): ~72% within 24 hours
(median ~3 h), ~18% after 2-5 days, ~10% never. A response is a touch of a sales-sourced
campaign (``call``, ``sales_email`` or ``meeting``) or a stage change to sql, recycled or
disqualified; a response that would fall after the window has not happened yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.simulate.catalog import CHANNEL_BY_SLUG
from services.simulate.firmographics import Firmographics, Persona, grown, promoted
from services.simulate.world import DAY, HOUR, Fields, Simulation

FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
LEAD, MQL, SQL = 1, 2, 3
LEAD_CREATED_SHARE = 0.85
UNMATCHED_SHARE = 0.15  # new contacts not yet matched to their company
SUBSCRIBER_SHARE = {"email": 0.6, "content": 0.45, "organic_search": 0.35, "webinar": 0.25}
ON_TIME_SHARE, LATE_SHARE = 0.72, 0.18  # of sales responses; the rest never come
SALES_TOUCHES = {"call": 55, "sales_email": 30, "meeting": 15}
ENRICHED_LATER_SHARE = 0.12  # accounts created with name, industry and segment only
GROWTH_SHARE = 0.06  # accounts whose headcount band grows during the window


@dataclass
class Contact:
    """A simulated contact: who it is and where it stands in the lifecycle."""

    id: str
    persona: Persona
    stage: str | None = None  # the latest lifecycle stage emitted
    rank: int = -1  # the furthest funnel stage since the last recycle
    introduced_at: int | None = None
    changed_at: int = 0
    described: bool = False  # whether its attributes were sent yet


def add_account(sim: Simulation, account_id: str, firm: Firmographics, at: int) -> None:
    """Emit an account with its firmographics; some are enriched later, a few grow a band."""
    rng, attributes = sim.rng, firm.attributes()
    later = {key: attributes.pop(key) for key in ("employees", "country")}
    if rng.random() >= ENRICHED_LATER_SHARE:
        attributes |= later
        later = {}
    fields: Fields = {"account_id": account_id, "name": firm.name, "attributes": attributes}
    sim.emit(at, "account.upserted", fields)
    if later:
        enriched = {"account_id": account_id, "attributes": later}
        sim.emit(at + sim.between(HOUR, 5 * DAY), "account.upserted", enriched)
    if rng.random() < GROWTH_SHARE and at + 20 * DAY < sim.length - HOUR:
        grew = {"account_id": account_id, "attributes": {"employees": grown(firm.employees)}}
        sim.emit(sim.between(at + 20 * DAY, sim.length - HOUR), "account.upserted", grew)


def touch(
    sim: Simulation,
    at: int,
    channel: str,
    *,
    contact: Contact | None,
    account: str | None,
    lead_share: float = LEAD_CREATED_SHARE,
    touch_type: str | None = None,
) -> None:
    """Emit one touch; a contact's first touch usually creates the lead (and the contact)."""
    rng = sim.rng
    fields: Fields = {
        "campaign_id": sim.campaign_for(channel),
        "touch_type": touch_type or rng.choice(CHANNEL_BY_SLUG[channel].touch_types),
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
        _introduce(sim, contact, at, account, channel)


def _introduce(
    sim: Simulation, contact: Contact, at: int, account: str | None, channel: str
) -> None:
    """Create the contact (a lead or a subscriber); some get their company only later."""
    contact.introduced_at = at
    unmatched = account is not None and sim.rng.random() < UNMATCHED_SHARE
    subscriber = sim.rng.random() < SUBSCRIBER_SHARE.get(channel, 0.02)
    stage = "subscriber" if subscriber else "lead"
    _set(sim, contact, stage, at + 30, None if unmatched else account)
    if unmatched and sim.rng.random() < 0.7:
        matched_at = at + sim.between(HOUR, 5 * DAY)
        sim.emit(matched_at, "contact.upserted", {"contact_id": contact.id, "account_id": account})


def advance(
    sim: Simulation, contact: Contact, stage: str, at: int, account: str | None
) -> int | None:
    """Move the contact forward to ``stage``; return when (None if it is not a move forward)."""
    index = FUNNEL.index(stage)
    if contact.stage == "disqualified" or index <= contact.rank:
        return None
    if contact.stage is not None:
        at = max(at, contact.changed_at + 60)
    if contact.stage == "subscriber" and index > LEAD:
        _set(sim, contact, "lead", contact.changed_at + (at - contact.changed_at) // 2, account)
    _set(sim, contact, stage, at, account)
    return at


def leave(sim: Simulation, contact: Contact, exit_: str, at: int, account: str | None) -> bool:
    """Send the contact to ``recycled`` (after mql or sql) or ``disqualified``; say if it did."""
    if contact.stage in (None, "recycled", "disqualified"):
        return False
    if exit_ == "recycled" and contact.rank not in (MQL, SQL):
        return False
    _set(sim, contact, exit_, max(at, contact.changed_at + 60), account)
    if exit_ == "recycled":
        contact.rank = LEAD  # back to nurture: it may become an mql again
    return True


def promote(sim: Simulation, contact: Contact, at: int) -> None:
    """Emit a promotion: the contact's title one seniority up, when there is one."""
    better = promoted(contact.persona)
    if better is None or not contact.described:
        return
    contact.persona = better
    sim.emit(at, "contact.upserted", {"contact_id": contact.id, "attributes": better.attributes()})


def response_delay(sim: Simulation) -> int | None:
    """Draw how long sales takes to respond to an MQL, in seconds (None: it never does)."""
    roll = sim.rng.random()
    if roll < ON_TIME_SHARE:
        hours = min(23.5, max(0.15, sim.rng.lognormvariate(math.log(3), 0.9)))
        return int(hours * HOUR)
    if roll < ON_TIME_SHARE + LATE_SHARE:
        return sim.between(2 * DAY, 5 * DAY)
    return None


def follow_up(sim: Simulation, contact: Contact, mql_at: int, account: str | None) -> None:
    """Emit sales's reaction to a prospect's MQL: a call, email or meeting, or a stage change."""
    rng = sim.rng
    delay = response_delay(sim)
    if delay is None or mql_at + delay >= sim.length:
        return
    at = mql_at + delay
    kind = sim.pick({"touch": 45, "recycled": 30, "disqualified": 15, "sql": 10})
    if kind == "touch":
        sales_touch = sim.pick(SALES_TOUCHES)
        touch(sim, at, "outbound_sales", contact=contact, account=account, touch_type=sales_touch)
    elif kind == "sql":
        advance(sim, contact, "sql", at, account)
    else:
        leave(sim, contact, kind, at, account)
    if kind in ("touch", "sql") and rng.random() < 0.7:  # then the verdict, days later
        at += sim.between(DAY, 20 * DAY)
        kind = "recycled" if rng.random() < 0.65 else "disqualified"
        if at < sim.length:
            leave(sim, contact, kind, at, account)
    if kind == "recycled" and contact.stage == "recycled" and rng.random() < 0.3:
        again = at + sim.between(7 * DAY, 40 * DAY)  # nurtured back into an MQL
        if again < sim.length - HOUR and advance(sim, contact, "mql", again, account) is not None:
            follow_up(sim, contact, contact.changed_at, account)


def _set(sim: Simulation, contact: Contact, stage: str, at: int, account: str | None) -> None:
    contact.stage, contact.changed_at = stage, at
    if stage in FUNNEL:
        contact.rank = FUNNEL.index(stage)
    if contact.introduced_at is None:
        contact.introduced_at = at
    fields: Fields = {"contact_id": contact.id, "account_id": account, "lifecycle_stage": stage}
    if not contact.described:
        fields["attributes"] = contact.persona.attributes()
        contact.described = True
    sim.emit(at, "contact.upserted", fields)
