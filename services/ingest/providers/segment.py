"""Segment: one message from the Webhooks destination (classic or Actions) → canonical events.

Authentication: Segment signs each request with the destination's shared secret,
``X-Signature: <hex HMAC-SHA1 of the body>``. The signature carries no timestamp, so a captured
request can be replayed; that is harmless, because a replay maps to the same event ids and the
worker counts it once. A batched request (a JSON array) is refused: Segment signs only its
first event, so the others would be unauthenticated.

Mapping invariants (the table is in the README, "CRM webhooks → Segment"):
- One message in, its events out in a fixed order; nothing depends on the clock.
- The message's main event has ``event_id`` ``segment:<messageId>``; a second event made from
  it gets a fixed suffix (``:merged``, ``:contact``, ``:anon``).
- ``occurred_at`` is ``timestamp`` (Segment's skew-corrected time), else
  ``originalTimestamp``, else ``sentAt``, rendered in UTC; Segment's timestamps are UTC, so one
  without an offset is read as UTC.
- A contact is its ``userId``, or ``anon:<anonymousId>`` for an anonymous visitor; an
  ``identify`` carrying both merges the anonymous contact into the known one.
- A touch's campaign is ``context.campaign.name`` (utm_campaign). Its definition
  (``campaign.upserted``, channel from utm_medium) is dated 1970-01-01 with an event id made of
  its content only, so every copy is a duplicate and a definition sent through the API wins.
- Messages that mean nothing for attribution are counted as ignored, never refused.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from services.core.settings import Settings
from services.ingest.providers.base import (
    SMALL_DELIVERY_BYTES,
    DefaultReplies,
    Delivery,
    Mapped,
    NotConfigured,
    Refused,
    malformed_field,
    secrets,
)
from services.ingest.providers.segment_fields import (
    ANON_PREFIX,
    attributes,
    channel_of,
    contact_of,
    lifecycle_stage,
    obj,
    occurred_at,
    parse_message,
    required_text,
    slug,
    text,
)

SETTING = "CLOSEDLOOP_WEBHOOK_SECRET_SEGMENT"
HEADER = "X-Signature"
# A SHA-1 hex digest is 40 characters; a much longer header is refused before any HMAC.
MAX_SIGNATURE_HEADER = 256
SOURCE = "segment"
# The campaign definition's fixed time: earlier than any real definition, which therefore wins.
CAMPAIGN_EPOCH = "1970-01-01T00:00:00Z"
MAX_EVENT_ID = 200
# So that ``segment:<messageId>:<suffix>`` stays within the 200 characters of an event id.
MAX_MESSAGE_ID = 150
MAX_ID = 200
MAX_NAME = 500
VIEW_TYPES = {"page": "page_view", "screen": "screen_view"}


def signature(secret: str, body: bytes) -> str:
    """Return Segment's ``X-Signature`` for ``body``: hex HMAC-SHA1 under ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def campaign_event_id(campaign_id: str, channel: str) -> str:
    """Return the id of the campaign definition a touch implies: the same for every copy."""
    event_id = f"segment:campaign:{campaign_id}:{channel}"
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    digest = hashlib.sha256(f"{campaign_id}\x00{channel}".encode()).hexdigest()
    return f"segment:campaign:sha256:{digest}"


def _envelope(message: dict[str, Any]) -> dict[str, Any]:
    """Return the fields every event made from ``message`` starts with."""
    message_id = required_text(message, "messageId", "messageId", max_len=MAX_MESSAGE_ID)
    return {
        "event_id": f"segment:{message_id}",
        "occurred_at": occurred_at(message),
        "source": SOURCE,
    }


def _touch(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Map a track, page or screen call with a UTM campaign to its campaign and its touch."""
    context = obj(message, "context", "context")
    campaign = obj(context, "campaign", "context.campaign")
    name = text(campaign, "name", "context.campaign.name", max_len=MAX_ID)
    if name is None:
        return []
    kind = message["type"]
    if kind == "track":
        event = required_text(message, "event", "event", max_len=None)
        touch_type = slug(event) or "track"
    else:
        touch_type = VIEW_TYPES[kind]
    touch = _envelope(message) | {
        "type": "touch",
        "campaign_id": name,
        "contact_id": contact_of(message),
        "touch_type": touch_type,
        "lead_created": obj(message, "properties", "properties").get("lead_created") is True,
    }
    account = text(context, "groupId", "context.groupId", max_len=MAX_ID)
    if account is not None:
        touch["account_id"] = account
    medium = campaign.get("medium")
    channel = channel_of(medium if isinstance(medium, str) else None)
    definition = {
        "type": "campaign.upserted",
        "event_id": campaign_event_id(name, channel),
        "occurred_at": CAMPAIGN_EPOCH,
        "source": SOURCE,
        "campaign_id": name,
        "name": name,
        "channel": channel,
    }
    return [definition, touch]


def _identify(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Map an identify call to the contact's attributes and stage (and an anonymous merge)."""
    user = text(message, "userId", "userId", max_len=MAX_ID)
    if user is None:
        return []
    envelope = _envelope(message)
    traits = obj(message, "traits", "traits")
    contact = envelope | {"type": "contact.upserted", "contact_id": user}
    stage = lifecycle_stage(traits)
    if stage is not None:
        contact["lifecycle_stage"] = stage
    found = attributes(traits)
    if found:
        contact["attributes"] = found
    events = [contact]
    anonymous = text(message, "anonymousId", "anonymousId", max_len=MAX_ID - len(ANON_PREFIX))
    if anonymous is not None and ANON_PREFIX + anonymous != user:
        merged = envelope | {"event_id": envelope["event_id"] + ":merged"}
        events.append(
            merged
            | {
                "type": "contact.merged",
                "contact_id": user,
                "merged_contact_id": ANON_PREFIX + anonymous,
            }
        )
    return events


def _group(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Map a group call to the account and the user's membership of it."""
    group = required_text(message, "groupId", "groupId", max_len=MAX_ID)
    envelope = _envelope(message)
    traits = obj(message, "traits", "traits")
    account = envelope | {"type": "account.upserted", "account_id": group}
    name = traits.get("name")
    if isinstance(name, str) and name.strip() and len(name) <= MAX_NAME and "\x00" not in name:
        account["name"] = name.strip()
    found = attributes(traits)
    if found:
        account["attributes"] = found
    member = envelope | {
        "event_id": envelope["event_id"] + ":contact",
        "type": "contact.upserted",
        "contact_id": contact_of(message),
        "account_id": group,
    }
    return [account, member]


def _alias(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Map an alias call to merges of the previous id, as a user id and as an anonymous id."""
    user = required_text(message, "userId", "userId", max_len=MAX_ID)
    limit = MAX_ID - len(ANON_PREFIX)
    previous = required_text(message, "previousId", "previousId", max_len=limit)
    envelope = _envelope(message)
    merge = envelope | {"type": "contact.merged", "contact_id": user}
    events = []
    if previous != user:
        events.append(merge | {"merged_contact_id": previous})
    if ANON_PREFIX + previous != user:
        anon_id = envelope["event_id"] + ":anon"
        events.append(merge | {"event_id": anon_id, "merged_contact_id": ANON_PREFIX + previous})
    return events


_HANDLERS = {
    "track": _touch,
    "page": _touch,
    "screen": _touch,
    "identify": _identify,
    "group": _group,
    "alias": _alias,
}


def map_message(message: dict[str, Any]) -> Mapped:
    """Map one Segment message to canonical events (others are counted as ignored)."""
    kind = message.get("type")
    if not isinstance(kind, str):
        problem = "required: a string (track, page, screen, identify, group or alias)"
        raise malformed_field("type", problem, "missing" if kind is None else "string_type")
    handler = _HANDLERS.get(kind)
    events = handler(message) if handler else []
    return Mapped(events, ignored=0 if events else 1)


class Segment(DefaultReplies):
    """Segment's Webhooks destination: ``X-Signature`` over one JSON message."""

    name = "segment"
    media_types = frozenset({"application/json"})
    # One message per request; Segment refuses messages over 32 KB.
    max_body_bytes: int | None = SMALL_DELIVERY_BYTES

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Accept a body whose ``X-Signature`` matches any configured shared secret."""
        keys = secrets(settings.webhook_secret_segment)
        if not keys:
            raise NotConfigured(SETTING)
        header = delivery.header(HEADER)
        if not header:
            raise Refused(
                f"missing {HEADER}: set a shared secret in the Segment destination's settings "
                "(the header is the hex HMAC-SHA1 of the body)"
            )
        if len(header) > MAX_SIGNATURE_HEADER:
            raise Refused(f"{HEADER} is too long")
        # Starlette decodes headers as latin-1, so this round-trips any header byte for byte.
        given = header.strip().lower().encode("latin-1")
        for secret in keys:
            if hmac.compare_digest(signature(secret, delivery.body).encode(), given):
                return
        if delivery.body.lstrip()[:1] == b"[":
            raise Refused(
                f"{HEADER} does not match: a batched request is signed over its first event "
                "only, so batches are not accepted (turn batching off in the Segment mapping)"
            )
        raise Refused(f"{HEADER} does not match the body under any configured secret")

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Parse the one message in the body and map it."""
        return map_message(parse_message(delivery.body))


PROVIDER = Segment()
