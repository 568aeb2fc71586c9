"""Exact largest-remainder splitting of minor units."""

from __future__ import annotations

from fractions import Fraction

import pytest

from services.domain import split_cents

F = Fraction


def test_hundred_over_three_equal_weights() -> None:
    assert split_cents(100, [F(1, 3)] * 3) == [34, 33, 33]


def test_ties_go_to_the_earlier_index() -> None:
    assert split_cents(1, [F(1, 2), F(1, 2)]) == [1, 0]
    assert split_cents(2, [F(1, 3)] * 3) == [1, 1, 0]
    assert split_cents(5, [F(1, 4)] * 4) == [2, 1, 1, 1]


def test_zero_amount_gives_zero_everywhere() -> None:
    assert split_cents(0, [F(1, 3), F(2, 3)]) == [0, 0]


def test_one_cent_over_many_touches() -> None:
    assert split_cents(1, [F(1, 10)] * 10) == [1] + [0] * 9


def test_remainder_goes_to_the_largest_fraction_even_if_later() -> None:
    # 1.1 -> 1 (fraction .1), 8.9 -> 8 (fraction .9): the later touch gets the unit.
    assert split_cents(10, [F("0.11"), F("0.89")]) == [1, 9]
    # 1.2 / 2.3 / 6.5: one unit left, to the last touch.
    assert split_cents(10, [F("0.12"), F("0.23"), F("0.65")]) == [1, 2, 7]


def test_weights_are_normalised_inside() -> None:
    assert split_cents(100, [F(2), F(1), F(1)]) == [50, 25, 25]
    assert split_cents(7, [F(3), F(4)]) == [3, 4]


def test_zero_weight_never_receives_a_unit() -> None:
    assert split_cents(2, [F(0), F(1, 3), F(1, 3), F(1, 3)]) == [0, 1, 1, 0]


def test_exact_for_huge_amounts() -> None:
    amount = 10**30 + 7
    credits = split_cents(amount, [F(1, 7)] * 7)
    assert sum(credits) == amount
    assert max(credits) - min(credits) <= 1


@pytest.mark.parametrize(
    ("amount", "weights"),
    [
        (-1, [F(1)]),
        (10, []),
        (10, [F(1), F(-1, 2)]),
        (10, [F(0), F(0)]),
    ],
)
def test_invalid_input_raises_value_error(amount: int, weights: list[Fraction]) -> None:
    with pytest.raises(ValueError):
        split_cents(amount, weights)


def test_non_integer_amount_is_rejected() -> None:
    with pytest.raises(TypeError):
        split_cents(1.5, [F(1)])  # type: ignore[arg-type]
