"""Request and response bodies of the lead definitions and the MQL list (contract §6, §7).

A definition is written and read in the contract's shape: the conditions nested under
``mql`` (``{"mql": {"min_score": 0.25, "min_grade": "B", "required_attributes": ["title"]},
"sales_ready_stages": [...]}``); ``services.domain.leads`` says what each condition means.
Unknown fields are refused everywhere, so a misspelt condition is a 422, never ignored.
Timestamps are RFC 3339 UTC with ``Z``. The MQL list's CSV is its rows (``next_offset`` is
left out, like totals).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from services.api.rendering import Table, table
from services.core.fields import Text
from services.domain.leads import (
    MAX_REQUIRED_ATTRIBUTES,
    REQUIRED_ATTRIBUTE,
    LeadRule,
)

# The same values as the domain's GRADES and SALES_READY_CHOICES (a unit test checks it).
Grade = Literal["A", "B", "C", "D"]
SalesReadyStage = Literal["mql", "sql", "opportunity", "customer"]
RequiredAttribute = Annotated[
    str, StringConstraints(strict=True, pattern=f"^{REQUIRED_ATTRIBUTE.pattern}$")
]
MinScore = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]


class MqlRuleIn(BaseModel):
    """The conditions an account must meet; an absent or null one is no condition."""

    model_config = ConfigDict(extra="forbid")

    min_score: MinScore | None = Field(
        default=None, description="score at least this (0..1); no score yet fails it"
    )
    min_grade: Grade | None = Field(
        default=None, description="grade this or better (A > B > C > D); no grade yet fails it"
    )
    required_attributes: list[RequiredAttribute] = Field(
        default_factory=list,
        max_length=MAX_REQUIRED_ATTRIBUTES,
        description="keys that must have a non-empty value: `key` on the account or any of "
        "its contacts, `account.key` on the account, `contact.key` on one of its contacts",
    )


class LeadDefinitionIn(BaseModel):
    """A new version of a named lead definition, and whether it is the active one."""

    model_config = ConfigDict(extra="forbid")

    mql: MqlRuleIn
    sales_ready_stages: list[SalesReadyStage] = Field(
        default_factory=lambda: list(get_args(SalesReadyStage)),
        min_length=1,
        description="the lifecycle stages that count as sales-ready",
    )
    note: Annotated[Text, StringConstraints(max_length=2000)] = Field(
        default="", description="why this version (kept with it)"
    )
    active: StrictBool | None = Field(
        default=None,
        description="true: make this the active definition (the only one); false: if it is "
        "the active one, no definition is active any more; absent: unchanged",
    )


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class MqlRuleOut(_Out):
    min_score: float | None
    min_grade: str | None
    required_attributes: list[str]


class LeadRuleOut(_Out):
    mql: MqlRuleOut
    sales_ready_stages: list[str]

    @classmethod
    def of(cls, rule: LeadRule) -> LeadRuleOut:
        """Show a domain rule in the contract's shape."""
        return cls(
            mql=MqlRuleOut(
                min_score=rule.min_score,
                min_grade=rule.min_grade,
                required_attributes=list(rule.required_attributes),
            ),
            sales_ready_stages=list(rule.sales_ready_stages),
        )


class LeadDefinitionVersionOut(_Out):
    version: int
    rule: LeadRuleOut
    note: str
    created_at: str
    created_by: str = Field(description="the name of the API key that stored this version")


class LeadDefinitionOut(_Out):
    id: str
    active: bool
    version: int = Field(description="the latest version, the one in force")
    rule: LeadRuleOut = Field(description="the latest version's rule")
    versions: list[LeadDefinitionVersionOut] = Field(description="every version, oldest first")


class LeadDefinitionsOut(_Out):
    active: str | None = Field(description="the active definition's id; null: none is active")
    definitions: list[LeadDefinitionOut]


class MqlOut(_Out):
    event_id: str
    contact_id: str
    account_id: str
    definition_id: str
    version: int
    episode: int
    qualified_at: str
    score: float | None = Field(description="the account's score when it qualified")
    grade: str | None = Field(description="the account's grade when it qualified")
    published: bool = Field(description="whether the broker acknowledged the mql event")


class MqlsOut(_Out):
    since: str | None
    until: str | None
    rows: list[MqlOut]
    next_offset: int | None = Field(description="the next page's offset; null on the last page")


_MQL_FIELDS = list(MqlOut.model_fields)


@table.register
def _mqls(body: MqlsOut) -> Table:
    rows: list[list[Any]] = [[getattr(r, k) for k in _MQL_FIELDS] for r in body.rows]
    return _MQL_FIELDS, rows
