"""The hostile requests of the hostile-input scenario: what is sent, and what must come back.

Each ``Hostile`` is one request to one ingest endpoint (``events``: ``POST /v1/events`` with a
bearer key; a provider name: ``POST /v1/webhooks/<provider>``), signed with the provider's own
scheme unless its point is the credential, so the hostile body really reaches the parser.
``expect`` is what the service must answer: ``refused`` (a 4xx among ``statuses``, whose body
names at least one of ``names``, case-insensitively: the field or the problem), or ``ignored``
(a provider event that means nothing for attribution, which each provider's contract says to
acknowledge and drop: 2xx with nothing accepted). Nothing of any of them may be stored.

Here: what every JSON endpoint gets, and the canonical cases (``/v1/events``, ``generic``);
``chaos.hostile_providers`` adds HubSpot, Pipedrive and Segment, ``chaos.hostile_xml`` the
Salesforce (XML) and oversized-head cases. Valid bases come from the recorded provider
fixtures (``tests/fixtures/webhooks``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "webhooks"
JSON = "application/json"
BODY_LIMIT = 10 * 1024 * 1024  # the ingest default (CLOSEDLOOP_MAX_BODY_BYTES)
# What each JSON endpoint must accept at most: HubSpot, Pipedrive and Segment post small
# deliveries (at most 100 events, one object, one 32 KB message), so they get 1 MiB.
SMALL = 1 << 20
LIMITS = {"events": BODY_LIMIT, "generic": BODY_LIMIT, "hubspot": SMALL, "pipedrive": SMALL}
LIMITS["segment"] = SMALL
DEEP = 100_000  # levels of nesting of the deep bodies


@dataclass(frozen=True)
class Hostile:
    """One hostile request and the answer it must get."""

    category: str
    name: str
    endpoint: str  # "events" or a webhook provider
    body: bytes
    content_type: str = JSON
    names: tuple[str, ...] = ()  # the answer names one of these (lower case)
    statuses: tuple[int, ...] = (400, 422)
    expect: str = "refused"  # or "ignored"
    sign: bool = True  # sign with the endpoint's own scheme (False: send ``headers`` only)
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send without Content-Length (Transfer-Encoding: chunked)


def dumps(value: Any) -> bytes:
    """Encode JSON as a sender would (``json.dumps``: floats stay floats)."""
    return json.dumps(value).encode()


def fixture(provider: str, name: str) -> Any:
    """Return a recorded provider payload (parsed JSON)."""
    return json.loads((FIXTURES / provider / name).read_text())


def deep_array(levels: int = DEEP) -> bytes:
    return b"[" * levels + b"]" * levels


def deep_object(levels: int = DEEP) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def canonical_touch(**changes: Any) -> dict[str, Any]:
    """A valid canonical touch (the base every canonical hostile body changes)."""
    event = {
        "event_id": "hostile-touch-1",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": "hostile-campaign",
        "contact_id": "hostile-contact",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def canonical_deal(**changes: Any) -> dict[str, Any]:
    event = {
        "event_id": "hostile-deal-1",
        "type": "deal.created",
        "occurred_at": "2026-03-01T10:00:00Z",
        "deal_id": "hostile-deal",
        "account_id": "hostile-account",
        "amount": "12500.00",
        "currency": "USD",
    }
    event.update(changes)
    return event


def refused(category: str, name: str, endpoint: str, body: Any, *names: str) -> Hostile:
    """A JSON body (``body`` encoded unless bytes) the endpoint must refuse 400 or 422."""
    raw = body if isinstance(body, bytes) else dumps(body)
    return Hostile(category, name, endpoint, raw, names=names)


def ignored(name: str, endpoint: str, body: Any) -> Hostile:
    """A provider event of an unknown type, which the provider's contract says to ignore."""
    return Hostile("unknown_type", name, endpoint, dumps(body), expect="ignored")


def common(endpoint: str, base: bytes, text: bytes, utf_names: tuple[str, ...]) -> list[Hostile]:
    """Bodies every JSON endpoint must refuse, whatever its payload format.

    ``text`` is a quoted string value of ``base`` (with its quotes) that the invalid UTF-8
    cases corrupt; ``utf_names`` are what the refusal may name (the problem or that field).
    """
    e = endpoint
    big = b'{"events": ["' + b"x" * (LIMITS[e] + 1024) + b'"]}'

    def too_large(name: str, chunked: bool) -> Hostile:
        return Hostile(
            "huge_body", name, e, big, statuses=(413,), names=("exceeds",), chunked=chunked
        )

    def corrupt(name: str, raw: bytes, *more: str) -> Hostile:
        body = base.replace(text, text[:2] + raw + text[2:], 1)
        return Hostile("invalid_utf8", name, e, body, names=(*utf_names, *more))

    return [
        *amplification(e),
        refused("malformed_json", "truncated", e, base[: len(base) // 2], "json"),
        refused("malformed_json", "trailing_garbage", e, base + b"}{", "json"),
        refused("malformed_json", "single_quotes", e, b"{'type': 'touch'}", "json"),
        refused("malformed_json", "nan_literal", e, b'{"a": NaN}', "json", "nan"),
        refused("malformed_json", "empty_body", e, b"", "json"),
        too_large("over_limit_declared", chunked=False),
        too_large("over_limit_chunked", chunked=True),
        refused("deep_nesting", "arrays_100k", e, deep_array(), "json", "body"),
        refused("deep_nesting", "objects_100k", e, deep_object(), "json", "body"),
        corrupt("byte_ff", b"\xff"),
        corrupt("overlong_slash", b"\xc0\xaf"),
        corrupt("surrogate_bytes", b"\xed\xa0\x80"),
        corrupt("escaped_lone_surrogate", b"\\ud800", "surrogate"),
        Hostile(
            "media_type",
            "text_plain",
            e,
            base,
            content_type="text/plain",
            statuses=(415,),
            names=("content-type",),
        ),
    ]


def amplification(endpoint: str) -> list[Hostile]:
    """Bodies just under the endpoint's size limit made of millions of tiny values.

    10 MB of them parse into hundreds of MB of objects; each is refused for its shape, after
    the cost of parsing it was paid.
    """
    room = LIMITS[endpoint] - 64
    field_of = {"hubspot": None, "pipedrive": b"meta", "segment": b"type"}
    name = field_of.get(endpoint, b"events")
    start, end = (b"[", b"]") if name is None else (b'{"' + name + b'": [', b"]}")
    shapes = {"empty_objects": b"{}", "decimals": b"1.5", "strings": b'"a"'}
    return [
        refused(
            "amplification",
            shape,
            endpoint,
            start + b",".join([item] * (room // (len(item) + 1))) + end,
            "events",
            "[0]",
            "meta",
            "type",
            "body",
        )
        for shape, item in shapes.items()
    ]


def canonical(endpoint: str) -> list[Hostile]:
    """Canonical events (``/v1/events`` and the generic webhook): the contract's own rules."""
    touch, deal = canonical_touch, canonical_deal
    table: list[tuple[str, str, Any, str]] = [
        ("wrong_types", "type_as_list", touch(type=["touch"]), "type"),
        ("wrong_types", "event_id_number", touch(event_id=123), "event_id"),
        ("wrong_types", "occurred_at_number", touch(occurred_at=1772359200), "occurred_at"),
        ("wrong_types", "events_object", {"events": {"0": touch()}}, "events"),
        ("wrong_types", "contact_ids_string", deal(contact_ids="p1"), "contact_ids"),
        ("wrong_types", "batch_of_scalars", {"events": [1, "x", None, True]}, "events[0]"),
        ("float_money", "amount_number", deal(amount=12500.0), "amount"),
        ("float_money", "amount_exponent", deal(amount="1.25e4"), "amount"),
        ("float_money", "amount_too_precise", deal(amount="12500.001"), "amount"),
        ("float_money", "amount_negative", deal(amount="-5.00"), "amount"),
        ("float_money", "amount_huge", deal(amount="9" * 40), "amount"),
        ("naive_timestamp", "no_offset", touch(occurred_at="2026-03-01T10:00:00"), "occurred_at"),
        ("naive_timestamp", "date_only", touch(occurred_at="2026-03-01"), "occurred_at"),
        ("naive_timestamp", "year_9999", touch(occurred_at="9999-12-31T23:59:59Z"), "occurred_at"),
        ("unknown_type", "deal_exploded", touch(type="deal.exploded"), "type"),
        ("unknown_type", "type_missing", touch(type=...), "type"),
        ("schema", "too_many_events", {"events": [touch()] * 5001}, "events"),
        ("schema", "event_id_1mb", touch(event_id="x" * 1_000_000), "event_id"),
        ("schema", "forty_fields", touch(**{f"x{i}": i for i in range(40)}), "fields"),
        (
            "schema",
            "conflicting_copies",
            {"events": [touch(), touch(campaign_id="c2")]},
            "event_id",
        ),
        ("schema", "nul_character", touch(campaign_id="c\u0000"), "campaign_id"),
    ]
    base = dumps(touch())
    return [
        *common(endpoint, base, b'"hostile-campaign"', ("utf", "unicode", "campaign_id")),
        *(refused(category, name, endpoint, body, field) for category, name, body, field in table),
        *bad_auth(endpoint, base),
    ]


def bad_auth(endpoint: str, body: bytes) -> list[Hostile]:
    """Missing, wrong and stale credentials in each endpoint's own scheme: 401 naming it."""
    now, stale = str(int(time.time())), str(int(time.time()) - 3600)
    standard = {"webhook-id": "msg_1", "webhook-signature": "v1,AAAA"}
    cases: dict[str, dict[str, dict[str, str]]] = {
        "events": {
            "unknown_key": {"Authorization": "Bearer cl_" + "0" * 40},
            "basic_scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        },
        "generic": {
            "wrong_signature": {**standard, "webhook-timestamp": now},
            "stale_timestamp": {**standard, "webhook-timestamp": stale},
        },
        "hubspot": {
            "v1_only": {"X-HubSpot-Signature": "0" * 64},
            "stale_timestamp": {
                "X-HubSpot-Signature-v3": "AAAA",
                "X-HubSpot-Request-Timestamp": stale + "000",
            },
        },
        "pipedrive": {"wrong_password": {"Authorization": "Basic Y2hhb3M6d3Jvbmc="}},
        "segment": {"wrong_signature": {"X-Signature": "0" * 40}},
    }
    names = {
        "events": ("key", "bearer", "authorization"),
        "generic": ("webhook-",),
        "hubspot": ("x-hubspot",),
        "pipedrive": ("authorization", "basic"),
        "segment": ("x-signature",),
    }[endpoint]
    return [
        Hostile(
            "bad_auth",
            name,
            endpoint,
            body,
            names=names,
            statuses=(401,),
            sign=False,
            headers=headers,
        )
        for name, headers in {"missing": {}, **cases[endpoint]}.items()
    ]
