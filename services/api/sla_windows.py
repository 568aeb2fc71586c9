"""How long an SLA answer may be served again: while nothing that counts can have happened.

An SLA body (``services.api.sla``) computed at moment T stays the exact answer for every
moment up to the first one after T at which an MQL of its period happens, a first response
comes or an SLA deadline passes (``sla.valid_until``), as long as the projection does not
change: the body is cached under the projection version too, so a change of the data is a
miss and a rebuild whatever the window says.

``SlaWindows`` remembers, per query, the window [T, until) of the body last built and the
cache key part (the *epoch*) it was stored under. A request inside that window asks for that
body again; outside it, for the query's current ``SLA_FRESH_S``-second window (a body at most
that old, as before). So a dashboard over past weeks is built once per projection version,
and one over the current week about once per MQL, response or deadline, not every 5 s.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Window:
    """A body stored under ``epoch``, the answer for every moment in [start, until)."""

    epoch: Hashable
    start: datetime
    until: datetime | None  # None: no moment ahead changes it (only the data can)


class SlaWindows:
    """The latest window per query, at most ``max_entries`` queries (least recent go first)."""

    def __init__(self, max_entries: int = 256) -> None:
        self._windows: OrderedDict[Hashable, Window] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def epoch(self, query: Hashable, now: datetime, *, otherwise: Hashable) -> Hashable:
        """Return the epoch whose body answers ``query`` at ``now``, else ``otherwise``."""
        with self._lock:
            window = self._windows.get(query)
        if window is None or now < window.start:
            return otherwise
        if window.until is not None and now >= window.until:
            return otherwise
        return window.epoch

    def record(self, query: Hashable, window: Window) -> None:
        """Remember the window of the body just built for ``query``."""
        with self._lock:
            self._windows[query] = window
            self._windows.move_to_end(query)
            while len(self._windows) > self._max:
                self._windows.popitem(last=False)
