"""The ingest service's publisher: the shared one in ``services.core.publisher``.

Ingest publishes every accepted request through it, so a 202 means the broker acknowledged
every event (see that module for the invariant and the reconnect rules). The routes import
their collaborators from here, so the ingest-specific names stay in one place.
"""

from __future__ import annotations

from services.core.publisher import (
    MAX_RECORD_BYTES,
    RECONNECT_COOLDOWN_S,
    BrokerUnavailable,
    Publisher,
    RecordTooLarge,
)
from services.core.publisher import broker_answers as _broker_answers
from services.core.settings import Settings

__all__ = [
    "MAX_RECORD_BYTES",
    "RECONNECT_COOLDOWN_S",
    "BrokerUnavailable",
    "Publisher",
    "RecordTooLarge",
    "broker_answers",
]


def broker_answers(settings: Settings, *, timeout_s: float = 2.0) -> bool:
    """Return whether the broker answers ingest's readiness probe within about ``timeout_s``."""
    return _broker_answers(settings, timeout_s=timeout_s, client_id="closedloop-ingest-readyz")
