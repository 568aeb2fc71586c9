"""Response models and the OpenAPI description of the event bodies (which routes read raw).

The event schemas are generated from the canonical pydantic models (``services.core.events``)
and then made as strict as the validator where JSON Schema can say it (``_tighten``): the
amount grammar, known ISO 4217 codes, RFC 3339 timestamps with an offset, the 1970–2200
years, no NUL characters, amount and currency together, a touch's contact or account, what
a ``deal.updated`` must carry and that it carries no null. What JSON Schema cannot say is in
each schema's ``description`` (and the validator answers it with a 422 naming the field).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from pydantic import BaseModel

from services.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    MAX_AMOUNT_MINOR,
    MAX_COST_PERIOD_DAYS,
    MAX_RATE,
    MAX_YEAR,
    MIN_RATE,
    MIN_YEAR,
)
from services.core.money import CURRENCY_EXPONENTS

_REF = "#/components/schemas/{model}"

# The contract's money grammar: ASCII digits, an optional dot and fraction.
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
# Calendar-shaped (months 01-12, days 01-31, hours 00-23, ...): the validator's own checks
# then refuse only impossible days such as 02-30, so values drawn from the pattern are valid.
_YEAR = r"(19[7-9][0-9]|2[01][0-9]{2}|2200)"
_DAY = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
_OFFSET = r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
TIMESTAMP_PATTERN = f"^{_DAY}[Tt]{_TIME}{_OFFSET}$"
DATE_PATTERN = f"^{_DAY}$"
NO_NUL_PATTERN = r"^[^\u0000]*$"
_MONEY = ("amount", "rate")
_CURRENCIES = ("currency", "base", "quote")
_DATES = ("date", "period_start", "period_end")
_DEAL_UPDATE_FIELDS = ("amount", "stage", "account_id", "contact_ids")
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
            _tighten(schema, kind)
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


def _tighten(schema: dict[str, Any], kind: str) -> None:
    """Make one event type's schema say what its validator checks (see module doc)."""
    properties: dict[str, Any] = schema["properties"]
    for name, prop in properties.items():
        for branch in _string_branches(prop):
            if name in _MONEY:
                branch.update(pattern=DECIMAL_PATTERN, maxLength=40)
            elif name in _CURRENCIES:
                branch["enum"] = sorted(CURRENCY_EXPONENTS)
            elif name == "occurred_at":
                branch["pattern"] = TIMESTAMP_PATTERN
            elif name in _DATES:
                branch["pattern"] = DATE_PATTERN
            else:
                _no_nul(branch)
    rules: list[dict[str, Any]] = []
    if "amount" in properties and "amount" not in schema.get("required", []):
        # Both or neither (a null one counts as absent).
        both = {
            "required": ["amount", "currency"],
            "properties": {"amount": {"type": "string"}, "currency": {"type": "string"}},
        }
        neither = {"properties": {"amount": {"type": "null"}, "currency": {"type": "null"}}}
        rules.append({"anyOf": [both, neither]})
    if kind == "touch":
        rules.append({"anyOf": [_non_null("contact_id"), _non_null("account_id")]})
    if kind == "deal.updated":
        for name in (*_DEAL_UPDATE_FIELDS, "currency"):
            properties[name] = _without_null(properties[name])
        rules.append({"anyOf": [{"required": [name]} for name in _DEAL_UPDATE_FIELDS]})
    if rules:
        schema["allOf"] = rules
    keys = ("occurred_at", kind, "amount" if "amount" in properties else "")
    checked = [_NOT_EXPRESSIBLE[k] for k in keys if k in _NOT_EXPRESSIBLE]
    schema["description"] = "Also checked: " + "; ".join(checked) + "."


def _string_branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas of a property: itself, its anyOf members, an array's items."""
    branches = [prop, *prop.get("anyOf", [])]
    branches += [b["items"] for b in list(branches) if isinstance(b.get("items"), dict)]
    return [b for b in branches if b.get("type") == "string"]


def _no_nul(branch: dict[str, Any]) -> None:
    if not any(k in branch for k in ("pattern", "enum", "const", "format")):
        branch["pattern"] = NO_NUL_PATTERN


def _non_null(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "string"}}}


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    out = deepcopy(prop)
    branches = [b for b in out.pop("anyOf", []) if b.get("type") != "null"]
    out.pop("default", None)
    if len(branches) == 1:
        out.update(branches[0])
    elif branches:
        out["anyOf"] = branches
    return out


EVENT_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="EventBody")}}},
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
        503: "Broker unavailable; retry after Retry-After seconds",
    }
    return {code: {"description": descriptions[code]} for code in codes}
