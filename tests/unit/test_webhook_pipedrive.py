"""Pipedrive webhooks: basic auth, v1/v2 payloads → canonical events (goldens), gaps, the story."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.events import EVENT_LIST_ADAPTER
from services.core.settings import Settings
from services.ingest.providers.base import Delivery, Malformed, NotConfigured, Refused
from services.ingest.providers.pipedrive import PROVIDER
from tests.support.signers import pipedrive as signer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "pipedrive"
PAYLOADS = sorted(p for p in FIXTURES.glob("v*.json") if not p.name.endswith(".expected.json"))
IGNORED = {"v2_delete_deal.json": 1, "v2_create_activity.json": 1}
URL = "https://ingest.example.com/v1/webhooks/pipedrive"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PAIR, OTHER_PAIR = "closedloop:s3cret-pässword", "rotated:n3w-secret"


def settings(basic: str | None = PAIR) -> Settings:
    return Settings(database_url="sqlite://", webhook_basic_pipedrive=basic)


def delivery(body: bytes, headers: dict[str, str] | None = None, at: datetime = NOW) -> Delivery:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return Delivery(body=body, headers=lowered, url=URL, method="POST", received_at=at)


def signed(body: bytes, secret: str = PAIR) -> Delivery:
    return delivery(body, signer.headers(body, secret=secret, url=URL, now=NOW))


def mapped(body: dict[str, Any] | bytes) -> list[dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PROVIDER.map(delivery(raw), settings()).events


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


# --- goldens -------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.name)
def test_recorded_payload_maps_to_its_golden(payload: Path) -> None:
    expected = json.loads(payload.with_name(payload.stem + ".expected.json").read_text())
    result = PROVIDER.map(delivery(payload.read_bytes()), settings())
    assert result.events == expected
    assert result.ignored == IGNORED.get(payload.name, 0)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.name)
def test_golden_is_valid_canonical_and_named_in_readme(payload: Path) -> None:
    expected = json.loads(payload.with_name(payload.stem + ".expected.json").read_text())
    EVENT_LIST_ADAPTER.validate_python(expected)
    assert payload.name in (FIXTURES / "README.md").read_text()


def test_retried_deliveries_map_to_identical_events() -> None:
    v2 = fixture("v2_create_deal.json")
    retried = copy.deepcopy(v2)
    retried["meta"]["attempt"] = 3
    assert mapped(retried) == mapped(v2)
    v1 = fixture("v1_updated_deal_won.json")
    retried = copy.deepcopy(v1)
    retried["retry"] = 2
    assert mapped(retried) == mapped(v1)


# --- verify: HTTP basic ------------------------------------------------------------------------


def test_signer_header_is_rfc7617_basic() -> None:
    header = signer.headers(b"{}", secret="Aladdin:open sesame", url=URL, now=NOW)
    assert header == {"Authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="}  # RFC 7617 §2


def test_verify_accepts_the_configured_credentials() -> None:
    PROVIDER.verify(signed(b'{"meta": {}}'), settings())


def test_verify_accepts_the_second_pair_of_a_rotation() -> None:
    PROVIDER.verify(signed(b"{}", OTHER_PAIR), settings(f"{PAIR}, {OTHER_PAIR}"))
    PROVIDER.verify(signed(b"{}", PAIR), settings(f"{PAIR}, {OTHER_PAIR}"))


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer abc"}, "Basic scheme"),
        ({"Authorization": "Basic !!!not-base64"}, "base64"),
        ({"Authorization": "Basic " + base64.b64encode(b"closedloop:wrong").decode()}, "match"),
        ({"Authorization": "Basic " + base64.b64encode(b"closedloop").decode()}, "match"),
        ({"Authorization": "Basic " + base64.b64encode(PAIR.encode() + b" ").decode()}, "match"),
    ],
)
def test_verify_refuses_bad_credentials_naming_no_secret(headers: dict[str, str], why: str) -> None:
    with pytest.raises(Refused) as refused:
        PROVIDER.verify(delivery(b"{}", headers), settings())
    assert why in refused.value.detail
    assert "s3cret" not in refused.value.detail and "closedloop:" not in refused.value.detail


def test_verify_refuses_credentials_of_another_configuration() -> None:
    with pytest.raises(Refused):
        PROVIDER.verify(signed(b"{}", OTHER_PAIR), settings())


@pytest.mark.parametrize("value", [None, "", " , "])
def test_unset_setting_refuses_everything(value: str | None) -> None:
    with pytest.raises(NotConfigured) as missing:
        PROVIDER.verify(signed(b"{}"), settings(value))
    assert missing.value.setting == "CLOSEDLOOP_WEBHOOK_BASIC_PIPEDRIVE"


def test_basic_auth_binds_neither_body_nor_time() -> None:
    """Documented limit: Pipedrive signs nothing, so a changed body or an old or future arrival
    is judged by the credentials alone (a replay is a duplicate by event_id instead)."""
    sent = signed(b'{"a": 1}')
    for at in (NOW - timedelta(days=3), NOW + timedelta(hours=2)):
        PROVIDER.verify(delivery(b'{"a": 2}', dict(sent.headers), at), settings())


# --- malformed bodies -------------------------------------------------------------------------


def v2_deal(**data: Any) -> dict[str, Any]:
    body = fixture("v2_create_deal.json")
    body["data"].update(data)
    return body


def raw_with_value(value_text: str, currency: str = "USD") -> bytes:
    text = json.dumps(v2_deal(currency=currency, value=0))
    return text.replace('"value": 0', f'"value": {value_text}').encode()


@pytest.mark.parametrize("raw", [b"not json", b'{"meta": ', b"\xff\xfe{", raw_with_value("NaN")])
def test_unparseable_body_is_400(raw: bytes) -> None:
    with pytest.raises(Malformed) as bad:
        mapped(raw)
    assert bad.value.status == 400


def field_of(body: dict[str, Any] | bytes) -> str:
    with pytest.raises(Malformed) as bad:
        mapped(body)
    assert bad.value.status == 422
    return str(bad.value.errors[0]["field"])


def test_wrong_shapes_are_422_naming_the_field() -> None:
    v2 = fixture("v2_create_deal.json")
    assert field_of(b"[1, 2]") == "body"
    assert field_of({"data": {}}) == "meta"
    assert field_of({**v2, "meta": {**v2["meta"], "id": None}}) == "meta.id"
    assert field_of({**v2, "meta": {**v2["meta"], "action": "added"}}) == "meta.action"
    assert field_of({**v2, "meta": {**v2["meta"], "timestamp": "yesterday"}}) == "meta.timestamp"
    assert field_of({"meta": {"action": "create"}}) == "meta.version"
    assert field_of({**v2, "data": None}) == "data"
    assert field_of(v2_deal(id=None)) == "data.id"
    assert field_of(v2_deal(org_id=[1])) == "data.org_id"
    assert field_of(v2_deal(add_time="24/11/2022")) == "data.add_time"
    v1 = fixture("v1_updated_deal_won.json")
    assert (
        field_of({**v1, "current": {**v1["current"], "update_time": 5.5}}) == "current.update_time"
    )


@pytest.mark.parametrize(
    ("value", "currency", "field"),
    [
        ("5000.505", "USD", "data.value"),  # more precise than cents
        ("5000.5", "JPY", "data.value"),  # JPY has no minor unit
        ('"5000"', "USD", "data.value"),  # a string, not a JSON number
        ("true", "USD", "data.value"),
        ("-5", "USD", "data.value"),
        ("1e400", "USD", "data.value"),
        ("100", "XYZ", "data.currency"),
    ],
)
def test_bad_amounts_are_422_naming_the_field(value: str, currency: str, field: str) -> None:
    assert field_of(raw_with_value(value, currency)) == field


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5000.5", "5000.5"), ("5000.50", "5000.50"), ("0.1", "0.1"), ("12500", "12500"),
     ("1.5E+3", "1500"), ("0", "0"), ("-0", "0")],
)  # fmt: skip
def test_amounts_are_exact_decimals(text: str, expected: str) -> None:
    created = mapped(raw_with_value(text))[0]
    assert (created["amount"], created["currency"]) == (expected, "USD")


def test_other_exponents_and_missing_values() -> None:
    assert mapped(raw_with_value("5000", "KWD"))[0]["amount"] == "5000"
    assert "amount" not in mapped(v2_deal(value=None))[0]


# --- gaps ---------------------------------------------------------------------------------------


def test_deal_without_organization_or_person_leaves_them_out() -> None:
    created = mapped(v2_deal(org_id=None, person_id=None, stage_id=None))[0]
    assert created["type"] == "deal.created"
    assert not {"account_id", "contact_ids", "stage"} & set(created)


def test_v1_related_ids_may_be_objects_with_value() -> None:
    body = fixture("v1_updated_deal_won.json")
    body["current"]["org_id"] = {"name": "TheCo", "value": 42}
    body["current"]["person_id"] = {"name": "Tim", "value": 7}
    updated, won = mapped(body)
    assert (updated["account_id"], updated["contact_ids"], won["account_id"]) == ("42", ["7"], "42")


def test_person_without_organization_is_an_explicit_null_account() -> None:
    body = fixture("v2_create_person.json")
    body["data"]["org_id"] = None
    (contact,) = mapped(body)
    assert "account_id" in contact and contact["account_id"] is None


def test_organization_country_becomes_an_attribute() -> None:
    v1 = {
        "meta": {"v": 1, "action": "updated", "object": "organization", "id": 5,
                 "timestamp": 1772359200},
        "current": {"id": 5, "name": " Acme ", "address_country": "Estonia",
                    "update_time": "2026-03-01 10:00:00"},
        "previous": {"id": 5}, "retry": 0, "event": "updated.organization",
    }  # fmt: skip
    (account,) = mapped(v1)
    assert account == {
        "event_id": "pipedrive:v1.updated.organization.5.1772359200:account.upserted",
        "type": "account.upserted",
        "occurred_at": "2026-03-01T10:00:00Z",
        "source": "pipedrive",
        "account_id": "5",
        "name": "Acme",
        "attributes": {"country": "Estonia"},
    }


@pytest.mark.parametrize(
    ("entity", "action"), [("lead", "create"), ("product", "change"), ("deal", "delete")]
)
def test_unmapped_entities_and_deletions_are_ignored(entity: str, action: str) -> None:
    body = fixture("v2_create_activity.json")
    body["meta"].update(entity=entity, action=action)
    result = PROVIDER.map(delivery(json.dumps(body).encode()), settings())
    assert (result.events, result.ignored) == ([], 1)


def test_v2_change_without_status_in_previous_sends_no_status_event() -> None:
    body = fixture("v2_update_deal.json")
    body["data"]["status"] = "won"  # won earlier; this change edits a custom field only
    assert [e["type"] for e in mapped(body)] == ["deal.updated"]


def v2_change(data: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, Any]]:
    body = fixture("v2_update_deal.json")
    body["data"].update(data)
    body["previous"] = previous
    return mapped(body)


def test_v2_status_changes_map_to_status_events_at_their_times() -> None:
    lost = v2_change({"status": "lost", "lost_time": "2026-03-03T08:00:00Z"}, {"status": "open"})
    assert [(e["type"], e["occurred_at"]) for e in lost] == [
        ("deal.updated", "2022-11-24T15:11:55Z"),
        ("deal.closed_lost", "2026-03-03T08:00:00Z"),
    ]
    reopened = v2_change({"status": "open"}, {"status": "lost"})
    assert reopened[1] == {
        "event_id": "pipedrive:df47d877-b58c-4886-91cd-1aa83e1d7366:deal.reopened",
        "type": "deal.reopened",
        "occurred_at": "2022-11-24T15:11:55Z",
        "source": "pipedrive",
        "deal_id": "8",
    }
    won = v2_change({"status": "won", "won_time": None}, {"status": "open"})
    assert won[1]["occurred_at"] == "2022-11-24T15:11:55Z"  # no won_time: the update time


def test_deal_created_won_also_closes_it() -> None:
    created, won = mapped(v2_deal(status="won", won_time="2022-11-24T13:30:00Z"))
    assert (created["type"], won["type"], won["occurred_at"]) == (
        "deal.created",
        "deal.closed_won",
        "2022-11-24T13:30:00Z",
    )
    assert (won["amount"], won["currency"], won["account_id"]) == ("100", "EUR", "1")


def test_v1_previous_without_status_states_the_current_status() -> None:
    body = fixture("v1_updated_deal_won.json")
    body["previous"] = {"stage_id": 1}
    assert [e["type"] for e in mapped(body)] == ["deal.updated", "deal.closed_won"]
    body["current"]["status"] = "open"
    body["previous"] = {"status": "open"}
    assert [e["type"] for e in mapped(body)] == ["deal.updated"]


def test_v1_merged_is_a_change_of_the_surviving_object() -> None:
    body = fixture("v1_updated_deal_won.json")
    body["meta"]["action"] = "merged"
    events = mapped(body)
    assert [e["event_id"] for e in events] == [
        "pipedrive:v1.merged.deal.21.1444755162:deal.updated",
        "pipedrive:v1.merged.deal.21.1444755162:deal.closed_won",
    ]


def test_epoch_meta_timestamp_is_the_fallback_time() -> None:
    body = fixture("v2_create_deal.json")
    body["data"]["add_time"] = None
    body["meta"]["timestamp"] = 1669295936  # v2 sends epoch seconds for some entities
    assert mapped(body)[0]["occurred_at"] == "2022-11-24T13:18:56Z"


# --- properties ---------------------------------------------------------------------------------

refs = st.one_of(
    st.none(),
    st.integers(1, 10**9),
    st.builds(lambda n: {"name": "x", "value": n}, st.integers(1, 10**9)),
)


@given(
    cents=st.integers(0, 10**12),
    places=st.sampled_from([0, 1, 2]),
    status=st.sampled_from(["open", "won", "lost"]),
    previous_status=st.sampled_from(["open", "won", "lost", None]),
    org=refs,
    person=refs,
    v1=st.booleans(),
)
def test_mapping_is_deterministic_exact_and_valid(
    cents: int,
    places: int,
    status: str,
    previous_status: str | None,
    org: Any,
    person: Any,
    v1: bool,
) -> None:
    amount_text = str(Decimal(cents).scaleb(-places)) if places else str(cents)
    if v1:
        body = fixture("v1_updated_deal_won.json")
        deal, body["previous"] = body["current"], {"status": previous_status}
        deal["currency"] = "USD"
    else:
        body = v2_deal(currency="USD")
        body["meta"]["action"] = "change"
        deal, body["previous"] = body["data"], {"status": previous_status}
    deal.update(status=status, org_id=org, person_id=person, value=0)
    raw = json.dumps(body).replace('"value": 0', f'"value": {amount_text}', 1).encode()
    first, second = mapped(raw), mapped(raw)
    assert first == second
    EVENT_LIST_ADAPTER.validate_python(first)
    assert first[0]["amount"] == amount_text
    assert len(first) == (2 if previous_status != status else 1)


# --- the story ----------------------------------------------------------------------------------


def linear_cents(total: int, touches: int) -> list[int]:
    """Contract §3 by hand: floor each equal share, leftover cents to the earliest touches."""
    shares = [total // touches] * touches
    for index in range(total - sum(shares)):
        shares[index] += 1
    return shares


def test_story_deliveries_give_the_journey_and_amount_the_report_expects() -> None:
    story = json.loads((FIXTURES / "story.json").read_text())
    events = list(story["canonical"])
    for item in story["deliveries"]:
        assert item["content_type"] in PROVIDER.media_types
        events += mapped(item["body"])
    EVENT_LIST_ADAPTER.validate_python(events)
    ordered = sorted(events, key=lambda e: (e["occurred_at"], e["event_id"]))
    status = amount = created = None
    closed = ""
    accounts: dict[str, Any] = {}
    for event in ordered:  # a plain fold of contract §1's "latest field wins"
        if event["type"] == "contact.upserted":
            accounts[event["contact_id"]] = event["account_id"]
        if event.get("deal_id") != "7301":
            continue
        amount = event.get("amount", amount)
        created = event["occurred_at"] if event["type"] == "deal.created" else created
        if event["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened"):
            status, closed = event["type"], event["occurred_at"]
    assert (status, amount, created, closed) == (
        "deal.closed_won", "12500", "2026-03-02T09:00:00Z", "2026-03-15T11:45:00Z",
    )  # fmt: skip
    assert accounts == {"7101": "7007"}
    touches = [e for e in ordered if e["type"] == "touch" and e["occurred_at"] <= closed]
    assert [t["contact_id"] for t in touches] == ["7101"] * 3
    credits: dict[str, int] = {}
    for touch, cents in zip(touches, linear_cents(1_250_000, len(touches)), strict=True):
        credits[touch["campaign_id"]] = credits.get(touch["campaign_id"], 0) + cents
    expected = story["expected"]
    assert {c: f"{v // 100}.{v % 100:02d}" for c, v in credits.items()} == expected["revenue"]
    assert (expected["won_deals"], expected["unattributed_revenue"]) == (1, "0.00")
    assert expected["from"] <= closed[:10] < expected["to"]
