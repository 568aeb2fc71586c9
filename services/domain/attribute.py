"""Attribution of a closed deal's amount over its journey under one or more models.

Invariants:
- For a non-empty journey, ``attribute`` returns one ``TouchCredit`` per touch, in
  journey order, whose weights sum to exactly 1 and whose credits sum to exactly
  ``amount_minor``; no credit is negative. An empty journey yields ``[]``.
- Roles depend only on the journey and ``created_at``, never on the model; a touch's
  ``roles`` is the set of named roles it holds (empty for a middle touch).
- ``campaign_credits`` preserves the total: its values sum to the credits' sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from .allocation import split_cents
from .journey import ROLE_MIDDLE, ROLES, Touch, assign_roles
from .models import AttributionModel, model_weights


@dataclass(frozen=True, slots=True)
class TouchCredit:
    """The share of one deal credited to one touch under one model."""

    touch: Touch
    position: int
    roles: frozenset[str]
    weight: Fraction
    credit_minor: int


def _credits(
    journey: Sequence[Touch],
    roles: Sequence[frozenset[str]],
    *,
    amount_minor: int,
    closed_at: datetime,
    model: AttributionModel,
) -> list[TouchCredit]:
    weights = model_weights(model, journey, roles, closed_at=closed_at)
    amounts = split_cents(amount_minor, weights)
    return [
        TouchCredit(touch=t, position=i, roles=r, weight=w, credit_minor=c)
        for i, (t, r, w, c) in enumerate(zip(journey, roles, weights, amounts, strict=True))
    ]


def attribute(
    journey: Sequence[Touch],
    *,
    amount_minor: int,
    created_at: datetime,
    closed_at: datetime,
    model: AttributionModel,
) -> list[TouchCredit]:
    """Credit a deal's amount over its ordered journey under one model."""
    return attribute_all(
        journey,
        amount_minor=amount_minor,
        created_at=created_at,
        closed_at=closed_at,
        models=[model],
    )[model.model_id]


def attribute_all(
    journey: Sequence[Touch],
    *,
    amount_minor: int,
    created_at: datetime,
    closed_at: datetime,
    models: Sequence[AttributionModel],
) -> dict[str, list[TouchCredit]]:
    """Credit a deal's amount under each model, keyed by model_id (roles computed once)."""
    ids = [m.model_id for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate model ids: {duplicates}")
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int, got {amount_minor!r}")
    if amount_minor < 0:
        raise ValueError(f"amount_minor must be >= 0, got {amount_minor}")
    if not journey:
        return {model.model_id: [] for model in models}
    roles = assign_roles(journey, created_at=created_at)
    return {
        model.model_id: _credits(
            journey, roles, amount_minor=amount_minor, closed_at=closed_at, model=model
        )
        for model in models
    }


def campaign_credits(credits: Sequence[TouchCredit]) -> dict[str, int]:
    """Sum credits per campaign_id, in order of first appearance."""
    totals: dict[str, int] = {}
    for credit in credits:
        campaign = credit.touch.campaign_id
        totals[campaign] = totals.get(campaign, 0) + credit.credit_minor
    return totals


def role_labels(roles: frozenset[str]) -> list[str]:
    """List the named roles in canonical order, or ["middle"] for a middle touch."""
    labels = [role for role in ROLES if role in roles]
    return labels or [ROLE_MIDDLE]
