"""Lead definitions' rules (contract §7) and whether an account meets one.

A rule's conditions are each optional; an account meets the rule when all that are set hold:

- ``min_score``: the account's score (the probability, from the latest Markov fit, that its
  open journey ends in a won deal) is at least ``min_score``. No score (no fit yet) fails it.
- ``min_grade``: the account's grade is ``min_grade`` or better (``A`` > ``B`` > ``C`` >
  ``D``). No grade (nothing learned yet) fails it.
- ``required_attributes``: each listed attribute is present. A plain key (``title``) is met by
  the account's own attribute or by any of its contacts'; ``account.<key>`` only by the
  account's own, ``contact.<key>`` only by one of its contacts'. Present means its latest value
  is not empty (a CRM clears a field by sending ``""``): see ``present_keys``.

``sales_ready_stages`` is not a condition: it says which lifecycle stages count as sales-ready
(a non-empty subset of ``mql``, ``sql``, ``opportunity``, ``customer``), see ``is_sales_ready``.

Stored form (``lead_definitions.rule``): a flat JSON object with the four fields, attributes
sorted without duplicates and stages in funnel order without duplicates, so two equal rules
have the same text (``rule_to_json``) and "is this rule new?" is a text comparison.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GRADES = ("A", "B", "C", "D")  # best first
SALES_READY_CHOICES = ("mql", "sql", "opportunity", "customer")  # funnel order
OWNERS = ("account", "contact")
# An attribute key as events carry it (``services.core.events.AttributeName``), optionally
# prefixed with the kind of owner that must hold it.
REQUIRED_ATTRIBUTE = re.compile(r"(?:(?:account|contact)\.)?[a-z][a-z0-9_]{0,49}")
MAX_REQUIRED_ATTRIBUTES = 50


class InvalidLeadRule(ValueError):
    """A rule that breaks one of the rules above (score out of range, unknown grade, ...)."""


@dataclass(frozen=True)
class LeadRule:
    """What makes an account sales-ready, in canonical form (see ``make_rule``)."""

    min_score: float | None = None
    min_grade: str | None = None
    required_attributes: tuple[str, ...] = ()
    sales_ready_stages: tuple[str, ...] = SALES_READY_CHOICES


def make_rule(
    *,
    min_score: float | None = None,
    min_grade: str | None = None,
    required_attributes: Iterable[str] = (),
    sales_ready_stages: Iterable[str] = SALES_READY_CHOICES,
) -> LeadRule:
    """Check and canonicalise a rule, or raise InvalidLeadRule naming what is wrong."""
    if min_score is not None:
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            raise InvalidLeadRule(f"min_score must be a number, not {min_score!r}")
        if not math.isfinite(min_score) or not 0 <= min_score <= 1:
            raise InvalidLeadRule(f"min_score must be between 0 and 1, not {min_score!r}")
        min_score = float(min_score)
    if min_grade is not None and min_grade not in GRADES:
        raise InvalidLeadRule(f"min_grade must be one of {', '.join(GRADES)}, not {min_grade!r}")
    attributes = sorted(set(required_attributes))
    for key in attributes:
        if not isinstance(key, str) or not REQUIRED_ATTRIBUTE.fullmatch(key):
            raise InvalidLeadRule(f"{key!r} is not an attribute key")
    if len(attributes) > MAX_REQUIRED_ATTRIBUTES:
        raise InvalidLeadRule(f"at most {MAX_REQUIRED_ATTRIBUTES} required attributes")
    stages = set(sales_ready_stages)
    unknown = sorted(str(s) for s in stages - set(SALES_READY_CHOICES))
    if unknown or not stages:
        raise InvalidLeadRule(
            f"sales_ready_stages must be a non-empty subset of {', '.join(SALES_READY_CHOICES)}"
        )
    return LeadRule(
        min_score,
        min_grade,
        tuple(attributes),
        tuple(s for s in SALES_READY_CHOICES if s in stages),
    )


def rule_to_json(rule: LeadRule) -> str:
    """Serialise a rule to its stored text (equal rules give equal text)."""
    return json.dumps(rule_fields(rule), sort_keys=True, separators=(",", ":"))


def rule_fields(rule: LeadRule) -> dict[str, Any]:
    """Return the rule's four fields as a JSON-ready dict."""
    return {
        "min_score": rule.min_score,
        "min_grade": rule.min_grade,
        "required_attributes": list(rule.required_attributes),
        "sales_ready_stages": list(rule.sales_ready_stages),
    }


def rule_from_json(text: str) -> LeadRule:
    """Parse a stored rule (absent fields take their defaults), or raise InvalidLeadRule."""
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidLeadRule("a stored rule is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidLeadRule("a stored rule is not a JSON object")
    stages = data.get("sales_ready_stages")
    return make_rule(
        min_score=data.get("min_score"),
        min_grade=data.get("min_grade"),
        required_attributes=data.get("required_attributes") or (),
        sales_ready_stages=SALES_READY_CHOICES if stages is None else stages,
    )


def present_keys(
    account: Mapping[str, str], contacts: Iterable[Mapping[str, str]] = ()
) -> frozenset[str]:
    """Return the owner-qualified keys (``account.k``, ``contact.k``) with a non-empty value.

    ``account`` is the account's own attributes, ``contacts`` each of its contacts' (after
    merges), as key -> latest value.
    """
    keys = {f"account.{k}" for k, v in account.items() if v != ""}
    for attributes in contacts:
        keys.update(f"contact.{k}" for k, v in attributes.items() if v != "")
    return frozenset(keys)


def _has(required: str, attribute_keys: frozenset[str] | set[str]) -> bool:
    if "." in required:
        return required in attribute_keys
    return any(f"{owner}.{required}" in attribute_keys for owner in OWNERS)


def meets(
    rule: LeadRule,
    *,
    score: float | None,
    grade: str | None,
    attribute_keys: frozenset[str] | set[str],
) -> tuple[bool, list[str]]:
    """Return whether an account meets ``rule`` and, if not, every reason why not.

    ``attribute_keys`` are owner-qualified (``account.title``, ``contact.title``), as
    ``present_keys`` returns them.
    """
    reasons: list[str] = []
    if rule.min_score is not None:
        if score is None:
            reasons.append(f"no score yet (needs {rule.min_score})")
        elif score < rule.min_score:
            reasons.append(f"score {score} < {rule.min_score}")
    if rule.min_grade is not None:
        if grade is None:
            reasons.append(f"no grade yet (needs {rule.min_grade})")
        elif not grade_at_least(grade, rule.min_grade):
            reasons.append(f"grade {grade} below {rule.min_grade}")
    reasons.extend(
        f"missing attribute {key}"
        for key in rule.required_attributes
        if not _has(key, attribute_keys)
    )
    return not reasons, reasons


def is_sales_ready(rule: LeadRule, stage: str | None) -> bool:
    """Return whether a contact at lifecycle ``stage`` counts as sales-ready under ``rule``."""
    return stage is not None and stage in rule.sales_ready_stages


def grade_at_least(grade: str, minimum: str) -> bool:
    """Return whether ``grade`` is ``minimum`` or better (``A`` is best; unknown is worst)."""
    return grade in GRADES and GRADES.index(grade) <= GRADES.index(minimum)
