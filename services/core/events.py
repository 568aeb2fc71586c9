"""The canonical event schema (contract §1): one pydantic model per ``type``, a discriminated union.

Every service encodes and decodes events through this module only. Encoding keeps exactly the
fields the producer set (``exclude_unset``), because "the latest event that *carries* a field
wins": an explicit ``"account_id": null`` is carried, an absent field is not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.core.money import MoneyError, check_currency, parse_decimal, to_minor

LIFECYCLE_STAGES = ("lead", "mql", "sql", "opportunity", "customer")
EVENT_TYPES = (
    "campaign.upserted",
    "campaign.cost",
    "contact.upserted",
    "contact.merged",
    "touch",
    "deal.created",
    "deal.updated",
    "deal.closed_won",
    "deal.closed_lost",
    "deal.reopened",
    "fx.rate",
)

# Timestamps and dates outside these years are refused: they are typos, and they would
# overflow date arithmetic (lookback windows) downstream.
MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_CONTACT_IDS = 1000
MAX_AMOUNT_MINOR = 10**15  # keeps any converted amount far inside a 64-bit integer
MIN_RATE, MAX_RATE = Decimal("1e-9"), Decimal("1e9")
MAX_COST_PERIOD_DAYS = 3660
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


Text = Annotated[str, StringConstraints(strict=True), AfterValidator(_no_nul)]
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


def _decimal_text(value: Any) -> Any:
    try:
        parse_decimal(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_to_utc)]
Day = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_check_year)]
Currency = Annotated[str, StringConstraints(strict=True), AfterValidator(_currency)]
DecimalText = Annotated[str, BeforeValidator(_decimal_text)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    occurred_at: Timestamp
    source: Annotated[Text, StringConstraints(max_length=50)] | None = None

    def carried(self, name: str) -> bool:
        """Return whether this event carries field ``name`` (it was set, even to null)."""
        return name in self.model_fields_set


class _Priced(_Event):
    """An event that may carry money: ``currency`` is validated first, then ``amount``."""

    currency: Currency | None = None
    amount: DecimalText | None = None

    @field_validator("amount")
    @classmethod
    def _amount_fits_currency(cls, value: str | None, info: ValidationInfo) -> str | None:
        currency = info.data.get("currency")
        if value is None or currency is None:
            return value
        try:
            minor = to_minor(value, currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        if minor < 0:
            raise ValueError("must not be negative")
        if minor > MAX_AMOUNT_MINOR:
            raise ValueError(f"must be at most {MAX_AMOUNT_MINOR} minor units")
        return value

    @model_validator(mode="after")
    def _amount_with_currency(self) -> _Priced:
        if (self.amount is None) != (self.currency is None):
            raise ValueError("amount and currency must be given together")
        return self


class CampaignUpserted(_Event):
    type: Literal["campaign.upserted"]
    campaign_id: Id
    name: Annotated[Text, StringConstraints(min_length=1, max_length=500)]
    channel: Slug
    is_sales_sourced: StrictBool = False


class CampaignCost(_Priced):
    type: Literal["campaign.cost"]
    campaign_id: Id
    currency: Currency
    amount: DecimalText
    period_start: Day
    period_end: Day

    @model_validator(mode="after")
    def _check(self) -> CampaignCost:
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")
        if (self.period_end - self.period_start).days >= MAX_COST_PERIOD_DAYS:
            raise ValueError(f"a cost period may span at most {MAX_COST_PERIOD_DAYS} days")
        return self


class ContactUpserted(_Event):
    type: Literal["contact.upserted"]
    contact_id: Id
    account_id: Id | None
    lifecycle_stage: Literal["lead", "mql", "sql", "opportunity", "customer"] | None = None


class ContactMerged(_Event):
    type: Literal["contact.merged"]
    contact_id: Id
    merged_contact_id: Id

    @model_validator(mode="after")
    def _check(self) -> ContactMerged:
        if self.contact_id == self.merged_contact_id:
            raise ValueError("merged_contact_id must differ from contact_id")
        return self


class Touch(_Event):
    type: Literal["touch"]
    campaign_id: Id
    contact_id: Id | None = None
    account_id: Id | None = None
    touch_type: Slug | None = None
    lead_created: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> Touch:
        if self.contact_id is None and self.account_id is None:
            raise ValueError("a touch needs contact_id or account_id (at least one)")
        return self


class DealCreated(_Priced):
    type: Literal["deal.created"]
    deal_id: Id
    account_id: Id
    currency: Currency
    amount: DecimalText
    contact_ids: Annotated[list[Id], Field(max_length=MAX_CONTACT_IDS)] | None = None
    stage: Annotated[Text, StringConstraints(max_length=100)] | None = None


class DealUpdated(_Priced):
    type: Literal["deal.updated"]
    deal_id: Id
    stage: Annotated[Text, StringConstraints(max_length=100)] | None = None
    account_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=MAX_CONTACT_IDS)] | None = None

    @model_validator(mode="after")
    def _check(self) -> DealUpdated:
        carried = self.model_fields_set & {
            "amount",
            "currency",
            "stage",
            "account_id",
            "contact_ids",
        }
        nulls = sorted(f for f in carried if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: must not be null (leave a field out to keep it)")
        if not self.model_fields_set & {"amount", "stage", "account_id", "contact_ids"}:
            raise ValueError(
                "deal.updated needs at least one of amount+currency, stage, account_id, contact_ids"
            )
        return self


class DealClosedWon(_Priced):
    type: Literal["deal.closed_won"]
    deal_id: Id
    account_id: Id | None = None


class DealClosedLost(_Event):
    type: Literal["deal.closed_lost"]
    deal_id: Id


class DealReopened(_Event):
    type: Literal["deal.reopened"]
    deal_id: Id


class FxRate(_Event):
    type: Literal["fx.rate"]
    date: Day
    base: Currency
    quote: Currency
    rate: DecimalText

    @model_validator(mode="after")
    def _check(self) -> FxRate:
        if not MIN_RATE <= Decimal(self.rate) <= MAX_RATE or len(self.rate) > 40:
            raise ValueError(
                f"rate must be a decimal between {MIN_RATE} and {MAX_RATE} (at most 40 characters)"
            )
        if self.base == self.quote:
            raise ValueError("base and quote must differ")
        return self


Event = Annotated[
    Union[  # noqa: UP007 - a discriminated union needs the Union spelling on 3.11 for pydantic
        CampaignUpserted,
        CampaignCost,
        ContactUpserted,
        ContactMerged,
        Touch,
        DealCreated,
        DealUpdated,
        DealClosedWon,
        DealClosedLost,
        DealReopened,
        FxRate,
    ],
    Field(discriminator="type"),
]
DealEvent = DealCreated | DealUpdated | DealClosedWon | DealClosedLost | DealReopened

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_LIST_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def encode(event: Event) -> bytes:
    """Serialise an event to the canonical JSON bytes published on the topic."""
    return orjson.dumps(event.model_dump(mode="json", exclude_unset=True) | {"type": event.type})


def decode(raw: bytes) -> Event:
    """Parse and validate canonical JSON bytes; raises pydantic.ValidationError or ValueError."""
    return EVENT_ADAPTER.validate_python(orjson.loads(raw))


def encode_batch(encoded: Sequence[bytes]) -> bytes:
    """Join encoded events into one batch record: a JSON array of canonical events."""
    return b"[" + b",".join(encoded) + b"]"


@dataclass(frozen=True)
class RecordContents:
    """What a topic record holds: its valid events, and its invalid items with their errors."""

    events: list[Event]
    invalid: list[tuple[Any, str]]


def decode_record(raw: bytes) -> RecordContents:
    """Decode a topic record: one event (a JSON object) or a batch of events (a JSON array).

    Each item of a batch is validated on its own, so one invalid item does not hold back the
    others. Raises ``ValueError`` when the record is not JSON, or neither object nor array.
    """
    parsed = orjson.loads(raw)
    items = parsed if isinstance(parsed, list) else [parsed]
    if not isinstance(parsed, list | dict):
        raise ValueError(f"a record holds a JSON object or array, not {type(parsed).__name__}")
    contents = RecordContents([], [])
    for item in items:
        try:
            contents.events.append(EVENT_ADAPTER.validate_python(item))
        except (ValidationError, ValueError, OverflowError) as exc:
            contents.invalid.append((item, str(exc)))
    return contents


def partition_key(event: Event) -> bytes:
    """Return the Kafka key: events about the same entity share a partition, in order."""
    fields = event.__dict__  # a missing field is slow to ask a pydantic model for
    for name in ("deal_id", "contact_id", "account_id", "campaign_id"):
        value = fields.get(name)
        if value:
            return f"{name[:-3]}:{value}".encode()
    return b"fx"


def sort_key(event: Event) -> tuple[datetime, str]:
    """Return the order in which state is derived: (occurred_at, event_id)."""
    return (event.occurred_at, event.event_id)
