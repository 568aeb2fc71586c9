"""Request bodies → validated canonical events, all or nothing.

A body is one event object or ``{"events": [...]}``. Either every event is valid and the whole
list is returned, or a Problem is raised naming every invalid field by its location in the
body (``events[3].amount``; ``amount`` for a single event) and nothing is published.

Copies of one ``event_id`` inside a batch must be identical (contract §1): an identical copy
is a duplicate, accepted (the worker counts it once); a copy whose content differs is a
conflict and refuses the request at ``events[i].event_id``, so no arrival order ever picks
one. "Content" is the canonical encoding (``events.encode``), as the worker compares a later
copy with the stored one: ``"+02:00"`` and the same instant in ``Z`` are the same content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from services.core.events import EVENT_LIST_ADAPTER, EVENT_TYPES, Event, encode
from services.core.http import Problem, validation_errors

_TAG_ERRORS = {"union_tag_not_found", "union_tag_invalid"}
# No event type has more than a dozen fields. A wider object is refused before validation: a
# 10 MB object of a million unknown keys took 12 s and 1.7 GB to list a million errors.
MAX_EVENT_FIELDS = 32
# A 422 lists at most this many errors (its detail says how many there were).
MAX_LISTED_ERRORS = 1000
_TYPE_PROBLEM = "must be one of " + ", ".join(EVENT_TYPES)


@dataclass(frozen=True)
class ParsedBody:
    """A valid body's events, and the JSON items they were validated from (same order)."""

    events: list[Event]
    items: list[Any]


def parse_events(raw: bytes, *, max_events: int) -> list[Event]:
    """Parse and validate a request body; raise Problem 400 (bad JSON) or 422 (invalid)."""
    return parse_body(raw, max_events=max_events).events


def parse_body(raw: bytes, *, max_events: int) -> ParsedBody:
    """Like ``parse_events``, keeping the validated JSON items (to publish without re-encoding)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}") from None
    items, prefix = body_items(body, max_events=max_events)
    return validate_items(items, prefix=prefix)


def body_items(body: Any, *, max_events: int) -> tuple[list[Any], str | None]:
    """Return a body's event items and the prefix locating them (``events``, or None for one)."""
    if isinstance(body, dict) and "events" in body:
        return _batch_items(body, max_events=max_events), "events"
    if isinstance(body, dict):
        return [body], None
    raise invalid(
        [
            {
                "field": "body",
                "type": "body_type",
                "problem": 'must be one event object or {"events": [...]}',
            }
        ]
    )


def validate_items(items: list[Any], *, prefix: str | None) -> ParsedBody:
    """Validate event items all or nothing; errors are located under ``prefix[i]``."""
    too_wide = [
        {
            "field": f"{prefix}[{index}]" if prefix else "body",
            "type": "too_many_fields",
            "problem": f"has {len(item)} fields; an event has at most {MAX_EVENT_FIELDS}",
        }
        for index, item in enumerate(items)
        if isinstance(item, dict) and len(item) > MAX_EVENT_FIELDS
    ]
    if too_wide:
        raise invalid(too_wide)
    try:
        events = EVENT_LIST_ADAPTER.validate_python(items)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise invalid(_locate(errors, prefix)) from None
    conflicts = _conflicting_copies(events)
    if conflicts:
        raise invalid(conflicts)
    return ParsedBody(events, items)


def invalid(errors: list[dict[str, Any]]) -> Problem:
    """Return the 422 problem for ``errors`` (``[{"field", "problem", "type"}]``)."""
    shown = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    if len(errors) > MAX_LISTED_ERRORS:
        more += f"; the first {MAX_LISTED_ERRORS} of {len(errors)} errors are listed"
    return Problem(
        422,
        "Invalid events",
        f"nothing was accepted: {shown}{more}",
        errors=errors[:MAX_LISTED_ERRORS],
    )


def _batch_items(body: dict[str, Any], *, max_events: int) -> list[Any]:
    errors = [
        {
            "field": str(name),
            "problem": 'unknown field; send {"events": [...]}',
            "type": "extra_forbidden",
        }
        for name in body
        if name != "events"
    ]
    items = body["events"]
    if not isinstance(items, list):
        errors.append(
            {"field": "events", "problem": "must be a list of event objects", "type": "list_type"}
        )
    elif not items:
        errors.append(
            {"field": "events", "problem": "must hold at least 1 event", "type": "too_short"}
        )
    elif len(items) > max_events:
        errors.append(
            {
                "field": "events",
                "type": "too_long",
                "problem": f"holds {len(items)} events; at most {max_events} per request",
            }
        )
    if errors:
        raise invalid(errors)
    return items


def _conflicting_copies(events: list[Event]) -> list[dict[str, Any]]:
    """Name each copy of an ``event_id`` whose content differs from its first copy's."""
    first: dict[str, int] = {}
    repeated = [i for i, e in enumerate(events) if first.setdefault(e.event_id, i) != i]
    errors = []
    encoded: dict[int, bytes] = {}
    for index in repeated:  # usually none: encoding is paid only for repeated ids
        origin = first[events[index].event_id]
        if origin not in encoded:
            encoded[origin] = encode(events[origin])
        if encode(events[index]) != encoded[origin]:
            errors.append(
                {
                    "field": f"events[{index}].event_id",
                    "type": "event_id_conflict",
                    "problem": f"events[{origin}] has the same event_id with different content; "
                    "copies of an event must be identical (or give each event its own id)",
                }
            )
    return errors


def _locate(errors: list[Any], prefix: str | None) -> list[dict[str, Any]]:
    """Re-root pydantic locations at the body and drop the union's tag (e.g. ``deal.created``)."""
    located = []
    for err in errors:
        index, *rest = err["loc"]
        if rest and rest[0] in EVENT_TYPES:
            rest = rest[1:]
        if err["type"] in _TAG_ERRORS:
            rest = ["type"]
            err = {
                **err,
                "msg": (
                    "required: " if err["type"] == "union_tag_not_found" else "unknown event type; "
                )
                + _TYPE_PROBLEM,
            }
        loc = [prefix, index, *rest] if prefix else rest
        located.append({**err, "loc": loc})
    return validation_errors(located)
