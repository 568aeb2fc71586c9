"""Read accounts for the lead lifecycle: attributes and open journeys (worker and API).

Open journeys (the lead score's input, contract §7): an account's touches so far are every
touch whose own ``account_id`` is the account, or whose contact's effective account is, in
``[now - lookback_days, now]``, in (``occurred_at``, ``event_id``) order — contract §2's
journey of an open deal, ending now. Without an account, every account with no won deal.

A contact belongs to an account by its effective account (``contacts.effective_account_id``:
its root's account after merges). Contacts merged into one root are one person: per key, the
value with the latest (``occurred_at``, ``event_id``) among them wins. An empty value (a CRM
clearing a property) is no value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Subquery, exists, select, union
from sqlalchemy.orm import Session

from services.core.db.schema import AttributeRow, CampaignRow, ContactRow, DealRow, TouchRow
from services.core.db.upsert import among
from services.domain.state import STATUS_WON


@dataclass
class AccountAttributes:
    """An account's own attributes and each of its (root) contacts' attributes."""

    own: dict[str, str] = field(default_factory=dict)
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        """Return every attribute key with a value on the account or any of its contacts."""
        return set(self.own) | {key for person in self.contacts.values() for key in person}


def account_attributes(
    session: Session, account_ids: Iterable[str]
) -> dict[str, AccountAttributes]:
    """Return the attributes of each account in ``account_ids`` (every one, maybe empty)."""
    ids = set(account_ids)
    out = {account_id: AccountAttributes() for account_id in ids}
    if not ids:
        return out
    for owner, key, value in session.execute(
        select(AttributeRow.owner_id, AttributeRow.key, AttributeRow.value).where(
            AttributeRow.owner_kind == "account", among(session, AttributeRow.owner_id, ids)
        )
    ):
        if value.strip():
            out[owner].own[key] = value
    latest: dict[tuple[str, str, str], tuple[datetime, str, str]] = {}
    for account, root, key, value, at, event_id in session.execute(
        select(
            ContactRow.effective_account_id,
            ContactRow.root_contact_id,
            AttributeRow.key,
            AttributeRow.value,
            AttributeRow.occurred_at,
            AttributeRow.event_id,
        )
        .join(ContactRow, ContactRow.contact_id == AttributeRow.owner_id)
        .where(
            AttributeRow.owner_kind == "contact",
            among(session, ContactRow.effective_account_id, ids),
        )
    ):
        slot = (str(account), root, key)
        held = latest.get(slot)
        if held is None or held[:2] < (at, event_id):
            latest[slot] = (at, event_id, value)
    for (account, root, key), (_, _, value) in sorted(latest.items()):
        if value.strip():
            out[account].contacts.setdefault(root, {})[key] = value
    return out


@dataclass(frozen=True)
class OpenTouch:
    """A touch of an account's journey so far, with its campaign's channel (None: unknown)."""

    event_id: str
    occurred_at: datetime
    campaign_id: str
    channel: str | None


def _members(
    session: Session,
    conditions: Sequence[ColumnElement[bool]],
    accounts: Collection[str] | None,
) -> Subquery:
    """Select (account_id, event_id) of touches under ``conditions``, by either membership."""
    own = select(TouchRow.account_id.label("account_id"), TouchRow.event_id).where(
        TouchRow.account_id.is_not(None), *conditions
    )
    via = (
        select(ContactRow.effective_account_id.label("account_id"), TouchRow.event_id)
        .join(ContactRow, ContactRow.contact_id == TouchRow.contact_id)
        .where(ContactRow.effective_account_id.is_not(None), *conditions)
    )
    if accounts is not None:
        own = own.where(among(session, TouchRow.account_id, accounts))
        via = via.where(among(session, ContactRow.effective_account_id, accounts))
    return union(own, via).subquery("members")


def account_touches(
    session: Session,
    conditions: Sequence[ColumnElement[bool]],
    *,
    accounts: Collection[str] | None = None,
    open_only: bool = False,
) -> dict[str, list[OpenTouch]]:
    """Return each account's touches under ``conditions`` (own or its contacts'), in order.

    ``accounts`` limits the accounts; ``open_only`` keeps those with no won deal.
    """
    members = _members(session, conditions, accounts)
    stmt = (
        select(
            members.c.account_id,
            TouchRow.event_id,
            TouchRow.occurred_at,
            TouchRow.campaign_id,
            CampaignRow.channel,
        )
        .join(TouchRow, TouchRow.event_id == members.c.event_id)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == TouchRow.campaign_id)
    )
    if open_only:
        stmt = stmt.where(
            ~exists().where(
                DealRow.account_id == members.c.account_id, DealRow.status == STATUS_WON
            )
        )
    out: dict[str, list[OpenTouch]] = defaultdict(list)
    for account, event_id, occurred_at, campaign_id, channel in session.execute(stmt):
        out[account].append(OpenTouch(event_id, occurred_at, campaign_id, channel))
    for touches in out.values():
        # Journey order (contract §2), by code point: no database collation involved.
        touches.sort(key=lambda t: (t.occurred_at, t.event_id))
    return out


def open_journeys(
    session: Session, *, now: datetime, lookback_days: int, account_id: str | None = None
) -> dict[str, list[OpenTouch]]:
    """Return each account's touches in the window, in journey order.

    With ``account_id``, that account only; without, every account with no won deal.
    """
    window = [
        TouchRow.occurred_at >= now - timedelta(days=lookback_days),
        TouchRow.occurred_at <= now,
    ]
    accounts = None if account_id is None else [account_id]
    return account_touches(session, window, accounts=accounts, open_only=account_id is None)
