"""How Pipedrive authenticates a webhook delivery, written from its documentation.

Pipedrive signs nothing: when a webhook has ``http_auth_user`` and ``http_auth_password``, every
request carries them as HTTP basic auth (RFC 7617), ``Authorization: Basic base64(user:password)``
("Webhooks service will send these Basic Authentication credentials in the header of every HTTP
request", https://pipedrive.readme.io/docs/guide-for-webhooks). No timestamp, URL or body enters
it, so ``body``, ``url``, ``method`` and ``now`` are accepted for the common signer signature and
unused. Independent of ``services`` on purpose.
"""

from __future__ import annotations

import base64
from datetime import datetime


def headers(
    body: bytes, *, secret: str, url: str, method: str = "POST", now: datetime
) -> dict[str, str]:
    """Return the Authorization header Pipedrive sends; ``secret`` is ``"user:password"``."""
    user, sep, password = secret.partition(":")
    if not sep:
        raise ValueError('secret must be "user:password"')
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}
