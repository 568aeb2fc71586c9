"""Lead rules: canonical form, stored JSON, and whether an account meets a rule (and why not)."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.lead_schemas import Grade, SalesReadyStage
from services.domain.leads import (
    GRADES,
    SALES_READY_CHOICES,
    InvalidLeadRule,
    LeadRule,
    grade_at_least,
    is_sales_ready,
    make_rule,
    meets,
    present_keys,
    rule_from_json,
    rule_to_json,
)

RULE = make_rule(min_score=0.25, min_grade="B", required_attributes=["title"])
TITLED = {"account.title"}


def test_the_api_offers_the_domain_values() -> None:
    assert get_args(Grade) == ("A", "B", "C", "D") == GRADES
    assert get_args(SalesReadyStage) == ("mql", "sql", "opportunity", "customer")
    assert SALES_READY_CHOICES == ("mql", "sql", "opportunity", "customer")


def test_canonical_form() -> None:
    rule = make_rule(
        min_score=1,
        required_attributes=["title", "contact.seniority", "title", "industry"],
        sales_ready_stages=["customer", "sql", "sql"],
    )
    assert rule == LeadRule(
        min_score=1.0,
        min_grade=None,
        required_attributes=("contact.seniority", "industry", "title"),
        sales_ready_stages=("sql", "customer"),
    )
    assert isinstance(rule.min_score, float)
    assert make_rule() == LeadRule(None, None, (), ("mql", "sql", "opportunity", "customer"))


def test_stored_json_round_trips_and_equal_rules_have_equal_text() -> None:
    text = rule_to_json(RULE)
    assert json.loads(text) == {
        "min_score": 0.25,
        "min_grade": "B",
        "required_attributes": ["title"],
        "sales_ready_stages": ["mql", "sql", "opportunity", "customer"],
    }
    assert rule_from_json(text) == RULE
    same = make_rule(
        min_grade="B",
        min_score=0.25,
        required_attributes=("title", "title"),
        sales_ready_stages=["customer", "opportunity", "sql", "mql"],
    )
    assert rule_to_json(same) == text
    # Absent fields take their defaults.
    assert rule_from_json('{"min_grade": "C"}') == LeadRule(None, "C", (), SALES_READY_CHOICES)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_score": 1.5}, "min_score must be between 0 and 1"),
        ({"min_score": -0.01}, "min_score must be between 0 and 1"),
        ({"min_score": float("nan")}, "min_score must be between 0 and 1"),
        ({"min_score": True}, "min_score must be a number"),
        ({"min_score": "0.3"}, "min_score must be a number"),
        ({"min_grade": "E"}, "min_grade must be one of A, B, C, D"),
        ({"min_grade": "a"}, "min_grade must be one of A, B, C, D"),
        ({"required_attributes": ["Title"]}, "'Title' is not an attribute key"),
        ({"required_attributes": ["deal.amount"]}, "'deal.amount' is not an attribute key"),
        ({"required_attributes": ["a" * 51]}, "is not an attribute key"),
        ({"sales_ready_stages": []}, "sales_ready_stages must be a non-empty subset"),
        ({"sales_ready_stages": ["lead"]}, "sales_ready_stages must be a non-empty subset"),
    ],
)
def test_invalid_rules_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidLeadRule, match=message.replace("(", r"\(")):
        make_rule(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", "[1]", '{"min_grade": "Z"}'])
def test_bad_stored_rules_are_refused(text: str) -> None:
    with pytest.raises(InvalidLeadRule):
        rule_from_json(text)


def test_an_account_that_meets_every_condition() -> None:
    assert meets(RULE, score=0.25, grade="B", attribute_keys=TITLED) == (True, [])
    assert meets(RULE, score=0.9, grade="A", attribute_keys={"contact.title"}) == (True, [])


def test_every_reason_is_listed() -> None:
    assert meets(RULE, score=0.12, grade="C", attribute_keys=set()) == (
        False,
        ["score 0.12 < 0.25", "grade C below B", "missing attribute title"],
    )
    assert meets(RULE, score=0.2499, grade="A", attribute_keys=TITLED) == (
        False,
        ["score 0.2499 < 0.25"],
    )
    assert meets(RULE, score=0.3, grade="D", attribute_keys=TITLED) == (
        False,
        ["grade D below B"],
    )


def test_no_score_or_grade_yet_fails_those_conditions_only() -> None:
    assert meets(RULE, score=None, grade=None, attribute_keys=TITLED) == (
        False,
        ["no score yet (needs 0.25)", "no grade yet (needs B)"],
    )
    attributes_only = make_rule(required_attributes=["title"])
    assert meets(attributes_only, score=None, grade=None, attribute_keys=TITLED) == (True, [])
    assert meets(make_rule(), score=None, grade=None, attribute_keys=set()) == (True, [])


def test_attribute_owners() -> None:
    rule = make_rule(required_attributes=["industry", "account.size", "contact.title"])
    everything = {"account.size", "contact.industry", "contact.title"}
    assert meets(rule, score=None, grade=None, attribute_keys=everything) == (True, [])
    # A contact's size is not the account's; the account's title is not a contact's.
    wrong_owners = {"contact.size", "account.title", "account.industry"}
    assert meets(rule, score=None, grade=None, attribute_keys=wrong_owners) == (
        False,
        ["missing attribute account.size", "missing attribute contact.title"],
    )
    # Keys without an owner prefix are not attribute keys of any owner.
    assert meets(rule, score=None, grade=None, attribute_keys={"industry", "size", "title"}) == (
        False,
        [
            "missing attribute account.size",
            "missing attribute contact.title",
            "missing attribute industry",
        ],
    )


def test_present_keys_skips_empty_values() -> None:
    keys = present_keys(
        {"industry": "saas", "size": ""},
        [{"title": "VP"}, {"title": "", "seniority": "vp"}],
    )
    assert keys == {"account.industry", "contact.title", "contact.seniority"}
    assert present_keys({}) == frozenset()


def test_grade_order_and_sales_ready_stages() -> None:
    assert [g for g in ("A", "B", "C", "D", "E") if grade_at_least(g, "C")] == ["A", "B", "C"]
    late = make_rule(sales_ready_stages=["sql", "opportunity"])
    assert [s for s in ("lead", "mql", "sql", "opportunity", None) if is_sales_ready(late, s)] == [
        "sql",
        "opportunity",
    ]


@given(
    score=st.floats(0, 1),
    minimum=st.floats(0, 1),
    grade=st.sampled_from(GRADES),
    min_grade=st.sampled_from(GRADES),
)
def test_meets_agrees_with_the_plain_comparison(
    score: float, minimum: float, grade: str, min_grade: str
) -> None:
    rule = make_rule(min_score=minimum, min_grade=min_grade)
    ok, reasons = meets(rule, score=score, grade=grade, attribute_keys=set())
    expected = score >= minimum and "ABCD".index(grade) <= "ABCD".index(min_grade)
    assert ok is expected
    assert ok is (reasons == [])
