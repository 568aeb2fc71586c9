"""HubSpot webhooks: signature v3 against an independent signer, and the mapping against goldens.

Goldens (``tests/fixtures/webhooks/hubspot/*.expected.json``) were worked out by hand from the
payloads (README.md there); the story's expected credits are recomputed here by a plain fold.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.core.events import EVENT_LIST_ADAPTER
from services.core.settings import Settings
from services.ingest.providers.base import Delivery, Malformed, NotConfigured, Refused
from services.ingest.providers.hubspot import PROVIDER
from tests.support.signers import hubspot as signer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "hubspot"
URL = "https://ingest.example.com/v1/webhooks/hubspot"
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
NOW = datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=UTC)
# HubSpot events in each fixture that map to nothing (deletions, unmapped properties, …).
IGNORED = {
    "guide-example": 0,
    "v1-signature-example": 0,
    "contact-merge": 0,
    "association-change": 2,
    "contact-properties": 5,
    "company-events": 2,
    "deal-lifecycle": 6,
}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": "sqlite://", "webhook_secret_hubspot": SECRET}
    return Settings(**(values | overrides))


def delivery(
    body: bytes, headers: dict[str, str] | None = None, *, url: str = URL, now: datetime = NOW
) -> Delivery:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return Delivery(body=body, headers=lowered, url=url, method="POST", received_at=now)


def signed(body: bytes, *, secret: str = SECRET, url: str = URL, at: datetime = NOW) -> Delivery:
    """A delivery signed by the independent signer at ``at``, arriving at ``NOW``."""
    return delivery(body, signer.headers(body, secret=secret, url=url, now=at), url=url)


def mapped(items: list[dict[str, Any]], **overrides: Any) -> list[dict[str, Any]]:
    return PROVIDER.map(delivery(json.dumps(items).encode()), settings(**overrides)).events


def malformed(items: Any, **overrides: Any) -> Malformed:
    body = items if isinstance(items, bytes) else json.dumps(items).encode()
    with pytest.raises(Malformed) as caught:
        PROVIDER.map(delivery(body), settings(**overrides))
    return caught.value


def hs_event(type_: str = "deal.propertyChange", **fields: Any) -> dict[str, Any]:
    base = {
        "eventId": 100,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1775000000000,  # 2026-03-31T23:33:20.000Z
        "subscriptionType": type_,
        "attemptNumber": 0,
        "objectId": 9432001,
        "changeSource": "CRM_UI",
    }
    return base | fields


# --- goldens -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_golden(name: str) -> None:
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    EVENT_LIST_ADAPTER.validate_python(expected)  # the goldens are valid canonical events
    result = PROVIDER.map(delivery((FIXTURES / f"{name}.json").read_bytes()), settings())
    assert result.events == expected
    assert result.ignored == IGNORED[name]


def test_every_fixture_has_a_golden() -> None:
    payloads = {p.name.removesuffix(".json") for p in FIXTURES.glob("*.json")}
    names = {n for n in payloads if not n.endswith(".expected") and n != "story"}
    assert names == set(IGNORED)


def test_a_retried_delivery_maps_to_the_same_events() -> None:
    items = json.loads((FIXTURES / "deal-lifecycle.json").read_text())
    retried = [item | {"attemptNumber": 3} for item in items]
    assert mapped(retried) == mapped(items)


# --- the signer follows HubSpot's documented examples --------------------------------------


def test_signer_reproduces_documented_signatures() -> None:
    # hubspot-api-python tests/spec/utils/test_signature.py (v3) and the v1 example of
    # HubSpot's "Validating requests" page.
    v3 = signer.v3_signature(
        b"{'example_field':'example_value'}",
        secret=SECRET,
        url="https://www.example.com/webhook_uri",
        method="POST",
        timestamp="1693657560000",
    )
    assert v3 == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    body = (FIXTURES / "v1-signature-example.json").read_bytes()
    v1 = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert signer.v1_signature(body, secret=SECRET) == v1


# --- verify --------------------------------------------------------------------------------

BODY = (FIXTURES / "guide-example.json").read_bytes()


def test_verify_accepts_a_signed_delivery() -> None:
    PROVIDER.verify(signed(BODY), settings())


@pytest.mark.parametrize("skew", [timedelta(seconds=-300), timedelta(seconds=300)])
def test_verify_accepts_the_edges_of_the_tolerance(skew: timedelta) -> None:
    PROVIDER.verify(signed(BODY, at=NOW + skew), settings())


@pytest.mark.parametrize(
    "skew", [timedelta(seconds=-301), timedelta(seconds=301), timedelta(days=-1)]
)
def test_verify_refuses_stale_and_future_timestamps(skew: timedelta) -> None:
    with pytest.raises(Refused, match="X-HubSpot-Request-Timestamp is more than 300 s"):
        PROVIDER.verify(signed(BODY, at=NOW + skew), settings())


def test_the_tolerance_is_a_setting() -> None:
    late = signed(BODY, at=NOW - timedelta(seconds=400))
    PROVIDER.verify(late, settings(webhook_tolerance_s=600))
    with pytest.raises(Refused):
        PROVIDER.verify(late, settings())


def _without(d: Delivery, *names: str) -> Delivery:
    headers = {k: v for k, v in d.headers.items() if k not in names}
    return Delivery(d.body, headers, d.url, d.method, d.received_at)


def _with(d: Delivery, **changes: Any) -> Delivery:
    return dataclasses.replace(d, **changes)


@pytest.mark.parametrize(
    ("tampered", "detail"),
    [
        (_without(signed(BODY), "x-hubspot-signature-v3"), "v3 .* is required"),
        (
            _without(signed(BODY), "x-hubspot-signature-v3", "x-hubspot-signature"),
            "missing X-HubSpot-Signature-v3",
        ),
        (_without(signed(BODY), "x-hubspot-request-timestamp"), "missing X-HubSpot-Request-Ti"),
        (signed(BODY, secret="another-app-secret"), "does not match"),
        (_with(signed(BODY), body=BODY.replace(b"subscriber", b"customer")), "does not match"),
        (_with(signed(BODY), url=URL + "?x=1"), "does not match"),
        (_with(signed(BODY), method="PUT"), "does not match"),
    ],
)
def test_verify_refuses(tampered: Delivery, detail: str) -> None:
    with pytest.raises(Refused, match=detail) as caught:
        PROVIDER.verify(tampered, settings())
    assert SECRET not in caught.value.detail


@pytest.mark.parametrize("value", ["", "abc", "1.5e12", "-1775000000000", "9" * 40])
def test_verify_refuses_a_timestamp_that_is_not_milliseconds(value: str) -> None:
    d = signed(BODY)
    headers = dict(d.headers) | {"x-hubspot-request-timestamp": value}
    with pytest.raises(Refused, match="X-HubSpot-Request-Timestamp"):
        PROVIDER.verify(_with(d, headers=headers), settings())


def test_verify_refuses_a_wrong_signature_with_a_valid_timestamp() -> None:
    d = signed(BODY)
    headers = dict(d.headers) | {
        "x-hubspot-signature-v3": "AAAA" + d.headers["x-hubspot-signature-v3"][4:]
    }
    with pytest.raises(Refused, match="does not match"):
        PROVIDER.verify(_with(d, headers=headers), settings())


@pytest.mark.parametrize("value", [None, "", " , "])
def test_verify_unset_secret_is_not_configured(value: str | None) -> None:
    with pytest.raises(NotConfigured) as caught:
        PROVIDER.verify(signed(BODY), settings(webhook_secret_hubspot=value))
    assert caught.value.setting == "CLOSEDLOOP_WEBHOOK_SECRET_HUBSPOT"


def test_verify_accepts_any_of_several_secrets() -> None:
    rotation = settings(webhook_secret_hubspot="old-secret, new-secret")
    PROVIDER.verify(signed(BODY, secret="new-secret"), rotation)
    PROVIDER.verify(signed(BODY, secret="old-secret"), rotation)
    with pytest.raises(Refused):
        PROVIDER.verify(signed(BODY, secret=SECRET), rotation)


@pytest.mark.parametrize(
    "url",
    [
        "https://ingest.example.com/v1/webhooks/hubspot?portal=62515%3Aeu%2C1",
        "https://ingest.example.com/v1/webhooks/hubspot?who=ops%40example.com&x=%2a",
    ],
)
def test_verify_decodes_the_uri_as_hubspot_signs_it(url: str) -> None:
    PROVIDER.verify(signed(BODY, url=url), settings())


# --- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"not json", b"[{]", b"\xff\xfe[]", b"[NaN]", b""])
def test_a_body_that_is_not_json_is_400(body: bytes) -> None:
    assert malformed(body).status == 400


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ({"eventId": 1}, "body"),
        ([1], "[0]"),
        ([hs_event(), "x"], "[1]"),
        ([hs_event("contact.creation", objectId=None)], "[0].objectId"),
        ([hs_event("deal.creation", objectId="12a")], "[0].objectId"),
        ([hs_event("deal.creation", objectId=True)], "[0].objectId"),
        ([hs_event("deal.creation", objectId=-5)], "[0].objectId"),
        ([hs_event("deal.creation", occurredAt=None)], "[0].occurredAt"),
        ([hs_event("deal.creation", occurredAt=10**17)], "[0].occurredAt"),
        ([hs_event("deal.creation", portalId="x")], "[0].portalId"),
        ([hs_event("deal.creation", subscriptionId=None)], "[0].subscriptionId"),
        ([hs_event(subscriptionType=None)], "[0].subscriptionType"),
        ([hs_event(propertyValue="closedwon")], "[0].propertyName"),
        ([hs_event(propertyName="amount")], "[0].propertyValue"),
        ([hs_event(propertyName="amount", propertyValue=["1"])], "[0].propertyValue"),
        ([hs_event("contact.merge", primaryObjectId=1, mergedObjectIds=2)], "[0].mergedObjectIds"),
        (
            [hs_event("contact.merge", primaryObjectId=1, mergedObjectIds=["x"])],
            "[0].mergedObjectIds[0]",
        ),  # fmt: skip
        (
            [
                hs_event(
                    "deal.associationChange",
                    associationType="DEAL_TO_COMPANY",
                    fromObjectId=1,
                    toObjectId=2,
                )
            ],  # fmt: skip
            "[0].associationRemoved",
        ),
    ],
)
def test_a_missing_or_wrong_field_is_422_naming_it(items: Any, field: str) -> None:
    problem = malformed(items)
    assert problem.status == 422
    assert [e["field"] for e in problem.errors] == [field]


@pytest.mark.parametrize(
    ("value", "currency"),
    [("1,000.00", "USD"), ("-500", "USD"), ("10.005", "USD"), ("1e3", "USD"), ("12.5", "JPY"),
     (" 100", "USD"), ("abc", "USD")],
)  # fmt: skip
def test_an_amount_that_is_not_an_exact_decimal_of_the_currency_is_422(
    value: str, currency: str
) -> None:
    problem = malformed(
        [hs_event(propertyName="amount", propertyValue=value)], hubspot_currency=currency
    )
    assert problem.status == 422
    assert [e["field"] for e in problem.errors] == ["[0].propertyValue"]


# --- gaps, mapped deterministically --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "amount"),
    [("1000", "USD", "1000.00"), ("1000.5", "EUR", "1000.50"), ("1000.500", "USD", "1000.50"),
     ("1500", "JPY", "1500"), ("0.125", "KWD", "0.125")],
)  # fmt: skip
def test_amounts_are_normalised_to_the_currency(value: str, currency: str, amount: str) -> None:
    (event,) = mapped(
        [hs_event(propertyName="amount", propertyValue=value)], hubspot_currency=currency
    )
    assert (event["type"], event["amount"], event["currency"]) == ("deal.updated", amount, currency)


def test_amount_currency_defaults_to_the_reporting_currency() -> None:
    (event,) = mapped(
        [hs_event(propertyName="amount", propertyValue="5")], reporting_currency="GBP"
    )
    assert (event["amount"], event["currency"]) == ("5.00", "GBP")


@pytest.mark.parametrize(
    ("stage", "status"),
    [("closedwon", "deal.closed_won"), ("closedlost", "deal.closed_lost"),
     ("qualifiedtobuy", "deal.reopened"), ("118412009", "deal.reopened"),
     ("118412010", "deal.closed_won"), ("118412011", "deal.closed_lost")],
)  # fmt: skip
def test_stage_ids_map_to_status_by_the_stage_settings(stage: str, status: str) -> None:
    events = mapped(
        [hs_event(eventId=5, propertyName="dealstage", propertyValue=stage)],
        hubspot_won_stages="closedwon, 118412010",
        hubspot_lost_stages="closedlost,118412011",
    )
    assert [(e["type"], e["event_id"]) for e in events] == [
        ("deal.updated", "hubspot:62515:5:7:9432001:stage"),
        (status, "hubspot:62515:5:7:9432001:status"),
    ]
    assert events[0]["stage"] == stage


@pytest.mark.parametrize("value", ["", None])
def test_an_emptied_deal_property_is_ignored(value: str | None) -> None:
    items = [hs_event(propertyName=name, propertyValue=value) for name in ("amount", "dealstage")]
    result = PROVIDER.map(delivery(json.dumps(items).encode()), settings())
    assert (result.events, result.ignored) == ([], 2)


@pytest.mark.parametrize("value", ["", None])
def test_a_cleared_company_detaches_the_contact(value: str | None) -> None:
    item = hs_event(
        "contact.propertyChange", propertyName="associatedcompanyid", propertyValue=value
    )
    (event,) = mapped([item])
    assert "account_id" in event and event["account_id"] is None


def test_a_long_job_title_is_cut_to_the_attribute_limit() -> None:
    item = hs_event("contact.propertyChange", propertyName="jobtitle", propertyValue="x" * 250)
    (event,) = mapped([item])
    assert event["attributes"] == {"title": "x" * 200}


def test_nul_characters_are_dropped_from_values() -> None:
    item = hs_event("company.propertyChange", propertyName="name", propertyValue="North\x00wind")
    (event,) = mapped([item])
    assert event["name"] == "Northwind"


def test_a_merge_into_a_new_record_absorbs_the_primary_too() -> None:
    item = hs_event("contact.merge", primaryObjectId=1, mergedObjectIds=[2, 1, 2], newObjectId=3)
    pairs = [(e["contact_id"], e["merged_contact_id"]) for e in mapped([item])]
    assert pairs == [("3", "1"), ("3", "2")]


def test_the_event_type_spelling_and_the_generic_object_format_are_read() -> None:
    legacy = hs_event("deal.creation")
    spelled = {k: v for k, v in legacy.items() if k != "subscriptionType"} | {
        "eventType": "deal.creation"
    }
    generic = legacy | {"subscriptionType": "object.creation", "objectTypeId": "0-3"}
    assert mapped([spelled]) == mapped([legacy]) == mapped([generic])
    assert mapped([legacy])[0]["type"] == "deal.created"


def test_unknown_types_and_empty_arrays_map_to_nothing() -> None:
    items = [hs_event("ticket.creation"), hs_event("object.creation", objectTypeId="0-5"),
             hs_event("conversation.newMessage"), hs_event("deal.restore")]  # fmt: skip
    result = PROVIDER.map(delivery(json.dumps(items).encode()), settings())
    assert (result.events, result.ignored) == ([], 4)
    assert PROVIDER.map(delivery(b"[]"), settings()).events == []


def test_json_numbers_are_read_exactly() -> None:
    body = b'[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":1775000000000,'
    body += b'"subscriptionType":"deal.propertyChange","objectId":4,"propertyName":"amount",'
    body += b'"propertyValue":1234567.89}]'
    (event,) = PROVIDER.map(delivery(body), settings()).events
    assert event["amount"] == "1234567.89"


# --- properties ----------------------------------------------------------------------------

_PROPERTY = st.sampled_from(
    [("deal.propertyChange", "dealstage"), ("deal.propertyChange", "amount"),
     ("deal.propertyChange", "closedate"), ("contact.propertyChange", "lifecyclestage"),
     ("contact.propertyChange", "associatedcompanyid"), ("contact.propertyChange", "jobtitle"),
     ("company.propertyChange", "name"), ("company.propertyChange", "industry")]
)  # fmt: skip
_VALUE = st.one_of(
    st.sampled_from(["", "closedwon", "closedlost", "presentationscheduled", "lead", "evangelist"]),
    st.decimals(min_value=0, max_value=10**9, places=2).map(lambda d: format(d, "f")),
    st.integers(min_value=1, max_value=10**12).map(str),
    st.text(st.characters(codec="utf-8"), max_size=300),
)


_ASSOCIATION_TYPES = ["DEAL_TO_COMPANY", "COMPANY_TO_CONTACT", "DEAL_TO_CONTACT"]


@st.composite
def _hubspot_event(draw: st.DrawFn, event_id: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["creation", "property", "association", "merge"]))
    item = hs_event(
        eventId=event_id,
        objectId=draw(st.integers(min_value=1, max_value=10**12)),
        occurredAt=draw(st.integers(min_value=0, max_value=7258118400000)),
    )
    if kind == "creation":
        types = ["contact.creation", "company.creation", "deal.creation"]
        return item | {"subscriptionType": draw(st.sampled_from(types))}
    if kind == "merge":
        merged = draw(st.lists(st.integers(min_value=1, max_value=50), max_size=4))
        return item | {
            "subscriptionType": "contact.merge",
            "primaryObjectId": 7,
            "mergedObjectIds": merged,
        }
    if kind == "association":
        return item | {
            "subscriptionType": "deal.associationChange",
            "associationType": draw(st.sampled_from(_ASSOCIATION_TYPES)),
            "fromObjectId": draw(st.integers(min_value=1, max_value=99)),
            "toObjectId": draw(st.integers(min_value=1, max_value=99)),
            "associationRemoved": draw(st.booleans()),
        }  # fmt: skip
    type_, name = draw(_PROPERTY)
    return item | {"subscriptionType": type_, "propertyName": name, "propertyValue": draw(_VALUE)}


@st.composite
def _deliveries(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=8))
    return [draw(_hubspot_event(1000 + i)) for i in range(count)]


def _amount_ok(item: dict[str, Any]) -> bool:
    """Whether an amount change holds an exact USD decimal (else the mapping refuses it)."""
    if item.get("propertyName") != "amount" or not item["propertyValue"]:
        return True
    whole, dot, cents = item["propertyValue"].partition(".")
    exact = whole.isascii() and whole.isdigit() and len(whole) < 13
    exact = exact and (not dot or (cents.isascii() and cents.isdigit()))
    return exact and (len(cents) <= 2 or set(cents[2:]) <= {"0"})


@hypothesis_settings(deadline=None)  # the first example warms pydantic's validators up
@given(_deliveries())
def test_mapping_is_deterministic_valid_and_retry_proof(items: list[dict[str, Any]]) -> None:
    body = json.dumps(items).encode()
    if not all(_amount_ok(i) for i in items):
        assert malformed(body).errors[0]["field"].endswith(".propertyValue")
        return
    first = PROVIDER.map(delivery(body), settings())
    assert PROVIDER.map(delivery(body), settings()) == first
    EVENT_LIST_ADAPTER.validate_python(first.events)
    ids = [e["event_id"] for e in first.events]
    assert len(ids) == len(set(ids))
    assert all(e["source"] == "hubspot" for e in first.events)
    retried = json.dumps([i | {"attemptNumber": 2} for i in items]).encode()
    assert PROVIDER.map(delivery(retried), settings()) == first
    assert first.ignored + len({e["event_id"].split(":")[2] for e in first.events}) == len(items)


# --- the end-to-end story, folded plainly ----------------------------------------------------


def _story_events() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    story = json.loads((FIXTURES / "story.json").read_text())
    events = list(story["canonical"])
    for d in story["deliveries"]:
        events += PROVIDER.map(delivery(json.dumps(d["body"]).encode()), settings()).events
    EVENT_LIST_ADAPTER.validate_python(events)
    unique: dict[str, dict[str, Any]] = {}
    for e in events:
        assert unique.setdefault(e["event_id"], e) == e  # a retry is a duplicate, not a conflict
    ordered = sorted(unique.values(), key=lambda e: (_at(e), e["event_id"]))
    return story, ordered


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))


def test_story_deliveries_give_the_deal_the_story_needs() -> None:
    story, events = _story_events()
    deal: dict[str, Any] = {}
    contact_account: dict[str, Any] = {}
    for e in events:
        if e["type"].startswith("deal."):
            deal |= {k: e[k] for k in ("account_id", "amount", "currency") if k in e}
            if e["type"] == "deal.created":
                deal["created_at"] = _at(e)
            if e["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened"):
                deal["status"], deal["status_at"] = e["type"], _at(e)
        if e["type"] == "contact.upserted" and "account_id" in e:
            contact_account[e["contact_id"]] = e["account_id"]
    assert deal["status"] == "deal.closed_won"
    assert (deal["amount"], deal["currency"], deal["account_id"]) == ("12500.01", "USD", "5102998")
    assert deal["status_at"] == datetime(2026, 3, 25, 15, 45, tzinfo=UTC)
    statuses = [e["type"] for e in events if e["type"] in ("deal.closed_won", "deal.reopened")]
    assert statuses == ["deal.reopened", "deal.closed_won", "deal.reopened", "deal.closed_won"]
    assert contact_account == {"1246965": "5102998"}

    # Linear credits (contract §2-§3) for the journey, by hand: the contact's touches from
    # 180 days before creation to the close, equal weights, floor then leftover cents.
    touches = [
        e for e in events
        if e["type"] == "touch" and contact_account.get(e["contact_id"]) == deal["account_id"]
        and deal["created_at"] - timedelta(days=180) <= _at(e) <= deal["status_at"]
    ]  # fmt: skip
    cents = int(Decimal(deal["amount"]) * 100)
    shares = [Decimal(cents) / len(touches)] * len(touches)
    credits = [int(s) for s in shares]
    by_fraction = sorted(range(len(touches)), key=lambda i: (-(shares[i] - credits[i]), i))
    for i in by_fraction[: cents - sum(credits)]:
        credits[i] += 1
    revenue: dict[str, int] = {}
    for touch, credit in zip(touches, credits, strict=True):
        revenue[touch["campaign_id"]] = revenue.get(touch["campaign_id"], 0) + credit
    expected = story["expected"]
    assert {k: f"{Decimal(v) / 100:.2f}" for k, v in revenue.items()} == expected["revenue"]
    assert (expected["won_deals"], expected["unattributed_revenue"]) == (1, "0.00")
    assert expected["from"] <= deal["status_at"].date().isoformat() < expected["to"]
