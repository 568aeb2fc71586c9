"""Attribution of a closed deal's amount over its journey under one or more models.

Invariants:
- For a non-empty journey, ``attribute`` returns one ``TouchCredit`` per touch, in
  journey order, whose weights sum to exactly 1 and whose credits sum to exactly
  ``amount_minor``; no credit is negative. An empty journey yields ``[]``.
- Roles depend only on the journey and ``created_at``, never on the model; a touch's
  ``roles`` is the set of named roles it holds (empty for a middle touch).
- ``deal_credits`` gives, for every model, exactly the credits ``attribute_all`` gives (the
  weights as floats rather than fractions), without building an object per touch: the
  fast path of a recompute.
- ``campaign_credits`` preserves the total: its values sum to the credits' sum.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import NamedTuple

from .allocation import (
    PACKED_LIMIT,
    IntegerWeights,
    split_cents,
    split_certified,
    split_numerators,
)
from .journey import ROLE_MIDDLE, ROLES, Shape, Touch, shape_and_times, shape_roles
from .models import (
    DECAY_ABS_ERROR,
    AttributionModel,
    PositionalModel,
    TimeDecayModel,
    clear_plan_caches,
    model_weights,
    positional_plan,
    time_decay_approximation,
)


@dataclass(frozen=True, slots=True)
class TouchCredit:
    """The share of one deal credited to one touch under one model."""

    touch: Touch
    position: int
    roles: frozenset[str]
    weight: Fraction
    credit_minor: int


class DealCredits(NamedTuple):
    """A deal's credits under several models, per touch in journey order.

    ``roles`` is shared between deals of the same journey shape; treat it as read-only.
    ``credits[model_id]`` sums to the amount exactly; ``weights[model_id]`` are the
    normalised weights as floats (exact fractions: ``attribute_all``).
    """

    roles: tuple[frozenset[str], ...]
    credits: dict[str, list[int]]
    weights: dict[str, Sequence[float]]


def _check_models(models: Sequence[AttributionModel]) -> None:
    if len({m.model_id for m in models}) != len(models):
        ids = [m.model_id for m in models]
        raise ValueError(f"duplicate model ids: {sorted({i for i in ids if ids.count(i) > 1})}")


def _check_amount(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int, got {amount_minor!r}")
    if amount_minor < 0:
        raise ValueError(f"amount_minor must be >= 0, got {amount_minor}")


class _Steps(NamedTuple):
    """How to credit a deal of one journey shape under one sequence of models."""

    ids: tuple[str, ...]  # the models' ids, in the caller's order (the results' order)
    weights: dict[str, Sequence[float]]  # the positional models' weights, the rest ()
    packed: list[tuple[str, IntegerWeights]]  # weights split on packed integers
    simple: list[tuple[str, IntegerWeights]]  # weights split with two list operations
    others: list[AttributionModel]  # models without per-shape weights (time decay, ...)


# Cached per sequence of models, keyed by the identity of its models (the entry keeps them
# alive, so an identity is never reused while cached), then per journey shape: a deal's
# models are resolved with two dictionary lookups. Shared by every thread of a process (the
# consume loop and the maintenance thread): filled and cleared under ``_STEPS_LOCK``.
_STEPS_LOCK = threading.Lock()
_STEPS: dict[tuple[int, ...], tuple[tuple[AttributionModel, ...], dict[Shape, _Steps]]] = {}
_STEPS_LIMIT = 64
_SHAPES_LIMIT = 50_000


def _build_steps(models: Sequence[AttributionModel], shape: Shape) -> _Steps:
    weights: dict[str, Sequence[float]] = {}
    packed: list[tuple[str, IntegerWeights]] = []
    simple: list[tuple[str, IntegerWeights]] = []
    others: list[AttributionModel] = []
    for model in models:
        weights[model.model_id] = ()
        if not isinstance(model, PositionalModel):
            others.append(model)
            continue
        plan = positional_plan(model, shape)
        weights[model.model_id] = plan.floats
        (simple if plan.simple else packed).append((model.model_id, plan))
    return _Steps(tuple(weights), weights, packed, simple, others)


def _steps(models: Sequence[AttributionModel], shape: Shape) -> _Steps:
    key = tuple(map(id, models))
    entry = _STEPS.get(key)  # hits read without the lock: a dict lookup is atomic
    steps = entry[1].get(shape) if entry is not None else None
    if steps is not None:
        return steps
    with _STEPS_LOCK:  # misses (rare) fill the caches one thread at a time
        entry = _STEPS.get(key)
        if entry is None:
            _check_models(models)
            if len(_STEPS) >= _STEPS_LIMIT:
                _STEPS.clear()
            entry = _STEPS[key] = (tuple(models), {})
        by_shape = entry[1]
        steps = by_shape.get(shape)
        if steps is None:
            if len(by_shape) >= _SHAPES_LIMIT:
                by_shape.clear()
            steps = by_shape[shape] = _build_steps(models, shape)
        return steps


def clear_caches() -> None:
    """Forget every cached per-shape weight and model resolution (results never change).

    For tests and benchmarks that must start cold.
    """
    with _STEPS_LOCK:
        _STEPS.clear()
    clear_plan_caches()


def _time_decay_credits(
    times: Sequence[datetime], amount_minor: int, closed_at: datetime, half_life_days: float
) -> tuple[list[int], Sequence[float]] | None:
    """Time-decay credits from float weights with a proven error bound, or None if in doubt."""
    count = len(times)
    if count == 1:
        return [amount_minor], (1.0,)
    if times[0] == times[-1]:  # an ordered journey all of one age: equal weights
        return split_numerators(amount_minor, [1] * count, count), (1.0 / count,) * count
    approx = time_decay_approximation(times, closed_at=closed_at, half_life_days=half_life_days)
    if approx is None:
        return None
    raw, rel_error = approx
    total = math.fsum(raw)  # correctly rounded, as split_certified requires
    credits = split_certified(
        amount_minor,
        raw,
        rel_error=rel_error,
        abs_error=DECAY_ABS_ERROR,
        tie_keys=times,
        total=total,
    )
    if credits is None:
        return None
    return credits, list(map((1.0 / total).__mul__, raw))


def _exact_credits(
    model: AttributionModel,
    journey: Sequence[Touch],
    times: Sequence[datetime],
    shape: Shape,
    *,
    amount_minor: int,
    closed_at: datetime,
) -> tuple[list[int], Sequence[Fraction]]:
    """Credits and exact weights of a model without cached weights (not positional)."""
    exact = model_weights(model, journey, shape_roles(shape), closed_at=closed_at)
    fast = None
    if isinstance(model, TimeDecayModel):
        fast = _time_decay_credits(times, amount_minor, closed_at, model.half_life_days)
    return (split_cents(amount_minor, exact) if fast is None else fast[0]), exact


def deal_credits(
    journey: Sequence[Touch],
    *,
    amount_minor: int,
    created_at: datetime,
    closed_at: datetime,
    models: Sequence[AttributionModel],
) -> DealCredits:
    """Credit a deal's amount under each model: per-touch credits and float weights."""
    if type(amount_minor) is not int or amount_minor < 0:
        _check_amount(amount_minor)
    if not journey:
        _check_models(models)
        return DealCredits((), {m.model_id: [] for m in models}, {m.model_id: () for m in models})
    shape, times = shape_and_times(journey, created_at=created_at)
    steps = _steps(models, shape)
    credits: dict[str, list[int]] = dict.fromkeys(steps.ids, [])  # in the models' order
    weights = steps.weights.copy()
    if amount_minor < PACKED_LIMIT:
        # IntegerWeights.split, inlined: this loop runs for every model of every deal.
        for model_id, plan in steps.packed:
            total = plan.total
            whole = amount_minor // total
            rest = amount_minor - whole * total
            rows = plan.rows
            row = rows[rest] if rows is not None else None
            if row is None:
                row = plan.row(rest)
            credits[model_id] = list(
                plan.unpacker((whole * plan.packed + row).to_bytes(plan.nbytes, "little"))
            )
    else:
        for model_id, plan in steps.packed:
            credits[model_id] = plan.split(amount_minor)
    for model_id, weights_of_model in steps.simple:
        credits[model_id] = weights_of_model.split(amount_minor)
    for model in steps.others:
        if isinstance(model, TimeDecayModel):
            fast = _time_decay_credits(times, amount_minor, closed_at, model.half_life_days)
            if fast is not None:
                credits[model.model_id], weights[model.model_id] = fast
                continue
        amounts, exact = _exact_credits(
            model, journey, times, shape, amount_minor=amount_minor, closed_at=closed_at
        )
        credits[model.model_id], weights[model.model_id] = amounts, list(map(float, exact))
    return DealCredits(shape_roles(shape), credits, weights)


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
    _check_models(models)
    _check_amount(amount_minor)
    if not journey:
        return {model.model_id: [] for model in models}
    shape, times = shape_and_times(journey, created_at=created_at)
    roles = shape_roles(shape)
    out: dict[str, list[TouchCredit]] = {}
    for model in models:
        exact: Sequence[Fraction]
        if isinstance(model, PositionalModel):
            plan = positional_plan(model, shape)
            exact, amounts = plan.fractions(), plan.split(amount_minor)
        else:
            amounts, exact = _exact_credits(
                model, journey, times, shape, amount_minor=amount_minor, closed_at=closed_at
            )
        out[model.model_id] = [
            TouchCredit(t, i, r, w, c)
            for i, (t, r, w, c) in enumerate(zip(journey, roles, exact, amounts, strict=True))
        ]
    return out


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
