"""Response models and the OpenAPI description of the event bodies (which routes read raw)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.core.events import EVENT_ADAPTER

_REF = "#/components/schemas/{model}"


class AcceptedOut(BaseModel):
    """The broker acknowledged every event of the request."""

    accepted: int


def event_body_components(max_events: int) -> dict[str, Any]:
    """Return OpenAPI component schemas for ``EventBody`` (one event or ``{"events": [...]}``)."""
    event = EVENT_ADAPTER.json_schema(ref_template=_REF)
    components: dict[str, Any] = event.pop("$defs", {})
    components["Event"] = event
    components["EventBatch"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_events,
                "items": {"$ref": _REF.format(model="Event")},
            }
        },
    }
    components["EventBody"] = {
        "oneOf": [{"$ref": _REF.format(model="Event")}, {"$ref": _REF.format(model="EventBatch")}]
    }
    return components


_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}

EVENT_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="EventBody")}}},
    },
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Describe problem+json answers for ``codes`` in OpenAPI."""
    descriptions = {
        400: "Malformed JSON",
        401: "Missing or bad credentials",
        403: "Key lacks the ingest scope",
        404: "Unknown provider",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid events (nothing accepted)",
        503: "Broker unavailable; retry after Retry-After seconds",
    }
    return {code: {"description": descriptions[code], "content": _PROBLEM} for code in codes}
