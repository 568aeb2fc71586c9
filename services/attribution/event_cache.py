"""Decoded stored events, cached by their payload text; owned by whoever creates one.

Folds reload the same stored events batch after batch (every upsert of a contact, every event
of a deal); validating them again dominated those loads. There is no module-level cache: the
worker creates one ``EventCache`` for its consume loop and hands it down (``apply_batch`` →
``apply_events`` → ``recompute_deals``); a caller that passes none decodes afresh. A cache is
safe to share between threads: every read and write of its table holds its lock (two threads
evicting from a full unguarded dict raced into ``KeyError`` and ended the worker).
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.db.schema import EventRow
from services.core.events import Event, decode


class EventCache:
    """Stored payload text -> its decoded (frozen) event, keeping the latest ``size`` entries.

    Keyed by the payload itself, so it is right for any database and any event id. Eviction
    is first in, first out.
    """

    def __init__(self, size: int = 50_000) -> None:
        if size < 1:
            raise ValueError("an event cache holds at least one event")
        self.size = size
        self._events: dict[str, Event] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def put(self, payload: str, event: Event) -> None:
        """Remember ``event`` as the decoding of ``payload``, evicting the oldest if full."""
        with self._lock:
            self._events[payload] = event
            while len(self._events) > self.size:
                del self._events[next(iter(self._events))]

    def get(self, payload: str) -> Event:
        """Return the decoded event of ``payload``, decoding (outside the lock) on a miss."""
        with self._lock:
            event = self._events.get(payload)
        if event is None:
            event = decode(payload.encode())
            self.put(payload, event)
        return event


def load_events(session: Session, cache: EventCache | None, *conditions: object) -> list[Event]:
    """Load and decode the stored events matching ``conditions`` (through ``cache`` if given)."""
    payloads = session.scalars(select(EventRow.payload).where(*conditions))  # type: ignore[arg-type]
    if cache is None:
        return [decode(p.encode()) for p in payloads]
    return [cache.get(p) for p in payloads]
