"""Response bodies of the read API (contract §6).

Money is a decimal string in its currency's exponent; dates are ``YYYY-MM-DD`` and timestamps
RFC 3339 UTC with ``Z``; fractional deal counts and ratios are JSON numbers rounded to 4
decimals; ``from`` is serialised under its own name (a Python keyword, hence ``from_``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from services.domain.models import WEIGHT_KEYS

GroupBy = Literal["campaign", "channel"]
# A model's credits over a report's range: all computed, or some won revenue not credited yet.
ModelStatus = Annotated[
    Literal["ready", "pending"],
    Field(description="pending: some won revenue is not credited by this model yet"),
]


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ModelOut(_Out):
    id: str
    kind: str
    params: dict[str, Any]
    description: str
    builtin: bool


class ModelsOut(_Out):
    models: list[ModelOut]


class SnapshotRefOut(_Out):
    """Which fit of a data-driven model produced some numbers."""

    fit_id: int
    fitted_at: str | None


class RoiCampaignRowOut(_Out):
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    revenue: str
    deals: float
    cost: str
    roi: float | None
    roas: float | None


class RoiChannelRowOut(_Out):
    channel: str | None
    revenue: str
    deals: float
    cost: str
    roi: float | None
    roas: float | None


class RoiTotalsOut(_Out):
    """Revenue and cost over every filtered row (not the page); the rest over the range."""

    revenue: str
    cost: str
    unattributed_revenue: str
    pending_revenue: str = Field(description="won revenue in range the model has not credited yet")


# The order and page of ROI's and compare's rows (``services.api.selection``).
SortText = Annotated[str, Field(description="the order of the rows, as `sort` writes it")]
TotalRows = Annotated[int, Field(description="rows after the filters, over every page")]
Offset = Annotated[int, Field(description="rows skipped before this page")]
Limit = Annotated[int | None, Field(description="the page size asked for; null: every row")]
NextOffset = Annotated[
    int | None, Field(description="the `offset` of the next page; null: this is the last")
]


class RoiReportOut(_Out):
    model: str
    status: ModelStatus
    from_: str | None = Field(alias="from")
    to: str | None
    currency: str
    group_by: GroupBy
    rows: list[RoiCampaignRowOut] | list[RoiChannelRowOut]
    totals: RoiTotalsOut
    sort: SortText
    total_rows: TotalRows
    offset: Offset
    limit: Limit
    next_offset: NextOffset


class CompareCampaignRowOut(_Out):
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    revenue: dict[str, str]
    cost: str


class CompareChannelRowOut(_Out):
    channel: str | None
    revenue: dict[str, str]
    cost: str


class CompareTotalsOut(_Out):
    """Revenue and cost over every filtered row (not the page); the rest over the range."""

    revenue: dict[str, str]
    unattributed_revenue: dict[str, str]
    pending_revenue: dict[str, str]
    cost: str


class RoiSnapshotReportOut(RoiReportOut):
    """The ROI report of a data-driven model: also names the snapshot behind its credits."""

    snapshot: SnapshotRefOut | None


class CompareReportOut(_Out):
    models: list[str]
    status: dict[str, ModelStatus]
    from_: str | None = Field(alias="from")
    to: str | None
    currency: str
    group_by: GroupBy
    rows: list[CompareCampaignRowOut] | list[CompareChannelRowOut]
    totals: CompareTotalsOut
    sort: SortText
    total_rows: TotalRows
    offset: Offset
    limit: Limit
    next_offset: NextOffset
    snapshots: dict[str, SnapshotRefOut | None] = Field(
        default_factory=dict, description="per data-driven model compared: its snapshot"
    )


class UnconvertedOut(_Out):
    count: int
    amounts: dict[str, str]


class ModelReconciliationOut(_Out):
    status: ModelStatus
    attributed: str
    unattributed: str
    pending: str


class ReconciliationOut(_Out):
    currency: str
    from_: str | None = Field(alias="from")
    to: str | None
    closed_won_revenue: str
    won_deals: int
    unconverted: UnconvertedOut
    models: dict[str, ModelReconciliationOut]


class DealOut(_Out):
    deal_id: str
    account_id: str | None
    status: str
    stage: str | None
    amount: str | None
    currency: str | None
    created_at: str | None
    closed_at: str | None
    reporting_amount: str | None
    reporting_currency: str
    conversion: str | None


class JourneyTouchOut(_Out):
    event_id: str
    occurred_at: str | None
    campaign_id: str
    channel: str | None
    roles: list[str]
    weight: float
    credit: str


class DealAttributionOut(_Out):
    deal: DealOut
    model: str
    status: ModelStatus = Field(
        description="pending: the deal is won and converted but this model has not credited it yet"
    )
    unattributed: bool
    journey: list[JourneyTouchOut]


class HealthOut(_Out):
    status: str


class DeadLetterOut(_Out):
    id: int
    topic: str
    partition: int
    offset: int
    error: str
    created_at: str
    retried_at: str | None
    raw: str | None = Field(description="the record's bytes as UTF-8 text; null if not UTF-8")
    raw_base64: str


class DeadLettersOut(_Out):
    dead_letters: list[DeadLetterOut]
    next_after_id: int | None = Field(description="pass as after_id for the next page; null: last")


class DeadLetterRetryOut(_Out):
    id: int
    event_id: str  # the first event republished
    event_ids: list[str]  # every event republished (a batch record's dead letter may hold many)
    republished: bool


class ProgressOut(_Out):
    done: int
    total: int


class MarkovTableRowOut(_Out):
    channel: str
    removal_effect: float
    share: float


class ShapleyTableRowOut(_Out):
    channel: str
    shapley_value: float
    share: float


class TransitionOut(_Out):
    from_: str = Field(alias="from")
    to: str
    count: int
    probability: float


class SnapshotOut(_Out):
    fit_id: int
    fitted_at: str | None
    inputs: dict[str, Any]
    params: dict[str, Any]
    table: list[MarkovTableRowOut] | list[ShapleyTableRowOut]
    conversion_probability: float | None
    transition_summary: list[TransitionOut] | None
    transitions_total: int | None
    exact: bool
    max_error: float


class FitRefOut(_Out):
    id: int
    requested_at: str | None


class FailedFitOut(_Out):
    id: int
    requested_at: str | None
    error: str | None


class ModelDetailOut(ModelOut):
    status: str
    progress: ProgressOut | None
    snapshot: SnapshotOut | None
    pending_fit: FitRefOut | None
    failed_fit: FailedFitOut | None


class FitRequestOut(_Out):
    fit_id: int
    model_id: str
    status: str
    requested_at: str | None


_WEIGHT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:/[0-9]+)?")


def _weight_text(text: str) -> str:
    # No exponent: "1e999999999" must not make the exact arithmetic build a billion-digit
    # number. The domain then rejects negatives, 1/0 and an all-zero model.
    if not _WEIGHT.fullmatch(text):
        raise ValueError('must be a decimal string such as "0.25" or a fraction such as "1/3"')
    return text


WeightText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=60),
    AfterValidator(_weight_text),
    WithJsonSchema({"type": "string", "maxLength": 60, "pattern": f"^{_WEIGHT.pattern}$"}),
]


class ModelDefinitionIn(BaseModel):
    """A custom positional model: role weights as decimal strings (floats are refused)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, WeightText] = Field(
        description="role -> weight; at least one weight above 0, none negative",
        json_schema_extra={"propertyNames": {"enum": list(WEIGHT_KEYS)}, "minProperties": 1},
    )
    description: str = Field(default="", max_length=2000)


class DiffCampaignRowOut(_Out):
    campaign_id: str
    campaign_name: str | None
    channel: str | None
    base_revenue: str
    other_revenue: str
    moved: str
    moved_share: float | None


class DiffChannelRowOut(_Out):
    channel: str | None
    base_revenue: str
    other_revenue: str
    moved: str
    moved_share: float | None


class DiffTotalsOut(_Out):
    base_revenue: str
    other_revenue: str
    moved: str


class CompareDiffOut(_Out):
    base: str
    other: str
    status: dict[str, ModelStatus]
    from_: str | None = Field(alias="from")
    to: str | None
    currency: str
    group_by: GroupBy
    rows: list[DiffCampaignRowOut] | list[DiffChannelRowOut]
    totals: DiffTotalsOut
    snapshots: dict[str, SnapshotRefOut | None]


class ScoreTouchOut(_Out):
    event_id: str
    occurred_at: str | None
    campaign_id: str
    channel: str | None


class AccountScoreOut(_Out):
    account_id: str
    as_of: str
    probability: float
    state: str
    journey: list[ScoreTouchOut]
    snapshot: SnapshotRefOut
    contributions: dict[str, float]


class LeadOut(_Out):
    account_id: str
    probability: float
    grade: str | None = Field(description="A-D from the latest grade fit; null without one")
    raw_grade: float | None = Field(description="the grade's summed log-odds contributions")
    touches: int
    last_touch_at: str | None
    state: str


class LeadsOut(_Out):
    as_of: str
    min_score: float
    min_grade: str | None
    sort: str
    limit: int
    snapshot: SnapshotRefOut
    grade_snapshot: SnapshotRefOut | None = Field(description="the grade fit used, if any")
    rows: list[LeadOut]


class GradeContributionOut(_Out):
    key: str = Field(description="the attribute; a contact's is prefixed contact.")
    value: str
    contribution: float = Field(description="log-odds against the base rate; 0 when unseen")
    seen: bool = Field(description="whether the fit saw this value on a decided deal")
    deals: int = Field(description="decided deals the fit saw with this value")
    won: int


class AccountGradeOut(_Out):
    account_id: str
    letter: str
    raw: float = Field(description="the sum of the contributions (6 decimals)")
    cutoffs: dict[str, float] = Field(description="the least raw grade earning A, B and C")
    base_rate: float = Field(description="won / decided deals the fit learned from")
    snapshot: SnapshotRefOut
    contributions: list[GradeContributionOut]


class AuditEntryOut(_Out):
    id: int
    at: str
    key_id: int | None = Field(description="the API key that acted; null for the CLI")
    key_name: str = Field(description="the key's name, or cli")
    action: str = Field(description="e.g. key.create, key.revoke, model.define, model.fit")
    target: str = Field(description="what was acted on, e.g. model:halves, key:3")
    detail: dict[str, Any]


class AuditLogOut(_Out):
    entries: list[AuditEntryOut]
    next_before_id: int | None = Field(
        description="pass as before_id for the next (older) page; null: last page"
    )


class ConflictOut(_Out):
    """A conflicting copy of a stored event: same ``event_id``, different content (§1)."""

    id: int
    event_id: str
    stored_payload: dict[str, Any] = Field(description="the copy that was stored and counts")
    conflicting_payload: dict[str, Any] = Field(description="the later copy, never applied")
    payload_sha256: str = Field(description="SHA-256 of the conflicting copy's canonical JSON")
    partition: int | None = Field(description="where the conflicting copy first arrived")
    offset: int | None
    first_seen_at: str
    last_seen_at: str
    copies: int = Field(description="distinct topic records that carried this conflicting copy")


class ConflictsOut(_Out):
    conflicts: list[ConflictOut]
    next_after_id: int | None = Field(description="pass as after_id for the next page; null: last")
