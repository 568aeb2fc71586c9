"""Shapley-value attribution over channels: exact, from the subset structure of the paths.

Characteristic function (the "simplified Shapley value" of Zhao, Mahboobi and Bagheri,
"Shapley Value Methods for Attribution Modeling in Online Advertising", 2018,
arXiv:1804.05327): for a coalition S of channels,

    v(S) = sum of R(T) over the channel sets T ⊆ S,

where R(T) is the number of conversions (``characteristic="conversions"``) or the
converted value in minor units (``"value"``) of the converted paths whose *set* of
channels is exactly T. Order and repeats inside a path do not matter; lost paths add 0.

Because v is a sum of unanimity games, its Möbius transform (Harsanyi dividends) is R
itself, supported only on the channel sets actually present, and the Shapley value is

    phi(c) = sum over present sets T containing c of R(T) / |T|

(Zhao et al., eq. for the simplified Shapley value). So the exact value costs
O(sum of |T| over the distinct sets), for any number of channels: no 2^n enumeration and
no channel cap is needed for this characteristic function. The values are exact
``Fraction``s with efficiency (they sum to v(N)), symmetry and the null-player property.

``shapley_values`` is the general engine for any other characteristic function: exact
over all 2^n coalitions up to ``exact_limit`` players (O(2^n * n) evaluations), and above
it Monte-Carlo permutation sampling with a fixed seed and a stated Hoeffding bound
(an integer game of 18 players takes about 1 s exactly; each extra player doubles it).

Not the ``marketing-attribution-models`` Shapley: that one plays, per converting channel
set C, the game on C's subsets with v(T) = conversion rate of the paths whose set is
exactly T, and splits C's conversions by those values. It agrees with this one when the
converting channel sets form an antichain (tests/unit/test_datadriven_crosscheck.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import factorial, log, sqrt
from typing import Literal

from .paths import Path, PathKey, split_by_channel, tally_paths

Characteristic = Literal["conversions", "value"]
DEFAULT_EXACT_LIMIT = 20
DEFAULT_SAMPLES = 10_000
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class ShapleyFit:
    """Exact Shapley values per channel for the Zhao et al. characteristic function."""

    characteristic: Characteristic
    channels: tuple[str, ...]
    values: Mapping[str, Fraction]
    dividends: Mapping[frozenset[str], int]
    total: int
    path_count: int
    distinct_sets: int
    conversions: int
    conversion_value: int


def _worths(
    tally: Mapping[PathKey, tuple[int, int]], characteristic: Characteristic
) -> dict[frozenset[str], int]:
    if characteristic not in ("conversions", "value"):
        raise ValueError(f"characteristic must be 'conversions' or 'value', got {characteristic!r}")
    worths: dict[frozenset[str], int] = {}
    for (steps, converted), (count, value) in tally.items():
        if converted:
            key = frozenset(steps)
            worths[key] = worths.get(key, 0) + (count if characteristic == "conversions" else value)
    return worths


def set_worths(paths: Iterable[Path], characteristic: Characteristic) -> dict[frozenset[str], int]:
    """Return R(T): the conversions or value of converted paths per exact channel set T."""
    return _worths(tally_paths(paths), characteristic)


def coalition_worth(dividends: Mapping[frozenset[str], int], coalition: frozenset[str]) -> int:
    """Evaluate v(S): the sum of the dividends of the sets contained in S."""
    return sum(worth for members, worth in dividends.items() if members <= coalition)


def fit_shapley(
    paths: Iterable[Path], *, characteristic: Characteristic = "conversions"
) -> ShapleyFit:
    """Compute exact Shapley values per channel from the paths (Zhao et al. 2018)."""
    tally = tally_paths(paths)
    worths = _worths(tally, characteristic)
    channels = tuple(sorted({c for steps, _ in tally for c in steps}))
    values = dict.fromkeys(channels, Fraction(0))
    for members, worth in sorted(worths.items(), key=lambda item: sorted(item[0])):
        share = Fraction(worth, len(members))
        for channel in members:
            values[channel] += share
    return ShapleyFit(
        characteristic=characteristic,
        channels=channels,
        values=values,
        dividends={k: worths[k] for k in sorted(worths, key=sorted) if worths[k]},
        total=sum(worths.values()),
        path_count=sum(count for count, _ in tally.values()),
        distinct_sets=len({frozenset(steps) for steps, _ in tally}),
        conversions=sum(count for (_, converted), (count, _) in tally.items() if converted),
        conversion_value=sum(value for _, value in tally.values()),
    )


def shapley_weights(
    journey_channels: Sequence[str], values: Mapping[str, Fraction]
) -> list[Fraction]:
    """Return per-touch weights: channels by Shapley value, then evenly over their touches.

    Same rule as ``markov_weights``: unknown or negative values weigh 0, and an all-zero
    journey splits equally over its distinct channels; the weights sum to exactly 1.
    """
    return split_by_channel(journey_channels, dict(values))


@dataclass(frozen=True)
class ShapleyEstimate:
    """Shapley values from the general engine, with how they were obtained."""

    values: Mapping[str, Fraction]
    exact: bool
    samples: int
    error_bound: Fraction
    confidence: Fraction


def _exact(
    players: Sequence[str], worth: Callable[[frozenset[str]], Fraction | int]
) -> dict[str, Fraction]:
    n = len(players)
    # Integer games stay in int arithmetic until the final weighting (much faster).
    table = [
        worth(frozenset(p for b, p in enumerate(players) if mask >> b & 1))
        for mask in range(1 << n)
    ]
    # marginal[i][k]: sum of v(S + i) - v(S) over coalitions S of size k without i.
    marginal: list[list[Fraction | int]] = [[0] * n for _ in range(n)]
    for mask in range(1 << n):
        size = mask.bit_count()
        here = table[mask]
        for i in range(n):
            if not mask >> i & 1:
                marginal[i][size] += table[mask | 1 << i] - here
    weights = [Fraction(factorial(k) * factorial(n - k - 1), factorial(n)) for k in range(n)]
    values: dict[str, Fraction] = {}
    for i, player in enumerate(players):
        values[player] = sum(
            (w * m for w, m in zip(weights, marginal[i], strict=True)), Fraction(0)
        )
    return values


class _SplitMix64:
    """A tiny deterministic generator (SplitMix64), so sampling needs no global state."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def draw(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """Return a uniform integer in [0, bound) (rejection sampling: no modulo bias)."""
        limit = (1 << 64) - (1 << 64) % bound
        while True:
            draw = self.draw()
            if draw < limit:
                return draw % bound


def hoeffding_bound(*, players: int, samples: int, width: Fraction, confidence: Fraction) -> float:
    """Return eps with P(max_i |estimate_i - phi_i| > eps) <= 1 - confidence.

    Each sample is a marginal contribution inside an interval of the given width, so by
    Hoeffding's inequality and a union bound over the players,
    eps = width * sqrt(ln(2 * players / (1 - confidence)) / (2 * samples)).
    """
    delta = 1 - confidence
    return float(width) * sqrt(log(2 * players / float(delta)) / (2 * samples))


def shapley_values(
    players: Sequence[str],
    worth: Callable[[frozenset[str]], Fraction | int],
    *,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    confidence: Fraction = Fraction(95, 100),
    marginal_width: Fraction | None = None,
) -> ShapleyEstimate:
    """Compute Shapley values of any game: exact up to ``exact_limit`` players, else sampled.

    Sampling draws ``samples`` uniform permutations (SplitMix64 from ``seed``, so the same
    inputs give the same numbers) and averages each player's marginal contribution; the
    estimates sum to v(N) - v(∅) exactly. ``marginal_width`` bounds the spread of a
    marginal contribution; by default v(N) - v(∅), which is right for monotone games.
    """
    order = sorted(set(players))
    if len(order) != len(players):
        raise ValueError("players must be distinct")
    if not order:
        return ShapleyEstimate({}, True, 0, Fraction(0), Fraction(1))

    def v(coalition: frozenset[str]) -> Fraction:
        return Fraction(worth(coalition))

    if len(order) <= exact_limit:
        return ShapleyEstimate(_exact(order, worth), True, 0, Fraction(0), Fraction(1))
    if samples < 1 or not 0 < confidence < 1:
        raise ValueError("sampling needs samples >= 1 and 0 < confidence < 1")
    width = marginal_width if marginal_width is not None else v(frozenset(order)) - v(frozenset())
    rng = _SplitMix64(seed)
    totals = dict.fromkeys(order, Fraction(0))
    empty = v(frozenset())
    for _ in range(samples):
        permutation = list(order)
        for i in range(len(permutation) - 1, 0, -1):
            j = rng.below(i + 1)
            permutation[i], permutation[j] = permutation[j], permutation[i]
        coalition: set[str] = set()
        previous = empty
        for player in permutation:
            coalition.add(player)
            current = v(frozenset(coalition))
            totals[player] += current - previous
            previous = current
    bound = hoeffding_bound(
        players=len(order), samples=samples, width=abs(width), confidence=confidence
    )
    return ShapleyEstimate(
        values={p: total / samples for p, total in totals.items()},
        exact=False,
        samples=samples,
        error_bound=Fraction(bound),
        confidence=confidence,
    )
