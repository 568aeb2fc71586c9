"""Publishing canonical events to the events topic, robustly; shared by ingest and the API.

Invariant: ``Publisher.publish`` returns only after the broker acknowledged EVERY record
(acks=all, idempotent producer); on any failure it raises ``BrokerUnavailable`` and the
caller answers 503, so the client retries. A retried publish may duplicate records that did
reach the broker; that is safe because the worker ignores an ``event_id`` it has already seen
(at-least-once here, exactly-once effect downstream).

The producer is created lazily (on first use, or by ``warm_up``) and re-created after any send
error: the broker may be down when the service starts, and a restarted broker (the bundled one
forgets everything) no longer knows the idempotent producer's id, which leaves the old producer
failing for good.

A circuit breaker keeps an outage cheap. Once the broker is known to be down (a publish failed
or timed out, a connection attempt failed, or a metadata probe went unanswered), ``publish``
raises ``BrokerUnavailable`` at once, without touching the network, and a background thread
tries to connect every ``PROBE_INTERVAL_S``; the first success closes the breaker. So during
an outage clients get their 503 in microseconds instead of each holding a worker thread for
the publish timeout, and nothing else (health probes included) queues behind them. Only the
publishes already waiting when the broker went away, and a first connection, wait.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from services.core.events import Event, encode, encode_batch, partition_key
from services.core.kafka import broker_answers, broker_listening, ensure_topics, make_producer
from services.core.settings import Settings

log = logging.getLogger(__name__)

# Real Kafka rejects records above the broker's message.max.bytes (1 MB by default) for good;
# refuse them up front instead of answering 503 forever to a client that retries.
MAX_RECORD_BYTES = 1_000_000
# While the broker is down, a background thread tries to connect this often.
PROBE_INTERVAL_S = 0.5
# A connection attempt (bootstrap, then topic set-up) gives up after this long: a live broker
# answers in milliseconds, and a refused connection should not hold anything for long.
CONNECT_TIMEOUT_S = 2.0
# ``check_soon`` asks the broker for metadata at most this often (readiness probes call it,
# and so does a publish still unacknowledged after SLOW_ACK_S).
CHECK_INTERVAL_S = 2.0
SLOW_ACK_S = 1.0


# A batch record is cut before it grows past this, well under any broker's message limit.
MAX_BATCH_RECORD_BYTES = 256 * 1024


def _batch_records(
    events: Sequence[Event], encoded: Sequence[bytes], partitions: Sequence[int]
) -> Iterator[tuple[int, bytes]]:
    """Group encoded events by partition (a stable hash of their key) into batch records."""
    groups: dict[int, list[bytes]] = {}
    for event, value in zip(events, encoded, strict=True):
        partition = partitions[zlib.crc32(partition_key(event)) % len(partitions)]
        groups.setdefault(partition, []).append(value)
    for partition, values in groups.items():
        chunk: list[bytes] = []
        size = 0
        for value in values:
            if chunk and size + len(value) + 1 > MAX_BATCH_RECORD_BYTES:
                yield partition, encode_batch(chunk)
                chunk, size = [], 0
            chunk.append(value)
            size += len(value) + 1
        yield partition, encode_batch(chunk)


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not acknowledge every record in time."""


class RecordTooLarge(Exception):
    """An event whose encoded record exceeds what the broker accepts."""

    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"event {index} encodes to {size} bytes; the limit is {MAX_RECORD_BYTES}")
        self.index, self.size = index, size


def _close(producer: KafkaProducer, timeout_s: float) -> None:
    """Close ``producer``, giving pending records up to ``timeout_s`` to be acknowledged."""
    try:
        producer.close(timeout=timeout_s)
    except Exception:
        # kafka-python 3.0.12's close() raises from its flush() while records are pending,
        # before it reaches its own force-close: the sender thread would live on, retrying.
        # Force it (pending futures fail at once), then close for real.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        try:
            producer.close(timeout=1.0)
        except Exception as exc:
            log.warning("could not close a Kafka producer cleanly: %r", exc)


class Publisher:
    """A thread-safe, lazily (re)connecting wrapper around one kafka-python ``KafkaProducer``."""

    def __init__(self, settings: Settings, *, client_id: str | None = None) -> None:
        self._settings = settings
        # The broker's logs and quotas tell the services apart by client id.
        self._overrides = {} if client_id is None else {"client_id": client_id}
        self._timeout_s = settings.publish_timeout_s
        self._connect_timeout_s = min(self._timeout_s, CONNECT_TIMEOUT_S)
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._down: str | None = None  # why the broker is known to be down (breaker open)
        self._probing = False
        self._checking = False
        self._checked_at = float("-inf")
        self._closing = threading.Event()

    def warm_up(self) -> None:
        """Connect now if the broker answers (best effort; publishing retries on demand)."""
        try:
            self._connected()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable at start-up; will retry in the background: %s", exc)

    def broker_problem(self) -> str | None:
        """Return why the broker cannot take events now, or None if it can (never blocks)."""
        if self._closing.is_set():
            return "the service is shutting down"
        if self._down is not None:
            return f"the broker at {self._settings.kafka_bootstrap_servers} is unavailable"
        if self._producer is None:
            return f"not connected to the broker at {self._settings.kafka_bootstrap_servers} yet"
        return None

    def check_soon(self) -> None:
        """Ask the broker for metadata in the background (at most every ``CHECK_INTERVAL_S``).

        A broker that went away while nothing was published is noticed this way (the breaker
        opens) rather than by the next client's publish timing out.
        """
        with self._lock:
            now = time.monotonic()
            if (
                self._producer is None
                or self._checking
                or now - self._checked_at < CHECK_INTERVAL_S
            ):
                return
            self._checking, self._checked_at = True, now
            producer = self._producer
        threading.Thread(
            target=self._check, args=(producer,), name="broker-check", daemon=True
        ).start()

    def publish(self, events: Sequence[Event], *, items: Sequence[Any] | None = None) -> int:
        """Send every event and wait until the broker acknowledged all; return how many.

        One event goes out as one record keyed by its entity. Several go out as batch records
        (JSON arrays, see ``events.decode_record``), one per partition and at most
        ``MAX_BATCH_RECORD_BYTES`` each: kafka-python spends tens of microseconds on every
        record it sends, which would otherwise cap a request of a thousand events.

        ``items``, when given, are the JSON objects the events were validated from; they are
        published as they are (the worker validates again), which saves re-encoding each event.
        """
        if items is not None and len(items) != len(events):
            raise ValueError("items must match events one to one")
        encoded = (
            [orjson.dumps(item) for item in items]
            if items is not None
            else [encode(e) for e in events]
        )
        for index, value in enumerate(encoded):
            if len(value) > MAX_RECORD_BYTES:
                raise RecordTooLarge(index, len(value))
        deadline = time.monotonic() + self._timeout_s
        producer = self._connected()
        topic = self._settings.events_topic
        try:
            if len(events) == 1:
                futures = [producer.send(topic, key=partition_key(events[0]), value=encoded[0])]
            else:
                partitions = sorted(producer.partitions_for(topic) or [0])
                futures = [
                    producer.send(topic, value=value, partition=partition)
                    for partition, value in _batch_records(events, encoded, partitions)
                ]
            for future in futures:
                self._await(future, deadline)
        except Exception as exc:  # every send failure is "try again later"
            self._broker_failed(f"a publish failed: {exc!r}", producer)
            raise BrokerUnavailable(f"the broker did not acknowledge the events: {exc!r}") from exc
        return len(events)

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
        self._closing.set()  # also ends the probe
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            _close(producer, self._timeout_s)

    def _connected(self) -> KafkaProducer:
        """Return the producer: fail fast while the breaker is open, else connect if needed."""
        producer, down = self._producer, self._down
        if down is not None:
            raise BrokerUnavailable(f"the broker is unavailable ({down}); retry later")
        if producer is not None:
            return producer
        with self._lock:  # the first connection: later callers wait for its outcome
            if self._producer is not None:
                return self._producer
            if self._down is not None:
                raise BrokerUnavailable(f"the broker is unavailable ({self._down}); retry later")
            if self._closing.is_set():
                raise BrokerUnavailable("the service is shutting down")
            try:
                self._producer = self._connect()
            except BrokerUnavailable as exc:
                self._open_breaker(str(exc))
                raise
            return self._producer

    def _connect(self) -> KafkaProducer:
        """Create the producer, then the topics (so the broker cannot auto-create them wrong)."""
        timeout_s = self._connect_timeout_s
        try:
            # The bootstrap bound matters: kafka-python waits 30 s by default when nobody answers.
            producer = make_producer(
                self._settings, bootstrap_timeout_ms=int(timeout_s * 1000), **self._overrides
            )
        except Exception as exc:
            raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
        try:
            ensure_topics(self._settings, timeout_s=timeout_s)
        except Exception as exc:
            _close(producer, 0)
            raise BrokerUnavailable(f"cannot create the topics: {exc!r}") from exc
        return producer

    def _broker_failed(self, reason: str, producer: KafkaProducer) -> None:
        """Open the breaker after ``producer`` failed, and discard it (unless already replaced)."""
        with self._lock:
            if self._producer is not producer:
                return  # a stale producer's failure: already handled, and a new one took over
            self._producer = None
            self._open_breaker(reason)
        # Zero timeout: fail what is still pending at once (other requests waiting on this
        # producer get their 503 now) rather than retry on a stale producer.
        _close(producer, 0)

    def _open_breaker(self, reason: str) -> None:
        """Mark the broker down and start the probe; the caller holds the lock."""
        if self._down is None:
            log.warning("broker marked down, answering 503 until it is back: %s", reason)
        self._down = reason
        if not self._probing and not self._closing.is_set():
            self._probing = True
            threading.Thread(target=self._probe, name="broker-probe", daemon=True).start()

    def _probe(self) -> None:
        """Try to connect every ``PROBE_INTERVAL_S`` until it works; then close the breaker."""
        while not self._closing.wait(PROBE_INTERVAL_S):
            if not broker_listening(self._settings, timeout_s=self._connect_timeout_s):
                continue
            try:
                producer = self._connect()
            except BrokerUnavailable as exc:
                log.debug("broker still down: %s", exc)
                continue
            with self._lock:
                closing = self._closing.is_set()
                if not closing:
                    self._producer, self._down = producer, None
                    self._checked_at = time.monotonic()
                self._probing = False
            if closing:
                _close(producer, 0)
            else:
                log.warning("broker reachable again; accepting events")
            return
        with self._lock:
            self._probing = False

    def _check(self, producer: KafkaProducer) -> None:
        try:
            if not broker_answers(self._settings, timeout_s=self._connect_timeout_s):
                self._broker_failed("the broker did not answer a metadata request", producer)
        finally:
            with self._lock:
                self._checking = False
