"""The canonical event schema (contract §1): what is accepted, what is rejected and where."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    decode,
    decode_record,
    encode,
    encode_batch,
    partition_key,
)

AT = "2024-03-01T10:00:00+02:00"
DROP = object()  # marks a field to leave out of an example


def example(event_type: str, **fields: Any) -> dict[str, Any]:
    """A valid event of ``event_type`` with ``fields`` overriding (None-valued keys dropped)."""
    base: dict[str, dict[str, Any]] = {
        "campaign.upserted": {
            "campaign_id": "c1",
            "name": "Spring webinar",
            "channel": "webinar",
            "is_sales_sourced": False,
        },
        "campaign.cost": {
            "campaign_id": "c1",
            "amount": "1500.00",
            "currency": "USD",
            "period_start": "2024-03-01",
            "period_end": "2024-03-31",
        },
        "contact.upserted": {
            "contact_id": "p1",
            "account_id": "a1",
            "lifecycle_stage": "mql",
            "attributes": {"title": "VP Marketing", "seniority": "vp"},
        },
        "account.upserted": {
            "account_id": "a1",
            "name": "Acme",
            "attributes": {"industry": "software", "employees": "201-500"},
        },
        "contact.merged": {"contact_id": "p1", "merged_contact_id": "p2"},
        "touch": {
            "campaign_id": "c1",
            "contact_id": "p1",
            "touch_type": "form_fill",
            "lead_created": True,
        },
        "deal.created": {
            "deal_id": "d1",
            "account_id": "a1",
            "amount": "12500.00",
            "currency": "USD",
            "contact_ids": ["p1"],
            "stage": "discovery",
        },
        "deal.updated": {"deal_id": "d1", "stage": "proposal"},
        "deal.closed_won": {"deal_id": "d1", "amount": "13000.00", "currency": "USD"},
        "deal.closed_lost": {"deal_id": "d1"},
        "deal.reopened": {"deal_id": "d1"},
        "fx.rate": {"date": "2024-03-01", "base": "EUR", "quote": "USD", "rate": "1.0841"},
    }
    event = {
        "event_id": f"e-{event_type}",
        "type": event_type,
        "occurred_at": AT,
        "source": "api",
        **base[event_type],
        **fields,
    }
    return {k: v for k, v in event.items() if v is not DROP}


def problems(event: dict[str, Any]) -> dict[str, str]:
    """Validate ``event``; return {field path without the union tag: message} of its errors."""
    with pytest.raises(ValidationError) as caught:
        EVENT_ADAPTER.validate_python(event)
    out = {}
    for err in caught.value.errors():
        loc = [str(p) for p in err["loc"] if p not in EVENT_TYPES]
        out[".".join(loc)] = err["msg"]
    return out


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_type_accepts_a_valid_example(event_type: str) -> None:
    event = EVENT_ADAPTER.validate_python(example(event_type))
    assert event.type == event_type
    assert event.occurred_at.utcoffset().total_seconds() == 0  # stored in UTC
    assert event.occurred_at.hour == 8


def test_all_twelve_types_are_known() -> None:
    assert len(EVENT_TYPES) == 12


def test_a_contact_change_may_leave_its_account_out() -> None:
    kept = EVENT_ADAPTER.validate_python(example("contact.upserted", account_id=DROP))
    detached = EVENT_ADAPTER.validate_python(example("contact.upserted", account_id=None))
    assert not kept.carried("account_id")
    assert detached.carried("account_id") and detached.account_id is None


def test_a_deal_may_be_created_before_its_account_and_amount() -> None:
    bare = {"event_id": "e1", "type": "deal.created", "occurred_at": AT, "deal_id": "d1"}
    event = EVENT_ADAPTER.validate_python(bare)
    assert event.account_id is None and event.amount is None


@pytest.mark.parametrize(
    ("attributes", "problem_at"),
    [
        ({"Title": "x"}, "attributes.Title.[key]"),
        ({"title": 5}, "attributes.title"),
        ({"title": "x" * 201}, "attributes.title"),
        ({f"k{i}": "v" for i in range(51)}, "attributes"),
    ],
)
def test_attributes_are_short_strings_under_slug_keys(
    attributes: dict[str, Any], problem_at: str
) -> None:
    assert problem_at in problems(example("account.upserted", attributes=attributes))


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        (example("deal.created", amount=12500.0), "amount", "decimal string"),
        (example("deal.created", amount="12500.001"), "amount", "decimal places"),
        (example("deal.created", amount="12500.5", currency="JPY"), "amount", "decimal places"),
        (example("deal.created", currency="XYZ"), "currency", "unknown"),
        (example("deal.created", amount="-5.00"), "amount", "no sign"),
        (example("deal.created", amount="1e3"), "amount", "plain decimal"),
        (example("touch", occurred_at="2024-03-01T10:00:00"), "occurred_at", "with an offset"),
        (example("touch", occurred_at=1709280000), "occurred_at", "RFC 3339"),
        (example("touch", occurred_at="1709280000"), "occurred_at", "RFC 3339"),
        (example("touch", occurred_at="0001-01-01T00:00:00+01:00"), "occurred_at", "year"),
        (example("touch", event_id="bad\x00id"), "event_id", "NUL"),
        (example("deal.created", amount="100000000000000000.00"), "amount", "at most"),
        (example("deal.created", contact_ids=["c"] * 1001), "contact_ids", "at most 1000"),
        (example("deal.updated", account_id=None), "account_id", "must not be null"),
        (example("fx.rate", rate="1" + "0" * 22), "rate", "between"),
        (example("campaign.cost", period_end="2035-03-01"), "period_end", "at most"),
        (example("touch", contact_id=DROP), "contact_id", "contact_id or account_id"),
        (example("deal.updated", stage=DROP), "stage", "at least one"),
        (example("deal.closed_won", currency=DROP), "currency", "together"),
        (example("contact.merged", merged_contact_id="p1"), "merged_contact_id", "differ"),
        (example("campaign.cost", period_end="2024-02-01"), "period_end", "period_start"),
        (example("campaign.cost", period_start=20240301), "period_start", "YYYY-MM-DD"),
        (example("touch", utm_source="google"), "utm_source", "not permitted"),
        (example("touch", event_id="x" * 201), "event_id", "at most 200"),
        (example("touch", event_id=""), "event_id", "at least 1"),
        (example("campaign.upserted", channel="Paid Search"), "channel", "pattern"),
        (example("touch", lead_created="yes"), "lead_created", "boolean"),
        (example("contact.upserted", lifecycle_stage="vip"), "lifecycle_stage", "lead"),
        (example("fx.rate", rate="0"), "rate", "more than 0"),
        (example("fx.rate", quote="EUR"), "quote", "differ from base"),
    ],
)
def test_rejections_name_the_field(event: dict[str, Any], field: str, words: str) -> None:
    found = problems(event)
    assert field in found, found
    assert words.lower() in found[field].lower(), found


def test_event_id_of_200_chars_is_accepted() -> None:
    assert EVENT_ADAPTER.validate_python(example("touch", event_id="x" * 200))


def test_currency_exponents() -> None:
    assert EVENT_ADAPTER.validate_python(example("deal.created", amount="125000", currency="JPY"))
    assert EVENT_ADAPTER.validate_python(example("deal.created", amount="1.125", currency="KWD"))
    assert "amount" in problems(example("deal.created", amount="1.1255", currency="KWD"))


def test_unknown_and_missing_type_are_rejected() -> None:
    with pytest.raises(ValidationError, match="union_tag_invalid|does not match"):
        EVENT_ADAPTER.validate_python(example("touch", type="touch.v2"))
    with pytest.raises(ValidationError, match="discriminator"):
        EVENT_ADAPTER.validate_python({k: v for k, v in example("touch").items() if k != "type"})


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_encode_decode_round_trip(event_type: str) -> None:
    event = EVENT_ADAPTER.validate_python(example(event_type))
    again = decode(encode(event))
    assert again == event
    assert again.model_fields_set == event.model_fields_set
    assert encode(again) == encode(event)


def test_carried_nulls_survive_and_absent_fields_stay_absent() -> None:
    upsert = EVENT_ADAPTER.validate_python(
        example("contact.upserted", account_id=None, lifecycle_stage=DROP)
    )
    raw = orjson.loads(encode(upsert))
    assert raw["account_id"] is None
    assert "lifecycle_stage" not in raw
    decoded = decode(encode(upsert))
    assert decoded.carried("account_id") and decoded.account_id is None
    assert not decoded.carried("lifecycle_stage")

    update = decode(encode(EVENT_ADAPTER.validate_python(example("deal.updated"))))
    assert update.carried("stage")
    assert not update.carried("amount") and not update.carried("account_id")
    assert set(orjson.loads(encode(update))) == {
        "event_id",
        "type",
        "occurred_at",
        "source",
        "deal_id",
        "stage",
    }


def test_encoding_is_canonical_utc() -> None:
    raw = orjson.loads(encode(EVENT_ADAPTER.validate_python(example("touch"))))
    assert raw["occurred_at"] == "2024-03-01T08:00:00Z"
    assert raw["type"] == "touch"


@pytest.mark.parametrize(
    ("event_type", "key"),
    [
        ("deal.created", b"deal:d1"),
        ("contact.upserted", b"contact:p1"),
        ("touch", b"contact:p1"),
        ("campaign.cost", b"campaign:c1"),
        ("fx.rate", b"fx"),
    ],
)
def test_partition_key(event_type: str, key: bytes) -> None:
    assert partition_key(EVENT_ADAPTER.validate_python(example(event_type))) == key


def test_a_record_holds_one_event_or_a_batch_and_invalid_items_are_set_apart() -> None:
    good = {
        "event_id": "t1",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": "p1",
    }
    single = decode_record(orjson.dumps(good))
    assert [e.event_id for e in single.events] == ["t1"] and single.invalid == []
    bad = {**good, "event_id": "t2", "campaign_id": None}
    batch = decode_record(encode_batch([orjson.dumps(good), orjson.dumps(bad)]))
    assert [e.event_id for e in batch.events] == ["t1"]
    [(item, error)] = batch.invalid
    assert item == bad and "campaign_id" in error
    for raw in (b"{not json", b'"a string"', b"42"):
        with pytest.raises(ValueError):
            decode_record(raw)


@pytest.mark.parametrize(
    ("stored", "read"),
    [("+5.00", "5.00"), (".5", "0.5"), ("5.", "5"), ("１００", "100"), ("٥٠", "50"), ("-0", "0")],
)
def test_stored_amounts_of_the_older_grammar_still_load(stored: str, read: str) -> None:
    # Earlier versions accepted these; a database or a topic holding them must still load (the
    # worker decodes both: what an ingest once acknowledged is never lost), while clients are
    # held to contract §1's grammar.
    raw = orjson.dumps(example("deal.created", amount=stored))
    assert decode(raw).amount == read
    assert "amount" in problems(orjson.loads(raw))
    (event,) = decode_record(raw).events
    assert event.amount == read
    assert decode_record(b"[" + raw + b"]").events[0].amount == read


def test_stored_decoding_still_refuses_what_was_never_accepted() -> None:
    for amount in ("1e3", " 5", "NaN", "-5.00", "1_000"):
        with pytest.raises(ValidationError):
            decode(orjson.dumps(example("deal.created", amount=amount)))


def test_the_schema_states_what_it_can_of_the_rules() -> None:
    defs = EVENT_ADAPTER.json_schema()["$defs"]
    grammar = r"^[0-9]+(\.[0-9]+)?$"
    for model, field in [("DealCreated", "amount"), ("CampaignCost", "amount"), ("FxRate", "rate")]:
        spec = defs[model]["properties"][field]
        # An optional amount is "decimal string or null".
        spec = next((o for o in spec.get("anyOf", []) if o.get("type") == "string"), spec)
        assert spec["pattern"] == grammar, model
        assert spec["maxLength"] == 40
    assert "JPY" in defs["CampaignCost"]["properties"]["currency"]["enum"]
    assert "XYZ" not in defs["CampaignCost"]["properties"]["currency"]["enum"]
    occurred = defs["Touch"]["properties"]["occurred_at"]["pattern"]
    assert re.fullmatch(occurred.strip("^$"), "2024-03-01T10:00:00.123+02:00")
    for bad in ("2024-03-01T10:00:00", "0001-03-01T10:00:00Z", "2024-13-01T10:00:00Z"):
        assert not re.fullmatch(occurred.strip("^$"), bad), bad
    assert defs["DealClosedWon"]["dependentRequired"] == {
        "amount": ["currency"],
        "currency": ["amount"],
    }
    updated = defs["DealUpdated"]
    assert updated["properties"]["stage"]["type"] == "string"  # explicit null refused
    assert {tuple(option["required"]) for option in updated["anyOf"]} == {
        ("amount",),
        ("stage",),
        ("account_id",),
        ("contact_ids",),
    }
    assert {tuple(o["required"]) for o in defs["Touch"]["anyOf"]} == {
        ("contact_id",),
        ("account_id",),
    }
