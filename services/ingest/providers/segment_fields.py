"""Reading a Segment message's fields: JSON, strings, timestamps, identities, traits, UTM medium.

Every function is pure. A field that is needed and missing or of the wrong type raises a 422
``Malformed`` naming its path in the message (``context.campaign.name``); a trait that does
not fit the canonical attribute rules is skipped, never refused (traits are free-form).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.core.events import LIFECYCLE_STAGES, MAX_ATTRIBUTES
from services.ingest.providers.base import Malformed, malformed_field

ANON_PREFIX = "anon:"
MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_SLUG = 100
MAX_ATTRIBUTE_VALUE = 200
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Traits that identify a person or an account (or are mapped elsewhere): they tell nothing
# about fit, and personal data has no place in attribution attributes. Names are compared after
# ``attribute_name`` (Segment accepts reserved traits in camelCase or snake_case).
SKIPPED_TRAITS = frozenset(
    {
        "address",
        "age",
        "avatar",
        "birthday",
        "company",
        "created_at",
        "description",
        "email",
        "first_name",
        "gender",
        "id",
        "last_name",
        "lifecycle_stage",
        "name",
        "phone",
        "username",
        "website",
    }
)
# utm_medium (as a slug) → the canonical channel; any other medium is its own slug.
CHANNELS = {
    "cpc": "paid_search",
    "ppc": "paid_search",
    "paid": "paid_search",
    "paidsearch": "paid_search",
    "paid_search": "paid_search",
    "paid_social": "paid_social",
    "paidsocial": "paid_social",
    "social": "social",
    "email": "email",
    "newsletter": "email",
    "display": "display",
    "banner": "display",
    "cpm": "display",
    "affiliate": "affiliate",
    "referral": "referral",
    "organic": "organic_search",
    "webinar": "webinar",
    "event": "events",
    "events": "events",
}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_text(value: Any) -> None:
    """Raise ValueError if any string in ``value`` holds a lone surrogate.

    ``json`` lets an escaped lone surrogate ("\\ud800") through; it is not text, and the
    canonical encoding (orjson) would fail on it after the request was accepted.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def parse_message(body: bytes) -> dict[str, Any]:
    """Parse the body as one Segment message; numbers stay exact (``Decimal``), never floats."""
    try:
        value = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)
        _check_text(value)
    except (ValueError, RecursionError) as exc:
        raise Malformed(400, f"the body is not valid UTF-8 JSON: {exc}") from None
    if isinstance(value, list):
        problem = "one message per request: turn batching off in the Segment mapping"
        raise malformed_field("body", problem, "batch")
    if not isinstance(value, dict):
        raise malformed_field("body", "must be a JSON object (one Segment message)", "dict_type")
    return value


def obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """Return the object at ``key`` (an empty one when absent or null)."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed_field(path, "must be an object", "dict_type")
    return value


def text(parent: dict[str, Any], key: str, path: str, *, max_len: int | None) -> str | None:
    """Return the string at ``key``, or None when it is absent, null or empty."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise malformed_field(path, "must be a string", "string_type")
    if "\x00" in value:
        raise malformed_field(path, "must not contain the NUL character")
    if max_len is not None and len(value) > max_len:
        raise malformed_field(path, f"must be at most {max_len} characters", "string_too_long")
    return value


def required_text(parent: dict[str, Any], key: str, path: str, *, max_len: int | None) -> str:
    """Return the string at ``key``: a 422 when it is absent, null or empty."""
    value = text(parent, key, path, max_len=max_len)
    if value is None:
        raise malformed_field(path, "required", "missing")
    return value


def contact_of(message: dict[str, Any]) -> str:
    """Return the message's contact: its ``userId``, else ``anon:<anonymousId>``."""
    user = text(message, "userId", "userId", max_len=200)
    if user is not None:
        return user
    limit = 200 - len(ANON_PREFIX)
    anonymous = text(message, "anonymousId", "anonymousId", max_len=limit)
    if anonymous is None:
        raise malformed_field("userId", "required: a message needs userId or anonymousId")
    return ANON_PREFIX + anonymous


def occurred_at(message: dict[str, Any]) -> str:
    """Return ``timestamp``, else ``originalTimestamp``, else ``sentAt``, as RFC 3339 in UTC."""
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        value = message.get(key)
        if value is not None:
            return _utc(value, key)
    raise malformed_field("timestamp", "required (or originalTimestamp, or sentAt)", "missing")


def _utc(value: Any, path: str) -> str:
    problem = "must be an ISO 8601 timestamp, e.g. 2026-03-01T10:00:00.000Z"
    if not isinstance(value, str):
        raise malformed_field(path, problem, "string_type")
    try:
        parsed = datetime.fromisoformat(value)
        # Segment's timestamps are all UTC: one without an offset is read as UTC.
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise malformed_field(path, problem) from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise malformed_field(path, f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    micro = parsed.microsecond
    fraction = f"{micro // 1000:03d}" if micro % 1000 == 0 else f"{micro:06d}"
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"


def slug(value: str) -> str:
    """Return ``value`` as a lower-case slug (``Form Submitted`` → ``form_submitted``), or ""."""
    return _NOT_SLUG.sub("_", value.lower()).strip("_")[:MAX_SLUG].rstrip("_")


def channel_of(medium: str | None) -> str:
    """Return the canonical channel of a utm_medium (``other`` when there is none)."""
    key = slug(medium or "")
    return CHANNELS.get(key, key) or "other"


def attribute_name(key: str) -> str | None:
    """Return a trait key as an attribute name (``subscriptionPlan`` → ``subscription_plan``)."""
    name = _NOT_SLUG.sub("_", _CAMEL_HUMP.sub(r"_\1", key).lower()).strip("_")
    return name if _ATTRIBUTE_NAME.match(name) else None


def attribute_value(value: Any) -> str | None:
    """Return a trait value as attribute text: strings and exact numbers; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        rendered = str(value)
    elif isinstance(value, Decimal):
        # The exponent bound keeps ``format`` from writing out "1e999999999" in full.
        if not value.is_finite() or abs(value.adjusted()) > MAX_ATTRIBUTE_VALUE:
            return None
        rendered = format(value, "f")
    elif isinstance(value, str):
        rendered = value.strip()
    else:
        return None
    if not rendered or len(rendered) > MAX_ATTRIBUTE_VALUE or "\x00" in rendered:
        return None
    return rendered


def attributes(traits: dict[str, Any]) -> dict[str, str]:
    """Return the traits that fit the attribute rules, keys in sorted order, at most 50."""
    found: dict[str, str] = {}
    # Sorted, so that which of two keys naming one attribute wins never depends on key order.
    for key in sorted(traits):
        name = attribute_name(key)
        if name is None or name in SKIPPED_TRAITS or name in found:
            continue
        value = attribute_value(traits[key])
        if value is not None:
            found[name] = value
            if len(found) == MAX_ATTRIBUTES:
                break
    return found


def lifecycle_stage(traits: dict[str, Any]) -> str | None:
    """Return the contract stage a ``lifecycle_stage`` (or ``lifecycleStage``) trait names."""
    for key in sorted(traits):
        value = traits[key]
        if attribute_name(key) == "lifecycle_stage" and isinstance(value, str):
            stage = value.strip().lower()
            if stage in LIFECYCLE_STAGES:
                return stage
    return None
