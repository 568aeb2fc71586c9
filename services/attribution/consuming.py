"""Parts of the worker's consume loop: its retry policy, its transactions, its second thread.

``worker.py`` owns the loop and the guarantee it states; these pieces keep no state of their
own beyond their instances.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

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
    (sharing the interpreter, so more slowly) while the fit runs. Both take the batch lock per
    transaction, so a deal is never written by both at once. An unexpected error is handed to
    the loop (``check``), which exits as it would on its own errors.
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

    def finish(self) -> None:
        """Stop after the current pass (a fit in progress is finished, not cut)."""
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
