"""Hostile deliveries for the JSON webhook providers (HubSpot, Pipedrive, Segment).

Each provider gets the common cases (``hostile_corpus.common``) on a recorded valid delivery,
then its own: wrong types, malformed money, timestamps it cannot read, bad credentials, and an
event type it does not know (acknowledged and ignored, as its contract says). Pipedrive and
Segment send timestamps without an offset as UTC by design, so their timestamp cases are
impossible dates instead. ``JSON_ENDPOINTS`` lists every JSON endpoint's corpus.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from chaos.hostile_corpus import (
    Hostile,
    bad_auth,
    canonical,
    common,
    dumps,
    fixture,
    ignored,
    refused,
)


def _hubspot_event(index: int = 2, **changes: Any) -> dict[str, Any]:
    """A recorded HubSpot deal event: [1] a stage change, [2] an amount change."""
    event = copy.deepcopy(fixture("hubspot", "deal-lifecycle.json")[index])
    event.update(changes)
    return event


def hubspot() -> list[Hostile]:
    """HubSpot: a JSON array of events, signature v3."""
    e, ev = "hubspot", _hubspot_event
    base = dumps([ev(1)])
    huge_amount = dumps([ev(propertyValue=0)]).replace(
        b'"propertyValue": 0', b'"propertyValue": 1e400'
    )
    return [
        *common(e, base, b'"appointmentscheduled"', ("json", "unicode", "stage")),
        refused("wrong_types", "object_not_array", e, ev(), "body"),
        refused("wrong_types", "array_of_numbers", e, [1, 2], "[0]"),
        refused("wrong_types", "object_id_text", e, [ev(objectId="abc")], "objectid"),
        refused("wrong_types", "value_object", e, [ev(propertyValue={"a": 1})], "propertyvalue"),
        refused("float_money", "too_precise", e, [ev(propertyValue="1500.505")], "propertyvalue"),
        refused("float_money", "amount_1e400", e, huge_amount, "propertyvalue"),
        refused("naive_timestamp", "as_text", e, [ev(occurredAt="2026-03-01T10:00")], "occurredat"),
        refused("naive_timestamp", "year_3000", e, [ev(occurredAt=32503680000000)], "occurredat"),
        ignored("subscription_exploded", e, [ev(subscriptionType="deal.exploded")]),
        *bad_auth(e, base),
    ]


def _pipedrive_deal(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = fixture("pipedrive", "v2_create_deal.json")
    body["data"].update(changes)
    return body


def pipedrive() -> list[Hostile]:
    """Pipedrive: v1/v2 webhook objects, HTTP basic auth."""
    e, deal = "pipedrive", _pipedrive_deal
    base = dumps(deal())
    meta_list = {**deal(), "meta": ["not", "an", "object"]}
    spaceship = deal()
    spaceship["meta"]["entity"] = "spaceship"
    return [
        *common(e, base, b'"EUR"', ("json", "utf", "currency")),
        refused("wrong_types", "body_array", e, [deal()], "body"),
        refused("wrong_types", "meta_list", e, meta_list, "meta"),
        refused("wrong_types", "deal_id_list", e, deal(id=[8]), "data.id"),
        refused("wrong_types", "deal_id_true", e, deal(id=True), "data.id"),
        refused("wrong_types", "value_text", e, deal(value="lots"), "value"),
        refused("float_money", "value_too_precise", e, deal(value=100.005), "value"),
        refused("float_money", "value_negative", e, deal(value=-100), "value"),
        refused(
            "float_money",
            "value_1e400",
            e,
            base.replace(b'"value": 100', b'"value": 1e400'),
            "value",
        ),
        refused("naive_timestamp", "impossible", e, deal(add_time="2026-13-45T99:00Z"), "add_time"),
        refused("naive_timestamp", "not_a_time", e, deal(add_time="yesterday"), "add_time"),
        ignored("entity_spaceship", e, spaceship),
        *bad_auth(e, base),
    ]


def _segment_track(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = fixture("segment", "track.json")
    body["context"]["campaign"] = {"name": "hostile-utm", "medium": "cpc"}
    body.update(changes)
    return body


def segment() -> list[Hostile]:
    """Segment: one message per request, X-Signature (HMAC-SHA1)."""
    e, track = "segment", _segment_track
    base = dumps(track())
    return [
        *common(e, base, b'"hostile-utm"', ("utf",)),
        refused("wrong_types", "batch_array", e, [track()], "body"),
        refused("wrong_types", "message_id_number", e, track(messageId=42), "messageid"),
        refused("wrong_types", "context_string", e, track(context="ctx"), "context"),
        refused("wrong_types", "user_id_object", e, track(userId={"id": 1}), "userid"),
        refused(
            "naive_timestamp", "impossible", e, track(timestamp="2026-02-30T10:00"), "timestamp"
        ),
        refused("naive_timestamp", "as_number", e, track(timestamp=1772359200), "timestamp"),
        refused(
            "naive_timestamp", "year_0001", e, track(timestamp="0001-01-01T00:00Z"), "timestamp"
        ),
        ignored("type_exploded", e, track(type="exploded")),
        *bad_auth(e, base),
    ]


JSON_ENDPOINTS: dict[str, Callable[[], list[Hostile]]] = {
    "events": lambda: canonical("events"),
    "generic": lambda: canonical("generic"),
    "hubspot": hubspot,
    "pipedrive": pipedrive,
    "segment": segment,
}
