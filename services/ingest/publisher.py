"""The ingest service's publisher: the shared one in ``services.core.publisher``.

Ingest publishes every accepted request through it, so a 202 means the broker acknowledged
every event (see that module for the invariant, the reconnect rules and the circuit breaker
that answers 503 at once while the broker is down). The routes import their collaborators from
here, so the ingest-specific names stay in one place.
"""

from __future__ import annotations

from services.core.publisher import (
    MAX_RECORD_BYTES,
    PROBE_INTERVAL_S,
    BrokerUnavailable,
    Overloaded,
    Publisher,
    RecordTooLarge,
)

__all__ = [
    "MAX_RECORD_BYTES",
    "PROBE_INTERVAL_S",
    "BrokerUnavailable",
    "Overloaded",
    "Publisher",
    "RecordTooLarge",
]
