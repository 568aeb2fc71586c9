"""Parts of the worker's consume loop: retry policy, transactions, second thread, activity log.

``worker.py`` owns the loop and the guarantee it states; these pieces keep no state of their
own beyond their instances.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from services.attribution.batch import AppliedBatch

log = logging.getLogger("closedloop.worker")


class Backoff:
    """The worker's one retry policy: pauses of 0.5 s, doubling up to 30 s, until a success."""

    FIRST_S, MOST_S = 0.5, 30.0

    def __init__(self) -> None:
        self._next = self.FIRST_S

    def next_pause(self) -> float:
        """Return the pause before the next attempt, and double the one after it."""
        pause, self._next = self._next, min(self._next * 2, self.MOST_S)
        return pause

    def reset(self) -> None:
        """Start again from the shortest pause (after a success)."""
        self._next = self.FIRST_S


class MaintenanceThread(threading.Thread):
    """Model fits and custom-model passes, every few seconds, beside the consume loop.

    A refit recomputes every deal's data-driven credits; run inside the loop it stopped
    consumption for minutes on a large database, and freshness with it. Here the loop goes on
    (sharing the interpreter, so more slowly) while the fit runs. Both lock the rows of the
    deals they rewrite (``unit_of_work.lock_deals``), so a deal is never written by both at
    once. An unexpected error is handed to the loop (``check``), which exits as it would on its
    own errors.
    """

    def __init__(self, step: Callable[[], None], *, every_s: float = 5.0) -> None:
        super().__init__(name="closedloop-maintenance", daemon=True)
        self._step, self._every_s = step, every_s
        self._done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self._step()
            except Exception as exc:
                log.exception("model maintenance failed; stopping the worker")
                self.error = exc
                return
            self._done.wait(self._every_s)

    def check(self) -> None:
        """Raise, in the loop's thread, what made maintenance fail."""
        if self.error is not None:
            raise RuntimeError("model maintenance failed") from self.error

    def stopping(self) -> bool:
        """Return whether the pass should end early (a fit's credits resume at the next one)."""
        return self._done.is_set()

    def finish(self) -> None:
        """Stop after the current pass, or a fit's current chunk of credits."""
        self._done.set()
        if self.is_alive():
            self.join()


def transaction_chunks(
    records: dict[TopicPartition, list[Any]], max_bytes: int
) -> list[dict[TopicPartition, list[Any]]]:
    """Cut a poll into transactions of about ``max_bytes`` of record values, in offset order.

    A poll is bounded in records, but a batch record holds up to a thousand events: without
    this cut one transaction could hold millions of events. Each chunk keeps every
    partition's records contiguous, so committing chunk by chunk commits offsets in order.
    """
    chunks: list[dict[TopicPartition, list[Any]]] = []
    current: dict[TopicPartition, list[Any]] = {}
    size = 0
    for tp, batch in records.items():
        for record in batch:
            if current and size >= max_bytes:
                chunks.append(current)
                current, size = {}, 0
            current.setdefault(tp, []).append(record)
            size += len(record.value or b"")
    if current:
        chunks.append(current)
    return chunks


class ActivityLog:
    """One log line per applied batch, or per ``every_s`` of batches when they come fast."""

    def __init__(self, *, every_s: float) -> None:
        self._every_s = every_s
        self._since = time.monotonic()
        self._batches = self._received = self._stored = self._deals = self._dead = 0

    def note(self, applied: AppliedBatch, *, deals: int = 0) -> None:
        """Count a committed batch and the deals recomputed after it; log every ``every_s``."""
        self._batches += 1
        self._received += applied.result.received
        self._stored += applied.result.stored
        self._deals += applied.result.deals_recomputed + deals
        self._dead += len(applied.dead)
        if time.monotonic() - self._since >= self._every_s:
            self.flush()

    def flush(self) -> None:
        """Log the counts not yet logged (the loop calls this when it goes idle)."""
        if not self._batches:
            return
        log.info(
            "applied %d batch%s: %d events, %d new, %d duplicates, %d deals recomputed%s",
            self._batches,
            "" if self._batches == 1 else "es",
            self._received,
            self._stored,
            self._received - self._stored,
            self._deals,
            f", {self._dead} dead letters" if self._dead else "",
        )
        self._since = time.monotonic()
        self._batches = self._received = self._stored = self._deals = self._dead = 0
