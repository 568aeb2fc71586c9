"""Shapley values: brute force agreement, the axioms, and the sampling bound."""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.allocation import split_cents
from services.domain.paths import Path
from services.domain.shapley import (
    coalition_worth,
    fit_shapley,
    hoeffding_bound,
    shapley_values,
    shapley_weights,
)

F = Fraction


def p(channels: str, converted: bool, count: int = 1, value: int = 0) -> Path:
    return Path(tuple(channels.split()), converted, value=value, count=count)


def brute_force(paths: list[Path], *, by_value: bool = False) -> dict[str, Fraction]:
    """Average marginal contribution over every ordering of the channels (the definition)."""
    players = sorted({c for x in paths for c in x.channels})

    @cache
    def v(coalition: frozenset[str]) -> int:
        return sum(
            (x.value if by_value else x.count)
            for x in paths
            if x.converted and set(x.channels) <= coalition
        )

    totals = dict.fromkeys(players, F(0))
    orderings = list(permutations(players))
    for ordering in orderings:
        for k, player in enumerate(ordering):
            totals[player] += v(frozenset(ordering[: k + 1])) - v(frozenset(ordering[:k]))
    return {c: t / len(orderings) for c, t in totals.items()}


def paths_over(alphabet: str, max_size: int = 14) -> st.SearchStrategy[list[Path]]:
    path = st.tuples(
        st.lists(st.sampled_from(alphabet), min_size=1, max_size=5).map(tuple),
        st.booleans(),
        st.integers(1, 3),
        st.integers(0, 10_000),
    ).map(lambda t: Path(t[0], t[1], value=t[3] if t[1] else 0, count=t[2]))
    return st.lists(path, min_size=1, max_size=max_size)


@settings(max_examples=40, deadline=None)
@given(paths_over("ABCDEF"))
def test_equals_brute_force_permutations(paths: list[Path]) -> None:
    assert fit_shapley(paths).values == brute_force(paths)
    assert fit_shapley(paths, characteristic="value").values == brute_force(paths, by_value=True)


def test_equals_brute_force_on_eight_channels() -> None:
    paths = [
        p("a b c", True, 3),
        p("d e", True),
        p("f g h a", True, 2),
        p("b h", False, 4),
        p("c", True),
        p("a b c d e f g h", True),
        p("g", False),
    ]
    assert fit_shapley(paths).values == brute_force(paths)


@settings(max_examples=40, deadline=None)
@given(paths_over("ABCDEFGH"))
def test_efficiency_and_null_player(paths: list[Path]) -> None:
    fit = fit_shapley(paths)
    assert sum(fit.values.values()) == fit.total == sum(x.count for x in paths if x.converted)
    for channel in fit.channels:
        if not any(x.converted and channel in x.channels for x in paths):
            assert fit.values[channel] == 0
    assert all(value >= 0 for value in fit.values.values())


def test_symmetry_and_null_player_by_hand() -> None:
    # A and B always appear together: equal values. N appears only in lost paths: 0.
    fit = fit_shapley([p("A B", True, 3), p("A B C", True), p("N", False), p("C N", False)])
    assert fit.values == {"A": F(3, 2) + F(1, 3), "B": F(3, 2) + F(1, 3), "C": F(1, 3), "N": 0}
    assert fit.dividends == {frozenset("AB"): 3, frozenset("ABC"): 1}


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.data())
def test_general_engine_matches_definition_on_any_game(n: int, data: st.DataObject) -> None:
    players = [f"p{i}" for i in range(n)]
    worths = data.draw(st.lists(st.integers(-50, 50), min_size=2**n, max_size=2**n))

    def v(coalition: frozenset[str]) -> int:
        return worths[sum(1 << i for i, q in enumerate(players) if q in coalition)]

    estimate = shapley_values(players, v)
    assert estimate.exact and estimate.error_bound == 0
    expected = dict.fromkeys(players, F(0))
    for ordering in permutations(players):
        for k, player in enumerate(ordering):
            expected[player] += v(frozenset(ordering[: k + 1])) - v(frozenset(ordering[:k]))
    assert estimate.values == {q: t / len(list(permutations(players))) for q, t in expected.items()}


def test_sampling_above_the_exact_limit_respects_its_bound() -> None:
    channels = [f"ch{i:02d}" for i in range(22)]
    steps = [tuple(channels[(i * 7 + j * 3) % 22] for j in range(1 + i % 4)) for i in range(40)]
    paths = [Path(s, i % 3 != 0, count=1 + i % 5) for i, s in enumerate(steps)]
    exact = fit_shapley(paths)
    assert len(exact.channels) == 22

    def v(coalition: frozenset[str]) -> int:
        return coalition_worth(exact.dividends, coalition)

    estimate = shapley_values(exact.channels, v, samples=600, seed=7)
    assert not estimate.exact
    assert estimate.error_bound == pytest.approx(
        hoeffding_bound(players=22, samples=600, width=F(exact.total), confidence=F(95, 100))
    )
    assert sum(estimate.values.values()) == exact.total  # each permutation telescopes
    worst = max(abs(estimate.values[c] - exact.values[c]) for c in exact.channels)
    assert worst <= estimate.error_bound
    assert shapley_values(exact.channels, v, samples=600, seed=7) == estimate


def test_shapley_weights_feed_split_cents() -> None:
    fit = fit_shapley([p("A B", True, 3), p("A B C", True), p("N", False)])
    weights = shapley_weights(["C", "A", "A", "N"], fit.values)
    assert sum(weights) == 1
    assert weights[3] == 0
    assert weights[1] == weights[2]
    assert sum(split_cents(99_999, weights)) == 99_999
    assert shapley_weights(["N"], fit.values) == [1]


def test_unknown_characteristic_is_rejected() -> None:
    with pytest.raises(ValueError):
        fit_shapley([p("A", True)], characteristic="rate")  # type: ignore[arg-type]
