"""Property tests: exact conservation of money and order independence for every model.

Expected credits come from the independent reference (tests/support/reference.py), never from
the domain itself: a shuffled, redelivered set of candidate touches must give the reference's
credits over the plainly filtered and sorted journey."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain import (
    ROLES,
    AttributionModel,
    TimeDecayModel,
    Touch,
    TouchCredit,
    assign_roles,
    attribute_all,
    builtin_models,
    campaign_credits,
    select_journey,
    split_cents,
)
from tests.support import reference

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
DAY_S = 86_400
MODELS: list[AttributionModel] = builtin_models()
PROPS = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class Deal:
    candidates: list[Touch]
    created_at: datetime
    closed_at: datetime
    lookback: timedelta
    amount: int


@st.composite
def deals(draw: st.DrawFn, min_touches: int = 1, max_touches: int = 30) -> Deal:
    """A deal plus candidate touches: 1-30 inside its window, a few outside it."""
    closed_at = EPOCH + timedelta(seconds=draw(st.integers(0, 1000 * DAY_S)))
    created_at = closed_at - timedelta(seconds=draw(st.integers(0, 200 * DAY_S)))
    lookback = timedelta(seconds=draw(st.integers(0, 90 * DAY_S)))
    start = created_at - lookback
    span = int((closed_at - start).total_seconds())
    inside = draw(st.integers(min_touches, max_touches))
    outside = draw(st.integers(0, 3))
    count = inside + outside
    ids = draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True))
    touches = []
    for n, event in enumerate(ids):
        if n < inside:
            at = start + timedelta(seconds=draw(st.integers(0, span)))
        elif draw(st.booleans()):
            at = start - timedelta(seconds=draw(st.integers(1, 30 * DAY_S)))
        else:
            at = closed_at + timedelta(seconds=draw(st.integers(1, 30 * DAY_S)))
        touches.append(
            Touch(
                event_id=f"evt-{event}",
                occurred_at=at,
                campaign_id=draw(st.sampled_from(["alpha", "beta", "gamma", "delta"])),
                channel=draw(st.sampled_from(["", "email", "ads"])),
                lead_created=draw(st.booleans()),
            )
        )
    amount = draw(st.integers(0, 10**12))
    return Deal(touches, created_at, closed_at, lookback, amount)


def journey_of(deal: Deal, candidates: list[Touch] | None = None) -> tuple[Touch, ...]:
    return select_journey(
        deal.candidates if candidates is None else candidates,
        created_at=deal.created_at,
        closed_at=deal.closed_at,
        lookback=deal.lookback,
    )


def run_all(
    deal: Deal, journey: tuple[Touch, ...], models: list[AttributionModel] = MODELS
) -> dict[str, list[TouchCredit]]:
    return attribute_all(
        journey,
        amount_minor=deal.amount,
        created_at=deal.created_at,
        closed_at=deal.closed_at,
        models=models,
    )


@PROPS
@given(deal=deals(), half_life=st.floats(min_value=0.001, max_value=1000.0))
def test_credits_conserve_the_amount_exactly(deal: Deal, half_life: float) -> None:
    journey = journey_of(deal)
    assert 1 <= len(journey) <= 30
    models = [*MODELS[:-1], TimeDecayModel(half_life_days=half_life)]
    for model_id, credits in run_all(deal, journey, models).items():
        assert len(credits) == len(journey), model_id
        assert sum(c.credit_minor for c in credits) == deal.amount, model_id
        assert all(c.credit_minor >= 0 for c in credits), model_id
        assert all(isinstance(c.weight, Fraction) and c.weight >= 0 for c in credits), model_id
        assert sum(c.weight for c in credits) == 1, model_id
        for c in credits:
            exact = deal.amount * c.weight
            assert exact - 1 < c.credit_minor < exact + 1, model_id
        assert sum(campaign_credits(credits).values()) == deal.amount, model_id


@PROPS
@given(deal=deals())
def test_journey_is_the_ordered_window(deal: Deal) -> None:
    journey = journey_of(deal)
    start = deal.created_at - deal.lookback
    assert journey, "deals() puts at least one touch inside the window"
    assert all(start <= t.occurred_at <= deal.closed_at for t in journey)
    keys = [(t.occurred_at, t.event_id) for t in journey]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    inside = {t.event_id for t in deal.candidates if start <= t.occurred_at <= deal.closed_at}
    assert {t.event_id for t in journey} == inside


@PROPS
@given(deal=deals())
def test_each_named_role_is_held_exactly_once(deal: Deal) -> None:
    journey = journey_of(deal)
    roles = assign_roles(journey, created_at=deal.created_at)
    for role in ROLES:
        assert sum(role in held for held in roles) == 1
    assert "first" in roles[0] and "last" in roles[-1]


@PROPS
@given(deal=deals(min_touches=1, max_touches=1))
def test_single_touch_gets_everything(deal: Deal) -> None:
    journey = journey_of(deal)
    assert len(journey) == 1
    for credits in run_all(deal, journey).values():
        assert [(c.weight, c.credit_minor) for c in credits] == [(Fraction(1), deal.amount)]


def reference_credits(deal: Deal) -> dict[str, list[int]]:
    """Every built-in model's credits by the reference, over the plainly selected journey."""
    start = deal.created_at - deal.lookback
    unique = {t.event_id: t for t in deal.candidates}.values()
    journey = sorted(
        (t for t in unique if start <= t.occurred_at <= deal.closed_at),
        key=lambda t: (t.occurred_at, t.event_id),
    )
    roles = reference.roles_of(journey, deal.created_at)  # type: ignore[arg-type]
    out = {
        model_id: reference.split_minor(deal.amount, reference.positional_weights(roles, weights))
        for model_id, weights in reference.POSITIONAL_WEIGHTS.items()
    }
    decay = reference.time_decay_weights(journey, deal.closed_at, 7.0)  # type: ignore[arg-type]
    out["time_decay"] = reference.split_minor(deal.amount, decay)
    return out


@PROPS
@given(deal=deals(), seed=st.integers(0, 2**32 - 1), duplicates=st.integers(0, 5))
def test_any_order_and_redelivery_give_the_reference_credits(
    deal: Deal, seed: int, duplicates: int
) -> None:
    rng = random.Random(seed)
    shuffled = deal.candidates + rng.choices(deal.candidates, k=duplicates)
    rng.shuffle(shuffled)
    got = run_all(deal, journey_of(deal, shuffled))
    expected = reference_credits(deal)
    assert set(got) == set(expected) == set(reference.MODELS)
    for model_id, credits in got.items():
        assert [c.credit_minor for c in credits] == expected[model_id], model_id


@PROPS
@given(
    amount=st.integers(0, 10**12),
    weights=st.lists(st.fractions(min_value=0, max_value=10), min_size=1, max_size=30).filter(any),
)
def test_split_cents_is_largest_remainder(amount: int, weights: list[Fraction]) -> None:
    credits = split_cents(amount, weights)
    total = sum(weights, Fraction(0))
    shares = [amount * w / total for w in weights]
    assert credits == reference.split_minor(amount, [w / total for w in weights])
    assert sum(credits) == amount
    assert all(int(s) <= c <= int(s) + 1 for s, c in zip(shares, credits, strict=True))
    assert all(c == 0 for w, c in zip(weights, credits, strict=True) if w == 0)
    # Every bumped index beats (or ties, and precedes) every index that was not bumped.
    bumped = [i for i, (s, c) in enumerate(zip(shares, credits, strict=True)) if c > int(s)]
    kept = [i for i in range(len(weights)) if i not in bumped]
    for i in bumped:
        for j in kept:
            fi, fj = shares[i] - int(shares[i]), shares[j] - int(shares[j])
            assert fi > fj or (fi == fj and i < j)
