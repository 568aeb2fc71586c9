"""HubSpot webhooks: signature v3, then CRM object events mapped to canonical events.

HubSpot posts a JSON array of up to 100 events (``subscriptionType`` such as
``deal.propertyChange``, ``objectId``, ``occurredAt`` in milliseconds, ``propertyName`` and
``propertyValue``). It sends one property change at a time, never a whole object, so each
event becomes at most two small canonical events and the contract's "latest event carrying a
field wins" state puts the object back together.

Invariants:
- ``verify`` checks ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, method +
  URI + raw body + ``X-HubSpot-Request-Timestamp``)) on the raw bytes, before anything is parsed,
  and refuses a timestamp more than ``webhook_tolerance_s`` away from the arrival time (both
  ways). v1/v2 signatures sign no timestamp (a captured request replays forever): refused.
- ``event_id`` = ``hubspot:<portalId>:<eventId>:<subscriptionId>:<object id>[:<suffix>]``.
  ``attemptNumber`` is left out, so a retried delivery maps to identical events (duplicates);
  subscription and object are in because HubSpot documents that ``eventId`` alone "is not
  guaranteed to be unique".
- ``occurred_at`` is ``occurredAt`` as RFC 3339 UTC with milliseconds; ids are HubSpot's own
  object ids as unprefixed strings (deal ``"1234567"``), so canonical API events join them.
- Events that mean nothing for attribution (deletions, unmapped properties, unknown types,
  empty values) are counted as ignored; a field the mapping needs that is missing or of the
  wrong type is a 422 naming it (``[3].objectId``). Same delivery in, same events out.

The per-event mapping (and its tables) lives in ``hubspot_events.py``; this module
authenticates, parses and walks the array.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.core.settings import Settings
from services.ingest.providers import base
from services.ingest.providers.base import DefaultReplies, Delivery, Malformed, Mapped, Refused
from services.ingest.providers.hubspot_events import (
    HANDLERS,
    Config,
    HubSpotEvent,
    subscription_type,
)

SETTING = "CLOSEDLOOP_WEBHOOK_SECRET_HUBSPOT"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# HubSpot's v3 instructions: these percent-escapes in the URI are decoded before signing.
_URI_ESCAPES = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_URI_ESCAPE = re.compile("|".join(_URI_ESCAPES), re.IGNORECASE)
_MAX_AGE_DIGITS = 15  # milliseconds until the year 33658: anything longer is not a timestamp


def signed_uri(url: str) -> str:
    """Return the URI as HubSpot signs it: the listed percent-escapes decoded."""
    return _URI_ESCAPE.sub(lambda m: _URI_ESCAPES[m.group(0).upper()], url)


def _signature(secret: str, message: bytes) -> bytes:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def _check_timestamp(timestamp: str | None, delivery: Delivery, tolerance_s: int) -> None:
    if not timestamp:
        raise Refused("missing X-HubSpot-Request-Timestamp header (HubSpot signature v3)")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_AGE_DIGITS:
        raise Refused("X-HubSpot-Request-Timestamp must be milliseconds since the epoch")
    now_ms = (delivery.received_at - _EPOCH) // _MS
    if abs(now_ms - int(timestamp)) > tolerance_s * 1000:
        raise Refused(
            f"X-HubSpot-Request-Timestamp is more than {tolerance_s} s from now "
            "(a stale, replayed or future-dated request)"
        )


def _parse(body: bytes) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Malformed(
            400, "the body is not JSON (HubSpot posts a JSON array of events)"
        ) from None
    if not isinstance(parsed, list):
        raise base.malformed_field("body", "must be a JSON array of HubSpot events", "list_type")
    for i, item in enumerate(parsed):
        if not isinstance(item, dict):
            raise base.malformed_field(
                f"[{i}]", "must be an object (one HubSpot event)", "dict_type"
            )
    return parsed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class HubSpot(DefaultReplies):
    """The HubSpot provider: signature v3 and the CRM object events of the webhooks API."""

    name = "hubspot"
    media_types = frozenset({"application/json"})
    # At most 100 events of a few hundred bytes per request.
    max_body_bytes: int | None = base.SMALL_DELIVERY_BYTES

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Check the v3 signature and its timestamp on the raw request."""
        keys = base.secrets(settings.webhook_secret_hubspot)
        if not keys:
            raise base.NotConfigured(SETTING)
        signature = delivery.header("X-HubSpot-Signature-v3")
        if not signature:
            if delivery.header("X-HubSpot-Signature"):
                raise Refused(
                    "X-HubSpot-Signature (v1/v2) is not accepted: it signs no timestamp, so a "
                    "captured request could be replayed; HubSpot signature v3 "
                    "(X-HubSpot-Signature-v3 with X-HubSpot-Request-Timestamp) is required"
                )
            raise Refused("missing X-HubSpot-Signature-v3 header (HubSpot signature v3)")
        timestamp = delivery.header("X-HubSpot-Request-Timestamp")
        _check_timestamp(timestamp, delivery, settings.webhook_tolerance_s)
        message = b"".join(
            (delivery.method.encode(), signed_uri(delivery.url).encode(), delivery.body,
             str(timestamp).encode())
        )  # fmt: skip
        given = signature.encode("latin-1", "replace")
        # Every secret is tried (no early exit), so timing tells nothing about which matched.
        matches = [hmac.compare_digest(_signature(key, message), given) for key in keys]
        if not any(matches):
            raise Refused(
                "X-HubSpot-Signature-v3 does not match (HubSpot signature v3: base64 "
                "HMAC-SHA256 of method + URI + body + timestamp with the app's client secret)"
            )

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Map each HubSpot event of the array to canonical events, in the array's order."""
        config = Config.of(settings)
        events: list[dict[str, Any]] = []
        ignored = 0
        for i, item in enumerate(_parse(delivery.body)):
            ev = HubSpotEvent(item, f"[{i}]", config)
            handler = HANDLERS.get(subscription_type(ev))
            produced = handler(ev) if handler else []
            events.extend(produced)
            ignored += not produced
        return Mapped(events, ignored)


PROVIDER = HubSpot()
