"""The attribution worker: a Kafka consumer-group member that projects events into the database.

Guarantee: at-least-once delivery + idempotent writes = each event's effect exactly once.
- Auto-commit is off. Each poll returns a bounded batch, cut into transactions of about
  ``worker_batch_bytes`` (a record may hold one event or a batch of them). Each is decoded (an
  undecodable record or invalid event becomes a ``dead_letters`` row, never dropped and never
  blocking its partition), then applied in ONE database transaction that also records the
  next offset per partition. Only after that commit are its offsets committed to Kafka.
- After each batch (and on every idle poll) the worker drains the work queues: the impacts
  of committed batches, any worker's, resolved into dirty deals and roots and recomputed
  (``services.attribution.dirty``). Workers share that work without a global lock; a crash
  leaves it queued for the next.
- A crash before the database commit loses nothing (the batch is polled again); a crash
  between the two commits replays the batch, which the idempotent projector absorbs.
- On assignment the worker seeks to the database's offset when it is ahead of Kafka's
  committed offset. A broker that forgot everything (the bundled in-memory one after a
  restart) has no committed offset, so the worker starts from the beginning: replays are
  harmless, skips are not. Should a stored offset lie beyond a partition's end, the fetch
  is out of range and ``auto_offset_reset=earliest`` replays the partition.
- Failures of the database or the broker are transient, wherever they happen (start-up,
  poll, seek, commit): one retry policy (``Backoff``: 0.5 s doubling to 30 s, reset by a
  committed batch) covers them all. A database error rolls back and seeks back to the first
  record not yet applied. A broker error drops the consumer without committing anything,
  and a new one (after making sure the topics exist: a restarted broker may have forgotten
  them) joins the group and resumes from the committed offsets, or the database's where
  those are behind. Anything else is logged with partition and offset and the process exits
  non-zero, for the supervisor to restart it. SIGTERM finishes the batch, commits, closes.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.batch import DATA_ERRORS, AppliedBatch, Record, apply_batch, is_transient
from services.attribution.consuming import (
    ActivityLog,
    Backoff,
    MaintenanceThread,
    transaction_chunks,
)
from services.attribution.deal_funnel import refresh_deal_funnel
from services.attribution.dirty import Drained, drain
from services.attribution.event_cache import EventCache
from services.attribution.maintenance import (
    compact,
    maintain_leads,
    maintain_models,
    refresh_pipeline,
)
from services.attribution.recompute import recompute_if_parameters_changed
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.housekeeping import housekeep
from services.core.db.schema import ConsumerOffsetRow
from services.core.db.unit_of_work import MODELS_IN_FORCE, Lock, unit_of_work
from services.core.kafka import ensure_topics, make_consumer, make_producer
from services.core.logs import configure_logging
from services.core.settings import Settings

log = logging.getLogger("closedloop.worker")

# Decoded stored events kept by the consume loop (see ``event_cache``).
EVENT_CACHE_SIZE = 50_000
# The longest a drain runs before the loop polls again (well within max_poll_interval_ms).
DRAIN_BUDGET_S = 20.0


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
        owned = sorted(tp.partition for tp in assigned)
        log.info("assigned partitions %s", ", ".join(map(str, owned)) or "(none)")


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
        self._mql_producer: KafkaProducer | None = None  # the maintenance thread's own
        self.batches = 0
        self._scheduled_at = time.monotonic()
        # The pipeline snapshot is due at the first pass, then every pipeline interval.
        self._pipeline_at: float | None = None
        self._leads_at: float | None = None
        self._compactions = 0
        self._maintenance = MaintenanceThread(self._maintain)
        self.events_applied = 0
        self._activity = ActivityLog(every_s=0.0 if settings.verbose else 2.0)
        # The consume loop's own cache; the maintenance thread decodes on its own.
        self.cache = EventCache(EVENT_CACHE_SIZE)
        self._idle_since = time.monotonic()

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish the current batch and exit."""
        self._stopping = True

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when asked to stop."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _wait_out(self, exc: Exception, what: str, backoff: Backoff) -> None:
        """Log a transient failure of ``what`` and back off; re-raise one that is not transient.

        Raises ``Stopped`` instead of waiting when a stop was requested.
        """
        if isinstance(exc, DBAPIError) and not is_transient(exc):
            raise exc
        if not isinstance(exc, DBAPIError | KafkaError):
            raise exc
        if self._stopping:
            raise Stopped() from exc
        pause = backoff.next_pause()
        log.warning(
            "%s: %s unavailable (%s); retrying in %.1fs (%s)",
            what,
            "database" if isinstance(exc, DBAPIError) else "broker",
            exc.__class__.__name__,
            pause,
            (str(exc).splitlines() or [""])[0][:200],
        )
        self._pause(pause)

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, backing off while the database or broker is away."""
        backoff = Backoff()
        while True:
            try:
                return action()
            except (DBAPIError, KafkaError) as exc:
                self._wait_out(exc, what, backoff)

    def _maintain(self) -> None:
        """One maintenance pass: queue, run and finish model fits, compute new custom models,
        rebuild the deal funnel's entries when its stage order moved, and, when due, the
        pipeline snapshot; vacuum where the server does not
        (``services.core.db.housekeeping``).

        Runs on the maintenance thread (see ``MaintenanceThread``); a database outage here is
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
            # Every pass compacts what changed since the last; the first looks at every key.
            compact(self.sessions, full=self._compactions == 0)
            self._compactions += 1
            refresh_deal_funnel(self.sessions, self.settings)  # only when its order moved
            if self._pipeline_due(now):  # after anything else that changes the projection
                refresh_pipeline(self.sessions, self.settings)
            if self._leads_due(now):
                maintain_leads(self.sessions, self.settings, self._send_mqls)
            housekeep(self.sessions.kw["bind"])  # only where the server's autovacuum is off
        except KafkaError as exc:  # the MQL rows stay pending: published at a later pass
            log.warning("MQL events not published yet: broker unavailable (%r)", exc)
            self._close_mql_producer()
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "model maintenance postponed: database unavailable (%s)", exc.__class__.__name__
            )

    def _leads_due(self, now: float) -> bool:
        """Return whether the lead qualification pass is due (first pass, then every interval)."""
        if self._maintenance.stopping() or (
            self._leads_at is not None and now - self._leads_at < self.settings.lead_interval_s
        ):
            return False
        self._leads_at = now
        return True

    def _send_mqls(self, records: list[tuple[bytes, bytes]]) -> None:
        """Publish MQL events to the events topic; return once the broker acknowledged all."""
        if self._mql_producer is None:
            self._mql_producer = make_producer(self.settings, client_id="closedloop-worker-mql")
        futures = [
            self._mql_producer.send(self.settings.events_topic, key=key, value=value)
            for key, value in records
        ]
        self._mql_producer.flush(self.settings.publish_timeout_s)
        for future in futures:
            future.get(timeout=self.settings.publish_timeout_s)

    def _close_mql_producer(self) -> None:
        producer, self._mql_producer = self._mql_producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # noqa: BLE001 - closing a broken client is best effort
                log.warning("could not close the MQL producer: %r", exc)

    def _pipeline_due(self, now: float) -> bool:
        """Return whether the pipeline snapshot is due (first pass, then every interval)."""
        if self._maintenance.stopping():
            return False
        if (
            self._pipeline_at is not None
            and now - self._pipeline_at < self.settings.pipeline_interval_s
        ):
            return False
        self._pipeline_at = now
        return True

    def _stored_offsets(self) -> dict[int, int]:
        with self.sessions() as session:
            rows = session.scalars(
                select(ConsumerOffsetRow).where(
                    ConsumerOffsetRow.topic == self.settings.events_topic
                )
            )
            return {row.partition: row.next_offset for row in rows}

    def _prepare_database(self) -> None:
        with unit_of_work(self.sessions, Lock(MODELS_IN_FORCE)) as session:
            sync_builtin_models(session, self.settings)
        recompute_if_parameters_changed(self.sessions, self.settings, progress=_log_progress)

    def _ensure_topics(self) -> None:
        ensure_topics(self.settings, timeout_s=self.settings.publish_timeout_s)

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

    def drain(self) -> Drained:
        """Recompute what committed batches left queued (any worker's); see ``dirty``."""
        return drain(
            self.sessions,
            self.settings,
            self.cache,
            budget_s=DRAIN_BUDGET_S,
            data_errors=DATA_ERRORS,
            is_transient=is_transient,
        )

    def process(self, records: dict[TopicPartition, list[Any]]) -> AppliedBatch:
        """Apply one polled batch (one transaction with its offsets; see ``batch``)."""
        flat = [
            Record(tp.topic, tp.partition, r.offset, r.value or b"")
            for tp, batch in records.items()
            for r in batch
        ]
        return apply_batch(self.sessions, flat, settings=self.settings, cache=self.cache)

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
            # A restarted broker forgets the idempotent producer: start afresh next time.
            self._close_dead_producer(timeout_s=0)

    def _close_dead_producer(self, *, timeout_s: float) -> None:
        producer, self._dead_producer = self._dead_producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except Exception as exc:  # closing is best effort, the table holds the rows
                log.warning("could not close the dead-letter producer: %r", exc)

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
        """Commit the offsets after ``records`` to Kafka (the database already holds them).

        A broker error propagates: the loop reconnects rather than retry this commit, which
        could write old offsets into a broker that restarted meanwhile.
        """
        assert self.consumer is not None
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(b[-1].offset + 1, "", -1) for tp, b in records.items() if b},
                # Bounded: a broker that is away should not hold the loop (or a SIGTERM) for
                # the consumer's long request timeout; the database has the offsets anyway.
                timeout_ms=self.settings.kafka_request_timeout_ms,
            )
        except CommitFailedError:
            # A rebalance took the partitions; the database already holds the effects and
            # their offsets, so whoever consumes next resumes or replays harmlessly.
            log.warning("offset commit failed after a rebalance; the database has them")

    def _connected(self) -> KafkaConsumer:
        """Return the consumer, creating and subscribing one first if there is none."""
        if self.consumer is None:
            self._ensure_topics()
            consumer = make_consumer(self.settings)
            try:
                consumer.subscribe([self.settings.events_topic], listener=_SeekToDatabase(self))
            except Exception:
                consumer.close(autocommit=False)
                raise
            self.consumer = consumer
        return self.consumer

    def _disconnect(self, *, timeout_ms: int = 1000) -> None:
        """Drop the consumer without committing (its position and assignment go with it).

        Closing sends LeaveGroup, which lets the other members rebalance at once; a member
        that vanishes during a rebalance instead holds the whole group until the coordinator
        gives up on it (seen with the bundled broker: the remaining workers waited minutes).
        The short default is for a broker that is away, where nothing can be sent anyway.
        """
        consumer, self.consumer = self.consumer, None
        self.pending_assignment.clear()
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=timeout_ms)
            except Exception as exc:  # the broker is away; the group will time us out
                log.warning("could not close the consumer cleanly: %r", exc)

    def run(self, *, max_batches: int | None = None, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (or ``max_batches`` / ``idle_exit_s`` for tests and tools)."""
        try:
            self._retrying("creating the topics", self._ensure_topics)
            self._retrying("preparing the database", self._prepare_database)
        except Stopped:
            return
        self._maintenance.start()
        backoff = Backoff()
        self._idle_since = time.monotonic()
        try:
            while not self._stopping:
                try:
                    if self._consume(backoff, max_batches=max_batches, idle_exit_s=idle_exit_s):
                        return
                except KafkaError as exc:
                    self._disconnect()
                    self._wait_out(exc, "consuming", backoff)
        except Stopped:
            return
        finally:
            # Leave the group first: the maintenance thread may take a chunk of a refit to
            # finish, and the partitions should move to the other workers meanwhile.
            self._disconnect(timeout_ms=self.settings.kafka_request_timeout_ms)
            self._maintenance.finish()
            self._close_dead_producer(timeout_s=5)
            self._close_mql_producer()

    def _drained(self, backoff: Backoff) -> Drained | None:
        """Drain the work queues; None if the database is away (waited out, retried later)."""
        try:
            return self.drain()
        except DBAPIError as exc:
            self._wait_out(exc, "recomputing dirty deals", backoff)
            return None

    def _consume(
        self, backoff: Backoff, *, max_batches: int | None, idle_exit_s: float | None
    ) -> bool:
        """Poll once and apply what came; return whether the run is over (tests, tools)."""
        consumer = self._connected()
        records = consumer.poll(timeout_ms=self.settings.worker_poll_timeout_ms)
        if self.pending_assignment:
            assigned = self.pending_assignment & consumer.assignment()
            self.pending_assignment.clear()
            moved = self.seek_to_database(sorted(assigned))
            records = {tp: recs for tp, recs in records.items() if tp not in moved}
        self._maintenance.check()
        if not records:
            if self._drained(backoff):
                self._idle_since = time.monotonic()
                return False
            self._activity.flush()
            if not consumer.assignment():
                self._idle_since = time.monotonic()  # still joining the group: not idle
            elif idle_exit_s is not None and time.monotonic() - self._idle_since > idle_exit_s:
                return True
            return False
        chunks = transaction_chunks(records, self.settings.worker_batch_bytes)
        for index, chunk in enumerate(chunks):
            try:
                applied = self.process(chunk)
            except DBAPIError as exc:
                if not is_transient(exc):
                    log.exception("database error applying batch at %s; exiting", _firsts(chunk))
                    raise
                self._rewind(chunks[index:])
                self._wait_out(exc, "applying a batch", backoff)
                return False
            except Exception:
                log.exception(
                    "unexpected error applying batch starting at %s; exiting", _firsts(chunk)
                )
                raise
            backoff.reset()
            self._idle_since = time.monotonic()
            self._publish_dead_letters(applied.dead)
            self._commit(chunk)
            self.batches += 1
            self.events_applied += applied.result.stored
            drained = self._drained(backoff)
            self._activity.note(applied, deals=drained.deals if drained else 0)
            if max_batches is not None and self.batches >= max_batches:
                return True
        return False


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
