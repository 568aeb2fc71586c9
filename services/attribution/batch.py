"""One poll batch: decode, apply in one transaction with its offsets, isolate bad events.

Invariant: a batch either commits entirely (events, state, its queued impact, conflicts, dead
letters and the next offset of every partition in it) or not at all, except on the isolation
path, where each event commits alone and the conflicts and offsets commit last, together;
every step is idempotent, so a crash anywhere on that path is also replayed harmlessly.

Events are applied in log order (topic, partition, offset, then position in the record), on
both paths: of two new copies of an ``event_id`` in one batch, the earlier in the log is
stored, however the poll happened to order its partitions. The credits and funnel summaries
the batch changes are recomputed after its commit (``services.attribution.dirty``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import DecimalException
from typing import Any

import orjson
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.conflicts import Conflict, Origin, record_conflicts
from services.attribution.dirty import queue_impact
from services.attribution.event_cache import EventCache
from services.attribution.projector import BatchResult, batch_result, locks_for, store_and_project
from services.core.db.schema import ConsumerOffsetRow, DeadLetterRow
from services.core.db.unit_of_work import nothing_changed, unit_of_work
from services.core.db.upsert import insert_ignore, upsert
from services.core.events import Event, decode_record
from services.core.money import MoneyError
from services.core.settings import Settings

log = logging.getLogger("closedloop.worker")

# Failures caused by one event's data, not by the database being away or by a bug in the loop:
# the event is isolated into a dead letter and the stream goes on.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    IntegrityError,
    OverflowError,
    DecimalException,
    MoneyError,
)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record, reduced to what the worker needs."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass
class Decoded:
    events: list[Event]
    origins: list[Origin]  # parallel to ``events``: the record each arrived in
    dead: list[dict[str, Any]]
    next_offsets: dict[tuple[str, int], int]
    records: dict[Origin, Record]


def decode_records(records: Sequence[Record], *, now: datetime) -> Decoded:
    """Decode records in log order; undecodable or invalid ones become dead-letter rows."""
    out = Decoded([], [], [], {}, {})
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        key = (record.topic, record.partition)
        out.next_offsets[key] = max(out.next_offsets.get(key, 0), record.offset + 1)
        try:
            contents = decode_record(record.value)
        except (ValueError, OverflowError) as exc:
            out.dead.append(_dead(record, f"undecodable: {exc}", now))
            continue
        if contents.invalid:
            # A batch record keeps its valid events flowing; its invalid items are kept, as
            # a JSON array, in one dead letter (the record's coordinates identify it).
            raw = record.value
            if contents.events:
                raw = orjson.dumps([item for item, _ in contents.invalid])
            errors = "; ".join(error for _, error in contents.invalid)
            out.dead.append(_dead(replace(record, value=raw), f"undecodable: {errors}", now))
        origin = (record.topic, record.partition, record.offset)
        out.records[origin] = record
        for event in contents.events:
            out.events.append(event)
            out.origins.append(origin)
    return out


def _dead(record: Record, error: str, now: datetime) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "raw": record.value,
        "error": error[:4000],
        "created_at": now,
    }


def _record_offsets(
    session: Session, decoded: Decoded, conflicts: Sequence[Conflict], *, now: datetime
) -> None:
    # Conflicts first: they tell new arrivals from replays by the offsets stored so far.
    record_conflicts(session, conflicts, now=now)
    insert_ignore(session, DeadLetterRow, decoded.dead)  # a replayed batch adds none twice
    upsert(
        session,
        ConsumerOffsetRow,
        [
            {"topic": topic, "partition": partition, "next_offset": offset}
            for (topic, partition), offset in decoded.next_offsets.items()
        ],
    )


@dataclass(frozen=True)
class AppliedBatch:
    """What a committed batch did, and the dead letters it recorded (to publish after)."""

    result: BatchResult
    dead: tuple[dict[str, Any], ...]


def apply_batch(
    sessions: sessionmaker[Session],
    records: Sequence[Record],
    *,
    settings: Settings,
    cache: EventCache | None = None,
) -> AppliedBatch:
    """Apply a batch in one transaction; on a data error, isolate the offending events."""
    now = datetime.now(UTC)
    decoded = decode_records(records, now=now)
    try:
        result = _apply(sessions, decoded, settings=settings, now=now, cache=cache)
        return AppliedBatch(result, tuple(decoded.dead))
    except DATA_ERRORS as exc:
        if is_transient(exc):
            raise
        log.warning("batch failed on its data (%s); applying its events one by one", exc)
    result = _apply_one_by_one(sessions, decoded, settings=settings, now=now, cache=cache)
    return AppliedBatch(result, tuple(decoded.dead))


def _apply(
    sessions: sessionmaker[Session],
    decoded: Decoded,
    *,
    settings: Settings,
    now: datetime,
    cache: EventCache | None,
    offsets: bool = True,
) -> BatchResult:
    """Store and project ``decoded``'s events and queue their impact, in one unit of work."""
    with unit_of_work(sessions, *locks_for(decoded.events)) as session:
        projected = store_and_project(
            session,
            decoded.events,
            settings=settings,
            now=now,
            origins=decoded.origins,
            cache=cache,
        )
        queue_impact(session, projected.impact, now=now)
        if not projected.stored.new:
            nothing_changed(session)
        result = batch_result(decoded.events, projected, set())
        if offsets:
            _record_offsets(session, decoded, result.conflicts, now=now)
    return result


def _apply_one_by_one(
    sessions: sessionmaker[Session],
    decoded: Decoded,
    *,
    settings: Settings,
    now: datetime,
    cache: EventCache | None,
) -> BatchResult:
    """Apply each event in its own transaction (log order); dead-letter those that fail.

    Conflicts are gathered and written with the offsets at the end, so that a crash midway
    replays them without counting any copy twice.
    """
    stored = 0
    conflicts: list[Conflict] = []
    for event, origin in zip(decoded.events, decoded.origins, strict=True):
        alone = Decoded([event], [origin], [], {}, {})
        try:
            result = _apply(sessions, alone, settings=settings, now=now, cache=cache, offsets=False)
        except DATA_ERRORS as exc:
            if is_transient(exc):
                raise
            topic, partition, offset = origin
            log.warning("dead-lettering %s[%s]@%s: %s", topic, partition, offset, exc)
            decoded.dead.append(_dead(decoded.records[origin], f"could not be applied: {exc}", now))
            continue
        stored += result.stored
        conflicts += result.conflicts
    with unit_of_work(sessions) as session:
        nothing_changed(session)
        _record_offsets(session, decoded, conflicts, now=now)
    return BatchResult(
        received=len(decoded.events),
        stored=stored,
        duplicates=len(decoded.events) - stored,
        deals_recomputed=0,
        conflicts=tuple(conflicts),
    )


def is_transient(exc: BaseException) -> bool:
    """Return whether a database error means "not now" (retry) rather than "never" (data/bug).

    Connection failures, server shutdowns, lock and serialisation conflicts and SQLite's busy
    database are transient; everything else is not, so a bad statement cannot loop forever.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in {"08", "40", "53", "57"}  # connection, rollback, resources, admin
    message = str(orig).lower()
    if "parameters" in message:
        return False
    return isinstance(exc, OperationalError) and any(
        word in message for word in ("locked", "busy", "connect", "closed", "terminat", "timeout")
    )
