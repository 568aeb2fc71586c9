"""HubSpot's CRM object events, one at a time, as canonical events (used by ``hubspot.py``).

Each handler takes one HubSpot event and returns the canonical events it means, in a fixed
order: none (ignored), one, or two with fixed suffixes (a stage change is a ``deal.updated``
carrying the stage, ``:stage``, and a status event, ``:status``). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.core.money import MoneyError, format_minor, to_minor
from services.core.settings import Settings
from services.ingest.providers import base

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ID = re.compile(r"^[0-9]{1,20}$")
# occurredAt past the contract's last year is refused before it could overflow a datetime.
_MAX_MILLIS = (datetime(2201, 1, 1, tzinfo=UTC) - _EPOCH) // _MS


# HubSpot's default lifecycle stage ids; "other" and custom (numeric) stages mean nothing here.
LIFECYCLE_STAGES = {
    "subscriber": "subscriber",
    "lead": "lead",
    "marketingqualifiedlead": "mql",
    "salesqualifiedlead": "sql",
    "opportunity": "opportunity",
    "customer": "customer",
    "evangelist": "customer",  # a customer who promotes: still a customer in the funnel
}
CONTACT_ATTRIBUTES = {"jobtitle": "title"}
COMPANY_ATTRIBUTES = {
    "industry": "industry",
    "numberofemployees": "employees",
    "country": "country",
}
# associationType → (canonical type, the side that is the subject, the side that is the account).
ASSOCIATIONS = {
    "DEAL_TO_COMPANY": ("deal.updated", "fromObjectId", "toObjectId"),
    "COMPANY_TO_DEAL": ("deal.updated", "toObjectId", "fromObjectId"),
    "CONTACT_TO_COMPANY": ("contact.upserted", "fromObjectId", "toObjectId"),
    "COMPANY_TO_CONTACT": ("contact.upserted", "toObjectId", "fromObjectId"),
}
# The generic ("object.*") subscription format names the object by its type id.
_OBJECT_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
_MAX_ATTRIBUTE, _MAX_NAME = 200, 500


@dataclass(frozen=True)
class Config:
    """The settings a mapping reads: deal currency, won and lost stage ids."""

    currency: str
    won: frozenset[str]
    lost: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> Config:
        """Read the mapping's settings."""
        return cls(
            settings.hubspot_currency or settings.reporting_currency,
            frozenset(base.secrets(settings.hubspot_won_stages)),
            frozenset(base.secrets(settings.hubspot_lost_stages)),
        )


@dataclass(frozen=True)
class HubSpotEvent:
    """One HubSpot event of the array, at ``path`` (``[3]``), with typed field access."""

    item: dict[str, Any]
    path: str
    config: Config

    def field(self, name: str) -> str:
        """Return the payload path of field ``name`` (``[3].objectId``)."""
        return f"{self.path}.{name}"

    def id(self, name: str, problem: str = "must be a non-negative integer id") -> str:
        """Return field ``name`` as an id string: a non-negative integer (or its digits)."""
        return _as_id(self.item.get(name), self.field(name), problem)

    def text(self, name: str) -> str:
        """Return ``propertyValue``-like field ``name`` as text; null means empty."""
        value = self.item.get(name, ...)
        if value is ...:
            raise base.malformed_field(self.field(name), "required", "missing")
        if value is None:
            return ""
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return format(value, "f") if isinstance(value, Decimal) else str(value)
        if not isinstance(value, str):
            raise base.malformed_field(self.field(name), "must be a string", "string_type")
        return value.replace("\x00", "")  # canonical text never holds NUL

    def occurred_at(self) -> str:
        millis = int(self.id("occurredAt", "must be milliseconds since the epoch"))
        if millis >= _MAX_MILLIS:
            raise base.malformed_field(self.field("occurredAt"), "must be a time before 2201")
        moment = _EPOCH + millis * _MS
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"

    def event(self, type_: str, subject: str, suffix: str = "", **fields: Any) -> dict[str, Any]:
        """Return a canonical event of ``type_`` made from this HubSpot event."""
        parts = [self.id("portalId"), self.id("eventId"), self.id("subscriptionId"), subject]
        event_id = "hubspot:" + ":".join(parts) + (f":{suffix}" if suffix else "")
        return {
            "event_id": event_id,
            "type": type_,
            "occurred_at": self.occurred_at(),
            "source": "hubspot",
            **fields,
        }


def _as_id(value: Any, field: str, problem: str) -> str:
    if value is None:
        raise base.malformed_field(field, "required", "missing")
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _ID.match(text):
        raise base.malformed_field(field, problem)
    return text


Handler = Callable[[HubSpotEvent], list[dict[str, Any]]]


def _contact_created(ev: HubSpotEvent) -> list[dict[str, Any]]:
    contact = ev.id("objectId")
    return [ev.event("contact.upserted", contact, contact_id=contact)]


def _contact_property(ev: HubSpotEvent) -> list[dict[str, Any]]:
    contact, name, value = ev.id("objectId"), _property(ev), ev.text("propertyValue")
    fields: dict[str, Any]
    if name == "lifecyclestage" and value in LIFECYCLE_STAGES:
        fields = {"lifecycle_stage": LIFECYCLE_STAGES[value]}
    elif name == "associatedcompanyid":
        fields = {"account_id": value or None}  # cleared: detached from its company
    elif name in CONTACT_ATTRIBUTES:
        fields = {"attributes": {CONTACT_ATTRIBUTES[name]: value[:_MAX_ATTRIBUTE]}}
    else:
        return []
    return [ev.event("contact.upserted", contact, contact_id=contact, **fields)]


def _contact_merged(ev: HubSpotEvent) -> list[dict[str, Any]]:
    survivor = ev.id("primaryObjectId")
    merged = ev.item.get("mergedObjectIds")
    if not isinstance(merged, list):
        raise base.malformed_field(ev.field("mergedObjectIds"), "must be a list of ids")
    problem = "must be a non-negative integer id"
    absorbed = [
        _as_id(m, f"{ev.field('mergedObjectIds')}[{i}]", problem) for i, m in enumerate(merged)
    ]
    if ev.item.get("newObjectId") is not None and ev.id("newObjectId") != survivor:
        # HubSpot made a new record of the merge: the primary is absorbed into it too.
        absorbed, survivor = [survivor, *absorbed], ev.id("newObjectId")
    ids = list(dict.fromkeys(a for a in absorbed if a != survivor))
    return [
        ev.event("contact.merged", survivor, a, contact_id=survivor, merged_contact_id=a)
        for a in ids
    ]


def _company_created(ev: HubSpotEvent) -> list[dict[str, Any]]:
    company = ev.id("objectId")
    return [ev.event("account.upserted", company, account_id=company)]


def _company_property(ev: HubSpotEvent) -> list[dict[str, Any]]:
    company, name, value = ev.id("objectId"), _property(ev), ev.text("propertyValue")
    fields: dict[str, Any]
    if name == "name" and value:
        fields = {"name": value[:_MAX_NAME]}
    elif name in COMPANY_ATTRIBUTES:
        fields = {"attributes": {COMPANY_ATTRIBUTES[name]: value[:_MAX_ATTRIBUTE]}}
    else:
        return []
    return [ev.event("account.upserted", company, account_id=company, **fields)]


def _deal_created(ev: HubSpotEvent) -> list[dict[str, Any]]:
    deal = ev.id("objectId")
    return [ev.event("deal.created", deal, deal_id=deal)]


def _deal_property(ev: HubSpotEvent) -> list[dict[str, Any]]:
    deal, name = ev.id("objectId"), _property(ev)
    if name not in ("dealstage", "amount"):
        return []
    value = ev.text("propertyValue")
    if not value:
        return []
    if name == "amount":
        currency = ev.config.currency
        try:
            amount = format_minor(to_minor(value, currency), currency)
        except MoneyError as exc:
            raise base.malformed_field(ev.field("propertyValue"), str(exc)) from None
        return [ev.event("deal.updated", deal, deal_id=deal, amount=amount, currency=currency)]
    status = "deal.reopened"  # an open stage: a deal won or lost before is open again
    if value in ev.config.won:
        status = "deal.closed_won"
    elif value in ev.config.lost:
        status = "deal.closed_lost"
    return [
        ev.event("deal.updated", deal, "stage", deal_id=deal, stage=value),
        ev.event(status, deal, "status", deal_id=deal),
    ]


def _association(ev: HubSpotEvent) -> list[dict[str, Any]]:
    kind = ASSOCIATIONS.get(str(ev.item.get("associationType")))
    if kind is None:
        return []
    removed = ev.item.get("associationRemoved")
    if not isinstance(removed, bool):
        raise base.malformed_field(ev.field("associationRemoved"), "must be true or false")
    if removed:
        return []
    type_, subject_side, account_side = kind
    subject, account = ev.id(subject_side), ev.id(account_side)
    pair = f"{ev.id('fromObjectId')}-{ev.id('toObjectId')}"
    if type_ == "deal.updated":
        return [ev.event(type_, pair, deal_id=subject, account_id=account)]
    return [ev.event(type_, pair, contact_id=subject, account_id=account)]


def _property(ev: HubSpotEvent) -> str:
    name = ev.item.get("propertyName")
    if not isinstance(name, str):
        raise base.malformed_field(ev.field("propertyName"), "required (a string)", "missing")
    return name


HANDLERS: dict[str, Handler] = {
    "contact.creation": _contact_created,
    "contact.propertyChange": _contact_property,
    "contact.merge": _contact_merged,
    "contact.associationChange": _association,
    "company.creation": _company_created,
    "company.propertyChange": _company_property,
    "company.associationChange": _association,
    "deal.creation": _deal_created,
    "deal.propertyChange": _deal_property,
    "deal.associationChange": _association,
}


def subscription_type(ev: HubSpotEvent) -> str:
    # Some of HubSpot's samples spell it ``eventType``; the generic format says ``object.*``.
    name = ev.item.get("subscriptionType", ev.item.get("eventType"))
    if not isinstance(name, str):
        raise base.malformed_field(ev.field("subscriptionType"), "required (a string)", "missing")
    prefix, _, action = name.partition(".")
    if prefix == "object":
        object_name = _OBJECT_TYPE_IDS.get(str(ev.item.get("objectTypeId")), "other")
        return f"{object_name}.{action}"
    return name
