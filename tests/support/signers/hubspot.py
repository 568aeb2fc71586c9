"""How HubSpot signs a webhook request, written from HubSpot's documentation (no ``services``).

Sources: "Validating requests" (developers.hubspot.com/docs/api/webhooks/validating-requests,
legacy apps, and .../developer-platform/build-apps/authentication/request-validation) and the
changelog "Introducing version 3 of Webhook signatures":
- v3: ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(key = client secret, message = UTF-8 of
  method + URI + body + timestamp)), ``X-HubSpot-Request-Timestamp`` = milliseconds since the
  epoch; the URI is the one HubSpot called with ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C
  %3B`` decoded.
- v1 (still sent alongside, "for backwards compatibility"): ``X-HubSpot-Signature`` = hex
  SHA-256 of client secret + body, with ``X-HubSpot-Signature-Version: v1``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def decoded_uri(url: str) -> str:
    """Return ``url`` with the percent-escapes HubSpot's v3 instructions list decoded."""
    out, i = [], 0
    while i < len(url):
        escape = url[i : i + 3].upper()
        if escape in _DECODED:
            out.append(_DECODED[escape])
            i += 3
        else:
            out.append(url[i])
            i += 1
    return "".join(out)


def v3_signature(body: bytes, *, secret: str, url: str, method: str, timestamp: str) -> str:
    """Return the ``X-HubSpot-Signature-v3`` value for these request parts."""
    source = method.encode("utf-8") + decoded_uri(url).encode("utf-8") + body
    source += timestamp.encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def v1_signature(body: bytes, *, secret: str) -> str:
    """Return the legacy ``X-HubSpot-Signature`` (v1) value: hex SHA-256 of secret + body."""
    return hashlib.sha256(secret.encode("utf-8") + body).hexdigest()


def headers(
    body: bytes, *, secret: str, url: str, method: str = "POST", now: datetime
) -> dict[str, str]:
    """Return the signature headers HubSpot sends with this request at time ``now``."""
    timestamp = str((now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))
    return {
        "X-HubSpot-Signature-v3": v3_signature(
            body, secret=secret, url=url, method=method, timestamp=timestamp
        ),
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature": v1_signature(body, secret=secret),
        "X-HubSpot-Signature-Version": "v1",
    }
