"""How a sender signs a ``generic`` webhook, written from the Standard Webhooks specification.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md:
the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, signed with HMAC-SHA256
under the base64-decoded part of a ``whsec_`` secret, sent as ``v1,<base64>``. Independent
of ``services`` on purpose: a test that signs with the code under test proves nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime


def standard_headers(
    body: bytes, *, secret: str, now: datetime, webhook_id: str | None = None
) -> dict[str, str]:
    """Return the three Standard Webhooks headers for ``body`` signed at ``now``."""
    msg_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(now.timestamp()))
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:  # not base64: the service documents using the text itself
        key = secret.encode()
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{digest}",
    }


def legacy_header(body: bytes, *, secret: str) -> dict[str, str]:
    """Return the legacy ``X-Closedloop-Signature`` header (hex HMAC-SHA256 of the body)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Closedloop-Signature": f"sha256={digest}"}


def headers(
    body: bytes, *, secret: str, url: str, method: str = "POST", now: datetime
) -> dict[str, str]:
    """Return the auth headers a Standard Webhooks sender attaches (the common signer shape)."""
    return standard_headers(body, secret=secret, now=now)


def sign(secret: str, body: bytes) -> str:
    """Return the legacy header's value."""
    return legacy_header(body, secret=secret)["X-Closedloop-Signature"]
