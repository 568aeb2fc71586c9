"""Project accounts' names and the attributes of accounts and contacts (no commits here).

Invariant: for every owner (account or contact) and key, the stored value is the one carried
by the latest event in (``occurred_at``, ``event_id``) order that carried that key, whatever
the order events arrive in: a batch keeps its latest value per key, and the write replaces a
stored value only when its stamp is later (``upsert_latest``). Re-applying a batch changes
nothing. Merges are not applied here: readers resolve a contact's attributes through
``contacts.root_contact_id`` (latest stamp per key among the merged contacts), so a merge
arriving late needs no rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.core.db.schema import AccountRow, AttributeRow
from services.core.db.upsert import insert_ignore, upsert_latest
from services.core.events import AccountUpserted, ContactUpserted, Event

Stamp = tuple[datetime, str]


def project_attributes(session: Session, new: Sequence[Event]) -> None:
    """Record the names and attribute values carried by newly stored events."""
    latest: dict[tuple[str, str, str], tuple[Stamp, str]] = {}
    names: dict[str, tuple[Stamp, str]] = {}
    known: set[str] = set()
    for e in new:
        if isinstance(e, AccountUpserted):
            owner = ("account", e.account_id)
            known.add(e.account_id)
            if e.name:
                _keep(names, e.account_id, (e.occurred_at, e.event_id), e.name)
        elif isinstance(e, ContactUpserted):
            owner = ("contact", e.contact_id)
        else:
            continue
        for key, value in (e.attributes or {}).items():
            _keep(latest, (*owner, key), (e.occurred_at, e.event_id), value)
    insert_ignore(session, AccountRow, [{"account_id": a} for a in sorted(known - set(names))])
    upsert_latest(
        session,
        AccountRow,
        [
            {"account_id": a, "name": name, "name_at": at, "name_event_id": event_id}
            for a, ((at, event_id), name) in sorted(names.items())
        ],
        stamp=("name_at", "name_event_id"),
    )
    upsert_latest(
        session,
        AttributeRow,
        [
            {
                "owner_kind": kind,
                "owner_id": owner_id,
                "key": key,
                "value": value,
                "occurred_at": at,
                "event_id": event_id,
            }
            for (kind, owner_id, key), ((at, event_id), value) in sorted(latest.items())
        ],
    )


def _keep(into: dict[Any, tuple[Stamp, str]], key: Any, stamp: Stamp, value: str) -> None:
    """Keep ``value`` under ``key`` if its stamp is the latest seen so far."""
    held = into.get(key)
    if held is None or held[0] < stamp:
        into[key] = (stamp, value)
