"""Segment webhooks: X-Signature verification, recorded payloads → golden events, gaps, story."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
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
from services.ingest.providers.segment import PROVIDER
from tests.support.signers import segment as signer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "segment"
GOLDENS = sorted(p.name.removesuffix(".expected.json") for p in FIXTURES.glob("*.expected.json"))
URL = "https://closedloop.example/v1/webhooks/segment"
NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
SECRET = "s3gment-shared-secret"
SETTINGS = Settings(database_url="sqlite://", webhook_secret_segment=SECRET)


def delivery(body: bytes, headers: dict[str, str] | None = None, **kw: Any) -> Delivery:
    """A delivery of ``body`` with ``headers`` (signed with SECRET when None)."""
    if headers is None:
        headers = signer.headers(body, secret=SECRET, url=URL, now=NOW)
    lowered = {k.lower(): v for k, v in headers.items()}
    return Delivery(body, lowered, URL, "POST", kw.get("received_at", NOW))


def encoded(message: Any) -> bytes:
    return json.dumps(message).encode()


def mapped(message: dict[str, Any]) -> list[dict[str, Any]]:
    return PROVIDER.map(delivery(encoded(message)), SETTINGS).events


def malformed(message: Any) -> Malformed:
    with pytest.raises(Malformed) as caught:
        PROVIDER.map(delivery(encoded(message)), SETTINGS)
    return caught.value


def track(**overrides: Any) -> dict[str, Any]:
    """A track call with a UTM campaign (fields as in Segment's spec examples)."""
    message: dict[str, Any] = {
        "type": "track",
        "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        "event": "Form Submitted",
        "userId": "AiUGstSDIg",
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "timestamp": "2026-02-02T09:00:00.000Z",
        "context": {"campaign": {"name": "spring_launch", "medium": "cpc", "source": "google"}},
        "properties": {},
    }
    message.update(overrides)
    return message


# --- recorded payloads → golden events -------------------------------------------------


@pytest.mark.parametrize("name", GOLDENS)
def test_recorded_payload_maps_to_its_golden_events(name: str) -> None:
    body = (FIXTURES / f"{name}.json").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    PROVIDER.verify(delivery(body), SETTINGS)
    result = PROVIDER.map(delivery(body), SETTINGS)
    assert result.events == expected
    assert result.ignored == (0 if expected else 1)


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_events_are_valid_canonical_events(name: str) -> None:
    EVENT_LIST_ADAPTER.validate_python(json.loads((FIXTURES / f"{name}.expected.json").read_text()))


def test_every_fixture_has_a_golden_or_is_a_documented_error() -> None:
    payloads = {p.stem for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json")}
    assert payloads - {"story"} - set(GOLDENS) == {"classic_identify"}


def test_classic_destination_sample_without_message_id_is_refused_at_message_id() -> None:
    # The classic Webhooks page's samples leave messageId out; real messages always carry one.
    body = (FIXTURES / "classic_identify.json").read_bytes()
    with pytest.raises(Malformed) as caught:
        PROVIDER.map(delivery(body), SETTINGS)
    assert caught.value.status == 422
    assert caught.value.errors[0]["field"] == "messageId"


def test_a_retried_delivery_maps_to_the_same_events() -> None:
    body = (FIXTURES / "common_track.json").read_bytes()
    first = PROVIDER.map(delivery(body), SETTINGS)
    later = PROVIDER.map(delivery(body, received_at=NOW + timedelta(hours=3)), SETTINGS)
    assert first == later


# --- verify --------------------------------------------------------------------------------


def test_signer_matches_segments_documented_digest() -> None:
    # The docs' check: crypto.createHmac('sha1', secret).update(body).digest('hex').
    body = b'{"type":"track"}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert signer.headers(body, secret=SECRET, url=URL, now=NOW) == {"X-Signature": expected}
    assert len(expected) == 40 and set(expected) <= set(string.hexdigits.lower())


def test_verify_accepts_a_correctly_signed_delivery() -> None:
    PROVIDER.verify(delivery(encoded(track())), SETTINGS)


def test_verify_accepts_an_upper_case_hex_signature() -> None:
    body = encoded(track())
    signature = signer.headers(body, secret=SECRET, url=URL, now=NOW)["X-Signature"]
    PROVIDER.verify(delivery(body, {"X-Signature": signature.upper()}), SETTINGS)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "missing X-Signature"),
        ({"X-Signature": ""}, "missing X-Signature"),
        ({"X-Signature": "0" * 40}, "does not match"),
        ({"X-Signature": "sha1=" + "0" * 40}, "does not match"),
        ({"X-Signature": "a" * 257}, "too long"),
    ],
)
def test_verify_refuses_a_missing_or_wrong_signature(headers: dict[str, str], words: str) -> None:
    with pytest.raises(Refused) as caught:
        PROVIDER.verify(delivery(encoded(track()), headers), SETTINGS)
    assert words in caught.value.detail
    assert SECRET not in caught.value.detail


def test_verify_refuses_a_signature_by_another_secret() -> None:
    body = encoded(track())
    headers = signer.headers(body, secret="another-secret", url=URL, now=NOW)
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(body, headers), SETTINGS)


def test_verify_refuses_a_body_changed_after_signing() -> None:
    body = encoded(track())
    headers = signer.headers(body, secret=SECRET, url=URL, now=NOW)
    changed = body.replace(b"spring_launch", b"spring_lunch")
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(changed, headers), SETTINGS)


@pytest.mark.parametrize("value", [None, "", " , "])
def test_verify_refuses_everything_when_the_secret_is_unset(value: str | None) -> None:
    settings = Settings(database_url="sqlite://", webhook_secret_segment=value)
    with pytest.raises(NotConfigured) as caught:
        PROVIDER.verify(delivery(encoded(track())), settings)
    assert caught.value.setting == "CLOSEDLOOP_WEBHOOK_SECRET_SEGMENT"


def test_verify_accepts_any_configured_secret_for_rotation() -> None:
    settings = Settings(database_url="sqlite://", webhook_secret_segment="old-secret, new-secret")
    body = encoded(track())
    for secret in ("old-secret", "new-secret"):
        headers = signer.headers(body, secret=secret, url=URL, now=NOW)
        PROVIDER.verify(delivery(body, headers), settings)
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(body), settings)  # signed by SECRET, no longer configured


@pytest.mark.parametrize("received_at", [NOW + timedelta(days=400), NOW - timedelta(days=400)])
def test_no_timestamp_is_signed_so_an_old_or_future_delivery_is_judged_by_its_signature(
    received_at: datetime,
) -> None:
    # Segment signs no time: a replay cannot be told apart, and maps to the same event ids.
    body = encoded(track(timestamp="2012-12-02T00:30:08.276Z"))
    PROVIDER.verify(delivery(body, received_at=received_at), SETTINGS)
    with pytest.raises(Refused):
        PROVIDER.verify(
            delivery(body, {"X-Signature": "0" * 40}, received_at=received_at), SETTINGS
        )


def test_verify_refuses_a_batch_signed_over_its_first_event_only() -> None:
    # Segment's documented batch signature: HMAC of JSON.stringify(req.body[0]).
    first, second = track(), track(messageId="ajs-second", userId="intruder")
    headers = signer.headers(encoded(first), secret=SECRET, url=URL, now=NOW)
    with pytest.raises(Refused) as caught:
        PROVIDER.verify(delivery(json.dumps([first, second]).encode(), headers), SETTINGS)
    assert "batch" in caught.value.detail


# --- malformed bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"type": "track"',
        b"\xff\xfe{}",
        b'{"timestamp": NaN}',
        b"",
        b'{"type": "track", "event": "\\ud800"}',
        b"[" * 100_000,
    ],
)
def test_a_body_that_is_not_json_is_a_400(body: bytes) -> None:
    with pytest.raises(Malformed) as caught:
        PROVIDER.map(delivery(body), SETTINGS)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ([track()], "body"),
        ("track", "body"),
        ({"messageId": "m1"}, "type"),
        (track(type=7), "type"),
        (track(messageId=None), "messageId"),
        (track(messageId="m" * 151), "messageId"),
        (track(messageId=5), "messageId"),
        (track(timestamp="yesterday"), "timestamp"),
        (track(timestamp=1700000000), "timestamp"),
        (track(timestamp="1969-12-31T23:59:59Z"), "timestamp"),
        (track(timestamp=None), "timestamp"),
        (track(timestamp=None, originalTimestamp="bad"), "originalTimestamp"),
        (track(context="utm"), "context"),
        (track(context={"campaign": ["spring"]}), "context.campaign"),
        (track(context={"campaign": {"name": 5}}), "context.campaign.name"),
        (track(context={"campaign": {"name": "x" * 201}}), "context.campaign.name"),
        (track(context={"campaign": {"name": "a\x00b"}}), "context.campaign.name"),
        (track(context={"campaign": {"name": "c"}, "groupId": 12}), "context.groupId"),
        (track(properties=[1]), "properties"),
        (track(event=None), "event"),
        (track(userId=None, anonymousId=None), "userId"),
        (track(userId=None, anonymousId="a" * 196), "anonymousId"),
        (track(userId=42), "userId"),
        ({"type": "group", "messageId": "m", "userId": "u", "timestamp": "2026-01-01"}, "groupId"),
        (
            {
                "type": "group",
                "groupId": "g",
                "messageId": "m",
                "userId": "u",
                "traits": 3,
                "timestamp": "2026-01-01",
            },
            "traits",
        ),
        (
            {"type": "alias", "userId": "u", "messageId": "m", "timestamp": "2026-01-01"},
            "previousId",
        ),
        ({"type": "identify", "userId": "u", "timestamp": "2026-01-01"}, "messageId"),
    ],
)
def test_a_missing_or_wrong_field_is_a_422_naming_it(message: Any, field: str) -> None:
    problem = malformed(message)
    assert problem.status == 422
    assert [e["field"] for e in problem.errors] == [field]


# --- gaps, mapped deterministically ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_at", "expected"),
    [
        ("2026-02-02T09:00:00.000Z", "2026-02-02T09:00:00.000Z"),
        ("2026-02-02T09:00:00Z", "2026-02-02T09:00:00.000Z"),
        ("2026-02-02T10:00:00.5+01:00", "2026-02-02T09:00:00.500Z"),
        ("2026-02-02T09:00:00.123456Z", "2026-02-02T09:00:00.123456Z"),
        ("2026-02-02T09:00:00.123", "2026-02-02T09:00:00.123Z"),  # Segment's times are UTC
        ("2026-02-02", "2026-02-02T00:00:00.000Z"),
    ],
)
def test_occurred_at_is_the_timestamp_in_utc(given_at: str, expected: str) -> None:
    assert mapped(track(timestamp=given_at))[1]["occurred_at"] == expected


def test_occurred_at_falls_back_to_original_timestamp_then_sent_at() -> None:
    times = {"originalTimestamp": "2026-01-01T00:00:01Z", "sentAt": "2026-01-01T00:00:02Z"}
    assert mapped(track(timestamp=None, **times))[1]["occurred_at"] == "2026-01-01T00:00:01.000Z"
    times["originalTimestamp"] = None  # type: ignore[assignment]
    assert mapped(track(timestamp=None, **times))[1]["occurred_at"] == "2026-01-01T00:00:02.000Z"


@pytest.mark.parametrize(
    ("medium", "channel"),
    [
        ("cpc", "paid_search"),
        ("PPC", "paid_search"),
        ("paid-search", "paid_search"),
        ("Paid Social", "paid_social"),
        ("social", "social"),
        ("newsletter", "email"),
        ("banner", "display"),
        ("cpm", "display"),
        ("affiliate", "affiliate"),
        ("referral", "referral"),
        ("organic", "organic_search"),
        ("webinar", "webinar"),
        ("event", "events"),
        ("Podcast Ads!", "podcast_ads"),
        ("!!!", "other"),
        (None, "other"),
        (7, "other"),
    ],
)
def test_the_campaign_channel_comes_from_utm_medium(medium: Any, channel: str) -> None:
    campaign = {"name": "spring_launch", "medium": medium}
    definition, _ = mapped(track(context={"campaign": campaign}))
    assert definition == {
        "type": "campaign.upserted",
        "event_id": f"segment:campaign:spring_launch:{channel}",
        "occurred_at": "1970-01-01T00:00:00Z",
        "source": "segment",
        "campaign_id": "spring_launch",
        "name": "spring_launch",
        "channel": channel,
    }


def test_a_long_campaign_name_gets_a_hashed_definition_id_within_200_characters() -> None:
    name = "n" * 200
    definition, touch = mapped(track(context={"campaign": {"name": name, "medium": "email"}}))
    digest = hashlib.sha256(f"{name}\x00email".encode()).hexdigest()
    assert definition["event_id"] == f"segment:campaign:sha256:{digest}"
    assert touch["campaign_id"] == name


@pytest.mark.parametrize(
    ("event", "touch_type"),
    [
        ("Form Submitted", "form_submitted"),
        ("signup-completed v2", "signup_completed_v2"),
        ("???", "track"),
        ("É" + "x" * 150, "x" * 100),
    ],
)
def test_a_track_touch_type_is_the_slug_of_its_event_name(event: str, touch_type: str) -> None:
    assert mapped(track(event=event))[1]["touch_type"] == touch_type


def test_page_and_screen_touches_are_views_and_anonymous_visitors_are_anon_contacts() -> None:
    page = mapped(track(type="page", event=None, userId=None))[1]
    screen = mapped(track(type="screen", event=None))[1]
    assert (page["touch_type"], page["contact_id"]) == (
        "page_view",
        "anon:23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    )
    assert (screen["touch_type"], screen["contact_id"]) == ("screen_view", "AiUGstSDIg")


@pytest.mark.parametrize(
    ("value", "lead"), [(True, True), ("true", False), (1, False), (None, False)]
)
def test_lead_created_only_when_the_property_is_true(value: Any, lead: bool) -> None:
    assert mapped(track(properties={"lead_created": value}))[1]["lead_created"] is lead


def test_context_group_id_becomes_the_touch_account() -> None:
    context = {"campaign": {"name": "spring_launch"}, "groupId": "12345"}
    assert mapped(track(context=context))[1]["account_id"] == "12345"


@pytest.mark.parametrize(
    "message",
    [
        track(context={}),
        track(context={"campaign": {"medium": "email", "source": "newsletter"}}),
        track(context={"campaign": {"name": ""}}),
        track(type="delete"),
        track(type="something_new"),
        {"type": "identify", "anonymousId": "a1", "traits": {"title": "CTO"}},
        {"type": "identify", "userId": "", "anonymousId": "a1", "traits": {"title": "CTO"}},
    ],
)
def test_messages_that_mean_nothing_for_attribution_are_ignored(message: dict[str, Any]) -> None:
    result = PROVIDER.map(delivery(encoded(message)), SETTINGS)
    assert (result.events, result.ignored) == ([], 1)


def identify(traits: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    message = {
        "type": "identify",
        "messageId": "m1",
        "userId": "u1",
        "traits": traits,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    return message | overrides


def test_identify_keeps_short_text_and_number_traits_under_snake_case_names() -> None:
    traits = {
        "subscriptionPlan": "Premium",
        "total billed": "__number__",
        "logins": 5,
        "isAdmin": True,
        "tags": ["a"],
        "company": {"name": "Initech"},
        "email": "peter@example.com",
        "firstName": "Peter",
        "bio": "x" * 201,
        "nickname": "  ",
        "9lives": "cat",
        "k" * 51: "too long a key",
        "lifecycle_stage": "MQL",
        "big": "__huge__",
    }
    # Numbers as Segment sends them: exact JSON numbers (830.50 keeps its cents, no float).
    body = encoded(identify(traits)).replace(b'"__number__"', b"830.50")
    body = body.replace(b'"__huge__"', b"1e999999999")
    (contact,) = PROVIDER.map(delivery(body), SETTINGS).events
    assert contact["attributes"] == {
        "logins": "5",
        "subscription_plan": "Premium",
        "total_billed": "830.50",
    }
    assert contact["lifecycle_stage"] == "mql"


def test_identify_keys_naming_one_attribute_take_the_first_in_sorted_order() -> None:
    (contact,) = mapped(identify({"totalBilled": "b", "total billed": "a", "total_billed": "c"}))
    assert contact["attributes"] == {"total_billed": "a"}  # " " < "B" < "_"


def test_identify_keeps_at_most_50_attributes() -> None:
    traits = {f"trait_{i:03d}": str(i) for i in range(60)}
    (contact,) = mapped(identify(traits))
    assert sorted(contact["attributes"]) == [f"trait_{i:03d}" for i in range(50)]


@pytest.mark.parametrize("stage", ["customer ", "Recycled", "disqualified"])
def test_identify_stage_is_the_contract_stage_named(stage: str) -> None:
    (contact,) = mapped(identify({"lifecycleStage": stage}))
    assert contact["lifecycle_stage"] == stage.strip().lower()


def test_identify_with_an_unknown_stage_and_no_traits_still_names_the_contact() -> None:
    (contact,) = mapped(identify({"lifecycle_stage": "evangelist"}))
    assert contact == {
        "type": "contact.upserted",
        "event_id": "segment:m1",
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "source": "segment",
        "contact_id": "u1",
    }


def test_group_without_a_usable_name_leaves_the_name_out() -> None:
    message = {
        "type": "group",
        "messageId": "m",
        "groupId": "g1",
        "anonymousId": "a1",
        "timestamp": "2026-01-01T00:00:00Z",
        "traits": {"name": 5, "plan": "pro"},
    }
    account, member = mapped(message)
    assert "name" not in account and account["attributes"] == {"plan": "pro"}
    assert member["contact_id"] == "anon:a1" and member["account_id"] == "g1"


def test_alias_of_the_same_id_merges_only_the_anonymous_form() -> None:
    message = {
        "type": "alias",
        "messageId": "m",
        "userId": "u1",
        "previousId": "u1",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    (merge,) = mapped(message)
    assert (merge["event_id"], merge["merged_contact_id"]) == ("segment:m:anon", "anon:u1")


# --- property: any variation maps deterministically to valid events, or is refused --------

_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
# Mostly well-formed values (so most examples map to events), sometimes a gap or a wrong type.
_odd = st.one_of(st.none(), st.just(""), st.integers(), st.booleans())


def _mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from ``good`` 15 times in 16, else from ``odd``."""
    return st.integers(0, 15).flatmap(lambda i: good if i else odd)


_texts = _mostly(_ids, _odd)
_times = st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
_trait_values = st.one_of(
    _texts,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**80)),
    st.lists(_ids),
)
_messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "x"]),
        "messageId": _texts,
        "userId": _texts,
        "anonymousId": _texts,
        "timestamp": _mostly(_times, _texts),
        "context": st.fixed_dictionaries(
            {"campaign": st.fixed_dictionaries({"name": _texts}, optional={"medium": _texts})},
            optional={"groupId": _texts},
        ),
        "previousId": _texts,
        "groupId": _texts,
        "event": _texts,
    },
    optional={
        "traits": st.dictionaries(st.text(max_size=12), _trait_values, max_size=8),
        "properties": st.fixed_dictionaries({}, optional={"lead_created": _texts}),
    },
)


@given(_messages)
def test_map_is_deterministic_and_every_event_validates(message: dict[str, Any]) -> None:
    body = encoded(message)
    try:
        first = PROVIDER.map(delivery(body), SETTINGS)
    except Malformed as exc:
        with pytest.raises(Malformed) as again:
            PROVIDER.map(delivery(body), SETTINGS)
        assert (again.value.status, again.value.errors) == (exc.status, exc.errors)
        return
    assert PROVIDER.map(delivery(body), SETTINGS) == first
    EVENT_LIST_ADAPTER.validate_python(first.events)
    ids = [e["event_id"] for e in first.events]
    assert len(ids) == len(set(ids))
    assert all(e["source"] == "segment" for e in first.events)
    assert all(
        i.startswith(f"segment:{message['messageId']}") or i.startswith("segment:campaign:")
        for i in ids
    )
    assert first.ignored == (0 if first.events else 1)


# --- the story ---------------------------------------------------------------------------------


def linear_cents(amount_cents: int, touches: int) -> list[int]:
    """Contract §3 for equal weights: floor each share, leftover cents to the earliest touches."""
    shares = [amount_cents // touches] * touches
    for i in range(amount_cents - sum(shares)):  # equal fractions: ties go to earlier touches
        shares[i] += 1
    return shares


def test_story_deliveries_make_the_journey_the_expected_revenue_needs() -> None:
    story = json.loads((FIXTURES / "story.json").read_text())
    events = list(story["canonical"])
    for item in story["deliveries"]:
        assert item["content_type"] in PROVIDER.media_types
        events += PROVIDER.map(delivery(encoded(item["body"])), SETTINGS).events
    EVENT_LIST_ADAPTER.validate_python(events)
    ordered = sorted(
        events, key=lambda e: (datetime.fromisoformat(e["occurred_at"]), e["event_id"])
    )

    # The deal, folded plainly: the latest status event, the latest amount carried.
    deal = [e for e in ordered if e.get("deal_id") == "initech-2026-001"]
    status = [
        e for e in deal if e["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened")
    ]
    assert [e["type"] for e in status] == ["deal.closed_won", "deal.reopened", "deal.closed_won"]
    amount = [e["amount"] for e in deal if "amount" in e][-1]
    created = next(e for e in deal if e["type"] == "deal.created")
    won_at = status[-1]["occurred_at"]
    assert amount == "12500.01"

    # Contacts after merges, and who belongs to the deal's account.
    root = {
        e["merged_contact_id"]: e["contact_id"] for e in events if e["type"] == "contact.merged"
    }
    members = {
        e["contact_id"]
        for e in events
        if e.get("account_id") == created["account_id"] and e["type"] == "contact.upserted"
    }
    assert root == {"anon:507f191e810c19729de860ea": "97980cfea0067"}
    assert members == {"97980cfea0067"}

    journey = [e for e in ordered if e["type"] == "touch"]
    assert all(root.get(t["contact_id"], t["contact_id"]) in members for t in journey)
    lookback_start = datetime.fromisoformat(created["occurred_at"]) - timedelta(days=180)
    assert all(
        lookback_start <= datetime.fromisoformat(t["occurred_at"]) <= datetime.fromisoformat(won_at)
        for t in journey
    )
    campaigns = {e["campaign_id"] for e in events if e["type"] == "campaign.upserted"}
    assert {t["campaign_id"] for t in journey} == campaigns == set(story["expected"]["revenue"])

    # Linear credits, worked independently of the service, match the story's expectation.
    cents = linear_cents(int(Decimal(amount) * 100), len(journey))
    revenue: dict[str, int] = {}
    for touch, share in zip(journey, cents, strict=True):
        revenue[touch["campaign_id"]] = revenue.get(touch["campaign_id"], 0) + share
    rendered = {c: f"{Decimal(v) / 100:.2f}" for c, v in revenue.items()}
    assert rendered == story["expected"]["revenue"]
    assert (
        story["expected"]["won_deals"] == 1 and story["expected"]["unattributed_revenue"] == "0.00"
    )
    assert story["expected"]["from"] <= won_at[:10] < story["expected"]["to"]
