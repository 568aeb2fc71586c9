"""Ingest body parsing and webhook signatures: pure functions, no broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.core.http import Problem
from services.ingest.parsing import parse_events
from services.ingest.routes.webhooks import sign, signature_matches


def touch(n: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"t{n}",
        "type": "touch",
        "occurred_at": "2024-03-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": f"p{n}",
        **fields,
    }


def rejected(body: Any, *, max_events: int = 5000, raw: bytes | None = None) -> Problem:
    with pytest.raises(Problem) as caught:
        parse_events(raw if raw is not None else orjson.dumps(body), max_events=max_events)
    return caught.value


def fields(problem: Problem) -> list[str]:
    assert problem.status == 422
    return [e["field"] for e in problem.errors or []]


def test_single_event_and_batch() -> None:
    [one] = parse_events(orjson.dumps(touch()), max_events=10)
    assert one.type == "touch"
    many = parse_events(orjson.dumps({"events": [touch(n) for n in range(10)]}), max_events=10)
    assert [e.event_id for e in many] == [f"t{n}" for n in range(10)]


def test_batch_errors_name_index_and_field_without_the_union_tag() -> None:
    batch = [touch(n) for n in range(6)]
    batch[1] = {
        "event_id": "d",
        "type": "deal.created",
        "occurred_at": "2024-03-01T10:00:00Z",
        "deal_id": "d1",
        "account_id": "a1",
        "amount": 10.5,
        "currency": "USD",
    }
    batch[2] = {k: v for k, v in touch(2).items() if k != "type"}
    batch[3] = touch(3, type="touch.v2")
    batch[4] = touch(4, contact_id=None)
    batch[5] = 42
    problem = rejected({"events": batch})
    assert fields(problem) == [
        "events[1].amount",
        "events[2].type",
        "events[3].type",
        "events[4]",
        "events[5]",
    ]
    assert all(e["type"] and e["problem"] for e in problem.errors or [])
    assert "deal.created" in problem.errors[2]["problem"]  # lists the known types
    assert "Value error" not in problem.errors[0]["problem"]
    assert "events[1].amount" in problem.detail


def test_single_event_errors_are_rooted_at_the_body() -> None:
    assert fields(rejected(touch(occurred_at="2024-03-01T10:00:00", extra=1))) == [
        "occurred_at",
        "extra",
    ]
    assert fields(rejected({"event_id": "x"})) == ["type"]
    assert fields(rejected(touch(contact_id=None))) == ["body"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": "nope"}, "events"),
        ({"events": [touch()], "batch_id": 1}, "batch_id"),
        ([touch()], "body"),
        ("touch", "body"),
        (None, "body"),
    ],
)
def test_body_shapes(body: Any, field: str) -> None:
    assert fields(rejected(body)) == [field]


def test_batch_limit() -> None:
    assert parse_events(orjson.dumps({"events": [touch(n) for n in range(3)]}), max_events=3)
    problem = rejected({"events": [touch(n) for n in range(4)]}, max_events=3)
    assert fields(problem) == ["events"]
    assert "at most 3" in problem.errors[0]["problem"]


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff", b'{"a": NaN}', b"[1,]", b'{"a": 1} x'])
def test_malformed_json_is_400(raw: bytes) -> None:
    problem = rejected(None, raw=raw)
    assert problem.status == 400


def test_every_invalid_event_is_reported() -> None:
    problem = rejected({"events": [touch(n, campaign_id=n) for n in range(50)]})
    assert len(problem.errors or []) == 50
    assert "and 45 more" in problem.detail


def test_signatures() -> None:
    body = b'{"events": []}'
    good = sign("secret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert signature_matches("secret", body, good)
    assert signature_matches("secret", body, good.upper().replace("SHA256=", "sha256="))
    assert not signature_matches("secret", body + b" ", good)
    assert not signature_matches("other", body, good)
    assert not signature_matches("secret", body, None)
    assert not signature_matches("secret", body, good[7:])
    assert not signature_matches("secret", body, "sha256=\u00e9")
