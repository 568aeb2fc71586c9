"""The closed-loop grade: a hand-worked fit, unseen values, cut-offs, JSON and properties."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.grade import (
    Contribution,
    Features,
    GradeFit,
    GradeFitError,
    GradeSample,
    ValueStats,
    account_features,
    feature_pairs,
    fit_grade,
    grade,
    grade_fit_from_json,
    grade_fit_to_json,
    letter_at_least,
    letter_for,
)

F = Fraction


def s(won: bool, **features: str | set[str]) -> GradeSample:
    return GradeSample({k.replace("__", "."): v for k, v in features.items()}, won)


# Five decided deals, 2 won: p0 = 2/5. Prior strength m = 5: Beta(2, 3), i.e. r = (w+2)/(n+5).
HAND = [
    s(True, industry="software", contact__title={"CFO", "VP Marketing"}),
    s(True, industry="software", contact__title={"CFO"}),
    s(False, industry="retail", contact__title={"CFO"}),
    s(False, industry="retail"),
    s(False, industry="software", contact__title={"VP Marketing"}),
]
# logit(p0) = ln(2/3). Per pair (n deals, w won):
#   software      n=3 w=2: r = 4/8 = 1/2, logit 0        -> c = 0 - ln(2/3)       = ln(3/2)
#   CFO           n=3 w=2: the same                      -> c = ln(3/2)
#   retail        n=2 w=0: r = 2/7, logit ln(2/5)        -> c = ln(2/5) - ln(2/3) = ln(3/5)
#   VP Marketing  n=2 w=1: r = 3/7, logit ln(3/4)        -> c = ln(3/4) - ln(2/3) = ln(9/8)
LN_3_2, LN_3_5, LN_9_8 = 0.405465, -0.510826, 0.117783
# Raw grades: A 2*0.405465 + 0.117783 = 0.928713, B 0.810930, C -0.105361, D -0.510826,
# E 0.523248. Sorted: D, C, E, B, A. Nearest rank over N=5: P75 rank ceil(3.75)=4 -> 0.810930,
# P50 rank ceil(2.5)=3 -> 0.523248, P25 rank ceil(1.25)=2 -> -0.105361.


def test_hand_worked_fit() -> None:
    assert (round(math.log(3 / 2), 6), round(math.log(3 / 5), 6)) == (LN_3_2, LN_3_5)
    assert round(math.log(9 / 8), 6) == LN_9_8
    fit = fit_grade(HAND, prior_strength=5)
    assert (fit.samples, fit.won, fit.base_rate, fit.prior_strength) == (5, 2, F(2, 5), 5)
    assert fit.table == {
        ("contact.title", "CFO"): ValueStats(3, 2, LN_3_2),
        ("contact.title", "VP Marketing"): ValueStats(2, 1, LN_9_8),
        ("industry", "retail"): ValueStats(2, 0, LN_3_5),
        ("industry", "software"): ValueStats(3, 2, LN_3_2),
    }
    assert fit.cutoffs == {"A": 0.81093, "B": 0.523248, "C": -0.105361}
    letters = [grade(fit, sample.features).letter for sample in HAND]
    assert letters == ["A", "A", "C", "D", "B"]
    assert grade(fit, HAND[0].features).raw == 0.928713


def test_hand_worked_grade_lists_unseen_values_as_zero() -> None:
    fit = fit_grade(HAND, prior_strength=5)
    account = account_features({"industry": "software", "size": "large"}, [{"title": "CMO"}])
    result = grade(fit, account)
    # 0.405465 + 0 + 0 = 0.405465: below B (0.523248), at least C (-0.105361).
    assert (result.letter, result.raw) == ("C", 0.405465)
    assert result.contributions == (
        Contribution("industry", "software", LN_3_2, True, 3, 2),
        Contribution("contact.title", "CMO", 0.0, False, 0, 0),
        Contribution("size", "large", 0.0, False, 0, 0),
    )


def test_default_prior_strength_is_ten() -> None:
    # m = 10, p0 = 2/5: Beta(4, 6). software n=3 w=2: r = 6/13, c = ln(6/7) - ln(2/3) = ln(9/7).
    fit = fit_grade(HAND)
    assert fit.prior_strength == 10
    assert fit.table[("industry", "software")].contribution == round(math.log(9 / 7), 6)


def test_features_count_once_and_skip_blank_values() -> None:
    features = account_features(
        {"industry": "software", "region": "  "},
        [{"title": "CFO"}, {"title": "CFO"}, {"title": ""}],
    )
    assert features == {
        "industry": frozenset({"software"}),
        "region": frozenset({"  "}),
        "contact.title": frozenset({"CFO", ""}),
    }
    assert feature_pairs(features) == {("industry", "software"), ("contact.title", "CFO")}
    assert feature_pairs({"industry": "software"}) == {("industry", "software")}


@pytest.mark.parametrize("wins", [[], [True, True], [False, False, False]])
def test_fit_needs_a_won_and_a_lost_deal(wins: list[bool]) -> None:
    with pytest.raises(GradeFitError, match="at least one won and one lost"):
        fit_grade([s(w, industry="x") for w in wins])


@pytest.mark.parametrize("strength", [0, -1, F(-1, 2)])
def test_prior_strength_must_be_positive(strength: int | Fraction) -> None:
    with pytest.raises(ValueError, match="prior_strength"):
        fit_grade(HAND, prior_strength=strength)


def test_coinciding_cutoffs_keep_the_letter_monotone() -> None:
    # Six deals, 3 won; "x" only on one won deal, "y" only on one lost deal, four with nothing.
    samples = [s(True, k="x"), s(False, k="y"), s(True), s(True), s(False), s(False)]
    fit = fit_grade(samples, prior_strength=2)
    # p0 = 1/2, m = 2: x r = 2/3 -> c = ln 2 = 0.693147; y -> -0.693147. Raws sorted:
    # -0.693147, 0, 0, 0, 0, 0.693147: P75 rank ceil(4.5)=5 -> 0, P50 rank 3 -> 0, P25 rank 2 -> 0.
    assert fit.cutoffs == {"A": 0.0, "B": 0.0, "C": 0.0}
    assert [letter_for(fit, r) for r in (0.693147, 0.0, -0.000001)] == ["A", "A", "D"]


def test_letter_at_least() -> None:
    assert letter_at_least("A", "B") and letter_at_least("B", "B")
    assert not letter_at_least("C", "B") and not letter_at_least("D", "A")
    assert letter_at_least("D", "D")
    with pytest.raises(ValueError, match="grade letter"):
        letter_at_least("E", "B")
    with pytest.raises(ValueError, match="grade letter"):
        letter_at_least("A", "b")


def test_json_round_trip_of_the_hand_fit() -> None:
    fit = fit_grade(HAND, prior_strength=5)
    data = json.loads(json.dumps(grade_fit_to_json(fit)))
    assert (data["samples"], data["won"], data["lost"]) == (5, 2, 3)
    assert (data["base_rate"], data["prior_strength"]) == ("2/5", "5")
    assert data["values"][0] == {
        "key": "contact.title",
        "value": "CFO",
        "deals": 3,
        "won": 2,
        "rate": 0.5,
        "contribution": LN_3_2,
    }
    assert grade_fit_from_json(data) == fit


# ---- properties -------------------------------------------------------------------------

KEYS = ["industry", "size", "contact.title"]
VALUES = ["a", "b", "c", "d", " "]
features_st = st.dictionaries(
    st.sampled_from(KEYS), st.frozensets(st.sampled_from(VALUES), max_size=3), max_size=3
)
samples_st = st.lists(st.builds(GradeSample, features_st, st.booleans()), max_size=25).map(
    lambda xs: [*xs, GradeSample({}, True), GradeSample({"size": frozenset({"a"})}, False)]
)
prior_st = st.one_of(st.integers(1, 20), st.fractions(F(1, 10), 50))


def decimal_sum(contributions: tuple[Contribution, ...]) -> Decimal:
    return sum((Decimal(repr(c.contribution)) for c in contributions), Decimal(0))


@settings(max_examples=200, deadline=None)
@given(samples_st, features_st, prior_st)
def test_contributions_add_up_to_raw(
    samples: list[GradeSample], account: dict[str, frozenset[str]], prior: Fraction
) -> None:
    fit = fit_grade(samples, prior_strength=prior)
    result = grade(fit, account)
    assert decimal_sum(result.contributions) == Decimal(repr(result.raw))
    assert len(result.contributions) == len(feature_pairs(account))
    order = [(-abs(c.contribution), c.key, c.value) for c in result.contributions]
    assert order == sorted(order)


@settings(max_examples=200, deadline=None)
@given(samples_st, features_st, st.data())
def test_a_value_seen_only_in_won_deals_never_lowers_the_grade(
    samples: list[GradeSample], account: dict[str, frozenset[str]], data: st.DataObject
) -> None:
    won_at = [i for i, x in enumerate(samples) if x.won]
    chosen = data.draw(st.sets(st.sampled_from(won_at), min_size=1))
    tagged = [
        GradeSample({**x.features, "award": frozenset({"gold"})}, x.won) if i in chosen else x
        for i, x in enumerate(samples)
    ]
    fit = fit_grade(tagged)
    stats = fit.table[("award", "gold")]
    assert (stats.deals, stats.won) == (len(chosen), len(chosen))
    assert stats.contribution >= 0
    without = grade(fit, account)
    with_it = grade(fit, {**account, "award": frozenset({"gold"})})
    assert with_it.raw >= without.raw
    assert letter_at_least(with_it.letter, without.letter)
    for pair, row in fit.table.items():
        if row.won == row.deals:
            assert row.contribution >= 0, pair


def rename(text: str) -> str:
    return "renamed:" + text[::-1]


def renamed(features: Features) -> dict[str, frozenset[str]]:
    # Blank strings are no value: they stay blank (and are skipped) under any renaming.
    return {
        rename(k): frozenset(rename(v) if v.strip() else v for v in vs)
        for k, vs in features.items()
    }


@settings(max_examples=200, deadline=None)
@given(samples_st, features_st)
def test_renaming_keys_and_values_changes_nothing(
    samples: list[GradeSample], account: dict[str, frozenset[str]]
) -> None:
    fit = fit_grade(samples)
    other = fit_grade([GradeSample(renamed(x.features), x.won) for x in samples])
    assert other.cutoffs == fit.cutoffs
    assert other.table == {(rename(k), rename(v)): row for (k, v), row in fit.table.items()}
    mine, theirs = grade(fit, account), grade(other, renamed(account))
    assert (theirs.letter, theirs.raw) == (mine.letter, mine.raw)
    assert set(theirs.contributions) == {
        Contribution(rename(c.key), rename(c.value), c.contribution, c.seen, c.deals, c.won)
        for c in mine.contributions
    }


@settings(max_examples=100, deadline=None)
@given(samples_st, features_st)
def test_unseen_values_contribute_zero_and_are_listed(
    samples: list[GradeSample], account: dict[str, frozenset[str]]
) -> None:
    fit = fit_grade(samples)
    result = grade(fit, {**account, "contact.seniority": frozenset({"never seen"})})
    unseen = [c for c in result.contributions if c.key == "contact.seniority"]
    assert unseen == [Contribution("contact.seniority", "never seen", 0.0, False, 0, 0)]
    assert result.raw == grade(fit, account).raw
    for c in result.contributions:
        assert c.seen == ((c.key, c.value) in fit.table)


@settings(max_examples=100, deadline=None)
@given(samples_st, features_st, prior_st)
def test_json_round_trip_gives_identical_grades(
    samples: list[GradeSample], account: dict[str, frozenset[str]], prior: Fraction
) -> None:
    fit = fit_grade(samples, prior_strength=prior)
    back = grade_fit_from_json(json.loads(json.dumps(grade_fit_to_json(fit))))
    assert back == fit
    assert grade(back, account) == grade(fit, account)
    for sample in samples:
        assert grade(back, sample.features) == grade(fit, sample.features)


@settings(max_examples=100, deadline=None)
@given(samples_st, st.randoms(use_true_random=False))
def test_fit_does_not_depend_on_sample_order(
    samples: list[GradeSample], rng: random.Random
) -> None:
    shuffled = list(samples)
    rng.shuffle(shuffled)
    fit, again = fit_grade(samples), fit_grade(shuffled)
    assert again == fit
    assert grade_fit_to_json(again) == grade_fit_to_json(fit)


@settings(max_examples=100, deadline=None)
@given(samples_st, st.lists(st.floats(-5, 5), min_size=2, max_size=10))
def test_letter_never_gets_worse_as_raw_grows(
    samples: list[GradeSample], raws: list[float]
) -> None:
    fit: GradeFit = fit_grade(samples)
    letters = [letter_for(fit, r) for r in sorted(raws + list(fit.cutoffs.values()))]
    ranks = [{"A": 0, "B": 1, "C": 2, "D": 3}[x] for x in letters]
    assert ranks == sorted(ranks, reverse=True)
    ordered = sorted(grade(fit, x.features).raw for x in samples)
    # Nearest rank: at least a quarter of the samples get A, at least half B or better.
    assert sum(r >= fit.cutoffs["A"] for r in ordered) >= len(ordered) / 4
    assert sum(r >= fit.cutoffs["B"] for r in ordered) >= len(ordered) / 2
