"""How Segment's Webhooks destination signs a request, written from Segment's documentation.

"Segment calculates a SHA1 digest using the shared secret and the JSON-stringified body of the
request" and sends it, hex-encoded, as ``X-Signature`` (segmentio/segment-docs,
src/connections/destinations/catalog/webhooks/index.md, "Authentication"). No timestamp is
signed, so ``now`` and ``url`` change nothing; they are accepted for the common signer shape.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime


def headers(
    body: bytes, *, secret: str, url: str, method: str = "POST", now: datetime
) -> dict[str, str]:
    """Return the headers Segment sends with ``body``: its ``X-Signature``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()
    return {"X-Signature": digest}
