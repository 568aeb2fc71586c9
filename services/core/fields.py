"""Field types of the canonical events: what a valid value is, and how the JSON Schema says it.

Each type validates with its own error message (which names the rule broken) and states in its
JSON Schema what it can of the same rule (a pattern, an enum), so the OpenAPI document is no
looser than the checks. ``field_errors`` lets a model's cross-field rule name its field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    StringConstraints,
    ValidationError,
    ValidationInfo,
)
from pydantic.json_schema import WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.core.money import CURRENCY_EXPONENTS, MoneyError, check_currency, parse_decimal

# Timestamps and dates outside these years are refused: they are typos, and they would
# overflow date arithmetic (lookback windows) downstream.
MIN_YEAR, MAX_YEAR = 1970, 2200
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Contract §1: ASCII digits, an optional dot and fraction (``money.parse_decimal`` checks it).
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
# The same rules for the JSON Schema (OpenAPI): years MIN_YEAR..MAX_YEAR, real months and times.
_YEAR = r"(19[7-9][0-9]|2[01][0-9]{2}|2200)"
_DATE = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_TIME = _HHMM + r":[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]" + _HHMM + ")"
# Validating stored payloads with this context accepts amounts spelled the way older versions
# accepted them ("+5", ".5", "５"), normalised: a database written before the contract fixed the
# grammar must still load (see ``decode``).
STORED = "stored"


def field_errors(title: str, problems: Iterable[tuple[str, str, Any]]) -> ValidationError:
    """Return a validation error at each ``(field, message, input)`` of ``problems``.

    Raised from a model validator, pydantic nests these locations under the model's own, so a
    cross-field rule names its field (``events[3].period_end``) rather than the whole event.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message), loc=(field,), input=value
            )
            for field, message, value in problems
        ],
    )


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


# The pattern only tells OpenAPI readers about NUL; ``_no_nul`` (running first) words the error.
Text = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[^\x00]*$"), BeforeValidator(_no_nul)
]
Id = Annotated[Text, StringConstraints(min_length=1, max_length=200)]
Slug = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[a-z0-9]+(?:_[a-z0-9]+)*$", max_length=100)
]


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            'must be an RFC 3339 timestamp with an offset, e.g. "2026-03-01T12:00:00Z"'
        )
    return value


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _to_utc(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value.astimezone(UTC)


def _check_year(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


def _currency(value: str) -> str:
    try:
        return check_currency(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


def _decimal_text(value: Any, info: ValidationInfo) -> Any:
    try:
        parse_decimal(value)
    except MoneyError as exc:
        legacy = _legacy_decimal(value) if info.context and info.context.get(STORED) else None
        if legacy is None:
            raise ValueError(str(exc)) from None
        return legacy
    return value


def _legacy_decimal(value: Any) -> str | None:
    """Return a stored amount of the older, looser grammar in today's spelling, or None."""
    if not isinstance(value, str) or value.strip() != value or "e" in value.lower():
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite() or number < 0 or "_" in value:
        return None
    return format(abs(number), "f")  # abs: "-0" was accepted too


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": f"^{_DATE}[Tt]{_TIME}$"}),
]
Day = Annotated[
    date,
    BeforeValidator(_iso_date),
    AfterValidator(_check_year),
    WithJsonSchema({"type": "string", "format": "date", "pattern": f"^{_DATE}$"}),
]
Currency = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(CURRENCY_EXPONENTS)}),
]
# ``_decimal_text`` runs first and words the error; the constraints state the grammar in OpenAPI.
DecimalText = Annotated[
    str,
    StringConstraints(pattern=DECIMAL_PATTERN, max_length=40),
    BeforeValidator(_decimal_text),
]
