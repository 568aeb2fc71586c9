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
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer

from services.core.events import Event, encode, encode_batch, partition_key
from services.core.kafka import bootstrap_servers, ensure_topics, make_producer
from services.core.settings import Settings

log = logging.getLogger(__name__)

# Real Kafka rejects records above the broker's message.max.bytes (1 MB by default) for good;
# refuse them up front instead of answering 503 forever to a client that retries.
MAX_RECORD_BYTES = 1_000_000
# After a failed attempt to reach the broker, answer 503 at once for this long instead of
# tying up a worker thread per request in another bootstrap timeout.
RECONNECT_COOLDOWN_S = 1.0


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


def broker_answers(
    settings: Settings, *, timeout_s: float = 2.0, client_id: str = "closedloop-readyz"
) -> bool:
    """Return whether the broker answers a metadata request within about ``timeout_s``."""
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers(settings),
            client_id=client_id,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except Exception:  # any failure to connect means "not ready"
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


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
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._failed_at = float("-inf")
        self._closed = False

    def warm_up(self) -> None:
        """Connect now if the broker answers (best effort; publishing retries on demand)."""
        try:
            self._connected()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable at start-up; will retry on demand: %s", exc)

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
                future.get(timeout=max(deadline - time.monotonic(), 0.001))
        except Exception as exc:  # every send failure is "try again later"
            self._discard(producer)
            raise BrokerUnavailable(f"the broker did not acknowledge the events: {exc!r}") from exc
        return len(events)

    def close(self) -> None:
        """Flush what is pending (bounded by the publish timeout) and close the producer."""
        with self._lock:
            producer, self._producer, self._closed = self._producer, None, True
        if producer is not None:
            _close(producer, self._timeout_s)

    def _connected(self) -> KafkaProducer:
        producer = self._producer
        if producer is not None:
            return producer
        with self._lock:
            if self._producer is not None:
                return self._producer
            if self._closed:
                raise BrokerUnavailable("the service is shutting down")
            if time.monotonic() - self._failed_at < RECONNECT_COOLDOWN_S:
                raise BrokerUnavailable("the broker was unreachable a moment ago")
            self._producer = self._connect()
            return self._producer

    def _connect(self) -> KafkaProducer:
        """Create the producer, then the topics (so the broker cannot auto-create them wrong)."""
        try:
            # The bootstrap bound matters: kafka-python waits 30 s by default when nobody answers.
            producer = make_producer(
                self._settings,
                bootstrap_timeout_ms=int(self._timeout_s * 1000),
                **self._overrides,
            )
        except Exception as exc:
            self._failed_at = time.monotonic()
            raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
        try:
            ensure_topics(self._settings, timeout_s=self._settings.publish_timeout_s)
        except Exception as exc:
            _close(producer, 0)
            self._failed_at = time.monotonic()
            raise BrokerUnavailable(f"cannot create the topics: {exc!r}") from exc
        return producer

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        # Zero timeout: fail what is still pending at once rather than retry on a stale producer.
        _close(producer, 0)
