"""Ingest body parsing and webhook signatures: pure functions, no broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.core.http import Problem
from services.ingest.parsing import parse_events


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
        "events[4].contact_id",
        "events[4].account_id",
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
    assert fields(rejected(touch(contact_id=None))) == ["contact_id", "account_id"]


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


# -- amounts and rates: the grammar of contract §1 (issue 9, item 8) --------------------------

DEAL = {
    "event_id": "d1",
    "type": "deal.created",
    "occurred_at": "2024-03-01T10:00:00Z",
    "deal_id": "D1",
    "account_id": "A1",
    "currency": "USD",
}
RATE = {
    "event_id": "fx1",
    "type": "fx.rate",
    "occurred_at": "2024-03-01T10:00:00Z",
    "date": "2024-03-01",
    "base": "EUR",
    "quote": "USD",
}
GRAMMAR = "not a plain decimal string"
NOT_DECIMAL_STRINGS = [
    "１００",  # fullwidth digits
    "٥٠",  # Arabic-Indic digits
    "१००",  # Devanagari digits
    "²",  # a superscript: str.isdigit() says yes
    "+5.00",
    "-5.00",
    ".5",
    "5.",
    "5..0",
    "5.0.0",
    "1e3",
    "1E3",
    "1_000",
    "5,00",
    " 5",
    "5 ",
    "5\n",
    "",
    ".",
    "NaN",
    "Infinity",
    "0x10",
    "5٫00",  # Arabic decimal separator
]


@pytest.mark.parametrize("text", NOT_DECIMAL_STRINGS)
def test_amounts_outside_the_grammar_are_refused_at_amount(text: str) -> None:
    problem = rejected({**DEAL, "amount": text})
    assert problem.errors == [
        {"field": "amount", "problem": problem.errors[0]["problem"], "type": "value_error"}
    ]
    assert GRAMMAR in problem.errors[0]["problem"]
    assert repr(text) in problem.errors[0]["problem"]  # says which string


@pytest.mark.parametrize("text", NOT_DECIMAL_STRINGS)
def test_rates_outside_the_grammar_are_refused_at_rate(text: str) -> None:
    batch = {"events": [touch(0), {**RATE, "rate": text}]}
    problem = rejected(batch)
    assert fields(problem) == ["events[1].rate"]
    assert GRAMMAR in problem.errors[0]["problem"]


@pytest.mark.parametrize("number", [5, 5.0, 12500.5, True, ["5"], {"v": "5"}])
def test_amounts_that_are_not_strings_are_refused(number: Any) -> None:
    problem = rejected({**DEAL, "amount": number})
    assert fields(problem) == ["amount"]
    assert "decimal string" in problem.errors[0]["problem"]


@pytest.mark.parametrize("rate", ["0", "0.0", "0.0000000000", "0.0000000001"])
def test_a_rate_must_be_more_than_zero(rate: str) -> None:
    problem = rejected({**RATE, "rate": rate})
    assert fields(problem) == ["rate"]
    assert "more than 0" in problem.errors[0]["problem"]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("0", "USD", 0),
        ("0.00", "USD", 0),
        ("12500.00", "USD", 1_250_000),
        ("12500", "USD", 1_250_000),
        ("007.50", "USD", 750),
        ("12.500", "USD", 1250),  # trailing zeros beyond the exponent are fine
        ("0.01", "USD", 1),
        ("125000", "JPY", 125_000),
        ("1.125", "KWD", 1125),
        ("9999999999999.99", "USD", 999_999_999_999_999),
    ],
)
def test_amounts_in_the_grammar_are_parsed_exactly(amount: str, currency: str, minor: int) -> None:
    from services.core.money import to_minor

    [event] = parse_events(
        orjson.dumps({**DEAL, "amount": amount, "currency": currency}), max_events=1
    )
    assert event.amount == amount  # kept as sent
    assert to_minor(event.amount, event.currency) == minor


@pytest.mark.parametrize("rate", ["1.0841", "0.000000001", "1000000000", "149.5"])
def test_rates_in_the_grammar_are_accepted(rate: str) -> None:
    [event] = parse_events(orjson.dumps({**RATE, "rate": rate}), max_events=1)
    assert event.rate == rate


# -- copies of one event_id in a request (issue 9, item 5) ------------------------------------


def test_conflicting_copies_in_a_batch_are_refused_at_the_later_copy() -> None:
    batch = [touch(n) for n in range(5)]
    batch[3] = touch(1, campaign_id="c2")  # t1 again, another campaign
    problem = rejected({"events": batch})
    assert problem.errors == [
        {
            "field": "events[3].event_id",
            "type": "event_id_conflict",
            "problem": problem.errors[0]["problem"],
        }
    ]
    assert "events[1]" in problem.errors[0]["problem"]
    # Whichever copy comes first: refused the same way, never chosen by arrival order.
    batch[1], batch[3] = batch[3], batch[1]
    assert fields(rejected({"events": batch})) == ["events[3].event_id"]


def test_every_conflicting_copy_is_named() -> None:
    batch = [touch(0), touch(0, lead_created=True), touch(0), touch(0, source="hubspot")]
    assert fields(rejected({"events": batch})) == ["events[1].event_id", "events[3].event_id"]


def test_identical_copies_are_accepted_as_duplicates() -> None:
    # Same content, also when spelled differently: the same instant in another offset.
    same_instant = touch(1, occurred_at="2024-03-01T12:00:00+02:00")
    batch = [touch(0), touch(1), touch(0), same_instant]
    events = parse_events(orjson.dumps({"events": batch}), max_events=10)
    assert [e.event_id for e in events] == ["t0", "t1", "t0", "t1"]


def test_a_carried_null_is_content() -> None:
    # "account_id": null is carried (it clears the account); absent is not: not the same event.
    batch = [touch(0), touch(0, account_id=None)]
    assert fields(rejected({"events": batch})) == ["events[1].event_id"]


# -- bounded work for hostile bodies -----------------------------------------------------------


def test_an_object_with_too_many_fields_is_refused_before_validation() -> None:
    wide = touch(0, **{f"x{i}": i for i in range(100_000)})
    problem = rejected({"events": [touch(1), wide]})
    assert fields(problem) == ["events[1]"]
    assert "at most 32" in problem.errors[0]["problem"]
    assert fields(rejected(wide)) == ["body"]


def test_a_422_lists_at_most_1000_errors_and_says_how_many() -> None:
    # 4 errors each: event_id, occurred_at, campaign_id missing; x unknown
    batch = [{"type": "touch", "x": 1} for _ in range(1000)]
    problem = rejected({"events": batch})
    assert len(problem.errors or []) == 1000
    assert "the first 1000 of 4000 errors are listed" in problem.detail
