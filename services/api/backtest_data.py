"""What a backtest reads from the projection and the stored events (``services.api.backtest``).

- Decided deals: won (``closed_at``) or lost (``lost_at``) in the period, with an account, by
  their current status. Their creation moment C is ``created_at``, or the decision when no
  ``deal.created`` arrived (contract §2).
- Training deals: the deals a fit learns from (won and converted, or lost: as the worker's
  fits) decided before a cut.
- Attribute changes: every ``account.upserted`` of the accounts and every ``contact.upserted``
  of their contacts, as stored (``events``), one ``Change`` per carried attribute, so the value
  as of any moment can be recovered (the ``attributes`` table holds only the latest). A contact
  belongs to an account, and to its root contact, by the current projection (``contacts``:
  effective account and root after merges), not as of the moment.
- Touches: an account's touches before a moment, its own or its contacts' (same membership),
  with their campaigns' channels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.errors import LeadDefinitionNotFound
from services.api.params import Period
from services.core.db.accounts import account_touches as touches_of_accounts
from services.core.db.schema import (
    ContactRow,
    DealRow,
    EventRow,
    LeadDefinitionRow,
    TouchRow,
)
from services.core.db.upsert import among
from services.domain import Touch
from services.domain.backtest import Change
from services.domain.leads import LeadRule, rule_from_json
from services.domain.state import STATUS_LOST, STATUS_WON


@dataclass(frozen=True)
class DecidedDeal:
    """A deal won or lost in range: its account, outcome, revenue and creation moment C."""

    deal_id: str
    account_id: str
    won: bool
    revenue_minor: int | None
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class TrainingDeal:
    """A deal a fit may learn from, and when it was decided."""

    account_id: str | None
    won: bool
    decided_at: datetime


def definition_rule(
    session: Session, definition_id: str, version: int | None
) -> tuple[int, LeadRule]:
    """Return a definition's version (default: the latest) and its rule, or raise not found."""
    query = select(LeadDefinitionRow.version, LeadDefinitionRow.rule).where(
        LeadDefinitionRow.definition_id == definition_id
    )
    if version is not None:
        query = query.where(LeadDefinitionRow.version == version)
    found = session.execute(query.order_by(LeadDefinitionRow.version.desc()).limit(1)).first()
    if found is None:
        if version is not None and _exists(session, definition_id):
            raise LeadDefinitionNotFound(definition_id, version)
        raise LeadDefinitionNotFound(definition_id)
    return int(found[0]), rule_from_json(found[1])


def _exists(session: Session, definition_id: str) -> bool:
    probe = select(LeadDefinitionRow.version).where(
        LeadDefinitionRow.definition_id == definition_id
    )
    return session.scalar(probe.limit(1)) is not None


def decided_in(session: Session, period: Period) -> list[DecidedDeal]:
    """Return the deals with an account won or lost in ``period``, by deal id."""
    won, lost = DealRow.status == STATUS_WON, DealRow.status == STATUS_LOST
    if period.start_at is not None:
        won &= DealRow.closed_at >= period.start_at
        lost &= DealRow.lost_at >= period.start_at
    if period.end_at is not None:
        won &= DealRow.closed_at < period.end_at
        lost &= DealRow.lost_at < period.end_at
    rows = session.execute(
        select(
            DealRow.deal_id,
            DealRow.account_id,
            DealRow.status,
            DealRow.reporting_minor,
            DealRow.created_at,
            DealRow.closed_at,
            DealRow.lost_at,
        )
        .where(DealRow.account_id.is_not(None), won.self_group() | lost.self_group())
        .order_by(DealRow.deal_id)
    )
    out = []
    for deal_id, account, status, revenue, created, closed, lost_at in rows:
        is_won = status == STATUS_WON
        decided = closed if is_won else lost_at
        if decided is None:
            continue
        out.append(
            DecidedDeal(
                deal_id,
                str(account),
                is_won,
                revenue if is_won else None,
                created or decided,
                closed if is_won else None,
            )
        )
    return out


def decided_before(session: Session, cut: datetime) -> list[TrainingDeal]:
    """Return the deals won (and converted) or lost before ``cut`` (what a fit learns from)."""
    won = (
        (DealRow.status == STATUS_WON)
        & (DealRow.conversion == "converted")
        & (DealRow.closed_at < cut)
    )
    lost = (DealRow.status == STATUS_LOST) & (DealRow.lost_at < cut)
    rows = session.execute(
        select(DealRow.account_id, DealRow.status, DealRow.closed_at, DealRow.lost_at)
        .where(won | lost)
        .order_by(DealRow.deal_id)
    )
    out = []
    for account, status, closed, lost_at in rows:
        decided = closed if status == STATUS_WON else lost_at
        if decided is not None:  # always, by the conditions above
            out.append(TrainingDeal(account, status == STATUS_WON, decided))
    return out


def _attributes(payload: str) -> dict[str, str]:
    return dict(orjson.loads(payload).get("attributes") or {})


def attribute_changes(session: Session, account_ids: Iterable[str]) -> dict[str, list[Change]]:
    """Return each account's attribute changes, its own and its contacts' (by root contact)."""
    ids = sorted(set(account_ids))
    out: dict[str, list[Change]] = defaultdict(list)
    if not ids:
        return out
    for account, at, event_id, payload in session.execute(
        select(
            EventRow.account_id, EventRow.occurred_at, EventRow.event_id, EventRow.payload
        ).where(EventRow.type == "account.upserted", among(session, EventRow.account_id, ids))
    ):
        out[str(account)] += [
            Change(at, event_id, None, key, value) for key, value in _attributes(payload).items()
        ]
    for account, root, at, event_id, payload in session.execute(
        select(
            ContactRow.effective_account_id,
            ContactRow.root_contact_id,
            EventRow.occurred_at,
            EventRow.event_id,
            EventRow.payload,
        )
        .join(ContactRow, ContactRow.contact_id == EventRow.contact_id)
        .where(
            EventRow.type == "contact.upserted",
            among(session, ContactRow.effective_account_id, ids),
        )
    ):
        out[str(account)] += [
            Change(at, event_id, root, key, value) for key, value in _attributes(payload).items()
        ]
    return out


def account_touches(
    session: Session, account_ids: Iterable[str], *, before: datetime
) -> dict[str, list[Touch]]:
    """Return each account's touches before ``before``: its own and its contacts'."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    found = touches_of_accounts(session, [TouchRow.occurred_at < before], accounts=ids)
    return {
        account: [Touch(t.event_id, t.occurred_at, t.campaign_id, t.channel or "") for t in touches]
        for account, touches in found.items()
    }
