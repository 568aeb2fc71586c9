"""Salesforce Outbound Messages (SOAP 1.1) → canonical events.

Authentication: Outbound Messages carry no signature. The sender is recognised by the
``OrganizationId`` inside the body, compared (first 15 characters, case-sensitive, constant
time) with ``CLOSEDLOOP_SALESFORCE_ORG_IDS``; so ``verify`` must parse the body first, the one
provider where that is unavoidable, and it parses with the hardened parser of
``salesforce_soap`` (no DTD, no entity, bounded depth and size). TLS client certificates and
an allow-list of Salesforce's IP ranges belong in front of this service.

Mapping invariants:
- Each notification's ``Id`` is the same on every retry, and is in every ``event_id`` made
  from it (``salesforce:<org15>:<notification id>:<suffix>``), so a retried message is a
  duplicate. Facts that never change (an opportunity's creation, its primary campaign, a
  campaign response) are keyed by the record instead (``salesforce:<org15>:opportunity:<id>
  :created``) and carry identical content on every notification: duplicates, never conflicts.
- Ids are Salesforce's own, unprefixed (``deal_id`` "0065w000023STAmAAO"), so the same ids
  sent through the canonical API join.
- Amounts are read as decimals from the text (never float) and must fit the currency exactly.
- Notifications of other sObject types, and campaign members that have not responded, are
  counted as ignored. Events come out in notification order, in a fixed order per record.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from services.core.events import MAX_AMOUNT_MINOR
from services.core.money import MoneyError, check_currency, exponent, format_minor
from services.core.settings import Settings
from services.ingest.providers.base import (
    Delivery,
    Mapped,
    NotConfigured,
    Refused,
    Reply,
    malformed_field,
)
from services.ingest.providers.salesforce_soap import (
    SALESFORCE_ID,
    SOAP_ENV,
    Record,
    child_text,
    parse_notifications,
    read_records,
    salesforce_id,
)

SETTING = "CLOSEDLOOP_SALESFORCE_ORG_IDS"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
).encode()
# Characters XML 1.0 cannot carry, even escaped: replaced in a fault string.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_FAULT_CHARS = 1000

Event = dict[str, Any]


def allowed_org_ids(value: str | None) -> list[str]:
    """Return the configured organisation ids' 15-character forms: NotConfigured if none."""
    ids = [part.strip() for part in (value or "").split(",")]
    valid = [org[:15] for org in ids if SALESFORCE_ID.fullmatch(org)]
    if not valid:
        raise NotConfigured(SETTING)
    return valid


def org_matches(org_id: str, allowed: list[str]) -> bool:
    """Return whether ``org_id`` is one of ``allowed`` (15-character forms), in constant time."""
    given = org_id[:15].encode()
    # Every entry is compared (no early exit), so the time says nothing about which matched.
    return any([hmac.compare_digest(given, candidate.encode()) for candidate in allowed])


def _event(event_id: str, type_: str, at: str, **fields: str) -> Event:
    return {"event_id": event_id, "type": type_, "occurred_at": at, "source": "salesforce"} | fields


def _amount(record: Record, settings: Settings) -> dict[str, str]:
    """Return ``{"amount", "currency"}`` from Amount and CurrencyIsoCode, or {} if no Amount."""
    value = record.number("Amount")
    if value is None:
        return {}
    # CurrencyIsoCode exists only in multi-currency orgs; otherwise the org has one currency.
    currency = (record.text("CurrencyIsoCode") or settings.reporting_currency).upper()
    try:
        check_currency(currency)
    except MoneyError as exc:
        raise malformed_field(record.path("CurrencyIsoCode"), str(exc)) from None
    minor = value.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        problem = f"{record.text('Amount')} has more decimal places than {currency} allows"
        raise malformed_field(record.path("Amount"), problem)
    if minor > MAX_AMOUNT_MINOR:
        raise malformed_field(record.path("Amount"), "is too large")
    return {"amount": format_minor(int(minor), currency), "currency": currency}


def _status(record: Record) -> str | None:
    """Return the status event type from IsWon and IsClosed, or None when neither was sent."""
    won, closed = record.boolean("IsWon"), record.boolean("IsClosed")
    if won:
        return "deal.closed_won"
    if won is False and closed is None:
        raise malformed_field(record.path("IsClosed"), "required with IsWon false", "missing")
    if closed is None:
        return None
    if closed and won is None:
        raise malformed_field(record.path("IsWon"), "required with IsClosed true", "missing")
    return "deal.closed_lost" if closed else "deal.reopened"


def _opportunity(record: Record, org15: str, settings: Settings) -> list[Event]:
    """Map an Opportunity: its creation, primary campaign, changes and status."""
    deal_id = salesforce_id(record.text("Id", required=True), record.path("Id"))
    changed_at = record.timestamp("LastModifiedDate") or record.timestamp("SystemModstamp")
    if changed_at is None:
        raise malformed_field(record.path("LastModifiedDate"), "required", "missing")
    created_at = record.timestamp("CreatedDate")
    account_id = record.reference("AccountId")
    campaign_id = record.reference("CampaignId")
    stage = record.text("StageName")
    money = _amount(record, settings)
    status = _status(record)
    record_key = f"salesforce:{org15}:opportunity:{deal_id}"
    notification_key = f"salesforce:{org15}:{record.notification_id}"
    events: list[Event] = []
    if created_at is not None:
        events.append(_event(f"{record_key}:created", "deal.created", created_at, deal_id=deal_id))
        if campaign_id is not None and account_id is not None:
            # The primary campaign source: a touch of the account when the opportunity was made.
            touch_id = f"{record_key}:campaign:{campaign_id}"
            touch = _event(touch_id, "touch", created_at, campaign_id=campaign_id)
            events.append(touch | {"account_id": account_id, "touch_type": "primary_campaign"})
    changes = money | {
        name: value for name, value in (("stage", stage), ("account_id", account_id)) if value
    }
    if changes:
        updated = _event(f"{notification_key}:updated", "deal.updated", changed_at, deal_id=deal_id)
        events.append(updated | changes)
    if status is not None:
        won_money = money if status == "deal.closed_won" else {}
        events.append(
            _event(f"{notification_key}:status", status, changed_at, deal_id=deal_id) | won_money
        )
    return events


def _campaign_member(record: Record, org15: str, settings: Settings) -> list[Event]:
    """Map a CampaignMember that has responded to a campaign-response touch."""
    if not record.boolean("HasResponded", required=True):
        return []  # sent, not responded: Salesforce's campaign influence counts responses only
    member_id = salesforce_id(record.text("Id", required=True), record.path("Id"))
    campaign_id = record.reference("CampaignId", required=True)
    person = record.reference("ContactId") or record.reference("LeadId")
    account_id = None if person else record.reference("AccountId")
    if person is None and account_id is None:
        raise malformed_field(record.path("ContactId"), "required (or LeadId)", "missing")
    created_at = record.timestamp("CreatedDate", required=True)
    assert created_at is not None and campaign_id is not None  # required=True raised otherwise
    event_id = f"salesforce:{org15}:campaignmember:{member_id}"
    touch = _event(event_id, "touch", created_at, campaign_id=campaign_id)
    touch |= {"contact_id": person} if person else {"account_id": account_id}
    return [touch | {"touch_type": "campaign_response"}]


_MAPPERS: dict[str, Callable[[Record, str, Settings], list[Event]]] = {
    "Opportunity": _opportunity,
    "CampaignMember": _campaign_member,
}


def _fault(code: str, message: str) -> bytes:
    text = escape(_NOT_XML.sub("?", message[:MAX_FAULT_CHARS]))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>soapenv:{code}</faultcode><faultstring>{text}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


class SalesforceProvider:
    """Outbound Messages: organisation id check, Opportunity and CampaignMember mapping."""

    name = "salesforce"
    # SOAP 1.1 is posted as text/xml; application/xml is accepted for proxies that rewrite it.
    media_types = frozenset({"text/xml", "application/xml"})
    # Up to 100 notifications whose long text fields may hold 131,072 characters each.
    max_body_bytes: int | None = None

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Check the message's OrganizationId against the setting (parsing it hardened)."""
        allowed = allowed_org_ids(settings.salesforce_org_ids)
        org_id = child_text(parse_notifications(delivery.body), "OrganizationId")
        if org_id is None:
            raise Refused("the outbound message has no OrganizationId")
        if not SALESFORCE_ID.fullmatch(org_id):
            raise Refused("OrganizationId is not a 15- or 18-character Salesforce id")
        if not org_matches(org_id, allowed):
            raise Refused(f"OrganizationId is not one of the organizations in {SETTING}")

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Map every notification of the message, in order; other sObject types are ignored."""
        notifications = parse_notifications(delivery.body)
        org15 = salesforce_id(child_text(notifications, "OrganizationId"), "OrganizationId")[:15]
        events: list[Event] = []
        ignored = 0
        records = read_records(notifications)
        for record in records:
            mapper = _MAPPERS.get(record.sobject_type)
            mapped = mapper(record, org15, settings) if mapper else []
            ignored += not mapped
            events.extend(mapped)
        context = {"notification_ids": [record.notification_id for record in records]}
        return Mapped(events=events, ignored=ignored, context=context)

    def accepted(self, mapped: Mapped, published: int) -> Reply | None:
        """Acknowledge the whole message: Salesforce stops retrying it on ``<Ack>true</Ack>``."""
        return Reply(200, ACK, "text/xml")

    def failed(self, status: int, problem: dict[str, Any]) -> Reply | None:
        """Answer a SOAP 1.1 fault with the cause's status: Salesforce retries it for 24 h.

        SOAP 1.1 sends faults with HTTP 500, but Salesforce treats every answer other than
        an ack alike (it retries), so the status is free to say the cause: a wrong org id is
        401, a bomb 400, an outage 503 — what operators and proxies log and alert on.
        """
        code = "Client" if status < 500 else "Server"
        message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        return Reply(status, _fault(code, message), "text/xml")


PROVIDER = SalesforceProvider()
