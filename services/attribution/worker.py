"""The attribution worker: a Kafka consumer-group member that projects events into the database.

Guarantee: at-least-once delivery + idempotent writes = each event's effect exactly once.
- Auto-commit is off. Each poll returns a bounded batch, cut into transactions of about
  ``worker_batch_bytes`` (a record may hold one event or a batch of them). Each is decoded (an
  undecodable record or invalid event becomes a ``dead_letters`` row, never dropped and never
  blocking its partition), then applied in ONE database transaction that also records the
  next offset per partition. Only after that commit are its offsets committed to Kafka.
- A crash before the database commit loses nothing (the batch is polled again); a crash
  between the two commits replays the batch, which the idempotent projector absorbs.
- On assignment the worker seeks to the database's offset when it is ahead of Kafka's
  committed offset. A broker that forgot everything (the bundled in-memory one after a
  restart) has no committed offset, so the worker starts from the beginning: replays are
  harmless, skips are not. Should a stored offset lie beyond a partition's end, the fetch
  is out of range and ``auto_offset_reset=earliest`` replays the partition.
- A transient database error rolls back, seeks back to the first record not yet applied,
  backs off and retries. Anything unexpected is logged with partition and offset and the
  process exits non-zero, for the supervisor to restart it. SIGTERM finishes the batch,
  commits, closes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.batch import AppliedBatch, Record, apply_batch, is_transient
from services.attribution.maintenance import maintain_models
from services.attribution.recompute import recompute_if_parameters_changed
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ConsumerOffsetRow
from services.core.kafka import ensure_topics, make_consumer, make_producer
from services.core.logs import configure_logging
from services.core.settings import Settings

log = logging.getLogger("closedloop.worker")


class Stopped(Exception):
    """A stop request arrived while waiting for the database or the broker."""


T = TypeVar("T")


class _SeekToDatabase(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        # Runs on kafka-python's IO thread, which must not block: the main loop seeks.
        self.worker.pending_assignment.update(assigned)


class Worker:
    """One consumer-group member; ``run`` loops until ``stop`` is called or SIGTERM arrives."""

    def __init__(
        self, settings: Settings, *, sessions: sessionmaker[Session] | None = None
    ) -> None:
        self.settings = settings
        self.sessions = sessions or make_sessionmaker(make_engine(settings.database_url))
        self.consumer: KafkaConsumer | None = None
        self._stopping = False
        self.pending_assignment: set[TopicPartition] = set()
        self._dead_producer: KafkaProducer | None = None
        self.batches = 0
        self._scheduled_at = time.monotonic()
        self._maintenance = _Maintenance(self._maintain)
        self.events_applied = 0
        self._activity = _ActivityLog(every_s=0.0 if settings.verbose else 2.0)

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish the current batch and exit."""
        self._stopping = True

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when asked to stop."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, backing off while the database or broker is away.

        Only transient failures are retried (connection loss, broker unreachable); anything
        else propagates. A stop request ends the wait by raising ``Stopped``.
        """
        backoff = 0.5
        while True:
            try:
                return action()
            except (DBAPIError, KafkaError) as exc:
                if isinstance(exc, DBAPIError) and not is_transient(exc):
                    raise
                if self._stopping:
                    raise Stopped() from exc
                log.warning(
                    "%s failed (%s: %s); retrying in %.1fs",
                    what,
                    exc.__class__.__name__,
                    str(exc).splitlines()[0][:200],
                    backoff,
                )
                self._pause(backoff)
                backoff = min(backoff * 2, 30.0)

    def _maintain(self) -> None:
        """One maintenance pass: queue, run and finish model fits, compute new custom models.

        Runs on the maintenance thread (see ``_Maintenance``); a database outage here is
        logged and retried on a later pass, never fatal.
        """
        now = time.monotonic()
        # The schedule ticks every fit interval from start-up; fits asked for (API, CLI) and
        # new custom models are handled at every pass.
        schedule = now - self._scheduled_at >= self.settings.fit_interval_s
        if schedule:
            self._scheduled_at = now
        try:
            maintain_models(
                self.sessions,
                self.settings,
                schedule=schedule,
                progress=_log_progress,
                stop=self._maintenance.stopping,
            )
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "model maintenance postponed: database unavailable (%s)", exc.__class__.__name__
            )

    def _stored_offsets(self) -> dict[int, int]:
        with self.sessions() as session:
            rows = session.scalars(
                select(ConsumerOffsetRow).where(
                    ConsumerOffsetRow.topic == self.settings.events_topic
                )
            )
            return {row.partition: row.next_offset for row in rows}

    def _prepare_database(self) -> None:
        with self.sessions() as session, session.begin():
            sync_builtin_models(session, self.settings)
        recompute_if_parameters_changed(self.sessions, self.settings, progress=_log_progress)

    def seek_to_database(self, partitions: list[TopicPartition]) -> set[TopicPartition]:
        """Seek assigned partitions to the database's offsets where those are ahead.

        Returns the partitions that were moved; records already polled for them are stale.
        """
        assert self.consumer is not None
        stored = self._retrying("reading the database offsets", self._stored_offsets)
        moved: set[TopicPartition] = set()
        for tp in partitions:
            db_offset = stored.get(tp.partition)
            if db_offset is None:
                continue
            committed = self.consumer.committed(tp)
            if committed is not None and committed < db_offset:
                log.info(
                    "seeking %s to database offset %s (kafka had %s)", tp, db_offset, committed
                )
                self.consumer.seek(tp, db_offset)
                moved.add(tp)
        return moved

    def process(self, records: dict[TopicPartition, list[Any]]) -> AppliedBatch:
        """Apply one polled batch (one transaction with its offsets; see ``batch``)."""
        flat = [
            Record(tp.topic, tp.partition, r.offset, r.value or b"")
            for tp, batch in records.items()
            for r in batch
        ]
        return apply_batch(self.sessions, flat, settings=self.settings)

    def _publish_dead_letters(self, dead: Sequence[dict[str, Any]]) -> None:
        """Copy dead letters to the dead-letter topic (best effort: the table is the record)."""
        if not dead:
            return
        try:
            if self._dead_producer is None:
                self._dead_producer = make_producer(self.settings, client_id="closedloop-worker")
            for row in dead:
                headers = [
                    ("error", row["error"].encode()),
                    ("source", f"{row['topic']}[{row['partition']}]@{row['offset']}".encode()),
                ]
                self._dead_producer.send(
                    self.settings.dead_letter_topic,
                    value=row["raw"],
                    key=f"{row['topic']}:{row['partition']}".encode(),
                    headers=headers,
                )
            self._dead_producer.flush(self.settings.publish_timeout_s)
        except KafkaError as exc:
            log.warning(
                "could not copy %d dead letters to %s: %s (they are in the table)",
                len(dead),
                self.settings.dead_letter_topic,
                exc,
            )

    def _rewind(self, chunks: Sequence[dict[TopicPartition, list[Any]]]) -> None:
        """Seek every partition back to its first record not yet applied."""
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for chunk in chunks:
            for tp, batch in chunk.items():
                if batch and tp not in first:
                    first[tp] = batch[0].offset
        for tp, offset in first.items():
            self.consumer.seek(tp, offset)

    def _commit(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Commit the offsets after ``records`` to Kafka (the database already holds them)."""
        assert self.consumer is not None
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(b[-1].offset + 1, "", -1) for tp, b in records.items() if b}
            )
        except CommitFailedError:
            # A rebalance took the partitions; the database already holds the effects and
            # their offsets, so whoever consumes next resumes or replays harmlessly.
            log.warning("offset commit failed after a rebalance; the database has them")

    def run(self, *, max_batches: int | None = None, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (or ``max_batches`` / ``idle_exit_s`` for tests and tools)."""
        try:
            self._retrying(
                "creating the topics",
                lambda: ensure_topics(self.settings, timeout_s=self.settings.publish_timeout_s),
            )
            self._retrying("preparing the database", self._prepare_database)
        except Stopped:
            return
        self.consumer = make_consumer(self.settings)
        self.consumer.subscribe([self.settings.events_topic], listener=_SeekToDatabase(self))
        self._maintenance.start()
        backoff, idle_since = 0.5, time.monotonic()
        try:
            while not self._stopping:
                records = self.consumer.poll(timeout_ms=self.settings.worker_poll_timeout_ms)
                if self.pending_assignment:
                    assigned = self.pending_assignment & self.consumer.assignment()
                    self.pending_assignment.clear()
                    try:
                        moved = self.seek_to_database(sorted(assigned))
                    except Stopped:
                        break
                    records = {tp: recs for tp, recs in records.items() if tp not in moved}
                self._maintenance.check()
                if not records:
                    self._activity.flush()
                    if not self.consumer.assignment():
                        idle_since = time.monotonic()  # still joining the group: not idle
                    elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        break
                    continue
                chunks = transaction_chunks(records, self.settings.worker_batch_bytes)
                for index, chunk in enumerate(chunks):
                    try:
                        applied = self.process(chunk)
                    except DBAPIError as exc:
                        if not is_transient(exc):
                            log.exception(
                                "database error applying batch at %s; exiting", _firsts(chunk)
                            )
                            raise
                        log.warning(
                            "database unavailable (%s); retrying in %.1fs",
                            exc.__class__.__name__,
                            backoff,
                        )
                        self._rewind(chunks[index:])
                        self._pause(backoff)
                        backoff = min(backoff * 2, 30.0)
                        break
                    except Exception:
                        log.exception(
                            "unexpected error applying batch starting at %s; exiting",
                            _firsts(chunk),
                        )
                        raise
                    backoff, idle_since = 0.5, time.monotonic()
                    self._publish_dead_letters(applied.dead)
                    self._commit(chunk)
                    self.batches += 1
                    self.events_applied += applied.result.stored
                    self._activity.note(applied)
                    if max_batches is not None and self.batches >= max_batches:
                        return
        finally:
            self._maintenance.finish()
            self.consumer.close()
            if self._dead_producer is not None:
                self._dead_producer.close(timeout=5)


class _ActivityLog:
    """One log line per applied batch, or per ``every_s`` of batches when they come fast."""

    def __init__(self, *, every_s: float) -> None:
        self._every_s = every_s
        self._since = time.monotonic()
        self._batches = self._received = self._stored = self._deals = self._dead = 0

    def note(self, applied: AppliedBatch) -> None:
        """Count a committed batch; log the counts when ``every_s`` has passed."""
        self._batches += 1
        self._received += applied.result.received
        self._stored += applied.result.stored
        self._deals += applied.result.deals_recomputed
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


class _Maintenance(threading.Thread):
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


def _firsts(records: dict[TopicPartition, list[Any]]) -> dict[str, int]:
    return {f"{tp.topic}[{tp.partition}]": b[0].offset for tp, b in records.items() if b}


def _log_progress(done: int, total: int) -> None:
    log.info("recomputed %d of %d deals", done, total)


def run(settings: Settings) -> None:
    """Run a worker process until SIGTERM/SIGINT."""
    configure_logging(verbose=settings.verbose, process="worker")
    worker = Worker(settings)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
