"""Response models and the OpenAPI description of the event bodies (which routes read raw).

The event schemas are generated from the canonical pydantic models (``services.core.events``),
whose field types (``services.core.fields``) and model rules already state in JSON Schema what
the validator checks where JSON Schema can say it: the amount grammar, known ISO 4217 codes,
RFC 3339 timestamps with an offset, the 1970–2200 years, no NUL characters, amount and currency
together, a touch's contact or account, what a ``deal.updated`` must carry. What JSON Schema
cannot say is added to each event schema's ``description`` here (and the validator answers it
with a 422 naming the field).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    MAX_AMOUNT_MINOR,
    MAX_COST_PERIOD_DAYS,
    MAX_RATE,
    MIN_RATE,
)
from services.core.fields import MAX_YEAR, MIN_YEAR

_REF = "#/components/schemas/{model}"
_NOT_EXPRESSIBLE = {
    "occurred_at": f"occurred_at's year in UTC within {MIN_YEAR}–{MAX_YEAR}",
    "amount": f"amount: at most the currency's decimals and {MAX_AMOUNT_MINOR} minor units",
    "contact.merged": "merged_contact_id differs from contact_id",
    "campaign.cost": f"period_end not before period_start, at most {MAX_COST_PERIOD_DAYS} days",
    "fx.rate": f"rate between {MIN_RATE} and {MAX_RATE}; base and quote differ",
}


class AcceptedOut(BaseModel):
    """The broker acknowledged every event of the request."""

    accepted: int


def event_body_components(max_events: int) -> dict[str, Any]:
    """Return OpenAPI component schemas for ``EventBody`` (one event or ``{"events": [...]}``)."""
    event = EVENT_ADAPTER.json_schema(ref_template=_REF)
    components: dict[str, Any] = event.pop("$defs", {})
    for schema in components.values():
        kind = schema.get("properties", {}).get("type", {}).get("const")
        if kind in EVENT_TYPES:
            _describe(schema, kind)
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


def _describe(schema: dict[str, Any], kind: str) -> None:
    """Say in one event type's schema what its validator checks beyond JSON Schema."""
    keys = ("occurred_at", kind, "amount" if "amount" in schema["properties"] else "")
    checked = [_NOT_EXPRESSIBLE[k] for k in keys if k in _NOT_EXPRESSIBLE]
    schema["description"] = "Also checked: " + "; ".join(checked) + "."


EVENT_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="EventBody")}}},
    },
}


WEBHOOK_PROVIDERS = ("generic", "hubspot", "pipedrive", "salesforce", "segment")


def webhook_openapi() -> dict[str, Any]:
    """Describe ``POST /v1/webhooks/{provider}``: each provider's own body and scheme."""
    return {
        "description": "Each provider posts its own payload with its own authentication "
        "(see the README's per-provider tables): `generic` takes canonical events "
        "(`EventBody`) signed with Standard Webhooks headers; `salesforce` posts SOAP XML "
        "and is answered with a SOAP acknowledgement.",
        "parameters": [
            *(
                {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
                for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                # The generic webhook's body; other providers post their own JSON (the README
                # documents each). A concrete schema also keeps fuzzers to realistic bodies.
                "application/json": {"schema": {"$ref": _REF.format(model="EventBody")}},
                "text/xml": {"schema": {"type": "string"}},
            },
        },
    }


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Describe problem answers for ``codes`` (``services.core.openapi`` adds their content)."""
    descriptions = {
        400: "Malformed JSON",
        401: "Missing or bad credentials",
        403: "Key lacks the ingest scope",
        404: "Unknown provider",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid events (nothing accepted)",
        429: "Over the credential's rate limit; retry after Retry-After seconds",
        503: "Broker unavailable; retry after Retry-After seconds",
    }
    return {code: {"description": descriptions[code]} for code in codes}
