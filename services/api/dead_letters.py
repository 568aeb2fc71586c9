"""Dead letters for admins: list them, and re-publish one once the schema accepts it.

The worker turns a record it cannot decode, validate or apply into a ``dead_letters`` row (its
topic, partition, offset, raw bytes and error) and goes on. After a fix, an admin retries it:

- The stored bytes (one event, or a JSON array of a batch record's invalid events) are
  re-validated with the CURRENT schema; anything still invalid → the errors, and nothing is
  published.
- Valid events are published, canonically encoded, to the events topic, and
  only after the broker acknowledged it (acks=all, bounded by ``publish_timeout_s``) is the row
  marked ``retried_at``, with an audit row (``dead_letter.retry``). Both commit here, in one
  short transaction of their own (no transaction stays open while the broker is waited for).

A double retry is harmless: the worker stores events idempotently (an ``event_id`` it already
has is ignored), so a second copy of the event on the topic changes nothing. That is why a
retry that published but could not mark the row (database down) simply fails and may be
repeated, and why concurrent retries of one row are not locked against each other.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from services.api.errors import AlreadyRetried, DeadLetterNotFound, StillInvalid
from services.api.formatting import rfc3339
from services.api.schemas import DeadLetterOut, DeadLetterRetryOut, DeadLettersOut
from services.core.audit import record_audit
from services.core.auth import Principal
from services.core.db.schema import DeadLetterRow
from services.core.events import EVENT_ADAPTER, EVENT_TYPES, Event
from services.core.http import validation_errors
from services.core.publisher import Publisher

_TAG_ERRORS = {"union_tag_not_found", "union_tag_invalid"}


def list_dead_letters(
    session: Session, *, limit: int, after_id: int | None, include_retried: bool
) -> DeadLettersOut:
    """Return up to ``limit`` dead letters with an id above ``after_id``, in id order."""
    query = select(DeadLetterRow).order_by(DeadLetterRow.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(DeadLetterRow.id > after_id)
    if not include_retried:
        query = query.where(DeadLetterRow.retried_at.is_(None))
    rows = list(session.scalars(query))
    page = rows[:limit]
    # One row more than asked for tells whether a next page exists without a COUNT.
    next_after_id = page[-1].id if len(rows) > limit else None
    return DeadLettersOut(dead_letters=[_out(r) for r in page], next_after_id=next_after_id)


def _out(row: DeadLetterRow) -> DeadLetterOut:
    return DeadLetterOut(
        id=row.id,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        error=row.error,
        created_at=rfc3339(row.created_at) or "",
        retried_at=rfc3339(row.retried_at),
        raw=_text(row.raw),
        raw_base64=base64.b64encode(row.raw).decode("ascii"),
    )


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def revalidate(dead_letter_id: int, raw: bytes) -> list[Event]:
    """Decode ``raw`` (an event, or a JSON array of them) with the current schema.

    Raises StillInvalid naming each field (``raw.amount``, or ``raw[2].amount`` in an array)
    when anything is still invalid: a retry republishes all of a dead letter or nothing.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # not JSON at all
        problem = f"is not valid JSON: {exc}"
        errors = [{"field": "raw", "problem": problem, "type": "json_invalid"}]
        raise StillInvalid(dead_letter_id, errors) from None
    items = parsed if isinstance(parsed, list) else [parsed]
    events, found = [], []
    for index, item in enumerate(items):
        root: list[Any] = ["raw", index] if isinstance(parsed, list) else ["raw"]
        try:
            events.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_input=False, include_context=False)
            found += [_locate(e, root) for e in details]
    if found or not events:
        raise StillInvalid(dead_letter_id, validation_errors(found or [_EMPTY]))
    return events


_EMPTY = {"loc": ["raw"], "msg": "holds no event", "type": "empty"}


def _locate(error: Any, root: list[Any]) -> dict[str, Any]:
    """Root a location at the stored record (``raw.amount``) without the union's tag."""
    loc = list(error["loc"])
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    if error["type"] in _TAG_ERRORS:
        loc = ["type"]
        known = "must be one of " + ", ".join(EVENT_TYPES)
        missing = error["type"] == "union_tag_not_found"
        error = {**error, "msg": ("required; " if missing else "unknown event type; ") + known}
    return {**error, "loc": [*root, *loc]}


def retry_dead_letter(
    sessions: sessionmaker[Session],
    publisher: Publisher,
    dead_letter_id: int,
    *,
    principal: Principal,
    force: bool = False,
) -> DeadLetterRetryOut:
    """Re-validate a dead letter, publish it, and mark it retried once the broker acknowledged."""
    with sessions() as session:
        row = session.get(DeadLetterRow, dead_letter_id)
    if row is None:
        raise DeadLetterNotFound(dead_letter_id)
    if row.retried_at is not None and not force:
        raise AlreadyRetried(dead_letter_id, row.retried_at)
    events = revalidate(dead_letter_id, row.raw)
    publisher.publish(events)  # raises BrokerUnavailable: nothing is marked
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.execute(
            update(DeadLetterRow).where(DeadLetterRow.id == dead_letter_id).values(retried_at=now)
        )
        detail = {"event_ids": [e.event_id for e in events], "force": force}
        record_audit(
            session, principal, "dead_letter.retry", f"dead_letter:{dead_letter_id}", detail, at=now
        )
    return DeadLetterRetryOut(
        id=dead_letter_id,
        event_id=events[0].event_id,
        event_ids=[e.event_id for e in events],
        republished=True,
    )
