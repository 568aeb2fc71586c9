"""Cross-checks of the data-driven models against established packages (test-only deps).

- ``marketing-attribution-models`` (``mam``, 2.x): its first-order Markov builds the same
  chain (self-transitions dropped by default) and solves it with ``numpy.linalg.inv``; its
  ``metadata["removal_effect"]`` table holds the raw removal effects (its attribution
  weights are those normalised). They must equal ours to 1e-9, as must its transition
  matrix.
- ``mam``'s Shapley uses another characteristic function: per converting channel *set*
  C, the game on C's subsets with v(T) = conversion rate of paths whose set is exactly T
  (0 if none converted), whose Shapley values (times C's path count, normalised) split C's
  conversions. We recompute that with our general exact engine and match it to 1e-9; and
  where the converting sets form an antichain it coincides with Zhao et al.'s simplified
  Shapley value, so there ``fit_shapley`` must match it directly.
- ChannelAttribution estimates removal effects by simulating walks on the chain. Its
  stated convergence criterion is ``conv_par`` (default 0.05): it stops when results vary
  by less than 5% across ``nfold`` repetitions, so we ask for agreement within 5%
  (relative) with a fixed ``seed``. Its default ``max_step`` truncates walks at the
  longest observed path, which biases every removal effect down (by 2-3 points on these
  data), so we pass a generous ``max_step``. At order k > 1 it keeps consecutive repeats
  inside its k-tuple states, which our ``collapse=False`` reproduces.
"""

from __future__ import annotations

import random
from fractions import Fraction

# Dev dependencies (pyproject's `dev` extra): imported directly so a broken install fails
# loudly instead of turning the cross-checks into skips.
import ChannelAttribution  # noqa: F401 - fail loudly if the dev extra is broken
import pytest

from services.domain.markov import CONVERSION, NULL, fit_markov, transition_rows
from services.domain.paths import Path
from services.domain.shapley import fit_shapley, shapley_values
from tests.support.packages import channelattribution_markov, mam_model

CHANNELS = ["content", "email", "events", "paid_search", "social", "webinar"]


def random_paths(seed: int, n: int = 400, *, channels: int = 6, longest: int = 6) -> list[Path]:
    rng = random.Random(seed)
    names = CHANNELS[:channels]
    paths = []
    for _ in range(n):
        pool = names[: rng.randint(2, channels)]
        steps = tuple(rng.choice(pool) for _ in range(rng.randint(1, longest)))
        paths.append(Path(steps, rng.random() < 0.15 + 0.1 * len(set(steps)) / channels))
    return paths


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("same_state", [False, True])
def test_markov_removal_effects_equal_mam(seed: int, same_state: bool) -> None:
    paths = random_paths(seed)
    fit = fit_markov(paths)
    result = mam_model(paths).run_markov(transition_to_same_state=same_state)  # type: ignore[attr-defined]
    theirs = result.metadata["removal_effect"]["removal_effect"].to_dict()
    assert set(theirs) == set(fit.channels)
    for channel, effect in fit.removal_effects.items():
        assert float(effect) == pytest.approx(theirs[channel], abs=1e-9, rel=0)


@pytest.mark.parametrize("seed", [5, 6])
def test_markov_transition_probabilities_equal_mam(seed: int) -> None:
    paths = random_paths(seed)
    fit = fit_markov(paths)
    matrix = mam_model(paths).run_markov().metadata["transition_matrix"]  # type: ignore[attr-defined]
    names = {"(start)": "(inicio)", CONVERSION: "(conversion)", NULL: "(null)"}
    rows = transition_rows(fit)
    for source, target, _count, probability in rows:
        their = matrix.loc[names.get(source, source), names.get(target, target)]
        assert float(probability) == pytest.approx(their, abs=1e-12)
    assert len(rows) == int((matrix.to_numpy()[:-2] > 0).sum())


def mam_game_shapley(paths: list[Path]) -> dict[str, Fraction]:
    """mam's Shapley, recomputed exactly with our general engine (see module docstring)."""
    tally: dict[frozenset[str], list[int]] = {}
    for x in paths:
        counts = tally.setdefault(frozenset(x.channels), [0, 0])
        counts[0] += x.count if x.converted else 0
        counts[1] += x.count

    def rate(subset: frozenset[str]) -> Fraction:
        conv, total = tally.get(subset, [0, 1])
        return Fraction(conv, total) if conv else Fraction(0)

    credit: dict[str, Fraction] = {}
    for members, (conv, total) in tally.items():
        if not conv:
            continue
        phi = shapley_values(sorted(members), rate).values
        raw = {c: v * total for c, v in phi.items()}
        norm = sum(raw.values())
        for c, v in raw.items():
            credit[c] = credit.get(c, Fraction(0)) + (v / norm * conv if norm else v)
    return credit


def mam_shapley(paths: list[Path]) -> dict[str, float]:
    table = mam_model(paths).run_shapley(max_size=len(CHANNELS)).to_polars()  # type: ignore[attr-defined]
    return dict(zip(table["channels"].to_list(), table["attribution"].to_list(), strict=True))


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_shapley_reproduces_mam_game(seed: int) -> None:
    paths = random_paths(seed, n=300, longest=4)
    ours = mam_game_shapley(paths)
    theirs = mam_shapley(paths)
    assert set(theirs) == set(ours)
    for channel, value in ours.items():
        assert float(value) == pytest.approx(theirs[channel], abs=1e-9)


def test_shapley_equals_mam_where_the_games_coincide() -> None:
    # Converting channel sets form an antichain (none contains another): mam's per-set
    # game then gives each set's conversions out equally, exactly like Zhao et al.
    paths = [
        Path(("email", "webinar"), True, count=5),
        Path(("webinar", "email", "email"), True, count=2),
        Path(("paid_search", "events", "content"), True, count=3),
        Path(("paid_search", "social"), True, count=4),
        Path(("email",), False, count=9),
        Path(("social", "content"), False, count=2),
    ]
    ours = fit_shapley(paths).values
    theirs = mam_shapley(paths)
    assert set(theirs) <= set(ours)
    for channel, value in ours.items():
        assert float(value) == pytest.approx(theirs.get(channel, 0.0), abs=1e-9)


@pytest.mark.parametrize(("seed", "order"), [(11, 1), (12, 1), (13, 2)])
def test_markov_agrees_with_channelattribution(seed: int, order: int) -> None:
    paths = random_paths(seed, n=3000, channels=5, longest=5)
    collapse = order == 1
    fit = fit_markov(paths, order=order, collapse=collapse)
    result = channelattribution_markov(paths, order=order)
    theirs = result["removal_effects"].set_index("channel_name")["removal_effect"].to_dict()
    assert set(theirs) == set(fit.channels)
    for channel, effect in fit.removal_effects.items():
        assert theirs[channel] == pytest.approx(float(effect), rel=0.05)
