"""Model catalogue, weights and hand-computed credits for every built-in model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from services.domain import (
    BUILTIN_POSITIONAL,
    InvalidModelDefinition,
    PositionalModel,
    TimeDecayModel,
    Touch,
    TouchCredit,
    assign_roles,
    attribute,
    attribute_all,
    builtin_models,
    campaign_credits,
    make_positional_model,
    model_weights,
    positional_weights,
    time_decay_weights,
)

F = Fraction
CLOSE = datetime(2024, 3, 29, tzinfo=UTC)
DAY = timedelta(days=1)
AMOUNT = 10_000
MODELS = {m.model_id: m for m in builtin_models()}


def ago(event_id: str, days: float, *, lead: bool = False) -> Touch:
    """A touch `days` before the deal closed (campaign = 'cmp-' + event_id)."""
    return Touch(event_id, CLOSE - days * DAY, f"cmp-{event_id}", "web", lead)


# (journey touch ages in days, creation age in days, lead-created event ids)
JOURNEYS: dict[str, tuple[list[float], float, set[str]]] = {
    "one": ([7], 10, set()),
    # a: first+lead+opp, b: last. A touch holding none of a model's weighted roles is a
    # middle touch of that model (b is a middle touch of u_shaped and w_shaped).
    "two": ([14, 0], 10, set()),
    # a: first+lead+opp, b: middle, c: last
    "three": ([14, 7, 0], 10, set()),
    # all after creation: a: first+lead+opp, b/c/d: middle, e: last
    "five": ([28, 21, 14, 7, 0], 30, set()),
    # a: first, b: lead (flagged), c: opp (last touch <= creation), d: middle, e: last
    "five_roles": ([28, 21, 14, 7, 0], 10, {"b"}),
}

EXPECTED: dict[str, dict[str, list[int]]] = {
    "one": {model_id: [10000] for model_id in MODELS},
    "two": {
        "first_touch": [10000, 0],
        "last_touch": [0, 10000],
        "linear": [5000, 5000],
        "position_based": [5000, 5000],
        "u_shaped": [8000, 2000],
        "w_shaped": [9000, 1000],
        "full_path": [7500, 2500],
        "j_shaped": [2500, 7500],
        "inverse_j": [7500, 2500],
        "time_decay": [2000, 8000],
    },
    "three": {
        "first_touch": [10000, 0, 0],
        "last_touch": [0, 0, 10000],
        "linear": [3334, 3333, 3333],
        "position_based": [4000, 2000, 4000],
        "u_shaped": [8000, 1000, 1000],
        "w_shaped": [9000, 500, 500],
        "full_path": [6750, 1000, 2250],
        "j_shaped": [2000, 2000, 6000],
        "inverse_j": [6000, 2000, 2000],
        "time_decay": [1429, 2857, 5714],
    },
    "five": {
        "first_touch": [10000, 0, 0, 0, 0],
        "last_touch": [0, 0, 0, 0, 10000],
        "linear": [2000, 2000, 2000, 2000, 2000],
        "position_based": [4000, 667, 667, 666, 4000],
        "u_shaped": [8000, 500, 500, 500, 500],
        "w_shaped": [9000, 250, 250, 250, 250],
        "full_path": [6750, 334, 333, 333, 2250],
        "j_shaped": [2000, 667, 667, 666, 6000],
        "inverse_j": [6000, 667, 667, 666, 2000],
        "time_decay": [323, 645, 1290, 2581, 5161],
    },
    "five_roles": {
        "first_touch": [10000, 0, 0, 0, 0],
        "last_touch": [0, 0, 0, 0, 10000],
        "linear": [2000, 2000, 2000, 2000, 2000],
        "position_based": [4000, 667, 667, 666, 4000],
        "u_shaped": [4000, 4000, 667, 667, 666],
        "w_shaped": [3000, 3000, 3000, 500, 500],
        "full_path": [2250, 2250, 2250, 1000, 2250],
        "j_shaped": [2000, 667, 667, 666, 6000],
        "inverse_j": [6000, 667, 667, 666, 2000],
        "time_decay": [323, 645, 1290, 2581, 5161],
    },
}


def build(name: str) -> tuple[list[Touch], datetime]:
    ages, created_age, leads = JOURNEYS[name]
    journey = [
        ago(chr(ord("a") + i), age, lead=chr(ord("a") + i) in leads) for i, age in enumerate(ages)
    ]
    return journey, CLOSE - created_age * DAY


@pytest.mark.parametrize("journey_name", sorted(EXPECTED))
@pytest.mark.parametrize("model_id", list(MODELS))
def test_hand_computed_credits(journey_name: str, model_id: str) -> None:
    journey, created = build(journey_name)
    credits = attribute(
        journey, amount_minor=AMOUNT, created_at=created, closed_at=CLOSE, model=MODELS[model_id]
    )
    assert [c.credit_minor for c in credits] == EXPECTED[journey_name][model_id]
    assert sum(c.weight for c in credits) == 1
    assert [c.position for c in credits] == list(range(len(journey)))
    assert [c.touch for c in credits] == journey


def test_catalogue_order_and_params() -> None:
    assert [m.model_id for m in builtin_models()] == [
        "first_touch", "last_touch", "linear", "position_based", "u_shaped",
        "w_shaped", "full_path", "j_shaped", "inverse_j", "time_decay",
    ]  # fmt: skip
    assert list(BUILTIN_POSITIONAL) == [m.model_id for m in builtin_models()][:9]
    assert all(m.builtin and m.kind == "positional" for m in BUILTIN_POSITIONAL.values())
    assert BUILTIN_POSITIONAL["position_based"].params() == {
        "first": "0.4", "last": "0.4", "middle": "0.2",
    }  # fmt: skip
    assert BUILTIN_POSITIONAL["full_path"].weights["first"] == F(9, 40)
    decay = builtin_models()[-1]
    assert isinstance(decay, TimeDecayModel)
    assert (decay.kind, decay.params(), decay.builtin) == (
        "time_decay",
        {"half_life_days": "7"},
        True,
    )
    assert builtin_models(half_life_days=3.5)[-1].params() == {"half_life_days": "3.5"}


def test_every_builtin_weight_is_exact_and_sums_to_one() -> None:
    for model in BUILTIN_POSITIONAL.values():
        assert all(isinstance(w, Fraction) for w in model.weights.values())
        assert sum(model.weights.values(), F(0)) == 1


def test_time_decay_half_life_example() -> None:
    journey = [ago("old", 7), ago("new", 0)]
    assert time_decay_weights(journey, closed_at=CLOSE, half_life_days=7) == [F(1, 3), F(2, 3)]


TINY = F(1, 10**40)


def close_to(got: list[Fraction], want: list[Fraction], tol: Fraction = TINY) -> bool:
    return len(got) == len(want) and all(abs(g - w) < tol for g, w in zip(got, want, strict=True))


def test_time_decay_uses_fractional_days() -> None:
    journey = [ago("old", 1.75), ago("new", 0)]
    half = F(2**-0.5)  # 2^-0.5 to float precision is enough to recognise the weights
    got = time_decay_weights(journey, closed_at=CLOSE, half_life_days=3.5)
    assert close_to(got, [half / (1 + half), 1 / (1 + half)], tol=F(1, 10**15))
    assert sum(got) == 1


def test_time_decay_keeps_relative_weights_of_very_old_touches() -> None:
    # 2^-40000 underflows a float, not the 50-digit decimals: the ratio stays exactly 2:1.
    ancient = [ago("a", 40_001), ago("b", 40_000)]
    assert close_to(
        time_decay_weights(ancient, closed_at=CLOSE, half_life_days=1), [F(1, 3), F(2, 3)]
    )
    mixed = [ago("a", 40_000), ago("b", 0)]
    assert close_to(time_decay_weights(mixed, closed_at=CLOSE, half_life_days=1), [F(0), F(1)])


def test_time_decay_is_exact_for_huge_amounts() -> None:
    # Float weights give 525880408520 / 526959139710 here; 50-digit weights give the exact split.
    close = CLOSE
    ages = [4_828_634, 4_826_846, 2_391_801]
    journey = [Touch(f"t{i}", close - timedelta(seconds=a), "c", "web") for i, a in enumerate(ages)]
    credits = attribute(
        journey,
        amount_minor=9_638_694_191_443,
        created_at=close,
        closed_at=close,
        model=MODELS["time_decay"],
    )
    assert [c.credit_minor for c in credits] == [
        525_880_408_521,
        526_959_139_709,
        8_585_854_643_213,
    ]


@pytest.mark.parametrize("half_life", [0, -1.0, float("inf"), float("nan")])
def test_invalid_half_life(half_life: float) -> None:
    with pytest.raises(InvalidModelDefinition):
        TimeDecayModel(half_life_days=half_life)
    with pytest.raises(ValueError):
        time_decay_weights([ago("a", 1)], closed_at=CLOSE, half_life_days=half_life)


def test_custom_model_round_trip() -> None:
    model = make_positional_model(
        "heavy_lead", {"lead_creation": "0.5", "first": "1/4", "middle": F(1, 4)}, description="x"
    )
    assert not model.builtin
    assert model.kind == "positional"
    assert model.params() == {"first": "0.25", "lead_creation": "0.5", "middle": "0.25"}
    assert make_positional_model("thirds", {"first": "1/3", "last": "2/3"}).params() == {
        "first": "1/3", "last": "2/3",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"frist": "1"}, "frist"),
        ({"first": "-0.1", "last": "1"}, "negative"),
        ({"first": "0", "middle": "0"}, "at least one"),
        ({}, "empty"),
        ({"first": "abc"}, "not a number"),
        ({"first": 0.5}, "decimal string"),
    ],
)
def test_invalid_custom_models(weights: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidModelDefinition, match=problem):
        make_positional_model("bad", weights)


def test_zero_role_weights_do_not_count_as_naming_roles() -> None:
    quasi_linear = make_positional_model("quasi", {"first": "0", "last": "0", "middle": "1"})
    journey = [ago("a", 3), ago("b", 2), ago("c", 1)]
    roles = assign_roles(journey, created_at=CLOSE - 4 * DAY)
    assert positional_weights(quasi_linear, roles) == [F(1, 3)] * 3


def test_only_middle_model_ignores_roles() -> None:
    roles = [frozenset({"first", "lead_creation"}), frozenset(), frozenset({"last"})]
    model = make_positional_model("m", {"middle": "5"})
    assert positional_weights(model, roles) == [F(1, 3)] * 3


def test_middle_weight_dropped_without_middle_touches() -> None:
    roles = [frozenset({"first", "lead_creation", "opportunity_creation"}), frozenset({"last"})]
    assert positional_weights(BUILTIN_POSITIONAL["j_shaped"], roles) == [F(1, 4), F(3, 4)]
    assert positional_weights(BUILTIN_POSITIONAL["linear"], []) == []


def test_model_weights_dispatch_and_validation() -> None:
    journey = [ago("a", 7), ago("b", 0)]
    roles = assign_roles(journey, created_at=CLOSE)
    assert model_weights(MODELS["time_decay"], journey, roles, closed_at=CLOSE) == [
        F(1, 3),
        F(2, 3),
    ]
    assert model_weights(MODELS["first_touch"], journey, roles, closed_at=CLOSE) == [F(1), F(0)]
    with pytest.raises(ValueError):
        model_weights(MODELS["linear"], journey, roles[:1], closed_at=CLOSE)
    with pytest.raises(ValueError):
        positional_weights(MODELS["linear"], [frozenset({"middle"})])  # type: ignore[arg-type]


def test_attribute_all_matches_attribute_and_reports_roles() -> None:
    journey, created = build("five_roles")
    every = attribute_all(
        journey,
        amount_minor=AMOUNT,
        created_at=created,
        closed_at=CLOSE,
        models=list(MODELS.values()),
    )
    assert list(every) == list(MODELS)
    for model_id, model in MODELS.items():
        single = attribute(
            journey, amount_minor=AMOUNT, created_at=created, closed_at=CLOSE, model=model
        )
        assert every[model_id] == single
    credit = every["w_shaped"][2]
    assert credit == TouchCredit(journey[2], 2, frozenset({"opportunity_creation"}), F(3, 10), 3000)
    assert every["w_shaped"][3].roles == frozenset()


def test_attribute_edge_cases() -> None:
    model = MODELS["linear"]
    assert attribute([], amount_minor=5, created_at=CLOSE, closed_at=CLOSE, model=model) == []
    assert attribute_all([], amount_minor=5, created_at=CLOSE, closed_at=CLOSE, models=[model]) == {
        "linear": []
    }
    journey = [ago("a", 1)]
    with pytest.raises(ValueError):
        attribute(journey, amount_minor=-1, created_at=CLOSE, closed_at=CLOSE, model=model)
    with pytest.raises(ValueError, match="duplicate"):
        attribute_all(
            journey, amount_minor=1, created_at=CLOSE, closed_at=CLOSE, models=[model, model]
        )


def test_campaign_credits_sums_per_campaign() -> None:
    journey = [
        Touch("a", CLOSE - 3 * DAY, "spring"),
        Touch("b", CLOSE - 2 * DAY, "summer"),
        Touch("c", CLOSE - 1 * DAY, "spring"),
    ]
    credits = attribute(
        journey, amount_minor=100, created_at=CLOSE, closed_at=CLOSE, model=MODELS["linear"]
    )
    assert campaign_credits(credits) == {"spring": 67, "summer": 33}
    assert campaign_credits([]) == {}


def test_models_are_hashable_values() -> None:
    a = make_positional_model("x", {"first": "0.5", "last": "0.5"})
    b = make_positional_model("x", {"first": F(1, 2), "last": "0.50"})
    assert a == b and hash(a) == hash(b)
    assert isinstance(BUILTIN_POSITIONAL["linear"], PositionalModel)
    with pytest.raises(TypeError):
        a.weights["first"] = F(1)  # type: ignore[index]
