"""``/metrics`` gauges of the consumer lag: records on the events topic not yet applied.

``closedloop_consumer_lag_records{topic,partition}`` is the partition's end offset on the broker
minus the next offset the database has applied (``consumer_offsets``, written by each batch's
transaction together with its effects): records published that no report reflects yet, not
records some consumer merely fetched. ``closedloop_consumer_topic_lag_records{topic}`` sums
them. Units are Kafka records: ingest publishes a request's events as batch records (one per
partition), so a record may hold many events. Recomputes queued after a commit are not lag;
``services.api.work_queue`` gauges them.

The API reads both sides when scraped: the database's offsets first, then the broker's, so the
applied offset never exceeds the end it is compared with, and one exceeding it means the log
was reset (the bundled broker forgets its topics when it stops; a topic deleted and created
again): none of the new log is applied yet, so the whole partition is lag. A partition with no
stored offset lags from its first offset.

One snapshot (a database query and two ListOffsets requests) serves every scrape for
``MAX_AGE_S``. It is taken on a thread of its own and a scrape waits at most ``WAIT_S`` for
it, so a broker that is away or hangs never fails or holds ``/metrics`` (served on the event
loop): that scrape has ``closedloop_consumer_lag_up 0`` and no lag series. The Kafka client
has no consumer group; it is created on the first scrape that finds the broker listening and
dropped after any error, so a broker that went away is not retried in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.schema import ConsumerOffsetRow
from services.core.kafka import broker_listening, log_offsets, make_offset_reader
from services.core.settings import Settings

log = logging.getLogger("closedloop.api")
MAX_AGE_S = 1.0  # a burst of scrapes costs one snapshot
WAIT_S = 0.5  # the longest a scrape waits for a snapshot
BROKER_TIMEOUT_S = 2.0  # bounds the client's bootstrap and each request


def partition_lag(first: int, end: int, applied: int | None) -> int:
    """Records of a partition's log past the applied offset (all of them after a log reset)."""
    if applied is None or applied > end:
        applied = first
    return max(0, end - max(applied, first))


@dataclass(frozen=True)
class LagSnapshot:
    """Lag per partition of one topic, or why there is none (``lags`` None: unknown)."""

    topic: str
    taken_at: float
    lags: dict[int, int] | None = None
    error: str | None = None

    def families(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of this snapshot: ``up`` always, the lag series when known."""
        per_partition, total, up = _families()
        up.add_metric([], 0.0 if self.lags is None else 1.0)
        yield up
        if self.lags is None:
            return
        for partition, lag in sorted(self.lags.items()):
            per_partition.add_metric([self.topic, str(partition)], lag)
        total.add_metric([self.topic], sum(self.lags.values()))
        yield per_partition
        yield total


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    snapshot: LagSnapshot | None = None


class ConsumerLagGauges(Collector):
    """The events topic's consumer lag, from one snapshot at most ``max_age_s`` old."""

    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], sessionmaker[Session]],
        *,
        max_age_s: float = MAX_AGE_S,
        wait_s: float = WAIT_S,
    ) -> None:
        self._settings, self._sessions = settings, sessions
        self._max_age_s, self._wait_s = max_age_s, wait_s
        self._lock = threading.Lock()
        self._latest: LagSnapshot | None = None
        self._pending: _Pending | None = None
        self._reader: Any = None  # used by one snapshot thread at a time
        self._was_up = True
        self._drop_after = False  # close() came while a snapshot was in flight

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.snapshot().families()

    def snapshot(self) -> LagSnapshot:
        """Return the latest snapshot if fresh, else take one (waiting at most ``wait_s``)."""
        with self._lock:
            latest = self._latest
            if latest is not None and time.monotonic() - latest.taken_at < self._max_age_s:
                return latest
            if self._pending is None:  # else the one in flight serves this scrape too
                self._pending = _Pending()
                threading.Thread(
                    target=self._take, args=(self._pending,), name="consumer-lag", daemon=True
                ).start()
            pending = self._pending
        if pending.done.wait(self._wait_s) and pending.snapshot is not None:
            return pending.snapshot
        return LagSnapshot(self._settings.events_topic, time.monotonic(), error="no answer in time")

    def close(self) -> None:
        """Drop the Kafka client (a snapshot in flight drops it when it ends); a scrape after
        this connects again."""
        with self._lock:
            if self._pending is None:
                self._drop_reader()
            else:
                self._drop_after = True

    def _take(self, pending: _Pending) -> None:
        snapshot = self._read()
        with self._lock:
            self._latest = pending.snapshot = snapshot
            self._pending = None
            if self._drop_after:
                self._drop_after = False
                self._drop_reader()
        pending.done.set()
        up = snapshot.lags is not None
        if up != self._was_up:
            (log.info if up else log.warning)(
                "consumer lag %s", "readable again" if up else f"unknown: {snapshot.error}"
            )
            self._was_up = up

    def _read(self) -> LagSnapshot:
        topic = self._settings.events_topic
        try:
            applied = self._applied(topic)
        except Exception as exc:  # noqa: BLE001 - any failure means "unknown", never a failed scrape
            return LagSnapshot(topic, time.monotonic(), error=f"database: {exc!r}")
        try:
            if not broker_listening(self._settings, timeout_s=BROKER_TIMEOUT_S):
                raise ConnectionError("the broker does not accept connections")
            if self._reader is None:
                self._reader = make_offset_reader(
                    self._settings, timeout_s=BROKER_TIMEOUT_S, client_id="closedloop-api-lag"
                )
            first, ends = log_offsets(self._reader, topic, timeout_s=BROKER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - as above
            self._drop_reader()  # a fresh client once the broker is back, no retries meanwhile
            return LagSnapshot(topic, time.monotonic(), error=f"broker: {exc!r}")
        lags = {p: partition_lag(first.get(p, 0), end, applied.get(p)) for p, end in ends.items()}
        return LagSnapshot(topic, time.monotonic(), lags=lags)

    def _applied(self, topic: str) -> dict[int, int]:
        with self._sessions()() as session:
            rows = session.execute(
                select(ConsumerOffsetRow.partition, ConsumerOffsetRow.next_offset).where(
                    ConsumerOffsetRow.topic == topic
                )
            )
            return {int(p): int(o) for p, o in rows}

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close(autocommit=False, timeout_ms=500)
            except Exception as exc:  # noqa: BLE001 - closing a broken client is best effort
                log.debug("could not close the lag reader: %r", exc)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "closedloop_consumer_lag_records",
            "Records of the partition not yet applied: end offset minus the database's",
            labels=["topic", "partition"],
        ),
        GaugeMetricFamily(
            "closedloop_consumer_topic_lag_records",
            "Records of the topic not yet applied (the sum over its partitions)",
            labels=["topic"],
        ),
        GaugeMetricFamily(
            "closedloop_consumer_lag_up",
            "1 if the latest lag snapshot read the database's and the broker's offsets, else 0",
        ),
    )
