"""The webhook provider interface: authenticate a delivery, then map it to canonical events.

A provider is one module (``hubspot.py``, ``pipedrive.py``, …) exposing one ``Provider``
object; the route only dispatches (``routes/webhooks.py``), so adding a CRM is adding a file
and a line in ``providers/__init__.py``.

Everything here is pure: a ``Delivery`` carries the raw body, the headers, the URL the
provider called and the time it arrived (the clock is read by the route, not here), and the
provider's settings come in as values. The route guarantees the order the contract asks for:
``verify`` runs on the raw bytes before anything is parsed, and nothing is published unless
``verify`` and ``map`` both succeed and the canonical events validate (all or nothing).

Rules every provider follows (contract §1, §6):
- The provider's delivery or event id is part of every canonical ``event_id``
  (``<provider>:<its id>[:<suffix>]``), so a retried delivery maps to the same events and the
  worker counts it once. Two canonical events made from one provider event get fixed suffixes.
- Each canonical event carries ``source`` = the provider's name.
- Signatures are compared in constant time (``hmac.compare_digest``); a refusal names the
  header and the scheme, never a secret.
- Provider events that mean nothing for attribution (an unsubscribed property, a deletion)
  are counted as ``ignored``, not refused: the provider would otherwise retry them for days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.core.settings import Settings


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the provider sent it."""

    body: bytes
    # Header names in lower case; values as received (Starlette decodes them as latin-1).
    headers: Mapping[str, str]
    # The URL the provider called (``CLOSEDLOOP_INGEST_PUBLIC_URL`` + path + query when set).
    url: str
    method: str
    received_at: datetime  # timezone-aware UTC

    def header(self, name: str) -> str | None:
        """Return header ``name`` (any case), or None."""
        return self.headers.get(name.lower())


class Refused(Exception):
    """Authentication failed (401): ``detail`` says what was wrong, naming no secret."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotConfigured(Exception):
    """The provider's setting is unset: every request is refused (401) naming the setting."""

    def __init__(self, setting: str) -> None:
        super().__init__(f"set {setting} to accept this provider's webhooks")
        self.setting = setting


class Malformed(Exception):
    """The body cannot be mapped: 400 (not parseable) or 422 (a field is missing or wrong).

    ``errors`` name each problem's location in the provider's payload, like the canonical
    API does: ``[{"field": "[0].objectId", "problem": "required", "type": "missing"}]``.
    """

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


def malformed_field(field: str, problem: str, type_: str = "value_error") -> Malformed:
    """Return a 422 ``Malformed`` naming one field of the provider's payload."""
    return Malformed(
        422,
        f"{field}: {problem}",
        [{"field": field, "problem": problem, "type": type_}],
    )


@dataclass(frozen=True)
class Mapped:
    """A delivery's canonical events (JSON objects, validated by the route) and what it skipped."""

    events: list[dict[str, Any]]
    ignored: int = 0
    # Provider-specific facts the acknowledgement needs (e.g. Salesforce's notification ids).
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """The response a provider expects: status, body bytes and media type."""

    status: int
    body: bytes
    media_type: str


class Provider(Protocol):
    """What a webhook provider module exposes."""

    name: str
    # Media types the provider posts (``Content-Type`` without parameters): 415 otherwise.
    media_types: frozenset[str]
    # The largest body the provider sends, well above its documented maximum (413 beyond);
    # None: the service's ``max_body_bytes``. A body is parsed into objects costing tens of
    # times its size, so no provider is given more room than it can use.
    max_body_bytes: int | None

    def verify(self, delivery: Delivery, settings: Settings) -> None:
        """Authenticate the raw delivery: raise ``NotConfigured`` or ``Refused``."""
        ...

    def map(self, delivery: Delivery, settings: Settings) -> Mapped:
        """Parse the body and map it to canonical events: raise ``Malformed`` if it cannot."""
        ...

    def accepted(self, mapped: Mapped, published: int) -> Reply | None:
        """Return the success response the provider expects, or None for the default 202."""
        ...

    def failed(self, status: int, problem: dict[str, Any]) -> Reply | None:
        """Return the error response the provider expects, or None for a problem+json body."""
        ...


class DefaultReplies:
    """The default answers: 202 ``{"accepted", "ignored"}`` and problem+json errors.

    For providers that treat any 2xx as delivered and retry anything else (HubSpot,
    Pipedrive, Segment, generic).
    """

    def accepted(self, mapped: Mapped, published: int) -> Reply | None:
        """Use the default 202."""
        return None

    def failed(self, status: int, problem: dict[str, Any]) -> Reply | None:
        """Use the default problem+json."""
        return None


# JSON providers that post one event, or a batch of at most 100 small ones, per request.
SMALL_DELIVERY_BYTES = 1024 * 1024


def secrets(value: str | None) -> list[str]:
    """Split a comma-separated secrets setting (several allowed, for rotation)."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]
