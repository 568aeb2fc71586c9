"""Markov removal effects: hand-worked chains, exactness, invariances, order k, lead score."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.allocation import split_cents
from services.domain.markov import (
    START,
    conversion_probability,
    fit_markov,
    journey_state,
    markov_weights,
    path_states,
    score_contributions,
    transition_rows,
)
from services.domain.paths import Path, collapse_repeats
from tests.support import reference_datadriven

F = Fraction


def p(channels: str, converted: bool, count: int = 1, value: int = 0) -> Path:
    return Path(tuple(channels.split()), converted, value=value, count=count)


HAND = [p("A", True), p("B", False), p("A B", True)]


def test_hand_worked_first_order_chain() -> None:
    # start: A 2, B 1 | A: conv 1, B 1 | B: conv 1, null 1
    # x_B = 1/2, x_A = 1/2 + 1/2 x_B = 3/4, x_start = 2/3 * 3/4 + 1/3 * 1/2 = 2/3
    # without A: x_start = 1/3 * 1/2 = 1/6 -> RE_A = 1 - (1/6)/(2/3) = 3/4
    # without B: x_A = 1/2, x_start = 2/3 * 1/2 = 1/3 -> RE_B = 1 - (1/3)/(2/3) = 1/2
    fit = fit_markov(HAND)
    assert fit.exact
    assert fit.conversion_probability == F(2, 3)
    assert fit.absorption == {START: F(2, 3), ("A",): F(3, 4), ("B",): F(1, 2)}
    assert fit.removal_effects == {"A": F(3, 4), "B": F(1, 2)}
    assert (fit.path_count, fit.distinct_paths, fit.conversions) == (3, 3, 2)
    assert fit.transitions[START] == {("A",): 2, ("B",): 1}
    assert transition_rows(fit)[:2] == [
        ("(start)", "A", 2, F(2, 3)),
        ("(start)", "B", 1, F(1, 3)),
    ]


def test_consecutive_repeats_are_one_step() -> None:
    repeated = [p("A A", True), p("B B B", False), p("A B B", True)]
    assert fit_markov(repeated).removal_effects == fit_markov(HAND).removal_effects
    assert path_states(["A", "A", "B", "A"]) == [("A",), ("B",), ("A",)]
    # Keeping repeats only adds self-loops: absorption is unchanged at order 1.
    kept = fit_markov(repeated, collapse=False)
    assert kept.transitions[("A",)][("A",)] == 1
    assert kept.removal_effects == fit_markov(HAND).removal_effects


def test_counts_weight_paths_like_repetition() -> None:
    assert fit_markov([p("A", True, count=3), p("B", False)]) == fit_markov(
        [p("A", True)] * 3 + [p("B", False)]
    )


def test_no_conversion_gives_zero_effects() -> None:
    fit = fit_markov([p("A B", False), p("B", False)])
    assert fit.conversion_probability == 0
    assert fit.removal_effects == {"A": 0, "B": 0}
    assert fit_markov([]).removal_effects == {}


def test_order_two_sees_what_order_one_cannot() -> None:
    # Converts after A,B; fails after C,B. Order 1 blurs both into "B", so it credits C
    # with half the conversions; order 2 knows C never led to one.
    paths = [p("A B", True), p("C B", False)]
    first, second = fit_markov(paths), fit_markov(paths, order=2)
    assert first.conversion_probability == second.conversion_probability == F(1, 2)
    assert first.removal_effects == {"A": F(1, 2), "B": 1, "C": F(1, 2)}
    assert second.removal_effects == {"A": 1, "B": 1, "C": 0}
    assert path_states(["A", "B", "C"], 2) == [("A",), ("A", "B"), ("B", "C")]


paths_strategy = st.lists(
    st.builds(
        Path,
        st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=5).map(tuple),
        st.booleans(),
        count=st.integers(1, 4),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(paths_strategy)
def test_order_at_least_longest_path_reproduces_the_paths(paths: list[Path]) -> None:
    # A chain whose states remember whole paths is their prefix tree: P(conv) is the
    # observed rate and removing c loses exactly the conversions of paths through c.
    longest = max(len(collapse_repeats(path.channels)) for path in paths)
    # Up to 12 paths of 5 steps make up to 61 states: keep the exact solver for all of them.
    fit = fit_markov(paths, order=longest, exact_state_limit=100)
    assert fit.exact
    total = sum(path.count for path in paths)
    conversions = sum(path.count for path in paths if path.converted)
    assert fit.conversion_probability == F(conversions, total)
    for channel, effect in fit.removal_effects.items():
        through = sum(x.count for x in paths if x.converted and channel in x.channels)
        assert effect == (F(through, conversions) if conversions else 0)


@settings(max_examples=40, deadline=None)
@given(paths_strategy, st.permutations("ABCDE"), st.randoms(use_true_random=False))
def test_invariant_under_renaming_and_order(
    paths: list[Path], names: list[str], rnd: random.Random
) -> None:
    rename = dict(zip("ABCDE", [f"ch_{n}" for n in names], strict=True))
    renamed = [
        Path(tuple(rename[c] for c in x.channels), x.converted, count=x.count) for x in paths
    ]
    shuffled = list(renamed)
    rnd.shuffle(shuffled)
    fit, other = fit_markov(paths), fit_markov(shuffled)
    assert other == fit_markov(renamed)
    assert {rename[c]: e for c, e in fit.removal_effects.items()} == other.removal_effects
    assert fit.conversion_probability == other.conversion_probability
    assert fit.removal_effects and all(0 <= e <= 1 for e in fit.removal_effects.values())
    # And both equal the independent reference (tests/support/reference_datadriven.py).
    expanded = [(x.channels, x.converted) for x in paths for _ in range(x.count)]
    base, effects = reference_datadriven.markov_removal_effects(expanded)
    assert (fit.conversion_probability, dict(fit.removal_effects)) == (base, effects)


@settings(max_examples=25, deadline=None)
@given(paths_strategy, st.integers(1, 3))
def test_float_solver_agrees_with_exact_solver(paths: list[Path], order: int) -> None:
    exact = fit_markov(paths, order=order)
    approx = fit_markov(paths, order=order, exact_state_limit=0)
    assert exact.exact and not approx.exact
    assert float(approx.conversion_probability) == pytest.approx(
        float(exact.conversion_probability), abs=1e-12
    )
    assert approx.max_error <= 1e-13
    for channel, effect in exact.removal_effects.items():
        assert float(approx.removal_effects[channel]) == pytest.approx(float(effect), abs=1e-10)


def test_conversion_probability_is_the_lead_score() -> None:
    fit = fit_markov(HAND)
    assert conversion_probability(fit, []) == pytest.approx(2 / 3)
    assert conversion_probability(fit, ["B", "A"]) == pytest.approx(3 / 4)
    assert conversion_probability(fit, ["A", "B", "never_seen"]) == pytest.approx(1 / 2)
    assert journey_state(fit, ["never_seen"]) == START
    second = fit_markov([p("A B", True), p("C B", False)], order=2)
    assert conversion_probability(second, ["A", "B"]) == 1.0
    assert conversion_probability(second, ["C", "B"]) == 0.0
    assert journey_state(second, ["B", "A"]) == ("A",)  # (B, A) unseen: back off


def test_score_contributions_add_up_to_the_score() -> None:
    fit = fit_markov(HAND)
    parts = score_contributions(fit, ["A", "B", "B"])
    # RE_A : RE_B = 3/4 : 1/2 = 3 : 2, score 1/2
    assert parts == pytest.approx({"A": 0.3, "B": 0.2})
    assert sum(parts.values()) == pytest.approx(conversion_probability(fit, ["A", "B", "B"]))


def test_markov_weights_split_by_channel_then_by_touch() -> None:
    effects = {"A": F(3, 4), "B": F(1, 2)}
    weights = markov_weights(["A", "B", "A", "C"], effects)
    assert weights == [F(3, 10), F(2, 5), F(3, 10), F(0)]
    assert sum(weights) == 1
    assert split_cents(1001, weights) == [300, 401, 300, 0]
    assert markov_weights(["C", "D", "D"], effects) == [F(1, 2), F(1, 4), F(1, 4)]
    assert markov_weights([], effects) == []


def test_path_validation() -> None:
    with pytest.raises(ValueError):
        Path((), True)
    with pytest.raises(ValueError):
        Path(("A",), False, value=5)
    with pytest.raises(ValueError):
        Path(("A",), True, count=0)
    with pytest.raises(ValueError):
        fit_markov(HAND, order=0)
