"""Request bodies → validated canonical events, all or nothing.

A body is one event object or ``{"events": [...]}``. Either every event is valid and the whole
list is returned, or a Problem is raised naming every invalid field by its location in the
body (``events[3].amount``; ``amount`` for a single event) and nothing is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from services.core.events import EVENT_LIST_ADAPTER, EVENT_TYPES, Event
from services.core.http import Problem, validation_errors

_TAG_ERRORS = {"union_tag_not_found", "union_tag_invalid"}
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
    prefix: str | None
    if isinstance(body, dict) and "events" in body:
        items, prefix = _batch_items(body, max_events=max_events), "events"
    elif isinstance(body, dict):
        items, prefix = [body], None
    else:
        raise invalid(
            [
                {
                    "field": "body",
                    "type": "body_type",
                    "problem": 'must be one event object or {"events": [...]}',
                }
            ]
        )
    try:
        return ParsedBody(EVENT_LIST_ADAPTER.validate_python(items), items)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise invalid(_locate(errors, prefix)) from None


def invalid(errors: list[dict[str, Any]]) -> Problem:
    """Return the 422 problem for ``errors`` (``[{"field", "problem", "type"}]``)."""
    shown = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return Problem(422, "Invalid events", f"nothing was accepted: {shown}{more}", errors=errors)


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
