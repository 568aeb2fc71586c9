"""Salesforce Outbound Message envelopes: hardened parsing and typed reading of sObject fields.

The body is parsed by ``defusedxml`` with DTDs forbidden, so an entity (internal, external, or
a billion-laughs chain) or an external DTD is refused when its ``<!DOCTYPE`` is met, before
anything is defined or expanded. The tree is bounded as it is built (element depth and count),
so a deep or wide document is refused without materialising it. Every error is ``Malformed``:
400 when the body is not an outbound message at all, 422 naming the field (``OrganizationId``,
``Notification[2].sObject.Amount``; notifications are counted from 0) when a value is missing
or not of its Salesforce type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from services.core.fields import MAX_YEAR, MIN_YEAR
from services.ingest.providers.base import Malformed, malformed_field

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

# An outbound message is Envelope/Body/notifications/Notification/sObject/field: six levels.
MAX_DEPTH = 16
# 100 notifications (Salesforce's maximum) of a few hundred selected fields each.
MAX_ELEMENTS = 100_000
MAX_NOTIFICATIONS = 100
# Salesforce record ids: 15 characters (case-sensitive) or 18 (with a checksum suffix).
SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
# xsd:double as Salesforce writes currency fields: "45000.0", "1.25E7"; no sign, NaN or INF.
_XSD_NUMBER = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class _TooLarge(Exception):
    """The document nests deeper or holds more elements than an outbound message can."""


class _BoundedBuilder(TreeBuilder):
    """A tree builder that refuses a document deeper than MAX_DEPTH or wider than MAX_ELEMENTS."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._depth += 1
        self._count += 1
        if self._depth > MAX_DEPTH:
            raise _TooLarge(f"elements nest deeper than {MAX_DEPTH} levels")
        if self._count > MAX_ELEMENTS:
            raise _TooLarge(f"more than {MAX_ELEMENTS} elements")
        return super().start(tag, attrs)

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return super().end(tag)


def parse_notifications(body: bytes) -> Element:
    """Parse an outbound message (hardened) and return its ``notifications`` element."""
    parser = DefusedXMLParser(
        target=_BoundedBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(body)
        root = parser.close()
    except DefusedXmlException as exc:
        detail = f"the body declares a DTD or entity, which is not accepted ({type(exc).__name__})"
        raise Malformed(400, detail) from None
    except _TooLarge as exc:
        raise Malformed(400, f"the body is not an outbound message: {exc}") from None
    except (ParseError, ValueError) as exc:
        raise Malformed(400, f"the body is not well-formed XML: {exc}") from None
    body_element = root.find(f"{{{SOAP_ENV}}}Body")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or body_element is None:
        raise Malformed(400, "the body is not a SOAP 1.1 envelope (soapenv:Envelope/soapenv:Body)")
    notifications = body_element.find(f"{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise malformed_field("notifications", f"required: a notifications element ({OUTBOUND})")
    return notifications


def child_text(parent: Element, name: str) -> str | None:
    """Return the stripped text of ``parent``'s outbound-namespace child ``name``, or None."""
    element = parent.find(f"{{{OUTBOUND}}}{name}")
    if element is None or element.get(f"{{{XSI}}}nil") in ("true", "1"):
        return None
    return (element.text or "").strip() or None


def salesforce_id(value: str | None, field: str) -> str:
    """Return ``value`` if it is a 15- or 18-character Salesforce id, else raise 422."""
    if value is None:
        raise malformed_field(field, "required", "missing")
    if not SALESFORCE_ID.fullmatch(value):
        raise malformed_field(field, "must be a 15- or 18-character Salesforce id")
    return value


@dataclass(frozen=True)
class Record:
    """One notification: its id, its sObject's type and the fields the message selected."""

    index: int
    notification_id: str
    sobject_type: str
    fields: dict[str, str | None]  # a field sent as xsi:nil or empty is None

    def path(self, name: str) -> str:
        """Return the payload path of sObject field ``name``."""
        return f"Notification[{self.index}].sObject.{name}"

    def text(self, name: str, *, required: bool = False) -> str | None:
        """Return field ``name``'s text (None if absent or nil; 422 if required)."""
        value = self.fields.get(name)
        if value is None and required:
            raise malformed_field(self.path(name), "required", "missing")
        return value

    def reference(self, name: str, *, required: bool = False) -> str | None:
        """Return id field ``name`` (None if absent; 422 if required or not an id)."""
        value = self.text(name, required=required)
        return None if value is None else salesforce_id(value, self.path(name))

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        """Return xsd:boolean field ``name`` as a bool (None if absent)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        if value not in _BOOLEANS:
            raise malformed_field(self.path(name), "must be true or false")
        return _BOOLEANS[value]

    def timestamp(self, name: str, *, required: bool = False) -> str | None:
        """Return dateTime field ``name`` as given (RFC 3339 with offset), after checking it."""
        value = self.text(name, required=required)
        if value is None:
            return None
        match = _DATETIME.fullmatch(value)
        problem = "must be a Salesforce dateTime like 2026-03-01T10:00:00.000Z"
        if match is None:
            raise malformed_field(self.path(name), problem)
        try:
            moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise malformed_field(self.path(name), problem) from None
        if not MIN_YEAR <= moment.year <= MAX_YEAR:
            raise malformed_field(self.path(name), f"year must be {MIN_YEAR}-{MAX_YEAR}")
        return value

    def number(self, name: str) -> Decimal | None:
        """Return xsd:double field ``name`` exactly, as a Decimal (never through float)."""
        value = self.text(name)
        if value is None:
            return None
        if len(value) > 40 or not _XSD_NUMBER.fullmatch(value):
            raise malformed_field(self.path(name), "must be a non-negative number like 12500.0")
        return Decimal(value)


def read_record(notification: Element, index: int) -> Record:
    """Read one ``Notification`` element: its ``Id``, ``sObject`` type and fields."""
    prefix = f"Notification[{index}]"
    notification_id = salesforce_id(child_text(notification, "Id"), f"{prefix}.Id")
    sobject = notification.find(f"{{{OUTBOUND}}}sObject")
    if sobject is None:
        raise malformed_field(f"{prefix}.sObject", "required", "missing")
    # xsi:type is a QName ("sf:Opportunity"); ElementTree keeps no prefix map, so the local
    # part names the type (Salesforce always binds the prefix to the sobject namespace).
    declared = sobject.get(f"{{{XSI}}}type", "")
    sobject_type = declared.rpartition(":")[2]
    if not sobject_type:
        raise malformed_field(f"{prefix}.sObject", "needs an xsi:type such as sf:Opportunity")
    fields: dict[str, str | None] = {}
    for element in sobject:
        namespace, _, name = element.tag[1:].partition("}")
        if namespace != SOBJECT:
            continue
        if name in fields:
            raise malformed_field(f"{prefix}.sObject.{name}", "appears more than once")
        nil = element.get(f"{{{XSI}}}nil") in ("true", "1")
        fields[name] = None if nil else (element.text or "").strip() or None
    return Record(index, notification_id, sobject_type, fields)


def read_records(notifications: Element) -> list[Record]:
    """Read every ``Notification`` (1 to 100, as Salesforce sends) in document order."""
    elements = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not elements:
        raise malformed_field("Notification", "required: at least one notification", "missing")
    if len(elements) > MAX_NOTIFICATIONS:
        problem = f"at most {MAX_NOTIFICATIONS} notifications in one message"
        raise malformed_field("Notification", problem)
    return [read_record(element, index) for index, element in enumerate(elements)]
