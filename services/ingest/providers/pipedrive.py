"""Pipedrive webhooks (v2 ``meta``/``data``/``previous`` and v1 ``meta``/``current``/``previous``).

Authentication is HTTP basic, as Pipedrive sends it when the webhook has ``http_auth_user`` and
``http_auth_password``: ``Authorization: Basic base64(user:password)``, compared in constant time
with every ``user:password`` pair of ``CLOSEDLOOP_WEBHOOK_BASIC_PIPEDRIVE``. Pipedrive signs
nothing and sends no timestamp, so there is no staleness check: a replayed delivery maps to the
same ``event_id``s and the worker counts it once.

Mapping invariants:
- ``event_id`` = ``pipedrive:<delivery key>:<canonical type>``. v2: the key is ``meta.id``, the
  id of the event that triggered the webhook (retries carry it unchanged, only ``meta.attempt``
  grows). v1 has no event id (``meta.id`` is the object's id), so the key is built from what a
  retry repeats: ``v1.<action>.<object>.<object id>.<meta.timestamp_micro or meta.timestamp>``.
- Ids are Pipedrive's own, as strings, unprefixed (deal "21", person "904", organization "1"),
  so the same ids sent through the canonical API join.
- Amounts are parsed from the JSON number exactly (``Decimal``, never float); one more precise
  than the currency's exponent is refused (422 naming the field, e.g. ``data.value``).
- Pipedrive times without an offset (v1 ``"2026-03-01 10:00:00"``) are UTC.
- A status event is emitted on creation when the deal is already won/lost, and on a change only
  when the status changed: v2 ``previous`` holds only the fields that changed, so a change is
  ``"status" in previous``; v1 ``previous`` is the whole prior object, so the statuses are
  compared (a v1 ``previous`` without a status cannot tell, and the current status is stated).
- Deletions, and entities other than deal, person and organization, are ``ignored``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.core.money import MoneyError, exponent, to_minor
from services.core.settings import Settings
from services.ingest.providers.base import (
    SMALL_DELIVERY_BYTES,
    DefaultReplies,
    Delivery,
    Malformed,
    Mapped,
    NotConfigured,
    Refused,
    malformed_field,
    secrets,
)

SETTING = "CLOSEDLOOP_WEBHOOK_BASIC_PIPEDRIVE"
_V1_ACTIONS = {"added": "create", "updated": "change", "merged": "change", "deleted": "delete"}
_V2_ACTIONS = {"create": "create", "change": "change", "delete": "delete"}
_MAPPED_ENTITIES = {"deal", "person", "organization"}
_MAX_AUTH_HEADER = 4096
_MAX_NAME, _MAX_ATTRIBUTE = 500, 200


@dataclass(frozen=True)
class _Change:
    """One Pipedrive event, whichever version sent it."""

    version: int
    key: str  # the delivery key inside event_id
    action: str  # create | change | delete
    entity: str
    current: Any
    previous: Any
    root: str  # where ``current`` lives in the payload: "data" (v2) or "current" (v1)
    meta_time: datetime


class PipedriveProvider(DefaultReplies):
    """Authenticate Pipedrive's basic-auth deliveries and map deals, persons, organizations."""

    name = "pipedrive"
    media_types = frozenset({"application/json"})
    # One object (v1: with its previous state) per request.
    max_body_bytes: int | None = SMALL_DELIVERY_BYTES

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Check the basic credentials against every configured ``user:password`` pair."""
        pairs = secrets(settings.webhook_basic_pipedrive)
        if not pairs:
            raise NotConfigured(SETTING)
        header = delivery.header("authorization")
        if header is None:
            raise Refused("missing Authorization header (HTTP basic auth of the Pipedrive webhook)")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic" or len(header) > _MAX_AUTH_HEADER:
            raise Refused("the Authorization header must use the Basic scheme")
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Refused("the Basic credentials are not valid base64") from None
        matched = False
        for pair in pairs:  # every pair is compared, so timing does not tell which one matched
            matched |= hmac.compare_digest(given, pair.encode("utf-8"))
        if not matched:
            raise Refused("the Basic credentials do not match any configured pair")

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Parse the body and map it to canonical events."""
        change = _change(_parse(delivery.body))
        if change.action == "delete" or change.entity not in _MAPPED_ENTITIES:
            return Mapped([], ignored=1)
        if not isinstance(change.current, dict):
            raise malformed_field(change.root, "must be an object", "dict_type")
        events = _ENTITY_MAPPERS[change.entity](change)
        return Mapped(events, ignored=0 if events else 1)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Malformed(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise malformed_field("body", "must be a JSON object (a Pipedrive webhook)", "dict_type")
    return parsed


def _change(body: dict[str, Any]) -> _Change:
    """Normalise a v1 or v2 body: detected by ``meta.version`` and the presence of ``current``."""
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise malformed_field("meta", "required: the webhook's meta object", "missing")
    if str(meta.get("version", "")).startswith("2"):
        action = _choice(meta, "action", _V2_ACTIONS)
        entity = _text(meta.get("entity"), "meta.entity")
        key = _id(meta.get("id"), "meta.id")
        current, previous = body.get("data"), body.get("previous")
        return _Change(2, key, action, entity, current, previous, "data", _meta_time(meta))
    if "current" in body or meta.get("v") == 1:
        action = _choice(meta, "action", _V1_ACTIONS)
        entity = _text(meta.get("object"), "meta.object")
        current, previous = body.get("current"), body.get("previous")
        source = current if isinstance(current, dict) else previous
        object_id = source.get("id") if isinstance(source, dict) else None
        object_id = _id(meta.get("id") if object_id is None else object_id, "current.id")
        stamp = meta.get("timestamp_micro") or meta.get("timestamp")
        key = f"v1.{meta['action']}.{entity}.{object_id}.{_id(stamp, 'meta.timestamp')}"
        return _Change(1, key, action, entity, current, previous, "current", _meta_time(meta))
    raise malformed_field("meta.version", 'unknown webhook format: expected v2 ("2.0") or v1')


def _meta_time(meta: dict[str, Any]) -> datetime:
    moment = _time(meta.get("timestamp"), "meta.timestamp")
    if moment is None:
        raise malformed_field("meta.timestamp", "required", "missing")
    return moment


def _deal(change: _Change) -> list[dict[str, Any]]:
    """Map a deal's creation or change: the deal's current fields, and its status when new."""
    deal, root = change.current, change.root
    deal_id = _id(deal.get("id"), f"{root}.id")
    fields: dict[str, Any] = {"deal_id": deal_id}
    money = _money(deal, root)
    fields.update(money)
    account = _ref(deal.get("org_id"), f"{root}.org_id")
    if account is not None:
        fields["account_id"] = account
    person = _ref(deal.get("person_id"), f"{root}.person_id")
    if person is not None:
        fields["contact_ids"] = [person]
    if deal.get("stage_id") is not None:
        fields["stage"] = _id(deal["stage_id"], f"{root}.stage_id")
    updated = _time(deal.get("update_time"), f"{root}.update_time") or change.meta_time
    events = []
    if change.action == "create":
        added = _time(deal.get("add_time"), f"{root}.add_time") or change.meta_time
        events.append(_event(change, "deal.created", added, fields))
    elif len(fields) > 1:  # deal.updated needs at least one change besides the id
        events.append(_event(change, "deal.updated", updated, fields))
    status = deal.get("status")
    if _status_changed(change, status):
        events.extend(_status_event(change, deal, status, updated, fields))
    return events


def _status_changed(change: _Change, status: Any) -> bool:
    """Tell whether this event changed the deal's status (see the module docstring)."""
    previous = change.previous
    if change.action == "create" or not isinstance(previous, dict):
        return True  # a new deal, or a change whose prior state is unknown: state the status
    if change.version == 2:
        return "status" in previous and previous["status"] != status
    return previous.get("status") != status


def _status_event(
    change: _Change, deal: dict[str, Any], status: Any, updated: datetime, fields: dict[str, Any]
) -> list[dict[str, Any]]:
    root, deal_id = change.root, fields["deal_id"]
    if status == "won":
        won = _time(deal.get("won_time"), f"{root}.won_time") or updated
        closing = {k: v for k, v in fields.items() if k not in ("contact_ids", "stage")}
        return [_event(change, "deal.closed_won", won, closing)]
    if status == "lost":
        lost = _time(deal.get("lost_time"), f"{root}.lost_time") or updated
        return [_event(change, "deal.closed_lost", lost, {"deal_id": deal_id})]
    if status == "open" and change.action == "change":
        return [_event(change, "deal.reopened", updated, {"deal_id": deal_id})]
    return []  # an open deal's creation, or a status outside open/won/lost ("deleted")


def _person(change: _Change) -> list[dict[str, Any]]:
    """Map a person to ``contact.upserted``; no organization is an explicit null account."""
    person, root = change.current, change.root
    fields = {
        "contact_id": _id(person.get("id"), f"{root}.id"),
        "account_id": _ref(person.get("org_id"), f"{root}.org_id"),
    }
    return [_event(change, "contact.upserted", _entity_time(change), fields)]


def _organization(change: _Change) -> list[dict[str, Any]]:
    """Map an organization to ``account.upserted`` with its name and country."""
    org, root = change.current, change.root
    fields: dict[str, Any] = {"account_id": _id(org.get("id"), f"{root}.id")}
    name = org.get("name")
    if isinstance(name, str) and name.strip():
        fields["name"] = name.strip()[:_MAX_NAME]
    # v1 flattens the address (``address_country``); v2 nests it (``address.country``).
    address = org.get("address")
    country = org.get("address_country")
    if isinstance(address, dict):
        country = address.get("country")
    if isinstance(country, str) and country.strip() and len(country.strip()) <= _MAX_ATTRIBUTE:
        fields["attributes"] = {"country": country.strip()}
    return [_event(change, "account.upserted", _entity_time(change), fields)]


_ENTITY_MAPPERS = {"deal": _deal, "person": _person, "organization": _organization}


def _entity_time(change: _Change) -> datetime:
    root, current = change.root, change.current
    return (
        _time(current.get("update_time"), f"{root}.update_time")
        or _time(current.get("add_time"), f"{root}.add_time")
        or change.meta_time
    )


def _event(
    change: _Change, type_: str, occurred: datetime, fields: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": f"pipedrive:{change.key}:{type_}",
        "type": type_,
        "occurred_at": _rfc3339(occurred),
        "source": "pipedrive",
        **fields,
    }


def _money(deal: dict[str, Any], root: str) -> dict[str, str]:
    """Return ``amount``+``currency`` from the deal's ``value``, exactly; {} when it has none."""
    value = deal.get("value")
    if value is None:
        return {}
    field = f"{root}.value"
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise malformed_field(field, "must be a JSON number", "decimal_type")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0 or amount.adjusted() > 18:
        raise malformed_field(field, "must be a non-negative amount below 10^19")
    text = "0" if amount == 0 else format(amount, "f")
    currency = deal.get("currency")
    if not isinstance(currency, str):
        raise malformed_field(f"{root}.currency", "required with value", "missing")
    currency = currency.upper()
    try:
        exponent(currency)
    except MoneyError as exc:
        raise malformed_field(f"{root}.currency", str(exc)) from None
    try:
        to_minor(text, currency)
    except MoneyError as exc:
        raise malformed_field(field, str(exc)) from None
    return {"amount": text, "currency": currency}


def _ref(value: Any, field: str) -> str | None:
    """Return a related object's id: an int or string, or (v1) an object with ``value``."""
    if isinstance(value, dict):
        value = value.get("value")
        field += ".value"
    return None if value is None else _id(value, field)


def _id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise malformed_field(field, "must be an id (an integer or a non-empty string)")
    text = str(value)
    if len(text) > 200 or "\x00" in text:
        raise malformed_field(field, "must be at most 200 characters, without NUL")
    return text


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise malformed_field(field, "required: a non-empty string", "missing")
    return value


def _choice(meta: dict[str, Any], name: str, allowed: dict[str, str]) -> str:
    value = meta.get(name)
    if value not in allowed:
        raise malformed_field(f"meta.{name}", "must be one of " + ", ".join(allowed))
    return allowed[value]


def _time(value: Any, field: str) -> datetime | None:
    """Parse a Pipedrive time: epoch seconds, ``YYYY-MM-DD HH:MM:SS`` (UTC) or ISO 8601."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise malformed_field(field, "must be a timestamp, e.g. 2026-03-01 10:00:00 or ISO 8601")


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


PROVIDER = PipedriveProvider()
