"""Publishing canonical events to the events topic, robustly; shared by ingest and the API.

Invariant: ``publish`` and ``publish_async`` return only after the broker acknowledged EVERY
record holding one of the caller's events (acks=all, idempotent producer); on any failure they
raise ``BrokerUnavailable`` and the caller answers 503, so the client retries. A retried
publish may duplicate records that did reach the broker; that is safe because the worker
ignores an ``event_id`` it has already seen (at-least-once here, exactly-once effect
downstream). Every publish goes through a ``Gatherer`` (``services.core.gathering``): one
sender thread sends the events of concurrent publishes together as batch records and
completes each publish when all its records are acknowledged; a publish waits at most the
publish timeout, and is refused at once (``Overloaded``, also a 503) when the queue is full.

Publisher holds the producer through ``BrokerLink`` (``services.core.broker_link``): lazy
(re)connection and a circuit breaker, so while the broker is known to be down a publish fails
with ``BrokerUnavailable`` in microseconds, without queueing, and a background probe
reconnects. ``close`` refuses new publishes, lets the sender send what already waits and
flushes the producer, all within the publish timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from kafka.errors import KafkaTimeoutError

from services.core.broker_link import PROBE_INTERVAL_S, BrokerLink
from services.core.events import Event
from services.core.gathering import (
    GATHER_S,
    MAX_BATCH_RECORD_BYTES,
    MAX_PENDING_EVENTS,
    MAX_RECORD_BYTES,
    BrokerUnavailable,
    Entry,
    Gatherer,
    LoopWaiter,
    Overloaded,
    RecordTooLarge,
    Request,
    ThreadWaiter,
    batch_records,
    encode_entries,
)
from services.core.settings import Settings

# A publish still unacknowledged after this long has the broker checked on.
SLOW_ACK_S = 1.0
# Publishes of more events than this encode them in a thread, off the caller's event loop.
INLINE_ENCODE_EVENTS = 64

__all__ = [
    "MAX_BATCH_RECORD_BYTES",
    "MAX_PENDING_EVENTS",
    "MAX_RECORD_BYTES",
    "PROBE_INTERVAL_S",
    "BrokerUnavailable",
    "Overloaded",
    "Publisher",
    "RecordTooLarge",
]


class Publisher(BrokerLink):
    """Publishes events through a gatherer onto one lazily (re)connecting producer."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str | None = None,
        max_pending: int = MAX_PENDING_EVENTS,
        gather_s: float = GATHER_S,
    ) -> None:
        # The broker's logs and quotas tell the services apart by client id. The gatherer does
        # the lingering (a round goes out as soon as the previous one is acknowledged).
        overrides: dict[str, Any] = {"linger_ms": 0}
        if client_id is not None:
            overrides["client_id"] = client_id
        super().__init__(settings, overrides)
        self._gatherer = Gatherer(self._send_round, max_pending=max_pending, gather_s=gather_s)

    def publish(self, events: Sequence[Event], *, items: Sequence[Any] | None = None) -> int:
        """Send every event and wait until the broker acknowledged all; return how many.

        ``items``, when given, are the JSON objects the events were validated from; they are
        published as they are (the worker validates again), which saves re-encoding each event.
        Raises ``RecordTooLarge`` before anything is sent, ``BrokerUnavailable`` (or its
        ``Overloaded``) when the events may not all have been acknowledged.
        """
        deadline = time.monotonic() + self._timeout_s
        entries = encode_entries(events, items)
        waiter = ThreadWaiter()
        self._submit(Request(entries, waiter, deadline))
        return waiter.wait(deadline - time.monotonic())

    async def publish_async(
        self, events: Sequence[Event], *, items: Sequence[Any] | None = None
    ) -> int:
        """Like ``publish``, awaited on the event loop: no thread is held while the broker acks."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._timeout_s
        if len(events) > INLINE_ENCODE_EVENTS:
            entries = await loop.run_in_executor(None, encode_entries, events, items)
        else:
            entries = encode_entries(events, items)
        waiter = LoopWaiter(loop)
        self._submit(Request(entries, waiter, deadline))
        future = waiter.future
        expiry = loop.call_later(max(deadline - time.monotonic(), 0.0), _expire, future)
        try:
            return await future
        finally:
            expiry.cancel()

    def _submit(self, request: Request) -> None:
        """Queue a publish, or fail it at once while the breaker is open or when closing."""
        if self._closing.is_set():
            raise BrokerUnavailable("the service is shutting down")
        down = self._down
        if down is not None:
            raise BrokerUnavailable(f"the broker is unavailable ({down}); retry later")
        self._gatherer.submit(request)

    def _send_round(self, requests: list[Request]) -> None:
        """Send the events of ``requests`` as batch records; return once all are acknowledged.

        Runs on the gatherer's sender thread only. One event alone on its partition goes out
        as its own record, keyed by its entity; the rest as JSON arrays, one per partition (a
        stable CRC-32 of the key picks it) and at most ``MAX_BATCH_RECORD_BYTES`` each.
        """
        deadline = time.monotonic() + self._timeout_s
        producer = self._connected()
        topic = self._settings.events_topic
        entries: list[Entry] = [e for r in requests for e in r.entries]
        try:
            partitions = sorted(producer.partitions_for(topic) or [0])
            futures = [
                producer.send(topic, key=key, value=value, partition=partition)
                for partition, key, value in batch_records(entries, partitions)
            ]
            for future in futures:
                self._await(future, deadline)
        except Exception as exc:  # every send failure is "try again later"
            self._broker_failed(f"a publish failed: {exc!r}", producer)
            raise BrokerUnavailable(f"the broker did not acknowledge the events: {exc!r}") from exc

    def _await(self, future: Any, deadline: float) -> None:
        """Wait for ``future`` until ``deadline``, checking on the broker if it takes a while.

        A broker that died leaves kafka-python retrying until the deadline; the check (a
        metadata request) finds out sooner, and opening the breaker fails every waiting
        publish at once.
        """
        slow_at = time.monotonic() + SLOW_ACK_S
        while True:
            wait = min(deadline, slow_at) - time.monotonic()
            try:
                future.get(timeout=max(wait, 0.001))
                return
            except KafkaTimeoutError:
                if future.is_done or time.monotonic() >= deadline:
                    raise  # failed (a record that expired), or out of time
                self.check_soon()
                slow_at = deadline

    def close(self) -> None:
        """Flush what is pending (bounded by the publish timeout) and close the producer."""
        deadline = time.monotonic() + self._timeout_s
        self._closing.set()  # refuses new publishes, and ends the probe
        self._gatherer.close(deadline)  # the sender sends what already waits
        self._close_producer(max(deadline - time.monotonic(), 0.0))


def _expire(future: asyncio.Future[int]) -> None:
    """Fail an async publish whose deadline passed (its events may still be acknowledged)."""
    if not future.done():
        future.set_exception(BrokerUnavailable("the broker did not acknowledge the events in time"))
