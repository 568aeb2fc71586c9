"""``generic``: canonical events signed with the Standard Webhooks scheme.

The body is what ``POST /v1/events`` takes (one event, or ``{"events": [...]}``), so every
event already carries its own ``event_id``: that is the idempotency key, and a retried
delivery is a duplicate of it. The request is authenticated before anything is parsed:

- **Standard Webhooks** (https://www.standardwebhooks.com): ``webhook-id``,
  ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``, a space-separated list of
  ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``; any one matching any configured
  secret is enough (rotation). A ``whsec_<base64>`` secret's key is its decoded base64 (the
  prefix is optional); a secret that is not base64 is used as its UTF-8 bytes. A timestamp
  further than the tolerance (5 minutes by default) from now, either way, is refused: a
  captured request cannot be replayed later.
- **Legacy** ``X-Closedloop-Signature: sha256=<hex HMAC-SHA256 of the body>`` under a secret's
  UTF-8 text, accepted only when no ``webhook-signature`` is sent. It has no timestamp, so a
  replay is possible; it is harmless (events are idempotent) and documented as legacy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from services.core.settings import Settings
from services.ingest.parsing import body_items
from services.ingest.providers.base import (
    DefaultReplies,
    Delivery,
    Malformed,
    Mapped,
    NotConfigured,
    Refused,
    secrets,
)

SETTING = "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC"
LEGACY_HEADER = "X-Closedloop-Signature"
# Longer than any real header value; a longer one is refused before any HMAC is computed.
MAX_SIGNATURE_HEADER = 4096


def signing_key(secret: str) -> bytes:
    """Return the HMAC key of a Standard Webhooks secret: its base64 (after ``whsec_``), or text.

    As the specification's libraries do, the ``whsec_`` prefix is optional; a secret that is
    not base64 at all is used as its UTF-8 bytes (documented), so any string works.
    """
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


def legacy_signature(secret: str, body: bytes) -> str:
    """Return the legacy header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _standard_signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{webhook_id}.{timestamp}.".encode("latin-1") + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())


class Generic(DefaultReplies):
    """Standard Webhooks (and the legacy body HMAC) over canonical events."""

    name = "generic"
    media_types = frozenset({"application/json"})
    max_body_bytes: int | None = None  # canonical batches, as large as POST /v1/events takes

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Accept a delivery signed by any configured secret, within the tolerance."""
        keys = secrets(settings.webhook_secret_generic)
        if not keys:
            raise NotConfigured(SETTING)
        signatures = delivery.header("webhook-signature")
        if signatures is None and delivery.header(LEGACY_HEADER) is not None:
            self._verify_legacy(delivery, keys)
            return
        webhook_id = delivery.header("webhook-id")
        timestamp = delivery.header("webhook-timestamp")
        if not (signatures and webhook_id and timestamp):
            raise Refused(
                "send the Standard Webhooks headers webhook-id, webhook-timestamp and "
                "webhook-signature (v1,<base64 HMAC-SHA256 of id.timestamp.body>)"
            )
        if len(signatures) > MAX_SIGNATURE_HEADER or len(webhook_id) > 256:
            raise Refused("webhook-signature or webhook-id is too long")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise Refused("webhook-timestamp must be Unix seconds")
        skew = abs(delivery.received_at.timestamp() - int(timestamp))
        if skew > settings.webhook_tolerance_s:
            raise Refused(
                f"webhook-timestamp is {int(skew)} s from now; at most "
                f"{settings.webhook_tolerance_s} s is accepted (a stale or replayed request)"
            )
        given = [
            s.split(",", 1)[1].encode("latin-1") for s in signatures.split() if s.startswith("v1,")
        ]
        for secret in keys:
            key = signing_key(secret)
            expected = _standard_signature(key, webhook_id, timestamp, delivery.body)
            if any(hmac.compare_digest(expected, sig) for sig in given):
                return
        raise Refused("webhook-signature does not match the body under any configured secret")

    def _verify_legacy(self, delivery: Delivery, keys: list[str]) -> None:
        header = delivery.header(LEGACY_HEADER) or ""
        if len(header) > MAX_SIGNATURE_HEADER:
            raise Refused(f"{LEGACY_HEADER} is too long")
        # Starlette decodes headers as latin-1, so this round-trips any header byte for byte.
        given = header.strip().lower().encode("latin-1")
        for secret in keys:
            if hmac.compare_digest(legacy_signature(secret, delivery.body).encode(), given):
                return
        raise Refused(f"missing or bad {LEGACY_HEADER}: expected sha256=<hex HMAC of the body>")

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Return the body's canonical event items (the route validates them, all or nothing)."""
        try:
            body: Any = orjson.loads(delivery.body)
        except orjson.JSONDecodeError as exc:
            raise Malformed(400, f"the body is not valid JSON: {exc}") from None
        items, prefix = body_items(body, max_events=settings.max_batch_events)
        return Mapped(items, context={"prefix": prefix})


PROVIDER = Generic()
