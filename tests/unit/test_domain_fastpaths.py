"""The recompute's fast paths give exactly what the slow exact paths (and the reference) give.

``deal_credits`` (cached integer weights per journey shape, time decay decided in floats with
a proven error bound) must equal ``attribute_all`` and the independent reference in
tests/support/reference.py credit for credit, for every model, amount and journey.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain import (
    ROLES,
    WEIGHT_KEYS,
    PositionalModel,
    TimeDecayModel,
    Touch,
    assign_roles,
    attribute_all,
    builtin_models,
    make_positional_model,
    positional_weights,
    split_cents,
    time_decay_weights,
)
from services.domain.allocation import (
    IntegerWeights,
    pack,
    split_certified,
    split_numerators,
    unpack,
)
from services.domain.attribute import _time_decay_credits, clear_caches, deal_credits
from services.domain.datadriven import ChannelWeightModel
from services.domain.journey import journey_shape, shape_roles
from services.domain.models import positional_plan
from tests.support import reference, reference_datadriven
from tests.unit.test_domain_properties import Deal, deals, journey_of

PROPS = settings(max_examples=300, deadline=None)
MODELS = builtin_models()
POSITIONAL = [m for m in MODELS if isinstance(m, PositionalModel)]
T0 = datetime(2024, 5, 1, tzinfo=UTC)
UNIT = 2.0**-53
F = Fraction
AMOUNTS = st.one_of(
    st.integers(0, 10**4),
    st.integers(0, 10**12),
    st.integers(2**53 - 10, 2**53 + 10),
    st.integers(2**64 - 10, 2**64 + 10),
    st.integers(0, 10**30),
)


@st.composite
def positional_models(draw: st.DrawFn) -> PositionalModel:
    keys = draw(st.lists(st.sampled_from(WEIGHT_KEYS), min_size=1, max_size=5, unique=True))
    weights = {k: draw(st.fractions(min_value=0, max_value=5, max_denominator=1000)) for k in keys}
    if not any(weights.values()):
        weights[keys[0]] = Fraction(1)
    return make_positional_model("custom", weights)


def times_of(journey: list[Touch]) -> list[datetime]:
    return [t.occurred_at for t in journey]


def both(deal: Deal, journey: tuple[Touch, ...], models: list[Any]) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {
        "amount_minor": deal.amount,
        "created_at": deal.created_at,
        "closed_at": deal.closed_at,
        "models": models,
    }
    return deal_credits(journey, **kwargs), attribute_all(journey, **kwargs)


@PROPS
@given(
    deal=deals(),
    amount=AMOUNTS,
    half_life=st.floats(min_value=0.001, max_value=1000.0),
    custom=positional_models(),
)
def test_deal_credits_equal_attribute_all(
    deal: Deal, amount: int, half_life: float, custom: PositionalModel
) -> None:
    deal = Deal(deal.candidates, deal.created_at, deal.closed_at, deal.lookback, amount)
    journey = journey_of(deal)
    models = [*POSITIONAL, custom, TimeDecayModel(half_life_days=half_life)]
    fast, slow = both(deal, journey, models)
    assert list(fast.roles) == assign_roles(journey, created_at=deal.created_at)
    for model in models:
        lines = slow[model.model_id]
        assert fast.credits[model.model_id] == [c.credit_minor for c in lines], model.model_id
        assert sum(fast.credits[model.model_id]) == amount
        for weight, line in zip(fast.weights[model.model_id], lines, strict=True):
            assert math.isclose(weight, float(line.weight), rel_tol=1e-9, abs_tol=1e-300)


def reference_credits(
    journey: tuple[Touch, ...] | list[Touch],
    *,
    amount: int,
    created_at: datetime,
    closed_at: datetime,
    model_weights: dict[str, Fraction] | None,
) -> list[int]:
    """One model's credits by the independent reference: time decay (7 days) when
    ``model_weights`` is None, else the positional model with those role weights."""
    if model_weights is None:
        weights = reference.time_decay_weights(list(journey), closed_at, 7.0)  # type: ignore[arg-type]
    else:
        roles = reference.roles_of(list(journey), created_at)  # type: ignore[arg-type]
        weights = reference.positional_weights(roles, model_weights)
    return reference.split_minor(amount, weights)


@PROPS
@given(deal=deals(), amount=AMOUNTS, custom=positional_models())
def test_deal_credits_equal_the_reference(deal: Deal, amount: int, custom: PositionalModel) -> None:
    journey = journey_of(deal)
    fast = deal_credits(
        journey,
        amount_minor=amount,
        created_at=deal.created_at,
        closed_at=deal.closed_at,
        models=[*MODELS, custom],
    )
    definitions: dict[str, dict[str, Fraction] | None] = {
        **reference.POSITIONAL_WEIGHTS,
        "time_decay": None,
        "custom": {role: Fraction(w) for role, w in custom.weights.items()},
    }
    assert set(fast.credits) == set(definitions) == {*reference.MODELS, "custom"}
    for model_id, model_weights in definitions.items():
        expected = reference_credits(
            journey,
            amount=amount,
            created_at=deal.created_at,
            closed_at=deal.closed_at,
            model_weights=model_weights,
        )
        assert fast.credits[model_id] == expected, model_id


def test_empty_journey_and_validation() -> None:
    empty = deal_credits([], amount_minor=5, created_at=T0, closed_at=T0, models=MODELS)
    assert empty.roles == ()
    assert empty.credits == {m.model_id: [] for m in MODELS} and len(empty.credits) == 10
    journey = [Touch("a", T0, "c")]
    with pytest.raises(ValueError, match="duplicate"):
        deal_credits(journey, amount_minor=1, created_at=T0, closed_at=T0, models=MODELS * 2)
    with pytest.raises(ValueError):
        deal_credits(journey, amount_minor=-1, created_at=T0, closed_at=T0, models=MODELS)
    with pytest.raises(TypeError):
        deal_credits(journey, amount_minor=True, created_at=T0, closed_at=T0, models=MODELS)
    unordered = [Touch("b", T0 + timedelta(1), "c"), Touch("a", T0, "c")]
    tied = [Touch("b", T0, "c"), Touch("a", T0, "c")]
    for bad in (unordered, tied):
        with pytest.raises(ValueError, match="strictly ordered"):
            deal_credits(bad, amount_minor=1, created_at=T0, closed_at=T0, models=MODELS)


# --- positional: cached integer weights per shape --------------------------------------------


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int, int]:
    length = draw(st.integers(1, 40))
    return length, draw(st.integers(0, length - 1)), draw(st.integers(0, length - 1))


@PROPS
@given(
    model=st.one_of(st.sampled_from(POSITIONAL), positional_models()),
    shape=shapes(),
    amounts=st.lists(AMOUNTS, min_size=1, max_size=5),
)
def test_plan_equals_exact_positional_weights(
    model: PositionalModel, shape: tuple[int, int, int], amounts: list[int]
) -> None:
    exact = positional_weights(model, shape_roles(shape))
    plan = positional_plan(model, shape)
    assert list(plan.fractions()) == exact
    assert plan.floats == tuple(float(w) for w in exact)
    for amount in amounts:
        assert plan.split(amount) == split_cents(amount, exact)


@PROPS
@given(
    numerators=st.one_of(
        st.lists(st.integers(0, 2000), min_size=1, max_size=30),
        st.lists(st.integers(0, 60), min_size=1, max_size=30),  # totals with a table
        st.lists(st.sampled_from([0, 1, 2, 3, 1023]), min_size=1, max_size=3),
    ).filter(any),
    amounts=st.lists(AMOUNTS, min_size=1, max_size=8),
)
def test_integer_weights_split_equals_split_cents(
    numerators: list[int], amounts: list[int]
) -> None:
    weights = IntegerWeights(tuple(numerators), sum(numerators))
    exact = [Fraction(n, sum(numerators)) for n in numerators]
    for amount in amounts:
        assert weights.split(amount) == split_cents(amount, exact)
        assert split_numerators(amount, numerators, sum(numerators)) == split_cents(amount, exact)
    if weights.rows is not None:  # every remainder's packed split, from the table
        for rest in range(weights.total):
            exact_rest = split_cents(rest, exact)
            assert unpack(weights.row(rest), len(numerators)) == exact_rest


def test_shape_matches_assign_roles_and_caches_change_nothing() -> None:
    rng = random.Random(3)
    cases = []
    for n in range(300):
        length = rng.randint(1, 12)
        times = sorted(T0 + timedelta(hours=rng.randint(0, 500)) for _ in range(length))
        journey = [
            Touch(f"e{n}-{i:02d}", at, f"c{rng.randint(0, 3)}", "x", rng.random() < 0.15)
            for i, at in enumerate(times)
        ]
        created = T0 + timedelta(hours=rng.randint(-50, 550))
        cases.append((journey, created, rng.randint(0, 10**7)))
    first = []
    for journey, created, amount in cases:
        shape = journey_shape(journey, created_at=created)
        assert list(shape_roles(shape)) == assign_roles(journey, created_at=created)
        for role in ROLES:
            assert sum(role in held for held in shape_roles(shape)) == 1
        first.append(
            deal_credits(
                journey,
                amount_minor=amount,
                created_at=created,
                closed_at=T0 + timedelta(days=30),
                models=MODELS,
            ).credits
        )
    clear_caches()
    again = [
        deal_credits(
            journey,
            amount_minor=amount,
            created_at=created,
            closed_at=T0 + timedelta(days=30),
            models=MODELS,
        ).credits
        for journey, created, amount in cases
    ]
    assert again == first


# --- time decay: floats with a proven bound, or the exact path ---------------------------------


@PROPS
@given(
    ages=st.lists(st.integers(0, 400 * 86_400_000_000), min_size=1, max_size=25),
    repeat=st.integers(0, 3),
    amount=AMOUNTS,
    half_life=st.one_of(
        st.floats(min_value=0.0001, max_value=1e4), st.sampled_from([7.0, 1.0, 0.5])
    ),
)
def test_time_decay_fast_path_is_exact(
    ages: list[int], repeat: int, amount: int, half_life: float
) -> None:
    # Repeated ages (touches at the same instant) make exact ties in the weights.
    ages = ages + ages[:repeat]
    close = T0 + timedelta(days=500)
    times = sorted(close - timedelta(microseconds=a) for a in ages)
    journey = [Touch(f"e{i:02d}", at, "c") for i, at in enumerate(times)]
    fast = _time_decay_credits(times_of(journey), amount, close, half_life)
    if fast is not None:
        assert fast[0] == split_cents(
            amount, time_decay_weights(journey, closed_at=close, half_life_days=half_life)
        )


def test_time_decay_fast_path_decides_almost_always() -> None:
    rng = random.Random(11)
    decided = 0
    for n in range(500):
        close = T0 + timedelta(days=200)
        times = sorted(
            close - timedelta(microseconds=rng.randrange(150 * 86_400 * 10**6))
            for _ in range(rng.randint(2, 15))
        )
        journey = [Touch(f"e{n}-{i:02d}", at, "c") for i, at in enumerate(times)]
        amount = rng.randint(1, 10**8)
        fast = _time_decay_credits(times_of(journey), amount, close, 7.0)
        if fast is not None:
            decided += 1
            exact = time_decay_weights(journey, closed_at=close, half_life_days=7.0)
            assert fast[0] == split_cents(amount, exact)
    assert decided >= 495


def test_time_decay_ties_and_single_touches() -> None:
    close = T0 + timedelta(days=10)
    # Two touches at one instant and one older: the tied pair's leftover unit goes first.
    pair = [
        Touch("a", T0, "c"),
        Touch("b", T0 + timedelta(days=3), "c"),
        Touch("c", T0 + timedelta(days=3), "c"),
    ]
    for half_life, must_decide in ((2.9, True), (3.0, False)):
        exact = time_decay_weights(pair, closed_at=close, half_life_days=half_life)
        for amount in range(0, 60):
            fast = _time_decay_credits(times_of(pair), amount, close, half_life)
            # At a 3-day half-life the weights are 1/5, 2/5, 2/5: shares that are whole
            # numbers cannot be told from their float neighbours, and are left to the exact path.
            assert fast is not None or not must_decide, amount
            assert fast is None or fast[0] == split_cents(amount, exact), amount
    same = [Touch("a", T0, "c"), Touch("b", T0, "c"), Touch("c", T0, "c")]
    assert _time_decay_credits(times_of(same), 100, close, 7.0) == ([34, 33, 33], (1 / 3,) * 3)
    assert _time_decay_credits(times_of(same[:1]), 100, close, 7.0) == ([100], (1.0,))
    after = [Touch("a", T0, "c"), Touch("b", close + timedelta(days=1), "c")]
    assert _time_decay_credits(times_of(after), 100, close, 7.0) is None  # left to the exact path


# --- the certified float split ----------------------------------------------------------------


@PROPS
@given(
    weights=st.lists(
        st.fractions(min_value=0, max_value=10, max_denominator=10**6), min_size=1, max_size=20
    ).filter(lambda ws: any(ws)),
    amount=AMOUNTS,
)
def test_split_certified_is_exact_or_declines(weights: list[Fraction], amount: int) -> None:
    raw = [float(w) for w in weights]  # correctly rounded: relative error <= 2^-53
    got = split_certified(amount, raw, rel_error=UNIT, tie_keys=weights)
    if got is not None:
        assert got == split_cents(amount, weights)


@PROPS
@given(
    weights=st.lists(
        st.fractions(min_value=Fraction(1, 10**3), max_value=10, max_denominator=10**4),
        min_size=2,
        max_size=12,
    ),
    errors=st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=12, max_size=12),
    rel_error=st.sampled_from([1e-12, 1e-9, 1e-6, 1e-3]),
    amount=st.integers(0, 10**7),
)
def test_split_certified_holds_for_any_error_within_the_bound(
    weights: list[Fraction], errors: list[float], rel_error: float, amount: int
) -> None:
    # Each float is off its true weight by up to rel_error (in either direction): whatever
    # the errors, an answer is the true weights' split.
    raw = [float(w) * (1.0 + rel_error * e) for w, e in zip(weights, errors, strict=False)]
    got = split_certified(amount, raw, rel_error=rel_error * 1.01 + UNIT)
    if got is not None:
        assert got == split_cents(amount, weights)


@PROPS
@given(weight=st.fractions(min_value=Fraction(1, 10**6), max_value=1), amount=st.integers(1, 10**9))
def test_split_certified_declines_near_ties_it_cannot_see(weight: Fraction, amount: int) -> None:
    # Two weights closer than float precision: equal as floats, different as true values.
    weights = [weight, weight + Fraction(1, 10**30), weight]
    raw = [float(w) for w in weights]
    got = split_certified(amount, raw, rel_error=UNIT, tie_keys=weights)
    if got is not None:
        assert got == split_cents(amount, weights)
    # Without knowing which weights are exactly equal it must not guess at a tie.
    got = split_certified(amount, [1.0, 1.0], rel_error=UNIT)
    assert got is None or got == split_cents(amount, [Fraction(1), Fraction(1)])


# --- packing, caches, other models -------------------------------------------------------------


@PROPS
@given(values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40))
def test_pack_round_trips(values: list[int]) -> None:
    assert unpack(pack(values), len(values)) == values


def test_models_list_changed_in_place_is_seen() -> None:
    journey = [Touch(f"e{i}", T0 + timedelta(days=i), "c", "x", i == 2) for i in range(6)]
    kwargs: dict[str, Any] = {
        "amount_minor": 1001,
        "created_at": T0 + timedelta(days=3),
        "closed_at": T0 + timedelta(days=9),
    }
    models = list(MODELS)
    before = deal_credits(journey, models=models, **kwargs)
    models[3] = make_positional_model("position_based", {"first": "1", "last": "2"})
    after = deal_credits(journey, models=models, **kwargs)
    # first (e0) 1/3, last (e5) 2/3 of 1001: 333.67 and 667.33 -> the unit to e0.
    assert after.credits["position_based"] == [334, 0, 0, 0, 0, 667]
    assert before.credits["position_based"] == reference_credits(
        journey,
        amount=1001,
        created_at=kwargs["created_at"],
        closed_at=kwargs["closed_at"],
        model_weights=reference.POSITIONAL_WEIGHTS["position_based"],
    )


def test_data_driven_models_take_the_exact_path() -> None:
    model = ChannelWeightModel(
        "markov", fit_id=1, channel_weights={"ads": Fraction(1, 3), "mail": Fraction(1, 7)}
    )
    journey = [
        Touch(f"e{i}", T0 + timedelta(days=i), "c", ("ads", "mail")[i % 2]) for i in range(5)
    ]
    kwargs: dict[str, Any] = {
        "amount_minor": 99_999,
        "created_at": T0,
        "closed_at": T0 + timedelta(days=9),
    }
    fast = deal_credits(journey, models=[model, *MODELS], **kwargs)
    slow = attribute_all(journey, models=[model, *MODELS], **kwargs)
    assert list(fast.credits) == ["markov", *(m.model_id for m in MODELS)]
    # The contract §4 split, by the independent reference: ads 7/10 over 3 touches, mail 3/10
    # over 2 (removal effects 1/3 and 1/7, normalised).
    channels = [t.channel for t in journey]
    weights = reference_datadriven.channel_weights(channels, dict(model.channel_weights))
    assert weights == [F(7, 30), F(3, 20), F(7, 30), F(3, 20), F(7, 30)]
    assert fast.credits["markov"] == reference.split_minor(99_999, weights)
    for model_id, lines in slow.items():
        assert fast.credits[model_id] == [c.credit_minor for c in lines]
        assert list(fast.weights[model_id]) == pytest.approx([float(c.weight) for c in lines])
