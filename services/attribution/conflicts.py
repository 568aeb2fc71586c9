"""Conflicting copies of an ``event_id`` (contract §1): recorded for admins, never applied.

A copy of a stored ``event_id`` whose canonical encoding differs from the stored payload is a
conflict. The stored copy is the first one accepted (of two new copies in one batch, the earlier
in the log: ``store_events``) and stays; every later, different copy is recorded here, in
``event_conflicts``, and listed at ``GET /v1/admin/conflicts``. Nothing is chosen silently.

One row per distinct conflicting payload (unique on ``event_id`` + the payload's SHA-256), with
where it first arrived (partition, offset), when it was first and last seen, and ``copies``:
how many distinct topic records carried it.

Idempotent under replay: a record counts only when the database has not applied it yet, i.e.
its offset is at or past its partition's next offset in ``consumer_offsets``. The caller writes
the conflicts in the transaction that moves those offsets, so a replayed batch (a crash between
the database and Kafka commits, a group that lost its committed offsets) adds nothing. One known
undercount: a restarted in-memory broker numbers offsets from 0 again, below the stored ones,
so copies arriving just after such a restart are not added to an existing row (a row that does
not exist yet is still created).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.db.schema import ConsumerOffsetRow, EventConflictRow
from services.core.db.upsert import among, insert_ignore

log = logging.getLogger("closedloop.worker")

Origin = tuple[str, int, int]  # topic, partition, offset of the record an event arrived in


@dataclass(frozen=True)
class Conflict:
    """One arrival of a copy whose content differs from the stored event's."""

    event_id: str
    payload: str  # the conflicting copy, canonically encoded
    stored_payload: str
    origin: Origin | None  # None: applied outside the consume loop (no record)


@dataclass
class _Group:
    first: Conflict
    records: set[Origin] = field(default_factory=set)
    seen: int = 0  # distinct records (or record-less copies) in this batch
    new: int = 0  # of those, the ones the database had not applied before


def record_conflicts(session: Session, conflicts: Sequence[Conflict], *, now: datetime) -> int:
    """Record conflicting copies (in ``conflicts``' log order); return the new arrivals counted.

    Call it before the batch's offsets are written, in the same transaction.
    """
    if not conflicts:
        return 0
    applied = _applied_offsets(session, {(o[0], o[1]) for c in conflicts if (o := c.origin)})
    groups: dict[tuple[str, str], _Group] = {}
    for conflict in conflicts:
        digest = hashlib.sha256(conflict.payload.encode()).hexdigest()
        group = groups.setdefault((conflict.event_id, digest), _Group(conflict))
        origin = conflict.origin
        if origin is not None and origin in group.records:
            continue  # one record holding the same copy twice is one arrival
        group.seen += 1
        if origin is None:
            group.new += 1
            continue
        group.records.add(origin)
        if origin[2] >= applied.get((origin[0], origin[1]), 0):
            group.new += 1
    existing = {
        (row.event_id, row.payload_sha256): row
        for row in session.scalars(
            select(EventConflictRow).where(
                among(session, EventConflictRow.event_id, {key[0] for key in groups})
            )
        )
    }
    counted, fresh = 0, []
    for (event_id, digest), group in groups.items():
        row = existing.get((event_id, digest))
        if row is None:
            fresh.append(_new_row(group, digest, now))
        elif group.new:
            row.copies += group.new
            row.last_seen_at = now
        else:
            continue  # a replay of copies already counted
        counted += group.new
        log.warning(
            "conflicting copy of event %s at %s: kept the stored one (%d new copies)",
            event_id,
            _where(group.first.origin),
            group.new,
        )
    # ON CONFLICT DO NOTHING: never an integrity error here, so the batch (or the isolation
    # path's last transaction) cannot fail on its conflicts, even beside another writer.
    insert_ignore(session, EventConflictRow, fresh)
    return counted


def _new_row(group: _Group, digest: str, now: datetime) -> dict[str, object]:
    first = group.first
    return {
        "event_id": first.event_id,
        "payload_sha256": digest,
        "payload": first.payload,
        "stored_payload": first.stored_payload,
        "kafka_partition": None if first.origin is None else first.origin[1],
        "kafka_offset": None if first.origin is None else first.origin[2],
        "first_seen_at": now,
        "last_seen_at": now,
        "copies": group.seen,
    }


def _applied_offsets(
    session: Session, partitions: set[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Return the next offset the database has applied up to, per (topic, partition)."""
    if not partitions:
        return {}
    rows = session.execute(
        select(
            ConsumerOffsetRow.topic, ConsumerOffsetRow.partition, ConsumerOffsetRow.next_offset
        ).where(among(session, ConsumerOffsetRow.topic, {topic for topic, _ in partitions}))
    )
    return {(topic, partition): offset for topic, partition, offset in rows}


def _where(origin: Origin | None) -> str:
    return "(no record)" if origin is None else f"{origin[0]}[{origin[1]}]@{origin[2]}"
