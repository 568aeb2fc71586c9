"""Small plain builders of canonical event dicts for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import EVENT_LIST_ADAPTER, Event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(days: float) -> str:
    """RFC 3339 timestamp ``days`` after T0."""
    return (T0 + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def campaign(
    cid: str, channel: str, *, eid: str | None = None, days: float = -100, sales: bool | None = None
) -> dict[str, Any]:
    e = {
        "event_id": eid or f"c-{cid}",
        "type": "campaign.upserted",
        "occurred_at": at(days),
        "campaign_id": cid,
        "name": f"Campaign {cid}",
        "channel": channel,
    }
    if sales is not None:
        e["is_sales_sourced"] = sales
    return e


def contact(
    cid: str,
    account: str | None,
    *,
    days: float = -90,
    eid: str | None = None,
    stage: str | None = None,
) -> dict[str, Any]:
    e = {
        "event_id": eid or f"ct-{cid}-{days}",
        "type": "contact.upserted",
        "occurred_at": at(days),
        "contact_id": cid,
        "account_id": account,
    }
    if stage:
        e["lifecycle_stage"] = stage
    return e


def touch(
    eid: str,
    campaign_id: str,
    days: float,
    *,
    contact: str | None = None,
    account: str | None = None,
    lead: bool = False,
) -> dict[str, Any]:
    e = {
        "event_id": eid,
        "type": "touch",
        "occurred_at": at(days),
        "campaign_id": campaign_id,
        "lead_created": lead,
    }
    if contact:
        e["contact_id"] = contact
    if account:
        e["account_id"] = account
    return e


def deal_created(
    did: str,
    account: str,
    amount: str,
    days: float,
    *,
    currency: str = "USD",
    contacts: list[str] | None = None,
) -> dict[str, Any]:
    e = {
        "event_id": f"{did}-created",
        "type": "deal.created",
        "occurred_at": at(days),
        "deal_id": did,
        "account_id": account,
        "amount": amount,
        "currency": currency,
    }
    if contacts is not None:
        e["contact_ids"] = contacts
    return e


def deal_status(
    did: str, kind: str, days: float, *, eid: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": eid or f"{did}-{kind}-{days}",
        "type": f"deal.{kind}",
        "occurred_at": at(days),
        "deal_id": did,
        **fields,
    }


def fx(day: str, base: str, quote: str, rate: str, *, eid: str | None = None) -> dict[str, Any]:
    return {
        "event_id": eid or f"fx-{day}-{base}{quote}",
        "type": "fx.rate",
        "occurred_at": f"{day}T00:00:00Z",
        "date": day,
        "base": base,
        "quote": quote,
        "rate": rate,
    }


def cost(
    eid: str, campaign_id: str, amount: str, start: str, end: str, currency: str = "USD"
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "campaign.cost",
        "occurred_at": f"{start}T00:00:00Z",
        "campaign_id": campaign_id,
        "amount": amount,
        "currency": currency,
        "period_start": start,
        "period_end": end,
    }


def events(*dicts: dict[str, Any]) -> list[Event]:
    """Validate dicts into canonical events."""
    return EVENT_LIST_ADAPTER.validate_python(list(dicts))
