"""The canonical event schema (contract §1): one pydantic model per ``type``, a discriminated union.

Every service encodes and decodes events through this module only. Encoding keeps exactly the
fields the producer set (``exclude_unset``), because "the latest event that *carries* a field
wins": an explicit ``"account_id": null`` is carried, an absent field is not.

Every error names the field it is about, cross-field rules included (``period_end`` must not be
before ``period_start`` is an error at ``period_end``), and the JSON Schema states the rules it
can (patterns, the currency list, fields that go together), so it is no looser than the checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (
    BaseModel,
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

from services.core.fields import (
    STORED,
    Currency,
    Day,
    DecimalText,
    Id,
    Slug,
    Text,
    Timestamp,
    field_errors,
)
from services.core.money import MoneyError, to_minor

# The funnel's order, then the side exits (contract §1).
FUNNEL_STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
SIDE_EXITS = ("recycled", "disqualified")
LIFECYCLE_STAGES = FUNNEL_STAGES + SIDE_EXITS
EVENT_TYPES = (
    "campaign.upserted",
    "campaign.cost",
    "contact.upserted",
    "account.upserted",
    "contact.merged",
    "touch",
    "deal.created",
    "deal.updated",
    "deal.closed_won",
    "deal.closed_lost",
    "deal.reopened",
    "fx.rate",
)

MAX_CONTACT_IDS = 1000
MAX_AMOUNT_MINOR = 10**15  # keeps any converted amount far inside a 64-bit integer
MIN_RATE, MAX_RATE = Decimal("1e-9"), Decimal("1e9")
MAX_COST_PERIOD_DAYS = 3660


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    occurred_at: Timestamp
    source: Annotated[Text, StringConstraints(max_length=50)] | None = None

    def carried(self, name: str) -> bool:
        """Return whether this event carries field ``name`` (it was set, even to null)."""
        return name in self.model_fields_set


_AMOUNT_WITH_CURRENCY: dict[str, Any] = {
    "dependentRequired": {"amount": ["currency"], "currency": ["amount"]}
}


class _Priced(_Event):
    """An event that may carry money: ``currency`` is validated first, then ``amount``."""

    model_config = ConfigDict(json_schema_extra=_AMOUNT_WITH_CURRENCY)

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
        if self.amount is not None and self.currency is None:
            raise field_errors(
                type(self).__name__,
                [("currency", "required with amount (amount and currency go together)", None)],
            )
        if self.currency is not None and self.amount is None:
            raise field_errors(
                type(self).__name__,
                [("amount", "required with currency (amount and currency go together)", None)],
            )
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
        problem = None
        if self.period_end < self.period_start:
            problem = "must not be before period_start"
        elif (self.period_end - self.period_start).days >= MAX_COST_PERIOD_DAYS:
            problem = f"a cost period may span at most {MAX_COST_PERIOD_DAYS} days"
        if problem:
            end = self.period_end.isoformat()
            raise field_errors("CampaignCost", [("period_end", problem, end)])
        return self


MAX_ATTRIBUTES = 50
AttributeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
AttributeValue = Annotated[Text, StringConstraints(max_length=200)]
# ``{"title": "VP Marketing", "seniority": "vp"}``: keys merge, the latest value wins.
Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=MAX_ATTRIBUTES)]
LifecycleStage = Literal[
    "subscriber", "lead", "mql", "sql", "opportunity", "customer", "recycled", "disqualified"
]


class ContactUpserted(_Event):
    """A contact's account, stage and attributes; a field left out keeps its value.

    ``account_id`` may be left out (a CRM that sends one property change at a time, like
    HubSpot); an explicit null detaches the contact from its account.
    """

    type: Literal["contact.upserted"]
    contact_id: Id
    account_id: Id | None = None
    lifecycle_stage: LifecycleStage | None = None
    attributes: Attributes | None = None


class AccountUpserted(_Event):
    """An account's name and firmographic attributes (keys merge, the latest value wins)."""

    type: Literal["account.upserted"]
    account_id: Id
    name: Annotated[Text, StringConstraints(min_length=1, max_length=500)] | None = None
    attributes: Attributes | None = None


class ContactMerged(_Event):
    type: Literal["contact.merged"]
    contact_id: Id
    merged_contact_id: Id

    @model_validator(mode="after")
    def _check(self) -> ContactMerged:
        if self.contact_id == self.merged_contact_id:
            raise field_errors(
                "ContactMerged",
                [("merged_contact_id", "must differ from contact_id", self.merged_contact_id)],
            )
        return self


def _one_of_schema(*names: str) -> dict[str, Any]:
    """A JSON Schema fragment: at least one of ``names`` is present and not null."""
    present = [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]
    return {"anyOf": present}


class Touch(_Event):
    model_config = ConfigDict(json_schema_extra=_one_of_schema("contact_id", "account_id"))

    type: Literal["touch"]
    campaign_id: Id
    contact_id: Id | None = None
    account_id: Id | None = None
    touch_type: Slug | None = None
    lead_created: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> Touch:
        if self.contact_id is None and self.account_id is None:
            problem = "a touch needs contact_id or account_id (at least one)"
            raise field_errors(
                "Touch", [("contact_id", problem, None), ("account_id", problem, None)]
            )
        return self


class DealCreated(_Priced):
    """A deal's creation (its time is C); account and amount may follow in later events.

    CRMs such as HubSpot announce a new deal before its properties, so ``account_id`` and
    ``amount``+``currency`` are optional here; the latest event carrying each one wins.
    """

    type: Literal["deal.created"]
    deal_id: Id
    account_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=MAX_CONTACT_IDS)] | None = None
    stage: Annotated[Text, StringConstraints(max_length=100)] | None = None


_UPDATABLE = ("amount", "currency", "stage", "account_id", "contact_ids")


def _deal_updated_schema(schema: dict[str, Any]) -> None:
    """State ``DealUpdated``'s rules in its JSON Schema: no nulls, at least one change."""
    for name in _UPDATABLE:
        options = schema["properties"][name].pop("anyOf")
        schema["properties"][name].update(next(o for o in options if o != {"type": "null"}))
        schema["properties"][name].pop("default", None)
    schema.update(_one_of_schema("amount", "stage", "account_id", "contact_ids"))
    schema.update(_AMOUNT_WITH_CURRENCY)


class DealUpdated(_Priced):
    model_config = ConfigDict(json_schema_extra=_deal_updated_schema)

    type: Literal["deal.updated"]
    deal_id: Id
    stage: Annotated[Text, StringConstraints(max_length=100)] | None = None
    account_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=MAX_CONTACT_IDS)] | None = None

    # ``mode="wrap"``: it must see explicit nulls before ``_Priced`` pairs amount with currency.
    @model_validator(mode="wrap")
    @classmethod
    def _check(cls, data: Any, handler: Any) -> DealUpdated:
        if isinstance(data, dict):
            nulls = [name for name in _UPDATABLE if name in data and data[name] is None]
            if nulls:
                problem = "must not be null (leave the field out to keep its value)"
                raise field_errors("DealUpdated", [(name, problem, None) for name in nulls])
        event: DealUpdated = handler(data)
        changes = ("amount", "stage", "account_id", "contact_ids")
        if not event.model_fields_set & set(changes):
            problem = "deal.updated needs at least one of amount+currency, stage, account_id, "
            problem += "contact_ids"
            raise field_errors("DealUpdated", [(name, problem, None) for name in changes])
        return event


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

    @field_validator("rate")
    @classmethod
    def _rate_in_range(cls, value: str) -> str:
        if not MIN_RATE <= Decimal(value) <= MAX_RATE:
            raise ValueError(f"must be more than 0, between {MIN_RATE:f} and {MAX_RATE:f}")
        return value

    @model_validator(mode="after")
    def _check(self) -> FxRate:
        if self.base == self.quote:
            raise field_errors("FxRate", [("quote", "must differ from base", self.quote)])
        return self


Event = Annotated[
    Union[  # noqa: UP007 - a discriminated union needs the Union spelling on 3.11 for pydantic
        CampaignUpserted,
        CampaignCost,
        ContactUpserted,
        AccountUpserted,
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
    """Parse and validate a stored event's canonical JSON; raises ValidationError or ValueError.

    Amounts stored under the looser grammar of earlier versions are read back normalised
    (``"+5.00"`` as ``"5.00"``), so a database written before contract §1 fixed the grammar
    still loads; everything arriving from clients is held to the grammar.
    """
    return EVENT_ADAPTER.validate_python(orjson.loads(raw), context={STORED: True})


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
    Like ``decode``, it reads amounts in the looser grammar of earlier versions, normalised:
    a record on the topic was accepted (202) by some ingest, and must not become a dead letter
    because a newer worker reads it.
    """
    parsed = orjson.loads(raw)
    items = parsed if isinstance(parsed, list) else [parsed]
    if not isinstance(parsed, list | dict):
        raise ValueError(f"a record holds a JSON object or array, not {type(parsed).__name__}")
    contents = RecordContents([], [])
    for item in items:
        try:
            contents.events.append(EVENT_ADAPTER.validate_python(item, context={STORED: True}))
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
