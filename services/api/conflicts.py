"""Conflicting copies of events for admins: the list, and the gauge served on ``/metrics``.

The worker records every later copy of a stored ``event_id`` whose content differs
(``services.attribution.conflicts``); the stored copy is the one every report uses. Admins
list them here, page by page in id order, with both payloads, to correct the source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.api.formatting import rfc3339
from services.api.schemas import ConflictOut, ConflictsOut
from services.core.db.schema import EventConflictRow

log = logging.getLogger(__name__)


def list_conflicts(
    session: Session, *, limit: int, after_id: int | None, event_id: str | None
) -> ConflictsOut:
    """Return up to ``limit`` conflicts with an id above ``after_id``, in id order."""
    query = select(EventConflictRow).order_by(EventConflictRow.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(EventConflictRow.id > after_id)
    if event_id is not None:
        query = query.where(EventConflictRow.event_id == event_id)
    rows = list(session.scalars(query))
    page = rows[:limit]
    # One row more than asked for tells whether a next page exists without a COUNT.
    next_after_id = page[-1].id if len(rows) > limit else None
    return ConflictsOut(conflicts=[_out(r) for r in page], next_after_id=next_after_id)


def _out(row: EventConflictRow) -> ConflictOut:
    return ConflictOut(
        id=row.id,
        event_id=row.event_id,
        stored_payload=_object(row.stored_payload),
        conflicting_payload=_object(row.payload),
        payload_sha256=row.payload_sha256,
        partition=row.kafka_partition,
        offset=row.kafka_offset,
        first_seen_at=rfc3339(row.first_seen_at) or "",
        last_seen_at=rfc3339(row.last_seen_at) or "",
        copies=row.copies,
    )


def _object(payload: str) -> dict[str, Any]:
    parsed = orjson.loads(payload)  # canonical JSON written by the worker: always an object
    return parsed if isinstance(parsed, dict) else {"value": parsed}


class ConflictGauges(Collector):
    """``closedloop_event_conflicts`` and ``…_copies``, counted in the database at scrape time.

    The database is the record (several workers may write it; none of them serves HTTP), so
    the API reads it when scraped instead of keeping a counter of its own. An unreachable
    database leaves the gauges out of that scrape rather than failing ``/metrics``.
    """

    def __init__(self, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._sessions()() as session:
                rows, copies = session.execute(
                    select(func.count(), func.coalesce(func.sum(EventConflictRow.copies), 0))
                ).one()
        except (SQLAlchemyError, AttributeError) as exc:  # no database, or not started yet
            log.debug("conflict gauges skipped: %r", exc)
            return
        distinct, total = _families()
        distinct.add_metric([], int(rows))
        total.add_metric([], int(copies))
        yield distinct
        yield total


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "closedloop_event_conflicts",
            "Distinct conflicting copies of stored events (same event_id, other content)",
        ),
        GaugeMetricFamily(
            "closedloop_event_conflict_copies",
            "Topic records that carried a conflicting copy of a stored event",
        ),
    )
