"""Attribution models: how a deal's credit is weighted over the touches of its journey.

Invariants:
- Every weight function returns one ``Fraction`` per touch, each ``>= 0``, summing to
  exactly 1 for a non-empty journey (``[]`` for an empty one).
- Positional models are role weights. A touch's raw weight is the sum of the model's
  weights for the roles it holds; the ``middle`` weight is split evenly over the touches
  holding none of the roles the model weights (its middle touches) and dropped when there
  are none. So a model that names no roles (linear) makes every touch a middle touch, and
  the last touch is a middle touch of u_shaped, as in the conventions the models are
  named after. Raw weights
  are then normalised exactly; should they all be 0 the touches get equal weights
  (a defensive fallback: every validated model reaches a positive total, because each
  named role is always held by some touch of a non-empty journey).
- Time decay weighs a touch ``2 ** (-age / half_life)`` with age in fractional days
  (to the microsecond) before ``closed_at``, computed with 50-digit decimals, converted
  exactly to ``Fraction`` and normalised exactly.
- Model weights are exact: built from decimal strings or fractions, never floats.

For a recompute: a positional model's weights depend only on the journey's shape, so
``positional_plan`` keeps them per (model, shape) as integers over a common total
(``IntegerWeights``); ``time_decay_approximation`` gives the time-decay weights in floats
with a proven error bound, for ``split_certified`` to decide the exact split from. The
caches are bounded and hold values only; dropping them (``clear_plan_caches``) changes no
result.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Context, Decimal, Overflow, localcontext
from fractions import Fraction
from math import exp2
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from .allocation import IntegerWeights, forget_rows
from .journey import ROLE_MIDDLE, ROLES, Shape, Touch, journey_channels, shape_roles

if TYPE_CHECKING:
    from .datadriven import ChannelWeightModel

WEIGHT_KEYS: tuple[str, ...] = (*ROLES, ROLE_MIDDLE)

# 2^x at 50 significant digits: weights exact enough that the largest-remainder split of any
# amount a deal may carry (< 10^16 minor units) is the one exact real weights would give.
_DECAY_CONTEXT = Context(prec=50, Emin=-999_999, Emax=999_999)


class InvalidModelDefinition(ValueError):
    """A model definition is malformed (unknown role, bad weight, bad half-life)."""


def _fraction_text(value: Fraction) -> str:
    """Render a fraction as a plain decimal string when it terminates, else as ``n/d``."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = max(twos, fives)
    scaled = abs(value.numerator) * (10**digits // value.denominator)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**digits)
    if digits == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{digits}d}"


def _float_text(value: float) -> str:
    """Render a float without a trailing ``.0`` for whole numbers (7.0 -> "7")."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _parse_weight(role: str, value: object) -> Fraction:
    """Convert one weight given as a decimal string, int or Fraction into a Fraction."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Fraction)):
        raise InvalidModelDefinition(
            f"weight for {role!r} must be a decimal string or Fraction, got {value!r}"
        )
    try:
        return Fraction(value.strip()) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise InvalidModelDefinition(f"weight for {role!r} is not a number: {value!r}") from exc


def _check_half_life(half_life_days: float) -> None:
    if isinstance(half_life_days, bool) or not isinstance(half_life_days, (int, float)):
        raise InvalidModelDefinition(f"half_life_days must be a number, got {half_life_days!r}")
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise InvalidModelDefinition(
            f"half_life_days must be finite and > 0, got {half_life_days!r}"
        )


def _normalise(raw: Sequence[Fraction]) -> list[Fraction]:
    """Scale raw weights to sum to exactly 1; equal weights if they are all 0."""
    total = sum(raw, Fraction(0))
    if total == 0:
        return [Fraction(1, len(raw))] * len(raw)
    return [weight / total for weight in raw]


# Bounds on the caches of per-shape weights (pure caches: dropping them changes no result).
_PLAN_CACHE_LIMIT = 50_000


def _integer_weights(weights: Mapping[str, Fraction]) -> tuple[int, ...]:
    """Return the weights of ``WEIGHT_KEYS`` as integers over their common denominator."""
    values = [weights.get(key, Fraction(0)) for key in WEIGHT_KEYS]
    denominator = math.lcm(*(v.denominator for v in values))
    return tuple(v.numerator * (denominator // v.denominator) for v in values)


# Shared by every thread of a process: filled and cleared under ``_PLANS_LOCK`` (hits read
# without it; a dict lookup is atomic).
_PLANS_LOCK = threading.RLock()
_SHARED_PLANS: dict[tuple[tuple[int, ...], Shape], IntegerWeights] = {}
_PLANS_BY_WEIGHTS: dict[tuple[int, ...], IntegerWeights] = {}


def _build_plan(signature: tuple[int, ...], shape: Shape) -> IntegerWeights:
    """Compute a positional model's integer weights for a shape (as ``positional_weights``)."""
    length, lead, opportunity = shape
    *role_weights, middle = signature
    sums = [0] * length
    for index, weight in zip((0, lead, opportunity, length - 1), role_weights, strict=True):
        sums[index] += weight  # ROLES order: first, lead creation, opportunity creation, last
    # Touches holding none of the weighted roles (sum 0) are this model's middle touches.
    # Role holders weigh sum/d and middle touches middle/(d*middles); times d*middles these
    # are integers in the same ratios.
    middles = sums.count(0)
    raw = [s * middles if s else middle for s in sums] if middles else sums
    if not any(raw):
        raw = [1] * length
    divisor = math.gcd(*raw)
    numerators = tuple(n // divisor for n in raw)
    # Shapes (and models) with the same weights share one plan, so its table fills faster.
    plan = _PLANS_BY_WEIGHTS.get(numerators)
    if plan is None:
        if len(_PLANS_BY_WEIGHTS) >= _PLAN_CACHE_LIMIT:
            _PLANS_BY_WEIGHTS.clear()
        plan = _PLANS_BY_WEIGHTS[numerators] = IntegerWeights(numerators, sum(numerators))
    return plan


def positional_plan(model: PositionalModel, shape: Shape) -> IntegerWeights:
    """Return the model's exact weights for a journey shape (cached per model and shape)."""
    plans = model._plans
    plan = plans.get(shape)  # hits read without the lock: a dict lookup is atomic
    if plan is not None:
        return plan
    with _PLANS_LOCK:  # misses (rare) fill the caches one thread at a time
        plan = plans.get(shape)
        if plan is not None:
            return plan
        signature = model._signature
        length, lead, opportunity = shape
        # Only the positions of roles the model weighs matter: shapes that differ elsewhere
        # share a plan (position_based, say, depends on the length alone).
        key = (signature, (length, lead if signature[1] else 0, opportunity if signature[2] else 0))
        plan = _SHARED_PLANS.get(key)
        if plan is None:
            if len(_SHARED_PLANS) >= _PLAN_CACHE_LIMIT:
                _SHARED_PLANS.clear()
            plan = _SHARED_PLANS[key] = _build_plan(*key)
        if len(plans) >= _PLAN_CACHE_LIMIT:
            plans.clear()
        plans[shape] = plan
    return plan


@dataclass(frozen=True)
class PositionalModel:
    """A model weighting touches by the journey roles they hold."""

    model_id: str
    weights: Mapping[str, Fraction]
    description: str = ""
    builtin: bool = True
    # Cache of this model's weights per journey shape (not part of the model's value).
    _signature: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    _plans: dict[Shape, IntegerWeights] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.model_id:
            raise InvalidModelDefinition("model_id must be a non-empty string")
        unknown = sorted(set(self.weights) - set(WEIGHT_KEYS))
        if unknown:
            raise InvalidModelDefinition(
                f"model {self.model_id!r}: unknown role(s) {unknown}; allowed {list(WEIGHT_KEYS)}"
            )
        parsed = {k: _parse_weight(k, self.weights[k]) for k in WEIGHT_KEYS if k in self.weights}
        negative = [k for k, v in parsed.items() if v < 0]
        if negative:
            raise InvalidModelDefinition(f"model {self.model_id!r}: negative weight for {negative}")
        if not any(v > 0 for v in parsed.values()):
            raise InvalidModelDefinition(f"model {self.model_id!r}: needs at least one weight > 0")
        object.__setattr__(self, "weights", MappingProxyType(parsed))
        object.__setattr__(self, "_signature", _integer_weights(parsed))

    def __hash__(self) -> int:
        return hash((self.model_id, tuple(self.weights.items()), self.description, self.builtin))

    @property
    def kind(self) -> str:
        """Return the model family name."""
        return "positional"

    def params(self) -> dict[str, str]:
        """Return role -> weight as exact decimal strings (``n/d`` if non-terminating)."""
        return {role: _fraction_text(weight) for role, weight in self.weights.items()}


@dataclass(frozen=True)
class TimeDecayModel:
    """A model weighting touches by exponential decay with age before deal close."""

    model_id: str = "time_decay"
    half_life_days: float = 7.0
    description: str = (
        "Exponential time decay: each touch weighs 2^(-age/half-life), "
        "age measured back from the deal's close"
    )
    builtin: bool = True

    def __post_init__(self) -> None:
        if not self.model_id:
            raise InvalidModelDefinition("model_id must be a non-empty string")
        _check_half_life(self.half_life_days)

    @property
    def kind(self) -> str:
        """Return the model family name."""
        return "time_decay"

    def params(self) -> dict[str, str]:
        """Return the half-life as a decimal string."""
        return {"half_life_days": _float_text(self.half_life_days)}


AttributionModel: TypeAlias = "PositionalModel | TimeDecayModel | ChannelWeightModel"


_BUILTIN_TABLE: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("first_touch", "All credit to the first touch", {"first": "1"}),
    ("last_touch", "All credit to the last touch", {"last": "1"}),
    ("linear", "Equal credit to every touch", {"middle": "1"}),
    (
        "position_based",
        "40% first, 40% last, 20% split over the middle touches",
        {"first": "0.4", "last": "0.4", "middle": "0.2"},
    ),
    (
        "u_shaped",
        "40% first, 40% lead creation, 20% split over the middle touches",
        {"first": "0.4", "lead_creation": "0.4", "middle": "0.2"},
    ),
    (
        "w_shaped",
        "30% first, 30% lead creation, 30% opportunity creation, 10% middle",
        {"first": "0.3", "lead_creation": "0.3", "opportunity_creation": "0.3", "middle": "0.1"},
    ),
    (
        "full_path",
        "22.5% each to first, lead creation, opportunity creation and last, 10% middle",
        {
            "first": "0.225",
            "lead_creation": "0.225",
            "opportunity_creation": "0.225",
            "last": "0.225",
            "middle": "0.1",
        },
    ),
    (
        "j_shaped",
        "20% first, 60% last, 20% split over the middle touches",
        {"first": "0.2", "last": "0.6", "middle": "0.2"},
    ),
    (
        "inverse_j",
        "60% first, 20% last, 20% split over the middle touches",
        {"first": "0.6", "last": "0.2", "middle": "0.2"},
    ),
)

BUILTIN_POSITIONAL: dict[str, PositionalModel] = {
    model_id: PositionalModel(
        model_id=model_id,
        weights={role: Fraction(text) for role, text in weights.items()},
        description=description,
        builtin=True,
    )
    for model_id, description, weights in _BUILTIN_TABLE
}


def clear_plan_caches() -> None:
    """Forget every cached per-shape weight (of the built-in models and shared plans).

    Results never depend on the caches; this exists so tests and benchmarks can start cold.
    Custom model instances keep their own shape -> weights maps (drop the instance).
    """
    with _PLANS_LOCK:
        _SHARED_PLANS.clear()
        _PLANS_BY_WEIGHTS.clear()
    forget_rows()
    for model in BUILTIN_POSITIONAL.values():
        model._plans.clear()
    shape_roles.cache_clear()


def builtin_models(*, half_life_days: float = 7.0) -> list[AttributionModel]:
    """Return the nine positional built-ins followed by time decay, in catalogue order."""
    models: list[AttributionModel] = list(BUILTIN_POSITIONAL.values())
    models.append(TimeDecayModel(half_life_days=half_life_days))
    return models


def make_positional_model(
    model_id: str,
    weights: Mapping[str, str | Fraction],
    *,
    description: str = "",
) -> PositionalModel:
    """Build a validated custom positional model from decimal-string or Fraction weights."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidModelDefinition("model_id must be a non-empty string")
    if not weights:
        raise InvalidModelDefinition(f"model {model_id!r}: weights must not be empty")
    parsed = {role: _parse_weight(role, value) for role, value in weights.items()}
    return PositionalModel(
        model_id=model_id, weights=parsed, description=description, builtin=False
    )


def positional_weights(model: PositionalModel, roles: Sequence[frozenset[str]]) -> list[Fraction]:
    """Return normalised per-touch weights of a positional model for the given roles."""
    for held in roles:
        stray = held - set(ROLES)
        if stray:
            raise ValueError(f"unknown role(s) in journey roles: {sorted(stray)}")
    if not roles:
        return []
    weights = model.weights
    # A touch is a middle touch *for this model* when it holds none of the roles the model
    # weights: the last touch is a middle touch of u_shaped, as in HubSpot's U-shape, and a
    # model that names no roles (linear) makes every touch a middle touch.
    model_roles = frozenset(role for role in ROLES if weights.get(role, Fraction(0)) > 0)
    effective = [held & model_roles for held in roles]
    middle_count = sum(1 for held in effective if not held)
    middle_share = (
        weights.get(ROLE_MIDDLE, Fraction(0)) / middle_count if middle_count else Fraction(0)
    )
    raw = [
        sum((weights.get(role, Fraction(0)) for role in held), Fraction(0))
        if held
        else middle_share
        for held in effective
    ]
    return _normalise(raw)


def time_decay_weights(
    journey: Sequence[Touch], *, closed_at: datetime, half_life_days: float
) -> list[Fraction]:
    """Return normalised weights 2^(-age/half_life), age in days before closed_at."""
    _check_half_life(half_life_days)
    if not journey:
        return []
    half_life = Fraction(str(half_life_days))
    raw: list[Fraction] = []
    with localcontext(_DECAY_CONTEXT):
        for touch in journey:
            age = closed_at - touch.occurred_at
            age_days = Fraction(age // timedelta(microseconds=1), 86_400_000_000)
            exponent = -age_days / half_life
            try:
                value = Decimal(2) ** (Decimal(exponent.numerator) / exponent.denominator)
            except Overflow as exc:
                raise ValueError(
                    f"touch {touch.event_id!r} lies too far after closed_at for time decay"
                ) from exc
            raw.append(Fraction(value))
    return _normalise(raw)


# Error bounds of ``time_decay_approximation``: a float's unit roundoff, and an absolute
# floor for weights that underflow (a touch thousands of half-lives older than the youngest).
_UNIT = 2.0**-53
DECAY_ABS_ERROR = 2.0**-1000


def time_decay_approximation(
    times: Sequence[datetime], *, closed_at: datetime, half_life_days: float
) -> tuple[list[float], float] | None:
    """Approximate the time-decay weights of touches at ``times``: ``(raw, rel_error)``.

    ``raw[i]`` is ``2 ** ((t_i - latest) / half_life)``, proportional to the exact weights
    (the common factor ``2 ** -((closed_at - latest) / half_life)`` cancels), within
    ``rel_error * w + DECAY_ABS_ERROR`` of the true value ``w``: the bound covers the rounding
    of the time differences, of the half-life's decimal reading and of ``exp2``. Touches at
    equal times get equal values. None if a touch lies after ``closed_at`` (left to the
    exact computation, ``time_decay_weights``).
    """
    latest = max(times)
    if latest > closed_at:
        return None
    per_second = 1.0 / (half_life_days * 86_400.0)
    raw = [exp2((t - latest).total_seconds() * per_second) for t in times]
    # Each exponent is within 5u * x of its true value, x = (latest - t_i)/half-life (a
    # correctly rounded difference in seconds, then a product by a factor good to 3u);
    # times ln 2 in the power, plus 2u for exp2 itself: (3.5x + 2)u, taken 4 times over.
    oldest = (latest - min(times)).total_seconds() * per_second
    return raw, (16.0 * oldest + 8.0) * _UNIT


def model_weights(
    model: AttributionModel,
    journey: Sequence[Touch],
    roles: Sequence[frozenset[str]],
    *,
    closed_at: datetime,
) -> list[Fraction]:
    """Return the normalised per-touch weights of any attribution model."""
    if len(roles) != len(journey):
        raise ValueError(f"got {len(roles)} role sets for {len(journey)} touches")
    if isinstance(model, PositionalModel):
        return positional_weights(model, roles)
    if isinstance(model, TimeDecayModel):
        return time_decay_weights(journey, closed_at=closed_at, half_life_days=model.half_life_days)
    from .datadriven import ChannelWeightModel  # datadriven imports this module

    if isinstance(model, ChannelWeightModel):
        return model.weights(journey_channels(journey))
    raise TypeError(f"unsupported attribution model: {model!r}")
