"""Fetch the journey candidates of many deals at once (contract §2), in three queries.

A touch belongs to deal D (account A) when its own account is A, when its contact's root
(after merges) belongs to A, or when its contact's root is one of D's contacts or their roots.
Contacts are resolved with subqueries, never with a parameter per contact, so an account of any
size stays within a statement's parameter limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select, union
from sqlalchemy.orm import Session

from services.core.db.schema import CampaignRow, ContactRow, TouchRow
from services.core.db.upsert import among
from services.domain import Touch
from services.domain.state import DealState


def journey_candidates(
    session: Session, deals: Sequence[DealState], *, lookback: timedelta
) -> dict[str, list[Touch]]:
    """Return, per won deal, the touches that belong to it (not yet cut to its window)."""
    deals = [d for d in deals if d.closed_at is not None and d.journey_start is not None]
    if not deals:
        return {}
    deal_contacts = {c for d in deals for c in d.contact_ids}
    root_of: dict[str, str] = {}
    if deal_contacts:
        root_of = {
            c: r
            for c, r in session.execute(
                select(ContactRow.contact_id, ContactRow.root_contact_id).where(
                    among(session, ContactRow.contact_id, deal_contacts)
                )
            )
        }
    deal_roots = {
        d.deal_id: set(d.contact_ids) | {root_of.get(c, c) for c in d.contact_ids} for d in deals
    }
    roots = set().union(*deal_roots.values())
    accounts = {d.account_id for d in deals if d.account_id is not None}

    # Each condition is its own SELECT, UNIONed: PostgreSQL plans an OR of ``= ANY(array)``
    # tests as a sequential scan checking every row against every array (seconds a batch);
    # separately, each uses its index.
    member: list[ColumnElement[bool]] = []
    if roots:
        member.append(among(session, ContactRow.root_contact_id, roots))
    if accounts:
        member.append(among(session, ContactRow.effective_account_id, accounts))
    contacts: dict[str, tuple[str, str | None]] = {}
    if member:
        contacts = {
            c: (r, a)
            for c, r, a in session.execute(
                union(
                    *(
                        select(
                            ContactRow.contact_id,
                            ContactRow.root_contact_id,
                            ContactRow.effective_account_id,
                        ).where(condition)
                        for condition in member
                    )
                )
            )
        }
    belongs: list[ColumnElement[bool]] = []
    if roots or contacts:
        belongs.append(among(session, TouchRow.contact_id, roots | contacts.keys()))
    if accounts:
        belongs.append(among(session, TouchRow.account_id, accounts))
    if not belongs:
        return {d.deal_id: [] for d in deals}
    earliest = min(d.journey_start for d in deals if d.journey_start) - lookback
    latest = max(d.closed_at for d in deals if d.closed_at)
    columns = (
        TouchRow.event_id,
        TouchRow.occurred_at,
        TouchRow.campaign_id,
        TouchRow.lead_created,
        TouchRow.contact_id,
        TouchRow.account_id,
        CampaignRow.channel,
    )
    rows = session.execute(
        union(
            *(
                select(*columns)
                .outerjoin(CampaignRow, CampaignRow.campaign_id == TouchRow.campaign_id)
                .where(condition, TouchRow.occurred_at >= earliest, TouchRow.occurred_at <= latest)
                for condition in belongs
            )
        )
    )
    by_account: dict[str, list[Touch]] = defaultdict(list)
    by_root: dict[str, list[Touch]] = defaultdict(list)
    for r in rows:
        touch = Touch(
            event_id=r.event_id,
            occurred_at=r.occurred_at,
            campaign_id=r.campaign_id,
            channel=r.channel or "",
            lead_created=bool(r.lead_created),
        )
        if r.account_id is not None:
            by_account[r.account_id].append(touch)
        if r.contact_id is not None:
            root, account = contacts.get(r.contact_id, (r.contact_id, None))
            by_root[root].append(touch)
            if account is not None and account != r.account_id:
                by_account[account].append(touch)
    out: dict[str, list[Touch]] = {}
    for deal in deals:
        found = list(by_account.get(deal.account_id, [])) if deal.account_id else []
        for root in deal_roots[deal.deal_id]:
            found += by_root.get(root, [])
        out[deal.deal_id] = list({t.event_id: t for t in found}.values())
    return out
