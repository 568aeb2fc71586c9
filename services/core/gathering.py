"""Gathering the publishes of concurrent requests into a few broker records.

Invariant: a request's waiter succeeds only after the broker acknowledged every record that
holds one of the request's events; a send that fails in any way fails every request with an
event in it (``BrokerUnavailable``, answered 503: the client retries, and a retried event is
recognised downstream by its ``event_id``). A request never succeeds on the strength of
another request's records, and never waits in the queue past its own deadline.

Why: kafka-python spends ~40–90 µs of Python on every record it sends and acknowledges, about
as much as a whole small HTTP request. Webhook senders post one event a request, so requests
hand their encoded events to a ``Gatherer``; one sender thread takes everything waiting, sends
it as batch records (a JSON array per partition, cut at ``MAX_BATCH_RECORD_BYTES``; a lone
event keeps its single keyed record), waits for the acknowledgements, and completes the
requests. While one send waits for the broker the next requests gather, so the batches grow
with the load and an idle service sends at once.

Back-pressure: when more than ``max_pending`` events already wait to be sent, a new request is
refused at once with ``Overloaded`` (a ``BrokerUnavailable``: 503 with ``Retry-After``) instead
of queueing without bound behind a slow broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.core.events import Event, encode, encode_batch, partition_key

log = logging.getLogger(__name__)

# Real Kafka rejects records above the broker's message.max.bytes (1 MB by default) for good;
# refuse them up front instead of answering 503 forever to a client that retries.
MAX_RECORD_BYTES = 1_000_000
# A batch record is cut before it grows past this, well under any broker's message limit.
MAX_BATCH_RECORD_BYTES = 256 * 1024
# Events waiting to be sent beyond which new requests are refused (a few MB of records).
MAX_PENDING_EVENTS = 20_000
# Under load, the sender lets requests gather this long before a send: fewer, larger batch
# records (kafka-python's cost is per record and per round trip, not per byte).
GATHER_S = 0.002
# The sender counts as under load when a request arrives this soon after its last send.
BUSY_S = 0.010

# An encoded event: its entity key (picks the partition) and its JSON.
Entry = tuple[bytes, bytes]


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not acknowledge every record in time."""


class Overloaded(BrokerUnavailable):
    """Too many events already wait to be sent; the client should retry a little later."""


class RecordTooLarge(Exception):
    """An event whose encoded record exceeds what the broker accepts."""

    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"event {index} encodes to {size} bytes; the limit is {MAX_RECORD_BYTES}")
        self.index, self.size = index, size


def encode_entries(events: Sequence[Event], items: Sequence[Any] | None = None) -> list[Entry]:
    """Encode events (or the JSON items they were validated from) with their partition keys."""
    if items is not None and len(items) != len(events):
        raise ValueError("items must match events one to one")
    values = (
        [orjson.dumps(item) for item in items] if items is not None else [encode(e) for e in events]
    )
    for index, value in enumerate(values):
        if len(value) > MAX_RECORD_BYTES:
            raise RecordTooLarge(index, len(value))
    return [(partition_key(e), v) for e, v in zip(events, values, strict=True)]


def batch_records(
    entries: Sequence[Entry], partitions: Sequence[int]
) -> Iterator[tuple[int, bytes | None, bytes]]:
    """Group entries by partition (a CRC-32 of their key) into (partition, key, value) records.

    A partition's events go out as JSON arrays of at most ``MAX_BATCH_RECORD_BYTES``; a
    partition with a single event gets that event's own record, keyed by its entity.
    """
    groups: dict[int, list[Entry]] = {}
    for entry in entries:
        partition = partitions[zlib.crc32(entry[0]) % len(partitions)]
        groups.setdefault(partition, []).append(entry)
    for partition, group in groups.items():
        if len(group) == 1:
            yield partition, group[0][0], group[0][1]
            continue
        chunk: list[bytes] = []
        size = 0
        for _, value in group:
            if chunk and size + len(value) + 1 > MAX_BATCH_RECORD_BYTES:
                yield partition, None, encode_batch(chunk)
                chunk, size = [], 0
            chunk.append(value)
            size += len(value) + 1
        yield partition, None, encode_batch(chunk)


class ThreadWaiter:
    """Completion for a blocking caller."""

    __slots__ = ("_done", "_outcome")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._outcome: int | BaseException = 0

    def settle(self, outcome: int | BaseException) -> None:
        """Record the count acknowledged, or the failure, and wake the caller."""
        self._outcome = outcome
        self._done.set()

    def wait(self, timeout_s: float) -> int:
        """Return the count once acknowledged; raise the failure, or BrokerUnavailable late."""
        if not self._done.wait(max(timeout_s, 0.0)):
            raise BrokerUnavailable("the broker did not acknowledge the events in time")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome


class LoopWaiter:
    """Completion for an asyncio caller: a future, resolved on its own loop."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[int] = loop.create_future()


Waiter = ThreadWaiter | LoopWaiter


def _settle_all(settled: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """Resolve futures on their loop (one call per round: each call wakes the loop)."""
    for future, outcome in settled:
        if future.done():  # the caller gave up (its deadline passed, or it was cancelled)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def complete(requests: Sequence[Request], outcomes: Sequence[int | BaseException]) -> None:
    """Hand each request its outcome: blocking callers at once, loops one batch each."""
    batches: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for request, outcome in zip(requests, outcomes, strict=True):
        waiter = request.waiter
        if isinstance(waiter, ThreadWaiter):
            waiter.settle(outcome)
        else:
            batches.setdefault(waiter.loop, []).append((waiter.future, outcome))
    for loop, settled in batches.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle_all, settled)


@dataclass(slots=True)
class Request:
    """One caller's encoded events, its completion and the time after which it gave up."""

    entries: list[Entry]
    waiter: Waiter
    deadline: float


class Gatherer:
    """Queues requests; one sender thread sends what waits, then completes each request.

    ``send`` gets every request of a round and returns once the broker acknowledged all their
    records, or raises (the round fails as a whole). ``gather_s`` is how long the sender waits,
    when it wakes within ``BUSY_S`` of its last send, for more requests to join (an idle
    sender sends at once; the batches also grow while a send waits for its acknowledgements).
    """

    def __init__(
        self,
        send: Callable[[list[Request]], None],
        *,
        max_pending: int = MAX_PENDING_EVENTS,
        gather_s: float = GATHER_S,
    ) -> None:
        self._send = send
        self._max_pending, self._gather_s = max_pending, gather_s
        self._busy_until = 0.0  # a request arriving before this finds the sender busy
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Request] = []
        self._pending = 0  # events in the queue
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, request: Request) -> None:
        """Queue ``request``: raise Overloaded past the bound, BrokerUnavailable once closed."""
        count = len(request.entries)
        with self._cond:
            if self._closed:
                raise BrokerUnavailable("the service is shutting down")
            # A request larger than the bound alone still goes through when nothing waits.
            if self._pending and self._pending + count > self._max_pending:
                raise Overloaded(f"{self._pending} events already wait for the broker")
            self._queue.append(request)
            self._pending += count
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self, deadline: float) -> None:
        """Refuse new requests; let the sender send what waits, until ``deadline`` at most."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _take(self) -> list[Request] | None:
        """Wait for requests and return them all; None once closed and drained."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            # Under load, wait a moment for concurrent requests to join; when idle, send now.
            gather = self._gather_s and not self._closed and time.monotonic() < self._busy_until
        if gather:
            time.sleep(self._gather_s)  # let concurrent requests join this round
        with self._cond:
            taken, self._queue, self._pending = self._queue, [], 0
        return taken or None

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            now = time.monotonic()
            late = [r for r in taken if r.deadline <= now]
            if late:  # their callers already answered 503
                failure = BrokerUnavailable("the request timed out before its send")
                complete(late, [failure] * len(late))
                taken = [r for r in taken if r.deadline > now]
            if taken:
                self._round(taken)
                self._busy_until = time.monotonic() + BUSY_S

    def _round(self, requests: list[Request]) -> None:
        """Send one round; complete every request with its outcome."""
        try:
            self._send(requests)
        except BaseException as exc:
            if not isinstance(exc, BrokerUnavailable):
                log.exception("publishing a round failed unexpectedly")
            # Each caller its own exception: they raise them concurrently.
            complete(requests, [_copy(exc) for _ in requests])
            return
        complete(requests, [len(r.entries) for r in requests])


def _copy(exc: BaseException) -> BrokerUnavailable:
    failure = BrokerUnavailable(*exc.args) if isinstance(exc, BrokerUnavailable) else None
    if failure is None:
        failure = BrokerUnavailable(f"publishing failed: {exc!r}")
    failure.__cause__ = exc.__cause__ if isinstance(exc, BrokerUnavailable) else exc
    return failure
